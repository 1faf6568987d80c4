#include "copy.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <vector>

#include "parallel.hpp"

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

}  // namespace

std::optional<Fault> probe_readable(const std::byte* p) noexcept {
  auto read = [p]() noexcept { [[maybe_unused]] const std::byte value = *static_cast<const volatile std::byte*>(p); };
  return guarded(read);
}

std::optional<Fault> copy_guarded(std::byte* dst, const std::byte* src, std::size_t n) noexcept {
  if (n == 0) return std::nullopt;
  auto copy_range = [dst, src](std::size_t begin, std::size_t length) noexcept {
    auto copy = [&]() noexcept { std::memcpy(dst + begin, src + begin, length); };
    return guarded(copy);
  };
  if (n < kParallelThreshold) return copy_range(0, n);
  FirstFault fault;
  split(n, [&](std::size_t begin, std::size_t length) noexcept { fault.record(copy_range(begin, length)); });
  return fault.get();
}

std::optional<Fault> copy_each_guarded(std::span<const std::string_view> sources,
                                       std::span<std::byte* const> destinations) noexcept {
  auto copy_elements = [&](std::size_t first, std::size_t last) noexcept {
    auto copy = [&]() noexcept {
      for (std::size_t i = first; i < last; ++i) {
        if (!sources[i].empty()) std::memcpy(destinations[i], sources[i].data(), sources[i].size());
      }
    };
    return guarded(copy);  // one jump point for the whole run of elements
  };
  std::size_t total = 0;
  for (const std::string_view s : sources) total += s.size();
  if (total < kParallelThreshold) return copy_elements(0, sources.size());
  // Threads split by bytes: an element belongs to the thread whose share holds
  // its first byte.
  std::vector<std::size_t> starts;
  try {
    starts.resize(sources.size() + 1);
  } catch (...) {
    return copy_elements(0, sources.size());
  }
  for (std::size_t i = 0; i < sources.size(); ++i) starts[i + 1] = starts[i] + sources[i].size();
  FirstFault fault;
  split(total, [&](std::size_t begin, std::size_t length) noexcept {
    const auto first = std::lower_bound(starts.begin(), starts.end() - 1, begin) - starts.begin();
    const auto last = std::lower_bound(starts.begin(), starts.end() - 1, begin + length) - starts.begin();
    fault.record(copy_elements(static_cast<std::size_t>(first), static_cast<std::size_t>(last)));
  });
  return fault.get();
}

}  // namespace tritonshm::detail
