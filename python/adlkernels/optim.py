"""Optimizer updates (docs/api/optim.md): fused multi-tensor SGD, Adagrad, RMSprop and
Adam/AdamW steps, gradient-norm clipping, stateful optimizers and learning-rate schedules.

Each step updates params and state in place in one pass over memory (param, grad and
state read once, param and state written once). A call takes one array or a list of
arrays per argument; all tensors of a list are updated in one OpenMP region whose
threads each take an equal share of the elements of all tensors together, so a thousand
small tensors cost one region and one big tensor still uses every thread. Updates are
elementwise, so results are bitwise identical for any thread count; clip_grad_norm sums
fixed chunks of 32768 elements in double and adds the chunk sums in order, which makes
its total bitwise identical for any thread count too.

Everything is checked before any array is written: lists of equal length, shapes equal
pairwise, one float dtype, params and state arrays C-contiguous and writeable, the
hyper-parameters PyTorch rejects, and aliasing. A call that raises has changed nothing.

Aliasing rule: no array that a call writes (params, state arrays; the grads of
clip_grad_norm) may share memory with any other array of the call: not the same array
twice in a list, not a param that is its own grad, not one array as two state arguments,
not overlapping views (ValueError naming both, e.g. "adam_step: exp_avg_sqs[0] overlaps
exp_avgs[0]"). Even an exact self-alias of an elementwise update is rejected: the kernels
take their pointers as non-aliasing (``__restrict``), and a param listed twice would be
updated twice or once depending on the order. Grads, which are only read, may share
memory with each other (one gradient array for two params is fine), and views of one
buffer that do not overlap (a flat parameter buffer cut into tensors) are fine. The
check sorts the byte ranges of the arrays (O(n log n), a few microseconds per hundred
tensors).
Results match one ``torch.optim.<X>.step()`` (the default single-tensor implementation)
with the same hyper-parameters; ``step`` is the 1-based count of the update.

CuPy arrays run the CUDA kernels (see the status in docs/conventions.md): the tensors go
48 per launch, each element updated by the CPU kernel's own code (the same bits), and
``clip_grad_norm`` returns a 0-d cupy array and scales on the device without waiting for
the GPU (unless ``error_if_nonfinite``). The stateful optimizers take numpy or cupy
params and keep their state in the same array type.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from . import _adlk, _cuda
from ._backend import backend_of, is_device_array, on_gpu
from ._validate import Args, first_overlap, fmt_shape, overlap_error

__all__ = ["sgd_step", "adagrad_step", "rmsprop_step", "adam_step", "clip_grad_norm"]


# ---- argument checks ---------------------------------------------------------------


def _as_list(a: Args, v, name: str):
    if v is None:
        raise a.type_error(name, "expected an array or a list of arrays, got None")
    if isinstance(v, (list, tuple)):
        return list(v)
    if isinstance(v, np.ndarray) or hasattr(v, "__cuda_array_interface__"):
        return [v]
    raise a.type_error(name, f"expected an array or a list of arrays, got {type(v).__name__}")


def _entries(a: Args, named: dict) -> dict:
    """{"name[i]": array} of the lists in ``named``; a None entry is an error here (the
    dtype and backend checks skip None, which elsewhere means an omitted argument)."""
    arrays = {f"{name}[{i}]": arr for name, lst in named.items() for i, arr in enumerate(lst)}
    for name, arr in arrays.items():
        if arr is None:
            raise a.type_error(name, "expected an array, got None")
    return arrays


class _Lists:
    """The tensor lists of one call: params first, then grads, then states.

    Plain numpy lists with one float dtype and matching shapes take a fast path (a few
    C-level passes over the lists; contiguity and writeability are then checked by the
    binding, before any kernel runs). Anything else, or a binding that rejects an
    array, goes through the full checks, whose errors name the argument.
    """

    def __init__(self, fn: str, params, grads, states: dict):
        self.fn, self.a = fn, Args(fn)
        self._raw = (params, grads, states)
        if not self._fast():
            self._full()

    def _fast(self) -> bool:
        params, grads, states = self._raw
        lists = [params, grads] + [v for v in states.values() if v is not None]
        if not all(type(v) is list for v in lists):
            return False
        n = len(params)
        if any(len(v) != n for v in lists):
            return False
        every = [a for v in lists for a in v]
        if set(map(type, every)) - {np.ndarray}:
            return False
        dtypes = set(map(_dtype_of, every))
        if len(dtypes) > 1 or (dtypes and not dtypes <= set(_FLOATS)):
            return False
        shapes = list(map(_shape_of, params))
        if any(list(map(_shape_of, v)) != shapes for v in lists[1:]):
            return False
        self.params, self.grads = params, grads
        self.states = dict(states)
        self.backend = "cpu"
        self.dtype = dtypes.pop() if dtypes else np.dtype(np.float32)
        self.checked = False
        return True

    def _full(self) -> None:
        fn, a = self.fn, self.a
        params, grads, states = self._raw
        self.params = _as_list(a, params, "params")
        self.grads = _as_list(a, grads, "grads")
        self.states = {k: (None if v is None else _as_list(a, v, k)) for k, v in states.items()}
        n = len(self.params)
        named = {"params": self.params, "grads": self.grads}
        named.update({k: v for k, v in self.states.items() if v is not None})
        for name, lst in named.items():
            if len(lst) != n:
                raise a.value_error(name, f"has {len(lst)} arrays, params has {n}")
        arrays = _entries(a, named)
        self.backend = backend_of(fn, arrays)
        self.dtype = a.float_dtype(**arrays) if arrays else np.dtype(np.float32)
        for i, p in enumerate(self.params):
            shape = p.shape
            for name, lst in named.items():
                if name == "params":
                    continue
                if lst[i].shape != shape:
                    raise a.shape_error(f"{name}[{i}]", f"{fmt_shape(shape)} (as params[{i}])", lst[i].shape)
        for name, lst in named.items():
            if name == "grads":
                continue
            for i, arr in enumerate(lst):
                _writeable(a, arr, f"{name}[{i}]")
        # grads are only read: any strides, copied to C order when needed
        self.grads = [np.require(g, requirements=("C", "A")) if isinstance(g, np.ndarray) else g
                      for g in self.grads]
        self.checked = True

    def run(self, call):
        """Runs call() (which reads this object's lists). A rejection by the binding on the
        fast path re-runs the full checks, which raise the precise error or fix what the
        binding needs (contiguous grads), and calls again."""
        try:
            return call()
        except (ValueError, TypeError):
            if self.checked:
                raise
            self._full()
            return call()

    def call(self, fn: str, used: dict, hyper: dict) -> None:
        """Runs kernel ``fn`` (the CPU module's or the CUDA module's function of that name)
        on the lists: ``used`` says which state lists it takes (the others pass None),
        ``hyper`` its scalars by keyword."""
        def states():
            return {name: (self.states[name] if on else None) for name, on in used.items()}
        if on_gpu(self.fn, self.backend):
            _cuda.list_step(fn, self.params, self.grads, states(), self.dtype, hyper)
        else:
            self.run(lambda: getattr(_adlk, fn)(self.params, self.grads, **states(), **hyper))

    def state(self, name: str, needed: bool, why: str):
        lst = self.states[name]
        if needed and lst is None:
            raise self.a.value_error(name, f"required when {why}")
        return lst if needed else None


_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _dtype_of(a):
    return a.dtype


def _shape_of(a):
    return a.shape


def _writeable(a: Args, arr, name: str) -> None:
    if isinstance(arr, np.ndarray):
        if not (arr.flags.c_contiguous and arr.flags.aligned):
            raise a.value_error(name, "is updated in place and must be C-contiguous")
        if not arr.flags.writeable:
            raise a.value_error(name, "is updated in place and must be writeable")
    elif not arr.flags.c_contiguous:
        raise a.value_error(name, "is updated in place and must be C-contiguous")


def _step(a: Args, step) -> int:
    if step is None:
        raise a.type_error("step", "the 1-based update count is required")
    return a.integer(step, "step", 1)


def _bool(a: Args, v, name: str) -> bool:
    return a.boolean(v, name)


# ---- steps ---------------------------------------------------------------------------


def sgd_step(params, grads, momentum_buffers=None, *, step, lr, momentum=0.0, dampening=0.0,
             nesterov=False, weight_decay=0.0, maximize=False):
    """SGD with momentum, dampening, Nesterov and weight decay, as ``torch.optim.SGD``.

    g = grad (negated when maximize) + weight_decay * param; with momentum:
    buf = g on step 1, else momentum * buf + (1 - dampening) * g, and g = g + momentum * buf
    (nesterov) or buf; then param -= lr * g. momentum_buffers is needed when momentum > 0.
    """
    ls = _Lists("sgd_step", params, grads, {"momentum_buffers": momentum_buffers})
    a = ls.a
    step = _step(a, step)
    lr = a.real(lr, "lr", 0.0)
    momentum = a.real(momentum, "momentum", 0.0)
    dampening = a.real(dampening, "dampening", -math.inf)
    weight_decay = a.real(weight_decay, "weight_decay", 0.0)
    nesterov, maximize = _bool(a, nesterov, "nesterov"), _bool(a, maximize, "maximize")
    if nesterov and (momentum <= 0 or dampening != 0):
        raise a.value_error("nesterov", "requires a momentum > 0 and zero dampening")
    ls.state("momentum_buffers", momentum != 0, "momentum > 0")
    ls.call("sgd_step", {"momentum_buffers": momentum != 0}, dict(
        step=step, lr=lr, momentum=momentum, dampening=dampening, nesterov=nesterov,
        weight_decay=weight_decay, maximize=maximize))


def adagrad_step(params, grads, state_sums, *, step, lr=0.01, lr_decay=0.0, weight_decay=0.0,
                 eps=1e-10, maximize=False):
    """Adagrad, as ``torch.optim.Adagrad``: sum += g^2; param -= clr * g / (sqrt(sum) + eps)
    with clr = lr / (1 + (step - 1) * lr_decay)."""
    ls = _Lists("adagrad_step", params, grads, {"state_sums": state_sums})
    a = ls.a
    step = _step(a, step)
    lr = a.real(lr, "lr", 0.0)
    lr_decay = a.real(lr_decay, "lr_decay", 0.0)
    weight_decay = a.real(weight_decay, "weight_decay", 0.0)
    eps = a.real(eps, "eps", 0.0)
    maximize = _bool(a, maximize, "maximize")
    ls.state("state_sums", True, "always")
    ls.call("adagrad_step", {"state_sums": True}, dict(
        step=step, lr=lr, lr_decay=lr_decay, weight_decay=weight_decay, eps=eps, maximize=maximize))


def rmsprop_step(params, grads, square_avgs, *, step, lr=0.01, alpha=0.99, eps=1e-8,
                 weight_decay=0.0, momentum=0.0, momentum_buffers=None, centered=False,
                 grad_avgs=None, maximize=False):
    """RMSprop, as ``torch.optim.RMSprop`` (centered and momentum variants).

    square_avg = alpha * square_avg + (1 - alpha) * g^2; centered: grad_avg moves toward g
    by (1 - alpha) and the denominator is sqrt(square_avg - grad_avg^2) + eps, else
    sqrt(square_avg) + eps. momentum_buffers are needed when momentum > 0, grad_avgs when
    centered.
    """
    ls = _Lists("rmsprop_step", params, grads, {
        "square_avgs": square_avgs, "momentum_buffers": momentum_buffers, "grad_avgs": grad_avgs,
    })
    a = ls.a
    step = _step(a, step)
    lr = a.real(lr, "lr", 0.0)
    alpha = a.real(alpha, "alpha", 0.0)
    eps = a.real(eps, "eps", 0.0)
    weight_decay = a.real(weight_decay, "weight_decay", 0.0)
    momentum = a.real(momentum, "momentum", 0.0)
    centered, maximize = _bool(a, centered, "centered"), _bool(a, maximize, "maximize")
    ls.state("square_avgs", True, "always")
    ls.state("momentum_buffers", momentum > 0, "momentum > 0")
    ls.state("grad_avgs", centered, "centered=True")
    ls.call("rmsprop_step", {"square_avgs": True, "momentum_buffers": momentum > 0,
                             "grad_avgs": centered}, dict(
        step=step, lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
        maximize=maximize))


def adam_step(params, grads, exp_avgs, exp_avg_sqs, *, step, lr=1e-3, beta1=0.9, beta2=0.999,
              eps=1e-8, weight_decay=0.0, decoupled_weight_decay=False, amsgrad=False,
              max_exp_avg_sqs=None, maximize=False):
    """Adam, as ``torch.optim.Adam``; decoupled_weight_decay=True is ``torch.optim.AdamW``.

    m moves toward g by (1 - beta1); v = beta2 v + (1 - beta2) g^2; with PyTorch's bias
    corrections param -= lr / (1 - beta1^step) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps)
    (amsgrad: the running maximum of v, in max_exp_avg_sqs). Weight decay is added to the
    gradient, or (decoupled) scales param by 1 - lr * weight_decay first.
    """
    ls = _Lists("adam_step", params, grads, {
        "exp_avgs": exp_avgs, "exp_avg_sqs": exp_avg_sqs, "max_exp_avg_sqs": max_exp_avg_sqs,
    })
    a = ls.a
    step = _step(a, step)
    lr = a.real(lr, "lr", 0.0)
    beta1 = a.real(beta1, "beta1", 0.0, 1.0, high_open=True)
    beta2 = a.real(beta2, "beta2", 0.0, 1.0, high_open=True)
    eps = a.real(eps, "eps", 0.0)
    weight_decay = a.real(weight_decay, "weight_decay", 0.0)
    decoupled = _bool(a, decoupled_weight_decay, "decoupled_weight_decay")
    amsgrad, maximize = _bool(a, amsgrad, "amsgrad"), _bool(a, maximize, "maximize")
    ls.state("exp_avgs", True, "always")
    ls.state("exp_avg_sqs", True, "always")
    ls.state("max_exp_avg_sqs", amsgrad, "amsgrad=True")
    ls.call("adam_step", {"exp_avgs": True, "exp_avg_sqs": True, "max_exp_avg_sqs": amsgrad}, dict(
        step=step, lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay,
        decoupled_weight_decay=decoupled, maximize=maximize))


def clip_grad_norm(grads, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scales grads in place so that their total norm is at most max_norm, as
    ``torch.nn.utils.clip_grad_norm_``: total = the norm_type-norm (2, 1 or inf) of all
    gradients together; if max_norm / (total + 1e-6) < 1 every gradient is multiplied by
    it. Returns total as a 0-d array of the gradients' dtype. A non-finite total with
    error_if_nonfinite raises RuntimeError and leaves grads unchanged.
    """
    a = Args("clip_grad_norm")
    grads = _as_list(a, grads, "grads")
    arrays = _entries(a, {"grads": grads})
    backend = backend_of(a.fn, arrays)
    dtype = a.float_dtype(**arrays) if arrays else np.dtype(np.float32)
    for i, g in enumerate(grads):
        _writeable(a, g, f"grads[{i}]")
    max_norm = a.real(max_norm, "max_norm", -math.inf)
    if isinstance(norm_type, (bool, np.bool_)) or not isinstance(norm_type, numbers.Real):
        raise a.type_error("norm_type", f"expected 1, 2 or inf, got {norm_type!r}")
    norm_type = float(norm_type)
    if norm_type not in (1.0, 2.0, math.inf):
        raise a.value_error("norm_type", f"expected 1, 2 or inf, got {norm_type!r}")
    error_if_nonfinite = _bool(a, error_if_nonfinite, "error_if_nonfinite")

    def nonfinite():
        return RuntimeError(
            f"clip_grad_norm: the total norm of order {norm_type} of the gradients is "
            "non-finite, so it cannot be clipped (error_if_nonfinite=True)"
        )

    if on_gpu(a.fn, backend):
        return _cuda.clip_grad_norm(grads, max_norm, norm_type, dtype,
                                    nonfinite if error_if_nonfinite else None)
    total = _adlk.grad_norm(grads, norm_type) if grads else 0.0
    total = np.asarray(total, dtype=dtype)
    if error_if_nonfinite and not np.isfinite(total):
        raise nonfinite()
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # inf/inf: NaN, as torch
        coef = dtype.type(max_norm) / (total + dtype.type(1e-6))
    if grads and not coef >= 1:  # NaN scales too, as PyTorch's clamp(coef, max=1)
        _adlk.scale_arrays(grads, float(coef))
    return total


