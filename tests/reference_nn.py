"""Plain float64 NumPy references for the nn family (docs/api/nn.md), from the formulas.

Nothing here is shared with the implementation:

- Philox-4x32-10 is written from the published algorithm (Salmon, Moraes, Dror, Shaw,
  "Parallel random numbers: as easy as 1, 2, 3", SC'11; Random123's philox.h): ten
  rounds of two 32x32->64 bit multiplications (multipliers 0xD2511F53, 0xCD9E8D57) with
  a Weyl key schedule (0x9E3779B9, 0xBB67AE85). It is vectorized over counters with
  uint64 NumPy arithmetic and checked against Random123's known-answer vectors
  (PHILOX_KAT below, exercised by test_nn.py).
- Dropout mask for element i of the flattened (C-order) array, as documented in
  adlkernels.nn: key = (seed & 0xffffffff, seed >> 32), counter = (i // 4 low 32 bits,
  i // 4 high 32 bits, 0, 0), u = output word i % 4, kept iff u >= round(p * 2^32).
- Everything else is the textbook formula evaluated in float64 (softmax with the row
  maximum subtracted, so that it is itself exact-ish for huge logits).
"""

from __future__ import annotations

import math

import numpy as np

# ----------------------------------------------------------------------------------
# Philox-4x32-10
# ----------------------------------------------------------------------------------

PHILOX_M0 = 0xD2511F53
PHILOX_M1 = 0xCD9E8D57
PHILOX_W0 = 0x9E3779B9
PHILOX_W1 = 0xBB67AE85
_MASK32 = 0xFFFFFFFF

