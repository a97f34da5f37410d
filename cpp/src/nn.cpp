#include "adlk/nn.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "adlk/blas.h"
#include "adlk/parallel.h"
#include "adlk/tuning.h"
#include "partition.h"
#include "adlk/pointwise.h"
#include "adlk/vecmath.h"

namespace adlk {

namespace {

constexpr index_t kChunk = kSumChunk;  // adlk/tuning.h

index_t chunks_of(index_t n) { return (n + kChunk - 1) / kChunk; }

bool parallel(index_t work) { return work >= kElementwiseParallelGrain && get_num_threads() > 1; }

// ---- batch norm helpers -------------------------------------------------------------------

// Work items of a channel: blocks of n so that each holds about kChunk elements.
struct BnItems {
  index_t per_block = 1, per_channel = 0;
  BnItems(const BatchNormGeom& g) {
    per_block = std::max<index_t>(1, kChunk / std::max<index_t>(1, g.S));
    per_channel = (g.N + per_block - 1) / per_block;
  }
};

// Sums over block `blk` of channel c: s1 = sum(x - pivot), s2 = sum((x - pivot)^2).
template <typename T>
ADLK_MULTIVERSION void bn_block_moments(const BatchNormGeom& g, const T* x, index_t c, index_t n0,
                                        index_t n1, double pivot, double* s1, double* s2) {
  double a = 0, b = 0;
  for (index_t n = n0; n < n1; ++n) {
    const T* row = x + (n * g.C + c) * g.S;
#pragma omp simd reduction(+ : a, b)
    for (index_t s = 0; s < g.S; ++s) {
      const double d = double(row[s]) - pivot;
      a += d;
      b += d * d;
    }
  }
  *s1 = a, *s2 = b;
}

// Sums over a block: sdy = sum(dy), sdx = sum(dy * (x - mean)).
template <typename T>
ADLK_MULTIVERSION void bn_block_grads(const BatchNormGeom& g, const T* dy, const T* x, index_t c,
                                      index_t n0, index_t n1, double mean, double* sdy,
                                      double* sdx) {
  double a = 0, b = 0;
  for (index_t n = n0; n < n1; ++n) {
    const T* xr = x + (n * g.C + c) * g.S;
    const T* gr = dy + (n * g.C + c) * g.S;
#pragma omp simd reduction(+ : a, b)
    for (index_t s = 0; s < g.S; ++s) {
      a += double(gr[s]);
      b += double(gr[s]) * (double(xr[s]) - mean);
    }
  }
  *sdy = a, *sdx = b;
}

using pointwise::SplitMean;

template <typename T>
ADLK_MULTIVERSION void bn_normalize_plane(index_t S, const T* x, SplitMean<T> mean, T scale,
                                          T shift, T* y) {
#pragma omp simd
  for (index_t s = 0; s < S; ++s) y[s] = pointwise::batchnorm_out(x[s], mean, scale, shift);
}

template <typename T>
ADLK_MULTIVERSION void bn_grad_plane(index_t S, const T* dy, const T* x, T mean, T a, T b,
                                     T k, T* dx) {
#pragma omp simd
  for (index_t s = 0; s < S; ++s) dx[s] = pointwise::batchnorm_grad(dy[s], x[s], mean, a, b, k);
}

}  // namespace

void BatchNormGeom::check() const {
  adlk::check(N >= 0 && C >= 1 && S >= 0, "batchnorm: need N >= 0, C >= 1, S >= 0");
  index_t t;
  adlk::check(!__builtin_mul_overflow(N, C, &t) && !__builtin_mul_overflow(t, S, &t),
              "batchnorm: size overflows");
}

template <typename T>
void batchnorm_forward(const BatchNormGeom& g, const T* x, const T* weight, const T* bias,
                       T* running_mean, T* running_var, bool training, double momentum,
                       double eps, T* y, T* save_mean, T* save_invstd) {
  g.check();
  const index_t C = g.C, M = g.N * g.S;
  std::vector<double> mean(C), invstd(C);
  if (training) {
    check(M > 1 || M == 0, "batchnorm_forward: need more than 1 value per channel when training");
    const BnItems it(g);
    const index_t items = M ? C * it.per_channel : 0;  // no data (N or S = 0): no pivot to read
    std::vector<double> s1(items), s2(items);
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (parallel(g.N * C * g.S))
    for (index_t i = 0; i < items; ++i) {
      const index_t c = i / it.per_channel, blk = i % it.per_channel;
      const index_t n0 = blk * it.per_block, n1 = std::min(g.N, n0 + it.per_block);
      bn_block_moments<T>(g, x, c, n0, n1, double(x[c * g.S]), &s1[i], &s2[i]);
    }
    for (index_t c = 0; c < C; ++c) {
      double a = 0, b = 0;
      for (index_t blk = 0; items && blk < it.per_channel; ++blk) {
        a += s1[c * it.per_channel + blk];
        b += s2[c * it.per_channel + blk];
      }
      if (M) {
        const auto mv = pointwise::shifted_moments(double(x[c * g.S]), a, b, double(M));
        mean[c] = mv.mean;
        invstd[c] = pointwise::inv_std(mv.var, eps);
        pointwise::update_running(running_mean ? running_mean + c : nullptr,
                                  running_var ? running_var + c : nullptr, mv, momentum, M);
      } else {
        mean[c] = 0, invstd[c] = 0;
      }
    }
  } else {
    check(running_mean && running_var, "batchnorm_forward: eval needs running statistics");
    for (index_t c = 0; c < C; ++c) {
      mean[c] = double(running_mean[c]);
      invstd[c] = pointwise::inv_std(double(running_var[c]), eps);
    }
  }
  for (index_t c = 0; c < C; ++c) {
    save_mean[c] = T(mean[c]);
    save_invstd[c] = T(invstd[c]);
  }
  if (M == 0) return;  // y is empty: no loop over the N * C empty planes
  const index_t planes = g.N * C;
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (parallel(planes * g.S))
  for (index_t pl = 0; pl < planes; ++pl) {
    const index_t c = pl % C;
    const T scale = T(invstd[c] * (weight ? double(weight[c]) : 1.0));
    bn_normalize_plane<T>(g.S, x + pl * g.S, SplitMean<T>(mean[c]), scale, bias ? bias[c] : T(0),
                          y + pl * g.S);
  }
}

template <typename T>
void batchnorm_backward(const BatchNormGeom& g, const T* grad_y, const T* x, const T* weight,
                        const T* save_mean, const T* save_invstd, bool training, T* grad_x,
                        T* grad_weight, T* grad_bias) {
  g.check();
  const index_t C = g.C, M = g.N * g.S;
  const BnItems it(g);
  const index_t items = M ? C * it.per_channel : 0;
  std::vector<double> sdy(items), sdx(items);
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (parallel(g.N * C * g.S))
  for (index_t i = 0; i < items; ++i) {
    const index_t c = i / it.per_channel, blk = i % it.per_channel;
    const index_t n0 = blk * it.per_block, n1 = std::min(g.N, n0 + it.per_block);
    bn_block_grads<T>(g, grad_y, x, c, n0, n1, double(save_mean[c]), &sdy[i], &sdx[i]);
  }
  std::vector<pointwise::BatchNormGrad> coef(C);
  for (index_t c = 0; c < C; ++c) {
    double a = 0, b = 0;
    for (index_t blk = 0; items && blk < it.per_channel; ++blk) {
      a += sdy[c * it.per_channel + blk];
      b += sdx[c * it.per_channel + blk];
    }
    const double istd = double(save_invstd[c]), w = weight ? double(weight[c]) : 1.0;
    if (grad_bias) grad_bias[c] = T(a);
    if (grad_weight) grad_weight[c] = T(b * istd);
    coef[c] = pointwise::batchnorm_grad_coefficients(a, b, istd, w, training, M);
  }
  if (M == 0) return;  // grad_x is empty: no loop over the N * C empty planes
  const index_t planes = g.N * C;
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (parallel(planes * g.S))
  for (index_t pl = 0; pl < planes; ++pl) {
    const index_t c = pl % C;
    bn_grad_plane<T>(g.S, grad_y + pl * g.S, x + pl * g.S, save_mean[c], T(coef[c].a),
                     T(coef[c].b), T(coef[c].k), grad_x + pl * g.S);
  }
}

// ---- layer norm --------------------------------------------------------------------------------

namespace {

// Sums of d = x[j] - pivot and of d^2 over a row, in double; inlined, so that its vector
// lanes (the summation order) are those of the caller's ISA clone.
template <typename T>
ADLK_ALWAYS_INLINE void row_shifted_sums(index_t D, const T* x, double pivot, double* s1, double* s2) {
  double a = 0, b = 0;
#pragma omp simd reduction(+ : a, b)
  for (index_t j = 0; j < D; ++j) {
    const double d = double(x[j]) - pivot;
    a += d;
    b += d * d;
  }
  *s1 = a, *s2 = b;
}

template <typename T>
ADLK_MULTIVERSION void layernorm_row(index_t D, const T* x, const T* w, const T* b, double eps,
                                     T* y, T* mean_out, T* rstd_out) {
  // Sums in double over the row shifted by its first value: one pass, and the relative
  // error of the variance is about the double epsilon times s2 / (D * var). That factor
  // stays small unless x[0] lies far from the mean (a row [1e4, 0, ..., 0]); then a
  // second pass shifted by the mean just found makes it ~1 (the corrected two-pass
  // algorithm). The variance of [1e19, -1e19, 0, 1, ...], whose float32 squares
  // overflow, is fine in double.
  double pivot = double(x[0]), s1, s2;
  row_shifted_sums(D, x, pivot, &s1, &s2);
  if (pointwise::needs_recentering(s1, s2, double(D))) {
    pivot += s1 / double(D);
    row_shifted_sums(D, x, pivot, &s1, &s2);
  }
  const auto mv = pointwise::shifted_moments(pivot, s1, s2, double(D));
  const double rstd = pointwise::inv_std(mv.var, eps);
  *mean_out = T(mv.mean);
  *rstd_out = T(rstd);
  const SplitMean<T> m(mv.mean);
  const T r = T(rstd);
  using pointwise::layernorm_out;
  if (w && b) {
#pragma omp simd
    for (index_t j = 0; j < D; ++j) y[j] = layernorm_out<true, true>(x[j], m, r, w[j], b[j]);
  } else if (w) {
#pragma omp simd
    for (index_t j = 0; j < D; ++j) y[j] = layernorm_out<true, false>(x[j], m, r, w[j], T(0));
  } else if (b) {
#pragma omp simd
    for (index_t j = 0; j < D; ++j) y[j] = layernorm_out<false, true>(x[j], m, r, T(1), b[j]);
  } else {
#pragma omp simd
    for (index_t j = 0; j < D; ++j) y[j] = layernorm_out<false, false>(x[j], m, r, T(1), T(0));
  }
}

// One row of the backward; accumulates dy * xhat and dy into the chunk's gw, gb. The row
// sums are in double (like the forward's); the chunk partials gw, gb are in T (a 64-row
// chunk is short) and the chunks are combined in double.
template <typename T>
ADLK_MULTIVERSION void layernorm_row_backward(index_t D, const T* dy, const T* x, T mean, T rstd,
                                              const T* w, T* dx, T* gw, T* gb) {
  // c1 = sum of g * xhat, c2 = sum of g, with g = dy * w
  double c1 = 0, c2 = 0;
  if (w) {
#pragma omp simd reduction(+ : c1, c2)
    for (index_t j = 0; j < D; ++j) {
      const T xhat = (x[j] - mean) * rstd;
      const T gj = dy[j] * w[j];
      c1 += double(gj) * double(xhat);
      c2 += double(gj);
      gw[j] += dy[j] * xhat;
      gb[j] += dy[j];
    }
  } else {
#pragma omp simd reduction(+ : c1, c2)
    for (index_t j = 0; j < D; ++j) {
      const T xhat = (x[j] - mean) * rstd;
      c1 += double(dy[j]) * double(xhat);
      c2 += double(dy[j]);
      gw[j] += dy[j] * xhat;
      gb[j] += dy[j];
    }
  }
  const T k1 = T(c1 / double(D)), k2 = T(c2 / double(D));
  using pointwise::layernorm_grad;
  if (w) {
#pragma omp simd
    for (index_t j = 0; j < D; ++j) dx[j] = layernorm_grad<true>(dy[j], x[j], mean, rstd, w[j], k1, k2);
  } else {
#pragma omp simd
    for (index_t j = 0; j < D; ++j) dx[j] = layernorm_grad<false>(dy[j], x[j], mean, rstd, T(1), k1, k2);
  }
}

constexpr index_t kRowChunk = kLayerNormRowChunk;  // adlk/tuning.h

}  // namespace

template <typename T>
void layernorm_forward(index_t rows, index_t D, const T* x, const T* weight, const T* bias,
                       double eps, T* y, T* mean, T* rstd) {
  check(rows >= 0 && D >= 1, "layernorm: need rows >= 0 and D >= 1");
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (parallel(rows * D))
  for (index_t r = 0; r < rows; ++r)
    layernorm_row<T>(D, x + r * D, weight, bias, eps, y + r * D, mean + r, rstd + r);
}

template <typename T>
void layernorm_backward(index_t rows, index_t D, const T* grad_y, const T* x, const T* mean,
                        const T* rstd, const T* weight, T* grad_x, T* grad_weight, T* grad_bias) {
  check(rows >= 0 && D >= 1, "layernorm: need rows >= 0 and D >= 1");
  const index_t nchunks = (rows + kRowChunk - 1) / kRowChunk;
  std::vector<T> pw(static_cast<std::size_t>(mul_checked(nchunks, D, "layernorm: chunks*D")), T(0)),
      pb(pw.size(), T(0));
  const int nt = get_num_threads();
#pragma omp parallel num_threads(nt) if (parallel(rows * D))
  {
#pragma omp for schedule(static)
    for (index_t k = 0; k < nchunks; ++k)
      for (index_t r = k * kRowChunk; r < std::min(rows, (k + 1) * kRowChunk); ++r)
        layernorm_row_backward<T>(D, grad_y + r * D, x + r * D, mean[r], rstd[r], weight,
                                  grad_x + r * D, &pw[k * D], &pb[k * D]);
    // chunk partials added in chunk order, columns split across threads
#pragma omp for schedule(static)
    for (index_t j = 0; j < D; ++j) {
      double a = 0, b = 0;
      for (index_t k = 0; k < nchunks; ++k) a += double(pw[k * D + j]), b += double(pb[k * D + j]);
      grad_weight[j] = T(a);
      grad_bias[j] = T(b);
    }
  }
}

// ---- dropout ----------------------------------------------------------------------------------------

namespace {
using pointwise::kPhiloxW0;
using pointwise::kPhiloxW1;

// Philox-4x32-10 on kLanes independent counters at once (vectorizable across lanes): the
// rounds of adlk/pointwise.h, lane by lane.
constexpr int kLanes = 16;

ADLK_ALWAYS_INLINE void philox_lanes(std::uint32_t (&c0)[kLanes], std::uint32_t (&c1)[kLanes],
                                     std::uint32_t (&c2)[kLanes], std::uint32_t (&c3)[kLanes],
                                     std::uint32_t k0, std::uint32_t k1) {
  for (int round = 0; round < 10; ++round) {
#pragma omp simd
    for (int l = 0; l < kLanes; ++l) pointwise::philox_round(c0[l], c1[l], c2[l], c3[l], k0, k1);
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
}

// Elements [first, first + n) (first a multiple of 4 * kLanes): kLanes counters per block,
// their 4 words laid out in element order, then one vectorized select pass.
template <typename T>
ADLK_MULTIVERSION void dropout_block(index_t first, index_t n, const T* x,
                                     const pointwise::DropoutScalars<T> s, std::uint64_t seed,
                                     T* y, bool* mask) {
  constexpr index_t kBlock = 4 * kLanes;
  const std::uint32_t k0 = std::uint32_t(seed), k1 = std::uint32_t(seed >> 32);
  alignas(64) std::uint32_t words[kBlock];
  for (index_t base = 0; base < n; base += kBlock) {
    const std::uint64_t g0 = std::uint64_t(first + base) / 4;
    alignas(64) std::uint32_t c0[kLanes], c1[kLanes], c2[kLanes], c3[kLanes];
#pragma omp simd
    for (int l = 0; l < kLanes; ++l) {
      const std::uint64_t ctr = g0 + std::uint64_t(l);
      c0[l] = std::uint32_t(ctr), c1[l] = std::uint32_t(ctr >> 32), c2[l] = 0, c3[l] = 0;
    }
    philox_lanes(c0, c1, c2, c3, k0, k1);
#pragma omp simd
    for (int l = 0; l < kLanes; ++l) {
      words[4 * l] = c0[l], words[4 * l + 1] = c1[l];
      words[4 * l + 2] = c2[l], words[4 * l + 3] = c3[l];
    }
    const index_t m = std::min(kBlock, n - base);
    const T* xb = x + base;
    T* yb = y + base;
    bool* mb = mask + base;
#pragma omp simd
    for (index_t i = 0; i < m; ++i) {
      const bool keep = pointwise::dropout_keep(words[i], s);
      mb[i] = keep;
      yb[i] = keep ? xb[i] * s.scale : T(0);
    }
  }
}
}  // namespace

void philox4x32_10(const std::uint32_t ctr[4], const std::uint32_t key[2], std::uint32_t out[4]) {
  std::uint32_t c0[kLanes] = {ctr[0]}, c1[kLanes] = {ctr[1]}, c2[kLanes] = {ctr[2]},
                c3[kLanes] = {ctr[3]};
  philox_lanes(c0, c1, c2, c3, key[0], key[1]);
  out[0] = c0[0], out[1] = c1[0], out[2] = c2[0], out[3] = c3[0];
}

template <typename T>
void dropout_forward(index_t n, const T* x, double p, std::uint64_t seed, T* y, bool* mask) {
  check(n >= 0 && p >= 0 && p <= 1, "dropout_forward: need n >= 0 and p in [0, 1]");
  const auto s = pointwise::dropout_scalars<T>(p);
  // chunks of kChunk elements (a multiple of 4 * kLanes)
  const index_t nchunks = chunks_of(n);
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (parallel(n))
  for (index_t k = 0; k < nchunks; ++k) {
    const index_t b = k * kChunk, e = std::min(n, b + kChunk);
    dropout_block<T>(b, e - b, x + b, s, seed, y + b, mask + b);
  }
}

template <typename T>
void dropout_backward(index_t n, const T* grad_y, const bool* mask, double p, T* grad_x) {
  check(n >= 0 && p >= 0 && p <= 1, "dropout_backward: need n >= 0 and p in [0, 1]");
  const T scale = pointwise::dropout_scalars<T>(p).scale;
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (parallel(n))
  for (index_t k = 0; k < chunks_of(n); ++k) {
    const index_t b = k * kChunk, e = std::min(n, b + kChunk);
#pragma omp simd
    for (index_t i = b; i < e; ++i) grad_x[i] = mask[i] ? grad_y[i] * scale : T(0);
  }
}

// ---- linear ------------------------------------------------------------------------------------------

namespace {
// Sizes must fit the 32-bit BLAS interface only when no size is 0: an empty product (e.g.
// x (0, 2^40)) makes no BLAS call.
void check_linear(index_t B, index_t I, index_t O) {
  check(B >= 0 && I >= 0 && O >= 0, "linear: negative size");
  if (B == 0 || I == 0 || O == 0) return;
  for (index_t v : {B, I, O}) check_blas_dim(v, "linear dimension");
}

// Whether a linear kernel is worth a parallel region (B*I*O saturates, never overflows).
bool linear_parallel(index_t B, index_t I, index_t O) {
  return mul_saturated(mul_saturated(B, I), O) > kElementwiseParallelGrain;
}
}  // namespace

template <typename T>
void linear_forward(index_t B, index_t I, index_t O, const T* x, const T* weight, const T* bias,
                    T* y) {
  check_linear(B, I, O);
  if (B == 0 || O == 0) return;  // y is empty
  // Split the larger of B and O: splitting O, each thread packs only its rows of the
  // weight (the larger operand when O >= B) instead of all of it.
  const bool split_out = O >= B;
#pragma omp parallel num_threads(get_num_threads()) if (linear_parallel(B, I, O))
  {
    const int np = omp_get_num_threads(), p = omp_get_thread_num();
    const Span r = split_out ? Span{0, B} : split(B, np, p);
    const Span o = split_out ? split(O, np, p) : Span{0, O};
    if (r.size() > 0 && o.size() > 0) {
      if (bias)
        for (index_t i = r.begin; i < r.end; ++i)
          std::copy(bias + o.begin, bias + o.end, y + i * O + o.begin);
      gemm<T>(false, true, r.size(), o.size(), I, T(1), x + r.begin * I, I, weight + o.begin * I,
              I, bias ? T(1) : T(0), y + r.begin * O + o.begin, O);
    }
  }
}

template <typename T>
void linear_backward(index_t B, index_t I, index_t O, const T* grad_y, const T* x,
                     const T* weight, T* grad_x, T* grad_weight, T* grad_bias) {
  check_linear(B, I, O);
#pragma omp parallel num_threads(get_num_threads()) if (linear_parallel(B, I, O))
  {
    const int np = omp_get_num_threads(), p = omp_get_thread_num();
    if (grad_x) {
      const Span r = split(B, np, p);
      if (r.size() > 0)
        gemm<T>(false, false, r.size(), I, O, T(1), grad_y + r.begin * O, O, weight, I, T(0),
                grad_x + r.begin * I, I);
    }
    const Span o = split(O, np, p);
    if (grad_weight && o.size() > 0)
      gemm<T>(true, false, o.size(), I, B, T(1), grad_y + o.begin, O, x, I, T(0),
              grad_weight + o.begin * I, I);
    if (grad_bias && o.size() > 0) {
      // column sums in row order: the same bits for any thread count
      std::fill(grad_bias + o.begin, grad_bias + o.end, T(0));
      for (index_t i = 0; i < B; ++i) {
        const T* g = grad_y + i * O;
#pragma omp simd
        for (index_t j = o.begin; j < o.end; ++j) grad_bias[j] += g[j];
      }
    }
  }
}

// ---- activations ---------------------------------------------------------------------------------

namespace {
// adlk/pointwise.h's rules over one chunk, one instantiation per activation.
template <typename T, Activation A>
ADLK_MULTIVERSION void act_chunk(index_t n, const T* x, T slope, T* y) {
#pragma omp simd
  for (index_t i = 0; i < n; ++i) y[i] = pointwise::activation<A>(x[i], slope);
}

template <typename T, Activation A>
ADLK_MULTIVERSION void act_backward_chunk(index_t n, const T* dy, const T* s, T slope, T* dx) {
#pragma omp simd
  for (index_t i = 0; i < n; ++i) dx[i] = pointwise::activation_grad<A>(dy[i], s[i], slope);
}
}  // namespace

template <typename T>
void activation_forward(index_t n, const T* x, Activation act, double slope, T* y) {
  check(n >= 0, "activation: negative size");
  pointwise::with_activation(act, [&](auto a) {
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (parallel(n))
    for (index_t k = 0; k < chunks_of(n); ++k) {
      const index_t b = k * kChunk;
      act_chunk<T, decltype(a)::value>(std::min(kChunk, n - b), x + b, T(slope), y + b);
    }
  });
}

template <typename T>
void activation_backward(index_t n, const T* grad_y, const T* saved, Activation act,
                         double slope, T* grad_x) {
  check(n >= 0, "activation: negative size");
  pointwise::with_activation(act, [&](auto a) {
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (parallel(n))
    for (index_t k = 0; k < chunks_of(n); ++k) {
      const index_t b = k * kChunk;
      act_backward_chunk<T, decltype(a)::value>(std::min(kChunk, n - b), grad_y + b, saved + b,
                                                T(slope), grad_x + b);
    }
  });
}

// ---- softmax ---------------------------------------------------------------------------------------

namespace {
template <typename T>
ADLK_MULTIVERSION T row_max(index_t K, const T* x) {
  // max and "any NaN" as two vectorizable reductions; NaN wins, as torch's max
  T m = -std::numeric_limits<T>::infinity();
  int nan = 0;
#pragma omp simd reduction(max : m) reduction(| : nan)
  for (index_t j = 0; j < K; ++j) {
    m = x[j] > m ? x[j] : m;
    nan |= x[j] != x[j];
  }
  return nan ? std::numeric_limits<T>::quiet_NaN() : m;
}

// e[j] = exp(x[j] - m); returns the sum (in double).
template <typename T>
ADLK_MULTIVERSION double row_exp(index_t K, const T* x, T m, T* e) {
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (index_t j = 0; j < K; ++j) {
    const T v = vm::exp_flush(x[j] - m);
    e[j] = v;
    s += double(v);
  }
  return s;
}

template <typename T>
ADLK_MULTIVERSION void softmax_row(index_t K, const T* x, bool log, T* y) {
  const T m = row_max(K, x);
  const double s = row_exp(K, x, m, y);
  if (log) {
    // (x - max) - log(sum): the two terms are not merged first, which would round the
    // huge max and lose the small log-sum-exp
    const T ls = T(std::log(s));
#pragma omp simd
    for (index_t j = 0; j < K; ++j) y[j] = (x[j] - m) - ls;
  } else {
    const T inv = T(1.0 / s);
#pragma omp simd
    for (index_t j = 0; j < K; ++j) y[j] *= inv;
  }
}

template <typename T>
ADLK_MULTIVERSION void softmax_backward_row(index_t K, const T* dy, const T* y, bool log, T* dx) {
  double s = 0;
  if (log) {
#pragma omp simd reduction(+ : s)
    for (index_t j = 0; j < K; ++j) s += double(dy[j]);
    const T st = T(s);
#pragma omp simd
    for (index_t j = 0; j < K; ++j) dx[j] = dy[j] - vm::exp_flush(y[j]) * st;
  } else {
#pragma omp simd reduction(+ : s)
    for (index_t j = 0; j < K; ++j) s += double(dy[j]) * double(y[j]);
    const T st = T(s);
#pragma omp simd
    for (index_t j = 0; j < K; ++j) dx[j] = y[j] * (dy[j] - st);
  }
}

}  // namespace

template <typename T>
void softmax_forward(index_t rows, index_t K, const T* x, bool log, T* y) {
  check(rows >= 0 && K >= 1, "softmax: need rows >= 0 and K >= 1");
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (parallel(rows * K))
  for (index_t r = 0; r < rows; ++r) softmax_row<T>(K, x + r * K, log, y + r * K);
}

template <typename T>
void softmax_backward(index_t rows, index_t K, const T* grad_y, const T* y, bool log, T* grad_x) {
  check(rows >= 0 && K >= 1, "softmax: need rows >= 0 and K >= 1");
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (parallel(rows * K))
  for (index_t r = 0; r < rows; ++r)
    softmax_backward_row<T>(K, grad_y + r * K, y + r * K, log, grad_x + r * K);
}

// ---- losses ------------------------------------------------------------------------------------------

template <typename T>
double softmax_cross_entropy(index_t B, index_t K, const T* logits, const std::int64_t* targets,
                             Reduction red, std::int64_t ignore_index, T* grad, T* loss_rows) {
  check(B >= 0 && K >= 1, "softmax_cross_entropy: need B >= 0 and K >= 1");
  index_t count = 0;
  for (index_t b = 0; b < B; ++b) {
    const std::int64_t t = targets[b];
    if (t == ignore_index) continue;
    if (t < 0 || t >= K)
      fail("softmax_cross_entropy: targets: value " + std::to_string(t) + " at [" +
           std::to_string(b) + "] is outside [0, " + std::to_string(K) + ")");
    ++count;
  }
  // the loss's gradient scale: mean divides by the rows that count
  const double scale = red == Reduction::kMean ? (count ? 1.0 / double(count) : 0.0) : 1.0;
  std::vector<double> row_loss(static_cast<std::size_t>(B));
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (parallel(B * K))
  for (index_t b = 0; b < B; ++b) {
    const T* x = logits + b * K;
    T* g = grad + b * K;
    const std::int64_t t = targets[b];
    if (t == ignore_index) {
      std::fill(g, g + K, T(0));
      row_loss[b] = 0;
      continue;
    }
    const T m = row_max(K, x);
    const double s = row_exp(K, x, m, g);
    row_loss[b] = (double(m) - double(x[t])) + std::log(s);
    const T k = T(scale / s);
#pragma omp simd
    for (index_t j = 0; j < K; ++j) g[j] *= k;
    g[t] -= T(scale);
  }
  double total = 0;
  for (index_t b = 0; b < B; ++b) {
    total += row_loss[b];
    if (loss_rows) loss_rows[b] = T(row_loss[b]);
  }
  if (red == Reduction::kMean) return count ? total / double(count) : std::nan("");
  return total;
}

namespace {
// adlk/pointwise.h's loss_term over one chunk; returns the chunk's loss sum (in double).
template <typename T, LossKind K>
ADLK_MULTIVERSION double loss_chunk(index_t n, const T* p, const T* t, T gscale, T delta, T* grad,
                                    T* loss) {
  double s = 0;
#pragma omp simd reduction(+ : s)
  for (index_t i = 0; i < n; ++i) {
    const T l = pointwise::loss_term<K>(p[i], t[i], delta, gscale, grad[i]);
    if (loss) loss[i] = l;
    s += double(l);
  }
  return s;
}
}  // namespace

template <typename T>
double elementwise_loss(index_t n, const T* pred, const T* target, LossKind kind, Reduction red,
                        double delta, T* grad, T* loss_elems) {
  check(n >= 0, "loss: negative size");
  const index_t nchunks = chunks_of(n);
  std::vector<double> part(static_cast<std::size_t>(nchunks));
  const T gscale = pointwise::loss_gscale<T>(red, n);
  pointwise::with_loss(kind, [&](auto lk) {
#pragma omp parallel for schedule(static) num_threads(get_num_threads()) if (parallel(n))
    for (index_t k = 0; k < nchunks; ++k) {
      const index_t b = k * kChunk;
      part[k] = loss_chunk<T, decltype(lk)::value>(std::min(kChunk, n - b), pred + b, target + b,
                                                  gscale, T(delta), grad + b,
                                                  loss_elems ? loss_elems + b : nullptr);
    }
  });
  double total = 0;
  for (double v : part) total += v;
  if (red == Reduction::kMean) return n ? total / double(n) : std::nan("");
  return total;
}

#define ADLK_INSTANTIATE_NN(T)                \
  ADLK_INSTANTIATE(batchnorm_forward, T)      \
  ADLK_INSTANTIATE(batchnorm_backward, T)     \
  ADLK_INSTANTIATE(layernorm_forward, T)      \
  ADLK_INSTANTIATE(layernorm_backward, T)     \
  ADLK_INSTANTIATE(dropout_forward, T)        \
  ADLK_INSTANTIATE(dropout_backward, T)       \
  ADLK_INSTANTIATE(linear_forward, T)         \
  ADLK_INSTANTIATE(linear_backward, T)        \
  ADLK_INSTANTIATE(activation_forward, T)     \
  ADLK_INSTANTIATE(activation_backward, T)    \
  ADLK_INSTANTIATE(softmax_forward, T)        \
  ADLK_INSTANTIATE(softmax_backward, T)       \
  ADLK_INSTANTIATE(softmax_cross_entropy, T)  \
  ADLK_INSTANTIATE(elementwise_loss, T)

ADLK_INSTANTIATE_NN(float)
ADLK_INSTANTIATE_NN(double)

}  // namespace adlk
