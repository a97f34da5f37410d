"""torch.optim optimizers whose ``step()`` runs adlkernels' fused multi-tensor kernels
(docs/api/torch.md).

``SGD``, ``Adagrad``, ``RMSprop``, ``Adam`` and ``AdamW`` are ``torch.optim.Optimizer``
subclasses with ``torch.optim``'s constructor signatures, defaults and hyper-parameter
checks. Their state has ``torch.optim``'s keys, dtypes and layout, so ``state_dict()`` of
one loads into the other; ``zero_grad``, hooks, ``add_param_group`` and the
``torch.optim.lr_scheduler`` schedules work as usual (``lr`` and every other
hyper-parameter is read from the param group at each step). Results equal
``torch.optim``'s default (single-tensor) implementation.

``step()`` collects, per param group, the params whose ``.grad`` is set, and updates them
with one call of :mod:`adlkernels.optim`'s step function per (device, dtype, step count)
— normally one call per group — on zero-copy views of the tensors (numpy arrays sharing
the memory of CPU tensors; cupy on torch's current stream for CUDA tensors, which needs the CUDA
kernels of the optimizer family).

A parameter listed twice is handled as torch.optim does: in two param groups it raises
ValueError ("some parameters appear in more than one parameter group"); twice in one
group, adding the group warns (torch's UserWarning) and each step updates it twice in a
row, with torch's results. Distinct parameters that share memory (views of one buffer
that overlap) raise ValueError at step(): the fused kernels never update a tensor
through two aliases (see :mod:`adlkernels.optim`).

What is not supported raises: ``differentiable=True`` and ``capturable=True`` (ValueError),
``lr``, ``betas`` or ``weight_decay`` given as Tensors (TypeError), sparse gradients
(RuntimeError), parameters other than float32/float64 (complex, half: TypeError) and
non-contiguous parameters (ValueError; the kernels update C-contiguous memory in place).
``foreach`` and ``fused`` are accepted, stored in the param groups (so state dicts match
``torch.optim``'s) and otherwise ignored: the kernel is always the fused multi-tensor one.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.optim import Optimizer

from .. import optim as _ako

__all__ = ["SGD", "Adagrad", "RMSprop", "Adam", "AdamW"]

_FLOATS = (torch.float32, torch.float64)


def _scalar_dtype():
    """The dtype of the 'step' state tensors, as torch.optim.optimizer._get_scalar_dtype()."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def _new_step():
    return torch.tensor(0.0, dtype=_scalar_dtype())


def _buckets(keys):
    """Indices grouped by key, in first-seen order."""
    out: dict = {}
    for i, k in enumerate(keys):
        out.setdefault(k, []).append(i)
    return out.items()


def _listings(params):
    """params in rounds: round r holds the r-th listing of each parameter, in order (one
    round when no parameter is listed twice, the normal case)."""
    if len({id(p) for p in params}) == len(params):
        return [params]
    rounds, seen = [], {}
    for p in params:
        k = seen.get(id(p), 0)
        seen[id(p)] = k + 1
        if k == len(rounds):
            rounds.append([])
        rounds[k].append(p)
    return rounds


def _views(device: torch.device, tensors):
    if device.type == "cpu":
        # zero-copy and writeable like numpy.from_dlpack(t.detach()), at a quarter of the
        # cost per tensor (which counts with hundreds of small parameters)
        return [t.detach().numpy() for t in tensors]
    import cupy

    return [cupy.from_dlpack(t.detach()) for t in tensors]


