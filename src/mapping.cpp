#include "tritonshm/mapping.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <utility>

#include "tritonshm/error.hpp"

namespace tritonshm {

Mapping::Mapping(int fd, uint64_t size, const char* what_for_errors) {
  if (size == 0) return;
  if (size > SIZE_MAX) {
    throw SharedMemoryError(std::string("unable to map shared memory region ") + what_for_errors + ": " +
                            std::to_string(size) + " bytes do not fit the address space");
  }
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    throw_os_error(std::string("unable to map shared memory region ") + what_for_errors + " (" + std::to_string(size) +
                       " bytes)",
                   errno);
  }
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

void Mapping::prefault() {
  if (data_ == nullptr) return;
#ifdef MADV_POPULATE_WRITE
  // Linux 5.14+: one call faults in every page writable, without touching data.
  if (::madvise(data_, size_, MADV_POPULATE_WRITE) == 0) return;
#endif
  // Older kernels: write one byte per page. The pages are fresh (zero) or
  // already hold data, so writing back what is there changes nothing.
  const long page = ::sysconf(_SC_PAGESIZE);
  for (uint64_t i = 0; i < size_; i += static_cast<uint64_t>(page)) {
    volatile std::byte* b = data_ + i;
    *b = *b;
  }
}

}  // namespace tritonshm
