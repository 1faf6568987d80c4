#include "fault_guard.hpp"

#include <setjmp.h>
#include <signal.h>
#include <unistd.h>

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
// How many previous handlers this thread is inside, called by ours. A handler
// we pass a signal on to may pass it back to us (faulthandler restores the
// handler it replaced, ours, and raises again; others call it directly):
// then it goes one handler further back, never round in a circle.
thread_local volatile int t_chain_depth __attribute__((tls_model("initial-exec"))) = 0;
// How many HandlerInPlace scopes are open on this thread.
thread_local int t_checked_scopes = 0;

void on_sigbus(int sig, siginfo_t* info, void* context);

// The handler in place each time ours was installed, oldest first: ours is
// installed again whenever something replaced it (see ensure_handler), and
// each replacement passed signals on to the one before it. Entries are written
// before the count that publishes them and never change afterwards (except
// the last, when the table is full).
constexpr int kMaxPrevious = 16;
struct sigaction g_previous[kMaxPrevious];
std::atomic<int> g_previous_count{0};
std::mutex g_install_mutex;

bool is_ours(const struct sigaction& action) noexcept {
  return (action.sa_flags & SA_SIGINFO) != 0 && action.sa_sigaction == on_sigbus;
}

// A fault the kernel raised (si_code > 0), or the same signal raised again by
// a handler of this process that got it before us (tkill from our own pid,
// which is how faulthandler and most chaining handlers pass a fault on).
bool is_fault(const siginfo_t* info) noexcept {
  if (info == nullptr) return false;
  return info->si_code > 0 || (info->si_code == SI_TKILL && info->si_pid == getpid());
}

// Does what the process would do without us: passes the signal to the
// handler ours replaced, `t_chain_depth` steps back.
void pass_on(int sig, siginfo_t* info, void* context) {
  const int depth = t_chain_depth;
  const int index = g_previous_count.load(std::memory_order_acquire) - 1 - depth;
  const bool from_kernel = info != nullptr && info->si_code > 0;
  struct sigaction previous {};
  previous.sa_handler = SIG_DFL;
  if (index >= 0) previous = g_previous[index];
  const bool default_action =
      !(previous.sa_flags & SA_SIGINFO) && (previous.sa_handler == SIG_DFL || previous.sa_handler == nullptr ||
                                            // the kernel does not let a fault be ignored
                                            (previous.sa_handler == SIG_IGN && from_kernel));
  if (default_action) {
    // Restore the default and return: the faulting access runs again and the
    // process dies of SIGBUS as it would have without us. A SIGBUS sent by
    // kill() or raise() is raised again instead.
    signal(sig, SIG_DFL);
    if (!from_kernel) raise(sig);
    return;
  }
  if (!(previous.sa_flags & SA_SIGINFO) && previous.sa_handler == SIG_IGN) return;
  t_chain_depth = depth + 1;
  if (previous.sa_flags & SA_SIGINFO) {
    previous.sa_sigaction(sig, info, context);
  } else {
    previous.sa_handler(sig);
  }
  t_chain_depth = depth;
}

void on_sigbus(int sig, siginfo_t* info, void* context) {
  JumpPoint* point = t_jump_point;
  // Inside a guarded section of this thread, a fault is ours; a SIGBUS sent
  // with kill() by another process, or one we are passing on, is not.
  if (point != nullptr && t_chain_depth == 0 && is_fault(info)) {
    t_jump_point = nullptr;
    point->fault_address = info->si_code > 0 ? info->si_addr : nullptr;  // a raised one carries no address
    siglongjmp(point->env, 1);                                           // SA_NODEFER: SIGBUS is not left blocked
  }
  pass_on(sig, info, context);
}

// Makes ours the handler in place. Anything may replace it at any time
// (faulthandler.enable() or .disable(), signal.signal(), a library's own
// handler), and a replacement that does not pass faults on to us, or that
// reports them before passing them on, would defeat the guard; so this runs
// at the start of every outermost guarded section. It costs one system call
// (sigaction with no new action); the handler is installed again only when it
// was replaced, chaining to the replacement.
void ensure_handler() noexcept {
  struct sigaction current {};
  if (sigaction(SIGBUS, nullptr, &current) == 0 && is_ours(current)) return;
  std::lock_guard lock(g_install_mutex);
  struct sigaction ours {};
  ours.sa_sigaction = on_sigbus;
  ours.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
  sigemptyset(&ours.sa_mask);
  if (sigaction(SIGBUS, &ours, &current) != 0 || is_ours(current)) return;
  const int count = g_previous_count.load(std::memory_order_relaxed);
  if (count < kMaxPrevious) {
    g_previous[count] = current;
    g_previous_count.store(count + 1, std::memory_order_release);
  } else {
    g_previous[kMaxPrevious - 1] = current;  // the newest replacement is the one to pass on to
  }
}

}  // namespace

HandlerInPlace::HandlerInPlace() noexcept {
  if (t_checked_scopes++ == 0) ensure_handler();
}

HandlerInPlace::~HandlerInPlace() { --t_checked_scopes; }

std::optional<Fault> run_guarded(void (*fn)(void*) noexcept, void* context) noexcept {
  JumpPoint* const outer = t_jump_point;  // guards nest: restore the caller's
  if (outer == nullptr) {
    if (t_checked_scopes == 0) ensure_handler();
    t_chain_depth = 0;  // a handler that jumped out of a pass_on left it raised
  }
  JumpPoint point;
  point.fault_address = nullptr;
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
