// The drop-in shm_utils.h: the five calls of Triton's C++ client library, with
// the standalone Error here (tests/python/test_cpp_shm_utils.py compiles them
// against a stand-in of the client library's common.h too). Each place where
// ours differs from the original on purpose runs the original's behaviour too
// (original_shm_utils.hpp) and shows that it fails the same check.
#include "shm_utils.h"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>

#include "original_shm_utils.hpp"
#include "test_support.hpp"
#include "tritonshm/error.hpp"
#include "tritonshm/region.hpp"

namespace tc = triton::client;
using tritonshm::Region;
using tritonshm::SharedMemoryError;
using tritonshm::testing::exists;
using tritonshm::testing::KeyJar;

namespace {

uint64_t object_size(const std::string& key) {
  struct stat st {};
  return ::stat(("/dev/shm" + key).c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

int open_descriptors() {
  int count = 0;
  if (DIR* dir = ::opendir("/proc/self/fd")) {
    while (::readdir(dir) != nullptr) ++count;
    ::closedir(dir);
  }
  return count;
}

bool is_open(int fd) { return fd >= 0 && ::fcntl(fd, F_GETFD) != -1; }

bool starts_with(const std::string& text, const std::string& prefix) { return text.rfind(prefix, 0) == 0; }

// How a process dies of a SIGBUS nobody catches: the signal, or under
// AddressSanitizer, ASan's report and a failed exit.
bool died_of_sigbus(int status) {
#if defined(TRITONSHM_TEST_ASAN)  // test_support.hpp: gcc and clang alike
  if (WIFEXITED(status) && WEXITSTATUS(status) != 0) return true;
#endif
  return WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS;
}

}  // namespace

// create, map, close, write, read, unmap, unlink: the order Triton's
// simple_http_shm_client.cc calls them in.
TEST(ShmUtils, RoundTripInTheOrderOfSimpleHttpShmClient) {
  KeyJar jar;
  const std::string key = jar.make();
  const size_t input_byte_size = 64;
  int shm_fd = -1;
  int* input0_shm = nullptr;
  tc::Error err = tc::CreateSharedMemoryRegion(key, input_byte_size * 2, &shm_fd);
  ASSERT_TRUE(err.IsOk()) << err;
  EXPECT_TRUE(err.Message().empty());
  err = tc::MapSharedMemory(shm_fd, 0, input_byte_size * 2, reinterpret_cast<void**>(&input0_shm));
  ASSERT_TRUE(err.IsOk()) << err;
  // Our descriptors are close-on-exec (the original's are inherited by exec'd programs).
  EXPECT_TRUE(::fcntl(shm_fd, F_GETFD) & FD_CLOEXEC);
  ASSERT_TRUE(tc::CloseSharedMemory(shm_fd).IsOk());
  int* input1_shm = input0_shm + 16;
  for (int i = 0; i < 16; ++i) input0_shm[i] = i, input1_shm[i] = 1;

  auto reader = Region::open(key);  // another reader of the same key sees the bytes
  int32_t read_back[32];
  reader->read(0, read_back, sizeof read_back);
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(read_back[i], i);
    EXPECT_EQ(read_back[16 + i], 1);
  }
  EXPECT_EQ(object_size(key), input_byte_size * 2);

  EXPECT_TRUE(tc::UnmapSharedMemory(input0_shm, input_byte_size * 2).IsOk());
  EXPECT_TRUE(tc::UnlinkSharedMemoryRegion(key).IsOk());
  EXPECT_FALSE(exists(key));
}

TEST(ShmUtils, CreateOpensAnExistingRegionAsTheOriginalDoes) {
  KeyJar jar;
  const std::string key = jar.make();
  auto first = Region::create(key, 4096);
  first->write(0, "shared", 6);
  int fd = -1;
  void* address = nullptr;
  ASSERT_TRUE(tc::CreateSharedMemoryRegion(key.substr(1), 4096, &fd).IsOk());  // with or without the '/'
  ASSERT_TRUE(tc::MapSharedMemory(fd, 0, 4096, &address).IsOk());
  EXPECT_EQ(std::memcmp(address, "shared", 6), 0);
  EXPECT_TRUE(tc::CloseSharedMemory(fd).IsOk());
  EXPECT_TRUE(tc::UnmapSharedMemory(address, 4096).IsOk());
}

TEST(ShmUtils, CreateGrowsASmallerRegion) {
  KeyJar jar;
  const std::string key = jar.make();
  auto first = Region::create(key, 4096);
  int fd = -1;
  ASSERT_TRUE(tc::CreateSharedMemoryRegion(key, 1 << 20, &fd).IsOk());
  EXPECT_EQ(object_size(key), 1u << 20);
  EXPECT_TRUE(tc::CloseSharedMemory(fd).IsOk());
}

TEST(ShmUtils, MessagesBeginWithTheOriginalTextsAndNameTheOsError) {
  KeyJar jar;
  int fd = 7;
  std::string message = tc::CreateSharedMemoryRegion("/bad/key", 64, &fd).Message();
  EXPECT_TRUE(starts_with(message, "unable to get shared memory descriptor for shared-memory key '/bad/key': "))
      << message;
  EXPECT_EQ(fd, -1);

  const std::string key = jar.make();
  message = tc::CreateSharedMemoryRegion(key, SIZE_MAX, &fd).Message();
  EXPECT_TRUE(starts_with(message, "unable to initialize shared-memory key '" + key +
                                       "' to requested size: " + std::to_string(SIZE_MAX) + " bytes: "))
      << message;

  void* address = nullptr;
  message = tc::MapSharedMemory(-1, 0, 64, &address).Message();
  EXPECT_EQ(message,
            "unable to process address space or shared-memory descriptor: -1: Bad file descriptor (errno 9); the "
            "descriptor is not open");

  message = tc::CloseSharedMemory(-1).Message();
  EXPECT_EQ(message,
            "unable to close shared-memory descriptor: -1: Bad file descriptor (errno 9); it is not open "
            "(closed twice?)");

  message = tc::UnlinkSharedMemoryRegion(key).Message();
  EXPECT_EQ(message, "unable to unlink shared memory for key '" + key +
                         "': No such file or directory (errno 2); no region has this key (unlinked already?)");

  int not_page_aligned = 0;
  message = tc::UnmapSharedMemory(&not_page_aligned, 64).Message();
  EXPECT_TRUE(starts_with(message, "unable to munmap shared memory region: Invalid argument (errno 22)")) << message;
}

TEST(ShmUtils, SecondUnlinkIsAnErrorAsInTheOriginal) {
  KeyJar jar;
  const std::string key = jar.make();
  int fd = -1;
  ASSERT_TRUE(tc::CreateSharedMemoryRegion(key, 64, &fd).IsOk());
  ASSERT_TRUE(tc::CloseSharedMemory(fd).IsOk());
  EXPECT_TRUE(tc::UnlinkSharedMemoryRegion(key).IsOk());
  EXPECT_FALSE(tc::UnlinkSharedMemoryRegion(key).IsOk());
}

// The original ftruncates an existing object to the size asked, so a smaller
// size cuts the pages from under every other process that maps it.
TEST(ShmUtils, CreateNeverShrinksARegionAnotherMappingUses) {
  KeyJar jar;
  for (const bool original : {false, true}) {
    const std::string key = jar.make();
    // The other user: a mapping of 1 MiB (in another process it is the same
    // kernel object and the same pages).
    auto other = Region::create(key, 1 << 20);
    int fd = -1;
    const std::string failure =
        original ? original_shm_utils::create(key, 4096, &fd) : tc::CreateSharedMemoryRegion(key, 4096, &fd).Message();
    ASSERT_EQ(failure, "");
    ::close(fd);
    char last = 0;
    if (original) {
      EXPECT_EQ(object_size(key), 4096u) << "the original shrinks it";
      // Read under tritonshm's guard: a plain read would be SIGBUS.
      EXPECT_THROW(other->read((1 << 20) - 1, &last, 1), SharedMemoryError);
    } else {
      EXPECT_EQ(object_size(key), 1u << 20);
      EXPECT_NO_THROW(other->read((1 << 20) - 1, &last, 1));
    }
  }
}

// The original leaves the descriptor open and the object in /dev/shm when it
// cannot size a region it just created.
TEST(ShmUtils, FailedSizingLeavesNoDescriptorAndNoObject) {
  KeyJar jar;
  for (const bool original : {false, true}) {
    const std::string key = jar.make();
    const int before = open_descriptors();
    int fd = -1;
    const std::string failure = original ? original_shm_utils::create(key, SIZE_MAX, &fd)
                                         : tc::CreateSharedMemoryRegion(key, SIZE_MAX, &fd).Message();
    EXPECT_TRUE(starts_with(failure, "unable to initialize shared-memory key")) << failure;
    if (original) {
      EXPECT_TRUE(is_open(fd) && exists(key)) << "the original leaves both behind";
      ::close(fd);
    } else {
      EXPECT_EQ(fd, -1);
      EXPECT_FALSE(exists(key));
      EXPECT_EQ(open_descriptors(), before);
    }
  }
}

// The original leaves MAP_FAILED ((void*)-1) in *shm_addr: a caller that
// unmaps or tests for null afterwards goes wrong.
TEST(ShmUtils, FailedMapLeavesTheAddressNull) {
  for (const bool original : {false, true}) {
    void* address = &address;
    const std::string failure =
        original ? original_shm_utils::map(-1, 0, 64, &address) : tc::MapSharedMemory(-1, 0, 64, &address).Message();
    EXPECT_FALSE(failure.empty());
    if (original) {
      EXPECT_EQ(address, MAP_FAILED);
    } else {
      EXPECT_EQ(address, nullptr);
    }
  }
}

// mmap refuses an offset that is not a multiple of the page size; the
// original reports it without saying why.
TEST(ShmUtils, UnalignedOffsetIsRefusedWithTheReason) {
  KeyJar jar;
  const std::string key = jar.make();
  auto region = Region::create(key, 8192);
  for (const bool original : {false, true}) {
    const int fd = ::shm_open(key.c_str(), O_RDWR, 0);
    void* address = nullptr;
    const std::string failure = original ? original_shm_utils::map(fd, 100, 64, &address)
                                         : tc::MapSharedMemory(fd, 100, 64, &address).Message();
    ::close(fd);
    EXPECT_TRUE(
        starts_with(failure, "unable to process address space or shared-memory descriptor: " + std::to_string(fd)));
    EXPECT_EQ(failure.find("offset 100 is not a multiple of the page size") != std::string::npos, !original) << failure;
  }
}

// A mapping past the end of the object succeeds in the original, and the
// first touch past the end kills the process.
TEST(ShmUtilsDeathTest, MappingPastTheEndIsRefusedInsteadOfSigbus) {
  KeyJar jar;
  const std::string key = jar.make();
  int fd = -1;
  ASSERT_TRUE(tc::CreateSharedMemoryRegion(key, 4096, &fd).IsOk());
  void* address = &address;
  const std::string failure = tc::MapSharedMemory(fd, 0, 1 << 20, &address).Message();
  EXPECT_NE(failure.find("1048576 bytes at offset 0 run past the end of the object, which has 4096 bytes"),
            std::string::npos)
      << failure;
  EXPECT_EQ(address, nullptr);

  const pid_t child = ::fork();
  if (child == 0) {
    void* original = nullptr;
    if (!original_shm_utils::map(fd, 0, 1 << 20, &original).empty()) ::_exit(3);
    static_cast<volatile char*>(original)[8192] = 1;  // the original's mapping: past the object's end
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(died_of_sigbus(status)) << "the original's mapping is accepted and kills on first touch";
  ::close(fd);
}

// The original only ftruncates: tmpfs accepts any size then, and the first
// write past what /dev/shm can hold is SIGBUS. Run in a private mount
// namespace with a 1 MiB /dev/shm (needs root, as test_full_dev_shm.py does).
TEST(ShmUtils, FullDevShmIsAnErrorAtCreateInsteadOfSigbusLater) {
  const pid_t child = ::fork();
  if (child == 0) {
    if (::unshare(CLONE_NEWNS) != 0) ::_exit(77);
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        ::mount("tmpfs", "/dev/shm", "tmpfs", 0, "size=1M") != 0) {
      ::_exit(77);
    }
    int fd = -1;
    const std::string ours = tc::CreateSharedMemoryRegion("/too_big", 4 << 20, &fd).Message();
    if (!starts_with(ours,
                     "unable to initialize shared-memory key '/too_big' to requested size: 4194304 bytes: "
                     "reserving 4194304 bytes: No space left on device (errno 28); /dev/shm has ") ||
        fd != -1 || exists("/too_big")) {
      ::_exit(1);
    }
    const pid_t original = ::fork();
    if (original == 0) {
      void* address = nullptr;
      if (!original_shm_utils::create("/too_big", 4 << 20, &fd).empty()) ::_exit(3);
      if (!original_shm_utils::map(fd, 0, 4 << 20, &address).empty()) ::_exit(4);
      std::memset(address, 1, 4 << 20);  // past 1 MiB: no page to give
      ::_exit(0);
    }
    int status = 0;
    ::waitpid(original, &status, 0);
    ::_exit(died_of_sigbus(status) ? 0 : 2);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  if (WEXITSTATUS(status) == 77) GTEST_SKIP() << "needs a private mount namespace (root): " << std::strerror(EPERM);
  EXPECT_NE(WEXITSTATUS(status), 1) << "ours must fail at create, leaving nothing";
  EXPECT_NE(WEXITSTATUS(status), 2) << "the original must die of SIGBUS on the write";
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(ShmUtils, ThousandsOfCallsLeakNoDescriptorAndNoMapping) {
  KeyJar jar;
  const std::string key = jar.make();
  const int before = open_descriptors();
  for (int i = 0; i < 2000; ++i) {
    int fd = -1;
    void* address = nullptr;
    void* refused = nullptr;
    ASSERT_TRUE(tc::CreateSharedMemoryRegion(key, 8192, &fd).IsOk());
    ASSERT_TRUE(tc::MapSharedMemory(fd, 4096, 4096, &address).IsOk());
    ASSERT_FALSE(tc::MapSharedMemory(fd, 0, 1 << 20, &refused).IsOk());
    ASSERT_TRUE(tc::CloseSharedMemory(fd).IsOk());
    ASSERT_FALSE(tc::CreateSharedMemoryRegion(key, SIZE_MAX, &fd).IsOk());
    ASSERT_TRUE(tc::UnmapSharedMemory(address, 4096).IsOk());
  }
  EXPECT_EQ(open_descriptors(), before);
  std::ifstream maps("/proc/self/maps");
  const std::string maps_text((std::istreambuf_iterator<char>(maps)), std::istreambuf_iterator<char>());
  EXPECT_EQ(maps_text.find(key), std::string::npos) << "a mapping of the key is left";
  EXPECT_TRUE(tc::UnlinkSharedMemoryRegion(key).IsOk());
}
