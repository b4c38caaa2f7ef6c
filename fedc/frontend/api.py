"""The federated API, defined once for both frontends: API functions → intrinsic calls, and operators → local ops.

The Python tracing API (:mod:`fedc.frontend.federated`) and the ``.fed``
language (:mod:`fedc.frontend.fed.calls`) offer the same functions with the
same parameters (``federated_map(fn, arg)``, ``federated_mean(value,
weight=None)``, …). :data:`API` says, for each, how a call becomes intrinsic
calls of the registry: ``federated_map`` of a server value is
``federated_apply``, ``federated_mean`` with a weight is
``federated_weighted_mean``, a struct of values placed alike (structs may
nest) is zipped first (:func:`implicit_zip`), a sequence operation on a
placed sequence is mapped over its members, the functions given to
``federated_aggregate`` are typed from its value and zero, and so on. A
frontend supplies an :class:`Arguments` — how it turns one argument into IR,
and how it binds a call — and runs :meth:`ApiFunction.build`.

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
    "zip_placement",
]

#: Binary operators and the local ops they call, in both frontends (Python overloads those it can).
BINARY_OPERATORS = {
    "+": "add", "-": "subtract", "*": "multiply", "/": "divide", "//": "floor_divide", "%": "mod",
    "**": "pow", "@": "matmul", "<": "less", "<=": "less_equal", ">": "greater", ">=": "greater_equal",
    "==": "equal", "!=": "not_equal", "and": "logical_and", "or": "logical_or",
}

#: Unary operators and the local ops they call (``abs`` is Python's ``abs()``).
UNARY_OPERATORS = {"-": "negative", "abs": "abs", "not": "logical_not"}


def zip_placement(t: Type) -> Optional[Placement]:
    """Where a struct of type ``t`` can be zipped to: the one placement of all its placed values.

    As in TFF, the struct may nest structs (``<a={int32}@CLIENTS,b=<c={float32}@CLIENTS>>``);
    every value at its leaves must be placed, all at one placement, and at least one must be.
    For any other type this is None.
    """
    if not isinstance(t, StructType):
        return None
    placements: set = set()
    stack = [t]
    while stack:
        for element in stack.pop():
            if isinstance(element, FederatedType):
                placements.add(element.placement)
            elif isinstance(element, StructType):
                stack.append(element)
            else:
                return None
    return placements.pop() if len(placements) == 1 else None


def implicit_zip(t: Type) -> Optional[str]:
    """The zip TFF applies implicitly to a value of type ``t`` given where a placed value is expected.

    A struct of values all placed at one placement (see :func:`zip_placement`)
    is zipped into a placed struct (``federated_zip_at_clients`` or
    ``_at_server``); for any other type this is None.
    """
    placement = zip_placement(t)
    return None if placement is None else _zip_intrinsic(placement)


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

    def local_call(self, uri: str, argument: bb.Node) -> bb.Call:
        """A call of ``uri``, neither bound nor returned: the body of a function built here."""
        raise NotImplementedError

    def fresh(self, base: str) -> str:
        """A name not yet bound in the computation being built (for a parameter built here)."""
        raise NotImplementedError

    def error(self, parameter: Optional[str], message: str) -> FedcError:
        raise NotImplementedError

    # Shared rules ----------------------------------------------------------
    def placed(self, parameter: str) -> bb.Node:
        """A placed value; a struct of values placed alike is zipped first, as TFF does."""
        node = self.value(parameter)
        placement = zip_placement(node.type_signature)
        if placement is not None:
            node = self.bind(*self.zip_argument(node, placement), "zipped")
        return node

    def zip_argument(self, node: bb.Node, placement: Placement) -> tuple[str, bb.Node]:
        """(zip intrinsic, its argument) zipping struct ``node`` of values placed at ``placement``.

        Nested structs are zipped first, innermost first, so the argument is a
        flat struct of placed values (an empty nested struct is placed as is).
        """
        t = node.type_signature
        if all(isinstance(e, FederatedType) for e in t):
            return _zip_intrinsic(placement), node
        elements = []
        for index, (name, element_type) in enumerate(t.items()):
            element = node.elements[index][1] if isinstance(node, bb.Struct) else bb.Selection(node, index=index)
            if isinstance(element_type, StructType):
                if len(element_type) == 0:
                    uri = "federated_value_at_server" if placement is SERVER else "federated_value_at_clients"
                    element = self.bind(uri, element, "value")
                else:
                    element = self.bind(*self.zip_argument(element, placement), "zipped")
            elements.append((name, element) if name is not None else element)
        return _zip_intrinsic(placement), bb.Struct(elements)

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
            raise self.error(parameter, f"{self.name}: {what} must be a sequence (T*, or placed: {{T*}}@CLIENTS, "
                                        f"T*@SERVER), but has type {t}")
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
    """``federated_zip`` (``uri`` None: at the placement of the values, nested structs too) or one zip intrinsic."""

    def build(a: Arguments):
        value = a.value("value")
        if uri is not None:
            return a.call(uri, value, "zipped")
        t = value.type_signature
        placement = zip_placement(t)
        if placement is None:
            raise a.error(
                None,
                f"{a.name}: expected a struct (structs may nest) of values all placed at CLIENTS or all at "
                f"SERVER, got {t}",
            )
        return a.call(*a.zip_argument(value, placement), "zipped")

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


# A sequence operation on a placed sequence ({T*}@CLIENTS, T*@SERVER) applies to each member's
# sequence, as in TFF: the frontend maps a local function doing it over the placement, so the
# IR's sequence intrinsics stay local.


def _placed_sequence(t: Type) -> Optional[FederatedType]:
    return t if isinstance(t, FederatedType) and isinstance(t.member, SequenceType) else None


def _per_member(a: Arguments, value: bb.Node, uri: str, argument: Callable[[bb.Node], bb.Node], base: str):
    """``uri`` applied to each member of placed ``value``: ``federated_map(x -> uri(argument(x)), value)``."""
    t = value.type_signature
    x = a.fresh("member")
    fn = bb.Lambda(x, t.member, a.local_call(uri, argument(bb.Reference(x, t.member))))
    return a.call(map_intrinsic(t), bb.Struct([fn, value]), base)


def _sequence_map(a: Arguments):
    arg = a.value("arg")
    placed = _placed_sequence(arg.type_signature)
    if placed is not None:
        fn = a.function("fn", placed.member.element)
        return _per_member(a, arg, "sequence_map", lambda member: bb.Struct([fn, member]), "seq_mapped")
    t = a.sequence(arg, "arg", "the mapped value")
    return a.call("sequence_map", bb.Struct([a.function("fn", t.element), arg]), "seq_mapped")


def _sequence_reduce(a: Arguments):
    value = a.value("value")
    zero = a.value("zero")
    placed = _placed_sequence(value.type_signature)
    if placed is None:
        t = a.sequence(value, "value", "the reduced value")
        op = a.function("op", StructType([zero.type_signature, t.element]))
        return a.call("sequence_reduce", bb.Struct([value, zero, op]), "reduced")
    element = placed.member.element
    zero_type = zero.type_signature
    if not isinstance(zero_type, FederatedType):
        # A local zero is the same for every member.
        op = a.function("op", StructType([zero_type, element]))
        return _per_member(a, value, "sequence_reduce", lambda member: bb.Struct([member, zero, op]), "reduced")
    # A placed zero (as TFF takes it) is zipped with the sequences, member by member.
    if zero_type.placement is not placed.placement:
        raise a.error("zero", f"{a.name}: the zero of a sequence placed at {placed.placement} must be local or "
                              f"placed there too, but has type {zero_type}")
    op = a.function("op", StructType([zero_type.member, element]))
    pairs = a.bind(_zip_intrinsic(placed.placement), bb.Struct([value, zero]), "zipped")
    return _per_member(
        a, pairs, "sequence_reduce",
        lambda pair: bb.Struct([bb.Selection(pair, index=0), bb.Selection(pair, index=1), op]), "reduced",
    )


def _sequence_sum(a: Arguments):
    value = a.value("value")
    if _placed_sequence(value.type_signature) is not None:
        return _per_member(a, value, "sequence_sum", lambda member: member, "seq_sum")
    return a.call("sequence_sum", value, "seq_sum")


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
