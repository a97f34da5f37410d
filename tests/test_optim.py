"""Optimizer family (docs/api/optim.md) against the float64 references in reference_optim.py.

Every step function runs several consecutive steps on lists of mixed sizes (0-d, empty,
one element, 2-D, and tensors larger than one internal chunk) for every hyper-parameter
path, in float32 and float64, and is compared after each step with the references
written from torch.optim's update equations. Optional cross-checks run the default
single-tensor torch.optim implementations (foreach=False) on copies. Then: bitwise
equality for 1, 2 and 3 threads, clip_grad_norm, argument validation (every failing call
must leave every array bitwise unchanged), the stateful optimizers and the schedules.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import adlkernels as ak
from helpers import _shape_text, names
from reference import assert_close, tolerance
from reference_optim import (
    adagrad_ref,
    adam_ref,
    clip_grad_norm_ref,
    exponential_lr_ref,
    grad_norm_ref,
    polynomial_lr_ref,
    rmsprop_ref,
    sgd_ref,
    step_lr_ref,
)



def randn(rng, shape, dtype=np.float64, scale=1.0):
    """Standard normal values as an ndarray (0-d included) of dtype."""
    return np.array(rng.standard_normal(shape) * scale, dtype=dtype)


# ----------------------------------------------------------------------------------
# the four step functions, described uniformly
# ----------------------------------------------------------------------------------

STEP_FNS = {
    "sgd": lambda *a, **k: ak.sgd_step(*a, **k),
    "adagrad": lambda *a, **k: ak.adagrad_step(*a, **k),
    "rmsprop": lambda *a, **k: ak.rmsprop_step(*a, **k),
    "adam": lambda *a, **k: ak.adam_step(*a, **k),
}
REFS = {"sgd": sgd_ref, "adagrad": adagrad_ref, "rmsprop": rmsprop_ref, "adam": adam_ref}
# the state lists each reference returns after the params, in order
REF_STATES = {
    "sgd": ("momentum_buffers",),
    "adagrad": ("state_sums",),
    "rmsprop": ("square_avgs", "momentum_buffers", "grad_avgs"),
    "adam": ("exp_avgs", "exp_avg_sqs", "max_exp_avg_sqs"),
}
TORCH_STATE = {
    "momentum_buffers": "momentum_buffer", "state_sums": "sum", "square_avgs": "square_avg",
    "grad_avgs": "grad_avg", "exp_avgs": "exp_avg", "exp_avg_sqs": "exp_avg_sq",
    "max_exp_avg_sqs": "max_exp_avg_sq",
}


def needed_states(name, hyper):
    """The state lists a call with these hyper-parameters needs."""
    if name == "sgd":
        return ("momentum_buffers",) if hyper.get("momentum", 0.0) != 0 else ()
    if name == "adagrad":
        return ("state_sums",)
    if name == "rmsprop":
        return (("square_avgs",) + (("momentum_buffers",) if hyper.get("momentum", 0.0) > 0 else ())
                + (("grad_avgs",) if hyper.get("centered", False) else ()))
    return ("exp_avgs", "exp_avg_sqs") + (("max_exp_avg_sqs",) if hyper.get("amsgrad") else ())


def call_step(name, params, grads, states, step, hyper):
    return STEP_FNS[name](params, grads, step=step, **states, **hyper)


def ref_step(name, params, grads, states, step, hyper):
    """(new float64 params, {state name: new float64 list}) from the reference."""
    out = REFS[name](params, grads, step=step, **states, **hyper)
    new_states = {k: v for k, v in zip(REF_STATES[name], out[1:]) if v is not None}
    assert set(new_states) == set(states), (set(new_states), set(states))
    return out[0], new_states


def zero_states(name, hyper, params):
    return {k: [np.zeros_like(p) for p in params] for k in needed_states(name, hyper)}


def random_states(name, hyper, params, rng):
    """Arbitrary but valid state (as after some steps): sums and squares positive,
    square_avg >= grad_avg^2 for the centered variant."""
    states = {}
    for k in needed_states(name, hyper):
        lst = []
        for p in params:
            if k in ("momentum_buffers", "exp_avgs"):
                a = rng.standard_normal(p.shape)
            elif k == "grad_avgs":
                a = 0.3 * rng.standard_normal(p.shape)
            else:
                a = rng.uniform(0.05, 2.0, p.shape)
            lst.append(np.array(a, dtype=p.dtype))
        states[k] = lst
    if "grad_avgs" in states:
        states["square_avgs"] = [np.array(ga.astype(np.float64) ** 2 + sq, dtype=sq.dtype)
                                 for ga, sq in zip(states["grad_avgs"], states["square_avgs"])]
    return states


def copy_list(lst):
    return [a.copy() for a in lst]


def copy_states(states):
    return {k: copy_list(v) for k, v in states.items()}


def as_f64(lst):
    """float64 copies (never views of the arrays a kernel will update)."""
    return [np.array(a, dtype=np.float64, copy=True) for a in lst]


def same_bits(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def assert_lists_bitwise(got, want, what):
    assert len(got) == len(want), what
    for i, (g, w) in enumerate(zip(got, want)):
        assert same_bits(g, w), f"{what}[{i}] differs bitwise"


# (optimizer, hyper-parameters): every hyper-parameter path
CASES = [
    ("sgd", dict(lr=0.1)),
    ("sgd", dict(lr=0.1, weight_decay=0.1)),
    ("sgd", dict(lr=0.1, maximize=True)),
    ("sgd", dict(lr=0.1, momentum=0.9)),
    ("sgd", dict(lr=0.05, momentum=0.9, dampening=0.3)),
    ("sgd", dict(lr=0.05, momentum=0.8, nesterov=True)),
    ("sgd", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.05, maximize=True)),
    ("sgd", dict(lr=0.1, momentum=0.5, dampening=0.5, weight_decay=0.02, maximize=True)),
    ("adagrad", dict()),
    ("adagrad", dict(lr=0.1, lr_decay=0.05)),
    ("adagrad", dict(lr=0.1, weight_decay=0.1, eps=1e-3, maximize=True)),
    ("adagrad", dict(lr=0.05, lr_decay=0.5, weight_decay=0.01)),
    ("rmsprop", dict()),
    ("rmsprop", dict(lr=0.01, alpha=0.9, eps=1e-3)),
    ("rmsprop", dict(weight_decay=0.1, maximize=True)),
    ("rmsprop", dict(centered=True)),
    ("rmsprop", dict(momentum=0.9)),
    ("rmsprop", dict(centered=True, momentum=0.8, weight_decay=0.1, alpha=0.95)),
    ("rmsprop", dict(centered=True, maximize=True, weight_decay=0.05, eps=1e-4)),
    ("adam", dict()),
    ("adam", dict(lr=0.01, beta1=0.8, beta2=0.99, eps=1e-6)),
    ("adam", dict(lr=0.01, amsgrad=True)),
    ("adam", dict(lr=0.01, beta2=0.9, amsgrad=True, maximize=True)),
    ("adam", dict(lr=0.01, weight_decay=0.1)),
    ("adam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
    ("adam", dict(lr=0.01, weight_decay=0.05, decoupled_weight_decay=True, amsgrad=True,
                  maximize=True, eps=1e-3)),
    ("adam", dict(lr=0.02, beta1=0.0, beta2=0.0, maximize=True)),
]


def case_id(case):
    name, hyper = case
    return name + "-" + ("-".join(f"{k}={v}" for k, v in hyper.items()) or "defaults")


# 0-d, empty, one element, small 2-D, larger than one 32768-element chunk, 2-D big
SHAPES = [(), (0,), (1,), (3, 5), (1000,), (70000,), (300, 301)]
# gradient scale per step: the small step makes v decrease, so amsgrad's max matters
GRAD_SCALES = (1.0, 0.02, 1.5, 0.3)


# ----------------------------------------------------------------------------------
# names
# ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", ["sgd_step", "adagrad_step", "rmsprop_step", "adam_step",
                                "clip_grad_norm"])
def test_names_importable(fn):
    assert getattr(ak, fn) is getattr(ak.optim, fn)
    assert fn in ak.__all__


def test_classes_in_submodule():
    for cls in ("SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "StepLR", "ExponentialLR",
                "PolynomialLR"):
        assert isinstance(getattr(ak.optim, cls), type), cls


# ----------------------------------------------------------------------------------
# step functions against the references
# ----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_steps_vs_reference(case, dtype, rng):
    """4 consecutive steps with fresh gradients on a list of mixed sizes: params and every
    state array match the float64 reference after each step; grads are not modified."""
    name, hyper = case
    params = [randn(rng, s, dtype) for s in SHAPES]
    states = zero_states(name, hyper, params)
    r_params, r_states = as_f64(params), {k: as_f64(v) for k, v in states.items()}
    for step, scale in enumerate(GRAD_SCALES, start=1):
        grads = [randn(rng, s, dtype, scale) for s in SHAPES]
        grads_before = copy_list(grads)
        assert call_step(name, params, grads, states, step, hyper) is None
        r_params, r_states = ref_step(name, r_params, grads, r_states, step, hyper)
        assert_lists_bitwise(grads, grads_before, "grads (read only)")
        for i, (p, r) in enumerate(zip(params, r_params)):
            assert_close(p, r, dtype, what=f"{name} step {step} params[{i}] {p.shape}")
        for k in states:
            for i, (s, r) in enumerate(zip(states[k], r_states[k])):
                assert_close(s, r, dtype, what=f"{name} step {step} {k}[{i}] {s.shape}")


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_step_from_arbitrary_state(case, dtype, rng):
    """A step in the middle of training (step 7, non-zero state): the state is used as
    given, and the bias corrections / lr decay use the step count."""
    name, hyper = case
    shapes = [(4, 3), (1,), (), (37,)]
    params = [randn(rng, s, dtype) for s in shapes]
    grads = [randn(rng, s, dtype) for s in shapes]
    states = random_states(name, hyper, params, rng)
    r_params, r_states = ref_step(name, params, grads, states, 7, hyper)
    call_step(name, params, grads, states, 7, hyper)
    for i, (p, r) in enumerate(zip(params, r_params)):
        assert_close(p, r, dtype, what=f"params[{i}]")
    for k in states:
        for i, (s, r) in enumerate(zip(states[k], r_states[k])):
            assert_close(s, r, dtype, what=f"{k}[{i}]")


def test_sgd_first_step_ignores_buffer_contents(dtype, rng):
    """On step 1 the momentum buffer becomes the gradient (PyTorch's clone), whatever the
    buffer held; on step 2 the same buffer is used."""
    shapes = [(5,), (2, 3)]
    params = [randn(rng, s, dtype) for s in shapes]
    grads = [randn(rng, s, dtype) for s in shapes]
    hyper = dict(lr=0.1, momentum=0.9, dampening=0.25, weight_decay=0.1)
    bufs = [randn(rng, s, dtype) * 100 for s in shapes]
    r_p, r_s = ref_step("sgd", params, grads, {"momentum_buffers": bufs}, 1, hyper)
    ak.sgd_step(params, grads, bufs, step=1, **hyper)
    for p, r in zip(params, r_p):
        assert_close(p, r, dtype, what="params")
    for b, r in zip(bufs, r_s["momentum_buffers"]):
        assert_close(b, r, dtype, what="momentum_buffers")
    # step 2 uses the buffer: buf = momentum * buf + (1 - dampening) * g
    grads = [randn(rng, s, dtype) for s in shapes]
    r_p, r_s = ref_step("sgd", params, grads, {"momentum_buffers": bufs}, 2, hyper)
    ak.sgd_step(params, grads, bufs, step=2, **hyper)
    for p, r in zip(params, r_p):
        assert_close(p, r, dtype, what="params (step 2)")
    for b, r in zip(bufs, r_s["momentum_buffers"]):
        assert_close(b, r, dtype, what="momentum_buffers (step 2)")


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_single_arrays_not_lists(name, dtype, rng):
    """One array per argument works and equals the one-element-list call bitwise."""
    hyper = dict(lr=0.1, momentum=0.9) if name == "sgd" else dict(lr=0.01, amsgrad=True)
    p = randn(rng, (6, 7), dtype)
    states = zero_states(name, hyper, [p])
    p_list, states_list = [p.copy()], copy_states(states)
    for step in (1, 2, 3):
        g = randn(rng, (6, 7), dtype)
        call_step(name, p, g, {k: v[0] for k, v in states.items()}, step, hyper)
        call_step(name, p_list, [g], states_list, step, hyper)
        assert same_bits(p, p_list[0])
        for k in states:
            assert same_bits(states[k][0], states_list[k][0]), k


def test_single_arrays_adagrad_rmsprop(rng):
    p, g = randn(rng, (3, 4)), randn(rng, (3, 4))
    s = np.zeros_like(p)
    r_p, r_s = ref_step("adagrad", [p], [g], {"state_sums": [s]}, 1, dict(lr=0.1))
    ak.adagrad_step(p, g, s, step=1, lr=0.1)
    assert_close(p, r_p[0], np.float64)
    assert_close(s, r_s["state_sums"][0], np.float64)
    p2 = randn(rng, (5,))
    sq, buf, ga = np.zeros(5), np.zeros(5), np.zeros(5)
    g2 = randn(rng, (5,))
    hyper = dict(momentum=0.5, centered=True)
    st = {"square_avgs": [sq], "momentum_buffers": [buf], "grad_avgs": [ga]}
    r_p, r_s = ref_step("rmsprop", [p2], [g2], st, 1, hyper)
    ak.rmsprop_step(p2, g2, sq, step=1, momentum=0.5, momentum_buffers=buf, centered=True,
                    grad_avgs=ga)
    assert_close(p2, r_p[0], np.float64)
    assert_close(ga, r_s["grad_avgs"][0], np.float64)


def test_empty_lists_are_a_no_op():
    assert ak.sgd_step([], [], step=1, lr=0.1) is None
    ak.sgd_step([], [], [], step=3, lr=0.1, momentum=0.9, nesterov=True)
    ak.adagrad_step([], [], [], step=1)
    ak.rmsprop_step([], [], [], step=1, momentum=0.9, momentum_buffers=[], centered=True,
                    grad_avgs=[])
    ak.adam_step([], [], [], [], step=2, amsgrad=True, max_exp_avg_sqs=[])
    ak.adam_step((), (), (), (), step=1)


@pytest.mark.parametrize("name", ["sgd", "adagrad", "rmsprop", "adam"])
def test_all_empty_and_tiny_tensors(name, dtype, rng):
    """Lists of only empty and 1-element tensors (the 'many small tensors' edge)."""
    hyper = {"sgd": dict(lr=0.1, momentum=0.9), "adagrad": dict(lr_decay=0.1),
             "rmsprop": dict(centered=True, momentum=0.3), "adam": dict(amsgrad=True)}[name]
    shapes = [(0,), (1,), (), (0, 3), (1, 1), (2, 0)] * 3
    params = [randn(rng, s, dtype) for s in shapes]
    states = zero_states(name, hyper, params)
    r_p, r_s = as_f64(params), {k: as_f64(v) for k, v in states.items()}
    for step in (1, 2):
        grads = [randn(rng, s, dtype) for s in shapes]
        call_step(name, params, grads, states, step, hyper)
        r_p, r_s = ref_step(name, r_p, grads, r_s, step, hyper)
    for i, (p, r) in enumerate(zip(params, r_p)):
        assert_close(p, r, dtype, what=f"params[{i}]")


def test_amsgrad_case_is_exercised(rng):
    """Sanity of the test data: with GRAD_SCALES the running max differs from v, so the
    amsgrad cases above check something amsgrad-specific."""
    hyper = dict(lr=0.01, amsgrad=True)
    params = [randn(rng, (1000,))]
    st = zero_states("adam", hyper, params)
    r_p, r_s = as_f64(params), st
    for step, scale in enumerate(GRAD_SCALES, start=1):
        r_p, r_s = ref_step("adam", r_p, [randn(rng, (1000,)) * scale], r_s, step, hyper)
    assert (r_s["max_exp_avg_sqs"][0] > r_s["exp_avg_sqs"][0]).mean() > 0.05


@pytest.mark.parametrize("name", ["sgd", "adam", "rmsprop", "adagrad"])
def test_non_contiguous_grads(name, dtype, rng):
    """Gradients of any strides are read correctly (same bits as contiguous copies)."""
    hyper = {"sgd": dict(lr=0.1, momentum=0.9, weight_decay=0.1), "adam": dict(amsgrad=True),
             "rmsprop": dict(centered=True, momentum=0.5), "adagrad": dict(lr_decay=0.1)}[name]
    shapes = [(30, 40), (50,), (7, 6), ()]
    params = [randn(rng, s, dtype) for s in shapes]
    states = zero_states(name, hyper, params)
    params2, states2 = copy_list(params), copy_states(states)
    for step in (1, 2):
        grads = [randn(rng, (40, 30), dtype).T, randn(rng, (100,), dtype)[::2],
                 randn(rng, (7, 12), dtype)[:, ::-2], np.asarray(randn(rng, (3,), dtype)[1])]
        grads[3] = np.array(grads[3])
        assert not grads[0].flags.c_contiguous and not grads[1].flags.c_contiguous
        assert not grads[2].flags.c_contiguous
        call_step(name, params, grads, states, step, hyper)
        r_p, _ = ref_step(name, params2, grads, states2, step, hyper)
        call_step(name, params2, [g.copy(order="C") for g in grads], states2, step, hyper)
        for p, r in zip(params2, r_p):
            assert_close(p, r, dtype, what="params (contiguous grads)")
    assert_lists_bitwise(params, params2, "params")
    for k in states:
        assert_lists_bitwise(states[k], states2[k], k)


# ----------------------------------------------------------------------------------
# against torch.optim (optional)
# ----------------------------------------------------------------------------------

TORCH_CASES = [
    ("sgd", dict(lr=0.1)),
    ("sgd", dict(lr=0.05, momentum=0.9, dampening=0.2, weight_decay=0.1)),
    ("sgd", dict(lr=0.05, momentum=0.9, nesterov=True, maximize=True)),
    ("adagrad", dict(lr=0.1, lr_decay=0.1, weight_decay=0.05)),
    ("adagrad", dict(lr=0.1, eps=1e-4, maximize=True)),
    ("rmsprop", dict(lr=0.01, weight_decay=0.1)),
    ("rmsprop", dict(lr=0.01, alpha=0.9, centered=True, momentum=0.7)),
    ("rmsprop", dict(lr=0.01, momentum=0.5, maximize=True, eps=1e-6)),
    ("rmsprop", dict(lr=0.01, centered=True)),
    ("adam", dict(lr=0.01)),
    ("adam", dict(lr=0.01, beta1=0.8, beta2=0.95, weight_decay=0.1, amsgrad=True)),
    ("adam", dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True)),
    ("adam", dict(lr=0.01, weight_decay=0.05, decoupled_weight_decay=True, amsgrad=True,
                  maximize=True)),
]


def torch_optimizer(torch, name, tparams, hyper):
    h = dict(hyper)
    if name == "sgd":
        return torch.optim.SGD(tparams, foreach=False, **h)
    if name == "adagrad":
        return torch.optim.Adagrad(tparams, foreach=False, **h)
    if name == "rmsprop":
        return torch.optim.RMSprop(tparams, foreach=False, **h)
    betas = (h.pop("beta1", 0.9), h.pop("beta2", 0.999))
    decoupled = h.pop("decoupled_weight_decay", False)
    h.setdefault("weight_decay", 0.0)
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    return cls(tparams, betas=betas, foreach=False, **h)


def torch_tol(dtype):
    return (1e-12, 1e-13) if np.dtype(dtype) == np.float64 else tolerance(dtype)


def assert_close_tol(got, ref, tol, what):
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, what
    if ref.size == 0:
        return
    rtol, atol = tol
    scale = max(1.0, float(np.abs(ref).max()))
    err = np.abs(got - ref)
    bad = ~(err <= rtol * np.abs(ref) + atol * scale)
    assert not bad.any(), f"{what}: max error {err.max():.3g} ({int(bad.sum())} bad)"


TORCH_SHAPES = [(), (0,), (1,), (3, 5), (1000,), (9000,)]


@pytest.mark.parametrize("case", TORCH_CASES, ids=case_id)
def test_steps_vs_torch(case, dtype, rng):
    torch = pytest.importorskip("torch")
    name, hyper = case
    params = [randn(rng, s, dtype) for s in TORCH_SHAPES]
    tparams = [torch.nn.Parameter(torch.from_numpy(p.copy())) for p in params]
    topt = torch_optimizer(torch, name, tparams, hyper)
    states = zero_states(name, hyper, params)
    tol = torch_tol(dtype)
    for step in (1, 2, 3):
        grads = [randn(rng, s, dtype, GRAD_SCALES[step - 1])
                 for s in TORCH_SHAPES]
        for tp, g in zip(tparams, grads):
            tp.grad = torch.from_numpy(g.copy())
        topt.step()
        call_step(name, params, grads, states, step, hyper)
        for i, (p, tp) in enumerate(zip(params, tparams)):
            assert p.dtype == dtype
            assert_close_tol(p, tp.detach().numpy(), tol, f"step {step} params[{i}]")
        for k, lst in states.items():
            for i, (s, tp) in enumerate(zip(lst, tparams)):
                ts = topt.state[tp][TORCH_STATE[k]].detach().numpy()
                assert_close_tol(s, ts, tol, f"step {step} {k}[{i}]")


@pytest.mark.parametrize("case", TORCH_CASES, ids=case_id)
def test_references_match_torch(case, rng):
    """The references themselves follow torch.optim (float64, 3 steps)."""
    torch = pytest.importorskip("torch")
    name, hyper = case
    shapes = [(3, 4), (7,), ()]
    params = [randn(rng, s) for s in shapes]
    tparams = [torch.nn.Parameter(torch.from_numpy(p.copy())) for p in params]
    topt = torch_optimizer(torch, name, tparams, hyper)
    r_p, r_s = as_f64(params), zero_states(name, hyper, params)
    for step in (1, 2, 3):
        grads = [randn(rng, s, np.float64, GRAD_SCALES[step - 1]) for s in shapes]
        for tp, g in zip(tparams, grads):
            tp.grad = torch.from_numpy(g.copy())
        topt.step()
        r_p, r_s = ref_step(name, r_p, grads, r_s, step, hyper)
        for p, tp in zip(r_p, tparams):
            assert_close_tol(p, tp.detach().numpy(), (1e-13, 1e-14), "reference params")


# ----------------------------------------------------------------------------------
# thread counts: bitwise identical
# ----------------------------------------------------------------------------------

# sizes straddling 32768-element chunks and thread shares, plus many small tensors
THREAD_SHAPES = ([(32767,), (32768,), (32769,), (65537,), (100003,), (129, 257), (3,), (1,),
                  (0,), ()]
                 + [(int(n),) for n in np.random.default_rng(7).integers(0, 13, 400)])


def _thread_run(name, hyper, threads, params0, grads_seq):
    ak.set_num_threads(threads)
    params = copy_list(params0)
    states = zero_states(name, hyper, params)
    for step, grads in enumerate(grads_seq, start=1):
        call_step(name, params, grads, states, step, hyper)
    return params, states


# every hyper-parameter path, float32 and float64 alternately (time budget)
THREAD_CASES = [(case, (np.float32, np.float64)[i % 2]) for i, case in enumerate(CASES)]


@pytest.mark.parametrize("case,dtype", THREAD_CASES,
                         ids=[f"{np.dtype(d).name}-{case_id(c)}" for c, d in THREAD_CASES])
def test_thread_counts_bitwise(case, dtype, restore_threads, rng):
    """1, 2 and 3 threads give bitwise identical params and state (two steps); the
    shares of the threads split tensors at places that differ with the thread count."""
    name, hyper = case
    params0 = [randn(rng, s, dtype) for s in THREAD_SHAPES]
    grads_seq = [[randn(rng, s, dtype) for s in THREAD_SHAPES] for _ in range(2)]
    p1, s1 = _thread_run(name, hyper, 1, params0, grads_seq)
    # threads=1 is right: check it against the reference (the big tensors suffice)
    r_p, r_s = as_f64(params0[:6]), zero_states(name, hyper, params0[:6])
    for step, grads in enumerate(grads_seq, start=1):
        r_p, r_s = ref_step(name, r_p, grads[:6], r_s, step, hyper)
    for p, r in zip(p1, r_p):
        assert_close(p, r, dtype, what="params (1 thread)")
    for threads in (2, 3):
        pn, sn = _thread_run(name, hyper, threads, params0, grads_seq)
        assert_lists_bitwise(pn, p1, f"params ({threads} threads vs 1)")
        for k in s1:
            assert_lists_bitwise(sn[k], s1[k], f"{k} ({threads} threads vs 1)")


@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf])
@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_clip_thread_counts_bitwise(norm_type, dt, restore_threads, rng):
    grads0 = [randn(rng, s, dt) for s in THREAD_SHAPES]
    results = []
    for threads in (1, 2, 3):
        ak.set_num_threads(threads)
        grads = copy_list(grads0)
        total = ak.clip_grad_norm(grads, 1.0, norm_type)
        # no clipping: the total alone, twice (determinism of repeated calls too)
        total2 = ak.clip_grad_norm(copy_list(grads0), 1e30, norm_type)
        assert same_bits(total, total2)
        results.append((total, grads))
    for threads, (total, grads) in zip((2, 3), results[1:]):
        assert same_bits(total, results[0][0]), f"total ({threads} threads vs 1)"
        assert_lists_bitwise(grads, results[0][1], f"clipped grads ({threads} threads vs 1)")
    ref = grad_norm_ref(grads0, norm_type)
    assert abs(float(results[0][0]) - ref) <= (1e-6 if dt == np.float32 else 1e-12) * ref


# ----------------------------------------------------------------------------------
# clip_grad_norm
# ----------------------------------------------------------------------------------

CLIP_SHAPES = [(), (0,), (1,), (3, 5), (1000,), (70000,), (300, 301)]
NORMS = [2.0, 1.0, math.inf]


def _check_total(total, ref, dtype):
    assert isinstance(total, np.ndarray), type(total)
    assert total.ndim == 0 and total.dtype == dtype, (total.shape, total.dtype)
    # summed in double: float32 is the rounded double total, float64 near-exact
    rtol = 1e-6 if np.dtype(dtype) == np.float32 else 1e-12
    assert abs(float(total) - ref) <= rtol * abs(ref), (float(total), ref)


@pytest.mark.parametrize("norm_type", NORMS)
def test_clip_total_no_clipping(norm_type, dtype, rng):
    grads = [randn(rng, s, dtype) for s in CLIP_SHAPES]
    before = copy_list(grads)
    ref = grad_norm_ref(grads, norm_type)
    total = ak.clip_grad_norm(grads, ref * 2 + 1, norm_type)
    _check_total(total, ref, dtype)
    assert_lists_bitwise(grads, before, "grads (not clipped)")


@pytest.mark.parametrize("norm_type", NORMS)
def test_clip_scales(norm_type, dtype, rng):
    grads = [randn(rng, s, dtype) for s in CLIP_SHAPES]
    ref_total = grad_norm_ref(grads, norm_type)
    max_norm = 0.37 * ref_total
    r_total, r_grads = clip_grad_norm_ref(grads, max_norm, norm_type)
    total = ak.clip_grad_norm(grads, max_norm, norm_type)
    _check_total(total, r_total, dtype)
    for i, (g, r) in enumerate(zip(grads, r_grads)):
        assert_close(g, r, dtype, what=f"grads[{i}]")
    # after clipping the norm is max_norm (up to the 1e-6 and rounding)
    assert abs(grad_norm_ref(grads, norm_type) - max_norm) <= 1e-5 * max_norm


@pytest.mark.parametrize("norm_type", NORMS)
def test_clip_default_norm_and_single_array(norm_type, dtype, rng):
    g = randn(rng, (4, 9), dtype)
    g2 = [g.copy()]
    t1 = ak.clip_grad_norm(g, 0.5, norm_type=norm_type)
    t2 = ak.clip_grad_norm(g2, 0.5, norm_type)
    assert same_bits(t1, t2) and same_bits(g, g2[0])
    h = [randn(rng, (10,), dtype)]
    total = ak.clip_grad_norm(copy_list(h), 1e9)  # default norm_type is 2
    _check_total(total, grad_norm_ref(h, 2.0), dtype)


def test_clip_threshold_is_max_norm_over_total_plus_1e_6():
    """coef = max_norm / (total + 1e-6); scaling only when coef < 1."""
    g = [np.array([3.0, 4.0]), np.array([[0.0]])]  # total 5 for norm 2
    a = copy_list(g)
    assert float(ak.clip_grad_norm(a, 5.0 + 1e-6)) == 5.0  # coef == 1: untouched
    assert_lists_bitwise(a, g, "grads at coef == 1")
    a = copy_list(g)
    ak.clip_grad_norm(a, 10.0)
    assert_lists_bitwise(a, g, "grads at coef == 2")
    a = copy_list(g)
    ak.clip_grad_norm(a, 5.0)  # coef = 5 / 5.000001 < 1: scaled
    coef = 5.0 / (5.0 + 1e-6)
    assert a[0][0] != 3.0
    np.testing.assert_allclose(a[0], np.array([3.0, 4.0]) * coef, rtol=1e-15, atol=0)
    # norm 1: total 7; inf: total 4
    a = copy_list(g)
    assert float(ak.clip_grad_norm(a, 3.5, 1)) == 7.0
    np.testing.assert_allclose(a[0], np.array([3.0, 4.0]) * (3.5 / (7.0 + 1e-6)), rtol=1e-15)
    a = copy_list(g)
    assert float(ak.clip_grad_norm(a, 2.0, math.inf)) == 4.0
    np.testing.assert_allclose(a[0], np.array([3.0, 4.0]) * (2.0 / (4.0 + 1e-6)), rtol=1e-15)
    # max_norm 0 zeroes the gradients; an infinite max_norm never clips
    a = copy_list(g)
    ak.clip_grad_norm(a, 0.0)
    assert all((x == 0).all() for x in a)
    a = copy_list(g)
    ak.clip_grad_norm(a, math.inf)
    assert_lists_bitwise(a, g, "grads with max_norm inf")


def test_clip_empty_list():
    total = ak.clip_grad_norm([], 1.0)
    assert isinstance(total, np.ndarray) and total.ndim == 0 and float(total) == 0.0
    for n in NORMS:
        assert float(ak.clip_grad_norm([], 1.0, n, error_if_nonfinite=True)) == 0.0
    # only empty tensors: total 0 of their dtype
    total = ak.clip_grad_norm([np.zeros(0), np.zeros((0, 3))], 1.0)
    assert float(total) == 0.0 and total.dtype == np.float64


def test_clip_float32_sums_in_double():
    """Squares that overflow float32 still give the finite total (double accumulation,
    documented in optim.py)."""
    g = [np.array([3e30, 4e30], dtype=np.float32)]
    total = ak.clip_grad_norm(g, 1.0)
    assert total.dtype == np.float32 and np.isfinite(total)
    assert abs(float(total) - 5e30) <= 1e-6 * 5e30
    np.testing.assert_allclose(g[0], [0.6, 0.8], rtol=1e-5)


def _with_bad(rng, dtype, bad):
    grads = [randn(rng, s, dtype) for s in [(5,), (40000,), (3, 3)]]
    grads[1][12345] = bad
    return grads


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("norm_type", NORMS)
def test_clip_error_if_nonfinite(bad, norm_type, dtype, rng):
    grads = _with_bad(rng, dtype, bad)
    before = copy_list(grads)
    with pytest.raises(RuntimeError):
        ak.clip_grad_norm(grads, 1.0, norm_type, error_if_nonfinite=True)
    assert_lists_bitwise(grads, before, "grads after the RuntimeError")
    # finite: no error
    ok = [randn(rng, (4,), dtype)]
    ak.clip_grad_norm(ok, 1.0, norm_type, error_if_nonfinite=True)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
@pytest.mark.parametrize("norm_type", NORMS)
def test_clip_nonfinite_without_error(bad, norm_type, dtype, rng):
    """As PyTorch: a NaN total scales every gradient by NaN; an infinite total scales by
    0 (finite entries become 0, infinite ones NaN)."""
    grads = _with_bad(rng, dtype, bad)
    r_total, r_grads = clip_grad_norm_ref(grads, 1.0, norm_type)
    total = ak.clip_grad_norm(grads, 1.0, norm_type)
    assert total.dtype == dtype and total.ndim == 0
    if math.isnan(bad):
        assert np.isnan(total)
    else:
        assert float(total) == math.inf
    for i, (g, r) in enumerate(zip(grads, r_grads)):
        np.testing.assert_array_equal(g, r.astype(dtype), err_msg=f"grads[{i}]")


def test_clip_infinite_max_norm_and_infinite_total(dtype):
    """max_norm = inf with an infinite total: coef = inf / inf = NaN, which scales (as
    PyTorch's clamp(NaN, max=1)); no floating-point warning escapes."""
    g = [np.array([1.0, math.inf, -2.0], dtype=dtype)]
    r_total, r_grads = clip_grad_norm_ref(g, math.inf)
    total = ak.clip_grad_norm(g, math.inf)
    assert float(total) == r_total == math.inf
    np.testing.assert_array_equal(g[0], r_grads[0].astype(dtype))
    assert np.isnan(g[0]).all()


@pytest.mark.parametrize("norm_type", NORMS)
@pytest.mark.parametrize("kind", ["clip", "noclip", "nan", "inf"])
def test_clip_vs_torch(norm_type, kind, dtype, rng):
    torch = pytest.importorskip("torch")
    if kind in ("nan", "inf"):
        grads = _with_bad(rng, dtype, math.nan if kind == "nan" else math.inf)
    else:
        # no empty tensor: torch's inf-norm refuses one
        grads = [randn(rng, s, dtype) for s in CLIP_SHAPES[:6] if s != (0,)]
    max_norm = {"clip": 0.5, "noclip": 1e12}.get(kind, 1.0)
    tparams = []
    for g in grads:
        tp = torch.nn.Parameter(torch.zeros(g.shape, dtype=getattr(torch, np.dtype(dtype).name)))
        tp.grad = torch.from_numpy(g.copy())
        tparams.append(tp)
    t_total = torch.nn.utils.clip_grad_norm_(tparams, max_norm, norm_type).numpy()
    total = ak.clip_grad_norm(grads, max_norm, norm_type)
    tol = torch_tol(dtype)
    if kind == "nan":
        assert np.isnan(total) and np.isnan(t_total)
    elif kind == "inf":
        assert float(total) == float(t_total) == math.inf
    else:
        assert_close_tol(total, t_total, tol, "total")
    for i, (g, tp) in enumerate(zip(grads, tparams)):
        tg = tp.grad.numpy()
        if kind in ("nan", "inf"):
            np.testing.assert_array_equal(g, tg, err_msg=f"grads[{i}]")
        else:
            assert_close_tol(g, tg, tol, f"grads[{i}]")


# ----------------------------------------------------------------------------------
# argument validation: raises before writing anything
# ----------------------------------------------------------------------------------


def _raises(exc, arg, call, arrays, shape=None):
    """call() raises exc whose message names arg, and every array in ``arrays`` (a flat
    list) is bitwise unchanged afterwards."""
    snap = [(a, a.copy()) for a in arrays]
    with pytest.raises(exc) as e:
        call()
    msg = str(e.value)
    if arg is not None:
        assert names(msg, arg), f"message does not name {arg!r}: {msg}"
    if shape is not None:
        assert _shape_text(shape) in msg, f"message does not show the shape {shape}: {msg}"
    for a, s in snap:
        assert same_bits(a, s), f"an array changed although the call raised ({msg})"
    return msg


SHAPES_V = [(3,), (2, 4), ()]


def _make(rng, name, hyper, dtype=np.float64):
    """Fresh params, grads and (random, valid) states for a validation case."""
    params = [randn(rng, s, dtype) for s in SHAPES_V]
    grads = [randn(rng, s, dtype) for s in SHAPES_V]
    states = random_states(name, hyper, params, rng)
    return params, grads, states


def _flat(params, grads, states):
    out = list(params) + list(grads)
    for v in states.values():
        out += list(v)
    return out


def _readonly(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def _noncontig(a):
    """A non-C-contiguous array with a's shape and values (0-d: impossible, use 1-D)."""
    big = np.zeros(a.shape + (2,), dtype=a.dtype)
    big[..., 0] = a
    v = big[..., 0]
    assert not v.flags.c_contiguous or a.ndim == 0
    return v


def test_validation_list_lengths(rng):
    hyper = dict(lr=0.1, momentum=0.9)
    p, g, s = _make(rng, "sgd", hyper)
    arrays = _flat(p, g, s)
    b = s["momentum_buffers"]
    f = ak.sgd_step
    _raises(ValueError, "grads", lambda: f(p, g[:2], b, step=2, **hyper), arrays)
    _raises(ValueError, "momentum_buffers", lambda: f(p, g, b[:2], step=2, **hyper), arrays)
    _raises(ValueError, "momentum_buffers", lambda: f(p, g, b + [b[0]], step=2, **hyper),
            arrays)
    _raises(ValueError, None, lambda: f(p[:2], g, b, step=2, **hyper), arrays)
    ha = dict(amsgrad=True)
    p, g, s = _make(rng, "adam", ha)
    arrays = _flat(p, g, s)
    m, v, vm = s["exp_avgs"], s["exp_avg_sqs"], s["max_exp_avg_sqs"]
    _raises(ValueError, "exp_avg_sqs",
            lambda: ak.adam_step(p, g, m, v[1:], step=2, max_exp_avg_sqs=vm, **ha), arrays)
    _raises(ValueError, "max_exp_avg_sqs",
            lambda: ak.adam_step(p, g, m, v, step=2, max_exp_avg_sqs=vm[:1], **ha), arrays)
    _raises(ValueError, "exp_avgs",
            lambda: ak.adam_step(p, g, [], v, step=2, max_exp_avg_sqs=vm, **ha), arrays)


def test_validation_shapes(rng):
    ha = dict(amsgrad=True)
    p, g, s = _make(rng, "adam", ha)
    arrays = _flat(p, g, s)
    m, v, vm = s["exp_avgs"], s["exp_avg_sqs"], s["max_exp_avg_sqs"]
    bad = np.zeros((4, 2))
    arrays.append(bad)
    f = ak.adam_step
    _raises(ValueError, "exp_avgs[1]",
            lambda: f(p, g, [m[0], bad, m[2]], v, step=2, max_exp_avg_sqs=vm, **ha), arrays,
            shape=(4, 2))
    _raises(ValueError, "grads[1]",
            lambda: f(p, [g[0], bad, g[2]], m, v, step=2, max_exp_avg_sqs=vm, **ha), arrays,
            shape=(4, 2))
    _raises(ValueError, "max_exp_avg_sqs[2]",
            lambda: f(p, g, m, v, step=2, max_exp_avg_sqs=[vm[0], vm[1], np.zeros(1)], **ha),
            arrays, shape=(1,))
    _raises(ValueError, "exp_avg_sqs[0]",
            lambda: f(p, g, m, [np.zeros((3, 1)), v[1], v[2]], step=2, max_exp_avg_sqs=vm,
                      **ha), arrays, shape=(3, 1))
    # 0-d vs (1,)
    _raises(ValueError, "grads[2]",
            lambda: f(p, [g[0], g[1], np.zeros(1)], m, v, step=2, max_exp_avg_sqs=vm, **ha),
            arrays, shape=(1,))
    # rmsprop and adagrad and sgd
    hr = dict(centered=True, momentum=0.5)
    p, g, s = _make(rng, "rmsprop", hr)
    arrays = _flat(p, g, s)
    ga = list(s["grad_avgs"])
    ga[1] = np.zeros((2, 5))
    _raises(ValueError, "grad_avgs[1]",
            lambda: ak.rmsprop_step(p, g, s["square_avgs"], step=2, momentum_buffers=s[
                "momentum_buffers"], grad_avgs=ga, **hr), arrays, shape=(2, 5))
    p, g, s = _make(rng, "adagrad", {})
    arrays = _flat(p, g, s)
    ss = list(s["state_sums"])
    ss[0] = np.zeros(4)
    _raises(ValueError, "state_sums[0]", lambda: ak.adagrad_step(p, g, ss, step=1), arrays,
            shape=(4,))


def test_validation_dtypes(rng):
    hyper = dict(lr=0.1, momentum=0.9)
    p, g, s = _make(rng, "sgd", hyper)
    arrays = _flat(p, g, s)
    b = s["momentum_buffers"]
    f = ak.sgd_step
    g32 = [g[0], g[1].astype(np.float32), g[2]]
    _raises(TypeError, "grads[1]", lambda: f(p, g32, b, step=2, **hyper), arrays)
    b32 = [b[0].astype(np.float32), b[1], b[2]]
    _raises(TypeError, "momentum_buffers[0]", lambda: f(p, g, b32, step=2, **hyper), arrays)
    p32 = [x.astype(np.float32) for x in p]
    arrays += p32
    _raises(TypeError, None, lambda: f(p32, g, b, step=2, **hyper), arrays)
    pi = [np.zeros(3, dtype=np.int64), p[1], p[2]]
    arrays += pi
    _raises(TypeError, "params[0]", lambda: f(pi, g, b, step=2, **hyper), arrays)
    p16 = [x.astype(np.float16) for x in p]
    g16 = [x.astype(np.float16) for x in g]
    _raises(TypeError, None, lambda: f(p16, g16, step=1, lr=0.1), arrays + p16 + g16)
    # not arrays at all
    _raises(TypeError, None, lambda: f([[1.0, 2.0]], [[1.0, 2.0]], step=1, lr=0.1), arrays)
    _raises(TypeError, None, lambda: f(p, [1.0, 2.0, 3.0], b, step=2, **hyper), arrays)
    # adam: a float32 max_exp_avg_sqs among float64
    ha = dict(amsgrad=True)
    p, g, s = _make(rng, "adam", ha)
    arrays = _flat(p, g, s)
    vm = [x.astype(np.float32) for x in s["max_exp_avg_sqs"]]
    _raises(TypeError, "max_exp_avg_sqs[0]",
            lambda: ak.adam_step(p, g, s["exp_avgs"], s["exp_avg_sqs"], step=2,
                                 max_exp_avg_sqs=vm, **ha), arrays)


@pytest.mark.parametrize("kind", ["readonly", "noncontig"])
def test_validation_writeable_contiguous(kind, rng):
    spoil = _readonly if kind == "readonly" else _noncontig
    # params
    hyper = dict(lr=0.1, momentum=0.9)
    p, g, s = _make(rng, "sgd", hyper)
    b = s["momentum_buffers"]
    p1 = [p[0], spoil(p[1]), p[2]]
    arrays = _flat(p1, g, s)
    _raises(ValueError, "params[1]", lambda: ak.sgd_step(p1, g, b, step=2, **hyper), arrays)
    if kind == "noncontig":  # a 0-d array is always contiguous: spoil buffers[0]
        b1, arg = [spoil(b[0]), b[1], b[2]], "momentum_buffers[0]"
    else:
        b1, arg = [b[0], b[1], spoil(b[2])], "momentum_buffers[2]"
    arrays = _flat(p, g, s) + b1
    _raises(ValueError, arg, lambda: ak.sgd_step(p, g, b1, step=2, **hyper), arrays)
    # adam states, the last list checked
    ha = dict(amsgrad=True)
    p, g, s = _make(rng, "adam", ha)
    vm = list(s["max_exp_avg_sqs"])
    vm[1] = spoil(vm[1])
    arrays = _flat(p, g, s) + vm
    _raises(ValueError, "max_exp_avg_sqs[1]",
            lambda: ak.adam_step(p, g, s["exp_avgs"], s["exp_avg_sqs"], step=2,
                                 max_exp_avg_sqs=vm, **ha), arrays)
    m = list(s["exp_avgs"])
    m[0] = spoil(m[0])
    arrays = _flat(p, g, s) + m
    _raises(ValueError, "exp_avgs[0]",
            lambda: ak.adam_step(p, g, m, s["exp_avg_sqs"], step=2,
                                 max_exp_avg_sqs=s["max_exp_avg_sqs"], **ha), arrays)
    # rmsprop / adagrad state
    hr = dict(centered=True, momentum=0.5)
    p, g, s = _make(rng, "rmsprop", hr)
    sq = list(s["square_avgs"])
    sq[1] = spoil(sq[1])
    arrays = _flat(p, g, s) + sq
    _raises(ValueError, "square_avgs[1]",
            lambda: ak.rmsprop_step(p, g, sq, step=2, momentum_buffers=s["momentum_buffers"],
                                    grad_avgs=s["grad_avgs"], **hr), arrays)
    p, g, s = _make(rng, "adagrad", {})
    ss = list(s["state_sums"])
    ss[0] = spoil(ss[0])
    arrays = _flat(p, g, s) + ss
    _raises(ValueError, "state_sums[0]", lambda: ak.adagrad_step(p, g, ss, step=2), arrays)


def test_validation_missing_states(rng):
    hyper = dict(lr=0.1, momentum=0.9)
    p, g, s = _make(rng, "sgd", hyper)
    arrays = _flat(p, g, s)
    _raises((ValueError, TypeError), "momentum_buffers",
            lambda: ak.sgd_step(p, g, step=2, **hyper), arrays)
    ha = dict(amsgrad=True)
    p, g, s = _make(rng, "adam", ha)
    arrays = _flat(p, g, s)
    _raises((ValueError, TypeError), "max_exp_avg_sqs",
            lambda: ak.adam_step(p, g, s["exp_avgs"], s["exp_avg_sqs"], step=2, **ha), arrays)
    _raises((ValueError, TypeError), "exp_avgs",
            lambda: ak.adam_step(p, g, None, s["exp_avg_sqs"], step=2), arrays)
    hr = dict(centered=True, momentum=0.5)
    p, g, s = _make(rng, "rmsprop", hr)
    arrays = _flat(p, g, s)
    _raises((ValueError, TypeError), "grad_avgs",
            lambda: ak.rmsprop_step(p, g, s["square_avgs"], step=2,
                                    momentum_buffers=s["momentum_buffers"], **hr), arrays)
    _raises((ValueError, TypeError), "momentum_buffers",
            lambda: ak.rmsprop_step(p, g, s["square_avgs"], step=2,
                                    grad_avgs=s["grad_avgs"], **hr), arrays)
    _raises((ValueError, TypeError), "square_avgs",
            lambda: ak.rmsprop_step(p, g, None, step=2), arrays)
    p, g, s = _make(rng, "adagrad", {})
    _raises((ValueError, TypeError), "state_sums", lambda: ak.adagrad_step(p, g, None, step=1),
            _flat(p, g, s))


# (optimizer, bad keyword overrides, the argument the message names, exception)
BAD_HYPER = [
    ("sgd", dict(lr=-0.1), "lr", ValueError),
    ("sgd", dict(lr=math.nan), "lr", ValueError),
    ("sgd", dict(lr="0.1"), "lr", TypeError),
    ("sgd", dict(lr=None), "lr", TypeError),
    ("sgd", dict(momentum=-0.5), "momentum", ValueError),
    ("sgd", dict(weight_decay=-1e-3), "weight_decay", ValueError),
    ("sgd", dict(momentum=0.0, nesterov=True), "nesterov", ValueError),
    ("sgd", dict(dampening=0.1, nesterov=True), "nesterov", ValueError),
    ("sgd", dict(step=0), "step", ValueError),
    ("sgd", dict(step=-3), "step", ValueError),
    ("sgd", dict(step=None), "step", TypeError),
    ("adagrad", dict(lr=-1.0), "lr", ValueError),
    ("adagrad", dict(lr_decay=-0.1), "lr_decay", ValueError),
    ("adagrad", dict(weight_decay=-0.1), "weight_decay", ValueError),
    ("adagrad", dict(eps=-1e-10), "eps", ValueError),
    ("adagrad", dict(step=0), "step", ValueError),
    ("rmsprop", dict(lr=-0.01), "lr", ValueError),
    ("rmsprop", dict(alpha=-0.1), "alpha", ValueError),
    ("rmsprop", dict(eps=-1e-8), "eps", ValueError),
    ("rmsprop", dict(weight_decay=-1.0), "weight_decay", ValueError),
    ("rmsprop", dict(momentum=-0.5), "momentum", ValueError),
    ("rmsprop", dict(step=0), "step", ValueError),
    ("adam", dict(lr=-1e-3), "lr", ValueError),
    ("adam", dict(eps=-1e-8), "eps", ValueError),
    ("adam", dict(weight_decay=-0.01), "weight_decay", ValueError),
    ("adam", dict(weight_decay=-0.01, decoupled_weight_decay=True), "weight_decay", ValueError),
    ("adam", dict(beta1=1.0), "beta1", ValueError),
    ("adam", dict(beta1=-0.1), "beta1", ValueError),
    ("adam", dict(beta2=1.0), "beta2", ValueError),
    ("adam", dict(beta2=1.5), "beta2", ValueError),
    ("adam", dict(beta2=-1e-9), "beta2", ValueError),
    ("adam", dict(lr=[0.1]), "lr", TypeError),
    ("adam", dict(step=0), "step", ValueError),
    ("adam", dict(step=None), "step", TypeError),
]
# the full-featured valid hyper-parameters each bad override is applied to
GOOD_HYPER = {
    "sgd": dict(lr=0.1, momentum=0.9, nesterov=False, weight_decay=0.1),
    "adagrad": dict(lr=0.1, lr_decay=0.1, weight_decay=0.1),
    "rmsprop": dict(lr=0.01, momentum=0.5, centered=True, weight_decay=0.1),
    "adam": dict(lr=0.01, weight_decay=0.1, amsgrad=True),
}


@pytest.mark.parametrize("name,bad,arg,exc", BAD_HYPER,
                         ids=[f"{n}-{list(b.items())[0][0]}={list(b.items())[0][1]!r}"
                              for n, b, _, _ in BAD_HYPER])
def test_validation_hyper_parameters(name, bad, arg, exc, rng):
    hyper = dict(GOOD_HYPER[name])
    p, g, s = _make(rng, name, hyper)
    kwargs = dict(hyper, step=3)
    kwargs.update(bad)
    _raises(exc, arg, lambda: STEP_FNS[name](p, g, **s, **kwargs), _flat(p, g, s))


def test_validation_step_missing(rng):
    p, g = [randn(rng, (3,))], [randn(rng, (3,))]
    with pytest.raises(TypeError):
        ak.sgd_step(p, g, lr=0.1)
    with pytest.raises(TypeError):
        ak.adam_step(p, g, [np.zeros(3)], [np.zeros(3)])
    with pytest.raises(TypeError):
        ak.sgd_step(p, g, step=1.0, lr=0.1)  # step is an int count


def test_valid_edge_hyper_parameters(rng):
    """Values PyTorch accepts are accepted: zeros everywhere, beta = 0."""
    p, g = [randn(rng, (3,))], [randn(rng, (3,))]
    ak.sgd_step(p, g, step=1, lr=0.0)
    ak.adam_step(p, g, [np.zeros(3)], [np.zeros(3)], step=1, lr=0.0, beta1=0.0, beta2=0.0,
                 eps=0.0)
    ak.rmsprop_step(p, g, [np.zeros(3)], step=1, alpha=0.0)
    ak.adagrad_step(p, g, [np.zeros(3)], step=1, lr_decay=0.0, eps=0.0)
    ak.sgd_step(p, g, [np.zeros(3)], step=1, lr=0.1, momentum=0.5, dampening=0.0,
                nesterov=True)
    assert np.isfinite(p[0]).all()


def test_clip_validation(rng):
    grads = [randn(rng, (3,)), randn(rng, (2, 2))]
    f = ak.clip_grad_norm
    _raises(ValueError, "norm_type", lambda: f(grads, 1.0, 3), grads)
    _raises(ValueError, "norm_type", lambda: f(grads, 1.0, 0.5), grads)
    _raises(ValueError, "norm_type", lambda: f(grads, 1.0, -math.inf), grads)
    _raises((TypeError, ValueError), "norm_type", lambda: f(grads, 1.0, "fro"), grads)
    _raises(TypeError, "max_norm", lambda: f(grads, "1.0"), grads)
    g2 = [grads[0], _readonly(grads[1])]
    _raises(ValueError, "grads[1]", lambda: f(g2, 0.1), grads + g2)
    g3 = [grads[0], _noncontig(grads[1])]
    _raises(ValueError, "grads[1]", lambda: f(g3, 0.1), grads + g3)
    g4 = [grads[0].astype(np.float32), grads[1]]
    _raises(TypeError, "grads[1]", lambda: f(g4, 0.1), grads + g4)
    g5 = [grads[0], grads[1].astype(np.int32)]
    _raises(TypeError, "grads[1]", lambda: f(g5, 0.1), grads + g5)


# ----------------------------------------------------------------------------------
# stateful optimizers
# ----------------------------------------------------------------------------------

# (class name, step-function name, hyper-parameters)
WRAPPERS = [
    ("SGD", "sgd", dict(lr=0.1)),
    ("SGD", "sgd", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("SGD", "sgd", dict(lr=0.05, momentum=0.9, dampening=0.5, maximize=True)),
    ("Adagrad", "adagrad", dict(lr=0.1, lr_decay=0.05)),
    ("RMSprop", "rmsprop", dict()),
    ("RMSprop", "rmsprop", dict(momentum=0.9, centered=True, weight_decay=0.01)),
    ("Adam", "adam", dict()),
    ("Adam", "adam", dict(lr=0.01, amsgrad=True, weight_decay=0.1)),
    ("AdamW", "adam", dict()),
    ("AdamW", "adam", dict(lr=0.01, weight_decay=0.1, amsgrad=True, maximize=True)),
]
WSHAPES = [(4, 5), (), (1,), (0,), (3000,)]


def wrapper_id(w):
    return w[0] + "-" + ("-".join(f"{k}={v}" for k, v in w[2].items()) or "defaults")


def _fn_hyper(cls, hyper):
    """The step-function keywords a wrapper with these hyper-parameters uses."""
    if cls == "AdamW":
        return dict(dict(weight_decay=0.01, decoupled_weight_decay=True), **hyper)
    if cls == "SGD":
        return dict(dict(lr=1e-3), **hyper)
    return dict(hyper)


@pytest.mark.parametrize("w", WRAPPERS, ids=wrapper_id)
def test_wrapper_vs_step_functions(w, dtype, rng):
    cls, name, hyper = w
    params = [randn(rng, s, dtype) for s in WSHAPES]
    fh = _fn_hyper(cls, hyper)
    by_hand, states = copy_list(params), zero_states(name, fh, params)
    opt = getattr(ak.optim, cls)(params, **hyper)
    for step in range(1, 5):
        grads = [randn(rng, s, dtype, GRAD_SCALES[step - 1])
                 for s in WSHAPES]
        opt.step(grads)
        call_step(name, by_hand, grads, states, step, fh)
        assert_lists_bitwise(params, by_hand, f"{cls} params after step {step}")


@pytest.mark.parametrize("w", WRAPPERS, ids=wrapper_id)
def test_wrapper_vs_torch(w, rng):
    torch = pytest.importorskip("torch")
    cls, name, hyper = w
    shapes = [(4, 5), (), (7,)]
    params = [randn(rng, s) for s in shapes]
    tparams = [torch.nn.Parameter(torch.from_numpy(p.copy())) for p in params]
    h = dict(hyper)
    if name == "adam":
        kw = dict(foreach=False, maximize=h.pop("maximize", False))
        if "lr" in h:
            kw["lr"] = h["lr"]
        for k in ("weight_decay", "amsgrad"):
            if k in h:
                kw[k] = h[k]
        topt = getattr(torch.optim, cls)(tparams, **kw)  # torch's own defaults
    else:
        topt = getattr(torch.optim, cls)(tparams, foreach=False, **h)
    opt = getattr(ak.optim, cls)(params, **hyper)
    for step in range(3):
        grads = [randn(rng, s) for s in shapes]
        for tp, g in zip(tparams, grads):
            tp.grad = torch.from_numpy(g.copy())
        topt.step()
        opt.step(grads)
    for i, (p, tp) in enumerate(zip(params, tparams)):
        assert_close_tol(p, tp.detach().numpy(), (1e-12, 1e-13), f"params[{i}]")


def test_default_lrs_and_adamw_weight_decay(rng):
    p = [randn(rng, (3,))]
    assert ak.optim.SGD(copy_list(p)).lr == 1e-3
    assert ak.optim.Adagrad(copy_list(p)).lr == 1e-2
    assert ak.optim.RMSprop(copy_list(p)).lr == 1e-2
    assert ak.optim.Adam(copy_list(p)).lr == 1e-3
    assert ak.optim.AdamW(copy_list(p)).lr == 1e-3
    # AdamW decays by lr * 0.01 per step (decoupled): zero gradient, beta-free check
    q = [np.full(4, 2.0)]
    opt = ak.optim.AdamW(q, lr=0.5)
    opt.step([np.zeros(4)])
    np.testing.assert_allclose(q[0], 2.0 * (1 - 0.5 * 0.01), rtol=1e-15)
    # Adam's default is no weight decay
    q = [np.full(4, 2.0)]
    ak.optim.Adam(q, lr=0.5).step([np.zeros(4)])
    assert (q[0] == 2.0).all()


@pytest.mark.parametrize("w", WRAPPERS, ids=wrapper_id)
def test_wrapper_zero_state(w, rng):
    cls, name, hyper = w
    params = [randn(rng, s) for s in WSHAPES]
    opt = getattr(ak.optim, cls)(params, **hyper)
    for _ in range(3):
        opt.step([randn(rng, s) for s in WSHAPES])
    opt.zero_state()
    fresh_params = copy_list(params)
    fresh = getattr(ak.optim, cls)(fresh_params, **hyper)
    for _ in range(2):
        grads = [randn(rng, s) for s in WSHAPES]
        opt.step(grads)
        fresh.step(grads)
        assert_lists_bitwise(params, fresh_params, "params after zero_state")
    sd, sf = opt.state_dict(), fresh.state_dict()
    for k in sf["state"]:
        assert_lists_bitwise(sd["state"][k], sf["state"][k], k)


@pytest.mark.parametrize("w", WRAPPERS, ids=wrapper_id)
def test_wrapper_state_dict_round_trip(w, dtype, rng):
    """save -> k steps -> restore (params and state) -> the same k steps: bitwise equal;
    also into a fresh optimizer; the saved dict is a copy."""
    cls, name, hyper = w
    k = 3
    params = [randn(rng, s, dtype) for s in WSHAPES]
    opt = getattr(ak.optim, cls)(params, **hyper)
    for _ in range(2):
        opt.step([randn(rng, s, dtype) for s in WSHAPES])
    opt.lr = opt.lr * 0.5  # a changed lr is part of the state
    saved_lr = opt.lr
    sd = opt.state_dict()
    saved_params = copy_list(params)
    sd_copy = {"state": {n: copy_list(v) for n, v in sd["state"].items()}}
    grads_seq = [[randn(rng, s, dtype) for s in WSHAPES] for _ in range(k)]
    for grads in grads_seq:
        opt.step(grads)
    first = copy_list(params)
    first_state = opt.state_dict()
    for n in sd["state"]:  # the saved dict did not follow the optimizer
        assert_lists_bitwise(sd["state"][n], sd_copy["state"][n], f"saved {n}")
    opt.lr = 123.0
    # restore into the same optimizer
    for p, s in zip(params, saved_params):
        p[...] = s
    opt.load_state_dict(sd)
    assert opt.lr == saved_lr
    for grads in grads_seq:
        opt.step(grads)
    assert_lists_bitwise(params, first, "params after reload")
    for n in first_state["state"]:
        assert_lists_bitwise(opt.state_dict()["state"][n], first_state["state"][n], n)
    # and into a fresh optimizer on restored params
    fresh_params = copy_list(saved_params)
    fresh = getattr(ak.optim, cls)(fresh_params, **hyper)
    fresh.load_state_dict(sd)
    for grads in grads_seq:
        fresh.step(grads)
    assert_lists_bitwise(fresh_params, first, "params of a fresh optimizer after load")


def test_wrapper_lr_property(rng):
    params = [randn(rng, (5,)), randn(rng, (2, 2))]
    by_hand = copy_list(params)
    bufs = [np.zeros_like(p) for p in params]
    opt = ak.optim.SGD(params, lr=0.1, momentum=0.9)
    assert opt.lr == 0.1
    g = [randn(rng, (5,)), randn(rng, (2, 2))]
    opt.step(g)
    ak.sgd_step(by_hand, g, bufs, step=1, lr=0.1, momentum=0.9)
    opt.lr = 0.025
    assert opt.lr == 0.025
    g = [randn(rng, (5,)), randn(rng, (2, 2))]
    opt.step(g)
    ak.sgd_step(by_hand, g, bufs, step=2, lr=0.025, momentum=0.9)
    assert_lists_bitwise(params, by_hand, "params after an lr change")
    with pytest.raises(ValueError):
        opt.lr = -1.0
    assert opt.lr == 0.025


@pytest.mark.parametrize("cls,bad", [
    ("SGD", dict(lr=-0.1)), ("SGD", dict(momentum=-0.1)), ("SGD", dict(nesterov=True)),
    ("SGD", dict(momentum=0.9, dampening=0.1, nesterov=True)),
    ("SGD", dict(weight_decay=-1.0)),
    ("Adagrad", dict(lr_decay=-0.1)), ("Adagrad", dict(eps=-1.0)),
    ("RMSprop", dict(alpha=-0.5)), ("RMSprop", dict(momentum=-0.5)),
    ("Adam", dict(beta1=1.0)), ("Adam", dict(beta2=-0.1)), ("Adam", dict(eps=-1e-8)),
    ("AdamW", dict(weight_decay=-0.1)), ("AdamW", dict(lr=-1e-3)),
])
def test_wrapper_invalid_hyper_parameters(cls, bad, rng):
    params = [randn(rng, (3,))]
    before = params[0].copy()
    with pytest.raises(ValueError):
        getattr(ak.optim, cls)(params, **bad)
    assert same_bits(params[0], before)


def test_wrapper_bad_construction(rng):
    with pytest.raises(TypeError):
        ak.optim.Adam([randn(rng, (3,))], bogus=1.0)
    with pytest.raises(ValueError):
        ak.optim.SGD([_readonly(randn(rng, (3,)))], lr=0.1)
    with pytest.raises(TypeError):
        ak.optim.SGD([randn(rng, (3,)), randn(rng, (2,)).astype(np.float32)], lr=0.1).step(
            [randn(rng, (3,)), randn(rng, (2,)).astype(np.float32)])


# ----------------------------------------------------------------------------------
# learning-rate schedules
# ----------------------------------------------------------------------------------

SCHEDULES = [
    ("StepLR", dict(step_size=3, gamma=0.5), 0.1),
    ("StepLR", dict(step_size=1, gamma=0.3), 0.037),
    ("StepLR", dict(step_size=5), 1.0),
    ("ExponentialLR", dict(gamma=0.9), 0.1),
    ("ExponentialLR", dict(gamma=0.7), 0.013),
    ("PolynomialLR", dict(), 0.1),
    ("PolynomialLR", dict(total_iters=4, power=2.0), 0.05),
    ("PolynomialLR", dict(total_iters=7, power=0.5), 0.3),
    ("PolynomialLR", dict(total_iters=12, power=1.5), 0.01),
]
EPOCHS = 12


def _closed_form(kind, kw, base, epoch):
    if kind == "StepLR":
        return step_lr_ref(base, epoch, **kw)
    if kind == "ExponentialLR":
        return exponential_lr_ref(base, epoch, **kw)
    return polynomial_lr_ref(base, epoch, **kw)


def _ak_lrs(kind, kw, base):
    opt = ak.optim.SGD([np.zeros(3)], lr=base)
    sched = getattr(ak.optim, kind)(opt, **kw)
    lrs = [opt.lr]
    for _ in range(EPOCHS):
        sched.step()
        lrs.append(opt.lr)
        assert sched.get_last_lr() == opt.lr
    return lrs


@pytest.mark.parametrize("kind,kw,base", SCHEDULES)
def test_schedule_closed_form(kind, kw, base):
    lrs = _ak_lrs(kind, kw, base)
    for epoch, lr in enumerate(lrs):
        ref = _closed_form(kind, kw, base, epoch)
        assert isinstance(lr, float)
        assert abs(lr - ref) <= 1e-12 * base, (epoch, lr, ref)


@pytest.mark.parametrize("kind,kw,base", SCHEDULES)
def test_schedule_vs_torch_bitwise(kind, kw, base):
    torch = pytest.importorskip("torch")
    topt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(3))], lr=base)
    sched = getattr(torch.optim.lr_scheduler, kind)(topt, **kw)
    t_lrs = [topt.param_groups[0]["lr"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(EPOCHS):
            topt.step()
            sched.step()
            t_lrs.append(float(topt.param_groups[0]["lr"]))
    assert _ak_lrs(kind, kw, base) == t_lrs


def test_schedule_drives_the_optimizer(rng):
    """Training with StepLR: each epoch's update uses the scheduled rate."""
    params = [randn(rng, (6,)), randn(rng, (2, 3))]
    by_hand = copy_list(params)
    bufs = [np.zeros_like(p) for p in params]
    opt = ak.optim.SGD(params, lr=0.2, momentum=0.5)
    sched = ak.optim.StepLR(opt, step_size=2, gamma=0.5)
    for epoch in range(6):
        g = [randn(rng, (6,)), randn(rng, (2, 3))]
        opt.step(g)
        ak.sgd_step(by_hand, g, bufs, step=epoch + 1, lr=step_lr_ref(0.2, epoch, 2, 0.5),
                    momentum=0.5)
        sched.step()
        assert_lists_bitwise(params, by_hand, f"epoch {epoch}")
