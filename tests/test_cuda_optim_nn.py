"""Optimizer steps, clip_grad_norm, batch/layer norm, activations, dropout, softmax and
the losses on cupy arrays (the CUDA kernels), against the CPU kernels: bit for bit where the kernels promise it (every
optimizer step, relu, leaky relu, dropout's output and mask), to a few ulp for sigmoid and
tanh (adlk/vecmath.h: the CPU's AVX2 code may contract multiply-adds, the GPU's does not)
and to rounding for the total norm, the normalization statistics, softmax and the losses
(other summation trees).

Skipped without cupy or without a visible CUDA device (CI has neither: there the same
launchers run on CPU threads in tests/cuda_emu, and the Python side in
test_cuda_orchestration.py).
"""

from __future__ import annotations

import numpy as np
import pytest

import adlkernels as ak

cp = pytest.importorskip("cupy")
if not ak.has_cuda():
    pytest.skip("no CUDA device visible to adlkernels", allow_module_level=True)
pytestmark = pytest.mark.usefixtures("cuda_kernels_on")

DTYPES = [np.float32, np.float64]


def _same(got, cpu):
    g = cp.asnumpy(got)
    assert g.shape == cpu.shape and g.dtype == cpu.dtype
    assert np.array_equal(g, cpu, equal_nan=True)


SHAPES = [(3, 4), (0,), (1,), (1025,), (70_001,)] + [(k,) for k in range(1, 60)]
STEPS = [
    ("sgd_step", 1, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("sgd_step", 0, dict(lr=0.1, maximize=True)),
    ("adagrad_step", 1, dict(lr=0.1, lr_decay=0.01, weight_decay=0.1)),
    ("rmsprop_step", 3, dict(lr=0.01, momentum=0.5, centered=True, weight_decay=0.1)),
    ("adam_step", 3, dict(lr=0.01, amsgrad=True, weight_decay=0.1, decoupled_weight_decay=True)),
    ("adam_step", 2, dict(lr=0.01, beta1=0.7)),
]
STATE_NAMES = {"sgd_step": ["momentum_buffers"], "adagrad_step": ["state_sums"],
               "rmsprop_step": ["square_avgs", "momentum_buffers", "grad_avgs"],
               "adam_step": ["exp_avgs", "exp_avg_sqs", "max_exp_avg_sqs"]}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fn,nstates,hyper", STEPS)
def test_optimizer_steps_equal_the_cpu_bitwise(rng, fn, nstates, hyper, dtype):
    lists = [[np.abs(rng.standard_normal(s)).astype(dtype) for s in SHAPES]
             for _ in range(2 + nstates)]
    dev = [[cp.asarray(a) for a in lst] for lst in lists]
    names = STATE_NAMES[fn][:nstates]
    for step in (1, 2, 3):
        for ls in (lists, dev):
            getattr(ak.optim, fn)(ls[0], ls[1], step=step, **dict(zip(names, ls[2:])), **hyper)
    for lst, dlst in zip(lists, dev):
        for a, d in zip(lst, dlst):
            _same(d, a)


@pytest.mark.parametrize("norm_type", [1.0, 2.0, float("inf")])
@pytest.mark.parametrize("dtype", DTYPES)
def test_clip_grad_norm_matches_the_cpu(rng, norm_type, dtype):
    grads = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    dev = [cp.asarray(g) for g in grads]
    total = ak.optim.clip_grad_norm(grads, 0.5, norm_type)
    dtotal = ak.optim.clip_grad_norm(dev, 0.5, norm_type)
    assert isinstance(dtotal, cp.ndarray) and dtotal.shape == () and dtotal.dtype == dtype
    np.testing.assert_allclose(float(dtotal), float(total), rtol=1e-6 if dtype == np.float32 else 1e-13)
    if float(dtotal) == float(total):  # the same coefficient: the same bits
        for g, d in zip(grads, dev):
            _same(d, g)
    again = [cp.asarray(g) for g in grads]
    assert ak.optim.clip_grad_norm(again, 1e30, norm_type) == ak.optim.clip_grad_norm(again, 1e30, norm_type)


def test_clip_grad_norm_nonfinite_raises_and_leaves_grads():
    dev = [cp.asarray([1.0, np.nan]), cp.asarray([3.0])]
    with pytest.raises(RuntimeError, match="non-finite"):
        ak.optim.clip_grad_norm(dev, 1.0, error_if_nonfinite=True)
    assert float(dev[1][0]) == 3.0


def test_stateful_optimizer_trains_on_cupy(rng):
    w = cp.asarray(rng.standard_normal(10))
    opt = ak.optim.AdamW([w], lr=0.1)
    for _ in range(100):
        opt.step([2 * w])  # gradient of |w|^2
    assert float(cp.abs(w).max()) < 0.5
    state = opt.state_dict()
    assert isinstance(state["state"]["exp_avgs"][0], cp.ndarray)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["relu", "leaky_relu", "sigmoid", "tanh"])
