// Triton's tensor wire formats (tritonclient.utils' helpers) and the table of
// its data types.
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <string>
#include <vector>

#include "arguments.hpp"
#include "arrays.hpp"
#include "binding.hpp"
#include "tritonshm/tensor_codec.hpp"

namespace tritonshm::binding {
namespace {

[[noreturn]] void fail(const std::string& message) { throw SharedMemoryError(message); }

nb::bytes serialize_bytes_tensor(nb::handle array) {
  const BytesElements elements = bytes_elements(array);
  const std::vector<std::string_view>& views = elements.views;
  const uint64_t total = elements.serialized_size;
  PyObject* out = PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(total));
  if (out == nullptr) throw nb::python_error();
  nb::bytes result = nb::steal<nb::bytes>(out);
  std::span<std::byte> dest(reinterpret_cast<std::byte*>(bytes_data(out)), static_cast<std::size_t>(total));
  without_gil_above(total, [&] { serialize_bytes_into(views, dest); });
  return result;
}

// All the elements in `encoded`, or the first `count` (the rest may be anything).
nb::object deserialize_bytes_tensor(nb::handle encoded, std::optional<uint64_t> count) {
  Buffer buf(encoded.ptr(), Operation::none, "");
  const std::vector<std::string_view> elements = deserialize_bytes(buf.bytes(), count, "BYTES tensor");
  const npy_intp decoded = static_cast<npy_intp>(elements.size());
  return bytes_object_array({&decoded, 1}, elements, [](auto from, auto to) { copy_elements(from, to); });
}

uint64_t serialized_byte_size(nb::handle array) {
  auto* arr = reinterpret_cast<PyArrayObject*>(array.ptr());
  if (!PyArray_Check(array.ptr()) || PyArray_TYPE(arr) != NPY_OBJECT || !PyArray_IS_C_CONTIGUOUS(arr)) {
    fail("The tensor_value dtype must be np.object_");
  }
  const npy_intp n = PyArray_SIZE(arr);
  auto** items = static_cast<PyObject**>(PyArray_DATA(arr));
  uint64_t total = 0;
  for (npy_intp i = 0; i < n; ++i) {
    PyObject* item = items[i] != nullptr ? items[i] : Py_None;
    const Py_ssize_t len = PyObject_Length(item);
    if (len < 0) {
      PyErr_Clear();
      fail("serialized_byte_size: element " + std::to_string(i) + " of type '" + py_type_name(item) +
           "' has no length");
    }
    total += static_cast<uint64_t>(len);
  }
  return total;
}

nb::bytes serialize_bf16_tensor(nb::handle float32_array) {
  Buffer buf(float32_array.ptr(), Operation::none, "");
  std::span<const std::byte> in = buf.bytes();
  std::span<const float> values(reinterpret_cast<const float*>(in.data()), in.size() / sizeof(float));
  PyObject* out = PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(values.size() * 2));
  if (out == nullptr) throw nb::python_error();
  nb::bytes result = nb::steal<nb::bytes>(out);
  nb::gil_scoped_release release;
  serialize_bf16_into(values, {reinterpret_cast<std::byte*>(bytes_data(out)), values.size() * 2});
  return result;
}

nb::object deserialize_bf16_tensor(nb::handle encoded) {
  Buffer buf(encoded.ptr(), Operation::none, "");
  std::span<const std::byte> in = buf.bytes();
  npy_intp n = static_cast<npy_intp>(in.size() / 2);
  PyObject* arr = PyArray_SimpleNew(1, &n, NPY_FLOAT32);
  if (arr == nullptr) throw nb::python_error();
  nb::object result = nb::steal(arr);
  std::span<float> out(static_cast<float*>(PyArray_DATA(reinterpret_cast<PyArrayObject*>(arr))),
                       static_cast<std::size_t>(n));
  nb::gil_scoped_release release;
  deserialize_bf16_into(in, out);
  return result;
}

// (Triton name, numpy name, bytes per element) for each type, from the core's table.
std::vector<std::tuple<std::string, std::string, std::size_t>> data_type_table() {
  std::vector<std::tuple<std::string, std::string, std::size_t>> rows;
  for (const DataTypeInfo& t : data_types()) rows.emplace_back(t.name, t.numpy_name, t.size);
  return rows;
}

}  // namespace

void bind_codecs(nb::module_& m) {
  m.def("serialize_bytes", &serialize_bytes_tensor);
  m.def("deserialize_bytes", &deserialize_bytes_tensor, nb::arg("encoded"), nb::arg("count") = nb::none(),
        nb::sig("def deserialize_bytes(encoded: object, count: int | None = None) -> "
                "numpy.typing.NDArray[typing.Any]"));
  m.def("serialized_byte_size", &serialized_byte_size);
  m.def("serialize_bf16", &serialize_bf16_tensor);
  m.def("deserialize_bf16", &deserialize_bf16_tensor,
        nb::sig("def deserialize_bf16(arg: object, /) -> numpy.typing.NDArray[typing.Any]"));
  m.def("data_types", &data_type_table);
}

}  // namespace tritonshm::binding
