"""The custom operators (namespace ``adlk``) and the functions that call them.

Every forward and every backward is its own ``torch.library.custom_op``, with a fake
implementation (shapes only) so torch.compile traces through it without a graph break;
the autograd formula of each forward op calls its backward op. The ops run the
adlkernels kernels on zero-copy DLPack views of the tensors, so an op's real
implementation is only conversion plus the kernel call. Argument checking is the
kernels' own: a bad argument raises the same ValueError/TypeError as the array API.

Ops return only tensors; a gradient the caller did not ask for (an ``output_mask``
entry False, or a bias that is None) comes back as an empty tensor and is turned into
None by the autograd formula.

Eager calls on plain tensors take a shorter road to the same implementation: a
``torch.autograd.Function`` built from the op's own implementation, setup and backward
functions. Going through the dispatcher to a Python custom op costs ~100-200 us per call
(several Python layers: autograd wrapper, redispatch, dynamo guards), more than many of
the kernels themselves take on small batches. Whenever anything else is looking —
torch.compile tracing, fake or subclass tensors, an active dispatch mode (make_fx,
export) — the call goes to the registered op.
"""

from __future__ import annotations

import contextlib
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.dlpack import from_dlpack as _from_dlpack
from torch.utils.dlpack import to_dlpack as _to_dlpack

from .. import _adlk
from .. import conv as _conv
from .. import nn as _nn
from .. import norm as _norm
from .. import pool as _pool
from .. import rnn as _rnn
from ..pool import _pooled_size

Tensor = torch.Tensor

__all__ = [
    "conv2d",
    "max_pool2d",
    "max_unpool2d",
    "avg_pool2d",
    "batch_norm",
    "layer_norm",
    "linear",
    "cross_entropy",
    "dropout",
    "lstm",
]

# ---- crossing over ------------------------------------------------------------------


class _Capsule:
    """Hands numpy.from_dlpack a capsule made by torch's C exporter: Tensor.__dlpack__
    is a Python method with several checks, ~4x the cost of the export itself."""

    __slots__ = ("capsule",)

    def __init__(self, capsule):
        self.capsule = capsule

    def __dlpack__(self, stream=None, max_version=None, dl_device=None, copy=None):
        return self.capsule

    def __dlpack_device__(self):
        return (1, 0)  # kDLCPU


def _array(t: Optional[Tensor]):
    """A read-only numpy (CPU) or cupy (CUDA) view of t's memory, or None."""
    if t is None:
        return None
    t = t.detach()
    if t.is_cpu:
        return np.from_dlpack(_Capsule(_to_dlpack(t)))
    if t.is_cuda:
        import cupy

        return cupy.from_dlpack(t)
    raise ValueError(f"adlkernels.torch: tensors on {t.device} are not supported (cpu or cuda)")


def _tensor(a) -> Tensor:
    return _from_dlpack(a.__dlpack__())


class _CudaStream:
    """Runs the kernels on torch's current stream of t's device (CuPy's current stream
    is what the CUDA kernels launch on)."""

    def __init__(self, t: Tensor):
        self.device = t.device

    def __enter__(self):
        import cupy

        self.scope = contextlib.ExitStack()
        self.scope.enter_context(cupy.cuda.Device(self.device.index))
        stream = torch.cuda.current_stream(self.device)
        self.scope.enter_context(cupy.cuda.ExternalStream(stream.cuda_stream, self.device.index))
        return self

    def __exit__(self, *exc):
        return self.scope.__exit__(*exc)


_HOST = contextlib.nullcontext()


def _stream_of(t: Tensor):
    return _CudaStream(t) if t.is_cuda else _HOST


def _none_empty(a, like: Tensor) -> Tensor:
    """An optional gradient as a tensor: empty when the kernel returned None."""
    return like.new_empty((0,)) if a is None else _tensor(a)


def _grad_or_none(t: Optional[Tensor], wanted: bool) -> Optional[Tensor]:
    return t if wanted else None


def _pair(v, name: str, fn: str) -> List[int]:
    if isinstance(v, bool) or isinstance(v, torch.Tensor):
        raise TypeError(f"{fn}: {name} must be an int or a pair of ints, got {type(v).__name__}")
    if isinstance(v, int):
        return [v, v]
    try:
        out = list(v)
    except TypeError:
        raise TypeError(f"{fn}: {name} must be an int or a pair of ints, got {type(v).__name__}") from None
    if len(out) != 2 or any(isinstance(e, bool) or not isinstance(e, int) for e in out):
        raise ValueError(f"{fn}: {name} must be an int or a pair of ints, got {v!r}")
    return out


def _pool_stride(stride, kernel, fn: str) -> List[int]:
    """torch's pooling stride: None or an empty sequence means the kernel size."""
    if stride is None or (not isinstance(stride, int) and len(stride) == 0):
        return kernel
    return _pair(stride, "stride", fn)


