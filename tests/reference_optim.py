"""Plain float64 NumPy references for the optimizer family (docs/api/optim.md).

Written from the update equations of the torch.optim documentation (SGD, Adagrad,
RMSprop, Adam/AdamW) and of torch.nn.utils.clip_grad_norm_, one tensor at a time and
one equation per line. Nothing here is shaped like a kernel (no fusion, no chunking):
every function takes lists of arrays of any float dtype, computes in float64 and
returns NEW float64 arrays (inputs are never modified).

Conventions shared with the library: ``step`` is the 1-based count of the update;
state arrays start as zeros, except that SGD's momentum buffer is set to the
gradient on step 1 (PyTorch's ``buf = clone(g)`` when it has no buffer yet).
"""

from __future__ import annotations

import math

import numpy as np


def _f64(arrays):
    return [np.array(a, dtype=np.float64, copy=True) for a in arrays]


# ----------------------------------------------------------------------------------
# SGD
# ----------------------------------------------------------------------------------


def sgd_ref(params, grads, momentum_buffers=None, *, step, lr, momentum=0.0, dampening=0.0,
            nesterov=False, weight_decay=0.0, maximize=False):
    """torch.optim.SGD, per tensor:

        g = -grad if maximize else grad
        g = g + weight_decay * theta                      (weight_decay != 0)
        b = g                                             (momentum != 0, step 1)
        b = momentum * b + (1 - dampening) * g            (momentum != 0, step > 1)
        g = g + momentum * b  if nesterov  else  b        (momentum != 0)
        theta = theta - lr * g

    Returns (params, momentum_buffers) as new float64 lists (buffers None without momentum).
    """
    params, grads = _f64(params), _f64(grads)
    bufs = _f64(momentum_buffers) if momentum_buffers is not None else [None] * len(params)
    new_p, new_b = [], []
    for theta, grad, b in zip(params, grads, bufs):
        g = -grad if maximize else grad
        if weight_decay != 0:
            g = g + weight_decay * theta
        if momentum != 0:
            if step == 1:
                b = g.copy()
            else:
                b = momentum * b + (1.0 - dampening) * g
            if nesterov:
                g = g + momentum * b
            else:
                g = b
        theta = theta - lr * g
        new_p.append(np.asarray(theta))
        new_b.append(None if b is None else np.asarray(b))
    return new_p, (new_b if momentum != 0 else None)


# ----------------------------------------------------------------------------------
# Adagrad
# ----------------------------------------------------------------------------------


def adagrad_ref(params, grads, state_sums, *, step, lr=0.01, lr_decay=0.0, weight_decay=0.0,
                eps=1e-10, maximize=False):
    """torch.optim.Adagrad (initial_accumulator_value 0), per tensor:

        g = -grad if maximize else grad
        g = g + weight_decay * theta                      (weight_decay != 0)
        clr = lr / (1 + (step - 1) * lr_decay)
        sum = sum + g^2
        theta = theta - clr * g / (sqrt(sum) + eps)

    Returns (params, state_sums).
    """
    params, grads, sums = _f64(params), _f64(grads), _f64(state_sums)
    clr = lr / (1.0 + (step - 1) * lr_decay)
    new_p, new_s = [], []
    for theta, grad, s in zip(params, grads, sums):
        g = -grad if maximize else grad
        if weight_decay != 0:
            g = g + weight_decay * theta
        s = s + g * g
        theta = theta - clr * g / (np.sqrt(s) + eps)
        new_p.append(np.asarray(theta))
        new_s.append(np.asarray(s))
    return new_p, new_s


# ----------------------------------------------------------------------------------
# RMSprop
# ----------------------------------------------------------------------------------


def rmsprop_ref(params, grads, square_avgs, *, step, lr=0.01, alpha=0.99, eps=1e-8,
                weight_decay=0.0, momentum=0.0, momentum_buffers=None, centered=False,
                grad_avgs=None, maximize=False):
    """torch.optim.RMSprop, per tensor (the momentum buffer starts at zero):

        g = -grad if maximize else grad
        g = g + weight_decay * theta                      (weight_decay != 0)
        v = alpha * v + (1 - alpha) * g^2
        centered:  gbar = alpha * gbar + (1 - alpha) * g;  d = sqrt(v - gbar^2) + eps
        else:      d = sqrt(v) + eps
        momentum > 0:  b = momentum * b + g / d;  theta = theta - lr * b
        else:          theta = theta - lr * g / d

    Returns (params, square_avgs, momentum_buffers or None, grad_avgs or None).
    ``step`` does not enter the equations (accepted for a uniform signature).
    """
    del step
    params, grads, sq = _f64(params), _f64(grads), _f64(square_avgs)
    bufs = _f64(momentum_buffers) if momentum > 0 else [None] * len(params)
    gavgs = _f64(grad_avgs) if centered else [None] * len(params)
    out_p, out_v, out_b, out_ga = [], [], [], []
    for theta, grad, v, b, ga in zip(params, grads, sq, bufs, gavgs):
        g = -grad if maximize else grad
        if weight_decay != 0:
            g = g + weight_decay * theta
        v = alpha * v + (1.0 - alpha) * g * g
        if centered:
            ga = alpha * ga + (1.0 - alpha) * g
            d = np.sqrt(v - ga * ga) + eps
        else:
            d = np.sqrt(v) + eps
        if momentum > 0:
            b = momentum * b + g / d
            theta = theta - lr * b
        else:
            theta = theta - lr * g / d
        out_p.append(np.asarray(theta))
        out_v.append(np.asarray(v))
        out_b.append(None if b is None else np.asarray(b))
        out_ga.append(None if ga is None else np.asarray(ga))
    return (out_p, out_v, out_b if momentum > 0 else None, out_ga if centered else None)


