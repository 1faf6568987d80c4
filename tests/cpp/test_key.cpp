#include <gtest/gtest.h>

#include "tritonshm/detail/key.hpp"
#include "tritonshm/error.hpp"

using tritonshm::SharedMemoryError;
using tritonshm::detail::normalize_key;

TEST(Key, LeadingSlashIsOptional) {
  EXPECT_EQ(normalize_key("abc"), "/abc");
  EXPECT_EQ(normalize_key("/abc"), "/abc");
  EXPECT_EQ(tritonshm::detail::key_path("/abc"), "/dev/shm/abc");
}

TEST(Key, RejectsNamesNoObjectCanCarry) {
  for (const char* bad : {"", "/", "a/b", "/a/b", "..", "."}) {
    EXPECT_THROW(normalize_key(bad), SharedMemoryError) << bad;
  }
  EXPECT_THROW(normalize_key(std::string(256, 'x')), SharedMemoryError);
  EXPECT_NO_THROW(normalize_key(std::string(255, 'x')));
  EXPECT_THROW(normalize_key(std::string("a\0b", 3)), SharedMemoryError);
}

TEST(Key, MessageNamesTheKey) {
  try {
    normalize_key("a/b");
    FAIL();
  } catch (const SharedMemoryError& e) {
    EXPECT_NE(std::string(e.what()).find("'a/b'"), std::string::npos) << e.what();
    EXPECT_EQ(e.os_error(), 0);
  }
}
