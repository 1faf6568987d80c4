#include "tritonshm/inventory.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <span>
#include <sstream>

#include "tritonshm/detail/key.hpp"
#include "tritonshm/detail/shared_memory_object.hpp"
#include "tritonshm/error.hpp"

namespace tritonshm {
namespace {

using detail::kShmDirectory;

const std::string& shm_directory() {
  static const std::string dir(kShmDirectory);
  return dir;
}

struct DirCloser {
  void operator()(DIR* d) const { ::closedir(d); }
};
using DirPtr = std::unique_ptr<DIR, DirCloser>;

bool is_pid(const char* name) {
  if (*name == '\0') return false;
  for (const char* p = name; *p; ++p)
    if (*p < '0' || *p > '9') return false;
  return true;
}

struct Usage {
  std::map<ino_t, std::set<pid_t>> mapped;
  std::map<ino_t, std::set<pid_t>> opened;
  std::vector<pid_t> uninspected;
};

// Scans /proc for mappings and descriptors of files on the /dev/shm device.
Usage scan_processes(dev_t shm_device) {
  Usage usage;
  DirPtr proc(::opendir("/proc"));
  if (!proc) throw_os_error("listing /proc", errno);
  const unsigned dev_major = major(shm_device), dev_minor = minor(shm_device);
  while (dirent* entry = ::readdir(proc.get())) {
    if (!is_pid(entry->d_name)) continue;
    const pid_t pid = static_cast<pid_t>(std::stol(entry->d_name));
    const std::string base = std::string("/proc/") + entry->d_name;
    bool readable = true;
    std::ifstream maps(base + "/maps");
    if (!maps) {
      readable = ::access(base.c_str(), F_OK) != 0;  // gone meanwhile: nothing to inspect
    } else {
      std::string line;
      while (std::getline(maps, line)) {
        // address perms offset dev inode path
        unsigned long long inode = 0;
        unsigned maj = 0, min = 0;
        if (std::sscanf(line.c_str(), "%*x-%*x %*s %*x %x:%x %llu", &maj, &min, &inode) != 3) continue;
        if (inode != 0 && maj == dev_major && min == dev_minor) usage.mapped[static_cast<ino_t>(inode)].insert(pid);
      }
    }
    DirPtr fds(::opendir((base + "/fd").c_str()));
    if (!fds) {
      if (errno == EACCES || errno == EPERM) readable = false;
    } else {
      while (dirent* fd = ::readdir(fds.get())) {
        if (!is_pid(fd->d_name)) continue;
        const std::string link = base + "/fd/" + fd->d_name;
        char target[32];
        const ssize_t n = ::readlink(link.c_str(), target, sizeof target);
        const std::string_view dir = kShmDirectory;
        if (n <= static_cast<ssize_t>(dir.size()) || std::string_view(target, dir.size()) != dir ||
            target[dir.size()] != '/') {
          continue;
        }
        struct stat st {};
        if (::stat(link.c_str(), &st) == 0 && st.st_dev == shm_device) usage.opened[st.st_ino].insert(pid);
      }
    }
    if (!readable) usage.uninspected.push_back(pid);
  }
  return usage;
}

std::optional<RegionInfo> describe(const std::string& name, const Usage& usage) {
  struct stat st {};
  const std::string path = shm_directory() + "/" + name;
  if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
  RegionInfo info;
  info.key = "/" + name;
  info.size = static_cast<uint64_t>(st.st_size);
  info.owner = st.st_uid;
  info.mode = st.st_mode & 07777;
  info.modified = st.st_mtim.tv_sec;
  info.foreign = is_foreign_key(info.key);
  if (auto it = usage.mapped.find(st.st_ino); it != usage.mapped.end())
    info.mapped_by.assign(it->second.begin(), it->second.end());
  if (auto it = usage.opened.find(st.st_ino); it != usage.opened.end())
    info.opened_by.assign(it->second.begin(), it->second.end());
  return info;
}

// Whether this process holds CAP_FOWNER (bit 3 of CapEff), which lets it
// remove names it does not own from a sticky directory.
bool has_cap_fowner() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("CapEff:", 0) != 0) continue;
    return (std::stoull(line.substr(7), nullptr, 16) >> 3) & 1;
  }
  return false;
}

