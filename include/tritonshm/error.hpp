// The one exception type of tritonshm. The Python binding raises it as
// tritonshm.SharedMemoryException.
//
// A message is "<operation text> '<key>': <detail>". The operation texts are
// tritonclient's own ("unable to create the shared memory region", "unable to
// set the shared memory region"), because code written against tritonclient
// matches them with regexes; our detail (sizes, the OS error, a hint) follows.
// Lower layers throw a detail only; the public operation that called them adds
// its text exactly once (with_operation).
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace tritonshm {

enum class Operation { none, create, open, set, read, destroy, remove, inspect, lease };

// Why a request for memory was refused, for callers that act on it (the
// request layer sends tensors inline at the limit) without reading the text.
enum class Reason {
  none,
  limit_reached,  // more memory would pass a configured limit
  closed,         // the arena is closed
  forked_child,   // the arena belongs to the parent of this forked process
};

// The reason's name as the Python binding shows it ("" for none).
std::string_view reason_name(Reason reason) noexcept;

// The text a message about `op` starts with ("" for none).
std::string_view operation_text(Operation op) noexcept;

class SharedMemoryError : public std::runtime_error {
 public:
  // A failure below any public operation: a detail, later given its operation.
  explicit SharedMemoryError(std::string detail, int os_error = 0);
  SharedMemoryError(Operation op, std::string key, std::string detail, int os_error = 0);
  SharedMemoryError(Operation op, std::string key, std::string detail, Reason reason);

  // The errno that caused the failure, or 0 when the failure is not an OS error
  // (bad argument, out of bounds, malformed data).
  int os_error() const noexcept { return os_error_; }
  Operation operation() const noexcept { return operation_; }
  // The key the operation was about, normalized where known; may be empty.
  const std::string& key() const noexcept { return key_; }
  const std::string& detail() const noexcept { return detail_; }
  Reason reason() const noexcept { return reason_; }

 private:
  Operation operation_;
  Reason reason_ = Reason::none;
  std::string key_;
  std::string detail_;
  int os_error_;
};

// The key in quotes, control characters escaped ('a\x00b').
std::string quote_key(std::string_view key);

// "<strerror(err)> (errno <err>)", the way every message names an OS error.
std::string os_error_text(int err);

// Throws SharedMemoryError with detail "<what>: <strerror(err)> (errno <err>)".
[[noreturn]] void throw_os_error(const std::string& what, int err);

// Runs fn(); a SharedMemoryError without an operation leaves it as one of `op`
// on `key`. Errors that already name their operation pass unchanged.
template <class F>
decltype(auto) with_operation(Operation op, std::string_view key, F&& fn) {
  try {
    return fn();
  } catch (const SharedMemoryError& e) {
    if (e.operation() != Operation::none) throw;
    throw SharedMemoryError(op, std::string(key), e.detail(), e.os_error());
  }
}

}  // namespace tritonshm