def _conv_size(n, k, s, p, d):
    if isinstance(n, int):
        return _adlk.conv_output_size(n, k, s, p, d)
    # A symbolic size (torch.compile with dynamic shapes) stays symbolic: the same formula
    # on SymInts (the compiled one would specialize it to an int).
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


# ---- argument checks of the public functions -------------------------------------------

_FLOAT_DTYPES = (torch.float32, torch.float64)


def _check_tensors(fn: str, optional=(), index=(), **tensors) -> None:
    """Each argument must be a torch tensor of float32/float64 (``index`` ones int64) on
    the CPU or a CUDA device; ``optional`` ones may be None. Runs before anything crosses
    over, so a numpy array or a bfloat16 tensor gets a message that says how to fix it."""
    for name, t in tensors.items():
        if t is None and name in optional:
            continue
        if not isinstance(t, torch.Tensor):
            hint = (" (torch.from_numpy(a) makes one; adlkernels' own functions take numpy "
                    "arrays)" if isinstance(t, np.ndarray) else "")
            raise TypeError(f"{fn}: {name}: expected a torch.Tensor, got {type(t).__name__}{hint}")
        if name in index:
            if t.dtype != torch.int64:
                raise TypeError(f"{fn}: {name}: expected int64 indices, got {t.dtype} "
                                f"(cast with {name}.long())")
        elif t.dtype not in _FLOAT_DTYPES:
            hint = (f"; cast with {name}.float() (or {name}.double())"
                    if t.is_floating_point() else "")
            raise TypeError(f"{fn}: {name}: dtype {t.dtype} is not supported, the kernels take "
                            f"float32 or float64{hint}")
        if t.device.type not in ("cpu", "cuda"):
            raise ValueError(f"{fn}: {name}: tensors on {t.device} are not supported (cpu or cuda)")


# ---- one op: the registered custom op and its eager shortcut ------------------------

_PLAIN_TENSORS = (torch.Tensor, torch.nn.Parameter)


def _dispatch_mode_active() -> bool:
    stack_len = getattr(torch._C, "_len_torch_dispatch_stack", None)
    return stack_len is None or stack_len() > 0


def _eager(args) -> bool:
    """True when a call may skip the dispatcher: eager mode, plain tensors only."""
    if (torch.compiler.is_compiling() or _dispatch_mode_active()
            or torch._C._are_functorch_transforms_active()):
        return False
    return all(type(a) in _PLAIN_TENSORS for a in args if isinstance(a, torch.Tensor))


class _Op:
    """A custom op ``adlk::<name>`` made from ``impl`` (type-annotated: the schema), plus
    an autograd.Function of the same impl/setup/backward for eager calls."""

    def __init__(self, name: str, impl):
        self.impl = impl
        self.op = torch.library.custom_op(f"adlk::{name}", impl, mutates_args=())
        self.function = None

    def fake(self, fn):
        self.op.register_fake(fn)
        return fn

    def autograd(self, backward, setup_context) -> None:
        self.op.register_autograd(backward, setup_context=setup_context)

        impl = self.impl

        # Old-style forward(ctx, ...): a separate setup_context makes Function.apply bind
        # the arguments through inspect.signature on every call (~80 us).
        def forward(ctx, *inputs):
            output = impl(*inputs)
            ctx.set_materialize_grads(False)  # no zero tensors for unused outputs (gates...)
            ctx.num_inputs = len(inputs)
            setup_context(ctx, inputs, output)
            return output

        def eager_backward(ctx, *grads):
            if all(g is None for g in grads):  # nothing flowed back: no gradients
                return (None,) * ctx.num_inputs
            return backward(ctx, *grads)

        self.function = type(impl.__name__, (torch.autograd.Function,), {
            "forward": staticmethod(forward), "backward": staticmethod(eager_backward)})

    def __call__(self, *args):
        if not _eager(args):
            return self.op(*args)
        return self.impl(*args) if self.function is None else self.function.apply(*args)


# ---- convolution ----------------------------------------------------------------------


def _conv2d_impl(x: Tensor, weight: Tensor, bias: Optional[Tensor], stride: Sequence[int],
                 padding: Sequence[int], dilation: Sequence[int], groups: int) -> Tensor:
    with _stream_of(x):
        y = _conv.conv2d_forward(_array(x), _array(weight), _array(bias), tuple(stride),
                                 tuple(padding), tuple(dilation), groups)
    return _tensor(y)


_conv2d = _Op("conv2d", _conv2d_impl)


@_conv2d.fake
def _(x, weight, bias, stride, padding, dilation, groups):
    hw = [_conv_size(x.shape[2 + i], weight.shape[2 + i], stride[i], padding[i], dilation[i])
          for i in range(2)]
    return x.new_empty((x.shape[0], weight.shape[0], *hw))


