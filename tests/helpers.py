"""Small helpers shared by the test modules (not references: see reference*.py)."""

from __future__ import annotations

import re

import numpy as np


def randn(rng, shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


def names(msg: str, arg: str) -> bool:
    """The message names the argument as a word (x must not match inside 'expected')."""
    return re.search(rf"(?<![A-Za-z_]){re.escape(arg)}(?![A-Za-z_])", msg) is not None


def _shape_text(shape) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
