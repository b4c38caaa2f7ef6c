"""Functional optimizers: state in, state out — TFF's ``tff.learning.optimizers``.

An :class:`Optimizer` keeps nothing between calls: ``initialize(specs)``
gives its state (hyperparameters and, per weight, its slots), and
``next(state, weights, gradients)`` gives the new state and the new weights.
So an optimizer is usable inside any ``tf_computation`` — a client's local
steps, the server's update — and its state is an ordinary fedc value
(``<learning_rate=float32>@SERVER``) that travels and is checkpointed like the
model.

The builders, their defaults, state keys (in order) and update rules are
TFF 0.87's; a weight whose gradient is ``None`` is left as it is.
Hyperparameters are float32 and step counters int32 in the state, as TFF's
types print them. The math per weight ``w`` with gradient ``g`` (``t`` the
step, counted from 1):

* ``build_sgdm``: ``w -= lr·g``; with momentum ``m``: ``a = m·a + g``, ``w -= lr·a``.
* ``build_adam``: ``a += (g − a)(1 − β1)``, ``p += (g² − p)(1 − β2)``,
  ``w -= lr·√(1 − β2ᵗ)/(1 − β1ᵗ) · a/(√p + ε)``.
* ``build_adamw``: Adam's step plus decoupled decay, ``w -= lr·(… + λ·w)``.
* ``build_yogi``: Adam with ``p += (1 − β2)·sign(g² − p)·g²``, ``p`` starting at
  ``initial_preconditioner_value``.
* ``build_adagrad``: ``p += g²`` (from ``initial_preconditioner_value``), ``w -= lr·g/√(p + ε)``.
* ``build_rmsprop``: ``p += (g² − p)(1 − decay)``, ``w -= lr·g/(√p + ε)``.

:func:`schedule_learning_rate` wraps an optimizer so that its ``i``-th
``next`` uses ``schedule_fn(i)``.
"""

from __future__ import annotations

import abc
import collections
from typing import Any, Callable, Optional

import numpy as np

from fedc import FedcTypeError, FedcValueError

__all__ = [
    "Optimizer",
    "build_adagrad",
    "build_adam",
    "build_adamw",
    "build_rmsprop",
    "build_sgdm",
    "build_yogi",
    "from_keras_optimizer",
    "schedule_learning_rate",
]

LEARNING_RATE_KEY = "learning_rate"


def _tf():
    import tensorflow as tf

    return tf


class Optimizer(abc.ABC):
    """A functional optimizer (see the module docstring)."""

    @abc.abstractmethod
    def initialize(self, specs: Any) -> collections.OrderedDict:
        """The initial state, for weights of the ``tf.TensorSpec`` structure ``specs``."""

    @abc.abstractmethod
    def next(self, state: collections.OrderedDict, weights: Any, gradients: Any) -> tuple:
        """``(new state, new weights)`` after one step along ``gradients``."""

    def get_hparams(self, state: collections.OrderedDict) -> collections.OrderedDict:
        """The hyperparameters in ``state`` (a name → value dict)."""
        return collections.OrderedDict()

    def set_hparams(self, state: collections.OrderedDict, hparams: dict) -> collections.OrderedDict:
        """``state`` with the hyperparameters in ``hparams`` replaced (any subset of ``get_hparams``'s keys)."""
        return state


def _check(condition: bool, what: str) -> None:
    if not condition:
        raise FedcValueError(what)


def _number(value: Any, name: str, low: float = 0.0, high: Optional[float] = None) -> Any:
    """``value`` checked to lie in ``[low, high]`` (a symbolic tensor, known only when its graph runs, is not)."""
    tf = _tf()
    if tf.is_tensor(value) and not hasattr(value, "numpy"):
        return value  # symbolic: its value is known only when the graph runs
    try:
        number = float(np.asarray(value))
    except (TypeError, ValueError):
        raise FedcTypeError(f"{name} must be a number, got {type(value).__name__} {value!r}") from None
    bounds = f"[{low}, {high}]" if high is not None else f">= {low}"
    _check(number >= low and (high is None or number <= high) and not np.isnan(number),
           f"{name} must be {bounds}, got {number}")
    return value