def _conv2d_backward_impl(grad_y: Tensor, x: Tensor, weight: Tensor, stride: Sequence[int],
                          padding: Sequence[int], dilation: Sequence[int], groups: int,
                          output_mask: Sequence[bool]) -> Tuple[Tensor, Tensor, Tensor]:
    with _stream_of(x):
        gx, gw, gb = _conv.conv2d_backward(_array(grad_y), _array(x), _array(weight),
                                           tuple(stride), tuple(padding), tuple(dilation),
                                           groups, tuple(output_mask))
    return _none_empty(gx, x), _none_empty(gw, x), _none_empty(gb, x)


_conv2d_backward = _Op("conv2d_backward", _conv2d_backward_impl)


@_conv2d_backward.fake
def _(grad_y, x, weight, stride, padding, dilation, groups, output_mask):
    shapes = (x.shape, weight.shape, (weight.shape[0],))
    return tuple(x.new_empty(s if m else (0,)) for s, m in zip(shapes, output_mask))


def _conv2d_setup(ctx, inputs, output):
    x, weight, bias, stride, padding, dilation, groups = inputs
    ctx.save_for_backward(x, weight)
    ctx.geometry = (stride, padding, dilation, groups)


def _conv2d_grad(ctx, grad_y):
    x, weight = ctx.saved_tensors
    mask = list(ctx.needs_input_grad[:3])
    gx, gw, gb = _conv2d_backward(grad_y, x, weight, *ctx.geometry, mask)
    return (_grad_or_none(gx, mask[0]), _grad_or_none(gw, mask[1]), _grad_or_none(gb, mask[2]),
            None, None, None, None)


_conv2d.autograd(_conv2d_grad, _conv2d_setup)


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """As ``torch.nn.functional.conv2d`` (int or pair stride/padding/dilation): im2col +
    GEMM on the CPU. x (N, C_in, H, W), weight (C_out, C_in/groups, kH, kW)."""
    fn = "conv2d"
    _check_tensors(fn, optional=("bias",), x=x, weight=weight, bias=bias)
    return _conv2d(x, weight, bias, _pair(stride, "stride", fn), _pair(padding, "padding", fn),
                   _pair(dilation, "dilation", fn), groups)


# ---- pooling --------------------------------------------------------------------------


def _max_pool2d_impl(x: Tensor, kernel_size: Sequence[int], stride: Sequence[int],
                     padding: Sequence[int], dilation: Sequence[int],
                     ceil_mode: bool) -> Tuple[Tensor, Tensor]:
    with _stream_of(x):
        y, idx = _pool.maxpool2d_forward(_array(x), tuple(kernel_size), tuple(stride),
                                         tuple(padding), tuple(dilation), ceil_mode)
    return _tensor(y), _tensor(idx)


def _pooled_hw(x, kernel_size, stride, padding, dilation, ceil_mode):
    return [_pooled_size_sym(x.shape[2 + i], kernel_size[i], stride[i], padding[i], dilation[i],
                             ceil_mode) for i in range(2)]


