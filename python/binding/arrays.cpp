#include "arrays.hpp"

namespace tritonshm::binding {


nb::object bytes_object_array(const std::vector<npy_intp>& dims, std::span<const std::string_view> elements,
                              const ElementCopier& copy) {
  PyObject* arr = PyArray_SimpleNew(static_cast<int>(dims.size()), const_cast<npy_intp*>(dims.data()), NPY_OBJECT);
  if (arr == nullptr) throw nb::python_error();
  nb::object result = nb::steal(arr);
  auto** slots = static_cast<PyObject**>(PyArray_DATA(reinterpret_cast<PyArrayObject*>(arr)));
  std::vector<std::byte*> destinations(elements.size());
  std::size_t total = 0;
  for (std::size_t i = 0; i < elements.size(); ++i) {
    PyObject* b = PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(elements[i].size()));
    if (b == nullptr) throw nb::python_error();
    Py_XSETREF(slots[i], b);
    destinations[i] = reinterpret_cast<std::byte*>(PyBytes_AS_STRING(b));
    total += elements[i].size();
  }
  if (total > kReleaseGilAbove) {
    nb::gil_scoped_release release;
    copy(elements, destinations);
  } else {
    copy(elements, destinations);
  }
  return result;
}

}  // namespace tritonshm::binding
