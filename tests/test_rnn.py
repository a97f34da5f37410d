"""Recurrent family (docs/api/rnn.md) against the float64 references in reference_rnn.py.

Forward values are compared with the step-by-step NumPy references within the dtype's
tolerance (reference.assert_close). Every gradient is checked in float64 against central
finite differences of the reference forward (tiny shapes), and at larger shapes and in
float32 against the hand-written chain-rule references (themselves checked against
finite differences here). Optional cross-checks against PyTorch, section-0 rules
(dtypes, shapes, strides, outputs, determinism) and argument validation follow.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import adlkernels as ak
from helpers import _shape_text, names
from reference import assert_close
from reference_rnn import (
    attention_backward_ref,
    attention_ref,
    functional,
    gru_cell_backward_ref,
    gru_cell_ref,
    lstm_backward_ref,
    lstm_cell_ref,
    lstm_ref,
    numerical_grad,
    rnn_cell_backward_ref,
    rnn_cell_ref,
    rnn_preactivation,
)

HYPOTHESIS = settings(max_examples=25, deadline=None, database=None)

RNN_NAMES = [
    "lstm_cell_forward", "lstm_cell_backward", "lstm_forward", "lstm_backward",
    "gru_cell_forward", "gru_cell_backward", "rnn_cell_forward", "rnn_cell_backward",
    "additive_attention_forward", "additive_attention_backward",
]

LSTM_CELL_FIELDS = ("x", "h", "c", "w_ih", "w_hh", "b_ih", "b_hh")
LSTM_FIELDS = ("x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh")
CELL_FIELDS = ("x", "h", "w_ih", "w_hh", "b_ih", "b_hh")
ATTENTION_FIELDS = ("query", "keys", "w_query", "w_key", "v")

BIASES = {"both": (True, True), "ih": (True, False), "hh": (False, True), "none": (False, False)}

# finite differences (eps 1e-5 in float64) agree with exact gradients to ~1e-9 here
FD_TOL = 1e-7


# ----------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------


def randn(rng, shape, dtype=np.float64, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


def make_weights(rng, gates, n_in, hid, dtype=np.float64, bias="both"):
    """(w_ih, w_hh, b_ih, b_hh): pre-activations of order 1 whatever the sizes."""
    s = 1.5 / np.sqrt(n_in + hid)
    has_ih, has_hh = BIASES[bias]
    w_ih = randn(rng, (gates * hid, n_in), dtype, s)
    w_hh = randn(rng, (gates * hid, hid), dtype, s)
    b_ih = randn(rng, (gates * hid,), dtype, 0.5) if has_ih else None
    b_hh = randn(rng, (gates * hid,), dtype, 0.5) if has_hh else None
    return w_ih, w_hh, b_ih, b_hh


def make_mask(rng, bsz, steps):
    """Random bool mask with at least one True per row; row 0 keeps exactly one."""
    mask = rng.random((bsz, steps)) < 0.6
    if bsz:
        mask[np.arange(bsz), rng.integers(0, steps, bsz)] = True
        mask[0] = False
        mask[0, steps // 2] = True
    return mask


def check_out(a, dtype, shape, what):
    assert type(a) is np.ndarray, f"{what}: {type(a)}"
    assert a.dtype == np.dtype(dtype), f"{what}: dtype {a.dtype}, expected {np.dtype(dtype)}"
    assert a.shape == tuple(shape), f"{what}: shape {a.shape}, expected {tuple(shape)}"
    assert a.flags.c_contiguous, f"{what}: not C-contiguous"


def check_grads(grads, refs, dtype, fields, what):
    """A gradient NamedTuple against the float64 references, field by field."""
    assert tuple(grads._fields) == fields, grads._fields
    for name, got, ref in zip(fields, grads, refs):
        if ref is None:
            assert got is None, f"{what}.{name}: expected None (its bias was None)"
            continue
        check_out(got, dtype, ref.shape, f"{what}.{name}")
        assert_close(got, ref, dtype, what=f"{what}.{name}")


def check_fd(grads, f, arrays, fields, what):
    """Every gradient field (float64) against central differences of scalar f(*arrays)."""
    assert tuple(grads._fields) == fields, grads._fields
    for k, name in enumerate(fields):
        got = grads[k]
        if arrays[k] is None:
            assert got is None, f"{what}.{name}: expected None"
            continue
        num = numerical_grad(f, arrays, k)
        check_out(got, np.float64, num.shape, f"{what}.{name}")
        scale = max(1.0, float(np.abs(num).max()))
        err = float(np.abs(got - num).max()) if num.size else 0.0
        assert err <= FD_TOL * scale, (
            f"{what}.{name}: max |analytic - finite difference| = {err:.3g} "
            f"(scale {scale:.3g})\ngot\n{got}\nfinite differences\n{num}"
        )


def assert_no_sharing(outputs, inputs, what):
    for i, o in enumerate(outputs):
        if o is None:
            continue
        for a in inputs:
            if a is not None:
                assert not np.shares_memory(o, a), f"{what}: output {i} shares memory with an input"


def lstm_inputs(rng, steps, bsz, n_in, hid, dtype=np.float64, bias="both"):
    x = randn(rng, (steps, bsz, n_in), dtype)
    h0 = randn(rng, (bsz, hid), dtype, 0.8)
    c0 = randn(rng, (bsz, hid), dtype, 0.8)
    return (x, h0, c0) + make_weights(rng, 4, n_in, hid, dtype, bias)


def attention_inputs(rng, steps, bsz, dq, dk, att, dtype=np.float64):
    return (randn(rng, (bsz, dq), dtype), randn(rng, (steps, bsz, dk), dtype),
            randn(rng, (att, dq), dtype, 1 / np.sqrt(dq)),
            randn(rng, (att, dk), dtype, 1 / np.sqrt(dk)), randn(rng, (att,), dtype))


# ----------------------------------------------------------------------------------
# names and result types
# ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", RNN_NAMES)
def test_names_importable(name):
    top = getattr(ak, name)
    assert callable(top)
    assert getattr(ak.rnn, name) is top
    assert name in ak.__all__
    assert name in ak.rnn.__all__


def test_gradient_field_names(rng):
    x, h, c, w_ih, w_hh, b_ih, b_hh = (randn(rng, (2, 3)), randn(rng, (2, 2)),
                                       randn(rng, (2, 2))) + make_weights(rng, 4, 3, 2)
    h1, c1, cache = ak.lstm_cell_forward(x, h, c, w_ih, w_hh, b_ih, b_hh)
    assert isinstance(cache, tuple) and hasattr(cache, "_fields")
    g = ak.lstm_cell_backward(h1, c1, cache)
    assert isinstance(g, tuple) and g._fields == LSTM_CELL_FIELDS
    assert g.x is g[0] and g.b_hh is g[6]

    args = lstm_inputs(rng, 3, 2, 3, 2)
    y, h_n, c_n, cache = ak.lstm_forward(*args)
    assert isinstance(cache, tuple) and hasattr(cache, "_fields")
    assert ak.lstm_backward(y, h_n, c_n, cache)._fields == LSTM_FIELDS

    wg = make_weights(rng, 3, 3, 2)
    h1, cache = ak.gru_cell_forward(x, h, *wg)
    assert isinstance(cache, tuple) and hasattr(cache, "_fields")
    assert ak.gru_cell_backward(h1, cache)._fields == CELL_FIELDS

    wr = make_weights(rng, 1, 3, 2)
    h1, cache = ak.rnn_cell_forward(x, h, *wr)
    assert isinstance(cache, tuple) and hasattr(cache, "_fields")
    assert ak.rnn_cell_backward(h1, cache)._fields == CELL_FIELDS

    q, k, wq, wk, v = attention_inputs(rng, 4, 2, 3, 2, 3)
    ctx, w, cache = ak.additive_attention_forward(q, k, wq, wk, v)
    assert isinstance(cache, tuple) and hasattr(cache, "_fields")
    assert ak.additive_attention_backward(ctx, w, cache)._fields == ATTENTION_FIELDS


# ----------------------------------------------------------------------------------
# forward values
# ----------------------------------------------------------------------------------

CELL_SHAPES = [(3, 5, 4), (1, 1, 1), (1, 7, 1), (4, 1, 6), (2, 3, 1), (9, 20, 37), (0, 3, 2)]


@pytest.mark.parametrize("bsz,n_in,hid", CELL_SHAPES, ids=str)
def test_lstm_cell_forward(bsz, n_in, hid, dtype, rng):
    x = randn(rng, (bsz, n_in), dtype)
    h, c = randn(rng, (bsz, hid), dtype), randn(rng, (bsz, hid), dtype)
    w = make_weights(rng, 4, n_in, hid, dtype)
    out = ak.lstm_cell_forward(x, h, c, *w)
    assert isinstance(out, tuple) and len(out) == 3
    h1, c1, _ = out
    rh, rc = lstm_cell_ref(x, h, c, *w)
    check_out(h1, dtype, (bsz, hid), "h_next")
    check_out(c1, dtype, (bsz, hid), "c_next")
    assert_close(h1, rh, dtype, what="h_next")
    assert_close(c1, rc, dtype, what="c_next")
    assert_no_sharing((h1, c1), (x, h, c) + w, "lstm_cell_forward")


SEQ_SHAPES = [(5, 3, 4, 6), (1, 2, 3, 4), (4, 1, 1, 1), (3, 2, 5, 1), (2, 4, 1, 3),
              (7, 9, 20, 37), (3, 33, 50, 70), (3, 0, 2, 3), (0, 2, 3, 4)]


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("steps,bsz,n_in,hid", SEQ_SHAPES, ids=str)
def test_lstm_forward(steps, bsz, n_in, hid, reverse, dtype, rng):
    args = lstm_inputs(rng, steps, bsz, n_in, hid, dtype)
    out = ak.lstm_forward(*args, reverse=reverse)
    assert isinstance(out, tuple) and len(out) == 4
    y, h_n, c_n, _ = out
    ry, rh, rc = lstm_ref(*args, reverse=reverse)
    check_out(y, dtype, (steps, bsz, hid), "y")
    check_out(h_n, dtype, (bsz, hid), "h_n")
    check_out(c_n, dtype, (bsz, hid), "c_n")
    assert_close(y, ry, dtype, what="y")
    assert_close(h_n, rh, dtype, what="h_n")
    assert_close(c_n, rc, dtype, what="c_n")
    assert_no_sharing((y, h_n, c_n), args, "lstm_forward")
    if steps and bsz:
        # h_n is the output of the last step processed
        last = 0 if reverse else steps - 1
        assert np.array_equal(h_n, y[last])


@pytest.mark.parametrize("threads", [1, 2])
def test_lstm_forward_more_batch_rows_than_a_step_block(threads, restore_threads, rng):
    """float32 steps activate a chunk's gates 64 batch rows at a time (kLstmStepRows):
    150 rows on one thread are three blocks, the last one partial."""
    ak.set_num_threads(threads)
    args = lstm_inputs(rng, 3, 150, 5, 40, np.float32)
    y, h_n, c_n, cache = ak.lstm_forward(*args)
    ry, rh, rc = lstm_ref(*args)
    assert_close(y, ry, np.float32, what="y")
    assert_close(c_n, rc, np.float32, what="c_n")
    # the cache holds the activated gates i, f, g, o of every step
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = (a.astype(np.float64) for a in args)
    pre = x[0] @ w_ih.T + h0 @ w_hh.T + b_ih + b_hh
    i, f, g, o = np.split(pre, 4, axis=1)
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    want = np.concatenate([sig(i), sig(f), np.tanh(g), sig(o)], axis=1)
    assert_close(cache.gates[0], want, np.float32, what="gates[0]")


def test_lstm_forward_reverse_is_forward_on_flipped_sequence(dtype, rng):
    x, h0, c0, *w = lstm_inputs(rng, 5, 3, 4, 3, dtype)
    y_r, h_r, c_r, _ = ak.lstm_forward(x, h0, c0, *w, reverse=True)
    y_f, h_f, c_f, _ = ak.lstm_forward(np.ascontiguousarray(x[::-1]), h0, c0, *w)
    assert_close(y_r, y_f[::-1].astype(np.float64), dtype, what="y")
    assert_close(h_r, h_f.astype(np.float64), dtype, what="h_n")
    assert_close(c_r, c_f.astype(np.float64), dtype, what="c_n")


def test_lstm_forward_empty_sequence(dtype, rng):
    x, h0, c0, *w = lstm_inputs(rng, 0, 3, 4, 5, dtype)
    for reverse in (False, True):
        y, h_n, c_n, cache = ak.lstm_forward(x, h0, c0, *w, reverse=reverse)
        check_out(y, dtype, (0, 3, 5), "y")
        check_out(h_n, dtype, (3, 5), "h_n")
        check_out(c_n, dtype, (3, 5), "c_n")
        assert np.array_equal(h_n, h0) and np.array_equal(c_n, c0)
        assert not np.shares_memory(h_n, h0) and not np.shares_memory(c_n, c0)
        gh, gc = randn(rng, (3, 5), dtype), randn(rng, (3, 5), dtype)
        g = ak.lstm_backward(np.zeros((0, 3, 5), dtype), gh, gc, cache)
        check_out(g.x, dtype, (0, 3, 4), "grad x")
        assert np.array_equal(g.h0, gh) and np.array_equal(g.c0, gc)
        for name in ("w_ih", "w_hh", "b_ih", "b_hh"):
            check_out(getattr(g, name), dtype, getattr(cache, name).shape, name)
            assert not getattr(g, name).any(), name
        g = ak.lstm_backward(None, None, None, cache)
        assert not g.h0.any() and not g.c0.any()


def test_empty_batch_backward(dtype, rng):
    """B = 0: empty activations' gradients, zero (not empty) weight gradients."""
    args = lstm_inputs(rng, 3, 0, 4, 2, dtype)
    y, h_n, c_n, cache = ak.lstm_forward(*args)
    g = ak.lstm_backward(y, h_n, c_n, cache)
    check_out(g.x, dtype, (3, 0, 4), "x")
    check_out(g.h0, dtype, (0, 2), "h0")
    for name, ref in zip(LSTM_FIELDS[3:], args[3:]):
        check_out(getattr(g, name), dtype, ref.shape, name)
        assert not getattr(g, name).any(), name

    x, h, c = np.zeros((0, 4), dtype), np.zeros((0, 2), dtype), np.zeros((0, 2), dtype)
    h1, c1, cache = ak.lstm_cell_forward(x, h, c, *args[3:])
    g = ak.lstm_cell_backward(h1, c1, cache)
    check_out(g.x, dtype, (0, 4), "x")
    check_out(g.c, dtype, (0, 2), "c")
    assert g.w_ih.shape == (8, 4) and not g.w_ih.any() and not g.b_hh.any()

    for gates, fwd, bwd in ((3, ak.gru_cell_forward, ak.gru_cell_backward),
                            (1, ak.rnn_cell_forward, ak.rnn_cell_backward)):
        w = make_weights(rng, gates, 4, 2, dtype)
        h1, cache = fwd(x, h, *w)
        check_out(h1, dtype, (0, 2), "h_next")
        g = bwd(h1, cache)
        check_out(g.x, dtype, (0, 4), "x")
        check_out(g.h, dtype, (0, 2), "h")
        check_out(g.w_hh, dtype, (gates * 2, 2), "w_hh")
        assert not g.w_ih.any() and not g.w_hh.any() and not g.b_ih.any()

    q, k, wq, wk, v = attention_inputs(rng, 4, 0, 3, 2, 5, dtype)
    ctx, wts, cache = ak.additive_attention_forward(q, k, wq, wk, v, np.zeros((0, 4), bool))
    check_out(ctx, dtype, (0, 2), "context")
    check_out(wts, dtype, (0, 4), "weights")
    g = ak.additive_attention_backward(ctx, wts, cache)
    check_out(g.keys, dtype, (4, 0, 2), "keys")
    check_out(g.w_key, dtype, (5, 2), "w_key")
    assert not g.w_query.any() and not g.v.any()


