"""The syntax tree of a ``.fed`` file, and parsing source text into it.

``parse_source`` parses a file with the LALR parser of ``grammar/fedc.lark``;
after a syntax error it resumes at the next top-level declaration, so that each
broken declaration is reported. ``_Converter`` turns lark's trees into the
dataclasses below, which keep the (line, column) of what they came from.
They are named after the grammar's rules: expressions end in ``Expr``,
statements in ``Stmt`` and top-level declarations in ``Decl``. lark is
imported only when a file is parsed.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, Optional

from fedc.errors import ParseError, SourceLocation, end_position
from fedc.types import describe_terminals

__all__ = [
    "Arg",
    "BinaryExpr",
    "Body",
    "BoolExpr",
    "CallExpr",
    "ExternDecl",
    "FieldExpr",
    "FuncDecl",
    "ImportDecl",
    "IndexExpr",
    "LambdaExpr",
    "LetStmt",
    "ListExpr",
    "NameExpr",
    "NumberExpr",
    "Param",
    "Pos",
    "ReturnStmt",
    "StringExpr",
    "StructExpr",
    "TypeDecl",
    "TypeExpr",
    "UnaryExpr",
    "collect_bound_names",
    "decode_string",
    "parse_source",
    "token_pos",
    "tree_pos",
]


# --------------------------------------------------------------------------
# Syntax tree


Pos = tuple  # (line, column), both 1-based


@dataclasses.dataclass
class NameExpr:
    pos: Pos
    name: str


@dataclasses.dataclass
class NumberExpr:
    pos: Pos
    text: str


@dataclasses.dataclass
class StringExpr:
    pos: Pos
    raw: str


@dataclasses.dataclass
class BoolExpr:
    pos: Pos
    value: bool


@dataclasses.dataclass
class BinaryExpr:
    pos: Pos
    op: str
    op_pos: Pos
    left: Any
    right: Any


@dataclasses.dataclass
class UnaryExpr:
    pos: Pos
    op: str
    operand: Any


@dataclasses.dataclass
class FieldExpr:
    pos: Pos
    obj: Any
    name: str
    name_pos: Pos


@dataclasses.dataclass
class IndexExpr:
    pos: Pos
    obj: Any
    text: str
    index_pos: Pos


@dataclasses.dataclass
class Arg:
    pos: Pos
    name: Optional[str]
    value: Any


@dataclasses.dataclass
class CallExpr:
    pos: Pos
    fn: Any
    args: list


@dataclasses.dataclass
class StructExpr:
    pos: Pos
    elements: list  # of Arg


@dataclasses.dataclass
class ListExpr:
    pos: Pos
    items: list


@dataclasses.dataclass
class TypeExpr:
    pos: Pos
    ty: Any


@dataclasses.dataclass
class Param:
    pos: Pos
    name: str
    ty: Any  # a lark tree, or None for an untyped lambda parameter


@dataclasses.dataclass
class Body:
    stmts: list
    end_pos: Pos  # the closing brace


@dataclasses.dataclass
class LambdaExpr:
    pos: Pos
    params: list
    body: Any  # an expression or a Body


@dataclasses.dataclass
class LetStmt:
    pos: Pos  # the name
    name: str
    expr: Any
    start: Pos  # the 'let' keyword


@dataclasses.dataclass
class ReturnStmt:
    pos: Pos
    expr: Any


@dataclasses.dataclass
class ImportDecl:
    pos: Pos
    raw: str


@dataclasses.dataclass
class TypeDecl:
    pos: Pos
    name: str
    name_pos: Pos
    ty: Any


@dataclasses.dataclass
class ExternDecl:
    pos: Pos
    name: str
    name_pos: Pos
    ty: Any
    raw_target: str
    target_pos: Pos


@dataclasses.dataclass
class FuncDecl:
    pos: Pos
    kind: str  # "computation" or "local"
    name: str
    name_pos: Pos
    params: list
    result: Any  # a lark tree or None
    body: Body


def token_pos(token) -> Pos:
    return (token.line, token.column)


def tree_pos(tree) -> Pos:
    import lark

    if isinstance(tree, lark.Token):
        return token_pos(tree)
    return (tree.meta.line, tree.meta.column)


def decode_string(raw: str) -> str:
    """The value of a string literal, from its source text (quotes included); ValueError if invalid."""
    return json.loads(raw)


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
            return ImportDecl(token_pos(c[0]), str(c[0]))
        if kind == "type_decl":
            return TypeDecl(tree_pos(tree), self.name(c[0]), token_pos(c[0]), c[1])
        if kind == "extern_decl":
            return ExternDecl(tree_pos(tree), self.name(c[0]), token_pos(c[0]), c[1], str(c[2]), token_pos(c[2]))
        name, params, result, body = c
        return FuncDecl(
            tree_pos(tree),
            "computation" if kind == "computation_decl" else "local",
            self.name(name),
            token_pos(name),
            [Param(token_pos(p.children[0]), self.name(p.children[0]), p.children[1]) for p in (params.children if params else [])],
            result,
            self.body(body),
        )

    def body(self, tree) -> Body:
        stmts = []
        for s in tree.children:
            if s.data == "let_stmt":
                stmts.append(LetStmt(token_pos(s.children[0]), self.name(s.children[0]), self.expr(s.children[1]), tree_pos(s)))
            else:
                stmts.append(ReturnStmt(tree_pos(s), self.expr(s.children[0])))
        return Body(stmts, (tree.meta.end_line, tree.meta.end_column - 1))

    def expr(self, tree):
        import lark

        if isinstance(tree, lark.Token):  # not produced by the grammar, but be safe
            return NameExpr(token_pos(tree), str(tree))
        kind = tree.data
        c = tree.children
        pos = tree_pos(tree)
        if kind == "name":
            return NameExpr(pos, self.name(c[0]))
        if kind == "number":
            return NumberExpr(pos, str(c[0]))
        if kind == "string":
            return StringExpr(pos, str(c[0]))
        if kind == "boolean":
            return BoolExpr(pos, str(c[0]) == "true")
        if kind == "binary":
            left, op, right = c
            return BinaryExpr(pos, str(op), token_pos(op), self.expr(left), self.expr(right))
        if kind == "unary":
            op, operand = c
            return UnaryExpr(pos, str(op), self.expr(operand))
        if kind == "field":
            return FieldExpr(pos, self.expr(c[0]), str(c[1]), token_pos(c[1]))
        if kind == "index":
            return IndexExpr(pos, self.expr(c[0]), str(c[1]), token_pos(c[1]))
        if kind == "call":
            fn, args = c
            return CallExpr(pos, self.expr(fn), self.args(args))
        if kind == "struct":
            elements = c[1]
            return StructExpr(pos, self.args(elements))
        if kind == "list":
            items = c[0]
            return ListExpr(pos, [self.expr(i) for i in (items.children if items else [])])
        if kind == "type_expr":
            return TypeExpr(pos, c[0])
        if kind in ("lambda_expr", "lambda_body"):
            params, body = c
            lparams = [
                Param(token_pos(p.children[0]), self.name(p.children[0]), p.children[1])
                for p in (params.children if params else [])
            ]
            return LambdaExpr(pos, lparams, self.body(body) if kind == "lambda_body" else self.expr(body))
        raise AssertionError(f"unexpected tree {kind}")

    def args(self, tree) -> list:
        result = []
        for a in tree.children if tree is not None else []:
            if getattr(a, "data", None) in ("kwarg", "named_element"):
                name, value = a.children
                result.append(Arg(token_pos(name), str(name), self.expr(value)))
            else:
                e = self.expr(a)
                result.append(Arg(e.pos, None, e))
        return result


def collect_bound_names(node, out: set) -> None:
    """Collects every name a definition binds (parameters, lets, lambda parameters)."""
    if isinstance(node, list):
        for n in node:
            collect_bound_names(n, out)
        return
    if isinstance(node, Param):
        out.add(node.name)
    elif isinstance(node, LetStmt):
        out.add(node.name)
        collect_bound_names(node.expr, out)
    elif isinstance(node, ReturnStmt):
        collect_bound_names(node.expr, out)
    elif isinstance(node, Body):
        collect_bound_names(node.stmts, out)
    elif isinstance(node, LambdaExpr):
        collect_bound_names(node.params, out)
        collect_bound_names(node.body, out)
    elif isinstance(node, BinaryExpr):
        collect_bound_names(node.left, out)
        collect_bound_names(node.right, out)
    elif isinstance(node, UnaryExpr):
        collect_bound_names(node.operand, out)
    elif isinstance(node, (FieldExpr, IndexExpr)):
        collect_bound_names(node.obj, out)
    elif isinstance(node, CallExpr):
        collect_bound_names(node.fn, out)
        collect_bound_names([a.value for a in node.args], out)
    elif isinstance(node, StructExpr):
        collect_bound_names([a.value for a in node.elements], out)
    elif isinstance(node, ListExpr):
        collect_bound_names(node.items, out)


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
        line, column = end_position(text)
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


_WORD = re.compile(r"[ \t]*[A-Za-z_]+")


def _parse_range(parser, text: str, start: int, end: int, line: int):
    """Parses ``text[start:end]``, which begins line ``line``, locating tokens in all of ``text``.

    Neither copies nor rescans the text before ``start``, so that parsing a
    file piece by piece costs what parsing it whole does.
    """
    from lark.lexer import LexerState, LineCounter
    from lark.utils import TextSlice

    counter = LineCounter("\n")
    counter.char_pos = counter.line_start_pos = start
    counter.line = line
    interactive = parser.parse_interactive(None)
    interactive.lexer_thread.state = LexerState(TextSlice(text, start, end), counter)
    return interactive.resume_parse()


def parse_source(text: str, filename: str):
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
    line = 1
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(text)
        chunk = text[start:end]
        line += text.count("\n", starts[i - 1], start) if i else 0
        try:
            tree = _parse_range(parser, text, start, end, line)
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
            head = _WORD.match(text, end)
            try:
                _parse_range(parser, text, start, head.end(), line)
            except lark.exceptions.UnexpectedInput as e:
                if not (isinstance(e, lark.exceptions.UnexpectedToken) and e.token.type == "$END"):
                    error = e
        diagnostics.append(_syntax_error(error, filename, text, parser))
        m = _DECLARED_NAME.match(chunk)
        if m:
            failed.add(m.group(1))
    return items, diagnostics + converter.errors, failed
