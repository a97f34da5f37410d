"""The cupy paths of the families with CUDA kernels: convolution, pooling (docs/api/conv.md,
docs/api/pool.md), the optimizer steps and clip_grad_norm (docs/api/optim.md), activations,
dropout, linear, softmax and the losses (docs/api/nn.md), batch and layer norm
(docs/api/norm.md), the LSTM, GRU and RNN cells and sequences and additive attention
(docs/api/rnn.md).

The argument checks are the CPU path's own (conv.py, pool.py); this module only runs the
CUDA kernels of the extension module ``_adlk_cuda`` on checked cupy arrays: outputs are
new C-contiguous cupy arrays on the inputs' device, every launch goes to CuPy's current
stream of that device, and raw pointers and the stream cross as integers.

Convolution GEMMs go through cuBLAS by ``cupy.matmul`` (CuPy's cuBLAS handle, on the same current
stream); im2col, col2im (a gather: no atomics), the bias, the reductions and the
pooling kernels are ours. Every result is deterministic: no floating-point atomics, and
every reduction runs in a fixed order.

Status: these kernels compile in CI but had not yet run on a GPU in this project's
tests when written, so they stay off unless ``ADLK_CUDA_UNVERIFIED=1`` is set (cupy
arrays otherwise raise RuntimeError, as before); a GPU run of
``.ci/gpu_check.sh`` turns them on for its tests.
"""

from __future__ import annotations

import math
import os

import numpy as np

from . import _adlk
from ._backend import cuda_module

# Workspace of one chunk of images (column matrix + per-image weight-gradient partials):
# the GPU conv's one tuning constant, to be tuned with bench/gpu_conv_pool.py on a GPU.
WORKSPACE_BYTES = 256 << 20


def enabled() -> bool:
    return os.environ.get("ADLK_CUDA_UNVERIFIED", "") == "1"


def _cp():
    import cupy

    return cupy


def _ptr(a) -> int:
    return 0 if a is None else int(a.data.ptr)


def _stream() -> int:
    return int(_cp().cuda.get_current_stream().ptr)


class _OnDevice:
    """Makes the arrays' device current (allocations, launches, the current stream)."""

    def __init__(self, a):
        self.device = a.device

    def __enter__(self):
        self.device.__enter__()
        return self

    def __exit__(self, *exc):
        return self.device.__exit__(*exc)


# ---- convolution ------------------------------------------------------------------------


def _conv_geom(x_shape, w_shape, stride, padding, dilation, groups):
    n, c, h, w = x_shape
    return _adlk.Conv2dGeom(N=n, C=c, H=h, W=w, C_out=w_shape[0], kernel_size=tuple(w_shape[2:4]),
                            stride=tuple(stride), padding=tuple(padding), dilation=tuple(dilation),
                            groups=groups)


def _is_pointwise(geom) -> bool:
    """1x1 kernel, stride 1, no padding: the column matrix is x itself."""
    return (geom.kernel_size, geom.stride, geom.padding) == ((1, 1), (1, 1), (0, 0))


def _chunk(geom, dtype):
    mod = cuda_module()
    itemsize = np.dtype(dtype).itemsize
    nb = max(1, min(geom.N, mod.conv2d_chunk_images(geom, itemsize, WORKSPACE_BYTES)))
    return nb, mod.conv2d_workspace_elems(geom, nb)


