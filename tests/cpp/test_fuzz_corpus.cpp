// Replays every input the fuzzers kept (tests/fuzz/corpus) through the same
// checks the fuzzers run, so a regression shows in the ordinary test run,
// without clang or libFuzzer.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

#include "../fuzz/decoder_checks.hpp"

namespace fs = std::filesystem;

namespace {
std::vector<std::pair<std::string, std::vector<uint8_t>>> corpus(const char* name) {
  std::vector<std::pair<std::string, std::vector<uint8_t>>> inputs;
  for (const auto& entry : fs::directory_iterator(fs::path(TRITONSHM_FUZZ_CORPUS) / name)) {
    std::ifstream in(entry.path(), std::ios::binary);
    inputs.emplace_back(entry.path().filename(),
                        std::vector<uint8_t>(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()));
  }
  return inputs;
}
}  // namespace

TEST(FuzzCorpus, BytesDecoderHoldsItsInvariants) {
  const auto inputs = corpus("bytes");
  ASSERT_GE(inputs.size(), 3u);
  for (const auto& [name, input] : inputs) {
    EXPECT_TRUE(tritonshm::fuzz::check_bytes_decoder(input.data(), input.size())) << name;
  }
}

TEST(FuzzCorpus, Bf16DecoderRoundTrips) {
  const auto inputs = corpus("bf16");
  ASSERT_GE(inputs.size(), 2u);
  for (const auto& [name, input] : inputs) {
    EXPECT_TRUE(tritonshm::fuzz::check_bf16_decoder(input.data(), input.size())) << name;
  }
}
