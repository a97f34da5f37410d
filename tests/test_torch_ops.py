"""adlkernels.torch (docs/api/torch.md): the torch.library custom ops and their wrappers.

References are torch.nn.functional (and torch.nn.LSTM for lstm), which the contract names
as the semantics. Every test compares against torch, against adlkernels' own array API
(dropout's mask), or checks a property that a broken adapter would violate.
"""

from __future__ import annotations

import subprocess
import sys
import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402
from torch.library import opcheck  # noqa: E402

import adlkernels as ak  # noqa: E402
import adlkernels.torch as akt  # noqa: E402

from helpers import names  # noqa: E402

ops = torch.ops.adlk
F64, F32 = torch.float64, torch.float32
TOL = {F64: dict(rtol=1e-10, atol=1e-12), F32: dict(rtol=1e-5, atol=1e-5)}
FLOATS = pytest.mark.parametrize("dt", [F64, F32], ids=["f64", "f32"])


@pytest.fixture
def gen(request):
    """A torch Generator seeded from the test's id: reproducible, different per case."""
    g = torch.Generator()
    g.manual_seed(zlib.crc32(request.node.nodeid.encode()))
    return g


def rnd(gen, *shape, dtype=F64, scale=1.0):
    return torch.randn(shape, generator=gen, dtype=dtype) * scale


def close(actual, expected, dt, **kw):
    tol = dict(TOL[dt])
    tol.update(kw)
    torch.testing.assert_close(actual, expected, **tol)


def _as_tuple(out):
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def parity(f_ak, f_ref, inputs, dt, gen, requires=None, **tol):
    """Runs f_ak and f_ref on separate leaf copies of inputs (float ones requiring grad
    where `requires` says, default all), compares every output, then backpropagates the
    same random cotangents through both and compares every input gradient."""
    requires = [t.is_floating_point() for t in inputs] if requires is None else requires
    la = [t.detach().clone().requires_grad_(r) for t, r in zip(inputs, requires)]
    lr = [t.detach().clone().requires_grad_(r) for t, r in zip(inputs, requires)]
    oa, orf = _as_tuple(f_ak(*la)), _as_tuple(f_ref(*lr))
    assert len(oa) == len(orf)
    for a, r in zip(oa, orf):
        assert a.shape == r.shape and a.dtype == r.dtype
        if a.is_floating_point():
            close(a, r, dt, **tol)
        else:
            assert torch.equal(a, r)
    diff = [i for i, (a, r) in enumerate(zip(oa, orf)) if a.requires_grad]
    assert all(orf[i].requires_grad for i in diff)
    if not diff:
        return oa
    cots = [rnd(gen, *oa[i].shape, dtype=dt) for i in diff]
    torch.autograd.backward([oa[i] for i in diff], cots)
    torch.autograd.backward([orf[i] for i in diff], cots)
    for k, (a, r, req) in enumerate(zip(la, lr, requires)):
        if req:
            assert a.grad is not None, f"input {k}: no gradient"
            close(a.grad, r.grad, dt, **tol)
        else:
            assert a.grad is None
    return oa


def gradcheck(fn, *inputs):
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


def leaf(gen, *shape, requires_grad=True, scale=1.0):
    return rnd(gen, *shape, scale=scale).requires_grad_(requires_grad)


# ---- conv2d ---------------------------------------------------------------------------

CONV_CASES = {
    # x shape, weight shape, bias?, stride, padding, dilation, groups
    "plain": ((2, 3, 7, 6), (4, 3, 3, 3), True, 1, 0, 1, 1),
    "stride>kernel": ((2, 2, 9, 10), (3, 2, 2, 2), True, (3, 4), 1, 1, 1),
    "dilation+pad": ((1, 2, 8, 7), (3, 2, 3, 2), False, 1, (2, 1), (2, 3), 1),
    "groups": ((2, 6, 6, 6), (9, 2, 3, 3), True, 2, 1, 1, 3),
    "depthwise-1x1": ((3, 4, 5, 5), (4, 1, 1, 1), True, 1, 0, 1, 4),
    "empty-batch": ((0, 3, 5, 5), (4, 3, 3, 3), True, 1, 1, 1, 1),
}


@FLOATS
@pytest.mark.parametrize("case", list(CONV_CASES))
def test_conv2d_parity(case, dt, gen):
    xs, ws, has_b, s, p, d, g = CONV_CASES[case]
    inputs = [rnd(gen, *xs, dtype=dt), rnd(gen, *ws, dtype=dt, scale=0.5)]
    if has_b:
        inputs.append(rnd(gen, ws[0], dtype=dt))

    def f(mod):
        return lambda x, w, b=None: mod.conv2d(x, w, b, stride=s, padding=p, dilation=d, groups=g)

    parity(f(akt), f(F), inputs, dt, gen)


def test_conv2d_parity_x_without_grad(gen):
    # needs_input_grad masking: only weight and bias gradients are computed.
    inputs = [rnd(gen, 2, 3, 6, 6), rnd(gen, 4, 3, 3, 3), rnd(gen, 4)]
    f = lambda mod: lambda x, w, b: mod.conv2d(x, w, b, stride=2, padding=1)  # noqa: E731
    parity(f(akt), f(F), inputs, F64, gen, requires=[False, True, True])
    parity(f(akt), f(F), inputs, F64, gen, requires=[True, False, False])


def test_conv2d_gradcheck(gen):
    x, w, b = leaf(gen, 1, 4, 5, 6), leaf(gen, 4, 2, 3, 2), leaf(gen, 4)
    gradcheck(lambda x, w, b: akt.conv2d(x, w, b, stride=(2, 1), padding=1, dilation=(1, 2),
                                         groups=2), x, w, b)
    x.requires_grad_(False)  # the needs_input_grad path: grad_x is not computed
    gradcheck(lambda x, w, b: akt.conv2d(x, w, b, padding=(0, 1), groups=2), x, w, b)
    gradcheck(lambda x, w: akt.conv2d(x, w, None, stride=3, groups=2), leaf(gen, 2, 4, 5, 5), w)


def test_conv2d_opcheck(gen):
    x, w, b = leaf(gen, 2, 4, 6, 5), leaf(gen, 6, 2, 3, 3), leaf(gen, 6)
    geom = ([2, 1], [1, 1], [1, 2], 2)
    opcheck(ops.conv2d.default, (x, w, b, *geom))
    opcheck(ops.conv2d.default, (x, w, None, *geom))
    gy = rnd(gen, *akt.conv2d(x, w, b, *geom).shape)
    xd, wd = x.detach(), w.detach()
    opcheck(ops.conv2d_backward.default, (gy, xd, wd, *geom, [True, True, True]))
    opcheck(ops.conv2d_backward.default, (gy, xd, wd, *geom, [False, True, False]))


# ---- pooling --------------------------------------------------------------------------

MAXPOOL_CASES = {
    # x shape, kernel, stride, padding, dilation, ceil_mode
    "plain": ((2, 3, 8, 8), 2, None, 0, 1, False),
    "overlap+pad": ((2, 2, 7, 9), 3, (2, 1), 1, 1, False),
    "stride>kernel+ceil": ((1, 2, 10, 11), (2, 3), (3, 4), (1, 0), 1, True),
    "dilation+ceil": ((2, 1, 9, 8), 3, 2, 1, (2, 1), True),
    "empty-batch": ((0, 3, 6, 6), 2, 2, 1, 1, False),
}


