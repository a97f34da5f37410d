"""Pooling family (docs/api/pool.md) against the references in reference_pool.py.

Max pooling is a selection: values and indices must equal the reference exactly
(NaN included). Gradients and average pooling are compared within the dtype's
tolerance (reference.assert_close), and exactly where every sum is exact (small
integer values). Section-0 rules (dtypes, shapes, hyper-parameters, strides,
outputs, determinism) are checked here for the pooling functions.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import adlkernels as ak
from helpers import _shape_text, names, randn
from reference import assert_close
from reference_pool import (
    avgpool2d_backward_ref,
    avgpool2d_ref,
    avgpool_divisors_ref,
    geometry_is_valid,
    max_unpool2d_ref,
    maxpool2d_backward_ref,
    maxpool2d_ref,
    pool_geometry,
    pool_out_size,
)

HYPOTHESIS = settings(max_examples=40, deadline=None, database=None)

POOL_NAMES = ["maxpool2d_forward", "maxpool2d_backward", "max_unpool2d", "avgpool2d_forward",
              "avgpool2d_backward"]


def values(rng, shape, dtype, mode):
    """Inputs for max pooling: 'randn'; 'ties' (small integers: many equal maxima);
    'nonfinite' (ties plus NaN, +inf and -inf sprinkled in); 'negative' (all < 0, so a
    padded cell winning as 0 would show)."""
    if mode == "randn":
        return randn(rng, shape, dtype)
    if mode == "negative":
        return (-np.abs(randn(rng, shape)) - 0.5).astype(dtype)
    x = rng.integers(-2, 3, size=shape).astype(dtype)
    if mode == "nonfinite":
        u = rng.random(shape)
        x[u < 0.12] = np.nan
        x[(u >= 0.12) & (u < 0.17)] = np.inf
        x[(u >= 0.17) & (u < 0.24)] = -np.inf
    else:
        assert mode == "ties"
    return x


def _check_out(a, dtype, shape, what):
    assert type(a) is np.ndarray, f"{what}: {type(a)}"
    assert a.dtype == np.dtype(dtype), f"{what}: dtype {a.dtype}, expected {np.dtype(dtype)}"
    assert a.shape == tuple(shape), f"{what}: shape {a.shape}, expected {tuple(shape)}"
    assert a.flags.c_contiguous, what


def check_maxpool(x, geom):
    """ak.maxpool2d_forward(x, **geom) equals the reference exactly; returns (y, idx)."""
    out = ak.maxpool2d_forward(x, **geom)
    assert isinstance(out, tuple) and len(out) == 2
    y, idx = out
    ref_y, ref_i = maxpool2d_ref(x, **geom)
    _check_out(y, x.dtype, ref_y.shape, "y")
    _check_out(idx, np.int64, ref_i.shape, "indices")
    if not np.array_equal(y.astype(np.float64), ref_y, equal_nan=True):
        bad = np.argwhere(~((y == ref_y) | (np.isnan(y) & np.isnan(ref_y))))[0]
        t = tuple(int(i) for i in bad)
        raise AssertionError(f"y differs at {t}: got {y[t]!r}, expected {ref_y[t]!r} ({geom})")
    if not np.array_equal(idx, ref_i):
        t = tuple(int(i) for i in np.argwhere(idx != ref_i)[0])
        raise AssertionError(f"indices differ at {t}: got {idx[t]}, expected {ref_i[t]} ({geom})")
    return y, idx


def check_maxpool_backward(gy, idx, input_size, dtype):
    gx = ak.maxpool2d_backward(gy, idx, input_size)
    ref = maxpool2d_backward_ref(gy, idx, input_size)
    mag = maxpool2d_backward_ref(np.abs(gy.astype(np.float64)), idx, input_size)
    assert gx.flags.c_contiguous
    assert_close(gx, ref, dtype, mag, "grad_x")
    return gx


# ----------------------------------------------------------------------------------
# names
# ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", POOL_NAMES)
def test_names_importable(name):
    top = getattr(ak, name)
    assert callable(top)
    assert getattr(ak.pool, name) is top
    assert name in ak.__all__
    assert name in ak.pool.__all__


# ----------------------------------------------------------------------------------
# output size
# ----------------------------------------------------------------------------------


@pytest.mark.parametrize("size,k,s,p,d,ceil,expected", [
    (5, 2, 2, 0, 1, False, 2),
    (5, 2, 2, 0, 1, True, 3),
    (5, 2, 2, 1, 1, True, 3),   # 4 by the formula; the 4th window starts in the padding
    (3, 2, 2, 1, 1, True, 2),   # 3 by the formula; the 3rd starts at 3 = size + p: dropped
    (6, 3, 2, 1, 1, True, 4),   # the 4th window starts at 5, inside: kept
    (7, 3, 2, 1, 1, True, 4),
    (2, 3, 2, 0, 1, True, 1),   # kernel larger than the input: one window with ceil_mode
    (2, 3, 2, 0, 1, False, 0),
    (10, 3, 1, 0, 2, False, 6),
    (1, 2, 1, 1, 2, False, 1),
    (8, 2, 3, 0, 1, True, 3),
    (8, 2, 3, 1, 1, True, 3),   # 4 by the formula; the 4th starts at 8 = size + p: dropped
    (8, 2, 3, 1, 1, False, 3),
])
def test_pool_out_size_helper(size, k, s, p, d, ceil, expected):
    """The reference's size helper against hand-computed values (PyTorch's rule)."""
    assert pool_out_size(size, k, s, p, d, ceil) == expected


def test_pool_out_size_helper_vs_torch():
    torch = pytest.importorskip("torch")
    for size in range(1, 7):
        for k in range(1, 5):
            for s in range(1, 4):
                for p in range(0, k // 2 + 1):
                    for ceil in (False, True):
                        expected = pool_out_size(size, k, s, p, 1, ceil)
                        x = torch.zeros(1, 1, size, 1)
                        if expected < 1:
                            if size > 2:
                                continue  # torch's exceptions are slow: a sample suffices
                            with pytest.raises(RuntimeError):
                                torch.nn.functional.avg_pool2d(x, (k, 1), (s, 1), (p, 0), ceil)
                        else:
                            y = torch.nn.functional.avg_pool2d(x, (k, 1), (s, 1), (p, 0), ceil)
                            assert y.shape[2] == expected, (size, k, s, p, ceil)


# ----------------------------------------------------------------------------------
# maxpool forward: explicit geometries
# ----------------------------------------------------------------------------------

FAST_WIDTHS = [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 18, 31, 32, 33, 40]

# (id, x shape, geometry)
MAXPOOL_CASES = (
    [(f"k2s2_w{w}", (2, 3, 5 if w % 2 else 6, w), dict(kernel_size=2, stride=2))
     for w in FAST_WIDTHS if w >= 2]
    + [(f"k2_none_w{w}", (1, 2, 4, w), dict(kernel_size=2)) for w in (2, 9, 16, 33)]
    + [(f"k2s2_ceil_w{w}", (1, 2, 5, w), dict(kernel_size=2, stride=2, ceil_mode=True))
       for w in (1, 3, 9, 17, 33)]
    + [(f"k3s2p1_w{w}", (2, 3, 7 if w % 2 else 6, w), dict(kernel_size=3, stride=2, padding=1))
       for w in FAST_WIDTHS]
    + [(f"k3s2p1_ceil_w{w}", (1, 2, 6, w),
        dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)) for w in (2, 6, 9, 16, 33)]
    + [
        ("k3s2_nopad", (2, 2, 9, 17), dict(kernel_size=3, stride=2)),
        ("k3s1", (2, 2, 6, 19), dict(kernel_size=3, stride=1)),
        ("k3s1p1", (1, 3, 5, 17), dict(kernel_size=3, stride=1, padding=1)),
        ("k2x3_s1x2", (2, 3, 7, 9), dict(kernel_size=(2, 3), stride=(1, 2))),
        ("k3x2_s2x1_p1x1", (1, 2, 8, 7), dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 1))),
        ("stride_gt_kernel", (2, 2, 11, 13), dict(kernel_size=2, stride=3)),
        ("stride_gt_kernel_pairs", (1, 2, 10, 12), dict(kernel_size=(2, 1), stride=(4, 3))),
        ("stride_gt_kernel_ceil", (1, 2, 10, 12), dict(kernel_size=2, stride=3, ceil_mode=True)),
        ("dilation2", (2, 2, 9, 10), dict(kernel_size=3, stride=1, dilation=2)),
        ("dilation2_pad", (1, 3, 9, 10), dict(kernel_size=3, stride=2, padding=1, dilation=2)),
        ("dilation2x1", (2, 2, 9, 8), dict(kernel_size=(3, 2), stride=1, dilation=(2, 1))),
        ("dilation1x3_ceil", (1, 2, 7, 12),
         dict(kernel_size=2, stride=(1, 2), padding=(1, 0), dilation=(1, 3), ceil_mode=True)),
        ("pad_half_k4", (1, 2, 7, 9), dict(kernel_size=4, stride=2, padding=2)),
        ("pad_half_k5x4", (1, 2, 8, 9), dict(kernel_size=(5, 4), stride=1, padding=(2, 2))),
        ("pad_half_k2", (2, 2, 5, 6), dict(kernel_size=2, stride=1, padding=1)),
        ("ceil_no_pad_extra_window", (1, 2, 7, 9), dict(kernel_size=3, stride=2, ceil_mode=True)),
        ("ceil_pad_last_dropped", (1, 2, 5, 5), dict(kernel_size=2, stride=2, padding=1,
                                                      ceil_mode=True)),
        ("ceil_pad_kept", (1, 2, 7, 7), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
        ("ceil_kernel_gt_input", (2, 2, 2, 2), dict(kernel_size=3, stride=2, ceil_mode=True)),
        ("ceil_kernel_gt_input_rows", (1, 2, 2, 7),
         dict(kernel_size=(3, 2), stride=2, ceil_mode=True)),
        ("pixel_k1", (3, 2, 1, 1), dict(kernel_size=1)),
        ("pixel_k2_pad1", (2, 2, 1, 1), dict(kernel_size=2, stride=2, padding=1)),
        ("pixel_k3_pad1", (2, 2, 1, 1), dict(kernel_size=3, padding=1)),
        ("k1s1", (2, 3, 4, 5), dict(kernel_size=1, stride=1)),
        ("k1s2", (2, 3, 5, 6), dict(kernel_size=1, stride=2)),
        ("kernel_eq_input", (2, 3, 5, 7), dict(kernel_size=(5, 7))),
        ("kernel_eq_padded_input", (2, 2, 4, 4), dict(kernel_size=6, stride=1, padding=1)),
        ("batch0", (0, 3, 6, 6), dict(kernel_size=2)),
        ("batch0_k3s2p1", (0, 2, 7, 9), dict(kernel_size=3, stride=2, padding=1)),
        ("one_channel", (3, 1, 8, 9), dict(kernel_size=3, stride=2, padding=1)),
        ("row_input", (2, 2, 1, 17), dict(kernel_size=(1, 3), stride=(1, 2), padding=(0, 1))),
        ("column_input", (2, 2, 17, 1), dict(kernel_size=(3, 1), stride=(2, 1), padding=(1, 0))),
        ("many_channels", (2, 17, 6, 5), dict(kernel_size=2, stride=1)),
    ]
)

MODES = ["randn", "ties", "nonfinite", "negative"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", MAXPOOL_CASES, ids=[c[0] for c in MAXPOOL_CASES])
def test_maxpool_forward_cases(case, mode, dtype, rng):
    _, shape, geom = case
    x = values(rng, shape, dtype, mode)
    check_maxpool(x, geom)


@pytest.mark.parametrize("case", MAXPOOL_CASES, ids=[c[0] for c in MAXPOOL_CASES])
def test_maxpool_backward_cases(case, dtype, rng):
    """The backward of the forward's indices is the scatter-add reference, and with
    small-integer grad_y (every sum exact in any order) exactly equal to it."""
    _, shape, geom = case
    x = values(rng, shape, dtype, "ties")
    y, idx = check_maxpool(x, geom)
    gy = randn(rng, y.shape, dtype)
    check_maxpool_backward(gy, idx, shape, dtype)
    gy_int = rng.integers(-4, 5, size=y.shape).astype(dtype)
    gx = ak.maxpool2d_backward(gy_int, idx, shape[2:])
    assert np.array_equal(gx, maxpool2d_backward_ref(gy_int, idx, shape))


def test_stride_none_means_kernel_size(dtype, rng):
    x = values(rng, (2, 3, 9, 11), dtype, "ties")
    for k in (2, 3, (2, 3)):
        a = ak.maxpool2d_forward(x, k)
        b = ak.maxpool2d_forward(x, k, stride=k)
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
        assert np.array_equal(ak.avgpool2d_forward(x, k), ak.avgpool2d_forward(x, k, stride=k))


def test_int_pair_and_numpy_ints_agree(rng):
    x = values(rng, (2, 3, 9, 11), np.float64, "ties")
    a = ak.maxpool2d_forward(x, 3, 2, 1, 1)
    b = ak.maxpool2d_forward(x, (3, 3), [2, 2], (1, 1), (1, 1))
    c = ak.maxpool2d_forward(x, np.int64(3), (np.int32(2), 2), np.int64(1), np.int16(1))
    for other in (b, c):
        assert np.array_equal(a[0], other[0]) and np.array_equal(a[1], other[1])
    assert np.array_equal(ak.avgpool2d_forward(x, 3, 2, 1), ak.avgpool2d_forward(x, (3, 3), (2, 2),
                                                                                    [1, 1]))


# ----------------------------------------------------------------------------------
# maxpool forward: NaN, ties, infinities, padding
# ----------------------------------------------------------------------------------


def _plane(rows):
    return np.array(rows, dtype=np.float64)[None, None]


def test_maxpool_single_nan(dtype):
    x = _plane([[1.0, np.nan, 0.0, 0.0],
                [5.0, 2.0, 0.0, 7.0],
                [0.0, 0.0, 0.0, 0.0],
                [0.0, 0.0, 0.0, 0.0]]).astype(dtype)
    y, idx = ak.maxpool2d_forward(x, 2)
    assert np.isnan(y[0, 0, 0, 0]) and idx[0, 0, 0, 0] == 1
    assert y[0, 0, 0, 1] == 7.0 and idx[0, 0, 0, 1] == 7
    assert y[0, 0, 1, 0] == 0.0 and idx[0, 0, 1, 0] == 8
    check_maxpool(x, dict(kernel_size=2))


def test_maxpool_several_nans_last_index(dtype):
    # one 3x3 window: NaN at scan positions 1, 4 and 6, a large value after the last
    x = _plane([[0.0, np.nan, 2.0],
                [3.0, np.nan, 9.0],
                [np.nan, 8.0, 100.0]]).astype(dtype)
    y, idx = ak.maxpool2d_forward(x, 3)
    assert np.isnan(y[0, 0, 0, 0])
    assert idx[0, 0, 0, 0] == 6
    # NaN first in scan order, larger values after: the NaN stays
    x2 = _plane([[np.nan, 1.0], [5.0, np.inf]]).astype(dtype)
    y2, i2 = ak.maxpool2d_forward(x2, 2)
    assert np.isnan(y2[0, 0, 0, 0]) and i2[0, 0, 0, 0] == 0
    # -inf and NaN: NaN
    x3 = _plane([[-np.inf, -np.inf], [np.nan, -np.inf]]).astype(dtype)
    y3, i3 = ak.maxpool2d_forward(x3, 2)
    assert np.isnan(y3[0, 0, 0, 0]) and i3[0, 0, 0, 0] == 2


def test_maxpool_nan_in_overlapping_windows(dtype):
    """3x3/s2/p1 and 3x3/s1: every window holding the NaN reports it."""
    x = np.arange(2 * 9 * 11, dtype=np.float64).reshape(1, 2, 9, 11).astype(dtype)
    x[0, 0, 4, 5] = np.nan
    x[0, 1, 0, 0] = np.nan
    x[0, 1, 8, 10] = np.nan
    for geom in (dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=3, stride=1)):
        y, idx = check_maxpool(x, geom)
        assert np.isnan(y).any()


def test_maxpool_ties_first_in_scan_order(dtype):
    x = np.full((1, 1, 4, 6), 3.0, dtype)
    y, idx = ak.maxpool2d_forward(x, (2, 3))
    assert np.array_equal(idx[0, 0], np.array([[0, 3], [12, 15]]))
    assert (y == 3.0).all()
    # ties between two cells of one window: the first (row-major) wins
    x = np.zeros((1, 1, 3, 3), dtype)
    x[0, 0, 1, 2] = 4.0
    x[0, 0, 2, 0] = 4.0
    y, idx = ak.maxpool2d_forward(x, 3)
    assert idx[0, 0, 0, 0] == 5
    # with padding: ties among in-range cells, the first in-range one wins
    x = np.full((1, 1, 5, 5), -1.0, dtype)
    y, idx = ak.maxpool2d_forward(x, 3, stride=2, padding=1)
    assert (y == -1.0).all()
    assert np.array_equal(idx[0, 0], np.array([[0, 1, 3], [5, 6, 8], [15, 16, 18]]))


def test_maxpool_all_minus_inf_window(dtype):
    x = np.full((1, 2, 5, 5), -np.inf, dtype)
    x[0, 1, 4, 4] = 1.0
    y, idx = check_maxpool(x, dict(kernel_size=3, stride=2, padding=1))
    assert y[0, 0].tolist() == [[-np.inf] * 3] * 3
    # each window's first in-range cell
    assert np.array_equal(idx[0, 0], np.array([[0, 1, 3], [5, 6, 8], [15, 16, 18]]))
    assert y[0, 1, 2, 2] == 1.0 and idx[0, 1, 2, 2] == 24
    y, idx = check_maxpool(x, dict(kernel_size=2, stride=2))
    assert np.array_equal(idx[0, 0], np.array([[0, 2], [10, 12]]))


def test_maxpool_plus_inf(dtype):
    x = _plane([[1.0, np.inf, 2.0, 0.0],
                [np.inf, 3.0, -np.inf, np.inf]]).astype(dtype)
    y, idx = ak.maxpool2d_forward(x, 2)
    assert y[0, 0, 0, 0] == np.inf and idx[0, 0, 0, 0] == 1
    assert y[0, 0, 0, 1] == np.inf and idx[0, 0, 0, 1] == 7


def test_maxpool_padding_never_wins(dtype, rng):
    x = (-np.abs(randn(rng, (2, 3, 7, 9))) - 1.0).astype(dtype)
    for geom in (dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=2, stride=1, padding=1),
                 dict(kernel_size=4, stride=3, padding=2, ceil_mode=True)):
        y, idx = check_maxpool(x, geom)
        assert (y < 0).all()
        assert ((idx >= 0) & (idx < 7 * 9)).all()


def test_maxpool_window_without_in_range_cell(dtype):
    """A valid geometry (dilation 2 > H = 1 with padding 1) whose window holds no input
    cell: the spec's rule gives -inf with index -1, which backward and unpool skip.
    (PyTorch's CPU kernel returns an index outside the plane here: 2 for a 1x1 plane.)"""
    geom = dict(kernel_size=2, stride=1, padding=1, dilation=2)
    x = np.full((2, 2, 1, 1), 5.0, dtype)
    assert geometry_is_valid((1, 1), **geom)
    y, idx = check_maxpool(x, geom)
    assert y.shape == (2, 2, 1, 1)
    assert (y == -np.inf).all() and (idx == -1).all()
    gx = ak.maxpool2d_backward(np.ones_like(y), idx, x.shape)
    assert np.array_equal(gx, np.zeros_like(x))
    assert np.array_equal(ak.max_unpool2d(y, idx, x.shape), np.zeros_like(x))
    # and a wider row: only the columns whose windows are empty get -1
    x = np.arange(3, dtype=dtype).reshape(1, 1, 1, 3) + 1
    check_maxpool(x, dict(kernel_size=(2, 1), stride=1, padding=(1, 0), dilation=2))


# ----------------------------------------------------------------------------------
# maxpool: random geometries
# ----------------------------------------------------------------------------------


@st.composite
def pool_geometries(draw, with_dilation=True):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    dh, dw = (draw(st.integers(1, 3)), draw(st.integers(1, 3))) if with_dilation else (1, 1)
    ceil = draw(st.booleans())
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 20))
    n, c = draw(st.integers(0, 2)), draw(st.integers(1, 3))

    def arg(a, b):
        return a if a == b and draw(st.booleans()) else (a, b)

    stride = None if draw(st.integers(0, 4)) == 0 else arg(draw(st.integers(1, 4)),
                                                          draw(st.integers(1, 4)))
    geom = dict(kernel_size=arg(kh, kw), stride=stride, padding=arg(ph, pw), ceil_mode=ceil)
    if with_dilation:
        geom["dilation"] = arg(dh, dw)
    assume(geometry_is_valid((h, w), **geom))
    return (n, c, h, w), geom


