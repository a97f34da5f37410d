"""Normalization and initialization (docs/api/norm.md, docs/api/init.md) against reference_norm.py.

Batch norm on (N, C), (N, C, L) and (N, C, H, W) inputs, training and eval, weight/bias
and running statistics optional, against the float64 references (and, where installed,
torch.nn.functional.batch_norm / torch.native_batch_norm / autograd): outputs, the saved
statistics, the running statistics updated in place with the unbiased variance, and the
backward (hand-derived references and finite differences of the kernels themselves).
Accuracy at large offsets (float32 mean 1e4, std 1), zero-size batches, non-contiguous
inputs, bitwise equality for 1, 2 and 3 threads, and the section-0 validation rules (a
failing call changes nothing). Layer norm likewise over the trailing normalized_shape.
Init: PyTorch's fans, the distributions' bounds/std, seeding and validation.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import adlkernels as ak
from helpers import _shape_text, names, randn
from reference import assert_close
from reference_norm import (
    batchnorm_backward_magnitude,
    batchnorm_backward_ref,
    batchnorm_ref,
    fans_ref,
    init_std_ref,
    layernorm_backward_magnitude,
    layernorm_backward_ref,
    layernorm_ref,
    numerical_grad,
)

BN_SHAPES = [(6, 3), (4, 3, 5), (3, 2, 4, 5)]
BN_IDS = ["2d", "3d", "4d"]


def same_bits(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _noncontig(a):
    """A non-C-contiguous array with a's values (every other element of a larger one)."""
    big = np.zeros(a.shape + (2,), dtype=a.dtype)
    big[..., 0] = a
    v = big[..., 0]
    assert not v.flags.c_contiguous
    return v


def _readonly(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def _check_out(a, dtype, shape, what):
    assert isinstance(a, np.ndarray), f"{what}: {type(a)}"
    assert a.dtype == np.dtype(dtype), f"{what}: dtype {a.dtype}, expected {np.dtype(dtype)}"
    assert a.shape == tuple(shape), f"{what}: shape {a.shape}, expected {tuple(shape)}"
    assert a.flags.c_contiguous, f"{what}: not C-contiguous"


def _raises(exc, arg, call, arrays=(), shapes=()):
    """call() raises exc whose message names arg (and shows every shape in shapes), and
    every array in ``arrays`` is bitwise unchanged afterwards."""
    snap = [(a, a.copy()) for a in arrays]
    with pytest.raises(exc) as e:
        call()
    msg = str(e.value)
    if arg is not None:
        assert names(msg, arg), f"message does not name {arg!r}: {msg}"
    for s in shapes:
        assert _shape_text(s) in msg, f"message does not show the shape {s}: {msg}"
    for a, s in snap:
        assert same_bits(a, s), f"an array changed although the call raised ({msg})"
    return msg


def bn_inputs(rng, shape, dtype, affine=True, stats=True):
    c = shape[1]
    x = randn(rng, shape, dtype) * 1.5 + 0.5
    w = np.array(rng.uniform(0.5, 1.5, c), dtype=dtype) if affine else None
    b = randn(rng, (c,), dtype) if affine else None
    rm = randn(rng, (c,), dtype) * 0.3 if stats else None
    rv = np.array(rng.uniform(0.5, 2.0, c), dtype=dtype) if stats else None
    return x, w, b, rm, rv


def copy_or_none(a):
    return None if a is None else a.copy()


# ----------------------------------------------------------------------------------
# names
# ----------------------------------------------------------------------------------

NAMES = [("norm", n) for n in ("batchnorm_forward", "batchnorm_backward", "layernorm_forward",
                               "layernorm_backward")]
NAMES += [("init", n) for n in ("xavier_uniform", "xavier_normal", "he_uniform", "he_normal")]


@pytest.mark.parametrize("mod,fn", NAMES, ids=[n for _, n in NAMES])
def test_names_importable(mod, fn):
    assert callable(getattr(ak, fn))
    assert getattr(getattr(ak, mod), fn) is getattr(ak, fn)


# ----------------------------------------------------------------------------------
# batch norm forward
# ----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", BN_SHAPES, ids=BN_IDS)
@pytest.mark.parametrize("training,stats", [(True, True), (True, False), (False, True)],
                         ids=["train-stats", "train-nostats", "eval"])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "noaffine"])
def test_batchnorm_forward_vs_reference(shape, training, affine, stats, dtype, rng):
    x, w, b, rm, rv = bn_inputs(rng, shape, dtype, affine, stats)
    x0, rm0, rv0 = x.copy(), copy_or_none(rm), copy_or_none(rv)
    y, sm, si = ak.batchnorm_forward(x, w, b, rm, rv, training=training, momentum=0.1,
                                     eps=1e-5)
    ry, rsm, rsi, rrm, rrv = batchnorm_ref(x0, w, b, rm0, rv0, training, 0.1, 1e-5)
    assert same_bits(x, x0), "x changed"
    c = shape[1]
    _check_out(y, dtype, shape, "y")
    _check_out(sm, dtype, (c,), "save_mean")
    _check_out(si, dtype, (c,), "save_invstd")
    assert not np.shares_memory(y, x)
    assert_close(y, ry, dtype, what="y")
    assert_close(sm, rsm, dtype, what="save_mean")
    assert_close(si, rsi, dtype, what="save_invstd")
    if stats:
        assert not np.shares_memory(sm, rm) and not np.shares_memory(si, rv)
        if training:
            assert_close(rm, rrm, dtype, what="running_mean (in place)")
            assert_close(rv, rrv, dtype, what="running_var (in place)")
        else:
            assert same_bits(rm, rm0) and same_bits(rv, rv0), "eval changed running stats"


@pytest.mark.parametrize("momentum", [0.0, 0.1, 0.37, 1.0])
def test_batchnorm_momentum_and_eps(momentum, dtype, rng):
    x, w, b, rm, rv = bn_inputs(rng, (5, 4, 3), dtype)
    rm0, rv0 = rm.copy(), rv.copy()
    eps = 0.25
    y, sm, si = ak.batchnorm_forward(x, w, b, rm, rv, training=True, momentum=momentum, eps=eps)
    ry, rsm, rsi, rrm, rrv = batchnorm_ref(x, w, b, rm0, rv0, True, momentum, eps)
    assert_close(y, ry, dtype, what="y")
    assert_close(si, rsi, dtype, what="save_invstd")
    assert_close(rm, rrm, dtype, what="running_mean")
    assert_close(rv, rrv, dtype, what="running_var")
    if momentum == 0.0:
        assert same_bits(rm, rm0) and same_bits(rv, rv0)
    # eval with the same eps
    y2, sm2, si2 = ak.batchnorm_forward(x, w, b, rm, rv, training=False, eps=eps)
    ry2, rsm2, rsi2, _, _ = batchnorm_ref(x, w, b, rm, rv, False, momentum, eps)
    assert_close(y2, ry2, dtype, what="y (eval)")
    assert_close(si2, rsi2, dtype, what="save_invstd (eval)")
    assert_close(sm2, rsm2, dtype, what="save_mean (eval)")


