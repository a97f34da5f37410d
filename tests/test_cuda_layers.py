"""ak.layers models moved to the GPU (Module.to("cuda")) and the demo's --device gpu run,
against the same model on the CPU. Skipped without cupy or a visible CUDA device."""

from __future__ import annotations

import numpy as np
import pytest

import adlkernels as ak
from adlkernels import layers

cp = pytest.importorskip("cupy")
if not ak.has_cuda():
    pytest.skip("no CUDA device visible to adlkernels", allow_module_level=True)
pytestmark = pytest.mark.usefixtures("cuda_kernels_on")


def _model(seed):
    rng = np.random.default_rng(seed)
    return layers.Sequential(
        layers.Conv2d(3, 8, 3, padding=1, rng=rng), layers.BatchNorm2d(8), layers.ReLU(),
        layers.MaxPool2d(2), layers.Flatten(), layers.Linear(8 * 4 * 4, 16, rng=rng),
        layers.LayerNorm(16), layers.Dropout(0.1, seed=3), layers.Linear(16, 5, rng=rng))


def test_a_model_trains_the_same_on_the_gpu(rng):
    x = rng.standard_normal((6, 3, 8, 8)).astype(np.float32)
    y = rng.integers(0, 5, 6)
    cpu, gpu = _model(0), _model(0).to("cuda")
    opt_c, opt_g = ak.optim.Adam(cpu.params(), lr=1e-2), ak.optim.Adam(gpu.params(), lr=1e-2)
    for _ in range(3):
        for net, opt, xb, yb in ((cpu, opt_c, x, y), (gpu, opt_g, cp.asarray(x), cp.asarray(y))):
            loss, g = ak.softmax_cross_entropy(net.forward(xb), yb)
            net.backward(g)
            opt.step(net.grads())
    for a, b in zip(gpu.params(), cpu.params()):
        assert isinstance(a, cp.ndarray)
        np.testing.assert_allclose(cp.asnumpy(a), b, rtol=1e-3, atol=1e-4)
    back = gpu.to("cpu")
    assert all(isinstance(p, np.ndarray) for p in back.params())


def test_lstm_layer_on_the_gpu(rng):
    x = rng.standard_normal((7, 4, 5)).astype(np.float32)
    cpu = layers.LSTM(5, 6, num_layers=2, bidirectional=True, rng=np.random.default_rng(1))
    gpu = layers.LSTM(5, 6, num_layers=2, bidirectional=True, rng=np.random.default_rng(1)).to("cuda")
    (y, _), (dy, _) = cpu.forward(x), gpu.forward(cp.asarray(x))
    np.testing.assert_allclose(cp.asnumpy(dy), y, rtol=1e-4, atol=1e-5)
    g = rng.standard_normal(y.shape).astype(np.float32)
    np.testing.assert_allclose(cp.asnumpy(gpu.backward(cp.asarray(g))), cpu.backward(g), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("model", ["cnn", "lstm"])
def test_demo_on_the_gpu(model):
    pytest.importorskip("sklearn")
    from adlkernels import _demo

    res = _demo.train(model, device="gpu", epochs=3, progress=False, log=None)
    assert res["test_accuracy"] > 0.5
