// Internal: the copies that move tensor bytes into and out of regions, with
// the copy engine's policy (copy_engine.hpp): memcpy below the streaming
// threshold, streaming stores above, threads from the thread threshold.
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string_view>

#include "fault_guard.hpp"

namespace tritonshm::detail {

// Copies from this size on use streaming stores, as the benchmark suite
// measures it (README, Performance): into a warm region, memcpy wins while the
// destination fits the caches; past them, streaming stores win, as they skip
// reading the destination lines first.
inline constexpr std::size_t kStreamThreshold = std::size_t{8} << 20;
// Within a streamed BYTES tensor, elements shorter than this are memcpy'd:
// aligning the stores of a short element costs more than it saves.
inline constexpr std::size_t kStreamElementMin = 4096;

// Who reads a copy's destination next, which decides how it is written.
enum class Destination {
  // Another process (a region): from kStreamThreshold on, streaming stores,
  // which skip loading the destination's lines into this core's cache.
  shared,
  // This process (a fresh array, bytes objects): ordinary stores. Its pages are
  // usually new, and the kernel's zeroing has just put them in the cache, where
  // streaming stores would have to evict them (10-15% slower, measured on
  // 1 GiB of BYTES decoded into bytes objects and serialized into an array).
  local,
};

// Copies n bytes between non-overlapping ranges, either of which may lie in
// a mapping that another process can shrink. Returns the fault, instead of
// dying of SIGBUS, if a page of either range stopped being backed (a prefix
// may then have been copied). Fenced: all of it is visible to other processes
// when this returns.
[[nodiscard]] std::optional<Fault> copy_guarded(std::byte* dst, const std::byte* src, std::size_t n,
                                                Destination to) noexcept;

// Copies each sources[i] to destinations[i] (which has room for it), guarded
// and fenced as above; large totals are split across threads by bytes.
[[nodiscard]] std::optional<Fault> copy_each_guarded(std::span<const std::string_view> sources,
                                                     std::span<std::byte* const> destinations, Destination to) noexcept;

// Writes `elements` as a serialized BYTES tensor at out, which has room for
// its serialized_size bytes: serialized_bytes_size(elements), which the caller
// computed (and so checked that every element fits its 4-byte length).
// Guarded and fenced as above.
[[nodiscard]] std::optional<Fault> serialize_bytes_guarded(std::span<const std::string_view> elements, std::byte* out,
                                                           std::size_t serialized_size, Destination to) noexcept;

}  // namespace tritonshm::detail
