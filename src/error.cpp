#include "tritonshm/error.hpp"

#include <cstring>

namespace tritonshm {
namespace {

std::string compose(Operation op, const std::string& key, const std::string& detail) {
  std::string text(operation_text(op));
  if (text.empty()) return detail;
  if (!key.empty()) text.append(" ").append(quote_key(key));
  if (!detail.empty()) text.append(": ").append(detail);
  return text;
}

}  // namespace

std::string quote_key(std::string_view key) {
  // Control characters (a NUL above all, which would end a C string) are
  // shown escaped, so the message is whole and says what the key holds.
  std::string out = "'";
  for (const char c : key) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      static constexpr char hex[] = "0123456789abcdef";
      out += "\\x";
      out += hex[u >> 4];
      out += hex[u & 15];
    } else {
      out += c;
    }
  }
  return out + "'";
}

std::string_view operation_text(Operation op) noexcept {
  switch (op) {
    case Operation::none:
      return "";
    // tritonclient's texts, word for word.
    case Operation::create:
      return "unable to create the shared memory region";
    case Operation::set:
      return "unable to set the shared memory region";
    // Ours, in the same form (tritonclient raises no text of its own there).
    case Operation::open:
      return "unable to open the shared memory region";
    case Operation::read:
      return "unable to read the shared memory region";
    case Operation::destroy:
      return "unable to destroy the shared memory region";
    case Operation::remove:
      return "unable to remove the shared memory region";
    case Operation::inspect:
      return "unable to inspect shared memory";
    case Operation::lease:
      return "unable to lease shared memory";
  }
  return "";
}

SharedMemoryError::SharedMemoryError(std::string detail, int os_error)
    : std::runtime_error(detail), operation_(Operation::none), detail_(std::move(detail)), os_error_(os_error) {}

SharedMemoryError::SharedMemoryError(Operation op, std::string key, std::string detail, int os_error)
    : std::runtime_error(compose(op, key, detail)),
      operation_(op),
      key_(std::move(key)),
      detail_(std::move(detail)),
      os_error_(os_error) {}

SharedMemoryError::SharedMemoryError(Operation op, std::string key, std::string detail, Reason reason)
    : SharedMemoryError(op, std::move(key), std::move(detail)) {
  reason_ = reason;
}

std::string_view reason_name(Reason reason) noexcept {
  switch (reason) {
    case Reason::none:
      return "";
    case Reason::limit_reached:
      return "limit_reached";
    case Reason::closed:
      return "closed";
    case Reason::forked_child:
      return "forked_child";
  }
  return "";
}

std::string os_error_text(int err) { return std::string(std::strerror(err)) + " (errno " + std::to_string(err) + ")"; }

void throw_os_error(const std::string& what, int err) {
  const std::string os_text = os_error_text(err);
  throw SharedMemoryError(what.empty() ? os_text : what + ": " + os_text, err);
}

}  // namespace tritonshm
