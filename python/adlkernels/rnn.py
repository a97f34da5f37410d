"""Recurrent kernels (docs/api/rnn.md): LSTM, GRU and plain RNN cells, whole-sequence
LSTM, GRU and RNN forward and backpropagation through time, and additive (Bahdanau)
attention.

Weights use PyTorch's layout: ``w_ih`` (G*H, I), ``w_hh`` (G*H, H), ``b_ih`` and ``b_hh``
(G*H,) or None, with G = 4 for LSTM (gate order i, f, g, o), 3 for GRU (r, z, n) and 1
for RNN.

How the kernels run (NumPy arrays): the input projections are BLAS GEMMs (for a whole
sequence one GEMM over all T*B rows); inside the time loop each thread owns a tile of
(batch rows, hidden units), runs the recurrent GEMM for the gate columns of its tile and
then the fused pointwise pass (gate nonlinearities, cell update, output) on the same
tile, with one barrier per step. Backward passes run the recurrence first and the
weight gradients afterwards as GEMMs over all steps at once; bias gradients are column
sums in a fixed order.

Caches and gradients are NamedTuples. A cache keeps references to the arrays of the
forward call (inputs and outputs, no copies) plus what the kernel computed for the
backward; modifying those arrays in place before the backward gives wrong gradients.
Bias gradients are None exactly when the bias was None.

Inputs of the sequence forwards (:func:`lstm_forward`, :func:`gru_forward`,
:func:`rnn_forward`) and ``grad_y`` of their backwards may be row-strided views, e.g.
one direction's half of a bidirectional (T, B, 2H) output, and ``out=`` writes y into
such a view: stacked and bidirectional layers need no copies.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import numpy as np

from . import _adlk, _cuda
from ._backend import backend_of, empty_aligned, is_device_array, on_gpu
from ._validate import Args, check_no_overlap, fmt_shape

__all__ = [
    "lstm_cell_forward",
    "lstm_cell_backward",
    "lstm_forward",
    "lstm_backward",
    "gru_cell_forward",
    "gru_cell_backward",
    "rnn_cell_forward",
    "rnn_cell_backward",
    "gru_forward",
    "gru_backward",
    "rnn_forward",
    "rnn_backward",
    "additive_attention_forward",
    "additive_attention_backward",
]

Array = np.ndarray


# ---- caches and gradients ------------------------------------------------------


class LSTMCellCache(NamedTuple):
    """What :func:`lstm_cell_backward` needs. ``gates`` (B, 4H): the activated gates
    i, f, g, o (sigmoid, sigmoid, tanh, sigmoid); ``c_next`` is the returned c_next."""

    x: Array
    h: Array
    c: Array
    w_ih: Array
    w_hh: Array
    b_ih: Optional[Array]
    b_hh: Optional[Array]
    gates: Array
    c_next: Array


class LSTMCellGrads(NamedTuple):
    x: Array
    h: Array
    c: Array
    w_ih: Array
    w_hh: Array
    b_ih: Optional[Array]
    b_hh: Optional[Array]


class LSTMCache(NamedTuple):
    """What :func:`lstm_backward` needs: references to x, h0, c0, the weights and y, plus
    ``gates`` (T, B, 4H) activated gates and ``cells`` (T, B, H) cell states c_t of every
    step, indexed by t. Its own memory is T*B*5H elements (O(T*B*4H))."""

    x: Array
    h0: Array
    c0: Array
    w_ih: Array
    w_hh: Array
    b_ih: Optional[Array]
    b_hh: Optional[Array]
    gates: Array
    cells: Array
    y: Array
    reverse: bool


class LSTMGrads(NamedTuple):
    x: Array
    h0: Array
    c0: Array
    w_ih: Array
    w_hh: Array
    b_ih: Optional[Array]
    b_hh: Optional[Array]


class GRUCellCache(NamedTuple):
    """``gates`` (B, 3H): activated r, z, n; ``hn`` (B, H): W_hn h + b_hn (the term that r
    multiplies)."""

    x: Array
    h: Array
    w_ih: Array
    w_hh: Array
    b_ih: Optional[Array]
    b_hh: Optional[Array]
    gates: Array
    hn: Array


class GRUCellGrads(NamedTuple):
    x: Array
    h: Array
    w_ih: Array
    w_hh: Array
    b_ih: Optional[Array]
    b_hh: Optional[Array]


class RNNCellCache(NamedTuple):
    """``h_next`` is the returned output (its derivative gives the nonlinearity's)."""

    x: Array
    h: Array
    w_ih: Array
    w_hh: Array
    b_ih: Optional[Array]
    b_hh: Optional[Array]
    h_next: Array
    nonlinearity: str


class RNNCellGrads(NamedTuple):
    x: Array
    h: Array
    w_ih: Array
    w_hh: Array
    b_ih: Optional[Array]
    b_hh: Optional[Array]


class GRUCache(NamedTuple):
    """What :func:`gru_backward` needs: references to x, h0, the weights and y, plus
    ``gates`` (T, B, 3H) activated r, z, n and ``hn`` (T, B, H) W_hn h_{t-1} + b_hn (the
    term r multiplies) of every step, indexed by t. Its own memory is T*B*4H elements."""

    x: Array
    h0: Array
    w_ih: Array
    w_hh: Array
    b_ih: Optional[Array]
    b_hh: Optional[Array]
    gates: Array
    hn: Array
    y: Array
    reverse: bool


class GRUGrads(NamedTuple):
    x: Array
    h0: Array
    w_ih: Array
    w_hh: Array
    b_ih: Optional[Array]
    b_hh: Optional[Array]


class RNNCache(NamedTuple):
    """What :func:`rnn_backward` needs: references to x, h0, the weights and y (the
    outputs give the nonlinearity's derivative), the nonlinearity and the direction. No
    memory of its own."""

    x: Array
    h0: Array
    w_ih: Array
    w_hh: Array
    b_ih: Optional[Array]
    b_hh: Optional[Array]
    y: Array
    nonlinearity: str
    reverse: bool


class RNNGrads(NamedTuple):
    x: Array
    h0: Array
    w_ih: Array
    w_hh: Array
    b_ih: Optional[Array]
    b_hh: Optional[Array]


class AttentionCache(NamedTuple):
    """``tanh_act`` (T, B, A): tanh(w_query @ query[b] + w_key @ keys[t, b]) for every (t, b),
    computed once in the forward; ``weights`` (B, T) is the returned weights array."""

    query: Array
    keys: Array
    w_query: Array
    w_key: Array
    v: Array
    mask: Optional[Array]
    tanh_act: Array
    weights: Array


class AttentionGrads(NamedTuple):
    query: Array
    keys: Array
    w_query: Array
    w_key: Array
    v: Array


# ---- argument checks ---------------------------------------------------------------


def _matrix(a: Args, arr, name: str, shape: tuple, desc: str):
    arr = a.array(arr, name, desc, ndim=len(shape))
    a.shape(arr, name, shape, desc)
    return arr


def _weights(a: Args, gates: int, hidden: int, inputs: int, w_ih, w_hh, b_ih, b_hh):
    g = gates * hidden
    gname = {4: "4H", 3: "3H", 1: "H"}[gates]
    w_ih = _matrix(a, w_ih, "w_ih", (g, inputs), f"({gname}, I) = ({g}, {inputs})")
    w_hh = _matrix(a, w_hh, "w_hh", (g, hidden), f"({gname}, H) = ({g}, {hidden})")
    if b_ih is not None:
        b_ih = _matrix(a, b_ih, "b_ih", (g,), f"({gname},) = ({g},)")
    if b_hh is not None:
        b_hh = _matrix(a, b_hh, "b_hh", (g,), f"({gname},) = ({g},)")
    return w_ih, w_hh, b_ih, b_hh


def _cell_inputs(a: Args, x, h, what="h"):
    """x (B, I) and h (B, H) -> checked arrays, B, I, H."""
    x = a.array(x, "x", "(B, I)", ndim=2)
    h = a.array(h, what, "(B, H)", ndim=2)
    b, i = x.shape
    if i == 0:
        raise a.shape_error("x", "(B, I) with I >= 1", x.shape)
    if h.shape[0] != b or h.shape[1] == 0:
        raise a.shape_error(what, f"(B, H) = ({b}, H) with H >= 1", h.shape)
    return x, h, b, i, h.shape[1]


def _grad(a: Args, g, name: str, shape: tuple, dtype):
    """An optional incoming gradient: None stays None, else a checked C-contiguous array."""
    if g is None:
        return None
    a.float_dtype(**{name: g})
    if np.dtype(g.dtype) != dtype:
        raise a.type_error(name, f"dtype {np.dtype(g.dtype)} differs from the forward's {dtype}")
    return _matrix(a, g, name, shape, fmt_shape(shape))


def _cache(a: Args, cache, cls):
    """The forward's cache, checked field by field before any kernel reads it: a cache
    is a NamedTuple anyone can build or ``_replace``, so its arrays get the same checks as
    arguments (float dtype of the forward, shapes consistent with x, h and the weights,
    C-contiguous or, where the forward accepts views, row-strided)."""
    if not isinstance(cache, cls):
        raise a.type_error("cache", f"expected the {cls.__name__} of the forward call, got {type(cache).__name__}")
    backend_of(a.fn, _arrays_of(cache))  # no numpy/cupy mix inside the cache either
    first = cache._fields[0]
    dtype = a.float_dtype(**{f"cache.{first}": getattr(cache, first)})
    if dtype is None:
        raise a.type_error(f"cache.{first}", "expected an array, got None")
    if cls in _SEQ_CACHES:
        a.boolean(cache.reverse, "cache.reverse")
    fields = {}
    for name, (shape, desc) in _CACHE_SHAPES[cls](a, cache).items():
        value = getattr(cache, name)
        if value is None and name in _OPTIONAL_FIELDS:
            fields[name] = None
            continue
        label = f"cache.{name}"
        if name == "mask":
            a.array(value, label, "(B, T)")
        else:
            a.float_dtype(**{label: value})
        want = np.dtype(np.bool_) if name == "mask" else dtype
        if not hasattr(value, "dtype") or np.dtype(value.dtype) != want:
            got = getattr(value, "dtype", type(value).__name__)
            raise a.type_error(label, f"expected {want} (the forward's), got {got}")
        if cls in _SEQ_CACHES and name in ("x", "y"):  # the forwards take row-strided views
            fields[name] = _rows(a, value, label, shape, desc)
        else:
            fields[name] = _matrix(a, value, label, shape, desc)
    return cache._replace(**fields)


def _arrays_of(cache) -> dict:
    """The cache's arrays by argument name, for the backend check (no mixing)."""
    return {f"cache.{f}": v for f, v in zip(cache._fields, cache) if hasattr(v, "shape")}


def _dims(a: Args, cache, **ndims):
    """Shapes of the cache fields that fix the sizes (checked for rank first)."""
    out = []
    for name, nd in ndims.items():
        v = getattr(cache, name)
        if not hasattr(v, "shape"):
            raise a.type_error(f"cache.{name}", f"expected an array, got {type(v).__name__}")
        if len(v.shape) != nd:
            raise a.value_error(f"cache.{name}", f"expected a {nd}-d array, got shape {fmt_shape(v.shape)}")
        out.append(tuple(v.shape))
    return out


def _gate_shapes(gates: int, bsz: int, n_in: int, hid: int) -> dict:
    g, gn = gates * hid, {4: "4H", 3: "3H", 1: "H"}[gates]
    return {
        "x": ((bsz, n_in), f"(B, I) = ({bsz}, {n_in})"),
        "h": ((bsz, hid), f"(B, H) = ({bsz}, {hid})"),
        "w_ih": ((g, n_in), f"({gn}, I) = ({g}, {n_in})"),
        "w_hh": ((g, hid), f"({gn}, H) = ({g}, {hid})"),
        "b_ih": ((g,), f"({gn},) = ({g},)"),
        "b_hh": ((g,), f"({gn},) = ({g},)"),
    }


def _lstm_cell_shapes(a, cache):
    (bsz, n_in), (_, hid) = _dims(a, cache, x=2, h=2)
    s = _gate_shapes(4, bsz, n_in, hid)
    s["c"] = s["c_next"] = s["h"]
    s["gates"] = ((bsz, 4 * hid), f"(B, 4H) = ({bsz}, {4 * hid})")
    return s


def _lstm_shapes(a, cache):
    (steps, bsz, n_in), (_, hid) = _dims(a, cache, x=3, h0=2)
    s = _gate_shapes(4, bsz, n_in, hid)
    s["h0"] = s["c0"] = s.pop("h")
    s["x"] = ((steps, bsz, n_in), f"(T, B, I) = ({steps}, {bsz}, {n_in})")
    s["gates"] = ((steps, bsz, 4 * hid), f"(T, B, 4H) = ({steps}, {bsz}, {4 * hid})")
    s["cells"] = s["y"] = ((steps, bsz, hid), f"(T, B, H) = ({steps}, {bsz}, {hid})")
    return s


def _seq_shapes(gates):
    def shapes(a, cache):
        (steps, bsz, n_in), (_, hid) = _dims(a, cache, x=3, h0=2)
        s = _gate_shapes(gates, bsz, n_in, hid)
        s["h0"] = s.pop("h")
        s["x"] = ((steps, bsz, n_in), f"(T, B, I) = ({steps}, {bsz}, {n_in})")
        s["y"] = ((steps, bsz, hid), f"(T, B, H) = ({steps}, {bsz}, {hid})")
        if gates == 3:
            s["gates"] = ((steps, bsz, 3 * hid), f"(T, B, 3H) = ({steps}, {bsz}, {3 * hid})")
            s["hn"] = s["y"]
        return s

    return shapes


def _gru_cell_shapes(a, cache):
    (bsz, n_in), (_, hid) = _dims(a, cache, x=2, h=2)
    s = _gate_shapes(3, bsz, n_in, hid)
    s["gates"] = ((bsz, 3 * hid), f"(B, 3H) = ({bsz}, {3 * hid})")
    s["hn"] = s["h"]
    return s


def _rnn_cell_shapes(a, cache):
    (bsz, n_in), (_, hid) = _dims(a, cache, x=2, h=2)
    s = _gate_shapes(1, bsz, n_in, hid)
    s["h_next"] = s["h"]
    return s


def _attention_shapes(a, cache):
    (bsz, dq), (steps, _, dk), (att, _) = _dims(a, cache, query=2, keys=3, w_query=2)
    return {
        "query": ((bsz, dq), f"(B, Dq) = ({bsz}, {dq})"),
        "keys": ((steps, bsz, dk), f"(T, B, Dk) = ({steps}, {bsz}, {dk})"),
        "w_query": ((att, dq), f"(A, Dq) = ({att}, {dq})"),
        "w_key": ((att, dk), f"(A, Dk) = ({att}, {dk})"),
        "v": ((att,), f"(A,) = ({att},)"),
        "mask": ((bsz, steps), f"(B, T) = ({bsz}, {steps})"),
        "tanh_act": ((steps, bsz, att), f"(T, B, A) = ({steps}, {bsz}, {att})"),
        "weights": ((bsz, steps), f"(B, T) = ({bsz}, {steps})"),
    }


_CACHE_SHAPES = {
    LSTMCellCache: _lstm_cell_shapes,
    LSTMCache: _lstm_shapes,
    GRUCellCache: _gru_cell_shapes,
    RNNCellCache: _rnn_cell_shapes,
    AttentionCache: _attention_shapes,
    GRUCache: _seq_shapes(3),
    RNNCache: _seq_shapes(1),
}
_SEQ_CACHES = (LSTMCache, GRUCache, RNNCache)
_OPTIONAL_FIELDS = ("b_ih", "b_hh", "mask")


def _rows(a: Args, arr, name: str, shape: tuple, desc: str, writeable=False):
    """A (T, B, n) array whose rows (t, b) are evenly spaced with unit stride inside a row:
    returned as is when it already is (a view into a wider array, say), else copied."""
    if arr.ndim != 3:
        raise a.shape_error(name, desc, arr.shape)
    a.shape(arr, name, shape, desc)
    if not isinstance(arr, np.ndarray):  # cupy: the CUDA path copies into an `out` view
        return arr if writeable else a.array(arr, name, desc)
    if _row_strided(arr):
        return arr
    if writeable:
        raise a.value_error(
            name, "must have unit stride along its last axis and evenly spaced (t, b) rows"
        )
    return np.require(arr, requirements=("C", "A"))  # a misaligned C array is copied too


def _row_strided(arr) -> bool:
    t, b, n = arr.shape
    item = arr.itemsize
    s0, s1, s2 = arr.strides
    if arr.size == 0:
        return arr.flags.c_contiguous
    if (n > 1 and s2 != item) or not arr.flags.aligned:
        return False
    ld = s1 if b > 1 else (s0 if t > 1 else n * item)
    if b > 1 and t > 1 and s0 != b * s1:
        return False
    return ld > 0 and ld % item == 0 and ld >= n * item


def _seq_inputs(a: Args, x, h0):
    """x (T, B, I) (a row-strided view is kept as is) and h0 (B, H) of a sequence forward
    -> checked x, h0, T, B, I, H."""
    if not isinstance(x, np.ndarray) or x.ndim != 3:
        x = a.array(x, "x", "(T, B, I)", ndim=3)
    steps, bsz, n_in = x.shape
    if n_in == 0:
        raise a.shape_error("x", "(T, B, I) with I >= 1", x.shape)
    x = _rows(a, x, "x", x.shape, "(T, B, I)")
    h0 = a.array(h0, "h0", "(B, H)", ndim=2)
    if h0.shape[0] != bsz or h0.shape[1] == 0:
        raise a.shape_error("h0", f"(B, H) = ({bsz}, H) with H >= 1", h0.shape)
    return x, h0, steps, bsz, n_in, h0.shape[1]


def _seq_out(a: Args, out, arrays: dict, shape: tuple, dtype, gpu: bool):
    """The array that receives a sequence forward's y: ``out`` checked (a writeable
    row-strided view sharing memory with no other argument), or a new array."""
    if out is None:
        return _cuda._cp().empty(shape, dtype) if gpu else empty_aligned(shape, dtype)
    if not (isinstance(out, np.ndarray) or is_device_array(out)):
        raise a.type_error("out", f"expected a numpy array, got {type(out).__name__}")
    if not getattr(out.flags, "writeable", True):
        raise a.value_error("out", "must be writeable")
    y = _rows(a, out, "out", shape, "(T, B, H) = ({}, {}, {})".format(*shape), writeable=True)
    check_no_overlap(a.fn, arrays, ("out",))
    return y


def _seq_grad_y(a: Args, grad_y, shape: tuple, dtype):
    """A sequence backward's grad_y (T, B, H) or None; a row-strided view is kept."""
    if grad_y is None:
        return None
    a.float_dtype(grad_y=grad_y)
    if np.dtype(grad_y.dtype) != dtype:
        raise a.type_error("grad_y", f"dtype {np.dtype(grad_y.dtype)} differs from the forward's {dtype}")
    desc = "(T, B, H) = ({}, {}, {})".format(*shape)
    if not isinstance(grad_y, np.ndarray):
        grad_y = a.array(grad_y, "grad_y", desc, ndim=3)
    return _rows(a, grad_y, "grad_y", shape, desc)


# ---- LSTM ----------------------------------------------------------------------------


def lstm_cell_forward(x, h, c, w_ih, w_hh, b_ih=None, b_hh=None):
    """One LSTM step, as ``torch.nn.LSTMCell``: x (B, I), h and c (B, H) ->
    (h_next, c_next, cache).

    gates = x W_ih^T + b_ih + h W_hh^T + b_hh split into i, f, g, o;
    c_next = sigmoid(f) * c + sigmoid(i) * tanh(g); h_next = sigmoid(o) * tanh(c_next).
    """
    a = Args("lstm_cell_forward")
    arrays = dict(x=x, h=h, c=c, w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh)
    backend = backend_of(a.fn, arrays)
    a.float_dtype(**arrays)
    x, h, bsz, n_in, hid = _cell_inputs(a, x, h)
    c = _matrix(a, c, "c", (bsz, hid), f"(B, H) = ({bsz}, {hid})")
    w_ih, w_hh, b_ih, b_hh = _weights(a, 4, hid, n_in, w_ih, w_hh, b_ih, b_hh)
    if on_gpu(a.fn, backend):
        h_next = _cuda._cp().empty((bsz, hid), x.dtype)
        _, _, gates, cells = _cuda.lstm_forward(x[None], h, c, w_ih, w_hh, b_ih, b_hh, False, h_next[None])
    else:
        h_next = empty_aligned((bsz, hid), x.dtype)
        _, _, gates, cells = _adlk.lstm_forward(
            x[None], h, c, w_ih, w_hh, b_ih, b_hh, False, h_next[None], False
        )
    c_next = cells[0]
    return h_next, c_next, LSTMCellCache(x, h, c, w_ih, w_hh, b_ih, b_hh, gates[0], c_next)


def lstm_cell_backward(grad_h_next, grad_c_next, cache):
    """Gradients of :func:`lstm_cell_forward`: LSTMCellGrads(x, h, c, w_ih, w_hh, b_ih, b_hh).

    grad_h_next and grad_c_next (B, H) may be None (zero).
    """
    a = Args("lstm_cell_backward")
    cache = _cache(a, cache, LSTMCellCache)
    backend = backend_of(
        a.fn, dict(grad_h_next=grad_h_next, grad_c_next=grad_c_next, **_arrays_of(cache))
    )
    bsz, hid = cache.h.shape
    dtype = np.dtype(cache.x.dtype)
    gh = _grad(a, grad_h_next, "grad_h_next", (bsz, hid), dtype)
    gc = _grad(a, grad_c_next, "grad_c_next", (bsz, hid), dtype)
    run = _cuda.lstm_backward if on_gpu(a.fn, backend) else _adlk.lstm_backward
    gx, gh0, gc0, gw_ih, gw_hh, gb = run(
        None if gh is None else gh[None], None, gc, cache.x[None], cache.h, cache.c,
        cache.w_ih, cache.w_hh, cache.b_ih is not None or cache.b_hh is not None,
        cache.gates[None], cache.c_next[None], None, False,
    )
    gb_ih, gb_hh = _bias_grads(gb, cache.b_ih, cache.b_hh)
    return LSTMCellGrads(gx[0], gh0, gc0, gw_ih, gw_hh, gb_ih, gb_hh)


def _bias_grads(gb, b_ih, b_hh):
    """Both biases enter as a sum, so their gradients are equal (two separate arrays)."""
    if gb is None:
        return None, None
    if b_ih is not None and b_hh is not None:
        return gb, gb.copy()
    return (gb, None) if b_ih is not None else (None, gb)


def lstm_forward(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, reverse=False, out=None):
    """One LSTM layer over a whole sequence, as ``torch.nn.LSTM`` with num_layers=1.

    x (T, B, I), h0 and c0 (B, H) -> (y (T, B, H), h_n, c_n, cache). reverse=True runs
    from t = T-1 down to 0 (the backward direction of a bidirectional layer; y[t] is
    still the output at position t). float32: each step's gates come from x_t and
    h_{t-1} in one pass against w_ih and w_hh packed once per call; float64: the input
    projection of all T steps is one GEMM first, and only the recurrent GEMM runs inside
    the time loop.

    ``out``: optional (T, B, H) array that receives y (returned as y), e.g. one half of a
    bidirectional layer's (T, B, 2H) output; its last axis must have unit stride and its
    (t, b) rows even spacing, and it must not share memory with any other argument
    (ValueError "lstm_forward: out overlaps w_ih"). x may be such a view too (read
    without a copy).
    """
    a = Args("lstm_forward")
    arrays = dict(x=x, h0=h0, c0=c0, w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh, out=out)
    backend = backend_of(a.fn, arrays)
    a.float_dtype(**arrays)
    reverse = a.boolean(reverse, "reverse")
    x, h0, steps, bsz, n_in, hid = _seq_inputs(a, x, h0)
    c0 = _matrix(a, c0, "c0", (bsz, hid), f"(B, H) = ({bsz}, {hid})")
    w_ih, w_hh, b_ih, b_hh = _weights(a, 4, hid, n_in, w_ih, w_hh, b_ih, b_hh)
    gpu = on_gpu(a.fn, backend)
    y = _seq_out(a, out, arrays, (steps, bsz, hid), x.dtype, gpu)
    if gpu:
        h_n, c_n, gates, cells = _cuda.lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse, y)
    else:
        h_n, c_n, gates, cells = _adlk.lstm_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse, y, True)
    return y, h_n, c_n, LSTMCache(x, h0, c0, w_ih, w_hh, b_ih, b_hh, gates, cells, y, reverse)


