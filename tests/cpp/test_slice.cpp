#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "test_support.hpp"
#include "tritonshm/arena.hpp"
#include "tritonshm/slice.hpp"
#include "tritonshm/tensor_codec.hpp"

using namespace tritonshm;
using tritonshm::testing::KeyJar;

namespace {

// Expects `call` to throw a SharedMemoryError whose message starts with `start`
// and contains `part`.
void expect_refused(const std::function<void()>& call, const std::string& start, const std::string& part) {
  try {
    call();
    ADD_FAILURE() << "no error; expected one containing: " << part;
  } catch (const SharedMemoryError& e) {
    const std::string what = e.what();
    EXPECT_EQ(what.rfind(start, 0), 0u) << what;
    EXPECT_NE(what.find(part), std::string::npos) << what;
  }
}

}  // namespace

TEST(Slice, EveryMethodRefusesRangesOutsideTheSlice) {
  KeyJar keys;
  auto region = Region::create(keys.make("slice"), 4096);
  std::memset(region->data(), 0x5a, 4096);
  const Slice slice(region, 1024, 64);
  const std::array<std::byte, 65> data{};
  char out[65];
  const std::string set = "unable to set the shared memory region";
  const std::string get = "unable to read the shared memory region";
  const std::string tail = "do not fit in the slice of 64 bytes at offset 1024 of the region";
  expect_refused([&] { slice.write(0, data.data(), 65); }, set, "65 bytes at offset 0 " + tail);
  expect_refused([&] { slice.write(64, data.data(), 1); }, set, "1 bytes at offset 64 " + tail);
  expect_refused([&] { slice.write(UINT64_MAX, data.data(), 2); }, set, tail);
  const std::array<std::span<const std::byte>, 2> parts{std::span(data).first(32), std::span(data).first(33)};
  expect_refused([&] { slice.write(0, parts); }, set, "65 bytes at offset 0 " + tail);
  const std::string long_element(56, 'y');
  const std::vector<std::string_view> elements{std::string_view("x", 1), long_element};  // 4 + 1 + 4 + 56 bytes
  expect_refused([&] { slice.write_bytes(0, elements); }, set, "65 bytes at offset 0 " + tail);
  expect_refused([&] { slice.read(1, out, 64); }, get, "64 bytes at offset 1 " + tail);
  expect_refused([&] { (void)slice.bytes(60, 5); }, get, "5 bytes at offset 60 " + tail);
  expect_refused([&] { (void)slice.as<int32_t>(0, 17); }, get, tail);
  expect_refused([&] { (void)slice.as<int32_t>(0, UINT64_MAX / 2); }, get,
                 std::to_string(UINT64_MAX / 2) + " elements overflow 64 bits");  // as a region says it
  expect_refused([&] { (void)slice.read_bytes(65, 0); }, get, "0 bytes at offset 65 " + tail);
  expect_refused([&] { (void)slice.sub(32, 33); }, "", tail);
  expect_refused([&] { (void)Slice(region, 4000, 97); }, "", "97 bytes at offset 4000 do not fit in its 4096 bytes");
  // Nothing was written anywhere.
  for (int i = 0; i < 4096; ++i) ASSERT_EQ(region->data()[i], std::byte{0x5a}) << i;
  // The very end fits.
  slice.write(60, data.data(), 4);
  EXPECT_EQ(slice.sub(60, 4).as<int32_t>(0, 1)[0], 0);
  EXPECT_EQ(region->data()[1024 + 64], std::byte{0x5a});
}

TEST(Slice, BytesTensorIsDecodedOnlyWithinTheSlice) {
  KeyJar keys;
  auto region = Region::create(keys.make("slice"), 4096);
  const Slice first(region, 0, 64), second(region, 64, 64);
  const std::vector<std::string_view> one{std::string_view("hello")};
  second.write_bytes(0, one);
  // An element whose length (8) runs from the last 4 bytes of `first` into `second`.
  const uint32_t length = 8;
  first.write(60, &length, 4);
  EXPECT_THROW((void)first.read_bytes(60, 1), SharedMemoryError);
  EXPECT_EQ(Slice::whole(region).read_bytes(60, 1)[0].size(), 8u);  // the region itself has the bytes
  const auto read = second.read_bytes(0, 1);
  ASSERT_EQ(read.size(), 1u);
  EXPECT_EQ(read[0], "hello");
}

TEST(Slice, WholeRegionSpeaksAsTheRegion) {
  KeyJar keys;
  auto region = Region::create(keys.make("slice"), 1024);
  const Slice whole = Slice::whole(region);
  EXPECT_EQ(whole.offset(), 0u);
  EXPECT_EQ(whole.size(), 1024u);
  const char data[8] = {};
  expect_refused([&] { whole.write(1020, data, 8); }, "unable to set the shared memory region",
                 "8 bytes at offset 1020 do not fit in its 1024 bytes");
}

TEST(Slice, LeaseSliceCannotReachItsNeighbours) {
  ArenaOptions options;
  options.key_prefix = "tshm_cpp_slice";
  Arena arena(options);
  arena.commit_region(arena.add_region(4096).name);
  Lease first = arena.lease(64), second = arena.lease(64);
  ASSERT_EQ(second.offset(), first.offset() + 64);
  const int32_t sevens[16] = {7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7};
  second.slice().write(0, sevens, sizeof sevens);
  const std::array<std::byte, 68> zeros{};
  EXPECT_THROW(first.slice().write(0, zeros.data(), zeros.size()), SharedMemoryError);
  EXPECT_THROW(first.slice().write(4, zeros.data(), 64), SharedMemoryError);
  EXPECT_THROW(second.slice().write(UINT64_MAX - 2, zeros.data(), 4), SharedMemoryError);
  for (int32_t v : second.slice().as<int32_t>(0, 16)) EXPECT_EQ(v, 7);
  EXPECT_EQ(first.slice().offset(), first.offset());
  EXPECT_EQ(first.slice().size(), 64u);
  first.release();
  expect_refused([&] { (void)first.slice(); }, "unable to lease shared memory", "the lease was released");
  EXPECT_EQ(first.region(), nullptr);
  EXPECT_EQ(first.data(), nullptr);
}
