#include "tritonshm/copy_engine.hpp"

#include <cstdlib>
#include <string>

#include "copy.hpp"
#include "parallel.hpp"
#include "stream_copy.hpp"
#include "tritonshm/error.hpp"

namespace tritonshm {
namespace {

// TRITONSHM_COPY_ISA (portable, sse2, avx2, avx512) caps the instruction set,
// to compare kernels or to work around one; it never raises it above the CPU's.
StoreIsa engine_isa() noexcept {
  const StoreIsa cpu = detail::cpu_isa();
  const char* env = std::getenv("TRITONSHM_COPY_ISA");
  const std::optional<StoreIsa> asked = env != nullptr ? isa_named(env) : std::nullopt;
  return asked && *asked < cpu ? *asked : cpu;
}

}  // namespace

std::string_view isa_name(StoreIsa isa) noexcept {
  switch (isa) {
    case StoreIsa::sse2:
      return "sse2";
    case StoreIsa::avx2:
      return "avx2";
    case StoreIsa::avx512:
      return "avx512";
    default:
      return "portable";
  }
}

std::optional<StoreIsa> isa_named(std::string_view name) noexcept {
  for (const StoreIsa isa : {StoreIsa::portable, StoreIsa::sse2, StoreIsa::avx2, StoreIsa::avx512}) {
    if (isa_name(isa) == name) return isa;
  }
  return std::nullopt;
}

const CopyEngine& copy_engine() noexcept {
  static const CopyEngine engine{engine_isa(), detail::kStreamThreshold, detail::kCopyThreadThreshold,
                                 detail::worker_threads()};
  return engine;
}

std::vector<StoreIsa> supported_isas() {
  std::vector<StoreIsa> isas;
  for (int i = static_cast<int>(detail::cpu_isa()); i >= 0; --i) isas.push_back(static_cast<StoreIsa>(i));
  return isas;
}

void copy_with(CopyMethod method, StoreIsa isa, std::size_t threads, void* dst, const void* src, std::size_t n) {
  if (method == CopyMethod::streaming && isa > detail::cpu_isa()) {
    throw SharedMemoryError("copy_with: this CPU has no " + std::string(isa_name(isa)) +
                            " streaming stores (best: " + std::string(isa_name(detail::cpu_isa())) + ")");
  }
  if (n == 0) return;
  auto* d = static_cast<std::byte*>(dst);
  const auto* s = static_cast<const std::byte*>(src);
  const StoreIsa kernel = method == CopyMethod::cached ? StoreIsa::portable : isa;  // portable: memcpy
  detail::split_into(n, threads, [&](std::size_t begin, std::size_t length) noexcept {
    detail::stream_copy(kernel, d + begin, s + begin, length);
    detail::store_fence(kernel);
  });
}

}  // namespace tritonshm
