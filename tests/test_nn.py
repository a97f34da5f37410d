"""nn family (docs/api/nn.md: dropout, linear, activations, softmax, losses) against the
float64 references in reference_nn.py.

Every function is compared with its reference in float32 and float64 on several shapes
(0-size and 0-d where they make sense), every backward with central finite differences
of the forward in float64 (away from kinks), and, where torch is installed, with
torch.nn.functional. Then: softmax / log_softmax / cross-entropy with logits of +-1e4;
dropout's mask bit for bit against an independent Philox-4x32-10 (itself checked
against Random123's known-answer vectors), its statistics over 1e6 elements and its
edge cases; bitwise equality for 1, 2 and 3 threads; argument validation (messages name
the argument, a failing call changes nothing).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import adlkernels as ak
from helpers import _shape_text, names
from reference import assert_close, tolerance
from reference_nn import (
    PHILOX_KAT,
    cross_entropy_ref,
    dropout_mask_ref,
    dropout_threshold,
    dropout_uniforms,
    huber_ref,
    l1_ref,
    leaky_relu_backward_ref,
    leaky_relu_ref,
    linear_abs_magnitudes,
    linear_backward_ref,
    linear_ref,
    log_softmax_backward_ref,
    log_softmax_ref,
    mse_ref,
    numerical_grad,
    philox4x32_10,
    philox4x32_10_scalar,
    relu_backward_ref,
    relu_ref,
    sigmoid_backward_ref,
    sigmoid_ref,
    softmax_backward_ref,
    softmax_ref,
    tanh_backward_ref,
    tanh_ref,
)

FNS = [
    "dropout_forward", "dropout_backward", "linear_forward", "linear_backward",
    "relu_forward", "relu_backward", "leaky_relu_forward", "leaky_relu_backward",
    "sigmoid_forward", "sigmoid_backward", "tanh_forward", "tanh_backward",
    "softmax_forward", "softmax_backward", "log_softmax_forward", "log_softmax_backward",
    "softmax_cross_entropy", "mse_loss", "l1_loss", "huber_loss",
]
REDUCTIONS = ("mean", "sum", "none")


def randn(rng, shape, dtype=np.float64, scale=1.0):
    """Standard normal values as an ndarray (0-d included) of dtype."""
    return np.array(rng.standard_normal(shape) * scale, dtype=dtype)


def away_from(rng, shape, dtype, kinks=(0.0,), margin=0.05, scale=2.0):
    """Random values at least ``margin`` away from every kink (for FD checks)."""
    x = rng.standard_normal(shape) * scale
    for k in kinks:
        near = np.abs(x - k) < margin
        x = np.where(near, k + np.where(x >= k, margin, -margin) * 2, x)
    return np.array(x, dtype=dtype)


def same_bits(a, b):
    return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype
            and a.shape == b.shape and a.tobytes() == b.tobytes())


def close(got, ref, dtype, magnitude=None, what="result"):
    assert_close(got, np.asarray(ref, dtype=np.float64), dtype, magnitude=magnitude, what=what)


def assert_fd(analytic, numeric, what, rtol=1e-6, atol=1e-7):
    """An analytic float64 gradient against central differences (error O(eps^2) + the
    rounding of the forward / eps)."""
    analytic = np.asarray(analytic, dtype=np.float64)
    assert analytic.shape == numeric.shape, (what, analytic.shape, numeric.shape)
    err = np.abs(analytic - numeric)
    bound = rtol * np.abs(numeric) + atol * max(1.0, float(np.abs(numeric).max(initial=0)))
    bad = ~(err <= bound)
    assert not bad.any(), (
        f"{what}: FD mismatch at {np.argwhere(bad)[0].tolist()}: analytic "
        f"{analytic[tuple(np.argwhere(bad)[0])]}, numeric {numeric[tuple(np.argwhere(bad)[0])]}")


def check_scalar_loss(loss, dtype):
    assert isinstance(loss, np.ndarray), type(loss)
    assert loss.ndim == 0 and loss.dtype == dtype, (loss.shape, loss.dtype)


def ulps(got, ref, dtype):
    """|got - ref| in units of the spacing of dtype at |ref|."""
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    sp = np.spacing(np.abs(ref).astype(dtype)).astype(np.float64)
    return np.abs(got - ref) / sp


# ----------------------------------------------------------------------------------
# names
# ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", FNS)
def test_names_importable(fn):
    assert getattr(ak, fn) is getattr(ak.nn, fn)
    assert fn in ak.__all__ and fn in ak.nn.__all__


# ----------------------------------------------------------------------------------
# the reference Philox itself
# ----------------------------------------------------------------------------------


@pytest.mark.parametrize("ctr,key,out", PHILOX_KAT, ids=["zeros", "ones", "pi"])
def test_reference_philox_known_answers(ctr, key, out):
    """Random123's kat_vectors for philox4x32_10, scalar and vectorized."""
    assert philox4x32_10_scalar(ctr, key) == out
    got = philox4x32_10(np.array([ctr], dtype=np.uint64), key)
    assert got.dtype == np.uint32 and tuple(int(v) for v in got[0]) == out


def test_reference_philox_vectorized_matches_scalar(rng):
    ctr = rng.integers(0, 2**32, size=(50, 4), dtype=np.uint64)
    key = (int(rng.integers(0, 2**32)), int(rng.integers(0, 2**32)))
    got = philox4x32_10(ctr, key)
    for c, g in zip(ctr, got):
        assert philox4x32_10_scalar(tuple(int(v) for v in c), key) == tuple(int(v) for v in g)
    # dropout_uniforms: word i % 4 of the block (i // 4, 0, 0, 0) keyed by the seed halves
    seed = 0x0123456789ABCDEF
    u = dropout_uniforms(11, seed)
    for i in range(11):
        assert int(u[i]) == philox4x32_10_scalar((i // 4, 0, 0, 0),
                                                 (seed & 0xFFFFFFFF, seed >> 32))[i % 4]


# ----------------------------------------------------------------------------------
# dropout
# ----------------------------------------------------------------------------------

DROP_SHAPES = [(), (0,), (1,), (13,), (3, 5), (2, 3, 4), (0, 3), (4, 0, 2)]
SEEDS = [0, 1, 12345, 2**32 + 7, 2**63 + 99, 2**64 - 1]


@pytest.mark.parametrize("shape", DROP_SHAPES, ids=_shape_text)
@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.9])
def test_dropout_mask_bitwise_vs_philox(shape, p, dtype, rng):
    x = randn(rng, shape, dtype)
    for seed in SEEDS:
        y, mask = ak.dropout_forward(x, p, seed=seed)
        ref = dropout_mask_ref(shape, p, seed)
        assert isinstance(mask, np.ndarray) and mask.dtype == np.bool_, mask.dtype
        assert mask.shape == shape and y.shape == shape and y.dtype == dtype
        assert np.array_equal(mask, ref), (
            f"seed {seed}: mask differs from Philox-4x32-10 at "
            f"{np.argwhere(mask != ref)[:5].tolist()}")
        close(y, np.where(ref, x.astype(np.float64) / (1 - p), 0.0), dtype, what="y")


def test_dropout_mask_bitwise_vs_philox_large(dtype, rng):
    """Every one of 1e6 mask bits (so counters past 2^16, odd tail) and the prefix
    property: a shorter array gets the first bits of a longer one (a pure function of
    (seed, index))."""
    n, p, seed = 1_000_003, 0.37, 2**40 + 3
    x = np.ones(n, dtype)
    _, mask = ak.dropout_forward(x, p, seed=seed)
    assert np.array_equal(mask, dropout_mask_ref((n,), p, seed))
    _, short = ak.dropout_forward(x[:1001], p, seed=seed)
    assert np.array_equal(short, mask[:1001])


