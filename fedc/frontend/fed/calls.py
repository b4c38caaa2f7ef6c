"""Calls in ``.fed`` source: of intrinsics, local ops, operators and functions.

The names a file can call without defining them are the Python API's
intrinsics (``_API_PARAMS``, which ``call_intrinsic`` turns into the IR's
intrinsics, as the Python API does) and the local ops of the intrinsic
registry (``_local_ops``); operators are local ops (``_BINARY_OPS``).
``_Calls`` is mixed into ``builder._FunctionBuilder``.
"""

from __future__ import annotations

import functools
from typing import Optional, Sequence

import numpy as np

from fedc.errors import FedcError, FedcTypeError
from fedc.frontend.fed.literals import _convertible, _is_weak, _leaf_dtype, _weak_kind
from fedc.frontend.fed.syntax import Pos, _Arg, _Call, _Name, _TypeExpr
from fedc.frontend.fed.units import _POISON, _Ambiguous, _Poisoned, _plural
from fedc.ir import building_blocks as bb
from fedc.ir import intrinsics as registry
from fedc.types import (
    SERVER,
    FederatedType,
    FunctionType,
    Placement,
    StructType,
    SequenceType,
    TensorType,
    Type,
    _DTYPE_NAMES,
    dtype_name,
    mismatch_message,
)


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

_BINARY_OPS = {
    "+": "add", "-": "subtract", "*": "multiply", "/": "divide", "//": "floor_divide", "%": "mod",
    "**": "pow", "@": "matmul", "<": "less", "<=": "less_equal", ">": "greater", ">=": "greater_equal",
    "==": "equal", "!=": "not_equal", "and": "logical_and", "or": "logical_or",
}


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


class _Calls:
    """The calls of a function being built (a mixin of ``builder._FunctionBuilder``)."""

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
        uri = registry.implicit_zip(node.type_signature)
        if uri is not None:
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


def _given(n: int) -> str:
    return f"{n} {'was' if n == 1 else 'were'} given"
