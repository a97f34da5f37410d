"""Dropout, dense layers, activations, softmax and losses (docs/api/nn.md).

Elementwise kernels and per-row kernels (softmax, log_softmax, cross-entropy) run in
parallel over fixed pieces; losses sum fixed chunks in double and add the chunk sums in
order. Everything here is bitwise identical for any thread count except linear, whose
products are BLAS GEMMs.

Dropout's generator is Philox-4x32-10 (Salmon et al., SC'11), keyed by the 64-bit seed
(key words (seed & 0xffffffff, seed >> 32)) with the counter words (j & 0xffffffff,
j >> 32, 0, 0), j = i // 4, for element i of the flattened (C-order) array: the output
word i % 4 is u, and element i is kept when u >= t, t = p * 2^32 rounded to the nearest
integer (halves away from zero); t = 2^32 (p = 1) keeps nothing. P(keep) = 1 - p to
within 2^-33. The mask is a pure
function of (seed, i): the same for any thread count and on any device.

Embedding: the forward copies rows; the backward groups the positions by index with a
stable counting sort (on the GPU: cupy's argsort, which is stable) and sums each group
in position order, rows split across threads: no atomics, and bitwise the plain loop
``for p: grad_weight[indices[p]] += grad_y[p]`` for any thread count and on both devices.

Losses return (loss, grad_pred): the loss is a 0-d array of the input's type (or the
per-element array with reduction="none"), grad_pred the gradient of the returned loss
(for "none": of its sum).
"""

from __future__ import annotations

import numbers

import numpy as np

from . import _adlk, _cuda
from ._backend import backend_of, on_gpu
from ._validate import Args, fmt_shape

__all__ = [
    "dropout_forward", "dropout_backward", "linear_forward", "linear_backward",
    "relu_forward", "relu_backward", "leaky_relu_forward", "leaky_relu_backward",
    "sigmoid_forward", "sigmoid_backward", "tanh_forward", "tanh_backward",
    "softmax_forward", "softmax_backward", "log_softmax_forward", "log_softmax_backward",
    "softmax_cross_entropy", "mse_loss", "l1_loss", "huber_loss",
    "embedding_forward", "embedding_backward",
]

_REDUCTION_OF = dict(_adlk.Reduction.__members__)  # "mean", "sum", "none" -> enum value
_REDUCTIONS = tuple(_REDUCTION_OF)
_NO_REDUCTION = _adlk.Reduction.none


def _prob(a: Args, p):
    return a.real(p, "p", 0.0, 1.0)


def _reduction(a: Args, reduction):
    if reduction not in _REDUCTIONS:
        raise a.value_error("reduction", f"expected 'mean', 'sum' or 'none', got {reduction!r}")
    return _REDUCTION_OF[reduction]


def _pair_on(a: Args, fn_arrays: dict, first: str, second: str):
    """The two checked arrays of one shape and dtype, and whether the call runs on the GPU
    (cupy arrays; raises where the CUDA kernels are off)."""
    backend = backend_of(a.fn, fn_arrays)
    a.float_dtype(**fn_arrays)
    x = a.array(fn_arrays[first], first, "any shape")
    y = a.array(fn_arrays[second], second, fmt_shape(x.shape))
    a.shape(y, second, x.shape)
    return x, y, on_gpu(a.fn, backend)


def _one_on(a: Args, x, name="x"):
    """The checked array and whether the call runs on the GPU."""
    backend = backend_of(a.fn, {name: x})
    a.float_dtype(**{name: x})
    return a.array(x, name, "any shape"), on_gpu(a.fn, backend)


# ---- dropout -----------------------------------------------------------------------------


