#include "tritonshm/arena.hpp"

#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <map>
#include <mutex>
#include <random>
#include <utility>

namespace tritonshm {
namespace detail {
namespace {

// Bumped in every child fork() makes. An arena records it at construction, so
// telling a child from the parent costs a load, not a getpid() per lease.
std::atomic<uint64_t> fork_generation{0};

void count_fork_in_child() noexcept { fork_generation.fetch_add(1, std::memory_order_relaxed); }

}  // namespace

// pending: added, not yet registered by the caller; committed: leases come
// from it; retired: never again (a request that gave up may still be
// written by the server), removed once its leases are released.
enum class SlotState { pending, committed, retired };

struct ArenaSlot {
  std::shared_ptr<const ArenaRegion> info;  // null: a free slot
  std::shared_ptr<Region> region;           // null once removed or closed
  std::map<uint64_t, uint64_t> free;        // offset -> length, coalesced
  uint64_t leased = 0;
  SlotState state = SlotState::pending;
};

struct ArenaState {
  ArenaOptions options;
  std::string stem;  // "<prefix>_<pid>_<random>"
  pid_t creator = ::getpid();
  uint64_t generation = fork_generation.load(std::memory_order_relaxed);
  mutable std::mutex mutex;
  std::vector<ArenaSlot> slots;
  // Written under the mutex, read without it.
  std::atomic<uint64_t> capacity{0};
  std::atomic<uint64_t> leased{0};
  std::atomic<uint64_t> high_water{0};
  std::atomic<std::size_t> leases{0};
  std::atomic<std::size_t> committed_regions{0};
  uint64_t next_region = 0;
  bool closed = false;

  bool owned_here() const noexcept { return generation == fork_generation.load(std::memory_order_relaxed); }

  // Throws in a forked child, before anything takes the lock.
  void check_owned_here() const {
    if (owned_here()) return;
    throw SharedMemoryError(Operation::lease, "",
                            "the arena belongs to process " + std::to_string(creator) +
                                " that created it; this is a forked child (pid " + std::to_string(::getpid()) +
                                "): create a new arena here",
                            Reason::forked_child);
  }

  void give_back(std::size_t index, uint64_t offset, uint64_t size) noexcept {
    std::lock_guard lock(mutex);
    ArenaSlot& slot = slots[index];
    slot.leased -= size;
    leased -= size;
    --leases;
    // Insert and merge with the free neighbours on both sides.
    auto next = slot.free.lower_bound(offset);
    if (next != slot.free.end() && offset + size == next->first) {
      size += next->second;
      next = slot.free.erase(next);
    }
    if (next != slot.free.begin()) {
      auto prev = std::prev(next);
      if (prev->first + prev->second == offset) {
        prev->second += size;
        return;
      }
    }
    slot.free.emplace_hint(next, offset, size);
  }

  std::string usage() const {  // caller holds the lock
    std::size_t regions = 0;
    for (const ArenaSlot& s : slots) regions += s.region != nullptr;
    return std::to_string(leased) + " bytes leased in " + std::to_string(leases) + " lease(s), of " +
           std::to_string(capacity) + " bytes in " + std::to_string(regions) + " region(s); the limit is " +
           (options.max_bytes == UINT64_MAX ? std::string("none") : std::to_string(options.max_bytes) + " bytes");
  }

  std::vector<ArenaRegion> listed(SlotState state) const {
    check_owned_here();
    std::lock_guard lock(mutex);
    std::vector<ArenaRegion> out;
    for (const ArenaSlot& slot : slots)
      if (slot.region && slot.state == state) out.push_back(*slot.info);
    return out;
  }
};

namespace {

// Frees the state, except in a forked child whose parent had a thread inside
// the lock at the fork: the slots may be half changed there, so the child
// leaves them (and their mappings) to its exit. The child is single-threaded,
// so try_lock tells which without ever waiting.
void delete_state(ArenaState* state) noexcept {
  if (!state->owned_here()) {
    if (!state->mutex.try_lock()) return;
    state->mutex.unlock();
  }
  delete state;
}

}  // namespace
}  // namespace detail

namespace {

uint64_t round_up(uint64_t n, uint64_t alignment) { return (n + alignment - 1) & ~(alignment - 1); }

std::string random_hex() {
  std::random_device device;
  char text[9];
  std::snprintf(text, sizeof text, "%08x", static_cast<unsigned>(device()));
  return text;
}

SharedMemoryError closed_error() {
  return SharedMemoryError(Operation::lease, "", "the arena is closed", Reason::closed);
}

}  // namespace

Lease::Lease(std::shared_ptr<detail::ArenaState> state, std::shared_ptr<const ArenaRegion> info, Slice slice,
             std::size_t index) noexcept
    : state_(std::move(state)),
      info_(std::move(info)),
      slice_(std::move(slice)),
      index_(index),
      offset_(slice_->offset()),
      size_(slice_->size()) {}

Lease::Lease(Lease&& other) noexcept
    : state_(std::move(other.state_)),
      info_(other.info_),  // copied: a moved-from lease still has a name
      slice_(std::exchange(other.slice_, std::nullopt)),
      index_(other.index_),
      offset_(other.offset_),
      size_(other.size_) {}

Lease& Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    release();
    state_ = std::move(other.state_);
    info_ = other.info_;
    slice_ = std::exchange(other.slice_, std::nullopt);
    index_ = other.index_;
    offset_ = other.offset_;
    size_ = other.size_;
  }
  return *this;
}

