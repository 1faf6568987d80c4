#include "tritonshm/shared_memory_object.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

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

int open_fd(const std::string& key, int flags, mode_t mode, const char* verb) {
  int fd;
  do {
    fd = ::shm_open(key.c_str(), flags | O_CLOEXEC, mode);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) throw_os_error(std::string("unable to ") + verb + " shared memory region " + quoted(key), errno);
  return fd;
}

}  // namespace

SharedMemoryObject::SharedMemoryObject(create_only_t, const std::string& key, mode_t mode)
    : key_(normalize_key(key)) {
  fd_ = open_fd(key_, O_RDWR | O_CREAT | O_EXCL, mode, "create");
  // shm_open applies the umask; set the mode the caller asked for exactly.
  if (::fchmod(fd_, mode) != 0) {
    const int err = errno;
    ::close(fd_);
    fd_ = -1;
    ::shm_unlink(key_.c_str());
    throw_os_error("unable to set mode of shared memory region " + quoted(key_), err);
  }
}

SharedMemoryObject::SharedMemoryObject(open_only_t, const std::string& key) : key_(normalize_key(key)) {
  fd_ = open_fd(key_, O_RDWR, 0, "open");
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

uint64_t SharedMemoryObject::size() const {
  struct stat st{};
  if (::fstat(fd_, &st) != 0) throw_os_error("unable to stat shared memory region " + quoted(key_), errno);
  return static_cast<uint64_t>(st.st_size);
}

ObjectIdentity SharedMemoryObject::identity() const {
  struct stat st{};
  if (::fstat(fd_, &st) != 0) throw_os_error("unable to stat shared memory region " + quoted(key_), errno);
  return {st.st_dev, st.st_ino};
}

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