def _f32(value: Any):
    tf = _tf()
    return tf.cast(value, tf.float32) if tf.is_tensor(value) else np.float32(value)


def _flat_pairs(weights: Any, other: Any, what: str) -> tuple[list, list]:
    tf = _tf()
    try:
        tf.nest.assert_same_structure(weights, other, check_types=False)
    except (ValueError, TypeError) as e:
        raise FedcValueError(f"the {what} do not have the structure of the weights: {str(e).splitlines()[0]}") from None
    flat_w, flat_o = tf.nest.flatten(weights), tf.nest.flatten(other)
    for i, (w, o) in enumerate(zip(flat_w, flat_o)):
        if o is None:
            continue
        if isinstance(o, tf.IndexedSlices):
            o = flat_o[i] = tf.convert_to_tensor(o)
        w = tf.convert_to_tensor(w)
        if not w.shape.is_compatible_with(o.shape) or w.dtype != o.dtype:
            raise FedcValueError(f"weight {i} is {w.dtype.name}{w.shape.as_list()} but its entry among the {what} "
                                 f"is {tf.as_dtype(o.dtype).name}{o.shape.as_list()}")
    return flat_w, flat_o


def _zeros(specs: Any, value: float = 0.0) -> Any:
    tf = _tf()
    return tf.nest.map_structure(lambda s: tf.fill(s.shape, tf.cast(value, s.dtype)), specs)


class _Slotted(Optimizer):
    """An optimizer whose state is hyperparameters, an optional step, and per-weight slots."""

    hparam_names: tuple = ()
    slot_names: tuple = ()  # each a structure like the weights
    counts_steps = False

    def __init__(self, **hparams):
        self._hparams = collections.OrderedDict((k, hparams[k]) for k in self.hparam_names)

    def _slot_initial(self, name: str) -> float:
        return 0.0

    def initialize(self, specs: Any) -> collections.OrderedDict:
        tf = _tf()
        specs = tf.nest.map_structure(lambda s: s if isinstance(s, tf.TensorSpec) else
                                      tf.TensorSpec(np.shape(s), getattr(s, "dtype", tf.float32)), specs)
        state = collections.OrderedDict((k, _f32(v)) for k, v in self._hparams.items())
        if self.counts_steps:
            state["step"] = np.int32(0)
        for name in self.slot_names:
            state[name] = _zeros(specs, self._slot_initial(name))
        return self._ordered(state)

    def _ordered(self, state: collections.OrderedDict) -> collections.OrderedDict:
        return state

    def get_hparams(self, state):
        return collections.OrderedDict((k, state[k]) for k in self.hparam_names)

    def set_hparams(self, state, hparams):
        unknown = [k for k in hparams if k not in state]
        if unknown:
            raise FedcValueError(f"set_hparams: {unknown[0]!r} is not in the optimizer's state "
                                 f"(its keys: {', '.join(state)})")
        new = collections.OrderedDict(state)
        new.update(hparams)
        return new

    def next(self, state, weights, gradients):
        tf = _tf()
        flat_w, flat_g = _flat_pairs(weights, gradients, "gradients")
        slots = {name: _flat_pairs(weights, state[name], name)[1] for name in self.slot_names}
        new_state = collections.OrderedDict(state)
        step = None
        if self.counts_steps:
            step = tf.cast(state["step"], tf.int32) + 1
            new_state["step"] = step
        shared = self._shared(state, step)
        new_w, new_slots = [], {name: [] for name in self.slot_names}
        for i, (w, g) in enumerate(zip(flat_w, flat_g)):
            if g is None:
                new_w.append(w)
                for name in self.slot_names:
                    new_slots[name].append(slots[name][i])
                continue
            leaf_slots = {name: slots[name][i] for name in self.slot_names}
            w2, updated = self._update(state, shared, tf.convert_to_tensor(w), g, leaf_slots)
            new_w.append(w2)
            for name in self.slot_names:
                new_slots[name].append(updated[name])
        for name in self.slot_names:
            new_state[name] = tf.nest.pack_sequence_as(weights, new_slots[name])
        return new_state, tf.nest.pack_sequence_as(weights, new_w)

    def _shared(self, state, step) -> dict:
        """Values computed once per step for every weight (bias corrections)."""
        return {}

    @abc.abstractmethod
    def _update(self, state, shared: dict, w, g, slots: dict) -> tuple:
        """``(new weight, {slot name: new slot})`` for one weight."""


