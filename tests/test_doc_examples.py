"""Every Python example of README.md and docs/ runs.

Each ```python block of README.md and of docs/**/*.md is one test. Conventions:

- A block is a complete program: it runs alone, in a fresh interpreter (a subprocess of
  this Python, so the installed adlkernels), with a temporary directory as its working
  directory and warnings as errors, and must exit with status 0 within TIMEOUT_S. It
  does not see the other blocks of its file: whatever a reader copies runs as shown, so
  an example that continues an earlier one repeats its imports and data.
- Blocks should check what they claim (``assert``); printed output is not compared.
- A block that imports torch or ``adlkernels.torch`` is skipped when torch is absent
  (the test extra installs it).
- A block whose first line is ``# doc-example: gpu`` needs CuPy and a CUDA device: it is
  skipped unless ``cupy`` imports and ``adlkernels.has_cuda()`` is true.
- Other fenced blocks (```bash, ```cmake, ```text, ```{eval-rst}) are not run. A fence
  that names Python in another way (```py, ```python3, ```{code-block} python) would
  escape this test, so it fails test_python_fences_are_plain.
"""

from __future__ import annotations

import importlib.util
import pathlib
import re
import subprocess
import sys

import pytest

import adlkernels as ak

ROOT = pathlib.Path(__file__).resolve().parent.parent
TIMEOUT_S = 300  # a torch import under the sanitizers takes a while; a hang must not
GPU_MARKER = "# doc-example: gpu"
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
PYTHONISH = re.compile(r"^\s*(\{code(-block|-cell)?\}\s*)?(py|python\d*|pycon|ipython\d*)\b",
                       re.IGNORECASE)
USES_TORCH = re.compile(r"^\s*(import|from)\s+(torch|adlkernels\.torch)\b", re.MULTILINE)


def _doc_files():
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _fenced_blocks(path: pathlib.Path):
    """(info string, first line number of the code, code) of each fenced block."""
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, info, start = m.group("fence"), m.group("info").strip(), i + 1
        i += 1
        body = []
        while i < len(lines):
            close = FENCE.match(lines[i])
            if close and close.group("fence").startswith(fence) and not close.group("info").strip():
                break
            body.append(lines[i])
            i += 1
        i += 1
        yield info, start + 1, "\n".join(body) + "\n"


def _examples():
    out = []
    for path in _doc_files():
        rel = path.relative_to(ROOT).as_posix()
        for info, line, code in _fenced_blocks(path):
            if info == "python":
                out.append(pytest.param(code, id=f"{rel}:{line}"))
    return out


EXAMPLES = _examples()


def _has_gpu() -> bool:
    return importlib.util.find_spec("cupy") is not None and ak.has_cuda()


def test_examples_found():
    # README.md and every page of docs/ with examples; a parser that finds none is broken.
    files = {p.id.split(":")[0] for p in EXAMPLES}
    assert "README.md" in files and "docs/index.md" in files, sorted(files)


def test_python_fences_are_plain():
    odd = [f"{path.relative_to(ROOT)}:{line}: ```{info}"
           for path in _doc_files() for info, line, _ in _fenced_blocks(path)
           if info != "python" and PYTHONISH.match(info)]
    assert not odd, "Python examples must be fenced as ```python to be run: " + "; ".join(odd)


@pytest.mark.parametrize("code", EXAMPLES)
def test_example_runs(code, tmp_path):
    if code.lstrip().startswith(GPU_MARKER) and not _has_gpu():
        pytest.skip("needs CuPy and a CUDA device (# doc-example: gpu)")
    if USES_TORCH.search(code) and importlib.util.find_spec("torch") is None:
        pytest.skip("needs torch")
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    proc = subprocess.run([sys.executable, "-W", "error", str(script)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, (
        f"exit status {proc.returncode}\n--- code\n{code}--- stdout\n{proc.stdout}"
        f"--- stderr\n{proc.stderr}")
