// Stand-in for the common.h of Triton's C++ client library, for tests: only
// what shm_utils.h needs, triton::client::Error, with the client library's
// public surface (explicit construction from a message, Message(), IsOk(),
// Error::Success, operator<<) and its members defined out of line, in the
// "library" (common.cc), as the client library does. Written for tritonshm.
#pragma once

#include <ostream>
#include <string>

namespace triton {
namespace client {

class Error {
 public:
  explicit Error(const std::string& msg = "");
  const std::string& Message() const { return msg_; }
  bool IsOk() const { return msg_.empty(); }
  static const Error Success;

 private:
  friend std::ostream& operator<<(std::ostream&, const Error&);
  std::string msg_;
};

}  // namespace client
}  // namespace triton

// Lets the program check that shm_utils.h took Error from here.
#define STAND_IN_TRITON_CLIENT_COMMON_H 1
