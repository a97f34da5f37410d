#include "adlk/blas.h"

#include <climits>
#include <string>

// scipy-openblas32 prefixes every symbol with scipy_; 32-bit BLAS integers.
extern "C" {
enum { kRowMajor = 101, kNoTrans = 111, kTrans = 112 };
void scipy_cblas_sgemm(int order, int ta, int tb, int M, int N, int K, float alpha,
                       const float* A, int lda, const float* B, int ldb, float beta, float* C,
                       int ldc);
void scipy_cblas_dgemm(int order, int ta, int tb, int M, int N, int K, double alpha,
                       const double* A, int lda, const double* B, int ldb, double beta,
                       double* C, int ldc);
void scipy_openblas_set_num_threads(int n);
int scipy_openblas_get_num_threads(void);
}

namespace adlk {

namespace {
// An empty inner dimension leaves C = beta * C (BLAS would reject lda = 0).
template <typename T>
void scale_rows(index_t M, index_t N, T beta, T* C, index_t ldc) {
  for (index_t i = 0; i < M; ++i)
    for (index_t j = 0; j < N; ++j) C[i * ldc + j] = beta == T(0) ? T(0) : beta * C[i * ldc + j];
}

int to_blas_int(index_t v, const char* what) {
  if (v < 0 || v > INT_MAX)
    throw std::length_error(std::string("gemm: ") + what + " = " + std::to_string(v) +
                            " exceeds the 32-bit BLAS interface");
  return static_cast<int>(v);
}
}  // namespace

template <>
void gemm<float>(bool ta, bool tb, index_t M, index_t N, index_t K, float alpha, const float* A,
                 index_t lda, const float* B, index_t ldb, float beta, float* C, index_t ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0) return scale_rows(M, N, beta, C, ldc);
  scipy_cblas_sgemm(kRowMajor, ta ? kTrans : kNoTrans, tb ? kTrans : kNoTrans,
                    to_blas_int(M, "M"), to_blas_int(N, "N"), to_blas_int(K, "K"), alpha, A,
                    to_blas_int(lda, "lda"), B, to_blas_int(ldb, "ldb"), beta, C,
                    to_blas_int(ldc, "ldc"));
}

template <>
void gemm<double>(bool ta, bool tb, index_t M, index_t N, index_t K, double alpha,
                  const double* A, index_t lda, const double* B, index_t ldb, double beta,
                  double* C, index_t ldc) {
  if (M == 0 || N == 0) return;
  if (K == 0) return scale_rows(M, N, beta, C, ldc);
  scipy_cblas_dgemm(kRowMajor, ta ? kTrans : kNoTrans, tb ? kTrans : kNoTrans,
                    to_blas_int(M, "M"), to_blas_int(N, "N"), to_blas_int(K, "K"), alpha, A,
                    to_blas_int(lda, "lda"), B, to_blas_int(ldb, "ldb"), beta, C,
                    to_blas_int(ldc, "ldc"));
}

void check_blas_dim(index_t v, const char* what) {
  if (v < 0 || v > INT_MAX)
    throw std::length_error(std::string(what) + " = " + std::to_string(v) +
                            " exceeds the 32-bit BLAS interface");
}

void blas_set_num_threads(int n) { scipy_openblas_set_num_threads(n); }
int blas_get_num_threads() { return scipy_openblas_get_num_threads(); }

namespace {
// The kernels parallelize with OpenMP and give each thread its own GEMMs, so the BLAS
// itself runs single-threaded: its thread pool would otherwise compete with (or nest
// inside) ours.
const bool g_blas_single_threaded = (scipy_openblas_set_num_threads(1), true);
}  // namespace

}  // namespace adlk
