"""Argument checks shared by every kernel family (docs/conventions.md).

Everything here runs before any kernel touches memory. Messages name the function and
the argument, and for shapes the expected and the given shape:

    conv2d_forward: weight: expected shape (C_out, 3, kH, kW), got (8, 4, 3, 3)
"""

from __future__ import annotations

import numbers
import operator

import numpy as np

from . import _adlk

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# Geometry arguments are bounded so that no size computation can overflow 64 bits.
MAX_GEOM = _adlk.MAX_GEOM_ARG - 1  # adlk/tuning.h kMaxGeomArg (exclusive)


def fmt_shape(shape) -> str:
    parts = [str(s) for s in shape]
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


class Args:
    """Argument checker for one call of function ``fn``."""

    def __init__(self, fn: str):
        self.fn = fn

    # -- errors ----------------------------------------------------------------
    def value_error(self, name: str, msg: str) -> ValueError:
        return ValueError(f"{self.fn}: {name}: {msg}")

    def type_error(self, name: str, msg: str) -> TypeError:
        return TypeError(f"{self.fn}: {name}: {msg}")

    def shape_error(self, name: str, expected: str, shape) -> ValueError:
        return self.value_error(name, f"expected shape {expected}, got {fmt_shape(shape)}")

    def run(self, kernel, *args):
        """Calls a compiled kernel. What it rejects itself (an index found out of range
        while scattering, a size only the kernel derives) gets this function's name in
        front, like every other message."""
        try:
            return kernel(*args)
        except (ValueError, TypeError) as e:
            if str(e).startswith(self.fn + ":"):
                raise
            raise type(e)(f"{self.fn}: {e}") from None

    def size_fits(self, name: str, dims, what: str) -> None:
        """ValueError naming ``name`` when an array of shape ``dims`` could not even be
        indexed with 64-bit sizes (huge padding, say): no possible array, not a lack of
        memory."""
        count = 1
        for d in dims:
            count *= int(d)
        if count >= 2**63:
            raise self.value_error(name, f"{what} {fmt_shape(dims)} has {count} elements, "
                                         "more than 64-bit sizes allow")

    # -- arrays ----------------------------------------------------------------
    def float_dtype(self, **arrays) -> np.dtype:
        """The one float dtype shared by the given arrays (None entries are skipped)."""
        dtype, first = None, None
        for name, a in arrays.items():
            if a is None:
                continue
            self._require_array(a, name)
            dt = a.dtype if isinstance(a, np.ndarray) else np.dtype(a.dtype)
            if dt not in FLOAT_DTYPES:
                raise self.type_error(name, f"expected float32 or float64, got {dt}")
            if dtype is None:
                dtype, first = dt, name
            elif dt != dtype:
                raise self.type_error(name, f"dtype {dt} differs from {first}'s {dtype}")
        return dtype

    def _require_array(self, a, name: str) -> None:
        if not (isinstance(a, np.ndarray) or hasattr(a, "__cuda_array_interface__")):
            raise self.type_error(name, f"expected a numpy or cupy array, got {type(a).__name__}")

    def array(self, a, name: str, desc: str, ndim: int | None = None):
        """A C-contiguous, aligned view or copy of input ``a`` (any strides accepted)."""
        if a is None:
            raise self.type_error(name, "expected an array, got None")
        self._require_array(a, name)
        if ndim is not None and a.ndim != ndim:
            raise self.shape_error(name, desc, a.shape)
        if isinstance(a, np.ndarray):
            flags = a.flags
            if flags.c_contiguous and flags.aligned:  # the common case, without np.require's cost
                return a
            return np.require(a, requirements=("C", "A"))
        return a if a.flags.c_contiguous else a.copy(order="C")

    def shape(self, a, name: str, expected: tuple, desc: str | None = None) -> None:
        """``expected`` holds ints, or None where any size is fine; ``desc`` (default:
        ``expected`` formatted) is what the error message calls the expected shape."""
        shape = a.shape
        if shape == expected:
            return
        if len(shape) != len(expected) or any(
            e is not None and s != e for s, e in zip(shape, expected)
        ):
            raise self.shape_error(name, fmt_shape(expected) if desc is None else desc, shape)

    # -- integers and pairs ----------------------------------------------------
    def integer(self, v, name: str, min_value: int) -> int:
        if type(v) is int and min_value <= v <= MAX_GEOM:  # the common case, quickly
            return v
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
            raise self.type_error(name, f"expected an int, got {type(v).__name__}")
        v = operator.index(v)
        if v < min_value:
            raise self.value_error(name, f"must be >= {min_value}, got {v}")
        if v > MAX_GEOM:
            raise self.value_error(name, f"must be <= {MAX_GEOM}, got {v}")
        return v

    def pair(self, v, name: str, min_value: int) -> tuple:
        """An int or a pair of ints (h, w), each >= min_value."""
        if type(v) is int and min_value <= v <= MAX_GEOM:
            return (v, v)
        if isinstance(v, (tuple, list)):
            if len(v) != 2:
                raise self.value_error(name, f"expected an int or a pair (h, w), got {tuple(v)!r}")
            return (self.integer(v[0], name, min_value), self.integer(v[1], name, min_value))
        if isinstance(v, np.ndarray) and v.shape == (2,):
            return self.pair(tuple(v.tolist()), name, min_value)
        i = self.integer(v, name, min_value)
        return (i, i)

    def flags(self, v, name: str, n: int) -> tuple:
        """A sequence of n bools (e.g. output_mask)."""
        try:
            items = tuple(v)
        except TypeError:
            raise self.type_error(name, f"expected a sequence of {n} bools, got {v!r}") from None
        if len(items) != n or not all(isinstance(b, (bool, np.bool_)) for b in items):
            raise self.value_error(name, f"expected {n} bools, got {v!r}")
        return tuple(bool(b) for b in items)

    def real(self, v, name: str, low=None, high=None, high_open=False, allow_nan=False) -> float:
        """A real number (not a bool) as float, in [low, high] (or [low, high) with
        high_open); NaN is rejected unless allow_nan."""
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
            raise self.type_error(name, f"expected a number, got {type(v).__name__}")
        v = float(v)
        if v != v:
            if allow_nan:
                return v
            raise self.value_error(name, f"must be a number, got {v}")
        if (low is not None and v < low) or (high is not None and (v >= high if high_open else v > high)):
            lo = "-inf" if low is None else low
            rng = f"[{lo}, {high})" if high_open else (f"[{lo}, {high}]" if high is not None else f">= {lo}")
            raise self.value_error(name, f"must be in {rng}, got {v}")
        return v

    def boolean(self, v, name: str) -> bool:
        if not isinstance(v, (bool, np.bool_)):
            raise self.type_error(name, f"expected a bool, got {type(v).__name__}")
        return bool(v)