def lstm_backward(grad_y, grad_h_n, grad_c_n, cache):
    """Backpropagation through time for :func:`lstm_forward`:
    LSTMGrads(x, h0, c0, w_ih, w_hh, b_ih, b_hh).

    grad_y (T, B, H) (a row-strided view is fine), grad_h_n and grad_c_n (B, H); any of
    them may be None (zero). The recurrence runs first; the weight gradients are then
    GEMMs over all T*B rows at once.
    """
    a = Args("lstm_backward")
    cache = _cache(a, cache, LSTMCache)
    backend = backend_of(
        a.fn, dict(grad_y=grad_y, grad_h_n=grad_h_n, grad_c_n=grad_c_n, **_arrays_of(cache))
    )
    steps, bsz, _ = cache.x.shape
    hid = cache.h0.shape[1]
    dtype = np.dtype(cache.x.dtype)
    grad_y = _seq_grad_y(a, grad_y, (steps, bsz, hid), dtype)
    gh = _grad(a, grad_h_n, "grad_h_n", (bsz, hid), dtype)
    gc = _grad(a, grad_c_n, "grad_c_n", (bsz, hid), dtype)
    run = _cuda.lstm_backward if on_gpu(a.fn, backend) else _adlk.lstm_backward
    gx, gh0, gc0, gw_ih, gw_hh, gb = run(
        grad_y, gh, gc, cache.x, cache.h0, cache.c0, cache.w_ih, cache.w_hh,
        cache.b_ih is not None or cache.b_hh is not None, cache.gates, cache.cells, cache.y,
        bool(cache.reverse),
    )
    gb_ih, gb_hh = _bias_grads(gb, cache.b_ih, cache.b_hh)
    return LSTMGrads(gx, gh0, gc0, gw_ih, gw_hh, gb_ih, gb_hh)


