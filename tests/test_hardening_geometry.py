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

import adlkernels as ak

BIG = 2**31 - 1  # the largest geometry argument (_validate.MAX_GEOM)
SANITIZED = ak.build_info()["sanitizers"]

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
