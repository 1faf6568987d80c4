// A region: a shared memory object together with its mapping and its size, as
// this process sees it. Bounds are checked against the size before any byte is
// touched, and against the object's current size in the kernel, so that a
// region shrunk by another process raises instead of faulting (SIGBUS).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

#include "tritonshm/error.hpp"
#include "tritonshm/mapping.hpp"
#include "tritonshm/shared_memory_object.hpp"

namespace tritonshm {

struct RegionOptions {
  // Permission bits of a created region, applied exactly (no umask).
  mode_t mode = 0600;
  // Allocate every page at creation (posix_fallocate) so that a full /dev/shm
  // is an exception now rather than SIGBUS on the first write.
  bool reserve = true;
  // Also fault every page into this process at creation, so the first write
  // runs at warm-copy speed. Makes creation cost about one page fault per 4 KiB.
  bool prefault = false;
};

class Region {
 public:
  // Creates a new object of `size` bytes and maps it; fails if `key` exists.
  // If anything after shm_open fails, the name is removed again.
  static std::shared_ptr<Region> create(std::string_view key, uint64_t size, const RegionOptions& options = {});
  // Opens and maps an existing object at its current size.
  static std::shared_ptr<Region> open(std::string_view key);
  // The same, or nullptr if no object has this key.
  static std::shared_ptr<Region> try_open(std::string_view key);

  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;

  // The normalized key ("/name").
  const std::string& key() const noexcept { return object_.key(); }
  // The size mapped by this process, fixed when the region was opened.
  uint64_t size() const noexcept { return mapping_->size(); }
  std::byte* data() const noexcept { return mapping_->data(); }
  // True if this process created the object (and so may unlink it).
  bool created() const noexcept { return created_; }
  ObjectIdentity identity() const noexcept { return identity_; }

  // The mapping, shared so that views of it (numpy arrays, spans handed to
  // other code) keep the memory mapped after the region is released.
  const std::shared_ptr<const Mapping>& mapping() const noexcept { return mapping_; }

  // Throws unless [offset, offset + length) lies inside the region. `what`
  // starts the message ("unable to set", "unable to read"). No system call.
  void check_bounds(uint64_t offset, uint64_t length, const char* what) const;
  // check_bounds, and also that the range lies inside the object as the
  // kernel has it now (one fstat): another process may have shrunk it, and a
  // page past its end would raise SIGBUS when touched.
  void check_range(uint64_t offset, uint64_t length, const char* what) const;
  // The same promise without a system call: reads the range's last byte under
  // the SIGBUS guard. Truncation removes pages from the end, so if the last
  // page is backed, the whole range is.
  void check_backed(uint64_t offset, uint64_t length, const char* what) const;

  // Bytes [offset, offset + length), checked as above.
  std::span<std::byte> bytes(uint64_t offset, uint64_t length) const;

  // `count` elements of T at `offset`, checked for bounds and alignment.
  template <class T>
  std::span<T> as(uint64_t offset, uint64_t count) const {
    static_assert(std::is_trivially_copyable_v<T>, "regions hold plain bytes");
    if (count > UINT64_MAX / sizeof(T)) {
      throw SharedMemoryError("unable to read shared memory region '" + key() + "': " + std::to_string(count) +
                              " elements overflow 64 bits");
    }
    std::span<std::byte> b = bytes(offset, count * sizeof(T));
    if (reinterpret_cast<std::uintptr_t>(b.data()) % alignof(T) != 0) {
      throw SharedMemoryError("unable to read shared memory region '" + key() + "': offset " + std::to_string(offset) +
                              " is not aligned to " + std::to_string(alignof(T)) + " bytes");
    }
    return {reinterpret_cast<T*>(b.data()), static_cast<std::size_t>(count)};
  }

  // Copies the parts one after another starting at `offset`. Every bound is
  // checked before the first byte is written: a write that does not fit
  // changes nothing. If another process shrinks the object during the copy,
  // the copy stops and this throws (instead of SIGBUS killing the process).
  void write(uint64_t offset, std::span<const std::span<const std::byte>> parts) const;
  void write(uint64_t offset, const void* data, uint64_t length) const;
  // Copies `length` bytes at `offset` out of the region.
  void read(uint64_t offset, void* out, uint64_t length) const;

  // Removes the region's name if it still names this very object (not one
  // that someone created under the same key after ours was removed). Returns
  // whether it removed anything.
  bool unlink() const;

 private:
  Region(SharedMemoryObject object, bool created);
  [[noreturn]] void throw_shrunk(uint64_t offset, uint64_t length, const char* what) const;
  SharedMemoryObject object_;
  std::shared_ptr<const Mapping> mapping_;
  ObjectIdentity identity_;
  bool created_;
};

}  // namespace tritonshm