# ---- GRU and RNN cells -------------------------------------------------------------


def gru_cell_forward(x, h, w_ih, w_hh, b_ih=None, b_hh=None):
    """One GRU step, as ``torch.nn.GRUCell``: x (B, I), h (B, H) -> (h_next, cache).

    r = sigmoid(W_ir x + b_ir + W_hr h + b_hr), z likewise,
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), h_next = (1 - z) * n + z * h.
    """
    a = Args("gru_cell_forward")
    arrays = dict(x=x, h=h, w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh)
    backend = backend_of(a.fn, arrays)
    a.float_dtype(**arrays)
    x, h, _, n_in, hid = _cell_inputs(a, x, h)
    w_ih, w_hh, b_ih, b_hh = _weights(a, 3, hid, n_in, w_ih, w_hh, b_ih, b_hh)
    run = _cuda.gru_cell_forward if on_gpu(a.fn, backend) else _adlk.gru_cell_forward
    h_next, gates, hn = run(x, h, w_ih, w_hh, b_ih, b_hh)
    return h_next, GRUCellCache(x, h, w_ih, w_hh, b_ih, b_hh, gates, hn)


def gru_cell_backward(grad_h_next, cache):
    """Gradients of :func:`gru_cell_forward`: GRUCellGrads(x, h, w_ih, w_hh, b_ih, b_hh).
    grad_h_next (B, H) may be None (zero)."""
    a = Args("gru_cell_backward")
    cache = _cache(a, cache, GRUCellCache)
    backend = backend_of(a.fn, dict(grad_h_next=grad_h_next, **_arrays_of(cache)))
    g = _grad(a, grad_h_next, "grad_h_next", cache.h.shape, np.dtype(cache.x.dtype))
    gpu = on_gpu(a.fn, backend)
    if g is None:
        g = (_cuda._cp() if gpu else np).zeros(cache.h.shape, cache.x.dtype)
    gx, gh, gw_ih, gw_hh, gb_ih, gb_hh = (_cuda if gpu else _adlk).gru_cell_backward(
        g, cache.x, cache.h, cache.w_ih, cache.w_hh, cache.gates, cache.hn,
        cache.b_ih is not None, cache.b_hh is not None,
    )
    return GRUCellGrads(gx, gh, gw_ih, gw_hh, gb_ih, gb_hh)


