// A drop-in for the shm_utils.h of Triton's C++ client library: the same five
// functions in triton::client, with the same open-or-create, the same results
// for the same calls and the same message prefixes (the key, the OS error and
// a hint follow), built on tritonshm's core. Where the original is unsafe,
// this one is not; docs/guarantees.md lists each difference with its test:
// it never shrinks an existing object, releases the descriptor and the object
// when sizing fails, reserves every page (a full /dev/shm is an error, not a
// later SIGBUS), leaves *shm_addr null on failure, and refuses an unaligned
// offset or a mapping past the object's end with a message saying why.
//
// Error comes from the program's "common.h" (the client library's), exactly
// as with the original header. Linked through tritonshm::shm_utils_standalone
// (no client library), it comes from tritonshm instead.
#pragma once

#include <cstddef>
#include <string>

#ifdef TRITONSHM_SHM_UTILS_STANDALONE_ERROR
#include "tritonshm/shm_utils_error.hpp"
#else
#include "common.h"
#endif
#include "tritonshm/shm_utils_calls.hpp"

namespace triton {
namespace client {
namespace tritonshm_detail {

inline Error to_error(const std::string& failure) { return failure.empty() ? Error::Success : Error(failure); }

}  // namespace tritonshm_detail

// Opens or creates the region `shm_key` with at least `byte_size` bytes, every
// page reserved, and returns its descriptor in *shm_fd (-1 on failure).
inline Error CreateSharedMemoryRegion(std::string shm_key, size_t byte_size, int* shm_fd) {
  return tritonshm_detail::to_error(tritonshm::shm_utils::create_region(shm_key, byte_size, shm_fd));
}

// Maps `byte_size` bytes of the region from `offset` (a multiple of the page
// size) into *shm_addr (null on failure).
inline Error MapSharedMemory(int shm_fd, size_t offset, size_t byte_size, void** shm_addr) {
  return tritonshm_detail::to_error(tritonshm::shm_utils::map_region(shm_fd, offset, byte_size, shm_addr));
}

// Closes the descriptor; mappings made from it stay valid.
inline Error CloseSharedMemory(int shm_fd) {
  return tritonshm_detail::to_error(tritonshm::shm_utils::close_descriptor(shm_fd));
}

// Removes the region's key; mappings stay valid until unmapped.
inline Error UnlinkSharedMemoryRegion(std::string shm_key) {
  return tritonshm_detail::to_error(tritonshm::shm_utils::unlink_region(shm_key));
}

// Unmaps what MapSharedMemory returned.
inline Error UnmapSharedMemory(void* shm_addr, size_t byte_size) {
  return tritonshm_detail::to_error(tritonshm::shm_utils::unmap_region(shm_addr, byte_size));
}

}  // namespace client
}  // namespace triton
