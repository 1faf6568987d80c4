// The SIGBUS guard against whatever else in the process installs a SIGBUS
// handler or blocks SIGBUS: a fault inside our copies stays an exception, and
// signals outside them reach the other handlers as they would without us.
// Each case that can kill runs in a death test's child process.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "../../src/fault_guard.hpp"
#include "test_support.hpp"
#include "tritonshm/region.hpp"
#include "tritonshm/signal_setup.hpp"

using namespace tritonshm;
using tritonshm::testing::KeyJar;

namespace {

// A region of 64 KiB, written once (which installs our handler), then shrunk
// to one page as another process would. Its name is removed at once: the
// death tests' children end without running destructors, and the mapping is
// all a test needs.
std::shared_ptr<Region> shrunk_region(KeyJar& jar) {
  const std::string key = jar.make("guard");
  auto region = Region::create(key, 1 << 16);
  region->write(0, "x", 1);
  if (::truncate(("/dev/shm" + key).c_str(), 4096) != 0) std::abort();
  ::shm_unlink(key.c_str());
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

void touch_outside_our_copies(const Region& region) {
  *reinterpret_cast<volatile std::byte*>(region.data() + 8192) = std::byte{1};
}

struct sigaction plain_action(void (*handler)(int, siginfo_t*, void*), int flags = SA_NODEFER) {
  struct sigaction action {};
  action.sa_sigaction = handler;
  action.sa_flags = SA_SIGINFO | flags;
  sigemptyset(&action.sa_mask);
  return action;
}

void say(const char* text) { (void)!::write(2, text, std::char_traits<char>::length(text)); }

// Like faulthandler: reports, puts back the handler it replaced and raises again.
struct sigaction g_replaced;
void report_and_reraise(int sig, siginfo_t*, void*) {
  say("foreign handler reported the fault\n");
  sigaction(sig, &g_replaced, nullptr);
  raise(sig);
}

// Like a library that chains by calling the handler it replaced directly.
void call_replaced(int sig, siginfo_t* info, void* context) {
  say("chaining handler ran\n");
  if (g_replaced.sa_flags & SA_SIGINFO) g_replaced.sa_sigaction(sig, info, context);
}

// Like Python's own C handler: notes the signal and returns.
void note_and_return(int, siginfo_t*, void*) { say("returning handler ran\n"); }

// Like faulthandler after disable(): it put back the handler it replaced, and
// returns at once if a signal still reaches it.
std::atomic<bool> g_enabled{false};
void report_unless_disabled(int sig, siginfo_t*, void*) {
  if (!g_enabled) return;
  say("foreign handler reported the fault\n");
  g_enabled = false;
  sigaction(sig, &g_replaced, nullptr);
  raise(sig);
}

// Waits until the guard's clock (CLOCK_MONOTONIC_COARSE) has ticked: its next
// section checks the handler in front and this thread's mask again.
void wait_for_the_next_tick() {
  timespec start{}, now{};
  clock_gettime(CLOCK_MONOTONIC_COARSE, &start);
  do {
    const timespec nap{0, 500'000};
    nanosleep(&nap, nullptr);
    clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
  } while (now.tv_sec == start.tv_sec && now.tv_nsec == start.tv_nsec);
}

// How a signal that is not ours ends, as without us: death by SIGBUS, or under
// AddressSanitizer, ASan's handler (the one before ours), which reports and exits.
#if defined(TRITONSHM_TEST_ASAN)
bool died_as_before(int status) { return WIFEXITED(status) && WEXITSTATUS(status) != 0; }
constexpr const char* kOnlyTheForeignReport = "foreign handler reported the fault\n";
constexpr const char* kOnlyTheChainingHandler = "chaining handler ran\n";
constexpr const char* kNoOtherHandler = "^AddressSanitizer:DEADLYSIGNAL\n=+\n[^\n]*ERROR: AddressSanitizer: BUS";
constexpr const char* kTheirsCaughtOursRaised = "^their 100 faults caught, ours raised\nAddressSanitizer:DEADLYSIGNAL";
#else
bool died_as_before(int status) { return WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS; }
constexpr const char* kOnlyTheForeignReport = "^foreign handler reported the fault\n$";
constexpr const char* kOnlyTheChainingHandler = "^chaining handler ran\n$";
constexpr const char* kNoOtherHandler = "^$";
constexpr const char* kTheirsCaughtOursRaised = "^their 100 faults caught, ours raised\n$";
#endif

// How a change of the SIGBUS set-up is made: through SigbusHandlerChange (as
// the Python package makes them), or from C, which the guard notices at the
// next tick of its clock.
enum class Made { announced, from_c };

template <class F>
void change_handler(Made made, ReplacedHandler replaced, F&& change) {
  if (made == Made::announced) {
    const SigbusHandlerChange announced(replaced);
    change();
  } else {
    change();
    wait_for_the_next_tick();
  }
}

class FaultGuardChangeDeathTest : public ::testing::TestWithParam<Made> {};

std::string made_name(const ::testing::TestParamInfo<Made>& info) {
  return info.param == Made::announced ? "Announced" : "FromC";
}

}  // namespace

INSTANTIATE_TEST_SUITE_P(, FaultGuardChangeDeathTest, ::testing::Values(Made::announced, Made::from_c), made_name);

TEST_P(FaultGuardChangeDeathTest, HandlerPutBackToDefaultAfterOursDoesNotDefeatTheGuard) {
  // faulthandler.disable() after our first copy puts back SIG_DFL.
  EXPECT_EXIT(
      {
        KeyJar jar;
        auto region = shrunk_region(jar);
        change_handler(GetParam(), ReplacedHandler::dropped, [] { signal(SIGBUS, SIG_DFL); });
        const bool raised = write_raises(*region);
        region->remove_if_owned();
        std::exit(raised ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
}

TEST_P(FaultGuardChangeDeathTest, HandlerInstalledOverOursNeitherSeesNorReportsOurFaults) {
  // faulthandler.enable() or signal.signal() after our first copy.
  EXPECT_EXIT(
      {
        KeyJar jar;
        auto region = shrunk_region(jar);
        change_handler(GetParam(), ReplacedHandler::kept, [] {
          struct sigaction foreign = plain_action(report_and_reraise);
          sigaction(SIGBUS, &foreign, &g_replaced);
        });
        const bool raised = write_raises(*region);
        region->remove_if_owned();
        std::exit(raised ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "^$");  // and the foreign handler printed nothing
}

TEST_P(FaultGuardChangeDeathTest, FaultsOutsideOurCopiesReachAHandlerInstalledOverOursOnceThenKill) {
  // faulthandler's traceback still appears for faults that are not ours, once,
  // and the process dies of SIGBUS as before (no loop between the handlers).
  EXPECT_EXIT(
      {
        KeyJar jar;
        auto region = shrunk_region(jar);
        change_handler(GetParam(), ReplacedHandler::kept, [] {
          struct sigaction foreign = plain_action(report_and_reraise);
          sigaction(SIGBUS, &foreign, &g_replaced);
        });
        (void)write_raises(*region);  // ours goes back in front, chaining to the foreign one
        region->remove_if_owned();
        touch_outside_our_copies(*region);
      },
      died_as_before, kOnlyTheForeignReport);
}

TEST_P(FaultGuardChangeDeathTest, HandlerThatCallsOursDirectlyDoesNotLoop) {
  EXPECT_EXIT(
      {
        KeyJar jar;
        auto region = shrunk_region(jar);
        change_handler(GetParam(), ReplacedHandler::kept, [] {
          struct sigaction foreign = plain_action(call_replaced);
          sigaction(SIGBUS, &foreign, &g_replaced);
        });
        (void)write_raises(*region);
        region->remove_if_owned();
        touch_outside_our_copies(*region);
      },
      died_as_before, kOnlyTheChainingHandler);
}

TEST_P(FaultGuardChangeDeathTest, HandlerThatPutOursBackIsNotCalledForLaterFaults) {
  // faulthandler.enable() after our first copy, a copy, then .disable(): it
  // puts back the installation of ours it saved and returns if called again.
  // A fault outside our copies must reach what was there before it (the
  // default action), not the disabled handler, which would make it repeat
  // forever (the alarm ends such a loop, and the test fails).
  EXPECT_EXIT(
      {
        alarm(10);
        KeyJar jar;
        auto region = shrunk_region(jar);
        change_handler(GetParam(), ReplacedHandler::kept, [] {
          struct sigaction foreign = plain_action(report_unless_disabled);
          g_enabled = true;
          sigaction(SIGBUS, &foreign, &g_replaced);
        });
        (void)write_raises(*region);  // ours in front again, chaining to the foreign one
        change_handler(GetParam(), ReplacedHandler::dropped, [] {
          g_enabled = false;
          sigaction(SIGBUS, &g_replaced, nullptr);
        });
        (void)write_raises(*region);
        region->remove_if_owned();
        touch_outside_our_copies(*region);
      },
      died_as_before, kNoOtherHandler);
}

TEST_P(FaultGuardChangeDeathTest, HandlerThatReturnsNeverSeesOurFaults) {
  // Python's handler for signal.signal(SIGBUS, f) returns: a fault passed to
  // it would repeat forever.
  EXPECT_EXIT(
      {
        alarm(10);
        KeyJar jar;
        auto region = shrunk_region(jar);
        change_handler(GetParam(), ReplacedHandler::dropped, [] {
          struct sigaction foreign = plain_action(note_and_return, 0);
          sigaction(SIGBUS, &foreign, nullptr);
        });
        const bool raised = write_raises(*region);
        region->remove_if_owned();
        std::exit(raised ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "^$");
}

TEST_P(FaultGuardChangeDeathTest, SigbusBlockedInTheCopyingThreadDoesNotDefeatTheGuard) {
  // The kernel kills a process whose fault's signal is blocked, whatever the
  // handler: the guard unblocks SIGBUS for its copies.
  EXPECT_EXIT(
      {
        KeyJar jar;
        auto region = shrunk_region(jar);
        sigset_t bus;
        sigemptyset(&bus);
        sigaddset(&bus, SIGBUS);
        pthread_sigmask(SIG_BLOCK, &bus, nullptr);
        if (GetParam() == Made::announced) {
          sigbus_mask_changed();
        } else {
          wait_for_the_next_tick();
        }
        const bool raised = write_raises(*region) && write_raises(*region);
        sigset_t now;
        pthread_sigmask(SIG_BLOCK, nullptr, &now);
        region->remove_if_owned();
        std::exit(raised && sigismember(&now, SIGBUS) == 1 ? 0 : 1);  // and blocked again after
      },
      ::testing::ExitedWithCode(0), "");
}

TEST(FaultGuardDeathTest, ThreadStartedWithEverySignalBlockedCopiesGuarded) {
  // The sigwait pattern: threads started with every signal blocked. Each
  // thread reads its mask on its first copy.
  EXPECT_EXIT(([] {
                KeyJar jar;
                auto region = shrunk_region(jar);
                sigset_t all, before;
                sigfillset(&all);
                pthread_sigmask(SIG_BLOCK, &all, &before);
                bool raised = false;
                std::thread worker([&] { raised = write_raises(*region); });  // inherits the mask
                pthread_sigmask(SIG_SETMASK, &before, nullptr);
                worker.join();
                region->remove_if_owned();
                std::exit(raised ? 0 : 1);
              })(),
              ::testing::ExitedWithCode(0), "");
}

TEST(FaultGuardDeathTest, FaultReRaisedByAHandlerInstalledDuringTheCopyIsStillOurs) {
  // A handler installed over ours from C while a copy runs gets the fault
  // first and raises it again: on this thread, inside the guarded section,
  // that is still our fault.
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

TEST(FaultGuardDeathTest, MaskIsRestoredAfterAFaultPassedThroughAHandlerThatBlocksSignals) {
  // A handler without SA_NODEFER, with SIGUSR1 in its sa_mask, gets our fault
  // first and calls ours: jumping out of it must not leave SIGBUS or SIGUSR1
  // blocked (a later fault would then kill the process).
  EXPECT_EXIT(
      {
        KeyJar jar;
        auto region = shrunk_region(jar);
        auto touch = [&]() noexcept {
          struct sigaction foreign = plain_action(call_replaced, 0);
          sigaddset(&foreign.sa_mask, SIGUSR1);
          sigaction(SIGBUS, &foreign, &g_replaced);
          *reinterpret_cast<volatile std::byte*>(region->data() + 8192) = std::byte{1};
        };
        const auto fault = detail::guarded(touch);
        sigset_t now;
        pthread_sigmask(SIG_BLOCK, nullptr, &now);
        region->remove_if_owned();
        std::exit(fault && sigismember(&now, SIGBUS) == 0 && sigismember(&now, SIGUSR1) == 0 ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "chaining handler ran");
}

TEST(FaultGuardDeathTest, NestedSectionsReturnEachFaultToItsOwnSection) {
  EXPECT_EXIT(
      {
        KeyJar jar;
        auto region = shrunk_region(jar);
        std::optional<detail::Fault> inner;
        bool after_inner = false;
        auto outer = [&]() noexcept {
          auto fault_inside = [&]() noexcept { touch_outside_our_copies(*region); };
          inner = detail::guarded(fault_inside);
          after_inner = true;
          *reinterpret_cast<volatile std::byte*>(region->data() + 12288) = std::byte{1};
        };
        const auto fault = detail::guarded(outer);
        region->remove_if_owned();
        const bool right = inner && inner->address == region->data() + 8192 && after_inner && fault &&
                           fault->address == region->data() + 12288;
        std::exit(right ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "");
}

// Like another library's own guard: it jumps out of the faults in its own
// copies, and gives the others to the handler it replaced (put back: the
// fault then repeats under it).
sigjmp_buf g_their_jump;
std::atomic<bool> g_their_copy{false};
void their_guard(int sig, siginfo_t*, void*) {
  if (g_their_copy) siglongjmp(g_their_jump, 1);
  sigaction(sig, &g_replaced, nullptr);
}

// One copy of theirs into the shrunk part of the region: true if their guard
// caught its fault.
bool their_copy_faulted(const Region& region) {
  if (sigsetjmp(g_their_jump, 0) != 0) {
    g_their_copy = false;
    return true;
  }
  g_their_copy = true;
  touch_outside_our_copies(region);
  g_their_copy = false;
  return false;
}

TEST(FaultGuardDeathTest, FaultsAnotherGuardJumpsOutOfLeaveOursWorking) {
  // Another guard installed before ours gets the faults of its copies from our
  // handler (they are not ours) and jumps out of them, out of our pass-on too,
  // many times over: our copies still raise, and a fault of neither still
  // kills as before.
  EXPECT_EXIT(
      {
        KeyJar jar;
        struct sigaction theirs = plain_action(their_guard);
        sigaction(SIGBUS, &theirs, &g_replaced);
        auto region = shrunk_region(jar);  // ours in front, passing on to theirs
        int theirs_caught = 0;
        for (int i = 0; i < 100; ++i) theirs_caught += their_copy_faulted(*region) ? 1 : 0;
        const bool ours_raised = write_raises(*region);
        region->remove_if_owned();
        if (theirs_caught != 100 || !ours_raised) std::exit(1);
        say("their 100 faults caught, ours raised\n");
        touch_outside_our_copies(*region);
      },
      died_as_before, kTheirsCaughtOursRaised);
}

TEST(FaultGuardDeathTest, ChangesDuringCopiesNeverReachTheNewHandler) {
  // Two threads copy into a region a third keeps shrinking and growing back,
  // while this one changes the handler thousands of times through
  // SigbusHandlerChange: to SIG_DFL (a fault reaching it would kill), to one
  // that returns (a fault would repeat until ours is back), to one that
  // reports. Every fault stays an exception of the copy that made it.
  EXPECT_EXIT(([] {
                alarm(60);
                KeyJar jar;
                const std::string key = jar.make("churn");
                const std::size_t size = 8 << 20;
                auto region = Region::create(key, size);
                // The peer shrinks it through a descriptor: the name is gone
                // before anything can end this child without destructors.
                const int peer_fd = ::shm_open(key.c_str(), O_RDWR, 0);
                if (peer_fd < 0) std::abort();
                ::shm_unlink(key.c_str());
                std::atomic<bool> stop{false};
                std::atomic<int> raised{0}, other{0};
                auto copy = [&] {
                  std::vector<std::byte> data(size);
                  while (!stop) {
                    try {
                      region->write(0, data.data(), data.size());
                    } catch (const SharedMemoryError& e) {
                      (std::string(e.what()).find("shrunk") != std::string::npos ? raised : other)++;
                    }
                  }
                };
                std::thread a(copy), b(copy), peer([&] {
                  while (!stop) {
                    (void)::ftruncate(peer_fd, 4096);
                    (void)::ftruncate(peer_fd, static_cast<off_t>(size));
                  }
                });
                // Two seconds of changes, and at least 3000.
                timespec start{}, now{};
                clock_gettime(CLOCK_MONOTONIC, &start);
                for (int i = 0; i < 3000 || now.tv_sec < start.tv_sec + 2; ++i) {
                  clock_gettime(CLOCK_MONOTONIC, &now);
                  const SigbusHandlerChange change(i % 3 == 1 ? ReplacedHandler::kept : ReplacedHandler::dropped);
                  if (i % 3 == 0) signal(SIGBUS, SIG_DFL);
                  if (i % 3 == 1) {
                    struct sigaction foreign = plain_action(report_and_reraise);
                    sigaction(SIGBUS, &foreign, &g_replaced);
                  }
                  if (i % 3 == 2) {
                    struct sigaction foreign = plain_action(note_and_return, 0);
                    sigaction(SIGBUS, &foreign, nullptr);
                  }
                }
                stop = true;
                a.join();
                b.join();
                peer.join();
                ::close(peer_fd);
                region->remove_if_owned();
                if (raised == 0 || other != 0)
                  std::fprintf(stderr, "raised %d, other %d\n", raised.load(), other.load());
                std::exit(raised > 0 && other == 0 ? 0 : 1);
              })(),
              ::testing::ExitedWithCode(0), "^$");
}

TEST(FaultGuardDeathTest, ChildForkedDuringCopiesChangesHandlersAndCopiesGuarded) {
  // fork() while another thread is inside a copy: that copy does not exist in
  // the child, whose changes must not wait for it.
  EXPECT_EXIT(([] {
                KeyJar jar;
                auto region = shrunk_region(jar);
                const std::string key = jar.make("busy");
                auto busy = Region::create(key, 64 << 20);
                ::shm_unlink(key.c_str());
                std::atomic<bool> stop{false};
                std::thread copier([&] {
                  std::vector<std::byte> data(64 << 20);
                  while (!stop) busy->write(0, data.data(), data.size());
                });
                const timespec nap{0, 20'000'000};
                nanosleep(&nap, nullptr);
                const pid_t child = fork();
                if (child == 0) {
                  alarm(10);
                  {
                    const SigbusHandlerChange change(ReplacedHandler::dropped);
                    signal(SIGBUS, SIG_DFL);
                  }
                  _exit(write_raises(*region) ? 0 : 1);
                }
                int status = 0;
                waitpid(child, &status, 0);
                stop = true;
                copier.join();
                region->remove_if_owned();
                busy->remove_if_owned();
                std::exit(WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1);
              })(),
              ::testing::ExitedWithCode(0), "");
}

// What the guard cannot cover: changes made from C, without
// SigbusHandlerChange or sigbus_mask_changed, are noticed at the next tick of
// its clock, not before. Frozen here, the clock never ticks.
TEST(FaultGuardDeathTest, HandlerInstalledFromCIsInFrontUntilTheNextTick) {
  EXPECT_EXIT(
      {
        KeyJar jar;
        auto region = shrunk_region(jar);
        detail::freeze_guard_clock_for_testing(true);
        (void)write_raises(*region);  // checked at the frozen tick
        struct sigaction foreign = plain_action(report_and_reraise);
        sigaction(SIGBUS, &foreign, &g_replaced);
        // The foreign handler gets our fault first; it re-raises it, so the copy still raises.
        const bool raised_within = write_raises(*region);
        struct sigaction again = plain_action(report_and_reraise);
        sigaction(SIGBUS, &again, &g_replaced);
        detail::freeze_guard_clock_for_testing(false);
        wait_for_the_next_tick();
        const bool raised_after = write_raises(*region);  // ours in front again: no report
        region->remove_if_owned();
        std::exit(raised_within && raised_after ? 0 : 1);
      },
      ::testing::ExitedWithCode(0), "^foreign handler reported the fault\n$");
}

TEST(FaultGuardDeathTest, SigbusBlockedFromCIsNoticedAtTheNextTick) {
  EXPECT_EXIT(
      {
        KeyJar jar;
        auto region = shrunk_region(jar);
        detail::freeze_guard_clock_for_testing(true);
        (void)write_raises(*region);  // this thread's mask read at the frozen tick
        sigset_t bus;
        sigemptyset(&bus);
        sigaddset(&bus, SIGBUS);
        pthread_sigmask(SIG_BLOCK, &bus, nullptr);
        (void)write_raises(*region);  // the kernel's default action: death by SIGBUS
        region->remove_if_owned();
        std::exit(0);
      },
      ::testing::KilledBySignal(SIGBUS), "");
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
