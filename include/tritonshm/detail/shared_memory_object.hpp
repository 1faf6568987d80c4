// A named POSIX shared memory object: the file descriptor, the key, and
// whether this process created it. Mapping it is a separate type
// (mapping.hpp), and removing its name is a separate, explicit act, because
// "close my fd", "unmap" and "unlink the name" are three different things.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "tritonshm/creation_tags.hpp"

namespace tritonshm::detail {

// What identifies an object, whatever name it has now.
struct ObjectIdentity {
  dev_t device = 0;
  ino_t inode = 0;
  bool operator==(const ObjectIdentity&) const = default;
};

class SharedMemoryObject {
 public:
  // A new object for `key`, not yet visible to anyone: an unnamed file in
  // /dev/shm (O_TMPFILE), or a private temporary name where that is
  // unsupported. It is sized, given exactly `mode` (no umask), and with
  // `reserve` every page is allocated now (posix_fallocate), so that a full
  // /dev/shm is an error here and not SIGBUS on first write. Do all page work
  // (mapping, prefaulting) on it, then publish(): no other process can ever
  // see it half made.
  static SharedMemoryObject create_unpublished(std::string_view key, uint64_t size, mode_t mode, bool reserve);
  // Sizes an object not yet published to `size` bytes, every page allocated
  // with `reserve`, as create_unpublished does (which calls it).
  void size_unpublished(uint64_t size, bool reserve);
  // Gives the object its key in one step; fails with EEXIST if the key exists.
  // From then on this process owns it: owns() and remove_if_owned(), and fd()
  // is a descriptor opened by the key (map through it, so that /proc/PID/maps
  // and lsof show the key).
  void publish();

  // Opens an existing object; fails if the key does not exist.
  SharedMemoryObject(open_only_t, std::string_view key);
  // Opens `key` if it exists; nullopt if it does not. Other failures throw.
  // (open-or-create asks this first; an exception would cost more than the lookup.)
  static std::optional<SharedMemoryObject> try_open(std::string_view key);

  SharedMemoryObject(SharedMemoryObject&& other) noexcept;
  SharedMemoryObject& operator=(SharedMemoryObject&& other) noexcept;
  SharedMemoryObject(const SharedMemoryObject&) = delete;
  SharedMemoryObject& operator=(const SharedMemoryObject&) = delete;
  // Closes the descriptor. An object never published leaves nothing behind:
  // a temporary name is removed here (the scope guard of a failed create).
  ~SharedMemoryObject();

  int fd() const noexcept { return fd_; }
  // The normalized key ("/name").
  const std::string& key() const noexcept { return key_; }
  ObjectIdentity identity() const noexcept { return identity_; }
  // The size when it was created or opened.
  uint64_t size() const noexcept { return size_; }
  // The size the kernel has now (another process may have changed it). One fstat.
  uint64_t current_size() const;

  // Makes the first `size` bytes exist with every page allocated
  // (posix_fallocate): grows a smaller object and never shrinks a larger one,
  // which other processes may have mapped. A full /dev/shm is an error here
  // instead of SIGBUS on a later write; on failure the size is unchanged.
  void reserve(uint64_t size);

  // Hands the descriptor to the caller, who closes it; this object keeps
  // nothing. Only for a published or opened object.
  int release_fd() noexcept;

  // True in the process that created and published the object, and only
  // there: a child made by fork() inherits the object but does not own it.
  bool owns() const noexcept;

  // Removes the key if this process owns the object and the key still names
  // it (not an object someone made under the same key after ours was
  // removed). Returns whether it removed anything.
  bool remove_if_owned() const;

  // Removes the name `key`, whatever it names. Returns false if none existed.
  // Mappings and descriptors that are open elsewhere stay valid.
  static bool remove(std::string_view key);

  // The prefix of the temporary names used while creating where O_TMPFILE is
  // unsupported; `tritonshm gc` removes ones that a crash left behind.
  static constexpr std::string_view kTemporaryPrefix = ".tritonshm-creating-";

 private:
  SharedMemoryObject() = default;
  void read_status();
  void reopen_by_key() noexcept;
  void close_and_forget() noexcept;
  int fd_ = -1;
  std::string key_;
  std::string temporary_;  // the fallback's temporary name until published
  ObjectIdentity identity_;
  uint64_t size_ = 0;
  pid_t owner_pid_ = 0;   // the process that published it; 0 if opened
  bool unnamed_ = false;  // an O_TMPFILE file awaiting linkat
};

}  // namespace tritonshm::detail
