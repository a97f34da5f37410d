"""Benchmark entry point: ``python bench/run.py conv|pool|rnn|optim|nn|torch_adapter|all [--threads 2] [--quick] ...``.

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

# --isa avx2 holds every contender to AVX2 on an AVX-512 machine, to check the AVX2 side
# of the targets where no AVX2-only machine is at hand: each library reads its switch
# when it loads or first runs, so they are set before anything is imported. OpenBLAS
# (adlkernels' and NumPy's) takes its Haswell kernels, the AVX2 + FMA ones it also runs
# on AMD's AVX2 CPUs.
ISA_ENV = {
    "avx2": {"ADLK_GEMM_ISA": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
             "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
             "OPENBLAS_CORETYPE": "Haswell"},
}


def _requested_isa(argv) -> str:
    for i, a in enumerate(argv):
        if a == "--isa" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--isa="):
            return a.split("=", 1)[1]
    return "native"


os.environ.update(ISA_ENV.get(_requested_isa(sys.argv[1:]), {}))

import common  # noqa: E402
from common import Budget, Context  # noqa: E402


def _conv(ctx):
    import bench_conv

    return bench_conv.run(ctx)


def _pool(ctx):
    import bench_pool

    return bench_pool.run(ctx)


def _rnn(ctx):
    import bench_rnn

    return bench_rnn.run(ctx)


def _optim(ctx):
    import bench_optim

    return bench_optim.run(ctx)


def _nn(ctx):
    import bench_nn

    return bench_nn.run(ctx)


def _torch_adapter(ctx):
    import bench_torch_adapter

    return bench_torch_adapter.run(ctx)


# family -> (RESULTS.md section title, benchmark function)
FAMILIES = {
    "conv": ("conv (CPU)", _conv),
    "pool": ("pool (CPU)", _pool),
    "rnn": ("rnn (CPU)", _rnn),
    "optim": ("optim (CPU)", _optim),
    "nn": ("nn (CPU)", _nn),
    "torch_adapter": ("torch adapter: digits CNN training step (CPU)", _torch_adapter),
}


def _faults_per_call(rows) -> dict:
    """{contender: the most minor page faults per timed call over the family's cases}."""
    worst = {}
    for row in rows:
        for name, st in (row.get("time_s") or {}).items():
            f = st.get("faults_per_call") if isinstance(st, dict) else None
            if f is not None:
                worst[name] = max(worst.get(name, 0.0), f)
    return worst


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("family", choices=sorted(FAMILIES) + ["all"])
    ap.add_argument("--threads", type=int, default=os.cpu_count(),
                    help="threads for every contender (default: all cores)")
    ap.add_argument("--repeats", type=int, default=None,
                    help="fixed number of timed calls per measurement (default: adaptive, "
                         "~1.5 s per measurement, at least 5; NumPy reference ~0.75 s, at least 3)")
    ap.add_argument("--quick", action="store_true",
                    help="short smoke run (< 1 min): few repeats, one round, noisy numbers; "
                         "its JSON gets a -quick suffix and RESULTS.md is not updated")
    ap.add_argument("--no-write", action="store_true",
                    help="print only: no JSON file, no RESULTS.md update")
    ap.add_argument("--heap", choices=["steady", "default"], default="steady",
                    help="steady (default): glibc's malloc keeps freed memory, so no "
                         "contender's buffers come from fresh, page-faulting pages; default: "
                         "glibc's own thresholds (times then depend on the heap's history)")
    ap.add_argument("--isa", choices=["native"] + sorted(ISA_ENV), default="native",
                    help="native (default): every library's widest code for this CPU; avx2: "
                         "all held to AVX2 (" + ", ".join(f"{k}={v}" for k, v in
                                                          ISA_ENV["avx2"].items())
                         + "); its JSON gets an -avx2 suffix and RESULTS.md its own sections")
    ap.add_argument("--wait-idle", type=float, default=None, metavar="S",
                    help="first wait up to S seconds for other processes to go quiet "
                         "(default 60, with --quick 0)")
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

    heap = common.steady_heap() if args.heap == "steady" else "default (glibc thresholds)"
    notes = common.set_threads(args.threads)
    info = common.machine_info(args.threads, notes)
    info["heap"] = heap
    info["isa"] = args.isa
    info["isa_env"] = ISA_ENV.get(args.isa, {})
    if args.isa != "native" and common.ak.build_info()["gemm_isa"] != args.isa:
        print(f"--isa {args.isa}: this CPU does not run it (adlkernels' kernel: "
              f"{common.ak.build_info()['gemm_isa']})")
        return 1
    print(f"machine: {info['cpu']}, {info['cores']} cores ({'/'.join(info['cpu_flags'])}), "
          f"host {info['hostname']}")
    print(f"threads: {args.threads} -> {notes}")
    print(f"heap: {heap}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()
                                   if isinstance(v, str)))
    if common.torch is None:
        print("torch not importable: torch columns skipped")

    if args.wait_idle is None:
        args.wait_idle = 0.0 if args.quick else 60.0
    if args.wait_idle > 0:
        other = common.wait_for_idle(args.wait_idle)
        if other is not None and other >= 10:
            print(f"WARNING: other processes use {other:.0f}% of the CPUs: expect noisy numbers")

    t0 = time.perf_counter()
    peak = common.sgemm_peak(args.threads, 2048, ref_budget)
    fma = common.fma_peak(args.threads)
    bw = common.copy_bandwidth(256, ref_budget)
    print(f"FMA peak ({fma['isa']}, registers only): {fma['1_thread']:.1f} GFLOP/s on one core, "
          f"{args.threads} x that = {fma['gflops']:.1f} ('% peak' below); "
          f"all {args.threads} at once: "
          + ", ".join(f"{r:.1f}" for r in fma["concurrent_per_thread"]) + " per thread")
    for key in ("threads", "1_thread"):
        p = peak[key]
        print(f"sgemm 2048^3 (adlkernels' scipy-openblas32, {p['threads']} thread(s)): "
              f"{p['gflops']:.1f} GFLOP/s median, {p['gflops_best']:.1f} best")
    print(f"copy 256 MiB (np.copyto): {bw['gbps_read_write']:.1f} GB/s read+write")

    families = sorted(FAMILIES) if args.family == "all" else [args.family]
    for fam in families:
        title, fn = FAMILIES[fam]
        if args.isa != "native":
            title = title.replace("(CPU)", f"(CPU, held to {args.isa.upper()})")
        print(f"\n== {title}")
        ctx = Context(threads=args.threads, budget=budget, slow_budget=slow,
                      rounds=rounds, gemm_peak_gflops=peak["gflops"],
                      fma_peak_gflops=fma["gflops"],
                      copy_gbps=bw["gbps_read_write"])
        with common.LoadMeter() as load:
            res = fn(ctx)
        load_txt = ("n/a" if load.other_pct is None else
                    f"other processes {load.other_pct:.1f}%, steal {load.steal_pct:.1f}% of the CPUs")
        print("\n" + res.text)
        if res.legend:
            print("\n" + res.legend)
        print(f"load besides this benchmark during the {fam} run: {load_txt}")
        faults = _faults_per_call(res.rows)
        faults_txt = ", ".join(f"{n} {v:.0f}" for n, v in faults.items()) or "n/a"
        print(f"page faults per timed call (worst case): {faults_txt}")
        if args.no_write:
            continue
        suffix = ("" if args.isa == "native" else f"-{args.isa}") + ("-quick" if args.quick else "")
        path = common.result_path(fam, info, suffix=suffix)
        common.write_json(path, {
            "family": fam, "machine": info, "quick": args.quick,
            "sgemm_peak": peak, "fma_peak": fma, "copy_bandwidth": bw, "cpu_load": load.to_json(),
            "results": res.rows,
        })
        rel = os.path.relpath(path, common.BENCH_DIR.parent)
        body = (
            f"{info['date'][:10]}, {info['cpu']} ({info['cores']} cores), "
            f"{args.threads} threads"
            + (f", every library held to {args.isa.upper()} ("
               + ", ".join(f"{k}={v}" for k, v in info["isa_env"].items()) + ")"
               if args.isa != "native" else "") + "; "
            f"adlkernels {info['versions']['adlkernels']}, "
            f"torch {info['versions']['torch']}, numpy {info['versions']['numpy']}. "
            f"FMA peak {fma['1_thread']:.1f} GFLOP/s per core ({fma['isa']}; % peak: of "
            f"{args.threads} x that), sgemm {peak['gflops']:.1f} GFLOP/s (2048^3, "
            f"scipy-openblas32, {100 * peak['gflops'] / fma['gflops']:.0f}% of peak), "
            f"copy {bw['gbps_read_write']:.1f} GB/s (read+write); {load_txt}. "
            f"Heap: {heap}; page faults per timed call, worst case: {faults_txt}. "
            f"Raw data: `{rel}`.\n\n"
            + (res.notes.strip() + "\n\n" if res.notes else "") + res.markdown
        )
        if args.quick:  # a smoke run's noisy numbers never replace a full run's summary
            print(f"wrote {rel} (--quick: bench/RESULTS.md left as it is)")
            continue
        common.update_markdown_section(title, body)
        print(f"wrote {rel} and bench/RESULTS.md")
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
