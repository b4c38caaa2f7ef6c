"""Building one ``computation`` or ``local`` definition: type-checking it into a Lambda.

``FunctionBuilder`` walks a definition's statements and expressions in
scopes of SSA locals, as tracing Python builds them; names resolve to locals,
definitions (through the compiler) and built-ins. Its calls are built by the
``calls.Calls`` mixin and its constants by ``literals.Literals``.
"""

from __future__ import annotations

import re
from typing import Callable, Optional

from fedc.errors import FedcError, FedcTypeError, SourceLocation
from fedc.frontend.api import API, BINARY_OPERATORS, UNARY_OPERATORS, map_intrinsic
from fedc.frontend.fed.calls import Calls, builtin_names, local_ops
from fedc.frontend.fed.diagnostics import POISON, Poisoned, plural
from fedc.frontend.fed.literals import Literals, is_weak, strip_sign, target_dtype
from fedc.frontend.fed.syntax import (
    BinaryExpr,
    Body,
    BoolExpr,
    CallExpr,
    FieldExpr,
    IndexExpr,
    LambdaExpr,
    LetStmt,
    ListExpr,
    NameExpr,
    NumberExpr,
    Pos,
    StringExpr,
    StructExpr,
    TypeExpr,
    UnaryExpr,
    collect_bound_names,
    tree_pos,
)
from fedc.frontend.fed.units import AmbiguousName, Definition, Resolver
from fedc.ir import building_blocks as bb
from fedc.ir.build import call as intrinsic_call
from fedc.ir.names import FreshNames
from fedc.limits import INT64_MAX, parse_integer
from fedc.types import (
    FederatedType,
    FunctionType,
    Placement,
    StructType,
    TensorType,
    Type,
    mismatch_message,
)

__all__ = ["FunctionBuilder"]

_UNKNOWN = object()  # "no expected type" for function-valued arguments


# --------------------------------------------------------------------------
# Building one function


class _Namer:
    """SSA names for one computation: users' names where free, fresh ones for temporaries."""

    def __init__(self, reserved: set):
        # Temporaries avoid the user's names (reserved) and every name given out (used);
        # a user's name only needs to differ from the names given out before it.
        self.fresh = FreshNames(reserved)
        self.used: set = set()
        self.user_names: dict = {}

    def user(self, name: str) -> str:
        ir = self.fresh.take(name) if name not in self.used else self.fresh.suffixed(name)
        self.used.add(ir)
        self.user_names[ir] = name
        return ir

    def temp(self, base: str) -> str:
        ir = self.fresh.fresh(base)
        self.used.add(ir)
        return ir


class _Scope:
    def __init__(self, parent: Optional["_Scope"]):
        self.parent = parent
        self.names: dict = {}  # user name -> (factory(pos) -> node, definition pos) or POISON
        self.bindings: list = []


