// Shared by the CUDA bindings: device pointers and streams cross from Python as ints.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>

namespace adlk_bind {

template <typename T>
T* dev_ptr(std::uintptr_t p) {
  return reinterpret_cast<T*>(p);
}

inline void* as_stream(std::uintptr_t s) { return reinterpret_cast<void*>(s); }

void bind_cuda_conv(pybind11::module_& m);
void bind_cuda_pool(pybind11::module_& m);
void bind_cuda_optim(pybind11::module_& m);
void bind_cuda_nn(pybind11::module_& m);

}  // namespace adlk_bind
