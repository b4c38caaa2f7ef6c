"""The ``.fed`` front end: federated computations written as text.

    >>> from fedc.frontend import fed
    >>> module = fed.parse('''
    ... computation get_average_temperature(t: {float32}@CLIENTS) -> float32@SERVER {
    ...   return federated_mean(t)
    ... }''', filename="temperature.fed")
    >>> str(module["get_average_temperature"].type_signature)
    '({float32}@CLIENTS -> float32@SERVER)'

The language is described in ``docs/language.md``; its grammar is
``grammar/fedc.lark``. A file becomes a :class:`fedc.ir.Module` of the same
shape as traced Python: each ``computation`` and ``local`` function is a
``Lambda`` over a ``Block`` of SSA locals (intrinsic and op calls bound to
names), callees are ``SymbolRef`` s into the same module, and each used
``extern`` is the ``Compiled`` node of its ``@fedc.tf_computation``.

Errors are collected, not thrown at the first one: every syntax error (the
parser resynchronises at the next top-level declaration), every bad statement
and every bad definition is reported, each located at ``file:line:col`` with
the source line and a caret, in one :class:`DiagnosticsError`.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import importlib
import json
import os
import re
import sys
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from fedc.errors import FedcError, FedcTypeError, ParseError, SourceLocation, VerificationError
from fedc.ir import building_blocks as bb
from fedc.ir import intrinsics as registry
from fedc.ir.module import Module
from fedc.types import (
    SERVER,
    FederatedType,
    FunctionType,
    Placement,
    PlacementType,
    StructType,
    SequenceType,
    TensorType,
    Type,
    _DTYPE_NAMES,
    describe_terminals,
    dtype_name,
    mismatch_message,
)

__all__ = ["DiagnosticsError", "load", "parse"]


# --------------------------------------------------------------------------
# Public API


class DiagnosticsError(FedcError):
    """One or more located errors in ``.fed`` source; ``diagnostics`` lists them in order."""

    def __init__(self, diagnostics: Sequence[FedcError]):
        self.diagnostics = list(diagnostics)
        count = len(self.diagnostics)
        body = "\n\n".join(str(d) for d in self.diagnostics)
        super().__init__(f"{body}\n\n{count} error{'' if count == 1 else 's'}")


def load(path: Union[str, os.PathLike], search_paths: Sequence[Union[str, os.PathLike]] = ()) -> Module:
    """Compiles the ``.fed`` file at ``path`` into a verified :class:`~fedc.ir.Module`.

    The module is named after the file's stem. Imports resolve relative to the
    importing file's folder, then ``search_paths`` (which, with the file's
    folder, are also where ``extern`` Python modules are imported from).
    Raises :class:`DiagnosticsError` listing every error found.
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DiagnosticsError([FedcError(f"cannot read {path}: {_os_reason(e)}")]) from None
    return parse(text, filename=path, search_paths=search_paths)


def parse(text: str, filename: str = "<string>", search_paths: Sequence[Union[str, os.PathLike]] = ()) -> Module:
    """Compiles ``.fed`` source text (see :func:`load`); ``filename`` names it in messages."""
    if not isinstance(text, str):
        raise FedcTypeError(f"fedc.frontend.fed.parse expects a string, got {type(text).__name__}")
    filename = os.fspath(filename)
    compiler = _Compiler([os.fspath(p) for p in search_paths])
    return compiler.compile(text, filename)


# --------------------------------------------------------------------------
# Syntax tree


Pos = tuple  # (line, column), both 1-based


@dataclasses.dataclass
class _Name:
    pos: Pos
    name: str


@dataclasses.dataclass
class _Number:
    pos: Pos
    text: str


@dataclasses.dataclass
class _String:
    pos: Pos
    raw: str


@dataclasses.dataclass
class _Bool:
    pos: Pos
    value: bool


@dataclasses.dataclass
class _Binary:
    pos: Pos
    op: str
    op_pos: Pos
    left: Any
    right: Any


@dataclasses.dataclass
class _Unary:
    pos: Pos
    op: str
    operand: Any


@dataclasses.dataclass
class _Field:
    pos: Pos
    obj: Any
    name: str
    name_pos: Pos


@dataclasses.dataclass
class _Index:
    pos: Pos
    obj: Any
    text: str
    index_pos: Pos


@dataclasses.dataclass
class _Arg:
    pos: Pos
    name: Optional[str]
    value: Any


@dataclasses.dataclass
class _Call:
    pos: Pos
    fn: Any
    args: list


@dataclasses.dataclass
class _Struct:
    pos: Pos
    elements: list  # of _Arg


@dataclasses.dataclass
class _List:
    pos: Pos
    items: list


@dataclasses.dataclass
class _TypeExpr:
    pos: Pos
    ty: Any


@dataclasses.dataclass
class _Param:
    pos: Pos
    name: str
    ty: Any  # a lark tree, or None for an untyped lambda parameter


@dataclasses.dataclass
class _Body:
    stmts: list
    end_pos: Pos  # the closing brace


@dataclasses.dataclass
class _Lambda:
    pos: Pos
    params: list
    body: Any  # an expression or a _Body


@dataclasses.dataclass
class _Let:
    pos: Pos  # the name
    name: str
    expr: Any
    start: Pos  # the 'let' keyword


@dataclasses.dataclass
class _Return:
    pos: Pos
    expr: Any


@dataclasses.dataclass
class _Import:
    pos: Pos
    raw: str


@dataclasses.dataclass
class _TypeDecl:
    pos: Pos
    name: str
    name_pos: Pos
    ty: Any


@dataclasses.dataclass
class _ExternDecl:
    pos: Pos
    name: str
    name_pos: Pos
    ty: Any
    raw_target: str
    target_pos: Pos


@dataclasses.dataclass
class _FuncDecl:
    pos: Pos
    kind: str  # "computation" or "local"
    name: str
    name_pos: Pos
    params: list
    result: Any  # a lark tree or None
    body: _Body


def _tpos(token) -> Pos:
    return (token.line, token.column)


def _mpos(tree) -> Pos:
    import lark

    if isinstance(tree, lark.Token):
        return _tpos(tree)
    return (tree.meta.line, tree.meta.column)


_KEYWORDS = frozenset(
    "computation local type extern import let return fn and or not true false".split()
)


class _Converter:
    """Turns lark parse trees of ``grammar/fedc.lark`` into the syntax tree above.

    The contextual lexer lets a keyword through as a name where only a name can
    follow (``let return = ...``); such names are reported here.
    """

    def __init__(self, filename: str, text: str):
        self.filename = filename
        self.text = text
        self.errors: list = []

    def name(self, token) -> str:
        value = str(token)
        if value in _KEYWORDS:
            self.errors.append(ParseError(
                f"syntax error: {value!r} is a keyword, not a name",
                SourceLocation(self.filename, token.line, token.column),
                self.text,
            ))
        return value

    def items(self, tree) -> list:
        return [self.item(child) for child in tree.children]

    def item(self, tree):
        kind = tree.data
        c = tree.children
        if kind == "import_decl":
            return _Import(_tpos(c[0]), str(c[0]))
        if kind == "type_decl":
            return _TypeDecl(_mpos(tree), self.name(c[0]), _tpos(c[0]), c[1])
        if kind == "extern_decl":
            return _ExternDecl(_mpos(tree), self.name(c[0]), _tpos(c[0]), c[1], str(c[2]), _tpos(c[2]))
        name, params, result, body = c
        return _FuncDecl(
            _mpos(tree),
            "computation" if kind == "computation_decl" else "local",
            self.name(name),
            _tpos(name),
            [_Param(_tpos(p.children[0]), self.name(p.children[0]), p.children[1]) for p in (params.children if params else [])],
            result,
            self.body(body),
        )

    def body(self, tree) -> _Body:
        stmts = []
        for s in tree.children:
            if s.data == "let_stmt":
                stmts.append(_Let(_tpos(s.children[0]), self.name(s.children[0]), self.expr(s.children[1]), _mpos(s)))
            else:
                stmts.append(_Return(_mpos(s), self.expr(s.children[0])))
        return _Body(stmts, (tree.meta.end_line, tree.meta.end_column - 1))

    def expr(self, tree):
        import lark

        if isinstance(tree, lark.Token):  # not produced by the grammar, but be safe
            return _Name(_tpos(tree), str(tree))
        kind = tree.data
        c = tree.children
        pos = _mpos(tree)
        if kind == "name":
            return _Name(pos, self.name(c[0]))
        if kind == "number":
            return _Number(pos, str(c[0]))
        if kind == "string":
            return _String(pos, str(c[0]))
        if kind == "boolean":
            return _Bool(pos, str(c[0]) == "true")
        if kind == "binary":
            left, op, right = c
            return _Binary(pos, str(op), _tpos(op), self.expr(left), self.expr(right))
        if kind == "unary":
            op, operand = c
            return _Unary(pos, str(op), self.expr(operand))
        if kind == "field":
            return _Field(pos, self.expr(c[0]), str(c[1]), _tpos(c[1]))
        if kind == "index":
            return _Index(pos, self.expr(c[0]), str(c[1]), _tpos(c[1]))
        if kind == "call":
            fn, args = c
            return _Call(pos, self.expr(fn), self.args(args))
        if kind == "struct":
            elements = c[1]
            return _Struct(pos, self.args(elements))
        if kind == "list":
            items = c[0]
            return _List(pos, [self.expr(i) for i in (items.children if items else [])])
        if kind == "type_expr":
            return _TypeExpr(pos, c[0])
        if kind in ("lambda_expr", "lambda_body"):
            params, body = c
            lparams = [
                _Param(_tpos(p.children[0]), self.name(p.children[0]), p.children[1])
                for p in (params.children if params else [])
            ]
            return _Lambda(pos, lparams, self.body(body) if kind == "lambda_body" else self.expr(body))
        raise AssertionError(f"unexpected tree {kind}")

    def args(self, tree) -> list:
        result = []
        for a in tree.children if tree is not None else []:
            if getattr(a, "data", None) in ("kwarg", "named_element"):
                name, value = a.children
                result.append(_Arg(_tpos(name), str(name), self.expr(value)))
            else:
                e = self.expr(a)
                result.append(_Arg(e.pos, None, e))
        return result


