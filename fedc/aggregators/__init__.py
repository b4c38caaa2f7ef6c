"""Aggregation factories: TFF's ``tff.aggregators``, as fedc computations.

A factory's ``create(value_type)`` (unweighted) or ``create(value_type,
weight_type)`` (weighted) builds an :class:`AggregationProcess`:
``initialize()`` gives its state at the server, and ``next(state, value[,
weight])`` — the clients' values (and weights) in, a
:class:`MeasuredProcessOutput` ``(state, result, measurements)`` at the
server out. Factories compose as in TFF: ``MeanFactory`` sums its weighted
values and its weights with inner factories, ``clipping_factory`` and
``zeroing_factory`` wrap any factory.

* :class:`SumFactory` — ``federated_sum``; state ``<>``, measurements ``<>``.
* :class:`SecureSumFactory` — the sum by secure aggregation
  (``federated_secure_sum_bitwidth``) of values clipped into a known range
  (floats quantized to 32 bits); state ``<>``, measurements
  ``<secure_upper_clipped_count,secure_lower_clipped_count,secure_upper_threshold,secure_lower_threshold>``.
* :class:`MeanFactory` — weighted mean, ``sum(w·v) / sum(w)``; state
  ``<value_sum_process=…,weight_sum_process=…>``, measurements
  ``<mean_value=…,mean_weight=…>`` (the inner factories' own).
* :class:`UnweightedMeanFactory` — ``sum(v) / count``; state
  ``<value_sum_process=…>``, measurements ``<mean_value=…>``.
* :func:`clipping_factory` — each client's value (floats) scaled down to L2
  norm at most ``clipping_norm`` (the norm over all its tensors), then the
  inner aggregation; state ``<clipping_norm=<>,inner_agg=…,clipped_count_agg=<>>``,
  measurements ``<clipping=…,clipping_norm=float32,clipped_count=int32>`` (TFF's names).
* :func:`zeroing_factory` — a value whose L2 norm exceeds ``zeroing_norm``
  (or is not finite: TFF lets NaN through) replaced by zeros; state
  ``<zeroing_norm=<>,inner_agg=…,zeroed_count_agg=<>>``, measurements
  ``<zeroing=…,zeroing_norm=float32,zeroed_count=int32>``.
"""

from __future__ import annotations

import abc
import collections
from typing import Any, NamedTuple, Optional

import numpy as np

import fedc
from fedc import FedcTypeError, FedcValueError

__all__ = [
    "AggregationProcess",
    "MeanFactory",
    "MeasuredProcessOutput",
    "SecureSumFactory",
    "SumFactory",
    "UnweightedAggregationFactory",
    "UnweightedMeanFactory",
    "WeightedAggregationFactory",
    "clipping_factory",
    "zeroing_factory",
]


def _tf():
    import tensorflow as tf

    return tf


class MeasuredProcessOutput(NamedTuple):
    """What an aggregation's ``next`` returns: the new ``state``, the ``result``, the ``measurements``."""

    state: Any
    result: Any
    measurements: Any


class AggregationProcess(fedc.templates.IterativeProcess):
    """``initialize() -> state@SERVER``; ``next(state, value@CLIENTS[, weight@CLIENTS]) -> MeasuredProcessOutput``."""

    def __init__(self, initialize_fn: fedc.Computation, next_fn: fedc.Computation):
        super().__init__(initialize_fn, next_fn)
        result = next_fn.type_signature.result
        if not isinstance(result, fedc.StructType) or list(result.names()) != ["state", "result", "measurements"]:
            raise FedcTypeError(f"AggregationProcess: next must return <state=…,result=…,measurements=…>, "
                                f"it returns {result}")

    @property
    def is_weighted(self) -> bool:
        return len(self.next.type_signature.parameter) == 3


class UnweightedAggregationFactory(abc.ABC):
    @abc.abstractmethod
    def create(self, value_type) -> AggregationProcess: ...


