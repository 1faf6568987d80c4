#include <gtest/gtest.h>

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
    Handle h = create_shared_memory_region("a", key, 64, true);
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
    EXPECT_FALSE(h.region()->created());
  }
  EXPECT_TRUE(exists(key));
  creator->unlink();
}

TEST(Registry, CreateOnlyFailsOnExistingKeyAndKeepsCount) {
  KeyJar jar;
  const std::string key = jar.make();
  Handle h = create_shared_memory_region("a", key, 64);
  EXPECT_THROW(create_shared_memory_region("b", key, 64, true), SharedMemoryError);
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
