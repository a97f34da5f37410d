"""Hostile-input campaign over every public function of adlkernels.

Each public function has a valid call on small arrays (CALLS). A *case* replaces one
argument of that call with a hostile value: wrong types (None, lists, strings, torch
tensors, objects posing as GPU arrays), wrong dtypes (ints, bools, float16, complex,
byte-swapped, objects), wrong ranks and sizes, zero-size arrays carrying huge dims,
non-contiguous / Fortran-ordered / misaligned / read-only arrays, NaN and infinities,
huge, negative, zero and non-integral geometry, out-of-range hyper-parameters, broken
caches, duplicated and aliased arrays in in-place calls.

Every case must end in one of:
  - a result; where the hostile value means the same thing as the valid one (a view,
    another memory order, a numpy integer), the result must equal the valid call's bit
    for bit (else: "wrong result");
  - TypeError / ValueError / MemoryError (RuntimeError where the API says so) whose
    message starts with the function's name; an in-place call that raises has changed
    nothing.
Anything else is counted: "crash" (the process died), "hang" (no answer within the
time limit), "unclear error" (another exception type, a message that does not start
with the function's name, pybind11's "incompatible function arguments"), "changed on
error" (an in-place call raised after writing).

The cases run in a worker process, so a crash or a hang is counted instead of ending
the campaign: `python tests/hostile.py` runs them all and prints the counts;
tests/test_hostile.py runs them in CI and requires every count but "ok" to be zero.
"""

from __future__ import annotations

import json
import os
import pickle
import queue
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

import adlkernels as ak

CASE_TIMEOUT = 20.0  # seconds without an answer from the worker: a hang

# ---- valid calls ----------------------------------------------------------------


@dataclass
class Call:
    """A valid call: ``make(dtype)`` returns fresh keyword arguments (new arrays each
    time, so in-place functions never see arrays another case changed). ``inplace``
    names the arguments the function writes to."""

    fn: str
    make: Callable[[np.dtype], dict]
    inplace: tuple = ()
    module: Any = ak
    dtypes: tuple = (np.float32, np.float64)


def _r(shape, dtype, seed=0, scale=1.0):
    return (np.random.default_rng(seed + len(shape)).standard_normal(shape) * scale).astype(dtype)


def _pos(shape, dtype, seed=0):
    return np.abs(_r(shape, dtype, seed)) + np.dtype(dtype).type(0.5)


def _conv(dt):
    return dict(x=_r((2, 4, 7, 6), dt), weight=_r((6, 2, 3, 2), dt, 1), bias=_r((6,), dt, 2),
                stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2)


def _conv_bwd(dt):
    kw = _conv(dt)
    y = ak.conv2d_forward(**kw)
    del kw["bias"]
    return dict(grad_y=_r(y.shape, dt, 3), output_mask=(True, True, True), **kw)


def _conv1d(dt):
    return dict(x=_r((2, 4, 9), dt), weight=_r((6, 2, 3), dt, 1), bias=_r((6,), dt, 2),
                stride=2, padding=1, dilation=2, groups=2)


def _conv1d_bwd(dt):
    kw = _conv1d(dt)
    y = ak.conv1d_forward(**kw)
    del kw["bias"]
    return dict(grad_y=_r(y.shape, dt, 3), output_mask=(True, False, True), **kw)


def _im2col(dt):
    return dict(x=_r((2, 3, 6, 5), dt), kernel_size=(3, 2), stride=(2, 1), padding=1, dilation=1)


def _col2im(dt):
    cols = ak.im2col(**_im2col(dt))
    return dict(cols=cols + dt.type(1), output_size=(6, 5), kernel_size=(3, 2), stride=(2, 1),
                padding=1, dilation=1)


def _maxpool(dt):
    return dict(x=_r((2, 3, 7, 8), dt), kernel_size=3, stride=(2, 3), padding=1, dilation=1,
                ceil_mode=True)


def _maxpool_bwd(dt):
    y, idx = ak.maxpool2d_forward(**_maxpool(dt))
    return dict(grad_y=_r(y.shape, dt, 4), indices=idx, input_size=(7, 8))


def _unpool(dt):
    y, idx = ak.maxpool2d_forward(**_maxpool(dt))
    return dict(x=y, indices=idx, output_size=(2, 3, 7, 8))


def _avgpool(dt):
    return dict(x=_r((2, 3, 7, 8), dt), kernel_size=(3, 2), stride=2, padding=1, ceil_mode=True,
                count_include_pad=False)


def _avgpool_bwd(dt):
    kw = _avgpool(dt)
    y = ak.avgpool2d_forward(**kw)
    x = kw.pop("x")
    return dict(grad_y=_r(y.shape, dt, 5), input_size=x.shape, **kw)


