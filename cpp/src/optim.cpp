#include "adlk/optim.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "adlk/parallel.h"
#include "adlk/tuning.h"

namespace adlk {

namespace {

constexpr index_t kParallelGrain = kElementwiseParallelGrain;  // adlk/tuning.h
// Share boundaries are multiples of this many elements, so that two threads never
// write the same cache line (for tensors that start on one).
constexpr index_t kShareAlign = 16;

std::vector<index_t> prefix_offsets(index_t count, const index_t* sizes) {
  check(count >= 0, "optimizer: negative tensor count");
  std::vector<index_t> off(static_cast<std::size_t>(count) + 1, 0);
  for (index_t k = 0; k < count; ++k) {
    check(sizes[k] >= 0, "optimizer: negative tensor size");
    check(!__builtin_add_overflow(off[k], sizes[k], &off[k + 1]), "optimizer: sizes overflow");
  }
  return off;
}

// Start of thread p's share of [0, total) (equal shares, aligned; p == np gives total).
index_t share_bound(index_t total, int np, int p) {
  if (p >= np) return total;
  const index_t v = (total / np) * p + std::min<index_t>(p, total % np);
  return v - v % kShareAlign;
}

// Calls seg(k, begin, end) for the pieces of tensors that fall in each thread's share of
// all elements together: balanced by size whatever the mix of tensor sizes.
template <typename Seg>
void for_each_share(index_t count, const index_t* sizes, Seg&& seg) {
  const std::vector<index_t> off = prefix_offsets(count, sizes);
  const index_t total = off.back();
  const int nt = get_num_threads();
#pragma omp parallel num_threads(nt) if (total >= kParallelGrain && nt > 1)
  {
    const int p = omp_get_thread_num(), np = omp_get_num_threads();
    const index_t lo = share_bound(total, np, p), hi = share_bound(total, np, p + 1);
    if (lo < hi) {
      index_t k = std::upper_bound(off.begin(), off.end(), lo) - off.begin() - 1;
      for (; k < count && off[k] < hi; ++k) {
        const index_t b = std::max(lo, off[k]) - off[k], e = std::min(hi, off[k + 1]) - off[k];
        if (e > b) seg(k, b, e);
      }
    }
  }
}

// torch.lerp: a + w (b - a) for w < 0.5, else b - (b - a)(1 - w).
template <typename T>
inline T lerp(T a, T b, T w, bool low) {
  return low ? a + w * (b - a) : b - (b - a) * (T(1) - w);
}

// ---- SGD ------------------------------------------------------------------------------

template <typename T, bool WD, bool MOM, bool FIRST, bool NESTEROV>
ADLK_MULTIVERSION void sgd_segment(index_t n, T* __restrict p, const T* __restrict g,
                                   T* __restrict buf, T lr, T sign, T wd, T mom,
                                   T one_minus_damp) {
#pragma omp simd
  for (index_t i = 0; i < n; ++i) {
    T d = sign * g[i];
    if (WD) d = d + wd * p[i];
    if (MOM) {
      const T b = FIRST ? d : mom * buf[i] + one_minus_damp * d;
      buf[i] = b;
      d = NESTEROV ? d + mom * b : b;
    }
    p[i] = p[i] - lr * d;
  }
}

template <typename T, bool WD>
void sgd_dispatch(index_t n, T* p, const T* g, T* buf, const SgdHyper& h) {
  const T lr = T(h.lr), sign = h.maximize ? T(-1) : T(1), wd = T(h.weight_decay),
          mom = T(h.momentum), omd = T(1.0 - h.dampening);
  if (h.momentum == 0) return sgd_segment<T, WD, false, false, false>(n, p, g, buf, lr, sign, wd, mom, omd);
  const bool first = h.step == 1;
  if (h.nesterov)
    return first ? sgd_segment<T, WD, true, true, true>(n, p, g, buf, lr, sign, wd, mom, omd)
                 : sgd_segment<T, WD, true, false, true>(n, p, g, buf, lr, sign, wd, mom, omd);
  return first ? sgd_segment<T, WD, true, true, false>(n, p, g, buf, lr, sign, wd, mom, omd)
               : sgd_segment<T, WD, true, false, false>(n, p, g, buf, lr, sign, wd, mom, omd);
}

// ---- Adagrad ----------------------------------------------------------------------------

template <typename T, bool WD>
ADLK_MULTIVERSION void adagrad_segment(index_t n, T* __restrict p, const T* __restrict g,
                                       T* __restrict sum, T clr, T sign, T wd, T eps) {
#pragma omp simd
  for (index_t i = 0; i < n; ++i) {
    T d = sign * g[i];
    if (WD) d = d + wd * p[i];
    const T s = sum[i] + d * d;
    sum[i] = s;
    p[i] = p[i] - clr * (d / (std::sqrt(s) + eps));
  }
}

// ---- RMSprop ----------------------------------------------------------------------------

template <typename T, bool WD, bool CENTERED, bool MOM>
ADLK_MULTIVERSION void rmsprop_segment(index_t n, T* __restrict p, const T* __restrict g,
                                       T* __restrict sq, T* __restrict buf, T* __restrict gavg,
                                       T lr, T sign, T wd, T alpha, T one_minus_alpha,
                                       bool lerp_low, T eps, T mom) {
#pragma omp simd
  for (index_t i = 0; i < n; ++i) {
    T d = sign * g[i];
    if (WD) d = d + wd * p[i];
    const T s = sq[i] * alpha + one_minus_alpha * (d * d);
    sq[i] = s;
    T avg;
    if (CENTERED) {
      const T ga = lerp(gavg[i], d, one_minus_alpha, lerp_low);
      gavg[i] = ga;
      avg = std::sqrt(s - ga * ga) + eps;
    } else {
      avg = std::sqrt(s) + eps;
    }
    if (MOM) {
      const T b = buf[i] * mom + d / avg;
      buf[i] = b;
      p[i] = p[i] - lr * b;
    } else {
      p[i] = p[i] - lr * (d / avg);
    }
  }
}

// ---- Adam -----------------------------------------------------------------------------------

template <typename T, bool WD, bool DECOUPLED, bool AMSGRAD>
ADLK_MULTIVERSION void adam_segment(index_t n, T* __restrict p, const T* __restrict g,
                                    T* __restrict m, T* __restrict v, T* __restrict vmax,
                                    T sign, T wd, T decay, T one_minus_beta1, bool lerp_low,
                                    T beta2, T one_minus_beta2, T step_size, T bc2_sqrt, T eps) {
#pragma omp simd
  for (index_t i = 0; i < n; ++i) {
    T d = sign * g[i];
    T pv = p[i];
    if (WD) {
      if (DECOUPLED)
        pv = pv * decay;
      else
        d = d + wd * pv;
    }
    const T mv = lerp(m[i], d, one_minus_beta1, lerp_low);
    m[i] = mv;
    T vv = v[i] * beta2 + one_minus_beta2 * (d * d);
    v[i] = vv;
    if (AMSGRAD) {
      const T old = vmax[i];
      T top = vv > old ? vv : old;
      top = vv != vv ? vv : top;  // NaN propagates, as torch.maximum
      vmax[i] = top;
      vv = top;
    }
    const T denom = std::sqrt(vv) / bc2_sqrt + eps;
    p[i] = pv - step_size * (mv / denom);
  }
}

template <typename T>
ADLK_MULTIVERSION void scale_segment(index_t n, T* __restrict x, T f) {
#pragma omp simd
  for (index_t i = 0; i < n; ++i) x[i] *= f;
}

// Partial norm of one chunk, accumulated in double in kLanes fixed lanes (element i goes
// to lane i % kLanes) that are added in order at the end: the grouping of the sum is set
// by the code, not by how the compiler vectorizes or aligns the loop.
constexpr index_t kLanes = 16;

template <typename T>
ADLK_MULTIVERSION double chunk_norm(index_t n, const T* __restrict x, int kind) {
  double acc[kLanes] = {};
  const index_t full = n - n % kLanes;
  if (kind == 2) {
    for (index_t i = 0; i < full; i += kLanes)
      for (index_t j = 0; j < kLanes; ++j) acc[j] += double(x[i + j]) * double(x[i + j]);
    for (index_t i = full; i < n; ++i) acc[i - full] += double(x[i]) * double(x[i]);
  } else if (kind == 1) {
    for (index_t i = 0; i < full; i += kLanes)
      for (index_t j = 0; j < kLanes; ++j) acc[j] += std::fabs(double(x[i + j]));
    for (index_t i = full; i < n; ++i) acc[i - full] += std::fabs(double(x[i]));
  } else {
    // max is order-independent; NaN wins (as torch's inf-norm)
    bool nan = false;
    double top = 0;
    for (index_t i = 0; i < n; ++i) {
      const double a = std::fabs(double(x[i]));
      nan |= a != a;
      top = a > top ? a : top;
    }
    return nan ? std::nan("") : top;
  }
  double s = 0;
  for (index_t j = 0; j < kLanes; ++j) s += acc[j];
  return s;
}

}  // namespace

template <typename T>
void sgd_step(index_t count, const index_t* sizes, T* const* params, const T* const* grads,
              T* const* momentum_buffers, const SgdHyper& h) {
  check(h.step >= 1, "sgd_step: step must be >= 1");
  check(h.momentum == 0 || momentum_buffers != nullptr, "sgd_step: momentum needs buffers");
  for_each_share(count, sizes, [&](index_t k, index_t b, index_t e) {
    T* buf = momentum_buffers ? momentum_buffers[k] + b : nullptr;
    if (h.weight_decay != 0)
      sgd_dispatch<T, true>(e - b, params[k] + b, grads[k] + b, buf, h);
    else
      sgd_dispatch<T, false>(e - b, params[k] + b, grads[k] + b, buf, h);
  });
}

template <typename T>
void adagrad_step(index_t count, const index_t* sizes, T* const* params, const T* const* grads,
                  T* const* state_sums, const AdagradHyper& h) {
  check(h.step >= 1, "adagrad_step: step must be >= 1");
  const T clr = T(h.lr / (1.0 + double(h.step - 1) * h.lr_decay));
  const T sign = h.maximize ? T(-1) : T(1), wd = T(h.weight_decay), eps = T(h.eps);
  for_each_share(count, sizes, [&](index_t k, index_t b, index_t e) {
    if (h.weight_decay != 0)
      adagrad_segment<T, true>(e - b, params[k] + b, grads[k] + b, state_sums[k] + b, clr, sign, wd, eps);
    else
      adagrad_segment<T, false>(e - b, params[k] + b, grads[k] + b, state_sums[k] + b, clr, sign, wd, eps);
  });
}

template <typename T>
void rmsprop_step(index_t count, const index_t* sizes, T* const* params, const T* const* grads,
                  T* const* square_avgs, T* const* momentum_buffers, T* const* grad_avgs,
                  const RmspropHyper& h) {
  check(h.step >= 1, "rmsprop_step: step must be >= 1");
  check(h.momentum <= 0 || momentum_buffers != nullptr, "rmsprop_step: momentum needs buffers");
  check(!h.centered || grad_avgs != nullptr, "rmsprop_step: centered needs grad_avgs");
  const T lr = T(h.lr), sign = h.maximize ? T(-1) : T(1), wd = T(h.weight_decay),
          alpha = T(h.alpha), oma = T(1.0 - h.alpha), eps = T(h.eps), mom = T(h.momentum);
  const bool low = oma < T(0.5);
  const bool use_wd = h.weight_decay != 0, use_mom = h.momentum > 0;
  for_each_share(count, sizes, [&](index_t k, index_t b, index_t e) {
    T* p = params[k] + b;
    const T* g = grads[k] + b;
    T* sq = square_avgs[k] + b;
    T* buf = use_mom ? momentum_buffers[k] + b : nullptr;
    T* ga = h.centered ? grad_avgs[k] + b : nullptr;
    const index_t n = e - b;
#define ADLK_RMSPROP(WD, C, M) \
  rmsprop_segment<T, WD, C, M>(n, p, g, sq, buf, ga, lr, sign, wd, alpha, oma, low, eps, mom)
    if (use_wd) {
      if (h.centered) use_mom ? ADLK_RMSPROP(true, true, true) : ADLK_RMSPROP(true, true, false);
      else use_mom ? ADLK_RMSPROP(true, false, true) : ADLK_RMSPROP(true, false, false);
    } else {
      if (h.centered) use_mom ? ADLK_RMSPROP(false, true, true) : ADLK_RMSPROP(false, true, false);
      else use_mom ? ADLK_RMSPROP(false, false, true) : ADLK_RMSPROP(false, false, false);
    }
#undef ADLK_RMSPROP
  });
}

template <typename T>
void adam_step(index_t count, const index_t* sizes, T* const* params, const T* const* grads,
               T* const* exp_avgs, T* const* exp_avg_sqs, T* const* max_exp_avg_sqs,
               const AdamHyper& h) {
  check(h.step >= 1, "adam_step: step must be >= 1");
  check(!h.amsgrad || max_exp_avg_sqs != nullptr, "adam_step: amsgrad needs max_exp_avg_sqs");
  // PyTorch's bias corrections, in double as its Python scalars
  const double bc1 = 1.0 - std::pow(h.beta1, double(h.step));
  const double bc2 = 1.0 - std::pow(h.beta2, double(h.step));
  const T step_size = T(h.lr / bc1), bc2_sqrt = T(std::sqrt(bc2));
  const T sign = h.maximize ? T(-1) : T(1), wd = T(h.weight_decay),
          decay = T(1.0 - h.lr * h.weight_decay), omb1 = T(1.0 - h.beta1), beta2 = T(h.beta2),
          omb2 = T(1.0 - h.beta2), eps = T(h.eps);
  const bool low = omb1 < T(0.5);
  const bool use_wd = h.weight_decay != 0;
  for_each_share(count, sizes, [&](index_t k, index_t b, index_t e) {
    T* p = params[k] + b;
    const T* g = grads[k] + b;
    T* m = exp_avgs[k] + b;
    T* v = exp_avg_sqs[k] + b;
    T* vmax = h.amsgrad ? max_exp_avg_sqs[k] + b : nullptr;
    const index_t n = e - b;
#define ADLK_ADAM(WD, D, A) \
  adam_segment<T, WD, D, A>(n, p, g, m, v, vmax, sign, wd, decay, omb1, low, beta2, omb2, step_size, bc2_sqrt, eps)
    if (use_wd) {
      if (h.decoupled_weight_decay) h.amsgrad ? ADLK_ADAM(true, true, true) : ADLK_ADAM(true, true, false);
      else h.amsgrad ? ADLK_ADAM(true, false, true) : ADLK_ADAM(true, false, false);
    } else {
      h.amsgrad ? ADLK_ADAM(false, false, true) : ADLK_ADAM(false, false, false);
    }
#undef ADLK_ADAM
  });
}

template <typename T>
double total_norm(index_t count, const index_t* sizes, const T* const* tensors, double norm_type) {
  const int kind = norm_type == 1.0 ? 1 : (norm_type == 2.0 ? 2 : 0);
  check(kind != 0 || std::isinf(norm_type), "total_norm: norm_type must be 1, 2 or inf");
  const std::vector<index_t> off = prefix_offsets(count, sizes);
  // Fixed chunks: (tensor, start) pairs, independent of the thread count.
  std::vector<std::pair<index_t, index_t>> chunks;
  for (index_t k = 0; k < count; ++k)
    for (index_t s = 0; s < sizes[k]; s += kSumChunk) chunks.emplace_back(k, s);
  const index_t nc = static_cast<index_t>(chunks.size());
  std::vector<double> part(static_cast<std::size_t>(nc));
  const int nt = get_num_threads();
#pragma omp parallel for schedule(static) num_threads(nt) if (off.back() >= kParallelGrain && nt > 1)
  for (index_t c = 0; c < nc; ++c) {
    const auto [k, s] = chunks[c];
    part[c] = chunk_norm<T>(std::min(kSumChunk, sizes[k] - s), tensors[k] + s, kind);
  }
  double total = 0;
  bool nan = false;
  for (double v : part) {
    nan |= v != v;
    total = kind == 0 ? (v > total ? v : total) : total + v;
  }
  if (nan) return std::nan("");
  return kind == 2 ? std::sqrt(total) : total;
}

template <typename T>
void scale_tensors(index_t count, const index_t* sizes, T* const* tensors, double factor) {
  const T f = T(factor);
  for_each_share(count, sizes, [&](index_t k, index_t b, index_t e) {
    scale_segment<T>(e - b, tensors[k] + b, f);
  });
}

#define ADLK_INSTANTIATE_OPTIM(T)     \
  ADLK_INSTANTIATE(sgd_step, T)       \
  ADLK_INSTANTIATE(adagrad_step, T)   \
  ADLK_INSTANTIATE(rmsprop_step, T)   \
  ADLK_INSTANTIATE(adam_step, T)      \
  ADLK_INSTANTIATE(total_norm, T)     \
  ADLK_INSTANTIATE(scale_tensors, T)

ADLK_INSTANTIATE_OPTIM(float)
ADLK_INSTANTIATE_OPTIM(double)

}  // namespace adlk
