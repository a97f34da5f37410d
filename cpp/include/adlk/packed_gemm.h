// GEMM against a weight matrix packed once and reused: C = A @ W^T (+ C).
//
// The recurrent product of a sequence, h_{t-1} @ W_hh^T, runs once per step with the same
// W_hh; a general BLAS call packs W_hh again each time (on the T=50, B=64, H=256 GRU that
// repacking cost about as much as the multiply). Here W is packed once into panels of
// kPackedPanel columns (k-major inside a panel) and a register-tiled micro-kernel (AVX-512
// or AVX2+FMA, picked at load; plain C++ elsewhere) reads A in place.
//
// Numerics: every C element is one fused multiply-add chain over k = 0, 1, ..., K-1 in
// order, started from 0 (or from C's value when accumulating). Results therefore depend
// neither on the tiling, the thread count, nor the vector width: the AVX-512 and AVX2
// kernels give the same bits (the portable one too where the compiler has a fast fma).
#pragma once

#include "adlk/common.h"

namespace adlk {

// Columns of W per packed panel.
constexpr index_t kPackedPanel = 32;

// Elements a packing of an (N, K) matrix takes: N rounded up to whole panels, times K.
index_t packed_weight_size(index_t N, index_t K);

// Packs W (N, K), row stride ldw, into dst (packed_weight_size(N, K) elements, best
// 64-byte aligned); the last panel's missing columns are zero.
void pack_weight(index_t N, index_t K, const float* W, index_t ldw, float* dst);

// dst (cols x rows, row stride ldd) = src (rows x cols, row stride lds)^T: a copy, in
// 16x16 blocks through registers with the AVX-512 kernel, 8x8 blocks with the AVX2 one.
// pack_weight is one per panel.
void transpose(index_t rows, index_t cols, const float* src, index_t lds, float* dst,
               index_t ldd);

// The same, dst's whole cache lines written with non-temporal stores where that can be
// done (AVX-512 or AVX2 transposes, ldd a multiple of 16 floats): for a dst far larger than the
// caches and not read soon, whose lines then need not be read in before being written.
void transpose_streaming(index_t rows, index_t cols, const float* src, index_t lds,
                         float* dst, index_t ldd);

// The same packing for W given transposed: Wt (K, N), row stride ldw (W = Wt^T), as the
// product dG @ W_hh of a recurrent backward step needs.
void pack_weight_transposed(index_t N, index_t K, const float* Wt, index_t ldw, float* dst);

// One thread's share of a packing done by a team: thread p of np packs panels p, p + np,
// ... of dst (layout as pack_weight, or pack_weight_transposed when transposed).
void pack_weight_part(int p, int np, index_t N, index_t K, const float* W, index_t ldw,
                      bool transposed, float* dst);

// C[M, N] (row stride ldc) = A[M, K] (row stride lda) @ W^T, plus C's previous value when
// accumulate. Wp is pack_weight's result for W (N, K). K >= 0 (K == 0: C = 0 or kept).
void gemm_packed(index_t M, index_t N, index_t K, const float* A, index_t lda, const float* Wp,
                 bool accumulate, float* C, index_t ldc);

// C = A @ W^T + bias[:, None]: row i's chains start from bias[i] (M values) instead of 0,
// the bits of filling C with the bias and accumulating, without that pass over C (a
// convolution's output channels are C's rows). A null bias: chains from 0.
void gemm_packed_row_bias(index_t M, index_t N, index_t K, const float* A, index_t lda,
                          const float* Wp, const float* bias, float* C, index_t ldc);

// gemm_packed with A's rows given by offsets: row i is the K floats at A + arows[i] (M
// offsets). For an A whose rows already lie in memory as runs of K floats (a convolution's
// shifted input bands, as the columns of its weight gradient).
void gemm_packed_arows(index_t M, index_t N, index_t K, const float* A, const index_t* arows,
                       const float* Wp, bool accumulate, float* C, index_t ldc);

// gemm_packed_row_bias (bias may be null: chains from 0) of panels read in place: row k
// of the panel of columns [n0, n0 + kPackedPanel) is the kPackedPanel floats at base + n0 +
// rows[k], all of them readable (lanes from N on are read and ignored). The same bits as
// packing those rows into panels first; for operands whose rows already lie in memory as
// runs of floats (a convolution's shifted input bands).
void gemm_rows_row_bias(index_t M, index_t N, index_t K, const float* A, index_t lda,
                        const float* base, const index_t* rows, const float* bias, float* C,
                        index_t ldc);

// C = bias[None, :] + A' @ W'^T (or C + A' @ W'^T when accumulate) with both operands
// gathered: A'[i, k] = A[arows[i] + taps[2k]], and row k of W'^T is the kPackedPanel
// floats at base + taps[2k + 1] (a panel read in place, all of them readable; N <=
// kPackedPanel, lanes from N on ignored). Row i of C is at C + crows[i]; bias (N values,
// may be null: chains from 0) starts column j's chains. For a convolution's output
// positions against its packed weight, read straight from the input (A' row i one
// position's window, the taps those kept), and for its weight gradient (A' row i one
// channel at one tap, over the positions where the tap falls inside the input).
void gemm_gathered(index_t M, index_t N, index_t K, const float* A, const index_t* arows,
                   const float* base, const index_t* taps, const float* bias, bool accumulate,
                   float* C, const index_t* crows);

// C = A1 @ W1^T + A2 @ W2^T (+ C when accumulate) in one pass: each element's chain runs
// over A1's K1 terms, then A2's K2 (Wp1, Wp2: packings of the (N, K1) and (N, K2) W1, W2).
// A recurrent step's gates from x_t and h_{t-1} without a stored partial sum.
void gemm_packed2(index_t M, index_t N, index_t K1, const float* A1, index_t lda1,
                  const float* Wp1, index_t K2, const float* A2, index_t lda2, const float* Wp2,
                  bool accumulate, float* C, index_t ldc);

// The micro-kernel in use: "avx512", "avx2" or "portable".
const char* gemm_packed_isa();

// GFLOP/s of the calling thread running nothing but independent vector FMAs on registers,
// in the micro-kernel's ISA (a multiply-add counted as 2): the compute ceiling of one core
// that the benchmarks report against. The best of repeated runs over about `seconds`.
double fma_peak_gflops(double seconds);

}  // namespace adlk
