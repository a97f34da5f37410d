"""Hostile geometry for convolution and pooling: sizes that overflow 64 bits, strides,
paddings, dilations and kernels far beyond a tiny input, allocations that fail, and
indices that another thread rewrites while a kernel runs.

Anything that could crash the process (a segfault, an abort from an exception inside a
parallel region, an out-of-memory kill) runs in a child process (`Isolated`,
`run_isolated`), so that a crash fails the test instead of killing pytest. Results are
compared with the sparse float64 references of reference.py / reference_pool.py, which
follow the definitions without ever building the padded input or looping over a kernel.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import adlkernels as ak
from reference import (
    assert_close,
    conv2d_backward_sparse_ref,
    conv2d_sparse_ref,
    fold_sparse_ref,
    unfold_sparse_ref,
)
from reference_pool import (
    avgpool2d_backward_ref,
    avgpool2d_ref,
    max_unpool2d_ref,
    maxpool2d_backward_ref,
    maxpool2d_sparse_ref,
    pool_out_size,
)

BIG = 2**31 - 1  # the largest geometry argument (_validate.MAX_GEOM)
SANITIZED = ak.build_info()["sanitizers"]
HYPOTHESIS = settings(max_examples=15, deadline=None, database=None,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

# ----------------------------------------------------------------------------------
# running kernels in a child process
# ----------------------------------------------------------------------------------

# The child: reads (function name, args, kwargs) pickles, calls adlkernels and answers
# ("ok", result, seconds) or ("raised", exception, seconds). Outside sanitizer builds its
# address space is capped, so that a kernel that wrongly asks for huge memory fails
# there (MemoryError or a crash) instead of pushing the machine into swap or the OOM
# killer. Unpickled arrays get their dtype's canonical instance back (view(char)): the
# bindings compare dtypes by identity, and unpickling makes a new, equal dtype object.
_SERVER = r"""
import pickle, resource, sys, time
import numpy as np
import adlkernels as ak
if not ak.build_info()["sanitizers"]:
    resource.setrlimit(resource.RLIMIT_AS, (8 << 30, resource.getrlimit(resource.RLIMIT_AS)[1]))
