"""Normalization (docs/api/norm.md): batch normalization and layer normalization.

Batch norm statistics are per channel over (N, *spatial); layer norm statistics per row
over the trailing ``normalized_shape``. Sums run in double over data shifted by the
channel's (the row's) first value, in one pass; layer norm repeats the pass shifted by
the mean when that first value lies far from it (a row [1e4, 0, ..., 0]), which removes
the cancellation. The normalized output subtracts the double mean as two parts of the
input's type. So float32 rows with a large offset (mean 1e4 or 1e6, std 1), one far
outlier, or a spread of 1e19 (whose float32 squares overflow) normalize to float32
precision. Layer norm's backward sums each row in double. Every reduction has a fixed
order, so results are bitwise identical for any thread count.

Training batch norm updates running_mean and running_var in place: they must not share
memory with each other or with another argument (ValueError naming both). Empty inputs
(N or the spatial size 0, however large the other dimensions) return at once.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from . import _adlk, _cuda
from ._backend import backend_of, on_gpu
from ._validate import Args, check_no_overlap, fmt_shape

__all__ = ["batchnorm_forward", "batchnorm_backward", "layernorm_forward", "layernorm_backward"]


def _x_ncs(a: Args, x, name="x"):
    x = a.array(x, name, "(N, C), (N, C, L) or (N, C, H, W)")
    if x.ndim not in (2, 3, 4):
        raise a.shape_error(name, "(N, C), (N, C, L) or (N, C, H, W)", x.shape)
    if x.shape[1] == 0:
        raise a.shape_error(name, "(N, C, ...) with C >= 1", x.shape)
    return x


def _vec(a: Args, v, name: str, c: int):
    if v is None:
        return None
    v = a.array(v, name, f"({c},)", ndim=1)
    a.shape(v, name, (c,), f"({c},)")
    return v


def batchnorm_forward(x, weight, bias, running_mean, running_var, *, training, momentum=0.1,
                      eps=1e-5):
    """Batch normalization, as ``torch.nn.functional.batch_norm``.

    x (N, C), (N, C, L) or (N, C, H, W); weight, bias, running_mean, running_var (C,) or
    None. training=True normalizes with the batch statistics and, when given, updates the
    running statistics in place (running = (1 - momentum) * running + momentum * batch,
    with the unbiased batch variance); they must then not share memory with each other or
    with x, weight or bias (ValueError naming both). training=False uses the running
    statistics.
    Returns (y, save_mean, save_invstd): the statistics used (batch mean and
    1/sqrt(biased var + eps), or the running mean and 1/sqrt(running_var + eps)).
    """
    a = Args("batchnorm_forward")
    arrays = dict(x=x, weight=weight, bias=bias, running_mean=running_mean, running_var=running_var)
    backend = backend_of(a.fn, arrays)
    a.float_dtype(**arrays)
    training = a.boolean(training, "training")
    momentum = a.real(momentum, "momentum", 0.0)
    eps = a.real(eps, "eps", 0.0)
    x = _x_ncs(a, x)
    c = x.shape[1]
    weight, bias = _vec(a, weight, "weight", c), _vec(a, bias, "bias", c)
    for name, v in (("running_mean", running_mean), ("running_var", running_var)):
        if v is not None:
            a.shape(v, name, (c,), f"({c},)")
            # (cupy arrays have no writeable flag: they always are)
            if training and not (v.flags.c_contiguous and getattr(v.flags, "writeable", True)):
                raise a.value_error(name, "is updated in place and must be C-contiguous and writeable")
    if not training and (running_mean is None or running_var is None):
        raise a.value_error("running_mean", "running_mean and running_var are required when training=False")
    if training and x.size // c <= 1 and x.size > 0:
        raise a.value_error("x", f"expected more than 1 value per channel when training, got shape {fmt_shape(x.shape)}")
    if training:
        check_no_overlap(a.fn, arrays, ("running_mean", "running_var"))  # the CUDA module's own for cupy
    else:
        running_mean = a.array(running_mean, "running_mean", f"({c},)")
        running_var = a.array(running_var, "running_var", f"({c},)")
    if on_gpu(a.fn, backend):
        return _cuda.batchnorm_forward(x, weight, bias, running_mean, running_var, training,
                                       momentum, eps)
    return _adlk.batchnorm_forward(x, weight, bias, running_mean, running_var, training,
                                   momentum, eps)


def batchnorm_backward(grad_y, x, weight, save_mean, save_invstd, *, training=True):
    """Gradients (grad_x, grad_weight, grad_bias) of :func:`batchnorm_forward`, from its
    save_mean and save_invstd. grad_weight and grad_bias are computed whether or not the
    forward had them (None weight: weight 1). training=False: the statistics were constants.
    """
    a = Args("batchnorm_backward")
    arrays = dict(grad_y=grad_y, x=x, weight=weight, save_mean=save_mean, save_invstd=save_invstd)
    backend = backend_of(a.fn, arrays)
    a.float_dtype(**arrays)
    training = a.boolean(training, "training")
    x = _x_ncs(a, x)
    c = x.shape[1]
    grad_y = a.array(grad_y, "grad_y", fmt_shape(x.shape))
    a.shape(grad_y, "grad_y", x.shape)
    weight = _vec(a, weight, "weight", c)
    if save_mean is None or save_invstd is None:
        raise a.type_error("save_mean", "save_mean and save_invstd from the forward are required")
    save_mean, save_invstd = _vec(a, save_mean, "save_mean", c), _vec(a, save_invstd, "save_invstd", c)
    if on_gpu(a.fn, backend):
        return _cuda.batchnorm_backward(grad_y, x, weight, save_mean, save_invstd, training)
    return _adlk.batchnorm_backward(grad_y, x, weight, save_mean, save_invstd, training)


def _normalized_shape(a: Args, x, normalized_shape):
    if isinstance(normalized_shape, numbers.Integral) and not isinstance(normalized_shape, bool):
        normalized_shape = (int(normalized_shape),)
    try:
        ns = tuple(a.integer(v, "normalized_shape", 1) for v in normalized_shape)
    except TypeError:
        raise a.type_error("normalized_shape", f"expected an int or a tuple of ints, got {normalized_shape!r}") from None
    if len(ns) == 0 or x.ndim < len(ns) or tuple(x.shape[x.ndim - len(ns):]) != ns:
        raise a.value_error(
            "normalized_shape", f"{ns} is not the trailing shape of x {fmt_shape(x.shape)}"
        )
    return ns


def layernorm_forward(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Layer normalization over the trailing normalized_shape, as
    ``torch.nn.functional.layer_norm``. Returns (y, mean, rstd); mean and rstd have shape
    x.shape[:-k] + (1,) * k (k = len(normalized_shape)), as torch.native_layer_norm."""
    a = Args("layernorm_forward")
    arrays = dict(x=x, weight=weight, bias=bias)
    backend = backend_of(a.fn, arrays)
    a.float_dtype(**arrays)
    eps = a.real(eps, "eps", 0.0)
    x = a.array(x, "x", "(..., *normalized_shape)")
    ns = _normalized_shape(a, x, normalized_shape)
    d = math.prod(ns)
    if weight is not None:
        if weight.shape != ns:
            raise a.shape_error("weight", fmt_shape(ns), weight.shape)
        weight = a.array(weight, "weight", "").reshape(d)
    if bias is not None:
        if bias.shape != ns:
            raise a.shape_error("bias", fmt_shape(ns), bias.shape)
        bias = a.array(bias, "bias", "").reshape(d)
    run = _cuda.layernorm_forward if on_gpu(a.fn, backend) else _adlk.layernorm_forward
    y, mean, rstd = run(x.reshape(-1, d), weight, bias, eps)
    stat_shape = x.shape[: x.ndim - len(ns)] + (1,) * len(ns)
    return y.reshape(x.shape), mean.reshape(stat_shape), rstd.reshape(stat_shape)


