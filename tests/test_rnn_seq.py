"""Whole-sequence GRU and Elman RNN (gru_forward/backward, rnn_forward/backward) against
the step-by-step float64 references of reference_rnn.py, PyTorch's nn.GRU and nn.RNN,
and central finite differences; plus the sequence conventions of lstm_forward (reverse,
out= views, row-strided x and grad_y, empty sequences and batches), bitwise results for
any thread count, and argument and cache validation.
"""

from __future__ import annotations

import numpy as np
import pytest

import adlkernels as ak
from reference import assert_close
from reference_rnn import functional, gru_ref, numerical_grad, rnn_ref
from test_rnn import BIASES, _raises, check_fd, check_out, make_weights, randn

FIELDS = ("x", "h0", "w_ih", "w_hh", "b_ih", "b_hh")
GATES = {"gru": 3, "tanh": 1, "relu": 1}  # the kinds tested: GRU and RNN per nonlinearity
KINDS = list(GATES)


# ---- helpers --------------------------------------------------------------------------


def inputs(rng, kind, steps, bsz, n_in, hid, dtype=np.float64, bias="both"):
    x = randn(rng, (steps, bsz, n_in), dtype)
    h0 = randn(rng, (bsz, hid), dtype, 0.8)
    return (x, h0) + make_weights(rng, GATES[kind], n_in, hid, dtype, bias)


def forward(kind, *args, **kw):
    if kind == "gru":
        return ak.gru_forward(*args, **kw)
    return ak.rnn_forward(*args, nonlinearity=kind, **kw)


def backward(kind, *args):
    return (ak.gru_backward if kind == "gru" else ak.rnn_backward)(*args)


def reference(kind, *args, reverse=False):
    if kind == "gru":
        return gru_ref(*args, reverse=reverse)
    return rnn_ref(*args, nonlinearity=kind, reverse=reverse)


def check_grads(grads, refs, dtype, what):
    assert tuple(grads._fields) == FIELDS, grads._fields
    for name, got, ref in zip(FIELDS, grads, refs):
        if ref is None:
            assert got is None, f"{what}.{name}: expected None (its bias was None)"
            continue
        check_out(got, dtype, ref.shape, f"{what}.{name}")
        assert_close(got, ref, dtype, what=f"{what}.{name}")


# ---- names ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["gru_forward", "gru_backward", "rnn_forward", "rnn_backward"])
def test_names_importable(name):
    assert getattr(ak, name) is getattr(ak.rnn, name)
    assert name in ak.__all__ and name in ak.rnn.__all__


# ---- forward against the step-by-step reference ----------------------------------------

SHAPES = [(5, 3, 4, 6), (1, 2, 3, 4), (4, 1, 1, 1), (3, 2, 5, 1), (7, 9, 20, 37),
          (3, 33, 50, 70), (2, 5, 8, 130), (3, 0, 2, 3), (0, 2, 3, 4)]


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("steps,bsz,n_in,hid", SHAPES, ids=str)
@pytest.mark.parametrize("kind", KINDS)
def test_forward(kind, steps, bsz, n_in, hid, reverse, dtype, rng):
    args = inputs(rng, kind, steps, bsz, n_in, hid, dtype)
    out = forward(kind, *args, reverse=reverse)
    assert isinstance(out, tuple) and len(out) == 3
    y, h_n, _ = out
    ry, rh = reference(kind, *args, reverse=reverse)
    check_out(y, dtype, (steps, bsz, hid), "y")
    check_out(h_n, dtype, (bsz, hid), "h_n")
    assert_close(y, ry, dtype, what="y")
    assert_close(h_n, rh, dtype, what="h_n")
    for o in (y, h_n):
        assert not any(np.shares_memory(o, a) for a in args if a is not None)
    if steps and bsz:
        assert np.array_equal(h_n, y[0 if reverse else steps - 1])


@pytest.mark.parametrize("bias", list(BIASES))
@pytest.mark.parametrize("kind", KINDS)
def test_bias_combinations(kind, bias, dtype, rng):
    args = inputs(rng, kind, 4, 3, 5, 6, dtype, bias)
    y, h_n, cache = forward(kind, *args)
    assert_close(y, reference(kind, *args)[0], dtype, what="y")
    g = backward(kind, randn(rng, y.shape, dtype), None, cache)
    assert (g.b_ih is None) == (args[4] is None) and (g.b_hh is None) == (args[5] is None)
    if g.b_ih is not None and g.b_hh is not None:
        assert not np.shares_memory(g.b_ih, g.b_hh)


