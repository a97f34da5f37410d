"""The main-job demo: ``python -m adlkernels demo [--model cnn|lstm|seq2seq]``.

``seq2seq`` (an encoder-decoder with attention reading dates) lives in _seq2seq.py; the
rest of this module is the digits demo.

Trains a small network on scikit-learn's bundled 8x8 digits (1797 images, no download)
with adlkernels' layers (ak.layers), fused loss (ak.nn.softmax_cross_entropy), Adam and a
learning-rate schedule (ak.optim), and reports training loss, test accuracy, images per
second and each kernel family's share of the time.

- ``cnn``: LeNet-style: conv3x3(1->32)-relu-maxpool2, conv3x3(32->64)-relu-maxpool2,
  flatten, linear(256->128)-relu-dropout(0.25), linear(128->10).
- ``lstm``: an LSTM (hidden 64) reads each digit row by row (8 steps of 8 pixels); a
  linear layer classifies its last output.

The data is split with a fixed seed: 20% test, then 10% of the rest for validation.
Training stops early when the validation loss has not improved for ``patience`` epochs,
and the best weights (lowest validation loss) are restored before testing.

scikit-learn and tqdm are the optional extra ``adlkernels[demo]``; matplotlib (same
extra) is needed only for ``--plot``. Nothing is written except the plot.
"""

from __future__ import annotations

import math
import sys
import time
from contextlib import contextmanager

import numpy as np

from . import _cuda, layers, nn, optim

FAMILIES = ("conv", "pool", "nn", "norm", "rnn", "optim")
INSTALL_HINT = 'pip install "adlkernels[demo]"'

# Defaults per model: Adam lr, schedule (ExponentialLR gamma) and the accuracy the
# README promises.
_DEFAULTS = {
    "cnn": dict(lr=3e-3, gamma=0.9, target=0.97),
    "lstm": dict(lr=1e-2, gamma=0.9, target=0.95),
}


class MissingDependency(RuntimeError):
    """An optional dependency of the demo is not installed."""


class DeviceUnavailable(RuntimeError):
    """``--device gpu`` cannot run on this machine or with this build."""


# ---- timing per kernel family -------------------------------------------------------------


class FamilyTimer:
    """Accumulates wall time per kernel family (conv, pool, nn, norm, rnn, optim)."""

    def __init__(self):
        self.seconds = {f: 0.0 for f in FAMILIES}

    @contextmanager
    def paused(self):
        """Time spent inside is not charged to any family (evaluation passes)."""
        saved = dict(self.seconds)
        try:
            yield
        finally:
            self.seconds = saved

    @contextmanager
    def __call__(self, family):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[family] += time.perf_counter() - t0

    def wrap(self, fn, family):
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[family] += time.perf_counter() - t0

        return timed

    def shares(self, total):
        """Fraction of ``total`` seconds per family, plus ``other`` (Python, batching)."""
        out = {f: (s / total if total > 0 else 0.0) for f, s in self.seconds.items()}
        out["other"] = max(0.0, 1.0 - sum(out.values()))
        return out


def _family(layer):
    if isinstance(layer, layers.Conv2d):
        return "conv"
    if isinstance(layer, (layers.MaxPool2d, layers.AvgPool2d)):
        return "pool"
    if isinstance(layer, (layers.Linear, layers.ReLU, layers.Tanh, layers.Sigmoid,
                          layers.Dropout, layers.Embedding)):
        return "nn"
    if isinstance(layer, (layers._BatchNorm, layers.LayerNorm)):
        return "norm"
    if isinstance(layer, (layers._Recurrent, layers.AdditiveAttention)):
        return "rnn"
    return None  # Flatten, containers: reshapes only


def instrument(model, timer):
    """Wraps forward/backward of every leaf layer of ``model`` (instance attributes, the
    classes are untouched) so that their time is charged to their kernel family."""
    children = model.children()
    if not children:
        fam = _family(model)
        if fam is not None:
            model.forward = timer.wrap(model.forward, fam)
            model.backward = timer.wrap(model.backward, fam)
        return model
    for child in children:
        instrument(child, timer)
    return model