class WeightedAggregationFactory(abc.ABC):
    @abc.abstractmethod
    def create(self, value_type, weight_type) -> AggregationProcess: ...


def _member(t) -> "fedc.Type":
    t = fedc.to_type(t)
    if isinstance(t, fedc.FederatedType):
        raise FedcTypeError(f"an aggregation's value_type is the clients' member type, not a federated type ({t})")
    for leaf in _leaves(t):
        if not (isinstance(leaf, fedc.TensorType) and np.dtype(leaf.dtype).kind in "iuf"):
            raise FedcTypeError(f"aggregations take numbers: {t} has {leaf}")
    return t


def _leaves(t) -> list:
    if isinstance(t, fedc.StructType):
        return [leaf for e in t for leaf in _leaves(e)]
    return [t]


def _empty_at_server():
    return fedc.federated_value((), fedc.SERVER)


def _divide(value_type, divisor_type, no_nan: bool) -> fedc.Computation:
    """``total / divisor`` leaf by leaf (0 for a zero divisor when ``no_nan``; else IEEE's NaN or inf)."""
    tf = _tf()

    @fedc.tf_computation(value_type, divisor_type, autograph=False)
    def divide(total, divisor):
        def each(v):
            d = tf.cast(divisor, v.dtype)
            return tf.math.divide_no_nan(v, d) if no_nan else v / d

        return tf.nest.map_structure(each, total)

    return divide


class SumFactory(UnweightedAggregationFactory):
    """The sum of the clients' values (``federated_sum``)."""

    def create(self, value_type) -> AggregationProcess:
        value_type = _member(value_type)

        @fedc.federated_computation
        def initialize():
            return _empty_at_server()

        @fedc.federated_computation(initialize.type_signature.result, fedc.FederatedType(value_type, fedc.CLIENTS))
        def next_fn(state, value):
            return MeasuredProcessOutput(state=state, result=fedc.federated_sum(value),
                                         measurements=_empty_at_server())

        return AggregationProcess(initialize, next_fn)


def _check_inner(factory, what: str, weighted: bool = False):
    wanted = WeightedAggregationFactory if weighted else UnweightedAggregationFactory
    if factory is not None and not isinstance(factory, wanted):
        raise FedcTypeError(f"{what} must be an {wanted.__name__}, "
                            f"got {type(factory).__name__}")


class MeanFactory(WeightedAggregationFactory):
    """The weighted mean ``sum(weight · value) / sum(weight)``, its sums made by inner factories.

    ``no_nan_division=True`` makes the mean 0 when the weights sum to 0
    (otherwise the division gives what IEEE gives: NaN or inf).
    """

    def __init__(self, value_sum_factory: Optional[UnweightedAggregationFactory] = None,
                 weight_sum_factory: Optional[UnweightedAggregationFactory] = None, no_nan_division: bool = False):
        _check_inner(value_sum_factory, "value_sum_factory")
        _check_inner(weight_sum_factory, "weight_sum_factory")
        self._value_sum = value_sum_factory or SumFactory()
        self._weight_sum = weight_sum_factory or SumFactory()
        self._no_nan = bool(no_nan_division)

    def create(self, value_type, weight_type=np.float32) -> AggregationProcess:
        tf = _tf()
        value_type, weight_type = _member(value_type), _member(weight_type)
        if _leaves(weight_type) != [weight_type] or weight_type.shape != ():
            raise FedcTypeError(f"MeanFactory: a weight is a scalar, got {weight_type}")
        value_sum = self._value_sum.create(value_type)
        weight_sum = self._weight_sum.create(weight_type)

        @fedc.tf_computation(value_type, weight_type, autograph=False)
        def weigh(value, weight):
            return tf.nest.map_structure(lambda v: v * tf.cast(weight, v.dtype), value)

        divide = _divide(value_type, weight_type, self._no_nan)

        @fedc.federated_computation
        def initialize():
            return fedc.federated_zip(collections.OrderedDict(value_sum_process=value_sum.initialize(),
                                                              weight_sum_process=weight_sum.initialize()))

        @fedc.federated_computation(initialize.type_signature.result, fedc.FederatedType(value_type, fedc.CLIENTS),
                                    fedc.FederatedType(weight_type, fedc.CLIENTS))
        def next_fn(state, value, weight):
            values = value_sum.next(state.value_sum_process, fedc.federated_map(weigh, (value, weight)))
            weights = weight_sum.next(state.weight_sum_process, weight)
            return MeasuredProcessOutput(
                state=fedc.federated_zip(collections.OrderedDict(value_sum_process=values.state,
                                                                 weight_sum_process=weights.state)),
                result=fedc.federated_map(divide, fedc.federated_zip((values.result, weights.result))),
                measurements=fedc.federated_zip(collections.OrderedDict(mean_value=values.measurements,
                                                                        mean_weight=weights.measurements)))

        return AggregationProcess(initialize, next_fn)


