"""The federated API, defined once for both frontends: API functions → intrinsic calls, and operators → local ops.

The Python tracing API (:mod:`fedc.frontend.federated`) and the ``.fed``
language (:mod:`fedc.frontend.fed.calls`) offer the same functions with the
same parameters (``federated_map(fn, arg)``, ``federated_mean(value,
weight=None)``, …). :data:`API` says, for each, how a call becomes intrinsic
calls of the registry: ``federated_map`` of a server value is
``federated_apply``, ``federated_mean`` with a weight is
``federated_weighted_mean``, a struct of values placed alike is zipped first
(:func:`implicit_zip`), the functions given to ``federated_aggregate`` are
typed from its value and zero, and so on. A frontend supplies an
:class:`Arguments` — how it turns one argument into IR, and how it binds a
call — and runs :meth:`ApiFunction.build`.

:data:`BINARY_OPERATORS` and :data:`UNARY_OPERATORS` map operators (``+``,
``@``, unary ``-``) to the registry's local ops, for both frontends.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import numpy as np

from fedc.errors import FedcError
from fedc.ir import building_blocks as bb
from fedc.ir import intrinsics
from fedc.types import SERVER, FederatedType, Placement, SequenceType, StructType, TensorType, Type

__all__ = [
    "API",
    "ApiFunction",
    "Arguments",
    "BINARY_OPERATORS",
    "UNARY_OPERATORS",
    "implicit_zip",
    "map_intrinsic",
]

#: Binary operators and the local ops they call, in both frontends (Python overloads those it can).
BINARY_OPERATORS = {
    "+": "add", "-": "subtract", "*": "multiply", "/": "divide", "//": "floor_divide", "%": "mod",
    "**": "pow", "@": "matmul", "<": "less", "<=": "less_equal", ">": "greater", ">=": "greater_equal",
    "==": "equal", "!=": "not_equal", "and": "logical_and", "or": "logical_or",
}

#: Unary operators and the local ops they call (``abs`` is Python's ``abs()``).
UNARY_OPERATORS = {"-": "negative", "abs": "abs", "not": "logical_not"}


def implicit_zip(t: Type) -> Optional[str]:
    """The zip TFF applies implicitly to a value of type ``t`` given where a placed value is expected.

    A non-empty struct of values all placed at one placement is zipped into a
    placed struct (``federated_zip_at_clients`` or ``_at_server``); for any other
    type this is None.
    """
    if (
        isinstance(t, StructType)
        and len(t) > 0
        and all(isinstance(e, FederatedType) for e in t)
        and len({e.placement for e in t}) == 1
    ):
        return _zip_intrinsic(next(iter(t)).placement)
    return None


def _zip_intrinsic(placement: Placement) -> str:
    return "federated_zip_at_server" if placement is SERVER else "federated_zip_at_clients"


def map_intrinsic(t: FederatedType, keep_all_equal: bool = False) -> str:
    """The intrinsic that maps a local function over a value of type ``t``: ``federated_apply`` at
    the server, ``federated_map`` at the clients (``federated_map_all_equal`` for an all-equal
    value when ``keep_all_equal``)."""
    if t.placement is SERVER:
        return "federated_apply"
    return "federated_map_all_equal" if keep_all_equal and t.all_equal else "federated_map"


class Arguments:
    """The arguments of one call of an API function, as a frontend turns them into IR.

    A frontend subclasses this: :meth:`value`, :meth:`function`,
    :meth:`placement` and :meth:`bound` give one argument (by parameter name)
    as IR; :meth:`call` builds the call the API function returns, :meth:`bind`
    an intermediate call bound to a local; :meth:`error` a located
    :class:`FedcTypeError` about an argument. ``name`` is how the frontend
    spells the function in messages (``fedc.federated_map``, ``federated_map``).
    """

    name: str

    def given(self, parameter: str) -> bool:
        raise NotImplementedError

    def value(self, parameter: str) -> bb.Node:
        raise NotImplementedError

    def function(self, parameter: str, parameter_type: Optional[Type]) -> bb.Node:
        raise NotImplementedError

    def placement(self, parameter: str) -> Placement:
        raise NotImplementedError

    def bound(self, parameter: str) -> bb.Node:
        """The bound of a secure sum (a plain integer is an int32 constant)."""
        return self.value(parameter)

    def call(self, uri: str, argument: Optional[bb.Node], base: str) -> Any:
        raise NotImplementedError

    def bind(self, uri: str, argument: bb.Node, base: str) -> bb.Node:
        raise NotImplementedError

    def error(self, parameter: Optional[str], message: str) -> FedcError:
        raise NotImplementedError

    # Shared rules ----------------------------------------------------------
    def placed(self, parameter: str) -> bb.Node:
        """A placed value; a struct of values placed alike is zipped first, as TFF does."""
        node = self.value(parameter)
        uri = implicit_zip(node.type_signature)
        if uri is not None:
            node = self.bind(uri, node, "zipped")
        return node

    def federated(self, node: bb.Node, parameter: str, what: str) -> FederatedType:
        t = node.type_signature
        if not isinstance(t, FederatedType):
            raise self.error(
                parameter,
                f"{self.name}: {what} must be a placed value (such as {{T}}@CLIENTS or T@SERVER), but has type {t}",
            )
        return t

    def sequence(self, node: bb.Node, parameter: str, what: str) -> SequenceType:
        t = node.type_signature
        if not isinstance(t, SequenceType):
            raise self.error(parameter, f"{self.name}: {what} must be a sequence, but has type {t}")
        return t


@dataclasses.dataclass(frozen=True)
class ApiFunction:
    """One function of the federated API: its parameters (``optional`` ones default to absent),
    its doc, and how a call of it becomes intrinsic calls."""

    name: str
    parameters: tuple[str, ...]
    doc: str
    build: Callable[[Arguments], Any]
    optional: tuple[str, ...] = ()


# --------------------------------------------------------------------------
# How each API function becomes intrinsic calls


def _value_at(a: Arguments):
    value = a.value("value")
    placement = a.placement("placement")
    return a.call("federated_value_at_server" if placement is SERVER else "federated_value_at_clients", value, "value")


def _eval(a: Arguments):
    placement = a.placement("placement")
    fn = a.function("fn", None)
    return a.call("federated_eval_at_server" if placement is SERVER else "federated_eval_at_clients", fn, "eval")


def _eval_at(uri: str):
    return lambda a: a.call(uri, a.function("fn", None), "eval")


def _value_at_placement(uri: str):
    return lambda a: a.call(uri, a.value("value"), "value")


def _map(uri: Optional[str]):
    """``federated_map`` (``uri`` None: apply at the server, map at the clients) or one mapping intrinsic."""

    def build(a: Arguments):
        arg = a.placed("arg")
        t = a.federated(arg, "arg", "the mapped value")
        fn = a.function("fn", t.member)
        chosen = uri or map_intrinsic(t)
        return a.call(chosen, bb.Struct([fn, arg]), "applied" if chosen == "federated_apply" else "mapped")

    return build


def _zip(uri: Optional[str]):
    """``federated_zip`` (``uri`` None: at the placement of the values) or one zip intrinsic."""

    def build(a: Arguments):
        value = a.value("value")
        chosen = uri
        if chosen is None:
            t = value.type_signature
            if not isinstance(t, StructType) or len(t) == 0 or not isinstance(next(iter(t)), FederatedType):
                raise a.error(None, f"{a.name}: expected a non-empty struct of placed values, got {t}")
            chosen = _zip_intrinsic(next(iter(t)).placement)
        return a.call(chosen, value, "zipped")

    return build


def _on_placed(uri: str, base: str):
    return lambda a: a.call(uri, a.placed("value"), base)


def _mean(a: Arguments):
    if not a.given("weight"):
        return a.call("federated_mean", a.placed("value"), "mean")
    return _weighted_mean(a)


def _weighted_mean(a: Arguments):
    value = a.placed("value")
    weight = a.value("weight")
    return a.call("federated_weighted_mean", bb.Struct([value, weight]), "mean")


def _secure_sum(uri: str):
    bound_name = intrinsics.lookup(uri).operand_with_role(intrinsics.OperandRole.BOUND).name

    def build(a: Arguments):
        value = a.placed("value")
        return a.call(uri, bb.Struct([value, a.bound(bound_name)]), "secure_sum")

    return build


def _aggregate(a: Arguments):
    value = a.placed("value")
    t = a.federated(value, "value", "the value")
    zero = a.value("zero")
    u = zero.type_signature
    accumulate = a.function("accumulate", StructType([u, t.member]))
    merge = a.function("merge", StructType([u, u]))
    report = a.function("report", u)
    return a.call("federated_aggregate", bb.Struct([value, zero, accumulate, merge, report]), "aggregate")


def _select(uri: str):
    def build(a: Arguments):
        keys = a.value("client_keys")
        max_key = a.value("max_key")
        server = a.value("server_val")
        t = a.federated(server, "server_val", "server_val")
        select_fn = a.function("select_fn", StructType([t.member, TensorType(np.int32)]))
        return a.call(uri, bb.Struct([keys, max_key, server, select_fn]), "selected")

    return build


def _sequence_map(a: Arguments):
    arg = a.value("arg")
    t = a.sequence(arg, "arg", "the mapped value")
    return a.call("sequence_map", bb.Struct([a.function("fn", t.element), arg]), "seq_mapped")


def _sequence_reduce(a: Arguments):
    value = a.value("value")
    t = a.sequence(value, "value", "the reduced value")
    zero = a.value("zero")
    op = a.function("op", StructType([zero.type_signature, t.element]))
    return a.call("sequence_reduce", bb.Struct([value, zero, op]), "reduced")


def _sequence_sum(a: Arguments):
    return a.call("sequence_sum", a.value("value"), "seq_sum")


def _parameters(uri: str) -> tuple[str, ...]:
    """An intrinsic's own operands as the parameters of the API function of the same name."""
    return intrinsics.lookup(uri).operand_names