def conv2d_forward(x, weight, bias, stride, padding, dilation, groups, y_shape):
    cp, mod = _cp(), cuda_module()
    with _OnDevice(x):
        n, c_in = x.shape[:2]
        c_out = weight.shape[0]
        y = cp.empty(y_shape, x.dtype)
        if n == 0:
            return y
        geom = _conv_geom(x.shape, weight.shape, stride, padding, dilation, groups)
        dtype, length = x.dtype, y_shape[2] * y_shape[3]
        k_g, c_g = (c_in // groups) * weight.shape[2] * weight.shape[3], c_out // groups
        w_g = weight.reshape(groups, c_g, k_g)
        pointwise = _is_pointwise(geom)
        nb, ws_elems = _chunk(geom, x.dtype)
        ws = None if pointwise else cp.empty(ws_elems, x.dtype)
        for n0 in range(0, n, nb):
            m = min(nb, n - n0)
            if pointwise:
                cols = x[n0:n0 + m].reshape(m, groups, k_g, length)
            else:
                cols = ws[: m * groups * k_g * length].reshape(m, groups, k_g, length)
                mod.im2col(_ptr(x), _ptr(cols), geom, n0, m, dtype, _stream())
            out = y[n0:n0 + m].reshape(m, groups, c_g, length)
            cp.matmul(w_g, cols, out=out)  # (groups, c_g, k_g) x (m, groups, k_g, L)
        if bias is not None:
            y += bias.reshape(1, c_out, 1, 1)
        return y


def conv2d_backward(grad_y, x, weight, stride, padding, dilation, groups, mask):
    cp, mod = _cp(), cuda_module()
    with _OnDevice(x):
        n, c_in, h, w = x.shape
        c_out, _, kh, kw = weight.shape
        geom = _conv_geom(x.shape, weight.shape, stride, padding, dilation, groups)
        dtype, s = x.dtype, _stream
        length = grad_y.shape[2] * grad_y.shape[3]
        k_g, c_g = (c_in // groups) * kh * kw, c_out // groups
        gx = cp.empty(x.shape, x.dtype) if mask[0] else None
        gw = cp.zeros(weight.shape, x.dtype) if mask[1] else None
        gb = cp.empty((c_out,), x.dtype) if mask[2] else None
        if gb is not None:
            if n == 0:
                gb.fill(0)
            else:
                mod.channel_sums(_ptr(grad_y), _ptr(gb), n, c_out, length, dtype, s())
        if n == 0 or not (mask[0] or mask[1]):
            if gx is not None:
                gx.fill(0)
            return gx, gw, gb
        pointwise = _is_pointwise(geom)
        nb, ws_elems = _chunk(geom, x.dtype)
        ws = cp.empty(ws_elems, x.dtype)
        cols_elems = nb * groups * k_g * length
        w_t = weight.reshape(groups, c_g, k_g).transpose(0, 2, 1)  # (groups, k_g, c_g)
        for i, n0 in enumerate(range(0, n, nb)):
            m = min(nb, n - n0)
            dy = grad_y[n0:n0 + m].reshape(m, groups, c_g, length)
            if gw is not None:
                if pointwise:
                    cols = x[n0:n0 + m].reshape(m, groups, k_g, length)
                else:
                    cols = ws[: m * groups * k_g * length].reshape(m, groups, k_g, length)
                    mod.im2col(_ptr(x), _ptr(cols), geom, n0, m, dtype, s())
                partials = ws[cols_elems: cols_elems + m * c_out * k_g].reshape(m, groups, c_g, k_g)
                cp.matmul(dy, cols.transpose(0, 1, 3, 2), out=partials)
                # sum over the chunk's images in order, added to the earlier chunks' sum
                mod.sum_batches(_ptr(partials), _ptr(gw), m, c_out * k_g, i > 0, dtype, s())
            if gx is not None:
                if pointwise:
                    cp.matmul(w_t, dy, out=gx[n0:n0 + m].reshape(m, groups, k_g, length))
                else:
                    dcols = ws[: m * groups * k_g * length].reshape(m, groups, k_g, length)
                    cp.matmul(w_t, dy, out=dcols)
                    mod.col2im(_ptr(dcols), _ptr(gx), geom, n0, m, dtype, s())
        return gx, gw, gb


def im2col(x, kernel, stride, padding, dilation, out_hw):
    cp, mod = _cp(), cuda_module()
    with _OnDevice(x):
        n, c = x.shape[:2]
        cols = cp.empty((n, c * kernel[0] * kernel[1], out_hw[0] * out_hw[1]), x.dtype)
        if n:
            geom = _adlk.Conv2dGeom(N=n, C=c, H=x.shape[2], W=x.shape[3], kernel_size=tuple(kernel),
                                    stride=tuple(stride), padding=tuple(padding),
                                    dilation=tuple(dilation))
            mod.im2col(_ptr(x), _ptr(cols), geom, 0, n, x.dtype, _stream())
        return cols


def col2im(cols, channels, hw, kernel, stride, padding, dilation):
    cp, mod = _cp(), cuda_module()
    with _OnDevice(cols):
        n = cols.shape[0]
        x = cp.empty((n, channels) + tuple(hw), cols.dtype)
        if n:
            geom = _adlk.Conv2dGeom(N=n, C=channels, H=hw[0], W=hw[1], kernel_size=tuple(kernel),
                                    stride=tuple(stride), padding=tuple(padding),
                                    dilation=tuple(dilation))
            mod.col2im(_ptr(cols), _ptr(x), geom, 0, n, cols.dtype, _stream())
        return x


# ---- pooling ----------------------------------------------------------------------------


def _pool_geom(shape, k, s, p, d, ceil_mode):
    n, c, h, w = shape
    return _adlk.Pool2dGeom(N=n, C=c, H=h, W=w, kernel_size=tuple(k), stride=tuple(s),
                            padding=tuple(p), dilation=tuple(d), ceil_mode=bool(ceil_mode))


def maxpool2d_forward(x, k, s, p, d, ceil_mode, out_hw):
    cp, mod = _cp(), cuda_module()
    with _OnDevice(x):
        shape = x.shape[:2] + tuple(out_hw)
        y, idx = cp.empty(shape, x.dtype), cp.empty(shape, np.int64)
        if y.size:
            mod.maxpool2d_forward(_ptr(x), _ptr(y), _ptr(idx), _pool_geom(x.shape, k, s, p, d, ceil_mode),
                                  x.dtype, _stream())
        return y, idx


def first_bad_index(indices, dst_size) -> int:
    """Flat position of the first index outside [-1, dst_size), or -1 (synchronizes)."""
    if indices.size == 0:
        return -1
    return cuda_module().first_index_out_of_range(_ptr(indices), indices.size, dst_size, _stream())


def _check_indices(indices, plane: int, fn: str) -> None:
    bad = first_bad_index(indices, plane)
    if bad >= 0:
        raise ValueError(f"{fn}: indices: entry {bad} is outside [0, {plane}) (and not -1)")


def maxpool2d_backward(grad_y, indices, nchw, fn):
    """The index scatter of the max-pooling backward, one (n, c) plane per thread in scan
    order (the pooling geometry is not an argument, so the windows are unknown)."""
    cp, mod = _cp(), cuda_module()
    with _OnDevice(grad_y):
        plane = nchw[2] * nchw[3]
        _check_indices(indices, plane, fn)
        gx = cp.empty(nchw, grad_y.dtype)
        planes = nchw[0] * nchw[1]
        if gx.size:
            mod.maxpool2d_backward_planes(_ptr(grad_y), _ptr(indices), _ptr(gx), planes,
                                          grad_y.shape[2] * grad_y.shape[3], plane,
                                          grad_y.dtype, _stream())
        return gx


def maxpool2d_backward_window(grad_y, indices, nchw, window, fn):
    """The max-pooling backward as a gather: each input cell sums the gradients of the
    windows that cover it and chose it, in the CPU scatter's order (the same bits). Needs
    every index in its own window (checked on the device); otherwise the plane scatter."""
    mod = cuda_module()
    with _OnDevice(grad_y):
        geom = _pool_geom(nchw, *window)
        if indices.size == 0 or mod.maxpool2d_first_outside_window(_ptr(indices), geom, _stream()) >= 0:
            return maxpool2d_backward(grad_y, indices, nchw, fn)
        gx = _cp().empty(nchw, grad_y.dtype)
        mod.maxpool2d_backward(_ptr(grad_y), _ptr(indices), _ptr(gx), geom, grad_y.dtype, _stream())
        return gx


def max_unpool2d(x, indices, hw, fn):
    cp, mod = _cp(), cuda_module()
    with _OnDevice(x):
        plane = hw[0] * hw[1]
        _check_indices(indices, plane, fn)
        y = cp.empty(x.shape[:2] + tuple(hw), x.dtype)
        if y.size:
            mod.max_unpool2d_planes(_ptr(x), _ptr(indices), _ptr(y), x.shape[0] * x.shape[1],
                                    x.shape[2] * x.shape[3], plane, x.dtype, _stream())
        return y


def avgpool2d_forward(x, k, s, p, ceil_mode, cip, out_hw):
    cp, mod = _cp(), cuda_module()
    with _OnDevice(x):
        y = cp.empty(x.shape[:2] + tuple(out_hw), x.dtype)
        if y.size:
            mod.avgpool2d_forward(_ptr(x), _ptr(y), _pool_geom(x.shape, k, s, p, (1, 1), ceil_mode),
                                  bool(cip), x.dtype, _stream())
        return y


def avgpool2d_backward(grad_y, nchw, k, s, p, ceil_mode, cip):
    cp, mod = _cp(), cuda_module()
    with _OnDevice(grad_y):
        gx = cp.empty(nchw, grad_y.dtype)
        if gx.size:
            mod.avgpool2d_backward(_ptr(grad_y), _ptr(gx), _pool_geom(nchw, k, s, p, (1, 1), ceil_mode),
                                   bool(cip), grad_y.dtype, _stream())
        return gx


# ---- optimizers ------------------------------------------------------------------------------


def _ptrs(arrays):
    return None if arrays is None else [_ptr(a) for a in arrays]


def list_step(fn, params, grads, states, dtype, hyper):
    """One fused optimizer step on lists of cupy arrays: ``fn`` is the kernel's name
    ("adam_step", ...), ``states`` its state lists by keyword (None: unused) and ``hyper``
    its scalars by keyword, as the CPU module's function of the same name takes them. The
    kernels take the tensors in chunks (one launch each); the binding checks pointers and
    the aliasing rule first."""
    if not params:
        return
    cp, mod = _cp(), cuda_module()
    with _OnDevice(params[0]):
        grads = [cp.ascontiguousarray(g) for g in grads]  # only read: any layout
        getattr(mod, fn)(params=_ptrs(params), grads=_ptrs(grads),
                         **{k: _ptrs(v) for k, v in states.items()},
                         sizes=[int(p.size) for p in params], **hyper, dtype=dtype,
                         stream=_stream())


def clip_grad_norm(grads, max_norm, norm_type, dtype, nonfinite_error):
    """The total norm of the grads as a 0-d cupy array of their dtype, and the grads scaled
    on the device (no round trip to the host, unless ``nonfinite_error`` is a callable to
    raise when the total is not finite: that check reads the total)."""
    cp, mod = _cp(), cuda_module()
    with _OnDevice(grads[0]):
        sizes, ptrs = [int(g.size) for g in grads], _ptrs(grads)
        partials = cp.empty(mod.total_norm_partials(sizes), np.float64)
        total = cp.empty((), np.float64)
        mod.total_norm(ptrs, sizes, norm_type, _ptr(partials), _ptr(total), dtype, _stream())
        out = total.astype(dtype)
        if nonfinite_error is not None and not bool(cp.isfinite(out)):
            raise nonfinite_error()
        mod.clip_scale(ptrs, sizes, _ptr(total), float(max_norm), dtype, _stream())
        return out


# ---- activations, dropout -------------------------------------------------------------------


def activation_forward(x, act, slope):
    cp, mod = _cp(), cuda_module()
    with _OnDevice(x):
        x = cp.ascontiguousarray(x)
        y = cp.empty(x.shape, x.dtype)
        mod.activation_forward(_ptr(x), _ptr(y), x.size, act, slope, x.dtype, _stream())
        return y


def activation_backward(grad_y, saved, act, slope):
    cp, mod = _cp(), cuda_module()
    with _OnDevice(grad_y):
        grad_y, saved = cp.ascontiguousarray(grad_y), cp.ascontiguousarray(saved)
        gx = cp.empty(grad_y.shape, grad_y.dtype)
        mod.activation_backward(_ptr(grad_y), _ptr(saved), _ptr(gx), grad_y.size, act, slope,
                                grad_y.dtype, _stream())
        return gx


def dropout_forward(x, p, seed):
    cp, mod = _cp(), cuda_module()
    with _OnDevice(x):
        x = cp.ascontiguousarray(x)
        y, mask = cp.empty(x.shape, x.dtype), cp.empty(x.shape, np.bool_)
        mod.dropout_forward(_ptr(x), _ptr(y), _ptr(mask), x.size, p, seed, x.dtype, _stream())
        return y, mask


def dropout_backward(grad_y, mask, p):
    cp, mod = _cp(), cuda_module()
    with _OnDevice(grad_y):
        grad_y, mask = cp.ascontiguousarray(grad_y), cp.ascontiguousarray(mask)
        gx = cp.empty(grad_y.shape, grad_y.dtype)
        mod.dropout_backward(_ptr(grad_y), _ptr(mask), _ptr(gx), grad_y.size, p, grad_y.dtype,
                             _stream())
        return gx


# ---- linear ------------------------------------------------------------------------------------


def _bias_grad(mod, g, has_bias):
    """Column sums of g (R, N) by the deterministic channel_sums kernel, or None."""
    if not has_bias:
        return None
    rows, n = g.shape
    out = _cp().empty(n, g.dtype)
    mod.channel_sums(_ptr(g), _ptr(out), rows, n, 1, g.dtype, _stream())
    return out


def _projection(x2, w, *biases):
    """x2 (R, K) @ w.T plus the biases that are not None (summed first, as the CPU)."""
    out = _cp().matmul(x2, w.T)
    present = [b for b in biases if b is not None]
    if present:
        out += present[0] + present[1] if len(present) == 2 else present[0]
    return out


def linear_forward(x, weight, bias):
    """y = x @ weight.T (cuBLAS through cupy.matmul) + bias."""
    with _OnDevice(x):
        return _projection(x, weight, bias)


def linear_backward(grad_y, x, weight, mask):
    """grad_x = grad_y @ weight and grad_weight = grad_y.T @ x by cuBLAS; grad_bias by the
    deterministic channel_sums kernel (grad_y's columns summed in double)."""
    cp, mod = _cp(), cuda_module()
    with _OnDevice(x):
        gx = cp.matmul(grad_y, weight) if mask[0] else None
        gw = cp.matmul(grad_y.T, x) if mask[1] else None
        return gx, gw, _bias_grad(mod, grad_y, mask[2])


# ---- recurrent cells: cuBLAS GEMMs around the fused step kernels -----------------------------------


def lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse, y):
    """(h_n, c_n, gates, cells) as _adlk.lstm_forward's; y (T, B, H) receives the outputs
    (a C-contiguous array; any other is written by a copy at the end). The input projection
    of every step is one GEMM; each step is a recurrent GEMM and the fused step kernel."""
    cp, mod = _cp(), cuda_module()
    with _OnDevice(x):
        steps, bsz, n_in = x.shape
        hid = h0.shape[1]
        gates = _projection(x.reshape(steps * bsz, n_in), w_ih, b_ih, b_hh).reshape(steps, bsz, 4 * hid)
        cells = cp.empty((steps, bsz, hid), x.dtype)
        out = y if y.flags.c_contiguous else cp.empty(y.shape, y.dtype)
        rec = cp.empty((bsz, 4 * hid), x.dtype)
        for s in range(steps):
            t = steps - 1 - s if reverse else s
            tp = t + 1 if reverse else t - 1
            h_prev, c_prev = (h0, c0) if s == 0 else (out[tp], cells[tp])
            cp.matmul(h_prev, w_hh.T, out=rec)
            mod.lstm_step(_ptr(gates[t]), _ptr(rec), _ptr(c_prev), _ptr(cells[t]), _ptr(out[t]), bsz, hid,
                          hid, x.dtype, _stream())
        if out is not y:
            y[...] = out
        last = 0 if reverse else steps - 1
        h_n = out[last].copy() if steps else h0.copy()
        c_n = cells[last].copy() if steps else c0.copy()
        return h_n, c_n, gates, cells


def lstm_backward(grad_y, grad_h_n, grad_c_n, x, h0, c0, w_ih, w_hh, has_bias, gates, cells, y,
                  reverse):
    """(grad_x, grad_h0, grad_c0, grad_w_ih, grad_w_hh, grad_b) as _adlk.lstm_backward's: the
    recurrence (a step kernel and one GEMM per step), then the weight gradients as GEMMs over
    all steps and the bias gradient as deterministic column sums."""
    cp, mod = _cp(), cuda_module()
    with _OnDevice(x):
        steps, bsz, n_in = x.shape
        hid = h0.shape[1]
        g4 = 4 * hid
        dG = cp.empty((steps, bsz, g4), x.dtype)
        dh = cp.zeros((bsz, hid), x.dtype) if grad_h_n is None else grad_h_n.copy()
        dc = cp.zeros((bsz, hid), x.dtype) if grad_c_n is None else grad_c_n.copy()
        for s in range(steps):
            t = s if reverse else steps - 1 - s  # the forward's order, reversed
            c_prev = c0 if s == steps - 1 else cells[t + 1 if reverse else t - 1]
            gy = None if grad_y is None else grad_y[t]
            mod.lstm_step_backward(_ptr(gates[t]), _ptr(c_prev), _ptr(cells[t]), _ptr(gy), _ptr(dh), _ptr(dc),
                                   _ptr(dG[t]), bsz, hid, hid, x.dtype, _stream())
            cp.matmul(dG[t], w_hh, out=dh)
        rows = dG.reshape(steps * bsz, g4)
        gx = cp.matmul(rows, w_ih).reshape(steps, bsz, n_in)
        gw_ih = cp.matmul(rows.T, x.reshape(steps * bsz, n_in))
        if steps == 0:
            gw_hh = cp.zeros((g4, hid), x.dtype)
        else:
            # the first step in running order saw h0; every other one its predecessor's y
            first = steps - 1 if reverse else 0
            gw_hh = cp.matmul(dG[first].T, h0)
            if steps > 1:
                d_rest = dG[: steps - 1] if reverse else dG[1:]
                h_rest = y[1:] if reverse else y[: steps - 1]
                gw_hh += cp.matmul(d_rest.reshape(-1, g4).T, h_rest.reshape(-1, hid))
        return gx, dh, dc, gw_ih, gw_hh, _bias_grad(mod, rows, has_bias)


def gru_cell_forward(x, h, w_ih, w_hh, b_ih, b_hh):
    """(h_next, gates, hn) as _adlk.gru_cell_forward's."""
    cp, mod = _cp(), cuda_module()
    with _OnDevice(x):
        bsz, hid = h.shape
        gates, gh = _projection(x, w_ih, b_ih), _projection(h, w_hh, b_hh)
        hn, h_next = cp.empty((bsz, hid), x.dtype), cp.empty((bsz, hid), x.dtype)
        mod.gru_step(_ptr(gates), _ptr(gh), _ptr(h), _ptr(hn), _ptr(h_next), bsz, hid, x.dtype, _stream())
        return h_next, gates, hn


def gru_cell_backward(grad_h_next, x, h, w_ih, w_hh, gates, hn, has_b_ih, has_b_hh):
    cp, mod = _cp(), cuda_module()
    with _OnDevice(x):
        bsz, hid = h.shape
        dgi, dgh = cp.empty((bsz, 3 * hid), x.dtype), cp.empty((bsz, 3 * hid), x.dtype)
        gh = cp.empty((bsz, hid), x.dtype)
        mod.gru_step_backward(_ptr(gates), _ptr(hn), _ptr(h), _ptr(grad_h_next), _ptr(dgi), _ptr(dgh), _ptr(gh),
                              bsz, hid, x.dtype, _stream())
        gh += cp.matmul(dgh, w_hh)
        return (cp.matmul(dgi, w_ih), gh, cp.matmul(dgi.T, x), cp.matmul(dgh.T, h),
                _bias_grad(mod, dgi, has_b_ih), _bias_grad(mod, dgh, has_b_hh))


def _cell_activation(relu):
    return _adlk.Activation.relu if relu else _adlk.Activation.tanh


def rnn_cell_forward(x, h, w_ih, w_hh, b_ih, b_hh, relu):
    """h_next = act(x W_ih^T + b_ih + b_hh + h W_hh^T) by two GEMMs and the activation kernel."""
    cp, mod = _cp(), cuda_module()
    with _OnDevice(x):
        pre = _projection(x, w_ih, b_ih, b_hh)
        pre += cp.matmul(h, w_hh.T)
        h_next = cp.empty(pre.shape, x.dtype)
        mod.activation_forward(_ptr(pre), _ptr(h_next), pre.size, _cell_activation(relu), 0.0, x.dtype,
                               _stream())
        return h_next


def rnn_cell_backward(grad_h_next, x, h, w_ih, w_hh, h_next, relu, has_bias):
    cp, mod = _cp(), cuda_module()
    with _OnDevice(x):
        da = cp.empty(h_next.shape, x.dtype)
        # relu's derivative from the output: h_next > 0 exactly where the input was
        mod.activation_backward(_ptr(grad_h_next), _ptr(h_next), _ptr(da), da.size, _cell_activation(relu),
                                0.0, x.dtype, _stream())
        return (cp.matmul(da, w_ih), cp.matmul(da, w_hh), cp.matmul(da.T, x), cp.matmul(da.T, h),
                _bias_grad(mod, da, has_bias))


def gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, reverse, y):
    """(h_n, gates, hn) as _adlk.gru_forward's; y as lstm_forward's. The input projection
    of every step is one GEMM; each step is a recurrent GEMM (with b_hh) and gru_step."""
    cp, mod = _cp(), cuda_module()
    with _OnDevice(x):
        steps, bsz, n_in = x.shape
        hid = h0.shape[1]
        gates = _projection(x.reshape(steps * bsz, n_in), w_ih, b_ih).reshape(steps, bsz, 3 * hid)
        hn = cp.empty((steps, bsz, hid), x.dtype)
        out = y if y.flags.c_contiguous else cp.empty(y.shape, y.dtype)
        gh = cp.empty((bsz, 3 * hid), x.dtype)
        for s in range(steps):
            t = steps - 1 - s if reverse else s
            h_prev = h0 if s == 0 else out[t + 1 if reverse else t - 1]
            cp.matmul(h_prev, w_hh.T, out=gh)
            if b_hh is not None:
                gh += b_hh
            mod.gru_step(_ptr(gates[t]), _ptr(gh), _ptr(h_prev), _ptr(hn[t]), _ptr(out[t]), bsz, hid, x.dtype,
                         _stream())
        if out is not y:
            y[...] = out
        h_n = out[0 if reverse else steps - 1].copy() if steps else h0.copy()
        return h_n, gates, hn


