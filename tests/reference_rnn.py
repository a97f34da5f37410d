"""Plain float64 NumPy references for the recurrent family (docs/api/rnn.md).

Written from the textbook equations, one time step at a time (a Python loop over t),
nothing fused and nothing shared with the implementation:

- LSTM (PyTorch gate order i, f, g, o): c' = f*c + i*g, h' = o*tanh(c').
- GRU (PyTorch's r, z, n): n = tanh(W_in x + b_in + r*(W_hn h + b_hn)),
  h' = (1 - z)*n + z*h.
- Elman RNN cell: h' = act(W_ih x + b_ih + W_hh h + b_hh), act tanh or relu.
- GRU and RNN sequences: the cell applied at t = 0 .. T-1 (or T-1 .. 0 for reverse),
  y[t] the hidden state after position t.
- additive attention: score[b, t] = v . tanh(w_query @ query[b] + w_key @ keys[t, b]),
  masked softmax over t (masked weights exactly 0), context = sum_t w[b, t] keys[t, b].

Gradients: ``numerical_grad`` (central differences in float64 of any scalar function)
is the primary check; the ``*_backward_ref`` functions are hand-written chain rules,
step by step, used where finite differences would be too slow (larger shapes, float32
comparisons). The tests check those against finite differences as well.
Everything is computed in float64 whatever the input dtype.
"""

from __future__ import annotations

import numpy as np


def f64(a):
    return None if a is None else np.asarray(a, dtype=np.float64)


def sigmoid(z):
    """1 / (1 + exp(-z)); exp overflowing to inf for very negative z gives exactly 0."""
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-z))


def _affine(x, w, b):
    """x (B, n) @ w.T (m, n) + b (m,) or None, in float64."""
    y = f64(x) @ f64(w).T
    if b is not None:
        y = y + f64(b)
    return y


# ----------------------------------------------------------------------------------
# finite differences
# ----------------------------------------------------------------------------------


def numerical_grad(f, arrays, index, eps=1e-5):
    """d f(*arrays) / d arrays[index] by central differences, in float64.

    ``f`` maps the (float64 copies of the) arrays to a scalar; None entries stay None.
    Every element of arrays[index] is perturbed by +-eps in turn.
    """
    arrays = [None if a is None else np.array(a, dtype=np.float64) for a in arrays]
    target = arrays[index]
    grad = np.zeros_like(target)
    for idx in np.ndindex(target.shape):
        old = target[idx]
        target[idx] = old + eps
        fp = float(f(*arrays))
        target[idx] = old - eps
        fm = float(f(*arrays))
        target[idx] = old
        grad[idx] = (fp - fm) / (2.0 * eps)
    return grad


def functional(outputs, cotangents):
    """sum_k <cotangents[k], outputs[k]>, skipping None cotangents (a zero gradient)."""
    total = 0.0
    for out, g in zip(outputs, cotangents):
        if g is not None:
            total += float(np.sum(f64(g) * f64(out)))
    return total


# ----------------------------------------------------------------------------------
# LSTM
# ----------------------------------------------------------------------------------


def lstm_cell_ref(x, h, c, w_ih, w_hh, b_ih=None, b_hh=None):
    """One step: (h_next, c_next), float64."""
    hid = np.shape(h)[1]
    pre = _affine(x, w_ih, b_ih) + _affine(h, w_hh, b_hh)
    i = sigmoid(pre[:, 0 * hid:1 * hid])
    f = sigmoid(pre[:, 1 * hid:2 * hid])
    g = np.tanh(pre[:, 2 * hid:3 * hid])
    o = sigmoid(pre[:, 3 * hid:4 * hid])
    c_next = f * f64(c) + i * g
    h_next = o * np.tanh(c_next)
    return h_next, c_next


def lstm_ref(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, reverse=False):
    """A whole sequence: (y (T, B, H), h_n, c_n). reverse runs t = T-1 .. 0 and y[t]
    is the output at position t."""
    x = f64(x)
    steps = x.shape[0]
    h, c = f64(h0).copy(), f64(c0).copy()
    y = np.zeros((steps, h.shape[0], h.shape[1]))
    order = range(steps - 1, -1, -1) if reverse else range(steps)
    for t in order:
        h, c = lstm_cell_ref(x[t], h, c, w_ih, w_hh, b_ih, b_hh)
        y[t] = h
    return y, h, c