# ---- stateful optimizers ---------------------------------------------------------------


class _Optimizer:
    """Holds the parameter list, the state arrays (zeros at first) and the step count.

    ``step(grads)`` updates params in place; ``zero_state()`` zeroes the state (the next
    step acts as a first step); ``state_dict()`` / ``load_state_dict(d)`` save and restore
    step count, hyper-parameters and state (copies), so a round trip resumes
    bit-identically. ``lr`` is readable and writable (schedules set it).
    """

    _fn = None           # the step function
    _state_names = ()    # state arrays the step function takes, in its keyword names
    _defaults = {}

    def __init__(self, params, **hyper):
        cls = type(self).__name__
        self.params = _as_list(Args(cls), params, "params")
        unknown = set(hyper) - set(self._defaults)
        if unknown:
            raise TypeError(f"{cls}: unexpected keyword arguments {sorted(unknown)}")
        self.hyper = dict(self._defaults, **hyper)
        self.steps = 0
        a = Args(cls)
        for i, p in enumerate(self.params):
            if not (isinstance(p, np.ndarray) or is_device_array(p)):
                raise a.type_error(f"params[{i}]",
                                   f"expected a numpy or cupy array, got {type(p).__name__}")
            _writeable(a, p, f"params[{i}]")
        pair = first_overlap(self.params)  # every step would raise: say so now
        if pair:
            raise overlap_error(cls, f"params[{pair[0]}]", f"params[{pair[1]}]")
        # hyper-parameters are checked now (an update on empty lists touches nothing)
        type(self)._fn([], [], step=1, **self.hyper,
                       **{name: [] for name in self._state_names if self._needs(name)})
        # zeros of each param's array type (np.zeros_like dispatches to cupy's for cupy)
        self.state = {name: [np.zeros_like(p) for p in self.params]
                      for name in self._state_names if self._needs(name)}

    def _needs(self, name: str) -> bool:
        return True

    @property
    def lr(self) -> float:
        return self.hyper["lr"]

    @lr.setter
    def lr(self, value) -> None:
        self.hyper["lr"] = Args(type(self).__name__).real(value, "lr", 0.0)

    def step(self, grads) -> None:
        kwargs = {k: v for k, v in self.hyper.items()}
        kwargs.update({name: lst for name, lst in self.state.items()})
        type(self)._fn(self.params, grads, step=self.steps + 1, **kwargs)
        self.steps += 1

    def zero_state(self) -> None:
        for lst in self.state.values():
            for arr in lst:
                arr[...] = 0
        self.steps = 0

    def state_dict(self) -> dict:
        return {
            "steps": self.steps,
            "hyper": dict(self.hyper),
            "state": {name: [arr.copy() for arr in lst] for name, lst in self.state.items()},
        }

    def load_state_dict(self, d: dict) -> None:
        cls = type(self).__name__
        a = Args(f"{cls}.load_state_dict")
        try:
            steps, hyper, state = int(d["steps"]), dict(d["hyper"]), d["state"]
        except (KeyError, TypeError, ValueError) as e:
            raise a.value_error("d", f"not a {cls} state_dict ({e})") from None
        if set(state) != set(self.state) or set(hyper) != set(self.hyper):
            raise a.value_error("d", f"its state or hyper-parameters do not match this {cls}")
        for name, lst in state.items():
            if len(lst) != len(self.params):
                raise a.value_error(name, f"has {len(lst)} arrays, the optimizer has {len(self.params)}")
            for i, (src, dst) in enumerate(zip(lst, self.state[name])):
                if np.shape(src) != dst.shape:
                    raise a.shape_error(f"{name}[{i}]", fmt_shape(dst.shape), np.shape(src))
        for name, lst in state.items():
            for src, dst in zip(lst, self.state[name]):
                dst[...] = src
        self.hyper = hyper
        self.steps = steps


