"""The building blocks of fedc's IR.

A computation is a tree of immutable nodes. Every node has a
``type_signature`` computed and checked when it is built (a
:class:`FedcTypeError` names the node and both types when it does not fit) and
an optional source ``location``. Nodes compare equal by structure; the
location is not part of a node's identity (``ir.equal(a, b,
locations=True)`` compares it too).

Scoping (a :class:`Reference` names an enclosing :class:`Lambda` parameter or
:class:`Block` local, a :class:`SymbolRef` a computation of the module) is
checked by :func:`fedc.ir.verify`, not by the constructors, so that passes may
build open terms.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence, Union

import numpy as np

from fedc.errors import FedcTypeError, SourceLocation
from fedc.limits import MAX_NESTING, check_nesting
from fedc.ir import intrinsics
from fedc.types import (
    FederatedType,
    FunctionType,
    PlacementType,
    StructType,
    TensorType,
    Type,
    equal_trees,
    to_placement,
    mismatch_message,
    to_type,
)
from fedc.values import convert, strings

__all__ = [
    "Block",
    "Call",
    "Compiled",
    "Data",
    "Intrinsic",
    "Lambda",
    "Literal",
    "Node",
    "Placement",
    "Reference",
    "Selection",
    "Struct",
    "SymbolRef",
    "equal",
]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def check_identifier(name: Any, what: str) -> str:
    """Returns ``name`` if it is an identifier, else raises :class:`FedcTypeError`."""
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise FedcTypeError(
            f"{what} must be an identifier (letters, digits and _, not starting "
            f"with a digit), not {name!r}"
        )
    return name


class Node:
    """Base class of IR building blocks."""

    __slots__ = ("type_signature", "location", "_hash", "depth")

    def __setattr__(self, key, value):
        raise AttributeError(f"{type(self).__name__} is immutable")

    def _init(self, type_signature: Type, location: Optional[SourceLocation], **fields) -> None:
        if location is not None and not isinstance(location, SourceLocation):
            raise FedcTypeError(f"location must be a SourceLocation, not {location!r}")
        for key, value in fields.items():
            object.__setattr__(self, key, value)
        object.__setattr__(self, "type_signature", type_signature)
        object.__setattr__(self, "location", location)
        # How deeply the tree nests (a leaf is 1); bounded by fedc.limits.MAX_NESTING, so
        # every walk of the IR has a known bound.
        depth = 1 + max((c.depth for c in self.children()), default=0)
        if depth > MAX_NESTING:
            where = f" (at {location})" if location is not None else ""
            check_nesting(depth, f"the IR{where}")
        object.__setattr__(self, "depth", depth)
        object.__setattr__(self, "_hash", hash((type(self).__name__, self._key())))

    def _key(self) -> tuple:
        raise NotImplementedError

    # The fields that hold child nodes, declared once per class, in order: ``ONE`` a node,
    # ``OPTIONAL`` a node or None, ``PAIRS`` a tuple of (name, node) pairs. children(),
    # with_children(), equality and every generic traversal read this declaration.
    child_fields: tuple[tuple[str, str], ...] = ()

    def children(self) -> list["Node"]:
        """The direct child nodes, in order."""
        result = []
        for field, kind in self.child_fields:
            value = getattr(self, field)
            if kind == PAIRS:
                result.extend(v for _, v in value)
            elif value is not None:
                result.append(value)
        return result

    def attributes(self) -> tuple:
        """What identifies this node besides its children (the names of its pairs included)."""
        key = self._key()
        if not self.child_fields:
            return key
        return _without_children(key)

    def with_children(self, children: Sequence["Node"]) -> "Node":
        """This node rebuilt with ``children`` in place of ``children()`` (same count), keeping its location."""
        children = list(children)
        old = self.children()
        if len(children) != len(old):
            raise ValueError(f"{type(self).__name__} has {len(old)} children, not {len(children)}")
        if all(a is b for a, b in zip(children, old)):
            return self
        fields = {}
        position = 0
        for field, kind in self.child_fields:
            value = getattr(self, field)
            if kind == PAIRS:
                fields[field] = [(name, children[position + i]) for i, (name, _) in enumerate(value)]
                position += len(value)
            elif value is not None:
                fields[field] = children[position]
                position += 1
        return self._replace(fields)

    def _replace(self, fields: dict) -> "Node":
        raise ValueError(f"{type(self).__name__} has no children to replace")

    def __eq__(self, other) -> bool:
        return equal_trees(self, other)

    def __ne__(self, other) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"<{type(self).__name__} : {self.type_signature}>"

    def describe(self) -> str:
        """A short human name for this node, used in error messages."""
        where = f" at {self.location}" if self.location is not None else ""
        return f"{type(self).__name__.lower()}{where}"

    def with_location(self, location: Optional[SourceLocation]) -> "Node":
        """A copy of this node carrying ``location``."""
        return self._rebuild(location=location)

    def _rebuild(self, location):
        raise NotImplementedError

    def walk(self) -> Iterator["Node"]:
        """This node and all nodes below it, parents first."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children()))