def _as(x, like):
    tf = _tf()
    return tf.cast(x, like.dtype)


class _SGDM(_Slotted):
    def __init__(self, learning_rate, momentum):
        self.hparam_names = ("learning_rate", "momentum") if momentum else ("learning_rate",)
        self.slot_names = ("accumulator",) if momentum else ()
        super().__init__(learning_rate=learning_rate, momentum=momentum)

    def _update(self, state, shared, w, g, slots):
        lr = _as(state["learning_rate"], g)
        if "accumulator" not in slots:
            return w - lr * g, {}
        a = _as(state["momentum"], g) * slots["accumulator"] + g
        return w - lr * a, {"accumulator": a}


def build_sgdm(learning_rate: float = 0.01, momentum: Optional[float] = None) -> Optimizer:
    """Gradient descent, with momentum if ``momentum`` is given (and not 0)."""
    _number(learning_rate, "learning_rate")
    if momentum:
        _number(momentum, "momentum", 0.0, 1.0)
    return _SGDM(learning_rate, momentum if momentum else None)


class _Adam(_Slotted):
    hparam_names = ("learning_rate", "beta_1", "beta_2", "epsilon")
    slot_names = ("accumulator", "preconditioner")
    counts_steps = True

    def _shared(self, state, step):
        tf = _tf()
        t = tf.cast(step, tf.float32)
        b1, b2 = tf.cast(state["beta_1"], tf.float32), tf.cast(state["beta_2"], tf.float32)
        return {"correction": tf.sqrt(1.0 - tf.pow(b2, t)) / (1.0 - tf.pow(b1, t))}

    def _moments(self, state, g, slots):
        a = slots["accumulator"] + (g - slots["accumulator"]) * (1.0 - _as(state["beta_1"], g))
        p = slots["preconditioner"] + (_tf().square(g) - slots["preconditioner"]) * (1.0 - _as(state["beta_2"], g))
        return a, p

    def _update(self, state, shared, w, g, slots):
        a, p = self._moments(state, g, slots)
        lr = _as(state["learning_rate"], g) * _as(shared["correction"], g)
        return w - lr * a / (_tf().sqrt(p) + _as(state["epsilon"], g)), {"accumulator": a, "preconditioner": p}


def _check_betas(beta_1, beta_2, epsilon):
    _number(beta_1, "beta_1", 0.0, 1.0)
    _number(beta_2, "beta_2", 0.0, 1.0)
    _number(epsilon, "epsilon")


def build_adam(learning_rate: float, beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7) -> Optimizer:
    """Adam (Kingma and Ba, 2015), bias-corrected."""
    _number(learning_rate, "learning_rate")
    _check_betas(beta_1, beta_2, epsilon)
    return _Adam(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon)


class _AdamW(_Adam):
    hparam_names = ("learning_rate", "beta_1", "beta_2", "epsilon", "weight_decay")

    def _ordered(self, state):
        # TFF's order: weight_decay after the slots.
        decay = state.pop("weight_decay")
        state["weight_decay"] = decay
        return state

    def _update(self, state, shared, w, g, slots):
        a, p = self._moments(state, g, slots)
        step = _as(shared["correction"], g) * a / (_tf().sqrt(p) + _as(state["epsilon"], g))
        new_w = w - _as(state["learning_rate"], g) * (step + _as(state["weight_decay"], g) * w)
        return new_w, {"accumulator": a, "preconditioner": p}


