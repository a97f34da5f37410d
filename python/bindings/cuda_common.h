// Shared by the CUDA bindings: device pointers and streams cross from Python as ints.
#pragma once

#include <cstdint>

namespace adlk_bind {

template <typename T>
T* dev_ptr(std::uintptr_t p) {
  return reinterpret_cast<T*>(p);
}

inline void* as_stream(std::uintptr_t s) { return reinterpret_cast<void*>(s); }

}  // namespace adlk_bind
