// Fused multi-tensor optimizer updates and gradient-norm clipping.
//
// A call updates `count` tensors (tensor k has sizes[k] elements; params[k], grads[k] and
// each state array state[k] hold that many, C-contiguous). Every element is read once
// and written once, in one OpenMP region whose threads take equal shares of all tensors'
// elements together. Updates are elementwise: results do not depend on the thread count.
// Hyper-parameters follow torch.optim (see the Python docstrings for the equations);
// scalar arithmetic (bias corrections, step sizes) is done once per call in double.
#pragma once

#include "adlk/common.h"
#include "adlk/tuning.h"

namespace adlk {

struct SgdHyper {
  index_t step = 1;
  double lr = 0, momentum = 0, dampening = 0, weight_decay = 0;
  bool nesterov = false, maximize = false;
};

struct AdagradHyper {
  index_t step = 1;
  double lr = 0.01, lr_decay = 0, weight_decay = 0, eps = 1e-10;
  bool maximize = false;
};

struct RmspropHyper {
  index_t step = 1;
  double lr = 0.01, alpha = 0.99, eps = 1e-8, weight_decay = 0, momentum = 0;
  bool centered = false, maximize = false;
};

struct AdamHyper {
  index_t step = 1;
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0;
  bool decoupled_weight_decay = false, amsgrad = false, maximize = false;
};

// momentum_buffers: null when momentum == 0.
template <typename T>
void sgd_step(index_t count, const index_t* sizes, T* const* params, const T* const* grads,
              T* const* momentum_buffers, const SgdHyper& h);

template <typename T>
void adagrad_step(index_t count, const index_t* sizes, T* const* params, const T* const* grads,
                  T* const* state_sums, const AdagradHyper& h);

// momentum_buffers: needed when momentum > 0; grad_avgs: when centered.
template <typename T>
void rmsprop_step(index_t count, const index_t* sizes, T* const* params, const T* const* grads,
                  T* const* square_avgs, T* const* momentum_buffers, T* const* grad_avgs,
                  const RmspropHyper& h);

// max_exp_avg_sqs: needed when amsgrad.
template <typename T>
void adam_step(index_t count, const index_t* sizes, T* const* params, const T* const* grads,
               T* const* exp_avgs, T* const* exp_avg_sqs, T* const* max_exp_avg_sqs,
               const AdamHyper& h);

// The norm_type-norm (1, 2 or +inf) of all tensors together. Sums run in double over
// fixed chunks of kSumChunk (adlk/tuning.h) elements (tensor starts begin new chunks), and the chunk
// results are combined in order: the same bits for any thread count. NaN propagates.
template <typename T>
double total_norm(index_t count, const index_t* sizes, const T* const* tensors, double norm_type);

// tensors[k][i] *= factor (rounded to T once).
template <typename T>
void scale_tensors(index_t count, const index_t* sizes, T* const* tensors, double factor);

}  // namespace adlk
