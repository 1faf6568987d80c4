#include "tritonshm/copy_engine.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "test_support.hpp"
#include "tritonshm/error.hpp"
#include "tritonshm/region.hpp"
#include "tritonshm/tensor_codec.hpp"

using namespace tritonshm;
using tritonshm::testing::KeyJar;

namespace {

std::vector<std::byte> pattern(std::size_t n, unsigned seed) {
  std::vector<std::byte> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = std::byte((i * 131 + seed * 7 + (i >> 12)) & 0xFF);
  return v;
}

constexpr std::byte kCanary{0xA5};

}  // namespace

// Every kernel this CPU runs, at every alignment of either side and sizes
// around the 64-byte lines it streams: the bytes arrive exactly and nothing
// outside the destination is written.
TEST(CopyEngine, EveryKernelCopiesExactlyAtAnyAlignment) {
  const std::size_t sizes[] = {0, 1, 31, 63, 64, 65, 127, 128, 129, 4095, 4096 + 17, (1 << 20) + 3};
  const std::size_t shifts[] = {0, 1, 7, 32, 63};
  for (const StoreIsa isa : supported_isas()) {
    for (const CopyMethod method : {CopyMethod::cached, CopyMethod::streaming}) {
      for (const std::size_t n : sizes) {
        for (const std::size_t dst_shift : shifts) {
          const std::size_t src_shift = (dst_shift * 5 + 3) % 64;
          const std::vector<std::byte> src = pattern(n + src_shift, static_cast<unsigned>(n));
          std::vector<std::byte> dst(n + dst_shift + 128, kCanary);
          copy_with(method, isa, 1, dst.data() + dst_shift + 64, src.data() + src_shift, n);
          ASSERT_EQ(std::memcmp(dst.data() + dst_shift + 64, src.data() + src_shift, n), 0)
              << isa_name(isa) << " n=" << n << " shift=" << dst_shift;
          for (std::size_t i = 0; i < dst_shift + 64; ++i) ASSERT_EQ(dst[i], kCanary) << "before, " << isa_name(isa);
          for (std::size_t i = dst_shift + 64 + n; i < dst.size(); ++i) {
            ASSERT_EQ(dst[i], kCanary) << "after, " << isa_name(isa) << " n=" << n;
          }
        }
      }
    }
  }
}

TEST(CopyEngine, SplitAcrossThreadsCopiesExactly) {
  const std::size_t n = (3 << 20) + 77;
  const std::vector<std::byte> src = pattern(n, 9);
  for (const std::size_t threads : {2, 3, 4}) {
    std::vector<std::byte> dst(n + 1, kCanary);
    copy_with(CopyMethod::streaming, copy_engine().isa, threads, dst.data() + 1, src.data(), n);
    ASSERT_EQ(std::memcmp(dst.data() + 1, src.data(), n), 0) << threads << " threads";
    ASSERT_EQ(dst[0], kCanary);
  }
}

TEST(CopyEngine, DescribesItselfAndRefusesAnInstructionSetTheCpuLacks) {
  const CopyEngine& engine = copy_engine();
  const std::vector<StoreIsa> isas = supported_isas();
  ASSERT_FALSE(isas.empty());
  EXPECT_EQ(isas.back(), StoreIsa::portable);
  EXPECT_LE(engine.isa, isas.front());  // TRITONSHM_COPY_ISA may cap it, never raise it
  EXPECT_GT(engine.thread_threshold, engine.stream_threshold / 2);
  EXPECT_GE(engine.threads, 1u);
  if (isas.front() != StoreIsa::avx512) {
    std::byte a[64], b[64] = {};
    EXPECT_THROW(copy_with(CopyMethod::streaming, StoreIsa::avx512, 1, a, b, 64), SharedMemoryError);
  }
}

// Region writes past the streaming threshold (streamed on one thread; streamed
// on several) land whole, at an odd offset, without touching their neighbours.
TEST(CopyEngine, LargeRegionWritesAndReadsAreExact) {
  KeyJar jar;
  for (const std::size_t n : {copy_engine().stream_threshold + 4099, copy_engine().thread_threshold + 12345}) {
    auto region = Region::create(jar.make(), n + 128);
    std::memset(region->data(), 0x5A, n + 128);
    const std::vector<std::byte> src = pattern(n, 3);
    region->write(33, src.data(), n);
    EXPECT_EQ(std::memcmp(region->data() + 33, src.data(), n), 0) << n;
    EXPECT_EQ(region->data()[32], std::byte{0x5A});
    EXPECT_EQ(region->data()[33 + n], std::byte{0x5A});
    std::vector<std::byte> back(n);
    region->read(33, back.data(), n);
    EXPECT_EQ(back, src);
    region->remove_if_owned();
  }
}