// Decides whether this process may unlink a name in /dev/shm: anyone who may
// write the directory, but in a sticky one (1777, the usual) only the name's
// owner, the directory's owner, or a process with CAP_FOWNER.
class RemovalRights {
 public:
  RemovalRights() {
    struct stat st {};
    if (::stat(shm_directory().c_str(), &st) != 0) throw_os_error("reading " + shm_directory(), errno);
    sticky_ = (st.st_mode & S_ISVTX) != 0;
    directory_owner_ = st.st_uid;
    user_ = ::geteuid();
    fowner_ = has_cap_fowner();
  }
  bool may_remove(const RegionInfo& info) const noexcept {
    return !sticky_ || fowner_ || info.owner == user_ || directory_owner_ == user_;
  }

 private:
  bool sticky_ = true, fowner_ = false;
  uid_t directory_owner_ = 0, user_ = 0;
};

dev_t shm_device() {
  struct stat st {};
  if (::stat(shm_directory().c_str(), &st) != 0) throw_os_error("reading " + shm_directory(), errno);
  return st.st_dev;
}

// A region opened for reading only, read with pread(): no mapping, so no
// SIGBUS whatever happens to the region meanwhile. O_NONBLOCK: a FIFO put
// under the name since it was listed cannot block the open (glibc's shm_open
// adds O_NOFOLLOW, so a symbolic link is refused).
class ReadOnlyRegion {
 public:
  explicit ReadOnlyRegion(const std::string& normalized_key)
      : fd_(::shm_open(normalized_key.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK, 0)) {
    if (fd_ < 0) throw_os_error("opening it for reading", errno);
    struct stat st {};
    if (::fstat(fd_, &st) != 0) {
      const int err = errno;
      ::close(fd_);
      throw_os_error("reading its size", err);
    }
    if (!S_ISREG(st.st_mode)) {
      ::close(fd_);
      throw SharedMemoryError("it is not a shared memory region (not a regular file)");
    }
    size_ = static_cast<uint64_t>(st.st_size);
  }
  ReadOnlyRegion(const ReadOnlyRegion&) = delete;
  ReadOnlyRegion& operator=(const ReadOnlyRegion&) = delete;
  ~ReadOnlyRegion() { ::close(fd_); }

  // The size when it was opened.
  uint64_t size() const noexcept { return size_; }

  // Fills `out` from `offset`; returns the bytes read, fewer only where the
  // region ends (it may have been shrunk since it was opened).
  std::size_t read(uint64_t offset, std::span<std::byte> out) const {
    std::size_t done = 0;
    while (done < out.size()) {
      const ssize_t n = ::pread(fd_, out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw_os_error("reading it", errno);
      if (n == 0) break;
      done += static_cast<std::size_t>(n);
    }
    return done;
  }

 private:
  int fd_;
  uint64_t size_ = 0;
};

// Reads a region in order through a buffer of at most kSize bytes, so that
// walking a BYTES tensor's lengths costs that much memory and a read a
// megabyte, whatever the region's size and however small its elements.
class Window {
 public:
  static constexpr std::size_t kSize = 1 << 20;
  explicit Window(const ReadOnlyRegion& region) : region_(region) {}

  // Fills `out` from `offset`, which the caller checked lies within the
  // region's size; throws if the region was shrunk meanwhile.
  void copy(uint64_t offset, std::span<std::byte> out) {
    if (out.size() > kSize / 2) {  // a large element: straight into place
      if (region_.read(offset, out) != out.size()) throw_shrunk();
      return;
    }
    if (offset < start_ || offset + out.size() > start_ + buffer_.size()) {
      buffer_.resize(static_cast<std::size_t>(std::min<uint64_t>(kSize, region_.size() - offset)));
      buffer_.resize(region_.read(offset, buffer_));
      start_ = offset;
      if (out.size() > buffer_.size()) throw_shrunk();
    }
    std::copy_n(buffer_.data() + (offset - start_), out.size(), out.data());
  }

