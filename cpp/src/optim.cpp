#include "adlk/optim.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "adlk/optim_update.h"
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

// ---- the update loops: adlk/optim_update.h's per-element rules over one segment ----------

template <typename T, bool WD, bool MOM, bool FIRST, bool NESTEROV>
ADLK_MULTIVERSION void sgd_segment(index_t n, T* __restrict p, const T* __restrict g,
                                   T* __restrict buf, const update::SgdScalars<T> s) {
#pragma omp simd
  for (index_t i = 0; i < n; ++i) update::sgd<T, WD, MOM, FIRST, NESTEROV>(i, p, g, buf, s);
}

template <typename T, bool WD>
ADLK_MULTIVERSION void adagrad_segment(index_t n, T* __restrict p, const T* __restrict g,
                                       T* __restrict sum, const update::AdagradScalars<T> s) {
#pragma omp simd
  for (index_t i = 0; i < n; ++i) update::adagrad<T, WD>(i, p, g, sum, s);
}

template <typename T, bool WD, bool CENTERED, bool MOM>
ADLK_MULTIVERSION void rmsprop_segment(index_t n, T* __restrict p, const T* __restrict g,
                                       T* __restrict sq, T* __restrict buf, T* __restrict gavg,
                                       const update::RmspropScalars<T> s) {
#pragma omp simd
  for (index_t i = 0; i < n; ++i) update::rmsprop<T, WD, CENTERED, MOM>(i, p, g, sq, buf, gavg, s);
}

template <typename T, bool WD, bool DECOUPLED, bool AMSGRAD>
ADLK_MULTIVERSION void adam_segment(index_t n, T* __restrict p, const T* __restrict g,
                                    T* __restrict m, T* __restrict v, T* __restrict vmax,
                                    const update::AdamScalars<T> s) {
#pragma omp simd
  for (index_t i = 0; i < n; ++i) update::adam<T, WD, DECOUPLED, AMSGRAD>(i, p, g, m, v, vmax, s);
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

// The flags of each variant pick an instantiation of its segment loop (with_flags).
#define ADLK_FLAG(f) decltype(f)::value

template <typename T>
void sgd_step(index_t count, const index_t* sizes, T* const* params, const T* const* grads,
              T* const* momentum_buffers, const SgdHyper& h) {
  check(h.step >= 1, "sgd_step: step must be >= 1");
  check(h.momentum == 0 || momentum_buffers != nullptr, "sgd_step: momentum needs buffers");
  const auto s = update::sgd_scalars<T>(h);
  const bool mom = h.momentum != 0;
  for_each_share(count, sizes, [&](index_t k, index_t b, index_t e) {
    T* buf = mom ? momentum_buffers[k] + b : nullptr;
    with_flags([&](auto wd, auto mo, auto first, auto nest) {
      sgd_segment<T, ADLK_FLAG(wd), ADLK_FLAG(mo), ADLK_FLAG(first), ADLK_FLAG(nest)>(
          e - b, params[k] + b, grads[k] + b, buf, s);
    }, h.weight_decay != 0, mom, mom && h.step == 1, mom && h.nesterov);
  });
}

template <typename T>
void adagrad_step(index_t count, const index_t* sizes, T* const* params, const T* const* grads,
                  T* const* state_sums, const AdagradHyper& h) {
  check(h.step >= 1, "adagrad_step: step must be >= 1");
  const auto s = update::adagrad_scalars<T>(h);
  for_each_share(count, sizes, [&](index_t k, index_t b, index_t e) {
    with_flags([&](auto wd) {
      adagrad_segment<T, ADLK_FLAG(wd)>(e - b, params[k] + b, grads[k] + b, state_sums[k] + b, s);
    }, h.weight_decay != 0);
  });
}

template <typename T>
void rmsprop_step(index_t count, const index_t* sizes, T* const* params, const T* const* grads,
                  T* const* square_avgs, T* const* momentum_buffers, T* const* grad_avgs,
                  const RmspropHyper& h) {
  check(h.step >= 1, "rmsprop_step: step must be >= 1");
  check(h.momentum <= 0 || momentum_buffers != nullptr, "rmsprop_step: momentum needs buffers");
  check(!h.centered || grad_avgs != nullptr, "rmsprop_step: centered needs grad_avgs");
  const auto s = update::rmsprop_scalars<T>(h);
  const bool use_mom = h.momentum > 0;
  for_each_share(count, sizes, [&](index_t k, index_t b, index_t e) {
    T* buf = use_mom ? momentum_buffers[k] + b : nullptr;
    T* ga = h.centered ? grad_avgs[k] + b : nullptr;
    with_flags([&](auto wd, auto centered, auto mo) {
      rmsprop_segment<T, ADLK_FLAG(wd), ADLK_FLAG(centered), ADLK_FLAG(mo)>(
          e - b, params[k] + b, grads[k] + b, square_avgs[k] + b, buf, ga, s);
    }, h.weight_decay != 0, h.centered, use_mom);
  });
}

template <typename T>
void adam_step(index_t count, const index_t* sizes, T* const* params, const T* const* grads,
               T* const* exp_avgs, T* const* exp_avg_sqs, T* const* max_exp_avg_sqs,
               const AdamHyper& h) {
  check(h.step >= 1, "adam_step: step must be >= 1");
  check(!h.amsgrad || max_exp_avg_sqs != nullptr, "adam_step: amsgrad needs max_exp_avg_sqs");
  const auto s = update::adam_scalars<T>(h);
  const bool wd = h.weight_decay != 0;
  for_each_share(count, sizes, [&](index_t k, index_t b, index_t e) {
    T* vmax = h.amsgrad ? max_exp_avg_sqs[k] + b : nullptr;
    with_flags([&](auto w, auto dec, auto ams) {
      adam_segment<T, ADLK_FLAG(w), ADLK_FLAG(dec), ADLK_FLAG(ams)>(
          e - b, params[k] + b, grads[k] + b, exp_avgs[k] + b, exp_avg_sqs[k] + b, vmax, s);
    }, wd, wd && h.decoupled_weight_decay, h.amsgrad);
  });
}

#undef ADLK_FLAG

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
