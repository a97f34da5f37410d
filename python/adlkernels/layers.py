"""Small stateful layers for training without a framework (docs/api/layers.md).

Each layer is built with PyTorch's constructor arguments (plus ``dtype`` and ``rng``:
numpy dtype of the parameters, float32 by default, and the numpy Generator that draws
the initial weights), starts in training mode (``.train()``, ``.eval()``), and has
``forward(x)`` (caches what its backward needs), ``backward(grad_y)`` (returns grad_x and
stores the parameter gradients), ``params()`` (the live parameter arrays, PyTorch's
order: weight before bias) and ``grads()`` (same order). Initialization is PyTorch's:
Linear/Conv weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)), recurrent weights and
biases U(-1/sqrt(hidden), 1/sqrt(hidden)), Embedding N(0, 1), norms weight 1 and bias 0.

A model is a :class:`Module` subclass whose sub-layers (and :class:`Parameter` arrays)
are assigned as attributes: they register themselves, as in torch.nn. A layer may be
used more than once per step (gradients are summed over the uses, see Module).
``to("cuda")`` (or ``.cuda()``) moves a model's arrays to the GPU as cupy arrays,
``to("cpu")`` back. ``state_dict()`` / ``load_state_dict(d)`` save and restore parameters
and buffers (running statistics, dropout's seed and step counter) as copies, so training
resumes bit-identically; :func:`save` and :func:`load` write and read a model with its
optimizer and schedule as one ``.npz`` file (no pickle). Every layer runs the functional
kernels of adlkernels; cupy arrays work wherever those kernels have a CUDA
implementation.
"""

from __future__ import annotations

import json
import math

import numpy as np

from . import conv, nn, norm, pool, rnn
from ._backend import is_device_array
from ._module import Module, ModuleList, Parameter, _is_array, _xp

__all__ = [
    "Module", "Parameter", "ModuleList", "Conv1d", "Conv2d", "MaxPool2d", "AvgPool2d",
    "Linear", "ReLU", "Tanh", "Sigmoid", "Dropout", "BatchNorm1d", "BatchNorm2d",
    "LayerNorm", "Embedding", "LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell",
    "AdditiveAttention", "Flatten",
    "Sequential", "save", "load",
]


def _uniform(rng, bound, shape, dtype):
    return rng.uniform(-bound, bound, shape).astype(dtype)


def _rng(rng):
    return np.random.default_rng() if rng is None else rng


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

    def extra_repr(self):
        o, i = self.weight.shape
        return f"in_features={i}, out_features={o}, bias={self.bias is not None}"

    def forward(self, x):
        self.cache = x
        return nn.linear_forward(x, self.weight, self.bias)

    def backward(self, grad_y):
        x = self._need_cache()
        gx, gw, gb = nn.linear_backward(grad_y, x, self.weight, (True, True, self.bias is not None))
        self._set_grad("weight", gw)
        self._set_grad("bias", gb)
        return gx


def _conv_repr(c_in, c_out, k, stride, padding, dilation, groups, bias):
    s = f"{c_in}, {c_out}, kernel_size={k}, stride={stride}"
    if padding not in (0, (0,), (0, 0)):
        s += f", padding={padding}"
    if dilation not in (1, (1,), (1, 1)):
        s += f", dilation={dilation}"
    if groups != 1:
        s += f", groups={groups}"
    return s + ("" if bias else ", bias=False")


def _one(v, name):
    """An int, or a 1-tuple of one, for Conv1d's arguments."""
    if isinstance(v, (tuple, list)):
        if len(v) != 1:
            raise ValueError(f"Conv1d: {name} must be an int or a 1-tuple, got {v!r}")
        v = v[0]
    return v


