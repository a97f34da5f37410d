"""Convolution family (docs/api/conv.md) against the float64 references in reference.py."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import adlkernels as ak
from reference import (
    assert_close,
    conv1d_backward_ref,
    conv1d_ref,
    conv2d_backward_ref,
    conv2d_ref,
    fold_ref,
    out_size,
    pair,
    unfold_ref,
    window_count_ref,
)

HYPOTHESIS = settings(max_examples=40, deadline=None, database=None)


def randn(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


# ----------------------------------------------------------------------------------
# conv2d: explicit geometry cases
# ----------------------------------------------------------------------------------

# (id, N, C_in, H, W, C_out, kernel (kH, kW), stride, padding, dilation, groups, bias)
CONV2D_CASES = [
    ("basic", 2, 3, 7, 7, 4, (3, 3), 1, 0, 1, 1, True),
    ("stride2_pad1", 2, 3, 8, 9, 5, (3, 3), 2, 1, 1, 1, False),
    ("pairs_stride_pad", 1, 2, 9, 7, 3, (3, 2), (2, 3), (1, 0), 1, 1, True),
    ("dilation2", 2, 2, 10, 9, 3, (3, 3), 1, 2, 2, 1, True),
    ("pairs_all", 1, 3, 11, 8, 2, (2, 3), (1, 2), (0, 1), (3, 1), 1, False),
    ("groups2", 2, 4, 6, 7, 6, (3, 3), 1, 1, 1, 2, True),
    ("groups3_cout3", 1, 6, 5, 5, 3, (2, 2), 1, 0, 1, 3, True),
    ("depthwise", 2, 4, 6, 6, 4, (3, 3), 1, 1, 1, 4, True),
    ("depthwise_x2", 2, 3, 7, 5, 6, (3, 3), 2, 1, 1, 3, False),
    ("depthwise_dilated", 1, 5, 9, 9, 5, (3, 3), (1, 2), 2, 2, 5, True),
    ("batch0", 0, 3, 5, 5, 2, (3, 3), 1, 1, 1, 1, True),
    ("batch0_groups", 0, 4, 6, 5, 4, (2, 3), 2, 0, 1, 2, False),
    ("batch1", 1, 3, 6, 6, 2, (3, 3), 1, 1, 1, 1, True),
    ("one_channel", 3, 1, 5, 6, 1, (2, 2), 1, 0, 1, 1, True),
    ("odd_sizes", 1, 5, 13, 11, 7, (5, 3), (3, 2), (2, 1), (1, 2), 1, True),
    ("kernel_eq_padded_input", 2, 3, 4, 5, 2, (6, 7), 1, 1, 1, 1, True),
    ("kernel_eq_input", 2, 2, 3, 3, 4, (3, 3), 1, 0, 1, 1, False),
    ("dilated_kernel_eq_padded", 2, 2, 3, 5, 3, (2, 3), 1, (1, 0), (4, 2), 1, True),
    ("stride_gt_kernel", 1, 2, 10, 10, 3, (2, 2), 4, 0, 1, 1, True),
    ("padding_gt_kernel", 1, 2, 3, 4, 2, (2, 2), 1, 3, 1, 1, True),
    ("windows_in_padding", 1, 1, 2, 2, 1, (3, 3), 1, 2, 2, 1, True),
    ("pixel_input", 2, 3, 1, 1, 4, (1, 1), 1, 0, 1, 1, True),
    ("row_input", 2, 2, 1, 9, 3, (1, 3), (1, 2), (0, 1), 1, 1, True),
    ("column_input", 2, 2, 9, 1, 3, (3, 1), 2, (1, 0), (2, 1), 1, False),
    ("pointwise", 3, 4, 5, 6, 6, (1, 1), 1, 0, 1, 1, True),
    ("pointwise_groups2", 2, 4, 5, 3, 6, (1, 1), 1, 0, 1, 2, True),
    ("pointwise_stride2", 2, 4, 5, 6, 3, (1, 1), 2, 0, 1, 1, True),
    ("pointwise_pad1", 2, 3, 4, 4, 2, (1, 1), 1, 1, 1, 1, False),
    ("pointwise_dilated", 1, 3, 4, 5, 2, (1, 1), 1, 0, 3, 1, True),
]


def _case_inputs(case, dtype, rng):
    _, n, c_in, h, w, c_out, (kh, kw), stride, padding, dilation, groups, has_bias = case
    x = randn(rng, (n, c_in, h, w), dtype)
    weight = randn(rng, (c_out, c_in // groups, kh, kw), dtype)
    bias = randn(rng, (c_out,), dtype) if has_bias else None
    geom = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    return x, weight, bias, geom


def _abs(a):
    return None if a is None else np.abs(a.astype(np.float64))


def check_forward(x, weight, bias, geom, dtype):
    y = ak.conv2d_forward(x, weight, bias, **geom)
    ref = conv2d_ref(x, weight, bias, **geom)
    mag = conv2d_ref(_abs(x), _abs(weight), _abs(bias), **geom)
    assert_close(y, ref, dtype, mag, "y")
    return y


def check_backward(grad_y, x, weight, geom, dtype, mask=(True, True, True)):
    grads = ak.conv2d_backward(grad_y, x, weight, output_mask=mask, **geom)
    assert isinstance(grads, tuple) and len(grads) == 3
    refs = conv2d_backward_ref(grad_y, x, weight, **geom)
    mags = conv2d_backward_ref(_abs(grad_y), _abs(x), _abs(weight), **geom)
    for name, flag, got, ref, mag in zip(("grad_x", "grad_weight", "grad_bias"), mask, grads,
                                         refs, mags):
        if flag:
            assert_close(got, ref, dtype, mag, name)
        else:
            assert got is None, f"{name} masked out but returned {type(got)}"
    return grads


def _grad_y(rng, x, weight, geom, dtype):
    n, _, h, w = x.shape
    kh, kw = weight.shape[2:]
    (sh, sw), (ph, pw), (dh, dw) = (pair(geom[k]) for k in ("stride", "padding", "dilation"))
    shape = (n, weight.shape[0], out_size(h, kh, sh, ph, dh), out_size(w, kw, sw, pw, dw))
    return randn(rng, shape, dtype)


@pytest.mark.parametrize("case", CONV2D_CASES, ids=[c[0] for c in CONV2D_CASES])
def test_conv2d_forward_cases(case, dtype, rng):
    x, weight, bias, geom = _case_inputs(case, dtype, rng)
    y = check_forward(x, weight, bias, geom, dtype)
    assert y.flags.c_contiguous


@pytest.mark.parametrize("case", CONV2D_CASES, ids=[c[0] for c in CONV2D_CASES])
def test_conv2d_backward_cases(case, dtype, rng):
    x, weight, _, geom = _case_inputs(case, dtype, rng)
    grad_y = _grad_y(rng, x, weight, geom, dtype)
    check_backward(grad_y, x, weight, geom, dtype)


def test_conv2d_batch0_shapes(dtype):
    x = np.zeros((0, 3, 5, 6), dtype)
    w = np.ones((4, 3, 3, 2), dtype)
    y = ak.conv2d_forward(x, w, np.ones(4, dtype), stride=(1, 2), padding=1)
    assert y.shape == (0, 4, 5, 4) and y.dtype == dtype
    gx, gw, gb = ak.conv2d_backward(np.zeros((0, 4, 5, 4), dtype), x, w, stride=(1, 2), padding=1)
    assert gx.shape == (0, 3, 5, 6) and gx.dtype == dtype
    assert gw.shape == w.shape and gb.shape == (4,)
    assert np.array_equal(gw, np.zeros_like(w)) and np.array_equal(gb, np.zeros(4, dtype))


@pytest.mark.parametrize("mask", list(itertools.product([False, True], repeat=3)),
                         ids=lambda m: "".join("1" if f else "0" for f in m))
def test_conv2d_backward_output_mask(mask, dtype, rng):
    geom = dict(stride=(2, 1), padding=1, dilation=(1, 2), groups=2)
    x = randn(rng, (2, 4, 7, 8), dtype)
    w = randn(rng, (6, 2, 3, 2), dtype)
    gy = _grad_y(rng, x, w, geom, dtype)
    check_backward(gy, x, w, geom, dtype, mask=mask)


@pytest.mark.parametrize("mask", [(True, False, False), (False, True, False), (False, False, True)])
def test_conv2d_backward_mask_matches_full(mask, rng):
    """A masked call computes the same values as the full call for what it returns."""
    geom = dict(stride=1, padding=1, dilation=1, groups=1)
    x = randn(rng, (3, 2, 6, 5), np.float64)
    w = randn(rng, (3, 2, 3, 3), np.float64)
    gy = _grad_y(rng, x, w, geom, np.float64)
    full = ak.conv2d_backward(gy, x, w, **geom)
    part = ak.conv2d_backward(gy, x, w, output_mask=mask, **geom)
    for flag, f, p in zip(mask, full, part):
        if flag:
            assert np.array_equal(f, p)
        else:
            assert p is None


# ----------------------------------------------------------------------------------
# conv2d: random geometries
# ----------------------------------------------------------------------------------


@st.composite
def conv2d_geometries(draw):
    groups = draw(st.integers(1, 3))
    cg, og = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    n = draw(st.integers(0, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    h = draw(st.integers(max(1, dh * (kh - 1) + 1 - 2 * ph), dh * (kh - 1) + 6))
    w = draw(st.integers(max(1, dw * (kw - 1) + 1 - 2 * pw), dw * (kw - 1) + 6))

    def arg(a, b):
        return a if a == b and draw(st.booleans()) else (a, b)

    geom = dict(stride=arg(sh, sw), padding=arg(ph, pw), dilation=arg(dh, dw), groups=groups)
    return (n, cg * groups, h, w), (og * groups, cg, kh, kw), geom


@HYPOTHESIS
@given(conv2d_geometries(), st.sampled_from([np.float32, np.float64]), st.booleans(),
       st.integers(0, 2**32 - 1))
def test_conv2d_random_geometries(geometry, dtype, has_bias, seed):
    x_shape, w_shape, geom = geometry
    rng = np.random.default_rng(seed)
    x = randn(rng, x_shape, dtype)
    w = randn(rng, w_shape, dtype)
    b = randn(rng, (w_shape[0],), dtype) if has_bias else None
    check_forward(x, w, b, geom, dtype)
    gy = _grad_y(rng, x, w, geom, dtype)
    check_backward(gy, x, w, geom, dtype)


# ----------------------------------------------------------------------------------
# conv2d: how the work is cut (whole images side by side, blocks of output rows,
# images dealt out per thread plus a remainder shared by all threads) must not show
# ----------------------------------------------------------------------------------
#
# The implementation cuts work into units whose column matrix stays within a cache-sized
# budget (about 512 KiB; C*kH*kW*W_out*itemsize bytes of columns per output row): small
# images go several to a unit, large ones in blocks of output rows; in the backward,
# images are dealt out whole to threads and the rest (N % threads) are computed by all
# threads together. The geometries below sit well inside each regime.

BIG_BATCH_CASES = [
    # (id, dtype, x shape, weight shape, geometry, bias)
    ("f64_n41", np.float64, (41, 16, 32, 32), (8, 16, 3, 3), dict(), True),
    ("f32_n37_groups_pad", np.float32, (37, 8, 40, 40), (6, 4, 3, 3),
     dict(padding=1, groups=2), True),
    # ~9 MiB of columns per image: many row blocks
    ("f64_big_image", np.float64, (2, 8, 130, 130), (4, 8, 3, 3), dict(padding=1), False),
]


@pytest.mark.parametrize("case", BIG_BATCH_CASES, ids=[c[0] for c in BIG_BATCH_CASES])
def test_conv2d_big_cases(case, rng):
    _, dtype, x_shape, w_shape, geom, has_bias = case
    geom = dict(dict(stride=1, padding=0, dilation=1, groups=1), **geom)
    x = randn(rng, x_shape, dtype)
    w = randn(rng, w_shape, dtype)
    b = randn(rng, (w_shape[0],), dtype) if has_bias else None
    check_forward(x, w, b, geom, dtype)
    gy = _grad_y(rng, x, w, geom, dtype)
    check_backward(gy, x, w, geom, dtype)


# (id, dtype, x shape, weight shape, geometry)
PARTITION_GEOMETRIES = [
    # small images: several whole images per unit
    ("small", np.float64, (3, 8, 8), (4, 3, 3, 3), dict(padding=1)),
    ("small_groups_stride", np.float32, (4, 9, 7), (6, 2, 3, 2),
     dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2)),
    # 36 KiB of columns per output row, 1.1 MiB per image: a few row blocks per image
    ("row_blocks", np.float64, (16, 34, 34), (6, 16, 3, 3), dict()),
    ("row_blocks_groups_dilated", np.float64, (16, 70, 33), (4, 8, 3, 3),
     dict(stride=(1, 2), padding=2, dilation=2, groups=2)),
    # 576 KiB of columns per output row, more than the budget: one row per unit
    ("row_over_budget", np.float64, (64, 6, 130), (3, 64, 3, 3), dict()),
    # pointwise (x read directly as the column matrix), in row blocks and whole images
    ("pointwise_row_blocks", np.float64, (64, 40, 40), (6, 32, 1, 1), dict(groups=2)),
    ("pointwise_small", np.float32, (5, 6, 7), (3, 5, 1, 1), dict()),
]


@pytest.mark.parametrize("threads", [1, 2, 3, 4])
@pytest.mark.parametrize("n", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("geometry", PARTITION_GEOMETRIES, ids=[g[0] for g in PARTITION_GEOMETRIES])
def test_conv2d_work_partition(geometry, n, threads, rng, restore_threads):
    _, dtype, chw, w_shape, geom = geometry
    if n == 8 and chw[0] * chw[1] * chw[2] > 50000:
        n = 4  # keep the big geometries quick; 4 still deals images out to threads
    geom = dict(dict(stride=1, padding=0, dilation=1, groups=1), **geom)
    x = randn(rng, (n,) + chw, dtype)
    w = randn(rng, w_shape, dtype)
    b = randn(rng, (w_shape[0],), dtype)
    gy = _grad_y(rng, x, w, geom, dtype)
    ak.set_num_threads(threads)
    y = check_forward(x, w, b, geom, dtype)
    grads = check_backward(gy, x, w, geom, dtype)
    # each gradient alone (other code paths skip work) gives the same values
    for i, mask in enumerate(((True, False, False), (False, True, False))):
        alone = ak.conv2d_backward(gy, x, w, output_mask=mask, **geom)[i]
        assert np.array_equal(alone, grads[i])
    # bitwise repeatable for a given thread count
    assert np.array_equal(ak.conv2d_forward(x, w, b, **geom), y)
    for g1, g2 in zip(ak.conv2d_backward(gy, x, w, **geom), grads):
        assert np.array_equal(g1, g2)


# One input channel per group and at most 8 output channels per group (depthwise; the
# backward at most 4, k3_x8's on im2col + GEMM) run on a direct kernel: tiles of 4 output rows by 8 columns summed from each channel's padded
# band, a row's last partial tile reading past its end into lanes it drops; grad_x of
# stride 1 with one output per group as the flipped kernel's forward over grad_y, else
# summed into the band; grad_weight in 4 x 8 partial sums per tap. Output widths below,
# above and at multiples of 8, heights with every remainder of 4, multipliers 1-3 and 8,
# strides, dilations, paddings from 0 to past the kernel.
# (id, N, C, H, W, multiplier, kernel, stride, padding, dilation, bias)
DEPTHWISE_CASES = [
    ("k3_28", 3, 5, 28, 28, 1, (3, 3), 1, 1, 1, True),
    ("k3_widths", 2, 3, 11, 17, 1, (3, 3), 1, 1, 1, False),
    ("k3_narrow", 2, 4, 6, 3, 1, (3, 3), 1, 1, 1, True),
    ("k3_width8_rows5", 2, 3, 5, 8, 1, (3, 3), 1, 1, 1, True),
    ("k5_pad2_x2", 2, 3, 13, 19, 2, (5, 5), 1, 2, 1, True),
    ("k3_stride2", 2, 4, 15, 30, 1, (3, 3), 2, 1, 1, True),
    ("k3_stride2_x3", 1, 2, 9, 12, 3, (3, 3), 2, 0, 1, False),
    ("k1x3_strides", 2, 3, 7, 21, 1, (1, 3), (1, 2), (0, 1), 1, True),
    ("k3x1_dilated", 1, 4, 14, 9, 1, (3, 1), 1, (2, 0), (2, 1), True),
    ("k3_dilated2", 2, 3, 12, 12, 1, (3, 3), 1, 2, 2, True),
    ("k3_pad0", 2, 3, 10, 26, 1, (3, 3), 1, 0, 1, True),
    ("k3_x8", 2, 2, 9, 10, 8, (3, 3), 1, 1, 1, True),
    ("k7_pad3_stride2", 1, 3, 20, 20, 1, (7, 7), 2, 3, 1, True),
]


@pytest.mark.parametrize("case", DEPTHWISE_CASES, ids=[c[0] for c in DEPTHWISE_CASES])
def test_conv2d_depthwise(case, dtype, rng, restore_threads):
    """The depthwise kernel against the reference, each gradient alone the same bits, and
    the same bits for 1-4 threads (the gradients where they run on it)."""
    _, n, c, h, w, mult, (kh, kw), stride, padding, dilation, has_bias = case
    x = randn(rng, (n, c, h, w), dtype)
    weight = randn(rng, (c * mult, 1, kh, kw), dtype)
    bias = randn(rng, (c * mult,), dtype) if has_bias else None
    geom = dict(stride=stride, padding=padding, dilation=dilation, groups=c)
    gy = _grad_y(rng, x, weight, geom, dtype)
    results = []
    for threads in (1, 2, 3, 4):
        ak.set_num_threads(threads)
        y = check_forward(x, weight, bias, geom, dtype)
        grads = check_backward(gy, x, weight, geom, dtype)
        for i, mask in enumerate(((True, False, False), (False, True, False))):
            assert np.array_equal(ak.conv2d_backward(gy, x, weight, output_mask=mask, **geom)[i],
                                  grads[i])
        results.append((y,) + grads)
    on_kernel = results[0] if mult <= 4 else results[0][:1]
    for other in results[1:]:
        for a, b in zip(on_kernel, other):
            assert np.array_equal(a, b)


def test_conv2d_depthwise_non_finite(rng):
    """An inf in x or grad_y reaches exactly the outputs and weight gradients the
    definition sends it to: in particular none through the lanes a partial tile reads past
    a row (x's first and last columns lie next to other rows' windows in the band)."""
    x = randn(rng, (2, 3, 9, 13), np.float32)
    x[0, 0, 4, 12] = np.inf
    x[1, 1, 2, 0] = -np.inf
    weight = randn(rng, (3, 1, 3, 3), np.float32)
    gy = randn(rng, (2, 3, 9, 13), np.float32)
    gy[1, 2, 8, 12] = np.inf
    geom = dict(stride=1, padding=1, groups=3)
    got = (ak.conv2d_forward(x, weight, None, **geom),) + ak.conv2d_backward(gy, x, weight,
                                                                             **geom)
    ref = (conv2d_ref(x, weight, None, **geom),) + conv2d_backward_ref(gy, x, weight, **geom)
    for name, g, r in zip(("y", "grad_x", "grad_weight", "grad_bias"), got, ref):
        for kind in (np.isnan, np.isposinf, np.isneginf):
            assert np.array_equal(kind(g), kind(r)), (name, kind.__name__)
        finite = np.isfinite(r)
        assert finite.any()
        assert_close(g[finite], r[finite], np.float32, what=name)


# The float32 forward on the packed-GEMM kernel (AVX2/AVX-512 CPUs) runs by tap classes
# (the output positions grouped by which taps of their window fall inside the input, the
# padding's taps left out, several images per unit where they are small) or, with
# ADLK_CONV_TAPS=never or where the classes are too many, cuts the batch's output
# positions into 32-column panels, a panel running on from one image into the next
# (L = H_out*W_out below is not a multiple of 32), claimed at run time: every output is
# still one chain in a fixed order, the same bits for any thread count and on both paths.
# They run by default for kernels of depth C/groups*kH*kW >= 32 (the first cases; the
# panels for stride 1 only, the tap classes for 80% full panels of output channels);
# ADLK_CONV_PANELS=always sends every geometry they can run through them. The other
# forwards with depth >= 128 and a kernel larger than 1x1 (and, with =always, every one
# the panels cannot run) build
# blocks of columns and run the same kernel on them in place: the same chains, so the
# same bits for any thread count too, and the same as the panels' ("columns_k7_s2": its
# bands would be too large for the panels).
PANEL_CASES = [
    ("k3_pad", (7, 32, 9, 11), (10, 32, 3, 3), dict(padding=1)),
    ("dilation_groups", (5, 58, 8, 9), (6, 29, 3, 3), dict(padding=2, dilation=2, groups=2)),
    ("k5_one_image", (1, 11, 12, 12), (4, 11, 5, 5), dict()),
    ("columns_k7_s2", (2, 8, 128, 128), (16, 8, 7, 7), dict(stride=2, padding=3)),
    # columns by default, panels with =always (the same bits): a last panel of a block
    # shorter than 32 and panels that run from one image into the next
    # (depth >= 256: grad_weight on the packed kernel either way)
    ("columns_s2_tails", (5, 32, 11, 13), (6, 32, 3, 3), dict(stride=2, padding=1)),
    # taken only when asked for (a 1x1 kernel's columns by default run on BLAS)
    ("columns_pointwise", (3, 260, 5, 7), (4, 260, 1, 1), dict()),
    ("stride_dilation_groups", (5, 6, 13, 10), (9, 2, 3, 2),
     dict(stride=(2, 3), padding=(2, 1), dilation=(2, 1), groups=3)),
    ("one_channel_k5", (9, 1, 12, 12), (4, 1, 5, 5), dict()),
    ("pointwise", (3, 5, 6, 7), (3, 5, 1, 1), dict()),
    ("padding_past_kernel", (4, 2, 3, 4), (5, 2, 2, 3), dict(padding=(3, 4), stride=2)),
    # grad_weight: an image's columns in several blocks of output rows, grad_y packed in
    # blocks of two images (the last one short)
    ("row_blocks", (3, 16, 64, 64), (4, 16, 3, 3), dict(padding=1)),
    # rows wider than the band fills' 16 cached block masks: the rest formed as they go
    ("wide_rows", (2, 8, 5, 304), (4, 8, 3, 3), dict(padding=1)),
    # grad_weight from built columns (the bands, 3 phases of H_out + 1 rows, would be
    # larger; fewer than 8 channels: not by taps) in several blocks of output rows, each
    # a part of the depth of grad_y's two packed panels (40 channels)
    ("no_bands_row_blocks", (1, 6, 450, 300), (40, 6, 3, 3),
     dict(stride=3, padding=1, dilation=2)),
]
PANEL_BY_DEFAULT = 5
# grad_x runs as the forward of grad_y with the transposed, flipped weight (padding
# d*(k-1) - p: 0 becomes a full convolution) on the panel path
TRANSPOSED_GRAD_X = ["k3_pad", "dilation_groups", "k5_one_image", "row_blocks", "wide_rows"]
# by default where that forward's depth (C_out/groups*kH*kW) reaches the panels' threshold
TRANSPOSED_GRAD_X_BY_DEFAULT = ["k3_pad", "k5_one_image"]

_PANEL_SCRIPT = r"""
import hashlib, json, sys
import numpy as np
import adlkernels as ak
from reference import assert_close, conv2d_backward_ref, conv2d_ref
cases = json.loads(sys.argv[1])
rng = np.random.default_rng(5)
failures, digests, dx_same, dx_digests = [], [], [], []
for name, x_shape, w_shape, geom in cases:
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32)
    ys, dws, dxs = [], [], []
    for threads in (1, 2, 3, 4):
        ak.set_num_threads(threads)
        ys.append((ak.conv2d_forward(x, w, b, **geom), ak.conv2d_forward(x, w, None, **geom)))
        if threads == 1:
            gy = rng.standard_normal(ys[0][0].shape).astype(np.float32)
        dx, dw, _ = ak.conv2d_backward(gy, x, w, **geom, output_mask=(True, True, False))
        dws.append(dw)
        dxs.append(dx)
    ref_dx, ref_dw = conv2d_backward_ref(gy.astype(np.float64), x.astype(np.float64),
                                         w.astype(np.float64), **geom)[:2]
    for got, ref, what in ((dws[0], ref_dw, " grad_weight"), (dxs[0], ref_dx, " grad_x")):
        try:
            assert_close(got, ref, np.float32, what=name + what)
        except AssertionError as e:
            failures.append(str(e))
    if any(not np.array_equal(dw, dws[0]) for dw in dws):
        failures.append(f"{name}: grad_weight bits change with the thread count")
    for y, bias in zip(ys[0], (b, None)):
        ref = conv2d_ref(x.astype(np.float64), w.astype(np.float64),
                         None if bias is None else bias.astype(np.float64), **geom)
        try:
            assert_close(y, ref, np.float32, what=name)
        except AssertionError as e:
            failures.append(str(e))
    if any(not np.array_equal(y[i], ys[0][i]) for y in ys for i in (0, 1)):
        failures.append(f"{name}: bits change with the thread count")
    digests.append(hashlib.sha1(ys[0][0].tobytes() + ys[0][1].tobytes()
                                + dws[0].tobytes()).hexdigest())
    dx_same.append(all(np.array_equal(dx, dxs[0]) for dx in dxs))
    dx_digests.append(hashlib.sha1(dxs[0].tobytes()).hexdigest())