def build_adamw(learning_rate: float, beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-7,
                weight_decay: float = 0.004) -> Optimizer:
    """AdamW (Loshchilov and Hutter, 2019): Adam with decoupled weight decay."""
    _number(learning_rate, "learning_rate")
    _check_betas(beta_1, beta_2, epsilon)
    _number(weight_decay, "weight_decay")
    return _AdamW(learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
                  weight_decay=weight_decay)


class _Yogi(_Adam):
    def __init__(self, initial_preconditioner_value, **hparams):
        self._initial = initial_preconditioner_value
        super().__init__(**hparams)

    def _slot_initial(self, name):
        return self._initial if name == "preconditioner" else 0.0

    def _moments(self, state, g, slots):
        tf = _tf()
        a = slots["accumulator"] + (g - slots["accumulator"]) * (1.0 - _as(state["beta_1"], g))
        g2 = tf.square(g)
        p = slots["preconditioner"] + (1.0 - _as(state["beta_2"], g)) * tf.sign(g2 - slots["preconditioner"]) * g2
        return a, p


def build_yogi(learning_rate: float, beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-3,
               initial_preconditioner_value: float = 1e-6) -> Optimizer:
    """Yogi (Zaheer et al., 2018): Adam whose second moment moves additively."""
    _number(learning_rate, "learning_rate")
    _check_betas(beta_1, beta_2, epsilon)
    _number(initial_preconditioner_value, "initial_preconditioner_value")
    return _Yogi(initial_preconditioner_value, learning_rate=learning_rate, beta_1=beta_1, beta_2=beta_2,
                 epsilon=epsilon)


class _Adagrad(_Slotted):
    hparam_names = ("learning_rate", "epsilon")
    slot_names = ("preconditioner",)

    def __init__(self, initial_preconditioner_value, **hparams):
        self._initial = initial_preconditioner_value
        super().__init__(**hparams)

    def _slot_initial(self, name):
        return self._initial

    def _update(self, state, shared, w, g, slots):
        p = slots["preconditioner"] + _tf().square(g)
        return w - _as(state["learning_rate"], g) * g / _tf().sqrt(p + _as(state["epsilon"], g)), {"preconditioner": p}


def build_adagrad(learning_rate: float, initial_preconditioner_value: float = 0.1,
                  epsilon: float = 1e-7) -> Optimizer:
    """Adagrad (Duchi et al., 2011)."""
    _number(learning_rate, "learning_rate")
    _number(initial_preconditioner_value, "initial_preconditioner_value")
    _number(epsilon, "epsilon")
    return _Adagrad(initial_preconditioner_value, learning_rate=learning_rate, epsilon=epsilon)


class _RMSprop(_Slotted):
    hparam_names = ("learning_rate", "decay", "epsilon")
    slot_names = ("preconditioner",)

    def _update(self, state, shared, w, g, slots):
        p = slots["preconditioner"] + (_tf().square(g) - slots["preconditioner"]) * (1.0 - _as(state["decay"], g))
        return w - _as(state["learning_rate"], g) * g / (_tf().sqrt(p) + _as(state["epsilon"], g)), {"preconditioner": p}


def build_rmsprop(learning_rate: float, decay: float = 0.9, epsilon: float = 1e-7) -> Optimizer:
    """RMSprop (Hinton's lecture notes), without momentum."""
    _number(learning_rate, "learning_rate")
    _number(decay, "decay", 0.0, 1.0)
    _number(epsilon, "epsilon")
    return _RMSprop(learning_rate=learning_rate, decay=decay, epsilon=epsilon)


