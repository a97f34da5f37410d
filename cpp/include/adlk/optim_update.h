// The per-element update rules of the optimizers, shared by the CPU loops
// (cpp/src/optim.cpp) and the CUDA kernels (cuda/optim.cu).
//
// One definition of the arithmetic: the scalars of a step (bias corrections, step sizes,
// signs) are computed once per call on the host by the *_scalars functions, in double and
// rounded to T as torch.optim's Python scalars are; each element is then updated by the
// ADLK_HD function below with the variant flags as template arguments (weight decay,
// momentum, ...: the flags remove the unused arithmetic from the loops). Both backends
// evaluate the same expressions in the same order without FMA contraction, so a step gives
// the same bits on the CPU and on a GPU.
#pragma once

#include <cmath>

#include "adlk/common.h"
#include "adlk/optim.h"

namespace adlk::update {

// torch.lerp: a + w (b - a) for w < 0.5, else b - (b - a)(1 - w).
template <typename T>
ADLK_HD ADLK_ALWAYS_INLINE T lerp(T a, T b, T w, bool low) {
  return low ? a + w * (b - a) : b - (b - a) * (T(1) - w);
}

// ---- SGD ------------------------------------------------------------------------------------

template <typename T>
struct SgdScalars {
  T lr, sign, wd, mom, one_minus_damp;
};

template <typename T>
SgdScalars<T> sgd_scalars(const SgdHyper& h) {
  return {T(h.lr), h.maximize ? T(-1) : T(1), T(h.weight_decay), T(h.momentum),
          T(1.0 - h.dampening)};
}

// Flags: WD (weight_decay != 0), MOM (momentum != 0), FIRST (step 1: the buffer starts as
// the gradient), NESTEROV.
template <typename T, bool WD, bool MOM, bool FIRST, bool NESTEROV>
ADLK_HD ADLK_ALWAYS_INLINE void sgd(index_t i, T* p, const T* g, T* buf, const SgdScalars<T>& s) {
  T d = s.sign * g[i];
  if (WD) d = d + s.wd * p[i];
  if (MOM) {
    const T b = FIRST ? d : s.mom * buf[i] + s.one_minus_damp * d;
    buf[i] = b;
    d = NESTEROV ? d + s.mom * b : b;
  }
  p[i] = p[i] - s.lr * d;
}

// ---- Adagrad --------------------------------------------------------------------------------

template <typename T>
struct AdagradScalars {
  T clr, sign, wd, eps;
};

template <typename T>
AdagradScalars<T> adagrad_scalars(const AdagradHyper& h) {
  return {T(h.lr / (1.0 + double(h.step - 1) * h.lr_decay)), h.maximize ? T(-1) : T(1),
          T(h.weight_decay), T(h.eps)};
}

template <typename T, bool WD>
ADLK_HD ADLK_ALWAYS_INLINE void adagrad(index_t i, T* p, const T* g, T* sum,
                                        const AdagradScalars<T>& s) {
  T d = s.sign * g[i];
  if (WD) d = d + s.wd * p[i];
  const T v = sum[i] + d * d;
  sum[i] = v;
  p[i] = p[i] - s.clr * (d / (std::sqrt(v) + s.eps));
}

// ---- RMSprop --------------------------------------------------------------------------------

template <typename T>
struct RmspropScalars {
  T lr, sign, wd, alpha, one_minus_alpha, eps, mom;
  bool lerp_low;
};

template <typename T>
RmspropScalars<T> rmsprop_scalars(const RmspropHyper& h) {
  const T oma = T(1.0 - h.alpha);
  return {T(h.lr), h.maximize ? T(-1) : T(1), T(h.weight_decay), T(h.alpha), oma, T(h.eps),
          T(h.momentum), oma < T(0.5)};
}

// Flags: WD, CENTERED (grad_avg kept), MOM (momentum > 0).
template <typename T, bool WD, bool CENTERED, bool MOM>
ADLK_HD ADLK_ALWAYS_INLINE void rmsprop(index_t i, T* p, const T* g, T* sq, T* buf, T* gavg,
                                        const RmspropScalars<T>& s) {
  T d = s.sign * g[i];
  if (WD) d = d + s.wd * p[i];
  const T v = sq[i] * s.alpha + s.one_minus_alpha * (d * d);
  sq[i] = v;
  T avg;
  if (CENTERED) {
    const T ga = lerp(gavg[i], d, s.one_minus_alpha, s.lerp_low);
    gavg[i] = ga;
    avg = std::sqrt(v - ga * ga) + s.eps;
  } else {
    avg = std::sqrt(v) + s.eps;
  }
  if (MOM) {
    const T b = buf[i] * s.mom + d / avg;
    buf[i] = b;
    p[i] = p[i] - s.lr * b;
  } else {
    p[i] = p[i] - s.lr * (d / avg);
  }
}

// ---- Adam / AdamW ---------------------------------------------------------------------------

template <typename T>
struct AdamScalars {
  T sign, wd, decay, one_minus_beta1, beta2, one_minus_beta2, step_size, bc2_sqrt, eps;
  bool lerp_low;
};

template <typename T>
AdamScalars<T> adam_scalars(const AdamHyper& h) {
  // PyTorch's bias corrections, in double as its Python scalars
  const double bc1 = 1.0 - std::pow(h.beta1, double(h.step));
  const double bc2 = 1.0 - std::pow(h.beta2, double(h.step));
  const T omb1 = T(1.0 - h.beta1);
  return {h.maximize ? T(-1) : T(1), T(h.weight_decay), T(1.0 - h.lr * h.weight_decay), omb1,
          T(h.beta2), T(1.0 - h.beta2), T(h.lr / bc1), T(std::sqrt(bc2)), T(h.eps),
          omb1 < T(0.5)};
}

// Flags: WD (weight_decay != 0), DECOUPLED (AdamW: param scaled, not the gradient
// decayed), AMSGRAD (running maximum of v in vmax).
template <typename T, bool WD, bool DECOUPLED, bool AMSGRAD>
ADLK_HD ADLK_ALWAYS_INLINE void adam(index_t i, T* p, const T* g, T* m, T* v, T* vmax,
                                     const AdamScalars<T>& s) {
  T d = s.sign * g[i];
  T pv = p[i];
  if (WD) {
    if (DECOUPLED)
      pv = pv * s.decay;
    else
      d = d + s.wd * pv;
  }
  const T mv = lerp(m[i], d, s.one_minus_beta1, s.lerp_low);
  m[i] = mv;
  T vv = v[i] * s.beta2 + s.one_minus_beta2 * (d * d);
  v[i] = vv;
  if (AMSGRAD) {
    const T old = vmax[i];
    T top = vv > old ? vv : old;
    top = vv != vv ? vv : top;  // NaN propagates, as torch.maximum
    vmax[i] = top;
    vv = top;
  }
  const T denom = std::sqrt(vv) / s.bc2_sqrt + s.eps;
  p[i] = pv - s.step_size * (mv / denom);
}

// ---- clip_grad_norm's scaling -----------------------------------------------------------------

// The factor clip_grad_norm multiplies by, from the total norm (in double, as the norm
// kernels return it) rounded to T: max_norm / (total + 1e-6) in T, as torch's clip_coef;
// `scale` is false when it is >= 1 (NaN scales, as torch's clamp(coef, max=1)).
template <typename T>
ADLK_HD ADLK_ALWAYS_INLINE T clip_coef(double total, double max_norm, bool& scale) {
  const T coef = T(max_norm) / (T(total) + T(1e-6));
  scale = !(coef >= T(1));
  return coef;
}

}  // namespace adlk::update
