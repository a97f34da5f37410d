"""Plain NumPy recurrent layers: the baseline adlkernels' recurrent kernels are measured against.

What one writes without a compiled kernel, straight from the textbook equations: the
matrix products through ``np.dot`` / ``@`` (NumPy's BLAS), the gate nonlinearities and
cell updates as whole-array NumPy expressions (each one a pass over memory and a
temporary), a Python loop over the time steps. Where a product does not depend on the
recurrence it is hoisted out of the loop, as a competent NumPy user would do it: the
input projection of a whole sequence is one GEMM over all T*B rows, and backpropagation
through time collects the gate gradients of every step and forms dx and the weight
gradients with one GEMM each after the loop. Only h @ W_hh^T (forward) and
dgates @ W_hh (backward) run once per step.

Semantics and layouts as adlkernels / PyTorch: weights w_ih (G*H, I), w_hh (G*H, H),
biases (G*H,), gate order LSTM i, f, g, o; GRU r, z, n (r multiplies W_hn h + b_hn).
Every function works in the dtype of its inputs (float32 in the benchmark; float64 for
the correctness reference). Biases are required here (the benchmark always has them).
"""

from __future__ import annotations

import numpy as np


def _sigmoid(x):
    # float32 stays float32 (a Python scalar does not upcast); overflow of exp for very
    # negative x gives inf and 1/inf = 0, which is the right limit.
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-x))


# ---- LSTM --------------------------------------------------------------------------


def _lstm_pointwise(pre, c, hid):
    """pre (B, 4H) pre-activations -> (activated gates (B, 4H), c_next, tanh(c_next), h_next)."""
    act = np.empty_like(pre)
    act[:, : 2 * hid] = _sigmoid(pre[:, : 2 * hid])          # i, f
    act[:, 2 * hid : 3 * hid] = np.tanh(pre[:, 2 * hid : 3 * hid])  # g
    act[:, 3 * hid :] = _sigmoid(pre[:, 3 * hid :])          # o
    i, f, g, o = (act[:, k * hid : (k + 1) * hid] for k in range(4))
    c_next = f * c + i * g
    tc = np.tanh(c_next)
    return act, c_next, tc, o * tc


def _lstm_pointwise_backward(dh, dc, act, c, tc, hid):
    """Gradient of one step's pointwise part: dh, dc (B, H) of its outputs -> (dgates
    (B, 4H) with respect to the pre-activations, dc of the previous cell state)."""
    i, f, g, o = (act[:, k * hid : (k + 1) * hid] for k in range(4))
    dc = dc + dh * o * (1 - tc * tc)
    dg = np.empty_like(act)
    dg[:, :hid] = dc * g * i * (1 - i)
    dg[:, hid : 2 * hid] = dc * c * f * (1 - f)
    dg[:, 2 * hid : 3 * hid] = dc * i * (1 - g * g)
    dg[:, 3 * hid :] = dh * tc * o * (1 - o)
    return dg, dc * f


def lstm_cell_forward(x, h, c, w_ih, w_hh, b_ih, b_hh):
    """One LSTM step as torch.nn.LSTMCell -> (h_next, c_next, cache)."""
    hid = h.shape[1]
    pre = x @ w_ih.T + h @ w_hh.T + (b_ih + b_hh)
    act, c_next, tc, h_next = _lstm_pointwise(pre, c, hid)
    return h_next, c_next, (x, h, c, w_ih, w_hh, act, tc)


def lstm_cell_backward(grad_h_next, grad_c_next, cache):
    """-> (dx, dh, dc, dw_ih, dw_hh, db_ih, db_hh)."""
    x, h, c, w_ih, w_hh, act, tc = cache
    dg, dc = _lstm_pointwise_backward(grad_h_next, grad_c_next, act, c, tc, h.shape[1])
    db = dg.sum(axis=0)
    return dg @ w_ih, dg @ w_hh, dc, dg.T @ x, dg.T @ h, db, db.copy()


def lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh):
    """One layer over a sequence, as torch.nn.LSTM(num_layers=1): x (T, B, I) ->
    (y (T, B, H), h_n, c_n, cache)."""
    steps, bsz, n_in = x.shape
    hid = h0.shape[1]
    xproj = (x.reshape(steps * bsz, n_in) @ w_ih.T + (b_ih + b_hh)).reshape(steps, bsz, 4 * hid)
    acts = np.empty_like(xproj)
    cells = np.empty((steps, bsz, hid), x.dtype)   # c_t
    tcs = np.empty_like(cells)                      # tanh(c_t)
    y = np.empty_like(cells)                        # h_t
    h, c = h0, c0
    for t in range(steps):
        acts[t], cells[t], tcs[t], y[t] = _lstm_pointwise(xproj[t] + h @ w_hh.T, c, hid)
        h, c = y[t], cells[t]
    return y, y[-1].copy(), cells[-1].copy(), (x, h0, c0, w_ih, w_hh, acts, cells, tcs, y)


def lstm_backward(grad_y, grad_h_n, grad_c_n, cache):
    """Backpropagation through time -> (dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh)."""
    x, h0, c0, w_ih, w_hh, acts, cells, tcs, y = cache
    steps, bsz, n_in = x.shape
    hid = h0.shape[1]
    dgates = np.empty_like(acts)
    dh, dc = grad_h_n, grad_c_n
    for t in range(steps - 1, -1, -1):
        c_prev = cells[t - 1] if t > 0 else c0
        dgates[t], dc = _lstm_pointwise_backward(grad_y[t] + dh, dc, acts[t], c_prev, tcs[t], hid)
        dh = dgates[t] @ w_hh
    dg = dgates.reshape(steps * bsz, 4 * hid)
    h_prev = np.concatenate([h0[None], y[:-1]]).reshape(steps * bsz, hid)
    dx = (dg @ w_ih).reshape(steps, bsz, n_in)
    db = dg.sum(axis=0)
    return dx, dh, dc, dg.T @ x.reshape(steps * bsz, n_in), dg.T @ h_prev, db, db.copy()


# ---- GRU ---------------------------------------------------------------------------


def gru_cell_forward(x, h, w_ih, w_hh, b_ih, b_hh):
    """One GRU step as torch.nn.GRUCell -> (h_next, cache)."""
    hid = h.shape[1]
    gi = x @ w_ih.T + b_ih
    gh = h @ w_hh.T + b_hh
    r = _sigmoid(gi[:, :hid] + gh[:, :hid])
    z = _sigmoid(gi[:, hid : 2 * hid] + gh[:, hid : 2 * hid])
    hn = gh[:, 2 * hid :]
    n = np.tanh(gi[:, 2 * hid :] + r * hn)
    h_next = (1 - z) * n + z * h
    return h_next, (x, h, w_ih, w_hh, r, z, n, hn)


def gru_cell_backward(grad_h_next, cache):
    """-> (dx, dh, dw_ih, dw_hh, db_ih, db_hh)."""
    x, h, w_ih, w_hh, r, z, n, hn = cache
    hid = h.shape[1]
    g = grad_h_next
    dn = g * (1 - z) * (1 - n * n)           # through n's tanh
    dz = g * (h - n) * z * (1 - z)
    dr = dn * hn * r * (1 - r)
    dgi = np.concatenate([dr, dz, dn], axis=1)
    dgh = np.concatenate([dr, dz, dn * r], axis=1)
    dx = dgi @ w_ih
    dh = dgh @ w_hh + g * z
    return dx, dh, dgi.T @ x, dgh.T @ h, dgi.sum(axis=0), dgh.sum(axis=0)


def gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh):
    """One layer over a sequence, as torch.nn.GRU(num_layers=1): x (T, B, I) ->
    (y (T, B, H), h_n, cache)."""
    steps, bsz, n_in = x.shape
    hid = h0.shape[1]
    xproj = (x.reshape(steps * bsz, n_in) @ w_ih.T + b_ih).reshape(steps, bsz, 3 * hid)
    y = np.empty((steps, bsz, hid), x.dtype)
    saved = []
    h = h0
    for t in range(steps):
        gi, gh = xproj[t], h @ w_hh.T + b_hh
        r = _sigmoid(gi[:, :hid] + gh[:, :hid])
        z = _sigmoid(gi[:, hid : 2 * hid] + gh[:, hid : 2 * hid])
        hn = gh[:, 2 * hid :]
        n = np.tanh(gi[:, 2 * hid :] + r * hn)
        y[t] = h = (1 - z) * n + z * h
        saved.append((r, z, n, hn))
    return y, y[-1].copy(), (x, h0, w_ih, w_hh, saved, y)


