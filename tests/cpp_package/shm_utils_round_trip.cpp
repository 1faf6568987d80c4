// Uses shm_utils.h the way Triton's simple_http_shm_client.cc does: create,
// map, close, then plain loads and stores, unmap, unlink.
//
//   shm_utils_round_trip write KEY   creates 128 bytes: INT32 0..15, then 16 ones;
//                                    prints READY, waits for a line, unmaps, unlinks
//   shm_utils_round_trip read KEY N  opens KEY (made by someone else) asking for N
//                                    bytes; prints the sum of 8 INT64 and stores it
//                                    at byte 64; unmaps, leaves KEY in place
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <string>

#include "shm_utils.h"

namespace tc = triton::client;

#define FAIL_IF_ERR(X, MSG)                                   \
  do {                                                        \
    tc::Error err = (X);                                      \
    if (!err.IsOk()) {                                        \
      std::cerr << "error: " << (MSG) << ": " << err << "\n"; \
      std::exit(1);                                           \
    }                                                         \
  } while (false)

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: shm_utils_round_trip write KEY | read KEY BYTES\n";
    return 2;
  }
#ifdef STAND_IN_TRITON_CLIENT_COMMON_H
  std::cout << "ERROR FROM the client library's common.h\n";
#else
  std::cout << "ERROR FROM tritonshm (standalone)\n";
#endif
#ifdef STAND_IN_TRITON_CLIENT_SHM_UTILS_H
  std::cout << "HEADER FROM the client library\n";
#else
  std::cout << "HEADER FROM tritonshm\n";
#endif
  const std::string mode = argv[1], shm_key = argv[2];
  int shm_fd = -1;
  if (mode == "write") {
    const size_t input_byte_size = 64;
    int* input0_shm = nullptr;
    FAIL_IF_ERR(tc::CreateSharedMemoryRegion(shm_key, input_byte_size * 2, &shm_fd), "create");
    FAIL_IF_ERR(tc::MapSharedMemory(shm_fd, 0, input_byte_size * 2, (void**)&input0_shm), "map");
    FAIL_IF_ERR(tc::CloseSharedMemory(shm_fd), "close");
    int* input1_shm = input0_shm + 16;
    for (int i = 0; i < 16; ++i) {
      input0_shm[i] = i;
      input1_shm[i] = 1;
    }
    std::cout << "READY " << shm_key << std::endl;
    std::string line;
    std::getline(std::cin, line);
    FAIL_IF_ERR(tc::UnmapSharedMemory(input0_shm, input_byte_size * 2), "unmap");
    FAIL_IF_ERR(tc::UnlinkSharedMemoryRegion(shm_key), "unlink");
    std::cout << "UNLINKED" << std::endl;
    return 0;
  }
  if (mode == "read" && argc > 3) {
    const size_t byte_size = std::stoul(argv[3]);
    int64_t* values = nullptr;
    FAIL_IF_ERR(tc::CreateSharedMemoryRegion(shm_key, byte_size, &shm_fd), "create");
    FAIL_IF_ERR(tc::MapSharedMemory(shm_fd, 0, byte_size, (void**)&values), "map");
    FAIL_IF_ERR(tc::CloseSharedMemory(shm_fd), "close");
    int64_t sum = 0;
    for (int i = 0; i < 8; ++i) sum += values[i];
    values[8] = sum;  // byte 64
    std::cout << "SUM " << sum << std::endl;
    FAIL_IF_ERR(tc::UnmapSharedMemory(values, byte_size), "unmap");
    return 0;
  }
  std::cerr << "unknown mode " << mode << "\n";
  return 2;
}