@pytest.mark.parametrize("bsz,n_in,hid", CELL_SHAPES, ids=str)
def test_gru_cell_forward(bsz, n_in, hid, dtype, rng):
    x, h = randn(rng, (bsz, n_in), dtype), randn(rng, (bsz, hid), dtype)
    w = make_weights(rng, 3, n_in, hid, dtype)
    out = ak.gru_cell_forward(x, h, *w)
    assert isinstance(out, tuple) and len(out) == 2
    check_out(out[0], dtype, (bsz, hid), "h_next")
    assert_close(out[0], gru_cell_ref(x, h, *w), dtype, what="h_next")
    assert_no_sharing(out[:1], (x, h) + w, "gru_cell_forward")


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("bsz,n_in,hid", CELL_SHAPES, ids=str)
def test_rnn_cell_forward(bsz, n_in, hid, nonlinearity, dtype, rng):
    x, h = randn(rng, (bsz, n_in), dtype), randn(rng, (bsz, hid), dtype)
    w = make_weights(rng, 1, n_in, hid, dtype)
    out = ak.rnn_cell_forward(x, h, *w, nonlinearity=nonlinearity)
    assert isinstance(out, tuple) and len(out) == 2
    check_out(out[0], dtype, (bsz, hid), "h_next")
    assert_close(out[0], rnn_cell_ref(x, h, *w, nonlinearity), dtype, what="h_next")
    if nonlinearity == "relu":
        assert (out[0] >= 0).all()
    # the default is tanh
    if nonlinearity == "tanh":
        assert np.array_equal(ak.rnn_cell_forward(x, h, *w)[0], out[0])


ATTENTION_SHAPES = [(5, 3, 4, 3, 6), (1, 1, 1, 1, 1), (7, 4, 8, 5, 3), (2, 5, 3, 7, 2),
                    (12, 6, 16, 20, 24)]


