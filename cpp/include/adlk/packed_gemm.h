// GEMM against a weight matrix packed once and reused: C = A @ W^T (+ C).
//
// The recurrent product of a sequence, h_{t-1} @ W_hh^T, runs once per step with the same
// W_hh; a general BLAS call packs W_hh again each time (on the T=50, B=64, H=256 GRU that
// repacking cost about as much as the multiply). Here W is packed once into panels of
// kPackedPanel columns and a register-tiled micro-kernel (AVX-512 or AVX2+FMA, picked at
// load; plain C++ elsewhere) reads A in place.
//
// Packed layout: panel p (columns [32p, 32p + 32) of W^T, depth K) takes the 32K floats
// from 32pK on, as two halves of 16 columns. Row k of the first half starts at 32pK + k *
// packed_row_stride(), row k of the second half 16 floats after it (rows of 32, the
// halves interleaved: the AVX-512 and portable kernels) or 16K floats after it (each half
// a block of K rows of 16: the AVX2 kernel, which multiplies 16 columns at a time and so
// streams whole cache lines; from rows of 32, a 16-float half every 128 bytes, it took
// 1.09-1.2x the time; the AVX-512 kernel's gathered tap reads took 1.03-1.06x from blocks).
#pragma once

#include "adlk/common.h"

namespace adlk {

// Columns of W per packed panel, and per half of one (layout below).
constexpr index_t kPackedPanel = 32, kPackedHalf = kPackedPanel / 2;

// Elements a packing of an (N, K) matrix takes: N rounded up to whole panels, times K.
index_t packed_weight_size(index_t N, index_t K);

// Packs W (N, K), row stride ldw, into dst (packed_weight_size(N, K) elements, best
// 64-byte aligned; layout above); the last panel's missing columns are zero.
void pack_weight(index_t N, index_t K, const float* W, index_t ldw, float* dst);

// dst (cols x rows, row stride ldd) = src (rows x cols, row stride lds)^T: a copy, in
// 16x16 blocks through registers with the AVX-512 kernel, 8x8 blocks with the AVX2 one.
// pack_weight is one per half panel.
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
// panel_depth (0: K): the depth W was packed with, when the product takes K consecutive
// rows of a deeper packing (Wp then points at the first of them, row k0: the packing +
// k0 * packed_row_stride()).
void gemm_packed(index_t M, index_t N, index_t K, const float* A, index_t lda, const float* Wp,
                 bool accumulate, float* C, index_t ldc, index_t panel_depth = 0);

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
// gathered: A'[i, k] = A[arows[i] + taps[2k]], and row k of W'^T is the row of one packed
// panel (packed panel_depth deep; N <= kPackedPanel, lanes from N on ignored) that starts
// at Wp + taps[2k + 1] (a multiple of packed_row_stride()). Row i of C is at C + crows[i];
// bias (N values, may be null: chains from 0) starts column j's chains. For a
// convolution's output positions against its packed weight, read straight from the input
// (A' row i one position's window, the taps those kept), and for its weight gradient (A'
// row i one channel at one tap, over the positions where the tap falls inside the input).
void gemm_gathered(index_t M, index_t N, index_t K, const float* A, const index_t* arows,
                   const float* Wp, index_t panel_depth, const index_t* taps, const float* bias,
                   bool accumulate, float* C, const index_t* crows);

// C = A1 @ W1^T + A2 @ W2^T (+ C when accumulate) in one pass: each element's chain runs
// over A1's K1 terms, then A2's K2 (Wp1, Wp2: packings of the (N, K1) and (N, K2) W1, W2).
// A recurrent step's gates from x_t and h_{t-1} without a stored partial sum.
void gemm_packed2(index_t M, index_t N, index_t K1, const float* A1, index_t lda1,
                  const float* Wp1, index_t K2, const float* A2, index_t lda2, const float* Wp2,
                  bool accumulate, float* C, index_t ldc);

// The micro-kernel in use: "avx512", "avx2" or "portable".
const char* gemm_packed_isa();

// Floats between rows k and k + 1 of a packed panel (layout above): kPackedHalf where the
// kernel in use keeps each half as a block, kPackedPanel where the halves interleave.
index_t packed_row_stride();

// GFLOP/s of the calling thread running nothing but independent vector FMAs on registers,
// in the micro-kernel's ISA (a multiply-add counted as 2): the compute ceiling of one core
// that the benchmarks report against. The best of repeated runs over about `seconds`.
double fma_peak_gflops(double seconds);

}  // namespace adlk
