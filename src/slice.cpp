#include "tritonshm/slice.hpp"

#include <utility>

#include "tritonshm/tensor_codec.hpp"

namespace tritonshm {

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
  // A whole region says so in the region's own words.
  if (whole_) return region_->check_bounds(at, length, op);
  if (at > size_ || length > size_ - at) {
    throw SharedMemoryError(op, key(),
                            std::to_string(length) + " bytes at offset " + std::to_string(at) +
                                " do not fit in the slice of " + std::to_string(size_) + " bytes at offset " +
                                std::to_string(offset_) + " of the region");
  }
}

Slice Slice::sub(uint64_t at, uint64_t length) const {
  check(at, length, Operation::none);
  return Slice(region_, offset_ + at, length);
}

std::span<std::byte> Slice::bytes(uint64_t at, uint64_t length) const {
  check(at, length, Operation::read);
  return region_->bytes(offset_ + at, length);
}

void Slice::write(uint64_t at, std::span<const std::span<const std::byte>> parts) const {
  check(at, region_->total_size(parts), Operation::set);
  region_->write(offset_ + at, parts);
}

void Slice::write(uint64_t at, const void* data, uint64_t length) const {
  check(at, length, Operation::set);
  region_->write(offset_ + at, data, length);
}

void Slice::write_bytes(uint64_t at, std::span<const std::string_view> elements) const {
  const uint64_t total = with_operation(Operation::set, key(), [&] { return serialized_bytes_size(elements); });
  check(at, total, Operation::set);
  region_->write_bytes_sized(offset_ + at, elements, total);
}

void Slice::read(uint64_t at, void* out, uint64_t length) const {
  check(at, length, Operation::read);
  region_->read(offset_ + at, out, length);
}

std::vector<std::string_view> Slice::read_bytes(uint64_t at, uint64_t count) const {
  if (whole_) return region_->read_bytes(at, count);
  check(at, 0, Operation::read);
  return region_->read_bytes_within(offset_ + at, size_ - at, count);
}

void Slice::copy_out(std::span<const std::string_view> elements, std::span<std::byte* const> destinations) const {
  region_->copy_out(elements, destinations);
}

}  // namespace tritonshm
