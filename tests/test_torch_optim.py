"""adlkernels.torch.optim (docs/api/torch.md) against torch.optim.

Every optimizer runs in lockstep with torch.optim's class of the same name (its default
single-tensor implementation on CPU) on identical parameters and gradients, and
parameters, state (keys, order, dtypes, values) and param groups are compared: many
hyper-parameter combinations in float32 and float64, several param groups, mixed
dtypes in one group, params without gradients, state_dict round trips in both
directions, LR schedulers, closures, autograd version counters, and the argument checks
(torch's own ValueErrors, and clear errors for what the fused kernels cannot do).
"""

from __future__ import annotations

import copy
import inspect

import pytest

torch = pytest.importorskip("torch")

import adlkernels.optim as ako  # noqa: E402
from adlkernels.torch import optim as akopt  # noqa: E402

NAMES = ("SGD", "Adagrad", "RMSprop", "Adam", "AdamW")
AK_FN = {"SGD": "sgd_step", "Adagrad": "adagrad_step", "RMSprop": "rmsprop_step",
         "Adam": "adam_step", "AdamW": "adam_step"}
SHAPES = [(4, 3), (7,), (1,), (2, 3, 2)]
TOL = {torch.float64: 1e-12, torch.float32: 1e-6}


def classes(name):
    return getattr(akopt, name), getattr(torch.optim, name)


def make_params(dtype, copies=2, seed=0, shapes=SHAPES):
    """`copies` lists of identical leaf parameters of the given shapes."""
    g = torch.Generator().manual_seed(seed)
    base = [torch.randn(s, generator=g, dtype=dtype) for s in shapes]
    return [[torch.nn.Parameter(t.clone()) for t in base] for _ in range(copies)]


def set_grads(step, *param_lists, skip=()):
    """The same fresh gradient (seeded by step) on the i-th param of every list."""
    g = torch.Generator().manual_seed(1000 + step)
    for i, ps in enumerate(zip(*param_lists)):
        grad = torch.randn(ps[0].shape, generator=g, dtype=ps[0].dtype) * (0.5 + i)
        if i in skip:
            continue
        for p in ps:
            p.grad = grad.clone()


def close(actual, expected, tol):
    torch.testing.assert_close(actual, expected, rtol=tol,
                               atol=tol * float(expected.abs().max()) if expected.numel() else 0)


def assert_same(ours, ref, ours_params, ref_params, tol=1e-12):
    """Parameters and state of two optimizers are equal (values within tol; keys, their
    order, dtypes, devices, shapes and step counts exactly)."""
    for i, (p, q) in enumerate(zip(ours_params, ref_params)):
        close(p.detach(), q.detach(), tol)
        assert (p in ours.state) == (q in ref.state), f"state of param {i}"
        if q not in ref.state:
            continue
        sa, sb = ours.state[p], ref.state[q]
        assert list(sa) == list(sb), f"state keys of param {i}"
        for key in sb:
            if key == "step":
                assert sa[key].dtype == sb[key].dtype and sa[key].device == sb[key].device
                assert sa[key].shape == sb[key].shape == ()
                assert sa[key].item() == sb[key].item()
            else:
                assert sa[key].stride() == sb[key].stride()
                close(sa[key], sb[key], tol)
    groups = lambda o: [{k: v for k, v in g.items() if k != "params"} for g in o.param_groups]
    assert groups(ours) == groups(ref)


def run(opts, params, steps, skip=()):
    for s in steps:
        set_grads(s, *params, skip=skip)
        for o in opts:
            o.step()


# ----------------------------------------------------------------------------------
# results equal torch.optim's
# ----------------------------------------------------------------------------------