def _walk_names(node, out: set) -> None:
    """Collects every name a definition binds (parameters, lets, lambda parameters)."""
    if isinstance(node, list):
        for n in node:
            _walk_names(n, out)
        return
    if isinstance(node, _Param):
        out.add(node.name)
    elif isinstance(node, _Let):
        out.add(node.name)
        _walk_names(node.expr, out)
    elif isinstance(node, _Return):
        _walk_names(node.expr, out)
    elif isinstance(node, _Body):
        _walk_names(node.stmts, out)
    elif isinstance(node, _Lambda):
        _walk_names(node.params, out)
        _walk_names(node.body, out)
    elif isinstance(node, _Binary):
        _walk_names(node.left, out)
        _walk_names(node.right, out)
    elif isinstance(node, _Unary):
        _walk_names(node.operand, out)
    elif isinstance(node, (_Field, _Index)):
        _walk_names(node.obj, out)
    elif isinstance(node, _Call):
        _walk_names(node.fn, out)
        _walk_names([a.value for a in node.args], out)
    elif isinstance(node, _Struct):
        _walk_names([a.value for a in node.elements], out)
    elif isinstance(node, _List):
        _walk_names(node.items, out)


# --------------------------------------------------------------------------
# Parsing, with resynchronisation after a syntax error

# A line that starts a top-level declaration: where the parser resumes after an error.
_ITEM_START = re.compile(
    r"^[ \t]*(?:import\b|extern\b|computation\b|local\b|type[ \t]+[A-Za-z_][A-Za-z0-9_]*[ \t]*=)",
    re.M,
)
_DECLARED_NAME = re.compile(r"\s*(?:type|extern|computation|local)\s+([A-Za-z_][A-Za-z0-9_]*)")

_EXPRESSION_STARTS = {"NAME", "NUMBER", "STRING", "TRUE", "FALSE", "LPAR", "LSQB", "LESS", "FN", "NOT", "ADD_OP", "TYPE_KW"}
_OPERATORS = {"ADD_OP", "MUL_OP", "STAR", "AT", "POW", "COMPARE", "LESS", "GREATER", "AND", "OR", "DOT", "LPAR", "LSQB"}
_TYPE_STARTS = {"NAME", "LPAR", "LESS", "LBRACE", "types__QUOTED_DTYPE"}


_TERMINAL_WORDS = {
    "NAME": "a name", "NUMBER": "a number", "STRING": "a string", "ADD_OP": "'+' or '-'",
    "MUL_OP": "'/', '//' or '%'", "STAR": "'*'", "AT": "'@'", "POW": "'**'", "COMPARE": "a comparison",
    "LESS": "'<'", "GREATER": "'>'", "OR": "'or'", "AND": "'and'", "NOT": "'not'", "TRUE": "'true'",
    "FALSE": "'false'", "TYPE_KW": "'type'", "$END": "end of file", "INT": "an integer",
}


def _fed_parser():
    from fedc.grammar import load

    return load("fedc", "start")


def _describe_expected(expected: set, parser) -> str:
    names = set(expected)
    words = []
    if "types__QUOTED_DTYPE" in names or ("LBRACE" in names and "NAME" in names and "NUMBER" not in names):
        if _TYPE_STARTS & names:
            names -= _TYPE_STARTS
            words.append("a type")
    if {"NAME", "NUMBER", "LPAR"} <= names:
        names -= _EXPRESSION_STARTS
        words.append("an expression")
    if {"ADD_OP", "MUL_OP", "STAR"} <= names:
        names -= _OPERATORS
        words.append("an operator")
    rest = set()
    for name in names:
        word = _TERMINAL_WORDS.get(name)
        rest.add(word if word is not None else describe_terminals([name], parser))
    words.extend(sorted(rest - set(words)))
    words = [w for w in words if w]
    if not words:
        return "something else"
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " or " + words[-1]


def _syntax_error(error, filename: str, text: str, parser) -> ParseError:
    import lark

    line = getattr(error, "line", None) or 1
    column = getattr(error, "column", None) or 1
    if isinstance(error, lark.exceptions.UnexpectedToken):
        expected = error.expected
        try:  # the tokens that the parser would really accept here (LALR merges lookaheads)
            expected = error.interactive_parser.accepts() or expected
        except Exception:  # noqa: BLE001 - fall back to lark's own set
            pass
    if isinstance(error, lark.exceptions.UnexpectedToken) and error.token.type == "$END":
        lines = text.splitlines() or [""]
        line, column = len(lines), len(lines[-1]) + 1
        message = f"syntax error: unexpected end of file; expected {_describe_expected(expected, parser)}"
    elif isinstance(error, lark.exceptions.UnexpectedToken):
        message = (
            f"syntax error: unexpected {str(error.token)!r}; "
            f"expected {_describe_expected(expected, parser)}"
        )
    elif isinstance(error, lark.exceptions.UnexpectedCharacters):
        message = f"syntax error: unexpected character {error.char!r}"
    else:  # pragma: no cover - lark's other errors do not occur with LALR
        message = "syntax error"
    return ParseError(message, SourceLocation(filename, line, column), text)


def _parse_source(text: str, filename: str):
    """(items, syntax diagnostics, names declared by declarations that did not parse)."""
    import lark

    parser = _fed_parser()
    converter = _Converter(filename, text)
    try:
        tree = parser.parse(text)
    except lark.exceptions.UnexpectedInput:
        pass
    else:
        return converter.items(tree), converter.errors, set()
    starts = sorted({m.start() for m in _ITEM_START.finditer(text)} | {0})
    items, diagnostics, failed = [], [], set()
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(text)
        chunk = text[start:end]
        padded = "\n" * text.count("\n", 0, start) + chunk
        try:
            tree = parser.parse(padded)
        except lark.exceptions.UnexpectedInput as e:
            error = e
        else:
            items.extend(converter.items(tree))
            continue
        if (
            isinstance(error, lark.exceptions.UnexpectedToken)
            and error.token.type == "$END"
            and i + 1 < len(starts)
        ):
            # Point at the declaration that cut this one short, as a whole-file parse does.
            head = re.match(r"[ \t]*[A-Za-z_]+", text[end:])
            try:
                parser.parse(padded + head.group(0))
            except lark.exceptions.UnexpectedInput as e:
                if not (isinstance(e, lark.exceptions.UnexpectedToken) and e.token.type == "$END"):
                    error = e
        diagnostics.append(_syntax_error(error, filename, text, parser))
        m = _DECLARED_NAME.match(chunk)
        if m:
            failed.add(m.group(1))
    return items, diagnostics + converter.errors, failed


# --------------------------------------------------------------------------
# Compilation units and definitions


class _Poisoned(Exception):
    """Raised where a value depends on something already reported as an error."""


_POISON = object()
_UNKNOWN = object()  # "no expected type" for function-valued arguments


@dataclasses.dataclass(eq=False)
class _Unit:
    key: str
    display: str
    folder: str
    text: str
    index: int
    items: list = dataclasses.field(default_factory=list)
    defs: dict = dataclasses.field(default_factory=dict)  # own definitions
    all_defs: list = dataclasses.field(default_factory=list)  # including duplicates (checked too)
    failed: set = dataclasses.field(default_factory=set)
    namespace: dict = dataclasses.field(default_factory=dict)  # own and imported
    imports: list = dataclasses.field(default_factory=list)

    def location(self, pos: Pos) -> SourceLocation:
        return SourceLocation(self.display, pos[0], pos[1])


@dataclasses.dataclass(eq=False)
class _Ambiguous:
    """A name that several imported files define."""

    defs: list

    def error(self, compiler: "_Compiler", unit: "_Unit", pos: Pos, name: str) -> FedcError:
        where = " and ".join(f"{d.unit.display} (at {d.unit.location(d.pos)})" for d in self.defs)
        return compiler.error(unit, pos, f"{name!r} is ambiguous: it is defined by the imported files {where}")


@dataclasses.dataclass(eq=False)
class _Def:
    kind: str  # "type", "extern", "computation", "local"
    name: str
    unit: _Unit
    ast: Any
    symbol: Optional[str] = None
    state: str = "new"  # new, busy, done, failed
    value: Any = None  # a Type, or the Compiled / Lambda node

    @property
    def pos(self) -> Pos:
        return self.ast.name_pos


def _os_reason(e: Exception) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror.lower() if e.strerror else str(e)
    return str(e)


def _decode_string(raw: str) -> str:
    return json.loads(raw)


def _is_placed(t: Optional[Type]) -> bool:
    return t is not None and any(isinstance(s, (FederatedType, PlacementType)) for s in t.walk())


def _identifier(text: str) -> str:
    text = re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_") or "module"
    if text[0].isdigit():
        text = "m_" + text
    return text


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


