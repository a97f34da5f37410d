// CUDA batch/layer norm, activations, dropout, softmax and losses: host launchers (plain
// C++ header).
//
// The CUDA counterparts of the functions of adlk/nn.h with the same names and semantics
// (read it), on n-element device arrays, enqueued on `stream` (a cudaStream_t as void*).
// Each element is computed by the rule of adlk/pointwise.h that the CPU kernels run too,
// without FMA contraction: relu, leaky relu and dropout (its mask for a seed included)
// give the CPU's bits; sigmoid and tanh the bits of the CPU's baseline x86-64 code, within
// a few ulp of its AVX2 code, which may contract multiply-adds (adlk/vecmath.h). Nothing
// is launched for n == 0. The softmax and loss sums run in double in fixed trees of their
// own (deterministic; equal to the CPU's to rounding, whose sums go by vector lanes).
#pragma once

#include <cstdint>

#include "adlk/common.h"
#include "adlk/nn.h"

namespace adlk::cuda {

// ---- batch norm and layer norm (cuda/norm.cu) --------------------------------------------------
// The statistics are summed in double in fixed trees (per channel: items of whole rows n
// of about kNormItem values, each a block's tree, added in item order; per row: a warp's
// butterfly), deterministic and equal to the CPU's to rounding; the per-element
// arithmetic is adlk/pointwise.h's. Batch norm's eval forward (no sums) and every
// per-element formula given the same statistics are the CPU's.

// The doubles of the `workspace` batchnorm_forward/backward need for g.
index_t batchnorm_workspace(const BatchNormGeom& g);

template <typename T>
void batchnorm_forward(const BatchNormGeom& g, const T* x, const T* weight, const T* bias,
                       T* running_mean, T* running_var, bool training, double momentum,
                       double eps, T* y, T* save_mean, T* save_invstd, double* workspace,
                       void* stream);

template <typename T>
void batchnorm_backward(const BatchNormGeom& g, const T* grad_y, const T* x, const T* weight,
                        const T* save_mean, const T* save_invstd, bool training, T* grad_x,
                        T* grad_weight, T* grad_bias, double* workspace, void* stream);

// The doubles of the `workspace` layernorm_backward needs for rows x D.
index_t layernorm_workspace(index_t rows, index_t D);

template <typename T>
void layernorm_forward(index_t rows, index_t D, const T* x, const T* weight, const T* bias,
                       double eps, T* y, T* mean, T* rstd, void* stream);

// grad_weight and grad_bias (D) are always written (weight null: weight 1).
template <typename T>
void layernorm_backward(index_t rows, index_t D, const T* grad_y, const T* x, const T* mean,
                        const T* rstd, const T* weight, T* grad_x, T* grad_weight, T* grad_bias,
                        double* workspace, void* stream);

// ---- activations, dropout (cuda/nn.cu) ----------------------------------------------------------

template <typename T>
void activation_forward(index_t n, const T* x, Activation act, double slope, T* y, void* stream);

template <typename T>
void activation_backward(index_t n, const T* grad_y, const T* saved, Activation act,
                         double slope, T* grad_x, void* stream);

// p in [0, 1]; mask[i] is true for the kept elements.
template <typename T>
void dropout_forward(index_t n, const T* x, double p, std::uint64_t seed, T* y, bool* mask,
                     void* stream);

template <typename T>
void dropout_backward(index_t n, const T* grad_y, const bool* mask, double p, T* grad_x,
                      void* stream);

// ---- softmax over rows of K (a warp per row; sums in double in a fixed tree) -------------------

template <typename T>
void softmax_forward(index_t rows, index_t K, const T* x, bool log, T* y, void* stream);

template <typename T>
void softmax_backward(index_t rows, index_t K, const T* grad_y, const T* y, bool log, T* grad_x,
                      void* stream);

// ---- losses: reductions in fixed trees, the result left on the device ---------------------------

// Softmax cross-entropy of logits (B, K) against targets (B,): grad (B, K) (scaled by
// grad_scale: 1/count for a mean, else 1) and row_loss (B doubles; 0 for ignored rows).
// Precondition, checked by the caller: every target is ignore_index or in [0, K); any
// other gives its row a NaN loss and gradient, and is never used as an index.
template <typename T>
void softmax_cross_entropy(index_t B, index_t K, const T* logits, const std::int64_t* targets,
                           std::int64_t ignore_index, double grad_scale, T* grad, double* row_loss,
                           void* stream);

// *total = (the sum of values[0 .. n) in a fixed order) / divisor.
void sum_doubles(index_t n, const double* values, double divisor, double* total, void* stream);

// The doubles of the `partials` workspace elementwise_loss needs for n elements (>= 1).
index_t loss_partials(index_t n);

// grad (and loss_elems, when not null) per element as the CPU's elementwise_loss;
// *total = the sum of the element losses (divided by n for kMean: NaN for n == 0).
template <typename T>
void elementwise_loss(index_t n, const T* pred, const T* target, LossKind kind, Reduction red,
                      double delta, T* grad, T* loss_elems, double* partials, double* total,
                      void* stream);

}  // namespace adlk::cuda
