"""conv family: ak.conv2d_forward / conv2d_backward against torch and a NumPy reference."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import adlkernels as ak

import numpy_conv
from common import (Context, FamilyResult, LoadMeter, markdown_table, text_table,
                    time_interleaved, torch)


@dataclass(frozen=True)
class ConvCase:
    x: tuple          # (N, C_in, H, W)
    c_out: int
    k: int
    stride: int = 1
    padding: int = 0
    groups: int = 1

    @property
    def label(self) -> str:
        s = "x".join(map(str, self.x)) + f" k{self.k}"
        s += f" s{self.stride}" if self.stride != 1 else ""
        s += f" p{self.padding}" if self.padding else ""
        s += " dw" if self.depthwise else f" g{self.groups}" if self.groups > 1 else ""
        return f"{s} -> {self.c_out}"

    @property
    def depthwise(self) -> bool:
        return self.groups > 1 and self.groups == self.x[1] == self.c_out

    def out_hw(self):
        return tuple((n + 2 * self.padding - self.k) // self.stride + 1 for n in self.x[2:])

    def forward_flops(self) -> int:
        ho, wo = self.out_hw()
        return 2 * self.x[0] * self.c_out * ho * wo * self.x[1] // self.groups * self.k * self.k


# float32, all with bias: a LeNet-ish first layer, two mid-network 3x3 layers, ResNet's
# stem and a bottleneck's 1x1 reduction, and MobileNet's depthwise 3x3 layers (stride 1
# and 2).
CASES = [
    ConvCase((64, 1, 28, 28), 32, 5),
    ConvCase((64, 32, 14, 14), 64, 3, padding=1),
    ConvCase((32, 64, 32, 32), 128, 3, padding=1),
    ConvCase((8, 3, 224, 224), 64, 7, stride=2, padding=3),
    ConvCase((64, 256, 14, 14), 64, 1),
    ConvCase((64, 128, 28, 28), 128, 3, padding=1, groups=128),
    ConvCase((32, 64, 56, 56), 64, 3, stride=2, padding=1, groups=64),
]

NOTES = ("Float32 with bias; fwd = conv2d_forward, bwd = conv2d_backward (grad_x, grad_w, "
         "grad_b; torch: `aten.convolution_backward` alone). FLOPs: fwd "
         "2·N·C_out·H_out·W_out·(C_in/groups)·kH·kW, bwd twice that. numpy = im2col "
         "(sliding_window_view) + np.matmul, `bench/numpy_conv.py`; for the depthwise "
         "layers (dw: groups = C_in = C_out, memory-bound: % peak means little there) "
         "each channel's window view against its own kernel by np.einsum.")

HEADERS = ["shape", "dir", "ak ms", "GFLOP/s", "% peak",
           "torch ms", "torch/ak", "numpy ms", "numpy/ak"]


def _contenders(case: ConvCase, has_torch: bool):
    """{direction: {name: zero-argument callable}} plus the outputs to cross-check."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(case.x, dtype=np.float32)
    w = rng.standard_normal((case.c_out, case.x[1] // case.groups, case.k, case.k),
                            dtype=np.float32)
    w *= 1 / np.sqrt(w[0].size)
    b = rng.standard_normal(case.c_out, dtype=np.float32)
    gy = rng.standard_normal((case.x[0], case.c_out) + case.out_hw(), dtype=np.float32)
    s, p, g = case.stride, case.padding, case.groups
    if case.depthwise:
        np_fwd, np_bwd = numpy_conv.depthwise_forward, numpy_conv.depthwise_backward
    else:
        assert g == 1, "the numpy reference runs groups=1 or depthwise"
        np_fwd, np_bwd = numpy_conv.conv2d_forward, numpy_conv.conv2d_backward

    fwd = {
        "ak": lambda: ak.conv2d_forward(x, w, b, s, p, groups=g),
        "numpy": lambda: np_fwd(x, w, b, s, p),
    }
    bwd = {
        "ak": lambda: ak.conv2d_backward(gy, x, w, s, p, groups=g),
        "numpy": lambda: np_bwd(gy, x, w, s, p),
    }
    if has_torch:
        xt, wt, bt, gyt = map(torch.from_numpy, (x, w, b, gy))
        conv_bwd = torch.ops.aten.convolution_backward

        def torch_fwd():
            with torch.no_grad():
                return torch.nn.functional.conv2d(xt, wt, bt, s, p, groups=g)

        def torch_bwd():
            # The op autograd runs for conv2d's backward; times the backward alone.
            with torch.no_grad():
                return conv_bwd(gyt, xt, wt, [case.c_out], [s, s], [p, p], [1, 1],
                                False, [0, 0], g, [True, True, True])

        fwd["torch"], bwd["torch"] = torch_fwd, torch_bwd
    return {"forward": fwd, "backward": bwd}


def _max_rel_err(got, ref) -> float:
    """Worst over the outputs of max |got - ref| / max |ref|."""
    got = got if isinstance(got, tuple) else (got,)
    ref = ref if isinstance(ref, tuple) else (ref,)
    err = 0.0
    for g, r in zip(got, ref):
        r = np.asarray(r)
        err = max(err, float(np.abs(g - r).max() / max(np.abs(r).max(), 1e-30)))
    return err


def _fmt_ms(t):
    return "-" if t is None else f"{t * 1e3:.3g}" if t * 1e3 < 100 else f"{t * 1e3:.0f}"


def _fmt_ratio(r):
    return "-" if r is None else f"{r:.2f}"


def run(ctx: Context) -> FamilyResult:
    rows = []
    for case in CASES:
        for direction, fns in _contenders(case, ctx.has_torch).items():
            # Correctness first: a fast wrong kernel is not a result.
            ref_name = "torch" if "torch" in fns else "numpy"
            err = _max_rel_err(fns["ak"](), fns[ref_name]())
            budgets = {n: ctx.slow_budget if n == "numpy" else ctx.budget for n in fns}
            with LoadMeter() as load:
                st = time_interleaved(fns, budgets, rounds=ctx.rounds)
            flops = case.forward_flops() * (1 if direction == "forward" else 2)
            t_ak = st["ak"].median
            row = {
                "case": case.label, "x": case.x, "c_out": case.c_out, "k": case.k,
                "stride": case.stride, "padding": case.padding, "groups": case.groups,
                "bias": True,
                "dtype": "float32", "direction": direction, "flops": flops,
                "max_rel_err_vs_" + ref_name: err,
                "ak_gflops": flops / t_ak / 1e9,
                "ak_pct_peak": 100 * flops / t_ak / 1e9 / ctx.fma_peak_gflops,
                "time_s": {n: s.to_json() for n, s in st.items()},
                "ratio_torch_over_ak": st["torch"].median / t_ak if "torch" in st else None,
                "ratio_numpy_over_ak": st["numpy"].median / t_ak,
                "cpu_load": load.to_json(),
            }
            rows.append(row)
            flag = "" if err < 1e-4 else f"  [!] max rel err vs {ref_name} {err:.1e}"
            flag += load.warning()
            print(f"  {case.label:34s} {direction:8s} ak {_fmt_ms(t_ak):>6s} ms "
                  f"torch/ak {_fmt_ratio(row['ratio_torch_over_ak'])} "
                  f"numpy/ak {_fmt_ratio(row['ratio_numpy_over_ak'])}{flag}", flush=True)

    table = []
    for r in rows:
        t = r["time_s"]
        table.append([
            r["case"], r["direction"][0] + "wd", _fmt_ms(t["ak"]["median"]),
            f"{r['ak_gflops']:.1f}", f"{r['ak_pct_peak']:.0f}%",
            _fmt_ms(t["torch"]["median"] if "torch" in t else None),
            _fmt_ratio(r["ratio_torch_over_ak"]),
            _fmt_ms(t["numpy"]["median"]), _fmt_ratio(r["ratio_numpy_over_ak"]),
        ])
    return FamilyResult(rows=rows, text=text_table(HEADERS, table),
                        markdown=markdown_table(HEADERS, table), notes=NOTES,
                        legend="% peak: of threads x the single-core FMA peak above; "
                               "X/ak ratios > 1: adlkernels faster.")