def gru_backward(grad_y, grad_h_n, x, h0, w_ih, w_hh, gates, hn, y, reverse, need_b_ih, need_b_hh):
    """(grad_x, grad_h0, grad_w_ih, grad_w_hh, grad_b_ih, grad_b_hh) as _adlk.gru_backward's:
    per step gru_step_backward and one GEMM, then the weight gradients over all steps."""
    cp, mod = _cp(), cuda_module()
    with _OnDevice(x):
        steps, bsz, n_in = x.shape
        hid = h0.shape[1]
        g3 = 3 * hid
        dgi, dgh = cp.empty((steps, bsz, g3), x.dtype), cp.empty((steps, bsz, g3), x.dtype)
        dh = cp.zeros((bsz, hid), x.dtype) if grad_h_n is None else grad_h_n.copy()
        direct = cp.empty((bsz, hid), x.dtype)
        y = cp.ascontiguousarray(y)  # the step kernel reads h_{t-1} as contiguous (B, H) rows
        for s in range(steps):
            t = s if reverse else steps - 1 - s  # the forward's order, reversed
            h_prev = h0 if s == steps - 1 else y[t + 1 if reverse else t - 1]
            d = dh if grad_y is None else dh + grad_y[t]
            mod.gru_step_backward(_ptr(gates[t]), _ptr(hn[t]), _ptr(h_prev), _ptr(d), _ptr(dgi[t]), _ptr(dgh[t]),
                                  _ptr(direct), bsz, hid, x.dtype, _stream())
            cp.matmul(dgh[t], w_hh, out=dh)
            dh += direct
        rows_i, rows_h = dgi.reshape(steps * bsz, g3), dgh.reshape(steps * bsz, g3)
        gx = cp.matmul(rows_i, w_ih).reshape(steps, bsz, n_in)
        gw_ih = cp.matmul(rows_i.T, x.reshape(steps * bsz, n_in))
        return (gx, dh, gw_ih, _recurrent_wgrad(dgh, h0, y, reverse), _bias_grad(mod, rows_i, need_b_ih),
                _bias_grad(mod, rows_h, need_b_hh))