@FLOATS
@pytest.mark.parametrize("case", list(MAXPOOL_CASES))
def test_max_pool2d_parity(case, dt, gen):
    xs, k, s, p, d, c = MAXPOOL_CASES[case]
    x = rnd(gen, *xs, dtype=dt)
    for ri in (False, True):
        def f(mod):
            return lambda x: mod.max_pool2d(x, k, s, p, d, ceil_mode=c, return_indices=ri)
        out = parity(f(akt), f(F), [x], dt, gen)
        assert len(out) == (2 if ri else 1)
        if ri:
            assert out[1].dtype == torch.int64 and not out[1].requires_grad


def test_max_pool2d_gradcheck(gen):
    gradcheck(lambda x: akt.max_pool2d(x, 3, 2, 1, ceil_mode=True), leaf(gen, 2, 2, 6, 7))
    gradcheck(lambda x: akt.max_pool2d(x, (2, 3), (3, 2), 0, (2, 1), return_indices=True)[0],
              leaf(gen, 1, 2, 8, 7))


def test_max_pool2d_opcheck(gen):
    x = leaf(gen, 2, 3, 7, 6)
    args = ([3, 2], [2, 2], [1, 1], [1, 1], True)
    opcheck(ops.max_pool2d.default, (x, *args))
    y, idx = ops.max_pool2d.default(x.detach(), *args)
    opcheck(ops.max_pool2d_backward.default, (rnd(gen, *y.shape), idx, [2, 3, 7, 6]))
    opcheck(ops.max_pool2d_backward.default, (rnd(gen, *y.shape), idx, [7, 6]))


UNPOOL_CASES = {
    # x shape, kernel, stride, padding, output_size
    "default": ((2, 3, 8, 6), 2, None, 0, None),
    "stride+pad-default": ((1, 2, 9, 7), 3, 2, 1, None),
    "hw": ((2, 2, 9, 9), 2, 2, 0, (9, 9)),
    "nchw": ((2, 2, 7, 9), 3, 2, 1, (2, 2, 7, 9)),
    "empty-batch": ((0, 2, 6, 6), 2, None, 0, None),
}


@FLOATS
@pytest.mark.parametrize("case", list(UNPOOL_CASES))
def test_max_unpool2d_parity(case, dt, gen):
    xs, k, s, p, osize = UNPOOL_CASES[case]
    pooled, idx = F.max_pool2d(rnd(gen, *xs, dtype=dt), k, s, p, return_indices=True)
    v = rnd(gen, *pooled.shape, dtype=dt)
    f = lambda mod: lambda v, i: mod.max_unpool2d(v, i, k, s, p, output_size=osize)  # noqa: E731
    (y,) = parity(f(akt), f(F), [v, idx], dt, gen)
    if osize is not None:
        assert y.shape[-2:] == tuple(osize[-2:])


def test_max_unpool2d_gradcheck(gen):
    # Non-overlapping windows: with overlapping ones an index can repeat, the last write
    # wins and the gather gradient is not the Jacobian (torch's max_unpool2d likewise).
    _, idx = F.max_pool2d(rnd(gen, 2, 2, 6, 6), 2, 2, 1, return_indices=True)
    gradcheck(lambda v: akt.max_unpool2d(v, idx, 2, 2, 1), leaf(gen, *idx.shape))
    gradcheck(lambda v: akt.max_unpool2d(v, idx, 2, 2, 1, output_size=(7, 7)),
              leaf(gen, *idx.shape))


def test_max_unpool2d_skips_minus_one(gen):
    # A dilated window lying wholly in the padding has no element: our index is -1 (torch
    # reports an index outside the plane). max_unpool2d skips -1 (torch raises on it),
    # and its gradient there is 0.
    x = rnd(gen, 1, 2, 2, 2)
    y, idx = akt.max_pool2d(x, 2, 1, 1, 3, return_indices=True)
    assert idx.shape == (1, 2, 1, 1) and (idx == -1).all() and torch.isinf(y).all()
    idx = torch.cat([idx, torch.tensor([[[[1]], [[3]]]])], dim=3)   # (1, 2, 1, 2)
    v = leaf(gen, 1, 2, 1, 2)
    u = akt.max_unpool2d(v, idx, 2, output_size=(2, 2))
    want = torch.zeros(1, 2, 4, dtype=F64)
    want[0, 0, 1], want[0, 1, 3] = v[0, 0, 0, 1], v[0, 1, 0, 1]
    assert torch.equal(u.detach(), want.reshape(1, 2, 2, 2))
    u.backward(torch.ones_like(u))
    assert torch.equal(v.grad, torch.tensor([[[[0.0, 1.0]], [[0.0, 1.0]]]], dtype=F64))
    gradcheck(lambda v: akt.max_unpool2d(v, idx, 2, output_size=(2, 2)), v)


def test_max_unpool2d_opcheck(gen):
    _, idx = F.max_pool2d(rnd(gen, 2, 3, 7, 6), 2, 2, 1, return_indices=True)
    opcheck(ops.max_unpool2d.default, (leaf(gen, *idx.shape), idx, [7, 6]))
    opcheck(ops.max_unpool2d.default, (leaf(gen, *idx.shape), idx, [8, 7]))


AVGPOOL_CASES = {
    # x shape, kernel, stride, padding, ceil_mode, count_include_pad
    "plain": ((2, 3, 8, 8), 2, None, 0, False, True),
    "pad-include": ((2, 2, 7, 9), 3, 2, 1, False, True),
    "pad-exclude+ceil": ((1, 2, 8, 7), 3, 2, 1, True, False),
    "stride>kernel+ceil": ((2, 1, 10, 11), (2, 3), (3, 4), (1, 0), True, True),
    "empty-batch": ((0, 3, 6, 6), 2, 2, 1, True, False),
}


@FLOATS
@pytest.mark.parametrize("case", list(AVGPOOL_CASES))
def test_avg_pool2d_parity(case, dt, gen):
    xs, k, s, p, c, cip = AVGPOOL_CASES[case]
    f = lambda mod: lambda x: mod.avg_pool2d(x, k, s, p, c, cip)  # noqa: E731
    parity(f(akt), f(F), [rnd(gen, *xs, dtype=dt)], dt, gen)


def test_avg_pool2d_gradcheck(gen):
    gradcheck(lambda x: akt.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=False),
              leaf(gen, 2, 2, 6, 7))
    gradcheck(lambda x: akt.avg_pool2d(x, (2, 3), (3, 1)), leaf(gen, 1, 2, 7, 6))


def test_avg_pool2d_opcheck(gen):
    x = leaf(gen, 2, 3, 7, 6)
    args = ([3, 3], [2, 2], [1, 1], True, False)
    opcheck(ops.avg_pool2d.default, (x, *args))
    y = ops.avg_pool2d.default(x.detach(), *args)
    opcheck(ops.avg_pool2d_backward.default, (rnd(gen, *y.shape), [2, 3, 7, 6], *args))


# ---- batch_norm -----------------------------------------------------------------------


@FLOATS
@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5), (3, 2, 4, 5)], ids=["NC", "NCL", "NCHW"])
# eval mode without running statistics raises in both (see test_errors)
@pytest.mark.parametrize("training,stats", [(True, True), (True, False), (False, True)],
                         ids=["train-stats", "train-nostats", "eval"])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
