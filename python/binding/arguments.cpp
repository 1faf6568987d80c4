#include "arguments.hpp"

#include <nanobind/stl/string.h>

#include <limits>

namespace tritonshm::binding {

std::string parse_str(nb::handle obj, const char* name, Operation op, std::string_view key) {
  if (!PyUnicode_Check(obj.ptr())) {
    throw SharedMemoryError(op, std::string(key), std::string(name) + " must be a str, got " + py_type_name(obj));
  }
  Py_ssize_t n = 0;
  const char* utf8 = PyUnicode_AsUTF8AndSize(obj.ptr(), &n);
  if (utf8 == nullptr) {
    PyErr_Clear();
    throw SharedMemoryError(op, std::string(key), std::string(name) + " cannot be encoded as UTF-8");
  }
  return {utf8, static_cast<std::size_t>(n)};
}

std::string parse_file_name(nb::handle obj, const char* name, Operation op) {
  if (PyBytes_Check(obj.ptr())) return std::string(bytes_view(obj.ptr()));
  if (!PyUnicode_Check(obj.ptr())) {
    throw SharedMemoryError(op, "", std::string(name) + " must be a str or bytes, got " + py_type_name(obj));
  }
  PyObject* encoded = PyUnicode_EncodeFSDefault(obj.ptr());
  if (encoded == nullptr) {
    PyErr_Clear();
    throw SharedMemoryError(op, "", std::string(name) + " cannot be encoded as a file name");
  }
  const nb::object owned = nb::steal(encoded);
  return std::string(bytes_view(encoded));
}

uint64_t parse_unsigned(nb::handle obj, const char* name, Operation op, std::string_view key, uint64_t limit) {
  PyObject* index = PyLong_CheckExact(obj.ptr()) ? new_reference(obj.ptr()) : PyNumber_Index(obj.ptr());
  if (index == nullptr) {
    PyErr_Clear();
    throw SharedMemoryError(op, std::string(key), std::string(name) + " must be an integer, got " + py_type_name(obj));
  }
  nb::object owned = nb::steal(index);
  const unsigned long long value = PyLong_AsUnsignedLongLong(index);
  if ((value == static_cast<unsigned long long>(-1) && PyErr_Occurred()) || value > limit) {
    PyErr_Clear();
    throw SharedMemoryError(op, std::string(key),
                            std::string(name) + " " + nb::cast<std::string>(nb::str(owned)) + " is out of range [0, " +
                                (limit == UINT64_MAX ? std::string("2**64") : std::to_string(limit) + "]") +
                                (limit == UINT64_MAX ? ")" : ""));
  }
  return value;
}

Buffer::Buffer(PyObject* obj, Operation op, std::string_view key, nb::object keep) : keep_(std::move(keep)) {
  if (PyArray_Check(obj) && PyArray_IS_C_CONTIGUOUS(reinterpret_cast<PyArrayObject*>(obj))) {
    auto* arr = reinterpret_cast<PyArrayObject*>(obj);
    owner_ = nb::borrow(obj);
    bytes_ = {static_cast<const std::byte*>(PyArray_DATA(arr)), static_cast<std::size_t>(PyArray_NBYTES(arr))};
    return;
  }
  if (PyObject_GetBuffer(obj, &view_, PyBUF_C_CONTIGUOUS) != 0) {
    PyErr_Clear();
    throw SharedMemoryError(op, std::string(key),
                            "an object of type '" + py_type_name(obj) + "' does not expose a C-contiguous buffer");
  }
  has_view_ = true;
  bytes_ = {static_cast<const std::byte*>(view_.buf), static_cast<std::size_t>(view_.len)};
}

Buffer::Buffer(Buffer&& other) noexcept
    : owner_(std::move(other.owner_)),
      keep_(std::move(other.keep_)),
      view_(other.view_),
      has_view_(other.has_view_),
      bytes_(other.bytes_) {
  other.has_view_ = false;
}

Buffer::~Buffer() {
  if (has_view_) PyBuffer_Release(&view_);
}

// The most dimensions an array may have in the numpy this runs with: built
// against numpy 2 (64), the module may run with numpy 1 (32), which would
// refuse a longer shape with a bare ValueError.
static int max_dims() {
  static const int dims = PyArray_GetNDArrayCFeatureVersion() >= 0x12 ? NPY_MAXDIMS : 32;  // 0x12: numpy 2.0
  return dims;
}

Shape parse_shape(nb::handle shape, std::string_view key) {
  static_assert(NPY_MAXDIMS <= Shape::kMaxDims);
  auto fail = [&](const std::string& detail) { throw SharedMemoryError(Operation::read, std::string(key), detail); };
  Shape s;
  // `lone`: the shape's only dimension, where -1 means the whole buffer.
  auto add = [&](nb::handle d, bool lone) {
    int overflow = 0;
    long long v = 0;
    if (PyLong_CheckExact(d.ptr())) {
      v = PyLong_AsLongLongAndOverflow(d.ptr(), &overflow);
    } else if (PyBool_Check(d.ptr())) {  // an int to Python, not a dimension to numpy
      fail("shape entries must be integers, got 'bool'");
    } else {
      PyObject* index = PyNumber_Index(d.ptr());
      if (index == nullptr) {
        PyErr_Clear();
        fail("shape entries must be integers, got '" + py_type_name(d) + "'");
      }
      v = PyLong_AsLongLongAndOverflow(index, &overflow);
      Py_DECREF(index);
    }
    if (lone && v == -1 && overflow == 0) {
      s.whole = true;
      s.dims_storage[s.ndim++] = 0;
      s.count = s.nonzero_count = 0;
      return;
    }
    if (overflow != 0 || v < 0 || v > std::numeric_limits<npy_intp>::max()) {
      fail("invalid dimension " + nb::cast<std::string>(nb::str(d)) + " in shape " +
           nb::cast<std::string>(nb::repr(shape)));
    }
    if (__builtin_mul_overflow(s.count, static_cast<uint64_t>(v), &s.count)) {
      fail("shape " + nb::cast<std::string>(nb::repr(shape)) + " has more elements than 64 bits can count");
    }
    if (v != 0 && __builtin_mul_overflow(s.nonzero_count, static_cast<uint64_t>(v), &s.nonzero_count)) {
      s.nonzero_overflow = true;
    }
    s.dims_storage[s.ndim++] = static_cast<npy_intp>(v);
  };
  // A sequence first: a numpy array of dims is a sequence that also has __index__.
  nb::object seq;
  if (PySequence_Check(shape.ptr()) && !PyUnicode_Check(shape.ptr()) && !PyBytes_Check(shape.ptr())) {
    seq = nb::steal(PySequence_Fast(shape.ptr(), "shape"));
    if (!seq.is_valid()) PyErr_Clear();  // e.g. a 0-d array: try it as one integer below
  }
  if (seq.is_valid()) {
    const Py_ssize_t n = sequence_size(seq.ptr());
    if (n > max_dims()) fail("shape has more than " + std::to_string(max_dims()) + " dimensions");
    for (Py_ssize_t i = 0; i < n; ++i) add(sequence_item(seq.ptr(), i), n == 1);
  } else if (PyIndex_Check(shape.ptr())) {
    add(shape, true);
  } else {
    fail("shape must be a list of int, got '" + py_type_name(shape) + "'");
  }
  return s;
}

void check_numpy_can_hold(const Shape& shape, uint64_t itemsize, std::string_view key) {
  uint64_t bytes = 0;
  if (shape.nonzero_overflow || __builtin_mul_overflow(shape.nonzero_count, itemsize, &bytes) ||
      bytes > static_cast<uint64_t>(NPY_MAX_INTP)) {
    throw SharedMemoryError(Operation::read, std::string(key),
                            "the dimensions of the shape multiply past what a numpy array can have");
  }
}

namespace {

// Data type arguments seen before and their descriptors, filled on first use
// (at most kSize). Both are held for the life of the process.
struct DtypeCache {
  static constexpr std::size_t kSize = 32;
  PyObject* types[kSize] = {};
  PyArray_Descr* descrs[kSize] = {};
  std::size_t used = 0;

