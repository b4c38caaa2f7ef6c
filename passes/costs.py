"""Communication cost: the bytes each client receives and sends per round, from the types alone.

:func:`communication_cost` adds up the bytes each client receives from the
server per round (``federated_broadcast``, the results of ``federated_select``,
``federated_value_at_clients``) and the bytes it sends (the inputs of
aggregations and secure sums — for ``federated_aggregate`` the accumulator each
client folds its value into —, the keys of ``federated_select``), per intrinsic
call and in total. Sizes are polynomials (:class:`Bytes`) in the unknowns the
types leave open (:class:`Unknowns`); :func:`intrinsic_crossings` says what one
intrinsic call moves between server and clients, :func:`bytes_label` how
``fedc viz`` labels it. The per-computation walk is
:mod:`fedc.passes.dataflow`'s; :mod:`fedc.passes.analysis` gathers the analyses.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from typing import Optional, Union

import numpy as np

from fedc.errors import FedcError, SourceLocation
from fedc.ir import building_blocks as bb
from fedc.ir.intrinsics import IntrinsicKind
from fedc.ir.module import Module
from fedc.types import (
    AbstractType,
    FederatedType,
    SequenceType,
    StructType,
    TensorType,
    Type,
)

__all__ = [
    "Bytes",
    "ComputationCost",
    "CostReport",
    "Crossing",
    "Transfer",
    "Unknowns",
    "communication_cost",
    "intrinsic_crossings",
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
    from .dataflow import _Dataflow, _is_federated_code  # it builds on this module: imported here

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
    from .dataflow import MAPREDUCE_NOTE, _as_module, _default_symbol, _symbols

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
