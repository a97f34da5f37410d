"""The GPU convolution's host side (python/adlkernels/_cuda.py) without a GPU.

_cuda.py splits the batch into workspace chunks, lays out the cuBLAS GEMMs of every
group (forward, grad_weight partials summed over images, grad_x columns) and calls the
CUDA module's im2col/col2im/reduction kernels. Here numpy stands in for cupy and the CPU
kernels for the CUDA ones (pointers become keys into a table of the arrays passed), so
the layouts, the chunking and the 1x1 shortcut are checked on every CI run; the CUDA
kernels themselves are tested on a GPU (test_cuda_conv_pool.py).
"""

from __future__ import annotations

import contextlib
import types

import numpy as np
import pytest

import adlkernels as ak
from adlkernels import _cuda
from adlkernels._backend import cuda_module
from reference import conv2d_backward_ref, conv2d_ref

if cuda_module() is None:
    pytest.skip("the CUDA extension is not built (its host-side sizing functions are used)",
                allow_module_level=True)


class _Kernels:
    """The CUDA module's entry points on numpy arrays, through the CPU kernels."""

    def __init__(self, table):
        self.t = table
        self.real = cuda_module()
        self.calls = []

    def conv2d_chunk_images(self, *args):
        return self.real.conv2d_chunk_images(*args)

    def conv2d_workspace_elems(self, *args):
        return self.real.conv2d_workspace_elems(*args)

    @staticmethod
    def _geom(geom):
        return (geom.H, geom.W), dict(kernel_size=geom.kernel_size, stride=geom.stride,
                                      padding=geom.padding, dilation=geom.dilation)

    def im2col(self, x, cols, geom, n0, nb, dtype, stream):
        self.calls.append("im2col")
        _, g = self._geom(geom)
        c = self.t[cols]
        c[...] = ak.im2col(self.t[x][n0:n0 + nb], **g).reshape(c.shape)

    def col2im(self, cols, x, geom, n0, nb, dtype, stream):
        self.calls.append("col2im")
        hw, g = self._geom(geom)
        c = self.t[cols]
        self.t[x][n0:n0 + nb] = ak.col2im(c.reshape(nb, -1, c.shape[-1]), hw, **g)

    def sum_batches(self, partials, out, nb, count, accumulate, dtype, stream):
        self.calls.append("sum_batches")
        o = self.t[out].reshape(-1)
        total = self.t[partials].reshape(nb, count).sum(axis=0)
        o[...] = (o + total) if accumulate else total

    def channel_sums(self, dy, db, n, c, length, dtype, stream):
        self.calls.append("channel_sums")
        self.t[db][...] = self.t[dy].reshape(n, c, length).sum(axis=(0, 2))

    # pooling: the window gather and the plane scatter, both as the CPU scatter (the gather
    # adds in the scatter's order: tests/cuda_emu checks the kernels themselves)
    def maxpool2d_first_outside_window(self, indices, geom, stream):
        self.calls.append("maxpool2d_first_outside_window")
        idx = self.t[indices]
        oh = np.arange(geom.H_out).reshape(-1, 1)
        ow = np.arange(geom.W_out).reshape(1, -1)
        h, w = idx // geom.W, idx % geom.W
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = geom.kernel_size, geom.stride, geom.padding, geom.dilation
        rh, rw = h - (oh * sh - ph), w - (ow * sw - pw)
        inside = ((rh >= 0) & (rh % dh == 0) & (rh // dh < kh) & (rw >= 0) & (rw % dw == 0)
                  & (rw // dw < kw))
        bad = np.flatnonzero(~(inside | (idx == -1)))
        return int(bad[0]) if bad.size else -1

    def first_index_out_of_range(self, indices, count, dst_size, stream):
        idx = self.t[indices].reshape(-1)[:count]
        bad = np.flatnonzero((idx < -1) | (idx >= dst_size))
        return int(bad[0]) if bad.size else -1

    def _scatter(self, dy, indices, dx, hw):
        self.t[dx][...] = ak.maxpool2d_backward(self.t[dy], self.t[indices], hw)

    def maxpool2d_backward(self, dy, indices, dx, geom, dtype, stream):
        self.calls.append("maxpool2d_backward")
        self._scatter(dy, indices, dx, (geom.H, geom.W))

    def maxpool2d_backward_planes(self, dy, indices, dx, planes, count, dst_size, dtype, stream):
        self.calls.append("maxpool2d_backward_planes")
        self._scatter(dy, indices, dx, self.t[dx].shape[2:])


@pytest.fixture
def host_gpu(monkeypatch):
    """_cuda.py running on numpy arrays; returns the fake kernel module."""
    table = {}

    def ptr(a):
        if a is None:
            return 0
        table[id(a)] = a  # views stay alive in the table for the call
        return id(a)

    kernels = _Kernels(table)
    fake_cupy = types.SimpleNamespace(empty=np.empty, zeros=np.zeros, matmul=np.matmul)
    monkeypatch.setattr(_cuda, "_cp", lambda: fake_cupy)
    monkeypatch.setattr(_cuda, "cuda_module", lambda: kernels)
    monkeypatch.setattr(_cuda, "_ptr", ptr)
    monkeypatch.setattr(_cuda, "_stream", lambda: 0)
    monkeypatch.setattr(_cuda, "_OnDevice", lambda a: contextlib.nullcontext())
    return kernels


CASES = [
    ((3, 4, 9, 9), (6, 4, 3, 3), dict(padding=1)),
    ((4, 4, 11, 10), (6, 2, 3, 2), dict(stride=(2, 1), padding=(1, 0), groups=2)),
    ((2, 2, 12, 12), (3, 2, 3, 3), dict(dilation=2, padding=2)),
    ((5, 6, 6, 7), (9, 2, 1, 1), dict(groups=3)),        # 1x1 shortcut, grouped
    ((3, 6, 5, 5), (6, 1, 3, 3), dict(padding=1, groups=6)),
    ((0, 3, 8, 8), (4, 3, 3, 3), dict(padding=1)),
]


def _args(x, w, geom):
    s = geom.get("stride", 1)
    p = geom.get("padding", 0)
    d = geom.get("dilation", 1)
    pair = lambda v: v if isinstance(v, tuple) else (v, v)  # noqa: E731
    return pair(s), pair(p), pair(d), geom.get("groups", 1)


@pytest.mark.parametrize("chunk_bytes", [1, 256 << 20], ids=["one-image-chunks", "one-chunk"])
@pytest.mark.parametrize("xs,ws,geom", CASES)
def test_conv_orchestration_matches_the_definition(host_gpu, monkeypatch, rng, xs, ws, geom,
                                                    chunk_bytes):
    monkeypatch.setattr(_cuda, "WORKSPACE_BYTES", chunk_bytes)
    x, w = rng.standard_normal(xs), rng.standard_normal(ws)
    b = rng.standard_normal(ws[0])
    s, p, d, g = _args(x, w, geom)
    ref = conv2d_ref(x, w, b, **geom)
    y = _cuda.conv2d_forward(x, w, b, s, p, d, g, ref.shape)
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)
    gy = rng.standard_normal(ref.shape)
    gx, gw, gb = _cuda.conv2d_backward(gy, x, w, s, p, d, g, (True, True, True))
    for got, want in zip((gx, gw, gb), conv2d_backward_ref(gy, x, w, **geom)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    pointwise = ws[2:] == (1, 1) and not (set(geom) - {"groups"})
    if xs[0]:
        assert ("im2col" in host_gpu.calls) != pointwise
        assert ("col2im" in host_gpu.calls) != pointwise


@pytest.mark.parametrize("mask", [(True, False, False), (False, True, False), (False, False, True),
                                  (False, False, False)])
def test_conv_orchestration_output_mask(host_gpu, rng, mask):
    x, w = rng.standard_normal((3, 2, 6, 6)), rng.standard_normal((4, 2, 3, 3))
    gy = rng.standard_normal((3, 4, 4, 4))
    got = _cuda.conv2d_backward(gy, x, w, (1, 1), (0, 0), (1, 1), 1, mask)
    want = conv2d_backward_ref(gy, x, w)
    for g, r, m in zip(got, want, mask):
        assert (g is None) == (not m)
        if m:
            np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-12)


POOL_WINDOWS = [((2, 3, 7, 7), (2, 2, 0, 1, False)), ((1, 2, 9, 8), (3, 2, 1, 2, True)),
                ((2, 1, 5, 6), ((3, 2), (1, 2), (1, 0), 1, False))]


@pytest.mark.parametrize("shape,window", POOL_WINDOWS)
def test_maxpool_backward_window_gathers_when_indices_are_in_their_windows(host_gpu, rng, shape, window):
    x = rng.standard_normal(shape)
    y, idx = ak.maxpool2d_forward(x, *window)
    gy = rng.standard_normal(y.shape)
    k, s, p, d, ceil_mode = (tuple(v) if isinstance(v, tuple) else ((v, v) if not isinstance(v, bool) else v)
                             for v in window)
    got = _cuda.maxpool2d_backward_window(gy, idx, x.shape, (k, s, p, d, ceil_mode), "f")
    assert host_gpu.calls == ["maxpool2d_first_outside_window", "maxpool2d_backward"]
    np.testing.assert_array_equal(got, ak.maxpool2d_backward(gy, idx, x.shape))
    # An index inside its plane but outside its window: the plane scatter, same result as the CPU.
    idx2 = idx.copy()
    idx2[0, 0, 0, 0] = x.shape[2] * x.shape[3] - 1
    host_gpu.calls.clear()
    got2 = _cuda.maxpool2d_backward_window(gy, idx2, x.shape, (k, s, p, d, ceil_mode), "f")
    assert host_gpu.calls == ["maxpool2d_first_outside_window", "maxpool2d_backward_planes"]
    np.testing.assert_array_equal(got2, ak.maxpool2d_backward(gy, idx2, x.shape))
