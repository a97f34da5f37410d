"""The base class of ak.layers: registration of sub-layers and parameters, caches of
repeated uses, modes, state dicts, devices, repr and summary (docs/api/layers.md)."""

from __future__ import annotations

import numpy as np

from . import _cuda
from ._backend import is_device_array


def _xp(a):
    """The array module of a: cupy for a device array, else numpy."""
    return _cuda._cp() if is_device_array(a) else np


def _is_array(v) -> bool:
    return isinstance(v, np.ndarray) or is_device_array(v)


class Parameter:
    """Marks an array as a parameter when assigned to a Module attribute
    (``self.w = Parameter(np.zeros(3))``, as ``torch.nn.Parameter``): the module then lists
    it in ``params()``, gives it a gradient in ``grads()`` and saves it in ``state_dict()``.
    The attribute holds the array itself, not this wrapper."""

    __slots__ = ("data",)

    def __init__(self, data):
        if not _is_array(data):
            raise TypeError(f"Parameter: expected a numpy or cupy array, got {type(data).__name__}")
        self.data = data


def _holds_module(value) -> bool:
    if isinstance(value, (list, tuple)):
        return any(isinstance(v, Module) for v in value)
    if isinstance(value, dict):
        return any(isinstance(v, Module) for v in value.values())
    return False


