// libFuzzer target: the BYTES decoder on arbitrary region contents and counts.
#include <cstdlib>

#include "decoder_checks.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* input, size_t size) {
  if (!tritonshm::fuzz::check_bytes_decoder(input, size)) std::abort();
  return 0;
}
