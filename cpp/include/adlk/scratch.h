// Per-thread scratch memory that persists between calls.
//
// Kernels that need a work buffer per OpenMP thread ask for it here instead of
// allocating: a fresh allocation of a few MiB costs page faults (and zero fill) on
// every call. Each slot grows to the largest size asked for on that thread and is kept
// until the thread exits. Alignment is 64 bytes.
//
// Allocation can fail, and an exception must never leave an OpenMP region (it would
// terminate the process). Inside a region, team members take their buffers through a
// RegionScratch: a member whose allocation fails skips its share of the work, never a
// worksharing construct or a barrier, and the thread that opened the region throws
// std::bad_alloc (MemoryError in Python) once it has closed. Each member keeps its own
// buffers, in memory it allocated itself (buffers carved for all members from the
// caller's memory made small calls up to a third slower on 2 threads), and two threads
// that run kernels at the same time (Python threads, the GIL released) have distinct
// OpenMP teams, so they never share a buffer.
#pragma once

#include <atomic>
#include <cstddef>
#include <new>

#include "adlk/common.h"
#include "adlk/tuning.h"

namespace adlk {


// Buffer `slot` (0 <= slot < kScratchSlots) of the calling thread, at least `bytes` long,
// or nullptr when that much cannot be allocated.
void* thread_scratch_or_null(int slot, std::size_t bytes) noexcept;

// The same, throwing std::bad_alloc: outside parallel regions only.
inline void* thread_scratch(int slot, std::size_t bytes) {
  void* p = thread_scratch_or_null(slot, bytes);
  if (!p && bytes > 0) throw std::bad_alloc();
  return p;
}

template <typename T>
T* thread_scratch_as(int slot, std::size_t count) {
  return static_cast<T*>(thread_scratch(slot, std::size_t(mul_checked(
                                                   index_t(count), index_t(sizeof(T)),
                                                   "thread_scratch: bytes"))));
}

// The per-thread buffers of one parallel region (see above). Declare it before the
// region, call get() inside, check() after.
class RegionScratch {
 public:
  // This thread's buffer `slot` of `count` elements of T (nullptr when count is 0). On
  // failure: nullptr, ok = false, and check() will throw.
  template <typename T>
  T* get(int slot, index_t count, bool& ok) {
    std::size_t bytes;
    if (count <= 0) return nullptr;
    void* p = __builtin_mul_overflow(std::size_t(count), sizeof(T), &bytes)
                  ? nullptr
                  : thread_scratch_or_null(slot, bytes);
    if (!p) {
      ok = false;
      failed_.store(true, std::memory_order_relaxed);
    }
    return static_cast<T*>(p);
  }
  // In the thread that opened the region, after it: std::bad_alloc if a member failed.
  void check() const {
    if (failed_.load(std::memory_order_relaxed)) throw std::bad_alloc();
  }

 private:
  std::atomic<bool> failed_{false};
};

}  // namespace adlk
