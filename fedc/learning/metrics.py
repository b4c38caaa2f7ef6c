"""Aggregating a model's metrics across clients: TFF's ``tff.learning.metrics``.

A model reports *unfinalized* metrics — per metric name, the list of its
variables' values on a client (a Keras accuracy's ``[total, count]``) — and
*finalizers* turning such a list into the metric's value. An aggregator is a
function ``(metric_finalizers, local_unfinalized_metrics_type) ->`` a fedc
computation from the clients' unfinalized metrics to the finalized metrics
at the server; the learning algorithms take one as ``metrics_aggregator``.
"""

from __future__ import annotations

import collections
from typing import Callable

import numpy as np

import fedc
from fedc import FedcTypeError, FedcValueError

__all__ = ["DEFAULT_SECURE_LOWER_BOUND", "DEFAULT_SECURE_UPPER_BOUND", "secure_sum_then_finalize",
           "sum_then_finalize"]


def _checked(metric_finalizers, local_unfinalized_metrics_type, what: str):
    """(the metrics type, the finalizers) once both are checked against each other."""
    if not isinstance(metric_finalizers, collections.abc.Mapping):
        raise FedcTypeError(f"metric_finalizers is a dict of metric name to finalizer, "
                            f"got {type(metric_finalizers).__name__}")
    for name, finalizer in metric_finalizers.items():
        if not callable(finalizer):
            raise FedcTypeError(f"the finalizer of metric {name!r} is not callable")
    if local_unfinalized_metrics_type is None:
        raise FedcValueError(f"{what} needs local_unfinalized_metrics_type, the type of one client's "
                             "unfinalized metrics")
    metrics_type = fedc.to_type(local_unfinalized_metrics_type)
    names = list(metrics_type.names()) if isinstance(metrics_type, fedc.StructType) else None
    if names != list(metric_finalizers):
        raise FedcValueError(f"the unfinalized metrics are named {names}, the finalizers "
                             f"{list(metric_finalizers)}; they must be the same, in the same order")
    finalizers: dict[str, Callable] = dict(metric_finalizers)
    return metrics_type, finalizers


def sum_then_finalize(metric_finalizers: dict, local_unfinalized_metrics_type=None) -> fedc.Computation:
    """Sums the clients' unfinalized metrics (``federated_sum``), then finalizes each at the server.

    ``local_unfinalized_metrics_type`` is the type of one client's
    unfinalized metrics, ``<name=<…>, …>`` (its names must be those of
    ``metric_finalizers``, in order).
    """
    metrics_type, finalizers = _checked(metric_finalizers, local_unfinalized_metrics_type, "sum_then_finalize")

    @fedc.tf_computation(metrics_type, autograph=False)
    def finalize(unfinalized):
        return collections.OrderedDict((k, f(list(unfinalized[k]))) for k, f in finalizers.items())

    @fedc.federated_computation(fedc.FederatedType(metrics_type, fedc.CLIENTS))
    def aggregate(unfinalized):
        return fedc.federated_map(finalize, fedc.federated_sum(unfinalized))

    return aggregate


# TFF's defaults: a power of two minus one, so that floats holding integers (counts) encode exactly.
DEFAULT_SECURE_LOWER_BOUND = 0
DEFAULT_SECURE_UPPER_BOUND = 2 ** 20 - 1


