// The SIGBUS guard against whatever else in the process installs a SIGBUS
// handler: a fault inside our copies stays an exception, and faults outside
// them reach the other handlers as they would without us.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "../../src/fault_guard.hpp"
#include "test_support.hpp"
#include "tritonshm/region.hpp"

using namespace tritonshm;
using tritonshm::testing::KeyJar;

namespace {

// A region of 64 KiB, written once (which installs our handler), then shrunk
// to one page as another process would.
std::shared_ptr<Region> shrunk_region(KeyJar& jar) {
  const std::string key = jar.make("guard");
  auto region = Region::create(key, 1 << 16);
  region->write(0, "x", 1);
  if (::truncate(("/dev/shm" + key).c_str(), 4096) != 0) std::abort();
  return region;
}

bool write_raises(const Region& region) {
  std::vector<std::byte> data(1 << 16);
  try {
    region.write(0, data.data(), data.size());
  } catch (const SharedMemoryError& e) {
    return std::string(e.what()).find("shrunk to 4096 bytes") != std::string::npos;
  }
  return false;
}

struct sigaction plain_action(void (*handler)(int, siginfo_t*, void*)) {
  struct sigaction action {};
  action.sa_sigaction = handler;
  action.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigemptyset(&action.sa_mask);
  return action;
}

// Like faulthandler: reports, puts back the handler it replaced and raises again.
struct sigaction g_replaced;
void report_and_reraise(int sig, siginfo_t*, void*) {
  static const char text[] = "foreign handler reported the fault\n";
  (void)!::write(2, text, sizeof text - 1);
  sigaction(sig, &g_replaced, nullptr);
  raise(sig);
}

// Like a library that chains by calling the handler it replaced directly.
void call_replaced(int sig, siginfo_t* info, void* context) {
  static const char text[] = "chaining handler ran\n";
  (void)!::write(2, text, sizeof text - 1);
  if (g_replaced.sa_flags & SA_SIGINFO) g_replaced.sa_sigaction(sig, info, context);
}

// How a fault that is not ours ends, as without us: death by SIGBUS, or under
// AddressSanitizer, ASan's handler (the one before ours), which reports and exits.
#if defined(TRITONSHM_TEST_ASAN)
bool died_as_before(int status) { return WIFEXITED(status) && WEXITSTATUS(status) != 0; }
constexpr const char* kOnlyTheForeignReport = "foreign handler reported the fault\n";
constexpr const char* kOnlyTheChainingHandler = "chaining handler ran\n";
#else
bool died_as_before(int status) { return WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS; }
constexpr const char* kOnlyTheForeignReport = "^foreign handler reported the fault\n$";
constexpr const char* kOnlyTheChainingHandler = "^chaining handler ran\n$";
#endif

}  // namespace

