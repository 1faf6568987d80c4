// Internal: splitting one large memory operation across a few threads.
#pragma once

#include <cstddef>
#include <functional>

namespace tritonshm::detail {

// Below this, starting a thread costs more than it saves (measured: see
// README, Performance; one core's copy reaches ~13 GB/s, two ~17 GB/s at 1 GiB,
// and no gain at 16-256 MiB). Every parallel path (copies, prefault, BYTES
// encoding and decoding) uses this one threshold.
inline constexpr std::size_t kParallelThreshold = std::size_t{64} << 20;

// Threads to use: TRITONSHM_COPY_THREADS if set, else the hardware's, at most 4.
std::size_t worker_threads() noexcept;

// Calls fn(begin, length) over [0, n) in chunks of whole cache lines, one per
// thread when n >= kParallelThreshold, else once on the calling thread. The
// calling thread does a share; if no thread can be started, it does the rest.
void split(std::size_t n, const std::function<void(std::size_t, std::size_t)>& fn) noexcept;

}  // namespace tritonshm::detail
