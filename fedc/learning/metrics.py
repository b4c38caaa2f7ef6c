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

import fedc
from fedc import FedcTypeError, FedcValueError

__all__ = ["sum_then_finalize"]


def sum_then_finalize(metric_finalizers: dict, local_unfinalized_metrics_type=None) -> fedc.Computation:
    """Sums the clients' unfinalized metrics (``federated_sum``), then finalizes each at the server.

    ``local_unfinalized_metrics_type`` is the type of one client's
    unfinalized metrics, ``<name=<…>, …>`` (its names must be those of
    ``metric_finalizers``, in order).
    """
    if not isinstance(metric_finalizers, collections.abc.Mapping):
        raise FedcTypeError(f"metric_finalizers is a dict of metric name to finalizer, "
                            f"got {type(metric_finalizers).__name__}")
    for name, finalizer in metric_finalizers.items():
        if not callable(finalizer):
            raise FedcTypeError(f"the finalizer of metric {name!r} is not callable")
    if local_unfinalized_metrics_type is None:
        raise FedcValueError("sum_then_finalize needs local_unfinalized_metrics_type, the type of one client's "
                             "unfinalized metrics")
    metrics_type = fedc.to_type(local_unfinalized_metrics_type)
    names = list(metrics_type.names()) if isinstance(metrics_type, fedc.StructType) else None
    if names != list(metric_finalizers):
        raise FedcValueError(f"the unfinalized metrics are named {names}, the finalizers "
                             f"{list(metric_finalizers)}; they must be the same, in the same order")
    finalizers: dict[str, Callable] = dict(metric_finalizers)

    @fedc.tf_computation(metrics_type, autograph=False)
    def finalize(unfinalized):
        return collections.OrderedDict((k, f(list(unfinalized[k]))) for k, f in finalizers.items())

    @fedc.federated_computation(fedc.FederatedType(metrics_type, fedc.CLIENTS))
    def aggregate(unfinalized):
        return fedc.federated_map(finalize, fedc.federated_sum(unfinalized))

    return aggregate
