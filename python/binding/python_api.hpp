// The few CPython calls whose spelling depends on the build: CPython 3.9 has
// no Py_NewRef, and the stable ABI (one abi3 extension for CPython 3.12 and
// later) hides the macros that read an object's fields. Version-specific
// builds keep the macros: they are the hot paths of set and of BYTES reads.
#pragma once

#include <nanobind/nanobind.h>

#include <string>
#include <string_view>

namespace tritonshm::binding {

namespace nb = nanobind;

// A new reference to obj (Py_NewRef, which CPython 3.9 lacks).
inline PyObject* new_reference(PyObject* obj) {
  Py_INCREF(obj);
  return obj;
}

#ifdef Py_LIMITED_API

// The length and items of a list or a tuple (borrowed references).
inline Py_ssize_t sequence_size(PyObject* list_or_tuple) {
  return PyList_Check(list_or_tuple) ? PyList_Size(list_or_tuple) : PyTuple_Size(list_or_tuple);
}
inline PyObject* sequence_item(PyObject* list_or_tuple, Py_ssize_t i) {
  return PyList_Check(list_or_tuple) ? PyList_GetItem(list_or_tuple, i) : PyTuple_GetItem(list_or_tuple, i);
}

// The contents of a bytes object (one call for both: BYTES tensors ask per element).
inline char* bytes_data(PyObject* bytes) { return PyBytes_AsString(bytes); }
inline std::string_view bytes_view(PyObject* bytes) {
  char* data = nullptr;
  Py_ssize_t size = 0;
  PyBytes_AsStringAndSize(bytes, &data, &size);
  return {data, static_cast<std::size_t>(size)};
}

// The name of a Python object's type, for messages, as tp_name spells it
// (hidden here): CPython derives __module__ and __name__ of a static type from
// tp_name ("numpy.ndarray"; "int" is in builtins), and a class statement's
// tp_name is its __name__.
inline std::string py_type_name(nb::handle obj) {
  nb::handle type(reinterpret_cast<PyObject*>(Py_TYPE(obj.ptr())));
  const std::string name = nb::cast<std::string>(type.attr("__name__"));
  if ((PyType_GetFlags(reinterpret_cast<PyTypeObject*>(type.ptr())) & Py_TPFLAGS_HEAPTYPE) != 0) return name;
  const std::string module = nb::cast<std::string>(type.attr("__module__"));
  return module == "builtins" ? name : module + "." + name;
}

#else

inline Py_ssize_t sequence_size(PyObject* list_or_tuple) { return PySequence_Fast_GET_SIZE(list_or_tuple); }
inline PyObject* sequence_item(PyObject* list_or_tuple, Py_ssize_t i) {
  return PySequence_Fast_GET_ITEM(list_or_tuple, i);
}

inline char* bytes_data(PyObject* bytes) { return PyBytes_AS_STRING(bytes); }
inline std::string_view bytes_view(PyObject* bytes) {
  return {PyBytes_AS_STRING(bytes), static_cast<std::size_t>(PyBytes_GET_SIZE(bytes))};
}

// The name of a Python object's type, for messages.
inline std::string py_type_name(nb::handle obj) { return Py_TYPE(obj.ptr())->tp_name; }

#endif

}  // namespace tritonshm::binding
