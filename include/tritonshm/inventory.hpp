// What exists in /dev/shm and who uses it, for operators and for cleaning up
// after crashed processes. Usage is read from /proc: a process uses a region
// if it maps it (/proc/PID/maps) or holds a descriptor on it (/proc/PID/fd).
// Objects are matched by inode, so a region is recognized whatever name a
// process opened it under.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tritonshm {

struct RegionInfo {
  std::string key;  // "/name"
  uint64_t size = 0;
  uid_t owner = 0;
  mode_t mode = 0;         // permission bits
  int64_t modified = 0;    // seconds since the epoch (last write of the size or data)
  std::vector<pid_t> mapped_by;  // processes with a mapping of it
  std::vector<pid_t> opened_by;  // processes with a descriptor on it
  bool in_use() const noexcept { return !mapped_by.empty() || !opened_by.empty(); }
};

struct Inventory {
  std::vector<RegionInfo> regions;  // sorted by key
  // Processes whose maps or descriptors could not be read (another user's,
  // when not root). While this is not empty, "no user" is not certain.
  std::vector<pid_t> uninspected;
};

// Every shared memory object in /dev/shm (POSIX semaphores, "sem.*", are not
// regions and are left out) with the processes that use it.
Inventory list_regions();

// The same for one key; nullopt if it does not exist.
std::optional<RegionInfo> region_info(std::string_view key);

struct GarbageReport {
  std::vector<RegionInfo> removed;  // or, in a dry run, would be removed
  std::vector<RegionInfo> kept;     // still used by a live process, or too young
  std::vector<pid_t> uninspected;
};

struct GarbageOptions {
  bool dry_run = false;           // only report
  int64_t min_age_seconds = 0;    // spare regions modified more recently
  std::string prefix;             // only keys starting with it ("/name" form)
  // Processes that could not be inspected (no CAP_SYS_PTRACE, another user's)
  // might use any region, so by default nothing is removed while there are
  // any. Set this when you know they do not use shared memory.
  bool trust_uninspected = false;
};

// Removes regions that no live process maps or holds open.
GarbageReport collect_garbage(const GarbageOptions& options = {});

}  // namespace tritonshm
