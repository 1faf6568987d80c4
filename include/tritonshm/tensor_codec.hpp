// Triton's tensor wire formats and data type names.
//
// BYTES: each element is a 4-byte little-endian length followed by that many
// bytes, elements back to back in row-major order.
// BF16: each element is the upper 16 bits of the float32 value (truncation, as
// tritonclient's serialize_bf16_tensor does), little-endian.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace tritonshm {

// ---- BYTES ----

// Bytes needed to serialize `elements`. Throws if an element does not fit its
// 4-byte length (4 GiB or more).
uint64_t serialized_bytes_size(std::span<const std::string_view> elements);
// Serializes into `out`, which must be exactly serialized_bytes_size() long.
void serialize_bytes_into(std::span<const std::string_view> elements, std::span<std::byte> out);
std::vector<std::byte> serialize_bytes(std::span<const std::string_view> elements);

// Splits a serialized BYTES buffer into views of its elements (pointing into
// `data`). With `count`, decodes exactly that many elements and ignores what
// follows (a region holds more than one tensor); without it, decodes until the
// end, which must fall on an element boundary. Never reads outside `data`: a
// length that runs past the end throws, naming `context`, the element and the
// sizes. `consumed`, if given, receives the bytes decoded.
std::vector<std::string_view> deserialize_bytes(std::span<const std::byte> data,
                                                std::optional<uint64_t> count = std::nullopt,
                                                std::string_view context = "BYTES tensor",
                                                uint64_t* consumed = nullptr);

// Copies each element to destinations[i] (room for it each); large totals are
// split across threads. For elements in a region use Region::copy_out, which
// also survives the region being shrunk meanwhile.
void copy_elements(std::span<const std::string_view> elements, std::span<std::byte* const> destinations);

// ---- BF16 ----

void serialize_bf16_into(std::span<const float> values, std::span<std::byte> out);  // out: 2 bytes a value
std::vector<std::byte> serialize_bf16(std::span<const float> values);
void deserialize_bf16_into(std::span<const std::byte> data, std::span<float> out);  // data: 2 bytes a value
std::vector<float> deserialize_bf16(std::span<const std::byte> data);

// ---- data types ----

enum class DataType { BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64, BF16, BYTES };

struct DataTypeInfo {
  DataType type;
  std::string_view name;        // Triton's: "INT32", "BYTES"
  std::size_t size;             // bytes per element; 0 for BYTES
  std::string_view numpy_name;  // numpy's: "int32", "object" ("bfloat16" is ml_dtypes')
};
// Every type Triton has, once.
std::span<const DataTypeInfo> data_types() noexcept;

// Triton's name of the type ("INT32", "BYTES", ...).
std::string_view to_string(DataType type);
// Parses Triton's name; nullopt if unknown.
std::optional<DataType> parse_data_type(std::string_view name);
// Bytes per element; 0 for BYTES, whose elements vary in size.
std::size_t element_size(DataType type);

}  // namespace tritonshm
