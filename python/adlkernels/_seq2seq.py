"""The sequence-to-sequence demo: ``python -m adlkernels demo --model seq2seq``.

An encoder-decoder with additive (Bahdanau) attention learns to read dates written in
many human formats ("Tuesday, March 4, 1997", "04.03.97"... see FORMATS) and to write
them as ISO dates ("1997-03-04"). The data is generated here from a seed (no download).

- encoder: character embedding, a bidirectional GRU (or LSTM) over the padded input;
- bridge: the decoder's first state is tanh(Linear([h_forward; h_backward]));
- decoder: per output step, attention of the decoder state over the encoder outputs
  (padding masked), a GRU cell reading [embedding of the previous character; context],
  then one Linear over [state; context] for all steps at once. Training feeds the true
  previous character (teacher forcing); testing decodes greedily from the start token.

Everything runs on ak.layers and the adlkernels kernels; backpropagation through the
decoder's steps is written out in :meth:`Seq2Seq.backward`.
"""

from __future__ import annotations

import datetime
import math
import sys
import time

import numpy as np

from . import layers as L
from . import nn, optim

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _case(s, rng):
    return (s, s.lower(), s.upper())[rng.integers(0, 3)]


# Each format: date, rng -> text. Two-digit years are 1950-2049 (19yy for yy >= 50).
FORMATS = (
    lambda d, r: f"{d.day} {_case(MONTHS[d.month - 1], r)} {d.year}",           # 4 March 1997
    lambda d, r: f"{d.day:02d} {_case(MONTHS[d.month - 1][:3], r)} {d.year}",   # 04 Mar 1997
    lambda d, r: f"{_case(MONTHS[d.month - 1], r)} {d.day}, {d.year}",          # March 4, 1997
    lambda d, r: f"{_case(MONTHS[d.month - 1][:3], r)} {d.day:02d} {d.year}",   # Mar 04 1997
    lambda d, r: (f"{_case(DAYS[d.weekday()], r)}, {_case(MONTHS[d.month - 1], r)} "
                  f"{d.day}, {d.year}"),                                        # Tuesday, March 4, 1997
    lambda d, r: f"{_case(DAYS[d.weekday()][:3], r)} {d.day} {_case(MONTHS[d.month - 1][:3], r)} {d.year}",
    lambda d, r: f"{d.day:02d}.{d.month:02d}.{d.year}",                          # 04.03.1997
    lambda d, r: f"{d.day}.{d.month}.{d.year % 100:02d}",                        # 4.3.97
    lambda d, r: f"{d.day:02d}/{d.month:02d}/{d.year}",                          # 04/03/1997 (day first)
    lambda d, r: f"{d.year}/{d.month:02d}/{d.day:02d}",                          # 1997/03/04
    lambda d, r: f"{d.year}{d.month:02d}{d.day:02d}",                            # 19970304
    lambda d, r: f"{d.day} {_case(MONTHS[d.month - 1][:3], r)} {d.year % 100:02d}",  # 4 Mar 97
)

PAD, START, END = 0, 1, 2
IN_CHARS = sorted(set("".join(MONTHS + DAYS) + "".join(MONTHS + DAYS).lower()
                      + "".join(MONTHS + DAYS).upper() + "0123456789 ,./"))
IN_VOCAB = {c: i + 1 for i, c in enumerate(IN_CHARS)}      # 0 is padding
OUT_CHARS = "0123456789-"
OUT_VOCAB = {c: i + 3 for i, c in enumerate(OUT_CHARS)}    # 0 pad, 1 start, 2 end
OUT_LEN = 11                                               # yyyy-mm-dd and the end token


def make_dates(n, rng):
    """n (text, iso) pairs: days uniform over 1950-2049, formats uniform."""
    first = datetime.date(1950, 1, 1).toordinal()
    last = datetime.date(2049, 12, 31).toordinal()
    out = []
    for o, f in zip(rng.integers(first, last + 1, n), rng.integers(0, len(FORMATS), n)):
        d = datetime.date.fromordinal(int(o))
        out.append((FORMATS[f](d, rng), d.isoformat()))
    return out


