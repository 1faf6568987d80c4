// Internal: splitting one large memory operation across a few threads.
#pragma once

#include <cstddef>
#include <functional>

namespace tritonshm::detail {

// Where a second thread starts to pay, as the benchmark suite measures it
// (README, Performance). Copies: below 16 MiB, starting a thread costs more
// than the second core's bandwidth saves. Page population (prefault): the
// kernel's page faults scale poorly across threads, so only very large
// regions gain.
inline constexpr std::size_t kCopyThreadThreshold = std::size_t{16} << 20;
inline constexpr std::size_t kPageThreadThreshold = std::size_t{256} << 20;

// Threads to use: TRITONSHM_COPY_THREADS if set, else the hardware's, at most 4.
std::size_t worker_threads() noexcept;

// Calls fn(begin, length) over [0, n) in chunks of whole cache lines, one per
// thread when n >= threshold, else once on the calling thread. The calling
// thread does a share; if no thread can be started, it does the rest.
void split(std::size_t n, std::size_t threshold, const std::function<void(std::size_t, std::size_t)>& fn) noexcept;

// The same with a given number of threads (at most 16), whatever n is.
void split_into(std::size_t n, std::size_t threads, const std::function<void(std::size_t, std::size_t)>& fn) noexcept;

}  // namespace tritonshm::detail
