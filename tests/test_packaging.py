"""Packaging: the extension modules find libscipy_openblas by their RUNPATH.

No import order is needed: a fresh interpreter may import ``adlkernels._adlk`` (or load
the extension file alone, without the package) first thing, and the library that the
dynamic loader picks is the one in the scipy-openblas32 package of the same environment.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap

import pytest

import adlkernels as ak
from adlkernels._backend import cuda_module

EXTENSIONS = [ak._adlk.__file__] + ([cuda_module().__file__] if cuda_module() is not None else [])
RPATH_ENTRY = "$ORIGIN/../scipy_openblas32/lib"


def _openblas_lib_dir() -> str:
    # Imported here, in the test process only: the subprocesses below must not import it.
    import scipy_openblas32

    return os.path.realpath(scipy_openblas32.get_lib_dir())


# The extension's first RUNPATH entry reaches scipy-openblas32 installed in the same
# directory as adlkernels (a virtual environment, site-packages); an editable install
# whose modules stay in the build directory reaches it by its second, absolute entry.
# Layouts that install the two in different directories on sys.path (pip --target,
# PYTHONPATH) are beyond any RUNPATH: there adlkernels imports scipy_openblas32 instead.
_EXT_PARENT = os.path.dirname(os.path.dirname(os.path.realpath(ak._adlk.__file__)))
BESIDE = os.path.realpath(os.path.join(_EXT_PARENT, "scipy_openblas32", "lib")) == _openblas_lib_dir()
SPLIT = not BESIDE and any(os.path.realpath(p) == _EXT_PARENT for p in sys.path if p)
reachable = pytest.mark.skipif(
    SPLIT, reason="adlkernels and scipy-openblas32 are installed in different directories"
)


def _run(*pieces: str) -> str:
    """Runs the pieces of code (each dedented) in a fresh interpreter; its stdout."""
    code = "\n".join(textwrap.dedent(p) for p in pieces)
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout


# The directory from which the process mapped libscipy_openblas (one copy only; numpy's
# own libscipy_openblas64_ is another library).
_MAPPED_OPENBLAS = """
    def mapped_openblas():
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "/libscipy_openblas." in line}
        assert len(paths) == 1, paths
        return os.path.dirname(os.path.realpath(paths.pop()))
"""


@reachable
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RUNPATH and /proc are Linux's")
def test_extension_imports_first_and_blas_runs():
    out = _run(
        """
        import sys
        import adlkernels._adlk
        import os
        """,
        _MAPPED_OPENBLAS,
        """
        assert "scipy_openblas32" not in sys.modules, "adlkernels imported scipy_openblas32"
        import numpy as np
        import adlkernels as ak
        rng = np.random.default_rng(0)
        x, w, b = rng.standard_normal((7, 5)), rng.standard_normal((3, 5)), rng.standard_normal(3)
        y = ak.linear_forward(x, w, b)
        assert np.allclose(y, x @ w.T + b, rtol=1e-12, atol=1e-12)
        assert "OpenBLAS" in ak.build_info()["blas_config"]
        assert "scipy_openblas32" not in sys.modules
        print(mapped_openblas())
        """
    )
    assert out.strip().splitlines()[-1] == _openblas_lib_dir()


@reachable
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RUNPATH and /proc are Linux's")
@pytest.mark.parametrize("path", EXTENSIONS, ids=lambda p: os.path.basename(p).split(".")[0])
def test_extension_file_loads_alone(path):
    # The extension file by itself, outside its package: only its RUNPATH can lead the
    # loader to libscipy_openblas (no package __init__, no earlier import; the CUDA
    # module's own import of adlkernels._adlk runs after it is loaded).
    name = os.path.basename(path).split(".")[0]
    out = _run(
        f"""
        import importlib.util, os, sys
        """,
        _MAPPED_OPENBLAS,
        f"""
        spec = importlib.util.spec_from_file_location({name!r}, {path!r})
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        if {name!r} == "_adlk":
            assert "OpenBLAS" in mod.build_info()["blas_config"]  # calls into the library
        # _adlk_cuda imports adlkernels._adlk (the geometry classes it takes) by design.
        loaded = ("scipy_openblas32",) if {name!r} == "_adlk_cuda" else ("adlkernels", "scipy_openblas32")
        assert not any(m.startswith(loaded) for m in sys.modules)
        print(mapped_openblas())
        """
    )
    assert out.strip().splitlines()[-1] == _openblas_lib_dir()


def _dynamic_section(path: str) -> str:
    for tool, args in (("readelf", ["-d"]), ("objdump", ["-p"])):
        if shutil.which(tool):
            return subprocess.run([tool, *args, path], capture_output=True, text=True, check=True).stdout
    pytest.skip("neither readelf nor objdump is installed")


@reachable
@pytest.mark.parametrize("path", EXTENSIONS, ids=lambda p: os.path.basename(p).split(".")[0])
def test_extension_runpath_is_origin_relative(path):
    if os.path.basename(os.path.dirname(path)) != "adlkernels":
        pytest.skip(f"{path} is not an installed module (not in an adlkernels package directory)")
    dyn = _dynamic_section(path)
    # readelf: "(RUNPATH)  Library runpath: [a:b]"; objdump: "RUNPATH  a:b".
    m = re.search(r"\b(?:RUNPATH|RPATH)\b\)?\s+(?:Library r(?:un)?path: \[)?([^\]\n]+)", dyn)
    assert m, f"no RUNPATH/RPATH in {path}:\n{dyn}"
    entries = m.group(1).strip().split(":")
    assert entries[0] == RPATH_ENTRY, entries
    if BESIDE:
        # The relative entry leads to the scipy-openblas32 package beside this one.
        origin = os.path.dirname(os.path.realpath(path))
        assert os.path.realpath(entries[0].replace("$ORIGIN", origin)) == _openblas_lib_dir()
    else:
        # An editable install's module in its build directory: the absolute entry.
        assert _openblas_lib_dir() in [os.path.realpath(e) for e in entries[1:]], entries


@reachable
@pytest.mark.skipif(shutil.which("ldd") is None, reason="ldd is not installed")
@pytest.mark.parametrize("path", EXTENSIONS, ids=lambda p: os.path.basename(p).split(".")[0])
def test_ldd_resolves_openblas(path):
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    out = subprocess.run(["ldd", path], capture_output=True, text=True, check=True, env=env).stdout
    line = next((ln for ln in out.splitlines() if "libscipy_openblas" in ln), None)
    assert line is not None, out
    assert "not found" not in line, out
    target = line.split("=>")[1].split("(")[0].strip()
    assert os.path.dirname(os.path.realpath(target)) == _openblas_lib_dir(), out
