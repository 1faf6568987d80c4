// Internal: SIGBUS as a result instead of a dead process.
//
// Touching a page of a MAP_SHARED mapping that lies past the end of its file
// (another process truncated it) raises SIGBUS. Every access to memory that
// another process can shrink (copies into and out of regions, the BYTES
// decoder, probes, prefaulting) runs through run_guarded: a guarded section
// with a per-thread jump point that our SIGBUS handler returns to, with the
// faulting address.
//
// The guard must hold whatever else the process does with SIGBUS, before or
// during a section, in any thread:
//
// - Handler replaced. Other code installs its own handler (signal.signal,
//   faulthandler.enable() and .disable(), crash reporters, ASan). Our handler
//   is installed again in front of it, remembering it as the one to pass
//   signals on to. Changes made through tritonshm::SigbusHandlerChange (the
//   Python package wraps _signal.signal, which signal.signal calls, and
//   faulthandler.enable and .disable with it) drain the sections in flight
//   first and hold new ones back until ours is in front again, so no fault of
//   ours ever reaches the new handler. A section marks itself with a plain
//   store to a per-thread flag; the change makes those stores visible before
//   it reads them with membarrier() (or, where the kernel lacks it, each
//   section pays a full fence). Other changes (a C library's sigaction) are
//   noticed by a check at the start of an outermost section, made once per
//   tick of CLOCK_MONOTONIC_COARSE (a few milliseconds; about 5 ns to read)
//   by the first section of any thread.
//
// - SIGBUS blocked. The kernel delivers a fault whose signal is blocked with
//   the default action (death), whatever the handler. Each thread reads its
//   mask on its first section, once per tick, and at once through
//   tritonshm::sigbus_mask_changed() (the Python package wraps
//   _signal.pthread_sigmask with it); a thread that blocks SIGBUS has it
//   unblocked for each of its sections (two system calls each). A SIGBUS sent
//   by kill() that lands in one is queued again for the process when the
//   section ends (rt_sigqueueinfo with the sender's pid and uid), where the
//   threads that wait for it (sigwait) get it.
//
// - Signals that are not ours (a fault outside any section, a SIGBUS sent by
//   kill()) reach the process as they would without us: each installation of
//   our handler is a distinct function (one of kSlots trampolines), and each
//   remembers the handler it replaced, so a signal that enters through
//   installation k is passed to the handler k replaced, whatever has been
//   installed since. A handler restored by whoever replaced ours (faulthandler
//   .disable() puts back the installation it saved) therefore chains to what
//   was there before it, never to the handler that just removed itself (which
//   would return, and the fault would repeat forever). The default action is
//   performed as the kernel would (SIG_DFL restored; a fault repeats and kills
//   with SIGBUS, a signal sent is raised again). A handler we pass a signal to
//   may pass it back (faulthandler restores its predecessor and raises again;
//   others call it directly): that enters through the installation it saved,
//   one step further back, and a per-thread count of nested pass-ons ends any
//   circle after kMaxPassOn steps with the default action.
//
// What this cannot cover, and the test that shows each:
// - A handler installed from C (not through SigbusHandlerChange) while a
//   section runs, or within the same clock tick as the last check: a fault in
//   that window reaches it first. One that passes faults on (most do) still
//   returns ours; one that reports and exits ends the process; one that
//   returns makes the access fault again until any thread's next section puts
//   ours back in front (test_fault_guard.cpp,
//   HandlerInstalledFromCIsInFrontUntilTheNextTick).
// - SIGBUS blocked from C in a thread that has already checked its mask, until
//   that thread's next check (SigbusBlockedFromCIsNoticedAtTheNextTick).
// - A copy that starts while a SigbusHandlerChange has lasted over 100 ms
//   runs without waiting for it (see signal_setup.hpp).
// - A handler we passed a signal sent by kill() to, that jumps out instead of
//   returning, leaves this thread's count of nested pass-ons raised until its
//   next section or fault; 16 such jumps in a row make the next signal sent
//   to that thread end with the default action.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <type_traits>

namespace tritonshm::detail {

struct Fault {
  const void* address;  // the byte whose page was not backed (si_addr)
};

// Runs fn(context); a SIGBUS raised by the kernel inside it ends it early and
// is returned as a Fault. fn must not throw and must own nothing that needs a
// destructor when it is cut short: keep allocations and objects outside it.
// The outermost section of a thread costs a store to a per-thread flag and a
// read of the coarse clock (about 13 ns in all with the jump point); no system
// call unless the clock ticked since the last check or the thread blocks SIGBUS.
[[nodiscard]] std::optional<Fault> run_guarded(void (*fn)(void*) noexcept, void* context) noexcept;

// run_guarded over a callable, which must satisfy the same rules.
template <class F>
[[nodiscard]] std::optional<Fault> guarded(F& fn) noexcept {
  static_assert(std::is_nothrow_invocable_v<F&>, "a guarded function must be noexcept");
  return run_guarded([](void* f) noexcept { (*static_cast<F*>(f))(); }, &fn);
}

// Whether address lies in [begin, begin + size).
inline bool fault_within(const Fault& fault, const void* begin, std::size_t size) noexcept {
  const auto a = reinterpret_cast<std::uintptr_t>(fault.address), b = reinterpret_cast<std::uintptr_t>(begin);
  return a >= b && a - b < size;
}

// For tests: while frozen, the guard's clock does not tick, so that changes
// made from C stay unnoticed (the cases above it cannot cover).
void freeze_guard_clock_for_testing(bool frozen) noexcept;

}  // namespace tritonshm::detail