def _recurrent_wgrad(dG, h0, y, reverse):
    """sum over steps of dG[t].T @ h_{t-1}: the first step in running order saw h0, every
    other one its predecessor's y."""
    steps, _, g = dG.shape
    hid = h0.shape[1]
    if steps == 0:
        return _cp().zeros((g, hid), h0.dtype)
    gw = _cp().matmul(dG[steps - 1 if reverse else 0].T, h0)
    if steps > 1:
        d_rest = dG[: steps - 1] if reverse else dG[1:]
        h_rest = y[1:] if reverse else y[: steps - 1]
        gw += _cp().matmul(d_rest.reshape(-1, g).T, h_rest.reshape(-1, hid))
    return gw


def rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, relu, reverse, y):
    """h_n as _adlk.rnn_forward's, y as lstm_forward's: the input projection (both biases)
    of every step in one GEMM, then per step a GEMM and the activation kernel."""
    cp, mod = _cp(), cuda_module()
    with _OnDevice(x):
        steps, bsz, n_in = x.shape
        hid = h0.shape[1]
        pre = _projection(x.reshape(steps * bsz, n_in), w_ih, b_ih, b_hh).reshape(steps, bsz, hid)
        out = y if y.flags.c_contiguous else cp.empty(y.shape, y.dtype)
        act = _cell_activation(relu)
        for s in range(steps):
            t = steps - 1 - s if reverse else s
            h_prev = h0 if s == 0 else out[t + 1 if reverse else t - 1]
            pre[t] += cp.matmul(h_prev, w_hh.T)
            mod.activation_forward(_ptr(pre[t]), _ptr(out[t]), bsz * hid, act, 0.0, x.dtype, _stream())
        if out is not y:
            y[...] = out
        return out[0 if reverse else steps - 1].copy() if steps else h0.copy()


