"""`python -m adlkernels demo --model seq2seq`: the generated date data, finite differences
through the whole encoder-decoder, a short training run's accuracy, where the attention
looks, and the command line."""

from __future__ import annotations

import datetime

import numpy as np
import pytest

from adlkernels import _seq2seq as S
from adlkernels.__main__ import main


def test_generated_dates_are_the_dates_they_claim():
    rng = np.random.default_rng(0)
    pairs = S.make_dates(400, rng)
    seen = set()
    for text, iso in pairs:
        d = datetime.date.fromisoformat(iso)
        assert 1950 <= d.year <= 2049
        assert str(d.day) in text and (str(d.year) in text or f"{d.year % 100:02d}" in text)
        seen.add(text.replace(str(d.year), "Y"))
    assert len(seen) > 300  # many formats and dates
    src, mask, tgt = S.encode(pairs)
    assert src.dtype == np.int64 and mask.dtype == bool and tgt.shape == (400, S.OUT_LEN)
    assert np.array_equal(mask.sum(axis=1), [len(t) for t, _ in pairs])
    assert [S.decode_text(t) for t in tgt] == [iso for _, iso in pairs]


def test_finite_differences_through_the_model():
    """Gradients of the teacher-forced loss w.r.t. every parameter array (a few entries
    each), in float64, against central differences: embeddings, the bidirectional
    encoder, the bridge, attention, the decoder cell and the output layer."""
    from adlkernels import nn

    rng = np.random.default_rng(1)
    model = S.Seq2Seq(embed=4, enc_hidden=3, dec_hidden=5, attention=4, seed=2, dtype=np.float64)
    src, mask, tgt = S.encode(S.make_dates(3, rng))
    tin = S.teacher_inputs(tgt)
    flat = np.ascontiguousarray(tgt.T).reshape(-1)

    def loss():
        model.eval()  # no caches kept for the probes
        out = float(nn.softmax_cross_entropy(model(src, mask, tin), flat)[0])
        model.train()
        return out

    logits = model(src, mask, tin)
    _, g = nn.softmax_cross_entropy(logits, flat)
    model.backward(g)
    names = [n for n, _ in model.named_params()]
    assert {n.split(".")[0] for n in names} == {"src_embed", "encoder", "bridge", "tgt_embed",
                                                 "attention", "decoder", "out"}
    eps = 1e-6
    for (name, p), grad in zip(model.named_params(), [g.copy() for g in model.grads()]):
        if name.endswith("embed.weight"):  # rows of the tokens in use
            used = np.unique(src if name.startswith("src") else tin)
            picks = [(int(rng.choice(used)), int(rng.integers(0, p.shape[1]))) for _ in range(3)]
        else:
            picks = [tuple(int(rng.integers(0, s)) for s in p.shape) for _ in range(3)]
        for i in picks:
            old = p[i]
            p[i] = old + eps
            up = loss()
            p[i] = old - eps
            down = loss()
            p[i] = old
            np.testing.assert_allclose((up - down) / (2 * eps), grad[i], rtol=2e-5, atol=1e-8,
                                       err_msg=f"{name}{i}")


@pytest.fixture(scope="module")
def trained():
    return S.train(n_train=4000, n_test=400, epochs=3, log=None, seed=0)


def test_short_run_learns_the_dates(trained):
    assert trained["test_accuracy"] >= 0.9, trained["history"]
    outs, _ = S.translate(trained["model"], ["16 June 2012", "04.03.1997"])
    assert outs == ["2012-06-16", "1997-03-04"]


def test_attention_looks_at_the_matching_input(trained):
    """Each output digit of year, month and day attends most to the input characters it
    comes from, for a format where they are all digits (dd.mm.yyyy)."""
    texts = ["04.03.1997", "29.11.2031", "17.08.1955"]
    outs, weights = S.translate(trained["model"], texts)
    assert outs == ["1997-03-04", "2031-11-29", "1955-08-17"]
    for w in weights:
        # output rows: y y y y - m m - d d; input columns: d d . m m . y y y y
        year = w[0:4, :].sum(axis=0)
        month = w[5:7, :].sum(axis=0)
        day = w[8:10, :].sum(axis=0)
        assert year[6:10].sum() > 0.5 * year.sum()
        assert month[2:6].sum() > 0.5 * month.sum()
        assert day[0:3].sum() > 0.5 * day.sum()


def test_cli(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "attention.png"
    assert main(["demo", "--model", "seq2seq", "--quiet", "--epochs", "1", "--time-limit", "5",
                 "--plot", str(path)]) == 0
    out = capsys.readouterr().out
    assert "exact-sequence accuracy" in out and "attention plot saved" in out
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["demo", "--model", "seq2seq", "--device", "gpu"]) == 2
