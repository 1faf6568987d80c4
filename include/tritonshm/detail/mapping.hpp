// A shared read-write mapping of a file descriptor. Owning it keeps the pages
// addressable; the fd may be closed and the name unlinked meanwhile.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tritonshm::detail {

class Mapping {
 public:
  Mapping() = default;
  // Maps `size` bytes of `fd` from its start. A size of 0 maps nothing (mmap
  // refuses it) and data() is nullptr.
  Mapping(int fd, uint64_t size) : Mapping(fd, 0, size) {}
  // Maps `size` bytes of `fd` from `offset`, a multiple of the page size.
  Mapping(int fd, uint64_t offset, uint64_t size);

  Mapping(Mapping&& other) noexcept;
  Mapping& operator=(Mapping&& other) noexcept;
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping();

  std::byte* data() const noexcept { return data_; }
  uint64_t size() const noexcept { return size_; }

  // Faults every page in for writing now, so the first copy into a fresh
  // region runs at warm speed. Only for an object nobody else can see yet:
  // where the kernel lacks MADV_POPULATE_WRITE it rewrites one byte per page.
  void prefault_unpublished() noexcept;
  // Maps `fd` (the same object, opened again) in place of the current file,
  // at the same address, so that /proc/PID/maps shows fd's path; with
  // `populate`, faults the pages in again (MADV_POPULATE_WRITE, where the
  // kernel has it). Throws if the kernel refuses, leaving nothing mapped.
  void rebind(int fd, bool populate);

  // Hands the pages to the caller, who unmaps them (munmap(data, size));
  // this object then maps nothing.
  std::byte* release_to_caller() noexcept;

 private:
  void release() noexcept;
  std::byte* data_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace tritonshm::detail