def _nonlinearity(a: Args, nonlinearity):
    if not isinstance(nonlinearity, str) or nonlinearity not in ("tanh", "relu"):
        raise a.value_error("nonlinearity", f"expected 'tanh' or 'relu', got {nonlinearity!r}")
    return nonlinearity


def rnn_cell_forward(x, h, w_ih, w_hh, b_ih=None, b_hh=None, nonlinearity="tanh"):
    """One Elman RNN step, as ``torch.nn.RNNCell``: x (B, I), h (B, H) -> (h_next, cache),
    h_next = act(x W_ih^T + b_ih + h W_hh^T + b_hh) with act "tanh" or "relu"."""
    a = Args("rnn_cell_forward")
    arrays = dict(x=x, h=h, w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh)
    backend = backend_of(a.fn, arrays)
    a.float_dtype(**arrays)
    nonlinearity = _nonlinearity(a, nonlinearity)
    x, h, _, n_in, hid = _cell_inputs(a, x, h)
    w_ih, w_hh, b_ih, b_hh = _weights(a, 1, hid, n_in, w_ih, w_hh, b_ih, b_hh)
    run = _cuda.rnn_cell_forward if on_gpu(a.fn, backend) else _adlk.rnn_cell_forward
    h_next = run(x, h, w_ih, w_hh, b_ih, b_hh, nonlinearity == "relu")
    return h_next, RNNCellCache(x, h, w_ih, w_hh, b_ih, b_hh, h_next, nonlinearity)


