// Fuzzes the BF16 decoder: any even-length input decodes, odd lengths raise,
// and decoding then encoding gives back the input.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>

#include "tritonshm/error.hpp"
#include "tritonshm/tensor_codec.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* input, size_t size) {
  std::span<const std::byte> data(reinterpret_cast<const std::byte*>(input), size);
  std::vector<float> values;
  try {
    values = tritonshm::deserialize_bf16(data);
  } catch (const tritonshm::SharedMemoryError&) {
    if (size % 2 == 0) std::abort();
    return 0;
  }
  if (size % 2 != 0 || values.size() != size / 2) std::abort();
  const std::vector<std::byte> again = tritonshm::serialize_bf16(values);
  if (again.size() != size || (size && std::memcmp(again.data(), input, size) != 0)) std::abort();
  return 0;
}
