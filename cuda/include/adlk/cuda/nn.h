// CUDA activations and dropout: host launchers (plain C++ header).
//
// The CUDA counterparts of the functions of adlk/nn.h with the same names and semantics
// (read it), on n-element device arrays, enqueued on `stream` (a cudaStream_t as void*).
// Each element is computed by the rule of adlk/pointwise.h that the CPU kernels run too,
// without FMA contraction: relu, leaky relu and dropout (its mask for a seed included)
// give the CPU's bits; sigmoid and tanh the bits of the CPU's baseline x86-64 code, within
// a few ulp of its AVX2 code, which may contract multiply-adds (adlk/vecmath.h). Nothing
// is launched for n == 0.
#pragma once

#include <cstdint>

#include "adlk/common.h"
#include "adlk/nn.h"

namespace adlk::cuda {

template <typename T>
void activation_forward(index_t n, const T* x, Activation act, double slope, T* y, void* stream);

template <typename T>
void activation_backward(index_t n, const T* grad_y, const T* saved, Activation act,
                         double slope, T* grad_x, void* stream);

// p in [0, 1]; mask[i] is true for the kept elements.
template <typename T>
void dropout_forward(index_t n, const T* x, double p, std::uint64_t seed, T* y, bool* mask,
                     void* stream);

template <typename T>
void dropout_backward(index_t n, const T* grad_y, const bool* mask, double p, T* grad_x,
                      void* stream);

}  // namespace adlk::cuda
