"""Plain NumPy normalization, loss, dropout and dense layers: the baseline adlkernels'
nn / norm kernels are measured against.

What one writes without a compiled kernel, straight from the formulas: whole-array
NumPy expressions (each one a pass over memory and, mostly, a temporary), reductions
through ``mean`` / ``var`` / ``sum`` (pairwise summation in the input's dtype), matrix
products through ``@`` (NumPy's BLAS). Semantics as adlkernels / PyTorch:

- batch norm: statistics per channel (axis 1) over every other axis; the biased
  variance normalizes, the unbiased one updates running_var; returns (y, mean, invstd)
  as ``ak.batchnorm_forward``.
- layer norm over the last axis; returns (y, mean, rstd) with keepdims statistics.
- softmax cross-entropy with class indices, mean reduction, fused with the gradient of
  the loss with respect to the logits (``ak.softmax_cross_entropy``).
- dropout: inverted (kept values scaled by 1 / (1 - p)). :func:`dropout_forward` draws
  its mask from NumPy's default generator (what one would write; a different stream
  from adlkernels'); :func:`philox_dropout_mask` reproduces adlkernels' documented mask
  exactly (Philox-4x32-10 keyed by the seed, counter (i // 4, 0, 0, 0), word i % 4,
  kept when u >= round(p * 2^32)) and is what the benchmark checks ak's mask against.
- linear: y = x @ W^T + b.
- embedding: ``weight[indices]`` (a fancy-index gather) and its weight gradient by
  ``np.add.at`` (an unbuffered scatter-add over the positions).

Every function works in the dtype of its inputs (float32 in the benchmark, float64 for
the correctness reference).
"""

from __future__ import annotations

import numpy as np


# ---- batch norm ------------------------------------------------------------------------


def _bn_axes(x):
    return (0,) + tuple(range(2, x.ndim))


def _bn_shape(x):
    return (1, x.shape[1]) + (1,) * (x.ndim - 2)


def batchnorm_forward(x, weight, bias, running_mean, running_var, momentum=0.1, eps=1e-5):
    """Training-mode batch norm; updates running_mean / running_var in place when given.
    Returns (y, save_mean (C,), save_invstd (C,))."""
    axes, shape = _bn_axes(x), _bn_shape(x)
    n = x.size // x.shape[1]
    mean = x.mean(axis=axes)
    var = x.var(axis=axes)  # biased (ddof=0): what normalizes
    invstd = 1 / np.sqrt(var + x.dtype.type(eps))
    y = (x - mean.reshape(shape)) * (invstd * weight).reshape(shape) + bias.reshape(shape)
    if running_mean is not None:
        running_mean *= 1 - momentum
        running_mean += momentum * mean
    if running_var is not None:
        running_var *= 1 - momentum
        running_var += momentum * var * (n / (n - 1))
    return y, mean, invstd


def batchnorm_backward(grad_y, x, weight, mean, invstd):
    """(grad_x, grad_weight, grad_bias) of training-mode batch norm, from the forward's
    batch mean and invstd."""
    axes, shape = _bn_axes(x), _bn_shape(x)
    n = x.size // x.shape[1]
    xhat = (x - mean.reshape(shape)) * invstd.reshape(shape)
    grad_bias = grad_y.sum(axis=axes)
    grad_weight = (grad_y * xhat).sum(axis=axes)
    # grad_x = w * invstd * (grad_y - mean(grad_y) - xhat * mean(grad_y * xhat))
    grad_x = grad_y - (grad_bias / n).reshape(shape) - xhat * (grad_weight / n).reshape(shape)
    grad_x *= (weight * invstd).reshape(shape)
    return grad_x, grad_weight, grad_bias


# ---- layer norm ------------------------------------------------------------------------


def layernorm_forward(x, weight, bias, eps=1e-5):
    """Layer norm over the last axis -> (y, mean, rstd), statistics with keepdims."""
    mean = x.mean(axis=-1, keepdims=True)
    var = x.var(axis=-1, keepdims=True)
    rstd = 1 / np.sqrt(var + x.dtype.type(eps))
    y = (x - mean) * rstd
    y *= weight
    y += bias
    return y, mean, rstd


def layernorm_backward(grad_y, x, mean, rstd, weight):
    """(grad_x, grad_weight, grad_bias) of :func:`layernorm_forward`."""
    xhat = (x - mean) * rstd
    rows = grad_y.reshape(-1, grad_y.shape[-1])
    grad_bias = rows.sum(axis=0)
    grad_weight = (rows * xhat.reshape(rows.shape)).sum(axis=0)
    g = grad_y * weight  # gradient with respect to xhat
    grad_x = g - g.mean(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True)
    grad_x *= rstd
    return grad_x, grad_weight, grad_bias


