#include "stream_copy.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>

// TRITONSHM_NO_SIMD builds the portable path on x86 too: CI compiles it that
// way to check what non-x86 machines build.
#if (defined(__x86_64__) || defined(__i386__)) && !defined(TRITONSHM_NO_SIMD)
#include <immintrin.h>
#define TRITONSHM_X86 1
#endif

namespace tritonshm::detail {
namespace {

constexpr std::size_t kLine = 64;

#ifdef TRITONSHM_X86
// Each kernel writes whole 64-byte lines at a 64-byte-aligned dst, two lines
// per iteration; loads are unaligned (the source is any array).
__attribute__((target("avx512f"))) void lines_avx512(std::byte* dst, const std::byte* src, std::size_t lines) {
  std::size_t i = 0;
  for (; i + 2 <= lines; i += 2) {
    const __m512i a = _mm512_loadu_si512(src + i * kLine);
    const __m512i b = _mm512_loadu_si512(src + i * kLine + 64);
    _mm512_stream_si512(reinterpret_cast<__m512i*>(dst + i * kLine), a);
    _mm512_stream_si512(reinterpret_cast<__m512i*>(dst + i * kLine + 64), b);
  }
  if (i < lines) _mm512_stream_si512(reinterpret_cast<__m512i*>(dst + i * kLine), _mm512_loadu_si512(src + i * kLine));
}

__attribute__((target("avx2"))) void lines_avx2(std::byte* dst, const std::byte* src, std::size_t lines) {
  for (std::size_t i = 0; i < lines; ++i) {
    const auto* s = reinterpret_cast<const __m256i*>(src + i * kLine);
    auto* d = reinterpret_cast<__m256i*>(dst + i * kLine);
    const __m256i a = _mm256_loadu_si256(s);
    const __m256i b = _mm256_loadu_si256(s + 1);
    _mm256_stream_si256(d, a);
    _mm256_stream_si256(d + 1, b);
  }
}

__attribute__((target("sse2"))) void lines_sse2(std::byte* dst, const std::byte* src, std::size_t lines) {
  for (std::size_t i = 0; i < lines; ++i) {
    const auto* s = reinterpret_cast<const __m128i*>(src + i * kLine);
    auto* d = reinterpret_cast<__m128i*>(dst + i * kLine);
    const __m128i a = _mm_loadu_si128(s), b = _mm_loadu_si128(s + 1);
    const __m128i c = _mm_loadu_si128(s + 2), e = _mm_loadu_si128(s + 3);
    _mm_stream_si128(d, a);
    _mm_stream_si128(d + 1, b);
    _mm_stream_si128(d + 2, c);
    _mm_stream_si128(d + 3, e);
  }
}
#endif

}  // namespace

StoreIsa cpu_isa() noexcept {
#ifdef TRITONSHM_X86
  static const StoreIsa isa = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return StoreIsa::avx512;
    if (__builtin_cpu_supports("avx2")) return StoreIsa::avx2;
    if (__builtin_cpu_supports("sse2")) return StoreIsa::sse2;
    return StoreIsa::portable;
  }();
  return isa;
#else
  return StoreIsa::portable;
#endif
}

void stream_copy(StoreIsa isa, std::byte* dst, const std::byte* src, std::size_t n) noexcept {
  const std::size_t head = std::min(n, (kLine - reinterpret_cast<std::uintptr_t>(dst) % kLine) % kLine);
  const std::size_t lines = (n - head) / kLine;
  if (isa == StoreIsa::portable || lines == 0) {
    std::memcpy(dst, src, n);
    return;
  }
  std::memcpy(dst, src, head);
  dst += head;
  src += head;
#ifdef TRITONSHM_X86
  switch (isa) {
    case StoreIsa::avx512:
      lines_avx512(dst, src, lines);
      break;
    case StoreIsa::avx2:
      lines_avx2(dst, src, lines);
      break;
    default:
      lines_sse2(dst, src, lines);
      break;
  }
#endif
  const std::size_t done = lines * kLine;
  std::memcpy(dst + done, src + done, n - head - done);
}

void store_fence([[maybe_unused]] StoreIsa isa) noexcept {
#ifdef TRITONSHM_X86
  if (isa != StoreIsa::portable) _mm_sfence();
#endif
}

}  // namespace tritonshm::detail
