"""pool family: ak's max/avg pooling kernels against torch and a NumPy reference.

Pooling does next to no arithmetic: these kernels are memory-bound, so the table
reports bandwidth, the minimum bytes an operation has to move (each input read once,
each output written once) per second, and that as a share of the machine's measured
copy bandwidth (np.copyto, counted the same way: bytes read + written).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import adlkernels as ak

import numpy_pool
from common import (Context, FamilyResult, LoadMeter, markdown_table, text_table,
                    time_interleaved, torch)


@dataclass(frozen=True)
class PoolCase:
    x: tuple          # (N, C, H, W)
    k: int
    stride: int
    padding: int = 0

    @property
    def shape(self) -> str:
        return "x".join(map(str, self.x))

    @property
    def pool(self) -> str:
        return f"{self.k}x{self.k} s{self.stride}" + (f" p{self.padding}" if self.padding else "")

    def out_hw(self):
        return tuple((n + 2 * self.padding - self.k) // self.stride + 1 for n in self.x[2:])

    @property
    def overlapping(self) -> bool:
        return self.k > self.stride


# float32: a small-CNN feature map and a mid-network one, each with the two usual
# poolings: 2x2/s2 (non-overlapping) and 3x3/s2/p1 (overlapping, ResNet's stem).
CASES = [
    PoolCase((64, 32, 28, 28), 2, 2),
    PoolCase((64, 32, 28, 28), 3, 2, 1),
    PoolCase((32, 128, 32, 32), 2, 2),
    PoolCase((32, 128, 32, 32), 3, 2, 1),
]

OPS = ["max fwd", "max bwd", "unpool", "avg fwd", "avg bwd"]

HEADERS = ["shape", "pool", "op", "MB", "ak ms", "GB/s", "% copy",
           "torch ms", "torch/ak", "numpy ms", "numpy/ak"]

NOTES = """\
Float32, random normal data (no ties, no NaN). max fwd = maxpool2d_forward (values + int64
indices; torch: `max_pool2d(return_indices=True)`), max bwd = maxpool2d_backward from grad_y
and the indices (torch: `aten.max_pool2d_with_indices_backward` alone, what autograd runs),
unpool = max_unpool2d of the pooled values to the input size, avg fwd/bwd =
avgpool2d_forward/backward (count_include_pad=True; torch: `avg_pool2d`,
`aten.avg_pool2d_backward`). MB: the minimum traffic, inputs read + outputs written once
each (max fwd: x + y + indices; max bwd: grad_y + indices + grad_x; unpool: x + indices
+ y; avg fwd: x + y; avg bwd: grad_y + grad_x); GB/s: that over ak's time; % copy: of the
np.copyto bandwidth above (one thread, 256 MiB, counted alike). The inputs (6-17 MB) are
L3-sized, so % copy can pass 100%. Every contender is checked against adlkernels first
(max values, unpool and non-overlapping max bwd: exact; indices: equal or a tie; sums:
relative error < 1e-5). numpy = `bench/numpy_pool.py` (window copies + argmax for max,
strided-view sums for average, bincount / fancy indexing for the scatters)."""

LEGEND = ("MB: minimum bytes moved (inputs read + outputs written); GB/s: that / ak time; "
          "% copy: of the np.copyto\nbandwidth above (read + written, one thread, 256 MiB); "
          "X/ak ratios > 1: adlkernels faster.")


def _as_numpy(out):
    if isinstance(out, tuple):
        return tuple(_as_numpy(o) for o in out)
    return out.numpy() if torch is not None and isinstance(out, torch.Tensor) else np.asarray(out)


def _compare(got, ref, tol: float) -> tuple[str, float | None]:
    """('' or what is wrong, max |got - ref| / max |ref|, None when the shapes differ);
    tol 0 asks for equality."""
    if got.shape != ref.shape or got.dtype != ref.dtype:
        return f"shape/dtype {got.shape} {got.dtype}, expected {ref.shape} {ref.dtype}", None
    err = float(np.abs(got.astype(np.float64) - ref).max() / max(np.abs(ref).max(), 1e-30))
    if tol == 0:
        bad = int(np.count_nonzero(got != ref))
        return (f"{bad} values differ" if bad else ""), err
    return (f"max rel err {err:.1e}" if err > tol else ""), err


def _check_max_forward(got, ref, x) -> tuple[str, float]:
    """Values equal; indices equal, or pointing at an equal value (a tie)."""
    (y, idx), (y_ref, idx_ref) = got, ref
    msg, err = _compare(y, y_ref, 0)
    if msg or idx.shape != idx_ref.shape or idx.dtype != np.int64:
        return msg or f"indices {idx.shape} {idx.dtype}, expected {idx_ref.shape} int64", err
    n, c, h, w = x.shape
    planes = x.reshape(n * c, -1)
    ig, ir = idx.reshape(n * c, -1), idx_ref.reshape(n * c, -1)
    outside = int(np.count_nonzero((ig < 0) | (ig >= h * w)))
    if outside:
        return f"{outside} indices outside the plane", err
    differ = ig != ir
    ties = np.take_along_axis(planes, ig, 1) == np.take_along_axis(planes, ir, 1)
    wrong = int(np.count_nonzero(differ & ~ties))
    return (f"{wrong} indices differ (not ties)" if wrong else ""), err


def _ops(case: PoolCase, has_torch: bool):
    """{op: (bytes moved, {name: zero-argument callable}, check(got, ref))}."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(case.x, dtype=np.float32)
    k, s, p = case.k, case.stride, case.padding
    # The inputs of backward and unpool come from the NumPy reference, independent of
    # the kernels under test (identical to ak's and torch's forward: no ties).
    y, idx = numpy_pool.maxpool2d_forward(x, k, s, p)
    gy = rng.standard_normal(y.shape, dtype=np.float32)
    hw = case.x[2:]

    exact = lambda got, ref: _compare(got, ref, 0)
    close = lambda got, ref: _compare(got, ref, 1e-5)
    ops = {
        "max fwd": (x.nbytes + y.nbytes + idx.nbytes, {
            "ak": lambda: ak.maxpool2d_forward(x, k, s, p),
            "numpy": lambda: numpy_pool.maxpool2d_forward(x, k, s, p),
        }, lambda got, ref: _check_max_forward(got, ref, x)),
        "max bwd": (gy.nbytes + idx.nbytes + x.nbytes, {
            "ak": lambda: ak.maxpool2d_backward(gy, idx, case.x),
            "numpy": lambda: numpy_pool.maxpool2d_backward(gy, idx, case.x, case.overlapping),
        }, close if case.overlapping else exact),
        "unpool": (y.nbytes + idx.nbytes + x.nbytes, {
            "ak": lambda: ak.max_unpool2d(y, idx, hw),
            "numpy": lambda: numpy_pool.max_unpool2d(y, idx, hw),
        }, exact),
        "avg fwd": (x.nbytes + y.nbytes, {
            "ak": lambda: ak.avgpool2d_forward(x, k, s, p),
            "numpy": lambda: numpy_pool.avgpool2d_forward(x, k, s, p),
        }, close),
        "avg bwd": (gy.nbytes + x.nbytes, {
            "ak": lambda: ak.avgpool2d_backward(gy, case.x, k, s, p),
            "numpy": lambda: numpy_pool.avgpool2d_backward(gy, case.x, k, s, p),
        }, close),
    }
    if has_torch:
        F, aten = torch.nn.functional, torch.ops.aten
        xt, yt, idxt, gyt = map(torch.from_numpy, (x, y, idx, gy))
        kk, ss, pp = [k, k], [s, s], [p, p]

        def max_fwd():
            with torch.no_grad():
                return F.max_pool2d(xt, k, s, p, return_indices=True)

        def max_bwd():
            with torch.no_grad():
                return aten.max_pool2d_with_indices_backward(gyt, xt, kk, ss, pp, [1, 1],
                                                             False, idxt)

        def unpool():
            with torch.no_grad():
                return F.max_unpool2d(yt, idxt, k, s, p, output_size=hw)

        def avg_fwd():
            with torch.no_grad():
                return F.avg_pool2d(xt, k, s, p)

        def avg_bwd():
            with torch.no_grad():
                return aten.avg_pool2d_backward(gyt, xt, kk, ss, pp, False, True, None)

        for op, fn in zip(OPS, (max_fwd, max_bwd, unpool, avg_fwd, avg_bwd)):
            ops[op][1]["torch"] = fn
    return ops


