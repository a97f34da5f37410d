// CUDA step kernels of the recurrent cells: host launchers (plain C++ header).
//
// The GEMMs of a step (input and recurrent projections, the gradients' products) are
// cuBLAS's, called by the Python layer through cupy.matmul; these launchers are the fused
// pointwise part of a step over (B, H), with the per-element rules of adlk/rnn_cell.h
// that the CPU tiles run too. Arrays are C-contiguous device arrays except where a row
// stride is given; everything is enqueued on `stream` (a cudaStream_t as void*).
#pragma once

#include <cstdint>

#include "adlk/common.h"

namespace adlk::cuda {

// LSTM step: gates (B, 4H) holds the input projections plus both biases and becomes the
// activations i, f, g, o; rec (B, 4H) = h_prev W_hh^T is added first (null: nothing, the
// first step of a zero state). c_next (B, H); h_next rows have stride ldh >= H.
template <typename T>
void lstm_step(index_t B, index_t H, T* gates, const T* rec, const T* c_prev, T* c_next,
               T* h_next, index_t ldh, void* stream);

// Backward of one LSTM step: dh (B, H) is the gradient reaching h_t from step t+1, plus
// grad_y (rows of stride ldgy; null: none); dc (B, H) in: from step t+1, out: to c_{t-1};
// dG (B, 4H) receives the pre-activation gradients.
template <typename T>
void lstm_step_backward(index_t B, index_t H, const T* gates, const T* c_prev, const T* c_cur,
                        const T* grad_y, index_t ldgy, const T* dh, T* dc, T* dG, void* stream);

// GRU step: gi (B, 3H) = x W_ih^T + b_ih becomes the activations r, z, n; gh (B, 3H) =
// h W_hh^T + b_hh; hn (B, H) receives gh's n block; h_next (B, H).
template <typename T>
void gru_step(index_t B, index_t H, T* gi, const T* gh, const T* h, T* hn, T* h_next,
              void* stream);

// Backward: dgi, dgh (B, 3H) the gradients of the two projections; grad_h (B, H) the
// direct part grad_h_next * z (the caller adds dgh W_hh).
template <typename T>
void gru_step_backward(index_t B, index_t H, const T* gates, const T* hn, const T* h,
                       const T* grad_h_next, T* dgi, T* dgh, T* grad_h, void* stream);

// ---- additive attention (the GEMMs are the caller's too) -------------------------------------
// R = T*B rows r = t*B + b.

// e (R, A) = keys W_k^T becomes tanh(e + qp[b]) (qp = query W_q^T, (B, A)); scores (B, T)
// = e . v, summed in double in a warp's fixed tree (a warp per row).
template <typename T>
void attention_scores(index_t B, index_t Tn, index_t A, T* e, const T* qp, const T* v, T* scores,
                      void* stream);

// In place, weights (B, T): the scores' softmax over t, positions with mask 0 weighted
// exactly 0 (mask (B, T) bytes or null; every row must hold a 1, checked by the caller);
// context (B, Dk) = sum over t in order of weights * keys[t, b] (a warp per row b).
template <typename T>
void attention_softmax_context(index_t B, index_t Tn, index_t Dk, T* weights,
                               const std::uint8_t* mask, const T* keys, T* context, void* stream);

// The backward's pointwise part, as the CPU's: dscore (B, T) from grad_context (B, Dk),
// grad_weights (B, T; null: zero), keys and the weights; grad_keys (R, Dk) = weights *
// grad_context (the caller adds da W_k); da (R, A) = dscore * v * (1 - e^2).
template <typename T>
void attention_backward_pointwise(index_t B, index_t Tn, index_t Dk, index_t A,
                                  const T* grad_context, const T* grad_weights, const T* keys,
                                  const T* weights, const T* e, const T* v, T* dscore,
                                  T* grad_keys, T* da, void* stream);

}  // namespace adlk::cuda
