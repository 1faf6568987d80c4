// The copy that moves tensor bytes into and out of regions.
#pragma once

#include <cstddef>

namespace tritonshm {

// Copies n bytes between non-overlapping ranges, one of which may lie in a
// shared mapping that another process can shrink. Returns false, instead of
// dying of SIGBUS, if a page of either range stopped being backed during the
// copy (a prefix may then have been copied). Large copies are split across
// threads (see copy.cpp).
[[nodiscard]] bool copy_guarded(std::byte* dst, const std::byte* src, std::size_t n) noexcept;

}  // namespace tritonshm
