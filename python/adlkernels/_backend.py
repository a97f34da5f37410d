"""Array-type dispatch: numpy arrays run the C++/OpenMP kernels, cupy arrays the CUDA ones.

CuPy is never imported here: a device array is recognised by its
``__cuda_array_interface__``, so importing adlkernels works without a GPU.
"""

from __future__ import annotations

import functools

import numpy as np

CPU = "cpu"
CUDA = "cuda"


@functools.lru_cache(maxsize=None)
def cuda_module():
    """The CUDA extension module, or None when this build has none."""
    try:
        from . import _adlk_cuda
    except ImportError:
        return None
    return _adlk_cuda


def has_cuda() -> bool:
    """True when the CUDA extension is built and loads, and a CUDA device is visible."""
    mod = cuda_module()
    return mod is not None and mod.device_count() > 0


OUTPUT_ALIGN = 64  # bytes; as the extension's own outputs (bindings/common.h, new_array)


def empty_aligned(shape, dtype) -> np.ndarray:
    """A new C-contiguous numpy array starting on a cache-line boundary (a view of a byte
    buffer OUTPUT_ALIGN bytes longer): the kernels' 64-byte vector stores into its rows
    then each write one line, not two (numpy's own arrays start 16 bytes past one)."""
    dtype = np.dtype(dtype)
    shape = tuple(int(s) for s in shape)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + OUTPUT_ALIGN, np.uint8)
    start = -raw.ctypes.data % OUTPUT_ALIGN
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def is_device_array(a) -> bool:
    return hasattr(a, "__cuda_array_interface__") and not isinstance(a, np.ndarray)


def _device_id(a):
    dev = getattr(a, "device", None)
    return getattr(dev, "id", dev)


def backend_of(fn: str, arrays: dict) -> str:
    """The backend for one call, from its array arguments (None entries are skipped).

    Mixing numpy and cupy arrays, or cupy arrays on two devices, raises ValueError;
    cupy arrays on a build without CUDA raise RuntimeError.
    """
    host, device = [], []
    for name, a in arrays.items():
        if a is None:
            continue
        if isinstance(a, np.ndarray):
            host.append(name)
        elif is_device_array(a):
            device.append(name)
    if host and device:
        raise ValueError(
            f"{fn}: cannot mix numpy and cupy arrays in one call "
            f"({', '.join(host)} numpy; {', '.join(device)} cupy)"
        )
    if not device:
        return CPU
    devices = {_device_id(arrays[n]) for n in device}
    if len(devices) > 1:
        raise ValueError(f"{fn}: cupy arrays on different devices ({sorted(map(str, devices))})")
    if cuda_module() is None:
        raise RuntimeError(
            f"{fn}: got cupy arrays, but this adlkernels build has no CUDA support "
            "(rebuild with a CUDA toolkit, ADLK_CUDA=ON)"
        )
    if not has_cuda():
        raise RuntimeError(f"{fn}: got cupy arrays, but no CUDA device is visible")
    return CUDA


def on_gpu(fn: str, backend: str) -> bool:
    """True when this call runs CUDA kernels (cupy arrays: every family has them); False
    for numpy arrays. Until those kernels have passed their tests on a GPU they run only
    with ADLK_CUDA_UNVERIFIED=1 (see _cuda.py); otherwise cupy arrays raise RuntimeError
    saying so."""
    if backend == CPU:
        return False
    from . import _cuda

    if not _cuda.enabled():
        raise RuntimeError(
            f"{fn}: the CUDA kernel of this function has not yet been verified on a GPU and "
            "is off in this release (ADLK_CUDA_UNVERIFIED=1 turns it on); pass numpy "
            "arrays (cupy.asnumpy) to run it on the CPU"
        )
    return True
