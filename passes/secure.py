"""insert-secure-aggregation: sums of client values become secure sums of fixed-point integers.

Every aggregation of client values to the server that is a sum underneath —
``federated_sum``, ``federated_mean``, ``federated_weighted_mean`` and
sum-form ``federated_aggregate`` calls (see :mod:`fedc.passes.aggregates`) —
is rewritten to::

    %encode     = fedc.lambda(%v: T) -> <E,...,E> { clip, scale, round each summand }
    %encoded    = fed.map(%encode, %x)
    %bitwidth   = fedc.constant BITS : int32
    %secure_sum = fed.secure_sum_bitwidth(%encoded, %bitwidth)
    %decode     = fedc.lambda(%s: <E,...,E>) -> R { undo scale and offset; the original report }
    %result     = fed.apply(%decode, %secure_sum)

The encoding and its error bound are documented in ``docs/passes.md``
("Secure aggregation"). Aggregations that are not sums (min, max, select, an
aggregate whose accumulate is not a sum) are errors unless
``allow-insecure=true``.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from fedc.errors import FedcError
from fedc.ir import building_blocks as bb
from fedc.ir.intrinsics import Role
from fedc.ir.module import Module
from fedc.limits import check_allocation
from fedc.types import StructType, Type

from . import aggregates as agg
from .manager import Option, PassContext, register
from .util import Names, is_atom, transform_computations

F64 = np.dtype(np.float64)
MAX_BITS = 40
EXACT_FLOAT64 = 2**53


DEFAULTS = {"bits": 20, "clip": 1.0, "weight-clip": 1.0, "max-clients": 65536}


class Encoding:
    """The fixed-point encoding the options choose, checked.

    A float in ``[lo, hi]`` becomes the integer ``floor((x - lo) * scale + 0.5)``
    in ``[0, 2**bits - 1]`` with ``scale = (2**bits - 1) / (hi - lo)``; the
    server decodes a sum ``S`` of ``N`` of them as ``S / scale + N * lo``.
    Integers travel as ``int32`` when ``max_clients * (2**bits - 1)`` fits in
    it, else as ``int64``; beyond ``2**53`` the sum would not convert to float64
    exactly, so that is an error.
    """

    def __init__(self, bits: int, clip: float, weight_clip: float, max_clients: int):
        def bad(message: str) -> FedcError:
            return FedcError(f"insert-secure-aggregation: {message}")

        if not 1 <= bits <= MAX_BITS:
            raise bad(f"bits must be between 1 and {MAX_BITS}, not {bits}")
        for option, value in (("clip", clip), ("weight-clip", weight_clip)):
            if not (math.isfinite(value) and value > 0):
                raise bad(f"{option} must be a positive finite number, not {value}")
        if max_clients < 1:
            raise bad(f"max-clients must be at least 1, not {max_clients}")
        self.bits, self.clip, self.weight_clip, self.max_clients = bits, float(clip), float(weight_clip), max_clients
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

    def float_range(self, role: Optional[str], weight_bound: float) -> tuple[float, float]:
        if role == agg.WEIGHT:
            return 0.0, weight_bound
        if role == agg.WEIGHTED_SUM:
            return -self.clip * weight_bound, self.clip * weight_bound
        return -self.clip, self.clip

    def int_bound(self, role: Optional[str], dtype: np.dtype) -> int:
        bound = min(self.levels, int(np.iinfo(dtype).max))
        if role == agg.WEIGHT:
            bound = min(bound, int(math.floor(self.weight_clip)))
        return bound

    def weight_bound(self, weight_type: Optional[Type]) -> float:
        """The upper clip of a weight: weight-clip (its floor for integer weights, which must fit in bits)."""
        if weight_type is not None and weight_type.dtype.kind in "iu":
            return float(min(math.floor(self.weight_clip), self.levels, int(np.iinfo(weight_type.dtype).max)))
        return self.weight_clip


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
        return None if inner is None else inner.astype(t.dtype)
    return None


class _Securer:
    def __init__(self, computation: agg.CDFComputation, ctx: PassContext, encoding: Encoding, allow_insecure: bool):
        self.computation = computation
        self.ctx = ctx
        self.encoding = encoding
        self.allow_insecure = allow_insecure
        self.names = Names(computation.node)

    def refuse(self, value: bb.Call, why: str) -> None:
        uri = value.function.uri
        if self.allow_insecure:
            self.ctx.stat("aggregations-left-insecure")
            return
        location = value.location or value.function.location
        where = f" at {location}" if location is not None else ""
        raise FedcError(
            f"@{self.computation.symbol}: {uri}{where} cannot be made secure: {why}; "
            "pass allow-insecure=true to leave it as it is",
            location,
        )

    def check_integer_weights(self, weight_type: Optional[Type], value: bb.Call) -> None:
        """Integer weights up to weight-clip must fit in bits: clipping them silently would change the mean."""
        encoding = self.encoding
        if weight_type is None or weight_type.dtype.kind not in "iu":
            return
        largest = int(math.floor(encoding.weight_clip))
        if largest <= encoding.levels:
            return
        location = value.location or value.function.location
        where = f" at {location}" if location is not None else ""
        raise FedcError(
            f"@{self.computation.symbol}: {value.function.uri}{where} has integer weights up to "
            f"weight-clip={encoding.weight_clip:g}, which need bits >= {largest.bit_length()} to be summed "
            f"exactly, but bits={encoding.bits}; raise bits or lower weight-clip",
            location,
        )

    def run(self) -> Optional[bb.Node]:
        locals, result = list(self.computation.locals), self.computation.result
        defs = dict(locals)
        rebuilt, candidates, changed = [], set(), False
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
            new_locals = self.secure(member, defs)
            if new_locals is None:
                rebuilt.append((name, value))
                continue
            rebuilt.extend(new_locals)
            defs.update(new_locals)
            candidates |= {n.name for n in value.walk() if isinstance(n, bb.Reference)}
            self.ctx.stat("aggregations-secured")
            changed = True
        if not changed:
            return None
        rebuilt, _ = agg.sweep(rebuilt, result, candidates)
        return self.computation.rebuild(rebuilt, result)

    def secure(self, member: agg.SumMember, defs: dict) -> Optional[list]:
        names, encoding, location = self.names, self.encoding, member.location
        new_locals, value, summands, report = agg.combine_members([member], names, defs, None, location)
        u = summands.type_signature.result
        v = bb.Reference(names.fresh("v"), summands.parameter_type)
        bindings = agg.Bindings(names)
        expression = bindings.flatten(agg.apply_fn(summands, v, names, defs))
        table = dict(bindings.locals)

        def resolve(e: bb.Node) -> bb.Node:
            for _ in range(len(table) + 1):
                if isinstance(e, bb.Reference) and e.name in table:
                    e = table[e.name]
                elif isinstance(e, bb.Selection):
                    source = resolve(e.source)
                    if not isinstance(source, bb.Struct):
                        return e
                    e = source.elements[e.resolved_index][1]
                else:
                    return e
            return e

        leaves: list[tuple[tuple, Type, bb.Node]] = []
        constants: dict = {}

        def const(value, dtype, base: str = "c") -> bb.Node:
            """One named constant per value and dtype in the encoding lambda."""
            key = (float(value), np.dtype(dtype).str)
            if key not in constants:
                constants[key] = bindings.atom(agg.literal(value, dtype), base)
            return constants[key]

        def collect(e: bb.Node, t: Type, path: tuple) -> None:
            resolved = resolve(e)
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
        plan, encoded = [], []
        for path, t, e in leaves:
            role, weight_type = _role(u, path)
            if role == agg.WEIGHT and t.dtype.kind in "iu":
                self.check_integer_weights(t, member.call)
            elif role == agg.WEIGHTED_SUM:
                self.check_integer_weights(weight_type, member.call)
            constant = _constant(e)
            if constant is not None:
                plan.append(("constant", t, constant))
                continue
            if t.dtype.kind == "f":
                weight_bound = encoding.weight_bound(weight_type)
                lo, hi = encoding.float_range(role, weight_bound)
                x = self.clipped_product(resolve(e), weight_bound, const) if role == agg.WEIGHTED_SUM else None
                if x is None:
                    x = agg.op("clip", agg.cast_to(e, F64), const(lo, F64, "low"), const(hi, F64, "high"))
                scale = encoding.levels / (hi - lo)
                shifted = x if lo == 0 else agg.op("subtract", x, const(lo, F64, "low"))
                scaled = agg.op("add", agg.op("multiply", shifted, const(scale, F64, "scale")), const(0.5, F64, "half"))
                plan.append(("float", t, len(encoded), lo, scale))
                encoded.append(agg.op("cast", scaled, dtype=encoding.dtype))
            elif t.dtype.kind in "iu":
                bound = encoding.int_bound(role, t.dtype)
                x = agg.op("clip", e, const(0, t.dtype, "low"), const(bound, t.dtype, "high"))
                plan.append(("int", t, len(encoded)))
                encoded.append(agg.cast_to(x, encoding.dtype))
            else:
                self.refuse(member.call, f"its summand of type {t} is not a real number; only integers and floats are encoded")
                return None
        needs_count = any(step[0] in ("constant", "float") for step in plan)
        if needs_count:
            encoded.append(agg.literal(1, encoding.dtype))
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
        count = decoding.atom(bb.Selection(s, index=len(encoded) - 1), "count") if needs_count else None
        clients64 = []
        decode_constants: dict = {}

        def float_clients() -> bb.Node:
            if not clients64:
                clients64.append(decoding.atom(agg.cast_to(count, F64), "clients"))
            return clients64[0]

        def dconst(value, base: str) -> bb.Node:
            if value not in decode_constants:
                decode_constants[value] = decoding.atom(agg.literal(value, F64), base)
            return decode_constants[value]

        decoded = {}
        for (path, _, _), step in zip(leaves, plan):
            t = step[1]
            if step[0] == "float":
                _, _, index, lo, scale = step
                y = agg.op("divide", agg.cast_to(bb.Selection(s, index=index), F64), dconst(scale, "scale"))
                if lo != 0:
                    offset = decode_constants.get(("offset", lo))
                    if offset is None:
                        offset = decoding.atom(agg.op("multiply", float_clients(), dconst(lo, "low")), "offset")
                        decode_constants[("offset", lo)] = offset
                    y = agg.op("add", y, offset)
                decoded[path] = agg.cast_to(y, t.dtype)
            elif step[0] == "int":
                decoded[path] = agg.cast_to(bb.Selection(s, index=step[2]), t.dtype)
            else:
                constant = step[2]
                clients = agg.cast_to(count, t.dtype)
                if t.shape == () and constant == 1:
                    decoded[path] = clients
                else:
                    decoded[path] = agg.op("multiply", clients, bb.Literal(constant, t))
        sums = decoding.atom(agg.rebuild_like(u, lambda path, t: decoded[path]), "sums")
        decode_body = decoding.block(agg.apply_fn(report, sums, names, defs))
        decode = bb.Lambda(s.name, sums_type, decode_body, location)
        applied = agg.recall(member.call, "federated_apply", bb.Struct([bb.Reference(decode_name, decode.type_signature), bb.Reference(sum_name, secure_sum.type_signature)]))
        return new_locals + [
            (encode_name, encode),
            (encoded_name, mapped),
            (bitwidth_name, bitwidth),
            (sum_name, secure_sum),
            (decode_name, decode),
            (member.name, applied),
        ]

    def clipped_product(self, e: bb.Node, weight_bound: float, const) -> Optional[bb.Node]:
        """``multiply(<x, w>)`` (a weighted value, the weight second) with x and w clipped before multiplying."""
        parts = agg.intrinsic_call_parts(e)
        if parts is None or parts[0] != "multiply":
            return None
        operands = agg.struct_operands(parts[1], 2)
        if operands is None:
            return None
        x, w = operands
        clip = self.encoding.clip
        x = agg.op("clip", agg.cast_to(x, F64), const(-clip, F64, "low"), const(clip, F64, "high"))
        w = agg.op("clip", agg.cast_to(w, F64), const(0.0, F64, "zero"), const(weight_bound, F64, "weight_clip"))
        return agg.op("multiply", x, w)


@register(
    "insert-secure-aggregation",
    options={
        "bits": Option(int, DEFAULTS["bits"], "each encoded client value is an integer in [0, 2**bits - 1] (1..40)"),
        "clip": Option(float, DEFAULTS["clip"], "floating-point summands are clipped to [-clip, clip]"),
        "weight-clip": Option(float, DEFAULTS["weight-clip"], "weights of weighted means are clipped to [0, weight-clip]"),
        "max-clients": Option(int, DEFAULTS["max-clients"], "the most clients in one round; chooses int32 or int64 sums"),
        "allow-insecure": Option(bool, False, "leave aggregations that cannot be made secure (min, max, select, ...) as they are"),
    },
)
def insert_secure_aggregation(module: Module, ctx: PassContext, **options) -> Module:
    """Rewrites every sum-like aggregation of client values to federated_secure_sum_bitwidth of fixed-point values.

    Sums, means, weighted means and sum-form aggregates: each summand is
    clipped, scaled to an integer in [0, 2**bits - 1], securely summed (with a
    secure count of clients when decoding needs it) and decoded at the server
    before the original report. Other aggregations (min, max, select, other
    aggregates) are errors unless allow-insecure=true. Needs call-dominant
    form. The encoding's error bound is in docs/passes.md. Statistics:
    aggregations-secured, aggregations-left-insecure.
    """
    values = dict(DEFAULTS)
    values.update(options)
    encoding = Encoding(values["bits"], values["clip"], values["weight-clip"], values["max-clients"])
    allow_insecure = bool(values.get("allow-insecure", False))

    def secure(symbol: str, node: bb.Node):
        computation = agg.split(symbol, node)
        if computation.is_local:
            return None
        agg.check_cdf(computation, "insert-secure-aggregation")
        return _Securer(computation, ctx, encoding, allow_insecure).run()

    return transform_computations(module, secure)
