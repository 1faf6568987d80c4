// The binding: argument conversion and numpy glue over the C++ core. Every
// rule (bounds, reference counts, wire formats) lives in the core, so C++
// callers get the same behaviour.
#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>
#include <nanobind/stl/optional.h>

#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

// numpy 2 hides the descriptor's fields behind accessors; numpy 1 (which
// nvidia-pytriton still pins) has only the fields.
#if NPY_ABI_VERSION < 0x02000000
#define PyDataType_ELSIZE(descr) ((descr)->elsize)
#endif

#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "tritonshm/tritonshm.hpp"

namespace nb = nanobind;
using namespace tritonshm;

namespace {

// The Python class tritonshm.SharedMemoryException, set once at import.
PyObject* g_exception_class = nullptr;

[[noreturn]] void fail(const std::string& message) { throw SharedMemoryError(message); }

// The bytes of a Python object, held for the duration of a call. A numpy
// array is read directly (every dtype, datetime and structured ones included);
// anything else must expose a C-contiguous buffer.
class Buffer {
 public:
  Buffer(PyObject* obj, const char* what) {
    if (PyArray_Check(obj) && PyArray_IS_C_CONTIGUOUS(reinterpret_cast<PyArrayObject*>(obj))) {
      auto* arr = reinterpret_cast<PyArrayObject*>(obj);
      owner_ = nb::borrow(obj);
      bytes_ = {static_cast<const std::byte*>(PyArray_DATA(arr)), static_cast<std::size_t>(PyArray_NBYTES(arr))};
      return;
    }
    if (PyObject_GetBuffer(obj, &view_, PyBUF_C_CONTIGUOUS) != 0) {
      PyErr_Clear();
      fail(std::string(what) + ": object of type '" + Py_TYPE(obj)->tp_name +
           "' does not expose a C-contiguous buffer");
    }
    has_view_ = true;
    bytes_ = {static_cast<const std::byte*>(view_.buf), static_cast<std::size_t>(view_.len)};
  }
  Buffer(Buffer&& other) noexcept
      : owner_(std::move(other.owner_)), view_(other.view_), has_view_(other.has_view_), bytes_(other.bytes_) {
    other.has_view_ = false;
  }
  Buffer(const Buffer&) = delete;
  ~Buffer() {
    if (has_view_) PyBuffer_Release(&view_);
  }
  std::span<const std::byte> bytes() const { return bytes_; }

