// The copy that moves tensor bytes into and out of regions.
#pragma once

#include <cstddef>

namespace tritonshm {

// Copies n bytes; the ranges must not overlap. Large copies are split across
// threads when that is faster on this machine (see copy.cpp).
void copy_bytes(std::byte* dst, const std::byte* src, std::size_t n);

}  // namespace tritonshm