TEST(FaultGuardDeathTest, HandlerPutBackToDefaultAfterOursDoesNotDefeatTheGuard) {
  // faulthandler.disable() after our first copy puts back SIG_DFL.
  EXPECT_EXIT(
      {
        KeyJar jar;
        auto region = shrunk_region(jar);
        signal(SIGBUS, SIG_DFL);
        const bool raised = write_raises(*region);
        region->remove_if_owned();
        std::exit(raised ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST(FaultGuardDeathTest, HandlerInstalledOverOursNeitherSeesNorReportsOurFaults) {
  // faulthandler.enable() or signal.signal() after our first copy.
  EXPECT_EXIT(
      {
        KeyJar jar;
        auto region = shrunk_region(jar);
        struct sigaction foreign = plain_action(report_and_reraise);
        sigaction(SIGBUS, &foreign, &g_replaced);
        const bool raised = write_raises(*region);
        region->remove_if_owned();
        std::exit(raised ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "^$");  // and the foreign handler printed nothing
}

TEST(FaultGuardDeathTest, FaultReRaisedByAHandlerInstalledDuringTheCopyIsStillOurs) {
  // A handler installed over ours while a copy runs (another thread could)
  // gets the fault first and raises it again: on this thread, inside the
  // guarded section, that is still our fault.
  EXPECT_EXIT(
      {
        KeyJar jar;
        auto region = shrunk_region(jar);
        auto touch = [&]() noexcept {
          struct sigaction foreign = plain_action(report_and_reraise);
          sigaction(SIGBUS, &foreign, &g_replaced);
          *reinterpret_cast<volatile std::byte*>(region->data() + 8192) = std::byte{1};
        };
        const auto fault = detail::guarded(touch);
        region->remove_if_owned();
        std::exit(fault && fault->address == nullptr ? 0 : 1);  // a raised signal carries no address
      },
      ::testing::ExitedWithCode(0), "foreign handler reported the fault");
}

TEST(FaultGuardDeathTest, FaultsOutsideOurCopiesReachAHandlerInstalledOverOursOnceThenKill) {
  // faulthandler's traceback still appears for faults that are not ours, once,
  // and the process dies of SIGBUS as before (no loop between the handlers).
  EXPECT_EXIT(
      {
        KeyJar jar;
        auto region = shrunk_region(jar);
        struct sigaction foreign = plain_action(report_and_reraise);
        sigaction(SIGBUS, &foreign, &g_replaced);
        (void)write_raises(*region);  // ours goes back in front, chaining to the foreign one
        region->remove_if_owned();
        *reinterpret_cast<volatile std::byte*>(region->data() + 8192) = std::byte{1};
      },
      died_as_before, kOnlyTheForeignReport);
}

TEST(FaultGuardDeathTest, HandlerThatCallsOursDirectlyDoesNotLoop) {
  EXPECT_EXIT(
      {
        KeyJar jar;
        auto region = shrunk_region(jar);
        struct sigaction foreign = plain_action(call_replaced);
        sigaction(SIGBUS, &foreign, &g_replaced);
        (void)write_raises(*region);
        region->remove_if_owned();
        *reinterpret_cast<volatile std::byte*>(region->data() + 8192) = std::byte{1};
      },
      died_as_before, kOnlyTheChainingHandler);
}

// A BYTES tensor whose elements live in memory that stops being readable (a
// view of a file or region truncated meanwhile): the source is to blame, not
// the region being written.
TEST(FaultGuard, BytesSourceThatFaultsIsNotBlamedOnTheRegion) {
  KeyJar jar;
  const std::string source_key = jar.make("source"), target_key = jar.make("target");
  auto source = Region::create(source_key, 1 << 20);
  auto target = Region::create(target_key, 1 << 20);
  ASSERT_EQ(::truncate(("/dev/shm" + source_key).c_str(), 4096), 0);
  const std::vector<std::string_view> elements{
      std::string_view(reinterpret_cast<const char*>(source->data()), 64),
      std::string_view(reinterpret_cast<const char*>(source->data()) + 8192, 64 << 10)};
  try {
    target->write_bytes(0, elements);
    FAIL() << "serializing unreadable elements must throw";
  } catch (const SharedMemoryError& e) {
    const std::string what = e.what();
    EXPECT_EQ(what.rfind("unable to set the shared memory region '" + target_key + "': the source data stopped", 0), 0u)
        << what;
    EXPECT_EQ(what.find("shrunk"), std::string::npos) << what;
  }
  source->remove_if_owned();
  target->remove_if_owned();
}

// Another process shrinks the region and grows it back, over and over: every
// message names sizes that agree with each other (never "shrunk to" the size
// mapped here, as a size read after the regrowth would say).
TEST(FaultGuard, ShrinkMessagesNameConsistentSizesWhileThePeerRegrowsTheRegion) {
  KeyJar jar;
  const std::string key = jar.make("flicker");
  const std::size_t size = 1 << 16;
  auto region = Region::create(key, size);
  std::atomic<bool> stop{false};
  std::thread peer([&] {
    const std::string path = "/dev/shm" + key;
    while (!stop) {
      (void)::truncate(path.c_str(), 4096);
      (void)::truncate(path.c_str(), size);
    }
  });
  std::vector<std::byte> data(size);
  int faults = 0;
  std::string inconsistent;
  for (int i = 0; i < 200000 && faults < 20000; ++i) {
    try {
      region->write(0, data.data(), data.size());
    } catch (const SharedMemoryError& e) {
      ++faults;
      const std::string what = e.what();
      if (what.find("shrunk to " + std::to_string(size) + " bytes") != std::string::npos) inconsistent = what;
    }
  }
  stop = true;
  peer.join();
  region->remove_if_owned();
  EXPECT_GT(faults, 0) << "the peer never caught a copy in the act";
  EXPECT_EQ(inconsistent, "") << faults;
}