class SGD(_Optimizer):
    """Stateful :func:`sgd_step`: ``SGD(params, lr=..., momentum=0.0, ...)``."""

    _fn = staticmethod(sgd_step)
    _state_names = ("momentum_buffers",)
    _defaults = dict(lr=1e-3, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0,
                     maximize=False)

    def _needs(self, name):
        return self.hyper["momentum"] != 0


class Adagrad(_Optimizer):
    """Stateful :func:`adagrad_step`."""

    _fn = staticmethod(adagrad_step)
    _state_names = ("state_sums",)
    _defaults = dict(lr=0.01, lr_decay=0.0, weight_decay=0.0, eps=1e-10, maximize=False)


class RMSprop(_Optimizer):
    """Stateful :func:`rmsprop_step`."""

    _fn = staticmethod(rmsprop_step)
    _state_names = ("square_avgs", "momentum_buffers", "grad_avgs")
    _defaults = dict(lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                     centered=False, maximize=False)

    def _needs(self, name):
        if name == "momentum_buffers":
            return self.hyper["momentum"] > 0
        if name == "grad_avgs":
            return bool(self.hyper["centered"])
        return True


class Adam(_Optimizer):
    """Stateful :func:`adam_step`."""

    _fn = staticmethod(adam_step)
    _state_names = ("exp_avgs", "exp_avg_sqs", "max_exp_avg_sqs")
    _defaults = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                     decoupled_weight_decay=False, amsgrad=False, maximize=False)

    def _needs(self, name):
        return name != "max_exp_avg_sqs" or bool(self.hyper["amsgrad"])


