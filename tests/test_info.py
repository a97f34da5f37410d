"""`python -m adlkernels info` and build_info()["cuda"]: whether the CUDA kernels can run
here, with the reason when they cannot (the verdict logic is checked on made-up findings,
so that the GPU cases are covered on machines without one)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

import adlkernels as ak
from adlkernels import _cudainfo
from adlkernels.__main__ import main

VERDICT = re.compile(r"^CUDA kernels: (can run here( \(.+\))?|cannot run here: (?P<reason>.+))$")
ROW = re.compile(r"^  \S.*?\s{2,}\S.*$|^    device \d+\s{2,}\S.*$")


def _info_text(capsys) -> list:
    assert main(["info"]) == 0
    return capsys.readouterr().out.rstrip("\n").split("\n")


def test_info_output_is_well_formed(capsys):
    lines = _info_text(capsys)
    assert lines[0] == f"adlkernels {ak.__version__}"
    assert lines.count("CUDA") == 1
    cuda_at = lines.index("CUDA")
    for line in lines[1:cuda_at] + lines[cuda_at + 1 : -1]:
        assert ROW.match(line), line
    keys = {line.split()[0] for line in lines[cuda_at + 1 : -1]}
    assert "extension" in keys
    m = VERDICT.match(lines[-1])
    assert m, lines[-1]
    cuda = ak.build_info()["cuda"]
    assert (m["reason"] is None) == cuda["runnable"]
    if not cuda["runnable"]:
        assert m["reason"] == cuda["reason"]


def test_info_json(capsys):
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    for key in ("version", "compiler", "blas", "sanitizers", "cuda"):
        assert key in info, key
    cuda = info["cuda"]
    assert isinstance(cuda["built"], bool) and isinstance(cuda["runnable"], bool)
    assert (cuda["reason"] is None) == cuda["runnable"]
    if cuda["built"] and cuda["loads"]:
        assert isinstance(cuda["devices"], int) and cuda["architectures"]
        assert "installed" in cuda["cupy"]


@pytest.mark.skipif(ak.has_cuda(), reason="a CUDA device is visible here")
def test_no_device_verdict(capsys):
    cuda = ak.build_info()["cuda"]
    assert cuda["runnable"] is False
    assert isinstance(cuda["reason"], str) and cuda["reason"]
    assert _info_text(capsys)[-1] == f"CUDA kernels: cannot run here: {cuda['reason']}"


def test_info_exits_zero_in_a_fresh_process(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "adlkernels", "info"], capture_output=True, text=True, cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert any(VERDICT.match(line) for line in proc.stdout.splitlines()), proc.stdout


# ---- the verdict on made-up findings ------------------------------------------------

GOOD = {
    "built": True,
    "loads": True,
    "version": "13.0",
    "architectures": ["90-real", "90-virtual"],
    "devices": 1,
    "driver": "13.0",
    "driver_found": True,
    "driver_error": None,
    "gpus": [{"index": 0, "name": "NVIDIA H200", "compute_capability": "9.0", "supported": True}],
    "cupy": {"installed": True, "imports": True, "version": "14.0.0"},
}


@pytest.mark.parametrize(
    "change, reason",
    [
        ({}, None),
        ({"built": False}, "no CUDA extension"),
        ({"loads": False, "error": "ImportError: libcudart"}, "does not load (ImportError: libcudart)"),
        ({"driver_found": False, "driver_error": "libcuda.so.1 not found"}, "no CUDA driver (libcuda.so.1"),
        ({"driver": "12.8"}, "supports CUDA 12.8, this build's runtime is CUDA 13.0"),
        ({"driver_error": "CUDA_ERROR_NO_DEVICE (no CUDA-capable device is detected)", "gpus": []},
         "reports CUDA_ERROR_NO_DEVICE"),
        ({"gpus": [], "devices": 0}, "no CUDA device is visible"),
        ({"devices": 0}, "runtime 13.0 sees none"),
        ({"gpus": [{"index": 0, "name": "A100", "compute_capability": "8.0", "supported": False}]},
         "no visible device runs this build's code (built for 90-real,90-virtual; found A100 (8.0))"),
        ({"cupy": {"installed": False}}, "cupy is not installed"),
        ({"cupy": {"installed": True, "imports": False, "error": "ImportError: x"}}, "cupy does not import"),
    ],
)
def test_verdict(change, reason):
    got = _cudainfo.verdict({**GOOD, **change})
    if reason is None:
        assert got is None
    else:
        assert got is not None and reason in got, got


def test_verdict_names_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert "CUDA_VISIBLE_DEVICES=''" in _cudainfo.verdict({**GOOD, "gpus": [], "devices": 0})


@pytest.mark.parametrize(
    "archs, cc, runs",
    [
        (["90-real", "90-virtual"], "9.0", True),
        (["90-real", "90-virtual"], "10.0", True),  # PTX, JIT-compiled
        (["90-real", "90-virtual"], "8.9", False),
        (["90-real"], "10.0", False),
        (["80-real"], "8.6", True),
        (["86-real"], "8.0", False),
        (["90"], "12.0", True),
        (["90a-real"], "9.0", True),
        (["90a-real"], "10.0", False),
        (["100f-real"], "10.3", True),
        (["all"], "9.0", None),
        (["native"], "9.0", None),
    ],
)
def test_arch_runs(archs, cc, runs):
    assert _cudainfo.arch_runs(archs, cc) is runs


def test_info_with_a_device(monkeypatch, capsys):
    # A machine with an H200, a driver and cupy, as the probes would find it.
    module = {k: GOOD[k] for k in ("built", "loads", "version", "architectures", "devices", "driver")}
    monkeypatch.setattr(_cudainfo, "probe_module", lambda: dict(module))
    monkeypatch.setattr(
        _cudainfo, "probe_driver",
        lambda: {"found": True, "error": None, "version": "13.0",
                 "gpus": [{"index": 0, "name": "NVIDIA H200", "compute_capability": "9.0"}]},
    )
    monkeypatch.setattr(_cudainfo, "probe_cupy", lambda import_it: dict(GOOD["cupy"]))
    status = _cudainfo.cuda_status(import_cupy=True)
    assert status["runnable"] and status["reason"] is None
    assert status["gpus"][0]["supported"] is True
    lines = _info_text(capsys)
    assert any(re.match(r"^    device 0\s+NVIDIA H200, compute capability 9\.0$", ln) for ln in lines), lines
    assert lines[-1].startswith("CUDA kernels: can run here")