class _Scheduled(Optimizer):
    def __init__(self, optimizer: Optimizer, schedule_fn: Callable):
        self._inner = optimizer
        self._schedule = schedule_fn

    def _rate(self, round_num):
        return _f32(self._schedule(round_num))

    def initialize(self, specs):
        inner = self._inner.initialize(specs)
        if LEARNING_RATE_KEY not in inner:
            raise FedcValueError(f"schedule_learning_rate: the optimizer's state has no {LEARNING_RATE_KEY!r} "
                                 f"(its keys: {', '.join(inner)})")
        inner = collections.OrderedDict(inner)
        inner[LEARNING_RATE_KEY] = self._rate(np.int32(0))
        return collections.OrderedDict(round_num=np.int32(0), optimizer=inner)

    def next(self, state, weights, gradients):
        tf = _tf()
        inner, new_weights = self._inner.next(state["optimizer"], weights, gradients)
        round_num = tf.cast(state["round_num"], tf.int32) + 1
        inner = collections.OrderedDict(inner)
        inner[LEARNING_RATE_KEY] = self._rate(round_num)
        return collections.OrderedDict(round_num=round_num, optimizer=inner), new_weights


def schedule_learning_rate(optimizer: Optimizer, schedule_fn: Callable) -> Optimizer:
    """``optimizer`` whose learning rate on its ``i``-th step is ``schedule_fn(i)`` (``i`` an int32, from 0)."""
    if not isinstance(optimizer, Optimizer):
        raise FedcTypeError(f"schedule_learning_rate takes a fedc.learning.optimizers.Optimizer, "
                            f"got {type(optimizer).__name__}")
    if not callable(schedule_fn):
        raise FedcTypeError(f"schedule_fn must be callable, got {type(schedule_fn).__name__}")
    return _Scheduled(optimizer, schedule_fn)


# Keras optimizers, translated: Keras 3 on TensorFlow cannot step statelessly (its stateless_apply
# refuses the TensorFlow backend), so a Keras optimizer is read for its kind and hyperparameters and
# becomes the functional optimizer that takes the same steps (tested against Keras for each kind).
_KERAS_FEATURES = ("weight_decay", "clipnorm", "global_clipnorm", "clipvalue", "loss_scale_factor",
                   "gradient_accumulation_steps")


def is_keras_optimizer(value) -> bool:
    """Whether ``value`` is a Keras optimizer."""
    try:
        import keras
    except ImportError:
        return False
    return isinstance(value, keras.optimizers.Optimizer)


def from_keras_optimizer(optimizer) -> Optimizer:
    """The functional optimizer taking the same steps as a Keras 3 ``SGD``, ``Adam`` or ``Adagrad``.

    What Keras adds around the rule (weight decay, gradient clipping, EMA,
    learning-rate schedules, Nesterov, AMSGrad) is refused, naming it, rather
    than silently dropped.
    """
    import keras

    if not isinstance(optimizer, keras.optimizers.Optimizer):
        raise FedcTypeError(f"from_keras_optimizer takes a Keras optimizer, got {type(optimizer).__name__}")
    config = optimizer.get_config()
    kind = type(optimizer).__name__
    used = [k for k in _KERAS_FEATURES if config.get(k)] + (["use_ema"] if config.get("use_ema") else [])
    if not isinstance(config.get("learning_rate"), (int, float)):
        used.append("a learning-rate schedule")
    if kind == "SGD" and config.get("nesterov"):
        used.append("nesterov")
    if kind == "Adam" and config.get("amsgrad"):
        used.append("amsgrad")
    if used:
        raise FedcValueError(f"the Keras {kind} optimizer uses {', '.join(used)}, which fedc's functional optimizers "
                             "do not have; build one with fedc.learning.optimizers instead")
    rate = float(config["learning_rate"])
    if kind == "SGD":
        return build_sgdm(learning_rate=rate, momentum=float(config["momentum"]) or None)
    if kind == "Adam":
        return build_adam(rate, beta_1=float(config["beta_1"]), beta_2=float(config["beta_2"]),
                          epsilon=float(config["epsilon"]))
    if kind == "Adagrad":
        return build_adagrad(rate, initial_preconditioner_value=float(config["initial_accumulator_value"]),
                             epsilon=float(config["epsilon"]))
    raise FedcTypeError(f"fedc takes the Keras optimizers SGD, Adam and Adagrad (translated to fedc.learning.optimizers"
                        f"); for {kind}, build the optimizer with fedc.learning.optimizers")