ONE, OPTIONAL, PAIRS = "one", "optional", "pairs"
_CHILD = object()


def _without_children(key):
    """A node's key with its child nodes replaced by a marker (they are compared separately)."""
    if isinstance(key, Node):
        return _CHILD
    if isinstance(key, tuple):
        return tuple(_CHILD if isinstance(k, Node) else _without_children(k) for k in key)
    return key


def equal(a: Node, b: Node, locations: bool = False) -> bool:
    """Structural equality; with ``locations=True`` source locations must match too."""
    if a != b:
        return False
    if not locations:
        return True
    stack = [(a, b)]
    while stack:
        x, y = stack.pop()
        if x.location != y.location:
            return False
        stack.extend(zip(x.children(), y.children()))
    return True


class Reference(Node):
    """A use of a name bound by an enclosing :class:`Lambda` or :class:`Block`."""

    __slots__ = ("name",)

    def __init__(self, name: str, type_signature: Any, location: Optional[SourceLocation] = None):
        self._init(
            to_type(type_signature), location, name=check_identifier(name, "a reference name")
        )

    def _key(self):
        return (self.name, self.type_signature)

    def _rebuild(self, location):
        return Reference(self.name, self.type_signature, location)

    def __repr__(self) -> str:
        return f"Reference({self.name!r}, {self.type_signature})"


class SymbolRef(Node):
    """A use of a named computation of the enclosing module (``@name``)."""

    __slots__ = ("name",)

    def __init__(self, name: str, type_signature: Any, location: Optional[SourceLocation] = None):
        self._init(to_type(type_signature), location, name=check_identifier(name, "a symbol name"))

    def _key(self):
        return (self.name, self.type_signature)

    def _rebuild(self, location):
        return SymbolRef(self.name, self.type_signature, location)

    def __repr__(self) -> str:
        return f"SymbolRef({self.name!r}, {self.type_signature})"


class Selection(Node):
    """An element of a struct, selected by ``name`` or by ``index``."""

    __slots__ = ("source", "name", "index")

    def __init__(
        self,
        source: Node,
        name: Optional[str] = None,
        index: Optional[int] = None,
        location: Optional[SourceLocation] = None,
    ):
        _check_node(source, "the source of a selection")
        if (name is None) == (index is None):
            raise FedcTypeError("a selection takes exactly one of name and index")
        struct = source.type_signature
        if not isinstance(struct, StructType):
            raise FedcTypeError(
                f"selection {'.' + name if name is not None else f'[{index}]'} needs a struct, "
                f"but its source has type {struct}"
            )
        if name is not None:
            check_identifier(name, "a selected name")
            element = struct[name]
        else:
            if not isinstance(index, (int, np.integer)) or isinstance(index, bool) or index < 0:
                raise FedcTypeError(f"a selection index must be a non-negative int, not {index!r}")
            index = int(index)
            if index >= len(struct):
                raise FedcTypeError(
                    f"selection [{index}] is out of range for {struct}, which has {len(struct)} elements"
                )
            element = struct[index]
        self._init(element, location, source=source, name=name, index=index)

    child_fields = (("source", ONE),)

    def _key(self):
        return (self.source, self.name, self.index)

    def _replace(self, fields):
        return Selection(fields["source"], self.name, self.index, self.location)

    def _rebuild(self, location):
        return Selection(self.source, self.name, self.index, location)

    @property
    def resolved_index(self) -> int:
        """The index of the selected element, also when selected by name."""
        if self.index is not None:
            return self.index
        return self.source.type_signature.index_of(self.name)


