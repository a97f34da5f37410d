"""PyTorch adapter: adlkernels' kernels as torch.library custom operators.

Importing this module imports torch (the core package never does). Tensors cross over
without copies through DLPack: CPU tensors run the C++ kernels as numpy arrays, CUDA
tensors the CUDA kernels as cupy arrays on torch's current stream.
"""

try:
    import torch as _torch  # noqa: F401
except ImportError as e:  # the core package works without torch; this adapter does not
    raise ImportError(
        "adlkernels.torch needs PyTorch (pip install torch, or the 'torch' extra: "
        "pip install 'adlkernels[torch]'); the rest of adlkernels works without it"
    ) from e

from ._ops import (
    avg_pool2d,
    batch_norm,
    conv2d,
    cross_entropy,
    dropout,
    layer_norm,
    linear,
    lstm,
    max_pool2d,
    max_unpool2d,
)
from . import optim

__all__ = [
    "avg_pool2d",
    "batch_norm",
    "conv2d",
    "cross_entropy",
    "dropout",
    "layer_norm",
    "linear",
    "lstm",
    "max_pool2d",
    "max_unpool2d",
    "optim",
]
