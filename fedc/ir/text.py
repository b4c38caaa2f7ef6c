"""The textual IR: an MLIR-like text form of modules that round-trips exactly.

::

    fedc.module @temperature {
      fedc.func @get_average_temperature(%t: {float32}@CLIENTS) -> float32@SERVER {
        %0 = fed.mean(%t) : ({float32}@CLIENTS -> float32@SERVER)
        fedc.return %0
      }
    }

:func:`print_module` writes a module, :func:`parse_module` reads one back:
``parse_module(print_module(m)) == m`` (source locations included) and
``print_module(parse_module(t)) == t`` for printed text ``t``.
:func:`print_node` / :func:`parse_node` do the same for one computation
outside a module. The form is documented in ``docs/ir.md``; the grammar is
``grammar/ir.lark``.

A region lists ops and ends with ``fedc.return``. Values named by identifiers
(``%m``) are block locals; numbered values (``%0``) are anonymous
sub-expressions (temporaries) that the parser puts back into the tree, so each
is used exactly once, later in the region that defines it. Every op carries
its type, which the parser recomputes and checks; every error is a located
:class:`~fedc.errors.ParseError`.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import hashlib
import math
import re
from typing import Any, Callable, Mapping, Optional

import numpy as np

from fedc.ir.building_blocks import deep_recursion
from fedc.errors import FedcError, FedcTypeError, ParseError, SourceLocation
from fedc.ir import intrinsics
from fedc.ir.building_blocks import (
    Block,
    Call,
    Compiled,
    Data,
    Intrinsic,
    Lambda,
    Literal,
    Node,
    Placement,
    Reference,
    Selection,
    Struct,
    SymbolRef,
)
from fedc.ir.module import Module
from fedc.types import FunctionType, TensorType, Type

__all__ = [
    "intrinsic_uri",
    "op_name",
    "parse_module",
    "parse_node",
    "print_module",
    "print_node",
]

# Arrays with more elements than this print as raw bytes: dense<"0x...">.
DENSE_THRESHOLD = 64

_INDENT = "  "


# --------------------------------------------------------------------------
# Op names of intrinsics


def op_name(definition: intrinsics.IntrinsicDef) -> str:
    """The op name of an intrinsic: ``federated_X`` → ``fed.X``, ``sequence_X`` →
    ``seq.X``, a local op ``X`` → ``local.X`` (anything else: ``intrinsic.X``)."""
    uri = definition.uri
    if definition.kind is intrinsics.IntrinsicKind.LOCAL:
        return "local." + uri
    if uri.startswith("federated_"):
        return "fed." + uri[len("federated_"):]
    if uri.startswith("sequence_"):
        return "seq." + uri[len("sequence_"):]
    return "intrinsic." + uri


def _op_table() -> dict[str, str]:
    return {op_name(d): d.uri for d in intrinsics.all_definitions()}


def intrinsic_uri(name: str) -> str:
    """The intrinsic uri of an op name (``fed.mean`` → ``federated_mean``).

    Raises :class:`FedcError` naming close matches for an unknown op.
    """
    table = _op_table()
    uri = table.get(name)
    if uri is None:
        close = difflib.get_close_matches(name, list(table), n=3)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise FedcError(f"unknown op {name!r}{hint}")
    return uri


# --------------------------------------------------------------------------
# Strings and numbers

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
_UNESCAPES = {'"': '"', "\\": "\\", "/": "/", "n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}
_ESCAPE_RE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|(.))", re.S)
_PLAIN_STRING = re.compile(r"[ !#-\[\]-~]*\Z")  # printable ASCII except " and \


def _quote(text: str) -> str:
    """A double-quoted string: JSON escapes; non-printable characters as ``\\uXXXX``
    (or ``\\UXXXXXXXX`` beyond the BMP), never surrogate pairs."""
    if _PLAIN_STRING.match(text):
        return f'"{text}"'
    out = []
    for ch in text:
        escape = _ESCAPES.get(ch)
        if escape is not None:
            out.append(escape)
        elif ch.isprintable():
            out.append(ch)
        else:
            code = ord(ch)
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


class _BadEscape(Exception):
    def __init__(self, offset: int, message: str):
        self.offset = offset
        self.message = message


def _unquote(quoted: str) -> str:
    body = quoted[1:-1]

    def replace(match: re.Match) -> str:
        if match.group(1) is not None:
            return chr(int(match.group(1), 16))
        if match.group(2) is not None:
            code = int(match.group(2), 16)
            if code > 0x10FFFF:
                raise _BadEscape(match.start(), f"\\U{match.group(2)} is not a Unicode code point")
            return chr(code)
        char = match.group(3)
        if char not in _UNESCAPES:
            raise _BadEscape(
                match.start(),
                f"unknown escape \\{char}; the escapes are \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX \\UXXXXXXXX",
            )
        return _UNESCAPES[char]

    return _ESCAPE_RE.sub(replace, body)


_DECIMAL_INT = re.compile(r"[+-]?[0-9]+\Z")
_HEX_INT = re.compile(r"[+-]?0x[0-9A-Fa-f]+\Z")


def _uint_dtype(dtype: np.dtype) -> np.dtype:
    return np.dtype(f"<u{dtype.itemsize}")


def _float_bits_from_text(text: str, dtype: np.dtype) -> int:
    """The bit pattern of ``text`` read as a float of ``dtype`` (hex is the raw bits)."""
    width = dtype.itemsize * 8
    if _HEX_INT.match(text):
        if text[0] in "+-":
            raise ValueError("a hexadecimal float is its raw bit pattern and has no sign")
        bits = int(text, 16)
        if bits >= 1 << width:
            raise ValueError(f"{text} has more than the {width} bits of a {dtype}")
        return bits
    value = float(text)
    with np.errstate(over="ignore", invalid="ignore"):
        array = np.array(value, dtype=np.float64).astype(dtype.newbyteorder("<"))
    if np.isinf(array) and not math.isinf(value):
        raise ValueError(f"{text} is too large for {dtype}")
    return int(array.view(_uint_dtype(dtype)))


def _format_float(value: np.floating) -> str:
    """The shortest text that reads back as the same bits; else the bits in hex."""
    dtype = np.dtype(value.dtype).newbyteorder("<")
    array = np.array(value, dtype=dtype)
    bits = int(array.view(_uint_dtype(dtype)))
    text = str(value)
    try:
        if _float_bits_from_text(text, dtype) == bits:
            return text
    except ValueError:
        pass
    return f"0x{bits:0{dtype.itemsize * 2}x}"


# --------------------------------------------------------------------------
# Literal values


def _format_literal(array: np.ndarray) -> str:
    dtype = array.dtype
    if dtype.kind != "U" and array.size > DENSE_THRESHOLD:
        raw = np.ascontiguousarray(array).astype(dtype.newbyteorder("<")).tobytes()
        return f'dense<"0x{raw.hex()}">'
    flat = array.reshape(-1)
    kind = dtype.kind
    if kind == "b":
        items = ["true" if v else "false" for v in flat.tolist()]
    elif kind in "iu":
        items = [str(v) for v in flat.tolist()]
    elif kind == "f":
        items = [_format_float(v) for v in flat]
    elif kind == "c":
        component = np.dtype(f"f{dtype.itemsize // 2}")
        parts = flat.view(component).reshape(-1, 2)
        items = [f"({_format_float(re_)}, {_format_float(im)})" for re_, im in parts]
    elif kind == "U":
        items = [_quote(v) for v in flat.tolist()]
    else:  # pragma: no cover - Literal only holds fedc dtypes
        raise FedcError(f"cannot print a literal of dtype {dtype}")
    return _nest(items, array.shape, 0)


def _nest(items: list[str], shape: tuple, start: int) -> str:
    if not shape:
        return items[start]
    inner = math.prod(shape[1:])
    return "[" + ", ".join(_nest(items, shape[1:], start + i * inner) for i in range(shape[0])) + "]"


# --------------------------------------------------------------------------
# Attributes


def _format_attr_value(key: str, value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, Type):
        return f"!<{value}>"
    if isinstance(value, (tuple, list)) and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in value
    ):
        return "[" + ", ".join(str(int(v)) for v in value) + "]"
    raise FedcError(f"cannot print attribute {key} = {value!r} in the textual IR")


def _format_attrs(attrs: tuple) -> str:
    if not attrs:
        return ""
    return " {" + ", ".join(f"{k} = {_format_attr_value(k, v)}" for k, v in attrs) + "}"


# --------------------------------------------------------------------------
# Printing


@deep_recursion
def print_module(module: Module, elide_resources: bool = False, locations: bool = True) -> str:
    """The textual IR of ``module``.

    ``elide_resources=True`` leaves out the trailing ``{-# resources #-}``
    section holding the payloads of compiled computations (for IR dumps; such
    text does not parse back). ``locations=False`` leaves out every
    ``loc(...)``.
    """
    if not isinstance(module, Module):
        raise FedcError(f"print_module expects a Module, not {type(module).__name__}")
    symbols = {name: node.type_signature for name, node in module.items()}
    printer = _Printer(symbols, locations)
    printer.lines.append(f"fedc.module @{module.name} {{")
    for index, (name, node) in enumerate(module.items()):
        if index:
            printer.lines.append("")
        printer.entry(name, node, 1)
    printer.lines.append("}")
    if not elide_resources:
        printer.resource_section()
    return "\n".join(printer.lines) + "\n"


@deep_recursion
def print_node(node: Node, elide_resources: bool = False, locations: bool = True) -> str:
    """The textual IR of one computation outside a module.

    A lambda prints as ``fedc.func(%x: T) -> R { ... }``, anything else as
    ``fedc.value : T { ... }`` (no ``@name``). Without a module, symbol
    references print as ``fedc.ref @f : T`` and references to names bound
    outside ``node`` as ``fedc.ref %x : T``; :func:`parse_node` reads it back.
    """
    if not isinstance(node, Node):
        raise FedcError(f"print_node expects an IR node, not {type(node).__name__}")
    printer = _Printer(None, locations)
    printer.entry(None, node, 0)
    if not elide_resources:
        printer.resource_section()
    return "\n".join(printer.lines) + "\n"


class _Printer:
    def __init__(self, symbols: Optional[Mapping[str, Type]], locations: bool):
        self.symbols = symbols
        self.locations = locations
        self.lines: list[str] = []
        self.resources: dict[str, bytes] = {}
        self.op_names: dict[str, str] = {}
        self.counter = 0
        self.scope: dict[str, list[Type]] = {}

    # Helpers ---------------------------------------------------------------
    def loc(self, node: Node) -> Optional[SourceLocation]:
        return node.location if self.locations else None

    @staticmethod
    def loc_text(location: Optional[SourceLocation], call_only: bool = False) -> str:
        if location is None:
            return ""
        marker = "call " if call_only else ""
        return f" loc({marker}{_quote(str(location.file))}:{int(location.line)}:{int(location.column)})"

    def fresh(self) -> str:
        name = f"%{self.counter}"
        self.counter += 1
        return name

    def bind(self, name: str, t: Type) -> None:
        self.scope.setdefault(name, []).append(t)

    def unbind(self, name: str) -> None:
        stack = self.scope[name]
        stack.pop()
        if not stack:
            del self.scope[name]

    def op_name(self, intrinsic: Intrinsic) -> str:
        name = self.op_names.get(intrinsic.uri)
        if name is None:
            name = self.op_names[intrinsic.uri] = op_name(intrinsic.definition)
        return name

    @staticmethod
    def params(node: Lambda) -> str:
        if node.parameter_name is None:
            return "()"
        return f"(%{node.parameter_name}: {node.parameter_type})"

    # Structure -------------------------------------------------------------
    def entry(self, name: Optional[str], node: Node, indent: int) -> None:
        self.counter = 0
        self.scope = {}
        pad = _INDENT * indent
        symbol = f" @{name}" if name is not None else ""
        if isinstance(node, Lambda):
            self.lines.append(
                f"{pad}fedc.func{symbol}{self.params(node)} -> {node.result.type_signature}"
                f"{self.loc_text(self.loc(node))} {{"
            )
            self.lambda_body(node, indent + 1)
        else:
            self.lines.append(f"{pad}fedc.value{symbol} : {node.type_signature} {{")
            self.region(node, indent + 1)
        self.lines.append(pad + "}")

    def lambda_body(self, node: Lambda, indent: int) -> None:
        if node.parameter_name is not None:
            self.bind(node.parameter_name, node.parameter_type)
        self.region(node.result, indent)
        if node.parameter_name is not None:
            self.unbind(node.parameter_name)

    def region(self, node: Node, indent: int, force_block: bool = False) -> None:
        pad = _INDENT * indent
        if force_block or (isinstance(node, Block) and node.locals and self.loc(node) is None):
            bound = []
            for name, value in node.locals:
                self.define(f"%{name}", value, indent)
                self.bind(name, value.type_signature)
                bound.append(name)
            result = self.operand(node.result, indent)
            for name in reversed(bound):
                self.unbind(name)
        else:
            result = self.operand(node, indent)
        self.lines.append(f"{pad}fedc.return {result}")

    def define(self, target: Optional[str], node: Node, indent: int) -> str:
        """Emits the op(s) defining ``node`` as ``target`` (a fresh temporary if None)."""
        pad = _INDENT * indent
        location = self.loc(node)
        if isinstance(node, Lambda):
            target = target or self.fresh()
            self.lines.append(
                f"{pad}{target} = fedc.lambda{self.params(node)} -> {node.result.type_signature}"
                f"{self.loc_text(location)} {{"
            )
            self.lambda_body(node, indent + 1)
            self.lines.append(pad + "}")
            return target
        if isinstance(node, Block):
            target = target or self.fresh()
            self.lines.append(f"{pad}{target} = fedc.block -> {node.type_signature}{self.loc_text(location)} {{")
            self.region(node, indent + 1, force_block=True)
            self.lines.append(pad + "}")
            return target
        text = self.op_text(node, location, indent)
        target = target or self.fresh()
        self.lines.append(f"{pad}{target} = {text}")
        return target

    def op_text(self, node: Node, location: Optional[SourceLocation], indent: int) -> str:
        """The op for ``node`` (after emitting the ops of its operands)."""
        t = node.type_signature
        if isinstance(node, Call):
            function = node.function
            if isinstance(function, Intrinsic):
                callee_location = self.loc(function)
                if callee_location is None or callee_location == location:
                    args = self.args(node.argument, indent)
                    call_only = location is not None and callee_location is None
                    return (
                        f"{self.op_name(function)}{args}{_format_attrs(function.attrs)} : "
                        f"{function.type_signature}{self.loc_text(location, call_only)}"
                    )
            callee = self.operand(function, indent)
            args = self.args(node.argument, indent)
            return f"fedc.call {callee}{args} : {t}{self.loc_text(location)}"
        if isinstance(node, Intrinsic):
            return f"{self.op_name(node)}{_format_attrs(node.attrs)} : {t}{self.loc_text(location)}"
        if isinstance(node, Reference):
            return f"fedc.ref %{node.name} : {t}{self.loc_text(location)}"
        if isinstance(node, SymbolRef):
            return f"fedc.ref @{node.name} : {t}{self.loc_text(location)}"
        if isinstance(node, Selection):
            source = self.operand(node.source, indent)
            return f"fedc.select {source}{self.selector(node)} : {t}{self.loc_text(location)}"
        if isinstance(node, Struct):
            elements = ", ".join(self.element(n, v, indent) for n, v in node.elements)
            return f"fedc.struct({elements}) : {t}{self.loc_text(location)}"
        if isinstance(node, Placement):
            return f"fedc.placement {node.placement.name} : {t}{self.loc_text(location)}"
        if isinstance(node, Data):
            return f"fedc.data {_quote(node.uri)} : {t}{self.loc_text(location)}"
        if isinstance(node, Literal):
            return f"fedc.constant {_format_literal(node.value)} : {t}{self.loc_text(location)}"
        if isinstance(node, Compiled):
            self.resources.setdefault(node.content_hash, node.payload)
            name = f" @{node.name}" if node.name is not None else ""
            return f"fedc.compiled {node.kind}{name} {_quote(node.content_hash)} : {t}{self.loc_text(location)}"
        raise FedcError(f"cannot print a {type(node).__name__} in the textual IR")

    @staticmethod
    def selector(node: Selection) -> str:
        return f".{node.name}" if node.name is not None else f"[{node.index}]"

    def element(self, name: Optional[str], value: Node, indent: int) -> str:
        text = self.operand(value, indent)
        return f"{name}={text}" if name is not None else text

    def args(self, argument: Optional[Node], indent: int) -> str:
        if argument is None:
            return "()"
        if isinstance(argument, Struct) and len(argument) >= 2 and self.loc(argument) is None:
            return "(" + ", ".join(self.element(n, v, indent) for n, v in argument.elements) + ")"
        return f"({self.operand(argument, indent)})"

    def operand(self, node: Node, indent: int) -> str:
        """An operand for ``node``: inline if it has an inline form, else a temporary."""
        if self.loc(node) is None:
            if isinstance(node, Reference):
                stack = self.scope.get(node.name)
                if stack and stack[-1] == node.type_signature:
                    return f"%{node.name}"
            elif isinstance(node, SymbolRef):
                if self.symbols is not None and self.symbols.get(node.name) == node.type_signature:
                    return f"@{node.name}"
            elif isinstance(node, Selection):
                return self.operand(node.source, indent) + self.selector(node)
            elif isinstance(node, Struct):
                return "<" + ", ".join(self.element(n, v, indent) for n, v in node.elements) + ">"
        return self.define(None, node, indent)

    def resource_section(self) -> None:
        if not self.resources:
            return
        entries = [
            f"{_INDENT * 2}{_quote(key)}: \"{base64.b64encode(payload).decode('ascii')}\""
            for key, payload in self.resources.items()
        ]
        self.lines.append("")
        self.lines.append("{-#")
        self.lines.append(f"{_INDENT}resources: {{")
        self.lines.append(",\n".join(entries))
        self.lines.append(f"{_INDENT}}}")
        self.lines.append("#-}")


# --------------------------------------------------------------------------
# Parsing


@deep_recursion
def parse_module(text: str, filename: str = "<ir>") -> Module:
    """Parses the textual IR of a module.

    Raises :class:`ParseError` (``file:line:col``, the line and a caret) for
    bad syntax, unknown ops, scoping errors, misused temporaries, type errors
    and missing or corrupt payloads.
    """
    return _Parser(text, filename, module_mode=True).parse()


@deep_recursion
def parse_node(text: str, filename: str = "<ir>") -> Node:
    """Parses one computation printed by :func:`print_node`."""
    return _Parser(text, filename, module_mode=False).parse()


_STARTS = ("module_text", "node_text")

_TERMINAL_WORDS = {
    "LOCAL_ID": "a named value (%name)",
    "TEMP_ID": "a numbered value (%0)",
    "SYMBOL": "a symbol (@name)",
    "OP_NAME": "an op name",
    "NUMBER": "a number",
    "STRING": "a string",
    "NAME": "a name",
    "INT": "an integer",
    "types__INT": "an integer",
    "types__QUOTED_DTYPE": "a quoted dtype",
    "$END": "end of input",
}


def _position(item: Any) -> Optional[tuple[int, int]]:
    import lark

    if isinstance(item, lark.Token):
        if item.line is not None:
            return item.line, item.column
        return None
    if isinstance(item, lark.Tree):
        meta = item.meta
        if not meta.empty:
            return meta.line, meta.column
        return None
    if isinstance(item, tuple):
        return item
    return None


class _Temp:
    __slots__ = ("node", "token", "use")

    def __init__(self, node: Node, token):
        self.node = node
        self.token = token
        self.use = None


class _RegionFrame:
    """A region being parsed: its named values and temporaries."""

    __slots__ = ("named", "temps", "later")

    def __init__(self):
        self.named: dict[str, tuple[Type, Any]] = {}
        self.temps: dict[str, _Temp] = {}
        self.later: dict[str, Any] = {}


class _LambdaFrame:
    __slots__ = ("name", "type", "token")

    def __init__(self, name: str, t: Type, token):
        self.name = name
        self.type = t
        self.token = token


class _Parser:
    def __init__(self, text: str, filename: str, module_mode: bool):
        if not isinstance(text, str):
            raise FedcTypeError(f"the textual IR is a string, not {type(text).__name__}")
        self.text = text
        self.filename = filename
        self.module_mode = module_mode
        self.symbols: dict[str, Type] = {}
        self.resources: Optional[dict[str, bytes]] = None
        self.frames: list = []
        self.definitions: dict[str, Any] = {}  # every named value of the computation → token
        self.op_table: Optional[dict[str, str]] = None

    # Errors ----------------------------------------------------------------
    def error(self, where: Any, message: str, fallback: Any = None) -> ParseError:
        position = _position(where) or _position(fallback) or (1, 1)
        return ParseError(message, SourceLocation(self.filename, position[0], position[1]), self.text)

    def at(self, token) -> str:
        position = _position(token)
        return f"{position[0]}:{position[1]}" if position else "?"

    def syntax_error(self, error, parser) -> ParseError:
        import lark
        from fedc.types import parse_error_from_lark

        located = parse_error_from_lark(error, self.filename, self.text, "IR", parser)
        if isinstance(error, lark.exceptions.UnexpectedToken):
            # A misspelt fedc.* keyword lexes as an op name; name the op, not the next token.
            stack = getattr(getattr(error, "state", None), "value_stack", None) or []
            last = stack[-1] if stack else None
            if isinstance(last, lark.Token) and last.type == "OP_NAME":
                unknown = self.unknown_op(last)
                if unknown is not None:
                    return unknown
            if error.token.type == "$END":
                found = "end of input"
            else:
                found = repr(str(error.token))
            message = f"syntax error: unexpected {found}; expected {self.describe(error.expected, parser)}"
        elif isinstance(error, lark.exceptions.UnexpectedCharacters):
            message = f"syntax error: unexpected character {error.char!r}"
            if error.allowed:
                message += f"; expected {self.describe(error.allowed, parser)}"
        else:
            message = located.message
        return ParseError(message, located.location, self.text)

    @staticmethod
    def describe(names, parser) -> str:
        patterns = {t.name: t.pattern for t in parser.terminals}
        words = set()
        ops = False
        for name in names:
            pattern = patterns.get(name)
            if name == "OP_NAME" or (
                pattern is not None
                and type(pattern).__name__ == "PatternStr"
                and pattern.value.startswith("fedc.")
                and pattern.value not in ("fedc.return", "fedc.module", "fedc.func", "fedc.value")
            ):
                ops = True
            elif name in _TERMINAL_WORDS:
                words.add(_TERMINAL_WORDS[name])
            elif pattern is not None and type(pattern).__name__ == "PatternStr":
                words.add(repr(pattern.value))
            else:
                words.add(name.split("__")[-1].lower().replace("_", " "))
        ordered = sorted(words)
        if ops:
            ordered.insert(0, "an op (fed.*, seq.*, local.* or fedc.*)")
        if not ordered:
            return "something else"
        if len(ordered) == 1:
            return ordered[0]
        return ", ".join(ordered[:-1]) + " or " + ordered[-1]

    def wrap(self, where: Any, action: Callable[[], Any], prefix: str = "", fallback: Any = None):
        """Runs ``action``, turning a :class:`FedcError` (from a constructor) into a located ParseError."""
        try:
            return action()
        except ParseError:
            raise
        except FedcError as e:
            raise self.error(where, prefix + e.message, fallback) from None

    # Entry point -----------------------------------------------------------
    def parse(self):
        import lark
        from lark.visitors import merge_transformers

        from fedc.grammar import load
        from fedc.types import type_transformer

        parser = load("ir", start=_STARTS)
        start = "module_text" if self.module_mode else "node_text"
        try:
            tree = parser.parse(self.text, start=start)
        except lark.exceptions.UnexpectedInput as e:
            raise self.syntax_error(e, parser) from None
        transformer = merge_transformers(lark.Transformer(), types=type_transformer(self.filename, self.text))
        try:
            tree = transformer.transform(tree)
        except lark.exceptions.VisitError as e:
            original = e.orig_exc
            if isinstance(original, ParseError):
                raise original from None
            if isinstance(original, FedcError):
                raise self.error(e.obj, original.message) from None
            raise
        if self.module_mode:
            name_token, *entries, resources = tree.children
            self.resources = self.parse_resources(resources)
            for entry in entries:
                symbol = entry.children[0]
                if symbol is None:
                    raise self.error(entry, "a computation of a module needs a name: fedc.func @name or fedc.value @name")
                name = str(symbol)[1:]
                if name in self.symbols:
                    raise self.error(symbol, f"@{name} is defined twice in module {name_token}")
                self.symbols[name] = self.entry_type(entry)
            computations = [(str(entry.children[0])[1:], self.entry(entry)) for entry in entries]
            return Module(str(name_token)[1:], computations)
        entry, resources = tree.children
        self.resources = self.parse_resources(resources)
        return self.entry(entry)

    def parse_resources(self, tree) -> Optional[dict[str, bytes]]:
        if tree is None:
            return None
        result: dict[str, bytes] = {}
        for resource in tree.children:
            key_token, value_token = resource.children
            key = self.string(key_token)
            if not re.fullmatch(r"sha256:[0-9a-f]{64}", key):
                raise self.error(key_token, f"resource key {key_token} is not a content hash sha256:<64 hex digits>")
            if key in result:
                raise self.error(key_token, f"resource {key_token} appears twice")
            try:
                payload = base64.b64decode(self.string(value_token), validate=True)
            except (binascii.Error, ValueError):
                raise self.error(value_token, f"the payload of resource {key_token} is not valid base64") from None
            digest = "sha256:" + hashlib.sha256(payload).hexdigest()
            if digest != key:
                raise self.error(
                    value_token,
                    f"the payload of resource {key_token} does not match its hash: it hashes to {digest}",
                )
            result[key] = payload
        return result

    # Entries ---------------------------------------------------------------
    def entry_type(self, entry) -> Type:
        if entry.data == "func":
            _, params, result_ty, _, _ = entry.children
            parameter = self.param(params)
            return FunctionType(parameter[1] if parameter else None, self.type_of(result_ty))
        return self.type_of(entry.children[1])

    def entry(self, entry) -> Node:
        self.frames = []
        self.definitions = {}
        symbol = entry.children[0]
        what = f"@{str(symbol)[1:]}" if symbol is not None else "the computation"
        if entry.data == "func":
            _, params, result_ty, loc, region = entry.children
            return self.lambda_(params, result_ty, loc, region, what, entry)
        _, ty, region = entry.children
        body = self.region(region)
        self.expect_type(ty, body.type_signature, f"{what}'s region")
        return body

    def lambda_(self, params, result_ty, loc, region, what: str, where) -> Lambda:
        parameter = self.param(params)
        location = self.location(loc)
        if parameter is not None:
            name, t, token = parameter
            self.note_definition(name, token)
            self.frames.append(_LambdaFrame(name, t, token))
            body = self.region(region)
            self.frames.pop()
        else:
            name = t = None
            body = self.region(region)
        self.expect_type(result_ty, body.type_signature, f"the result of {what}")
        return self.wrap(where, lambda: Lambda(name, t, body, location))

    def param(self, params):
        (param,) = params.children
        if param is None:
            return None
        token, ty = param.children
        return str(token)[1:], self.type_of(ty), token

    # Regions ---------------------------------------------------------------
    def region(self, tree, force_block: bool = False, block_location=None, where=None) -> Node:
        *ops, ret = tree.children
        frame = _RegionFrame()
        for op in ops:
            target = op.children[0]
            if target.type == "TEMP_ID":
                frame.later.setdefault(str(target)[1:], target)
        self.frames.append(frame)
        locals_ = []
        for op in ops:
            target, body = op.children
            name = str(target)[1:]
            if target.type == "TEMP_ID":
                previous = self.visible_temp(name)
                if previous is not None:
                    raise self.error(target, f"%{name} is defined twice (first at {self.at(previous.token)})")
                node = self.op(body)
                frame.temps[name] = _Temp(node, target)
            else:
                if name in frame.named:
                    first = frame.named[name][1]
                    raise self.error(
                        target, f"%{name} is defined twice in this region (first at {self.at(first)})"
                    )
                node = self.op(body)
                self.check_capture(frame, name, target)
                frame.named[name] = (node.type_signature, target)
                self.note_definition(name, target)
                locals_.append((name, node))
        (result_tree,) = ret.children
        result = self.operand(result_tree)
        for temp_name, temp in frame.temps.items():
            if temp.use is None:
                raise self.error(
                    temp.token,
                    f"temporary %{temp_name} is never used; a numbered value is used exactly once, "
                    f"later in its region (give it a name, %name, to keep an unused value)",
                )
        self.frames.pop()
        if force_block or locals_:
            return self.wrap(where or tree, lambda: Block(locals_, result, block_location))
        return result

    def note_definition(self, name: str, token) -> None:
        self.definitions.setdefault(name, token)

    def regions(self):
        return [f for f in self.frames if isinstance(f, _RegionFrame)]

    def visible_temp(self, name: str) -> Optional[_Temp]:
        for frame in self.regions():
            if name in frame.temps:
                return frame.temps[name]
        return None

    def check_capture(self, frame: _RegionFrame, name: str, token) -> None:
        """A pending temporary must not move under a definition that shadows a name it uses."""
        for temp_name, temp in frame.temps.items():
            if temp.use is None and name in _free_names(temp.node):
                raise self.error(
                    token,
                    f"%{name} shadows the %{name} that temporary %{temp_name} (defined at "
                    f"{self.at(temp.token)}) uses, but %{temp_name} is used after this definition; "
                    f"use %{temp_name} before defining %{name}",
                )

    def lookup(self, name: str) -> Optional[Type]:
        for frame in reversed(self.frames):
            if isinstance(frame, _RegionFrame):
                entry = frame.named.get(name)
                if entry is not None:
                    return entry[0]
            elif frame.name == name:
                return frame.type
        return None

    # Ops -------------------------------------------------------------------
    def op(self, body) -> Node:
        handler = getattr(self, "op_" + body.data)
        return handler(body, *body.children)

    def op_intrinsic_op(self, tree, name_token, args, attrs, ty, loc):
        name = str(name_token)
        unknown = self.unknown_op(name_token)
        if unknown is not None:
            raise unknown
        uri = self.op_table[name]
        attr_values = self.attrs(attrs) if attrs is not None else {}
        fn_type = self.type_of(ty)
        if args is None:
            location, call_only = self.location(loc), False
        else:
            location, call_only = self.location(loc, allow_call=True)
        intrinsic = self.wrap(
            name_token,
            lambda: Intrinsic(uri, fn_type, attr_values, None if call_only else location),
            f"{name}: ",
        )
        if args is None:
            return intrinsic
        argument = self.call_argument(args)
        return self.wrap(args, lambda: Call(intrinsic, argument, location), f"{name}: ")

    def unknown_op(self, token) -> Optional[ParseError]:
        """A ParseError for an unknown op name (None if the op is known)."""
        if self.op_table is None:
            self.op_table = _op_table()
        name = str(token)
        if name in self.op_table:
            return None
        close = difflib.get_close_matches(name, list(self.op_table) + list(_FEDC_OPS), n=3)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        return self.error(token, f"unknown op {name!r}{hint}")

    def op_call_op(self, tree, function_tree, args, ty, loc):
        function = self.operand(function_tree)
        argument = self.call_argument(args)
        location = self.location(loc)
        call = self.wrap(args, lambda: Call(function, argument, location), "fedc.call: ")
        self.expect_type(ty, call.type_signature, "fedc.call")
        return call

    def op_lambda_op(self, tree, params, result_ty, loc, region):
        return self.lambda_(params, result_ty, loc, region, "fedc.lambda", tree)

    def op_block_op(self, tree, ty, loc, region):
        block = self.region(region, force_block=True, block_location=self.location(loc), where=tree)
        self.expect_type(ty, block.type_signature, "fedc.block")
        return block

    def op_ref_op(self, tree, token, ty, loc):
        declared = self.type_of(ty)
        location = self.location(loc)
        name = str(token)[1:]
        if token.type == "SYMBOL":
            if self.module_mode:
                actual = self.symbols.get(name)
                if actual is None:
                    raise self.undefined_symbol(token)
                self.expect_type(ty, actual, f"@{name}")
            return self.wrap(token, lambda: SymbolRef(name, declared, location))
        actual = self.lookup(name)
        if actual is None:
            if self.module_mode:
                raise self.undefined_value(token)
        else:
            self.expect_type(ty, actual, f"%{name}")
        return self.wrap(token, lambda: Reference(name, declared, location))

    def op_select_op(self, tree, operand_tree, ty, loc):
        if operand_tree.data not in ("use_field", "use_index"):
            raise self.error(operand_tree, "fedc.select takes a selection, like %x.name or %x[0]")
        location = self.location(loc)
        selection = self.selection(operand_tree, location)
        self.expect_type(ty, selection.type_signature, "fedc.select")
        return selection

    def op_struct_op(self, tree, args, ty, loc):
        elements = self.arg_list(args)
        location = self.location(loc)
        struct = self.wrap(args, lambda: Struct(elements, location=location))
        self.expect_type(ty, struct.type_signature, "fedc.struct")
        return struct

    def op_placement_op(self, tree, name_token, ty, loc):
        location = self.location(loc)
        node = self.wrap(name_token, lambda: Placement(str(name_token), location))
        self.expect_type(ty, node.type_signature, "fedc.placement")
        return node

    def op_data_op(self, tree, uri_token, ty, loc):
        uri = self.string(uri_token)
        t = self.type_of(ty)
        location = self.location(loc)
        return self.wrap(uri_token, lambda: Data(uri, t, location))

    def op_constant_op(self, tree, value_tree, ty, loc):
        t = self.type_of(ty)
        if not isinstance(t, TensorType) or not t.is_fully_defined():
            raise self.error(ty, f"a constant has a tensor type with a fully known shape, not {t}")
        array = self.literal(value_tree, t, tree)
        location = self.location(loc)
        return self.wrap(value_tree, lambda: Literal(array, t, location))

    def op_compiled_op(self, tree, kind_token, name_token, hash_token, ty, loc):
        key = self.string(hash_token)
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", key):
            raise self.error(hash_token, f"{hash_token} is not a content hash sha256:<64 hex digits>")
        if self.resources is None:
            raise self.error(
                hash_token,
                f"the payload of compiled computation {hash_token} is missing: this text has no "
                "resources section (it was printed with elide_resources=True, as IR dumps are)",
            )
        payload = self.resources.get(key)
        if payload is None:
            raise self.error(
                hash_token,
                f"the payload of compiled computation {hash_token} is missing from the resources section",
            )
        t = self.type_of(ty)
        location = self.location(loc)
        name = str(name_token)[1:] if name_token is not None else None
        return self.wrap(ty, lambda: Compiled(str(kind_token), payload, t, name, location), "fedc.compiled: ")

    # Operands --------------------------------------------------------------
    def operand(self, tree) -> Node:
        kind = tree.data
        if kind == "use_local":
            (token,) = tree.children
            name = str(token)[1:]
            t = self.lookup(name)
            if t is None:
                raise self.undefined_value(token)
            return Reference(name, t)
        if kind == "use_temp":
            return self.use_temp(tree.children[0])
        if kind == "use_symbol":
            (token,) = tree.children
            name = str(token)[1:]
            if not self.module_mode:
                raise self.error(
                    token,
                    f"@{name}: outside a module, a symbol is referred to with its type: fedc.ref @{name} : T",
                )
            t = self.symbols.get(name)
            if t is None:
                raise self.undefined_symbol(token)
            return SymbolRef(name, t)
        if kind in ("use_field", "use_index"):
            return self.selection(tree, None)
        if kind == "use_struct":
            elements = self.arg_list(tree)
            return self.wrap(tree, lambda: Struct(elements))
        raise AssertionError(kind)  # pragma: no cover

    def selection(self, tree, location) -> Selection:
        source_tree, selector = tree.children
        source = self.operand(source_tree)
        if tree.data == "use_field":
            return self.wrap(selector, lambda: Selection(source, name=str(selector), location=location))
        return self.wrap(selector, lambda: Selection(source, index=int(selector), location=location))

    def use_temp(self, token) -> Node:
        name = str(token)[1:]
        frame = self.regions()[-1]
        temp = frame.temps.get(name)
        if temp is None:
            if name in frame.later:
                raise self.error(
                    token, f"%{name} is used before its definition (at {self.at(frame.later[name])})"
                )
            outer = self.visible_temp(name)
            if outer is not None:
                raise self.error(
                    token,
                    f"temporary %{name} is defined in an enclosing region (at {self.at(outer.token)}); "
                    "a numbered value is used in the region that defines it (name it, %name, to use it here)",
                )
            raise self.error(token, f"undefined value %{name}")
        if temp.use is not None:
            raise self.error(
                token,
                f"temporary %{name} is used twice (first at {self.at(temp.use)}); a numbered value is "
                "used exactly once (name it, %name, to share it)",
            )
        temp.use = token
        return temp.node

    def undefined_value(self, token) -> ParseError:
        name = str(token)[1:]
        elsewhere = self.definitions.get(name)
        if elsewhere is not None:
            return self.error(
                token, f"%{name} is not in scope here (it is defined at {self.at(elsewhere)}, in a region that does not enclose this use)"
            )
        return self.error(token, f"undefined value %{name}")

    def undefined_symbol(self, token) -> ParseError:
        name = str(token)[1:]
        close = difflib.get_close_matches(name, list(self.symbols), n=3)
        hint = f"; did you mean {' or '.join('@' + c for c in close)}?" if close else ""
        return self.error(token, f"undefined symbol @{name}{hint}")

    def arg_list(self, tree) -> list[tuple[Optional[str], Node]]:
        elements = []
        for child in tree.children:
            if child.data == "named_arg":
                name_token, operand_tree = child.children
                elements.append((str(name_token), self.operand(operand_tree)))
            else:
                elements.append((None, self.operand(child)))
        return elements

    def call_argument(self, args) -> Optional[Node]:
        elements = self.arg_list(args)
        if not elements:
            return None
        if len(elements) == 1 and elements[0][0] is None:
            return elements[0][1]
        return self.wrap(args, lambda: Struct(elements))

    # Attributes ------------------------------------------------------------
    def attrs(self, tree) -> dict:
        result = {}
        for attr in tree.children:
            name_token, value_tree = attr.children
            name = str(name_token)
            if name in result:
                raise self.error(name_token, f"attribute {name} appears twice")
            result[name] = self.attr_value(value_tree)
        return result

    def attr_value(self, tree):
        kind = tree.data
        if kind == "attr_number":
            return self.number(tree.children[0])
        if kind == "attr_bool":
            return str(tree.children[0]) == "true"
        if kind == "attr_none":
            return None
        if kind == "attr_string":
            return self.string(tree.children[0])
        if kind == "attr_list":
            values = []
            for token in tree.children:
                value = self.number(token)
                if not isinstance(value, int):
                    raise self.error(token, "a list attribute holds integers")
                values.append(value)
            return tuple(values)
        if kind == "attr_type":
            return self.type_of(tree.children[0])
        raise AssertionError(kind)  # pragma: no cover

    def number(self, token):
        text = str(token)
        if _DECIMAL_INT.match(text):
            return int(text)
        if _HEX_INT.match(text):
            return int(text, 16)
        return float(text)

    # Literals --------------------------------------------------------------
    def literal(self, tree, t: TensorType, op_tree) -> np.ndarray:
        dtype = t.dtype
        shape = t.shape
        if tree.data == "lit_dense":
            return self.dense(tree.children[0], t)
        leaves, found = self.literal_leaves(tree)
        if found != shape:
            if not (0 in found and math.prod(shape) == 0 and shape[: len(found)] == found):
                raise self.error(
                    tree, f"constant of shape {list(found)} does not match its type {t}", op_tree
                )
        kind = dtype.kind
        if kind == "b":
            values = [self.leaf(leaf, "lit_bool", t) == "true" for leaf in leaves]
            return np.array(values, dtype=dtype).reshape(shape)
        if kind in "iu":
            info = np.iinfo(dtype)
            values = []
            for leaf in leaves:
                text = self.leaf(leaf, "lit_number", t)
                if _DECIMAL_INT.match(text):
                    value = int(text)
                elif _HEX_INT.match(text) and text[0] not in "+-":
                    value = int(text, 16)
                    if value >= 1 << (dtype.itemsize * 8):
                        raise self.error(leaf, f"{text} has more bits than a {t.dtype}")
                    if kind == "i" and value > info.max:
                        value -= 1 << (dtype.itemsize * 8)
                else:
                    raise self.error(leaf, f"{text} is not an integer (the constant has type {t})")
                if not info.min <= value <= info.max:
                    raise self.error(leaf, f"{text} does not fit in {t.dtype} (range {info.min} to {info.max})")
                values.append(value)
            return np.array(values, dtype=dtype).reshape(shape)
        if kind == "f":
            bits = []
            for leaf in leaves:
                self.is_leaf(leaf, "lit_number", t)
                bits.append(self.float_bits(leaf.children[0], dtype))
            return np.array(bits, dtype=_uint_dtype(dtype)).view(dtype.newbyteorder("<")).astype(dtype).reshape(shape)
        if kind == "c":
            component = np.dtype(f"f{dtype.itemsize // 2}")
            bits = []
            for leaf in leaves:
                if leaf.data != "lit_complex":
                    raise self.error(leaf, f"a complex number is written (re, im) (the constant has type {t})")
                re_token, im_token = leaf.children
                bits.append(self.float_bits(re_token, component))
                bits.append(self.float_bits(im_token, component))
            parts = np.array(bits, dtype=_uint_dtype(component)).view(component.newbyteorder("<"))
            return parts.astype(component).view(dtype).reshape(shape)
        if kind == "U":
            values = []
            for leaf in leaves:
                self.is_leaf(leaf, "lit_string", t)
                values.append(self.string(leaf.children[0]))
            return np.array(values, dtype=np.str_).reshape(shape)
        raise self.error(tree, f"cannot write a constant of type {t}")  # pragma: no cover

    def literal_leaves(self, tree) -> tuple[list, tuple]:
        if tree.data != "lit_list":
            return [tree], ()
        leaves: list = []
        shape = None
        for child in tree.children:
            child_leaves, child_shape = self.literal_leaves(child)
            if shape is None:
                shape = child_shape
            elif child_shape != shape:
                raise self.error(
                    child,
                    f"ragged constant: this element has shape {list(child_shape)}, the first one {list(shape)}",
                )
            leaves.extend(child_leaves)
        return leaves, (len(tree.children),) + (shape or ())

    _LEAF_WORDS = {"lit_bool": "true or false", "lit_number": "a number", "lit_string": "a string"}

    def is_leaf(self, leaf, kind: str, t: TensorType) -> bool:
        if leaf.data != kind:
            raise self.error(leaf, f"expected {self._LEAF_WORDS[kind]} in a constant of type {t}")
        return True

    def leaf(self, leaf, kind: str, t: TensorType) -> str:
        self.is_leaf(leaf, kind, t)
        return str(leaf.children[0])

    def float_bits(self, token, dtype: np.dtype) -> int:
        try:
            return _float_bits_from_text(str(token), dtype)
        except ValueError as e:
            raise self.error(token, f"{token} is not a {dtype}: {e}") from None

    def dense(self, token, t: TensorType) -> np.ndarray:
        dtype = t.dtype
        if dtype.kind == "U":
            raise self.error(token, "a string constant cannot be written dense<...>; write a list of strings")
        text = self.string(token)
        if not text.startswith("0x"):
            raise self.error(token, 'dense<"0x...">: the bytes are written in hexadecimal after 0x')
        try:
            raw = bytes.fromhex(text[2:])
        except ValueError:
            raise self.error(token, 'dense<"0x...">: not hexadecimal bytes') from None
        count = math.prod(t.shape)
        if len(raw) != count * dtype.itemsize:
            raise self.error(
                token, f"dense constant of {len(raw)} bytes does not fit {t} ({count * dtype.itemsize} bytes)"
            )
        if dtype.kind == "b" and any(b > 1 for b in raw):
            raise self.error(token, "a dense bool constant holds bytes 00 and 01 only")
        return np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype).reshape(t.shape)

    # Small pieces ----------------------------------------------------------
    def type_of(self, ty) -> Type:
        return ty.children[0]

    def expect_type(self, ty, actual: Type, what: str) -> None:
        declared = self.type_of(ty)
        if declared != actual:
            printed, computed = str(declared), str(actual)
            if printed == computed:
                printed, computed = repr(declared), repr(actual)
            raise self.error(
                ty, f"type mismatch: {what} has type {computed}, but its printed type is {printed}"
            )

    def string(self, token) -> str:
        try:
            return _unquote(str(token))
        except _BadEscape as e:
            line, column = token.line, token.column + 1 + e.offset
            raise ParseError(e.message, SourceLocation(self.filename, line, column), self.text) from None

    def location(self, tree, allow_call: bool = False):
        """The SourceLocation of a ``loc(...)`` (None if absent).

        With ``allow_call`` returns ``(location, call_only)``: whether it was
        written ``loc(call ...)``.
        """
        if tree is None:
            return (None, False) if allow_call else None
        marker, file_token, line_token, column_token = tree.children
        if marker is not None and not allow_call:
            raise self.error(
                marker, "loc(call ...) is only for a fused intrinsic call with arguments, like fed.mean(%x)"
            )
        numbers = []
        for token in (line_token, column_token):
            if not _DECIMAL_INT.match(str(token)):
                raise self.error(token, f"a location's line and column are integers, not {token}")
            numbers.append(int(str(token)))
        location = SourceLocation(self.string(file_token), numbers[0], numbers[1])
        if allow_call:
            return location, marker is not None
        return location


_FEDC_OPS = (
    "fedc.call", "fedc.lambda", "fedc.block", "fedc.ref", "fedc.select", "fedc.struct",
    "fedc.placement", "fedc.data", "fedc.constant", "fedc.compiled",
)


def _free_names(node: Node) -> set[str]:
    """Names of the references in ``node`` not bound inside it."""
    result: set[str] = set()
    stack: list[tuple[Node, frozenset]] = [(node, frozenset())]
    while stack:
        current, bound = stack.pop()
        if isinstance(current, Reference):
            if current.name not in bound:
                result.add(current.name)
        elif isinstance(current, Lambda):
            inner = bound | {current.parameter_name} if current.parameter_name else bound
            stack.append((current.result, inner))
        elif isinstance(current, Block):
            inner = bound
            for name, value in current.locals:
                stack.append((value, inner))
                inner = inner | {name}
            stack.append((current.result, inner))
        else:
            stack.extend((child, bound) for child in current.children())
    return result
