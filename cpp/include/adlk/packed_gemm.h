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

// C[M, N] (row stride ldc) = A[M, K] (row stride lda) @ W^T, plus C's previous value when
// accumulate. Wp is pack_weight's result for W (N, K). K >= 0 (K == 0: C = 0 or kept).
void gemm_packed(index_t M, index_t N, index_t K, const float* A, index_t lda, const float* Wp,
                 bool accumulate, float* C, index_t ldc);

// The micro-kernel in use: "avx512", "avx2" or "portable".
const char* gemm_packed_isa();

}  // namespace adlk
