#include "tritonshm/region.hpp"

#include <sys/mman.h>
#include <sys/stat.h>

#include <cerrno>
#include <utility>
#include <vector>

#include "tritonshm/copy.hpp"
#include "tritonshm/key.hpp"

namespace tritonshm {

std::shared_ptr<Region> Region::create(std::string_view key, uint64_t size, const RegionOptions& options) {
  SharedMemoryObject object(create_only, std::string(key), size, options.mode, options.reserve);
  try {
    std::shared_ptr<Region> region(new Region(std::move(object), true));
    if (options.prefault) std::const_pointer_cast<Mapping>(region->mapping_)->prefault();
    return region;
  } catch (...) {
    // The name exists only because of us and nobody got a handle: take it back
    // so a failed create leaves nothing in /dev/shm.
    ::shm_unlink(normalize_key(key).c_str());
    throw;
  }
}

std::shared_ptr<Region> Region::open(std::string_view key) {
  return std::shared_ptr<Region>(new Region(SharedMemoryObject(open_only, std::string(key)), false));
}

std::shared_ptr<Region> Region::try_open(std::string_view key) {
  std::optional<SharedMemoryObject> object = SharedMemoryObject::try_open(std::string(key));
  if (!object) return nullptr;
  return std::shared_ptr<Region>(new Region(std::move(*object), false));
}

Region::Region(SharedMemoryObject object, bool created) : object_(std::move(object)), created_(created) {
  const ObjectStatus status = object_.status();
  identity_ = status.identity;
  mapping_ = std::make_shared<const Mapping>(object_.fd(), status.size, ("'" + object_.key() + "'").c_str());
}

void Region::check_bounds(uint64_t offset, uint64_t length, const char* what) const {
  const uint64_t mapped = size();
  if (offset > mapped || length > mapped - offset) {
    // Written so that no sum can overflow: offsets near 2^64 are reported as given.
    throw SharedMemoryError(std::string(what) + " shared memory region '" + key() + "': " + std::to_string(length) +
                            " bytes at offset " + std::to_string(offset) + " do not fit in its " +
                            std::to_string(mapped) + " bytes");
  }
}

void Region::throw_shrunk(uint64_t offset, uint64_t length, const char* what) const {
  throw SharedMemoryError(std::string(what) + " shared memory region '" + key() + "': the object was shrunk to " +
                          std::to_string(object_.size()) + " bytes by another process, below the " +
                          std::to_string(size()) + " bytes mapped here (access of " + std::to_string(length) +
                          " bytes at offset " + std::to_string(offset) + ")");
}

void Region::check_range(uint64_t offset, uint64_t length, const char* what) const {
  check_bounds(offset, length, what);
  if (length != 0 && offset + length > object_.size()) throw_shrunk(offset, length, what);
}

void Region::check_backed(uint64_t offset, uint64_t length, const char* what) const {
  check_bounds(offset, length, what);
  if (length != 0 && !probe_readable(data() + offset + length - 1)) throw_shrunk(offset, length, what);
}

std::span<std::byte> Region::bytes(uint64_t offset, uint64_t length) const {
  check_range(offset, length, "unable to access");
  return {data() + offset, static_cast<std::size_t>(length)};
}

void Region::write(uint64_t offset, std::span<const std::span<const std::byte>> parts) const {
  uint64_t total = 0;
  for (const auto& part : parts) {
    if (part.size() > UINT64_MAX - total) {
      throw SharedMemoryError("unable to set shared memory region '" + key() + "': the total size overflows 64 bits");
    }
    total += part.size();
  }
  check_bounds(offset, total, "unable to set");
  std::byte* dst = data() + offset;
  for (const auto& part : parts) {
    if (!copy_guarded(dst, part.data(), part.size())) throw_shrunk(offset, total, "unable to set");
    dst += part.size();
  }
}

void Region::write(uint64_t offset, const void* data, uint64_t length) const {
  const std::span<const std::byte> part(static_cast<const std::byte*>(data), static_cast<std::size_t>(length));
  write(offset, std::span<const std::span<const std::byte>>(&part, 1));
}

void Region::read(uint64_t offset, void* out, uint64_t length) const {
  check_bounds(offset, length, "unable to read");
  if (!copy_guarded(static_cast<std::byte*>(out), data() + offset, static_cast<std::size_t>(length))) {
    throw_shrunk(offset, length, "unable to read");
  }
}

bool Region::unlink() const {
  struct stat st{};
  if (::stat(key_path(key()).c_str(), &st) != 0) {
    if (errno == ENOENT) return false;
  } else if (ObjectIdentity{st.st_dev, st.st_ino} != identity_) {
    return false;  // the key now names someone else's object
  }
  return SharedMemoryObject::remove(key());
}

}  // namespace tritonshm
