"""nn family: ak's normalization, loss, dropout and dense-layer kernels against PyTorch
(CPU, same thread count) and plain NumPy.

The issue's cases: batch norm training forward+backward on (64, 64, 32, 32), layer norm
forward+backward on (8192, 512), softmax cross-entropy forward+backward on (1024, 1000),
dropout on 10M elements, linear (256, 1024) x (1024, 1024)^T forward and
forward+backward; and embedding forward and backward on a 30000 x 512 table with a
(64, 50) token batch. All but linear do a few flops per element and are memory-bound: they
report the minimal traffic of the operation (defined per case below) per second, and
that as a share of the machine's measured copy bandwidth (np.copyto, counted the same
way: bytes read + written). Linear is GEMM-bound and reports GFLOP/s against the measured
FMA peak. Target (the issue's): torch/ak >= 1.0 on every case, >= 1.5 on cross-entropy and
dropout.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

import adlkernels as ak

import numpy_nn
from common import (Context, FamilyResult, LoadMeter, markdown_table, text_table,
                    time_interleaved, torch)

TOL = 1e-4            # max |got - ref| / max |ref| per output, against a float64 NumPy run
DROP_P, DROP_SEED = 0.5, 1234
MB = 1e6


@dataclass
class Setup:
    """One case, ready to check and time."""

    fns: dict                   # name -> zero-argument callable (the timed unit)
    outputs: dict               # name -> () -> tuple of numpy arrays (calls fns[name] once)
    reference: tuple | None     # float64 NumPy outputs (None: the case checks itself)
    inputs: list = field(default_factory=list)  # arrays no contender may write into
    check: Callable | None = None  # custom (name, outputs) -> (message, error)


@dataclass(frozen=True)
class Case:
    op: str
    shape: str
    direction: str
    unit: str                   # "bytes" (memory-bound) or "flops"
    work: float                 # minimal bytes moved, or flops
    traffic: str                # how work is counted
    target: float               # issue: minimum torch/ak
    setup: Callable             # (has_torch) -> Setup
    needs: tuple                # _adlk functions the ak contender calls

    @property
    def label(self) -> str:
        return f"{self.op} {self.shape}"


def _np(out):
    """torch tensors / numpy arrays / tuples of them -> tuple of numpy arrays."""
    if not isinstance(out, (tuple, list)):
        out = (out,)
    res = []
    for o in out:
        if torch is not None and isinstance(o, torch.Tensor):
            o = o.detach().numpy()
        res.append(np.asarray(o))
    return tuple(res)


def _f64(*arrays):
    return [a.astype(np.float64) for a in arrays]


def _rel_err(got, ref) -> float:
    if got.shape != ref.shape:
        return float("inf")
    den = max(float(np.abs(ref).max()) if ref.size else 0.0, 1e-30)
    return float(np.abs(got.astype(np.float64) - ref).max() / den) if ref.size else 0.0


def _compare(got: tuple, ref: tuple) -> tuple[str, float]:
    """('' or what is wrong, worst relative error over the outputs)."""
    if len(got) != len(ref):
        return f"{len(got)} outputs, expected {len(ref)}", float("inf")
    bad = [f"output {i} shape {g.shape}, expected {r.shape}"
           for i, (g, r) in enumerate(zip(got, ref)) if g.shape != r.shape]
    if bad:
        return bad[0], float("inf")
    errs = [_rel_err(g, r) for g, r in zip(got, ref)]
    err = max(errs)
    if not np.isfinite(err):
        return "not finite", err
    if err > TOL:
        worst = int(np.argmax(errs))
        return f"max rel err {err:.1e} (output {worst})", err
    return "", err


# ------------------------------------------------------------------------------ cases

def _batchnorm(has_torch: bool) -> Setup:
    """Training-mode batch norm with weight, bias and running statistics, forward then
    backward with a fixed upstream gradient g. Outputs compared: y, grad_x, grad_weight,
    grad_bias, and the running statistics after the call."""
    rng = np.random.default_rng(0)
    shape, c = (64, 64, 32, 32), 64
    x = (rng.standard_normal(shape, dtype=np.float32) * 2 + 0.5).astype(np.float32)
    g = rng.standard_normal(shape, dtype=np.float32)
    w = rng.uniform(0.5, 1.5, c).astype(np.float32)
    b = rng.standard_normal(c, dtype=np.float32)
    rm0 = (rng.standard_normal(c) * 0.1).astype(np.float32)
    rv0 = rng.uniform(0.5, 1.5, c).astype(np.float32)
    mom, eps = 0.1, 1e-5

    rm, rv = rm0.copy(), rv0.copy()

    def ak_fn():
        y, mean, invstd = ak.batchnorm_forward(x, w, b, rm, rv, training=True,
                                               momentum=mom, eps=eps)
        gx, gw, gb = ak.batchnorm_backward(g, x, w, mean, invstd, training=True)
        return y, gx, gw, gb

    nrm, nrv = rm0.copy(), rv0.copy()

    def numpy_fn():
        y, mean, invstd = numpy_nn.batchnorm_forward(x, w, b, nrm, nrv, mom, eps)
        return (y,) + numpy_nn.batchnorm_backward(g, x, w, mean, invstd)

    fns = {"ak": ak_fn}
    outputs = {"ak": lambda: _np(ak_fn()) + (rm.copy(), rv.copy())}
    if has_torch:
        F = torch.nn.functional
        xt = torch.from_numpy(x).requires_grad_()
        wt = torch.from_numpy(w).requires_grad_()
        bt = torch.from_numpy(b).requires_grad_()
        gt = torch.from_numpy(g)
        trm, trv = torch.from_numpy(rm0.copy()), torch.from_numpy(rv0.copy())

        def torch_fn():
            y = F.batch_norm(xt, trm, trv, wt, bt, training=True, momentum=mom, eps=eps)
            return (y,) + torch.autograd.grad(y, (xt, wt, bt), gt)

        fns["torch"] = torch_fn
        outputs["torch"] = lambda: _np(torch_fn()) + (trm.numpy().copy(), trv.numpy().copy())
    fns["numpy"] = numpy_fn
    outputs["numpy"] = lambda: _np(numpy_fn()) + (nrm.copy(), nrv.copy())

    x64, g64, w64, b64 = _f64(x, g, w, b)
    rrm, rrv = _f64(rm0, rv0)
    y, mean, invstd = numpy_nn.batchnorm_forward(x64, w64, b64, rrm, rrv, mom, eps)
    ref = (y,) + numpy_nn.batchnorm_backward(g64, x64, w64, mean, invstd) + (rrm, rrv)
    return Setup(fns, outputs, ref, [x, g, w, b])


def _layernorm(has_torch: bool) -> Setup:
    """Layer norm over the last 512 with weight and bias, forward then backward with a
    fixed upstream gradient. Outputs compared: y, grad_x, grad_weight, grad_bias."""
    rng = np.random.default_rng(1)
    shape, d, eps = (8192, 512), 512, 1e-5
    x = (rng.standard_normal(shape, dtype=np.float32) * 2 + 0.5).astype(np.float32)
    g = rng.standard_normal(shape, dtype=np.float32)
    w = rng.uniform(0.5, 1.5, d).astype(np.float32)
    b = rng.standard_normal(d, dtype=np.float32)

    def ak_fn():
        y, mean, rstd = ak.layernorm_forward(x, (d,), w, b, eps)
        return (y,) + tuple(ak.layernorm_backward(g, x, (d,), mean, rstd, w))

    def numpy_fn():
        y, mean, rstd = numpy_nn.layernorm_forward(x, w, b, eps)
        return (y,) + numpy_nn.layernorm_backward(g, x, mean, rstd, w)

    fns = {"ak": ak_fn}
    if has_torch:
        F = torch.nn.functional
        xt = torch.from_numpy(x).requires_grad_()
        wt = torch.from_numpy(w).requires_grad_()
        bt = torch.from_numpy(b).requires_grad_()
        gt = torch.from_numpy(g)

        def torch_fn():
            y = F.layer_norm(xt, (d,), wt, bt, eps)
            return (y,) + torch.autograd.grad(y, (xt, wt, bt), gt)

        fns["torch"] = torch_fn
    fns["numpy"] = numpy_fn
    outputs = {n: (lambda f=f: _np(f())) for n, f in fns.items()}

    x64, g64, w64, b64 = _f64(x, g, w, b)
    y, mean, rstd = numpy_nn.layernorm_forward(x64, w64, b64, eps)
    ref = (y,) + numpy_nn.layernorm_backward(g64, x64, mean, rstd, w64)
    return Setup(fns, outputs, ref, [x, g, w, b])


def _cross_entropy(has_torch: bool) -> Setup:
    """Softmax cross-entropy, mean over the batch, and its gradient with respect to the
    logits (ak: one fused call; torch: F.cross_entropy then autograd). Outputs compared:
    loss, grad_logits."""
    rng = np.random.default_rng(2)
    bsz, k = 1024, 1000
    logits = (rng.standard_normal((bsz, k), dtype=np.float32) * 3).astype(np.float32)
    targets = rng.integers(0, k, bsz, dtype=np.int64)

    fns = {"ak": lambda: ak.softmax_cross_entropy(logits, targets)}
    if has_torch:
        F = torch.nn.functional
        lt = torch.from_numpy(logits).requires_grad_()
        tt = torch.from_numpy(targets)

        def torch_fn():
            loss = F.cross_entropy(lt, tt)
            return (loss,) + torch.autograd.grad(loss, lt)

        fns["torch"] = torch_fn
    fns["numpy"] = lambda: numpy_nn.softmax_cross_entropy(logits, targets)
    outputs = {n: (lambda f=f: _np(f())) for n, f in fns.items()}
    ref = numpy_nn.softmax_cross_entropy(logits.astype(np.float64), targets)
    return Setup(fns, outputs, ref, [logits, targets])


def _dropout(has_torch: bool) -> Setup:
    """Inverted dropout forward, p = 0.5, on 10M elements. The generators differ (ak:
    Philox by seed; torch: its CPU generator; numpy: its default Generator), so the check
    is per contender: ak's mask equal to the documented Philox mask, bit for bit; every
    contender's kept share within 6 sigma of 1 - p and kept values x / (1 - p)."""
    rng = np.random.default_rng(3)
    n, p = 10_000_000, DROP_P
    x = rng.standard_normal(n, dtype=np.float32)
    x[x == 0] = 1.0  # a zero output then always means dropped
    scale = np.float32(1 / (1 - p))
    fns = {"ak": lambda: ak.dropout_forward(x, p, seed=DROP_SEED)}
    outputs = {"ak": lambda: _np(fns["ak"]())}
    if has_torch:
        F = torch.nn.functional
        xt = torch.from_numpy(x)

        def torch_fn():
            with torch.no_grad():
                return F.dropout(xt, p, training=True)

        fns["torch"] = torch_fn
        outputs["torch"] = lambda: _np(torch_fn())
    nrng = np.random.default_rng(DROP_SEED)
    fns["numpy"] = lambda: numpy_nn.dropout_forward(x, p, nrng)
    outputs["numpy"] = lambda: _np(fns["numpy"]())

    def check(name, out):
        y = out[0]
        if y.shape != x.shape or y.dtype != x.dtype:
            return f"y {y.shape} {y.dtype}, expected {x.shape} {x.dtype}", float("inf")
        kept = y != 0
        msgs = []
        if len(out) > 1:  # a returned mask must match the zeros of y
            mask = out[1]
            if mask.shape != x.shape or mask.dtype != np.bool_:
                return f"mask {mask.shape} {mask.dtype}, expected {x.shape} bool", float("inf")
            if not np.array_equal(mask, kept):
                msgs.append(f"mask != (y != 0) at {int(np.count_nonzero(mask != kept))}")
            kept = mask
        err = _rel_err(np.where(kept, y, 0), np.where(kept, x.astype(np.float64) * float(scale), 0))
        if not np.isfinite(err) or err > TOL:
            msgs.append(f"kept values off x/(1-p): rel err {err:.1e}")
        share = np.count_nonzero(kept) / n
        sigma = np.sqrt(p * (1 - p) / n)
        if abs(share - (1 - p)) > 6 * sigma:
            msgs.append(f"kept share {share:.5f}, expected {1 - p:g}")
        if name == "ak":
            want = numpy_nn.philox_dropout_mask(n, p, DROP_SEED)
            diff = int(np.count_nonzero(kept != want))
            if diff:
                msgs.append(f"mask differs from Philox-4x32-10(seed) at {diff} elements")
        return "; ".join(msgs), err

    return Setup(fns, outputs, None, [x], check)