 private:
  nb::object owner_;
  Py_buffer view_{};
  bool has_view_ = false;
  std::span<const std::byte> bytes_;
};

// The C++ handle inside a tritonshm.SharedMemoryRegion, with the messages
// the Python API promises for anything else.
Handle& handle_of(nb::handle region) {
  static PyObject* attr = PyUnicode_InternFromString("_handle");
  PyObject* h = PyObject_GetAttr(region.ptr(), attr);
  if (h == nullptr) {
    PyErr_Clear();
    fail(std::string("expected a SharedMemoryRegion from create_shared_memory_region, got ") +
         Py_TYPE(region.ptr())->tp_name);
  }
  nb::object handle = nb::steal(h);
  if (h == Py_None) {
    auto text = [&](const char* name) {
      nb::object v = nb::steal(PyObject_GetAttrString(region.ptr(), name));
      if (!v.is_valid()) PyErr_Clear();
      return v.is_valid() ? nb::cast<std::string>(nb::str(v)) : std::string("?");
    };
    fail("shared memory handle '" + text("_triton_shm_name") + "' (key '" + text("_shm_key") +
         "') is not mapped: make handles with create_shared_memory_region");
  }
  Handle* ptr = nullptr;
  if (!nb::try_cast<Handle*>(handle, ptr) || ptr == nullptr) fail("SharedMemoryRegion._handle is not a tritonshm handle");
  return *ptr;  // kept alive by the region object the caller holds
}

// An offset as the API takes it: any integer (numpy's too), 0 <= offset < 2**64.
uint64_t parse_offset(nb::handle obj, const std::string& key) {
  PyObject* index = PyLong_CheckExact(obj.ptr()) ? Py_NewRef(obj.ptr()) : PyNumber_Index(obj.ptr());
  if (index == nullptr) {
    PyErr_Clear();
    fail("offset for shared memory region '" + key + "' must be an integer, got " + Py_TYPE(obj.ptr())->tp_name);
  }
  const unsigned long long value = PyLong_AsUnsignedLongLong(index);
  const bool bad = value == static_cast<unsigned long long>(-1) && PyErr_Occurred();
  if (bad) {
    PyErr_Clear();
    const std::string text = nb::cast<std::string>(nb::str(nb::handle(index)));
    Py_DECREF(index);
    fail("offset " + text + " for shared memory region '" + key + "' is out of range [0, 2**64)");
  }
  Py_DECREF(index);
  return value;
}

// The mapping stays alive as long as any array made from it: the capsule is
// the arrays' base object.
PyObject* mapping_owner(const std::shared_ptr<const Mapping>& mapping) {
  auto* keep = new std::shared_ptr<const Mapping>(mapping);
  PyObject* capsule = PyCapsule_New(keep, "tritonshm.mapping", [](PyObject* cap) {
    delete static_cast<std::shared_ptr<const Mapping>*>(PyCapsule_GetPointer(cap, "tritonshm.mapping"));
  });
  if (capsule == nullptr) {
    delete keep;
    throw nb::python_error();
  }
  return capsule;
}

struct Shape {
  std::vector<npy_intp> dims;
  uint64_t count = 1;
  // numpy also refuses dimensions whose nonzero product overflows, even when
  // another dimension is 0 and the array would be empty.
  uint64_t nonzero_count = 1;
  bool nonzero_overflow = false;
};

Shape parse_shape(nb::handle shape, const std::string& key) {
  Shape s;
  auto add = [&](nb::handle d) {
    PyObject* index = PyNumber_Index(d.ptr());
    if (index == nullptr) {
      PyErr_Clear();
      fail("unable to read shared memory region '" + key + "': shape entries must be integers, got '" +
           Py_TYPE(d.ptr())->tp_name + "'");
    }
    int overflow = 0;
    const long long v = PyLong_AsLongLongAndOverflow(index, &overflow);
    Py_DECREF(index);
    if (overflow != 0 || v < 0 || v > std::numeric_limits<npy_intp>::max()) {
      fail("unable to read shared memory region '" + key + "': invalid dimension " +
           nb::cast<std::string>(nb::str(d)) + " in shape " + nb::cast<std::string>(nb::repr(shape)));
    }
    if (__builtin_mul_overflow(s.count, static_cast<uint64_t>(v), &s.count)) {
      fail("unable to read shared memory region '" + key + "': shape " + nb::cast<std::string>(nb::repr(shape)) +
           " has more elements than 64 bits can count");
    }
    if (v != 0 && __builtin_mul_overflow(s.nonzero_count, static_cast<uint64_t>(v), &s.nonzero_count)) {
      s.nonzero_overflow = true;
    }
    s.dims.push_back(static_cast<npy_intp>(v));
  };
  // A sequence first: a numpy array of dims is a sequence that also has __index__.
  nb::object seq;
  if (PySequence_Check(shape.ptr()) && !PyUnicode_Check(shape.ptr()) && !PyBytes_Check(shape.ptr())) {
    seq = nb::steal(PySequence_Fast(shape.ptr(), "shape"));
    if (!seq.is_valid()) PyErr_Clear();  // e.g. a 0-d array: try it as one integer below
  }
  if (seq.is_valid()) {
    const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq.ptr());
    if (n > NPY_MAXDIMS) fail("unable to read shared memory region '" + key + "': shape has more than 64 dimensions");
    PyObject** items = PySequence_Fast_ITEMS(seq.ptr());
    for (Py_ssize_t i = 0; i < n; ++i) add(items[i]);
  } else if (PyIndex_Check(shape.ptr())) {
    add(shape);
  } else {
    fail("unable to read shared memory region '" + key + "': shape must be a list of int, got '" +
         Py_TYPE(shape.ptr())->tp_name + "'");
  }
  return s;
}

