"""Plain float64 NumPy references for the convolution family, from the definitions.

Nothing here uses im2col + GEMM: convolutions are sums over kernel offsets (kh, kw) of
strided slices of the zero-padded input, contracted over channels; unfold/fold are
explicit loops over every (channel, kernel offset, output position). Everything is
computed in float64 whatever the input dtype.

Also holds the comparison helper shared by the test modules.
"""

from __future__ import annotations

import numpy as np

# ----------------------------------------------------------------------------------
# tolerances and comparison
# ----------------------------------------------------------------------------------

# (rtol, atol) per dtype. rtol is relative to a per-element magnitude (by default
# |reference|, ideally the same computation on absolute values, which bounds the
# rounding error of any summation order); atol is scaled by the largest magnitude.
TOLERANCES = {
    np.dtype(np.float32): (1e-4, 1e-5),
    np.dtype(np.float64): (1e-10, 1e-12),
}


def tolerance(dtype):
    return TOLERANCES[np.dtype(dtype)]


def assert_close(got, ref, dtype, magnitude=None, what="result"):
    """got (of dtype, shape of ref) within the dtype's tolerance of the float64 ref."""
    dtype = np.dtype(dtype)
    assert isinstance(got, np.ndarray), f"{what}: expected numpy array, got {type(got)}"
    assert got.dtype == dtype, f"{what}: dtype {got.dtype}, expected {dtype}"
    assert got.shape == ref.shape, f"{what}: shape {got.shape}, expected {ref.shape}"
    if ref.size == 0:
        return
    rtol, atol = tolerance(dtype)
    mag = np.abs(ref) if magnitude is None else np.abs(np.asarray(magnitude, dtype=np.float64))
    scale = max(1.0, float(mag.max()))
    err = np.abs(got.astype(np.float64) - ref)
    bound = rtol * mag + atol * scale
    bad = ~(err <= bound)  # also catches NaN
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {ref.size} elements out of tolerance; first at "
            f"{idx}: got {got[idx]!r}, expected {ref[idx]!r} (bound {bound[idx]:.3g}); "
            f"max error {float(err.max()):.3g}"
        )


# ----------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------


def pair(v):
    """An int or a pair -> a pair of ints."""
    if isinstance(v, (tuple, list)):
        assert len(v) == 2
        return int(v[0]), int(v[1])
    return int(v), int(v)


def pad_hw(x, ph, pw):
    """Zero-pad the last two axes of x (float64 copy)."""
    n, c, h, w = x.shape
    out = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=np.float64)
    out[:, :, ph:ph + h, pw:pw + w] = x
    return out


def out_size(size, k, s, p, d):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


# ----------------------------------------------------------------------------------
# conv2d
# ----------------------------------------------------------------------------------


