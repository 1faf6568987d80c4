// How a region is acquired, as a type rather than a bool (as in
// Boost.Interprocess): create_only fails if the key exists, open_only fails if
// it does not, open_or_create attaches to an existing object or creates it.
#pragma once

namespace tritonshm {

struct create_only_t {
  explicit create_only_t() = default;
};
struct open_only_t {
  explicit open_only_t() = default;
};
struct open_or_create_t {
  explicit open_or_create_t() = default;
};
inline constexpr create_only_t create_only{};
inline constexpr open_only_t open_only{};
inline constexpr open_or_create_t open_or_create{};

}  // namespace tritonshm