@HYPOTHESIS
@given(pool_geometries(), st.sampled_from([np.float32, np.float64]), st.sampled_from(MODES),
       st.integers(0, 2**32 - 1))
def test_maxpool_random_geometries(geometry, dtype, mode, seed):
    shape, geom = geometry
    rng = np.random.default_rng(seed)
    x = values(rng, shape, dtype, mode)
    y, idx = check_maxpool(x, geom)
    gy = randn(rng, y.shape, dtype)
    check_maxpool_backward(gy, idx, shape if seed % 2 else shape[2:], dtype)
    # unpooling the forward's own output puts every max back at its position
    up = ak.max_unpool2d(y, idx, shape)
    assert np.array_equal(up, max_unpool2d_ref(y, idx, shape), equal_nan=True)


# ----------------------------------------------------------------------------------
# maxpool backward
# ----------------------------------------------------------------------------------

BACKWARD_GEOMS = [
    ("k3s2p1", (2, 3, 9, 11), dict(kernel_size=3, stride=2, padding=1)),
    ("k3s1", (2, 2, 8, 17), dict(kernel_size=3, stride=1)),
    ("k3s1_ceil_p1", (1, 2, 8, 9), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ("k2s2", (2, 3, 8, 10), dict(kernel_size=2, stride=2)),
    ("k2s3", (2, 2, 9, 10), dict(kernel_size=2, stride=3)),
    ("dilated", (1, 2, 9, 9), dict(kernel_size=3, stride=1, padding=1, dilation=2)),
]


@pytest.mark.parametrize("as_hw", [False, True], ids=["input_size_nchw", "input_size_hw"])
@pytest.mark.parametrize("case", BACKWARD_GEOMS, ids=[c[0] for c in BACKWARD_GEOMS])
def test_maxpool_backward_scatter_add(case, as_hw, dtype, rng):
    _, shape, geom = case
    # 'ties' values: overlapping windows share their argmax, so sums really happen
    x = values(rng, shape, dtype, "ties")
    y, idx = check_maxpool(x, geom)
    size = shape[2:] if as_hw else shape
    gy = randn(rng, y.shape, dtype)
    gx = check_maxpool_backward(gy, idx, size, dtype)
    assert gx.shape == shape and gx.dtype == dtype
    # integer-valued grad_y: exact
    gy_int = rng.integers(-5, 6, size=y.shape).astype(dtype)
    assert np.array_equal(ak.maxpool2d_backward(gy_int, idx, size),
                          maxpool2d_backward_ref(gy_int, idx, shape))
    # sum of the gradient is preserved (every grad_y lands somewhere)
    if gy_int.size:
        assert ak.maxpool2d_backward(gy_int, idx, size).sum() == gy_int.sum()


def test_maxpool_backward_overlaps_sum(dtype):
    """Constant input, 3x3/s1: every window picks its first cell; a plain hand check."""
    x = np.zeros((1, 1, 4, 4), dtype)
    y, idx = ak.maxpool2d_forward(x, 3, stride=1)
    assert np.array_equal(idx[0, 0], np.array([[0, 1], [4, 5]]))
    gx = ak.maxpool2d_backward(np.ones((1, 1, 2, 2), dtype), idx, (4, 4))
    expected = np.zeros((4, 4))
    expected.flat[[0, 1, 4, 5]] = 1.0
    assert np.array_equal(gx[0, 0], expected)
    # all windows name one cell: grads add up there
    idx = np.zeros((1, 1, 2, 2), np.int64) + 5
    gx = ak.maxpool2d_backward(np.array([[[[1.0, 2.0], [3.0, 4.0]]]], dtype), idx, (1, 1, 4, 4))
    assert gx[0, 0, 1, 1] == 10.0 and gx.sum() == 10.0


@pytest.mark.parametrize("hw,out_hw", [((5, 6), (3, 4)), ((4, 4), (7, 9)), ((1, 1), (2, 3)),
                                       ((33, 17), (5, 6))])
def test_maxpool_backward_arbitrary_indices(hw, out_hw, dtype, rng):
    """The backward is a scatter-add for any in-range indices, not only a forward's
    (many duplicates, -1 entries, grad_y larger than the input)."""
    n, c = 2, 3
    H, W = hw
    idx = rng.integers(-1, H * W, size=(n, c) + out_hw).astype(np.int64)
    gy = randn(rng, (n, c) + out_hw, dtype)
    check_maxpool_backward(gy, idx, (n, c, H, W), dtype)
    gy_int = rng.integers(-5, 6, size=gy.shape).astype(dtype)
    assert np.array_equal(ak.maxpool2d_backward(gy_int, idx, hw),
                          maxpool2d_backward_ref(gy_int, idx, hw))


def test_maxpool_backward_minus_one_skipped(dtype):
    idx = np.array([[[[-1, 3], [3, -1]]]], np.int64)
    gy = np.array([[[[1.0, 2.0], [4.0, 8.0]]]], dtype)
    gx = ak.maxpool2d_backward(gy, idx, (2, 2))
    assert np.array_equal(gx, np.array([[[[0.0, 0.0], [0.0, 6.0]]]], dtype))
    gx = ak.maxpool2d_backward(gy, np.full((1, 1, 2, 2), -1, np.int64), (2, 2))
    assert np.array_equal(gx, np.zeros((1, 1, 2, 2), dtype))


def test_maxpool_backward_batch0(dtype):
    gx = ak.maxpool2d_backward(np.zeros((0, 3, 2, 2), dtype), np.zeros((0, 3, 2, 2), np.int64),
                               (0, 3, 5, 4))
    _check_out(gx, dtype, (0, 3, 5, 4), "grad_x")
    gx = ak.maxpool2d_backward(np.zeros((0, 3, 2, 2), dtype), np.zeros((0, 3, 2, 2), np.int64),
                               (5, 4))
    _check_out(gx, dtype, (0, 3, 5, 4), "grad_x")


# ----------------------------------------------------------------------------------
# max_unpool2d
# ----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", BACKWARD_GEOMS + MAXPOOL_CASES[::7],
                         ids=[c[0] for c in BACKWARD_GEOMS + MAXPOOL_CASES[::7]])
