"""Small stateful layers for training without a framework (docs/api/layers.md).

Each layer is built with PyTorch's constructor arguments (plus ``dtype`` and ``rng``:
numpy dtype of the parameters, float32 by default, and the numpy Generator that draws
the initial weights), starts in training mode (``.train()``, ``.eval()``), and has
``forward(x)`` (caches what its backward needs), ``backward(grad_y)`` (returns grad_x and
stores the parameter gradients), ``params()`` (the live parameter arrays, PyTorch's
order: weight before bias) and ``grads()`` (same order). Initialization is PyTorch's:
Linear/Conv2d weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)), LSTM weights and
biases U(-1/sqrt(hidden), 1/sqrt(hidden)), norms weight 1 and bias 0.

``to("cuda")`` (or ``.cuda()``) moves a model's arrays to the GPU as cupy arrays, ``to("cpu")``
back. ``state_dict()`` / ``load_state_dict(d)`` save and restore parameters and buffers
(running statistics, dropout's seed and step counter) as copies, so training resumes
bit-identically. A layer may be used more than once in a :class:`Sequential`, with
PyTorch's semantics (gradients summed over the uses; see there). Every layer runs the
functional kernels of adlkernels; cupy arrays work wherever those kernels have a CUDA
implementation.
"""

from __future__ import annotations

import math

import numpy as np

from . import _cuda, conv, nn, norm, pool, rnn
from ._backend import is_device_array

__all__ = [
    "Module", "Conv2d", "MaxPool2d", "AvgPool2d", "Linear", "ReLU", "Dropout", "BatchNorm1d",
    "BatchNorm2d", "LayerNorm", "LSTM", "Flatten", "Sequential",
]


def _uniform(rng, bound, shape, dtype):
    return rng.uniform(-bound, bound, shape).astype(dtype)


def _xp(a):
    """The array module of a: cupy for a device array, else numpy."""
    return _cuda._cp() if is_device_array(a) else np


def _is_array(v) -> bool:
    return isinstance(v, np.ndarray) or is_device_array(v)


def _rng(rng):
    return np.random.default_rng() if rng is None else rng