class UnweightedMeanFactory(UnweightedAggregationFactory):
    """The mean ``sum(value) / number of clients``, its sum made by an inner factory."""

    def __init__(self, value_sum_factory: Optional[UnweightedAggregationFactory] = None,
                 count_sum_factory: Optional[UnweightedAggregationFactory] = None, no_nan_division: bool = False):
        _check_inner(value_sum_factory, "value_sum_factory")
        _check_inner(count_sum_factory, "count_sum_factory")
        self._value_sum = value_sum_factory or SumFactory()
        self._count_sum = count_sum_factory or SumFactory()
        self._no_nan = bool(no_nan_division)

    def create(self, value_type) -> AggregationProcess:
        tf = _tf()
        value_type = _member(value_type)
        value_sum = self._value_sum.create(value_type)
        count_sum = self._count_sum.create(fedc.TensorType(np.int32))

        @fedc.tf_computation(autograph=False)
        def one():
            return tf.constant(1, tf.int32)

        divide = _divide(value_type, fedc.TensorType(np.int32), self._no_nan)

        @fedc.federated_computation
        def initialize():
            return fedc.federated_zip(collections.OrderedDict(value_sum_process=value_sum.initialize()))

        @fedc.federated_computation(initialize.type_signature.result, fedc.FederatedType(value_type, fedc.CLIENTS))
        def next_fn(state, value):
            values = value_sum.next(state.value_sum_process, value)
            counts = count_sum.next(count_sum.initialize(), fedc.federated_eval(one, fedc.CLIENTS))
            return MeasuredProcessOutput(
                state=fedc.federated_zip(collections.OrderedDict(value_sum_process=values.state)),
                result=fedc.federated_map(divide, fedc.federated_zip((values.result, counts.result))),
                measurements=fedc.federated_zip(collections.OrderedDict(mean_value=values.measurements)))

        return AggregationProcess(initialize, next_fn)


def _single_dtype(t, what: str) -> np.dtype:
    dtypes = {np.dtype(leaf.dtype) for leaf in _leaves(t)}
    if len(dtypes) != 1:
        raise FedcTypeError(f"{what}: every tensor of the value must have one dtype, {t} has "
                            f"{', '.join(sorted(d.name for d in dtypes))}")
    return dtypes.pop()


_QUANTIZATION_LEVELS = 2 ** 32 - 1  # floats become integers in [0, 2**32 - 1] before the secure sum