def _linear_data():
    rng = np.random.default_rng(4)
    bsz, n_in, n_out = 256, 1024, 1024
    bound = 1 / np.sqrt(n_in)
    x = rng.standard_normal((bsz, n_in), dtype=np.float32)
    w = rng.uniform(-bound, bound, (n_out, n_in)).astype(np.float32)
    b = rng.uniform(-bound, bound, n_out).astype(np.float32)
    g = rng.standard_normal((bsz, n_out), dtype=np.float32)
    return x, w, b, g


def _linear(backward: bool):
    def setup(has_torch: bool) -> Setup:
        """y = x W^T + b; forward alone (torch under no_grad) or forward then backward
        (grad_x, grad_weight, grad_bias) with a fixed upstream gradient."""
        x, w, b, g = _linear_data()
        if backward:
            def ak_fn():
                y = ak.linear_forward(x, w, b)
                return (y,) + tuple(ak.linear_backward(g, x, w))

            def numpy_fn():
                return (numpy_nn.linear_forward(x, w, b),) + numpy_nn.linear_backward(g, x, w)
        else:
            ak_fn = lambda: ak.linear_forward(x, w, b)
            numpy_fn = lambda: numpy_nn.linear_forward(x, w, b)
        fns = {"ak": ak_fn}
        if has_torch:
            F = torch.nn.functional
            xt, wt, bt, gt = map(torch.from_numpy, (x, w, b, g))
            if backward:
                xt, wt, bt = (t.requires_grad_() for t in (xt, wt, bt))

                def torch_fn():
                    y = F.linear(xt, wt, bt)
                    return (y,) + torch.autograd.grad(y, (xt, wt, bt), gt)
            else:
                def torch_fn():
                    with torch.no_grad():
                        return F.linear(xt, wt, bt)
            fns["torch"] = torch_fn
        fns["numpy"] = numpy_fn
        outputs = {n: (lambda f=f: _np(f())) for n, f in fns.items()}
        x64, w64, b64, g64 = _f64(x, w, b, g)
        ref = (numpy_nn.linear_forward(x64, w64, b64),)
        if backward:
            ref += numpy_nn.linear_backward(g64, x64, w64)
        return Setup(fns, outputs, ref, [x, w, b, g])
    return setup


