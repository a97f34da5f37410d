"""Plain NumPy 2-D pooling: the baseline adlkernels' pooling kernels are measured against.

What one writes without a compiled kernel. Non-overlapping windows without padding
(kernel == stride, e.g. 2x2/s2, size divisible) go through a reshape to
(N, C, H_out, k, W_out, k); any other geometry through ``sliding_window_view`` of the
padded input (-inf padding for max, zeros for average), subsampled by the stride.
Max: ``argmax`` over the flattened window, turned into the flat index h*W + w inside
the (H, W) plane; the gradient is scattered back with ``np.add.at`` (plain fancy-index
assignment when windows cannot overlap), unpooling is a fancy-index assignment.
Average: the window sum divided by PyTorch's divisor (see :func:`_divisors`).

Semantics as adlkernels / PyTorch for finite data: the first maximum in scan order
wins a tie (``argmax``); NaN handling differs (``argmax`` picks the first NaN, PyTorch
the last), which the benchmark's random normal data never exercises.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def _pair(v):
    return (int(v), int(v)) if np.isscalar(v) else tuple(int(i) for i in v)


def _out_size(size, k, s, p, d=1, ceil_mode=False):
    """PyTorch's pooling output size (ceil_mode drops a window starting in the padding)."""
    out = (size + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def _geometry(x_hw, kernel_size, stride, padding, dilation=1, ceil_mode=False):
    k = _pair(kernel_size)
    s = k if stride is None else _pair(stride)
    p, d = _pair(padding), _pair(dilation)
    out = tuple(_out_size(n, *a, ceil_mode) for n, a in zip(x_hw, zip(k, s, p, d)))
    return k, s, p, d, out


def _simple(x_hw, k, s, p, d, out):
    """Non-overlapping, unpadded windows tiling the plane exactly: the reshape path."""
    return (k == s and p == (0, 0) and d == (1, 1)
            and all(o * kk == n for o, kk, n in zip(out, k, x_hw)))


def _windows(x, k, s, p, d, out, fill):
    """(N, C, H_out, W_out, kH*kW) copy of every window, padding cells = fill."""
    (kh, kw), (sh, sw), (dh, dw), (ho, wo) = k, s, d, out
    span = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)
    win = sliding_window_view(_padded(x, span, s, p, out, fill), span, axis=(2, 3))
    win = win[:, :, : sh * (ho - 1) + 1 : sh, : sw * (wo - 1) + 1 : sw, ::dh, ::dw]
    return win.reshape(*x.shape[:2], ho, wo, kh * kw)  # the copy


def _pads(x_hw, span, s, p, out):
    """((top, bottom), (left, right)) padding: p, and at the bottom/right what the last
    window needs where that is more (ceil_mode can reach past the padding)."""
    return tuple((pp, max(pp, ss * (oo - 1) + kk - n - pp))
                 for n, kk, ss, pp, oo in zip(x_hw, span, s, p, out))


def _padded(x, span, s, p, out, fill):
    """x padded as :func:`_pads` says with fill; x itself when no padding is needed."""
    pads = _pads(x.shape[2:], span, s, p, out)
    if not any(sum(pads, ())):
        return x
    return np.pad(x, ((0, 0), (0, 0)) + pads, constant_values=fill)


