#include "arrays.hpp"

#include <nanobind/stl/string.h>

#include <algorithm>
#include <memory>
#include <string>

#include "arguments.hpp"
#include "tritonshm/tensor_codec.hpp"

namespace tritonshm::binding {

nb::object bytes_object_array(std::span<const npy_intp> dims, std::span<const std::string_view> elements,
                              const ElementCopier& copy) {
  PyObject* arr = PyArray_SimpleNew(static_cast<int>(dims.size()), const_cast<npy_intp*>(dims.data()), NPY_OBJECT);
  if (arr == nullptr) throw nb::python_error();
  nb::object result = nb::steal(arr);
  auto** slots = static_cast<PyObject**>(PyArray_DATA(reinterpret_cast<PyArrayObject*>(arr)));
  // The bytes objects must be allocated with the GIL and outside the copy's
  // SIGBUS guard: a block at a time, so that each object is still in cache
  // when its bytes arrive (allocating all first cost 10% on short elements).
  // A block of large elements is copied without the GIL, and the core splits
  // it across threads when it is large enough.
  constexpr std::size_t block = 256;
  std::vector<std::byte*> destinations(std::min(block, elements.size()));
  for (std::size_t first = 0; first < elements.size(); first += block) {
    const std::size_t count = std::min(block, elements.size() - first);
    std::size_t bytes = 0;
    for (std::size_t i = 0; i < count; ++i) {
      bytes += elements[first + i].size();
      PyObject* b = PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(elements[first + i].size()));
      if (b == nullptr) throw nb::python_error();
      PyObject* was = slots[first + i];
      slots[first + i] = b;
      Py_XDECREF(was);
      destinations[i] = reinterpret_cast<std::byte*>(bytes_data(b));
    }
    const auto part = elements.subspan(first, count);
    const auto into = std::span<std::byte* const>(destinations.data(), count);
    without_gil_above(bytes, [&] { copy(part, into); });
  }
  return result;
}

nb::object mapping_owner(const std::shared_ptr<const detail::Mapping>& mapping, nb::handle also) {
  struct Owned {
    std::shared_ptr<const detail::Mapping> mapping;
    nb::object also;
  };
  auto* keep = new Owned{mapping, nb::borrow(also)};
  PyObject* capsule = PyCapsule_New(keep, "tritonshm.mapping", [](PyObject* cap) {
    delete static_cast<Owned*>(PyCapsule_GetPointer(cap, "tritonshm.mapping"));
  });
  if (capsule == nullptr) {
    delete keep;
    throw nb::python_error();
  }
  return nb::steal(capsule);
}

nb::object read_tensor(const Slice& slice, uint64_t offset, nb::handle datatype, nb::handle shape_obj,
                       TensorOwner owner, nb::handle owner_object, bool empty_past_end) {
  const std::string& key = slice.key();
  nb::object descr_ref = parse_dtype(datatype, key);
  auto* descr = reinterpret_cast<PyArray_Descr*>(descr_ref.ptr());
  Shape shape = parse_shape(shape_obj, key);
  // [-1]: a BYTES tensor of one element (the reference reads strings until
  // their count is a multiple of the shape's product, -1), else every whole
  // item from the offset to the region's end (numpy's rule for a buffer).
  auto whole = [&](uint64_t count) {
    shape.dims_storage[0] = static_cast<npy_intp>(count);
    shape.count = count;
    shape.nonzero_count = count == 0 ? 1 : count;
  };
  if (descr->type_num == NPY_OBJECT || descr->type_num == NPY_STRING) {
    if (shape.whole) whole(1);
    check_numpy_can_hold(shape, sizeof(PyObject*), key);
    std::vector<std::string_view> elements = slice.read_bytes(offset, shape.count);
    return bytes_object_array(shape.dims(), elements, [&slice](auto from, auto to) { slice.copy_out(from, to); });
  }
  if (PyDataType_REFCHK(descr)) {
    throw SharedMemoryError(Operation::read, key,
                            "data type " + nb::cast<std::string>(nb::str(datatype)) +
                                " holds Python objects and cannot live in shared memory");
  }
  const uint64_t itemsize = static_cast<uint64_t>(PyDataType_ELSIZE(descr));
  if (itemsize == 0) {
    throw SharedMemoryError(Operation::read, key,
                            "data type " + nb::cast<std::string>(nb::str(datatype)) + " has no fixed size");
  }
  if (shape.whole) whole(offset < slice.size() ? (slice.size() - offset) / itemsize : 0);
  check_numpy_can_hold(shape, itemsize, key);
  uint64_t nbytes = 0;
  if (__builtin_mul_overflow(shape.count, itemsize, &nbytes)) {
    throw SharedMemoryError(Operation::read, key, "the tensor's size overflows 64 bits");
  }
  if (empty_past_end && nbytes == 0 && offset > slice.size()) offset = slice.size();
  // Checked before numpy allocates anything.
  slice.check(offset, nbytes, Operation::read);
  Py_INCREF(reinterpret_cast<PyObject*>(descr));  // the array constructors steal it; descr_ref still owns ours
  if (owner == TensorOwner::copy) {
    PyObject* arr = PyArray_NewFromDescr(&PyArray_Type, descr, static_cast<int>(shape.dims().size()),
                                         const_cast<npy_intp*>(shape.dims().data()), nullptr, nullptr, 0, nullptr);
    if (arr == nullptr) throw nb::python_error();
    nb::object result = nb::steal(arr);
    void* out = PyArray_DATA(reinterpret_cast<PyArrayObject*>(arr));
    without_gil_above(nbytes, [&] { slice.read(offset, out, nbytes); });
    return result;
  }
  const std::span<std::byte> bytes = slice.bytes(offset, nbytes);
  PyObject* base = new_reference(owner_object.ptr());
  // With a null data pointer numpy would allocate; an empty tensor at the very
  // end of an empty region is the one case without an address, so give it one.
  static std::byte empty_tensor_address[16];
  void* data = bytes.data() != nullptr ? static_cast<void*>(bytes.data()) : empty_tensor_address;
  PyObject* arr = PyArray_NewFromDescr(&PyArray_Type, descr, static_cast<int>(shape.dims().size()),
                                       const_cast<npy_intp*>(shape.dims().data()), nullptr, data,
                                       NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_WRITEABLE, nullptr);
  if (arr == nullptr) {
    Py_DECREF(base);
    throw nb::python_error();
  }
  if (PyArray_SetBaseObject(reinterpret_cast<PyArrayObject*>(arr), base) != 0) {  // steals base
    Py_DECREF(arr);
    throw nb::python_error();
  }
  return nb::steal(arr);
}