  PyArray_Descr* find(PyObject* type) const {
    for (std::size_t i = 0; i < used; ++i) {
      if (types[i] == type) return descrs[i];
    }
    return nullptr;
  }
  void add(PyObject* type, PyArray_Descr* descr) {
    if (used == kSize) return;
    types[used] = new_reference(type);
    descrs[used] = descr;
    Py_INCREF(reinterpret_cast<PyObject*>(descr));
    ++used;
  }
};

}  // namespace

nb::object parse_dtype(nb::handle datatype, std::string_view key) {
  if (PyArray_DescrCheck(datatype.ptr())) return nb::borrow(datatype);
  // Cached by identity: numpy's own scalar types, whose descriptors never
  // change, and exact str objects (immutable, and held by the cache, so no
  // other object can take their address). The GIL guards the cache.
  static DtypeCache cache;
  if (PyArray_Descr* cached = cache.find(datatype.ptr())) return nb::borrow(reinterpret_cast<PyObject*>(cached));
  const bool cacheable = PyUnicode_CheckExact(datatype.ptr()) ||
                         (PyType_Check(datatype.ptr()) &&
                          PyType_IsSubtype(reinterpret_cast<PyTypeObject*>(datatype.ptr()), &PyGenericArrType_Type));
  PyArray_Descr* descr = nullptr;
  if (!PyArray_DescrConverter(datatype.ptr(), &descr)) {
    PyErr_Clear();
    throw SharedMemoryError(Operation::read, std::string(key),
                            nb::cast<std::string>(nb::repr(datatype)) + " is not a numpy data type");
  }
  if (cacheable) cache.add(datatype.ptr(), descr);
  return nb::steal(reinterpret_cast<PyObject*>(descr));
}

}  // namespace tritonshm::binding
