// tritonshm's arena of leased shared memory, for the request layer
// (tritonshm.triton): leases written and read as numpy arrays.
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/string_view.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <string>
#include <tuple>
#include <vector>

#include "arguments.hpp"
#include "arrays.hpp"
#include "binding.hpp"
#include "tritonshm/arena.hpp"

namespace tritonshm::binding {
namespace {

Lease& lease_of(nb::handle self) { return nb::cast<Lease&>(self); }

// Throws unless [offset, offset + length) lies inside the lease.
void check_in_lease(const Lease& lease, uint64_t offset, uint64_t length, Operation op) {
  if (!lease.live()) throw SharedMemoryError(op, lease.key(), "the lease was released");
  if (offset > lease.size() || length > lease.size() - offset) {
    throw SharedMemoryError(op, lease.key(),
                            std::to_string(length) + " bytes at offset " + std::to_string(offset) +
                                " do not fit in the lease of " + std::to_string(lease.size()) + " bytes");
  }
}

// Copies a numpy array (in C order) into the lease at `offset`; returns its byte size.
uint64_t write_array(nb::handle self, uint64_t offset, nb::handle array) {
  const Lease& lease = lease_of(self);
  if (!PyArray_Check(array.ptr())) {
    throw SharedMemoryError(Operation::set, lease.key(), "expected a numpy array, got " + py_type_name(array));
  }
  // C order as it is, else a copy (PyArray_GETCONTIGUOUS, which the stable ABI cannot compile).
  auto* arr = reinterpret_cast<PyArrayObject*>(array.ptr());
  nb::object contiguous =
      PyArray_IS_C_CONTIGUOUS(arr) ? nb::borrow(array) : nb::steal(PyArray_NewCopy(arr, NPY_CORDER));
  if (!contiguous.is_valid()) throw nb::python_error();
  Buffer buffer(contiguous.ptr(), Operation::set, lease.key());
  const std::span<const std::byte> bytes = buffer.bytes();
  check_in_lease(lease, offset, bytes.size(), Operation::set);
  without_gil_above(bytes.size(), [&] { lease.region()->write(lease.offset() + offset, bytes.data(), bytes.size()); });
  return bytes.size();
}

void write_bytes(nb::handle self, uint64_t offset, const BytesElements& elements) {
  const Lease& lease = lease_of(self);
  check_in_lease(lease, offset, elements.serialized_size, Operation::set);
  without_gil_above(elements.serialized_size,
                    [&] { lease.region()->write_bytes(lease.offset() + offset, elements.views); });
}

nb::object read(nb::handle self, uint64_t offset, nb::handle datatype, nb::handle shape, bool copy) {
  const Lease& lease = lease_of(self);
  check_in_lease(lease, offset, 0, Operation::read);
  return read_tensor(*lease.region(), lease.offset() + offset, lease.size() - offset, datatype, shape,
                     copy ? TensorOwner::copy : TensorOwner::object, self);
}

std::tuple<std::string, std::string, uint64_t> region_tuple(const ArenaRegion& r) { return {r.name, r.key, r.size}; }

}  // namespace

void bind_arena(nb::module_& m) {
  nb::class_<BytesElements>(m, "BytesTensor", "A BYTES tensor's elements, ready to serialize into a lease.")
      .def("__init__", [](BytesElements* self, nb::handle array) { new (self) BytesElements(bytes_elements(array)); })
      .def_ro("nbytes", &BytesElements::serialized_size);

  nb::class_<Lease>(m, "Lease", "A slice of a registered region that one request owns until release().")
      .def_prop_ro("name", &Lease::name)
      .def_prop_ro("key", &Lease::key)
      .def_prop_ro("offset", &Lease::offset)
      .def_prop_ro("size", &Lease::size)
      .def_prop_ro("live", &Lease::live)
      .def("release", &Lease::release)
      .def("write", &write_array, nb::arg("offset"), nb::arg("array"))
      .def("write_bytes", &write_bytes, nb::arg("offset"), nb::arg("tensor"))
      .def("read", &read, nb::arg("offset"), nb::arg("datatype"), nb::arg("shape"), nb::arg("copy"),
           nb::sig("def read(self, offset: int, datatype: object, shape: object, copy: bool) -> "
                   "numpy.typing.NDArray[typing.Any]"));

  nb::class_<Arena>(m, "Arena", "Regions with keys unique to this process, handing out aligned leases.")
      .def(
          "__init__",
          [](Arena* self, const std::string& key_prefix, uint64_t max_bytes, uint64_t alignment, uint32_t mode,
             bool prefault) {
            ArenaOptions options;
            options.key_prefix = key_prefix;
            options.max_bytes = max_bytes;
            options.alignment = alignment;
            options.region_options.mode = static_cast<mode_t>(mode);
            options.region_options.prefault = prefault;
            new (self) Arena(std::move(options));
          },
          nb::arg("key_prefix"), nb::arg("max_bytes"), nb::arg("alignment"), nb::arg("mode"), nb::arg("prefault"))
      .def(
          "add_region",
          [](Arena& a, uint64_t size) {
            ArenaRegion r;
            {
              nb::gil_scoped_release release;
              r = a.add_region(size);
            }
            return region_tuple(r);
          },
          nb::arg("size"))
      .def("remove_region", &Arena::remove_region, nb::arg("name"))
      .def("try_lease", &Arena::try_lease, nb::arg("nbytes"))
      .def("lease", &Arena::lease, nb::arg("nbytes"))
      .def_prop_ro("capacity", &Arena::capacity)
      .def_prop_ro("leased_bytes", &Arena::leased_bytes)
      .def_prop_ro("lease_count", &Arena::lease_count)
      .def_prop_ro("max_bytes", &Arena::max_bytes)
      .def_prop_ro("alignment", &Arena::alignment)
      .def("regions",
           [](const Arena& a) {
             std::vector<std::tuple<std::string, std::string, uint64_t>> out;
             for (const ArenaRegion& r : a.regions()) out.push_back(region_tuple(r));
             return out;
           })
      .def("close", &Arena::close);
}

}  // namespace tritonshm::binding