def _embedding_data():
    """A vocabulary of 30000 x 512 looked up by a (64, 50) batch of tokens (Zipf-like, so
    some rows repeat and most are unused, as in text)."""
    rng = np.random.default_rng(5)
    w = rng.standard_normal((_EMB_V, _EMB_D), dtype=np.float32)
    idx = np.minimum(rng.zipf(1.2, _EMB_TOKENS) - 1, _EMB_V - 1).astype(np.int64).reshape(64, 50)
    g = rng.standard_normal((64, 50, _EMB_D), dtype=np.float32)
    return idx, w, g


def _embedding(backward: bool):
    def setup(has_torch: bool) -> Setup:
        """Forward: y = weight[indices] (torch: F.embedding under no_grad). Backward alone:
        grad_weight from grad_y (torch: aten.embedding_dense_backward, the dense weight
        gradient F.embedding's autograd runs, without a forward)."""
        idx, w, g = _embedding_data()
        if backward:
            fns = {"ak": lambda: ak.embedding_backward(g, idx, _EMB_V),
                   "numpy": lambda: numpy_nn.embedding_backward(g, idx, _EMB_V)}
        else:
            fns = {"ak": lambda: ak.embedding_forward(idx, w),
                   "numpy": lambda: numpy_nn.embedding_forward(idx, w)}
        if has_torch:
            F = torch.nn.functional
            it, wt, gt = map(torch.from_numpy, (idx, w, g))
            if backward:
                def torch_fn():
                    return torch.ops.aten.embedding_dense_backward(gt, it, _EMB_V, -1, False)
            else:
                def torch_fn():
                    with torch.no_grad():
                        return F.embedding(it, wt)
            fns["torch"] = torch_fn
        outputs = {n: (lambda f=f: _np(f())) for n, f in fns.items()}
        if backward:
            ref = (numpy_nn.embedding_backward(g.astype(np.float64), idx, _EMB_V),)
        else:
            ref = (numpy_nn.embedding_forward(idx, w.astype(np.float64)),)
        return Setup(fns, outputs, ref, [idx, w, g])
    return setup


