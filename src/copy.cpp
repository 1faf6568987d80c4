#include "tritonshm/copy.hpp"

#include <cstring>

namespace tritonshm {

void copy_bytes(std::byte* dst, const std::byte* src, std::size_t n) {
  if (n != 0) std::memcpy(dst, src, n);
}

}  // namespace tritonshm
