// Attaches to a region that a Python process created and filled:
//   offset  0: INT64 [8]
//   offset 64: BYTES [2]
// Prints what it finds, writes the INT64 sum at offset 256 for Python to check,
// and releases its handle (an attached region is never unlinked).
#include <tritonshm/tritonshm.hpp>

#include <iostream>
#include <numeric>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: read_tensors KEY\n";
    return 2;
  }
  try {
    tritonshm::Handle handle = tritonshm::attach_shared_memory_region("cpp_output", argv[1]);
    auto region = handle.region();

    auto values = region->as<int64_t>(0, 8);
    const int64_t sum = std::accumulate(values.begin(), values.end(), int64_t{0});
    std::cout << "INT64";
    for (int64_t v : values) std::cout << " " << v;
    std::cout << "\nSUM " << sum << "\n";

    auto rest = region->bytes(64, region->size() - 64);
    for (std::string_view s : tritonshm::deserialize_bytes(rest, 2, "BYTES input")) std::cout << "BYTES " << s << "\n";

    region->write(256, &sum, sizeof sum);
  } catch (const tritonshm::SharedMemoryError& e) {
    std::cerr << "read_tensors: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
