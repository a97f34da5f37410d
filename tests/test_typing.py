"""The examples type-check: `python -m mypy examples/` with the configuration in
pyproject.toml ([tool.mypy]: adlkernels read from python/, with its stubs)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

import adlkernels as ak

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.skipif(
        ak.build_info()["sanitizers"],
        reason="a sanitizer build: mypy (compiled) would run under the preloaded sanitizer runtime",
    ),
    pytest.mark.skipif(
        importlib.util.find_spec("mypy") is None, reason='mypy is not installed (pip install ".[typing]")'
    ),
]


def test_examples_type_check():
    assert any((ROOT / "examples").rglob("*.py"))
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "examples/"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, f"python -m mypy examples/ failed:\n{proc.stdout}\n{proc.stderr}"
    assert "Success: no issues found" in proc.stdout, proc.stdout