class Struct(Node):
    """A struct of values; elements may be named."""

    __slots__ = ("elements", "python_container")

    def __init__(
        self,
        elements: Union[Iterable[Union[Node, tuple]], Mapping[str, Node]],
        python_container: Optional[type] = None,
        location: Optional[SourceLocation] = None,
    ):
        if isinstance(elements, Mapping):
            items = list(elements.items())
        else:
            items = [e if isinstance(e, tuple) else (None, e) for e in elements]
        normalized = []
        seen = set()
        for entry in items:
            if len(entry) != 2:
                raise FedcTypeError(f"a struct element is a node or a (name, node) pair, not {entry!r}")
            name, value = entry
            if name is not None:
                check_identifier(name, "a struct element name")
                if name in seen:
                    raise FedcTypeError(f"struct element name {name!r} appears twice")
                seen.add(name)
            _check_node(value, "a struct element")
            normalized.append((name, value))
        type_signature = StructType(
            [(n, v.type_signature) if n is not None else v.type_signature for n, v in normalized],
            python_container,
        )
        self._init(
            type_signature,
            location,
            elements=tuple(normalized),
            python_container=python_container,
        )

    child_fields = (("elements", PAIRS),)

    def _key(self):
        return self.elements

    def _replace(self, fields):
        return Struct(fields["elements"], self.python_container, self.location)

    def _rebuild(self, location):
        return Struct(self.elements, self.python_container, location)

    def __len__(self) -> int:
        return len(self.elements)


class Call(Node):
    """A call of ``function`` on ``argument`` (``None`` for a function without parameter)."""

    __slots__ = ("function", "argument")

    def __init__(
        self,
        function: Node,
        argument: Optional[Node] = None,
        location: Optional[SourceLocation] = None,
    ):
        _check_node(function, "the function of a call")
        fn_type = function.type_signature
        if not isinstance(fn_type, FunctionType):
            raise FedcTypeError(f"cannot call a value of type {fn_type}: it is not a function")
        callee = _callee_name(function)
        if fn_type.parameter is None:
            if argument is not None:
                raise FedcTypeError(
                    f"{callee} of type {fn_type} takes no argument, "
                    f"but is called with one of type {argument.type_signature}"
                )
        else:
            if argument is None:
                raise FedcTypeError(
                    f"{callee} of type {fn_type} needs an argument of type {fn_type.parameter}"
                )
            _check_node(argument, "the argument of a call")
            if not fn_type.parameter.is_assignable_from(argument.type_signature):
                raise FedcTypeError(
                    mismatch_message(f"argument of {callee}", fn_type.parameter, argument.type_signature)
                )
        self._init(fn_type.result, location, function=function, argument=argument)

    child_fields = (("function", ONE), ("argument", OPTIONAL))

    def _key(self):
        return (self.function, self.argument)

    def _replace(self, fields):
        return Call(fields["function"], fields.get("argument"), self.location)

    def _rebuild(self, location):
        return Call(self.function, self.argument, location)


def _callee_name(function: Node) -> str:
    if isinstance(function, Intrinsic):
        return function.uri
    if isinstance(function, (SymbolRef, Reference)):
        return f"{'@' if isinstance(function, SymbolRef) else '%'}{function.name}"
    if isinstance(function, Compiled) and function.name:
        return f"compiled {function.name}"
    return f"a {type(function).__name__.lower()}"


class Lambda(Node):
    """A function: a parameter (name and type, or none) and a result expression."""

    __slots__ = ("parameter_name", "parameter_type", "result")

    def __init__(
        self,
        parameter_name: Optional[str],
        parameter_type: Any,
        result: Node,
        location: Optional[SourceLocation] = None,
    ):
        if (parameter_name is None) != (parameter_type is None):
            raise FedcTypeError("a lambda has both a parameter name and type, or neither")
        if parameter_name is not None:
            check_identifier(parameter_name, "a lambda parameter name")
            parameter_type = to_type(parameter_type)
        _check_node(result, "the result of a lambda")
        self._init(
            FunctionType(parameter_type, result.type_signature),
            location,
            parameter_name=parameter_name,
            parameter_type=parameter_type,
            result=result,
        )

    child_fields = (("result", ONE),)

    def _key(self):
        return (self.parameter_name, self.parameter_type, self.result)

    def _replace(self, fields):
        return Lambda(self.parameter_name, self.parameter_type, fields["result"], self.location)

    def _rebuild(self, location):
        return Lambda(self.parameter_name, self.parameter_type, self.result, location)


