"""lower-to-mapreduce: a federated round becomes a MapReduce form.

The input is a round ``(<S@SERVER,{D}@CLIENTS,...> -> <S@SERVER,X@SERVER>)``
(or ``-> S@SERVER``) in call-dominant form: a ``Lambda`` over a ``Block`` of
locals, each an intrinsic call on atoms or a placement-free value. The pass
builds the dataflow graph of the locals (networkx) and reads the round's steps
off it:

* the **update** step is everything the result needs at the server, back to
  the aggregations (and the state);
* the **aggregations** are the aggregation intrinsics the update step reaches;
  plain ones (mean, weighted mean, sum, aggregate) become one struct-valued
  zero/accumulate/merge/report, secure sums the elements of B;
* the **client work** is everything the aggregated client values need, back to
  the broadcasts (and the client data);
* the **prepare** step is everything the broadcast values need, back to the
  state; nothing there may depend on an aggregation (a MapReduce round has one
  broadcast step).

Each step is then *unplaced*: ``federated_map(f, x)`` and
``federated_apply(f, x)`` become ``f(x)``, a broadcast becomes an element of
C, zips become structs, ``value_at`` the value, and so on. Placement-free
locals (lambdas, constants, TensorFlow blocks) are copied into every part that
uses them. The result replaces the module: see :mod:`fedc.ir.mapreduce` and the
"MapReduce form" section of ``docs/passes.md``.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Optional

import networkx as nx

from fedc.errors import FedcError
from fedc.ir import building_blocks as bb
from fedc.ir import intrinsics
from fedc.ir.build import call as intrinsic_call
from fedc.ir.intrinsics import IntrinsicKind, OperandRole, Role
from fedc.ir.module import Module
from fedc.ir.transform import rename_symbols
from fedc.ir.constant import fold
from fedc.ir.mapreduce import PARTS, SECURE_GROUPS, MapReduceForm, is_map_reduce_form
from fedc.types import (
    CLIENTS,
    SERVER,
    FederatedType,
    StructType,
    TensorType,
    Type,
)

from .manager import Option, PassContext, register
from .util import Names, is_atom

__all__ = ["lower_to_mapreduce", "lower"]


# --------------------------------------------------------------------------
# What each federated intrinsic is in a round: its registry entry's role

# The secure sums' groups in B, by the secure intrinsic they sum with.
_SECURE_GROUP = {uri: group for group, _, uri in SECURE_GROUPS}


def _role(local: "_Local") -> Optional[Role]:
    """The role in a round of the intrinsic a call local calls (None for other locals)."""
    return local.definition.role if local.kind == "call" else None


def _is_aggregation(local: "_Local") -> bool:
    return _role(local) in (Role.AGGREGATION, Role.SECURE_AGGREGATION)


def _placed_anywhere(node: bb.Node) -> bool:
    return any(n.type_signature.is_placed for n in node.walk())


def _at_server(t: Type) -> bool:
    """``T@SERVER``, or a struct of such (the X of a round may be a struct of server values)."""
    if isinstance(t, FederatedType):
        return t.placement is SERVER and t.all_equal
    return isinstance(t, StructType) and all(_at_server(e) for e in t)


def _is_operand(node: bb.Node) -> bool:
    """An atom, possibly with placement-free sub-expressions (which are copied where used)."""
    if isinstance(node, (bb.Reference, bb.SymbolRef)):
        return True
    if isinstance(node, bb.Selection):
        return _is_operand(node.source)
    if isinstance(node, bb.Struct):
        return all(_is_operand(v) for _, v in node.elements)
    return not _placed_anywhere(node)


def _parts(node: bb.Node, count: int) -> list[bb.Node]:
    """The elements of a struct-valued operand (selections when it is not a struct literal)."""
    if isinstance(node, bb.Struct) and len(node) == count:
        return [v for _, v in node.elements]
    return [_select(node, i) for i in range(count)]


def _select(node: bb.Node, index: int, name: Optional[str] = None, location=None) -> bb.Node:
    if isinstance(node, bb.Struct):
        return node.elements[index][1]
    if name is not None:
        return bb.Selection(node, name=name, location=location)
    return bb.Selection(node, index=index, location=location)


def _where(node: bb.Node) -> str:
    return f" at {node.location}" if node.location is not None else ""


# --------------------------------------------------------------------------
# The round: its signature and the dataflow of its locals


@dataclasses.dataclass
class _Local:
    name: str
    value: bb.Node
    kind: str  # "unplaced" | "call" | "alias" | "data" | "other"
    uri: Optional[str] = None
    operand: Optional[bb.Node] = None

    @property
    def location(self):
        return self.value.location

    @property
    def definition(self):
        """The registry entry of the intrinsic a call local calls."""
        return intrinsics.lookup(self.uri)

    def describe(self) -> str:
        what = self.uri or ("data" if self.kind == "data" else "value")
        return f"{what} %{self.name}{_where(self.value)}"


class _NotCallDominant(Exception):
    def __init__(self, local: _Local, why: str):
        self.local = local
        self.why = why


class _Round:
    """The signature and the dataflow graph of the round ``@symbol``."""

    def __init__(self, module: Module, symbol: str, hint: str = ""):
        self.module = module
        self.symbol = symbol
        self.hint = hint
        root = module[symbol]
        self.root = root
        t = root.type_signature
        shape = "(<S@SERVER,{D}@CLIENTS> -> <S@SERVER,X@SERVER>)"
        if not isinstance(root, bb.Lambda) or root.parameter_name is None:
            raise self.fail(
                "the round's signature",
                f"@{symbol} of type {t} is not a round {shape}: a round is a function of the server state "
                "and the client data",
            )
        parameter = root.parameter_type
        self.param = root.parameter_name
        if (
            not isinstance(parameter, StructType)
            or len(parameter) < 2
            or not isinstance(parameter[0], FederatedType)
            or parameter[0].placement is not SERVER
            or not parameter[0].all_equal
        ):
            raise self.fail(
                "the round's signature",
                f"the parameter of @{symbol} has type {parameter}, not <S@SERVER,{{D}}@CLIENTS>: "
                "a MapReduce round takes the server state first, then the client data",
            )
        for index in range(1, len(parameter)):
            element = parameter[index]
            if not isinstance(element, FederatedType) or element.placement is not CLIENTS or element.all_equal:
                name = parameter.names()[index] or str(index)
                raise self.fail(
                    "the round's signature",
                    f"element {name} of the parameter of @{symbol} has type {element}, not {{D}}@CLIENTS: "
                    "after the server state a MapReduce round takes only client data "
                    "(one value per client)",
                )
        self.parameter_type = parameter
        self.state_type = parameter[0].member
        self.state_name = parameter.names()[0]
        self.client_indices = list(range(1, len(parameter)))
        if len(self.client_indices) == 1:
            self.data_type = parameter[1].member
        else:
            self.data_type = StructType(
                [(parameter.names()[i], parameter[i].member) if parameter.names()[i] else parameter[i].member
                 for i in self.client_indices]
            )
        result = t.result
        if isinstance(result, FederatedType) and result.placement is SERVER and result.all_equal:
            self.state_only = True
            new_state = result.member
        elif (
            isinstance(result, StructType)
            and len(result) >= 2
            and isinstance(result[0], FederatedType)
            and all(_at_server(e) for e in result)
        ):  # <S, X>, or <S, X1, ..., Xn> whose X is the struct <X1, ..., Xn>
            self.state_only = False
            new_state = result[0].member
        else:
            raise self.fail(
                "the server update",
                f"the result of @{symbol} has type {result}, which is not <S@SERVER,X@SERVER> "
                f"(or S@SERVER, or <S@SERVER,X1@SERVER,...>) with the state S = {self.state_type}",
            )
        if not self.state_type.is_assignable_from(new_state):
            raise self.fail(
                "the server update",
                f"the result of @{symbol} has type {result}, which is not <S@SERVER,X@SERVER>: its new state "
                f"has type {new_state}, but the state parameter has type {self.state_type}",
            )
        self.result_type = result

        body = root.result
        entries = list(body.locals) if isinstance(body, bb.Block) else []
        result_node = body.result if isinstance(body, bb.Block) else body
        self.names = Names(root)
        if not _is_operand(result_node):
            name = self.names.fresh("result")
            entries.append((name, result_node))
            result_node = bb.Reference(name, result_node.type_signature, result_node.location)
        self.result = result_node
        self.locals: dict[str, _Local] = {}
        for name, value in entries:
            self.locals[name] = self._classify(name, value)
        self.order = list(self.locals)

        # The dataflow graph: an edge u -> v when v uses u. Nodes are local names and
        # ("param", i) for the elements of the parameter.
        self.graph = nx.DiGraph()
        for index in range(len(parameter)):
            self.graph.add_node(("param", index))
        for name, local in self.locals.items():
            self.graph.add_node(name)
            for dep in self.deps(local.value):
                self.graph.add_edge(dep, name)

    def fail(self, step: str, message: str) -> FedcError:
        hint = self.hint if step == "the round's signature" else ""
        return FedcError(f"@{self.symbol} does not fit the MapReduce form ({step}): {message}{hint}")

    # -- classification

    def _classify(self, name: str, value: bb.Node) -> _Local:
        if any(isinstance(n, bb.Data) for n in value.walk()):
            return _Local(name, value, "data")
        if not _placed_anywhere(value):
            return _Local(name, value, "unplaced")
        if (
            isinstance(value, bb.Call)
            and isinstance(value.function, bb.Intrinsic)
            and value.function.definition.is_federated
            and (value.argument is None or _is_operand(value.argument))
        ):
            return _Local(name, value, "call", value.function.uri, value.argument)
        if _is_operand(value):
            return _Local(name, value, "alias", operand=value)
        return _Local(name, value, "other")

    def not_call_dominant(self) -> Optional[_Local]:
        """The first local that the result needs and that is not in call-dominant form, if any."""
        needed = self.closure(self.deps(self.result), set())
        for local in self.in_order(needed):
            if local.kind == "other":
                return local
        return None

    # -- dependencies

    def deps(self, node: bb.Node) -> set:
        """The locals and parameter elements that ``node`` uses."""
        found: set = set()
        stack = [node]
        while stack:
            n = stack.pop()
            if isinstance(n, bb.Selection) and isinstance(n.source, bb.Reference) and n.source.name == self.param:
                found.add(("param", n.resolved_index))
                continue
            if isinstance(n, bb.Reference):
                if n.name == self.param:
                    found.update(("param", i) for i in range(len(self.parameter_type)))
                elif n.name in self.locals:
                    found.add(n.name)
                continue
            stack.extend(n.children())
        return found

    def closure(self, targets: Iterable, stops: set) -> set:
        """``targets`` and everything they depend on, not looking past ``stops``."""
        view = nx.subgraph_view(self.graph, filter_edge=lambda u, v: v not in stops)
        found = set()
        for target in targets:
            found.add(target)
            if target not in stops:
                found |= nx.ancestors(view, target)
        return found

    def param_keys(self) -> set:
        return {("param", i) for i in range(len(self.parameter_type))}

    def in_order(self, keys: set) -> list[_Local]:
        return [self.locals[name] for name in self.order if name in keys]


# --------------------------------------------------------------------------
# Unplacing one step: a new computation's locals and a map from old names to new values


class _Stage:
    """Builds one placement-free part from locals of the round."""

    def __init__(self, round_: _Round, names: Names, env: dict):
        self.round = round_
        self.names = names
        self.env = dict(env)  # old name or ("param", i) -> node in this part
        self.locals: list[tuple[str, bb.Node]] = []

    def bind(self, name: str, node: bb.Node) -> bb.Reference:
        self.locals.append((name, node))
        ref = bb.Reference(name, node.type_signature)
        self.env[name] = ref
        return ref

    def fresh(self, base: str, node: bb.Node) -> bb.Reference:
        name = self.names.fresh(base)
        self.locals.append((name, node))
        return bb.Reference(name, node.type_signature)

    def alias(self, name: str, node: bb.Node) -> None:
        if is_atom(node):
            self.env[name] = node
        else:
            self.bind(name, node)

    def operand(self, node: bb.Node) -> bb.Node:
        """``node`` (an operand of the round) in this part."""
        if isinstance(node, bb.Reference):
            if node.name == self.round.param:
                raise self.round.fail(
                    "call-dominant form",
                    f"the parameter %{node.name}{_where(node)} is used whole; a round uses its state and "
                    "client data through their elements",
                )
            return self.env[node.name]
        if isinstance(node, bb.Selection):
            if isinstance(node.source, bb.Reference) and node.source.name == self.round.param:
                return self.env[("param", node.resolved_index)]
            source = self.operand(node.source)
            return _select(source, node.resolved_index, node.name, node.location)
        if isinstance(node, bb.Struct):
            return bb.Struct(
                [(n, self.operand(v)) for n, v in node.elements], node.python_container, node.location
            )
        return node  # a symbol, or a placement-free expression (its locals are copied into this part)

    def copy(self, local: _Local) -> None:
        """Adds an unplaced local, or the unplaced form of a server or client op."""
        if local.kind == "unplaced":
            self.bind(local.name, local.value)
            return
        if local.kind == "alias":
            self.alias(local.name, self.operand(local.operand))
            return
        definition = local.definition
        location = local.location
        takes_function = bool(definition.operands) and definition.operands[0].role is OperandRole.FUNCTION
        if definition.role not in (Role.SERVER, Role.CLIENTS):  # pragma: no cover - the callers check each step
            raise FedcError(f"internal: lower-to-mapreduce cannot unplace {local.uri}")
        if definition.kind is IntrinsicKind.MAP:  # apply, map, map_all_equal: f(x)
            function, value = _parts(self.operand(local.operand), 2)
            self.bind(local.name, bb.Call(function, value, location))
        elif takes_function:  # eval at a placement: f()
            self.bind(local.name, bb.Call(self.operand(local.operand), None, location))
        else:  # value_at and zip: the value itself
            self.alias(local.name, self.operand(local.operand))

    def block(self, result: bb.Node) -> bb.Node:
        return bb.Block(self.locals, result) if self.locals else result


# --------------------------------------------------------------------------
# The aggregations


@dataclasses.dataclass
class _Aggregation:
    local: _Local
    operands: list[bb.Node]  # the parts of its argument in the round

    @property
    def name(self) -> str:
        return self.local.name

    @property
    def uri(self) -> str:
        return self.local.uri

    @property
    def member(self) -> Type:
        """The aggregate's type at the server, unplaced."""
        return self.local.value.type_signature.member

    @property
    def value_type(self) -> Type:
        return self.operands[0].type_signature.member


