// tritonshm.SharedMemoryException, made here (not injected from Python), and
// the translation of the core's SharedMemoryError into it.
#include "binding.hpp"

#include <nanobind/stl/string.h>

#include <string>

namespace tritonshm::binding {
namespace {

PyObject* g_exception = nullptr;  // a strong reference, for the life of the process

}  // namespace

void bind_errors(nb::module_& m) {
  nb::dict namespace_;
  namespace_["errno"] = 0;
  namespace_["reason"] = nb::none();
  namespace_["__doc__"] =
      "Exception type for shared memory related error.\n\n"
      "Raised for every failure of tritonshm. The message starts with tritonclient's own text\n"
      "('unable to create the shared memory region', 'unable to set the shared memory region', ...)\n"
      "and goes on with the key, the sizes or offset involved and, for OS failures, the OS error.\n"
      "``errno`` holds the OS error number, or 0 when the failure is not an OS error.\n"
      "``reason`` says why memory was refused, for code that acts on it: 'limit_reached',\n"
      "'closed' or 'forked_child'; None for every other failure.";
  // Qualified by the module's own name, so that the stub generator (which
  // imports the module as "_core") types it; tritonshm/__init__.py shows it as
  // tritonshm.SharedMemoryException.
  const std::string name = nb::cast<std::string>(m.attr("__name__")) + ".SharedMemoryException";
  g_exception = PyErr_NewException(name.c_str(), PyExc_Exception, namespace_.ptr());
  if (g_exception == nullptr) throw nb::python_error();
  m.attr("SharedMemoryException") = nb::handle(g_exception);
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const SharedMemoryError& e) {
      const std::string_view what = e.what();
      nb::object message =
          nb::steal(PyUnicode_DecodeUTF8(what.data(), static_cast<Py_ssize_t>(what.size()), "replace"));
      if (!message.is_valid()) return;
      nb::object exc = nb::steal(PyObject_CallFunctionObjArgs(g_exception, message.ptr(), nullptr));
      if (!exc.is_valid()) return;  // the call set an error already
      nb::object number = nb::steal(PyLong_FromLong(e.os_error()));
      if (!number.is_valid() || PyObject_SetAttrString(exc.ptr(), "errno", number.ptr()) != 0) PyErr_Clear();
      if (e.reason() != Reason::none) {
        const std::string_view reason = reason_name(e.reason());
        nb::object name = nb::steal(PyUnicode_FromStringAndSize(reason.data(), static_cast<Py_ssize_t>(reason.size())));
        if (!name.is_valid() || PyObject_SetAttrString(exc.ptr(), "reason", name.ptr()) != 0) PyErr_Clear();
      }
      PyErr_SetObject(g_exception, exc.ptr());
    }
  });
}

}  // namespace tritonshm::binding
