"""The fedc type system.

Types are small immutable values, equal when their structure is equal, and
print exactly the way TensorFlow Federated prints them::

    >>> from fedc import types
    >>> str(types.FederatedType(np.float32, types.CLIENTS))
    '{float32}@CLIENTS'
    >>> types.parse("( -> int32@SERVER)")
    FunctionType(None, FederatedType(TensorType(int32), SERVER, all_equal=True))

``T@P`` is one value shared by all members of placement ``P``; ``{T}@P`` is a
value that may differ between members. Unknown dimensions print as ``?``; a
tensor of unknown rank prints as ``float32[*]`` (TFF's own spelling,
``'float32'(shape=None)``, is accepted by :func:`parse`).
"""

from __future__ import annotations

import collections.abc
import dataclasses
import functools
import re
from typing import Any, Iterable, Iterator, Optional, Sequence

import numpy as np

from fedc.errors import FedcError, FedcTypeError, ParseError, SourceLocation, end_position
from fedc.limits import INT64_MAX, check_nesting, check_shape, check_text_nesting, deep_recursion, parse_integer

__all__ = [
    "AbstractType",
    "CLIENTS",
    "FederatedType",
    "FunctionType",
    "Placement",
    "PlacementType",
    "SERVER",
    "SequenceType",
    "StructType",
    "TensorType",
    "Type",
    "parse",
    "to_type",
    "equal_trees",
]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


# --------------------------------------------------------------------------
# Placements


class Placement:
    """A placement literal: the set of members a federated value lives on."""

    __slots__ = ("name",)
    _by_name: dict[str, "Placement"] = {}

    def __new__(cls, name: str):
        existing = cls._by_name.get(name)
        if existing is not None:
            return existing
        if name not in ("CLIENTS", "SERVER"):
            raise FedcTypeError(
                f"unknown placement {name!r}; the placements are CLIENTS and SERVER"
            )
        self = super().__new__(cls)
        object.__setattr__(self, "name", name)
        cls._by_name[name] = self
        return self

    def __setattr__(self, key, value):
        raise AttributeError("Placement is immutable")

    @property
    def uri(self) -> str:
        return self.name.lower()

    def __reduce__(self):
        return (Placement, (self.name,))

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return self.name


CLIENTS = Placement("CLIENTS")
SERVER = Placement("SERVER")


def to_placement(value: Any) -> Placement:
    if isinstance(value, Placement):
        return value
    if isinstance(value, str):
        upper = value.upper()
        if upper in ("CLIENTS", "SERVER"):
            return Placement(upper)
    raise FedcTypeError(f"expected a placement (CLIENTS or SERVER), got {value!r}")


# --------------------------------------------------------------------------
# dtypes

DTYPE_NAMES = {
    "bool": np.bool_,
    "int8": np.int8,
    "int16": np.int16,
    "int32": np.int32,
    "int64": np.int64,
    "uint8": np.uint8,
    "uint16": np.uint16,
    "uint32": np.uint32,
    "uint64": np.uint64,
    "float16": np.float16,
    "float32": np.float32,
    "float64": np.float64,
    "complex64": np.complex64,
    "complex128": np.complex128,
    "str": np.str_,
}
_DTYPE_ALIASES = {"string": "str", "half": "float16", "double": "float64", "float": "float32"}
_SUPPORTED_DTYPES = {np.dtype(t) for t in DTYPE_NAMES.values()}


def dtype_name(dtype: np.dtype) -> str:
    """The name TFF prints for ``dtype`` (``float32``, ``int32``, ``str`` …)."""
    return "str" if dtype.kind == "U" else dtype.name


def to_dtype(value: Any) -> np.dtype:
    """Normalizes a dtype-like value to a ``np.dtype`` fedc supports."""
    original = value
    if isinstance(value, str):
        name = _DTYPE_ALIASES.get(value, value)
        if name not in DTYPE_NAMES:
            raise FedcTypeError(
                f"unknown dtype {value!r}; known dtypes: {', '.join(DTYPE_NAMES)}"
            )
        return np.dtype(DTYPE_NAMES[name])
    if _is_tf_dtype(value):  # tf.DType, without importing TF
        if value.name == "string":
            return np.dtype(np.str_)
        try:
            value = value.as_numpy_dtype
        except (KeyError, TypeError, AttributeError):  # tf.variant, tf.resource …
            value = None
        if value is None or np.dtype(value) not in _SUPPORTED_DTYPES:
            raise FedcTypeError(f"dtype {original.name} (TensorFlow) is not supported by fedc")
    if value is bool:
        value = np.bool_
    elif value is int:
        value = np.int32
    elif value is float:
        value = np.float32
    elif value is str or value is bytes or value is np.bytes_:
        value = np.str_
    try:
        dtype = np.dtype(value)
    except TypeError:
        raise FedcTypeError(f"{original!r} is not a dtype") from None
    if dtype.kind in ("U", "S"):
        return np.dtype(np.str_)
    if dtype not in _SUPPORTED_DTYPES:
        raise FedcTypeError(f"dtype {dtype} is not supported by fedc")
    return dtype