def _pooled_size_sym(n, k, s, p, d, ceil_mode):
    if isinstance(n, int):
        return _pooled_size(n, k, s, p, d, ceil_mode)
    # Symbolic size: adlk/pool.h's formula on SymInts (see _conv_size).
    out = (n + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    return out - 1 if ceil_mode and (out - 1) * s >= n + p else out


_max_pool2d = _Op("max_pool2d", _max_pool2d_impl)


@_max_pool2d.fake
def _(x, kernel_size, stride, padding, dilation, ceil_mode):
    shape = (x.shape[0], x.shape[1], *_pooled_hw(x, kernel_size, stride, padding, dilation,
                                                 ceil_mode))
    return x.new_empty(shape), x.new_empty(shape, dtype=torch.int64)


def _max_pool2d_backward_impl(grad_y: Tensor, indices: Tensor, input_size: Sequence[int],
                              kernel_size: Optional[Sequence[int]] = None,
                              stride: Optional[Sequence[int]] = None,
                              padding: Optional[Sequence[int]] = None,
                              dilation: Optional[Sequence[int]] = None,
                              ceil_mode: bool = False) -> Tensor:
    # With the forward's window (autograd passes it), CUDA tensors take the gather kernel.
    window = None
    if kernel_size is not None and stride is not None and padding is not None and dilation is not None:
        window = (tuple(kernel_size), tuple(stride), tuple(padding), tuple(dilation), ceil_mode)
    with _stream_of(grad_y):
        gx = _pool._maxpool2d_backward(_array(grad_y), _array(indices), tuple(input_size), window)
    return _tensor(gx)


def _grad_x_shape(grad_y, input_size):
    # input_size is (N, C, H, W) or (H, W), as the kernels accept; N and C are grad_y's.
    return (*grad_y.shape[:2], *input_size[-2:])


_max_pool2d_backward = _Op("max_pool2d_backward", _max_pool2d_backward_impl)


@_max_pool2d_backward.fake
def _(grad_y, indices, input_size, kernel_size=None, stride=None, padding=None, dilation=None,
      ceil_mode=False):
    return grad_y.new_empty(_grad_x_shape(grad_y, input_size))


def _max_pool2d_setup(ctx, inputs, output):
    ctx.save_for_backward(output[1])
    ctx.input_size = list(inputs[0].shape)
    ctx.window = [list(v) for v in inputs[1:5]] + [bool(inputs[5])]
    ctx.mark_non_differentiable(output[1])


def _max_pool2d_grad(ctx, grad_y, grad_indices):
    (indices,) = ctx.saved_tensors
    return (_max_pool2d_backward(grad_y, indices, ctx.input_size, *ctx.window),
            None, None, None, None, None)


_max_pool2d.autograd(_max_pool2d_grad, _max_pool2d_setup)


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """As ``torch.nn.functional.max_pool2d``; with return_indices, (y, indices) where
    indices (int64) are flat h*W + w positions in each input plane."""
    fn = "max_pool2d"
    _check_tensors(fn, x=x)
    k = _pair(kernel_size, "kernel_size", fn)
    s = _pool_stride(stride, k, fn)
    y, idx = _max_pool2d(x, k, s, _pair(padding, "padding", fn), _pair(dilation, "dilation", fn),
                         bool(ceil_mode))
    return (y, idx) if return_indices else y


def _max_unpool2d_impl(x: Tensor, indices: Tensor, output_size: Sequence[int]) -> Tensor:
    with _stream_of(x):
        y = _pool.max_unpool2d(_array(x), _array(indices), tuple(output_size))
    return _tensor(y)


_max_unpool2d = _Op("max_unpool2d", _max_unpool2d_impl)


@_max_unpool2d.fake
def _(x, indices, output_size):
    return x.new_empty((x.shape[0], x.shape[1], *output_size))


def _max_unpool2d_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[1])


def _max_unpool2d_grad(ctx, grad_y):
    # Each input element went to one output position: its gradient is a gather there.
    # flatten, not reshape(n, c, -1), which fails on an empty batch; an index -1 (the
    # kernels' "no element", skipped by the forward) gets gradient 0.
    (indices,) = ctx.saved_tensors
    idx = indices.flatten(2)
    gx = torch.gather(grad_y.flatten(2), 2, idx.clamp(min=0))
    gx = torch.where(idx >= 0, gx, torch.zeros_like(gx))
    return gx.reshape(indices.shape), None, None


_max_unpool2d.autograd(_max_unpool2d_grad, _max_unpool2d_setup)


def max_unpool2d(x, indices, kernel_size, stride=None, padding=0, output_size=None):
    """As ``torch.nn.functional.max_unpool2d``: zeros except the pooled values put back at
    their indices. output_size (H, W) or (N, C, H, W); default (h - 1) * stride -
    2 * padding + kernel_size per axis. Out-of-range indices raise ValueError."""
    fn = "max_unpool2d"
    _check_tensors(fn, index=("indices",), x=x, indices=indices)
    k = _pair(kernel_size, "kernel_size", fn)
    s = k if stride is None else _pair(stride, "stride", fn)
    p = _pair(padding, "padding", fn)
    if output_size is None:
        size = [(x.shape[2 + i] - 1) * s[i] - 2 * p[i] + k[i] for i in range(2)]
    else:
        size = list(output_size)
        if len(size) not in (2, 4):
            raise ValueError(f"{fn}: output_size must be (H, W) or (N, C, H, W), got {output_size!r}")
        size = [int(v) for v in size[-2:]]
    return _max_unpool2d(x, indices, size)


def _avg_pool2d_impl(x: Tensor, kernel_size: Sequence[int], stride: Sequence[int],
                     padding: Sequence[int], ceil_mode: bool, count_include_pad: bool) -> Tensor:
    with _stream_of(x):
        y = _pool.avgpool2d_forward(_array(x), tuple(kernel_size), tuple(stride), tuple(padding),
                                    ceil_mode, count_include_pad)
    return _tensor(y)


_avg_pool2d = _Op("avg_pool2d", _avg_pool2d_impl)


@_avg_pool2d.fake
def _(x, kernel_size, stride, padding, ceil_mode, count_include_pad):
    hw = _pooled_hw(x, kernel_size, stride, padding, (1, 1), ceil_mode)
    return x.new_empty((x.shape[0], x.shape[1], *hw))


