// The one exception type of tritonshm. The Python binding maps it to
// tritonshm.SharedMemoryException, so every message is written for the person
// reading a traceback: it names the key, the sizes involved and the OS error.
#pragma once

#include <stdexcept>
#include <string>

namespace tritonshm {

class SharedMemoryError : public std::runtime_error {
 public:
  explicit SharedMemoryError(const std::string& message, int os_error = 0)
      : std::runtime_error(message), os_error_(os_error) {}

  // The errno that caused the failure, or 0 when the failure is not an OS error
  // (bad argument, out of bounds, malformed data).
  int os_error() const noexcept { return os_error_; }

 private:
  int os_error_;
};

// Throws SharedMemoryError with "<what>: <strerror(err)> (errno <err>)".
[[noreturn]] void throw_os_error(const std::string& what, int err);

}  // namespace tritonshm
