"""Pooling (docs/api/pool.md): max pooling with argmax indices, its backward,
max-unpooling, and average pooling forward/backward.

NumPy arrays run the C++/OpenMP kernels, parallel over (n, c) planes; each plane is
handled by one thread in a fixed order, so every result is bitwise identical for any
thread count. Semantics are PyTorch's (``torch.nn.functional.max_pool2d``,
``max_unpool2d``, ``avg_pool2d``), including ceil_mode, count_include_pad and the
rule that padding is at most half the kernel size.

Index rules: ``indices`` hold the flat position h*W + w of the max inside its (H, W)
input plane. Ties go to the first maximum in scan order (rows, then columns); NaN
counts as the maximum (with several NaNs, the last one's index). Every index passed
back in is checked: a value outside [0, H*W) raises ValueError and nothing is written
out of bounds; -1 means "no input position" and is skipped (the forward produces it
only for a window with no in-range cell). In :func:`max_unpool2d`, when two inputs of
one plane name the same position, the last in scan order wins.
"""

from __future__ import annotations

import numpy as np

from . import _adlk
from ._backend import backend_of, on_gpu
from ._validate import Args, fmt_shape

__all__ = [
    "maxpool2d_forward",
    "maxpool2d_backward",
    "max_unpool2d",
    "avgpool2d_forward",
    "avgpool2d_backward",
]


_pooled_size = _adlk.pooled_output_size  # the formula of adlk/pool.h


def _geometry(a: Args, in_hw, kernel_size, stride, padding, dilation, ceil_mode):
    """Checked (kernel, stride, padding, dilation, output (H_out, W_out))."""
    k = a.pair(kernel_size, "kernel_size", 1)
    s = k if stride is None else a.pair(stride, "stride", 1)
    p = a.pair(padding, "padding", 0)
    d = a.pair(dilation, "dilation", 1)
    if not isinstance(ceil_mode, (bool, np.bool_)):
        raise a.type_error("ceil_mode", f"expected a bool, got {type(ceil_mode).__name__}")
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise a.value_error("padding", f"{p} must be at most half the kernel size {k}")
    out = tuple(_pooled_size(n, *args, bool(ceil_mode)) for n, args in zip(in_hw, zip(k, s, p, d)))
    if out[0] < 1 or out[1] < 1:
        raise a.value_error(
            "kernel_size", f"kernel {k} (dilation {d}, padding {p}) does not fit the input {tuple(in_hw)}"
        )
    return k, s, p, d, out


def _input_size(a: Args, size, name: str, n_c=None):
    """(N, C, H, W) or (H, W) -> (H, W); with 4 values, N and C must match n_c."""
    try:
        items = tuple(size)
    except TypeError:
        raise a.type_error(name, f"expected (N, C, H, W) or (H, W), got {size!r}") from None
    if len(items) not in (2, 4):
        raise a.value_error(name, f"expected (N, C, H, W) or (H, W), got {size!r}")
    vals = tuple(a.integer(v, name, 1 if i >= len(items) - 2 else 0) for i, v in enumerate(items))
    if len(vals) == 4 and n_c is not None and vals[:2] != tuple(n_c):
        raise a.value_error(name, f"(N, C) = {vals[:2]} does not match the input's {tuple(n_c)}")
    if n_c is not None:
        a.size_fits(name, tuple(n_c) + vals[-2:], "the result")
    return vals[-2:]


def _x4(a: Args, x, name="x"):
    x = a.array(x, name, "(N, C, H, W)", ndim=4)
    if any(v == 0 for v in x.shape[1:]):
        raise a.shape_error(name, "(N, C, H, W) with C, H, W >= 1", x.shape)
    return x


def _indices(a: Args, indices, shape):
    if not (isinstance(indices, np.ndarray) or hasattr(indices, "__cuda_array_interface__")):
        raise a.type_error("indices", f"expected an int64 array, got {type(indices).__name__}")
    if np.dtype(indices.dtype) != np.dtype(np.int64):
        raise a.type_error("indices", f"expected int64, got {indices.dtype}")
    indices = a.array(indices, "indices", fmt_shape(shape), ndim=4)
    a.shape(indices, "indices", tuple(shape))
    return indices