def test_dropout_index_is_c_order_of_logical_array(dtype, rng):
    """Element index = position in the C-order flattening of x as given (strides do not
    matter)."""
    base = randn(rng, (6, 10), dtype)
    for x in (base.T, base[::2, ::3], base[:, 1:]):
        y, mask = ak.dropout_forward(x, 0.4, seed=77)
        ref = dropout_mask_ref(x.shape, 0.4, 77)
        assert np.array_equal(mask, ref)
        assert y.flags.c_contiguous and mask.flags.c_contiguous
        close(y, np.where(ref, x.astype(np.float64) / 0.6, 0.0), dtype, what="y")


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9, 0.01])
def test_dropout_statistics(p):
    """Mean of the mask within 4 sigma of 1 - p over 1e6 elements; the kept fraction of
    each quarter too (the four output words of a block are all used)."""
    n = 1_000_000
    _, mask = ak.dropout_forward(np.ones(n, np.float32), p, seed=20240607)
    sigma = math.sqrt(p * (1 - p) / n)
    assert abs(mask.mean() - (1 - p)) <= 4 * sigma, (mask.mean(), 1 - p, sigma)
    for w in range(4):
        sub = mask[w::4]
        s = math.sqrt(p * (1 - p) / sub.size)
        assert abs(sub.mean() - (1 - p)) <= 4 * s, (w, sub.mean())
    # consecutive elements are not correlated: P(both kept) ~ (1 - p)^2
    both = (mask[:-1] & mask[1:]).mean()
    q = (1 - p) ** 2
    assert abs(both - q) <= 4 * math.sqrt(q * (1 - q) / (n - 1)) * 2, (both, q)


def test_dropout_p_zero_returns_x_exactly(dtype, rng):
    x = randn(rng, (5, 7), dtype)
    x[0, :4] = [-0.0, np.inf, -np.inf, np.finfo(dtype).tiny / 4]  # subnormal included
    y, mask = ak.dropout_forward(x, 0.0, seed=3)
    assert same_bits(y, x), "p = 0 must return x exactly"
    assert y is not x
    assert mask.dtype == np.bool_ and mask.shape == x.shape and mask.all()
    gx = ak.dropout_backward(x, mask, 0.0)
    assert same_bits(gx, x)


def test_dropout_p_one_gives_zeros(dtype, rng):
    x = randn(rng, (4, 9), dtype)
    y, mask = ak.dropout_forward(x, 1.0, seed=3)
    assert y.dtype == dtype and y.shape == x.shape and np.all(y == 0)
    assert mask.dtype == np.bool_ and not mask.any()
    g = ak.dropout_backward(randn(rng, x.shape, dtype), mask, 1.0)
    assert g.dtype == dtype and np.all(g == 0)
    # backward with p = 1 is 0 even where a (foreign) mask is True
    g = ak.dropout_backward(randn(rng, x.shape, dtype), np.ones(x.shape, bool), 1.0)
    assert np.all(g == 0) and not np.isnan(g).any()


@pytest.mark.parametrize("p", [0.0, 0.5, 1.0])
def test_dropout_eval_returns_x(p, dtype, rng):
    x = randn(rng, (3, 4), dtype)
    y, mask = ak.dropout_forward(x, p, seed=11, training=False)
    assert same_bits(y, x) and y is not x
    assert mask.dtype == np.bool_ and mask.shape == x.shape and mask.all()


def test_dropout_same_seed_same_mask_different_seeds_differ(dtype, rng):
    n, p = 200_000, 0.5
    x = randn(rng, n, dtype)
    y1, m1 = ak.dropout_forward(x, p, seed=42)
    y2, m2 = ak.dropout_forward(x, p, seed=42)
    assert same_bits(m1, m2) and same_bits(y1, y2)
    # a different seed, and a seed differing only in its high 32 bits
    for other in (43, 42 + 2**32):
        _, m3 = ak.dropout_forward(x, p, seed=other)
        frac = (m1 != m3).mean()  # ~ 2 p (1 - p) = 0.5 for independent masks
        assert abs(frac - 0.5) < 0.01, (other, frac)
    # a different p with the same seed: a nested mask (same u, higher threshold)
    _, m4 = ak.dropout_forward(x, 0.7, seed=42)
    assert not (m4 & ~m1).any()


@pytest.mark.parametrize("p", [0.5, 0.75, 0.3, 0.1, 0.95])
def test_dropout_values_exact(p, dtype, rng):
    """y = x * mask / (1 - p): bitwise where 1 / (1 - p) is a power of two, else within
    2 ulp of the exact value (one rounding of the scale, one of the product)."""
    x = randn(rng, 10_000, dtype)
    y, mask = ak.dropout_forward(x, p, seed=5)
    assert np.array_equal(mask, dropout_mask_ref(x.shape, p, 5))
    assert np.all(y[~mask] == 0)
    exact = x[mask].astype(np.float64) / (1 - p)
    if p in (0.5, 0.75):
        assert same_bits(y[mask], np.array(exact, dtype=dtype))
    else:
        assert ulps(y[mask], exact, dtype).max() <= 2
    g = randn(rng, x.shape, dtype)
    gx = ak.dropout_backward(g, mask, p)
    assert gx.dtype == dtype and gx.shape == x.shape
    assert np.all(gx[~mask] == 0)
    exact = g[mask].astype(np.float64) / (1 - p)
    if p in (0.5, 0.75):
        assert same_bits(gx[mask], np.array(exact, dtype=dtype))
    else:
        assert ulps(gx[mask], exact, dtype).max() <= 2


@pytest.mark.parametrize("shape", DROP_SHAPES, ids=_shape_text)
def test_dropout_backward_shapes(shape, dtype, rng):
    g = randn(rng, shape, dtype)
    mask = rng.random(shape) < 0.6
    mask = np.asarray(mask, dtype=np.bool_)
    gx = ak.dropout_backward(g, mask, 0.25)
    close(gx, np.where(mask, g.astype(np.float64) / 0.75, 0.0), dtype, what="grad_x")
    # non-contiguous grad_y and mask
    if len(shape) == 2:
        gx = ak.dropout_backward(g.T, mask.T, 0.25)
        close(gx, np.where(mask.T, g.T.astype(np.float64) / 0.75, 0.0), dtype, what="grad_x.T")


# ----------------------------------------------------------------------------------
# linear
# ----------------------------------------------------------------------------------

LIN_SHAPES = [(4, 3, 5), (1, 1, 1), (17, 33, 9), (64, 70, 40), (0, 3, 4), (3, 0, 4),
              (3, 4, 0), (0, 0, 0)]


@pytest.mark.parametrize("B,I,O", LIN_SHAPES)
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "nobias"])
def test_linear_vs_reference(B, I, O, with_bias, dtype, rng):
    x, w = randn(rng, (B, I), dtype), randn(rng, (O, I), dtype)
    b = randn(rng, (O,), dtype) if with_bias else None
    gy = randn(rng, (B, O), dtype)
    my, mgx, mgw, mgb = linear_abs_magnitudes(gy, x, w, b)
    y = ak.linear_forward(x, w, b)
    close(y, linear_ref(x, w, b), dtype, my, "y")
    gx, gw, gb = ak.linear_backward(gy, x, w)
    rx, rw, rb = linear_backward_ref(gy, x, w)
    close(gx, rx, dtype, mgx, "grad_x")
    close(gw, rw, dtype, mgw, "grad_weight")
    close(gb, rb, dtype, mgb, "grad_bias")