class Conv1d(Module):
    """1-d convolution (``torch.nn.Conv1d``); x (N, C_in, L). It runs the 2-d kernels on
    (N, C_in, 1, L) views with a (1, k) window, so weight is (C_out, C_in/groups, k)."""

    _param_names = ("weight", "bias")

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, *, dtype=np.float32, rng=None):
        super().__init__()
        rng = _rng(rng)
        k = _one(kernel_size, "kernel_size")
        self.stride, self.padding = _one(stride, "stride"), _one(padding, "padding")
        self.dilation, self.groups = _one(dilation, "dilation"), groups
        fan_in = in_channels // groups * k
        bound = 1 / math.sqrt(fan_in) if fan_in else 0.0
        self.weight = _uniform(rng, bound, (out_channels, in_channels // groups, k), dtype)
        self.bias = _uniform(rng, bound, (out_channels,), dtype) if bias else None
        self._init_grads()

    def extra_repr(self):
        o, c, k = self.weight.shape
        return _conv_repr(c * self.groups, o, (k,), (self.stride,), (self.padding,),
                          (self.dilation,), self.groups, self.bias is not None)

    def _args(self):
        return ((1, self.stride), (0, self.padding), (1, self.dilation), self.groups)

    def forward(self, x):
        if getattr(x, "ndim", None) != 3:
            raise ValueError(f"Conv1d: expected x of shape (N, C_in, L), got {getattr(x, 'shape', type(x).__name__)}")
        self.cache = x
        y = conv.conv2d_forward(x[:, :, None, :], self.weight[:, :, None, :], self.bias, *self._args())
        return y[:, :, 0, :]

    def backward(self, grad_y):
        x = self._need_cache()
        gx, gw, gb = conv.conv2d_backward(grad_y[:, :, None, :], x[:, :, None, :],
                                          self.weight[:, :, None, :], *self._args(),
                                          (True, True, self.bias is not None))
        self._set_grad("weight", gw[:, :, 0, :])
        self._set_grad("bias", gb)
        return gx[:, :, 0, :]


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

    def extra_repr(self):
        o, c, *k = self.weight.shape
        return _conv_repr(c * self.groups, o, tuple(k), self.stride, self.padding,
                          self.dilation, self.groups, self.bias is not None)

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

    def extra_repr(self):
        k, s, p, d, c = self.args
        return (f"kernel_size={k}, stride={k if s is None else s}, padding={p}, "
                f"dilation={d}, ceil_mode={c}")

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

    def extra_repr(self):
        k, s, p, c, inc = self.args
        return f"kernel_size={k}, stride={k if s is None else s}, padding={p}"

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


class Tanh(Module):
    """``torch.nn.Tanh``; the backward uses the output."""

    def forward(self, x):
        y = nn.tanh_forward(x)
        self.cache = y
        return y

    def backward(self, grad_y):
        return nn.tanh_backward(grad_y, self._need_cache())


class Sigmoid(Module):
    """``torch.nn.Sigmoid``; the backward uses the output."""

    def forward(self, x):
        y = nn.sigmoid_forward(x)
        self.cache = y
        return y

    def backward(self, grad_y):
        return nn.sigmoid_backward(grad_y, self._need_cache())


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

    def extra_repr(self):
        return f"p={self.p}"

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
        self.num_features = num_features

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.weight is not None}, "
                f"track_running_stats={self.running_mean is not None}")

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

    def extra_repr(self):
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.weight is not None}")

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

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"

    def forward(self, x):
        self.cache = x.shape
        start, end = self.start_dim % x.ndim, self.end_dim % x.ndim
        merged = math.prod(x.shape[start:end + 1])  # explicit: -1 is ambiguous for size 0
        return x.reshape(x.shape[:start] + (merged,) + x.shape[end + 1:])

    def backward(self, grad_y):
        return grad_y.reshape(self._need_cache())




class Sequential(Module):
    """Layers applied in order; backward runs them in reverse. Sub-layers are named "0",
    "1", ... (state dict keys "0.weight", ...).

    A layer may appear more than once (``Sequential(lin, ReLU(), lin)``, also inside
    nested Sequentials), with PyTorch's semantics: each use computes with its own input
    and the parameter gradients of a reused layer are the sum over its uses (see
    :class:`Module` on caches). ``params()`` and ``grads()`` list a reused layer's arrays
    once. Two different layers sharing one parameter array (tied weights) are not merged:
    that array is listed twice, and an optimizer given it twice raises ValueError."""

    def __init__(self, *layers):
        super().__init__()
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise TypeError(f"Sequential: layer {i} is a {type(layer).__name__}, not a Module")
            self._modules[str(i)] = layer

    @property
    def layers(self):
        return list(self._modules.values())

    def __getitem__(self, i):
        return self.layers[i]

    def __len__(self):
        return len(self._modules)

    def forward(self, x):
        for layer in self._modules.values():
            x = layer.forward(x)
        self.cache = True  # each layer keeps its own cache; this marks a use of the whole
        return x

    def backward(self, grad_y):
        self._need_cache()
        for layer in reversed(self.layers):
            grad_y = layer.backward(grad_y)
        return grad_y


