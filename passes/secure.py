"""insert-secure-aggregation: sums of client values become secure sums of fixed-point integers.

Every aggregation of client values to the server that is a sum underneath —
``federated_sum``, ``federated_mean``, ``federated_weighted_mean`` and
sum-form ``federated_aggregate`` calls (see :mod:`fedc.passes.aggregates`) —
is rewritten to::

    %encode     = fedc.lambda(%v: T) -> <E,...,E> { clip, scale, round each summand; clip flags }
    %encoded    = fed.map(%encode, %x)
    %bitwidth   = fedc.constant BITS : int32
    %secure_sum = fed.secure_sum_bitwidth(%encoded, %bitwidth)
    %decode     = fedc.lambda(%s: <E,...,E>) -> R { undo scale and offset; the original report }
    %result     = fed.apply(%decode, %secure_sum)
    %clipped    = fed.apply(%clip_counts, %secure_sum)      # <upper=int32,lower=int32>@SERVER

Each summand is encoded in a range the computation declares (a clip with
constant bounds, a cast of a bool, a constant, a small integer dtype) or the
options give (clip or low/high, weight-clip); there is no default range. The
number of clients clipped above and below each aggregation's ranges is
returned as the computation's new last result element ``secure_clipped``.
The encoding, the ranges and the error bound are documented in
``docs/passes.md`` ("Secure aggregation"). Aggregations that are not sums
(min, max, select, an aggregate whose accumulate is not a sum) are errors
unless ``allow-insecure=true``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Optional

import numpy as np

from fedc.errors import FedcError
from fedc.ir import building_blocks as bb
from fedc.ir.intrinsics import Role
from fedc.ir.module import Module
from fedc.limits import check_allocation
from fedc.types import FederatedType, SERVER, StructType, TensorType, Type
from fedc.values import convert

from . import aggregates as agg
from .manager import Option, PassContext, register
from .util import Names, is_atom, transform_computations

F64 = np.dtype(np.float64)
I64 = np.dtype(np.int64)
COUNT = np.dtype(np.int32)
MAX_BITS = 40
EXACT_FLOAT64 = 2**53
CLIPPED = "secure_clipped"  # the element the clip counts are returned in


DEFAULTS = {"bits": 20, "clip": None, "low": None, "high": None, "weight-clip": None, "max-clients": 65536}


class Encoding:
    """The fixed-point encoding the options choose, checked.

    A value in ``[lo, hi]`` becomes the integer ``floor((x - lo) * scale + 0.5)``
    in ``[0, 2**bits - 1]`` with ``scale = (2**bits - 1) / (hi - lo)`` (an
    integer ``x - lo``); the server decodes a sum ``S`` of ``N`` of them as
    ``S / scale + N * lo``. Integers travel as ``int32`` when
    ``max_clients * (2**bits - 1)`` fits in it, else as ``int64``; beyond
    ``2**53`` the sum would not convert to float64 exactly, so that is an error.

    There are no default ranges: ``value_range`` (from ``clip`` or
    ``low``/``high``) and ``weight_clip`` are ``None`` unless given, and a
    summand without a declared range needs them.
    """

    def __init__(self, bits: int, clip: Optional[float], low: Optional[float], high: Optional[float],
                 weight_clip: Optional[float], max_clients: int):
        def bad(message: str) -> FedcError:
            return FedcError(f"insert-secure-aggregation: {message}")

        if not 1 <= bits <= MAX_BITS:
            raise bad(f"bits must be between 1 and {MAX_BITS}, not {bits}")
        for option, value in (("clip", clip), ("weight-clip", weight_clip)):
            if value is not None and not (math.isfinite(value) and value > 0):
                raise bad(f"{option} must be a positive finite number, not {value}")
        if clip is not None and (low is not None or high is not None):
            raise bad("give the range of summands either as clip=C (for [-C, C]) or as low=L high=H, not both")
        if (low is None) != (high is None):
            raise bad("low and high go together: give both (the range [low, high]) or use clip=C")
        if low is not None and not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise bad(f"low and high must be finite numbers with low < high, not low={low} high={high}")
        if max_clients < 1:
            raise bad(f"max-clients must be at least 1, not {max_clients}")
        self.bits, self.max_clients = bits, max_clients
        self.value_range = (-float(clip), float(clip)) if clip is not None else (
            (float(low), float(high)) if low is not None else None)
        self.weight_clip = None if weight_clip is None else float(weight_clip)
        self.levels = 2**bits - 1
        largest = max_clients * self.levels
        if largest <= np.iinfo(np.int32).max:
            self.dtype = np.dtype(np.int32)
        elif largest <= EXACT_FLOAT64:
            self.dtype = np.dtype(np.int64)
        else:
            supported = EXACT_FLOAT64 // self.levels
            raise bad(
                f"bits={bits} is too large for max-clients={max_clients}: a secure sum of up to "
                f"max-clients values below 2**bits must stay below 2**53 (exact in float64), i.e. "
                f"bits + log2(max-clients) <= 53; with bits={bits} at most {supported} clients"
            )


@dataclasses.dataclass(frozen=True)
class Range:
    """The range ``[lo, hi]`` a summand leaf is encoded in; ``counted``: values may lie outside it."""

    lo: float
    hi: float
    counted: bool


def _role(u: Type, path: tuple) -> tuple[Optional[str], Optional[Type]]:
    """The role of the summand at ``path`` (weighted_sum or weight of a weighted mean), and the weight's type."""
    role, weight_type, t = None, None, u
    for index in path:
        if isinstance(t, StructType) and t.names() == [agg.WEIGHTED_SUM, agg.WEIGHT]:
            role, weight_type = t.names()[index], t[1]
        t = t[index]
    if weight_type is not None and isinstance(weight_type, StructType):
        weight_type = None
    return role, weight_type


