"""Plain NumPy references for the pooling family (docs/api/pool.md), from the definitions.

Every function loops explicitly over output windows (oh, ow) and, inside a window,
over kernel offsets (kh outer, kw inner: the scan order), vectorized only over the
batch and channel axes. Nothing here is shared with the implementation.

- max pooling is a selection: the reference returns the selected values exactly (in
  float64, which represents every float32 exactly) and the int64 flat indices h*W + w.
- average pooling and the gradients are computed in float64.
"""

from __future__ import annotations

import numpy as np


def pair(v):
    """An int or a pair -> a pair of ints."""
    if isinstance(v, (tuple, list)):
        assert len(v) == 2
        return int(v[0]), int(v[1])
    return int(v), int(v)


def pool_out_size(size, k, s, p, d=1, ceil_mode=False):
    """PyTorch's pooling output size along one dimension.

    out = floor((size + 2p - d(k-1) - 1 + (ceil_mode ? s-1 : 0)) / s) + 1, and with
    ceil_mode a last window that would start in the right/bottom padding (or beyond)
    is dropped: if (out-1)*s >= size + p then out -= 1.  Python's // is a floor
    division, also for negative numerators (PyTorch's div_rtn)."""
    num = size + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)
    out = num // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def pool_geometry(hw, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """((kH, kW), (sH, sW), (pH, pW), (dH, dW), (Ho, Wo)) with stride None -> kernel."""
    H, W = hw
    kH, kW = pair(kernel_size)
    sH, sW = (kH, kW) if stride is None else pair(stride)
    pH, pW = pair(padding)
    dH, dW = pair(dilation)
    Ho = pool_out_size(H, kH, sH, pH, dH, ceil_mode)
    Wo = pool_out_size(W, kW, sW, pW, dW, ceil_mode)
    return (kH, kW), (sH, sW), (pH, pW), (dH, dW), (Ho, Wo)


