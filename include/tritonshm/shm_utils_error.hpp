// triton::client::Error with the public surface and the layout of the one in
// Triton's C++ client library (common.h): a message, IsOk() when it is empty,
// Error::Success, operator<<. Programs without the client library get it
// through tritonshm::shm_utils_standalone, which also defines its members
// (shm_utils_error.cpp). The library behind tritonshm::shm_utils compiles
// against this declaration but defines nothing of it: there the client
// library's Error is the program's one and only Error.
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
