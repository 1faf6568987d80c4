#include <gtest/gtest.h>

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
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

// The inode of a region while it has its name, to find its mappings by.
ino_t inode_of(const ArenaRegion& region) {
  struct stat st {};
  EXPECT_EQ(::stat(("/dev/shm" + region.key).c_str(), &st), 0);
  return st.st_ino;
}

// How many of this process's mappings are of the file with `inode` in /dev/shm
// (the path shown is the one it had when mapped: not the key, for a region
// created unnamed and linked later).
int mappings_of(ino_t inode) {
  std::ifstream maps("/proc/self/maps");
  int count = 0;
  for (std::string line; std::getline(maps, line);) {
    std::istringstream fields(line);
    std::string range, perms, offset, device, path;
    unsigned long long ino = 0;
    fields >> range >> perms >> offset >> device >> ino >> path;
    count += ino == inode && path.rfind("/dev/shm/", 0) == 0;
  }
  return count;
}

}  // namespace

TEST(Arena, LeasesAreAlignedDisjointAndReturnToTheRegion) {
  Arena arena(test_options());
  const ArenaRegion region = arena.add_region(1 << 20);
  arena.commit_region(region.name);
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
  arena.commit_region(arena.add_region(1 << 20).name);
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
  arena.commit_region(arena.add_region(1 << 20).name);
  Lease b = arena.lease(512 << 10);
  EXPECT_NE(b.name(), a.name());
  try {
    arena.add_region(1);
    FAIL();
  } catch (const SharedMemoryError& e) {
    EXPECT_NE(std::string(e.what()).find("the limit is 2097152 bytes"), std::string::npos) << e.what();
  }
}

TEST(Arena, RefusalsSayWhyInTheirReason) {
  Arena arena(test_options(1 << 20));
  arena.commit_region(arena.add_region(1 << 20).name);
  try {
    arena.add_region(1);
    FAIL();
  } catch (const SharedMemoryError& e) {
    EXPECT_EQ(e.reason(), Reason::limit_reached) << e.what();
  }
  arena.close();
  try {
    (void)arena.try_lease(64);
    FAIL();
  } catch (const SharedMemoryError& e) {
    EXPECT_EQ(e.reason(), Reason::closed) << e.what();
  }
  try {
    arena.add_region(64);
    FAIL();
  } catch (const SharedMemoryError& e) {
    EXPECT_EQ(e.reason(), Reason::closed) << e.what();
  }
}

TEST(Arena, RetiredRegionLeasesNothingAgainAndGoesWithItsLastLease) {
  Arena arena(test_options());
  const ArenaRegion region = arena.add_region(4096);
  arena.commit_region(region.name);
  Lease abandoned = arena.lease(1024);
  Lease other = arena.lease(1024);
  EXPECT_TRUE(arena.retire_region(region.name));
  EXPECT_FALSE(arena.retire_region("no such region"));
  EXPECT_EQ(arena.region_count(), 0u);
  EXPECT_TRUE(arena.regions().empty());
  ASSERT_EQ(arena.retired_regions().size(), 1u);
  EXPECT_EQ(arena.retired_regions()[0].name, region.name);
  // The abandoned lease's bytes come back to nobody, though the region has room.
  abandoned.release();
  EXPECT_FALSE(arena.try_lease(64).has_value());
  EXPECT_THROW(arena.commit_region(region.name), SharedMemoryError);
  std::memset(other.data(), 3, 1024);  // a live lease stays usable
  EXPECT_FALSE(arena.remove_region(region.name));
  other.release();
  EXPECT_TRUE(arena.remove_region(region.name));
  EXPECT_FALSE(exists(region.key));
  EXPECT_TRUE(arena.retired_regions().empty());
  EXPECT_EQ(arena.capacity(), 0u);
}