namespace {

[[noreturn]] void fail(const std::string& message) { throw SharedMemoryError(message); }

std::string_view element_bytes(PyObject* obj, std::vector<nb::object>& keep) {
  if (PyBytes_CheckExact(obj)) {
    return bytes_view(obj);
  }
  nb::object s = nb::steal(PyUnicode_CheckExact(obj) ? new_reference(obj) : PyObject_Str(obj));
  if (!s.is_valid()) throw nb::python_error();
  Py_ssize_t n = 0;
  const char* utf8 = PyUnicode_AsUTF8AndSize(s.ptr(), &n);
  if (utf8 == nullptr) {
    PyErr_Clear();
    fail("cannot serialize BYTES tensor: an element's text cannot be encoded as UTF-8");
  }
  keep.push_back(std::move(s));
  return {utf8, static_cast<std::size_t>(n)};
}

}  // namespace

BytesElements bytes_elements(nb::handle array) {
  auto* arr = reinterpret_cast<PyArrayObject*>(array.ptr());
  if (!PyArray_Check(array.ptr()) || !PyArray_IS_C_CONTIGUOUS(arr)) {
    fail("cannot serialize BYTES tensor: expected a C-contiguous numpy array");
  }
  const npy_intp n = PyArray_SIZE(arr);
  BytesElements out;
  out.views.reserve(static_cast<std::size_t>(n));
  if (PyArray_TYPE(arr) == NPY_OBJECT) {
    auto** items = static_cast<PyObject**>(PyArray_DATA(arr));
    out.keep.reserve(static_cast<std::size_t>(n));
    for (npy_intp i = 0; i < n; ++i) {
      PyObject* item = items[i] != nullptr ? items[i] : Py_None;
      out.keep.push_back(nb::borrow(item));  // another thread may replace the element meanwhile
      out.views.push_back(element_bytes(item, out.keep));
    }
  } else if (PyArray_TYPE(arr) == NPY_STRING) {
    // numpy drops trailing NUL bytes when it hands out an 'S' element: do the same.
    const std::size_t width = static_cast<std::size_t>(PyArray_ITEMSIZE(arr));
    const char* base = static_cast<const char*>(PyArray_DATA(arr));
    out.keep.push_back(nb::borrow(array));
    for (npy_intp i = 0; i < n; ++i) {
      const char* e = base + static_cast<std::size_t>(i) * width;
      std::size_t len = width;
      while (len > 0 && e[len - 1] == '\0') --len;
      out.views.emplace_back(e, len);
    }
  } else {
    fail("cannot serialize bytes tensor: invalid datatype " + nb::cast<std::string>(nb::str(array.attr("dtype"))) +
         " (expected np.object_ or np.bytes_)");
  }
  out.serialized_size = serialized_bytes_size(out.views);
  return out;
}

}  // namespace tritonshm::binding
