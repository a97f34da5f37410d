"""The conventions of docs/conventions.md, exercised on the convolution family."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest

import adlkernels as ak
from helpers import _shape_text, names, randn
from reference import conv2d_ref

CONV_NAMES = ["im2col", "col2im", "conv2d_forward", "conv2d_backward", "conv1d_forward",
              "conv1d_backward"]


# ----------------------------------------------------------------------------------
# names and utilities
# ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CONV_NAMES)
def test_names_importable(name):
    top = getattr(ak, name)
    sub = getattr(ak.conv, name)
    assert callable(top)
    assert top is sub
    assert name in ak.__all__


def test_from_imports():
    from adlkernels import conv2d_forward as f1
    from adlkernels.conv import conv2d_forward as f2, conv2d_workspace_bytes  # noqa: F401

    assert f1 is f2


def test_version():
    assert isinstance(ak.__version__, str)
    assert re.match(r"^\d+\.\d+", ak.__version__)


def test_build_info():
    info = ak.build_info()
    assert isinstance(info, dict)
    for key in ("compiler", "openmp", "blas", "cuda"):
        assert key in info, key
    assert isinstance(info["compiler"], str) and info["compiler"]
    assert isinstance(info["blas"], str) and info["blas"]


def test_has_cuda_is_bool():
    assert type(ak.has_cuda()) is bool


def test_num_threads_round_trip(restore_threads):
    original = restore_threads
    assert isinstance(original, int) and original >= 1
    for n in (1, 2, 3):
        ak.set_num_threads(n)
        assert ak.get_num_threads() == n
    ak.set_num_threads(original)
    assert ak.get_num_threads() == original


@pytest.mark.parametrize("bad", [0, -1])
def test_set_num_threads_rejects_nonpositive(bad, restore_threads):
    with pytest.raises(ValueError):
        ak.set_num_threads(bad)
    assert ak.get_num_threads() == restore_threads


# ----------------------------------------------------------------------------------
# dtypes and array types
# ----------------------------------------------------------------------------------


@pytest.mark.parametrize("bad_dtype", [np.int64, np.int32, np.float16, np.complex128, np.bool_])
def test_wrong_dtype_x(bad_dtype, rng):
    x = (randn(rng, (1, 2, 5, 5)) * 3).astype(bad_dtype)
    w = randn(rng, (3, 2, 3, 3))
    with pytest.raises(TypeError) as e:
        ak.conv2d_forward(x, w)
    assert names(str(e.value), "x"), str(e.value)
    with pytest.raises(TypeError) as e:
        ak.im2col(x, 3)
    assert names(str(e.value), "x"), str(e.value)
    with pytest.raises(TypeError) as e:
        ak.conv1d_forward(x[:, :, 0], w[:, :, 0])
    assert names(str(e.value), "x"), str(e.value)


@pytest.mark.parametrize("bad_dtype", [np.int64, np.float16])
def test_wrong_dtype_weight(bad_dtype, rng):
    x = randn(rng, (1, 2, 5, 5), np.float32)
    w = (randn(rng, (3, 2, 3, 3)) * 3).astype(bad_dtype)
    with pytest.raises(TypeError) as e:
        ak.conv2d_forward(x, w)
    assert names(str(e.value), "weight"), str(e.value)


def test_wrong_dtype_cols(rng):
    with pytest.raises(TypeError) as e:
        ak.col2im(np.ones((1, 4, 16), np.int64), (5, 5), 2)
    assert names(str(e.value), "cols"), str(e.value)


@pytest.mark.parametrize("first,second", [(np.float32, np.float64), (np.float64, np.float32)])
def test_mixed_float_dtypes(first, second, rng):
    x = randn(rng, (2, 2, 5, 5), first)
    w = randn(rng, (3, 2, 3, 3), first)
    b = randn(rng, (3,), first)
    gy = randn(rng, (2, 3, 3, 3), first)
    with pytest.raises(TypeError) as e:
        ak.conv2d_forward(x, w.astype(second))
    assert names(str(e.value), "weight"), str(e.value)
    with pytest.raises(TypeError) as e:
        ak.conv2d_forward(x, w, b.astype(second))
    assert names(str(e.value), "bias"), str(e.value)
    with pytest.raises(TypeError) as e:
        ak.conv2d_backward(gy, x.astype(second), w)
    assert names(str(e.value), "x"), str(e.value)
    with pytest.raises(TypeError) as e:
        ak.conv1d_forward(x[:, :, 0], w[:, :, 0].astype(second))
    assert names(str(e.value), "weight"), str(e.value)


def test_no_silent_int_cast_of_bias(rng):
    x = randn(rng, (1, 2, 4, 4))
    w = randn(rng, (3, 2, 3, 3))
    with pytest.raises(TypeError) as e:
        ak.conv2d_forward(x, w, np.arange(3))
    assert names(str(e.value), "bias"), str(e.value)


def test_non_array_inputs(rng):
    x = randn(rng, (1, 2, 4, 4))
    w = randn(rng, (3, 2, 3, 3))
    with pytest.raises(TypeError):
        ak.conv2d_forward(x.tolist(), w)
    with pytest.raises(TypeError):
        ak.conv2d_forward(x, w.tolist())
    with pytest.raises(TypeError):
        ak.conv2d_forward(x, w, [0.0, 1.0, 2.0])
    with pytest.raises(TypeError):
        ak.im2col(x.tolist(), 2)
    with pytest.raises(TypeError):
        ak.col2im(ak.im2col(x, 2).tolist(), (4, 4), 2)
    with pytest.raises(TypeError):
        ak.conv2d_backward(np.zeros((1, 3, 2, 2)).tolist(), x, w)
    with pytest.raises(TypeError):
        ak.conv2d_forward(None, w)


# ----------------------------------------------------------------------------------
# shapes
# ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fn,args,arg,shape", [
    ("conv2d_forward", lambda r: (randn(r, (2, 3, 4)), randn(r, (2, 3, 1, 1))), "x", (2, 3, 4)),
    ("conv2d_forward", lambda r: (randn(r, (1, 2, 3, 4, 5)), randn(r, (2, 2, 1, 1))), "x",
     (1, 2, 3, 4, 5)),
    ("conv2d_forward", lambda r: (randn(r, (1, 2, 5, 5)), randn(r, (3, 2, 3))), "weight",
     (3, 2, 3)),
    ("conv1d_forward", lambda r: (randn(r, (1, 2, 5, 5)), randn(r, (3, 2, 3))), "x",
     (1, 2, 5, 5)),
    ("conv1d_forward", lambda r: (randn(r, (1, 2, 5)), randn(r, (3, 2, 3, 1))), "weight",
     (3, 2, 3, 1)),
    ("im2col", lambda r: (randn(r, (2, 5, 5)), 2), "x", (2, 5, 5)),
    ("col2im", lambda r: (randn(r, (8, 16)), (5, 5), 2), "cols", (8, 16)),
])
def test_wrong_rank(fn, args, arg, shape, rng):
    with pytest.raises(ValueError) as e:
        getattr(ak, fn)(*args(rng))
    msg = str(e.value)
    assert names(msg, arg), msg
    assert _shape_text(shape) in msg, msg
    assert "expected" in msg, msg


def test_wrong_rank_grad_y(rng):
    x, w = randn(rng, (2, 2, 5, 5)), randn(rng, (3, 2, 3, 3))
    gy = randn(rng, (2, 3, 9))
    with pytest.raises(ValueError) as e:
        ak.conv2d_backward(gy, x, w)
    assert names(str(e.value), "grad_y") and "(2, 3, 9)" in str(e.value), str(e.value)


def test_weight_channel_mismatch(rng):
    x = randn(rng, (2, 4, 6, 6))
    w = randn(rng, (8, 3, 3, 3))
    with pytest.raises(ValueError) as e:
        ak.conv2d_forward(x, w)
    msg = str(e.value)
    assert names(msg, "weight") and "(8, 3, 3, 3)" in msg, msg
    # with groups: weight must have C_in / groups channels
    with pytest.raises(ValueError) as e:
        ak.conv2d_forward(x, randn(rng, (8, 4, 3, 3)), groups=2)
    assert names(str(e.value), "weight"), str(e.value)
    with pytest.raises(ValueError) as e:
        ak.conv2d_backward(randn(rng, (2, 8, 4, 4)), x, w)
    assert names(str(e.value), "weight"), str(e.value)
    with pytest.raises(ValueError) as e:
        ak.conv1d_forward(x[:, :, 0], w[:, :, 0])
    assert names(str(e.value), "weight"), str(e.value)


@pytest.mark.parametrize("bias_shape", [(7,), (9,), (8, 1), (1, 8), ()])
def test_bias_wrong_shape(bias_shape, rng):
    x = randn(rng, (2, 4, 6, 6))
    w = randn(rng, (8, 4, 3, 3))
    with pytest.raises(ValueError) as e:
        ak.conv2d_forward(x, w, randn(rng, bias_shape))
    msg = str(e.value)
    assert names(msg, "bias"), msg
    assert _shape_text(bias_shape) in msg, msg
    with pytest.raises(ValueError) as e:
        ak.conv1d_forward(x[:, :, 0], w[:, :, 0], randn(rng, bias_shape))
    assert names(str(e.value), "bias"), str(e.value)


@pytest.mark.parametrize("gy_shape", [(2, 8, 4, 5), (2, 8, 5, 4), (2, 7, 4, 4), (1, 8, 4, 4),
                                      (3, 8, 4, 4)])
def test_grad_y_wrong_shape(gy_shape, rng):
    x = randn(rng, (2, 4, 6, 6))
    w = randn(rng, (8, 4, 3, 3))
    with pytest.raises(ValueError) as e:
        ak.conv2d_backward(randn(rng, gy_shape), x, w)
    msg = str(e.value)
    assert names(msg, "grad_y") and _shape_text(gy_shape) in msg, msg
    assert "(2, 8, 4, 4)" in msg, msg  # the expected shape


def test_conv1d_grad_y_wrong_shape(rng):
    x, w = randn(rng, (2, 4, 9)), randn(rng, (6, 4, 3))
    with pytest.raises(ValueError) as e:
        ak.conv1d_backward(randn(rng, (2, 6, 8)), x, w)
    assert names(str(e.value), "grad_y"), str(e.value)


def test_col2im_wrong_cols_shape(rng):
    # L must match output_size/kernel; rows must be a multiple of kH*kW
    with pytest.raises(ValueError) as e:
        ak.col2im(randn(rng, (1, 8, 15)), (5, 5), 2)
    assert names(str(e.value), "cols") and "(1, 8, 15)" in str(e.value)
    with pytest.raises(ValueError) as e:
        ak.col2im(randn(rng, (1, 7, 16)), (5, 5), 2)
    assert names(str(e.value), "cols")


def test_zero_channel_or_spatial_sizes_rejected(rng):
    w = randn(rng, (2, 1, 1, 1))
    for shape in [(1, 0, 3, 3), (1, 1, 0, 3), (1, 1, 3, 0)]:
        with pytest.raises(ValueError):
            ak.conv2d_forward(np.zeros(shape), w)
        with pytest.raises(ValueError):
            ak.im2col(np.zeros(shape), 1)
    with pytest.raises(ValueError):
        ak.conv2d_forward(np.zeros((1, 1, 3, 3)), np.zeros((0, 1, 1, 1)))


# ----------------------------------------------------------------------------------
# hyper-parameters
# ----------------------------------------------------------------------------------

X4 = (2, 4, 7, 7)
W4 = (6, 4, 3, 3)


@pytest.mark.parametrize("kwargs", [
    dict(stride=0), dict(stride=(1, 0)), dict(stride=-1),
    dict(padding=-1), dict(padding=(0, -2)),
    dict(dilation=0), dict(dilation=(0, 1)),
    dict(groups=0), dict(groups=-2), dict(groups=3),
    dict(stride=(1, 1, 1)),
], ids=str)
def test_conv2d_bad_hyperparameters(kwargs, rng):
    x, w = randn(rng, X4), randn(rng, W4)
    with pytest.raises(ValueError) as e:
        ak.conv2d_forward(x, w, **kwargs)
    (arg,) = kwargs
    assert names(str(e.value), arg), str(e.value)
    with pytest.raises(ValueError):
        ak.conv2d_backward(randn(rng, (2, 6, 5, 5)), x, w, **kwargs)


def test_groups_not_dividing_output_channels(rng):
    x = randn(rng, (1, 4, 5, 5))
    with pytest.raises(ValueError):
        ak.conv2d_forward(x, randn(rng, (3, 2, 3, 3)), groups=2)


@pytest.mark.parametrize("kwargs", [dict(stride=0), dict(padding=-1), dict(dilation=0),
                                    dict(groups=0), dict(groups=3)], ids=str)
def test_conv1d_bad_hyperparameters(kwargs, rng):
    x, w = randn(rng, (2, 4, 9)), randn(rng, (6, 4, 3))
    with pytest.raises(ValueError):
        ak.conv1d_forward(x, w, **kwargs)
    with pytest.raises(ValueError):
        ak.conv1d_backward(randn(rng, (2, 6, 7)), x, w, **kwargs)


@pytest.mark.parametrize("kwargs", [dict(kernel_size=0), dict(kernel_size=2, stride=0),
                                    dict(kernel_size=2, padding=-1),
                                    dict(kernel_size=2, dilation=0),
                                    dict(kernel_size=(2, 0))], ids=str)
def test_im2col_col2im_bad_hyperparameters(kwargs, rng):
    with pytest.raises(ValueError):
        ak.im2col(randn(rng, (1, 2, 5, 5)), **kwargs)
    with pytest.raises(ValueError):
        ak.col2im(randn(rng, (1, 8, 16)), (5, 5), **kwargs)


def test_kernel_larger_than_padded_input(rng):
    x = randn(rng, (1, 2, 4, 5))
    with pytest.raises(ValueError):
        ak.conv2d_forward(x, randn(rng, (3, 2, 5, 3)))
    with pytest.raises(ValueError):
        ak.conv2d_forward(x, randn(rng, (3, 2, 7, 3)), padding=1)
    with pytest.raises(ValueError):  # dilation makes the kernel span 5 > 4
        ak.conv2d_forward(x, randn(rng, (3, 2, 3, 3)), dilation=2)
    ak.conv2d_forward(x, randn(rng, (3, 2, 6, 3)), padding=1)  # exactly fits: fine
    with pytest.raises(ValueError):
        ak.conv2d_backward(randn(rng, (1, 3, 1, 3)), x, randn(rng, (3, 2, 5, 3)))
    with pytest.raises(ValueError):
        ak.conv1d_forward(x[:, :, 0], randn(rng, (3, 2, 6)))
    with pytest.raises(ValueError):
        ak.im2col(x, (5, 2))
    with pytest.raises(ValueError):
        ak.col2im(randn(rng, (1, 10, 1)), (4, 5), (5, 2))


@pytest.mark.parametrize("arg", ["stride", "padding", "dilation", "groups"])
def test_bool_hyperparameter_is_type_error(arg, rng):
    x, w = randn(rng, X4), randn(rng, W4)
    with pytest.raises(TypeError) as e:
        ak.conv2d_forward(x, w, **{arg: True})
    assert names(str(e.value), arg), str(e.value)
    if arg != "groups":
        with pytest.raises(TypeError):
            ak.conv2d_forward(x, w, **{arg: (1, True)})
        with pytest.raises(TypeError):
            ak.im2col(x, 2, **{arg: True})
    else:
        with pytest.raises(TypeError):
            ak.im2col(x, True)


@pytest.mark.parametrize("value", [1.0, 2.5, "1", None])
def test_non_int_hyperparameter_is_type_error(value, rng):
    x, w = randn(rng, X4), randn(rng, W4)
    with pytest.raises(TypeError):
        ak.conv2d_forward(x, w, stride=value)


def test_int_and_pair_and_numpy_ints_agree(rng):
    x, w = randn(rng, (2, 4, 9, 9)), randn(rng, (6, 4, 3, 3))
    a = ak.conv2d_forward(x, w, stride=2, padding=1, dilation=2)
    b = ak.conv2d_forward(x, w, stride=(2, 2), padding=[1, 1], dilation=(2, 2))
    c = ak.conv2d_forward(x, w, stride=np.int64(2), padding=np.int32(1), dilation=(np.int64(2), 2))
    assert np.array_equal(a, b) and np.array_equal(a, c)


def test_output_mask_validation(rng):
    x, w = randn(rng, (1, 2, 4, 4)), randn(rng, (3, 2, 3, 3))
    gy = randn(rng, (1, 3, 2, 2))
    with pytest.raises((TypeError, ValueError)):
        ak.conv2d_backward(gy, x, w, output_mask=(True, True))
    with pytest.raises((TypeError, ValueError)):
        ak.conv2d_backward(gy, x, w, output_mask=True)


# ----------------------------------------------------------------------------------
# strides, determinism, outputs, inputs untouched
# ----------------------------------------------------------------------------------


def _noncontiguous_variants(a):
    """Views of arrays equal to a with other memory layouts."""
    out = [np.asfortranarray(a)]
    # transposed view: the last axis first in memory
    t = np.ascontiguousarray(np.moveaxis(a, -1, 0))
    out.append(np.moveaxis(t, 0, -1))
    # slice with steps of a bigger array
    big = np.zeros(tuple(2 * s for s in a.shape), a.dtype)
    big[tuple(slice(None, None, 2) for _ in a.shape)] = a
    out.append(big[tuple(slice(None, None, 2) for _ in a.shape)])
    # negative strides
    rev = np.ascontiguousarray(a[..., ::-1])[..., ::-1]
    out.append(rev)
    for v in out:
        assert np.array_equal(v, a)
        assert not v.flags.c_contiguous
    return out


def test_noncontiguous_conv2d(dtype, rng):
    x = randn(rng, (2, 4, 7, 6), dtype)
    w = randn(rng, (6, 2, 3, 2), dtype)
    b = randn(rng, (6,), dtype)
    geom = dict(stride=(2, 1), padding=1, dilation=(1, 2), groups=2)
    y = ak.conv2d_forward(x, w, b, **geom)
    gy = randn(rng, y.shape, dtype)
    grads = ak.conv2d_backward(gy, x, w, **geom)
    for xv, wv, gyv in zip(_noncontiguous_variants(x), _noncontiguous_variants(w),
                           _noncontiguous_variants(gy)):
        assert np.array_equal(ak.conv2d_forward(xv, w, b, **geom), y)
        assert np.array_equal(ak.conv2d_forward(x, wv, b, **geom), y)
        assert np.array_equal(ak.conv2d_forward(xv, wv, b, **geom), y)
        for got, ref in zip(ak.conv2d_backward(gyv, xv, wv, **geom), grads):
            assert np.array_equal(got, ref)
    bv = np.zeros(12, dtype)
    bv[::2] = b
    assert np.array_equal(ak.conv2d_forward(x, w, bv[::2], **geom), y)
    # and the result is right (not merely self-consistent)
    ref = conv2d_ref(x, w, b, **geom)
    np.testing.assert_allclose(y, ref, rtol=1e-4 if dtype == np.float32 else 1e-10,
                               atol=1e-4 if dtype == np.float32 else 1e-10)


def test_noncontiguous_pointwise(rng):
    x = randn(rng, (3, 4, 5, 6))
    w = randn(rng, (2, 4, 1, 1))
    y = ak.conv2d_forward(x, w)
    gy = randn(rng, y.shape)
    grads = ak.conv2d_backward(gy, x, w)
    for xv, gyv in zip(_noncontiguous_variants(x), _noncontiguous_variants(gy)):
        assert np.array_equal(ak.conv2d_forward(xv, w), y)
        for got, ref in zip(ak.conv2d_backward(gyv, xv, w), grads):
            assert np.array_equal(got, ref)


def test_noncontiguous_conv1d(rng):
    x = randn(rng, (2, 4, 11))
    w = randn(rng, (6, 2, 3))
    geom = dict(stride=2, padding=1, groups=2)
    y = ak.conv1d_forward(x, w, **geom)
    gy = randn(rng, y.shape)
    grads = ak.conv1d_backward(gy, x, w, **geom)
    for xv, wv, gyv in zip(_noncontiguous_variants(x), _noncontiguous_variants(w),
                           _noncontiguous_variants(gy)):
        assert np.array_equal(ak.conv1d_forward(xv, wv, **geom), y)
        for got, ref in zip(ak.conv1d_backward(gyv, xv, wv, **geom), grads):
            assert np.array_equal(got, ref)


def test_noncontiguous_im2col_col2im(dtype, rng):
    x = randn(rng, (2, 3, 7, 8), dtype)
    kw = dict(kernel_size=(3, 2), stride=(2, 1), padding=1, dilation=(1, 2))
    cols = ak.im2col(x, **kw)
    xb = ak.col2im(cols, (7, 8), **kw)
    for xv, cv in zip(_noncontiguous_variants(x), _noncontiguous_variants(cols)):
        assert np.array_equal(ak.im2col(xv, **kw), cols)
        assert np.array_equal(ak.col2im(cv, (7, 8), **kw), xb)


def test_readonly_inputs_accepted(rng):
    x = randn(rng, (1, 2, 5, 5))
    w = randn(rng, (3, 2, 3, 3))
    y = ak.conv2d_forward(x, w)
    x.flags.writeable = False
    w.flags.writeable = False
    assert np.array_equal(ak.conv2d_forward(x, w), y)


def test_repeated_calls_bitwise_identical(rng):
    x = randn(rng, (9, 8, 20, 20))
    w = randn(rng, (8, 4, 3, 3))
    b = randn(rng, (8,))
    geom = dict(padding=1, groups=2)
    y = ak.conv2d_forward(x, w, b, **geom)
    gy = randn(rng, y.shape)
    g = ak.conv2d_backward(gy, x, w, **geom)
    cols = ak.im2col(x, 3, padding=1)
    xb = ak.col2im(cols, (20, 20), 3, padding=1)
    for _ in range(3):
        assert np.array_equal(ak.conv2d_forward(x, w, b, **geom), y)
        for got, ref in zip(ak.conv2d_backward(gy, x, w, **geom), g):
            assert np.array_equal(got, ref)
        assert np.array_equal(ak.im2col(x, 3, padding=1), cols)
        assert np.array_equal(ak.col2im(cols, (20, 20), 3, padding=1), xb)


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_im2col_col2im_thread_count_independent(dt, rng):
    x = randn(rng, (4, 8, 33, 31), dt)
    kw = dict(kernel_size=3, stride=1, padding=1, dilation=(1, 2))
    cols = randn(rng, (4, 8 * 9, 33 * 29), dt)
    original = ak.get_num_threads()
    try:
        results = []
        for n in (1, 2, 3):
            ak.set_num_threads(n)
            assert ak.get_num_threads() == n
            results.append((ak.im2col(x, **kw), ak.col2im(cols, (33, 31), **kw)))
    finally:
        ak.set_num_threads(original)
    assert ak.get_num_threads() == original
    (c1, x1) = results[0]
    for c2, x2 in results[1:]:
        assert np.array_equal(c1, c2)
        assert np.array_equal(x1, x2)


def _all_calls(dt, rng):
    """(name, fn, args, kwargs) of one call of each function on fresh inputs."""
    x = randn(rng, (3, 4, 6, 5), dt)
    w = randn(rng, (6, 2, 3, 3), dt)
    w1 = randn(rng, (4, 4, 1, 1), dt)
    b = randn(rng, (6,), dt)
    gy = randn(rng, (3, 6, 6, 5), dt)
    gy1 = randn(rng, (3, 4, 6, 5), dt)
    x1d, w1d, gy1d = randn(rng, (3, 4, 9), dt), randn(rng, (6, 2, 3), dt), randn(rng, (3, 6, 9), dt)
    cols = randn(rng, (3, 4 * 4, 7 * 4), dt)
    g = dict(padding=1, groups=2)
    return [
        ("conv2d_forward", ak.conv2d_forward, (x, w, b), g),
        ("conv2d_backward", ak.conv2d_backward, (gy, x, w), g),
        ("conv2d_forward_1x1", ak.conv2d_forward, (x, w1, None), {}),
        ("conv2d_backward_1x1", ak.conv2d_backward, (gy1, x, w1), {}),
        ("conv1d_forward", ak.conv1d_forward, (x1d, w1d, b), g),
        ("conv1d_backward", ak.conv1d_backward, (gy1d, x1d, w1d), g),
        ("im2col", ak.im2col, (x, 2), dict(padding=(1, 0))),
        ("col2im", ak.col2im, (cols, (6, 5), 2), dict(padding=(1, 0))),
    ]


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_outputs_new_c_contiguous_and_inputs_untouched(dt, rng):
    for name, fn, args, kwargs in _all_calls(dt, rng):
        before = [None if a is None or not isinstance(a, np.ndarray) else a.copy() for a in args]
        out = fn(*args, **kwargs)
        outs = out if isinstance(out, tuple) else (out,)
        for o in outs:
            assert type(o) is np.ndarray, name
            assert o.dtype == dt, name
            assert o.flags.c_contiguous, name
            for a in args:
                if isinstance(a, np.ndarray):
                    assert not np.shares_memory(o, a), name
        for a, saved in zip(args, before):
            if saved is not None:
                assert np.array_equal(a, saved), f"{name} modified an input"
        # a second call's outputs are distinct arrays
        out2 = fn(*args, **kwargs)
        outs2 = out2 if isinstance(out2, tuple) else (out2,)
        for o, o2 in zip(outs, outs2):
            assert not np.shares_memory(o, o2), name


# ----------------------------------------------------------------------------------
# device arrays
# ----------------------------------------------------------------------------------


class _Device:
    def __init__(self, id):
        self.id = id


class FakeDeviceArray:
    """Looks like a cupy array to adlkernels' dispatch (no memory behind it)."""

    def __init__(self, shape, dtype=np.float32, device=0):
        self.shape = tuple(shape)
        self.ndim = len(shape)
        self.dtype = np.dtype(dtype)
        self.device = _Device(device)
        self.size = int(np.prod(shape))
        self.flags = type("Flags", (), {"c_contiguous": True})()
        self.__cuda_array_interface__ = {
            "shape": self.shape, "typestr": self.dtype.str, "data": (0, False), "version": 3,
            "strides": None,
        }

    def __getitem__(self, key):
        # slicing (as the 1-D convolutions do) gives a view of the sliced shape, as cupy
        view = np.broadcast_to(np.empty((), self.dtype), self.shape)[key]
        return FakeDeviceArray(view.shape, self.dtype, self.device.id)

    def reshape(self, *shape):
        view = np.broadcast_to(np.empty((), self.dtype), self.shape)
        return FakeDeviceArray(view.reshape(*shape).shape, self.dtype, self.device.id)


