#include "tritonshm/detail/key.hpp"

#include <climits>

#include "tritonshm/error.hpp"

namespace tritonshm::detail {

std::string normalize_key(std::string_view key) {
  std::string_view name = key;
  if (!name.empty() && name.front() == '/') name.remove_prefix(1);
  auto quoted = [&] { return quote_key(key); };
  if (name.empty()) {
    throw SharedMemoryError("invalid shared memory key " + quoted() + ": the key names no object (empty, or only '/')");
  }
  if (name.find('/') != std::string_view::npos) {
    throw SharedMemoryError("invalid shared memory key " + quoted() +
                            ": '/' is only allowed as the first character (POSIX shared memory has no folders)");
  }
  if (name.find('\0') != std::string_view::npos) {
    throw SharedMemoryError("invalid shared memory key " + quoted() + ": contains a NUL character");
  }
  if (name == "." || name == "..") {
    throw SharedMemoryError("invalid shared memory key " + quoted() + ": '.' and '..' name no object");
  }
  // glibc maps the key to a file in /dev/shm, so the limit is the file name's.
  if (name.size() > NAME_MAX) {
    throw SharedMemoryError("invalid shared memory key: " + std::to_string(name.size()) + " bytes long, the limit is " +
                            std::to_string(NAME_MAX) + " (NAME_MAX)");
  }
  std::string normalized;
  normalized.reserve(name.size() + 1);
  normalized.push_back('/');
  normalized.append(name);
  return normalized;
}

std::string key_path(std::string_view normalized_key) {
  return std::string(kShmDirectory) + std::string(normalized_key);
}

}  // namespace tritonshm::detail
