// Per-thread scratch memory that persists between calls.
//
// Kernels that need a work buffer per OpenMP thread ask for it here instead of
// allocating: a fresh allocation of a few MiB costs page faults (and zero fill) on
// every call. Each slot grows to the largest size asked for on that thread and is kept
// until the thread exits. Alignment is 64 bytes.
#pragma once

#include <cstddef>

namespace adlk {

constexpr int kScratchSlots = 4;

// Buffer `slot` (0 <= slot < kScratchSlots) of the calling thread, at least `bytes` long.
void* thread_scratch(int slot, std::size_t bytes);

template <typename T>
T* thread_scratch_as(int slot, std::size_t count) {
  return static_cast<T*>(thread_scratch(slot, count * sizeof(T)));
}

}  // namespace adlk