class Module:
    """Base class: training flag, parameters with their gradients, buffers, state dicts."""

    _param_names: tuple = ()
    _buffer_names: tuple = ()

    def __init__(self):
        self.training = True
        self.cache = None
        self._accumulate = False  # set by Sequential.backward for a module it reuses

    # -- modes ---------------------------------------------------------------------------
    def train(self, mode: bool = True):
        self.training = bool(mode)
        for child in self.children():
            child.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def children(self):
        return []

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def modules(self):
        """This module and its descendants, each once (a module reused in a Sequential
        too), in pre-order: ``torch.nn.Module.modules()``'s order."""
        seen, out, stack = set(), [], [self]
        while stack:
            m = stack.pop()
            if id(m) not in seen:
                seen.add(id(m))
                out.append(m)
                stack.extend(reversed(m.children()))
        return out

    # -- parameters ------------------------------------------------------------------------
    def params(self):
        """The parameters of every module once, in PyTorch's order (``parameters()``)."""
        return [getattr(m, n) for m in self.modules() for n in m._param_names
                if getattr(m, n) is not None]

    def grads(self):
        return [m._grads[n] for m in self.modules() for n in m._param_names
                if getattr(m, n) is not None]

    def _init_grads(self):
        self._grads = {n: (None if getattr(self, n) is None else np.zeros_like(getattr(self, n)))
                       for n in self._param_names}

    def _set_grad(self, name, value):
        if value is not None and self._grads.get(name) is not None:
            if self._accumulate:
                self._grads[name] += value
            else:
                self._grads[name][...] = value

    # -- state ------------------------------------------------------------------------------
    def _state_items(self, prefix=""):
        for n in self._param_names + self._buffer_names:
            v = getattr(self, n)
            if v is not None:
                yield prefix + n, v
        for i, c in enumerate(self.children()):
            yield from c._state_items(f"{prefix}{i}.")

    def state_dict(self) -> dict:
        return {k: (v.copy() if _is_array(v) else v) for k, v in self._state_items()}

    def load_state_dict(self, d: dict) -> None:
        items = dict(self._state_items())
        if set(items) != set(d):
            raise ValueError(f"{type(self).__name__}.load_state_dict: keys differ: "
                             f"missing {sorted(set(items) - set(d))}, unexpected {sorted(set(d) - set(items))}")
        for k, v in items.items():
            if _is_array(v) and tuple(np.shape(d[k])) != v.shape:
                raise ValueError(f"{type(self).__name__}.load_state_dict: {k}: expected shape "
                                 f"{v.shape}, got {np.shape(d[k])}")
        self._load_items(d, "")

    def _load_items(self, d, prefix):
        for n in self._param_names + self._buffer_names:
            v = getattr(self, n)
            if _is_array(v):
                v[...] = _xp(v).asarray(d[prefix + n])
            elif v is not None:
                setattr(self, n, d[prefix + n])
        for i, c in enumerate(self.children()):
            c._load_items(d, f"{prefix}{i}.")

    # -- devices --------------------------------------------------------------------------
    def to(self, device):
        """Moves every parameter, gradient and buffer of this module and its descendants to
        ``device``, in place, and returns self (``torch.nn.Module.to``): "cuda" or "gpu"
        (cupy arrays on CuPy's current device; the layers then run the CUDA kernels) or
        "cpu" (numpy arrays). Build the optimizer after the move: it holds the arrays."""
        if device in ("cuda", "gpu"):
            cp = _cuda._cp()
            move = cp.asarray
        elif device == "cpu":
            def move(a):
                return a.get() if is_device_array(a) else a
        else:
            raise ValueError(f"{type(self).__name__}.to: device must be 'cpu' or 'cuda', got {device!r}")
        for m in self.modules():
            for n in m._param_names + m._buffer_names:
                v = getattr(m, n)
                if _is_array(v):
                    setattr(m, n, move(v))
            if hasattr(m, "_grads"):
                m._grads = {n: (None if g is None else move(g)) for n, g in m._grads.items()}
            m.cache = None
        return self

    def cuda(self):
        return self.to("cuda")

    def cpu(self):
        return self.to("cpu")

    def _need_cache(self):
        if self.cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward: call forward first")
        return self.cache


class Linear(Module):
    """y = x W^T + b (``torch.nn.Linear``); x (B, in_features)."""

    _param_names = ("weight", "bias")

    def __init__(self, in_features, out_features, bias=True, *, dtype=np.float32, rng=None):
        super().__init__()
        rng = _rng(rng)
        bound = 1 / math.sqrt(in_features) if in_features else 0.0
        self.weight = _uniform(rng, bound, (out_features, in_features), dtype)
        self.bias = _uniform(rng, bound, (out_features,), dtype) if bias else None
        self._init_grads()

    def forward(self, x):
        self.cache = x
        return nn.linear_forward(x, self.weight, self.bias)

    def backward(self, grad_y):
        x = self._need_cache()
        gx, gw, gb = nn.linear_backward(grad_y, x, self.weight, (True, True, self.bias is not None))
        self._set_grad("weight", gw)
        self._set_grad("bias", gb)
        return gx


