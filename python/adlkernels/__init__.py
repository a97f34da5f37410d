"""adlkernels: compiled, verified kernels for deep learning.

NumPy arrays run C++/OpenMP kernels (GEMMs through OpenBLAS); CuPy arrays run CUDA
kernels on CuPy's current device and stream. The API reference is in docs/, the
conventions every function follows in docs/conventions.md.
"""

import os as _os

import numpy as _np  # noqa: F401  (loaded first: its own BLAS must not see the setting below)

# The extension modules find libscipy_openblas (the scipy-openblas32 package installed
# beside this one) by their RUNPATH: nothing needs to be imported before them. The kernels
# call that BLAS single-threaded from their own OpenMP threads, so it is loaded with
# OPENBLAS_NUM_THREADS=1: otherwise it starts a worker pool at load that nothing uses and
# whose idle polling took ~3% of a 2-core machine from the kernels. The variable is
# restored at once; libraries loaded before or after keep the user's setting.
_saved_blas_threads = _os.environ.get("OPENBLAS_NUM_THREADS")
_os.environ["OPENBLAS_NUM_THREADS"] = "1"
try:
    try:
        from . import _adlk
    except ImportError as _exc:
        # Only where scipy-openblas32 lies in another directory than adlkernels (pip
        # --target, PYTHONPATH): importing it loads the library globally, by its soname.
        if "libscipy_openblas" not in str(_exc):
            raise
        import scipy_openblas32 as _scipy_openblas32  # noqa: F401

        from . import _adlk
finally:
    if _saved_blas_threads is None:
        del _os.environ["OPENBLAS_NUM_THREADS"]
    else:
        _os.environ["OPENBLAS_NUM_THREADS"] = _saved_blas_threads
from ._backend import has_cuda
from . import conv, init, layers, nn, norm, optim, pool, rnn
from .conv import (
    col2im,
    conv1d_backward,
    conv1d_forward,
    conv2d_backward,
    conv2d_forward,
    im2col,
)
from .pool import (
    avgpool2d_backward,
    avgpool2d_forward,
    max_unpool2d,
    maxpool2d_backward,
    maxpool2d_forward,
)
from .init import he_normal, he_uniform, xavier_normal, xavier_uniform
from .nn import (
    dropout_backward,
    dropout_forward,
    embedding_backward,
    embedding_forward,
    huber_loss,
    l1_loss,
    leaky_relu_backward,
    leaky_relu_forward,
    linear_backward,
    linear_forward,
    log_softmax_backward,
    log_softmax_forward,
    mse_loss,
    relu_backward,
    relu_forward,
    sigmoid_backward,
    sigmoid_forward,
    softmax_backward,
    softmax_cross_entropy,
    softmax_forward,
    tanh_backward,
    tanh_forward,
)
from .norm import batchnorm_backward, batchnorm_forward, layernorm_backward, layernorm_forward
from .optim import adagrad_step, adam_step, clip_grad_norm, rmsprop_step, sgd_step
from .rnn import (
    additive_attention_backward,
    additive_attention_forward,
    gru_backward,
    gru_cell_backward,
    gru_cell_forward,
    gru_forward,
    lstm_backward,
    lstm_cell_backward,
    lstm_cell_forward,
    lstm_forward,
    rnn_backward,
    rnn_cell_backward,
    rnn_cell_forward,
    rnn_forward,
)

__version__ = _adlk.__version__

# More threads than any machine has cores is a mistake, not a request (a team that size
# would exhaust the process's threads).
_MAX_THREADS = _adlk.MAX_THREADS  # adlk/tuning.h


def set_num_threads(n: int) -> None:
    """Threads for every kernel: OpenMP regions and the BLAS alike (n >= 1).

    In a process forked after kernels ran on several threads (``os.fork``,
    multiprocessing's "fork" start method, a PyTorch DataLoader worker) kernels run on
    one thread: OpenMP's thread pool does not survive fork. There a request for more
    than one thread warns (RuntimeWarning) and has no effect; use the "spawn" or
    "forkserver" start method for multi-threaded kernels in child processes.
    """
    import numbers

    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"set_num_threads: n: expected an int, got {type(n).__name__}")
    if not 1 <= n <= _MAX_THREADS:
        raise ValueError(f"set_num_threads: n: must be in [1, {_MAX_THREADS}], got {n!r}")
    n = int(n)
    if n > 1 and _adlk.single_threaded_after_fork():
        import warnings

        warnings.warn(
            "set_num_threads: this process was forked after kernels ran on several "
            "threads; OpenMP cannot start threads here, so kernels stay on one thread "
            "(use the 'spawn' or 'forkserver' start method for more)",
            RuntimeWarning,
            stacklevel=2,
        )
    _adlk.set_num_threads(n)


def get_num_threads() -> int:
    """Threads the kernels use (default: all cores, or OMP_NUM_THREADS; 1 in a child
    forked after kernels ran on several threads)."""
    return _adlk.get_num_threads()


def build_info() -> dict:
    """How this build was made: version, compiler, OpenMP, BLAS, CUDA, sanitizers, and the
    packed-weight GEMM's micro-kernel in use (``gemm_isa``: avx512, avx2 or portable)."""
    from ._cudainfo import cuda_status

    info = {"version": __version__}
    info.update(_adlk.build_info())
    info["num_threads"] = get_num_threads()
    # built, loads, version (runtime), driver, architectures, devices, gpus, cupy, and
    # whether the CUDA kernels can run here: runnable, reason (python -m adlkernels info).
    info["cuda"] = cuda_status()
    return info


__all__ = [
    "__version__",
    "build_info",
    "has_cuda",
    "set_num_threads",
    "get_num_threads",
    "conv",
    "pool",
    "rnn",
    "optim",
    "norm",
    "nn",
    "init",
    "layers",
    *conv.__all__[:6],
    *pool.__all__,
    *rnn.__all__,
    *optim.__all__,
    *norm.__all__,
    *nn.__all__,
    *init.__all__,
]