def conv2d_ref(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """y[n, o, i, j] = b[o] + sum_{c in group(o), kh, kw}
    w[o, c, kh, kw] * xpad[n, c, i*sH + kh*dH, j*sW + kw*dW]."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    sH, sW = pair(stride)
    pH, pW = pair(padding)
    dH, dW = pair(dilation)
    N, C, H, W = x.shape
    O, Cg, kH, kW = w.shape
    assert C == Cg * groups and O % groups == 0
    Og = O // groups
    Ho, Wo = out_size(H, kH, sH, pH, dH), out_size(W, kW, sW, pW, dW)
    assert Ho >= 1 and Wo >= 1
    xp = pad_hw(x, pH, pW)
    y = np.zeros((N, O, Ho, Wo), dtype=np.float64)
    for g in range(groups):
        xg = xp[:, g * Cg:(g + 1) * Cg]
        wg = w[g * Og:(g + 1) * Og]
        for kh in range(kH):
            for kw in range(kW):
                h0, w0 = kh * dH, kw * dW
                # patch[n, c, i, j] = xpad[n, c, i*sH + h0, j*sW + w0]
                patch = xg[:, :, h0:h0 + sH * (Ho - 1) + 1:sH, w0:w0 + sW * (Wo - 1) + 1:sW]
                assert patch.shape == (N, Cg, Ho, Wo)
                y[:, g * Og:(g + 1) * Og] += np.einsum("nchw,oc->nohw", patch, wg[:, :, kh, kw])
    if b is not None:
        y += np.asarray(b, dtype=np.float64)[None, :, None, None]
    return y


def conv2d_backward_ref(gy, x, w, stride=1, padding=0, dilation=1, groups=1):
    """(grad_x, grad_w, grad_b) of sum(gy * conv2d_ref(x, w, b)), from the definition:
    every term w[o, c, kh, kw] * xpad[n, c, i*sH + kh*dH, j*sW + kw*dW] of y[n, o, i, j]
    sends gy[n, o, i, j] * w[o, c, kh, kw] to that xpad element and
    gy[n, o, i, j] * xpad[...] to w[o, c, kh, kw]."""
    gy = np.asarray(gy, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    sH, sW = pair(stride)
    pH, pW = pair(padding)
    dH, dW = pair(dilation)
    N, C, H, W = x.shape
    O, Cg, kH, kW = w.shape
    Og = O // groups
    Ho, Wo = out_size(H, kH, sH, pH, dH), out_size(W, kW, sW, pW, dW)
    assert gy.shape == (N, O, Ho, Wo)
    xp = pad_hw(x, pH, pW)
    gxp = np.zeros_like(xp)
    gw = np.zeros((O, Cg, kH, kW), dtype=np.float64)
    for g in range(groups):
        cs, os_ = slice(g * Cg, (g + 1) * Cg), slice(g * Og, (g + 1) * Og)
        for kh in range(kH):
            for kw in range(kW):
                h0, w0 = kh * dH, kw * dW
                hs = slice(h0, h0 + sH * (Ho - 1) + 1, sH)
                ws = slice(w0, w0 + sW * (Wo - 1) + 1, sW)
                # scatter w * gy back onto the input positions this offset read
                gxp[:, cs, hs, ws] += np.einsum("nohw,oc->nchw", gy[:, os_], w[os_, :, kh, kw])
                # weight gradient: x patch times gy, summed over n, i, j
                gw[os_, :, kh, kw] = np.einsum("nohw,nchw->oc", gy[:, os_], xp[:, cs, hs, ws])
    gx = gxp[:, :, pH:pH + H, pW:pW + W].copy()
    gb = gy.sum(axis=(0, 2, 3))
    return gx, gw, gb


# ----------------------------------------------------------------------------------
# conv1d (written separately, not through conv2d_ref)
# ----------------------------------------------------------------------------------


def conv1d_ref(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """y[n, o, i] = b[o] + sum_{c in group(o), k} w[o, c, k] * xpad[n, c, i*s + k*d]."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    N, C, L = x.shape
    O, Cg, K = w.shape
    Og = O // groups
    Lo = out_size(L, K, stride, padding, dilation)
    xp = np.zeros((N, C, L + 2 * padding))
    xp[:, :, padding:padding + L] = x
    y = np.zeros((N, O, Lo))
    for g in range(groups):
        cs, os_ = slice(g * Cg, (g + 1) * Cg), slice(g * Og, (g + 1) * Og)
        for k in range(K):
            # patch[n, c, i] = xpad[n, c, i*s + k*d]
            patch = xp[:, cs, k * dilation:k * dilation + stride * (Lo - 1) + 1:stride]
            y[:, os_] += np.einsum("ncl,oc->nol", patch, w[os_, :, k])
    if b is not None:
        y += np.asarray(b, dtype=np.float64)[None, :, None]
    return y


def conv1d_backward_ref(gy, x, w, stride=1, padding=0, dilation=1, groups=1):
    gy = np.asarray(gy, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    N, C, L = x.shape
    O, Cg, K = w.shape
    Og = O // groups
    Lo = out_size(L, K, stride, padding, dilation)
    assert gy.shape == (N, O, Lo)
    xp = np.zeros((N, C, L + 2 * padding))
    xp[:, :, padding:padding + L] = x
    gxp = np.zeros_like(xp)
    gw = np.zeros(w.shape)
    for g in range(groups):
        cs, os_ = slice(g * Cg, (g + 1) * Cg), slice(g * Og, (g + 1) * Og)
        for k in range(K):
            ls = slice(k * dilation, k * dilation + stride * (Lo - 1) + 1, stride)
            gxp[:, cs, ls] += np.einsum("nol,oc->ncl", gy[:, os_], w[os_, :, k])
            gw[os_, :, k] = np.einsum("nol,ncl->oc", gy[:, os_], xp[:, cs, ls])
    return gxp[:, :, padding:padding + L].copy(), gw, gy.sum(axis=(0, 2))


# ----------------------------------------------------------------------------------
# unfold / fold (explicit loops)
# ----------------------------------------------------------------------------------


def unfold_ref(x, kernel_size, stride=1, padding=0, dilation=1):
    """cols[n, (c*kH + kh)*kW + kw, oh*Wo + ow] = xpad[n, c, oh*sH + kh*dH, ow*sW + kw*dW].

    Returned in x's dtype (a pure copy, so exact)."""
    kH, kW = pair(kernel_size)
    sH, sW = pair(stride)
    pH, pW = pair(padding)
    dH, dW = pair(dilation)
    N, C, H, W = x.shape
    Ho, Wo = out_size(H, kH, sH, pH, dH), out_size(W, kW, sW, pW, dW)
    xp = np.zeros((N, C, H + 2 * pH, W + 2 * pW), dtype=x.dtype)
    xp[:, :, pH:pH + H, pW:pW + W] = x
    cols = np.zeros((N, C * kH * kW, Ho * Wo), dtype=x.dtype)
    for c in range(C):
        for kh in range(kH):
            for kw in range(kW):
                r = (c * kH + kh) * kW + kw
                for oh in range(Ho):
                    for ow in range(Wo):
                        cols[:, r, oh * Wo + ow] = xp[:, c, oh * sH + kh * dH, ow * sW + kw * dW]
    return cols


def fold_ref(cols, output_size, kernel_size, stride=1, padding=0, dilation=1):
    """x[n, c, h, w] = sum of cols[n, (c*kH + kh)*kW + kw, oh*Wo + ow] over every
    (kh, kw, oh, ow) with oh*sH - pH + kh*dH == h and ow*sW - pW + kw*dW == w (float64)."""
    H, W = pair(output_size)
    kH, kW = pair(kernel_size)
    sH, sW = pair(stride)
    pH, pW = pair(padding)
    dH, dW = pair(dilation)
    cols = np.asarray(cols, dtype=np.float64)
    N, R, Lc = cols.shape
    C = R // (kH * kW)
    Ho, Wo = out_size(H, kH, sH, pH, dH), out_size(W, kW, sW, pW, dW)
    assert R == C * kH * kW and Lc == Ho * Wo
    xp = np.zeros((N, C, H + 2 * pH, W + 2 * pW))
    for c in range(C):
        for kh in range(kH):
            for kw in range(kW):
                r = (c * kH + kh) * kW + kw
                for oh in range(Ho):
                    for ow in range(Wo):
                        xp[:, c, oh * sH + kh * dH, ow * sW + kw * dW] += cols[:, r, oh * Wo + ow]
    return xp[:, :, pH:pH + H, pW:pW + W].copy()


def window_count_ref(output_size, kernel_size, stride=1, padding=0, dilation=1):
    """count[h, w]: how many (kernel offset, output position) pairs read pixel (h, w)."""
    H, W = pair(output_size)
    kH, kW = pair(kernel_size)
    sH, sW = pair(stride)
    pH, pW = pair(padding)
    dH, dW = pair(dilation)
    Ho, Wo = out_size(H, kH, sH, pH, dH), out_size(W, kW, sW, pW, dW)
    count = np.zeros((H, W), dtype=np.int64)
    for kh in range(kH):
        for kw in range(kW):
            for oh in range(Ho):
                for ow in range(Wo):
                    h, w = oh * sH - pH + kh * dH, ow * sW - pW + kw * dW
                    if 0 <= h < H and 0 <= w < W:
                        count[h, w] += 1
    return count


# ----------------------------------------------------------------------------------
# sparse forms for any stride, padding and dilation (huge ones included)
# ----------------------------------------------------------------------------------
#
# The references above build the zero-padded input and loop over every kernel offset,
# which is impossible for a padding or kernel of 2^30. These read the same definitions
# from the other side: only the (output position, kernel offset, input cell) triples
# whose cell exists contribute anything, and along one axis they are found by solving
# cell = o*s - p + t*d for t, for each output position o and each input cell. They cost
# (output size) x (input size) per axis, whatever the geometry.


def window_taps(size, k, s, p, d):
    """Output size along one axis and the triples (o, t, i) with i = o*s - p + t*d in
    [0, size) and t < k, ordered by o then t (scan order within a window)."""
    n_out = out_size(size, k, s, p, d)
    taps = []
    for o in range(n_out):
        for i in range(size):
            t, r = divmod(i - o * s + p, d)
            if r == 0 and 0 <= t < k:
                taps.append((o, t, i))
    return n_out, taps


def _taps_2d(hw, kernel_size, stride, padding, dilation):
    (H, W), (kH, kW), (sH, sW) = hw, pair(kernel_size), pair(stride)
    (pH, pW), (dH, dW) = pair(padding), pair(dilation)
    Ho, th = window_taps(H, kH, sH, pH, dH)
    Wo, tw = window_taps(W, kW, sW, pW, dW)
    return (kH, kW), (Ho, Wo), th, tw


def unfold_sparse_ref(x, kernel_size, stride=1, padding=0, dilation=1):
    """unfold_ref for any geometry (x's dtype, exact)."""
    N, C, H, W = x.shape
    (kH, kW), (Ho, Wo), th, tw = _taps_2d((H, W), kernel_size, stride, padding, dilation)
    cols = np.zeros((N, C, kH, kW, Ho, Wo), dtype=x.dtype)
    for oh, kh, h in th:
        for ow, kw, w in tw:
            cols[:, :, kh, kw, oh, ow] = x[:, :, h, w]
    return cols.reshape(N, C * kH * kW, Ho * Wo)


def fold_sparse_ref(cols, output_size, kernel_size, stride=1, padding=0, dilation=1):
    """fold_ref for any geometry (float64)."""
    H, W = pair(output_size)
    (kH, kW), (Ho, Wo), th, tw = _taps_2d((H, W), kernel_size, stride, padding, dilation)
    N, C = cols.shape[0], cols.shape[1] // (kH * kW)
    c6 = np.asarray(cols, dtype=np.float64).reshape(N, C, kH, kW, Ho, Wo)
    x = np.zeros((N, c6.shape[1], H, W))
    for oh, kh, h in th:
        for ow, kw, w in tw:
            x[:, :, h, w] += c6[:, :, kh, kw, oh, ow]
    return x


def conv2d_sparse_ref(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """conv2d_ref for any geometry (float64)."""
    x, w = np.asarray(x, dtype=np.float64), np.asarray(w, dtype=np.float64)
    N, C, H, W = x.shape
    O, Cg = w.shape[:2]
    Og = O // groups
    _, (Ho, Wo), th, tw = _taps_2d((H, W), w.shape[2:], stride, padding, dilation)
    y = np.zeros((N, O, Ho, Wo))
    for g in range(groups):
        xg, wg = x[:, g * Cg:(g + 1) * Cg], w[g * Og:(g + 1) * Og]
        for oh, kh, h in th:
            for ow, kw, ww in tw:
                y[:, g * Og:(g + 1) * Og, oh, ow] += xg[:, :, h, ww] @ wg[:, :, kh, kw].T
    if b is not None:
        y += np.asarray(b, dtype=np.float64)[None, :, None, None]
    return y


def conv2d_backward_sparse_ref(gy, x, w, stride=1, padding=0, dilation=1, groups=1):
    """conv2d_backward_ref for any geometry (float64)."""
    gy = np.asarray(gy, dtype=np.float64)
    x, w = np.asarray(x, dtype=np.float64), np.asarray(w, dtype=np.float64)
    N, C, H, W = x.shape
    O, Cg = w.shape[:2]
    Og = O // groups
    _, _, th, tw = _taps_2d((H, W), w.shape[2:], stride, padding, dilation)
    gx, gw = np.zeros(x.shape), np.zeros(w.shape)
    for g in range(groups):
        cs, os_ = slice(g * Cg, (g + 1) * Cg), slice(g * Og, (g + 1) * Og)
        for oh, kh, h in th:
            for ow, kw, ww in tw:
                gx[:, cs, h, ww] += gy[:, os_, oh, ow] @ w[os_, :, kh, kw]
                gw[os_, :, kh, kw] += gy[:, os_, oh, ow].T @ x[:, cs, h, ww]
    return gx, gw, gy.sum(axis=(0, 2, 3))
