"""The federated intrinsics and sequence operations of the registry, and the registry's queries.

Each entry (:class:`IntrinsicDef`, see :mod:`fedc.ir.registry`) is defined
once, here or in :mod:`fedc.ir.local_ops`: its name (``uri``) and op name, its
polymorphic signature in TFF notation, its kind and role in a round, its
operands, what it moves between server and clients, the attributes it takes,
and its type rule, a function from the parameter type to the result type that
rejects misuse with a :class:`FedcTypeError` naming the intrinsic, the
expected and the actual type. Importing this module loads the local ops too,
so its queries (:func:`lookup`, :func:`with_kind`, :func:`with_role`, …) see
the whole registry.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from fedc.errors import FedcTypeError
from fedc.ir import local_ops  # noqa: F401  (registers the local ops, so that lookups see them)
from fedc.ir.registry import (
    AttrSpec,
    CrossingRule,
    Direction,
    IntrinsicDef,
    IntrinsicKind,
    Operand,
    OperandRole,
    Role,
    Sends,
    all_definitions,
    by_op_name,
    lookup,
    op_names,
    register,
    with_kind,
    with_role,
)
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
    "AttrSpec",
    "CrossingRule",
    "Direction",
    "IntrinsicDef",
    "IntrinsicKind",
    "NOT_A_SUM",
    "Operand",
    "OperandRole",
    "Role",
    "Sends",
    "all_definitions",
    "by_op_name",
    "lookup",
    "op_names",
    "register",
    "with_kind",
    "with_role",
]


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
        # The zipped struct keeps the Python container the struct was written with (an OrderedDict, a namedtuple).
        return _fed(StructType(members, p.python_container), placement, all_equal=all_equal)

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


# --------------------------------------------------------------------------
# The entries


def _operand(name: str, role: OperandRole = OperandRole.VALUE, placement=None) -> Operand:
    return Operand(name, placement, role)


_FN = OperandRole.FUNCTION


def _define(uri: str, op_name: str, signature: str, kind: IntrinsicKind, role: Role, rule, operands, doc: str,
            **facts) -> IntrinsicDef:
    return register(IntrinsicDef(uri, signature, kind, rule, doc, op_name=op_name, role=role,
                                 operands=tuple(operands), **facts))


def _upload(operand: str = "value", sends: Sends = Sends.MEMBER, what: str = "value") -> CrossingRule:
    return CrossingRule(Direction.TO_SERVER, operand, sends, what)


def _download(operand: str = "value", sends: Sends = Sends.MEMBER, what: str = "value") -> CrossingRule:
    return CrossingRule(Direction.TO_CLIENTS, operand, sends, what)


#: Why a plain sum, mean or weighted mean may not be made secure (its value is not numeric, say).
NOT_A_SUM = "it is not a sum of numeric client values"

_define(
    "federated_aggregate", "fed.aggregate",
    "(<{T}@CLIENTS,U,(<U,T> -> U),(<U,U> -> U),(U -> R)> -> R@SERVER)",
    IntrinsicKind.AGGREGATION, Role.AGGREGATION, _rule_aggregate,
    [_operand("value", placement=CLIENTS), _operand("zero", OperandRole.ZERO), _operand("accumulate", _FN),
     _operand("merge", _FN), _operand("report", _FN)],
    "Aggregates client values with a zero, accumulate, merge and report.",
    # Each client folds its value into the zero with accumulate and sends the accumulator to be merged.
    crossings=(_upload(sends=Sends.ACCUMULATOR, what="accumulator"),),
    mapreduce_aggregation=True,
    insecure_reason=(
        "its accumulate is not a sum (a sum-form aggregate has zero = zeros, accumulate = "
        "add(<acc, h(value)>), merge = add; see fedc.passes.aggregates)"
    ),
)
_define(
    "federated_apply", "fed.apply", "(<(T -> U),T@SERVER> -> U@SERVER)", IntrinsicKind.MAP, Role.SERVER,
    _rule_apply, [_operand("fn", _FN), _operand("arg", placement=SERVER)],
    "Applies a local function to the server's value.",
)
_define(
    "federated_broadcast", "fed.broadcast", "(T@SERVER -> T@CLIENTS)", IntrinsicKind.BROADCAST, Role.BROADCAST,
    _rule_broadcast, [_operand("value", placement=SERVER)], "Sends the server's value to every client.",
    crossings=(_download(),),
)
_define(
    "federated_eval_at_clients", "fed.eval_at_clients", "(( -> T) -> {T}@CLIENTS)", IntrinsicKind.PLACEMENT,
    Role.CLIENTS, _rule_eval_at(CLIENTS), [_operand("fn", _FN)],
    "Evaluates a no-argument local function on every client.",
    originates_at_clients=True,
)
_define(
    "federated_eval_at_server", "fed.eval_at_server", "(( -> T) -> T@SERVER)", IntrinsicKind.PLACEMENT,
    Role.SERVER, _rule_eval_at(SERVER), [_operand("fn", _FN)],
    "Evaluates a no-argument local function on the server.",
)
_define(
    "federated_map", "fed.map", "(<(T -> U),{T}@CLIENTS> -> {U}@CLIENTS)", IntrinsicKind.MAP, Role.CLIENTS,
    _rule_map, [_operand("fn", _FN), _operand("arg", placement=CLIENTS)],
    "Applies a local function to each client's value.",
)
_define(
    "federated_map_all_equal", "fed.map_all_equal", "(<(T -> U),T@CLIENTS> -> U@CLIENTS)", IntrinsicKind.MAP,
    Role.CLIENTS, _rule_map_all_equal, [_operand("fn", _FN), _operand("arg", placement=CLIENTS)],
    "Applies a local function to an all-equal client value.",
)
_define(
    "federated_mean", "fed.mean", "({T}@CLIENTS -> T@SERVER)", IntrinsicKind.AGGREGATION, Role.AGGREGATION,
    _rule_reduction(_is_floating, "T must be floating-point tensors or structs of them"),
    [_operand("value", placement=CLIENTS)], "The mean of the client values, at the server.",
    crossings=(_upload(),), mapreduce_aggregation=True, insecure_reason=NOT_A_SUM,
)
_define(
    "federated_weighted_mean", "fed.weighted_mean", "(<{T}@CLIENTS,{W}@CLIENTS> -> T@SERVER)",
    IntrinsicKind.AGGREGATION, Role.AGGREGATION, _rule_weighted_mean,
    [_operand("value", placement=CLIENTS), _operand("weight", OperandRole.WEIGHT, CLIENTS)],
    "The mean of the client values weighted by a per-client scalar.",
    crossings=(_upload(), _upload("weight", what="weight")), mapreduce_aggregation=True,
    insecure_reason=NOT_A_SUM,
)
_define(
    "federated_sum", "fed.sum", "({T}@CLIENTS -> T@SERVER)", IntrinsicKind.AGGREGATION, Role.AGGREGATION,
    _rule_reduction(_is_numeric, "T must be numeric tensors or structs of them"),
    [_operand("value", placement=CLIENTS)], "The sum of the client values, at the server.",
    crossings=(_upload(),), mapreduce_aggregation=True, insecure_reason=NOT_A_SUM,
)
for _name, _word in [("min", "minimum"), ("max", "maximum")]:
    _define(
        f"federated_{_name}", f"fed.{_name}", "({T}@CLIENTS -> T@SERVER)", IntrinsicKind.AGGREGATION,
        Role.AGGREGATION,
        _rule_reduction(lambda dt: dt.kind in "iuf", "T must be real numeric tensors or structs of them"),
        [_operand("value", placement=CLIENTS)], f"The element-wise {_word} of the client values, at the server.",
        crossings=(_upload(),), insecure_reason=f"secure aggregation computes sums, and a {_word} is not a sum",
    )
for _uri, _bound, _doc in [
    ("federated_secure_sum", "max_input", "The sum of integer client values in [0, max_input], by secure aggregation."),
    ("federated_secure_sum_bitwidth", "bitwidth",
     "The sum of integer client values in [0, 2**bitwidth), by secure aggregation."),
    ("federated_secure_modular_sum", "modulus",
     "The sum modulo modulus of integer client values, each first reduced into [0, modulus), "
     "by secure aggregation."),
]:
    _define(
        _uri, "fed." + _uri[len("federated_"):],
        "(<{V}@CLIENTS,%s> -> V@SERVER)" % ("B" if _bound == "bitwidth" else "M"),
        IntrinsicKind.AGGREGATION, Role.SECURE_AGGREGATION, _rule_secure(_bound),
        [_operand("value", placement=CLIENTS), _operand(_bound, OperandRole.BOUND)], _doc,
        secure=True, crossings=(_upload(),),
    )
_SELECT_OPERANDS = [
    _operand("client_keys", OperandRole.KEYS, CLIENTS),
    _operand("max_key", OperandRole.MAX_KEY, SERVER),
    _operand("server_val", placement=SERVER),
    _operand("select_fn", _FN),
]
_SELECT_CROSSINGS = (
    _upload("client_keys", Sends.KEYS, "keys"),
    _download("server_val", Sends.PER_KEY, "selected values"),
)
_define(
    "federated_select", "fed.select",
    "(<{int32[n]}@CLIENTS,int32@SERVER,T@SERVER,(<T,int32> -> U)> -> {U*}@CLIENTS)",
    IntrinsicKind.SELECT, Role.SELECT, _rule_select, _SELECT_OPERANDS,
    "Each client receives select_fn(server value, key) for each of its keys, which lie in [0, max_key].",
    crossings=_SELECT_CROSSINGS,
    insecure_reason="it sends each client's keys to the server in the clear (federated_secure_select does not)",
)
_define(
    "federated_secure_select", "fed.secure_select",
    "(<{int32[n]}@CLIENTS,int32@SERVER,T@SERVER,(<T,int32> -> U)> -> {U*}@CLIENTS)",
    IntrinsicKind.SELECT, Role.SELECT, _rule_select, _SELECT_OPERANDS,
    "federated_select without revealing the clients' keys (in [0, max_key]) to the server.",
    secure=True, crossings=_SELECT_CROSSINGS,
)
_define(
    "federated_value_at_clients", "fed.value_at_clients", "(T -> T@CLIENTS)", IntrinsicKind.PLACEMENT,
    Role.CLIENTS, _rule_value_at(CLIENTS), [_operand("value")], "Places a local value at every client.",
    crossings=(_download(sends=Sends.OPERAND),),
)
_define(
    "federated_value_at_server", "fed.value_at_server", "(T -> T@SERVER)", IntrinsicKind.PLACEMENT,
    Role.SERVER, _rule_value_at(SERVER), [_operand("value")], "Places a local value at the server.",
)
# The operand of a zip is a struct of values each placed at the zip's placement.
_define(
    "federated_zip_at_clients", "fed.zip_at_clients", "(<{T}@CLIENTS,{U}@CLIENTS> -> {<T,U>}@CLIENTS)",
    IntrinsicKind.ZIP, Role.CLIENTS, _rule_zip(CLIENTS), [_operand("value", placement=CLIENTS)],
    "Turns a struct of client values into client values of structs.",
)
_define(
    "federated_zip_at_server", "fed.zip_at_server", "(<T@SERVER,U@SERVER> -> <T,U>@SERVER)",
    IntrinsicKind.ZIP, Role.SERVER, _rule_zip(SERVER), [_operand("value", placement=SERVER)],
    "Turns a struct of server values into a server value of a struct.",
)
_define(
    "sequence_map", "seq.map", "(<(T -> U),T*> -> U*)", IntrinsicKind.SEQUENCE, Role.LOCAL, _rule_sequence_map,
    [_operand("fn", _FN), _operand("arg")], "Applies a local function to each element of a sequence.",
)
_define(
    "sequence_reduce", "seq.reduce", "(<T*,U,(<U,T> -> U)> -> U)", IntrinsicKind.SEQUENCE, Role.LOCAL,
    _rule_sequence_reduce, [_operand("value"), _operand("zero", OperandRole.ZERO), _operand("op", _FN)],
    "Folds a sequence with a zero and an operator.",
)
_define(
    "sequence_sum", "seq.sum", "(T* -> T)", IntrinsicKind.SEQUENCE, Role.LOCAL, _rule_sequence_sum,
    [_operand("value")], "The sum of the elements of a sequence.",
)
