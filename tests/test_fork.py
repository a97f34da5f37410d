"""Processes made after kernels ran: fork, multiprocessing (fork, forkserver, spawn) and
PyTorch DataLoader workers. GNU OpenMP's thread pool does not survive fork; a child must
still run every kernel (on one thread) instead of waiting forever for the lost pool.

Every scenario runs in its own interpreter under a timeout, so a hang fails the test
instead of hanging the suite.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import adlkernels as ak

TIMEOUT = 120

# Runs in each fresh interpreter: a workload that starts an OpenMP team in the parent
# (several kernel families, large enough to go parallel) and a digest of its results.
PRELUDE = textwrap.dedent(
    """
    import os, sys, hashlib
    import numpy as np
    import adlkernels as ak

    ak.set_num_threads(2)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((16, 3, 32, 32)).astype(np.float32)
    W = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)

    def work(seed=0):
        x = X + np.float32(seed)
        y = ak.conv2d_forward(x, W, padding=1)
        p, idx = ak.maxpool2d_forward(y, 2)
        g = ak.maxpool2d_backward(np.ones_like(p), idx, y.shape[2:])
        ln, _, _ = ak.layernorm_forward(y.reshape(16, -1), (y[0].size,))
        d, _ = ak.dropout_forward(y, 0.5, seed=seed)
        h = hashlib.sha256()
        for a in (p, idx, g, ln, d):
            h.update(np.ascontiguousarray(a).tobytes())
        # conv2d may differ in the last bits between thread counts (GEMM split);
        # the digest covers pooling, layer norm and dropout of the same y.
        return h.hexdigest(), float(np.abs(y).sum())

    parent = work()
    """
)


def run_script(body: str, tmp_path) -> str:
    # A file, not -c: "spawn" and "forkserver" children import the main module by path.
    script = tmp_path / "scenario.py"
    script.write_text(PRELUDE + textwrap.dedent(body))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_os_fork_child_runs_kernels(tmp_path):
    out = run_script(
        """
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            ok = work()[0] == parent[0] and ak.get_num_threads() == 1
            os.write(w, b"ok" if ok else b"mismatch")
            os._exit(0)
        os.close(w)
        msg = os.read(r, 100)
        _, status = os.waitpid(pid, 0)
        assert status == 0 and msg == b"ok", (status, msg)
        # the parent keeps its threads
        assert ak.get_num_threads() == 2 and work() == parent
        print("done")
        """,
        tmp_path,
    )
    assert out.strip() == "done"


def test_fork_child_set_num_threads_warns_and_stays_single(tmp_path):
    out = run_script(
        """
        import warnings
        pid = os.fork()
        if pid == 0:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                ak.set_num_threads(4)
            ok = (ak.get_num_threads() == 1 and work()[0] == parent[0]
                  and any(issubclass(c.category, RuntimeWarning) for c in caught))
            ak.set_num_threads(1)  # one thread is fine, silently
            os._exit(0 if ok else 3)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
        print("done")
        """,
        tmp_path,
    )
    assert out.strip() == "done"


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_multiprocessing_pool(method, tmp_path):
    out = run_script(
        f"""
        import multiprocessing as mp

        def task(seed):
            return work(seed)[0]

        def pool_of(x):  # x arrives pickled: equal dtype, not numpy's dtype object
            return ak.maxpool2d_forward(x, 2)

        if __name__ == "__main__":
            with mp.get_context({method!r}).Pool(2) as pool:
                got = pool.map(task, [0, 1, 2, 3])
                pooled = pool.map(pool_of, [X, X * 2])
            assert got[0] == parent[0], "a worker's result differs from the parent's"
            assert len(set(got)) == 4
            for (y, idx), x in zip(pooled, [X, X * 2]):
                want = ak.maxpool2d_forward(x, 2)
                assert np.array_equal(y, want[0]) and np.array_equal(idx, want[1])
            print("done")
        """,
        tmp_path,
    )
    assert out.strip() == "done"


def test_torch_dataloader_workers(tmp_path):
    pytest.importorskip("torch")
    out = run_script(
        """
        import torch
        from torch.utils.data import DataLoader, Dataset

        class Kernels(Dataset):
            def __len__(self):
                return 8
            def __getitem__(self, i):
                return work(i)[0] if i == 0 else str(i)

        if __name__ == "__main__":
            # Linux's default start method: fork, after the parent's kernels ran on 2 threads.
            loader = DataLoader(Kernels(), batch_size=None, num_workers=2)
            got = list(loader)
            assert got[0] == parent[0], "a DataLoader worker's result differs"
            print("done")
        """,
        tmp_path,
    )
    assert out.strip() == "done"


def test_parent_without_threads_forks_freely():
    """A fork before any multi-threaded kernel ran keeps the child's threads."""
    code = textwrap.dedent(
        """
        import os
        import adlkernels as ak
        ak.set_num_threads(2)
        pid = os.fork()
        if pid == 0:
            os._exit(0 if ak.get_num_threads() == 2 else 3)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        print("done")
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert proc.returncode == 0 and proc.stdout.strip() == "done", proc.stderr


def test_set_num_threads_arguments(restore_threads):
    with pytest.raises(TypeError, match="set_num_threads: n"):
        ak.set_num_threads(1.5)
    with pytest.raises(TypeError, match="set_num_threads: n"):
        ak.set_num_threads(True)
    with pytest.raises(ValueError, match="set_num_threads: n"):
        ak.set_num_threads(0)
    with pytest.raises(ValueError, match="set_num_threads: n"):
        ak.set_num_threads(2**40)  # not an overflow into a small count