# ---- models -------------------------------------------------------------------------------


def build_cnn(seed=0, channels=(32, 64), hidden=128, dropout=0.25, dtype=np.float32):
    """LeNet-style CNN for (N, 1, 8, 8) inputs."""
    rng = np.random.default_rng(seed)
    c1, c2 = channels
    return layers.Sequential(
        layers.Conv2d(1, c1, 3, padding=1, dtype=dtype, rng=rng),
        layers.ReLU(),
        layers.MaxPool2d(2),  # c1 x 4 x 4
        layers.Conv2d(c1, c2, 3, padding=1, dtype=dtype, rng=rng),
        layers.ReLU(),
        layers.MaxPool2d(2),  # c2 x 2 x 2
        layers.Flatten(),
        layers.Linear(4 * c2, hidden, dtype=dtype, rng=rng),
        layers.ReLU(),
        layers.Dropout(dropout, seed=seed),
        layers.Linear(hidden, 10, dtype=dtype, rng=rng),
    )


class RowLSTM(layers.Module):
    """Reads an (N, 1, 8, 8) digit row by row: an LSTM over 8 steps of 8 pixels, then a
    linear layer on the last step's output."""

    def __init__(self, hidden=64, seed=0, dtype=np.float32):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.lstm = layers.LSTM(8, hidden, dtype=dtype, rng=rng)
        self.head = layers.Linear(hidden, 10, dtype=dtype, rng=rng)

    def forward(self, x):
        n, _, h, w = x.shape
        seq = layers._xp(x).ascontiguousarray(x.reshape(n, h, w).transpose(1, 0, 2))  # (T=8, N, 8)
        y, _ = self.lstm.forward(seq)
        self.cache = y.shape
        return self.head.forward(y[-1])

    def backward(self, grad_y):
        shape = self._need_cache()
        g_last = self.head.backward(grad_y)
        g = layers._xp(g_last).zeros(shape, g_last.dtype)
        g[-1] = g_last
        gx = self.lstm.backward(g)  # (T, N, 8)
        return gx.transpose(1, 0, 2)[:, None]


def build_model(name, seed=0):
    if name == "cnn":
        return build_cnn(seed)
    if name == "lstm":
        return RowLSTM(seed=seed)
    raise ValueError(f"unknown model {name!r} (expected 'cnn' or 'lstm')")


# ---- data ---------------------------------------------------------------------------------


def _require(module, what):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        raise MissingDependency(
            f"the demo needs {what}, which is not installed: {INSTALL_HINT}") from None


def load_data(seed=0, test_size=0.2, val_size=0.1):
    """sklearn's 8x8 digits as float32 (N, 1, 8, 8) in [0, 1] and int64 labels, split with
    a fixed seed (stratified) into train, validation and test sets."""
    datasets = _require("sklearn.datasets", "scikit-learn")
    model_selection = _require("sklearn.model_selection", "scikit-learn")
    digits = datasets.load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    y = digits.target.astype(np.int64)
    x_rest, x_test, y_rest, y_test = model_selection.train_test_split(
        x, y, test_size=test_size, random_state=seed, stratify=y)
    x_train, x_val, y_train, y_val = model_selection.train_test_split(
        x_rest, y_rest, test_size=val_size, random_state=seed, stratify=y_rest)
    return {"train": (x_train, y_train), "val": (x_val, y_val), "test": (x_test, y_test)}


# ---- GPU ----------------------------------------------------------------------------------