def secure_sum_then_finalize(metric_finalizers: dict, local_unfinalized_metrics_type=None,
                             metric_value_ranges=None) -> fedc.Computation:
    """Sums the clients' unfinalized metrics by secure aggregation, then finalizes each at the server.

    Each tensor of the metrics is clipped into a range — by default
    ``[0, 2**20 - 1]`` — and summed with :class:`fedc.aggregators.SecureSumFactory`
    (floats quantized to 32 bits). ``metric_value_ranges`` may give ranges as
    a partial tree of the metrics' structure: per metric name a ``(lower,
    upper)`` pair (for all its tensors) or a list with a pair or ``None`` per
    tensor; what is left out keeps the default. Tensors of the same range and
    dtype are summed by one secure sum. The result is the finalized metrics
    with, first, ``secure_sum_measurements``: per group (named
    ``<dtype>_<lower>_to_<upper>``), the factory's measurements (how many
    clients were clipped, and the thresholds).
    """
    from fedc import aggregators

    metrics_type, finalizers = _checked(metric_finalizers, local_unfinalized_metrics_type,
                                        "secure_sum_then_finalize")
    leaves = _tensor_leaves(metrics_type)
    ranges = _leaf_ranges(metrics_type, metric_value_ranges, "metric_value_ranges")
    groups: dict[str, list[int]] = {}  # group name -> indices of the leaves it sums
    bounds: dict[str, tuple] = {}
    for index, (leaf, (lower, upper)) in enumerate(zip(leaves, ranges)):
        integer = np.dtype(leaf.dtype).kind in "iu"
        lower, upper = (int(lower), int(upper)) if integer else (float(lower), float(upper))
        if integer and (lower != ranges[index][0] or upper != ranges[index][1]):
            raise FedcValueError(f"metric_value_ranges: the range {ranges[index]} of an integer metric tensor "
                                 "must be integers")
        key = f"{np.dtype(leaf.dtype).name}_{_token(lower)}_to_{_token(upper)}"
        groups.setdefault(key, []).append(index)
        bounds[key] = (lower, upper)
    processes = {key: aggregators.SecureSumFactory(upper, lower).create(
        fedc.StructType([leaves[i] for i in indices])) for key, indices in groups.items()
        for lower, upper in [bounds[key]]}
    def selector(indices: list[int]) -> fedc.Computation:
        @fedc.tf_computation(metrics_type, autograph=False)
        def select(unfinalized):
            flat = _flat(unfinalized)
            return tuple(flat[i] for i in indices)

        return select

    selectors = {key: selector(indices) for key, indices in groups.items()}

    sums_type = fedc.StructType([(key, processes[key].next.type_signature.result["result"].member)
                                 for key in groups])
    measurements_type = fedc.StructType([(key, processes[key].next.type_signature.result["measurements"].member)
                                         for key in groups])

    @fedc.tf_computation(sums_type, measurements_type, autograph=False)
    def finalize(sums, measurements):
        flat = [None] * len(leaves)
        for key, indices in groups.items():
            for i, value in zip(indices, sums[key]):
                flat[i] = value
        unfinalized = _unflatten(metrics_type, iter(flat))
        finalized = collections.OrderedDict(secure_sum_measurements=collections.OrderedDict(
            (key, collections.OrderedDict(measurements[key])) for key in groups))
        for name, f in finalizers.items():
            finalized[name] = f(list(unfinalized[name]))
        return finalized

    @fedc.federated_computation(fedc.FederatedType(metrics_type, fedc.CLIENTS))
    def aggregate(unfinalized):
        sums, measurements = collections.OrderedDict(), collections.OrderedDict()
        for key, process in processes.items():
            output = process.next(process.initialize(), fedc.federated_map(selectors[key], unfinalized))
            sums[key], measurements[key] = output.result, output.measurements
        return fedc.federated_map(finalize, (fedc.federated_zip(sums), fedc.federated_zip(measurements)))

    return aggregate


def _tensor_leaves(t) -> list:
    if isinstance(t, fedc.StructType):
        return [leaf for e in t for leaf in _tensor_leaves(e)]
    if not isinstance(t, fedc.TensorType) or np.dtype(t.dtype).kind not in "iuf":
        raise FedcTypeError(f"secure_sum_then_finalize: metrics are numbers, but the metrics have {t}")
    return [t]


def _flat(value) -> list:
    if isinstance(value, collections.abc.Mapping):
        return [leaf for v in value.values() for leaf in _flat(v)]
    if isinstance(value, (list, tuple)):
        return [leaf for v in value for leaf in _flat(v)]
    return [value]


def _unflatten(t, flat):
    if isinstance(t, fedc.StructType):
        parts = [_unflatten(e, flat) for e in t]
        names = t.names()
        if names and all(n is not None for n in names):
            return collections.OrderedDict(zip(names, parts))
        return list(parts)
    return next(flat)


def _is_range(value) -> bool:
    return (isinstance(value, (tuple, list)) and len(value) == 2
            and all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in value))


def _leaf_ranges(t, given, where: str) -> list:
    """A ``(lower, upper)`` per tensor leaf of ``t``, from the partial tree ``given`` (defaults elsewhere)."""
    count = len(_tensor_leaves(t))
    if given is None:
        return [(DEFAULT_SECURE_LOWER_BOUND, DEFAULT_SECURE_UPPER_BOUND)] * count
    if _is_range(given):
        lower, upper = given
        if not (np.isfinite(lower) and np.isfinite(upper) and lower < upper):
            raise FedcValueError(f"{where}: a range is (lower, upper) with lower < upper, both finite; got {given}")
        return [(lower, upper)] * count
    if not isinstance(t, fedc.StructType):
        raise FedcTypeError(f"{where}: expected a (lower, upper) pair or None for a {t} tensor, got {given!r}")
    names = t.names()
    if isinstance(given, collections.abc.Mapping):
        unknown = sorted(set(given) - set(n for n in names if n is not None))
        if unknown:
            raise FedcValueError(f"{where}: no metric named {', '.join(map(repr, unknown))} (the metrics are "
                                 f"{[n for n in names if n is not None]})")
        parts = [given.get(n) for n in names]
    elif isinstance(given, (list, tuple)) and len(given) == len(t):
        parts = list(given)
    else:
        raise FedcTypeError(f"{where}: expected a dict of metric name to range, a list of {len(t)}, a (lower, upper) "
                            f"pair or None for {t}, got {given!r}")
    return [r for e, part, name in zip(t, parts, names)
            for r in _leaf_ranges(e, part, f"{where}[{name!r}]" if name is not None else where)]


def _token(number) -> str:
    """A number as part of a name: 0.5 -> 0p5, -3 -> minus3, 1e+20 -> 1e20."""
    text = repr(number).replace("+", "")
    return text.replace("-", "minus").replace(".", "p")
