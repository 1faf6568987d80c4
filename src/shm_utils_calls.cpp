#include "shm_utils_calls.hpp"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

#include "object_mapping.hpp"
#include "tritonshm/detail/mapping.hpp"
#include "tritonshm/detail/shared_memory_object.hpp"
#include "tritonshm/error.hpp"

// The message prefixes are the client library's, word for word: programs
// match them. What follows the prefix is ours: the OS error and a hint.
namespace tritonshm::shm_utils {
namespace {

std::string with_detail(const std::string& prefix, const std::string& detail) { return prefix + ": " + detail; }

// What a caller of CreateSharedMemoryRegion can do about an OS error.
std::string descriptor_hint(int err) {
  switch (err) {
    case EACCES:
      return "; the region belongs to another user or its mode does not let this one read and write it";
    case EMFILE:
    case ENFILE:
      return "; too many open descriptors: close the ones CreateSharedMemoryRegion returned once mapped";
    default:
      return "";
  }
}

}  // namespace

std::string create_region(const std::string& key, std::size_t byte_size, int* fd) {
  const std::string cannot_open = "unable to get shared memory descriptor for shared-memory key " + quote_key(key);
  const std::string cannot_size = "unable to initialize shared-memory key " + quote_key(key) +
                                  " to requested size: " + std::to_string(byte_size) + " bytes";
  if (fd == nullptr) return with_detail(cannot_open, "shm_fd is null");
  *fd = -1;
  // An existing object is reused and grown to byte_size if smaller, never
  // shrunk: another process may have it mapped, and would die of SIGBUS
  // touching the lost pages. A new one gets its key only once it is sized.
  detail::Acquisition acquisition;
  acquisition.size = byte_size;
  acquisition.grow_existing = true;
  acquisition.map = false;
  detail::Step step = detail::Step::open;
  try {
    *fd = detail::acquire(detail::Acquire::open_or_create, key, acquisition, &step).object.release_fd();
    return {};
  } catch (const SharedMemoryError& e) {
    if (step == detail::Step::size) return with_detail(cannot_size, e.detail());
    return with_detail(cannot_open, e.detail() + descriptor_hint(e.os_error()));
  }
}

std::string map_region(int fd, std::size_t offset, std::size_t byte_size, void** address) {
  const std::string cannot_map = "unable to process address space or shared-memory descriptor: " + std::to_string(fd);
  if (address == nullptr) return with_detail(cannot_map, "shm_addr is null");
  *address = nullptr;
  const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  if (offset % page != 0) {
    return with_detail(cannot_map, "offset " + std::to_string(offset) + " is not a multiple of the page size (" +
                                       std::to_string(page) +
                                       " bytes), which mmap requires; map from offset 0 and add the offset to the "
                                       "address it returns");
  }
  if (byte_size == 0) return with_detail(cannot_map, "byte_size is 0: there is nothing to map");
  struct stat status {};
  if (::fstat(fd, &status) != 0) {
    const int err = errno;
    return with_detail(cannot_map, os_error_text(err) + (err == EBADF ? "; the descriptor is not open" : ""));
  }
  // mmap accepts a range past the end of the object, and touching it then
  // kills the process with SIGBUS: refuse it here instead.
  const auto object_size = static_cast<uint64_t>(status.st_size);
  if (offset > object_size || byte_size > object_size - offset) {
    return with_detail(cannot_map, std::to_string(byte_size) + " bytes at offset " + std::to_string(offset) +
                                       " run past the end of the object, which has " + std::to_string(object_size) +
                                       " bytes (touching them would raise SIGBUS); create the region with at least " +
                                       "offset + byte_size bytes");
  }
  try {
    detail::Mapping mapping(fd, offset, byte_size);
    // Another process may have shrunk the object since the fstat.
    if (detail::probe_backed(mapping.data(), byte_size)) {
      return with_detail(cannot_map, "the object was shrunk by another process below offset + byte_size (" +
                                         std::to_string(offset + byte_size) + " bytes) while it was being mapped");
    }
    *address = mapping.release_to_caller();
    return {};
  } catch (const SharedMemoryError& e) {
    return with_detail(cannot_map, e.detail());
  }
}

std::string close_descriptor(int fd) {
  // Linux releases the descriptor even when close is interrupted (EINTR), so
  // it is not retried: the number may already belong to another open file.
  if (::close(fd) == 0 || errno == EINTR) return {};
  const int err = errno;
  return with_detail("unable to close shared-memory descriptor: " + std::to_string(fd),
                     os_error_text(err) + (err == EBADF ? "; it is not open (closed twice?)" : ""));
}

std::string unlink_region(const std::string& key) {
  const std::string cannot_unlink = "unable to unlink shared memory for key " + quote_key(key);
  try {
    if (detail::SharedMemoryObject::remove(key)) return {};
    return with_detail(cannot_unlink, os_error_text(ENOENT) + "; no region has this key (unlinked already?)");
  } catch (const SharedMemoryError& e) {
    return with_detail(cannot_unlink, e.detail());
  }
}

std::string unmap_region(void* address, std::size_t byte_size) {
  if (::munmap(address, byte_size) == 0) return {};
  const int err = errno;
  return with_detail("unable to munmap shared memory region",
                     os_error_text(err) + (err == EINVAL ? "; pass the address MapSharedMemory returned and its "
                                                           "byte_size (a page-aligned address, a size above 0)"
                                                         : ""));
}

}  // namespace tritonshm::shm_utils
