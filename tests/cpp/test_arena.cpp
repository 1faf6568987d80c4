#include <gtest/gtest.h>

#include <unistd.h>

#include <atomic>
#include <cstring>
#include <set>
#include <thread>
#include <vector>

#include "test_support.hpp"
#include "tritonshm/arena.hpp"

using namespace tritonshm;
using tritonshm::testing::exists;

namespace {

ArenaOptions test_options(uint64_t max_bytes = UINT64_MAX) {
  ArenaOptions options;
  options.key_prefix = "tshm_cpp_arena";
  options.max_bytes = max_bytes;
  return options;
}

}  // namespace

TEST(Arena, LeasesAreAlignedDisjointAndReturnToTheRegion) {
  Arena arena(test_options());
  const ArenaRegion region = arena.add_region(1 << 20);
  EXPECT_EQ(region.key, "/" + region.name);
  EXPECT_TRUE(exists(region.key));
  std::vector<Lease> leases;
  std::set<std::pair<uint64_t, uint64_t>> spans;
  for (uint64_t bytes : {1, 63, 64, 65, 1000, 4096}) {
    Lease lease = arena.lease(bytes);
    EXPECT_EQ(lease.offset() % 64, 0u);
    EXPECT_GE(lease.size(), bytes);
    EXPECT_EQ(lease.name(), region.name);
    for (const auto& [begin, end] : spans) EXPECT_TRUE(lease.offset() >= end || lease.offset() + lease.size() <= begin);
    spans.insert({lease.offset(), lease.offset() + lease.size()});
    leases.push_back(std::move(lease));
  }
  EXPECT_EQ(arena.lease_count(), 6u);
  leases.clear();
  EXPECT_EQ(arena.leased_bytes(), 0u);
  // Everything was merged back into one free block: the whole region leases again.
  EXPECT_EQ(arena.lease(1 << 20).offset(), 0u);
}

TEST(Arena, FullArenaSaysHowMuchIsLeasedAndGrowsUpToItsLimit) {
  Arena arena(test_options(2 << 20));
  arena.add_region(1 << 20);
  Lease a = arena.lease(768 << 10);
  EXPECT_FALSE(arena.try_lease(512 << 10).has_value());
  try {
    (void)arena.lease(512 << 10);
    FAIL();
  } catch (const SharedMemoryError& e) {
    EXPECT_EQ(std::string(e.what()).rfind("unable to lease shared memory: no region has room for 524288 bytes: "
                                          "786432 bytes leased in 1 lease(s), of 1048576 bytes in 1 region(s)",
                                          0),
              0u)
        << e.what();
  }
  arena.add_region(1 << 20);
  Lease b = arena.lease(512 << 10);
  EXPECT_NE(b.name(), a.name());
  try {
    arena.add_region(1);
    FAIL();
  } catch (const SharedMemoryError& e) {
    EXPECT_NE(std::string(e.what()).find("the limit is 2097152 bytes"), std::string::npos) << e.what();
  }
}

TEST(Arena, CloseUnlinksRegionsWhileLeasesKeepTheirMemory) {
  std::string key;
  {
    Arena arena(test_options());
    key = arena.add_region(4096).key;
    Lease lease = arena.lease(128);
    std::memset(lease.data(), 7, 128);
    arena.close();
    EXPECT_FALSE(exists(key));
    EXPECT_EQ(lease.data()[127], std::byte{7});  // still mapped
    EXPECT_THROW((void)arena.lease(64), SharedMemoryError);
    arena.close();  // idempotent
  }
  EXPECT_FALSE(exists(key));
}

TEST(Arena, RemoveRegionOnlyWhenNothingIsLeasedFromIt) {
  Arena arena(test_options());
  const ArenaRegion region = arena.add_region(4096);
  {
    Lease lease = arena.lease(64);
    EXPECT_FALSE(arena.remove_region(region.name));
  }
  EXPECT_TRUE(arena.remove_region(region.name));
  EXPECT_FALSE(exists(region.key));
  EXPECT_EQ(arena.capacity(), 0u);
  EXPECT_FALSE(arena.try_lease(64).has_value());
}

TEST(Arena, ThreadsLeaseAndReleaseWithoutOverlap) {
  Arena arena(test_options());
  arena.add_region(4 << 20);
  std::atomic<int> overlaps{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 2000; ++i) {
        std::optional<Lease> lease = arena.try_lease(64 * (1 + (i + t) % 16));
        if (!lease) continue;
        std::memset(lease->data(), t, lease->size());
        for (uint64_t j = 0; j < lease->size(); ++j)
          if (lease->data()[j] != std::byte(t)) ++overlaps;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_EQ(arena.leased_bytes(), 0u);
  EXPECT_EQ(arena.lease(4 << 20).offset(), 0u);
}

TEST(Arena, KeysAreUniqueToTheProcessAndTheArena) {
  Arena first(test_options()), second(test_options());
  const std::string a = first.add_region(4096).name, b = second.add_region(4096).name;
  EXPECT_NE(a, b);
  EXPECT_NE(a.find("_" + std::to_string(::getpid()) + "_"), std::string::npos) << a;
}
