#include "tritonshm/arena.hpp"

#include <unistd.h>

#include <cstdio>
#include <map>
#include <mutex>
#include <random>
#include <utility>

namespace tritonshm {
namespace detail {

struct ArenaSlot {
  std::shared_ptr<const ArenaRegion> info;
  std::shared_ptr<Region> region;     // null once removed
  std::map<uint64_t, uint64_t> free;  // offset -> length, coalesced
  uint64_t leased = 0;
};

struct ArenaState {
  ArenaOptions options;
  std::string stem;  // "<prefix>_<pid>_<random>"
  mutable std::mutex mutex;
  std::vector<ArenaSlot> slots;
  uint64_t capacity = 0;
  uint64_t leased = 0;
  std::size_t leases = 0;
  uint64_t next_region = 0;
  bool closed = false;

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
};

}  // namespace detail

namespace {

uint64_t round_up(uint64_t n, uint64_t alignment) { return (n + alignment - 1) & ~(alignment - 1); }

std::string random_hex() {
  std::random_device device;
  char text[9];
  std::snprintf(text, sizeof text, "%08x", static_cast<unsigned>(device()));
  return text;
}

}  // namespace

Lease::Lease(std::shared_ptr<detail::ArenaState> state, std::shared_ptr<const ArenaRegion> info,
             std::shared_ptr<Region> region, std::size_t index, uint64_t offset, uint64_t size) noexcept
    : state_(std::move(state)),
      info_(std::move(info)),
      region_(std::move(region)),
      index_(index),
      offset_(offset),
      size_(size) {}

Lease::Lease(Lease&& other) noexcept
    : state_(std::move(other.state_)),
      info_(other.info_),
      region_(other.region_),
      index_(other.index_),
      offset_(other.offset_),
      size_(other.size_) {}

Lease& Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    release();
    state_ = std::move(other.state_);
    info_ = other.info_;
    region_ = other.region_;
    index_ = other.index_;
    offset_ = other.offset_;
    size_ = other.size_;
  }
  return *this;
}

Lease::~Lease() { release(); }

void Lease::release() noexcept {
  if (!state_) return;
  state_->give_back(index_, offset_, size_);
  state_.reset();
}

Arena::Arena(ArenaOptions options) : state_(std::make_shared<detail::ArenaState>()) {
  if (options.alignment == 0 || (options.alignment & (options.alignment - 1)) != 0) {
    throw SharedMemoryError(Operation::lease, "",
                            "alignment " + std::to_string(options.alignment) + " is not a power of two");
  }
  state_->stem = options.key_prefix + "_" + std::to_string(::getpid()) + "_" + random_hex();
  state_->options = std::move(options);
}

Arena::~Arena() { close(); }

ArenaRegion Arena::add_region(uint64_t size) {
  detail::ArenaState& s = *state_;
  std::string key;
  {
    std::lock_guard lock(s.mutex);
    if (s.closed) throw SharedMemoryError(Operation::lease, "", "the arena is closed");
    if (size > s.options.max_bytes - std::min(s.capacity, s.options.max_bytes)) {
      throw SharedMemoryError(Operation::lease, "",
                              "a new region of " + std::to_string(size) + " bytes would pass the limit: " + s.usage());
    }
    key = "/" + s.stem + "_" + std::to_string(s.next_region++);
    s.capacity += size;  // claimed now, so that two callers cannot both pass the limit
  }
  std::shared_ptr<Region> region;
  try {
    region = Region::create(key, size, s.options.region_options);  // without the lock: may take a while
  } catch (...) {
    std::lock_guard lock(s.mutex);
    s.capacity -= size;
    throw;
  }
  auto info = std::make_shared<const ArenaRegion>(ArenaRegion{key.substr(1), key, size});
  std::lock_guard lock(s.mutex);
  detail::ArenaSlot slot;
  slot.info = info;
  slot.region = std::move(region);
  if (size != 0) slot.free.emplace(0, size);
  s.slots.push_back(std::move(slot));
  return *info;
}

bool Arena::remove_region(std::string_view name) {
  detail::ArenaState& s = *state_;
  std::shared_ptr<Region> region;
  {
    std::lock_guard lock(s.mutex);
    for (detail::ArenaSlot& slot : s.slots) {
      if (slot.region && slot.info->name == name && slot.leased == 0) {
        region = std::move(slot.region);
        slot.free.clear();
        s.capacity -= slot.info->size;
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
  const uint64_t alignment = s.options.alignment;
  if (bytes > UINT64_MAX - alignment) {
    throw SharedMemoryError(Operation::lease, "", std::to_string(bytes) + " bytes cannot be leased");
  }
  const uint64_t size = round_up(bytes == 0 ? 1 : bytes, alignment);
  std::lock_guard lock(s.mutex);
  if (s.closed) throw SharedMemoryError(Operation::lease, "", "the arena is closed");
  for (std::size_t i = 0; i < s.slots.size(); ++i) {
    detail::ArenaSlot& slot = s.slots[i];
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
      return Lease(state_, slot.info, slot.region, i, offset, size);
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

uint64_t Arena::capacity() const {
  std::lock_guard lock(state_->mutex);
  return state_->capacity;
}

uint64_t Arena::leased_bytes() const {
  std::lock_guard lock(state_->mutex);
  return state_->leased;
}

std::size_t Arena::lease_count() const {
  std::lock_guard lock(state_->mutex);
  return state_->leases;
}

uint64_t Arena::max_bytes() const noexcept { return state_->options.max_bytes; }
uint64_t Arena::alignment() const noexcept { return state_->options.alignment; }

std::vector<ArenaRegion> Arena::regions() const {
  std::lock_guard lock(state_->mutex);
  std::vector<ArenaRegion> out;
  for (const detail::ArenaSlot& slot : state_->slots)
    if (slot.region) out.push_back(*slot.info);
  return out;
}

void Arena::close() noexcept {
  std::vector<std::shared_ptr<Region>> regions;
  {
    std::lock_guard lock(state_->mutex);
    if (state_->closed) return;
    state_->closed = true;
    for (detail::ArenaSlot& slot : state_->slots) {
      if (slot.region) regions.push_back(slot.region);  // leases keep their own reference
    }
  }
  for (const auto& region : regions) {
    try {
      region->remove_if_owned();
    } catch (...) {
      // The name is already gone or the kernel refused: nothing more to do here.
    }
  }
}

}  // namespace tritonshm
