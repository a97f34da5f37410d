// The per-element rules of the recurrent cells, shared by the CPU tiles (cpp/src/rnn.cpp)
// and the CUDA step kernels (cuda/rnn.cu): one definition of the LSTM and GRU gate
// arithmetic, forward and backward. Gate order as PyTorch's: LSTM i, f, g, o; GRU r, z, n.
#pragma once

#include "adlk/common.h"
#include "adlk/vecmath.h"

namespace adlk::cell {

// LSTM step: the pre-activations gi, gf, gg, go become the activations i, f, g, o;
// c = f * c_prev + i * g, h = o * tanh(c).
template <typename T>
ADLK_HD ADLK_ALWAYS_INLINE void lstm_step(T& gi, T& gf, T& gg, T& go, T c_prev, T& c, T& h) {
  const T i = vm::sigmoid(gi), f = vm::sigmoid(gf), g = vm::tanh(gg), o = vm::sigmoid(go);
  const T cv = f * c_prev + i * g;
  gi = i, gf = f, gg = g, go = o;
  c = cv;
  h = o * vm::tanh(cv);
}

// Its backward from the activations: dh (the gradient reaching h_t) and dc (in: from step
// t+1; out: to c_{t-1}) give the pre-activation gradients di, df, dg, d_o.
template <typename T>
ADLK_HD ADLK_ALWAYS_INLINE void lstm_step_grad(T i, T f, T g, T o, T c_prev, T c_cur, T dh, T& dc,
                                               T& di, T& df, T& dg, T& d_o) {
  const T tc = vm::tanh(c_cur);
  const T dcv = dc + dh * o * (T(1) - tc * tc);
  di = dcv * g * i * (T(1) - i);
  df = dcv * c_prev * f * (T(1) - f);
  dg = dcv * i * (T(1) - g * g);
  d_o = dh * tc * o * (T(1) - o);
  dc = dcv * f;
}

// GRU step from the input projections (ir, iz, in_: x W_i*^T + b_i*) and the recurrent
// ones (hr, hz, hn: h W_h*^T + b_h*): r, z, n and h_next = (1 - z) * n + z * h.
template <typename T>
ADLK_HD ADLK_ALWAYS_INLINE void gru_step(T ir, T iz, T in_, T hr, T hz, T hn, T h, T& r, T& z,
                                         T& n, T& h_next) {
  const T rv = vm::sigmoid(ir + hr);
  const T zv = vm::sigmoid(iz + hz);
  const T nv = vm::tanh(in_ + rv * hn);
  r = rv, z = zv, n = nv;
  h_next = (T(1) - zv) * nv + zv * h;
}

// Its backward from r, z, n, hn and h: the pre-activation gradients of the input side
// (dir, diz, din) and of the recurrent side (dhr, dhz, dhn), and dh's direct part d * z.
template <typename T>
ADLK_HD ADLK_ALWAYS_INLINE void gru_step_grad(T r, T z, T n, T hn, T h, T d, T& dir, T& diz,
                                              T& din, T& dhr, T& dhz, T& dhn, T& dh) {
  const T dan = d * (T(1) - z) * (T(1) - n * n);
  const T dar = dan * hn * r * (T(1) - r);
  const T daz = d * (h - n) * z * (T(1) - z);
  dir = dar, diz = daz, din = dan;
  dhr = dar, dhz = daz, dhn = dan * r;
  dh = d * z;
}

}  // namespace adlk::cell
