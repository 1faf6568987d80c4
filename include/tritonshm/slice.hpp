// A slice: a range [offset, offset + size) of a shared region, with the
// region's reads and writes bounded by it. Every method takes offsets
// relative to the slice and throws unless [at, at + length) lies inside it;
// each access is then the region's own, the same code for both (under the
// SIGBUS guard). A whole region is a slice (Slice::whole, whose bounds and
// messages are the region's), and so is a lease (Lease::slice()): a request's code
// cannot reach a neighbouring lease's bytes, and nobody computes
// `lease.offset() + ...` by hand.
//
// A slice holds its region (and so its mapping) while it lives. It is a view,
// not a claim: a slice copied out of a lease stays valid memory after the
// lease's release, but the arena may lease those bytes again.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tritonshm/region.hpp"

namespace tritonshm {

class Slice {
 public:
  // The whole of `region` (not null).
  static Slice whole(std::shared_ptr<Region> region);
  // [offset, offset + size) of `region`; throws unless it lies inside.
  Slice(std::shared_ptr<Region> region, uint64_t offset, uint64_t size);

  const std::shared_ptr<Region>& region() const noexcept { return region_; }
  const std::string& key() const noexcept { return region_->key(); }
  uint64_t offset() const noexcept { return offset_; }  // in the region
  uint64_t size() const noexcept { return size_; }
  std::byte* data() const noexcept { return region_->data() + offset_; }

  // Throws (as a failure of `op`) unless [at, at + length) lies inside the slice.
  void check(uint64_t at, uint64_t length, Operation op) const;
  // [at, at + length) of this slice, as a slice.
  Slice sub(uint64_t at, uint64_t length) const;

  // Region's methods of the same names, at `at` in the slice and bounded by it.
  std::span<std::byte> bytes(uint64_t at, uint64_t length) const;
  template <class T>
  std::span<T> as(uint64_t at, uint64_t count) const {
    return detail::elements_of<T>(*this, at, count);
  }
  void write(uint64_t at, std::span<const std::span<const std::byte>> parts) const;
  void write(uint64_t at, const void* data, uint64_t length) const;
  void write_bytes(uint64_t at, std::span<const std::string_view> elements) const;
  void read(uint64_t at, void* out, uint64_t length) const;
  // Decodes a BYTES tensor that must end inside the slice: the decoder never
  // reads a length past it.
  std::vector<std::string_view> read_bytes(uint64_t at, uint64_t count) const;
  // Region::copy_out (the elements come from read_bytes, inside the slice).
  void copy_out(std::span<const std::string_view> elements, std::span<std::byte* const> destinations) const;

 private:
  std::shared_ptr<Region> region_;
  uint64_t offset_ = 0;
  uint64_t size_ = 0;
  bool whole_ = false;  // made by whole(): the region's own messages
};

}  // namespace tritonshm