print(json.dumps({"failures": failures, "digests": digests, "dx_same": dx_same,
                  "dx_digests": dx_digests, "isa": ak.build_info()["gemm_isa"]}))
"""


def _panel_child(mode, cases, taps=""):
    import json
    import os
    import subprocess
    import sys
    env = dict(os.environ, ADLK_CONV_PANELS=mode, ADLK_CONV_TAPS=taps)
    r = subprocess.run([sys.executable, "-c", _PANEL_SCRIPT, json.dumps(cases)], env=env,
                       cwd=os.path.dirname(os.path.abspath(__file__)), capture_output=True,
                       text=True, timeout=300, check=True)
    return json.loads(r.stdout)


def test_conv2d_forward_panels():
    """Every panel geometry (ADLK_CONV_PANELS=always: the forward and grad_weight on the
    packed-weight kernel; the forward by tap classes, and with ADLK_CONV_TAPS=never on
    the panels) against the reference and bitwise the same for 1-4 threads, the two
    forwards the same bits; by default the deep stride-1 cases take the same paths (the
    same bits), and with =never every case is still right."""
    always = _panel_child("always", PANEL_CASES)
    if always["isa"] == "portable":
        pytest.skip("no AVX2/AVX-512 packed kernel: the forward runs on BLAS")
    assert not always["failures"], always["failures"]
    panels = _panel_child("always", PANEL_CASES, taps="never")
    assert not panels["failures"], panels["failures"]
    assert panels["digests"] == always["digests"]
    assert panels["dx_digests"] == always["dx_digests"]
    default = _panel_child("", PANEL_CASES[:PANEL_BY_DEFAULT])
    assert default["digests"] == always["digests"][:PANEL_BY_DEFAULT]
    # grad_x as the transposed forward on the panels (stride 1, >= 8 input channels per
    # group): the same bits for any thread count, by default as with =always
    names = [c[0] for c in PANEL_CASES]
    for name in TRANSPOSED_GRAD_X:
        assert always["dx_same"][names.index(name)], name
    for name in TRANSPOSED_GRAD_X_BY_DEFAULT:
        i = names.index(name)
        assert default["dx_same"][i] and default["dx_digests"][i] == always["dx_digests"][i]
    never = _panel_child("never", PANEL_CASES[:PANEL_BY_DEFAULT])
    # the bits-across-threads check does not hold for the BLAS path; correctness does
    assert not [f for f in never["failures"] if "thread count" not in f], never["failures"]


_STREAMED_SCRIPT = r"""
import hashlib, sys
import numpy as np
import adlkernels as ak
rng = np.random.default_rng(11)
x = rng.standard_normal((2, 8, 128, 128)).astype(np.float32)
w = rng.standard_normal((64, 8, 3, 3)).astype(np.float32)
b = rng.standard_normal(64).astype(np.float32)
print(hashlib.sha1(ak.conv2d_forward(x, w, b, padding=1).tobytes()).hexdigest())
"""


def test_conv2d_forward_large_output_streamed():
    """An 8 MiB output with rows of 16k floats: the tap-class forward (AVX-512 or AVX2)
    writes its whole cache lines with non-temporal stores, the lines before a block's
    first line boundary the usual way. Right against the reference, and the same bits
    as the panels (ADLK_CONV_TAPS=never), with either kernel (ADLK_GEMM_ISA=avx2)."""
    import hashlib
    import os
    import subprocess
    import sys

    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 8, 128, 128)).astype(np.float32)
    w = rng.standard_normal((64, 8, 3, 3)).astype(np.float32)
    b = rng.standard_normal(64).astype(np.float32)
    y = ak.conv2d_forward(x, w, b, padding=1)
    assert y.nbytes >= 8 << 20
    assert_close(y, conv2d_ref(x, w, b, padding=1), np.float32)
    digests = {}
    for isa in ("", "avx2"):
        for taps in ("", "never"):
            env = dict(os.environ, ADLK_CONV_TAPS=taps, ADLK_GEMM_ISA=isa)
            r = subprocess.run([sys.executable, "-c", _STREAMED_SCRIPT], env=env,
                               capture_output=True, text=True, timeout=300, check=True)
            digests[isa, taps] = r.stdout.strip()
    assert set(digests.values()) == {hashlib.sha1(y.tobytes()).hexdigest()}, digests


def test_conv2d_padding_terms_with_an_infinite_weight():
    """The tap classes (float32; AVX-512, or AVX2 at this depth of 72) leave out the
    padding's terms: an infinite weight at a tap that falls on the padding makes no NaN in
    the border outputs (the README's convolution details); the paths that add 0 * inf
    give NaN there."""
    x = np.ones((1, 8, 6, 6), np.float32)
    w = np.ones((32, 8, 3, 3), np.float32)
    w[0, 0, 0, 0] = np.inf
    for dtype in (np.float32, np.float64):
        y = ak.conv2d_forward(x.astype(dtype), w.astype(dtype), None, padding=1)
        taps = dtype == np.float32 and ak.build_info()["gemm_isa"] in ("avx512", "avx2")
        # output row 0 and (1, 0): tap (0, 0) reads the padding; (1, 1) reads x * inf
        if taps:
            assert np.isfinite(y[0, 0, 0]).all() and y[0, 0, 1, 0] == 48
        else:
            assert np.isnan(y[0, 0, 0]).all() and np.isnan(y[0, 0, 1, 0])
        assert np.isinf(y[0, 0, 1, 1])
        assert np.array_equal(y[0, 1:], np.broadcast_to(y[0, 1], y[0, 1:].shape))


_FEWER_THREADS_SCRIPT = r"""
import sys
import numpy as np
import adlkernels as ak
from reference import assert_close, conv2d_backward_ref, conv2d_ref

rng = np.random.default_rng(0)
failures = []
for threads in (3, 4):
    ak.set_num_threads(threads)
    for n in (3, 4, 6):
        for c, hw in ((16, 34), (3, 8)):  # row blocks / whole images per unit
            x = rng.standard_normal((n, c, hw, hw))
            w = rng.standard_normal((5, c, 3, 3))
            gy = rng.standard_normal((n, 5, hw - 2, hw - 2))
            got = (ak.conv2d_forward(x, w),) + ak.conv2d_backward(gy, x, w)
            ref = (conv2d_ref(x, w),) + conv2d_backward_ref(gy, x, w)
            for name, g, r in zip(("y", "grad_x", "grad_weight", "grad_bias"), got, ref):
                try:
                    assert_close(g, r, np.float64, what=name)
                except AssertionError as e:
                    failures.append(f"threads={threads} x={x.shape}: {e}")
print("\n".join(failures))
sys.exit(1 if failures else 0)
"""


def test_conv2d_when_openmp_grants_fewer_threads():
    """set_num_threads(n) above OMP_THREAD_LIMIT: OpenMP then runs teams smaller than n,
    and the results must still be right (run in a subprocess: the limit is read when
    the OpenMP runtime starts)."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, OMP_THREAD_LIMIT="2")
    r = subprocess.run([sys.executable, "-c", _FEWER_THREADS_SCRIPT], env=env,
                       cwd=os.path.dirname(os.path.abspath(__file__)), capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]


def test_conv2d_images_independent_of_batch(rng):
    """Each image of a batch equals the same image computed alone (float64, tight)."""
    x = randn(rng, (19, 16, 32, 32), np.float64)
    w = randn(rng, (8, 16, 3, 3), np.float64)
    b = randn(rng, (8,), np.float64)
    y = ak.conv2d_forward(x, w, b, padding=1)
    for i in (0, 7, 8, 18):
        yi = ak.conv2d_forward(x[i:i + 1], w, b, padding=1)
        np.testing.assert_allclose(y[i:i + 1], yi, rtol=1e-12, atol=1e-12)


def test_conv2d_concurrent_calls(rng):
    """Calls from several Python threads at once (the GIL is released) give the same
    results as the same calls made one after another."""
    from concurrent.futures import ThreadPoolExecutor

    jobs = []
    for i in range(8):
        n, c, hw = (1, 3, 5, 8)[i % 4], (16, 4)[i % 2], (34, 12)[i % 2]
        x = randn(rng, (n, c, hw, hw), np.float64)
        w = randn(rng, (6, c, 3, 3), np.float64)
        gy = randn(rng, (n, 6, hw - 2, hw - 2), np.float64)
        jobs.append((x, w, gy))

    def run(job):
        x, w, gy = job
        return ak.conv2d_forward(x, w), ak.conv2d_backward(gy, x, w)

    serial = [run(j) for j in jobs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(3):
            concurrent = list(pool.map(run, jobs))
            for (y1, g1), (y2, g2) in zip(serial, concurrent):
                assert np.array_equal(y1, y2)
                for a, b in zip(g1, g2):
                    assert np.array_equal(a, b)
    x, w, gy = jobs[1]
    assert_close(serial[1][0], conv2d_ref(x, w), np.float64)


POINTWISE_CASES = [
    # (id, dtype, N, C_in, H, W, C_out, groups)
    ("n1_g1", np.float64, 1, 5, 6, 7, 4, 1),
    ("n1_g2", np.float64, 1, 4, 5, 6, 6, 2),
    ("n1_g1_f32", np.float32, 1, 6, 4, 9, 3, 1),
    ("n4_g1", np.float64, 4, 5, 6, 7, 3, 1),
    ("n3_g3_f32", np.float32, 3, 6, 5, 5, 9, 3),
    ("n5_depthwise", np.float64, 5, 4, 3, 8, 4, 4),
    # large planes: x read directly as the column matrix, in row blocks
    ("n4_g3_large", np.float64, 4, 33, 100, 100, 6, 3),
    ("n3_g2_large", np.float64, 3, 64, 96, 96, 8, 2),
]


@pytest.mark.parametrize("case", POINTWISE_CASES, ids=[c[0] for c in POINTWISE_CASES])
def test_conv2d_pointwise(case, rng):
    _, dtype, n, c_in, h, w, c_out, groups = case
    geom = dict(stride=1, padding=0, dilation=1, groups=groups)
    x = randn(rng, (n, c_in, h, w), dtype)
    wt = randn(rng, (c_out, c_in // groups, 1, 1), dtype)
    b = randn(rng, (c_out,), dtype)
    y = check_forward(x, wt, b, geom, dtype)
    assert not np.shares_memory(y, x)
    y0 = check_forward(x, wt, None, geom, dtype)
    assert not np.shares_memory(y0, x)
    gy = randn(rng, y.shape, dtype)
    gx, _, _ = check_backward(gy, x, wt, geom, dtype)
    assert not np.shares_memory(gx, gy) and not np.shares_memory(gx, x)
    for mask in ((True, False, False), (False, True, False)):
        check_backward(gy, x, wt, geom, dtype, mask=mask)


def test_outputs_do_not_depend_on_fresh_memory(rng):
    """Outputs are fully written: memory that held NaNs before does not leak into them
    (e.g. a GEMM with beta = 0 must not read its output, nor a sum start from garbage)."""
    geoms = [(dict(), (2, 3, 6, 5), (4, 3, 3, 2)), (dict(), (3, 4, 5, 6), (2, 4, 1, 1)),
             (dict(groups=2, padding=1), (1, 4, 7, 7), (6, 2, 3, 3))]
    for geom, x_shape, w_shape in geoms:
        x, w = randn(rng, x_shape, np.float64), randn(rng, w_shape, np.float64)
        y_ref = conv2d_ref(x, w, None, **geom)
        gy = randn(rng, y_ref.shape, np.float64)
        g_ref = conv2d_backward_ref(gy, x, w, **geom)
        for _ in range(5):
            junk = [np.full(s, np.nan) for s in (y_ref.shape, x_shape, w_shape, (w_shape[0],))
                    for _ in range(4)]
            del junk
            y = ak.conv2d_forward(x, w, None, **geom)
            assert np.isfinite(y).all()
            assert_close(y, y_ref, np.float64)
            junk = [np.full(s, np.nan) for s in (y_ref.shape, x_shape, w_shape, (w_shape[0],))
                    for _ in range(4)]
            del junk
            for got, ref in zip(ak.conv2d_backward(gy, x, w, **geom), g_ref):
                assert np.isfinite(got).all()
                assert_close(got, ref, np.float64)
        junk = [np.full(x_shape, np.nan) for _ in range(4)]
        del junk
        cols = ak.im2col(x, w_shape[2:], padding=1)
        junk = [np.full(x_shape, np.nan) for _ in range(4)]
        del junk
        back = ak.col2im(cols, x_shape[2:], w_shape[2:], padding=1)
        assert np.isfinite(cols).all() and np.isfinite(back).all()


# ----------------------------------------------------------------------------------
# finite differences (float64): the backward is the derivative of the forward
# ----------------------------------------------------------------------------------


def _fd_check(forward, backward, x, w, b, gy, h=1e-3, rtol=1e-7):
    """Central differences of loss = sum(gy * forward(x, w, b)) in every entry."""
    gx, gw, gb = backward(gy, x, w)

    def loss(x_, w_, b_):
        return float(np.sum(gy * forward(x_, w_, b_)))

    scale = max(1.0, float(np.abs(gy).sum()) * max(np.abs(x).max(), np.abs(w).max(), 1.0))
    for which, arr, grad in (("x", x, gx), ("weight", w, gw), ("bias", b, gb)):
        num = np.zeros_like(arr)
        for idx in np.ndindex(arr.shape):
            plus, minus = arr.copy(), arr.copy()
            plus[idx] += h
            minus[idx] -= h
            args_p = [x, w, b]
            args_m = [x, w, b]
            k = ("x", "weight", "bias").index(which)
            args_p[k], args_m[k] = plus, minus
            num[idx] = (loss(*args_p) - loss(*args_m)) / (2 * h)
        err = np.abs(grad - num).max()
        assert err <= rtol * scale, f"{which}: max |analytic - numeric| = {err:.3g}"


def test_conv2d_backward_finite_differences(rng):
    geom = dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2)
    x = randn(rng, (2, 4, 5, 6), np.float64)
    w = randn(rng, (4, 2, 3, 2), np.float64)
    b = randn(rng, (4,), np.float64)
    gy = _grad_y(rng, x, w, geom, np.float64)
    _fd_check(lambda x_, w_, b_: ak.conv2d_forward(x_, w_, b_, **geom),
              lambda g, x_, w_: ak.conv2d_backward(g, x_, w_, **geom), x, w, b, gy)


def test_conv2d_pointwise_finite_differences(rng):
    geom = dict(groups=3)
    x = randn(rng, (3, 6, 3, 4), np.float64)
    w = randn(rng, (3, 2, 1, 1), np.float64)
    b = randn(rng, (3,), np.float64)
    gy = randn(rng, (3, 3, 3, 4), np.float64)
    _fd_check(lambda x_, w_, b_: ak.conv2d_forward(x_, w_, b_, **geom),
              lambda g, x_, w_: ak.conv2d_backward(g, x_, w_, **geom), x, w, b, gy)


def test_conv1d_backward_finite_differences(rng):
    geom = dict(stride=2, padding=1, dilation=2, groups=2)
    x = randn(rng, (2, 4, 9), np.float64)
    w = randn(rng, (6, 2, 3), np.float64)
    b = randn(rng, (6,), np.float64)
    gy = randn(rng, (2, 6, out_size(9, 3, 2, 1, 2)), np.float64)
    _fd_check(lambda x_, w_, b_: ak.conv1d_forward(x_, w_, b_, **geom),
              lambda g, x_, w_: ak.conv1d_backward(g, x_, w_, **geom), x, w, b, gy)


def test_fd_check_detects_a_wrong_gradient(rng):
    """The finite-difference checker itself fails on a perturbed gradient."""
    x = randn(rng, (1, 2, 4, 4), np.float64)
    w = randn(rng, (2, 2, 2, 2), np.float64)
    b = randn(rng, (2,), np.float64)
    gy = randn(rng, (1, 2, 3, 3), np.float64)

    def bad_backward(g, x_, w_):
        gx, gw, gb = ak.conv2d_backward(g, x_, w_)
        gw = gw.copy()
        gw[0, 1, 1, 0] += 1e-3
        return gx, gw, gb

    with pytest.raises(AssertionError, match="weight"):
        _fd_check(ak.conv2d_forward, bad_backward, x, w, b, gy)


# ----------------------------------------------------------------------------------
# conv1d
# ----------------------------------------------------------------------------------

# (id, N, C_in, L, C_out, k, stride, padding, dilation, groups, bias)
CONV1D_CASES = [
    ("basic", 2, 3, 10, 4, 3, 1, 0, 1, 1, True),
    ("stride_pad", 3, 2, 11, 5, 3, 2, 1, 1, 1, False),
    ("dilation", 1, 3, 12, 2, 3, 1, 2, 3, 1, True),
    ("groups", 2, 4, 9, 6, 2, 3, 1, 1, 2, True),
    ("depthwise", 2, 3, 8, 6, 3, 1, 1, 2, 3, False),
    ("batch0", 0, 2, 7, 3, 3, 1, 1, 1, 1, True),
    ("kernel_eq_padded", 2, 2, 4, 3, 6, 1, 1, 1, 1, True),
    ("pointwise", 3, 4, 7, 2, 1, 1, 0, 1, 1, True),
    ("length1", 2, 3, 1, 2, 1, 1, 0, 1, 1, False),
]


@pytest.mark.parametrize("case", CONV1D_CASES, ids=[c[0] for c in CONV1D_CASES])
def test_conv1d_forward_backward(case, dtype, rng):
    _, n, c_in, length, c_out, k, stride, padding, dilation, groups, has_bias = case
    geom = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    x = randn(rng, (n, c_in, length), dtype)
    w = randn(rng, (c_out, c_in // groups, k), dtype)
    b = randn(rng, (c_out,), dtype) if has_bias else None
    y = ak.conv1d_forward(x, w, b, **geom)
    assert y.flags.c_contiguous
    assert_close(y, conv1d_ref(x, w, b, **geom), dtype,
                 conv1d_ref(_abs(x), _abs(w), _abs(b), **geom), "y")
    gy = randn(rng, y.shape, dtype)
    grads = ak.conv1d_backward(gy, x, w, **geom)
    refs = conv1d_backward_ref(gy, x, w, **geom)
    mags = conv1d_backward_ref(_abs(gy), _abs(x), _abs(w), **geom)
    for name, got, ref, mag in zip(("grad_x", "grad_weight", "grad_bias"), grads, refs, mags):
        assert got.flags.c_contiguous, name
        assert_close(got, ref, dtype, mag, name)


def test_conv1d_output_mask(rng):
    x = randn(rng, (2, 3, 8), np.float64)
    w = randn(rng, (4, 3, 3), np.float64)
    gy = randn(rng, (2, 4, 6), np.float64)
    refs = conv1d_backward_ref(gy, x, w)
    for mask in itertools.product([False, True], repeat=3):
        grads = ak.conv1d_backward(gy, x, w, output_mask=mask)
        for flag, got, ref in zip(mask, grads, refs):
            if flag:
                assert_close(got, ref, np.float64)
            else:
                assert got is None


def test_conv1d_matches_conv2d_with_height_one(rng):
    x = randn(rng, (2, 4, 11), np.float64)
    w = randn(rng, (6, 2, 3), np.float64)
    b = randn(rng, (6,), np.float64)
    y1 = ak.conv1d_forward(x, w, b, stride=2, padding=1, dilation=2, groups=2)
    y2 = ak.conv2d_forward(x[:, :, None, :], w[:, :, None, :], b, stride=(1, 2), padding=(0, 1),
                           dilation=(1, 2), groups=2)
    assert y1.shape == (2, 6, 5)
    np.testing.assert_allclose(y1, y2[:, :, 0, :], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("arg", ["stride", "padding", "dilation"])
def test_conv1d_rejects_pairs(arg, rng):
    x = randn(rng, (1, 2, 8), np.float64)
    w = randn(rng, (3, 2, 3), np.float64)
    value = (1, 2) if arg != "padding" else (0, 1)
    # a clear error naming the argument (the implementation raises TypeError:
    # "expected an int, got tuple"); never silently using one element of the pair
    with pytest.raises((TypeError, ValueError), match=arg):
        ak.conv1d_forward(x, w, **{arg: value})
    with pytest.raises((TypeError, ValueError), match=arg):
        ak.conv1d_backward(randn(rng, (1, 3, 6), np.float64), x, w, **{arg: value})


# ----------------------------------------------------------------------------------
# messages a user can act on
# ----------------------------------------------------------------------------------


def test_channels_last_x_is_named(rng):
    """An (N, H, W, C) image is the common mistake: the message says so and how to fix
    it, instead of blaming the weight's channel count."""
    w = randn(rng, (16, 3, 3, 3), np.float32)
    x = randn(rng, (8, 32, 32, 3), np.float32)
    expected = ("conv2d_forward: x: shape (8, 32, 32, 3) looks channels-last (N, H, W, C); "
                "transpose to (N, C, H, W) with x.transpose(0, 3, 1, 2)")
    with pytest.raises(ValueError) as e:
        ak.conv2d_forward(x, w)
    assert str(e.value) == expected
    with pytest.raises(ValueError, match=r"conv2d_backward: x: .*channels-last"):
        ak.conv2d_backward(randn(rng, (8, 16, 30, 30), np.float32), x, w)
    with pytest.raises(ValueError, match=r"conv1d_forward: x: .*\(N, L, C\).*transpose\(0, 2, 1\)"):
        ak.conv1d_forward(x[:, 0], w[:, :, 0])
    # the right layout works
    assert ak.conv2d_forward(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), w).shape == (8, 16, 30, 30)


def test_dtype_mismatch_blames_x_and_names_the_cast(rng):
    """float64 data with float32 weights: x is what to fix, and the message says how."""
    x = randn(rng, (2, 3, 8, 8), np.float64)
    w = randn(rng, (4, 3, 3, 3), np.float32)
    with pytest.raises(TypeError) as e:
        ak.conv2d_forward(x, w)
    assert str(e.value) == ("conv2d_forward: x: dtype float64 does not match weight's float32; "
                            "cast one of them, e.g. x.astype(np.float32)")
    with pytest.raises(TypeError, match=r"conv2d_backward: grad_y: .*grad_y\.astype\(np\.float32\)"):
        ak.conv2d_backward(randn(rng, (2, 4, 6, 6), np.float64), x.astype(np.float32), w)
    with pytest.raises(TypeError, match=r"conv1d_forward: x: .*weight's float64"):
        ak.conv1d_forward(x[:, :, 0].astype(np.float32), w[:, :, 0].astype(np.float64))


# ----------------------------------------------------------------------------------
# im2col / col2im
# ----------------------------------------------------------------------------------

# (id, N, C, H, W, kernel, stride, padding, dilation)
UNFOLD_CASES = [
    ("basic", 2, 3, 5, 6, 3, 1, 0, 1),
    ("stride2", 2, 2, 7, 8, (3, 2), 2, 0, 1),
    ("pad", 1, 3, 4, 5, 3, 1, 1, 1),
    ("pad_pairs", 2, 2, 5, 4, (2, 3), (1, 2), (2, 1), 1),
    ("dilation", 1, 2, 9, 8, 3, 1, 1, 2),
    ("dilation_pairs", 2, 1, 7, 9, (2, 3), (2, 1), (0, 2), (3, 2)),
    ("stride_gt_kernel", 1, 2, 9, 9, 2, 3, 0, 1),
    ("kernel_eq_padded", 2, 3, 3, 4, (5, 6), 1, 1, 1),
    ("one_by_one", 2, 4, 3, 5, 1, 1, 0, 1),
    ("one_by_one_stride_pad", 2, 2, 4, 5, 1, 2, 1, 1),
    ("batch0", 0, 3, 5, 5, 3, 1, 1, 1),
    ("pixel", 3, 2, 1, 1, 1, 1, 0, 1),
    ("pad_gt_kernel", 1, 1, 2, 3, 2, 1, 3, 1),
]


def _unfold_args(case):
    _, n, c, h, w, k, s, p, d = case
    return (n, c, h, w), dict(kernel_size=k, stride=s, padding=p, dilation=d)


@pytest.mark.parametrize("case", UNFOLD_CASES, ids=[c[0] for c in UNFOLD_CASES])
def test_im2col_exact(case, dtype, rng):
    shape, kw = _unfold_args(case)
    x = randn(rng, shape, dtype)
    cols = ak.im2col(x, **kw)
    ref = unfold_ref(x, **kw)
    assert cols.dtype == dtype and cols.flags.c_contiguous
    assert cols.shape == ref.shape
    assert np.array_equal(cols, ref)


@pytest.mark.parametrize("case", UNFOLD_CASES, ids=[c[0] for c in UNFOLD_CASES])
def test_col2im_matches_fold(case, dtype, rng):
    shape, kw = _unfold_args(case)
    ref_cols_shape = unfold_ref(np.zeros(shape), **kw).shape
    cols = randn(rng, ref_cols_shape, dtype)
    x = ak.col2im(cols, shape[2:], **kw)
    ref = fold_ref(cols, shape[2:], **kw)
    mag = fold_ref(np.abs(cols.astype(np.float64)), shape[2:], **kw)
    assert x.flags.c_contiguous
    assert_close(x, ref, dtype, mag, "x")


@pytest.mark.parametrize("case", UNFOLD_CASES, ids=[c[0] for c in UNFOLD_CASES])
def test_col2im_of_im2col_counts_windows(case, dtype, rng):
    shape, kw = _unfold_args(case)
    # small integers: every sum is exact in either dtype
    x = rng.integers(-8, 9, size=shape).astype(dtype)
    back = ak.col2im(ak.im2col(x, **kw), shape[2:], **kw)
    count = window_count_ref(shape[2:], **kw)
    assert back.dtype == dtype
    assert np.array_equal(back, x * count[None, None].astype(dtype))
    # and with non-integer values, within rounding
    xr = randn(rng, shape, dtype)
    back = ak.col2im(ak.im2col(xr, **kw), shape[2:], **kw)
    assert_close(back, xr.astype(np.float64) * count, dtype)


def test_col2im_int_output_size(rng):
    cols = randn(rng, (2, 3 * 4, 16), np.float64)
    a = ak.col2im(cols, 5, 2)
    b = ak.col2im(cols, (5, 5), (2, 2))
    assert a.shape == (2, 3, 5, 5)
    assert np.array_equal(a, b)
    assert_close(a, fold_ref(cols, 5, 2), np.float64)


def test_col2im_uncovered_pixels_are_zero(rng):
    # stride 3 with a 2x2 kernel leaves every third row/column uncovered
    cols = randn(rng, (1, 4, 9), np.float64)
    x = ak.col2im(cols, (8, 8), 2, stride=3)
    count = window_count_ref((8, 8), 2, stride=3)
    assert (count == 0).any()
    assert np.array_equal(x[0, 0][count == 0], np.zeros(int((count == 0).sum())))
    assert_close(x, fold_ref(cols, (8, 8), 2, stride=3), np.float64)


def test_im2col_large_parallel(rng):
    """Big enough for the parallel region; still an exact copy."""
    x = randn(rng, (3, 8, 20, 20), np.float32)
    kw = dict(kernel_size=3, stride=(1, 2), padding=1, dilation=(2, 1))
    assert np.array_equal(ak.im2col(x, **kw), unfold_ref(x, **kw))


# ----------------------------------------------------------------------------------
# optional cross-checks against PyTorch
# ----------------------------------------------------------------------------------

TORCH_CONV2D_CASES = [
    ((2, 4, 9, 8), (6, 2, 3, 2), dict(stride=(2, 1), padding=(1, 2), dilation=(2, 1), groups=2)),
    ((1, 3, 5, 5), (3, 1, 3, 3), dict(stride=1, padding=1, dilation=1, groups=3)),
    ((3, 5, 6, 7), (4, 5, 1, 1), dict(stride=1, padding=0, dilation=1, groups=1)),
    ((0, 2, 4, 4), (2, 2, 2, 2), dict(stride=1, padding=0, dilation=1, groups=1)),
]


@pytest.mark.parametrize("x_shape,w_shape,geom", TORCH_CONV2D_CASES)
def test_conv2d_vs_torch(x_shape, w_shape, geom, dtype, rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = randn(rng, x_shape, dtype)
    w = randn(rng, w_shape, dtype)
    b = randn(rng, (w_shape[0],), dtype)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = F.conv2d(tx, tw, tb, **geom)
    y = ak.conv2d_forward(x, w, b, **geom)
    mag = conv2d_ref(_abs(x), _abs(w), _abs(b), **geom)
    assert_close(y, ty.detach().numpy().astype(np.float64), dtype, mag, "y")
    gy = randn(rng, y.shape, dtype)
    ty.backward(torch.tensor(gy))
    grads = ak.conv2d_backward(gy, x, w, **geom)
    mags = conv2d_backward_ref(_abs(gy), _abs(x), _abs(w), **geom)
    for got, t, mag, name in zip(grads, (tx, tw, tb), mags, ("grad_x", "grad_w", "grad_b")):
        ref = np.zeros(t.shape) if t.grad is None else t.grad.numpy().astype(np.float64)
        assert_close(got, ref, dtype, mag, name)


def test_conv1d_vs_torch(dtype, rng):
    torch = pytest.importorskip("torch")
    geom = dict(stride=2, padding=2, dilation=2, groups=2)
    x = randn(rng, (3, 4, 13), dtype)
    w = randn(rng, (6, 2, 3), dtype)
    b = randn(rng, (6,), dtype)
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.conv1d(tx, tw, tb, **geom)
    y = ak.conv1d_forward(x, w, b, **geom)
    assert_close(y, ty.detach().numpy().astype(np.float64), dtype,
                 conv1d_ref(_abs(x), _abs(w), _abs(b), **geom))
    gy = randn(rng, y.shape, dtype)
    ty.backward(torch.tensor(gy))
    grads = ak.conv1d_backward(gy, x, w, **geom)
    mags = conv1d_backward_ref(_abs(gy), _abs(x), _abs(w), **geom)
    for got, t, mag in zip(grads, (tx, tw, tb), mags):
        assert_close(got, t.grad.numpy().astype(np.float64), dtype, mag)


@pytest.mark.parametrize("case", UNFOLD_CASES[:8], ids=[c[0] for c in UNFOLD_CASES[:8]])
def test_unfold_fold_vs_torch(case, dtype, rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    shape, kw = _unfold_args(case)
    x = randn(rng, shape, dtype)
    assert np.array_equal(ak.im2col(x, **kw), F.unfold(torch.tensor(x), **kw).numpy())
    cols = randn(rng, unfold_ref(x, **kw).shape, dtype)
    ref = F.fold(torch.tensor(cols.astype(np.float64)), shape[2:], **kw).numpy()
    mag = fold_ref(np.abs(cols.astype(np.float64)), shape[2:], **kw)
    assert_close(ak.col2im(cols, shape[2:], **kw), ref, dtype, mag)
