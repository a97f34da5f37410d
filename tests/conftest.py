"""Shared fixtures: a seeded random generator and the float dtype parametrization."""

from __future__ import annotations

import warnings
import zlib

import numpy as np
import pytest

import adlkernels as ak

# When a hypothesis test fails, hypothesis' pytest plugin imports
# hypothesis.extra._patching, which imports libcst where that is installed; in some
# environments that import emits a DeprecationWarning (mypy_extensions.TypedDict), and
# filterwarnings=error turns it into a pytest INTERNALERROR that hides the real failure.
# Import it once here with warnings silenced so that a failure is reported normally.
try:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import hypothesis.extra._patching  # noqa: F401
except Exception:  # not installed or not importable: the plugin then skips it too
    pass

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@pytest.fixture
def rng(request):
    """A numpy Generator seeded from the test's id: reproducible, different per case."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture
def cuda_kernels_on(monkeypatch):
    """The CUDA kernels on for the test (they are off until verified on a GPU: _cuda.py)."""
    monkeypatch.setenv("ADLK_CUDA_UNVERIFIED", "1")


@pytest.fixture(params=DTYPES, ids=lambda d: d.name)
def dtype(request):
    """float32 and float64; tolerances in reference.TOLERANCES / reference.tolerance()."""
    return request.param


@pytest.fixture
def restore_threads():
    """Restores ak's thread count after a test that changes it."""
    n = ak.get_num_threads()
    try:
        yield n
    finally:
        ak.set_num_threads(n)
