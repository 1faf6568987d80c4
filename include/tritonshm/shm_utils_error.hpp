// triton::client::Error for programs built without Triton's C++ client
// library (the target tritonshm::shm_utils_standalone): the same public
// surface as the client library's common.h (a message, IsOk() when it is
// empty, Error::Success, operator<<), so code written against the client's
// helpers compiles unchanged. A program that has the client library must not
// use it: there the client library defines Error, and shm_utils.h takes it
// from the program's common.h.
#pragma once

#include <ostream>
#include <string>

namespace triton {
namespace client {

class Error {
 public:
  explicit Error(const std::string& msg = "");

  // Empty when the call succeeded.
  const std::string& Message() const { return msg_; }
  bool IsOk() const { return msg_.empty(); }

  static const Error Success;

 private:
  friend std::ostream& operator<<(std::ostream& out, const Error& error);
  std::string msg_;
};

}  // namespace client
}  // namespace triton