inp, out = sys.stdin.buffer, sys.stdout.buffer
while True:
    try:
        fn, args, kwargs = pickle.load(inp)
    except EOFError:
        break
    args = [a.view(a.dtype.char) if isinstance(a, np.ndarray) else a for a in args]
    print("calling", fn, kwargs, [getattr(a, "shape", a) for a in args], file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    try:
        res = ("ok", getattr(ak, fn)(*args, **kwargs))
    except (ValueError, MemoryError, TypeError) as e:
        res = ("raised", e)
    pickle.dump(res + (time.perf_counter() - t0,), out)
    out.flush()
"""


class Isolated:
    """adlkernels in a child process: ``iso.call("im2col", x, 3, stride=2)`` returns
    ("ok", result, seconds) or ("raised", exception, seconds); a child that dies or
    runs past `timeout` seconds fails the test, naming the call."""

    def __init__(self, timeout=60.0):
        self.timeout = timeout
        self.proc = None

    def _start(self):
        self.proc = subprocess.Popen([sys.executable, "-c", _SERVER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def call(self, fn, *args, **kwargs):
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        proc = self.proc
        timer = threading.Timer(self.timeout, proc.kill)
        timer.start()
        try:
            pickle.dump((fn, args, kwargs), proc.stdin)
            proc.stdin.flush()
            return pickle.load(proc.stdout)
        except (EOFError, BrokenPipeError):
            rc = proc.wait()
            err = proc.stderr.read().decode(errors="replace")[-3000:]
            self._close_pipes()
            raise AssertionError(f"{fn} killed the process (exit {rc}; "
                                 f"timeout {self.timeout} s):\n{err}") from None
        finally:
            timer.cancel()

    def ok(self, fn, *args, **kwargs):
        """The result of a call that must succeed."""
        status, value, _ = self.call(fn, *args, **kwargs)
        if status != "ok":
            raise AssertionError(f"{fn} raised {value!r}")
        return value

    def close(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        self._close_pipes()

    def _close_pipes(self):
        if self.proc is not None:
            for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
                f.close()
            self.proc = None


_SHARED = Isolated()  # one child for the whole module (hypothesis tests cannot take fixtures)


def teardown_module():
    _SHARED.close()


@pytest.fixture
def iso():
    return _SHARED


class _Die:
    """Unpickling it ends the process that unpickles it."""

    def __reduce__(self):
        return (os._exit, (3,))


def run_isolated(code: str, timeout=120) -> str:
    """Runs `code` (with numpy as np and adlkernels as ak imported) in a fresh Python;
    a crash, a non-zero exit or a timeout fails the test. Returns its stdout."""
    prelude = "import numpy as np\nimport adlkernels as ak\n"
    r = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)],
                       capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, (f"exit {r.returncode} (negative: killed by that signal)\n"
                               f"stdout:\n{r.stdout[-3000:]}\nstderr:\n{r.stderr[-3000:]}")
    return r.stdout


def test_isolated_reports_a_crash():
    """The helpers themselves: a child that dies fails, whatever the way."""
    with pytest.raises(AssertionError, match="exit -6"):
        run_isolated("import os; os.abort()")
    s = Isolated(timeout=5)
    try:
        with pytest.raises(AssertionError, match="exit 3"):
            s.call("im2col", _Die())
        assert s.ok("im2col", np.ones((1, 1, 2, 2)), 1).shape == (1, 1, 4)  # restarted
    finally:
        s.close()


# ----------------------------------------------------------------------------------
# sizes beyond 64 bits, sizes beyond memory
# ----------------------------------------------------------------------------------

_X1 = np.ones((1, 1, 1, 1), np.float32)
_X2 = np.ones((1, 1, 2, 2), np.float32)
_ONE = np.ones((1, 1, 1, 1), np.float32)
_G44 = np.ones((4, 4, 1, 1), np.float32)
_I44 = np.zeros((4, 4, 1, 1), np.int64)

# (id, function, args, kwargs, exception): every size product is checked before anything
# is allocated; a count of elements beyond 2^63 - 1 is a ValueError, one that fits 64
# bits but no memory (terabytes here) a MemoryError.
OVERFLOW_CASES = [
    ("im2col_L", "im2col", (_X2, 1), dict(padding=BIG), ValueError),
    ("im2col_rows", "im2col", (np.ones((1, 8, 1, 1), np.float32), (2**30, 2**30)),
     dict(padding=2**29, stride=BIG), ValueError),
    ("im2col_terabytes", "im2col", (_X1, 1), dict(padding=2**20), MemoryError),
    ("col2im_L", "col2im", (np.ones((1, 1, 4), np.float32), (2, 2), 1), dict(padding=BIG),
     ValueError),
    ("conv2d_L", "conv2d_forward", (_X1, _ONE), dict(padding=BIG), ValueError),
    ("conv2d_terabytes", "conv2d_forward", (_X1, _ONE), dict(padding=2**20), MemoryError),
    ("conv1d_terabytes", "conv1d_forward", (_X1[0], np.ones((1024, 1, 1), np.float32)),
     dict(padding=BIG), MemoryError),
    ("maxpool_bwd_NCHW", "maxpool2d_backward", (_G44, _I44, (BIG, BIG)), {}, ValueError),
    ("unpool_NCHW", "max_unpool2d", (_G44, _I44, (BIG, BIG)), {}, ValueError),
    ("avgpool_bwd_NCHW", "avgpool2d_backward", (_G44, (BIG, BIG), BIG), {}, ValueError),
    ("avgpool_bwd_terabytes", "avgpool2d_backward", (_G44, (2**20, 2**21), (2**20, 2**21)),
     {}, MemoryError),
    ("unpool_terabytes", "max_unpool2d", (_G44, _I44, (2**20, 2**21)), {}, MemoryError),
]


@pytest.mark.parametrize("case", OVERFLOW_CASES, ids=[c[0] for c in OVERFLOW_CASES])
def test_impossible_sizes_raise(case, iso):
    _, fn, args, kwargs, exc = case
    status, value, seconds = iso.call(fn, *args, **kwargs)
    assert status == "raised" and isinstance(value, exc), (status, value)
    assert seconds < 1.0, f"{seconds:.2f} s to refuse"


# ----------------------------------------------------------------------------------
# huge stride / padding / dilation / kernel on tiny inputs: the right result, at a cost
# that does not grow with those arguments
# ----------------------------------------------------------------------------------


def _data(shape, dtype=np.float64, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# (id, x shape, kernel, stride, padding, dilation): every output is small.
CONV_GEOMETRIES = [
    ("pad_stride_max", (1, 1, 2, 2), 3, BIG, BIG, 1),
    ("pixel_pad30_strideMax", (1, 1, 1, 1), 1, BIG, 2**30, 1),
    ("pixel_pad30_stride30", (2, 1, 1, 1), 1, 2**30, 2**30, 1),
    ("stride_1e8", (1, 2, 32, 32), 3, 10**8, 0, 1),
    ("stride_1e8_pad", (1, 1, 32, 32), 3, 10**8, 1, 1),
    ("mixed_pairs", (2, 2, 3, 5), (2, 3), (BIG, 3), (2**30, 1), (1, 2)),
    ("dilation_max", (1, 2, 3, 3), 2, BIG, BIG // 2, BIG),
    ("dilation_pad", (1, 1, 4, 4), (2, 3), 2**30, 2**30, 2**29),
    ("stride_max_only_width", (2, 3, 6, 7), 3, (1, BIG), 1, 1),
    ("stride_gt_input", (1, 2, 9, 9), 2, 7, 3, 2),
]


@pytest.mark.parametrize("case", CONV_GEOMETRIES, ids=[c[0] for c in CONV_GEOMETRIES])
def test_im2col_col2im_hostile_geometry(case, iso):
    _, shape, k, s, p, d = case
    geom = dict(stride=s, padding=p, dilation=d)
    x = _data(shape)
    cols = iso.ok("im2col", x, k, **geom)
    ref = unfold_sparse_ref(x, k, **geom)
    assert cols.shape == ref.shape and np.array_equal(cols, ref)
    g = _data(ref.shape, seed=1)
    back = iso.ok("col2im", g, shape[2:], k, **geom)
    assert_close(back, fold_sparse_ref(g, shape[2:], k, **geom), np.float64)


@pytest.mark.parametrize("case", CONV_GEOMETRIES, ids=[c[0] for c in CONV_GEOMETRIES])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv2d_hostile_geometry(case, dtype, iso):
    _, shape, k, s, p, d = case
    kh, kw = (k, k) if isinstance(k, int) else k
    geom = dict(stride=s, padding=p, dilation=d)
    x, w, b = _data(shape, dtype), _data((3, shape[1], kh, kw), dtype, 1), _data((3,), dtype, 2)
    y = iso.ok("conv2d_forward", x, w, b, **geom)
    assert_close(y, conv2d_sparse_ref(x, w, b, **geom), dtype)
    gy = _data(y.shape, dtype, 3)
    grads = iso.ok("conv2d_backward", gy, x, w, **geom)
    for got, ref, name in zip(grads, conv2d_backward_sparse_ref(gy, x, w, **geom),
                              ("grad_x", "grad_weight", "grad_bias")):
        assert_close(got, ref, dtype, what=name)


@pytest.mark.parametrize("geom", [dict(stride=BIG, padding=2**30), dict(stride=10**8),
                                  dict(stride=2**30, padding=2**30, dilation=2**29)], ids=str)
def test_conv1d_hostile_geometry(geom, iso):
    x, w = _data((2, 3, 5)), _data((4, 3, 3), seed=1)
    y = iso.ok("conv1d_forward", x, w, **geom)
    geom2 = {key: (1 if key != "padding" else 0, v) for key, v in geom.items()}
    assert_close(y, conv2d_sparse_ref(x[:, :, None], w[:, :, None], **geom2)[:, :, 0],
                 np.float64)
    gy = _data(y.shape, seed=2)
    gx, gw, gb = iso.ok("conv1d_backward", gy, x, w, **geom)
    rx, rw, rb = conv2d_backward_sparse_ref(gy[:, :, None], x[:, :, None], w[:, :, None], **geom2)
    for got, ref in ((gx, rx[:, :, 0]), (gw, rw[:, :, 0]), (gb, rb)):
        assert_close(got, ref, np.float64)


# (id, x shape, kernel, stride, padding, dilation, ceil_mode): padding at most half the
# kernel, as PyTorch; a kernel of 2^31 - 1 over a 1x1 input is valid.
POOL_GEOMETRIES = [
    ("kernel_max", (1, 2, 1, 1), BIG, None, BIG // 2, 1, False),
    ("kernel_max_stride_1", (1, 1, 3, 2), BIG, 1, BIG // 2, 1, False),
    ("kernel_max_ceil", (2, 1, 2, 2), BIG, 2**30, 2**30 - 1, 1, True),
    ("stride_max", (1, 2, 5, 6), 3, BIG, 1, 1, True),
    ("stride_1e8", (1, 1, 32, 32), 3, 10**8, 1, 1, False),
    ("dilation_huge", (1, 1, 4, 5), (1, 2**20), (1, 2), (0, 2**19), (2**28, 1), False),
    ("kernel_wide_pairs", (1, 1, 3, 7), (3, 2**30), (2, 2**29), (1, 2**29), 1, True),
]


@pytest.mark.parametrize("case", POOL_GEOMETRIES, ids=[c[0] for c in POOL_GEOMETRIES])
def test_maxpool_hostile_geometry(case, iso):
    _, shape, k, s, p, d, ceil = case
    x = _data(shape)
    y, idx = iso.ok("maxpool2d_forward", x, k, s, p, d, ceil)
    ry, ridx = maxpool2d_sparse_ref(x, k, s, p, d, ceil)
    assert np.array_equal(y, ry) and np.array_equal(idx, ridx)
    gy = _data(y.shape, seed=1)
    gx = iso.ok("maxpool2d_backward", gy, idx, shape)
    assert_close(gx, maxpool2d_backward_ref(gy, idx, shape), np.float64)
    assert np.array_equal(iso.ok("max_unpool2d", gy, idx, shape),
                          max_unpool2d_ref(gy, idx, shape))


@pytest.mark.parametrize("case", [c for c in POOL_GEOMETRIES if c[5] == 1],
                         ids=[c[0] for c in POOL_GEOMETRIES if c[5] == 1])
@pytest.mark.parametrize("cip", [True, False])
def test_avgpool_hostile_geometry(case, cip, iso):
    _, shape, k, s, p, _, ceil = case
    geom = dict(stride=s, padding=p, ceil_mode=ceil, count_include_pad=cip)
    x = _data(shape)
    y = iso.ok("avgpool2d_forward", x, k, **geom)
    assert_close(y, avgpool2d_ref(x, k, **geom), np.float64)
    gy = _data(y.shape, seed=1)
    gx = iso.ok("avgpool2d_backward", gy, shape, k, **geom)
    assert_close(gx, avgpool2d_backward_ref(gy, shape, k, **geom), np.float64)


# (id, function, args, kwargs): each must finish in well under 0.1 s, where the cost
# was once proportional to the stride, the padding or the kernel (seconds, or gigabytes).
FAST_CASES = [
    ("im2col_stride_1e8", "im2col", (_data((1, 1, 32, 32), np.float32), 3), dict(stride=10**8)),
    ("col2im_stride_1e8", "col2im", (_data((1, 9, 1), np.float32), (32, 32), 3),
     dict(stride=10**8)),
    ("conv2d_stride_1e8", "conv2d_forward",
     (_data((2, 3, 32, 32), np.float32), _data((4, 3, 3, 3), np.float32)), dict(stride=10**8)),
    ("conv2d_pad30_strideMax", "conv2d_forward", (_X1, _ONE), dict(padding=2**30, stride=BIG)),
    ("conv2d_bwd_pad30_strideMax", "conv2d_backward",
     (np.ones((1, 1, 2, 2), np.float32), _X1, _ONE), dict(padding=2**30, stride=BIG)),
    ("maxpool_kernel_max", "maxpool2d_forward", (_data((2, 3, 8, 8), np.float32), BIG),
     dict(padding=BIG // 2, stride=1)),
    ("avgpool_kernel_max", "avgpool2d_forward", (_data((2, 3, 8, 8), np.float32), BIG),
     dict(padding=BIG // 2, stride=1)),
    ("avgpool_bwd_kernel_max", "avgpool2d_backward",
     (np.ones((2, 3, 8, 8), np.float32), (8, 8), BIG), dict(padding=BIG // 2, stride=1)),
    # empty batches return at once, whatever the geometry
    ("im2col_batch0", "im2col", (np.ones((0, 1, 1, 1), np.float32), 1),
     dict(padding=2**20, stride=2**20)),
    ("col2im_batch0", "col2im", (np.ones((0, 1, 9), np.float32), (1, 1), 1),
     dict(padding=2**20, stride=2**20)),
    ("maxpool_batch0", "maxpool2d_forward", (np.ones((0, 1, 1, 1), np.float32), BIG),
     dict(padding=BIG // 2)),
    ("avgpool_batch0", "avgpool2d_forward", (np.ones((0, 1, 1, 1), np.float32), BIG),
     dict(padding=BIG // 2)),
    ("conv2d_bwd_batch0", "conv2d_backward",
     (np.ones((0, 1, 3, 3), np.float32), np.ones((0, 1, 1, 1), np.float32), _ONE),
     dict(padding=1)),
]


@pytest.mark.parametrize("case", FAST_CASES, ids=[c[0] for c in FAST_CASES])
def test_cost_does_not_grow_with_geometry(case, iso):
    _, fn, args, kwargs = case
    times = []
    for _ in range(3):  # the best of three: the machine may be busy
        status, value, seconds = iso.call(fn, *args, **kwargs)
        assert status == "ok", value
        times.append(seconds)
    assert min(times) < 0.05, f"{fn}: {min(times):.3f} s"


def test_stride_1e8_result(iso):
    x = _data((1, 1, 32, 32), np.float32)
    cols = iso.ok("im2col", x, 3, stride=10**8)
    assert cols.shape == (1, 9, 1) and np.array_equal(cols, unfold_sparse_ref(x, 3, stride=10**8))


# ----------------------------------------------------------------------------------
# random geometry, huge values included, against the references
# ----------------------------------------------------------------------------------

HUGE = [2**20, 2**30, BIG]


@st.composite
def conv_axis(draw, max_kernel=4):
    """(size, kernel, stride, padding, dilation) along one axis with 1..12 outputs."""
    size = draw(st.integers(1, 6))
    k = draw(st.integers(1, max_kernel))
    d = draw(st.sampled_from([1, 1, 2, 3] + HUGE))
    p = draw(st.sampled_from([0, 0, 1, 2] + HUGE))
    span = size + 2 * p - d * (k - 1) - 1
    assume(span >= 0)
    s_min = max(1, -(-span // 11))  # at most 12 outputs
    assume(s_min <= BIG)
    s = draw(st.sampled_from([1, 2, 3, 10**8, BIG]).filter(lambda v: v >= s_min)
             | st.integers(s_min, BIG))
    return size, k, s, p, d


@st.composite
def pool_axis(draw, dilation=True):
    """Pooling: padding at most half the kernel, kernels up to 2^31 - 1, 1..13 outputs."""
    size = draw(st.integers(1, 6))
    k = draw(st.integers(1, 4) | st.sampled_from(HUGE))
    p = draw(st.sampled_from([0, k // 2, min(1, k // 2), k // 4]))
    d = draw(st.sampled_from([1, 1, 2] + HUGE)) if dilation else 1
    span = size + 2 * p - d * (k - 1) - 1
    assume(span >= 0)
    s_min = max(1, -(-span // 11))
    assume(s_min <= BIG)
    s = draw(st.sampled_from([1, 2, 3, 10**8, BIG]).filter(lambda v: v >= s_min)
             | st.integers(s_min, BIG))
    return size, k, s, p, d


def _split(axes):
    (h, kh, sh, ph, dh), (w, kw, sw, pw, dw) = axes
    return (h, w), (kh, kw), dict(stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw))


@HYPOTHESIS
@given(st.tuples(conv_axis(), conv_axis()), st.integers(0, 2), st.integers(1, 3),
       st.sampled_from([1, 2]), st.sampled_from([np.float32, np.float64]),
       st.integers(0, 2**32 - 1))
def test_conv_random_hostile_geometry(axes, n, cg, groups, dtype, seed):
    hw, k, geom = _split(axes)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, cg * groups) + hw).astype(dtype)
    w = rng.standard_normal((2 * groups, cg) + k).astype(dtype)
    iso = _SHARED
    cols = iso.ok("im2col", x, k, **geom)
    assert np.array_equal(cols, unfold_sparse_ref(x, k, **geom))
    assert_close(iso.ok("col2im", cols, hw, k, **geom), fold_sparse_ref(cols, hw, k, **geom),
                 dtype)
    y = iso.ok("conv2d_forward", x, w, None, groups=groups, **geom)
    assert_close(y, conv2d_sparse_ref(x, w, None, groups=groups, **geom), dtype)
    gy = rng.standard_normal(y.shape).astype(dtype)
    grads = iso.ok("conv2d_backward", gy, x, w, groups=groups, **geom)
    for got, ref in zip(grads, conv2d_backward_sparse_ref(gy, x, w, groups=groups, **geom)):
        assert_close(got, ref, dtype)


@HYPOTHESIS
@given(st.tuples(pool_axis(), pool_axis()), st.booleans(), st.integers(0, 2**32 - 1))
def test_maxpool_random_hostile_geometry(axes, ceil, seed):
    hw, k, geom = _split(axes)
    s, p, d = geom["stride"], geom["padding"], geom["dilation"]
    out = tuple(pool_out_size(n, *a, ceil) for n, a in zip(hw, zip(k, s, p, d)))
    assume(min(out) >= 1)
    x = np.random.default_rng(seed).standard_normal((2, 2) + hw)
    iso = _SHARED
    y, idx = iso.ok("maxpool2d_forward", x, k, s, p, d, ceil)
    ry, ridx = maxpool2d_sparse_ref(x, k, s, p, d, ceil)
    assert np.array_equal(y, ry) and np.array_equal(idx, ridx)
    gx = iso.ok("maxpool2d_backward", y, idx, hw)
    assert_close(gx, maxpool2d_backward_ref(y, idx, hw), np.float64)


@HYPOTHESIS
@given(st.tuples(pool_axis(False), pool_axis(False)), st.booleans(), st.booleans(),
       st.integers(0, 2**32 - 1))
def test_avgpool_random_hostile_geometry(axes, ceil, cip, seed):
    hw, k, geom = _split(axes)
    s, p = geom["stride"], geom["padding"]
    out = tuple(pool_out_size(n, *a, 1, ceil) for n, a in zip(hw, zip(k, s, p)))
    assume(min(out) >= 1)
    kw = dict(stride=s, padding=p, ceil_mode=ceil, count_include_pad=cip)
    x = np.random.default_rng(seed).standard_normal((2, 2) + hw)
    iso = _SHARED
    y = iso.ok("avgpool2d_forward", x, k, **kw)
    assert_close(y, avgpool2d_ref(x, k, **kw), np.float64)
    assert_close(iso.ok("avgpool2d_backward", y, hw, k, **kw),
                 avgpool2d_backward_ref(y, hw, k, **kw), np.float64)


# ----------------------------------------------------------------------------------
# thread count: the new paths stay bitwise identical for 1 and 2 threads
# ----------------------------------------------------------------------------------


def _by_thread_count(iso, calls):
    """{threads: [results of calls]} for 1 and 2 threads, in the child."""
    before = iso.ok("get_num_threads")
    out = {}
    try:
        for threads in (1, 2):
            iso.ok("set_num_threads", threads)
            out[threads] = [iso.ok(fn, *args, **kwargs) for fn, args, kwargs in calls]
    finally:
        iso.ok("set_num_threads", before)
    return out


def _same_bits(a, b):
    if isinstance(a, tuple):
        return all(_same_bits(u, v) for u, v in zip(a, b))
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("geom", [dict(stride=3, padding=50), dict(stride=(1, 40), padding=(1, 30)),
                                  dict(stride=2, padding=1, dilation=(9, 1))], ids=str)
def test_gathered_columns_thread_count_independent(geom, iso):
    """Geometries whose columns are gathered directly (no band), in parallel calls."""
    x = _data((3, 8, 40, 40), np.float32)
    cols = iso.ok("im2col", x, 3, **geom)
    out = _by_thread_count(iso, [("im2col", (x, 3), geom), ("col2im", (cols, (40, 40), 3), geom)])
    assert all(_same_bits(a, b) for a, b in zip(out[1], out[2]))


@pytest.mark.parametrize("geom", [dict(kernel_size=41, padding=20, stride=3),
                                  dict(kernel_size=(3, 2**30), padding=(1, 2**29), stride=2)],
                         ids=str)
def test_pool_huge_kernel_thread_count_independent(geom, iso):
    x = _data((4, 8, 24, 24), np.float32)
    y, idx = iso.ok("maxpool2d_forward", x, **geom)
    a = iso.ok("avgpool2d_forward", x, **geom)
    out = _by_thread_count(iso, [("maxpool2d_forward", (x,), geom), ("avgpool2d_forward", (x,), geom),
                                 ("avgpool2d_backward", (a, x.shape), geom),
                                 ("maxpool2d_backward", (y, idx, x.shape), {})])
    assert all(_same_bits(a, b) for a, b in zip(out[1], out[2]))


# ----------------------------------------------------------------------------------
# allocation failure: MemoryError, not an abort inside a parallel region
# ----------------------------------------------------------------------------------


@pytest.mark.skipif(SANITIZED, reason="RLIMIT_AS does not work under AddressSanitizer")
def test_scratch_allocation_failure_is_memory_error():
    """A column block of ~1 GiB (a 1 x 16384 kernel over a padded row of 32769) for a
    tiny output, with the address space capped 512 MiB above what the process uses:
    the per-thread scratch cannot be allocated. That must raise MemoryError in the
    caller; the process lives on and later calls work."""
    out = run_isolated("""
        import resource
        ak.set_num_threads(2)
        rng = np.random.default_rng(0)
        x, w = np.ones((1, 1, 1, 1), np.float32), np.ones((1, 1, 1, 2**14), np.float32)
        # start the thread team and the BLAS buffers before the cap
        xs, ws = rng.standard_normal((4, 8, 16, 16), np.float32), rng.standard_normal((8, 8, 3, 3), np.float32)
        ys = ak.conv2d_forward(xs, ws, padding=1)
        ak.conv2d_backward(ys, xs, ws, padding=1)
        vm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmSize"))
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (vm * 1024 + (512 << 20), hard))
        for name, call in [
            ("forward", lambda: ak.conv2d_forward(x, w, padding=(0, 2**14))),
            ("backward", lambda: ak.conv2d_backward(np.ones((1, 1, 1, 16386), np.float32), x, w,
                                                    padding=(0, 2**14))),
        ]:
            try:
                call()
                print(name, "no error")
            except MemoryError:
                print(name, "MemoryError")
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        assert np.array_equal(ak.conv2d_forward(xs, ws, padding=1), ys)
        print("alive")
    """)
    assert out.split("\n")[:3] == ["forward MemoryError", "backward MemoryError", "alive"], out


# ----------------------------------------------------------------------------------
# indices rewritten by another thread while the scatter runs
# ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", ["maxpool2d_backward", "max_unpool2d"])
def test_indices_changed_concurrently_never_write_out_of_bounds(fn):
    """A Python thread flips indices of plane 0 between their valid value and H*W (one
    past the plane: a write there would land in plane 1) while the kernel runs with the
    GIL released. Each call must either return exactly the result for the valid
    indices, or raise the ValueError naming the value the kernel read: never a
    corrupted result, never a crash."""
    out = run_isolated(f"""
        import re, threading, time
        ak.set_num_threads(2)
        rng = np.random.default_rng(0)
        x = rng.standard_normal((8, 16, 64, 64))
        y, idx = ak.maxpool2d_forward(x, 2)
        gy = rng.standard_normal(y.shape)
        good = idx.copy()
        expected = ak.{fn}(gy, good, (64, 64))
        flat0 = idx.reshape(8 * 16, -1)[0]          # a view of plane 0
        pos = np.arange(0, flat0.size, 37)
        good_values = flat0[pos].copy()
        bad_value = 64 * 64
        stop = False

        def flipper():
            while not stop:
                flat0[pos] = bad_value
                flat0[pos] = good_values

        t = threading.Thread(target=flipper)
        t.start()
        raised = clean = 0
        deadline = time.time() + 3
        try:
            while time.time() < deadline:
                try:
                    r = ak.{fn}(gy, idx, (64, 64))
                except ValueError as e:
                    assert f"value {{bad_value}} at" in str(e), str(e)
                    raised += 1
                else:
                    assert np.array_equal(r, expected)
                    clean += 1
        finally:
            stop = True
            t.join()
        print(raised, clean)
    """)
    raised, clean = map(int, out.split())
    assert raised + clean > 0
