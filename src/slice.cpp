#include "tritonshm/slice.hpp"

#include <utility>

#include "region_range.hpp"

namespace tritonshm {

namespace {

// Each access is the region's, over this slice's range (region_range.hpp).
detail::RegionRange range_of(const Region& region, uint64_t offset, uint64_t size, bool whole) {
  return whole ? detail::RegionRange(region) : detail::RegionRange(region, offset, size);
}

}  // namespace

Slice Slice::whole(std::shared_ptr<Region> region) {
  const uint64_t size = region->size();
  Slice slice(std::move(region), 0, size);
  slice.whole_ = true;
  return slice;
}

Slice::Slice(std::shared_ptr<Region> region, uint64_t offset, uint64_t size)
    : region_(std::move(region)), offset_(offset), size_(size) {
  region_->check_bounds(offset, size, Operation::none);
}

void Slice::check(uint64_t at, uint64_t length, Operation op) const {
  range_of(*region_, offset_, size_, whole_).check(at, length, op);
}

Slice Slice::sub(uint64_t at, uint64_t length) const {
  check(at, length, Operation::none);
  return Slice(region_, offset_ + at, length);
}

std::span<std::byte> Slice::bytes(uint64_t at, uint64_t length) const {
  return range_of(*region_, offset_, size_, whole_).bytes(at, length);
}

void Slice::write(uint64_t at, std::span<const std::span<const std::byte>> parts) const {
  range_of(*region_, offset_, size_, whole_).write(at, parts);
}

void Slice::write(uint64_t at, const void* data, uint64_t length) const {
  const std::span<const std::byte> part(static_cast<const std::byte*>(data), static_cast<std::size_t>(length));
  write(at, std::span<const std::span<const std::byte>>(&part, 1));
}

void Slice::write_bytes(uint64_t at, std::span<const std::string_view> elements) const {
  range_of(*region_, offset_, size_, whole_).write_bytes(at, elements);
}

void Slice::read(uint64_t at, void* out, uint64_t length) const {
  range_of(*region_, offset_, size_, whole_).read(at, out, length);
}

std::vector<std::string_view> Slice::read_bytes(uint64_t at, uint64_t count) const {
  return range_of(*region_, offset_, size_, whole_).read_bytes(at, count);
}

void Slice::copy_out(std::span<const std::string_view> elements, std::span<std::byte* const> destinations) const {
  range_of(*region_, offset_, size_, whole_).copy_out(elements, destinations);
}

}  // namespace tritonshm
