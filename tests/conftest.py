"""Shared fixtures: a seeded random generator and the float dtype parametrization."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import adlkernels as ak

DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@pytest.fixture
def rng(request):
    """A numpy Generator seeded from the test's id: reproducible, different per case."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


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