def _is_tf_dtype(value: Any) -> bool:
    """Whether ``value`` is a ``tf.DType`` (checked without importing TF).

    Looks at the class, not at ``as_numpy_dtype``: that property raises
    ``KeyError`` for dtypes without a numpy equivalent (``tf.variant``).
    """
    cls = type(value)
    return cls.__name__ == "DType" and (cls.__module__ or "").startswith("tensorflow")


def _is_dtype_like(value: Any) -> bool:
    if isinstance(value, np.dtype):
        return True
    if isinstance(value, type) and issubclass(value, np.generic):
        return True
    # Identity, not ``in``: ``==`` on arrays and tensors is element-wise.
    if any(value is t for t in (bool, int, float, str, bytes)):
        return True
    return _is_tf_dtype(value)


# --------------------------------------------------------------------------
# Types


_ELEMENT = object()


def _shallow(key):
    """A type's key with its element types replaced by a marker (they are compared separately)."""
    if isinstance(key, Type):
        return _ELEMENT
    if isinstance(key, tuple):
        return tuple(_shallow(k) for k in key)
    return key


def equal_trees(a, b) -> bool:
    """Structural equality of two trees of types or of IR nodes, without recursion.

    Each node provides ``_hash`` (cached), ``attributes()`` (what identifies it
    besides its children) and ``children()``. Each pair of nodes compares its
    own fields, then its children are queued, so trees nested to
    ``fedc.limits.MAX_NESTING`` compare on any stack.
    """
    stack = [(a, b)]
    while stack:
        x, y = stack.pop()
        if x is y:
            continue
        if type(x) is not type(y) or x._hash != y._hash:
            return False
        if x.attributes() != y.attributes():
            return False
        stack.extend(zip(x.children(), y.children()))
    return True


