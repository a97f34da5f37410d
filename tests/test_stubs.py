"""PEP 561: the package is marked typed and ships stubs of its compiled modules, and the
committed stubs are those that pybind11-stubgen writes for this build."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

import adlkernels as ak

ROOT = Path(__file__).resolve().parent.parent


def _gen_stubs():
    spec = importlib.util.spec_from_file_location("gen_stubs", ROOT / "tools" / "gen_stubs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_installed_package_is_typed():
    pkg = Path(ak.__file__).parent
    assert (pkg / "py.typed").is_file()
    for name in ("_adlk.pyi", "_adlk_cuda.pyi"):
        assert (pkg / name).is_file(), name


def test_committed_stubs_match_the_build(tmp_path):
    if importlib.util.find_spec("pybind11_stubgen") is None:
        pytest.skip('pybind11-stubgen is not installed (pip install ".[typing]")')
    # The stubs render the bindings as the pinned pybind11 builds them; a build made with
    # another one (--no-build-isolation on a machine that has its own) differs in form.
    pinned = re.search(r'"pybind11==([0-9.]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    if ak.build_info().get("pybind11") != pinned:
        pytest.skip(f"built with pybind11 {ak.build_info().get('pybind11')}, stubs are of {pinned}")
    gen = _gen_stubs()
    stubs = gen.generate(tmp_path)
    assert "_adlk.pyi" in stubs
    diff = gen.differences(stubs)
    if diff:
        pytest.fail(
            "python/adlkernels/*.pyi differ from the stubs of this build; after building the "
            f"current sources, regenerate them with `{gen.COMMAND}` and commit them:\n{diff}",
            pytrace=False,
        )


def test_normalize_changes_only_addresses():
    gen = _gen_stubs()
    a = "def f(x: object = <Foo object at 0x7f12ab34cd56>) -> None:  \n    ...\n"
    b = "def f(x: object = <Foo object at 0x55aa00ff1234>) -> None:\n    ...\n\n"
    assert gen.normalize(a) == gen.normalize(b)
    assert gen.normalize("def f(x: int = 0x10) -> None: ...") != gen.normalize("def f(x: int = 0x11) -> None: ...")
    assert gen.normalize("def f(x: int) -> None: ...") != gen.normalize("def f(y: int) -> None: ...")
