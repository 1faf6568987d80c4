// The copy that moves tensor bytes into and out of regions.
#pragma once

#include <cstddef>
#include <span>
#include <string_view>

namespace tritonshm {

// Copies n bytes between non-overlapping ranges, one of which may lie in a
// shared mapping that another process can shrink. Returns false, instead of
// dying of SIGBUS, if a page of either range stopped being backed during the
// copy (a prefix may then have been copied). Large copies are split across
// threads (see copy.cpp).
[[nodiscard]] bool copy_guarded(std::byte* dst, const std::byte* src, std::size_t n) noexcept;

// Copies each sources[i] to destinations[i] (which has room for it), guarded
// as above; large totals are split across threads by bytes. Returns false if a
// page of a source stopped being backed.
[[nodiscard]] bool copy_each_guarded(std::span<const std::string_view> sources,
                                     std::span<std::byte* const> destinations) noexcept;

// Reads the byte at p under the same guard: false if its page is not backed
// (the object was shrunk below it). No system call unless the page is not yet
// mapped into this process, which costs one minor page fault.
[[nodiscard]] bool probe_readable(const std::byte* p) noexcept;

}  // namespace tritonshm