// Throws unless numpy can make an array of this shape with `itemsize`-byte items.
void check_numpy_can_hold(const Shape& shape, uint64_t itemsize, const std::string& key) {
  uint64_t bytes = 0;
  if (shape.nonzero_overflow || __builtin_mul_overflow(shape.nonzero_count, itemsize, &bytes) ||
      bytes > static_cast<uint64_t>(NPY_MAX_INTP)) {
    fail("unable to read shared memory region '" + key + "': the dimensions of the shape multiply past " +
         "what a numpy array can have");
  }
}

PyArray_Descr* parse_dtype(nb::handle datatype, const std::string& key) {
  PyArray_Descr* descr = nullptr;
  if (!PyArray_DescrConverter(datatype.ptr(), &descr)) {
    PyErr_Clear();
    fail("unable to read shared memory region '" + key + "': " + nb::cast<std::string>(nb::repr(datatype)) +
         " is not a numpy data type");
  }
  return descr;  // new reference
}

// Fills an object array with one `bytes` per element. Small tensors copy as
// they go; large ones allocate every bytes object first (that needs the GIL)
// and copy their contents without the GIL, on several threads.
void fill_bytes_objects(PyArrayObject* arr, const std::vector<std::string_view>& elements, const std::string& on_fault) {
  auto** slots = static_cast<PyObject**>(PyArray_DATA(arr));
  std::size_t total = 0;
  for (const auto& e : elements) total += e.size();
  if (total < (std::size_t{64} << 20)) {
    for (std::size_t i = 0; i < elements.size(); ++i) {
      PyObject* b = PyBytes_FromStringAndSize(elements[i].data(), static_cast<Py_ssize_t>(elements[i].size()));
      if (b == nullptr) throw nb::python_error();
      Py_XSETREF(slots[i], b);
    }
    return;
  }
  std::vector<std::byte*> destinations(elements.size());
  for (std::size_t i = 0; i < elements.size(); ++i) {
    PyObject* b = PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(elements[i].size()));
    if (b == nullptr) throw nb::python_error();
    Py_XSETREF(slots[i], b);
    destinations[i] = reinterpret_cast<std::byte*>(PyBytes_AS_STRING(b));
  }
  bool ok;
  {
    nb::gil_scoped_release release;
    ok = copy_each_guarded(elements, destinations);
  }
  if (!ok) fail(on_fault);
}

// A BYTES tensor of `shape` decoded from the region, as an object array of bytes.
nb::object read_bytes_tensor(const Region& region, const Shape& shape, uint64_t offset) {
  const std::string context = "BYTES tensor in shared memory region '" + region.key() + "' at offset " +
                              std::to_string(offset);
  if (offset > region.size()) {
    fail("unable to read shared memory region '" + region.key() + "': offset " + std::to_string(offset) +
         " is past its end (" + std::to_string(region.size()) + " bytes)");
  }
  std::span<const std::byte> rest = region.bytes(offset, region.size() - offset);
  std::vector<std::string_view> elements = deserialize_bytes(rest, shape.count, context);
  PyObject* arr = PyArray_SimpleNew(static_cast<int>(shape.dims.size()),
                                    const_cast<npy_intp*>(shape.dims.data()), NPY_OBJECT);
  if (arr == nullptr) throw nb::python_error();
  nb::object result = nb::steal(arr);
  fill_bytes_objects(reinterpret_cast<PyArrayObject*>(arr), elements, "unable to read shared memory region '" +
                     region.key() + "': it was shrunk by another process while being read");
  return result;
}

