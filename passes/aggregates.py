"""Building and recognising aggregations, shared by fuse-map-mean, desugar and insert-secure-aggregation.

The sum form
============

Every aggregation that computes "a report of a sum" is built, and recognised,
in one shape, the **sum form**::

    %zero       = local.zeros() {type = !<U>}            : ( -> U)
    %accumulate = fedc.lambda(%a: <U,T>) -> U { local.add(%a[0], h(%a[1])) }
    %merge      = local.add                               : (<U,U> -> U)
    %report     = fedc.lambda(%s: U) -> R { ... }
    %r          = fed.aggregate(%x, %zero, %accumulate, %merge, %report)

It computes ``report(sum over the clients of h(x))``: ``h`` (the *summands*)
runs at each client, the sums travel, ``report`` runs at the server. The
summand type ``U`` is a struct (or tensor) of numeric tensors with fully known
shapes (``zeros`` needs them). The builders use these summands:

==========================  ===========================================  =====================================
aggregation                 summands ``h(v)`` (``U``)                    report ``r(s)``
==========================  ===========================================  =====================================
``federated_sum(v)``        ``v`` (``T``)                                ``s``
``federated_mean(v)``       ``<sum=v, count=1>`` (``count`` int32)       ``s.sum / cast(s.count)`` per leaf
``federated_weighted_mean`` ``<weighted_sum=v * cast(w), weight=w>``     ``s.weighted_sum / cast(s.weight)``
``(<v, w>)``                (each leaf ``multiply(<v_leaf, cast(w)>)``,
                            the weight second)
several merged              ``<h_1(v_1), ..., h_n(v_n)>``                ``<r_1(s[0]), ..., r_n(s[n-1])>``
==========================  ===========================================  =====================================

The names ``weighted_sum``/``weight`` mark the roles of a weighted mean's
summands (insert-secure-aggregation clips weights to ``[0, weight-clip]``).
Constant summands (like ``count``'s ``1``) are recognised as constants: a sum
of a constant is the constant times the number of clients.

:func:`recognize_sum_aggregate` also accepts hand-written variants: the
accumulate may add element by element (``<add(<a[0][0], e0>), add(<a[0][1], e1>)>``,
operands in either order), the merge may be a lambda adding element by element,
the zero any all-zero constant (``zeros``, zero literals, structs of them),
and each of these may be a reference to a local bound to it.

This module also holds the helpers these passes share for computations in
call-dominant form (CDF, see ``docs/passes.md``): splitting a computation into
its locals, checking the form, resolving function operands, applying a
function by substitution, rebuilding struct-shaped values leaf by leaf,
ordering locals and sweeping the dead ones a rewrite leaves behind.
"""

from __future__ import annotations

import dataclasses
import heapq
from typing import Callable, Iterable, Optional, Sequence

import numpy as np

from fedc.errors import FedcError
from fedc.ir import building_blocks as bb
from fedc.ir import intrinsics
from fedc.ir.sums import (
    intrinsic_call_parts,
    is_summable,
    is_zero,
    match_accumulate,
    match_merge,
    struct_operands,
    tensor_leaves,
    uses_only,
)
from fedc.ir.transform import rewrite
from fedc.types import FunctionType, StructType, TensorType, Type

from .util import Names, free_references, is_atom, rename_bound, substitute

__all__ = [
    "CDFComputation",
    "SumMember",
    "build_sum_aggregate",
    "call",
    "combine_members",
    "recognize_sum_aggregate",
    "sum_member",
]

WEIGHTED_SUM = "weighted_sum"
WEIGHT = "weight"
INT32 = np.dtype(np.int32)


# --------------------------------------------------------------------------
# Small IR builders


def call(uri: str, argument: Optional[bb.Node] = None, location=None, intrinsic_location=None, **attrs) -> bb.Call:
    """``Call(Intrinsic(uri), argument)`` with the intrinsic's type inferred.

    The call carries ``location``; the intrinsic ``intrinsic_location`` (by
    default the same, which prints as one fused op).
    """
    definition = intrinsics.lookup(uri)
    normalized = definition.normalize_attrs(attrs)
    parameter = None if argument is None else argument.type_signature
    fn_type = definition.instance_type(parameter, normalized)
    where = location if intrinsic_location is None else intrinsic_location
    return bb.Call(bb.Intrinsic(uri, fn_type, attrs, where), argument, location)