# ----------------------------------------------------------------------------------
# Adam / AdamW
# ----------------------------------------------------------------------------------


def adam_ref(params, grads, exp_avgs, exp_avg_sqs, *, step, lr=1e-3, beta1=0.9, beta2=0.999,
             eps=1e-8, weight_decay=0.0, decoupled_weight_decay=False, amsgrad=False,
             max_exp_avg_sqs=None, maximize=False):
    """torch.optim.Adam (decoupled_weight_decay=True: torch.optim.AdamW), per tensor:

        g = -grad if maximize else grad
        decoupled:  theta = theta * (1 - lr * weight_decay)
        else:       g = g + weight_decay * theta           (weight_decay != 0)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g^2
        amsgrad:    vmax = max(vmax, v);  u = vmax  else  u = v
        theta = theta - lr / (1 - beta1^step) * m / (sqrt(u) / sqrt(1 - beta2^step) + eps)

    (PyTorch's bias correction: eps is added after dividing sqrt(u) by sqrt(bc2).)
    Returns (params, exp_avgs, exp_avg_sqs, max_exp_avg_sqs or None).
    """
    params, grads = _f64(params), _f64(grads)
    ms, vs = _f64(exp_avgs), _f64(exp_avg_sqs)
    vmaxs = _f64(max_exp_avg_sqs) if amsgrad else [None] * len(params)
    bc1 = 1.0 - beta1 ** step
    bc2 = 1.0 - beta2 ** step
    out_p, out_m, out_v, out_vmax = [], [], [], []
    for theta, grad, m, v, vmax in zip(params, grads, ms, vs, vmaxs):
        g = -grad if maximize else grad
        if weight_decay != 0:
            if decoupled_weight_decay:
                theta = theta * (1.0 - lr * weight_decay)
            else:
                g = g + weight_decay * theta
        m = beta1 * m + (1.0 - beta1) * g
        v = beta2 * v + (1.0 - beta2) * g * g
        if amsgrad:
            vmax = np.maximum(vmax, v)
            u = vmax
        else:
            u = v
        denom = np.sqrt(u) / math.sqrt(bc2) + eps
        theta = theta - (lr / bc1) * m / denom
        out_p.append(np.asarray(theta))
        out_m.append(np.asarray(m))
        out_v.append(np.asarray(v))
        out_vmax.append(None if vmax is None else np.asarray(vmax))
    return out_p, out_m, out_v, (out_vmax if amsgrad else None)


# ----------------------------------------------------------------------------------
# gradient clipping
# ----------------------------------------------------------------------------------


def grad_norm_ref(grads, norm_type=2.0):
    """The norm of all gradients together (as one concatenated vector), in float64:
    2: sqrt(sum g^2); 1: sum |g|; inf: max |g| (0 for no elements). A NaN anywhere gives
    NaN for every order (as torch.linalg.vector_norm)."""
    flat = np.concatenate([np.asarray(g, dtype=np.float64).ravel() for g in grads]
                          + [np.zeros(0)])
    if np.isnan(flat).any():
        return math.nan
    a = np.abs(flat)
    if norm_type == 2:
        return float(math.sqrt(math.fsum(x * x for x in a.tolist())))
    if norm_type == 1:
        return float(math.fsum(a.tolist()))
    if norm_type == math.inf:
        return float(a.max()) if a.size else 0.0
    raise ValueError(f"unsupported norm_type {norm_type}")


def clip_grad_norm_ref(grads, max_norm, norm_type=2.0):
    """torch.nn.utils.clip_grad_norm_: total = norm of all grads; coef = max_norm /
    (total + 1e-6); grads * coef when coef < 1 (or NaN), else unchanged.
    Returns (total, new float64 grads)."""
    total = grad_norm_ref(grads, norm_type)
    coef = max_norm / (total + 1e-6)
    out = _f64(grads)
    if not coef >= 1.0:
        with np.errstate(invalid="ignore"):  # inf * 0 -> NaN, as in PyTorch
            out = [np.asarray(g * coef) for g in out]
    return total, out


# ----------------------------------------------------------------------------------
# learning-rate schedules (closed forms)
# ----------------------------------------------------------------------------------


def step_lr_ref(base_lr, epoch, step_size, gamma=0.1):
    return base_lr * gamma ** (epoch // step_size)


def exponential_lr_ref(base_lr, epoch, gamma):
    return base_lr * gamma ** epoch


def polynomial_lr_ref(base_lr, epoch, total_iters=5, power=1.0):
    return base_lr * (1.0 - min(epoch, total_iters) / total_iters) ** power