class SecureSumFactory(UnweightedAggregationFactory):
    """The sum of the clients' values by secure aggregation (``federated_secure_sum_bitwidth``), as TFF's.

    The range must be known in advance: each client clips its value into
    ``[lower_bound_threshold, upper_bound_threshold]`` (``lower`` defaults to
    ``-upper``). Integer thresholds sum integer values: shifted to
    ``[0, upper - lower]``, summed with ``ceil(log2(upper - lower + 1))`` bits,
    shifted back at the server by ``lower`` times the number of clients (itself
    summed securely). Float thresholds sum float values: quantized uniformly to
    integers in ``[0, 2**32 - 1]`` (round to nearest), summed with 32 bits,
    decoded at the server (so the sum is exact to ``(upper - lower) / 2**32``
    per client). All the value's tensors must share one dtype. State ``<>``;
    measurements ``<secure_upper_clipped_count=int32,
    secure_lower_clipped_count=int32, secure_upper_threshold=T,
    secure_lower_threshold=T>`` (clients with some element above / below the
    range, counted securely too). TFF's adaptive thresholds (an
    ``EstimationProcess``) are not supported: give numbers.
    """

    def __init__(self, upper_bound_threshold, lower_bound_threshold=None):
        kinds = []
        for name, bound in (("upper_bound_threshold", upper_bound_threshold),
                            ("lower_bound_threshold", lower_bound_threshold)):
            if bound is None:
                continue
            if isinstance(bound, (bool, np.bool_)) or not isinstance(bound, (int, float, np.integer, np.floating)):
                raise FedcTypeError(f"SecureSumFactory: {name} must be an int or a float, got {bound!r} (fedc has no "
                                    "adaptive EstimationProcess thresholds)")
            if not np.isfinite(bound):
                raise FedcValueError(f"SecureSumFactory: {name} must be finite, got {bound}")
            kinds.append(isinstance(bound, (int, np.integer)))
        if len(set(kinds)) > 1:
            raise FedcTypeError(f"SecureSumFactory: upper_bound_threshold ({upper_bound_threshold!r}) and "
                                f"lower_bound_threshold ({lower_bound_threshold!r}) must both be ints or both floats")
        self._integer = kinds[0]
        if lower_bound_threshold is None:
            if upper_bound_threshold <= 0:
                raise FedcValueError(f"SecureSumFactory: with only upper_bound_threshold, it bounds the absolute value "
                                     f"and must be positive, got {upper_bound_threshold}")
            lower_bound_threshold = -upper_bound_threshold
        elif upper_bound_threshold <= lower_bound_threshold:
            raise FedcValueError(f"SecureSumFactory: upper_bound_threshold ({upper_bound_threshold}) must be larger "
                                 f"than lower_bound_threshold ({lower_bound_threshold})")
        self._upper, self._lower = upper_bound_threshold, lower_bound_threshold
        if self._integer:
            span = int(upper_bound_threshold) - int(lower_bound_threshold)
            self._bitwidth = max(1, int(span).bit_length())  # ceil(log2(span + 1))
            if self._bitwidth > 62:
                raise FedcValueError(f"SecureSumFactory: the range [{lower_bound_threshold}, {upper_bound_threshold}] "
                                     f"needs {self._bitwidth} bits; at most 62 fit a secure sum of int64")
        else:
            self._bitwidth = 32

    def create(self, value_type) -> AggregationProcess:
        tf = _tf()
        value_type = _member(value_type)
        dtype = _single_dtype(value_type, "SecureSumFactory")
        if self._integer != (dtype.kind in "iu"):
            configured = "integer" if self._integer else "float"
            raise FedcTypeError(f"SecureSumFactory: its thresholds are {configured}s "
                                f"({self._lower}, {self._upper}), so it sums {configured} values; {value_type} "
                                f"has {dtype.name}")
        if self._integer:
            info = np.iinfo(dtype)
            if self._lower < info.min or self._upper > info.max:
                raise FedcValueError(f"SecureSumFactory: the range [{self._lower}, {self._upper}] does not fit "
                                     f"{dtype.name}")
        lower, upper, integer, bitwidth = self._lower, self._upper, self._integer, self._bitwidth
        # The integers that cross: the value's own dtype when it is wide enough, else int64.
        wire = tf.as_dtype(dtype) if integer and np.iinfo(dtype).bits > bitwidth else tf.int64

        @fedc.tf_computation(value_type, autograph=False)
        def encode(value):
            def each(v):
                clipped = tf.clip_by_value(v, tf.cast(lower, v.dtype), tf.cast(upper, v.dtype))
                if integer:
                    return tf.cast(clipped, wire) - tf.cast(lower, wire)
                unit = (tf.cast(clipped, tf.float64) - lower) / (float(upper) - float(lower))
                return tf.cast(tf.round(unit * _QUANTIZATION_LEVELS), tf.int64)

            flat = tf.nest.flatten(value)
            top = tf.reduce_max(tf.stack([tf.reduce_max(tf.cast(v, tf.float64)) for v in flat]))
            bottom = tf.reduce_min(tf.stack([tf.reduce_min(tf.cast(v, tf.float64)) for v in flat]))
            return (tf.nest.map_structure(each, value), tf.cast(top > float(upper), tf.int32),
                    tf.cast(bottom < float(lower), tf.int32), tf.constant(1, tf.int32))

        encoded_type = encode.type_signature.result[0]

        @fedc.tf_computation(encoded_type, fedc.TensorType(np.int32), autograph=False)
        def decode(total, count):
            def each(t, like):
                if integer:
                    return tf.cast(t + tf.cast(lower, t.dtype) * tf.cast(count, t.dtype), like)
                scale = (float(upper) - float(lower)) / _QUANTIZATION_LEVELS
                return tf.cast(tf.cast(t, tf.float64) * scale + float(lower) * tf.cast(count, tf.float64), like)

            return tf.nest.map_structure(lambda t: each(t, tf.as_dtype(dtype)), total)

        @fedc.tf_computation(autograph=False)
        def thresholds():
            return tf.constant(upper, tf.as_dtype(dtype)), tf.constant(lower, tf.as_dtype(dtype))

        @fedc.federated_computation
        def initialize():
            return _empty_at_server()

        @fedc.federated_computation(initialize.type_signature.result, fedc.FederatedType(value_type, fedc.CLIENTS))
        def next_fn(state, value):
            encoded = fedc.federated_map(encode, value)
            total = fedc.federated_secure_sum_bitwidth(encoded[0], bitwidth)
            count = fedc.federated_secure_sum_bitwidth(encoded[3], 1)
            bounds = fedc.federated_eval(thresholds, fedc.SERVER)
            measurements = collections.OrderedDict(
                secure_upper_clipped_count=fedc.federated_secure_sum_bitwidth(encoded[1], 1),
                secure_lower_clipped_count=fedc.federated_secure_sum_bitwidth(encoded[2], 1),
                secure_upper_threshold=bounds[0],
                secure_lower_threshold=bounds[1])
            return MeasuredProcessOutput(state=state, result=fedc.federated_map(decode, (total, count)),
                                         measurements=fedc.federated_zip(measurements))

        return AggregationProcess(initialize, next_fn)


