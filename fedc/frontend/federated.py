"""``@fedc.federated_computation`` and the federated intrinsics, with TFF's Python signatures.

Each intrinsic function builds the registry's intrinsic call on traced values
and binds it as a block local of the trace; misuse raises the registry's
:class:`FedcTypeError` (intrinsic, expected and actual types), located at the
user's line.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Optional

import numpy as np

from fedc.errors import FedcTypeError
from fedc.ir import building_blocks as bb
from fedc.ir import intrinsics as registry
from fedc.types import (
    CLIENTS,
    SERVER,
    FederatedType,
    Placement,
    SequenceType,
    StructType,
    TensorType,
    Type,
    _to_placement,
)

from fedc.frontend.tracing import (
    Value,
    function_node,
    located,
    require_tracing,
    to_node,
    trace_federated_computation,
    user_location,
)

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

    ``@fedc.federated_computation`` (no parameters), ``@fedc.federated_computation(T)``
    (one parameter), ``@fedc.federated_computation(T1, T2)`` (several parameters,
    packed as a struct named after them).
    """
    if len(types_or_fn) == 1 and _is_python_function(types_or_fn[0]):
        return trace_federated_computation(types_or_fn[0], ())

    def decorate(fn: Callable):
        if not _is_python_function(fn):
            raise FedcTypeError(f"@fedc.federated_computation decorates a Python function, not {fn!r}")
        return trace_federated_computation(fn, types_or_fn)

    return decorate


def _call(uri: str, argument: Optional[bb.Node], base: str, **attrs) -> Value:
    tracer = require_tracing(uri)
    location = user_location()
    try:
        return tracer.bind(registry.call(uri, argument, location, **attrs), base)
    except FedcTypeError as e:
        raise located(e, location) from None


def _node(value: Any, expected: Optional[Type] = None) -> bb.Node:
    return to_node(value, expected)


def _placed(value: Any) -> bb.Node:
    """The node of a placed value; a struct of values placed alike is zipped first, as TFF does."""
    node = to_node(value)
    uri = registry.implicit_zip(node.type_signature)
    if uri is not None:
        return _call(uri, node, "zipped").node
    return node


def _federated_type(node: bb.Node, api: str, what: str = "the value") -> FederatedType:
    t = node.type_signature
    if not isinstance(t, FederatedType):
        raise FedcTypeError(f"fedc.{api}: {what} must be a placed value (e.g. {{T}}@CLIENTS), but has type {t}")
    return t


def _function_node(fn: Any, parameter: Optional[Type], api: str) -> bb.Node:
    """A function node for ``fn`` applied to ``parameter`` (specialising polymorphic ones)."""
    return function_node(fn, parameter, f"fedc.{api}")


# --------------------------------------------------------------------------
# Placement


def federated_value(value: Any, placement: Placement) -> Value:
    """Places a local value at ``placement``: ``T`` -> ``T@P``."""
    placement = _to_placement(placement)
    node = _node(value)
    uri = "federated_value_at_server" if placement is SERVER else "federated_value_at_clients"
    return _call(uri, node, "value")


def federated_eval(fn: Any, placement: Placement) -> Value:
    """Evaluates a no-argument local function at ``placement``."""
    placement = _to_placement(placement)
    node = _function_node(fn, None, "federated_eval")
    uri = "federated_eval_at_server" if placement is SERVER else "federated_eval_at_clients"
    return _call(uri, node, "eval")


def federated_broadcast(value: Any) -> Value:
    """Sends a server value to every client: ``T@SERVER`` -> ``T@CLIENTS``."""
    return _call("federated_broadcast", _placed(value), "broadcast")


def federated_map(fn: Any, arg: Any) -> Value:
    """Applies a local function to each member's value: ``{T}@CLIENTS`` -> ``{U}@CLIENTS``.

    On a server value this is ``federated_apply``.
    """
    arg_node = _placed(arg)
    t = _federated_type(arg_node, "federated_map", "the mapped value")
    fn_node = _function_node(fn, t.member, "federated_map")
    uri = "federated_apply" if t.placement is SERVER else "federated_map"
    return _call(uri, bb.Struct([fn_node, arg_node]), "mapped" if t.placement is CLIENTS else "applied")


def federated_zip(value: Any) -> Value:
    """Turns a struct of placed values into a placed struct."""
    node = _node(value)
    t = node.type_signature
    if not isinstance(t, StructType) or len(t) == 0 or not isinstance(next(iter(t)), FederatedType):
        raise FedcTypeError(f"fedc.federated_zip: expected a non-empty struct of placed values, got {t}")
    placement = next(iter(t)).placement
    uri = "federated_zip_at_server" if placement is SERVER else "federated_zip_at_clients"
    return _call(uri, node, "zipped")


# --------------------------------------------------------------------------
# Aggregations