def _constant(node: bb.Node) -> Optional[np.ndarray]:
    """The value of a constant summand (a literal, zeros, ones, a cast of a constant)."""
    if isinstance(node, bb.Literal):
        return np.asarray(node.value)
    parts = agg.intrinsic_call_parts(node)
    if parts is None:
        return None
    uri, argument = parts
    t = node.type_signature
    if uri in ("zeros", "ones") and hasattr(t, "dtype") and t.is_fully_defined():
        check_allocation(t.shape, t.dtype.itemsize, uri)
        return (np.zeros if uri == "zeros" else np.ones)(t.shape, dtype=t.dtype)
    if uri == "cast" and argument is not None and hasattr(t, "dtype"):
        inner = _constant(argument)
        try:
            return None if inner is None else convert(inner, t.dtype, "cast", cast=True)
        except FedcError:
            return None
    return None


def _resolve(e: bb.Node, table: dict) -> bb.Node:
    """``e`` with references to the bindings in ``table`` and selections of struct literals followed."""
    for _ in range(len(table) + 1):
        if isinstance(e, bb.Reference) and e.name in table:
            e = table[e.name]
        elif isinstance(e, bb.Selection):
            source = _resolve(e.source, table)
            if not isinstance(source, bb.Struct):
                return e
            e = source.elements[e.resolved_index][1]
        else:
            return e
    return e


def _bindings(node: bb.Node, table: dict) -> bb.Node:
    """The result of nested blocks, their locals added to ``table``."""
    while isinstance(node, bb.Block):
        table.update(node.locals)
        node = node.result
    return node


def _path_into(e: bb.Node, name: str) -> Optional[tuple]:
    """The selection path from the parameter ``name`` to ``e`` (``()`` for the parameter itself)."""
    path: list = []
    while isinstance(e, bb.Selection):
        path.append(e.resolved_index)
        e = e.source
    if isinstance(e, bb.Reference) and e.name == name:
        return tuple(reversed(path))
    return None


