// Fuzzes the BYTES decoder with arbitrary region contents and element counts.
// Input: 1 byte flags, 8 bytes count (used if flags & 1), then the data.
// Checks that every decoded element lies inside the data, that the elements
// account exactly for the bytes consumed, and that re-encoding reproduces them.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <span>

#include "tritonshm/error.hpp"
#include "tritonshm/tensor_codec.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* input, size_t size) {
  if (size < 9) return 0;
  std::optional<uint64_t> count;
  if (input[0] & 1) {
    uint64_t c;
    std::memcpy(&c, input + 1, 8);
    count = c % 4096;  // keep the vector small; the decoder checks larger ones up front
  }
  std::span<const std::byte> data(reinterpret_cast<const std::byte*>(input + 9), size - 9);
  uint64_t consumed = 0;
  std::vector<std::string_view> elements;
  try {
    elements = tritonshm::deserialize_bytes(data, count, "fuzz", &consumed);
  } catch (const tritonshm::SharedMemoryError&) {
    return 0;
  }
  uint64_t total = 0;
  const char* begin = reinterpret_cast<const char*>(data.data());
  for (std::string_view e : elements) {
    if (!e.empty() && (e.data() < begin || e.data() + e.size() > begin + data.size())) std::abort();
    total += 4 + e.size();
  }
  if (total != consumed || consumed > data.size()) std::abort();
  if (count && elements.size() != *count) std::abort();
  if (!count && consumed != data.size()) std::abort();
  const std::vector<std::byte> again = tritonshm::serialize_bytes(elements);
  if (again.size() != consumed || (consumed && std::memcmp(again.data(), data.data(), consumed) != 0)) std::abort();
  return 0;
}
