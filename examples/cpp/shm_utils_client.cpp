// Triton's simple_http_shm_client.cc, switched to tritonshm by one include:
// shm_utils.h here is tritonshm's (tritonshm::shm_utils_standalone, as this
// program has no Triton client library). The calls are the same: create, map,
// close, then the tensors are plain memory; unmap and unlink at the end.
//
// Without Triton's C++ client library, it talks to the server with a minimal
// HTTP/JSON client over a plain socket, as pooled_inference.cpp does. It runs
// the `simple` model (INT32 INPUT0, INPUT1 [1,16] -> OUTPUT0 = sum, OUTPUT1 =
// difference) with its inputs in one region and its outputs in another.
//
//   shm_utils_client HOST:PORT

#include <cstdlib>
#include <iostream>
#include <stdexcept>
#include <string>

#include "http_post.hpp"

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

namespace {

using example::post;

std::string tensor_in(const std::string& region, size_t offset, size_t bytes) {
  return R"("parameters":{"shared_memory_region":")" + region + R"(","shared_memory_offset":)" +
         std::to_string(offset) + R"(,"shared_memory_byte_size":)" + std::to_string(bytes) + "}";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: shm_utils_client HOST:PORT\n";
    return 2;
  }
  const std::string url = argv[1];
  const std::string host = url.substr(0, url.rfind(':')), port = url.substr(url.rfind(':') + 1);
  // Keys and names of this process: two clients never share or unregister each other's regions.
  const std::string suffix = "_" + std::to_string(::getpid());
  const std::string input_key = "/shm_utils_input" + suffix, output_key = "/shm_utils_output" + suffix;
  const std::string input_name = "shm_utils_input" + suffix, output_name = "shm_utils_output" + suffix;
  const size_t input_byte_size = 64, output_byte_size = 64;

  // Inputs: INPUT0 = 0..15, INPUT1 = ones, one after the other in one region.
  int shm_fd_ip = -1, *input0_shm = nullptr;
  FAIL_IF_ERR(tc::CreateSharedMemoryRegion(input_key, input_byte_size * 2, &shm_fd_ip), "");
  FAIL_IF_ERR(tc::MapSharedMemory(shm_fd_ip, 0, input_byte_size * 2, (void**)&input0_shm), "");
  FAIL_IF_ERR(tc::CloseSharedMemory(shm_fd_ip), "");
  int* input1_shm = input0_shm + 16;
  for (int i = 0; i < 16; ++i) {
    input0_shm[i] = i;
    input1_shm[i] = 1;
  }
  // Outputs: OUTPUT0 and OUTPUT1 in a second region.
  int shm_fd_op = -1, *output0_shm = nullptr;
  FAIL_IF_ERR(tc::CreateSharedMemoryRegion(output_key, output_byte_size * 2, &shm_fd_op), "");
  FAIL_IF_ERR(tc::MapSharedMemory(shm_fd_op, 0, output_byte_size * 2, (void**)&output0_shm), "");
  FAIL_IF_ERR(tc::CloseSharedMemory(shm_fd_op), "");
  int* output1_shm = output0_shm + 16;

  int status = 0;
  try {
    post(host, port, "/v2/systemsharedmemory/region/" + input_name + "/register",
         R"({"key":")" + input_key + R"(","offset":0,"byte_size":)" + std::to_string(input_byte_size * 2) + "}");
    post(host, port, "/v2/systemsharedmemory/region/" + output_name + "/register",
         R"({"key":")" + output_key + R"(","offset":0,"byte_size":)" + std::to_string(output_byte_size * 2) + "}");
    post(host, port, "/v2/models/simple/infer",
         R"({"inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"INT32",)" +
             tensor_in(input_name, 0, input_byte_size) + R"(},{"name":"INPUT1","shape":[1,16],"datatype":"INT32",)" +
             tensor_in(input_name, input_byte_size, input_byte_size) + R"(}],"outputs":[{"name":"OUTPUT0",)" +
             tensor_in(output_name, 0, output_byte_size) + R"(},{"name":"OUTPUT1",)" +
             tensor_in(output_name, output_byte_size, output_byte_size) + "}]}");
    for (int i = 0; i < 16; ++i) {
      std::cout << input0_shm[i] << " + " << input1_shm[i] << " = " << output0_shm[i] << "\n";
      std::cout << input0_shm[i] << " - " << input1_shm[i] << " = " << output1_shm[i] << "\n";
      if (input0_shm[i] + input1_shm[i] != output0_shm[i] || input0_shm[i] - input1_shm[i] != output1_shm[i]) {
        std::cerr << "error: incorrect result at element " << i << "\n";
        status = 1;
      }
    }
    post(host, port, "/v2/systemsharedmemory/region/" + input_name + "/unregister", "");
    post(host, port, "/v2/systemsharedmemory/region/" + output_name + "/unregister", "");
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    status = 1;
  }

  // Cleanup, whatever happened above.
  FAIL_IF_ERR(tc::UnmapSharedMemory(input0_shm, input_byte_size * 2), "");
  FAIL_IF_ERR(tc::UnlinkSharedMemoryRegion(input_key), "");
  FAIL_IF_ERR(tc::UnmapSharedMemory(output0_shm, output_byte_size * 2), "");
  FAIL_IF_ERR(tc::UnlinkSharedMemoryRegion(output_key), "");
  if (status == 0) std::cout << "PASS : System Shared Memory " << input_name << " " << output_name << "\n";
  return status;
}
