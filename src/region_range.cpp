#include "region_range.hpp"

#include <unistd.h>

#include <cstdio>
#include <optional>
#include <string>

#include "bytes_decoder.hpp"
#include "copy.hpp"
#include "object_mapping.hpp"
#include "tritonshm/tensor_codec.hpp"

namespace tritonshm::detail {

RegionRange::RegionRange(const Region& region) noexcept
    : region_(region), offset_(0), size_(region.size()), whole_(true) {}

RegionRange::RegionRange(const Region& region, uint64_t offset, uint64_t size) noexcept
    : region_(region), offset_(offset), size_(size), whole_(false) {}

void RegionRange::check(uint64_t at, uint64_t length, Operation op) const {
  if (at <= size_ && length <= size_ - at) return;
  // Written so that no sum can overflow: offsets near 2^64 are reported as given.
  const std::string what = std::to_string(length) + " bytes at offset " + std::to_string(at) + " do not fit in ";
  throw SharedMemoryError(op, region_.key(),
                          what + (whole_ ? "its " + std::to_string(size_) + " bytes"
                                         : "the slice of " + std::to_string(size_) + " bytes at offset " +
                                               std::to_string(offset_) + " of the region"));
}

void RegionRange::check_backed(uint64_t at, uint64_t length, Operation op) const {
  check(at, length, op);
  if (auto fault = probe_backed(at_offset(at), static_cast<std::size_t>(length))) {
    throw_fault(fault->address, offset_ + at, length, op);
  }
}

std::span<std::byte> RegionRange::bytes(uint64_t at, uint64_t length) const {
  check_backed(at, length, Operation::read);
  return {at_offset(at), static_cast<std::size_t>(length)};
}

void RegionRange::write(uint64_t at, std::span<const std::span<const std::byte>> parts) const {
  uint64_t total = 0;
  for (const auto& part : parts) {
    if (part.size() > UINT64_MAX - total) {
      throw SharedMemoryError(Operation::set, region_.key(), "the total size overflows 64 bits");
    }
    total += part.size();
  }
  check(at, total, Operation::set);
  std::byte* dst = at_offset(at);
  for (const auto& part : parts) {
    if (auto fault = copy_guarded(dst, part.data(), part.size(), Destination::shared)) {
      throw_fault(fault->address, offset_ + at, total, Operation::set);
    }
    dst += part.size();
  }
}

void RegionRange::write_bytes(uint64_t at, std::span<const std::string_view> elements) const {
  const uint64_t total = with_operation(Operation::set, region_.key(), [&] { return serialized_bytes_size(elements); });
  check(at, total, Operation::set);
  if (auto fault =
          serialize_bytes_guarded(elements, at_offset(at), static_cast<std::size_t>(total), Destination::shared)) {
    throw_fault(fault->address, offset_ + at, total, Operation::set);
  }
}

void RegionRange::read(uint64_t at, void* out, uint64_t length) const {
  check(at, length, Operation::read);
  if (auto fault = copy_guarded(static_cast<std::byte*>(out), at_offset(at), static_cast<std::size_t>(length),
                                Destination::local)) {
    throw_fault(fault->address, offset_ + at, length, Operation::read);
  }
}

std::vector<std::string_view> RegionRange::read_bytes(uint64_t at, uint64_t count) const {
  if (whole_ && at > size_) {
    throw SharedMemoryError(Operation::read, region_.key(),
                            "offset " + std::to_string(at) + " is past its end (" + std::to_string(size_) + " bytes)");
  }
  check(at, 0, Operation::read);
  const uint64_t offset = offset_ + at;
  return with_operation(Operation::read, region_.key(), [&] {
    const std::span<const std::byte> rest(at_offset(at), static_cast<std::size_t>(size_ - at));
    const std::string context = "BYTES tensor at offset " + std::to_string(offset);
    std::vector<std::string_view> elements = allocate_bytes_views(rest, count, context);
    BytesDecode decoded;
    auto decode = [&]() noexcept { decoded = decode_bytes(rest, count, elements.data()); };
    if (auto fault = guarded(decode)) throw_fault(fault->address, offset, rest.size(), Operation::read);
    if (!decoded.ok()) throw_malformed(decoded, rest, context);
    return elements;
  });
}

void RegionRange::copy_out(std::span<const std::string_view> elements, std::span<std::byte* const> destinations) const {
  if (auto fault = copy_each_guarded(elements, destinations, Destination::local)) {
    throw_fault(fault->address, offset_, size_, Operation::read);
  }
}

void RegionRange::throw_fault(const void* address, uint64_t offset, uint64_t length, Operation op) const {
  const std::string access =
      " (access of " + std::to_string(length) + " bytes at offset " + std::to_string(offset) + ")";
  const uint64_t mapped = region_.size();
  // Read once: every size in the message comes from this one reading.
  std::optional<uint64_t> now;
  try {
    now = region_.current_size();
  } catch (const SharedMemoryError&) {
  }
  // A fault passed on to us by another handler carries no address: then the
  // region is to blame only if it is smaller than our mapping now.
  const bool region_faulted =
      address != nullptr ? fault_within({address}, region_.data(), mapped) : (!now || *now < mapped);
  if (region_faulted) {
    // The page that faulted was past the object's end when it faulted: a
    // size read later that is not below it (the peer has grown it back since)
    // would contradict that, so the message gives the bound the fault proves.
    const auto page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
    const uint64_t fault_offset =
        address != nullptr ? static_cast<uint64_t>(static_cast<const std::byte*>(address) - region_.data()) : mapped;
    const uint64_t bound = fault_offset / page * page;
    std::string shrunk;
    if (now && *now <= bound) {
      shrunk = "the object was shrunk to " + std::to_string(*now) + " bytes by another process, below the " +
               std::to_string(mapped) + " bytes mapped here";
    } else {
      shrunk = "the object was shrunk by another process to " + std::to_string(bound) + " bytes or fewer, below the " +
               std::to_string(mapped) + " bytes mapped here" +
               (now ? " (it has " + std::to_string(*now) + " bytes again now)" : std::string());
    }
    throw SharedMemoryError(op, region_.key(), shrunk + access);
  }
  std::string where = "no address: the fault was passed on by another SIGBUS handler";
  if (address != nullptr) {
    char text[32];
    std::snprintf(text, sizeof text, "%p", address);
    where = std::string("bus error at ") + text;
  }
  throw SharedMemoryError(op, region_.key(),
                          std::string(op == Operation::set ? "the source data stopped being readable"
                                                           : "the destination stopped being writable") +
                              " during the copy, not this region (" + where +
                              "; that memory is backed by a file or region that was truncated); part of the data "
                              "may have been copied" +
                              access);
}

}  // namespace tritonshm::detail