def rnn_backward(grad_y, grad_h_n, x, h0, w_ih, w_hh, y, relu, reverse, has_bias):
    """(grad_x, grad_h0, grad_w_ih, grad_w_hh, grad_b) as _adlk.rnn_backward's."""
    cp, mod = _cp(), cuda_module()
    with _OnDevice(x):
        steps, bsz, n_in = x.shape
        hid = h0.shape[1]
        da = cp.empty((steps, bsz, hid), x.dtype)
        dh = cp.zeros((bsz, hid), x.dtype) if grad_h_n is None else grad_h_n.copy()
        act = _cell_activation(relu)
        y_c = cp.ascontiguousarray(y)  # the kernel reads (B, H) rows contiguously
        for s in range(steps):
            t = s if reverse else steps - 1 - s
            d = dh if grad_y is None else dh + grad_y[t]
            # relu's derivative from the output: y > 0 exactly where the input was
            mod.activation_backward(_ptr(d), _ptr(y_c[t]), _ptr(da[t]), bsz * hid, act, 0.0, x.dtype, _stream())
            cp.matmul(da[t], w_hh, out=dh)
        rows = da.reshape(steps * bsz, hid)
        gx = cp.matmul(rows, w_ih).reshape(steps, bsz, n_in)
        gw_ih = cp.matmul(rows.T, x.reshape(steps * bsz, n_in))
        return gx, dh, gw_ih, _recurrent_wgrad(da, h0, y_c, reverse), _bias_grad(mod, rows, has_bias)