def recall(original: bb.Call, uri: str, argument: bb.Node) -> bb.Call:
    """A call of ``uri`` on ``argument`` that replaces ``original``, keeping its locations."""
    intrinsic_location = original.function.location if isinstance(original.function, bb.Intrinsic) else None
    definition = intrinsics.lookup(uri)
    fn_type = definition.instance_type(argument.type_signature)
    return bb.Call(bb.Intrinsic(uri, fn_type, None, intrinsic_location), argument, original.location)


def op(uri: str, *operands: bb.Node, **attrs) -> bb.Call:
    """A local op applied to ``operands`` (a pair or triple is passed as an unnamed struct)."""
    argument = operands[0] if len(operands) == 1 else bb.Struct(list(operands))
    return call(uri, argument, **attrs)


def literal(value, dtype) -> bb.Literal:
    return bb.Literal(value, TensorType(dtype, np.shape(value)))


def cast_to(node: bb.Node, dtype) -> bb.Node:
    """``node`` converted to ``dtype`` (leaf-wise); no op when it already has it."""
    dtype = np.dtype(dtype)
    if all(leaf.dtype == dtype for _, leaf in tensor_leaves(node.type_signature)):
        return node
    return op("cast", node, dtype=dtype)


def select(node: bb.Node, index: int) -> bb.Node:
    """Element ``index`` of ``node``: the element itself for a struct literal."""
    if isinstance(node, bb.Struct):
        return node.elements[index][1]
    return bb.Selection(node, index=index)


def select_path(node: bb.Node, path: Sequence[int]) -> bb.Node:
    for index in path:
        node = select(node, index)
    return node


def rebuild_like(t: Type, leaf: Callable[[tuple, Type], bb.Node], path: tuple = ()) -> bb.Node:
    """A struct with the structure (and names) of ``t`` whose leaves are ``leaf(path, type)``."""
    if isinstance(t, StructType):
        return bb.Struct(
            [(name, rebuild_like(element, leaf, path + (index,))) for index, (name, element) in enumerate(t.items())]
        )
    return leaf(path, t)


def simplify_selections(node: bb.Node) -> bb.Node:
    """Folds selections of struct literals (left by substituting a struct for a parameter)."""

    def fold(n: bb.Node):
        if isinstance(n, bb.Selection) and isinstance(n.source, bb.Struct):
            return n.source.elements[n.resolved_index][1]
        return None

    return rewrite(node, fold)


FUNCTION_VALUES = (bb.Lambda, bb.Compiled, bb.Intrinsic, bb.SymbolRef)


def function_value(node: bb.Node, defs: dict) -> bb.Node:
    """The function a function operand denotes: references to locals bound to functions are followed."""
    for _ in range(len(defs) + 1):
        if not (isinstance(node, bb.Reference) and node.name in defs):
            return node
        value = defs[node.name]
        if not isinstance(value, FUNCTION_VALUES + (bb.Reference,)):
            return node
        node = value
    return node


def apply_fn(fn: bb.Node, argument: bb.Node, names: Names, defs: dict) -> bb.Node:
    """An expression computing ``fn(argument)``: a lambda's body with ``argument`` substituted.

    A lambda is copied with fresh binders (SSA); it is beta-reduced when
    ``argument`` is an atom of exactly its parameter type, else called. Other
    functions (compiled, intrinsics, symbols) are called; a reference to a
    local function is replaced by the function, so the result is closed.
    """
    f = function_value(fn, defs)
    if isinstance(f, bb.Lambda):
        copy = rename_bound(f, names)
        if copy.parameter_name is not None and copy.parameter_type == argument.type_signature and is_atom(argument):
            return simplify_selections(substitute(copy.result, {copy.parameter_name: argument}))
        return bb.Call(copy, argument)
    return bb.Call(f, argument)


class Bindings:
    """Let-bindings collected while building a local function body (flattening nested blocks)."""

    def __init__(self, names: Names):
        self.names = names
        self.locals: list[tuple[str, bb.Node]] = []

    def atom(self, node: bb.Node, base: str = "t") -> bb.Node:
        """``node`` as an atom: blocks are flattened into the bindings, other non-atoms bound to a name."""
        node = self.flatten(node)
        if is_atom(node):
            return node
        name = self.names.fresh(base)
        self.locals.append((name, node))
        return bb.Reference(name, node.type_signature)

    def flatten(self, node: bb.Node) -> bb.Node:
        while isinstance(node, bb.Block):
            self.locals.extend(node.locals)
            node = node.result
        return node

    def block(self, result: bb.Node) -> bb.Node:
        result = self.flatten(result)
        return bb.Block(self.locals, result) if self.locals else result


