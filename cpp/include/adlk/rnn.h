// Recurrent kernels: LSTM, GRU and Elman RNN (cells and whole sequences), additive
// attention. Forward and backward, float and double.
//
// Weights use PyTorch's layout: w_ih (G*H, I), w_hh (G*H, H), biases (G*H,) or null,
// G = 4 for LSTM (gates i, f, g, o), 3 for GRU (r, z, n), 1 for RNN. Matrices are
// row-major; "ld" arguments are row strides in elements (rows of x and y may be views
// into wider arrays). Everything else is C-contiguous.
//
// Parallel scheme: the input projections are GEMMs split by rows across threads; in the
// time loop each thread owns a tile (batch rows x hidden units), runs the recurrent GEMM
// for the G gate column blocks of its tile and then the fused pointwise pass on that tile
// (biases are added there), with one barrier per step. The LSTM cuts each tile into chunks
// and a thread that finishes its own claims the others' (a core running slower does not
// hold every step's barrier). Backward passes run the recurrence, then the weight
// gradients as GEMMs over all steps at once; bias gradients are column sums in row order
// (bitwise identical for any thread count). In float32 the sequence forwards pack their
// weights once per sequence and run the packed-weight micro-kernel (adlk/packed_gemm.h),
// one FMA chain per element: the LSTM computes a step's gates from x_t and h_{t-1} in one
// pass per chunk, the GRU and RNN project all steps' inputs first; the LSTM, GRU and RNN
// backwards run dh = dG_t @ W_hh on W_hh^T packed once, and their GEMMs over all steps
// (grad_x, grad_w_ih, grad_w_hh) on w_ih^T, x^T and h^T packed once, in pieces claimed at
// run time. Every float32 sequence result is therefore bitwise identical for any thread
// count. In double, the GRU and RNN split their BLAS GEMMs into pieces fixed by the sizes
// (adlk/tuning.h, kSeq*), with the same property; the double LSTM and the cells split
// BLAS products by thread count, which moves the last bits.
#pragma once

#include <cstdint>

#include "adlk/common.h"