B, I, H, T = 3, 4, 5, 4


def _lstm_cell(dt):
    return dict(x=_r((B, I), dt), h=_r((B, H), dt, 1), c=_r((B, H), dt, 2),
                w_ih=_r((4 * H, I), dt, 3), w_hh=_r((4 * H, H), dt, 4), b_ih=_r((4 * H,), dt, 5),
                b_hh=_r((4 * H,), dt, 6))


def _lstm_cell_bwd(dt):
    h, c, cache = ak.lstm_cell_forward(**_lstm_cell(dt))
    return dict(grad_h_next=_r(h.shape, dt, 7), grad_c_next=_r(c.shape, dt, 8), cache=cache)


def _lstm(dt):
    kw = _lstm_cell(dt)
    kw["x"] = _r((T, B, I), dt)
    kw["h0"], kw["c0"] = kw.pop("h"), kw.pop("c")
    return dict(kw, reverse=True, out=None)


def _lstm_bwd(dt):
    y, h, c, cache = ak.lstm_forward(**_lstm(dt))
    return dict(grad_y=_r(y.shape, dt, 7), grad_h_n=_r(h.shape, dt, 8),
                grad_c_n=_r(c.shape, dt, 9), cache=cache)


def _gru_cell(dt):
    return dict(x=_r((B, I), dt), h=_r((B, H), dt, 1), w_ih=_r((3 * H, I), dt, 3),
                w_hh=_r((3 * H, H), dt, 4), b_ih=_r((3 * H,), dt, 5), b_hh=_r((3 * H,), dt, 6))


def _gru_cell_bwd(dt):
    h, cache = ak.gru_cell_forward(**_gru_cell(dt))
    return dict(grad_h_next=_r(h.shape, dt, 7), cache=cache)


def _rnn_cell(dt):
    return dict(x=_r((B, I), dt), h=_r((B, H), dt, 1), w_ih=_r((H, I), dt, 3),
                w_hh=_r((H, H), dt, 4), b_ih=_r((H,), dt, 5), b_hh=_r((H,), dt, 6),
                nonlinearity="relu")


def _rnn_cell_bwd(dt):
    h, cache = ak.rnn_cell_forward(**_rnn_cell(dt))
    return dict(grad_h_next=_r(h.shape, dt, 7), cache=cache)


def _gru(dt):
    kw = _gru_cell(dt)
    kw["x"], kw["h0"] = _r((T, B, I), dt), kw.pop("h")
    return dict(kw, reverse=True, out=None)


def _gru_bwd(dt):
    y, h, cache = ak.gru_forward(**_gru(dt))
    return dict(grad_y=_r(y.shape, dt, 7), grad_h_n=_r(h.shape, dt, 8), cache=cache)


def _rnn(dt):
    kw = _rnn_cell(dt)
    kw["x"], kw["h0"] = _r((T, B, I), dt), kw.pop("h")
    return dict(kw, reverse=False, out=None)


def _rnn_bwd(dt):
    y, h, cache = ak.rnn_forward(**_rnn(dt))
    return dict(grad_y=_r(y.shape, dt, 7), grad_h_n=_r(h.shape, dt, 8), cache=cache)


def _attention(dt):
    mask = np.ones((B, T), bool)
    mask[0, -1] = False
    return dict(query=_r((B, 6), dt), keys=_r((T, B, 5), dt, 1), w_query=_r((7, 6), dt, 2),
                w_key=_r((7, 5), dt, 3), v=_r((7,), dt, 4), mask=mask)


def _attention_bwd(dt):
    ctx, w, cache = ak.additive_attention_forward(**_attention(dt))
    return dict(grad_context=_r(ctx.shape, dt, 5), grad_weights=_r(w.shape, dt, 6), cache=cache)


SHAPES = [(3, 4), (5,), (2, 2, 2)]


def _arrays(dt, seed, positive=False):
    f = _pos if positive else _r
    return [f(s, dt, seed + i) for i, s in enumerate(SHAPES)]


def _sgd(dt):
    return dict(params=_arrays(dt, 0), grads=_arrays(dt, 10), momentum_buffers=_arrays(dt, 20),
                step=2, lr=0.1, momentum=0.9, dampening=0.0, nesterov=True, weight_decay=0.01,
                maximize=False)


def _adagrad(dt):
    return dict(params=_arrays(dt, 0), grads=_arrays(dt, 10), state_sums=_arrays(dt, 20, True),
                step=3, lr=0.1, lr_decay=0.01, weight_decay=0.01, eps=1e-10, maximize=True)


