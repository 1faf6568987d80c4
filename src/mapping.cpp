#include "tritonshm/detail/mapping.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <string>
#include <utility>

#include "parallel.hpp"
#include "tritonshm/error.hpp"

namespace tritonshm::detail {

Mapping::Mapping(int fd, uint64_t offset, uint64_t size) {
  if (size == 0) return;
  if (size > SIZE_MAX || offset > static_cast<uint64_t>(INT64_MAX)) {
    throw SharedMemoryError("mapping " + std::to_string(size) + " bytes: they do not fit the address space");
  }
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, static_cast<off_t>(offset));
  if (p == MAP_FAILED) throw_os_error("mapping " + std::to_string(size) + " bytes", errno);
  data_ = static_cast<std::byte*>(p);
  size_ = size;
}

Mapping::Mapping(Mapping&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

Mapping& Mapping::operator=(Mapping&& other) noexcept {
  if (this != &other) {
    release();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

Mapping::~Mapping() { release(); }

void Mapping::release() noexcept {
  if (data_ != nullptr) ::munmap(data_, size_);
  data_ = nullptr;
  size_ = 0;
}

std::byte* Mapping::release_to_caller() noexcept {
  size_ = 0;
  return std::exchange(data_, nullptr);
}

void Mapping::prefault_unpublished() noexcept {
  if (data_ == nullptr) return;
  const std::size_t page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  // Page faults of one mapping proceed in parallel, so large regions are
  // populated by several threads (chunks aligned to pages).
  split(size_, kPageThreadThreshold, [this, page](std::size_t begin, std::size_t length) {
    const std::size_t start = begin - begin % page;
    const std::size_t end = std::min<std::size_t>(size_, begin + length);
#ifdef MADV_POPULATE_WRITE
    // Linux 5.14+: faults the range in writable without touching its data.
    if (::madvise(data_ + start, end - start, MADV_POPULATE_WRITE) == 0) return;
#endif
    // Older kernels: write one byte per page. Safe only because the object
    // has no name yet, so no other process can be writing it.
    for (std::size_t i = start; i < end; i += page) {
      volatile std::byte* b = data_ + i;
      *b = *b;
    }
  });
}

void Mapping::rebind(int fd, bool populate) {
  if (data_ == nullptr) return;
  // MAP_FIXED replaces the old mapping in one step: the address stays valid.
  if (::mmap(data_, size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED) {
    const int err = errno;
    release();
    throw_os_error("mapping " + std::to_string(size_) + " bytes again by its key", err);
  }
#ifdef MADV_POPULATE_WRITE
  if (populate) (void)::madvise(data_, size_, MADV_POPULATE_WRITE);  // the pages are allocated: cheap faults
#else
  (void)populate;
#endif
}

}  // namespace tritonshm::detail