class Embedding(Module):
    """``torch.nn.Embedding``: indices (any shape, int64) -> rows of weight, shape
    indices.shape + (embedding_dim,). weight ~ N(0, 1) with row padding_idx zero; that row
    gets no gradient. backward(grad_y) stores the weight gradient and returns None (no
    gradient for integer indices)."""

    _param_names = ("weight",)

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, *, dtype=np.float32,
                 rng=None):
        super().__init__()
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError(f"Embedding: padding_idx must be in [-{num_embeddings}, "
                                 f"{num_embeddings}), got {padding_idx}")
            padding_idx %= num_embeddings
        self.padding_idx = padding_idx
        self.weight = _rng(rng).standard_normal((num_embeddings, embedding_dim)).astype(dtype)
        if padding_idx is not None:
            self.weight[padding_idx] = 0
        self._init_grads()

    def extra_repr(self):
        v, d = self.weight.shape
        return f"{v}, {d}" + ("" if self.padding_idx is None else f", padding_idx={self.padding_idx}")

    def forward(self, indices):
        y = nn.embedding_forward(indices, self.weight, self.padding_idx)
        self.cache = indices
        return y

    def backward(self, grad_y):
        indices = self._need_cache()
        self._set_grad("weight", nn.embedding_backward(grad_y, indices, self.weight.shape[0],
                                                       self.padding_idx))
        return None


# ---- recurrent layers ------------------------------------------------------------------------

_MERGE_MODES = ("concat", "sum", "ave", "mul")


