// The invariants the decoder fuzzers check, shared by the libFuzzer targets
// and by the C++ test that replays the kept corpus (tests/cpp/test_fuzz_corpus.cpp),
// so both run exactly the same checks. Each returns false on a violation.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <vector>

#include "tritonshm/error.hpp"
#include "tritonshm/tensor_codec.hpp"

namespace tritonshm::fuzz {

// BYTES: input = 1 byte flags, 8 bytes count (used if flags & 1), then the
// data. Every decoded element lies inside the data, the elements account
// exactly for the bytes consumed, and re-encoding reproduces them.
inline bool check_bytes_decoder(const uint8_t* input, std::size_t size) {
  if (size < 9) return true;
  std::optional<uint64_t> count;
  if (input[0] & 1) {
    uint64_t c;
    std::memcpy(&c, input + 1, 8);
    count = c % 4096;  // keeps the output small; the decoder checks larger counts up front
  }
  std::span<const std::byte> data(reinterpret_cast<const std::byte*>(input + 9), size - 9);
  uint64_t consumed = 0;
  std::vector<std::string_view> elements;
  try {
    elements = deserialize_bytes(data, count, "fuzz", &consumed);
  } catch (const SharedMemoryError&) {
    return true;  // rejecting malformed data is the right outcome
  }
  uint64_t total = 0;
  const char* begin = reinterpret_cast<const char*>(data.data());
  for (std::string_view e : elements) {
    if (!e.empty() && (e.data() < begin || e.data() + e.size() > begin + data.size())) return false;
    total += 4 + e.size();
  }
  if (total != consumed || consumed > data.size()) return false;
  if (count && elements.size() != *count) return false;
  if (!count && consumed != data.size()) return false;
  const std::vector<std::byte> again = serialize_bytes(elements);
  return again.size() == consumed && (consumed == 0 || std::memcmp(again.data(), data.data(), consumed) == 0);
}

// BF16: even lengths decode, odd lengths raise, and decoding then encoding
// gives back the input.
inline bool check_bf16_decoder(const uint8_t* input, std::size_t size) {
  std::span<const std::byte> data(reinterpret_cast<const std::byte*>(input), size);
  std::vector<float> values;
  try {
    values = deserialize_bf16(data);
  } catch (const SharedMemoryError&) {
    return size % 2 != 0;
  }
  if (size % 2 != 0 || values.size() != size / 2) return false;
  const std::vector<std::byte> again = serialize_bf16(values);
  return again.size() == size && (size == 0 || std::memcmp(again.data(), input, size) == 0);
}

}  // namespace tritonshm::fuzz