def gru_backward(grad_y, grad_h_n, cache):
    """Backpropagation through time -> (dx, dh0, dw_ih, dw_hh, db_ih, db_hh)."""
    x, h0, w_ih, w_hh, saved, y = cache
    steps, bsz, n_in = x.shape
    hid = h0.shape[1]
    dgi = np.empty((steps, bsz, 3 * hid), x.dtype)
    dgh = np.empty_like(dgi)
    dh = grad_h_n
    for t in range(steps - 1, -1, -1):
        r, z, n, hn = saved[t]
        h_prev = y[t - 1] if t > 0 else h0
        g = grad_y[t] + dh
        dn = g * (1 - z) * (1 - n * n)
        dz = g * (h_prev - n) * z * (1 - z)
        dr = dn * hn * r * (1 - r)
        dgi[t] = np.concatenate([dr, dz, dn], axis=1)
        dgh[t] = np.concatenate([dr, dz, dn * r], axis=1)
        dh = dgh[t] @ w_hh + g * z
    di = dgi.reshape(steps * bsz, 3 * hid)
    dq = dgh.reshape(steps * bsz, 3 * hid)
    h_prev = np.concatenate([h0[None], y[:-1]]).reshape(steps * bsz, hid)
    dx = (di @ w_ih).reshape(steps, bsz, n_in)
    return (dx, dh, di.T @ x.reshape(steps * bsz, n_in), dq.T @ h_prev, di.sum(axis=0),
            dq.sum(axis=0))

# ---- Elman RNN ---------------------------------------------------------------------


def rnn_cell_forward(x, h, w_ih, w_hh, b_ih, b_hh):
    """One tanh RNN step as torch.nn.RNNCell -> (h_next, cache)."""
    h_next = np.tanh(x @ w_ih.T + h @ w_hh.T + (b_ih + b_hh))
    return h_next, (x, h, w_ih, w_hh, h_next)


def rnn_cell_backward(grad_h_next, cache):
    """-> (dx, dh, dw_ih, dw_hh, db_ih, db_hh)."""
    x, h, w_ih, w_hh, h_next = cache
    d = grad_h_next * (1 - h_next * h_next)
    db = d.sum(axis=0)
    return d @ w_ih, d @ w_hh, d.T @ x, d.T @ h, db, db.copy()


# ---- additive attention ------------------------------------------------------------


def additive_attention_forward(query, keys, w_query, w_key, v):
    """query (B, Dq), keys (T, B, Dk), w_query (A, Dq), w_key (A, Dk), v (A,) ->
    (context (B, Dk), weights (B, T), cache); no mask.
    score[b, t] = v . tanh(w_query query[b] + w_key keys[t, b]), softmax over t."""
    steps, bsz, dk = keys.shape
    att = w_query.shape[0]
    pre = (keys.reshape(steps * bsz, dk) @ w_key.T).reshape(steps, bsz, att)
    pre += query @ w_query.T
    act = np.tanh(pre)
    scores = (act.reshape(steps * bsz, att) @ v).reshape(steps, bsz).T   # (B, T)
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    weights = e / e.sum(axis=1, keepdims=True)
    context = np.einsum("bt,tbd->bd", weights, keys)
    return context, weights, (query, keys, w_query, w_key, v, act, weights)


def additive_attention_backward(grad_context, grad_weights, cache):
    """-> (dquery, dkeys, dw_query, dw_key, dv)."""
    query, keys, w_query, w_key, v, act, weights = cache
    steps, bsz, dk = keys.shape
    att = w_query.shape[0]
    gw = np.einsum("bd,tbd->bt", grad_context, keys)                  # through context
    if grad_weights is not None:
        gw = gw + grad_weights
    ds = weights * (gw - (weights * gw).sum(axis=1, keepdims=True))   # softmax backward
    ds_tb = np.ascontiguousarray(ds.T)                                # (T, B)
    act2 = act.reshape(steps * bsz, att)
    dv = act2.T @ ds_tb.reshape(-1)
    dpre = (ds_tb[:, :, None] * v) * (1 - act * act)                  # (T, B, A)
    dpre2 = dpre.reshape(steps * bsz, att)
    dkeys = (dpre2 @ w_key).reshape(steps, bsz, dk)
    dkeys += weights.T[:, :, None] * grad_context                     # context = sum w keys
    dq = dpre.sum(axis=0)                                             # (B, A)
    return dq @ w_query, dkeys, dq.T @ query, dpre2.T @ keys.reshape(steps * bsz, dk), dv
