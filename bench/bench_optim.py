"""optim family: ak's fused optimizer steps against torch.optim and in-place NumPy.

An optimizer step does a handful of flops per parameter and moves every parameter,
gradient and state value through memory once: it is memory-bound. The table reports
the minimal traffic of a step (each of param, grad and state read once, param and state
written once) per second, and that as a share of the machine's measured copy bandwidth
(np.copyto, counted the same way: bytes read + written). 10M float32 parameters, as one
tensor, 100 tensors and 1000 tensors: the last is where per-tensor overheads (Python
loops, kernel launches, parallel regions per tensor) show.
"""

from __future__ import annotations

import gc
import itertools
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

import adlkernels as ak

import numpy_optim
from common import (Context, FamilyResult, LoadMeter, markdown_table, text_table,
                    time_interleaved, torch)


@dataclass(frozen=True)
class Layout:
    label: str
    tensors: int
    numel: int            # elements per tensor

    @property
    def params(self) -> int:
        return self.tensors * self.numel


@dataclass(frozen=True)
class Optim:
    name: str
    bytes_per_param: int  # minimal traffic per float32 parameter and step
    step_fn: str          # ak / numpy_optim step function
    kwargs: dict          # its hyper-parameters (besides step)
    states: tuple         # (step-function keyword, torch.optim state key) per state array
    cls_kwargs: dict = field(default_factory=dict)  # ak.optim.<name>(params, **) and torch.optim.<name>


LR = 1e-3
LAYOUTS = [
    Layout("1x10M", 1, 10_000_000),
    Layout("100x100k", 100, 100_000),
    Layout("1000x10k", 1000, 10_000),
]
# Default hyper-parameters except lr (and AdamW's weight decay, its default 0.01 spelled
# out). Minimal traffic: Adam reads p, g, m, v and writes p, m, v (7 x 4 B); SGD with
# momentum, RMSprop (plain) and Adagrad read p, g and one state, write p and the state.
OPTIMS = [
    Optim("Adam", 28, "adam_step", dict(lr=LR),
          (("exp_avgs", "exp_avg"), ("exp_avg_sqs", "exp_avg_sq")), dict(lr=LR)),
    Optim("AdamW", 28, "adam_step", dict(lr=LR, weight_decay=0.01, decoupled_weight_decay=True),
          (("exp_avgs", "exp_avg"), ("exp_avg_sqs", "exp_avg_sq")),
          dict(lr=LR, weight_decay=0.01)),
    Optim("SGD", 20, "sgd_step", dict(lr=LR, momentum=0.9),
          (("momentum_buffers", "momentum_buffer"),), dict(lr=LR, momentum=0.9)),
    Optim("RMSprop", 20, "rmsprop_step", dict(lr=LR), (("square_avgs", "square_avg"),),
          dict(lr=LR)),
    Optim("Adagrad", 20, "adagrad_step", dict(lr=LR), (("state_sums", "sum"),), dict(lr=LR)),
]

# torch.optim variants: the default single-tensor loop, the multi-tensor (foreach) one
# and the fused kernel, where the installed torch has one for the CPU.
TORCH_VARIANTS = {"torch loop": {"foreach": False}, "torch foreach": {"foreach": True},
                  "torch fused": {"fused": True}}
TARGET_PCT_COPY = 85.0
P_TOL = 5e-3   # params: max |p - p_ref| / max |p_ref - p_initial| (of the update; 1 ulp of
               # the largest |p| is ~2.5e-4 of an Adam update of lr=1e-3)
S_TOL = 1e-5   # state arrays: max |s - s_ref| / max |s_ref|
CHECK_STEPS = 2  # step 1 is special (SGD buffers start as the gradient), step 2 is not
# Pause and untimed warm-up before each timed block. The harness's default 0.25 s pause
# lets OpenBLAS's workers stop spinning; no contender here calls a BLAS, and the OpenMP
# workers of ak and torch go quiet within 10 ms of a step (measured: process CPU time
# during the pause). The data (120-160 MB a step) never fits a cache, so a few warm-up
# steps (thread pools awake) are all a warm-up can do.
SETTLE_S, WARMUP_S = 0.05, 0.05

