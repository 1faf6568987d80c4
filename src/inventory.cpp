#include "tritonshm/inventory.hpp"

#include <dirent.h>
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
#include <sstream>

#include "tritonshm/error.hpp"
#include "tritonshm/key.hpp"
#include "tritonshm/shared_memory_object.hpp"

namespace tritonshm {
namespace {

constexpr const char* kShmDir = "/dev/shm";

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
  if (!proc) throw_os_error("unable to list /proc", errno);
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
        if (n < 9 || std::string_view(target, 9) != "/dev/shm/") continue;
        struct stat st{};
        if (::stat(link.c_str(), &st) == 0 && st.st_dev == shm_device) usage.opened[st.st_ino].insert(pid);
      }
    }
    if (!readable) usage.uninspected.push_back(pid);
  }
  return usage;
}

std::optional<RegionInfo> describe(const std::string& name, const Usage& usage) {
  struct stat st{};
  const std::string path = std::string(kShmDir) + "/" + name;
  if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
  RegionInfo info;
  info.key = "/" + name;
  info.size = static_cast<uint64_t>(st.st_size);
  info.owner = st.st_uid;
  info.mode = st.st_mode & 07777;
  info.modified = st.st_mtim.tv_sec;
  if (auto it = usage.mapped.find(st.st_ino); it != usage.mapped.end()) info.mapped_by.assign(it->second.begin(), it->second.end());
  if (auto it = usage.opened.find(st.st_ino); it != usage.opened.end()) info.opened_by.assign(it->second.begin(), it->second.end());
  return info;
}

dev_t shm_device() {
  struct stat st{};
  if (::stat(kShmDir, &st) != 0) throw_os_error("unable to stat /dev/shm", errno);
  return st.st_dev;
}

}  // namespace

Inventory list_regions() {
  const Usage usage = scan_processes(shm_device());
  Inventory inventory;
  inventory.uninspected = usage.uninspected;
  DirPtr dir(::opendir(kShmDir));
  if (!dir) throw_os_error("unable to list /dev/shm", errno);
  while (dirent* entry = ::readdir(dir.get())) {
    const std::string name = entry->d_name;
    if (name == "." || name == ".." || name.rfind("sem.", 0) == 0) continue;
    if (auto info = describe(name, usage)) inventory.regions.push_back(std::move(*info));
  }
  std::sort(inventory.regions.begin(), inventory.regions.end(),
            [](const RegionInfo& a, const RegionInfo& b) { return a.key < b.key; });
  return inventory;
}

std::optional<RegionInfo> region_info(std::string_view key) {
  const std::string normalized = normalize_key(key);
  return describe(normalized.substr(1), scan_processes(shm_device()));
}

GarbageReport collect_garbage(const GarbageOptions& options) {
  Inventory inventory = list_regions();
  GarbageReport report;
  report.uninspected = inventory.uninspected;
  const int64_t now = static_cast<int64_t>(std::time(nullptr));
  for (RegionInfo& info : inventory.regions) {
    if (!options.prefix.empty() && info.key.rfind(options.prefix, 0) != 0) continue;
    const bool young = now - info.modified < options.min_age_seconds;
    const bool unsure = !report.uninspected.empty() && !options.trust_uninspected;
    if (info.in_use() || young || unsure) {
      report.kept.push_back(std::move(info));
      continue;
    }
    if (!options.dry_run) {
      // A region that a process began using since the scan would be mapped
      // or open now: look once more, just before removing.
      std::optional<RegionInfo> again = region_info(info.key);
      if (!again) continue;
      if (again->in_use()) {
        report.kept.push_back(std::move(*again));
        continue;
      }
      if (!SharedMemoryObject::remove(info.key)) continue;
    }
    report.removed.push_back(std::move(info));
  }
  return report;
}

}  // namespace tritonshm
