// Replays every input the fuzzers kept (tests/fuzz/corpus) through the
// decoders with the same checks, so a regression shows in the ordinary test
// run, without clang or libFuzzer.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <vector>

#include "tritonshm/error.hpp"
#include "tritonshm/tensor_codec.hpp"

namespace fs = std::filesystem;

namespace {
std::vector<std::vector<uint8_t>> corpus(const char* name) {
  std::vector<std::vector<uint8_t>> inputs;
  for (const auto& entry : fs::directory_iterator(fs::path(TRITONSHM_FUZZ_CORPUS) / name)) {
    std::ifstream in(entry.path(), std::ios::binary);
    inputs.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  return inputs;
}
}  // namespace

TEST(FuzzCorpus, BytesDecoderHoldsItsInvariants) {
  const auto inputs = corpus("bytes");
  ASSERT_GE(inputs.size(), 3u);
  for (const auto& input : inputs) {
    if (input.size() < 9) continue;
    std::optional<uint64_t> count;
    if (input[0] & 1) {
      uint64_t c;
      std::memcpy(&c, input.data() + 1, 8);
      count = c % 4096;
    }
    std::span<const std::byte> data(reinterpret_cast<const std::byte*>(input.data() + 9), input.size() - 9);
    uint64_t consumed = 0;
    try {
      auto elements = tritonshm::deserialize_bytes(data, count, "corpus", &consumed);
      uint64_t total = 0;
      for (auto e : elements) total += 4 + e.size();
      EXPECT_EQ(total, consumed);
      EXPECT_LE(consumed, data.size());
      if (count) EXPECT_EQ(elements.size(), *count);
      auto again = tritonshm::serialize_bytes(elements);
      ASSERT_EQ(again.size(), consumed);
      EXPECT_TRUE(consumed == 0 || std::memcmp(again.data(), data.data(), consumed) == 0);
    } catch (const tritonshm::SharedMemoryError&) {
    }
  }
}

TEST(FuzzCorpus, Bf16DecoderRoundTrips) {
  const auto inputs = corpus("bf16");
  ASSERT_GE(inputs.size(), 2u);
  for (const auto& input : inputs) {
    std::span<const std::byte> data(reinterpret_cast<const std::byte*>(input.data()), input.size());
    if (input.size() % 2) {
      EXPECT_THROW(tritonshm::deserialize_bf16(data), tritonshm::SharedMemoryError);
      continue;
    }
    auto again = tritonshm::serialize_bf16(tritonshm::deserialize_bf16(data));
    ASSERT_EQ(again.size(), input.size());
    EXPECT_TRUE(input.empty() || std::memcmp(again.data(), input.data(), input.size()) == 0);
  }
}
