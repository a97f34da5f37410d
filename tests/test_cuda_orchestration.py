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
from adlkernels import _adlk, _cuda
from adlkernels import nn as ak_nn
from adlkernels import norm as ak_norm
from adlkernels import rnn as ak_rnn
from adlkernels import optim as ak_optim
from adlkernels._backend import cuda_module
from reference import conv2d_backward_ref, conv2d_ref

if cuda_module() is None:
    pytest.skip("the CUDA extension is not built (its host-side sizing functions are used)",
                allow_module_level=True)


def _sigmoid(v):
    return 1 / (1 + np.exp(-v))


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
        self.t[db].reshape(-1)[...] = self.t[dy].reshape(n, c, length).sum(axis=(0, 2))

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


    # optimizers: the CPU module's function of the same name on the arrays behind the
    # pointers (its keywords are the CUDA module's, less sizes, dtype and stream)
    def _list_op(self, name, sizes, dtype, stream, **kw):
        self.calls.append(name)
        lists = {k: [self.t[p] for p in v] for k, v in kw.items() if isinstance(v, list)}
        for k, v in lists.items():
            assert [a.size for a in v] == sizes, k
            assert all(a.dtype == dtype for a in v), k
        getattr(_adlk, name)(**{**kw, **lists})

    def sgd_step(self, **kw):
        self._list_op("sgd_step", **kw)

    def adagrad_step(self, **kw):
        self._list_op("adagrad_step", **kw)

    def rmsprop_step(self, **kw):
        self._list_op("rmsprop_step", **kw)

    def adam_step(self, **kw):
        self._list_op("adam_step", **kw)

    def total_norm_partials(self, sizes):
        return self.real.total_norm_partials(sizes)

    def total_norm(self, grads, sizes, norm_type, partials, total, dtype, stream):
        self.calls.append("total_norm")
        assert self.t[partials].size == self.real.total_norm_partials(sizes)
        self.t[total][...] = _adlk.grad_norm([self.t[p] for p in grads], norm_type)

    def clip_scale(self, grads, sizes, total, max_norm, dtype, stream):
        self.calls.append("clip_scale")
        coef = dtype.type(max_norm) / (dtype.type(self.t[total]) + dtype.type(1e-6))
        if not coef >= 1:
            _adlk.scale_arrays([self.t[p] for p in grads], float(coef))

    def activation_forward(self, x, y, n, act, slope, dtype, stream):
        self.calls.append("activation_forward")
        assert self.t[x].size == n
        self.t[y][...] = _adlk.activation_forward(self.t[x], act, slope)

    def activation_backward(self, grad_y, saved, grad_x, n, act, slope, dtype, stream):
        self.calls.append("activation_backward")
        self.t[grad_x][...] = _adlk.activation_backward(self.t[grad_y], self.t[saved], act, slope)

    def dropout_forward(self, x, y, mask, n, p, seed, dtype, stream):
        self.calls.append("dropout_forward")
        yy, mm = _adlk.dropout_forward(self.t[x].reshape(-1), p, seed)
        self.t[y][...], self.t[mask][...] = yy.reshape(self.t[y].shape), mm.reshape(self.t[y].shape)

    def dropout_backward(self, grad_y, mask, grad_x, n, p, dtype, stream):
        self.calls.append("dropout_backward")
        self.t[grad_x][...] = _adlk.dropout_backward(self.t[grad_y].reshape(-1), self.t[mask].reshape(-1),
                                                     p).reshape(self.t[grad_x].shape)

    # batch and layer norm: the CPU module's functions, the results copied behind the pointers
    def batchnorm_workspace(self, *args):
        return self.real.batchnorm_workspace(*args)

    def layernorm_workspace(self, *args):
        return self.real.layernorm_workspace(*args)

    def _out(self, ptrs, values):
        for p, v in zip(ptrs, values):
            self.t[p][...] = v.reshape(self.t[p].shape)

    def batchnorm_forward(self, x, weight, bias, running_mean, running_var, y, save_mean, save_invstd,
                          workspace, N, C, S, training, momentum, eps, dtype, stream):
        self.calls.append("batchnorm_forward")
        assert self.t[workspace].size == self.real.batchnorm_workspace(N, C, S)
        opt = lambda p: self.t[p] if p else None  # noqa: E731
        self._out((y, save_mean, save_invstd),
                  _adlk.batchnorm_forward(self.t[x].reshape(N, C, S), opt(weight), opt(bias), opt(running_mean),
                                          opt(running_var), training, momentum, eps))

    def batchnorm_backward(self, grad_y, x, weight, save_mean, save_invstd, grad_x, grad_weight, grad_bias,
                           workspace, N, C, S, training, dtype, stream):
        self.calls.append("batchnorm_backward")
        assert self.t[workspace].size == self.real.batchnorm_workspace(N, C, S)
        self._out((grad_x, grad_weight, grad_bias),
                  _adlk.batchnorm_backward(self.t[grad_y].reshape(N, C, S), self.t[x].reshape(N, C, S),
                                           self.t[weight] if weight else None, self.t[save_mean],
                                           self.t[save_invstd], training))

    def layernorm_forward(self, x, weight, bias, y, mean, rstd, rows, D, eps, dtype, stream):
        self.calls.append("layernorm_forward")
        opt = lambda p: self.t[p] if p else None  # noqa: E731
        self._out((y, mean, rstd), _adlk.layernorm_forward(self.t[x], opt(weight), opt(bias), eps))

    def layernorm_backward(self, grad_y, x, mean, rstd, weight, grad_x, grad_weight, grad_bias, workspace,
                           rows, D, dtype, stream):
        self.calls.append("layernorm_backward")
        assert self.t[workspace].size == self.real.layernorm_workspace(rows, D)
        self._out((grad_x, grad_weight, grad_bias),
                  _adlk.layernorm_backward(self.t[grad_y], self.t[x], self.t[mean], self.t[rstd],
                                           self.t[weight] if weight else None))

    # recurrent steps: the cell equations written out in numpy (the kernels themselves are
    # checked in tests/cuda_emu)
    def lstm_step(self, gates, rec, c_prev, c_next, h_next, B, H, ldh, dtype, stream):
        self.calls.append("lstm_step")
        g = self.t[gates] + (self.t[rec] if rec else 0)
        i, f, gg, o = _sigmoid(g[:, :H]), _sigmoid(g[:, H:2 * H]), np.tanh(g[:, 2 * H:3 * H]), _sigmoid(g[:, 3 * H:])
        c = f * self.t[c_prev] + i * gg
        self.t[gates][...] = np.concatenate([i, f, gg, o], axis=1)
        self.t[c_next][...] = c
        self.t[h_next][...] = o * np.tanh(c)

    def lstm_step_backward(self, gates, c_prev, c_cur, grad_y, dh, dc, dG, B, H, ldgy, dtype, stream):
        self.calls.append("lstm_step_backward")
        g = self.t[gates]
        i, f, gg, o = g[:, :H], g[:, H:2 * H], g[:, 2 * H:3 * H], g[:, 3 * H:]
        tc = np.tanh(self.t[c_cur])
        d_h = self.t[dh] + (self.t[grad_y] if grad_y else 0)
        d_c = self.t[dc] + d_h * o * (1 - tc * tc)
        self.t[dG][...] = np.concatenate([d_c * gg * i * (1 - i), d_c * self.t[c_prev] * f * (1 - f),
                                          d_c * i * (1 - gg * gg), d_h * tc * o * (1 - o)], axis=1)
        self.t[dc][...] = d_c * f

    def gru_step(self, gi, gh, h, hn, h_next, B, H, dtype, stream):
        self.calls.append("gru_step")
        a, q = self.t[gi], self.t[gh]
        r = _sigmoid(a[:, :H] + q[:, :H])
        z = _sigmoid(a[:, H:2 * H] + q[:, H:2 * H])
        n = np.tanh(a[:, 2 * H:] + r * q[:, 2 * H:])
        self.t[hn][...] = q[:, 2 * H:]
        self.t[h_next][...] = (1 - z) * n + z * self.t[h]
        a[...] = np.concatenate([r, z, n], axis=1)

    def gru_step_backward(self, gates, hn, h, grad_h_next, dgi, dgh, grad_h, B, H, dtype, stream):
        self.calls.append("gru_step_backward")
        g, d = self.t[gates], self.t[grad_h_next]
        r, z, n = g[:, :H], g[:, H:2 * H], g[:, 2 * H:]
        dan = d * (1 - z) * (1 - n * n)
        dar = dan * self.t[hn] * r * (1 - r)
        daz = d * (self.t[h] - n) * z * (1 - z)
        self.t[dgi][...] = np.concatenate([dar, daz, dan], axis=1)
        self.t[dgh][...] = np.concatenate([dar, daz, dan * r], axis=1)
        self.t[grad_h][...] = d * z

    # additive attention, from its definition
    def attention_scores(self, e, qp, v, scores, B, T, A, dtype, stream):
        self.calls.append("attention_scores")
        ev = np.tanh(self.t[e].reshape(T, B, A) + self.t[qp][None])
        self.t[e][...] = ev.reshape(self.t[e].shape)
        self.t[scores][...] = (ev @ self.t[v]).T

    def attention_softmax_context(self, weights, mask, keys, context, B, T, Dk, dtype, stream):
        self.calls.append("attention_softmax_context")
        s = self.t[weights]
        keep = self.t[mask] if mask else np.ones(s.shape, bool)
        ex = np.where(keep, np.exp(np.where(keep, s, -np.inf) - np.where(keep, s, -np.inf).max(axis=1, keepdims=True)), 0)
        w = ex / ex.sum(axis=1, keepdims=True)
        self.t[weights][...] = w
        self.t[context][...] = np.einsum("bt,tbd->bd", w, self.t[keys])

    def attention_backward_pointwise(self, grad_context, grad_weights, keys, weights, e, v, dscore, grad_keys,
                                     da, B, T, Dk, A, dtype, stream):
        self.calls.append("attention_backward_pointwise")
        w, gc, k = self.t[weights], self.t[grad_context], self.t[keys]
        dw = np.einsum("bd,tbd->bt", gc, k) + (self.t[grad_weights] if grad_weights else 0)
        dw = np.where(w == 0, 0, dw)
        ds = np.where(w == 0, 0, w * (dw - (w * dw).sum(axis=1, keepdims=True)))
        self.t[dscore][...] = ds
        self.t[grad_keys][...] = (w.T[:, :, None] * gc[None]).reshape(self.t[grad_keys].shape)
        ev = self.t[e].reshape(T, B, A)
        self.t[da][...] = (ds.T[:, :, None] * self.t[v] * (1 - ev * ev)).reshape(self.t[da].shape)

    def softmax_forward(self, x, y, rows, K, log, dtype, stream):
        self.calls.append("softmax_forward")
        self.t[y][...] = _adlk.softmax_forward(self.t[x].reshape(rows, K), log).reshape(self.t[y].shape)

    def softmax_backward(self, grad_y, y, grad_x, rows, K, log, dtype, stream):
        self.calls.append("softmax_backward")
        self.t[grad_x][...] = _adlk.softmax_backward(self.t[grad_y].reshape(rows, K),
                                                     self.t[y].reshape(rows, K), log).reshape(self.t[y].shape)

    def softmax_cross_entropy(self, logits, targets, grad, row_loss, B, K, ignore_index, grad_scale,
                              dtype, stream):
        self.calls.append("softmax_cross_entropy")
        x, t = self.t[logits], self.t[targets]
        kept = int((t != ignore_index).sum())
        assert grad_scale in (1.0, 1.0 / kept if kept else 0.0)
        red = _adlk.Reduction.sum if grad_scale == 1.0 and kept != 1 else _adlk.Reduction.mean
        self.t[grad][...] = _adlk.softmax_cross_entropy(x, t, red, ignore_index)[1]
        self.t[row_loss][...] = _adlk.softmax_cross_entropy(x.astype(np.float64), t, _adlk.Reduction.none,
                                                            ignore_index)[0]

    def sum_doubles(self, values, n, divisor, total, stream):
        self.calls.append("sum_doubles")
        with np.errstate(invalid="ignore", divide="ignore"):
            self.t[total][...] = np.float64(self.t[values][:n].sum()) / np.float64(divisor)

    def loss_partials(self, n):
        return self.real.loss_partials(n)

    def elementwise_loss(self, pred, target, grad, loss_elems, partials, total, n, kind, reduction,
                         delta, dtype, stream):
        self.calls.append("elementwise_loss")
        assert self.t[partials].size == self.real.loss_partials(n)
        loss, g = _adlk.elementwise_loss(self.t[pred].reshape(-1), self.t[target].reshape(-1), kind,
                                         reduction, delta)
        self.t[grad][...] = g.reshape(self.t[grad].shape)
        if reduction is _adlk.Reduction.none:
            self.t[loss_elems][...] = loss.reshape(self.t[loss_elems].shape)
        else:
            self.t[total][...] = loss


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
    fake_cupy = types.SimpleNamespace(empty=np.empty, zeros=np.zeros, matmul=np.matmul, ones=np.ones,
                                      ascontiguousarray=np.ascontiguousarray, isfinite=np.isfinite,
                                      argmax=np.argmax, asarray=np.asarray)
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


