"""LSTM, GRU and RNN sequences and cells on cupy arrays (cuBLAS GEMMs around the
fused step kernels of cuda/rnn.cu), against the CPU kernels to rounding: the GEMMs and
the activations' multiply-adds round differently.

Skipped without cupy or without a visible CUDA device (CI has neither: there the step
kernels run on CPU threads in tests/cuda_emu, and the Python side in
test_cuda_orchestration.py).
"""

from __future__ import annotations

import numpy as np
import pytest

import adlkernels as ak

cp = pytest.importorskip("cupy")
if not ak.has_cuda():
    pytest.skip("no CUDA device visible to adlkernels", allow_module_level=True)
pytestmark = pytest.mark.usefixtures("cuda_kernels_on")


def _dev(*arrays):
    return [None if a is None else cp.asarray(a) for a in arrays]


def _close(got, want, dtype):
    tol = 2e-4 if dtype == np.float32 else 1e-10
    for g, e in zip(got, want):
        assert (g is None) == (e is None)
        if g is not None:
            np.testing.assert_allclose(cp.asnumpy(g), e, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("steps,bsz,n_in,hid", [(7, 5, 10, 33), (1, 1, 1, 1), (50, 64, 128, 256)])
def test_lstm_sequence_matches_the_cpu(rng, dtype, reverse, steps, bsz, n_in, hid):
    x = rng.standard_normal((steps, bsz, n_in)).astype(dtype)
    h0, c0 = (rng.standard_normal((bsz, hid)).astype(dtype) for _ in range(2))
    w = [(rng.standard_normal(s) / np.sqrt(hid)).astype(dtype) for s in ((4 * hid, n_in), (4 * hid, hid), (4 * hid,), (4 * hid,))]
    gy = rng.standard_normal((steps, bsz, hid)).astype(dtype)
    y, h_n, c_n, cache = ak.lstm_forward(x, h0, c0, *w, reverse=reverse)
    dy, dh_n, dc_n, dcache = ak.lstm_forward(*_dev(x, h0, c0, *w), reverse=reverse)
    _close((dy, dh_n, dc_n, dcache.gates, dcache.cells), (y, h_n, c_n, cache.gates, cache.cells), dtype)
    _close(ak.lstm_backward(cp.asarray(gy), None, None, dcache), ak.lstm_backward(gy, None, None, cache), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("steps,bsz,n_in,hid", [(7, 5, 10, 33), (1, 1, 1, 1), (50, 64, 128, 256)])
@pytest.mark.parametrize("kind", ["gru", "tanh", "relu"])
def test_gru_and_rnn_sequences_match_the_cpu(rng, kind, dtype, reverse, steps, bsz, n_in, hid):
    g = 3 if kind == "gru" else 1
    x = rng.standard_normal((steps, bsz, n_in)).astype(dtype)
    h0 = rng.standard_normal((bsz, hid)).astype(dtype)
    w = [(rng.standard_normal(s) / np.sqrt(hid)).astype(dtype) for s in ((g * hid, n_in), (g * hid, hid), (g * hid,), (g * hid,))]
    gy, gh = rng.standard_normal((steps, bsz, hid)).astype(dtype), rng.standard_normal((bsz, hid)).astype(dtype)
    if kind == "gru":
        fwd, bwd = ak.gru_forward, ak.gru_backward
    else:
        fwd = lambda *a, **k: ak.rnn_forward(*a, nonlinearity=kind, **k)  # noqa: E731
        bwd = ak.rnn_backward
    y, h_n, cache = fwd(x, h0, *w, reverse=reverse)
    wide = cp.zeros((steps, bsz, 2 * hid), dtype)  # y into one half of a bidirectional buffer
    dy, dh_n, dcache = fwd(*_dev(x, h0, *w), reverse=reverse, out=wide[:, :, :hid])
    assert not cp.asnumpy(wide[:, :, hid:]).any()
    extra = ((dcache.gates, dcache.hn), (cache.gates, cache.hn)) if kind == "gru" else ((), ())
    _close((dy, dh_n, *extra[0]), (y, h_n, *extra[1]), dtype)
    _close(bwd(cp.asarray(gy), cp.asarray(gh), dcache), bwd(gy, gh, cache), dtype)
    _close(bwd(None, None, dcache), bwd(None, None, cache), dtype)


def test_gru_is_deterministic(rng):
    x = cp.asarray(rng.standard_normal((20, 32, 64)).astype(np.float32))
    h0 = cp.zeros((32, 128), cp.float32)
    w = _dev(*(rng.standard_normal(s).astype(np.float32) * 0.1 for s in ((384, 64), (384, 128), (384,), (384,))))
    runs = []
    for _ in range(2):
        y, _, cache = ak.gru_forward(x, h0, *w)
        runs.append([cp.asnumpy(a) for a in (y, *ak.gru_backward(y, None, cache))])
    for a, b in zip(*runs):
        assert np.array_equal(a, b)

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cells_match_the_cpu(rng, dtype):
    bsz, n_in, hid = 17, 9, 40
    x, h, c, dh = (rng.standard_normal(s).astype(dtype) for s in ((bsz, n_in), (bsz, hid), (bsz, hid), (bsz, hid)))

    def weights(g):
        return [(rng.standard_normal(s) * 0.3).astype(dtype) for s in ((g * hid, n_in), (g * hid, hid), (g * hid,), (g * hid,))]

    for g, fwd, bwd in ((3, ak.gru_cell_forward, ak.gru_cell_backward), (1, ak.rnn_cell_forward, ak.rnn_cell_backward)):
        w = weights(g)
        h1, cache = fwd(x, h, *w)
        dh1, dcache = fwd(*_dev(x, h, *w))
        _close([dh1], [h1], dtype)
        _close(bwd(cp.asarray(dh), dcache), bwd(dh, cache), dtype)
    w = weights(4)
    h1, c1, cache = ak.lstm_cell_forward(x, h, c, *w)
    dh1, dc1, dcache = ak.lstm_cell_forward(*_dev(x, h, c, *w))
    _close([dh1, dc1], [h1, c1], dtype)
    _close(ak.lstm_cell_backward(cp.asarray(dh), None, dcache), ak.lstm_cell_backward(dh, None, cache), dtype)


def test_lstm_is_deterministic(rng):
    x = cp.asarray(rng.standard_normal((20, 32, 64)).astype(np.float32))
    h0 = c0 = cp.zeros((32, 128), cp.float32)
    w = _dev(*(rng.standard_normal(s).astype(np.float32) * 0.1 for s in ((512, 64), (512, 128), (512,), (512,))))
    runs = []
    for _ in range(2):
        y, _, _, cache = ak.lstm_forward(x, h0, c0, *w)
        runs.append([cp.asnumpy(a) for a in (y, *ak.lstm_backward(y, None, None, cache)) if a is not None])
    for a, b in zip(*runs):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("masked", [False, True])
def test_attention_matches_the_cpu(rng, dtype, masked):
    bsz, steps, dq, dk, att = 16, 37, 20, 24, 32
    q, k = rng.standard_normal((bsz, dq)).astype(dtype), rng.standard_normal((steps, bsz, dk)).astype(dtype)
    wq, wk, v = (rng.standard_normal(s).astype(dtype) * 0.3 for s in ((att, dq), (att, dk), (att,)))
    mask = None
    if masked:
        mask = rng.random((bsz, steps)) < 0.5
        mask[:, 0] = True
    gc, gw = rng.standard_normal((bsz, dk)).astype(dtype), rng.standard_normal((bsz, steps)).astype(dtype)
    ctx, w, cache = ak.additive_attention_forward(q, k, wq, wk, v, mask)
    dctx, dw, dcache = ak.additive_attention_forward(*_dev(q, k, wq, wk, v, mask))
    _close((dctx, dw, dcache.tanh_act), (ctx, w, cache.tanh_act), dtype)
    _close(ak.additive_attention_backward(*_dev(gc, gw), dcache), ak.additive_attention_backward(gc, gw, cache), dtype)
