"""Stateful layers (``ak.layers``, docs/api/layers.md).

Every layer's forward and backward equal the functional calls they compose, bit for bit;
params()/grads() order and liveness; PyTorch's default initialization; agreement with
torch.nn for a 2-layer bidirectional LSTM and a small CNN; finite-difference gradient
checks in float64 through a Sequential CNN and a stacked bidirectional LSTM; state_dict
round trips (model and optimizer) that resume bit-identically; a short training run
whose loss decreases; error handling.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import adlkernels as ak
from adlkernels import layers as L

F64 = np.float64


def _randn(rng, *shape, dtype=F64):
    return rng.standard_normal(shape).astype(dtype)


def _eq(got, ref, what=""):
    """Bitwise equality (same dtype, shape and bits)."""
    assert isinstance(got, np.ndarray), what
    assert got.dtype == ref.dtype and got.shape == ref.shape, (what, got.dtype, ref.dtype, got.shape, ref.shape)
    np.testing.assert_array_equal(got, ref, err_msg=what)


def _seq_names(model):
    """Parameter arrays of a model by identity -> index in params()."""
    return [id(p) for p in model.params()]


# ---------------------------------------------------------------------------------------
# forward/backward == the functional calls, bit for bit
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, F64], ids=["float32", "float64"])
@pytest.mark.parametrize(
    "cfg",
    [
        dict(kernel_size=3),
        dict(kernel_size=(3, 2), stride=2, padding=1, bias=False),
        dict(kernel_size=3, stride=(1, 2), padding=(2, 1), dilation=2, groups=2),
    ],
    ids=["plain", "stride_pad_nobias", "dilation_groups"],
)
def test_conv2d_matches_functional(cfg, dtype):
    rng = np.random.default_rng(1)
    layer = L.Conv2d(4, 6, dtype=dtype, rng=rng, **cfg)
    x = _randn(rng, 3, 4, 9, 8, dtype=dtype)
    y = layer.forward(x)
    kw = {k: cfg[k] for k in ("stride", "padding", "dilation", "groups") if k in cfg}
    ref = ak.conv.conv2d_forward(x, layer.weight, layer.bias, **kw)
    _eq(y, ref, "y")
    gy = _randn(rng, *y.shape, dtype=dtype)
    gx = layer.backward(gy)
    has_bias = cfg.get("bias", True)
    rgx, rgw, rgb = ak.conv.conv2d_backward(gy, x, layer.weight, output_mask=(True, True, has_bias), **kw)
    _eq(gx, rgx, "grad_x")
    params, grads = layer.params(), layer.grads()
    assert params[0] is layer.weight and len(params) == len(grads) == (2 if has_bias else 1)
    _eq(grads[0], rgw, "grad_weight")
    if has_bias:
        assert params[1] is layer.bias
        _eq(grads[1], rgb, "grad_bias")
    else:
        assert layer.bias is None


@pytest.mark.parametrize("dtype", [np.float32, F64], ids=["float32", "float64"])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_functional(bias, dtype):
    rng = np.random.default_rng(2)
    layer = L.Linear(7, 5, bias=bias, dtype=dtype, rng=rng)
    assert layer.weight.shape == (5, 7) and layer.weight.dtype == dtype
    x = _randn(rng, 6, 7, dtype=dtype)
    _eq(layer.forward(x), ak.nn.linear_forward(x, layer.weight, layer.bias), "y")
    gy = _randn(rng, 6, 5, dtype=dtype)
    gx = layer.backward(gy)
    rgx, rgw, rgb = ak.nn.linear_backward(gy, x, layer.weight, (True, True, bias))
    _eq(gx, rgx, "grad_x")
    _eq(layer.grads()[0], rgw, "grad_weight")
    if bias:
        assert [id(p) for p in layer.params()] == [id(layer.weight), id(layer.bias)]
        _eq(layer.grads()[1], rgb, "grad_bias")
    else:
        assert len(layer.params()) == len(layer.grads()) == 1


@pytest.mark.parametrize(
    "args",
    [
        (2,),
        (3, 2, 1),
        ((3, 2), (2, 1), (1, 0), (2, 1), True),
    ],
    ids=["k2", "k3s2p1", "dilation_ceil"],
)
def test_maxpool2d_matches_functional(args):
    rng = np.random.default_rng(3)
    layer = L.MaxPool2d(*args)
    assert layer.params() == [] and layer.grads() == []
    x = _randn(rng, 2, 3, 9, 10)
    y = layer.forward(x)
    ref, idx = ak.pool.maxpool2d_forward(x, *args)
    _eq(y, ref, "y")
    gy = _randn(rng, *y.shape)
    _eq(layer.backward(gy), ak.pool.maxpool2d_backward(gy, idx, x.shape), "grad_x")


@pytest.mark.parametrize(
    "args",
    [(2,), (3, 2, 1), (3, 2, 1, True, False)],
    ids=["k2", "k3s2p1", "ceil_nopad"],
)
def test_avgpool2d_matches_functional(args):
    rng = np.random.default_rng(4)
    layer = L.AvgPool2d(*args)
    x = _randn(rng, 2, 3, 9, 10, dtype=np.float32)
    y = layer.forward(x)
    _eq(y, ak.pool.avgpool2d_forward(x, *args), "y")
    gy = _randn(rng, *y.shape, dtype=np.float32)
    _eq(layer.backward(gy), ak.pool.avgpool2d_backward(gy, x.shape, *args), "grad_x")


def test_relu_matches_functional():
    rng = np.random.default_rng(5)
    layer = L.ReLU()
    x = _randn(rng, 4, 3, 5)
    _eq(layer.forward(x), ak.nn.relu_forward(x), "y")
    gy = _randn(rng, 4, 3, 5)
    _eq(layer.backward(gy), ak.nn.relu_backward(gy, x), "grad_x")
    assert layer.params() == [] and layer.grads() == []


def test_flatten_matches_reshape():
    rng = np.random.default_rng(6)
    x = _randn(rng, 3, 2, 4, 5)
    layer = L.Flatten()
    y = layer.forward(x)
    _eq(y, x.reshape(3, 40), "y")
    gy = _randn(rng, 3, 40)
    _eq(layer.backward(gy), gy.reshape(x.shape), "grad_x")
    # torch.nn.Flatten(start_dim, end_dim) semantics
    layer = L.Flatten(1, 2)
    assert layer.forward(x).shape == (3, 8, 5)
    assert layer.backward(np.zeros((3, 8, 5))).shape == x.shape


def test_flatten_empty_batch():
    x = np.zeros((0, 2, 3, 3))
    layer = L.Flatten()
    assert layer.forward(x).shape == (0, 18)
    assert layer.backward(np.zeros((0, 18))).shape == x.shape


@pytest.mark.parametrize("p", [0.3, 0.5])
def test_dropout_train_mask_from_seed_and_step(p):
    rng = np.random.default_rng(7)
    seed = 123456789
    layer = L.Dropout(p, seed=seed)
    assert layer.steps == 0 and layer.training
    for k in range(3):
        x = _randn(rng, 6, 50, dtype=np.float32)
        y = layer.forward(x)
        ref, mask = ak.nn.dropout_forward(x, p, seed=seed + k)
        _eq(y, ref, f"y step {k}")
        assert layer.steps == k + 1
        gy = _randn(rng, 6, 50, dtype=np.float32)
        _eq(layer.backward(gy), ak.nn.dropout_backward(gy, mask, p), f"grad_x step {k}")
        assert 0.1 < 1 - mask.mean() < 0.7
    # a second layer with the same seed reproduces the sequence; restoring the counter
    # reproduces a given step
    again = L.Dropout(p, seed=seed)
    x = np.ones((4, 64), np.float32)
    masks = [again.forward(x) != 0 for _ in range(3)]
    assert not np.array_equal(masks[0], masks[1])
    again.load_state_dict({"seed": seed, "steps": 1})
    _eq(again.forward(x) != 0, masks[1], "mask after restoring steps=1")
    assert again.state_dict() == {"seed": seed, "steps": 2}
    # the seed may also be drawn from an rng: same rng seed, same layer
    a = L.Dropout(p, rng=np.random.default_rng(9))
    b = L.Dropout(p, rng=np.random.default_rng(9))
    _eq(a.forward(x), b.forward(x), "rng-drawn seeds")


def test_dropout_eval_and_p0_are_identity():
    rng = np.random.default_rng(8)
    x = _randn(rng, 5, 7)
    layer = L.Dropout(0.5, seed=1).eval()
    assert not layer.training
    y = layer.forward(x)
    _eq(y, x, "eval y")
    gy = _randn(rng, 5, 7)
    _eq(layer.backward(gy), gy, "eval grad_x")
    assert layer.steps == 0  # no mask drawn in eval mode
    layer.train()
    layer.forward(x)
    assert layer.steps == 1
    zero = L.Dropout(0.0, seed=1)
    _eq(zero.forward(x), x, "p=0 y")
    _eq(zero.backward(gy), gy, "p=0 grad")


def _bn_check(layer, x, rng, training):
    rm0, rv0 = layer.running_mean.copy(), layer.running_var.copy()
    rm, rv = rm0.copy(), rv0.copy()
    y = layer.forward(x)
    ref, mean, invstd = ak.norm.batchnorm_forward(
        x, layer.weight, layer.bias, rm, rv, training=training, momentum=layer.momentum, eps=layer.eps)
    _eq(y, ref, "y")
    _eq(layer.running_mean, rm, "running_mean")
    _eq(layer.running_var, rv, "running_var")
    if training:
        assert not np.array_equal(layer.running_mean, rm0) and not np.array_equal(layer.running_var, rv0)
    else:
        _eq(layer.running_mean, rm0, "running_mean unchanged in eval")
        _eq(layer.running_var, rv0, "running_var unchanged in eval")
    gy = _randn(rng, *x.shape, dtype=x.dtype)
    gx = layer.backward(gy)
    rgx, rgw, rgb = ak.norm.batchnorm_backward(gy, x, layer.weight, mean, invstd, training=training)
    _eq(gx, rgx, "grad_x")
    _eq(layer.grads()[0], rgw, "grad_weight")
    _eq(layer.grads()[1], rgb, "grad_bias")


@pytest.mark.parametrize("shape", [(8, 5), (6, 5, 7)], ids=["2d", "3d"])
def test_batchnorm1d_matches_functional(shape):
    rng = np.random.default_rng(10)
    layer = L.BatchNorm1d(5, momentum=0.2, dtype=F64)
    layer.weight[...] = _randn(rng, 5)
    layer.bias[...] = _randn(rng, 5)
    _bn_check(layer, _randn(rng, *shape) * 2 + 1, rng, training=True)
    _bn_check(layer, _randn(rng, *shape) * 2 + 1, rng, training=True)
    layer.eval()
    _bn_check(layer, _randn(rng, *shape), rng, training=False)
    with pytest.raises(ValueError):
        layer.forward(_randn(rng, 2, 5, 3, 3))


@pytest.mark.parametrize("dtype", [np.float32, F64], ids=["float32", "float64"])
def test_batchnorm2d_train_and_eval(dtype):
    rng = np.random.default_rng(11)
    layer = L.BatchNorm2d(3, dtype=dtype)
    assert [id(p) for p in layer.params()] == [id(layer.weight), id(layer.bias)]
    layer.weight[...] = rng.uniform(0.5, 1.5, 3)
    layer.bias[...] = rng.uniform(-1, 1, 3)
    for _ in range(2):
        _bn_check(layer, (_randn(rng, 4, 3, 5, 6) * 3 + 2).astype(dtype), rng, training=True)
    layer.eval()
    _bn_check(layer, _randn(rng, 4, 3, 5, 6, dtype=dtype), rng, training=False)
    # a single value per channel is fine in eval mode
    _bn_check(layer, _randn(rng, 1, 3, 1, 1, dtype=dtype), rng, training=False)
    with pytest.raises(ValueError):
        layer.forward(_randn(rng, 4, 3, dtype=dtype))


def test_batchnorm_without_running_stats_and_affine():
    rng = np.random.default_rng(12)
    layer = L.BatchNorm2d(3, affine=False, track_running_stats=False, dtype=F64)
    assert layer.params() == [] and layer.grads() == [] and layer.state_dict() == {}
    layer.eval()  # no running statistics: batch statistics, as torch
    x = _randn(rng, 4, 3, 2, 2)
    ref, mean, invstd = ak.norm.batchnorm_forward(x, None, None, None, None, training=True)
    _eq(layer.forward(x), ref, "y")
    gy = _randn(rng, *x.shape)
    _eq(layer.backward(gy), ak.norm.batchnorm_backward(gy, x, None, mean, invstd, training=True)[0])


@pytest.mark.parametrize("ns", [6, (3, 6)], ids=["int", "tuple"])
def test_layernorm_matches_functional(ns):
    rng = np.random.default_rng(13)
    layer = L.LayerNorm(ns, eps=1e-4, dtype=F64)
    nshape = (ns,) if isinstance(ns, int) else ns
    assert layer.weight.shape == nshape
    _eq(layer.weight, np.ones(nshape), "weight init")
    _eq(layer.bias, np.zeros(nshape), "bias init")
    layer.weight[...] = _randn(rng, *nshape)
    layer.bias[...] = _randn(rng, *nshape)
    x = _randn(rng, 2, 4, 3, 6)
    y, mean, rstd = ak.norm.layernorm_forward(x, nshape, layer.weight, layer.bias, 1e-4)
    _eq(layer.forward(x), y, "y")
    gy = _randn(rng, *x.shape)
    gx, gw, gb = ak.norm.layernorm_backward(gy, x, nshape, mean, rstd, layer.weight)
    _eq(layer.backward(gy), gx, "grad_x")
    _eq(layer.grads()[0], gw, "grad_weight")
    _eq(layer.grads()[1], gb, "grad_bias")
    plain = L.LayerNorm(ns, elementwise_affine=False, dtype=F64)
    assert plain.params() == []
    _eq(plain.forward(x), ak.norm.layernorm_forward(x, nshape, None, None)[0], "no affine")


# ---- LSTM ------------------------------------------------------------------------------

_LSTM_KINDS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def _lstm_names(layers, dirs, bias=True):
    kinds = _LSTM_KINDS if bias else _LSTM_KINDS[:2]
    return [f"{k}_l{layer}" + ("_reverse" if d else "")
            for layer in range(layers) for d in range(dirs) for k in kinds]


def _lstm_functional(lstm, x, h0, c0, gy, ghn, gcn):
    """The stacked/bidirectional LSTM composed from ak.rnn.lstm_forward/lstm_backward."""
    layers, dirs, hid = lstm.num_layers, lstm.dirs, lstm.hidden_size
    steps, bsz, _ = x.shape
    caches, h_n, c_n, inp = [], [], [], x
    for layer in range(layers):
        y = np.empty((steps, bsz, dirs * hid), x.dtype)
        for d in range(dirs):
            k = layer * dirs + d
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            w = [getattr(lstm, n + sfx) for n in _LSTM_KINDS]
            _, hk, ck, cache = ak.rnn.lstm_forward(inp, h0[k], c0[k], *w, reverse=bool(d),
                                                   out=y[:, :, d * hid:(d + 1) * hid])
            caches.append(cache)
            h_n.append(hk)
            c_n.append(ck)
        inp = y
    out = inp
    grads, gh0, gc0, g = {}, [None] * len(caches), [None] * len(caches), gy
    for layer in reversed(range(layers)):
        gx = None
        for d in range(dirs):
            k = layer * dirs + d
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            gk = ak.rnn.lstm_backward(g[:, :, d * hid:(d + 1) * hid],
                                      None if ghn is None else ghn[k],
                                      None if gcn is None else gcn[k], caches[k])
            for n, v in zip(_LSTM_KINDS, (gk.w_ih, gk.w_hh, gk.b_ih, gk.b_hh)):
                grads[n + sfx] = v
            gh0[k], gc0[k] = gk.h0, gk.c0
            gx = gk.x if gx is None else gx + gk.x
        g = gx
    return out, np.stack(h_n), np.stack(c_n), g, grads, np.stack(gh0), np.stack(gc0)


@pytest.mark.parametrize("dtype", [np.float32, F64], ids=["float32", "float64"])
@pytest.mark.parametrize("with_state", [False, True], ids=["zero_state", "state"])
@pytest.mark.parametrize("layers,bidirectional", [(1, False), (1, True), (2, False), (2, True)])
def test_lstm_matches_functional(layers, bidirectional, with_state, dtype):
    rng = np.random.default_rng(14)
    steps, bsz, n_in, hid = 5, 3, 4, 6
    dirs = 2 if bidirectional else 1
    lstm = L.LSTM(n_in, hid, num_layers=layers, bidirectional=bidirectional, dtype=dtype, rng=rng)
    names = _lstm_names(layers, dirs)
    assert [id(p) for p in lstm.params()] == [id(getattr(lstm, n)) for n in names]
    assert len(lstm.grads()) == len(names)
    for n, p in zip(names, lstm.params()):
        n_in_l = n_in if "_l0" in n else dirs * hid
        expect = {"weight_ih": (4 * hid, n_in_l), "weight_hh": (4 * hid, hid)}.get(n.rsplit("_l", 1)[0], (4 * hid,))
        assert p.shape == expect and p.dtype == dtype, n
    x = _randn(rng, steps, bsz, n_in, dtype=dtype)
    if with_state:
        h0 = _randn(rng, layers * dirs, bsz, hid, dtype=dtype)
        c0 = _randn(rng, layers * dirs, bsz, hid, dtype=dtype)
        state = (h0, c0)
    else:
        h0 = np.zeros((layers * dirs, bsz, hid), dtype)
        c0 = np.zeros_like(h0)
        state = None
    gy = _randn(rng, steps, bsz, dirs * hid, dtype=dtype)
    grad_state = ((_randn(rng, *h0.shape, dtype=dtype), _randn(rng, *h0.shape, dtype=dtype))
                  if with_state else None)
    ghn, gcn = grad_state if with_state else (None, None)
    y_ref, hn_ref, cn_ref, gx_ref, g_ref, gh0_ref, gc0_ref = _lstm_functional(
        lstm, x, h0, c0, gy, ghn, gcn)

    y, st = lstm.forward(x, state) if with_state else lstm.forward(x)
    assert st is lstm.state
    _eq(y, y_ref, "y")
    _eq(lstm.state[0], hn_ref, "h_n")
    _eq(lstm.state[1], cn_ref, "c_n")
    gx = lstm.backward(gy, grad_state) if with_state else lstm.backward(gy)
    _eq(gx, gx_ref, "grad_x")
    for n, g in zip(names, lstm.grads()):
        _eq(g, g_ref[n], n)
    _eq(lstm.grad_state[0], gh0_ref, "grad h0")
    _eq(lstm.grad_state[1], gc0_ref, "grad c0")


def test_lstm_without_bias():
    rng = np.random.default_rng(15)
    lstm = L.LSTM(3, 4, num_layers=2, bias=False, bidirectional=True, dtype=F64, rng=rng)
    names = _lstm_names(2, 2, bias=False)
    assert [id(p) for p in lstm.params()] == [id(getattr(lstm, n)) for n in names]
    assert all(getattr(lstm, f"bias_ih_l{k}") is None for k in range(2))
    x = _randn(rng, 4, 2, 3)
    y, _ = lstm.forward(x)
    gx = lstm.backward(np.ones_like(y))
    assert gx.shape == x.shape and len(lstm.grads()) == 8
    assert set(lstm.state_dict()) == set(names)


def test_lstm_rejects_bad_options():
    with pytest.raises(ValueError, match="dropout"):
        L.LSTM(3, 4, num_layers=2, dropout=1.0)
    with pytest.raises(ValueError, match="merge_mode"):
        L.LSTM(3, 4, bidirectional=True, merge_mode="max")
    with pytest.raises(ValueError, match="hidden_size"):
        L.LSTM(3, 0)
    with pytest.raises(ValueError, match="initial state"):
        L.LSTM(3, 4).forward(np.zeros((2, 1, 3), np.float32), (np.zeros((1, 2, 4)),) * 2)


# ---- Sequential ------------------------------------------------------------------------


def test_sequential_matches_functional():
    rng = np.random.default_rng(16)
    conv = L.Conv2d(2, 4, 3, padding=1, dtype=F64, rng=rng)
    bn = L.BatchNorm2d(4, dtype=F64)
    lin = L.Linear(4 * 3 * 3, 5, dtype=F64, rng=rng)
    model = L.Sequential(conv, bn, L.ReLU(), L.MaxPool2d(2), L.Flatten(), lin)
    assert len(model) == 6 and model[0] is conv and model[5] is lin
    ids = [id(a) for a in (conv.weight, conv.bias, bn.weight, bn.bias, lin.weight, lin.bias)]
    assert _seq_names(model) == ids
    assert len(model.grads()) == 6

    x = _randn(rng, 3, 2, 6, 7)
    rm, rv = bn.running_mean.copy(), bn.running_var.copy()
    a = ak.conv.conv2d_forward(x, conv.weight, conv.bias, 1, 1)
    b, mean, invstd = ak.norm.batchnorm_forward(a, bn.weight, bn.bias, rm, rv, training=True)
    c = ak.nn.relu_forward(b)
    d, idx = ak.pool.maxpool2d_forward(c, 2)
    e = d.reshape(3, -1)
    f = ak.nn.linear_forward(e, lin.weight, lin.bias)
    y = model.forward(x)
    _eq(y, f, "y")
    _eq(bn.running_mean, rm, "running_mean")

    gy = _randn(rng, *y.shape)
    ge, glw, glb = ak.nn.linear_backward(gy, e, lin.weight)
    gd = ge.reshape(d.shape)
    gc = ak.pool.maxpool2d_backward(gd, idx, c.shape)
    gb_ = ak.nn.relu_backward(gc, b)
    ga, gbw, gbb = ak.norm.batchnorm_backward(gb_, a, bn.weight, mean, invstd, training=True)
    gx, gcw, gcb = ak.conv.conv2d_backward(ga, x, conv.weight, 1, 1)
    _eq(model.backward(gy), gx, "grad_x")
    for got, ref, n in zip(model.grads(), (gcw, gcb, gbw, gbb, glw, glb),
                           ("conv.w", "conv.b", "bn.w", "bn.b", "lin.w", "lin.b")):
        _eq(got, ref, n)


def test_train_eval_propagate_through_sequential():
    inner = L.Sequential(L.Dropout(0.5, seed=0), L.BatchNorm1d(3))
    model = L.Sequential(L.Linear(4, 3), inner, L.LSTM(3, 2))
    mods = [model, model[0], inner, inner[0], inner[1], model[2]]
    assert all(m.training for m in mods)
    assert model.eval() is model
    assert not any(m.training for m in mods)
    assert model.train() is model
    assert all(m.training for m in mods)
    model.train(False)
    assert not any(m.training for m in mods)
    # nested names in state_dict follow PyTorch's "i.name" convention
    sd = model.state_dict()
    assert {"0.weight", "0.bias", "1.0.steps", "1.1.weight", "1.1.running_mean",
            "1.1.running_var", "2.weight_ih_l0", "2.bias_hh_l0"} <= set(sd)


# ---------------------------------------------------------------------------------------
# params() are live; default initialization
# ---------------------------------------------------------------------------------------


def test_params_are_live_arrays():
    rng = np.random.default_rng(17)
    model = L.Sequential(L.Conv2d(1, 2, 3, dtype=F64, rng=rng), L.Flatten(),
                         L.Linear(2 * 3 * 3, 3, dtype=F64, rng=rng))
    lstm = L.LSTM(3, 2, bidirectional=True, dtype=F64, rng=rng)
    x = _randn(rng, 2, 1, 5, 5)
    xs = _randn(rng, 4, 2, 3)
    def out(m, inp):
        y = m.forward(inp)
        return y[0] if isinstance(y, tuple) else y

    for m, inp in ((model, x), (lstm, xs)):
        y0 = out(m, inp)
        m.backward(np.ones_like(y0))
        before = [p.copy() for p in m.params()]
        ak.optim.sgd_step(m.params(), m.grads(), step=1, lr=0.1)   # in place on the live arrays
        assert all(not np.array_equal(a, b) for a, b in zip(m.params(), before))
        y1 = out(m, inp)
        assert not np.array_equal(y0, y1)
        # the same arrays, updated in place, are what the layer computes with
        for a, b in zip(m.params(), before):
            a[...] = b
        _eq(out(m, inp), y0, "restored in place")
    # grads() are refreshed by each backward, not accumulated
    y, _ = lstm.forward(xs)
    lstm.backward(np.ones_like(y))
    g1 = [g.copy() for g in lstm.grads()]
    lstm.forward(xs)
    lstm.backward(np.ones_like(y))
    for a, b in zip(lstm.grads(), g1):
        _eq(a, b, "grads not accumulated")


def _check_uniform(arrays, bound):
    v = np.concatenate([np.asarray(a, F64).ravel() for a in arrays])
    assert np.all(np.abs(v) <= bound)
    assert v.max() > 0.97 * bound and v.min() < -0.97 * bound
    # U(-b, b): mean 0, variance b^2/3 (several thousand samples)
    assert abs(v.mean()) < 0.06 * bound
    assert abs(v.var() / (bound ** 2 / 3) - 1) < 0.08


def test_default_init_matches_pytorch_distributions():
    rng = np.random.default_rng(18)
    lin = L.Linear(50, 80, rng=rng)
    assert lin.weight.dtype == np.float32 and lin.training
    _check_uniform([lin.weight], 1 / math.sqrt(50))
    assert np.all(np.abs(lin.bias) <= 1 / math.sqrt(50))
    conv = L.Conv2d(6, 40, (3, 5), groups=2, rng=rng)
    fan_in = 3 * 3 * 5
    assert conv.weight.shape == (40, 3, 3, 5)
    _check_uniform([conv.weight], 1 / math.sqrt(fan_in))
    assert np.all(np.abs(conv.bias) <= 1 / math.sqrt(fan_in))
    lstm = L.LSTM(10, 16, num_layers=2, bidirectional=True, rng=rng)
    _check_uniform(lstm.params(), 1 / math.sqrt(16))
    for p in lstm.params():
        assert np.all(np.abs(p) <= 1 / math.sqrt(16))
    for bn in (L.BatchNorm1d(7), L.BatchNorm2d(7)):
        _eq(bn.weight, np.ones(7, np.float32))
        _eq(bn.bias, np.zeros(7, np.float32))
        _eq(bn.running_mean, np.zeros(7, np.float32))
        _eq(bn.running_var, np.ones(7, np.float32))
    # reproducible from the rng; a float64 layer holds float64 parameters
    a = L.Linear(5, 3, rng=np.random.default_rng(1))
    b = L.Linear(5, 3, rng=np.random.default_rng(1))
    _eq(a.weight, b.weight)
    _eq(a.bias, b.bias)
    assert L.Conv2d(2, 3, 2, dtype=F64).weight.dtype == F64
    assert all(p.dtype == F64 for p in L.LSTM(2, 3, dtype=F64).params())


# ---------------------------------------------------------------------------------------
# against torch.nn
# ---------------------------------------------------------------------------------------


def test_lstm_matches_torch_2layer_bidirectional():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(19)
    steps, bsz, n_in, hid = 6, 3, 4, 5
    ours = L.LSTM(n_in, hid, num_layers=2, bidirectional=True, dtype=F64, rng=rng)
    ref = torch.nn.LSTM(n_in, hid, num_layers=2, bidirectional=True).double()
    named = list(ref.named_parameters())
    assert [n for n, _ in named] == _lstm_names(2, 2)
    assert len(named) == len(ours.params())
    with torch.no_grad():
        for (n, tp), p in zip(named, ours.params()):
            assert tuple(tp.shape) == p.shape, n
            tp.copy_(torch.from_numpy(p))
    x = _randn(rng, steps, bsz, n_in)
    h0, c0 = _randn(rng, 4, bsz, hid), _randn(rng, 4, bsz, hid)
    y, _ = ours.forward(x, (h0, c0))
    tx, th, tc = (torch.from_numpy(a.copy()).requires_grad_() for a in (x, h0, c0))
    ty, (thn, tcn) = ref(tx, (th, tc))
    tol = dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(y, ty.detach().numpy(), **tol)
    np.testing.assert_allclose(ours.state[0], thn.detach().numpy(), **tol)
    np.testing.assert_allclose(ours.state[1], tcn.detach().numpy(), **tol)
    gy, ghn, gcn = _randn(rng, *y.shape), _randn(rng, *h0.shape), _randn(rng, *c0.shape)
    torch.autograd.backward([ty, thn, tcn], [torch.from_numpy(a) for a in (gy, ghn, gcn)])
    gx = ours.backward(gy, (ghn, gcn))
    tol = dict(rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(gx, tx.grad.numpy(), **tol)
    np.testing.assert_allclose(ours.grad_state[0], th.grad.numpy(), **tol)
    np.testing.assert_allclose(ours.grad_state[1], tc.grad.numpy(), **tol)
    for (n, tp), g in zip(named, ours.grads()):
        np.testing.assert_allclose(g, tp.grad.numpy(), err_msg=n, **tol)


def test_sequential_cnn_matches_torch():
    torch = pytest.importorskip("torch")
    tnn = torch.nn
    rng = np.random.default_rng(20)
    ours = L.Sequential(
        L.Conv2d(3, 4, 3, padding=1, dtype=F64, rng=rng), L.BatchNorm2d(4, dtype=F64), L.ReLU(),
        L.MaxPool2d(2), L.Conv2d(4, 6, 3, stride=1, dtype=F64, rng=rng), L.ReLU(),
        L.AvgPool2d(2, ceil_mode=True), L.Flatten(), L.Linear(6 * 1 * 1, 8, dtype=F64, rng=rng),
        L.BatchNorm1d(8, dtype=F64), L.Dropout(0.5, seed=3), L.LayerNorm(8, dtype=F64),
        L.Linear(8, 3, dtype=F64, rng=rng))
    ref = tnn.Sequential(
        tnn.Conv2d(3, 4, 3, padding=1), tnn.BatchNorm2d(4), tnn.ReLU(), tnn.MaxPool2d(2),
        tnn.Conv2d(4, 6, 3), tnn.ReLU(), tnn.AvgPool2d(2, ceil_mode=True), tnn.Flatten(),
        tnn.Linear(6, 8), tnn.BatchNorm1d(8), tnn.Dropout(0.5), tnn.LayerNorm(8),
        tnn.Linear(8, 3)).double()
    named = list(ref.named_parameters())
    assert [tuple(t.shape) for _, t in named] == [p.shape for p in ours.params()]
    # our state_dict keys are torch's (minus num_batches_tracked and dropout's counter)
    torch_keys = {k for k in ref.state_dict() if not k.endswith("num_batches_tracked")}
    assert torch_keys == {k for k in ours.state_dict() if not k.endswith(("steps", "seed"))}
    with torch.no_grad():
        for (_, tp), p in zip(named, ours.params()):
            if p.ndim == 1:  # biases and norm affine parameters away from 1/0
                p[...] = rng.uniform(0.5, 1.5, p.shape)
            tp.copy_(torch.from_numpy(p))
    ours.eval()  # dropout masks differ from torch's: compare in eval, but BN in training
    ref.eval()
    for i in (1, 9):
        ours[i].train()
        ref[i].train()
    x = _randn(rng, 4, 3, 8, 9)
    y = ours.forward(x)
    tx = torch.from_numpy(x.copy()).requires_grad_()
    ty = ref(tx)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-9, atol=1e-11)
    for i in (1, 9):
        np.testing.assert_allclose(ours[i].running_mean, ref[i].running_mean.numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(ours[i].running_var, ref[i].running_var.numpy(), rtol=1e-10, atol=1e-12)
    gy = _randn(rng, *y.shape)
    ty.backward(torch.from_numpy(gy))
    gx = ours.backward(gy)
    np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=1e-8, atol=1e-10)
    for (n, tp), g in zip(named, ours.grads()):
        np.testing.assert_allclose(g, tp.grad.numpy(), rtol=1e-8, atol=1e-10, err_msg=n)
    # eval mode throughout (running statistics)
    ours.eval()
    ref.eval()
    x2 = _randn(rng, 2, 3, 8, 9)
    np.testing.assert_allclose(ours.forward(x2), ref(torch.from_numpy(x2)).detach().numpy(),
                               rtol=1e-9, atol=1e-11)


# ---------------------------------------------------------------------------------------
# finite-difference gradient checks (float64)
# ---------------------------------------------------------------------------------------


def _fd_check(loss_fn, arrays, analytic, rng, n_idx=4, eps=1e-6, rtol=1e-5, atol=1e-7):
    """Central differences of loss_fn() w.r.t. a few random entries of each array
    (perturbed in place) against the analytic gradients."""
    for k, (arr, grad) in enumerate(zip(arrays, analytic)):
        assert grad.shape == arr.shape
        flat = arr.reshape(-1)
        assert np.shares_memory(flat, arr)
        for i in rng.choice(arr.size, size=min(n_idx, arr.size), replace=False):
            old = flat[i]
            flat[i] = old + eps
            lp = loss_fn()
            flat[i] = old - eps
            lm = loss_fn()
            flat[i] = old
            num = (lp - lm) / (2 * eps)
            got = grad.reshape(-1)[i]
            assert abs(num - got) <= rtol * abs(num) + atol, (k, int(i), num, got)


def test_fd_gradcheck_sequential_cnn():
    rng = np.random.default_rng(21)
    model = L.Sequential(
        L.Conv2d(2, 3, 3, padding=1, dtype=F64, rng=rng), L.MaxPool2d(2),
        L.BatchNorm2d(3, dtype=F64), L.ReLU(), L.Flatten(),
        L.Linear(3 * 3 * 3, 4, dtype=F64, rng=rng))
    model[2].weight[...] = rng.uniform(0.5, 1.5, 3)
    model[2].bias[...] = rng.uniform(-0.5, 0.5, 3)
    x = _randn(rng, 5, 2, 6, 7)
    targets = rng.integers(0, 4, 5).astype(np.int64)

    def loss():
        out = model.forward(x)
        return float(ak.nn.softmax_cross_entropy(out, targets)[0])

    out = model.forward(x)
    _, g = ak.nn.softmax_cross_entropy(out, targets)
    gx = model.backward(g)
    grads = [gr.copy() for gr in model.grads()]
    assert len(grads) == 6
    _fd_check(loss, model.params() + [x], grads + [gx], rng, n_idx=5)


def test_fd_gradcheck_lstm_2layer_bidirectional():
    rng = np.random.default_rng(22)
    steps, bsz, n_in, hid = 4, 2, 3, 4
    lstm = L.LSTM(n_in, hid, num_layers=2, bidirectional=True, dtype=F64, rng=rng)
    x = _randn(rng, steps, bsz, n_in)
    h0, c0 = _randn(rng, 4, bsz, hid) * 0.5, _randn(rng, 4, bsz, hid) * 0.5
    ry = _randn(rng, steps, bsz, 2 * hid)
    rh, rc = _randn(rng, 4, bsz, hid), _randn(rng, 4, bsz, hid)

    def loss():
        y, (h_n, c_n) = lstm.forward(x, (h0, c0))
        return float(np.sum(y * ry) + np.sum(h_n * rh) + np.sum(c_n * rc))

    lstm.forward(x, (h0, c0))
    gx = lstm.backward(ry, (rh, rc))
    grads = [g.copy() for g in lstm.grads()] + [gx, lstm.grad_state[0].copy(), lstm.grad_state[1].copy()]
    assert len(lstm.params()) == 16
    _fd_check(loss, lstm.params() + [x, h0, c0], grads, rng, n_idx=3)


# ---------------------------------------------------------------------------------------
# state save/restore, training
# ---------------------------------------------------------------------------------------


def _small_model(rng, dropout_seed=5):
    return L.Sequential(
        L.Conv2d(1, 3, 3, padding=1, rng=rng), L.BatchNorm2d(3), L.ReLU(), L.MaxPool2d(2),
        L.Flatten(), L.Linear(3 * 4 * 4, 8, rng=rng), L.BatchNorm1d(8), L.ReLU(),
        L.Dropout(0.3, seed=dropout_seed), L.Linear(8, 2, rng=rng))


def _data(rng, n=32):
    """Two classes of 8x8 images: a bright top half or a bright bottom half, plus noise."""
    y = rng.integers(0, 2, n).astype(np.int64)
    x = rng.standard_normal((n, 1, 8, 8)).astype(np.float32) * 0.5
    x[y == 0, :, :4] += 1.0
    x[y == 1, :, 4:] += 1.0
    return x, y


def _train(model, opt, x, y, steps):
    losses = []
    for _ in range(steps):
        out = model.forward(x)
        loss, g = ak.nn.softmax_cross_entropy(out, y)
        model.backward(g)
        opt.step(model.grads())
        losses.append(float(loss))
    return losses


def _snapshot(model, opt):
    return [p.copy() for p in model.params()], model.state_dict(), opt.state_dict()


def _assert_same(a, b):
    for p, q in zip(a[0], b[0]):
        _eq(p, q, "param")
    assert a[1].keys() == b[1].keys()
    for k in a[1]:
        if isinstance(a[1][k], np.ndarray):
            _eq(a[1][k], b[1][k], k)
        else:
            assert a[1][k] == b[1][k], k
    assert a[2]["steps"] == b[2]["steps"]
    for name in a[2]["state"]:
        for p, q in zip(a[2]["state"][name], b[2]["state"][name]):
            _eq(p, q, name)


def test_state_dict_roundtrip_resumes_bit_identically():
    rng = np.random.default_rng(23)
    x, y = _data(rng)
    model = _small_model(np.random.default_rng(0))
    opt = ak.optim.Adam(model.params(), lr=1e-2)
    _train(model, opt, x, y, 3)
    msd, osd = model.state_dict(), opt.state_dict()
    assert msd["8.steps"] == 3 and osd["steps"] == 3
    # state_dict holds copies, not the live arrays
    assert all(not np.shares_memory(v, p) for v in msd.values() if isinstance(v, np.ndarray)
               for p in model.params())
    k = 3
    losses_a = _train(model, opt, x, y, k)
    end_a = _snapshot(model, opt)

    # restore into the same objects
    model.load_state_dict(msd)
    opt.load_state_dict(osd)
    assert model[8].steps == 3
    losses_b = _train(model, opt, x, y, k)
    assert losses_a == losses_b
    _assert_same(_snapshot(model, opt), end_a)

    # restore into freshly built objects of the same architecture (different initial weights)
    fresh = _small_model(np.random.default_rng(99))
    assert not np.array_equal(fresh.params()[0], model.params()[0])
    fresh_opt = ak.optim.Adam(fresh.params(), lr=0.5)
    fresh.load_state_dict(msd)
    fresh_opt.load_state_dict(osd)
    assert fresh_opt.lr == 1e-2
    losses_c = _train(fresh, fresh_opt, x, y, k)
    assert losses_a == losses_c
    _assert_same(_snapshot(fresh, fresh_opt), end_a)

    # the saved dicts were not modified by the runs after saving
    assert msd["8.steps"] == 3 and osd["steps"] == 3


def test_state_dict_restores_eval_outputs():
    rng = np.random.default_rng(24)
    x, y = _data(rng, 16)
    model = _small_model(np.random.default_rng(1))
    opt = ak.optim.Adam(model.params(), lr=1e-2)
    _train(model, opt, x, y, 2)
    sd = model.state_dict()
    ref = model.eval().forward(x)
    other = _small_model(np.random.default_rng(2)).eval()
    other.load_state_dict(sd)
    _eq(other.forward(x), ref, "eval output after load_state_dict")


def test_load_state_dict_rejects_wrong_keys_and_shapes():
    model = L.Sequential(L.Linear(3, 4, rng=np.random.default_rng(0)), L.BatchNorm1d(4))
    sd = model.state_dict()
    before = [p.copy() for p in model.params()]
    missing = dict(sd)
    del missing["1.running_var"]
    with pytest.raises(ValueError):
        model.load_state_dict(missing)
    with pytest.raises(ValueError):
        model.load_state_dict(dict(sd, extra=np.zeros(1)))
    renamed = {("weight" if k == "0.weight" else k): v for k, v in sd.items()}
    with pytest.raises(ValueError):
        model.load_state_dict(renamed)
    bad = dict(sd)
    bad["0.weight"] = np.zeros((4, 4), np.float32)
    bad["1.running_mean"] = np.full(4, 7.0, np.float32)
    with pytest.raises(ValueError):
        model.load_state_dict(bad)
    # a rejected dict changed nothing (shapes are checked before anything is written)
    for p, q in zip(model.params(), before):
        _eq(p, q)
    _eq(model[1].running_mean, sd["1.running_mean"])
    lstm = L.LSTM(3, 4)
    with pytest.raises(ValueError):
        lstm.load_state_dict(L.LSTM(3, 5).state_dict())
    with pytest.raises(ValueError):
        lstm.load_state_dict(L.LSTM(3, 4, bidirectional=True).state_dict())


def test_training_run_loss_decreases():
    rng = np.random.default_rng(25)
    x, y = _data(rng, 64)
    model = _small_model(np.random.default_rng(3))
    opt = ak.optim.Adam(model.params(), lr=2e-2)
    losses = _train(model, opt, x, y, 25)
    assert all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:3]), losses
    model.eval()
    acc = float(np.mean(np.argmax(model.forward(x), axis=1) == y))
    assert acc >= 0.9, acc


def test_lstm_training_run_loss_decreases():
    """A bidirectional LSTM + Linear classifier: is the sum of a sequence positive?"""
    rng = np.random.default_rng(26)
    steps, bsz = 6, 32
    x = rng.standard_normal((steps, bsz, 1))
    y = (x.sum(axis=(0, 2)) > 0).astype(np.int64)
    lstm = L.LSTM(1, 8, num_layers=2, bidirectional=True, dtype=F64, rng=rng)
    head = L.Linear(16, 2, dtype=F64, rng=rng)
    opt = ak.optim.Adam(lstm.params() + head.params(), lr=2e-2)
    losses = []
    for _ in range(30):
        out, _ = lstm.forward(x)
        logits = head.forward(out[-1])
        loss, g = ak.nn.softmax_cross_entropy(logits, y)
        gl = np.zeros_like(out)
        gl[-1] = head.backward(g)
        lstm.backward(gl)
        opt.step(lstm.grads() + head.grads())
        losses.append(float(loss))
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:3]), losses


# ---------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------

_FRESH = {
    "Conv2d": lambda: (L.Conv2d(1, 2, 3), np.zeros((1, 2, 2, 2), np.float32)),
    "MaxPool2d": lambda: (L.MaxPool2d(2), np.zeros((1, 1, 2, 2), np.float32)),
    "AvgPool2d": lambda: (L.AvgPool2d(2), np.zeros((1, 1, 2, 2), np.float32)),
    "Linear": lambda: (L.Linear(3, 2), np.zeros((1, 2), np.float32)),
    "ReLU": lambda: (L.ReLU(), np.zeros((1, 2), np.float32)),
    "BatchNorm1d": lambda: (L.BatchNorm1d(2), np.zeros((3, 2), np.float32)),
    "BatchNorm2d": lambda: (L.BatchNorm2d(2), np.zeros((3, 2, 2, 2), np.float32)),
    "LayerNorm": lambda: (L.LayerNorm(2), np.zeros((3, 2), np.float32)),
    "LSTM": lambda: (L.LSTM(2, 3), np.zeros((2, 1, 3), np.float32)),
    "Flatten": lambda: (L.Flatten(), np.zeros((1, 4), np.float32)),
    "Sequential": lambda: (L.Sequential(L.Linear(3, 2), L.ReLU()), np.zeros((1, 2), np.float32)),
}


@pytest.mark.parametrize(
    "name",
    list(_FRESH) + ["Dropout"],
)
def test_backward_before_forward_raises(name):
    if name == "Dropout":
        layer, gy = L.Dropout(0.5, seed=0), np.zeros((1, 2), np.float32)
    else:
        layer, gy = _FRESH[name]()
    with pytest.raises(RuntimeError):
        layer.backward(gy)