HEADERS = ["layout", "optim", "MB", "ak ms", "GB/s", "% copy", "loop/ak", "foreach/ak",
           "fused/ak", "numpy/ak", "wrap/ak", "target", "check"]

NOTES = f"""\
10M float32 parameters as 1 tensor of 10M, 100 of 100k and 1000 of 10k (1-D, 64-byte
aligned, random normal params and gradients; the gradients stay fixed over the timed
steps, params and state keep changing). Hyper-parameters: PyTorch's defaults except
lr={LR:g}: Adam; AdamW (weight_decay 0.01); SGD momentum 0.9; RMSprop (alpha 0.99, not
centered, no momentum); Adagrad. ak = the step function (`ak.adam_step` etc., one call
for all tensors, step counted by the benchmark); wrap/ak = the stateful wrapper
`ak.optim.<X>(params).step(grads)` over that. torch = `torch.optim.<X>` with
`foreach=False` (loop: the CPU default), `foreach=True` and `fused=True` ("n/a" where
this torch has no fused CPU kernel), `.grad` set once. numpy = `bench/numpy_optim.py`:
torch's single-tensor equations as in-place ufuncs with `out=` and a preallocated
scratch array per tensor. MB: the minimal traffic of one step (Adam/AdamW 28 B per
parameter: p, g, m, v read, p, m, v written; SGD momentum, RMSprop, Adagrad 20 B);
GB/s: that over ak's time; % copy: of the np.copyto bandwidth above (one thread, 256
MiB, counted alike; a multi-threaded step can pass 100%). target (the issue's): >=
{TARGET_PCT_COPY:g}% of the copy bandwidth and faster than every torch variant. check:
every contender runs {CHECK_STEPS} steps from the same initial state first and is compared with
torch's loop (params relative to the update size <= {P_TOL:g}, state <= {S_TOL:g}); a
contender that raises is not timed. Timing as the other families (interleaved blocks,
medians), with a {SETTLE_S:g} s pause and {WARMUP_S:g} s warm-up per block (no BLAS here)."""

LEGEND = ("MB: minimal bytes per step (param, grad, state read once; param, state written "
          "once); GB/s: that / ak time; % copy: of\nthe np.copyto bandwidth (read + written); "
          "X/ak: time ratios, > 1 = adlkernels' step function faster (loop/foreach/fused: "
          "torch.optim\nforeach=False/True, fused=True; wrap/ak: ak.optim wrapper over the step "
          f"function, '-' with --quick); target: >= {TARGET_PCT_COPY:g}% copy and faster than every torch "
          "variant;\ncheck: contenders off torch's loop after the first steps.")


# ------------------------------------------------------------------------------ arrays

def _empty(n: int, align: int = 64) -> np.ndarray:
    """Uninitialised float32 array of n elements starting on an `align`-byte boundary."""
    buf = np.empty(n * 4 + align, np.uint8)
    off = (-buf.ctypes.data) % align
    return buf[off:off + n * 4].view(np.float32)


def _zeros(n: int) -> np.ndarray:
    a = _empty(n)
    a.fill(0)
    return a


@dataclass
class Contender:
    step: Callable[[], object]
    params: list                       # numpy arrays (views of what the step updates)
    states: Callable[[], dict]         # {step-function keyword: [numpy arrays]}, after a step


def _ak_contender(opt: Optim, params, grads) -> Contender:
    fn = getattr(ak, opt.step_fn)
    states = {kw: [_zeros(p.size) for p in params] for kw, _ in opt.states}
    count = itertools.count(1)
    kwargs = dict(opt.kwargs, **states)
    return Contender(lambda: fn(params, grads, step=next(count), **kwargs), params,
                     lambda: states)


def _ak_wrapper_contender(opt: Optim, params, grads) -> Contender:
    o = getattr(ak.optim, opt.name)(params, **opt.cls_kwargs)
    return Contender(lambda: o.step(grads), params,
                     lambda: {kw: o.state[kw] for kw, _ in opt.states})