Lease::~Lease() { release(); }

const Slice& Lease::slice() const {
  if (!slice_) throw SharedMemoryError(Operation::lease, key(), "the lease was released");
  return *slice_;
}

const std::shared_ptr<Region>& Lease::region() const noexcept {
  static const std::shared_ptr<Region> none;
  return slice_ ? slice_->region() : none;
}

void Lease::release() noexcept {
  if (!state_) return;
  if (state_->owned_here()) state_->give_back(index_, offset_, size_);
  state_.reset();
  slice_.reset();  // after close(), the last lease of a region unmaps it
}

Arena::Arena(ArenaOptions options) : state_(new detail::ArenaState, &detail::delete_state) {
  static const int counting_forks = ::pthread_atfork(nullptr, nullptr, &detail::count_fork_in_child);
  (void)counting_forks;
  if (options.alignment == 0 || (options.alignment & (options.alignment - 1)) != 0) {
    throw SharedMemoryError(Operation::lease, "",
                            "alignment " + std::to_string(options.alignment) + " is not a power of two");
  }
  state_->stem = options.key_prefix + "_" + std::to_string(state_->creator) + "_" + random_hex();
  state_->options = std::move(options);
}

Arena::~Arena() { close(); }

ArenaRegion Arena::add_region(uint64_t size) {
  detail::ArenaState& s = *state_;
  s.check_owned_here();
  std::string key;
  {
    std::lock_guard lock(s.mutex);
    if (s.closed) throw closed_error();
    if (size > s.options.max_bytes - std::min<uint64_t>(s.capacity, s.options.max_bytes)) {
      throw SharedMemoryError(Operation::lease, "",
                              "a new region of " + std::to_string(size) + " bytes would pass the limit: " + s.usage(),
                              Reason::limit_reached);
    }
    key = "/" + s.stem + "_" + std::to_string(s.next_region++);
    s.capacity += size;  // claimed now, so that two callers cannot both pass the limit
  }
  std::shared_ptr<Region> region;
  try {
    region = Region::create(key, size, s.options.region_options);  // without the lock: may take a while
  } catch (...) {
    std::lock_guard lock(s.mutex);
    if (!s.closed) s.capacity -= size;
    throw;
  }
  auto info = std::make_shared<const ArenaRegion>(ArenaRegion{key.substr(1), key, size});
  {
    std::lock_guard lock(s.mutex);
    if (!s.closed) {
      auto slot = std::find_if(s.slots.begin(), s.slots.end(), [](const detail::ArenaSlot& d) { return !d.info; });
      if (slot == s.slots.end()) slot = s.slots.emplace(s.slots.end());
      slot->info = info;
      slot->region = std::move(region);
      if (size != 0) slot->free.emplace(0, size);
      return *info;
    }
  }
  // close() ran meanwhile and could not see this region: it goes the same way.
  region->remove_if_owned();
  throw closed_error();
}

void Arena::commit_region(std::string_view name) {
  detail::ArenaState& s = *state_;
  s.check_owned_here();
  std::lock_guard lock(s.mutex);
  if (s.closed) throw closed_error();
  for (detail::ArenaSlot& slot : s.slots) {
    if (slot.region && slot.state == detail::SlotState::pending && slot.info->name == name) {
      slot.state = detail::SlotState::committed;
      ++s.committed_regions;
      return;
    }
  }
  throw SharedMemoryError(Operation::lease, "", "the arena has no pending region named " + quote_key(name));
}

