// The process-wide table of handles, with the semantics of
// tritonclient.utils.shared_memory: handles are counted per key, destroying a
// handle releases one count, and the name is unlinked when the last handle of
// a region that this process created is destroyed. A region that was only
// attached to is never unlinked by us.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tritonshm/region.hpp"

namespace tritonshm {

// One counted handle on a region. Move-only. Destroying it (explicitly, or by
// letting it go out of scope) releases its count exactly once.
class Handle {
 public:
  Handle() = default;  // a handle on nothing; every use raises
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
  // region created by this process. A second destroy() throws.
  void destroy();

 private:
  friend class HandleFactory;
  struct State;
  explicit Handle(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

// Returns a handle on the region `shm_key`. With create_only false an existing
// region is attached to (its size may differ from byte_size: compare
// handle.region()->size()); otherwise it is created, and with create_only true
// an existing one is an error. Regions this process already holds are shared,
// not mapped twice.
Handle create_shared_memory_region(std::string triton_shm_name, std::string_view shm_key, uint64_t byte_size,
                                   bool create_only = false, const RegionOptions& options = {});

// Returns a handle on the existing region `shm_key`, never creating one:
// throws (errno ENOENT) if it does not exist. Such a handle never unlinks.
Handle attach_shared_memory_region(std::string triton_shm_name, std::string_view shm_key);

// The keys this process holds handles on, as first spelled, oldest first.
std::vector<std::string> mapped_shared_memory_regions();

// How many handles this process holds on `key` (0 if none).
std::size_t handle_count(std::string_view key);

}  // namespace tritonshm