TEST(Arena, CloseUnlinksRegionsWhileLeasesKeepTheirMemory) {
  std::string key;
  {
    Arena arena(test_options());
    const ArenaRegion region = arena.add_region(4096);
    arena.commit_region(region.name);
    key = region.key;
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
  arena.commit_region(region.name);
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
  arena.commit_region(arena.add_region(4 << 20).name);
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

TEST(Arena, PendingRegionIsNotLeasableUntilCommitted) {
  Arena arena(test_options());
  const ArenaRegion region = arena.add_region(4096);
  EXPECT_TRUE(exists(region.key));
  EXPECT_EQ(arena.capacity(), 4096u);  // claimed at once, so the limit holds
  EXPECT_FALSE(arena.try_lease(64).has_value());
  EXPECT_TRUE(arena.regions().empty());
  ASSERT_EQ(arena.pending_regions().size(), 1u);
  EXPECT_EQ(arena.pending_regions()[0].name, region.name);
  EXPECT_EQ(arena.region_count(), 0u);
  arena.commit_region(region.name);
  EXPECT_EQ(arena.region_count(), 1u);
  EXPECT_TRUE(arena.pending_regions().empty());
  ASSERT_EQ(arena.regions().size(), 1u);
  EXPECT_EQ(arena.lease(64).name(), region.name);
  try {
    arena.commit_region(region.name);  // committed already: not pending
    FAIL();
  } catch (const SharedMemoryError& e) {
    EXPECT_EQ(std::string(e.what()),
              "unable to lease shared memory: the arena has no pending region named '" + region.name + "'");
  }
  EXPECT_THROW(arena.commit_region("no_such_region"), SharedMemoryError);
}

// Issue 16, faults 2 and 3: while one thread grows the arena (add_region, then
// a registration that takes a while), others leasing must not land in the new
// region, and a failed registration can always remove it.
TEST(Arena, GrowthUnderLoadLeasesNothingFromARegionBeforeItIsCommitted) {
  Arena arena(test_options());
  arena.commit_region(arena.add_region(4096).name);
  std::atomic<bool> stop{false};
  std::mutex names_mutex;
  std::set<std::string> leased_from;
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&] {
      while (!stop) {
        std::optional<Lease> lease = arena.try_lease(3000);  // one fits in the first region at a time
        if (!lease) continue;
        std::lock_guard lock(names_mutex);
        leased_from.insert(lease->name());
      }
    });
  }
  const ArenaRegion failed = arena.add_region(1 << 20);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the "registration"
  {
    std::lock_guard lock(names_mutex);
    EXPECT_EQ(leased_from.count(failed.name), 0u);
  }
  EXPECT_TRUE(arena.remove_region(failed.name));  // its registration failed: nobody holds a lease in it
  const ArenaRegion grown = arena.add_region(1 << 20);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  {
    std::lock_guard lock(names_mutex);
    EXPECT_EQ(leased_from.count(grown.name), 0u);
  }
  arena.commit_region(grown.name);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (bool seen = false; !seen && std::chrono::steady_clock::now() < deadline;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    std::lock_guard lock(names_mutex);
    seen = leased_from.count(grown.name) != 0;
  }
  stop = true;
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(leased_from.count(grown.name), 1u);  // committed: now it serves leases
  EXPECT_EQ(arena.leased_bytes(), 0u);
}

TEST(Arena, HighWaterIsTheMostEverLeasedAtOnce) {
  Arena arena(test_options());
  arena.commit_region(arena.add_region(1 << 20).name);
  {
    Lease a = arena.lease(1000), b = arena.lease(3000);
    EXPECT_EQ(arena.high_water_bytes(), 1024u + 3008u);
  }
  Lease c = arena.lease(64);
  EXPECT_EQ(arena.leased_bytes(), 64u);
  EXPECT_EQ(arena.high_water_bytes(), 1024u + 3008u);
}

// Issue 16, fault 6: close() lets go of the regions, so one is unmapped as
// soon as its last lease is released, not when the arena object goes.
TEST(Arena, CloseUnmapsEachRegionOnceItsLeasesAreGone) {
  Arena arena(test_options());
  const ArenaRegion idle = arena.add_region(1 << 20), busy = arena.add_region(1 << 20);
  arena.commit_region(idle.name);
  arena.commit_region(busy.name);
  Lease other = arena.lease(1 << 20);  // fills the first committed region
  Lease lease = arena.lease(4096);
  ASSERT_NE(other.name(), lease.name());
  other.release();
  const ino_t held = inode_of(lease.name() == idle.name ? idle : busy),
              free = inode_of(lease.name() == idle.name ? busy : idle);
  EXPECT_EQ(mappings_of(held), 1);
  EXPECT_EQ(mappings_of(free), 1);
  arena.close();
  EXPECT_EQ(mappings_of(free), 0);  // no live lease: unmapped by close()
  EXPECT_EQ(mappings_of(held), 1);  // the lease keeps it
  std::memset(lease.data(), 1, 4096);
  EXPECT_TRUE(arena.regions().empty());
  EXPECT_EQ(arena.capacity(), 0u);
  { Lease gone = std::move(lease); }
  EXPECT_EQ(mappings_of(held), 0);
  arena.close();
}

