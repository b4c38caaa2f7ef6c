"""Analyses of federated computations: where client values go, and what a round costs.

* :func:`privacy_report` builds the dataflow graph of each computation (a
  ``networkx.DiGraph`` whose nodes are parameters, calls — intrinsic or not —,
  data and the result) and lists every way a CLIENTS-placed value (a client
  parameter, client data, a value computed at the clients by
  ``federated_eval_at_clients``) reaches the server: for each client source and
  each intrinsic that carries a value across to the server (an aggregation —
  ``federated_mean``, ``federated_sum``, ``federated_weighted_mean``,
  ``federated_min``, ``federated_max``, ``federated_aggregate`` —, a secure
  sum — ``federated_secure_sum``, ``federated_secure_sum_bitwidth``,
  ``federated_secure_modular_sum`` — or the client keys of a
  ``federated_select``), one :class:`Flow` with the carrier's source location
  and a path from the source to the carrier.

  The pass ``privacy-report`` runs it and records the number of flows as
  statistics (``plain-flows``, ``secure-flows``); ``fedc compile --report
  privacy`` prints :meth:`PrivacyReport.text`.

* :func:`communication_cost` adds up, from the types alone, the bytes each
  client receives from the server per round (``federated_broadcast``, the
  results of ``federated_select``, ``federated_value_at_clients``) and the
  bytes it sends (the inputs of aggregations and secure sums — for
  ``federated_aggregate`` the accumulator each client folds its value into —,
  the keys of ``federated_select``), per intrinsic call and in total. A dimension that the
  type leaves unknown (``float32[?,784]``) becomes a symbol (``d0``), the
  length of a sequence another (``n0``), and the sizes are polynomials
  (:class:`Bytes`) in them, with a legend saying where each symbol comes
  from. ``fedc compile --report cost`` prints :meth:`CostReport.text`;
  ``fedc viz`` labels the edges that cross between clients and server with
  their bytes.

Both work on any verified IR: calls of other computations of the module are
followed into them, lambdas applied at the orchestration level are
beta-reduced, and selections and structs are tracked element by element, so
that a struct parameter ``<server_weights=…@SERVER, data={…}@CLIENTS>``
gives separate sources. They are most precise on call-dominant form, where
every intrinsic call is bound to a named local.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from typing import Any, Optional, Union

import numpy as np

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

from .manager import Option, PassContext, register

__all__ = [
    "Bytes",
    "ComputationCost",
    "ComputationPrivacy",
    "CostReport",
    "Crossing",
    "Flow",
    "PrivacyReport",
    "Transfer",
    "Unknowns",
    "communication_cost",
    "dataflow_graph",
    "intrinsic_crossings",
    "privacy_report",
    "bytes_label",
    "type_bytes",
]

BROADCAST = "broadcast"  # server -> client
UPLOAD = "upload"  # client -> server


# --------------------------------------------------------------------------
# Byte counts: polynomials with integer coefficients over named unknowns


def _natural_key(name: str):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


class Bytes:
    """A number of bytes: a polynomial with integer coefficients in named unknowns.

    ``Bytes(40)``, ``Bytes.symbol("d0")``; ``+`` and ``*`` combine them;
    ``str`` gives ``3136*d0 + 40``; a constant compares equal to its int and
    converts with ``int()``; :meth:`evaluate` substitutes values.
    """

    __slots__ = ("terms",)

    def __init__(self, value: Union[int, dict, "Bytes"] = 0):
        if isinstance(value, Bytes):
            terms = dict(value.terms)
        elif isinstance(value, dict):
            terms = {tuple(sorted(k, key=_natural_key)): int(v) for k, v in value.items() if v}
        else:
            terms = {(): int(value)} if int(value) else {}
        object.__setattr__(self, "terms", terms)

    def __setattr__(self, key, value):
        raise AttributeError("Bytes is immutable")

    @classmethod
    def symbol(cls, name: str) -> "Bytes":
        return cls({(name,): 1})

    # Arithmetic ---------------------------------------------------------
    def __add__(self, other) -> "Bytes":
        other = _as_bytes(other)
        if other is NotImplemented:
            return other
        terms = dict(self.terms)
        for monomial, coefficient in other.terms.items():
            terms[monomial] = terms.get(monomial, 0) + coefficient
        return Bytes(terms)

    __radd__ = __add__

    def __mul__(self, other) -> "Bytes":
        other = _as_bytes(other)
        if other is NotImplemented:
            return other
        terms: dict[tuple, int] = {}
        for m1, c1 in self.terms.items():
            for m2, c2 in other.terms.items():
                monomial = tuple(sorted(m1 + m2, key=_natural_key))
                terms[monomial] = terms.get(monomial, 0) + c1 * c2
        return Bytes(terms)

    __rmul__ = __mul__

    # Queries ------------------------------------------------------------
    @property
    def is_constant(self) -> bool:
        return all(not m for m in self.terms)

    @property
    def symbols(self) -> list[str]:
        """The unknowns this polynomial uses, in natural order."""
        return sorted({s for m in self.terms for s in m}, key=_natural_key)

    def __int__(self) -> int:
        if not self.is_constant:
            raise FedcError(f"{self} bytes is not a number: it depends on {', '.join(self.symbols)}")
        return self.terms.get((), 0)

    def evaluate(self, values: Optional[dict[str, int]] = None, **more: int) -> "Bytes":
        """The polynomial with the given unknowns replaced by numbers (an int if none is left)."""
        values = dict(values or {}, **more)
        result = Bytes(0)
        for monomial, coefficient in self.terms.items():
            term = Bytes(coefficient)
            for s in monomial:
                term = term * (values[s] if s in values else Bytes.symbol(s))
            result = result + term
        return result

    def __eq__(self, other) -> bool:
        other = _as_bytes(other)
        if other is NotImplemented:
            return False
        return self.terms == other.terms

    def __hash__(self) -> int:
        return hash(frozenset(self.terms.items()))

    def __str__(self) -> str:
        if not self.terms:
            return "0"

        def order(item):
            monomial, _ = item
            return (-len(monomial), [_natural_key(s) for s in monomial])

        parts = []
        for monomial, coefficient in sorted(self.terms.items(), key=order):
            factors = ([str(abs(coefficient))] if abs(coefficient) != 1 or not monomial else []) + list(monomial)
            text = "*".join(factors)
            if parts:
                parts.append(("- " if coefficient < 0 else "+ ") + text)
            else:
                parts.append(("-" if coefficient < 0 else "") + text)
        return " ".join(parts)

    def __repr__(self) -> str:
        return f"Bytes({str(self)!r})"


def _as_bytes(value) -> "Bytes":
    if isinstance(value, Bytes):
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return Bytes(int(value))
    return NotImplemented


class Unknowns:
    """Names for the unknown quantities of one report: ``d0`` (dimensions), ``n0`` (sequence
    lengths), ``k0`` (key counts), ``e0`` (elements of a tensor of unknown rank), ``s0`` (bytes of a
    string), ``t0`` (bytes of an abstract type); with a legend saying where each comes from."""

    def __init__(self):
        self.legend: dict[str, str] = {}
        self.counts: Counter = Counter()

    def new(self, prefix: str, description: str) -> Bytes:
        name = f"{prefix}{self.counts[prefix]}"
        self.counts[prefix] += 1
        self.legend[name] = description
        return Bytes.symbol(name)


def _join_path(path: str, step: str) -> str:
    return f"{path}{step}"


def _in(path: str, t: Type) -> str:
    """``float32[?,784]`` or ``.x (float32[?,784])``: a part of a value and its type."""
    return f"{path} ({t})" if path else str(t)


def type_bytes(t: Type, unknowns: Optional[Unknowns] = None, where: str = "the value", path: str = "") -> Bytes:
    """The bytes a value of type ``t`` takes: dtype size times elements, summed over structs.

    A sequence counts its element times an unknown length; unknown dimensions,
    unknown ranks, strings and abstract types are unknowns too (named in
    ``unknowns``'s legend, described as being in ``where``). Functions and
    placements carry no data (0 bytes).
    """
    unknowns = unknowns if unknowns is not None else Unknowns()
    shown = path or ""
    if isinstance(t, FederatedType):
        return type_bytes(t.member, unknowns, where, path)
    if isinstance(t, TensorType):
        if t.dtype.kind in "USOV":
            size = unknowns.new("s", f"bytes of a string in {_in(shown, t)} in {where}")
        else:
            size = Bytes(t.dtype.itemsize)
        if t.shape is None:
            return size * unknowns.new("e", f"number of elements of {_in(shown, t)} (unknown rank) in {where}")
        count = Bytes(1)
        for axis, dim in enumerate(t.shape):
            if dim is None:
                count = count * unknowns.new("d", f"dimension {axis} of {_in(shown, t)} in {where}")
            else:
                count = count * dim
        return size * count
    if isinstance(t, StructType):
        total = Bytes(0)
        for index, (name, element) in enumerate(t.items()):
            step = f".{name}" if name is not None else f"[{index}]"
            total = total + type_bytes(element, unknowns, where, _join_path(path, step))
        return total
    if isinstance(t, SequenceType):
        length = unknowns.new("n", f"length of the sequence {_in(shown, t)} in {where}")
        inner = f"each element of the sequence {shown} in {where}" if shown else f"each sequence element in {where}"
        return length * type_bytes(t.element, unknowns, inner, "")
    if isinstance(t, AbstractType):
        return unknowns.new("t", f"bytes of {_in(shown, t)} (an abstract type) in {where}")
    return Bytes(0)  # functions and placements


# --------------------------------------------------------------------------
# Which intrinsic moves what between clients and server

# The names of the argument elements of intrinsics that take several client values.
_ROLES = {"federated_weighted_mean": ("value", "weight")}


@dataclasses.dataclass(frozen=True)
class Crossing:
    """What one call of an intrinsic moves between server and clients, per client.

    ``direction`` is ``"broadcast"`` (server -> client) or ``"upload"``
    (client -> server); ``slot`` is the position in the intrinsic's argument of
    the value that crosses (``()`` the whole argument, ``(0,)`` its first
    element); ``type`` is what one client receives or sends; ``bytes`` its size.
    """

    direction: str
    slot: tuple
    type: Type
    bytes: Bytes
    secure: bool
    what: str = ""  # which input or output crosses: "value", "weight", "keys", "selected values"


def _member(t: Type) -> Type:
    return t.member if isinstance(t, FederatedType) else t


def _is_clients(t: Type) -> bool:
    return isinstance(t, FederatedType) and t.placement.name == "CLIENTS"


def _is_server(t: Type) -> bool:
    return isinstance(t, FederatedType) and t.placement.name == "SERVER"


def intrinsic_crossings(intrinsic: bb.Intrinsic, unknowns: Optional[Unknowns] = None,
                        where: Optional[str] = None) -> list[Crossing]:
    """What a call of ``intrinsic`` moves between server and clients (empty for most intrinsics).

    Broadcasts and ``federated_value_at_clients`` send their argument to each
    client; aggregations (secure or not) receive each client's CLIENTS-placed
    inputs (value and weight of ``federated_weighted_mean``), except
    ``federated_aggregate``, whose clients each send an accumulator (the type
    of its zero: the client folds its value in with ``accumulate`` and the
    accumulators are merged); ``federated_select`` receives each client's keys
    and sends back one result per key.
    """
    unknowns = unknowns if unknowns is not None else Unknowns()
    definition = intrinsic.definition
    where = where or f"the argument of {intrinsic.uri}"
    parameter = intrinsic.type_signature.parameter
    result = intrinsic.type_signature.result
    secure = bool(definition.secure)
    if parameter is None:
        return []

    def element_path(index: int) -> str:
        name = parameter.names()[index] if isinstance(parameter, StructType) else None
        return f".{name}" if name else f"[{index}]"

    if definition.kind is IntrinsicKind.BROADCAST:
        member = _member(parameter)
        return [Crossing(BROADCAST, (), member, type_bytes(member, unknowns, where), secure, "value")]
    if intrinsic.uri == "federated_value_at_clients":
        return [Crossing(BROADCAST, (), parameter, type_bytes(parameter, unknowns, where), secure, "value")]
    if intrinsic.uri == "federated_aggregate" and isinstance(parameter, StructType) and len(parameter) >= 2:
        # Each client folds its value into the zero with accumulate and sends the accumulator to be
        # merged (the MapReduce form's client work): what crosses is the accumulator, not the value.
        accumulator = parameter[1]
        return [Crossing(UPLOAD, (0,), accumulator, type_bytes(accumulator, unknowns, where, "the accumulator"),
                         secure, "accumulator")]
    if definition.kind is IntrinsicKind.AGGREGATION:
        if _is_clients(parameter):
            member = parameter.member
            return [Crossing(UPLOAD, (), member, type_bytes(member, unknowns, where), secure, "value")]
        crossings = []
        if isinstance(parameter, StructType):
            clients = [index for index, element in enumerate(parameter) if _is_clients(element)]
            names = _ROLES.get(intrinsic.uri, ())
            for index in clients:
                element = parameter[index]
                what = names[index] if index < len(names) else ("value" if len(clients) == 1 else element_path(index))
                crossings.append(Crossing(UPLOAD, (index,), element.member,
                                          type_bytes(element.member, unknowns, where, what), secure, what))
        return crossings
    if definition.kind is IntrinsicKind.SELECT and isinstance(parameter, StructType) and len(parameter) >= 3:
        keys = _member(parameter[0])
        count: Bytes
        if isinstance(keys, TensorType) and keys.shape and keys.shape[0] is not None:
            count = Bytes(int(np.prod(keys.shape)))
        else:
            count = unknowns.new("k", f"number of keys each client sends to {where}")
        key_size = Bytes(keys.dtype.itemsize) if isinstance(keys, TensorType) else Bytes(4)
        element = _member(result)
        element = element.element if isinstance(element, SequenceType) else element
        download = count * type_bytes(element, unknowns, where, "each selected value")
        return [
            Crossing(UPLOAD, (0,), _member(parameter[0]), key_size * count, secure, "keys"),
            Crossing(BROADCAST, (2,), _member(result), download, secure, "selected values"),
        ]
    return []


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
            value = self.eval(computation.result, env, "")
        else:
            value = self.eval(computation, env, "")
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

    def eval(self, node: bb.Node, env: dict, prefix: str, name: Optional[str] = None) -> _Value:
        t = node.type_signature
        if isinstance(node, bb.Reference):
            if node.name in env:
                return env[node.name]
            free = self.add_node("free", f"%{node.name}", t, node.location, prefix)
            return self.leaf(free, t)
        if isinstance(node, bb.Selection):
            source = self.eval(node.source, env, prefix)
            index = node.resolved_index
            if isinstance(source, _Pack):
                return source.elements[index][1]
            step = f".{node.name}" if node.name is not None else f"[{index}]"
            if isinstance(source, _Leaf):
                return _Leaf(source.deps, t, source.path + step)
            return _Leaf(frozenset(d for d, _ in self.deps(source)), t)
        if isinstance(node, bb.Struct):
            return _Pack(tuple((n, self.eval(e, env, prefix)) for n, e in node.elements), t)
        if isinstance(node, bb.Block):
            inner = dict(env)
            for local, value in node.locals:
                inner[local] = self.eval(value, inner, prefix, local)
            return self.eval(node.result, inner, prefix)
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
        function = self.eval(node.function, env, prefix)
        argument = self.eval(node.argument, env, prefix) if node.argument is not None else None
        return self.apply(function, argument, node, prefix, name)

    def apply(self, function: _Value, argument, node: bb.Call, prefix: str, name: Optional[str]) -> _Value:
        if isinstance(function, _Closure):
            lam = function.function
            inner = dict(function.env)
            if lam.parameter_name is not None and argument is not None:
                inner[lam.parameter_name] = argument
            return self.eval(lam.result, inner, function.prefix)
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
            value = self.eval(target, {}, f"{prefix}@{symbol}: ")
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
    module with the round the form runs added (``fedc.mapreduce.as_round``), and its name."""
    if not len(module) or any(_is_federated_code(node) for _, node in module.items()):
        return module, None
    try:
        from fedc import mapreduce

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


# --------------------------------------------------------------------------
# Privacy


@dataclasses.dataclass(frozen=True)
class Flow:
    """One way a client value reaches the server.

    ``source`` names the client value (a parameter such as ``federated_dataset``,
    ``data 'uri'``, or the ``federated_eval_at_clients`` that computed it);
    ``intrinsic`` is what carries it to the server (``federated_mean``,
    ``federated_secure_sum_bitwidth``, ``federated_select`` — its keys —, or
    ``call %f`` for a function the analysis cannot see into); ``secure`` says
    whether that intrinsic is a secure one; ``location`` is the carrier's
    source location, ``local`` the local it binds; ``path`` the steps from the
    source to the carrier; ``reaches`` the results the carried value flows into.
    """

    computation: str
    source: str
    source_type: Type
    intrinsic: str
    secure: bool
    location: Optional[SourceLocation]
    local: Optional[str]
    path: tuple
    reaches: tuple = ()
    via: str = ""  # the computation the carrier is in, when not ``computation`` itself

    @property
    def kind(self) -> str:
        return "secure" if self.secure else "plain"

    def text(self) -> str:
        where = f" at {self.location}" if self.location else ""
        local = f" (%{self.local})" if self.local else ""
        via = f" in @{self.via}" if self.via and self.via != self.computation else ""
        what = " (its keys)" if self.intrinsic.endswith("select") else ""
        return f"{self.kind}: {self.source} reaches the server through {self.intrinsic}{local}{what}{via}{where}"


@dataclasses.dataclass
class ComputationPrivacy:
    """The flows of one computation, with its dataflow graph."""

    symbol: str
    location: Optional[SourceLocation]
    federated: bool
    flows: list
    graph: Any = None
    sources: tuple = ()
    note: str = ""  # e.g. that this is the round a MapReduce form runs

    @property
    def plain_flows(self) -> list:
        return [f for f in self.flows if not f.secure]

    @property
    def secure_flows(self) -> list:
        return [f for f in self.flows if f.secure]


@dataclasses.dataclass
class PrivacyReport:
    """Every path by which a client value reaches the server, computation by computation."""

    module: str
    computations: list

    def __getitem__(self, symbol: str) -> ComputationPrivacy:
        for c in self.computations:
            if c.symbol == symbol:
                return c
        raise KeyError(symbol)

    @property
    def flows(self) -> list:
        return [f for c in self.computations for f in c.flows]

    @property
    def plain_flows(self) -> list:
        return [f for f in self.flows if not f.secure]

    @property
    def secure_flows(self) -> list:
        return [f for f in self.flows if f.secure]

    def text(self) -> str:
        lines = [f"privacy report for @{self.module}: client values that reach the server"]
        local = [c.symbol for c in self.computations if not c.federated]
        for c in self.computations:
            if not c.federated:
                continue
            where = f" ({c.note or c.location})" if c.note or c.location else ""
            if not c.flows:
                lines.append(f"@{c.symbol}{where}: no client value reaches the server")
                continue
            plain, secure = len(c.plain_flows), len(c.secure_flows)
            count = len(c.flows)
            lines.append(f"@{c.symbol}{where}: {count} flow{'s' if count != 1 else ''} "
                         f"({plain} plain, {secure} secure)")
            for index, flow in enumerate(c.flows, 1):
                lines.append(f"  {index}. {flow.text()}")
                lines.append(f"     path: {' -> '.join(flow.path)}")
                if flow.reaches:
                    lines.append(f"     reaches: {', '.join(flow.reaches)}")
        if local:
            lines.append(f"local computations (no placed values): {', '.join('@' + s for s in local)}")
        if not self.computations:
            lines.append("(the module has no computations)")
        total = len(self.flows)
        lines.append(f"total: {total} flow{'s' if total != 1 else ''} "
                     f"({len(self.plain_flows)} plain, {len(self.secure_flows)} secure)")
        return "\n".join(lines) + "\n"


def _path_text(graph, nodes: list) -> tuple:
    steps = []
    for index, node in enumerate(nodes):
        text = graph.nodes[node]["label"]
        if index + 1 < len(nodes):
            path = graph.edges[node, nodes[index + 1]].get("path", "")
            if path:
                text = f"{text}{path}" if " (" not in text else text.replace(" (", f"{path} (", 1)
        steps.append(text)
    return tuple(steps)


def _computation_privacy(module: Module, symbol: str) -> ComputationPrivacy:
    import networkx as nx

    node = module[symbol]
    if not _is_federated_code(node):
        return ComputationPrivacy(symbol, node.location, False, [])
    flow = _Dataflow(module, symbol).build(node)
    graph = flow.graph
    flows = []
    results = set(flow.results)
    for carrier in flow.carriers:
        carried_in = [u for u, _, data in graph.in_edges(carrier.node, data=True) if data["carried"]]
        if not carried_in:
            continue
        reaching = {}
        for u in carried_in:
            reaching[u] = nx.ancestors(graph, u) | {u}
        reaches = tuple(graph.nodes[r]["label"] for r in sorted(nx.descendants(graph, carrier.node) & results,
                                                               key=_natural_key))
        attrs = graph.nodes[carrier.node]
        for source in flow.sources:
            starts = [u for u in carried_in if source in reaching[u]]
            if not starts:
                continue
            best = None
            for u in starts:
                path = nx.shortest_path(graph, source, u)
                if best is None or len(path) < len(best):
                    best = path
            flows.append(Flow(
                computation=symbol,
                source=graph.nodes[source]["label"],
                source_type=graph.nodes[source]["type"],
                intrinsic=carrier.intrinsic,
                secure=carrier.secure,
                location=attrs["location"],
                local=attrs.get("local"),
                path=_path_text(graph, best + [carrier.node]),
                reaches=reaches,
                via=attrs["computation"],
            ))
    return ComputationPrivacy(symbol, node.location, True, flows, graph,
                              tuple(graph.nodes[s]["label"] for s in flow.sources))


def privacy_report(module, symbol: Optional[str] = None) -> PrivacyReport:
    """Every path by which a client value reaches the server, in each computation of ``module``
    (or only in ``symbol``). ``module`` may be a :class:`fedc.Computation`."""
    symbol = symbol or _default_symbol(module)
    module, symbols, round_name = _symbols(_as_module(module), symbol)
    computations = [_computation_privacy(module, s) for s in symbols]
    for c in computations:
        if c.symbol == round_name:
            c.note = MAPREDUCE_NOTE
    return PrivacyReport(module.name, computations)


@register("privacy-report", options={
    "require_secure": Option(bool, False, "fail if a client value reaches the server other than securely"),
})
def privacy_report_pass(module: Module, ctx: PassContext, require_secure: bool = False) -> Module:
    """Lists every path by which client values reach the server (an analysis; changes nothing).

    Statistics: ``plain-flows`` and ``secure-flows`` (client sources times the
    intrinsics that carry them to the server), ``computations-with-flows``.
    ``fedc compile --report privacy`` prints the report itself. With
    ``require_secure=true`` a plain flow is an error naming it.
    """
    report = privacy_report(module)
    ctx.stat("plain-flows", len(report.plain_flows))
    ctx.stat("secure-flows", len(report.secure_flows))
    ctx.stat("computations-with-flows", sum(1 for c in report.computations if c.flows))
    if require_secure and report.plain_flows:
        shown = "".join(f"\n  @{f.computation}: {f.text()}" for f in report.plain_flows[:10])
        more = f"\n  … and {len(report.plain_flows) - 10} more" if len(report.plain_flows) > 10 else ""
        raise FedcError(f"client values reach the server without secure aggregation "
                        f"(require_secure is set):{shown}{more}")
    return module


# --------------------------------------------------------------------------
# Communication cost


@dataclasses.dataclass(frozen=True)
class Transfer:
    """What one intrinsic call moves per client per round: ``direction`` is ``"broadcast"``
    (server -> client) or ``"upload"`` (client -> server)."""

    direction: str
    intrinsic: str
    local: Optional[str]
    location: Optional[SourceLocation]
    type: Type
    bytes: Bytes
    secure: bool
    computation: str
    what: str = ""


@dataclasses.dataclass
class ComputationCost:
    """The communication of one computation (one round), per client."""

    symbol: str
    location: Optional[SourceLocation]
    federated: bool
    transfers: list
    legend: dict  # unknown -> where it comes from
    note: str = ""  # e.g. that this is the round a MapReduce form runs
    unknown: tuple = ()  # calls of functions the analysis cannot see into that may communicate

    def total(self, direction: str) -> Bytes:
        return sum((t.bytes for t in self.transfers if t.direction == direction), Bytes(0))

    @property
    def broadcast(self) -> Bytes:
        """Bytes each client receives from the server."""
        return self.total(BROADCAST)

    @property
    def upload(self) -> Bytes:
        """Bytes each client sends to the server."""
        return self.total(UPLOAD)

    def by_intrinsic(self, direction: str) -> dict[str, Bytes]:
        totals: dict[str, Bytes] = {}
        for t in self.transfers:
            if t.direction == direction:
                totals[t.intrinsic] = totals.get(t.intrinsic, Bytes(0)) + t.bytes
        return totals

    def text(self) -> str:
        where = f" ({self.note or self.location})" if self.note or self.location else ""
        unknown = [f"  not counted: {call} (a function the analysis cannot see into)" for call in self.unknown]
        if not self.transfers:
            return "\n".join([f"@{self.symbol}{where}: no communication between server and clients"]
                             + unknown) + "\n"
        lines = [f"@{self.symbol}{where}"] + unknown
        for direction, title in ((BROADCAST, "server -> client (broadcast)"), (UPLOAD, "client -> server (upload)")):
            items = [t for t in self.transfers if t.direction == direction]
            lines.append(f"  {title}: {self.total(direction)} bytes per client")
            if not items:
                continue
            width = max(len(str(t.bytes)) for t in items)
            for t in items:
                local = f" %{t.local}" if t.local else ""
                if t.what and t.what != "value":
                    local += f" ({t.what})"
                secure = " [secure]" if t.secure else ""
                via = f" in @{t.computation}" if t.computation != self.symbol else ""
                at = f" at {t.location}" if t.location else ""
                lines.append(f"    {str(t.bytes):>{width}}  {t.intrinsic}{local} : {t.type}{secure}{via}{at}")
            totals = self.by_intrinsic(direction)
            if len(items) > 1:
                lines.append("    by intrinsic: " + ", ".join(f"{k} {v}" for k, v in totals.items()))
        if self.legend:
            lines.append("  where")
            for name in sorted(self.legend, key=_natural_key):
                lines.append(f"    {name} = {self.legend[name]}")
        return "\n".join(lines) + "\n"


@dataclasses.dataclass
class CostReport:
    """Bytes each client receives and sends per round, for each computation."""

    module: str
    computations: list

    def __getitem__(self, symbol: str) -> ComputationCost:
        for c in self.computations:
            if c.symbol == symbol:
                return c
        raise KeyError(symbol)

    def _single(self) -> ComputationCost:
        federated = [c for c in self.computations if c.federated]
        if len(self.computations) == 1:
            return self.computations[0]
        if len(federated) == 1:
            return federated[0]
        raise FedcError("this cost report covers several computations: pick one with report['name']")

    @property
    def broadcast(self) -> Bytes:
        """Bytes per client from the server (for a report of one computation)."""
        return self._single().broadcast

    @property
    def upload(self) -> Bytes:
        """Bytes per client to the server (for a report of one computation)."""
        return self._single().upload

    def text(self) -> str:
        lines = [f"communication cost per round for @{self.module} (bytes per client, from the types)"]
        local = [c.symbol for c in self.computations if not c.federated]
        body = "".join(c.text() for c in self.computations if c.federated)
        text = "\n".join(lines) + "\n" + body
        if local:
            text += f"local computations (no placed values): {', '.join('@' + s for s in local)}\n"
        return text


def _computation_cost(module: Module, symbol: str) -> ComputationCost:
    node = module[symbol]
    if not _is_federated_code(node):
        return ComputationCost(symbol, node.location, False, [], {})
    flow = _Dataflow(module, symbol).build(node)
    return ComputationCost(symbol, node.location, True, flow.transfers, dict(flow.unknowns.legend),
                           unknown=tuple(flow.opaque))


def communication_cost(module, symbol: Optional[str] = None) -> CostReport:
    """Bytes broadcast to and uploaded by each client per round, for each computation of
    ``module`` (or only ``symbol``), per intrinsic call and in total. ``module`` may be a
    :class:`fedc.Computation`."""
    symbol = symbol or _default_symbol(module)
    module, symbols, round_name = _symbols(_as_module(module), symbol)
    computations = [_computation_cost(module, s) for s in symbols]
    for c in computations:
        if c.symbol == round_name:
            c.note = MAPREDUCE_NOTE
    return CostReport(module.name, computations)


def bytes_label(crossing: Crossing) -> str:
    """The text for an edge that crosses between server and clients: ``↓ 31400 B per client``."""
    arrow = "↓" if crossing.direction == BROADCAST else "↑"
    secure = " secure" if crossing.secure else ""
    what = f" ({crossing.what})" if crossing.what == "accumulator" else ""
    return f"{arrow} {crossing.bytes} B per client{secure}{what}"