class _Recurrent(Module):
    """Shared by LSTM, GRU and RNN: layers x directions of the one-layer sequence kernels
    of ak.rnn, each direction writing straight into its half of the layer's output."""

    _gates = 1
    _has_cell = False

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, merge_mode="concat", *, dtype=np.float32,
                 rng=None):
        super().__init__()
        name = type(self).__name__
        for arg, v, lo in (("input_size", input_size, 1), ("hidden_size", hidden_size, 1),
                           ("num_layers", num_layers, 1)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < lo:
                raise ValueError(f"{name}: {arg} must be an integer >= {lo}, got {v!r}")
        if not (isinstance(dropout, (int, float)) and 0 <= dropout < 1):
            raise ValueError(f"{name}: dropout must be in [0, 1), got {dropout!r}")
        if merge_mode not in _MERGE_MODES:
            raise ValueError(f"{name}: merge_mode must be one of {_MERGE_MODES}, got {merge_mode!r}")
        rng = _rng(rng)
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bool(bias), bool(batch_first), float(dropout)
        self.bidirectional, self.merge_mode = bool(bidirectional), merge_mode
        self.dirs = 2 if bidirectional else 1
        bound = 1 / math.sqrt(hidden_size)
        gh = self._gates * hidden_size
        names = []
        for layer in range(num_layers):
            n_in = input_size if layer == 0 else self._merged_size()
            for d in range(self.dirs):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                for n, shape in (("weight_ih", (gh, n_in)), ("weight_hh", (gh, hidden_size)),
                                 ("bias_ih", (gh,)), ("bias_hh", (gh,))):
                    value = None if n.startswith("bias") and not bias else _uniform(rng, bound, shape, dtype)
                    object.__setattr__(self, n + sfx, value)
                    names.append(n + sfx)
        self._param_names = tuple(names)
        self._init_grads()
        self.state = None
        # Inter-layer dropout masks come from seed + a counter, as the Dropout layer's.
        self.seed = int(rng.integers(0, 2**62)) if dropout and num_layers > 1 else 0
        self.steps = 0
        if dropout and num_layers > 1:
            self._buffer_names = ("seed", "steps")

    def _merged_size(self):
        return self.hidden_size * (2 if self.dirs == 2 and self.merge_mode == "concat" else 1)

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
            if self.merge_mode != "concat":
                s += f", merge_mode={self.merge_mode!r}"
        return s + self._extra()

    def _extra(self):
        return ""

    def _weights(self, layer, d):
        sfx = f"_l{layer}" + ("_reverse" if d else "")
        return [getattr(self, n + sfx) for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")], sfx

    # The one-layer kernels: (y, finals, cache) and (grads, grad_initials).
    def _run(self, inp, initials, w, reverse, out):
        raise NotImplementedError

    def _run_backward(self, g, grad_finals, cache):
        raise NotImplementedError

    def _initial_state(self, x, state, bsz):
        """The initial state as a tuple of (L*D, B, H) arrays (h, or h and c)."""
        shape = (self.num_layers * self.dirs, bsz, self.hidden_size)
        xp = _xp(x)
        parts = (2 if self._has_cell else 1)
        if state is None:
            return tuple(xp.zeros(shape, self.weight_ih_l0.dtype) for _ in range(parts))
        states = tuple(state) if self._has_cell else (state,)
        if len(states) != parts:
            raise ValueError(f"{type(self).__name__}: state must be "
                             f"{'(h0, c0)' if self._has_cell else 'h0'}")
        for s in states:
            if getattr(s, "shape", None) != shape:
                raise ValueError(f"{type(self).__name__}: initial state must have shape {shape}, "
                                 f"got {getattr(s, 'shape', type(s).__name__)}")
        return states

    def forward(self, x, state=None):
        """x (T, B, input_size), or (B, T, input_size) with batch_first -> (output, state):
        output (T, B, D*H) for merge_mode "concat" (D = 2 if bidirectional), else
        (T, B, H); state h_n (num_layers*D, B, H) ((h_n, c_n) for LSTM). ``state``: the
        initial state in the same form, zeros if None."""
        name = type(self).__name__
        if getattr(x, "ndim", None) != 3:
            raise ValueError(f"{name}: expected a 3-d input, got {getattr(x, 'shape', type(x).__name__)}")
        xp = _xp(x)
        if self.batch_first:
            x = xp.ascontiguousarray(x.transpose(1, 0, 2))
        steps, bsz = x.shape[0], x.shape[1]
        hid, dirs = self.hidden_size, self.dirs
        initials = self._initial_state(x, state, bsz)
        dtype = self.weight_ih_l0.dtype
        caches, finals, masks, merged = [], [[] for _ in initials], [], []
        inp = x
        for layer in range(self.num_layers):
            y = xp.empty((steps, bsz, dirs * hid), dtype)
            for d in range(dirs):
                k = layer * dirs + d
                w, _ = self._weights(layer, d)
                fin, cache = self._run(inp, [s[k] for s in initials], w, bool(d),
                                       y[:, :, d * hid:(d + 1) * hid])
                caches.append(cache)
                for lst, f in zip(finals, fin):
                    lst.append(f)
            out = self._merge(y)
            merged.append(y)
            if layer + 1 < self.num_layers and self.training and self.dropout > 0:
                out, mask = nn.dropout_forward(out, self.dropout, seed=(self.seed + self.steps) % 2**64)
                self.steps += 1
                masks.append(mask)
            else:
                masks.append(None)
            inp = out
        finals = tuple(xp.stack(lst) for lst in finals)
        self.state = finals if self._has_cell else finals[0]
        self.cache = (caches, masks, merged)
        if self.batch_first:
            inp = xp.ascontiguousarray(inp.transpose(1, 0, 2))
        return inp, self.state

    def _merge(self, y):
        if self.dirs == 1 or self.merge_mode == "concat":
            return y
        hid = self.hidden_size
        a, b = y[:, :, :hid], y[:, :, hid:]
        if self.merge_mode == "sum":
            return a + b
        if self.merge_mode == "ave":
            return (a + b) * y.dtype.type(0.5)
        return a * b

    def _unmerge(self, g, y):
        """The gradient of the layer's (T, B, 2H) direction outputs from the merged one's."""
        if self.dirs == 1 or self.merge_mode == "concat":
            return g
        xp = _xp(g)
        hid = self.hidden_size
        if self.merge_mode == "sum":
            return xp.concatenate([g, g], axis=2)
        if self.merge_mode == "ave":
            half = g * g.dtype.type(0.5)
            return xp.concatenate([half, half], axis=2)
        return xp.concatenate([g * y[:, :, hid:], g * y[:, :, :hid]], axis=2)

    def backward(self, grad_output, grad_state=None):
        """grad_output (the output's shape) -> grad_x; grad_state: the gradient of the
        final state (as the state returned by forward) or None. The gradient of the
        initial state is kept in ``.grad_state`` (same form)."""
        caches, masks, merged = self._need_cache()
        xp = _xp(grad_output)
        g = grad_output
        if self.batch_first:
            g = xp.ascontiguousarray(g.transpose(1, 0, 2))
        if grad_state is not None and not self._has_cell:
            grad_state = (grad_state,)
        hid, dirs = self.hidden_size, self.dirs
        parts = 2 if self._has_cell else 1
        g_init = [[None] * len(caches) for _ in range(parts)]
        for layer in reversed(range(self.num_layers)):
            if masks[layer] is not None:
                g = nn.dropout_backward(g, masks[layer], self.dropout)
            g = self._unmerge(g, merged[layer])
            gx = None
            for d in range(dirs):
                k = layer * dirs + d
                gfin = None if grad_state is None else [s[k] for s in grad_state]
                gk, ginit = self._run_backward(g[:, :, d * hid:(d + 1) * hid], gfin, caches[k])
                _, sfx = self._weights(layer, d)
                self._set_grad("weight_ih" + sfx, gk.w_ih)
                self._set_grad("weight_hh" + sfx, gk.w_hh)
                self._set_grad("bias_ih" + sfx, gk.b_ih)
                self._set_grad("bias_hh" + sfx, gk.b_hh)
                for i in range(parts):
                    g_init[i][k] = ginit[i]
                gx = gk.x if gx is None else gx + gk.x
            g = gx
        stacked = tuple(xp.stack(lst) for lst in g_init)
        self.grad_state = stacked if self._has_cell else stacked[0]
        if self.batch_first:
            g = xp.ascontiguousarray(g.transpose(1, 0, 2))
        return g


class LSTM(_Recurrent):
    """``torch.nn.LSTM``: forward(x, (h0, c0)=None) -> (output, (h_n, c_n)); gates i, f,
    g, o. Parameters per layer and direction, in PyTorch's order and names: weight_ih_l{k},
    weight_hh_l{k}, bias_ih_l{k}, bias_hh_l{k} (suffix _reverse for the backward
    direction). ``dropout`` applies to the outputs of every layer but the last, in
    training. Bidirectional outputs are [forward, backward] concatenated (PyTorch), or
    merged by ``merge_mode`` "sum", "ave" or "mul"; a merged layer feeds the next layer
    the merged (T, B, H) output."""

    _gates = 4
    _has_cell = True

    def _run(self, inp, initials, w, reverse, out):
        _, h, c, cache = rnn.lstm_forward(inp, initials[0], initials[1], *w, reverse=reverse, out=out)
        return (h, c), cache

    def _run_backward(self, g, grad_finals, cache):
        ghn, gcn = (None, None) if grad_finals is None else grad_finals
        gk = rnn.lstm_backward(g, ghn, gcn, cache)
        return gk, (gk.h0, gk.c0)


class GRU(_Recurrent):
    """``torch.nn.GRU``: forward(x, h0=None) -> (output, h_n); gates r, z, n. Arguments,
    parameter names, dropout and merge_mode as :class:`LSTM`."""

    _gates = 3

    def _run(self, inp, initials, w, reverse, out):
        _, h, cache = rnn.gru_forward(inp, initials[0], *w, reverse=reverse, out=out)
        return (h,), cache

    def _run_backward(self, g, grad_finals, cache):
        gk = rnn.gru_backward(g, None if grad_finals is None else grad_finals[0], cache)
        return gk, (gk.h0,)


class RNN(_Recurrent):
    """``torch.nn.RNN`` (Elman): forward(x, h0=None) -> (output, h_n), h' = tanh or relu
    of (W_ih x + b_ih + W_hh h + b_hh). Arguments as :class:`LSTM` plus
    ``nonlinearity`` ("tanh" or "relu"), given after ``num_layers`` as in PyTorch."""

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, merge_mode="concat", *,
                 dtype=np.float32, rng=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, merge_mode, dtype=dtype, rng=rng)
        self.nonlinearity = nonlinearity

    def _extra(self):
        return "" if self.nonlinearity == "tanh" else f", nonlinearity={self.nonlinearity!r}"

    def _run(self, inp, initials, w, reverse, out):
        _, h, cache = rnn.rnn_forward(inp, initials[0], *w, nonlinearity=self.nonlinearity,
                                      reverse=reverse, out=out)
        return (h,), cache

    def _run_backward(self, g, grad_finals, cache):
        gk = rnn.rnn_backward(g, None if grad_finals is None else grad_finals[0], cache)
        return gk, (gk.h0,)


class _Cell(Module):
    """Shared by LSTMCell, GRUCell and RNNCell: one step of the cell kernels of ak.rnn,
    as torch.nn's cells. A cell is typically used once per time step: each use keeps its
    cache, backward calls run in reverse step order and sum the parameter gradients."""

    _gates = 1
    _param_names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")

    def __init__(self, input_size, hidden_size, bias=True, *, dtype=np.float32, rng=None):
        super().__init__()
        rng = _rng(rng)
        self.input_size, self.hidden_size = input_size, hidden_size
        bound = 1 / math.sqrt(hidden_size)
        gh = self._gates * hidden_size
        self.weight_ih = _uniform(rng, bound, (gh, input_size), dtype)
        self.weight_hh = _uniform(rng, bound, (gh, hidden_size), dtype)
        self.bias_ih = _uniform(rng, bound, (gh,), dtype) if bias else None
        self.bias_hh = _uniform(rng, bound, (gh,), dtype) if bias else None
        self._init_grads()

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias_ih is not None else ", bias=False")

    def _w(self):
        return self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh

    def _zeros(self, x):
        return _xp(x).zeros((x.shape[0], self.hidden_size), self.weight_ih.dtype)

    def _store(self, g):
        for n, v in zip(self._param_names, (g.w_ih, g.w_hh, g.b_ih, g.b_hh)):
            self._set_grad(n, v)