def federated_mean(value: Any, weight: Any = None) -> Value:
    """The (weighted) mean of client values at the server."""
    node = _placed(value)
    if weight is None:
        return _call("federated_mean", node, "mean")
    return _call("federated_weighted_mean", bb.Struct([node, _node(weight)]), "mean")


def federated_sum(value: Any) -> Value:
    """The sum of client values at the server."""
    return _call("federated_sum", _placed(value), "sum")


def federated_min(value: Any) -> Value:
    return _call("federated_min", _placed(value), "min")


def federated_max(value: Any) -> Value:
    return _call("federated_max", _placed(value), "max")


def _bound(value: Any) -> bb.Node:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return bb.Literal(np.int32(value) if -2**31 <= value < 2**31 else np.int64(value), None, user_location())
    return _node(value)


def federated_secure_sum(value: Any, max_input: Any) -> Value:
    """The sum of integer client values in [0, max_input], by secure aggregation."""
    return _call("federated_secure_sum", bb.Struct([_placed(value), _bound(max_input)]), "secure_sum")


def federated_secure_sum_bitwidth(value: Any, bitwidth: Any) -> Value:
    """The sum of integer client values in [0, 2**bitwidth), by secure aggregation."""
    return _call("federated_secure_sum_bitwidth", bb.Struct([_placed(value), _bound(bitwidth)]), "secure_sum")


def federated_secure_modular_sum(value: Any, modulus: Any) -> Value:
    """The sum of integer client values modulo ``modulus``, by secure aggregation."""
    return _call("federated_secure_modular_sum", bb.Struct([_placed(value), _bound(modulus)]), "secure_sum")


def federated_aggregate(value: Any, zero: Any, accumulate: Any, merge: Any, report: Any) -> Value:
    """Aggregates client values with zero, accumulate, merge and report functions."""
    value_node = _placed(value)
    t = _federated_type(value_node, "federated_aggregate")
    zero_node = _node(zero)
    u = zero_node.type_signature
    accumulate_node = _function_node(accumulate, StructType([u, t.member]), "federated_aggregate")
    merge_node = _function_node(merge, StructType([u, u]), "federated_aggregate")
    report_node = _function_node(report, u, "federated_aggregate")
    return _call(
        "federated_aggregate",
        bb.Struct([value_node, zero_node, accumulate_node, merge_node, report_node]),
        "aggregate",
    )


def _select(uri: str, client_keys: Any, max_key: Any, server_val: Any, select_fn: Any) -> Value:
    keys_node = _node(client_keys)
    max_key_node = _node(max_key)
    server_node = _node(server_val)
    server_type = _federated_type(server_node, uri, "server_val")
    fn_node = _function_node(select_fn, StructType([server_type.member, TensorType(np.int32)]), uri)
    return _call(uri, bb.Struct([keys_node, max_key_node, server_node, fn_node]), "selected")


def federated_select(client_keys: Any, max_key: Any, server_val: Any, select_fn: Any) -> Value:
    """Each client receives ``select_fn(server_val, key)`` for each of its keys, as a sequence."""
    return _select("federated_select", client_keys, max_key, server_val, select_fn)


def federated_secure_select(client_keys: Any, max_key: Any, server_val: Any, select_fn: Any) -> Value:
    """:func:`federated_select` without revealing the clients' keys to the server."""
    return _select("federated_secure_select", client_keys, max_key, server_val, select_fn)


# --------------------------------------------------------------------------
# Sequences


def _sequence_type(node: bb.Node, api: str) -> SequenceType:
    t = node.type_signature
    if not isinstance(t, SequenceType):
        raise FedcTypeError(f"fedc.{api}: expected a sequence, got a value of type {t}")
    return t


def sequence_map(fn: Any, arg: Any) -> Value:
    """Applies a local function to each element of a sequence."""
    arg_node = _node(arg)
    t = _sequence_type(arg_node, "sequence_map")
    return _call("sequence_map", bb.Struct([_function_node(fn, t.element, "sequence_map"), arg_node]), "seq_mapped")


def sequence_reduce(value: Any, zero: Any, op: Any) -> Value:
    """Folds a sequence: ``op(op(zero, x0), x1) ...``."""
    value_node = _node(value)
    t = _sequence_type(value_node, "sequence_reduce")
    zero_node = _node(zero)
    op_node = _function_node(op, StructType([zero_node.type_signature, t.element]), "sequence_reduce")
    return _call("sequence_reduce", bb.Struct([value_node, zero_node, op_node]), "reduced")


def sequence_sum(value: Any) -> Value:
    """The sum of a sequence's elements."""
    return _call("sequence_sum", _node(value), "seq_sum")


def _locate_errors(fn: Callable) -> Callable:
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except FedcTypeError as e:
            raise located(e) from None

    return wrapper


for _name in __all__:
    if _name != "federated_computation":
        globals()[_name] = _locate_errors(globals()[_name])