def check_gpu(model_name):
    """Raises DeviceUnavailable unless cupy imports, a CUDA build of adlkernels sees a
    device and every kernel family the model needs runs on cupy arrays (the CUDA kernels
    are on: ADLK_CUDA_UNVERIFIED=1 until verified on a GPU)."""
    import adlkernels as ak
    from ._backend import cuda_module

    hint = "; run without --device gpu to train on the CPU"
    if cuda_module() is None:
        raise DeviceUnavailable("--device gpu: this adlkernels build has no CUDA support "
                                "(rebuild with a CUDA toolkit, ADLK_CUDA=ON)" + hint)
    if not ak.has_cuda():
        raise DeviceUnavailable("--device gpu: no CUDA device is visible" + hint)
    try:
        import cupy as cp
    except ImportError:
        raise DeviceUnavailable("--device gpu needs CuPy (e.g. pip install cupy-cuda12x), "
                                "which is not installed" + hint) from None
    x = cp.zeros((2, 1, 8, 8), cp.float32)
    probes = [
        ("linear", lambda: ak.linear_forward(cp.zeros((2, 4), cp.float32), cp.zeros((3, 4), cp.float32))),
        ("cross-entropy", lambda: ak.softmax_cross_entropy(cp.zeros((2, 3), cp.float32),
                                                           cp.zeros(2, cp.int64))),
        ("adam", lambda: ak.adam_step([cp.zeros(3, cp.float32)], [cp.zeros(3, cp.float32)],
                                      [cp.zeros(3, cp.float32)], [cp.zeros(3, cp.float32)], step=1)),
    ]
    if model_name == "cnn":
        probes += [
            ("conv2d", lambda: ak.conv2d_forward(x, cp.zeros((4, 1, 3, 3), cp.float32))),
            ("maxpool2d", lambda: ak.maxpool2d_forward(x, 2)),
            ("dropout", lambda: ak.dropout_forward(x, 0.5, seed=0)),
        ]
    else:
        z = cp.zeros((2, 4), cp.float32)
        probes.append(("lstm", lambda: ak.lstm_forward(cp.zeros((3, 2, 8), cp.float32), z, z,
                                                       cp.zeros((16, 8), cp.float32),
                                                       cp.zeros((16, 4), cp.float32))))
    for name, probe in probes:
        try:
            probe()
        except RuntimeError as e:
            raise DeviceUnavailable(f"--device gpu: the {name} kernel cannot run on cupy "
                                    f"arrays in this build ({e})" + hint) from None


# ---- training -----------------------------------------------------------------------------


def _batches(n, batch_size, rng):
    order = rng.permutation(n)
    for i in range(0, n, batch_size):
        yield order[i:i + batch_size]


def evaluate(model, x, y, batch_size=512):
    """(mean loss, accuracy) in eval mode."""
    was_training = model.training
    model.eval()
    total, correct = 0.0, 0
    for i in range(0, len(x), batch_size):
        logits = model.forward(x[i:i + batch_size])
        loss, _ = nn.softmax_cross_entropy(logits, y[i:i + batch_size], reduction="sum")
        total += float(loss)
        correct += int((layers._xp(logits).argmax(logits, axis=1) == y[i:i + batch_size]).sum())
    model.train(was_training)
    return total / max(1, len(x)), correct / max(1, len(x))


