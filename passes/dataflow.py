"""The dataflow graph of a federated computation, which the analyses walk.

:func:`dataflow_graph` gives it as a ``networkx.DiGraph`` whose nodes are
parameters, calls — intrinsic or not —, data and the result. The walk
(:class:`Dataflow`, on :class:`fedc.ir.abstract.Evaluator`) also collects the sources of client values, the intrinsic calls
that carry values to the server (for :mod:`fedc.passes.privacy`) and what each
call moves per client (for :mod:`fedc.passes.costs`).

It works on any verified IR: calls of other computations of the module are
followed into them, lambdas applied at the orchestration level are
beta-reduced, and selections and structs are tracked element by element, so
that a struct parameter ``<server_weights=…@SERVER, data={…}@CLIENTS>``
gives separate sources. It is most precise on call-dominant form, where
every intrinsic call is bound to a named local. :func:`as_analysable` turns a
MapReduce form into the round it runs.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from fedc.limits import deep_recursion
from fedc.ir import mapreduce
from fedc.errors import FedcError, SourceLocation
from fedc.ir import building_blocks as bb
from fedc.ir.abstract import Closure, Evaluator, Pack, SymbolFn, leaves, placement_of
from fedc.ir.intrinsics import OperandRole, Sends
from fedc.ir.module import Module
from fedc.types import (
    AbstractType,
    FederatedType,
    FunctionType,
    SequenceType,
    StructType,
    TensorType,
    Type,
)

from .crossings import Transfer, Unknowns, intrinsic_crossings, is_clients, is_server, natural_key

__all__ = [
    "MAPREDUCE_NOTE",
    "Carrier",
    "Dataflow",
    "Leaf",
    "analysed_symbols",
    "as_analysable",
    "dataflow_graph",
    "is_federated_code",
    "require_module",
]


# --------------------------------------------------------------------------
# Abstract values of the dataflow walk (besides fedc.ir.abstract's packs, closures and function values)


@dataclasses.dataclass(frozen=True)
class Leaf:
    """A value computed by graph nodes ``deps``; ``path`` is the selection taken from them."""

    deps: frozenset
    type: Type
    path: str = ""


def _contains_clients(t: Type) -> bool:
    return any(is_clients(x) for x in t.walk()) if not isinstance(t, FunctionType) else False


def _has_data(t: Optional[Type]) -> bool:
    """Whether a value of type ``t`` carries any data (an empty struct carries none)."""
    if t is None:
        return False
    if isinstance(t, (TensorType, SequenceType, AbstractType)):
        return True
    if isinstance(t, FunctionType):
        return False
    return any(_has_data(child) for child in t.children())


def is_federated_code(node: bb.Node) -> bool:
    """Whether any node of ``node`` has a placed type (else it is local computation)."""
    return any(isinstance(t, FederatedType) for n in node.walk() for t in n.type_signature.walk())


# --------------------------------------------------------------------------
# The dataflow graph


@dataclasses.dataclass
class Carrier:
    """A graph node whose call carries client values to the server."""

    node: str
    intrinsic: str
    secure: bool


class Dataflow(Evaluator):
    """Walks one computation: a networkx DiGraph of its dataflow, the sources of client values,
    the intrinsic calls that carry values to the server, and what each call moves per client.

    The walk is :class:`fedc.ir.abstract.Evaluator`'s; the context is the prefix of the labels
    (``@symbol: `` inside a followed call)."""

    def __init__(self, module: Module, symbol: str):
        import networkx as nx

        super().__init__(module)
        self.symbol = symbol
        self.graph = nx.DiGraph(computation=symbol)
        self.sources: list[str] = []
        self.carriers: list[Carrier] = []
        self.transfers: list[Transfer] = []
        self.unknowns = Unknowns()
        self.expanding: list[str] = [symbol]
        self.results: list[str] = []
        self.opaque: list[str] = []  # calls that may cross placements, into functions we cannot see

    # Nodes --------------------------------------------------------------
    def add_node(self, kind: str, label: str, t: Type, location: Optional[SourceLocation], prefix: str,
                 **attrs) -> str:
        node_id = f"n{self.graph.number_of_nodes()}"
        shown = f"{prefix}{label}"
        self.graph.add_node(node_id, kind=kind, label=shown, type=t, placement=placement_of(t),
                            location=location, computation=self.expanding[-1], **attrs)
        return node_id

    def add_edge(self, tail: str, head: str, slot: str = "", path: str = "", carried: bool = False) -> None:
        if self.graph.has_edge(tail, head):
            data = self.graph.edges[tail, head]
            data["carried"] = data["carried"] or carried
            if slot and slot not in data["slots"]:
                data["slots"].append(slot)
            return
        self.graph.add_edge(tail, head, slots=[slot] if slot else [], path=path, carried=carried)

    # Helpers ------------------------------------------------------------
    @staticmethod
    def leaves(value) -> list[tuple[tuple, str, object]]:
        """(index slot, display slot, leaf) for each leaf of ``value``."""
        return [(indices, "".join(steps), leaf) for indices, steps, leaf in leaves(value)]

    def deps(self, value) -> list[tuple[str, str]]:
        """(graph node, selection path) pairs that ``value`` is computed from."""
        if isinstance(value, Leaf):
            return [(d, value.path) for d in sorted(value.deps, key=natural_key)]
        if isinstance(value, Pack):
            return [d for _, e in value.elements for d in self.deps(e)]
        if isinstance(value, Closure):
            from .util import free_references

            out = []
            for name in sorted(free_references(value.function)):
                if name in value.env:
                    out.extend(self.deps(value.env[name]))
            return out
        return []

    def leaf(self, node_id: str, t: Type) -> Leaf:
        return Leaf(frozenset([node_id]), t)

    # The walk -----------------------------------------------------------
    @deep_recursion
    def build(self, computation: bb.Node) -> "Dataflow":
        env: dict = {}
        if isinstance(computation, bb.Lambda):
            if computation.parameter_name is not None:
                env[computation.parameter_name] = self.parameters(
                    computation.parameter_name, computation.parameter_type, computation.location)
            value = self.evaluate(computation.result, env, "")
        else:
            value = self.evaluate(computation, env, "")
        for _, shown, leaf in self.leaves(value):
            t = leaf.type if isinstance(leaf, (Leaf, SymbolFn)) else None
            node = self.add_node("result", f"result{shown}", t, computation.location, "")
            self.results.append(node)
            for dep, path in self.deps(leaf):
                self.add_edge(dep, node, path=path)
        return self

    def parameters(self, name: str, t: Type, location):
        """One source node per placed element of a struct parameter (recursively), else one."""

        def split(t: Type, label: str, top: bool):
            if isinstance(t, StructType) and len(t) and any(
                    isinstance(x, FederatedType) for x in t.walk()) and not isinstance(t, FederatedType):
                elements = []
                for index, (element_name, element_type) in enumerate(t.items()):
                    if top:
                        sub = element_name if element_name is not None else f"{label}[{index}]"
                    else:
                        sub = f"{label}.{element_name}" if element_name is not None else f"{label}[{index}]"
                    elements.append((element_name, split(element_type, sub, False)))
                return Pack(tuple(elements), t)
            node = self.add_node("parameter", label, t, location, "")
            if _contains_clients(t):
                self.sources.append(node)
            return self.leaf(node, t)

        return split(t, name, True)

    # Hooks of the evaluator: values --------------------------------------
    def free_reference(self, node: bb.Reference, prefix: str) -> Leaf:
        return self.leaf(self.add_node("free", f"%{node.name}", node.type_signature, node.location, prefix),
                         node.type_signature)

    def select(self, source, node: bb.Selection, step: str, prefix: str) -> Leaf:
        if isinstance(source, Leaf):
            return Leaf(source.deps, node.type_signature, source.path + step)
        return Leaf(frozenset(d for d, _ in self.deps(source)), node.type_signature)

    def data(self, node: bb.Data, prefix: str, name: Optional[str]) -> Leaf:
        t = node.type_signature
        data = self.add_node("data", f"data {node.uri!r}", t, node.location, prefix)
        if _contains_clients(t):
            self.sources.append(data)
        return self.leaf(data, t)

    def constant(self, node: bb.Node, prefix: str, name: Optional[str]) -> Leaf:
        # Literals, placements, compiled functions: constants that depend on nothing.
        return Leaf(frozenset(), node.type_signature)

    # Hooks of the evaluator: calls ---------------------------------------
    def apply_symbol(self, function: SymbolFn, argument, node: bb.Call, prefix: str, name) -> object:
        if function.name in self.module:
            target = self.module[function.name]
            if is_federated_code(target) and function.name not in self.expanding:
                return self.expand(function.name, target, argument, node, prefix, name)
        return self.apply_opaque(function, argument, node, prefix, name)

    def expand(self, symbol: str, target: bb.Node, argument, call: bb.Call, prefix: str, name) -> object:
        """A call of another federated computation of the module: its dataflow, inline."""
        self.expanding.append(symbol)
        try:
            value = self.evaluate(target, {}, f"{prefix}@{symbol}: ")
            return self.apply(value, argument, call, prefix, name)
        finally:
            self.expanding.pop()

    def callee_text(self, function, node: bb.Call) -> str:
        if isinstance(function, SymbolFn):
            return f"@{function.name}"
        if isinstance(node.function, bb.Compiled):
            return node.function.name or "TensorFlow"
        return _atom_text(node.function) or "a function"

    def apply_opaque(self, function, argument, node: bb.Call, prefix: str, name) -> Leaf:
        t = node.type_signature
        callee = self.callee_text(function, node)
        label = f"%{name} (call {callee})" if name else f"call {callee}"
        fn_type = node.function.type_signature
        # A call whose function we cannot see into that takes client values and returns server values
        # (a function parameter, say) may carry them across: report it as an opaque carrier.
        crosses = (isinstance(fn_type, FunctionType) and fn_type.parameter is not None
                   and _contains_clients(fn_type.parameter)
                   and any(is_server(x) for x in fn_type.result.walk()))
        head = self.add_node("call", label, t, node.location, prefix, callee=callee)
        for dep, path in self.deps(function):
            self.add_edge(dep, head, slot="function", path=path)
        if argument is not None:
            for _, shown, leaf in self.leaves(argument):
                carried = crosses and isinstance(leaf, Leaf) and _contains_clients(leaf.type)
                for dep, path in self.deps(leaf):
                    self.add_edge(dep, head, slot=shown, path=path, carried=carried)
        if crosses:
            self.carriers.append(Carrier(head, f"call {callee}", False))
            self.opaque.append(f"call {callee}" + (f" at {node.location}" if node.location else ""))
        return self.leaf(head, t)

    def apply_intrinsic(self, intrinsic: bb.Intrinsic, argument, node: bb.Call, prefix: str, name) -> Leaf:
        t = node.type_signature
        location = node.location or intrinsic.location
        definition = intrinsic.definition
        detail = ""
        if argument is not None and definition.operands and definition.operands[0].role is OperandRole.FUNCTION:
            first = self.leaves(argument)
            first = first[0][2] if first else None
            if isinstance(first, SymbolFn):
                detail = f" @{first.name}"
        what = f"{intrinsic.uri}{detail}"
        label = f"%{name} ({what})" if name else what
        head = self.add_node("intrinsic", label, t, location, prefix, intrinsic=intrinsic.uri,
                             secure=bool(definition.secure), local=name)
        if definition.is_federated:
            where = f"{intrinsic.uri}" + (f" %{name}" if name else "") + (f" at {location}" if location else "")
            for crossing in intrinsic_crossings(intrinsic, self.unknowns, where):
                self.transfers.append(Transfer(
                    crossing.direction, intrinsic.uri, name, location, crossing.type, crossing.bytes,
                    crossing.secure, self.expanding[-1], crossing.what))
        carries = definition.uploads
        parameter = intrinsic.type_signature.parameter
        if any(rule.sends is Sends.ACCUMULATOR for rule in definition.crossings):
            # What crosses is the accumulator: an empty one tells nothing.
            zero = definition.operand_with_role(OperandRole.ZERO).name
            carries = _has_data(parameter[definition.operand_index(zero)])
        if argument is not None:
            for _, shown, leaf in self.leaves(argument):
                carried = (carries and isinstance(leaf, Leaf) and _contains_clients(leaf.type)
                           and _has_data(leaf.type))
                for dep, path in self.deps(leaf):
                    self.add_edge(dep, head, slot=shown, path=path, carried=carried)
        if carries:
            self.carriers.append(Carrier(head, intrinsic.uri, bool(definition.secure)))
        if definition.originates_at_clients:
            self.sources.append(head)  # a value computed at the clients: their data, their randomness
        return self.leaf(head, t)


def _atom_text(node: bb.Node) -> Optional[str]:
    """``%arg.g`` for a reference or a selection from one; None for anything else."""
    if isinstance(node, bb.Reference):
        return f"%{node.name}"
    if isinstance(node, bb.Selection):
        source = _atom_text(node.source)
        if source is None:
            return None
        return f"{source}.{node.name}" if node.name is not None else f"{source}[{node.resolved_index}]"
    return None


def dataflow_graph(module: Module, symbol: str):
    """The dataflow of computation ``symbol`` as a ``networkx.DiGraph``.

    Nodes (``"n0"``, ``"n1"``, …) have attributes ``kind`` (``parameter``,
    ``intrinsic``, ``call``, ``data``, ``free``, ``result``), ``label``
    (``federated_dataset``, ``%mean (federated_mean)``), ``type``,
    ``placement``, ``location``, ``computation`` (the computation the node is
    in, when a call was followed) and, for intrinsics, ``intrinsic`` and
    ``secure``. Edges have ``slots`` (which element of the argument),
    ``path`` (the selection taken) and ``carried`` (the value crosses to the
    server there).
    """
    module = require_module(module)
    return Dataflow(module, symbol).build(module.lookup(symbol)).graph


def require_module(module) -> Module:
    """``module`` if it is a :class:`Module`; else a :class:`FedcError` (an analysis takes IR: the
    API and the tools unwrap a ``fedc.Computation`` with ``to_ir()``)."""
    if not isinstance(module, Module):
        raise FedcError(f"an analysis needs a fedc.ir.Module, not {type(module).__name__}")
    return module


#: The note on the computation that stands for a MapReduce form.
MAPREDUCE_NOTE = "the MapReduce form, analysed as the round it runs"


def as_analysable(module: Module) -> tuple[Module, Optional[str]]:
    """``module``, or — for a MapReduce form, whose computations are all placement-free — the
    module with the round the form runs added (``mapreduce.as_round``), and its name."""
    if not len(module) or any(is_federated_code(node) for _, node in module.items()):
        return module, None
    try:
        if not mapreduce.is_map_reduce_form(module):
            return module, None
        name = "round"
        while name in module:
            name += "_"
        return mapreduce.as_round(module, name), name
    except FedcError:
        return module, None


def analysed_symbols(module: Module, symbol: Optional[str]) -> tuple[Module, list, Optional[str]]:
    """The module to analyse, the symbols to report on, and the round of a MapReduce form."""
    module = require_module(module)
    if symbol:
        module.lookup(symbol)
        return module, [symbol], None
    module, round_name = as_analysable(module)
    if round_name is None:
        return module, module.symbols, None
    return module, [round_name] + [s for s in module.symbols if s != round_name], round_name