def _numpy_contender(opt: Optim, params, grads) -> Contender:
    fn = getattr(numpy_optim, opt.step_fn)
    states = {kw: [_zeros(p.size) for p in params] for kw, _ in opt.states}
    scratch = [_empty(p.size) for p in params]
    count = itertools.count(1)
    kwargs = dict(opt.kwargs, **states)
    return Contender(lambda: fn(params, grads, step=next(count), scratch=scratch, **kwargs),
                     params, lambda: states)


def _torch_contender(opt: Optim, variant: dict, params, grads) -> Contender:
    tp = [torch.from_numpy(p).requires_grad_() for p in params]
    for t, g in zip(tp, grads):
        t.grad = torch.from_numpy(g)
    o = getattr(torch.optim, opt.name)(tp, **opt.cls_kwargs, **variant)

    def states():
        return {kw: [o.state[t][key].detach().numpy() for t in tp] for kw, key in opt.states}

    return Contender(o.step, params, states)


_TORCH_SUPPORT: dict = {}


def _torch_unsupported(opt: Optim, name: str) -> str | None:
    """Why torch.optim.<opt> cannot run this variant here (None: it can), from trying it
    on a tiny tensor."""
    key = (opt.name, name)
    if key not in _TORCH_SUPPORT:
        try:
            t = torch.zeros(8, requires_grad=True)
            t.grad = torch.ones(8)
            getattr(torch.optim, opt.name)([t], **opt.cls_kwargs, **TORCH_VARIANTS[name]).step()
            _TORCH_SUPPORT[key] = None
        except Exception as e:  # noqa: BLE001 - an unsupported variant is reported as n/a
            _TORCH_SUPPORT[key] = f"{type(e).__name__}: {e}"
    return _TORCH_SUPPORT[key]


# ------------------------------------------------------------------------------ checks

def _rel_err(got: list, ref: list, tmp: list, base: list | None = None) -> float:
    """max |got - ref| over all tensors / max |ref - base| (base None: max |ref|), in
    float32 through the scratch arrays tmp (the difference of two close float32 values is
    exact; no 10M-element float64 temporaries)."""
    num = den = 0.0
    for i, (g, r) in enumerate(zip(got, ref, strict=True)):
        t = tmp[i]
        np.abs(np.subtract(g, r, out=t), out=t)
        num = max(num, float(t.max()))
        if base is None:
            np.abs(r, out=t)
        else:
            np.abs(np.subtract(r, base[i], out=t), out=t)
        den = max(den, float(t.max()))
    return num / max(den, 1e-30)


def _check(c: Contender, ref: Contender, p_init: list, tmp: list) -> tuple[str, dict]:
    """('' or what is wrong, {"params": error relative to the update, "state": worst
    state error relative to its size})."""
    err_p = _rel_err(c.params, ref.params, tmp, p_init)
    got, want = c.states(), ref.states()
    err_s = max((_rel_err(got[k], want[k], tmp) for k in want), default=0.0)
    errs = {"params": err_p, "state": err_s}
    if not (np.isfinite(err_p) and np.isfinite(err_s)):
        return "not finite", errs
    msg = []
    if err_p > P_TOL:
        msg.append(f"params err {err_p:.1e}")
    if err_s > S_TOL:
        msg.append(f"state err {err_s:.1e}")
    return ", ".join(msg), errs


# ------------------------------------------------------------------------------- cases