def train(model="cnn", *, epochs=40, batch_size=32, lr=None, gamma=None, patience=8, seed=0,
          train_limit=None, progress=True, log=print, data=None, device="cpu"):
    """Trains ``model`` ('cnn' or 'lstm') on the digits and returns a dict of results:

    model, epochs_run, best_epoch, stopped_early, history (lists train_loss, val_loss,
    val_accuracy, lr per epoch), final_train_loss, test_loss, test_accuracy,
    train_seconds (training steps only), images_per_second, time_shares (fraction of the
    training time per kernel family, plus 'other'), n_train, n_val, n_test.

    ``train_limit`` keeps only the first n training images (quick tests); ``progress``
    shows a tqdm bar per epoch; ``log`` receives one line per epoch (None: silent).
    ``device="gpu"`` moves the model and the data to the GPU (cupy arrays) first.
    """
    defaults = _DEFAULTS[model]
    lr = defaults["lr"] if lr is None else lr
    gamma = defaults["gamma"] if gamma is None else gamma
    if progress:
        tqdm = _require("tqdm", "tqdm").tqdm
    data = load_data(seed) if data is None else data
    x_train, y_train = data["train"]
    if train_limit is not None:
        x_train, y_train = x_train[:train_limit], y_train[:train_limit]
    x_val, y_val = data["val"]
    x_test, y_test = data["test"]

    net = build_model(model, seed)
    if device == "gpu":  # the model and every split as cupy arrays, before the optimizer
        net.to("cuda")
        xp = _cuda._cp()
        x_train, y_train, x_val, y_val, x_test, y_test = (
            xp.asarray(a) for a in (x_train, y_train, x_val, y_val, x_test, y_test))
    else:
        xp = np
    timer = FamilyTimer()
    instrument(net, timer)
    opt = optim.Adam(net.params(), lr=lr)
    sched = optim.ExponentialLR(opt, gamma=gamma)
    rng = np.random.default_rng(seed)
    emit = log or (lambda *_: None)

    history = {"train_loss": [], "val_loss": [], "val_accuracy": [], "lr": []}
    best = (math.inf, 0, None)  # val loss, epoch, state
    train_seconds, images, stopped_early, epoch = 0.0, 0, False, 0
    n_batches = math.ceil(len(x_train) / batch_size)
    for epoch in range(1, epochs + 1):
        net.train()
        bar = None
        if progress:
            bar = tqdm(total=n_batches, desc=f"epoch {epoch:2d}/{epochs}", unit="batch",
                       leave=False, file=sys.stderr, dynamic_ncols=True)
        loss_sum, seen = 0.0, 0
        t0 = time.perf_counter()
        for idx in _batches(len(x_train), batch_size, rng):
            idx = xp.asarray(idx)
            xb, yb = x_train[idx], y_train[idx]
            logits = net.forward(xb)
            with timer("nn"):
                loss, grad = nn.softmax_cross_entropy(logits, yb)
            net.backward(grad)
            with timer("optim"):
                opt.step(net.grads())
            loss_sum += float(loss) * len(idx)
            seen += len(idx)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss_sum / seen:.4f}", refresh=False)
        train_seconds += time.perf_counter() - t0
        images += seen
        if bar is not None:
            bar.close()
        with timer.paused():
            val_loss, val_acc = evaluate(net, x_val, y_val)
        history["train_loss"].append(loss_sum / max(1, seen))
        history["val_loss"].append(val_loss)
        history["val_accuracy"].append(val_acc)
        history["lr"].append(opt.lr)
        improved = val_loss < best[0] - 1e-4
        if improved:
            best = (val_loss, epoch, net.state_dict())
        emit(f"epoch {epoch:2d}  train loss {history['train_loss'][-1]:.4f}  "
             f"val loss {val_loss:.4f}  val acc {val_acc:6.2%}  lr {opt.lr:.2e}"
             + ("  *" if improved else ""))
        sched.step()
        if epoch - best[1] >= patience:
            stopped_early = True
            emit(f"early stop: no validation improvement for {patience} epochs; "
                 f"restoring epoch {best[1]}")
            break
    if best[2] is not None:
        net.load_state_dict(best[2])
    with timer.paused():
        test_loss, test_acc = evaluate(net, x_test, y_test)
    return {
        "model": model,
        "epochs_run": epoch,
        "best_epoch": best[1],
        "stopped_early": stopped_early,
        "history": history,
        "final_train_loss": history["train_loss"][-1] if history["train_loss"] else math.nan,
        "test_loss": test_loss,
        "test_accuracy": test_acc,
        "target_accuracy": defaults["target"],
        "train_seconds": train_seconds,
        "images_per_second": images / train_seconds if train_seconds > 0 else 0.0,
        "time_shares": timer.shares(train_seconds),
        "n_train": len(x_train),
        "n_val": len(x_val),
        "n_test": len(x_test),
        "net": net,
    }


