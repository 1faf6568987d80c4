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

// One tensor's bytes in a lease: where the server finds them (the region's
// name and the offset in the region, as a request names them) and the reads
// and writes bounded by them. It holds the lease object, so that views read
// from it keep the lease.
struct LeasePart {
  nb::object lease;
  std::string name;
  Slice slice;
};

LeasePart part_of(nb::handle self, uint64_t offset, uint64_t size) {
  Lease& lease = nb::cast<Lease&>(self);
  return LeasePart{nb::borrow(self), lease.name(), lease.slice().sub(offset, size)};
}

// The part's slice while its lease is live: once released, the arena may
// lease the same bytes to another request, so the part refuses as the lease does.
const Slice& live_slice(const LeasePart& part) {
  nb::cast<Lease&>(part.lease).slice();  // throws "the lease was released"
  return part.slice;
}

// Copies a numpy array (in C order) to `offset` of `slice`; returns its byte size.
uint64_t write_array_to(const Slice& slice, uint64_t offset, nb::handle array) {
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

void write_bytes_to(const Slice& slice, uint64_t offset, const BytesElements& elements) {
  without_gil_above(elements.serialized_size, [&] { slice.write_bytes(offset, elements.views); });
}

// A view keeps the lease object (leased until the last view goes) and the
// mapping (so that even a release() and close() meanwhile cannot unmap it).
nb::object read_from(const Slice& slice, nb::handle lease, uint64_t offset, nb::handle datatype, nb::handle shape,
                     bool copy) {
  if (copy) return read_tensor(slice, offset, datatype, shape, TensorOwner::copy, nb::handle());
  return read_tensor(slice, offset, datatype, shape, TensorOwner::object,
                     mapping_owner(slice.region()->mapping(), lease));
}

uint64_t write_array(nb::handle self, uint64_t offset, nb::handle array) {
  return write_array_to(slice_of(self), offset, array);
}

void write_bytes(nb::handle self, uint64_t offset, const BytesElements& elements) {
  write_bytes_to(slice_of(self), offset, elements);
}

nb::object read(nb::handle self, uint64_t offset, nb::handle datatype, nb::handle shape, bool copy) {
  return read_from(slice_of(self), self, offset, datatype, shape, copy);
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

  nb::class_<LeasePart>(m, "LeasePart",
                        "One tensor's bytes in a lease: `name` and `offset` as a request gives them to the server "
                        "(the region's name, the offset in the region), reads and writes bounded by `size`.")
      .def_prop_ro("name", [](const LeasePart& p) { return p.name; })
      .def_prop_ro("offset", [](const LeasePart& p) { return p.slice.offset(); })
      .def_prop_ro("size", [](const LeasePart& p) { return p.slice.size(); })
      .def(
          "write", [](const LeasePart& p, nb::handle array) { return write_array_to(live_slice(p), 0, array); },
          nb::arg("array"))
      .def(
          "write_bytes", [](const LeasePart& p, const BytesElements& e) { write_bytes_to(live_slice(p), 0, e); },
          nb::arg("tensor"))
      .def(
          "read",
          [](const LeasePart& p, nb::handle datatype, nb::handle shape, bool copy) {
            return read_from(live_slice(p), p.lease, 0, datatype, shape, copy);
          },
          nb::arg("datatype"), nb::arg("shape"), nb::arg("copy"),
          nb::sig("def read(self, datatype: object, shape: object, copy: bool) -> numpy.typing.NDArray[typing.Any]"));

  nb::class_<Lease>(m, "Lease", "A slice of a registered region that one request owns until release().")
      .def_prop_ro("name", &Lease::name)
      .def_prop_ro("key", &Lease::key)
      .def_prop_ro("offset", &Lease::offset)
      .def_prop_ro("size", &Lease::size)
      .def_prop_ro("live", &Lease::live)
      .def("release", &Lease::release)
      .def("part", &part_of, nb::arg("offset"), nb::arg("size"),
           "The `size` bytes at `offset` of the lease, as one tensor's part.")
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
      .def("retire_region", &Arena::retire_region, nb::arg("name"))
      .def(
          "remove_region",
          [](Arena& a, const std::string& name) {
            nb::gil_scoped_release release;  // unmapping a large region takes a while
            return a.remove_region(name);
          },
          nb::arg("name"))
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
      .def("retired_regions", [](const Arena& a) { return region_tuples(a.retired_regions()); })
      .def("close", &Arena::close);
}

}  // namespace tritonshm::binding
