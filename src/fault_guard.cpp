#include "fault_guard.hpp"

#include <linux/membarrier.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <utility>

#include "tritonshm/signal_setup.hpp"

namespace tritonshm::detail {
namespace {

struct JumpPoint {
  sigjmp_buf env;
  const void* volatile fault_address;
  // The mask when the fault was delivered. sigsetjmp does not save the mask
  // (that would be a system call per section), and a handler that got the
  // fault before us may have blocked signals that a jump out would leave
  // blocked; the fault path puts this back.
  sigset_t mask;
  volatile bool has_mask;
};

// What the handler reads and writes, per thread. initial-exec: the handler
// must not call __tls_get_addr (not async-signal-safe) when this library
// lives in a dlopen'ed Python extension, as the default model for a shared
// object would. volatile: to the compiler, the guarded code and the handler
// cannot see these, so without it it may drop stores before them as dead.
struct ThreadState {
  JumpPoint* volatile jump_point;  // the innermost section's; null outside sections
  volatile int passing_on;         // handlers this thread is inside, called by ours
  volatile bool unblocked;         // SIGBUS unblocked by the guard for the section running
  volatile bool deferred;          // a SIGBUS sent to the process landed meanwhile
  volatile int deferred_code;      // ... its siginfo, to queue it again as sent
  volatile pid_t deferred_pid;
  volatile uid_t deferred_uid;
  void* volatile deferred_value;
  bool blocks_sigbus;     // this thread's mask, as read at mask_read_at
  uint64_t mask_read_at;  // a tick; 0: never read
  int changing;           // SigbusHandlerChange scopes open on this thread
  // In an outermost section: read by a change in another thread (see
  // enter_section for the ordering).
  std::atomic<bool> in_section;
  bool registered;    // in g_threads
  ThreadState* next;  // in g_threads
};
thread_local ThreadState t_state __attribute__((tls_model("initial-exec")));

// ---- Installations of our handler ----------------------------------------

// Each installation is its own trampoline, so that a handler put back by
// whoever saved it says which installation it was, and so which handler it
// replaced. Installations come and go like a stack (a handler saves the one
// before it and puts it back when removed), so when an older one is seen in
// front again, the slots after it serve again.
constexpr int kSlots = 64;
constexpr int kMaxPassOn = 16;

// The handler an installation replaced, readable from the signal handler
// while another thread rewrites it (a seqlock: the version is odd during a
// write). Writers hold g_install_lock and block SIGBUS in their own thread.
struct Slot {
  std::atomic<unsigned> version{0};
  std::atomic<std::uintptr_t> handler{0};  // sa_sigaction, or sa_handler (SIG_DFL, SIG_IGN)
  std::atomic<int> flags{0};
};
Slot g_slots[kSlots];

struct Replaced {
  std::uintptr_t handler;
  int flags;
  bool siginfo() const noexcept { return (flags & SA_SIGINFO) != 0; }
  bool is(void (*disposition)(int)) const noexcept {
    return !siginfo() && handler == reinterpret_cast<std::uintptr_t>(disposition);
  }
};

using Action = void (*)(int, siginfo_t*, void*);

void on_sigbus(int slot, int sig, siginfo_t* info, void* context) noexcept;

template <int I>
void trampoline(int sig, siginfo_t* info, void* context) {
  on_sigbus(I, sig, info, context);
}

template <std::size_t... I>
constexpr std::array<Action, sizeof...(I)> make_trampolines(std::index_sequence<I...>) {
  return {&trampoline<static_cast<int>(I)>...};
}
constexpr std::array<Action, kSlots> kTrampolines = make_trampolines(std::make_index_sequence<kSlots>{});

// A spin lock: held for a few system calls at most, never in the signal
// handler, and reset in a child after fork() (a std::mutex held by another
// thread at the fork would stay locked there for good).
class SpinLock {
 public:
  void lock() noexcept;
  void unlock() noexcept { held_.store(false, std::memory_order_release); }
  void reset() noexcept { held_.store(false, std::memory_order_relaxed); }