class _FusedOptimizer(Optimizer):
    """Shared machinery: group checks, param checks, the step loop and the kernel call.

    Each optimizer class defines ``_state_names(group)`` ({step-function keyword: state
    key} of the state arrays the group needs), ``_hyper(group)`` (the step function's
    hyper-parameter keywords) and, unless it overrides ``_group_step``,
    ``_init_state(group, p, state)`` (torch.optim's initial state of one parameter).
    """

    _ak_name = ""  # the adlkernels.optim step function

    # ---- checks ------------------------------------------------------------------------

    @property
    def _name(self) -> str:
        return f"adlkernels.torch.optim.{type(self).__name__}"

    @classmethod
    def _reject_unsupported(cls, **flags) -> None:
        name = f"adlkernels.torch.optim.{cls.__name__}"
        for key, value in flags.items():
            if isinstance(value, Tensor):
                raise TypeError(
                    f"{name}: {key} as a Tensor is not supported: the fused kernels take "
                    f"hyper-parameters as Python numbers (pass float({key}))"
                )
        for key in ("differentiable", "capturable"):
            if flags.get(key):
                raise ValueError(
                    f"{name}: {key}=True is not supported: the fused kernels update "
                    "parameters outside autograd and CUDA graphs (use torch.optim."
                    f"{cls.__name__} for {key} optimization)"
                )

    def add_param_group(self, param_group: dict) -> None:
        """As ``torch.optim.Optimizer.add_param_group``; the group's hyper-parameters are
        checked now (by the kernel's own checks), so a bad one fails here, not in step()."""
        super().add_param_group(param_group)
        try:
            self._check_group(self.param_groups[-1])
        except Exception:
            self.param_groups.pop()
            raise

    def _check_group(self, group: dict) -> None:
        self._reject_unsupported(
            **{k: v for k, v in group.items() if k != "params" and not isinstance(v, tuple)},
            **{f"{k}[{i}]": x for k, v in group.items() if isinstance(v, tuple)
               for i, x in enumerate(v)},
        )
        # an update of empty lists checks every hyper-parameter and touches nothing
        self._call(group, torch.device("cpu"), 1, [], [], {k: [] for k in self._state_names(group)})

    def _check_params(self, params) -> None:
        name = self._name
        for p in params:
            g = p.grad
            if g.layout != torch.strided:
                raise RuntimeError(
                    f"{type(self).__name__} does not support sparse gradients "
                    f"({name} runs fused kernels on dense gradients)"
                )
            if p.dtype not in _FLOATS:
                what = "complex parameters are" if p.is_complex() else f"dtype {p.dtype} is"
                raise TypeError(
                    f"{name}: a parameter of shape {tuple(p.shape)} has dtype {p.dtype}: "
                    f"{what} not supported, the fused kernels update float32 and float64 "
                    "parameters"
                )
            if not p.is_contiguous():
                raise ValueError(
                    f"{name}: a parameter of shape {tuple(p.shape)} and strides {p.stride()} "
                    "is not contiguous: the fused kernels update parameters in place and need "
                    "C-contiguous tensors (make the parameter with .contiguous())"
                )

    # ---- step ----------------------------------------------------------------------------

    def step(self, closure=None):
        """Performs one optimization step; ``closure`` (optional) re-evaluates the model
        (with gradients enabled) and returns the loss, which step returns."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        with torch.no_grad():
            for group in self.param_groups:
                self._reject_unsupported(lr=group["lr"],
                                         differentiable=group.get("differentiable"),
                                         capturable=group.get("capturable"))
                params = [p for p in group["params"] if p.grad is not None]
                if params:
                    self._check_params(params)
                    self._step_listings(group, params)
        return loss

    def _step_listings(self, group, params) -> None:
        """A parameter listed k times in one group (torch.optim warns about it when the
        group is added, and raises for one in two groups) is updated k times in a row, as
        torch.optim's single-tensor loop does: one kernel call per round of listings, so
        that no call sees a tensor twice (the kernels reject overlapping arrays)."""
        for params_once in _listings(params):
            self._group_step(group, params_once)

    def _step_counts(self, group, params):
        """Lazily creates the state (torch.optim's keys, dtypes, layout) and returns the
        step count each param will take (its stored count + 1)."""
        states = []
        for p in params:
            state = self.state[p]
            if len(state) == 0:
                self._init_state(group, p, state)
            states.append(state)
        return states, [int(s["step"].item()) + 1 for s in states]

    def _group_step(self, group, params) -> None:
        states, steps = self._step_counts(group, params)
        names = self._state_names(group)
        keys = [(p.device, p.dtype, n) for p, n in zip(params, steps)]
        for (device, _, step), idx in _buckets(keys):
            self._call(group, device, step, [params[i] for i in idx],
                       [params[i].grad for i in idx],
                       {k: [states[i][key] for i in idx] for k, key in names.items()})
            torch._foreach_add_([states[i]["step"] for i in idx], 1)
            torch.autograd.graph.increment_version([params[i] for i in idx])

    def _call(self, group, device, step, params, grads, state_lists) -> None:
        """One call of the adlkernels step function on zero-copy views of the tensors."""
        fn = getattr(_ako, self._ak_name)
        kwargs = self._hyper(group)

        def call():
            arrays = [_views(device, lst) for lst in (params, grads, *state_lists.values())]
            kwargs.update(zip(state_lists, arrays[2:]))
            fn(arrays[0], arrays[1], step=step, **kwargs)

        if device.type == "cpu":
            return call()
        if device.type != "cuda":
            raise RuntimeError(f"{self._name}: tensors on {device} are not supported "
                               "(CPU and CUDA tensors only)")
        import cupy  # the views and the kernels on torch's current stream of that device

        with cupy.cuda.Device(device.index), cupy.cuda.ExternalStream(
                torch.cuda.current_stream(device).cuda_stream):
            call()

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            for key, value in self.defaults.items():
                group.setdefault(key, value)
            for p in group["params"]:
                st = self.state.get(p, {})
                if "step" in st and not torch.is_tensor(st["step"]):
                    st["step"] = torch.tensor(float(st["step"]), dtype=_scalar_dtype())


_FUSED_NOTE = """
    ``foreach`` and ``fused`` are accepted for compatibility and ignored: the update is
    always adlkernels' fused multi-tensor kernel (one call per param group). Not
    supported: ``differentiable=True``{capturable}, Tensor hyper-parameters, sparse
    gradients, parameters other than float32/float64 or not contiguous.
"""


class SGD(_FusedOptimizer):
    __doc__ = ("""``torch.optim.SGD`` (momentum, dampening, Nesterov, weight decay, maximize)
    running :func:`adlkernels.optim.sgd_step`. State: ``momentum_buffer`` (only with
    momentum != 0, created by the first step as the first update's gradient, as torch).
""" + _FUSED_NOTE.format(capturable=""))

    _ak_name = "sgd_step"

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0,
                 nesterov=False, *, maximize=False, foreach=None, differentiable=False,
                 fused=None) -> None:
        self._reject_unsupported(lr=lr, weight_decay=weight_decay, differentiable=differentiable)
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov, maximize=maximize,
                        foreach=foreach, differentiable=differentiable, fused=fused)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, defaults)

    def _state_names(self, group):
        return {"momentum_buffers": "momentum_buffer"} if group["momentum"] != 0 else {}

    def _hyper(self, group):
        return {k: group[k] for k in ("lr", "momentum", "dampening", "nesterov",
                                      "weight_decay", "maximize")}

    def _step_listings(self, group, params) -> None:
        # torch.optim.SGD reads the buffers before its loop: in the step that creates a
        # parameter's buffer, every listing of that parameter takes a first step.
        rounds = _listings(params)
        fresh = frozenset()
        if len(rounds) > 1 and group["momentum"] != 0:
            fresh = {id(p) for p in params if "momentum_buffer" not in self.state.get(p, {})}
        for params_once in rounds:
            self._group_step(group, params_once, fresh)

    def _group_step(self, group, params, fresh=frozenset()) -> None:
        # No step count: a param without a buffer takes a first step (buffer = its update
        # direction, as torch's clone of the gradient), which sgd_step does for step=1.
        if group["momentum"] == 0:
            for (device, _), idx in _buckets([(p.device, p.dtype) for p in params]):
                sub = [params[i] for i in idx]
                self._call(group, device, 1, sub, [p.grad for p in sub], {})
                torch.autograd.graph.increment_version(sub)
            return
        bufs = [None if id(p) in fresh else self.state[p].get("momentum_buffer") for p in params]
        keys = [(p.device, p.dtype, b is None) for p, b in zip(params, bufs)]
        for (device, _, first), idx in _buckets(keys):
            sub = [params[i] for i in idx]
            sub_bufs = ([torch.zeros_like(p, memory_format=torch.preserve_format) for p in sub]
                        if first else [bufs[i] for i in idx])
            self._call(group, device, 1 if first else 2, sub, [p.grad for p in sub],
                       {"momentum_buffers": sub_bufs})
            for p, b in zip(sub, sub_bufs):
                self.state[p]["momentum_buffer"] = b
            torch.autograd.graph.increment_version(sub)


class Adagrad(_FusedOptimizer):
    __doc__ = ("""``torch.optim.Adagrad`` running :func:`adlkernels.optim.adagrad_step`.
    State ``step`` and ``sum`` (filled with ``initial_accumulator_value``), created for
    every parameter by the constructor, as torch does.
""" + _FUSED_NOTE.format(capturable=""))

    _ak_name = "adagrad_step"

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0,
                 initial_accumulator_value=0, eps=1e-10, foreach=None, *, maximize=False,
                 differentiable=False, fused=None) -> None:
        self._reject_unsupported(lr=lr, differentiable=differentiable)
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= lr_decay:
            raise ValueError(f"Invalid lr_decay value: {lr_decay}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if not 0.0 <= initial_accumulator_value:
            raise ValueError(
                f"Invalid initial_accumulator_value value: {initial_accumulator_value}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        defaults = dict(lr=lr, lr_decay=lr_decay, eps=eps, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, foreach=foreach,
                        maximize=maximize, differentiable=differentiable, fused=fused)
        super().__init__(params, defaults)
        # torch.optim.Adagrad creates the state of every parameter here, with the
        # constructor's initial_accumulator_value (a group's own value is not used)
        for group in self.param_groups:
            for p in group["params"]:
                self._init_state(group, p, self.state[p])

    def _init_state(self, group, p, state):
        state["step"] = _new_step()
        # as torch: the optimizer's default, not the group's
        state["sum"] = torch.full_like(p, self.defaults["initial_accumulator_value"],
                                       memory_format=torch.preserve_format)

    def _state_names(self, group):
        return {"state_sums": "sum"}

    def _hyper(self, group):
        return {k: group[k] for k in ("lr", "lr_decay", "weight_decay", "eps", "maximize")}


class RMSprop(_FusedOptimizer):
    __doc__ = ("""``torch.optim.RMSprop`` (centered, momentum) running
    :func:`adlkernels.optim.rmsprop_step`. State: ``step``, ``square_avg``,
    ``momentum_buffer`` (momentum > 0), ``grad_avg`` (centered).
""" + _FUSED_NOTE.format(capturable=" and ``capturable=True``"))

    _ak_name = "rmsprop_step"

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
                 centered=False, capturable=False, foreach=None, maximize=False,
                 differentiable=False) -> None:
        self._reject_unsupported(lr=lr, differentiable=differentiable, capturable=capturable)
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= momentum:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if not 0.0 <= alpha:
            raise ValueError(f"Invalid alpha value: {alpha}")
        defaults = dict(lr=lr, momentum=momentum, alpha=alpha, eps=eps, centered=centered,
                        weight_decay=weight_decay, capturable=capturable, foreach=foreach,
                        maximize=maximize, differentiable=differentiable)
        super().__init__(params, defaults)

    def _init_state(self, group, p, state):
        state["step"] = _new_step()
        state["square_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        if group["momentum"] > 0:
            state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        if group["centered"]:
            state["grad_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _state_names(self, group):
        names = {"square_avgs": "square_avg"}
        if group["momentum"] > 0:
            names["momentum_buffers"] = "momentum_buffer"
        if group["centered"]:
            names["grad_avgs"] = "grad_avg"
        return names

    def _hyper(self, group):
        return {k: group[k] for k in ("lr", "alpha", "eps", "weight_decay", "momentum",
                                      "centered", "maximize")}


class Adam(_FusedOptimizer):
    __doc__ = ("""``torch.optim.Adam`` (amsgrad, maximize, L2 or decoupled weight decay)
    running :func:`adlkernels.optim.adam_step`. State: ``step`` (a 0-d CPU float tensor),
    ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq`` (amsgrad).
""" + _FUSED_NOTE.format(capturable=" and ``capturable=True``"))

    _ak_name = "adam_step"

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 amsgrad=False, *, foreach=None, maximize=False, capturable=False,
                 differentiable=False, fused=None, decoupled_weight_decay=False) -> None:
        self._check_adam_args(lr, betas, eps, weight_decay, capturable, differentiable)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        amsgrad=amsgrad, maximize=maximize, foreach=foreach,
                        capturable=capturable, differentiable=differentiable, fused=fused,
                        decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    @classmethod
    def _check_adam_args(cls, lr, betas, eps, weight_decay, capturable, differentiable):
        cls._reject_unsupported(lr=lr, weight_decay=weight_decay, capturable=capturable,
                                differentiable=differentiable,
                                **{f"betas[{i}]": b for i, b in enumerate(betas)})
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= betas[0] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
        if not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if not (isinstance(betas[0], float) and isinstance(betas[1], float)):
            raise ValueError("betas must be either both floats or both Tensors")

    def _init_state(self, group, p, state):
        state["step"] = _new_step()
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)

    def _state_names(self, group):
        names = {"exp_avgs": "exp_avg", "exp_avg_sqs": "exp_avg_sq"}
        if group["amsgrad"]:
            names["max_exp_avg_sqs"] = "max_exp_avg_sq"
        return names

    def _hyper(self, group):
        beta1, beta2 = group["betas"]
        return dict(lr=group["lr"], beta1=beta1, beta2=beta2, eps=group["eps"],
                    weight_decay=group["weight_decay"],
                    decoupled_weight_decay=group["decoupled_weight_decay"],
                    amsgrad=group["amsgrad"], maximize=group["maximize"])


class AdamW(Adam):
    __doc__ = ("""``torch.optim.AdamW``: Adam with decoupled weight decay (default 0.01),
    running :func:`adlkernels.optim.adam_step`; state as :class:`Adam`.
""" + _FUSED_NOTE.format(capturable=" and ``capturable=True``"))

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, *, maximize=False, foreach=None, capturable=False,
                 differentiable=False, fused=None) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach,
                         maximize=maximize, capturable=capturable,
                         differentiable=differentiable, fused=fused,
                         decoupled_weight_decay=True)

    def __setstate__(self, state):
        super().__setstate__(state)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True