def _avg_pool2d_backward_impl(grad_y: Tensor, input_size: Sequence[int], kernel_size: Sequence[int],
                              stride: Sequence[int], padding: Sequence[int], ceil_mode: bool,
                              count_include_pad: bool) -> Tensor:
    with _stream_of(grad_y):
        gx = _pool.avgpool2d_backward(_array(grad_y), tuple(input_size), tuple(kernel_size),
                                      tuple(stride), tuple(padding), ceil_mode, count_include_pad)
    return _tensor(gx)


_avg_pool2d_backward = _Op("avg_pool2d_backward", _avg_pool2d_backward_impl)


@_avg_pool2d_backward.fake
def _(grad_y, input_size, kernel_size, stride, padding, ceil_mode, count_include_pad):
    return grad_y.new_empty(_grad_x_shape(grad_y, input_size))


def _avg_pool2d_setup(ctx, inputs, output):
    ctx.args = (list(inputs[0].shape), *inputs[1:])


def _avg_pool2d_grad(ctx, grad_y):
    return _avg_pool2d_backward(grad_y, *ctx.args), None, None, None, None, None


_avg_pool2d.autograd(_avg_pool2d_grad, _avg_pool2d_setup)


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """As ``torch.nn.functional.avg_pool2d`` (no divisor_override)."""
    fn = "avg_pool2d"
    _check_tensors(fn, x=x)
    k = _pair(kernel_size, "kernel_size", fn)
    s = _pool_stride(stride, k, fn)
    return _avg_pool2d(x, k, s, _pair(padding, "padding", fn), bool(ceil_mode),
                       bool(count_include_pad))


# ---- normalization --------------------------------------------------------------------


# Functional (an op with an autograd formula may not mutate its inputs): the updated
# running statistics come back as new tensors that batch_norm copies into the buffers.
def _batch_norm_impl(x: Tensor, running_mean: Optional[Tensor], running_var: Optional[Tensor],
                     weight: Optional[Tensor], bias: Optional[Tensor], training: bool,
                     momentum: float, eps: float) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    rm, rv = _array(running_mean), _array(running_var)
    if training:
        rm = None if rm is None else rm.copy()
        rv = None if rv is None else rv.copy()
    with _stream_of(x):
        y, mean, invstd = _norm.batchnorm_forward(
            _array(x), _array(weight), _array(bias), rm, rv,
            training=training, momentum=momentum, eps=eps)
    new_rm = _tensor(rm) if training and rm is not None else x.new_empty((0,))
    new_rv = _tensor(rv) if training and rv is not None else x.new_empty((0,))
    return _tensor(y), _tensor(mean), _tensor(invstd), new_rm, new_rv


_batch_norm = _Op("batch_norm", _batch_norm_impl)


@_batch_norm.fake
def _(x, running_mean, running_var, weight, bias, training, momentum, eps):
    c = x.shape[1]
    rm = (c,) if training and running_mean is not None else (0,)
    rv = (c,) if training and running_var is not None else (0,)
    return (x.new_empty(x.shape), x.new_empty((c,)), x.new_empty((c,)), x.new_empty(rm),
            x.new_empty(rv))


def _batch_norm_backward_impl(grad_y: Tensor, x: Tensor, weight: Optional[Tensor], save_mean: Tensor,
                              save_invstd: Tensor, training: bool) -> Tuple[Tensor, Tensor, Tensor]:
    with _stream_of(x):
        gx, gw, gb = _norm.batchnorm_backward(_array(grad_y), _array(x), _array(weight),
                                              _array(save_mean), _array(save_invstd),
                                              training=training)
    return _tensor(gx), _tensor(gw), _tensor(gb)


_batch_norm_backward = _Op("batch_norm_backward", _batch_norm_backward_impl)


@_batch_norm_backward.fake
def _(grad_y, x, weight, save_mean, save_invstd, training):
    c = x.shape[1]
    return x.new_empty(x.shape), x.new_empty((c,)), x.new_empty((c,))


def _batch_norm_setup(ctx, inputs, output):
    x, _, _, weight, _, training, _, _ = inputs
    ctx.save_for_backward(x, weight, output[1], output[2])
    ctx.training = training
    ctx.mark_non_differentiable(*output[1:])


def _batch_norm_grad(ctx, grad_y, grad_mean, grad_invstd, grad_rm, grad_rv):
    x, weight, mean, invstd = ctx.saved_tensors
    gx, gw, gb = _batch_norm_backward(grad_y, x, weight, mean, invstd, ctx.training)
    need = ctx.needs_input_grad
    return (_grad_or_none(gx, need[0]), None, None, _grad_or_none(gw, need[3]),
            _grad_or_none(gb, need[4]), None, None, None)