class FunctionBuilder(Literals, Calls):
    """Type-checks one ``computation`` / ``local`` definition and builds its Lambda."""

    def __init__(self, compiler: Resolver, d: Definition):
        self.compiler = compiler
        self.d = d
        self.unit = d.unit
        self.local = d.kind == "local"
        reserved: set = set()
        collect_bound_names([d.ast.params, d.ast.body], reserved)
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
                if self.local and t.is_placed:
                    raise self.error(
                        tree_pos(p.ty),
                        f"a local function takes placement-free values, but parameter {p.name!r} has type {t} "
                        "(write a computation to work with placed values)",
                        FedcTypeError,
                    )
                params.append((p, t))
            except Poisoned:
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
                if self.local and declared.is_placed:
                    raise self.error(
                        tree_pos(ast.result),
                        f"a local function returns a placement-free value, but its declared result type is {declared}",
                        FedcTypeError,
                    )
            except Poisoned:
                failed = True
                declared = None
            except FedcError as e:
                self.compiler.report(e)
                failed = True
                declared = None
        # The body is checked even when the header has errors, with the bad parameters poisoned.
        self.push()
        for name in poisoned:
            self.scope.names[name] = POISON
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
            raise Poisoned()
        lam = bb.Lambda(parameter_name, parameter_type, body, self.loc(ast.pos))
        self.check_local_function(lam, what)
        return lam

    def selection_factory(self, ir_name: str, struct: StructType, name: str):
        return lambda pos: bb.Selection(bb.Reference(ir_name, struct), name=name, location=self.loc(pos))

    def body(self, body: Body, declared: Optional[Type], what: str) -> bb.Node:
        """Evaluates statements in the current scope and closes it; raises Poisoned after errors."""
        result = None
        failed = False
        returned = False
        for stmt in body.stmts:
            if returned:
                start = stmt.start if isinstance(stmt, LetStmt) else stmt.pos
                self.compiler.report(self.error(start, f"unreachable statement: {what} has already returned"))
                failed = True
                break
            try:
                if isinstance(stmt, LetStmt):
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
            except Poisoned:
                failed = True
                if isinstance(stmt, LetStmt):
                    self.scope.names.setdefault(stmt.name, POISON)
            except FedcError as e:
                self.compiler.report(e)
                failed = True
                if isinstance(stmt, LetStmt):
                    self.scope.names.setdefault(stmt.name, POISON)
        if not returned:
            self.compiler.report(self.error(body.end_pos, f"{what} does not return a value: its body must end with 'return <expression>'"))
            failed = True
        if failed:
            self.scope = self.scope.parent
            raise Poisoned()
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

    def let(self, stmt: LetStmt) -> None:
        previous = self.scope.names.get(stmt.name)
        if previous is not None and previous is not POISON:
            raise self.error(stmt.pos, f"duplicate definition of {stmt.name!r}: it is already defined at {self.loc(previous[1])}")
        node = self.expr(stmt.expr, top=True)
        ir_name = self.namer.user(stmt.name)
        self.scope.bindings.append((ir_name, node))
        self.scope.names[stmt.name] = (self.reference_factory(ir_name, node.type_signature), stmt.pos)

    def check_local_function(self, lam: bb.Lambda, what: str) -> None:
        """A function whose type has no placements runs on one member: no federated calls or values inside."""
        if lam.type_signature.is_placed:
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
                if isinstance(root, bb.Reference) and root.name not in bound and root.type_signature.is_placed:
                    if root.name in self.namer.user_names or len(chain) == 1:
                        user, t = self.namer.user_names.get(root.name, root.name), root.type_signature
                    else:  # a parameter of a computation with several: a selection from its struct
                        user, t = chain[-2].name or root.name, chain[-2].type_signature
                    problem = f"cannot use the placed value {user!r} of type {t} from outside it"
            elif isinstance(n, bb.SymbolRef) and n.type_signature.is_placed:
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
        if expected is not None and is_weak(e):
            node = self.literal(e, target_dtype(e, expected))
        else:
            node = self._expr(e)
        if isinstance(node, bb.Call) and not top:
            return self.bind(node, self._base_of(node))
        return node

    def _expr(self, e) -> bb.Node:
        if isinstance(e, NameExpr):
            return self.name_value(e)
        if isinstance(e, (NumberExpr, BoolExpr, StringExpr, ListExpr)):
            return self.literal(e)
        if isinstance(e, UnaryExpr):
            if e.op in ("-", "+") and is_weak(e.operand) or isinstance(strip_sign(e), NumberExpr):
                return self.literal(e)
            if e.op == "+":
                node = self.expr(e.operand)
                self.local_operand(node, "+", e.pos)
                return node
            return self.local_op(UNARY_OPERATORS[e.op], [e.operand], {}, e.pos, f"operator {e.op!r}")
        if isinstance(e, BinaryExpr):
            return self.local_op(BINARY_OPERATORS[e.op], [e.left, e.right], {}, e.op_pos, f"operator {e.op!r}")
        if isinstance(e, FieldExpr):
            return self.select(e.obj, e.name, None, e.name_pos)
        if isinstance(e, IndexExpr):
            if not re.fullmatch(r"[0-9]+", e.text):
                raise self.error(e.index_pos, f"a struct index is a non-negative integer, not {e.text}")
            try:
                index = parse_integer(e.text, "a struct index", INT64_MAX)
            except ValueError as error:
                raise self.error(e.index_pos, str(error)) from None
            return self.select(e.obj, None, index, e.index_pos)
        if isinstance(e, CallExpr):
            return self.call(e)
        if isinstance(e, StructExpr):
            return self.struct(e)
        if isinstance(e, TypeExpr):
            raise self.error(e.pos, "a type is not a value; types are arguments of ops only, as in zeros(type=type(float32[3]))")
        if isinstance(e, LambdaExpr):
            return self.function(e, _UNKNOWN, "a function")
        raise AssertionError(f"unexpected expression {e!r}")

    def struct(self, e: StructExpr) -> bb.Node:
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
                if entry is POISON:
                    raise Poisoned()
                return ("local", entry)
            scope = scope.parent
        d = self.unit.namespace.get(name)
        if d is POISON:
            raise Poisoned()
        if isinstance(d, AmbiguousName):
            raise d.error(self.compiler, self.unit, pos, name)
        if d is not None:
            return ("def", d)
        if name in ("SERVER", "CLIENTS"):
            return ("placement", Placement(name))
        if name in API:
            return ("intrinsic", name)
        if name in local_ops():
            return ("op", name)
        raise self.error(pos, f"unknown name {name!r}" + self.compiler.suggest(name, self._names_in_scope()))

    def _names_in_scope(self):
        """The names that can be used here, outermost scope first, then definitions and builtins."""
        scopes = []
        scope = self.scope
        while scope is not None:
            scopes.append(scope)
            scope = scope.parent
        for scope in reversed(scopes):
            yield from (n for n, v in scope.names.items() if v is not POISON)
        yield from (n for n, v in self.unit.namespace.items() if v is not POISON)
        yield from builtin_names()

    def name_value(self, e: NameExpr) -> bb.Node:
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

    def def_value(self, d: Definition, pos: Pos) -> bb.Node:
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
            hint = self.compiler.suggest(name, names)
            listing = f"; its elements are named {', '.join(names)}" if names and not hint else ""
            raise self.error(pos, f"a value of type {t} has no element named {name!r}{hint}{listing}", FedcTypeError)
        if index is not None and index >= len(member):
            raise self.error(pos, f"index {index} is out of range for a value of type {t} ({plural(len(member), 'element')})", FedcTypeError)
        if isinstance(t, StructType):
            return self.guard(pos, bb.Selection, obj, name=name, index=index, location=self.loc(pos))
        # Selecting from a placed struct maps the selection over the placement.
        param = self.namer.temp("x")
        fn = bb.Lambda(param, member, bb.Selection(bb.Reference(param, member), name=name, index=index, location=self.loc(pos)))
        call = self.intrinsic(map_intrinsic(t, keep_all_equal=True), bb.Struct([fn, obj]), pos)
        return self.based(call, name if name is not None else "element")

    # Functions as values ---------------------------------------------------
    def function(self, e, parameter, what: str) -> bb.Node:
        """A function node for ``e``; ``parameter`` is the expected parameter type (None: no parameter)."""
        if isinstance(e, LambdaExpr):
            return self.lambda_(e, parameter)
        if isinstance(e, NameExpr) and parameter is not _UNKNOWN:
            kind, entry = self.lookup(e.name, e.pos)
            if kind == "op":
                definition, arity = local_ops()[e.name]
                if arity == 0 or parameter is None:
                    raise self.error(e.pos, f"{what} takes a parameter, but {e.name} takes no operand here", FedcTypeError)
                x = self.namer.temp("x")
                call = self.guard(e.pos, intrinsic_call, e.name, bb.Reference(x, parameter), self.loc(e.pos))
                return bb.Lambda(x, parameter, call, self.loc(e.pos))
        node = self.expr(e)
        if not isinstance(node.type_signature, FunctionType):
            raise self.error(e.pos, f"{what} must be a function, but this has type {node.type_signature}", FedcTypeError)
        return node

    def lambda_(self, e: LambdaExpr, expected) -> bb.Lambda:
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
                    f"this function has {plural(len(e.params), 'parameter')}, but is applied to a value of type {expected}",
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
            if isinstance(e.body, Body):
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