// get_contents_as_numpy: a zero-copy view for fixed-size types, a decoded
// object array for BYTES (np.object_ / np.bytes_).
nb::object get_contents(nb::handle shm_handle, nb::handle datatype, nb::handle shape_obj, nb::handle offset_obj) {
  std::shared_ptr<Region> region = handle_of(shm_handle).region();
  const uint64_t offset = parse_offset(offset_obj, region->key());
  PyArray_Descr* descr = parse_dtype(datatype, region->key());
  nb::object descr_ref = nb::steal(reinterpret_cast<PyObject*>(descr));
  const Shape shape = parse_shape(shape_obj, region->key());
  if (descr->type_num == NPY_OBJECT || descr->type_num == NPY_STRING) {
    check_numpy_can_hold(shape, sizeof(PyObject*), region->key());
    return read_bytes_tensor(*region, shape, offset);
  }
  if (PyDataType_REFCHK(descr)) {
    fail("unable to read shared memory region '" + region->key() + "': data type " +
         nb::cast<std::string>(nb::str(datatype)) + " holds Python objects and cannot live in shared memory");
  }
  const uint64_t itemsize = static_cast<uint64_t>(PyDataType_ELSIZE(descr));
  if (itemsize == 0) {
    fail("unable to read shared memory region '" + region->key() + "': data type " +
         nb::cast<std::string>(nb::str(datatype)) + " has no fixed size");
  }
  check_numpy_can_hold(shape, itemsize, region->key());
  uint64_t nbytes = 0;
  if (__builtin_mul_overflow(shape.count, itemsize, &nbytes)) {
    fail("unable to read shared memory region '" + region->key() + "': the tensor's size overflows 64 bits");
  }
  region->check_backed(offset, nbytes, "unable to read");
  PyObject* owner = mapping_owner(region->mapping());
  Py_INCREF(descr);  // NewFromDescr steals it; descr_ref still owns ours
  // With a null data pointer numpy would allocate; an empty tensor at the very
  // end of an empty region is the one case without an address, so give it one.
  static std::byte empty_tensor_address[16];
  void* data = region->data() != nullptr ? static_cast<void*>(region->data() + offset) : empty_tensor_address;
  PyObject* arr = PyArray_NewFromDescr(&PyArray_Type, descr, static_cast<int>(shape.dims.size()),
                                       const_cast<npy_intp*>(shape.dims.data()), nullptr, data,
                                       NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_WRITEABLE, nullptr);
  if (arr == nullptr) {
    Py_DECREF(owner);
    throw nb::python_error();
  }
  if (PyArray_SetBaseObject(reinterpret_cast<PyArrayObject*>(arr), owner) != 0) {  // steals owner
    Py_DECREF(arr);
    throw nb::python_error();
  }
  PyArray_UpdateFlags(reinterpret_cast<PyArrayObject*>(arr), NPY_ARRAY_UPDATE_ALL);
  return nb::steal(arr);
}

// Above this many bytes a copy releases the GIL; below, releasing and taking
// it back costs more than the copy.
constexpr std::size_t kReleaseGilAbove = 256 << 10;

// An np.object_ array in set_shared_memory_region is an already serialized
// BYTES tensor (serialize_byte_tensor's output): one element holding bytes.
// Returns nullptr for an empty one (nothing to write).
PyObject* serialized_bytes_of(PyArrayObject* arr, const std::string& key) {
  const npy_intp n = PyArray_SIZE(arr);
  if (n == 0) return nullptr;
  if (n != 1) {
    fail("unable to set shared memory region '" + key + "': an np.object_ array must hold one serialized BYTES "
         "buffer (the output of serialize_byte_tensor), got " + std::to_string(n) + " elements");
  }
  PyObject* item = *static_cast<PyObject**>(PyArray_DATA(arr));
  if (item == nullptr || !(PyBytes_Check(item) || PyByteArray_Check(item) || PyMemoryView_Check(item))) {
    fail("unable to set shared memory region '" + key + "': the np.object_ array holds " +
         (item ? Py_TYPE(item)->tp_name : "nothing") + ", expected serialized bytes (use serialize_byte_tensor)");
  }
  return item;
}

