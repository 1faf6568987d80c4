// The process-wide table of handles, with the semantics of
// tritonclient.utils.shared_memory: handles are counted per key, destroying a
// handle releases one count, and the name is unlinked when the last handle of
// a region that this process created is destroyed. A region that was only
// attached to, or created by the parent of a forked child, is never unlinked
// by us. The table only counts: acquiring and removing are the Region's.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tritonshm/creation_tags.hpp"
#include "tritonshm/region.hpp"

namespace tritonshm {

// One counted handle on a region. Move-only. Destroying it (explicitly, or by
// letting it go out of scope) releases its count exactly once.
class Handle {
 public:
  Handle() noexcept;  // a handle on nothing; every use raises
  Handle(Handle&&) noexcept;
  Handle& operator=(Handle&&) noexcept;
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  // Releases the handle if destroy() was not called. Errors here (an unlink
  // the kernel refuses) are swallowed: call destroy() to see them.
  ~Handle();

  // The name the server knows the region by (Triton's "triton_shm_name").
  const std::string& name() const;
  // The key as the caller spelled it.
  const std::string& key() const;
  bool live() const;

  // The region, shared: a caller that holds it may keep using the memory after
  // another thread destroys this handle. Throws if the handle was destroyed.
  std::shared_ptr<Region> region() const;

  // Releases this handle; unlinks the name if it was the last handle of a
  // region created by this process (not by the parent of a forked child).
  // A second destroy() throws.
  void destroy();

 private:
  friend class HandleFactory;
  struct State;
  explicit Handle(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

// A handle on the region `shm_key`, acquired as the tag says:
// open_or_create attaches to an existing region (its size may differ from
// byte_size: compare handle.region()->size()) or creates it; create_only
// fails if it exists. Regions this process already holds are shared, not
// mapped twice. Failures say "unable to create the shared memory region".
Handle create_shared_memory_region(std::string triton_shm_name, std::string_view shm_key, uint64_t byte_size,
                                   open_or_create_t, const RegionOptions& options = {});
Handle create_shared_memory_region(std::string triton_shm_name, std::string_view shm_key, uint64_t byte_size,
                                   create_only_t, const RegionOptions& options = {});
// open_or_create, as tritonclient's create_only=False default.
inline Handle create_shared_memory_region(std::string triton_shm_name, std::string_view shm_key, uint64_t byte_size,
                                          const RegionOptions& options = {}) {
  return create_shared_memory_region(std::move(triton_shm_name), shm_key, byte_size, open_or_create, options);
}

// A handle on the existing region `shm_key`, never creating one: throws
// (errno ENOENT) if it does not exist. Such a handle never unlinks.
Handle attach_shared_memory_region(std::string triton_shm_name, std::string_view shm_key);

// The keys this process holds handles on, as first spelled, oldest first.
std::vector<std::string> mapped_shared_memory_regions();

// How many handles this process holds on `key` (0 if none).
std::size_t handle_count(std::string_view key);

}  // namespace tritonshm