def test_reverse_is_forward_on_flipped_sequence(dtype, rng):
    for kind in KINDS:
        x, h0, *w = inputs(rng, kind, 5, 3, 4, 3, dtype)
        y_r, h_r, _ = forward(kind, x, h0, *w, reverse=True)
        y_f, h_f, _ = forward(kind, np.ascontiguousarray(x[::-1]), h0, *w)
        assert_close(y_r, y_f[::-1].astype(np.float64), dtype, what=f"{kind} y")
        assert_close(h_r, h_f.astype(np.float64), dtype, what=f"{kind} h_n")


# ---- gradients: finite differences (float64, tiny sizes) --------------------------------


@pytest.mark.parametrize("given", [(True, True), (True, False), (False, True)],
                         ids=["grad_y+grad_h_n", "grad_y", "grad_h_n"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("kind", KINDS)
def test_backward_finite_differences(kind, reverse, given, rng):
    steps, bsz, n_in, hid = 3, 2, 3, 3
    args = list(inputs(rng, kind, steps, bsz, n_in, hid))
    gy = randn(rng, (steps, bsz, hid)) if given[0] else None
    gh = randn(rng, (bsz, hid)) if given[1] else None
    _, _, cache = forward(kind, *args, reverse=reverse)
    grads = backward(kind, gy, gh, cache)

    def loss(*a):
        y, h_n = reference(kind, *a, reverse=reverse)
        return functional((y, h_n), (gy, gh))

    check_fd(grads, loss, args, FIELDS, f"{kind}_backward")


@pytest.mark.parametrize("kind", KINDS)
def test_backward_finite_differences_one_bias(kind, rng):
    for bias in ("ih", "hh"):
        args = list(inputs(rng, kind, 2, 2, 2, 4, bias=bias))
        gy = randn(rng, (2, 2, 4))
        _, _, cache = forward(kind, *args)
        grads = backward(kind, gy, None, cache)
        check_fd(grads, lambda *a: functional(reference(kind, *a)[:1], (gy,)), args, FIELDS,
                 f"{kind}_backward ({bias})")


def test_gru_bias_gradients_differ_in_the_n_block(rng):
    """b_hn sits inside r * (...): its gradient is b_in's scaled by r, the r and z blocks
    are equal (a mutant returning one bias gradient twice fails here)."""
    hid = 4
    args = inputs(rng, "gru", 3, 2, 3, hid)
    y, _, cache = ak.gru_forward(*args)
    g = ak.gru_backward(randn(rng, y.shape), None, cache)
    assert np.allclose(g.b_ih[:2 * hid], g.b_hh[:2 * hid], rtol=1e-12, atol=1e-14)
    assert not np.allclose(g.b_ih[2 * hid:], g.b_hh[2 * hid:])


@pytest.mark.parametrize("kind", KINDS)
def test_backward_with_no_incoming_gradient_is_zero(kind, dtype, rng):
    args = inputs(rng, kind, 3, 2, 4, 5, dtype)
    _, _, cache = forward(kind, *args)
    g = backward(kind, None, None, cache)
    for name, a, ref in zip(FIELDS, g, args):
        check_out(a, dtype, ref.shape, name)
        assert not a.any(), name


def test_relu_derivative_at_zero_is_zero(dtype):
    """Pre-activations exactly 0 (zero weights, zero input, zero biases): relu' = 0 there,
    as PyTorch; tanh' = 1."""
    steps, bsz, n_in, hid = 2, 2, 3, 2
    x, h0 = np.zeros((steps, bsz, n_in), dtype), np.zeros((bsz, hid), dtype)
    w_ih, w_hh, b = np.zeros((hid, n_in), dtype), np.zeros((hid, hid), dtype), np.zeros(hid, dtype)
    gy = np.ones((steps, bsz, hid), dtype)
    _, _, cache = ak.rnn_forward(x, h0, w_ih, w_hh, b, b, nonlinearity="relu")
    g = ak.rnn_backward(gy, None, cache)
    assert not g.b_ih.any() and not g.x.any()
    _, _, cache = ak.rnn_forward(x, h0, w_ih, w_hh, b, b, nonlinearity="tanh")
    assert np.array_equal(ak.rnn_backward(gy, None, cache).b_ih, np.full(hid, steps * bsz, dtype))


# ---- against PyTorch -----------------------------------------------------------------------


def _torch_run(torch, kind, args, reverse, gy, gh, dtype):
    x, h0, w_ih, w_hh, b_ih, b_hh = args
    n_in, hid = x.shape[2], h0.shape[1]
    bias = b_ih is not None
    tdt = torch.float64 if dtype == np.float64 else torch.float32
    if kind == "gru":
        m = torch.nn.GRU(n_in, hid, num_layers=1, bias=bias)
    else:
        m = torch.nn.RNN(n_in, hid, num_layers=1, nonlinearity=kind, bias=bias)
    m = m.to(tdt)
    with torch.no_grad():
        m.weight_ih_l0.copy_(torch.from_numpy(w_ih))
        m.weight_hh_l0.copy_(torch.from_numpy(w_hh))
        if bias:
            m.bias_ih_l0.copy_(torch.from_numpy(b_ih))
            m.bias_hh_l0.copy_(torch.from_numpy(b_hh))
    xt = torch.tensor(x, requires_grad=True)
    h0t = torch.tensor(h0[None], requires_grad=True)
    # the reverse direction is torch's forward layer on the flipped sequence
    yt, hnt = m(xt.flip(0) if reverse else xt, h0t)
    if reverse:
        yt = yt.flip(0)
    ((yt * torch.from_numpy(gy)).sum() + (hnt[0] * torch.from_numpy(gh)).sum()).backward()
    grads = [xt.grad.numpy(), h0t.grad[0].numpy(), m.weight_ih_l0.grad.numpy(),
             m.weight_hh_l0.grad.numpy()]
    grads += [m.bias_ih_l0.grad.numpy(), m.bias_hh_l0.grad.numpy()] if bias else [None, None]
    return yt.detach().numpy(), hnt[0].detach().numpy(), grads


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("kind", KINDS)
def test_vs_torch(kind, reverse, bias, dtype, rng):
    torch = pytest.importorskip("torch")
    steps, bsz, n_in, hid = 6, 4, 5, 7
    args = inputs(rng, kind, steps, bsz, n_in, hid, dtype, "both" if bias else "none")
    gy, gh = randn(rng, (steps, bsz, hid), dtype), randn(rng, (bsz, hid), dtype)
    ty, th, tgrads = _torch_run(torch, kind, args, reverse, gy, gh, dtype)
    y, h_n, cache = forward(kind, *args, reverse=reverse)
    # torch's float32 results are themselves rounded: compare both against each other
    # at the float32 tolerance, in float64
    assert_close(y, ty.astype(np.float64), dtype, what="y")
    assert_close(h_n, th.astype(np.float64), dtype, what="h_n")
    check_grads(backward(kind, gy, gh, cache), [None if t is None else t.astype(np.float64)
                                                 for t in tgrads], dtype, f"{kind}_backward")


# ---- views, out=, empty sizes ------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("steps,bsz", [(4, 3), (3, 1), (1, 3), (1, 1)], ids=str)
def test_bidirectional_out_halves_and_strided_views(kind, steps, bsz, dtype, rng):
    """Both directions write into halves of one (T, B, 2H) buffer, x is read from a
    view, grad_y is given as halves of one (T, B, 2H) gradient."""
    n_in, hid = 3, 4
    xx = randn(rng, (steps, bsz, n_in + 2), dtype)
    x = xx[:, :, 1:1 + n_in]
    h0 = randn(rng, (bsz, hid), dtype)
    wf = make_weights(rng, GATES[kind], n_in, hid, dtype)
    wb = make_weights(rng, GATES[kind], n_in, hid, dtype)
    buf = np.full((steps, bsz, 2 * hid), 7.0, dtype)
    y_f, _, cache_f = forward(kind, x, h0, *wf, out=buf[:, :, :hid])
    assert np.shares_memory(y_f, buf) and np.all(buf[:, :, hid:] == 7.0), "the other half was written"
    saved = buf[:, :, :hid].copy()
    y_b, _, cache_b = forward(kind, x, h0, *wb, reverse=True, out=buf[:, :, hid:])
    assert np.array_equal(buf[:, :, :hid], saved), "the forward half was overwritten"
    assert_close(buf[:, :, :hid], reference(kind, x, h0, *wf)[0], dtype, what="forward half")
    assert_close(buf[:, :, hid:], reference(kind, x, h0, *wb, reverse=True)[0], dtype,
                 what="reverse half")
    gbuf = randn(rng, (steps, bsz, 2 * hid), dtype)
    gh = randn(rng, (bsz, hid), dtype)
    for cache, half in ((cache_f, slice(0, hid)), (cache_b, slice(hid, 2 * hid))):
        g_view = backward(kind, gbuf[:, :, half], gh, cache)
        g_copy = backward(kind, np.ascontiguousarray(gbuf[:, :, half]), gh, cache)
        plain = cache._replace(x=np.ascontiguousarray(cache.x), y=np.ascontiguousarray(cache.y))
        g_plain = backward(kind, np.ascontiguousarray(gbuf[:, :, half]), gh, plain)
        for a, b, c in zip(g_view, g_copy, g_plain):
            assert np.array_equal(a, b) and np.array_equal(a, c), "views changed the result"


@pytest.mark.parametrize("kind", KINDS)
def test_non_contiguous_x_is_read_correctly(kind, dtype, rng):
    x, h0, *w = inputs(rng, kind, 4, 3, 5, 4, dtype)
    for xv in (np.asfortranarray(x), np.ascontiguousarray(x.transpose(1, 0, 2)).transpose(1, 0, 2)):
        y, h_n, cache = forward(kind, xv, h0, *w)
        assert_close(y, reference(kind, x, h0, *w)[0], dtype, what="y")
        gy = randn(rng, y.shape, dtype)
        g = backward(kind, gy, None, cache)
        _, _, cache_c = forward(kind, x, h0, *w)
        for a, b in zip(g, backward(kind, gy, None, cache_c)):
            assert np.array_equal(a, b)


@pytest.mark.parametrize("kind", KINDS)
def test_empty_sequence(kind, dtype, rng):
    x, h0, *w = inputs(rng, kind, 0, 3, 4, 5, dtype)
    for reverse in (False, True):
        y, h_n, cache = forward(kind, x, h0, *w, reverse=reverse)
        check_out(y, dtype, (0, 3, 5), "y")
        check_out(h_n, dtype, (3, 5), "h_n")
        assert np.array_equal(h_n, h0) and not np.shares_memory(h_n, h0)
        gh = randn(rng, (3, 5), dtype)
        g = backward(kind, np.zeros((0, 3, 5), dtype), gh, cache)
        check_out(g.x, dtype, (0, 3, 4), "grad x")
        assert np.array_equal(g.h0, gh)
        for name in ("w_ih", "w_hh", "b_ih", "b_hh"):
            check_out(getattr(g, name), dtype, getattr(cache, name).shape, name)
            assert not getattr(g, name).any(), name
        assert not backward(kind, None, None, cache).h0.any()


@pytest.mark.parametrize("kind", KINDS)
def test_empty_batch(kind, dtype, rng):
    args = inputs(rng, kind, 3, 0, 4, 2, dtype)
    y, h_n, cache = forward(kind, *args)
    check_out(y, dtype, (3, 0, 2), "y")
    check_out(h_n, dtype, (0, 2), "h_n")
    g = backward(kind, y, h_n, cache)
    check_out(g.x, dtype, (3, 0, 4), "x")
    check_out(g.h0, dtype, (0, 2), "h0")
    for name, ref in zip(FIELDS[2:], args[2:]):
        check_out(getattr(g, name), dtype, ref.shape, name)
        assert not getattr(g, name).any(), name


def test_single_step_is_the_cell(dtype, rng):
    """T = 1 equals one cell step, forward and backward (same kernels' arithmetic)."""
    x, h0, *w = inputs(rng, "gru", 1, 4, 3, 5, dtype)
    y, h_n, cache = ak.gru_forward(x, h0, *w)
    h1, ccache = ak.gru_cell_forward(x[0], h0, *w)
    assert_close(y[0], h1.astype(np.float64), dtype, what="gru y[0]")
    gh = randn(rng, h_n.shape, dtype)
    g, gc = ak.gru_backward(None, gh, cache), ak.gru_cell_backward(gh, ccache)
    for a, b in zip(g, gc):
        assert_close(a.reshape(b.shape), b.astype(np.float64), dtype, what="gru grads")
    for nl in ("tanh", "relu"):
        x, h0, *w = inputs(rng, nl, 1, 4, 3, 5, dtype)
        y, h_n, cache = ak.rnn_forward(x, h0, *w, nonlinearity=nl)
        h1, ccache = ak.rnn_cell_forward(x[0], h0, *w, nonlinearity=nl)
        assert_close(y[0], h1.astype(np.float64), dtype, what=f"{nl} y[0]")
        g, gc = ak.rnn_backward(None, gh, cache), ak.rnn_cell_backward(gh, ccache)
        for a, b in zip(g, gc):
            assert_close(a.reshape(b.shape), b.astype(np.float64), dtype, what=f"{nl} grads")


# ---- determinism ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_bitwise_identical_for_any_thread_count(kind, dtype, restore_threads, rng):
    """The same bits on 1..5 threads: tiles that split the batch, the hidden units (H = 70
    gives two column blocks from 2 threads on), or both."""
    results = {}
    cases = [(5, 7, 9, 70, False), (4, 3, 6, 13, True), (3, 16, 8, 100, False)]
    data = [(inputs(rng, kind, *c[:4], dtype), randn(rng, c[:2] + (c[3],), dtype),
             randn(rng, (c[1], c[3]), dtype), c[4]) for c in cases]
    for threads in (1, 2, 3, 4, 5):
        ak.set_num_threads(threads)
        out = []
        for args, gy, gh, reverse in data:
            y, h_n, cache = forward(kind, *args, reverse=reverse)
            out += [y, h_n, *backward(kind, gy, gh, cache)]
        results[threads] = out
    for threads, out in results.items():
        for i, (a, b) in enumerate(zip(results[1], out)):
            assert np.array_equal(a, b), f"result {i} on {threads} threads differs from 1 thread"


@pytest.mark.parametrize("kind", KINDS)
def test_repeatable_and_inputs_unchanged(kind, dtype, rng):
    args = inputs(rng, kind, 6, 8, 16, 24, dtype)
    gy, gh = randn(rng, (6, 8, 24), dtype), randn(rng, (8, 24), dtype)
    before = [a.copy() for a in args + (gy, gh)]

    def run():
        res = []
        for reverse in (False, True):
            y, h_n, cache = forward(kind, *args, reverse=reverse)
            res += [y, h_n, *backward(kind, gy, gh, cache)]
        return res

    for a, b in zip(run(), run()):
        assert np.array_equal(a, b)
    for a, b in zip(args + (gy, gh), before):
        assert np.array_equal(a, b), "an input was modified"


# ---- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_forward_validation(kind, rng):
    T, B, I, H = 3, 2, 3, 4
    G = GATES[kind]
    x, h0, w_ih, w_hh, b_ih, b_hh = inputs(rng, kind, T, B, I, H)

    def f(*a, **kw):
        return lambda: forward(kind, *a, **kw)

    _raises(ValueError, "x", f(x[0], h0, w_ih, w_hh), (2, 3))
    _raises(ValueError, "x", f(x[None], h0, w_ih, w_hh), (1, 3, 2, 3))
    _raises(ValueError, "x", f(np.zeros((T, B, 0)), h0, w_ih, w_hh), (3, 2, 0))
    _raises(ValueError, "h0", f(x, randn(rng, (B + 1, H)), w_ih, w_hh), (3, 4))
    _raises(ValueError, "h0", f(x, randn(rng, (B, H, 1)), w_ih, w_hh), (2, 4, 1))
    _raises(ValueError, "w_ih", f(x, h0, randn(rng, (G * H, I + 1)), w_hh), (G * H, I + 1))
    _raises(ValueError, "w_ih", f(x, h0, randn(rng, ((G + 1) * H, I)), w_hh), ((G + 1) * H, I))
    _raises(ValueError, "w_hh", f(x, h0, w_ih, randn(rng, (G * H, H - 1))), (G * H, H - 1))
    _raises(ValueError, "b_ih", f(x, h0, w_ih, w_hh, randn(rng, (G * H + 1,))), (G * H + 1,))
    _raises(ValueError, "b_hh", f(x, h0, w_ih, w_hh, None, randn(rng, (5,))), (5,))
    _raises(TypeError, "w_ih", f(x, h0, w_ih.astype(np.float32), w_hh))
    _raises(TypeError, "h0", f(x, h0.astype(np.float32), w_ih, w_hh))
    _raises(TypeError, "x", f(x.astype(np.int64), h0, w_ih, w_hh))
    _raises(TypeError, "b_hh", f(x, h0, w_ih, w_hh, b_ih, b_hh.astype(np.float32)))
    with pytest.raises((TypeError, ValueError)):
        forward(kind, x, h0, w_ih, w_hh, reverse="yes")
    if kind != "gru":
        _raises(ValueError, "nonlinearity",
                lambda: ak.rnn_forward(x, h0, w_ih, w_hh, nonlinearity="sigmoid"))
    # out=
    ro = np.empty((T, B, H))
    ro.flags.writeable = False
    _raises(ValueError, "out", f(x, h0, w_ih, w_hh, out=ro))
    _raises(ValueError, "out", f(x, h0, w_ih, w_hh, out=np.empty((T, B, H + 1))), (3, 2, 5))
    _raises(ValueError, "out", f(x, h0, w_ih, w_hh, out=np.empty((T * B, H))), (6, 4))
    _raises(ValueError, "out", f(x, h0, w_ih, w_hh, out=np.empty((T, B, 2 * H))[:, :, ::2]))
    _raises(TypeError, "out", f(x, h0, w_ih, w_hh, out=np.empty((T, B, H), np.float32)))
    _raises(TypeError, "out", f(x, h0, w_ih, w_hh, out=[[[0.0] * H] * B] * T))
    shared = randn(rng, (T, B, max(I, H)))
    _raises(ValueError, "out", f(shared[:, :, :I], h0, w_ih, w_hh, out=shared[:, :, :H]))
    out = np.full((T, B, H), 3.0)  # a failed call leaves out alone
    with pytest.raises(ValueError):
        forward(kind, x, h0, w_ih, randn(rng, (G * H, H + 1)), out=out)
    assert np.all(out == 3.0)


@pytest.mark.parametrize("kind", KINDS)
def test_backward_validation(kind, rng):
    T, B, I, H = 3, 2, 3, 4
    args = inputs(rng, kind, T, B, I, H)
    y, h_n, cache = forward(kind, *args)
    bwd = ak.gru_backward if kind == "gru" else ak.rnn_backward
    _raises(ValueError, "grad_y", lambda: bwd(randn(rng, (T, B, H + 1)), h_n, cache), (3, 2, 5))
    _raises(ValueError, "grad_y", lambda: bwd(randn(rng, (T + 1, B, H)), h_n, cache), (4, 2, 4))
    _raises(ValueError, "grad_y", lambda: bwd(randn(rng, (B, H)), h_n, cache), (2, 4))
    _raises(ValueError, "grad_h_n", lambda: bwd(y, randn(rng, (B + 1, H)), cache), (3, 4))
    _raises(TypeError, "grad_y", lambda: bwd(y.astype(np.float32), h_n, cache))
    _raises(TypeError, "grad_h_n", lambda: bwd(y, h_n.astype(np.float32), cache))
    _raises(TypeError, "cache", lambda: bwd(y, h_n, tuple(cache)))
    _raises(TypeError, "cache", lambda: bwd(y, h_n, None))
    other = "tanh" if kind == "gru" else "gru"
    _, _, other_cache = forward(other, *inputs(rng, other, T, B, I, H))
    _raises(TypeError, "cache", lambda: bwd(y, h_n, other_cache))
    _, _, _, lstm_cache = ak.lstm_forward(args[0], args[1], args[1], *make_weights(rng, 4, I, H))
    _raises(TypeError, "cache", lambda: bwd(y, h_n, lstm_cache))


@pytest.mark.parametrize("kind", KINDS)
def test_tampered_cache_fields_are_rejected_by_name(kind, rng):
    args = inputs(rng, kind, 3, 2, 4, 5)
    y, h_n, cache = forward(kind, *args)
    bwd = ak.gru_backward if kind == "gru" else ak.rnn_backward
    bad = {
        "y": (cache.y[:, :, :4].copy(), ValueError),
        "w_hh": (cache.w_hh[:, :4].copy(), ValueError),
        "w_ih": (cache.w_ih.astype(np.float32), TypeError),
        "h0": (None, TypeError),
    }
    if kind == "gru":
        bad["gates"] = (cache.gates[:, :, :14].copy(), ValueError)
        bad["hn"] = (cache.hn.astype(np.float32), TypeError)
    for field, (value, exc) in bad.items():
        with pytest.raises(exc) as info:
            bwd(y, None, cache._replace(**{field: value}))
        msg = str(info.value)
        assert msg.startswith(f"{bwd.__name__}: cache.") and f"cache.{field}" in msg, msg
    with pytest.raises(TypeError, match="cache.reverse"):
        bwd(y, None, cache._replace(reverse=np.ones(3)))
    if kind != "gru":
        with pytest.raises(ValueError, match="nonlinearity"):
            bwd(y, None, cache._replace(nonlinearity="sigmoid"))


def test_numerical_grad_sanity():
    """The finite-difference helper differentiates a known function (so the checks above
    could fail)."""
    a = np.array([1.0, 2.0])
    assert np.allclose(numerical_grad(lambda v: np.sum(v ** 3), [a], 0), 3 * a ** 2)