def _fmt_ms(t):
    return "-" if t is None else f"{t * 1e3:.3g}" if t * 1e3 < 100 else f"{t * 1e3:.0f}"


def _fmt_ratio(r):
    return "-" if r is None else f"{r:.2f}"


def run(ctx: Context) -> FamilyResult:
    missing = [f for f in ("maxpool2d_forward", "maxpool2d_backward", "max_unpool2d",
                           "avgpool2d_forward", "avgpool2d_backward") if not hasattr(ak, f)]
    if missing:
        raise RuntimeError(f"adlkernels {ak.__version__} has no {', '.join(missing)}: "
                           "install a build with the pooling kernels")
    rows = []
    for case in CASES:
        for op, (nbytes, fns, check) in _ops(case, ctx.has_torch).items():
            # Correctness first: every contender against adlkernels; a contender that
            # fails or raises is reported and not timed.
            ref = _as_numpy(fns["ak"]())
            problems, errors = {}, {}
            for name in [n for n in fns if n != "ak"]:
                try:
                    msg, err = check(_as_numpy(fns[name]()), ref)
                except Exception as e:  # noqa: BLE001 - reported, not fatal
                    msg, err = f"raised {type(e).__name__}: {e}", None
                    del fns[name]
                errors[name] = err
                if msg:
                    problems[name] = msg
            budgets = {n: ctx.slow_budget if n == "numpy" else ctx.budget for n in fns}
            with LoadMeter() as load:
                st = time_interleaved(fns, budgets, rounds=ctx.rounds)
            t_ak = st["ak"].median
            gbps = nbytes / t_ak / 1e9
            ratio = lambda n: st[n].median / t_ak if n in st else None
            row = {
                "case": f"{case.shape} {case.pool}", "x": case.x, "kernel": case.k,
                "stride": case.stride, "padding": case.padding, "dtype": "float32",
                "op": op, "bytes": nbytes,
                "max_rel_err_vs_ak": errors, "check_failures": problems,
                "ak_gbps": gbps,
                "ak_pct_copy": 100 * gbps / ctx.copy_gbps if ctx.copy_gbps else None,
                "gbps": {n: nbytes / s.median / 1e9 for n, s in st.items()},
                "time_s": {n: s.to_json() for n, s in st.items()},
                "ratio_torch_over_ak": ratio("torch"),
                "ratio_numpy_over_ak": ratio("numpy"),
                "cpu_load": load.to_json(),
            }
            rows.append(row)
            flag = "".join(f"  [!] {n} vs ak: {m}" for n, m in problems.items())
            flag += load.warning()
            print(f"  {row['case']:26s} {op:8s} ak {_fmt_ms(t_ak):>6s} ms {gbps:5.1f} GB/s "
                  f"torch/ak {_fmt_ratio(row['ratio_torch_over_ak'])} "
                  f"numpy/ak {_fmt_ratio(row['ratio_numpy_over_ak'])}{flag}", flush=True)

    table = []
    for r in rows:
        t = r["time_s"]
        med = lambda n: t[n]["median"] if n in t else None
        pct = r["ak_pct_copy"]
        table.append([
            "x".join(map(str, r["x"])), r["case"].split(" ", 1)[1], r["op"],
            f"{r['bytes'] / 1e6:.1f}", _fmt_ms(med("ak")), f"{r['ak_gbps']:.1f}",
            "-" if pct is None else f"{pct:.0f}%",
            _fmt_ms(med("torch")), _fmt_ratio(r["ratio_torch_over_ak"]),
            _fmt_ms(med("numpy")), _fmt_ratio(r["ratio_numpy_over_ak"]),
        ])
    return FamilyResult(rows=rows, text=text_table(HEADERS, table),
                        markdown=markdown_table(HEADERS, table), notes=NOTES, legend=LEGEND)