def encode(pairs):
    """(src (N, T_in) int64 right-padded with 0, mask (N, T_in) bool, tgt (N, OUT_LEN)
    int64 ending with the end token)."""
    t_in = max(len(s) for s, _ in pairs)
    src = np.zeros((len(pairs), t_in), np.int64)
    tgt = np.full((len(pairs), OUT_LEN), END, np.int64)
    for i, (s, iso) in enumerate(pairs):
        src[i, :len(s)] = [IN_VOCAB[c] for c in s]
        tgt[i, :len(iso)] = [OUT_VOCAB[c] for c in iso]
    return src, src != PAD, tgt


def decode_text(tokens):
    inv = {v: k for k, v in OUT_VOCAB.items()}
    out = []
    for t in tokens:
        if t == END:
            break
        out.append(inv.get(int(t), "?"))
    return "".join(out)


# ---- model ----------------------------------------------------------------------------------


class Seq2Seq(L.Module):
    """Bidirectional recurrent encoder, additive attention, GRU-cell decoder."""

    def __init__(self, cell="gru", embed=16, enc_hidden=48, dec_hidden=64, attention=32, *,
                 seed=0, dtype=np.float32):
        super().__init__()
        rng = np.random.default_rng(seed)
        keys = 2 * enc_hidden
        self.embed_size = embed
        self.src_embed = L.Embedding(len(IN_VOCAB) + 1, embed, padding_idx=PAD, dtype=dtype, rng=rng)
        enc = {"gru": L.GRU, "lstm": L.LSTM}[cell]
        self.encoder = enc(embed, enc_hidden, bidirectional=True, dtype=dtype, rng=rng)
        self.bridge = L.Linear(keys, dec_hidden, dtype=dtype, rng=rng)
        self.bridge_act = L.Tanh()
        self.tgt_embed = L.Embedding(len(OUT_VOCAB) + 3, embed, dtype=dtype, rng=rng)
        self.attention = L.AdditiveAttention(dec_hidden, keys, attention, dtype=dtype, rng=rng)
        self.decoder = L.GRUCell(embed + keys, dec_hidden, dtype=dtype, rng=rng)
        self.out = L.Linear(dec_hidden + keys, len(OUT_VOCAB) + 3, dtype=dtype, rng=rng)

    def encode(self, src, mask):
        """Encoder outputs (T_in, B, 2H) and the decoder's first state (B, dec_hidden)."""
        e = self.src_embed(np.ascontiguousarray(src.T))         # (T_in, B, embed)
        keys, state = self.encoder(e)
        h_n = state[0] if isinstance(state, tuple) else state  # (2, B, H)
        s0 = self.bridge_act(self.bridge(np.concatenate([h_n[0], h_n[1]], axis=1)))
        return keys, s0

    def forward(self, src, mask, tgt_in):
        """Teacher forcing: logits (T_out * B, V) for the targets tgt_in (B, T_out), which
        start with the start token."""
        keys, s = self.encode(src, mask)
        emb = self.tgt_embed(np.ascontiguousarray(tgt_in.T))  # (T_out, B, embed)
        states, contexts, weights = [], [], []
        for t in range(emb.shape[0]):
            ctx, w = self.attention(s, keys, mask)
            s = self.decoder(np.concatenate([emb[t], ctx], axis=1), s)
            states.append(s)
            contexts.append(ctx)
            weights.append(w)
        feats = np.concatenate([np.stack(states), np.stack(contexts)], axis=2)  # (T_out, B, F)
        self.cache = (feats.shape, keys.shape, s.shape)
        self.last_weights = np.stack(weights, axis=1)  # (B, T_out, T_in)
        return self.out(feats.reshape(-1, feats.shape[2]))

    def backward(self, grad_logits):
        feats_shape, keys_shape, s_shape = self._need_cache()
        g_feats = self.out.backward(grad_logits).reshape(feats_shape)
        dec = s_shape[1]
        g_keys = np.zeros(keys_shape, grad_logits.dtype)
        g_s = np.zeros(s_shape, grad_logits.dtype)
        g_emb = np.empty(feats_shape[:2] + (self.embed_size,), grad_logits.dtype)
        for t in reversed(range(feats_shape[0])):
            g_x, g_prev = self.decoder.backward(g_feats[t, :, :dec] + g_s)
            g_emb[t] = g_x[:, :self.embed_size]
            g_q, g_k = self.attention.backward(g_x[:, self.embed_size:] + g_feats[t, :, dec:])
            g_keys += g_k
            g_s = g_prev + g_q
        self.tgt_embed.backward(g_emb)
        g_h = self.bridge.backward(self.bridge_act.backward(g_s))
        hid = g_h.shape[1] // 2
        g_hn = np.stack([g_h[:, :hid], g_h[:, hid:]])
        is_lstm = isinstance(self.encoder, L.LSTM)
        g_e = self.encoder.backward(g_keys, (g_hn, np.zeros_like(g_hn)) if is_lstm else g_hn)
        self.src_embed.backward(g_e)

    def greedy(self, src, mask):
        """Greedy decoding: (tokens (B, OUT_LEN), attention weights (B, OUT_LEN, T_in))."""
        was = self.training
        self.eval()
        keys, s = self.encode(src, mask)
        prev = np.full(src.shape[0], START, np.int64)
        tokens, weights = [], []
        for _ in range(OUT_LEN):
            ctx, w = self.attention(s, keys, mask)
            s = self.decoder(np.concatenate([self.tgt_embed(prev), ctx], axis=1), s)
            logits = self.out(np.concatenate([s, ctx], axis=1))
            prev = logits.argmax(axis=1)
            tokens.append(prev)
            weights.append(w)
        self.train(was)
        return np.stack(tokens, axis=1), np.stack(weights, axis=1)


