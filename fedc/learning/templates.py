"""The shapes of learning processes: TFF's ``tff.learning.templates``.

A :class:`LearningProcess` is an iterative process (``initialize``, ``next``)
whose state is a :class:`LearningAlgorithmState` at the server and whose
``next`` returns a :class:`LearningProcessOutput` ``(state, metrics)``; it also
has computations to read and replace the model weights and the
hyperparameters in a state. All of them are ordinary fedc computations.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import fedc
from fedc import FedcTypeError

__all__ = ["DistributionProcess", "LearningAlgorithmState", "LearningProcess", "LearningProcessOutput",
           "build_broadcast_process"]


class LearningAlgorithmState(NamedTuple):
    """The server state of a composed learning algorithm (TFF's field names and order)."""

    global_model_weights: Any
    distributor: Any
    client_work: Any
    aggregator: Any
    finalizer: Any


class LearningProcessOutput(NamedTuple):
    """What ``next`` returns: the new ``state`` and the round's ``metrics`` (``state, metrics = process.next(...)``)."""

    state: Any
    metrics: Any


class LearningProcess(fedc.templates.IterativeProcess):
    """An iterative process of learning, with computations to get and set the model weights and hyperparameters.

    ``get_model_weights(state)`` and ``set_model_weights(state, weights)`` are
    computations on the state's member value (not federated), as in TFF, so
    they can be called on ``process.initialize()``'s result directly;
    likewise ``get_hparams(state)`` and ``set_hparams(state, hparams)``.
    """

    def __init__(self, initialize_fn: fedc.Computation, next_fn: fedc.Computation,
                 get_model_weights: fedc.Computation, set_model_weights: fedc.Computation,
                 get_hparams_fn: Optional[fedc.Computation] = None, set_hparams_fn: Optional[fedc.Computation] = None):
        super().__init__(initialize_fn, next_fn)
        for name, fn in (("get_model_weights", get_model_weights), ("set_model_weights", set_model_weights),
                         ("get_hparams_fn", get_hparams_fn), ("set_hparams_fn", set_hparams_fn)):
            if fn is not None and not isinstance(fn, fedc.Computation):
                raise FedcTypeError(f"LearningProcess: {name} must be a fedc computation, got {fn!r}")
        result = next_fn.type_signature.result
        if not isinstance(result, fedc.StructType) or list(result.names())[:2] != ["state", "metrics"]:
            raise FedcTypeError(f"LearningProcess: next_fn must return <state=…,metrics=…>, it returns {result}")
        self._get_model_weights = get_model_weights
        self._set_model_weights = set_model_weights
        self._get_hparams = get_hparams_fn
        self._set_hparams = set_hparams_fn

    @property
    def get_model_weights(self) -> fedc.Computation:
        return self._get_model_weights

    @property
    def set_model_weights(self) -> fedc.Computation:
        return self._set_model_weights

    @property
    def get_hparams(self) -> Optional[fedc.Computation]:
        return self._get_hparams

    @property
    def set_hparams(self) -> Optional[fedc.Computation]:
        return self._set_hparams


class DistributionProcess(fedc.templates.IterativeProcess):
    """How a value at the server reaches the clients, with its own state: TFF's ``DistributionProcess``.

    ``initialize() -> state@SERVER``; ``next(state, value@SERVER) ->
    <state=…@SERVER, result={value}@CLIENTS, measurements=…@SERVER>``. The
    learning algorithms take one as ``model_distributor`` for the model weights.
    """

    def __init__(self, initialize_fn: fedc.Computation, next_fn: fedc.Computation):
        super().__init__(initialize_fn, next_fn)
        t = next_fn.type_signature
        parameter, result = t.parameter, t.result
        if not (isinstance(parameter, fedc.StructType) and len(parameter) == 2
                and isinstance(parameter[1], fedc.FederatedType) and parameter[1].placement == fedc.SERVER):
            raise FedcTypeError(f"DistributionProcess: next takes (state, value@SERVER), its type is {t}")
        if not (isinstance(result, fedc.StructType) and list(result.names()) == ["state", "result", "measurements"]
                and isinstance(result["result"], fedc.FederatedType) and result["result"].placement == fedc.CLIENTS):
            raise FedcTypeError(f"DistributionProcess: next returns <state=…,result=…@CLIENTS,measurements=…>, "
                                f"its type is {t}")

    @property
    def value_type(self) -> fedc.Type:
        """The type of the value it distributes (at the server)."""
        return self.next.type_signature.parameter[1].member


def build_broadcast_process(value_type) -> DistributionProcess:
    """The plain broadcast (``federated_broadcast``) as a process: state ``<>``, measurements ``<>``."""
    from fedc.aggregators import MeasuredProcessOutput

    value_type = fedc.to_type(value_type)
    if isinstance(value_type, fedc.FederatedType):
        raise FedcTypeError(f"build_broadcast_process takes the member type of the value, not {value_type}")

    @fedc.federated_computation
    def initialize():
        return fedc.federated_value((), fedc.SERVER)

    @fedc.federated_computation(initialize.type_signature.result, fedc.FederatedType(value_type, fedc.SERVER))
    def next_fn(state, value):
        return MeasuredProcessOutput(state=state, result=fedc.federated_broadcast(value),
                                     measurements=fedc.federated_value((), fedc.SERVER))

    return DistributionProcess(initialize, next_fn)