_EMB_V, _EMB_D, _EMB_TOKENS = 30000, 512, 64 * 50
_BN = 64 * 64 * 32 * 32 * 4
_LN = 8192 * 512 * 4
_LIN_FLOPS = 2 * 256 * 1024 * 1024
CASES = [
    Case("batchnorm", "64x64x32x32", "train fwd+bwd", "bytes", 5 * _BN,
         "fwd: x read, y written; bwd: x, grad_y read, grad_x written (5 x 16.8 MB)",
         1.0, _batchnorm, ("batchnorm_forward", "batchnorm_backward")),
    Case("layernorm", "8192x512", "fwd+bwd", "bytes", 5 * _LN,
         "fwd: x read, y written; bwd: x, grad_y read, grad_x written (5 x 16.8 MB)",
         1.0, _layernorm, ("layernorm_forward", "layernorm_backward")),
    Case("cross_entropy", "1024x1000", "fwd+bwd", "bytes", 2 * 1024 * 1000 * 4 + 1024 * 8,
         "logits read, grad_logits written, int64 targets read", 1.5, _cross_entropy,
         ("softmax_cross_entropy",)),
    Case("dropout", "10M p=0.5", "fwd", "bytes", 10_000_000 * 9,
         "x read, y written (float32), bool mask written", 1.5, _dropout,
         ("dropout_forward",)),
    Case("linear", "256x1024 -> 1024", "fwd", "flops", _LIN_FLOPS,
         "2*B*I*O", 1.0, _linear(False), ("linear_forward",)),
    Case("linear", "256x1024 -> 1024", "fwd+bwd", "flops", 3 * _LIN_FLOPS,
         "fwd + grad_x + grad_weight GEMMs, 3 x 2*B*I*O (bias sums not counted)", 1.0,
         _linear(True), ("linear_forward", "linear_backward")),
    Case("embedding", "30000x512 [64x50]", "fwd", "bytes", 2 * _EMB_TOKENS * _EMB_D * 4 + _EMB_TOKENS * 8,
         "rows read, y written, int64 indices read", 1.0, _embedding(False), ("embedding_forward",)),
    Case("embedding", "30000x512 [64x50]", "bwd", "bytes",
         _EMB_TOKENS * _EMB_D * 4 + _EMB_V * _EMB_D * 4 + _EMB_TOKENS * 8,
         "grad_y read, grad_weight written, int64 indices read", 1.0, _embedding(True),
         ("embedding_backward",)),
]

