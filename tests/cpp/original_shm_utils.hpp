// A model of what Triton's C++ client library does in CreateSharedMemoryRegion
// and MapSharedMemory, reduced to their system calls as its public source
// makes them (shm_open O_RDWR | O_CREAT, ftruncate to the size asked; mmap
// with no check). The tests of test_shm_utils.cpp run each unsafe case through
// this model as well, to show that the original fails the check ours passes.
// Messages carry only the client library's prefixes, as its own do.
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <string>

namespace original_shm_utils {

inline std::string create(const std::string& key, std::size_t byte_size, int* fd) {
  *fd = ::shm_open(key.c_str(), O_RDWR | O_CREAT, S_IRUSR | S_IWUSR);
  if (*fd < 0) return "unable to get shared memory descriptor for shared-memory key '" + key + "'";
  if (::ftruncate(*fd, static_cast<off_t>(byte_size)) != 0) {
    // The descriptor stays open and the object stays behind.
    return "unable to initialize shared-memory key '" + key + "' to requested size: " + std::to_string(byte_size) +
           " bytes";
  }
  return "";
}

inline std::string map(int fd, std::size_t offset, std::size_t byte_size, void** address) {
  *address = ::mmap(nullptr, byte_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, static_cast<off_t>(offset));
  if (*address == MAP_FAILED)
    return "unable to process address space or shared-memory descriptor: " + std::to_string(fd);
  return "";
}

}  // namespace original_shm_utils
