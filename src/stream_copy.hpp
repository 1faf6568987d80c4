// Internal: the streaming-store kernels behind the copy engine.
#pragma once

#include <cstddef>

#include "tritonshm/copy_engine.hpp"

namespace tritonshm::detail {

// The best instruction set this CPU runs (cpuid, once).
StoreIsa cpu_isa() noexcept;

// Copies n bytes with streaming stores of `isa` (which the CPU must have):
// the head up to a cache-line boundary of dst and the tail are ordinary
// stores, the lines between are written whole without being read first. No
// fence: the caller issues store_fence() once its thread is done.
void stream_copy(StoreIsa isa, std::byte* dst, const std::byte* src, std::size_t n) noexcept;

// Orders this thread's streaming stores before anything it does next (sfence).
void store_fence(StoreIsa isa) noexcept;

}  // namespace tritonshm::detail