class Block(Node):
    """Let-bindings: ``locals`` bound in order (each visible to the later ones), then ``result``.

    Local names are SSA: each is bound once within a computation (checked by
    the verifier).
    """

    __slots__ = ("locals", "result")

    def __init__(
        self,
        locals: Sequence[tuple[str, Node]],
        result: Node,
        location: Optional[SourceLocation] = None,
    ):
        normalized = []
        for entry in locals:
            if not isinstance(entry, tuple) or len(entry) != 2:
                raise FedcTypeError(f"a block local is a (name, node) pair, not {entry!r}")
            name, value = entry
            check_identifier(name, "a block local name")
            _check_node(value, f"the value of local {name!r}")
            normalized.append((name, value))
        _check_node(result, "the result of a block")
        self._init(result.type_signature, location, locals=tuple(normalized), result=result)

    child_fields = (("locals", PAIRS), ("result", ONE))

    def _key(self):
        return (self.locals, self.result)

    def _replace(self, fields):
        return Block(fields["locals"], fields["result"], self.location)

    def _rebuild(self, location):
        return Block(self.locals, self.result, location)


class Intrinsic(Node):
    """A federated intrinsic or local tensor op of the registry, at a concrete type.

    ``attrs`` are compile-time attributes of local ops (``axis`` of a
    reduction, ``dtype`` of a cast, …). The type signature is checked against
    the registry's type rule for ``uri``.
    """

    __slots__ = ("uri", "attrs")

    def __init__(
        self,
        uri: str,
        type_signature: Any,
        attrs: Optional[Mapping[str, Any]] = None,
        location: Optional[SourceLocation] = None,
    ):
        definition = intrinsics.lookup(uri)
        type_signature = to_type(type_signature)
        normalized = definition.normalize_attrs(attrs or {})
        definition.check_signature(type_signature, dict(normalized))
        self._init(type_signature, location, uri=uri, attrs=normalized)

    def _key(self):
        return (self.uri, self.type_signature, self.attrs)

    def _rebuild(self, location):
        return Intrinsic(self.uri, self.type_signature, dict(self.attrs), location)

    @property
    def definition(self):
        return intrinsics.lookup(self.uri)

    def __repr__(self) -> str:
        return f"Intrinsic({self.uri!r}, {self.type_signature})"


class Placement(Node):
    """A placement literal (``CLIENTS`` or ``SERVER``) as a value of type ``placement``."""

    __slots__ = ("placement",)

    def __init__(self, placement: Any, location: Optional[SourceLocation] = None):
        self._init(PlacementType(), location, placement=to_placement(placement))

    def _key(self):
        return (self.placement.name,)

    def _rebuild(self, location):
        return Placement(self.placement, location)


class Literal(Node):
    """A constant tensor. The value is kept as a read-only numpy array."""

    __slots__ = ("value",)

    def __init__(self, value: Any, type_signature: Any = None, location: Optional[SourceLocation] = None):
        if type_signature is not None:
            type_signature = to_type(type_signature)
            if not isinstance(type_signature, TensorType) or not type_signature.is_fully_defined():
                raise FedcTypeError(
                    f"a literal has a tensor type with a fully known shape, not {type_signature}"
                )
            what = f"literal {_short(value)} of type {type_signature}"
            if type_signature.dtype.kind == "U":
                array = strings(value, what)
            else:
                try:
                    array = np.asarray(value)
                    if array.dtype.kind == "f" and type_signature.dtype.kind in "iu" and isinstance(value, (list, tuple)):
                        array = np.array(value, dtype=object)  # Python ints beyond int64 made numpy choose float64
                except (TypeError, ValueError) as e:
                    raise FedcTypeError(f"literal {_short(value)} is not a {type_signature}: {e}") from None
            if array.shape != type_signature.shape:
                raise FedcTypeError(
                    f"literal of shape {list(array.shape)} does not have type {type_signature}"
                )
            array = convert(array, type_signature.dtype, what)
        elif _holds_strings(value):
            array = strings(value, f"literal {_short(value)}")
            type_signature = TensorType(np.str_, array.shape)
        else:
            try:
                array = np.asarray(value)
            except (TypeError, ValueError) as e:
                raise FedcTypeError(f"literal {value!r} is not a tensor: {e}") from None
            if array.dtype == object:
                raise FedcTypeError(f"literal {value!r} is not a tensor of one dtype")
            if not isinstance(value, (np.ndarray, np.generic)):
                # Python numbers take TensorFlow's defaults: float32 and int32.
                if array.dtype == np.float64:
                    array = convert(array, np.float32, f"literal {_short(value)}")
                elif array.dtype == np.int64 and (array.size == 0 or (
                    array.min() >= np.iinfo(np.int32).min and array.max() <= np.iinfo(np.int32).max
                )):
                    array = array.astype(np.int32)
            try:
                type_signature = TensorType(array.dtype, array.shape)
            except FedcTypeError as e:
                raise FedcTypeError(f"literal {value!r}: {e.message}") from None
        # A private C-order copy: 0-d stays 0-d, and the caller's array is not frozen.
        array = np.array(array, copy=True, order="C")
        array.flags.writeable = False
        self._init(type_signature, location, value=array)

    def _key(self):
        if self.value.dtype == object:  # strings (fedc.values.strings)
            content = tuple(self.value.ravel().tolist())
        else:
            content = self.value.tobytes()
        return (self.type_signature, content)

    def _rebuild(self, location):
        return Literal(self.value, self.type_signature, location)

    def __repr__(self) -> str:
        return f"Literal({self.value.tolist()!r}, {self.type_signature})"


