"""Plain float64 NumPy references for normalization and initialization, from the formulas.

Batch norm: per channel c, over the M = N * prod(spatial) values x[:, c, ...],
    mean = sum(x) / M,  var = sum((x - mean)^2) / M   (biased, two passes in float64)
    y = (x - mean) / sqrt(var + eps) * w + b
    running_mean <- (1 - momentum) * running_mean + momentum * mean
    running_var  <- (1 - momentum) * running_var  + momentum * var * M / (M - 1)
Eval mode uses running_mean / running_var in place of the batch statistics.
Layer norm: the same per row over the trailing normalized_shape (no running statistics).
Backward: hand-derived formulas (below), plus a central finite-difference helper that the
tests use to check both these formulas and the kernels.

Initialization: PyTorch's fan computation (torch.nn.init._calculate_fan_in_and_fan_out)
and the std / bound of each distribution.
"""

from __future__ import annotations

import math

import numpy as np


def f64(a):
    return None if a is None else np.array(a, dtype=np.float64, copy=True)


# ----------------------------------------------------------------------------------
# batch norm
# ----------------------------------------------------------------------------------


def _bshape(x):
    """Broadcast shape of a per-channel (C,) vector against x (N, C, *spatial)."""
    return (1, x.shape[1]) + (1,) * (x.ndim - 2)


def _red_axes(x):
    return (0,) + tuple(range(2, x.ndim))


def batchnorm_ref(x, weight, bias, running_mean, running_var, training, momentum=0.1,
                  eps=1e-5):
    """(y, save_mean, save_invstd, new_running_mean, new_running_var), all float64.

    new_running_* is None where the input running statistic is None (and unchanged copies
    in eval mode)."""
    x = f64(x)
    c = x.shape[1]
    bs = _bshape(x)
    axes = _red_axes(x)
    m = x.size // c
    rm, rv = f64(running_mean), f64(running_var)
    if training:
        mean = x.sum(axis=axes) / m
        var = ((x - mean.reshape(bs)) ** 2).sum(axis=axes) / m  # biased, two-pass
        invstd = 1.0 / np.sqrt(var + eps)
        if m > 1:
            unbiased = var * m / (m - 1)
            if rm is not None:
                rm = (1.0 - momentum) * rm + momentum * mean
            if rv is not None:
                rv = (1.0 - momentum) * rv + momentum * unbiased
    else:
        mean = rm.copy()
        invstd = 1.0 / np.sqrt(rv + eps)
    y = (x - mean.reshape(bs)) * invstd.reshape(bs)
    if weight is not None:
        y = y * f64(weight).reshape(bs)
    if bias is not None:
        y = y + f64(bias).reshape(bs)
    return y, mean, invstd, rm, rv


def batchnorm_backward_ref(gy, x, weight, save_mean, save_invstd, training=True):
    """(grad_x, grad_weight, grad_bias) of sum(gy * y), float64.

    With xhat = (x - mean) * invstd, g = gy * w (w = 1 when None), M values per channel:
      grad_bias = sum(gy),  grad_weight = sum(gy * xhat)
      eval:     grad_x = g * invstd                      (mean, invstd constants)
      training: grad_x = invstd * (g - sum(g)/M - xhat * sum(g * xhat)/M)
    """
    gy, x = f64(gy), f64(x)
    c = x.shape[1]
    bs = _bshape(x)
    axes = _red_axes(x)
    m = x.size // c
    mean = f64(save_mean).reshape(bs)
    invstd = f64(save_invstd).reshape(bs)
    w = np.ones(c) if weight is None else f64(weight)
    xhat = (x - mean) * invstd
    gb = gy.sum(axis=axes)
    gw = (gy * xhat).sum(axis=axes)
    g = gy * w.reshape(bs)
    if training:
        if m == 0:
            gx = np.zeros_like(x)
        else:
            sg = g.sum(axis=axes).reshape(bs) / m
            sgx = (g * xhat).sum(axis=axes).reshape(bs) / m
            gx = invstd * (g - sg - xhat * sgx)
    else:
        gx = g * invstd
    return gx, gw, gb


