// Per-thread scratch memory that persists between calls.
//
// Kernels that need a work buffer ask for it here instead of allocating: a fresh
// allocation of a few MiB costs page faults (and zero fill) on every call. Each slot of
// a thread grows to the largest size asked for on that thread and is kept until the
// thread exits. Alignment is 64 bytes.
//
// Allocation can fail (std::bad_alloc, MemoryError in Python), and an exception must
// never leave an OpenMP region (it would terminate the process). So memory is never
// requested inside a parallel region: the thread that opens the region reserves a
// TeamScratch, one buffer per team member carved from its own slot, and each member
// takes its part by omp_get_thread_num(). The memory stays the calling thread's, so two
// threads that run kernels at the same time (Python threads, the GIL released) never
// share a buffer.
#pragma once

#include <cstddef>

#include "adlk/common.h"

namespace adlk {

constexpr int kScratchSlots = 4;

// Buffer `slot` (0 <= slot < kScratchSlots) of the calling thread, at least `bytes` long.
// Throws std::bad_alloc: call it outside parallel regions only.
void* thread_scratch(int slot, std::size_t bytes);

template <typename T>
T* thread_scratch_as(int slot, std::size_t count) {
  return static_cast<T*>(thread_scratch(slot, std::size_t(mul_checked(
                                                   index_t(count), index_t(sizeof(T)),
                                                   "thread_scratch: bytes"))));
}

// `threads` buffers of `count` elements of T each, 64-byte aligned, carved from slot
// `slot` of the calling thread. Reserve it before a parallel region; inside, member t
// uses for_thread(t). Sizes that do not fit 64 bits throw std::length_error.
template <typename T>
class TeamScratch {
 public:
  TeamScratch() = default;  // no buffers (count 0): for_thread gives nullptr
  TeamScratch(int slot, int threads, index_t count) {
    if (count <= 0) return;
    const index_t bytes = mul_checked(count, index_t(sizeof(T)), "scratch: bytes per thread");
    stride_ = mul_checked(bytes / 64 + (bytes % 64 != 0), 64, "scratch: bytes per thread");
    base_ = static_cast<char*>(
        thread_scratch(slot, std::size_t(mul_checked(stride_, threads, "scratch: bytes"))));
  }
  T* for_thread(int t) const {
    return base_ ? reinterpret_cast<T*>(base_ + index_t(t) * stride_) : nullptr;
  }

 private:
  char* base_ = nullptr;
  index_t stride_ = 0;
};

}  // namespace adlk