# -- aliasing of in-place arguments (CPU arrays) ------------------------------------------
#
# The rule of every function that writes an argument in place (optimizer steps, running
# statistics, out=): no array the call writes may share memory with any other array
# argument of the call; arrays that are only read may overlap each other. The check runs
# before anything is written, so a call that raises has changed nothing.


def overlap_error(fn: str, later: str, earlier: str) -> ValueError:
    return ValueError(f"{fn}: {later} overlaps {earlier}")


def check_no_overlap(fn: str, arrays: dict, written) -> None:
    """Raises ValueError naming both arguments ("fn: later overlaps earlier", in the order
    of ``arrays``, the call's argument order) when an array whose name is in ``written``
    shares memory with any other array of ``arrays``. None entries and non-numpy arrays
    are skipped. np.shares_memory is exact, and a bounds test when the byte bounds of the
    two arrays do not meet (the common case)."""
    items = [(n, a) for n, a in arrays.items() if isinstance(a, np.ndarray)]
    for j, (later, b) in enumerate(items):
        for earlier, a in items[:j]:
            if (later in written or earlier in written) and np.shares_memory(a, b):
                raise overlap_error(fn, later, earlier)


def _byte_bounds(a: np.ndarray):
    try:
        return np.lib.array_utils.byte_bounds(a)
    except AttributeError:  # numpy < 2
        return np.byte_bounds(a)


def first_overlap(arrays: list):
    """(j, i) with i < j for a pair of numpy arrays of the list that share memory, else
    None. Byte bounds sorted by start give the candidate pairs (O(n log n) for arrays that
    do not interleave), each confirmed by np.shares_memory."""
    spans = sorted((*_byte_bounds(a), i) for i, a in enumerate(arrays)
                   if isinstance(a, np.ndarray) and a.size)
    open_spans = []
    for lo, hi, i in spans:
        open_spans = [s for s in open_spans if s[1] > lo]
        for _, _, j in open_spans:
            if np.shares_memory(arrays[i], arrays[j]):
                return max(i, j), min(i, j)
        open_spans.append((lo, hi, i))
    return None