// set_shared_memory_region: every argument is checked and every bound is
// checked before the first byte moves.
void set_region(nb::handle shm_handle, nb::handle values, nb::handle offset_obj) {
  std::shared_ptr<Region> region = handle_of(shm_handle).region();
  if (!PyList_Check(values.ptr()) && !PyTuple_Check(values.ptr())) {
    fail("input_values must be specified as a list/tuple of numpy arrays");
  }
  const uint64_t offset = parse_offset(offset_obj, region->key());
  const Py_ssize_t n = PySequence_Fast_GET_SIZE(values.ptr());
  PyObject** items = PySequence_Fast_ITEMS(values.ptr());
  const std::string& key = region->key();
  std::vector<Buffer> held;
  held.reserve(static_cast<std::size_t>(n));
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject* item = items[i];
    if (!PyArray_Check(item)) {
      fail(std::string("each element of input_values must be a numpy array, got ") + Py_TYPE(item)->tp_name);
    }
    auto* arr = reinterpret_cast<PyArrayObject*>(item);
    if (PyDataType_REFCHK(PyArray_DESCR(arr))) {
      if (PyArray_TYPE(arr) != NPY_OBJECT) {
        fail("unable to set shared memory region '" + key + "': dtype " +
             nb::cast<std::string>(nb::str(nb::handle(reinterpret_cast<PyObject*>(PyArray_DESCR(arr))))) +
             " holds Python objects");
      }
      if (PyObject* bytes = serialized_bytes_of(arr, key)) held.emplace_back(bytes, "unable to set shared memory region");
    } else if (PyArray_IS_C_CONTIGUOUS(arr)) {
      held.emplace_back(item, "unable to set shared memory region");
    } else {
      // Copied in C order first, as the reference does.
      nb::object copy = nb::steal(PyArray_NewCopy(arr, NPY_CORDER));
      if (!copy.is_valid()) throw nb::python_error();
      held.emplace_back(copy.ptr(), "unable to set shared memory region");
    }
  }
  std::vector<std::span<const std::byte>> parts;
  parts.reserve(held.size());
  std::size_t total = 0;
  for (const Buffer& b : held) {
    parts.push_back(b.bytes());
    total += b.bytes().size();
  }
  if (total > kReleaseGilAbove) {
    nb::gil_scoped_release release;
    region->write(offset, parts);
  } else {
    region->write(offset, parts);
  }
}

void destroy_region(nb::handle shm_handle) {
  Handle& handle = handle_of(shm_handle);
  nb::gil_scoped_release release;
  handle.destroy();
}

// The bytes of one element of a BYTES tensor, as tritonclient takes it: a
// `bytes` object as is, anything else as the UTF-8 of str(obj).
std::string_view element_bytes(PyObject* obj, std::vector<nb::object>& keep) {
  if (PyBytes_CheckExact(obj)) {
    return {PyBytes_AS_STRING(obj), static_cast<std::size_t>(PyBytes_GET_SIZE(obj))};
  }
  nb::object s = nb::steal(PyUnicode_CheckExact(obj) ? Py_NewRef(obj) : PyObject_Str(obj));
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

nb::bytes serialize_bytes_tensor(nb::handle array) {
  auto* arr = reinterpret_cast<PyArrayObject*>(array.ptr());
  if (!PyArray_Check(array.ptr()) || !PyArray_IS_C_CONTIGUOUS(arr)) fail("cannot serialize BYTES tensor: expected a C-contiguous numpy array");
  const npy_intp n = PyArray_SIZE(arr);
  std::vector<std::string_view> views;
  views.reserve(static_cast<std::size_t>(n));
  std::vector<nb::object> keep;
  if (PyArray_TYPE(arr) == NPY_OBJECT) {
    auto** items = static_cast<PyObject**>(PyArray_DATA(arr));
    keep.reserve(static_cast<std::size_t>(n));
    for (npy_intp i = 0; i < n; ++i) {
      PyObject* item = items[i] != nullptr ? items[i] : Py_None;
      keep.push_back(nb::borrow(item));  // another thread may replace the element meanwhile
      views.push_back(element_bytes(item, keep));
    }
  } else if (PyArray_TYPE(arr) == NPY_STRING) {
    // numpy drops trailing NUL bytes when it hands out an 'S' element: do the same.
    const std::size_t width = static_cast<std::size_t>(PyArray_ITEMSIZE(arr));
    const char* base = static_cast<const char*>(PyArray_DATA(arr));
    keep.push_back(nb::borrow(array));
    for (npy_intp i = 0; i < n; ++i) {
      const char* e = base + static_cast<std::size_t>(i) * width;
      std::size_t len = width;
      while (len > 0 && e[len - 1] == '\0') --len;
      views.emplace_back(e, len);
    }
  } else {
    fail("cannot serialize bytes tensor: invalid datatype " + nb::cast<std::string>(nb::str(array.attr("dtype"))) +
         " (expected np.object_ or np.bytes_)");
  }
  const uint64_t total = serialized_bytes_size(views);
  PyObject* out = PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(total));
  if (out == nullptr) throw nb::python_error();
  nb::bytes result = nb::steal<nb::bytes>(out);
  std::span<std::byte> dest(reinterpret_cast<std::byte*>(PyBytes_AS_STRING(out)), static_cast<std::size_t>(total));
  if (total > kReleaseGilAbove) {
    nb::gil_scoped_release release;
    serialize_bytes_into(views, dest);
  } else {
    serialize_bytes_into(views, dest);
  }
  return result;
}

