#include "tritonshm/registry.hpp"

#include <pthread.h>

#include <algorithm>
#include <cerrno>
#include <mutex>
#include <unordered_map>
#include <utility>

#include "tritonshm/detail/key.hpp"

namespace tritonshm {
namespace {

struct Entry {
  std::string key_as_given;
  std::shared_ptr<Region> region;
  std::size_t handles = 0;
  uint64_t order = 0;
};

// The table is process-wide by design (it mirrors the module-level state of the
// reference) and is never destroyed, so handles released during static
// destruction still find it.
struct Registry {
  std::mutex mutex;
  std::unordered_map<std::string, Entry> entries;  // by normalized key
  uint64_t next_order = 0;
};

Registry& registry() {
  static Registry* instance = [] {
    auto* r = new Registry();
    // fork() copies only the calling thread: if another thread held the lock
    // then, the child would wait for it forever. Hold it across fork instead.
    ::pthread_atfork([] { registry().mutex.lock(); }, [] { registry().mutex.unlock(); },
                     [] { registry().mutex.unlock(); });
    return r;
  }();
  return *instance;
}

}  // namespace

struct Handle::State {
  std::mutex mutex;
  std::string name;
  std::string key;
  std::string normalized_key;
  std::shared_ptr<Region> region;  // null once destroyed
};

Handle::Handle(std::unique_ptr<State> state) : state_(std::move(state)) {}
Handle::Handle() noexcept = default;
Handle::Handle(Handle&&) noexcept = default;

Handle& Handle::operator=(Handle&& other) noexcept {
  if (this != &other) {
    try {
      if (live()) destroy();
    } catch (...) {
    }
    state_ = std::move(other.state_);
  }
  return *this;
}

Handle::~Handle() {
  try {
    if (live()) destroy();
  } catch (...) {
  }
}

namespace {
const std::string empty_string;
}

const std::string& Handle::name() const { return state_ ? state_->name : empty_string; }
const std::string& Handle::key() const { return state_ ? state_->key : empty_string; }

bool Handle::live() const {
  if (!state_) return false;
  std::lock_guard lock(state_->mutex);
  return state_->region != nullptr;
}

std::shared_ptr<Region> Handle::region() const {
  if (!state_) throw SharedMemoryError("the handle is not mapped to any region");
  std::lock_guard lock(state_->mutex);
  if (!state_->region) {
    throw SharedMemoryError("the handle '" + state_->name + "' was destroyed and can no longer be used");
  }
  return state_->region;
}

void Handle::destroy() {
  if (!state_) throw SharedMemoryError(Operation::destroy, "", "the handle is not mapped to any region");
  std::shared_ptr<Region> region;
  {
    std::lock_guard lock(state_->mutex);
    if (!state_->region) {
      throw SharedMemoryError(Operation::destroy, state_->key,
                              "the handle '" + state_->name + "' was already destroyed");
    }
    region = std::move(state_->region);
  }
  std::shared_ptr<Region> last;
  {
    Registry& r = registry();
    std::lock_guard lock(r.mutex);
    auto it = r.entries.find(state_->normalized_key);
    if (it != r.entries.end() && --it->second.handles == 0) {
      last = std::move(it->second.region);
      r.entries.erase(it);
    }
  }
  // Outside the lock: the handle is already released whatever the kernel says.
  if (last) last->remove_if_owned();
}

class HandleFactory {
 public:
  template <class Tag>
  static Handle acquire(std::string triton_shm_name, std::string_view shm_key, uint64_t byte_size, Tag tag,
                        const RegionOptions& options, Operation op) {
    auto state = std::make_unique<Handle::State>();
    state->name = std::move(triton_shm_name);
    state->key = std::string(shm_key);
    state->normalized_key = with_operation(op, shm_key, [&] { return detail::normalize_key(shm_key); });
    Registry& r = registry();
    if constexpr (!std::is_same_v<Tag, create_only_t>) {
      std::lock_guard lock(r.mutex);
      auto it = r.entries.find(state->normalized_key);
      if (it != r.entries.end()) {
        ++it->second.handles;
        state->region = it->second.region;
        return Handle(std::move(state));
      }
    }
    // Without the lock: creation may reserve gigabytes, and other keys should
    // not wait for that.
    std::shared_ptr<Region> region = Region::acquire(tag, shm_key, byte_size, options);
    std::lock_guard lock(r.mutex);
    auto [it, inserted] = r.entries.try_emplace(state->normalized_key);
    Entry& entry = it->second;
    if (inserted) {
      entry.key_as_given = state->key;
      entry.order = r.next_order++;
      entry.region = region;
    } else if (region->owns()) {
      // Our old object's name was removed behind our back and we made a new
      // one: new handles share the new object; old handles keep the old mapping.
      entry.region = region;
    } else {
      region = entry.region;  // another thread attached first: share its mapping
    }
    ++entry.handles;
    state->region = std::move(region);
    return Handle(std::move(state));
  }
};

Handle create_shared_memory_region(std::string triton_shm_name, std::string_view shm_key, uint64_t byte_size,
                                   open_or_create_t tag, const RegionOptions& options) {
  return HandleFactory::acquire(std::move(triton_shm_name), shm_key, byte_size, tag, options, Operation::create);
}

Handle create_shared_memory_region(std::string triton_shm_name, std::string_view shm_key, uint64_t byte_size,
                                   create_only_t tag, const RegionOptions& options) {
  return HandleFactory::acquire(std::move(triton_shm_name), shm_key, byte_size, tag, options, Operation::create);
}

Handle attach_shared_memory_region(std::string triton_shm_name, std::string_view shm_key) {
  return HandleFactory::acquire(std::move(triton_shm_name), shm_key, 0, open_only, {}, Operation::open);
}

std::vector<std::string> mapped_shared_memory_regions() {
  Registry& r = registry();
  std::vector<std::pair<uint64_t, std::string>> ordered;
  {
    std::lock_guard lock(r.mutex);
    ordered.reserve(r.entries.size());
    for (const auto& [normalized, entry] : r.entries) ordered.emplace_back(entry.order, entry.key_as_given);
  }
  std::sort(ordered.begin(), ordered.end());
  std::vector<std::string> keys;
  keys.reserve(ordered.size());
  for (auto& [order, key] : ordered) keys.push_back(std::move(key));
  return keys;
}

std::size_t handle_count(std::string_view key) {
  const std::string normalized = detail::normalize_key(key);
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  auto it = r.entries.find(normalized);
  return it == r.entries.end() ? 0 : it->second.handles;
}

}  // namespace tritonshm
