// For code that changes how this process handles SIGBUS while tritonshm may
// be copying in other threads. tritonshm's copies run under a SIGBUS guard
// (a region shrunk by another process raises instead of killing this one); it
// notices changes made without these calls too, but only at its next check
// (at most one tick of CLOCK_MONOTONIC_COARSE later, a few milliseconds).
// The Python package calls these around signal.signal(SIGBUS, ...),
// signal.pthread_sigmask and faulthandler.enable() / .disable().
#pragma once

namespace tritonshm {

// What a new SIGBUS handler does with the one it replaces.
enum class ReplacedHandler {
  // Keeps it and passes signals on to it, or puts it back when removed
  // (faulthandler.enable(), most crash reporters).
  kept,
  // Forgets it (signal.signal, and faulthandler.disable(), which puts back
  // the handler from before its enable()).
  dropped,
};

// While it lives, no guarded copy runs in another thread: its constructor
// waits for the copies in flight, and copies that start meanwhile wait for its
// end. Make the change (sigaction, signal) inside it; its destructor puts the
// guard back in front of whatever was installed. A fault inside a copy then
// never reaches the new handler, whatever that does (return, report, exit).
// The thread that made it does not wait for its own copies, and a copy that
// starts during the change waits at most 100 ms for it (a change that lets go
// of a lock the copying thread holds, as Python code may let go of the GIL,
// must not wait for that copy forever).
class SigbusHandlerChange {
 public:
  explicit SigbusHandlerChange(ReplacedHandler replaced) noexcept;
  ~SigbusHandlerChange();
  SigbusHandlerChange(const SigbusHandlerChange&) = delete;
  SigbusHandlerChange& operator=(const SigbusHandlerChange&) = delete;

 private:
  ReplacedHandler replaced_;
};

// Call after changing this thread's signal mask (pthread_sigmask,
// sigprocmask): the guard reads the mask again now. Copies in a thread that
// blocks SIGBUS unblock it while they run (the kernel kills a process whose
// fault's signal is blocked, whatever the handler).
void sigbus_mask_changed() noexcept;

}  // namespace tritonshm
