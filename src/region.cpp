#include "tritonshm/region.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <utility>

#include <unistd.h>

#include "bytes_decoder.hpp"
#include "copy.hpp"
#include "object_mapping.hpp"
#include "tritonshm/tensor_codec.hpp"

namespace tritonshm {

using detail::Mapping;
using detail::SharedMemoryObject;

namespace {

detail::Acquisition acquisition_of(uint64_t size, const RegionOptions& options) {
  detail::Acquisition acquisition;
  acquisition.size = size;
  acquisition.mode = options.mode;
  acquisition.reserve = options.reserve;
  acquisition.prefault = options.prefault;
  return acquisition;
}

}  // namespace

std::shared_ptr<Region> Region::create(std::string_view key, uint64_t size, const RegionOptions& options) {
  return with_operation(Operation::create, key, [&] {
    detail::Acquired acquired = detail::acquire(detail::Acquire::create_only, key, acquisition_of(size, options));
    return std::shared_ptr<Region>(new Region(std::move(acquired.object), std::move(acquired.mapping)));
  });
}

std::shared_ptr<Region> Region::open(std::string_view key) {
  return with_operation(Operation::open, key, [&] {
    detail::Acquired acquired = detail::acquire(detail::Acquire::open_only, key, detail::Acquisition{});
    return std::shared_ptr<Region>(new Region(std::move(acquired.object), std::move(acquired.mapping)));
  });
}

std::shared_ptr<Region> Region::open_or_create(std::string_view key, uint64_t size, const RegionOptions& options) {
  return with_operation(Operation::create, key, [&] {
    detail::Acquired acquired = detail::acquire(detail::Acquire::open_or_create, key, acquisition_of(size, options));
    return std::shared_ptr<Region>(new Region(std::move(acquired.object), std::move(acquired.mapping)));
  });
}

Region::Region(SharedMemoryObject object, std::shared_ptr<const Mapping> mapping)
    : object_(std::move(object)), mapping_(std::move(mapping)) {}

void Region::check_bounds(uint64_t offset, uint64_t length, Operation op) const {
  const uint64_t mapped = size();
  if (offset > mapped || length > mapped - offset) {
    // Written so that no sum can overflow: offsets near 2^64 are reported as given.
    throw SharedMemoryError(op, key(),
                            std::to_string(length) + " bytes at offset " + std::to_string(offset) +
                                " do not fit in its " + std::to_string(mapped) + " bytes");
  }
}

void Region::throw_fault(const void* address, uint64_t offset, uint64_t length, Operation op) const {
  const std::string access =
      " (access of " + std::to_string(length) + " bytes at offset " + std::to_string(offset) + ")";
  // Read once: every size in the message comes from this one reading.
  std::optional<uint64_t> now;
  try {
    now = object_.current_size();
  } catch (const SharedMemoryError&) {
  }
  // A fault passed on to us by another handler carries no address: then the
  // region is to blame only if it is smaller than our mapping now.
  const bool region_faulted =
      address != nullptr ? detail::fault_within({address}, data(), size()) : (!now || *now < size());
  if (region_faulted) {
    // The page that faulted was past the object's end when it faulted: a
    // size read later that is not below it (the peer has grown it back since)
    // would contradict that, so the message gives the bound the fault proves.
    const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
    const uint64_t fault_offset =
        address != nullptr ? static_cast<uint64_t>(static_cast<const std::byte*>(address) - data()) : size();
    const uint64_t bound = fault_offset / page * page;
    std::string shrunk;
    if (now && *now <= bound) {
      shrunk = "the object was shrunk to " + std::to_string(*now) + " bytes by another process, below the " +
               std::to_string(size()) + " bytes mapped here";
    } else {
      shrunk = "the object was shrunk by another process to " + std::to_string(bound) + " bytes or fewer, below the " +
               std::to_string(size()) + " bytes mapped here" +
               (now ? " (it has " + std::to_string(*now) + " bytes again now)" : std::string());
    }
    throw SharedMemoryError(op, key(), shrunk + access);
  }
  std::string where = "no address: the fault was passed on by another SIGBUS handler";
  if (address != nullptr) {
    char text[32];
    std::snprintf(text, sizeof text, "%p", address);
    where = std::string("bus error at ") + text;
  }
  throw SharedMemoryError(op, key(),
                          std::string(op == Operation::set ? "the source data stopped being readable"
                                                           : "the destination stopped being writable") +
                              " during the copy, not this region (" + where +
                              "; that memory is backed by a file or region that was truncated); part of the data "
                              "may have been copied" +
                              access);
}

void Region::check_backed(uint64_t offset, uint64_t length, Operation op) const {
  check_bounds(offset, length, op);
  if (auto fault = detail::probe_backed(data() + offset, static_cast<std::size_t>(length))) {
    throw_fault(fault->address, offset, length, op);
  }
}

std::span<std::byte> Region::bytes(uint64_t offset, uint64_t length) const {
  check_backed(offset, length, Operation::read);
  return {data() + offset, static_cast<std::size_t>(length)};
}

uint64_t Region::total_size(std::span<const std::span<const std::byte>> parts) const {
  uint64_t total = 0;
  for (const auto& part : parts) {
    if (part.size() > UINT64_MAX - total) {
      throw SharedMemoryError(Operation::set, key(), "the total size overflows 64 bits");
    }
    total += part.size();
  }
  return total;
}

void Region::write(uint64_t offset, std::span<const std::span<const std::byte>> parts) const {
  const uint64_t total = total_size(parts);
  check_bounds(offset, total, Operation::set);
  std::byte* dst = data() + offset;
  for (const auto& part : parts) {
    if (auto fault = detail::copy_guarded(dst, part.data(), part.size(), detail::Destination::shared)) {
      throw_fault(fault->address, offset, total, Operation::set);
    }
    dst += part.size();
  }
}

void Region::write(uint64_t offset, const void* data, uint64_t length) const {
  const std::span<const std::byte> part(static_cast<const std::byte*>(data), static_cast<std::size_t>(length));
  write(offset, std::span<const std::span<const std::byte>>(&part, 1));
}

void Region::write_bytes(uint64_t offset, std::span<const std::string_view> elements) const {
  write_bytes_sized(offset, elements,
                    with_operation(Operation::set, key(), [&] { return serialized_bytes_size(elements); }));
}

void Region::write_bytes_sized(uint64_t offset, std::span<const std::string_view> elements, uint64_t total) const {
  check_bounds(offset, total, Operation::set);
  if (auto fault = detail::serialize_bytes_guarded(elements, data() + offset, static_cast<std::size_t>(total),
                                                   detail::Destination::shared)) {
    throw_fault(fault->address, offset, total, Operation::set);
  }
}

void Region::read(uint64_t offset, void* out, uint64_t length) const {
  check_bounds(offset, length, Operation::read);
  if (auto fault = detail::copy_guarded(static_cast<std::byte*>(out), data() + offset, static_cast<std::size_t>(length),
                                        detail::Destination::local)) {
    throw_fault(fault->address, offset, length, Operation::read);
  }
}

std::vector<std::string_view> Region::read_bytes(uint64_t offset, uint64_t count) const {
  if (offset > size()) {
    throw SharedMemoryError(
        Operation::read, key(),
        "offset " + std::to_string(offset) + " is past its end (" + std::to_string(size()) + " bytes)");
  }
  return read_bytes_within(offset, size() - offset, count);
}

std::vector<std::string_view> Region::read_bytes_within(uint64_t offset, uint64_t length, uint64_t count) const {
  return with_operation(Operation::read, key(), [&] {
    const std::span<const std::byte> rest(data() + offset, static_cast<std::size_t>(length));
    const std::string context = "BYTES tensor at offset " + std::to_string(offset);
    std::vector<std::string_view> elements = detail::allocate_bytes_views(rest, count, context);
    detail::BytesDecode decoded;
    auto decode = [&]() noexcept { decoded = detail::decode_bytes(rest, count, elements.data()); };
    if (auto fault = detail::guarded(decode)) throw_fault(fault->address, offset, rest.size(), Operation::read);
    if (!decoded.ok()) detail::throw_malformed(decoded, rest, context);
    return elements;
  });
}

void Region::copy_out(std::span<const std::string_view> elements, std::span<std::byte* const> destinations) const {
  if (auto fault = detail::copy_each_guarded(elements, destinations, detail::Destination::local)) {
    throw_fault(fault->address, 0, size(), Operation::read);
  }
}

bool Region::remove_if_owned() const {
  return with_operation(Operation::destroy, key(), [&] { return object_.remove_if_owned(); });
}

}  // namespace tritonshm
