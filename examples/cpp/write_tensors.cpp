// Creates a region and writes three tensors for a Python process to read with
// tritonshm.get_contents_as_numpy:
//   offset   0: INT32 [16]  = 0..15
//   offset  64: FP32  [4]   = 0.5, 1.5, 2.5, 3.5
//   offset  80: BYTES [3]   = "tensor", "", "from C++"
// Prints READY, waits for a line on stdin, then destroys the region (the
// handle's scope ends), which unlinks it because this process created it.
#include <tritonshm/tritonshm.hpp>

#include <array>
#include <iostream>
#include <string>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: write_tensors KEY\n";
    return 2;
  }
  try {
    tritonshm::Handle handle =
        tritonshm::create_shared_memory_region("cpp_input", argv[1], 1024, tritonshm::create_only);
    std::shared_ptr<tritonshm::Region> region = handle.region();

    auto ints = region->as<int32_t>(0, 16);  // bounds- and alignment-checked view
    for (int32_t i = 0; i < 16; ++i) ints[i] = i;

    const std::array<float, 4> floats = {0.5f, 1.5f, 2.5f, 3.5f};
    region->write(64, floats.data(), sizeof floats);

    const std::array<std::string_view, 3> strings = {"tensor", "", "from C++"};
    const std::vector<std::byte> encoded = tritonshm::serialize_bytes(strings);
    region->write(80, encoded.data(), encoded.size());

    std::cout << "READY " << region->key() << " " << region->size() << std::endl;
    std::string line;
    std::getline(std::cin, line);
    handle.destroy();
    std::cout << "DESTROYED" << std::endl;
  } catch (const tritonshm::SharedMemoryError& e) {
    std::cerr << "write_tensors: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