def dropout_forward(x, p, *, seed, training=True):
    """Inverted dropout: y = x * mask / (1 - p), mask a bool array of x's shape drawn by
    Philox-4x32-10 from (seed, element index) (module docstring). training=False or p = 0
    returns (a copy of x, all-True mask); p = 1 gives y = 0 and an all-False mask."""
    a = Args("dropout_forward")
    p = _prob(a, p)
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise a.type_error("seed", f"expected an int, got {type(seed).__name__}")
    if not 0 <= int(seed) < 2**64:
        raise a.value_error("seed", f"must be in [0, 2**64), got {seed}")
    training = a.boolean(training, "training")
    x, gpu = _one_on(a, x)
    if not training:
        return x.copy(), (_cuda._cp() if gpu else np).ones(x.shape, np.bool_)
    if gpu:
        return _cuda.dropout_forward(x, p, int(seed))
    y, mask = _adlk.dropout_forward(x.reshape(-1), p, int(seed))
    return y.reshape(x.shape), mask.reshape(x.shape)


def dropout_backward(grad_y, mask, p):
    """grad_x = grad_y * mask / (1 - p) (0 where p = 1)."""
    a = Args("dropout_backward")
    p = _prob(a, p)
    backend = backend_of(a.fn, dict(grad_y=grad_y, mask=mask))
    a.float_dtype(grad_y=grad_y)
    grad_y = a.array(grad_y, "grad_y", "any shape")
    a._require_array(mask, "mask")
    if np.dtype(mask.dtype) != np.bool_:
        raise a.type_error("mask", f"expected a bool array, got {mask.dtype}")
    mask = a.array(mask, "mask", fmt_shape(grad_y.shape))
    a.shape(mask, "mask", grad_y.shape)
    if isinstance(mask, np.ndarray):
        mask = mask.view(np.bool_)  # the canonical bool dtype (not a byte-swapped alias)
    if on_gpu(a.fn, backend):
        return _cuda.dropout_backward(grad_y, mask, p)
    return _adlk.dropout_backward(grad_y.reshape(-1), mask.reshape(-1), p).reshape(grad_y.shape)


# ---- linear ------------------------------------------------------------------------------


def linear_forward(x, weight, bias=None):
    """y = x @ weight.T + bias, as ``torch.nn.functional.linear``: x (B, I), weight (O, I),
    bias (O,) or None -> y (B, O). The bias is the GEMM's initial output."""
    a = Args("linear_forward")
    arrays = dict(x=x, weight=weight, bias=bias)
    backend = backend_of(a.fn, arrays)
    a.float_dtype(**arrays)
    x = a.array(x, "x", "(B, I)", ndim=2)
    weight = a.array(weight, "weight", f"(O, {x.shape[1]})", ndim=2)
    a.shape(weight, "weight", (None, x.shape[1]), f"(O, {x.shape[1]})")
    if bias is not None:
        bias = a.array(bias, "bias", f"({weight.shape[0]},)", ndim=1)
        a.shape(bias, "bias", (weight.shape[0],), f"({weight.shape[0]},)")
    if on_gpu(a.fn, backend):
        return _cuda.linear_forward(x, weight, bias)
    return _adlk.linear_forward(x, weight, bias)


def linear_backward(grad_y, x, weight, output_mask=(True, True, True)):
    """(grad_x, grad_weight, grad_bias) of :func:`linear_forward`; an entry whose
    output_mask flag is False is None. grad_bias sums grad_y's rows in order."""
    a = Args("linear_backward")
    arrays = dict(grad_y=grad_y, x=x, weight=weight)
    backend = backend_of(a.fn, arrays)
    a.float_dtype(**arrays)
    mask = a.flags(output_mask, "output_mask", 3)
    x = a.array(x, "x", "(B, I)", ndim=2)
    weight = a.array(weight, "weight", f"(O, {x.shape[1]})", ndim=2)
    a.shape(weight, "weight", (None, x.shape[1]), f"(O, {x.shape[1]})")
    shape = (x.shape[0], weight.shape[0])
    grad_y = a.array(grad_y, "grad_y", fmt_shape(shape), ndim=2)
    a.shape(grad_y, "grad_y", shape)
    if on_gpu(a.fn, backend):
        return _cuda.linear_backward(grad_y, x, weight, mask)
    return _adlk.linear_backward(grad_y, x, weight, *mask)


# ---- activations ---------------------------------------------------------------------------

Activation = _adlk.Activation