def _scalars_like(t: Type) -> Type:
    """``t`` with each tensor leaf replaced by a scalar of its dtype (the per-leaf counts of a mean)."""
    if isinstance(t, StructType):
        return StructType([(n, _scalars_like(e)) if n else _scalars_like(e) for n, e in t.items()])
    return TensorType(t.dtype)


def _require_known_shapes(round_: _Round, aggregation: _Aggregation) -> None:
    t = aggregation.value_type
    for leaf in t.walk():
        if isinstance(leaf, TensorType) and not leaf.is_fully_defined():
            raise round_.fail(
                "the aggregation",
                f"{aggregation.local.describe()} aggregates values of type {t}, whose shape is not fully "
                f"known{'' if leaf is t else f' ({leaf})'}: the zero of the form's aggregation needs known shapes "
                "(give the tensors static shapes, or use federated_aggregate with your own zero)",
            )


def _weights_like(stage: _Stage, t: Type, weight: bb.Node, base: str) -> bb.Node:
    """``weight`` cast to the dtype of each leaf of ``t``, in a struct shaped like ``t``."""
    casts: dict = {}

    def leaf(dtype) -> bb.Node:
        if weight.type_signature.dtype == dtype:
            return weight
        if dtype not in casts:
            casts[dtype] = stage.fresh(f"{base}_weight", intrinsic_call("cast", weight, dtype=dtype))
        return casts[dtype]

    def build(x: Type) -> bb.Node:
        if isinstance(x, StructType):
            return bb.Struct([(n, build(e)) for n, e in x.items()])
        return leaf(x.dtype)

    return build(t)