def test_batchnorm_running_var_is_unbiased_exact():
    """Small integers: every quantity is exact; M = 4 values per channel."""
    x = np.array([[1.0, 0.0], [3.0, 2.0], [5.0, 4.0], [7.0, 10.0]])
    rm, rv = np.zeros(2), np.ones(2)
    y, sm, si = ak.batchnorm_forward(x, None, None, rm, rv, training=True, momentum=0.5, eps=0.0)
    # channel 0: mean 4, biased var 5, unbiased 20/3; channel 1: mean 4, biased var 14
    np.testing.assert_allclose(sm, [4.0, 4.0], rtol=1e-15)
    np.testing.assert_allclose(si, [1 / math.sqrt(5.0), 1 / math.sqrt(14.0)], rtol=1e-14)
    np.testing.assert_allclose(rm, [2.0, 2.0], rtol=1e-15)
    np.testing.assert_allclose(rv, [0.5 + 0.5 * 20 / 3, 0.5 + 0.5 * 56 / 3], rtol=1e-14)


def test_batchnorm_constant_channel(dtype):
    """A channel whose values are all equal: var 0, y = bias (invstd = 1/sqrt(eps))."""
    x = np.full((4, 2, 3), 7.25, dtype=dtype)
    x[:, 1] = np.arange(12, dtype=dtype).reshape(4, 3)
    w, b = np.array([2.0, 1.0], dtype=dtype), np.array([0.5, -1.0], dtype=dtype)
    y, sm, si = ak.batchnorm_forward(x, w, b, None, None, training=True, eps=1e-5)
    ry, rsm, rsi, _, _ = batchnorm_ref(x, w, b, None, None, True, 0.1, 1e-5)
    assert_close(y, ry, dtype, what="y")
    assert_close(si, rsi, dtype, what="save_invstd")
    np.testing.assert_array_equal(y[:, 0], np.full((4, 3), 0.5, dtype=dtype))


def test_batchnorm_eval_requires_stats(rng):
    x = randn(rng, (4, 3))
    with pytest.raises((ValueError, TypeError)) as e:
        ak.batchnorm_forward(x, None, None, None, None, training=False)
    assert names(str(e.value), "running_mean") or names(str(e.value), "running_var"), str(e.value)


# ----------------------------------------------------------------------------------
# accuracy at large offsets
# ----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(256, 4, 16), (32, 3, 12, 12), (4096, 2)],
                         ids=["3d", "4d", "2d"])
def test_batchnorm_float32_large_offset(shape, rng):
    """float32 inputs with mean 1e4 (also -1e4, 3e4) and std 1 normalize accurately."""
    c = shape[1]
    offsets = np.array([1e4, -1e4, 3e4, 1e4 + 0.5])[:c]
    bs = (1, c) + (1,) * (len(shape) - 2)
    x = (rng.standard_normal(shape) + offsets.reshape(bs)).astype(np.float32)
    w = np.array(rng.uniform(0.5, 1.5, c), dtype=np.float32)
    b = np.array(rng.standard_normal(c), dtype=np.float32)
    rm, rv = np.zeros(c, np.float32), np.ones(c, np.float32)
    rm0, rv0 = rm.copy(), rv.copy()
    y, sm, si = ak.batchnorm_forward(x, w, b, rm, rv, training=True, momentum=0.5)
    ry, rsm, rsi, rrm, rrv = batchnorm_ref(x, w, b, rm0, rv0, True, 0.5, 1e-5)
    err = float(np.max(np.abs(y.astype(np.float64) - ry)))
    assert err < 1e-3, f"y max abs error {err:.3g} at mean 1e4"
    np.testing.assert_allclose(sm, rsm, rtol=1e-6, err_msg="save_mean")
    np.testing.assert_allclose(si, rsi, rtol=1e-3, err_msg="save_invstd")
    np.testing.assert_allclose(rm, rrm, rtol=1e-6, err_msg="running_mean")
    np.testing.assert_allclose(rv, rrv, rtol=1e-3, err_msg="running_var")
    # the backward at the same offsets
    gy = randn(rng, shape, np.float32)
    gx, gw, gb = ak.batchnorm_backward(gy, x, w, sm, si, training=True)
    rgx, rgw, rgb = batchnorm_backward_ref(gy, x, w, rsm, rsi, True)
    assert np.max(np.abs(gx - rgx)) < 1e-3 * max(1.0, np.max(np.abs(rgx)))
    m = x.size // c
    np.testing.assert_allclose(gw, rgw, rtol=1e-3, atol=1e-3 * math.sqrt(m))
    np.testing.assert_allclose(gb, rgb, rtol=1e-3, atol=1e-4 * math.sqrt(m))


def test_batchnorm_float64_large_offset(rng):
    """float64 with mean 1e7, std 1: a one-pass E[x^2] - E[x]^2 would lose ~1e-2."""
    x = rng.standard_normal((512, 3, 4)) + 1e7
    rm, rv = np.zeros(3), np.ones(3)
    rm0, rv0 = rm.copy(), rv.copy()
    y, sm, si = ak.batchnorm_forward(x, None, None, rm, rv, training=True)
    ry, rsm, rsi, rrm, rrv = batchnorm_ref(x, None, None, rm0, rv0, True)
    assert np.max(np.abs(y - ry)) < 1e-7
    np.testing.assert_allclose(si, rsi, rtol=1e-7)
    np.testing.assert_allclose(rv, rrv, rtol=1e-7)


def test_layernorm_float32_large_offset(rng):
    x = (rng.standard_normal((16, 512)) + 1e4).astype(np.float32)
    y, mean, rstd = ak.layernorm_forward(x, 512)
    ry, rmean, rrstd = layernorm_ref(x, 512)
    assert np.max(np.abs(y - ry)) < 1e-3
    np.testing.assert_allclose(rstd, rrstd, rtol=1e-3)


