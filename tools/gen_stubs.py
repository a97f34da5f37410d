"""Type stubs of the compiled modules: python/adlkernels/_adlk.pyi and _adlk_cuda.pyi.

    python tools/gen_stubs.py           # regenerate them from the installed build
    python tools/gen_stubs.py --check   # compare instead; exit status 1 when they differ

They are written by pybind11-stubgen (``pip install ".[typing]"``, pinned there) from the
modules that ``import adlkernels`` finds, so build and install the current sources first
(``pip install .``, or an editable install). The CUDA module's stub is left as it is when
this build has no CUDA module. tests/test_stubs.py runs the check.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR = ROOT / "python" / "adlkernels"
MODULES = ("adlkernels._adlk", "adlkernels._adlk_cuda")
COMMAND = "python tools/gen_stubs.py"

# Object addresses in default-value reprs ("<... object at 0x7f...>") change from run to
# run; nothing else in the output does.
_ADDRESS = re.compile(r"\b0x[0-9a-fA-F]{6,}\b")


def normalize(text: str) -> str:
    """The stub text with what varies between runs of the same build made uniform."""
    lines = [_ADDRESS.sub("0x...", line.rstrip()) for line in text.replace("\r\n", "\n").split("\n")]
    return "\n".join(lines).strip("\n") + "\n"


def built_modules() -> list:
    """The compiled modules this build has (the CUDA one is optional)."""
    return [m for m in MODULES if importlib.util.find_spec(m) is not None]


def generate(out_dir: Path, modules=None) -> dict:
    """Runs pybind11-stubgen on the modules into out_dir; {file name: normalized text}."""
    modules = built_modules() if modules is None else modules
    cmd = [sys.executable, "-m", "pybind11_stubgen", "--exit-code", "-o", str(out_dir), *modules]
    # Run outside the checkout, so that the installed package is the one imported.
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tempfile.gettempdir())
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    stubs = {}
    for mod in modules:
        name = mod.rsplit(".", 1)[1] + ".pyi"
        stubs[name] = normalize((out_dir / "adlkernels" / name).read_text(encoding="utf-8"))
    return stubs


def differences(stubs: dict, package_dir: Path = PACKAGE_DIR) -> str:
    """A unified diff of the committed stubs against the generated ones ('' if equal)."""
    out = []
    for name, text in sorted(stubs.items()):
        path = package_dir / name
        old = normalize(path.read_text(encoding="utf-8")) if path.exists() else ""
        if old != text:
            out.extend(difflib.unified_diff(
                old.splitlines(keepends=True), text.splitlines(keepends=True),
                f"committed/{name}", f"generated/{name}"))
    return "".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="compare the committed stubs with freshly generated ones")
    args = parser.parse_args(argv)
    if importlib.util.find_spec("pybind11_stubgen") is None:
        print('pybind11-stubgen is not installed: pip install ".[typing]"', file=sys.stderr)
        return 2
    missing = sorted(set(MODULES) - set(built_modules()))
    if missing:
        print(f"not built here, stub left as it is: {', '.join(missing)}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        stubs = generate(Path(tmp))
    if args.check:
        diff = differences(stubs)
        if diff:
            sys.stdout.write(diff)
            print(f"\nthe committed stubs differ from the build's: run `{COMMAND}`", file=sys.stderr)
            return 1
        print("stubs up to date: " + ", ".join(sorted(stubs)))
        return 0
    for name, text in stubs.items():
        (PACKAGE_DIR / name).write_text(text, encoding="utf-8")
        print(f"wrote {os.path.relpath(PACKAGE_DIR / name, ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