def geometry_is_valid(hw, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """The rules of the spec: k, s, d >= 1; 0 <= p <= k // 2; output size >= 1."""
    (kH, kW), (sH, sW), (pH, pW), (dH, dW), (Ho, Wo) = pool_geometry(
        hw, kernel_size, stride, padding, dilation, ceil_mode)
    return (min(kH, kW, sH, sW, dH, dW) >= 1 and 0 <= pH <= kH // 2 and 0 <= pW <= kW // 2
            and Ho >= 1 and Wo >= 1)


# ----------------------------------------------------------------------------------
# max pooling
# ----------------------------------------------------------------------------------


def maxpool2d_ref(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """(y float64, indices int64).

    Window (oh, ow) reads rows oh*sH - pH + kh*dH and columns ow*sW - pW + kw*dW,
    kh outer, kw inner. Cells outside the input (padding) are skipped. The running max
    starts at -inf with index = the window's first in-range cell (-1 if it has none);
    a cell replaces it when value > max or value is NaN."""
    x = np.asarray(x)
    N, C, H, W = x.shape
    (kH, kW), (sH, sW), (pH, pW), (dH, dW), (Ho, Wo) = pool_geometry(
        (H, W), kernel_size, stride, padding, dilation, ceil_mode)
    assert Ho >= 1 and Wo >= 1
    xf = x.astype(np.float64)
    y = np.empty((N, C, Ho, Wo), dtype=np.float64)
    idx = np.empty((N, C, Ho, Wo), dtype=np.int64)
    for oh in range(Ho):
        for ow in range(Wo):
            best = np.full((N, C), -np.inf)
            best_i = None
            for kh in range(kH):
                h = oh * sH - pH + kh * dH
                if not 0 <= h < H:
                    continue
                for kw in range(kW):
                    w = ow * sW - pW + kw * dW
                    if not 0 <= w < W:
                        continue
                    flat = h * W + w
                    if best_i is None:  # the first in-range cell
                        best_i = np.full((N, C), flat, dtype=np.int64)
                    v = xf[:, :, h, w]
                    take = (v > best) | np.isnan(v)
                    best = np.where(take, v, best)
                    best_i = np.where(take, flat, best_i)
            y[:, :, oh, ow] = best
            idx[:, :, oh, ow] = -1 if best_i is None else best_i
    return y, idx


def maxpool2d_backward_ref(grad_y, indices, input_size):
    """grad_x (float64): zeros plus grad_y scatter-added at each index of its plane
    (index -1: skipped). np.add.at over flattened planes."""
    H, W = (input_size[-2], input_size[-1])
    gy = np.asarray(grad_y, dtype=np.float64)
    N, C = gy.shape[:2]
    assert indices.shape == gy.shape
    gx = np.zeros((N, C, H * W), dtype=np.float64)
    for n in range(N):
        for c in range(C):
            i = indices[n, c].ravel()
            g = gy[n, c].ravel()
            keep = i != -1
            assert ((i[keep] >= 0) & (i[keep] < H * W)).all()
            np.add.at(gx[n, c], i[keep], g[keep])
    return gx.reshape(N, C, H, W)


def max_unpool2d_ref(x, indices, output_size):
    """y (x's dtype): zeros except y[n, c].flat[indices[n, c, i, j]] = x[n, c, i, j],
    written in row-major order over (i, j) so the last duplicate wins; -1 skipped."""
    H, W = (output_size[-2], output_size[-1])
    x = np.asarray(x)
    N, C, h, w = x.shape
    assert indices.shape == x.shape
    y = np.zeros((N, C, H * W), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(h):
                for j in range(w):
                    k = int(indices[n, c, i, j])
                    if k == -1:
                        continue
                    assert 0 <= k < H * W
                    y[n, c, k] = x[n, c, i, j]
    return y.reshape(N, C, H, W)


# ----------------------------------------------------------------------------------
# average pooling
# ----------------------------------------------------------------------------------


def _avg_window(o, s, p, k, size):
    """(start, end, pool_size part) of one window along one dim, PyTorch's rule:
    start = o*s - p, end = min(start + k, size + p); the unclamped extent counts for
    count_include_pad; then start, end are clamped to [0, size]."""
    start = o * s - p
    end = min(start + k, size + p)
    extent = end - start
    return max(start, 0), min(end, size), extent


def avgpool_divisors_ref(hw, kernel_size, stride=None, padding=0, ceil_mode=False,
                         count_include_pad=True):
    """divisor[oh, ow] and the clamped window bounds, per PyTorch."""
    H, W = hw
    (kH, kW), (sH, sW), (pH, pW), _, (Ho, Wo) = pool_geometry(
        hw, kernel_size, stride, padding, 1, ceil_mode)
    div = np.zeros((Ho, Wo), dtype=np.int64)
    bounds = {}
    for oh in range(Ho):
        hs, he, eh = _avg_window(oh, sH, pH, kH, H)
        for ow in range(Wo):
            ws, we, ew = _avg_window(ow, sW, pW, kW, W)
            div[oh, ow] = eh * ew if count_include_pad else (he - hs) * (we - ws)
            bounds[oh, ow] = (hs, he, ws, we)
    return div, bounds


def avgpool2d_ref(x, kernel_size, stride=None, padding=0, ceil_mode=False,
                  count_include_pad=True):
    """y[n, c, oh, ow] = sum of the in-range cells of the window / divisor (float64)."""
    x = np.asarray(x, dtype=np.float64)
    N, C, H, W = x.shape
    div, bounds = avgpool_divisors_ref((H, W), kernel_size, stride, padding, ceil_mode,
                                       count_include_pad)
    Ho, Wo = div.shape
    assert Ho >= 1 and Wo >= 1
    y = np.zeros((N, C, Ho, Wo), dtype=np.float64)
    for (oh, ow), (hs, he, ws, we) in bounds.items():
        if he <= hs or we <= ws:
            continue  # no in-range cell (PyTorch writes 0)
        total = np.zeros((N, C))
        for h in range(hs, he):
            for w in range(ws, we):
                total += x[:, :, h, w]
        y[:, :, oh, ow] = total / div[oh, ow]
    return y


def avgpool2d_backward_ref(grad_y, input_size, kernel_size, stride=None, padding=0,
                           ceil_mode=False, count_include_pad=True):
    """Each in-range cell of window (oh, ow) gets grad_y[..., oh, ow] / divisor."""
    gy = np.asarray(grad_y, dtype=np.float64)
    H, W = (input_size[-2], input_size[-1])
    N, C = gy.shape[:2]
    div, bounds = avgpool_divisors_ref((H, W), kernel_size, stride, padding, ceil_mode,
                                       count_include_pad)
    assert gy.shape[2:] == div.shape
    gx = np.zeros((N, C, H, W), dtype=np.float64)
    for (oh, ow), (hs, he, ws, we) in bounds.items():
        for h in range(hs, he):
            for w in range(ws, we):
                gx[:, :, h, w] += gy[:, :, oh, ow] / div[oh, ow]
    return gx


def maxpool2d_sparse_ref(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """maxpool2d_ref for any geometry, a kernel of 2^30 included: a window's in-range
    cells are found from the input's cells (h = oh*sH - pH + kh*dH solved for kh), in
    scan order (kh, then kw, ascending), never by looping over the kernel."""
    x = np.asarray(x)
    N, C, H, W = x.shape
    (kH, kW), (sH, sW), (pH, pW), (dH, dW), (Ho, Wo) = pool_geometry(
        (H, W), kernel_size, stride, padding, dilation, ceil_mode)

    def cells(o, size, k, s, p, d):
        out = []
        for i in range(size):
            t, r = divmod(i - o * s + p, d)
            if r == 0 and 0 <= t < k:
                out.append(i)
        return out  # ascending i is ascending t

    xf = x.astype(np.float64)
    y = np.empty((N, C, Ho, Wo))
    idx = np.empty((N, C, Ho, Wo), dtype=np.int64)
    for oh in range(Ho):
        rows = cells(oh, H, kH, sH, pH, dH)
        for ow in range(Wo):
            flat = [h * W + w for h in rows for w in cells(ow, W, kW, sW, pW, dW)]
            best = np.full((N, C), -np.inf)
            best_i = np.full((N, C), flat[0] if flat else -1, dtype=np.int64)
            for f in flat:
                v = xf[:, :, f // W, f % W]
                take = (v > best) | np.isnan(v)
                best, best_i = np.where(take, v, best), np.where(take, f, best_i)
            y[:, :, oh, ow], idx[:, :, oh, ow] = best, best_i
    return y, idx