class AdamW(Adam):
    """Adam with decoupled weight decay (``torch.optim.AdamW``; weight_decay 0.01)."""

    _defaults = dict(Adam._defaults, weight_decay=0.01, decoupled_weight_decay=True)


# ---- learning-rate schedules -------------------------------------------------------------


class _Schedule:
    """``step()`` once per epoch sets ``optimizer.lr``; the update rules are PyTorch's
    (recursive: each step multiplies the current lr), so the sequence of rates matches
    torch.optim.lr_scheduler's bit for bit."""

    def __init__(self, optimizer):
        if not isinstance(optimizer, _Optimizer):
            raise TypeError(f"{type(self).__name__}: expected an adlkernels optimizer, "
                            f"got {type(optimizer).__name__}")
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.last_epoch = 0

    def get_last_lr(self) -> float:
        return self.optimizer.lr

    def state_dict(self) -> dict:
        """The epoch count, the base rate and the schedule's hyper-parameters (the current
        rate lives in the optimizer's state dict)."""
        return {k: v for k, v in vars(self).items() if k != "optimizer"}

    def load_state_dict(self, d: dict) -> None:
        mine = self.state_dict()
        if not isinstance(d, dict) or set(d) != set(mine):
            raise ValueError(f"{type(self).__name__}.load_state_dict: d: expected the keys "
                             f"{sorted(mine)}, got {sorted(d) if isinstance(d, dict) else type(d).__name__}")
        for k, v in d.items():
            setattr(self, k, type(mine[k])(v))

    def step(self) -> None:
        self.last_epoch += 1
        self.optimizer.lr = self._next_lr(self.optimizer.lr)


