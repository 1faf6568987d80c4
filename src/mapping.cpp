#include "tritonshm/detail/mapping.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <string>
#include <utility>

#include "fault_guard.hpp"
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

namespace {

// Write-faults one page after another without writing: an atomic add of 0, so
// a peer's write to the same byte meanwhile is never lost. Not instrumented by
// AddressSanitizer, whose check of each access would fault in a shadow page
// per 8 of ours.
__attribute__((no_sanitize("address"))) void touch_pages(std::byte* p, std::size_t n, std::size_t page) noexcept {
  for (std::size_t i = 0; i < n; i += page) {
    __atomic_fetch_add(reinterpret_cast<volatile unsigned char*>(p + i), 0, __ATOMIC_RELAXED);
  }
}

// Faults [p, p + n) in for writing; false if a page could not be backed.
bool populate(std::byte* p, std::size_t n, std::size_t page) noexcept {
#ifdef MADV_POPULATE_WRITE
  int rc;
  do {
    rc = ::madvise(p, n, MADV_POPULATE_WRITE);
  } while (rc != 0 && errno == EINTR);
  if (rc == 0) return true;
#endif
  // Kernels before 5.14 (EINVAL), or a failure the guard is to tell (EFAULT:
  // a page past the end of the object).
  auto touch = [p, n, page]() noexcept { touch_pages(p, n, page); };
  return !guarded(touch);
}

}  // namespace

void Mapping::prefault() {
  if (data_ == nullptr) return;
  const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  std::atomic<bool> failed{false};
  // Page faults of one mapping proceed in parallel, so large regions are
  // populated by several threads (chunks aligned to pages).
  split(size_, kPageThreadThreshold, [&](std::size_t begin, std::size_t length) {
    const std::size_t start = begin - begin % page;
    const std::size_t end = std::min<std::size_t>(size_, begin + length);
    if (!populate(data_ + start, end - start, page)) failed = true;
  });
  if (failed) {
    throw SharedMemoryError("faulting its " + std::to_string(size_) +
                            " bytes in (prefault): a page could not be backed (/dev/shm is full and the region was "
                            "created without reserving its pages, or another process shrank it)");
  }
}

void Mapping::rebind(int fd) {
  if (data_ == nullptr) return;
  // MAP_FIXED replaces the old mapping in one step: the address stays valid.
  if (::mmap(data_, size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED) {
    const int err = errno;
    release();
    throw_os_error("mapping " + std::to_string(size_) + " bytes again by its key", err);
  }
}

}  // namespace tritonshm::detail