HEADERS = ["case", "dir", "work", "ak ms", "rate", "% ref", "torch ms", "torch/ak",
           "numpy ms", "numpy/ak", "target", "check"]

NOTES = f"""\
Float32, random data. batchnorm: `ak.batchnorm_forward(training=True)` (weight, bias,
running statistics updated in place, momentum 0.1) then `ak.batchnorm_backward`;
layernorm: `ak.layernorm_forward/backward` over the last 512 with weight and bias;
cross_entropy: `ak.softmax_cross_entropy` (mean; loss and grad_logits in one call);
dropout: `ak.dropout_forward(p=0.5, seed=...)` (y and a bool mask); linear:
`ak.linear_forward` with bias, fwd+bwd adds `ak.linear_backward` (grad_x, grad_weight,
grad_bias). fwd+bwd uses a fixed random upstream gradient g. torch (same thread count):
`F.batch_norm(training=True)`, `F.layer_norm`, `F.cross_entropy`, `F.dropout(training=True)`,
`F.linear`, `F.embedding` (its backward: `aten.embedding_dense_backward`, the dense weight
gradient alone; ak: `ak.embedding_backward`); the gradients through `torch.autograd.grad(y, (x, weight, bias),
grad_outputs=g)` (the gradient of (y*g).sum() without timing the extra product and
sum; cross-entropy: of the loss w.r.t. the logits); forward-only cases under `no_grad`.
numpy = `bench/numpy_nn.py`, the formulas as whole-array NumPy expressions (dropout:
NumPy's default Generator). Every call returns fresh arrays, for every contender.
Memory-bound cases report MB, the minimal traffic (each large input read once, each
output written once; (C,)/(rows,)-sized vectors ignored): batchnorm and layernorm
fwd+bwd: fwd x read + y written, bwd x + grad_y read + grad_x written (5 x 16.8 MB);
cross_entropy: logits read + grad_logits written + targets; dropout: x read + y written
+ 1-byte mask written (9 B per element); embedding fwd: rows read + y written + indices,
bwd: grad_y read + the whole grad_weight written + indices; GB/s: that over ak's time; % ref: of the
np.copyto bandwidth above (one thread, 256 MiB, counted alike; L3-sized cases and a
multi-threaded kernel can pass 100%). linear: GFLOP (2*B*I*O per GEMM: fwd 1, fwd+bwd 3)
over ak's time, % ref of threads x the single-core FMA peak. Correctness first: every contender's outputs
(y, gradients, running statistics, loss) are compared with a float64 run of the NumPy
code (max abs error / max abs value <= {TOL:g}) and ak's directly with torch's; dropout
(generators differ): kept share within 6 sigma of 1 - p, kept values x / (1 - p), ak's
mask equal to the documented Philox-4x32-10 mask of its seed. A contender that raises is
not timed; one off the reference is timed and flagged. target (the issue's): torch/ak >=
1.0, >= 1.5 on cross_entropy and dropout."""

