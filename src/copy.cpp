#include "tritonshm/copy.hpp"

#include "parallel.hpp"

#include <setjmp.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

namespace tritonshm {
namespace {

// ---- SIGBUS as an error ----
//
// Touching a page of a MAP_SHARED mapping that lies past the end of its file
// (another process truncated it) raises SIGBUS, which kills the process. A
// copy into a region arms a per-thread jump point; our SIGBUS handler jumps
// back to it when the signal hits a thread inside such a copy, and otherwise
// hands the signal to whatever handler was there before us (Python's
// faulthandler, or the default action). The hot path makes no system call.

struct CopyGuard {
  sigjmp_buf env;
};
// volatile and fenced: to the compiler, memcpy cannot see this variable, so
// without them it may drop the store before the copy as dead (it did).
thread_local CopyGuard* volatile t_guard = nullptr;

struct sigaction g_previous{};
std::mutex g_install_mutex;

void on_sigbus(int sig, siginfo_t* info, void* context) {
  if (CopyGuard* guard = t_guard) {
    t_guard = nullptr;
    siglongjmp(guard->env, 1);  // SA_NODEFER: SIGBUS is not left blocked
  }
  if (g_previous.sa_flags & SA_SIGINFO) {
    if (g_previous.sa_sigaction != nullptr) g_previous.sa_sigaction(sig, info, context);
    return;
  }
  if (g_previous.sa_handler == SIG_IGN) return;
  if (g_previous.sa_handler == SIG_DFL || g_previous.sa_handler == nullptr) {
    // Restore the default and return: the faulting access runs again and the
    // process dies of SIGBUS as it would have without us. A SIGBUS sent by
    // kill() is raised again instead.
    signal(sig, SIG_DFL);
    if (info == nullptr || info->si_code <= 0) raise(sig);
    return;
  }
  g_previous.sa_handler(sig);
}

// Installs the handler once, chaining to the one in place then. (A handler
// installed later over ours, e.g. by faulthandler.enable(), runs first and
// passes the signal on to ours when it is done.)
void ensure_handler() {
  static std::atomic<bool> installed{false};
  if (installed.load(std::memory_order_acquire)) return;
  std::lock_guard lock(g_install_mutex);
  if (installed.load(std::memory_order_relaxed)) return;
  struct sigaction ours{};
  ours.sa_sigaction = on_sigbus;
  ours.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
  sigemptyset(&ours.sa_mask);
  if (sigaction(SIGBUS, &ours, &g_previous) == 0) installed.store(true, std::memory_order_release);
}

bool copy_one_guarded(std::byte* dst, const std::byte* src, std::size_t n) noexcept {
  CopyGuard guard;
  if (sigsetjmp(guard.env, 0) != 0) return false;  // came back from on_sigbus
  t_guard = &guard;
  std::atomic_signal_fence(std::memory_order_seq_cst);
  std::memcpy(dst, src, n);
  std::atomic_signal_fence(std::memory_order_seq_cst);
  t_guard = nullptr;
  return true;
}

}  // namespace

bool probe_readable(const std::byte* p) noexcept {
  ensure_handler();
  CopyGuard guard;
  if (sigsetjmp(guard.env, 0) != 0) return false;
  t_guard = &guard;
  std::atomic_signal_fence(std::memory_order_seq_cst);
  [[maybe_unused]] const std::byte value = *static_cast<const volatile std::byte*>(p);
  std::atomic_signal_fence(std::memory_order_seq_cst);
  t_guard = nullptr;
  return true;
}

namespace {

}  // namespace

namespace detail {

std::size_t worker_threads() {
  static const std::size_t threads = [] {
    if (const char* env = std::getenv("TRITONSHM_COPY_THREADS")) {
      const long v = std::strtol(env, nullptr, 10);
      if (v >= 1) return std::min<std::size_t>(static_cast<std::size_t>(v), 16);
    }
    return std::clamp<std::size_t>(std::thread::hardware_concurrency(), 1, 4);
  }();
  return threads;
}

bool split(std::size_t n, const std::function<bool(std::size_t, std::size_t)>& fn) {
  const std::size_t threads = n >= kParallelThreshold ? worker_threads() : 1;
  if (threads <= 1) return fn(0, n);
  const std::size_t chunk = ((n / threads) + 63) & ~std::size_t{63};
  std::atomic<bool> ok{true};
  std::thread workers[16];
  std::size_t started = 0;
  try {
    for (; started + 1 < threads && (started + 1) * chunk < n; ++started) {
      workers[started] = std::thread([&ok, &fn, begin = started * chunk, chunk] {
        if (!fn(begin, chunk)) ok = false;
      });
    }
  } catch (...) {
    // No thread to be had: the calling thread does the rest.
  }
  const std::size_t begin = started * chunk;
  if (!fn(begin, n - begin)) ok = false;
  for (std::size_t i = 0; i < started; ++i) workers[i].join();
  return ok;
}

}  // namespace detail

bool copy_guarded(std::byte* dst, const std::byte* src, std::size_t n) noexcept {
  if (n == 0) return true;
  ensure_handler();
  try {
    return detail::split(n, [dst, src](std::size_t begin, std::size_t length) {
      return copy_one_guarded(dst + begin, src + begin, length);
    });
  } catch (...) {  // std::function or thread machinery: copy on this thread
    return copy_one_guarded(dst, src, n);
  }
}

bool copy_each_guarded(std::span<const std::string_view> sources, std::span<std::byte* const> destinations) noexcept {
  ensure_handler();
  // Where each element starts in the total, so threads can split by bytes: an
  // element belongs to the thread whose share holds its first byte.
  std::vector<std::size_t> starts;
  try {
    starts.resize(sources.size() + 1);
  } catch (...) {
    return false;
  }
  for (std::size_t i = 0; i < sources.size(); ++i) starts[i + 1] = starts[i] + sources[i].size();
  auto copy_range = [&](std::size_t begin, std::size_t length) {
    auto first = std::lower_bound(starts.begin(), starts.end() - 1, begin);
    for (std::size_t i = static_cast<std::size_t>(first - starts.begin());
         i < sources.size() && starts[i] < begin + length; ++i) {
      if (starts[i] < begin) continue;
      if (!copy_one_guarded(destinations[i], reinterpret_cast<const std::byte*>(sources[i].data()), sources[i].size()))
        return false;
    }
    return true;
  };
  try {
    return detail::split(starts.back(), copy_range);
  } catch (...) {
    return copy_range(0, starts.back());
  }
}

}  // namespace tritonshm
