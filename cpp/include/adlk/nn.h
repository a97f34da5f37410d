// Normalization, dropout, dense layers, activations, softmax and losses.
//
// Every reduction here (batch/layer norm statistics, bias and weight-vector gradients,
// softmax rows, loss sums) has a fixed order and fixed chunks: results are bitwise
// identical for any thread count. Linear uses BLAS GEMMs (split by rows across threads).
#pragma once

#include <cstdint>

#include "adlk/common.h"

namespace adlk {

// ---- batch norm: x viewed as (N, C, S) -------------------------------------------------------
struct BatchNormGeom {
  index_t N = 0, C = 0, S = 1;
  void check() const;
};

// training: batch statistics (save_mean, save_invstd = 1/sqrt(biased var + eps)); running
// stats (either may be null) updated with momentum and the unbiased variance.
// eval: running_mean/var (required) are used; save_* receive them as mean and invstd.
// weight/bias may be null (1 and 0).
template <typename T>
void batchnorm_forward(const BatchNormGeom& g, const T* x, const T* weight, const T* bias,
                       T* running_mean, T* running_var, bool training, double momentum,
                       double eps, T* y, T* save_mean, T* save_invstd);

template <typename T>
void batchnorm_backward(const BatchNormGeom& g, const T* grad_y, const T* x, const T* weight,
                        const T* save_mean, const T* save_invstd, bool training, T* grad_x,
                        T* grad_weight, T* grad_bias);

// ---- layer norm: rows of D ------------------------------------------------------------------
template <typename T>
void layernorm_forward(index_t rows, index_t D, const T* x, const T* weight, const T* bias,
                       double eps, T* y, T* mean, T* rstd);

template <typename T>
void layernorm_backward(index_t rows, index_t D, const T* grad_y, const T* x, const T* mean,
                        const T* rstd, const T* weight, T* grad_x, T* grad_weight, T* grad_bias);

// ---- dropout (Philox-4x32-10, see adlkernels.nn) -------------------------------------------
// The 4 words of Philox-4x32-10 for counter (c0, c1, c2, c3) and key (k0, k1).
void philox4x32_10(const std::uint32_t ctr[4], const std::uint32_t key[2], std::uint32_t out[4]);

template <typename T>
void dropout_forward(index_t n, const T* x, double p, std::uint64_t seed, T* y, bool* mask);
template <typename T>
void dropout_backward(index_t n, const T* grad_y, const bool* mask, double p, T* grad_x);

// ---- linear -----------------------------------------------------------------------------------
template <typename T>
void linear_forward(index_t B, index_t I, index_t O, const T* x, const T* weight, const T* bias,
                    T* y);
// any of grad_x, grad_weight, grad_bias may be null (not computed)
template <typename T>
void linear_backward(index_t B, index_t I, index_t O, const T* grad_y, const T* x,
                     const T* weight, T* grad_x, T* grad_weight, T* grad_bias);

// ---- activations ------------------------------------------------------------------------------
enum class Activation : int { kRelu = 0, kLeakyRelu = 1, kSigmoid = 2, kTanh = 3 };
// Which array activation_backward's `saved` is: the forward's output y (sigmoid, tanh,
// whose derivatives are cheapest from y), or its input x (relu, leaky relu).
constexpr bool backward_takes_output(Activation act) {
  return act == Activation::kSigmoid || act == Activation::kTanh;
}
template <typename T>
void activation_forward(index_t n, const T* x, Activation act, double slope, T* y);
template <typename T>
void activation_backward(index_t n, const T* grad_y, const T* saved, Activation act,
                         double slope, T* grad_x);

// ---- softmax over rows of K ---------------------------------------------------------------------
template <typename T>
void softmax_forward(index_t rows, index_t K, const T* x, bool log, T* y);
template <typename T>
void softmax_backward(index_t rows, index_t K, const T* grad_y, const T* y, bool log, T* grad_x);

// ---- losses -----------------------------------------------------------------------------------------
enum class Reduction : int { kMean = 0, kSum = 1, kNone = 2 };

// Returns the reduced loss (kNone: 0, per-row losses in loss_rows). Throws
// std::invalid_argument naming the first target outside [0, K) other than ignore_index,
// before writing anything.
template <typename T>
double softmax_cross_entropy(index_t B, index_t K, const T* logits, const std::int64_t* targets,
                             Reduction red, std::int64_t ignore_index, T* grad, T* loss_rows);

enum class LossKind : int { kMse = 0, kL1 = 1, kHuber = 2 };
template <typename T>
double elementwise_loss(index_t n, const T* pred, const T* target, LossKind kind, Reduction red,
                        double delta, T* grad, T* loss_elems);

}  // namespace adlk
