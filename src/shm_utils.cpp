// The five functions of shm_utils.h, compiled once into the library, so that
// the library replaces the client library's libshm_utils_static.a whichever of
// the two shm_utils.h a program includes (their declarations are the same).
//
// Error is declared here by tritonshm/shm_utils_error.hpp, with the layout and
// members of the client library's, but not defined: its constructor comes from
// the client library (tritonshm::shm_utils) or from shm_utils_error.cpp
// (tritonshm::shm_utils_standalone). Only that constructor is called, so the
// program has one Error, whichever defines it.
#include "shm_utils.h"

#include "shm_utils_calls.hpp"

namespace triton {
namespace client {

// An empty message is success, as Error::Success is.
Error CreateSharedMemoryRegion(std::string shm_key, size_t byte_size, int* shm_fd) {
  return Error(tritonshm::shm_utils::create_region(shm_key, byte_size, shm_fd));
}

Error MapSharedMemory(int shm_fd, size_t offset, size_t byte_size, void** shm_addr) {
  return Error(tritonshm::shm_utils::map_region(shm_fd, offset, byte_size, shm_addr));
}

Error CloseSharedMemory(int shm_fd) { return Error(tritonshm::shm_utils::close_descriptor(shm_fd)); }

Error UnlinkSharedMemoryRegion(std::string shm_key) { return Error(tritonshm::shm_utils::unlink_region(shm_key)); }

Error UnmapSharedMemory(void* shm_addr, size_t byte_size) {
  return Error(tritonshm::shm_utils::unmap_region(shm_addr, byte_size));
}

}  // namespace client
}  // namespace triton