def test_batch_norm_parity(shape, training, stats, affine, dt, gen):
    c = shape[1]
    x = rnd(gen, *shape, dtype=dt, scale=2.0) + 0.5
    rm0 = rnd(gen, c, dtype=dt, scale=0.3)
    rv0 = torch.rand(c, generator=gen, dtype=dt) + 0.5
    rm_a, rv_a, rm_r, rv_r = rm0.clone(), rv0.clone(), rm0.clone(), rv0.clone()
    if not stats:
        rm_a = rv_a = rm_r = rv_r = None
    inputs = [x] + ([rnd(gen, c, dtype=dt), rnd(gen, c, dtype=dt)] if affine else [])

    def f(mod, rm, rv):
        return lambda x, w=None, b=None: mod.batch_norm(x, rm, rv, w, b, training=training,
                                                        momentum=0.3, eps=1e-3)

    parity(f(akt, rm_a, rv_a), f(F, rm_r, rv_r), inputs, dt, gen)
    if stats:
        close(rm_a, rm_r, dt)
        close(rv_a, rv_r, dt)  # unbiased variance, as torch
        if training:
            assert not torch.equal(rm_a, rm0) and not torch.equal(rv_a, rv0)
        else:
            assert torch.equal(rm_a, rm0) and torch.equal(rv_a, rv0)


def test_batch_norm_empty_batch(gen):
    x = rnd(gen, 0, 3, 4, 4)
    rm, rv = rnd(gen, 3), torch.rand(3, generator=gen, dtype=F64) + 0.5
    rm_r, rv_r = rm.clone(), rv.clone()
    y = akt.batch_norm(x, rm, rv, training=True)
    ref = F.batch_norm(x, rm_r, rv_r, training=True)
    assert y.shape == ref.shape == x.shape
    assert torch.equal(rm, rm_r) and torch.equal(rv, rv_r)  # torch leaves them alone too


def test_batch_norm_strided_running_stats(gen):
    # The op is functional; the wrapper copies the new statistics into any-strided buffers.
    x = rnd(gen, 5, 3, 4)
    stats = torch.stack([torch.zeros(3, dtype=F64), torch.ones(3, dtype=F64)], dim=1)  # (3, 2)
    ref = stats.clone()
    akt.batch_norm(x, stats[:, 0], stats[:, 1], training=True)
    F.batch_norm(x, ref[:, 0], ref[:, 1], training=True)
    assert not stats[:, 0].is_contiguous()
    close(stats, ref, F64)
    assert not torch.equal(stats, torch.stack([torch.zeros(3), torch.ones(3)], 1).double())


def test_batch_norm_some_grads(gen):
    # Only weight / only bias / only x: the others' gradients are masked off.
    x, w, b = rnd(gen, 5, 3, 4), rnd(gen, 3), rnd(gen, 3)
    f = lambda mod: lambda x, w, b: mod.batch_norm(x, None, None, w, b, training=True)  # noqa: E731
    for req in ([False, True, False], [False, False, True], [True, False, False]):
        parity(f(akt), f(F), [x, w, b], F64, gen, requires=req)
    # weight None, bias given
    f = lambda mod: lambda x, b: mod.batch_norm(x, None, None, None, b, training=True)  # noqa: E731
    parity(f(akt), f(F), [x, b], F64, gen)


def test_batch_norm_gradcheck(gen):
    x, w, b = leaf(gen, 4, 3, 2, 3), leaf(gen, 3), leaf(gen, 3)
    rm, rv = torch.zeros(3, dtype=F64), torch.ones(3, dtype=F64)
    gradcheck(lambda x, w, b: akt.batch_norm(x, None, None, w, b, training=True), x, w, b)
    gradcheck(lambda x, w, b: akt.batch_norm(x, rm, rv, w, b, training=False), x, w, b)
    gradcheck(lambda x: akt.batch_norm(x, None, None, training=True), leaf(gen, 5, 2))
    x.requires_grad_(False)
    gradcheck(lambda x, w, b: akt.batch_norm(x, None, None, w, b, training=True), x, w, b)


def test_batch_norm_opcheck(gen):
    x, w, b = leaf(gen, 4, 3, 2, 3), leaf(gen, 3), leaf(gen, 3)
    rm, rv = rnd(gen, 3), torch.rand(3, generator=gen, dtype=F64) + 0.5
    for training in (True, False):
        opcheck(ops.batch_norm.default, (x, rm, rv, w, b, training, 0.1, 1e-5))
    opcheck(ops.batch_norm.default, (x, None, None, None, None, True, 0.1, 1e-5))
    for training in (True, False):
        _, mean, invstd, _, _ = ops.batch_norm.default(x.detach(), rm, rv, None, None,
                                                       training, 0.1, 1e-5)
        gy = rnd(gen, *x.shape)
        opcheck(ops.batch_norm_backward.default, (gy, x.detach(), w.detach(), mean, invstd,
                                                  training))
        opcheck(ops.batch_norm_backward.default, (gy, x.detach(), None, mean, invstd, training))


# ---- layer_norm -----------------------------------------------------------------------


@FLOATS
@pytest.mark.parametrize("shape,ns", [((4, 7), 7), ((2, 3, 5), [5]), ((2, 3, 4, 5), (4, 5)),
                                      ((0, 3, 4), [3, 4])], ids=["int", "1d", "2d", "empty"])
@pytest.mark.parametrize("affine", ["both", "weight", "none"])
def test_layer_norm_parity(shape, ns, affine, dt, gen):
    nshape = [ns] if isinstance(ns, int) else list(ns)
    x = rnd(gen, *shape, dtype=dt, scale=3.0) + 1.0
    w, b = rnd(gen, *nshape, dtype=dt), rnd(gen, *nshape, dtype=dt)
    inputs = {"both": [x, w, b], "weight": [x, w], "none": [x]}[affine]
    # torch.nn.functional.layer_norm takes a sequence only; ours also an int, as nn.LayerNorm
    f = lambda mod, ns: lambda x, w=None, b=None: mod.layer_norm(x, ns, w, b, eps=1e-4)  # noqa: E731
    parity(f(akt, ns), f(F, nshape), inputs, dt, gen)


def test_layer_norm_some_grads(gen):
    x, w, b = rnd(gen, 3, 4, 5), rnd(gen, 4, 5), rnd(gen, 4, 5)
    f = lambda mod: lambda x, w, b: mod.layer_norm(x, [4, 5], w, b)  # noqa: E731
    parity(f(akt), f(F), [x, w, b], F64, gen, requires=[False, True, True])
    parity(f(akt), f(F), [x, w, b], F64, gen, requires=[True, False, False])
    f = lambda mod: lambda x, b: mod.layer_norm(x, [5], None, b)  # noqa: E731
    parity(f(akt), f(F), [x, b[0]], F64, gen)


def test_layer_norm_gradcheck(gen):
    x, w, b = leaf(gen, 3, 2, 4), leaf(gen, 2, 4), leaf(gen, 2, 4)
    gradcheck(lambda x, w, b: akt.layer_norm(x, (2, 4), w, b), x, w, b)
    gradcheck(lambda x: akt.layer_norm(x, 4), x)
    x.requires_grad_(False)
    gradcheck(lambda x, w, b: akt.layer_norm(x, (2, 4), w, b), x, w, b)


