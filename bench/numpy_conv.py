"""Plain NumPy im2col + GEMM convolution: the baseline adlkernels is measured against.

This is what one writes without a compiled kernel: the column matrix comes from
``sliding_window_view`` (a strided view, materialised by one reshape copy), the
product from ``np.matmul`` (NumPy's own BLAS), and col2im is a loop over the kH*kW
kernel offsets adding strided slices. groups=1 only (all benchmark shapes).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _out_size(size, k, s, p, d):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def im2col_rows(x, kernel_size, stride=1, padding=0, dilation=1):
    """x (N, C, H, W) -> cols (N*H_out*W_out, C*kH*kW), row-major over (n, oh, ow).

    This is unfold's matrix transposed per image, the orientation that lets one GEMM
    cover the whole batch.
    """
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = map(_pair, (kernel_size, stride, padding, dilation))
    n, c, h, w = x.shape
    ho, wo = _out_size(h, kh, sh, ph, dh), _out_size(w, kw, sw, pw, dw)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))) if ph or pw else x
    # Windows of the dilated span, then every d-th element inside and every s-th start.
    win = sliding_window_view(xp, (dh * (kh - 1) + 1, dw * (kw - 1) + 1), axis=(2, 3))
    win = win[:, :, : sh * (ho - 1) + 1 : sh, : sw * (wo - 1) + 1 : sw, ::dh, ::dw]
    # (N, C, Ho, Wo, kH, kW) -> (N, Ho, Wo, C, kH, kW): the reshape makes the copy.
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, c * kh * kw), (ho, wo)


def conv2d_forward(x, weight, bias=None, stride=1, padding=0, dilation=1):
    """As torch.nn.functional.conv2d (groups=1)."""
    n = x.shape[0]
    c_out = weight.shape[0]
    cols, (ho, wo) = im2col_rows(x, weight.shape[2:], stride, padding, dilation)
    y = np.matmul(cols, weight.reshape(c_out, -1).T)  # (N*L, C_out)
    if bias is not None:
        y += bias
    return np.ascontiguousarray(y.reshape(n, ho, wo, c_out).transpose(0, 3, 1, 2))


def conv2d_backward(grad_y, x, weight, stride=1, padding=0, dilation=1):
    """(grad_x, grad_weight, grad_bias) of :func:`conv2d_forward`."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = map(
        _pair, (weight.shape[2:], stride, padding, dilation)
    )
    n, c, h, w = x.shape
    c_out = weight.shape[0]
    cols, (ho, wo) = im2col_rows(x, (kh, kw), stride, padding, dilation)
    gy = grad_y.transpose(0, 2, 3, 1).reshape(n * ho * wo, c_out)  # copies: NCHW -> rows
    grad_b = grad_y.sum(axis=(0, 2, 3))
    grad_w = np.matmul(gy.T, cols).reshape(weight.shape)
    gcols = np.matmul(gy, weight.reshape(c_out, -1)).reshape(n, ho, wo, c, kh, kw)
    # col2im: one strided slice-add per kernel offset; within one offset the output
    # positions map to distinct input pixels, so plain += is safe (no np.add.at needed).
    gxp = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            gxp[:, :, i * dh : i * dh + sh * (ho - 1) + 1 : sh,
                j * dw : j * dw + sw * (wo - 1) + 1 : sw] += gcols[..., i, j].transpose(0, 3, 1, 2)
    grad_x = np.ascontiguousarray(gxp[:, :, ph : ph + h, pw : pw + w])
    return grad_x, grad_w, grad_b


def depthwise_forward(x, weight, bias=None, stride=1, padding=0):
    """As torch.nn.functional.conv2d with groups = C_in = C_out (weight (C, 1, kH, kW)):
    each channel's windows (a strided view) against its own kernel, one einsum."""
    kh, kw = weight.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    win = sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]
    y = np.einsum("nchwij,cij->nchw", win, weight[:, 0], optimize=True)
    if bias is not None:
        y += bias[:, None, None]
    return y


def depthwise_backward(grad_y, x, weight, stride=1, padding=0):
    """(grad_x, grad_weight, grad_bias) of :func:`depthwise_forward`."""
    kh, kw = weight.shape[2:]
    n, c, h, w = x.shape
    ho, wo = grad_y.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    win = sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]
    grad_w = np.einsum("nchw,nchwij->cij", grad_y, win, optimize=True)[:, None]
    gxp = np.zeros_like(xp)
    for i in range(kh):
        for j in range(kw):
            gxp[:, :, i : i + stride * (ho - 1) + 1 : stride,
                j : j + stride * (wo - 1) + 1 : stride] += grad_y * weight[None, :, 0, i, j, None, None]
    grad_x = np.ascontiguousarray(gxp[:, :, padding : padding + h, padding : padding + w])
    return grad_x, grad_w, grad_y.sum(axis=(0, 2, 3))