def teacher_inputs(tgt):
    return np.concatenate([np.full((tgt.shape[0], 1), START, np.int64), tgt[:, :-1]], axis=1)


def exact_accuracy(model, src, mask, tgt, batch_size=500):
    correct = 0
    for i in range(0, len(src), batch_size):
        sl = slice(i, i + batch_size)
        width = int(mask[sl].sum(axis=1).max())
        tokens, _ = model.greedy(src[sl, :width], mask[sl, :width])
        correct += int(np.all(tokens == tgt[sl], axis=1).sum())
    return correct / max(1, len(src))


# ---- training -------------------------------------------------------------------------------


def train(*, n_train=12000, n_test=2000, epochs=30, batch_size=64, lr=5e-3, cell="gru",
          time_limit=None, target=0.95, seed=0, log=print, progress=False):
    """Trains on generated dates; stops at ``epochs``, after ``time_limit`` seconds of
    training or when the exact-sequence accuracy on the validation split (checked after
    each epoch) reaches ``target`` + 2%. Returns a dict: test_accuracy (exact sequences,
    greedy decoding), history, train_seconds, model, and a few test examples."""
    rng = np.random.default_rng(seed)
    pairs = make_dates(n_train + 2 * n_test, rng)
    src, mask, tgt = encode(pairs)
    split = {"train": slice(0, n_train), "val": slice(n_train, n_train + n_test),
             "test": slice(n_train + n_test, None)}
    model = Seq2Seq(cell=cell, seed=seed)
    opt = optim.Adam(model.params(), lr=lr)
    sched = optim.ExponentialLR(opt, gamma=0.9)
    emit = log or (lambda *_: None)
    history = {"train_loss": [], "val_accuracy": []}
    s_tr, m_tr, t_tr = src[split["train"]], mask[split["train"]], tgt[split["train"]]
    tin_tr = teacher_inputs(t_tr)
    train_seconds, epoch = 0.0, 0
    bar_cls = None
    if progress:
        try:
            from tqdm import tqdm as bar_cls
        except ImportError:
            bar_cls = None
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        order = rng.permutation(n_train)
        loss_sum = 0.0
        n_batches = math.ceil(n_train / batch_size)
        bar = bar_cls(total=n_batches, desc=f"epoch {epoch:2d}", leave=False,
                      file=sys.stderr) if bar_cls else None
        for i in range(0, n_train, batch_size):
            idx = order[i:i + batch_size]
            width = int(m_tr[idx].sum(axis=1).max())  # pad to this batch's longest input
            logits = model(s_tr[idx, :width], m_tr[idx, :width], tin_tr[idx])
            loss, grad = nn.softmax_cross_entropy(logits, np.ascontiguousarray(t_tr[idx].T).reshape(-1))
            model.backward(grad)
            optim.clip_grad_norm(model.grads(), 5.0)
            opt.step(model.grads())
            loss_sum += float(loss) * len(idx)
            seen = i + len(idx)
            if bar is not None:
                bar.update(1)
            if time_limit and train_seconds + time.perf_counter() - t0 >= time_limit:
                break
        if bar is not None:
            bar.close()
        train_seconds += time.perf_counter() - t0
        sched.step()
        val_acc = exact_accuracy(model, src[split["val"]], mask[split["val"]], tgt[split["val"]])
        history["train_loss"].append(loss_sum / seen)
        history["val_accuracy"].append(val_acc)
        emit(f"epoch {epoch:2d}  train loss {loss_sum / seen:.4f}  "
             f"validation exact-sequence accuracy {val_acc:6.2%}  ({train_seconds:.0f} s)")
        if val_acc >= max(target, 0.0) + 0.02 or (time_limit and train_seconds >= time_limit):
            break
    test_src, test_mask, test_tgt = src[split["test"]], mask[split["test"]], tgt[split["test"]]
    test_acc = exact_accuracy(model, test_src, test_mask, test_tgt)
    return {"model": model, "test_accuracy": test_acc, "target_accuracy": target,
            "history": history, "train_seconds": train_seconds, "epochs_run": epoch,
            "test_pairs": pairs[split["test"]], "test_src": test_src, "test_mask": test_mask,
            "n_train": n_train, "n_test": n_test}