@pytest.mark.parametrize("output_mask", [(True, False, False), (False, True, False),
                                         (False, False, True), (True, True, False),
                                         (False, False, False), (True, False, True)])
def test_linear_backward_output_mask(output_mask, dtype, rng):
    x, w, gy = randn(rng, (5, 6), dtype), randn(rng, (3, 6), dtype), randn(rng, (5, 3), dtype)
    out = ak.linear_backward(gy, x, w, output_mask=output_mask)
    assert len(out) == 3
    full = ak.linear_backward(gy, x, w)
    for flag, got, ref, name in zip(output_mask, out, full, ("grad_x", "grad_weight", "grad_bias")):
        if flag:
            assert got is not None, name
            close(got, ref.astype(np.float64), dtype, what=name)
        else:
            assert got is None, name
    out = ak.linear_backward(gy, x, w, list(output_mask))  # positional, a list
    assert [o is None for o in out] == [not f for f in output_mask]


@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "nobias"])
def test_linear_backward_finite_differences(with_bias, rng):
    x, w = randn(rng, (4, 5)), randn(rng, (3, 5))
    b = randn(rng, (3,)) if with_bias else None
    gy = randn(rng, (4, 3))

    def f_x(v):
        return np.sum(gy * ak.linear_forward(v, w, b))

    def f_w(v):
        return np.sum(gy * ak.linear_forward(x, v, b))

    gx, gw, gb = ak.linear_backward(gy, x, w)
    assert_fd(gx, numerical_grad(f_x, x.copy()), "grad_x")
    assert_fd(gw, numerical_grad(f_w, w.copy()), "grad_weight")
    if with_bias:
        assert_fd(gb, numerical_grad(lambda v: np.sum(gy * ak.linear_forward(x, w, v)), b.copy()),
                  "grad_bias")


def test_linear_non_contiguous(dtype, rng):
    xb, wb = randn(rng, (7, 12), dtype), randn(rng, (10, 14), dtype)
    x, w = xb[:, ::2], wb[::2, 1:13:2]  # (7, 6), (5, 6)
    b = randn(rng, (10,), dtype)[::2]
    gy = randn(rng, (5, 7), dtype).T
    close(ak.linear_forward(x, w, b), linear_ref(x, w, b), dtype,
          linear_abs_magnitudes(gy, x, w, b)[0], "y")
    for got, ref, m, n in zip(ak.linear_backward(gy, x, w), linear_backward_ref(gy, x, w),
                              linear_abs_magnitudes(gy, x, w)[1:], ("gx", "gw", "gb")):
        close(got, ref, dtype, m, n)
        assert got.flags.c_contiguous


