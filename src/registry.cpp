#include "tritonshm/registry.hpp"

#include <algorithm>
#include <cerrno>
#include <mutex>
#include <unordered_map>
#include <utility>

#include "tritonshm/key.hpp"

namespace tritonshm {
namespace {

struct Entry {
  std::string key_as_given;
  std::shared_ptr<Region> region;
  std::size_t handles = 0;
  bool needs_unlink = false;  // some handle of this key created the object
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
  static Registry* instance = new Registry();
  return *instance;
}

enum class Acquire { open_or_create, create_only, open_only };

// Opens or creates the object without holding the registry lock: creation may
// reserve gigabytes, and other keys should not wait for that.
std::shared_ptr<Region> open_or_create(std::string_view key, uint64_t byte_size, Acquire how,
                                       const RegionOptions& options) {
  if (how == Acquire::create_only) return Region::create(key, byte_size, options);
  if (how == Acquire::open_only) return Region::open(key);
  // Another process may create or remove the name between our two tries;
  // a few rounds settle any real race.
  for (int attempt = 0;; ++attempt) {
    if (std::shared_ptr<Region> existing = Region::try_open(key)) return existing;
    try {
      return Region::create(key, byte_size, options);
    } catch (const SharedMemoryError& e) {
      if (e.os_error() != EEXIST || attempt == 8) throw;
    }
  }
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
  if (!state_) throw SharedMemoryError("shared memory handle is not mapped to any region");
  std::lock_guard lock(state_->mutex);
  if (!state_->region) {
    throw SharedMemoryError("shared memory handle '" + state_->name + "' (key '" + state_->key +
                            "') was destroyed and can no longer be used");
  }
  return state_->region;
}

void Handle::destroy() {
  if (!state_) throw SharedMemoryError("unable to destroy shared memory handle: it is not mapped to any region");
  std::shared_ptr<Region> region;
  {
    std::lock_guard lock(state_->mutex);
    if (!state_->region) {
      throw SharedMemoryError("unable to destroy shared memory handle '" + state_->name + "' (key '" + state_->key +
                              "'): it was already destroyed");
    }
    region = std::move(state_->region);
  }
  std::shared_ptr<Region> to_unlink;
  {
    Registry& r = registry();
    std::lock_guard lock(r.mutex);
    auto it = r.entries.find(state_->normalized_key);
    if (it != r.entries.end() && --it->second.handles == 0) {
      if (it->second.needs_unlink) to_unlink = it->second.region;
      r.entries.erase(it);
    }
  }
  // Outside the lock: the handle is already released whatever the kernel says.
  if (to_unlink) to_unlink->unlink();
}

class HandleFactory {
 public:
  static Handle acquire(std::string triton_shm_name, std::string_view shm_key, uint64_t byte_size, Acquire how,
                        const RegionOptions& options) {
    auto state = std::make_unique<Handle::State>();
    state->name = std::move(triton_shm_name);
    state->key = std::string(shm_key);
    state->normalized_key = normalize_key(shm_key);
    Registry& r = registry();
    if (how != Acquire::create_only) {
      std::lock_guard lock(r.mutex);
      auto it = r.entries.find(state->normalized_key);
      if (it != r.entries.end()) {
        ++it->second.handles;
        state->region = it->second.region;
        return Handle(std::move(state));
      }
    }
    std::shared_ptr<Region> region = open_or_create(shm_key, byte_size, how, options);
    std::lock_guard lock(r.mutex);
    auto [it, inserted] = r.entries.try_emplace(state->normalized_key);
    Entry& entry = it->second;
    if (inserted) {
      entry.key_as_given = state->key;
      entry.order = r.next_order++;
      entry.region = region;
    } else if (region->created()) {
      // Our old object's name was removed behind our back and we made a new
      // one: new handles share the new object; old handles keep the old mapping.
      entry.region = region;
    } else {
      region = entry.region;  // another thread attached first: share its mapping
    }
    entry.needs_unlink = entry.needs_unlink || region->created();
    ++entry.handles;
    state->region = std::move(region);
    return Handle(std::move(state));
  }
};

Handle create_shared_memory_region(std::string triton_shm_name, std::string_view shm_key, uint64_t byte_size,
                                   bool create_only, const RegionOptions& options) {
  return HandleFactory::acquire(std::move(triton_shm_name), shm_key, byte_size,
                                create_only ? Acquire::create_only : Acquire::open_or_create, options);
}

Handle attach_shared_memory_region(std::string triton_shm_name, std::string_view shm_key) {
  return HandleFactory::acquire(std::move(triton_shm_name), shm_key, 0, Acquire::open_only, {});
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
  const std::string normalized = normalize_key(key);
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  auto it = r.entries.find(normalized);
  return it == r.entries.end() ? 0 : it->second.handles;
}

}  // namespace tritonshm