def lstm_backward_ref(grad_y, grad_h_n, grad_c_n, x, h0, c0, w_ih, w_hh, b_ih=None,
                      b_hh=None, reverse=False):
    """Backpropagation through time by hand: (gx, gh0, gc0, gw_ih, gw_hh, gb_ih, gb_hh)
    of sum(grad_y*y) + sum(grad_h_n*h_n) + sum(grad_c_n*c_n); None cotangents are zero,
    a None bias gets a None gradient."""
    x, h0, c0, w_ih, w_hh = map(f64, (x, h0, c0, w_ih, w_hh))
    steps, bsz, _ = x.shape
    hid = h0.shape[1]
    order = list(range(steps - 1, -1, -1)) if reverse else list(range(steps))
    # forward, keeping every step's values
    saved = {}
    h, c = h0.copy(), c0.copy()
    for t in order:
        pre = _affine(x[t], w_ih, b_ih) + _affine(h, w_hh, b_hh)
        i = sigmoid(pre[:, :hid])
        f = sigmoid(pre[:, hid:2 * hid])
        g = np.tanh(pre[:, 2 * hid:3 * hid])
        o = sigmoid(pre[:, 3 * hid:])
        c_new = f * c + i * g
        saved[t] = (h, c, i, f, g, o, c_new)
        h, c = o * np.tanh(c_new), c_new
    # backward, in the opposite order
    gx = np.zeros_like(x)
    gw_ih, gw_hh = np.zeros_like(w_ih), np.zeros_like(w_hh)
    gb = np.zeros(4 * hid)
    dh = np.zeros((bsz, hid)) if grad_h_n is None else f64(grad_h_n).copy()
    dc = np.zeros((bsz, hid)) if grad_c_n is None else f64(grad_c_n).copy()
    for t in reversed(order):
        h_prev, c_prev, i, f, g, o, c_new = saved[t]
        if grad_y is not None:
            dh = dh + f64(grad_y)[t]
        tc = np.tanh(c_new)
        do = dh * tc
        dc = dc + dh * o * (1.0 - tc * tc)
        di, df, dg = dc * g, dc * c_prev, dc * i
        dpre = np.concatenate([di * i * (1 - i), df * f * (1 - f), dg * (1 - g * g),
                               do * o * (1 - o)], axis=1)
        gx[t] = dpre @ w_ih
        gw_ih += dpre.T @ x[t]
        gw_hh += dpre.T @ h_prev
        gb += dpre.sum(axis=0)
        dh = dpre @ w_hh
        dc = dc * f
    return (gx, dh, dc, gw_ih, gw_hh, None if b_ih is None else gb.copy(),
            None if b_hh is None else gb.copy())


# ----------------------------------------------------------------------------------
# GRU
# ----------------------------------------------------------------------------------


def gru_cell_ref(x, h, w_ih, w_hh, b_ih=None, b_hh=None):
    hid = np.shape(h)[1]
    gi = _affine(x, w_ih, b_ih)   # W_i* x + b_i*
    gh = _affine(h, w_hh, b_hh)   # W_h* h + b_h*
    r = sigmoid(gi[:, :hid] + gh[:, :hid])
    z = sigmoid(gi[:, hid:2 * hid] + gh[:, hid:2 * hid])
    n = np.tanh(gi[:, 2 * hid:] + r * gh[:, 2 * hid:])
    return (1.0 - z) * n + z * f64(h)


def gru_cell_backward_ref(grad_h_next, x, h, w_ih, w_hh, b_ih=None, b_hh=None):
    """(gx, gh, gw_ih, gw_hh, gb_ih, gb_hh) by hand."""
    x, h, w_ih, w_hh = map(f64, (x, h, w_ih, w_hh))
    hid = h.shape[1]
    gi = _affine(x, w_ih, b_ih)
    ghh = _affine(h, w_hh, b_hh)
    r = sigmoid(gi[:, :hid] + ghh[:, :hid])
    z = sigmoid(gi[:, hid:2 * hid] + ghh[:, hid:2 * hid])
    hn = ghh[:, 2 * hid:]
    n = np.tanh(gi[:, 2 * hid:] + r * hn)
    g = np.zeros_like(h) if grad_h_next is None else f64(grad_h_next)
    dn = g * (1.0 - z)
    dz = g * (h - n)
    dh = g * z
    dpre_n = dn * (1.0 - n * n)
    dr = dpre_n * hn
    dpre_r = dr * r * (1.0 - r)
    dpre_z = dz * z * (1.0 - z)
    d_in = np.concatenate([dpre_r, dpre_z, dpre_n], axis=1)       # wrt W_i* x + b_i*
    d_hid = np.concatenate([dpre_r, dpre_z, dpre_n * r], axis=1)  # wrt W_h* h + b_h*
    gx = d_in @ w_ih
    dh = dh + d_hid @ w_hh
    return (gx, dh, d_in.T @ x, d_hid.T @ h,
            None if b_ih is None else d_in.sum(axis=0),
            None if b_hh is None else d_hid.sum(axis=0))


def _run_sequence(step, x, h0, reverse):
    """(y (T, B, H), h_n): h = step(x[t], h) for t in running order, y[t] = that h."""
    x = f64(x)
    steps = x.shape[0]
    h = f64(h0).copy()
    y = np.zeros((steps,) + h.shape)
    order = range(steps - 1, -1, -1) if reverse else range(steps)
    for t in order:
        h = step(x[t], h)
        y[t] = h
    return y, h


