// CUDA step kernels of the LSTM and GRU cells (declared in adlk/cuda/rnn.h): a thread per
// (row, hidden unit), the per-element rules of adlk/rnn_cell.h; the bias gradients are
// the caller's channel_sums (cuda/conv.cu). Additive attention's scores, masked softmax
// and context and its backward's pointwise part: a warp per row, sums in double in fixed
// orders (lanes, then the warp's xor tree; the context over t in order).
#include "adlk/cuda/common.cuh"
#include "adlk/cuda/rnn.h"
#include "adlk/rnn_cell.h"

namespace adlk::cuda {

namespace {

template <typename T>
__global__ void __launch_bounds__(kThreads)
    lstm_step_kernel(index_t B, index_t H, T* gates, const T* rec, const T* c_prev, T* c_next,
                     T* h_next, index_t ldh) {
  ADLK_GRID_STRIDE(k, B * H) {
    const index_t r = k / H, j = k % H;
    T* g = gates + r * 4 * H + j;
    T gi = g[0], gf = g[H], gg = g[2 * H], go = g[3 * H];
    if (rec) {
      const T* q = rec + r * 4 * H + j;
      gi += q[0], gf += q[H], gg += q[2 * H], go += q[3 * H];
    }
    T c, h;
    cell::lstm_step(gi, gf, gg, go, c_prev[k], c, h);
    g[0] = gi, g[H] = gf, g[2 * H] = gg, g[3 * H] = go;
    c_next[k] = c;
    h_next[r * ldh + j] = h;
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    lstm_step_grad_kernel(index_t B, index_t H, const T* gates, const T* c_prev, const T* c_cur,
                          const T* grad_y, index_t ldgy, const T* dh, T* dc, T* dG) {
  ADLK_GRID_STRIDE(k, B * H) {
    const index_t r = k / H, j = k % H;
    const T* g = gates + r * 4 * H + j;
    T* d = dG + r * 4 * H + j;
    const T dhv = grad_y ? dh[k] + grad_y[r * ldgy + j] : dh[k];
    T dcv = dc[k];
    cell::lstm_step_grad(g[0], g[H], g[2 * H], g[3 * H], c_prev[k], c_cur[k], dhv, dcv, d[0], d[H],
                         d[2 * H], d[3 * H]);
    dc[k] = dcv;
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    gru_step_kernel(index_t B, index_t H, T* gi, const T* gh, const T* h, T* hn, T* h_next) {
  ADLK_GRID_STRIDE(k, B * H) {
    const index_t r = k / H, j = k % H;
    T* a = gi + r * 3 * H + j;
    const T* q = gh + r * 3 * H + j;
    hn[k] = q[2 * H];
    T hv;
    cell::gru_step(a[0], a[H], a[2 * H], q[0], q[H], q[2 * H], h[k], a[0], a[H], a[2 * H], hv);
    h_next[k] = hv;
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    gru_step_grad_kernel(index_t B, index_t H, const T* gates, const T* hn, const T* h,
                         const T* grad_h_next, T* dgi, T* dgh, T* grad_h) {
  ADLK_GRID_STRIDE(k, B * H) {
    const index_t r = k / H, j = k % H;
    const T* g = gates + r * 3 * H + j;
    T* di = dgi + r * 3 * H + j;
    T* dq = dgh + r * 3 * H + j;
    T dh;
    cell::gru_step_grad(g[0], g[H], g[2 * H], hn[k], h[k], grad_h_next[k], di[0], di[H], di[2 * H],
                        dq[0], dq[H], dq[2 * H], dh);
    grad_h[k] = dh;
  }
}

// ---- additive attention --------------------------------------------------------------------

template <typename T>
__global__ void __launch_bounds__(kThreads)
    attention_scores_kernel(index_t B, index_t Tn, index_t A, T* e, const T* qp, const T* v,
                            T* scores) {
  const int lane = int(threadIdx.x % kWarp);
  ADLK_ROWS_PER_WARP(r, Tn * B) {
    const index_t t = r / B, b = r % B;
    T* er = e + r * A;
    const T* q = qp + b * A;
    double s = 0;
    for (index_t a = lane; a < A; a += kWarp) {
      const T ev = vm::tanh(er[a] + q[a]);
      er[a] = ev;
      s += double(ev) * double(v[a]);
    }
    s = warp_tree(s, SumOf{});
    if (lane == 0) scores[b * Tn + t] = T(s);
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    attention_softmax_context_kernel(index_t B, index_t Tn, index_t Dk, T* weights,
                                     const std::uint8_t* mask, const T* keys, T* context) {
  const int lane = int(threadIdx.x % kWarp);
  ADLK_ROWS_PER_WARP(b, B) {
    T* w = weights + b * Tn;
    const std::uint8_t* m = mask ? mask + b * Tn : nullptr;
    double top = -HUGE_VAL;
    for (index_t t = lane; t < Tn; t += kWarp)
      if (!m || m[t]) top = MaxOf{}(top, double(w[t]));
    top = warp_tree(top, MaxOf{});
    double sum = 0;
    for (index_t t = lane; t < Tn; t += kWarp) {
      const T ew = (!m || m[t]) ? vm::exp_flush(T(double(w[t]) - top)) : T(0);
      w[t] = ew;
      sum += double(ew);
    }
    const T inv = T(1.0 / warp_tree(sum, SumOf{}));
    __syncwarp(kWarpMask);  // every lane's w[t] written before any lane reads them all
    for (index_t t = lane; t < Tn; t += kWarp) w[t] *= inv;
    __syncwarp(kWarpMask);
    for (index_t d = lane; d < Dk; d += kWarp) {
      double acc = 0;
      for (index_t t = 0; t < Tn; ++t)
        if (!m || m[t]) acc += double(w[t]) * double(keys[(t * B + b) * Dk + d]);
      context[b * Dk + d] = T(acc);
    }
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    attention_score_grad_kernel(index_t B, index_t Tn, index_t Dk, const T* gc, const T* gw,
                                const T* keys, const T* weights, T* dscore, T* grad_keys) {
  const int lane = int(threadIdx.x % kWarp);
  ADLK_ROWS_PER_WARP(b, B) {
    const T* w = weights + b * Tn;
    const T* g = gc + b * Dk;
    T* ds = dscore + b * Tn;
    double dot_sum = 0;
    for (index_t t = 0; t < Tn; ++t) {
      const T* k = keys + (t * B + b) * Dk;
      T* gk = grad_keys + (t * B + b) * Dk;
      const T wt = w[t];
      double dw = 0;
      for (index_t d = lane; d < Dk; d += kWarp) {
        if (wt != T(0)) dw += double(g[d]) * double(k[d]);
        gk[d] = wt == T(0) ? T(0) : wt * g[d];  // masked: exactly 0, as the CPU
      }
      dw = warp_tree(dw, SumOf{}) + (gw ? double(gw[b * Tn + t]) : 0.0);
      if (wt == T(0)) dw = 0;  // a masked position: no gradient through its weight
      if (lane == 0) ds[t] = T(dw);
      dot_sum += double(wt) * dw;
    }
    __syncwarp(kWarpMask);  // lane 0's ds[t] before the other lanes rewrite them
    for (index_t t = lane; t < Tn; t += kWarp)
      ds[t] = w[t] == T(0) ? T(0) : T(double(w[t]) * (double(ds[t]) - dot_sum));
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    attention_tanh_grad_kernel(index_t B, index_t Tn, index_t A, const T* dscore, const T* e,
                               const T* v, T* da) {
  ADLK_GRID_STRIDE(i, Tn * B * A) {
    const index_t r = i / A, a = i % A, t = r / B, b = r % B;
    da[i] = dscore[b * Tn + t] * v[a] * (T(1) - e[i] * e[i]);
  }
}

// B * H items, their 4H-wide rows addressable: true when there is a unit to do.
bool check_step(index_t B, index_t H, const char* op) {
  if (B < 0 || H < 1) fail(std::string(op) + ": need B >= 0 and H >= 1");
  mul_checked(B, mul_checked(4, H, op), op);
  check_items(mul_checked(B, H, op), op);
  return B > 0;
}

}  // namespace

template <typename T>
void lstm_step(index_t B, index_t H, T* gates, const T* rec, const T* c_prev, T* c_next,
               T* h_next, index_t ldh, void* stream) {
  if (!check_step(B, H, "lstm_step")) return;
  check(ldh >= H, "lstm_step: h_next row stride must be >= H");
  ADLK_LAUNCH(grid_for(B * H), kThreads, 0, as_stream(stream), lstm_step_kernel<T>)(
      B, H, gates, rec, c_prev, c_next, h_next, ldh);
  ADLK_CUDA_LAUNCH_CHECK();
}

template <typename T>
void lstm_step_backward(index_t B, index_t H, const T* gates, const T* c_prev, const T* c_cur,
                        const T* grad_y, index_t ldgy, const T* dh, T* dc, T* dG, void* stream) {
  if (!check_step(B, H, "lstm_step_backward")) return;
  check(!grad_y || ldgy >= H, "lstm_step_backward: grad_y row stride must be >= H");
  ADLK_LAUNCH(grid_for(B * H), kThreads, 0, as_stream(stream), lstm_step_grad_kernel<T>)(
      B, H, gates, c_prev, c_cur, grad_y, ldgy, dh, dc, dG);
  ADLK_CUDA_LAUNCH_CHECK();
}

template <typename T>
void gru_step(index_t B, index_t H, T* gi, const T* gh, const T* h, T* hn, T* h_next,
              void* stream) {
  if (!check_step(B, H, "gru_step")) return;
  ADLK_LAUNCH(grid_for(B * H), kThreads, 0, as_stream(stream), gru_step_kernel<T>)(B, H, gi, gh, h, hn,
                                                                                  h_next);
  ADLK_CUDA_LAUNCH_CHECK();
}

template <typename T>
void gru_step_backward(index_t B, index_t H, const T* gates, const T* hn, const T* h,
                       const T* grad_h_next, T* dgi, T* dgh, T* grad_h, void* stream) {
  if (!check_step(B, H, "gru_step_backward")) return;
  ADLK_LAUNCH(grid_for(B * H), kThreads, 0, as_stream(stream), gru_step_grad_kernel<T>)(
      B, H, gates, hn, h, grad_h_next, dgi, dgh, grad_h);
  ADLK_CUDA_LAUNCH_CHECK();
}

void check_attention(index_t B, index_t Tn, index_t D, index_t A, const char* op) {
  if (B < 0 || Tn < 1 || D < 1 || A < 1) fail(std::string(op) + ": need B >= 0 and T, D, A >= 1");
  const index_t rows = mul_checked(Tn, B, op);
  check_items(mul_checked(rows, A > D ? A : D, op), op);
}

template <typename T>
void attention_scores(index_t B, index_t Tn, index_t A, T* e, const T* qp, const T* v, T* scores,
                      void* stream) {
  check_attention(B, Tn, 1, A, "attention_scores");
  if (B == 0) return;
  ADLK_LAUNCH(row_blocks(Tn * B), kThreads, 0, as_stream(stream), attention_scores_kernel<T>)(
      B, Tn, A, e, qp, v, scores);
  ADLK_CUDA_LAUNCH_CHECK();
}

template <typename T>
void attention_softmax_context(index_t B, index_t Tn, index_t Dk, T* weights,
                               const std::uint8_t* mask, const T* keys, T* context, void* stream) {
  check_attention(B, Tn, Dk, 1, "attention_softmax_context");
  if (B == 0) return;
  ADLK_LAUNCH(row_blocks(B), kThreads, 0, as_stream(stream), attention_softmax_context_kernel<T>)(
      B, Tn, Dk, weights, mask, keys, context);
  ADLK_CUDA_LAUNCH_CHECK();
}

template <typename T>
void attention_backward_pointwise(index_t B, index_t Tn, index_t Dk, index_t A,
                                  const T* grad_context, const T* grad_weights, const T* keys,
                                  const T* weights, const T* e, const T* v, T* dscore,
                                  T* grad_keys, T* da, void* stream) {
  check_attention(B, Tn, Dk, A, "attention_backward");
  if (B == 0) return;
  ADLK_LAUNCH(row_blocks(B), kThreads, 0, as_stream(stream), attention_score_grad_kernel<T>)(
      B, Tn, Dk, grad_context, grad_weights, keys, weights, dscore, grad_keys);
  ADLK_CUDA_LAUNCH_CHECK();
  ADLK_LAUNCH(grid_for(Tn * B * A), kThreads, 0, as_stream(stream), attention_tanh_grad_kernel<T>)(
      B, Tn, A, dscore, e, v, da);
  ADLK_CUDA_LAUNCH_CHECK();
}

#define ADLK_INSTANTIATE_CUDA_RNN(T)              \
  ADLK_INSTANTIATE(lstm_step, T)                  \
  ADLK_INSTANTIATE(lstm_step_backward, T)         \
  ADLK_INSTANTIATE(gru_step, T)                   \
  ADLK_INSTANTIATE(gru_step_backward, T)          \
  ADLK_INSTANTIATE(attention_scores, T)           \
  ADLK_INSTANTIATE(attention_softmax_context, T)  \
  ADLK_INSTANTIATE(attention_backward_pointwise, T)

ADLK_INSTANTIATE_CUDA_RNN(float)
ADLK_INSTANTIATE_CUDA_RNN(double)

}  // namespace adlk::cuda
