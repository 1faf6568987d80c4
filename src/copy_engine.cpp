#include "tritonshm/copy_engine.hpp"

#include <cstdlib>
#include <cstring>
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
  if (env == nullptr) return cpu;
  for (const StoreIsa isa : {StoreIsa::portable, StoreIsa::sse2, StoreIsa::avx2, StoreIsa::avx512}) {
    if (isa_name(isa) == env) return isa < cpu ? isa : cpu;
  }
  return cpu;
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
  auto* d = static_cast<std::byte*>(dst);
  const auto* s = static_cast<const std::byte*>(src);
  auto kernel = [&](std::size_t begin, std::size_t length) noexcept {
    if (method == CopyMethod::cached) {
      std::memcpy(d + begin, s + begin, length);
    } else {
      detail::stream_copy(isa, d + begin, s + begin, length);
      detail::store_fence(isa);
    }
  };
  if (threads <= 1 || n == 0) {
    kernel(0, n);
    return;
  }
  detail::split_into(n, threads, kernel);
}

}  // namespace tritonshm
