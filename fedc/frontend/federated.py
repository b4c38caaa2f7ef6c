"""``@fedc.federated_computation`` and the federated intrinsics, with TFF's Python signatures.

Each intrinsic function is a function of the federated API shared with the
``.fed`` language (:data:`fedc.frontend.api.API`): it builds the registry's
intrinsic calls on traced values and binds them as block locals of the trace;
misuse raises the registry's :class:`FedcTypeError` (intrinsic, expected and
actual types), located at the user's line.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Optional

import numpy as np

from fedc.errors import FedcTypeError
from fedc.frontend.api import API, ApiFunction, Arguments
from fedc.frontend.tracing import (
    Value,
    decorated,
    function_node,
    located,
    require_tracing,
    to_node,
    trace_federated_computation,
    user_location,
)
from fedc.ir import building_blocks as bb
from fedc.ir.build import call as intrinsic_call
from fedc.types import Placement, Type, to_placement

__all__ = [
    "federated_aggregate",
    "federated_broadcast",
    "federated_computation",
    "federated_eval",
    "federated_map",
    "federated_max",
    "federated_mean",
    "federated_min",
    "federated_secure_modular_sum",
    "federated_secure_select",
    "federated_secure_sum",
    "federated_secure_sum_bitwidth",
    "federated_select",
    "federated_sum",
    "federated_value",
    "federated_zip",
    "sequence_map",
    "sequence_reduce",
    "sequence_sum",
]


def _is_python_function(value: Any) -> bool:
    return inspect.isfunction(value) or inspect.ismethod(value)


def federated_computation(*types_or_fn):
    """Traces a Python function into a federated computation.

    ``@fedc.federated_computation(T)`` (one parameter),
    ``@fedc.federated_computation(T1, T2)`` (several parameters, packed as a
    struct named after them; on a function of one parameter, that parameter
    takes the struct ``<T1,T2>``). ``@fedc.federated_computation`` on a
    function without parameters traces it at once; on a function with
    parameters it makes a :class:`~fedc.PolymorphicComputation`, traced for
    each distinct argument type where it is called or used, as TFF does.
    """
    if len(types_or_fn) == 1 and _is_python_function(types_or_fn[0]):
        return decorated(types_or_fn[0], (), "federated_computation", trace_federated_computation)

    def decorate(fn: Callable):
        if not _is_python_function(fn):
            raise FedcTypeError(f"@fedc.federated_computation decorates a Python function, not {fn!r}")
        return decorated(fn, types_or_fn, "federated_computation", trace_federated_computation)

    return decorate


def _call(uri: str, argument: Optional[bb.Node], base: str) -> Value:
    tracer = require_tracing(uri)
    location = user_location()
    try:
        return tracer.bind(intrinsic_call(uri, argument, location), base)
    except FedcTypeError as e:
        raise located(e, location) from None


class _PythonArguments(Arguments):
    """The arguments of a call of an API function in traced Python, for :meth:`ApiFunction.build`."""

    def __init__(self, function: ApiFunction, values: dict):
        self.name = f"fedc.{function.name}"
        self.values = values

    def given(self, parameter: str) -> bool:
        return self.values.get(parameter) is not None

    def value(self, parameter: str) -> bb.Node:
        return to_node(self.values[parameter])

    def function(self, parameter: str, parameter_type: Optional[Type]) -> bb.Node:
        """A function node for the argument applied to ``parameter_type`` (specialising polymorphic ones)."""
        return function_node(self.values[parameter], parameter_type, self.name)

    def placement(self, parameter: str) -> Placement:
        return to_placement(self.values[parameter])

    def bound(self, parameter: str) -> bb.Node:
        value = self.values[parameter]
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            return bb.Literal(np.int32(value) if -2**31 <= value < 2**31 else np.int64(value), None, user_location())
        return to_node(value)

    def call(self, uri: str, argument: Optional[bb.Node], base: str) -> Value:
        return _call(uri, argument, base)

    def bind(self, uri: str, argument: bb.Node, base: str) -> bb.Node:
        return _call(uri, argument, base).node

    def local_call(self, uri: str, argument: bb.Node) -> bb.Call:
        location = user_location()
        try:
            return intrinsic_call(uri, argument, location)
        except FedcTypeError as e:
            raise located(e, location) from None

    def fresh(self, base: str) -> str:
        return require_tracing(self.name.removeprefix("fedc.")).fresh(base)

    def error(self, parameter: Optional[str], message: str) -> FedcTypeError:
        return FedcTypeError(message)


def _python_function(function: ApiFunction) -> Callable:
    """The Python function of API function ``function``: its parameters, its doc, its intrinsic calls."""
    signature = inspect.Signature([
        inspect.Parameter(p, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                          default=None if p in function.optional else inspect.Parameter.empty)
        for p in function.parameters
    ])

    def api_function(*args, **kwargs):
        values = signature.bind(*args, **kwargs)
        values.apply_defaults()
        try:
            return function.build(_PythonArguments(function, dict(values.arguments)))
        except FedcTypeError as e:
            raise located(e) from None

    api_function.__name__ = api_function.__qualname__ = function.name
    api_function.__doc__ = function.doc
    api_function.__signature__ = signature
    api_function.__module__ = __name__
    return api_function


for _name in __all__:
    if _name != "federated_computation":
        globals()[_name] = _python_function(API[_name])