_batch_norm.autograd(_batch_norm_grad, _batch_norm_setup)


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """As ``torch.nn.functional.batch_norm``: x (N, C), (N, C, L) or (N, C, H, W); the
    running statistics (or None) are updated in place when training. momentum=None
    (a cumulative average) is not supported."""
    _check_tensors("batch_norm", optional=("running_mean", "running_var", "weight", "bias"),
                   x=x, running_mean=running_mean, running_var=running_var, weight=weight,
                   bias=bias)
    if momentum is None:
        raise ValueError("batch_norm: momentum=None (cumulative moving average) is not supported")
    y, _, _, new_mean, new_var = _batch_norm(x, running_mean, running_var, weight, bias,
                                             bool(training), float(momentum), float(eps))
    if training:
        with torch.no_grad():
            if running_mean is not None:
                running_mean.copy_(new_mean)
            if running_var is not None:
                running_var.copy_(new_var)
    return y


def _ln_stat_shape(x, normalized_shape):
    k = len(normalized_shape)
    return tuple(x.shape[: x.dim() - k]) + (1,) * k


def _layer_norm_impl(x: Tensor, normalized_shape: Sequence[int], weight: Optional[Tensor],
                     bias: Optional[Tensor], eps: float) -> Tuple[Tensor, Tensor, Tensor]:
    with _stream_of(x):
        y, mean, rstd = _norm.layernorm_forward(_array(x), tuple(normalized_shape),
                                                _array(weight), _array(bias), eps)
    return _tensor(y), _tensor(mean), _tensor(rstd)


_layer_norm = _Op("layer_norm", _layer_norm_impl)


@_layer_norm.fake
def _(x, normalized_shape, weight, bias, eps):
    stat = _ln_stat_shape(x, normalized_shape)
    return x.new_empty(x.shape), x.new_empty(stat), x.new_empty(stat)


def _layer_norm_backward_impl(grad_y: Tensor, x: Tensor, normalized_shape: Sequence[int], mean: Tensor,
                              rstd: Tensor, weight: Optional[Tensor]) -> Tuple[Tensor, Tensor, Tensor]:
    with _stream_of(x):
        gx, gw, gb = _norm.layernorm_backward(_array(grad_y), _array(x), tuple(normalized_shape),
                                              _array(mean), _array(rstd), _array(weight))
    return _tensor(gx), _tensor(gw), _tensor(gb)


_layer_norm_backward = _Op("layer_norm_backward", _layer_norm_backward_impl)


@_layer_norm_backward.fake
def _(grad_y, x, normalized_shape, mean, rstd, weight):
    ns = tuple(normalized_shape)
    return x.new_empty(x.shape), x.new_empty(ns), x.new_empty(ns)


def _layer_norm_setup(ctx, inputs, output):
    x, normalized_shape, weight, _, _ = inputs
    ctx.save_for_backward(x, weight, output[1], output[2])
    ctx.normalized_shape = normalized_shape
    ctx.mark_non_differentiable(output[1], output[2])


def _layer_norm_grad(ctx, grad_y, grad_mean, grad_rstd):
    x, weight, mean, rstd = ctx.saved_tensors
    gx, gw, gb = _layer_norm_backward(grad_y, x, ctx.normalized_shape, mean, rstd, weight)
    need = ctx.needs_input_grad
    return (_grad_or_none(gx, need[0]), None, _grad_or_none(gw, need[2]),
            _grad_or_none(gb, need[3]), None)


_layer_norm.autograd(_layer_norm_grad, _layer_norm_setup)


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """As ``torch.nn.functional.layer_norm`` over the trailing normalized_shape axes."""
    _check_tensors("layer_norm", optional=("weight", "bias"), x=x, weight=weight, bias=bias)
    if isinstance(normalized_shape, int) and not isinstance(normalized_shape, bool):
        normalized_shape = [normalized_shape]
    return _layer_norm(x, list(normalized_shape), weight, bias, float(eps))[0]


# ---- dense, loss, dropout -------------------------------------------------------------


def _linear_impl(x: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
    with _stream_of(x):
        y = _nn.linear_forward(_array(x), _array(weight), _array(bias))
    return _tensor(y)


_linear = _Op("linear", _linear_impl)


@_linear.fake
def _(x, weight, bias):
    return x.new_empty((x.shape[0], weight.shape[0]))


def _linear_backward_impl(grad_y: Tensor, x: Tensor, weight: Tensor,
                          output_mask: Sequence[bool]) -> Tuple[Tensor, Tensor, Tensor]:
    with _stream_of(x):
        gx, gw, gb = _nn.linear_backward(_array(grad_y), _array(x), _array(weight),
                                         tuple(output_mask))
    return _none_empty(gx, x), _none_empty(gw, x), _none_empty(gb, x)


_linear_backward = _Op("linear_backward", _linear_backward_impl)


@_linear_backward.fake
def _(grad_y, x, weight, output_mask):
    shapes = (x.shape, weight.shape, (weight.shape[0],))
    return tuple(x.new_empty(s if m else (0,)) for s, m in zip(shapes, output_mask))


def _linear_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[0], inputs[1])


