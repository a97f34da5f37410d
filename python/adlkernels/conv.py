"""Convolution (docs/api/conv.md): im2col/col2im and conv1d/conv2d forward and backward.

NumPy arrays run the C++/OpenMP kernels: im2col + BLAS GEMM, cut into (image, block of
output rows) units whose column matrix fits in a core's cache; each thread runs its own
units (see :func:`conv2d_workspace_bytes`).
Results match ``torch.nn.functional.conv2d``/``conv1d``/``unfold``/``fold``.
"""

from __future__ import annotations

from . import _adlk
from ._backend import backend_of, on_gpu
from ._validate import Args, fmt_shape

__all__ = [
    "im2col",
    "col2im",
    "conv2d_forward",
    "conv2d_backward",
    "conv1d_forward",
    "conv1d_backward",
    "conv2d_workspace_bytes",
]


def _out_size(a: Args, size, kernel, stride, padding, dilation, what="x"):
    """Output sizes per spatial dimension; ValueError when a kernel does not fit."""
    out = []
    for n, k, s, p, d in zip(size, kernel, stride, padding, dilation):
        span = d * (k - 1) + 1
        if n + 2 * p < span:
            raise a.value_error(
                what,
                f"spatial size {tuple(size)} with padding {tuple(padding)} is smaller than "
                f"the dilated kernel {tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))}",
            )
        out.append(_adlk.conv_output_size(n, k, s, p, d))
    a.size_fits(what, out, f"with padding {tuple(padding)} and stride {tuple(stride)}, the output")
    return tuple(out)


def _dtype(a: Args, x, weight, bias, grad_y):
    """The call's float dtype. The weight's sets it (it is the model's): an x, bias or
    grad_y of another dtype is the argument blamed, with the cast that fixes it."""
    dtype = a.float_dtype(weight=weight)
    for name, arr in (("x", x), ("bias", bias), ("grad_y", grad_y)):
        dt = a.float_dtype(**{name: arr})
        if dtype is None:
            dtype = dt
        elif dt is not None and dt != dtype:
            raise a.type_error(
                name, f"dtype {dt} does not match weight's {dtype}; cast one of them, "
                      f"e.g. {name}.astype(np.{dtype})")
    return dtype


def _reject_channels_last(a: Args, x, c_in: int, dims: int) -> None:
    """A channels-last x ((N, H, W, C) or (N, L, C)) does not match the weight's C_in
    while its last axis does: say so, rather than blame the weight."""
    if x.shape[1] != c_in and x.shape[-1] == c_in:
        last, first, order = (("(N, H, W, C)", "(N, C, H, W)", "0, 3, 1, 2") if dims == 2
                              else ("(N, L, C)", "(N, C, L)", "0, 2, 1"))
        raise a.value_error(
            "x", f"shape {fmt_shape(x.shape)} looks channels-last {last}; transpose to "
                 f"{first} with x.transpose({order})")


_FORWARD = object()  # _ConvCall's grad_y when the call is a forward (no gradient)


