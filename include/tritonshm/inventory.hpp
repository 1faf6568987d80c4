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
  mode_t mode = 0;               // permission bits
  int64_t modified = 0;          // seconds since the epoch (last write of the size or data)
  std::vector<pid_t> mapped_by;  // processes with a mapping of it
  std::vector<pid_t> opened_by;  // processes with a descriptor on it
  // Another tool's region (see is_foreign_key): gc leaves it alone unless asked.
  bool foreign = false;
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

// Whether a key belongs to a tool that manages its own regions: Triton's
// Python backend ("/triton_python_backend_shm_region_*", or "/pytrtion*" as
// PyTriton configures it) and Python's multiprocessing.shared_memory
// ("/psm_*", which PyTriton uses for tensors). Removing one
// of those while its owner is between two uses breaks that owner.
bool is_foreign_key(std::string_view normalized_key) noexcept;

// Why gc left a region in place. The last means the region looked unused but
// this process may not remove it (see GarbageReport::skipped).
enum class KeepReason { in_use, too_young, foreign, uninspected_processes, not_permitted };
std::string_view to_string(KeepReason reason) noexcept;

struct KeptRegion {
  RegionInfo region;
  KeepReason reason;
};

struct GarbageReport {
  std::vector<RegionInfo> removed;  // or, in a dry run, would be removed
  std::vector<KeptRegion> kept;
  std::vector<pid_t> uninspected;
  // Whether a region that looked unused was left in place because this
  // process may not remove it.
  bool skipped() const noexcept {
    for (const KeptRegion& k : kept)
      if (k.reason == KeepReason::not_permitted) return true;
    return false;
  }
};

struct GarbageOptions {
  bool dry_run = false;         // only report
  int64_t min_age_seconds = 0;  // spare regions modified more recently
  std::string prefix;           // only keys starting with it (with or without the leading '/')
  // Processes that could not be inspected (no CAP_SYS_PTRACE, another user's)
  // might use any region, so by default nothing is removed while there are
  // any. Set this when you know they do not use shared memory.
  bool trust_uninspected = false;
  // Also collect other tools' regions (is_foreign_key).
  bool include_foreign = false;
};

// Removes regions that no live process maps or holds open, skipping (as
// KeepReason::not_permitted) those this process may not remove: another
// user's region in the sticky /dev/shm, without CAP_FOWNER. /proc is scanned
// twice per call, whatever the number of regions: once to choose, and once
// more just before removing, to spare a region someone began using meanwhile.
GarbageReport collect_garbage(const GarbageOptions& options = {});

// Removes the region `key`, refusing (SharedMemoryError naming the processes)
// while a live process maps it or holds it open, unless `force`. Returns false
// if there is no such region.
bool remove_region(std::string_view key, bool force = false);

// Up to `length` bytes of the region `key` from `offset` (fewer where it
// ends), read with pread() through a read-only descriptor: for inspecting
// another user's readable region, and no mapping means no SIGBUS whatever
// happens to the region meanwhile.
std::vector<std::byte> read_region(std::string_view key, uint64_t offset, uint64_t length);

// Where read_bytes_elements goes on: the index of the next element of a BYTES
// tensor and the byte of the region it starts at.
struct BytesCursor {
  uint64_t element = 0;
  uint64_t offset = 0;
};

// Walks a BYTES tensor (each element a 4-byte little-endian length, then its
// bytes) in the region `key` from `cursor`: passes over `skip` elements,
// reading only their lengths, then returns the next `count`, and leaves
// `cursor` after them. Read as read_region reads, through a window of a
// megabyte: the memory used is the elements returned, whatever the region's
// size. A length that runs past the end of the region throws, naming the
// element and the byte it starts at.
std::vector<std::string> read_bytes_elements(std::string_view key, BytesCursor& cursor, uint64_t skip, uint64_t count);

}  // namespace tritonshm
