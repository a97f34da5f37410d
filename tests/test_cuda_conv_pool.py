"""Convolution and pooling on cupy arrays (the CUDA kernels): against the float64 NumPy
references and, bit for bit where the kernels promise it, against the CPU kernels.

Skipped without cupy or without a visible CUDA device (CI has neither).
"""

from __future__ import annotations

import numpy as np
import pytest

import adlkernels as ak
from reference import conv2d_backward_ref, conv2d_ref, fold_ref, unfold_ref
from reference_pool import (avgpool2d_backward_ref, avgpool2d_ref, max_unpool2d_ref,
                            maxpool2d_backward_ref, maxpool2d_ref)

cp = pytest.importorskip("cupy")
if not ak.has_cuda():
    pytest.skip("no CUDA device visible to adlkernels", allow_module_level=True)
pytestmark = pytest.mark.usefixtures("cuda_kernels_on")

DTYPES = [np.float32, np.float64]
TOL = {np.float32: dict(rtol=2e-5, atol=2e-5), np.float64: dict(rtol=1e-11, atol=1e-12)}


def _randn(rng, shape, dt):
    return rng.standard_normal(shape).astype(dt)


def _close(got, ref, dt, **kw):
    tol = dict(TOL[dt])
    tol.update(kw)
    np.testing.assert_allclose(cp.asnumpy(got), ref, **tol)


def _same(got, cpu):
    """Bitwise equal to the CPU kernel's result (NaNs in the same places)."""
    g = cp.asnumpy(got)
    assert g.shape == cpu.shape and g.dtype == cpu.dtype
    assert np.array_equal(g, cpu, equal_nan=True)


CONV_CASES = [
    ((2, 3, 9, 9), (4, 3, 3, 3), dict(padding=1)),
    ((3, 4, 11, 10), (6, 2, 3, 2), dict(stride=(2, 1), padding=(1, 0), groups=2)),
    ((2, 2, 12, 12), (3, 2, 3, 3), dict(dilation=2, padding=2)),
    ((1, 3, 7, 7), (2, 3, 2, 2), dict(stride=4)),               # stride > kernel
    ((5, 8, 6, 6), (16, 8, 1, 1), dict()),                      # pointwise: no im2col
    ((4, 6, 5, 5), (6, 1, 3, 3), dict(padding=1, groups=6)),    # depthwise
    ((0, 3, 8, 8), (4, 3, 3, 3), dict(padding=1)),              # empty batch
    ((64, 16, 14, 14), (32, 16, 3, 3), dict(padding=1)),        # several chunks' worth
]


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("xs,ws,geom", CONV_CASES)
def test_conv2d_forward_backward(rng, xs, ws, geom, dt):
    x, w, b = _randn(rng, xs, dt), _randn(rng, ws, dt), _randn(rng, ws[:1], dt)
    y = ak.conv2d_forward(cp.asarray(x), cp.asarray(w), cp.asarray(b), **geom)
    assert isinstance(y, cp.ndarray) and y.flags.c_contiguous
    ref = conv2d_ref(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), **geom)
    _close(y, ref, dt)
    gy = _randn(rng, ref.shape, dt)
    grads = ak.conv2d_backward(cp.asarray(gy), cp.asarray(x), cp.asarray(w), **geom)
    refs = conv2d_backward_ref(gy.astype(np.float64), x.astype(np.float64),
                               w.astype(np.float64), **geom)
    for g, r in zip(grads, refs):
        _close(g, r, dt)
    cpu = ak.conv2d_backward(gy, x, w, **geom)
    for g, c in zip(grads, cpu):
        _close(g, c, dt)


@pytest.mark.parametrize("mask", [(True, False, False), (False, True, False), (False, False, True)])
def test_conv2d_backward_mask(rng, mask):
    x, w = _randn(rng, (2, 3, 6, 6), np.float64), _randn(rng, (4, 3, 3, 3), np.float64)
    gy = _randn(rng, (2, 4, 4, 4), np.float64)
    got = ak.conv2d_backward(cp.asarray(gy), cp.asarray(x), cp.asarray(w), output_mask=mask)
    ref = conv2d_backward_ref(gy, x, w)
    for g, r, m in zip(got, ref, mask):
        assert (g is None) == (not m)
        if m:
            _close(g, r, np.float64)


def test_conv1d(rng):
    x, w = _randn(rng, (3, 4, 20), np.float64), _randn(rng, (5, 4, 3), np.float64)
    got = ak.conv1d_forward(cp.asarray(x), cp.asarray(w), stride=2, padding=1)
    _close(got, ak.conv1d_forward(x, w, stride=2, padding=1), np.float64)


@pytest.mark.parametrize("dt", DTYPES)
def test_im2col_col2im_bitwise_as_cpu(rng, dt):
    x = _randn(rng, (2, 3, 9, 8), dt)
    geom = dict(kernel_size=(3, 2), stride=(2, 1), padding=1, dilation=(1, 2))
    cols = ak.im2col(cp.asarray(x), **geom)
    _same(cols, ak.im2col(x, **geom))
    _close(cols, unfold_ref(x.astype(np.float64), **geom), dt)
    back = ak.col2im(cols, (9, 8), **geom)
    _same(back, ak.col2im(ak.im2col(x, **geom), (9, 8), **geom))
    _close(back, fold_ref(unfold_ref(x.astype(np.float64), **geom), (9, 8), **geom), dt)


