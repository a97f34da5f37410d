// CUDA embedding kernels and their host launchers (see adlk/cuda/embedding.h).
//
// Forward: a grid-stride gather over the n * D outputs (consecutive threads read
// consecutive columns of a weight row: coalesced). Backward: the group offsets of the
// sorted positions (a binary search per index), then one thread per
// element of grad_weight summing its column over the group, in position order, in T as
// the CPU does (no FMA: additions only). No atomics.
#include <cstdint>
#include <string>

#include "adlk/cuda/common.cuh"
#include "adlk/cuda/embedding.h"

namespace adlk::cuda {

namespace {

template <typename T, typename I>
__global__ void __launch_bounds__(kThreads) embedding_kernel(index_t total, index_t V, index_t D,
                                                             const I* indices, const T* weight, T* y) {
  ADLK_GRID_STRIDE(i, total) {
    const index_t p = i / D, j = i - p * D;
    const index_t v = index_t(indices[p]);
    y[i] = v >= 0 && v < V ? weight[v * D + j] : T(0);
  }
}

// The index of sorted position k, clamped into [0, V - 1] (a broken precondition must not
// read outside the arrays).
template <typename I>
__device__ __forceinline__ index_t sorted_key(index_t k, index_t n, index_t V, const I* indices,
                                              const std::int64_t* order) {
  const index_t p = order[k];
  if (p < 0 || p >= n) return V - 1;
  const index_t v = index_t(indices[p]);
  return v < 0 ? 0 : (v >= V ? V - 1 : v);
}

// offsets[v] = the first sorted position whose index is >= v (offsets[V] = n), by a binary
// search of thread v: each offset has one writer whatever the input (an order that is not
// sorted gives wrong groups, never a race or a read out of bounds).
template <typename I>
__global__ void __launch_bounds__(kThreads) segment_kernel(index_t n, index_t V, const I* indices,
                                                           const std::int64_t* order,
                                                           std::int64_t* offsets) {
  ADLK_GRID_STRIDE(v, V + 1) {
    index_t lo = 0, hi = n;
    while (lo < hi) {
      const index_t mid = lo + (hi - lo) / 2;
      if (sorted_key(mid, n, V, indices, order) < v) lo = mid + 1;
      else hi = mid;
    }
    offsets[v] = lo;
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) embedding_grad_kernel(index_t total, index_t n, index_t D,
                                                                  const T* dy, const std::int64_t* order,
                                                                  const std::int64_t* offsets,
                                                                  index_t padding_idx, T* dw) {
  ADLK_GRID_STRIDE(i, total) {
    const index_t v = i / D, j = i - v * D;
    T acc = T(0);
    if (v != padding_idx) {
      const index_t end = offsets[v + 1];
      for (index_t k = offsets[v]; k < end; ++k) {
        const index_t p = order[k];
        if (p >= 0 && p < n) acc += dy[p * D + j];
      }
    }
    dw[i] = acc;
  }
}

void check_sizes(index_t n, index_t V, index_t D, const char* op) {
  if (n < 0 || V < 0 || D < 0) fail(std::string(op) + ": need n, V, D >= 0");
  check_items(mul_checked(n, D, op), op);
  check_items(mul_checked(V, D, op), op);
  check_items(add_checked(V, 1, op), op);
}

}  // namespace

template <typename T, typename I>
void embedding_forward(index_t n, index_t V, index_t D, const I* indices, const T* weight, T* y,
                       void* stream) {
  check_sizes(n, V, D, "embedding_forward");
  const index_t total = n * D;
  if (total == 0) return;
  ADLK_LAUNCH(grid_for(total), kThreads, 0, as_stream(stream), embedding_kernel<T, I>)(
      total, V, D, indices, weight, y);
  ADLK_CUDA_LAUNCH_CHECK();
}

template <typename T, typename I>
void embedding_backward(index_t n, index_t V, index_t D, const T* grad_y, const I* indices,
                        const std::int64_t* order, index_t padding_idx, std::int64_t* offsets,
                        T* grad_weight, void* stream) {
  check_sizes(n, V, D, "embedding_backward");
  check(padding_idx < V, "embedding_backward: padding_idx must be < V");
  const index_t total = V * D;
  if (total == 0) return;
  ADLK_LAUNCH(grid_for(V + 1), kThreads, 0, as_stream(stream), segment_kernel<I>)(
      n, V, indices, order, offsets);
  ADLK_CUDA_LAUNCH_CHECK();
  ADLK_LAUNCH(grid_for(total), kThreads, 0, as_stream(stream), embedding_grad_kernel<T>)(
      total, n, D, grad_y, order, offsets, padding_idx, grad_weight);
  ADLK_CUDA_LAUNCH_CHECK();
}

#define ADLK_INSTANTIATE_CUDA_EMBEDDING(T, I)                                                     \
  template void embedding_forward<T, I>(index_t, index_t, index_t, const I*, const T*, T*, void*); \
  template void embedding_backward<T, I>(index_t, index_t, index_t, const T*, const I*,          \
                                         const std::int64_t*, index_t, std::int64_t*, T*, void*);

ADLK_INSTANTIATE_CUDA_EMBEDDING(float, std::int64_t)
ADLK_INSTANTIATE_CUDA_EMBEDDING(double, std::int64_t)
ADLK_INSTANTIATE_CUDA_EMBEDDING(float, std::int32_t)
ADLK_INSTANTIATE_CUDA_EMBEDDING(double, std::int32_t)

}  // namespace adlk::cuda
