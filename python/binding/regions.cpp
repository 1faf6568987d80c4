// The seed API: the region handle class and the calls on it.
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <memory>
#include <string>
#include <vector>

#include "arguments.hpp"
#include "arrays.hpp"
#include "binding.hpp"
#include "tritonshm/registry.hpp"

namespace tritonshm::binding {
namespace {

// What a tritonshm.SharedMemoryRegion holds. The name and key are kept as
// given (the reference stores any object there); they are checked when the
// handle is made. The handle is empty until create or attach fills it.
struct RegionHandle {
  nb::object triton_shm_name;
  nb::object shm_key;
  Handle handle;
  // The base object of the views get_contents_as_numpy makes, made once per
  // mapping instead of once per call (making it is a large part of a small
  // get), and dropped at destroy so that the mapping goes when its views do.
  nb::object view_owner;
  const detail::Mapping* view_owner_of = nullptr;
};

std::string text_of(const nb::object& value) {
  return PyUnicode_Check(value.ptr()) ? nb::cast<std::string>(value) : nb::cast<std::string>(nb::repr(value));
}

// The SharedMemoryRegion argument, with a live or destroyed handle, as a failure of `op`.
RegionHandle& region_handle_of(nb::handle obj, Operation op) {
  // A type check and a pointer: nanobind's general cast would look the
  // Python subclass up in its type map on every call, on the hot path.
  static PyTypeObject* const type = reinterpret_cast<PyTypeObject*>(nb::type<RegionHandle>().ptr());
  if (!PyObject_TypeCheck(obj.ptr(), type) || !nb::inst_ready(obj)) {
    throw SharedMemoryError(op, "",
                            "expected a SharedMemoryRegion from create_shared_memory_region, got " + py_type_name(obj));
  }
  RegionHandle* region = nb::inst_ptr<RegionHandle>(obj);
  if (region->handle.key().empty() && !region->handle.live()) {
    throw SharedMemoryError(op, text_of(region->shm_key),
                            "the handle '" + text_of(region->triton_shm_name) +
                                "' is not mapped: make handles with create_shared_memory_region");
  }
  return *region;  // kept alive by the argument the caller holds
}

// The region behind a handle; a destroyed handle is a failure of `op`.
std::shared_ptr<Region> live_region(RegionHandle& self, Operation op) {
  return with_operation(op, self.handle.key(), [&] { return self.handle.region(); });
}

std::shared_ptr<Region> region_of(nb::handle obj, Operation op) { return live_region(region_handle_of(obj, op), op); }

void create(RegionHandle& self, nb::handle byte_size, nb::handle create_only, nb::handle mode, nb::handle reserve,
            nb::handle prefault) {
  const std::string key = parse_str(self.shm_key, "shm_key", Operation::create);
  const std::string name = parse_str(self.triton_shm_name, "triton_shm_name", Operation::create, key);
  const uint64_t size = parse_unsigned(byte_size, "byte_size", Operation::create, key);
  RegionOptions options;
  options.mode = static_cast<mode_t>(parse_unsigned(mode, "mode", Operation::create, key, 07777));
  options.reserve = PyObject_IsTrue(reserve.ptr()) == 1;
  options.prefault = PyObject_IsTrue(prefault.ptr()) == 1;
  const bool exclusive = PyObject_IsTrue(create_only.ptr()) == 1;
  nb::gil_scoped_release release;  // reserving or prefaulting gigabytes takes a while
  self.handle = exclusive ? create_shared_memory_region(name, key, size, tritonshm::create_only, options)
                          : create_shared_memory_region(name, key, size, open_or_create, options);
}

void attach(RegionHandle& self) {
  const std::string key = parse_str(self.shm_key, "shm_key", Operation::open);
  const std::string name = parse_str(self.triton_shm_name, "triton_shm_name", Operation::open, key);
  nb::gil_scoped_release release;
  self.handle = attach_shared_memory_region(name, key);
}

// An np.object_ array in set_shared_memory_region is an already serialized
// BYTES tensor (serialize_byte_tensor's output): one element holding bytes.
// Returns nullptr for an empty one (nothing to write).
PyObject* serialized_bytes_of(PyArrayObject* arr, const std::string& key) {
  const npy_intp n = PyArray_SIZE(arr);
  if (n == 0) return nullptr;
  if (n != 1) {
    throw SharedMemoryError(Operation::set, key,
                            "an np.object_ array must hold one serialized BYTES buffer (the output of "
                            "serialize_byte_tensor), got " +
                                std::to_string(n) + " elements");
  }
  PyObject* item = *static_cast<PyObject**>(PyArray_DATA(arr));
  if (item == nullptr || !(PyBytes_Check(item) || PyByteArray_Check(item) || PyMemoryView_Check(item))) {
    throw SharedMemoryError(Operation::set, key,
                            std::string("the np.object_ array holds ") + (item ? py_type_name(item) : "nothing") +
                                ", expected serialized bytes (use serialize_byte_tensor)");
  }
  return item;
}

// What an element of input_values is. numpy arrays as the reference takes
// them; beyond it, CPU memory from other libraries without a numpy copy.
enum class Source { numpy, dlpack, buffer, unsupported };

Source kind_of(PyObject* item) {
  if (PyArray_Check(item)) return Source::numpy;
  static PyObject* dlpack = PyUnicode_InternFromString("__dlpack__");
  if (PyObject_HasAttr(item, dlpack)) return Source::dlpack;  // array libraries: torch, jax, cupy, array-api-strict
  if (PyObject_CheckBuffer(item)) return Source::buffer;      // bytes, bytearray, memoryview, array.array
  return Source::unsupported;
}

// A DLPack producer's tensor as a numpy array over the same memory (no copy).
// Memory on another device is an error that says so.
nb::object from_dlpack(PyObject* item, Py_ssize_t index, const std::string& key) {
  // Never destroyed: a static nb::object would be released by C++'s exit-time
  // destructors, after the interpreter is gone (a crash at exit).
  static PyObject* numpy_from_dlpack = nb::object(nb::module_::import_("numpy").attr("from_dlpack")).release().ptr();
  try {
    nb::object array = nb::handle(numpy_from_dlpack)(nb::handle(item));
    if (!PyArray_Check(array.ptr())) throw SharedMemoryError(Operation::set, key, "numpy.from_dlpack gave no array");
    return array;
  } catch (nb::python_error& e) {
    throw SharedMemoryError(Operation::set, key,
                            "element " + std::to_string(index) + " (" + py_type_name(item) +
                                ") cannot be read as CPU memory through __dlpack__: " + e.what() +
                                " (copy it to the CPU first)");
  }
}

// The bytes of a buffer-protocol object, in C order: as they are when
// contiguous, else copied once into a contiguous buffer.
Buffer contiguous_buffer(PyObject* item, const std::string& key) {
  Py_buffer probe;
  if (PyObject_GetBuffer(item, &probe, PyBUF_C_CONTIGUOUS) == 0) {
    PyBuffer_Release(&probe);
    return Buffer(item, Operation::set, key);
  }
  PyErr_Clear();
  nb::object contiguous = nb::steal(PyMemoryView_GetContiguous(item, PyBUF_READ, 'C'));
  if (!contiguous.is_valid()) throw nb::python_error();
  return Buffer(contiguous.ptr(), Operation::set, key, contiguous);
}

// set_shared_memory_region: the arguments in the reference's order, then
// every bound before the first byte moves.
void set_region(nb::handle shm_handle, nb::handle values, nb::handle offset_obj) {
  if (!PyList_Check(values.ptr()) && !PyTuple_Check(values.ptr())) {
    throw SharedMemoryError("input_values must be specified as a list/tuple of numpy arrays, got " +
                            py_type_name(values));
  }
  const Py_ssize_t n = sequence_size(values.ptr());
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject* item = sequence_item(values.ptr(), i);
    if (kind_of(item) == Source::unsupported) {
      throw SharedMemoryError("each element of input_values must be a numpy array, got " + py_type_name(item) +
                              " at index " + std::to_string(i) +
                              " (beyond tritonclient, objects with __dlpack__ or the buffer protocol in CPU memory "
                              "are taken too)");
    }
  }
  std::shared_ptr<Region> region = region_of(shm_handle, Operation::set);
  const std::string& key = region->key();
  const uint64_t offset = parse_unsigned(offset_obj, "offset", Operation::set, key);
  std::vector<Buffer> held;
  held.reserve(static_cast<std::size_t>(n));
  std::vector<nb::object> converted;  // arrays made from DLPack producers, alive for the call
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject* item = sequence_item(values.ptr(), i);
    const Source source = kind_of(item);
    if (source == Source::buffer) {
      held.push_back(contiguous_buffer(item, key));
      continue;
    }
    if (source == Source::dlpack) {
      converted.push_back(from_dlpack(item, i, key));
      item = converted.back().ptr();
    }
    auto* arr = reinterpret_cast<PyArrayObject*>(item);
    if (PyDataType_REFCHK(PyArray_DESCR(arr))) {
      if (PyArray_TYPE(arr) != NPY_OBJECT) {
        throw SharedMemoryError(
            Operation::set, key,
            "dtype " + nb::cast<std::string>(nb::str(nb::handle(reinterpret_cast<PyObject*>(PyArray_DESCR(arr))))) +
                " holds Python objects");
      }
      if (PyObject* bytes = serialized_bytes_of(arr, key)) held.emplace_back(bytes, Operation::set, key);
    } else if (PyArray_IS_C_CONTIGUOUS(arr)) {
      held.emplace_back(item, Operation::set, key);
    } else {
      // Copied in C order first, as the reference does.
      nb::object copy = nb::steal(PyArray_NewCopy(arr, NPY_CORDER));
      if (!copy.is_valid()) throw nb::python_error();
      held.emplace_back(copy.ptr(), Operation::set, key);
    }
  }
  std::vector<std::span<const std::byte>> parts;
  parts.reserve(held.size());
  std::size_t total = 0;
  for (const Buffer& b : held) {
    parts.push_back(b.bytes());
    total += b.bytes().size();
  }
  without_gil_above(total, [&] { region->write(offset, parts); });
}

