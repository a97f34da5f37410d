"""python -m adlkernels info | selfcheck | demo"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

import adlkernels as ak


def _yes_no(v) -> str:
    return "yes" if v else "no"


def _cuda_lines(cuda: dict) -> list:
    """The CUDA section of `info`: (label, value) pairs."""
    if not cuda.get("built"):
        return [("extension", "not built")]
    archs = ", ".join(cuda.get("architectures", [])) or "unknown"
    lines = [("extension", f"built for {archs}")]
    if not cuda.get("loads"):
        return lines + [("loads", f"no: {cuda.get('error')}")]
    lines.append(("loads", "yes"))
    lines.append(("runtime", f"CUDA {cuda.get('version')}"))
    driver = f"CUDA {cuda['driver']}" if cuda.get("driver") else "none"
    if cuda.get("driver_error"):
        driver += f" ({cuda['driver_error']})"
    lines.append(("driver", driver))
    lines.append(("devices", str(cuda.get("devices", 0))))
    for gpu in cuda.get("gpus", []):
        runs = {True: "", False: ", not in this build's architectures", None: ""}[gpu.get("supported")]
        lines.append((f"  device {gpu['index']}", f"{gpu.get('name', '?')}, compute capability "
                                                   f"{gpu.get('compute_capability', '?')}{runs}"))
    cupy = cuda.get("cupy", {})
    if not cupy.get("installed"):
        lines.append(("cupy", "not installed"))
    elif cupy.get("imports") is False:
        lines.append(("cupy", f"does not import: {cupy.get('error')}"))
    else:
        lines.append(("cupy", cupy.get("version") or "installed"))
    return lines


def _info(args) -> int:
    """The build, and whether its CUDA kernels can run here (exit status 0 either way)."""
    from ._cudainfo import cuda_status

    info = ak.build_info()
    info["cuda"] = cuda_status(import_cupy=True)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    cuda = info.pop("cuda")
    print(f"adlkernels {info.pop('version')}")
    rows = [(key.replace("_", " "), _yes_no(v) if isinstance(v, bool) else str(v)) for key, v in info.items()]
    width = max(len(k) for k, _ in rows + _cuda_lines(cuda)) + 2
    for key, value in rows:
        print(f"  {key:<{width}}{value}")
    print("CUDA")
    for key, value in _cuda_lines(cuda):
        print(f"  {key:<{width}}{value}")
    if cuda["runnable"]:
        from . import _cuda

        note = "" if _cuda.enabled() else (
            " (the convolution and pooling kernels stay off until ADLK_CUDA_UNVERIFIED=1)")
        print("CUDA kernels: can run here" + note)
    else:
        print(f"CUDA kernels: cannot run here: {cuda['reason']}")
    return 0


def _conv_reference(x, w, b, stride, padding):
    """Direct convolution sum in float64 (the definition, not im2col)."""
    n, c, h, wd = x.shape
    co, _, kh, kw = w.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    ho = (h + 2 * padding - kh) // stride + 1
    wo = (wd + 2 * padding - kw) // stride + 1
    y = np.zeros((n, co, ho, wo))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i : i + stride * ho : stride, j : j + stride * wo : stride]
            y += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j].astype(np.float64))
    return y + b[None, :, None, None]


def _lstm_reference(x, h, c, w_ih, w_hh, b):
    """The textbook LSTM loop in float64 (gates i, f, g, o)."""
    sig = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
    ys = []
    for xt in x:
        i, f, g, o = np.split(xt @ w_ih.T + h @ w_hh.T + b, 4, axis=1)
        c = sig(f) * c + sig(i) * np.tanh(g)
        h = sig(o) * np.tanh(c)
        ys.append(h)
    return np.stack(ys), h, c


def _lstm_check(rng) -> bool:
    x = rng.standard_normal((5, 3, 4))
    h0, c0 = rng.standard_normal((2, 3, 6))
    w_ih, w_hh = rng.standard_normal((24, 4)) * 0.5, rng.standard_normal((24, 6)) * 0.5
    b_ih, b_hh = rng.standard_normal((2, 24))
    y, h_n, c_n, cache = ak.lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh)
    ry, rh, rc = _lstm_reference(x, h0, c0, w_ih, w_hh, b_ih + b_hh)
    err = max(np.abs(y - ry).max(), np.abs(h_n - rh).max(), np.abs(c_n - rc).max())
    print(f"  lstm_forward    float64 max |error| vs textbook loop   {err:.2e}")
    gy = rng.standard_normal(y.shape)
    grads = ak.lstm_backward(gy, None, None, cache)
    eps, worst = 1e-6, 0.0
    for arr, grad in ((x, grads.x), (h0, grads.h0), (c0, grads.c0), (w_hh, grads.w_hh), (b_ih, grads.b_ih)):
        for idx in [tuple(rng.integers(0, s) for s in arr.shape) for _ in range(3)]:
            old = arr[idx]
            arr[idx] = old + eps
            up = np.sum(gy * ak.lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh)[0])
            arr[idx] = old - eps
            down = np.sum(gy * ak.lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh)[0])
            arr[idx] = old
            worst = max(worst, abs((up - down) / (2 * eps) - grad[idx]) / max(1.0, abs(grad[idx])))
    print(f"  lstm_backward   float64 max rel error vs finite diff   {worst:.2e}")
    return err < 1e-10 and worst < 1e-6


def _selfcheck(args) -> int:
    """Checks conv2d and an LSTM layer forward against the definitions and backward
    against finite differences, max pooling against a direct window scan, then times one
    conv layer."""
    print(f"adlkernels {ak.__version__}: {ak.get_num_threads()} threads, "
          f"{ak.build_info()['blas']}, CUDA device: {ak.has_cuda()}")
    rng = np.random.default_rng(0)
    ok = True

    x = rng.standard_normal((4, 3, 11, 9))
    w = rng.standard_normal((5, 3, 3, 3))
    b = rng.standard_normal(5)
    y = ak.conv2d_forward(x, w, b, stride=2, padding=1)
    err = np.abs(y - _conv_reference(x, w, b, 2, 1)).max()
    ok &= err < 1e-10
    print(f"  conv2d_forward  float64 max |error| vs direct sum      {err:.2e}")

    gy = rng.standard_normal(y.shape)
    gx, gw, gb = ak.conv2d_backward(gy, x, w, stride=2, padding=1)
    eps, worst = 1e-6, 0.0
    for arr, grad in ((x, gx), (w, gw), (b, gb)):
        for idx in [tuple(rng.integers(0, s) for s in arr.shape) for _ in range(5)]:
            old = arr[idx]
            arr[idx] = old + eps
            up = np.sum(gy * ak.conv2d_forward(x, w, b, stride=2, padding=1))
            arr[idx] = old - eps
            down = np.sum(gy * ak.conv2d_forward(x, w, b, stride=2, padding=1))
            arr[idx] = old
            worst = max(worst, abs((up - down) / (2 * eps) - grad[idx]) / max(1.0, abs(grad[idx])))
    ok &= worst < 1e-6
    print(f"  conv2d_backward float64 max rel error vs finite diff   {worst:.2e}")

    # Max pooling 3x3/s2/p1 against a direct scan of each window, and its backward
    # against a scatter-add of grad_y into the argmax positions.
    xp = rng.standard_normal((2, 3, 9, 10))
    yp, ip = ak.maxpool2d_forward(xp, 3, stride=2, padding=1)
    padded = np.pad(xp, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    ref = np.empty_like(yp)
    for i in range(yp.shape[2]):
        for j in range(yp.shape[3]):
            ref[:, :, i, j] = padded[:, :, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3].max(axis=(2, 3))
    picked = np.take_along_axis(xp.reshape(2, 3, -1), ip.reshape(2, 3, -1), axis=2)
    pool_ok = np.array_equal(yp, ref) and np.array_equal(picked.reshape(yp.shape), yp)
    gyp = rng.standard_normal(yp.shape)
    scatter = np.zeros((6, 90))
    for plane in range(6):
        np.add.at(scatter[plane], ip.reshape(6, -1)[plane], gyp.reshape(6, -1)[plane])
    pool_ok &= np.allclose(ak.maxpool2d_backward(gyp, ip, xp.shape), scatter.reshape(xp.shape))
    ok &= pool_ok
    print(f"  maxpool2d 3x3/s2/p1 forward, indices and backward   {'exact' if pool_ok else 'WRONG'}")
    ok &= _lstm_check(rng)

    x32 = rng.standard_normal((32, 64, 32, 32)).astype(np.float32)
    w32 = rng.standard_normal((128, 64, 3, 3)).astype(np.float32) * 0.05
    b32 = np.zeros(128, np.float32)
    ak.conv2d_forward(x32, w32, b32, padding=1)
    t0 = time.perf_counter()
    y32 = ak.conv2d_forward(x32, w32, b32, padding=1)
    t1 = time.perf_counter()
    ak.conv2d_backward(y32, x32, w32, padding=1)
    t2 = time.perf_counter()
    flops = 2.0 * y32.size * 64 * 9
    print(f"  conv2d (32,64,32,32) k3 p1 -> 128 float32: forward {(t1 - t0) * 1e3:.1f} ms "
          f"({flops / (t1 - t0) / 1e9:.1f} GFLOP/s), backward {(t2 - t1) * 1e3:.1f} ms")
    print("selfcheck: " + ("OK" if ok else "FAILED"))
    return 0 if ok else 1


def _demo_arguments(parser) -> None:
    from ._demo import add_arguments

    add_arguments(parser)


def _run_demo(args) -> int:
    from ._demo import run

    return run(args)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adlkernels", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="print the build information and whether its CUDA kernels can run here")
    info.add_argument("--json", action="store_true", help="print build_info() as JSON instead")
    info.set_defaults(func=_info)
    sub.add_parser("selfcheck", help="check conv2d, max pooling and an LSTM layer, time one conv layer").set_defaults(
        func=_selfcheck
    )
    demo = sub.add_parser(
        "demo",
        help="train a CNN (or --model lstm) on scikit-learn's 8x8 digits, or an encoder-decoder "
        "with attention that reads dates (--model seq2seq); needs adlkernels[demo]",
        description="Train a LeNet-style CNN (or --model lstm) on scikit-learn's bundled 8x8 digits "
        "with ak.layers, Adam and a learning-rate schedule, with early stopping on a validation "
        "split; or (--model seq2seq) an encoder-decoder with additive attention that learns to "
        "write dates given in many human formats as ISO dates (generated data, greedy "
        'decoding, --plot saves the attention weights). Needs the optional extra: pip install "adlkernels[demo]".',
    )
    _demo_arguments(demo)
    demo.set_defaults(func=_run_demo)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
