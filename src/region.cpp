#include "tritonshm/region.hpp"

#include <utility>

#include "object_mapping.hpp"
#include "region_range.hpp"

namespace tritonshm {

using detail::Acquire;
using detail::Acquisition;
using detail::Mapping;
using detail::RegionRange;
using detail::SharedMemoryObject;

namespace {

Acquisition acquisition_of(uint64_t size, const RegionOptions& options) {
  Acquisition acquisition;
  acquisition.size = size;
  acquisition.mode = options.mode;
  acquisition.reserve = options.reserve;
  acquisition.prefault = options.prefault;
  return acquisition;
}

}  // namespace

std::shared_ptr<Region> Region::create(std::string_view key, uint64_t size, const RegionOptions& options) {
  return with_operation(Operation::create, key, [&] {
    detail::Acquired acquired = detail::acquire(Acquire::create_only, key, acquisition_of(size, options));
    return std::shared_ptr<Region>(new Region(std::move(acquired.object), std::move(acquired.mapping)));
  });
}

std::shared_ptr<Region> Region::open(std::string_view key) {
  return with_operation(Operation::open, key, [&] {
    detail::Acquired acquired = detail::acquire(Acquire::open_only, key, Acquisition{});
    return std::shared_ptr<Region>(new Region(std::move(acquired.object), std::move(acquired.mapping)));
  });
}

std::shared_ptr<Region> Region::open_or_create(std::string_view key, uint64_t size, const RegionOptions& options) {
  return with_operation(Operation::create, key, [&] {
    detail::Acquired acquired = detail::acquire(Acquire::open_or_create, key, acquisition_of(size, options));
    return std::shared_ptr<Region>(new Region(std::move(acquired.object), std::move(acquired.mapping)));
  });
}

Region::Region(SharedMemoryObject object, std::shared_ptr<const Mapping> mapping)
    : object_(std::move(object)), mapping_(std::move(mapping)) {}

void Region::check_bounds(uint64_t offset, uint64_t length, Operation op) const {
  RegionRange(*this).check(offset, length, op);
}

void Region::check_backed(uint64_t offset, uint64_t length, Operation op) const {
  RegionRange(*this).check_backed(offset, length, op);
}

std::span<std::byte> Region::bytes(uint64_t offset, uint64_t length) const {
  return RegionRange(*this).bytes(offset, length);
}

void Region::write(uint64_t offset, std::span<const std::span<const std::byte>> parts) const {
  RegionRange(*this).write(offset, parts);
}

void Region::write(uint64_t offset, const void* data, uint64_t length) const {
  const std::span<const std::byte> part(static_cast<const std::byte*>(data), static_cast<std::size_t>(length));
  write(offset, std::span<const std::span<const std::byte>>(&part, 1));
}

void Region::write_bytes(uint64_t offset, std::span<const std::string_view> elements) const {
  RegionRange(*this).write_bytes(offset, elements);
}

void Region::read(uint64_t offset, void* out, uint64_t length) const { RegionRange(*this).read(offset, out, length); }

std::vector<std::string_view> Region::read_bytes(uint64_t offset, uint64_t count) const {
  return RegionRange(*this).read_bytes(offset, count);
}

void Region::copy_out(std::span<const std::string_view> elements, std::span<std::byte* const> destinations) const {
  RegionRange(*this).copy_out(elements, destinations);
}

bool Region::remove_if_owned() const {
  return with_operation(Operation::destroy, key(), [&] { return object_.remove_if_owned(); });
}

}  // namespace tritonshm
