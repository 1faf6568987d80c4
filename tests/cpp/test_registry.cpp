#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>
#include <vector>

#include "test_support.hpp"
#include "tritonshm/registry.hpp"

using namespace tritonshm;
using tritonshm::testing::exists;
using tritonshm::testing::KeyJar;

TEST(Registry, HandlesAreCountedAndLastDestroyUnlinks) {
  KeyJar jar;
  const std::string key = jar.make();
  Handle a = create_shared_memory_region("a", key, 64);
  Handle b = create_shared_memory_region("b", key.substr(1), 64);
  EXPECT_EQ(handle_count(key), 2u);
  EXPECT_EQ(a.region()->data(), b.region()->data()) << "one mapping per region in a process";
  EXPECT_EQ(mapped_shared_memory_regions(), std::vector<std::string>{key});
  a.destroy();
  EXPECT_TRUE(exists(key));
  EXPECT_THROW(a.destroy(), SharedMemoryError);
  EXPECT_THROW(a.region(), SharedMemoryError);
  b.destroy();
  EXPECT_FALSE(exists(key));
  EXPECT_TRUE(mapped_shared_memory_regions().empty());
}

TEST(Registry, ScopeExitReleasesLikeDestroy) {
  KeyJar jar;
  const std::string key = jar.make();
  {
    Handle h = create_shared_memory_region("a", key, 64, create_only);
    EXPECT_TRUE(exists(key));
  }
  EXPECT_FALSE(exists(key));
  EXPECT_EQ(handle_count(key), 0u);
}

TEST(Registry, AttachedRegionIsNotUnlinked) {
  KeyJar jar;
  const std::string key = jar.make();
  auto creator = Region::create(key, 128);  // as another process would: outside the registry
  {
    Handle h = create_shared_memory_region("a", key, 128);
    EXPECT_FALSE(h.region()->owns());
  }
  EXPECT_TRUE(exists(key));
  creator->remove_if_owned();
}

TEST(Registry, CreateOnlyFailsOnExistingKeyAndKeepsCount) {
  KeyJar jar;
  const std::string key = jar.make();
  Handle h = create_shared_memory_region("a", key, 64);
  EXPECT_THROW(create_shared_memory_region("b", key, 64, create_only), SharedMemoryError);
  EXPECT_EQ(handle_count(key), 1u);
}

TEST(Registry, ThreadsCreatingAndDestroyingSharedKeysEndAtZero) {
  KeyJar jar;
  const std::vector<std::string> keys = {jar.make(), jar.make()};
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        Handle h = create_shared_memory_region("t", keys[(t + i) % 2], 4096);
        auto region = h.region();
        if (region->size() != 4096) ++failures;
        const int64_t value = t * 1000 + i;
        region->write(t * 8, &value, 8);
        int64_t back = 0;
        region->read(t * 8, &back, 8);
        if (back != value) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  for (const auto& k : keys) {
    EXPECT_EQ(handle_count(k), 0u);
    EXPECT_FALSE(exists(k));
  }
}

TEST(Registry, MovedFromHandleIsInert) {
  KeyJar jar;
  const std::string key = jar.make();
  Handle a = create_shared_memory_region("a", key, 64);
  Handle b = std::move(a);
  EXPECT_FALSE(a.live());
  EXPECT_TRUE(b.live());
  EXPECT_EQ(handle_count(key), 1u);
  b.destroy();
  EXPECT_FALSE(exists(key));
}

TEST(Registry, ErrorsBeginWithTheReferenceText) {
  KeyJar jar;
  const std::string key = jar.make();
  Handle h = create_shared_memory_region("a", key, 64);
  try {
    (void)create_shared_memory_region("b", key, 64, create_only);
    FAIL() << "create_only on an existing key must throw";
  } catch (const SharedMemoryError& e) {
    EXPECT_EQ(std::string(e.what()).rfind("unable to create the shared memory region '" + key + "': ", 0), 0u)
        << e.what();
    EXPECT_EQ(e.os_error(), EEXIST);
    EXPECT_EQ(e.operation(), Operation::create);
  }
  try {
    (void)create_shared_memory_region("c", "a/b", 64);
    FAIL() << "a key with '/' inside must throw";
  } catch (const SharedMemoryError& e) {
    EXPECT_EQ(std::string(e.what()).rfind("unable to create the shared memory region 'a/b': invalid", 0), 0u)
        << e.what();
  }
  const std::byte too_much[65]{};
  try {
    h.region()->write(0, too_much, sizeof too_much);
    FAIL() << "a write past the end must throw";
  } catch (const SharedMemoryError& e) {
    EXPECT_EQ(std::string(e.what()).rfind("unable to set the shared memory region '" + key + "': 65 bytes", 0), 0u)
        << e.what();
  }
}

// fork() copies the registry into the child. The child may use and release
// what it inherited, but the region is the parent's: only the parent unlinks.
TEST(Registry, ForkedChildReleasesButNeverUnlinksTheParentsRegion) {
  KeyJar jar;
  const std::string key = jar.make();
  Handle h = create_shared_memory_region("a", key, 64, create_only);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    int status = 0;
    try {
      h.region()->write(0, "child", 5);
      Handle second = create_shared_memory_region("b", key, 64);  // shares the inherited entry
      second.destroy();
      h.destroy();  // the last handle in the child
      status = exists(key) ? 0 : 3;
    } catch (...) {
      status = 4;
    }
    ::_exit(status);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "3: the child unlinked the parent's region; 4: it threw";
  EXPECT_TRUE(exists(key));
  EXPECT_EQ(std::memcmp(h.region()->data(), "child", 5), 0);
  h.destroy();
  EXPECT_FALSE(exists(key)) << "the parent, which created it, unlinks it";
}