# --------------------------------------------------------------------------
# The lowering


def _helpers(module: Module, parts: dict[str, bb.Node], exclude: str) -> list[tuple[str, bb.Node]]:
    """The computations of ``module`` that the parts refer to, transitively, in module order."""
    needed: set[str] = set()
    stack = [n.name for node in parts.values() for n in node.walk() if isinstance(n, bb.SymbolRef)]
    while stack:
        symbol = stack.pop()
        if symbol in needed:
            continue
        needed.add(symbol)
        stack.extend(n.name for n in module[symbol].walk() if isinstance(n, bb.SymbolRef))
    return [(s, node) for s, node in module.items() if s in needed and s != exclude]


def _literal(value, t: Type) -> bb.Node:
    if isinstance(t, StructType):
        return bb.Struct([(n, _literal(v, e)) for (n, e), v in zip(t.items(), value)])
    return bb.Literal(value, t)


def lower(module: Module, symbol: str, ctx: Optional[PassContext] = None, hint: str = "") -> Module:
    """The MapReduce form module of the round ``@symbol`` of ``module``."""
    from fedc.ir.verifier import verify

    stat = ctx.stat if ctx is not None else (lambda *a: None)
    round_ = _Round(module, symbol, hint)
    bad = round_.not_call_dominant()
    if bad is not None:
        raise round_.fail(
            "call-dominant form",
            f"local %{bad.name}{_where(bad.value)} is not an intrinsic call on atoms or a placement-free "
            "value; run inline,call-dominant first (the pipeline to-mapreduce does)",
        )
    R = round_
    params = R.param_keys()
    aggregation_names = {n for n, l in R.locals.items() if _is_aggregation(l)}
    broadcast_names = {n for n, l in R.locals.items() if _role(l) is Role.BROADCAST}

    # -- the server update: what the result needs, back to the aggregations and the state
    update_keys = R.closure(R.deps(R.result), aggregation_names | params)
    for local in R.in_order(update_keys):
        _check_data(R, local)
        if _role(local) is Role.AGGREGATION and not local.definition.mapreduce_aggregation:
            raise R.fail(
                "the aggregation",
                f"a client value reaches the server through {local.uri} (%{local.name}{_where(local.value)}), "
                "which the MapReduce form cannot aggregate: its aggregation is zero/accumulate/merge/report "
                "(federated_aggregate, sum, mean, weighted mean) and the secure sums",
            )
        if local.kind == "call" and local.name not in aggregation_names and _role(local) is not Role.SERVER:
            raise R.fail("the server update", f"{local.describe()} cannot run at the server after the aggregation")
    aggregations = [
        _Aggregation(l, _parts(l.operand, len(l.definition.operands)) if len(l.definition.operands) > 1
                     else [l.operand])
        for l in R.in_order(update_keys & aggregation_names)
    ]
    plain = [a for a in aggregations if a.local.definition.role is Role.AGGREGATION]
    secure = [a for a in aggregations if a.local.definition.role is Role.SECURE_AGGREGATION]

    # -- the client work: what the aggregated client values need, back to the broadcasts and the data
    client_operands = []
    for a in aggregations:
        client_operands += [o for o, spec in zip(a.operands, a.local.definition.operands) if spec.placement is CLIENTS]
    work_targets = set().union(*(R.deps(o) for o in client_operands)) if client_operands else set()
    select_names = {n for n, l in R.locals.items() if _role(l) is Role.SELECT}
    work_keys = R.closure(work_targets, broadcast_names | params | aggregation_names | select_names)
    for local in R.in_order(work_keys):
        _check_data(R, local)
        if local.kind != "call" or _role(local) in (Role.CLIENTS, Role.BROADCAST):
            continue
        if _role(local) is Role.SELECT:
            raise R.fail(
                "the client work",
                f"{local.describe()} sends clients parts of a server value chosen by their keys: the MapReduce "
                "form's only way from the server to the clients is its one broadcast step",
            )
        raise R.fail("the client work", f"{local.describe()} cannot run in the client work")
    broadcasts = R.in_order(work_keys & broadcast_names)

    # -- the broadcast step: what the broadcast values need, back to the state
    prepare_keys: set = set()
    for b in broadcasts:
        before = nx.ancestors(R.graph, b.name) & aggregation_names
        if before:
            cause = R.in_order(before)[-1]
            raise R.fail(
                "the broadcast step",
                f"a second broadcast %{b.name}{_where(b.value)} depends on the result of "
                f"{cause.describe()}: a MapReduce round has one broadcast step, before the client work "
                "and its aggregation",
            )
        prepare_keys |= R.closure(R.deps(b.operand), params)
    for local in R.in_order(prepare_keys):
        _check_data(R, local)
        if local.kind == "call" and _role(local) is not Role.SERVER:
            raise R.fail("the broadcast step", f"{local.describe()} cannot run at the server before the broadcast")

    names = R.names
    names.used |= set(PARTS)
    for a in plain:
        if a.local.definition.operand_with_role(OperandRole.ZERO) is None:  # its zero is built from the type
            _require_known_shapes(R, a)

    parts: dict[str, bb.Node] = {}

    # prepare: (S -> C)
    state = names.fresh(R.state_name or "state")
    stage = _Stage(R, names, {("param", 0): bb.Reference(state, R.state_type)})
    for local in R.in_order(prepare_keys):
        stage.copy(local)
    broadcast_value = bb.Struct([(b.name, stage.operand(b.operand)) for b in broadcasts])
    parts["prepare"] = bb.Lambda(state, R.state_type, stage.block(broadcast_value))
    c_type = broadcast_value.type_signature

    # work: (<D,C> -> <A,B>)
    work_name = names.fresh("input")
    work_param_type = StructType([R.data_type, c_type])
    work_in = bb.Reference(work_name, work_param_type)
    data = bb.Selection(work_in, index=0)
    env: dict = {}
    if len(R.client_indices) == 1:
        env[("param", R.client_indices[0])] = data
    else:
        for position, index in enumerate(R.client_indices):
            env[("param", index)] = _select(data, position, R.parameter_type.names()[index])
    for b in broadcasts:
        env[b.name] = bb.Selection(bb.Selection(work_in, index=1), name=b.name)
    stage = _Stage(R, names, env)
    for local in R.in_order(work_keys - broadcast_names):
        stage.copy(local)
    a_elements = []
    for a in plain:
        if a.uri == "federated_weighted_mean":
            a_elements.append((a.name, bb.Struct([stage.operand(a.operands[0]), stage.operand(a.operands[1])])))
        else:
            a_elements.append((a.name, stage.operand(a.operands[0])))
    b_groups = []
    for group, _, uri in SECURE_GROUPS:
        b_groups.append((group, bb.Struct([(a.name, stage.operand(a.operands[0])) for a in secure if a.uri == uri])))
    a_value, b_value = bb.Struct(a_elements), bb.Struct(b_groups)
    parts["work"] = bb.Lambda(work_name, work_param_type, stage.block(bb.Struct([a_value, b_value])))
    a_type, b_type = a_value.type_signature, b_value.type_signature

    # zero, accumulate, merge, report
    def unplaced_stage(operand_nodes: list[bb.Node], env: Optional[dict] = None) -> _Stage:
        stage = _Stage(R, names, env or {})
        targets = set().union(*(R.deps(o) for o in operand_nodes)) if operand_nodes else set()
        for local in R.in_order(R.closure(targets, params)):
            _check_data(R, local)
            stage.copy(local)
        return stage

    stage = unplaced_stage([a.operands[1] for a in plain if a.uri == "federated_aggregate"])
    zeros = []
    for a in plain:
        if a.uri == "federated_aggregate":
            zero = stage.operand(a.operands[1])
        elif a.uri == "federated_sum":
            zero = intrinsic_call("zeros", type=a.value_type)
        else:
            zero = intrinsic_call("zeros", type=StructType([a.value_type, _scalars_like(a.value_type)]))
        zeros.append((a.name, stage.bind(a.name, zero) if not is_atom(zero) else zero))
    zero_value = bb.Struct(zeros)
    parts["zero"] = bb.Lambda(None, None, stage.block(zero_value))
    u_type = zero_value.type_signature

    accumulate_name = names.fresh("accumulator_and_input")
    acc_in = bb.Reference(accumulate_name, StructType([u_type, a_type]))
    stage = unplaced_stage([a.operands[2] for a in plain if a.uri == "federated_aggregate"])
    results = []
    for a in plain:
        u = bb.Selection(bb.Selection(acc_in, index=0), name=a.name)
        x = bb.Selection(bb.Selection(acc_in, index=1), name=a.name)
        location = a.local.location
        if a.uri == "federated_aggregate":
            value = bb.Call(stage.operand(a.operands[2]), bb.Struct([u, x]), location)
        elif a.uri == "federated_sum":
            value = intrinsic_call("add", bb.Struct([u, x]), location=location)
        elif a.uri == "federated_mean":
            ones = stage.fresh(f"{a.name}_one", intrinsic_call("ones", type=_scalars_like(a.value_type)))
            value = intrinsic_call("add", bb.Struct([u, bb.Struct([x, ones])]), location=location)
        else:  # weighted mean: <sum of w * x, sum of w>, w cast to each leaf's dtype; no w below 0
            xs, ws = bb.Selection(x, index=0), bb.Selection(x, index=1)
            zero_weight = stage.fresh(f"{a.name}_no_weight", intrinsic_call("zeros", type=ws.type_signature))
            valid = stage.fresh(f"{a.name}_weight_valid",
                                intrinsic_call("greater_equal", bb.Struct([ws, zero_weight])))
            ws = stage.fresh(f"{a.name}_weight", intrinsic_call(
                "check", bb.Struct([valid, ws]), location=location,
                message="federated_weighted_mean: a client's weight is negative; weights are counts or "
                        "importances, at least 0"))
            weights = _weights_like(stage, a.value_type, ws, a.name)
            weighted = stage.fresh(f"{a.name}_weighted", intrinsic_call("multiply", bb.Struct([xs, weights])))
            value = intrinsic_call("add", bb.Struct([u, bb.Struct([weighted, weights])]), location=location)
        results.append((a.name, stage.bind(a.name, value)))
    parts["accumulate"] = bb.Lambda(accumulate_name, acc_in.type_signature, stage.block(bb.Struct(results)))

    merge_name = names.fresh("accumulators")
    merge_in = bb.Reference(merge_name, StructType([u_type, u_type]))
    stage = unplaced_stage([a.operands[3] for a in plain if a.uri == "federated_aggregate"])
    results = []
    for a in plain:
        pair = bb.Struct([bb.Selection(bb.Selection(merge_in, index=i), name=a.name) for i in (0, 1)])
        if a.uri == "federated_aggregate":
            value = bb.Call(stage.operand(a.operands[3]), pair, a.local.location)
        else:
            value = intrinsic_call("add", pair, location=a.local.location)
        results.append((a.name, stage.bind(a.name, value)))
    parts["merge"] = bb.Lambda(merge_name, merge_in.type_signature, stage.block(bb.Struct(results)))

    report_name = names.fresh("accumulator")
    report_in = bb.Reference(report_name, u_type)
    stage = unplaced_stage([a.operands[4] for a in plain if a.uri == "federated_aggregate"])
    results = []
    for a in plain:
        u = bb.Selection(report_in, name=a.name)
        if a.uri == "federated_aggregate":
            value = stage.bind(a.name, bb.Call(stage.operand(a.operands[4]), u, a.local.location))
        elif a.uri == "federated_sum":
            value = u
        else:  # mean, weighted mean: the sum over the count (or the weights), which must not be 0
            total, count = bb.Selection(u, index=0), bb.Selection(u, index=1)
            none = stage.fresh(f"{a.name}_none", intrinsic_call("zeros", type=count.type_signature))
            some = stage.fresh(f"{a.name}_some", intrinsic_call("greater", bb.Struct([count, none])))
            message = ("federated_mean over zero clients has no value" if a.uri == "federated_mean" else
                       "federated_weighted_mean: the clients' weights sum to 0, so the mean has no value "
                       "(TFF would return NaN here; fedc refuses)")
            count = stage.fresh(f"{a.name}_count", intrinsic_call(
                "check", bb.Struct([some, count]), location=a.local.location, message=message))
            value = stage.bind(a.name, intrinsic_call("divide", bb.Struct([total, count]), location=a.local.location))
        results.append((a.name, value))
    report_value = bb.Struct(results)
    parts["report"] = bb.Lambda(report_name, u_type, stage.block(report_value))
    r_type = StructType([(a.name, a.member) for a in plain])

    # the secure sums' bounds: constants, evaluated now
    for group, part, uri in SECURE_GROUPS:
        elements = []
        for a in secure:
            if a.uri != uri:
                continue
            bound = a.operands[1]
            stage = unplaced_stage([bound])
            try:
                literal = _literal(fold(stage.block(stage.operand(bound)), module), bound.type_signature)
            except FedcError as e:
                raise R.fail(
                    "the secure sums",
                    f"the bound of {a.local.describe()} is not a constant: {e.message}",
                ) from None
            elements.append((a.name, literal))
        parts[part] = bb.Struct(elements)

    # update: (<S,<R,SB>> -> <S,X>)
    update_name = names.fresh("state_and_aggregates")
    update_param_type = StructType([R.state_type, StructType([r_type, b_type])])
    update_in = bb.Reference(update_name, update_param_type)
    env = {("param", 0): bb.Selection(update_in, index=0)}
    aggregates = bb.Selection(update_in, index=1)
    for a in plain:
        env[a.name] = bb.Selection(bb.Selection(aggregates, index=0), name=a.name)
    for a in secure:
        group = _SECURE_GROUP[a.uri]
        env[a.name] = bb.Selection(bb.Selection(bb.Selection(aggregates, index=1), name=group), name=a.name)
    stage = _Stage(R, names, env)
    for local in R.in_order(update_keys - aggregation_names):
        stage.copy(local)
    result = stage.operand(R.result)
    if R.state_only:
        new_state = bb.Struct([result, bb.Struct([])])
    else:
        result_names = R.result_type.names()
        values = _parts(result, len(result_names))
        if len(values) == 2:
            new_state = bb.Struct([(result_names[i], values[i]) for i in range(2)])
        else:
            outputs = bb.Struct([(result_names[i], values[i]) for i in range(1, len(values))])
            new_state = bb.Struct([(result_names[0], values[0]), outputs])
    parts["update"] = bb.Lambda(update_name, update_param_type, stage.block(new_state))

    # the module: helper computations the parts use, then the parts
    helpers = _helpers(module, parts, exclude=symbol)
    renames = {}
    taken = set(PARTS) | {s for s, _ in helpers}
    for s, _ in helpers:
        if s in PARTS:
            suffix = 1
            while f"{s}_{suffix}" in taken:
                suffix += 1
            renames[s] = f"{s}_{suffix}"
            taken.add(renames[s])
    table = [(renames.get(s, s), rename_symbols(node, renames)) for s, node in helpers]
    table += [(p, rename_symbols(parts[p], renames)) for p in PARTS]
    form_module = Module(module.name, table)
    verify(form_module)
    MapReduceForm(form_module)  # the parts fit together
    stat("broadcasts", len(broadcasts))
    stat("aggregations", len(plain))
    stat("secure-sums", len(secure))
    return form_module