def _activation(act, forward_doc: str, backward_doc: str, negative_slope=None):
    """The public (forward, backward) pair of one activation: forward(x), backward(grad_y,
    saved), saved being y when ``act.backward_takes_output`` else x; an activation with a
    ``negative_slope`` default takes it as the last argument of both."""
    name = act.name
    saved = "y" if act.backward_takes_output else "x"
    has_slope = negative_slope is not None

    def run_forward(x, slope):
        a = Args(f"{name}_forward")
        slope = a.real(slope, "negative_slope", allow_nan=True) if has_slope else 0.0
        x, gpu = _one_on(a, x)
        return (_cuda if gpu else _adlk).activation_forward(x, act, slope)

    def run_backward(grad_y, saved_value, slope):
        a = Args(f"{name}_backward")
        slope = a.real(slope, "negative_slope", allow_nan=True) if has_slope else 0.0
        g, s, gpu = _pair_on(a, {"grad_y": grad_y, saved: saved_value}, "grad_y", saved)
        return (_cuda if gpu else _adlk).activation_backward(g, s, act, slope)

    # Real signatures (keywords work as documented): forward(x[, negative_slope]),
    # backward(grad_y, x[, negative_slope]) or backward(grad_y, y).
    if has_slope:
        def forward(x, negative_slope=negative_slope):
            return run_forward(x, negative_slope)

        def backward(grad_y, x, negative_slope=negative_slope):
            return run_backward(grad_y, x, negative_slope)
    else:
        def forward(x):  # type: ignore[misc]
            return run_forward(x, None)

        if saved == "y":
            def backward(grad_y, y):  # type: ignore[misc]
                return run_backward(grad_y, y, None)
        else:
            def backward(grad_y, x):  # type: ignore[misc]
                return run_backward(grad_y, x, None)

    for fn, suffix, doc in ((forward, "forward", forward_doc), (backward, "backward", backward_doc)):
        fn.__name__ = fn.__qualname__ = f"{name}_{suffix}"
        fn.__doc__ = doc
    return forward, backward


# One row per activation (the kernel's cases are in cpp/src/nn.cpp, its enum in adlk/nn.h).
relu_forward, relu_backward = _activation(
    Activation.relu, "max(x, 0) (NaN stays NaN).", "grad_y where x > 0, else 0.")
leaky_relu_forward, leaky_relu_backward = _activation(
    Activation.leaky_relu, "x where x > 0, else negative_slope * x.",
    "grad_y where x > 0, else negative_slope * grad_y.", negative_slope=0.01)
sigmoid_forward, sigmoid_backward = _activation(
    Activation.sigmoid, "1 / (1 + exp(-x)), vectorized to within ~1 ulp.",
    "grad_y * y * (1 - y), from the forward's output y.")
tanh_forward, tanh_backward = _activation(
    Activation.tanh, "tanh(x), vectorized to within ~1 ulp (also near 0).",
    "grad_y * (1 - y^2), from the forward's output y.")


# ---- softmax -----------------------------------------------------------------------------


def _rows(x):
    """A (rows, K) view of an array over its last axis (at least 1-d)."""
    return x.reshape(int(np.prod(x.shape[:-1])), x.shape[-1])


def _last_axis(a: Args, x, name="x"):
    if x.ndim == 0:
        raise a.shape_error(name, "(..., K) with at least one axis", x.shape)
    return x


def _softmax(fn: str, x, log: bool):
    a = Args(fn)
    x, gpu = _one_on(a, x)
    x = _last_axis(a, x)
    if gpu:
        return _cuda.softmax_forward(x, log)
    if x.size == 0:
        return np.empty(x.shape, x.dtype)
    return _adlk.softmax_forward(_rows(x), log).reshape(x.shape)


def _softmax_grad(fn: str, grad_y, y, log: bool):
    a = Args(fn)
    g, y, gpu = _pair_on(a, dict(grad_y=grad_y, y=y), "grad_y", "y")
    _last_axis(a, y, "y")
    if gpu:
        return _cuda.softmax_backward(g, y, log)
    if y.size == 0:
        return np.empty(y.shape, y.dtype)
    return _adlk.softmax_backward(_rows(g), _rows(y), log).reshape(y.shape)


