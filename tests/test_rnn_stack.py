"""Stacked and bidirectional LSTMs composed from lstm_forward/lstm_backward without copies.

Each direction writes its y straight into its half of the layer's (T, B, 2H) output
(``out=``), the next layer reads that buffer as its x, and the backward hands each
direction its strided half of the upstream gradient. Checked against torch.nn.LSTM.
"""

import numpy as np
import pytest

import adlkernels as ak


def _torch_lstm(n_in, hid, layers, bidirectional, rng):
    torch = pytest.importorskip("torch")
    lstm = torch.nn.LSTM(n_in, hid, num_layers=layers, bidirectional=bidirectional).double()
    with torch.no_grad():
        for p in lstm.parameters():
            p.copy_(torch.from_numpy(rng.standard_normal(tuple(p.shape)) * 0.4))
    return lstm


def _params(lstm, layer, direction):
    sfx = f"_l{layer}" + ("_reverse" if direction else "")
    return [getattr(lstm, n + sfx).detach().numpy() for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]


def _forward(lstm, x, h0, c0, layers, dirs):
    hid = h0.shape[-1]
    steps, bsz, _ = x.shape
    caches, h_n, c_n = [], [], []
    inp = x
    for layer in range(layers):
        y = np.empty((steps, bsz, dirs * hid))
        for d in range(dirs):
            k = layer * dirs + d
            out = y[:, :, d * hid:(d + 1) * hid]
            yd, hk, ck, cache = ak.lstm_forward(
                inp, h0[k], c0[k], *_params(lstm, layer, d), reverse=bool(d), out=out
            )
            assert yd is out  # written in place, no copy
            assert np.shares_memory(cache.x, inp) and np.shares_memory(cache.y, y)
            caches.append(cache)
            h_n.append(hk)
            c_n.append(ck)
        inp = y
    return inp, np.stack(h_n), np.stack(c_n), caches


def _backward(grad_y, grad_h_n, grad_c_n, caches, layers, dirs, hid):
    grads = [None] * len(caches)
    g = grad_y
    for layer in reversed(range(layers)):
        gx = 0
        for d in range(dirs):
            k = layer * dirs + d
            gk = ak.lstm_backward(g[:, :, d * hid:(d + 1) * hid], grad_h_n[k], grad_c_n[k], caches[k])
            grads[k] = gk
            gx = gx + gk.x
        g = gx
    return g, grads


@pytest.mark.parametrize("layers,bidirectional", [(1, True), (2, False), (2, True)])
def test_stacked_lstm_matches_torch(layers, bidirectional):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    steps, bsz, n_in, hid = 5, 3, 4, 6
    dirs = 2 if bidirectional else 1
    lstm = _torch_lstm(n_in, hid, layers, bidirectional, rng)
    x = rng.standard_normal((steps, bsz, n_in))
    h0 = rng.standard_normal((layers * dirs, bsz, hid))
    c0 = rng.standard_normal((layers * dirs, bsz, hid))

    y, h_n, c_n, caches = _forward(lstm, x, h0, c0, layers, dirs)

    tx, th, tc = (torch.from_numpy(a).requires_grad_() for a in (x, h0, c0))
    ty, (thn, tcn) = lstm(tx, (th, tc))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(h_n, thn.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(c_n, tcn.detach().numpy(), rtol=1e-10, atol=1e-12)

    gy = rng.standard_normal(y.shape)
    ghn = rng.standard_normal(h_n.shape)
    gcn = rng.standard_normal(c_n.shape)
    torch.autograd.backward([ty, thn, tcn], [torch.from_numpy(a) for a in (gy, ghn, gcn)])
    gx, grads = _backward(gy, ghn, gcn, caches, layers, dirs, hid)

    np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(np.stack([g.h0 for g in grads]), th.grad.numpy(), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(np.stack([g.c0 for g in grads]), tc.grad.numpy(), rtol=1e-9, atol=1e-11)
    for layer in range(layers):
        for d in range(dirs):
            g = grads[layer * dirs + d]
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            for name, ours in (("weight_ih", g.w_ih), ("weight_hh", g.w_hh), ("bias_ih", g.b_ih), ("bias_hh", g.b_hh)):
                ref = getattr(lstm, name + sfx).grad.numpy()
                np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-11, err_msg=name + sfx)


def test_out_must_be_row_strided_and_writeable():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2, 4))
    h0 = np.zeros((2, 5))
    w_ih, w_hh = rng.standard_normal((20, 4)), rng.standard_normal((20, 5))
    buf = np.zeros((3, 2, 10))
    with pytest.raises(ValueError, match="out"):
        ak.lstm_forward(x, h0, h0, w_ih, w_hh, out=buf[:, :, ::2])  # no unit stride
    ro = np.zeros((3, 2, 5))
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out"):
        ak.lstm_forward(x, h0, h0, w_ih, w_hh, out=ro)
    with pytest.raises(ValueError, match="out"):
        ak.lstm_forward(x, h0, h0, w_ih, w_hh, out=np.zeros((3, 2, 6)))
    with pytest.raises(TypeError, match="out"):
        ak.lstm_forward(x, h0, h0, w_ih, w_hh, out=np.zeros((3, 2, 5), np.float32))
    # the untouched half of the buffer stays as it was
    y, *_ = ak.lstm_forward(x, h0, h0, w_ih, w_hh, out=buf[:, :, 5:])
    assert np.all(buf[:, :, :5] == 0) and np.shares_memory(y, buf)


def test_lstm_backward_beyond_the_kept_scratch_size():
    """Gate gradients over 64 MiB take a buffer of the call instead of the thread's
    persistent scratch; both paths must give the reference gradients."""
    from reference_rnn import lstm_backward_ref

    rng = np.random.default_rng(3)
    steps, bsz, n_in, hid = 520, 64, 3, 64  # T*B*4H float64 = 68 MB
    x = rng.standard_normal((steps, bsz, n_in)) * 0.5
    h0, c0 = rng.standard_normal((2, bsz, hid)) * 0.5
    w_ih = rng.standard_normal((4 * hid, n_in)) * 0.3
    w_hh = rng.standard_normal((4 * hid, hid)) * 0.1
    y, h_n, c_n, cache = ak.lstm_forward(x, h0, c0, w_ih, w_hh)
    gy = rng.standard_normal(y.shape)
    got = ak.lstm_backward(gy, None, None, cache)
    ref = lstm_backward_ref(gy, None, None, x, h0, c0, w_ih, w_hh)  # (gx, gh0, gc0, gw_ih, gw_hh, ...)
    for name, want in zip(("x", "h0", "c0", "w_ih", "w_hh"), ref):
        np.testing.assert_allclose(getattr(got, name), want, rtol=1e-9, atol=1e-9, err_msg=name)