def _check_data(round_: _Round, local: _Local) -> None:
    if local.kind != "data":
        return
    data = next(n for n in local.value.walk() if isinstance(n, bb.Data))
    raise round_.fail(
        "the round's inputs",
        f"%{local.name}{_where(local.value)} uses data {data.uri!r} of type {data.type_signature}: "
        "a MapReduce round reads its inputs only from its parameter (the server state and the "
        "client data), so a Data node has no place in the form",
    )


@register("lower-to-mapreduce", options={
    "entry": Option(str, "", "the round to lower (default: the module's last computation)"),
})
def lower_to_mapreduce(module: Module, ctx: PassContext, entry: str = "") -> Module:
    """Lowers a round (<S@SERVER,{D}@CLIENTS> -> <S@SERVER,X@SERVER>) to a MapReduce form module.

    The module is replaced by the form: @prepare, @work, @zero, @accumulate,
    @merge, @report, @secure_sum_bitwidth, @secure_sum_max_input,
    @secure_modular_sum_modulus and @update, placement-free, plus the helper
    computations they use (see docs/passes.md, "MapReduce form"). A module
    that already is a MapReduce form is returned unchanged. The round must be
    in call-dominant form: the named pipeline to-mapreduce
    (inline,call-dominant,lower-to-mapreduce) brings it there first.
    """
    if is_map_reduce_form(module):
        return module
    if not len(module):
        raise FedcError(f"module @{module.name} has no computation to lower to a MapReduce form")
    symbol = entry or module.symbols[-1]
    if symbol not in module:
        module.lookup(symbol)  # raises, naming close matches
    hint = "" if entry or len(module) == 1 else (
        " (the pass lowers the module's last computation; name the round with lower-to-mapreduce{entry=NAME})"
    )
    return lower(module, symbol, ctx, hint)