nb::object deserialize_bytes_tensor(nb::handle encoded) {
  Buffer buf(encoded.ptr(), "cannot deserialize BYTES tensor");
  std::vector<std::string_view> elements = deserialize_bytes(buf.bytes(), std::nullopt, "BYTES tensor");
  npy_intp n = static_cast<npy_intp>(elements.size());
  PyObject* arr = PyArray_SimpleNew(1, &n, NPY_OBJECT);
  if (arr == nullptr) throw nb::python_error();
  nb::object result = nb::steal(arr);
  fill_bytes_objects(reinterpret_cast<PyArrayObject*>(arr), elements, "cannot deserialize BYTES tensor");
  return result;
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
    const Py_ssize_t len = PyObject_Length(items[i] != nullptr ? items[i] : Py_None);
    if (len < 0) {
      PyErr_Clear();
      fail("serialized_byte_size: element " + std::to_string(i) + " of type '" +
           Py_TYPE(items[i] != nullptr ? items[i] : Py_None)->tp_name + "' has no length");
    }
    total += static_cast<uint64_t>(len);
  }
  return total;
}

nb::bytes serialize_bf16_tensor(nb::handle float32_array) {
  Buffer buf(float32_array.ptr(), "cannot serialize bf16 tensor");
  std::span<const std::byte> in = buf.bytes();
  std::span<const float> values(reinterpret_cast<const float*>(in.data()), in.size() / sizeof(float));
  PyObject* out = PyBytes_FromStringAndSize(nullptr, static_cast<Py_ssize_t>(values.size() * 2));
  if (out == nullptr) throw nb::python_error();
  nb::bytes result = nb::steal<nb::bytes>(out);
  nb::gil_scoped_release release;
  serialize_bf16_into(values, {reinterpret_cast<std::byte*>(PyBytes_AS_STRING(out)), values.size() * 2});
  return result;
}

nb::object deserialize_bf16_tensor(nb::handle encoded) {
  Buffer buf(encoded.ptr(), "cannot deserialize bf16 tensor");
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

nb::dict region_info_dict(const RegionInfo& info) {
  nb::dict d;
  d["key"] = info.key;
  d["size"] = info.size;
  d["owner"] = static_cast<uint32_t>(info.owner);
  d["mode"] = static_cast<uint32_t>(info.mode);
  d["modified"] = info.modified;
  d["mapped_by"] = std::vector<int>(info.mapped_by.begin(), info.mapped_by.end());
  d["opened_by"] = std::vector<int>(info.opened_by.begin(), info.opened_by.end());
  d["in_use"] = info.in_use();
  return d;
}

nb::list region_info_list(const std::vector<RegionInfo>& infos) {
  nb::list out;
  for (const auto& i : infos) out.append(region_info_dict(i));
  return out;
}

}  // namespace