LEGEND = ("work: minimal MB moved (memory-bound) or GFLOP (linear); rate: GB/s or GFLOP/s "
          "of ak; % ref: of the np.copyto bandwidth (read + written)\nor of the FMA peak; "
          "X/ak: time ratios, > 1 = adlkernels faster; target: issue minimum torch/ak, ok/MISS "
          "in this run;\ncheck: contenders off the float64 NumPy reference (or, dropout, the "
          "statistical / Philox checks).")


# ------------------------------------------------------------------------------- run

def _fmt_ms(t):
    return "-" if t is None else f"{t * 1e3:.3g}" if t * 1e3 < 100 else f"{t * 1e3:.0f}"


def _fmt_ratio(r):
    return "-" if r is None else f"{r:.2f}"


def _missing(case: Case) -> list:
    return [f"_adlk.{f}" for f in case.needs if not hasattr(ak._adlk, f)]


def _short(e: Exception) -> str:
    return f"raised {type(e).__name__}: {(str(e).splitlines() or [''])[0][:120]}"


def _check_case(case: Case, s: Setup) -> tuple[dict, dict, dict, float | None]:
    """Call every contender once and check it. Returns (timeable fns, {name: problem},
    {name: error}, ak-vs-torch relative error or None)."""
    copies = [a.copy() for a in s.inputs]
    fns, problems, errors, got = {}, {}, {}, {}
    missing = _missing(case)
    for name, fn in s.fns.items():
        if name == "ak" and missing:
            problems[name] = "not built: no " + ", ".join(missing)
            continue
        try:
            out = s.outputs[name]()
        except Exception as e:  # noqa: BLE001 - reported, not timed
            problems[name] = _short(e)
            continue
        got[name] = out
        msg, err = s.check(name, out) if s.check else _compare(out, s.reference)
        errors[name] = err
        if msg:
            problems[name] = msg
        fns[name] = fn
        if not all(np.array_equal(a, c) for a, c in zip(s.inputs, copies)):
            problems[name] = "; ".join(filter(None, (problems.get(name), "wrote into its inputs")))
            for a, c in zip(s.inputs, copies):
                np.copyto(a, c)
    vs_torch = None
    if s.check is None and "ak" in got and "torch" in got:
        _, vs_torch = _compare(got["ak"], tuple(o.astype(np.float64) for o in got["torch"]))
        if vs_torch > TOL and "ak" not in problems:
            problems["ak"] = f"off torch: max rel err {vs_torch:.1e}"
    return fns, problems, errors, vs_torch


def _target(case: Case, r_torch, ak_ok: bool) -> dict:
    if not ak_ok:
        met, text = False, "FAIL (ak)"
    elif r_torch is None:
        met, text = None, "?"
    else:
        met = r_torch >= case.target
        text = f"{case.target:.1f}x " + ("ok" if met else "MISS")
    return {"torch_over_ak_min": case.target, "met": met, "text": text}