CONFIGS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.5, maximize=True)),
    ("SGD", dict(lr=0.1, weight_decay=0.2, maximize=True)),
    ("Adagrad", dict()),
    ("Adagrad", dict(lr=0.1, lr_decay=0.05)),
    ("Adagrad", dict(lr=0.05, initial_accumulator_value=0.3, weight_decay=0.1)),
    ("Adagrad", dict(lr=0.1, eps=1e-6, maximize=True, lr_decay=0.01)),
    ("RMSprop", dict()),
    ("RMSprop", dict(lr=0.01, centered=True)),
    ("RMSprop", dict(lr=0.01, momentum=0.9)),
    ("RMSprop", dict(lr=0.005, momentum=0.5, centered=True, weight_decay=0.1, alpha=0.9)),
    ("RMSprop", dict(maximize=True, eps=1e-4)),
    ("Adam", dict()),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("Adam", dict(lr=0.01, weight_decay=0.1)),
    ("Adam", dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6, maximize=True, amsgrad=True,
                  weight_decay=0.05)),
    ("Adam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
    ("AdamW", dict()),
    ("AdamW", dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
    ("AdamW", dict(lr=0.01, maximize=True, betas=(0.5, 0.9))),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name,kw", CONFIGS,
                         ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'defaults'}"
                              for n, kw in CONFIGS])
def test_matches_torch(name, kw, dtype):
    cls, tcls = classes(name)
    ours_p, ref_p = make_params(dtype)
    start = [p.detach().clone() for p in ours_p]
    ours, ref = cls(ours_p, **kw), tcls(ref_p, **kw)
    run([ours, ref], [ours_p, ref_p], range(10))
    assert_same(ours, ref, ours_p, ref_p, TOL[dtype])
    assert all(not torch.equal(p, s) for p, s in zip(ours_p, start))


def test_signatures_and_defaults_match_torch():
    for name in NAMES:
        cls, tcls = classes(name)
        sig = lambda c: [(p.name, p.kind, p.default)
                         for p in inspect.signature(c.__init__).parameters.values()]
        assert sig(cls) == sig(tcls), name
        a, b = make_params(torch.float32, shapes=[(2,)])
        assert cls(a).defaults == tcls(b).defaults, name
        assert issubclass(cls, torch.optim.Optimizer)
        assert "fused" in cls.__doc__ and "foreach" in cls.__doc__


GROUPS = {
    "SGD": (dict(lr=0.01, momentum=0.5),
            [dict(lr=0.1, momentum=0.9, nesterov=True), dict(weight_decay=0.1, dampening=0.2)]),
    "Adagrad": (dict(lr=0.05, initial_accumulator_value=0.1),
                [dict(lr_decay=0.1), dict(lr=0.2, initial_accumulator_value=5.0)]),
    "RMSprop": (dict(lr=0.01), [dict(centered=True, momentum=0.3), dict(lr=0.001, alpha=0.5)]),
    "Adam": (dict(lr=0.01),
             [dict(betas=(0.8, 0.9), amsgrad=True), dict(lr=0.05, weight_decay=0.1)]),
    "AdamW": (dict(lr=0.01), [dict(lr=0.03), dict(weight_decay=0.5, maximize=True)]),
}


@pytest.mark.parametrize("name", NAMES)
def test_param_groups(name):
    """Per-group hyper-parameters (Adagrad: a group's initial_accumulator_value is
    ignored, torch uses the constructor's), and a group added after some steps."""
    cls, tcls = classes(name)
    defaults, (g1, g2) = GROUPS[name]
    ours_p, ref_p = make_params(torch.float64, shapes=SHAPES + [(3, 2)])
    ours = cls([dict(g1, params=ours_p[:2]), dict(g2, params=ours_p[2:4])], **defaults)
    ref = tcls([dict(g1, params=ref_p[:2]), dict(g2, params=ref_p[2:4])], **defaults)
    run([ours, ref], [ours_p, ref_p], range(4), skip=(4,))
    ours.add_param_group(dict(params=ours_p[4:], lr=0.07))
    ref.add_param_group(dict(params=ref_p[4:], lr=0.07))
    run([ours, ref], [ours_p, ref_p], range(4, 8))
    assert_same(ours, ref, ours_p, ref_p)


@pytest.mark.parametrize("name", NAMES)
def test_mixed_dtypes_one_call_per_dtype(name, monkeypatch):
    """One kernel call per group, one per dtype when a group mixes float32 and float64."""
    cls, tcls = classes(name)
    calls = []
    fn = getattr(ako, AK_FN[name])
    monkeypatch.setattr(ako, AK_FN[name], lambda *a, **k: (calls.append(len(a[0])), fn(*a, **k)))
    kw = dict(lr=0.05, momentum=0.9) if name in ("SGD", "RMSprop") else {}
    a32, r32 = make_params(torch.float32, shapes=SHAPES + [(3, 2)])
    a64, r64 = make_params(torch.float64, seed=1, shapes=[(2, 2), (3,)])
    ours_p = a32[:4] + [a64[0], a32[4], a64[1]]
    ref_p = r32[:4] + [r64[0], r32[4], r64[1]]
    ours = cls([dict(params=ours_p[:4]), dict(params=ours_p[4:])], **kw)
    ref = tcls([dict(params=ref_p[:4]), dict(params=ref_p[4:])], **kw)
    assert calls == [0, 0]  # the constructor checks each group's hyper-parameters
    calls.clear()
    run([ours, ref], [ours_p, ref_p], range(3))
    assert calls == [4, 2, 1] * 3
    assert_same(ours, ref, ours_p, ref_p, TOL[torch.float32])


