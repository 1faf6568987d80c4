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

// The lease's slice, copied: it holds the region while the GIL is released, so
// another thread's release() meanwhile cannot unmap what is being copied.
Slice slice_of(nb::handle self) { return nb::cast<Lease&>(self).slice(); }

// Copies a numpy array (in C order) into the lease at `offset`; returns its byte size.
uint64_t write_array(nb::handle self, uint64_t offset, nb::handle array) {
  const Slice slice = slice_of(self);
  if (!PyArray_Check(array.ptr())) {
    throw SharedMemoryError(Operation::set, slice.key(), "expected a numpy array, got " + py_type_name(array));
  }
  // C order as it is, else a copy (PyArray_GETCONTIGUOUS, which the stable ABI cannot compile).
  auto* arr = reinterpret_cast<PyArrayObject*>(array.ptr());
  nb::object contiguous =
      PyArray_IS_C_CONTIGUOUS(arr) ? nb::borrow(array) : nb::steal(PyArray_NewCopy(arr, NPY_CORDER));
  if (!contiguous.is_valid()) throw nb::python_error();
  Buffer buffer(contiguous.ptr(), Operation::set, slice.key());
  const std::span<const std::byte> bytes = buffer.bytes();
  without_gil_above(bytes.size(), [&] { slice.write(offset, bytes.data(), bytes.size()); });
  return bytes.size();
}

void write_bytes(nb::handle self, uint64_t offset, const BytesElements& elements) {
  const Slice slice = slice_of(self);
  without_gil_above(elements.serialized_size, [&] { slice.write_bytes(offset, elements.views); });
}

nb::object read(nb::handle self, uint64_t offset, nb::handle datatype, nb::handle shape, bool copy) {
  const Slice slice = slice_of(self);
  if (copy) return read_tensor(slice, offset, datatype, shape, TensorOwner::copy, nb::handle());
  // A view keeps the lease (leased until the last view goes) and the mapping
  // (so that even a release() and close() meanwhile cannot unmap it).
  return read_tensor(slice, offset, datatype, shape, TensorOwner::object,
                     mapping_owner(slice.region()->mapping(), self));
}

using RegionTuple = std::tuple<std::string, std::string, uint64_t>;  // name, key, size

RegionTuple region_tuple(const ArenaRegion& r) { return {r.name, r.key, r.size}; }

std::vector<RegionTuple> region_tuples(const std::vector<ArenaRegion>& regions) {
  std::vector<RegionTuple> out;
  for (const ArenaRegion& r : regions) out.push_back(region_tuple(r));
  return out;
}

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
      .def("commit_region", &Arena::commit_region, nb::arg("name"))
      .def("remove_region", &Arena::remove_region, nb::arg("name"))
      .def("try_lease", &Arena::try_lease, nb::arg("nbytes"))
      .def("lease", &Arena::lease, nb::arg("nbytes"))
      .def_prop_ro("capacity", &Arena::capacity)
      .def_prop_ro("leased_bytes", &Arena::leased_bytes)
      .def_prop_ro("high_water_bytes", &Arena::high_water_bytes)
      .def_prop_ro("lease_count", &Arena::lease_count)
      .def_prop_ro("region_count", &Arena::region_count)
      .def_prop_ro("owned_here", &Arena::owned_here)
      .def_prop_ro("alignment", &Arena::alignment)
      .def("regions", [](const Arena& a) { return region_tuples(a.regions()); })
      .def("pending_regions", [](const Arena& a) { return region_tuples(a.pending_regions()); })
      .def("close", &Arena::close);
}

}  // namespace tritonshm::binding