class _Securer:
    def __init__(self, computation: agg.CDFComputation, ctx: PassContext, encoding: Encoding, allow_insecure: bool):
        self.computation = computation
        self.ctx = ctx
        self.encoding = encoding
        self.allow_insecure = allow_insecure
        self.names = Names(computation.node)

    def where(self, value: bb.Call) -> tuple[str, object]:
        location = value.location or value.function.location
        return (f" at {location}" if location is not None else ""), location

    def refuse(self, value: bb.Call, why: str) -> None:
        uri = value.function.uri
        if self.allow_insecure:
            self.ctx.stat("aggregations-left-insecure")
            return
        where, location = self.where(value)
        raise FedcError(
            f"@{self.computation.symbol}: {uri}{where} cannot be made secure: {why}; "
            "pass allow-insecure=true to leave it as it is",
            location,
        )

    def fail(self, value: bb.Call, why: str) -> FedcError:
        where, location = self.where(value)
        return FedcError(f"@{self.computation.symbol}: {value.function.uri}{where} {why}", location)

    def run(self) -> Optional[bb.Node]:
        locals, result = list(self.computation.locals), self.computation.result
        defs = dict(locals)
        rebuilt, candidates, changed = [], set(), False
        clipped: list[tuple[str, bb.Node]] = []
        for name, value in locals:
            parts = agg.intrinsic_call_parts(value)
            if parts is None or not value.function.definition.is_federated:
                rebuilt.append((name, value))
                continue
            definition = value.function.definition
            if definition.secure or definition.role not in (Role.AGGREGATION, Role.SELECT):
                rebuilt.append((name, value))
                continue
            member = agg.sum_member(name, value, defs, self.names, known_shapes=False)
            if member is None:
                self.refuse(value, definition.insecure_reason)
                rebuilt.append((name, value))
                continue
            secured = self.secure(member, defs)
            if secured is None:
                rebuilt.append((name, value))
                continue
            new_locals, counts = secured
            rebuilt.extend(new_locals)
            defs.update(new_locals)
            clipped.append((name, counts))
            candidates |= {n.name for n in value.walk() if isinstance(n, bb.Reference)}
            self.ctx.stat("aggregations-secured")
            changed = True
        if not changed:
            return None
        rebuilt, _ = agg.sweep(rebuilt, result, candidates)
        counts_name = self.names.fresh(CLIPPED)
        zipped = agg.call("federated_zip_at_server", bb.Struct(clipped), self.computation.body_location())
        rebuilt.append((counts_name, zipped))
        return self.computation.rebuild(rebuilt, self.with_counts(result, bb.Reference(counts_name, zipped.type_signature)))

    def with_counts(self, result: bb.Node, counts: bb.Node) -> bb.Node:
        """The result with the clip counts as a last element ``secure_clipped`` (``<R, secure_clipped=C>`` for one value)."""
        t = result.type_signature
        if isinstance(t, StructType):
            if CLIPPED in t.names():
                raise FedcError(
                    f"@{self.computation.symbol}: insert-secure-aggregation returns the clip counts as the result's "
                    f"element {CLIPPED}, but the result {t} already has one"
                )
            elements = [(n, agg.select(result, i)) for i, n in enumerate(t.names())]
        else:
            elements = [(None, result)]
        return bb.Struct(elements + [(CLIPPED, counts)])

    # ----------------------------------------------------------------------
    # Ranges: declared by the computation, else from the options

    def declared(self, e: bb.Node, table: dict, base: Optional[Callable] = None) -> Optional[tuple[float, float]]:
        """The range the computation itself gives the value ``e``: a clip with constant bounds, a cast of one,
        a cast of a bool, a constant; ``base(path)`` follows a parameter path to the map that computed it."""
        for _ in range(8):
            e = _resolve(e, table)
            constant = _constant(e)
            if constant is not None:
                if constant.size == 0 or constant.dtype.kind not in "iufb":
                    return None
                values = constant.astype(np.float64)
                return (float(values.min()), float(values.max())) if np.all(np.isfinite(values)) else None
            parts = agg.intrinsic_call_parts(e)
            if parts is not None:
                uri, argument = parts
                if uri == "clip":
                    operands = agg.struct_operands(argument, 3)
                    if operands is None:
                        return None
                    low, high = (_constant(_resolve(o, table)) for o in operands[1:])
                    if low is None or high is None or not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
                        return None
                    return float(np.min(low)), float(np.max(high))
                if uri == "cast" and argument is not None:
                    source = argument.type_signature
                    if isinstance(source, TensorType) and source.dtype.kind == "b":
                        return 0.0, 1.0
                    inner = self.declared(argument, table, base)
                    if inner is None:
                        return None
                    if e.type_signature.dtype.kind in "iu":
                        return float(math.trunc(inner[0])), float(math.trunc(inner[1]))
                    return inner
                return None
            if base is None:
                return None
            followed = base(e)
            if followed is None:
                return None
            e, table, base = followed
        return None

    def follow_map(self, inputs: list, parameter: str, defs: dict) -> Callable:
        """``base(e)`` for the encode lambda: a path into its parameter, followed into the map that computed it."""

        def base(e: bb.Node):
            path = _path_into(e, parameter)
            if path is None:
                return None
            if len(inputs) > 1:
                if not path:
                    return None
                operand, path = inputs[path[0]], path[1:]
            else:
                operand = inputs[0]
            if not isinstance(operand, bb.Reference) or operand.name not in defs:
                return None
            parts = agg.intrinsic_call_parts(defs[operand.name])
            if parts is None or parts[0] not in ("federated_map", "federated_map_all_equal"):
                return None
            operands = agg.struct_operands(parts[1], 2)
            fn = agg.function_value(operands[0], defs) if operands is not None else None
            if not isinstance(fn, bb.Lambda):
                return None
            table: dict = {}
            e = _bindings(fn.result, table)
            for index in path:
                e = _resolve(e, table)
                if not isinstance(e, bb.Struct):
                    return None
                e = _bindings(e.elements[index][1], table)
            return e, table, None

        return base

    def range_of(self, e: bb.Node, t: TensorType, role: Optional[str], table: dict, base: Callable,
                 call: bb.Call, what: str) -> Range:
        """The range leaf ``e`` of type ``t`` is encoded in: declared, the dtype's own, or the options'."""
        encoding = self.encoding
        declared = self.declared(e, table, base)
        counted = declared is None
        if declared is None and t.dtype.kind in "iu":
            info = np.iinfo(t.dtype)
            if int(info.max) - int(info.min) <= encoding.levels:
                declared, counted = (float(info.min), float(info.max)), False
        if declared is None:
            if role == agg.WEIGHT:
                if encoding.weight_clip is None:
                    raise self.fail(call, f"has weights of type {t} with no declared range: give weight-clip=W "
                                    "(weights are clipped to [0, W] and the clipped ones counted), or bound the "
                                    "weights in the computation (clip(w, 0.0, W))")
                declared = (0.0, encoding.weight_clip)
            else:
                if encoding.value_range is None:
                    raise self.fail(call, f"sums {what} of type {t}, which has no declared range: give the range "
                                    "with clip=C (for [-C, C]) or low=L high=H (summands outside it are clipped "
                                    "and counted), or bound the value in the computation (clip(x, low, high))")
                declared = encoding.value_range
        lo, hi = declared
        if role == agg.WEIGHT and lo < 0:  # negative weights count as 0, and are counted
            lo, counted = 0.0, True
        if t.dtype.kind in "iu":
            info = np.iinfo(t.dtype)
            lo, hi = max(math.ceil(lo), int(info.min)), min(math.floor(hi), int(info.max))
            if hi < lo:
                raise self.fail(call, f"sums {what} of type {t} in the range [{declared[0]:g}, {declared[1]:g}], "
                                f"which holds no {t.dtype.name} value")
            width = hi - lo
            if width > encoding.levels:
                kind = "integer weights" if role == agg.WEIGHT else f"{what} (integers)"
                raise self.fail(call, f"has {kind} in [{lo}, {hi}], which need bits >= {width.bit_length()} to be "
                                f"summed exactly, but bits={encoding.bits}; raise bits or narrow the range")
            if lo != 0 and encoding.max_clients * max(abs(lo), abs(hi)) > np.iinfo(np.int64).max:
                raise self.fail(call, f"has {what} in [{lo}, {hi}], whose sum over max-clients="
                                f"{encoding.max_clients} clients does not fit in int64")
        return Range(float(lo), float(hi), counted)

    # ----------------------------------------------------------------------

    def secure(self, member: agg.SumMember, defs: dict) -> Optional[tuple[list, bb.Node]]:
        names, encoding, location = self.names, self.encoding, member.location
        new_locals, value, summands, report = agg.combine_members([member], names, defs, None, location)
        u = summands.type_signature.result
        v = bb.Reference(names.fresh("v"), summands.parameter_type)
        bindings = agg.Bindings(names)
        expression = bindings.flatten(agg.apply_fn(summands, v, names, defs))
        table = dict(bindings.locals)
        zips = [val for _, val in new_locals if agg.intrinsic_call_parts(val) is not None]
        inputs = agg.struct_operands(zips[0].argument, len(zips[0].argument)) if zips else [value]
        base = self.follow_map(inputs, v.name, defs)

        leaves: list[tuple[tuple, Type, bb.Node]] = []
        constants: dict = {}

        def const(value, dtype, base_name: str = "c") -> bb.Node:
            """One named constant per value and dtype in the encoding lambda."""
            key = (float(value), np.dtype(dtype).str)
            if key not in constants:
                constants[key] = bindings.atom(agg.literal(value, dtype), base_name)
            return constants[key]

        def collect(e: bb.Node, t: Type, path: tuple) -> None:
            resolved = _resolve(e, table)
            if isinstance(t, StructType):
                if isinstance(resolved, bb.Struct):
                    e = resolved
                elif not is_atom(e):
                    e = bindings.atom(e, "summands")
                for index, element_type in enumerate(t):
                    collect(agg.select(e, index), element_type, path + (index,))
                return
            if isinstance(resolved, bb.Literal) or is_atom(resolved) or not is_atom(e):
                e = resolved
            leaves.append((path, t, e))

        collect(expression, u, ())
        above: list[bb.Node] = []
        below: list[bb.Node] = []

        def count(x: bb.Node, r: Range, dtype) -> bb.Node:
            """Flags (0 or 1) for a client whose leaf ``x`` has a value above / below ``r``; ``x``, as an atom."""
            if not r.counted:
                return x
            x = bindings.atom(x, "x")
            for flags, uri, bound in ((above, "greater", r.hi), (below, "less", r.lo)):
                outside = agg.op("cast", agg.op(uri, x, const(bound, dtype, "bound")), dtype=encoding.dtype)
                flags.append(agg.op("minimum", agg.op("reduce_sum", outside), const(1, encoding.dtype, "one")))
            return x

        def what(path: tuple) -> str:
            parts, t = [], u
            for index in path:
                name = t.names()[index]
                parts.append(name if name is not None else str(index))
                t = t[index]
            return "its summand" + (f" {'.'.join(parts)}" if parts else "")

        plan, encoded = [], []
        for path, t, e in leaves:
            role, weight_type = _role(u, path)
            constant = _constant(e)
            if constant is not None:
                plan.append(("constant", t, constant))
                continue
            if t.dtype.kind not in "iuf":
                self.refuse(member.call, f"its summand of type {t} is not a real number; only integers and floats are encoded")
                return None
            if t.dtype.kind == "f":
                if role == agg.WEIGHTED_SUM:
                    x, r = self.weighted_product(_resolve(e, table), table, base, member.call, const, count)
                else:
                    x, r = None, self.range_of(e, t, role, table, base, member.call, what(path))
                if x is None:
                    x64 = count(agg.cast_to(e, F64), r, F64)
                    x = agg.op("clip", x64, const(r.lo, F64, "low"), const(r.hi, F64, "high"))
                lo, hi = r.lo, r.hi
                scale = encoding.levels / ((hi - lo) or 1.0)
                shifted = x if lo == 0 else agg.op("subtract", x, const(lo, F64, "low"))
                scaled = agg.op("add", agg.op("multiply", shifted, const(scale, F64, "scale")), const(0.5, F64, "half"))
                plan.append(("float", t, len(encoded), lo, scale))
                encoded.append(agg.op("cast", scaled, dtype=encoding.dtype))
            else:
                r = self.range_of(e, t, role, table, base, member.call, what(path))
                x = agg.op("clip", count(e, r, t.dtype), const(r.lo, t.dtype, "low"), const(r.hi, t.dtype, "high"))
                if r.lo != 0:
                    x = agg.op("subtract", agg.cast_to(x, I64), const(r.lo, I64, "low"))
                plan.append(("int", t, len(encoded), int(r.lo)))
                encoded.append(agg.cast_to(x, encoding.dtype))
        needs_count = any(step[0] in ("constant", "float") or (step[0] == "int" and step[3] != 0) for step in plan)
        if needs_count:
            count_index = len(encoded)
            encoded.append(agg.literal(1, encoding.dtype))
        clip_index = len(encoded) if above else None
        for flags in (above, below):
            if flags:
                combined = flags[0]
                for flag in flags[1:]:
                    combined = agg.op("maximum", combined, flag)
                encoded.append(combined)
        encode_body = bb.Struct(encoded)
        encode_locals, _ = agg.sweep(bindings.locals, encode_body, [n for n, _ in bindings.locals])
        body = bb.Block(encode_locals, encode_body) if encode_locals else encode_body
        encode = bb.Lambda(v.name, v.type_signature, body, location)

        encode_name = names.fresh("encode")
        encoded_name = names.fresh("encoded")
        bitwidth_name = names.fresh("bitwidth")
        sum_name = names.fresh("secure_sum")
        decode_name = names.fresh("decode")
        mapped = agg.call("federated_map", bb.Struct([bb.Reference(encode_name, encode.type_signature), value]), location)
        bitwidth = bb.Literal(np.asarray(encoding.bits, np.int32), None, location)
        secure_sum = agg.recall(
            member.call,
            "federated_secure_sum_bitwidth",
            bb.Struct([bb.Reference(encoded_name, mapped.type_signature), bb.Reference(bitwidth_name, bitwidth.type_signature)]),
        )

        sums_type = secure_sum.type_signature.member
        s = bb.Reference(names.fresh("s"), sums_type)
        decoding = agg.Bindings(names)
        count_node = decoding.atom(bb.Selection(s, index=count_index), "count") if needs_count else None
        clients_cast: dict = {}
        decode_constants: dict = {}

        def clients(dtype) -> bb.Node:
            dtype = np.dtype(dtype)
            if dtype not in clients_cast:
                clients_cast[dtype] = decoding.atom(agg.cast_to(count_node, dtype), "clients")
            return clients_cast[dtype]

        def dconst(value, dtype, base_name: str) -> bb.Node:
            key = (value, np.dtype(dtype).str)
            if key not in decode_constants:
                decode_constants[key] = decoding.atom(agg.literal(value, dtype), base_name)
            return decode_constants[key]

        decoded = {}
        for (path, _, _), step in zip(leaves, plan):
            t = step[1]
            if step[0] == "float":
                _, _, index, lo, scale = step
                y = agg.op("divide", agg.cast_to(bb.Selection(s, index=index), F64), dconst(scale, F64, "scale"))
                if lo != 0:
                    offset = decode_constants.get(("offset", lo))
                    if offset is None:
                        offset = decoding.atom(agg.op("multiply", clients(F64), dconst(lo, F64, "low")), "offset")
                        decode_constants[("offset", lo)] = offset
                    y = agg.op("add", y, offset)
                decoded[path] = agg.cast_to(y, t.dtype)
            elif step[0] == "int":
                _, _, index, lo = step
                y = bb.Selection(s, index=index)
                if lo != 0:
                    offset = decoding.atom(agg.op("multiply", clients(I64), dconst(lo, I64, "low")), "offset")
                    y = agg.op("add", agg.cast_to(y, I64), offset)
                decoded[path] = agg.cast_to(y, t.dtype)
            else:
                constant = step[2]
                if t.shape == () and constant == 1:
                    decoded[path] = clients(t.dtype)
                else:
                    decoded[path] = agg.op("multiply", clients(t.dtype), bb.Literal(constant, t))
        sums = decoding.atom(agg.rebuild_like(u, lambda path, t: decoded[path]), "sums")
        decode_body = decoding.block(agg.apply_fn(report, sums, names, defs))
        decode = bb.Lambda(s.name, sums_type, decode_body, location)
        applied = agg.recall(member.call, "federated_apply", bb.Struct([bb.Reference(decode_name, decode.type_signature), bb.Reference(sum_name, secure_sum.type_signature)]))

        # the clip counts: how many clients had a summand above / below its range
        sums_in = bb.Reference(names.fresh("s"), sums_type)
        if clip_index is None:
            zero = agg.literal(0, COUNT)
            counts_body = bb.Struct([("upper", zero), ("lower", zero)])
        else:
            counts_body = bb.Struct([("upper", agg.cast_to(bb.Selection(sums_in, index=clip_index), COUNT)),
                                     ("lower", agg.cast_to(bb.Selection(sums_in, index=clip_index + 1), COUNT))])
        counts_fn_name = names.fresh("clip_counts")
        counts_fn = bb.Lambda(sums_in.name, sums_type, counts_body, location)
        counts_name = names.fresh(f"{member.name}_clipped")
        counts = agg.call("federated_apply", bb.Struct([bb.Reference(counts_fn_name, counts_fn.type_signature),
                                                         bb.Reference(sum_name, secure_sum.type_signature)]), location)
        return new_locals + [
            (encode_name, encode),
            (encoded_name, mapped),
            (bitwidth_name, bitwidth),
            (sum_name, secure_sum),
            (decode_name, decode),
            (member.name, applied),
            (counts_fn_name, counts_fn),
            (counts_name, counts),
        ], bb.Reference(counts_name, counts.type_signature)

    def weighted_product(self, e: bb.Node, table: dict, base: Callable, call: bb.Call, const, count):
        """``multiply(<x, w>)`` (a weighted value, the weight second) with x and w clipped before multiplying,
        and the range of the product; ``(None, range)`` when ``e`` is not such a product."""
        parts = agg.intrinsic_call_parts(e)
        operands = agg.struct_operands(parts[1], 2) if parts is not None and parts[0] == "multiply" else None
        if operands is None:
            value_range = self.encoding.value_range
            weight = self.encoding.weight_clip
            if value_range is None or weight is None:
                raise self.fail(call, "has a weighted summand that is not a product <value * weight>: give clip=C "
                                "(or low=L high=H) and weight-clip=W for its range")
            lo, hi = value_range
            return None, Range(min(0.0, lo * weight), max(0.0, hi * weight), True)
        x, w = operands
        xr = self.range_of(x, x.type_signature, None, table, base, call, "its weighted values")
        wr = self.range_of(w, w.type_signature, agg.WEIGHT, table, base, call, "its weights")
        x64, w64 = count(agg.cast_to(x, F64), xr, F64), count(agg.cast_to(w, F64), wr, F64)
        x64 = agg.op("clip", x64, const(xr.lo, F64, "low"), const(xr.hi, F64, "high"))
        w64 = agg.op("clip", w64, const(wr.lo, F64, "zero" if wr.lo == 0 else "weight_low"), const(wr.hi, F64, "weight_clip"))
        ends = [a * b for a in (xr.lo, xr.hi) for b in (wr.lo, wr.hi)]
        return agg.op("multiply", x64, w64), Range(min(ends + [0.0]), max(ends + [0.0]), xr.counted or wr.counted)