def test_max_unpool_of_forward(case, dtype, rng):
    _, shape, geom = case
    x = values(rng, shape, dtype, "randn")
    y, idx = check_maxpool(x, geom)
    for size in (shape, shape[2:], list(shape[2:])):
        up = ak.max_unpool2d(y, idx, size)
        _check_out(up, dtype, shape, "y")
        assert np.array_equal(up, max_unpool2d_ref(y, idx, shape))
    # every pooled max is back in place, everything else is zero
    up = ak.max_unpool2d(y, idx, shape)
    kept = up != 0
    assert np.array_equal(up[kept], x[kept])


def test_max_unpool_duplicates_last_wins(dtype, rng):
    n, c = 2, 3
    x = randn(rng, (n, c, 3, 4), dtype)
    idx = np.zeros((n, c, 3, 4), np.int64)  # every entry names position 0
    y = ak.max_unpool2d(x, idx, (5, 5))
    assert np.array_equal(y[:, :, 0, 0], x[:, :, 2, 3])  # last in row-major order
    assert np.count_nonzero(y[:, :, 1:, :]) == 0 and np.count_nonzero(y[:, :, 0, 1:]) == 0
    # many duplicates at random, compared with the reference's scan order
    idx = rng.integers(0, 6, size=(n, c, 3, 4)).astype(np.int64)
    assert np.array_equal(ak.max_unpool2d(x, idx, (n, c, 2, 3)), max_unpool2d_ref(x, idx, (2, 3)))
    # overlapping pooling (3x3/s1, the max in the centre) produces duplicate indices
    xc = np.zeros((1, 1, 5, 5), dtype)
    xc[0, 0, 2, 2] = 1.0
    yc, ic = ak.maxpool2d_forward(xc, 3, stride=1)
    vals = np.arange(1, 10, dtype=dtype).reshape(1, 1, 3, 3)
    assert (ic == 12).all()
    up = ak.max_unpool2d(vals, ic, (5, 5))
    assert up[0, 0, 2, 2] == 9.0 and np.count_nonzero(up) == 1
    assert np.array_equal(up, max_unpool2d_ref(vals, ic, (5, 5)))