# Random123 kat_vectors, philox4x32 10: (counter, key, output)
PHILOX_KAT = [
    ((0x00000000, 0x00000000, 0x00000000, 0x00000000), (0x00000000, 0x00000000),
     (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF),
     (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


def philox4x32_10_scalar(ctr, key, rounds=10):
    """One block with Python ints (the literal algorithm, for the known-answer test)."""
    c0, c1, c2, c3 = (int(v) & _MASK32 for v in ctr)
    k0, k1 = (int(v) & _MASK32 for v in key)
    for r in range(rounds):
        if r:
            k0 = (k0 + PHILOX_W0) & _MASK32
            k1 = (k1 + PHILOX_W1) & _MASK32
        p0 = PHILOX_M0 * c0
        p1 = PHILOX_M1 * c2
        hi0, lo0 = p0 >> 32, p0 & _MASK32
        hi1, lo1 = p1 >> 32, p1 & _MASK32
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return (c0, c1, c2, c3)


def philox4x32_10(ctr, key, rounds=10):
    """Vectorized: ctr a (..., 4) array of uint32 words, key a pair of ints; returns the
    (..., 4) uint32 output words."""
    c = np.asarray(ctr, dtype=np.uint64) & np.uint64(_MASK32)
    c0, c1, c2, c3 = (c[..., j].copy() for j in range(4))
    k0, k1 = int(key[0]) & _MASK32, int(key[1]) & _MASK32
    m32 = np.uint64(_MASK32)
    s32 = np.uint64(32)
    for r in range(rounds):
        if r:
            k0 = (k0 + PHILOX_W0) & _MASK32
            k1 = (k1 + PHILOX_W1) & _MASK32
        p0 = c0 * np.uint64(PHILOX_M0)  # < 2^64: no wrap-around
        p1 = c2 * np.uint64(PHILOX_M1)
        hi0, lo0 = p0 >> s32, p0 & m32
        hi1, lo1 = p1 >> s32, p1 & m32
        c0, c1, c2, c3 = hi1 ^ c1 ^ np.uint64(k0), lo1, hi0 ^ c3 ^ np.uint64(k1), lo0
    return np.stack([c0, c1, c2, c3], axis=-1).astype(np.uint32)


def dropout_uniforms(n, seed):
    """u[i] (uint32) for i in [0, n): word i % 4 of Philox(counter (i // 4) split into
    (low 32, high 32, 0, 0), key (seed low 32, seed high 32))."""
    seed = int(seed)
    key = (seed & _MASK32, seed >> 32)
    blocks = -(-n // 4)
    j = np.arange(blocks, dtype=np.uint64)
    ctr = np.zeros((blocks, 4), dtype=np.uint64)
    ctr[:, 0] = j & np.uint64(_MASK32)
    ctr[:, 1] = j >> np.uint64(32)
    return philox4x32_10(ctr, key).reshape(-1)[:n]


def dropout_threshold(p):
    """round(p * 2^32), rounding halves up (p * 2^32 is exact in double; the tests avoid
    p whose threshold is a tie)."""
    return int(math.floor(float(p) * 2.0**32 + 0.5))


def dropout_mask_ref(shape, p, seed):
    """The bool keep-mask of dropout_forward(x of this shape, p, seed=seed)."""
    n = int(np.prod(shape, dtype=np.int64))
    u = dropout_uniforms(n, seed).astype(np.uint64)
    return (u >= np.uint64(dropout_threshold(p)) if dropout_threshold(p) < 2**32
            else np.zeros(n, dtype=bool)).reshape(shape)


# ----------------------------------------------------------------------------------
# linear
# ----------------------------------------------------------------------------------


def _f64(a):
    return np.asarray(a, dtype=np.float64)


def linear_ref(x, w, b=None):
    """y[n, o] = b[o] + sum_i x[n, i] w[o, i]."""
    x, w = _f64(x), _f64(w)
    y = np.einsum("ni,oi->no", x, w)
    if b is not None:
        y = y + _f64(b)[None, :]
    return y


def linear_backward_ref(gy, x, w):
    """(grad_x, grad_w, grad_b) of sum(gy * linear_ref(x, w, b))."""
    gy, x, w = _f64(gy), _f64(x), _f64(w)
    return (np.einsum("no,oi->ni", gy, w), np.einsum("no,ni->oi", gy, x), gy.sum(axis=0))


def linear_abs_magnitudes(gy, x, w, b=None):
    """The same products on absolute values: bounds the rounding of any summation order."""
    y = linear_ref(np.abs(_f64(x)), np.abs(_f64(w)), None if b is None else np.abs(_f64(b)))
    gx, gw, gb = linear_backward_ref(np.abs(_f64(gy)), np.abs(_f64(x)), np.abs(_f64(w)))
    return y, gx, gw, gb


# ----------------------------------------------------------------------------------
# activations
# ----------------------------------------------------------------------------------


def relu_ref(x):
    """max(x, 0); NaN stays NaN."""
    x = _f64(x)
    return np.where(np.isnan(x) | (x > 0), x, 0.0)


def relu_backward_ref(gy, x):
    return np.where(_f64(x) > 0, _f64(gy), 0.0)


def leaky_relu_ref(x, slope=0.01):
    x = _f64(x)
    return np.where(x > 0, x, slope * x)


def leaky_relu_backward_ref(gy, x, slope=0.01):
    return np.where(_f64(x) > 0, _f64(gy), slope * _f64(gy))


def sigmoid_ref(x):
    """1 / (1 + exp(-x)), written stably (exp of a non-positive number only)."""
    x = _f64(x)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def sigmoid_backward_ref(gy, y):
    y = _f64(y)
    return _f64(gy) * y * (1.0 - y)


def tanh_ref(x):
    return np.tanh(_f64(x))


def tanh_backward_ref(gy, y):
    y = _f64(y)
    return _f64(gy) * (1.0 - y * y)


# ----------------------------------------------------------------------------------
# softmax
# ----------------------------------------------------------------------------------


def log_softmax_ref(x):
    """x - max - log(sum(exp(x - max))) over the last axis."""
    x = _f64(x)
    if x.shape[-1] == 0:
        return x.copy()
    m = x.max(axis=-1, keepdims=True)
    s = x - m
    return s - np.log(np.exp(s).sum(axis=-1, keepdims=True))


def softmax_ref(x):
    x = _f64(x)
    if x.shape[-1] == 0:
        return x.copy()
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def softmax_backward_ref(gy, y):
    """grad_x = y * (gy - sum(gy * y)) per row (y the forward's output)."""
    gy, y = _f64(gy), _f64(y)
    return y * (gy - (gy * y).sum(axis=-1, keepdims=True))


def log_softmax_backward_ref(gy, y):
    """grad_x = gy - exp(y) * sum(gy) per row (y the forward's output)."""
    gy, y = _f64(gy), _f64(y)
    return gy - np.exp(y) * gy.sum(axis=-1, keepdims=True)


# ----------------------------------------------------------------------------------
# losses
# ----------------------------------------------------------------------------------


def cross_entropy_ref(logits, targets, reduction="mean", ignore_index=-100):
    """(loss, grad_logits) as torch.nn.functional.cross_entropy with class indices:
    row loss logsumexp(z) - z[t] (0 for ignored rows); mean divides by the number of
    rows not ignored (NaN when there are none, gradient then 0); grad softmax - onehot
    for rows not ignored (divided by that count for mean), 0 for ignored rows."""
    z = _f64(logits)
    t = np.asarray(targets, dtype=np.int64)
    B, K = z.shape
    keep = t != ignore_index
    assert np.all((t[keep] >= 0) & (t[keep] < K))
    rows = np.zeros(B)
    grad = np.zeros((B, K))
    if B:
        ls = log_softmax_ref(z)
        idx = np.nonzero(keep)[0]
        rows[idx] = -ls[idx, t[idx]]
        grad[idx] = np.exp(ls[idx])
        grad[idx, t[idx]] -= 1.0
    count = int(keep.sum())
    if reduction == "none":
        return rows, grad
    if reduction == "sum":
        return np.float64(rows.sum()), grad
    if count == 0:
        return np.float64(np.nan), grad
    return np.float64(rows.sum() / count), grad / count


def _reduce(elems, grad, reduction):
    if reduction == "none":
        return elems, grad
    if reduction == "sum":
        return np.float64(elems.sum()), grad
    n = elems.size
    if n == 0:
        return np.float64(np.nan), grad
    return np.float64(elems.sum() / n), grad / n


def mse_ref(pred, target, reduction="mean"):
    d = _f64(pred) - _f64(target)
    return _reduce(d * d, 2.0 * d, reduction)


def l1_ref(pred, target, reduction="mean"):
    d = _f64(pred) - _f64(target)
    return _reduce(np.abs(d), np.sign(d), reduction)


def huber_ref(pred, target, delta=1.0, reduction="mean"):
    d = _f64(pred) - _f64(target)
    a = np.abs(d)
    small = a <= delta
    elems = np.where(small, 0.5 * d * d, delta * (a - 0.5 * delta))
    grad = np.where(small, d, delta * np.sign(d))
    return _reduce(elems, grad, reduction)


# ----------------------------------------------------------------------------------
# finite differences
# ----------------------------------------------------------------------------------


def numerical_grad(f, x, eps=1e-6):
    """Central differences of the scalar f at float64 x (x is restored afterwards)."""
    x = np.asarray(x, dtype=np.float64)
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        v = flat[i]
        flat[i] = v + eps
        fp = float(f(x))
        flat[i] = v - eps
        fm = float(f(x))
        flat[i] = v
        gflat[i] = (fp - fm) / (2 * eps)
    return g


# ----------------------------------------------------------------------------------
# Embedding (torch.nn.functional.embedding)
# ----------------------------------------------------------------------------------


def embedding_ref(indices, weight):
    """y[..., :] = weight[indices[...]], from the definition (one row at a time)."""
    idx = np.asarray(indices).reshape(-1)
    w = np.asarray(weight, np.float64)
    y = np.empty((idx.size, w.shape[1]))
    for p, v in enumerate(idx):
        y[p] = w[int(v)]
    return y.reshape(np.shape(indices) + (w.shape[1],))


def embedding_backward_ref(grad_y, indices, num_embeddings, padding_idx=None):
    """grad_weight[v] = the sum of grad_y's rows at the positions p with indices[p] == v, in
    float64; row padding_idx (normalized: negative counts from the end) is zero."""
    idx = np.asarray(indices).reshape(-1)
    g = np.asarray(grad_y, np.float64)
    g = g.reshape(idx.size, g.shape[-1])
    out = np.zeros((num_embeddings, g.shape[1]))
    pad = None if padding_idx is None else padding_idx % num_embeddings
    for v in range(num_embeddings):
        if v != pad:
            out[v] = g[idx == v].sum(axis=0)
    return out


def embedding_backward_sequential(grad_y, indices, num_embeddings, padding_idx=None):
    """The plain loop `for p: grad_weight[indices[p]] += grad_y[p]` on zeros, in grad_y's own
    dtype, one row at a time in position order: the float order the kernels promise."""
    idx = np.asarray(indices).reshape(-1)
    g = np.asarray(grad_y)
    g = g.reshape(idx.size, g.shape[-1])
    out = np.zeros((num_embeddings, g.shape[1]), g.dtype)
    pad = None if padding_idx is None else padding_idx % num_embeddings
    for p, v in enumerate(idx):
        if int(v) != pad:
            out[int(v)] += g[p]
    return out