NB_MODULE(_core, m) {
  if (_import_array() < 0) throw nb::python_error();

  m.def("_set_exception_class", [](nb::handle cls) {
    Py_XINCREF(cls.ptr());
    g_exception_class = cls.ptr();
  });
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const SharedMemoryError& e) {
      PyObject* cls = g_exception_class != nullptr ? g_exception_class : PyExc_RuntimeError;
      nb::object exc = nb::steal(PyObject_CallFunction(cls, "s", e.what()));
      if (!exc.is_valid()) return;  // the call set an error already
      if (PyObject_SetAttrString(exc.ptr(), "errno", PyLong_FromLong(e.os_error())) != 0) PyErr_Clear();
      PyErr_SetObject(cls, exc.ptr());
    }
  });

  nb::class_<Handle>(m, "Handle")
      .def_prop_ro("name", &Handle::name)
      .def_prop_ro("key", &Handle::key)
      .def_prop_ro("live", &Handle::live)
      .def_prop_ro("byte_size", [](const Handle& h) { return h.region()->size(); })
      .def("destroy", [](Handle& h) {
        nb::gil_scoped_release release;
        h.destroy();
      });

  m.def(
      "create",
      [](std::string name, std::string key, uint64_t byte_size, bool create_only, uint32_t mode, bool reserve,
         bool prefault) {
        RegionOptions options;
        options.mode = static_cast<mode_t>(mode);
        options.reserve = reserve;
        options.prefault = prefault;
        nb::gil_scoped_release release;  // reserving or prefaulting gigabytes takes a while
        return create_shared_memory_region(std::move(name), key, byte_size, create_only, options);
      },
      nb::arg("name"), nb::arg("key"), nb::arg("byte_size"), nb::arg("create_only"), nb::arg("mode"),
      nb::arg("reserve"), nb::arg("prefault"));
  m.def("attach", [](std::string name, std::string key) {
    nb::gil_scoped_release release;
    return attach_shared_memory_region(std::move(name), key);
  });
  m.def("create_unmanaged", [](std::string key, uint64_t byte_size, uint32_t mode, bool reserve) {
    // A region that outlives this process: no handle, so nothing unlinks it.
    RegionOptions options;
    options.mode = static_cast<mode_t>(mode);
    options.reserve = reserve;
    nb::gil_scoped_release release;
    return Region::create(key, byte_size, options)->size();
  });
  m.def("remove", [](std::string key) { return SharedMemoryObject::remove(key); });
  m.def("list_regions", [] {
    Inventory inv;
    {
      nb::gil_scoped_release release;
      inv = list_regions();
    }
    nb::dict d;
    d["regions"] = region_info_list(inv.regions);
    d["uninspected"] = std::vector<int>(inv.uninspected.begin(), inv.uninspected.end());
    return d;
  });
  m.def("region_info", [](std::string key) -> nb::object {
    std::optional<RegionInfo> info;
    {
      nb::gil_scoped_release release;
      info = region_info(key);
    }
    if (!info) return nb::none();
    return region_info_dict(*info);
  });
  m.def("collect_garbage", [](bool dry_run, int64_t min_age_seconds, std::string prefix, bool trust_uninspected) {
    GarbageOptions options;
    options.dry_run = dry_run;
    options.min_age_seconds = min_age_seconds;
    options.prefix = std::move(prefix);
    options.trust_uninspected = trust_uninspected;
    GarbageReport report;
    {
      nb::gil_scoped_release release;
      report = collect_garbage(options);
    }
    nb::dict d;
    d["removed"] = region_info_list(report.removed);
    d["kept"] = region_info_list(report.kept);
    d["uninspected"] = std::vector<int>(report.uninspected.begin(), report.uninspected.end());
    return d;
  });
  m.def("mapped_keys", &mapped_shared_memory_regions);
  m.def("set_region", &set_region, nb::arg("shm_handle").none(), nb::arg("input_values").none(),
        nb::arg("offset").none());
  m.def("destroy_region", &destroy_region, nb::arg("shm_handle").none());
  m.def("get_contents", &get_contents, nb::arg("shm_handle").none(), nb::arg("datatype").none(),
        nb::arg("shape").none(), nb::arg("offset").none());
  m.def("serialize_bytes", &serialize_bytes_tensor);
  m.def("deserialize_bytes", &deserialize_bytes_tensor);
  m.def("serialized_byte_size", &serialized_byte_size);
  m.def("serialize_bf16", &serialize_bf16_tensor);
  m.def("deserialize_bf16", &deserialize_bf16_tensor);
}