class Module:
    """Base class: training flag, sub-layers and parameters, gradients, buffers, caches.

    Sub-layers assigned as attributes (``self.encoder = GRU(...)``) are registered
    automatically, in assignment order, and so are arrays wrapped in :class:`Parameter`.
    A list, tuple or dict of layers assigned as an attribute raises TypeError (it would
    not be registered): use :class:`ModuleList` or :class:`Sequential`.

    Caches: every forward in training mode keeps what its backward needs; backward
    consumes them last in, first out. A layer used k times (a decoder's attention, once
    per output step) gets k backward calls, and its parameter gradients are the sum over
    those uses. A forward after a backward starts a new round (its gradients overwrite the
    old ones). With a single use, backward may be called again with another grad_y (each
    call overwrites the gradients); more backward calls than uses raise RuntimeError. In
    eval mode a forward keeps only its own cache, so inference does not grow memory.
    """

    _param_names: tuple = ()
    _buffer_names: tuple = ()

    def __init__(self):
        object.__setattr__(self, "_modules", {})
        self.training = True
        self._caches = []
        self._round_uses = 0
        self._round_backwards = 0
        self._in_backward = False

    # -- registration ------------------------------------------------------------------------
    def __setattr__(self, name, value):
        modules = self.__dict__.get("_modules")
        if isinstance(value, (Module, Parameter)) and modules is None:
            raise AttributeError(f"{type(self).__name__}: call super().__init__() before "
                                 f"assigning sub-layers or parameters ({name!r})")
        if isinstance(value, Module):
            modules[name] = value
        elif modules is not None and name in modules:
            del modules[name]
        if isinstance(value, Parameter):
            self.register_parameter(name, value.data)
            return
        if _holds_module(value) and not name.startswith("_"):
            raise TypeError(f"{type(self).__name__}.{name}: a {type(value).__name__} of layers "
                            "is not registered; use ModuleList (or Sequential) so that its "
                            "parameters are found")
        object.__setattr__(self, name, value)

    def register_parameter(self, name: str, array) -> None:
        """Adds ``array`` (or None: a parameter slot left empty) as parameter ``name``."""
        if array is not None and not _is_array(array):
            raise TypeError(f"{type(self).__name__}.register_parameter: {name}: expected an "
                            f"array or None, got {type(array).__name__}")
        if name not in self._param_names:
            object.__setattr__(self, "_param_names", tuple(self._param_names) + (name,))
        object.__setattr__(self, name, array)
        grads = self.__dict__.setdefault("_grads", {})
        grads[name] = None if array is None else _xp(array).zeros_like(array)

    def register_buffer(self, name: str, value) -> None:
        """Adds ``value`` (an array or a number) as buffer ``name``: saved in state_dict,
        moved by ``to()``, not a parameter."""
        if name not in self._buffer_names:
            object.__setattr__(self, "_buffer_names", tuple(self._buffer_names) + (name,))
        object.__setattr__(self, name, value)

    # -- modes ---------------------------------------------------------------------------
    def train(self, mode: bool = True):
        self.training = bool(mode)
        for child in self.children():
            child.train(mode)
        return self

    def eval(self):
        return self.train(False)

    def named_children(self):
        """(name, sub-layer) pairs: the registered attributes, in assignment order. A
        subclass that overrides ``children()`` gets its entries named "0", "1", ..."""
        if type(self).children is not Module.children:
            return [(str(i), c) for i, c in enumerate(self.children())]
        return list(self.__dict__.get("_modules", {}).items())

    def children(self):
        return list(self.__dict__.get("_modules", {}).values())

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def modules(self):
        """This module and its descendants, each once (a module reused in a Sequential
        too), in pre-order: ``torch.nn.Module.modules()``'s order."""
        return [m for _, m in self.named_modules()]

    def named_modules(self, prefix: str = ""):
        """(qualified name, module) of this module ("") and its descendants, each once."""
        seen, out, stack = set(), [], [(prefix, self)]
        while stack:
            name, m = stack.pop()
            if id(m) not in seen:
                seen.add(id(m))
                out.append((name, m))
                stack.extend(reversed([(f"{name}.{n}" if name else n, c)
                                       for n, c in m.named_children()]))
        return out

    # -- parameters ------------------------------------------------------------------------
    def params(self):
        """The parameters of every module once, in PyTorch's order (``parameters()``)."""
        return [getattr(m, n) for m in self.modules() for n in m._param_names
                if getattr(m, n) is not None]

    def grads(self):
        return [m._grads[n] for m in self.modules() for n in m._param_names
                if getattr(m, n) is not None]

    def named_params(self):
        """(qualified name, array) of every parameter once, as ``named_parameters()``."""
        return [(f"{name}.{n}" if name else n, getattr(m, n)) for name, m in self.named_modules()
                for n in m._param_names if getattr(m, n) is not None]

    def zero_grad(self) -> None:
        for g in self.grads():
            g[...] = 0

    def _init_grads(self):
        self._grads = {n: (None if getattr(self, n) is None else _xp(getattr(self, n)).zeros_like(getattr(self, n)))
                       for n in self._param_names}

    def _set_grad(self, name, value):
        """Stores a parameter gradient of this backward: the first backward of a round
        overwrites, later ones (further uses of the layer) add."""
        if value is not None and self._grads.get(name) is not None:
            if self._accumulate:
                self._grads[name] += value
            else:
                self._grads[name][...] = value

    # -- caches ----------------------------------------------------------------------------
    @property
    def cache(self):
        """The cache of the latest forward not yet consumed (None if there is none)."""
        caches = self.__dict__.get("_caches")
        return caches[-1] if caches else None

    @cache.setter
    def cache(self, value):
        if "_caches" not in self.__dict__:  # a subclass that skipped Module.__init__
            object.__setattr__(self, "_caches", [])
            object.__setattr__(self, "_round_uses", 0)
            object.__setattr__(self, "_in_backward", False)
        if value is None:
            self._caches.clear()
            self._round_uses = 0
            self._in_backward = False
            return
        if self._in_backward or not self.training:
            self._caches.clear()  # a new round (or inference: keep one cache only)
            self._round_uses = 0
        self._in_backward = False
        self._round_backwards = 0
        self._caches.append(value)
        self._round_uses += 1

    def _need_cache(self):
        """The cache for this backward call: the latest use's, removed unless it is the
        round's last one (a single use may be differentiated again)."""
        caches = self.__dict__.get("_caches")
        if not caches:
            raise RuntimeError(f"{type(self).__name__}.backward: call forward first")
        uses = self._round_uses
        if uses > 1 and self._round_backwards >= uses:
            raise RuntimeError(f"{type(self).__name__}.backward: called more times than the "
                               f"{uses} forward calls of this round")
        self._accumulate = self._in_backward and uses > 1
        self._in_backward = True
        self._round_backwards += 1
        return caches.pop() if len(caches) > 1 else caches[-1]

    _accumulate = False

    # -- state ------------------------------------------------------------------------------
    def _state_items(self, prefix=""):
        for n in self._param_names + self._buffer_names:
            v = getattr(self, n)
            if v is not None:
                yield prefix + n, v
        for name, c in self.named_children():
            yield from c._state_items(f"{prefix}{name}.")

    def state_dict(self) -> dict:
        """Parameters and buffers by qualified name ("encoder.weight_ih_l0"), as copies."""
        return {k: (v.copy() if _is_array(v) else v) for k, v in self._state_items()}

    def load_state_dict(self, d: dict) -> None:
        items = dict(self._state_items())
        if set(items) != set(d):
            raise ValueError(f"{type(self).__name__}.load_state_dict: keys differ: "
                             f"missing {sorted(set(items) - set(d))}, unexpected {sorted(set(d) - set(items))}")
        for k, v in items.items():
            if _is_array(v) and tuple(np.shape(d[k])) != v.shape:
                raise ValueError(f"{type(self).__name__}.load_state_dict: {k}: expected shape "
                                 f"{v.shape}, got {np.shape(d[k])}")
        self._load_items(d, "")

    def _load_items(self, d, prefix):
        for n in self._param_names + self._buffer_names:
            v = getattr(self, n)
            if _is_array(v):
                v[...] = _xp(v).asarray(d[prefix + n])
            elif v is not None:
                src = d[prefix + n]
                object.__setattr__(self, n, src.item() if isinstance(src, np.ndarray) else src)
        for name, c in self.named_children():
            c._load_items(d, f"{prefix}{name}.")

    # -- devices --------------------------------------------------------------------------
    def to(self, device):
        """Moves every parameter, gradient and buffer of this module and its descendants to
        ``device``, in place, and returns self (``torch.nn.Module.to``): "cuda" or "gpu"
        (cupy arrays on CuPy's current device; the layers then run the CUDA kernels) or
        "cpu" (numpy arrays). Build the optimizer after the move: it holds the arrays."""
        if device in ("cuda", "gpu"):
            cp = _cuda._cp()
            move = cp.asarray
        elif device == "cpu":
            def move(a):
                return a.get() if is_device_array(a) else a
        else:
            raise ValueError(f"{type(self).__name__}.to: device must be 'cpu' or 'cuda', got {device!r}")
        for m in self.modules():
            for n in m._param_names + m._buffer_names:
                v = getattr(m, n)
                if _is_array(v):
                    object.__setattr__(m, n, move(v))
            if hasattr(m, "_grads"):
                m._grads = {n: (None if g is None else move(g)) for n, g in m._grads.items()}
            m.cache = None
        return self

    def cuda(self):
        return self.to("cuda")

    def cpu(self):
        return self.to("cpu")

    # -- description ----------------------------------------------------------------------
    def extra_repr(self) -> str:
        """The constructor arguments shown by repr (as ``torch.nn.Module.extra_repr``)."""
        return ""

    def __repr__(self):
        children = self.named_children()
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not children:
            return head + ")"
        lines = [head]
        for name, c in children:
            body = repr(c).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        return "\n".join(lines) + "\n)"

    def summary(self) -> str:
        """A table of every layer (qualified name, type, parameter shapes and count) and
        the totals: parameter count and bytes."""
        rows, total, nbytes = [], 0, 0
        for name, m in self.named_modules():
            own = [getattr(m, n) for n in m._param_names if getattr(m, n) is not None]
            count = sum(int(p.size) for p in own)
            total += count
            nbytes += sum(int(p.nbytes) for p in own)
            shapes = ", ".join("x".join(map(str, p.shape)) for p in own)
            rows.append((name or "(root)", type(m).__name__, shapes, f"{count:,}"))
        head = ("layer", "type", "parameter shapes", "parameters")
        widths = [max(len(r[i]) for r in rows + [head]) for i in range(4)]

        def fmt(r):
            return "  ".join(r[i].ljust(widths[i]) if i < 3 else r[i].rjust(widths[i]) for i in range(4))

        rule = "-" * len(fmt(head))
        return "\n".join([fmt(head), rule] + [fmt(r) for r in rows] + [
            rule, f"total parameters: {total:,} ({nbytes:,} bytes)"])


class ModuleList(Module):
    """A list of layers whose parameters are registered (``torch.nn.ModuleList``): index,
    iterate, ``append``; sub-layers are named "0", "1", ... It has no forward."""

    def __init__(self, modules=()):
        super().__init__()
        for m in modules:
            self.append(m)

    def append(self, module):
        if not isinstance(module, Module):
            raise TypeError(f"ModuleList.append: expected a Module, got {type(module).__name__}")
        self._modules[str(len(self._modules))] = module
        return self

    def __getitem__(self, i):
        return list(self._modules.values())[i]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(list(self._modules.values()))

    def forward(self, *args):
        raise NotImplementedError("ModuleList has no forward: call its layers")