def layernorm_backward(grad_y, x, normalized_shape, mean, rstd, weight=None):
    """Gradients (grad_x, grad_weight, grad_bias) of :func:`layernorm_forward`;
    grad_weight and grad_bias have normalized_shape."""
    a = Args("layernorm_backward")
    arrays = dict(grad_y=grad_y, x=x, mean=mean, rstd=rstd, weight=weight)
    backend = backend_of(a.fn, arrays)
    a.float_dtype(**arrays)
    x = a.array(x, "x", "(..., *normalized_shape)")
    ns = _normalized_shape(a, x, normalized_shape)
    if getattr(grad_y, "shape", None) != x.shape:
        raise a.shape_error("grad_y", fmt_shape(x.shape), np.shape(grad_y))
    grad_y = a.array(grad_y, "grad_y", "")
    batch = x.shape[: x.ndim - len(ns)]
    rows, d = math.prod(batch), math.prod(ns)
    for name, v in (("mean", mean), ("rstd", rstd)):
        if v is None or math.prod(np.shape(v)) != rows:
            raise a.shape_error(name, fmt_shape(batch + (1,) * len(ns)), np.shape(v))
    mean = a.array(mean, "mean", "").reshape(rows)
    rstd = a.array(rstd, "rstd", "").reshape(rows)
    if weight is not None:
        if weight.shape != ns:
            raise a.shape_error("weight", fmt_shape(ns), weight.shape)
        weight = a.array(weight, "weight", "").reshape(d)
    run = _cuda.layernorm_backward if on_gpu(a.fn, backend) else _adlk.layernorm_backward
    gx, gw, gb = run(grad_y.reshape(-1, d), x.reshape(-1, d), mean, rstd, weight)
    return gx.reshape(x.shape), gw.reshape(ns), gb.reshape(ns)
