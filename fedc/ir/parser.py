"""The parser of the textual IR: :func:`parse_module` and :func:`parse_node`.

The parser walks the parse tree of ``grammar/ir.lark`` (lark is imported
lazily, on the first parse), puts temporaries back into the tree, recomputes
and checks every op's type, and reports every error as a located
:class:`~fedc.errors.ParseError`. The format is described in
:mod:`fedc.ir.text`.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import hashlib
import math
import re
from typing import Any, Callable, Optional

import numpy as np

from fedc.limits import INT64_MAX, MAX_IR_TEXT_NESTING, UINT64_MAX, check_text_nesting, deep_recursion, parse_integer, shown_integer
from fedc.errors import FedcError, FedcTypeError, ParseError, SourceLocation, UnsafeTensorFlowError, VerificationError
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
from fedc import tensorflow_graphs
from fedc.ir.lark_tree import ir_parser, position as tree_position
from fedc.ir.module import Module
from fedc.ir.verifier import verify as verify_ir
from fedc.ir.text_format import (
    DECIMAL_INT as _DECIMAL_INT,
    HEX_INT as _HEX_INT,
    BadEscape as _BadEscape,
    float_bits_from_text as _float_bits_from_text,
    op_table as _op_table,
    uint_dtype as _uint_dtype,
    unquote as _unquote,
)
from fedc.types import FunctionType, TensorType, Type
from fedc.values import strings

__all__ = [
    "parse_module",
    "parse_node",
]


@deep_recursion
def parse_module(text: str, filename: str = "<ir>", trusted: bool = False, verify: bool = True) -> Module:
    """Parses the textual IR of a module.

    Raises :class:`ParseError` (``file:line:col``, the line and a caret) for
    bad syntax, unknown ops, scoping errors, misused temporaries, type errors,
    missing or corrupt payloads, and TensorFlow payloads using an op outside
    :mod:`fedc.tensorflow_ops`'s allowlist (unless ``trusted``). The module is
    verified (:func:`fedc.ir.verify`) unless ``verify=False``; a
    :class:`VerificationError` is located the same way, at the op or operand at
    fault. (The text can carry IR that does not verify, e.g. shadowed names.)
    """
    module = _Parser(text, filename, module_mode=True, trusted=trusted).parse()
    if verify:
        _Parser(text, filename, module_mode=True, trusted=trusted).verify(module)
    return module


@deep_recursion
def parse_node(text: str, filename: str = "<ir>", trusted: bool = False) -> Node:
    """Parses one computation printed by :func:`print_node`."""
    return _Parser(text, filename, module_mode=False, trusted=trusted).parse()


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


class _Temp:
    __slots__ = ("node", "token", "use", "_free")

    def __init__(self, node: Node, token):
        self.node = node
        self.token = token
        self.use = None
        self._free = None

    @property
    def free_names(self) -> set[str]:
        if self._free is None:
            self._free = _free_names(self.node)
        return self._free


class _RegionFrame:
    """A region being parsed: its named values and temporaries."""

    __slots__ = ("named", "temps", "pending", "later")

    def __init__(self):
        self.named: dict[str, tuple[Type, Any]] = {}
        self.temps: dict[str, _Temp] = {}
        self.pending: dict[str, _Temp] = {}  # the temporaries not used yet, in definition order
        self.later: dict[str, Any] = {}


class _LambdaFrame:
    __slots__ = ("name", "type", "token")

    def __init__(self, name: str, t: Type, token):
        self.name = name
        self.type = t
        self.token = token


class _Parser:
    def __init__(self, text: str, filename: str, module_mode: bool, trusted: bool = False, positions=None):
        # positions: a dict to fill with id(node) -> (node, where in the text), or None
        self.positions = positions
        if not isinstance(text, str):
            raise FedcTypeError(f"the textual IR is a string, not {type(text).__name__}")
        self.text = text
        self.filename = filename
        self.module_mode = module_mode
        self.trusted = trusted
        self.symbols: dict[str, Type] = {}
        self.resources: Optional[dict[str, bytes]] = None
        self.frames: list = []
        self.reset_scopes()
        self.definitions: dict[str, Any] = {}  # every named value of the computation → token
        self.op_table: Optional[dict[str, str]] = None

    # Errors ----------------------------------------------------------------
    def error(self, where: Any, message: str, fallback: Any = None) -> ParseError:
        position = tree_position(where) or tree_position(fallback) or (1, 1)
        return ParseError(message, SourceLocation(self.filename, position[0], position[1]), self.text)

    def at(self, token) -> str:
        position = tree_position(token)
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
            return self.noted(where, action(), fallback)
        except ParseError:
            raise
        except FedcError as e:
            raise self.error(where, prefix + e.message, fallback) from None

    def noted(self, where: Any, node: Node, fallback: Any = None) -> Node:
        """``node``, noting where in the text it was written (when positions are kept)."""
        if self.positions is not None:
            self.positions.setdefault(id(node), (node, tree_position(where) or tree_position(fallback)))
        return node

    def verify(self, module: Module) -> None:
        """Verifies ``module``; a failure is located at the text of the node at fault.

        The positions of nodes are kept only to locate a failure: the text is then
        parsed again, keeping them, and the same failure found in its module.
        """
        try:
            verify_ir(module)
        except VerificationError as e:
            positions: dict = {}
            again = _Parser(self.text, self.filename, self.module_mode, self.trusted, positions).parse()
            try:
                verify_ir(again)
            except VerificationError as located:
                e = located
            _, position = positions.get(id(e.node), (None, None))
            if position is None:
                raise e from None
            raise VerificationError(
                e.message, SourceLocation(self.filename, position[0], position[1]), self.text, e.node
            ) from None

    # Entry point -----------------------------------------------------------
    def parse(self):
        import lark

        check_text_nesting(
            self.text, self.filename, "([{<", comment="//", what="the textual IR",
            limit=MAX_IR_TEXT_NESTING, limit_name="fedc.limits.MAX_IR_TEXT_NESTING",
        )
        parser = ir_parser()
        start = "module_text" if self.module_mode else "node_text"
        try:
            tree = parser.parse(self.text, start=start)
        except lark.exceptions.UnexpectedInput as e:
            raise self.syntax_error(e, parser) from None
        except ParseError as e:  # from a type: located in this text
            location = e.location
            raise self.error((location.line, location.column) if location else None, e.message) from None
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
        self.reset_scopes()
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
            self.visible.setdefault(name, []).append(t)
            body = self.region(region)
            self.unbind(name)
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
        self.region_frames.append(frame)
        locals_ = []
        for op in ops:
            target, body = op.children
            name = str(target)[1:]
            if target.type == "TEMP_ID":
                previous = self.visible_temp(name)
                if previous is not None:
                    raise self.error(target, f"%{name} is defined twice (first at {self.at(previous.token)})")
                node = self.op(body)
                temp = frame.temps[name] = frame.pending[name] = self.visible_temps[name] = _Temp(node, target)
            else:
                if name in frame.named:
                    first = frame.named[name][1]
                    raise self.error(
                        target, f"%{name} is defined twice in this region (first at {self.at(first)})"
                    )
                node = self.op(body)
                self.check_capture(frame, name, target)
                frame.named[name] = (node.type_signature, target)
                self.visible.setdefault(name, []).append(node.type_signature)
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
        for name in frame.named:
            self.unbind(name)
        for name in frame.temps:
            del self.visible_temps[name]
        self.region_frames.pop()
        self.frames.pop()
        if force_block or locals_:
            return self.wrap(where or tree, lambda: Block(locals_, result, block_location))
        return result

    def note_definition(self, name: str, token) -> None:
        self.definitions.setdefault(name, token)

    def reset_scopes(self) -> None:
        # What is visible where the parser is, kept up to date as regions and lambdas are
        # entered and left, so that a lookup does not search the enclosing frames.
        self.visible: dict[str, list[Type]] = {}  # named value -> its types, innermost last
        self.visible_temps: dict[str, _Temp] = {}  # temporaries of the enclosing regions
        self.region_frames: list[_RegionFrame] = []

    def unbind(self, name: str) -> None:
        types = self.visible[name]
        types.pop()
        if not types:
            del self.visible[name]

    def visible_temp(self, name: str) -> Optional[_Temp]:
        return self.visible_temps.get(name)

    def check_capture(self, frame: _RegionFrame, name: str, token) -> None:
        """A pending temporary must not move under a definition that shadows a name it uses."""
        for temp_name, temp in frame.pending.items():
            if name in temp.free_names:
                raise self.error(
                    token,
                    f"%{name} shadows the %{name} that temporary %{temp_name} (defined at "
                    f"{self.at(temp.token)}) uses, but %{temp_name} is used after this definition; "
                    f"use %{temp_name} before defining %{name}",
                )

    def lookup(self, name: str) -> Optional[Type]:
        types = self.visible.get(name)
        return types[-1] if types else None

    # Ops -------------------------------------------------------------------
    def op(self, body) -> Node:
        handler = getattr(self, "op_" + body.data)
        node = handler(body, *body.children)
        if self.positions is not None:  # the node an op defines is pointed at by the op
            self.positions[id(node)] = (node, tree_position(body))
        return node

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
        node = self.wrap(ty, lambda: Compiled(str(kind_token), payload, t, name, location), "fedc.compiled: ")
        try:
            tensorflow_graphs.admit(node, self.trusted)
        except UnsafeTensorFlowError as e:
            raise UnsafeTensorFlowError(e.message, self.error(hash_token, "").location, self.text) from None
        except FedcError as e:
            raise self.error(hash_token, e.message) from None
        return node

    # Operands --------------------------------------------------------------
    def operand(self, tree) -> Node:
        kind = tree.data
        if kind == "use_local":
            (token,) = tree.children
            name = str(token)[1:]
            t = self.lookup(name)
            if t is None:
                raise self.undefined_value(token)
            return self.noted(token, Reference(name, t))
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
            return self.noted(token, SymbolRef(name, t))
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
        return self.wrap(
            selector,
            lambda: Selection(source, index=self.integer(selector, str(selector), "a struct index", INT64_MAX), location=location),
        )

    def use_temp(self, token) -> Node:
        name = str(token)[1:]
        frame = self.region_frames[-1]
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
        del frame.pending[name]
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
        if _DECIMAL_INT.match(text) or _HEX_INT.match(text):
            return self.integer(token, text)
        return float(text)

    def integer(self, where, text: str, what: str = "an integer", maximum: int = UINT64_MAX) -> int:
        """The value of integer ``text`` (fedc.limits.parse_integer), or a ParseError at ``where``."""
        try:
            return parse_integer(text, what, maximum)
        except ValueError as e:
            raise self.error(where, str(e)) from None

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
                    value = self.integer(leaf, text, "an integer constant")
                elif _HEX_INT.match(text) and text[0] not in "+-":
                    value = self.integer(leaf, text, "an integer constant")
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
            try:
                return strings(values if shape else values[0], f"constant of type {t}").reshape(shape)
            except FedcError as e:
                raise self.error(tree, e.message, op_tree) from None
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
            raise self.error(token, f"{shown_integer(str(token))} is not a {dtype}: {e}") from None

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
            what = "a location's line" if token is line_token else "a location's column"
            number = self.integer(token, str(token), what, INT64_MAX)
            if number < 0:
                raise self.error(token, f"{what} is a number from 0, not {number}")
            numbers.append(number)
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