def softmax_forward(x):
    """Softmax over the last axis, stable for any logits (the row maximum is subtracted)."""
    return _softmax("softmax_forward", x, False)


def softmax_backward(grad_y, y):
    """grad_x = y * (grad_y - sum(grad_y * y)) per row, from the forward's output y."""
    return _softmax_grad("softmax_backward", grad_y, y, False)


def log_softmax_forward(x):
    """log(softmax(x)) over the last axis: (x - max) - log(sum(exp(x - max)))."""
    return _softmax("log_softmax_forward", x, True)


def log_softmax_backward(grad_y, y):
    """grad_x = grad_y - exp(y) * sum(grad_y) per row, from the forward's output y."""
    return _softmax_grad("log_softmax_backward", grad_y, y, True)


# ---- losses --------------------------------------------------------------------------------


def softmax_cross_entropy(logits, targets, reduction="mean", ignore_index=-100):
    """Cross-entropy of softmax(logits) against class indices, fused with its gradient:
    logits (B, K), targets int64 (B,) -> (loss, grad_logits), as
    ``torch.nn.functional.cross_entropy``. Rows whose target is ignore_index contribute
    nothing (mean divides by the number of other rows; if there are none the mean is NaN,
    as PyTorch). Targets outside [0, K) other than ignore_index raise ValueError."""
    a = Args("softmax_cross_entropy")
    red = _reduction(a, reduction)
    if isinstance(ignore_index, (bool, np.bool_)) or not isinstance(ignore_index, numbers.Integral):
        raise a.type_error("ignore_index", f"expected an int, got {type(ignore_index).__name__}")
    if not -(2**63) <= ignore_index < 2**63:  # it is compared with int64 targets
        raise a.value_error("ignore_index", f"must fit in int64, got {ignore_index}")
    backend = backend_of(a.fn, dict(logits=logits, targets=targets))
    a.float_dtype(logits=logits)
    logits = a.array(logits, "logits", "(B, K)", ndim=2)
    if logits.shape[1] == 0:
        raise a.shape_error("logits", "(B, K) with K >= 1", logits.shape)
    a._require_array(targets, "targets")
    if np.dtype(targets.dtype) != np.int64:
        raise a.type_error("targets", f"expected int64 class indices, got {targets.dtype}")
    targets = a.array(targets, "targets", f"({logits.shape[0]},)", ndim=1)
    a.shape(targets, "targets", (logits.shape[0],), f"({logits.shape[0]},)")
    if on_gpu(a.fn, backend):
        return _cuda.softmax_cross_entropy(logits, targets, red, int(ignore_index))
    loss, grad = _adlk.softmax_cross_entropy(logits, targets, red, int(ignore_index))
    return (loss if red is _NO_REDUCTION else np.asarray(loss, logits.dtype)), grad


def _loss(fn: str, kind, pred, target, reduction, delta=1.0):
    a = Args(fn)
    red = _reduction(a, reduction)
    p, t, gpu = _pair_on(a, dict(pred=pred, target=target), "pred", "target")
    if gpu:
        return _cuda.elementwise_loss(p, t, kind, red, float(delta))
    loss, grad = _adlk.elementwise_loss(p.reshape(-1), t.reshape(-1), kind, red, delta)
    return (loss.reshape(p.shape) if red is _NO_REDUCTION else np.asarray(loss, p.dtype)), grad.reshape(p.shape)


def mse_loss(pred, target, reduction="mean"):
    """(pred - target)^2, reduced; grad 2 (pred - target) (/ n for mean)."""
    return _loss("mse_loss", _adlk.LossKind.mse, pred, target, reduction)


def l1_loss(pred, target, reduction="mean"):
    """|pred - target|, reduced; grad sign(pred - target) (0 at 0; / n for mean)."""
    return _loss("l1_loss", _adlk.LossKind.l1, pred, target, reduction)