class Conv2d(Module):
    """2-d convolution (``torch.nn.Conv2d``); x (N, C_in, H, W)."""

    _param_names = ("weight", "bias")

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, *, dtype=np.float32, rng=None):
        super().__init__()
        rng = _rng(rng)
        k = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        fan_in = in_channels // groups * k[0] * k[1]
        bound = 1 / math.sqrt(fan_in) if fan_in else 0.0
        self.weight = _uniform(rng, bound, (out_channels, in_channels // groups) + k, dtype)
        self.bias = _uniform(rng, bound, (out_channels,), dtype) if bias else None
        self._init_grads()

    def forward(self, x):
        self.cache = x
        return conv.conv2d_forward(x, self.weight, self.bias, self.stride, self.padding,
                                   self.dilation, self.groups)

    def backward(self, grad_y):
        x = self._need_cache()
        gx, gw, gb = conv.conv2d_backward(grad_y, x, self.weight, self.stride, self.padding,
                                          self.dilation, self.groups,
                                          (True, True, self.bias is not None))
        self._set_grad("weight", gw)
        self._set_grad("bias", gb)
        return gx


class MaxPool2d(Module):
    """Max pooling (``torch.nn.MaxPool2d``); the argmax indices are the cache."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
        super().__init__()
        self.args = (kernel_size, stride, padding, dilation, ceil_mode)

    def forward(self, x):
        y, idx = pool.maxpool2d_forward(x, *self.args)
        self.cache = (idx, x.shape)
        return y

    def backward(self, grad_y):
        idx, shape = self._need_cache()
        return pool._maxpool2d_backward(grad_y, idx, shape, window=self.args)


class AvgPool2d(Module):
    """Average pooling (``torch.nn.AvgPool2d``)."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
        super().__init__()
        self.args = (kernel_size, stride, padding, ceil_mode, count_include_pad)

    def forward(self, x):
        self.cache = x.shape
        return pool.avgpool2d_forward(x, *self.args)

    def backward(self, grad_y):
        return pool.avgpool2d_backward(grad_y, self._need_cache(), *self.args)


class ReLU(Module):
    def forward(self, x):
        self.cache = x
        return nn.relu_forward(x)

    def backward(self, grad_y):
        return nn.relu_backward(grad_y, self._need_cache())


class Dropout(Module):
    """Inverted dropout (``torch.nn.Dropout``). The mask of the k-th training forward is
    drawn with seed + k (Philox; see adlkernels.nn), so a run is reproducible from
    ``seed`` and the step counter, which state_dict saves."""

    _buffer_names = ("seed", "steps")
    _IDENTITY = "identity"  # cache of a forward that dropped nothing (eval, or p = 0)

    def __init__(self, p=0.5, *, seed=None, rng=None):
        super().__init__()
        self.p = p
        self.seed = int(_rng(rng).integers(0, 2**62)) if seed is None else int(seed)
        self.steps = 0

    def forward(self, x):
        if not self.training or self.p == 0:
            self.cache = self._IDENTITY
            return x
        y, mask = nn.dropout_forward(x, self.p, seed=(self.seed + self.steps) % 2**64)
        self.steps += 1
        self.cache = mask
        return y

    def backward(self, grad_y):
        mask = self._need_cache()
        if isinstance(mask, str):
            return grad_y
        return nn.dropout_backward(grad_y, mask, self.p)


class _BatchNorm(Module):
    _param_names = ("weight", "bias")
    _buffer_names = ("running_mean", "running_var")
    _ndims = ()

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, *, dtype=np.float32):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = np.ones(num_features, dtype) if affine else None
        self.bias = np.zeros(num_features, dtype) if affine else None
        self.running_mean = np.zeros(num_features, dtype) if track_running_stats else None
        self.running_var = np.ones(num_features, dtype) if track_running_stats else None
        self._init_grads()

    def forward(self, x):
        if x.ndim not in self._ndims:
            raise ValueError(f"{type(self).__name__}: expected a {' or '.join(map(str, self._ndims))}-d input, got shape {x.shape}")
        training = self.training or self.running_mean is None
        y, mean, invstd = norm.batchnorm_forward(
            x, self.weight, self.bias, self.running_mean, self.running_var, training=training,
            momentum=self.momentum, eps=self.eps)
        self.cache = (x, mean, invstd, training)
        return y

    def backward(self, grad_y):
        x, mean, invstd, training = self._need_cache()
        gx, gw, gb = norm.batchnorm_backward(grad_y, x, self.weight, mean, invstd, training=training)
        self._set_grad("weight", gw)
        self._set_grad("bias", gb)
        return gx


class BatchNorm1d(_BatchNorm):
    """``torch.nn.BatchNorm1d``: (N, C) or (N, C, L)."""

    _ndims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """``torch.nn.BatchNorm2d``: (N, C, H, W)."""

    _ndims = (4,)


class LayerNorm(Module):
    """``torch.nn.LayerNorm`` over the trailing normalized_shape."""

    _param_names = ("weight", "bias")

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, *, dtype=np.float32):
        super().__init__()
        ns = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.normalized_shape, self.eps = ns, eps
        self.weight = np.ones(ns, dtype) if elementwise_affine else None
        self.bias = np.zeros(ns, dtype) if elementwise_affine else None
        self._init_grads()

    def forward(self, x):
        y, mean, rstd = norm.layernorm_forward(x, self.normalized_shape, self.weight, self.bias, self.eps)
        self.cache = (x, mean, rstd)
        return y

    def backward(self, grad_y):
        x, mean, rstd = self._need_cache()
        gx, gw, gb = norm.layernorm_backward(grad_y, x, self.normalized_shape, mean, rstd, self.weight)
        self._set_grad("weight", gw)
        self._set_grad("bias", gb)
        return gx