class Type:
    """Base class of fedc types: immutable, hashable, equal by structure."""

    __slots__ = ("_hash", "_placed", "_compact", "depth")

    def __setattr__(self, key, value):
        raise AttributeError(f"{type(self).__name__} is immutable")

    def _init(self, **fields) -> None:
        for key, value in fields.items():
            object.__setattr__(self, key, value)
        # How deeply the type nests (a tensor is 1); bounded by fedc.limits.MAX_NESTING.
        depth = 1 + max((c.depth for c in self.children()), default=0)
        check_nesting(depth, "a type")
        object.__setattr__(self, "depth", depth)
        object.__setattr__(self, "_hash", hash((type(self).__name__, self._key())))
        object.__setattr__(self, "_placed", None)
        object.__setattr__(self, "_compact", None)

    # Subclasses define these.
    def _key(self) -> tuple:
        raise NotImplementedError

    def children(self) -> Iterator["Type"]:
        return iter(())

    def is_assignable_from(self, source: "Type") -> bool:
        """Whether a value of type ``source`` may be used where ``self`` is expected."""
        raise NotImplementedError

    # Shared behaviour.
    def attributes(self) -> tuple:
        """What identifies this type besides its element types."""
        return _shallow(self._key())

    def __eq__(self, other) -> bool:
        return equal_trees(self, other)

    def __ne__(self, other) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return self._hash

    def __str__(self) -> str:
        return self.compact_representation()

    def __reduce__(self):
        return (parse, (self.compact_representation(),))

    def _bottom_up(self, slot: str, compute) -> Any:
        """``self.<slot>``, computed once per type: ``compute(t)`` for each type below whose slot
        is unset, children first (iteratively, so a deep type needs no deep recursion)."""
        stack = [(self, False)]
        while stack:
            t, expanded = stack.pop()
            if getattr(t, slot) is not None:
                continue
            if expanded:
                object.__setattr__(t, slot, compute(t))
            else:
                stack.append((t, True))
                stack.extend((c, False) for c in t.children() if getattr(c, slot) is None)
        return getattr(self, slot)

    def compact_representation(self) -> str:
        """The one-line form TFF prints, e.g. ``{float32}@CLIENTS`` (computed once per type)."""
        text = self._compact
        if text is None:
            # Each type's string reuses its children's, already computed.
            text = self._bottom_up("_compact", lambda t: "".join(_lines(t, formatted=False)))
        return text

    @property
    def is_placed(self) -> bool:
        """Whether this type mentions a placement: a federated or placement type anywhere in it.

        Computed once per type (types are immutable), from the children's answers.
        """
        placed = self._placed
        if placed is None:
            placed = self._bottom_up(
                "_placed",
                lambda t: isinstance(t, (FederatedType, PlacementType)) or any(c._placed for c in t.children()),
            )
        return placed

    @deep_recursion  # it recurses once per level; types nest up to MAX_NESTING
    def formatted_representation(self) -> str:
        """The multi-line form TFF prints: struct elements one per line."""
        return "\n".join(line.rstrip() for line in _lines(self, formatted=True))

    def is_equivalent_to(self, other: "Type") -> bool:
        return self.is_assignable_from(other) and other.is_assignable_from(self)

    def check_assignable_from(self, source: "Type", what: str = "value") -> None:
        """Raises :class:`FedcTypeError` unless ``source`` is assignable to ``self``."""
        if not self.is_assignable_from(source):
            raise FedcTypeError(mismatch_message(what, self, source))

    def walk(self) -> Iterator["Type"]:
        """This type and all types nested in it, parents first."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(list(node.children())))

    def contains(self, kind: type) -> bool:
        """Whether this type or any nested type is an instance of ``kind``."""
        return any(isinstance(t, kind) for t in self.walk())


def mismatch_message(what: str, expected: Type, actual: Type) -> str:
    """A message naming ``what`` and both types, multi-line for long types."""
    exp, act = expected.compact_representation(), actual.compact_representation()
    if exp == act:  # differ only in something the compact form hides
        exp, act = repr(expected), repr(actual)
    if len(exp) + len(act) > 120:
        return (
            f"{what}: expected type\n{_indent(expected.formatted_representation())}\n"
            f"but got type\n{_indent(actual.formatted_representation())}"
        )
    return f"{what}: expected {exp}, got {act}"


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


class TensorType(Type):
    """A tensor: a dtype and a shape.

    ``shape`` is a tuple whose entries are ints or ``None`` (unknown, printed
    ``?``); ``shape=None`` means the rank itself is unknown.
    """

    __slots__ = ("dtype", "shape")

    def __init__(self, dtype: Any, shape: Optional[Iterable[Optional[int]]] = ()):
        dtype = to_dtype(dtype)
        if shape is not None:
            shape = _to_shape(shape)
        self._init(dtype=dtype, shape=shape)

    def _key(self):
        return (self.dtype.str, self.shape)

    @property
    def rank(self) -> Optional[int]:
        return None if self.shape is None else len(self.shape)

    def is_fully_defined(self) -> bool:
        return self.shape is not None and all(d is not None for d in self.shape)

    def is_assignable_from(self, source: Type) -> bool:
        if not isinstance(source, TensorType) or source.dtype != self.dtype:
            return False
        if self.shape is None:
            return True
        if source.shape is None or len(source.shape) != len(self.shape):
            return False
        return all(t is None or t == s for t, s in zip(self.shape, source.shape))

    def __repr__(self) -> str:
        name = dtype_name(self.dtype)
        if self.shape == ():
            return f"TensorType({name})"
        return f"TensorType({name}, {list(self.shape) if self.shape is not None else None})"


def _to_shape(shape: Any) -> tuple:
    if hasattr(shape, "as_list") and not isinstance(shape, (list, tuple)):
        # tf.TensorShape, without importing TF.
        if getattr(shape, "rank", 0) is None:
            raise FedcTypeError("a shape of unknown rank must be given as shape=None")
        shape = shape.as_list()
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    try:
        dims = tuple(shape)
    except TypeError:
        raise FedcTypeError(f"{shape!r} is not a shape (a sequence of ints or None)") from None
    result = []
    for d in dims:
        if d is None or (isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d == -1):
            result.append(None)
        elif isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0:
            result.append(int(d))
        else:
            raise FedcTypeError(
                f"{shape!r} is not a shape: dimension {d!r} is not a non-negative int or None"
            )
    result = tuple(result)
    check_shape(result)
    return result


class StructType(Type):
    """An ordered struct whose elements may be named: ``<a=int32,float32>``.

    ``python_container`` (optional; ``tuple``, ``list``, ``dict``, a namedtuple,
    an attrs class or a dataclass) says how to rebuild a Python value of this
    type. It is not part of the type's identity: it does not take part in
    equality and is not serialized.
    """

    __slots__ = ("_elements", "_names", "python_container")

    def __init__(self, elements: Any = (), python_container: Optional[type] = None):
        if isinstance(elements, StructType):
            items = list(elements.items())
        else:
            items = _named_items(elements)
        names = {}
        normalized = []
        for index, (name, value) in enumerate(items):
            if name is not None:
                if not isinstance(name, str) or not _IDENTIFIER.match(name):
                    raise FedcTypeError(
                        f"struct element name {name!r} is not an identifier "
                        "(letters, digits and _, not starting with a digit)"
                    )
                if name in names:
                    raise FedcTypeError(f"struct element name {name!r} appears twice")
                names[name] = index
            normalized.append((name, to_type(value)))
        self._init(_elements=tuple(normalized), _names=names, python_container=python_container)

    def _key(self):
        return self._elements

    def children(self) -> Iterator[Type]:
        return (t for _, t in self._elements)

    def items(self) -> Iterator[tuple[Optional[str], Type]]:
        """``(name or None, type)`` for each element, in order."""
        return iter(self._elements)

    def names(self) -> list[Optional[str]]:
        return [n for n, _ in self._elements]

    def is_named(self) -> bool:
        return bool(self._elements) and all(n is not None for n, _ in self._elements)

    def index_of(self, name: str) -> int:
        try:
            return self._names[name]
        except KeyError:
            raise FedcTypeError(
                f"struct {self} has no element named {name!r}"
                + (f"; its names are {', '.join(n for n in self.names() if n)}" if self._names else "")
            ) from None

    def __len__(self) -> int:
        return len(self._elements)

    def __iter__(self) -> Iterator[Type]:
        return self.children()

    def __bool__(self) -> bool:
        return True

    def __getitem__(self, key) -> Type:
        if isinstance(key, str):
            return self._elements[self.index_of(key)][1]
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            if not -len(self._elements) <= key < len(self._elements):
                raise FedcTypeError(f"index {key} is out of range for struct {self} of {len(self)} elements")
            return self._elements[key][1]
        raise FedcTypeError(f"a struct element is selected by name or index, not by {key!r}")

    def is_assignable_from(self, source: Type) -> bool:
        if not isinstance(source, StructType) or len(source) != len(self):
            return False
        for (tn, tt), (sn, st) in zip(self._elements, source._elements):
            # As in TFF: an unnamed element may take a name (a positional
            # ``<U,T>`` fits a parameter ``<acc=U,x=T>``), a name may not be
            # dropped or changed.
            if sn is not None and sn != tn:
                return False
            if not tt.is_assignable_from(st):
                return False
        return True

    def __repr__(self) -> str:
        parts = [f"({n!r}, {t!r})" if n is not None else repr(t) for n, t in self._elements]
        container = f", python_container={self.python_container.__name__}" if self.python_container else ""
        return f"StructType([{', '.join(parts)}]{container})"


def _named_items(elements: Any) -> list[tuple[Optional[str], Any]]:
    if _is_name_value_pair(elements):
        return [elements]
    if is_namedtuple(elements):
        return list(elements._asdict().items())
    if isinstance(elements, collections.abc.Mapping):
        return list(elements.items())
    if isinstance(elements, (str, bytes)) or not isinstance(elements, collections.abc.Iterable):
        raise FedcTypeError(f"struct elements must be a sequence or mapping, not {elements!r}")
    return [e if _is_name_value_pair(e) else (None, e) for e in elements]


def _is_name_value_pair(value: Any) -> bool:
    return (
        isinstance(value, tuple)
        and len(value) == 2
        and isinstance(value[0], str)
    )


def is_namedtuple(value: Any) -> bool:
    return isinstance(value, tuple) and hasattr(type(value), "_fields") and hasattr(value, "_asdict")


class SequenceType(Type):
    """A sequence (a dataset) of elements of one type: ``int32*``."""

    __slots__ = ("element",)

    def __init__(self, element: Any):
        element = to_type(element)
        for t in element.walk():
            if isinstance(t, (FederatedType, FunctionType, SequenceType, PlacementType)):
                raise FedcTypeError(
                    f"a sequence element must be tensors or structs of tensors, not {element}"
                )
        self._init(element=element)

    def _key(self):
        return (self.element,)

    def children(self) -> Iterator[Type]:
        yield self.element

    def is_assignable_from(self, source: Type) -> bool:
        return isinstance(source, SequenceType) and self.element.is_assignable_from(source.element)

    def __repr__(self) -> str:
        return f"SequenceType({self.element!r})"


class FunctionType(Type):
    """A function type: ``(float32 -> float32)``, or ``( -> T)`` without parameter."""

    __slots__ = ("parameter", "result")

    def __init__(self, parameter: Any, result: Any):
        parameter = None if parameter is None else to_type(parameter)
        self._init(parameter=parameter, result=to_type(result))

    def _key(self):
        return (self.parameter, self.result)

    def children(self) -> Iterator[Type]:
        if self.parameter is not None:
            yield self.parameter
        yield self.result

    def is_assignable_from(self, source: Type) -> bool:
        if not isinstance(source, FunctionType):
            return False
        if (self.parameter is None) != (source.parameter is None):
            return False
        if self.parameter is not None and not source.parameter.is_assignable_from(self.parameter):
            return False
        return self.result.is_assignable_from(source.result)

    def __repr__(self) -> str:
        return f"FunctionType({self.parameter!r}, {self.result!r})"


class FederatedType(Type):
    """A value placed at ``CLIENTS`` or ``SERVER``.

    ``all_equal`` defaults to ``False`` at CLIENTS (``{T}@CLIENTS``, one value
    per client) and ``True`` at SERVER (``T@SERVER``). The member may not
    contain federated, function or placement types.
    """

    __slots__ = ("member", "placement", "all_equal")

    def __init__(self, member: Any, placement: Any, all_equal: Optional[bool] = None):
        member = to_type(member)
        placement = to_placement(placement)
        if all_equal is None:
            all_equal = placement is SERVER
        for t in member.walk():
            if isinstance(t, (FederatedType, FunctionType, PlacementType)):
                raise FedcTypeError(
                    f"a federated value's member type cannot contain "
                    f"{'federated' if isinstance(t, FederatedType) else 'function' if isinstance(t, FunctionType) else 'placement'}"
                    f" types, but {member} contains {t}"
                )
        self._init(member=member, placement=placement, all_equal=bool(all_equal))

    def _key(self):
        return (self.member, self.placement.name, self.all_equal)

    def children(self) -> Iterator[Type]:
        yield self.member

    def is_assignable_from(self, source: Type) -> bool:
        if not isinstance(source, FederatedType) or source.placement is not self.placement:
            return False
        if self.all_equal and not source.all_equal:
            return False
        return self.member.is_assignable_from(source.member)

    def __repr__(self) -> str:
        return f"FederatedType({self.member!r}, {self.placement}, all_equal={self.all_equal})"


class PlacementType(Type):
    """The type of a placement literal; prints as ``placement``."""

    __slots__ = ()

    def __init__(self):
        self._init()

    def _key(self):
        return ()

    def is_assignable_from(self, source: Type) -> bool:
        return isinstance(source, PlacementType)

    def __repr__(self) -> str:
        return "PlacementType()"


class AbstractType(Type):
    """A type variable (``T``) in a polymorphic signature, e.g. of an intrinsic."""

    __slots__ = ("label",)

    def __init__(self, label: str):
        if not isinstance(label, str) or not re.match(r"[A-Z][A-Za-z0-9_]*\Z", label):
            raise FedcTypeError(
                f"an abstract type's label starts with an upper-case letter, not {label!r}"
            )
        self._init(label=label)

    def _key(self):
        return (self.label,)

    def is_assignable_from(self, source: Type) -> bool:
        return isinstance(source, AbstractType) and source.label == self.label

    def __repr__(self) -> str:
        return f"AbstractType({self.label!r})"


# --------------------------------------------------------------------------
# String forms


def _combine(parts: Sequence[list[str]]) -> list[str]:
    """Joins line lists: each part's first line continues the previous last line.

    The pieces of a line are joined once, when it ends (appending each to a
    growing string would copy it again for every element of a wide struct).
    """
    lines: list[str] = []
    pieces: list[str] = []
    for part in parts:
        pieces.append(part[0])
        if len(part) > 1:
            lines.append("".join(pieces))
            lines.extend(part[1:-1])
            pieces = [part[-1]]
    lines.append("".join(pieces))
    return lines


def _lines(t: Type, formatted: bool) -> list[str]:
    if isinstance(t, TensorType):
        name = dtype_name(t.dtype)
        if t.shape is None:
            return [f"{name}[*]"]
        if not t.shape:
            return [name]
        return [f"{name}[{','.join('?' if d is None else str(d) for d in t.shape)}]"]
    if isinstance(t, StructType):
        if len(t) == 0:
            return ["<>"]
        parts: list[list[str]] = []
        for index, (name, element) in enumerate(t.items()):
            if index:
                parts.append([",", ""] if formatted else [","])
            element_lines = _part(element, formatted)
            parts.append(_combine([[f"{name}="], element_lines]) if name is not None else element_lines)
        body = _combine(parts)
        if formatted:
            return _combine([["<", ""], ["  " + line for line in body], ["", ">"]])
        return _combine([["<"], body, [">"]])
    if isinstance(t, SequenceType):
        return _combine([_part(t.element, formatted), ["*"]])
    if isinstance(t, FunctionType):
        parameter = _part(t.parameter, formatted) if t.parameter is not None else [""]
        return _combine([["("], parameter, [" -> "], _part(t.result, formatted), [")"]])
    if isinstance(t, FederatedType):
        member = _part(t.member, formatted)
        if t.all_equal:
            return _combine([member, [f"@{t.placement}"]])
        return _combine([["{"], member, ["}"], [f"@{t.placement}"]])
    if isinstance(t, PlacementType):
        return ["placement"]
    if isinstance(t, AbstractType):
        return [t.label]
    raise FedcTypeError(f"not a fedc type: {t!r}")


def _part(t: Type, formatted: bool) -> list[str]:
    """The lines of a nested type; the one-line form reuses the nested type's cached string."""
    return _lines(t, True) if formatted else [t.compact_representation()]