@pytest.mark.parametrize("name", NAMES)
def test_params_without_grad_are_skipped(name):
    """Param 1 never has a gradient (no state, unchanged; Adagrad creates state for every
    param in its constructor, as torch); param 3 gets one from step 3 on, so its step
    count lags the others' (two kernel calls that step) — all as torch.optim."""
    cls, tcls = classes(name)
    kw = dict(momentum=0.9) if name in ("SGD", "RMSprop") else {}
    ours_p, ref_p = make_params(torch.float64)
    p1 = ours_p[1].detach().clone()
    ours, ref = cls(ours_p, lr=0.05, **kw), tcls(ref_p, lr=0.05, **kw)
    run([ours, ref], [ours_p, ref_p], range(3), skip=(1, 3))
    assert (ours_p[3] in ours.state) == (name == "Adagrad")
    run([ours, ref], [ours_p, ref_p], range(3, 7), skip=(1,))
    assert torch.equal(ours_p[1].detach(), p1) and ours_p[1].grad is None
    assert (ours_p[1] in ours.state) == (name == "Adagrad")
    assert_same(ours, ref, ours_p, ref_p)


# ----------------------------------------------------------------------------------
# state_dict, schedulers, zero_grad, closure
# ----------------------------------------------------------------------------------

ROUND_TRIP = [
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.1)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.2)),
    ("RMSprop", dict(momentum=0.5, centered=True)),
    ("Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.01)),
    ("AdamW", dict(lr=0.01, betas=(0.7, 0.95))),
]


@pytest.mark.parametrize("name,kw", ROUND_TRIP, ids=[n for n, _ in ROUND_TRIP])
def test_state_dict_round_trip(name, kw):
    """Ours saved mid-training loads into a fresh ours and into torch.optim's class;
    torch's loads into ours; all continue equal. The fresh optimizers are built with the
    defaults, so the hyper-parameters too must come from the state_dict."""
    cls, tcls = classes(name)
    ours_p, ref_p = make_params(torch.float64)
    ours, ref = cls(ours_p, **kw), tcls(ref_p, **kw)
    run([ours, ref], [ours_p, ref_p], range(5), skip=(2,))
    sd, rsd = ours.state_dict(), ref.state_dict()
    assert sd["param_groups"] == rsd["param_groups"]
    assert list(sd["state"]) == list(rsd["state"])
    for i in rsd["state"]:
        assert {k: (v.dtype, v.shape) for k, v in sd["state"][i].items()} == {
            k: (v.dtype, v.shape) for k, v in rsd["state"][i].items()}

    fresh = [[torch.nn.Parameter(p.detach().clone()) for p in ours_p] for _ in range(3)]
    ours2, ref2, ours3 = cls(fresh[0]), tcls(fresh[1]), cls(fresh[2])
    ours2.load_state_dict(copy.deepcopy(sd))
    ref2.load_state_dict(copy.deepcopy(sd))
    ours3.load_state_dict(copy.deepcopy(rsd))
    run([ours, ref, ours2, ref2, ours3], [ours_p, ref_p, *fresh], range(5, 10))
    assert_same(ours2, ref2, fresh[0], fresh[1])
    assert_same(ours3, ref, fresh[2], ref_p)
    assert_same(ours, ref, ours_p, ref_p)


