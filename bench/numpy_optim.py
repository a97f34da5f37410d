"""Plain NumPy optimizer steps: the baseline adlkernels' fused optimizer kernels are
measured against.

What one writes without a compiled kernel: the update equations of ``torch.optim``'s
default single-tensor implementation, one tensor at a time, as in-place ufuncs with
``out=`` so that no step allocates a temporary of the tensor's size. Each function needs
one scratch array per tensor (``scratch``: same shapes as params, any contents; allocated
per call when not given, which costs a page-faulting allocation per tensor and step). The
price is traffic: every ufunc is one more pass over memory, so an Adam step moves about
3-4x the bytes of a fused kernel.

Signatures follow ``ak.optim``'s step functions: params, grads and the state arrays are
lists of arrays (or single arrays), state arrays start as zeros, ``step`` is the 1-based
count of this update, all updated in place. Rarely used options (weight decay added to
the gradient, maximize) allocate a temporary; the benchmark's cases do not use them.
Grads are never written.
"""

from __future__ import annotations

import math

import numpy as np


def _lists(*args):
    return [list(a) if isinstance(a, (list, tuple)) else [a] for a in args]


def _scratch(scratch, params):
    if scratch is None:
        return [np.empty_like(p) for p in params]
    return _lists(scratch)[0]


def _effective_grad(g, p, weight_decay, maximize):
    """grad (negated when maximize) + weight_decay * param; g itself when neither applies."""
    if maximize:
        g = np.negative(g)
    if weight_decay != 0:
        g = g + np.asarray(weight_decay, p.dtype) * p  # a temporary, as torch's grad.add(param)
    return g


def sgd_step(params, grads, momentum_buffers=None, *, step, lr, momentum=0.0, dampening=0.0,
             nesterov=False, weight_decay=0.0, maximize=False, scratch=None):
    """torch.optim.SGD: buf = g on step 1, else momentum * buf + (1 - dampening) * g;
    g = g + momentum * buf (nesterov) or buf; param -= lr * g."""
    params, grads = _lists(params, grads)
    bufs = _lists(momentum_buffers)[0] if momentum != 0 else [None] * len(params)
    tmp = _scratch(scratch, params)
    for p, g, buf, t in zip(params, grads, bufs, tmp):
        g = _effective_grad(g, p, weight_decay, maximize)
        if momentum != 0:
            if step == 1:
                np.copyto(buf, g)
            else:
                buf *= momentum
                if dampening == 0:
                    buf += g
                else:
                    np.multiply(g, 1 - dampening, out=t)
                    buf += t
            if nesterov:
                np.multiply(buf, momentum, out=t)
                t += g
                g = t
            else:
                g = buf
        np.multiply(g, -lr, out=t)
        p += t


def adagrad_step(params, grads, state_sums, *, step, lr=0.01, lr_decay=0.0, weight_decay=0.0,
                 eps=1e-10, maximize=False, scratch=None):
    """torch.optim.Adagrad: sum += g^2; param -= clr * g / (sqrt(sum) + eps),
    clr = lr / (1 + (step - 1) * lr_decay)."""
    params, grads, sums = _lists(params, grads, state_sums)
    tmp = _scratch(scratch, params)
    clr = lr / (1 + (step - 1) * lr_decay)
    for p, g, s, t in zip(params, grads, sums, tmp):
        g = _effective_grad(g, p, weight_decay, maximize)
        np.multiply(g, g, out=t)
        s += t
        np.sqrt(s, out=t)
        t += eps
        np.divide(g, t, out=t)
        t *= -clr
        p += t


def rmsprop_step(params, grads, square_avgs, *, step, lr=0.01, alpha=0.99, eps=1e-8,
                 weight_decay=0.0, momentum=0.0, momentum_buffers=None, centered=False,
                 grad_avgs=None, maximize=False, scratch=None):
    """torch.optim.RMSprop: square_avg = alpha * square_avg + (1 - alpha) g^2; avg =
    sqrt(square_avg - grad_avg^2) (centered, grad_avg moving toward g by 1 - alpha) or
    sqrt(square_avg), plus eps; param -= lr * g / avg, or through a momentum buffer
    (buf = momentum * buf + g / avg; param -= lr * buf)."""
    params, grads, sq = _lists(params, grads, square_avgs)
    n = len(params)
    bufs = _lists(momentum_buffers)[0] if momentum > 0 else [None] * n
    gavg = _lists(grad_avgs)[0] if centered else [None] * n
    tmp = _scratch(scratch, params)
    for p, g, v, buf, ga, t in zip(params, grads, sq, bufs, gavg, tmp):
        g = _effective_grad(g, p, weight_decay, maximize)
        v *= alpha
        np.multiply(g, g, out=t)
        t *= 1 - alpha
        v += t
        if centered:
            np.subtract(g, ga, out=t)  # lerp: ga += (1 - alpha) * (g - ga)
            t *= 1 - alpha
            ga += t
            np.multiply(ga, ga, out=t)
            np.subtract(v, t, out=t)
            np.sqrt(t, out=t)
        else:
            np.sqrt(v, out=t)
        t += eps
        np.divide(g, t, out=t)
        if momentum > 0:
            buf *= momentum
            buf += t
            np.multiply(buf, -lr, out=t)
        else:
            t *= -lr
        p += t


def adam_step(params, grads, exp_avgs, exp_avg_sqs, *, step, lr=1e-3, beta1=0.9, beta2=0.999,
              eps=1e-8, weight_decay=0.0, decoupled_weight_decay=False, amsgrad=False,
              max_exp_avg_sqs=None, maximize=False, scratch=None):
    """torch.optim.Adam (decoupled_weight_decay=True: AdamW): m moves toward g by 1 - beta1,
    v = beta2 v + (1 - beta2) g^2 (amsgrad: vmax = max(vmax, v) used instead of v);
    param -= lr / (1 - beta1^step) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps).
    Decoupled weight decay scales param by 1 - lr * weight_decay first."""
    params, grads, ms, vs = _lists(params, grads, exp_avgs, exp_avg_sqs)
    vmaxs = _lists(max_exp_avg_sqs)[0] if amsgrad else [None] * len(params)
    tmp = _scratch(scratch, params)
    step_size = lr / (1 - beta1 ** step)
    bc2_sqrt = math.sqrt(1 - beta2 ** step)
    for p, g, m, v, vmax, t in zip(params, grads, ms, vs, vmaxs, tmp):
        if decoupled_weight_decay:
            if weight_decay != 0:
                p *= 1 - lr * weight_decay
            g = _effective_grad(g, p, 0.0, maximize)
        else:
            g = _effective_grad(g, p, weight_decay, maximize)
        np.subtract(g, m, out=t)  # lerp: m += (1 - beta1) * (g - m)
        t *= 1 - beta1
        m += t
        v *= beta2
        np.multiply(g, g, out=t)
        t *= 1 - beta2
        v += t
        if amsgrad:
            np.maximum(vmax, v, out=vmax)
            v = vmax
        np.sqrt(v, out=t)
        t /= bc2_sqrt
        t += eps
        np.divide(m, t, out=t)
        t *= -step_size
        p += t
