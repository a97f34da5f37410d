"""Data-parallel training on torch.distributed (gloo, 2 processes on 127.0.0.1) with the
adlkernels.torch ops and optimizer: examples/ddp_digits.py, run as a user would."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")
dist = pytest.importorskip("torch.distributed")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ddp_digits.py"

pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="torch.distributed with gloo needed"
)


def _train(out: Path, nproc: int, steps: int = 6) -> dict:
    out.mkdir()
    cmd = [sys.executable, str(EXAMPLE), "--nproc", str(nproc), "--steps", str(steps),
           "--batch-size", "32", "--dtype", "float64", "--threads", "1", "--out", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {r: torch.load(out / f"rank{r}.pt") for r in range(nproc)}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("ddp")
    return _train(base / "ddp", 2), _train(base / "single", 1)


def test_ddp_ranks_end_identical(runs):
    ddp, _ = runs
    assert ddp[0].keys() == ddp[1].keys() and len(ddp[0]) == 6
    for name in ddp[0]:
        assert torch.equal(ddp[0][name], ddp[1][name]), name


def test_ddp_equals_one_process_on_the_whole_batch(runs):
    ddp, single = runs
    spec = importlib.util.spec_from_file_location("ddp_digits", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    init = example.DigitsCNN(torch.float64)
    for name, p0 in init.state_dict().items():
        got, ref = ddp[0][name], single[0][name]
        # The all-reduce averages two half-batch gradients instead of one full-batch mean:
        # equal up to rounding.
        torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-14, msg=name)
        assert not torch.equal(ref, p0.detach()), f"{name}: training changed nothing"