def test_adamw_load_keeps_decoupled_weight_decay():
    """As torch.optim.AdamW: a loaded Adam state_dict leaves weight decay decoupled."""
    ours_p, ref_p, src_p = make_params(torch.float64, copies=3)
    sd = torch.optim.Adam(src_p, lr=0.01, weight_decay=0.2).state_dict()
    ours, ref = akopt.AdamW(ours_p), torch.optim.AdamW(ref_p)
    ours.load_state_dict(copy.deepcopy(sd))
    ref.load_state_dict(copy.deepcopy(sd))
    assert ours.param_groups[0]["decoupled_weight_decay"] is True
    assert ours.param_groups[0]["weight_decay"] == 0.2
    run([ours, ref], [ours_p, ref_p], range(3))
    assert_same(ours, ref, ours_p, ref_p)


def test_lr_scheduler():
    """torch's StepLR drives our Adam's lr (read from the group at every step)."""
    ours_p, ref_p = make_params(torch.float64)
    ours, ref = akopt.Adam(ours_p, lr=0.1), torch.optim.Adam(ref_p, lr=0.1)
    scheds = [torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.5) for o in (ours, ref)]
    for s in range(7):
        set_grads(s, ours_p, ref_p)
        for o, sch in zip((ours, ref), scheds):
            o.step()
            sch.step()
    assert ours.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**3)
    assert scheds[0].get_last_lr() == scheds[1].get_last_lr()
    assert_same(ours, ref, ours_p, ref_p)
    # and a group's lr is read at each step: lr 0 leaves the params unchanged
    ours.param_groups[0]["lr"] = 0.0
    before = [p.detach().clone() for p in ours_p]
    set_grads(9, ours_p)
    ours.step()
    assert all(torch.equal(p, b) for p, b in zip(ours_p, before))
    assert ours.state[ours_p[0]]["step"].item() == 8


def test_zero_grad():
    (ps,) = make_params(torch.float32, copies=1)
    opt = akopt.SGD(ps, lr=0.1, momentum=0.9)
    set_grads(0, ps)
    opt.step()
    opt.zero_grad(set_to_none=False)
    assert all(p.grad is not None and not p.grad.any() for p in ps)
    opt.zero_grad()
    assert all(p.grad is None for p in ps)


@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_closure(name):
    """step(closure) evaluates the closure with gradients enabled (even when step is
    called under no_grad) and returns its loss; training matches torch.optim's."""
    cls, tcls = classes(name)
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(16, 5, generator=g, dtype=torch.float64), torch.randn(16, 2, generator=g,
                                                                             dtype=torch.float64)
    models = [torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
              .double() for _ in range(2)]
    models[1].load_state_dict(models[0].state_dict())
    ours = cls(models[0].parameters(), lr=0.05, momentum=0.9) if name == "SGD" else cls(
        models[0].parameters(), lr=0.05)
    ref = tcls(models[1].parameters(), lr=0.05, momentum=0.9) if name == "SGD" else tcls(
        models[1].parameters(), lr=0.05)
    losses = {0: [], 1: []}

    def closure(i, opt):
        def f():
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(models[i](x), y)
            loss.backward()
            losses[i].append(loss)
            return loss
        return f

    for _ in range(6):
        with torch.no_grad():
            out = ours.step(closure(0, ours))
        assert out is losses[0][-1]
        assert ref.step(closure(1, ref)) is losses[1][-1]
    assert [v.item() for v in losses[0]] == pytest.approx([v.item() for v in losses[1]], rel=1e-12)
    assert losses[0][-1] < losses[0][0]
    assert_same(ours, ref, list(models[0].parameters()), list(models[1].parameters()))


def test_step_bumps_autograd_version():
    """The in-place update is visible to autograd, as torch.optim's: a graph that saved a
    parameter cannot be backpropagated after a step."""
    for cls in (akopt.Adam, torch.optim.Adam):
        (ps,) = make_params(torch.float64, copies=1)
        opt = cls(ps)
        loss = (ps[0] * ps[0]).sum()
        v = ps[0]._version
        set_grads(0, ps)
        opt.step()
        assert ps[0]._version > v
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            loss.backward()


def test_step_dtype_follows_default_dtype():
    """'step' is a 0-d CPU float tensor of torch's scalar dtype (float64 when the default
    dtype is float64)."""
    old = torch.get_default_dtype()
    try:
        for default in (torch.float32, torch.float64):
            torch.set_default_dtype(default)
            for name in ("Adagrad", "RMSprop", "Adam"):
                cls, tcls = classes(name)
                ours_p, ref_p = make_params(torch.float32)
                ours, ref = cls(ours_p), tcls(ref_p)
                run([ours, ref], [ours_p, ref_p], range(2))
                assert ours.state[ours_p[0]]["step"].dtype == default
                assert_same(ours, ref, ours_p, ref_p, TOL[torch.float32])
    finally:
        torch.set_default_dtype(old)


