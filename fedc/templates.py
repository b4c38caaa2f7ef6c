"""Templates of federated algorithms: ``IterativeProcess``."""

from __future__ import annotations

from fedc.computation import Computation
from fedc.errors import FedcTypeError
from fedc.types import StructType, Type

__all__ = ["IterativeProcess"]


class IterativeProcess:
    """A process of rounds: ``state = initialize()``, then ``state = next(state, ...)`` repeatedly.

    ``initialize_fn`` takes no argument and returns the state; ``next_fn``
    takes the state (alone, or as its first parameter) and returns the new
    state, or a struct whose first element is the new state (``<state, metrics>``).
    The state types are checked to line up when the process is built.
    """

    def __init__(self, initialize_fn: Computation, next_fn: Computation):
        for name, fn in (("initialize_fn", initialize_fn), ("next_fn", next_fn)):
            if not isinstance(fn, Computation):
                raise FedcTypeError(f"IterativeProcess: {name} must be a fedc computation, got {fn!r}")
        init_type = initialize_fn.type_signature
        next_type = next_fn.type_signature
        if init_type.parameter is not None:
            raise FedcTypeError(f"IterativeProcess: initialize_fn must take no arguments, but has type {init_type}")
        state = init_type.result
        if next_type.parameter is None:
            raise FedcTypeError(f"IterativeProcess: next_fn must take the state, but has type {next_type}")
        parameter = next_type.parameter
        if next_fn.parameter_names or (isinstance(parameter, StructType) and not parameter.is_assignable_from(state)
                                       and len(parameter) > 0 and parameter[0].is_assignable_from(state)):
            state_parameter = parameter[0]
        else:
            state_parameter = parameter
        if not state_parameter.is_assignable_from(state):
            raise FedcTypeError(
                "IterativeProcess: the state that initialize_fn returns does not fit next_fn's state parameter: "
                f"initialize_fn returns {state}, next_fn takes {state_parameter}"
            )
        result = next_type.result
        returned_state = result
        if not state.is_assignable_from(result):
            if isinstance(result, StructType) and len(result) > 0 and state.is_assignable_from(result[0]):
                returned_state = result[0]
            else:
                raise FedcTypeError(
                    "IterativeProcess: next_fn must return the state (or <state, ...>): "
                    f"the state has type {state}, but next_fn returns {result}"
                )
        self._initialize = initialize_fn
        self._next = next_fn
        self._state_type = state
        self._returns_metrics = returned_state is not result

    @property
    def initialize(self) -> Computation:
        return self._initialize

    @property
    def next(self) -> Computation:
        return self._next

    @property
    def state_type(self) -> Type:
        return self._state_type

    def __repr__(self) -> str:
        return (
            f"<{type(self).__module__}.{type(self).__name__} initialize: {self._initialize.type_signature}, "
            f"next: {self._next.type_signature}>"
        )