# ---- softmax cross-entropy ---------------------------------------------------------------


def softmax_cross_entropy(logits, targets):
    """Mean cross-entropy of softmax(logits) (B, K) against int class indices (B,) ->
    (loss 0-d, grad_logits (B, K))."""
    b = logits.shape[0]
    rows = np.arange(b)
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    s = e.sum(axis=1, keepdims=True)
    loss = (np.log(s[:, 0]) - z[rows, targets]).mean()
    grad = e
    grad /= s
    grad[rows, targets] -= 1
    grad /= b
    return np.asarray(loss, logits.dtype), grad


# ---- dropout ---------------------------------------------------------------------------


def dropout_forward(x, p, rng):
    """Inverted dropout with a mask from the NumPy Generator rng -> (y, mask bool)."""
    mask = rng.random(x.shape, dtype=np.float32) >= p
    y = x * mask
    y *= x.dtype.type(1 / (1 - p))
    return y, mask


_PHILOX_M = (0xD2511F53, 0xCD9E8D57)
_PHILOX_W = (0x9E3779B9, 0xBB67AE85)


def philox4x32_10(counter, key):
    """Philox-4x32-10 (Salmon et al., SC'11; Random123's philox4x32 with 10 rounds).

    counter: four uint32 arrays (broadcastable), key: two ints. Returns the four uint32
    output words."""
    c0, c1, c2, c3 = (np.asarray(c, np.uint32) for c in counter)
    k0, k1 = int(key[0]) & 0xFFFFFFFF, int(key[1]) & 0xFFFFFFFF
    m0, m1 = np.uint64(_PHILOX_M[0]), np.uint64(_PHILOX_M[1])
    for r in range(10):
        if r:
            k0, k1 = (k0 + _PHILOX_W[0]) & 0xFFFFFFFF, (k1 + _PHILOX_W[1]) & 0xFFFFFFFF
        p0 = c0.astype(np.uint64) * m0
        p1 = c2.astype(np.uint64) * m1
        hi0, lo0 = (p0 >> np.uint64(32)).astype(np.uint32), p0.astype(np.uint32)
        hi1, lo1 = (p1 >> np.uint64(32)).astype(np.uint32), p1.astype(np.uint32)
        c0, c1, c2, c3 = hi1 ^ c1 ^ np.uint32(k0), lo1, hi0 ^ c3 ^ np.uint32(k1), lo0
    return c0, c1, c2, c3


def philox_dropout_mask(n, p, seed):
    """adlkernels' dropout mask for the n elements of a flattened array (the API's
    documented generator): element i is kept when word i % 4 of Philox-4x32-10 with key
    (seed & 0xffffffff, seed >> 32) and counter (i // 4, 0, 0, 0) is >= round(p * 2^32)."""
    blocks = (n + 3) // 4
    if blocks > 2**32:
        raise ValueError("philox_dropout_mask: more than 2^34 elements")
    ctr = np.arange(blocks, dtype=np.uint32)
    zero = np.zeros(1, np.uint32)
    words = philox4x32_10((ctr, zero, zero, zero), (seed & 0xFFFFFFFF, seed >> 32))
    u = np.stack(np.broadcast_arrays(*words), axis=1).reshape(-1)[:n]
    threshold = round(p * 2.0**32)
    if threshold >= 2**32:  # p = 1 (or within 2^-33 of it): nothing kept
        return np.zeros(n, np.bool_)
    return u >= np.uint32(threshold)


# ---- linear ----------------------------------------------------------------------------


def linear_forward(x, weight, bias):
    """x (B, I) @ weight (O, I)^T + bias (O,)."""
    y = x @ weight.T
    y += bias
    return y


def linear_backward(grad_y, x, weight):
    """(grad_x, grad_weight, grad_bias) of :func:`linear_forward`."""
    return grad_y @ weight, grad_y.T @ x, grad_y.sum(axis=0)


# ---- embedding -------------------------------------------------------------------------


def embedding_forward(indices, weight):
    """weight (V, D)[indices] -> indices.shape + (D,)."""
    return weight[indices]


def embedding_backward(grad_y, indices, num_embeddings):
    """grad_weight (V, D): grad_y's rows added at their indices."""
    out = np.zeros((num_embeddings, grad_y.shape[-1]), grad_y.dtype)
    np.add.at(out, indices.reshape(-1), grad_y.reshape(-1, grad_y.shape[-1]))
    return out