bool Arena::retire_region(std::string_view name) {
  detail::ArenaState& s = *state_;
  s.check_owned_here();
  std::lock_guard lock(s.mutex);
  for (detail::ArenaSlot& slot : s.slots) {
    if (slot.region && slot.info->name == name) {
      if (slot.state == detail::SlotState::committed) --s.committed_regions;
      slot.state = detail::SlotState::retired;
      return true;
    }
  }
  return false;
}

bool Arena::remove_region(std::string_view name) {
  detail::ArenaState& s = *state_;
  s.check_owned_here();
  std::shared_ptr<Region> region;
  {
    std::lock_guard lock(s.mutex);
    for (detail::ArenaSlot& slot : s.slots) {
      if (slot.region && slot.info->name == name && slot.leased == 0) {
        region = std::move(slot.region);
        s.capacity -= slot.info->size;
        if (slot.state == detail::SlotState::committed) --s.committed_regions;
        slot = detail::ArenaSlot{};  // free for the next add_region
        break;
      }
    }
  }
  if (!region) return false;
  region->remove_if_owned();
  return true;
}

std::optional<Lease> Arena::try_lease(uint64_t bytes) {
  detail::ArenaState& s = *state_;
  s.check_owned_here();
  const uint64_t alignment = s.options.alignment;
  if (bytes > UINT64_MAX - alignment) {
    throw SharedMemoryError(Operation::lease, "", std::to_string(bytes) + " bytes cannot be leased");
  }
  const uint64_t size = round_up(bytes == 0 ? 1 : bytes, alignment);
  std::lock_guard lock(s.mutex);
  if (s.closed) throw closed_error();
  for (std::size_t i = 0; i < s.slots.size(); ++i) {
    detail::ArenaSlot& slot = s.slots[i];
    if (slot.state != detail::SlotState::committed) continue;  // unknown to the server yet, or retired
    // First fit. Free blocks start aligned (regions are page aligned and every
    // lease is a multiple of the alignment), so no padding is needed.
    for (auto it = slot.free.begin(); it != slot.free.end(); ++it) {
      if (it->second < size) continue;
      const uint64_t offset = it->first;
      const uint64_t rest = it->second - size;
      slot.free.erase(it);
      if (rest != 0) slot.free.emplace(offset + size, rest);
      slot.leased += size;
      s.leased += size;
      ++s.leases;
      if (s.leased > s.high_water) s.high_water = s.leased.load();
      return Lease(state_, slot.info, Slice(slot.region, offset, size), i);
    }
  }
  return std::nullopt;
}

Lease Arena::lease(uint64_t bytes) {
  if (std::optional<Lease> lease = try_lease(bytes)) return std::move(*lease);
  std::lock_guard lock(state_->mutex);
  throw SharedMemoryError(Operation::lease, "",
                          "no region has room for " + std::to_string(bytes) + " bytes: " + state_->usage());
}

uint64_t Arena::capacity() const noexcept { return state_->capacity; }
uint64_t Arena::leased_bytes() const noexcept { return state_->leased; }
uint64_t Arena::high_water_bytes() const noexcept { return state_->high_water; }
std::size_t Arena::lease_count() const noexcept { return state_->leases; }
std::size_t Arena::region_count() const noexcept { return state_->committed_regions; }
uint64_t Arena::max_bytes() const noexcept { return state_->options.max_bytes; }
uint64_t Arena::alignment() const noexcept { return state_->options.alignment; }
bool Arena::owned_here() const noexcept { return state_->owned_here(); }

std::vector<ArenaRegion> Arena::regions() const { return state_->listed(detail::SlotState::committed); }
std::vector<ArenaRegion> Arena::pending_regions() const { return state_->listed(detail::SlotState::pending); }
std::vector<ArenaRegion> Arena::retired_regions() const { return state_->listed(detail::SlotState::retired); }

void Arena::close() noexcept {
  detail::ArenaState& s = *state_;
  if (!s.owned_here()) return;  // the parent's: not ours to lock or unlink
  std::vector<std::shared_ptr<Region>> regions;
  {
    std::lock_guard lock(s.mutex);
    if (s.closed) return;
    s.closed = true;
    for (detail::ArenaSlot& slot : s.slots) {
      if (slot.region) regions.push_back(std::move(slot.region));  // leases keep their own reference
      slot.state = detail::SlotState::pending;
    }
    s.capacity = 0;
    s.committed_regions = 0;
  }
  for (const auto& region : regions) {
    try {
      region->remove_if_owned();
    } catch (...) {
      // The name is already gone or the kernel refused: nothing more to do here.
    }
  }
  // `regions` goes here: each region without a live lease is unmapped now.
}

}  // namespace tritonshm
