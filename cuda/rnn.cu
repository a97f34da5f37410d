// CUDA step kernels of the LSTM and GRU cells (declared in adlk/cuda/rnn.h): a thread per
// (row, hidden unit), the per-element rules of adlk/rnn_cell.h. No reductions here: the
// bias gradients are the caller's channel_sums (cuda/conv.cu).
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

#define ADLK_INSTANTIATE_CUDA_RNN(T)      \
  ADLK_INSTANTIATE(lstm_step, T)          \
  ADLK_INSTANTIATE(lstm_step_backward, T) \
  ADLK_INSTANTIATE(gru_step, T)           \
  ADLK_INSTANTIATE(gru_step_backward, T)

ADLK_INSTANTIATE_CUDA_RNN(float)
ADLK_INSTANTIATE_CUDA_RNN(double)

}  // namespace adlk::cuda