def rnn_cell_backward(grad_h_next, cache):
    """Gradients of :func:`rnn_cell_forward`: RNNCellGrads(x, h, w_ih, w_hh, b_ih, b_hh).
    grad_h_next (B, H) may be None (zero). For relu the derivative at 0 is 0, as PyTorch."""
    a = Args("rnn_cell_backward")
    cache = _cache(a, cache, RNNCellCache)
    backend = backend_of(a.fn, dict(grad_h_next=grad_h_next, **_arrays_of(cache)))
    g = _grad(a, grad_h_next, "grad_h_next", cache.h.shape, np.dtype(cache.x.dtype))
    relu = _nonlinearity(a, cache.nonlinearity) == "relu"
    gpu = on_gpu(a.fn, backend)
    if g is None:
        g = (_cuda._cp() if gpu else np).zeros(cache.h.shape, cache.x.dtype)
    gx, gh, gw_ih, gw_hh, gb = (_cuda if gpu else _adlk).rnn_cell_backward(
        g, cache.x, cache.h, cache.w_ih, cache.w_hh, cache.h_next, relu,
        cache.b_ih is not None or cache.b_hh is not None,
    )
    gb_ih, gb_hh = _bias_grads(gb, cache.b_ih, cache.b_hh)
    return RNNCellGrads(gx, gh, gw_ih, gw_hh, gb_ih, gb_hh)

