// CUDA optimizer family: host launchers (plain C++ header).
//
// The CUDA counterparts of adlk/optim.h, with the same semantics and hyper-parameter
// structs (read it). A call takes host arrays of `count` device pointers per list (params[k],
// grads[k], state[k] each hold sizes[k] elements, C-contiguous, on the current device) and
// enqueues its kernels on `stream` (a cudaStream_t as void*; nullptr: the legacy default
// stream). The tensors are updated in chunks of kListTensors (cuda/optim.cu): one launch
// per chunk, whose blocks take fixed tiles of all its tensors together, so a thousand small
// tensors cost a few launches and one big tensor fills the GPU.
//
// Bits: each element is updated by the rule of adlk/optim_update.h that the CPU kernels
// run too, with the same scalars and no FMA contraction, so a step gives the same bits as
// the CPU's. The total norm sums fixed tiles in double and adds the tile sums in a fixed
// tree: the same bits run after run on any GPU with the same kThreads, and equal to the
// CPU's total to within double rounding (the grouping of the sum differs).
#pragma once

#include "adlk/common.h"
#include "adlk/optim.h"

namespace adlk::cuda {

template <typename T>
void sgd_step(index_t count, const index_t* sizes, T* const* params, const T* const* grads,
              T* const* momentum_buffers, const SgdHyper& h, void* stream);

template <typename T>
void adagrad_step(index_t count, const index_t* sizes, T* const* params, const T* const* grads,
                  T* const* state_sums, const AdagradHyper& h, void* stream);

template <typename T>
void rmsprop_step(index_t count, const index_t* sizes, T* const* params, const T* const* grads,
                  T* const* square_avgs, T* const* momentum_buffers, T* const* grad_avgs,
                  const RmspropHyper& h, void* stream);

template <typename T>
void adam_step(index_t count, const index_t* sizes, T* const* params, const T* const* grads,
               T* const* exp_avgs, T* const* exp_avg_sqs, T* const* max_exp_avg_sqs,
               const AdamHyper& h, void* stream);

// The number of doubles of the `partials` workspace that total_norm needs (>= 1).
index_t total_norm_partials(index_t count, const index_t* sizes);

// *total (one device double) = the norm_type-norm (1, 2 or +inf) of all tensors together;
// NaN propagates; 0 for no elements. partials: total_norm_partials() device doubles.
template <typename T>
void total_norm(index_t count, const index_t* sizes, const T* const* tensors, double norm_type,
                double* partials, double* total, void* stream);

// clip_grad_norm's scaling, without a round trip to the host: every tensor is multiplied
// by coef = max_norm / (T(*total) + 1e-6) (in T) unless coef >= 1 (update::clip_coef).
template <typename T>
void clip_scale(index_t count, const index_t* sizes, T* const* tensors, const double* total,
                double max_norm, void* stream);

}  // namespace adlk::cuda
