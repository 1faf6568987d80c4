// triton::client::Error's out-of-line members, for programs without Triton's
// client library (which defines them itself): compiled only into
// tritonshm::shm_utils_standalone.
#include "tritonshm/shm_utils_error.hpp"

namespace triton {
namespace client {

const Error Error::Success("");

Error::Error(const std::string& msg) : msg_(msg) {}

std::ostream& operator<<(std::ostream& out, const Error& error) { return out << error.msg_; }

}  // namespace client
}  // namespace triton