class LSTMCell(_Cell):
    """``torch.nn.LSTMCell``: forward(x, (h, c)=None) -> (h', c');
    backward(grad_h, grad_c=None) -> (grad_x, (grad_h_prev, grad_c_prev))."""

    _gates = 4

    def forward(self, x, state=None):
        h, c = (self._zeros(x), self._zeros(x)) if state is None else state
        h1, c1, cache = rnn.lstm_cell_forward(x, h, c, *self._w())
        self.cache = cache
        return h1, c1

    def backward(self, grad_h, grad_c=None):
        g = rnn.lstm_cell_backward(grad_h, grad_c, self._need_cache())
        self._store(g)
        return g.x, (g.h, g.c)


class GRUCell(_Cell):
    """``torch.nn.GRUCell``: forward(x, h=None) -> h'; backward(grad_h) -> (grad_x,
    grad_h_prev)."""

    _gates = 3

    def forward(self, x, h=None):
        h1, cache = rnn.gru_cell_forward(x, self._zeros(x) if h is None else h, *self._w())
        self.cache = cache
        return h1

    def backward(self, grad_h):
        g = rnn.gru_cell_backward(grad_h, self._need_cache())
        self._store(g)
        return g.x, g.h


class RNNCell(_Cell):
    """``torch.nn.RNNCell``: forward(x, h=None) -> h'; backward(grad_h) -> (grad_x,
    grad_h_prev); nonlinearity "tanh" or "relu"."""

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", *,
                 dtype=np.float32, rng=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNNCell: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__(input_size, hidden_size, bias, dtype=dtype, rng=rng)
        self.nonlinearity = nonlinearity

    def forward(self, x, h=None):
        h1, cache = rnn.rnn_cell_forward(x, self._zeros(x) if h is None else h, *self._w(),
                                         nonlinearity=self.nonlinearity)
        self.cache = cache
        return h1

    def backward(self, grad_h):
        g = rnn.rnn_cell_backward(grad_h, self._need_cache())
        self._store(g)
        return g.x, g.h