TEST(CopyEngine, StreamedWriteIntoAShrunkRegionRaisesInsteadOfSigbus) {
  KeyJar jar;
  const std::string key = jar.make();
  const std::size_t n = copy_engine().stream_threshold + 4096;  // streamed, one thread
  auto region = Region::create(key, n + 64);
  ASSERT_EQ(::truncate(("/dev/shm" + key).c_str(), 4096), 0);  // another process shrinks it
  const std::vector<std::byte> src = pattern(n, 1);
  try {
    region->write(1, src.data(), n);
    FAIL() << "the write must raise";
  } catch (const SharedMemoryError& e) {
    EXPECT_NE(std::string(e.what()).find("shrunk to 4096 bytes"), std::string::npos) << e.what();
  }
  region->remove_if_owned();
}

// A large BYTES tensor is serialized with the engine (lengths, then streamed
// elements): byte for byte what the plain serializer makes, and guarded.
TEST(CopyEngine, LargeBytesTensorSerializesExactlyAndIsGuarded) {
  std::vector<std::string> storage;
  for (int i = 0; i < 40; ++i) storage.emplace_back(std::size_t(1) << (i % 19), static_cast<char>('a' + i % 26));
  storage.emplace_back();  // an empty element
  std::vector<std::string_view> elements(storage.begin(), storage.end());
  while (serialized_bytes_size(elements) < copy_engine().thread_threshold + 1000) elements.push_back(storage[18]);
  const uint64_t size = serialized_bytes_size(elements);
  const std::vector<std::byte> expected = serialize_bytes(elements);
  ASSERT_EQ(expected.size(), size);
  // The reference layout, built by hand.
  std::vector<std::byte> by_hand;
  for (const std::string_view e : elements) {
    const uint32_t length = static_cast<uint32_t>(e.size());
    for (int b = 0; b < 4; ++b) by_hand.push_back(std::byte((length >> (8 * b)) & 0xFF));
    for (const char c : e) by_hand.push_back(std::byte(c));
  }
  ASSERT_EQ(expected, by_hand);

  KeyJar jar;
  const std::string key = jar.make();
  auto region = Region::create(key, size + 8);
  region->write_bytes(8, elements);
  EXPECT_EQ(std::memcmp(region->data() + 8, by_hand.data(), size), 0);
  ASSERT_EQ(::truncate(("/dev/shm" + key).c_str(), 4096), 0);
  EXPECT_THROW(region->write_bytes(8, elements), SharedMemoryError);
  region->remove_if_owned();
}

// Mostly short elements with a few long ones (an average under the streaming
// element size): one pass that streams only the long elements. Byte-exact.
TEST(CopyEngine, MixedBytesTensorSerializesExactlyInOnePass) {
  const std::string long_element(std::size_t{4} << 20, 'L');
  std::vector<std::string> shorts;
  for (int i = 0; i < 6000; ++i) shorts.push_back(std::to_string(i * 7919));
  std::vector<std::string_view> elements;
  for (std::size_t i = 0; i < shorts.size(); ++i) {
    elements.push_back(shorts[i]);
    if (i % 2000 == 999) elements.push_back(long_element);
  }
  const uint64_t size = serialized_bytes_size(elements);
  ASSERT_GE(size, copy_engine().stream_threshold);  // streamed: the long ones
  ASSERT_LT(size / elements.size(), 4096u);         // but in one pass
  const std::vector<std::byte> expected = serialize_bytes(elements);
  KeyJar jar;
  auto region = Region::create(jar.make(), size + 3);
  region->write_bytes(3, elements);
  EXPECT_EQ(std::memcmp(region->data() + 3, expected.data(), size), 0);
  const std::vector<std::string_view> back = region->read_bytes(3, elements.size());
  ASSERT_EQ(back.size(), elements.size());
  for (std::size_t i = 0; i < back.size(); ++i) ASSERT_EQ(back[i], elements[i]) << i;
  region->remove_if_owned();
}