def _linear_grad(ctx, grad_y):
    x, weight = ctx.saved_tensors
    mask = list(ctx.needs_input_grad[:3])
    gx, gw, gb = _linear_backward(grad_y, x, weight, mask)
    return _grad_or_none(gx, mask[0]), _grad_or_none(gw, mask[1]), _grad_or_none(gb, mask[2])


_linear.autograd(_linear_grad, _linear_setup)


def linear(x, weight, bias=None):
    """As ``torch.nn.functional.linear``: x (..., I) @ weight.T + bias; the leading axes
    are flattened into the GEMM's rows."""
    _check_tensors("linear", optional=("bias",), x=x, weight=weight, bias=bias)
    if x.dim() == 2:
        return _linear(x, weight, bias)
    if x.dim() == 0:
        raise ValueError(f"linear: x must have at least 1 dimension (..., I), got shape {tuple(x.shape)}")
    lead = x.shape[:-1]
    y = _linear(x.reshape(-1, x.shape[-1]), weight, bias)
    return y.reshape(*lead, y.shape[-1])


_REDUCTIONS = ("mean", "sum", "none")


def _cross_entropy_impl(logits: Tensor, targets: Tensor, reduction: str,
                        ignore_index: int) -> Tuple[Tensor, Tensor]:
    with _stream_of(logits):
        loss, grad = _nn.softmax_cross_entropy(_array(logits), _array(targets), reduction,
                                               ignore_index)
    return _tensor(loss), _tensor(grad)


_cross_entropy = _Op("cross_entropy", _cross_entropy_impl)


@_cross_entropy.fake
def _(logits, targets, reduction, ignore_index):
    loss_shape = (logits.shape[0],) if reduction == "none" else ()
    return logits.new_empty(loss_shape), logits.new_empty(logits.shape)


def _cross_entropy_setup(ctx, inputs, output):
    ctx.save_for_backward(output[1])
    ctx.per_row = inputs[2] == "none"
    ctx.mark_non_differentiable(output[1])


def _cross_entropy_grad(ctx, grad_loss, grad_grad):
    # The fused kernel already produced d loss / d logits (of the sum for "none").
    (grad_logits,) = ctx.saved_tensors
    scale = grad_loss.unsqueeze(-1) if ctx.per_row else grad_loss
    return grad_logits * scale, None, None, None


_cross_entropy.autograd(_cross_entropy_grad, _cross_entropy_setup)


def cross_entropy(logits, targets, reduction="mean", ignore_index=-100):
    """As ``torch.nn.functional.cross_entropy`` for logits (B, K) and int64 class
    indices (B,): one fused pass computes the loss and its gradient."""
    _check_tensors("cross_entropy", index=("targets",), logits=logits, targets=targets)
    if reduction not in _REDUCTIONS:
        raise ValueError(f"cross_entropy: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise TypeError(f"cross_entropy: ignore_index must be an int, got {type(ignore_index).__name__}")
    return _cross_entropy(logits, targets, reduction, ignore_index)[0]


# The schema's int is signed 64-bit; seeds are [0, 2**64): carried as their two's complement.
def _seed_to_i64(seed: int) -> int:
    return seed - 2**64 if seed >= 2**63 else seed


def _dropout_impl(x: Tensor, p: float, seed: int) -> Tuple[Tensor, Tensor]:
    with _stream_of(x):
        y, mask = _nn.dropout_forward(_array(x), p, seed=seed % 2**64, training=True)
    return _tensor(y), _tensor(mask)


_dropout = _Op("dropout", _dropout_impl)


@_dropout.fake
def _(x, p, seed):
    return x.new_empty(x.shape), x.new_empty(x.shape, dtype=torch.bool)


def _dropout_backward_impl(grad_y: Tensor, mask: Tensor, p: float) -> Tensor:
    with _stream_of(grad_y):
        gx = _nn.dropout_backward(_array(grad_y), _array(mask), p)
    return _tensor(gx)


_dropout_backward = _Op("dropout_backward", _dropout_backward_impl)


@_dropout_backward.fake
def _(grad_y, mask, p):
    return grad_y.new_empty(grad_y.shape)


def _dropout_setup(ctx, inputs, output):
    ctx.save_for_backward(output[1])
    ctx.p = inputs[1]
    ctx.mark_non_differentiable(output[1])


def _dropout_grad(ctx, grad_y, grad_mask):
    (mask,) = ctx.saved_tensors
    return _dropout_backward(grad_y, mask, ctx.p), None, None


_dropout.autograd(_dropout_grad, _dropout_setup)


def dropout(x, p, seed, training=True):
    """Inverted dropout with the counter-based mask of ``adlkernels.dropout_forward``:
    the mask is a pure function of (seed, element index), seed an int in [0, 2**64).
    training=False returns x itself, as ``torch.nn.functional.dropout``."""
    _check_tensors("dropout", x=x)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"dropout: seed must be an int, got {type(seed).__name__}")
    if not 0 <= seed < 2**64:
        raise ValueError(f"dropout: seed must be in [0, 2**64), got {seed}")
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be a probability in [0, 1], got {p!r}")
    if not training:
        return x
    return _dropout(x, float(p), _seed_to_i64(seed))[0]