def test_fake_device_array_mixed_with_numpy_is_value_error(rng):
    x = randn(rng, (1, 2, 5, 5), np.float32)
    w = randn(rng, (3, 2, 3, 3), np.float32)
    fx, fw = FakeDeviceArray(x.shape), FakeDeviceArray(w.shape)
    with pytest.raises(ValueError):
        ak.conv2d_forward(fx, w)
    with pytest.raises(ValueError):
        ak.conv2d_forward(x, fw)
    with pytest.raises(ValueError):
        ak.conv2d_forward(fx, fw, randn(rng, (3,), np.float32))
    with pytest.raises(ValueError):
        ak.conv2d_backward(randn(rng, (1, 3, 3, 3), np.float32), fx, fw)
    with pytest.raises(ValueError):
        ak.conv1d_forward(FakeDeviceArray((1, 2, 5)), w[:, :, 0])


def test_fake_device_arrays_on_two_devices_is_value_error():
    with pytest.raises(ValueError):
        ak.conv2d_forward(FakeDeviceArray((1, 2, 5, 5), device=0),
                          FakeDeviceArray((3, 2, 3, 3), device=1))


def test_fake_device_array_alone_is_runtime_error():
    fx, fw = FakeDeviceArray((1, 2, 5, 5)), FakeDeviceArray((3, 2, 3, 3))
    calls = [
        lambda: ak.conv2d_forward(fx, fw),
        lambda: ak.conv2d_backward(FakeDeviceArray((1, 3, 3, 3)), fx, fw),
        lambda: ak.conv1d_forward(FakeDeviceArray((1, 2, 5)), FakeDeviceArray((3, 2, 3))),
        lambda: ak.im2col(fx, 2),
        lambda: ak.col2im(FakeDeviceArray((1, 8, 16)), (5, 5), 2),
    ]
    for call in calls:
        with pytest.raises(RuntimeError) as e:
            call()
        assert "CUDA" in str(e.value) or "cupy" in str(e.value), str(e.value)
    if not ak.has_cuda():
        # without a device the message says so
        with pytest.raises(RuntimeError, match="CUDA"):
            ak.conv2d_forward(fx, fw)


