#include "tritonshm/tensor_codec.hpp"

#include <array>
#include <bit>
#include <cstring>

#include "bytes_decoder.hpp"
#include "copy.hpp"
#include "tritonshm/error.hpp"

namespace tritonshm {
namespace {

uint32_t load_le32(const std::byte* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  if constexpr (std::endian::native == std::endian::big) v = __builtin_bswap32(v);
  return v;
}

// The data stopped being readable under the decoder: it is a view of a region
// or file that was truncated meanwhile.
[[noreturn]] void throw_unreadable(std::string_view context) {
  throw SharedMemoryError("cannot deserialize " + std::string(context) +
                          ": its memory stopped being readable (bus error: it is backed by a region or file that "
                          "another process truncated)");
}

}  // namespace

uint64_t serialized_bytes_size(std::span<const std::string_view> elements) {
  uint64_t total = 0;
  for (std::size_t i = 0; i < elements.size(); ++i) {
    if (elements[i].size() > UINT32_MAX) {
      throw SharedMemoryError("cannot serialize BYTES element " + std::to_string(i) + ": " +
                              std::to_string(elements[i].size()) + " bytes do not fit its 4-byte length");
    }
    total += 4 + elements[i].size();
  }
  return total;
}

void serialize_bytes_into(std::span<const std::string_view> elements, std::span<std::byte> out) {
  const uint64_t needed = serialized_bytes_size(elements);
  if (out.size() != needed) {
    throw SharedMemoryError("cannot serialize BYTES tensor: output holds " + std::to_string(out.size()) +
                            " bytes, the tensor needs " + std::to_string(needed));
  }
  if (detail::serialize_bytes_guarded(elements, out.data(), out.size(), detail::Destination::local)) {
    throw SharedMemoryError("cannot serialize BYTES tensor: an element's memory stopped being readable");
  }
}

void copy_elements(std::span<const std::string_view> elements, std::span<std::byte* const> destinations) {
  if (detail::copy_each_guarded(elements, destinations, detail::Destination::local)) {
    throw SharedMemoryError("copying BYTES elements: an element's memory stopped being readable");
  }
}

std::vector<std::byte> serialize_bytes(std::span<const std::string_view> elements) {
  std::vector<std::byte> out(serialized_bytes_size(elements));
  serialize_bytes_into(elements, out);
  return out;
}

namespace detail {

BytesDecode decode_bytes(std::span<const std::byte> data, std::optional<uint64_t> count,
                         std::string_view* out) noexcept {
  BytesDecode d;
  const std::byte* const begin = data.data();
  const std::size_t size = data.size();
  std::size_t pos = 0;
  while (count ? d.elements < *count : pos < size) {
    if (size - pos < 4) {
      d.status = BytesDecode::Status::missing_length;
      break;
    }
    const uint32_t length = load_le32(begin + pos);
    if (length > size - pos - 4) {
      d.status = BytesDecode::Status::overrun;
      d.declared = length;
      break;
    }
    if (out != nullptr) out[d.elements] = {reinterpret_cast<const char*>(begin + pos + 4), length};
    pos += 4 + std::size_t{length};
    ++d.elements;
  }
  d.position = pos;
  return d;
}

std::vector<std::string_view> allocate_bytes_views(std::span<const std::byte> data, uint64_t count,
                                                   std::string_view context) {
  if (count > data.size() / 4) {
    throw SharedMemoryError("malformed " + std::string(context) + ": " + std::to_string(count) +
                            " elements need at least " + std::to_string(count) + " x 4 bytes, only " +
                            std::to_string(data.size()) + " are available");
  }
  return std::vector<std::string_view>(static_cast<std::size_t>(count));
}

void throw_malformed(const BytesDecode& d, std::span<const std::byte> data, std::string_view context) {
  const uint64_t size = data.size();
  if (d.status == BytesDecode::Status::missing_length) {
    throw SharedMemoryError("malformed " + std::string(context) + ": element " + std::to_string(d.elements) +
                            " at byte " + std::to_string(d.position) + " needs a 4-byte length, only " +
                            std::to_string(size - d.position) + " bytes remain of " + std::to_string(size));
  }
  throw SharedMemoryError("malformed " + std::string(context) + ": element " + std::to_string(d.elements) +
                          " at byte " + std::to_string(d.position) + " declares " + std::to_string(d.declared) +
                          " bytes, only " + std::to_string(size - d.position - 4) + " remain of " +
                          std::to_string(size));
}

}  // namespace detail

std::vector<std::string_view> deserialize_bytes(std::span<const std::byte> data, std::optional<uint64_t> count,
                                                std::string_view context, uint64_t* consumed) {
  // Count first (no allocation), then decode into views. Both passes read the
  // lengths from `data`, which may be a view of a region another process can
  // shrink: they run under the SIGBUS guard.
  detail::BytesDecode counted;
  auto count_pass = [&]() noexcept { counted = detail::decode_bytes(data, count, nullptr); };
  if (detail::guarded(count_pass)) throw_unreadable(context);
  if (!counted.ok()) {
    if (count) (void)detail::allocate_bytes_views(data, *count, context);  // a hostile count says so first
    detail::throw_malformed(counted, data, context);
  }
  std::vector<std::string_view> elements(static_cast<std::size_t>(counted.elements));
  auto view_pass = [&]() noexcept { (void)detail::decode_bytes(data, counted.elements, elements.data()); };
  if (detail::guarded(view_pass)) throw_unreadable(context);
  if (consumed) *consumed = counted.position;
  return elements;
}

void serialize_bf16_into(std::span<const float> values, std::span<std::byte> out) {
  if (out.size() != values.size() * 2) {
    throw SharedMemoryError("cannot serialize BF16 tensor: output holds " + std::to_string(out.size()) +
                            " bytes, the tensor needs " + std::to_string(values.size() * 2));
  }
  const std::size_t n = values.size();
  const float* in = values.data();
  std::byte* o = out.data();
  // Plain loop over integers so the compiler vectorizes it.
  for (std::size_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, in + i, 4);
    const uint16_t upper = static_cast<uint16_t>(bits >> 16);
    std::memcpy(o + 2 * i, &upper, 2);
  }
}

