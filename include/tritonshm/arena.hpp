// An arena of shared memory regions handing out leases: aligned slices that
// one request owns until it releases them. It is what a client needs to
// register shared memory with a server once and reuse it for every request:
// regions are created with keys unique to this process, each is registered by
// the caller (add_region returns what to register), and a lease and its
// release cost a few microseconds, not a region's creation.
//
// Thread-safe. The arena never talks to a server: growing is two steps,
// add_region() and the caller's registration, so that a failed registration
// can be undone with remove_region() and async callers can await it.
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
  // The region, shared: its mapping outlives the arena's close() while held.
  const std::shared_ptr<Region>& region() const noexcept { return region_; }
  std::byte* data() const noexcept { return region_->data() + offset_; }
  bool live() const noexcept { return state_ != nullptr; }

  // Gives the slice back to the arena. A second release does nothing.
  void release() noexcept;

 private:
  friend class Arena;
  Lease(std::shared_ptr<detail::ArenaState> state, std::shared_ptr<const ArenaRegion> info,
        std::shared_ptr<Region> region, std::size_t index, uint64_t offset, uint64_t size) noexcept;
  std::shared_ptr<detail::ArenaState> state_;  // null once released
  std::shared_ptr<const ArenaRegion> info_;
  std::shared_ptr<Region> region_;
  std::size_t index_ = 0;  // the region's slot in the arena
  uint64_t offset_ = 0;
  uint64_t size_ = 0;
};

class Arena {
 public:
  explicit Arena(ArenaOptions options = {});
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;
  // close()s.
  ~Arena();

  // Creates a region of `size` bytes for leases (register it before leasing
  // from it matters to a server: leases come from it at once). Throws,
  // saying how much is leased, if it would take the arena past max_bytes.
  ArenaRegion add_region(uint64_t size);
  // Removes a region none of whose bytes are leased (its registration
  // failed, say). Returns whether it did.
  bool remove_region(std::string_view name);

  // A lease of `bytes` (rounded up to the alignment), or nullopt if no region
  // has room: then add_region, register, and ask again.
  std::optional<Lease> try_lease(uint64_t bytes);
  // try_lease, throwing (saying how much is leased) instead of nullopt.
  Lease lease(uint64_t bytes);

  uint64_t capacity() const;      // bytes in all regions
  uint64_t leased_bytes() const;  // bytes in live leases
  std::size_t lease_count() const;
  uint64_t max_bytes() const noexcept;
  uint64_t alignment() const noexcept;
  std::vector<ArenaRegion> regions() const;

  // Unlinks every region. Live leases keep their memory mapped and may still
  // be released; no new lease is given. Idempotent.
  void close() noexcept;

 private:
  std::shared_ptr<detail::ArenaState> state_;
};

}  // namespace tritonshm
