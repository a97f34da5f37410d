"""Weight initialization (docs/api/init.md), with PyTorch's fan computation.

For a weight of shape (out, in, *kernel): fan_in = in * prod(kernel), fan_out =
out * prod(kernel) (torch.nn.init._calculate_fan_in_and_fan_out); shapes of fewer than 2
dimensions raise ValueError, as PyTorch. Draws come from ``rng`` (a
numpy.random.Generator; None: a fresh default one) in float64 and are returned as
float32 arrays.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ._validate import Args

__all__ = ["xavier_uniform", "xavier_normal", "he_uniform", "he_normal"]

# The draws are float64: more elements than this cannot be an array (numpy's byte count
# is a signed 64-bit integer); fewer may still not fit in memory (MemoryError).
_MAX_DRAW = (2**63 - 1) // 8


def _fans(a: Args, shape):
    if isinstance(shape, numbers.Integral) and not isinstance(shape, bool):
        shape = (shape,)
    try:
        shape = tuple(a.integer(s, "shape", 0) for s in shape)
    except TypeError:
        raise a.type_error("shape", f"expected a tuple of ints, got {shape!r}") from None
    if len(shape) < 2:
        raise a.value_error("shape", f"fan in and fan out need at least 2 dimensions, got {shape}")
    if math.prod(shape) > _MAX_DRAW:
        raise a.value_error("shape", f"{shape} has {math.prod(shape)} elements, more than an array can hold")
    receptive = math.prod(shape[2:])
    return shape, shape[1] * receptive, shape[0] * receptive


def _rng(a: Args, rng):
    if rng is None:
        return np.random.default_rng()
    if not isinstance(rng, np.random.Generator):
        raise a.type_error("rng", f"expected a numpy.random.Generator or None, got {type(rng).__name__}")
    return rng


def _gain(a: Args, gain):
    if isinstance(gain, (bool, np.bool_)) or not isinstance(gain, numbers.Real) or not math.isfinite(gain):
        raise a.type_error("gain", f"expected a finite number, got {gain!r}")
    if gain < 0:  # a negative scale: torch's uniform_/normal_ reject it too
        raise a.value_error("gain", f"must be >= 0, got {gain!r}")
    return float(gain)


def _check_fan(a: Args, fan, what):
    if fan == 0:
        raise a.value_error("shape", f"{what} is 0: the distribution's scale is undefined")


def xavier_uniform(shape, gain=1.0, rng=None):
    """U(-b, b) with b = gain * sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio, 2010)."""
    a = Args("xavier_uniform")
    shape, fan_in, fan_out = _fans(a, shape)
    gain, rng = _gain(a, gain), _rng(a, rng)
    _check_fan(a, fan_in + fan_out, "fan_in + fan_out")
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-bound, bound, shape).astype(np.float32)


def xavier_normal(shape, gain=1.0, rng=None):
    """N(0, std^2) with std = gain * sqrt(2 / (fan_in + fan_out))."""
    a = Args("xavier_normal")
    shape, fan_in, fan_out = _fans(a, shape)
    gain, rng = _gain(a, gain), _rng(a, rng)
    _check_fan(a, fan_in + fan_out, "fan_in + fan_out")
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    return (rng.standard_normal(shape) * std).astype(np.float32)


def he_uniform(shape, rng=None):
    """Kaiming uniform (a = 0, fan_in mode, gain sqrt(2)): U(-b, b), b = sqrt(6 / fan_in)."""
    a = Args("he_uniform")
    shape, fan_in, _ = _fans(a, shape)
    rng = _rng(a, rng)
    _check_fan(a, fan_in, "fan_in")
    bound = math.sqrt(2.0) * math.sqrt(3.0 / fan_in)
    return rng.uniform(-bound, bound, shape).astype(np.float32)


def he_normal(shape, rng=None):
    """Kaiming normal (a = 0, fan_in mode, gain sqrt(2)): N(0, 2 / fan_in)."""
    a = Args("he_normal")
    shape, fan_in, _ = _fans(a, shape)
    rng = _rng(a, rng)
    _check_fan(a, fan_in, "fan_in")
    std = math.sqrt(2.0) / math.sqrt(fan_in)
    return (rng.standard_normal(shape) * std).astype(np.float32)
