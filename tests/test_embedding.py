"""Embedding (docs/api/nn.md: embedding_forward, embedding_backward) against the float64
references of reference_nn.py and torch.nn.functional.embedding.

The forward is a copy (exact). The backward is compared with the float64 reference to
rounding and, bit for bit, with the plain position-order loop in the input's dtype (the
order the kernel promises), for 1, 2 and 3 threads. Then padding_idx (negative too),
repeated indices, 0-d to 3-d and empty index arrays, int32 indices, strided inputs, a
hypothesis property test, and argument validation (messages name the argument).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import adlkernels as ak
from helpers import names
from reference import assert_close
from reference_nn import embedding_backward_ref, embedding_backward_sequential, embedding_ref

INDEX_SHAPES = [(), (1,), (7,), (3, 5), (2, 3, 4), (0,), (2, 0), (0, 3, 2)]
INDEX_DTYPES = [np.int64, np.int32]


def same_bits(a, b) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def _case(rng, shape, V, D, dtype, idx_dtype=np.int64):
    idx = rng.integers(0, V, size=shape).astype(idx_dtype) if V else np.zeros(shape, idx_dtype)
    w = rng.standard_normal((V, D)).astype(dtype)
    gy = rng.standard_normal(tuple(shape) + (D,)).astype(dtype)
    return idx, w, gy


def test_exported():
    assert ak.embedding_forward is ak.nn.embedding_forward
    assert ak.embedding_backward is ak.nn.embedding_backward
    assert {"embedding_forward", "embedding_backward"} <= set(ak.__all__)


@pytest.mark.parametrize("idx_dtype", INDEX_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", INDEX_SHAPES, ids=str)
def test_forward_is_the_rows(rng, dtype, shape, idx_dtype):
    idx, w, _ = _case(rng, shape, 11, 6, dtype, idx_dtype)
    y = ak.embedding_forward(idx, w)
    assert y.shape == idx.shape + (6,) and y.dtype == dtype and y.flags.c_contiguous
    np.testing.assert_array_equal(y, embedding_ref(idx, w).astype(dtype))
    assert same_bits(ak.embedding_forward(idx, w, padding_idx=3), y)  # no effect on the forward


@pytest.mark.parametrize("pad", [None, 0, 4, -1, -11])
@pytest.mark.parametrize("idx_dtype", INDEX_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", INDEX_SHAPES, ids=str)
def test_backward_sums_per_index(rng, dtype, shape, idx_dtype, pad):
    V, D = 11, 5
    idx, _, gy = _case(rng, shape, V, D, dtype, idx_dtype)
    if idx.size > 2:
        idx.reshape(-1)[:3] = 4  # repeated, and on the padding row of pad=4
    gw = ak.embedding_backward(gy, idx, V, padding_idx=pad)
    assert gw.shape == (V, D) and gw.dtype == dtype and gw.flags.c_contiguous
    assert_close(gw, embedding_backward_ref(gy, idx, V, pad), dtype)
    assert same_bits(gw, embedding_backward_sequential(gy, idx, V, pad))
    if pad is not None:
        assert not gw[pad % V].any()


def test_backward_of_one_heavy_row_keeps_position_order(rng):
    """Every position on one row, values whose float32 sum depends on the order."""
    n, D = 3000, 300  # D beyond one column block (256)
    gy = (rng.standard_normal((n, D)) * np.logspace(-6, 6, n)[:, None]).astype(np.float32)
    idx = np.full(n, 2, np.int64)
    gw = ak.embedding_backward(gy, idx, 5)
    assert same_bits(gw, embedding_backward_sequential(gy, idx, 5))
    assert not same_bits(gw[2], gy[::-1].cumsum(axis=0, dtype=np.float32)[-1])  # order matters here


def test_empty_table_and_zero_width(dtype):
    assert ak.embedding_forward(np.zeros(0, np.int64), np.zeros((0, 3), dtype)).shape == (0, 3)
    assert ak.embedding_backward(np.zeros((0, 3), dtype), np.zeros(0, np.int64), 0).shape == (0, 3)
    y = ak.embedding_forward(np.array([[1, 0]]), np.zeros((2, 0), dtype))
    assert y.shape == (1, 2, 0)
    gw = ak.embedding_backward(np.zeros((1, 2, 0), dtype), np.array([[1, 0]]), 4)
    assert gw.shape == (4, 0)
    gw = ak.embedding_backward(np.zeros((0, 3), dtype), np.zeros(0, np.int64), 4, padding_idx=1)
    assert same_bits(gw, np.zeros((4, 3), dtype))


def test_strided_inputs(rng, dtype):
    idx = rng.integers(0, 9, (6, 8))[:, ::2].T  # non-contiguous
    w = np.asfortranarray(rng.standard_normal((9, 5)).astype(dtype))
    np.testing.assert_array_equal(ak.embedding_forward(idx, w), embedding_ref(idx, w).astype(dtype))
    gy = rng.standard_normal((4, 6, 10)).astype(dtype)[:, :, ::2]
    assert same_bits(ak.embedding_backward(gy, idx, 9), embedding_backward_sequential(gy, idx, 9))
    big_endian = idx.astype(">i8")
    np.testing.assert_array_equal(ak.embedding_forward(big_endian, w), ak.embedding_forward(idx, w))


@pytest.mark.parametrize("pad", [None, 3, -2])
@pytest.mark.parametrize("shape", [(7,), (4, 6), (2, 3, 4), (0,), ()], ids=str)
def test_torch_parity(rng, dtype, shape, pad):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    V, D = 10, 7
    idx, w, gy = _case(rng, shape, V, D, dtype)
    if idx.size > 1:
        idx.reshape(-1)[:2] = 3  # repeated, on the padding row of pad=3
    wt = torch.tensor(w, requires_grad=True)
    yt = F.embedding(torch.from_numpy(idx), wt, padding_idx=pad)
    yt.backward(torch.from_numpy(gy))
    y = ak.embedding_forward(idx, w, padding_idx=pad)
    np.testing.assert_array_equal(y, yt.detach().numpy())
    gw = ak.embedding_backward(gy, idx, V, padding_idx=pad)
    assert_close(gw, wt.grad.numpy().astype(np.float64), dtype)
    want = torch.ops.aten.embedding_dense_backward(torch.from_numpy(gy), torch.from_numpy(idx), V,
                                                   -1 if pad is None else pad % V, False)
    assert_close(gw, want.numpy().astype(np.float64), dtype)


def test_thread_counts_bitwise(rng, restore_threads, dtype):
    """Large enough to be split across threads; a Zipf-like index distribution (a few
    heavy rows, many empty ones)."""
    V, D, n = 700, 96, 4000
    idx = np.minimum(rng.zipf(1.3, n) - 1, V - 1).astype(np.int64)
    w = rng.standard_normal((V, D)).astype(dtype)
    gy = rng.standard_normal((n, D)).astype(dtype)
    want = embedding_backward_sequential(gy, idx, V, 5)
    results = {}
    for threads in (1, 2, 3):
        ak.set_num_threads(threads)
        results[threads] = (ak.embedding_forward(idx, w), ak.embedding_backward(gy, idx, V, 5))
        assert same_bits(results[threads][1], want), f"{threads} threads"
        assert same_bits(results[threads][0], results[1][0]), f"{threads} threads"


@settings(max_examples=60, deadline=None)
@given(shape=st.lists(st.integers(0, 5), min_size=0, max_size=3), V=st.integers(1, 9),
       D=st.integers(0, 6), pad=st.one_of(st.none(), st.integers(-9, 8)), seed=st.integers(0, 2**32 - 1),
       double=st.booleans(), int32=st.booleans())
def test_property_matches_the_definition(shape, V, D, pad, seed, double, int32):
    if pad is not None and not -V <= pad < V:
        pad = None
    dtype = np.float64 if double else np.float32
    rng = np.random.default_rng(seed)
    idx, w, gy = _case(rng, tuple(shape), V, D, dtype, np.int32 if int32 else np.int64)
    y = ak.embedding_forward(idx, w, padding_idx=pad)
    np.testing.assert_array_equal(y, embedding_ref(idx, w).astype(dtype))
    gw = ak.embedding_backward(gy, idx, V, padding_idx=pad)
    assert same_bits(gw, embedding_backward_sequential(gy, idx, V, pad))


# ---- argument validation ----------------------------------------------------------------------


def _raises(exc, arg, fn, *args, match=None, **kw):
    with pytest.raises(exc) as e:
        fn(*args, **kw)
    msg = str(e.value)
    assert msg.startswith(fn.__name__ + ":") and names(msg, arg), msg
    if match:
        assert match in msg, msg
    return msg


def test_out_of_range_indices_raise(dtype):
    w = np.zeros((5, 3), dtype)
    for bad in (5, -1, 2**40):
        idx = np.array([[0, 1], [bad, 2]], np.int64)
        _raises(ValueError, "indices", ak.embedding_forward, idx, w,
                match=f"value {bad} at [2] is outside [0, 5)")
        _raises(ValueError, "indices", ak.embedding_backward, np.zeros((2, 2, 3), dtype), idx, 5,
                match=f"value {bad} at [2] is outside [0, 5)")
    # num_embeddings smaller than an index used
    _raises(ValueError, "indices", ak.embedding_backward, np.zeros((2, 3), dtype),
            np.array([0, 4]), 4, match="value 4 at [1]")
    _raises(ValueError, "indices", ak.embedding_forward, np.array([-3], np.int32), w)


def test_bad_arguments(dtype):
    w = np.zeros((5, 3), dtype)
    idx = np.array([0, 4, 2])
    gy = np.zeros((3, 3), dtype)
    f, b = ak.embedding_forward, ak.embedding_backward
    for bad_idx in (idx.astype(np.float64), idx.astype(np.float32), idx.astype(np.uint64),
                    idx.astype(np.int16), idx.astype(bool), [0, 1]):
        _raises(TypeError, "indices", f, bad_idx, w)
        _raises(TypeError, "indices", b, gy, bad_idx, 5)
    _raises(TypeError, "weight", f, idx, w.astype(np.int64))
    _raises(TypeError, "weight", f, idx, None)
    _raises(ValueError, "weight", f, idx, np.zeros(5, dtype), match="expected shape (V, D), got (5,)")
    _raises(ValueError, "weight", f, idx, np.zeros((5, 3, 1), dtype))
    for pad in (5, -6, 100):
        _raises(ValueError, "padding_idx", f, idx, w, padding_idx=pad, match="[-5, 5)")
        _raises(ValueError, "padding_idx", b, gy, idx, 5, padding_idx=pad)
    for pad in (1.0, "0", True):
        _raises(TypeError, "padding_idx", f, idx, w, padding_idx=pad)
        _raises(TypeError, "padding_idx", b, gy, idx, 5, padding_idx=pad)
    _raises(TypeError, "grad_y", b, gy.astype(np.int64), idx, 5)
    _raises(ValueError, "grad_y", b, np.zeros((4, 3), dtype), idx, 5, match="expected shape (3, D), got (4, 3)")
    _raises(ValueError, "grad_y", b, np.zeros(3, dtype), idx, 5)
    _raises(ValueError, "grad_y", b, np.zeros((1, 3, 3), dtype), idx, 5)
    _raises(ValueError, "num_embeddings", b, gy, idx, -1)
    for v in (5.0, None, True):
        _raises(TypeError, "num_embeddings", b, gy, idx, v)
    _raises(ValueError, "num_embeddings", b, gy, np.zeros(3, np.int64), 2**62, match="64-bit sizes")