# ---- LSTM -----------------------------------------------------------------------------


def _lstm_impl(x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Optional[Tensor],
               b_hh: Optional[Tensor], reverse: bool) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    with _stream_of(x):
        y, h_n, c_n, cache = _rnn.lstm_forward(_array(x), _array(h0), _array(c0), _array(w_ih),
                                               _array(w_hh), _array(b_ih), _array(b_hh), reverse)
    return _tensor(y), _tensor(h_n), _tensor(c_n), _tensor(cache.gates), _tensor(cache.cells)


_lstm = _Op("lstm", _lstm_impl)


@_lstm.fake
def _(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse):
    t, b = x.shape[0], x.shape[1]
    h = h0.shape[1]
    return (x.new_empty((t, b, h)), x.new_empty((b, h)), x.new_empty((b, h)),
            x.new_empty((t, b, 4 * h)), x.new_empty((t, b, h)))


def _lstm_backward_impl(grad_y: Optional[Tensor], grad_h_n: Optional[Tensor], grad_c_n: Optional[Tensor],
                        x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor,
                        b_ih: Optional[Tensor], b_hh: Optional[Tensor], gates: Tensor, cells: Tensor,
                        y: Tensor, reverse: bool) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    with _stream_of(x):
        cache = _rnn.LSTMCache(_array(x), _array(h0), _array(c0), _array(w_ih), _array(w_hh),
                               _array(b_ih), _array(b_hh), _array(gates), _array(cells),
                               _array(y), reverse)
        g = _rnn.lstm_backward(_array(grad_y), _array(grad_h_n), _array(grad_c_n), cache)
    return (_tensor(g.x), _tensor(g.h0), _tensor(g.c0), _tensor(g.w_ih), _tensor(g.w_hh),
            _none_empty(g.b_ih, x), _none_empty(g.b_hh, x))


_lstm_backward = _Op("lstm_backward", _lstm_backward_impl)


@_lstm_backward.fake
def _(grad_y, grad_h_n, grad_c_n, x, h0, c0, w_ih, w_hh, b_ih, b_hh, gates, cells, y, reverse):
    return (x.new_empty(x.shape), h0.new_empty(h0.shape), c0.new_empty(c0.shape),
            w_ih.new_empty(w_ih.shape), w_hh.new_empty(w_hh.shape),
            x.new_empty(b_ih.shape if b_ih is not None else (0,)),
            x.new_empty(b_hh.shape if b_hh is not None else (0,)))


def _lstm_setup(ctx, inputs, output):
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse = inputs
    y, _, _, gates, cells = output
    ctx.save_for_backward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, gates, cells, y)
    ctx.reverse = reverse
    ctx.mark_non_differentiable(gates, cells)


def _lstm_grad(ctx, grad_y, grad_h_n, grad_c_n, grad_gates, grad_cells):
    saved = ctx.saved_tensors
    grads = _lstm_backward(grad_y, grad_h_n, grad_c_n, *saved, ctx.reverse)
    need = ctx.needs_input_grad
    return tuple(_grad_or_none(g, need[i]) for i, g in enumerate(grads)) + (None,)


_lstm.autograd(_lstm_grad, _lstm_setup)


def lstm(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, reverse=False):
    """One LSTM layer, one direction, over a whole sequence, as ``torch.nn.LSTM`` with
    num_layers=1: x (T, B, I), h0 and c0 (B, H) -> (y (T, B, H), h_n, c_n). Weights in
    PyTorch's layout (gate order i, f, g, o). reverse=True runs from t = T-1 down to 0."""
    _check_tensors("lstm", optional=("b_ih", "b_hh"), x=x, h0=h0, c0=c0, w_ih=w_ih, w_hh=w_hh,
                   b_ih=b_ih, b_hh=b_hh)
    y, h_n, c_n, _, _ = _lstm(x, h0, c0, w_ih, w_hh, b_ih, b_hh, bool(reverse))
    return y, h_n, c_n
