"""Accuracy of the kernels' vectorized sigmoid and tanh, read out through the cells.

With the sweep as a batch of 1-wide inputs: rnn_cell_forward with W_ih = [[1]], W_hh = 0
and no bias returns tanh(x); lstm_cell_forward with c = 1, the input gate driven to -inf
(sigmoid exactly 0) and x feeding only the forget gate returns c_next = sigmoid(x). Both are compared with
long-double references over a sweep from 1e-30 to 1e3 (both signs), in ulps of the
result: relative accuracy also near 0, where 1 - 2/(e^2x + 1) would lose it.
"""

import numpy as np
import pytest

import adlkernels as ak


def _sweep(dtype):
    mags = np.geomspace(1e-30, 1e3, 4001)
    x = np.concatenate([mags, -mags, [0.0, 0.625, -0.625, 0.6249999, 20.0, -20.0]])
    return x.astype(dtype)


def _ulps(got, ref, dtype):
    ref = ref.astype(np.longdouble)
    tiny = np.finfo(dtype).tiny
    spacing = np.spacing(np.maximum(np.abs(ref), tiny).astype(dtype)).astype(np.longdouble)
    return np.abs(got.astype(np.longdouble) - ref) / spacing


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tanh_within_2_ulp(dtype):
    x = _sweep(dtype)
    one, zero = np.ones((1, 1), dtype), np.zeros((1, 1), dtype)
    got, _ = ak.rnn_cell_forward(x[:, None], np.zeros((x.size, 1), dtype), one, zero)
    got = got[:, 0]
    ref = np.tanh(x.astype(np.longdouble))
    assert _ulps(got, ref, dtype).max() <= 2.0
    assert got[x == 0].tolist() == [0.0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_within_2_ulp(dtype):
    x = _sweep(dtype)
    n = x.size
    w_ih = np.array([[0], [1], [0], [0]], dtype)  # x feeds the forget gate only
    b = np.array([-np.inf, 0, 0, 0], dtype)       # input gate: sigmoid(-inf) = 0 exactly
    _, c_next, _ = ak.lstm_cell_forward(
        x[:, None], np.zeros((n, 1), dtype), np.ones((n, 1), dtype), w_ih,
        np.zeros((4, 1), dtype), b,
    )
    got = c_next[:, 0]
    ref = 1 / (1 + np.exp(-x.astype(np.longdouble)))
    # below the smallest normal number the result is only required to be that small
    normal = ref >= np.finfo(dtype).tiny
    assert _ulps(got[normal], ref[normal], dtype).max() <= 2.0
    assert np.all(got[~normal] <= np.finfo(dtype).tiny)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nonfinite_inputs(dtype):
    # through the bias, so that no 0 * inf enters the GEMMs
    b = np.array([np.nan, np.inf, -np.inf], dtype)
    z = np.zeros((3, 3), dtype)
    got, _ = ak.rnn_cell_forward(np.zeros((1, 3), dtype), np.zeros((1, 3), dtype), z, z, b)
    assert np.isnan(got[0, 0]) and got[0, 1] == 1 and got[0, 2] == -1