class AdditiveAttention(Module):
    """Additive (Bahdanau) attention (:func:`adlkernels.rnn.additive_attention_forward`):
    forward(query (B, query_size), keys (T, B, key_size), mask=None) -> (context
    (B, key_size), weights (B, T)); backward(grad_context, grad_weights=None) ->
    (grad_query, grad_keys). Parameters w_query (A, query_size), w_key (A, key_size),
    v (A,), with A = attention_size, drawn U(-1/sqrt(fan_in), 1/sqrt(fan_in)) as Linear's."""

    _param_names = ("w_query", "w_key", "v")

    def __init__(self, query_size, key_size, attention_size, *, dtype=np.float32, rng=None):
        super().__init__()
        rng = _rng(rng)
        self.w_query = _uniform(rng, 1 / math.sqrt(query_size), (attention_size, query_size), dtype)
        self.w_key = _uniform(rng, 1 / math.sqrt(key_size), (attention_size, key_size), dtype)
        self.v = _uniform(rng, 1 / math.sqrt(attention_size), (attention_size,), dtype)
        self._init_grads()

    def extra_repr(self):
        a, q = self.w_query.shape
        return f"query_size={q}, key_size={self.w_key.shape[1]}, attention_size={a}"

    def forward(self, query, keys, mask=None):
        context, weights, cache = rnn.additive_attention_forward(
            query, keys, self.w_query, self.w_key, self.v, mask)
        self.cache = cache
        return context, weights

    def backward(self, grad_context, grad_weights=None):
        g = rnn.additive_attention_backward(grad_context, grad_weights, self._need_cache())
        self._set_grad("w_query", g.w_query)
        self._set_grad("w_key", g.w_key)
        self._set_grad("v", g.v)
        return g.query, g.keys


