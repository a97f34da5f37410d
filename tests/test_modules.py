"""ak.layers as a PyTorch user expects them: sub-layers and parameters assigned as
attributes register themselves, layers used several times per step sum their gradients
(or raise), repr and summary, checkpoints of model + optimizer + schedule (np.savez, no
pickle), and the layers of the sequence models (Conv1d, Tanh, Sigmoid, Embedding, GRU,
RNN, AdditiveAttention, LSTM's batch_first, dropout and merge modes) against torch.nn
and the functional kernels."""

from __future__ import annotations

import numpy as np
import pytest

import adlkernels as ak
from adlkernels import layers as L

F32, F64 = np.float32, np.float64


def _randn(rng, *shape, dtype=F64):
    return rng.standard_normal(shape).astype(dtype)


def _torch():
    return pytest.importorskip("torch")


def _t(a):
    torch = _torch()
    return torch.from_numpy(np.ascontiguousarray(a))


def _copy_params(ours, ref):
    """Copies our parameters into a torch module, checking names and shapes match."""
    torch = _torch()
    named = dict(ref.named_parameters())
    mine = ours.named_params()
    assert [n for n, _ in mine] == list(named)
    with torch.no_grad():
        for n, p in mine:
            assert tuple(named[n].shape) == p.shape, n
            named[n].copy_(_t(p))


# ---- registration ------------------------------------------------------------------------


class Net(L.Module):
    def __init__(self, rng):
        super().__init__()
        self.embed = L.Embedding(7, 3, rng=rng, dtype=F64)
        self.blocks = L.ModuleList([L.Linear(3, 4, rng=rng, dtype=F64), L.Tanh()])
        self.scale = L.Parameter(np.ones(4))
        self.head = L.Linear(4, 2, rng=rng, dtype=F64)


def test_attributes_register_sub_layers_and_parameters():
    net = Net(np.random.default_rng(0))
    names = [n for n, _ in net.named_params()]
    assert names[0] == "scale"  # own parameters first, then children in assignment order
    assert names[1].startswith("embed.") and names[-2:] == ["head.weight", "head.bias"]
    assert "blocks.0.weight" in names and "blocks.0.bias" in names
    assert len(net.params()) == len(net.grads()) == len(names)
    assert net.scale is net.params()[0] and isinstance(net.scale, np.ndarray)
    assert net.grads()[0].shape == (4,) and not net.grads()[0].any()
    assert set(net.state_dict()) == set(names)
    assert [type(m).__name__ for m in net.modules()][:3] == ["Net", "Embedding", "ModuleList"]
    net.eval()
    assert not any(m.training for m in net.modules())
    # replacing a sub-layer by something else unregisters it
    net.head = None
    assert not any(n.startswith("head.") for n, _ in net.named_params())


def test_unregistrable_assignments_raise():
    class Forgot(L.Module):
        def __init__(self):
            self.lin = L.Linear(2, 2)

    with pytest.raises(AttributeError, match="super"):
        Forgot()

    class Listed(L.Module):
        def __init__(self):
            super().__init__()
            self.layers_ = [L.Linear(2, 2), L.ReLU()]

    with pytest.raises(TypeError, match="ModuleList"):
        Listed()
    with pytest.raises(TypeError):
        L.Parameter([1.0, 2.0])
    with pytest.raises(TypeError):
        L.Sequential(L.ReLU(), "relu")


def test_children_override_still_works():
    class Old(L.Module):
        def __init__(self):
            super().__init__()
            object.__setattr__(self, "_kids", [L.Linear(2, 3), L.Linear(3, 1)])

        def children(self):
            return self._kids

    old = Old()
    assert len(old.params()) == 4 and set(old.state_dict()) == {"0.weight", "0.bias", "1.weight", "1.bias"}


def test_repr_and_summary():
    rng = np.random.default_rng(1)
    model = L.Sequential(L.Conv1d(2, 4, 3, padding=1, rng=rng), L.ReLU(), L.Flatten(),
                         L.Linear(4 * 5, 3, bias=False, rng=rng))
    text = repr(model)
    assert text.splitlines()[0] == "Sequential("
    assert "(0): Conv1d(2, 4, kernel_size=(3,), stride=(1,), padding=(1,))" in text
    assert "(3): Linear(in_features=20, out_features=3, bias=False)" in text
    assert repr(L.GRU(3, 5, num_layers=2, bidirectional=True)) == "GRU(3, 5, num_layers=2, bidirectional=True)"
    assert repr(L.ReLU()) == "ReLU()"
    s = model.summary()
    total = sum(p.size for p in model.params())
    assert f"total parameters: {total:,}" in s and "Conv1d" in s and "4x2x3" in s


# ---- a layer used several times -----------------------------------------------------------