def _doc(uri: str) -> str:
    return intrinsics.lookup(uri).doc


def _api() -> dict[str, ApiFunction]:
    functions = [
        ApiFunction("federated_value", ("value", "placement"), "Places a local value at ``placement``: ``T`` -> ``T@P``.",
                    _value_at),
        ApiFunction("federated_eval", ("fn", "placement"), "Evaluates a no-argument local function at ``placement``.",
                    _eval),
        ApiFunction("federated_broadcast", _parameters("federated_broadcast"),
                    "Sends a server value to every client: ``T@SERVER`` -> ``T@CLIENTS``.",
                    _on_placed("federated_broadcast", "broadcast")),
        ApiFunction("federated_map", ("fn", "arg"),
                    "Applies a local function to each member's value: ``{T}@CLIENTS`` -> ``{U}@CLIENTS``.\n\n"
                    "On a server value this is ``federated_apply``.", _map(None)),
        ApiFunction("federated_zip", ("value",), "Turns a struct of placed values into a placed struct.", _zip(None)),
        ApiFunction("federated_mean", ("value", "weight"), "The (weighted) mean of client values at the server.",
                    _mean, optional=("weight",)),
        ApiFunction("federated_weighted_mean", _parameters("federated_weighted_mean"),
                    _doc("federated_weighted_mean"), _weighted_mean),
        ApiFunction("federated_aggregate", _parameters("federated_aggregate"), _doc("federated_aggregate"),
                    _aggregate),
        ApiFunction("sequence_map", _parameters("sequence_map"), _doc("sequence_map"), _sequence_map),
        ApiFunction("sequence_reduce", _parameters("sequence_reduce"),
                    "Folds a sequence: ``op(op(zero, x0), x1) ...``.", _sequence_reduce),
        ApiFunction("sequence_sum", _parameters("sequence_sum"), _doc("sequence_sum"), _sequence_sum),
    ]
    for uri in ("federated_apply", "federated_map_all_equal"):
        functions.append(ApiFunction(uri, _parameters(uri), _doc(uri), _map(uri)))
    for uri in ("federated_zip_at_clients", "federated_zip_at_server"):
        functions.append(ApiFunction(uri, _parameters(uri), _doc(uri), _zip(uri)))
    for uri in ("federated_value_at_clients", "federated_value_at_server"):
        functions.append(ApiFunction(uri, _parameters(uri), _doc(uri), _value_at_placement(uri)))
    for uri in ("federated_eval_at_clients", "federated_eval_at_server"):
        functions.append(ApiFunction(uri, _parameters(uri), _doc(uri), _eval_at(uri)))
    for uri, base in [("federated_sum", "sum"), ("federated_min", "min"), ("federated_max", "max")]:
        functions.append(ApiFunction(uri, _parameters(uri), _doc(uri), _on_placed(uri, base)))
    for uri in ("federated_secure_sum", "federated_secure_sum_bitwidth", "federated_secure_modular_sum"):
        functions.append(ApiFunction(uri, _parameters(uri), _doc(uri), _secure_sum(uri)))
    for uri in ("federated_select", "federated_secure_select"):
        functions.append(ApiFunction(uri, _parameters(uri), _doc(uri), _select(uri)))
    return {f.name: f for f in functions}


#: Every function of the federated API, by name.
API: dict[str, ApiFunction] = _api()
