"""The contract every compiled op follows, checked generically from its declaration.

Each function of the compiled modules is declared once (python/bindings/op.h, def_op):
name, one-line doc, named arguments and, for float ops, the argument whose dtype picks
the float32 or float64 kernel. The declarations are listed in the module's ``__ops__``;
these tests walk that list, so a new op is checked without a new test.
"""

from __future__ import annotations

import inspect
import re

import numpy as np
import pytest

import adlkernels as ak
from adlkernels import _adlk
from adlkernels._backend import cuda_module

MODULES = [_adlk] + ([cuda_module()] if cuda_module() is not None else [])
OPS = [(mod, name, decl) for mod in MODULES for name, decl in sorted(mod.__ops__.items())]
FLOAT_OPS = [op for op in OPS if op[2]["dtype_arg"] is not None]


def _id(op):
    return f"{op[0].__name__.rsplit('.', 1)[-1]}.{op[1]}"


def _signature_types(fn):
    """[(name, type text)] from the first line of a pybind11 docstring."""
    first = fn.__doc__.splitlines()[0]
    params = first[first.index("(") + 1: first.rindex(") ->")]
    out, depth, cur = [], 0, ""
    for ch in params + ",":
        if ch == "," and depth == 0:
            if cur.strip():
                name, _, typ = cur.strip().partition(": ")
                out.append((name, typ))
            cur = ""
            continue
        depth += ch in "[(" and 1 or 0
        depth -= ch in "])" and 1 or 0
        cur += ch
    return out


def test_every_binding_is_declared():
    """No function reaches Python without a declaration (name, args, doc)."""
    for mod in MODULES:
        functions = [n for n, v in vars(mod).items()
                     if callable(v) and not isinstance(v, type) and not n.startswith("_")]
        undeclared = sorted(set(functions) - set(mod.__ops__))
        assert not undeclared, f"{mod.__name__}: bound without def_op: {undeclared}"


@pytest.mark.parametrize("op", OPS, ids=_id)
def test_declaration_is_complete(op):
    mod, name, decl = op
    fn = getattr(mod, name)
    doc = decl["doc"]
    assert doc and "\n" not in doc and doc.endswith("."), doc
    assert doc in fn.__doc__
    names = [n for n, _ in _signature_types(fn)]
    assert tuple(names) == decl["args"], (names, decl["args"])
    assert not any(re.fullmatch(r"arg\d+", n) for n in names), "unnamed argument"
    if decl["dtype_arg"] is not None:
        assert decl["dtype_arg"] in decl["args"]
        assert decl["dtypes"] == ("float32", "float64")


def _dummy(typ: str, bad: bool):
    """A value of the C++ parameter type; for the dtype argument (bad=True) one of the
    right kind with dtype int32."""
    bad_array = np.zeros(1, np.int32)
    if "ndarray" in typ:
        return bad_array if bad else np.zeros(1, np.float32)
    if typ.startswith("list"):
        return [bad_array] if bad else []
    if bad:  # an object parameter that carries the dtype (CUDA ops take the dtype itself)
        return np.dtype(np.int32)
    if "Conv2dGeom" in typ:
        return _adlk.Conv2dGeom(N=1, C=1, H=1, W=1)
    if "Pool2dGeom" in typ:
        return _adlk.Pool2dGeom(N=1, C=1, H=1, W=1, kernel_size=(1, 1), stride=(1, 1))
    if typ.startswith("tuple"):
        return (1, 1)
    if typ.startswith(("list", "collections.abc.Sequence")):
        return [1, 1, 1, 1]
    if typ == "bool":
        return False
    if "Float" in typ:
        return 0.0
    if "Int" in typ:
        return 0
    for enum in (_adlk.Activation, _adlk.Reduction, _adlk.LossKind):
        if typ.endswith(enum.__name__):
            return list(enum.__members__.values())[0]
    return None


