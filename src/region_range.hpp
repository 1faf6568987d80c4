// Internal: every access to a region's bytes, written once for Region (the
// whole region) and Slice (a range of it): bounds checked before any byte
// moves, each access under the SIGBUS guard, a fault reported as the region's
// shrinking or as the other party's. Offsets given (`at`) are relative to the
// range; a range that is the whole region says so in the region's own words.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "tritonshm/region.hpp"

namespace tritonshm::detail {

class RegionRange {
 public:
  // The whole of `region`.
  explicit RegionRange(const Region& region) noexcept;
  // [offset, offset + size) of `region`, which the caller checked lies inside it.
  RegionRange(const Region& region, uint64_t offset, uint64_t size) noexcept;

  // Throws (as a failure of `op`) unless [at, at + length) lies inside the range.
  void check(uint64_t at, uint64_t length, Operation op) const;
  // check, and that the bytes are still backed (probe_backed).
  void check_backed(uint64_t at, uint64_t length, Operation op) const;
  std::span<std::byte> bytes(uint64_t at, uint64_t length) const;
  void write(uint64_t at, std::span<const std::span<const std::byte>> parts) const;
  void write_bytes(uint64_t at, std::span<const std::string_view> elements) const;
  void read(uint64_t at, void* out, uint64_t length) const;
  // Decodes a BYTES tensor that must end inside the range.
  std::vector<std::string_view> read_bytes(uint64_t at, uint64_t count) const;
  void copy_out(std::span<const std::string_view> elements, std::span<std::byte* const> destinations) const;

 private:
  // Reports a fault at `address` (nullptr: not known) during an access of
  // `length` bytes at `offset` of the region, blaming the region only if the
  // address lies in its mapping (or, without one, if it is smaller than the
  // mapping now).
  [[noreturn]] void throw_fault(const void* address, uint64_t offset, uint64_t length, Operation op) const;
  std::byte* at_offset(uint64_t at) const noexcept { return region_.data() + offset_ + at; }

  const Region& region_;
  uint64_t offset_;
  uint64_t size_;
  bool whole_;
};

}  // namespace tritonshm::detail