def test_layer_norm_opcheck(gen):
    x, w, b = leaf(gen, 3, 2, 4), leaf(gen, 2, 4), leaf(gen, 2, 4)
    opcheck(ops.layer_norm.default, (x, [2, 4], w, b, 1e-5))
    opcheck(ops.layer_norm.default, (x, [4], None, None, 1e-5))
    _, mean, rstd = ops.layer_norm.default(x.detach(), [2, 4], None, None, 1e-5)
    gy = rnd(gen, *x.shape)
    opcheck(ops.layer_norm_backward.default, (gy, x.detach(), [2, 4], mean, rstd, w.detach()))
    opcheck(ops.layer_norm_backward.default, (gy, x.detach(), [2, 4], mean, rstd, None))


# ---- linear ---------------------------------------------------------------------------


@FLOATS
@pytest.mark.parametrize("xshape", [(5, 3), (2, 4, 3), (3,), (0, 3)], ids=["2d", "3d", "1d", "empty"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_linear_parity(xshape, bias, dt, gen):
    inputs = [rnd(gen, *xshape, dtype=dt), rnd(gen, 4, 3, dtype=dt)]
    if bias:
        inputs.append(rnd(gen, 4, dtype=dt))
    parity(akt.linear, F.linear, inputs, dt, gen)


def test_linear_some_grads(gen):
    inputs = [rnd(gen, 2, 5, 3), rnd(gen, 4, 3), rnd(gen, 4)]
    for req in ([False, True, True], [True, False, False], [False, False, True]):
        parity(akt.linear, F.linear, inputs, F64, gen, requires=req)


def test_linear_gradcheck(gen):
    x, w, b = leaf(gen, 2, 3, 4), leaf(gen, 5, 4), leaf(gen, 5)
    gradcheck(akt.linear, x, w, b)
    gradcheck(akt.linear, leaf(gen, 3, 4), w)
    x.requires_grad_(False)
    gradcheck(akt.linear, x, w, b)


def test_linear_opcheck(gen):
    x, w, b = leaf(gen, 6, 4), leaf(gen, 5, 4), leaf(gen, 5)
    opcheck(ops.linear.default, (x, w, b))
    opcheck(ops.linear.default, (x, w, None))
    gy, xd, wd = rnd(gen, 6, 5), x.detach(), w.detach()
    opcheck(ops.linear_backward.default, (gy, xd, wd, [True, True, True]))
    opcheck(ops.linear_backward.default, (gy, xd, wd, [False, True, False]))


# ---- cross_entropy --------------------------------------------------------------------


@FLOATS
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("ignore", [None, -100, 2], ids=["noignore", "ignore-100", "ignore2"])
def test_cross_entropy_parity(reduction, ignore, dt, gen):
    b, k = 7, 5
    logits = rnd(gen, b, k, dtype=dt, scale=3.0)
    targets = torch.randint(0, k, (b,), generator=gen)
    kw = {"reduction": reduction}
    if ignore is not None:
        targets[[1, 4]] = ignore
        kw["ignore_index"] = ignore
    parity(lambda lg: akt.cross_entropy(lg, targets, **kw),
           lambda lg: F.cross_entropy(lg, targets, **kw), [logits], dt, gen)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_empty_and_all_ignored(reduction, gen):
    for lg, t in ((rnd(gen, 0, 4), torch.zeros(0, dtype=torch.int64)),
                  (rnd(gen, 3, 4), torch.full((3,), -100))):
        f = lambda mod: lambda lg: mod.cross_entropy(lg, t, reduction=reduction)  # noqa: E731
        a, r = f(akt)(lg), f(F)(lg)
        torch.testing.assert_close(a, r, equal_nan=True)  # mean of nothing: nan in both
        la = lg.clone().requires_grad_()
        f(akt)(la).sum().backward()
        assert torch.equal(la.grad, torch.zeros_like(lg))


def test_cross_entropy_gradcheck(gen):
    t = torch.tensor([0, 3, -100, 1, 2])
    for red in ("mean", "sum", "none"):
        gradcheck(lambda lg: akt.cross_entropy(lg, t, reduction=red), leaf(gen, 5, 4))
    gradcheck(lambda lg: akt.cross_entropy(lg, t.clamp(min=0), ignore_index=3), leaf(gen, 5, 4))


def test_cross_entropy_opcheck(gen):
    t = torch.tensor([0, 3, -100, 1, 2, 3])
    for red in ("mean", "sum", "none"):
        opcheck(ops.cross_entropy.default, (leaf(gen, 6, 4), t, red, -100))
    opcheck(ops.cross_entropy.default, (leaf(gen, 6, 4), t.clamp(min=0), "mean", 3))


# ---- dropout --------------------------------------------------------------------------


@FLOATS
@pytest.mark.parametrize("p", [0.0, 0.3, 0.75, 1.0])
def test_dropout_matches_ak_mask(p, dt, gen):
    x = rnd(gen, 4, 5, 6, dtype=dt).requires_grad_()
    seed = 1234567
    y = akt.dropout(x, p, seed)
    y_ak, mask = ak.dropout_forward(x.detach().numpy(), p, seed=seed, training=True)
    assert torch.equal(y.detach(), torch.from_numpy(y_ak))  # bit for bit
    mask_t = torch.from_numpy(mask)
    g = rnd(gen, *x.shape, dtype=dt)
    y.backward(g)
    if p == 1.0:
        assert not mask.any() and torch.equal(y.detach(), torch.zeros_like(y))
        assert torch.equal(x.grad, torch.zeros_like(x))
    else:
        close(x.grad, g * mask_t / (1 - p), dt, rtol=5e-16 if dt == F64 else 3e-7, atol=0)
        assert torch.equal(x.grad, torch.from_numpy(ak.dropout_backward(g.numpy(), mask, p)))
    if p == 0.0:
        assert mask.all() and torch.equal(y.detach(), x.detach())
    # p = 0 and p = 1 are deterministic, so also equal torch's dropout there
    if p in (0.0, 1.0):
        xr = x.detach().clone().requires_grad_()
        yr = F.dropout(xr, p, training=True)
        yr.backward(g)
        assert torch.equal(yr.detach(), y.detach()) and torch.equal(xr.grad, x.grad)


def test_dropout_seeds(gen):
    x = rnd(gen, 64, 33)
    a, b = akt.dropout(x, 0.5, 7), akt.dropout(x, 0.5, 7)
    assert torch.equal(a, b)
    assert not torch.equal(a, akt.dropout(x, 0.5, 8))
    big = 2**63 + 12345
    y_big = akt.dropout(x, 0.5, big)
    assert torch.equal(y_big, torch.from_numpy(ak.dropout_forward(x.numpy(), 0.5, seed=big)[0]))
    assert not torch.equal(y_big, akt.dropout(x, 0.5, big - 2**63))
    top = 2**64 - 1
    assert torch.equal(akt.dropout(x, 0.5, top),
                       torch.from_numpy(ak.dropout_forward(x.numpy(), 0.5, seed=top)[0]))
    kept = (akt.dropout(x, 0.25, 99) != 0).double().mean().item()
    assert abs(kept - 0.75) < 0.06


def test_dropout_eval_and_empty(gen):
    x = rnd(gen, 3, 4)
    # As torch.nn.functional.dropout(training=False): the input itself, not a copy.
    assert akt.dropout(x, 0.5, 1, training=False) is x
    assert F.dropout(x, 0.5, training=False) is x
    e = rnd(gen, 0, 4)
    assert akt.dropout(e, 0.5, 1).shape == (0, 4)


def test_dropout_gradcheck(gen):
    gradcheck(lambda x: akt.dropout(x, 0.4, 2**63 + 5), leaf(gen, 4, 6))
    gradcheck(lambda x: akt.dropout(x, 0.0, 3), leaf(gen, 2, 3))


def test_dropout_opcheck(gen):
    x = leaf(gen, 5, 7)
    opcheck(ops.dropout.default, (x, 0.3, 11))
    opcheck(ops.dropout.default, (x, 0.3, -(2**63) + 11))  # a seed >= 2**63 as its int64
    _, mask = ops.dropout.default(x.detach(), 0.3, 11)
    opcheck(ops.dropout_backward.default, (rnd(gen, 5, 7), mask, 0.3))


# ---- lstm -----------------------------------------------------------------------------


def _lstm_inputs(gen, t, b, i, h, bias, dt=F64):
    ws = [rnd(gen, 4 * h, i, dtype=dt, scale=0.4), rnd(gen, 4 * h, h, dtype=dt, scale=0.4)]
    if bias:
        ws += [rnd(gen, 4 * h, dtype=dt, scale=0.3), rnd(gen, 4 * h, dtype=dt, scale=0.3)]
    return [rnd(gen, t, b, i, dtype=dt), rnd(gen, b, h, dtype=dt, scale=0.5),
            rnd(gen, b, h, dtype=dt, scale=0.5)] + ws


def _torch_lstm(reverse, bias):
    """torch.nn.LSTM (one layer) with the given tensors copied in as its parameters;
    their gradients are copied back onto the leaves so `parity` compares them."""
    def f(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None):
        i, h = w_ih.shape[1], w_hh.shape[1]
        m = torch.nn.LSTM(i, h, bias=bias, dtype=x.dtype)
        leaves = [w_ih, w_hh] + ([b_ih, b_hh] if bias else [])
        with torch.no_grad():
            for p, v in zip(m.parameters(), leaves):
                p.copy_(v)
        xs = x.flip(0) if reverse else x
        y, (hn, cn) = m(xs, (h0[None], c0[None]))
        y = y.flip(0) if reverse else y

        # Route the module's parameter gradients to the leaves.
        def hook(p, v):
            p.register_hook(lambda g: setattr(v, "grad", g.clone()) or g)
        for p, v in zip(m.parameters(), leaves):
            hook(p, v)
        return y, hn[0], cn[0]
    return f


@FLOATS
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("tbih", [(5, 3, 4, 6), (1, 2, 3, 2), (3, 0, 2, 3)],
                         ids=["T5", "T1", "B0"])
def test_lstm_parity(tbih, reverse, bias, dt, gen):
    inputs = _lstm_inputs(gen, *tbih, bias, dt)
    f_ak = lambda *a: akt.lstm(*a, reverse=reverse)  # noqa: E731
    parity(f_ak, _torch_lstm(reverse, bias), inputs, dt, gen)


def test_lstm_one_bias(gen):
    # b_ih given, b_hh None: as torch with b_hh = 0 (and no gradient for the None).
    x, h0, c0, wi, wh, bi, _ = _lstm_inputs(gen, 4, 2, 3, 3, True)
    leaves = [t.clone().requires_grad_() for t in (x, h0, c0, wi, wh, bi)]
    y, hn, cn = akt.lstm(*leaves)
    (y.sum() + hn.sum() + cn.sum()).backward()
    ref = [t.clone().requires_grad_() for t in (x, h0, c0, wi, wh, bi)]
    yr, hr, cr = _torch_lstm(False, True)(*ref, torch.zeros_like(bi))
    (yr.sum() + hr.sum() + cr.sum()).backward()
    close(y, yr, F64)
    for a, r in zip(leaves, ref):
        close(a.grad, r.grad, F64)


def test_lstm_gradcheck(gen):
    ins = [t.requires_grad_() for t in _lstm_inputs(gen, 3, 2, 2, 2, True)]
    for rev in (False, True):
        gradcheck(lambda *a: akt.lstm(*a, reverse=rev), *ins)
    gradcheck(lambda *a: akt.lstm(*a)[1], *[t.requires_grad_() for t in
                                            _lstm_inputs(gen, 2, 1, 2, 3, False)])
    # only w_hh requires grad
    for t in ins:
        t.requires_grad_(False)
    ins[4].requires_grad_()
    gradcheck(lambda *a: akt.lstm(*a)[0], *ins)


def test_lstm_opcheck(gen):
    for bias, rev in ((True, False), (False, True)):
        ins = [t.requires_grad_() for t in _lstm_inputs(gen, 3, 2, 3, 4, bias)]
        if not bias:
            ins += [None, None]
        opcheck(ops.lstm.default, (*ins, rev))
        det = [None if t is None else t.detach() for t in ins]
        y, hn, cn, gates, cells = ops.lstm.default(*det, rev)
        grads = (rnd(gen, *y.shape), rnd(gen, *hn.shape), rnd(gen, *cn.shape))
        opcheck(ops.lstm_backward.default, (*grads, *det, gates, cells, y, rev))


# ---- errors ---------------------------------------------------------------------------


def _errors():
    x = torch.randn(2, 3, 6, 6, dtype=F64)
    w = torch.randn(4, 3, 3, 3, dtype=F64)
    lg = torch.randn(3, 4, dtype=F64)
    pooled, idx = F.max_pool2d(x, 2, return_indices=True)
    bad_idx = idx.clone()
    bad_idx[1, 2, 0, 1] = 36
    rm, rv = torch.zeros(3, dtype=F64), torch.ones(3, dtype=F64)
    s = torch.randn(4, 2, 3, dtype=F64)
    h = torch.zeros(2, 5, dtype=F64)
    wih, whh = torch.randn(20, 3, dtype=F64), torch.randn(20, 5, dtype=F64)
    return {
        "conv-stride0": (lambda: akt.conv2d(x, w, stride=0), ValueError, "stride"),
        "conv-weight-shape": (lambda: akt.conv2d(x, w[:, :2]), ValueError, "weight"),
        "conv-bias-shape": (lambda: akt.conv2d(x, w, torch.zeros(3, dtype=F64)), ValueError, "bias"),
        "conv-mixed-dtypes": (lambda: akt.conv2d(x, w.float()), TypeError, "weight"),
        "conv-groups": (lambda: akt.conv2d(x, w, groups=2), ValueError, "groups"),
        "conv-padding-neg": (lambda: akt.conv2d(x, w, padding=-1), ValueError, "padding"),
        "conv-stride-str": (lambda: akt.conv2d(x, w, stride="a"), ValueError, "stride"),
        "conv-x-3d": (lambda: akt.conv2d(x[0], w), ValueError, "x"),
        "maxpool-pad": (lambda: akt.max_pool2d(x, 2, padding=2), ValueError, "padding"),
        "maxpool-stride0": (lambda: akt.max_pool2d(x, 2, stride=0), ValueError, "stride"),
        "maxpool-int": (lambda: akt.max_pool2d(x.long(), 2), TypeError, "x"),
        "unpool-index": (lambda: akt.max_unpool2d(pooled, bad_idx, 2), ValueError, "indices"),
        "unpool-index-dtype": (lambda: akt.max_unpool2d(pooled, idx.int(), 2), TypeError, "indices"),
        "unpool-output-size": (lambda: akt.max_unpool2d(pooled, idx, 2, output_size=(6,)),
                               ValueError, "output_size"),
        "avgpool-pad": (lambda: akt.avg_pool2d(x, 3, padding=2), ValueError, "padding"),
        "avgpool-kernel0": (lambda: akt.avg_pool2d(x, 0), ValueError, "kernel_size"),
        "bn-running-shape": (lambda: akt.batch_norm(x, rm[:2], rv, training=True), ValueError,
                             "running_mean"),
        "bn-weight-shape": (lambda: akt.batch_norm(x, rm, rv, torch.ones(4, dtype=F64)),
                            ValueError, "weight"),
        "bn-one-value": (lambda: akt.batch_norm(lg[:1], None, None, training=True), ValueError, "x"),
        "bn-eval-nostats": (lambda: akt.batch_norm(x, None, None), ValueError, "running_mean"),
        "bn-momentum-none": (lambda: akt.batch_norm(x, rm, rv, training=True, momentum=None),
                             ValueError, "momentum"),
        "ln-shape": (lambda: akt.layer_norm(s, [4]), ValueError, "normalized_shape"),
        "ln-weight": (lambda: akt.layer_norm(s, [3], torch.ones(2, dtype=F64)), ValueError, "weight"),
        "ln-mixed": (lambda: akt.layer_norm(s, [3], torch.ones(3)), TypeError, "weight"),
        "linear-weight": (lambda: akt.linear(lg, torch.ones(2, 3, dtype=F64)), ValueError, "weight"),
        "linear-bias": (lambda: akt.linear(lg, torch.ones(2, 4, dtype=F64), torch.ones(3, dtype=F64)),
                        ValueError, "bias"),
        "linear-mixed": (lambda: akt.linear(lg.float(), torch.ones(2, 4, dtype=F64)), TypeError,
                         "weight"),
        "ce-target-range": (lambda: akt.cross_entropy(lg, torch.tensor([0, 4, 1])), ValueError,
                            "targets"),
        "ce-target-negative": (lambda: akt.cross_entropy(lg, torch.tensor([0, -1, 1])), ValueError,
                               "targets"),
        "ce-target-dtype": (lambda: akt.cross_entropy(lg, torch.tensor([0, 1, 1], dtype=torch.int32)),
                            TypeError, "targets"),
        "ce-reduction": (lambda: akt.cross_entropy(lg, torch.tensor([0, 1, 1]), reduction="avg"),
                         ValueError, "reduction"),
        "ce-ignore-type": (lambda: akt.cross_entropy(lg, torch.tensor([0, 1, 1]), ignore_index=1.0),
                           TypeError, "ignore_index"),
        "dropout-p": (lambda: akt.dropout(lg, 1.5, 0), ValueError, "p"),
        "dropout-p-negative": (lambda: akt.dropout(lg, -0.1, 0), ValueError, "p"),
        "dropout-seed-negative": (lambda: akt.dropout(lg, 0.5, -1), ValueError, "seed"),
        "dropout-seed-big": (lambda: akt.dropout(lg, 0.5, 2**64), ValueError, "seed"),
        "dropout-seed-float": (lambda: akt.dropout(lg, 0.5, 1.0), TypeError, "seed"),
        "lstm-c0": (lambda: akt.lstm(s, h, h[:, :4], wih, whh), ValueError, "c0"),
        "lstm-w_ih": (lambda: akt.lstm(s, h, h, wih[:, :2], whh), ValueError, "w_ih"),
        "lstm-mixed": (lambda: akt.lstm(s, h, h, wih, whh.float()), TypeError, "w_hh"),
        # inputs that are not float32/float64 torch tensors: named, with the fix
        "conv-numpy": (lambda: akt.conv2d(x.numpy(), w), TypeError, "x"),
        "conv-numpy-weight": (lambda: akt.conv2d(x, w.numpy()), TypeError, "weight"),
        "conv-bfloat16": (lambda: akt.conv2d(x.bfloat16(), w.bfloat16()), TypeError, "x"),
        "conv-none": (lambda: akt.conv2d(None, w), TypeError, "x"),
        "conv-meta": (lambda: akt.conv2d(x.to("meta"), w.to("meta")), ValueError, "x"),
        "pool-half": (lambda: akt.max_pool2d(x.half(), 2), TypeError, "x"),
        "avgpool-list": (lambda: akt.avg_pool2d(x.tolist(), 2), TypeError, "x"),
        "unpool-int32": (lambda: akt.max_unpool2d(pooled, idx.int(), 2), TypeError, "indices"),
        "bn-numpy-stats": (lambda: akt.batch_norm(x, rm.numpy(), rv, training=True), TypeError,
                           "running_mean"),
        "ln-bfloat16": (lambda: akt.layer_norm(x.bfloat16(), [6]), TypeError, "x"),
        "linear-numpy": (lambda: akt.linear(lg.numpy(), w[:, 0, 0]), TypeError, "x"),
        "ce-numpy-targets": (lambda: akt.cross_entropy(lg, np.array([0, 1, 2])), TypeError,
                             "targets"),
        "dropout-int": (lambda: akt.dropout(lg.long(), 0.5, 0), TypeError, "x"),
        "lstm-numpy-bias": (lambda: akt.lstm(s, h, h, wih, whh, wih[:, 0].numpy()), TypeError,
                            "b_ih"),
    }


def test_input_type_messages_say_how_to_fix():
    x = torch.randn(2, 3, 6, 6)
    with pytest.raises(TypeError, match=r"conv2d: x: .*torch\.from_numpy"):
        akt.conv2d(x.numpy(), torch.randn(4, 3, 3, 3))
    with pytest.raises(TypeError, match=r"conv2d: x: dtype torch\.bfloat16 .*x\.float\(\)"):
        akt.conv2d(x.bfloat16(), torch.randn(4, 3, 3, 3).bfloat16())


def test_import_without_torch_says_so():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import adlkernels as ak\n"
            "try:\n    import adlkernels.torch\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "adlkernels.torch needs PyTorch" in out.stdout and "pip install" in out.stdout


@pytest.mark.parametrize("case", list(_errors()))
def test_errors(case):
    fn, exc, arg = _errors()[case]
    with pytest.raises(exc) as info:
        fn()
    assert names(str(info.value), arg), str(info.value)


def test_error_changes_nothing():
    lg = torch.randn(3, 4, dtype=F64, requires_grad=True)
    before = lg.detach().clone()
    with pytest.raises(ValueError, match="targets"):
        akt.cross_entropy(lg, torch.tensor([0, 7, 1]))
    assert torch.equal(lg.detach(), before) and lg.grad is None
    x = torch.randn(4, 3, dtype=F64)
    rm, rv = torch.zeros(3, dtype=F64), torch.ones(3, dtype=F64)
    with pytest.raises(ValueError, match="weight"):
        akt.batch_norm(x, rm, rv, torch.ones(2, dtype=F64), training=True)
    assert torch.equal(rm, torch.zeros(3, dtype=F64)) and torch.equal(rv, torch.ones(3, dtype=F64))


# ---- strides, leaves, fresh results ---------------------------------------------------


def _strided_cases(gen):
    """(name, fn, inputs with at least one non-contiguous tensor)."""
    base = rnd(gen, 2, 6, 7, 9)
    x_t = base.transpose(2, 3)[:, ::2]                 # (2, 3, 9, 7), non-contiguous
    w = rnd(gen, 5, 4, 3, 3).transpose(0, 1)[:, :3]    # (4, 3, 3, 3)
    lin_w = rnd(gen, 3, 4).t()                         # (4, 3)
    seq = rnd(gen, 2, 5, 3).transpose(0, 1)            # (5, 2, 3) from batch-first
    _, idx = F.max_pool2d(x_t.contiguous(), 2, return_indices=True)
    vals = rnd(gen, *idx.shape[:-1], 2 * idx.shape[-1])[..., ::2]
    lst = _lstm_inputs(gen, 5, 2, 3, 4, True)
    cl = rnd(gen, 3, 4, 5, 2).contiguous(memory_format=torch.channels_last)
    return [
        ("conv2d", lambda x, w: akt.conv2d(x, w, padding=1), [x_t, w]),
        ("max_pool2d", lambda x: akt.max_pool2d(x, 3, 2, 1, return_indices=True), [x_t]),
        ("max_unpool2d", lambda v, i: akt.max_unpool2d(v, i, 2, output_size=(9, 7)), [vals, idx]),
        ("avg_pool2d", lambda x: akt.avg_pool2d(x, 3, 2, 1), [x_t]),
        ("batch_norm", lambda x: akt.batch_norm(x, None, None, training=True), [cl]),
        ("layer_norm", lambda x: akt.layer_norm(x, [7]), [x_t]),
        ("linear", akt.linear, [seq, lin_w]),
        ("cross_entropy", lambda lg: akt.cross_entropy(lg, torch.tensor([0, 2, 1, 1])),
         [rnd(gen, 3, 4).t()]),
        ("dropout", lambda x: akt.dropout(x, 0.5, 3), [x_t]),
        ("lstm", akt.lstm, [seq] + lst[1:3] + [rnd(gen, 16, 6)[:, ::2]] + lst[4:]),
    ]


def test_noncontiguous_inputs(gen):
    for name, fn, inputs in _strided_cases(gen):
        assert any(not t.is_contiguous() for t in inputs), name
        got = _as_tuple(fn(*inputs))
        want = _as_tuple(fn(*[t.contiguous() for t in inputs]))
        for g, w in zip(got, want):
            # GEMM-based ops may take another BLAS path for other strides.
            torch.testing.assert_close(g, w, rtol=1e-13, atol=1e-13, msg=name)
        assert all(t.is_contiguous() for t in got), name


def test_noncontiguous_gradients(gen):
    x = rnd(gen, 2, 4, 8, 6).transpose(2, 3).requires_grad_()   # non-contiguous leaf
    w = rnd(gen, 3, 4, 3, 3).requires_grad_()
    xc = x.detach().contiguous().requires_grad_()
    wc = w.detach().clone().requires_grad_()
    ya = akt.layer_norm(akt.max_pool2d(akt.conv2d(x, w, padding=1), 2), [4])
    yb = akt.layer_norm(akt.max_pool2d(akt.conv2d(xc, wc, padding=1), 2), [4])
    g = rnd(gen, *ya.shape).transpose(0, 1).contiguous().transpose(0, 1)  # strided cotangent
    ya.backward(g)
    yb.backward(g.contiguous())
    torch.testing.assert_close(x.grad, xc.grad, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(w.grad, wc.grad, rtol=1e-13, atol=1e-13)


def test_results_are_fresh(gen):
    """Outputs never share memory with inputs, also for requires_grad leaves and for the
    p=0 dropout and eval batch_norm that could have been returned as views."""
    x = rnd(gen, 2, 3, 4, 4).requires_grad_()
    rm, rv = torch.zeros(3, dtype=F64), torch.ones(3, dtype=F64)
    lg = rnd(gen, 3, 4).requires_grad_()
    outs = [
        (akt.conv2d(x, rnd(gen, 3, 3, 1, 1)), [x]),
        (akt.max_pool2d(x, 1), [x]),
        (akt.avg_pool2d(x, 1), [x]),
        (akt.batch_norm(x, rm, rv), [x, rm, rv]),
        (akt.layer_norm(x, [4]), [x]),
        (akt.linear(x, torch.eye(4, dtype=F64)), [x]),
        (akt.dropout(x, 0.0, 1), [x]),
        (akt.cross_entropy(lg, torch.tensor([0, 1, 2]), reduction="none"), [lg]),
    ]
    _, idx = akt.max_pool2d(x, 1, return_indices=True)
    outs.append((akt.max_unpool2d(x, idx, 1), [x, idx]))
    for k, (y, ins) in enumerate(outs):
        assert y.requires_grad, k
        for t in ins:
            assert y.untyped_storage().data_ptr() != t.untyped_storage().data_ptr(), k
        before = [t.detach().clone() for t in ins]
        with torch.no_grad():
            y.add_(1.0)  # writing to the result leaves the inputs alone
        for t, b in zip(ins, before):
            assert torch.equal(t.detach(), b), k


# ---- torch.compile --------------------------------------------------------------------

# Importing inductor (first compile) triggers torch's own DeprecationWarning for
# torch.jit.script_method (torch/utils/mkldnn.py); pytest turns warnings into errors.
COMPILE_WARNINGS = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")


@pytest.fixture
def dynamo_reset():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


class SmallCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        r = lambda *s, sc=1.0: torch.nn.Parameter(torch.randn(*s, generator=g) * sc)  # noqa: E731
        self.w1, self.b1 = r(4, 2, 3, 3, sc=0.3), r(4, sc=0.1)
        self.gamma = torch.nn.Parameter(1 + 0.1 * torch.randn(4, generator=g))
        self.beta = r(4, sc=0.1)
        self.register_buffer("running_mean", torch.zeros(4))
        self.register_buffer("running_var", torch.ones(4))
        self.w2, self.b2 = r(3, 16, sc=0.2), r(3, sc=0.1)

    def forward(self, x, t):
        h = akt.conv2d(x, self.w1, self.b1, padding=1)
        h = akt.batch_norm(h, self.running_mean, self.running_var, self.gamma, self.beta,
                           training=True, momentum=0.2)
        h = akt.max_pool2d(h, 2)
        h = akt.avg_pool2d(h, 3, 2, 1, count_include_pad=False)   # (N, 4, 2, 2)
        h = akt.dropout(h, 0.25, seed=2**63 + 7)
        h = akt.linear(h.flatten(1), self.w2, self.b2)
        return akt.cross_entropy(h, t)


class SmallLSTM(torch.nn.Module):
    def __init__(self, i=3, h=4, k=5):
        super().__init__()
        g = torch.Generator().manual_seed(1)
        r = lambda *s: torch.nn.Parameter(torch.randn(*s, generator=g) * 0.4)  # noqa: E731
        self.h = h
        self.fw = torch.nn.ParameterList([r(4 * h, i), r(4 * h, h), r(4 * h), r(4 * h)])
        self.bw = torch.nn.ParameterList([r(4 * h, i), r(4 * h, h), r(4 * h), r(4 * h)])
        self.ln_w, self.ln_b = r(2 * h), r(2 * h)
        self.out_w, self.out_b = r(k, 2 * h), r(k)

    def forward(self, x, t):
        z = x.new_zeros(x.shape[1], self.h)
        yf, _, _ = akt.lstm(x, z, z, *self.fw)
        yb, _, _ = akt.lstm(x, z, z, *self.bw, reverse=True)
        y = akt.layer_norm(torch.cat([yf, yb], dim=-1), 2 * self.h, self.ln_w, self.ln_b)
        logits = akt.linear(y, self.out_w, self.out_b)   # (T, B, K): the 3-D path
        return akt.cross_entropy(logits.reshape(-1, logits.shape[-1]), t.reshape(-1))


def _compare_compiled(make, x, t):
    eager, comp = make(), make()
    loss = eager(x, t)
    loss.backward()
    compiled = torch.compile(comp, fullgraph=True)
    closs = compiled(x, t)
    closs.backward()
    torch.testing.assert_close(closs, loss, rtol=1e-5, atol=1e-6)
    for (n, p), (_, q) in zip(eager.named_parameters(), comp.named_parameters()):
        assert q.grad is not None, n
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=n)
    for (n, b), (_, c) in zip(eager.named_buffers(), comp.named_buffers()):
        torch.testing.assert_close(c, b, rtol=1e-5, atol=1e-6, msg=n)
    return eager, comp


@COMPILE_WARNINGS
def test_compile_cnn(dynamo_reset, gen):
    x = rnd(gen, 3, 2, 8, 8, dtype=F32)
    t = torch.tensor([0, 2, 1])
    eager, comp = _compare_compiled(SmallCNN, x, t)
    fresh = SmallCNN()
    for name in ("running_mean", "running_var"):
        assert not torch.equal(getattr(comp, name), getattr(fresh, name)), name
    # batch statistics as torch computes them, folded in with momentum 0.2
    h = F.conv2d(x, fresh.w1, fresh.b1, padding=1).detach()
    mean, var = h.mean((0, 2, 3)), h.var((0, 2, 3), unbiased=True)
    torch.testing.assert_close(comp.running_mean, 0.2 * mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(comp.running_var, 0.8 + 0.2 * var, rtol=1e-5, atol=1e-6)


@COMPILE_WARNINGS
def test_compile_lstm(dynamo_reset, gen):
    x = rnd(gen, 4, 2, 3, dtype=F32)
    t = torch.randint(0, 5, (4, 2), generator=gen)
    _compare_compiled(SmallLSTM, x, t)


# ---- the eager shortcut and the registered ops ----------------------------------------

def _every_function(gen):
    """(name, f, inputs): one call of each public function, float64 leaves."""
    x4 = rnd(gen, 2, 3, 6, 6)
    w = rnd(gen, 4, 3, 3, 3, scale=0.3)
    b = rnd(gen, 4)
    xs = rnd(gen, 5, 2, 3)
    h0, c0 = rnd(gen, 2, 4), rnd(gen, 2, 4)
    w_ih, w_hh, b_ih = rnd(gen, 16, 3), rnd(gen, 16, 4), rnd(gen, 16)
    logits, targets = rnd(gen, 6, 5), torch.tensor([0, 4, 1, 2, 3, 1])
    _, idx = F.max_pool2d(x4, 2, return_indices=True)
    return [
        ("conv2d", lambda x, w, b: akt.conv2d(x, w, b, stride=2, padding=1), [x4, w, b]),
        ("max_pool2d", lambda x: akt.max_pool2d(x, 3, 2, 1), [x4]),
        ("max_unpool2d", lambda x: akt.max_unpool2d(x, idx, 2), [rnd(gen, 2, 3, 3, 3)]),
        ("avg_pool2d", lambda x: akt.avg_pool2d(x, 3, 2, 1, ceil_mode=True), [x4]),
        ("batch_norm", lambda x, g, bb: akt.batch_norm(x, torch.zeros(3, dtype=F64), torch.ones(3, dtype=F64), g, bb, training=True), [x4, rnd(gen, 3), rnd(gen, 3)]),
        ("layer_norm", lambda x, g, bb: akt.layer_norm(x, (6, 6), g, bb), [x4, rnd(gen, 6, 6), rnd(gen, 6, 6)]),
        ("linear", lambda x, w, b: akt.linear(x, w, b), [rnd(gen, 7, 3), rnd(gen, 4, 3), rnd(gen, 4)]),
        ("cross_entropy", lambda z: akt.cross_entropy(z, targets, reduction="none"), [logits]),
        ("dropout", lambda x: akt.dropout(x, 0.4, seed=11), [x4]),
        ("lstm", lambda x, h, c, wi, wh, bi: akt.lstm(x, h, c, wi, wh, bi), [xs, h0, c0, w_ih, w_hh, b_ih]),
    ]


def _run_with_grads(f, inputs, gen_seed):
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    outs = _as_tuple(f(*leaves))
    g = torch.Generator().manual_seed(gen_seed)
    cots = [torch.randn(o.shape, generator=g, dtype=o.dtype) for o in outs]
    torch.autograd.backward(outs, cots)
    return [o.detach() for o in outs], [t.grad for t in leaves]


def test_shortcut_equals_registered_op(gen, monkeypatch):
    """Eager calls skip the dispatcher; forcing every call through the registered custom
    ops (as torch.compile does) gives bit-identical outputs and gradients."""
    from adlkernels.torch import _ops

    cases = _every_function(gen)
    fast = {name: _run_with_grads(f, ins, 5) for name, f, ins in cases}
    via_ops = []
    real = _ops._Op.__call__

    def through_op(self, *args):
        via_ops.append(self.op)
        return self.op(*args)

    monkeypatch.setattr(_ops._Op, "__call__", through_op)
    for name, f, ins in cases:
        outs, grads = _run_with_grads(f, ins, 5)
        for a, b in zip(outs + grads, fast[name][0] + fast[name][1]):
            assert torch.equal(a, b), name
    assert len({id(op) for op in via_ops}) >= 18  # every forward and backward op ran
    monkeypatch.setattr(_ops._Op, "__call__", real)


def test_eager_calls_skip_the_dispatcher(gen, monkeypatch):
    from adlkernels.torch import _ops

    def refuse(*args):
        raise AssertionError("went through the dispatcher")

    for op in vars(_ops).values():
        if isinstance(op, _ops._Op):
            monkeypatch.setattr(op, "op", refuse)
    for name, f, ins in _every_function(gen):
        _run_with_grads(f, ins, 1)


def test_tracing_sees_the_registered_ops(gen):
    """Under a dispatch mode (make_fx here, as export and compile use) the calls go to
    the registered ops, so the traced graph holds them."""
    from torch.fx.experimental.proxy_tensor import make_fx

    x, w = rnd(gen, 2, 3, 6, 6), rnd(gen, 4, 3, 3, 3)

    def f(x, w):
        y = akt.max_pool2d(akt.conv2d(x, w, padding=1), 2)
        return akt.linear(y.flatten(1), torch.ones(2, 36, dtype=F64))

    graph = make_fx(f)(x, w)
    targets = {str(n.target) for n in graph.graph.nodes if n.op == "call_function"}
    assert {"adlk.conv2d.default", "adlk.max_pool2d.default", "adlk.linear.default"} <= targets
    torch.testing.assert_close(graph(x, w), f(x, w), rtol=0, atol=0)
