// A named POSIX shared memory object: the file descriptor that shm_open gives,
// and nothing else. Mapping it is a separate type (mapping.hpp) and removing
// its name is a separate, explicit act (remove), because "close my fd",
// "unmap" and "unlink the name" are three different things.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

namespace tritonshm {

struct create_only_t {
  explicit create_only_t() = default;
};
struct open_only_t {
  explicit open_only_t() = default;
};
// Create the object; fail if the name exists.
inline constexpr create_only_t create_only{};
// Open an existing object; fail if the name does not exist.
inline constexpr open_only_t open_only{};

// What identifies an object, whatever name it has now.
struct ObjectIdentity {
  dev_t device = 0;
  ino_t inode = 0;
  bool operator==(const ObjectIdentity&) const = default;
};

struct ObjectStatus {
  uint64_t size = 0;
  ObjectIdentity identity;
};

class SharedMemoryObject {
 public:
  // Creates the object `key` (with or without its leading '/') of `size`
  // bytes, with exactly `mode` (no umask: 0600 keeps it private to the owner,
  // 0660 shares it with a group). With `reserve`, every page is allocated now
  // (posix_fallocate), so that a full /dev/shm is an error here and not SIGBUS
  // on first write; the message says what was asked, what is free and how to
  // raise it.
  //
  // The object is sized before it has its name (an O_TMPFILE file, or a
  // private temporary name where that is unsupported) and then linked to
  // `key` in one step, so no other process or thread can ever open it at
  // size 0 (the race that shm_open + ftruncate has). Fails with EEXIST if
  // `key` exists.
  SharedMemoryObject(create_only_t, const std::string& key, uint64_t size, mode_t mode = 0600, bool reserve = true);
  SharedMemoryObject(open_only_t, const std::string& key);
  // Opens `key` if it exists; nullopt if it does not. Other failures throw.
  // (Attach-or-create asks this first; an exception would cost more than the lookup.)
  static std::optional<SharedMemoryObject> try_open(const std::string& key);

  SharedMemoryObject(SharedMemoryObject&& other) noexcept;
  SharedMemoryObject& operator=(SharedMemoryObject&& other) noexcept;
  SharedMemoryObject(const SharedMemoryObject&) = delete;
  SharedMemoryObject& operator=(const SharedMemoryObject&) = delete;
  ~SharedMemoryObject();

  int fd() const noexcept { return fd_; }
  // The normalized key ("/name").
  const std::string& key() const noexcept { return key_; }

  // The object's current size and identity, read from the kernel (another
  // process may have changed the size since we opened it). One fstat.
  ObjectStatus status() const;
  uint64_t size() const;

  // Removes the name `key`. Returns false if no object had that name. Mappings
  // and descriptors that are open elsewhere stay valid.
  static bool remove(const std::string& key);

  // The prefix of the temporary names used while creating where O_TMPFILE is
  // unsupported; `tritonshm gc` removes ones that a crash left behind.
  static constexpr const char* kTemporaryPrefix = ".tritonshm-creating-";

 private:
  SharedMemoryObject() = default;
  void prepare(uint64_t size, mode_t mode, bool reserve_pages);
  void truncate(uint64_t size);
  void reserve(uint64_t size);
  int fd_ = -1;
  std::string key_;
};

}  // namespace tritonshm
