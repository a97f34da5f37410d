// Thin GEMM wrapper over the optimized BLAS (OpenBLAS from scipy-openblas32).
//
// Row-major C = alpha * op(A) @ op(B) + beta * C with op(A) (M, K), op(B) (K, N).
// Dimensions and leading dimensions are 64-bit here and checked against the 32-bit
// BLAS interface before the call. The BLAS is set to one thread when the core loads:
// kernels call gemm from inside their own OpenMP regions, one GEMM per thread, and
// split larger products across threads themselves.
#pragma once

#include "adlk/common.h"

namespace adlk {

template <typename T>
void gemm(bool trans_a, bool trans_b, index_t M, index_t N, index_t K, T alpha,
          const T* A, index_t lda, const T* B, index_t ldb, T beta, T* C, index_t ldc);

// Throws std::length_error (naming `what`) when v does not fit the 32-bit BLAS interface;
// kernels check their dimensions with it before entering a parallel region.
void check_blas_dim(index_t v, const char* what);

// Threads of the BLAS's own pool (1 by default; see above).
void blas_set_num_threads(int n);
int blas_get_num_threads();

}  // namespace adlk