# ---- GRU and RNN sequences ---------------------------------------------------------


def gru_forward(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, reverse=False, out=None):
    """One GRU layer over a whole sequence, as ``torch.nn.GRU`` with num_layers=1.

    x (T, B, I), h0 (B, H) -> (y (T, B, H), h_n (B, H), cache). Each step is
    :func:`gru_cell_forward`'s: r = sigmoid(W_ir x + b_ir + W_hr h + b_hr), z likewise,
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), h' = (1 - z) * n + z * h. reverse=True
    runs from t = T-1 down to 0 (y[t] is still the output at position t). The input
    projection of all T steps is one GEMM; only the recurrent GEMM runs inside the time
    loop. ``out`` and row-strided x as :func:`lstm_forward`'s.
    """
    a = Args("gru_forward")
    arrays = dict(x=x, h0=h0, w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh, out=out)
    backend = backend_of(a.fn, arrays)
    a.float_dtype(**arrays)
    reverse = a.boolean(reverse, "reverse")
    x, h0, steps, bsz, n_in, hid = _seq_inputs(a, x, h0)
    w_ih, w_hh, b_ih, b_hh = _weights(a, 3, hid, n_in, w_ih, w_hh, b_ih, b_hh)
    gpu = on_gpu(a.fn, backend)
    y = _seq_out(a, out, arrays, (steps, bsz, hid), x.dtype, gpu)
    run = _cuda.gru_forward if gpu else _adlk.gru_forward
    h_n, gates, hn = run(x, h0, w_ih, w_hh, b_ih, b_hh, reverse, y)
    return y, h_n, GRUCache(x, h0, w_ih, w_hh, b_ih, b_hh, gates, hn, y, reverse)