@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize("steps,bsz,dq,dk,att", ATTENTION_SHAPES, ids=str)
def test_attention_forward(steps, bsz, dq, dk, att, masked, dtype, rng):
    q, k, wq, wk, v = attention_inputs(rng, steps, bsz, dq, dk, att, dtype)
    mask = make_mask(rng, bsz, steps) if masked else None
    out = ak.additive_attention_forward(q, k, wq, wk, v, mask)
    assert isinstance(out, tuple) and len(out) == 3
    ctx, wts, _ = out
    r_ctx, r_w = attention_ref(q, k, wq, wk, v, mask)
    check_out(ctx, dtype, (bsz, dk), "context")
    check_out(wts, dtype, (bsz, steps), "weights")
    assert_close(wts, r_w, dtype, what="weights")
    assert_close(ctx, r_ctx, dtype, what="context")
    eps = np.finfo(dtype).eps
    assert np.all(np.abs(wts.astype(np.float64).sum(axis=1) - 1.0) <= 4 * steps * eps)
    assert (wts >= 0).all()
    if masked:
        assert np.all(wts[~mask] == 0.0), "masked positions must be weighted exactly 0"
        assert np.all(wts[mask] > 0)
        # the one-True row puts all its weight there
        assert wts[0, steps // 2] == 1.0
    # an all-True mask is no mask
    full = ak.additive_attention_forward(q, k, wq, wk, v, np.ones((bsz, steps), bool))
    if not masked:
        assert_close(full[1], r_w, dtype, what="weights (all-True mask)")
        assert_close(full[0], r_ctx, dtype, what="context (all-True mask)")


def test_attention_masked_keys_do_not_matter(dtype, rng):
    """Changing keys at masked positions (even to huge values) changes nothing."""
    q, k, wq, wk, v = attention_inputs(rng, 6, 3, 4, 3, 5, dtype)
    mask = make_mask(rng, 3, 6)
    ctx, wts, _ = ak.additive_attention_forward(q, k, wq, wk, v, mask)
    k2 = k.copy()
    k2[~mask.T] = 1e3
    ctx2, wts2, _ = ak.additive_attention_forward(q, k2, wq, wk, v, mask)
    assert np.all(wts2[~mask] == 0.0)
    assert_close(wts2, wts.astype(np.float64), dtype, what="weights")
    assert_close(ctx2, ctx.astype(np.float64), dtype, what="context")


# ----------------------------------------------------------------------------------
# biases: each one alone, both, none
# ----------------------------------------------------------------------------------


@pytest.mark.parametrize("bias", list(BIASES))
def test_bias_combinations(bias, dtype, rng):
    bsz, n_in, hid = 3, 4, 3
    x, h, c = randn(rng, (bsz, n_in), dtype), randn(rng, (bsz, hid), dtype), randn(
        rng, (bsz, hid), dtype)
    g_out = randn(rng, (bsz, hid), dtype)
    g_c = randn(rng, (bsz, hid), dtype)

    w = make_weights(rng, 4, n_in, hid, dtype, bias)
    h1, c1, cache = ak.lstm_cell_forward(x, h, c, *w)
    rh, rc = lstm_cell_ref(x, h, c, *w)
    assert_close(h1, rh, dtype, what="lstm h_next")
    assert_close(c1, rc, dtype, what="lstm c_next")
    g = ak.lstm_cell_backward(g_out, g_c, cache)
    ref = lstm_backward_ref(g_out[None], None, g_c, x[None], h, c, *w)
    check_grads(g, (ref[0][0],) + ref[1:], dtype, LSTM_CELL_FIELDS, "lstm_cell")

    xs = randn(rng, (4, bsz, n_in), dtype)
    gy = randn(rng, (4, bsz, hid), dtype)
    for reverse in (False, True):
        y, h_n, c_n, cache = ak.lstm_forward(xs, h, c, *w, reverse=reverse)
        assert_close(y, lstm_ref(xs, h, c, *w, reverse=reverse)[0], dtype, what="lstm y")
        g = ak.lstm_backward(gy, g_out, None, cache)
        ref = lstm_backward_ref(gy, g_out, None, xs, h, c, *w, reverse=reverse)
        check_grads(g, ref, dtype, LSTM_FIELDS, "lstm")

    w = make_weights(rng, 3, n_in, hid, dtype, bias)
    h1, cache = ak.gru_cell_forward(x, h, *w)
    assert_close(h1, gru_cell_ref(x, h, *w), dtype, what="gru h_next")
    check_grads(ak.gru_cell_backward(g_out, cache), gru_cell_backward_ref(g_out, x, h, *w),
                dtype, CELL_FIELDS, "gru")

    for nl in ("tanh", "relu"):
        w = make_weights(rng, 1, n_in, hid, dtype, bias)
        h1, cache = ak.rnn_cell_forward(x, h, *w, nonlinearity=nl)
        assert_close(h1, rnn_cell_ref(x, h, *w, nl), dtype, what=f"rnn {nl} h_next")
        check_grads(ak.rnn_cell_backward(g_out, cache),
                    rnn_cell_backward_ref(g_out, x, h, *w, nl), dtype, CELL_FIELDS, f"rnn {nl}")


def test_both_bias_gradients_are_separate_arrays(rng):
    args = lstm_inputs(rng, 3, 2, 3, 2)
    y, h_n, c_n, cache = ak.lstm_forward(*args)
    g = ak.lstm_backward(y, None, None, cache)
    assert not np.shares_memory(g.b_ih, g.b_hh)
    x, h = randn(rng, (2, 3)), randn(rng, (2, 2))
    h1, cache = ak.rnn_cell_forward(x, h, *make_weights(rng, 1, 3, 2))
    g = ak.rnn_cell_backward(h1, cache)
    assert not np.shares_memory(g.b_ih, g.b_hh)
    h1, cache = ak.gru_cell_forward(x, h, *make_weights(rng, 3, 3, 2))
    g = ak.gru_cell_backward(h1, cache)
    assert not np.shares_memory(g.b_ih, g.b_hh)
    # GRU: b_hn sits inside r * (W_hn h + b_hn), so the n parts differ from b_in's
    assert not np.allclose(g.b_ih[4:], g.b_hh[4:])


# ----------------------------------------------------------------------------------
# backward: finite differences (float64, tiny shapes)
# ----------------------------------------------------------------------------------


def test_backward_references_match_finite_differences(rng):
    """The hand-written chain rules used below at larger sizes are right."""
    args = list(lstm_inputs(rng, 3, 2, 3, 2))
    gy, gh, gc = randn(rng, (3, 2, 2)), randn(rng, (2, 2)), randn(rng, (2, 2))
    for reverse in (False, True):
        ref = lstm_backward_ref(gy, gh, gc, *args, reverse=reverse)

        def f(*a):
            return functional(lstm_ref(*a, reverse=reverse), (gy, gh, gc))

        for k in range(7):
            num = numerical_grad(f, args, k)
            assert np.abs(ref[k] - num).max() <= FD_TOL * max(1, np.abs(num).max()), k

    x, h, g = randn(rng, (2, 3)), randn(rng, (2, 2)), randn(rng, (2, 2))
    w = list(make_weights(rng, 3, 3, 2))
    ref = gru_cell_backward_ref(g, x, h, *w)
    for k in range(6):
        num = numerical_grad(lambda *a: np.sum(g * gru_cell_ref(*a)), [x, h] + w, k)
        assert np.abs(ref[k] - num).max() <= FD_TOL * max(1, np.abs(num).max()), k
    w = list(make_weights(rng, 1, 3, 2))
    ref = rnn_cell_backward_ref(g, x, h, *w, "tanh")
    for k in range(6):
        num = numerical_grad(lambda *a: np.sum(g * rnn_cell_ref(*a)), [x, h] + w, k)
        assert np.abs(ref[k] - num).max() <= FD_TOL * max(1, np.abs(num).max()), k

    arrays = list(attention_inputs(rng, 4, 2, 3, 2, 3))
    mask = make_mask(rng, 2, 4)
    gctx, gw = randn(rng, (2, 2)), randn(rng, (2, 4))
    ref = attention_backward_ref(gctx, gw, *arrays, mask)
    for k in range(5):
        num = numerical_grad(lambda *a: functional(attention_ref(*a, mask), (gctx, gw)),
                             arrays, k)
        assert np.abs(ref[k] - num).max() <= FD_TOL * max(1, np.abs(num).max()), k


@pytest.mark.parametrize("given_h,given_c", list(itertools.product([True, False], repeat=2)),
                         ids=lambda v: "given" if v else "None")
def test_lstm_cell_backward_finite_differences(given_h, given_c, rng):
    bsz, n_in, hid = 3, 3, 2
    arrays = [randn(rng, (bsz, n_in)), randn(rng, (bsz, hid)), randn(rng, (bsz, hid))]
    arrays += list(make_weights(rng, 4, n_in, hid))
    gh = randn(rng, (bsz, hid)) if given_h else None
    gc = randn(rng, (bsz, hid)) if given_c else None
    h1, c1, cache = ak.lstm_cell_forward(*arrays)
    grads = ak.lstm_cell_backward(gh, gc, cache)

    def f(*a):
        return functional(lstm_cell_ref(*a), (gh, gc))

    check_fd(grads, f, arrays, LSTM_CELL_FIELDS, "lstm_cell_backward")
    if not (given_h or given_c):
        assert not any(g.any() for g in grads)


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("given", list(itertools.product([True, False], repeat=3)),
                         ids=lambda g: "y%d_h%d_c%d" % g)
def test_lstm_backward_finite_differences(given, reverse, rng):
    steps, bsz, n_in, hid = 3, 2, 3, 2
    arrays = list(lstm_inputs(rng, steps, bsz, n_in, hid))
    gy = randn(rng, (steps, bsz, hid)) if given[0] else None
    gh = randn(rng, (bsz, hid)) if given[1] else None
    gc = randn(rng, (bsz, hid)) if given[2] else None
    _, _, _, cache = ak.lstm_forward(*arrays, reverse=reverse)
    grads = ak.lstm_backward(gy, gh, gc, cache)

    def f(*a):
        return functional(lstm_ref(*a, reverse=reverse), (gy, gh, gc))

    check_fd(grads, f, arrays, LSTM_FIELDS, "lstm_backward")
    if not any(given):
        assert not any(g.any() for g in grads)


def test_lstm_backward_finite_differences_no_bias_single_unit(rng):
    """H = 1, I = 1, B = 1, T = 4, no biases."""
    arrays = list(lstm_inputs(rng, 4, 1, 1, 1, bias="none"))
    gy, gc = randn(rng, (4, 1, 1)), randn(rng, (1, 1))
    _, _, _, cache = ak.lstm_forward(*arrays, reverse=True)
    grads = ak.lstm_backward(gy, None, gc, cache)
    check_fd(grads, lambda *a: functional(lstm_ref(*a, reverse=True), (gy, None, gc)),
             arrays, LSTM_FIELDS, "lstm_backward")


@pytest.mark.parametrize("bias", ["both", "hh"])
@pytest.mark.parametrize("given", [True, False], ids=["given", "None"])
def test_gru_cell_backward_finite_differences(given, bias, rng):
    arrays = [randn(rng, (3, 4)), randn(rng, (3, 3))] + list(make_weights(rng, 3, 4, 3,
                                                                             bias=bias))
    g = randn(rng, (3, 3)) if given else None
    _, cache = ak.gru_cell_forward(*arrays)
    grads = ak.gru_cell_backward(g, cache)
    check_fd(grads, lambda *a: functional((gru_cell_ref(*a),), (g,)), arrays, CELL_FIELDS,
             "gru_cell_backward")


def _relu_safe_inputs(rng, bsz, n_in, hid, bias="both"):
    """RNN cell inputs whose pre-activations are all at least 0.05 away from 0."""
    for _ in range(200):
        arrays = [randn(rng, (bsz, n_in)), randn(rng, (bsz, hid))]
        arrays += list(make_weights(rng, 1, n_in, hid, bias=bias))
        pre = rnn_preactivation(*arrays)
        if np.abs(pre).min() > 0.05 and (pre > 0).any() and (pre < 0).any():
            return arrays
    raise AssertionError("could not draw relu-safe inputs")


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("given", [True, False], ids=["given", "None"])
def test_rnn_cell_backward_finite_differences(given, nonlinearity, rng):
    arrays = _relu_safe_inputs(rng, 3, 4, 3, bias="ih" if given else "both")
    g = randn(rng, (3, 3)) if given else None
    _, cache = ak.rnn_cell_forward(*arrays, nonlinearity=nonlinearity)
    grads = ak.rnn_cell_backward(g, cache)
    check_fd(grads, lambda *a: functional((rnn_cell_ref(*a, nonlinearity),), (g,)), arrays,
             CELL_FIELDS, "rnn_cell_backward")


def test_rnn_relu_derivative_at_zero_is_zero(dtype, rng):
    """Pre-activation exactly 0 (x = h = 0, no bias): relu'(0) = 0 as PyTorch."""
    x, h = np.zeros((2, 3), dtype), np.zeros((2, 4), dtype)
    w_ih, w_hh, _, _ = make_weights(rng, 1, 3, 4, dtype)
    h1, cache = ak.rnn_cell_forward(x, h, w_ih, w_hh, nonlinearity="relu")
    assert not h1.any()
    g = ak.rnn_cell_backward(randn(rng, (2, 4), dtype), cache)
    for name in CELL_FIELDS[:4]:
        assert not getattr(g, name).any(), name


@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize("given", [True, False], ids=["grad_weights", "no_grad_weights"])
def test_attention_backward_finite_differences(given, masked, rng):
    steps, bsz, dq, dk, att = 4, 3, 3, 2, 3
    arrays = list(attention_inputs(rng, steps, bsz, dq, dk, att))
    mask = make_mask(rng, bsz, steps) if masked else None
    gctx = randn(rng, (bsz, dk))
    gw = randn(rng, (bsz, steps)) if given else None
    _, _, cache = ak.additive_attention_forward(*arrays, mask=mask)
    grads = ak.additive_attention_backward(gctx, gw, cache)
    check_fd(grads, lambda *a: functional(attention_ref(*a, mask), (gctx, gw)), arrays,
             ATTENTION_FIELDS, "additive_attention_backward")


def test_attention_keys_gradient_has_both_paths(rng):
    """grad keys = context path (weights * grad_context) + score path; with w_key = 0
    (scores independent of the keys) only the first remains, with v = 0 too."""
    q, k, wq, wk, v = attention_inputs(rng, 5, 2, 3, 4, 3)
    gctx = randn(rng, (2, 4))
    _, wts, cache = ak.additive_attention_forward(q, k, wq, wk, v)
    g = ak.additive_attention_backward(gctx, None, cache)
    context_path = wts.T[:, :, None] * gctx[None]
    assert np.abs(g.keys - context_path).max() > 1e-3  # the score path is there
    _, wts0, cache0 = ak.additive_attention_forward(q, k, wq, np.zeros_like(wk), v)
    g0 = ak.additive_attention_backward(gctx, None, cache0)
    assert_close(g0.keys, wts0.T[:, :, None] * gctx[None], np.float64, what="keys")


# ----------------------------------------------------------------------------------
# backward: both dtypes against the chain-rule references (larger shapes)
# ----------------------------------------------------------------------------------


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("steps,bsz,n_in,hid", [(6, 5, 7, 9), (3, 17, 24, 33), (1, 1, 1, 1)],
                         ids=str)
def test_lstm_backward_vs_reference(steps, bsz, n_in, hid, reverse, dtype, rng):
    args = lstm_inputs(rng, steps, bsz, n_in, hid, dtype)
    _, _, _, cache = ak.lstm_forward(*args, reverse=reverse)
    gy = randn(rng, (steps, bsz, hid), dtype)
    gh, gc = randn(rng, (bsz, hid), dtype), randn(rng, (bsz, hid), dtype)
    g = ak.lstm_backward(gy, gh, gc, cache)
    check_grads(g, lstm_backward_ref(gy, gh, gc, *args, reverse=reverse), dtype, LSTM_FIELDS,
                "lstm_backward")
    assert_no_sharing(g, args + (gy, gh, gc), "lstm_backward")


def test_lstm_cell_backward_vs_reference(dtype, rng):
    bsz, n_in, hid = 7, 10, 12
    x, h, c = randn(rng, (bsz, n_in), dtype), randn(rng, (bsz, hid), dtype), randn(
        rng, (bsz, hid), dtype)
    w = make_weights(rng, 4, n_in, hid, dtype)
    _, _, cache = ak.lstm_cell_forward(x, h, c, *w)
    gh, gc = randn(rng, (bsz, hid), dtype), randn(rng, (bsz, hid), dtype)
    for a, b in ((gh, gc), (gh, None), (None, gc)):
        g = ak.lstm_cell_backward(a, b, cache)
        ref = lstm_backward_ref(None if a is None else a[None], None, b, x[None], h, c, *w)
        check_grads(g, (ref[0][0],) + ref[1:], dtype, LSTM_CELL_FIELDS, "lstm_cell_backward")


@pytest.mark.parametrize("bsz,n_in,hid", [(5, 6, 7), (16, 20, 33)], ids=str)
def test_gru_rnn_cell_backward_vs_reference(bsz, n_in, hid, dtype, rng):
    x, h = randn(rng, (bsz, n_in), dtype), randn(rng, (bsz, hid), dtype)
    g = randn(rng, (bsz, hid), dtype)
    w = make_weights(rng, 3, n_in, hid, dtype)
    _, cache = ak.gru_cell_forward(x, h, *w)
    check_grads(ak.gru_cell_backward(g, cache), gru_cell_backward_ref(g, x, h, *w), dtype,
                CELL_FIELDS, "gru_cell_backward")
    for nl in ("tanh", "relu"):
        w = make_weights(rng, 1, n_in, hid, dtype)
        _, cache = ak.rnn_cell_forward(x, h, *w, nonlinearity=nl)
        check_grads(ak.rnn_cell_backward(g, cache), rnn_cell_backward_ref(g, x, h, *w, nl),
                    dtype, CELL_FIELDS, f"rnn_cell_backward {nl}")


@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
def test_attention_backward_vs_reference(masked, dtype, rng):
    steps, bsz, dq, dk, att = 9, 5, 6, 7, 8
    arrays = attention_inputs(rng, steps, bsz, dq, dk, att, dtype)
    mask = make_mask(rng, bsz, steps) if masked else None
    _, _, cache = ak.additive_attention_forward(*arrays, mask)
    gctx, gw = randn(rng, (bsz, dk), dtype), randn(rng, (bsz, steps), dtype)
    for w in (gw, None):
        check_grads(ak.additive_attention_backward(gctx, w, cache),
                    attention_backward_ref(gctx, w, *arrays, mask), dtype, ATTENTION_FIELDS,
                    "additive_attention_backward")


# ----------------------------------------------------------------------------------
# the cell and the sequence agree at T = 1
# ----------------------------------------------------------------------------------


def test_lstm_cell_matches_sequence_at_t1(dtype, rng):
    x, h, c, *w = lstm_inputs(rng, 1, 4, 5, 6, dtype)
    h1, c1, cell_cache = ak.lstm_cell_forward(x[0], h, c, *w)
    for reverse in (False, True):
        y, h_n, c_n, seq_cache = ak.lstm_forward(x, h, c, *w, reverse=reverse)
        assert_close(h1, y[0].astype(np.float64), dtype, what="h_next vs y[0]")
        assert_close(h1, h_n.astype(np.float64), dtype, what="h_next vs h_n")
        assert_close(c1, c_n.astype(np.float64), dtype, what="c_next vs c_n")
        gh, gc = randn(rng, (4, 6), dtype), randn(rng, (4, 6), dtype)
        gc_ = ak.lstm_cell_backward(gh, gc, cell_cache)
        gs = ak.lstm_backward(gh[None], None, gc, seq_cache)
        gs2 = ak.lstm_backward(None, gh, gc, seq_cache)
        for name_c, name_s in zip(LSTM_CELL_FIELDS, LSTM_FIELDS):
            a = getattr(gc_, name_c)
            for g in (gs, gs2):
                b = getattr(g, name_s)
                if name_c == "x":
                    b = b[0]
                assert_close(a, b.astype(np.float64), dtype, what=name_c)


# ----------------------------------------------------------------------------------
# strides, views and out=
# ----------------------------------------------------------------------------------


def _fortran(a):
    return np.asfortranarray(a)


def _strided(a):
    """The same values as a, every other element of a twice-as-big array."""
    big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
    big[..., ::2] = a
    return big[..., ::2]


def test_cells_non_contiguous_inputs(dtype, rng):
    bsz, n_in, hid = 4, 5, 3
    x, h, c = randn(rng, (bsz, n_in), dtype), randn(rng, (bsz, hid), dtype), randn(
        rng, (bsz, hid), dtype)
    g1, g2 = randn(rng, (bsz, hid), dtype), randn(rng, (bsz, hid), dtype)
    w = make_weights(rng, 4, n_in, hid, dtype)

    def views(arrays):
        return [None if a is None else (_fortran(a) if a.ndim == 2 and i % 2 == 0
                                        else _strided(a)) for i, a in enumerate(arrays)]

    base = ak.lstm_cell_forward(x, h, c, *w)
    other = ak.lstm_cell_forward(*views([x, h, c, *w]))
    for a, b in zip(base[:2], other[:2]):
        assert np.array_equal(a, b)
    ga = ak.lstm_cell_backward(g1, g2, base[2])
    gb = ak.lstm_cell_backward(_fortran(g1), _strided(g2), other[2])
    for a, b in zip(ga, gb):
        check_out(b, dtype, a.shape, "grad")
        assert np.array_equal(a, b)

    for gates, fwd, bwd in ((3, ak.gru_cell_forward, ak.gru_cell_backward),
                            (1, ak.rnn_cell_forward, ak.rnn_cell_backward)):
        w = make_weights(rng, gates, n_in, hid, dtype)
        base = fwd(x, h, *w)
        other = fwd(*views([x, h, *w]))
        assert np.array_equal(base[0], other[0])
        ga, gb = bwd(g1, base[1]), bwd(_strided(g1), other[1])
        for a, b in zip(ga, gb):
            check_out(b, dtype, a.shape, "grad")
            assert np.array_equal(a, b)


def test_attention_non_contiguous_inputs(dtype, rng):
    steps, bsz, dq, dk, att = 5, 3, 4, 3, 6
    q, k, wq, wk, v = attention_inputs(rng, steps, bsz, dq, dk, att, dtype)
    mask = make_mask(rng, bsz, steps)
    k_view = np.ascontiguousarray(k.transpose(1, 0, 2)).transpose(1, 0, 2)  # (T, B, Dk)
    assert not k_view.flags.c_contiguous
    mask_view = np.asfortranarray(mask)
    base = ak.additive_attention_forward(q, k, wq, wk, v, mask)
    other = ak.additive_attention_forward(_fortran(q), k_view, _strided(wq), _fortran(wk),
                                          _strided(v), mask_view)
    assert np.array_equal(base[0], other[0]) and np.array_equal(base[1], other[1])
    gctx, gw = randn(rng, (bsz, dk), dtype), randn(rng, (bsz, steps), dtype)
    ga = ak.additive_attention_backward(gctx, gw, base[2])
    gb = ak.additive_attention_backward(_fortran(gctx), _strided(gw), other[2])
    for a, b in zip(ga, gb):
        check_out(b, dtype, a.shape, "grad")
        assert np.array_equal(a, b)


@pytest.mark.parametrize("kind", ["row_strided", "transposed", "time_strided", "fortran"])
def test_lstm_forward_non_contiguous_x(kind, dtype, rng):
    steps, bsz, n_in, hid = 4, 3, 5, 4
    x, h0, c0, *w = lstm_inputs(rng, steps, bsz, n_in, hid, dtype)
    if kind == "row_strided":
        xx = randn(rng, (steps, bsz, n_in + 3), dtype)
        xx[:, :, :n_in] = x
        xv = xx[:, :, :n_in]
    elif kind == "transposed":
        xv = np.ascontiguousarray(x.transpose(1, 0, 2)).transpose(1, 0, 2)
    elif kind == "time_strided":
        xx = randn(rng, (2 * steps, bsz, n_in), dtype)
        xx[::2] = x
        xv = xx[::2]
    else:
        xv = np.asfortranarray(x)
    assert np.array_equal(xv, x) and not xv.flags.c_contiguous
    xv_before = xv.copy()
    for reverse in (False, True):
        y, h_n, c_n, cache = ak.lstm_forward(xv, h0, c0, *w, reverse=reverse)
        ry, rh, rc = lstm_ref(x, h0, c0, *w, reverse=reverse)
        assert_close(y, ry, dtype, what="y")
        assert_close(h_n, rh, dtype, what="h_n")
        assert_close(c_n, rc, dtype, what="c_n")
        gy = randn(rng, y.shape, dtype)
        g = ak.lstm_backward(gy, None, c_n, cache)
        check_grads(g, lstm_backward_ref(gy, None, c_n, x, h0, c0, *w, reverse=reverse), dtype,
                    LSTM_FIELDS, "lstm_backward")
    assert np.array_equal(xv, xv_before)


@pytest.mark.parametrize("steps,bsz", [(4, 3), (3, 1), (1, 3), (1, 1)], ids=str)
def test_lstm_bidirectional_out_halves(steps, bsz, dtype, rng):
    """Both directions write into halves of one (T, B, 2H) buffer, x read from a view,
    grad_y given as halves of one (T, B, 2H) gradient."""
    n_in, hid = 3, 4
    xx = randn(rng, (steps, bsz, n_in + 2), dtype)
    x = xx[:, :, 1:1 + n_in]
    h0, c0 = randn(rng, (bsz, hid), dtype), randn(rng, (bsz, hid), dtype)
    wf = make_weights(rng, 4, n_in, hid, dtype)
    wb = make_weights(rng, 4, n_in, hid, dtype)
    buf = np.full((steps, bsz, 2 * hid), 7.0, dtype)

    out_f = buf[:, :, :hid]
    y_f, h_f, c_f, cache_f = ak.lstm_forward(x, h0, c0, *wf, out=out_f)
    assert y_f is out_f
    assert np.all(buf[:, :, hid:] == 7.0), "the other half was written"
    ry_f, rh_f, rc_f = lstm_ref(x, h0, c0, *wf)
    assert_close(buf[:, :, :hid], ry_f, dtype, what="forward half")
    assert_close(h_f, rh_f, dtype, what="h_n")
    assert_close(c_f, rc_f, dtype, what="c_n")
    saved = buf[:, :, :hid].copy()

    out_b = buf[:, :, hid:]
    y_b, h_b, c_b, cache_b = ak.lstm_forward(x, h0, c0, *wb, reverse=True, out=out_b)
    assert y_b is out_b
    assert np.array_equal(buf[:, :, :hid], saved), "the forward half was overwritten"
    ry_b, rh_b, rc_b = lstm_ref(x, h0, c0, *wb, reverse=True)
    assert_close(buf[:, :, hid:], ry_b, dtype, what="reverse half")
    assert_close(h_b, rh_b, dtype, what="h_n (reverse)")

    gbuf = randn(rng, (steps, bsz, 2 * hid), dtype)
    gh = randn(rng, (bsz, hid), dtype)
    for cache, w, reverse, half in ((cache_f, wf, False, slice(0, hid)),
                                    (cache_b, wb, True, slice(hid, 2 * hid))):
        gy_view = gbuf[:, :, half]
        g = ak.lstm_backward(gy_view, gh, None, cache)
        ref = lstm_backward_ref(gy_view, gh, None, x, h0, c0, *w, reverse=reverse)
        check_grads(g, ref, dtype, LSTM_FIELDS, "lstm_backward")
        g2 = ak.lstm_backward(np.ascontiguousarray(gy_view), gh, None, cache)
        for a, b in zip(g, g2):
            assert_close(a, b.astype(np.float64), dtype, what="strided vs contiguous grad_y")


def test_lstm_forward_out_contiguous(dtype, rng):
    args = lstm_inputs(rng, 3, 2, 4, 5, dtype)
    out = np.full((3, 2, 5), np.nan, dtype)
    y, h_n, c_n, _ = ak.lstm_forward(*args, out=out)
    assert y is out
    assert_close(out, lstm_ref(*args)[0], dtype, what="y")


# ----------------------------------------------------------------------------------
# determinism and inputs left alone
# ----------------------------------------------------------------------------------


def test_determinism_and_inputs_unchanged(dtype, rng):
    steps, bsz, n_in, hid = 6, 8, 16, 24
    args = lstm_inputs(rng, steps, bsz, n_in, hid, dtype)
    gy = randn(rng, (steps, bsz, hid), dtype)
    gh, gc = randn(rng, (bsz, hid), dtype), randn(rng, (bsz, hid), dtype)
    before = [a.copy() for a in args + (gy, gh, gc)]

    def run_all():
        res = []
        for reverse in (False, True):
            y, h_n, c_n, cache = ak.lstm_forward(*args, reverse=reverse)
            res += [y, h_n, c_n, *ak.lstm_backward(gy, gh, gc, cache)]
        x0, h, c = args[0][0], args[1], args[2]
        h1, c1, cache = ak.lstm_cell_forward(x0, h, c, *args[3:])
        res += [h1, c1, *ak.lstm_cell_backward(gh, gc, cache)]
        wg = make_weights(np.random.default_rng(1), 3, n_in, hid, dtype)
        h1, cache = ak.gru_cell_forward(x0, h, *wg)
        res += [h1, *ak.gru_cell_backward(gh, cache)]
        wr = make_weights(np.random.default_rng(2), 1, n_in, hid, dtype)
        h1, cache = ak.rnn_cell_forward(x0, h, *wr, nonlinearity="relu")
        res += [h1, *ak.rnn_cell_backward(gh, cache)]
        att = attention_inputs(np.random.default_rng(3), steps, bsz, 5, 7, 9, dtype)
        mask = make_mask(np.random.default_rng(4), bsz, steps)
        ctx, wts, cache = ak.additive_attention_forward(*att, mask)
        res += [ctx, wts, *ak.additive_attention_backward(ctx, wts, cache)]
        return res

    first, second = run_all(), run_all()
    assert len(first) == len(second)
    for i, (a, b) in enumerate(zip(first, second)):
        assert np.array_equal(a, b), f"result {i} differs between two identical calls"
    for a, b in zip(args + (gy, gh, gc), before):
        assert np.array_equal(a, b), "an input was modified"


def test_saturated_inputs(dtype, rng):
    """Huge pre-activations (saturated gates, |scores| in the hundreds): finite results
    equal to the reference, no inf/inf or exp overflow inside the kernels. In float32 the
    gradients are ill-conditioned here (inputs of size 300 rounded to 24 bits move the
    pre-activations by ~1e-4), so they are compared normwise (1e-2 of the largest)."""

    def grads_ok(g, refs, fields, what):
        if dtype == np.float64:
            check_grads(g, refs, dtype, fields, what)
            return
        for name, got, ref in zip(fields, g, refs):
            check_out(got, dtype, ref.shape, f"{what}.{name}")
            assert np.isfinite(got).all(), f"{what}.{name}: not finite"
            scale = max(1.0, float(np.abs(ref).max()))
            assert np.abs(got - ref).max() <= 1e-2 * scale, f"{what}.{name}"

    steps, bsz, n_in, hid = 3, 4, 5, 3
    x, h0, c0, *w = lstm_inputs(rng, steps, bsz, n_in, hid, dtype)
    x = (x * 300).astype(dtype)
    for reverse in (False, True):
        y, h_n, c_n, cache = ak.lstm_forward(x, h0, c0, *w, reverse=reverse)
        ry, rh, rc = lstm_ref(x, h0, c0, *w, reverse=reverse)
        assert np.isfinite(y).all() and np.isfinite(c_n).all()
        assert_close(y, ry, dtype, what="y")
        assert_close(c_n, rc, dtype, what="c_n")
        gy = randn(rng, y.shape, dtype)
        g = ak.lstm_backward(gy, None, None, cache)
        grads_ok(g, lstm_backward_ref(gy, None, None, x, h0, c0, *w, reverse=reverse),
                    LSTM_FIELDS, "lstm_backward")
    xc, h = x[0], (randn(rng, (bsz, hid), dtype) * 100).astype(dtype)
    gh = randn(rng, (bsz, hid), dtype)
    wg = make_weights(rng, 3, n_in, hid, dtype)
    h1, cache = ak.gru_cell_forward(xc, h, *wg)
    assert_close(h1, gru_cell_ref(xc, h, *wg), dtype, what="gru h_next")
    grads_ok(ak.gru_cell_backward(gh, cache), gru_cell_backward_ref(gh, xc, h, *wg),
             CELL_FIELDS, "gru_cell_backward")
    wr = make_weights(rng, 1, n_in, hid, dtype)
    h1, cache = ak.rnn_cell_forward(xc, h, *wr)
    assert_close(h1, rnn_cell_ref(xc, h, *wr), dtype, what="rnn h_next")
    grads_ok(ak.rnn_cell_backward(gh, cache), rnn_cell_backward_ref(gh, xc, h, *wr),
             CELL_FIELDS, "rnn_cell_backward")
    q, k, wq, wk, v = attention_inputs(rng, 6, bsz, 4, 3, 5, dtype)
    v = (v * 300).astype(dtype)
    mask = make_mask(rng, bsz, 6)
    for m in (None, mask):
        ctx, wts, cache = ak.additive_attention_forward(q, k, wq, wk, v, m)
        r_ctx, r_w = attention_ref(q, k, wq, wk, v, m)
        assert np.isfinite(wts).all() and np.isfinite(ctx).all()
        assert_close(wts, r_w, dtype, what="weights")
        assert_close(ctx, r_ctx, dtype, what="context")
        gctx = randn(rng, ctx.shape, dtype)
        grads_ok(ak.additive_attention_backward(gctx, None, cache),
                    attention_backward_ref(gctx, None, q, k, wq, wk, v, m),
                    ATTENTION_FIELDS, "additive_attention_backward")


def test_float32_lstm_bitwise_identical_for_any_thread_count(restore_threads, rng):
    """The float32 LSTM runs every product (the recurrent ones and the backward's GEMMs
    over all steps) on the packed-weight GEMM, one FMA chain per element, and its
    pointwise passes elementwise: its outputs and gradients are the same bits whatever tiles
    the threads take (H = 70: column blocks on panel boundaries, batch rows split from 3
    threads). The chunks of a step and the pieces go to whichever thread claims them
    first, so each thread count runs several times: every run must give the 1-thread bits
    (T*B*H = 64*64*256 in the third case: 16 chunks per step for 2 threads to race over).
    A chunk starts once its rows' chunks of the step before are done, with no barrier
    between steps: the last case has 8 row groups of 3 chunks from 4 threads on, and 6
    and 8 threads are more than the cores (a thread waits on one that is not running); a
    missed wait reads a stale h or dG and changes the bits."""
    data = []
    for steps, bsz, n_in, hid, reverse in [(5, 7, 9, 70, False), (3, 16, 8, 100, True),
                                           (64, 64, 16, 256, False), (24, 64, 20, 96, True)]:
        args = lstm_inputs(rng, steps, bsz, n_in, hid, np.float32)
        grads_in = (randn(rng, (steps, bsz, hid), np.float32),
                    randn(rng, (bsz, hid), np.float32), randn(rng, (bsz, hid), np.float32))
        data.append((args, reverse, grads_in))

    def run():
        out = []
        for args, reverse, grads_in in data:
            y, h_n, c_n, cache = ak.lstm_forward(*args, reverse=reverse)
            out += [y, h_n, c_n, *ak.lstm_backward(*grads_in, cache)]
        return out

    results = {}
    for threads in (1, 2, 3, 4, 5, 6, 8):
        ak.set_num_threads(threads)
        results[threads] = [run() for _ in range(1 if threads == 1 else 3)]
    for threads, runs in results.items():
        for out in runs:
            for i, (a, b) in enumerate(zip(results[1][0], out)):
                assert np.array_equal(a, b), f"array {i} on {threads} threads differs from 1 thread"


def test_float64_lstm_row_groups_repeatable(restore_threads, rng):
    """float64 runs a chunk's gate GEMMs on the BLAS, whose bits follow the chunk shapes
    (set by the thread count), so each thread count is checked against its own first run
    and against the reference. Row groups run ahead of each other as in float32."""
    steps, bsz, n_in, hid = 24, 64, 20, 96
    args = lstm_inputs(rng, steps, bsz, n_in, hid)
    gy, gh, gc = randn(rng, (steps, bsz, hid)), randn(rng, (bsz, hid)), randn(rng, (bsz, hid))
    for reverse in (False, True):
        ref_y = lstm_ref(*args, reverse=reverse)[0]
        ref_g = lstm_backward_ref(gy, gh, gc, *args, reverse=reverse)
        for threads in (2, 4, 8):
            ak.set_num_threads(threads)
            runs = []
            for _ in range(3):
                y, h_n, c_n, cache = ak.lstm_forward(*args, reverse=reverse)
                runs.append((y, ak.lstm_backward(gy, gh, gc, cache)))
            for y, grads in runs[1:]:
                assert np.array_equal(y, runs[0][0]), f"y, {threads} threads: runs differ"
                for name, a, b in zip(LSTM_FIELDS, grads, runs[0][1]):
                    assert np.array_equal(a, b), f"{name}, {threads} threads: runs differ"
            assert_close(runs[0][0], ref_y, np.float64, what="y")
            check_grads(runs[0][1], ref_g, np.float64, LSTM_FIELDS, "lstm_backward")


@pytest.mark.parametrize("threads", [1, 3, 5])
def test_thread_counts(threads, restore_threads, rng):
    """Odd thread counts (tiles of batch rows x hidden units that do not divide evenly)
    give the reference's results (GEMM kernels: not necessarily bitwise the same)."""
    ak.set_num_threads(threads)
    steps, bsz, n_in, hid = 4, 7, 9, 13
    for reverse in (False, True):
        args = lstm_inputs(rng, steps, bsz, n_in, hid)
        y, h_n, c_n, cache = ak.lstm_forward(*args, reverse=reverse)
        assert_close(y, lstm_ref(*args, reverse=reverse)[0], np.float64, what="y")
        gy, gc = randn(rng, y.shape), randn(rng, (bsz, hid))
        check_grads(ak.lstm_backward(gy, None, gc, cache),
                    lstm_backward_ref(gy, None, gc, *args, reverse=reverse), np.float64,
                    LSTM_FIELDS, "lstm_backward")
    x, h = randn(rng, (bsz, n_in)), randn(rng, (bsz, hid))
    w = make_weights(rng, 3, n_in, hid)
    h1, cache = ak.gru_cell_forward(x, h, *w)
    assert_close(h1, gru_cell_ref(x, h, *w), np.float64, what="gru h_next")
    check_grads(ak.gru_cell_backward(y[0], cache), gru_cell_backward_ref(y[0], x, h, *w),
                np.float64, CELL_FIELDS, "gru_cell_backward")
    arrays = attention_inputs(rng, 6, bsz, 5, 4, 7)
    mask = make_mask(rng, bsz, 6)
    ctx, wts, cache = ak.additive_attention_forward(*arrays, mask)
    r_ctx, r_w = attention_ref(*arrays, mask)
    assert_close(ctx, r_ctx, np.float64, what="context")
    assert_close(wts, r_w, np.float64, what="weights")
    gctx = randn(rng, ctx.shape)
    check_grads(ak.additive_attention_backward(gctx, wts, cache),
                attention_backward_ref(gctx, wts, *arrays, mask), np.float64, ATTENTION_FIELDS,
                "additive_attention_backward")


# ----------------------------------------------------------------------------------
# property tests
# ----------------------------------------------------------------------------------


@HYPOTHESIS
@given(st.integers(0, 5), st.integers(0, 3), st.integers(1, 5), st.integers(1, 5),
       st.booleans(), st.sampled_from(list(BIASES)),
       st.sampled_from([np.float32, np.float64]), st.integers(0, 2**32 - 1))
def test_lstm_forward_property(steps, bsz, n_in, hid, reverse, bias, dtype, seed):
    rng = np.random.default_rng(seed)
    args = lstm_inputs(rng, steps, bsz, n_in, hid, dtype, bias)
    y, h_n, c_n, _ = ak.lstm_forward(*args, reverse=reverse)
    ry, rh, rc = lstm_ref(*args, reverse=reverse)
    assert_close(y, ry, dtype, what="y")
    assert_close(h_n, rh, dtype, what="h_n")
    assert_close(c_n, rc, dtype, what="c_n")


@HYPOTHESIS
@given(st.integers(0, 4), st.integers(0, 3), st.integers(1, 4), st.integers(1, 4),
       st.booleans(), st.sampled_from(list(BIASES)), st.tuples(*[st.booleans()] * 3),
       st.sampled_from([np.float32, np.float64]), st.integers(0, 2**32 - 1))
def test_lstm_backward_property(steps, bsz, n_in, hid, reverse, bias, given_, dtype, seed):
    rng = np.random.default_rng(seed)
    args = lstm_inputs(rng, steps, bsz, n_in, hid, dtype, bias)
    _, _, _, cache = ak.lstm_forward(*args, reverse=reverse)
    gy = randn(rng, (steps, bsz, hid), dtype) if given_[0] else None
    gh = randn(rng, (bsz, hid), dtype) if given_[1] else None
    gc = randn(rng, (bsz, hid), dtype) if given_[2] else None
    g = ak.lstm_backward(gy, gh, gc, cache)
    check_grads(g, lstm_backward_ref(gy, gh, gc, *args, reverse=reverse), dtype, LSTM_FIELDS,
                "lstm_backward")


# ----------------------------------------------------------------------------------
# optional cross-checks against PyTorch (float64, forward and backward)
# ----------------------------------------------------------------------------------


def _set_params(torch, module, suffix, w_ih, w_hh, b_ih, b_hh):
    with torch.no_grad():
        getattr(module, "weight_ih" + suffix).copy_(torch.from_numpy(w_ih))
        getattr(module, "weight_hh" + suffix).copy_(torch.from_numpy(w_hh))
        getattr(module, "bias_ih" + suffix).copy_(torch.from_numpy(b_ih))
        getattr(module, "bias_hh" + suffix).copy_(torch.from_numpy(b_hh))


def _torch_grads(torch, module, suffix):
    return [getattr(module, n + suffix).grad.numpy()
            for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]


def test_lstm_cell_vs_torch(rng):
    torch = pytest.importorskip("torch")
    bsz, n_in, hid = 3, 5, 4
    x, h, c = randn(rng, (bsz, n_in)), randn(rng, (bsz, hid)), randn(rng, (bsz, hid))
    w = make_weights(rng, 4, n_in, hid)
    gh, gc = randn(rng, (bsz, hid)), randn(rng, (bsz, hid))
    m = torch.nn.LSTMCell(n_in, hid).double()
    _set_params(torch, m, "", *w)
    xt, ht, ct = (torch.tensor(a, requires_grad=True) for a in (x, h, c))
    h1t, c1t = m(xt, (ht, ct))
    ((h1t * torch.from_numpy(gh)).sum() + (c1t * torch.from_numpy(gc)).sum()).backward()
    h1, c1, cache = ak.lstm_cell_forward(x, h, c, *w)
    assert_close(h1, h1t.detach().numpy(), np.float64, what="h_next")
    assert_close(c1, c1t.detach().numpy(), np.float64, what="c_next")
    refs = [xt.grad.numpy(), ht.grad.numpy(), ct.grad.numpy()] + _torch_grads(torch, m, "")
    check_grads(ak.lstm_cell_backward(gh, gc, cache), refs, np.float64, LSTM_CELL_FIELDS,
                "lstm_cell_backward")


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_lstm_vs_torch(reverse, rng):
    torch = pytest.importorskip("torch")
    steps, bsz, n_in, hid = 5, 3, 4, 6
    x, h0, c0, *w = lstm_inputs(rng, steps, bsz, n_in, hid)
    gy, gh, gc = randn(rng, (steps, bsz, hid)), randn(rng, (bsz, hid)), randn(rng, (bsz, hid))
    m = torch.nn.LSTM(n_in, hid, num_layers=1).double()
    _set_params(torch, m, "_l0", *w)
    xt = torch.tensor(x, requires_grad=True)
    h0t = torch.tensor(h0[None], requires_grad=True)
    c0t = torch.tensor(c0[None], requires_grad=True)
    # the reverse direction is torch's forward LSTM on the flipped sequence
    yt, (hnt, cnt) = m(xt.flip(0) if reverse else xt, (h0t, c0t))
    if reverse:
        yt = yt.flip(0)
    loss = ((yt * torch.from_numpy(gy)).sum() + (hnt[0] * torch.from_numpy(gh)).sum()
            + (cnt[0] * torch.from_numpy(gc)).sum())
    loss.backward()
    y, h_n, c_n, cache = ak.lstm_forward(x, h0, c0, *w, reverse=reverse)
    assert_close(y, yt.detach().numpy(), np.float64, what="y")
    assert_close(h_n, hnt[0].detach().numpy(), np.float64, what="h_n")
    assert_close(c_n, cnt[0].detach().numpy(), np.float64, what="c_n")
    refs = [xt.grad.numpy(), h0t.grad[0].numpy(), c0t.grad[0].numpy()]
    refs += _torch_grads(torch, m, "_l0")
    check_grads(ak.lstm_backward(gy, gh, gc, cache), refs, np.float64, LSTM_FIELDS,
                "lstm_backward")


def test_gru_cell_vs_torch(rng):
    torch = pytest.importorskip("torch")
    bsz, n_in, hid = 4, 3, 5
    x, h, g = randn(rng, (bsz, n_in)), randn(rng, (bsz, hid)), randn(rng, (bsz, hid))
    w = make_weights(rng, 3, n_in, hid)
    m = torch.nn.GRUCell(n_in, hid).double()
    _set_params(torch, m, "", *w)
    xt, ht = torch.tensor(x, requires_grad=True), torch.tensor(h, requires_grad=True)
    h1t = m(xt, ht)
    (h1t * torch.from_numpy(g)).sum().backward()
    h1, cache = ak.gru_cell_forward(x, h, *w)
    assert_close(h1, h1t.detach().numpy(), np.float64, what="h_next")
    refs = [xt.grad.numpy(), ht.grad.numpy()] + _torch_grads(torch, m, "")
    check_grads(ak.gru_cell_backward(g, cache), refs, np.float64, CELL_FIELDS,
                "gru_cell_backward")


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_rnn_cell_vs_torch(nonlinearity, rng):
    torch = pytest.importorskip("torch")
    bsz, n_in, hid = 4, 3, 5
    x, h, g = randn(rng, (bsz, n_in)), randn(rng, (bsz, hid)), randn(rng, (bsz, hid))
    w = make_weights(rng, 1, n_in, hid)
    m = torch.nn.RNNCell(n_in, hid, nonlinearity=nonlinearity).double()
    _set_params(torch, m, "", *w)
    xt, ht = torch.tensor(x, requires_grad=True), torch.tensor(h, requires_grad=True)
    h1t = m(xt, ht)
    (h1t * torch.from_numpy(g)).sum().backward()
    h1, cache = ak.rnn_cell_forward(x, h, *w, nonlinearity=nonlinearity)
    assert_close(h1, h1t.detach().numpy(), np.float64, what="h_next")
    refs = [xt.grad.numpy(), ht.grad.numpy()] + _torch_grads(torch, m, "")
    check_grads(ak.rnn_cell_backward(g, cache), refs, np.float64, CELL_FIELDS,
                "rnn_cell_backward")


# ----------------------------------------------------------------------------------
# argument validation
# ----------------------------------------------------------------------------------


def _raises(exc, arg, call, shape=None):
    """call() raises exc whose message names arg (and the given shape, if any)."""
    with pytest.raises(exc) as e:
        call()
    msg = str(e.value)
    assert names(msg, arg), f"message does not name {arg!r}: {msg}"
    if shape is not None:
        assert _shape_text(shape) in msg, f"message does not show the shape {shape}: {msg}"
    return msg


def test_lstm_cell_validation(rng):
    B, I, H = 2, 3, 4
    x, h, c = randn(rng, (B, I)), randn(rng, (B, H)), randn(rng, (B, H))
    w_ih, w_hh, b_ih, b_hh = make_weights(rng, 4, I, H)
    f = ak.lstm_cell_forward
    _raises(ValueError, "w_ih", lambda: f(x, h, c, randn(rng, (4 * H, I + 1)), w_hh), (16, 4))
    _raises(ValueError, "w_ih", lambda: f(x, h, c, randn(rng, (3 * H, I)), w_hh), (12, 3))
    _raises(ValueError, "w_ih", lambda: f(x, h, c, randn(rng, (4 * H * I,)), w_hh), (48,))
    _raises(ValueError, "w_hh", lambda: f(x, h, c, w_ih, randn(rng, (4 * H, H + 1))), (16, 5))
    _raises(ValueError, "w_hh", lambda: f(x, h, c, w_ih, randn(rng, (H, H))), (4, 4))
    _raises(ValueError, "b_ih", lambda: f(x, h, c, w_ih, w_hh, randn(rng, (4 * H + 1,)), b_hh),
            (17,))
    _raises(ValueError, "b_hh", lambda: f(x, h, c, w_ih, w_hh, b_ih, randn(rng, (H,))), (4,))
    _raises(ValueError, "b_ih", lambda: f(x, h, c, w_ih, w_hh, randn(rng, (1, 4 * H))),
            (1, 16))
    _raises(ValueError, "c", lambda: f(x, h, randn(rng, (B + 1, H)), w_ih, w_hh), (3, 4))
    _raises(ValueError, "c", lambda: f(x, h, randn(rng, (B, H + 1)), w_ih, w_hh), (2, 5))
    _raises(ValueError, "h", lambda: f(x, randn(rng, (B + 1, H)), randn(rng, (B + 1, H)),
                                       w_ih, w_hh), (3, 4))
    _raises(ValueError, "x", lambda: f(randn(rng, (1, B, I)), h, c, w_ih, w_hh), (1, 2, 3))
    _raises(ValueError, "x", lambda: f(randn(rng, (I,)), h, c, w_ih, w_hh), (3,))
    _raises(ValueError, "h", lambda: f(x, randn(rng, (H,)), c, w_ih, w_hh), (4,))
    # dtypes
    _raises(TypeError, "w_hh", lambda: f(x, h, c, w_ih, w_hh.astype(np.float32)))
    _raises(TypeError, "b_hh", lambda: f(x, h, c, w_ih, w_hh, b_ih, b_hh.astype(np.float32)))
    _raises(TypeError, "c", lambda: f(x, h, c.astype(np.float32), w_ih, w_hh))
    _raises(TypeError, "x", lambda: f(x.astype(np.int64), h, c, w_ih, w_hh))
    _raises(TypeError, "w_ih", lambda: f(x.astype(np.float32), h.astype(np.float32),
                                         c.astype(np.float32), w_ih.astype(np.float16),
                                         w_hh.astype(np.float32)))
    with pytest.raises(TypeError):
        f(x.tolist(), h, c, w_ih, w_hh)
    # backward
    h1, c1, cache = f(x, h, c, w_ih, w_hh, b_ih, b_hh)
    bwd = ak.lstm_cell_backward
    _raises(ValueError, "grad_h_next", lambda: bwd(randn(rng, (B, H + 1)), c1, cache), (2, 5))
    _raises(ValueError, "grad_c_next", lambda: bwd(h1, randn(rng, (B + 1, H)), cache), (3, 4))
    _raises(ValueError, "grad_h_next", lambda: bwd(randn(rng, (1, B, H)), None, cache),
            (1, 2, 4))
    _raises(TypeError, "grad_h_next", lambda: bwd(h1.astype(np.float32), c1, cache))
    _raises(TypeError, "cache", lambda: bwd(h1, c1, tuple(cache)))
    _, _, _, seq_cache = ak.lstm_forward(x[None], h, c, w_ih, w_hh)
    _raises(TypeError, "cache", lambda: bwd(h1, c1, seq_cache))
    _raises(TypeError, "cache", lambda: bwd(h1, c1, None))


def test_lstm_sequence_validation(rng):
    T, B, I, H = 3, 2, 3, 4
    x, h0, c0, w_ih, w_hh, b_ih, b_hh = lstm_inputs(rng, T, B, I, H)
    f = ak.lstm_forward
    _raises(ValueError, "x", lambda: f(x[0], h0, c0, w_ih, w_hh), (2, 3))
    _raises(ValueError, "x", lambda: f(x[None], h0, c0, w_ih, w_hh), (1, 3, 2, 3))
    _raises(ValueError, "h0", lambda: f(x, randn(rng, (B + 1, H)), c0, w_ih, w_hh), (3, 4))
    _raises(ValueError, "h0", lambda: f(x, randn(rng, (B, H, 1)), c0, w_ih, w_hh), (2, 4, 1))
    _raises(ValueError, "c0", lambda: f(x, h0, randn(rng, (B + 1, H)), w_ih, w_hh), (3, 4))
    _raises(ValueError, "c0", lambda: f(x, h0, randn(rng, (B, H - 1)), w_ih, w_hh), (2, 3))
    _raises(ValueError, "w_ih", lambda: f(x, h0, c0, randn(rng, (4 * H, I + 1)), w_hh), (16, 4))
    _raises(ValueError, "w_hh", lambda: f(x, h0, c0, w_ih, randn(rng, (4 * H, H - 1))), (16, 3))
    _raises(ValueError, "b_ih", lambda: f(x, h0, c0, w_ih, w_hh, randn(rng, (3 * H,))), (12,))
    _raises(ValueError, "b_hh", lambda: f(x, h0, c0, w_ih, w_hh, None, randn(rng, (5,))), (5,))
    _raises(TypeError, "w_ih", lambda: f(x, h0, c0, w_ih.astype(np.float32), w_hh))
    _raises(TypeError, "h0", lambda: f(x, h0.astype(np.float32), c0, w_ih, w_hh))
    with pytest.raises((TypeError, ValueError)):
        f(x, h0, c0, w_ih, w_hh, reverse="yes")
    # out=
    out = np.empty((T, B, H))
    out.flags.writeable = False
    _raises(ValueError, "out", lambda: f(x, h0, c0, w_ih, w_hh, out=out))
    _raises(ValueError, "out", lambda: f(x, h0, c0, w_ih, w_hh, out=np.empty((T, B, H + 1))),
            (3, 2, 5))
    _raises(ValueError, "out", lambda: f(x, h0, c0, w_ih, w_hh, out=np.empty((T + 1, B, H))),
            (4, 2, 4))
    _raises(ValueError, "out", lambda: f(x, h0, c0, w_ih, w_hh, out=np.empty((T * B, H))),
            (6, 4))
    _raises(ValueError, "out",
            lambda: f(x, h0, c0, w_ih, w_hh, out=np.empty((T, B, 2 * H))[:, :, ::2]))
    _raises(TypeError, "out",
            lambda: f(x, h0, c0, w_ih, w_hh, out=np.empty((T, B, H), np.float32)))
    shared = randn(rng, (T, B, max(I, H)))
    _raises(ValueError, "out", lambda: f(shared[:, :, :I], h0, c0, w_ih, w_hh,
                                         out=shared[:, :, :H]))
    # a failed call with out= leaves it alone
    out = np.full((T, B, H), 3.0)
    with pytest.raises(ValueError):
        f(x, h0, c0, w_ih, randn(rng, (4 * H, H + 1)), out=out)
    assert np.all(out == 3.0)
    # backward
    y, h_n, c_n, cache = f(x, h0, c0, w_ih, w_hh, b_ih, b_hh)
    bwd = ak.lstm_backward
    _raises(ValueError, "grad_y", lambda: bwd(randn(rng, (T, B, H + 1)), h_n, c_n, cache),
            (3, 2, 5))
    _raises(ValueError, "grad_y", lambda: bwd(randn(rng, (T + 1, B, H)), h_n, c_n, cache),
            (4, 2, 4))
    _raises(ValueError, "grad_y", lambda: bwd(randn(rng, (B, H)), h_n, c_n, cache), (2, 4))
    _raises(ValueError, "grad_h_n", lambda: bwd(y, randn(rng, (B + 1, H)), c_n, cache), (3, 4))
    _raises(ValueError, "grad_c_n", lambda: bwd(y, h_n, randn(rng, (B, H + 1)), cache), (2, 5))
    _raises(TypeError, "grad_y", lambda: bwd(y.astype(np.float32), h_n, c_n, cache))
    _raises(TypeError, "grad_c_n", lambda: bwd(y, h_n, c_n.astype(np.float32), cache))
    _, _, cell_cache = ak.lstm_cell_forward(x[0], h0, c0, w_ih, w_hh)
    _raises(TypeError, "cache", lambda: bwd(y, h_n, c_n, cell_cache))
    _raises(TypeError, "cache", lambda: bwd(y, h_n, c_n, tuple(cache)))


def test_gru_rnn_validation(rng):
    B, I, H = 2, 3, 4
    x, h = randn(rng, (B, I)), randn(rng, (B, H))
    wg = make_weights(rng, 3, I, H)
    wr = make_weights(rng, 1, I, H)
    for fwd, w, G in ((ak.gru_cell_forward, wg, 3), (ak.rnn_cell_forward, wr, 1)):
        w_ih, w_hh, b_ih, b_hh = w
        _raises(ValueError, "w_ih", lambda: fwd(x, h, randn(rng, ((G + 1) * H, I)), w_hh),
                ((G + 1) * H, I))
        _raises(ValueError, "w_ih", lambda: fwd(x, h, randn(rng, (G * H, I + 2)), w_hh),
                (G * H, I + 2))
        _raises(ValueError, "w_hh", lambda: fwd(x, h, w_ih, randn(rng, (G * H, H + 1))),
                (G * H, H + 1))
        _raises(ValueError, "b_ih", lambda: fwd(x, h, w_ih, w_hh, randn(rng, (G * H + 1,))),
                (G * H + 1,))
        _raises(ValueError, "b_hh", lambda: fwd(x, h, w_ih, w_hh, b_ih, randn(rng, (4 * H,))),
                (4 * H,))
        _raises(ValueError, "x", lambda: fwd(x[None], h, w_ih, w_hh), (1, 2, 3))
        _raises(ValueError, "h", lambda: fwd(x, randn(rng, (B + 1, H)), w_ih, w_hh), (3, 4))
        _raises(TypeError, "w_hh", lambda: fwd(x, h, w_ih, w_hh.astype(np.float32)))
        _raises(TypeError, "b_ih", lambda: fwd(x, h, w_ih, w_hh, b_ih.astype(np.float32)))
    _raises(ValueError, "nonlinearity",
            lambda: ak.rnn_cell_forward(x, h, *wr, nonlinearity="sigmoid"))
    _raises(ValueError, "nonlinearity",
            lambda: ak.rnn_cell_forward(x, h, *wr, nonlinearity="Tanh"))
    h1, gcache = ak.gru_cell_forward(x, h, *wg)
    r1, rcache = ak.rnn_cell_forward(x, h, *wr)
    for bwd, cache, other in ((ak.gru_cell_backward, gcache, rcache),
                              (ak.rnn_cell_backward, rcache, gcache)):
        _raises(ValueError, "grad_h_next", lambda: bwd(randn(rng, (B, H + 1)), cache), (2, 5))
        _raises(ValueError, "grad_h_next", lambda: bwd(randn(rng, (B * H,)), cache), (8,))
        _raises(TypeError, "grad_h_next", lambda: bwd(h1.astype(np.float32), cache))
        _raises(TypeError, "cache", lambda: bwd(h1, other))
        _raises(TypeError, "cache", lambda: bwd(h1, tuple(cache)))


def test_attention_validation(rng):
    T, B, Dq, Dk, A = 4, 3, 5, 2, 6
    q, k, wq, wk, v = attention_inputs(rng, T, B, Dq, Dk, A)
    mask = make_mask(rng, B, T)
    f = ak.additive_attention_forward
    _raises(ValueError, "mask", lambda: f(q, k, wq, wk, v, np.ones((B, T + 1), bool)), (3, 5))
    _raises(ValueError, "mask", lambda: f(q, k, wq, wk, v, np.ones((T, B), bool)), (4, 3))
    _raises(ValueError, "mask", lambda: f(q, k, wq, wk, v, np.ones((B * T,), bool)), (12,))
    bad = mask.copy()
    bad[1] = False
    _raises(ValueError, "mask", lambda: f(q, k, wq, wk, v, bad))
    _raises(TypeError, "mask", lambda: f(q, k, wq, wk, v, mask.astype(np.float64)))
    _raises(TypeError, "mask", lambda: f(q, k, wq, wk, v, mask.astype(np.int64)))
    _raises(ValueError, "w_query", lambda: f(q, k, randn(rng, (A, Dq + 1)), wk, v), (6, 6))
    _raises(ValueError, "w_key", lambda: f(q, k, wq, randn(rng, (A, Dk + 1)), v), (6, 3))
    _raises(ValueError, "w_key", lambda: f(q, k, wq, randn(rng, (A + 1, Dk)), v), (7, 2))
    _raises(ValueError, "v", lambda: f(q, k, wq, wk, randn(rng, (A + 1,))), (7,))
    _raises(ValueError, "keys", lambda: f(q, randn(rng, (T, B + 1, Dk)), wq, wk, v), (4, 4, 2))
    _raises(ValueError, "keys", lambda: f(q, randn(rng, (T, B)), wq, wk, v), (4, 3))
    _raises(ValueError, "query", lambda: f(randn(rng, (B, Dq, 1)), k, wq, wk, v), (3, 5, 1))
    _raises(TypeError, "keys", lambda: f(q, k.astype(np.float32), wq, wk, v))
    _raises(TypeError, "v", lambda: f(q, k, wq, wk, v.astype(np.float32)))
    ctx, wts, cache = f(q, k, wq, wk, v, mask)
    bwd = ak.additive_attention_backward
    _raises(ValueError, "grad_context", lambda: bwd(randn(rng, (B, Dk + 1)), wts, cache), (3, 3))
    _raises(ValueError, "grad_weights", lambda: bwd(ctx, randn(rng, (B, T + 1)), cache), (3, 5))
    _raises(ValueError, "grad_weights", lambda: bwd(ctx, randn(rng, (T, B)), cache), (4, 3))
    _raises(TypeError, "grad_context", lambda: bwd(ctx.astype(np.float32), wts, cache))
    _raises(TypeError, "cache", lambda: bwd(ctx, wts, tuple(cache)))
    _, rcache = ak.rnn_cell_forward(randn(rng, (B, 2)), randn(rng, (B, 2)),
                                    *make_weights(rng, 1, 2, 2))
    _raises(TypeError, "cache", lambda: bwd(ctx, wts, rcache))


# ---- caches are checked like arguments ------------------------------------------------


def test_tampered_cache_fields_are_rejected_by_name(rng):
    """A cache is a NamedTuple anyone can build or _replace: every field is checked
    (dtype, shape consistent with x, h and the weights) before a kernel reads it."""
    x, h, c = randn(rng, (3, 4)), randn(rng, (3, 5)), randn(rng, (3, 5))
    w_ih, w_hh = randn(rng, (20, 4)), randn(rng, (20, 5))
    _, _, cache = ak.lstm_cell_forward(x, h, c, w_ih, w_hh)
    bad = {
        "gates": (cache.gates[:, :19].copy(), ValueError),
        "c_next": (cache.c_next.astype(np.float32), TypeError),
        "w_hh": (cache.w_hh.T, ValueError),
        "h": (None, TypeError),
    }
    for field, (value, exc) in bad.items():
        with pytest.raises(exc) as info:
            ak.lstm_cell_backward(None, None, cache._replace(**{field: value}))
        msg = str(info.value)
        assert msg.startswith("lstm_cell_backward: cache.") and names(msg, f"cache.{field}"), msg
    y, _, _, seq = ak.lstm_forward(x[None], h, c, w_ih, w_hh)
    with pytest.raises(TypeError, match="cache.reverse"):
        ak.lstm_backward(y, None, None, seq._replace(reverse=np.ones(3)))
    _, rcache = ak.rnn_cell_forward(x, h, w_ih[:5], w_hh[:5])
    with pytest.raises(ValueError, match="nonlinearity"):
        ak.rnn_cell_backward(h, rcache._replace(nonlinearity=np.array(["tanh"])))