 private:
  [[noreturn]] void throw_shrunk() const {
    throw SharedMemoryError("it was shrunk by another process while it was read (it held " +
                            std::to_string(region_.size()) + " bytes)");
  }
  const ReadOnlyRegion& region_;
  std::vector<std::byte> buffer_;
  uint64_t start_ = 0;
};

Inventory list_regions_with(const Usage& usage) {
  Inventory inventory;
  inventory.uninspected = usage.uninspected;
  DirPtr dir(::opendir(shm_directory().c_str()));
  if (!dir) throw_os_error("listing " + shm_directory(), errno);
  while (dirent* entry = ::readdir(dir.get())) {
    const std::string name = entry->d_name;
    if (name == "." || name == ".." || name.rfind("sem.", 0) == 0) continue;
    if (auto info = describe(name, usage)) inventory.regions.push_back(std::move(*info));
  }
  std::sort(inventory.regions.begin(), inventory.regions.end(),
            [](const RegionInfo& a, const RegionInfo& b) { return a.key < b.key; });
  return inventory;
}

}  // namespace

bool is_foreign_key(std::string_view key) noexcept {
  // Triton's Python backend names its regions with this prefix by default;
  // PyTriton gives it "pytrtion<pid>-..." (sic) instead and keeps its tensors
  // in multiprocessing.shared_memory's "psm_*".
  static constexpr std::string_view kForeignPrefixes[] = {"/triton_python_backend_shm_region_", "/pytrtion", "/psm_"};
  for (const std::string_view prefix : kForeignPrefixes) {
    if (key.substr(0, prefix.size()) == prefix) return true;
  }
  return false;
}

std::string_view to_string(KeepReason reason) noexcept {
  switch (reason) {
    case KeepReason::in_use:
      return "in use";
    case KeepReason::too_young:
      return "younger than the minimum age";
    case KeepReason::uninspected_processes:
      return "some processes could not be inspected";
    case KeepReason::foreign:
      return "another tool's region";
    case KeepReason::not_permitted:
      return "owned by another user: only its owner or root may remove it";
  }
  return "";
}

Inventory list_regions() {
  return with_operation(Operation::inspect, "", [] { return list_regions_with(scan_processes(shm_device())); });
}

std::optional<RegionInfo> region_info(std::string_view key) {
  return with_operation(Operation::inspect, key, [&] {
    const std::string normalized = detail::normalize_key(key);
    return describe(normalized.substr(1), scan_processes(shm_device()));
  });
}

GarbageReport collect_garbage(const GarbageOptions& options) {
  return with_operation(Operation::remove, "", [&] {
    const std::string prefix =
        options.prefix.empty() || options.prefix.front() == '/' ? options.prefix : "/" + options.prefix;
    const dev_t device = shm_device();
    Inventory inventory = list_regions_with(scan_processes(device));
    GarbageReport report;
    report.uninspected = inventory.uninspected;
    const int64_t now = static_cast<int64_t>(std::time(nullptr));
    const bool unsure = !report.uninspected.empty() && !options.trust_uninspected;
    const RemovalRights rights;
    std::vector<RegionInfo> candidates;
    for (RegionInfo& info : inventory.regions) {
      if (!prefix.empty() && info.key.rfind(prefix, 0) != 0) continue;
      std::optional<KeepReason> keep;
      if (info.foreign && !options.include_foreign) {
        keep = KeepReason::foreign;
      } else if (info.in_use()) {
        keep = KeepReason::in_use;
      } else if (now - info.modified < options.min_age_seconds) {
        keep = KeepReason::too_young;
      } else if (!rights.may_remove(info)) {
        keep = KeepReason::not_permitted;
      } else if (unsure) {
        keep = KeepReason::uninspected_processes;
      }
      if (keep) {
        report.kept.push_back({std::move(info), *keep});
      } else {
        candidates.push_back(std::move(info));
      }
    }
    if (options.dry_run || candidates.empty()) {
      report.removed = std::move(candidates);
      return report;
    }
    // A region that a process began using since the first scan would be
    // mapped or open now: look once more, for all candidates together.
    const Usage again = scan_processes(device);
    for (RegionInfo& info : candidates) {
      std::optional<RegionInfo> now_info = describe(info.key.substr(1), again);
      if (!now_info) continue;  // gone meanwhile
      if (now_info->in_use()) {
        report.kept.push_back({std::move(*now_info), KeepReason::in_use});
        continue;
      }
      try {
        if (detail::SharedMemoryObject::remove(info.key)) report.removed.push_back(std::move(info));
      } catch (const SharedMemoryError& e) {
        // The rights above are the usual rules; a security module or a
        // read-only /dev/shm can still refuse: skip it, and go on.
        if (e.os_error() != EACCES && e.os_error() != EPERM && e.os_error() != EROFS) throw;
        report.kept.push_back({std::move(info), KeepReason::not_permitted});
      }
    }
    return report;
  });
}

