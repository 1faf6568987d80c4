#include "object_mapping.hpp"

#include <cerrno>
#include <utility>

#include "tritonshm/error.hpp"

namespace tritonshm::detail {
namespace {

void at(Step* failed_at, Step step) noexcept {
  if (failed_at != nullptr) *failed_at = step;
}

Acquired opened(SharedMemoryObject object, const Acquisition& acquisition, Step* failed_at) {
  if (acquisition.grow_existing) {
    at(failed_at, Step::size);
    object.reserve(acquisition.size);  // grows a smaller object, never shrinks one another process may map
  }
  Acquired acquired{std::move(object), nullptr};
  if (acquisition.map) {
    at(failed_at, Step::map);
    acquired.mapping = std::make_shared<Mapping>(acquired.object.fd(), acquired.object.size());
  }
  return acquired;
}

Acquired created(std::string_view key, const Acquisition& acquisition, Step* failed_at) {
  at(failed_at, Step::open);
  SharedMemoryObject object = SharedMemoryObject::create_unpublished(key, 0, acquisition.mode, /*reserve=*/false);
  at(failed_at, Step::size);
  object.size_unpublished(acquisition.size, acquisition.reserve);
  std::shared_ptr<Mapping> mapping;
  if (acquisition.map) {
    at(failed_at, Step::map);
    mapping = std::make_shared<Mapping>(object.fd(), acquisition.size);
  }
  const int unpublished_fd = object.fd();
  at(failed_at, Step::open);
  object.publish();  // EEXIST if the key exists
  if (mapping) {
    at(failed_at, Step::map);
    try {
      // Published through a new descriptor: map that one, so that the mapping
      // shows under its key, not as a deleted file. Prefaulting comes after:
      // pages faulted into the mapping replaced would be lost.
      if (object.fd() != unpublished_fd) mapping->rebind(object.fd());
      if (acquisition.prefault) mapping->prefault();
    } catch (const SharedMemoryError&) {
      (void)object.remove_if_owned();
      throw;
    }
  }
  return {std::move(object), std::move(mapping)};
}

}  // namespace

Acquired acquire(Acquire how, std::string_view key, const Acquisition& acquisition, Step* failed_at) {
  at(failed_at, Step::open);
  if (how == Acquire::open_only) return opened(SharedMemoryObject(open_only, key), acquisition, failed_at);
  if (how == Acquire::create_only) return created(key, acquisition, failed_at);
  for (int round = 1;; ++round) {
    at(failed_at, Step::open);
    if (std::optional<SharedMemoryObject> object = SharedMemoryObject::try_open(key)) {
      return opened(std::move(*object), acquisition, failed_at);
    }
    try {
      return created(key, acquisition, failed_at);
    } catch (const SharedMemoryError& e) {
      // Someone created it since we looked: open theirs.
      if (e.os_error() != EEXIST || round == kOpenOrCreateRounds) throw;
    }
  }
}

std::optional<Fault> probe_backed(const std::byte* begin, std::size_t length) noexcept {
  if (length == 0) return std::nullopt;
  auto read = [last = begin + length - 1]() noexcept {
    [[maybe_unused]] const std::byte value = *static_cast<const volatile std::byte*>(last);
  };
  return guarded(read);
}

}  // namespace tritonshm::detail
