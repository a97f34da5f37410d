// Shared by the CUDA bindings: device pointers and streams cross from Python as ints.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>

#include "adlk/common.h"

namespace adlk::cuda {}

namespace adlk_bind {

using adlk::index_t;
using Ptr = std::uintptr_t;  // a device pointer or a stream, as Python passes it
namespace ac = adlk::cuda;

template <typename T>
T* dev_ptr(std::uintptr_t p) {
  return reinterpret_cast<T*>(p);
}

inline void* as_stream(std::uintptr_t s) { return reinterpret_cast<void*>(s); }

void bind_cuda_conv(pybind11::module_& m);
void bind_cuda_pool(pybind11::module_& m);
void bind_cuda_optim(pybind11::module_& m);
void bind_cuda_nn(pybind11::module_& m);
void bind_cuda_rnn(pybind11::module_& m);

}  // namespace adlk_bind