class Flatten(Module):
    """(N, ...) -> (N, prod(...)) (``torch.nn.Flatten`` with start_dim=1, end_dim=-1)."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        self.cache = x.shape
        start, end = self.start_dim % x.ndim, self.end_dim % x.ndim
        merged = math.prod(x.shape[start:end + 1])  # explicit: -1 is ambiguous for size 0
        return x.reshape(x.shape[:start] + (merged,) + x.shape[end + 1:])

    def backward(self, grad_y):
        return grad_y.reshape(self._need_cache())


class Sequential(Module):
    """Layers applied in order; backward runs them in reverse.

    A layer may appear more than once (``Sequential(lin, ReLU(), lin)``, also inside
    nested Sequentials), with PyTorch's semantics: each use computes with its own input
    (forward keeps every use's cache and backward hands each use its own), and the
    parameter gradients of a reused layer are the sum over its uses. ``params()`` and
    ``grads()`` list a reused layer's arrays once. Two different layers sharing one
    parameter array (tied weights) are not merged: that array is listed twice, and an
    optimizer given it twice raises ValueError."""

    def __init__(self, *layers):
        super().__init__()
        self.layers = list(layers)

    def children(self):
        return self.layers

    def __getitem__(self, i):
        return self.layers[i]

    def __len__(self):
        return len(self.layers)

    def forward(self, x):
        caches = []
        for layer in self.layers:
            x = layer.forward(x)
            caches.append(layer.cache)  # a later use of the same layer replaces its cache
        self.cache = caches
        return x

    def backward(self, grad_y):
        caches = self._need_cache()
        # Layers reached more than once accumulate their gradients over their uses: zeroed
        # here, summed by _set_grad. A nested Sequential leaves the layers that an outer one
        # already took care of alone.
        counts: dict = {}
        _count_uses(self, counts)
        reused = [m for m, n in counts.values() if n > 1 and not m._accumulate]
        for m in reused:
            for g in getattr(m, "_grads", {}).values():
                if g is not None:
                    g[...] = 0
            m._accumulate = True
        try:
            for layer, cache in zip(reversed(self.layers), reversed(caches)):
                layer.cache = cache
                grad_y = layer.backward(grad_y)
        finally:
            for m in reused:
                m._accumulate = False
        return grad_y


def _count_uses(module, counts: dict) -> None:
    """counts[id(m)] = (m, how many times m is reached below module): a child reached
    twice has its own children counted twice."""
    for child in module.children():
        counts[id(child)] = (child, counts.get(id(child), (child, 0))[1] + 1)
        _count_uses(child, counts)


class LSTM(Module):
    """``torch.nn.LSTM`` (sequence-first: x (T, B, input_size)) with num_layers and
    bidirectional; the output of a bidirectional layer is [forward, backward] concatenated
    on the last axis. forward(x, state=None) -> y (T, B, D*H); state is (h0, c0), each
    (num_layers * D, B, H), zeros if None; the final (h_n, c_n) are kept in ``.state``.
    Parameters per layer and direction, in PyTorch's order: weight_ih, weight_hh, bias_ih,
    bias_hh (names weight_ih_l{k}[_reverse], ...). Each direction writes straight into its
    half of the layer's output (no concatenation copies)."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, *, dtype=np.float32, rng=None):
        super().__init__()
        if batch_first or dropout:
            raise ValueError("LSTM: batch_first and inter-layer dropout are not supported "
                             "(use (T, B, I) inputs and a Dropout layer)")
        rng = _rng(rng)
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.dirs = 2 if bidirectional else 1
        bound = 1 / math.sqrt(hidden_size)
        names = []
        for layer in range(num_layers):
            n_in = input_size if layer == 0 else hidden_size * self.dirs
            for d in range(self.dirs):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                for n, shape in (("weight_ih", (4 * hidden_size, n_in)),
                                 ("weight_hh", (4 * hidden_size, hidden_size)),
                                 ("bias_ih", (4 * hidden_size,)), ("bias_hh", (4 * hidden_size,))):
                    if n.startswith("bias") and not bias:
                        setattr(self, n + sfx, None)
                    else:
                        setattr(self, n + sfx, _uniform(rng, bound, shape, dtype))
                    names.append(n + sfx)
        self._param_names = tuple(names)
        self._init_grads()
        self.state = None

    def _weights(self, layer, d):
        sfx = f"_l{layer}" + ("_reverse" if d else "")
        return [getattr(self, n + sfx) for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")], sfx

    def forward(self, x, state=None):
        steps, bsz = x.shape[0], x.shape[1]
        hid, dirs = self.hidden_size, self.dirs
        dtype = self.weight_ih_l0.dtype
        xp = _xp(x)
        if state is None:
            h0 = xp.zeros((self.num_layers * dirs, bsz, hid), dtype)
            c0 = xp.zeros_like(h0)
        else:
            h0, c0 = state
        caches, h_n, c_n = [], [], []
        inp = x
        for layer in range(self.num_layers):
            y = xp.empty((steps, bsz, dirs * hid), dtype)
            for d in range(dirs):
                k = layer * dirs + d
                w, _ = self._weights(layer, d)
                _, hk, ck, cache = rnn.lstm_forward(inp, h0[k], c0[k], *w, reverse=bool(d),
                                                    out=y[:, :, d * hid:(d + 1) * hid])
                caches.append(cache)
                h_n.append(hk)
                c_n.append(ck)
            inp = y
        self.state = (xp.stack(h_n), xp.stack(c_n))
        self.cache = caches
        return inp

    def backward(self, grad_y, grad_state=None):
        """grad_y (T, B, D*H) -> grad_x; grad_state = (grad_h_n, grad_c_n) or None. The
        gradients of h0 and c0 are kept in ``.grad_state``."""
        caches = self._need_cache()
        hid, dirs = self.hidden_size, self.dirs
        g = grad_y
        gh0 = [None] * len(caches)
        gc0 = [None] * len(caches)
        for layer in reversed(range(self.num_layers)):
            gx = None
            for d in range(dirs):
                k = layer * dirs + d
                ghn = None if grad_state is None else grad_state[0][k]
                gcn = None if grad_state is None else grad_state[1][k]
                gk = rnn.lstm_backward(g[:, :, d * hid:(d + 1) * hid], ghn, gcn, caches[k])
                _, sfx = self._weights(layer, d)
                self._set_grad("weight_ih" + sfx, gk.w_ih)
                self._set_grad("weight_hh" + sfx, gk.w_hh)
                self._set_grad("bias_ih" + sfx, gk.b_ih)
                self._set_grad("bias_hh" + sfx, gk.b_hh)
                gh0[k], gc0[k] = gk.h0, gk.c0
                gx = gk.x if gx is None else gx + gk.x
            g = gx
        xp = _xp(grad_y)
        self.grad_state = (xp.stack(gh0), xp.stack(gc0))
        return g