def huber_loss(pred, target, delta=1.0, reduction="mean"):
    """0.5 d^2 where |d| <= delta, else delta (|d| - 0.5 delta), d = pred - target, as
    ``torch.nn.functional.huber_loss``; grad d or delta * sign(d) (/ n for mean)."""
    a = Args("huber_loss")
    delta = a.real(delta, "delta", allow_nan=True)
    if not delta > 0:
        raise a.value_error("delta", f"must be > 0, got {delta}")
    return _loss("huber_loss", _adlk.LossKind.huber, pred, target, reduction, delta)


# ---- embedding -----------------------------------------------------------------------------

def _embedding_indices(a: Args, indices):
    """The index array, C-contiguous, int64 or int32 in native byte order."""
    a._require_array(indices, "indices")
    dt = np.dtype(indices.dtype)
    if dt.kind != "i" or dt.itemsize not in (4, 8):
        raise a.type_error("indices", f"expected int64 (or int32) indices, got {dt}")
    if isinstance(indices, np.ndarray) and not dt.isnative:
        indices = indices.astype(dt.newbyteorder("="))
    return a.array(indices, "indices", "any shape")


def _padding_idx(a: Args, padding_idx, num_embeddings: int):
    """padding_idx normalized to [0, V) as torch does (negative counts from the end), or None."""
    if padding_idx is None:
        return None
    if isinstance(padding_idx, (bool, np.bool_)) or not isinstance(padding_idx, numbers.Integral):
        raise a.type_error("padding_idx", f"expected an int or None, got {type(padding_idx).__name__}")
    v = int(padding_idx)
    if not -num_embeddings <= v < num_embeddings:
        raise a.value_error("padding_idx", f"must be in [-{num_embeddings}, {num_embeddings}), got {v}")
    return v + num_embeddings if v < 0 else v


def embedding_forward(indices, weight, padding_idx=None):
    """y = weight[indices], as ``torch.nn.functional.embedding``: indices an int64 (or
    int32) array of any shape, weight (V, D) -> y of shape indices.shape + (D,). An index
    outside [0, V) (negative ones included, as in torch) raises ValueError before anything
    is written. padding_idx (an int in [-V, V) or None) is checked but does not change the
    forward."""
    a = Args("embedding_forward")
    backend = backend_of(a.fn, dict(indices=indices, weight=weight))
    a.float_dtype(weight=weight)
    indices = _embedding_indices(a, indices)
    weight = a.array(weight, "weight", "(V, D)", ndim=2)
    _padding_idx(a, padding_idx, weight.shape[0])
    if on_gpu(a.fn, backend):
        return _cuda.embedding_forward(indices, weight)
    return a.run(_adlk.embedding_forward, indices, weight)


def embedding_backward(grad_y, indices, num_embeddings, padding_idx=None):
    """grad_weight (num_embeddings, D) of :func:`embedding_forward`: the rows of grad_y
    (indices.shape + (D,)) summed per index in position order (module docstring), row
    padding_idx zero. As the weight gradient of ``torch.nn.functional.embedding``. An index
    outside [0, num_embeddings) raises ValueError."""
    a = Args("embedding_backward")
    backend = backend_of(a.fn, dict(grad_y=grad_y, indices=indices))
    a.float_dtype(grad_y=grad_y)
    indices = _embedding_indices(a, indices)
    if isinstance(num_embeddings, (bool, np.bool_)) or not isinstance(num_embeddings, numbers.Integral):
        raise a.type_error("num_embeddings", f"expected an int, got {type(num_embeddings).__name__}")
    num_embeddings = int(num_embeddings)
    if not 0 <= num_embeddings < 2**63:
        raise a.value_error("num_embeddings", f"must be >= 0, got {num_embeddings}")
    pad = _padding_idx(a, padding_idx, num_embeddings)
    desc = fmt_shape((*indices.shape, "D"))
    grad_y = a.array(grad_y, "grad_y", desc, ndim=indices.ndim + 1)
    a.shape(grad_y, "grad_y", tuple(indices.shape) + (None,), desc)
    a.size_fits("num_embeddings", (num_embeddings, grad_y.shape[-1]), "grad_weight")
    if on_gpu(a.fn, backend):
        return _cuda.embedding_backward(grad_y, indices, num_embeddings, pad)
    return a.run(_adlk.embedding_backward, grad_y, indices, num_embeddings, pad)
