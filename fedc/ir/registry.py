"""The intrinsic registry: one entry (:class:`IntrinsicDef`) per intrinsic, holding every fact about it.

An entry says what an intrinsic is called (``uri``) and how it prints
(``op_name``), its polymorphic signature in TFF notation and its type rule, the
attributes it takes, its operands (name, required placement, role), what it
does (``kind``), its role in a federated round (``role``: server work, client
work, broadcast, aggregation, secure aggregation, select, local math), what it
moves between server and clients (``crossings``, for the cost and privacy
analyses) and, for an aggregation that is not secure, why it cannot be made
secure (``insecure_reason``).

The federated intrinsics are defined in :mod:`fedc.ir.intrinsics`, the local
tensor ops in :mod:`fedc.ir.local_ops`; both register here, and this module
imports neither (importing :mod:`fedc.ir` loads both). Passes, analyses and
frontends query the entries (:func:`lookup`, :func:`with_kind`,
:func:`with_role`, :func:`by_op_name`) rather than keep their own lists of uris.

Each backend keeps its own table of implementations keyed by ``uri`` (see
:mod:`fedc.backends.base`); a backend that lacks one says so when it compiles
a computation, naming the intrinsic.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
from typing import Any, Callable, Mapping, Optional

from fedc.errors import FedcTypeError, ParseError
from fedc.types import FunctionType, Placement, Type, mismatch_message

__all__ = [
    "AttrSpec",
    "CrossingRule",
    "Direction",
    "IntrinsicDef",
    "IntrinsicKind",
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


class Role(enum.Enum):
    """Where an intrinsic's work belongs in one federated round (the MapReduce form's steps)."""

    SERVER = "server"  # work at the server (prepare, update): apply, value/eval/zip at the server
    CLIENTS = "clients"  # work at the clients: map, value/eval/zip at the clients
    BROADCAST = "broadcast"  # the server sends a value to every client
    AGGREGATION = "aggregation"  # client values are combined at the server, in the clear
    SECURE_AGGREGATION = "secure aggregation"  # client values are summed at the server by a secure protocol
    SELECT = "select"  # clients receive parts of a server value chosen by their keys
    LOCAL = "local"  # placement-free: local tensor math and sequence operations


class OperandRole(enum.Enum):
    """What an operand of an intrinsic is."""

    VALUE = "value"  # the data the intrinsic works on
    WEIGHT = "weight"  # a per-client weight
    FUNCTION = "function"  # a local function the intrinsic applies
    ZERO = "zero"  # the initial accumulator
    BOUND = "bound"  # a bound of a secure sum (max_input, bitwidth, modulus)
    KEYS = "keys"  # the client keys of a select
    MAX_KEY = "max_key"  # the bound on the keys of a select


@dataclasses.dataclass(frozen=True)
class Operand:
    """An operand of an intrinsic: its name, the placement its value must have (None: unplaced
    or any), and its role. A single-operand intrinsic's argument is the operand; otherwise the
    argument is a struct of the operands, in order."""

    name: str
    placement: Optional[Placement]
    role: OperandRole


class Direction(enum.Enum):
    """Which way a value crosses between server and clients."""

    TO_CLIENTS = "broadcast"  # server -> each client
    TO_SERVER = "upload"  # each client -> server


class Sends(enum.Enum):
    """What one client receives or sends when a value crosses."""

    MEMBER = "member"  # the member type of the (placed) operand
    OPERAND = "operand"  # the operand's own (unplaced) type
    ACCUMULATOR = "accumulator"  # the accumulator (the type of the operand of role ZERO)
    KEYS = "keys"  # the operand's keys (its member, one entry per key)
    PER_KEY = "per key"  # one element of the result's sequence per key


@dataclasses.dataclass(frozen=True)
class CrossingRule:
    """One way an intrinsic call moves a value between server and clients.

    ``operand`` names the operand on whose edge the value crosses (its position
    in the argument is the slot the cost labels), ``sends`` what each client
    receives or sends, ``what`` the word for it in reports."""

    direction: Direction
    operand: str
    sends: Sends
    what: str


@dataclasses.dataclass(eq=False)
class IntrinsicDef:
    """One intrinsic: its name, signature, kind, type rule, attributes and its role in a round."""

    uri: str
    signature: str
    kind: IntrinsicKind
    rule: Callable[["IntrinsicDef", Optional[Type], dict], Type]
    doc: str
    secure: bool = False
    attrs: tuple[AttrSpec, ...] = ()
    has_parameter: bool = True
    op_name: str = ""  # the op in the textual IR: fed.mean, seq.reduce, local.add
    role: Role = Role.LOCAL
    operands: tuple[Operand, ...] = ()
    crossings: tuple[CrossingRule, ...] = ()
    # The MapReduce form can express this aggregation by zero/accumulate/merge/report.
    mapreduce_aggregation: bool = False
    # A value it computes originates at the clients (their data, their randomness).
    originates_at_clients: bool = False
    # Why insert-secure-aggregation cannot make it secure (None: it is secure, or not an aggregation).
    insecure_reason: Optional[str] = None
    # Its value is drawn afresh each time it runs (random numbers): two calls are never the same value, so
    # passes do not merge them (cse), and backends do not evaluate it once for many clients or iterations.
    random: bool = False

    def __post_init__(self):
        if not self.op_name:
            self.op_name = ("local." if self.kind is IntrinsicKind.LOCAL else "intrinsic.") + self.uri

    @property
    def is_federated(self) -> bool:
        return self.kind not in (IntrinsicKind.LOCAL, IntrinsicKind.SEQUENCE)

    @property
    def operand_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.operands)

    def operand_index(self, name: str) -> int:
        """The position of operand ``name`` in the argument."""
        return self.operand_names.index(name)

    def operand_with_role(self, role: OperandRole) -> Optional[Operand]:
        return next((o for o in self.operands if o.role is role), None)

    @property
    def uploads(self) -> bool:
        """Whether a call sends client values to the server."""
        return any(c.direction is Direction.TO_SERVER for c in self.crossings)

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


@dataclasses.dataclass(frozen=True)
class AttrSpec:
    """An attribute of an intrinsic: a name, a normalizer (raises on bad values), a default."""

    name: str
    normalize: Callable[[Any], Any]
    default: Any = None
    doc: str = ""


def _same_attr(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


_REGISTRY: dict[str, IntrinsicDef] = {}
_BY_OP_NAME: dict[str, IntrinsicDef] = {}


def register(definition: IntrinsicDef) -> IntrinsicDef:
    """Adds an intrinsic to the registry (once per uri and op name)."""
    if definition.uri in _REGISTRY:
        raise ValueError(f"intrinsic {definition.uri} is registered twice")
    if definition.op_name in _BY_OP_NAME:
        raise ValueError(f"op name {definition.op_name} of {definition.uri} is taken by "
                         f"{_BY_OP_NAME[definition.op_name].uri}")
    _REGISTRY[definition.uri] = definition
    _BY_OP_NAME[definition.op_name] = definition
    return definition


def lookup(uri: str) -> IntrinsicDef:
    """The definition of intrinsic ``uri``; a :class:`FedcTypeError` if there is none."""
    try:
        return _REGISTRY[uri]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(uri), list(_REGISTRY), n=3)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise FedcTypeError(f"unknown intrinsic {uri!r}{hint}") from None


def by_op_name(name: str) -> Optional[IntrinsicDef]:
    """The intrinsic printed as op ``name`` (``fed.mean``), or None."""
    return _BY_OP_NAME.get(name)


def op_names() -> list[str]:
    """The op names of every registered intrinsic."""
    return list(_BY_OP_NAME)


def all_definitions() -> list[IntrinsicDef]:
    """Every registered intrinsic, federated ones first, then by name."""
    return sorted(_REGISTRY.values(), key=lambda d: (not d.is_federated, d.uri))


def with_kind(*kinds: IntrinsicKind) -> list[IntrinsicDef]:
    """The intrinsics of any of ``kinds``, in :func:`all_definitions` order."""
    return [d for d in all_definitions() if d.kind in kinds]


def with_role(*roles: Role) -> list[IntrinsicDef]:
    """The intrinsics with any of ``roles`` in a round, in :func:`all_definitions` order."""
    return [d for d in all_definitions() if d.role in roles]