# --------------------------------------------------------------------------
# Parsing


@deep_recursion
def parse(text: str, filename: str = "<type>") -> Type:
    """Parses a type from its printed (compact or formatted) form.

    Raises :class:`ParseError` with ``file:line:col`` and a caret on bad text.
    """
    from fedc.grammar import load
    import lark

    if not isinstance(text, str):
        raise FedcTypeError(f"fedc.types.parse expects a string, got {type(text).__name__}")
    check_text_nesting(text, filename, "(<{[", what="the type")
    try:
        tree = load("types").parse(text)
        return type_transformer(filename, text).transform(tree)
    except lark.exceptions.UnexpectedInput as e:
        raise parse_error_from_lark(e, filename, text, "type", load("types")) from None
    except lark.exceptions.VisitError as e:
        raise e.orig_exc from None


def parse_error_from_lark(error, filename: str, text: str, what: str, parser=None) -> ParseError:
    """Turns a lark syntax error into a located :class:`ParseError`."""
    import lark

    line = getattr(error, "line", None) or 1
    column = getattr(error, "column", None) or 1
    at_end = line < 0 or (
        isinstance(error, lark.exceptions.UnexpectedToken) and error.token.type == "$END"
    )
    if at_end:
        line, column = end_position(text)
    location = SourceLocation(filename, line, column)
    if isinstance(error, lark.exceptions.UnexpectedToken):
        if error.token.type == "$END":
            found = "end of input"
        else:
            found = repr(str(error.token))
        expected = describe_terminals(error.expected, parser)
        message = f"syntax error in {what}: unexpected {found}; expected {expected}"
    elif isinstance(error, lark.exceptions.UnexpectedCharacters):
        message = f"syntax error in {what}: unexpected character {error.char!r}"
    elif isinstance(error, lark.exceptions.UnexpectedEOF):
        message = f"syntax error in {what}: unexpected end of input; expected {describe_terminals(error.expected, parser)}"
    else:
        message = f"syntax error in {what}"
    return ParseError(message, location, text)