def _setup(layout: Layout, opt: Optim, params0, grads, work, tmp, has_torch):
    """Contenders for one case, each on its own param arrays (reset to params0), checked
    over CHECK_STEPS steps against torch's loop (or, without torch, NumPy); tmp: scratch
    arrays shaped as the params.

    Returns (contenders, {name: why not timed}, {name: errors}, {name: problem},
    the reference's name or None)."""
    unavailable, makers = {}, {"ak": lambda P: _ak_contender(opt, P, grads)}
    if has_torch:
        for name, variant in TORCH_VARIANTS.items():
            why = _torch_unsupported(opt, name)
            if why is None:
                makers[name] = lambda P, v=variant: _torch_contender(opt, v, P, grads)
            else:
                unavailable[name] = "n/a (" + why.splitlines()[0][:80] + ")"
    makers["numpy"] = lambda P: _numpy_contender(opt, P, grads)
    makers["ak wrap"] = lambda P: _ak_wrapper_contender(opt, P, grads)

    g_copy = [g.copy() for g in grads]
    contenders, problems, errors = {}, {}, {}
    for name, make in makers.items():
        P = work[name]
        for p, p0 in zip(P, params0):
            np.copyto(p, p0)
        try:
            c = make(P)
            for _ in range(CHECK_STEPS):
                c.step()
            contenders[name] = c
        except Exception as e:  # noqa: BLE001 - reported, not timed
            problems[name] = f"raised {type(e).__name__}: {str(e).splitlines()[0][:120]}"
        if not all(np.array_equal(g, g0) for g, g0 in zip(grads, g_copy)):
            raise RuntimeError(f"{name} wrote into the gradients ({layout.label} {opt.name})")
    ref_name = next((n for n in ("torch loop", "numpy") if n in contenders), None)
    if ref_name is not None:
        for name, c in contenders.items():
            if name == ref_name:
                continue
            msg, err = _check(c, contenders[ref_name], params0, tmp)
            errors[name] = err
            if msg:
                problems[name] = msg
    return contenders, unavailable, errors, problems, ref_name


def _fmt_ms(t):
    return "-" if t is None else f"{t * 1e3:.3g}" if t * 1e3 < 100 else f"{t * 1e3:.0f}"


def _fmt_ratio(r):
    return "-" if r is None else f"{r:.2f}"


def _target(pct_copy, ratios: dict, torch_names) -> dict:
    """The issue's target: >= TARGET_PCT_COPY % of the copy bandwidth and faster than every
    torch variant that ran. {"met": bool or None (no copy bandwidth), "bandwidth_met",
    "not_faster_than": [torch variants], "text": "ok" / "MISS (...)"}."""
    bw_ok = None if pct_copy is None else pct_copy >= TARGET_PCT_COPY
    slower = [n for n in torch_names if ratios.get(n) is not None and ratios[n] <= 1]
    met = None if bw_ok is None else bw_ok and not slower
    why = ([] if bw_ok else ["bw"]) + [n.split()[-1] for n in slower]
    text = "?" if met is None else "ok" if met else "MISS (" + ", ".join(why) + ")"
    return {"pct_copy_min": TARGET_PCT_COPY, "bandwidth_met": bw_ok,
            "not_faster_than": slower, "met": met, "text": text}


def _missing() -> list:
    api = [f for f in ("sgd_step", "adagrad_step", "rmsprop_step", "adam_step") if not hasattr(ak, f)]
    if not hasattr(ak, "optim"):
        return api + ["optim"]
    api += [f"optim.{c}" for c in ("SGD", "Adagrad", "RMSprop", "Adam", "AdamW")
            if not hasattr(ak.optim, c)]
    core = [f"_adlk.{f}" for f in ("sgd_step", "adagrad_step", "rmsprop_step", "adam_step")
            if not hasattr(ak._adlk, f)]
    return api + core


