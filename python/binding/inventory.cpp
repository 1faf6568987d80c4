// tritonshm.inventory: the C++ inventory, its RegionInfo bound as is.
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "arguments.hpp"
#include "binding.hpp"
#include "tritonshm/detail/key.hpp"
#include "tritonshm/inventory.hpp"
#include "tritonshm/region.hpp"

namespace tritonshm::binding {
namespace {

std::vector<int> pids(const std::vector<pid_t>& v) { return {v.begin(), v.end()}; }

// A name from /dev/shm as Python's os.listdir gives it: any bytes, the ones
// that are not UTF-8 kept as surrogates (os.fsencode gives them back).
nb::str file_name(const std::string& name) {
  return nb::steal<nb::str>(PyUnicode_DecodeFSDefaultAndSize(name.data(), static_cast<Py_ssize_t>(name.size())));
}

}  // namespace

void bind_inventory(nb::module_& m) {
  nb::class_<RegionInfo>(m, "RegionInfo", "A region in /dev/shm and the processes that use it.")
      .def_prop_ro(
          "key", [](const RegionInfo& i) { return file_name(i.key); }, "the key, '/name'")
      .def_ro("size", &RegionInfo::size)
      .def_prop_ro(
          "owner", [](const RegionInfo& i) { return static_cast<uint32_t>(i.owner); }, "owner's uid")
      .def_prop_ro(
          "mode", [](const RegionInfo& i) { return static_cast<uint32_t>(i.mode); }, "permission bits")
      .def_ro("modified", &RegionInfo::modified, "seconds since the epoch")
      .def_prop_ro("mapped_by", [](const RegionInfo& i) { return pids(i.mapped_by); })
      .def_prop_ro("opened_by", [](const RegionInfo& i) { return pids(i.opened_by); })
      .def_ro("foreign", &RegionInfo::foreign, "another tool's region: gc leaves it alone unless asked")
      .def_prop_ro("in_use", &RegionInfo::in_use)
      .def("__repr__", [](const RegionInfo& i) {
        return "RegionInfo(key=" + quote_key(i.key) + ", size=" + std::to_string(i.size) +
               ", in_use=" + (i.in_use() ? "True" : "False") + ")";
      });
  nb::class_<KeptRegion>(m, "KeptRegion")
      .def_ro("region", &KeptRegion::region)
      .def_prop_ro("reason", [](const KeptRegion& k) { return std::string(to_string(k.reason)); });
  nb::class_<GarbageReport>(m, "GarbageReport")
      .def_ro("removed", &GarbageReport::removed)
      .def_ro("kept", &GarbageReport::kept)
      .def_prop_ro("uninspected", [](const GarbageReport& r) { return pids(r.uninspected); })
      .def_prop_ro("skipped", &GarbageReport::skipped,
                   "an unused region was left because this process may not remove it");

  m.def(
      "list_regions",
      [] {
        Inventory inventory;
        {
          nb::gil_scoped_release release;
          inventory = list_regions();
        }
        return nb::make_tuple(inventory.regions, pids(inventory.uninspected));
      },
      nb::sig("def list_regions() -> tuple[list[RegionInfo], list[int]]"));
  m.def(
      "normalize_key",
      [](nb::handle key_obj) {
        return file_name(detail::normalize_key(parse_file_name(key_obj, "key", Operation::inspect)));
      },
      nb::arg("key"), nb::sig("def normalize_key(key: str | bytes) -> str"));
  m.def(
      "region_info",
      [](nb::handle key_obj) {
        const std::string key = parse_file_name(key_obj, "key", Operation::inspect);
        nb::gil_scoped_release release;
        return region_info(key);
      },
      nb::arg("key"), nb::sig("def region_info(key: str | bytes) -> RegionInfo | None"));
  m.def(
      "collect_garbage",
      [](bool dry_run, nb::handle min_age_obj, nb::handle prefix_obj, bool trust_uninspected, bool include_foreign) {
        GarbageOptions options;
        options.dry_run = dry_run;
        options.min_age_seconds =
            static_cast<int64_t>(parse_unsigned(min_age_obj, "min_age_seconds", Operation::remove, "", INT64_MAX));
        options.prefix = parse_file_name(prefix_obj, "prefix", Operation::remove);
        options.trust_uninspected = trust_uninspected;
        options.include_foreign = include_foreign;
        nb::gil_scoped_release release;
        return collect_garbage(options);
      },
      nb::arg("dry_run"), nb::arg("min_age_seconds"), nb::arg("prefix"), nb::arg("trust_uninspected"),
      nb::arg("include_foreign"),
      nb::sig("def collect_garbage(dry_run: bool, min_age_seconds: int, prefix: str | bytes, trust_uninspected: bool, "
              "include_foreign: bool) -> GarbageReport"));
  m.def(
      "remove_region",
      [](nb::handle key_obj, bool force) {
        const std::string key = parse_file_name(key_obj, "key", Operation::remove);
        nb::gil_scoped_release release;
        return remove_region(key, force);
      },
      nb::arg("key"), nb::arg("force"), nb::sig("def remove_region(key: str | bytes, force: bool) -> bool"));
  m.def(
      "shm_directory", [] { return std::string(detail::kShmDirectory); },
      "where shared memory objects live (key.hpp: the one place that names it)");
  m.def(
      "read_region",
      [](nb::handle key_obj, nb::handle offset_obj, nb::handle length_obj) {
        const std::string key = parse_file_name(key_obj, "key", Operation::inspect);
        const uint64_t offset = parse_unsigned(offset_obj, "offset", Operation::inspect, key);
        const uint64_t length = parse_unsigned(length_obj, "length", Operation::inspect, key);
        std::vector<std::byte> data;
        {
          nb::gil_scoped_release release;
          data = read_region(key, offset, length);
        }
        return nb::bytes(reinterpret_cast<const char*>(data.data()), data.size());
      },
      nb::arg("key"), nb::arg("offset"), nb::arg("length"),
      nb::sig("def read_region(key: str | bytes, offset: int, length: int) -> bytes"));
  m.def(
      "read_bytes_elements",
      [](nb::handle key_obj, nb::handle element_obj, nb::handle offset_obj, nb::handle skip_obj, nb::handle count_obj) {
        const std::string key = parse_file_name(key_obj, "key", Operation::inspect);
        BytesCursor cursor;
        cursor.element = parse_unsigned(element_obj, "element", Operation::inspect, key);
        cursor.offset = parse_unsigned(offset_obj, "offset", Operation::inspect, key);
        const uint64_t skip = parse_unsigned(skip_obj, "skip", Operation::inspect, key);
        const uint64_t count = parse_unsigned(count_obj, "count", Operation::inspect, key);
        std::vector<std::string> elements;
        {
          nb::gil_scoped_release release;
          elements = read_bytes_elements(key, cursor, skip, count);
        }
        nb::list out;
        for (const std::string& e : elements) out.append(nb::bytes(e.data(), e.size()));
        return nb::make_tuple(out, cursor.element, cursor.offset);
      },
      nb::arg("key"), nb::arg("element"), nb::arg("offset"), nb::arg("skip"), nb::arg("count"),
      nb::sig("def read_bytes_elements(key: str | bytes, element: int, offset: int, skip: int, count: int) "
              "-> tuple[list[bytes], int, int]"),
      "Passes over `skip` elements of the BYTES tensor whose element `element` starts at byte `offset`, then "
      "returns the next `count` and where the one after them is (its index and byte).");
  m.def(
      "create_persistent",
      [](nb::handle key_obj, nb::handle size_obj, nb::handle mode_obj) {
        // A region that outlives this process: no handle, so nothing unlinks it.
        const std::string key = parse_str(key_obj, "key", Operation::create);
        RegionOptions options;
        const uint64_t size = parse_unsigned(size_obj, "byte_size", Operation::create, key);
        options.mode = static_cast<mode_t>(parse_unsigned(mode_obj, "mode", Operation::create, key, 07777));
        nb::gil_scoped_release release;
        return Region::create(key, size, options)->size();
      },
      nb::arg("key"), nb::arg("byte_size"), nb::arg("mode"));
}

}  // namespace tritonshm::binding
