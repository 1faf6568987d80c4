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
#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <stdexcept>
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

namespace {

// POSTs `body` to `path` and returns the response body; throws unless 200.
std::string post(const std::string& host, const std::string& port, const std::string& path, const std::string& body) {
  addrinfo hints{}, *found = nullptr;
  hints.ai_socktype = SOCK_STREAM;
  if (::getaddrinfo(host.c_str(), port.c_str(), &hints, &found) != 0)
    throw std::runtime_error("cannot resolve " + host);
  const int fd = ::socket(found->ai_family, found->ai_socktype, found->ai_protocol);
  const bool connected = fd >= 0 && ::connect(fd, found->ai_addr, found->ai_addrlen) == 0;
  ::freeaddrinfo(found);
  if (!connected) {
    if (fd >= 0) ::close(fd);
    throw std::runtime_error("cannot connect to " + host + ":" + port);
  }
  const std::string request = "POST " + path + " HTTP/1.1\r\nHost: " + host + "\r\nContent-Type: application/json\r\n" +
                              "Content-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
  for (std::size_t sent = 0; sent < request.size();) {
    const ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, 0);
    if (n <= 0) break;
    sent += static_cast<std::size_t>(n);
  }
  std::string response;
  char buffer[4096];
  for (ssize_t n; (n = ::recv(fd, buffer, sizeof buffer, 0)) > 0;) response.append(buffer, static_cast<std::size_t>(n));
  ::close(fd);
  const std::size_t head_end = response.find("\r\n\r\n");
  const std::string body_text = head_end == std::string::npos ? "" : response.substr(head_end + 4);
  if (response.compare(0, 12, "HTTP/1.1 200") != 0) {
    throw std::runtime_error(path + ": " + response.substr(0, response.find("\r\n")) + " " + body_text);
  }
  return body_text;
}

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
