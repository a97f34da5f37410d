"""Data-parallel training on torch.distributed with adlkernels' ops and optimizer.

A small CNN whose layers are adlkernels.torch ops (conv2d, max_pool2d, linear,
cross_entropy) and whose optimizer is adlkernels.torch.optim.Adam, wrapped in
torch.nn.parallel.DistributedDataParallel: every rank takes its share of each global
batch, DDP averages the gradients across ranks (all-reduce), and every rank then runs
the same fused Adam step, so all ranks hold identical parameters after every step.

    pip install "adlkernels[test]" torch==2.13.0
    python examples/ddp_digits.py --nproc 2                  # gloo, 2 processes on this machine
    python examples/ddp_digits.py --nproc 1                  # one process, no DDP: the reference
    python examples/ddp_digits.py --nproc 2 --backend nccl   # one process per GPU

Across machines, start one process per GPU or core with torchrun (it sets RANK,
WORLD_SIZE, MASTER_ADDR and MASTER_PORT) and pass --torchrun; nothing else changes.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import adlkernels as ak
import adlkernels.torch as akt
from adlkernels.torch.optim import Adam


class DigitsCNN(torch.nn.Module):
    """conv(3x3, 16) - relu - maxpool 2 - conv(3x3, 32) - relu - maxpool 2 - linear(10)."""

    def __init__(self, dtype=torch.float32, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)

        def uniform(shape, fan_in):  # PyTorch's default layer initialization
            bound = 1.0 / fan_in**0.5
            return torch.nn.Parameter((torch.rand(shape, generator=g, dtype=dtype) * 2 - 1) * bound)

        self.w1, self.b1 = uniform((16, 1, 3, 3), 9), uniform((16,), 9)
        self.w2, self.b2 = uniform((32, 16, 3, 3), 144), uniform((32,), 144)
        self.w3, self.b3 = uniform((10, 128), 128), uniform((10,), 128)

    def forward(self, x):
        y = akt.max_pool2d(torch.relu(akt.conv2d(x, self.w1, self.b1, padding=1)), 2)
        y = akt.max_pool2d(torch.relu(akt.conv2d(y, self.w2, self.b2, padding=1)), 2)
        return akt.linear(y.flatten(1), self.w3, self.b3)


def load_digits(dtype):
    """sklearn's bundled 8x8 digits (no download) as (N, 1, 8, 8) in [0, 1] and labels."""
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    x = torch.from_numpy((d.images / 16.0)[:, None].copy()).to(dtype)
    return x, torch.from_numpy(d.target.astype(np.int64))


def train(rank: int, world: int, args) -> dict:
    """Train on this rank's share of every global batch; returns the final parameters."""
    dtype = getattr(torch, args.dtype)
    if args.backend == "nccl":  # one GPU per process on each machine
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
        device = torch.device(f"cuda:{local_rank % torch.cuda.device_count()}")
    else:
        device = torch.device("cpu")
    x, y = load_digits(dtype)
    net = DigitsCNN(dtype, seed=args.seed).to(device)
    model: torch.nn.Module = net
    if world > 1:
        # DDP broadcasts rank 0's parameters at construction and all-reduces (averages)
        # the gradients during backward; it wraps net itself (model.module is net).
        model = torch.nn.parallel.DistributedDataParallel(net)
    opt = Adam(model.parameters(), lr=args.lr)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(args.seed))
    share = args.batch_size // world
    for step in range(args.steps):
        batch = order[(step * args.batch_size) % len(x):][: args.batch_size]
        batch = batch[rank * share:(rank + 1) * share]  # this rank's equal share
        xb, yb = x[batch].to(device), y[batch].to(device)
        opt.zero_grad()
        loss = akt.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        if rank == 0 and (step % max(1, args.steps // 5) == 0 or step == args.steps - 1):
            print(f"step {step:4d}  loss {loss.item():.4f} (rank 0's share)", flush=True)
    return {k: v.detach().cpu() for k, v in net.state_dict().items()}


def _worker(rank: int, world: int, args, port: int) -> None:
    if not args.torchrun:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    threads = max(1, args.threads)
    torch.set_num_threads(threads)
    ak.set_num_threads(threads)
    dist.init_process_group(args.backend, rank=rank, world_size=world)
    try:
        params = train(rank, world, args)
        if args.out:
            torch.save(params, os.path.join(args.out, f"rank{rank}.pt"))
        # Leave together: a rank that tears down its gloo connections while its peer
        # is still finishing the last collective can make the peer's transport thread
        # fail during shutdown. After the barrier no rank sends anything more.
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nproc", type=int, default=2, help="processes on this machine (1: no DDP)")
    p.add_argument("--backend", choices=("gloo", "nccl"), default="gloo")
    p.add_argument("--torchrun", action="store_true", help="started by torchrun: take RANK/WORLD_SIZE from it")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=64, help="global batch, split evenly across ranks")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="threads per process (default: cores / nproc)")
    p.add_argument("--out", help="directory for each rank's final parameters (rank<r>.pt)")
    args = p.parse_args(argv)
    if args.torchrun:
        world, rank = int(os.environ["WORLD_SIZE"]), int(os.environ["RANK"])
    else:
        world = args.nproc
    if world < 1 or args.batch_size % world:
        p.error("--batch-size must be a multiple of the number of processes")
    if args.threads <= 0:  # share this machine's cores among its processes
        local = int(os.environ.get("LOCAL_WORLD_SIZE", world)) if args.torchrun else world
        args.threads = max(1, (os.cpu_count() or 1) // local)
    if args.backend == "nccl" and not torch.cuda.is_available():
        p.error("--backend nccl needs CUDA GPUs")
    if args.torchrun:
        _worker(rank, world, args, 0)
    elif world == 1:
        torch.set_num_threads(args.threads)
        ak.set_num_threads(args.threads)
        params = train(0, 1, args)
        if args.out:
            torch.save(params, os.path.join(args.out, "rank0.pt"))
    else:
        mp.spawn(_worker, args=(world, args, _free_port()), nprocs=world, join=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
