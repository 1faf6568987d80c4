#include "fault_guard.hpp"

#include <setjmp.h>
#include <signal.h>

#include <atomic>
#include <mutex>

namespace tritonshm::detail {
namespace {

struct JumpPoint {
  sigjmp_buf env;
  const void* volatile fault_address;
};

// Read inside the signal handler. initial-exec: the handler must not call
// __tls_get_addr (not async-signal-safe) when this library lives in a
// dlopen'ed Python extension, as the default model for a shared object would.
// volatile and fenced: to the compiler, the guarded code cannot see this
// variable, so without them it may drop the store before it as dead (it did).
thread_local JumpPoint* volatile t_jump_point __attribute__((tls_model("initial-exec"))) = nullptr;

struct sigaction g_previous {};

void on_sigbus(int sig, siginfo_t* info, void* context) {
  // Only faults the kernel raised (si_code > 0) are ours; a SIGBUS sent with
  // kill() goes on to the previous handler even inside a guarded call.
  JumpPoint* point = t_jump_point;
  if (point != nullptr && info != nullptr && info->si_code > 0) {
    t_jump_point = nullptr;
    point->fault_address = info->si_addr;
    siglongjmp(point->env, 1);  // SA_NODEFER: SIGBUS is not left blocked
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
void ensure_handler() noexcept {
  static std::atomic<bool> installed{false};
  static std::mutex install_mutex;
  if (installed.load(std::memory_order_acquire)) return;
  std::lock_guard lock(install_mutex);
  if (installed.load(std::memory_order_relaxed)) return;
  struct sigaction ours {};
  ours.sa_sigaction = on_sigbus;
  ours.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
  sigemptyset(&ours.sa_mask);
  if (sigaction(SIGBUS, &ours, &g_previous) == 0) installed.store(true, std::memory_order_release);
}

}  // namespace

std::optional<Fault> run_guarded(void (*fn)(void*) noexcept, void* context) noexcept {
  ensure_handler();
  JumpPoint point;
  point.fault_address = nullptr;
  JumpPoint* const outer = t_jump_point;  // guards nest: restore the caller's
  if (sigsetjmp(point.env, 0) != 0) {
    t_jump_point = outer;
    return Fault{point.fault_address};
  }
  t_jump_point = &point;
  std::atomic_signal_fence(std::memory_order_seq_cst);
  fn(context);
  std::atomic_signal_fence(std::memory_order_seq_cst);
  t_jump_point = outer;
  return std::nullopt;
}

}  // namespace tritonshm::detail