def _rmsprop(dt):
    return dict(params=_arrays(dt, 0), grads=_arrays(dt, 10), square_avgs=_arrays(dt, 20, True),
                step=2, lr=0.01, alpha=0.9, eps=1e-8, weight_decay=0.01, momentum=0.5,
                momentum_buffers=_arrays(dt, 30), centered=True, grad_avgs=_arrays(dt, 40),
                maximize=False)


def _adam(dt):
    return dict(params=_arrays(dt, 0), grads=_arrays(dt, 10), exp_avgs=_arrays(dt, 20),
                exp_avg_sqs=_arrays(dt, 30, True), step=2, lr=1e-3, beta1=0.9, beta2=0.99,
                eps=1e-8, weight_decay=0.01, decoupled_weight_decay=True, amsgrad=True,
                max_exp_avg_sqs=_arrays(dt, 40, True), maximize=False)


def _clip(dt):
    return dict(grads=_arrays(dt, 10), max_norm=0.5, norm_type=2.0, error_if_nonfinite=True)


def _bn(dt):
    return dict(x=_r((4, 3, 2, 5), dt), weight=_r((3,), dt, 1), bias=_r((3,), dt, 2),
                running_mean=_r((3,), dt, 3), running_var=_pos((3,), dt, 4), training=True,
                momentum=0.1, eps=1e-5)


def _bn_bwd(dt):
    kw = _bn(dt)
    y, m, s = ak.batchnorm_forward(**kw)
    return dict(grad_y=_r(y.shape, dt, 5), x=kw["x"], weight=kw["weight"], save_mean=m,
                save_invstd=s, training=True)


def _ln(dt):
    return dict(x=_r((3, 4, 5), dt), normalized_shape=(4, 5), weight=_r((4, 5), dt, 1),
                bias=_r((4, 5), dt, 2), eps=1e-5)


def _ln_bwd(dt):
    kw = _ln(dt)
    y, m, s = ak.layernorm_forward(**kw)
    return dict(grad_y=_r(y.shape, dt, 3), x=kw["x"], normalized_shape=(4, 5), mean=m, rstd=s,
                weight=kw["weight"])


def _dropout(dt):
    return dict(x=_r((3, 7), dt), p=0.3, seed=12345, training=True)


def _dropout_bwd(dt):
    y, mask = ak.dropout_forward(**_dropout(dt))
    return dict(grad_y=_r(y.shape, dt, 1), mask=mask, p=0.3)


def _linear(dt):
    return dict(x=_r((3, 4), dt), weight=_r((5, 4), dt, 1), bias=_r((5,), dt, 2))


def _linear_bwd(dt):
    return dict(grad_y=_r((3, 5), dt, 3), x=_r((3, 4), dt), weight=_r((5, 4), dt, 1),
                output_mask=(True, True, False))


def _unary(dt):
    return dict(x=_r((3, 5), dt))


def _unary_bwd(name):
    def make(dt):
        return {"grad_y": _r((3, 5), dt, 1), name: _r((3, 5), dt) * dt.type(0.5)}
    return make


def _ce(dt):
    return dict(logits=_r((4, 5), dt), targets=np.array([0, 4, -100, 2]), reduction="sum",
                ignore_index=-100)


def _loss(dt):
    return dict(pred=_r((3, 4), dt), target=_r((3, 4), dt, 1), reduction="mean")


def _emb(dt):
    return dict(indices=np.array([[0, 4, 2], [4, 1, 0]]), weight=_r((5, 3), dt), padding_idx=1)


def _emb_bwd(dt):
    return dict(grad_y=_r((2, 3, 3), dt), indices=np.array([[0, 4, 2], [4, 1, 0]]), num_embeddings=5,
                padding_idx=-1)


def _init(dt):
    return dict(shape=(5, 3, 2, 2), rng=np.random.default_rng(0))