def batchnorm_backward_magnitude(gy, x, weight, save_mean, save_invstd, training=True):
    """Per-element magnitudes bounding the rounding error of any summation order: the
    backward formulas evaluated on absolute values."""
    gy, x = np.abs(f64(gy)), f64(x)
    c = x.shape[1]
    bs = _bshape(x)
    axes = _red_axes(x)
    m = max(1, x.size // c)
    invstd = np.abs(f64(save_invstd).reshape(bs))
    xhat = np.abs((x - f64(save_mean).reshape(bs)) * invstd)
    w = np.ones(c) if weight is None else np.abs(f64(weight))
    g = gy * w.reshape(bs)
    gb = gy.sum(axis=axes)
    gw = (gy * xhat).sum(axis=axes)
    if training:
        gx = invstd * (g + g.sum(axis=axes).reshape(bs) / m
                       + xhat * (g * xhat).sum(axis=axes).reshape(bs) / m)
    else:
        gx = g * invstd
    return gx, gw, gb


# ----------------------------------------------------------------------------------
# layer norm
# ----------------------------------------------------------------------------------


def _ns(normalized_shape):
    return (int(normalized_shape),) if np.isscalar(normalized_shape) else tuple(normalized_shape)


def layernorm_ref(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """(y, mean, rstd) in float64; mean and rstd of shape x.shape[:-k] + (1,) * k."""
    ns = _ns(normalized_shape)
    k = len(ns)
    x = f64(x)
    assert x.shape[x.ndim - k:] == ns
    axes = tuple(range(x.ndim - k, x.ndim))
    d = int(np.prod(ns))
    mean = x.sum(axis=axes, keepdims=True) / d
    var = ((x - mean) ** 2).sum(axis=axes, keepdims=True) / d
    rstd = 1.0 / np.sqrt(var + eps)
    y = (x - mean) * rstd
    if weight is not None:
        y = y * f64(weight)
    if bias is not None:
        y = y + f64(bias)
    return y, mean, rstd


def layernorm_backward_ref(gy, x, normalized_shape, mean, rstd, weight=None):
    """(grad_x, grad_weight, grad_bias) of sum(gy * y), float64. Per row (D values),
    xhat = (x - mean) * rstd, g = gy * w:
      grad_x = rstd * (g - sum(g)/D - xhat * sum(g * xhat)/D)
      grad_weight = sum over rows of gy * xhat,  grad_bias = sum over rows of gy."""
    ns = _ns(normalized_shape)
    k = len(ns)
    gy, x = f64(gy), f64(x)
    lead = x.shape[: x.ndim - k]
    stat = lead + (1,) * k
    mean, rstd = f64(mean).reshape(stat), f64(rstd).reshape(stat)
    axes = tuple(range(x.ndim - k, x.ndim))
    lead_axes = tuple(range(x.ndim - k))
    d = int(np.prod(ns))
    w = np.ones(ns) if weight is None else f64(weight)
    xhat = (x - mean) * rstd
    g = gy * w
    gx = rstd * (g - g.sum(axis=axes, keepdims=True) / d
                 - xhat * (g * xhat).sum(axis=axes, keepdims=True) / d)
    gw = (gy * xhat).sum(axis=lead_axes) if lead_axes else gy * xhat
    gb = gy.sum(axis=lead_axes) if lead_axes else gy.copy()
    return gx, gw.reshape(ns), gb.reshape(ns)


# ----------------------------------------------------------------------------------
# finite differences
# ----------------------------------------------------------------------------------


def numerical_grad(f, a, h=1e-6):
    """Central differences of the scalar function f() with respect to every element of
    the float64 array ``a``, which f reads (it is perturbed in place and restored)."""
    assert a.dtype == np.float64
    g = np.zeros_like(a)
    flat, gflat = a.reshape(-1), g.reshape(-1)
    assert np.shares_memory(flat, a)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        fp = f()
        flat[i] = old - h
        fm = f()
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * h)
    return g


# ----------------------------------------------------------------------------------
# initialization
# ----------------------------------------------------------------------------------


def fans_ref(shape):
    """(fan_in, fan_out) as torch.nn.init._calculate_fan_in_and_fan_out: for a weight of
    shape (out, in, *kernel), fan_in = in * prod(kernel), fan_out = out * prod(kernel)."""
    shape = tuple(shape)
    assert len(shape) >= 2
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def init_std_ref(kind, shape, gain=1.0):
    """The standard deviation of each init distribution (uniform: bound = sqrt(3) * std).

    xavier: gain * sqrt(2 / (fan_in + fan_out)); he (kaiming, a = 0, fan_in mode,
    gain sqrt(2)): sqrt(2) / sqrt(fan_in)."""
    fan_in, fan_out = fans_ref(shape)
    if kind.startswith("xavier"):
        return gain * math.sqrt(2.0 / (fan_in + fan_out))
    return math.sqrt(2.0) / math.sqrt(fan_in)


def layernorm_backward_magnitude(gy, x, normalized_shape, mean, rstd, weight=None):
    """Per-element magnitudes for layernorm_backward_ref: its formulas on absolute values."""
    ns = _ns(normalized_shape)
    k = len(ns)
    gy, x = np.abs(f64(gy)), f64(x)
    stat = x.shape[: x.ndim - k] + (1,) * k
    rstd = np.abs(f64(rstd).reshape(stat))
    xhat = np.abs((x - f64(mean).reshape(stat)) * rstd)
    axes = tuple(range(x.ndim - k, x.ndim))
    lead_axes = tuple(range(x.ndim - k))
    d = int(np.prod(ns))
    g = gy * (1.0 if weight is None else np.abs(f64(weight)))
    gx = rstd * (g + g.sum(axis=axes, keepdims=True) / d
                 + xhat * (g * xhat).sum(axis=axes, keepdims=True) / d)
    gw = (gy * xhat).sum(axis=lead_axes) if lead_axes else gy * xhat
    gb = gy.sum(axis=lead_axes) if lead_axes else gy.copy()
    return gx, gw.reshape(ns), gb.reshape(ns)