POOL_CASES = [
    ((2, 3, 8, 8), dict(kernel_size=2)),
    ((2, 2, 9, 7), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ((1, 2, 10, 10), dict(kernel_size=(3, 2), stride=(1, 3), dilation=(2, 1), padding=(1, 1))),
    ((3, 1, 5, 5), dict(kernel_size=2, stride=1, padding=1, dilation=3)),  # windows in padding
    ((0, 2, 6, 6), dict(kernel_size=2)),
]


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("xs,geom", POOL_CASES)
def test_maxpool_bitwise_as_cpu(rng, xs, geom, dt):
    x = _randn(rng, xs, dt)
    if x.size:
        x.flat[:: 7] = x.flat[0]          # ties
        x.flat[3] = np.nan                # NaN wins
    y, idx = ak.maxpool2d_forward(cp.asarray(x), **geom)
    y_cpu, idx_cpu = ak.maxpool2d_forward(x, **geom)
    _same(y, y_cpu)
    _same(idx, idx_cpu)
    ref_y, ref_idx = maxpool2d_ref(x.astype(np.float64), **geom)
    np.testing.assert_array_equal(cp.asnumpy(idx), ref_idx)
    gy = _randn(rng, y_cpu.shape, dt)
    gx = ak.maxpool2d_backward(cp.asarray(gy), idx, xs)
    _same(gx, ak.maxpool2d_backward(gy, idx_cpu, xs))
    _close(gx, maxpool2d_backward_ref(gy.astype(np.float64), idx_cpu, xs), dt)
    up = ak.max_unpool2d(cp.asarray(gy), idx, xs)
    _same(up, ak.max_unpool2d(gy, idx_cpu, xs))
    _close(up, max_unpool2d_ref(gy.astype(np.float64), idx_cpu, xs), dt)


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("cip", [True, False])
@pytest.mark.parametrize("xs,geom", [
    ((2, 3, 8, 8), dict(kernel_size=2)),
    ((2, 2, 9, 7), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ((1, 2, 10, 11), dict(kernel_size=(3, 2), stride=(1, 3), padding=(1, 1))),
    ((0, 2, 6, 6), dict(kernel_size=2)),
])
def test_avgpool(rng, xs, geom, cip, dt):
    x = _randn(rng, xs, dt)
    y = ak.avgpool2d_forward(cp.asarray(x), count_include_pad=cip, **geom)
    _same(y, ak.avgpool2d_forward(x, count_include_pad=cip, **geom))
    _close(y, avgpool2d_ref(x.astype(np.float64), count_include_pad=cip, **geom), dt)
    gy = _randn(rng, y.shape, dt)
    gx = ak.avgpool2d_backward(cp.asarray(gy), xs, count_include_pad=cip, **geom)
    _close(gx, avgpool2d_backward_ref(gy.astype(np.float64), xs, count_include_pad=cip, **geom), dt)
    _close(gx, ak.avgpool2d_backward(gy, xs, count_include_pad=cip, **geom), dt)


def test_hostile_indices_raise_and_write_nothing_out_of_bounds(rng):
    gy = cp.asarray(_randn(rng, (2, 2, 3, 3), np.float32))
    for bad in (9 * 1000, -2, 2**62):
        idx = cp.zeros((2, 2, 3, 3), np.int64)
        idx[1, 0, 2, 1] = bad
        with pytest.raises(ValueError, match="indices"):
            ak.maxpool2d_backward(gy, idx, (6, 6))
        with pytest.raises(ValueError, match="indices"):
            ak.max_unpool2d(gy, idx, (6, 6))


def test_repeated_calls_are_bitwise_identical(rng):
    x, w = cp.asarray(_randn(rng, (16, 8, 12, 12), np.float32)), cp.asarray(_randn(rng, (16, 8, 3, 3), np.float32))
    gy = cp.asarray(_randn(rng, (16, 16, 12, 12), np.float32))
    first = [ak.conv2d_forward(x, w, padding=1), *ak.conv2d_backward(gy, x, w, padding=1)]
    again = [ak.conv2d_forward(x, w, padding=1), *ak.conv2d_backward(gy, x, w, padding=1)]
    for a, b in zip(first, again):
        assert cp.array_equal(a, b)


def test_runs_on_the_current_stream(rng):
    x = _randn(rng, (4, 3, 16, 16), np.float32)
    w = _randn(rng, (8, 3, 3, 3), np.float32)
    expect = cp.asnumpy(ak.conv2d_forward(cp.asarray(x), cp.asarray(w), padding=1))
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        xd, wd = cp.asarray(x), cp.asarray(w)
        y = ak.conv2d_forward(xd, wd, padding=1)
        p, _ = ak.maxpool2d_forward(y, 2)
    stream.synchronize()
    np.testing.assert_array_equal(cp.asnumpy(y), expect)
    _same(p, ak.maxpool2d_forward(expect, 2)[0])


def test_mixing_numpy_and_cupy_is_value_error(rng):
    x = _randn(rng, (1, 2, 5, 5), np.float32)
    w = _randn(rng, (3, 2, 3, 3), np.float32)
    with pytest.raises(ValueError):
        ak.conv2d_forward(cp.asarray(x), w)


def test_off_without_the_switch(rng, monkeypatch):
    monkeypatch.delenv("ADLK_CUDA_UNVERIFIED")
    with pytest.raises(RuntimeError, match="ADLK_CUDA_UNVERIFIED"):
        ak.maxpool2d_forward(cp.asarray(_randn(rng, (1, 1, 4, 4), np.float32)), 2)