CALLS: list[Call] = [
    Call("im2col", _im2col), Call("col2im", _col2im),
    Call("conv2d_forward", _conv), Call("conv2d_backward", _conv_bwd),
    Call("conv1d_forward", _conv1d), Call("conv1d_backward", _conv1d_bwd),
    Call("maxpool2d_forward", _maxpool), Call("maxpool2d_backward", _maxpool_bwd),
    Call("max_unpool2d", _unpool), Call("avgpool2d_forward", _avgpool),
    Call("avgpool2d_backward", _avgpool_bwd),
    Call("lstm_cell_forward", _lstm_cell), Call("lstm_cell_backward", _lstm_cell_bwd),
    Call("lstm_forward", _lstm), Call("lstm_backward", _lstm_bwd),
    Call("gru_cell_forward", _gru_cell), Call("gru_cell_backward", _gru_cell_bwd),
    Call("rnn_cell_forward", _rnn_cell), Call("rnn_cell_backward", _rnn_cell_bwd),
    Call("gru_forward", _gru), Call("gru_backward", _gru_bwd),
    Call("rnn_forward", _rnn), Call("rnn_backward", _rnn_bwd),
    Call("additive_attention_forward", _attention),
    Call("additive_attention_backward", _attention_bwd),
    Call("sgd_step", _sgd, ("params", "momentum_buffers")),
    Call("adagrad_step", _adagrad, ("params", "state_sums")),
    Call("rmsprop_step", _rmsprop, ("params", "square_avgs", "momentum_buffers", "grad_avgs")),
    Call("adam_step", _adam, ("params", "exp_avgs", "exp_avg_sqs", "max_exp_avg_sqs")),
    Call("clip_grad_norm", _clip, ("grads",)),
    Call("batchnorm_forward", _bn, ("running_mean", "running_var")),
    Call("batchnorm_backward", _bn_bwd),
    Call("layernorm_forward", _ln), Call("layernorm_backward", _ln_bwd),
    Call("dropout_forward", _dropout), Call("dropout_backward", _dropout_bwd),
    Call("linear_forward", _linear), Call("linear_backward", _linear_bwd),
    Call("relu_forward", _unary), Call("relu_backward", _unary_bwd("x")),
    Call("leaky_relu_forward", lambda dt: dict(x=_r((3, 5), dt), negative_slope=0.2)),
    Call("leaky_relu_backward", lambda dt: dict(_unary_bwd("x")(dt), negative_slope=0.2)),
    Call("sigmoid_forward", _unary), Call("sigmoid_backward", _unary_bwd("y")),
    Call("tanh_forward", _unary), Call("tanh_backward", _unary_bwd("y")),
    Call("softmax_forward", _unary), Call("softmax_backward", _unary_bwd("y")),
    Call("log_softmax_forward", _unary), Call("log_softmax_backward", _unary_bwd("y")),
    Call("softmax_cross_entropy", _ce),
    Call("mse_loss", _loss), Call("l1_loss", _loss),
    Call("huber_loss", lambda dt: dict(_loss(dt), delta=0.7)),
    Call("embedding_forward", _emb), Call("embedding_backward", _emb_bwd),
    Call("xavier_uniform", lambda dt: dict(_init(dt), gain=1.5), dtypes=(np.float32,)),
    Call("xavier_normal", lambda dt: dict(_init(dt), gain=1.5), dtypes=(np.float32,)),
    Call("he_uniform", _init, dtypes=(np.float32,)),
    Call("he_normal", _init, dtypes=(np.float32,)),
]

# ---- hostile values ---------------------------------------------------------------

SAME = "same"  # must give the valid call's result, bit for bit
ANY = "any"    # a result or a clean error; never a crash, hang or unclear error
ERROR = "error"  # must raise a clean error


class FakeCudaArray:
    """Poses as a cupy array (the attributes dispatch reads, no memory behind it), on a
    machine that may have no GPU."""

    def __init__(self, a):
        self.shape, self.dtype, self.ndim, self.size = a.shape, a.dtype, a.ndim, a.size
        self.flags = type("Flags", (), {"c_contiguous": True})()
        self.device = type("Device", (), {"id": 0})()
        self.__cuda_array_interface__ = {"shape": a.shape, "typestr": a.dtype.str,
                                         "data": (0, False), "version": 3}


def _misaligned(a):
    buf = np.zeros(a.nbytes + 1, np.uint8)
    m = buf[1:].view(a.dtype).reshape(a.shape)
    m[...] = a
    return m


def _noncontig(a):
    big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype) if a.ndim else None
    if big is None:
        return a
    big[..., ::2] = a
    return big[..., ::2]


def _fortran(a):
    return np.asfortranarray(a)


