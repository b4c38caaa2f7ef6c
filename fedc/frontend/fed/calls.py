"""Calls in ``.fed`` source: of intrinsics, local ops, operators and functions.

The names a file can call without defining them are the functions of the
federated API (:data:`fedc.frontend.api.API`, shared with the Python API,
which ``call_intrinsic`` turns into the IR's intrinsics) and the local ops of
the intrinsic registry (:func:`local_ops`); operators are local ops
(:data:`fedc.frontend.api.BINARY_OPERATORS`). :class:`Calls` is mixed into
``builder.FunctionBuilder``.
"""

from __future__ import annotations

import functools
from typing import Optional, Sequence

import numpy as np

from fedc.errors import FedcError, FedcTypeError
from fedc.frontend.api import API, Arguments
from fedc.frontend.fed.diagnostics import POISON, Poisoned, plural
from fedc.frontend.fed.literals import is_weak, leaf_dtype, weak_dtype, weak_kind
from fedc.frontend.fed.syntax import Arg, CallExpr, NameExpr, Pos, TypeExpr
from fedc.frontend.fed.units import AmbiguousName
from fedc.ir import building_blocks as bb
from fedc.ir import intrinsics as registry
from fedc.ir.build import call as intrinsic_call
from fedc.types import (
    DTYPE_NAMES,
    FunctionType,
    Placement,
    StructType,
    TensorType,
    Type,
    dtype_name,
    mismatch_message,
)

__all__ = ["Calls", "builtin_names", "local_ops"]


@functools.lru_cache(maxsize=None)
def local_ops() -> dict:
    """Local op name -> (definition, number of operands), for the local ops a file can call by name."""
    return {d.uri: (d, len(d.operands)) for d in registry.with_kind(registry.IntrinsicKind.LOCAL)}


def builtin_names() -> list:
    """The names a file can use without defining them: the API functions, the local ops, the placements."""
    return list(API) + list(local_ops()) + ["SERVER", "CLIENTS"]


class _FedArguments(Arguments):
    """The arguments of a call of an API function in a ``.fed`` file, for :meth:`ApiFunction.build`."""

    def __init__(self, builder: "Calls", name: str, args: dict, pos: Pos):
        self.builder = builder
        self.name = name
        self.args = args
        self.pos = pos

    def given(self, parameter: str) -> bool:
        return parameter in self.args

    def value(self, parameter: str) -> bb.Node:
        return self.builder.expr(self.args[parameter])

    def function(self, parameter: str, parameter_type) -> bb.Node:
        return self.builder.function(self.args[parameter], parameter_type, f"the function of {self.name}")

    def placement(self, parameter: str) -> Placement:
        return self.builder.placement(self.args[parameter], self.name)

    def call(self, uri: str, argument, base: str) -> bb.Call:
        return self.builder.based(self.builder.intrinsic(uri, argument, self.pos), base)

    def bind(self, uri: str, argument, base: str) -> bb.Node:
        return self.builder.bind(self.builder.intrinsic(uri, argument, self.pos), base)

    def local_call(self, uri: str, argument) -> bb.Call:
        return self.builder.intrinsic(uri, argument, self.pos)

    def fresh(self, base: str) -> str:
        return self.builder.namer.temp(base)

    def error(self, parameter, message: str) -> FedcError:
        pos = self.pos if parameter is None else self.args[parameter].pos
        return self.builder.error(pos, message, FedcTypeError)