def save_plot(result, path):
    """Loss (train, validation) and validation accuracy per epoch, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = result["history"]
    ep = np.arange(1, len(h["train_loss"]) + 1)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.5))
    a1.plot(ep, h["train_loss"], label="train")
    a1.plot(ep, h["val_loss"], label="validation")
    a1.axvline(result["best_epoch"], color="gray", ls=":", label="best (restored)")
    a1.set_xlabel("epoch")
    a1.set_ylabel("cross-entropy")
    a1.set_yscale("log")
    a1.legend()
    a2.plot(ep, np.asarray(h["val_accuracy"]) * 100, label="validation")
    a2.axhline(result["test_accuracy"] * 100, color="C2", ls="--",
               label=f"test {result['test_accuracy']:.2%}")
    a2.set_xlabel("epoch")
    a2.set_ylabel("accuracy (%)")
    a2.legend()
    fig.suptitle(f"adlkernels demo: {result['model']} on sklearn digits")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)


# ---- command line -------------------------------------------------------------------------


def add_arguments(parser):
    parser.add_argument("--model", choices=("cnn", "lstm", "seq2seq"), default="cnn",
                        help="LeNet-style CNN (default), a row-by-row LSTM, or an "
                             "encoder-decoder with attention that reads dates (seq2seq)")
    parser.add_argument("--epochs", type=int, default=40, help="maximum epochs (default 40)")
    parser.add_argument("--batch-size", type=int, default=32, help="default 32")
    parser.add_argument("--lr", type=float, default=None,
                        help="Adam learning rate (default 3e-3 cnn, 1e-2 lstm)")
    parser.add_argument("--patience", type=int, default=8,
                        help="early stopping: epochs without validation improvement (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="data split, init and shuffling seed")
    parser.add_argument("--threads", type=int, default=None,
                        help="kernel threads (default: ak.get_num_threads())")
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu",
                        help="gpu: cupy arrays and the CUDA kernels (exits 2 if unavailable)")
    parser.add_argument("--plot", metavar="PATH", default=None,
                        help="save a loss/accuracy plot (seq2seq: attention heatmaps) as a PNG "
                             "there; needs matplotlib")
    parser.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                        help="seq2seq: stop training after this many seconds")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")


def run(args) -> int:
    import adlkernels as ak

    def fail(msg):
        print(f"adlkernels demo: {msg}", file=sys.stderr)
        return 2

    for name in ("epochs", "batch_size", "patience", "threads"):
        v = getattr(args, name)
        if v is not None and v < 1:
            return fail(f"--{name.replace('_', '-')} must be >= 1, got {v}")
    if args.model == "seq2seq":
        from . import _seq2seq

        return _seq2seq.run(args)
    try:
        _require("sklearn", "scikit-learn")
        if not args.quiet:
            _require("tqdm", "tqdm")
        if args.plot:
            _require("matplotlib", "matplotlib (for --plot)")
        if args.device == "gpu":
            check_gpu(args.model)
    except (MissingDependency, DeviceUnavailable) as e:
        return fail(str(e))
    if args.threads is not None:
        ak.set_num_threads(args.threads)

    arch = {"cnn": "conv-relu-pool x2, linear-relu-dropout, linear",
            "lstm": "LSTM(8 -> 64) over 8 rows, linear"}[args.model]
    print(f"adlkernels {ak.__version__} demo: {args.model} ({arch}) on sklearn digits 8x8, "
          f"{ak.get_num_threads()} threads, {args.device}")
    data = load_data(args.seed)
    print(f"data: {len(data['train'][0])} train / {len(data['val'][0])} validation / "
          f"{len(data['test'][0])} test images, seed {args.seed}")
    t0 = time.perf_counter()
    res = train(args.model, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                patience=args.patience, seed=args.seed, progress=not args.quiet,
                log=None if args.quiet else print, data=data, device=args.device)
    wall = time.perf_counter() - t0

    shares = res["time_shares"]
    parts = [f"{f} {shares[f]:.0%}" for f in (*FAMILIES, "other") if shares[f] >= 0.005]
    ok = res["test_accuracy"] >= res["target_accuracy"]
    print(f"trained {res['epochs_run']} epochs (best {res['best_epoch']}"
          f"{', stopped early' if res['stopped_early'] else ''}) in {wall:.1f} s "
          f"({res['train_seconds']:.1f} s in training steps)")
    print(f"training loss {res['final_train_loss']:.4f}   test loss {res['test_loss']:.4f}   "
          f"test accuracy {res['test_accuracy']:.2%} "
          f"({'>=' if ok else 'below'} {res['target_accuracy']:.0%})")
    print(f"{res['images_per_second']:,.0f} images/s   time by kernel family: " + ", ".join(parts))
    if args.plot:
        save_plot(res, args.plot)
        print(f"plot saved to {args.plot}")
    return 0
