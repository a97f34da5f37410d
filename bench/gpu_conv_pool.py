"""GPU benchmark of the convolution and pooling families against torch (cuDNN).

    python bench/gpu_conv_pool.py [--batch-scale 8] [--repeats 50] [--no-write]

Needs cupy, torch with CUDA and a GPU; sets ADLK_CUDA_UNVERIFIED=1 for its own process
(the kernels are off by default until verified). Float32, full precision on both sides:
torch's TF32 paths (cuDNN convolutions use TF32 by default on Ampere and newer) are
switched off so both do the same arithmetic. Times are CUDA-event medians after warm-up.
Reference rates measured here: device-to-device copy bandwidth (bytes read + written)
and the cuBLAS SGEMM rate (8192^3 through cupy.matmul). Writes
bench/results/gpu-conv-pool-<date>-<device>.json and the RESULTS.md section.

Targets (the issue's): max/avg pooling >= 1.0x torch and >= 70% of copy bandwidth;
convolution >= 0.7x cuDNN.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import statistics
import sys
from pathlib import Path

os.environ.setdefault("ADLK_CUDA_UNVERIFIED", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cupy as cp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import adlkernels as ak  # noqa: E402
from common import RESULTS_DIR, markdown_table, text_table, update_markdown_section  # noqa: E402

CONV = [  # (N, C, H, W), C_out, k, stride, padding: bench_conv.py's shapes
    ((64, 1, 28, 28), 32, 5, 1, 0),
    ((64, 32, 14, 14), 64, 3, 1, 1),
    ((32, 64, 32, 32), 128, 3, 1, 1),
    ((8, 3, 224, 224), 64, 7, 2, 3),
]
POOL = [  # (N, C, H, W), k, stride, padding: bench_pool.py's shapes
    ((64, 32, 28, 28), 2, 2, 0),
    ((64, 32, 28, 28), 3, 2, 1),
    ((32, 128, 32, 32), 2, 2, 0),
    ((32, 128, 32, 32), 3, 2, 1),
]


def _median_seconds(fn, repeats, start, end, elapsed_ms):
    """Median of CUDA-event times of fn on the current stream, after 3 warm-up calls."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(elapsed_ms(start, end) / 1e3)
    return statistics.median(times)


def time_cupy(fn, repeats):
    return _median_seconds(fn, repeats, cp.cuda.Event(), cp.cuda.Event(), cp.cuda.get_elapsed_time)


def time_torch(fn, repeats):
    new = lambda: torch.cuda.Event(enable_timing=True)  # noqa: E731
    return _median_seconds(fn, repeats, new(), new(), lambda a, b: a.elapsed_time(b))


def copy_gbps(repeats):
    a = cp.ones(256 << 20, cp.float32)  # 1 GiB
    b = cp.empty_like(a)
    t = time_cupy(lambda: cp.copyto(b, a), repeats)
    return 2 * a.nbytes / t / 1e9


def sgemm_tflops(repeats, n=8192):
    a, b = cp.random.standard_normal((n, n), cp.float32), cp.random.standard_normal((n, n), cp.float32)
    t = time_cupy(lambda: cp.matmul(a, b), repeats)
    return 2 * n**3 / t / 1e12


