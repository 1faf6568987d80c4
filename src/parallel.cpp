#include "parallel.hpp"

#include <algorithm>
#include <cstdlib>
#include <thread>

namespace tritonshm::detail {

std::size_t worker_threads() noexcept {
  static const std::size_t threads = [] {
    if (const char* env = std::getenv("TRITONSHM_COPY_THREADS")) {
      const long v = std::strtol(env, nullptr, 10);
      if (v >= 1) return std::min<std::size_t>(static_cast<std::size_t>(v), 16);
    }
    return std::clamp<std::size_t>(std::thread::hardware_concurrency(), 1, 4);
  }();
  return threads;
}

void split(std::size_t n, std::size_t threshold, const std::function<void(std::size_t, std::size_t)>& fn) noexcept {
  split_into(n, n >= threshold ? worker_threads() : 1, fn);
}

void split_into(std::size_t n, std::size_t threads, const std::function<void(std::size_t, std::size_t)>& fn) noexcept {
  threads = std::min<std::size_t>(threads, 16);
  if (threads <= 1) {
    fn(0, n);
    return;
  }
  const std::size_t chunk = ((n / threads) + 63) & ~std::size_t{63};
  std::thread workers[16];
  std::size_t started = 0;
  try {
    for (; started + 1 < threads && (started + 1) * chunk < n; ++started) {
      workers[started] = std::thread([&fn, begin = started * chunk, chunk] { fn(begin, chunk); });
    }
  } catch (...) {
    // No thread to be had: the calling thread does the rest.
  }
  const std::size_t begin = started * chunk;
  fn(begin, n - begin);
  for (std::size_t i = 0; i < started; ++i) workers[i].join();
}

}  // namespace tritonshm::detail
