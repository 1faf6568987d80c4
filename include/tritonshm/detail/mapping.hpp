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

  // Faults every page in for writing, once, so that the first copy into a
  // fresh region runs at warm speed; changes no byte, so other processes may
  // use the object meanwhile. MADV_POPULATE_WRITE (Linux 5.14+), else an
  // atomic add of 0 to one byte per page under the SIGBUS guard. Throws if a
  // page cannot be backed (an object created without reserving its pages on a
  // full /dev/shm, or one that another process shrank).
  void prefault();
  // Maps `fd` (the same object, opened again) in place of the current file,
  // at the same address, so that /proc/PID/maps shows fd's path. The pages
  // are not mapped in again: prefault after this. Throws if the kernel
  // refuses, leaving nothing mapped.
  void rebind(int fd);

  // Hands the pages to the caller, who unmaps them (munmap(data, size));
  // this object then maps nothing.
  std::byte* release_to_caller() noexcept;

 private:
  void release() noexcept;
  std::byte* data_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace tritonshm::detail