# --------------------------------------------------------------------------
# Computations in call-dominant form


@dataclasses.dataclass
class CDFComputation:
    """A computation split into the locals of its block and its result."""

    symbol: str
    node: bb.Node
    locals: list
    result: bb.Node

    @property
    def is_local(self) -> bool:
        """A placement-free computation (no federated orchestration in it)."""
        return not self.node.type_signature.is_placed and not any(
            isinstance(n, bb.Intrinsic) and n.definition.is_federated for n in self.node.walk()
        )

    def body_location(self):
        body = self.node.result if isinstance(self.node, bb.Lambda) else self.node
        return body.location if isinstance(body, bb.Block) else None

    def rebuild(self, locals: list, result: bb.Node) -> bb.Node:
        body = bb.Block(locals, result, self.body_location()) if locals else result
        if isinstance(self.node, bb.Lambda):
            return bb.Lambda(self.node.parameter_name, self.node.parameter_type, body, self.node.location)
        return body

    def defs(self) -> dict:
        return dict(self.locals)


def split(symbol: str, node: bb.Node) -> CDFComputation:
    body = node.result if isinstance(node, bb.Lambda) else node
    if isinstance(body, bb.Block):
        return CDFComputation(symbol, node, list(body.locals), body.result)
    return CDFComputation(symbol, node, [], body)


def _federated_intrinsics(node: bb.Node) -> Iterable[bb.Intrinsic]:
    return (n for n in node.walk() if isinstance(n, bb.Intrinsic) and n.definition.is_federated)


def check_cdf(computation: CDFComputation, pass_name: str) -> None:
    """Raises a FedcError unless every federated intrinsic is called as the value of a local of the block."""

    def fail(intrinsic: bb.Intrinsic, why: str) -> FedcError:
        where = f" at {intrinsic.location}" if intrinsic.location is not None else ""
        return FedcError(
            f"@{computation.symbol} is not in call-dominant form: {intrinsic.uri}{where} {why}; "
            f"run call-dominant first (e.g. \"inline,call-dominant,{pass_name}\")",
            intrinsic.location,
        )

    for _, value in computation.locals:
        if isinstance(value, bb.Call) and isinstance(value.function, bb.Intrinsic) and value.function.definition.is_federated:
            if value.argument is not None:
                for inner in _federated_intrinsics(value.argument):
                    raise fail(inner, "is nested in the argument of another call")
            continue
        for inner in _federated_intrinsics(value):
            raise fail(inner, "is not called as the value of a local of the computation's block")
    for inner in _federated_intrinsics(computation.result):
        raise fail(inner, "is in the result of the computation, not bound to a local")


