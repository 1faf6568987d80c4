#include "common.h"

namespace triton {
namespace client {

const Error Error::Success;

Error::Error(const std::string& msg) : msg_(msg) {}

std::ostream& operator<<(std::ostream& out, const Error& error) { return out << error.msg_; }

}  // namespace client
}  // namespace triton