def _holds_strings(value: Any) -> bool:
    """Whether an untyped literal value is a string tensor (a str, bytes, lists of them, a string array)."""
    while isinstance(value, (list, tuple)) and value:
        value = value[0]
    if isinstance(value, np.ndarray):
        return value.dtype.kind in "US" or (value.dtype == object and value.size > 0 and
                                            isinstance(value.flat[0], (str, bytes)))
    return isinstance(value, (str, bytes))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class Data(Node):
    """A named external input (a dataset, a table), referred to by ``uri``."""

    __slots__ = ("uri",)

    def __init__(self, uri: str, type_signature: Any, location: Optional[SourceLocation] = None):
        if not isinstance(uri, str) or not uri:
            raise FedcTypeError(f"a data uri is a non-empty string, not {uri!r}")
        self._init(to_type(type_signature), location, uri=uri)

    def _key(self):
        return (self.uri, self.type_signature)

    def _rebuild(self, location):
        return Data(self.uri, self.type_signature, location)


class Compiled(Node):
    """An opaque local computation: a serialized payload of some ``kind``.

    For ``kind="tensorflow"`` the payload is a serialized GraphDef and its
    bindings, produced by ``@fedc.tf_computation``. The IR never looks inside;
    ``content_hash`` (sha256 of the payload) names it in the textual IR. Its
    type is a function whose parameter and result are placement-free.
    """

    __slots__ = ("kind", "payload", "name", "content_hash")

    def __init__(
        self,
        kind: str,
        payload: bytes,
        type_signature: Any,
        name: Optional[str] = None,
        location: Optional[SourceLocation] = None,
    ):
        check_identifier(kind, "a compiled computation's kind")
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise FedcTypeError(f"a compiled computation's payload is bytes, not {type(payload).__name__}")
        payload = bytes(payload)
        if name is not None:
            check_identifier(name, "a compiled computation's name")
        type_signature = to_type(type_signature)
        if not isinstance(type_signature, FunctionType):
            raise FedcTypeError(f"a compiled computation has a function type, not {type_signature}")
        for t in type_signature.walk():
            if t is not type_signature and isinstance(t, (FederatedType, FunctionType, PlacementType)):
                raise FedcTypeError(
                    f"a compiled computation is local (no federated, function or placement types "
                    f"in its parameter or result), but has type {type_signature}"
                )
        digest = "sha256:" + hashlib.sha256(payload).hexdigest()
        self._init(type_signature, location, kind=kind, payload=payload, name=name, content_hash=digest)

    def _key(self):
        return (self.kind, self.content_hash, self.type_signature, self.name)

    def _rebuild(self, location):
        return Compiled(self.kind, self.payload, self.type_signature, self.name, location)


def _check_node(value: Any, what: str) -> None:
    if not isinstance(value, Node):
        raise FedcTypeError(f"{what} must be an IR node, not {type(value).__name__} {value!r}")
