"""Helpers shared by every kernel family's benchmark: threads, timing, machine facts,
reference rates (GEMM peak, copy bandwidth) and result files.
"""

from __future__ import annotations

import ctypes
import datetime as _dt
import json
import math
import os
import platform
import re
import socket
import statistics
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

import adlkernels as ak

try:
    import torch
except ImportError:  # torch is a peer in the comparison, never required
    torch = None

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
RESULTS_MD = BENCH_DIR / "RESULTS.md"


# ---------------------------------------------------------------------------- threads

def _ak_blas():
    """adlkernels' OpenBLAS (scipy-openblas32's library, loaded by ``import adlkernels``)."""
    import scipy_openblas32

    path = os.path.realpath(os.path.join(scipy_openblas32.get_lib_dir(), "libscipy_openblas.so"))
    lib = ctypes.CDLL(path)  # already loaded: same handle
    lib.scipy_openblas_get_num_threads.restype = ctypes.c_int
    return path, lib


_LIMITERS = []  # threadpoolctl limiters stay referenced for the life of the process


def _set_numpy_blas_threads(n: int) -> str:
    """Limit NumPy's own BLAS (a separate OpenBLAS, NumPy's bundled one) to n threads.

    adlkernels' OpenBLAS is deliberately left alone: the kernels run it single-threaded
    inside their own OpenMP threads, and making it multi-threaded would oversubscribe
    the cores (measured: ~100x slower convolutions on 2 cores).
    """
    np.dot(np.ones((2, 2)), np.ones((2, 2)))  # make sure NumPy's BLAS is loaded
    ak_path, _ = _ak_blas()
    try:
        from threadpoolctl import ThreadpoolController

        ctl = ThreadpoolController()
        paths = [i["filepath"] for i in ctl.info() if i["user_api"] == "blas"
                 and os.path.realpath(i["filepath"]) != ak_path]
        if paths:
            _LIMITERS.append(ctl.select(filepath=paths).limit(limits=n))
            return f"threadpoolctl ({n}): " + ", ".join(Path(p).name for p in paths)
    except ImportError:
        pass
    # Without threadpoolctl: every other OpenBLAS mapped into this process, through its
    # set_num_threads (the symbol's name varies with the build's prefix/suffix).
    with open("/proc/self/maps") as f:
        paths = {line.split()[-1] for line in f if ".so" in line}
    libs = sorted(p for p in paths if "openblas" in Path(p).name.lower()
                  and os.path.realpath(p) != ak_path)
    done = []
    for path in libs:
        lib = ctypes.CDLL(path)
        for sym in ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                    "openblas_set_num_threads64_", "openblas_set_num_threads"):
            fn = getattr(lib, sym, None)
            if fn is not None:
                fn(ctypes.c_int(n))
                done.append(f"{Path(path).name}:{sym}")
                break
    if done:
        return f"ctypes ({n}): " + ", ".join(done) + " (threadpoolctl not installed)"
    return "NOT SET (no threadpoolctl, no other OpenBLAS found): NumPy BLAS uses its default"


def set_threads(n: int) -> dict:
    """One thread count for every contender in this process; returns what was set."""
    ak.set_num_threads(n)
    out = {"adlkernels": ak.get_num_threads(),
           "adlkernels_blas": _ak_blas()[1].scipy_openblas_get_num_threads()}
    if torch is not None:
        torch.set_num_threads(n)
        out["torch"] = torch.get_num_threads()
    out["numpy_blas"] = _set_numpy_blas_threads(n)
    return out


# ------------------------------------------------------------------------------- heap

