"""Benchmark entry point: ``python bench/run.py conv [--threads 2] [--repeats N] [--quick] [--no-write]``.

Every contender (adlkernels, torch, a NumPy reference) runs in this one process at one
thread count. Results are printed, saved as JSON under bench/results/ and summarised in
bench/RESULTS.md. A new kernel family is one module with ``run(ctx) -> FamilyResult``,
registered in FAMILIES below.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # run from anywhere

import common  # noqa: E402
from common import Budget, Context  # noqa: E402


def _conv(ctx):
    import bench_conv

    return bench_conv.run(ctx)


# family -> (RESULTS.md section title, benchmark function)
FAMILIES = {
    "conv": ("conv (CPU)", _conv),
}


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("family", choices=sorted(FAMILIES) + ["all"])
    ap.add_argument("--threads", type=int, default=os.cpu_count(),
                    help="threads for every contender (default: all cores)")
    ap.add_argument("--repeats", type=int, default=None,
                    help="fixed number of timed calls per measurement (default: adaptive, "
                         "~1.5 s per measurement, at least 5; NumPy reference ~0.75 s, at least 3)")
    ap.add_argument("--quick", action="store_true",
                    help="short smoke run (< 1 min): few repeats, one round; noisy numbers")
    ap.add_argument("--no-write", action="store_true",
                    help="print only: no JSON file, no RESULTS.md update")
    args = ap.parse_args(argv)
    if args.threads < 1 or (args.repeats is not None and args.repeats < 1):
        ap.error("--threads and --repeats must be >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.quick:
        budget, slow, rounds, ref_budget = Budget(0.15, 5), Budget(0.05, 2), 1, Budget(0.4, 3)
    else:
        budget, slow, rounds, ref_budget = Budget(1.5, 5), Budget(0.75, 3), 3, Budget(2.0, 5)
    if args.repeats is not None:
        budget.fixed_reps = slow.fixed_reps = args.repeats
        rounds = min(rounds, args.repeats)

    notes = common.set_threads(args.threads)
    info = common.machine_info(args.threads, notes)
    print(f"machine: {info['cpu']}, {info['cores']} cores ({'/'.join(info['cpu_flags'])}), "
          f"host {info['hostname']}")
    print(f"threads: {args.threads} -> {notes}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()
                                   if isinstance(v, str)))
    if common.torch is None:
        print("torch not importable: torch columns skipped")

    t0 = time.perf_counter()
    peak = common.sgemm_peak(2048, ref_budget)
    bw = common.copy_bandwidth(256, ref_budget)
    print(f"sgemm 2048^3 (scipy-openblas32, {peak['threads']} threads): "
          f"{peak['gflops']:.1f} GFLOP/s median, {peak['gflops_best']:.1f} best")
    print(f"copy 256 MiB (np.copyto): {bw['gbps_read_write']:.1f} GB/s read+write")

    families = sorted(FAMILIES) if args.family == "all" else [args.family]
    for fam in families:
        title, fn = FAMILIES[fam]
        print(f"\n== {title}")
        ctx = Context(threads=args.threads, budget=budget, slow_budget=slow,
                      rounds=rounds, gemm_peak_gflops=peak["gflops"])
        with common.StealMeter() as steal:
            res = fn(ctx)
        steal_txt = "n/a" if steal.pct is None else f"{steal.pct:.1f}%"
        print("\n" + res.text)
        print("\n% peak: of the sgemm GFLOP/s above; X/ak ratios > 1: adlkernels faster.")
        print(f"CPU steal (hypervisor) during the {fam} run: {steal_txt}")
        if args.no_write:
            continue
        path = common.result_path(fam, info)
        common.write_json(path, {
            "family": fam, "machine": info, "quick": args.quick,
            "sgemm_peak": peak, "copy_bandwidth": bw, "cpu_steal_pct": steal.pct,
            "results": res.rows,
        })
        rel = os.path.relpath(path, common.BENCH_DIR.parent)
        body = (
            f"{info['date'][:10]}, {info['cpu']} ({info['cores']} cores), "
            f"{args.threads} threads{' (--quick)' if args.quick else ''}; "
            f"adlkernels {info['versions']['adlkernels']}, "
            f"torch {info['versions']['torch']}, numpy {info['versions']['numpy']}. "
            f"sgemm peak {peak['gflops']:.1f} GFLOP/s (2048^3, scipy-openblas32), "
            f"copy {bw['gbps_read_write']:.1f} GB/s (read+write), CPU steal {steal_txt}. "
            f"Raw data: `{rel}`.\n\n"
            "Float32 with bias; fwd = conv2d_forward, bwd = conv2d_backward (grad_x, grad_w, "
            "grad_b; torch: `aten.convolution_backward` alone). FLOPs: fwd "
            "2·N·C_out·H_out·W_out·C_in·kH·kW, bwd twice that. numpy = im2col "
            "(sliding_window_view) + np.matmul, `bench/numpy_conv.py`.\n\n" + res.markdown
        )
        common.update_markdown_section(title, body)
        print(f"wrote {rel} and bench/RESULTS.md")
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
