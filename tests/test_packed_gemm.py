"""The packed-weight GEMM (adlk/packed_gemm.h) that the recurrent sequences use in float32.

Against a float64 product, on the shapes where a register-tiled kernel goes wrong: rows
not a multiple of the micro-tile, columns not a multiple of the 32-wide panel, K of 0 and
1, accumulation onto C. Its numerics promise (one fused multiply-add chain per element in
k order) is checked bitwise: the AVX2 kernel forced on an AVX-512 machine gives the same
bits, and so does an element computed on its own.
"""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from adlkernels import _adlk

gemm = _adlk._gemm_packed


def _rand(rng, *shape):
    return rng.standard_normal(shape, dtype=np.float32)


def _ref(a, w, c=None):
    out = a.astype(np.float64) @ w.astype(np.float64).T
    return out if c is None else out + c


@pytest.mark.parametrize("M", [1, 2, 5, 6, 7, 8, 9, 11, 12, 13, 17, 25, 64])
@pytest.mark.parametrize("N", [1, 15, 16, 17, 31, 32, 33, 48, 64, 97, 192])
def test_matches_float64_product(M, N):
    rng = np.random.default_rng(M * 1000 + N)
    K = 37
    a = rng.standard_normal((M, K)).astype(np.float32)
    w = rng.standard_normal((N, K)).astype(np.float32)
    c = rng.standard_normal((M, N)).astype(np.float32)
    np.testing.assert_allclose(gemm(a, w), _ref(a, w), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(gemm(a, w, c), _ref(a, w, c), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("K", [0, 1, 2, 255, 256, 257, 1100, 2048, 2049, 3100])
def test_inner_dimension_edges(K):
    rng = np.random.default_rng(K)
    a = rng.standard_normal((9, K)).astype(np.float32)
    w = rng.standard_normal((40, K)).astype(np.float32)
    c = rng.standard_normal((9, 40)).astype(np.float32)
    np.testing.assert_allclose(gemm(a, w), _ref(a, w), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(gemm(a, w, c), _ref(a, w, c), rtol=1e-5, atol=1e-4)
    if K == 0:  # an empty product: exactly 0, or exactly c
        assert not gemm(a, w).any()
        np.testing.assert_array_equal(gemm(a, w, c), c)


def test_empty_outputs():
    assert gemm(np.zeros((0, 3), np.float32), np.zeros((4, 3), np.float32)).shape == (0, 4)
    assert gemm(np.zeros((2, 3), np.float32), np.zeros((0, 3), np.float32)).shape == (2, 0)


def test_writes_only_its_columns():
    """A partial last panel: its padding columns are neither stored (a store past column
    N would leave the (M, N) output, which the sanitizer build catches) nor mixed into
    the real ones."""
    rng = np.random.default_rng(5)
    a = rng.standard_normal((13, 8)).astype(np.float32)
    w = rng.standard_normal((35, 8)).astype(np.float32)
    c = np.full((13, 35), 7.0, np.float32)
    out = gemm(a, w, c)
    np.testing.assert_allclose(out, _ref(a, w, c), rtol=1e-5, atol=1e-4)


def test_each_element_is_one_fma_chain_in_k_order():
    """An element's bits do not depend on its row or column position in the tiles: the
    (i, j) element of a big product equals the 1x1 product of row i and column j."""
    rng = np.random.default_rng(7)
    a = rng.standard_normal((29, 2100)).astype(np.float32)  # deeper than one depth chunk
    w = rng.standard_normal((67, 2100)).astype(np.float32)
    c = rng.standard_normal((29, 67)).astype(np.float32)
    full, acc = gemm(a, w), gemm(a, w, c)
    for i, j in [(0, 0), (11, 31), (12, 32), (28, 66), (17, 40)]:
        assert gemm(a[i:i + 1], w[j:j + 1])[0, 0] == full[i, j]
        assert gemm(a[i:i + 1], w[j:j + 1], c[i:i + 1, j:j + 1])[0, 0] == acc[i, j]


@pytest.mark.parametrize("K1, K2", [(0, 5), (5, 0), (1, 1), (37, 70), (128, 256), (300, 400),
                                    (0, 700), (600, 0), (900, 1300), (0, 2100), (2100, 0)])
@pytest.mark.parametrize("M, N", [(1, 1), (13, 33), (64, 128)])
def test_two_products_match_float64(M, N, K1, K2):
    """gemm_packed2 (a recurrent step's x_t @ W_ih^T + h @ W_hh^T in one pass)."""
    rng = np.random.default_rng(M + N + K1 + K2)
    a, w = _rand(rng, M, K1), _rand(rng, N, K1)
    a2, w2 = _rand(rng, M, K2), _rand(rng, N, K2)
    c = _rand(rng, M, N)
    ref = _ref(a, w) + _ref(a2, w2)
    np.testing.assert_allclose(gemm(a, w, a2=a2, w2=w2), ref, rtol=1e-5, atol=2e-4)
    np.testing.assert_allclose(gemm(a, w, c, a2, w2), ref + c, rtol=1e-5, atol=2e-4)


@pytest.mark.parametrize("K1, K2", [(40, 90), (300, 400), (700, 5)])
def test_two_products_are_one_chain(K1, K2):
    """The second product continues each element's chain: the same bits as the first
    product stored and then accumulated onto (what a stored input projection gave), also
    where a deep product is run in chunks of the depth."""
    rng = np.random.default_rng(11)
    a, w = _rand(rng, 29, K1), _rand(rng, 67, K1)
    a2, w2 = _rand(rng, 29, K2), _rand(rng, 67, K2)
    c = _rand(rng, 29, 67)
    np.testing.assert_array_equal(gemm(a, w, a2=a2, w2=w2), gemm(a2, w2, gemm(a, w)))
    np.testing.assert_array_equal(gemm(a, w, c, a2, w2), gemm(a2, w2, gemm(a, w, c)))


def test_bad_arguments():
    a = np.zeros((2, 3), np.float32)
    with pytest.raises(TypeError, match="^a: expected dtype float32"):
        gemm(a.astype(np.float64), a)
    with pytest.raises(ValueError, match="^w: expected shape"):
        gemm(a, np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="^c: expected shape"):
        gemm(a, a, np.zeros((3, 3), np.float32))
    with pytest.raises(ValueError, match="^a: expected a 2-D array"):
        gemm(np.zeros(3, np.float32), a)
    with pytest.raises(ValueError, match="^a2, w2: give both"):
        gemm(a, a, a2=a)
    with pytest.raises(ValueError, match="^w2: expected shape"):
        gemm(a, a, a2=np.zeros((2, 5), np.float32), w2=np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="^a2: expected shape"):
        gemm(a, a, a2=np.zeros((3, 5), np.float32), w2=np.zeros((2, 5), np.float32))
    with pytest.raises(TypeError, match="^a2: expected dtype float32"):
        gemm(a, a, a2=np.zeros((2, 5)), w2=np.zeros((2, 5), np.float32))


_CHILD = """
import json, sys, numpy as np, adlkernels as ak
from adlkernels import _adlk
rng = np.random.default_rng(3)
a = rng.standard_normal((37, 300)).astype(np.float32)
w = rng.standard_normal((101, 300)).astype(np.float32)
c = rng.standard_normal((37, 101)).astype(np.float32)
x = rng.standard_normal((6, 5, 20)).astype(np.float32)
H = 70
s = 1 / np.sqrt(H)
u = lambda *shape: rng.uniform(-s, s, shape).astype(np.float32)
y, h_n, gru_cache = ak.gru_forward(x, u(5, H), u(3 * H, 20), u(3 * H, H), u(3 * H), u(3 * H))
yr, _, rnn_cache = ak.rnn_forward(x, u(5, H), u(H, 20), u(H, H), u(H), u(H))
yl, _, _, lstm_cache = ak.lstm_forward(x, u(5, H), u(5, H), u(4 * H, 20), u(4 * H, H), u(4 * H),
                                       u(4 * H))
gy = rng.standard_normal(y.shape).astype(np.float32)
grads = [g for g in ak.gru_backward(gy, None, gru_cache) + ak.rnn_backward(gy, None, rnn_cache)
         + ak.lstm_backward(gy, None, None, lstm_cache) if g is not None]
# the conv forward by tap classes (40 output channels: a whole and a partial panel; 20
# per group), or with ADLK_CONV_TAPS=never on the panels (AVX-512 fills with it, the AVX2
# fills with avx2; rows of 11 and of 16 outputs: partial and whole 8- and 16-lane blocks;
# of 152 and 304: rows beyond the block fills' 16 cached masks, for AVX2 only and for
# both), grad_x as a forward on them, and the packed grad_weight (grad_y packed by
# AVX-512 transposes with it, by AVX2 ones with avx2; by taps for 8 channels and more,
# else from the bands); at depths 216 and 360 the AVX2 tap forward runs its depth in 2 and
# 3 pieces
conv = []
for s, g, width, ch in ((1, 1, 11, 6), (2, 2, 11, 6), (1, 1, 16, 8), (1, 1, 152, 6),
                        (1, 1, 304, 6), (1, 1, 11, 24), (1, 1, 16, 40)):
    cx = rng.standard_normal((5, ch, 13, width)).astype(np.float32)
    cw = rng.standard_normal((40, ch // g, 3, 3)).astype(np.float32)
    cy = ak.conv2d_forward(cx, cw, rng.standard_normal(40).astype(np.float32), stride=s,
                           padding=1, groups=g)
    cgy = rng.standard_normal(cy.shape).astype(np.float32)
    conv += list(ak.conv2d_backward(cgy, cx, cw, stride=s, padding=1, groups=g,
                                    output_mask=(True, True, False))[:2]) + [cy]
# grad_weight from built columns in blocks of output rows, each a part of the depth of
# grad_y's packed panels (test_conv's no_bands_row_blocks)
cx = rng.standard_normal((1, 6, 450, 300)).astype(np.float32)
cw = rng.standard_normal((40, 6, 3, 3)).astype(np.float32)
cgy = rng.standard_normal((1, 40, 150, 100)).astype(np.float32)
conv.append(ak.conv2d_backward(cgy, cx, cw, stride=3, padding=1, dilation=2,
                               output_mask=(False, True, False))[1])
a2 = rng.standard_normal((37, 50)).astype(np.float32)
w2 = rng.standard_normal((101, 50)).astype(np.float32)
# 37, 38 and 39 rows: remainders of 1, 2 and 3 rows past the AVX2 kernel's 6-row tiles,
# which it runs as a 4-row tile and one of the rest
out = np.concatenate([_adlk._gemm_packed(a, w).ravel(), _adlk._gemm_packed(a, w, c).ravel(),
                      _adlk._gemm_packed(np.ascontiguousarray(np.vstack([a, a[:1]])), w).ravel(),
                      _adlk._gemm_packed(np.ascontiguousarray(np.vstack([a, a[:2]])), w).ravel(),
                      _adlk._gemm_packed(a, w, c, a2, w2).ravel(), y.ravel(), yr.ravel(),
                      yl.ravel()] + [g.ravel() for g in grads + conv])
print(json.dumps({"isa": ak.build_info()["gemm_isa"], "hex": out.tobytes().hex()}))
"""


def _child(isa, taps=""):
    env = dict(os.environ, ADLK_GEMM_ISA=isa, ADLK_CONV_PANELS="always", ADLK_CONV_TAPS=taps)
    out = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True,
                         check=True, timeout=300)
    return json.loads(out.stdout)


def test_isa_request_and_bitwise_identity_across_vector_widths():
    """ADLK_GEMM_ISA=avx2 selects the AVX2 kernel where the CPU has AVX2; its results
    (GEMM, GRU, RNN and LSTM sequences and their gradients, float32 conv forward and
    grad_weight) are the same bits as the widest kernel's, the conv forward's both by tap
    classes and on the panels, and those two agree."""
    widest = _child("")
    if widest["isa"] == "portable":
        pytest.skip("no AVX2 on this CPU: only the portable kernel")
    avx2 = _child("avx2")
    assert avx2["isa"] == "avx2"
    assert avx2["hex"] == widest["hex"]
    panels = _child("", taps="never")
    assert _child("avx2", taps="never")["hex"] == panels["hex"]
    # the chains without the padding's zero terms: the same bits (finite weights)
    assert panels["hex"] == widest["hex"]
    assert _child("portable")["isa"] == "portable"


def test_fma_peak_hook():
    """The benchmarks' compute ceiling: a positive rate from a short run, not below the
    rate the packed GEMM (one thread) reaches, which cannot beat pure FMAs; bad durations
    rejected."""
    peak = _adlk._fma_peak_gflops(0.05)
    assert np.isfinite(peak) and peak > 0
    rng = np.random.default_rng(0)
    a, w = _rand(rng, 256, 256), _rand(rng, 256, 256)
    gemm(a, w)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        gemm(a, w)
        best = min(best, time.perf_counter() - t0)
    gemm_rate = 2 * 256**3 / best / 1e9
    # a margin for a peak run that the machine slowed while the GEMM ran quietly
    assert peak > 0.5 * gemm_rate, (peak, gemm_rate)
    for bad in (-1.0, float("nan"), 61.0):
        with pytest.raises(ValueError, match="seconds"):
            _adlk._fma_peak_gflops(bad)
