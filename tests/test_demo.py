"""`python -m adlkernels demo`: short training runs of the CNN and the row-by-row LSTM on
scikit-learn's digits, early stopping, the command line's output and its exits."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import adlkernels as ak

pytest.importorskip("sklearn")  # in the test extra; the demo extra for users

from adlkernels import _demo  # noqa: E402
from adlkernels.__main__ import main  # noqa: E402

RESULT_KEYS = {
    "model", "epochs_run", "best_epoch", "stopped_early", "history", "final_train_loss",
    "test_loss", "test_accuracy", "target_accuracy", "train_seconds", "images_per_second",
    "time_shares", "n_train", "n_val", "n_test", "net",
}


@pytest.fixture(scope="module")
def data():
    return _demo.load_data(seed=0)


def test_data_split(data):
    sizes = {k: len(v[0]) for k, v in data.items()}
    assert sum(sizes.values()) == 1797
    assert sizes["test"] == 360 and sizes["val"] == 144
    for xs, ys in data.values():
        assert xs.dtype == np.float32 and xs.shape[1:] == (1, 8, 8)
        assert ys.dtype == np.int64
        assert 0.0 <= xs.min() and xs.max() <= 1.0
    again = _demo.load_data(seed=0)
    assert np.array_equal(again["test"][1], data["test"][1])  # fixed split


@pytest.mark.parametrize("model, family", [("cnn", "conv"), ("lstm", "rnn")])
def test_short_training_learns(model, family, data):
    lines = []
    res = _demo.train(model, epochs=3, train_limit=384, seed=0, progress=False,
                      log=lines.append, data=data)
    assert RESULT_KEYS <= set(res)
    assert res["model"] == model and res["n_train"] == 384
    hist = res["history"]
    assert res["epochs_run"] == 3 and len(lines) == 3
    assert all(len(v) == 3 for v in hist.values())
    assert hist["train_loss"][-1] < hist["train_loss"][0]
    assert hist["val_loss"][-1] < hist["val_loss"][0]
    assert hist["lr"][1] < hist["lr"][0]  # the schedule decays the learning rate
    assert 0.3 < res["test_accuracy"] <= 1.0  # 10 classes: chance is 0.1
    assert res["images_per_second"] > 0
    shares = res["time_shares"]
    assert set(shares) == {*_demo.FAMILIES, "other"}
    assert shares[family] > 0 and shares["optim"] > 0 and shares["nn"] > 0
    assert sum(shares.values()) == pytest.approx(1.0)
    other = "rnn" if family == "conv" else "conv"
    assert shares[other] == 0


def test_same_seed_same_run(data):
    kw = dict(epochs=2, train_limit=128, seed=3, progress=False, log=None, data=data)
    a, b = _demo.train("cnn", **kw), _demo.train("cnn", **kw)
    assert a["history"]["train_loss"] == b["history"]["train_loss"]


def test_early_stopping_restores_best(data):
    # lr = 0: the validation loss never improves after epoch 1, so patience 2 stops at 3.
    res = _demo.train("cnn", epochs=10, patience=2, lr=0.0, train_limit=64, progress=False,
                      log=None, data=data)
    assert res["stopped_early"] and res["epochs_run"] == 3 and res["best_epoch"] == 1


def test_row_lstm_backward_matches_finite_differences():
    rng = np.random.default_rng(0)
    net = _demo.RowLSTM(hidden=5, seed=1, dtype=np.float64)
    x = rng.standard_normal((3, 1, 8, 8))
    gy = rng.standard_normal((3, 10))
    net.forward(x)
    gx = net.backward(gy)
    assert gx.shape == x.shape
    eps = 1e-6
    for idx in [(0, 0, 0, 0), (1, 0, 7, 3), (2, 0, 4, 5)]:
        old = x[idx]
        x[idx] = old + eps
        up = np.sum(gy * net.forward(x))
        x[idx] = old - eps
        down = np.sum(gy * net.forward(x))
        x[idx] = old
        assert (up - down) / (2 * eps) == pytest.approx(gx[idx], rel=1e-6, abs=1e-8)


def test_cli_prints_results_and_writes_nothing(tmp_path, monkeypatch, capsys, restore_threads):
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--quiet", "--epochs", "2", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    for text in ("training loss", "test accuracy", "images/s", "conv", "pool", "optim"):
        assert text in out
    assert os.listdir(tmp_path) == []
    assert ak.get_num_threads() == 1  # --threads; the fixture restores it


def test_cli_lstm(capsys):
    assert main(["demo", "--model", "lstm", "--quiet", "--epochs", "1"]) == 0
    assert "rnn" in capsys.readouterr().out


def test_cli_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    path = tmp_path / "curves.png"
    assert main(["demo", "--quiet", "--epochs", "2", "--plot", str(path)]) == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(ak.has_cuda(), reason="a CUDA device is visible")
def test_cli_gpu_without_cuda_exits_2(capsys):
    assert main(["demo", "--device", "gpu"]) == 2
    err = capsys.readouterr().err
    assert "--device gpu" in err and len(err.strip().splitlines()) == 1


def test_cli_missing_extra_exits_2(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn now fails
    assert main(["demo", "--quiet"]) == 2
    assert 'pip install "adlkernels[demo]"' in capsys.readouterr().err


def test_cli_rejects_bad_options(capsys):
    assert main(["demo", "--epochs", "0"]) == 2
    assert "--epochs" in capsys.readouterr().err