class TwoUses(L.Module):
    """y = lin(tanh(lin(x))): one Linear applied twice."""

    def __init__(self, rng):
        super().__init__()
        self.lin = L.Linear(3, 3, rng=rng, dtype=F64)
        self.act = L.Tanh()

    def forward(self, x):
        return self.lin(self.act(self.lin(x)))

    def backward(self, g):
        return self.lin.backward(self.act.backward(self.lin.backward(g)))


def test_gradients_accumulate_over_uses_and_match_torch():
    torch = _torch()
    rng = np.random.default_rng(2)
    m = TwoUses(rng)
    x, gy = _randn(rng, 4, 3), _randn(rng, 4, 3)
    for _ in range(2):  # a second step must not add to the first step's gradients
        m.forward(x)
        gx = m.backward(gy)
    w, b = (_t(p).clone().requires_grad_() for p in m.params())
    tx = _t(x).clone().requires_grad_()
    ty = torch.nn.functional.linear(torch.tanh(torch.nn.functional.linear(tx, w, b)), w, b)
    ty.backward(_t(gy))
    np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(m.grads()[0], w.grad.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(m.grads()[1], b.grad.numpy(), rtol=1e-12, atol=1e-14)
    # more backward calls than uses
    m.forward(x)
    m.lin.backward(gy)
    m.lin.backward(gy)
    with pytest.raises(RuntimeError, match="more times"):
        m.lin.backward(gy)


def test_single_use_may_be_differentiated_again_and_eval_keeps_one_cache():
    rng = np.random.default_rng(3)
    lin = L.Linear(3, 2, rng=rng, dtype=F64)
    x = _randn(rng, 5, 3)
    lin.forward(x)
    lin.backward(np.ones((5, 2)))
    g1 = lin.grads()[0].copy()
    lin.backward(np.ones((5, 2)))  # overwrites: the same gradient again
    np.testing.assert_array_equal(lin.grads()[0], g1)
    lin.eval()
    for _ in range(50):
        lin.forward(x)
    assert len(lin._caches) == 1


# ---- checkpoints --------------------------------------------------------------------------


def _train_steps(model, opt, sched, x, y, n):
    for _ in range(n):
        out = model.forward(x)
        loss, g = ak.softmax_cross_entropy(out, y)
        model.backward(g)
        opt.step(model.grads())
        sched.step()
    return loss


def _cnn(seed):
    rng = np.random.default_rng(seed)
    return L.Sequential(L.Conv1d(1, 4, 3, rng=rng), L.ReLU(), L.Flatten(), L.Dropout(0.3, seed=5),
                        L.Linear(4 * 6, 3, rng=rng), L.BatchNorm1d(3))


def test_save_load_resumes_bit_identically(tmp_path):
    rng = np.random.default_rng(4)
    x, y = _randn(rng, 8, 1, 8, dtype=F32), rng.integers(0, 3, 8)
    a = _cnn(0)
    opt_a = ak.optim.Adam(a.params(), lr=1e-2)
    sched_a = ak.optim.StepLR(opt_a, 2, gamma=0.5)
    _train_steps(a, opt_a, sched_a, x, y, 3)
    path = tmp_path / "ckpt.npz"
    L.save(path, a, opt_a, sched_a)
    with np.load(path, allow_pickle=False) as f:  # readable without pickle
        assert "model/0.weight" in f.files and "__meta__" in f.files

    b = _cnn(1)  # other weights, fresh optimizer and schedule
    opt_b = ak.optim.Adam(b.params(), lr=1e-2)
    sched_b = ak.optim.StepLR(opt_b, 2, gamma=0.5)
    L.load(path, b, opt_b, sched_b)
    assert opt_b.lr == opt_a.lr and sched_b.last_epoch == sched_a.last_epoch
    la = _train_steps(a, opt_a, sched_a, x, y, 3)
    lb = _train_steps(b, opt_b, sched_b, x, y, 3)
    assert la == lb
    for p, q in zip(a.params(), b.params()):
        np.testing.assert_array_equal(p, q)
    np.testing.assert_array_equal(a[5].running_var, b[5].running_var)


def test_load_checks_everything_before_changing_anything(tmp_path):
    a = _cnn(0)
    opt = ak.optim.Adam(a.params())
    path = tmp_path / "m.npz"
    L.save(path, a)  # model only
    b = _cnn(1)
    before = b.state_dict()
    with pytest.raises(ValueError, match="no optimizer"):
        L.load(path, b, ak.optim.Adam(b.params()))
    opt_path = tmp_path / "sgd.npz"
    L.save(opt_path, a, ak.optim.SGD(a.params(), lr=0.1))
    with pytest.raises(ValueError, match="SGD"):
        L.load(opt_path, b, opt)
    small = L.Sequential(L.Linear(2, 2))
    with pytest.raises(ValueError, match="keys differ"):
        L.load(path, small)
    for k, v in b.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    np.savez(tmp_path / "other.npz", x=np.zeros(2))
    with pytest.raises(ValueError, match="checkpoint"):
        L.load(tmp_path / "other.npz", b)


# ---- simple layers --------------------------------------------------------------------------


@pytest.mark.parametrize("args", [dict(), dict(stride=2, padding=1), dict(dilation=2, groups=2)])
def test_conv1d_matches_torch(args):
    torch = _torch()
    rng = np.random.default_rng(5)
    ours = L.Conv1d(4, 6, 3, dtype=F64, rng=rng, **args)
    ref = torch.nn.Conv1d(4, 6, 3, **args).double()
    _copy_params(ours, ref)
    x = _randn(rng, 2, 4, 11)
    tx = _t(x).clone().requires_grad_()
    ty = ref(tx)
    y = ours.forward(x)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    gy = _randn(rng, *y.shape)
    ty.backward(_t(gy))
    np.testing.assert_allclose(ours.backward(gy), tx.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ours.grads()[0], ref.weight.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ours.grads()[1], ref.bias.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_tanh_sigmoid_layers():
    rng = np.random.default_rng(6)
    x, g = _randn(rng, 3, 4), _randn(rng, 3, 4)
    for layer, f, df in ((L.Tanh(), np.tanh, lambda y: 1 - y * y),
                         (L.Sigmoid(), lambda v: 1 / (1 + np.exp(-v)), lambda y: y * (1 - y))):
        y = layer.forward(x)
        np.testing.assert_allclose(y, f(x), rtol=1e-14)
        np.testing.assert_allclose(layer.backward(g), g * df(f(x)), rtol=1e-13, atol=1e-15)


# ---- recurrent layers ---------------------------------------------------------------------------


def _torch_rnn(kind, *args, **kwargs):
    torch = _torch()
    return {"LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU, "RNN": torch.nn.RNN}[kind](*args, **kwargs).double()


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("num_layers,bidirectional,batch_first", [(1, False, False), (2, True, False),
                                                                  (2, True, True), (3, False, True)])
def test_recurrent_layers_match_torch(kind, num_layers, bidirectional, batch_first):
    torch = _torch()
    rng = np.random.default_rng(7)
    steps, bsz, n_in, hid = 5, 3, 4, 6
    kw = dict(num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first)
    extra = dict(nonlinearity="relu") if kind == "RNN" and num_layers == 2 else {}
    ours = getattr(L, kind)(n_in, hid, dtype=F64, rng=rng, **kw, **extra)
    ref = _torch_rnn(kind, n_in, hid, **kw, **extra)
    _copy_params(ours, ref)
    dirs = 2 if bidirectional else 1
    x = _randn(rng, *((bsz, steps) if batch_first else (steps, bsz)), n_in)
    h0 = _randn(rng, num_layers * dirs, bsz, hid)
    c0 = _randn(rng, num_layers * dirs, bsz, hid)
    state = (h0, c0) if kind == "LSTM" else h0
    y, st = ours.forward(x, state)
    tx = _t(x).clone().requires_grad_()
    tstate = tuple(_t(s).clone().requires_grad_() for s in (state if kind == "LSTM" else (state,)))
    ty, tst = ref(tx, tstate if kind == "LSTM" else tstate[0])
    tol = dict(rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(y, ty.detach().numpy(), **tol)
    finals = st if kind == "LSTM" else (st,)
    tfinals = tst if kind == "LSTM" else (tst,)
    for a, b in zip(finals, tfinals):
        np.testing.assert_allclose(a, b.detach().numpy(), **tol)
    gy = _randn(rng, *y.shape)
    gfin = tuple(_randn(rng, *h0.shape) for _ in finals)
    torch.autograd.backward([ty, *tfinals], [_t(gy), *map(_t, gfin)])
    gx = ours.backward(gy, gfin if kind == "LSTM" else gfin[0])
    np.testing.assert_allclose(gx, tx.grad.numpy(), **tol)
    gstate = ours.grad_state if kind == "LSTM" else (ours.grad_state,)
    for a, b in zip(gstate, tstate):
        np.testing.assert_allclose(a, b.grad.numpy(), **tol)
    for (n, _), g in zip(ours.named_params(), ours.grads()):
        np.testing.assert_allclose(g, dict(ref.named_parameters())[n].grad.numpy(), err_msg=n, **tol)


def _fd(loss, arrays, grads, rng, n_idx=4, eps=1e-6):
    for a, g in zip(arrays, grads):
        for _ in range(n_idx):
            i = tuple(int(rng.integers(0, s)) for s in a.shape)
            old = a[i]
            a[i] = old + eps
            up = loss()
            a[i] = old - eps
            down = loss()
            a[i] = old
            np.testing.assert_allclose((up - down) / (2 * eps), g[i], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("merge_mode", ["sum", "ave", "mul"])
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_merge_modes_finite_differences(kind, merge_mode):
    rng = np.random.default_rng(8)
    layer = getattr(L, kind)(3, 4, num_layers=2, bidirectional=True, merge_mode=merge_mode,
                             dtype=F64, rng=rng)
    assert layer.weight_ih_l1.shape[1] == 4  # the next layer reads the merged (T, B, H)
    x = _randn(rng, 5, 2, 3)
    y, _ = layer.forward(x)
    assert y.shape == (5, 2, 4)
    r = _randn(rng, *y.shape)

    def loss():
        return float(np.sum(layer.forward(x)[0] * r))

    layer.forward(x)
    gx = layer.backward(r)
    _fd(loss, layer.params() + [x], [g.copy() for g in layer.grads()] + [gx], rng, n_idx=2)


def test_merge_sum_is_the_sum_of_the_directions():
    rng = np.random.default_rng(9)
    cat = L.GRU(3, 4, bidirectional=True, dtype=F64, rng=np.random.default_rng(1))
    add = L.GRU(3, 4, bidirectional=True, merge_mode="sum", dtype=F64, rng=np.random.default_rng(1))
    x = _randn(rng, 6, 2, 3)
    yc, _ = cat.forward(x)
    ys, _ = add.forward(x)
    np.testing.assert_array_equal(ys, yc[..., :4] + yc[..., 4:])


def test_inter_layer_dropout_is_reproducible_and_off_in_eval():
    rng = np.random.default_rng(10)
    a = L.LSTM(3, 4, num_layers=2, dropout=0.5, dtype=F64, rng=np.random.default_rng(2))
    b = L.LSTM(3, 4, num_layers=2, dropout=0.5, dtype=F64, rng=np.random.default_rng(2))
    x = _randn(rng, 5, 2, 3)
    ya, yb = a.forward(x)[0], b.forward(x)[0]
    np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(a.forward(x)[0], ya)  # the next step draws a new mask
    assert set(a.state_dict()) >= {"seed", "steps"}
    a.eval()
    nodrop = L.LSTM(3, 4, num_layers=2, dtype=F64, rng=np.random.default_rng(2))
    nodrop.load_state_dict({k: v for k, v in a.state_dict().items() if k not in ("seed", "steps")})
    np.testing.assert_array_equal(a.forward(x)[0], nodrop.forward(x)[0])

    def loss():
        a.steps = 7
        return float(np.sum(a.forward(x)[0] ** 2))

    a.train()
    a.steps = 7
    y, _ = a.forward(x)
    gx = a.backward(2 * y)
    _fd(loss, [x], [gx], rng, n_idx=4)


def test_embedding_layer_matches_torch():
    torch = _torch()
    rng = np.random.default_rng(11)
    ours = L.Embedding(10, 4, padding_idx=0, dtype=F64, rng=rng)
    assert not ours.weight[0].any()
    ref = torch.nn.Embedding(10, 4, padding_idx=0).double()
    _copy_params(ours, ref)
    idx = rng.integers(0, 10, (3, 5))
    y = ours.forward(idx)
    ty = ref(_t(idx))
    np.testing.assert_array_equal(y, ty.detach().numpy())
    gy = _randn(rng, *y.shape)
    ty.backward(_t(gy))
    assert ours.backward(gy) is None
    np.testing.assert_allclose(ours.grads()[0], ref.weight.grad.numpy(), rtol=1e-13, atol=1e-15)
    assert repr(ours) == "Embedding(10, 4, padding_idx=0)"


def test_attention_layer_matches_functional():
    rng = np.random.default_rng(12)
    att = L.AdditiveAttention(3, 4, 5, dtype=F64, rng=rng)
    q, k = _randn(rng, 2, 3), _randn(rng, 6, 2, 4)
    mask = np.ones((2, 6), bool)
    mask[1, 4:] = False
    ctx, w = att.forward(q, k, mask)
    ctx_ref, w_ref, cache = ak.rnn.additive_attention_forward(q, k, att.w_query, att.w_key, att.v, mask)
    np.testing.assert_array_equal(ctx, ctx_ref)
    np.testing.assert_array_equal(w, w_ref)
    gc, gw = _randn(rng, *ctx.shape), _randn(rng, *w.shape)
    gq, gk = att.backward(gc, gw)
    ref = ak.rnn.additive_attention_backward(gc, gw, cache)
    np.testing.assert_array_equal(gq, ref.query)
    np.testing.assert_array_equal(gk, ref.keys)
    for g, r in zip(att.grads(), (ref.w_query, ref.w_key, ref.v)):
        np.testing.assert_array_equal(g, r)