# ----------------------------------------------------------------------------------
# batch norm backward
# ----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", BN_SHAPES, ids=BN_IDS)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "noaffine"])
def test_batchnorm_backward_vs_reference(shape, training, affine, dtype, rng):
    x, w, b, rm, rv = bn_inputs(rng, shape, dtype, affine, True)
    _, sm, si = ak.batchnorm_forward(x, w, b, rm, rv, training=training)
    gy = randn(rng, shape, dtype)
    gy0, x0 = gy.copy(), x.copy()
    gx, gw, gb = ak.batchnorm_backward(gy, x, w, sm, si, training=training)
    assert same_bits(gy, gy0) and same_bits(x, x0)
    ref = batchnorm_backward_ref(gy, x, w, sm, si, training)
    mag = batchnorm_backward_magnitude(gy, x, w, sm, si, training)
    c = shape[1]
    for got, r, m_, name, shp in zip((gx, gw, gb), ref, mag, ("grad_x", "grad_weight", "grad_bias"),
                                     (shape, (c,), (c,))):
        _check_out(got, dtype, shp, name)
        assert_close(got, r, dtype, magnitude=m_, what=name)


@pytest.mark.parametrize("shape", [(4, 2), (3, 2, 3), (2, 2, 2, 3)], ids=BN_IDS)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "noaffine"])
def test_batchnorm_backward_finite_differences(shape, training, affine, rng):
    """float64: the kernel backward against central differences of the kernel forward
    (loss = sum(gy * y)), for x, weight and bias; the reference backward too."""
    c = shape[1]
    x = rng.standard_normal(shape) * 1.3 + 0.2
    w = rng.uniform(0.5, 1.5, c)
    b = rng.standard_normal(c)
    rm, rv = rng.standard_normal(c) * 0.3, rng.uniform(0.5, 2.0, c)
    gy = rng.standard_normal(shape)
    wk = w if affine else None
    bk = b if affine else None

    def loss_kernel():
        y, _, _ = ak.batchnorm_forward(x, wk, bk, None if training else rm.copy(),
                                       None if training else rv.copy(), training=training)
        return float(np.sum(gy * y))

    def loss_ref():
        y = batchnorm_ref(x, wk, bk, None if training else rm, None if training else rv,
                          training)[0]
        return float(np.sum(gy * y))

    _, sm, si = ak.batchnorm_forward(x, wk, bk, None if training else rm.copy(),
                                     None if training else rv.copy(), training=training)
    gx, gw, gb = ak.batchnorm_backward(gy, x, wk, sm, si, training=training)
    rgx, rgw, rgb = batchnorm_backward_ref(gy, x, wk, sm, si, training)
    ngx = numerical_grad(loss_kernel, x)
    ngx_ref = numerical_grad(loss_ref, x)

    def close(got, want, what):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7 * max(1, np.abs(want).max()),
                                   err_msg=what)

    close(gx, ngx, "grad_x vs finite differences")
    close(rgx, ngx_ref, "reference grad_x vs finite differences")
    if affine:
        close(gw, numerical_grad(loss_kernel, w), "grad_weight vs finite differences")
        close(gb, numerical_grad(loss_kernel, b), "grad_bias vs finite differences")
        close(rgw, numerical_grad(loss_ref, w), "reference grad_weight")
        close(rgb, numerical_grad(loss_ref, b), "reference grad_bias")
    else:
        # weight None: the gradients of an implicit weight 1 / bias 0
        xhat = batchnorm_ref(x, None, None, None if training else rm,
                             None if training else rv, training)[0]
        axes = (0,) + tuple(range(2, len(shape)))
        close(gw, (gy * xhat).sum(axis=axes), "grad_weight (weight None)")
        close(gb, gy.sum(axis=axes), "grad_bias (weight None)")


