// The copy engine's description, and its kernels for the benchmarks' limit probe.
#include "tritonshm/copy_engine.hpp"

#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <string>
#include <vector>

#include "arguments.hpp"
#include "binding.hpp"

namespace tritonshm::binding {
namespace {

StoreIsa parse_isa(const std::string& name) {
  if (const std::optional<StoreIsa> isa = isa_named(name)) return *isa;
  throw SharedMemoryError("unknown instruction set '" + name + "': portable, sse2, avx2 or avx512");
}

// A writable C-contiguous buffer, released when done.
class WritableBuffer {
 public:
  explicit WritableBuffer(nb::handle obj) {
    if (PyObject_GetBuffer(obj.ptr(), &view_, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) != 0) {
      PyErr_Clear();
      throw SharedMemoryError("the destination must be a writable C-contiguous buffer, got " + py_type_name(obj));
    }
  }
  WritableBuffer(const WritableBuffer&) = delete;
  WritableBuffer& operator=(const WritableBuffer&) = delete;
  ~WritableBuffer() { PyBuffer_Release(&view_); }
  void* data() const { return view_.buf; }
  std::size_t size() const { return static_cast<std::size_t>(view_.len); }

 private:
  Py_buffer view_{};
};

void copy_with_method(const std::string& method, const std::string& isa, std::size_t threads, nb::handle dst,
                      nb::handle src) {
  if (method != "cached" && method != "streaming") {
    throw SharedMemoryError("unknown copy method '" + method + "': cached or streaming");
  }
  const WritableBuffer to(dst);
  const Buffer from(src.ptr(), Operation::none, "");
  if (to.size() < from.bytes().size()) {
    throw SharedMemoryError("the destination holds " + std::to_string(to.size()) + " bytes, the source " +
                            std::to_string(from.bytes().size()));
  }
  const CopyMethod how = method == "cached" ? CopyMethod::cached : CopyMethod::streaming;
  const StoreIsa with = parse_isa(isa);
  nb::gil_scoped_release release;
  copy_with(how, with, threads, to.data(), from.bytes().data(), from.bytes().size());
}

}  // namespace

void bind_copy_engine(nb::module_& m) {
  m.def(
      "copy_engine",
      [] {
        const CopyEngine& e = copy_engine();
        nb::dict d;
        d["isa"] = std::string(isa_name(e.isa));
        d["stream_threshold"] = e.stream_threshold;
        d["thread_threshold"] = e.thread_threshold;
        d["threads"] = e.threads;
        return d;
      },
      nb::sig("def copy_engine() -> dict[str, typing.Any]"),
      "How large copies run in this process (tritonshm.copy_engine() gives it typed).");
  m.def(
      "supported_isas",
      [] {
        std::vector<std::string> names;
        for (const StoreIsa isa : supported_isas()) names.emplace_back(isa_name(isa));
        return names;
      },
      "The streaming-store instruction sets this CPU runs, best first.");
  m.def("copy_with", &copy_with_method, nb::arg("method"), nb::arg("isa"), nb::arg("threads"), nb::arg("dst"),
        nb::arg("src"),
        "Copies src into dst with one kernel of the engine, unguarded (for measuring the machine): method "
        "'cached' (memcpy) or 'streaming' with instruction set isa, on threads threads.");
}

}  // namespace tritonshm::binding