# ---- checkpoints -------------------------------------------------------------------------------

_FORMAT = "adlkernels-checkpoint-1"


def save(path, model, optimizer=None, scheduler=None) -> None:
    """Writes ``model``'s state dict, and the optimizer's and the schedule's state if
    given, to ``path`` as one ``.npz`` file (arrays as arrays, everything else as JSON in
    one string entry; no pickle). :func:`load` restores them so that training resumes
    bit-identically. Device arrays are saved as numpy arrays."""
    arrays, meta = {}, {"format": _FORMAT, "model": {}, "optimizer": None, "scheduler": None}

    def host(a):
        return a.get() if is_device_array(a) else np.asarray(a)

    for k, v in model.state_dict().items():
        if _is_array(v):
            arrays[f"model/{k}"] = host(v)
        else:
            meta["model"][k] = v
    if optimizer is not None:
        d = optimizer.state_dict()
        meta["optimizer"] = {"type": type(optimizer).__name__, "steps": d["steps"],
                             "hyper": d["hyper"],
                             "state": {n: len(lst) for n, lst in d["state"].items()}}
        for n, lst in d["state"].items():
            for i, a in enumerate(lst):
                arrays[f"optimizer/{n}/{i}"] = host(a)
    if scheduler is not None:
        meta["scheduler"] = {"type": type(scheduler).__name__, **scheduler.state_dict()}
    arrays["__meta__"] = np.array(json.dumps(meta))
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def load(path, model, optimizer=None, scheduler=None) -> None:
    """Restores what :func:`save` wrote into ``model`` (and ``optimizer``, ``scheduler``
    when given; each must have been saved). Keys and shapes are checked before anything
    changes (ValueError naming what differs)."""
    with np.load(path, allow_pickle=False) as f:
        if "__meta__" not in f.files:
            raise ValueError(f"load: {path} is not an adlkernels checkpoint (no __meta__)")
        meta = json.loads(str(f["__meta__"]))
        if meta.get("format") != _FORMAT:
            raise ValueError(f"load: {path}: unknown format {meta.get('format')!r}")
        state = {k[len("model/"):]: f[k] for k in f.files if k.startswith("model/")}
        state.update(meta["model"])
        opt_state = None
        if optimizer is not None:
            om = meta["optimizer"]
            if om is None:
                raise ValueError(f"load: {path} holds no optimizer state")
            if om["type"] != type(optimizer).__name__:
                raise ValueError(f"load: {path} holds a {om['type']} state, not a "
                                 f"{type(optimizer).__name__}")
            opt_state = {"steps": om["steps"], "hyper": om["hyper"],
                         "state": {n: [f[f"optimizer/{n}/{i}"] for i in range(count)]
                                   for n, count in om["state"].items()}}
    sched_state = None
    if scheduler is not None:
        sm = meta["scheduler"]
        if sm is None or sm["type"] != type(scheduler).__name__:
            raise ValueError(f"load: {path} holds no {type(scheduler).__name__} state")
        sched_state = {k: v for k, v in sm.items() if k != "type"}
    # All or nothing: a part that does not fit puts back the parts already loaded.
    saved = [(model, model.state_dict())]
    try:
        model.load_state_dict(state)
        if opt_state is not None:
            saved.append((optimizer, optimizer.state_dict()))
            optimizer.load_state_dict(opt_state)
        if sched_state is not None:
            scheduler.load_state_dict(sched_state)
    except Exception:
        for obj, d in saved:
            obj.load_state_dict(d)
        raise