def describe_terminals(names: Iterable[str], parser=None) -> str:
    """Human words for a set of lark terminal names (``')'``, ``a name`` …)."""
    patterns = {}
    if parser is not None:
        patterns = {t.name: t.pattern for t in parser.terminals}
    words = set()
    for name in names:
        pattern = patterns.get(name)
        if name == "$END":
            words.add("end of input")
        elif pattern is not None and type(pattern).__name__ == "PatternStr":
            words.add(repr(pattern.value))
        else:
            base = name.split("__")[-1]
            words.add({"NAME": "a name", "INT": "an integer", "SIGNED_INT": "an integer",
                       "SIGNED_NUMBER": "a number", "STRING": "a string",
                       "ESCAPED_STRING": "a string"}.get(base, base.lower().replace("_", " ")))
    words = sorted(words)
    if not words:
        return "something else"
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " or " + words[-1]


@functools.lru_cache(maxsize=None)
def type_builder_class():
    import lark
    from lark import v_args

    class _TypeBuilder(lark.Transformer):
        """Turns a parse tree of ``grammar/types.lark`` into a :class:`Type`."""

        def __init__(self, filename: str, text: str):
            super().__init__()
            self.filename = filename
            self.text = text

        def _error(self, token, message: str) -> ParseError:
            line = getattr(token, "line", None) or 1
            column = getattr(token, "column", None) or 1
            return ParseError(message, SourceLocation(self.filename, line, column), self.text)

        def _dtype(self, token) -> np.dtype:
            name = str(token)
            if name not in DTYPE_NAMES:
                raise self._error(
                    token,
                    f"unknown dtype {name!r}; known dtypes: {', '.join(DTYPE_NAMES)}",
                )
            return np.dtype(DTYPE_NAMES[name])

        def _placement(self, token) -> Placement:
            if str(token) not in ("CLIENTS", "SERVER"):
                raise self._error(token, f"unknown placement {str(token)!r}; expected CLIENTS or SERVER")
            return Placement(str(token))

        def _build(self, token, constructor, *args, **kwargs):
            try:
                return constructor(*args, **kwargs)
            except FedcError as e:
                raise self._error(token, e.message) from None

        def named(self, children):
            (token,) = children
            name = str(token)
            if name == "placement":
                return PlacementType()
            if name[0].isupper():
                return AbstractType(name)
            return TensorType(self._dtype(token))

        def tensor(self, children):
            token, dims = children
            return self._build(token, TensorType, self._dtype(token), dims)

        def unknown_rank_tensor(self, children):
            (token,) = children
            return TensorType(self._dtype(token), None)

        def tff_unknown_rank_tensor(self, children):
            quoted, key, value = children
            if str(key) != "shape" or str(value) != "None":
                raise self._error(key, "expected (shape=None) after a quoted dtype")
            token = quoted.update(value=str(quoted)[1:-1])
            return TensorType(self._dtype(token), None)

        def dims(self, children):
            return tuple(children)

        def known_dim(self, children):
            (token,) = children
            try:
                return parse_integer(str(token), "dimension", INT64_MAX)
            except ValueError as e:
                raise self._error(token, str(e)) from None

        def unknown_dim(self, children):
            return None

        def struct(self, children):
            (elements,) = children
            if elements is None:
                return StructType([])
            seen = set()
            for name, _, token in elements:
                if name is not None and name in seen:  # point at the repeated one
                    raise self._error(token, f"struct element name {name!r} appears twice")
                seen.add(name)
            return StructType([(n, t) if n is not None else t for n, t, _ in elements])

        def elements(self, children):
            return list(children)

        def named_element(self, children):
            token, t = children
            return (str(token), t, token)

        def unnamed_element(self, children):
            return (None, children[0], None)

        @v_args(meta=True)
        def sequence(self, meta, children):
            (element,) = children
            try:
                return SequenceType(element)
            except FedcTypeError as e:
                location = SourceLocation(self.filename, getattr(meta, "line", 1), getattr(meta, "column", 1))
                raise ParseError(e.message, location, self.text) from None

        def function(self, children):
            parameter, result = children
            return FunctionType(parameter, result)

        @v_args(meta=True)
        def federated(self, meta, children):
            member, placement = children
            return self._federated(meta, member, placement, all_equal=False)

        @v_args(meta=True)
        def all_equal_federated(self, meta, children):
            member, placement = children
            return self._federated(meta, member, placement, all_equal=True)

        def _federated(self, meta, member, token, all_equal):
            placement = self._placement(token)
            try:
                return FederatedType(member, placement, all_equal)
            except FedcTypeError as e:
                location = SourceLocation(self.filename, getattr(meta, "line", 1), getattr(meta, "column", 1))
                raise ParseError(e.message, location, self.text) from None

    return _TypeBuilder