def attention_forward(query, keys, w_query, w_key, v, mask):
    """(context, weights, tanh_act) as _adlk.attention_forward's: the two projections by
    cuBLAS, the tanh scores and the masked softmax and context by our kernels."""
    cp, mod = _cp(), cuda_module()
    with _OnDevice(query):
        steps, bsz, dk = keys.shape
        att = w_query.shape[0]
        qp = cp.matmul(query, w_query.T)
        e = cp.matmul(keys.reshape(steps * bsz, dk), w_key.T)
        weights, context = cp.empty((bsz, steps), query.dtype), cp.empty((bsz, dk), query.dtype)
        mod.attention_scores(_ptr(e), _ptr(qp), _ptr(v), _ptr(weights), bsz, steps, att, query.dtype, _stream())
        mod.attention_softmax_context(_ptr(weights), _ptr(mask), _ptr(keys), _ptr(context), bsz, steps, dk,
                                      query.dtype, _stream())
        return context, weights, e.reshape(steps, bsz, att)


def attention_backward(grad_context, grad_weights, query, keys, w_query, w_key, v, tanh_act, weights):
    """(grad_query, grad_keys, grad_w_query, grad_w_key, grad_v): the pointwise part by our
    kernels, the products by cuBLAS, the sum over t of the query side by channel_sums."""
    cp, mod = _cp(), cuda_module()
    with _OnDevice(query):
        steps, bsz, dk = keys.shape
        att = w_query.shape[0]
        rows = steps * bsz
        dscore = cp.empty((bsz, steps), query.dtype)
        grad_keys = cp.empty((rows, dk), query.dtype)
        da = cp.empty((rows, att), query.dtype)
        mod.attention_backward_pointwise(_ptr(grad_context), _ptr(grad_weights), _ptr(keys), _ptr(weights),
                                         _ptr(tanh_act), _ptr(v), _ptr(dscore), _ptr(grad_keys), _ptr(da), bsz,
                                         steps, dk, att, query.dtype, _stream())
        grad_keys += cp.matmul(da, w_key)
        grad_w_key = cp.matmul(da.T, keys.reshape(rows, dk))
        grad_v = cp.matmul(cp.ascontiguousarray(dscore.T).reshape(rows), tanh_act.reshape(rows, att))
        dqp = cp.empty((bsz, att), query.dtype)  # sum over t of da[t, b]
        mod.channel_sums(_ptr(da), _ptr(dqp), steps, bsz * att, 1, query.dtype, _stream())
        return (cp.matmul(dqp, w_query), grad_keys.reshape(steps, bsz, dk), cp.matmul(dqp.T, query),
                grad_w_key, grad_v)


