// The copy engine: how tensor bytes move into and out of regions.
//
// Small copies are memcpy. From stream_threshold on, a region is written with
// streaming (non-temporal) stores: it is read later by another process, so
// pulling its lines into this core's cache first (the read-for-ownership of
// ordinary stores) is pure waste. Copies out of a region into this process's
// memory keep ordinary stores (this process reads them next). From
// thread_threshold on, either is split across threads. Every streaming copy ends with a store
// fence, so a reader in another process sees all of it once the call returns.
// The thresholds were measured on the development machine (see the README,
// Performance); the instruction set is chosen at run time.
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>
#include <vector>

namespace tritonshm {

// The instruction sets with streaming stores, worst to best. `portable` is
// memcpy: any CPU, and what non-x86 machines use.
enum class StoreIsa { portable, sse2, avx2, avx512 };

std::string_view isa_name(StoreIsa isa) noexcept;
// The instruction set isa_name() calls `name`, if any.
std::optional<StoreIsa> isa_named(std::string_view name) noexcept;

struct CopyEngine {
  StoreIsa isa;                  // the best this CPU has, capped by TRITONSHM_COPY_ISA if set
  std::size_t stream_threshold;  // bytes from which copies use streaming stores
  std::size_t thread_threshold;  // bytes from which copies are split across threads
  std::size_t threads;           // threads for a split copy (TRITONSHM_COPY_THREADS, else the CPU's, at most 4)
};

// The engine as this process runs it (decided once, on first use).
const CopyEngine& copy_engine() noexcept;

// Every instruction set this CPU can run, best first (portable last).
std::vector<StoreIsa> supported_isas();

enum class CopyMethod {
  cached,     // memcpy
  streaming,  // streaming stores with the given instruction set, then a fence
};

// The engine's kernels on their own, for measuring the machine and for C++
// users' own buffers: copies n bytes from src to dst (not overlapping) with
// `method`, split across `threads` threads (1: the calling thread only).
// Unlike region copies this is not guarded: both ranges must stay backed.
// Throws SharedMemoryError if this CPU lacks `isa`.
void copy_with(CopyMethod method, StoreIsa isa, std::size_t threads, void* dst, const void* src, std::size_t n);

}  // namespace tritonshm
