"""Kernels called from several Python threads at once (the GIL is released while they
run, so their OpenMP teams and per-thread scratch memory really do overlap): every
result must equal, bit for bit, the same call made alone."""

from __future__ import annotations

import threading

import numpy as np

import adlkernels as ak


def _same(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")


def _workloads(rng):
    """Independent calls covering the families with scratch memory or parallel regions;
    each returns a tuple of arrays. Sizes large enough to run multi-threaded."""
    x = rng.standard_normal((8, 6, 24, 20)).astype(np.float32)
    w = rng.standard_normal((10, 3, 3, 3)).astype(np.float32)
    seq = rng.standard_normal((12, 16, 24)).astype(np.float32)
    h0 = rng.standard_normal((16, 32)).astype(np.float32)
    w_ih = rng.standard_normal((128, 24)).astype(np.float32) * 0.2
    w_hh = rng.standard_normal((128, 32)).astype(np.float32) * 0.2
    rows = rng.standard_normal((512, 300)).astype(np.float64)
    logits = rng.standard_normal((256, 100)).astype(np.float32)
    targets = rng.integers(0, 100, 256)

    def conv():
        y = ak.conv2d_forward(x, w, padding=1, stride=(2, 1), groups=2)
        return (y, *ak.conv2d_backward(np.ones_like(y), x, w, padding=1, stride=(2, 1), groups=2))

    def pool():
        y, idx = ak.maxpool2d_forward(x, 3, 2, 1)
        return (y, idx, ak.maxpool2d_backward(y, idx, x.shape), ak.avgpool2d_forward(x, (2, 3)),
                ak.im2col(x, (3, 2), 2, 1, 2))

    def lstm():
        y, h, c, cache = ak.lstm_forward(seq, h0, h0, w_ih, w_hh)
        return (y, h, c, *ak.lstm_backward(y, h, c, cache))

    def norms():
        y, m, s = ak.layernorm_forward(rows, (300,))
        b = ak.batchnorm_forward(x, None, None, None, None, training=True)
        return (y, m, s, *ak.layernorm_backward(y, rows, (300,), m, s), *b)

    def losses():
        loss, g = ak.softmax_cross_entropy(logits, targets)
        d, mask = ak.dropout_forward(x, 0.3, seed=7)
        return (loss, g, ak.softmax_forward(logits), d, mask)

    def optim():
        p = [rows.copy(), x.astype(np.float64)]
        g = [rows * 0.5, x.astype(np.float64) - 1]
        m, v = [np.zeros_like(a) for a in p], [np.zeros_like(a) for a in p]
        for step in (1, 2, 3):
            ak.adam_step(p, g, m, v, step=step, lr=1e-2)
        total = ak.clip_grad_norm(g, 1.0)
        return (*p, *m, *v, *g, total)

    return [conv, pool, lstm, norms, losses, optim]


def test_concurrent_calls_equal_calls_alone(rng, restore_threads):
    ak.set_num_threads(2)
    work = _workloads(rng)
    alone = [f() for f in work]
    results, errors = {}, []
    barrier = threading.Barrier(2 * len(work))

    def run(i, rep):
        try:
            barrier.wait()
            for _ in range(3):
                out = work[i]()
                results.setdefault((i, rep), []).append(out)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i, rep)) for i in range(len(work)) for rep in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for (i, rep), outs in results.items():
        for out in outs:
            for got, want in zip(out, alone[i]):
                assert _same(got, want), (work[i].__name__, rep)


def test_thread_count_changed_while_kernels_run(rng, restore_threads):
    """set_num_threads from one thread while others run kernels: no crash, and every
    result equals the call made alone (these families do not depend on the count)."""
    work = _workloads(rng)[1:2] + _workloads(rng)[3:5]  # pooling, norms, losses
    ak.set_num_threads(2)
    alone = [f() for f in work]
    stop, errors = threading.Event(), []

    def flip():
        n = 1
        while not stop.is_set():
            ak.set_num_threads(n)
            n = 3 - n

    def run(i):
        try:
            for _ in range(4):
                for got, want in zip(work[i](), alone[i]):
                    assert _same(got, want), work[i].__name__
        except BaseException as e:
            errors.append(e)

    flipper = threading.Thread(target=flip)
    runners = [threading.Thread(target=run, args=(i,)) for i in range(len(work))]
    flipper.start()
    for t in runners:
        t.start()
    for t in runners:
        t.join()
    stop.set()
    flipper.join()
    assert not errors, errors