def run(ctx: Context) -> FamilyResult:
    missing = _missing()
    if missing:
        raise RuntimeError(f"adlkernels {ak.__version__} has no {', '.join(missing)}: "
                           "install a build with the optimizer kernels")
    torch_names = list(TORCH_VARIANTS) if ctx.has_torch else []
    names = ["ak"] + torch_names + ["numpy", "ak wrap"]
    # run.py --quick (one round, ~0.15 s per measurement) must stay under a minute: there
    # the wrapper is checked but not timed (its overhead is a dict of keywords per step).
    smoke = ctx.rounds == 1 and ctx.budget.fixed_reps is None and ctx.budget.target_s < 0.5
    rows = []
    for layout in LAYOUTS:
        rng = np.random.default_rng(0)
        params0 = [rng.standard_normal(layout.numel, dtype=np.float32) for _ in range(layout.tensors)]
        grads = []
        for _ in range(layout.tensors):
            g = _empty(layout.numel)
            g[...] = rng.standard_normal(layout.numel, dtype=np.float32)
            grads.append(g)
        # each contender's own params, allocated once per layout, reset for every optimizer
        work = {n: [_empty(layout.numel) for _ in range(layout.tensors)] for n in names}
        tmp = [_empty(layout.numel) for _ in range(layout.tensors)]  # for the checks
        for opt in OPTIMS:
            nbytes = opt.bytes_per_param * layout.params
            contenders, unavailable, errors, problems, ref_name = _setup(
                layout, opt, params0, grads, work, tmp, ctx.has_torch)
            case = f"{layout.label} {opt.name}"
            if "ak" not in contenders:
                print(f"  {case:20s} skipped: ak {problems.get('ak')}", flush=True)
                rows.append({"case": case, "layout": layout.label, "optimizer": opt.name,
                             "skipped": problems.get("ak"), "check_failures": problems})
                continue
            fns = {n: c.step for n, c in contenders.items() if not (smoke and n == "ak wrap")}
            budgets = {n: ctx.slow_budget if n == "numpy" else ctx.budget for n in fns}
            with LoadMeter() as load:
                st = time_interleaved(fns, budgets, rounds=ctx.rounds, settle_s=SETTLE_S,
                                      warmup_s=WARMUP_S)
            t_ak = st["ak"].median
            gbps = nbytes / t_ak / 1e9
            pct = 100 * gbps / ctx.copy_gbps if ctx.copy_gbps else None
            ratios = {n: s.median / t_ak for n, s in st.items() if n != "ak"}
            target = _target(pct, ratios, torch_names)
            row = {
                "case": case, "layout": layout.label, "tensors": layout.tensors,
                "numel_per_tensor": layout.numel, "params": layout.params, "dtype": "float32",
                "optimizer": opt.name, "hyper": opt.kwargs, "bytes_per_param": opt.bytes_per_param,
                "bytes": nbytes, "check_reference": ref_name, "check_steps": CHECK_STEPS,
                "max_err_vs_reference": errors, "check_failures": problems,
                "unavailable": unavailable,
                "ak_gbps": gbps, "ak_pct_copy": pct,
                "gbps": {n: nbytes / s.median / 1e9 for n, s in st.items()},
                "time_s": {n: s.to_json() for n, s in st.items()},
                "ratio_over_ak": ratios,
                "target": target,
                "cpu_load": load.to_json(),
            }
            rows.append(row)
            flag = "".join(f"  [!] {n}: {m}" for n, m in problems.items()) + load.warning()
            rtxt = " ".join(f"{n.split()[-1]}/ak "
                            + ("n/a" if n in unavailable else _fmt_ratio(ratios.get(n)))
                            for n in torch_names + ["numpy", "ak wrap"])
            pct_txt = "" if pct is None else f" {pct:3.0f}%"
            print(f"  {case:20s} ak {_fmt_ms(t_ak):>6s} ms {gbps:5.1f} GB/s{pct_txt} {rtxt} "
                  f"target {target['text']}{flag}", flush=True)
            del contenders, fns
            gc.collect()
        del params0, grads, work, tmp
        gc.collect()

    table = []
    for r in rows:
        if "skipped" in r:
            table.append([r["layout"], r["optimizer"]] + ["-"] * (len(HEADERS) - 4)
                         + ["-", "FAIL: ak " + str(r["skipped"])])
            continue
        ratio = lambda n: (r["ratio_over_ak"].get(n) if n not in r["unavailable"] else "n/a")
        fmt = lambda v: v if isinstance(v, str) else _fmt_ratio(v)
        pct = r["ak_pct_copy"]
        table.append([
            r["layout"], r["optimizer"], f"{r['bytes'] / 1e6:.0f}",
            _fmt_ms(r["time_s"]["ak"]["median"]), f"{r['ak_gbps']:.1f}",
            "-" if pct is None else f"{pct:.0f}%",
            fmt(ratio("torch loop")), fmt(ratio("torch foreach")), fmt(ratio("torch fused")),
            fmt(ratio("numpy")), fmt(ratio("ak wrap")),
            r["target"]["text"],
            "ok" if not r["check_failures"] else "FAIL: " + ", ".join(
                f"{n} {m}" for n, m in r["check_failures"].items()),
        ])
    return FamilyResult(rows=rows, text=text_table(HEADERS, table),
                        markdown=markdown_table(HEADERS, table), notes=NOTES, legend=LEGEND)
