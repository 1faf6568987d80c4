// Stand-in for the shm_utils.h that Triton's C++ client library installs next
// to its common.h, for tests: the five declarations only. A program whose
// include path finds this one before tritonshm's must link and run the same.
// Written for tritonshm.
#pragma once

#include <cstddef>
#include <string>

#include "common.h"

namespace triton {
namespace client {

Error CreateSharedMemoryRegion(std::string shm_key, size_t byte_size, int* shm_fd);
Error MapSharedMemory(int shm_fd, size_t offset, size_t byte_size, void** shm_addr);
Error CloseSharedMemory(int shm_fd);
Error UnlinkSharedMemoryRegion(std::string shm_key);
Error UnmapSharedMemory(void* shm_addr, size_t byte_size);

}  // namespace client
}  // namespace triton

#define STAND_IN_TRITON_CLIENT_SHM_UTILS_H 1
