// A region: a shared memory object together with its mapping, as this process
// sees it. Bounds are checked before any byte is touched, and every access to
// the mapping runs under a SIGBUS guard, so that a region shrunk by another
// process raises instead of killing this one.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "tritonshm/creation_tags.hpp"
#include "tritonshm/detail/mapping.hpp"
#include "tritonshm/detail/shared_memory_object.hpp"
#include "tritonshm/error.hpp"

namespace tritonshm {

namespace detail {

// `count` elements of T at `offset` of a Region or a Slice (`of`), through its
// bytes(): checked for overflow, bounds and backing, and for alignment.
template <class T, class Bytes>
std::span<T> elements_of(const Bytes& of, uint64_t offset, uint64_t count) {
  static_assert(std::is_trivially_copyable_v<T>, "regions hold plain bytes");
  if (count > UINT64_MAX / sizeof(T)) {
    throw SharedMemoryError(Operation::read, of.key(), std::to_string(count) + " elements overflow 64 bits");
  }
  std::span<std::byte> b = of.bytes(offset, count * sizeof(T));
  if (reinterpret_cast<std::uintptr_t>(b.data()) % alignof(T) != 0) {
    throw SharedMemoryError(
        Operation::read, of.key(),
        "offset " + std::to_string(offset) + " is not aligned to " + std::to_string(alignof(T)) + " bytes");
  }
  return {reinterpret_cast<T*>(b.data()), static_cast<std::size_t>(count)};
}

}  // namespace detail

struct RegionOptions {
  // Permission bits of a created region, applied exactly (no umask).
  mode_t mode = 0600;
  // Allocate every page at creation (posix_fallocate) so that a full /dev/shm
  // is an exception now rather than SIGBUS on the first write.
  bool reserve = true;
  // Also fault every page into this process's mapping at creation, once, so
  // the first write runs at warm-copy speed. Makes creation cost one page
  // fault per 4 KiB.
  bool prefault = false;
};

class Region {
 public:
  // Creates a new region of `size` bytes; fails if `key` exists. All page
  // work happens before the key is published: nobody sees it half made, and a
  // failure leaves nothing behind.
  static std::shared_ptr<Region> create(std::string_view key, uint64_t size, const RegionOptions& options = {});
  // Opens and maps an existing region at its current size.
  static std::shared_ptr<Region> open(std::string_view key);
  // Opens `key` if it exists, else creates it (a few rounds settle a race with
  // another process creating or removing it meanwhile).
  static std::shared_ptr<Region> open_or_create(std::string_view key, uint64_t size, const RegionOptions& options = {});
  // The three by tag.
  static std::shared_ptr<Region> acquire(create_only_t, std::string_view key, uint64_t size,
                                         const RegionOptions& options = {}) {
    return create(key, size, options);
  }
  static std::shared_ptr<Region> acquire(open_only_t, std::string_view key, uint64_t = 0, const RegionOptions& = {}) {
    return open(key);
  }
  static std::shared_ptr<Region> acquire(open_or_create_t, std::string_view key, uint64_t size,
                                         const RegionOptions& options = {}) {
    return open_or_create(key, size, options);
  }

  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;

  // The normalized key ("/name").
  const std::string& key() const noexcept { return object_.key(); }
  // The size mapped by this process, fixed when the region was opened.
  uint64_t size() const noexcept { return mapping_->size(); }
  std::byte* data() const noexcept { return mapping_->data(); }
  // True in the process that created the region (false in one that opened
  // it, and in a child made by fork()): only the owner removes the name.
  bool owns() const noexcept { return object_.owns(); }
  detail::ObjectIdentity identity() const noexcept { return object_.identity(); }

  // The mapping, shared so that views of it (numpy arrays, spans handed to
  // other code) keep the memory mapped after the region is released.
  const std::shared_ptr<const detail::Mapping>& mapping() const noexcept { return mapping_; }

  // The size the kernel has now (another process may have changed it). One fstat.
  uint64_t current_size() const { return object_.current_size(); }

  // Throws (as a failure of `op`) unless [offset, offset + length) lies inside
  // the region. No system call.
  void check_bounds(uint64_t offset, uint64_t length, Operation op) const;
  // check_bounds, and also that the range is still backed: reads its last byte
  // under the SIGBUS guard (truncation removes pages from the end, so if the
  // last page is backed, the whole range is). No system call of its own; the
  // guard makes one now and then (once per tick of the coarse clock; two per
  // call in a thread that blocks SIGBUS), and the read costs a minor page
  // fault if this process has not touched that page yet.
  void check_backed(uint64_t offset, uint64_t length, Operation op) const;

  // Bytes [offset, offset + length), checked as check_backed does. Touching
  // them later is plain memory: a shrink after this call can still SIGBUS.
  std::span<std::byte> bytes(uint64_t offset, uint64_t length) const;

  // `count` elements of T at `offset`, checked as bytes() does and for alignment.
  template <class T>
  std::span<T> as(uint64_t offset, uint64_t count) const {
    return detail::elements_of<T>(*this, offset, count);
  }

  // Copies the parts one after another starting at `offset`. Every bound is
  // checked before the first byte is written: a write that does not fit
  // changes nothing. If another process shrinks the region during the copy,
  // or a part's own memory stops being readable, the copy stops and this
  // throws, saying which of the two it was (instead of SIGBUS).
  void write(uint64_t offset, std::span<const std::span<const std::byte>> parts) const;
  void write(uint64_t offset, const void* data, uint64_t length) const;
  // Serializes a BYTES tensor (tensor_codec.hpp's format) at `offset`,
  // checked and guarded as write() is.
  void write_bytes(uint64_t offset, std::span<const std::string_view> elements) const;
  // Copies `length` bytes at `offset` out of the region, guarded the same way.
  void read(uint64_t offset, void* out, uint64_t length) const;
  // Decodes `count` elements of a BYTES tensor at `offset` (see
  // tensor_codec.hpp) into views of the mapping, under the SIGBUS guard. The
  // views are valid while mapping() lives.
  std::vector<std::string_view> read_bytes(uint64_t offset, uint64_t count) const;

  // Copies elements (views into this region, as read_bytes gives) to their
  // destinations, guarded as read() is; large totals are split across threads.
  void copy_out(std::span<const std::string_view> elements, std::span<std::byte* const> destinations) const;

  // Removes the region's name if this process owns it and the name still
  // names this very object. Returns whether it removed anything.
  bool remove_if_owned() const;

 private:
  Region(detail::SharedMemoryObject object, std::shared_ptr<const detail::Mapping> mapping);
  detail::SharedMemoryObject object_;
  std::shared_ptr<const detail::Mapping> mapping_;
};

}  // namespace tritonshm