@pytest.mark.parametrize("out_hw", [(5, 5), (6, 7), (9, 4), (12, 12)])
def test_max_unpool_larger_output(out_hw, dtype, rng):
    """output_size larger than the pooled input: the flat indices are positions in the
    (H, W) output plane, as torch.nn.functional.max_unpool2d."""
    x = randn(rng, (2, 2, 2, 2), dtype)
    idx = rng.integers(-1, out_hw[0] * out_hw[1], size=x.shape).astype(np.int64)
    y = ak.max_unpool2d(x, idx, out_hw)
    _check_out(y, dtype, (2, 2) + out_hw, "y")
    assert np.array_equal(y, max_unpool2d_ref(x, idx, out_hw))


def test_max_unpool_minus_one_skipped_and_batch0(dtype):
    x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]], dtype)
    idx = np.array([[[[-1, 0], [-1, 3]]]], np.int64)
    y = ak.max_unpool2d(x, idx, (2, 2))
    assert np.array_equal(y, np.array([[[[2.0, 0.0], [0.0, 4.0]]]], dtype))
    y = ak.max_unpool2d(np.zeros((0, 2, 2, 2), dtype), np.zeros((0, 2, 2, 2), np.int64), (4, 4))
    _check_out(y, dtype, (0, 2, 4, 4), "y")
    y = ak.max_unpool2d(np.zeros((0, 2, 2, 2), dtype), np.zeros((0, 2, 2, 2), np.int64),
                        (0, 2, 4, 4))
    _check_out(y, dtype, (0, 2, 4, 4), "y")


@pytest.mark.parametrize("size", [(3, 2, 4, 4), (2, 3, 4, 4), (1, 1, 4, 4)])
def test_max_unpool_output_size_nc_mismatch(size, rng):
    x = randn(rng, (2, 2, 2, 2))
    idx = np.zeros((2, 2, 2, 2), np.int64)
    with pytest.raises(ValueError) as e:
        ak.max_unpool2d(x, idx, size)
    assert names(str(e.value), "output_size"), str(e.value)
    with pytest.raises(ValueError):
        ak.maxpool2d_backward(x, idx, size)


@pytest.mark.parametrize("size", [(4,), (2, 2, 4), (1, 2, 2, 4, 4), (4, -1), (-4, 4),
                                  (2, 2, -1, 4)], ids=str)
def test_bad_output_and_input_size(size, rng):
    x = randn(rng, (2, 2, 2, 2))
    idx = np.zeros((2, 2, 2, 2), np.int64)
    with pytest.raises(ValueError):
        ak.max_unpool2d(x, idx, size)
    with pytest.raises(ValueError):
        ak.maxpool2d_backward(x, idx, size)
    with pytest.raises(ValueError):
        ak.avgpool2d_backward(x, size, 2)


# ----------------------------------------------------------------------------------
# hostile indices
# ----------------------------------------------------------------------------------

H_IN, W_IN = 5, 6
BAD_INDEX_VALUES = [H_IN * W_IN, H_IN * W_IN + 1, W_IN * 100, -2, -3, -(H_IN * W_IN),
                    2**31, 2**31 - 1, 2**32, 2**32 + 1, 2**62, 2**63 - 1, -2**31, -2**32 + 1,
                    -2**62, -2**63]
POSITIONS = [(0, 0, 0, 0), (1, 2, 2, 3), (1, 1, 1, 0)]


def _hostile(value, pos, rng):
    idx = rng.integers(-1, H_IN * W_IN, size=(2, 3, 3, 4)).astype(np.int64)
    idx[pos] = value
    return idx


@pytest.mark.parametrize("pos", POSITIONS, ids=["first", "last", "middle"])
@pytest.mark.parametrize("value", BAD_INDEX_VALUES, ids=str)
def test_hostile_indices_backward(value, pos, rng):
    idx = _hostile(value, pos, rng)
    gy = randn(rng, idx.shape)
    for size in ((H_IN, W_IN), (2, 3, H_IN, W_IN)):
        with pytest.raises(ValueError) as e:
            ak.maxpool2d_backward(gy, idx, size)
        assert names(str(e.value), "indices"), str(e.value)
        # float32 and zero gradients too: the index is checked, not only used
        with pytest.raises(ValueError):
            ak.maxpool2d_backward(np.zeros(idx.shape, np.float32), idx, size)


@pytest.mark.parametrize("pos", POSITIONS, ids=["first", "last", "middle"])
@pytest.mark.parametrize("value", BAD_INDEX_VALUES, ids=str)
def test_hostile_indices_unpool(value, pos, rng):
    idx = _hostile(value, pos, rng)
    x = randn(rng, idx.shape)
    for size in ((H_IN, W_IN), (2, 3, H_IN, W_IN)):
        with pytest.raises(ValueError) as e:
            ak.max_unpool2d(x, idx, size)
        assert names(str(e.value), "indices"), str(e.value)
        with pytest.raises(ValueError):
            ak.max_unpool2d(np.zeros(idx.shape, np.float32), idx, size)


@pytest.mark.parametrize("pos", [(0, 0, 0, 0), (0, 0, 1, 2), (1, 2, 2, 3), (1, 2, 3, 1)])
def test_bad_index_reported_where_it_is(pos, rng):
    """The error names the first bad index's value and position (n, c, h, w), wherever it
    falls among the indices the kernel checks together; a -1 (no input position) before
    it in the plane is skipped, not reported."""
    idx = rng.integers(0, 64, size=(2, 3, 4, 4)).astype(np.int64)
    idx[pos] = 99
    if pos[3] > 0:
        idx[pos[:3] + (pos[3] - 1,)] = -1
    x = randn(rng, idx.shape, np.float32)
    where = re.escape(f"value 99 at [{pos[0]}, {pos[1]}, {pos[2]}, {pos[3]}]")
    with pytest.raises(ValueError, match=where):
        ak.maxpool2d_backward(x, idx, (8, 8))
    with pytest.raises(ValueError, match=where):
        ak.max_unpool2d(x, idx, (8, 8))


def test_hostile_index_in_range_of_a_bigger_plane(rng):
    """An index valid for the pooled input (5x6) but not for a smaller output plane."""
    idx = np.array([[[[0, 29]]]], np.int64)
    x = np.ones((1, 1, 1, 2))
    with pytest.raises(ValueError, match="indices"):
        ak.max_unpool2d(x, idx, (5, 5))
    with pytest.raises(ValueError, match="indices"):
        ak.maxpool2d_backward(x, idx, (1, 1, 4, 7))
    assert ak.max_unpool2d(x, idx, (5, 6))[0, 0, 4, 5] == 1.0


def test_hostile_indices_in_big_parallel_call(rng, restore_threads):
    """One bad index deep inside a call large enough to run in parallel."""
    for threads in (1, 2, 4):
        ak.set_num_threads(threads)
        for value in (-2, 64 * 64, 2**62):
            idx = rng.integers(0, 64 * 64, size=(4, 16, 32, 32)).astype(np.int64)
            idx[3, 15, 31, 30] = value
            gy = randn(rng, idx.shape, np.float32)
            with pytest.raises(ValueError, match="indices"):
                ak.maxpool2d_backward(gy, idx, (64, 64))
            with pytest.raises(ValueError, match="indices"):
                ak.max_unpool2d(gy, idx, (64, 64))


@pytest.mark.parametrize("bad_dtype", [np.int32, np.uint64, np.int16, np.float64, np.float32,
                                       np.bool_])