std::vector<std::byte> serialize_bf16(std::span<const float> values) {
  std::vector<std::byte> out(values.size() * 2);
  serialize_bf16_into(values, out);
  return out;
}

void deserialize_bf16_into(std::span<const std::byte> data, std::span<float> out) {
  if (data.size() % 2 != 0) {
    throw SharedMemoryError("malformed BF16 tensor: " + std::to_string(data.size()) +
                            " bytes is not a whole number of 2-byte elements");
  }
  if (out.size() != data.size() / 2) {
    throw SharedMemoryError("cannot deserialize BF16 tensor: output holds " + std::to_string(out.size()) +
                            " values, the data has " + std::to_string(data.size() / 2));
  }
  const std::size_t n = out.size();
  const std::byte* in = data.data();
  float* o = out.data();
  for (std::size_t i = 0; i < n; ++i) {
    uint16_t upper;
    std::memcpy(&upper, in + 2 * i, 2);
    const uint32_t bits = static_cast<uint32_t>(upper) << 16;
    std::memcpy(o + i, &bits, 4);
  }
}

std::vector<float> deserialize_bf16(std::span<const std::byte> data) {
  std::vector<float> out(data.size() / 2);  // deserialize_bf16_into rejects an odd size first
  deserialize_bf16_into(data, out);
  return out;
}

namespace {
// The one table of Triton's data types; the Python package builds its
// np_to_triton_dtype and triton_to_np_dtype from it (data_types()).
constexpr std::array<DataTypeInfo, 14> kTypes{{
    {DataType::BOOL, "BOOL", 1, "bool"},
    {DataType::UINT8, "UINT8", 1, "uint8"},
    {DataType::UINT16, "UINT16", 2, "uint16"},
    {DataType::UINT32, "UINT32", 4, "uint32"},
    {DataType::UINT64, "UINT64", 8, "uint64"},
    {DataType::INT8, "INT8", 1, "int8"},
    {DataType::INT16, "INT16", 2, "int16"},
    {DataType::INT32, "INT32", 4, "int32"},
    {DataType::INT64, "INT64", 8, "int64"},
    {DataType::FP16, "FP16", 2, "float16"},
    {DataType::FP32, "FP32", 4, "float32"},
    {DataType::FP64, "FP64", 8, "float64"},
    {DataType::BF16, "BF16", 2, "bfloat16"},
    {DataType::BYTES, "BYTES", 0, "object"},
}};
}  // namespace

std::span<const DataTypeInfo> data_types() noexcept { return kTypes; }

std::string_view to_string(DataType type) {
  for (const auto& t : kTypes)
    if (t.type == type) return t.name;
  return "INVALID";
}

std::optional<DataType> parse_data_type(std::string_view name) {
  for (const auto& t : kTypes)
    if (t.name == name) return t.type;
  return std::nullopt;
}

std::size_t element_size(DataType type) {
  for (const auto& t : kTypes)
    if (t.type == type) return t.size;
  return 0;
}

}  // namespace tritonshm