def test_activations_match_the_cpu(rng, name, dtype):
    x = (rng.standard_normal((333, 129)) * 10).astype(dtype)
    x[0, :6] = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-30]
    gy = rng.standard_normal(x.shape).astype(dtype)
    fwd, bwd = getattr(ak.nn, f"{name}_forward"), getattr(ak.nn, f"{name}_backward")
    y, dy = fwd(x), fwd(cp.asarray(x))
    saved = y if getattr(ak._adlk.Activation, name).backward_takes_output else x
    gx, dgx = bwd(gy, saved), bwd(cp.asarray(gy), cp.asarray(saved))
    if name in ("relu", "leaky_relu"):
        _same(dy, y)
        _same(dgx, gx)
    else:
        eps = np.finfo(dtype).eps
        np.testing.assert_allclose(cp.asnumpy(dy), y, rtol=16 * eps, atol=16 * eps)
        np.testing.assert_allclose(cp.asnumpy(dgx), gx, rtol=16 * eps, atol=16 * eps * np.abs(gy).max())


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 1.0])
@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_mask_is_the_cpus(rng, p, dtype):
    x = rng.standard_normal((1001, 7)).astype(dtype)
    y, mask = ak.nn.dropout_forward(x, p, seed=2**63 + 12345)
    dy, dmask = ak.nn.dropout_forward(cp.asarray(x), p, seed=2**63 + 12345)
    _same(dy, y)
    _same(dmask, mask)
    _same(ak.nn.dropout_backward(cp.asarray(x), dmask, p), ak.nn.dropout_backward(x, mask, p))


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(7, 3), (5, 1000), (2, 3, 33), (1, 1)])
def test_softmax_matches_the_cpu(rng, log, dtype, shape):
    x = (rng.standard_normal(shape) * 5).astype(dtype)
    gy = rng.standard_normal(shape).astype(dtype)
    fwd = ak.nn.log_softmax_forward if log else ak.nn.softmax_forward
    bwd = ak.nn.log_softmax_backward if log else ak.nn.softmax_backward
    y, dy = fwd(x), fwd(cp.asarray(x))
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(cp.asnumpy(dy), y, rtol=16 * eps, atol=16 * eps)
    gx, dgx = bwd(gy, y), bwd(cp.asarray(gy), cp.asarray(y))
    np.testing.assert_allclose(cp.asnumpy(dgx), gx, rtol=1e3 * eps, atol=1e3 * eps)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_matches_the_cpu(rng, reduction, dtype):
    logits = rng.standard_normal((300, 17)).astype(dtype)
    targets = rng.integers(0, 17, 300)
    targets[::7] = -100
    loss, grad = ak.nn.softmax_cross_entropy(logits, targets, reduction)
    dloss, dgrad = ak.nn.softmax_cross_entropy(cp.asarray(logits), cp.asarray(targets), reduction)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(cp.asnumpy(dloss), loss, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(cp.asnumpy(dgrad), grad, rtol=rtol, atol=rtol)
    with pytest.raises(ValueError, match="outside"):
        ak.nn.softmax_cross_entropy(cp.asarray(logits), cp.asarray(np.full(300, 17)), reduction)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name", ["mse_loss", "l1_loss", "huber_loss"])
def test_losses_match_the_cpu(rng, name, reduction):
    p, t = rng.standard_normal((1000, 7)), rng.standard_normal((1000, 7))
    loss, grad = getattr(ak.nn, name)(p, t, reduction=reduction)
    dloss, dgrad = getattr(ak.nn, name)(cp.asarray(p), cp.asarray(t), reduction=reduction)
    np.testing.assert_allclose(cp.asnumpy(dloss), loss, rtol=1e-12)
    np.testing.assert_allclose(cp.asnumpy(dgrad), grad, rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(64, 5), (8, 3, 17), (4, 6, 9, 11), (2, 3, 40_000), (0, 3, 4)])
def test_batchnorm_matches_the_cpu(rng, dtype, shape):
    x = (rng.standard_normal(shape) * 2 + 100).astype(dtype)  # an offset: the shifted sums
    c = shape[1]
    w, b = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)
    gy = rng.standard_normal(shape).astype(dtype)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    rm, rv = np.zeros(c, dtype), np.ones(c, dtype)
    drm, drv = cp.asarray(rm), cp.asarray(rv)
    want = ak.norm.batchnorm_forward(x, w, b, rm, rv, training=True)
    got = ak.norm.batchnorm_forward(*(cp.asarray(a) for a in (x, w, b)), drm, drv, training=True)
    for g, e in zip((*got, drm, drv), (*want, rm, rv)):
        np.testing.assert_allclose(cp.asnumpy(g), e, **tol)
    for training in (True, False):
        want_b = ak.norm.batchnorm_backward(gy, x, w, want[1], want[2], training=training)
        got_b = ak.norm.batchnorm_backward(*(cp.asarray(a) for a in (gy, x, w, want[1], want[2])),
                                           training=training)
        for g, e in zip(got_b, want_b):
            np.testing.assert_allclose(cp.asnumpy(g), e, **tol)
    # eval: no sums, the CPU's values to one rounding
    want_e = ak.norm.batchnorm_forward(x, w, b, rm, rv, training=False)
    got_e = ak.norm.batchnorm_forward(*(cp.asarray(a) for a in (x, w, b, rm, rv)), training=False)
    for g, e in zip(got_e, want_e):
        np.testing.assert_allclose(cp.asnumpy(g), e, rtol=4 * np.finfo(dtype).eps, atol=4 * np.finfo(dtype).eps)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,ns", [((64, 5), 5), ((8, 3, 17), (3, 17)), ((300, 1024), 1024), ((0, 6), 6)])