// get_contents_as_numpy: a zero-copy view for fixed-size types (the mapping
// stays alive as long as any array made from it), a decoded object array for
// BYTES (np.object_ / np.bytes_).
nb::object get_contents(nb::handle shm_handle, nb::handle datatype, nb::handle shape_obj, nb::handle offset_obj) {
  RegionHandle& self = region_handle_of(shm_handle, Operation::read);
  const std::shared_ptr<Region> region = live_region(self, Operation::read);
  const uint64_t offset = parse_unsigned(offset_obj, "offset", Operation::read, region->key());
  if (self.view_owner_of != region->mapping().get()) {
    self.view_owner = mapping_owner(region->mapping());
    self.view_owner_of = region->mapping().get();
  }
  return read_tensor(Slice::whole(region), offset, datatype, shape_obj, TensorOwner::object, self.view_owner,
                     /*empty_past_end=*/true);
}

// The argument holds the RegionHandle for the whole call, so releasing the
// GIL while the handle is destroyed cannot free it under us.
void destroy_region(nb::handle shm_handle) {
  RegionHandle& self = region_handle_of(shm_handle, Operation::destroy);
  {
    nb::gil_scoped_release release;
    self.handle.destroy();
  }
  // After destroy no get can make a new one; views already made keep theirs.
  self.view_owner.reset();
  self.view_owner_of = nullptr;
}

}  // namespace

