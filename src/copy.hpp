// Internal: the copies that move tensor bytes into and out of regions.
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string_view>

#include "fault_guard.hpp"

namespace tritonshm::detail {

// Copies n bytes between non-overlapping ranges, either of which may lie in
// a mapping that another process can shrink. Returns the fault, instead of
// dying of SIGBUS, if a page of either range stopped being backed (a prefix
// may then have been copied). Large copies are split across threads.
[[nodiscard]] std::optional<Fault> copy_guarded(std::byte* dst, const std::byte* src, std::size_t n) noexcept;

// Copies each sources[i] to destinations[i] (which has room for it), guarded
// as above; large totals are split across threads by bytes.
[[nodiscard]] std::optional<Fault> copy_each_guarded(std::span<const std::string_view> sources,
                                                     std::span<std::byte* const> destinations) noexcept;

// Reads the byte at p under the guard: the fault if its page is not backed
// (the object was shrunk below it). No system call unless the page is not yet
// mapped into this process, which costs one minor page fault.
[[nodiscard]] std::optional<Fault> probe_readable(const std::byte* p) noexcept;

}  // namespace tritonshm::detail
