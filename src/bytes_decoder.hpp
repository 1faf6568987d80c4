// Internal: the BYTES decoder in a form that can run under the SIGBUS guard
// (no allocation, no exception while it reads), shared by deserialize_bytes
// and Region::read_bytes.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace tritonshm::detail {

struct BytesDecode {
  enum class Status { ok, missing_length, overrun };
  Status status = Status::ok;
  uint64_t elements = 0;  // decoded so far
  uint64_t position = 0;  // bytes consumed so far
  uint32_t declared = 0;  // the length that ran past the end (overrun)
  bool ok() const noexcept { return status == Status::ok; }
};

// Decodes `count` elements, or with nullopt every element to the end of
// `data`. Stores a view of each into out[i] when out is not null (it must have
// room for them all). Reads nothing outside `data`, allocates nothing, throws
// nothing.
BytesDecode decode_bytes(std::span<const std::byte> data, std::optional<uint64_t> count,
                         std::string_view* out) noexcept;

// Room for `count` views, after checking that `data` could hold that many
// elements (each takes at least 4 bytes), so that a hostile count cannot
// reserve gigabytes. Throws naming `context`.
std::vector<std::string_view> allocate_bytes_views(std::span<const std::byte> data, uint64_t count,
                                                   std::string_view context);

// Throws the message for a failed decode.
[[noreturn]] void throw_malformed(const BytesDecode& decoded, std::span<const std::byte> data,
                                  std::string_view context);

}  // namespace tritonshm::detail