# Python-API intrinsics: name -> parameters (None default = optional).
_API_PARAMS = {
    "federated_value": ["value", "placement"],
    "federated_eval": ["fn", "placement"],
    "federated_broadcast": ["value"],
    "federated_map": ["fn", "arg"],
    "federated_apply": ["fn", "arg"],
    "federated_map_all_equal": ["fn", "arg"],
    "federated_zip": ["value"],
    "federated_zip_at_clients": ["value"],
    "federated_zip_at_server": ["value"],
    "federated_value_at_clients": ["value"],
    "federated_value_at_server": ["value"],
    "federated_eval_at_clients": ["fn"],
    "federated_eval_at_server": ["fn"],
    "federated_mean": ["value", "weight?"],
    "federated_weighted_mean": ["value", "weight"],
    "federated_sum": ["value"],
    "federated_min": ["value"],
    "federated_max": ["value"],
    "federated_secure_sum": ["value", "max_input"],
    "federated_secure_sum_bitwidth": ["value", "bitwidth"],
    "federated_secure_modular_sum": ["value", "modulus"],
    "federated_aggregate": ["value", "zero", "accumulate", "merge", "report"],
    "federated_select": ["client_keys", "max_key", "server_val", "select_fn"],
    "federated_secure_select": ["client_keys", "max_key", "server_val", "select_fn"],
    "sequence_map": ["fn", "arg"],
    "sequence_reduce": ["value", "zero", "op"],
    "sequence_sum": ["value"],
}

_PREFERRED_DTYPES = ["float32", "int32", "bool", "str", "float64", "int64"]

_BINARY_OPS = {
    "+": "add", "-": "subtract", "*": "multiply", "/": "divide", "//": "floor_divide", "%": "mod",
    "**": "pow", "@": "matmul", "<": "less", "<=": "less_equal", ">": "greater", ">=": "greater_equal",
    "==": "equal", "!=": "not_equal", "and": "logical_and", "or": "logical_or",
}

_SUFFIXES = {
    "i8": "int8", "i16": "int16", "i32": "int32", "i64": "int64",
    "u8": "uint8", "u16": "uint16", "u32": "uint32", "u64": "uint64",
    "f16": "float16", "f32": "float32", "f64": "float64",
}
_NUMBER = re.compile(r"(.*?)_?(i8|i16|i32|i64|u8|u16|u32|u64|f16|f32|f64)?\Z")


@functools.lru_cache(maxsize=None)
def _local_ops() -> dict:
    """Local op name -> (definition, number of operands)."""
    result = {}
    for d in registry.all_definitions():
        if d.is_federated:
            continue
        if d.uri.startswith("sequence_"):
            continue
        if not d.has_parameter:
            arity = 0
        elif d.signature.startswith("(<"):
            depth, count = 0, 1
            for ch in d.signature[1:]:
                if ch == "<":
                    depth += 1
                elif ch == ">":
                    depth -= 1
                    if depth == 0:
                        break
                elif ch == "," and depth == 1:
                    count += 1
            arity = count
        else:
            arity = 1
        result[d.uri] = (d, arity)
    return result


def _builtin_names() -> list:
    return list(_API_PARAMS) + list(_local_ops()) + ["SERVER", "CLIENTS"]


@functools.lru_cache(maxsize=None)
def _fed_type_builder_class():
    from fedc.types import _type_builder_class

    base = _type_builder_class()

    class _FedTypeBuilder(base):
        """The type builder of ``fedc.types``, resolving names through a .fed file's aliases."""

        def __init__(self, filename, text, resolve):
            super().__init__(filename, text)
            self._resolve = resolve

        def named(self, children):
            (token,) = children
            return self._resolve(str(token), token)

    return _FedTypeBuilder


# --------------------------------------------------------------------------
# The compiler