@register(
    "insert-secure-aggregation",
    options={
        "bits": Option(int, DEFAULTS["bits"], "each encoded client value is an integer in [0, 2**bits - 1] (1..40)"),
        "clip": Option(float, DEFAULTS["clip"], "summands without a declared range are clipped to [-clip, clip]"),
        "low": Option(float, DEFAULTS["low"], "with high: summands without a declared range are clipped to [low, high]"),
        "high": Option(float, DEFAULTS["high"], "with low: the upper end of that range"),
        "weight-clip": Option(float, DEFAULTS["weight-clip"], "weights without a declared range are clipped to [0, weight-clip]"),
        "max-clients": Option(int, DEFAULTS["max-clients"], "the most clients in one round; chooses int32 or int64 sums"),
        "allow-insecure": Option(bool, False, "leave aggregations that cannot be made secure (min, max, select, ...) as they are"),
    },
)
def insert_secure_aggregation(module: Module, ctx: PassContext, **options) -> Module:
    """Rewrites every sum-like aggregation of client values to federated_secure_sum_bitwidth of fixed-point values.

    Sums, means, weighted means and sum-form aggregates: each summand is
    clipped to its range, scaled to an integer in [0, 2**bits - 1], securely
    summed (with a secure count of clients when decoding needs it) and decoded
    at the server before the original report. A summand's range is the one
    the computation declares (a clip with constant bounds, a cast of a bool, a
    constant, a small integer dtype), else the options' (clip or low/high;
    weight-clip for weights): there is no default range. The computation's
    result gains an element secure_clipped: per aggregation, how many clients
    had a summand above (upper) or below (lower) its range. Other aggregations
    (min, max, select, other aggregates) are errors unless allow-insecure=true.
    Needs call-dominant form. The encoding's error bound is in docs/passes.md.
    Statistics: aggregations-secured, aggregations-left-insecure.
    """
    values = dict(DEFAULTS)
    values.update(options)
    encoding = Encoding(values["bits"], values["clip"], values["low"], values["high"], values["weight-clip"],
                        values["max-clients"])
    allow_insecure = bool(values.get("allow-insecure", False))

    def secure(symbol: str, node: bb.Node):
        computation = agg.split(symbol, node)
        if computation.is_local:
            return None
        agg.check_cdf(computation, "insert-secure-aggregation")
        return _Securer(computation, ctx, encoding, allow_insecure).run()

    result = transform_computations(module, secure)
    changed = [s for s in result.symbols if result[s] is not module[s]]
    for symbol, node in result.items():
        for n in node.walk():
            if isinstance(n, bb.SymbolRef) and n.name in changed:
                raise FedcError(
                    f"insert-secure-aggregation: @{n.name}'s result gains the clip counts ({CLIPPED}), but "
                    f"@{symbol} calls @{n.name} and expects its old result; inline it first "
                    "(\"inline,call-dominant,insert-secure-aggregation\")",
                    n.location,
                )
    return result