void bind_regions(nb::module_& m) {
  nb::class_<RegionHandle>(m, "RegionHandle",
                           "The C++ half of tritonshm.SharedMemoryRegion: a counted handle on a region.")
      .def(
          "__init__",
          [](RegionHandle* self, nb::handle triton_shm_name, nb::handle shm_key) {
            new (self) RegionHandle{nb::borrow(triton_shm_name), nb::borrow(shm_key), Handle(), nb::object(), nullptr};
          },
          nb::arg("triton_shm_name").none(), nb::arg("shm_key").none())
      .def_prop_ro("_triton_shm_name", [](const RegionHandle& r) { return r.triton_shm_name; })
      .def_prop_ro("_shm_key", [](const RegionHandle& r) { return r.shm_key; })
      .def_prop_ro(
          "triton_shm_name", [](const RegionHandle& r) { return r.triton_shm_name; },
          "The name the server knows the region by.")
      .def_prop_ro(
          "shm_key", [](const RegionHandle& r) { return r.shm_key; }, "The key of the shared memory object, as given.")
      .def_prop_ro(
          "live", [](const RegionHandle& r) { return r.handle.live(); },
          "Whether the handle is mapped (made by create or attach, not yet destroyed).")
      .def_prop_ro(
          "byte_size", [](nb::handle self) { return region_of(self, Operation::read)->size(); },
          "The size of the region as mapped by this process.")
      .def("__repr__", [](const RegionHandle& r) {
        return "SharedMemoryRegion(" + nb::cast<std::string>(nb::repr(r.triton_shm_name)) + ", " +
               nb::cast<std::string>(nb::repr(r.shm_key)) + ", " + (r.handle.live() ? "live" : "not mapped") + ")";
      });
  m.def("create", &create, nb::arg("region"), nb::arg("byte_size").none(), nb::arg("create_only").none(),
        nb::arg("mode").none(), nb::arg("reserve").none(), nb::arg("prefault").none());
  m.def("attach", &attach, nb::arg("region"));
  m.def("set_region", &set_region, nb::arg("shm_handle").none(), nb::arg("input_values").none(),
        nb::arg("offset").none());
  m.def("get_contents", &get_contents, nb::arg("shm_handle").none(), nb::arg("datatype").none(),
        nb::arg("shape").none(), nb::arg("offset").none(),
        nb::sig("def get_contents(shm_handle: object, datatype: object, shape: object, offset: object) -> "
                "numpy.typing.NDArray[typing.Any]"));
  m.def("destroy_region", &destroy_region, nb::arg("shm_handle").none());
  m.def("mapped_keys", &mapped_shared_memory_regions);
}

}  // namespace tritonshm::binding
