"""desugar: mean -> weighted mean -> sum -> aggregate, for backends that only have the later forms.

``desugar{to=weighted_mean}`` rewrites ``federated_mean(x)`` to
``federated_weighted_mean(<x, map(lambda v: 1.0, x)>)``.

``desugar{to=sum}`` rewrites means and weighted means to a sum of per-client
summands and a division at the server (the sum form's summands and report, see
:mod:`fedc.passes.aggregates`): a mean sums ``<sum=v, count=1>`` (a weighted
mean with weight 1, simplified), a weighted mean sums
``<weighted_sum=v*w, weight=w>``; then ``federated_apply`` divides.

``desugar`` (``to=aggregate``, the default) rewrites means, weighted means and
sums to sum-form ``federated_aggregate`` calls (zero = zeros, accumulate adds
the summands, merge = add, report divides), and ``federated_min``/``max`` to
aggregates folding with ``minimum``/``maximum`` from ``+inf``/``-inf`` (the
integer extremes for integers).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from fedc.errors import FedcError
from fedc.ir import building_blocks as bb
from fedc.ir.module import Module
from fedc.limits import SizeError, check_allocation
from fedc.types import FunctionType, StructType, TensorType

from . import aggregates as agg
from .manager import Option, PassContext, register
from .util import Names, transform_computations

LEVELS = ("weighted_mean", "sum", "aggregate")
STAT = {
    "federated_mean": "means-desugared",
    "federated_weighted_mean": "weighted-means-desugared",
    "federated_sum": "sums-desugared",
    "federated_min": "min-max-desugared",
    "federated_max": "min-max-desugared",
}


class _Desugarer:
    def __init__(self, computation: agg.CDFComputation, ctx: PassContext, to: str):
        self.computation = computation
        self.ctx = ctx
        self.to = to
        self.names = Names(computation.node)

    def fail(self, value: bb.Call, why: str) -> FedcError:
        location = value.location or value.function.location
        where = f" at {location}" if location is not None else ""
        return FedcError(
            f"@{self.computation.symbol}: cannot desugar {value.function.uri}{where} "
            f"of {value.argument.type_signature} to an aggregate: {why}",
            location,
        )

    def run(self) -> Optional[bb.Node]:
        locals, result = list(self.computation.locals), self.computation.result
        defs = dict(locals)
        rebuilt, candidates, changed = [], set(), False
        for name, value in locals:
            parts = agg.intrinsic_call_parts(value)
            new_locals = None if parts is None else self.desugar(name, value, parts[0], defs)
            if new_locals is None:
                rebuilt.append((name, value))
                continue
            rebuilt.extend(new_locals)
            defs.update(new_locals)
            candidates |= {n.name for n in value.walk() if isinstance(n, bb.Reference)}
            self.ctx.stat(STAT[parts[0]])
            changed = True
        if not changed:
            return None
        rebuilt, _ = agg.sweep(rebuilt, result, candidates)
        return self.computation.rebuild(rebuilt, result)

    def desugar(self, name: str, value: bb.Call, uri: str, defs: dict) -> Optional[list]:
        to = self.to
        if uri == "federated_mean" and to == "weighted_mean":
            return self.weighted_mean(name, value)
        if uri in ("federated_mean", "federated_weighted_mean") and to == "sum":
            return self.to_sum(name, value, defs)
        if uri in ("federated_mean", "federated_weighted_mean", "federated_sum") and to == "aggregate":
            member = agg.sum_member(name, value, defs, self.names)
            if member is None:
                raise self.fail(value, "the aggregate's zero needs numeric tensors with fully known shapes")
            new_locals, operand, summands, report = agg.combine_members([member], self.names, defs, None, value.location)
            scope = dict(defs)
            scope.update(new_locals)
            agg_locals, aggregate = agg.build_sum_aggregate(operand, summands, report, self.names, scope, value.location, value)
            return new_locals + agg_locals + [(name, aggregate)]
        if uri in ("federated_min", "federated_max") and to == "aggregate":
            return self.extremum(name, value, uri)
        return None

    def weighted_mean(self, name: str, value: bb.Call) -> list:
        names, location = self.names, value.location
        x = value.argument
        v = bb.Reference(names.fresh("v"), x.type_signature.member)
        one = bb.Lambda(v.name, v.type_signature, agg.literal(1.0, np.float32), location)
        one_name, ones_name = names.fresh("one"), names.fresh("ones")
        ones = agg.call("federated_map", bb.Struct([bb.Reference(one_name, one.type_signature), x]), location)
        weighted = agg.recall(value, "federated_weighted_mean", bb.Struct([x, bb.Reference(ones_name, ones.type_signature)]))
        return [(one_name, one), (ones_name, ones), (name, weighted)]

    def to_sum(self, name: str, value: bb.Call, defs: dict) -> Optional[list]:
        names, location = self.names, value.location
        member = agg.sum_member(name, value, defs, names, known_shapes=False)
        if member is None:
            return None
        new_locals, operand, summands, report = agg.combine_members([member], names, defs, None, location)
        summands_fn, summands_name = names.fresh("summands_fn"), names.fresh("summands")
        mapped = agg.call("federated_map", bb.Struct([bb.Reference(summands_fn, summands.type_signature), operand]), location)
        sums_name = names.fresh("sums")
        sums = agg.call("federated_sum", bb.Reference(summands_name, mapped.type_signature), location)
        report_name = names.fresh("report")
        applied = agg.recall(
            value,
            "federated_apply",
            bb.Struct([bb.Reference(report_name, report.type_signature), bb.Reference(sums_name, sums.type_signature)]),
        )
        return new_locals + [
            (summands_fn, summands),
            (summands_name, mapped),
            (sums_name, sums),
            (report_name, report),
            (name, applied),
        ]

    def extremum(self, name: str, value: bb.Call, uri: str) -> list:
        names, location = self.names, value.location
        x = value.argument
        t = x.type_signature.member
        leaves = agg.tensor_leaves(t)
        if not all(isinstance(leaf, TensorType) and leaf.is_fully_defined() for _, leaf in leaves):
            raise self.fail(value, "the aggregate's zero needs tensors with fully known shapes")
        is_max = uri == "federated_max"
        new_locals = []
        starts: dict = {}

        def start(path, leaf):
            if leaf not in starts:
                dtype = leaf.dtype
                if dtype.kind == "f":
                    extreme = -np.inf if is_max else np.inf
                else:
                    extreme = np.iinfo(dtype).min if is_max else np.iinfo(dtype).max
                try:
                    check_allocation(leaf.shape, dtype.itemsize, f"the zero of {uri}")
                except SizeError as e:
                    raise self.fail(value, e.message) from None
                literal = bb.Literal(np.full(leaf.shape, extreme, dtype=dtype), leaf, location)
                start_name = names.fresh("lowest" if is_max else "highest")
                new_locals.append((start_name, literal))
                starts[leaf] = bb.Reference(start_name, leaf)
            return starts[leaf]

        zero = agg.rebuild_like(t, start)
        op_uri = "maximum" if is_max else "minimum"
        a = bb.Reference(names.fresh("a"), StructType([t, t]))
        accumulate = bb.Lambda(a.name, a.type_signature, agg.op(op_uri, bb.Selection(a, index=0), bb.Selection(a, index=1)), location)
        merge = bb.Intrinsic(op_uri, FunctionType(StructType([t, t]), t), None, location)
        s = bb.Reference(names.fresh("s"), t)
        report = bb.Lambda(s.name, t, s, location)
        accumulate_name, merge_name, report_name = names.fresh("accumulate"), names.fresh("merge"), names.fresh("report")
        new_locals += [(accumulate_name, accumulate), (merge_name, merge), (report_name, report)]
        argument = bb.Struct(
            [
                x,
                zero,
                bb.Reference(accumulate_name, accumulate.type_signature),
                bb.Reference(merge_name, merge.type_signature),
                bb.Reference(report_name, report.type_signature),
            ]
        )
        return new_locals + [(name, agg.recall(value, "federated_aggregate", argument))]


@register("desugar", options={"to": Option(str, "aggregate", "stop at: weighted_mean, sum or aggregate (the default)")})
def desugar(module: Module, ctx: PassContext, to: str = "aggregate") -> Module:
    """Desugars mean -> weighted mean -> sum -> aggregate (and min/max -> aggregate); to= stops early.

    to=weighted_mean: means become weighted means with weight 1. to=sum: means
    and weighted means become a sum of <value*weight, weight> (<value, 1> for
    means) and a division at the server. to=aggregate: means, weighted means
    and sums become sum-form federated_aggregate calls, min/max aggregates of
    minimum/maximum from +inf/-inf. Needs call-dominant form. Statistics:
    means-desugared, weighted-means-desugared, sums-desugared, min-max-desugared.
    """
    level = to.replace("-", "_")
    if level not in LEVELS:
        raise FedcError(f"desugar: option to must be one of {', '.join(LEVELS)}, not {to!r}")

    def run(symbol: str, node: bb.Node):
        computation = agg.split(symbol, node)
        if computation.is_local:
            return None
        agg.check_cdf(computation, "desugar")
        return _Desugarer(computation, ctx, level).run()

    return transform_computations(module, run)