# glibc mallopt parameters
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def steady_heap(limit: int = 1 << 30) -> str:
    """Make glibc's malloc keep freed memory for reuse (mmap and trim thresholds raised to
    ``limit``), so that no contender's per-call buffers come from fresh pages.

    By default glibc serves large blocks with mmap and returns freed heap tops to the OS
    once more than the trim threshold is free, and both thresholds move with the history
    of the process. A contender whose temporaries land on fresh pages pays a page fault
    and the kernel's zeroing for every 4 KiB of them on every call: seen here as up to
    12,500 faults per call for torch's convolutions (two 26 MB buffers), 3x its
    fault-free time, in some runs and not in others. That is the allocator's cost, not the
    kernel's; with the heap kept, every contender runs fault-free in steady state (the
    timing records the faults per call to show it). Returns a note for the result files.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return "default (no glibc mallopt)"
    ok_mmap = mallopt(_M_MMAP_THRESHOLD, limit)
    ok_trim = mallopt(_M_TRIM_THRESHOLD, limit)
    if ok_mmap and ok_trim:
        return f"glibc malloc, mmap and trim thresholds {limit >> 20} MiB (mallopt)"
    return f"glibc mallopt refused (mmap {ok_mmap}, trim {ok_trim}): default thresholds"


def _minor_faults() -> int:
    """Minor page faults of this process so far (all threads)."""
    try:
        import resource
    except ImportError:  # not on POSIX
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


# ----------------------------------------------------------------------------- timing

@dataclass
class Stats:
    """Per-call wall times in seconds; faults_per_call: minor page faults of the process
    per timed call (None: not counted)."""

    median: float
    min: float
    p25: float
    p75: float
    n: int
    samples: list = field(default_factory=list, repr=False)
    faults_per_call: float | None = None

    @classmethod
    def of(cls, samples, faults=None):
        s = sorted(samples)
        q = statistics.quantiles(s, n=4) if len(s) >= 2 else [s[0]] * 3
        per_call = None if faults is None else faults / len(s)
        return cls(statistics.median(s), s[0], q[0], q[2], len(s), s, per_call)

    def to_json(self):
        d = asdict(self)
        d.pop("samples")
        return d


@dataclass
class Budget:
    """How long to spend on one measurement.

    target_s: total timed seconds to aim for; min_reps/max_reps bound the call count;
    fixed_reps (from --repeats) overrides the adaptive count.
    """

    target_s: float = 1.5
    min_reps: int = 5
    max_reps: int = 2000
    fixed_reps: int | None = None

    def reps(self, t_call: float) -> int:
        if self.fixed_reps is not None:
            return self.fixed_reps
        return int(min(self.max_reps, max(self.min_reps, math.ceil(self.target_s / max(t_call, 1e-9)))))


def time_interleaved(fns: dict[str, Callable[[], object]], budgets: dict[str, Budget],
                     rounds: int = 3, settle_s: float = 0.25,
                     warmup_s: float = 0.1) -> dict[str, Stats]:
    """Median per-call time of each function, their repeats interleaved in rounds.

    On a shared machine the load drifts; running contenders round-robin (a block of
    each per round) makes a slow phase hit all of them, which keeps their *ratios*
    honest. Before each block: a sleep of settle_s, so the previous contender's idle
    worker threads stop spinning (OpenBLAS spins ~0.1 s after each call, a full core
    on a 2-core machine), then untimed warm-up calls for at least warmup_s (thread
    pools waking up take a few calls; caches; allocator).
    """
    per_round = {}
    samples = {name: [] for name in fns}
    faults = dict.fromkeys(fns, 0)
    for _ in range(rounds):
        for name, fn in fns.items():
            time.sleep(settle_s)
            _warm_up(fn, warmup_s)
            f0 = _minor_faults()
            n = per_round.get(name)
            if n is None:  # first block: its first timed call sizes the blocks
                t0 = time.perf_counter()
                fn()
                t_call = time.perf_counter() - t0
                samples[name].append(t_call)
                n = per_round[name] = max(1, math.ceil(budgets[name].reps(t_call) / rounds))
                n -= 1
            for _ in range(n):
                t0 = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - t0)
            faults[name] += _minor_faults() - f0
    return {name: Stats.of(s, faults[name]) for name, s in samples.items()}


def _warm_up(fn, seconds: float) -> None:
    t_end = time.perf_counter() + seconds
    fn()
    while time.perf_counter() < t_end:
        fn()


class LoadMeter:
    """What else used the CPUs while a block ran, from /proc/stat, in % of all cores.

    steal_pct: time the hypervisor gave our vCPUs to other guests. other_pct: busy
    time of every other process on this machine (machine busy time minus ours). On a
    shared machine these are the noise sources; high values flag numbers to distrust.
    Both None where /proc/stat is unavailable.
    """

    steal_pct: float | None = None
    other_pct: float | None = None

    @staticmethod
    def _read():
        try:
            with open("/proc/stat") as f:
                v = [int(x) for x in f.readline().split()[1:9]]
        except (OSError, ValueError):
            return None
        t = os.times()
        # user nice system idle iowait irq softirq steal (guest time is inside user)
        busy = v[0] + v[1] + v[2] + v[5] + v[6]
        return sum(v), busy, v[7], t.user + t.system + t.children_user + t.children_system

    def __enter__(self):
        self._t0 = self._read()
        return self

    def __exit__(self, *exc):
        t1, t0 = self._read(), self._t0
        if t0 and t1 and t1[0] > t0[0]:
            hz = os.sysconf("SC_CLK_TCK")
            total = t1[0] - t0[0]
            self.steal_pct = 100.0 * (t1[2] - t0[2]) / total
            other = (t1[1] - t0[1]) - (t1[3] - t0[3]) * hz
            self.other_pct = max(0.0, 100.0 * other / total)
        return False

    def warning(self, limit: float = 10.0) -> str:
        """'' when quiet, else a short note for the printed line."""
        parts = []
        if self.other_pct is not None and self.other_pct > limit:
            parts.append(f"other processes {self.other_pct:.0f}%")
        if self.steal_pct is not None and self.steal_pct > limit / 2:
            parts.append(f"steal {self.steal_pct:.0f}%")
        return f"  [noisy: {', '.join(parts)} of the CPUs]" if parts else ""

    def to_json(self):
        return {"steal_pct": self.steal_pct, "other_processes_pct": self.other_pct}


def wait_for_idle(max_wait_s: float, busy_limit_pct: float = 10.0, probe_s: float = 2.0) -> float | None:
    """Wait (up to max_wait_s) until other processes use < busy_limit_pct of the CPUs
    over a probe_s window; returns the last reading. Benchmarks on a 2-core machine
    shared with test runs are otherwise meaningless."""
    t_end = time.monotonic() + max_wait_s
    while True:
        with LoadMeter() as m:
            time.sleep(probe_s)
        if m.other_pct is None or m.other_pct < busy_limit_pct or time.monotonic() >= t_end:
            return m.other_pct
        print(f"  machine busy (other processes {m.other_pct:.0f}% of the CPUs), waiting...",
              flush=True)


# ------------------------------------------------------------------- reference rates

def fma_peak(threads: int, seconds: float = 0.3) -> dict:
    """GFLOP/s of nothing but independent vector FMAs on registers, in the ISA of
    adlkernels' micro-kernel (``ak._adlk._fma_peak_gflops``, best of repeated runs): one
    thread alone, then ``threads`` at once (Python threads; the hook releases the GIL),
    which shows whether the clock drops with every core busy. ``gflops``, the ceiling the
    tables' "% peak" is of, is ``threads`` times the single-core figure.
    """
    from adlkernels import _adlk

    one = _adlk._fma_peak_gflops(seconds)
    rates = [0.0] * threads

    def work(i):
        rates[i] = _adlk._fma_peak_gflops(seconds)

    team = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in team:
        t.start()
    for t in team:
        t.join()
    return {"isa": ak.build_info()["gemm_isa"], "seconds": seconds, "1_thread": one,
            "threads": threads, "concurrent_per_thread": rates, "gflops": threads * one}


def sgemm_peak(threads: int, n: int = 2048, budget: Budget | None = None) -> dict:
    """GFLOP/s of one large row-major sgemm through the OpenBLAS adlkernels links.

    adlkernels has no public GEMM, so this calls the same library via ctypes. The
    kernels run that BLAS single-threaded inside their OpenMP threads, so the library
    is switched to ``threads`` threads for this measurement only and then restored
    (leaving it multi-threaded would oversubscribe the cores in the kernels). A
    single-threaded figure is measured too: the per-thread ceiling of the kernels.
    """
    _, lib = _ak_blas()
    sgemm = lib.scipy_cblas_sgemm
    fp = ctypes.POINTER(ctypes.c_float)
    i, f = ctypes.c_int, ctypes.c_float
    sgemm.argtypes = [i, i, i, i, i, i, f, fp, i, fp, i, f, fp, i]
    sgemm.restype = None
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    c = np.zeros((n, n), np.float32)
    pa, pb, pc = (m.ctypes.data_as(fp) for m in (a, b, c))
    row_major, no_trans = 101, 111

    def call():
        sgemm(row_major, no_trans, no_trans, n, n, n, 1.0, pa, n, pb, n, 0.0, pc, n)

    flops = 2.0 * n**3
    budget = budget or Budget(2.0, 5)
    saved = lib.scipy_openblas_get_num_threads()
    out = {"n": n, "blas_threads_restored_to": saved}
    try:
        for key, t in (("1_thread", 1), ("threads", threads)):
            lib.scipy_openblas_set_num_threads(t)
            st = time_interleaved({"sgemm": call}, {"sgemm": budget}, rounds=1)["sgemm"]
            out[key] = {"threads": lib.scipy_openblas_get_num_threads(),
                        "gflops": flops / st.median / 1e9, "gflops_best": flops / st.min / 1e9,
                        "time": st.to_json()}
    finally:
        lib.scipy_openblas_set_num_threads(saved)
    ref = a[:64].astype(np.float64) @ b.astype(np.float64)  # spot check the ctypes call
    if not np.allclose(c[:64], ref, rtol=1e-3, atol=1e-2 * math.sqrt(n)):
        raise RuntimeError("sgemm_peak: ctypes sgemm gave a wrong product")
    out["gflops"] = out["threads"]["gflops"]
    return out


def copy_bandwidth(mbytes: int = 256, budget: Budget | None = None) -> dict:
    """np.copyto of a large float32 array. GB/s counts bytes read + written (as STREAM's
    Copy); the bytes copied per second are half that. Single-threaded (NumPy's copy)."""
    src = np.ones(mbytes * 2**20 // 4, np.float32)
    dst = np.empty_like(src)
    st = time_interleaved({"copy": lambda: np.copyto(dst, src)},
                          {"copy": budget or Budget(1.0, 5)}, rounds=1)["copy"]
    return {"mbytes": mbytes, "gbps_read_write": 2 * src.nbytes / st.median / 1e9,
            "time": st.to_json()}


# -------------------------------------------------------------------------- machine

def cpu_model() -> str:
    """The CPU's model name, with its family and model numbers (a hypervisor may show
    only "AMD EPYC"; family 25 model 17 then still says Zen 4)."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "cpu family", "model") and key not in fields:
                    fields[key] = value.strip()
                if not line.strip() and fields:
                    break  # the first processor's block
    except OSError:
        pass
    if "model name" not in fields:
        return platform.processor() or platform.machine()
    if "cpu family" in fields and "model" in fields:
        return f"{fields['model name']} (family {fields['cpu family']}, model {fields['model']})"
    return fields["model name"]


def cpu_flags() -> list:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    return [x for x in ("avx", "avx2", "fma", "avx512f") if x in have]
    except OSError:
        pass
    return []


def machine_info(threads: int, thread_notes: dict) -> dict:
    import scipy_openblas32

    info = ak.build_info()
    return {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cores": os.cpu_count(),
        "hostname": socket.gethostname(),
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "threads": threads,
        "threads_set": thread_notes,
        "python": platform.python_version(),
        "versions": {
            "adlkernels": ak.__version__,
            "adlkernels_build": {k: info.get(k) for k in ("compiler", "openmp", "blas", "blas_config")},
            "numpy": np.__version__,
            "numpy_blas": _numpy_blas(),
            "scipy_openblas32": scipy_openblas32.__version__,
            "torch": torch.__version__ if torch is not None else None,
        },
    }


def _numpy_blas() -> str | None:
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # older NumPy: no dict mode; not worth failing a benchmark over
        return None


def result_path(family: str, info: dict, suffix: str = "") -> Path:
    """bench/results/<family>-<date>-<host or cpu><suffix>.json"""
    tag = re.sub(r"[^A-Za-z0-9]+", "-", info["hostname"] or info["cpu"]).strip("-").lower()
    return RESULTS_DIR / f"{family}-{info['date'][:10]}-{tag or 'unknown'}{suffix}.json"


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")


# --------------------------------------------------------------------------- tables

def text_table(headers, rows) -> str:
    """Right-aligned plain-text table (first column left-aligned)."""
    cells = [list(map(str, headers))] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    fmt = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                              for i, (c, w) in enumerate(zip(r, widths)))
    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(cells[0]), rule] + [fmt(r) for r in cells[1:]])


def markdown_table(headers, rows) -> str:
    align = ["---"] + ["---:"] * (len(headers) - 1)
    lines = ["| " + " | ".join(map(str, headers)) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(lines)


RESULTS_MD_HEADER = """\
# adlkernels benchmark results

Latest numbers of `bench/run.py`, one section per kernel family (older runs: the JSON
files in `bench/results/`). Reproduce with

    pip install -e .[bench]
    pip install torch==2.13.0        # optional peer; skipped when absent
    python bench/run.py conv         # a family (conv, pool) or all; --threads N,
                                     # --repeats N, --quick, --no-write

All contenders run in one process at the same thread count, with glibc's malloc
keeping freed memory (no contender pays page faults on fresh pages in steady state; see
bench/README.md, "A steady heap"). Times are medians of many calls; ratios > 1 mean
adlkernels is faster. On shared machines trust the ratios more than the absolute times.
"""


def update_markdown_section(title: str, body: str, path: Path = RESULTS_MD) -> None:
    """Replace section ``## <title>`` (up to the next ``## ``) or append it; other
    sections are kept. Creates the file, with a how-to header, when absent."""
    text = path.read_text() if path.exists() else RESULTS_MD_HEADER
    heading = f"## {title}"
    section = f"{heading}\n\n{body.strip()}\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, l in enumerate(lines) if l.rstrip() == heading), None)
    if start is None:
        text = text.rstrip() + "\n\n" + section
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
                   len(lines))
        tail = "".join(lines[end:])
        text = "".join(lines[:start]) + section + ("\n" + tail if tail else "")
    path.write_text(text)


# ------------------------------------------------------------------ family interface

@dataclass
class Context:
    """What run.py hands to a family's benchmark function."""

    threads: int
    budget: Budget         # adlkernels and torch measurements
    slow_budget: Budget    # pure-NumPy references (slow: fewer repeats)
    rounds: int            # interleaving rounds per measurement (see time_interleaved)
    gemm_peak_gflops: float  # the 2048^3 sgemm at the run's thread count
    fma_peak_gflops: float   # threads x one core's FMA ceiling (fma_peak): "% peak"
    has_torch: bool = torch is not None
    copy_gbps: float | None = None  # np.copyto bandwidth, bytes read + written per second / 1e9


@dataclass
class FamilyResult:
    rows: list             # JSON-ready dicts, one per (case, direction)
    text: str              # printed table
    markdown: str          # the table for the family's RESULTS.md section
    notes: str = ""        # RESULTS.md: what was measured and how (above the table)
    legend: str = ""       # printed under the table: how to read its columns