def translate(model, texts):
    """ISO dates for a list of date strings, and the attention weights of each."""
    src, mask, _ = encode([(t, "") for t in texts])
    tokens, weights = model.greedy(src, mask)
    return [decode_text(t) for t in tokens], weights


def save_attention_plot(model, texts, path):
    """Heatmaps of the attention weights (output characters x input characters) of a few
    examples, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    outs, weights = translate(model, texts)
    fig, axes = plt.subplots(1, len(texts), figsize=(4.2 * len(texts), 3.6))
    for ax, text, out, w in zip(np.atleast_1d(axes), texts, outs, weights):
        rows = len(out) + 1
        ax.imshow(w[:rows, :len(text)], cmap="viridis", aspect="auto", vmin=0, vmax=1)
        ax.set_xticks(range(len(text)), list(text), fontsize=8)
        ax.set_yticks(range(rows), list(out) + ["<end>"], fontsize=8)
        ax.set_xlabel("input")
        ax.set_title(f"{text!r} -> {out}", fontsize=9)
    fig.suptitle("adlkernels seq2seq demo: attention weights (greedy decoding)")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)


PLOT_EXAMPLES = ("Saturday, June 16, 2012", "4.3.97", "29 feb 1964")


def run(args) -> int:
    import adlkernels as ak

    if args.device != "cpu":
        print("adlkernels demo: --model seq2seq runs on the CPU only", file=sys.stderr)
        return 2
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print('adlkernels demo: --plot needs matplotlib: pip install "adlkernels[demo]"',
                  file=sys.stderr)
            return 2
    if args.threads is not None:
        ak.set_num_threads(args.threads)
    print(f"adlkernels {ak.__version__} demo: seq2seq (embedding, bidirectional GRU encoder, "
          f"additive attention, GRU-cell decoder) reading dates, {ak.get_num_threads()} threads")
    t0 = time.perf_counter()
    res = train(epochs=args.epochs, batch_size=args.batch_size,
                lr=5e-3 if args.lr is None else args.lr, seed=args.seed,
                time_limit=args.time_limit, log=None if args.quiet else print,
                progress=not args.quiet)
    wall = time.perf_counter() - t0
    ok = res["test_accuracy"] >= res["target_accuracy"]
    print(f"trained {res['epochs_run']} epochs on {res['n_train']} generated dates in {wall:.1f} s "
          f"({res['train_seconds']:.1f} s in training steps)")
    print(f"held-out exact-sequence accuracy {res['test_accuracy']:.2%} on {res['n_test']} dates "
          f"({'>=' if ok else 'below'} {res['target_accuracy']:.0%})")
    outs, _ = translate(res["model"], list(PLOT_EXAMPLES))
    for text, out in zip(PLOT_EXAMPLES, outs):
        print(f"  {text!r:28} -> {out}")
    if args.plot:
        save_attention_plot(res["model"], list(PLOT_EXAMPLES), args.plot)
        print(f"attention plot saved to {args.plot}")
    return 0
