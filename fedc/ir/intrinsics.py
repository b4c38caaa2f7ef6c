"""The one registry of intrinsics: federated intrinsics and local tensor ops.

Each entry (:class:`IntrinsicDef`) is defined once, here or in
:mod:`fedc.ir.local_ops`: its name (``uri``), its polymorphic signature in TFF
notation, its kind (broadcast, aggregation, map, …; secure or not), the
attributes it takes, and its type rule, a function from the parameter type to
the result type that rejects misuse with a :class:`FedcTypeError` naming the
intrinsic, the expected and the actual type.

Each backend keeps its own table of implementations keyed by ``uri`` (see
:mod:`fedc.backends.base`); a backend that lacks one says so when it compiles
a computation, naming the intrinsic.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Callable, Mapping, Optional

import numpy as np

from fedc.errors import FedcTypeError, ParseError
from fedc.types import (
    CLIENTS,
    SERVER,
    FederatedType,
    FunctionType,
    PlacementType,
    SequenceType,
    StructType,
    TensorType,
    Type,
    mismatch_message,
)

__all__ = [
    "IntrinsicDef",
    "IntrinsicKind",
    "all_definitions",
    "call",
    "lookup",
    "register",
]


class IntrinsicKind(enum.Enum):
    """What an intrinsic does with placements."""

    BROADCAST = "broadcast"  # server -> clients
    AGGREGATION = "aggregation"  # clients -> server
    MAP = "map"  # applies a local function at a placement
    PLACEMENT = "placement"  # places a local value (value_at, eval_at)
    ZIP = "zip"  # struct of federated values -> federated struct
    SELECT = "select"  # clients fetch keyed slices of a server value
    SEQUENCE = "sequence"  # local operations on sequences
    LOCAL = "local"  # placement-free tensor math


@dataclasses.dataclass(frozen=True)
class AttrSpec:
    """An attribute of an intrinsic: a name, a normalizer (raises on bad values), a default."""

    name: str
    normalize: Callable[[Any], Any]
    default: Any = None
    doc: str = ""


@dataclasses.dataclass(eq=False)
class IntrinsicDef:
    """One intrinsic: its name, signature, kind, type rule and attributes."""

    uri: str
    signature: str
    kind: IntrinsicKind
    rule: Callable[["IntrinsicDef", Optional[Type], dict], Type]
    doc: str
    secure: bool = False
    attrs: tuple[AttrSpec, ...] = ()
    has_parameter: bool = True

    @property
    def is_federated(self) -> bool:
        return self.kind not in (IntrinsicKind.LOCAL, IntrinsicKind.SEQUENCE)

    def fail(self, parameter: Optional[Type], why: str) -> FedcTypeError:
        """A type error naming this intrinsic, its signature and the actual argument type."""
        got = "no argument" if parameter is None else f"an argument of type {parameter}"
        return FedcTypeError(f"{self.uri} expects {self.signature}; got {got}: {why}")

    def normalize_attrs(self, attrs: Mapping[str, Any]) -> tuple:
        """Validates attributes; returns them sorted, defaults left out (a canonical form)."""
        specs = {a.name: a for a in self.attrs}
        result = []
        for key, value in attrs.items():
            spec = specs.get(key)
            if spec is None:
                known = ", ".join(specs) or "none"
                raise FedcTypeError(f"{self.uri} has no attribute {key!r} (its attributes: {known})")
            try:
                value = spec.normalize(value)
            except (FedcTypeError, ParseError) as e:  # ParseError: a type attribute given as bad text
                raise FedcTypeError(f"{self.uri} attribute {key}: {e.message}") from None
            if not _same_attr(value, spec.default):
                result.append((key, value))
        return tuple(sorted(result))

    def attr_values(self, attrs: Mapping[str, Any]) -> dict:
        """Attributes with defaults filled in."""
        values = {a.name: a.default for a in self.attrs}
        values.update(attrs)
        return values

    def result_type(self, parameter: Optional[Type], attrs: Mapping[str, Any] = ()) -> Type:
        """The result type for a parameter type, or a :class:`FedcTypeError`."""
        attrs = dict(attrs)
        if self.has_parameter and parameter is None:
            raise self.fail(None, "it needs an argument")
        if not self.has_parameter and parameter is not None:
            raise self.fail(parameter, "it takes no argument")
        try:
            return self.rule(self, parameter, self.attr_values(attrs))
        except FedcTypeError as e:
            if e.message.startswith(f"{self.uri} expects "):  # already from self.fail
                raise
            raise self.fail(parameter, e.message) from None

    def check_signature(self, type_signature: Type, attrs: Mapping[str, Any]) -> None:
        """Checks a concrete signature against the type rule."""
        if not isinstance(type_signature, FunctionType):
            raise FedcTypeError(f"{self.uri} must have a function type, not {type_signature}")
        expected = self.result_type(type_signature.parameter, attrs)
        if expected != type_signature.result:
            raise FedcTypeError(
                mismatch_message(
                    f"{self.uri} applied to {type_signature.parameter} has a different result type",
                    expected,
                    type_signature.result,
                )
            )

    def instance_type(self, parameter: Optional[Type], attrs: Mapping[str, Any] = ()) -> FunctionType:
        """The concrete function type of this intrinsic applied to ``parameter``."""
        return FunctionType(parameter, self.result_type(parameter, attrs))


def _same_attr(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


_REGISTRY: dict[str, IntrinsicDef] = {}


def register(definition: IntrinsicDef) -> IntrinsicDef:
    """Adds an intrinsic to the registry (once per uri)."""
    if definition.uri in _REGISTRY:
        raise ValueError(f"intrinsic {definition.uri} is registered twice")
    _REGISTRY[definition.uri] = definition
    return definition


def lookup(uri: str) -> IntrinsicDef:
    """The definition of intrinsic ``uri``; a :class:`FedcTypeError` if there is none."""
    _ensure_loaded()
    try:
        return _REGISTRY[uri]
    except (KeyError, TypeError):
        import difflib

        close = difflib.get_close_matches(str(uri), list(_REGISTRY), n=3)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise FedcTypeError(f"unknown intrinsic {uri!r}{hint}") from None


def all_definitions() -> list[IntrinsicDef]:
    """Every registered intrinsic, federated ones first, then by name."""
    _ensure_loaded()
    return sorted(_REGISTRY.values(), key=lambda d: (not d.is_federated, d.uri))


def _ensure_loaded() -> None:
    from fedc.ir import local_ops  # noqa: F401  (registers the local ops)


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
        return "federated_zip_at_server" if next(iter(t)).placement is SERVER else "federated_zip_at_clients"
    return None


def call(uri: str, argument=None, location=None, **attrs):
    """Builds ``Call(Intrinsic(uri, <inferred type>), argument)``."""
    from fedc.ir.building_blocks import Call, Intrinsic

    definition = lookup(uri)
    parameter = None if argument is None else argument.type_signature
    fn_type = definition.instance_type(parameter, definition.normalize_attrs(attrs))
    return Call(Intrinsic(uri, fn_type, attrs, location), argument, location)


# --------------------------------------------------------------------------
# Helpers for type rules


def _struct_args(d: IntrinsicDef, parameter: Type, count: int) -> list[Type]:
    if not isinstance(parameter, StructType) or len(parameter) != count:
        raise d.fail(parameter, f"the argument is a struct of {count} elements")
    return list(parameter)


def _federated(d: IntrinsicDef, t: Type, placement, what: str, all_equal: Optional[bool] = None) -> FederatedType:
    if not isinstance(t, FederatedType) or t.placement is not placement:
        raise FedcTypeError(f"{what} must be placed at {placement}, but has type {t}")
    if all_equal is True and not t.all_equal:
        raise FedcTypeError(f"{what} must be all-equal (T@{placement}), but has type {t}")
    if all_equal is False and t.all_equal:
        raise FedcTypeError(f"{what} must be per-member ({{T}}@{placement}), but has type {t}")
    return t


def _local(t: Type, what: str) -> Type:
    for sub in t.walk():
        if isinstance(sub, (FederatedType, PlacementType)):
            raise FedcTypeError(f"{what} must be placement-free, but has type {t}")
    return t


def _function(t: Type, what: str) -> FunctionType:
    if not isinstance(t, FunctionType):
        raise FedcTypeError(f"{what} must be a function, but has type {t}")
    _local(t, what)
    return t


def _accepts(fn: FunctionType, argument: Type, what: str) -> None:
    if fn.parameter is None:
        raise FedcTypeError(f"{what} {fn} takes no parameter, but is applied to {argument}")
    if not fn.parameter.is_assignable_from(argument):
        raise FedcTypeError(mismatch_message(f"parameter of {what} {fn}", fn.parameter, argument))


def _leaves(t: Type):
    if isinstance(t, StructType):
        for element in t:
            yield from _leaves(element)
    else:
        yield t


def _check_leaves(t: Type, predicate: Callable[[np.dtype], bool], what: str) -> None:
    for leaf in _leaves(t):
        if not isinstance(leaf, TensorType) or not predicate(leaf.dtype):
            if leaf is t:
                raise FedcTypeError(f"{what}, but T is {t}")
            raise FedcTypeError(f"{what}, but {t} has an element of type {leaf}")


def _is_numeric(dtype: np.dtype) -> bool:
    return dtype.kind in "iufc"


def _is_floating(dtype: np.dtype) -> bool:
    return dtype.kind in "fc"


def _is_integer(dtype: np.dtype) -> bool:
    return dtype.kind in "iu"


def _fed(member: Type, placement, all_equal: Optional[bool] = None) -> FederatedType:
    return FederatedType(member, placement, all_equal)


# --------------------------------------------------------------------------
# Federated intrinsics


def _rule_aggregate(d, p, attrs):
    value, zero, accumulate, merge, report = _struct_args(d, p, 5)
    value = _federated(d, value, CLIENTS, "value")
    _local(zero, "zero")
    accumulate = _function(accumulate, "accumulate")
    merge = _function(merge, "merge")
    report = _function(report, "report")
    _accepts(accumulate, StructType([zero, value.member]), "accumulate")
    zero.check_assignable_from(accumulate.result, "result of accumulate (the accumulator type is zero's)")
    _accepts(merge, StructType([zero, zero]), "merge")
    zero.check_assignable_from(merge.result, "result of merge (the accumulator type is zero's)")
    _accepts(report, zero, "report")
    return _fed(report.result, SERVER)


def _rule_apply(d, p, attrs):
    fn, value = _struct_args(d, p, 2)
    fn = _function(fn, "the function")
    value = _federated(d, value, SERVER, "the value", all_equal=True)
    _accepts(fn, value.member, "the function")
    return _fed(fn.result, SERVER)


def _rule_broadcast(d, p, attrs):
    value = _federated(d, p, SERVER, "the value", all_equal=True)
    return _fed(value.member, CLIENTS, all_equal=True)


def _rule_eval_at(placement):
    def rule(d, p, attrs):
        fn = _function(p, "the argument")
        if fn.parameter is not None:
            raise FedcTypeError(f"the function must take no parameter, but has type {fn}")
        return _fed(fn.result, placement)

    return rule


def _rule_map(d, p, attrs):
    fn, value = _struct_args(d, p, 2)
    fn = _function(fn, "the mapped function")
    value = _federated(d, value, CLIENTS, "the mapped value")
    _accepts(fn, value.member, "the mapped function")
    return _fed(fn.result, CLIENTS, all_equal=False)


def _rule_map_all_equal(d, p, attrs):
    fn, value = _struct_args(d, p, 2)
    fn = _function(fn, "the mapped function")
    value = _federated(d, value, CLIENTS, "the mapped value", all_equal=True)
    _accepts(fn, value.member, "the mapped function")
    return _fed(fn.result, CLIENTS, all_equal=True)


def _rule_reduction(predicate, requirement):
    def rule(d, p, attrs):
        value = _federated(d, p, CLIENTS, "the value")
        _check_leaves(value.member, predicate, requirement)
        return _fed(value.member, SERVER)

    return rule


def _rule_weighted_mean(d, p, attrs):
    value, weight = _struct_args(d, p, 2)
    value = _federated(d, value, CLIENTS, "the value")
    weight = _federated(d, weight, CLIENTS, "the weight")
    _check_leaves(value.member, _is_floating, "the value must be floating-point tensors")
    if not (isinstance(weight.member, TensorType) and weight.member.shape == () and
            weight.member.dtype.kind in "iuf"):
        raise FedcTypeError(f"the weight must be a numeric scalar at CLIENTS, but has type {weight}")
    return _fed(value.member, SERVER)


def _rule_secure(parameter_name):
    def rule(d, p, attrs):
        value, bound = _struct_args(d, p, 2)
        value = _federated(d, value, CLIENTS, "the value")
        _check_leaves(value.member, _is_integer, "the value must be integer tensors")
        _local(bound, parameter_name)
        if isinstance(bound, TensorType):
            if bound.shape != () or not _is_integer(bound.dtype):
                raise FedcTypeError(f"{parameter_name} must be an integer scalar, but has type {bound}")
        else:
            # One bound per element of the value: the same structure, scalar leaves.
            if not isinstance(bound, StructType) or len(list(_leaves(bound))) != len(list(_leaves(value.member))):
                raise FedcTypeError(
                    f"{parameter_name} must be an integer scalar or one per element of "
                    f"{value.member}, but has type {bound}"
                )
            _check_leaves(bound, _is_integer, f"{parameter_name} must be integers")
        return _fed(value.member, SERVER)

    return rule


def _rule_select(d, p, attrs):
    keys, max_key, server_value, select_fn = _struct_args(d, p, 4)
    keys = _federated(d, keys, CLIENTS, "the client keys")
    if not (isinstance(keys.member, TensorType) and keys.member.dtype == np.int32 and keys.member.rank == 1):
        raise FedcTypeError(f"the client keys must be int32[n] at CLIENTS, but have type {keys}")
    max_key = _federated(d, max_key, SERVER, "max_key", all_equal=True)
    if max_key.member != TensorType(np.int32):
        raise FedcTypeError(f"max_key must be int32@SERVER, but has type {max_key}")
    server_value = _federated(d, server_value, SERVER, "the server value", all_equal=True)
    select_fn = _function(select_fn, "select_fn")
    _accepts(select_fn, StructType([server_value.member, TensorType(np.int32)]), "select_fn")
    return _fed(SequenceType(select_fn.result), CLIENTS, all_equal=False)


def _rule_value_at(placement):
    def rule(d, p, attrs):
        _local(p, "the value")
        if p.contains(FunctionType):
            raise FedcTypeError(f"the value must not be a function, but has type {p}")
        return _fed(p, placement, all_equal=True)

    return rule


def _rule_zip(placement):
    def rule(d, p, attrs):
        if not isinstance(p, StructType) or len(p) == 0:
            raise FedcTypeError("the argument must be a non-empty struct of federated values")
        members = []
        for index, (name, element) in enumerate(p.items()):
            label = f"element {name or index}"
            # At SERVER the result is all-equal, so every element must be.
            element = _federated(d, element, placement, label, all_equal=True if placement is SERVER else None)
            members.append((name, element.member) if name is not None else element.member)
        all_equal = placement is SERVER
        return _fed(StructType(members), placement, all_equal=all_equal)

    return rule


def _rule_sequence_map(d, p, attrs):
    fn, seq = _struct_args(d, p, 2)
    fn = _function(fn, "the mapped function")
    if not isinstance(seq, SequenceType):
        raise FedcTypeError(f"the mapped value must be a sequence, but has type {seq}")
    _accepts(fn, seq.element, "the mapped function")
    return SequenceType(fn.result)


def _rule_sequence_reduce(d, p, attrs):
    seq, zero, op = _struct_args(d, p, 3)
    if not isinstance(seq, SequenceType):
        raise FedcTypeError(f"the reduced value must be a sequence, but has type {seq}")
    _local(zero, "zero")
    op = _function(op, "the reduction operator")
    _accepts(op, StructType([zero, seq.element]), "the reduction operator")
    zero.check_assignable_from(op.result, "result of the reduction operator (the accumulator type is zero's)")
    return zero


def _rule_sequence_sum(d, p, attrs):
    if not isinstance(p, SequenceType):
        raise FedcTypeError(f"the argument must be a sequence, but has type {p}")
    _check_leaves(p.element, _is_numeric, "the elements must be numeric tensors")
    return p.element


_FEDERATED = [
    ("federated_aggregate", "(<{T}@CLIENTS,U,(<U,T> -> U),(<U,U> -> U),(U -> R)> -> R@SERVER)",
     IntrinsicKind.AGGREGATION, _rule_aggregate, False,
     "Aggregates client values with a zero, accumulate, merge and report."),
    ("federated_apply", "(<(T -> U),T@SERVER> -> U@SERVER)", IntrinsicKind.MAP, _rule_apply, False,
     "Applies a local function to the server's value."),
    ("federated_broadcast", "(T@SERVER -> T@CLIENTS)", IntrinsicKind.BROADCAST, _rule_broadcast, False,
     "Sends the server's value to every client."),
    ("federated_eval_at_clients", "(( -> T) -> {T}@CLIENTS)", IntrinsicKind.PLACEMENT,
     _rule_eval_at(CLIENTS), False, "Evaluates a no-argument local function on every client."),
    ("federated_eval_at_server", "(( -> T) -> T@SERVER)", IntrinsicKind.PLACEMENT,
     _rule_eval_at(SERVER), False, "Evaluates a no-argument local function on the server."),
    ("federated_map", "(<(T -> U),{T}@CLIENTS> -> {U}@CLIENTS)", IntrinsicKind.MAP, _rule_map, False,
     "Applies a local function to each client's value."),
    ("federated_map_all_equal", "(<(T -> U),T@CLIENTS> -> U@CLIENTS)", IntrinsicKind.MAP,
     _rule_map_all_equal, False, "Applies a local function to an all-equal client value."),
    ("federated_mean", "({T}@CLIENTS -> T@SERVER)", IntrinsicKind.AGGREGATION,
     _rule_reduction(_is_floating, "T must be floating-point tensors or structs of them"), False,
     "The mean of the client values, at the server."),
    ("federated_weighted_mean", "(<{T}@CLIENTS,{W}@CLIENTS> -> T@SERVER)", IntrinsicKind.AGGREGATION,
     _rule_weighted_mean, False, "The mean of the client values weighted by a per-client scalar."),
    ("federated_sum", "({T}@CLIENTS -> T@SERVER)", IntrinsicKind.AGGREGATION,
     _rule_reduction(_is_numeric, "T must be numeric tensors or structs of them"), False,
     "The sum of the client values, at the server."),
    ("federated_min", "({T}@CLIENTS -> T@SERVER)", IntrinsicKind.AGGREGATION,
     _rule_reduction(lambda dt: dt.kind in "iuf", "T must be real numeric tensors or structs of them"),
     False, "The element-wise minimum of the client values, at the server."),
    ("federated_max", "({T}@CLIENTS -> T@SERVER)", IntrinsicKind.AGGREGATION,
     _rule_reduction(lambda dt: dt.kind in "iuf", "T must be real numeric tensors or structs of them"),
     False, "The element-wise maximum of the client values, at the server."),
    ("federated_secure_sum", "(<{V}@CLIENTS,M> -> V@SERVER)", IntrinsicKind.AGGREGATION,
     _rule_secure("max_input"), True,
     "The sum of integer client values in [0, max_input], by secure aggregation."),
    ("federated_secure_sum_bitwidth", "(<{V}@CLIENTS,B> -> V@SERVER)", IntrinsicKind.AGGREGATION,
     _rule_secure("bitwidth"), True,
     "The sum of integer client values in [0, 2**bitwidth), by secure aggregation."),
    ("federated_secure_modular_sum", "(<{V}@CLIENTS,M> -> V@SERVER)", IntrinsicKind.AGGREGATION,
     _rule_secure("modulus"), True,
     "The sum of integer client values in [0, modulus) modulo modulus, by secure aggregation."),
    ("federated_select", "(<{int32[n]}@CLIENTS,int32@SERVER,T@SERVER,(<T,int32> -> U)> -> {U*}@CLIENTS)",
     IntrinsicKind.SELECT, _rule_select, False,
     "Each client receives select_fn(server value, key) for each of its keys."),
    ("federated_secure_select", "(<{int32[n]}@CLIENTS,int32@SERVER,T@SERVER,(<T,int32> -> U)> -> {U*}@CLIENTS)",
     IntrinsicKind.SELECT, _rule_select, True,
     "federated_select without revealing the clients' keys to the server."),
    ("federated_value_at_clients", "(T -> T@CLIENTS)", IntrinsicKind.PLACEMENT,
     _rule_value_at(CLIENTS), False, "Places a local value at every client."),
    ("federated_value_at_server", "(T -> T@SERVER)", IntrinsicKind.PLACEMENT,
     _rule_value_at(SERVER), False, "Places a local value at the server."),
    ("federated_zip_at_clients", "(<{T}@CLIENTS,{U}@CLIENTS> -> {<T,U>}@CLIENTS)", IntrinsicKind.ZIP,
     _rule_zip(CLIENTS), False, "Turns a struct of client values into client values of structs."),
    ("federated_zip_at_server", "(<T@SERVER,U@SERVER> -> <T,U>@SERVER)", IntrinsicKind.ZIP,
     _rule_zip(SERVER), False, "Turns a struct of server values into a server value of a struct."),
    ("sequence_map", "(<(T -> U),T*> -> U*)", IntrinsicKind.SEQUENCE, _rule_sequence_map, False,
     "Applies a local function to each element of a sequence."),
    ("sequence_reduce", "(<T*,U,(<U,T> -> U)> -> U)", IntrinsicKind.SEQUENCE, _rule_sequence_reduce,
     False, "Folds a sequence with a zero and an operator."),
    ("sequence_sum", "(T* -> T)", IntrinsicKind.SEQUENCE, _rule_sequence_sum, False,
     "The sum of the elements of a sequence."),
]

for _uri, _signature, _kind, _rule, _secure, _doc in _FEDERATED:
    register(IntrinsicDef(_uri, _signature, _kind, _rule, _doc, secure=_secure))
