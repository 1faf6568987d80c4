// numpy arrays built from decoded BYTES elements.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "binding.hpp"
#include "tritonshm/region.hpp"
#include "tritonshm/slice.hpp"

namespace tritonshm::binding {

// What keeps the memory of a tensor read from a region alive.
enum class TensorOwner {
  object,  // a view whose base is the given Python object (a mapping_owner, a lease)
  copy,    // an array of its own
};

// A Python object that keeps `mapping` alive, and `also` (a lease, say) with
// it: the base of views into it.
nb::object mapping_owner(const std::shared_ptr<const detail::Mapping>& mapping, nb::handle also = nb::handle());

// The tensor of `datatype` and `shape` at `offset` of `slice` (a lease, or a
// whole region): fixed-size types as a view or a copy (per owner), BYTES
// (np.object_ / np.bytes_) decoded into an object array of bytes. Every read
// is bounded by the slice and SIGBUS-guarded. With `empty_past_end`, an
// empty tensor reads from any offset, as the reference's numpy view of the
// region from `offset` on does (the drop-in); a lease refuses it.
nb::object read_tensor(const Slice& slice, uint64_t offset, nb::handle datatype, nb::handle shape, TensorOwner owner,
                       nb::handle owner_object, bool empty_past_end = false);

// Copies elements into destinations; runs without the GIL.
using ElementCopier = std::function<void(std::span<const std::string_view>, std::span<std::byte* const>)>;

// An object array of `dims` holding one `bytes` per element. The bytes objects
// are allocated first (that needs the GIL), then filled by `copy` without it.
nb::object bytes_object_array(std::span<const npy_intp> dims, std::span<const std::string_view> elements,
                              const ElementCopier& copy);

// The elements of a BYTES tensor (an np.object_ or np.bytes_ array) as
// tritonclient serializes them: `bytes` as is, anything else as the UTF-8 of
// str(element). Holds what the views point into.
struct BytesElements {
  std::vector<std::string_view> views;
  std::vector<nb::object> keep;
  uint64_t serialized_size = 0;  // with the 4-byte lengths
};
BytesElements bytes_elements(nb::handle array);

}  // namespace tritonshm::binding