def test_linear_vs_torch(dtype, rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x, w, b = randn(rng, (6, 8), dtype), randn(rng, (5, 8), dtype), randn(rng, (5,), dtype)
    gy = randn(rng, (6, 5), dtype)
    tx, tw, tb = (torch.tensor(a.astype(np.float64), requires_grad=True) for a in (x, w, b))
    ty = F.linear(tx, tw, tb)
    ty.backward(torch.tensor(gy.astype(np.float64)))
    m = linear_abs_magnitudes(gy, x, w, b)
    close(ak.linear_forward(x, w, b), ty.detach().numpy(), dtype, m[0], "y")
    for got, t, mm, n in zip(ak.linear_backward(gy, x, w), (tx, tw, tb), m[1:], ("gx", "gw", "gb")):
        close(got, t.grad.numpy(), dtype, mm, n)


# ----------------------------------------------------------------------------------
# activations
# ----------------------------------------------------------------------------------

ACT_SHAPES = [(), (0,), (1,), (7,), (3, 4, 5), (0, 3), (1000,)]

# name -> (forward(x), backward(gy, x, y), reference forward, reference backward(gy, x, y))
ACTS = {
    "relu": (ak.relu_forward, lambda g, x, y: ak.relu_backward(g, x),
             relu_ref, lambda g, x, y: relu_backward_ref(g, x)),
    "leaky_relu": (ak.leaky_relu_forward, lambda g, x, y: ak.leaky_relu_backward(g, x),
                   leaky_relu_ref, lambda g, x, y: leaky_relu_backward_ref(g, x)),
    "leaky_relu_0.2": (lambda x: ak.leaky_relu_forward(x, 0.2),
                       lambda g, x, y: ak.leaky_relu_backward(g, x, negative_slope=0.2),
                       lambda x: leaky_relu_ref(x, 0.2),
                       lambda g, x, y: leaky_relu_backward_ref(g, x, 0.2)),
    "leaky_relu_-0.5": (lambda x: ak.leaky_relu_forward(x, negative_slope=-0.5),
                        lambda g, x, y: ak.leaky_relu_backward(g, x, -0.5),
                        lambda x: leaky_relu_ref(x, -0.5),
                        lambda g, x, y: leaky_relu_backward_ref(g, x, -0.5)),
    "sigmoid": (ak.sigmoid_forward, lambda g, x, y: ak.sigmoid_backward(g, y),
                sigmoid_ref, lambda g, x, y: sigmoid_backward_ref(g, y)),
    "tanh": (ak.tanh_forward, lambda g, x, y: ak.tanh_backward(g, y),
             tanh_ref, lambda g, x, y: tanh_backward_ref(g, y)),
}


@pytest.mark.parametrize("name", list(ACTS))
@pytest.mark.parametrize("shape", ACT_SHAPES, ids=_shape_text)
def test_activation_vs_reference(name, shape, dtype, rng):
    fwd, bwd, rfwd, rbwd = ACTS[name]
    x = randn(rng, shape, dtype, scale=3.0)
    y = fwd(x)
    close(y, rfwd(x), dtype, what=f"{name} y")
    gy = randn(rng, shape, dtype)
    gx = bwd(gy, x, y)
    close(gx, rbwd(gy, x, y), dtype, what=f"{name} grad_x")


@pytest.mark.parametrize("name", list(ACTS))
def test_activation_finite_differences(name, rng):
    fwd, bwd, _, _ = ACTS[name]
    x = away_from(rng, (4, 6), np.float64, kinks=(0.0,), margin=1e-3)
    gy = randn(rng, x.shape)
    gx = bwd(gy, x, fwd(x))
    assert_fd(gx, numerical_grad(lambda v: np.sum(gy * fwd(v)), x.copy()), f"{name} grad_x")


@pytest.mark.parametrize("name", list(ACTS))
def test_activation_non_contiguous(name, dtype, rng):
    fwd, bwd, rfwd, rbwd = ACTS[name]
    x = randn(rng, (6, 8), dtype, scale=3.0)[::2, 1::2].T
    gy = randn(rng, (8, 6), dtype)[::2, ::2]
    y = fwd(x)
    assert y.flags.c_contiguous
    close(y, rfwd(x), dtype, what="y")
    close(bwd(gy, x, y), rbwd(gy, x, y), dtype, what="grad_x")


def test_relu_edge_values(dtype):
    x = np.array([np.nan, -np.inf, np.inf, -0.0, 0.0, -1e-30, 1e-30], dtype=dtype)
    y = ak.relu_forward(x)
    assert np.isnan(y[0]) and y[1] == 0 and y[2] == np.inf
    assert np.all(y[3:6] == 0) and y[6] == dtype.type(1e-30)
    g = ak.relu_backward(np.ones_like(x), x)
    assert np.array_equal(g[1:], np.array([0, 1, 0, 0, 0, 1], dtype=dtype))  # 0 at x = 0
    g = ak.leaky_relu_backward(np.ones_like(x), x, 0.25)
    assert np.array_equal(g[1:], np.array([0.25, 1, 0.25, 0.25, 0.25, 1], dtype=dtype))


def test_sigmoid_tanh_extremes(dtype):
    x = np.array([-1e4, -1000.0, -100.0, -30.0, 0.0, 30.0, 100.0, 1000.0, 1e4, np.inf, -np.inf],
                 dtype=dtype)
    s = ak.sigmoid_forward(x)
    assert not np.isnan(s).any() and np.all((s >= 0) & (s <= 1))
    assert s[4] == 0.5 and s[-2] == 1 and s[-1] == 0 and s[0] == 0 and s[-3] == 1
    close(s, sigmoid_ref(x), dtype, what="sigmoid")
    t = ak.tanh_forward(x)
    assert not np.isnan(t).any()
    assert np.array_equal(t[:4], -np.ones(4, dtype))
    assert t[4] == 0 and t[-2] == 1 and t[-1] == -1 and t[-3] == 1
    close(t, tanh_ref(x), dtype, what="tanh")


def test_sigmoid_tanh_relative_accuracy(dtype):
    """Within a few ulp, relatively, also where the result is tiny (docstrings: ~1 ulp)."""
    x = np.concatenate([np.linspace(-30, 30, 6001), -np.logspace(-12, 1, 500),
                        np.logspace(-12, 1, 500)]).astype(dtype)
    s = ak.sigmoid_forward(x)
    assert ulps(s, sigmoid_ref(x), dtype).max() <= 4, "sigmoid"
    t = ak.tanh_forward(x)
    u = ulps(t, tanh_ref(x), dtype)
    assert u.max() <= 4, f"tanh: {u.max()} ulp at x = {x[np.argmax(u)]!r}"


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "leaky_relu_0.2", "sigmoid", "tanh"])
def test_activation_vs_torch(name, dtype, rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    tf = {"relu": F.relu, "leaky_relu": F.leaky_relu,
          "leaky_relu_0.2": lambda t: F.leaky_relu(t, 0.2),
          "sigmoid": torch.sigmoid, "tanh": torch.tanh}[name]
    fwd, bwd, _, _ = ACTS[name]
    x = away_from(rng, (5, 7), dtype, margin=1e-3, scale=3.0)
    gy = randn(rng, x.shape, dtype)
    tx = torch.tensor(x.astype(np.float64), requires_grad=True)
    ty = tf(tx)
    ty.backward(torch.tensor(gy.astype(np.float64)))
    y = fwd(x)
    close(y, ty.detach().numpy(), dtype, what="y")
    close(bwd(gy, x, y), tx.grad.numpy(), dtype, what="grad_x")


# ----------------------------------------------------------------------------------
# softmax / log_softmax
# ----------------------------------------------------------------------------------

SM_SHAPES = [(5,), (1,), (3, 7), (4, 1), (2, 3, 4), (0, 5), (3, 5000), (257, 33), (3, 0)]
SM = {
    "softmax": (ak.softmax_forward, ak.softmax_backward, softmax_ref, softmax_backward_ref),
    "log_softmax": (ak.log_softmax_forward, ak.log_softmax_backward, log_softmax_ref,
                    log_softmax_backward_ref),
}


def sm_backward_magnitude(name, gy, y):
    gy, y = np.abs(gy.astype(np.float64)), y.astype(np.float64)
    if name == "softmax":
        return np.abs(y) * (gy + (gy * np.abs(y)).sum(axis=-1, keepdims=True))
    return gy + np.exp(y) * gy.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("name", list(SM))
@pytest.mark.parametrize("shape", SM_SHAPES, ids=_shape_text)
def test_softmax_vs_reference(name, shape, dtype, rng):
    fwd, bwd, rfwd, rbwd = SM[name]
    x = randn(rng, shape, dtype, scale=4.0)
    y = fwd(x)
    ref = rfwd(x)
    # log_softmax: relative to |x - max| + log-sum (cancellation in x - max - lse)
    mag = None
    if name == "log_softmax" and x.size:
        mag = np.abs(x.astype(np.float64)) + np.abs(x.astype(np.float64)).max(axis=-1, keepdims=True) + 1
    close(y, ref, dtype, mag, f"{name} y")
    if name == "softmax" and x.size:
        assert np.allclose(y.astype(np.float64).sum(axis=-1), 1.0, rtol=0, atol=1e-5)
    gy = randn(rng, shape, dtype)
    gx = bwd(gy, y)
    close(gx, rbwd(gy, y), dtype, sm_backward_magnitude(name, gy, y) if y.size else None,
          f"{name} grad_x")


@pytest.mark.parametrize("name", list(SM))
def test_softmax_finite_differences(name, rng):
    fwd, bwd, _, _ = SM[name]
    x = randn(rng, (3, 6), scale=2.0)
    gy = randn(rng, x.shape)
    gx = bwd(gy, fwd(x))
    assert_fd(gx, numerical_grad(lambda v: np.sum(gy * fwd(v)), x.copy()), f"{name} grad_x")


@pytest.mark.parametrize("name", list(SM))
def test_softmax_huge_logits(name, dtype):
    x = np.array([[1e4, -1e4, 0.0, 1e4],
                  [-1e4, -1e4, -1e4, -1e4],
                  [1e4, 1e4 - 1, -1e4, 3.0],
                  [-1e4, 1e4, -1e4, -1e4]], dtype=dtype)
    fwd = SM[name][0]
    y = fwd(x)
    assert np.all(np.isfinite(y)), y
    ref = (softmax_ref if name == "softmax" else log_softmax_ref)(x)
    close(y, ref, dtype, what=name)
    if name == "softmax":  # exp(-2e4) and exp(-1e4) are exactly 0
        assert np.all(y[0, 1:3] == 0) and np.all(y[3, [0, 2, 3]] == 0)
        assert ulps(y[0, [0, 3]], [0.5, 0.5], dtype).max() <= 2
        assert ulps(y[1], np.full(4, 0.25), dtype).max() <= 2
        assert ulps(y[3, 1], 1.0, dtype) <= 2
    else:
        assert y[3, 1] == 0  # log(1 + 3 exp(-2e4)) = 0
        assert ulps(y[1], np.full(4, -math.log(4)), dtype).max() <= 2
        assert abs(float(y[0, 1]) - (-2e4 - math.log(2))) <= 4 * np.spacing(dtype.type(2e4))
    g = SM[name][1](np.ones_like(x), y)
    assert np.all(np.isfinite(g))


def test_softmax_masked_and_nan_rows(dtype):
    """-inf logits (masking) get probability 0 / log-probability -inf; a NaN poisons its
    own row only (as torch)."""
    x = np.array([[-np.inf, 0.0, 0.0, -np.inf],
                  [1.0, np.nan, 2.0, 3.0],
                  [0.0, 0.0, 0.0, 0.0]], dtype=dtype)
    y = ak.softmax_forward(x)
    assert np.array_equal(y[0], np.array([0, 0.5, 0.5, 0], dtype))
    assert np.isnan(y[1]).all()
    assert ulps(y[2], np.full(4, 0.25), dtype).max() <= 2
    ly = ak.log_softmax_forward(x)
    assert ly[0, 0] == -np.inf and ly[0, 3] == -np.inf
    assert ulps(ly[0, 1:3], np.full(2, -math.log(2)), dtype).max() <= 2
    assert np.isnan(ly[1]).all()
    assert ulps(ly[2], np.full(4, -math.log(4)), dtype).max() <= 2


def test_softmax_0d_raises():
    for fn in (ak.softmax_forward, ak.log_softmax_forward):
        with pytest.raises(ValueError) as e:
            fn(np.array(1.0))
        assert names(str(e.value), "x"), str(e.value)
    for fn in (ak.softmax_backward, ak.log_softmax_backward):
        with pytest.raises(ValueError) as e:
            fn(np.array(1.0), np.array(1.0))
        assert names(str(e.value), "y") or names(str(e.value), "grad_y"), str(e.value)


@pytest.mark.parametrize("name", list(SM))
def test_softmax_non_contiguous(name, dtype, rng):
    fwd, bwd, rfwd, rbwd = SM[name]
    x = randn(rng, (9, 12), dtype)[::2, ::3].T  # (4, 5)
    y = fwd(x)
    assert y.flags.c_contiguous
    close(y, rfwd(x), dtype, np.abs(x.astype(np.float64)) + 10, "y")
    gy = randn(rng, (5, 4), dtype).T
    close(bwd(gy, y), rbwd(gy, y), dtype, sm_backward_magnitude(name, gy, y), "grad_x")


@pytest.mark.parametrize("name", list(SM))
def test_softmax_vs_torch(name, dtype, rng):
    torch = pytest.importorskip("torch")
    tf = {"softmax": torch.softmax, "log_softmax": torch.log_softmax}[name]
    fwd, bwd, _, _ = SM[name]
    x = randn(rng, (2, 3, 6), dtype, scale=3.0)
    gy = randn(rng, x.shape, dtype)
    tx = torch.tensor(x.astype(np.float64), requires_grad=True)
    ty = tf(tx, -1)
    ty.backward(torch.tensor(gy.astype(np.float64)))
    y = fwd(x)
    close(y, ty.detach().numpy(), dtype, np.abs(x.astype(np.float64)) + 10, "y")
    close(bwd(gy, y), tx.grad.numpy(), dtype, sm_backward_magnitude(name, gy, y), "grad_x")


# ----------------------------------------------------------------------------------
# softmax cross-entropy
# ----------------------------------------------------------------------------------


def ce_inputs(rng, B, K, dtype, ignore_frac=0.0, ignore_index=-100, scale=3.0):
    z = randn(rng, (B, K), dtype, scale=scale)
    t = rng.integers(0, K, size=B).astype(np.int64)
    if ignore_frac and B:
        t[rng.random(B) < ignore_frac] = ignore_index
    return z, t


def check_ce(got, ref, reduction, dtype, z):
    loss, grad = got
    rloss, rgrad = ref
    assert isinstance(grad, np.ndarray) and grad.dtype == dtype and grad.shape == z.shape
    mag_rows = np.abs(z.astype(np.float64)).max(axis=1, initial=0) * 2 + 10 if z.size else None
    if reduction == "none":
        assert isinstance(loss, np.ndarray) and loss.dtype == dtype and loss.shape == (z.shape[0],)
        close(loss, rloss, dtype, mag_rows, "loss")
    else:
        check_scalar_loss(loss, dtype)
        if np.isnan(rloss):
            assert np.isnan(loss), loss
        else:
            m = float(mag_rows.sum()) if mag_rows is not None else 0.0
            if reduction == "mean" and mag_rows is not None:
                m /= max(1, len(mag_rows))
            close(loss, rloss, dtype, m, "loss")
    close(grad, rgrad, dtype, what="grad_logits")


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("B,K,ignore_frac", [(8, 5, 0.0), (8, 5, 0.4), (1, 1, 0.0),
                                             (33, 10, 0.2), (2, 1000, 0.0), (0, 4, 0.0),
                                             (600, 7, 0.3)])
def test_cross_entropy_vs_reference(B, K, ignore_frac, reduction, dtype, rng):
    z, t = ce_inputs(rng, B, K, dtype, ignore_frac)
    got = ak.softmax_cross_entropy(z, t, reduction=reduction)
    check_ce(got, cross_entropy_ref(z, t, reduction), reduction, dtype, z)
    if ignore_frac:
        assert np.all(got[1][t == -100] == 0), "ignored rows must have zero gradient"
        if reduction == "none":
            assert np.all(got[0][t == -100] == 0)


@pytest.mark.parametrize("ignore_index", [2, -1, 7, 10**12])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_custom_ignore_index(ignore_index, reduction, dtype, rng):
    """Any int is a valid ignore_index, also one inside [0, K) (rows of that class are
    then ignored) or beyond it; -100 is then an ordinary (out-of-range) target."""
    B, K = 12, 5
    z, t = ce_inputs(rng, B, K, dtype, 0.3, ignore_index=ignore_index)
    got = ak.softmax_cross_entropy(z, t, reduction, ignore_index)
    check_ce(got, cross_entropy_ref(z, t, reduction, ignore_index), reduction, dtype, z)
    t2 = t.copy()
    t2[0] = -100
    if ignore_index != -100:
        with pytest.raises(ValueError) as e:
            ak.softmax_cross_entropy(z, t2, reduction, ignore_index=ignore_index)
        assert names(str(e.value), "targets"), str(e.value)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_all_ignored(reduction, dtype, rng):
    z = randn(rng, (4, 3), dtype)
    t = np.full(4, -100, np.int64)
    loss, grad = ak.softmax_cross_entropy(z, t, reduction)
    assert grad.dtype == dtype and np.all(grad == 0) and not np.isnan(grad).any()
    if reduction == "mean":
        check_scalar_loss(loss, dtype)
        assert np.isnan(loss), "mean over no rows is NaN (as PyTorch)"
    elif reduction == "sum":
        check_scalar_loss(loss, dtype)
        assert loss == 0
    else:
        assert loss.shape == (4,) and np.all(loss == 0)


def test_cross_entropy_empty_batch(dtype):
    z, t = np.zeros((0, 3), dtype), np.zeros(0, np.int64)
    loss, grad = ak.softmax_cross_entropy(z, t)
    check_scalar_loss(loss, dtype)
    assert np.isnan(loss) and grad.shape == (0, 3) and grad.dtype == dtype
    loss, grad = ak.softmax_cross_entropy(z, t, "sum")
    check_scalar_loss(loss, dtype)
    assert loss == 0
    loss, grad = ak.softmax_cross_entropy(z, t, "none")
    assert loss.shape == (0,) and loss.dtype == dtype


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_finite_differences(reduction, rng):
    z, t = ce_inputs(rng, 5, 4, np.float64, 0.0)
    t[1] = -100  # an ignored row

    def f(v):
        loss, _ = ak.softmax_cross_entropy(v, t, reduction)
        return np.sum(loss)

    _, grad = ak.softmax_cross_entropy(z, t, reduction)
    assert_fd(grad, numerical_grad(f, z.copy()), f"grad_logits ({reduction})")
    assert np.all(grad[1] == 0)


def test_cross_entropy_huge_logits(dtype):
    z = np.array([[1e4, -1e4, 0.0],
                  [-1e4, 1e4, -1e4],
                  [1e4, 1e4, -1e4],
                  [-1e4, -1e4, -1e4]], dtype=dtype)
    t = np.array([1, 1, 0, 2], np.int64)
    loss, grad = ak.softmax_cross_entropy(z, t, "none")
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
    ref_loss, ref_grad = cross_entropy_ref(z, t, "none")
    close(loss, ref_loss, dtype, what="loss")
    assert loss[0] == dtype.type(2e4) and loss[1] == 0
    assert abs(float(loss[2]) - math.log(2)) <= 4 * np.finfo(dtype).eps
    assert abs(float(loss[3]) - math.log(3)) <= 4 * np.finfo(dtype).eps
    close(grad, ref_grad, dtype, what="grad_logits")
    assert np.array_equal(grad[0], np.array([1, -1, 0], dtype))
    assert np.array_equal(grad[1], np.zeros(3, dtype))
    for red in ("mean", "sum"):
        l, g = ak.softmax_cross_entropy(z, t, red)
        rl, rg = cross_entropy_ref(z, t, red)
        assert np.isfinite(l) and np.all(np.isfinite(g))
        close(l, rl, dtype, what=f"loss ({red})")


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("ignore_index", [-100, 1])
def test_cross_entropy_vs_torch(reduction, ignore_index, dtype, rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    z, t = ce_inputs(rng, 9, 4, dtype, 0.3, ignore_index=ignore_index)
    z[0] = [1e4, -1e4, 0, 3]  # one huge row
    tz = torch.tensor(z.astype(np.float64), requires_grad=True)
    tl = F.cross_entropy(tz, torch.tensor(t), reduction=reduction, ignore_index=ignore_index)
    tl.sum().backward()
    loss, grad = ak.softmax_cross_entropy(z, t, reduction, ignore_index)
    tol_mag = np.abs(tl.detach().numpy()) + 1
    close(loss, tl.detach().numpy(), dtype, tol_mag, "loss")
    close(grad, tz.grad.numpy(), dtype, what="grad_logits")


def test_cross_entropy_all_ignored_vs_torch(dtype, rng):
    torch = pytest.importorskip("torch")
    z = randn(rng, (3, 4), dtype)
    t = np.full(3, -100, np.int64)
    tz = torch.tensor(z.astype(np.float64), requires_grad=True)
    tl = torch.nn.functional.cross_entropy(tz, torch.tensor(t))
    tl.backward()
    loss, grad = ak.softmax_cross_entropy(z, t)
    assert np.isnan(loss) and np.isnan(tl.item())
    assert np.array_equal(grad, tz.grad.numpy().astype(dtype))


# ----------------------------------------------------------------------------------
# mse / l1 / huber
# ----------------------------------------------------------------------------------

LOSS_SHAPES = [(), (0,), (1,), (7,), (3, 4, 5), (0, 3), (70001,)]
LOSSES = {
    "mse": (lambda p, t, r: ak.mse_loss(p, t, r), mse_ref),
    "l1": (lambda p, t, r: ak.l1_loss(p, t, reduction=r), l1_ref),
    "huber": (lambda p, t, r: ak.huber_loss(p, t, reduction=r),
              lambda p, t, r: huber_ref(p, t, reduction=r)),
    "huber_0.5": (lambda p, t, r: ak.huber_loss(p, t, 0.5, r),
                  lambda p, t, r: huber_ref(p, t, 0.5, r)),
    "huber_2.5": (lambda p, t, r: ak.huber_loss(p, t, delta=2.5, reduction=r),
                  lambda p, t, r: huber_ref(p, t, 2.5, r)),
}
LOSS_KINKS = {"mse": (), "l1": (0.0,), "huber": (-1.0, 0.0, 1.0), "huber_0.5": (-0.5, 0.0, 0.5),
              "huber_2.5": (-2.5, 0.0, 2.5)}


def check_loss(got, ref, reduction, dtype, shape):
    loss, grad = got
    rloss, rgrad = ref
    assert isinstance(grad, np.ndarray) and grad.dtype == dtype and grad.shape == shape
    if reduction == "none":
        assert isinstance(loss, np.ndarray) and loss.dtype == dtype and loss.shape == shape
        close(loss, rloss, dtype, what="loss")
    else:
        check_scalar_loss(loss, dtype)
        if np.isnan(rloss):
            assert np.isnan(loss)
        else:
            close(loss, rloss, dtype, what="loss")  # all terms >= 0: no cancellation
    close(grad, rgrad, dtype, what="grad_pred")


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", LOSS_SHAPES, ids=_shape_text)
@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_vs_reference(name, shape, reduction, dtype, rng):
    fn, ref = LOSSES[name]
    p, t = randn(rng, shape, dtype, 2.0), randn(rng, shape, dtype, 2.0)
    if shape == (7,):
        t[:3] = p[:3]  # d = 0 exactly: l1's gradient is 0 there
    check_loss(fn(p, t, reduction), ref(p, t, reduction), reduction, dtype, shape)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_finite_differences(name, reduction, rng):
    fn, _ = LOSSES[name]
    t = randn(rng, (3, 5), np.float64, 2.0)
    d = away_from(rng, t.shape, np.float64, LOSS_KINKS[name], margin=1e-2, scale=2.0)
    p = t + d
    _, grad = fn(p, t, reduction)
    assert_fd(grad, numerical_grad(lambda v: np.sum(fn(v, t, reduction)[0]), p.copy()),
              f"{name} grad_pred ({reduction})")


def test_huber_regions_exact(dtype):
    """d = 0.5 (quadratic), 1 (boundary: quadratic branch), 3 and -3 (linear)."""
    p = np.array([0.5, 1.0, 3.0, -3.0, 0.0], dtype)
    t = np.zeros(5, dtype)
    loss, grad = ak.huber_loss(p, t, reduction="none")
    assert np.array_equal(loss, np.array([0.125, 0.5, 2.5, 2.5, 0.0], dtype))
    assert np.array_equal(grad, np.array([0.5, 1.0, 1.0, -1.0, 0.0], dtype))
    loss, grad = ak.huber_loss(p, t, 2.0, "sum")
    assert float(loss) == 0.125 + 0.5 + 4.0 + 4.0
    assert np.array_equal(grad, np.array([0.5, 1.0, 2.0, -2.0, 0.0], dtype))
    loss, grad = ak.l1_loss(p, t, "mean")
    assert float(loss) == 7.5 / 5 and np.array_equal(grad, np.array([1, 1, 1, -1, 0], dtype) / 5)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", ["mse", "l1", "huber", "huber_0.5", "huber_2.5"])
def test_loss_vs_torch(name, reduction, dtype, rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    tf = {"mse": F.mse_loss, "l1": F.l1_loss, "huber": F.huber_loss,
          "huber_0.5": lambda a, b, reduction: F.huber_loss(a, b, reduction=reduction, delta=0.5),
          "huber_2.5": lambda a, b, reduction: F.huber_loss(a, b, reduction=reduction, delta=2.5),
          }[name]
    fn, _ = LOSSES[name]
    p, t = randn(rng, (4, 6), dtype, 2.0), randn(rng, (4, 6), dtype, 2.0)
    tp = torch.tensor(p.astype(np.float64), requires_grad=True)
    tl = tf(tp, torch.tensor(t.astype(np.float64)), reduction=reduction)
    tl.sum().backward()
    loss, grad = fn(p, t, reduction)
    close(loss, tl.detach().numpy(), dtype, what="loss")
    close(grad, tp.grad.numpy(), dtype, what="grad_pred")


def test_loss_float32_sums_accurately(rng):
    """A float32 sum of 1e6 terms: summed in double (chunks), so close to float64."""
    p = np.array(rng.standard_normal(1_000_000), np.float32)
    t = np.zeros_like(p)
    loss, _ = ak.mse_loss(p, t, "sum")
    ref = float(np.sum(p.astype(np.float64) ** 2))
    assert abs(float(loss) - ref) <= 1e-6 * ref, (float(loss), ref)


def test_loss_non_contiguous(dtype, rng):
    p = randn(rng, (6, 10), dtype)[::2, 1::3].T
    t = randn(rng, (10, 6), dtype)[1::3, ::2]
    for name, (fn, ref) in LOSSES.items():
        for r in REDUCTIONS:
            check_loss(fn(p, t, r), ref(p, t, r), r, dtype, p.shape)


# ----------------------------------------------------------------------------------
# thread counts: bitwise identical (everything but linear)
# ----------------------------------------------------------------------------------


def _thread_outputs(dtype, rng):
    """Every non-GEMM kernel on inputs large enough to be split across threads."""
    n = 300_001
    x = randn(rng, n, dtype, 3.0)
    gy = randn(rng, n, dtype)
    t = randn(rng, n, dtype, 3.0)
    z = randn(rng, (4001, 37), dtype, 4.0)
    gz = randn(rng, z.shape, dtype)
    tg = rng.integers(0, 37, 4001).astype(np.int64)
    tg[::7] = -100

    def run():
        out = []
        for name, (fwd, bwd, _, _) in ACTS.items():
            y = fwd(x)
            out += [y, bwd(gy, x, y)]
        for name, (fwd, bwd, _, _) in SM.items():
            y = fwd(z)
            out += [y, bwd(gz, y)]
        for r in REDUCTIONS:
            out += list(ak.softmax_cross_entropy(z, tg, r))
            for fn, _ in LOSSES.values():
                out += list(fn(x, t, r))
        y, m = ak.dropout_forward(x, 0.3, seed=99)
        out += [y, m, ak.dropout_backward(gy, m, 0.3)]
        return out

    return run


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_thread_counts_bitwise(dt, restore_threads, rng):
    run = _thread_outputs(np.dtype(dt), rng)
    results = {}
    for threads in (1, 2, 3):
        ak.set_num_threads(threads)
        results[threads] = run()
    again = run()  # the same call twice: bitwise identical too
    for i, (a, b) in enumerate(zip(results[3], again)):
        assert same_bits(a, b), f"output {i} differs between two identical calls"
    for threads in (2, 3):
        for i, (a, b) in enumerate(zip(results[threads], results[1])):
            assert same_bits(a, b), f"output {i} differs bitwise ({threads} threads vs 1)"


def test_dropout_mask_thread_counts_vs_reference(restore_threads):
    n, p, seed = 500_003, 0.5, 2**33 + 1
    ref = dropout_mask_ref((n,), p, seed)
    for threads in (1, 2, 3):
        ak.set_num_threads(threads)
        _, mask = ak.dropout_forward(np.ones(n, np.float32), p, seed=seed)
        assert np.array_equal(mask, ref), f"{threads} threads"


def test_linear_thread_counts_close(restore_threads, rng):
    """linear is exempt from bitwise equality (GEMM) but must agree closely."""
    x, w, b = randn(rng, (300, 200)), randn(rng, (150, 200)), randn(rng, (150,))
    gy = randn(rng, (300, 150))
    m = linear_abs_magnitudes(gy, x, w, b)
    for threads in (1, 3):
        ak.set_num_threads(threads)
        close(ak.linear_forward(x, w, b), linear_ref(x, w, b), np.float64, m[0], "y")
        for got, ref, mm in zip(ak.linear_backward(gy, x, w), linear_backward_ref(gy, x, w), m[1:]):
            close(got, ref, np.float64, mm)


# ----------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------


def _raises(exc, arg, call, arrays=(), shape=None):
    """call() raises exc whose message names arg (and shows shape), and no input array
    changed."""
    snap = [(a, a.copy()) for a in arrays if isinstance(a, np.ndarray)]
    with pytest.raises(exc) as e:
        call()
    msg = str(e.value)
    if arg is not None:
        assert names(msg, arg), f"message does not name {arg!r}: {msg}"
    if shape is not None:
        assert _shape_text(shape) in msg, f"message does not show the shape {shape}: {msg}"
    for a, s in snap:
        assert same_bits(a, s), f"an input changed although the call raised ({msg})"
    return msg


def test_validation_cross_entropy_targets(rng):
    z = randn(rng, (4, 3))
    f = ak.softmax_cross_entropy
    for bad in (3, -1, -101, 10**10, -(2**63)):
        t = np.array([0, 1, bad, 2], np.int64)
        _raises(ValueError, "targets", lambda: f(z, t), [z, t])
        _raises(ValueError, "targets", lambda: f(z, t, "none"), [z, t])
    _raises(TypeError, "targets", lambda: f(z, np.array([0, 1, 2, 0], np.int32)), [z])
    _raises(TypeError, "targets", lambda: f(z, np.array([0, 1, 2, 0], np.float64)), [z])
    _raises(TypeError, "targets", lambda: f(z, np.array([0, 1, 2, 0], np.uint64)), [z])
    _raises(TypeError, "targets", lambda: f(z, [0, 1, 2, 0]), [z])
    t = np.array([0, 1, 2], np.int64)
    _raises(ValueError, "targets", lambda: f(z, t), [z, t], shape=(3,))
    _raises(ValueError, "targets", lambda: f(z, np.zeros((4, 1), np.int64)), [z], shape=(4, 1))
    t = np.array([0, 1, 2, 0], np.int64)
    _raises(ValueError, "logits", lambda: f(z[0], t), [z, t], shape=(3,))
    _raises(ValueError, "logits", lambda: f(z[None], t), [z, t], shape=(1, 4, 3))
    _raises(ValueError, "logits", lambda: f(np.zeros((4, 0)), t), [t])
    _raises(TypeError, "logits", lambda: f(z.astype(np.int64), t), [t])
    _raises(TypeError, "logits", lambda: f(z.astype(np.float16), t), [t])
    _raises(ValueError, "reduction", lambda: f(z, t, "avg"), [z, t])
    _raises(ValueError, "reduction", lambda: f(z, t, None), [z, t])
    _raises(TypeError, "ignore_index", lambda: f(z, t, ignore_index=1.0), [z, t])


@pytest.mark.parametrize("fn", ["mse_loss", "l1_loss", "huber_loss"])
def test_validation_losses(fn, rng):
    f = getattr(ak, fn)
    p, t = randn(rng, (3, 4)), randn(rng, (3, 4))
    _raises(ValueError, "reduction", lambda: f(p, t, reduction="avg"), [p, t])
    _raises(ValueError, "reduction", lambda: f(p, t, reduction="Mean"), [p, t])
    _raises(ValueError, "target", lambda: f(p, t[:, :3]), [p, t], shape=(3, 3))
    _raises(ValueError, "target", lambda: f(p, t.T), [p, t], shape=(4, 3))
    _raises(ValueError, "target", lambda: f(p, t.reshape(-1)), [p, t], shape=(12,))
    _raises(TypeError, "target", lambda: f(p, t.astype(np.float32)), [p, t])
    _raises(TypeError, "pred", lambda: f(p.astype(np.int32), t.astype(np.int32)), [p, t])
    _raises(TypeError, None, lambda: f([1.0, 2.0], [1.0, 2.0]), [])


def test_validation_huber_delta(rng):
    p, t = randn(rng, 5), randn(rng, 5)
    for bad in (0.0, -1.0, -0.0, math.nan):
        _raises(ValueError, "delta", lambda: ak.huber_loss(p, t, delta=bad), [p, t])
    _raises(TypeError, "delta", lambda: ak.huber_loss(p, t, delta="1"), [p, t])
    ak.huber_loss(p, t, delta=1e-6)  # tiny but valid
    ak.huber_loss(p, t, delta=math.inf)  # pure quadratic
    loss, _ = ak.huber_loss(p, t, delta=math.inf, reduction="sum")
    assert abs(float(loss) - 0.5 * float(np.sum((p - t) ** 2))) <= 1e-12 * float(loss)


def test_validation_dropout(rng):
    x = randn(rng, (3, 4))
    for bad in (-0.1, 1.1, math.nan, math.inf, -1e-12):
        _raises(ValueError, "p", lambda: ak.dropout_forward(x, bad, seed=1), [x])
        m = np.ones(x.shape, bool)
        _raises(ValueError, "p", lambda: ak.dropout_backward(x, m, bad), [x, m])
    _raises(TypeError, "p", lambda: ak.dropout_forward(x, "0.5", seed=1), [x])
    _raises(TypeError, "p", lambda: ak.dropout_forward(x, None, seed=1), [x])
    _raises(ValueError, "seed", lambda: ak.dropout_forward(x, 0.5, seed=-1), [x])
    _raises(ValueError, "seed", lambda: ak.dropout_forward(x, 0.5, seed=2**64), [x])
    _raises(TypeError, "seed", lambda: ak.dropout_forward(x, 0.5, seed=1.0), [x])
    _raises(TypeError, "seed", lambda: ak.dropout_forward(x, 0.5, seed=True), [x])
    with pytest.raises(TypeError):
        ak.dropout_forward(x, 0.5)  # seed is required (keyword-only)
    with pytest.raises(TypeError):
        ak.dropout_forward(x, 0.5, 1)
    _raises(TypeError, "training", lambda: ak.dropout_forward(x, 0.5, seed=1, training=1), [x])
    _raises(TypeError, "x", lambda: ak.dropout_forward(x.astype(np.int64), 0.5, seed=1), [])
    _raises(TypeError, "x", lambda: ak.dropout_forward(x.astype(np.float16), 0.5, seed=1), [])
    m = np.ones(x.shape, bool)
    _raises(ValueError, "mask", lambda: ak.dropout_backward(x, m[:, :3], 0.5), [x, m], shape=(3, 3))
    _raises(ValueError, "mask", lambda: ak.dropout_backward(x, m.T, 0.5), [x, m], shape=(4, 3))
    _raises(TypeError, "mask", lambda: ak.dropout_backward(x, m.astype(np.float64), 0.5), [x])
    _raises(TypeError, "mask", lambda: ak.dropout_backward(x, m.astype(np.uint8), 0.5), [x])
    _raises(TypeError, "grad_y", lambda: ak.dropout_backward(x.astype(np.int32), m, 0.5), [m])
    # seeds at the ends of the range are valid
    for seed in (0, 2**64 - 1, np.uint64(2**64 - 1), np.int64(5)):
        ak.dropout_forward(x, 0.5, seed=seed)


def test_validation_linear(rng):
    x, w, b, gy = randn(rng, (4, 3)), randn(rng, (5, 3)), randn(rng, 5), randn(rng, (4, 5))
    A = [x, w, b, gy]
    _raises(ValueError, "weight", lambda: ak.linear_forward(x, w[:, :2]), A, shape=(5, 2))
    _raises(ValueError, "weight", lambda: ak.linear_forward(x, w[0]), A, shape=(3,))
    _raises(ValueError, "x", lambda: ak.linear_forward(x[0], w), A, shape=(3,))
    _raises(ValueError, "x", lambda: ak.linear_forward(x[None], w), A, shape=(1, 4, 3))
    _raises(ValueError, "bias", lambda: ak.linear_forward(x, w, b[:4]), A, shape=(4,))
    _raises(ValueError, "bias", lambda: ak.linear_forward(x, w, b[None]), A, shape=(1, 5))
    _raises(TypeError, "weight", lambda: ak.linear_forward(x, w.astype(np.float32)), A)
    _raises(TypeError, "bias", lambda: ak.linear_forward(x, w, b.astype(np.float32)), A)
    _raises(TypeError, None, lambda: ak.linear_forward(x.astype(np.float32), w, b), A)
    _raises(TypeError, "x", lambda: ak.linear_forward(x.astype(np.int64), w.astype(np.int64)), A)
    _raises(ValueError, "grad_y", lambda: ak.linear_backward(gy[:, :4], x, w), A, shape=(4, 4))
    _raises(ValueError, "grad_y", lambda: ak.linear_backward(gy[:3], x, w), A, shape=(3, 5))
    _raises(ValueError, "weight", lambda: ak.linear_backward(gy, x, w[:, :2]), A, shape=(5, 2))
    _raises(ValueError, "x", lambda: ak.linear_backward(gy, x.reshape(-1), w), A, shape=(12,))
    _raises(TypeError, "grad_y", lambda: ak.linear_backward(gy.astype(np.float32), x, w), A)
    _raises(TypeError, "weight", lambda: ak.linear_backward(gy, x, w.astype(np.float32)), A)
    _raises((ValueError, TypeError), "output_mask",
            lambda: ak.linear_backward(gy, x, w, output_mask=(True, True)), A)
    _raises((ValueError, TypeError), "output_mask",
            lambda: ak.linear_backward(gy, x, w, output_mask=(1, 1, 1)), A)
    _raises((ValueError, TypeError), "output_mask",
            lambda: ak.linear_backward(gy, x, w, output_mask=True), A)


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "sigmoid", "tanh"])
def test_validation_activations(name, rng):
    fwd, bwd = getattr(ak, f"{name}_forward"), getattr(ak, f"{name}_backward")
    second = "x" if name in ("relu", "leaky_relu") else "y"
    x, g = randn(rng, (3, 4)), randn(rng, (3, 4))
    _raises(ValueError, second, lambda: bwd(g, x[:, :3]), [x, g], shape=(3, 3))
    _raises(ValueError, second, lambda: bwd(g, x.T), [x, g], shape=(4, 3))
    _raises(ValueError, second, lambda: bwd(g, x[0]), [x, g], shape=(4,))
    _raises(TypeError, second, lambda: bwd(g, x.astype(np.float32)), [x, g])
    _raises(TypeError, "grad_y", lambda: bwd(g.astype(np.int64), x.astype(np.int64)), [x, g])
    _raises(TypeError, "x", lambda: fwd(x.astype(np.int32)), [x])
    _raises(TypeError, "x", lambda: fwd(x.astype(np.float16)), [x])
    _raises(TypeError, "x", lambda: fwd([1.0, 2.0]), [])
    if name == "leaky_relu":
        _raises(TypeError, "negative_slope", lambda: fwd(x, "0.1"), [x])
        _raises(TypeError, "negative_slope", lambda: bwd(g, x, None), [x, g])


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_validation_softmax(name, rng):
    fwd, bwd = getattr(ak, f"{name}_forward"), getattr(ak, f"{name}_backward")
    y, g = randn(rng, (3, 4)), randn(rng, (3, 4))
    _raises(ValueError, "y", lambda: bwd(g, y[:, :3]), [y, g], shape=(3, 3))
    _raises(ValueError, "y", lambda: bwd(g, y[None]), [y, g], shape=(1, 3, 4))
    _raises(TypeError, "y", lambda: bwd(g, y.astype(np.float32)), [y, g])
    _raises(TypeError, "x", lambda: fwd(y.astype(np.int64)), [y])


def test_zero_size_shapes_everywhere(dtype):
    """A zero-size batch returns correctly shaped empty results of the right dtype."""
    e = np.zeros((0, 4), dtype)
    for fwd, _, _, _ in ACTS.values():
        r = fwd(e)
        assert r.shape == (0, 4) and r.dtype == dtype
    for fwd, bwd, _, _ in SM.values():
        r = fwd(e)
        assert r.shape == (0, 4) and r.dtype == dtype
        assert bwd(e, r).shape == (0, 4)
    y = ak.linear_forward(e, np.zeros((3, 4), dtype), np.zeros(3, dtype))
    assert y.shape == (0, 3) and y.dtype == dtype
    gx, gw, gb = ak.linear_backward(np.zeros((0, 3), dtype), e, np.ones((3, 4), dtype))
    assert gx.shape == (0, 4) and np.array_equal(gw, np.zeros((3, 4), dtype))
    assert np.array_equal(gb, np.zeros(3, dtype))
