"""GPU benchmark of the optimizers, clip_grad_norm, batch/layer norm, softmax
cross-entropy, activations and dropout against torch.

    python bench/gpu_nn.py [--repeats 50] [--no-write]

Needs cupy, torch with CUDA and a GPU; sets ADLK_CUDA_UNVERIFIED=1 for its own process.
Float32. Times are CUDA-event medians after warm-up (bench/gpu_conv_pool.py's timers).
Every kernel here is memory-bound, so each row reports the bytes the operation must move
at the least (its inputs read and its outputs written once; batch norm reads x, and its
backward dy and x, twice: the statistics come first) as GB/s and as a share of the
device-to-device copy bandwidth. torch runs its fastest comparable path: fused Adam,
foreach SGD and clip_grad_norm_, cuDNN/ATen batch norm, layer norm, cross_entropy.
Writes bench/results/gpu-nn-<date>-<device>.json and the RESULTS.md section.

Targets (the issue's): optimizers and memory-bound kernels >= 90% of copy bandwidth and
>= torch's fused/foreach; norms and softmax cross-entropy >= 1.0x torch; the LSTM
sequence >= 1.0x cuDNN.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("ADLK_CUDA_UNVERIFIED", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cupy as cp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import adlkernels as ak  # noqa: E402
from common import text_table  # noqa: E402
from gpu_conv_pool import copy_gbps, time_cupy, time_torch, write_results  # noqa: E402

# A ResNet-50-like parameter list: 161 tensors, 25.6 M values.
PARAM_SHAPES = ([(64, 3, 7, 7)] + [(256, 64, 1, 1), (64, 64, 3, 3)] * 6 + [(512, 128, 1, 1), (128, 128, 3, 3)] * 8
                + [(1024, 256, 1, 1), (256, 256, 3, 3)] * 12 + [(2048, 512, 1, 1), (512, 512, 3, 3)] * 6
                + [(64,), (256,), (128,), (512,), (1024,), (2048,)] * 11 + [(1000, 2048), (1000,)])
BATCHNORM = [(256, 64, 56, 56), (256, 256, 14, 14), (4096, 1024)]
LAYERNORM = [(8192, 768), (4096, 4096), (65536, 64)]
CROSS_ENTROPY = [(8192, 1000), (512, 32000)]
POINTWISE = 64 << 20  # values
LSTM = [(50, 64, 256, 256), (100, 32, 512, 512)]  # T, B, I, H


def _tensors(arrays):
    return [torch.as_tensor(a, device="cuda") for a in arrays]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    device = torch.cuda.get_device_name()
    bw = copy_gbps(args.repeats)
    print(f"{device}: copy {bw:.0f} GB/s (read+write)")
    rng = np.random.default_rng(0)
    rows, table = [], []

    def record(case, op, ours, theirs, traffic):
        t_ak, t_torch = time_cupy(ours, args.repeats), time_torch(theirs, args.repeats)
        gbps = traffic / t_ak / 1e9
        rows.append(dict(case=case, op=op, ak_ms=1e3 * t_ak, torch_ms=1e3 * t_torch,
                         torch_over_ak=t_torch / t_ak, gbps=gbps, pct_copy=100 * gbps / bw, bytes=traffic))
        table.append([case, op, f"{1e3 * t_ak:.3f}", f"{1e3 * t_torch:.3f}", f"{t_torch / t_ak:.2f}",
                      f"{gbps:.0f} GB/s", f"{100 * gbps / bw:.0f}% copy"])
        print("  ", *table[-1], flush=True)

    # ---- optimizers and clip_grad_norm over one parameter list
    def dev_list(positive=False):
        out = [cp.asarray(rng.standard_normal(s, np.float32)) for s in PARAM_SHAPES]
        return [cp.abs(a) for a in out] if positive else out

    p, g, m, v = dev_list(), dev_list(), dev_list(), dev_list(positive=True)
    nbytes = sum(a.nbytes for a in p)
    tp = [torch.nn.Parameter(t) for t in _tensors(p)]
    for t, gr in zip(tp, _tensors(g)):
        t.grad = gr
    case = f"{len(p)} tensors, {nbytes / 4e6:.1f} M values"
    adam = torch.optim.Adam(tp, lr=1e-3, fused=True)
    record(case, "Adam", lambda: ak.optim.adam_step(p, g, m, v, step=10, lr=1e-3), adam.step, 7 * nbytes)
    adamw = torch.optim.AdamW(tp, lr=1e-3, weight_decay=0.01, fused=True)
    record(case, "AdamW", lambda: ak.optim.adam_step(p, g, m, v, step=10, lr=1e-3, weight_decay=0.01,
                                                     decoupled_weight_decay=True), adamw.step, 7 * nbytes)
    sgd = torch.optim.SGD(tp, lr=0.1, momentum=0.9, foreach=True)
    record(case, "SGD momentum", lambda: ak.optim.sgd_step(p, g, m, step=10, lr=0.1, momentum=0.9), sgd.step,
           5 * nbytes)
    tg = [t.grad for t in tp]
    record(case, "clip_grad_norm", lambda: ak.optim.clip_grad_norm(g, 1e9),
           lambda: torch.nn.utils.clip_grad_norm_(tg, 1e9, foreach=True), nbytes)

    # ---- batch norm (training) and layer norm
    for shape in BATCHNORM:
        x = cp.asarray(rng.standard_normal(shape, np.float32))
        c = shape[1]
        w, b = cp.ones(c, cp.float32), cp.zeros(c, cp.float32)
        rm, rv = cp.zeros(c, cp.float32), cp.ones(c, cp.float32)
        tx, tw, tb, trm, trv = _tensors((x, w, b, rm, rv))
        y, sm, si = ak.norm.batchnorm_forward(x, w, b, rm, rv, training=True)
        gy = cp.asarray(rng.standard_normal(shape, np.float32))
        tgy, tsm, tsi = _tensors((gy, sm, si))
        record(f"batchnorm {shape}", "fwd", lambda: ak.norm.batchnorm_forward(x, w, b, rm, rv, training=True),
               lambda: F.batch_norm(tx, trm, trv, tw, tb, training=True), 3 * x.nbytes)
        record(f"batchnorm {shape}", "bwd", lambda: ak.norm.batchnorm_backward(gy, x, w, sm, si),
               lambda: torch.ops.aten.native_batch_norm_backward(tgy, tx, tw, trm, trv, tsm, tsi, True, 1e-5,
                                                                 [True, True, True]), 5 * x.nbytes)
    for shape in LAYERNORM:
        x = cp.asarray(rng.standard_normal(shape, np.float32))
        d = shape[-1]
        w, b = cp.ones(d, cp.float32), cp.zeros(d, cp.float32)
        tx, tw, tb = _tensors((x, w, b))
        y, mean, rstd = ak.norm.layernorm_forward(x, d, w, b)
        gy = cp.asarray(rng.standard_normal(shape, np.float32))
        tgy, tmean, trstd = _tensors((gy, mean.reshape(-1, 1), rstd.reshape(-1, 1)))
        record(f"layernorm {shape}", "fwd", lambda: ak.norm.layernorm_forward(x, d, w, b),
               lambda: F.layer_norm(tx, (d,), tw, tb), 2 * x.nbytes)
        record(f"layernorm {shape}", "bwd", lambda: ak.norm.layernorm_backward(gy, x, d, mean, rstd, w),
               lambda: torch.ops.aten.native_layer_norm_backward(tgy, tx, [d], tmean, trstd, tw, tb,
                                                                 [True, True, True]), 3 * x.nbytes)

    # ---- softmax cross-entropy (forward and gradient in one call here; torch: fwd + bwd)
    for b_, k in CROSS_ENTROPY:
        logits = cp.asarray(rng.standard_normal((b_, k), np.float32))
        targets = cp.asarray(rng.integers(0, k, b_))
        tl = torch.as_tensor(logits, device="cuda").requires_grad_()
        tt = torch.as_tensor(targets, device="cuda")

        def torch_ce():
            tl.grad = None
            F.cross_entropy(tl, tt).backward()

        record(f"cross_entropy ({b_}, {k})", "fwd+bwd", lambda: ak.nn.softmax_cross_entropy(logits, targets),
               torch_ce, 2 * logits.nbytes)

    # ---- LSTM sequence (one layer): torch's cuDNN LSTM, TF32 off
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    for steps, bsz, n_in, hid in LSTM:
        x = cp.asarray(rng.standard_normal((steps, bsz, n_in), np.float32))
        h0 = c0 = cp.zeros((bsz, hid), cp.float32)
        w = [cp.asarray((rng.standard_normal(s) / np.sqrt(hid)).astype(np.float32))
             for s in ((4 * hid, n_in), (4 * hid, hid), (4 * hid,), (4 * hid,))]
        lstm = torch.nn.LSTM(n_in, hid).cuda()
        with torch.no_grad():
            for p_, w_ in zip((lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0), w):
                p_.copy_(torch.as_tensor(w_, device="cuda"))
        tx = torch.as_tensor(x, device="cuda").requires_grad_()
        y, _, _, cache = ak.lstm_forward(x, h0, c0, *w)
        gy = cp.asarray(rng.standard_normal(y.shape, np.float32))
        tgy = torch.as_tensor(gy, device="cuda")

        def ak_both():
            ak.lstm_backward(gy, None, None, ak.lstm_forward(x, h0, c0, *w)[3])

        def torch_both():
            tx.grad = None
            lstm.zero_grad(set_to_none=True)
            lstm(tx)[0].backward(tgy)

        flops = 2.0 * steps * bsz * 4 * hid * (n_in + hid)  # the forward's GEMMs
        case = f"lstm T{steps} B{bsz} I{n_in} H{hid}"
        for op, ours, theirs, work in (("fwd", lambda: ak.lstm_forward(x, h0, c0, *w),
                                        lambda: lstm(tx), flops),
                                       ("fwd+bwd", ak_both, torch_both, 3 * flops)):
            t_ak, t_torch = time_cupy(ours, args.repeats), time_torch(theirs, args.repeats)
            tflops = work / t_ak / 1e12
            rows.append(dict(case=case, op=op, ak_ms=1e3 * t_ak, torch_ms=1e3 * t_torch,
                             torch_over_ak=t_torch / t_ak, tflops=tflops))
            table.append([case, op, f"{1e3 * t_ak:.3f}", f"{1e3 * t_torch:.3f}", f"{t_torch / t_ak:.2f}",
                          f"{tflops:.2f} TF/s", "-"])
            print("  ", *table[-1], flush=True)

    # ---- pointwise
    x = cp.asarray(rng.standard_normal(POINTWISE, np.float32))
    tx = torch.as_tensor(x, device="cuda")
    record(f"{POINTWISE >> 20} Mi values", "relu fwd", lambda: ak.nn.relu_forward(x), lambda: F.relu(tx),
           2 * x.nbytes)
    record(f"{POINTWISE >> 20} Mi values", "sigmoid fwd", lambda: ak.nn.sigmoid_forward(x),
           lambda: torch.sigmoid(tx), 2 * x.nbytes)
    record(f"{POINTWISE >> 20} Mi values", "dropout fwd", lambda: ak.nn.dropout_forward(x, 0.5, seed=1),
           lambda: torch.ops.aten.native_dropout(tx, 0.5, True), 2 * x.nbytes + x.size)

    headers = ["case", "op", "ak ms", "torch ms", "torch/ak", "rate", "% roofline"]
    print(text_table(headers, table))
    if not args.no_write:
        write_results("gpu-nn", "optimizers, norms, losses, pointwise", device, dict(copy_gbps=bw, rows=rows),
                      f"copy {bw:.0f} GB/s (read+write); float32; CUDA-event medians of {args.repeats}; "
                      "bytes = the least each operation must move.", headers, table)

if __name__ == "__main__":
    main()