def type_transformer(filename: str, text: str):
    """A lark transformer for ``grammar/types.lark`` trees, for grammars that import it."""
    return type_builder_class()(filename, text)


# --------------------------------------------------------------------------
# Conversion from Python specs


def to_type(spec: Any) -> Type:
    """Converts a Python type spec into a :class:`Type`.

    Accepted: a :class:`Type`; a string in type syntax (``"{float32}@CLIENTS"``);
    a dtype (``np.float32``, ``np.dtype``, ``tf.float32``, ``bool``, ``int`` →
    int32, ``float`` → float32, ``str``); a ``(dtype, shape)`` pair; a
    ``tf.TensorSpec``; a ``tf.data`` element spec or ``DatasetSpec`` (→ a
    sequence); a dict, namedtuple, list, tuple, attrs or dataclass instance
    whose values are specs (→ a struct remembering the container).
    """
    if isinstance(spec, Type):
        return spec
    if spec is None:
        raise FedcTypeError("None is not a type (a function without parameter has parameter None)")
    if isinstance(spec, str):
        return parse(spec)
    if _is_dtype_like(spec):
        return TensorType(spec)
    tf_type = _from_tf_spec(spec)
    if tf_type is not None:
        return tf_type
    if (
        isinstance(spec, tuple)
        and len(spec) == 2
        and _is_dtype_like(spec[0])
        and (spec[1] is None or _is_shape_like(spec[1]))
    ):
        return TensorType(spec[0], spec[1])
    if is_namedtuple(spec):
        return StructType(spec._asdict().items(), python_container=type(spec))
    if isinstance(spec, (list, tuple)):
        if spec and all(_is_name_value_pair(e) for e in spec):
            return StructType(list(spec))
        return StructType(list(spec), python_container=type(spec))
    if isinstance(spec, collections.abc.Mapping):
        return StructType(spec, python_container=type(spec))  # keys are names, checked
    if _is_attrs_instance(spec):
        import attrs

        return StructType(list(attrs.asdict(spec, recurse=False).items()), python_container=type(spec))
    if dataclasses.is_dataclass(spec) and not isinstance(spec, type):
        fields = [(f.name, getattr(spec, f.name)) for f in dataclasses.fields(spec)]
        return StructType(fields, python_container=type(spec))
    raise FedcTypeError(
        f"cannot interpret {spec!r} (a Python {type(spec).__name__}) as a fedc type"
    )