class _NormFactory:
    """Clipping or zeroing by L2 norm in front of an inner factory (weighted or not, as the inner one is)."""

    def __init__(self, kind: str, norm: float, inner):
        if not isinstance(inner, (UnweightedAggregationFactory, WeightedAggregationFactory)):
            raise FedcTypeError(f"{kind}_factory: inner_agg_factory must be an aggregation factory, "
                                f"got {type(inner).__name__}")
        if not isinstance(norm, (int, float, np.floating)) or isinstance(norm, bool) or not norm > 0:
            raise FedcValueError(f"{kind}_factory: the norm must be a number > 0, got {norm!r}")
        self._kind = kind
        self._norm = float(norm)
        self._inner = inner

    def _processes(self, value_type, weight_type):
        tf = _tf()
        value_type = _member(value_type)
        for leaf in _leaves(value_type):
            if np.dtype(leaf.dtype).kind != "f":
                raise FedcTypeError(f"{self._kind}_factory: norms are of floating-point values; {value_type} has {leaf}")
        weighted = isinstance(self._inner, WeightedAggregationFactory)
        inner = self._inner.create(value_type, weight_type) if weighted else self._inner.create(value_type)
        norm, clip = self._norm, self._kind == "clipping"
        names = ("clipping_norm", "clipped_count") if clip else ("zeroing_norm", "zeroed_count")

        @fedc.tf_computation(value_type, autograph=False)
        def limit(value):
            leaves = [tf.cast(v, tf.float32) for v in tf.nest.flatten(value)]
            size = tf.linalg.global_norm(leaves) if leaves else tf.constant(0.0)
            if clip:
                scale = tf.where(size > norm, norm / size, 1.0)
                out = tf.nest.map_structure(lambda v: tf.cast(tf.cast(v, tf.float32) * scale, v.dtype), value)
                hit = size > norm
            else:
                hit = tf.logical_or(size > norm, tf.logical_not(tf.math.is_finite(size)))
                out = tf.nest.map_structure(lambda v: tf.where(hit, tf.zeros_like(v), v), value)
            return out, tf.cast(hit, tf.int32)

        @fedc.tf_computation(autograph=False)
        def the_norm():
            return tf.constant(norm, tf.float32)

        return inner, limit, the_norm, names, weighted, value_type

    def _build(self, value_type, weight_type=None) -> AggregationProcess:
        inner, limit, the_norm, names, weighted, value_type = self._processes(value_type, weight_type)
        kind = self._kind

        # TFF's state: the norm's (constant: <>), the inner aggregation's, and the count sum's (<>).
        state_names = (f"{kind}_norm", "inner_agg", names[1] + "_agg")

        @fedc.federated_computation
        def initialize():
            return fedc.federated_zip(collections.OrderedDict([(state_names[0], _empty_at_server()),
                                                               (state_names[1], inner.initialize()),
                                                               (state_names[2], _empty_at_server())]))

        def finish(state, limited_output, hits):
            measurements = collections.OrderedDict([(kind, limited_output.measurements),
                                                    (names[0], fedc.federated_eval(the_norm, fedc.SERVER)),
                                                    (names[1], fedc.federated_sum(hits))])
            new_state = collections.OrderedDict([(state_names[0], state[state_names[0]]),
                                                 (state_names[1], limited_output.state),
                                                 (state_names[2], state[state_names[2]])])
            return MeasuredProcessOutput(state=fedc.federated_zip(new_state), result=limited_output.result,
                                         measurements=fedc.federated_zip(measurements))

        value_at_clients = fedc.FederatedType(value_type, fedc.CLIENTS)
        if weighted:
            @fedc.federated_computation(initialize.type_signature.result, value_at_clients,
                                        fedc.FederatedType(inner.next.type_signature.parameter[2].member,
                                                           fedc.CLIENTS))
            def next_fn(state, value, weight):
                limited = fedc.federated_map(limit, value)
                return finish(state, inner.next(state.inner_agg, limited[0], weight), limited[1])
        else:
            @fedc.federated_computation(initialize.type_signature.result, value_at_clients)
            def next_fn(state, value):
                limited = fedc.federated_map(limit, value)
                return finish(state, inner.next(state.inner_agg, limited[0]), limited[1])

        return AggregationProcess(initialize, next_fn)


class _UnweightedNorm(_NormFactory, UnweightedAggregationFactory):
    def create(self, value_type) -> AggregationProcess:
        return self._build(value_type)


class _WeightedNorm(_NormFactory, WeightedAggregationFactory):
    def create(self, value_type, weight_type=np.float32) -> AggregationProcess:
        return self._build(value_type, weight_type)


def _norm_factory(kind: str, norm: float, inner):
    cls = _WeightedNorm if isinstance(inner, WeightedAggregationFactory) else _UnweightedNorm
    return cls(kind, norm, inner)


def clipping_factory(clipping_norm: float, inner_agg_factory) -> Any:
    """``inner_agg_factory`` of the clients' values scaled down to L2 norm at most ``clipping_norm``."""
    return _norm_factory("clipping", clipping_norm, inner_agg_factory)


def zeroing_factory(zeroing_norm: float, inner_agg_factory) -> Any:
    """``inner_agg_factory`` of the clients' values, those of L2 norm above ``zeroing_norm`` (or not finite) zeroed."""
    return _norm_factory("zeroing", zeroing_norm, inner_agg_factory)