def test_indices_wrong_dtype(bad_dtype, rng):
    idx = rng.integers(0, 4, size=(1, 2, 2, 2)).astype(bad_dtype)
    gy = randn(rng, (1, 2, 2, 2))
    with pytest.raises(TypeError) as e:
        ak.maxpool2d_backward(gy, idx, (4, 4))
    assert names(str(e.value), "indices"), str(e.value)
    with pytest.raises(TypeError) as e:
        ak.max_unpool2d(gy, idx, (4, 4))
    assert names(str(e.value), "indices"), str(e.value)


def test_indices_not_an_array(rng):
    gy = randn(rng, (1, 1, 2, 2))
    with pytest.raises(TypeError):
        ak.maxpool2d_backward(gy, [[[[0, 1], [2, 3]]]], (4, 4))
    with pytest.raises(TypeError):
        ak.max_unpool2d(gy, [[[[0, 1], [2, 3]]]], (4, 4))
    with pytest.raises(TypeError):
        ak.max_unpool2d(gy, None, (4, 4))


@pytest.mark.parametrize("idx_shape", [(2, 3, 3, 5), (2, 3, 4, 4), (1, 3, 3, 4), (2, 2, 3, 4),
                                       (2, 3, 12), (2, 3, 3, 4, 1), (24, 3)], ids=str)
def test_indices_wrong_shape(idx_shape, rng):
    gy = randn(rng, (2, 3, 3, 4))
    idx = np.zeros(idx_shape, np.int64)
    with pytest.raises(ValueError) as e:
        ak.maxpool2d_backward(gy, idx, (5, 6))
    msg = str(e.value)
    assert names(msg, "indices") and _shape_text(idx_shape) in msg, msg
    with pytest.raises(ValueError) as e:
        ak.max_unpool2d(gy, idx, (5, 6))
    msg = str(e.value)
    assert names(msg, "indices") and _shape_text(idx_shape) in msg, msg


# ----------------------------------------------------------------------------------
# avgpool
# ----------------------------------------------------------------------------------

# (id, x shape, geometry without count_include_pad)
AVGPOOL_CASES = [
    ("k2s2", (2, 3, 8, 10), dict(kernel_size=2, stride=2)),
    ("k2s2_odd", (2, 3, 7, 17), dict(kernel_size=2, stride=2)),
    ("k2_none", (1, 2, 6, 33), dict(kernel_size=2)),
    ("k3s2p1", (2, 3, 9, 16), dict(kernel_size=3, stride=2, padding=1)),
    ("k3s2p1_w33", (1, 2, 7, 33), dict(kernel_size=3, stride=2, padding=1)),
    ("k3s1p1", (2, 2, 5, 9), dict(kernel_size=3, stride=1, padding=1)),
    ("k2x3_s1x2", (2, 3, 7, 9), dict(kernel_size=(2, 3), stride=(1, 2))),
    ("k3x2_pairs_pad", (1, 2, 8, 7), dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 1))),
    ("stride_gt_kernel", (2, 2, 11, 13), dict(kernel_size=2, stride=3)),
    ("pad_half_k4", (1, 2, 7, 9), dict(kernel_size=4, stride=2, padding=2)),
    ("pad_half_k5x4", (1, 2, 8, 9), dict(kernel_size=(5, 4), stride=1, padding=(2, 2))),
    ("ceil_no_pad", (1, 2, 7, 9), dict(kernel_size=3, stride=2, ceil_mode=True)),
    ("ceil_pad_dropped", (1, 2, 5, 5), dict(kernel_size=2, stride=2, padding=1, ceil_mode=True)),
    ("ceil_pad_past_padding", (1, 2, 6, 6), dict(kernel_size=3, stride=2, padding=1,
                                                  ceil_mode=True)),
    ("ceil_pad_kept", (1, 2, 7, 8), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ("ceil_stride_gt_kernel", (1, 2, 8, 10), dict(kernel_size=2, stride=3, padding=1,
                                                   ceil_mode=True)),
    ("ceil_kernel_gt_input", (2, 2, 2, 2), dict(kernel_size=3, stride=2, ceil_mode=True)),
    ("pixel_k1", (3, 2, 1, 1), dict(kernel_size=1)),
    ("pixel_k2_pad1", (2, 2, 1, 1), dict(kernel_size=2, stride=2, padding=1)),
    ("pixel_k3_pad1", (2, 2, 1, 1), dict(kernel_size=3, padding=1)),
    ("kernel_eq_input", (2, 3, 5, 7), dict(kernel_size=(5, 7))),
    ("kernel_eq_padded", (2, 2, 4, 4), dict(kernel_size=6, stride=1, padding=1)),
    ("batch0", (0, 3, 6, 6), dict(kernel_size=2)),
    ("one_channel", (3, 1, 8, 9), dict(kernel_size=3, stride=2, padding=1)),
    ("row_input", (2, 2, 1, 17), dict(kernel_size=(1, 3), stride=(1, 2), padding=(0, 1))),
]


@pytest.mark.parametrize("cip", [True, False], ids=["include_pad", "exclude_pad"])
@pytest.mark.parametrize("case", AVGPOOL_CASES, ids=[c[0] for c in AVGPOOL_CASES])
def test_avgpool_forward_backward_cases(case, cip, dtype, rng):
    _, shape, geom = case
    geom = dict(geom, count_include_pad=cip)
    x = randn(rng, shape, dtype)
    y = ak.avgpool2d_forward(x, **geom)
    ref = avgpool2d_ref(x, **geom)
    _check_out(y, dtype, ref.shape, "y")
    assert_close(y, ref, dtype, avgpool2d_ref(np.abs(x.astype(np.float64)), **geom), "y")
    gy = randn(rng, y.shape, dtype)
    for size in (shape, shape[2:]):
        gx = ak.avgpool2d_backward(gy, size, **geom)
        _check_out(gx, dtype, shape, "grad_x")
        assert_close(gx, avgpool2d_backward_ref(gy, shape, **geom), dtype,
                     avgpool2d_backward_ref(np.abs(gy.astype(np.float64)), shape, **geom),
                     "grad_x")


def test_avgpool_divisors_by_hand(dtype):
    """Ones in: the output is (in-range cells) / divisor. 5x5, 3x3/s2/p1, ceil: windows
    at the corner hold 4 cells of 9 (include_pad) or of 4 (exclude)."""
    x = np.ones((1, 1, 5, 5), dtype)
    y = ak.avgpool2d_forward(x, 3, 2, 1, count_include_pad=True)
    assert_close(y, np.array([[[[4, 6, 4], [6, 9, 6], [4, 6, 4]]]]) / 9.0, dtype)
    y = ak.avgpool2d_forward(x, 3, 2, 1, count_include_pad=False)
    assert_close(y, np.ones((1, 1, 3, 3)), dtype)
    # ceil_mode window running past the padding: that part counts in neither divisor
    # (6x6, 3x3/s2/p1/ceil: 4 windows per dim, starting at -1, 1, 3, 5; the last ends
    # at min(5 + 3, 6 + 1) = 7, so it spans 2 (1 in range, 1 padding))
    x = np.ones((1, 1, 6, 6), dtype)
    div, _ = avgpool_divisors_ref((6, 6), 3, 2, 1, True, True)
    assert div[0].tolist() == [9, 9, 9, 6] and div[3].tolist() == [6, 6, 6, 4]
    cells, extent = np.array([2, 3, 3, 1]), np.array([3, 3, 3, 2])
    y = ak.avgpool2d_forward(x, 3, 2, 1, ceil_mode=True, count_include_pad=True)
    assert_close(y, (np.outer(cells, cells) / np.outer(extent, extent))[None, None], dtype)
    y = ak.avgpool2d_forward(x, 3, 2, 1, ceil_mode=True, count_include_pad=False)
    assert_close(y, np.ones((1, 1, 4, 4)), dtype)
    # 2x2 input, 3x3/s2 ceil (no padding): one window, 4 cells, divisor 4 either way
    for cip in (True, False):
        y = ak.avgpool2d_forward(np.full((1, 1, 2, 2), 3.0, dtype), 3, 2, ceil_mode=True,
                                 count_include_pad=cip)
        assert_close(y, np.full((1, 1, 1, 1), 3.0), dtype)


@HYPOTHESIS
@given(pool_geometries(with_dilation=False), st.booleans(),
       st.sampled_from([np.float32, np.float64]), st.integers(0, 2**32 - 1))
def test_avgpool_random_geometries(geometry, cip, dtype, seed):
    shape, geom = geometry
    geom = dict(geom, count_include_pad=cip)
    rng = np.random.default_rng(seed)
    x = randn(rng, shape, dtype)
    y = ak.avgpool2d_forward(x, **geom)
    assert_close(y, avgpool2d_ref(x, **geom), dtype,
                 avgpool2d_ref(np.abs(x.astype(np.float64)), **geom), "y")
    gy = randn(rng, y.shape, dtype)
    gx = ak.avgpool2d_backward(gy, shape if seed % 2 else shape[2:], **geom)
    assert_close(gx, avgpool2d_backward_ref(gy, shape, **geom), dtype,
                 avgpool2d_backward_ref(np.abs(gy.astype(np.float64)), shape, **geom),
                 "grad_x")


AVG_FD_GEOMS = [
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
    dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1), ceil_mode=False,
         count_include_pad=True),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=True),
]