# ---- batch norm, layer norm --------------------------------------------------------------------


def _bn_ncs(x):
    return x.shape[0], x.shape[1], math.prod(x.shape[2:])


def batchnorm_forward(x, weight, bias, running_mean, running_var, training, momentum, eps):
    """(y, save_mean, save_invstd) as the CPU's; running_mean/var (C-contiguous when
    training) are updated in place."""
    cp, mod = _cp(), cuda_module()
    with _OnDevice(x):
        n, c, s = _bn_ncs(x)
        y = cp.empty(x.shape, x.dtype)
        save_mean, save_invstd = cp.empty(c, x.dtype), cp.empty(c, x.dtype)
        ws = cp.empty(mod.batchnorm_workspace(n, c, s), np.float64)
        mod.batchnorm_forward(_ptr(x), _ptr(weight), _ptr(bias), _ptr(running_mean), _ptr(running_var),
                              _ptr(y), _ptr(save_mean), _ptr(save_invstd), _ptr(ws), n, c, s, training,
                              momentum, eps, x.dtype, _stream())
        return y, save_mean, save_invstd


def batchnorm_backward(grad_y, x, weight, save_mean, save_invstd, training):
    cp, mod = _cp(), cuda_module()
    with _OnDevice(x):
        n, c, s = _bn_ncs(x)
        gx, gw, gb = cp.empty(x.shape, x.dtype), cp.empty(c, x.dtype), cp.empty(c, x.dtype)
        ws = cp.empty(mod.batchnorm_workspace(n, c, s), np.float64)
        mod.batchnorm_backward(_ptr(grad_y), _ptr(x), _ptr(weight), _ptr(save_mean), _ptr(save_invstd),
                               _ptr(gx), _ptr(gw), _ptr(gb), _ptr(ws), n, c, s, training, x.dtype,
                               _stream())
        return gx, gw, gb


def layernorm_forward(x, weight, bias, eps):
    """(y, mean, rstd) of layer norm over the rows of x (rows, D), as _adlk's."""
    cp, mod = _cp(), cuda_module()
    with _OnDevice(x):
        rows, d = x.shape
        y, mean, rstd = cp.empty(x.shape, x.dtype), cp.empty(rows, x.dtype), cp.empty(rows, x.dtype)
        mod.layernorm_forward(_ptr(x), _ptr(weight), _ptr(bias), _ptr(y), _ptr(mean), _ptr(rstd), rows, d,
                              eps, x.dtype, _stream())
        return y, mean, rstd


def layernorm_backward(grad_y, x, mean, rstd, weight):
    cp, mod = _cp(), cuda_module()
    with _OnDevice(x):
        rows, d = x.shape
        gx, gw, gb = cp.empty(x.shape, x.dtype), cp.empty(d, x.dtype), cp.empty(d, x.dtype)
        ws = cp.empty(mod.layernorm_workspace(rows, d), np.float64)
        mod.layernorm_backward(_ptr(grad_y), _ptr(x), _ptr(mean), _ptr(rstd), _ptr(weight), _ptr(gx),
                               _ptr(gw), _ptr(gb), _ptr(ws), rows, d, x.dtype, _stream())
        return gx, gw, gb