def maxpool2d_forward(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """(y, indices int64) as torch.nn.functional.max_pool2d(..., return_indices=True)."""
    n, c, h, w = x.shape
    k, s, p, d, (ho, wo) = _geometry((h, w), kernel_size, stride, padding, dilation, ceil_mode)
    if _simple((h, w), k, s, p, d, (ho, wo)):
        win = x.reshape(n, c, ho, k[0], wo, k[1]).transpose(0, 1, 2, 4, 3, 5)
        win = win.reshape(n, c, ho, wo, k[0] * k[1])
    else:
        win = _windows(x, k, s, p, d, (ho, wo), -np.inf)
    a = win.argmax(axis=-1)
    y = np.take_along_axis(win, a[..., None], axis=-1)[..., 0]
    # Window position -> flat index inside the (H, W) plane.
    hi = (np.arange(ho) * s[0] - p[0])[:, None] + (a // k[1]) * d[0]
    wi = (np.arange(wo) * s[1] - p[1])[None, :] + (a % k[1]) * d[1]
    return y, (hi * w + wi).astype(np.int64)


def maxpool2d_backward(grad_y, indices, input_size, overlapping=True):
    """grad_x of :func:`maxpool2d_forward`: grad_y summed into each argmax.

    overlapping=True: ``np.bincount`` of the flat (plane, index) positions weighted by
    grad_y, the scatter-add equivalent of ``np.add.at`` (2x faster than it here; sums
    in float64, then rounds to grad_y's dtype). overlapping=False (windows cannot
    overlap, e.g. 2x2/s2): every input cell is hit at most once, so a fancy-index
    assignment does.
    """
    n, c = grad_y.shape[:2]
    h, w = input_size[-2:]
    idx = indices.reshape(n * c, -1)
    if overlapping:
        flat = (np.arange(n * c)[:, None] * (h * w) + idx).ravel()
        gx = np.bincount(flat, weights=grad_y.ravel(), minlength=n * c * h * w)
        return gx.astype(grad_y.dtype).reshape(n, c, h, w)
    gx = np.zeros((n * c, h * w), dtype=grad_y.dtype)
    gx[np.arange(n * c)[:, None], idx] = grad_y.reshape(n * c, -1)
    return gx.reshape(n, c, h, w)


def max_unpool2d(x, indices, output_size):
    """As torch.nn.functional.max_unpool2d: zeros, x written at its plane's indices."""
    n, c = x.shape[:2]
    h, w = output_size[-2:]
    y = np.zeros((n * c, h * w), dtype=x.dtype)
    y[np.arange(n * c)[:, None], indices.reshape(n * c, -1)] = x.reshape(n * c, -1)
    return y.reshape(n, c, h, w)


def _divisors(x_hw, k, s, p, out, count_include_pad):
    """PyTorch's avg_pool2d divisor per output position, shape (H_out, W_out).

    Per dimension: start = o*s - p, end = min(start + k, size + p); pool = end - start;
    then start/end are clamped to the input; the divisor is pool_h*pool_w with
    count_include_pad, else the in-range cell count.
    """
    pools, counts = [], []
    for size, kk, ss, pp, oo in zip(x_hw, k, s, p, out):
        start = np.arange(oo) * ss - pp
        end = np.minimum(start + kk, size + pp)
        pools.append(end - start)
        counts.append(np.minimum(end, size) - np.maximum(start, 0))
    a, b = (pools if count_include_pad else counts)
    return np.outer(a, b)


def avgpool2d_forward(x, kernel_size, stride=None, padding=0, ceil_mode=False,
                      count_include_pad=True):
    """As torch.nn.functional.avg_pool2d.

    Window sums as the sum of kH*kW strided views (one per kernel offset), not
    ``x.reshape(N, C, H_out, k, W_out, k).mean(axis=(3, 5))`` or a
    ``sliding_window_view(...).sum(axis=(-2, -1))``: NumPy reduces such short inner axes
    slowly (measured 15-20x slower for 2x2/s2, 1.2-3x for 3x3/s2/p1).
    """
    n, c, h, w = x.shape
    k, s, p, _, out = _geometry((h, w), kernel_size, stride, padding, 1, ceil_mode)
    (kh, kw), (sh, sw), (ho, wo) = k, s, out
    xp = _padded(x, k, s, p, out, 0)
    view = lambda i, j: xp[:, :, i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw]
    tot = view(0, 0).copy()
    for i in range(kh):
        for j in range(kw):
            if i or j:
                tot += view(i, j)
    tot /= _divisors((h, w), k, s, p, out, count_include_pad).astype(x.dtype)
    return tot


def avgpool2d_backward(grad_y, input_size, kernel_size, stride=None, padding=0,
                       ceil_mode=False, count_include_pad=True):
    """grad_x of :func:`avgpool2d_forward`: each in-range cell of a window gets
    grad_y / divisor, summed where windows overlap: one strided slice-add per kernel
    offset (within one offset the windows hit distinct cells, so plain += is exact;
    the col2im of numpy_conv), into a padded buffer that is cropped at the end."""
    n, c = grad_y.shape[:2]
    h, w = input_size[-2:]
    k, s, p, _, out = _geometry((h, w), kernel_size, stride, padding, 1, ceil_mode)
    g = grad_y / _divisors((h, w), k, s, p, out, count_include_pad).astype(grad_y.dtype)
    (kh, kw), (sh, sw), (ho, wo) = k, s, out
    (ph0, ph1), (pw0, pw1) = _pads((h, w), k, s, p, out)
    gxp = np.zeros((n, c, ph0 + h + ph1, pw0 + w + pw1), grad_y.dtype)
    for i in range(kh):
        for j in range(kw):
            gxp[:, :, i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw] += g
    if gxp.shape[2:] == (h, w):
        return gxp
    return np.ascontiguousarray(gxp[:, :, ph0 : ph0 + h, pw0 : pw0 + w])