// A close() while add_region is creating a region: the region is not left behind.
TEST(Arena, RegionAddedDuringCloseIsRemoved) {
  ArenaOptions options = test_options();
  options.region_options.prefault = true;  // creation takes a while: close() lands in the middle
  for (int round = 0; round < 3; ++round) {
    Arena arena(options);
    std::atomic<bool> started{false};
    std::string key;
    std::thread grower([&] {
      started = true;
      try {
        key = arena.add_region(64 << 20).key;
      } catch (const SharedMemoryError& e) {
        EXPECT_NE(std::string(e.what()).find("the arena is closed"), std::string::npos) << e.what();
      }
    });
    while (!started) std::this_thread::yield();
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    arena.close();
    grower.join();
    // Either add_region finished first (then close() removed its region) or it
    // saw the close and raised; either way nothing of this arena is left.
    if (!key.empty()) {
      EXPECT_FALSE(exists(key)) << key;
    }
    EXPECT_TRUE(arena.pending_regions().empty());
    for (const auto& entry : std::filesystem::directory_iterator("/dev/shm")) {
      EXPECT_EQ(entry.path().filename().string().rfind(options.key_prefix + "_" + std::to_string(::getpid()), 0),
                std::string::npos)
          << entry.path();
    }
  }
}

// The AddressSanitizers of GCC 12 and of Debian's clang 14 install no fork
// handlers (LLVM added them in 2023, llvm-project pull request 75290): a child
// forked while a parent thread was inside ASan's allocator can hang in its
// first malloc or free, in ASan's lock, not ours. Under ASan the forked
// children below therefore skip the calls that allocate (throwing) or free
// (destroying the arena); the plain build runs them all.
#if defined(TRITONSHM_TEST_ASAN)
constexpr bool kSanitizerAllocatorIsForkUnsafe = true;
#else
constexpr bool kSanitizerAllocatorIsForkUnsafe = false;
#endif

// Issue 16, fault 1: a child made by fork() owns nothing of the parent's arena.
// Its calls that would change the arena throw; release, close() and the
// destructor do nothing, never wait for the arena's lock (a parent thread may
// have held it at the fork) and never unlink the parent's regions.
TEST(Arena, ForkedChildNeverLocksNorUnlinksTheParentsArena) {
  auto arena = std::make_unique<Arena>(test_options());
  const ArenaRegion kept = arena->add_region(1 << 20);
  arena->commit_region(kept.name);
  std::optional<Lease> inherited = arena->lease(4096);
  const std::string kept_path = "/dev/shm" + kept.key;  // made here: a child under ASan must not allocate
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  threads.emplace_back([&] {  // grows and shrinks: add_region holds the lock twice per call
    while (!stop) {
      const ArenaRegion r = arena->add_region(4096);
      arena->remove_region(r.name);
    }
  });
  threads.emplace_back([&] {  // leases and releases: the lock is held most of the time
    while (!stop) (void)arena->try_lease(64);
  });
  constexpr int kChildren = 200;
  std::vector<pid_t> children;
  for (int i = 0; i < kChildren; ++i) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      int failures = 0;
      failures += arena->owned_here() ? 1 : 0;
      if (kSanitizerAllocatorIsForkUnsafe) {
        // Only the calls that must not lock, none of which allocates or frees.
        inherited->release();
        arena->close();
        ::_exit(failures + (::access(kept_path.c_str(), F_OK) == 0 ? 0 : 16));
      }
      try {
        (void)arena->try_lease(64);
        failures += 2;
      } catch (const SharedMemoryError& e) {
        failures += std::string(e.what()).find("this is a forked child (pid " + std::to_string(::getpid()) + ")") ==
                            std::string::npos
                        ? 4
                        : 0;
      }
      try {
        (void)arena->add_region(4096);  // would collide with the parent's next key
        failures += 8;
      } catch (const SharedMemoryError&) {
      }
      inherited->release();
      arena->close();
      arena.reset();
      failures += ::access(kept_path.c_str(), F_OK) == 0 ? 0 : 16;
      ::_exit(failures);
    }
    ASSERT_GT(pid, 0);
    children.push_back(pid);
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  int hung = 0, failed = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (pid_t pid : children) {
    int status = 0;
    pid_t done = 0;
    while ((done = ::waitpid(pid, &status, WNOHANG)) == 0 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (done == 0) {
      ++hung;
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      ++failed;
      if (failed == 1) ADD_FAILURE() << "a child failed with status " << status;
    }
  }
  stop = true;
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(hung, 0) << "children deadlocked on the arena's lock";
  EXPECT_EQ(failed, 0);
  EXPECT_TRUE(arena->owned_here());
  EXPECT_TRUE(exists(kept.key));
  EXPECT_EQ(arena->lease_count(), 1u);  // the children's releases did not touch the parent's count
  inherited.reset();
  EXPECT_EQ(arena->lease_count(), 0u);
}
