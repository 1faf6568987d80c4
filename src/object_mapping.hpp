// Internal: a shared memory object composed with its mapping and the SIGBUS
// guard, once for Region and for the drop-in shm_utils: how a key is acquired
// (created, opened, or either against peers that create or remove it
// meanwhile), and how a mapped range is known to be still backed.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>

#include "fault_guard.hpp"
#include "tritonshm/detail/mapping.hpp"
#include "tritonshm/detail/shared_memory_object.hpp"

namespace tritonshm::detail {

enum class Acquire { create_only, open_only, open_or_create };

// How acquire() makes a new object, and what it does with an existing one.
struct Acquisition {
  uint64_t size = 0;           // of a new object (an existing one keeps its own, unless grow_existing)
  mode_t mode = 0600;          // of a new object, exactly (no umask)
  bool reserve = true;         // every page of a new object allocated (posix_fallocate) before it has its name
  bool grow_existing = false;  // an existing object smaller than `size` grown to it; its first `size` bytes reserved
  bool map = true;             // mapped whole (the drop-in shm_utils maps later, at its caller's offset)
  bool prefault = false;       // the mapping's pages faulted in, once (with map)
};

// Where acquire() failed: the drop-in shm_utils tells opening or creating the
// object apart from sizing it, as the client library does.
enum class Step { open, size, map };

struct Acquired {
  SharedMemoryObject object;
  std::shared_ptr<Mapping> mapping;  // null without Acquisition::map
};

// Acquires `key`. A new object is sized and reserved before its key exists
// (nobody sees it half made, and a failure there leaves nothing), mapped,
// given its key, mapped again through the descriptor opened by the key (so
// the mapping shows under it) and prefaulted; a failure after it has its key
// removes the key. open_or_create opens an object created meanwhile by a peer
// instead, and creates one removed meanwhile, for up to kOpenOrCreateRounds
// rounds. Throws SharedMemoryError with a detail only (no operation); with
// `failed_at`, says at which step.
inline constexpr int kOpenOrCreateRounds = 8;
Acquired acquire(Acquire how, std::string_view key, const Acquisition& acquisition, Step* failed_at = nullptr);

// Whether [begin, begin + length) is still backed: its last byte read under
// the guard (truncation removes pages from the end, so if the last page is
// backed, the whole range is); the fault if not. No system call but the
// guard's (fault_guard.hpp), and one minor page fault if that page was not
// mapped into this process yet.
[[nodiscard]] std::optional<Fault> probe_backed(const std::byte* begin, std::size_t length) noexcept;

}  // namespace tritonshm::detail