def reference_uses(nodes: Iterable[bb.Node]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in nodes:
        for n in node.walk():
            if isinstance(n, bb.Reference):
                counts[n.name] = counts.get(n.name, 0) + 1
    return counts


def local_dependencies(locals: Sequence[tuple[str, bb.Node]]) -> dict[str, set[str]]:
    """name -> the locals its value refers to directly."""
    bound = {name for name, _ in locals}
    return {name: free_references(value) & bound for name, value in locals}


def transitive_dependencies(locals: Sequence[tuple[str, bb.Node]]) -> dict[str, set[str]]:
    """name -> every local it depends on, directly or not (locals are in a valid order)."""
    direct = local_dependencies(locals)
    closure: dict[str, set[str]] = {}
    for name, _ in locals:
        reach = set(direct[name])
        for d in direct[name]:
            reach |= closure.get(d, set())
        closure[name] = reach
    return closure


def topological_order(locals: Sequence[tuple[str, bb.Node]]) -> list[tuple[str, bb.Node]]:
    """The locals reordered so each comes after those it uses, keeping the given order where it can."""
    direct = local_dependencies(locals)
    position = {name: i for i, (name, _) in enumerate(locals)}
    users: dict[str, list[str]] = {name: [] for name, _ in locals}
    waiting = {name: len(deps) for name, deps in direct.items()}
    for name, deps in direct.items():
        for d in deps:
            users[d].append(name)
    ready = [position[name] for name, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        index = heapq.heappop(ready)
        name, value = locals[index]
        order.append((name, value))
        for user in users[name]:
            waiting[user] -= 1
            if waiting[user] == 0:
                heapq.heappush(ready, position[user])
    if len(order) != len(locals):
        raise ValueError("the locals have a dependency cycle")
    return order


def sweep(locals: list, result: bb.Node, candidates: Iterable[str]) -> tuple[list, int]:
    """Removes candidate locals that nothing uses any more (and what only they used)."""
    counts = reference_uses([value for _, value in locals] + [result])
    values = dict(locals)
    pending = [c for c in candidates if c in values]
    removed: set[str] = set()
    while pending:
        name = pending.pop()
        if name in removed or counts.get(name, 0) > 0:
            continue
        removed.add(name)
        for n in values[name].walk():
            if isinstance(n, bb.Reference) and n.name in values:
                counts[n.name] -= 1
                pending.append(n.name)
    return [(n, v) for n, v in locals if n not in removed], len(removed)


# --------------------------------------------------------------------------
# Sum-form aggregations: members, the builder, the recogniser


@dataclasses.dataclass
class SumMember:
    """One aggregation written as ``report(sum over clients of summands(inputs))``.

    ``inputs`` are client-placed operands; ``summands(values, names)`` builds
    the summand expression ``U`` from one member value of each input (atoms);
    ``report`` is a function ``U -> R`` (a lambda, or an operand denoting one).
    """

    name: str
    kind: str
    inputs: list
    summands: Callable[[list, Names], bb.Node]
    summand_type: Type
    report: bb.Node
    call: bb.Call

    @property
    def location(self):
        return self.call.location


def _member_type(operand: bb.Node) -> Type:
    return operand.type_signature.member


def _divide_report(value_type: Type, u: Type, total: str, count: str, names: Names, location) -> bb.Lambda:
    """``lambda s: s.total / s.count`` leaf by leaf, the count cast to each leaf's dtype (once per dtype)."""
    s = bb.Reference(names.fresh("s"), u)
    bindings = Bindings(names)
    divisors: dict = {}

    def leaf(path, t):
        if t.dtype not in divisors:
            divisors[t.dtype] = bindings.atom(cast_to(bb.Selection(s, name=count), t.dtype), count)
        return op("divide", select_path(bb.Selection(s, name=total), path), divisors[t.dtype])

    body = rebuild_like(value_type, leaf)
    return bb.Lambda(s.name, u, bindings.block(body), location)


def _mean_report(value_type: Type, names: Names, location) -> bb.Lambda:
    u = StructType([("sum", value_type), ("count", TensorType(INT32))])
    return _divide_report(value_type, u, "sum", "count", names, location)


def _weighted_report(value_type: Type, weight_type: Type, names: Names, location) -> bb.Lambda:
    u = StructType([(WEIGHTED_SUM, value_type), (WEIGHT, weight_type)])
    return _divide_report(value_type, u, WEIGHTED_SUM, WEIGHT, names, location)


def _identity(t: Type, names: Names, location) -> bb.Lambda:
    name = names.fresh("s")
    return bb.Lambda(name, t, bb.Reference(name, t), location)


def mean_summands(values: list, names: Names) -> bb.Node:
    (v,) = values
    return bb.Struct([("sum", v), ("count", literal(1, INT32))])


def weighted_summands(values: list, names: Names) -> bb.Node:
    v, w = values
    weighted = rebuild_like(
        v.type_signature, lambda path, leaf: op("multiply", select_path(v, path), cast_to(w, leaf.dtype))
    )
    return bb.Struct([(WEIGHTED_SUM, weighted), (WEIGHT, w)])


def sum_member(name: str, value: bb.Node, defs: dict, names: Names, known_shapes: bool = True) -> Optional[SumMember]:
    """The sum-form description of local ``name`` bound to ``value``, if it is a sum-like aggregation.

    Recognised: ``federated_sum``, ``federated_mean``,
    ``federated_weighted_mean`` and sum-form ``federated_aggregate`` calls
    whose summands are numeric (with fully known shapes, which building an
    aggregate's zero needs, unless ``known_shapes`` is false).
    """
    parts = intrinsic_call_parts(value)
    if parts is None:
        return None
    uri, argument = parts
    if uri in ("federated_sum", "federated_mean"):
        t = _member_type(argument)
        if uri == "federated_sum":
            if not is_summable(t, known_shapes):
                return None
            return SumMember(name, "sum", [argument], lambda vs, names: vs[0], t, _identity(t, names, value.location), value)
        u = StructType([("sum", t), ("count", TensorType(INT32))])
        if not is_summable(u, known_shapes):
            return None
        return SumMember(name, "mean", [argument], mean_summands, u, _mean_report(t, names, value.location), value)
    if uri == "federated_weighted_mean":
        operands = struct_operands(argument, 2)
        if operands is None:
            operands = [bb.Selection(argument, index=0), bb.Selection(argument, index=1)]
        t, w = _member_type(operands[0]), _member_type(operands[1])
        u = StructType([(WEIGHTED_SUM, t), (WEIGHT, w)])
        if not is_summable(u, known_shapes):
            return None
        return SumMember(
            name, "weighted_mean", operands, weighted_summands, u, _weighted_report(t, w, names, value.location), value
        )
    if uri == "federated_aggregate":
        recognised = recognize_sum_aggregate(value, defs, names)
        if recognised is None:
            return None
        x, h, report = recognised

        def summands(values, names, h=h):
            return apply_fn(h, values[0], names, {})

        return SumMember(name, "aggregate", [x], summands, h.type_signature.result, report, value)
    return None


class Inputs:
    """The client inputs of one or several aggregations, with maps folded into them.

    ``member_inputs`` lists each member's input operands. ``folds`` maps the
    name of a local bound to a map to ``(function, mapped operand)``: a
    reference to it is computed as ``function(mapped operand)`` inside the
    aggregation instead of being materialised (maps of folded maps chain; a
    map shared by several is applied once). The distinct *bases* (operands
    that are not folded maps) are zipped (``new_locals``); ``value`` is what
    the aggregation consumes.
    """

    def __init__(self, member_inputs: Sequence[Sequence[bb.Node]], names: Names, folds: Optional[dict], location):
        self.folds = folds or {}
        self.operands: list[bb.Node] = []
        for operands in member_inputs:
            for operand in operands:
                if operand not in self.operands:
                    self.operands.append(operand)
        self.bases: list[bb.Node] = []
        for operand in self.operands:
            base = self.base(operand)
            if base not in self.bases:
                self.bases.append(base)
        self.new_locals: list[tuple[str, bb.Node]] = []
        if len(self.bases) == 1:
            self.value = self.bases[0]
        else:
            zipped = call("federated_zip_at_clients", bb.Struct(self.bases), location)
            zip_name = names.fresh("zipped")
            self.new_locals.append((zip_name, zipped))
            self.value = bb.Reference(zip_name, zipped.type_signature)

    def base(self, operand: bb.Node) -> bb.Node:
        while isinstance(operand, bb.Reference) and operand.name in self.folds:
            operand = self.folds[operand.name][1]
        return operand

    def values(self, member_value: bb.Node, bindings: Bindings, names: Names, defs: dict) -> dict:
        """operand -> an atom for its value at one client, given ``member_value`` of ``self.value``."""
        if len(self.bases) == 1:
            base_values = {self.bases[0]: member_value}
        else:
            base_values = {base: select(member_value, i) for i, base in enumerate(self.bases)}
        memo: dict[str, bb.Node] = {}

        def value_of(operand: bb.Node) -> bb.Node:
            if isinstance(operand, bb.Reference) and operand.name in self.folds:
                if operand.name not in memo:
                    fn, mapped = self.folds[operand.name]
                    memo[operand.name] = bindings.atom(apply_fn(fn, value_of(mapped), names, defs))
                return memo[operand.name]
            return base_values[operand]

        return {operand: value_of(operand) for operand in self.operands}


def combine_members(
    members: Sequence[SumMember],
    names: Names,
    defs: dict,
    folds: Optional[dict] = None,
    location=None,
) -> tuple[list, bb.Node, bb.Lambda, bb.Node]:
    """One sum form for several members: ``(new locals, value operand, summands lambda, report)``.

    See :class:`Inputs` for ``folds``. The summands of several members form
    an unnamed struct; their reports are applied element by element.
    """
    inputs = Inputs([m.inputs for m in members], names, folds, location)
    member_type = inputs.value.type_signature.member
    v = bb.Reference(names.fresh("v"), member_type)
    bindings = Bindings(names)
    values = inputs.values(v, bindings, names, defs)
    parts = []
    for member in members:
        expression = member.summands([values[operand] for operand in member.inputs], names)
        parts.append(bindings.flatten(expression) if len(members) == 1 else bindings.atom(expression, "summands"))
    body = parts[0] if len(members) == 1 else bb.Struct(parts)
    summands = bb.Lambda(v.name, member_type, bindings.block(body), location)
    if len(members) == 1:
        report = members[0].report
    else:
        u = summands.type_signature.result
        s = bb.Reference(names.fresh("s"), u)
        report_bindings = Bindings(names)
        results = [
            report_bindings.flatten(apply_fn(m.report, bb.Selection(s, index=i), names, defs)) for i, m in enumerate(members)
        ]
        report = bb.Lambda(s.name, u, report_bindings.block(bb.Struct(results)), location)
    return inputs.new_locals, inputs.value, summands, report


def build_sum_aggregate(
    value: bb.Node, summands: bb.Lambda, report: bb.Node, names: Names, defs: dict, location, original: Optional[bb.Call] = None
) -> tuple[list, bb.Call]:
    """The sum-form ``federated_aggregate`` of ``report(sum of summands(value))``: (new locals, the call)."""
    u = summands.type_signature.result
    t = value.type_signature.member
    new_locals = []
    zero_name = names.fresh("zero")
    new_locals.append((zero_name, call("zeros", None, location, type=u)))
    a = bb.Reference(names.fresh("a"), StructType([u, t]))
    bindings = Bindings(names)
    summand = bindings.flatten(apply_fn(summands, bb.Selection(a, index=1), names, defs))
    # the add carries the aggregation's location: an overflow there is reported at the source's sum
    add = call("add", bb.Struct([bb.Selection(a, index=0), summand]), location)
    accumulate = bb.Lambda(a.name, a.type_signature, bindings.block(add), location)
    accumulate_name = names.fresh("accumulate")
    new_locals.append((accumulate_name, accumulate))
    merge_name = names.fresh("merge")
    new_locals.append((merge_name, bb.Intrinsic("add", FunctionType(StructType([u, u]), u), None, location)))
    if (isinstance(report, bb.Reference) and report.name in defs) or isinstance(report, bb.SymbolRef):
        report_operand = report
    else:
        report_name = names.fresh("report")
        new_locals.append((report_name, report))
        report_operand = bb.Reference(report_name, report.type_signature)
    argument = bb.Struct(
        [
            value,
            bb.Reference(zero_name, u),
            bb.Reference(accumulate_name, accumulate.type_signature),
            bb.Reference(merge_name, FunctionType(StructType([u, u]), u)),
            report_operand,
        ]
    )
    if original is not None:
        return new_locals, recall(original, "federated_aggregate", argument)
    return new_locals, call("federated_aggregate", argument, location)


def recognize_sum_aggregate(value: bb.Node, defs: dict, names: Names) -> Optional[tuple[bb.Node, bb.Lambda, bb.Node]]:
    """``(client value, summands lambda, report)`` when ``value`` is a sum-form ``federated_aggregate``.

    The summands lambda is new (fresh names); it refers to nothing bound in
    the accumulate. ``None`` when the aggregate is not a sum of something.
    """
    parts = intrinsic_call_parts(value)
    if parts is None or parts[0] != "federated_aggregate":
        return None
    operands = struct_operands(parts[1], 5)
    if operands is None:
        return None
    x, zero, accumulate, merge, report = operands
    u = zero.type_signature
    if not is_summable(u) or not is_zero(zero, defs):
        return None
    merge_fn = function_value(merge, defs)
    if isinstance(merge_fn, bb.Intrinsic):
        if merge_fn.uri != "add" or merge_fn.type_signature != FunctionType(StructType([u, u]), u):
            return None
    elif isinstance(merge_fn, bb.Lambda):
        if merge_fn.parameter_name is None or not match_merge(merge_fn.result, merge_fn.parameter_name, (), u):
            return None
    else:
        return None
    acc = function_value(accumulate, defs)
    if not isinstance(acc, bb.Lambda) or acc.parameter_name is None:
        return None
    acc = rename_bound(acc, names)
    a = acc.parameter_name
    body, prefix = acc.result, []
    if isinstance(body, bb.Block):
        if not all(uses_only(v, a, 1) for _, v in body.locals):
            return None
        prefix, body = list(body.locals), body.result
    summand = match_accumulate(body, a, (), u)
    if summand is None:
        return None
    element_type = acc.parameter_type[1]
    v = bb.Reference(names.fresh("v"), element_type)

    def replace(n: bb.Node):
        if isinstance(n, bb.Selection) and isinstance(n.source, bb.Reference) and n.source.name == a:
            return v
        return None

    h_body = rewrite(bb.Block(prefix, summand) if prefix else summand, replace)
    return x, bb.Lambda(v.name, element_type, h_body, value.location), report
