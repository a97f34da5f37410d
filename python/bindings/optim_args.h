// The optimizer hyper-parameters arrive from Python as keyword-named scalars (the same in
// the CPU and CUDA modules) and are gathered into the core's Hyper structs here.
#pragma once

#include "adlk/common.h"
#include "adlk/optim.h"

namespace adlk_bind {

inline adlk::SgdHyper sgd_hyper(adlk::index_t step, double lr, double momentum, double dampening,
                                bool nesterov, double weight_decay, bool maximize) {
  adlk::SgdHyper h;
  h.step = step, h.lr = lr, h.momentum = momentum, h.dampening = dampening;
  h.nesterov = nesterov, h.weight_decay = weight_decay, h.maximize = maximize;
  return h;
}

inline adlk::AdagradHyper adagrad_hyper(adlk::index_t step, double lr, double lr_decay,
                                        double weight_decay, double eps, bool maximize) {
  adlk::AdagradHyper h;
  h.step = step, h.lr = lr, h.lr_decay = lr_decay, h.weight_decay = weight_decay, h.eps = eps;
  h.maximize = maximize;
  return h;
}

inline adlk::RmspropHyper rmsprop_hyper(adlk::index_t step, double lr, double alpha, double eps,
                                        double weight_decay, double momentum, bool centered,
                                        bool maximize) {
  adlk::RmspropHyper h;
  h.step = step, h.lr = lr, h.alpha = alpha, h.eps = eps, h.weight_decay = weight_decay;
  h.momentum = momentum, h.centered = centered, h.maximize = maximize;
  return h;
}

inline adlk::AdamHyper adam_hyper(adlk::index_t step, double lr, double beta1, double beta2,
                                  double eps, double weight_decay, bool decoupled, bool amsgrad,
                                  bool maximize) {
  adlk::AdamHyper h;
  h.step = step, h.lr = lr, h.beta1 = beta1, h.beta2 = beta2, h.eps = eps;
  h.weight_decay = weight_decay, h.decoupled_weight_decay = decoupled;
  h.amsgrad = amsgrad, h.maximize = maximize;
  return h;
}

}  // namespace adlk_bind
