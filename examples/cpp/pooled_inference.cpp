// Shared-memory inference from C++ with a tritonshm::Arena: one region
// registered once with a Triton server, one lease per request.
//
// The arena never talks to a server, so any client registers its regions,
// between add_region (the region is pending: nothing is leased from it yet)
// and commit_region. This example uses the smallest client there is: Triton's
// HTTP/JSON API over a plain socket (a real program would use Triton's C++
// client, gRPC, or its own). It runs the `simple` model (INT32 INPUT0, INPUT1
// [1,16] -> OUTPUT0 = sum, OUTPUT1 = difference) with every tensor in its own
// slice of the lease.
//
//   pooled_inference HOST:PORT [REQUESTS]

#include <chrono>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <stdexcept>
#include <string>

#include "http_post.hpp"

#include <tritonshm/tritonshm.hpp>

namespace {

using example::post;

// The parameters that point the server at a tensor's slice of a lease.
std::string shm_parameters(const tritonshm::Lease& lease, const tritonshm::Slice& tensor) {
  return R"("parameters":{"shared_memory_region":")" + lease.name() + R"(","shared_memory_offset":)" +
         std::to_string(tensor.offset()) + R"(,"shared_memory_byte_size":)" + std::to_string(tensor.size()) + "}";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: pooled_inference HOST:PORT [REQUESTS]\n";
    return 2;
  }
  const std::string url = argv[1];
  const std::string host = url.substr(0, url.rfind(':')), port = url.substr(url.rfind(':') + 1);
  const int requests = argc > 2 ? std::stoi(argv[2]) : 100;
  try {
    tritonshm::ArenaOptions options;
    options.key_prefix = "tritonshm_cpp_example";
    tritonshm::Arena arena(options);
    const tritonshm::ArenaRegion region = arena.add_region(1 << 20);
    post(host, port, "/v2/systemsharedmemory/region/" + region.name + "/register",
         R"({"key":")" + region.key + R"(","offset":0,"byte_size":)" + std::to_string(region.size) + "}");
    arena.commit_region(region.name);  // registered: leases may come from it now
    std::cout << "REGISTERED " << region.name << "\n";

    constexpr uint64_t kTensor = 16 * sizeof(int32_t);  // [1,16] INT32
    double lease_us = 0;
    for (int r = 0; r < requests; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      tritonshm::Lease lease = arena.lease(4 * kTensor);  // INPUT0, INPUT1, OUTPUT0, OUTPUT1
      lease_us += std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
      // Each tensor its own bounded slice of the lease: no offset arithmetic.
      const tritonshm::Slice& slice = lease.slice();
      const tritonshm::Slice input0 = slice.sub(0, kTensor), input1 = slice.sub(kTensor, kTensor);
      const tritonshm::Slice output0 = slice.sub(2 * kTensor, kTensor), output1 = slice.sub(3 * kTensor, kTensor);
      int32_t a[16], b[16];
      for (int i = 0; i < 16; ++i) a[i] = r + i, b[i] = i % 5;
      input0.write(0, a, kTensor);
      input1.write(0, b, kTensor);
      const std::string body =
          R"({"inputs":[{"name":"INPUT0","shape":[1,16],"datatype":"INT32",)" + shm_parameters(lease, input0) +
          R"(},{"name":"INPUT1","shape":[1,16],"datatype":"INT32",)" + shm_parameters(lease, input1) +
          R"(}],"outputs":[{"name":"OUTPUT0",)" + shm_parameters(lease, output0) + R"(},{"name":"OUTPUT1",)" +
          shm_parameters(lease, output1) + "}]}";
      post(host, port, "/v2/models/simple/infer", body);
      const auto sum = output0.as<int32_t>(0, 16);
      const auto difference = output1.as<int32_t>(0, 16);
      for (int i = 0; i < 16; ++i) {
        if (sum[i] != a[i] + b[i] || difference[i] != a[i] - b[i]) {
          std::cerr << "FAIL request " << r << " element " << i << "\n";
          return 1;
        }
      }
      const auto t1 = std::chrono::steady_clock::now();
      lease.release();
      lease_us += std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t1).count();
    }
    post(host, port, "/v2/systemsharedmemory/region/" + region.name + "/unregister", "");
    std::cout << "PASS " << requests << " requests; lease + release " << lease_us / requests << " us each\n";
  } catch (const std::exception& e) {  // tritonshm::SharedMemoryError or the HTTP client's
    std::cerr << "pooled_inference: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
