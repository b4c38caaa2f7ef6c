"""What intrinsic calls move between server and clients, and how many bytes that is, from the types alone.

Sizes are polynomials (:class:`Bytes`) in the unknowns the types leave open
(:class:`Unknowns`); :func:`type_bytes` is the size of a type;
:func:`intrinsic_crossings` says what one intrinsic call moves between server
and clients (from its registry entry's crossing rules), :class:`Transfer` one
such move in a computation, :func:`bytes_label` how ``fedc viz`` labels it.
:mod:`fedc.passes.dataflow` records the transfers of a computation and
:mod:`fedc.passes.costs` adds them up.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from typing import Optional, Union

import numpy as np

from fedc.errors import FedcError, SourceLocation
from fedc.ir import building_blocks as bb
from fedc.ir.intrinsics import Direction, OperandRole, Sends
from fedc.types import (
    AbstractType,
    FederatedType,
    SequenceType,
    StructType,
    TensorType,
    Type,
)

__all__ = [
    "BROADCAST",
    "UPLOAD",
    "Bytes",
    "Crossing",
    "Transfer",
    "Unknowns",
    "bytes_label",
    "intrinsic_crossings",
    "is_clients",
    "is_server",
    "natural_key",
    "type_bytes",
]

BROADCAST = "broadcast"  # server -> client
UPLOAD = "upload"  # client -> server


# --------------------------------------------------------------------------
# Byte counts: polynomials with integer coefficients over named unknowns


def natural_key(name: str):
    """A sort key that orders ``d2`` before ``d10``."""
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
            terms = {tuple(sorted(k, key=natural_key)): int(v) for k, v in value.items() if v}
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
                monomial = tuple(sorted(m1 + m2, key=natural_key))
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
        return sorted({s for m in self.terms for s in m}, key=natural_key)

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
            return (-len(monomial), [natural_key(s) for s in monomial])

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


def is_clients(t: Type) -> bool:
    """Whether ``t`` is placed at the clients."""
    return isinstance(t, FederatedType) and t.placement.name == "CLIENTS"


def is_server(t: Type) -> bool:
    """Whether ``t`` is placed at the server."""
    return isinstance(t, FederatedType) and t.placement.name == "SERVER"


def intrinsic_crossings(intrinsic: bb.Intrinsic, unknowns: Optional[Unknowns] = None,
                        where: Optional[str] = None) -> list[Crossing]:
    """What a call of ``intrinsic`` moves between server and clients (empty for most intrinsics).

    The registry entry's crossing rules say which operand crosses which way and
    what one client receives or sends: broadcasts and
    ``federated_value_at_clients`` send their argument to each client;
    aggregations (secure or not) receive each client's CLIENTS-placed inputs
    (value and weight of ``federated_weighted_mean``), except
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
    single = len(definition.operands) == 1
    crossings = []
    key_count: list = []  # the number of keys of a select, once per call
    for rule in definition.crossings:
        index = definition.operand_index(rule.operand)
        slot = () if single else (index,)
        operand = parameter if single else parameter[index]
        direction = BROADCAST if rule.direction is Direction.TO_CLIENTS else UPLOAD
        if rule.sends is Sends.MEMBER:
            sent = _member(operand)
            size = type_bytes(sent, unknowns, where, "" if single else rule.what)
        elif rule.sends is Sends.OPERAND:
            sent = operand
            size = type_bytes(sent, unknowns, where)
        elif rule.sends is Sends.ACCUMULATOR:
            sent = parameter[definition.operand_index(definition.operand_with_role(OperandRole.ZERO).name)]
            size = type_bytes(sent, unknowns, where, "the accumulator")
        else:  # the keys of a select, and one selected value per key
            keys = _member(parameter[definition.operand_index(definition.operand_with_role(OperandRole.KEYS).name)])
            if not key_count:
                key_count.append(_key_count(keys, unknowns, where))
            count = key_count[0]
            if rule.sends is Sends.KEYS:
                sent = _member(operand)
                size = (Bytes(keys.dtype.itemsize) if isinstance(keys, TensorType) else Bytes(4)) * count
            else:
                sent = _member(result)
                element = sent.element if isinstance(sent, SequenceType) else sent
                size = count * type_bytes(element, unknowns, where, "each selected value")
        crossings.append(Crossing(direction, slot, sent, size, secure, rule.what))
    return crossings


def _key_count(keys: Type, unknowns: Unknowns, where: str) -> Bytes:
    """The number of keys each client sends to a select (a symbol when its type leaves it open)."""
    if isinstance(keys, TensorType) and keys.shape and keys.shape[0] is not None:
        return Bytes(int(np.prod(keys.shape)))
    return unknowns.new("k", f"number of keys each client sends to {where}")



# --------------------------------------------------------------------------
# What one call moves


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


def bytes_label(crossing: Crossing) -> str:
    """The text for an edge that crosses between server and clients: ``↓ 31400 B per client``."""
    arrow = "↓" if crossing.direction == BROADCAST else "↑"
    secure = " secure" if crossing.secure else ""
    what = f" ({crossing.what})" if crossing.what == "accumulator" else ""
    return f"{arrow} {crossing.bytes} B per client{secure}{what}"