def gru_ref(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, reverse=False):
    """A whole GRU sequence: (y (T, B, H), h_n), float64, one gru_cell_ref per step."""
    return _run_sequence(lambda xt, h: gru_cell_ref(xt, h, w_ih, w_hh, b_ih, b_hh), x, h0, reverse)


# ----------------------------------------------------------------------------------
# Elman RNN cell
# ----------------------------------------------------------------------------------


def rnn_preactivation(x, h, w_ih, w_hh, b_ih=None, b_hh=None):
    return _affine(x, w_ih, b_ih) + _affine(h, w_hh, b_hh)


def rnn_cell_ref(x, h, w_ih, w_hh, b_ih=None, b_hh=None, nonlinearity="tanh"):
    pre = rnn_preactivation(x, h, w_ih, w_hh, b_ih, b_hh)
    if nonlinearity == "tanh":
        return np.tanh(pre)
    assert nonlinearity == "relu"
    return np.maximum(pre, 0.0)


def rnn_ref(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, nonlinearity="tanh", reverse=False):
    """A whole Elman RNN sequence: (y (T, B, H), h_n), float64, one rnn_cell_ref per step."""
    return _run_sequence(lambda xt, h: rnn_cell_ref(xt, h, w_ih, w_hh, b_ih, b_hh, nonlinearity),
                         x, h0, reverse)


def rnn_cell_backward_ref(grad_h_next, x, h, w_ih, w_hh, b_ih=None, b_hh=None,
                          nonlinearity="tanh"):
    """(gx, gh, gw_ih, gw_hh, gb_ih, gb_hh); relu'(0) = 0 as PyTorch."""
    x, h, w_ih, w_hh = map(f64, (x, h, w_ih, w_hh))
    pre = rnn_preactivation(x, h, w_ih, w_hh, b_ih, b_hh)
    g = np.zeros_like(pre) if grad_h_next is None else f64(grad_h_next)
    if nonlinearity == "tanh":
        t = np.tanh(pre)
        dpre = g * (1.0 - t * t)
    else:
        dpre = g * (pre > 0)
    gb = dpre.sum(axis=0)
    return (dpre @ w_ih, dpre @ w_hh, dpre.T @ x, dpre.T @ h,
            None if b_ih is None else gb.copy(), None if b_hh is None else gb.copy())


# ----------------------------------------------------------------------------------
# additive attention
# ----------------------------------------------------------------------------------


def attention_ref(query, keys, w_query, w_key, v, mask=None):
    """(context (B, Dk), weights (B, T)) with explicit loops over b and t."""
    query, keys, w_query, w_key, v = map(f64, (query, keys, w_query, w_key, v))
    steps, bsz, dk = keys.shape
    weights = np.zeros((bsz, steps))
    context = np.zeros((bsz, dk))
    for b in range(bsz):
        scores = np.array([v @ np.tanh(w_query @ query[b] + w_key @ keys[t, b])
                           for t in range(steps)])
        keep = np.ones(steps, bool) if mask is None else np.asarray(mask[b], bool)
        m = scores[keep].max()
        e = np.where(keep, np.exp(np.where(keep, scores - m, 0.0)), 0.0)
        weights[b] = e / e.sum()
        for t in range(steps):
            context[b] += weights[b, t] * keys[t, b]
    return context, weights


def attention_backward_ref(grad_context, grad_weights, query, keys, w_query, w_key, v,
                           mask=None):
    """(g_query, g_keys, g_w_query, g_w_key, g_v) by hand; g_keys has both the context
    path and the score path."""
    query, keys, w_query, w_key, v = map(f64, (query, keys, w_query, w_key, v))
    gc = f64(grad_context)
    steps, bsz, dk = keys.shape
    _, weights = attention_ref(query, keys, w_query, w_key, v, mask)
    gq, gk = np.zeros_like(query), np.zeros_like(keys)
    gwq, gwk, gv = np.zeros_like(w_query), np.zeros_like(w_key), np.zeros_like(v)
    for b in range(bsz):
        # d loss / d weights[b, t]
        dw = np.array([gc[b] @ keys[t, b] for t in range(steps)])
        if grad_weights is not None:
            dw = dw + f64(grad_weights)[b]
        # softmax Jacobian (masked weights are 0, so their scores get 0)
        ds = weights[b] * (dw - np.sum(weights[b] * dw))
        for t in range(steps):
            gk[t, b] += weights[b, t] * gc[b]
            act = np.tanh(w_query @ query[b] + w_key @ keys[t, b])
            gv += ds[t] * act
            du = ds[t] * v * (1.0 - act * act)
            gq[b] += w_query.T @ du
            gk[t, b] += w_key.T @ du
            gwq += np.outer(du, query[b])
            gwk += np.outer(du, keys[t, b])
    return gq, gk, gwq, gwk, gv