def gru_backward(grad_y, grad_h_n, cache):
    """Backpropagation through time for :func:`gru_forward`:
    GRUGrads(x, h0, w_ih, w_hh, b_ih, b_hh).

    grad_y (T, B, H) (a row-strided view is fine) and grad_h_n (B, H); either may be None
    (zero). The two bias gradients differ (in the n block, b_hn's is scaled by r).
    """
    a = Args("gru_backward")
    cache = _cache(a, cache, GRUCache)
    backend = backend_of(a.fn, dict(grad_y=grad_y, grad_h_n=grad_h_n, **_arrays_of(cache)))
    steps, bsz, _ = cache.x.shape
    hid = cache.h0.shape[1]
    dtype = np.dtype(cache.x.dtype)
    grad_y = _seq_grad_y(a, grad_y, (steps, bsz, hid), dtype)
    gh = _grad(a, grad_h_n, "grad_h_n", (bsz, hid), dtype)
    run = _cuda.gru_backward if on_gpu(a.fn, backend) else _adlk.gru_backward
    grads = run(grad_y, gh, cache.x, cache.h0, cache.w_ih, cache.w_hh, cache.gates, cache.hn,
                cache.y, bool(cache.reverse), cache.b_ih is not None, cache.b_hh is not None)
    return GRUGrads(*grads)


def rnn_forward(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, nonlinearity="tanh", reverse=False,
                out=None):
    """One Elman RNN layer over a whole sequence, as ``torch.nn.RNN`` with num_layers=1.

    x (T, B, I), h0 (B, H) -> (y (T, B, H), h_n (B, H), cache), y_t = act(x_t W_ih^T + b_ih
    + h_{t-1} W_hh^T + b_hh) with act "tanh" or "relu". reverse, ``out`` and row-strided x
    as :func:`lstm_forward`'s.
    """
    a = Args("rnn_forward")
    arrays = dict(x=x, h0=h0, w_ih=w_ih, w_hh=w_hh, b_ih=b_ih, b_hh=b_hh, out=out)
    backend = backend_of(a.fn, arrays)
    a.float_dtype(**arrays)
    nonlinearity = _nonlinearity(a, nonlinearity)
    reverse = a.boolean(reverse, "reverse")
    x, h0, steps, bsz, n_in, hid = _seq_inputs(a, x, h0)
    w_ih, w_hh, b_ih, b_hh = _weights(a, 1, hid, n_in, w_ih, w_hh, b_ih, b_hh)
    gpu = on_gpu(a.fn, backend)
    y = _seq_out(a, out, arrays, (steps, bsz, hid), x.dtype, gpu)
    run = _cuda.rnn_forward if gpu else _adlk.rnn_forward
    h_n = run(x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity == "relu", reverse, y)
    return y, h_n, RNNCache(x, h0, w_ih, w_hh, b_ih, b_hh, y, nonlinearity, reverse)