 private:
  std::atomic<bool> held_{false};
};

// Waits a little longer each time: yields first, then sleeps 50 us.
class Backoff {
 public:
  void pause() noexcept {
    if (++rounds_ < 64) {
      sched_yield();
    } else {
      const timespec nap{0, 50'000};
      nanosleep(&nap, nullptr);
    }
  }

 private:
  int rounds_ = 0;
};

void SpinLock::lock() noexcept {
  Backoff backoff;
  while (held_.exchange(true, std::memory_order_acquire)) backoff.pause();
}

SpinLock g_install_lock;                      // the slots, the installation, g_changers
int g_slots_used = 0;                         // slots [0, used) may be reachable
int g_front_slot = -1;                        // the installation last seen in front
std::atomic<uint64_t> g_front_checked_at{0};  // the tick of the last check that ours is in front

// ---- Changes through SigbusHandlerChange ---------------------------------

// Every thread that has run a section, for a change to see which are in one.
// A thread leaves it when it exits (g_thread_exit's destructor).
SpinLock g_threads_lock;
ThreadState* g_threads = nullptr;
pthread_key_t g_thread_exit;
pthread_once_t g_thread_exit_created = PTHREAD_ONCE_INIT;
// Whether membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) is registered for this
// process; without it, each section pays for a full fence (see enter_section).
bool g_membarrier = false;

enum Phase : int { kIdle, kDraining, kChanging };
std::atomic<int> g_phase{kIdle};
int g_changers = 0;                        // SigbusHandlerChange scopes open, all threads; under g_install_lock
std::atomic<uint64_t> g_change_number{0};  // counts changes begun
// How long a section that starts during a change waits for it.
constexpr uint64_t kChangeWaitNs = 100'000'000;

// ---- The clock of the checks ---------------------------------------------

std::atomic<uint64_t> g_frozen_tick{0};

uint64_t nanoseconds(clockid_t clock) noexcept {
  timespec ts{};
  clock_gettime(clock, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<uint64_t>(ts.tv_nsec);
}

// Changes every few milliseconds (the kernel's tick), read from the vDSO
// without a system call; never 0, which means "never checked".
uint64_t tick() noexcept {
  if (const uint64_t frozen = g_frozen_tick.load(std::memory_order_relaxed)) return frozen;
  return nanoseconds(CLOCK_MONOTONIC_COARSE) + 1;
}

// ---- The signal handler ----------------------------------------------------

Replaced read_slot(int slot) noexcept {
  Slot& s = g_slots[slot];
  for (;;) {
    const unsigned version = s.version.load(std::memory_order_acquire);
    const Replaced replaced{s.handler.load(std::memory_order_relaxed), s.flags.load(std::memory_order_relaxed)};
    std::atomic_thread_fence(std::memory_order_acquire);
    if ((version & 1) == 0 && s.version.load(std::memory_order_relaxed) == version) return replaced;
  }
}

// A fault the kernel raised (si_code > 0), or the same signal raised again by
// a handler of this process that got it before us (tkill from our own pid,
// which is how faulthandler and most chaining handlers pass a fault on).
bool is_fault(const siginfo_t* info) noexcept {
  if (info == nullptr) return false;
  return info->si_code > 0 || (info->si_code == SI_TKILL && info->si_pid == getpid());
}

// Does what the process would do without us: passes the signal to the
// handler that installation `slot` replaced.
void pass_on(int slot, int sig, siginfo_t* info, void* context) noexcept {
  ThreadState& state = t_state;
  const bool from_kernel = info != nullptr && info->si_code > 0;
  // Past kMaxPassOn nested pass-ons, handlers are passing the signal round
  // in a circle: end it as the default action would.
  const Replaced replaced = state.passing_on < kMaxPassOn ? read_slot(slot) : Replaced{0, 0};
  // The kernel does not let a fault be ignored.
  if (replaced.is(SIG_DFL) || (replaced.is(SIG_IGN) && from_kernel) || replaced.handler == 0) {
    // SIG_DFL in place: a fault repeats when this returns and kills the
    // process with SIGBUS; a SIGBUS sent by kill() or raise() is raised again.
    struct sigaction default_action {};
    default_action.sa_handler = SIG_DFL;
    sigemptyset(&default_action.sa_mask);
    sigaction(sig, &default_action, nullptr);
    if (!from_kernel) raise(sig);
    return;
  }
  if (replaced.is(SIG_IGN)) return;
  state.passing_on = state.passing_on + 1;
  if (replaced.siginfo()) {
    reinterpret_cast<Action>(replaced.handler)(sig, info, context);
  } else {
    reinterpret_cast<void (*)(int)>(replaced.handler)(sig);
  }
  state.passing_on = state.passing_on - 1;
}

void on_sigbus(int slot, int sig, siginfo_t* info, void* context) noexcept {
  ThreadState& state = t_state;
  // A fault the kernel raises is a new signal, not one passed back to us by a
  // handler we called (those come raised, or called directly): any pass-on
  // still counted was left by a handler that jumped out of it.
  if (info != nullptr && info->si_code > 0) state.passing_on = 0;
  JumpPoint* const point = state.jump_point;
  // Inside a section of this thread, a fault is ours; a SIGBUS sent with
  // kill() by another process, or one we are passing on, is not.
  if (point != nullptr && state.passing_on == 0 && is_fault(info)) {
    state.jump_point = nullptr;
    point->fault_address = info->si_code > 0 ? info->si_addr : nullptr;  // a raised one carries no address
    if (context != nullptr) {
      point->mask = static_cast<const ucontext_t*>(context)->uc_sigmask;
      point->has_mask = true;
    }
    siglongjmp(point->env, 1);  // SA_NODEFER: SIGBUS is not left blocked
  }
  const int saved_errno = errno;
  if (state.unblocked && !(info != nullptr && info->si_code > 0)) {
    // This thread blocks SIGBUS and the guard unblocked it for a section: a
    // SIGBUS sent to the process that landed here is meant for another
    // thread (one in sigwait, say). The section queues it again when it ends.
    if (!state.deferred && info != nullptr) {
      state.deferred_code = info->si_code;
      state.deferred_pid = info->si_pid;
      state.deferred_uid = info->si_uid;
      state.deferred_value = info->si_value.sival_ptr;
      state.deferred = true;
    }
    errno = saved_errno;
    return;
  }
  pass_on(slot, sig, info, context);
  errno = saved_errno;
}

// ---- Installing ------------------------------------------------------------

std::uintptr_t handler_of(const struct sigaction& action) noexcept {
  return (action.sa_flags & SA_SIGINFO) != 0 ? reinterpret_cast<std::uintptr_t>(action.sa_sigaction)
                                             : reinterpret_cast<std::uintptr_t>(action.sa_handler);
}

int slot_of(const struct sigaction& action) noexcept {
  if ((action.sa_flags & SA_SIGINFO) == 0) return -1;
  for (int i = 0; i < kSlots; ++i) {
    if (action.sa_sigaction == kTrampolines[i]) return i;
  }
  return -1;
}

void write_slot(int slot, const struct sigaction& replaced) noexcept {
  // A SIGBUS handled on this thread mid-write would wait for this very write.
  sigset_t bus, before;
  sigemptyset(&bus);
  sigaddset(&bus, SIGBUS);
  pthread_sigmask(SIG_BLOCK, &bus, &before);
  Slot& s = g_slots[slot];
  const unsigned version = s.version.load(std::memory_order_relaxed);
  s.version.store(version + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  s.handler.store(handler_of(replaced), std::memory_order_relaxed);
  s.flags.store(replaced.sa_flags, std::memory_order_relaxed);
  s.version.store(version + 2, std::memory_order_release);
  pthread_sigmask(SIG_SETMASK, &before, nullptr);
}

// Makes one of our installations the handler in front. `front_dropped`: the
// installation last in front was replaced by a handler that will never pass
// signals to it (its slot serves again). Caller holds g_install_lock.
void ensure_front_locked(bool front_dropped) noexcept {
  struct sigaction current {};
  if (sigaction(SIGBUS, nullptr, &current) != 0) return;
  if (const int slot = slot_of(current); slot >= 0) {
    // Ours: the installations after it were removed with whatever replaced them.
    if (slot < g_slots_used) g_slots_used = slot + 1;
    g_front_slot = slot;
    return;
  }
  int slot;
  if (front_dropped && g_front_slot >= 0) {
    slot = g_front_slot;
  } else if (g_slots_used < kSlots) {
    slot = g_slots_used++;
  } else {
    slot = kSlots - 1;  // out of slots: the newest replacement is the one to pass on to
  }
  write_slot(slot, current);
  struct sigaction ours {};
  ours.sa_sigaction = kTrampolines[slot];
  ours.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
  sigemptyset(&ours.sa_mask);
  struct sigaction replaced {};
  if (sigaction(SIGBUS, &ours, &replaced) != 0) return;
  g_front_slot = slot;
  // Changed between the look and the install (by C code in another thread):
  // pass on to what was actually replaced.
  if (handler_of(replaced) != handler_of(current) || replaced.sa_flags != current.sa_flags) {
    write_slot(slot, replaced);
  }
}

void check_front(uint64_t now) noexcept {
  g_install_lock.lock();
  ensure_front_locked(false);
  g_front_checked_at.store(now, std::memory_order_relaxed);
  g_install_lock.unlock();
}

// ---- Sections ---------------------------------------------------------------

void read_mask(uint64_t now) noexcept {
  sigset_t current;
  if (pthread_sigmask(SIG_BLOCK, nullptr, &current) == 0) t_state.blocks_sigbus = sigismember(&current, SIGBUS) == 1;
  t_state.mask_read_at = now;
}

// Sends a SIGBUS deferred by the handler to the process again, with its
// sender's siginfo. The kernel lets only the thread whose id is the process's
// send a kill()'s si_code (SI_USER) to it; another thread sends it as
// sigqueue() would (SI_QUEUE), still with the sender's pid and uid.
void queue_deferred_again() noexcept {
  ThreadState& state = t_state;
  if (!state.deferred) return;
  state.deferred = false;
  siginfo_t info{};
  info.si_signo = SIGBUS;
  info.si_code = state.deferred_code;
  info.si_pid = state.deferred_pid;
  info.si_uid = state.deferred_uid;
  info.si_value.sival_ptr = state.deferred_value;
  if (syscall(SYS_rt_sigqueueinfo, getpid(), SIGBUS, &info) == 0) return;
  info.si_code = SI_QUEUE;
  if (syscall(SYS_rt_sigqueueinfo, getpid(), SIGBUS, &info) != 0) kill(getpid(), SIGBUS);
}

void unblock_for_section() noexcept {
  ThreadState& state = t_state;
  // Set first: a SIGBUS that lands right after the unblock must be deferred.
  state.unblocked = true;
  std::atomic_signal_fence(std::memory_order_seq_cst);
  sigset_t bus, before;
  sigemptyset(&bus);
  sigaddset(&bus, SIGBUS);
  if (pthread_sigmask(SIG_UNBLOCK, &bus, &before) == 0 && sigismember(&before, SIGBUS) == 1) return;
  state.blocks_sigbus = false;  // unblocked meanwhile (from C): nothing to put back
  state.unblocked = false;
  std::atomic_signal_fence(std::memory_order_seq_cst);
  queue_deferred_again();
}

void block_again() noexcept {
  ThreadState& state = t_state;
  sigset_t bus;
  sigemptyset(&bus);
  sigaddset(&bus, SIGBUS);
  pthread_sigmask(SIG_BLOCK, &bus, nullptr);
  std::atomic_signal_fence(std::memory_order_seq_cst);
  state.unblocked = false;
  queue_deferred_again();
}

// Marks this thread in a section, before the section reads the phase. A change
// sets the phase before it reads the threads' marks. Each side's store must be
// visible before its load, or both could miss the other: the section's side
// is a plain store, made visible by the change's membarrier (a full fence on
// every CPU that runs a thread of this process), so a section pays no fence.
inline void announce_section() noexcept {
  t_state.in_section.store(true, std::memory_order_relaxed);
  if (g_membarrier) [[likely]] {
    std::atomic_signal_fence(std::memory_order_seq_cst);
  } else {
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
}

// The change's side of that ordering.
void fence_every_thread() noexcept {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (g_membarrier) syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0);
}

void leave_registry(void* state) noexcept {
  g_threads_lock.lock();
  for (ThreadState** p = &g_threads; *p != nullptr; p = &(*p)->next) {
    if (*p == state) {
      *p = static_cast<ThreadState*>(state)->next;
      break;
    }
  }
  g_threads_lock.unlock();
}

void create_thread_exit_key() noexcept { pthread_key_create(&g_thread_exit, &leave_registry); }

void register_thread() noexcept {
  pthread_once(&g_thread_exit_created, &create_thread_exit_key);
  ThreadState& state = t_state;
  g_threads_lock.lock();
  state.next = g_threads;
  g_threads = &state;
  g_threads_lock.unlock();
  state.registered = true;
  pthread_setspecific(g_thread_exit, &state);  // non-null: its destructor runs at exit
}

// Waits until no thread but this one is in a section.
void wait_for_sections_to_end() noexcept {
  fence_every_thread();
  ThreadState* const self = &t_state;
  g_threads_lock.lock();
  for (ThreadState* state = g_threads; state != nullptr; state = state->next) {
    Backoff backoff;
    while (state != self && state->in_section.load(std::memory_order_acquire)) backoff.pause();
  }
  g_threads_lock.unlock();
}

// A section that starts while a SigbusHandlerChange drains or changes: wait
// for its end, unless this thread makes it, or it has changed for too long.
void wait_for_change_to_end() noexcept {
  if (t_state.changing > 0) return;
  uint64_t change = 0, changing_since = 0;
  Backoff backoff;
  for (;;) {
    const int phase = g_phase.load(std::memory_order_seq_cst);
    if (phase == kIdle) return;
    if (phase == kChanging) {
      // Timed per change: back-to-back changes are each short.
      const uint64_t now = nanoseconds(CLOCK_MONOTONIC);
      const uint64_t current = g_change_number.load(std::memory_order_relaxed);
      if (current != change) {
        change = current;
        changing_since = now;
      }
      if (now - changing_since > kChangeWaitNs) return;
    }
    // Out of the section while waiting: the change waits for every thread to be out.
    t_state.in_section.store(false, std::memory_order_relaxed);
    backoff.pause();
    announce_section();
  }
}

void enter_section() noexcept {
  ThreadState& state = t_state;
  if (!state.registered) [[unlikely]]
    register_thread();
  announce_section();
  if (g_phase.load(std::memory_order_relaxed) != kIdle) [[unlikely]]
    wait_for_change_to_end();
  const uint64_t now = tick();
  if (now != g_front_checked_at.load(std::memory_order_relaxed)) [[unlikely]]
    check_front(now);
  if (now != state.mask_read_at) [[unlikely]]
    read_mask(now);
  state.passing_on = 0;  // a handler that jumped out of a pass-on left it raised
  if (state.blocks_sigbus) [[unlikely]]
    unblock_for_section();
}

void leave_section() noexcept {
  if (t_state.unblocked) [[unlikely]]
    block_again();
  t_state.in_section.store(false, std::memory_order_release);
}

// ---- fork() ---------------------------------------------------------------

// The child has only the thread that forked: sections and changes of other
// threads are not running there, and their locks are free.
void after_fork_in_child() noexcept {
  g_install_lock.reset();
  g_threads_lock.reset();
  g_threads = nullptr;
  if (t_state.registered) {
    t_state.next = nullptr;
    g_threads = &t_state;
  }
  // The registration belongs to the parent's address space.
  if (g_membarrier) g_membarrier = syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
  if (t_state.changing == 0) {
    g_changers = 0;
    g_phase.store(kIdle, std::memory_order_relaxed);
  } else {
    g_changers = t_state.changing > 0 ? 1 : 0;
  }
}

// Set up when the library is loaded (a section that ran before, from another
// file's static initializer, paid full fences: correct either way).
[[maybe_unused]] const bool g_set_up = [] {
  pthread_atfork(nullptr, nullptr, &after_fork_in_child);
  g_membarrier = syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
  return true;
}();

}  // namespace

std::optional<Fault> run_guarded(void (*fn)(void*) noexcept, void* context) noexcept {
  ThreadState& state = t_state;
  // volatile: it is read again after siglongjmp, which may not restore a register.
  JumpPoint* const volatile outer = state.jump_point;  // sections nest: restore the caller's
  if (outer == nullptr) enter_section();
  JumpPoint point;
  point.fault_address = nullptr;
  point.has_mask = false;
  if (sigsetjmp(point.env, 0) != 0) {
    state.jump_point = outer;
    if (point.has_mask) pthread_sigmask(SIG_SETMASK, &point.mask, nullptr);
    if (outer == nullptr) leave_section();
    return Fault{point.fault_address};
  }
  state.jump_point = &point;
  std::atomic_signal_fence(std::memory_order_seq_cst);
  fn(context);
  std::atomic_signal_fence(std::memory_order_seq_cst);
  state.jump_point = outer;
  if (outer == nullptr) leave_section();
  return std::nullopt;
}

void freeze_guard_clock_for_testing(bool frozen) noexcept {
  g_frozen_tick.store(frozen ? nanoseconds(CLOCK_MONOTONIC_COARSE) + 1 : 0, std::memory_order_relaxed);
}

}  // namespace tritonshm::detail

namespace tritonshm {

using detail::g_changers;
using detail::g_install_lock;
using detail::g_phase;
using detail::t_state;

SigbusHandlerChange::SigbusHandlerChange(ReplacedHandler replaced) noexcept : replaced_(replaced) {
  if (t_state.changing++ > 0) return;  // nested on this thread: the outer scope drained
  g_install_lock.lock();
  const bool first = g_changers++ == 0;
  if (first) {
    detail::g_change_number.fetch_add(1, std::memory_order_relaxed);
    g_phase.store(detail::kDraining, std::memory_order_seq_cst);
  }
  // Ours in front before waiting: a section re-faulting in a handler that
  // returns (installed from C) ends now, and the slot in front is known.
  detail::ensure_front_locked(false);
  g_install_lock.unlock();
  detail::Backoff backoff;
  if (first) {
    detail::wait_for_sections_to_end();
    g_phase.store(detail::kChanging, std::memory_order_seq_cst);
  } else {
    // Another thread's change drains; it holds no lock this thread may hold
    // (draining happens before its change runs any code of its caller).
    while (g_phase.load(std::memory_order_seq_cst) == detail::kDraining) backoff.pause();
  }
}

SigbusHandlerChange::~SigbusHandlerChange() {
  g_install_lock.lock();
  detail::ensure_front_locked(replaced_ == ReplacedHandler::dropped);
  detail::g_front_checked_at.store(detail::tick(), std::memory_order_relaxed);
  if (t_state.changing == 1 && --g_changers == 0) g_phase.store(detail::kIdle, std::memory_order_seq_cst);
  g_install_lock.unlock();
  --t_state.changing;
}

void sigbus_mask_changed() noexcept { detail::read_mask(detail::tick()); }

}  // namespace tritonshm