@pytest.mark.parametrize("name,kw", [("SGD", dict(foreach=True, momentum=0.9)),
                                     ("Adagrad", dict(foreach=False)),
                                     ("Adam", dict(fused=True)),
                                     ("AdamW", dict(foreach=True))])
def test_foreach_and_fused_accepted(name, kw):
    """foreach/fused are stored in the groups and otherwise ignored: results equal
    torch.optim's default implementation."""
    cls, tcls = classes(name)
    ours_p, ref_p = make_params(torch.float64)
    ours = cls(ours_p, **kw)
    ref = tcls(ref_p, **{k: v for k, v in kw.items() if k not in ("foreach", "fused")})
    run([ours, ref], [ours_p, ref_p], range(4))
    for k in ("foreach", "fused"):
        if k in kw:
            assert ours.param_groups[0][k] == kw[k]
            ref.param_groups[0][k] = kw[k]
    assert_same(ours, ref, ours_p, ref_p)


def test_noncontiguous_grad():
    """Gradients of any strides are read (the kernel copies them); params must be contiguous."""
    ours_p, ref_p = make_params(torch.float64, shapes=[(4, 3), (5, 2)])
    ours, ref = akopt.Adam(ours_p, lr=0.01), torch.optim.Adam(ref_p, lr=0.01)
    for s in range(3):
        g = torch.Generator().manual_seed(s)
        for p, q in zip(ours_p, ref_p):
            grad = torch.randn(tuple(reversed(p.shape)), generator=g, dtype=p.dtype).t()
            assert not grad.is_contiguous()
            p.grad, q.grad = grad, grad.clone()
        ours.step()
        ref.step()
    assert_same(ours, ref, ours_p, ref_p)


# ----------------------------------------------------------------------------------
# argument checks
# ----------------------------------------------------------------------------------

BAD = [
    ("SGD", dict(lr=-0.1), "Invalid learning rate"),
    ("SGD", dict(momentum=-0.5), "Invalid momentum value"),
    ("SGD", dict(weight_decay=-1.0), "Invalid weight_decay value"),
    ("SGD", dict(nesterov=True), "Nesterov momentum requires a momentum and zero dampening"),
    ("SGD", dict(nesterov=True, momentum=0.9, dampening=0.1), "Nesterov momentum requires"),
    ("Adagrad", dict(lr=-1.0), "Invalid learning rate"),
    ("Adagrad", dict(lr_decay=-0.1), "Invalid lr_decay value"),
    ("Adagrad", dict(weight_decay=-0.1), "Invalid weight_decay value"),
    ("Adagrad", dict(initial_accumulator_value=-1.0), "Invalid initial_accumulator_value"),
    ("Adagrad", dict(eps=-1e-10), "Invalid epsilon value"),
    ("RMSprop", dict(lr=-0.01), "Invalid learning rate"),
    ("RMSprop", dict(eps=-1.0), "Invalid epsilon value"),
    ("RMSprop", dict(momentum=-0.1), "Invalid momentum value"),
    ("RMSprop", dict(weight_decay=-0.1), "Invalid weight_decay value"),
    ("RMSprop", dict(alpha=-0.5), "Invalid alpha value"),
    ("Adam", dict(lr=-1e-3), "Invalid learning rate"),
    ("Adam", dict(eps=-1e-8), "Invalid epsilon value"),
    ("Adam", dict(betas=(1.0, 0.999)), "Invalid beta parameter at index 0"),
    ("Adam", dict(betas=(-0.1, 0.999)), "Invalid beta parameter at index 0"),
    ("Adam", dict(betas=(0.9, 1.0)), "Invalid beta parameter at index 1"),
    ("Adam", dict(weight_decay=-0.01), "Invalid weight_decay value"),
    ("Adam", dict(betas=(0, 0.999)), "betas must be either both floats or both Tensors"),
    ("AdamW", dict(lr=-1.0), "Invalid learning rate"),
    ("AdamW", dict(betas=(0.9, 1.5)), "Invalid beta parameter at index 1"),
    ("AdamW", dict(weight_decay=-0.01), "Invalid weight_decay value"),
]


