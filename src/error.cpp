#include "tritonshm/error.hpp"

#include <cstring>

namespace tritonshm {

void throw_os_error(const std::string& what, int err) {
  throw SharedMemoryError(what + ": " + std::strerror(err) + " (errno " + std::to_string(err) + ")", err);
}

}  // namespace tritonshm
