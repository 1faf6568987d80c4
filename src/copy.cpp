#include "copy.hpp"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstdint>
#include <cstring>
#include <vector>

#include "parallel.hpp"
#include "stream_copy.hpp"
#include "tritonshm/copy_engine.hpp"

namespace tritonshm::detail {
namespace {

// The first fault any thread saw.
class FirstFault {
 public:
  void record(const std::optional<Fault>& fault) noexcept {
    if (fault && !failed_.exchange(true)) address_.store(fault->address);
  }
  std::optional<Fault> get() const noexcept {
    if (!failed_.load()) return std::nullopt;
    return Fault{address_.load()};
  }

 private:
  std::atomic<const void*> address_{nullptr};
  std::atomic<bool> failed_{false};
};

void store_le32(std::byte* p, uint32_t v) noexcept {
  if constexpr (std::endian::native == std::endian::big) v = __builtin_bswap32(v);
  std::memcpy(p, &v, 4);
}

// One element of a BYTES tensor: streamed when `stream` and long, else memcpy.
inline void put_element(bool stream, StoreIsa isa, std::byte* to, std::string_view element) noexcept {
  const auto* from = reinterpret_cast<const std::byte*>(element.data());
  if (stream && element.size() >= kStreamElementMin) {
    stream_copy(isa, to, from, element.size());
  } else if (!element.empty()) {
    std::memcpy(to, from, element.size());
  }
}

// Copies elements [first, last) under one guard, streaming the long ones when
// `stream`, and fences this thread's stores.
std::optional<Fault> copy_elements(std::span<const std::string_view> sources, std::span<std::byte* const> destinations,
                                   std::size_t first, std::size_t last, bool stream) noexcept {
  const StoreIsa isa = copy_engine().isa;
  auto copy = [&]() noexcept {
    for (std::size_t i = first; i < last; ++i) put_element(stream, isa, destinations[i], sources[i]);
  };
  auto fault = guarded(copy);  // one jump point for the whole run of elements
  if (stream) store_fence(isa);
  return fault;
}

}  // namespace

std::optional<Fault> copy_guarded(std::byte* dst, const std::byte* src, std::size_t n, Destination to) noexcept {
  if (n == 0) return std::nullopt;
  if (n < kStreamThreshold) {
    auto copy = [&]() noexcept { std::memcpy(dst, src, n); };
    return guarded(copy);
  }
  // A local destination is copied with memcpy, which the portable "isa" is.
  const StoreIsa isa = to == Destination::shared ? copy_engine().isa : StoreIsa::portable;
  FirstFault fault;
  split(n, kCopyThreadThreshold, [&](std::size_t begin, std::size_t length) noexcept {
    auto copy = [&]() noexcept { stream_copy(isa, dst + begin, src + begin, length); };
    fault.record(guarded(copy));
    store_fence(isa);  // each thread its own: a fence orders only the stores of the core it runs on
  });
  return fault.get();
}

std::optional<Fault> copy_each_guarded(std::span<const std::string_view> sources,
                                       std::span<std::byte* const> destinations, Destination to) noexcept {
  std::size_t total = 0;
  for (const std::string_view s : sources) total += s.size();
  const bool stream = to == Destination::shared && total >= kStreamThreshold;
  if (total < kCopyThreadThreshold) return copy_elements(sources, destinations, 0, sources.size(), stream);
  // Threads split by bytes: an element belongs to the thread whose share holds
  // its first byte.
  std::vector<std::size_t> starts;
  try {
    starts.resize(sources.size() + 1);
  } catch (...) {
    return copy_elements(sources, destinations, 0, sources.size(), stream);
  }
  for (std::size_t i = 0; i < sources.size(); ++i) starts[i + 1] = starts[i] + sources[i].size();
  FirstFault fault;
  split(total, kCopyThreadThreshold, [&](std::size_t begin, std::size_t length) noexcept {
    const auto first = std::lower_bound(starts.begin(), starts.end() - 1, begin) - starts.begin();
    const auto last = std::lower_bound(starts.begin(), starts.end() - 1, begin + length) - starts.begin();
    fault.record(
        copy_elements(sources, destinations, static_cast<std::size_t>(first), static_cast<std::size_t>(last), stream));
  });
  return fault.get();
}

std::optional<Fault> serialize_bytes_guarded(std::span<const std::string_view> elements, std::byte* out,
                                             std::size_t serialized_size, Destination to) noexcept {
  const std::size_t total = serialized_size - 4 * elements.size();  // the elements' own bytes
  // Threads pay only for long elements: with short ones, the second pass over
  // the output that they need costs more than they save (the benchmarks'
  // BYTES cases measure both).
  const bool long_elements = total / std::max<std::size_t>(elements.size(), 1) >= kStreamElementMin;
  std::vector<std::byte*> destinations;
  if (long_elements && total >= kCopyThreadThreshold) {
    try {
      destinations.resize(elements.size());
    } catch (...) {
      destinations.clear();  // no room for the list: one pass below
    }
  }
  if (destinations.empty()) {
    const bool stream = to == Destination::shared && total >= kStreamThreshold;
    const StoreIsa isa = stream ? copy_engine().isa : StoreIsa::portable;
    // Two instances of the loop, so that the plain one carries no test for
    // streaming: a short element's copy is only a few instructions.
    auto serialize_with = [&]<bool Stream>() noexcept {
      std::byte* p = out;
      for (const std::string_view e : elements) {
        store_le32(p, static_cast<uint32_t>(e.size()));
        put_element(Stream, isa, p + 4, e);
        p += 4 + e.size();
      }
    };
    auto serialize = [&]() noexcept {
      if (stream) {
        serialize_with.template operator()<true>();
      } else {
        serialize_with.template operator()<false>();
      }
    };
    auto fault = guarded(serialize);
    store_fence(isa);
    return fault;
  }
  // Large tensors: the lengths first, then the element bytes with the copy
  // engine (streamed into a region, and on several threads when large enough).
  auto lengths = [&]() noexcept {
    std::byte* p = out;
    for (std::size_t i = 0; i < elements.size(); ++i) {
      store_le32(p, static_cast<uint32_t>(elements[i].size()));
      destinations[i] = p + 4;
      p += 4 + elements[i].size();
    }
  };
  if (auto fault = guarded(lengths)) return fault;
  return copy_each_guarded(elements, destinations, to);
}

}  // namespace tritonshm::detail