@pytest.mark.parametrize("name,kw,match", BAD, ids=[f"{n}-{list(k)[0]}" for n, k, _ in BAD])
def test_invalid_hyper_parameters_as_torch(name, kw, match):
    for cls in classes(name):
        (ps,) = make_params(torch.float32, copies=1)
        with pytest.raises(ValueError, match=match):
            cls(ps, **kw)


UNSUPPORTED = (
    [(n, dict(differentiable=True), ValueError, "differentiable=True is not supported")
     for n in NAMES]
    + [(n, dict(capturable=True), ValueError, "capturable=True is not supported")
       for n in ("RMSprop", "Adam", "AdamW")]
    + [(n, dict(lr=torch.tensor(0.01)), TypeError, "lr as a Tensor is not supported")
       for n in NAMES]
    + [("Adam", dict(betas=(torch.tensor(0.9), torch.tensor(0.99))), TypeError,
        r"betas\[0\] as a Tensor"),
       ("SGD", dict(weight_decay=torch.tensor(0.1)), TypeError, "weight_decay as a Tensor")]
)


@pytest.mark.parametrize("name,kw,exc,match", UNSUPPORTED,
                         ids=[f"{n}-{list(k)[0]}" for n, k, _, _ in UNSUPPORTED])
def test_unsupported_arguments(name, kw, exc, match):
    cls, tcls = classes(name)
    (ps,) = make_params(torch.float32, copies=1)
    tcls(ps, **kw)  # torch accepts them
    with pytest.raises(exc, match=match):
        cls(ps, **kw)


def test_group_checks():
    """A group's own hyper-parameters are checked when it is added (and it is not added);
    a Tensor lr set later is refused by step, which then changes nothing."""
    (ps,) = make_params(torch.float32, copies=1)
    opt = akopt.SGD(ps[:2], lr=0.1)
    for bad in (dict(lr=-1.0), dict(lr=float("nan")), dict(momentum=0.0, nesterov=True)):
        with pytest.raises(ValueError, match="sgd_step"):
            opt.add_param_group(dict(params=ps[2:], **bad))
        assert len(opt.param_groups) == 1
    with pytest.raises(TypeError, match="lr as a Tensor"):
        opt.add_param_group(dict(params=ps[2:], lr=torch.tensor(0.1)))
    opt.param_groups[0]["lr"] = torch.tensor(0.1)
    set_grads(0, ps)
    before = [p.detach().clone() for p in ps]
    with pytest.raises(TypeError, match="lr as a Tensor"):
        opt.step()
    assert all(torch.equal(p, b) for p, b in zip(ps, before))


@pytest.mark.parametrize("name", NAMES)
def test_unsupported_tensors(name):
    """Sparse gradients, complex or half parameters and non-contiguous parameters raise
    before anything is updated."""
    cls, _ = classes(name)
    w = torch.nn.Parameter(torch.randn(4, 3))
    w.grad = torch.randn(4, 3).to_sparse()
    with pytest.raises(RuntimeError, match=f"{name} does not support sparse gradients"):
        cls([w]).step()
    for dtype, match in ((torch.complex64, "complex parameters are not supported"),
                         (torch.float16, "dtype torch.float16 is not supported")):
        z = torch.nn.Parameter(torch.randn(3, dtype=dtype))
        z.grad = torch.ones_like(z)
        with pytest.raises(TypeError, match=match):
            cls([z]).step()
    ok = torch.nn.Parameter(torch.randn(5))
    t = torch.nn.Parameter(torch.randn(3, 4).t())
    ok.grad, t.grad = torch.ones_like(ok), torch.ones_like(t)
    before = ok.detach().clone()
    with pytest.raises(ValueError, match="is not contiguous"):
        cls([ok, t], lr=0.1).step()
    assert torch.equal(ok.detach(), before)


def test_other_devices_raise():
    """Only CPU (and CUDA) tensors: a meta-device parameter raises clearly."""
    w = torch.nn.Parameter(torch.empty(3, device="meta"))
    w.grad = torch.empty(3, device="meta")
    with pytest.raises(RuntimeError, match="tensors on meta are not supported"):
        akopt.SGD([w], lr=0.1).step()