@pytest.mark.parametrize("geom", AVG_FD_GEOMS, ids=["ceil_exclude", "pairs_include",
                                                   "ceil_include"])
def test_avgpool_backward_finite_differences(geom, rng):
    shape = (2, 2, 6, 7)
    x = randn(rng, shape)
    y = ak.avgpool2d_forward(x, **geom)
    gy = randn(rng, y.shape)
    gx = ak.avgpool2d_backward(gy, shape, **geom)
    h = 1e-3
    num = np.zeros(shape)
    for i in np.ndindex(shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        num[i] = (np.sum(gy * ak.avgpool2d_forward(xp, **geom))
                  - np.sum(gy * ak.avgpool2d_forward(xm, **geom))) / (2 * h)
    scale = max(1.0, float(np.abs(gy).sum()) * float(np.abs(x).max()))
    err = float(np.abs(gx - num).max())
    assert err <= 1e-8 * scale, err


@pytest.mark.parametrize("geom", AVG_FD_GEOMS, ids=["ceil_exclude", "pairs_include",
                                                   "ceil_include"])
def test_avgpool_adjoint_identity(geom, rng):
    """avgpool is linear: <grad_y, A x> == <A^T grad_y, x> up to rounding."""
    shape = (3, 4, 9, 11)
    x = randn(rng, shape)
    y = ak.avgpool2d_forward(x, **geom)
    gy = randn(rng, y.shape)
    gx = ak.avgpool2d_backward(gy, shape, **geom)
    lhs, rhs = float(np.sum(gy * y)), float(np.sum(gx * x))
    bound = 1e-12 * float(np.sum(np.abs(gy) * avgpool2d_ref(np.abs(x), **geom)))
    assert abs(lhs - rhs) <= bound, (lhs, rhs)


def test_avgpool_grad_y_wrong_shape(rng):
    x_shape = (2, 3, 9, 9)
    for gy_shape in [(2, 3, 5, 4), (2, 3, 4, 5), (2, 3, 6, 6), (2, 3, 25), (2, 3, 5, 5, 1)]:
        with pytest.raises(ValueError) as e:
            ak.avgpool2d_backward(randn(rng, gy_shape), x_shape, 3, 2, 1)
        msg = str(e.value)
        assert names(msg, "grad_y") and _shape_text(gy_shape) in msg, msg
        with pytest.raises(ValueError) as e:
            ak.avgpool2d_backward(randn(rng, gy_shape), x_shape[2:], 3, 2, 1)
        assert names(str(e.value), "grad_y"), str(e.value)
    # (N, C) disagreeing with a 4-value input_size: either argument may be blamed
    for gy_shape in [(2, 2, 5, 5), (1, 3, 5, 5)]:
        with pytest.raises(ValueError) as e:
            ak.avgpool2d_backward(randn(rng, gy_shape), x_shape, 3, 2, 1)
        msg = str(e.value)
        assert names(msg, "grad_y") or names(msg, "input_size"), msg
    # the expected shape is named too
    with pytest.raises(ValueError) as e:
        ak.avgpool2d_backward(randn(rng, (2, 3, 5, 4)), x_shape, 3, 2, 1)
    assert "(2, 3, 5, 5)" in str(e.value), str(e.value)
    # (H, W) input_size: grad_y's (N, C) taken as given
    assert ak.avgpool2d_backward(randn(rng, (2, 3, 5, 5)), (9, 9), 3, 2, 1).shape == x_shape


def test_avgpool_batch0(dtype):
    y = ak.avgpool2d_forward(np.zeros((0, 2, 5, 5), dtype), 3, 2, 1)
    _check_out(y, dtype, (0, 2, 3, 3), "y")
    gx = ak.avgpool2d_backward(np.zeros((0, 2, 3, 3), dtype), (0, 2, 5, 5), 3, 2, 1)
    _check_out(gx, dtype, (0, 2, 5, 5), "grad_x")


# ----------------------------------------------------------------------------------
# optional cross-checks against PyTorch
# ----------------------------------------------------------------------------------

TORCH_MAX_CASES = [
    ((2, 3, 9, 17), dict(kernel_size=3, stride=2, padding=1)),
    ((2, 3, 8, 16), dict(kernel_size=2, stride=2)),
    ((1, 2, 5, 5), dict(kernel_size=2, stride=2, padding=1, ceil_mode=True)),
    ((1, 2, 7, 8), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ((2, 2, 9, 10), dict(kernel_size=(3, 2), stride=(1, 2), padding=(1, 0), dilation=(2, 1))),
    ((1, 2, 10, 12), dict(kernel_size=2, stride=3, ceil_mode=True)),
    ((0, 2, 5, 5), dict(kernel_size=2)),
]


@pytest.mark.parametrize("mode", ["randn", "nonfinite"])
@pytest.mark.parametrize("shape,geom", TORCH_MAX_CASES)
def test_maxpool_vs_torch(shape, geom, mode, dtype, rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = values(rng, shape, dtype, mode)
    y, idx = ak.maxpool2d_forward(x, **geom)
    ty, ti = F.max_pool2d(torch.tensor(x), return_indices=True, **geom)
    assert np.array_equal(y, ty.numpy(), equal_nan=True)
    assert np.array_equal(idx, ti.numpy())
    # backward through autograd (finite inputs), and unpool
    xf = randn(rng, shape, dtype)
    tx = torch.tensor(xf, requires_grad=True)
    ty, ti = F.max_pool2d(tx, return_indices=True, **geom)
    gy = randn(rng, tuple(ty.shape), dtype)
    ty.backward(torch.tensor(gy))
    y, idx = ak.maxpool2d_forward(xf, **geom)
    assert np.array_equal(idx, ti.numpy())
    gx = ak.maxpool2d_backward(gy, idx, shape)
    assert_close(gx, tx.grad.numpy().astype(np.float64), dtype,
                 maxpool2d_backward_ref(np.abs(gy.astype(np.float64)), idx, shape))


TORCH_UNPOOL_CASES = [
    ((2, 3, 8, 10), dict(kernel_size=2, stride=2), (8, 10)),
    ((2, 3, 9, 11), dict(kernel_size=2, stride=2), (9, 11)),  # bigger than the default 8x10
    ((1, 2, 9, 9), dict(kernel_size=3, stride=3), (9, 9)),
    ((1, 2, 7, 9), dict(kernel_size=3, stride=2, padding=1), (7, 9)),
]


@pytest.mark.parametrize("shape,geom,out_hw", TORCH_UNPOOL_CASES)
def test_max_unpool_vs_torch(shape, geom, out_hw, dtype, rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = randn(rng, shape, dtype)
    ty, ti = F.max_pool2d(torch.tensor(x), return_indices=True, **geom)
    ref = F.max_unpool2d(ty, ti, geom["kernel_size"], geom.get("stride"),
                         geom.get("padding", 0), output_size=out_hw).numpy()
    got = ak.max_unpool2d(ty.numpy(), ti.numpy(), out_hw)
    assert np.array_equal(got, ref)
    got = ak.max_unpool2d(ty.numpy(), ti.numpy(), shape[:2] + out_hw)
    assert np.array_equal(got, ref)


TORCH_AVG_CASES = [
    ((2, 3, 9, 17), dict(kernel_size=3, stride=2, padding=1)),
    ((1, 2, 5, 5), dict(kernel_size=2, stride=2, padding=1, ceil_mode=True)),
    ((1, 2, 6, 6), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ((2, 2, 9, 10), dict(kernel_size=(3, 2), stride=(1, 2), padding=(1, 1))),
    ((1, 2, 8, 10), dict(kernel_size=2, stride=3, padding=1, ceil_mode=True)),
    ((2, 2, 2, 2), dict(kernel_size=3, stride=2, ceil_mode=True)),
]


@pytest.mark.parametrize("cip", [True, False], ids=["include_pad", "exclude_pad"])
@pytest.mark.parametrize("shape,geom", TORCH_AVG_CASES)
def test_avgpool_vs_torch(shape, geom, cip, dtype, rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = randn(rng, shape, dtype)
    tx = torch.tensor(x, requires_grad=True)
    ty = F.avg_pool2d(tx, count_include_pad=cip, **geom)
    y = ak.avgpool2d_forward(x, count_include_pad=cip, **geom)
    mag = avgpool2d_ref(np.abs(x.astype(np.float64)), count_include_pad=cip, **geom)
    assert_close(y, ty.detach().numpy().astype(np.float64), dtype, mag, "y")
    gy = randn(rng, y.shape, dtype)
    ty.backward(torch.tensor(gy))
    gx = ak.avgpool2d_backward(gy, shape, count_include_pad=cip, **geom)
    mag = avgpool2d_backward_ref(np.abs(gy.astype(np.float64)), shape, count_include_pad=cip,
                                 **geom)
    assert_close(gx, tx.grad.numpy().astype(np.float64), dtype, mag, "grad_x")


# ----------------------------------------------------------------------------------
# section 0: dtypes, shapes, hyper-parameters
# ----------------------------------------------------------------------------------


@pytest.mark.parametrize("bad_dtype", [np.int64, np.int32, np.float16, np.complex128, np.bool_])
def test_wrong_dtype(bad_dtype, rng):
    bad = (randn(rng, (1, 2, 4, 4)) * 3).astype(bad_dtype)
    idx = np.zeros((1, 2, 4, 4), np.int64)
    calls = [
        ("x", lambda: ak.maxpool2d_forward(bad, 2)),
        ("x", lambda: ak.avgpool2d_forward(bad, 2)),
        ("grad_y", lambda: ak.maxpool2d_backward(bad, idx, (4, 4))),
        ("x", lambda: ak.max_unpool2d(bad, idx, (4, 4))),
        ("grad_y", lambda: ak.avgpool2d_backward(bad, (8, 8), 2)),
    ]
    for arg, call in calls:
        with pytest.raises(TypeError) as e:
            call()
        assert names(str(e.value), arg), str(e.value)


def test_float_indices_with_float_values(rng):
    """Mixed dtypes: float indices next to a float array of the same dtype."""
    for dt in (np.float32, np.float64):
        gy = randn(rng, (1, 2, 2, 2), dt)
        with pytest.raises(TypeError) as e:
            ak.maxpool2d_backward(gy, np.zeros((1, 2, 2, 2), dt), (4, 4))
        assert names(str(e.value), "indices"), str(e.value)
        with pytest.raises(TypeError) as e:
            ak.max_unpool2d(gy, np.zeros((1, 2, 2, 2), dt), (4, 4))
        assert names(str(e.value), "indices"), str(e.value)


def test_non_array_inputs(rng):
    x = randn(rng, (1, 2, 4, 4))
    idx = np.zeros((1, 2, 2, 2), np.int64)
    with pytest.raises(TypeError):
        ak.maxpool2d_forward(x.tolist(), 2)
    with pytest.raises(TypeError):
        ak.avgpool2d_forward(x.tolist(), 2)
    with pytest.raises(TypeError):
        ak.maxpool2d_backward(np.zeros((1, 2, 2, 2)).tolist(), idx, (4, 4))
    with pytest.raises(TypeError):
        ak.max_unpool2d(np.zeros((1, 2, 2, 2)).tolist(), idx, (4, 4))
    with pytest.raises(TypeError):
        ak.avgpool2d_backward(np.zeros((1, 2, 2, 2)).tolist(), (4, 4), 2)
    with pytest.raises(TypeError):
        ak.maxpool2d_forward(None, 2)


@pytest.mark.parametrize("fn,make,arg,shape", [
    ("maxpool2d_forward", lambda r: (randn(r, (2, 3, 4)), 2), "x", (2, 3, 4)),
    ("maxpool2d_forward", lambda r: (randn(r, (1, 2, 3, 4, 5)), 2), "x", (1, 2, 3, 4, 5)),
    ("avgpool2d_forward", lambda r: (randn(r, (3, 4)), 2), "x", (3, 4)),
    ("avgpool2d_forward", lambda r: (randn(r, (1, 2, 3, 4, 5)), 2), "x", (1, 2, 3, 4, 5)),
    ("maxpool2d_backward", lambda r: (randn(r, (2, 3, 4)), np.zeros((2, 3, 4), np.int64), (5, 5)),
     "grad_y", (2, 3, 4)),
    ("max_unpool2d", lambda r: (randn(r, (2, 3, 4)), np.zeros((2, 3, 4), np.int64), (5, 5)),
     "x", (2, 3, 4)),
    ("avgpool2d_backward", lambda r: (randn(r, (2, 3, 4)), (6, 6), 2), "grad_y", (2, 3, 4)),
])
def test_wrong_rank(fn, make, arg, shape, rng):
    with pytest.raises(ValueError) as e:
        getattr(ak, fn)(*make(rng))
    msg = str(e.value)
    assert names(msg, arg), msg
    assert _shape_text(shape) in msg, msg
    assert "expected" in msg, msg


@pytest.mark.parametrize("shape", [(1, 0, 4, 4), (1, 2, 0, 4), (1, 2, 4, 0)], ids=str)
def test_zero_channel_or_spatial_sizes_rejected(shape):
    with pytest.raises(ValueError):
        ak.maxpool2d_forward(np.zeros(shape), 1)
    with pytest.raises(ValueError):
        ak.avgpool2d_forward(np.zeros(shape), 1)


BAD_HYPER = [
    dict(kernel_size=0), dict(kernel_size=(2, 0)), dict(kernel_size=-1),
    dict(kernel_size=2, stride=0), dict(kernel_size=2, stride=(1, 0)),
    dict(kernel_size=2, stride=-1),
    dict(kernel_size=2, padding=-1), dict(kernel_size=3, padding=(0, -1)),
    dict(kernel_size=3, padding=2), dict(kernel_size=(3, 5), padding=(1, 3)),
    dict(kernel_size=2, padding=(2, 1)), dict(kernel_size=1, padding=1),
    dict(kernel_size=(2, 3), stride=(1, 1, 1)),
]


def _bad_arg(kwargs):
    """The argument at fault in a BAD_HYPER entry."""
    for name in ("padding", "stride"):
        if name in kwargs:
            return name
    return "kernel_size"


@pytest.mark.parametrize("kwargs", BAD_HYPER, ids=str)
def test_bad_hyperparameters(kwargs, rng):
    x = randn(rng, (2, 3, 7, 7))
    arg = _bad_arg(kwargs)
    with pytest.raises(ValueError) as e:
        ak.maxpool2d_forward(x, **kwargs)
    assert names(str(e.value), arg), str(e.value)
    with pytest.raises(ValueError) as e:
        ak.avgpool2d_forward(x, **kwargs)
    assert names(str(e.value), arg), str(e.value)
    with pytest.raises(ValueError) as e:
        ak.avgpool2d_backward(randn(rng, (2, 3, 3, 3)), x.shape, **kwargs)
    assert names(str(e.value), arg), str(e.value)


@pytest.mark.parametrize("dilation", [0, -1, (1, 0), (0, 2)], ids=str)
def test_bad_dilation(dilation, rng):
    with pytest.raises(ValueError) as e:
        ak.maxpool2d_forward(randn(rng, (1, 2, 7, 7)), 2, dilation=dilation)
    assert names(str(e.value), "dilation"), str(e.value)


@pytest.mark.parametrize("shape,kwargs", [
    ((1, 2, 4, 5), dict(kernel_size=(5, 2))),
    ((1, 2, 4, 5), dict(kernel_size=(7, 2), padding=(1, 0))),
    ((1, 2, 4, 5), dict(kernel_size=3, dilation=2)),    # spans 5 > 4
    ((1, 2, 2, 2), dict(kernel_size=3, stride=2)),      # fits only with ceil_mode
    ((1, 2, 2, 2), dict(kernel_size=4, stride=1, ceil_mode=True)),
], ids=str)
def test_output_smaller_than_one(shape, kwargs, rng):
    x = randn(rng, shape)
    with pytest.raises(ValueError):
        ak.maxpool2d_forward(x, **kwargs)
    if "dilation" not in kwargs:
        with pytest.raises(ValueError):
            ak.avgpool2d_forward(x, **kwargs)
        with pytest.raises(ValueError):
            ak.avgpool2d_backward(randn(rng, (1, 2, 1, 1)), shape, **kwargs)


@pytest.mark.parametrize("kwargs", [dict(kernel_size=2**40), dict(kernel_size=2, dilation=2**40),
                                    dict(kernel_size=2**31), dict(kernel_size=(2, 2**62))],
                         ids=str)
def test_huge_hyperparameters_raise(kwargs, rng):
    x = randn(rng, (1, 2, 3, 3))
    with pytest.raises((ValueError, MemoryError)):
        ak.maxpool2d_forward(x, **kwargs)
    if "dilation" not in kwargs:
        with pytest.raises((ValueError, MemoryError)):
            ak.avgpool2d_forward(x, **kwargs)


@pytest.mark.parametrize("arg", ["kernel_size", "stride", "padding", "dilation"])
def test_bool_hyperparameter_is_type_error(arg, rng):
    x = randn(rng, (1, 2, 6, 6))
    kwargs = dict(kernel_size=2)
    kwargs[arg] = True
    with pytest.raises(TypeError) as e:
        ak.maxpool2d_forward(x, **kwargs)
    assert names(str(e.value), arg), str(e.value)
    kwargs[arg] = (1, True) if arg != "kernel_size" else (2, True)
    with pytest.raises(TypeError):
        ak.maxpool2d_forward(x, **kwargs)
    if arg != "dilation":
        kwargs[arg] = True
        with pytest.raises(TypeError):
            ak.avgpool2d_forward(x, **kwargs)
        with pytest.raises(TypeError):
            ak.avgpool2d_backward(randn(rng, (1, 2, 3, 3)), (6, 6), **kwargs)


@pytest.mark.parametrize("value", [2.0, 2.5, "2", None])
def test_non_int_kernel_size_is_type_error(value, rng):
    x = randn(rng, (1, 2, 6, 6))
    with pytest.raises(TypeError):
        ak.maxpool2d_forward(x, value)
    with pytest.raises(TypeError):
        ak.avgpool2d_forward(x, value)


# ----------------------------------------------------------------------------------
# section 0: strides, outputs, inputs untouched, determinism
# ----------------------------------------------------------------------------------


def _noncontiguous_variants(a):
    """Views of arrays equal to a with other memory layouts."""
    out = [np.asfortranarray(a)]
    t = np.ascontiguousarray(np.moveaxis(a, -1, 0))
    out.append(np.moveaxis(t, 0, -1))  # transposed view
    big = np.zeros(tuple(2 * s for s in a.shape), a.dtype)
    big[tuple(slice(None, None, 2) for _ in a.shape)] = a
    out.append(big[tuple(slice(None, None, 2) for _ in a.shape)])  # step slices
    out.append(np.ascontiguousarray(a[..., ::-1])[..., ::-1])  # negative strides
    for v in out:
        assert np.array_equal(v, a, equal_nan=True)
        assert not v.flags.c_contiguous
    return out


def test_noncontiguous_inputs(dtype, rng):
    x = values(rng, (2, 3, 9, 10), dtype, "nonfinite")
    xa = randn(rng, (2, 3, 9, 10), dtype)
    mgeom = dict(kernel_size=3, stride=2, padding=1, dilation=(1, 2))
    ageom = dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)
    y, idx = ak.maxpool2d_forward(x, **mgeom)
    ya = ak.avgpool2d_forward(xa, **ageom)
    gy = randn(rng, y.shape, dtype)
    gya = randn(rng, ya.shape, dtype)
    gx = ak.maxpool2d_backward(gy, idx, x.shape)
    up = ak.max_unpool2d(gy, idx, x.shape)
    gxa = ak.avgpool2d_backward(gya, xa.shape, **ageom)
    for xv, xav, gyv, iv, gyav in zip(_noncontiguous_variants(x), _noncontiguous_variants(xa),
                                      _noncontiguous_variants(gy), _noncontiguous_variants(idx),
                                      _noncontiguous_variants(gya)):
        yv, idxv = ak.maxpool2d_forward(xv, **mgeom)
        assert np.array_equal(yv, y, equal_nan=True) and np.array_equal(idxv, idx)
        assert np.array_equal(ak.avgpool2d_forward(xav, **ageom), ya)
        assert np.array_equal(ak.maxpool2d_backward(gyv, idx, x.shape), gx)
        assert np.array_equal(ak.maxpool2d_backward(gy, iv, x.shape), gx)
        assert np.array_equal(ak.maxpool2d_backward(gyv, iv, x.shape), gx)
        assert np.array_equal(ak.max_unpool2d(gyv, iv, x.shape), up)
        assert np.array_equal(ak.avgpool2d_backward(gyav, xa.shape, **ageom), gxa)
    # and right, not merely self-consistent
    check_maxpool(x, mgeom)
    assert_close(ya, avgpool2d_ref(xa, **ageom), dtype)


def test_readonly_inputs_accepted(rng):
    x = randn(rng, (1, 2, 6, 6))
    y, idx = ak.maxpool2d_forward(x, 2)
    x.flags.writeable = False
    idx.flags.writeable = False
    y2, idx2 = ak.maxpool2d_forward(x, 2)
    assert np.array_equal(y, y2) and np.array_equal(idx, idx2)
    assert np.array_equal(ak.maxpool2d_backward(y, idx, x.shape),
                          maxpool2d_backward_ref(y, idx, x.shape))
    assert np.array_equal(ak.max_unpool2d(y, idx, x.shape), max_unpool2d_ref(y, idx, x.shape))


def _all_calls(dt, rng, shape=(3, 4, 9, 11)):
    """(name, fn, args, kwargs, output dtypes) of one call of each pooling function."""
    x = values(rng, shape, dt, "ties")
    geom = dict(kernel_size=3, stride=2, padding=1)
    y, idx = maxpool2d_ref(x, **geom)
    gy = randn(rng, y.shape, dt)
    ov = dict(kernel_size=3, stride=1, padding=1)  # overlapping, duplicate indices
    _, idx_ov = maxpool2d_ref(x, **ov)
    gy_ov = randn(rng, idx_ov.shape, dt)
    return [
        ("maxpool2d_forward", ak.maxpool2d_forward, (x,), geom, (dt, np.int64)),
        ("maxpool2d_forward_k2", ak.maxpool2d_forward, (x, 2), {}, (dt, np.int64)),
        ("maxpool2d_backward", ak.maxpool2d_backward, (gy, idx, shape), {}, (dt,)),
        ("maxpool2d_backward_overlap", ak.maxpool2d_backward, (gy_ov, idx_ov, shape[2:]), {},
         (dt,)),
        ("max_unpool2d", ak.max_unpool2d, (gy, idx, shape), {}, (dt,)),
        ("max_unpool2d_dups", ak.max_unpool2d, (gy_ov, idx_ov, shape[2:]), {}, (dt,)),
        ("avgpool2d_forward", ak.avgpool2d_forward, (x,), dict(geom, count_include_pad=False),
         (dt,)),
        ("avgpool2d_forward_ceil", ak.avgpool2d_forward, (x, 2),
         dict(ceil_mode=True, padding=1), (dt,)),
        ("avgpool2d_backward", ak.avgpool2d_backward, (gy, shape), geom, (dt,)),
        ("avgpool2d_backward_ov", ak.avgpool2d_backward, (gy_ov, shape[2:]), ov, (dt,)),
    ]


def _as_tuple(out):
    return out if isinstance(out, tuple) else (out,)


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_outputs_new_c_contiguous_and_inputs_untouched(dt, rng):
    for name, fn, args, kwargs, out_dtypes in _all_calls(dt, rng):
        before = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
        outs = _as_tuple(fn(*args, **kwargs))
        assert len(outs) == len(out_dtypes), name
        for o, odt in zip(outs, out_dtypes):
            assert type(o) is np.ndarray, name
            assert o.dtype == np.dtype(odt), name
            assert o.flags.c_contiguous and o.flags.writeable, name
            for a in args:
                if isinstance(a, np.ndarray):
                    assert not np.shares_memory(o, a), name
        for a, saved in zip(args, before):
            if isinstance(a, np.ndarray):
                assert np.array_equal(a, saved), f"{name} modified an input"
        outs2 = _as_tuple(fn(*args, **kwargs))
        for o, o2 in zip(outs, outs2):
            assert not np.shares_memory(o, o2), name
            assert np.array_equal(o, o2), f"{name}: repeated call differs"


def test_outputs_do_not_depend_on_fresh_memory(rng):
    """Outputs are fully written (zero-filled where nothing lands): memory that held
    NaNs before does not leak into them."""
    for _ in range(3):
        for name, fn, args, kwargs, _dts in _all_calls(np.float64, rng, shape=(2, 3, 8, 9)):
            ref = _as_tuple(fn(*args, **kwargs))
            junk = [np.full(r.shape, np.nan) for r in ref for _ in range(4)]
            del junk
            for o, r in zip(_as_tuple(fn(*args, **kwargs)), ref):
                assert np.array_equal(o, r), name
                assert not np.isnan(o).any(), name


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_thread_count_independent(dt, rng, restore_threads):
    """Bitwise identical for 1, 2 and 3 threads, every pooling function (sizes large
    enough for the parallel regions)."""
    calls = _all_calls(dt, rng, shape=(4, 16, 33, 35))
    results = {}
    for threads in (1, 2, 3):
        ak.set_num_threads(threads)
        assert ak.get_num_threads() == threads
        results[threads] = [_as_tuple(fn(*args, **kwargs)) for _, fn, args, kwargs, _ in calls]
    for threads in (2, 3):
        for (name, *_), r1, r2 in zip(calls, results[1], results[threads]):
            for a, b in zip(r1, r2):
                assert np.array_equal(a, b), f"{name}: 1 vs {threads} threads"
    # and right
    _, _, (x,), geom, _ = calls[0]
    y, idx = results[1][0]
    ref_y, ref_i = maxpool2d_ref(x, **geom)
    assert np.array_equal(y, ref_y) and np.array_equal(idx, ref_i)


def test_big_inputs_vs_reference(rng, restore_threads):
    """A call big enough for every parallel path, against the references (float32)."""
    ak.set_num_threads(3)
    x = values(rng, (3, 24, 20, 37), np.float32, "nonfinite")
    for geom in (dict(kernel_size=2, stride=2), dict(kernel_size=3, stride=2, padding=1)):
        y, idx = check_maxpool(x, geom)
        gy = rng.integers(-3, 4, size=y.shape).astype(np.float32)
        assert np.array_equal(ak.maxpool2d_backward(gy, idx, x.shape),
                              maxpool2d_backward_ref(gy, idx, x.shape))
        assert np.array_equal(ak.max_unpool2d(gy, idx, x.shape), max_unpool2d_ref(gy, idx, x.shape))
    xa = randn(rng, (3, 24, 20, 37), np.float32)
    geom = dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)
    ya = ak.avgpool2d_forward(xa, **geom)
    assert_close(ya, avgpool2d_ref(xa, **geom), np.float32)
    gya = randn(rng, ya.shape, np.float32)
    assert_close(ak.avgpool2d_backward(gya, xa.shape, **geom),
                 avgpool2d_backward_ref(gya, xa.shape, **geom), np.float32)


def test_pool_geometry_helper():
    """Sanity of the helper used by the references: stride None -> kernel."""
    assert pool_geometry((7, 9), 3) == ((3, 3), (3, 3), (0, 0), (1, 1), (2, 3))
    assert pool_geometry((7, 9), (3, 2), (2, 1), (1, 0), (1, 2), True)[-1] == (4, 7)