def rnn_backward(grad_y, grad_h_n, cache):
    """Backpropagation through time for :func:`rnn_forward`:
    RNNGrads(x, h0, w_ih, w_hh, b_ih, b_hh).

    grad_y (T, B, H) (a row-strided view is fine) and grad_h_n (B, H); either may be None
    (zero). For relu the derivative at 0 is 0, as PyTorch.
    """
    a = Args("rnn_backward")
    cache = _cache(a, cache, RNNCache)
    backend = backend_of(a.fn, dict(grad_y=grad_y, grad_h_n=grad_h_n, **_arrays_of(cache)))
    relu = _nonlinearity(a, cache.nonlinearity) == "relu"
    steps, bsz, _ = cache.x.shape
    hid = cache.h0.shape[1]
    dtype = np.dtype(cache.x.dtype)
    grad_y = _seq_grad_y(a, grad_y, (steps, bsz, hid), dtype)
    gh = _grad(a, grad_h_n, "grad_h_n", (bsz, hid), dtype)
    run = _cuda.rnn_backward if on_gpu(a.fn, backend) else _adlk.rnn_backward
    gx, gh0, gw_ih, gw_hh, gb = run(grad_y, gh, cache.x, cache.h0, cache.w_ih, cache.w_hh, cache.y,
                                    relu, bool(cache.reverse),
                                    cache.b_ih is not None or cache.b_hh is not None)
    gb_ih, gb_hh = _bias_grads(gb, cache.b_ih, cache.b_hh)
    return RNNGrads(gx, gh0, gw_ih, gw_hh, gb_ih, gb_hh)


# ---- additive attention ------------------------------------------------------------


def additive_attention_forward(query, keys, w_query, w_key, v, mask=None):
    """Additive (Bahdanau) attention: query (B, Dq), keys (T, B, Dk), w_query (A, Dq),
    w_key (A, Dk), v (A,), mask (B, T) bool or None -> (context (B, Dk), weights (B, T), cache).

    score[b, t] = v . tanh(w_query @ query[b] + w_key @ keys[t, b]); weights = softmax over
    t, positions where mask is False weighted exactly 0; context[b] = sum_t weights[b, t] *
    keys[t, b]. A mask row with no True raises ValueError. The (T, B, A) tanh activations
    are computed once and kept in the cache for the backward.
    """
    a = Args("additive_attention_forward")
    arrays = dict(query=query, keys=keys, w_query=w_query, w_key=w_key, v=v)
    backend = backend_of(a.fn, dict(arrays, mask=mask))
    a.float_dtype(**arrays)
    query = a.array(query, "query", "(B, Dq)", ndim=2)
    keys = a.array(keys, "keys", "(T, B, Dk)", ndim=3)
    bsz, dq = query.shape
    steps, kb, dk = keys.shape
    if dq == 0:
        raise a.shape_error("query", "(B, Dq) with Dq >= 1", query.shape)
    if kb != bsz or steps == 0 or dk == 0:
        raise a.shape_error("keys", f"(T, B, Dk) = (T, {bsz}, Dk) with T, Dk >= 1", keys.shape)
    w_query = a.array(w_query, "w_query", f"(A, Dq) = (A, {dq})", ndim=2)
    att = w_query.shape[0]
    if att == 0 or w_query.shape[1] != dq:
        raise a.shape_error("w_query", f"(A, Dq) = (A, {dq}) with A >= 1", w_query.shape)
    w_key = _matrix(a, w_key, "w_key", (att, dk), f"(A, Dk) = ({att}, {dk})")
    v = _matrix(a, v, "v", (att,), f"(A,) = ({att},)")
    if mask is not None:
        a._require_array(mask, "mask")
        if np.dtype(mask.dtype) != np.bool_:
            raise a.type_error("mask", f"expected a bool array, got {mask.dtype}")
        mask = _matrix(a, mask, "mask", (bsz, steps), f"(B, T) = ({bsz}, {steps})")
        if isinstance(mask, np.ndarray):
            mask = mask.view(np.bool_)  # the canonical bool dtype (not a byte-swapped alias)
        if bsz and not mask.any(axis=1).all():
            row = int((~mask.any(axis=1)).argmax())  # the first such row (numpy or cupy)
            raise a.value_error("mask", f"row {row} has no True entry: nothing to attend to")
    run = _cuda.attention_forward if on_gpu(a.fn, backend) else _adlk.attention_forward
    context, weights, tanh_act = run(query, keys, w_query, w_key, v, mask)
    return context, weights, AttentionCache(query, keys, w_query, w_key, v, mask, tanh_act, weights)


def additive_attention_backward(grad_context, grad_weights, cache):
    """Gradients of :func:`additive_attention_forward`: AttentionGrads(query, keys, w_query,
    w_key, v). grad_context (B, Dk); grad_weights (B, T) or None."""
    a = Args("additive_attention_backward")
    cache = _cache(a, cache, AttentionCache)
    backend = backend_of(
        a.fn, dict(grad_context=grad_context, grad_weights=grad_weights, **_arrays_of(cache))
    )
    steps, bsz, dk = cache.keys.shape
    dtype = np.dtype(cache.query.dtype)
    if grad_context is None:
        raise a.type_error("grad_context", "expected an array, got None")
    gc = _grad(a, grad_context, "grad_context", (bsz, dk), dtype)
    gw = _grad(a, grad_weights, "grad_weights", (bsz, steps), dtype)
    run = _cuda.attention_backward if on_gpu(a.fn, backend) else _adlk.attention_backward
    grads = run(
        gc, gw, cache.query, cache.keys, cache.w_query, cache.w_key, cache.v, cache.tanh_act,
        cache.weights,
    )
    return AttentionGrads(*grads)
