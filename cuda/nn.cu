// CUDA activation, dropout, softmax and loss kernels and their host launchers (see
// adlk/cuda/nn.h).
//
// Pointwise kernels: one thread per element (dropout: per Philox counter, i.e. four
// elements), grid-stride loops over 64-bit indices with grids capped at kMaxBlocks; the
// per-element arithmetic is adlk/pointwise.h's, shared with the CPU kernels. Row kernels
// (softmax, cross-entropy): a warp per row, lanes striding over the row, sums in double
// combined by an xor butterfly (every lane gets the same bits). Losses: fixed tiles summed
// in a block tree, the tile sums in one block (common.cuh). No atomics anywhere.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>

#include "adlk/cuda/common.cuh"
#include "adlk/cuda/nn.h"
#include "adlk/pointwise.h"

namespace adlk::cuda {

namespace {

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

// ---- softmax and cross-entropy: a warp per row ---------------------------------------------------

// A NaN from its bits (no host-only constant in device code).
__device__ __forceinline__ double quiet_nan() {
  const std::uint64_t bits = 0x7ff8000000000000ull;
  double d;
  std::memcpy(&d, &bits, sizeof d);
  return d;
}

// The row's maximum (NaN wins), the same in every lane.
template <typename T>
__device__ __forceinline__ T row_max(const T* x, index_t K, int lane) {
  double m = double(x[lane < K ? lane : 0]);
  for (index_t j = lane + kWarp; j < K; j += kWarp) m = MaxOf{}(m, double(x[j]));
  return T(warp_tree(m, MaxOf{}));
}

// e[j] = exp(x[j] - m); returns the sum of the row (in double), the same in every lane.
template <typename T>
__device__ __forceinline__ double row_exp(const T* x, index_t K, T m, T* e, int lane) {
  double s = 0;
  for (index_t j = lane; j < K; j += kWarp) {
    const T v = vm::exp_flush(x[j] - m);
    e[j] = v;
    s += double(v);
  }
  return warp_tree(s, SumOf{});
}

template <typename T>
__global__ void __launch_bounds__(kThreads) softmax_kernel(index_t rows, index_t K, const T* x,
                                                           bool log, T* y) {
  const int lane = int(threadIdx.x % kWarp);
  ADLK_ROWS_PER_WARP(r, rows) {
    const T* xr = x + r * K;
    T* yr = y + r * K;
    const T m = row_max(xr, K, lane);
    const double s = row_exp(xr, K, m, yr, lane);
    if (log) {
      const T ls = T(std::log(s));  // (x - max) - log(sum), as the CPU
      for (index_t j = lane; j < K; j += kWarp) yr[j] = (xr[j] - m) - ls;
    } else {
      const T inv = T(1.0 / s);
      for (index_t j = lane; j < K; j += kWarp) yr[j] *= inv;
    }
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) softmax_grad_kernel(index_t rows, index_t K, const T* dy,
                                                                const T* y, bool log, T* dx) {
  const int lane = int(threadIdx.x % kWarp);
  ADLK_ROWS_PER_WARP(r, rows) {
    const T* dyr = dy + r * K;
    const T* yr = y + r * K;
    T* dxr = dx + r * K;
    double s = 0;
    for (index_t j = lane; j < K; j += kWarp) s += log ? double(dyr[j]) : double(dyr[j]) * double(yr[j]);
    const T st = T(warp_tree(s, SumOf{}));
    for (index_t j = lane; j < K; j += kWarp)
      dxr[j] = log ? dyr[j] - vm::exp_flush(yr[j]) * st : yr[j] * (dyr[j] - st);
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    cross_entropy_kernel(index_t B, index_t K, const T* logits, const std::int64_t* targets,
                         std::int64_t ignore_index, double scale, T* grad, double* row_loss) {
  const int lane = int(threadIdx.x % kWarp);
  ADLK_ROWS_PER_WARP(b, B) {
    const T* x = logits + b * K;
    T* g = grad + b * K;
    const std::int64_t t = targets[b];
    if (t == ignore_index || t < 0 || t >= K) {  // ignored, or (precondition broken) invalid
      const bool ignored = t == ignore_index;
      for (index_t j = lane; j < K; j += kWarp) g[j] = ignored ? T(0) : T(quiet_nan());
      if (lane == 0) row_loss[b] = ignored ? 0.0 : quiet_nan();
      continue;
    }
    const T m = row_max(x, K, lane);
    const double s = row_exp(x, K, m, g, lane);
    if (lane == 0) row_loss[b] = (double(m) - double(x[t])) + std::log(s);
    const T k = T(scale / s);
    for (index_t j = lane; j < K; j += kWarp) {
      T v = g[j] * k;
      if (j == t) v -= T(scale);
      g[j] = v;
    }
  }
}


// ---- elementwise losses: tiles summed in fixed trees ----------------------------------------------

constexpr int kLossItems = 4;
constexpr index_t kLossTile = index_t(kThreads) * kLossItems;

template <typename T, LossKind L>
__global__ void __launch_bounds__(kThreads)
    loss_kernel(index_t n, const T* p, const T* t, T delta, T gscale, T* grad, T* loss,
                double* partials) {
  __shared__ double red[kThreads];
  const index_t tiles = n / kLossTile + (n % kLossTile != 0);
  for (index_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    double acc = 0;
    for (int q = 0; q < kLossItems; ++q) {
      const index_t i = tile * kLossTile + threadIdx.x + index_t(q) * blockDim.x;
      if (i < n) {
        const T l = pointwise::loss_term<L>(p[i], t[i], delta, gscale, grad[i]);
        if (loss) loss[i] = l;
        acc += double(l);
      }
    }
    red[threadIdx.x] = acc;
    block_tree(red, SumOf{});
    if (threadIdx.x == 0) partials[tile] = red[0];
    __syncthreads();  // red is reused by the next tile
  }
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

template <typename T>
void softmax_forward(index_t rows, index_t K, const T* x, bool log, T* y, void* stream) {
  if (!check_rows(rows, K, "softmax")) return;
  ADLK_LAUNCH(row_blocks(rows), kThreads, 0, as_stream(stream), softmax_kernel<T>)(rows, K, x, log, y);
  ADLK_CUDA_LAUNCH_CHECK();
}

template <typename T>
void softmax_backward(index_t rows, index_t K, const T* grad_y, const T* y, bool log, T* grad_x,
                      void* stream) {
  if (!check_rows(rows, K, "softmax")) return;
  ADLK_LAUNCH(row_blocks(rows), kThreads, 0, as_stream(stream), softmax_grad_kernel<T>)(
      rows, K, grad_y, y, log, grad_x);
  ADLK_CUDA_LAUNCH_CHECK();
}

template <typename T>
void softmax_cross_entropy(index_t B, index_t K, const T* logits, const std::int64_t* targets,
                           std::int64_t ignore_index, double grad_scale, T* grad, double* row_loss,
                           void* stream) {
  if (!check_rows(B, K, "softmax_cross_entropy")) return;
  ADLK_LAUNCH(row_blocks(B), kThreads, 0, as_stream(stream), cross_entropy_kernel<T>)(
      B, K, logits, targets, ignore_index, grad_scale, grad, row_loss);
  ADLK_CUDA_LAUNCH_CHECK();
}

void sum_doubles(index_t n, const double* values, double divisor, double* total, void* stream) {
  check(n >= 0, "sum_doubles: negative size");
  ADLK_LAUNCH(1, kThreads, 0, as_stream(stream), fixed_total_kernel<SumOf>)(values, n, SumOf{},
                                                                          divisor, false, total);
  ADLK_CUDA_LAUNCH_CHECK();
}

index_t loss_partials(index_t n) {
  check(n >= 0, "loss: negative size");
  const index_t tiles = n / kLossTile + (n % kLossTile != 0);
  return tiles > 0 ? tiles : 1;
}

template <typename T>
void elementwise_loss(index_t n, const T* pred, const T* target, LossKind kind, Reduction red,
                      double delta, T* grad, T* loss_elems, double* partials, double* total,
                      void* stream) {
  check_items(n, "loss: size");
  const index_t tiles = n / kLossTile + (n % kLossTile != 0);
  if (tiles > 0)
    pointwise::with_loss(kind, [&](auto lk) {
      ADLK_LAUNCH(unsigned(tiles < kMaxBlocks ? tiles : kMaxBlocks), kThreads, 0, as_stream(stream),
                  loss_kernel<T, decltype(lk)::value>)(n, pred, target, T(delta),
                                                       pointwise::loss_gscale<T>(red, n), grad,
                                                       loss_elems, partials);
      ADLK_CUDA_LAUNCH_CHECK();
    });
  // the CPU's: a mean divides the sum by n (NaN for n == 0)
  sum_doubles(tiles, partials, red == Reduction::kMean ? double(n) : 1.0, total, stream);
}

#define ADLK_INSTANTIATE_CUDA_NN(T)          \
  ADLK_INSTANTIATE(activation_forward, T)  \
  ADLK_INSTANTIATE(activation_backward, T) \
  ADLK_INSTANTIATE(dropout_forward, T)     \
  ADLK_INSTANTIATE(dropout_backward, T)    \
  ADLK_INSTANTIATE(softmax_forward, T)     \
  ADLK_INSTANTIATE(softmax_backward, T)    \
  ADLK_INSTANTIATE(softmax_cross_entropy, T) \
  ADLK_INSTANTIATE(elementwise_loss, T)

ADLK_INSTANTIATE_CUDA_NN(float)
ADLK_INSTANTIATE_CUDA_NN(double)

}  // namespace adlk::cuda