# ----------------------------------------------------------------------------------
# workspace
# ----------------------------------------------------------------------------------

BLOCK = 1 << 20  # a unit's column matrix plus its output rows, as documented


def _per_thread_bound(x_shape, w_shape, itemsize, stride=1, padding=0, dilation=1, groups=1):
    """... or one output row if that is larger; each thread keeps two such blocks, a
    grad_weight-sized partial and (several images per unit) their staged grad_y."""
    _, c, h, w = x_shape
    c_out, _, kh, kw = w_shape
    wo = (w + 2 * padding - dilation * (kw - 1) - 1) // stride + 1
    row_bytes = (c * kh * kw + c_out) * wo * itemsize
    block = max(BLOCK, row_bytes)
    columns = block // (c * kh * kw * itemsize)  # column-matrix columns in one block
    staging = c_out * columns * itemsize
    partial = c_out * (c // groups) * kh * kw * itemsize
    return 2 * block + partial + staging, partial


WORKSPACE_CASES = [
    ((8, 3, 32, 32), (16, 3, 3, 3), np.float32, dict(padding=1)),
    ((200, 16, 32, 32), (8, 16, 3, 3), np.float64, dict()),
    ((2, 8, 130, 130), (4, 8, 3, 3), np.float64, dict(padding=1)),
    ((64, 4, 9, 9), (4, 2, 2, 2), np.float32, dict(stride=2, groups=2)),
    ((3, 64, 6, 130), (3, 64, 3, 3), np.float64, dict()),
    ((1, 1, 1, 1), (1, 1, 1, 1), np.float32, dict()),
]


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("x_shape,w_shape,dt,geom", WORKSPACE_CASES,
                         ids=["small", "big_batch", "big_image", "groups", "wide_row", "tiny"])
def test_conv2d_workspace_bytes(x_shape, w_shape, dt, geom, threads, restore_threads):
    x = np.zeros(x_shape, dt)
    w = np.zeros(w_shape, dt)
    ak.set_num_threads(threads)
    ws = ak.conv.conv2d_workspace_bytes(x, w, **geom)
    assert type(ws) is int
    assert ws > 0
    per_thread, partial = _per_thread_bound(x_shape, w_shape, np.dtype(dt).itemsize, **geom)
    assert ws <= threads * per_thread
    assert ws >= threads * partial  # at least a grad_weight partial per thread


def test_conv2d_workspace_does_not_grow_with_batch(restore_threads):
    ak.set_num_threads(2)
    w = np.zeros((8, 4, 3, 3), np.float32)
    per_thread, _ = _per_thread_bound((1, 4, 32, 32), w.shape, 4)
    sizes = [ak.conv.conv2d_workspace_bytes(np.zeros((n, 4, 32, 32), np.float32), w)
             for n in (2, 64, 1000, 4096)]
    assert all(0 < s <= 2 * per_thread for s in sizes), sizes
    assert max(sizes) < 4 * (1 << 20)  # a few MiB, while x alone is 64 MiB at N = 4096


def test_conv2d_workspace_scales_with_threads(restore_threads):
    # a large image: work is cut in row blocks whatever the thread count, so every
    # thread keeps the same buffers
    x = np.zeros((8, 16, 66, 66))
    w = np.zeros((8, 16, 3, 3))
    sizes = {}
    for t in (1, 2, 4):
        ak.set_num_threads(t)
        sizes[t] = ak.conv.conv2d_workspace_bytes(x, w)
    assert sizes[2] == 2 * sizes[1] and sizes[4] == 4 * sizes[1], sizes


def test_conv2d_workspace_of_the_packed_grad_weight(restore_threads):
    # float32 with C*kH*kW >= 256 on an AVX2/AVX-512 CPU: grad_weight keeps one image's
    # grad_y packed whole (64 channels x H*W floats) up to 16 MiB; a larger image takes
    # the BLAS path, whose scratch stays a few MiB
    ak.set_num_threads(2)
    w = np.zeros((64, 32, 3, 3), np.float32)
    packed = ak.conv.conv2d_workspace_bytes(np.zeros((1, 32, 180, 180), np.float32), w, padding=1)
    blas = ak.conv.conv2d_workspace_bytes(np.zeros((1, 32, 260, 260), np.float32), w, padding=1)
    assert blas < 8 * (1 << 20), blas  # the packed grad_y alone would be 17.3 MB
    if ak.build_info()["gemm_isa"] != "portable" and os.environ.get("ADLK_CONV_PANELS") != "never":
        assert packed >= 64 * 180 * 180 * 4, packed


def test_conv2d_workspace_validates(rng):
    with pytest.raises(ValueError):
        ak.conv.conv2d_workspace_bytes(randn(rng, (1, 2, 5, 5)), randn(rng, (3, 3, 3, 3)))
    with pytest.raises(TypeError):
        ak.conv.conv2d_workspace_bytes(np.zeros((1, 2, 5, 5), np.int64), randn(rng, (3, 2, 3, 3)))


# ----------------------------------------------------------------------------------
# GIL and huge arguments
# ----------------------------------------------------------------------------------


def _count_while(fn):
    """Runs fn in a thread; counts loop iterations of this thread meanwhile."""
    import threading

    t = threading.Thread(target=fn)
    count = 0
    start = time.perf_counter()
    t.start()
    while t.is_alive():
        count += 1
    return count, time.perf_counter() - start


def test_gil_released_during_kernel(rng, restore_threads):
    ak.set_num_threads(1)  # leave the other core to this thread's counting loop
    x = randn(rng, (8, 32, 48, 48), np.float32)
    w = randn(rng, (32, 32, 3, 3), np.float32)
    calls = 10
    # baseline speed of the counting loop (with a thread holding no GIL: sleeping)
    base, base_s = _count_while(lambda: time.sleep(0.1))
    rate = base / base_s

    def work():
        for _ in range(calls):
            ak.conv2d_forward(x, w, padding=1)

    count, seconds = _count_while(work)
    assert seconds > 0.05, "the kernel ran too fast for this measurement"
    # with the GIL held during the kernel this loop would barely run (a few switch
    # intervals); released, it runs at a good fraction of its normal speed
    assert count > 0.2 * rate * seconds, (count, rate * seconds)


@pytest.mark.parametrize("kwargs", [dict(padding=2**30), dict(padding=2**31),
                                    dict(stride=2**62), dict(dilation=2**40),
                                    dict(padding=2**30, dilation=2**30)], ids=str)
def test_huge_hyperparameters_raise(kwargs, rng):
    # outputs of more than 2**63 bytes (or arguments over the geometry limit): a clean
    # exception, never a crash or an attempt to run
    x, w = randn(rng, (1, 2, 3, 3)), randn(rng, (2, 2, 2, 2))
    with pytest.raises((ValueError, MemoryError)):
        ak.conv2d_forward(x, w, **kwargs)
    with pytest.raises((ValueError, MemoryError)):
        ak.im2col(x, 2, **kwargs)


def test_cli_info_and_selfcheck(capsys):
    # The README's main job: `python -m adlkernels info` and `selfcheck`.
    from adlkernels.__main__ import main

    assert main(["info", "--json"]) == 0
    out = capsys.readouterr().out
    assert '"blas"' in out and '"cuda"' in out
    assert main(["selfcheck"]) == 0
    out = capsys.readouterr().out
    assert "selfcheck: OK" in out and "WRONG" not in out


def test_blas_runs_single_threaded():
    # The kernels give each OpenMP thread its own GEMMs; a multithreaded BLAS inside
    # them would oversubscribe the cores.
    assert ak.build_info()["blas_threads"] == 1


@pytest.mark.parametrize("setting", [None, "3"])
def test_import_starts_no_blas_worker_threads(setting):
    """Importing adlkernels loads its BLAS with OPENBLAS_NUM_THREADS=1, so that no idle
    worker pool polls beside the kernels' OpenMP threads, and leaves the variable as it
    found it (numpy's BLAS, loaded before, keeps the user's setting)."""
    code = (
        "import os, numpy\n"
        "before = len(os.listdir('/proc/self/task'))\n"
        "import adlkernels\n"
        "print(len(os.listdir('/proc/self/task')) - before, os.environ.get('OPENBLAS_NUM_THREADS'))\n"
    )
    if not os.path.isdir("/proc/self/task"):
        pytest.skip("no /proc/self/task to count threads in")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if setting is not None:
        env["OPENBLAS_NUM_THREADS"] = setting
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["0", str(setting)]