class Calls:
    """The calls of a function being built (a mixin of ``builder.FunctionBuilder``)."""

    # Local ops ---------------------------------------------------------------
    def local_operand(self, node: bb.Node, what: str, pos: Pos) -> None:
        t = node.type_signature
        if t.is_placed:
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
            if not is_weak(a):
                nodes[i] = self.expr(a)
                self.local_operand(nodes[i], what, pos)
                dtype = dtype or leaf_dtype(nodes[i].type_signature)
        if dtype is None and any(is_weak(a) and weak_kind(a) == "float" for a in operand_asts):
            dtype = np.dtype(np.float32)  # 0.5 * 2: the untyped numbers agree on float32
        for i, a in enumerate(operand_asts):
            if nodes[i] is None:
                nodes[i] = self.literal(a, weak_dtype(a, dtype))
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
        return self.guard(pos, intrinsic_call, uri, argument, self.loc(pos), prefix=prefix, **attrs)

    def attribute(self, uri: str, a: Arg):
        e = a.value
        if a.name in ("type", "dtype"):
            if isinstance(e, TypeExpr):
                t = self.resolve_type(e.ty)
            elif isinstance(e, NameExpr):
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

    def type_named(self, e: NameExpr) -> Optional[Type]:
        d = self.unit.namespace.get(e.name)
        if d is POISON:
            raise Poisoned()
        if isinstance(d, AmbiguousName):
            raise d.error(self.compiler, self.unit, e.pos, e.name)
        if d is not None and d.kind == "type":
            return self.compiler.resolve_alias(d, e.pos, self.unit)
        if e.name in DTYPE_NAMES:
            return TensorType(DTYPE_NAMES[e.name])
        return None

    # Calls -------------------------------------------------------------------
    def call(self, e: CallExpr) -> bb.Node:
        if isinstance(e.fn, NameExpr):
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

    def pack_named(self, what: str, names: list, parameter: Optional[Type], e: CallExpr) -> Optional[bb.Node]:
        values = self.bind_arguments(what, names, e)
        if not names:
            return None
        if len(names) == 1:
            return self.expr(values[names[0]], expected=parameter)
        return bb.Struct([(n, self.expr(values[n], expected=parameter[n])) for n in names])

    def pack(self, what: str, t: FunctionType, e: CallExpr) -> Optional[bb.Node]:
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
                f"{what} takes 1 argument of type {parameter} or {plural(len(parameter), 'argument')}, "
                f"but {_given(count)}",
                FedcTypeError,
            )
        raise self.error(e.pos, f"{what} takes 1 argument of type {parameter}, but {_given(count)}", FedcTypeError)

    def bind_arguments(self, what: str, names: list, e: CallExpr, optional: Sequence[str] = ()) -> dict:
        """Maps parameter names to argument expressions, or reports a wrong arity."""
        values: dict = {}
        positional = [a for a in e.args if a.name is None]
        shown = ", ".join(f"{n}=..." if n in optional else n for n in names)
        required = [n for n in names if n not in optional]
        if len(required) == len(names):
            count = plural(len(names), "argument")
        else:
            count = f"{len(required)} to {plural(len(names), 'argument')}"
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

    def call_op(self, uri: str, e: CallExpr) -> bb.Node:
        definition, arity = local_ops()[uri]
        operands = [a for a in e.args if a.name is None]
        attr_names = {s.name for s in definition.attrs}
        if len(operands) != arity:
            attrs = f" and the attributes {', '.join(sorted(attr_names))}" if attr_names else ""
            raise self.error(
                e.pos,
                f"{uri} takes {plural(arity, 'operand')}{attrs}, but {_given(len(operands))}",
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

    def placement(self, e, name: str) -> Placement:
        if isinstance(e, NameExpr):
            kind, entry = self.lookup(e.name, e.pos)
            if kind == "placement":
                return entry
        raise self.error(e.pos, f"{name}: the placement is SERVER or CLIENTS")

    def call_intrinsic(self, name: str, e: CallExpr) -> bb.Node:
        """A call of a function of the federated API (:data:`fedc.frontend.api.API`)."""
        function = API[name]
        args = self.bind_arguments(name, list(function.parameters), e, function.optional)
        return function.build(_FedArguments(self, name, args, e.pos))


def _given(n: int) -> str:
    return f"{n} {'was' if n == 1 else 'were'} given"
