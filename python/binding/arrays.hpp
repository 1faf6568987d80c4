// numpy arrays built from decoded BYTES elements.
#pragma once

#include <cstddef>
#include <functional>
#include <span>
#include <string_view>
#include <vector>

#include "binding.hpp"

namespace tritonshm::binding {

// Copies elements into destinations; runs without the GIL.
using ElementCopier = std::function<void(std::span<const std::string_view>, std::span<std::byte* const>)>;

// An object array of `dims` holding one `bytes` per element. The bytes objects
// are allocated first (that needs the GIL), then filled by `copy` without it.
nb::object bytes_object_array(const std::vector<npy_intp>& dims, std::span<const std::string_view> elements,
                              const ElementCopier& copy);

}  // namespace tritonshm::binding
