// A drop-in for the shm_utils.h of Triton's C++ client library: the same five
// functions in triton::client with the same declarations, the same
// open-or-create, the same results for the same calls and the same message
// prefixes (the OS error and a hint follow), built on tritonshm's core. Where
// the original is unsafe this one is not; docs/guarantees.md lists each
// difference with its test. In short: it never shrinks an existing object,
// releases the descriptor and the object when sizing fails, reserves every
// page (a full /dev/shm is an error, not a later SIGBUS), leaves *shm_addr
// null on failure, and refuses an unaligned offset or a mapping past the
// object's end with a message saying why.
//
// Error comes from the program's "common.h" (the client library's), exactly
// as with the original header. Linked through tritonshm::shm_utils_standalone
// (a program without the client library), it comes from tritonshm instead.
#pragma once

#include <cstddef>
#include <string>

#ifdef TRITONSHM_SHM_UTILS_STANDALONE_ERROR
#include "tritonshm/shm_utils_error.hpp"
#else
#include "common.h"
#endif

namespace triton {
namespace client {

// Opens the region `shm_key` or creates it (mode 0600), with at least
// `byte_size` bytes, every page reserved; *shm_fd is its descriptor (-1 on
// failure). An existing larger region keeps its size.
Error CreateSharedMemoryRegion(std::string shm_key, size_t byte_size, int* shm_fd);

// Maps `byte_size` bytes of the region from `offset` (a multiple of the page
// size, and inside the region) into *shm_addr (null on failure).
Error MapSharedMemory(int shm_fd, size_t offset, size_t byte_size, void** shm_addr);

// Closes the descriptor; mappings made from it stay valid.
Error CloseSharedMemory(int shm_fd);

// Removes the region's key (an error if none has it); mappings stay valid.
Error UnlinkSharedMemoryRegion(std::string shm_key);

// Unmaps what MapSharedMemory returned.
Error UnmapSharedMemory(void* shm_addr, size_t byte_size);

}  // namespace client
}  // namespace triton