# ---- optimizers, clip_grad_norm, activations, dropout: the public functions routed to the
# CUDA path (on_gpu forced), numpy standing in for cupy: each must call its kernel with the
# arguments the CPU path uses and give the CPU path's bits.


@pytest.fixture
def routed(host_gpu, monkeypatch):
    for mod in (ak_optim, ak_nn, ak_norm, ak_rnn):
        monkeypatch.setattr(mod, "backend_of", lambda fn, arrays: "cuda")
        monkeypatch.setattr(mod, "on_gpu", lambda fn, backend: True)
    return host_gpu


@contextlib.contextmanager
def on_the_cpu(monkeypatch):
    """Inside: the same public calls take the CPU path, for the expected results."""
    with monkeypatch.context() as m:
        for mod in (ak_optim, ak_nn, ak_norm, ak_rnn):
            m.setattr(mod, "on_gpu", lambda fn, backend: False)
        yield


def _lists(rng, shapes, n, dtype):
    return [[np.abs(rng.standard_normal(s)).astype(dtype) for s in shapes] for _ in range(n)]


OPTIM_CASES = [
    ("sgd_step", ("momentum_buffers",), dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("sgd_step", (), dict(lr=0.1, maximize=True)),
    ("adagrad_step", ("state_sums",), dict(lr=0.1, lr_decay=0.01, weight_decay=0.1)),
    ("rmsprop_step", ("square_avgs", "momentum_buffers", "grad_avgs"),
     dict(lr=0.01, momentum=0.5, centered=True, weight_decay=0.1)),
    ("rmsprop_step", ("square_avgs",), dict(lr=0.01, alpha=0.9)),
    ("adam_step", ("exp_avgs", "exp_avg_sqs", "max_exp_avg_sqs"),
     dict(lr=0.01, amsgrad=True, weight_decay=0.1, decoupled_weight_decay=True)),
    ("adam_step", ("exp_avgs", "exp_avg_sqs"), dict(lr=0.01, beta1=0.7, maximize=True)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("fn,states,hyper", OPTIM_CASES)
def test_optimizer_steps_route_to_the_cuda_kernels(routed, monkeypatch, rng, fn, states, hyper, dtype):
    shapes = [(3, 4), (7,), (0,), (2, 2, 2)]
    lists = _lists(rng, shapes, 2 + len(states), dtype)
    # positional: params, grads (and the first states where the signature has them there)
    positional = {"sgd_step": 2, "adagrad_step": 3, "rmsprop_step": 3, "adam_step": 4}[fn]
    def run(ls):
        args = ls[:positional]
        kw = dict(zip(states[positional - 2:], ls[positional:]))
        for step in (1, 2):
            getattr(ak_optim, fn)(*args, step=step, **kw, **hyper)
    want = [[a.copy() for a in lst] for lst in lists]
    with monkeypatch.context() as m:  # the CPU path
        m.setattr(ak_optim, "on_gpu", lambda fn, backend: False)
        run(want)
    routed.calls.clear()
    got = [[a.copy() for a in lst] for lst in lists]
    grads_view = [np.asfortranarray(g) for g in got[1]]  # grads of any layout
    run([got[0], grads_view] + got[2:])
    assert routed.calls == [fn, fn]
    for g, w in zip(got, want):
        for a, b in zip(g, w):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("norm_type", [1.0, 2.0, float("inf")])
@pytest.mark.parametrize("max_norm", [0.5, 1e9])
def test_clip_grad_norm_routes_to_the_cuda_kernels(routed, monkeypatch, rng, norm_type, max_norm):
    grads = [rng.standard_normal(s).astype(np.float32) for s in ((5, 3), (100,), (0,))]
    want = [g.copy() for g in grads]
    with on_the_cpu(monkeypatch):
        total_want = ak_optim.clip_grad_norm(want, max_norm, norm_type)
    total = ak_optim.clip_grad_norm(grads, max_norm, norm_type)
    assert routed.calls == ["total_norm", "clip_scale"]
    assert total.dtype == np.float32 and total.shape == ()
    assert total == total_want
    for a, b in zip(grads, want):
        np.testing.assert_array_equal(a, b)


def test_clip_grad_norm_nonfinite_raises_before_scaling_on_the_cuda_path(routed):
    grads = [np.array([1.0, np.inf]), np.array([3.0])]
    with pytest.raises(RuntimeError, match="non-finite"):
        ak_optim.clip_grad_norm(grads, 1.0, error_if_nonfinite=True)
    assert routed.calls == ["total_norm"]
    assert grads[1][0] == 3.0


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "sigmoid", "tanh"])
def test_activations_route_to_the_cuda_kernels(routed, rng, name, monkeypatch):
    x = rng.standard_normal((4, 5)).astype(np.float32)[:, ::2]  # not contiguous
    fwd, bwd = getattr(ak_nn, f"{name}_forward"), getattr(ak_nn, f"{name}_backward")
    gy = rng.standard_normal(x.shape).astype(np.float32)
    y = fwd(x)
    saved = y if getattr(_adlk.Activation, name).backward_takes_output else x
    gx = bwd(gy, saved)
    assert routed.calls == ["activation_forward", "activation_backward"]
    with on_the_cpu(monkeypatch):
        np.testing.assert_array_equal(y, fwd(x))
        np.testing.assert_array_equal(gx, bwd(gy, saved))


@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_dropout_routes_to_the_cuda_kernels(routed, rng, p, monkeypatch):
    x = rng.standard_normal((3, 7))
    y, mask = ak_nn.dropout_forward(x, p, seed=2**64 - 5)
    gx = ak_nn.dropout_backward(x, mask, p)
    assert routed.calls == ["dropout_forward", "dropout_backward"]
    assert mask.dtype == np.bool_
    with on_the_cpu(monkeypatch):
        y2, mask2 = ak_nn.dropout_forward(x, p, seed=2**64 - 5)
        np.testing.assert_array_equal(y, y2)
        np.testing.assert_array_equal(mask, mask2)
        np.testing.assert_array_equal(gx, ak_nn.dropout_backward(x, mask, p))
    y3, mask3 = ak_nn.dropout_forward(x, p, seed=1, training=False)
    assert mask3.all() and (y3 == x).all()


def _adam_ptrs(**lists):
    base = dict(params=[1 << 20], grads=[2 << 20], exp_avgs=[3 << 20], exp_avg_sqs=[4 << 20],
                max_exp_avg_sqs=None)
    base.update(lists)
    return base


@pytest.mark.parametrize("lists,error", [
    (dict(exp_avgs=[(1 << 20) + 8]), r"adam_step: exp_avgs\[0\] overlaps params\[0\]"),
    (dict(grads=[(3 << 20) + 36]), r"adam_step: exp_avgs\[0\] overlaps grads\[0\]"),
    (dict(params=[(1 << 20) + 2]), r"params\[0\]: expected an aligned device pointer"),
    (dict(params=[0]), r"params\[0\]: expected an aligned device pointer"),
    (dict(exp_avg_sqs=[4 << 20, 5 << 20]), r"exp_avg_sqs: has 2 arrays, params has 1"),
])
def test_cuda_optimizer_binding_rejects_pointers_before_any_launch(lists, error):
    """The CUDA module's own checks (no GPU needed: they raise before anything reaches
    CUDA): alignment, list lengths and the aliasing rule of the CPU module."""
    with pytest.raises(ValueError, match=error):
        cuda_module().adam_step(**_adam_ptrs(**lists), sizes=[10], step=1, lr=1e-3, beta1=0.9,
                                beta2=0.999, eps=1e-8, weight_decay=0.0,
                                decoupled_weight_decay=False, maximize=False,
                                dtype=np.dtype(np.float32), stream=0)


def test_cuda_clip_binding_checks_grads_as_written():
    with pytest.raises(ValueError, match=r"clip_grad_norm: grads\[1\] overlaps grads\[0\]"):
        cuda_module().clip_scale(grads=[1 << 20, (1 << 20) + 4], sizes=[4, 4], total=8 << 20,
                                 max_norm=1.0, dtype=np.dtype(np.float32), stream=0)


@pytest.mark.parametrize("log", [False, True])
def test_softmax_routes_to_the_cuda_kernels(routed, rng, log, monkeypatch):
    x = rng.standard_normal((2, 3, 5))
    gy = rng.standard_normal(x.shape)
    fwd = ak_nn.log_softmax_forward if log else ak_nn.softmax_forward
    bwd = ak_nn.log_softmax_backward if log else ak_nn.softmax_backward
    y = fwd(x)
    gx = bwd(gy, y)
    assert routed.calls == ["softmax_forward", "softmax_backward"]
    with on_the_cpu(monkeypatch):
        np.testing.assert_array_equal(y, fwd(x))
        np.testing.assert_array_equal(gx, bwd(gy, y))
    assert fwd(np.empty((3, 0, 4))).shape == (3, 0, 4)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_routes_to_the_cuda_kernels(routed, rng, reduction, dtype, monkeypatch):
    logits = rng.standard_normal((6, 4)).astype(dtype)
    targets = np.array([0, 3, -100, 1, 2, -100], np.int64)
    loss, grad = ak_nn.softmax_cross_entropy(logits, targets, reduction)
    assert routed.calls[0] == "softmax_cross_entropy"
    with on_the_cpu(monkeypatch):
        want_loss, want_grad = ak_nn.softmax_cross_entropy(logits, targets, reduction)
    assert loss.dtype == dtype and loss.shape == want_loss.shape
    np.testing.assert_allclose(loss, want_loss, rtol=1e-6)
    np.testing.assert_array_equal(grad, want_grad)


def test_cross_entropy_bad_target_raises_before_any_kernel_on_the_cuda_path(routed):
    with pytest.raises(ValueError, match=r"targets: value 7 at \[1\] is outside \[0, 4\)"):
        ak_nn.softmax_cross_entropy(np.zeros((3, 4)), np.array([0, 7, 9]))
    assert routed.calls == []
    loss, _ = ak_nn.softmax_cross_entropy(np.zeros((2, 4)), np.array([-100, -100]))
    assert np.isnan(loss)  # a mean over no rows, as the CPU (and torch)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name", ["mse_loss", "l1_loss", "huber_loss"])
def test_losses_route_to_the_cuda_kernels(routed, rng, name, reduction, monkeypatch):
    p, t = rng.standard_normal((4, 5)), rng.standard_normal((4, 5))
    loss, grad = getattr(ak_nn, name)(p, t, reduction=reduction)
    assert routed.calls == ["elementwise_loss"]
    with on_the_cpu(monkeypatch):
        want_loss, want_grad = getattr(ak_nn, name)(p, t, reduction=reduction)
    assert loss.shape == want_loss.shape and loss.dtype == want_loss.dtype
    np.testing.assert_array_equal(loss, want_loss)
    np.testing.assert_array_equal(grad, want_grad)


# ---- batch and layer norm ----------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5), (2, 3, 4, 5), (0, 3, 4)])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batchnorm_routes_to_the_cuda_kernels(routed, rng, shape, affine, dtype, monkeypatch):
    x = rng.standard_normal(shape).astype(dtype)
    c = shape[1]
    w, b = (rng.standard_normal(c).astype(dtype) for _ in range(2)) if affine else (None, None)
    gy = rng.standard_normal(shape).astype(dtype)

    def run():
        rm, rv = np.zeros(c, dtype), np.ones(c, dtype)
        out = ak_norm.batchnorm_forward(x, w, b, rm, rv, training=True, momentum=0.2)
        back = [ak_norm.batchnorm_backward(gy, x, w, out[1], out[2], training=t) for t in (True, False)]
        ev = ak_norm.batchnorm_forward(x, w, b, rm[::-1].copy()[::-1], rv, training=False)  # strided stats
        return [*out, rm, rv, *back[0], *back[1], *ev]

    got = run()
    assert routed.calls == ["batchnorm_forward", "batchnorm_backward", "batchnorm_backward",
                            "batchnorm_forward"]
    with on_the_cpu(monkeypatch):
        want = run()
    for g, e in zip(got, want):
        assert g.shape == e.shape and g.dtype == e.dtype
        np.testing.assert_array_equal(g, e)


@pytest.mark.parametrize("shape,ns", [((5, 7), 7), ((2, 3, 4), (3, 4)), ((0, 6), 6)])
@pytest.mark.parametrize("affine", [(True, True), (True, False), (False, True), (False, False)])
def test_layernorm_routes_to_the_cuda_kernels(routed, rng, shape, ns, affine, monkeypatch):
    x, gy = rng.standard_normal(shape), rng.standard_normal(shape)
    nshape = (ns,) if isinstance(ns, int) else ns
    w = rng.standard_normal(nshape) if affine[0] else None
    b = rng.standard_normal(nshape) if affine[1] else None

    def run():
        y, mean, rstd = ak_norm.layernorm_forward(x, ns, w, b)
        return [y, mean, rstd, *ak_norm.layernorm_backward(gy, x, ns, mean, rstd, w)]

    got = run()
    assert routed.calls == ["layernorm_forward", "layernorm_backward"]
    with on_the_cpu(monkeypatch):
        want = run()
    for g, e in zip(got, want):
        assert g.shape == e.shape
        np.testing.assert_array_equal(g, e)


def test_cuda_batchnorm_binding_checks_the_running_statistics():
    """The CPU module's aliasing rule for the in-place running statistics, checked by the
    CUDA module before any launch (no GPU needed); eval reads them only."""
    mod = cuda_module()
    args = dict(x=1 << 20, weight=0, bias=0, running_mean=2 << 20, running_var=(2 << 20) + 4, y=3 << 20,
                save_mean=4 << 20, save_invstd=5 << 20, workspace=6 << 20, N=4, C=3, S=2, momentum=0.1,
                eps=1e-5, dtype=np.dtype(np.float32), stream=0)
    with pytest.raises(ValueError, match=r"batchnorm_forward: running_var overlaps running_mean"):
        mod.batchnorm_forward(**args, training=True)
    with pytest.raises(ValueError, match=r"batchnorm_forward: running_mean overlaps x"):
        mod.batchnorm_forward(**{**args, "running_mean": (1 << 20) + 8, "running_var": 7 << 20},
                              training=True)
    with pytest.raises(ValueError, match=r"batchnorm: need N >= 0, C >= 1"):
        mod.batchnorm_forward(**{**args, "C": 0}, training=True)


@pytest.mark.parametrize("b,i,o", [(7, 5, 3), (0, 4, 2), (3, 0, 2), (64, 33, 17)])
def test_linear_routes_to_cublas_and_the_channel_sums(routed, rng, b, i, o, monkeypatch):
    x, w, bias, gy = (rng.standard_normal(s) for s in ((b, i), (o, i), (o,), (b, o)))
    y = ak_nn.linear_forward(x, w, bias)
    grads = ak_nn.linear_backward(gy, x, w)
    assert routed.calls == ["channel_sums"]  # the GEMMs are cupy.matmul's (cuBLAS)
    masked = ak_nn.linear_backward(gy, x, w, (False, True, False))
    assert masked[0] is None and masked[2] is None
    with on_the_cpu(monkeypatch):
        np.testing.assert_allclose(y, ak_nn.linear_forward(x, w, bias), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(ak_nn.linear_forward(x, w), y - bias, rtol=1e-12, atol=1e-12)
        for got, want in zip(grads, ak_nn.linear_backward(gy, x, w)):
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(masked[1], grads[1], rtol=0, atol=0)


# ---- recurrent cells ---------------------------------------------------------------------------


def _close(got, want):
    for g, e in zip(got, want):
        assert (g is None) == (e is None)
        if g is not None:
            assert g.shape == e.shape
            np.testing.assert_allclose(g, e, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("steps,bsz", [(5, 3), (1, 4), (0, 2), (3, 0)])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("bias", [(True, True), (True, False), (False, False)])
def test_lstm_sequence_routes_to_the_step_kernels(routed, rng, steps, bsz, reverse, bias, monkeypatch):
    n_in, hid = 4, 6
    x = rng.standard_normal((steps, bsz, n_in))
    h0, c0 = rng.standard_normal((bsz, hid)), rng.standard_normal((bsz, hid))
    w_ih, w_hh = rng.standard_normal((4 * hid, n_in)) * 0.4, rng.standard_normal((4 * hid, hid)) * 0.4
    b_ih = rng.standard_normal(4 * hid) if bias[0] else None
    b_hh = rng.standard_normal(4 * hid) if bias[1] else None
    gy, ghn, gcn = rng.standard_normal((steps, bsz, hid)), rng.standard_normal((bsz, hid)), rng.standard_normal((bsz, hid))

    def run():
        wide = np.zeros((steps, bsz, 2 * hid))  # y into half of a wider array (a bidirectional layer)
        y, h_n, c_n, cache = ak_rnn.lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse=reverse,
                                                 out=wide[:, :, hid:])
        assert not wide[:, :, :hid].any()
        return [y, h_n, c_n, cache.gates, cache.cells, *ak_rnn.lstm_backward(gy, ghn, gcn, cache),
                *ak_rnn.lstm_backward(None, None, None, cache)]

    got = run()
    if steps and bsz:
        assert routed.calls.count("lstm_step") == steps and routed.calls.count("lstm_step_backward") == 2 * steps
    with on_the_cpu(monkeypatch):
        want = run()
    _close(got, want)



@pytest.mark.parametrize("steps,bsz", [(5, 3), (1, 4), (0, 2), (3, 0)])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("bias", [(True, True), (False, True), (False, False)])
@pytest.mark.parametrize("kind", ["gru", "tanh", "relu"])
def test_gru_and_rnn_sequences_route_to_the_step_kernels(routed, rng, kind, steps, bsz, reverse, bias,
                                                         monkeypatch):
    n_in, hid = 4, 6
    g = 3 if kind == "gru" else 1
    x, h0 = rng.standard_normal((steps, bsz, n_in)), rng.standard_normal((bsz, hid))
    w_ih, w_hh = rng.standard_normal((g * hid, n_in)) * 0.4, rng.standard_normal((g * hid, hid)) * 0.4
    b_ih = rng.standard_normal(g * hid) if bias[0] else None
    b_hh = rng.standard_normal(g * hid) if bias[1] else None
    gy, ghn = rng.standard_normal((steps, bsz, hid)), rng.standard_normal((bsz, hid))
    fwd, bwd = ((ak_rnn.gru_forward, ak_rnn.gru_backward) if kind == "gru" else
                (lambda *a, **k: ak_rnn.rnn_forward(*a, nonlinearity=kind, **k), ak_rnn.rnn_backward))

    def run():
        wide = np.zeros((steps, bsz, 2 * hid))  # y into half of a wider array (a bidirectional layer)
        y, h_n, cache = fwd(x, h0, w_ih, w_hh, b_ih, b_hh, reverse=reverse, out=wide[:, :, hid:])
        assert not wide[:, :, :hid].any()
        extra = [cache.gates, cache.hn] if kind == "gru" else []
        gy_view = np.concatenate([gy, gy], axis=2)[:, :, hid:]  # grad_y as half of a wider gradient
        return [y, h_n, *extra, *bwd(gy, ghn, cache), *bwd(None, None, cache), *bwd(gy_view, None, cache)]

    got = run()
    if steps and bsz:
        step, step_bwd = (("gru_step", "gru_step_backward") if kind == "gru" else
                          ("activation_forward", "activation_backward"))
        assert routed.calls.count(step) == steps and routed.calls.count(step_bwd) == 3 * steps
    with on_the_cpu(monkeypatch):
        want = run()
    _close(got, want)

def test_lstm_and_gru_and_rnn_cells_route_to_the_cuda_path(routed, rng, monkeypatch):
    bsz, n_in, hid = 5, 3, 4
    x, h, c = rng.standard_normal((bsz, n_in)), rng.standard_normal((bsz, hid)), rng.standard_normal((bsz, hid))
    dh, dc = rng.standard_normal((bsz, hid)), rng.standard_normal((bsz, hid))

    def weights(g, bias=(True, True)):
        return (rng.standard_normal((g * hid, n_in)) * 0.4, rng.standard_normal((g * hid, hid)) * 0.4,
                rng.standard_normal(g * hid) if bias[0] else None, rng.standard_normal(g * hid) if bias[1] else None)

    lstm_w, gru_w, gru_w1, rnn_w = weights(4), weights(3), weights(3, (False, True)), weights(1, (True, False))

    def run():
        out = []
        h1, c1, cache = ak_rnn.lstm_cell_forward(x, h, c, *lstm_w)
        out += [h1, c1, *ak_rnn.lstm_cell_backward(dh, dc, cache), *ak_rnn.lstm_cell_backward(None, dc, cache)]
        for w in (gru_w, gru_w1):
            hg, cache = ak_rnn.gru_cell_forward(x, h, *w)
            out += [hg, cache.gates, cache.hn, *ak_rnn.gru_cell_backward(dh, cache),
                    *ak_rnn.gru_cell_backward(None, cache)]
        for nl in ("tanh", "relu"):
            hr, cache = ak_rnn.rnn_cell_forward(x, h, *rnn_w, nonlinearity=nl)
            out += [hr, *ak_rnn.rnn_cell_backward(dh, cache)]
        return out

    got = run()
    assert {"lstm_step", "lstm_step_backward", "gru_step", "gru_step_backward", "activation_forward",
            "activation_backward", "channel_sums"} <= set(routed.calls)
    with on_the_cpu(monkeypatch):
        want = run()
    _close(got, want)


# ---- layers and the demo on the device path --------------------------------------------------


def test_layers_move_between_devices(host_gpu, rng):
    """Module.to: every parameter, gradient and buffer converted by cupy.asarray (numpy's
    here), the cache dropped; a bad device names itself."""
    from adlkernels import layers

    net = layers.Sequential(layers.Sequential(layers.Linear(3, 4, rng=rng), layers.BatchNorm1d(4)),
                            layers.LSTM(4, 2, rng=rng))
    net[0].forward(rng.standard_normal((5, 3)).astype(np.float32))
    converted = []
    host_gpu_asarray = _cuda._cp().asarray

    def record(a):
        converted.append(a)
        return host_gpu_asarray(a)

    _cuda._cp().asarray = record
    try:
        assert net.to("cuda") is net
    finally:
        _cuda._cp().asarray = host_gpu_asarray
    n_params = len(net.params())
    assert len(converted) == 2 * n_params + 2  # params, their gradients, BatchNorm's two buffers
    assert net[0].cache is None and net[0][0].cache is None
    assert net.cpu() is net
    with pytest.raises(ValueError, match="device must be 'cpu' or 'cuda'"):
        net.to("tpu")


@pytest.mark.parametrize("model", ["cnn", "lstm"])
def test_demo_trains_through_the_device_path(host_gpu, model):
    """train(device="gpu") moves the model and data (numpy standing in for cupy) and gives
    the CPU run's results."""
    pytest.importorskip("sklearn")
    from adlkernels import _demo

    kw = dict(epochs=1, batch_size=64, train_limit=128, progress=False, log=None)
    gpu = _demo.train(model, device="gpu", **kw)
    cpu = _demo.train(model, **kw)
    assert gpu["test_accuracy"] == cpu["test_accuracy"] and gpu["test_loss"] == cpu["test_loss"]


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("bsz", [3, 0])
def test_attention_routes_to_the_cuda_path(routed, rng, masked, bsz, monkeypatch):
    steps, dq, dk, att = 5, 4, 3, 6
    q, k = rng.standard_normal((bsz, dq)), rng.standard_normal((steps, bsz, dk))
    wq, wk, v = rng.standard_normal((att, dq)), rng.standard_normal((att, dk)), rng.standard_normal(att)
    mask = None
    if masked:
        mask = rng.random((bsz, steps)) < 0.6
        mask[:, 0] = True
    gc, gw = rng.standard_normal((bsz, dk)), rng.standard_normal((bsz, steps))

    def run():
        ctx, w, cache = ak_rnn.additive_attention_forward(q, k, wq, wk, v, mask)
        return [ctx, w, cache.tanh_act, *ak_rnn.additive_attention_backward(gc, gw, cache),
                *ak_rnn.additive_attention_backward(gc, None, cache)]

    got = run()
    if bsz:
        assert {"attention_scores", "attention_softmax_context", "attention_backward_pointwise",
                "channel_sums"} <= set(routed.calls)
    with on_the_cpu(monkeypatch):
        want = run()
    _close(got, want)


def _embedding_kernels(kernels):
    """The CUDA module's embedding entry points on numpy arrays: the forward gather, and the
    backward from the order it is given (group offsets, then each group summed in that
    order), so that the Python side's sort is what is checked."""
    t = kernels.t

    def forward(indices, weight, y, n, V, D, int32, dtype, stream):
        kernels.calls.append("embedding_forward")
        assert t[indices].dtype == (np.int32 if int32 else np.int64) and t[y].dtype == dtype
        t[y].reshape(n, D)[...] = t[weight][t[indices].reshape(-1)]

    def backward(grad_y, indices, order, offsets, grad_weight, n, V, D, padding_idx, int32, dtype, stream):
        kernels.calls.append("embedding_backward")
        idx, o, gy = t[indices].reshape(-1), t[order], t[grad_y].reshape(n, D)
        assert o.dtype == np.int64 and t[offsets].shape == (V + 1,)
        gw = t[grad_weight]
        gw[...] = 0
        for p in o:
            if idx[p] != padding_idx:
                gw[idx[p]] += gy[p]

    kernels.embedding_forward, kernels.embedding_backward = forward, backward


@pytest.mark.parametrize("idx_dtype", [np.int64, np.int32])
@pytest.mark.parametrize("pad", [None, 2, -1])
def test_embedding_routes_to_the_cuda_kernels(routed, rng, monkeypatch, idx_dtype, pad):
    _embedding_kernels(routed)
    monkeypatch.setattr(_cuda._cp(), "argsort", np.argsort, raising=False)
    idx = rng.integers(0, 6, (4, 9)).astype(idx_dtype)
    idx[0, :4] = 2  # repeated
    w = rng.standard_normal((6, 5)).astype(np.float32)
    gy = (rng.standard_normal((4, 9, 5)) * np.logspace(-5, 5, 9)[:, None]).astype(np.float32)
    y = ak_nn.embedding_forward(idx, w, padding_idx=pad)
    gw = ak_nn.embedding_backward(gy, idx, 6, padding_idx=pad)
    assert routed.calls == ["embedding_forward", "embedding_backward"]
    with on_the_cpu(monkeypatch):
        assert np.array_equal(y, ak_nn.embedding_forward(idx, w))
        want = ak_nn.embedding_backward(gy, idx, 6, padding_idx=pad)
    # bit for bit: the order handed to the kernel is the stable one
    assert gw.dtype == want.dtype and gw.tobytes() == want.tobytes()
    routed.calls.clear()
    assert ak_nn.embedding_forward(np.zeros((0, 3), np.int64), w).shape == (0, 3, 5)
    assert ak_nn.embedding_backward(np.zeros((4, 2, 0), np.float32), idx[:, :2], 6).shape == (6, 0)
    assert routed.calls == []  # nothing to launch


def test_embedding_bad_index_raises_before_any_kernel_on_the_cuda_path(routed):
    _embedding_kernels(routed)
    with pytest.raises(ValueError, match=r"embedding_forward: indices: value 6 at \[4\] is outside \[0, 6\)"):
        ak_nn.embedding_forward(np.array([[0, 1], [2, 3], [6, 0]]), np.zeros((6, 2)))
    with pytest.raises(ValueError, match=r"embedding_backward: indices: value -2 at \[1\]"):
        ak_nn.embedding_backward(np.zeros((2, 2)), np.array([0, -2]), 6)
    assert routed.calls == []