bool remove_region(std::string_view key, bool force) {
  return with_operation(Operation::remove, key, [&] {
    const std::string normalized = detail::normalize_key(key);
    if (!force) {
      if (std::optional<RegionInfo> info = describe(normalized.substr(1), scan_processes(shm_device()));
          info && info->in_use()) {
        std::set<pid_t> users(info->mapped_by.begin(), info->mapped_by.end());
        users.insert(info->opened_by.begin(), info->opened_by.end());
        std::string list;
        for (const pid_t pid : users) list += (list.empty() ? "" : ", ") + std::to_string(pid);
        throw SharedMemoryError("it is in use by process(es) " + list + ": not removed (force removes it anyway)");
      }
    }
    return detail::SharedMemoryObject::remove(normalized);
  });
}

std::vector<std::byte> read_region(std::string_view key, uint64_t offset, uint64_t length) {
  return with_operation(Operation::inspect, key, [&] {
    const ReadOnlyRegion region(detail::normalize_key(key));
    const uint64_t wanted = offset >= region.size() ? 0 : std::min(length, region.size() - offset);
    std::vector<std::byte> out(static_cast<std::size_t>(wanted));
    out.resize(region.read(offset, out));  // fewer where it was shrunk meanwhile
    return out;
  });
}

std::vector<std::string> read_bytes_elements(std::string_view key, BytesCursor& cursor, uint64_t skip, uint64_t count) {
  return with_operation(Operation::inspect, key, [&] {
    const ReadOnlyRegion region(detail::normalize_key(key));
    Window window(region);
    const uint64_t size = region.size();
    std::vector<std::string> elements;
    elements.reserve(static_cast<std::size_t>(std::min<uint64_t>(count, 4096)));  // a count may be hostile
    for (uint64_t i = 0; i < skip + count; ++i) {
      const uint64_t at = cursor.offset;
      const uint64_t left = at >= size ? 0 : size - at;
      if (left < 4) {
        throw SharedMemoryError("malformed BYTES tensor: element " + std::to_string(cursor.element) + " at byte " +
                                std::to_string(at) + " needs a 4-byte length, only " + std::to_string(left) +
                                " bytes remain of " + std::to_string(size));
      }
      unsigned char prefix[4];
      window.copy(at, std::as_writable_bytes(std::span(prefix)));
      const uint32_t length = static_cast<uint32_t>(prefix[0]) | static_cast<uint32_t>(prefix[1]) << 8 |
                              static_cast<uint32_t>(prefix[2]) << 16 | static_cast<uint32_t>(prefix[3]) << 24;
      if (left - 4 < length) {
        throw SharedMemoryError("malformed BYTES tensor: element " + std::to_string(cursor.element) + " at byte " +
                                std::to_string(at) + " declares " + std::to_string(length) + " bytes, only " +
                                std::to_string(left - 4) + " remain of " + std::to_string(size));
      }
      if (i >= skip) {
        std::string element(length, '\0');
        if (length > 0) window.copy(at + 4, std::as_writable_bytes(std::span(element)));
        elements.push_back(std::move(element));
      }
      cursor.element += 1;
      cursor.offset = at + 4 + length;
    }
    return elements;
  });
}

}  // namespace tritonshm