def maxpool2d_forward(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Max pooling with argmax indices, as ``F.max_pool2d(..., return_indices=True)``.

    x (N, C, H, W) -> (y, indices), both (N, C, H_out, W_out); indices int64, the flat
    position h*W + w of each max in its input plane. stride None means kernel_size.
    """
    a = Args("maxpool2d_forward")
    backend = backend_of(a.fn, {"x": x})
    a.float_dtype(x=x)
    x = _x4(a, x)
    k, s, p, d, out = _geometry(a, x.shape[2:], kernel_size, stride, padding, dilation, ceil_mode)
    if on_gpu(a.fn, backend):
        from . import _cuda

        return _cuda.maxpool2d_forward(x, k, s, p, d, bool(ceil_mode), out)
    return a.run(_adlk.maxpool2d_forward, x, k, s, p, d, bool(ceil_mode))


def maxpool2d_backward(grad_y, indices, input_size):
    """Gradient of max pooling: grad_y routed to each argmax, summed where windows overlap.

    grad_y and indices (N, C, H_out, W_out); input_size (N, C, H, W) or (H, W).
    Returns grad_x (N, C, H, W).
    """
    return _maxpool2d_backward(grad_y, indices, input_size)


def _maxpool2d_backward(grad_y, indices, input_size, window=None):
    """maxpool2d_backward, for callers that also know the forward's window, ``window`` =
    (kernel_size, stride, padding, dilation, ceil_mode) (ak.layers.MaxPool2d, the torch
    adapter). The result is the same. On CUDA the window lets every input cell gather its
    gradient from the windows that cover it, instead of one thread per plane scattering;
    indices that are not all in their own windows take the scatter. The CPU kernel is the
    scatter either way."""
    a = Args("maxpool2d_backward")
    backend = backend_of(a.fn, {"grad_y": grad_y, "indices": indices})
    a.float_dtype(grad_y=grad_y)
    grad_y = a.array(grad_y, "grad_y", "(N, C, H_out, W_out)", ndim=4)
    hw = _input_size(a, input_size, "input_size", grad_y.shape[:2])
    indices = _indices(a, indices, grad_y.shape)
    if on_gpu(a.fn, backend):
        from . import _cuda

        nchw = grad_y.shape[:2] + tuple(hw)
        if window is None:
            return _cuda.maxpool2d_backward(grad_y, indices, nchw, a.fn)
        k, s, p, d, out = _geometry(a, hw, *window)
        if out != grad_y.shape[2:]:
            raise a.shape_error("grad_y", fmt_shape(grad_y.shape[:2] + out), grad_y.shape)
        return _cuda.maxpool2d_backward_window(grad_y, indices, nchw, (k, s, p, d, bool(window[4])),
                                               a.fn)
    return a.run(_adlk.maxpool2d_backward, grad_y, indices, hw[0], hw[1])


def max_unpool2d(x, indices, output_size):
    """Inverse of max pooling: y zeros except y[n, c].flat[indices[n, c]] = x[n, c].

    x and indices (N, C, h, w); output_size (N, C, H, W) or (H, W). As
    ``F.max_unpool2d`` with that output size. Duplicate indices in a plane: the last
    in scan order wins.
    """
    a = Args("max_unpool2d")
    backend = backend_of(a.fn, {"x": x, "indices": indices})
    a.float_dtype(x=x)
    x = a.array(x, "x", "(N, C, H, W)", ndim=4)
    hw = _input_size(a, output_size, "output_size", x.shape[:2])
    indices = _indices(a, indices, x.shape)
    if on_gpu(a.fn, backend):
        from . import _cuda

        return _cuda.max_unpool2d(x, indices, hw, a.fn)
    return a.run(_adlk.max_unpool2d, x, indices, hw[0], hw[1])


def avgpool2d_forward(x, kernel_size, stride=None, padding=0, ceil_mode=False,
                      count_include_pad=True):
    """Average pooling, as ``F.avg_pool2d`` (PyTorch's divisors at the borders).

    x (N, C, H, W) -> y (N, C, H_out, W_out). count_include_pad counts padded cells in
    the divisor; the part of a ceil_mode window beyond the padding never counts.
    """
    a = Args("avgpool2d_forward")
    backend = backend_of(a.fn, {"x": x})
    a.float_dtype(x=x)
    x = _x4(a, x)
    k, s, p, _, out = _geometry(a, x.shape[2:], kernel_size, stride, padding, 1, ceil_mode)
    cip = a.boolean(count_include_pad, "count_include_pad")
    if on_gpu(a.fn, backend):
        from . import _cuda

        return _cuda.avgpool2d_forward(x, k, s, p, bool(ceil_mode), cip, out)
    return a.run(_adlk.avgpool2d_forward, x, k, s, p, bool(ceil_mode), cip)


def avgpool2d_backward(grad_y, input_size, kernel_size, stride=None, padding=0, ceil_mode=False,
                       count_include_pad=True):
    """Gradient of :func:`avgpool2d_forward`: grad_x (N, C, H, W) for input_size
    (N, C, H, W) or (H, W); grad_y must have the forward's output shape."""
    a = Args("avgpool2d_backward")
    backend = backend_of(a.fn, {"grad_y": grad_y})
    a.float_dtype(grad_y=grad_y)
    grad_y = a.array(grad_y, "grad_y", "(N, C, H_out, W_out)", ndim=4)
    n, c = grad_y.shape[:2]
    hw = _input_size(a, input_size, "input_size", (n, c))
    if c == 0:
        raise a.shape_error("grad_y", "(N, C, H_out, W_out) with C >= 1", grad_y.shape)
    k, s, p, _, out = _geometry(a, hw, kernel_size, stride, padding, 1, ceil_mode)
    a.shape(grad_y, "grad_y", (n, c) + out)
    cip = a.boolean(count_include_pad, "count_include_pad")
    if on_gpu(a.fn, backend):
        from . import _cuda

        return _cuda.avgpool2d_backward(grad_y, (n, c) + hw, k, s, p, bool(ceil_mode), cip)
    return a.run(_adlk.avgpool2d_backward, grad_y, (n, c) + hw, k, s, p, bool(ceil_mode), cip)
