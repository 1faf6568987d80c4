// The SIGBUS guard's side of Python's own signal set-up: tritonshm/_signal_setup.py
// wraps signal.signal(SIGBUS, ...), faulthandler.enable() and .disable() with
// change_sigbus_handler, and signal.pthread_sigmask with sigbus_mask_changed.
#include "tritonshm/signal_setup.hpp"
#include "binding.hpp"

namespace tritonshm::binding {
namespace {

// Calls change(*args, **kwargs) inside a SigbusHandlerChange, with the GIL
// held throughout: the copies it waits for run without the GIL, and copies
// that hold the GIL cannot start until the change ends.
nb::object change_sigbus_handler(bool drops_replaced, nb::callable change, nb::args args, nb::kwargs kwargs) {
  // A Python signal handler that is due runs now, before the change, as the
  // change would run it first thing (signal.signal does): inside it, it would
  // hold back every other thread's copies for as long as it takes.
  if (PyErr_CheckSignals() != 0) throw nb::python_error();
  const SigbusHandlerChange scope(drops_replaced ? ReplacedHandler::dropped : ReplacedHandler::kept);
  return change(*args, **kwargs);
}

}  // namespace

void bind_signal_setup(nb::module_& m) {
  m.def("change_sigbus_handler", &change_sigbus_handler, nb::arg("drops_replaced"), nb::arg("change"), nb::arg("args"),
        nb::arg("kwargs"),
        nb::sig("def change_sigbus_handler(drops_replaced: bool, change: typing.Callable[..., typing.Any], "
                "*args: typing.Any, **kwargs: typing.Any) -> typing.Any"),
        "Calls change(*args, **kwargs), which changes the SIGBUS handler, while no copy of tritonshm runs, and "
        "puts the SIGBUS guard back in front after it. drops_replaced: the new handler will never pass signals "
        "to the one it replaces.");
  m.def("sigbus_mask_changed", &sigbus_mask_changed, "Tells the SIGBUS guard that this thread's mask changed.");
}

}  // namespace tritonshm::binding
