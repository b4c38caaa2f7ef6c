"""The syntax tree of a ``.fed`` file, and parsing source text into it.

``_parse_source`` parses a file with the LALR parser of ``grammar/fedc.lark``;
after a syntax error it resumes at the next top-level declaration, so that each
broken declaration is reported. ``_Converter`` turns lark's trees into the
dataclasses below, which keep the (line, column) of what they came from.
lark is imported only when a file is parsed.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Optional

from fedc.errors import ParseError, SourceLocation
from fedc.types import describe_terminals


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