class _ConvCall:
    """Checked arguments of one conv1d/conv2d call, in 2-d form."""

    def __init__(self, fn, x, weight, bias, stride, padding, dilation, groups, dims,
                 grad_y=_FORWARD):
        a = Args(fn)
        if grad_y is None:  # a backward call without its incoming gradient
            raise a.type_error("grad_y", "expected an array, got None")
        if grad_y is _FORWARD:
            grad_y = None
        self.backend = backend_of(fn, {"grad_y": grad_y, "x": x, "weight": weight, "bias": bias})
        self.dtype = _dtype(a, x, weight, bias, grad_y)
        if dims == 2:
            x_desc, w_desc = "(N, C_in, H, W)", "(C_out, C_in/groups, kH, kW)"
            stride, padding, dilation = (
                a.pair(stride, "stride", 1),
                a.pair(padding, "padding", 0),
                a.pair(dilation, "dilation", 1),
            )
        else:  # conv1d takes ints only, and runs as conv2d on a height-1 image
            x_desc, w_desc = "(N, C_in, L)", "(C_out, C_in/groups, k)"
            stride = (1, a.integer(stride, "stride", 1))
            padding = (0, a.integer(padding, "padding", 0))
            dilation = (1, a.integer(dilation, "dilation", 1))
        groups = a.integer(groups, "groups", 1)
        x = a.array(x, "x", x_desc, ndim=dims + 2)
        weight = a.array(weight, "weight", w_desc, ndim=dims + 2)
        n, c_in = x.shape[:2]
        c_out = weight.shape[0]
        if 0 in x.shape[1:]:
            raise a.shape_error("x", x_desc + " with C_in and spatial sizes >= 1", x.shape)
        if c_in % groups:
            raise a.value_error("groups", f"{groups} does not divide C_in = {c_in}")
        _reject_channels_last(a, x, weight.shape[1] * groups, dims)
        if c_out % groups or c_out == 0:
            raise a.value_error(
                "weight", f"C_out = {c_out} must be a positive multiple of groups = {groups}"
            )
        if 0 in weight.shape[2:]:
            raise a.shape_error("weight", w_desc + " with kernel sizes >= 1", weight.shape)
        expected_w = (c_out, c_in // groups) + weight.shape[2:]
        a.shape(weight, "weight", expected_w)
        if bias is not None:
            bias = a.array(bias, "bias", f"({c_out},)", ndim=1)
            a.shape(bias, "bias", (c_out,), f"({c_out},)")
        if dims == 1:
            x, weight = x[:, :, None, :], weight[:, :, None, :]
        kernel = weight.shape[2:]
        out = _out_size(a, x.shape[2:], kernel, stride, padding, dilation)
        self.y_shape = (n, c_out) + (out if dims == 2 else out[1:])
        self.y_shape_2d = (n, c_out) + out
        if grad_y is not None:
            grad_y = a.array(grad_y, "grad_y", fmt_shape(self.y_shape), ndim=dims + 2)
            a.shape(grad_y, "grad_y", self.y_shape)
            if dims == 1:
                grad_y = grad_y[:, :, None, :]
        self.args, self.fn = a, fn
        self.x, self.weight, self.bias, self.grad_y = x, weight, bias, grad_y
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        self.dims = dims


def _forward(call: _ConvCall):
    if on_gpu(call.fn, call.backend):
        from . import _cuda

        y = _cuda.conv2d_forward(call.x, call.weight, call.bias, call.stride, call.padding,
                                 call.dilation, call.groups, call.y_shape_2d)
        return y if call.dims == 2 else y[:, :, 0, :]
    y = call.args.run(_adlk.conv2d_forward, call.x, call.weight, call.bias, call.stride,
                      call.padding, call.dilation, call.groups)
    return y if call.dims == 2 else y[:, :, 0, :]


def _backward(call: _ConvCall, output_mask):
    mask = call.args.flags(output_mask, "output_mask", 3)
    if on_gpu(call.fn, call.backend):
        from . import _cuda

        gx, gw, gb = _cuda.conv2d_backward(call.grad_y, call.x, call.weight, call.stride,
                                           call.padding, call.dilation, call.groups, mask)
    else:
        gx, gw, gb = call.args.run(_adlk.conv2d_backward, call.grad_y, call.x, call.weight,
                                   call.stride, call.padding, call.dilation, call.groups, *mask)
    if call.dims == 1:
        gx = None if gx is None else gx[:, :, 0, :]
        gw = None if gw is None else gw[:, :, 0, :]
    return gx, gw, gb


def conv2d_forward(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-d convolution (cross-correlation), as ``torch.nn.functional.conv2d``.

    x (N, C_in, H, W), weight (C_out, C_in/groups, kH, kW), bias (C_out,) or None ->
    y (N, C_out, H_out, W_out) with H_out = (H + 2*pH - dH*(kH-1) - 1) // sH + 1.
    stride, padding and dilation are ints or pairs (h, w).
    """
    call = _ConvCall("conv2d_forward", x, weight, bias, stride, padding, dilation, groups, 2)
    return _forward(call)


def conv2d_backward(grad_y, x, weight, stride=1, padding=0, dilation=1, groups=1,
                    output_mask=(True, True, True)):
    """Gradients (grad_x, grad_weight, grad_bias) of :func:`conv2d_forward`.

    An entry whose ``output_mask`` flag is False is not computed and returned as None.
    """
    call = _ConvCall(
        "conv2d_backward", x, weight, None, stride, padding, dilation, groups, 2, grad_y=grad_y
    )
    return _backward(call, output_mask)


def conv1d_forward(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """1-d convolution, as ``torch.nn.functional.conv1d``.

    x (N, C_in, L), weight (C_out, C_in/groups, k), bias (C_out,) or None -> y (N, C_out, L_out).
    stride, padding and dilation are ints.
    """
    call = _ConvCall("conv1d_forward", x, weight, bias, stride, padding, dilation, groups, 1)
    return _forward(call)


def conv1d_backward(grad_y, x, weight, stride=1, padding=0, dilation=1, groups=1,
                    output_mask=(True, True, True)):
    """Gradients (grad_x, grad_weight, grad_bias) of :func:`conv1d_forward`."""
    call = _ConvCall(
        "conv1d_backward", x, weight, None, stride, padding, dilation, groups, 1, grad_y=grad_y
    )
    return _backward(call, output_mask)


def im2col(x, kernel_size, stride=1, padding=0, dilation=1):
    """x (N, C, H, W) -> cols (N, C*kH*kW, L), as ``torch.nn.functional.unfold``.

    Row (c*kH + kh)*kW + kw, column oh*W_out + ow holds
    x[n, c, oh*sH - pH + kh*dH, ow*sW - pW + kw*dW], zero in the padding.
    """
    a = Args("im2col")
    backend = backend_of(a.fn, {"x": x})
    a.float_dtype(x=x)
    k = a.pair(kernel_size, "kernel_size", 1)
    s, p, d = a.pair(stride, "stride", 1), a.pair(padding, "padding", 0), a.pair(dilation, "dilation", 1)
    x = a.array(x, "x", "(N, C, H, W)", ndim=4)
    if any(v == 0 for v in x.shape[1:]):
        raise a.shape_error("x", "(N, C, H, W) with C, H, W >= 1", x.shape)
    out = _out_size(a, x.shape[2:], k, s, p, d)
    if on_gpu(a.fn, backend):
        from . import _cuda

        return _cuda.im2col(x, k, s, p, d, out)
    return a.run(_adlk.im2col, x, k, s, p, d)


def col2im(cols, output_size, kernel_size, stride=1, padding=0, dilation=1):
    """cols (N, C*kH*kW, L) -> x (N, C, H, W) summing overlaps, as ``torch.nn.functional.fold``.

    output_size is (H, W) (or an int). L must equal the number of kernel positions.
    """
    a = Args("col2im")
    backend = backend_of(a.fn, {"cols": cols})
    a.float_dtype(cols=cols)
    hw = a.pair(output_size, "output_size", 1)
    k = a.pair(kernel_size, "kernel_size", 1)
    s, p, d = a.pair(stride, "stride", 1), a.pair(padding, "padding", 0), a.pair(dilation, "dilation", 1)
    cols = a.array(cols, "cols", "(N, C*kH*kW, L)", ndim=3)
    out = _out_size(a, hw, k, s, p, d, what="output_size")
    kk, blocks = k[0] * k[1], out[0] * out[1]
    n, rows, length = cols.shape
    if rows == 0 or rows % kk or length != blocks:
        raise a.shape_error(
            "cols", f"(N, C*{kk}, {blocks}) for kernel {k} and output_size {hw}", cols.shape
        )
    if on_gpu(a.fn, backend):
        from . import _cuda

        return _cuda.col2im(cols, rows // kk, hw, k, s, p, d)
    return a.run(_adlk.col2im, cols, rows // kk, hw[0], hw[1], k, s, p, d)


def conv2d_workspace_bytes(x, weight, stride=1, padding=0, dilation=1, groups=1) -> int:
    """Bytes of scratch memory that conv2d_forward or conv2d_backward, the larger, uses for
    these arguments.

    Work is cut into (image, block of output rows) units whose column matrix and output
    rows together take at most 1 MiB (kConvBlockBytes; one output row if that is larger).
    Each thread keeps, between calls, two such blocks plus a grad_weight-sized partial;
    forward needs one block, or on the float32 panel path (stride-1 kernels with
    C/groups*kH*kW >= 256 on AVX2/AVX-512 CPUs) one image's shifted input bands (at most
    1 MiB) and a 32-column panel of the column matrix. The float32 grad_weight on such
    CPUs (C/groups*kH*kW >= 256) packs grad_y a block of images at a time (about 1 MiB, at
    least one image; an image whose packed grad_y would pass 16 MiB takes the other path)
    and keeps a grad_weight-sized buffer.
    The total scales with get_num_threads(), never with the batch size.
    """
    call = _ConvCall("conv2d_workspace_bytes", x, weight, None, stride, padding, dilation, groups, 2)
    return _adlk.conv_workspace_bytes(
        call.x, call.weight, call.stride, call.padding, call.dilation, call.groups
    )