# ---- softmax, losses -------------------------------------------------------------------------


def softmax_forward(x, log):
    cp, mod = _cp(), cuda_module()
    with _OnDevice(x):
        x = cp.ascontiguousarray(x)
        y = cp.empty(x.shape, x.dtype)
        if x.size:
            k = x.shape[-1]
            mod.softmax_forward(_ptr(x), _ptr(y), x.size // k, k, log, x.dtype, _stream())
        return y


def softmax_backward(grad_y, y, log):
    cp, mod = _cp(), cuda_module()
    with _OnDevice(y):
        grad_y, y = cp.ascontiguousarray(grad_y), cp.ascontiguousarray(y)
        gx = cp.empty(y.shape, y.dtype)
        if y.size:
            k = y.shape[-1]
            mod.softmax_backward(_ptr(grad_y), _ptr(y), _ptr(gx), y.size // k, k, log, y.dtype, _stream())
        return gx


def softmax_cross_entropy(logits, targets, reduction, ignore_index):
    """(loss, grad): the targets are checked on the device first (one round trip: the
    first invalid one raises ValueError as on the CPU, and the count of the rows that are
    not ignored sets the mean's scale); the loss stays on the device."""
    cp, mod = _cp(), cuda_module()
    with _OnDevice(logits):
        logits, targets = cp.ascontiguousarray(logits), cp.ascontiguousarray(targets)
        b, k = logits.shape
        kept = targets != ignore_index
        bad = kept & ((targets < 0) | (targets >= k))
        if b and bool(bad.any()):
            i = int(cp.argmax(bad))
            raise ValueError(f"softmax_cross_entropy: targets: value {int(targets[i])} at [{i}] "
                             f"is outside [0, {k})")
        count = int(kept.sum()) if b else 0
        mean = reduction is _adlk.Reduction.mean
        grad = cp.empty(logits.shape, logits.dtype)
        row_loss = cp.empty(b, np.float64)
        mod.softmax_cross_entropy(_ptr(logits), _ptr(targets), _ptr(grad), _ptr(row_loss), b, k,
                                  ignore_index, (1.0 / count if count else 0.0) if mean else 1.0,
                                  logits.dtype, _stream())
        if reduction is _adlk.Reduction.none:
            return row_loss.astype(logits.dtype), grad
        total = cp.empty((), np.float64)
        mod.sum_doubles(_ptr(row_loss), b, float(count) if mean else 1.0, _ptr(total), _stream())
        return total.astype(logits.dtype), grad


def elementwise_loss(pred, target, kind, reduction, delta):
    cp, mod = _cp(), cuda_module()
    with _OnDevice(pred):
        pred, target = cp.ascontiguousarray(pred), cp.ascontiguousarray(target)
        n = pred.size
        grad = cp.empty(pred.shape, pred.dtype)
        per_element = reduction is _adlk.Reduction.none
        loss = cp.empty(pred.shape, pred.dtype) if per_element else None
        partials = cp.empty(mod.loss_partials(n), np.float64)
        total = cp.empty((), np.float64)
        mod.elementwise_loss(_ptr(pred), _ptr(target), _ptr(grad), _ptr(loss), _ptr(partials),
                             _ptr(total), n, kind, reduction, delta, pred.dtype, _stream())
        return (loss if per_element else total.astype(pred.dtype)), grad


# ---- embedding -------------------------------------------------------------------------------


def _check_embedding_indices(flat, num_embeddings, fn):
    """ValueError for the first index outside [0, num_embeddings), as the CPU's (one round
    trip to the host, before any kernel)."""
    cp = _cp()
    if flat.size == 0:
        return
    bad = (flat < 0) | (flat >= num_embeddings)
    if bool(bad.any()):
        i = int(cp.argmax(bad))
        raise ValueError(f"{fn}: indices: value {int(flat[i])} at [{i}] is outside [0, {num_embeddings})")


def embedding_forward(indices, weight):
    cp, mod = _cp(), cuda_module()
    with _OnDevice(weight):
        v, d = weight.shape
        flat = indices.reshape(-1)
        _check_embedding_indices(flat, v, "embedding_forward")
        y = cp.empty(tuple(indices.shape) + (d,), weight.dtype)
        if y.size:
            mod.embedding_forward(_ptr(flat), _ptr(weight), _ptr(y), flat.size, v, d,
                                  flat.dtype == np.int32, weight.dtype, _stream())
        return y


def embedding_backward(grad_y, indices, num_embeddings, padding_idx):
    """The positions sorted by index with cupy's argsort (stable: ascending positions within
    an index), then the kernels' group offsets and per-element sums in that order."""
    cp, mod = _cp(), cuda_module()
    with _OnDevice(grad_y):
        flat = indices.reshape(-1)
        _check_embedding_indices(flat, num_embeddings, "embedding_backward")
        d = grad_y.shape[-1]
        gw = cp.empty((num_embeddings, d), grad_y.dtype)
        if gw.size:
            order = cp.argsort(flat, kind="stable").astype(np.int64, copy=False)
            offsets = cp.empty(num_embeddings + 1, np.int64)
            mod.embedding_backward(_ptr(grad_y), _ptr(flat), _ptr(order), _ptr(offsets), _ptr(gw),
                                   flat.size, num_embeddings, d,
                                   -1 if padding_idx is None else padding_idx, flat.dtype == np.int32,
                                   grad_y.dtype, _stream())
        return gw