class StepLR(_Schedule):
    """lr times gamma every step_size epochs."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        a = Args("StepLR")
        self.step_size = a.integer(step_size, "step_size", 1)
        self.gamma = a.real(gamma, "gamma", 0.0)
        super().__init__(optimizer)

    def _next_lr(self, lr):
        return lr * self.gamma if self.last_epoch % self.step_size == 0 else lr


class ExponentialLR(_Schedule):
    """lr times gamma every epoch."""

    def __init__(self, optimizer, gamma):
        self.gamma = Args("ExponentialLR").real(gamma, "gamma", 0.0)
        super().__init__(optimizer)

    def _next_lr(self, lr):
        return lr * self.gamma


class PolynomialLR(_Schedule):
    """lr decays as (1 - epoch / total_iters) ** power to 0 at total_iters, then stays."""

    def __init__(self, optimizer, total_iters=5, power=1.0):
        a = Args("PolynomialLR")
        self.total_iters = a.integer(total_iters, "total_iters", 1)
        self.power = a.real(power, "power", 0.0)
        super().__init__(optimizer)

    def _next_lr(self, lr):
        e, n = self.last_epoch, self.total_iters
        if e > n:
            return lr
        return lr * ((1.0 - e / n) / (1.0 - (e - 1) / n)) ** self.power
