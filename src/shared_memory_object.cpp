#include "tritonshm/shared_memory_object.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <utility>

#include "tritonshm/error.hpp"
#include "tritonshm/key.hpp"

namespace tritonshm {
namespace {

std::string quoted(const std::string& key) { return "'" + key + "'"; }

std::string free_space_hint(const std::string& key) {
  struct statvfs fs{};
  if (::statvfs("/dev/shm", &fs) != 0) return "";
  const uint64_t free_bytes = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
  const uint64_t total = static_cast<uint64_t>(fs.f_blocks) * fs.f_frsize;
  (void)key;
  return "; /dev/shm has " + std::to_string(free_bytes) + " bytes free of " + std::to_string(total) +
         " (raise it with e.g. `docker run --shm-size=2g` or `mount -o remount,size=2G /dev/shm`)";
}

// shm_open, retried on EINTR; returns -1 with errno set.
int shm_open_fd(const std::string& name, int flags, mode_t mode) {
  int fd;
  do {
    fd = ::shm_open(name.c_str(), flags | O_CLOEXEC, mode);
  } while (fd < 0 && errno == EINTR);
  return fd;
}

}  // namespace

SharedMemoryObject::SharedMemoryObject(create_only_t, const std::string& key, uint64_t size, mode_t mode,
                                       bool reserve_pages)
    : key_(normalize_key(key)) {
  const std::string path = key_path(key_);
  // Preferred: an unnamed file in /dev/shm (O_TMPFILE), sized and reserved,
  // then given its name by linkat: atomic, and a crash on the way leaves no
  // name behind. linkat through /proc/self/fd needs no capability.
  fd_ = ::open("/dev/shm", O_TMPFILE | O_RDWR | O_CLOEXEC, mode);
  if (fd_ >= 0) {
    try {
      prepare(size, mode, reserve_pages);
      const std::string self = "/proc/self/fd/" + std::to_string(fd_);
      if (::linkat(AT_FDCWD, self.c_str(), AT_FDCWD, path.c_str(), AT_SYMLINK_FOLLOW) == 0) return;
      if (errno != ENOENT) throw_os_error("unable to create shared memory region " + quoted(key_), errno);
    } catch (...) {
      ::close(fd_);
      fd_ = -1;
      throw;
    }
    ::close(fd_);  // no /proc: fall back below
    fd_ = -1;
  } else if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL && errno != ENOENT) {
    throw_os_error("unable to create shared memory region " + quoted(key_), errno);
  }
  // Fallback: a temporary name, sized, then link()ed to the key (which fails
  // with EEXIST if the key exists) and the temporary name removed.
  static std::atomic<uint64_t> counter{0};
  std::string temporary;
  for (int attempt = 0; fd_ < 0; ++attempt) {  // a crashed process with our pid may have left its name
    temporary = std::string("/") + kTemporaryPrefix + std::to_string(::getpid()) + "-" +
                std::to_string(counter.fetch_add(1));
    fd_ = shm_open_fd(temporary, O_RDWR | O_CREAT | O_EXCL, mode);
    if (fd_ < 0 && (errno != EEXIST || attempt == 100)) {
      throw_os_error("unable to create shared memory region " + quoted(key_), errno);
    }
  }
  try {
    prepare(size, mode, reserve_pages);
    if (::link(key_path(temporary).c_str(), path.c_str()) != 0) {
      throw_os_error("unable to create shared memory region " + quoted(key_), errno);
    }
  } catch (...) {
    ::shm_unlink(temporary.c_str());
    ::close(fd_);
    fd_ = -1;
    throw;
  }
  ::shm_unlink(temporary.c_str());
}

void SharedMemoryObject::prepare(uint64_t size, mode_t mode, bool reserve_pages) {
  // open() applies the umask; set the mode the caller asked for exactly.
  if (::fchmod(fd_, mode) != 0) throw_os_error("unable to set mode of shared memory region " + quoted(key_), errno);
  truncate(size);
  if (reserve_pages) reserve(size);
}

SharedMemoryObject::SharedMemoryObject(open_only_t, const std::string& key) : key_(normalize_key(key)) {
  fd_ = shm_open_fd(key_, O_RDWR, 0);
  if (fd_ < 0) throw_os_error("unable to open shared memory region " + quoted(key_), errno);
}

std::optional<SharedMemoryObject> SharedMemoryObject::try_open(const std::string& key) {
  SharedMemoryObject object;
  object.key_ = normalize_key(key);
  object.fd_ = shm_open_fd(object.key_, O_RDWR, 0);
  if (object.fd_ >= 0) return object;
  if (errno == ENOENT) return std::nullopt;
  throw_os_error("unable to open shared memory region " + quoted(object.key_), errno);
}

SharedMemoryObject::SharedMemoryObject(SharedMemoryObject&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), key_(std::move(other.key_)) {}

SharedMemoryObject& SharedMemoryObject::operator=(SharedMemoryObject&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    key_ = std::move(other.key_);
  }
  return *this;
}

SharedMemoryObject::~SharedMemoryObject() {
  if (fd_ >= 0) ::close(fd_);
}

ObjectStatus SharedMemoryObject::status() const {
  struct stat st{};
  if (::fstat(fd_, &st) != 0) throw_os_error("unable to stat shared memory region " + quoted(key_), errno);
  return {static_cast<uint64_t>(st.st_size), {st.st_dev, st.st_ino}};
}

uint64_t SharedMemoryObject::size() const { return status().size; }

void SharedMemoryObject::truncate(uint64_t size) {
  if (size > static_cast<uint64_t>(INT64_MAX)) {
    throw SharedMemoryError("unable to size shared memory region " + quoted(key_) + " to " + std::to_string(size) +
                            " bytes: larger than the largest file size");
  }
  int rc;
  do {
    rc = ::ftruncate(fd_, static_cast<off_t>(size));
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    const int err = errno;
    throw_os_error("unable to size shared memory region " + quoted(key_) + " to " + std::to_string(size) + " bytes" +
                       (err == EFBIG || err == ENOSPC || err == EINVAL ? free_space_hint(key_) : ""),
                   err);
  }
}

void SharedMemoryObject::reserve(uint64_t size) {
  if (size == 0) return;
  int err;
  do {
    err = ::posix_fallocate(fd_, 0, static_cast<off_t>(size));
  } while (err == EINTR);
  if (err == EOPNOTSUPP || err == ENOSYS) return;  // a file system that cannot reserve: ftruncate alone
  if (err != 0) {
    throw_os_error("unable to reserve " + std::to_string(size) + " bytes for shared memory region " + quoted(key_) +
                       free_space_hint(key_),
                   err);
  }
}

bool SharedMemoryObject::remove(const std::string& key) {
  const std::string normalized = normalize_key(key);
  if (::shm_unlink(normalized.c_str()) == 0) return true;
  if (errno == ENOENT) return false;
  throw_os_error("unable to unlink shared memory region " + quoted(normalized), errno);
}

}  // namespace tritonshm
