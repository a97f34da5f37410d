// CUDA batch norm and layer norm (declared in adlk/cuda/nn.h). No atomics: the channel
// statistics are item sums in block trees added in item order, a row's in a warp
// butterfly, layer norm's weight and bias gradients column sums of row chunks added in
// chunk order. The per-element arithmetic is adlk/pointwise.h's, as on the CPU.
#include <cstdint>

#include "adlk/cuda/common.cuh"
#include "adlk/cuda/nn.h"
#include "adlk/pointwise.h"

namespace adlk::cuda {

namespace pw = adlk::pointwise;

namespace {

// ---- batch norm: x viewed as (N, C, S) ------------------------------------------------------

// A channel's items: blocks of per_block whole rows n holding about kNormItem values.
struct BnItems {
  index_t per_block = 1, per_channel = 0, count = 0;
  explicit BnItems(const BatchNormGeom& g) {
    per_block = kNormItem / (g.S > 1 ? g.S : 1);
    if (per_block < 1) per_block = 1;
    per_channel = g.N / per_block + (g.N % per_block != 0);
    count = g.N * g.S > 0 ? g.C * per_channel : 0;
  }
};

// Workspace layout (doubles): s1[items], s2[items], then three per-channel arrays.
struct BnWorkspace {
  double *s1, *s2, *c0, *c1, *c2;
  BnWorkspace(double* w, const BnItems& it, index_t C)
      : s1(w), s2(w + it.count), c0(w + 2 * it.count), c1(c0 + C), c2(c1 + C) {}
};

// Per item i (channel c, rows [n0, n1)): forward, s1 = sum(x - pivot) and s2 = sum((x -
// pivot)^2) with the channel's first value as the pivot; backward (kGrad), s1 = sum(dy)
// and s2 = sum(dy * (x - mean)).
template <typename T, bool kGrad>
__global__ void __launch_bounds__(kThreads)
    bn_sums_kernel(index_t N, index_t C, index_t S, index_t per_block, index_t per_channel,
                   const T* x, const T* dy, const T* mean, double* s1, double* s2) {
  __shared__ double red1[kThreads], red2[kThreads];
  const index_t items = C * per_channel;
  for (index_t i = blockIdx.x; i < items; i += gridDim.x) {
    const index_t c = i / per_channel, n0 = (i % per_channel) * per_block;
    const index_t n1 = n0 + per_block < N ? n0 + per_block : N;
    const index_t len = (n1 - n0) * S;
    const double center = kGrad ? double(mean[c]) : double(x[c * S]);
    double a = 0, b = 0;
    for (index_t e = threadIdx.x; e < len; e += blockDim.x) {
      const index_t at = ((n0 + e / S) * C + c) * S + e % S;
      const double d = double(x[at]) - center;
      if constexpr (kGrad) {
        a += double(dy[at]);
        b += double(dy[at]) * d;
      } else {
        a += d;
        b += d * d;
      }
    }
    red1[threadIdx.x] = a;
    red2[threadIdx.x] = b;
    block_tree(red1, SumOf{});
    block_tree(red2, SumOf{});
    if (threadIdx.x == 0) s1[i] = red1[0], s2[i] = red2[0];
    __syncthreads();  // red1, red2 are reused by the next item
  }
}

// Per channel: the statistics (training: from the item sums; eval: the running ones),
// save_mean/save_invstd, the running update, and mean / scale / shift for the output.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    bn_stats_kernel(index_t C, index_t S, index_t M, index_t per_channel, const T* x,
                    const double* s1, const double* s2, const T* weight, const T* bias,
                    T* running_mean, T* running_var, bool training, double momentum, double eps,
                    T* save_mean, T* save_invstd, double* mean, double* scale, double* shift) {
  ADLK_GRID_STRIDE(c, C) {
    double m = 0, invstd = 0;
    if (!training) {
      m = double(running_mean[c]);
      invstd = pw::inv_std(double(running_var[c]), eps);
    } else if (M > 0) {
      double a = 0, b = 0;
      for (index_t k = 0; k < per_channel; ++k) a += s1[c * per_channel + k], b += s2[c * per_channel + k];
      const pw::Moments mv = pw::shifted_moments(double(x[c * S]), a, b, double(M));
      m = mv.mean;
      invstd = pw::inv_std(mv.var, eps);
      pw::update_running(running_mean ? running_mean + c : nullptr,
                         running_var ? running_var + c : nullptr, mv, momentum, M);
    }
    save_mean[c] = T(m);
    save_invstd[c] = T(invstd);
    mean[c] = m;
    scale[c] = invstd * (weight ? double(weight[c]) : 1.0);
    shift[c] = bias ? double(bias[c]) : 0.0;
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    bn_normalize_kernel(index_t n, index_t C, index_t S, const T* x, const double* mean,
                        const double* scale, const double* shift, T* y) {
  ADLK_GRID_STRIDE(i, n) {
    const index_t c = (i / S) % C;
    y[i] = pw::batchnorm_out(x[i], pw::SplitMean<T>(mean[c]), T(scale[c]), T(shift[c]));
  }
}

// Per channel: grad_bias, grad_weight and the coefficients a, b, k of grad_x.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    bn_grad_stats_kernel(index_t C, index_t M, index_t per_channel, const double* s1,
                         const double* s2, const T* weight, const T* save_invstd, bool training,
                         T* grad_weight, T* grad_bias, double* ca, double* cb, double* ck) {
  ADLK_GRID_STRIDE(c, C) {
    double a = 0, b = 0;
    for (index_t k = 0; M > 0 && k < per_channel; ++k) a += s1[c * per_channel + k], b += s2[c * per_channel + k];
    const double istd = double(save_invstd[c]);
    if (grad_bias) grad_bias[c] = T(a);
    if (grad_weight) grad_weight[c] = T(b * istd);
    const pw::BatchNormGrad g = pw::batchnorm_grad_coefficients(
        a, b, istd, weight ? double(weight[c]) : 1.0, training, M);
    ca[c] = g.a, cb[c] = g.b, ck[c] = g.k;
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    bn_grad_kernel(index_t n, index_t C, index_t S, const T* dy, const T* x, const T* mean,
                   const double* ca, const double* cb, const double* ck, T* dx) {
  ADLK_GRID_STRIDE(i, n) {
    const index_t c = (i / S) % C;
    dx[i] = pw::batchnorm_grad(dy[i], x[i], mean[c], T(ca[c]), T(cb[c]), T(ck[c]));
  }
}

// ---- layer norm: a warp per row ---------------------------------------------------------------

// s1 = sum(x - pivot), s2 = sum((x - pivot)^2) over the row, the same in every lane.
template <typename T>
__device__ __forceinline__ void row_shifted_sums(const T* x, index_t D, double pivot, int lane,
                                                 double& s1, double& s2) {
  double a = 0, b = 0;
  for (index_t j = lane; j < D; j += kWarp) {
    const double d = double(x[j]) - pivot;
    a += d;
    b += d * d;
  }
  s1 = warp_tree(a, SumOf{});
  s2 = warp_tree(b, SumOf{});
}

template <typename T, bool kWeight, bool kBias>
__global__ void __launch_bounds__(kThreads)
    layernorm_kernel(index_t rows, index_t D, const T* x, const T* w, const T* b, double eps,
                     T* y, T* mean, T* rstd) {
  const int lane = int(threadIdx.x % kWarp);
  ADLK_ROWS_PER_WARP(r, rows) {
    const T* xr = x + r * D;
    T* yr = y + r * D;
    // shifted by the row's first value; again by the mean when that cancels (as the CPU)
    double pivot = double(xr[0]), s1, s2;
    row_shifted_sums(xr, D, pivot, lane, s1, s2);
    if (pw::needs_recentering(s1, s2, double(D))) {  // the same in every lane
      pivot += s1 / double(D);
      row_shifted_sums(xr, D, pivot, lane, s1, s2);
    }
    const pw::Moments mv = pw::shifted_moments(pivot, s1, s2, double(D));
    const double rs = pw::inv_std(mv.var, eps);
    if (lane == 0) mean[r] = T(mv.mean), rstd[r] = T(rs);
    const pw::SplitMean<T> m(mv.mean);
    for (index_t j = lane; j < D; j += kWarp)
      yr[j] = pw::layernorm_out<kWeight, kBias>(xr[j], m, T(rs), kWeight ? w[j] : T(1),
                                                 kBias ? b[j] : T(0));
  }
}

template <typename T, bool kWeight>
__global__ void __launch_bounds__(kThreads)
    layernorm_grad_kernel(index_t rows, index_t D, const T* dy, const T* x, const T* mean,
                          const T* rstd, const T* w, T* dx) {
  const int lane = int(threadIdx.x % kWarp);
  ADLK_ROWS_PER_WARP(r, rows) {
    const T* dyr = dy + r * D;
    const T* xr = x + r * D;
    const T m = mean[r], rs = rstd[r];
    double c1 = 0, c2 = 0;  // sums of g * xhat and of g, g = dy * w
    for (index_t j = lane; j < D; j += kWarp) {
      const T g = kWeight ? dyr[j] * w[j] : dyr[j];
      c1 += double(g) * double((xr[j] - m) * rs);
      c2 += double(g);
    }
    const T k1 = T(warp_tree(c1, SumOf{}) / double(D)), k2 = T(warp_tree(c2, SumOf{}) / double(D));
    for (index_t j = lane; j < D; j += kWarp)
      dx[r * D + j] = pw::layernorm_grad<kWeight>(dyr[j], xr[j], m, rs, kWeight ? w[j] : T(1), k1, k2);
  }
}

// pw_/pb_[k * D + j] = column j's sums of dy * xhat and dy over the rows of chunk k.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    layernorm_param_partials_kernel(index_t rows, index_t D, index_t chunks, const T* dy,
                                    const T* x, const T* mean, const T* rstd, double* pw_,
                                    double* pb_) {
  ADLK_GRID_STRIDE(i, chunks * D) {
    const index_t k = i / D, j = i % D;
    const index_t r1 = (k + 1) * kNormRowChunk < rows ? (k + 1) * kNormRowChunk : rows;
    double a = 0, b = 0;
    for (index_t r = k * kNormRowChunk; r < r1; ++r) {
      const T g = dy[r * D + j];
      a += double(g * ((x[r * D + j] - mean[r]) * rstd[r]));
      b += double(g);
    }
    pw_[i] = a;
    pb_[i] = b;
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    layernorm_param_total_kernel(index_t D, index_t chunks, const double* pw_, const double* pb_,
                                 T* grad_weight, T* grad_bias) {
  ADLK_GRID_STRIDE(j, D) {
    double a = 0, b = 0;
    for (index_t k = 0; k < chunks; ++k) a += pw_[k * D + j], b += pb_[k * D + j];
    grad_weight[j] = T(a);
    grad_bias[j] = T(b);
  }
}

index_t row_chunks(index_t rows) { return rows / kNormRowChunk + (rows % kNormRowChunk != 0); }

void check_layernorm(index_t rows, index_t D) {
  if (!(rows >= 0 && D >= 1)) fail("layernorm: need rows >= 0 and D >= 1");
  check_items(mul_checked(rows, D, "layernorm: rows * D"), "layernorm: rows * D");
}

}  // namespace

index_t batchnorm_workspace(const BatchNormGeom& g) {
  g.check();
  const BnItems it(g);
  return add_checked(mul_checked(2, it.count, "batchnorm: items"), mul_checked(3, g.C, "batchnorm: C"),
                     "batchnorm: workspace");
}

template <typename T>
void batchnorm_forward(const BatchNormGeom& g, const T* x, const T* weight, const T* bias,
                       T* running_mean, T* running_var, bool training, double momentum,
                       double eps, T* y, T* save_mean, T* save_invstd, double* workspace,
                       void* stream) {
  g.check();
  const index_t M = g.N * g.S, n = M * g.C;
  check_items(n, "batchnorm: size");
  check(!training || M > 1 || M == 0, "batchnorm_forward: need more than 1 value per channel when training");
  check(training || (running_mean && running_var), "batchnorm_forward: eval needs running statistics");
  const BnItems it(g);
  const BnWorkspace ws(workspace, it, g.C);
  if (training && it.count > 0) {
    ADLK_LAUNCH(grid_for(it.count * kThreads), kThreads, 0, as_stream(stream), bn_sums_kernel<T, false>)(
        g.N, g.C, g.S, it.per_block, it.per_channel, x, nullptr, nullptr, ws.s1, ws.s2);
    ADLK_CUDA_LAUNCH_CHECK();
  }
  ADLK_LAUNCH(grid_for(g.C), kThreads, 0, as_stream(stream), bn_stats_kernel<T>)(
      g.C, g.S, M, it.per_channel, x, ws.s1, ws.s2, weight, bias, running_mean, running_var, training,
      momentum, eps, save_mean, save_invstd, ws.c0, ws.c1, ws.c2);
  ADLK_CUDA_LAUNCH_CHECK();
  if (n == 0) return;
  ADLK_LAUNCH(grid_for(n), kThreads, 0, as_stream(stream), bn_normalize_kernel<T>)(
      n, g.C, g.S, x, ws.c0, ws.c1, ws.c2, y);
  ADLK_CUDA_LAUNCH_CHECK();
}

template <typename T>
void batchnorm_backward(const BatchNormGeom& g, const T* grad_y, const T* x, const T* weight,
                        const T* save_mean, const T* save_invstd, bool training, T* grad_x,
                        T* grad_weight, T* grad_bias, double* workspace, void* stream) {
  g.check();
  const index_t M = g.N * g.S, n = M * g.C;
  check_items(n, "batchnorm: size");
  const BnItems it(g);
  const BnWorkspace ws(workspace, it, g.C);
  if (it.count > 0) {
    ADLK_LAUNCH(grid_for(it.count * kThreads), kThreads, 0, as_stream(stream), bn_sums_kernel<T, true>)(
        g.N, g.C, g.S, it.per_block, it.per_channel, x, grad_y, save_mean, ws.s1, ws.s2);
    ADLK_CUDA_LAUNCH_CHECK();
  }
  ADLK_LAUNCH(grid_for(g.C), kThreads, 0, as_stream(stream), bn_grad_stats_kernel<T>)(
      g.C, M, it.per_channel, ws.s1, ws.s2, weight, save_invstd, training, grad_weight, grad_bias,
      ws.c0, ws.c1, ws.c2);
  ADLK_CUDA_LAUNCH_CHECK();
  if (n == 0) return;
  ADLK_LAUNCH(grid_for(n), kThreads, 0, as_stream(stream), bn_grad_kernel<T>)(
      n, g.C, g.S, grad_y, x, save_mean, ws.c0, ws.c1, ws.c2, grad_x);
  ADLK_CUDA_LAUNCH_CHECK();
}

index_t layernorm_workspace(index_t rows, index_t D) {
  check_layernorm(rows, D);
  const index_t chunks = row_chunks(rows);
  return mul_checked(2 * (chunks > 0 ? chunks : 1), D, "layernorm: workspace");
}

template <typename T>
void layernorm_forward(index_t rows, index_t D, const T* x, const T* weight, const T* bias,
                       double eps, T* y, T* mean, T* rstd, void* stream) {
  check_layernorm(rows, D);
  if (rows == 0) return;
  with_flags(
      [&](auto w, auto b) {
        ADLK_LAUNCH(row_blocks(rows), kThreads, 0, as_stream(stream), layernorm_kernel<T, decltype(w)::value, decltype(b)::value>)(
            rows, D, x, weight, bias, eps, y, mean, rstd);
      },
      weight != nullptr, bias != nullptr);
  ADLK_CUDA_LAUNCH_CHECK();
}

template <typename T>
void layernorm_backward(index_t rows, index_t D, const T* grad_y, const T* x, const T* mean,
                        const T* rstd, const T* weight, T* grad_x, T* grad_weight, T* grad_bias,
                        double* workspace, void* stream) {
  check_layernorm(rows, D);
  const index_t chunks = row_chunks(rows);
  if (rows > 0) {
    with_flags(
        [&](auto w) {
          ADLK_LAUNCH(row_blocks(rows), kThreads, 0, as_stream(stream), layernorm_grad_kernel<T, decltype(w)::value>)(
              rows, D, grad_y, x, mean, rstd, weight, grad_x);
        },
        weight != nullptr);
    ADLK_CUDA_LAUNCH_CHECK();
    check_items(chunks * D, "layernorm: partials");
    ADLK_LAUNCH(grid_for(chunks * D), kThreads, 0, as_stream(stream), layernorm_param_partials_kernel<T>)(
        rows, D, chunks, grad_y, x, mean, rstd, workspace, workspace + chunks * D);
    ADLK_CUDA_LAUNCH_CHECK();
  }
  ADLK_LAUNCH(grid_for(D), kThreads, 0, as_stream(stream), layernorm_param_total_kernel<T>)(
      D, chunks, workspace, workspace + chunks * D, grad_weight, grad_bias);
  ADLK_CUDA_LAUNCH_CHECK();
}

#define ADLK_INSTANTIATE_CUDA_NORM(T)     \
  ADLK_INSTANTIATE(batchnorm_forward, T)  \
  ADLK_INSTANTIATE(batchnorm_backward, T) \
  ADLK_INSTANTIATE(layernorm_forward, T)  \
  ADLK_INSTANTIATE(layernorm_backward, T)

ADLK_INSTANTIATE_CUDA_NORM(float)
ADLK_INSTANTIATE_CUDA_NORM(double)

}  // namespace adlk::cuda