def test_layernorm_matches_the_cpu(rng, dtype, shape, ns):
    x = (rng.standard_normal(shape) * 2 + 100).astype(dtype)
    if x.size:
        x.reshape(-1)[0] = 1e4  # a far first value: the recentering pass
    nshape = (ns,) if isinstance(ns, int) else ns
    w, b = rng.standard_normal(nshape).astype(dtype), rng.standard_normal(nshape).astype(dtype)
    gy = rng.standard_normal(shape).astype(dtype)
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    for ww, bb in ((w, b), (None, None)):
        want = ak.norm.layernorm_forward(x, ns, ww, bb)
        dev = [None if a is None else cp.asarray(a) for a in (x, ww, bb)]
        got = ak.norm.layernorm_forward(dev[0], ns, dev[1], dev[2])
        for g, e in zip(got, want):
            np.testing.assert_allclose(cp.asnumpy(g), e, **tol)
        want_b = ak.norm.layernorm_backward(gy, x, ns, want[1], want[2], ww)
        got_b = ak.norm.layernorm_backward(cp.asarray(gy), dev[0], ns, cp.asarray(want[1]),
                                           cp.asarray(want[2]), dev[1])
        for g, e in zip(got_b, want_b):
            np.testing.assert_allclose(cp.asnumpy(g), e, **tol)


def test_norms_are_deterministic(rng):
    x = cp.asarray(rng.standard_normal((64, 32, 15, 15)).astype(np.float32))
    gy = cp.asarray(rng.standard_normal(x.shape).astype(np.float32))
    runs = []
    for _ in range(2):
        y, m, s = ak.norm.batchnorm_forward(x, None, None, None, None, training=True)
        runs.append([cp.asnumpy(a) for a in (y, m, s, *ak.norm.batchnorm_backward(gy, x, None, m, s))])
    for a, b in zip(*runs):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("b,i,o", [(64, 300, 100), (0, 5, 3), (1000, 17, 1)])
def test_linear_matches_the_cpu(rng, dtype, b, i, o):
    x, w, bias, gy = (rng.standard_normal(s).astype(dtype) for s in ((b, i), (o, i), (o,), (b, o)))
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(cp.asnumpy(ak.nn.linear_forward(*(cp.asarray(a) for a in (x, w, bias)))),
                               ak.nn.linear_forward(x, w, bias), **tol)
    got = ak.nn.linear_backward(*(cp.asarray(a) for a in (gy, x, w)))
    for g, e in zip(got, ak.nn.linear_backward(gy, x, w)):
        np.testing.assert_allclose(cp.asnumpy(g), e, **tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("idx_dtype", [np.int64, np.int32])
@pytest.mark.parametrize("shape,V,D,pad", [((64, 50), 3000, 96, None), ((7,), 5, 300, 2), ((0,), 4, 8, -1),
                                           ((3, 4, 5), 1, 33, None), ((2, 3), 10, 0, None)])
def test_embedding_equals_the_cpu_bitwise(rng, dtype, idx_dtype, shape, V, D, pad):
    """The same rows, and the gradient summed in the CPU's order (cupy's stable argsort,
    then the position-order sums): bit for bit."""
    idx = np.minimum(rng.zipf(1.3, shape) - 1, V - 1).astype(idx_dtype)
    w = rng.standard_normal((V, D)).astype(dtype)
    gy = rng.standard_normal(shape + (D,)).astype(dtype)
    _same(ak.nn.embedding_forward(cp.asarray(idx), cp.asarray(w), padding_idx=pad),
          ak.nn.embedding_forward(idx, w))
    for _ in range(2):  # deterministic run to run
        _same(ak.nn.embedding_backward(cp.asarray(gy), cp.asarray(idx), V, padding_idx=pad),
              ak.nn.embedding_backward(gy, idx, V, padding_idx=pad))


def test_embedding_bad_index_raises_before_any_kernel():
    w = cp.zeros((5, 3), np.float32)
    with pytest.raises(ValueError, match=r"embedding_forward: indices: value 5 at \[2\] is outside \[0, 5\)"):
        ak.nn.embedding_forward(cp.asarray(np.array([0, 1, 5])), w)
    with pytest.raises(ValueError, match=r"embedding_backward: indices: value -1 at \[0\]"):
        ak.nn.embedding_backward(cp.zeros((2, 3), np.float32), cp.asarray(np.array([-1, 1])), 5)
