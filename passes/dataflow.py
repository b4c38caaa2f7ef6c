"""The dataflow graph of a federated computation, which the analyses walk.

:func:`dataflow_graph` gives it as a ``networkx.DiGraph`` whose nodes are
parameters, calls — intrinsic or not —, data and the result. The walk
(``_Dataflow``) also collects the sources of client values, the intrinsic calls
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
from typing import Optional, Union

from fedc.errors import FedcError, SourceLocation
from fedc.ir import building_blocks as bb
from fedc.ir.intrinsics import IntrinsicKind
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

from .costs import Transfer, Unknowns, _is_clients, _is_server, _natural_key, intrinsic_crossings

__all__ = [
    "as_analysable",
    "dataflow_graph",
]


# --------------------------------------------------------------------------
# Abstract values of the dataflow walk


@dataclasses.dataclass(frozen=True)
class _Leaf:
    """A value computed by graph nodes ``deps``; ``path`` is the selection taken from them."""

    deps: frozenset
    type: Type
    path: str = ""


@dataclasses.dataclass(frozen=True)
class _Pack:
    """A struct built in the IR; its elements stay separate values."""

    elements: tuple  # ((name or None, value), ...)
    type: Type


@dataclasses.dataclass(frozen=True, eq=False)
class _Closure:
    """A lambda as a value, with the environment it was defined in."""

    function: bb.Lambda
    env: dict
    prefix: str


@dataclasses.dataclass(frozen=True)
class _IntrinsicFn:
    intrinsic: bb.Intrinsic


@dataclasses.dataclass(frozen=True)
class _SymbolFn:
    name: str
    type: Type


_Value = Union[_Leaf, _Pack, _Closure, _IntrinsicFn, _SymbolFn]


def _placement(t: Optional[Type]) -> str:
    if isinstance(t, FederatedType):
        return t.placement.name
    if isinstance(t, StructType) and len(t):
        placements = {_placement(e) for e in t}
        if len(placements) == 1:
            return placements.pop()
        return "mixed"
    return "local"


def _contains_clients(t: Type) -> bool:
    return any(_is_clients(x) for x in t.walk()) if not isinstance(t, FunctionType) else False


def _has_data(t: Optional[Type]) -> bool:
    """Whether a value of type ``t`` carries any data (an empty struct carries none)."""
    if t is None:
        return False
    if isinstance(t, (TensorType, SequenceType, AbstractType)):
        return True
    if isinstance(t, FunctionType):
        return False
    return any(_has_data(child) for child in t.children())


def _is_federated_code(node: bb.Node) -> bool:
    return any(isinstance(t, FederatedType) for n in node.walk() for t in n.type_signature.walk())


# --------------------------------------------------------------------------
# The dataflow graph


@dataclasses.dataclass
class _Carrier:
    node: str
    intrinsic: str
    secure: bool


class _Dataflow:
    """Walks one computation: a networkx DiGraph of its dataflow, the sources of client values,
    the intrinsic calls that carry values to the server, and what each call moves per client."""

    def __init__(self, module: Module, symbol: str):
        import networkx as nx

        self.module = module
        self.symbol = symbol
        self.graph = nx.DiGraph(computation=symbol)
        self.sources: list[str] = []
        self.carriers: list[_Carrier] = []
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
        self.graph.add_node(node_id, kind=kind, label=shown, type=t, placement=_placement(t),
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
    def leaves(self, value: _Value, slot: tuple = (), names: tuple = ()) -> list[tuple[tuple, str, _Value]]:
        """(index slot, display slot, leaf) for each leaf of ``value``."""
        if isinstance(value, _Pack):
            out = []
            for index, (name, element) in enumerate(value.elements):
                step = f".{name}" if name is not None else f"[{index}]"
                out.extend(self.leaves(element, slot + (index,), names + (step,)))
            return out
        return [(slot, "".join(names), value)]

    def deps(self, value: _Value) -> list[tuple[str, str]]:
        """(graph node, selection path) pairs that ``value`` is computed from."""
        if isinstance(value, _Leaf):
            return [(d, value.path) for d in sorted(value.deps, key=_natural_key)]
        if isinstance(value, _Pack):
            return [d for _, e in value.elements for d in self.deps(e)]
        if isinstance(value, _Closure):
            from .util import free_references

            out = []
            for name in sorted(free_references(value.function)):
                if name in value.env:
                    out.extend(self.deps(value.env[name]))
            return out
        return []

    def leaf(self, node_id: str, t: Type) -> _Leaf:
        return _Leaf(frozenset([node_id]), t)

    # The walk -----------------------------------------------------------
    @bb.deep_recursion
    def build(self, computation: bb.Node) -> "_Dataflow":
        env: dict[str, _Value] = {}
        if isinstance(computation, bb.Lambda):
            if computation.parameter_name is not None:
                env[computation.parameter_name] = self.parameters(
                    computation.parameter_name, computation.parameter_type, computation.location)
            value = self.evaluate(computation.result, env, "")
        else:
            value = self.evaluate(computation, env, "")
        for _, shown, leaf in self.leaves(value):
            t = leaf.type if isinstance(leaf, (_Leaf, _SymbolFn)) else None
            node = self.add_node("result", f"result{shown}", t, computation.location, "")
            self.results.append(node)
            for dep, path in self.deps(leaf):
                self.add_edge(dep, node, path=path)
        return self

    def parameters(self, name: str, t: Type, location) -> _Value:
        """One source node per placed element of a struct parameter (recursively), else one."""

        def split(t: Type, label: str, top: bool) -> _Value:
            if isinstance(t, StructType) and len(t) and any(
                    isinstance(x, FederatedType) for x in t.walk()) and not isinstance(t, FederatedType):
                elements = []
                for index, (element_name, element_type) in enumerate(t.items()):
                    if top:
                        sub = element_name if element_name is not None else f"{label}[{index}]"
                    else:
                        sub = f"{label}.{element_name}" if element_name is not None else f"{label}[{index}]"
                    elements.append((element_name, split(element_type, sub, False)))
                return _Pack(tuple(elements), t)
            node = self.add_node("parameter", label, t, location, "")
            if _contains_clients(t):
                self.sources.append(node)
            return self.leaf(node, t)

        return split(t, name, True)

    def evaluate(self, node: bb.Node, env: dict, prefix: str, name: Optional[str] = None) -> _Value:
        t = node.type_signature
        if isinstance(node, bb.Reference):
            if node.name in env:
                return env[node.name]
            free = self.add_node("free", f"%{node.name}", t, node.location, prefix)
            return self.leaf(free, t)
        if isinstance(node, bb.Selection):
            source = self.evaluate(node.source, env, prefix)
            index = node.resolved_index
            if isinstance(source, _Pack):
                return source.elements[index][1]
            step = f".{node.name}" if node.name is not None else f"[{index}]"
            if isinstance(source, _Leaf):
                return _Leaf(source.deps, t, source.path + step)
            return _Leaf(frozenset(d for d, _ in self.deps(source)), t)
        if isinstance(node, bb.Struct):
            return _Pack(tuple((n, self.evaluate(e, env, prefix)) for n, e in node.elements), t)
        if isinstance(node, bb.Block):
            inner = dict(env)
            for local, value in node.locals:
                inner[local] = self.evaluate(value, inner, prefix, local)
            return self.evaluate(node.result, inner, prefix)
        if isinstance(node, bb.Call):
            return self.call(node, env, prefix, name)
        if isinstance(node, bb.Lambda):
            return _Closure(node, env, prefix)
        if isinstance(node, bb.Intrinsic):
            return _IntrinsicFn(node)
        if isinstance(node, bb.SymbolRef):
            return _SymbolFn(node.name, t)
        if isinstance(node, bb.Data):
            data = self.add_node("data", f"data {node.uri!r}", t, node.location, prefix)
            if _contains_clients(t):
                self.sources.append(data)
            return self.leaf(data, t)
        # Literals, placements, compiled functions: constants that depend on nothing.
        return _Leaf(frozenset(), t)

    def call(self, node: bb.Call, env: dict, prefix: str, name: Optional[str]) -> _Value:
        function = self.evaluate(node.function, env, prefix)
        argument = self.evaluate(node.argument, env, prefix) if node.argument is not None else None
        return self.apply(function, argument, node, prefix, name)

    def apply(self, function: _Value, argument, node: bb.Call, prefix: str, name: Optional[str]) -> _Value:
        if isinstance(function, _Closure):
            lam = function.function
            inner = dict(function.env)
            if lam.parameter_name is not None and argument is not None:
                inner[lam.parameter_name] = argument
            return self.evaluate(lam.result, inner, function.prefix)
        if isinstance(function, _IntrinsicFn):
            return self.intrinsic_call(function.intrinsic, argument, node, prefix, name)
        if isinstance(function, _SymbolFn) and function.name in self.module:
            target = self.module[function.name]
            if _is_federated_code(target) and function.name not in self.expanding:
                return self.expand(function.name, target, argument, node, prefix, name)
        return self.opaque_call(node, function, argument, prefix, name)

    def expand(self, symbol: str, target: bb.Node, argument, call: bb.Call, prefix: str, name) -> _Value:
        """A call of another federated computation of the module: its dataflow, inline."""
        self.expanding.append(symbol)
        try:
            value = self.evaluate(target, {}, f"{prefix}@{symbol}: ")
            return self.apply(value, argument, call, prefix, name)
        finally:
            self.expanding.pop()

    def callee_text(self, function: _Value, node: bb.Call) -> str:
        if isinstance(function, _SymbolFn):
            return f"@{function.name}"
        if isinstance(node.function, bb.Compiled):
            return node.function.name or "TensorFlow"
        return _atom_text(node.function) or "a function"

    def opaque_call(self, node: bb.Call, function: _Value, argument, prefix: str, name) -> _Value:
        t = node.type_signature
        callee = self.callee_text(function, node)
        label = f"%{name} (call {callee})" if name else f"call {callee}"
        fn_type = node.function.type_signature
        # A call whose function we cannot see into that takes client values and returns server values
        # (a function parameter, say) may carry them across: report it as an opaque carrier.
        crosses = (isinstance(fn_type, FunctionType) and fn_type.parameter is not None
                   and _contains_clients(fn_type.parameter)
                   and any(_is_server(x) for x in fn_type.result.walk()))
        head = self.add_node("call", label, t, node.location, prefix, callee=callee)
        for dep, path in self.deps(function):
            self.add_edge(dep, head, slot="function", path=path)
        if argument is not None:
            for _, shown, leaf in self.leaves(argument):
                carried = crosses and isinstance(leaf, _Leaf) and _contains_clients(leaf.type)
                for dep, path in self.deps(leaf):
                    self.add_edge(dep, head, slot=shown, path=path, carried=carried)
        if crosses:
            self.carriers.append(_Carrier(head, f"call {callee}", False))
            self.opaque.append(f"call {callee}" + (f" at {node.location}" if node.location else ""))
        return self.leaf(head, t)

    def intrinsic_call(self, intrinsic: bb.Intrinsic, argument, node: bb.Call, prefix: str, name) -> _Value:
        t = node.type_signature
        location = node.location or intrinsic.location
        definition = intrinsic.definition
        detail = ""
        if argument is not None and definition.kind in (IntrinsicKind.MAP, IntrinsicKind.SEQUENCE,
                                                       IntrinsicKind.PLACEMENT):
            leaves = self.leaves(argument)
            first = leaves[0][2] if leaves else None
            if isinstance(first, _SymbolFn):
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
        carries = definition.kind in (IntrinsicKind.AGGREGATION, IntrinsicKind.SELECT)
        parameter = intrinsic.type_signature.parameter
        if intrinsic.uri == "federated_aggregate" and isinstance(parameter, StructType) and len(parameter) >= 2:
            carries = _has_data(parameter[1])  # what crosses is the accumulator: an empty one tells nothing
        if argument is not None:
            for _, shown, leaf in self.leaves(argument):
                carried = (carries and isinstance(leaf, _Leaf) and _contains_clients(leaf.type)
                           and _has_data(leaf.type))
                for dep, path in self.deps(leaf):
                    self.add_edge(dep, head, slot=shown, path=path, carried=carried)
        if carries:
            self.carriers.append(_Carrier(head, intrinsic.uri, bool(definition.secure)))
        if intrinsic.uri == "federated_eval_at_clients":
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
    module = _as_module(module)
    return _Dataflow(module, symbol).build(module.lookup(symbol)).graph


def _as_module(module) -> Module:
    from fedc.computation import Computation

    if isinstance(module, Computation):
        return module.to_ir()
    if not isinstance(module, Module):
        raise FedcError(f"an analysis needs a fedc.ir.Module or a fedc.Computation, not {type(module).__name__}")
    return module


def _default_symbol(module) -> Optional[str]:
    from fedc.computation import Computation

    return module.name if isinstance(module, Computation) else None


#: The note on the computation that stands for a MapReduce form.
MAPREDUCE_NOTE = "the MapReduce form, analysed as the round it runs"


def as_analysable(module: Module) -> tuple[Module, Optional[str]]:
    """``module``, or — for a MapReduce form, whose computations are all placement-free — the
    module with the round the form runs added (``fedc.ir.mapreduce.as_round``), and its name."""
    if not len(module) or any(_is_federated_code(node) for _, node in module.items()):
        return module, None
    try:
        from fedc.ir import mapreduce

        if not mapreduce.is_map_reduce_form(module):
            return module, None
        name = "round"
        while name in module:
            name += "_"
        return mapreduce.as_round(module, name), name
    except (ImportError, FedcError):
        return module, None


def _symbols(module: Module, symbol: Optional[str]) -> tuple[Module, list, Optional[str]]:
    """The module to analyse, the symbols to report on, and the round of a MapReduce form."""
    if symbol:
        module.lookup(symbol)
        return module, [symbol], None
    module, round_name = as_analysable(module)
    if round_name is None:
        return module, module.symbols, None
    return module, [round_name] + [s for s in module.symbols if s != round_name], round_name