def write_results(name, section, device, data, intro, headers, table):
    """bench/results/<name>-<date>-<device>.json (data, the date, device and versions) and
    the RESULTS.md section "<section> (GPU, <device>)" (intro, then the table)."""
    date = dt.date.today().isoformat()
    tag = re.sub(r"[^A-Za-z0-9]+", "-", device).strip("-").lower()
    out = RESULTS_DIR / f"{name}-{date}-{tag}.json"
    versions = dict(adlkernels=ak.__version__, torch=torch.__version__, cupy=cp.__version__)
    out.write_text(json.dumps(dict(device=device, date=date, **data, versions=versions), indent=2) + "\n")
    body = (f"{date}, {device}; {intro} Raw data: `bench/results/{out.name}`.\n\n"
            + markdown_table(headers, table))
    update_markdown_section(f"{section} (GPU, {device})", body)
    print(f"wrote {out} and bench/RESULTS.md")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch-scale", type=int, default=8, help="multiply the CPU shapes' batch")
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    device = torch.cuda.get_device_name()
    bw, gemm = copy_gbps(args.repeats), sgemm_tflops(max(5, args.repeats // 5))
    print(f"{device}: copy {bw:.0f} GB/s (read+write), cuBLAS SGEMM {gemm:.1f} TFLOP/s")
    rng = np.random.default_rng(0)
    rows, table = [], []
    for shape, c_out, k, s, p in CONV:
        shape = (shape[0] * args.batch_scale,) + shape[1:]
        x = cp.asarray(rng.standard_normal(shape, np.float32))
        w = cp.asarray(rng.standard_normal((c_out, shape[1], k, k), np.float32))
        b = cp.asarray(rng.standard_normal(c_out, np.float32))
        tx, tw, tb = (torch.as_tensor(a, device="cuda") for a in (x, w, b))
        y = ak.conv2d_forward(x, w, b, stride=s, padding=p)
        gy = cp.asarray(rng.standard_normal(y.shape, np.float32))
        tgy = torch.as_tensor(gy, device="cuda")
        err = float(cp.max(cp.abs(y - cp.asarray(F.conv2d(tx, tw, tb, stride=s, padding=p)))))
        flops = 2.0 * y.size * shape[1] * k * k
        for direction, ours, theirs, work in (
            ("fwd", lambda: ak.conv2d_forward(x, w, b, stride=s, padding=p),
             lambda: F.conv2d(tx, tw, tb, stride=s, padding=p), flops),
            ("bwd", lambda: ak.conv2d_backward(gy, x, w, stride=s, padding=p),
             lambda: torch.ops.aten.convolution_backward(
                 tgy, tx, tw, [c_out], [s, s], [p, p], [1, 1], False, [0, 0], 1,
                 [True, True, True]), 2 * flops),
        ):
            t_ak, t_torch = time_cupy(ours, args.repeats), time_torch(theirs, args.repeats)
            rate = work / t_ak / 1e12
            rows.append(dict(case=f"conv {shape} -> {c_out} k{k} s{s} p{p}", dir=direction,
                             ak_ms=1e3 * t_ak, torch_ms=1e3 * t_torch, torch_over_ak=t_torch / t_ak,
                             tflops=rate, pct_sgemm=100 * rate / gemm, max_abs_err_fwd=err))
            table.append([f"conv {shape} k{k}", direction, f"{1e3 * t_ak:.3f}", f"{1e3 * t_torch:.3f}",
                          f"{t_torch / t_ak:.2f}", f"{rate:.1f} TF/s", f"{100 * rate / gemm:.0f}% sgemm"])
            print("  ", *table[-1], flush=True)
    for shape, k, s, p in POOL:
        shape = (shape[0] * args.batch_scale,) + shape[1:]
        x = cp.asarray(rng.standard_normal(shape, np.float32))
        tx = torch.as_tensor(x, device="cuda")
        y, idx = ak.maxpool2d_forward(x, k, s, p)
        gy = cp.asarray(rng.standard_normal(y.shape, np.float32))
        tgy, tidx = torch.as_tensor(gy, device="cuda"), torch.as_tensor(idx, device="cuda")
        ty, tti = F.max_pool2d(tx, k, s, p, return_indices=True)
        assert cp.array_equal(y, cp.asarray(ty)), "max pooling differs from torch"
        xb, yb = x.nbytes, y.nbytes
        cases = [
            ("max fwd", lambda: ak.maxpool2d_forward(x, k, s, p),
             lambda: F.max_pool2d(tx, k, s, p, return_indices=True), xb + 3 * yb),
            ("max bwd", lambda: ak.maxpool2d_backward(gy, idx, shape),
             lambda: torch.ops.aten.max_pool2d_with_indices_backward(tgy, tx, [k, k], [s, s], [p, p], [1, 1], False, tti),
             3 * yb + xb),
            ("avg fwd", lambda: ak.avgpool2d_forward(x, k, s, p),
             lambda: F.avg_pool2d(tx, k, s, p), xb + yb),
            ("avg bwd", lambda: ak.avgpool2d_backward(gy, shape, k, s, p),
             lambda: torch.ops.aten.avg_pool2d_backward(tgy, tx, [k, k], [s, s], [p, p], False, True, None),
             yb + xb),
        ]
        for op, ours, theirs, traffic in cases:
            t_ak, t_torch = time_cupy(ours, args.repeats), time_torch(theirs, args.repeats)
            gbps = traffic / t_ak / 1e9
            rows.append(dict(case=f"pool {shape} k{k} s{s} p{p}", dir=op, ak_ms=1e3 * t_ak,
                             torch_ms=1e3 * t_torch, torch_over_ak=t_torch / t_ak, gbps=gbps,
                             pct_copy=100 * gbps / bw, bytes=traffic))
            table.append([f"pool {shape} k{k}", op, f"{1e3 * t_ak:.3f}", f"{1e3 * t_torch:.3f}",
                          f"{t_torch / t_ak:.2f}", f"{gbps:.0f} GB/s", f"{100 * gbps / bw:.0f}% copy"])
            print("  ", *table[-1], flush=True)
    headers = ["case", "dir", "ak ms", "torch ms", "torch/ak", "rate", "% roofline"]
    print(text_table(headers, table))
    if not args.no_write:
        write_results("gpu-conv-pool", "conv and pool", device,
                      dict(copy_gbps=bw, sgemm_tflops=gemm, batch_scale=args.batch_scale, rows=rows),
                      f"copy {bw:.0f} GB/s (read+write), cuBLAS SGEMM {gemm:.1f} TFLOP/s; batch "
                      f"x{args.batch_scale} of the CPU shapes; float32, TF32 off; CUDA-event medians of "
                      f"{args.repeats}.", headers, table)

if __name__ == "__main__":
    main()
