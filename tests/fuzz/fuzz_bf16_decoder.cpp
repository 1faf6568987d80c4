// libFuzzer target: the BF16 decoder on arbitrary bytes.
#include <cstdlib>

#include "decoder_checks.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* input, size_t size) {
  if (!tritonshm::fuzz::check_bf16_decoder(input, size)) std::abort();
  return 0;
}