# ----------------------------------------------------------------------------------
# batch norm against torch
# ----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", BN_SHAPES + [(2, 5, 3, 1)], ids=BN_IDS + ["4d-w1"])
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "noaffine"])
def test_batchnorm_vs_torch(shape, training, affine, dtype, rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x, w, b, rm, rv = bn_inputs(rng, shape, dtype, affine, True)
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    tw = torch.from_numpy(w.copy()).requires_grad_(True) if affine else None
    tb = torch.from_numpy(b.copy()).requires_grad_(True) if affine else None
    trm, trv = torch.from_numpy(rm.copy()), torch.from_numpy(rv.copy())
    ty = F.batch_norm(tx, trm, trv, tw, tb, training=training, momentum=0.3, eps=1e-4)
    gy = randn(rng, shape, dtype)
    ty.backward(torch.from_numpy(gy))
    y, sm, si = ak.batchnorm_forward(x, w, b, rm, rv, training=training, momentum=0.3, eps=1e-4)
    assert_close(y, ty.detach().numpy().astype(np.float64), dtype, what="y vs torch")
    assert_close(rm, trm.numpy().astype(np.float64), dtype, what="running_mean vs torch")
    assert_close(rv, trv.numpy().astype(np.float64), dtype, what="running_var vs torch")
    if training:
        _, tsm, tsi = torch.native_batch_norm(torch.from_numpy(x), None, None, None, None,
                                              True, 0.3, 1e-4)
        assert_close(sm, tsm.numpy().astype(np.float64), dtype, what="save_mean vs torch")
        assert_close(si, tsi.numpy().astype(np.float64), dtype, what="save_invstd vs torch")
    gx, gw, gb = ak.batchnorm_backward(gy, x, w, sm, si, training=training)
    mag = batchnorm_backward_magnitude(gy, x, w, sm, si, training)
    assert_close(gx, tx.grad.numpy().astype(np.float64), dtype, magnitude=mag[0],
                 what="grad_x vs torch")
    if affine:
        assert_close(gw, tw.grad.numpy().astype(np.float64), dtype, magnitude=mag[1],
                     what="grad_weight vs torch")
        assert_close(gb, tb.grad.numpy().astype(np.float64), dtype, magnitude=mag[2],
                     what="grad_bias vs torch")


def test_batchnorm_repeated_updates_vs_torch(rng):
    """Three training steps then eval: running statistics track torch's exactly-enough."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rm, rv = np.zeros(3), np.ones(3)
    trm, trv = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    for _ in range(3):
        x = rng.standard_normal((5, 3, 4)) * 2 + 1
        ak.batchnorm_forward(x, None, None, rm, rv, training=True, momentum=0.2)
        F.batch_norm(torch.from_numpy(x), trm, trv, training=True, momentum=0.2)
    np.testing.assert_allclose(rm, trm.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(rv, trv.numpy(), rtol=1e-12)
    x = rng.standard_normal((5, 3, 4))
    y, _, _ = ak.batchnorm_forward(x, None, None, rm, rv, training=False)
    ty = F.batch_norm(torch.from_numpy(x), trm, trv, training=False)
    np.testing.assert_allclose(y, ty.numpy(), rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------------
# batch norm edge cases
# ----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 3), (1, 3, 1), (1, 3, 1, 1)])
def test_batchnorm_one_value_per_channel_training_raises(shape, dtype):
    x = np.ones(shape, dtype=dtype)
    rm, rv = np.zeros(3, dtype), np.ones(3, dtype)
    _raises(ValueError, "x", lambda: ak.batchnorm_forward(x, None, None, rm, rv, training=True),
            [x, rm, rv])
    # eval mode is fine with a single value per channel
    y, _, _ = ak.batchnorm_forward(x, None, None, rm, rv, training=False)
    assert_close(y, batchnorm_ref(x, None, None, rm, rv, False)[0], dtype, what="y (eval)")


def _zero_size_case(shape, dtype, rng):
    c = 3
    x = np.zeros(shape, dtype=dtype)
    w, b = randn(rng, (c,), dtype), randn(rng, (c,), dtype)
    rm, rv = randn(rng, (c,), dtype), np.array(rng.uniform(0.5, 2, c), dtype=dtype)
    rm0, rv0 = rm.copy(), rv.copy()
    # eval: the running statistics are the saved statistics
    y, sm, si = ak.batchnorm_forward(x, w, b, rm, rv, training=False)
    _check_out(y, dtype, shape, "y (eval)")
    assert_close(sm, rm0.astype(np.float64), dtype, what="save_mean (eval)")
    assert_close(si, 1 / np.sqrt(rv0.astype(np.float64) + 1e-5), dtype, what="save_invstd (eval)")
    gx, gw, gb = ak.batchnorm_backward(np.zeros(shape, dtype), x, w, sm, si, training=False)
    _check_out(gx, dtype, shape, "grad_x")
    np.testing.assert_array_equal(gw, np.zeros(c, dtype))
    np.testing.assert_array_equal(gb, np.zeros(c, dtype))
    # training: empty output, running statistics unchanged (as torch)
    y, sm, si = ak.batchnorm_forward(x, w, b, rm, rv, training=True)
    _check_out(y, dtype, shape, "y (training)")
    assert sm.shape == (c,) and si.shape == (c,)
    assert same_bits(rm, rm0) and same_bits(rv, rv0), "empty batch changed running stats"


@pytest.mark.parametrize("shape", [(0, 3), (0, 3, 4), (0, 3, 2, 2)])
def test_batchnorm_zero_size_batch(shape, dtype, rng):
    _zero_size_case(shape, dtype, rng)


@pytest.mark.parametrize("shape", [(2, 3, 0), (2, 3, 0, 4)])
def test_batchnorm_zero_size_spatial(shape, dtype, rng):
    """An empty spatial extent is a zero-size input too (torch accepts it)."""
    _zero_size_case(shape, dtype, rng)


def test_batchnorm_zero_size_training_vs_torch():
    torch = pytest.importorskip("torch")
    x = np.zeros((0, 3, 4))
    rm, rv = np.full(3, 0.5), np.full(3, 2.0)
    trm, trv = torch.from_numpy(rm.copy()), torch.from_numpy(rv.copy())
    torch.nn.functional.batch_norm(torch.from_numpy(x), trm, trv, training=True)
    ak.batchnorm_forward(x, None, None, rm, rv, training=True)
    np.testing.assert_array_equal(rm, trm.numpy())
    np.testing.assert_array_equal(rv, trv.numpy())


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_batchnorm_non_contiguous_inputs(training, dtype, rng):
    shape = (4, 3, 5, 2)
    x, w, b, rm, rv = bn_inputs(rng, shape, dtype)
    gy = randn(rng, shape, dtype)
    rm_c, rv_c = rm.copy(), rv.copy()
    y, sm, si = ak.batchnorm_forward(x, w, b, rm_c, rv_c, training=training)
    gx, gw, gb = ak.batchnorm_backward(gy, x, w, sm, si, training=training)
    # x as a transposed view and as a strided slice; vectors strided
    xt = np.ascontiguousarray(x.transpose(3, 1, 2, 0)).transpose(3, 1, 2, 0)
    xs = _noncontig(x)
    for xv in (xt, xs):
        assert not xv.flags.c_contiguous
        rm2, rv2 = rm.copy(), rv.copy()
        if training:
            args = (rm2, rv2)
        else:  # eval: the running statistics are inputs, any strides
            args = (_noncontig(rm), _noncontig(rv))
        y2, sm2, si2 = ak.batchnorm_forward(xv, _noncontig(w), _noncontig(b), *args,
                                            training=training)
        assert same_bits(y2, y) and same_bits(sm2, sm) and same_bits(si2, si)
        if training:
            assert same_bits(rm2, rm_c) and same_bits(rv2, rv_c)
        gx2, gw2, gb2 = ak.batchnorm_backward(_noncontig(gy), xv, _noncontig(w), _noncontig(sm),
                                              _noncontig(si), training=training)
        assert same_bits(gx2, gx) and same_bits(gw2, gw) and same_bits(gb2, gb)


def test_batchnorm_eval_readonly_stats_ok(rng):
    x, w, b, rm, rv = bn_inputs(rng, (4, 3), np.float64)
    y, _, _ = ak.batchnorm_forward(x, w, b, _readonly(rm), _readonly(rv), training=False)
    assert_close(y, batchnorm_ref(x, w, b, rm, rv, False)[0], np.float64, what="y")


@pytest.mark.parametrize("shape", [(2048, 24), (32, 3, 40), (16, 5, 23, 19)], ids=BN_IDS)
def test_batchnorm_thread_counts_bitwise(shape, dtype, restore_threads, rng):
    x, w, b, rm, rv = bn_inputs(rng, shape, dtype)
    gy = randn(rng, shape, dtype)
    results = []
    for threads in (1, 2, 3):
        ak.set_num_threads(threads)
        rm_t, rv_t = rm.copy(), rv.copy()
        out = list(ak.batchnorm_forward(x, w, b, rm_t, rv_t, training=True))
        out += [rm_t, rv_t]
        out += list(ak.batchnorm_backward(gy, x, w, out[1], out[2], training=True))
        out += list(ak.batchnorm_forward(x, w, b, rm, rv, training=False))
        out += list(ak.batchnorm_backward(gy, x, w, out[-2], out[-1], training=False))
        results.append(out)
    what = ["y", "save_mean", "save_invstd", "running_mean", "running_var", "grad_x",
            "grad_weight", "grad_bias", "y (eval)", "save_mean (eval)", "save_invstd (eval)",
            "grad_x (eval)", "grad_weight (eval)", "grad_bias (eval)"]
    ry = batchnorm_ref(x, w, b, rm, rv, True)
    assert_close(results[0][0], ry[0], dtype, what="y (1 thread)")
    for threads, res in zip((2, 3), results[1:]):
        for name, got, want in zip(what, res, results[0]):
            assert same_bits(got, want), f"{name}: {threads} threads differ bitwise from 1"


def test_batchnorm_repeatable(rng):
    x, w, b, rm, rv = bn_inputs(rng, (64, 7, 33), np.float32)
    a = ak.batchnorm_forward(x, w, b, None, None, training=True)
    c = ak.batchnorm_forward(x, w, b, None, None, training=True)
    for u, v in zip(a, c):
        assert same_bits(u, v)


# ----------------------------------------------------------------------------------
# batch norm validation
# ----------------------------------------------------------------------------------


def test_batchnorm_validation_shapes(rng):
    x, w, b, rm, rv = bn_inputs(rng, (4, 3, 5), np.float64)
    arrays = [x, w, b, rm, rv]
    f = ak.batchnorm_forward
    for bad in ((5,), (2, 3, 4, 5, 6)):
        xb = np.ones(bad)
        _raises(ValueError, "x", lambda: f(xb, None, None, rm, rv, training=True), arrays + [xb],
                shapes=[bad])
    w4 = np.ones(4)
    _raises(ValueError, "weight", lambda: f(x, w4, b, rm, rv, training=True), arrays,
            shapes=[(4,), (3,)])
    b2 = np.ones((3, 1))
    _raises(ValueError, "bias", lambda: f(x, w, b2, rm, rv, training=True), arrays,
            shapes=[(3, 1), (3,)])
    rm5 = np.zeros(5)
    _raises(ValueError, "running_mean", lambda: f(x, w, b, rm5, rv, training=True),
            arrays + [rm5], shapes=[(5,), (3,)])
    rv2 = np.ones(2)
    _raises(ValueError, "running_var", lambda: f(x, w, b, rm, rv2, training=False),
            arrays + [rv2], shapes=[(2,), (3,)])
    rv2 = np.ones(2)
    _raises(ValueError, "running_var", lambda: f(x, w, b, rm, rv2, training=True),
            arrays + [rv2], shapes=[(2,), (3,)])
    # backward
    _, sm, si = f(x, w, b, None, None, training=True)
    g = ak.batchnorm_backward
    gy = np.ones((4, 3, 6))
    _raises(ValueError, "grad_y", lambda: g(gy, x, w, sm, si), arrays + [sm, si],
            shapes=[(4, 3, 6), (4, 3, 5)])
    _raises(ValueError, "weight", lambda: g(np.ones_like(x), x, w4, sm, si), arrays,
            shapes=[(4,), (3,)])
    sm2 = np.zeros(2)
    _raises(ValueError, "save_mean", lambda: g(np.ones_like(x), x, w, sm2, si), arrays,
            shapes=[(2,), (3,)])
    si4 = np.ones(4)
    _raises(ValueError, "save_invstd", lambda: g(np.ones_like(x), x, w, sm, si4), arrays,
            shapes=[(4,), (3,)])
    x1 = np.ones(7)
    _raises(ValueError, "x", lambda: g(x1, x1, None, sm, si), arrays, shapes=[(7,)])


def test_batchnorm_validation_dtypes(rng):
    x, w, b, rm, rv = bn_inputs(rng, (4, 3), np.float64)
    arrays = [x, w, b, rm, rv]
    f = ak.batchnorm_forward
    w32, b32 = w.astype(np.float32), b.astype(np.float32)
    rm32, rv32 = rm.astype(np.float32), rv.astype(np.float32)
    _raises(TypeError, "weight", lambda: f(x, w32, b, rm, rv, training=True), arrays)
    _raises(TypeError, "bias", lambda: f(x, w, b32, rm, rv, training=True), arrays)
    _raises(TypeError, "running_mean", lambda: f(x, w, b, rm32, rv, training=True),
            arrays + [rm32])
    _raises(TypeError, "running_var", lambda: f(x, w, b, rm, rv32, training=True),
            arrays + [rv32])
    _raises(TypeError, "running_var", lambda: f(x, None, None, rm, rv32, training=False),
            arrays + [rv32])
    xi = np.ones((4, 3), dtype=np.int64)
    _raises(TypeError, "x", lambda: f(xi, None, None, None, None, training=True), [xi])
    x16 = np.ones((4, 3), dtype=np.float16)
    _raises(TypeError, "x", lambda: f(x16, None, None, None, None, training=True), [x16])
    _raises(TypeError, None, lambda: f([[1.0, 2.0], [3.0, 4.0]], None, None, None, None,
                                       training=True))
    _, sm, si = f(x, w, b, None, None, training=True)
    g = ak.batchnorm_backward
    gy32 = np.ones((4, 3), np.float32)
    _raises(TypeError, "grad_y", lambda: g(gy32, x, w, sm, si), arrays)
    _raises(TypeError, "save_invstd", lambda: g(np.ones_like(x), x, w, sm, si.astype(np.float32)),
            arrays)
    _raises(TypeError, "weight", lambda: g(np.ones_like(x), x, w32, sm, si), arrays)


@pytest.mark.parametrize("kind", ["readonly", "noncontig"])
@pytest.mark.parametrize("which", ["running_mean", "running_var"])
def test_batchnorm_running_stats_must_be_writeable_contiguous(kind, which, dtype, rng):
    """In training the running statistics are updated in place: a read-only or
    non-contiguous one raises ValueError naming it, and neither statistic changes."""
    x, w, b, rm, rv = bn_inputs(rng, (6, 3, 2), dtype)
    spoil = _readonly if kind == "readonly" else _noncontig
    if which == "running_mean":
        rm = spoil(rm)
    else:
        rv = spoil(rv)
    _raises(ValueError, which,
            lambda: ak.batchnorm_forward(x, w, b, rm, rv, training=True), [x, w, b, rm, rv])


def test_batchnorm_validation_hyper_parameters(rng):
    x, w, b, rm, rv = bn_inputs(rng, (4, 3), np.float64)
    arrays = [x, w, b, rm, rv]
    f = ak.batchnorm_forward
    _raises(ValueError, "momentum", lambda: f(x, w, b, rm, rv, training=True, momentum=-0.1),
            arrays)
    _raises(ValueError, "eps", lambda: f(x, w, b, rm, rv, training=True, eps=-1e-5), arrays)
    _raises(ValueError, "momentum", lambda: f(x, w, b, rm, rv, training=True,
                                              momentum=float("nan")), arrays)
    _raises(TypeError, "training", lambda: f(x, w, b, rm, rv, training="yes"), arrays)
    with pytest.raises(TypeError):
        f(x, w, b, rm, rv)  # training is required (keyword-only)


# ----------------------------------------------------------------------------------
# layer norm
# ----------------------------------------------------------------------------------

LN_CASES = [((5, 7), 7), ((3, 4, 6), 6), ((3, 4, 6), (4, 6)), ((2, 3, 4, 5), (4, 5)),
            ((2, 3, 4, 5), [5]), ((6,), 6), ((2, 3, 4), (2, 3, 4))]
LN_IDS = ["2d-int", "3d-int", "3d-2", "4d-2", "4d-list", "1d", "3d-all"]


def _ns(ns):
    return (ns,) if isinstance(ns, int) else tuple(ns)


def ln_inputs(rng, shape, ns, dtype, affine):
    k = len(_ns(ns))
    x = randn(rng, shape, dtype) * 2 + 0.7
    w = np.array(rng.uniform(0.5, 1.5, shape[len(shape) - k:]), dtype=dtype) if affine else None
    b = randn(rng, shape[len(shape) - k:], dtype) if affine else None
    return x, w, b


@pytest.mark.parametrize("shape,ns", LN_CASES, ids=LN_IDS)
@pytest.mark.parametrize("affine", ["both", "weight", "bias", "none"])
def test_layernorm_forward_vs_reference(shape, ns, affine, dtype, rng):
    x, w, b = ln_inputs(rng, shape, ns, dtype, True)
    w = w if affine in ("both", "weight") else None
    b = b if affine in ("both", "bias") else None
    x0 = x.copy()
    y, mean, rstd = ak.layernorm_forward(x, ns, w, b, eps=1e-5)
    assert same_bits(x, x0)
    k = len(_ns(ns))
    stat = shape[: len(shape) - k] + (1,) * k
    ry, rmean, rrstd = layernorm_ref(x, ns, w, b, 1e-5)
    _check_out(y, dtype, shape, "y")
    _check_out(mean, dtype, stat, "mean")
    _check_out(rstd, dtype, stat, "rstd")
    assert_close(y, ry, dtype, what="y")
    assert_close(mean, rmean, dtype, magnitude=np.abs(x).max(), what="mean")
    assert_close(rstd, rrstd, dtype, what="rstd")


@pytest.mark.parametrize("shape,ns", LN_CASES, ids=LN_IDS)
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "noaffine"])
def test_layernorm_backward_vs_reference(shape, ns, affine, dtype, rng):
    x, w, b = ln_inputs(rng, shape, ns, dtype, affine)
    _, mean, rstd = ak.layernorm_forward(x, ns, w, b)
    gy = randn(rng, shape, dtype)
    gx, gw, gb = ak.layernorm_backward(gy, x, ns, mean, rstd, w)
    rgx, rgw, rgb = layernorm_backward_ref(gy, x, ns, mean, rstd, w)
    n = _ns(ns)
    _check_out(gx, dtype, shape, "grad_x")
    _check_out(gw, dtype, n, "grad_weight")
    _check_out(gb, dtype, n, "grad_bias")
    mag_x, mag_w, mag_b = layernorm_backward_magnitude(gy, x, ns, mean, rstd, w)
    assert_close(gx, rgx, dtype, magnitude=mag_x, what="grad_x")
    assert_close(gw, rgw, dtype, magnitude=mag_w, what="grad_weight")
    assert_close(gb, rgb, dtype, magnitude=mag_b, what="grad_bias")


@pytest.mark.parametrize("shape,ns", [((3, 5), 5), ((2, 2, 3), (2, 3)), ((2, 3, 4), 4)],
                         ids=["2d", "3d-2", "3d-1"])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "noaffine"])
def test_layernorm_backward_finite_differences(shape, ns, affine, rng):
    x, w, b = ln_inputs(rng, shape, ns, np.float64, True)
    wk, bk = (w, b) if affine else (None, None)
    gy = rng.standard_normal(shape)

    def loss_kernel():
        return float(np.sum(gy * ak.layernorm_forward(x, ns, wk, bk)[0]))

    def loss_ref():
        return float(np.sum(gy * layernorm_ref(x, ns, wk, bk)[0]))

    _, mean, rstd = ak.layernorm_forward(x, ns, wk, bk)
    gx, gw, gb = ak.layernorm_backward(gy, x, ns, mean, rstd, wk)
    rgx, rgw, rgb = layernorm_backward_ref(gy, x, ns, mean, rstd, wk)

    def close(got, want, what):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7 * max(1, np.abs(want).max()),
                                   err_msg=what)

    close(gx, numerical_grad(loss_kernel, x), "grad_x vs finite differences")
    close(rgx, numerical_grad(loss_ref, x), "reference grad_x vs finite differences")
    if affine:
        close(gw, numerical_grad(loss_kernel, w), "grad_weight vs finite differences")
        close(gb, numerical_grad(loss_kernel, b), "grad_bias vs finite differences")
        close(rgw, numerical_grad(loss_ref, w), "reference grad_weight")
        close(rgb, numerical_grad(loss_ref, b), "reference grad_bias")
    else:
        xhat = layernorm_ref(x, ns, None, None)[0]
        lead = tuple(range(len(shape) - len(_ns(ns))))
        close(gw, (gy * xhat).sum(axis=lead), "grad_weight (weight None)")
        close(gb, gy.sum(axis=lead), "grad_bias (weight None)")


@pytest.mark.parametrize("shape,ns", [((5, 7), 7), ((3, 4, 6), (4, 6)), ((2, 3, 4), 4)],
                         ids=["2d", "3d-2", "3d-1"])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "noaffine"])
def test_layernorm_vs_torch(shape, ns, affine, dtype, rng):
    torch = pytest.importorskip("torch")
    x, w, b = ln_inputs(rng, shape, ns, dtype, affine)
    n = list(_ns(ns))
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    tw = torch.from_numpy(w.copy()).requires_grad_(True) if affine else None
    tb = torch.from_numpy(b.copy()).requires_grad_(True) if affine else None
    ty, tmean, trstd = torch.native_layer_norm(tx, n, tw, tb, 1e-4)
    gy = randn(rng, shape, dtype)
    ty.backward(torch.from_numpy(gy))
    ty2 = torch.nn.functional.layer_norm(torch.from_numpy(x), n,
                                         None if w is None else torch.from_numpy(w),
                                         None if b is None else torch.from_numpy(b), 1e-4)
    y, mean, rstd = ak.layernorm_forward(x, ns, w, b, eps=1e-4)
    assert tuple(tmean.shape) == mean.shape and tuple(trstd.shape) == rstd.shape
    assert_close(y, ty.detach().numpy().astype(np.float64), dtype, what="y vs torch")
    assert_close(y, ty2.numpy().astype(np.float64), dtype, what="y vs F.layer_norm")
    assert_close(mean, tmean.detach().numpy().astype(np.float64), dtype,
                 magnitude=np.abs(x).max(), what="mean vs torch")
    assert_close(rstd, trstd.detach().numpy().astype(np.float64), dtype, what="rstd vs torch")
    gx, gw, gb = ak.layernorm_backward(gy, x, ns, mean, rstd, w)
    mag = layernorm_backward_magnitude(gy, x, ns, mean, rstd, w)
    assert_close(gx, tx.grad.numpy().astype(np.float64), dtype, magnitude=mag[0],
                 what="grad_x vs torch")
    if affine:
        assert_close(gw, tw.grad.numpy().astype(np.float64), dtype, magnitude=mag[1],
                     what="grad_weight vs torch")
        assert_close(gb, tb.grad.numpy().astype(np.float64), dtype, magnitude=mag[2],
                     what="grad_bias vs torch")


@pytest.mark.parametrize("shape,ns", [((0, 5), 5), ((2, 0, 5), 5), ((0, 3, 4), (3, 4))],
                         ids=["0x5", "2x0x5", "0x3x4"])
def test_layernorm_zero_size(shape, ns, dtype, rng):
    n = _ns(ns)
    x = np.zeros(shape, dtype)
    w, b = randn(rng, n, dtype), randn(rng, n, dtype)
    y, mean, rstd = ak.layernorm_forward(x, ns, w, b)
    stat = shape[: len(shape) - len(n)] + (1,) * len(n)
    _check_out(y, dtype, shape, "y")
    _check_out(mean, dtype, stat, "mean")
    _check_out(rstd, dtype, stat, "rstd")
    gx, gw, gb = ak.layernorm_backward(np.zeros(shape, dtype), x, ns, mean, rstd, w)
    _check_out(gx, dtype, shape, "grad_x")
    np.testing.assert_array_equal(gw, np.zeros(n, dtype))
    np.testing.assert_array_equal(gb, np.zeros(n, dtype))


def test_layernorm_non_contiguous_inputs(dtype, rng):
    shape, ns = (4, 3, 6), (3, 6)
    x, w, b = ln_inputs(rng, shape, ns, dtype, True)
    gy = randn(rng, shape, dtype)
    y, mean, rstd = ak.layernorm_forward(x, ns, w, b)
    gx, gw, gb = ak.layernorm_backward(gy, x, ns, mean, rstd, w)
    xt = np.ascontiguousarray(x.transpose(2, 1, 0)).transpose(2, 1, 0)
    for xv in (xt, _noncontig(x)):
        assert not xv.flags.c_contiguous
        y2, mean2, rstd2 = ak.layernorm_forward(xv, ns, _noncontig(w), _noncontig(b))
        assert same_bits(y2, y) and same_bits(mean2, mean) and same_bits(rstd2, rstd)
        gx2, gw2, gb2 = ak.layernorm_backward(_noncontig(gy), xv, ns, _noncontig(mean),
                                              _noncontig(rstd), _noncontig(w))
        assert same_bits(gx2, gx) and same_bits(gw2, gw) and same_bits(gb2, gb)


@pytest.mark.parametrize("shape,ns", [((700, 96), 96), ((6, 40, 12, 10), (12, 10)),
                                      ((3, 20000), 20000)], ids=["rows", "2d-norm", "long-rows"])
def test_layernorm_thread_counts_bitwise(shape, ns, dtype, restore_threads, rng):
    x, w, b = ln_inputs(rng, shape, ns, dtype, True)
    gy = randn(rng, shape, dtype)
    results = []
    for threads in (1, 2, 3):
        ak.set_num_threads(threads)
        out = list(ak.layernorm_forward(x, ns, w, b))
        out += list(ak.layernorm_backward(gy, x, ns, out[1], out[2], w))
        results.append(out)
    assert_close(results[0][0], layernorm_ref(x, ns, w, b)[0], dtype, what="y (1 thread)")
    what = ["y", "mean", "rstd", "grad_x", "grad_weight", "grad_bias"]
    for threads, res in zip((2, 3), results[1:]):
        for name, got, want in zip(what, res, results[0]):
            assert same_bits(got, want), f"{name}: {threads} threads differ bitwise from 1"


def test_layernorm_validation(rng):
    x = randn(rng, (2, 3, 4))
    w, b = np.ones((3, 4)), np.zeros((3, 4))
    arrays = [x, w, b]
    f = ak.layernorm_forward
    # not the trailing shape
    _raises(ValueError, "normalized_shape", lambda: f(x, 3), arrays)
    _raises(ValueError, "normalized_shape", lambda: f(x, (2, 3)), arrays)
    _raises(ValueError, "normalized_shape", lambda: f(x, (1, 2, 3, 4)), arrays)
    _raises(ValueError, "normalized_shape", lambda: f(x, ()), arrays)
    _raises((ValueError, TypeError), "normalized_shape", lambda: f(x, 4.0), arrays)
    # weight / bias shapes
    w4 = np.ones(4)
    _raises(ValueError, "weight", lambda: f(x, (3, 4), w4, b), arrays, shapes=[(4,), (3, 4)])
    b34 = np.zeros((4, 3))
    _raises(ValueError, "bias", lambda: f(x, (3, 4), w, b34), arrays, shapes=[(4, 3), (3, 4)])
    # dtypes
    _raises(TypeError, "weight", lambda: f(x, (3, 4), w.astype(np.float32), b), arrays)
    _raises(TypeError, "bias", lambda: f(x, (3, 4), w, b.astype(np.float32)), arrays)
    xi = np.ones((2, 4), np.int32)
    _raises(TypeError, "x", lambda: f(xi, 4), [xi])
    _raises(ValueError, "eps", lambda: f(x, 4, eps=-1.0), arrays)
    # backward
    _, mean, rstd = f(x, (3, 4), w, b)
    g = ak.layernorm_backward
    gy = np.ones((2, 3, 5))
    _raises(ValueError, "grad_y", lambda: g(gy, x, (3, 4), mean, rstd, w), arrays,
            shapes=[(2, 3, 5), (2, 3, 4)])
    m3 = np.zeros((3, 1, 1))
    _raises(ValueError, "mean", lambda: g(np.ones_like(x), x, (3, 4), m3, rstd, w), arrays,
            shapes=[(3, 1, 1)])
    r3 = np.zeros((3, 1, 1))
    _raises(ValueError, "rstd", lambda: g(np.ones_like(x), x, (3, 4), mean, r3, w), arrays,
            shapes=[(3, 1, 1)])
    _raises(ValueError, "weight", lambda: g(np.ones_like(x), x, (3, 4), mean, rstd, w4), arrays,
            shapes=[(4,)])
    _raises(ValueError, "normalized_shape", lambda: g(np.ones_like(x), x, (2, 3), mean, rstd),
            arrays)
    _raises(TypeError, "rstd", lambda: g(np.ones_like(x), x, (3, 4), mean,
                                         rstd.astype(np.float32)), arrays)
    _raises(TypeError, "grad_y", lambda: g(np.ones_like(x, dtype=np.float32), x, (3, 4), mean,
                                           rstd), arrays)


# ----------------------------------------------------------------------------------
# initialization
# ----------------------------------------------------------------------------------

INIT_FNS = ["xavier_uniform", "xavier_normal", "he_uniform", "he_normal"]
INIT_SHAPES = [(256, 256), (300, 100), (40, 700), (64, 32, 3, 3), (48, 16, 5), (8, 4, 3, 5, 5)]


def _init(name, shape, rng=None, gain=None):
    f = getattr(ak.init, name)
    if gain is not None:
        return f(shape, gain=gain, rng=rng)
    return f(shape, rng=rng)


def test_fans_ref_matches_torch():
    torch = pytest.importorskip("torch")
    for shape in INIT_SHAPES + [(5, 4, 3), (1, 1), (3, 7, 1, 1)]:
        assert fans_ref(shape) == torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))


@pytest.mark.parametrize("shape", INIT_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", INIT_FNS)
def test_init_distribution(name, shape, rng):
    w = _init(name, shape, rng=rng)
    _check_out(w, np.float32, shape, name)
    v = w.astype(np.float64).ravel()
    std = init_std_ref(name, shape)
    n = v.size
    # sample mean and std (a few standard errors; n >= 18k samples)
    assert abs(v.mean()) < 5 * std / math.sqrt(n), f"mean {v.mean():.3g}, std {std:.3g}"
    assert abs(v.std() / std - 1) < 0.03, f"sample std {v.std():.4g}, expected {std:.4g}"
    if name.endswith("uniform"):
        bound = math.sqrt(3.0) * std
        assert np.abs(v).max() <= bound * (1 + 1e-6), f"max |w| {np.abs(v).max()} > {bound}"
        assert np.abs(v).max() > 0.995 * bound, "samples do not reach the bound"
        # uniform: half of the samples within half the bound
        assert abs(np.mean(np.abs(v) < bound / 2) - 0.5) < 0.02
    else:
        # normal: 68.3% within one std, 95.4% within two, and tails beyond sqrt(3) std
        assert abs(np.mean(np.abs(v) < std) - 0.6827) < 0.02
        assert abs(np.mean(np.abs(v) < 2 * std) - 0.9545) < 0.01
        assert np.abs(v).max() > 3 * std


@pytest.mark.parametrize("name", INIT_FNS)
def test_init_vs_torch_statistics(name, rng):
    """The sample std of ours and of torch.nn.init's on the same shapes agree."""
    torch = pytest.importorskip("torch")
    tfn = {
        "xavier_uniform": torch.nn.init.xavier_uniform_,
        "xavier_normal": torch.nn.init.xavier_normal_,
        "he_uniform": lambda t: torch.nn.init.kaiming_uniform_(t, a=0, mode="fan_in",
                                                               nonlinearity="relu"),
        "he_normal": lambda t: torch.nn.init.kaiming_normal_(t, a=0, mode="fan_in",
                                                             nonlinearity="relu"),
    }[name]
    torch.manual_seed(0)
    for shape in [(300, 100), (64, 32, 3, 3), (40, 20, 7)]:
        t = torch.empty(shape)
        tfn(t)
        w = _init(name, shape, rng=rng)
        ts, ws = float(t.std()), float(w.std())
        assert abs(ws / ts - 1) < 0.05, f"{shape}: std {ws:.4g} vs torch {ts:.4g}"
        if name.endswith("uniform"):
            assert abs(float(np.abs(w).max()) / float(t.abs().max()) - 1) < 0.01


@pytest.mark.parametrize("name", ["xavier_uniform", "xavier_normal"])
def test_xavier_gain(name):
    shape = (200, 300)
    w1 = _init(name, shape, rng=np.random.default_rng(5))
    w3 = _init(name, shape, rng=np.random.default_rng(5), gain=3.0)
    np.testing.assert_allclose(w3, 3.0 * w1, rtol=1e-6, atol=1e-7)
    std = init_std_ref(name, shape, gain=3.0)
    assert abs(w3.std() / std - 1) < 0.03


@pytest.mark.parametrize("name", INIT_FNS)
def test_init_seeding(name):
    shape = (30, 20, 3)
    a = _init(name, shape, rng=np.random.default_rng(123))
    b = _init(name, shape, rng=np.random.default_rng(123))
    c = _init(name, shape, rng=np.random.default_rng(124))
    assert same_bits(a, b), "same seed, different result"
    assert not np.array_equal(a, c), "different seeds, same result"
    # the generator advances: two draws from one generator differ
    g = np.random.default_rng(7)
    assert not np.array_equal(_init(name, shape, rng=g), _init(name, shape, rng=g))
    # rng=None: a fresh default generator
    d = _init(name, shape)
    _check_out(d, np.float32, shape, name)
    assert not np.array_equal(d, _init(name, shape))


@pytest.mark.parametrize("name", INIT_FNS)
def test_init_empty_weight(name):
    w = _init(name, (0, 5), rng=np.random.default_rng(0))
    _check_out(w, np.float32, (0, 5), name)
    w = _init(name, (0, 6, 3), rng=None)
    assert w.size == 0 and w.dtype == np.float32


@pytest.mark.parametrize("name", INIT_FNS)
def test_init_validation(name):
    for shape in [(5,), ()]:
        _raises(ValueError, "shape", lambda: _init(name, shape, rng=np.random.default_rng(0)))
    _raises(ValueError, "shape", lambda: _init(name, 7, rng=np.random.default_rng(0)))
    _raises((ValueError, TypeError), "shape", lambda: _init(name, (4, -1)))
    _raises((ValueError, TypeError), "shape", lambda: _init(name, (4.0, 3)))
    _raises(TypeError, "rng", lambda: _init(name, (4, 3), rng=42))
    _raises(TypeError, "rng", lambda: _init(name, (4, 3), rng=np.random.RandomState(0)))
