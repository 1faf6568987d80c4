// Shared memory keys. POSIX names a shared memory object "/name"; Triton and
// tritonclient accept the key with or without the leading slash, and both
// spellings must reach the same object in /dev/shm.
#pragma once

#include <string>
#include <string_view>

namespace tritonshm::detail {

// Where Linux keeps POSIX shared memory objects: one file per key.
inline constexpr std::string_view kShmDirectory = "/dev/shm";

// Returns the key in the form shm_open expects ("/name"), or throws
// SharedMemoryError if no POSIX object can carry that name: empty, only "/",
// a '/' or NUL inside the name, or longer than NAME_MAX.
std::string normalize_key(std::string_view key);

// The file that backs a normalized key: "/dev/shm/name".
std::string key_path(std::string_view normalized_key);

}  // namespace tritonshm::detail
