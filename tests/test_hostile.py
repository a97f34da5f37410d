"""The README's promise "bad input never crashes the process": the hostile-input suite of
tests/hostile.py, in two forms.

- test_every_single_argument_mutation: every public function, every argument, every
  hostile value of the catalog (about 14,000 calls), in worker processes, so that a
  crash or a hang is reported with the call that caused it.
- the hypothesis tests: several arguments changed at once, integers and reals drawn
  from the whole range (overflowing products, NaN, infinities), in this process.

Outcomes allowed: a result (bit-identical to the valid call's where the hostile value
means the same thing), or TypeError/ValueError/MemoryError with a message that starts
with the function's name, changing nothing in place.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import adlkernels as ak
import hostile

SANITIZED = ak.build_info()["sanitizers"]


def test_every_single_argument_mutation():
    cases = hostile.all_cases()
    if SANITIZED:
        # The sanitizer build runs 3-5x slower: a fixed third of the cases, every
        # function and argument still represented.
        cases = cases[::3]
    report = hostile.campaign(cases)
    print(report.summary())
    assert report.counts.get("ok", 0) == len(cases), (
        report.summary() + "\n" + "\n".join(sorted(report.failures)[:60])
    )


# ---- the README's determinism claim, over every public function -----------------------


@pytest.mark.parametrize("call", hostile.CALLS, ids=lambda c: c.fn)
def test_every_function_repeats_bit_for_bit_and_leaves_inputs_alone(call):
    """The same call on the same inputs gives bitwise-identical results, and a function
    that is not in-place writes none of its inputs."""
    for dtype in call.dtypes:
        kw = call.make(np.dtype(dtype))
        inputs = {k: v.copy() for k, v in kw.items() if isinstance(v, np.ndarray)}
        first = hostile.run_call(call, call.make(np.dtype(dtype)))
        for _ in range(2):
            assert hostile.same(hostile.run_call(call, call.make(np.dtype(dtype))), first)
        if not call.inplace:
            hostile.run_call(call, kw)
            for k, v in inputs.items():
                assert np.array_equal(kw[k], v, equal_nan=True), f"{call.fn} wrote {k}"


# ---- several arguments at once -------------------------------------------------------

CALLS = list(hostile.CALLS)


def _value_strategy(call, name, value):
    """Hostile values for one argument: the catalog's, plus numbers from the whole range."""
    catalog = hostile.mutations(call, name, value)
    options = [st.sampled_from(catalog)]
    if isinstance(value, (int, tuple)) and not isinstance(value, bool):
        ints = st.integers(min_value=-(2**66), max_value=2**66)
        options.append(st.builds(lambda v: ("drawn int", v, hostile.ANY), ints))
        options.append(st.builds(lambda a, b: ("drawn pair", (a, b), hostile.ANY), ints, ints))
        small = st.integers(min_value=0, max_value=9)
        options.append(st.builds(lambda a, b: ("drawn small pair", (a, b), hostile.ANY), small, small))
    if isinstance(value, float):
        reals = st.floats(allow_nan=True, allow_infinity=True)
        options.append(st.builds(lambda v: ("drawn real", v, hostile.ANY), reals))
    return st.one_of(*options)


@st.composite
def hostile_calls(draw):
    call = draw(st.sampled_from(CALLS))
    dtype = draw(st.sampled_from(call.dtypes))
    kw = call.make(np.dtype(dtype))
    names = draw(st.lists(st.sampled_from(sorted(kw)), min_size=1, max_size=3, unique=True))
    labels, expects = [], []
    for name in names:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # NaN cast into int arrays, on purpose
            values = _value_strategy(call, name, kw[name])
        label, value, expect = draw(values)
        kw[name] = value
        labels.append(f"{name} <- {label}")
        expects.append(expect)
    pairs = list(hostile.alias_pairs(call, kw))
    if pairs and draw(st.booleans()):  # and one argument passed as another, written one
        name, written = draw(st.sampled_from(pairs))
        kw[name] = kw[written]
        labels.append(f"{name} <- alias of {written}")
        expects.append(hostile.ANY)
    # Values that each mean the same as the valid one together still do.
    expect = hostile.SAME if all(e == hostile.SAME for e in expects) else hostile.ANY
    return call, np.dtype(dtype).name, kw, expect, labels


@settings(max_examples=150 if SANITIZED else 500, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(hostile_calls())
def test_several_hostile_arguments(drawn):
    call, dtype, kw, expect, labels = drawn
    baseline = hostile.baseline_of(call, dtype) if expect == hostile.SAME else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numpy's casting warnings on hostile values
        outcome, detail = hostile.judge(call, kw, expect, baseline)
    assert outcome == "ok", f"{outcome}: {call.fn}[{dtype}] {'; '.join(labels)}: {detail}"


# ---- the harness itself can fail ------------------------------------------------------


def test_harness_reports_crashes_hangs_and_wrong_results(monkeypatch):
    """Each kind of failure is caught and attributed to its case (a worker that dies or
    stalls is replaced, and the campaign goes on)."""
    relu = hostile.CALLS_BY_FN["relu_forward"]
    baseline = hostile.baseline_of(relu, "float32")
    assert hostile.judge(relu, {"x": np.zeros((3, 5), np.float32)}, hostile.SAME,
                         baseline)[0] == "wrong result"
    assert hostile.judge(relu, relu.make(np.dtype(np.float32)), hostile.ERROR)[0] == "wrong result"
    unclear = [TypeError("relu_forward(): incompatible function arguments"),
               AttributeError("relu_forward: x"), ValueError("x: bad")]
    assert all(hostile.classify_error("relu_forward", e) == "unclear error" for e in unclear)
    assert hostile.classify_error("relu_forward", ValueError("relu_forward: x: bad")) == "ok"
    sgd = hostile.CALLS_BY_FN["sgd_step"]
    kw = sgd.make(np.dtype(np.float32))

    def writes_then_raises(**kwargs):
        kwargs["params"][0][...] = 0
        raise ValueError("sgd_step: params: rejected after writing")

    monkeypatch.setattr(sgd, "module", type("M", (), {"sgd_step": staticmethod(writes_then_raises)}))
    assert hostile.judge(sgd, kw, hostile.ANY)[0] == "changed on error"
    monkeypatch.undo()

    cases = [c for c in hostile.all_cases() if c.fn == "relu_forward"][:4]

    monkeypatch.setenv("ADLK_HOSTILE_SELFTEST", "crash:%d,hang:%d" % (cases[1].index, cases[2].index))
    report = hostile.campaign(cases, timeout=5, jobs=1)
    assert report.counts == {"ok": 2, "crash": 1, "hang": 1}, report.summary()