@pytest.mark.parametrize("op", FLOAT_OPS, ids=_id)
def test_dtype_dispatch_names_the_argument(op):
    """Any dtype but float32/float64 in the dispatching argument raises TypeError naming
    that argument, before any kernel runs (the CUDA ops too: no device is touched)."""
    mod, name, decl = op
    fn = getattr(mod, name)
    key = decl["dtype_arg"]
    args = [_dummy(t, n == key) for n, t in _signature_types(fn)]
    with pytest.raises(TypeError, match=rf"^{re.escape(key)}(\[0\])?: expected float32 or float64, got int32"):
        fn(*args)


def test_activation_enum_matches_the_public_functions():
    """Each Activation has its public pair, whose backward takes the array the kernel
    reads (the enum's backward_takes_output)."""
    for name, act in _adlk.Activation.__members__.items():
        forward, backward = getattr(ak, f"{name}_forward"), getattr(ak, f"{name}_backward")
        assert forward.__name__ == f"{name}_forward" and forward.__doc__
        params = list(inspect.signature(backward).parameters)
        assert params[:2] == ["grad_y", "y" if act.backward_takes_output else "x"], (name, params)
        assert f"{name}_forward" in ak.__all__ and f"{name}_backward" in ak.__all__


def test_reductions_are_the_enum():
    assert ak.nn._REDUCTIONS == ("mean", "sum", "none") == tuple(_adlk.Reduction.__members__)


def _conv_size(n, k, s, p, d):  # the definition (PyTorch's Conv2d docs)
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def _pool_size(n, k, s, p, d, ceil_mode):  # PyTorch's MaxPool2d docs, with its ceil rule
    num = n + 2 * p - d * (k - 1) - 1
    out = (-(-num // s) if ceil_mode else num // s) + 1
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1
    return out


def test_geometry_formulas_follow_the_definitions():
    rng = np.random.default_rng(0)
    for _ in range(2000):
        n, k, s, d = (int(v) for v in rng.integers(1, 12, 4))
        p = int(rng.integers(0, k // 2 + 1))
        if n + 2 * p >= d * (k - 1) + 1:
            assert _adlk.conv_output_size(n, k, s, p, d) == _conv_size(n, k, s, p, d)
        else:
            with pytest.raises(ValueError, match="larger than the padded input"):
                _adlk.conv_output_size(n, k, s, p, d)
        for ceil_mode in (False, True):
            assert _adlk.pooled_output_size(n, k, s, p, d, ceil_mode) == _pool_size(n, k, s, p, d, ceil_mode)


def test_geometry_structs():
    g = _adlk.Conv2dGeom(N=2, C=4, H=9, W=7, C_out=6, kernel_size=(3, 2), stride=(2, 1),
                         padding=(1, 0), dilation=(1, 2), groups=2)
    assert (g.H_out, g.W_out) == (_conv_size(9, 3, 2, 1, 1), _conv_size(7, 2, 1, 0, 2))
    assert g.L == g.H_out * g.W_out and g.col_rows == 4 * 3 * 2
    assert (g.kernel_size, g.stride, g.padding, g.dilation) == ((3, 2), (2, 1), (1, 0), (1, 2))
    assert "-> (5, 5)" in repr(g)
    with pytest.raises(ValueError, match="groups must divide"):
        _adlk.Conv2dGeom(N=1, C=3, H=4, W=4, C_out=2, groups=2)
    q = _adlk.Pool2dGeom(N=1, C=1, H=5, W=5, kernel_size=(2, 2), stride=(2, 2), ceil_mode=True)
    assert (q.H_out, q.W_out) == (3, 3)
    with pytest.raises(ValueError, match="padding"):
        _adlk.Pool2dGeom(N=1, C=1, H=5, W=5, kernel_size=(2, 2), stride=(1, 1), padding=(2, 2))


def test_limits_come_from_the_core():
    from adlkernels import _validate

    assert _validate.MAX_GEOM == _adlk.MAX_GEOM_ARG - 1 == 2**31 - 1
    assert ak._MAX_THREADS == _adlk.MAX_THREADS
    with pytest.raises(ValueError, match=str(_adlk.MAX_THREADS)):
        ak.set_num_threads(_adlk.MAX_THREADS + 1)
