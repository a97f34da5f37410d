// The per-element rules of the activations, dropout, the losses and batch/layer norm,
// shared by the CPU loops (cpp/src/nn.cpp) and the CUDA kernels (cuda/nn.cu, cuda/norm.cu):
// one definition of the arithmetic and of the random stream. Both backends give the same dropout mask for the same seed and
// the same bits for relu, leaky relu and dropout; sigmoid and tanh agree to a few ulp
// (adlk/vecmath.h: the CPU's AVX2 code may contract multiply-adds, the GPU's does not).
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "adlk/common.h"
#include "adlk/nn.h"
#include "adlk/vecmath.h"

namespace adlk::pointwise {

// ---- activations ------------------------------------------------------------------------------

template <Activation A, typename T>
ADLK_HD ADLK_ALWAYS_INLINE T activation(T x, T slope) {
  if constexpr (A == Activation::kRelu) return x < T(0) ? T(0) : x;  // NaN stays NaN
  if constexpr (A == Activation::kLeakyRelu) return x > T(0) ? x : x * slope;
  if constexpr (A == Activation::kSigmoid) return vm::sigmoid(x);
  if constexpr (A == Activation::kTanh) return vm::tanh(x);
}

// grad_x from grad_y and the saved array (y when backward_takes_output(A), else x).
template <Activation A, typename T>
ADLK_HD ADLK_ALWAYS_INLINE T activation_grad(T dy, T saved, T slope) {
  if constexpr (A == Activation::kRelu) return saved > T(0) ? dy : T(0);
  if constexpr (A == Activation::kLeakyRelu) return saved > T(0) ? dy : dy * slope;
  if constexpr (A == Activation::kSigmoid) return dy * (T(1) - saved) * saved;
  if constexpr (A == Activation::kTanh) return dy * (T(1) - saved * saved);
}

// f(std::integral_constant<Activation, act>{}): picks the instantiation for `act`.
template <typename F>
decltype(auto) with_activation(Activation act, F&& f) {
  using A = Activation;
  switch (act) {
    case A::kLeakyRelu: return f(std::integral_constant<A, A::kLeakyRelu>{});
    case A::kSigmoid: return f(std::integral_constant<A, A::kSigmoid>{});
    case A::kTanh: return f(std::integral_constant<A, A::kTanh>{});
    case A::kRelu: break;
  }
  return f(std::integral_constant<A, A::kRelu>{});
}

// ---- elementwise losses -----------------------------------------------------------------------

// The loss of one element (pred p, target t) and its gradient, scaled by gscale (1/n for a
// mean); NaN stays NaN in both.
template <LossKind K, typename T>
ADLK_HD ADLK_ALWAYS_INLINE T loss_term(T p, T t, T delta, T gscale, T& grad) {
  const T d = p - t;
  if constexpr (K == LossKind::kMse) {
    grad = T(2) * d * gscale;
    return d * d;
  }
  const T ad = d < T(0) ? -d : d;
  if constexpr (K == LossKind::kL1) {
    const T sg = d > T(0) ? T(1) : (d < T(0) ? T(-1) : d * T(0));
    grad = sg * gscale;
    return ad;
  }
  if constexpr (K == LossKind::kHuber) {
    const T sg = d > T(0) ? delta : (d < T(0) ? -delta : d * T(0));
    grad = (ad <= delta ? d : sg) * gscale;
    return ad <= delta ? T(0.5) * d * d : delta * (ad - T(0.5) * delta);
  }
}

// f(std::integral_constant<LossKind, kind>{}).
template <typename F>
decltype(auto) with_loss(LossKind kind, F&& f) {
  using L = LossKind;
  switch (kind) {
    case L::kL1: return f(std::integral_constant<L, L::kL1>{});
    case L::kHuber: return f(std::integral_constant<L, L::kHuber>{});
    case L::kMse: break;
  }
  return f(std::integral_constant<L, L::kMse>{});
}

// The gradient scale of a reduction over n elements: 1/n for a mean (1/1 for none).
template <typename T>
T loss_gscale(Reduction red, index_t n) {
  return red == Reduction::kMean ? T(1.0 / double(n > 1 ? n : 1)) : T(1);
}

// ---- dropout: Philox-4x32-10 (Salmon et al., SC'11) ---------------------------------------------

constexpr std::uint32_t kPhiloxM0 = 0xD2511F53u, kPhiloxM1 = 0xCD9E8D57u;
constexpr std::uint32_t kPhiloxW0 = 0x9E3779B9u, kPhiloxW1 = 0xBB67AE85u;

// One round on the counter words (c0, c1, c2, c3) with round key (k0, k1).
ADLK_HD ADLK_ALWAYS_INLINE void philox_round(std::uint32_t& c0, std::uint32_t& c1,
                                             std::uint32_t& c2, std::uint32_t& c3,
                                             std::uint32_t k0, std::uint32_t k1) {
  const std::uint64_t p0 = std::uint64_t(kPhiloxM0) * c0;
  const std::uint64_t p1 = std::uint64_t(kPhiloxM1) * c2;
  const std::uint32_t n0 = std::uint32_t(p1 >> 32) ^ c1 ^ k0;
  const std::uint32_t n2 = std::uint32_t(p0 >> 32) ^ c3 ^ k1;
  c1 = std::uint32_t(p1);
  c3 = std::uint32_t(p0);
  c0 = n0;
  c2 = n2;
}

// The dropout stream: element i of the flattened array takes word i % 4 of Philox-4x32-10
// at counter (j, j >> 32, 0, 0), j = i / 4, key (seed, seed >> 32); it is kept when the
// word is >= thr (see adlkernels.nn).
ADLK_HD ADLK_ALWAYS_INLINE void dropout_words(std::uint64_t j, std::uint64_t seed,
                                              std::uint32_t (&w)[4]) {
  std::uint32_t k0 = std::uint32_t(seed), k1 = std::uint32_t(seed >> 32);
  w[0] = std::uint32_t(j), w[1] = std::uint32_t(j >> 32), w[2] = 0, w[3] = 0;
  for (int round = 0; round < 10; ++round) {
    philox_round(w[0], w[1], w[2], w[3], k0, k1);
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
}

template <typename T>
struct DropoutScalars {
  std::uint32_t thr;  // keep when word >= thr
  bool keep_none;     // p = 1 (or within 2^-33 of it)
  T scale;            // 1 / (1 - p), 0 for p = 1
};

template <typename T>
DropoutScalars<T> dropout_scalars(double p) {
  const std::uint64_t thr = std::uint64_t(std::llround(p * 4294967296.0));
  return {std::uint32_t(thr), thr > 0xffffffffu, p < 1 ? T(1.0 / (1.0 - p)) : T(0)};
}

template <typename T>
ADLK_HD ADLK_ALWAYS_INLINE bool dropout_keep(std::uint32_t word, const DropoutScalars<T>& s) {
  return !s.keep_none && word >= s.thr;
}

// ---- batch and layer normalization ----------------------------------------------------------------

// Mean and biased variance of n values from s1 = sum(x - pivot) and s2 = sum((x - pivot)^2),
// both in double (a pivot near the data keeps s2 - s1^2 / n from cancelling).
struct Moments {
  double mean, var;
};
ADLK_HD ADLK_ALWAYS_INLINE Moments shifted_moments(double pivot, double s1, double s2, double n) {
  const double var = (s2 - s1 * s1 / n) / n;
  return {pivot + s1 / n, 0.0 < var ? var : 0.0};
}

// Layer norm repeats a row's pass shifted by its mean when the shifted sums lose more
// than this factor to cancellation (s2 versus s2 - s1^2 / n).
constexpr double kMaxCancellation = 16;
ADLK_HD ADLK_ALWAYS_INLINE bool needs_recentering(double s1, double s2, double n) {
  return s2 > kMaxCancellation * (s2 - s1 * s1 / n);
}

ADLK_HD ADLK_ALWAYS_INLINE double inv_std(double var, double eps) { return 1.0 / std::sqrt(var + eps); }

// Batch norm's running statistics after a training step over M > 0 values per channel
// (either pointer may be null): momentum * the batch mean and the unbiased variance.
template <typename T>
ADLK_HD ADLK_ALWAYS_INLINE void update_running(T* running_mean, T* running_var, Moments m,
                                               double momentum, index_t M) {
  if (running_mean) *running_mean = T((1.0 - momentum) * double(*running_mean) + momentum * m.mean);
  if (running_var)
    *running_var = T((1.0 - momentum) * double(*running_var) +
                     momentum * m.var * double(M) / double(M - 1));
}

// The mean (double) as hi + lo in T: x - hi is exact for x near the mean (Sterbenz), so
// ((x - hi) - lo) keeps the bits a float32 mean of 1e4 would round away (half an ulp of
// 1e4 is 5e-4: that much error on every normalized value of a std-1 channel).
template <typename T>
struct SplitMean {
  T hi, lo;
  ADLK_HD explicit SplitMean(double m) : hi(T(m)), lo(T(m - double(T(m)))) {}
  ADLK_HD ADLK_ALWAYS_INLINE T center(T x) const { return (x - hi) - lo; }
};

// Batch norm: y = (x - mean) * scale + shift, scale = invstd * weight, shift = bias.
template <typename T>
ADLK_HD ADLK_ALWAYS_INLINE T batchnorm_out(T x, SplitMean<T> mean, T scale, T shift) {
  return mean.center(x) * scale + shift;
}

// Batch norm's backward per channel: dx = a * dy + b + k * (x - mean), from the channel's
// sums sdy = sum(dy) and sdx = sum(dy * (x - mean)) over its M values; b = k = 0 when the
// statistics were constants (eval).
struct BatchNormGrad {
  double a, b, k;
};
ADLK_HD ADLK_ALWAYS_INLINE BatchNormGrad batchnorm_grad_coefficients(double sdy, double sdx,
                                                                     double istd, double w,
                                                                     bool training, index_t M) {
  BatchNormGrad c{w * istd, 0.0, 0.0};
  if (training && M > 0) {
    c.b = -w * istd * sdy / double(M);
    c.k = -w * istd * istd * istd * sdx / double(M);
  }
  return c;
}

template <typename T>
ADLK_HD ADLK_ALWAYS_INLINE T batchnorm_grad(T dy, T x, T mean, T a, T b, T k) {
  return a * dy + b + k * (x - mean);
}

// Layer norm: y = (x - mean) * rstd [* w] [+ b].
template <bool kWeight, bool kBias, typename T>
ADLK_HD ADLK_ALWAYS_INLINE T layernorm_out(T x, SplitMean<T> mean, T rstd, T w, T b) {
  T v = mean.center(x) * rstd;
  if constexpr (kWeight) v = v * w;
  if constexpr (kBias) v = v + b;
  return v;
}

// Layer norm's backward: dx = rstd * (g - k2 - xhat * k1), g = dy [* w], xhat = (x - mean) *
// rstd, k1 = mean of g * xhat, k2 = mean of g over the row.
template <bool kWeight, typename T>
ADLK_HD ADLK_ALWAYS_INLINE T layernorm_grad(T dy, T x, T mean, T rstd, T w, T k1, T k2) {
  const T g = kWeight ? dy * w : dy;
  return rstd * (g - k2 - (x - mean) * rstd * k1);
}

}  // namespace adlk::pointwise