def run(ctx: Context) -> FamilyResult:
    rows = []
    for case in CASES:
        s = case.setup(ctx.has_torch)
        fns, problems, errors, vs_torch = _check_case(case, s)
        errs = " ".join(f"{n} {e:.1e}" for n, e in errors.items())
        print(f"  {case.label:30s} {case.direction:13s} check: max rel err {errs or '-'}"
              + "".join(f"  [!] {n}: {m}" for n, m in problems.items()), flush=True)
        if not fns:
            continue
        budgets = {n: ctx.slow_budget if n == "numpy" else ctx.budget for n in fns}
        with LoadMeter() as load:
            st = time_interleaved(fns, budgets, rounds=ctx.rounds)
        t_ak = st["ak"].median if "ak" in st else None
        ratio = lambda n: st[n].median / t_ak if (t_ak and n in st) else None
        rate = pct = None
        if t_ak:
            if case.unit == "bytes":
                rate = case.work / t_ak / 1e9
                pct = 100 * rate / ctx.copy_gbps if ctx.copy_gbps else None
            else:
                rate = case.work / t_ak / 1e9
                pct = 100 * rate / ctx.fma_peak_gflops
        ak_ok = "ak" in st and "ak" not in problems
        target = _target(case, ratio("torch"), ak_ok)
        row = {
            "case": case.label, "op": case.op, "shape": case.shape, "dir": case.direction,
            "dtype": "float32", "unit": case.unit,
            "bytes" if case.unit == "bytes" else "flops": case.work,
            "work_counted": case.traffic,
            "max_rel_err_vs_float64_ref": errors, "ak_vs_torch_max_rel_err": vs_torch,
            "check_failures": problems,
            ("ak_gbps" if case.unit == "bytes" else "ak_gflops"): rate,
            ("ak_pct_copy" if case.unit == "bytes" else "ak_pct_peak"): pct,
            "time_s": {n: v.to_json() for n, v in st.items()},
            "ratio_torch_over_ak": ratio("torch"), "ratio_numpy_over_ak": ratio("numpy"),
            "target": target,
            "cpu_load": load.to_json(),
        }
        if case.unit == "bytes":
            row["gbps"] = {n: case.work / v.median / 1e9 for n, v in st.items()}
        rows.append(row)
        unit = "GB/s" if case.unit == "bytes" else "GFLOP/s"
        rate_txt = "-" if rate is None else f"{rate:6.1f} {unit}"
        pct_txt = "" if pct is None else f" {pct:3.0f}%"
        times = " ".join(f"{n} {_fmt_ms(v.median)} ms" for n, v in st.items() if n != "ak")
        print(f"  {case.label:30s} {case.direction:13s} ak {_fmt_ms(t_ak):>6s} ms {rate_txt}"
              f"{pct_txt}  {times}  torch/ak {_fmt_ratio(ratio('torch'))} "
              f"numpy/ak {_fmt_ratio(ratio('numpy'))} target {target['text']}"
              + load.warning(), flush=True)
        del s, fns
        gc.collect()

    table = []
    for r in rows:
        t = r["time_s"]
        med = lambda n: t[n]["median"] if n in t else None
        if r["unit"] == "bytes":
            work, rate, pct, ref = f"{r['bytes'] / MB:.1f} MB", r["ak_gbps"], r["ak_pct_copy"], "copy"
            rate_txt = "-" if rate is None else f"{rate:.1f} GB/s"
        else:
            work, rate, pct, ref = f"{r['flops'] / 1e9:.2f} GFLOP", r["ak_gflops"], r["ak_pct_peak"], "peak"
            rate_txt = "-" if rate is None else f"{rate:.1f} GFLOP/s"
        table.append([
            r["case"], r["dir"], work, _fmt_ms(med("ak")), rate_txt,
            "-" if pct is None else f"{pct:.0f}% {ref}",
            _fmt_ms(med("torch")), _fmt_ratio(r["ratio_torch_over_ak"]),
            _fmt_ms(med("numpy")), _fmt_ratio(r["ratio_numpy_over_ak"]),
            r["target"]["text"],
            "ok" if not r["check_failures"] else "FAIL: " + "; ".join(
                f"{n} {m}" for n, m in r["check_failures"].items()),
        ])
    return FamilyResult(rows=rows, text=text_table(HEADERS, table),
                        markdown=markdown_table(HEADERS, table), notes=NOTES, legend=LEGEND)