def _is_shape_like(value: Any) -> bool:
    if hasattr(value, "as_list") and hasattr(value, "rank"):
        return True
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return True
    if isinstance(value, (list, tuple)):
        return all(
            d is None or (isinstance(d, (int, np.integer)) and not isinstance(d, bool)) for d in value
        )
    return False


def _is_attrs_instance(value: Any) -> bool:
    return hasattr(type(value), "__attrs_attrs__") and not isinstance(value, type)


def _from_tf_spec(spec: Any) -> Optional[Type]:
    """Converts TensorFlow specs (duck-typed, so TF is imported only if in use)."""
    cls = type(spec)
    module = cls.__module__ or ""
    if not module.startswith(("tensorflow", "keras")):
        return None
    name = cls.__name__
    if name == "TensorSpec":
        shape = None if spec.shape.rank is None else spec.shape.as_list()
        return TensorType(spec.dtype, shape)
    if name == "DatasetSpec":
        return SequenceType(to_type(spec.element_spec))
    if name == "TensorShape":
        return None
    raise FedcTypeError(
        f"TensorFlow spec {spec!r} ({name}) is not supported; fedc supports dense tensors "
        "(tf.TensorSpec) and datasets of them"
    )


def infer_type(value: Any) -> Type:
    """The type of a Python value (numpy array, number, dict/list/tuple of them)."""
    if isinstance(value, np.ndarray):
        if value.dtype == object and value.size and all(isinstance(v, (str, bytes)) for v in value.flat):
            return TensorType(np.str_, value.shape)  # a str tensor as fedc keeps it (fedc.values.strings)
        return TensorType(value.dtype, value.shape)
    if isinstance(value, (np.generic, bool, int, float, str, bytes)):
        array = np.asarray(value)
        if isinstance(value, bool):
            return TensorType(np.bool_)
        if isinstance(value, int) and not isinstance(value, np.generic):
            return TensorType(np.int32)
        if isinstance(value, float) and not isinstance(value, np.generic):
            return TensorType(np.float32)
        return TensorType(array.dtype, array.shape)
    if is_namedtuple(value):
        return StructType([(k, infer_type(v)) for k, v in value._asdict().items()], type(value))
    if isinstance(value, collections.abc.Mapping):
        return StructType([(k, infer_type(v)) for k, v in value.items()], type(value))
    if isinstance(value, (list, tuple)):
        return StructType([infer_type(v) for v in value], type(value))
    raise FedcTypeError(f"cannot infer a fedc type for {value!r} (a Python {type(value).__name__})")
