// CUDA activation and dropout kernels and their host launchers (see adlk/cuda/nn.h).
//
// One thread per element (dropout: per Philox counter, i.e. four elements), grid-stride
// loops over 64-bit indices with grids capped at kMaxBlocks; the per-element arithmetic
// is adlk/pointwise.h's, shared with the CPU kernels.
#include <cstdint>

#include "adlk/cuda/common.cuh"
#include "adlk/cuda/nn.h"
#include "adlk/pointwise.h"

namespace adlk::cuda {

namespace {

// A grid-stride loop over n items must not overflow index_t at its last step.
void check_items(index_t n, const char* what) {
  check(n >= 0, what);
  add_checked(n, index_t(kThreads) * kMaxBlocks, what);
}

template <typename T, Activation A>
__global__ void __launch_bounds__(kThreads) activation_kernel(index_t n, const T* x, T slope, T* y) {
  ADLK_GRID_STRIDE(i, n) { y[i] = pointwise::activation<A>(x[i], slope); }
}

template <typename T, Activation A>
__global__ void __launch_bounds__(kThreads) activation_grad_kernel(index_t n, const T* dy, const T* saved,
                                                                   T slope, T* dx) {
  ADLK_GRID_STRIDE(i, n) { dx[i] = pointwise::activation_grad<A>(dy[i], saved[i], slope); }
}

// Thread j draws the four words of counter j and decides elements 4j .. 4j + 3.
template <typename T>
__global__ void __launch_bounds__(kThreads) dropout_kernel(index_t n, const T* x,
                                                           pointwise::DropoutScalars<T> s,
                                                           std::uint64_t seed, T* y, bool* mask) {
  const index_t counters = n / 4 + (n % 4 != 0);
  ADLK_GRID_STRIDE(j, counters) {
    std::uint32_t w[4];
    pointwise::dropout_words(std::uint64_t(j), seed, w);
    for (int q = 0; q < 4; ++q) {
      const index_t i = 4 * j + q;
      if (i < n) {
        const bool keep = pointwise::dropout_keep(w[q], s);
        mask[i] = keep;
        y[i] = keep ? x[i] * s.scale : T(0);
      }
    }
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) dropout_grad_kernel(index_t n, const T* dy, const bool* mask,
                                                                T scale, T* dx) {
  ADLK_GRID_STRIDE(i, n) { dx[i] = mask[i] ? dy[i] * scale : T(0); }
}

}  // namespace

template <typename T>
void activation_forward(index_t n, const T* x, Activation act, double slope, T* y, void* stream) {
  check_items(n, "activation_forward: size");
  if (n == 0) return;
  pointwise::with_activation(act, [&](auto a) {
    ADLK_LAUNCH(grid_for(n), kThreads, 0, as_stream(stream), activation_kernel<T, decltype(a)::value>)(
        n, x, T(slope), y);
  });
  ADLK_CUDA_LAUNCH_CHECK();
}

template <typename T>
void activation_backward(index_t n, const T* grad_y, const T* saved, Activation act,
                         double slope, T* grad_x, void* stream) {
  check_items(n, "activation_backward: size");
  if (n == 0) return;
  pointwise::with_activation(act, [&](auto a) {
    ADLK_LAUNCH(grid_for(n), kThreads, 0, as_stream(stream), activation_grad_kernel<T, decltype(a)::value>)(
        n, grad_y, saved, T(slope), grad_x);
  });
  ADLK_CUDA_LAUNCH_CHECK();
}

template <typename T>
void dropout_forward(index_t n, const T* x, double p, std::uint64_t seed, T* y, bool* mask,
                     void* stream) {
  check_items(n, "dropout_forward: size");
  check(p >= 0 && p <= 1, "dropout_forward: p must be in [0, 1]");
  if (n == 0) return;
  const index_t counters = n / 4 + (n % 4 != 0);
  ADLK_LAUNCH(grid_for(counters), kThreads, 0, as_stream(stream), dropout_kernel<T>)(
      n, x, pointwise::dropout_scalars<T>(p), seed, y, mask);
  ADLK_CUDA_LAUNCH_CHECK();
}

template <typename T>
void dropout_backward(index_t n, const T* grad_y, const bool* mask, double p, T* grad_x,
                      void* stream) {
  check_items(n, "dropout_backward: size");
  check(p >= 0 && p <= 1, "dropout_backward: p must be in [0, 1]");
  if (n == 0) return;
  ADLK_LAUNCH(grid_for(n), kThreads, 0, as_stream(stream), dropout_grad_kernel<T>)(
      n, grad_y, mask, pointwise::dropout_scalars<T>(p).scale, grad_x);
  ADLK_CUDA_LAUNCH_CHECK();
}

#define ADLK_INSTANTIATE_CUDA_NN(T)          \
  ADLK_INSTANTIATE(activation_forward, T)  \
  ADLK_INSTANTIATE(activation_backward, T) \
  ADLK_INSTANTIATE(dropout_forward, T)     \
  ADLK_INSTANTIATE(dropout_backward, T)

ADLK_INSTANTIATE_CUDA_NN(float)
ADLK_INSTANTIATE_CUDA_NN(double)

}  // namespace adlk::cuda
