#include <gtest/gtest.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cstddef>
#include <cstdio>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <thread>
#include <vector>

#include "test_support.hpp"
#include "tritonshm/region.hpp"
#include "tritonshm/tensor_codec.hpp"

using namespace tritonshm;
using tritonshm::testing::exists;
using tritonshm::testing::KeyJar;

TEST(Region, CreateSizesMapsAndIsPrivate) {
  KeyJar jar;
  const std::string key = jar.make();
  auto region = Region::create(key, 4096);
  EXPECT_EQ(region->size(), 4096u);
  EXPECT_TRUE(region->owns());
  struct stat st {};
  ASSERT_EQ(::stat(("/dev/shm" + key).c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 4096);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_TRUE(region->remove_if_owned());
  EXPECT_FALSE(exists(key));
}

TEST(Region, CreateFailsWithEexistWhenKeyExists) {
  KeyJar jar;
  const std::string key = jar.make();
  auto region = Region::create(key, 64);
  try {
    Region::create(key, 64);
    FAIL();
  } catch (const SharedMemoryError& e) {
    EXPECT_EQ(e.os_error(), EEXIST);
    EXPECT_NE(std::string(e.what()).find(key), std::string::npos);
  }
  region->remove_if_owned();
}

TEST(Region, OpenSeesCreatorsBytes) {
  KeyJar jar;
  const std::string key = jar.make();
  auto writer = Region::create(key, 64);
  const int32_t values[4] = {1, 2, 3, 4};
  writer->write(8, values, sizeof values);
  auto reader = Region::open(key.substr(1));  // without the slash
  EXPECT_FALSE(reader->owns());
  auto span = reader->as<int32_t>(8, 4);
  EXPECT_EQ(std::vector<int32_t>(span.begin(), span.end()), (std::vector<int32_t>{1, 2, 3, 4}));
  writer->remove_if_owned();
}

TEST(Region, WriteThatDoesNotFitChangesNothing) {
  KeyJar jar;
  auto region = Region::create(jar.make(), 32);
  std::vector<std::byte> ones(32, std::byte{1});
  region->write(0, ones.data(), ones.size());
  std::vector<std::byte> a(20, std::byte{7}), b(20, std::byte{9});
  const std::span<const std::byte> parts[] = {a, b};
  EXPECT_THROW(region->write(0, parts), SharedMemoryError);
  EXPECT_THROW(region->write(UINT64_MAX - 3, a.data(), 8), SharedMemoryError);
  EXPECT_THROW(region->write(33, a.data(), 0), SharedMemoryError);
  for (std::byte x : region->bytes(0, 32)) EXPECT_EQ(x, std::byte{1});
  region->remove_if_owned();
}

TEST(Region, TypedAccessChecksBoundsAndAlignment) {
  KeyJar jar;
  auto region = Region::create(jar.make(), 64);
  EXPECT_EQ(region->as<double>(0, 8).size(), 8u);
  EXPECT_THROW(region->as<double>(8, 8), SharedMemoryError);
  EXPECT_THROW(region->as<double>(4, 1), SharedMemoryError);  // misaligned
  EXPECT_THROW(region->as<double>(0, UINT64_MAX / 4), SharedMemoryError);
  region->remove_if_owned();
}

TEST(Region, MappingOutlivesRegionAndUnlink) {
  KeyJar jar;
  std::shared_ptr<const detail::Mapping> mapping;
  {
    auto region = Region::create(jar.make(), 4096);
    std::memset(region->data(), 0x5A, 4096);
    mapping = region->mapping();
    region->remove_if_owned();
  }
  EXPECT_EQ(mapping->data()[4095], std::byte{0x5A});
}

TEST(Region, ShrunkObjectRaisesInsteadOfSigbus) {
  KeyJar jar;
  const std::string key = jar.make();
  auto region = Region::create(key, 1 << 16);
  ASSERT_EQ(::truncate(("/dev/shm" + key).c_str(), 4096), 0);  // another process shrinks it
  std::vector<std::byte> data(8192);
  try {
    region->write(0, data.data(), data.size());
    FAIL();
  } catch (const SharedMemoryError& e) {
    EXPECT_NE(std::string(e.what()).find("shrunk to 4096 bytes"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(region->write(0, data.data(), 4096));  // what is still backed stays usable
  region->remove_if_owned();
}

TEST(Region, ReserveFailsCleanlyWhenTooLarge) {
  KeyJar jar;
  const std::string key = jar.make();
  try {
    Region::create(key, uint64_t{1} << 62);
    FAIL();
  } catch (const SharedMemoryError& e) {
    EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << e.what();
    EXPECT_NE(e.os_error(), 0);
  }
  EXPECT_FALSE(exists(key));
}

TEST(Region, ConcurrentCreatorsOfOneKeyGetOneWinner) {
  KeyJar jar;
  const std::string key = jar.make();
  std::atomic<int> won{0}, lost{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      try {
        auto r = Region::create(key, 1 << 20);
        ++won;
      } catch (const SharedMemoryError& e) {
        if (e.os_error() == EEXIST) ++lost;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(won.load(), 1);
  EXPECT_EQ(lost.load(), 7);
  EXPECT_EQ(Region::open(key)->size(), 1u << 20);  // never seen at size 0
}

TEST(Region, ShrinkDuringLargeCopiesRaisesInsteadOfSigbus) {
  KeyJar jar;
  const std::string key = jar.make();
  const std::size_t size = 64 << 20;  // split across threads: every copying thread must be guarded
  auto region = Region::create(key, size);
  std::vector<std::byte> data(size, std::byte{3});
  std::atomic<bool> stop{false};
  std::thread shrinker([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    ::truncate(("/dev/shm" + key).c_str(), 4096);
    stop = true;
  });
  bool raised = false;
  for (int i = 0; i < 10000 && !raised; ++i) {
    try {
      region->write(0, data.data(), data.size());
    } catch (const SharedMemoryError& e) {
      raised = std::string(e.what()).find("shrunk to 4096") != std::string::npos;
    }
    if (stop && !raised) {  // the truncate landed between copies: the next copy must raise
      EXPECT_THROW(region->write(0, data.data(), data.size()), SharedMemoryError);
      raised = true;
    }
  }
  shrinker.join();
  EXPECT_TRUE(raised);
  region->remove_if_owned();
}

TEST(RegionDeathTest, SigbusOutsideOurCopiesStillKillsTheProcess) {
  // Our handler must not swallow faults that are not ours: it passes them to
  // the handler that was there before. That is the default action (death by
  // SIGBUS), or under AddressSanitizer, ASan's handler, which reports and exits.
#if defined(TRITONSHM_TEST_ASAN)
  const auto died_as_before = [](int status) { return WIFEXITED(status) && WEXITSTATUS(status) != 0; };
  const char* expected_message = "BUS";
#else
  const auto died_as_before = ::testing::KilledBySignal(SIGBUS);
  const char* expected_message = "";
#endif
  EXPECT_EXIT(
      {
        KeyJar jar;
        const std::string key = jar.make();
        auto region = Region::create(key, 1 << 16);
        region->write(0, "x", 1);  // installs our handler
        ::truncate(("/dev/shm" + key).c_str(), 0);
        region->remove_if_owned();
        volatile std::byte* p = region->data() + 8192;
        *p = std::byte{1};  // plain store past the end: SIGBUS, not ours to catch
      },
      died_as_before, expected_message);
}

// The BYTES decoder reads lengths straight from the mapping: a shrink before
// or during the decode must be an exception, not SIGBUS.
TEST(Region, BytesDecodeOfAShrunkRegionRaisesInsteadOfSigbus) {
  KeyJar jar;
  const std::string key = jar.make();
  const std::size_t elements = 1 << 20;  // 1 Mi elements of 4 bytes each: 8 MiB
  auto region = Region::create(key, elements * 8);
  std::vector<std::string_view> words(elements, std::string_view("abcd"));
  const std::vector<std::byte> encoded = serialize_bytes(words);
  region->write(0, encoded.data(), encoded.size());
  ASSERT_EQ(region->read_bytes(0, elements).size(), elements);
  ASSERT_EQ(::truncate(("/dev/shm" + key).c_str(), 4096), 0);
  try {
    (void)region->read_bytes(0, elements);
    FAIL() << "decoding past the shrunk end must throw";
  } catch (const SharedMemoryError& e) {
    EXPECT_EQ(std::string(e.what()).rfind("unable to read the shared memory region '" + key +
                                              "': the object was "
                                              "shrunk to 4096 bytes",
                                          0),
              0u)
        << e.what();
  }
  region->remove_if_owned();
}

// A fault in the source (a view of another region that its owner shrank) is
// not this region's problem, and the message says so.
TEST(Region, FaultInTheSourceIsToldApartFromAShrunkRegion) {
  KeyJar jar;
  const std::string source_key = jar.make("source"), target_key = jar.make("target");
  auto source = Region::create(source_key, 1 << 20);
  auto target = Region::create(target_key, 1 << 20);
  ASSERT_EQ(::truncate(("/dev/shm" + source_key).c_str(), 4096), 0);
  try {
    target->write(0, source->data(), 1 << 20);
    FAIL() << "copying from unbacked pages must throw";
  } catch (const SharedMemoryError& e) {
    const std::string what = e.what();
    EXPECT_EQ(what.rfind("unable to set the shared memory region '" + target_key + "': the source data stopped", 0), 0u)
        << what;
    EXPECT_EQ(what.find("shrunk"), std::string::npos) << what;
  }
  std::vector<std::byte> out(1 << 20);
  ASSERT_EQ(::truncate(("/dev/shm" + target_key).c_str(), 4096), 0);
  try {
    target->read(0, out.data(), out.size());
    FAIL() << "reading unbacked pages must throw";
  } catch (const SharedMemoryError& e) {
    EXPECT_NE(std::string(e.what()).find("shrunk to 4096 bytes"), std::string::npos) << e.what();
  }
  source->remove_if_owned();
  target->remove_if_owned();
}

// The object is sized and its pages reserved before the key exists, so no
// other process ever sees it smaller; prefaulting after changes no byte.
TEST(Region, PrefaultedRegionAppearsWholeUnderItsKey) {
  KeyJar jar;
  const std::string key = jar.make();
  RegionOptions options;
  options.prefault = true;
  std::atomic<bool> done{false};
  std::atomic<uint64_t> smallest_seen{UINT64_MAX};
  std::thread watcher([&] {
    while (!done) {
      struct stat st {};
      if (::stat(("/dev/shm" + key).c_str(), &st) == 0) {
        uint64_t seen = smallest_seen;
        while (static_cast<uint64_t>(st.st_size) < seen && !smallest_seen.compare_exchange_weak(seen, st.st_size)) {
        }
      }
    }
  });
  auto region = Region::create(key, 64 << 20, options);
  done = true;
  watcher.join();
  EXPECT_EQ(region->size(), uint64_t{64} << 20);
  EXPECT_TRUE(smallest_seen == UINT64_MAX || smallest_seen == (uint64_t{64} << 20));
  region->remove_if_owned();
}

// /proc/PID/maps (and lsof, pmap) show a live region under its key, not as
// the deleted file it was made from before it had a name.
TEST(Region, LiveRegionShowsUnderItsKeyInProcMaps) {
  KeyJar jar;
  for (const bool prefault : {false, true}) {
    const std::string key = jar.make(prefault ? "maps_prefaulted" : "maps");
    RegionOptions options;
    options.prefault = prefault;
    auto region = Region::create(key, 1 << 16, options);
    region->write(0, "x", 1);
    std::ifstream maps("/proc/self/maps");
    std::string line, ours;
    const auto begin = reinterpret_cast<std::uintptr_t>(region->data());
    while (std::getline(maps, line)) {
      if (std::stoull(line.substr(0, line.find('-')), nullptr, 16) == begin) ours = line;
    }
    EXPECT_NE(ours.find("/dev/shm" + key), std::string::npos) << ours;
    EXPECT_EQ(ours.find("(deleted)"), std::string::npos) << ours;
    // Its descriptor too (lsof lists both).
    int descriptors = 0;
    for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
      struct stat st {};
      if (::stat(entry.path().c_str(), &st) != 0 || st.st_ino != region->identity().inode) continue;
      ++descriptors;
      EXPECT_EQ(std::filesystem::read_symlink(entry.path()).string(), "/dev/shm" + key);
    }
    EXPECT_EQ(descriptors, 1);
    region->remove_if_owned();
  }
}

namespace {

// The bytes of the mapping that starts at `data` for which this process has
// pages mapped (its Rss in /proc/self/smaps).
uint64_t resident_bytes(const void* data) {
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  bool ours = false;
  while (std::getline(smaps, line)) {
    const auto dash = line.find('-');
    if (dash != std::string::npos && line.find(' ') > dash && std::isxdigit(static_cast<unsigned char>(line[0]))) {
      ours = std::stoull(line.substr(0, dash), nullptr, 16) == reinterpret_cast<std::uintptr_t>(data);
    } else if (ours && line.rfind("Rss:", 0) == 0) {
      return std::stoull(line.substr(4)) * 1024;
    }
  }
  return 0;
}

long minor_faults() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_minflt;
}

// Creates a prefaulted region of 64 MiB; true if every page of the mapping
// it keeps is mapped in, by one fault each (not two: the process's own
// faults meanwhile are a handful).
bool prefault_maps_each_page_in_once(KeyJar& jar) {
  const std::string key = jar.make("prefault");
  const uint64_t size = 64 << 20, pages = size / static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  RegionOptions options;
  options.prefault = true;
  const long before = minor_faults();
  auto region = Region::create(key, size, options);
  const auto faults = static_cast<uint64_t>(minor_faults() - before);
  const uint64_t resident = resident_bytes(region->data());
  region->remove_if_owned();
  if (resident != size || faults < pages || faults >= pages + 256) {
    std::fprintf(stderr, "resident %llu of %llu bytes, %llu faults for %llu pages\n",
                 static_cast<unsigned long long>(resident), static_cast<unsigned long long>(size),
                 static_cast<unsigned long long>(faults), static_cast<unsigned long long>(pages));
    return false;
  }
  return true;
}

// Makes madvise(MADV_POPULATE_WRITE) fail with EINVAL, as kernels before
// 5.14 do, for this process from now on (seccomp).
bool refuse_madv_populate_write() {
#if defined(__x86_64__)
  constexpr uint32_t arch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
  constexpr uint32_t arch = AUDIT_ARCH_AARCH64;
#else
  return false;
#endif
  constexpr uint32_t populate_write = 23;  // MADV_POPULATE_WRITE, which older headers lack
  sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, arch, 0, 5),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_madvise, 0, 3),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, args[2])),  // its low half: the advice
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, populate_write, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EINVAL),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  sock_fprog program{static_cast<unsigned short>(sizeof filter / sizeof filter[0]), filter};
  return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 && prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) == 0;
}

}  // namespace

TEST(Region, PrefaultMapsInEachPageOfTheMappingInUseOnce) {
  KeyJar jar;
  EXPECT_TRUE(prefault_maps_each_page_in_once(jar));
}

TEST(RegionDeathTest, PrefaultWithoutMadvPopulateWriteMapsInEachPageOfTheMappingInUseOnce) {
  EXPECT_EXIT(
      {
        KeyJar jar;
        if (!refuse_madv_populate_write()) std::exit(2);
        void* probe = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        const bool refused = madvise(probe, 4096, 23) != 0 && errno == EINVAL;
        std::exit(refused && prefault_maps_each_page_in_once(jar) ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
}
