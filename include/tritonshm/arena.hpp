// An arena of shared memory regions handing out leases: aligned slices that
// one request owns until it releases them. It is what a client needs to
// register shared memory with a server once and reuse it for every request:
// regions are created with keys unique to this process, each is registered by
// the caller (add_region returns what to register), and a lease and its
// release cost a few microseconds, not a region's creation.
//
// Thread-safe. The arena never talks to a server: growing is three steps,
// add_region() (the region exists but is pending: no lease comes from it),
// the caller's registration, then commit_region() (leases may come from it).
// A failed registration is undone with remove_region(), which cannot find a
// lease in a pending region; async callers can await the registration.
//
// The arena belongs to the process that made it. In a child made by fork()
// every call that would change it throws, while releasing a lease, close()
// and the destructor do nothing there: they never take the arena's lock
// (another thread may have held it at the fork) and never unlink the
// parent's regions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tritonshm/region.hpp"
#include "tritonshm/slice.hpp"

namespace tritonshm {

struct ArenaOptions {
  // Keys are "/<prefix>_<pid>_<random>_<n>" and names "<prefix>_<pid>_<random>_<n>":
  // two processes, or two arenas in one, never collide.
  std::string key_prefix = "tritonshm";
  // The most bytes all regions may hold together; add_region refuses more.
  uint64_t max_bytes = UINT64_MAX;
  // Every lease starts at a multiple of this (a power of two).
  uint64_t alignment = 64;
  RegionOptions region_options;
};

// A region of the arena, as a server must be told about it.
struct ArenaRegion {
  std::string name;  // the server's name for it (no '/': HTTP routes refuse one)
  std::string key;   // the shared memory key ("/name")
  uint64_t size = 0;
};

namespace detail {
struct ArenaState;
}

class Lease {
 public:
  Lease(Lease&& other) noexcept;
  Lease& operator=(Lease&& other) noexcept;
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
  ~Lease();  // releases

  const std::string& name() const noexcept { return info_->name; }  // the region's server name
  const std::string& key() const noexcept { return info_->key; }
  uint64_t offset() const noexcept { return offset_; }  // in the region
  uint64_t size() const noexcept { return size_; }
  bool live() const noexcept { return state_ != nullptr; }
  // The leased bytes, bounded: offsets relative to the lease. Throws once the
  // lease is released. The region (and its mapping) outlives the arena's
  // close() while the lease is live. The reference lasts until release(): a
  // copy of the slice holds the region past a release by another thread.
  const Slice& slice() const;
  // The region, shared; null once released.
  const std::shared_ptr<Region>& region() const noexcept;
  std::byte* data() const noexcept { return slice_ ? slice_->data() : nullptr; }

  // Gives the slice back to the arena and lets go of the region. A second
  // release does nothing; in a forked child it only lets go (the parent's
  // arena is not ours).
  void release() noexcept;

 private:
  friend class Arena;
  Lease(std::shared_ptr<detail::ArenaState> state, std::shared_ptr<const ArenaRegion> info, Slice slice,
        std::size_t index) noexcept;
  std::shared_ptr<detail::ArenaState> state_;  // null once released
  std::shared_ptr<const ArenaRegion> info_;
  std::optional<Slice> slice_;  // empty once released
  std::size_t index_ = 0;       // the region's slot in the arena
  uint64_t offset_ = 0;
  uint64_t size_ = 0;
};

class Arena {
 public:
  explicit Arena(ArenaOptions options = {});
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;
  // close()s (nothing in a forked child).
  ~Arena();

  // Creates a region of `size` bytes, pending: no lease comes from it until
  // commit_region (register it with the server in between). Throws, saying
  // how much is leased, if it would take the arena past max_bytes
  // (reason() is Reason::limit_reached).
  ArenaRegion add_region(uint64_t size);
  // Makes the pending region `name` leasable. Throws if there is none.
  void commit_region(std::string_view name);
  // Takes a region out of service for good: no lease comes from it again.
  // For a region whose bytes a server may still write after the caller gave
  // up on a request (a timeout, a cancellation): reusing them could hand the
  // next request the abandoned one's output. Its live leases stay valid;
  // remove_region() takes it once they are released. Returns whether the
  // arena has a region of that name.
  bool retire_region(std::string_view name);
  // Removes a region, pending, committed or retired, none of whose bytes are
  // leased (its registration failed, say). Returns whether it did.
  bool remove_region(std::string_view name);

  // A lease of `bytes` (rounded up to the alignment) from a committed region,
  // or nullopt if none has room: then add_region, register, commit, and ask again.
  std::optional<Lease> try_lease(uint64_t bytes);
  // try_lease, throwing (saying how much is leased) instead of nullopt.
  Lease lease(uint64_t bytes);

  // The counters take no lock (safe in a forked child, where they show the
  // parent's arena as it was at the fork).
  uint64_t capacity() const noexcept;          // bytes in all regions, pending ones included
  uint64_t leased_bytes() const noexcept;      // bytes in live leases
  uint64_t high_water_bytes() const noexcept;  // the most bytes ever leased at once
  std::size_t lease_count() const noexcept;
  std::size_t region_count() const noexcept;  // committed regions
  uint64_t max_bytes() const noexcept;
  uint64_t alignment() const noexcept;
  // False in a child made by fork(): the arena is the parent's.
  bool owned_here() const noexcept;
  // The committed regions, those added but not yet committed, and the retired.
  std::vector<ArenaRegion> regions() const;
  std::vector<ArenaRegion> pending_regions() const;
  std::vector<ArenaRegion> retired_regions() const;

  // Unlinks every region and lets go of them: each is unmapped as soon as its
  // last lease is released (or at once if none is live). Live leases keep
  // their memory and may still be released; no new lease is given, and the
  // arena then has no regions. Idempotent.
  void close() noexcept;

 private:
  std::shared_ptr<detail::ArenaState> state_;
};

}  // namespace tritonshm
