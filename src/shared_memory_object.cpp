#include "tritonshm/detail/shared_memory_object.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <utility>

#include "tritonshm/detail/key.hpp"
#include "tritonshm/error.hpp"

namespace tritonshm::detail {
namespace {

const std::string& shm_directory() {
  static const std::string dir(kShmDirectory);
  return dir;
}

// "; /dev/shm has F bytes free of T (raise it with ...)"
std::string free_space_hint() {
  struct statvfs fs {};
  if (::statvfs(shm_directory().c_str(), &fs) != 0) return "";
  const uint64_t free_bytes = static_cast<uint64_t>(fs.f_bavail) * fs.f_frsize;
  const uint64_t total = static_cast<uint64_t>(fs.f_blocks) * fs.f_frsize;
  return "; " + shm_directory() + " has " + std::to_string(free_bytes) + " bytes free of " + std::to_string(total) +
         " (raise it with e.g. `docker run --shm-size=2g` or `mount -o remount,size=2G " + shm_directory() + "`)";
}

[[noreturn]] void throw_os_error_with_hint(const std::string& what, int err, const std::string& hint) {
  throw SharedMemoryError(what + ": " + os_error_text(err) + hint, err);
}

// ftruncate, retried on EINTR; returns 0 or the error.
int truncate_to(int fd, uint64_t size) {
  int rc;
  do {
    rc = ::ftruncate(fd, static_cast<off_t>(size));
  } while (rc != 0 && errno == EINTR);
  return rc == 0 ? 0 : errno;
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

SharedMemoryObject SharedMemoryObject::create_unpublished(std::string_view key, uint64_t size, mode_t mode,
                                                          bool reserve) {
  SharedMemoryObject object;
  object.key_ = normalize_key(key);
  // Preferred: an unnamed file that linkat names later: atomic, and a crash
  // on the way leaves no name behind.
  object.fd_ = ::open(shm_directory().c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, mode);
  if (object.fd_ >= 0) {
    object.unnamed_ = true;
  } else if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL && errno != ENOENT) {
    throw_os_error("creating the object in " + shm_directory(), errno);
  } else {
    // Fallback: a private temporary name, linked to the key by publish().
    static std::atomic<uint64_t> counter{0};
    for (int attempt = 0; object.fd_ < 0; ++attempt) {  // a crashed process with our pid may have left its name
      object.temporary_ =
          "/" + std::string(kTemporaryPrefix) + std::to_string(::getpid()) + "-" + std::to_string(counter.fetch_add(1));
      object.fd_ = shm_open_fd(object.temporary_, O_RDWR | O_CREAT | O_EXCL, mode);
      if (object.fd_ < 0 && (errno != EEXIST || attempt == 100)) {
        const int err = errno;
        object.temporary_.clear();
        throw_os_error("creating the object in " + shm_directory(), err);
      }
    }
  }
  // open() applies the umask; set the mode the caller asked for exactly.
  if (::fchmod(object.fd_, mode) != 0) throw_os_error("setting its mode", errno);
  object.size_unpublished(size, reserve);  // on failure ~SharedMemoryObject removes the temporary name
  return object;
}

void SharedMemoryObject::size_unpublished(uint64_t size, bool reserve_pages) {
  if (size > static_cast<uint64_t>(INT64_MAX)) {
    throw SharedMemoryError("sizing it to " + std::to_string(size) + " bytes: larger than the largest file size");
  }
  if (const int err = truncate_to(fd_, size); err != 0) {
    throw_os_error_with_hint("sizing it to " + std::to_string(size) + " bytes", err,
                             err == EFBIG || err == ENOSPC || err == EINVAL ? free_space_hint() : "");
  }
  if (reserve_pages) reserve(size);
  read_status();
}

void SharedMemoryObject::publish() {
  const std::string path = key_path(key_);
  if (unnamed_) {
    // linkat through /proc/self/fd needs no capability (AT_EMPTY_PATH would).
    const std::string self = "/proc/self/fd/" + std::to_string(fd_);
    if (::linkat(AT_FDCWD, self.c_str(), AT_FDCWD, path.c_str(), AT_SYMLINK_FOLLOW) != 0) {
      const int err = errno;
      throw_os_error(err == EEXIST ? "a region with this key exists" : "giving it its name", err);
    }
    unnamed_ = false;
  } else {
    if (::link(key_path(temporary_).c_str(), path.c_str()) != 0) {
      const int err = errno;
      throw_os_error(err == EEXIST ? "a region with this key exists" : "giving it its name", err);
    }
    ::shm_unlink(temporary_.c_str());
    temporary_.clear();
  }
  owner_pid_ = ::getpid();
  reopen_by_key();
}

void SharedMemoryObject::reopen_by_key() noexcept {
  // The descriptor we created through keeps that file's first path for good:
  // O_TMPFILE's "/dev/shm/#123 (deleted)", or the removed temporary name, in
  // /proc/PID/fd and in /proc/PID/maps for anything mapped through it, which
  // operators read as a leak. A descriptor
  // opened by the key has the key's path. If the key names another object
  // already (removed and made again meanwhile), ours stays.
  const int named = shm_open_fd(key_, O_RDWR, 0);
  if (named < 0) return;
  struct stat st {};
  if (::fstat(named, &st) == 0 && st.st_dev == identity_.device && st.st_ino == identity_.inode) {
    ::close(std::exchange(fd_, named));
  } else {
    ::close(named);
  }
}

SharedMemoryObject::SharedMemoryObject(open_only_t, std::string_view key) {
  key_ = normalize_key(key);
  fd_ = shm_open_fd(key_, O_RDWR, 0);
  if (fd_ < 0) throw_os_error("", errno);
  read_status();
}

std::optional<SharedMemoryObject> SharedMemoryObject::try_open(std::string_view key) {
  SharedMemoryObject object;
  object.key_ = normalize_key(key);
  object.fd_ = shm_open_fd(object.key_, O_RDWR, 0);
  if (object.fd_ < 0) {
    if (errno == ENOENT) return std::nullopt;
    throw_os_error("", errno);
  }
  object.read_status();
  return object;
}

void SharedMemoryObject::read_status() {
  struct stat st {};
  if (::fstat(fd_, &st) != 0) throw_os_error("reading its size", errno);
  size_ = static_cast<uint64_t>(st.st_size);
  identity_ = {st.st_dev, st.st_ino};
}

uint64_t SharedMemoryObject::current_size() const {
  struct stat st {};
  if (::fstat(fd_, &st) != 0) throw_os_error("reading its size", errno);
  return static_cast<uint64_t>(st.st_size);
}

void SharedMemoryObject::reserve(uint64_t size) {
  if (size > static_cast<uint64_t>(INT64_MAX)) {
    throw SharedMemoryError("reserving " + std::to_string(size) + " bytes: larger than the largest file size");
  }
  if (size != 0) {
    // posix_fallocate grows the file when it is shorter and never shrinks it;
    // tmpfs undoes a failed call, so the size stays as it was.
    int err;
    do {
      err = ::posix_fallocate(fd_, 0, static_cast<off_t>(size));
    } while (err == EINTR);
    // A file system that cannot reserve: grow without reserving. (Racy
    // against a concurrent grower, but only where there is no fallocate.)
    if (err == EOPNOTSUPP || err == ENOSYS) err = current_size() < size ? truncate_to(fd_, size) : 0;
    if (err != 0) {
      throw_os_error_with_hint("reserving " + std::to_string(size) + " bytes", err,
                               err == ENOSPC || err == EFBIG ? free_space_hint() : "");
    }
  }
  read_status();
}

int SharedMemoryObject::release_fd() noexcept {
  unnamed_ = false;
  return std::exchange(fd_, -1);
}

SharedMemoryObject::SharedMemoryObject(SharedMemoryObject&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      key_(std::move(other.key_)),
      temporary_(std::exchange(other.temporary_, {})),
      identity_(other.identity_),
      size_(other.size_),
      owner_pid_(std::exchange(other.owner_pid_, 0)),
      unnamed_(std::exchange(other.unnamed_, false)) {}

SharedMemoryObject& SharedMemoryObject::operator=(SharedMemoryObject&& other) noexcept {
  if (this != &other) {
    close_and_forget();
    fd_ = std::exchange(other.fd_, -1);
    key_ = std::move(other.key_);
    temporary_ = std::exchange(other.temporary_, {});
    identity_ = other.identity_;
    size_ = other.size_;
    owner_pid_ = std::exchange(other.owner_pid_, 0);
    unnamed_ = std::exchange(other.unnamed_, false);
  }
  return *this;
}

SharedMemoryObject::~SharedMemoryObject() { close_and_forget(); }

void SharedMemoryObject::close_and_forget() noexcept {
  if (!temporary_.empty()) ::shm_unlink(temporary_.c_str());
  temporary_.clear();
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

bool SharedMemoryObject::owns() const noexcept { return owner_pid_ != 0 && owner_pid_ == ::getpid(); }

bool SharedMemoryObject::remove_if_owned() const {
  if (!owns()) return false;
  struct stat st {};
  if (::stat(key_path(key_).c_str(), &st) != 0) {
    if (errno == ENOENT) return false;
  } else if (ObjectIdentity{st.st_dev, st.st_ino} != identity_) {
    return false;  // the key now names someone else's object
  }
  return remove(key_);
}

bool SharedMemoryObject::remove(std::string_view key) {
  const std::string normalized = normalize_key(key);
  if (::shm_unlink(normalized.c_str()) == 0) return true;
  if (errno == ENOENT) return false;
  throw_os_error("unlinking it", errno);
}

}  // namespace tritonshm::detail
