// Internal: the work of the drop-in shm_utils.h (Triton's C++ client
// helpers), free of any Error type: each call returns the failure's message,
// or an empty string on success. shm_utils.cpp wraps them in Error.
#pragma once

#include <cstddef>
#include <string>

namespace tritonshm::shm_utils {

// Opens `key` or creates it (mode 0600): an existing object is reused and
// grown to `byte_size` if smaller, never shrunk; a new one gets its key only
// once it is sized. Either way every page of the first `byte_size` bytes is
// reserved. On success *fd is a descriptor the caller closes; on failure -1,
// with nothing left open and no object of ours left behind.
std::string create_region(const std::string& key, std::size_t byte_size, int* fd);

// Maps `byte_size` bytes of `fd` from `offset` (a multiple of the page size)
// read-write and shared, once they are known to lie inside the object. On
// failure *address is null.
std::string map_region(int fd, std::size_t offset, std::size_t byte_size, void** address);

// Closes a descriptor from create_region.
std::string close_descriptor(int fd);

// Removes the key; an error if no object has it.
std::string unlink_region(const std::string& key);

// Unmaps what map_region returned.
std::string unmap_region(void* address, std::size_t byte_size);

}  // namespace tritonshm::shm_utils