namespace adlk {

// Geometry of one recurrent layer over a sequence (LSTM, GRU, RNN).
struct SeqGeom {
  index_t T = 0, B = 0, I = 0, H = 0;
  index_t ldx = 0;  // row stride of x viewed as (T*B, I), >= I
  index_t ldy = 0;  // row stride of y viewed as (T*B, H), >= H
  void check() const;
};
using LstmGeom = SeqGeom;  // its name before the GRU and RNN sequences shared it

// x (T*B rows, ldx) -> y (T*B rows, ldy), h_n, c_n (B, H) (either may be null),
// gates (T, B, 4H): activated i, f, g, o of every step; cells (T, B, H): c_t.
// reverse: steps run t = T-1 .. 0 (y[t] is still position t's output).
template <typename T>
void lstm_forward(const SeqGeom& g, const T* x, const T* h0, const T* c0, const T* w_ih,
                  const T* w_hh, const T* b_ih, const T* b_hh, bool reverse, T* y, T* h_n,
                  T* c_n, T* gates, T* cells);

// Full BPTT. grad_y (T*B rows, ldgy), grad_h_n, grad_c_n may be null (zero). y may be null
// when T <= 1. grad_b (4H) is the gradient of either bias (null: not computed). The
// T*B*4H gate gradients use the calling thread's scratch slot 0 (kept between calls) up
// to 64 MiB, a buffer of the call beyond.
template <typename T>
void lstm_backward(const SeqGeom& g, const T* grad_y, index_t ldgy, const T* grad_h_n,
                   const T* grad_c_n, const T* x, const T* h0, const T* c0, const T* w_ih,
                   const T* w_hh, const T* gates, const T* cells, const T* y, bool reverse,
                   T* grad_x, T* grad_h0, T* grad_c0, T* grad_w_ih, T* grad_w_hh, T* grad_b);

// GRU over a sequence (PyTorch's r, z, n): x (T*B rows, ldx) -> y (T*B rows, ldy), h_n
// (B, H) or null; gates (T, B, 3H): activated r, z, n of every step; hn (T, B, H):
// W_hn h_{t-1} + b_hn (the term r multiplies). reverse as lstm_forward.
template <typename T>
void gru_forward(const SeqGeom& g, const T* x, const T* h0, const T* w_ih, const T* w_hh,
                 const T* b_ih, const T* b_hh, bool reverse, T* y, T* h_n, T* gates, T* hn);

// Full BPTT of gru_forward. grad_y (T*B rows, ldgy) and grad_h_n may be null (zero); y may
// be null when T <= 1. grad_b_ih / grad_b_hh (3H) may be null (not computed): they differ
// in the n block. Scratch: T*B*6H elements (as lstm_backward's).
template <typename T>
void gru_backward(const SeqGeom& g, const T* grad_y, index_t ldgy, const T* grad_h_n,
                  const T* x, const T* h0, const T* w_ih, const T* w_hh, const T* gates,
                  const T* hn, const T* y, bool reverse, T* grad_x, T* grad_h0, T* grad_w_ih,
                  T* grad_w_hh, T* grad_b_ih, T* grad_b_hh);

// Elman RNN over a sequence: y_t = tanh or relu of (x_t W_ih^T + b_ih + h_{t-1} W_hh^T +
// b_hh); h_n (B, H) or null. y is all the backward needs.
template <typename T>
void rnn_forward(const SeqGeom& g, const T* x, const T* h0, const T* w_ih, const T* w_hh,
                 const T* b_ih, const T* b_hh, bool relu, bool reverse, T* y, T* h_n);

// Full BPTT of rnn_forward. grad_y, grad_h_n may be null (zero); y is needed when T >= 1.
// grad_b (H) is the gradient of either bias (null: not computed). Scratch: T*B*H.
template <typename T>
void rnn_backward(const SeqGeom& g, const T* grad_y, index_t ldgy, const T* grad_h_n,
                  const T* x, const T* h0, const T* w_ih, const T* w_hh, const T* y, bool relu,
                  bool reverse, T* grad_x, T* grad_h0, T* grad_w_ih, T* grad_w_hh, T* grad_b);

struct CellGeom {
  index_t B = 0, I = 0, H = 0;
  void check() const;
};

// GRU cell. gates (B, 3H): activated r, z, n; hn (B, H): W_hn h + b_hn.
template <typename T>
void gru_cell_forward(const CellGeom& g, const T* x, const T* h, const T* w_ih, const T* w_hh,
                      const T* b_ih, const T* b_hh, T* h_next, T* gates, T* hn);

// grad_b_ih / grad_b_hh may be null (not computed).
template <typename T>
void gru_cell_backward(const CellGeom& g, const T* grad_h_next, const T* x, const T* h,
                       const T* w_ih, const T* w_hh, const T* gates, const T* hn, T* grad_x,
                       T* grad_h, T* grad_w_ih, T* grad_w_hh, T* grad_b_ih, T* grad_b_hh);

// Elman cell: h_next = tanh or relu of (x W_ih^T + b_ih + h W_hh^T + b_hh).
template <typename T>
void rnn_cell_forward(const CellGeom& g, const T* x, const T* h, const T* w_ih, const T* w_hh,
                      const T* b_ih, const T* b_hh, bool relu, T* h_next);

// grad_b (H) may be null.
template <typename T>
void rnn_cell_backward(const CellGeom& g, const T* grad_h_next, const T* x, const T* h,
                       const T* w_ih, const T* w_hh, const T* h_next, bool relu, T* grad_x,
                       T* grad_h, T* grad_w_ih, T* grad_w_hh, T* grad_b);

struct AttentionGeom {
  index_t B = 0, T = 0, Dq = 0, Dk = 0, A = 0;
  void check() const;
};

// query (B, Dq), keys (T, B, Dk), w_query (A, Dq), w_key (A, Dk), v (A), mask (B, T) of
// 0/1 bytes or null (every row must hold a 1) -> context (B, Dk), weights (B, T),
// tanh_act (T, B, A).
template <typename T>
void additive_attention_forward(const AttentionGeom& g, const T* query, const T* keys,
                                const T* w_query, const T* w_key, const T* v,
                                const std::uint8_t* mask, T* context, T* weights, T* tanh_act);

// grad_weights may be null (zero). Masked positions have weight 0 and get no gradient
// through the weights.
template <typename T>
void additive_attention_backward(const AttentionGeom& g, const T* grad_context,
                                 const T* grad_weights, const T* query, const T* keys,
                                 const T* w_query, const T* w_key, const T* v,
                                 const T* tanh_act, const T* weights, T* grad_query,
                                 T* grad_keys, T* grad_w_query, T* grad_w_key, T* grad_v);

}  // namespace adlk