class _Compiler:
    def __init__(self, search_paths: list):
        self.search_paths = search_paths
        self.diagnostics: list = []
        self.units: dict = {}
        self.unit_list: list = []
        self.loading: list = []
        self.symbols: set = set()
        self.def_stack: list = []

    # Diagnostics -------------------------------------------------------------
    def error(self, unit: _Unit, pos: Pos, message: str, cls=FedcError) -> FedcError:
        return cls(message, unit.location(pos), unit.text)

    def report(self, error: FedcError) -> None:
        self.diagnostics.append(error)

    # Entry -------------------------------------------------------------------
    def compile(self, text: str, filename: str) -> Module:
        try:
            return self._compile(text, filename)
        except RecursionError:
            raise DiagnosticsError(
                self._sorted() + [FedcError(f"{filename}: the source is nested too deeply to compile")]
            ) from None

    @bb.deep_recursion
    def _compile(self, text: str, filename: str) -> Module:
        key = os.path.realpath(filename) if os.path.isfile(filename) else filename
        main = self.load_unit(key, filename, text)
        for unit in self.unit_list:  # the main file's definitions keep their names
            for d in unit.defs.values():
                if d.kind != "type":
                    self.allocate_symbol(d)
        for unit in self.unit_list:
            for d in unit.all_defs:
                self.check_definition(d)
        if self.diagnostics:
            raise DiagnosticsError(self._sorted())
        module = self.assemble(main, _identifier(os.path.splitext(os.path.basename(filename))[0]))
        from fedc.ir import verify

        try:
            verify(module)
        except VerificationError as e:
            raise DiagnosticsError([e]) from None
        return module

    def _sorted(self) -> list:
        order = {u.display: u.index for u in self.unit_list}

        def key(d):
            loc = d.location
            if loc is None:
                return (1 << 30, 0, 0)
            return (order.get(loc.file, 1 << 29), loc.line, loc.column)

        unique, seen = [], set()
        for d in sorted(self.diagnostics, key=key):
            k = str(d)
            if k not in seen:
                seen.add(k)
                unique.append(d)
        return unique

    # Units and imports -------------------------------------------------------
    def load_unit(self, key: str, display: str, text: str) -> _Unit:
        unit = _Unit(key, display, os.path.dirname(display), text, len(self.unit_list))
        self.units[key] = unit
        self.unit_list.append(unit)
        items, diagnostics, failed = _parse_source(text, display)
        unit.items = items
        unit.failed = failed
        self.diagnostics.extend(diagnostics)
        for item in items:
            if isinstance(item, _Import):
                continue
            kind = {_TypeDecl: "type", _ExternDecl: "extern"}.get(type(item)) or item.kind
            self.declare(unit, _Def(kind, item.name, unit, item))
        unit.namespace = dict(unit.defs)
        for name in failed:
            unit.namespace.setdefault(name, _POISON)
        self.loading.append(unit)
        try:
            for item in items:
                if isinstance(item, _Import):
                    self.import_unit(unit, item)
        finally:
            self.loading.pop()
        return unit

    def declare(self, unit: _Unit, d: _Def) -> None:
        unit.all_defs.append(d)
        previous = unit.defs.get(d.name)
        if previous is not None:
            self.report(self.error(
                unit, d.pos,
                f"duplicate definition of {d.name!r}: it is already defined at {unit.location(previous.pos)}",
            ))
            return
        if d.kind == "type" and (d.name in _DTYPE_NAMES or d.name == "placement"):
            self.report(self.error(unit, d.pos, f"{d.name!r} is a built-in type; a type alias needs another name"))
            return
        unit.defs[d.name] = d

    def import_unit(self, unit: _Unit, item: _Import) -> None:
        try:
            path = _decode_string(item.raw)
        except ValueError as e:
            self.report(self.error(unit, item.pos, f"invalid string: {e}"))
            return
        if not path or "\0" in path:
            self.report(self.error(unit, item.pos, f"cannot import {path!r}: not a file name"))
            return
        folders = [unit.folder] + self.search_paths
        found = None
        for folder in folders:
            candidate = os.path.normpath(os.path.join(folder, path)) if folder else os.path.normpath(path)
            try:
                if os.path.isfile(candidate):
                    found = candidate
                    break
            except (OSError, ValueError):
                continue
        if found is None:
            looked = ", ".join(repr(f or ".") for f in folders)
            self.report(self.error(unit, item.pos, f"cannot find imported file {path!r} (looked in {looked})"))
            return
        key = os.path.realpath(found)
        chain = [u.key for u in self.loading]
        if key in chain:
            cycle = self.loading[chain.index(key):]
            names = " -> ".join(u.display for u in cycle) + f" -> {found}"
            self.report(self.error(unit, item.pos, f"import cycle: {names}"))
            target = self.units[key]
        elif key in self.units:
            target = self.units[key]
        else:
            try:
                with open(found, encoding="utf-8") as f:
                    text = f.read()
            except (OSError, UnicodeDecodeError, ValueError) as e:
                self.report(self.error(unit, item.pos, f"cannot read imported file {path!r}: {_os_reason(e)}"))
                return
            target = self.load_unit(key, found, text)
        if target is unit:
            return
        unit.imports.append(target)
        # A file's own definitions hide imported ones; a name two imports define is
        # an error where it is used.
        for name, d in target.defs.items():
            existing = unit.namespace.get(name)
            if existing is None:
                unit.namespace[name] = d
            elif existing is _POISON or existing is d or (isinstance(existing, _Def) and existing.unit is unit):
                continue
            elif isinstance(existing, _Ambiguous):
                existing.defs.append(d)
            else:
                unit.namespace[name] = _Ambiguous([existing, d])
        for name in target.failed:
            unit.namespace.setdefault(name, _POISON)

    # Definitions -------------------------------------------------------------
    def check_definition(self, d: _Def) -> None:
        try:
            if d.kind == "type":
                self.resolve_alias(d, d.ast.name_pos)
            elif d.kind == "extern":
                self.resolve_extern(d)
            else:
                self.resolve_function(d, d.ast.name_pos, d.unit)
        except _Poisoned:
            pass
        except FedcError as e:
            self.report(e)

    def allocate_symbol(self, d: _Def) -> str:
        if d.symbol is None:
            base = d.name
            name, n = base, 1
            while name in self.symbols:
                name = f"{base}_{n}"
                n += 1
            self.symbols.add(name)
            d.symbol = name
        return d.symbol

    def _enter(self, d: _Def, use_unit: _Unit, use_pos: Pos, what: str):
        """Marks ``d`` as being resolved; reports a cycle if it already is."""
        if d.state == "failed":
            raise _Poisoned()
        if d.state == "busy":
            cycle = self.def_stack[self.def_stack.index(d):] + [d]
            path = " -> ".join(x.name for x in cycle)
            d.state = "failed"
            raise self.error(use_unit, use_pos, f"{what} {d.name!r} refers to itself: {path}"
                             + ("" if d.kind == "type" else " (recursion is not supported)"))
        d.state = "busy"
        self.def_stack.append(d)

    def _leave(self, d: _Def, ok: bool):
        self.def_stack.remove(d)
        if d.state == "busy":
            d.state = "done" if ok else "failed"

    def resolve_alias(self, d: _Def, use_pos: Pos, use_unit: Optional[_Unit] = None) -> Type:
        if d.state == "done":
            return d.value
        self._enter(d, use_unit or d.unit, use_pos, "type")
        ok = False
        try:
            d.value = self.resolve_type(d.unit, d.ast.ty)
            ok = True
            return d.value
        except FedcError as e:
            if d.state == "failed":  # a cycle through this alias: report it once
                raise
            self.report(e)
            raise _Poisoned() from None
        finally:
            self._leave(d, ok)

    def resolve_type(self, unit: _Unit, tree) -> Type:
        import lark
        from lark.visitors import merge_transformers

        def resolve(name: str, token) -> Type:
            d = unit.namespace.get(name)
            if d is _POISON:
                raise _Poisoned()
            if isinstance(d, _Ambiguous):
                raise d.error(self, unit, _tpos(token), name)
            if d is not None:
                if d.kind != "type":
                    raise self.error(unit, _tpos(token), f"{name!r} is {'an' if d.kind == 'extern' else 'a'} {d.kind}, not a type")
                return self.resolve_alias(d, _tpos(token), unit)
            if name == "placement":
                return PlacementType()
            if name in _DTYPE_NAMES:
                return TensorType(_DTYPE_NAMES[name])
            candidates = _PREFERRED_DTYPES + list(_DTYPE_NAMES) + [
                n for n, v in unit.namespace.items() if isinstance(v, _Def) and v.kind == "type"
            ]
            raise self.error(unit, _tpos(token), f"unknown type {name!r}" + _did_you_mean(name, candidates))

        builder = _fed_type_builder_class()(unit.display, unit.text, resolve)
        transformer = merge_transformers(lark.Transformer(), types=builder)
        try:
            result = transformer.transform(tree)
        except lark.exceptions.VisitError as e:
            raise e.orig_exc from None
        return result.children[0]

    def resolve_extern(self, d: _Def) -> bb.Compiled:
        if d.state == "done":
            return d.value
        if d.state == "failed":
            raise _Poisoned()
        unit, ast = d.unit, d.ast
        d.state = "failed"
        declared = self.resolve_type(unit, ast.ty)
        if not isinstance(declared, FunctionType):
            raise self.error(unit, _mpos(ast.ty), f"an extern has a function type, such as (float32 -> float32), not {declared}", FedcTypeError)
        if _is_placed(declared):
            raise self.error(unit, _mpos(ast.ty), f"an extern is a local TensorFlow function, so its type has no placements, but {declared} has", FedcTypeError)
        try:
            target = _decode_string(ast.raw_target)
        except ValueError as e:
            raise self.error(unit, ast.target_pos, f"invalid string: {e}") from None
        m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*):([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)", target)
        if m is None:
            raise self.error(unit, ast.target_pos, f"an extern names a Python function as \"module:function\", not {target!r}")
        module_name, attr_path = m.groups()
        module = self.import_python(unit, ast.target_pos, module_name)
        obj = module
        for part in attr_path.split("."):
            if not hasattr(obj, part):
                candidates = [n for n in dir(obj) if not n.startswith("_")]
                raise self.error(
                    unit, ast.target_pos,
                    f"Python module {module_name!r} has no function {attr_path!r}" + _did_you_mean(part, candidates),
                )
            obj = getattr(obj, part)
        from fedc.computation import Computation, PolymorphicComputation

        if isinstance(obj, PolymorphicComputation):
            try:
                obj = obj.specialize(declared.parameter)
            except FedcError as e:
                raise self.error(unit, ast.target_pos, f"{target} cannot be specialised to {declared.parameter}: {e.message}", FedcTypeError) from None
        if isinstance(obj, Computation):
            node = obj.ir
            if not isinstance(node, bb.Compiled):
                raise self.error(
                    unit, ast.target_pos,
                    f"{target} is a federated computation of type {obj.type_signature}, not a @fedc.tf_computation",
                )
        else:
            what = "a Python function" if callable(obj) else f"a {type(obj).__name__}"
            raise self.error(
                unit, ast.target_pos,
                f"{target} is {what}, not a @fedc.tf_computation",
            )
        if node.type_signature != declared:
            actual = node.type_signature
            if len(str(declared)) + len(str(actual)) > 100:
                message = (
                    f"extern {d.name!r} declares type\n{_indent(declared.formatted_representation())}\n"
                    f"but {target} has type\n{_indent(actual.formatted_representation())}"
                )
            else:
                message = f"extern {d.name!r} declares type {declared}, but {target} has type {actual}"
            raise self.error(unit, _mpos(ast.ty), message, FedcTypeError)
        d.value = node.with_location(unit.location(d.ast.pos))
        d.state = "done"
        return d.value

    def import_python(self, unit: _Unit, pos: Pos, module_name: str):
        if module_name in sys.modules:
            return sys.modules[module_name]
        folders = [os.path.abspath(unit.folder or ".")] + [os.path.abspath(p) for p in self.search_paths]
        added = [f for f in folders if f not in sys.path]
        sys.path[:0] = added
        try:
            importlib.invalidate_caches()
            return importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name and (e.name == module_name or module_name.startswith(e.name + ".")):
                raise self.error(
                    unit, pos,
                    f"cannot find Python module {module_name!r} (looked in {', '.join(repr(f) for f in folders)} and sys.path)",
                ) from None
            raise self.error(unit, pos, f"importing Python module {module_name!r} failed: ModuleNotFoundError: {e}") from None
        except FedcError as e:
            raise self.error(unit, pos, f"importing Python module {module_name!r} failed: {e.message}") from None
        except (Exception, SystemExit) as e:  # the user's module raised while being imported
            raise self.error(unit, pos, f"importing Python module {module_name!r} failed: {type(e).__name__}: {e}") from None
        finally:
            for f in added:
                try:
                    sys.path.remove(f)
                except ValueError:
                    pass

    def resolve_function(self, d: _Def, use_pos: Pos, use_unit: _Unit) -> bb.Lambda:
        if d.state == "done":
            return d.value
        self._enter(d, use_unit, use_pos, d.kind)
        ok = False
        try:
            builder = _FunctionBuilder(self, d)
            d.value = builder.build()
            ok = True
            return d.value
        except FedcError as e:
            if d.state == "failed":  # a cycle closed here: the error is at its call site
                raise
            self.report(e)
            raise _Poisoned() from None
        finally:
            self._leave(d, ok)

    # Module ------------------------------------------------------------------
    def assemble(self, main: _Unit, name: str) -> Module:
        by_symbol = {}
        for unit in self.unit_list:
            for d in unit.defs.values():
                if d.symbol is not None and d.state == "done":
                    by_symbol[d.symbol] = d.value
        entries: list = []
        seen: set = set()

        def visit(symbol: str):
            if symbol in seen:
                return
            seen.add(symbol)
            node = by_symbol[symbol]
            for n in node.walk():
                if isinstance(n, bb.SymbolRef) and n.name in by_symbol:
                    visit(n.name)
            entries.append((symbol, node))

        for d in main.defs.values():
            if d.kind in ("computation", "local"):
                visit(d.symbol)
        return Module(name, entries)


def _did_you_mean(name: str, candidates) -> str:
    """'; did you mean 'x'?' for the closest candidate (ties: the earliest), or ''."""
    best, best_score = None, 0.6
    matcher = difflib.SequenceMatcher()
    matcher.set_seq2(name.lower())
    for c in dict.fromkeys(candidates):
        if c == name:
            continue
        matcher.set_seq1(c.lower())
        if matcher.real_quick_ratio() > best_score and matcher.quick_ratio() > best_score:
            score = matcher.ratio()
            if score > best_score:
                best, best_score = c, score
    return f"; did you mean {best!r}?" if best else ""


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


# --------------------------------------------------------------------------
# Building one function


class _Namer:
    """SSA names for one computation: users' names where free, fresh ones for temporaries."""

    def __init__(self, reserved: set):
        self.reserved = set(reserved)
        self.used: set = set()
        self.user_names: dict = {}

    def _suffixed(self, base: str) -> str:
        n = 1
        while f"{base}_{n}" in self.used or f"{base}_{n}" in self.reserved:
            n += 1
        return f"{base}_{n}"

    def user(self, name: str) -> str:
        ir = name if name not in self.used else self._suffixed(name)
        self.used.add(ir)
        self.user_names[ir] = name
        return ir

    def temp(self, base: str) -> str:
        base = re.sub(r"[^A-Za-z0-9_]", "_", base) or "v"
        if base[0].isdigit():
            base = "v" + base
        ir = base if base not in self.used and base not in self.reserved else self._suffixed(base)
        self.used.add(ir)
        return ir


class _Scope:
    def __init__(self, parent: Optional["_Scope"]):
        self.parent = parent
        self.names: dict = {}  # user name -> (factory(pos) -> node, definition pos) or _POISON
        self.bindings: list = []


class _FunctionBuilder:
    """Type-checks one ``computation`` / ``local`` definition and builds its Lambda."""

    def __init__(self, compiler: _Compiler, d: _Def):
        self.compiler = compiler
        self.d = d
        self.unit = d.unit
        self.local = d.kind == "local"
        reserved: set = set()
        _walk_names([d.ast.params, d.ast.body], reserved)
        self.namer = _Namer(reserved)
        self.scope: Optional[_Scope] = None
        self.bases: dict = {}
        self.uses: dict = {}

    # Helpers -----------------------------------------------------------------
    def loc(self, pos: Pos) -> SourceLocation:
        return self.unit.location(pos)

    def error(self, pos: Pos, message: str, cls=FedcError) -> FedcError:
        return self.compiler.error(self.unit, pos, message, cls)

    def guard(self, pos: Pos, fn: Callable, *args, prefix: str = "", **kwargs):
        """Runs a constructor; a FedcTypeError without location becomes a diagnostic at ``pos``."""
        try:
            return fn(*args, **kwargs)
        except FedcError as e:
            if e.location is not None:
                raise
            cls = FedcTypeError if isinstance(e, FedcTypeError) else FedcError
            raise self.error(pos, prefix + e.message, cls) from None

    def bind(self, node: bb.Node, base: str) -> bb.Node:
        name = self.namer.temp(base)
        self.scope.bindings.append((name, node))
        return bb.Reference(name, node.type_signature)

    def push(self) -> _Scope:
        self.scope = _Scope(self.scope)
        return self.scope

    def pop(self, result: bb.Node) -> bb.Node:
        scope = self.scope
        self.scope = scope.parent
        if not scope.bindings:
            return result
        return bb.Block(scope.bindings, result)

    def reference_factory(self, ir_name: str, t: Type):
        # References carry no location (as in traced IR, they print inline as %name);
        # where each was used is remembered for diagnostics.
        def make(pos: Pos) -> bb.Reference:
            node = bb.Reference(ir_name, t)
            self.uses[id(node)] = (node, pos)
            return node

        return make

    def resolve_type(self, tree) -> Type:
        return self.compiler.resolve_type(self.unit, tree)

    # The definition ----------------------------------------------------------
    def build(self) -> bb.Lambda:
        ast = self.d.ast
        what = f"{ast.kind} {ast.name!r}"
        failed = False
        params = []  # (param, type) of the parameters whose types resolved
        poisoned = []
        seen: dict = {}
        for p in ast.params:
            if p.name in seen:
                self.compiler.report(self.error(
                    p.pos, f"duplicate parameter {p.name!r}: it is already a parameter at {self.loc(seen[p.name])}"
                ))
                failed = True
                continue
            seen[p.name] = p.pos
            try:
                t = self.resolve_type(p.ty)
                if self.local and _is_placed(t):
                    raise self.error(
                        _mpos(p.ty),
                        f"a local function takes placement-free values, but parameter {p.name!r} has type {t} "
                        "(write a computation to work with placed values)",
                        FedcTypeError,
                    )
                params.append((p, t))
            except _Poisoned:
                failed = True
                poisoned.append(p.name)
            except FedcError as e:
                self.compiler.report(e)
                failed = True
                poisoned.append(p.name)
        declared = None
        if ast.result is not None:
            try:
                declared = self.resolve_type(ast.result)
                if self.local and _is_placed(declared):
                    raise self.error(
                        _mpos(ast.result),
                        f"a local function returns a placement-free value, but its declared result type is {declared}",
                        FedcTypeError,
                    )
            except _Poisoned:
                failed = True
                declared = None
            except FedcError as e:
                self.compiler.report(e)
                failed = True
                declared = None
        # The body is checked even when the header has errors, with the bad parameters poisoned.
        self.push()
        for name in poisoned:
            self.scope.names[name] = _POISON
        if len(ast.params) == 1 and params:
            (p, t), = params
            parameter_name = self.namer.user(p.name)
            parameter_type = t
            self.scope.names[p.name] = (self.reference_factory(parameter_name, t), p.pos)
        elif params:
            parameter_name = self.namer.temp("arg")
            parameter_type = StructType([(p.name, t) for p, t in params])
            for p, t in params:
                self.scope.names[p.name] = (self.selection_factory(parameter_name, parameter_type, p.name), p.pos)
        else:
            parameter_name = parameter_type = None
        body = self.body(ast.body, declared, what)
        if failed:
            raise _Poisoned()
        lam = bb.Lambda(parameter_name, parameter_type, body, self.loc(ast.pos))
        self.check_local_function(lam, what)
        return lam

    def selection_factory(self, ir_name: str, struct: StructType, name: str):
        return lambda pos: bb.Selection(bb.Reference(ir_name, struct), name=name, location=self.loc(pos))

    def body(self, body: _Body, declared: Optional[Type], what: str) -> bb.Node:
        """Evaluates statements in the current scope and closes it; raises _Poisoned after errors."""
        result = None
        failed = False
        returned = False
        for stmt in body.stmts:
            if returned:
                start = stmt.start if isinstance(stmt, _Let) else stmt.pos
                self.compiler.report(self.error(start, f"unreachable statement: {what} has already returned"))
                failed = True
                break
            try:
                if isinstance(stmt, _Let):
                    self.let(stmt)
                else:
                    returned = True
                    node = self.expr(stmt.expr, top=True)
                    if declared is not None:
                        node = _conform(node, declared)
                        if not declared.is_assignable_from(node.type_signature):
                            raise self.error(
                                stmt.expr.pos,
                                mismatch_message(f"the result of {what} does not have its declared type", declared, node.type_signature),
                                FedcTypeError,
                            )
                    if isinstance(node, bb.Call):
                        node = self.bind(node, self._base_of(node))
                    result = node
            except _Poisoned:
                failed = True
                if isinstance(stmt, _Let):
                    self.scope.names.setdefault(stmt.name, _POISON)
            except FedcError as e:
                self.compiler.report(e)
                failed = True
                if isinstance(stmt, _Let):
                    self.scope.names.setdefault(stmt.name, _POISON)
        if not returned:
            self.compiler.report(self.error(body.end_pos, f"{what} does not return a value: its body must end with 'return <expression>'"))
            failed = True
        if failed:
            self.scope = self.scope.parent
            raise _Poisoned()
        return self.pop(result)

    def based(self, call: bb.Call, base: str) -> bb.Call:
        """Remembers the local name a call is bound to (``%mean``, ``%mapped``), as tracing names it."""
        self.bases[id(call)] = (call, base)
        return call

    def _base_of(self, call: bb.Call) -> str:
        entry = self.bases.get(id(call))
        if entry is not None and entry[0] is call:
            return entry[1]
        fn = call.function
        if isinstance(fn, bb.Intrinsic):
            return fn.uri
        if isinstance(fn, (bb.SymbolRef, bb.Reference)):
            return fn.name
        return "call"

    def let(self, stmt: _Let) -> None:
        previous = self.scope.names.get(stmt.name)
        if previous is not None and previous is not _POISON:
            raise self.error(stmt.pos, f"duplicate definition of {stmt.name!r}: it is already defined at {self.loc(previous[1])}")
        node = self.expr(stmt.expr, top=True)
        ir_name = self.namer.user(stmt.name)
        self.scope.bindings.append((ir_name, node))
        self.scope.names[stmt.name] = (self.reference_factory(ir_name, node.type_signature), stmt.pos)

    def check_local_function(self, lam: bb.Lambda, what: str) -> None:
        """A function whose type has no placements runs on one member: no federated calls or values inside."""
        if _is_placed(lam.type_signature):
            return
        bound = {lam.parameter_name}
        for n in lam.result.walk():
            if isinstance(n, bb.Block):
                bound.update(name for name, _ in n.locals)
            elif isinstance(n, bb.Lambda):
                bound.add(n.parameter_name)
        for n in lam.result.walk():
            problem, where = None, n
            if isinstance(n, bb.Intrinsic) and n.definition.is_federated:
                problem = f"cannot call the federated intrinsic {n.uri}"
            elif isinstance(n, (bb.Reference, bb.Selection)):
                chain = [n]
                while isinstance(chain[-1], bb.Selection):
                    chain.append(chain[-1].source)
                root = chain[-1]
                if isinstance(root, bb.Reference) and root.name not in bound and _is_placed(root.type_signature):
                    if root.name in self.namer.user_names or len(chain) == 1:
                        user, t = self.namer.user_names.get(root.name, root.name), root.type_signature
                    else:  # a parameter of a computation with several: a selection from its struct
                        user, t = chain[-2].name or root.name, chain[-2].type_signature
                    problem = f"cannot use the placed value {user!r} of type {t} from outside it"
            elif isinstance(n, bb.SymbolRef) and _is_placed(n.type_signature):
                problem = f"cannot use the federated computation {n.name!r} of type {n.type_signature}"
            if problem is not None:
                use = self.uses.get(id(where))
                location = where.location or (self.loc(use[1]) if use and use[0] is where else lam.location)
                raise FedcTypeError(
                    f"{what} has type {lam.type_signature}, without placements, so it runs on a single member "
                    f"and {problem}",
                    location,
                    self.unit.text,
                )

    # Expressions -------------------------------------------------------------
    def expr(self, e, top: bool = False, expected: Optional[Type] = None) -> bb.Node:
        """The node of expression ``e``; calls are bound to fresh locals unless ``top``."""
        if expected is not None and _is_weak(e):
            node = self.literal(e, _target_dtype(e, expected))
        else:
            node = self._expr(e)
        if isinstance(node, bb.Call) and not top:
            return self.bind(node, self._base_of(node))
        return node

    def _expr(self, e) -> bb.Node:
        if isinstance(e, _Name):
            return self.name_value(e)
        if isinstance(e, (_Number, _Bool, _String, _List)):
            return self.literal(e)
        if isinstance(e, _Unary):
            if e.op in ("-", "+") and _is_weak(e.operand) or isinstance(_strip_sign(e), _Number):
                return self.literal(e)
            if e.op == "+":
                node = self.expr(e.operand)
                self.local_operand(node, "+", e.pos)
                return node
            uri = "negative" if e.op == "-" else "logical_not"
            return self.local_op(uri, [e.operand], {}, e.pos, f"operator {e.op!r}")
        if isinstance(e, _Binary):
            return self.local_op(_BINARY_OPS[e.op], [e.left, e.right], {}, e.op_pos, f"operator {e.op!r}")
        if isinstance(e, _Field):
            return self.select(e.obj, e.name, None, e.name_pos)
        if isinstance(e, _Index):
            if not re.fullmatch(r"[0-9]+", e.text):
                raise self.error(e.index_pos, f"a struct index is a non-negative integer, not {e.text}")
            return self.select(e.obj, None, int(e.text), e.index_pos)
        if isinstance(e, _Call):
            return self.call(e)
        if isinstance(e, _Struct):
            return self.struct(e)
        if isinstance(e, _TypeExpr):
            raise self.error(e.pos, "a type is not a value; types are arguments of ops only, as in zeros(type=type(float32[3]))")
        if isinstance(e, _Lambda):
            return self.function(e, _UNKNOWN, "a function")
        raise AssertionError(f"unexpected expression {e!r}")

    def struct(self, e: _Struct) -> bb.Node:
        elements = []
        seen: dict = {}
        for a in e.elements:
            if a.name is not None:
                if a.name in seen:
                    raise self.error(a.pos, f"duplicate struct element name {a.name!r}")
                seen[a.name] = a.pos
            node = self.expr(a.value)
            elements.append((a.name, node) if a.name is not None else node)
        return self.guard(e.pos, bb.Struct, elements)

    # Names -------------------------------------------------------------------
    def lookup(self, name: str, pos: Pos):
        scope = self.scope
        while scope is not None:
            entry = scope.names.get(name)
            if entry is not None:
                if entry is _POISON:
                    raise _Poisoned()
                return ("local", entry)
            scope = scope.parent
        d = self.unit.namespace.get(name)
        if d is _POISON:
            raise _Poisoned()
        if isinstance(d, _Ambiguous):
            raise d.error(self.compiler, self.unit, pos, name)
        if d is not None:
            return ("def", d)
        if name in ("SERVER", "CLIENTS"):
            return ("placement", Placement(name))
        if name in _API_PARAMS:
            return ("intrinsic", name)
        if name in _local_ops():
            return ("op", name)
        candidates = [n for n, v in self.unit.namespace.items() if v is not _POISON] + _builtin_names()
        scope = self.scope
        while scope is not None:
            candidates[:0] = [n for n, v in scope.names.items() if v is not _POISON]
            scope = scope.parent
        raise self.error(pos, f"unknown name {name!r}" + _did_you_mean(name, candidates))

    def name_value(self, e: _Name) -> bb.Node:
        kind, entry = self.lookup(e.name, e.pos)
        if kind == "local":
            return entry[0](e.pos)
        if kind == "def":
            return self.def_value(entry, e.pos)
        if kind == "placement":
            return bb.Placement(entry, self.loc(e.pos))
        if kind == "intrinsic":
            raise self.error(e.pos, f"{e.name} is an intrinsic: call it, as in {e.name}(...)")
        raise self.error(
            e.pos,
            f"{e.name} is a local op: call it, as in {e.name}(...) (where a function of known parameter type "
            f"is expected, as the function of federated_map, the name alone also works)",
        )

    def def_value(self, d: _Def, pos: Pos) -> bb.Node:
        if d.kind == "type":
            raise self.error(pos, f"{d.name!r} is a type, not a value")
        if d.kind == "extern":
            node = self.compiler.resolve_extern(d)
        else:
            node = self.compiler.resolve_function(d, pos, self.unit)
        symbol = self.compiler.allocate_symbol(d)
        ref = bb.SymbolRef(symbol, node.type_signature)
        self.uses[id(ref)] = (ref, pos)
        return ref

    # Selection ---------------------------------------------------------------
    def select(self, obj_ast, name: Optional[str], index: Optional[int], pos: Pos) -> bb.Node:
        obj = self.expr(obj_ast)
        t = obj.type_signature
        label = f".{name}" if name is not None else f"[{index}]"
        member = t.member if isinstance(t, FederatedType) else t
        if not isinstance(member, StructType):
            hint = " (selection works on structs; tensors cannot be indexed)" if isinstance(member, TensorType) else ""
            raise self.error(pos, f"{label}: a value of type {t} has no elements{hint}", FedcTypeError)
        if name is not None and name not in [n for n in member.names() if n]:
            names = [n for n in member.names() if n]
            hint = _did_you_mean(name, names)
            listing = f"; its elements are named {', '.join(names)}" if names and not hint else ""
            raise self.error(pos, f"a value of type {t} has no element named {name!r}{hint}{listing}", FedcTypeError)
        if index is not None and index >= len(member):
            raise self.error(pos, f"index {index} is out of range for a value of type {t} ({_plural(len(member), 'element')})", FedcTypeError)
        if isinstance(t, StructType):
            return self.guard(pos, bb.Selection, obj, name=name, index=index, location=self.loc(pos))
        # Selecting from a placed struct maps the selection over the placement.
        param = self.namer.temp("x")
        fn = bb.Lambda(param, member, bb.Selection(bb.Reference(param, member), name=name, index=index, location=self.loc(pos)))
        uri = "federated_apply" if t.placement is SERVER else (
            "federated_map_all_equal" if t.all_equal else "federated_map")
        call = self.intrinsic(uri, bb.Struct([fn, obj]), pos)
        return self.based(call, name if name is not None else "element")

    # Literals ----------------------------------------------------------------
    def constant(self, e):
        """(Python value, dtype from a suffix or None, kind) of a constant expression."""
        if isinstance(e, _Number):
            m = _NUMBER.match(e.text)
            digits, suffix = m.group(1), m.group(2)
            is_float = any(ch in digits for ch in ".eE") or (suffix or "").startswith("f")
            try:
                value = float(digits) if is_float else int(digits)
            except ValueError:
                raise self.error(e.pos, f"invalid number {e.text!r}") from None
            return value, (_SUFFIXES[suffix] if suffix else None), ("float" if is_float else "int")
        if isinstance(e, _Bool):
            return e.value, None, "bool"
        if isinstance(e, _String):
            try:
                return _decode_string(e.raw), None, "str"
            except ValueError as error:
                raise self.error(e.pos, f"invalid string: {error}") from None
        if isinstance(e, _Unary) and e.op in ("-", "+"):
            value, dtype, kind = self.constant(e.operand)
            if kind not in ("int", "float"):
                raise self.error(e.pos, f"operator {e.op!r} applies to numbers, not to a {kind}", FedcTypeError)
            return (_negate(value) if e.op == "-" else value), dtype, kind
        if isinstance(e, _List):
            values, dtypes, kinds = [], set(), set()
            for item in e.items:
                v, dt, k = self.constant(item)
                values.append(v)
                if dt:
                    dtypes.add(dt)
                kinds.add(k)
            if len(dtypes) > 1:
                raise self.error(e.pos, f"a tensor literal has one dtype, but its elements have {', '.join(sorted(dtypes))}", FedcTypeError)
            if len(kinds - {"int", "float"}) and len(kinds) > 1:
                raise self.error(e.pos, f"a tensor literal has one dtype, but its elements are {' and '.join(sorted(kinds))}", FedcTypeError)
            kind = "float" if "float" in kinds else (kinds.pop() if kinds else "float")
            return values, (dtypes.pop() if dtypes else None), kind
        raise self.error(
            e.pos,
            "a tensor literal [...] holds constants (numbers, true, false, strings); "
            "use a struct <...> to group values",
        )

    def literal(self, e, dtype: Optional[str] = None) -> bb.Node:
        value, suffix, kind = self.constant(e)
        dtype = dtype or suffix or {"int": "int32", "float": "float32", "bool": "bool", "str": "str"}[kind]
        shape: tuple = ()
        if isinstance(value, list):
            try:
                array = np.array(value)
            except ValueError:
                array = None
            if array is None or array.dtype == object:
                raise self.error(e.pos, "a tensor literal must be rectangular (every row of the same length)", FedcTypeError)
            shape = array.shape
        t = TensorType(dtype, shape)
        try:
            return bb.Literal(value, t, self.loc(e.pos))
        except FedcError as error:
            hint = ""
            if kind == "int" and dtype == "int32" and not suffix:
                hint = " (write a suffix for a wider dtype, as in 3000000000i64)"
            raise self.error(e.pos, error.message + hint, FedcTypeError) from None

    # Local ops ---------------------------------------------------------------
    def local_operand(self, node: bb.Node, what: str, pos: Pos) -> None:
        t = node.type_signature
        if _is_placed(t):
            raise self.error(
                pos,
                f"{what} works on local values (tensors and structs of tensors), but an operand has type {t}; "
                "use federated_map with a local function to compute on placed values",
                FedcTypeError,
            )

    def local_op(self, uri: str, operand_asts: list, attrs: dict, pos: Pos, what: str) -> bb.Node:
        nodes: list = [None] * len(operand_asts)
        dtype = None
        for i, a in enumerate(operand_asts):
            if not _is_weak(a):
                nodes[i] = self.expr(a)
                self.local_operand(nodes[i], what, pos)
                dtype = dtype or _leaf_dtype(nodes[i].type_signature)
        if dtype is None and any(_is_weak(a) and _weak_kind(a) == "float" for a in operand_asts):
            dtype = np.dtype(np.float32)  # 0.5 * 2: the untyped numbers agree on float32
        for i, a in enumerate(operand_asts):
            if nodes[i] is None:
                nodes[i] = self.literal(a, _convertible(a, dtype))
        if not nodes:
            argument = None
        elif len(nodes) == 1:
            argument = nodes[0]
        else:
            argument = bb.Struct(nodes)
        call = self.intrinsic(uri, argument, pos, prefix=f"{what}: " if not what.startswith(uri) else "", **attrs)
        return self.based(call, uri)

    def intrinsic(self, uri: str, argument: Optional[bb.Node], pos: Pos, prefix: str = "", **attrs) -> bb.Call:
        if self.local and registry.lookup(uri).is_federated:
            raise self.error(
                pos,
                f"{uri} cannot be used in local function {self.d.name!r}: a local function runs on a single "
                "member, without placements (write a computation instead)",
                FedcTypeError,
            )
        return self.guard(pos, registry.call, uri, argument, self.loc(pos), prefix=prefix, **attrs)

    def attribute(self, uri: str, a: _Arg):
        e = a.value
        if a.name in ("type", "dtype"):
            if isinstance(e, _TypeExpr):
                t = self.resolve_type(e.ty)
            elif isinstance(e, _Name):
                t = self.type_named(e)
            else:
                t = None
            if t is not None:
                if a.name == "dtype":
                    if not isinstance(t, TensorType):
                        raise self.error(e.pos, f"dtype is a dtype name such as float32, not the type {t}", FedcTypeError)
                    return dtype_name(t.dtype)
                return t
        try:
            value, dtype, kind = self.constant(e)
        except FedcError:
            raise self.error(
                e.pos,
                f"attribute {a.name!r} of {uri} is a constant (a number, a list of numbers, true or false, "
                "a string, a dtype or a type)",
            ) from None
        return value

    def type_named(self, e: _Name) -> Optional[Type]:
        d = self.unit.namespace.get(e.name)
        if d is _POISON:
            raise _Poisoned()
        if isinstance(d, _Ambiguous):
            raise d.error(self.compiler, self.unit, e.pos, e.name)
        if d is not None and d.kind == "type":
            return self.compiler.resolve_alias(d, e.pos, self.unit)
        if e.name in _DTYPE_NAMES:
            return TensorType(_DTYPE_NAMES[e.name])
        return None

    # Calls -------------------------------------------------------------------
    def call(self, e: _Call) -> bb.Node:
        if isinstance(e.fn, _Name):
            kind, entry = self.lookup(e.fn.name, e.fn.pos)
            name = e.fn.name
            if kind == "intrinsic":
                return self.call_intrinsic(name, e)
            if kind == "op":
                return self.call_op(name, e)
            if kind == "placement":
                raise self.error(e.fn.pos, f"{name} is a placement, not a function")
            if kind == "def":
                if entry.kind == "type":
                    raise self.error(e.fn.pos, f"{name!r} is a type, not a function")
                fn = self.def_value(entry, e.fn.pos)
                if entry.kind in ("computation", "local"):
                    names = [p.name for p in entry.ast.params]
                    argument = self.pack_named(f"{entry.kind} {name!r}", names, fn.type_signature.parameter, e)
                else:
                    argument = self.pack(f"extern {name!r}", fn.type_signature, e)
                return self.based(self.make_call(fn, argument, e.pos, f"{entry.kind} {name!r}"), name)
            fn = entry[0](e.fn.pos)
            what = f"{name!r}"
        else:
            fn = self.expr(e.fn)
            what = "the function"
        if not isinstance(fn.type_signature, FunctionType):
            raise self.error(e.pos, f"{what} is not a function: it has type {fn.type_signature}", FedcTypeError)
        argument = self.pack(what, fn.type_signature, e)
        return self.based(self.make_call(fn, argument, e.pos, what), "call")

    def make_call(self, fn: bb.Node, argument: Optional[bb.Node], pos: Pos, what: str) -> bb.Call:
        t = fn.type_signature
        if t.parameter is not None and argument is not None and not t.parameter.is_assignable_from(argument.type_signature):
            raise self.error(pos, mismatch_message(f"argument of {what}", t.parameter, argument.type_signature), FedcTypeError)
        return self.guard(pos, bb.Call, fn, argument, self.loc(pos))

    def pack_named(self, what: str, names: list, parameter: Optional[Type], e: _Call) -> Optional[bb.Node]:
        values = self.bind_arguments(what, names, e)
        if not names:
            return None
        if len(names) == 1:
            return self.expr(values[names[0]], expected=parameter)
        return bb.Struct([(n, self.expr(values[n], expected=parameter[n])) for n in names])

    def pack(self, what: str, t: FunctionType, e: _Call) -> Optional[bb.Node]:
        """The argument of a call of a function of type ``t``: one value, or several packed into its struct."""
        parameter = t.parameter
        count = len(e.args)
        keywords = any(a.name is not None for a in e.args)
        if parameter is None:
            if e.args:
                raise self.error(e.pos, f"{what} takes no arguments, but {_given(count)}", FedcTypeError)
            return None
        if isinstance(parameter, StructType) and (keywords or (count != 1 and count == len(parameter))):
            if keywords and not parameter.is_named():
                raise self.error(e.pos, f"{what} takes positional arguments (its parameter is {parameter})", FedcTypeError)
            keys = [n or f"#{i}" for i, n in enumerate(parameter.names())]
            values = self.bind_arguments(what, keys, e)
            elements = []
            for i, (n, key) in enumerate(zip(parameter.names(), keys)):
                node = self.expr(values[key], expected=parameter[i])
                elements.append((n, node) if n is not None else node)
            return bb.Struct(elements)
        if count == 1 and not keywords:
            return self.expr(e.args[0].value, expected=parameter)
        if isinstance(parameter, StructType):
            raise self.error(
                e.pos,
                f"{what} takes 1 argument of type {parameter} or {_plural(len(parameter), 'argument')}, "
                f"but {_given(count)}",
                FedcTypeError,
            )
        raise self.error(e.pos, f"{what} takes 1 argument of type {parameter}, but {_given(count)}", FedcTypeError)

    def bind_arguments(self, what: str, names: list, e: _Call, optional: Sequence[str] = ()) -> dict:
        """Maps parameter names to argument expressions, or reports a wrong arity."""
        values: dict = {}
        positional = [a for a in e.args if a.name is None]
        shown = ", ".join(f"{n}=..." if n in optional else n for n in names)
        required = [n for n in names if n not in optional]
        if len(required) == len(names):
            count = _plural(len(names), "argument")
        else:
            count = f"{len(required)} to {_plural(len(names), 'argument')}"
        signature = f"{what} takes {count}" + (f" ({shown})" if names else "")
        if len(positional) > len(names):
            raise self.error(e.pos, f"{signature}, but {_given(len(e.args))}", FedcTypeError)
        for n, a in zip(names, positional):
            values[n] = a.value
        for a in e.args:
            if a.name is None:
                continue
            if a.name not in names:
                known = f"; its parameters are {', '.join(names)}" if names else ""
                raise self.error(a.pos, f"{what} has no parameter {a.name!r}{known}", FedcTypeError)
            if a.name in values:
                raise self.error(a.pos, f"{what} got argument {a.name!r} twice", FedcTypeError)
            values[a.name] = a.value
        missing = [n for n in required if n not in values]
        if missing:
            raise self.error(e.pos, f"{signature}, but {_given(len(e.args))} (missing {', '.join(missing)})", FedcTypeError)
        return values

    def call_op(self, uri: str, e: _Call) -> bb.Node:
        definition, arity = _local_ops()[uri]
        operands = [a for a in e.args if a.name is None]
        attr_names = {s.name for s in definition.attrs}
        if len(operands) != arity:
            attrs = f" and the attributes {', '.join(sorted(attr_names))}" if attr_names else ""
            raise self.error(
                e.pos,
                f"{uri} takes {_plural(arity, 'operand')}{attrs}, but {_given(len(operands))}",
                FedcTypeError,
            )
        attrs = {}
        for a in e.args:
            if a.name is None:
                continue
            if a.name not in attr_names:
                known = ", ".join(sorted(attr_names)) or "none"
                raise self.error(a.pos, f"{uri} has no attribute {a.name!r} (its attributes: {known})", FedcTypeError)
            if a.name in attrs:
                raise self.error(a.pos, f"{uri} got attribute {a.name!r} twice", FedcTypeError)
            attrs[a.name] = self.attribute(uri, a)
        return self.local_op(uri, [a.value for a in operands], attrs, e.pos, uri)

    def placed(self, e) -> bb.Node:
        """A placed value; a struct of values placed alike is zipped first, as in the Python API."""
        node = self.expr(e)
        t = node.type_signature
        if (
            isinstance(t, StructType)
            and len(t) > 0
            and all(isinstance(x, FederatedType) for x in t)
            and len({x.placement for x in t}) == 1
        ):
            placement = next(iter(t)).placement
            uri = "federated_zip_at_server" if placement is SERVER else "federated_zip_at_clients"
            node = self.bind(self.intrinsic(uri, node, e.pos), "zipped")
        return node

    def federated(self, node: bb.Node, name: str, what: str, pos: Pos) -> FederatedType:
        t = node.type_signature
        if not isinstance(t, FederatedType):
            raise self.error(
                pos, f"{name}: {what} must be a placed value (such as {{T}}@CLIENTS or T@SERVER), but has type {t}",
                FedcTypeError,
            )
        return t

    def placement(self, e, name: str) -> Placement:
        if isinstance(e, _Name):
            kind, entry = self.lookup(e.name, e.pos)
            if kind == "placement":
                return entry
        raise self.error(e.pos, f"{name}: the placement is SERVER or CLIENTS")

    def call_intrinsic(self, name: str, e: _Call) -> bb.Node:
        params = _API_PARAMS[name]
        optional = [p[:-1] for p in params if p.endswith("?")]
        names = [p.rstrip("?") for p in params]
        args = self.bind_arguments(name, names, e, optional)
        pos = e.pos

        def fn(key: str, parameter):
            return self.function(args[key], parameter, f"the function of {name}")

        if name == "federated_value":
            value = self.expr(args["value"])
            p = self.placement(args["placement"], name)
            uri = "federated_value_at_server" if p is SERVER else "federated_value_at_clients"
            return self.based(self.intrinsic(uri, value, pos), "value")
        if name == "federated_eval":
            p = self.placement(args["placement"], name)
            f = fn("fn", None)
            uri = "federated_eval_at_server" if p is SERVER else "federated_eval_at_clients"
            return self.based(self.intrinsic(uri, f, pos), "eval")
        if name in ("federated_eval_at_server", "federated_eval_at_clients"):
            return self.based(self.intrinsic(name, fn("fn", None), pos), "eval")
        if name in ("federated_map", "federated_apply", "federated_map_all_equal"):
            arg = self.placed(args["arg"])
            t = self.federated(arg, name, "the mapped value", args["arg"].pos)
            f = fn("fn", t.member)
            uri = name
            if name == "federated_map":
                uri = "federated_apply" if t.placement is SERVER else "federated_map"
            base = "applied" if uri == "federated_apply" else "mapped"
            return self.based(self.intrinsic(uri, bb.Struct([f, arg]), pos), base)
        if name in ("federated_zip", "federated_zip_at_clients", "federated_zip_at_server"):
            value = self.expr(args["value"])
            uri = name
            if name == "federated_zip":
                t = value.type_signature
                if not isinstance(t, StructType) or len(t) == 0 or not isinstance(next(iter(t)), FederatedType):
                    raise self.error(pos, f"federated_zip: expected a non-empty struct of placed values, got {t}", FedcTypeError)
                uri = "federated_zip_at_server" if next(iter(t)).placement is SERVER else "federated_zip_at_clients"
            return self.based(self.intrinsic(uri, value, pos), "zipped")
        if name == "federated_mean" and "weight" not in args or name in (
            "federated_broadcast", "federated_sum", "federated_min", "federated_max"
        ):
            base = {"federated_broadcast": "broadcast"}.get(name, name[len("federated_"):])
            return self.based(self.intrinsic(name, self.placed(args["value"]), pos), base)
        if name in ("federated_mean", "federated_weighted_mean"):
            value = self.placed(args["value"])
            weight = self.expr(args["weight"])
            return self.based(self.intrinsic("federated_weighted_mean", bb.Struct([value, weight]), pos), "mean")
        if name in ("federated_value_at_server", "federated_value_at_clients"):
            return self.based(self.intrinsic(name, self.expr(args["value"]), pos), "value")
        if name in ("federated_secure_sum", "federated_secure_sum_bitwidth", "federated_secure_modular_sum"):
            value = self.placed(args["value"])
            bound_name = names[1]
            bound = self.expr(args[bound_name])
            return self.based(self.intrinsic(name, bb.Struct([value, bound]), pos), "secure_sum")
        if name == "federated_aggregate":
            value = self.placed(args["value"])
            t = self.federated(value, name, "the value", args["value"].pos)
            zero = self.expr(args["zero"])
            u = zero.type_signature
            accumulate = fn("accumulate", StructType([u, t.member]))
            merge = fn("merge", StructType([u, u]))
            report = fn("report", u)
            return self.based(self.intrinsic(name, bb.Struct([value, zero, accumulate, merge, report]), pos), "aggregate")
        if name in ("federated_select", "federated_secure_select"):
            keys = self.expr(args["client_keys"])
            max_key = self.expr(args["max_key"])
            server = self.expr(args["server_val"])
            t = self.federated(server, name, "server_val", args["server_val"].pos)
            select_fn = fn("select_fn", StructType([t.member, TensorType(np.int32)]))
            return self.based(self.intrinsic(name, bb.Struct([keys, max_key, server, select_fn]), pos), "selected")
        if name == "sequence_map":
            arg = self.expr(args["arg"])
            t = arg.type_signature
            if not isinstance(t, SequenceType):
                raise self.error(args["arg"].pos, f"sequence_map: the mapped value must be a sequence, but has type {t}", FedcTypeError)
            f = fn("fn", t.element)
            return self.based(self.intrinsic(name, bb.Struct([f, arg]), pos), "seq_mapped")
        if name == "sequence_reduce":
            value = self.expr(args["value"])
            t = value.type_signature
            if not isinstance(t, SequenceType):
                raise self.error(args["value"].pos, f"sequence_reduce: the reduced value must be a sequence, but has type {t}", FedcTypeError)
            zero = self.expr(args["zero"])
            op = fn("op", StructType([zero.type_signature, t.element]))
            return self.based(self.intrinsic(name, bb.Struct([value, zero, op]), pos), "reduced")
        if name == "sequence_sum":
            return self.based(self.intrinsic(name, self.expr(args["value"]), pos), "seq_sum")
        raise AssertionError(name)  # pragma: no cover

    # Functions as values ---------------------------------------------------
    def function(self, e, parameter, what: str) -> bb.Node:
        """A function node for ``e``; ``parameter`` is the expected parameter type (None: no parameter)."""
        if isinstance(e, _Lambda):
            return self.lambda_(e, parameter)
        if isinstance(e, _Name) and parameter is not _UNKNOWN:
            kind, entry = self.lookup(e.name, e.pos)
            if kind == "op":
                definition, arity = _local_ops()[e.name]
                if arity == 0 or parameter is None:
                    raise self.error(e.pos, f"{what} takes a parameter, but {e.name} takes no operand here", FedcTypeError)
                x = self.namer.temp("x")
                call = self.guard(e.pos, registry.call, e.name, bb.Reference(x, parameter), self.loc(e.pos))
                return bb.Lambda(x, parameter, call, self.loc(e.pos))
        node = self.expr(e)
        if not isinstance(node.type_signature, FunctionType):
            raise self.error(e.pos, f"{what} must be a function, but this has type {node.type_signature}", FedcTypeError)
        return node

    def lambda_(self, e: _Lambda, expected) -> bb.Lambda:
        types = []
        seen: dict = {}
        for i, p in enumerate(e.params):
            if p.name in seen:
                raise self.error(p.pos, f"duplicate parameter {p.name!r}: it is already a parameter at {self.loc(seen[p.name])}")
            seen[p.name] = p.pos
            if p.ty is not None:
                types.append(self.resolve_type(p.ty))
                continue
            if expected is _UNKNOWN:
                raise self.error(p.pos, f"cannot infer the type of parameter {p.name!r} here; write it, as in fn({p.name}: float32) -> ...", FedcTypeError)
            if expected is None:
                raise self.error(p.pos, "this function takes no parameter here", FedcTypeError)
            if len(e.params) == 1:
                types.append(expected)
            elif isinstance(expected, StructType) and len(expected) == len(e.params):
                types.append(expected[i])
            else:
                raise self.error(
                    e.pos,
                    f"this function has {_plural(len(e.params), 'parameter')}, but is applied to a value of type {expected}",
                    FedcTypeError,
                )
        outer = self.scope
        self.push()
        try:
            if len(e.params) == 1:
                p = e.params[0]
                parameter_name = self.namer.user(p.name)
                parameter_type = types[0]
                self.scope.names[p.name] = (self.reference_factory(parameter_name, parameter_type), p.pos)
            elif e.params:
                parameter_name = self.namer.temp("arg")
                parameter_type = StructType([(p.name, t) for p, t in zip(e.params, types)])
                for p in e.params:
                    self.scope.names[p.name] = (self.selection_factory(parameter_name, parameter_type, p.name), p.pos)
            else:
                parameter_name = parameter_type = None
            if isinstance(e.body, _Body):
                body = self.body(e.body, None, "the function")
            else:
                result = self.expr(e.body, top=True)
                if isinstance(result, bb.Call):
                    result = self.bind(result, self._base_of(result))
                body = self.pop(result)
        finally:
            self.scope = outer
        lam = bb.Lambda(parameter_name, parameter_type, body, self.loc(e.pos))
        self.check_local_function(lam, "the function")
        return lam


# --------------------------------------------------------------------------
# Small helpers


def _given(n: int) -> str:
    return f"{n} {'was' if n == 1 else 'were'} given"


def _strip_sign(e):
    while isinstance(e, _Unary) and e.op in ("-", "+"):
        e = e.operand
    return e


def _is_weak(e) -> bool:
    """An untyped number (or list of them): it takes the dtype of the other operand, as in TensorFlow."""
    e = _strip_sign(e)
    if isinstance(e, _Number):
        return _NUMBER.match(e.text).group(2) is None
    if isinstance(e, _List):
        return bool(e.items) and all(_is_weak(i) for i in e.items)
    return False


def _weak_kind(e) -> str:
    e = _strip_sign(e)
    if isinstance(e, _Number):
        return "float" if any(ch in e.text for ch in ".eE") else "int"
    return "float" if any(_weak_kind(i) == "float" for i in e.items) else "int"


def _convertible(e, dtype: Optional[np.dtype]) -> Optional[str]:
    """The dtype a weak literal takes next to an operand of ``dtype`` (None: its default)."""
    if dtype is None:
        return None
    kind = _weak_kind(e)
    if kind == "int" and dtype.kind in "iufc":
        return dtype_name(dtype)
    if kind == "float" and dtype.kind in "fc":
        return dtype_name(dtype)
    return None


def _target_dtype(e, expected: Type) -> Optional[str]:
    if isinstance(expected, TensorType):
        return _convertible(e, expected.dtype)
    return None


def _leaf_dtype(t: Type) -> Optional[np.dtype]:
    dtypes = {s.dtype for s in t.walk() if isinstance(s, TensorType)}
    return dtypes.pop() if len(dtypes) == 1 else None


def _negate(value):
    if isinstance(value, list):
        return [_negate(v) for v in value]
    return -value


def _conform(node: bb.Node, declared: Type) -> bb.Node:
    """A struct literal returned where a named struct is declared takes the declared names."""
    if isinstance(node, bb.Struct) and isinstance(declared, StructType) and len(node) == len(declared):
        elements = []
        changed = False
        for (name, value), (dname, dtype) in zip(node.elements, declared.items()):
            new_value = _conform(value, dtype)
            new_name = name if name is not None else dname
            changed = changed or new_value is not value or new_name != name
            elements.append((new_name, new_value) if new_name is not None else new_value)
        if changed:
            return bb.Struct(elements, node.python_container, node.location)
    return node
