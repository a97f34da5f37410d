"""torch_adapter family: a training step of the digits CNN through adlkernels.torch (the
custom ops and adlkernels.torch.optim.Adam) against the same model with torch's own ops
and optimizer, in one process at one thread count.

The model is the demo's LeNet-style CNN (conv 3x3 32 - relu - maxpool 2 - conv 3x3 64 -
relu - maxpool 2 - linear 256->128 - relu - dropout 0.25 - linear 128->10) on 8x8 digit
images, softmax cross-entropy, Adam (lr 1e-3). One timed unit is a whole training step:
zero_grad, forward, loss, backward, optimizer step. torch runs its default CPU Adam
(a per-tensor loop) and its fused CPU Adam (fused=True); the ratio column is
torch step time / adapter step time (> 1: the adapter is faster). Target: >= 1.0.
"""

from __future__ import annotations

import numpy as np

from common import Context, FamilyResult, LoadMeter, markdown_table, text_table, time_interleaved, torch

BATCHES = (32, 256)
TARGET = 1.0

NOTES = __doc__.split("\n\n", 1)[1]
HEADERS = ["batch", "adapter ms/step", "torch ms/step", "torch/adapter",
           "torch fused ms/step", "fused/adapter", "target"]
LEGEND = "ratios > 1: the adapter's step is faster; target >= 1.0 against both torch variants"


def _params(seed: int):
    g = torch.Generator().manual_seed(seed)

    def uniform(shape, fan_in):  # PyTorch's default layer initialization
        bound = 1.0 / fan_in**0.5
        return ((torch.rand(shape, generator=g) * 2 - 1) * bound).requires_grad_()

    return [uniform((32, 1, 3, 3), 9), uniform((32,), 9), uniform((64, 32, 3, 3), 288),
            uniform((64,), 288), uniform((128, 256), 256), uniform((128,), 256),
            uniform((10, 128), 128), uniform((10,), 128)]


def _step_fn(kind: str, x, y):
    """A zero-argument training step, its parameters, and the first step's loss."""
    import torch.nn.functional as F

    import adlkernels.torch as akt
    from adlkernels.torch.optim import Adam

    p = _params(0)
    w1, b1, w2, b2, w3, b3, w4, b4 = p
    if kind == "adapter":
        opt = Adam(p, lr=1e-3)
        seeds = iter(range(1 << 62))

        def forward():
            h = akt.max_pool2d(torch.relu(akt.conv2d(x, w1, b1, padding=1)), 2)
            h = akt.max_pool2d(torch.relu(akt.conv2d(h, w2, b2, padding=1)), 2)
            h = torch.relu(akt.linear(h.flatten(1), w3, b3))
            h = akt.dropout(h, 0.25, seed=next(seeds))
            return akt.cross_entropy(akt.linear(h, w4, b4), y)
    else:
        opt = torch.optim.Adam(p, lr=1e-3, fused=(kind == "torch fused") or None)

        def forward():
            h = F.max_pool2d(torch.relu(F.conv2d(x, w1, b1, padding=1)), 2)
            h = F.max_pool2d(torch.relu(F.conv2d(h, w2, b2, padding=1)), 2)
            h = torch.relu(F.linear(h.flatten(1), w3, b3))
            h = F.dropout(h, 0.25, training=True)
            return F.cross_entropy(F.linear(h, w4, b4), y)

    def step():
        opt.zero_grad()
        loss = forward()
        loss.backward()
        opt.step()
        return loss

    return step


def run(ctx: Context) -> FamilyResult:
    if not ctx.has_torch:
        print("  torch is not installed: the adapter needs it; nothing to measure")
        return FamilyResult(rows=[], text="(torch not installed)", markdown="(torch not installed)",
                            notes=NOTES)
    rng = np.random.default_rng(0)
    rows, table = [], []
    for batch in BATCHES:
        x = torch.from_numpy(rng.random((batch, 1, 8, 8), dtype=np.float32))
        y = torch.from_numpy(rng.integers(0, 10, batch).astype(np.int64))
        fns = {k: _step_fn(k, x, y) for k in ("adapter", "torch", "torch fused")}
        # Same start, same data: the first losses agree (dropout masks differ, so only
        # roughly); a broken adapter shows here before it is timed.
        first = {k: float(f().detach()) for k, f in fns.items()}
        if not np.isfinite(first["adapter"]) or abs(first["adapter"] - first["torch"]) > 0.5:
            print(f"  [!] batch {batch}: first losses differ: {first}")
        with LoadMeter() as load:
            st = time_interleaved(fns, {k: ctx.budget for k in fns}, rounds=ctx.rounds)
        t = {k: s.median for k, s in st.items()}
        r_torch, r_fused = t["torch"] / t["adapter"], t["torch fused"] / t["adapter"]
        met = min(r_torch, r_fused) >= TARGET
        rows.append({"case": f"digits CNN train step, batch {batch}", "batch": batch,
                     "dtype": "float32", "ms_per_step": {k: 1e3 * v for k, v in t.items()},
                     "time": {k: s.to_json() for k, s in st.items()},
                     "torch_over_adapter": r_torch, "torch_fused_over_adapter": r_fused,
                     "target": TARGET, "target_met": met, "first_losses": first,
                     "load": load.to_json()})
        table.append([batch, f"{1e3 * t['adapter']:.3f}", f"{1e3 * t['torch']:.3f}",
                      f"{r_torch:.2f}", f"{1e3 * t['torch fused']:.3f}", f"{r_fused:.2f}",
                      ">= 1.0 " + ("met" if met else "NOT met")])
        print(f"  batch {batch:4d}: adapter {1e3 * t['adapter']:.3f} ms, torch x{r_torch:.2f}, "
              f"torch fused x{r_fused:.2f}{load.warning()}", flush=True)
    return FamilyResult(rows=rows, text=text_table(HEADERS, table),
                        markdown=markdown_table(HEADERS, table), notes=NOTES, legend=LEGEND)