def _readonly(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def _byteswapped(a):
    return a.astype(a.dtype.newbyteorder())


def _huge_empty(shape, zero_at):
    """``shape`` with one axis 0 and another 2**40: an empty array whose dims overflow
    any product taken with another argument's sizes."""
    if len(shape) < 2:
        return (0,)
    s = list(shape)
    s[zero_at], s[1 - zero_at] = 0, 2**40
    return tuple(s)


def array_mutations(a: np.ndarray, written: bool):
    """(label, value, expectation) for an array argument ``a``."""
    dt = a.dtype
    # An array that came through pickle (from a multiprocessing worker): equal dtype,
    # but not numpy's dtype singleton.
    out = [("unpickled", pickle.loads(pickle.dumps(a)), SAME)]
    if written:
        out += [("readonly", _readonly(a), ERROR), ("noncontiguous", _noncontig(a), ERROR),
                ("fortran", _fortran(a), ERROR if a.ndim > 1 and a.shape[0] > 1 and a.shape[1] > 1 else ANY)]
    else:
        out += [("noncontiguous", _noncontig(a), SAME), ("fortran", _fortran(a), SAME),
                ("readonly", _readonly(a), SAME), ("misaligned", _misaligned(a), SAME)]
    out += [
        ("byteswapped", _byteswapped(a), ANY),
        ("None", None, ANY),
        ("list", a.tolist(), ANY),
        ("float", 1.5, ANY),
        ("string", "x", ERROR),
        ("0-d", np.array(1.0, dt), ANY),
        ("extra axis", a[None], ANY),
        ("axis dropped", a.reshape(-1) if a.ndim > 1 else a.reshape(a.shape + (1,)), ANY),
        ("grown", np.resize(a, tuple(s + 1 for s in a.shape)), ANY),
        ("empty", np.zeros((0,) + a.shape[1:], dt), ANY),
        ("huge empty", np.empty(_huge_empty(a.shape, 0), dt), ANY),
        ("huge empty 2", np.empty(_huge_empty(a.shape, 1), dt), ANY),
        ("nan", np.full_like(a, np.nan), ANY),
        ("inf", np.full_like(a, np.inf), ANY),
        ("-inf", np.full_like(a, -np.inf), ANY),
        ("huge values", np.full_like(a, np.finfo(dt).max if dt.kind == "f" else 2**62), ANY),
        ("object", a.astype(object), ANY),
        ("complex", a.astype(np.complex64), ANY),
        ("fake gpu", FakeCudaArray(a), ANY),
    ]
    if dt.kind == "f":
        other = np.float32 if dt == np.float64 else np.float64
        out += [("int64", a.astype(np.int64), ANY), ("int32", a.astype(np.int32), ANY),
                ("bool", a.astype(bool), ANY), ("float16", a.astype(np.float16), ANY),
                ("other float", a.astype(other), ANY)]
    elif dt.kind == "i":
        out += [("int32", a.astype(np.int32), ANY), ("float", a.astype(np.float64), ANY),
                ("uint64", a.astype(np.uint64), ANY), ("min int", np.full_like(a, -2**63), ANY),
                ("max int", np.full_like(a, 2**63 - 1), ANY), ("-1", np.full_like(a, -1), ANY)]
    elif dt.kind == "b":
        out += [("uint8", a.astype(np.uint8), ANY), ("float", a.astype(np.float32), ANY),
                ("all False", np.zeros_like(a), ANY)]
    try:
        import torch

        out.append(("torch tensor", torch.from_numpy(np.ascontiguousarray(a)), ANY))
    except Exception:  # torch missing or the dtype has no torch equivalent
        pass
    return out


INT_HOSTILE = [
    ("0", 0), ("-1", -1), ("2**31", 2**31), ("2**31-1", 2**31 - 1), ("2**62", 2**62),
    ("2**63", 2**63), ("-2**63", -(2**63)), ("2**64", 2**64), ("1.5", 1.5), ("2.0", 2.0),
    ("nan", float("nan")), ("string", "2"), ("None", None), ("True", True),
    ("triple", (1, 1, 1)), ("empty tuple", ()), ("pair of huge", (2**31 - 1, 2**31 - 1)),
    ("pair mixed", (1, 2**31 - 1)), ("pair negative", (1, -1)), ("pair of floats", (1.0, 2.0)),
    ("array", np.array([1, 2])), ("object", object()),
]


def int_mutations(v):
    out = [(label, val, ANY) for label, val in INT_HOSTILE]
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        out.append(("numpy int", np.int64(v), SAME))
        out.append(("numpy int32", np.int32(v), SAME))
    if isinstance(v, tuple) and all(type(i) is int for i in v):
        out.append(("list", list(v), SAME))
        out.append(("numpy ints", tuple(np.int64(i) for i in v), SAME))
    return out


REAL_HOSTILE = [
    ("nan", float("nan")), ("inf", float("inf")), ("-inf", float("-inf")), ("-1", -1.0),
    ("0", 0.0), ("1", 1.0), ("1e308", 1e308), ("-1e-320", -1e-320), ("string", "0.1"),
    ("None", None), ("True", True), ("complex", 1j), ("array", np.array([0.1, 0.2])),
    ("2**70", 2**70),
]


def real_mutations(v):
    out = [(label, val, ANY) for label, val in REAL_HOSTILE]
    out.append(("numpy float", np.float64(v), SAME))
    if float(v) == int(v):
        out.append(("int", int(v), SAME))
    return out


FLAG_HOSTILE = [("None", None, ANY), ("string", "yes", ANY), ("2", 2, ANY),
                ("numpy bool", np.True_, ANY), ("array", np.array([True]), ANY)]

CHOICE_HOSTILE = [("upper", "MEAN", ANY), ("empty", "", ANY), ("None", None, ANY), ("int", 1, ANY),
                  ("bytes", b"mean", ANY), ("other", "bogus", ERROR)]


def list_mutations(arrays: list, written: bool):
    a0 = arrays[0]
    out = [
        ("empty list", [], ANY), ("tuple", tuple(arrays), SAME if not written else ANY),
        ("one array", a0, ANY), ("short", arrays[:-1], ANY), ("long", arrays + [arrays[0].copy()], ANY),
        ("None entry", [None] + arrays[1:], ANY), ("list entry", [a0.tolist()] + arrays[1:], ANY),
        ("generator", (a for a in arrays), ANY), ("dict", {0: a0}, ANY),
        # A written list may not alias itself (the aliasing rule); a read one may.
        ("duplicate", [a0, a0] + arrays[2:], ERROR if written else ANY),
        ("overlapping views", [a0, a0.reshape(-1)[: arrays[1].size].reshape(arrays[1].shape)]
         + arrays[2:], ERROR if written else ANY),
    ]
    for label, val, _ in array_mutations(a0, written):
        out.append((f"[0] {label}", [val] + arrays[1:], ANY))
    return out


def cache_mutations(cache):
    out = [("None", None, ANY), ("tuple", tuple(cache), ANY), ("short tuple", tuple(cache)[:-1], ANY),
           ("dict", cache._asdict(), ANY)]
    for f in cache._fields:
        v = getattr(cache, f)
        if isinstance(v, np.ndarray):
            for label, val, _ in array_mutations(v, False):
                out.append((f"{f} {label}", cache._replace(**{f: val}), ANY))
        else:
            out.append((f"{f} replaced", cache._replace(**{f: np.zeros(3)}), ANY))
    return out


# An init function's shape: sizes whose product overflows, not merely large (a shape of
# 2**31 elements is a valid request for 8 GB).
SHAPE_HOSTILE = [
    ("negative", (5, -3), ANY), ("zero", (5, 0), ANY), ("1-d", (5,), ANY), ("empty", (), ANY),
    ("floats", (5.0, 3.0), ANY), ("nan", (float("nan"), 3), ANY), ("None", None, ANY),
    ("string", "5,3", ANY), ("overflowing", (2**31 - 1,) * 3, ANY), ("2**63", (2**63, 2), ANY),
    ("bool", (True, 3), ANY), ("array", np.array([5, 3]), ANY), ("list", [5, 3, 2, 2], SAME),
    ("numpy ints", (np.int64(5), np.int32(3), 2, 2), SAME),
]


def mutations(call: Call, name: str, value):
    written = name in call.inplace
    if name == "shape":
        return SHAPE_HOSTILE
    if isinstance(value, np.ndarray):
        return array_mutations(value, written)
    if isinstance(value, list):
        return list_mutations(value, written)
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return cache_mutations(value)
    if isinstance(value, bool):
        return FLAG_HOSTILE
    if isinstance(value, str):
        return CHOICE_HOSTILE
    if isinstance(value, (int, tuple)):
        return int_mutations(value)
    if isinstance(value, float):
        return real_mutations(value)
    if value is None:  # an optional array: hostile arrays in its place
        return [(label, val, ANY) for label, val, _ in array_mutations(np.zeros((3, 3)), False)]
    if isinstance(value, np.random.Generator):
        return [("int seed", 3, ANY), ("string", "rng", ANY), ("legacy", np.random.RandomState(0), ANY)]
    return []


@dataclass
class Case:
    index: int
    fn: str
    dtype: str
    arg: str
    label: str
    expect: str


def all_cases() -> list[Case]:
    """Every single-argument mutation of every valid call, in a fixed order."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NaN cast into int arrays, on purpose
        return _all_cases()


def _all_cases() -> list[Case]:
    cases = []
    for call in CALLS:
        for dt in call.dtypes:
            kw = call.make(np.dtype(dt))
            for name, value in kw.items():
                for label, _, expect in mutations(call, name, value):
                    cases.append(Case(len(cases), call.fn, np.dtype(dt).name, name, label, expect))
            for name, written in alias_pairs(call, kw):
                cases.append(Case(len(cases), call.fn, np.dtype(dt).name, name,
                                  f"alias of {written}", ERROR))
    return cases


def _layout(v):
    if isinstance(v, np.ndarray):
        return v.shape
    if isinstance(v, list) and all(isinstance(a, np.ndarray) for a in v):
        return [a.shape for a in v]
    return None


def alias_pairs(call: Call, kw: dict):
    """(argument, written argument) pairs of an in-place call whose values could be the
    same array (or list of arrays): passing one as the other must raise, naming both."""
    for written in call.inplace:
        for name, value in kw.items():
            if name != written and _layout(value) is not None and _layout(value) == _layout(kw[written]):
                yield name, written


# ---- running one case ---------------------------------------------------------------

CALLS_BY_FN = {c.fn: c for c in CALLS}
ALLOWED = (TypeError, ValueError, MemoryError)


def flatten(result) -> list:
    """Arrays and scalars of a result (tuples, NamedTuples, None) in a fixed order."""
    if isinstance(result, (tuple, list)):
        return [leaf for r in result for leaf in flatten(r)]
    if result is None or isinstance(result, (str, bool, int, float)):
        return [result]
    return [np.asarray(result)]


def same(a: list, b: list) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray):
            if type(x) is not type(y) or x != y:
                return False
        elif x.dtype != y.dtype or x.shape != y.shape:
            return False
        elif x.dtype == object:
            if x.tolist() != y.tolist():
                return False
        elif not np.array_equal(x, y, equal_nan=True):
            return False
    return True


def snapshot(kw: dict, names) -> list:
    out = []
    for n in names:
        v = kw.get(n)
        if isinstance(v, np.ndarray):
            out.append(v.copy())
        elif isinstance(v, (list, tuple)):
            out.extend(a.copy() if isinstance(a, np.ndarray) else None for a in v)
    return out


def run_call(call: Call, kw: dict):
    fn = getattr(call.module, call.fn)
    result = fn(**kw)
    return flatten(result) + snapshot(kw, call.inplace)


def hostile_kwargs(case: Case) -> tuple[Call, dict]:
    call = CALLS_BY_FN[case.fn]
    kw = call.make(np.dtype(case.dtype))
    if case.label.startswith("alias of "):
        kw[case.arg] = kw[case.label[len("alias of "):]]
        return call, kw
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        catalog = mutations(call, case.arg, kw[case.arg])
    for label, val, _ in catalog:
        if label == case.label:
            kw[case.arg] = val
            return call, kw
    raise KeyError(case)


def classify_error(fn: str, e: BaseException) -> str:
    msg = str(e)
    if "incompatible function arguments" in msg:
        return "unclear error"
    if isinstance(e, MemoryError):
        return "ok"
    if isinstance(e, ALLOWED) and msg.startswith(fn + ":"):
        return "ok"
    if isinstance(e, RuntimeError) and msg.startswith(fn + ":") and (
        "CUDA" in msg or "GPU" in msg or "non-finite" in msg
    ):
        return "ok"
    return "unclear error"


def judge(call: Call, kw: dict, expect: str, baseline=None) -> tuple[str, str]:
    """Calls ``call`` with the (hostile) keyword arguments ``kw``; returns (outcome,
    detail). ``baseline``: the valid call's result, for ``expect == SAME``."""
    before = snapshot(kw, call.inplace)
    try:
        got = run_call(call, kw)
    except BaseException as e:  # noqa: BLE001 - classifying is the point
        if isinstance(e, KeyboardInterrupt):
            raise
        outcome, detail = classify_error(call.fn, e), f"{type(e).__name__}: {e}"[:300]
        if outcome == "ok" and expect == SAME:
            return "wrong result", "raised: " + detail
        if outcome == "ok" and not same(before, snapshot(kw, call.inplace)):
            return "changed on error", detail
        return outcome, detail
    if expect == ERROR:
        return "wrong result", "accepted a value that must be rejected"
    if expect == SAME and not same(got, baseline):
        return "wrong result", "differs from the valid call's result"
    return "ok", ""


def baseline_of(call: Call, dtype) -> list:
    return run_call(call, call.make(np.dtype(dtype)))


def run_case(case: Case) -> dict:
    """Runs one case in this process; returns its outcome as a dict."""
    call = CALLS_BY_FN[case.fn]
    baseline = baseline_of(call, case.dtype) if case.expect == SAME else None
    call, kw = hostile_kwargs(case)
    outcome, detail = judge(call, kw, case.expect, baseline)
    return {"index": case.index, "outcome": outcome, "detail": detail}


# ---- the campaign: a worker process, restarted after a crash or hang -----------------


def _worker(indices: list[int]) -> None:
    warnings.simplefilter("ignore")  # numpy's casting warnings on hostile values
    cases = all_cases()
    # The harness's own test makes chosen cases crash or hang: "crash:I,hang:J".
    selftest = dict(item.split(":") for item in os.environ.get("ADLK_HOSTILE_SELFTEST", "").split(",") if item)
    sys.stdout.write(json.dumps({"ready": True}) + "\n")  # the time limit starts here
    sys.stdout.flush()
    for i in indices:
        sys.stdout.write(json.dumps({"start": i}) + "\n")
        sys.stdout.flush()
        if selftest.get("crash") == str(i):
            os.abort()
        if selftest.get("hang") == str(i):
            time.sleep(3600)
        try:
            res = run_case(cases[i])
        except BaseException as e:  # a failure of the harness itself
            res = {"index": i, "outcome": "harness error",
                   "detail": "".join(traceback.format_exception(e))[-500:]}
        sys.stdout.write(json.dumps(res) + "\n")
        sys.stdout.flush()


@dataclass
class Report:
    counts: dict = field(default_factory=dict)
    failures: list = field(default_factory=list)
    seconds: float = 0.0
    lock: Any = field(default_factory=threading.Lock)

    def add(self, case: Case, outcome: str, detail: str):
        with self.lock:
            self._add(case, outcome, detail)

    def _add(self, case: Case, outcome: str, detail: str):
        self.counts[outcome] = self.counts.get(outcome, 0) + 1
        if outcome != "ok":
            detail = " ".join(detail.split())
            self.failures.append(f"{outcome}: {case.fn}[{case.dtype}] {case.arg} <- {case.label}: {detail}")

    def summary(self) -> str:
        total = sum(self.counts.values())
        parts = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
        return f"{total} hostile calls in {self.seconds:.0f} s: {parts}"


def _run_shard(todo: list[int], by_index: dict, report: Report, timeout: float) -> None:
    """Runs cases ``todo`` in a worker process, starting a new one after a crash or hang."""
    env = dict(os.environ, PYTHONFAULTHANDLER="0")
    while todo:
        errlog = tempfile.TemporaryFile(mode="w+")  # a file: a full pipe would block the worker
        proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errlog, text=True, env=env,
        )
        proc.stdin.write(json.dumps(todo))
        proc.stdin.close()
        # A reader thread, not select() on the pipe: lines already in the file object's
        # buffer would not wake select() and a finished case would count as a hang.
        lines: queue.Queue = queue.Queue()
        reader = threading.Thread(target=lambda f=proc.stdout: [lines.put(x) for x in f] + [lines.put("")])
        reader.start()
        current, done, started = None, set(), False
        while True:
            # Starting a worker (imports, building the cases) is not part of any case.
            try:
                line = lines.get(timeout=timeout if started else 300)
            except queue.Empty:  # silent too long: the current case hangs
                proc.kill()
                proc.wait()
                if current is not None:
                    report.add(by_index[current], "hang", f"no answer in {timeout:.0f} s")
                    done.add(current)
                break
            if not line:  # the worker died
                proc.wait()
                if current is not None and current not in done:
                    errlog.seek(0)
                    err = errlog.read()[:300]
                    report.add(by_index[current], "crash", f"exit {proc.returncode}: {err}")
                    done.add(current)
                break
            msg = json.loads(line)
            if "ready" in msg:
                started = True
            elif "start" in msg:
                current = msg["start"]
            else:
                report.add(by_index[msg["index"]], msg["outcome"], msg["detail"])
                done.add(msg["index"])
        reader.join()
        errlog.close()
        proc.stdout.close()
        if not done and started is False:
            raise RuntimeError(f"the hostile-input worker did not start: exit {proc.returncode}")
        todo = [i for i in todo if i not in done]


def campaign(cases: list[Case] | None = None, timeout: float = CASE_TIMEOUT,
             jobs: int = 2) -> Report:
    """Runs ``cases`` (default: all) in ``jobs`` worker processes side by side."""
    cases = all_cases() if cases is None else cases
    by_index = {c.index: c for c in cases}
    report, t0 = Report(), time.time()
    shards = [[c.index for c in cases[k::jobs]] for k in range(jobs)]
    threads = [threading.Thread(target=_run_shard, args=(shard, by_index, report, timeout))
               for shard in shards]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report.seconds = time.time() - t0
    return report


def main(argv: list[str]) -> int:
    if argv[:1] == ["--worker"]:
        _worker(json.loads(sys.stdin.read()))
        return 0
    report = campaign()
    print(report.summary())
    for f in sorted(report.failures):
        print(" ", f)
    return 0 if not report.failures else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
