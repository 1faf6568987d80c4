// Internal: SIGBUS as a result instead of a dead process.
//
// Touching a page of a MAP_SHARED mapping that lies past the end of its file
// (another process truncated it) raises SIGBUS. Every access to memory that
// another process can shrink (copies into and out of regions, the BYTES
// decoder, probes) runs through run_guarded: a per-thread jump point that our
// SIGBUS handler returns to, with the faulting address. Other code may replace
// the handler at any time (faulthandler, signal.signal, other libraries), so
// each outermost guarded section first checks that ours is in place: one
// sigaction() query, the only system call on the hot path.
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
[[nodiscard]] std::optional<Fault> run_guarded(void (*fn)(void*) noexcept, void* context) noexcept;

// run_guarded over a callable, which must satisfy the same rules.
template <class F>
[[nodiscard]] std::optional<Fault> guarded(F& fn) noexcept {
  static_assert(std::is_nothrow_invocable_v<F&>, "a guarded function must be noexcept");
  return run_guarded([](void* f) noexcept { (*static_cast<F*>(f))(); }, &fn);
}

// Checks once that our handler is in place for the guarded sections this
// thread runs while it lives (e.g. one per part of a multi-part write), which
// then skip their own check.
class HandlerInPlace {
 public:
  HandlerInPlace() noexcept;
  ~HandlerInPlace();
  HandlerInPlace(const HandlerInPlace&) = delete;
  HandlerInPlace& operator=(const HandlerInPlace&) = delete;
};

// Whether address lies in [begin, begin + size).
inline bool fault_within(const Fault& fault, const void* begin, std::size_t size) noexcept {
  const auto a = reinterpret_cast<std::uintptr_t>(fault.address), b = reinterpret_cast<std::uintptr_t>(begin);
  return a >= b && a - b < size;
}

}  // namespace tritonshm::detail
