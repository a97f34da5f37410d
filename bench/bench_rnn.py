"""rnn family: ak's recurrent kernels (LSTM/GRU/RNN cells, whole-sequence LSTM, additive
attention) against torch.nn's modules and a NumPy loop.

Every case runs forward alone (fwd) and forward followed by backward with a fixed
upstream gradient (fwd+bwd), the unit a training step pays for. The table reports ak's
GFLOP/s (every GEMM counted 2*M*N*K) against the measured FMA peak, and the share of
ak's time its GEMMs alone would take: the same GEMM shapes timed as plain matrix
products (torch.mm, same thread count), the rest being pointwise work and overheads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

import adlkernels as ak

import numpy_rnn
from common import (Context, FamilyResult, LoadMeter, markdown_table, text_table,
                    time_interleaved, torch)

# (M, K, N, a stored transposed, b stored transposed, calls): C (M, N) = A (M, K) @ B (K, N),
# A and B as the layer holds them (W (G*H, I) used as W^T is "b transposed").
Gemm = tuple


@dataclass(frozen=True)
class RnnCase:
    kind: str              # lstm_cell, lstm_seq, gru_cell, gru_seq, rnn_cell, attention
    dims: dict
    gemms_fwd: tuple
    gemms_bwd: tuple
    # issue targets: minimum torch/ak and numpy/ak per direction (None: none set)
    targets: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.kind} " + " ".join(f"{k}{v}" for k, v in self.dims.items())

    def gemms(self, direction: str) -> tuple:
        return self.gemms_fwd + (self.gemms_bwd if direction == "fwd+bwd" else ())

    def flops(self, direction: str) -> int:
        return sum(2 * m * k * n * calls for m, k, n, _, _, calls in self.gemms(direction))


def _cell_gemms(bsz, n_in, hid, gates):
    """One cell step: gates = x W_ih^T + h W_hh^T; backward dx = dG W_ih, dh = dG W_hh,
    dW_ih = dG^T x, dW_hh = dG^T h."""
    g = gates * hid
    fwd = ((bsz, n_in, g, False, True, 1), (bsz, hid, g, False, True, 1))
    bwd = ((bsz, g, n_in, False, False, 1), (bsz, g, hid, False, False, 1),
           (g, bsz, n_in, True, False, 1), (g, bsz, hid, True, False, 1))
    return fwd, bwd


def _seq_gemms(steps, bsz, n_in, hid, gates=4):
    """What lstm_forward/backward (gru_*: gates=3) do: the input projection of all T*B
    rows in one GEMM, h W_hh^T once per step; backward: dG W_hh once per step, then dx,
    dW_ih, dW_hh as one GEMM each over all T*B rows."""
    g, rows = gates * hid, steps * bsz
    fwd = ((rows, n_in, g, False, True, 1), (bsz, hid, g, False, True, steps))
    bwd = ((bsz, g, hid, False, False, steps), (rows, g, n_in, False, False, 1),
           (g, rows, n_in, True, False, 1), (g, rows, hid, True, False, 1))
    return fwd, bwd


def _attention_gemms(bsz, steps, dq, dk, att):
    """The two projections (query W_q^T, keys W_k^T over all T*B rows) and their backward
    (dquery, dW_q, dkeys, dW_k). The scores (v . tanh) and the context (a weighted sum
    over t) are batched matrix-vector products: not counted, they are in the pointwise
    share."""
    rows = steps * bsz
    fwd = ((bsz, dq, att, False, True, 1), (rows, dk, att, False, True, 1))
    bwd = ((bsz, att, dq, False, False, 1), (att, bsz, dq, True, False, 1),
           (rows, att, dk, False, False, 1), (att, rows, dk, True, False, 1))
    return fwd, bwd


B, I, H, T = 64, 128, 256, 50
CELL_TARGETS = {"fwd": (1.0, 5.0), "fwd+bwd": (1.0, 5.0)}
CASES = [
    RnnCase("lstm_cell", dict(B=B, I=I, H=H), *_cell_gemms(B, I, H, 4), CELL_TARGETS),
    RnnCase("lstm_seq", dict(T=T, B=B, I=I, H=H), *_seq_gemms(T, B, I, H),
            {"fwd": (None, 5.0), "fwd+bwd": (1.2, 5.0)}),
    RnnCase("gru_cell", dict(B=B, I=I, H=H), *_cell_gemms(B, I, H, 3), CELL_TARGETS),
    RnnCase("gru_seq", dict(T=T, B=B, I=I, H=H), *_seq_gemms(T, B, I, H, 3),
            {"fwd": (1.2, None), "fwd+bwd": (1.2, None)}),  # issue 19: torch only
    # extras, no target in the issue
    RnnCase("rnn_cell", dict(B=B, I=I, H=H), *_cell_gemms(B, I, H, 1)),
    RnnCase("attention", dict(B=64, T=50, Dq=256, Dk=256, A=128),
            *_attention_gemms(64, 50, 256, 256, 128)),
]
DIRECTIONS = ("fwd", "fwd+bwd")
TOL = 1e-4  # max |got - ref| / max |ref| per output array, against a float64 NumPy reference

HEADERS = ["case", "dir", "ak ms", "GFLOP/s", "% peak", "GEMM ms", "GEMM %", "pw %",
           "torch ms", "torch/ak", "numpy ms", "numpy/ak", "target", "check"]

NOTES = f"""\
Float32, with both biases, B={B}, I={I}, H={H}; whole sequence T={T}. fwd: the forward
alone (torch under `no_grad`); fwd+bwd: forward, then backward of all outputs with a
fixed random upstream gradient, giving the gradients of every input, weight and bias
(ak: `*_forward` then `*_backward` on its cache; torch: `torch.autograd.grad` of the
module's outputs with respect to inputs and parameters). Contenders: lstm_cell =
`ak.lstm_cell_forward/backward` vs `torch.nn.LSTMCell`; lstm_seq = `ak.lstm_forward/
backward` (gradients from y, h_n and c_n) vs `torch.nn.LSTM(num_layers=1)`; gru_cell vs
`torch.nn.GRUCell`; gru_seq = `ak.gru_forward/backward` (gradients from y and h_n) vs
`torch.nn.GRU(num_layers=1)`; rnn_cell (tanh) vs `torch.nn.RNNCell`; attention = `ak.additive_
attention_forward/backward` (no mask; gradients from context and weights) vs the
formula written in torch ops with autograd. numpy = `bench/numpy_rnn.py`: the textbook
equations in NumPy, a Python loop over time steps (sequence input projection and the
BPTT dx / weight gradients hoisted into one GEMM each). Every contender is checked once
against a float64 run of the NumPy code before any timing (all outputs and gradients,
max abs error / max abs value <= {TOL:g}). GFLOP/s: 2*M*N*K summed over the GEMMs
(LSTM cell fwd 2*B*4H*(I+H), its backward twice that; the sequence T times a cell;
attention: the two projections, scores and context not counted), over ak's time; % peak:
of threads x the single-core FMA peak above. GEMM ms: those GEMMs alone, each shape timed as a plain
`torch.mm` call (MKL, same thread count; the per-step GEMMs T times), interleaved with the
contenders; GEMM % = GEMM ms / ak ms, pw % = the rest: pointwise work (gate
nonlinearities, cell update, bias sums, softmax) and overheads. An estimate: ak runs its
GEMMs in its own thread tiles (float32 sequences: the recurrent and LSTM input products
through its packed-weight micro-kernel, the rest through OpenBLAS), fused with the
pointwise pass, so GEMM % above 100 means ak's GEMMs run faster than the plain calls.
target: the issue's minimum torch/ak / numpy/ak ratios ("-": none), and whether this run
met them."""

LEGEND = ("GFLOP/s: GEMM flops / ak time; % peak: of threads x one core's FMA peak; GEMM ms: the same GEMMs as "
          "plain torch.mm calls;\nGEMM % = GEMM ms / ak ms, pw % = 100 - GEMM % (pointwise + "
          "overheads); X/ak ratios > 1: adlkernels faster;\ntarget: issue minimum torch/ak / "
          "numpy/ak ('-': none), ok/MISS in this run; check: contenders off the float64 "
          "reference.")


# ------------------------------------------------------------------------ problem data

def _data(case: RnnCase, rng) -> dict:
    """Inputs, weights (torch's default init range), upstream gradients; float32."""
    f32 = np.float32
    u = lambda shape, s: rng.uniform(-s, s, shape).astype(f32)
    n = lambda *shape: rng.standard_normal(shape, dtype=f32)
    d = case.dims
    if case.kind == "attention":
        bsz, steps, dq, dk, att = d["B"], d["T"], d["Dq"], d["Dk"], d["A"]
        return dict(query=n(bsz, dq), keys=n(steps, bsz, dk), w_query=u((att, dq), dq ** -0.5),
                    w_key=u((att, dk), dk ** -0.5), v=u((att,), att ** -0.5),
                    g_context=n(bsz, dk), g_weights=n(bsz, steps))
    bsz, n_in, hid = d["B"], d["I"], d["H"]
    gates = {"lstm_cell": 4, "lstm_seq": 4, "gru_cell": 3, "gru_seq": 3, "rnn_cell": 1}[case.kind]
    s = hid ** -0.5
    out = dict(h=u((bsz, hid), 1.0), c=u((bsz, hid), 1.0),
               w_ih=u((gates * hid, n_in), s), w_hh=u((gates * hid, hid), s),
               b_ih=u((gates * hid,), s), b_hh=u((gates * hid,), s),
               g_h=n(bsz, hid), g_c=n(bsz, hid))
    if case.kind in ("lstm_seq", "gru_seq"):
        out.update(x=n(d["T"], bsz, n_in), g_y=n(d["T"], bsz, hid))
    else:
        out["x"] = n(bsz, n_in)
    return out


# ------------------------------------------------------------------------- contenders

def _ak(case, v):
    """{direction: zero-argument callable}: fwd returns the outputs, fwd+bwd the gradients."""
    x, h, c, wi, wh, bi, bh = (v.get(k) for k in ("x", "h", "c", "w_ih", "w_hh", "b_ih", "b_hh"))
    if case.kind == "lstm_cell":
        fwd = lambda: ak.lstm_cell_forward(x, h, c, wi, wh, bi, bh)
        return {"fwd": lambda: fwd()[:2],
                "fwd+bwd": lambda: ak.lstm_cell_backward(v["g_h"], v["g_c"], fwd()[2])}
    if case.kind == "lstm_seq":
        fwd = lambda: ak.lstm_forward(x, h, c, wi, wh, bi, bh)
        return {"fwd": lambda: fwd()[:3],
                "fwd+bwd": lambda: ak.lstm_backward(v["g_y"], v["g_h"], v["g_c"], fwd()[3])}
    if case.kind == "gru_seq":
        fwd = lambda: ak.gru_forward(x, h, wi, wh, bi, bh)
        return {"fwd": lambda: fwd()[:2],
                "fwd+bwd": lambda: ak.gru_backward(v["g_y"], v["g_h"], fwd()[2])}
    if case.kind in ("gru_cell", "rnn_cell"):
        f, b = ((ak.gru_cell_forward, ak.gru_cell_backward) if case.kind == "gru_cell" else
                (ak.rnn_cell_forward, ak.rnn_cell_backward))
        return {"fwd": lambda: f(x, h, wi, wh, bi, bh)[:1],
                "fwd+bwd": lambda: b(v["g_h"], f(x, h, wi, wh, bi, bh)[1])}
    args = tuple(v[k] for k in ("query", "keys", "w_query", "w_key", "v"))
    return {"fwd": lambda: ak.additive_attention_forward(*args)[:2],
            "fwd+bwd": lambda: ak.additive_attention_backward(
                v["g_context"], v["g_weights"], ak.additive_attention_forward(*args)[2])}


def _numpy(case, v, dtype=np.float32):
    """The NumPy loop, in dtype (float64: the correctness reference)."""
    v = {k: a.astype(dtype) for k, a in v.items()}
    N = numpy_rnn
    x, h, c, wi, wh, bi, bh = (v.get(k) for k in ("x", "h", "c", "w_ih", "w_hh", "b_ih", "b_hh"))
    if case.kind == "lstm_cell":
        fwd = lambda: N.lstm_cell_forward(x, h, c, wi, wh, bi, bh)
        return {"fwd": lambda: fwd()[:2],
                "fwd+bwd": lambda: N.lstm_cell_backward(v["g_h"], v["g_c"], fwd()[2])}
    if case.kind == "lstm_seq":
        fwd = lambda: N.lstm_forward(x, h, c, wi, wh, bi, bh)
        return {"fwd": lambda: fwd()[:3],
                "fwd+bwd": lambda: N.lstm_backward(v["g_y"], v["g_h"], v["g_c"], fwd()[3])}
    if case.kind == "gru_seq":
        fwd = lambda: N.gru_forward(x, h, wi, wh, bi, bh)
        return {"fwd": lambda: fwd()[:2],
                "fwd+bwd": lambda: N.gru_backward(v["g_y"], v["g_h"], fwd()[2])}
    if case.kind in ("gru_cell", "rnn_cell"):
        f, b = ((N.gru_cell_forward, N.gru_cell_backward) if case.kind == "gru_cell" else
                (N.rnn_cell_forward, N.rnn_cell_backward))
        return {"fwd": lambda: f(x, h, wi, wh, bi, bh)[:1],
                "fwd+bwd": lambda: b(v["g_h"], f(x, h, wi, wh, bi, bh)[1])}
    args = tuple(v[k] for k in ("query", "keys", "w_query", "w_key", "v"))
    return {"fwd": lambda: N.additive_attention_forward(*args)[:2],
            "fwd+bwd": lambda: N.additive_attention_backward(
                v["g_context"], v["g_weights"], N.additive_attention_forward(*args)[2])}


def _torch_attention(query, keys, w_query, w_key, v):
    """Additive attention written in torch ops (what one writes with autograd)."""
    act = torch.tanh(keys @ w_key.T + (query @ w_query.T)[None])   # (T, B, A)
    weights = torch.softmax((act @ v).T, dim=1)                     # (B, T)
    return torch.einsum("bt,tbd->bd", weights, keys), weights


def _torch(case, v):
    """torch.nn modules holding the same weights; fwd under no_grad, fwd+bwd through
    torch.autograd.grad (no .grad accumulation, no retained graph)."""
    t = {k: torch.from_numpy(a) for k, a in v.items()}
    if case.kind == "attention":
        leaves = [t[k].clone().requires_grad_() for k in ("query", "keys", "w_query", "w_key", "v")]
        grads_out = (t["g_context"], t["g_weights"])

        def fwd():
            with torch.no_grad():
                return _torch_attention(*leaves)

        def fwd_bwd():
            return torch.autograd.grad(_torch_attention(*leaves), leaves, grads_out)

        return {"fwd": fwd, "fwd+bwd": fwd_bwd}

    n_in, hid = case.dims["I"], case.dims["H"]
    nn = torch.nn
    mod = {"lstm_cell": lambda: nn.LSTMCell(n_in, hid), "lstm_seq": lambda: nn.LSTM(n_in, hid),
           "gru_cell": lambda: nn.GRUCell(n_in, hid), "gru_seq": lambda: nn.GRU(n_in, hid),
           "rnn_cell": lambda: nn.RNNCell(n_in, hid, nonlinearity="tanh")}[case.kind]()
    params = list(mod.parameters())  # weight_ih, weight_hh, bias_ih, bias_hh
    with torch.no_grad():
        for p, k in zip(params, ("w_ih", "w_hh", "b_ih", "b_hh"), strict=True):
            p.copy_(t[k])
    x = t["x"].clone().requires_grad_()
    if case.kind == "lstm_seq":  # torch.nn.LSTM wants (num_layers, B, H) states
        h, c = (t[k][None].clone().requires_grad_() for k in ("h", "c"))
        call = lambda: (lambda y, hc: (y, *hc))(*mod(x, (h, c)))
        leaves = [x, h, c]
        grads_out = (t["g_y"], t["g_h"][None], t["g_c"][None])
    elif case.kind == "gru_seq":  # torch.nn.GRU wants a (num_layers, B, H) state
        h = t["h"][None].clone().requires_grad_()
        call = lambda: mod(x, h)
        leaves = [x, h]
        grads_out = (t["g_y"], t["g_h"][None])
    elif case.kind == "lstm_cell":
        h, c = (t[k].clone().requires_grad_() for k in ("h", "c"))
        call = lambda: mod(x, (h, c))
        leaves = [x, h, c]
        grads_out = (t["g_h"], t["g_c"])
    else:
        h = t["h"].clone().requires_grad_()
        call = lambda: (mod(x, h),)
        leaves = [x, h]
        grads_out = (t["g_h"],)

    def fwd():
        with torch.no_grad():
            return call()

    def fwd_bwd():
        return torch.autograd.grad(call(), leaves + params, grads_out)

    return {"fwd": fwd, "fwd+bwd": fwd_bwd}


def _gemm_proxy(gemms, seed=1):
    """The GEMMs alone: one plain call per GEMM (torch.mm into a preallocated output;
    without torch np.dot, NumPy's BLAS at the same thread count)."""
    rng = np.random.default_rng(seed)
    ops = []
    for m, k, n, ta, tb, calls in gemms:
        a = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
        b = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)
        a, b = (a.T if ta else a), (b.T if tb else b)
        c = np.empty((m, n), np.float32)
        if torch is not None:
            a, b, c = torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(c)
        ops.append((a, b, c, calls))
    if torch is not None:
        mm = torch.mm

        def run():
            for a, b, c, calls in ops:
                for _ in range(calls):
                    mm(a, b, out=c)
    else:
        def run():
            for a, b, c, calls in ops:
                for _ in range(calls):
                    np.dot(a, b, out=c)
    return run


# ------------------------------------------------------------------------------ checks

def _to_numpy(a):
    if torch is not None and isinstance(a, torch.Tensor):
        return a.detach().numpy()
    return np.asarray(a)


def _check(got, ref) -> tuple[str, float | None]:
    """('' or what is wrong, worst relative error over the arrays)."""
    got = [g for g in got if g is not None]
    if len(got) != len(ref):
        return f"{len(got)} arrays, expected {len(ref)}", None
    worst = 0.0
    for i, (g, r) in enumerate(zip(got, ref)):
        g = _to_numpy(g)
        if g.size != r.size:
            return f"output {i}: shape {g.shape}, expected {r.shape}", None
        if g.dtype != np.float32:
            return f"output {i}: dtype {g.dtype}, expected float32", None
        err = float(np.abs(g.reshape(r.shape).astype(np.float64) - r).max()
                    / max(np.abs(r).max(), 1e-30))
        if not np.isfinite(err):
            return f"output {i}: not finite", None
        worst = max(worst, err)
    return (f"max rel err {worst:.1e}" if worst > TOL else ""), worst


def _row_target(row):
    t = row["target"]
    return None if t is None else (t["torch_over_ak"], t["numpy_over_ak"])


def _fmt_ms(t):
    return "-" if t is None else f"{t * 1e3:.3g}" if t * 1e3 < 100 else f"{t * 1e3:.0f}"


def _fmt_ratio(r):
    return "-" if r is None else f"{r:.2f}"


def _target_text(target, r_torch, r_numpy):
    if target is None:
        return "-", None
    t_torch, t_numpy = target
    met = all(r is not None and r >= t for t, r in ((t_torch, r_torch), (t_numpy, r_numpy))
              if t is not None)
    spec = f"{'-' if t_torch is None else f'{t_torch:.1f}'}/{'-' if t_numpy is None else f'{t_numpy:g}'}"
    return f"{spec} {'ok' if met else 'MISS'}", met


def _missing() -> list:
    """The Python API and the compiled kernels it calls: what this build lacks."""
    api = [f for f in ("lstm_cell_forward", "lstm_cell_backward", "lstm_forward",
                       "lstm_backward", "gru_cell_forward", "gru_cell_backward", "gru_forward",
                       "gru_backward",
                       "rnn_cell_forward", "rnn_cell_backward", "additive_attention_forward",
                       "additive_attention_backward") if not hasattr(ak, f)]
    core = [f"_adlk.{f}" for f in ("lstm_forward", "lstm_backward", "gru_forward", "gru_backward",
                                   "gru_cell_forward",
                                   "gru_cell_backward", "rnn_cell_forward", "rnn_cell_backward",
                                   "attention_forward", "attention_backward")
            if not hasattr(ak._adlk, f)]
    return api + core


def run(ctx: Context) -> FamilyResult:
    missing = _missing()
    if missing:
        raise RuntimeError(f"adlkernels {ak.__version__} has no {', '.join(missing)}: "
                           "install a build with the recurrent kernels")

    # Correctness first, once for every case and direction, before any timing: each
    # contender against a float64 run of the NumPy code. A contender that raises is
    # left out of that timing; one off the reference is timed and flagged.
    print("checking against a float64 NumPy reference:")
    setups = []
    for case in CASES:
        v = _data(case, np.random.default_rng(0))
        contenders = {"ak": _ak(case, v)}
        if ctx.has_torch:
            contenders["torch"] = _torch(case, v)
        contenders["numpy"] = _numpy(case, v)
        ref_fns = _numpy(case, v, np.float64)
        for direction in DIRECTIONS:
            ref = [np.asarray(r) for r in ref_fns[direction]() if r is not None]
            fns, problems, errors = {}, {}, {}
            for name, dirs in contenders.items():
                try:
                    msg, err = _check(dirs[direction](), ref)
                    fns[name] = dirs[direction]
                except Exception as e:  # noqa: BLE001 - reported, not fatal
                    msg, err = f"raised {type(e).__name__}: {e}", None
                errors[name] = err
                if msg:
                    problems[name] = msg
            setups.append((case, direction, fns, problems, errors))
            errs = " ".join(f"{n} {'-' if e is None else f'{e:.1e}'}" for n, e in errors.items())
            flag = "".join(f"  [!] {n}: {m}" for n, m in problems.items())
            print(f"  {case.label:38s} {direction:7s} max rel err: {errs}{flag}", flush=True)
    if any(p for *_, p, _ in setups):
        print("WARNING: some contenders are off the reference (flagged [!] above and in the "
              "table's check column)")

    print("timing:")
    rows = []
    for case, direction, fns, problems, errors in setups:
        if "ak" not in fns:
            print(f"  {case.label:38s} {direction:7s} skipped: ak raised ({problems['ak']})")
            continue
        timed = dict(fns)
        timed["gemm"] = _gemm_proxy(case.gemms(direction))
        budgets = {n: ctx.slow_budget if n == "numpy" else ctx.budget for n in timed}
        with LoadMeter() as load:
            st = time_interleaved(timed, budgets, rounds=ctx.rounds)
        t_ak = st["ak"].median
        flops = case.flops(direction)
        gflops = flops / t_ak / 1e9
        ratio = lambda n: st[n].median / t_ak if n in st else None
        gemm_share = st["gemm"].median / t_ak
        target = case.targets.get(direction)
        target_txt, met = _target_text(target, ratio("torch"), ratio("numpy"))
        row = {
            "case": case.label, "kind": case.kind, "dims": case.dims, "dir": direction,
            "dtype": "float32", "flops": flops,
            "gemms": [dict(zip(("m", "k", "n", "a_transposed", "b_transposed", "calls"), g))
                      for g in case.gemms(direction)],
            "max_rel_err_vs_float64_ref": errors, "check_failures": problems,
            "ak_gflops": gflops, "ak_pct_peak": 100 * gflops / ctx.fma_peak_gflops,
            "gemm_proxy": "torch.mm" if torch is not None else "np.dot",
            "gemm_s": st["gemm"].median, "gemm_share": gemm_share,
            "pointwise_share": 1 - gemm_share,
            "time_s": {n: s.to_json() for n, s in st.items()},
            "ratio_torch_over_ak": ratio("torch"), "ratio_numpy_over_ak": ratio("numpy"),
            "target": None if target is None else {"torch_over_ak": target[0],
                                                   "numpy_over_ak": target[1], "met": met},
            "cpu_load": load.to_json(),
        }
        rows.append(row)
        flag = "".join(f"  [!] {n}: {m}" for n, m in problems.items()) + load.warning()
        print(f"  {case.label:38s} {direction:7s} ak {_fmt_ms(t_ak):>6s} ms {gflops:6.1f} GFLOP/s "
              f"GEMM {100 * gemm_share:3.0f}% torch/ak {_fmt_ratio(row['ratio_torch_over_ak'])} "
              f"numpy/ak {_fmt_ratio(row['ratio_numpy_over_ak'])} target {target_txt}{flag}",
              flush=True)

    table = []
    for r in rows:
        t = r["time_s"]
        med = lambda n: t[n]["median"] if n in t else None
        table.append([
            r["case"], r["dir"], _fmt_ms(med("ak")), f"{r['ak_gflops']:.1f}",
            f"{r['ak_pct_peak']:.0f}%", _fmt_ms(r["gemm_s"]),
            f"{100 * r['gemm_share']:.0f}%", f"{100 * r['pointwise_share']:.0f}%",
            _fmt_ms(med("torch")), _fmt_ratio(r["ratio_torch_over_ak"]),
            _fmt_ms(med("numpy")), _fmt_ratio(r["ratio_numpy_over_ak"]),
            _target_text(_row_target(r), r["ratio_torch_over_ak"], r["ratio_numpy_over_ak"])[0],
            "ok" if not r["check_failures"] else "FAIL: " + ", ".join(r["check_failures"]),
        ])
    return FamilyResult(rows=rows, text=text_table(HEADERS, table),
                        markdown=markdown_table(HEADERS, table), notes=NOTES, legend=LEGEND)
