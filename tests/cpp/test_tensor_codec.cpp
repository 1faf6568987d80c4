#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "tritonshm/error.hpp"
#include "tritonshm/tensor_codec.hpp"

using namespace tritonshm;

namespace {
std::span<const std::byte> as_bytes(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}
}  // namespace

TEST(BytesCodec, RoundTripAndWireFormat) {
  const std::vector<std::string_view> in = {"ab", "", "xyz"};
  auto encoded = serialize_bytes(in);
  const std::string expected(
      "\x02\x00\x00\x00"
      "ab"
      "\x00\x00\x00\x00"
      "\x03\x00\x00\x00"
      "xyz",
      4 + 2 + 4 + 4 + 3);
  ASSERT_EQ(encoded.size(), expected.size());
  EXPECT_EQ(std::memcmp(encoded.data(), expected.data(), expected.size()), 0);
  auto out = deserialize_bytes(encoded);
  EXPECT_EQ(out, in);
}

TEST(BytesCodec, CountStopsEarlyAndReportsConsumed) {
  const std::vector<std::string_view> in = {"a", "bc"};
  auto encoded = serialize_bytes(in);
  encoded.resize(encoded.size() + 10);  // a region holds more after the tensor
  uint64_t consumed = 0;
  auto out = deserialize_bytes(encoded, 2, "t", &consumed);
  EXPECT_EQ(out.size(), 2u);
  EXPECT_EQ(consumed, 11u);
  // Without a count the whole buffer is decoded: 10 zero bytes are two empty
  // elements and then 2 bytes that cannot hold a length.
  EXPECT_THROW(deserialize_bytes(encoded), SharedMemoryError);
}

TEST(BytesCodec, MalformedInputNeverReadsOutOfBounds) {
  EXPECT_THROW(deserialize_bytes(as_bytes(std::string("\x05\x00\x00\x00"
                                                      "abc",
                                                      7))),
               SharedMemoryError);
  EXPECT_THROW(deserialize_bytes(as_bytes(std::string("\x01\x00", 2))), SharedMemoryError);
  EXPECT_THROW(deserialize_bytes(as_bytes(std::string(8, '\0')), 3), SharedMemoryError);
  EXPECT_THROW(deserialize_bytes(as_bytes(std::string(8, '\0')), UINT64_MAX), SharedMemoryError);
  EXPECT_EQ(deserialize_bytes(as_bytes(std::string(8, '\0')), 2).size(), 2u);
}

TEST(Bf16Codec, TruncatesAndRoundTrips) {
  const std::vector<float> in = {1.0f, -2.5f, 3.14159f, 0.0f};
  auto encoded = serialize_bf16(in);
  ASSERT_EQ(encoded.size(), 8u);
  auto out = deserialize_bf16(encoded);
  for (std::size_t i = 0; i < in.size(); ++i) {
    uint32_t a, b;
    std::memcpy(&a, &in[i], 4);
    std::memcpy(&b, &out[i], 4);
    EXPECT_EQ(a & 0xFFFF0000u, b);
  }
  EXPECT_THROW(deserialize_bf16(as_bytes("abc")), SharedMemoryError);
}

TEST(DataType, NamesAndSizes) {
  EXPECT_EQ(to_string(DataType::FP16), "FP16");
  EXPECT_EQ(parse_data_type("INT64"), DataType::INT64);
  EXPECT_EQ(parse_data_type("nope"), std::nullopt);
  EXPECT_EQ(element_size(DataType::FP64), 8u);
  EXPECT_EQ(element_size(DataType::BYTES), 0u);
  EXPECT_EQ(element_size(DataType::BF16), 2u);
}
