"""The printer of the textual IR: :func:`print_module` and :func:`print_node`.

The format is described in :mod:`fedc.ir.text`.
"""

from __future__ import annotations

import base64
from typing import Mapping, Optional

from fedc.limits import deep_recursion
from fedc.errors import FedcError, SourceLocation
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
from fedc.ir.text_format import format_attrs as _format_attrs, format_literal as _format_literal, op_name, quote as _quote
from fedc.types import Type

__all__ = [
    "print_module",
    "print_node",
]

_INDENT = "  "
# Regions nested deeper than this are not indented further: the text of IR nested N deep
# stays O(N) (indenting every level would make it O(N^2) to print and to parse back).
MAX_INDENT_LEVELS = 40


def _pad(indent: int) -> str:
    return _INDENT * min(indent, MAX_INDENT_LEVELS)


@deep_recursion
def print_module(module: "Module", elide_resources: bool = False, locations: bool = True) -> str:
    """The textual IR of ``module``.

    ``elide_resources=True`` leaves out the trailing ``{-# resources #-}``
    section holding the payloads of compiled computations (for IR dumps; such
    text does not parse back). ``locations=False`` leaves out every
    ``loc(...)``.
    """
    # A Module is known by its shape: fedc.ir.module prints itself with this function.
    if not (callable(getattr(module, "items", None)) and isinstance(getattr(module, "name", None), str)):
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
        pad = _pad(indent)
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
        pad = _pad(indent)
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
        pad = _pad(indent)
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

