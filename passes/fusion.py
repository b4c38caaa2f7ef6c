"""Fusion passes: fuse-maps (map of a map) and fuse-map-mean (maps into aggregations, aggregations together).

``fuse-maps`` composes a map with the map that produces its only input::

    %a = fed.map(%f, %x)          // %a used only here
    %b = fed.map(%g, %a)    ==>   %f_g = fedc.lambda(%p) { g(f(%p)) }
                                  %b = fed.map(%f_g, %x)

for ``federated_map``, ``federated_map_all_equal``, ``federated_apply`` and
``sequence_map`` (also nested directly, and inside local lambda bodies).

``fuse-map-mean`` rewrites sums, means and weighted means (and sum-form
aggregates, see :mod:`fedc.passes.aggregates`) whose client input is a map
used by nothing else into one ``federated_aggregate`` whose accumulate applies
the mapped function, so the mapped value is never materialised; then it merges
aggregations whose inputs do not depend on each other's results into one
aggregation of a struct (one communication round), selecting each result back
out with ``federated_apply``.
"""

from __future__ import annotations

from typing import Optional

from fedc.ir import building_blocks as bb
from fedc.ir.module import Module
from fedc.ir.transform import with_children
from fedc.types import StructType

from . import aggregates as agg
from .manager import PassContext, register
from .util import Names, transform_computations

MAP_INTRINSICS = ("federated_map", "federated_map_all_equal", "federated_apply", "sequence_map")


def _map_parts(value: bb.Node, uris=MAP_INTRINSICS) -> Optional[tuple[str, bb.Node, bb.Node]]:
    """``(uri, function operand, mapped operand)`` of a map-like call."""
    parts = agg.intrinsic_call_parts(value)
    if parts is None or parts[0] not in uris:
        return None
    operands = agg.struct_operands(parts[1], 2)
    if operands is None:
        return None
    return parts[0], operands[0], operands[1]


def _all_block_locals(node: bb.Node) -> dict:
    defs = {}
    for n in node.walk():
        if isinstance(n, bb.Block):
            defs.update(n.locals)
    return defs


# --------------------------------------------------------------------------
# fuse-maps


class _MapFuser:
    def __init__(self, root: bb.Node, ctx: PassContext):
        self.names = Names(root)
        self.defs = _all_block_locals(root)
        self.ctx = ctx
        self.fused = 0

    def compose(self, f: bb.Node, g: bb.Node, location) -> bb.Lambda:
        """``lambda p: g(f(p))`` with both functions applied by substitution where they are lambdas."""
        parameter_type = f.type_signature.parameter
        resolved = agg.function_value(f, self.defs)
        base = resolved.parameter_name if isinstance(resolved, bb.Lambda) and resolved.parameter_name else "x"
        p = bb.Reference(self.names.fresh(base), parameter_type)
        bindings = agg.Bindings(self.names)
        inner = bindings.atom(agg.apply_fn(f, p, self.names, self.defs), "y")
        outer = agg.apply_fn(g, inner, self.names, self.defs)
        return bb.Lambda(p.name, parameter_type, bindings.block(outer), location)

    def visit(self, node: bb.Node, orchestration: bool) -> bb.Node:
        if isinstance(node, bb.Block):
            return self.block(node, orchestration)
        if isinstance(node, bb.Lambda):
            inner = orchestration and node.type_signature.is_placed
            result = self.visit(node.result, inner)
            return node if result is node.result else bb.Lambda(node.parameter_name, node.parameter_type, result, node.location)
        children = list(node.children())
        if children:
            node = with_children(node, [self.visit(c, orchestration) for c in children])
        return self.nested(node)

    def nested(self, node: bb.Node) -> bb.Node:
        """``map(g, map(f, x))`` written as one expression."""
        outer = _map_parts(node)
        if outer is None:
            return node
        uri, g, value = outer
        inner = _map_parts(value, (uri,))
        if inner is None:
            return node
        _, f, x = inner
        composed = self.compose(f, g, node.location)
        self.fused += 1
        return agg.recall(node, uri, bb.Struct([composed, x]))

    def block(self, node: bb.Block, orchestration: bool) -> bb.Node:
        locals = [(name, self.visit(value, orchestration)) for name, value in node.locals]
        result = self.visit(node.result, orchestration)
        self.defs.update(locals)
        candidates: set[str] = set()
        index = 0
        while index < len(locals):
            name, value = locals[index]
            outer = _map_parts(value)
            index += 1
            if outer is None or not isinstance(outer[2], bb.Reference):
                continue
            uri, g, source = outer
            producer = next((i for i, (n, _) in enumerate(locals) if n == source.name), None)
            if producer is None:
                continue
            inner = _map_parts(locals[producer][1], (uri,))
            uses = agg.reference_uses([v for _, v in locals] + [result])
            if inner is None or uses.get(source.name, 0) != 1:
                continue
            _, f, x = inner
            composed = self.compose(f, g, value.location)
            candidates |= {n.name for op in (f, g) for n in op.walk() if isinstance(n, bb.Reference)}
            position = index - 1
            if orchestration:
                parts = [op.name for op in (f, g) if isinstance(op, (bb.Reference, bb.SymbolRef))]
                fn_name = self.names.fresh("_".join(parts) if len(parts) == 2 else "fused")
                self.defs[fn_name] = composed
                operand = bb.Reference(fn_name, composed.type_signature)
                fused = agg.recall(value, uri, bb.Struct([operand, x]))
                locals[position:position + 1] = [(fn_name, composed), (name, fused)]
                index += 1
            else:
                fused = agg.recall(value, uri, bb.Struct([composed, x]))
                locals[position] = (name, fused)
            self.defs[name] = fused
            del locals[producer]
            index -= 1
            self.fused += 1
        if candidates:
            locals, _ = agg.sweep(locals, result, candidates)
        if not self.fused and all(a is b for (_, a), (_, b) in zip(locals, node.locals)) and result is node.result:
            return node
        return bb.Block(locals, result, node.location) if locals else result


@register("fuse-maps")
def fuse_maps(module: Module, ctx: PassContext) -> Module:
    """Composes a map with the map producing its only input: map(g, map(f, x)) -> map(g.f, x).

    Also for federated_apply, federated_map_all_equal and sequence_map (in local lambdas too).
    The composition is a new local lambda applying f, then g. Statistic: maps-fused.
    """

    def fuse(symbol: str, node: bb.Node):
        fuser = _MapFuser(node, ctx)
        result = fuser.visit(node, True)
        if not fuser.fused:
            return None
        ctx.stat("maps-fused", fuser.fused)
        return result

    return transform_computations(module, fuse)


# --------------------------------------------------------------------------
# fuse-map-mean


class _GeneralMember:
    """A federated_aggregate that is not a sum: merged with others of its kind, struct-wise."""

    def __init__(self, name: str, call: bb.Call, operands: list):
        self.name = name
        self.call = call
        self.inputs = [operands[0]]
        self.zero, self.accumulate, self.merge, self.report = operands[1:]

    @property
    def location(self):
        return self.call.location


def _acyclic(direct: dict, group_of: dict) -> bool:
    """Whether contracting each group of members to one node leaves the dependency graph acyclic."""

    def node(n):
        return ("group", group_of[n]) if n in group_of else n

    edges: dict = {}
    for n, deps in direct.items():
        for d in deps:
            a, b = node(n), node(d)
            if a == b:
                if n != d:
                    return False
                continue
            edges.setdefault(a, set()).add(b)
    state: dict = {}
    for start in list(edges):
        if state.get(start):
            continue
        stack = [(start, iter(edges.get(start, ())))]
        state[start] = 1
        while stack:
            current, successors = stack[-1]
            for succ in successors:
                if state.get(succ) == 1:
                    return False
                if not state.get(succ):
                    state[succ] = 1
                    stack.append((succ, iter(edges.get(succ, ()))))
                    break
            else:
                state[current] = 2
                stack.pop()
    return True


class _MapMeanFuser:
    def __init__(self, computation: agg.CDFComputation, ctx: PassContext):
        self.computation = computation
        self.names = Names(computation.node)
        self.ctx = ctx

    def run(self) -> Optional[bb.Node]:
        locals, result = list(self.computation.locals), self.computation.result
        changed = False
        for _ in range(len(locals) + 1):
            step = self.step(locals, result)
            if step is None:
                break
            locals, changed = step, True
        return self.computation.rebuild(locals, result) if changed else None

    def members(self, locals: list, defs: dict) -> list:
        found = []
        for name, value in locals:
            member = agg.sum_member(name, value, defs, self.names)
            if member is not None:
                found.append(("sum", member))
                continue
            parts = agg.intrinsic_call_parts(value)
            if parts is not None and parts[0] == "federated_aggregate":
                operands = agg.struct_operands(parts[1], 5)
                if operands is not None:
                    found.append(("general", _GeneralMember(name, value, operands)))
        return found

    def groups(self, locals: list, members: list) -> list:
        direct = agg.local_dependencies(locals)
        group_of: dict = {}
        groups: list = []
        for kind, member in members:
            for gid, (group_kind, group) in enumerate(groups):
                if group_kind != kind:
                    continue
                trial = dict(group_of)
                trial[member.name] = gid
                if _acyclic(direct, trial):
                    group_of = trial
                    group.append(member)
                    break
            else:
                group_of[member.name] = len(groups)
                groups.append((kind, [member]))
        return groups

    def folds(self, group: list, defs: dict, uses: dict, taken: set) -> dict:
        """The maps the group can compute itself: every use of each is a group input or another such map.

        name -> (function operand, mapped operand).
        """
        maps: dict[str, tuple] = {}
        pending = [o for m in group for o in m.inputs]
        while pending:
            operand = pending.pop()
            if not isinstance(operand, bb.Reference) or operand.name in maps or operand.name in taken:
                continue
            parts = _map_parts(defs.get(operand.name), ("federated_map", "federated_map_all_equal"))
            if parts is None:
                continue
            maps[operand.name] = (parts[1], parts[2])
            pending.append(parts[2])
        while True:
            from_group: dict[str, int] = {}
            for operand in [o for m in group for o in m.inputs] + [mapped for _, mapped in maps.values()]:
                if isinstance(operand, bb.Reference):
                    from_group[operand.name] = from_group.get(operand.name, 0) + 1
            keep = {n: v for n, v in maps.items() if uses.get(n, 0) == from_group.get(n, 0)}
            if len(keep) == len(maps):
                return maps
            maps = keep

    def step(self, locals: list, result: bb.Node) -> Optional[list]:
        defs = dict(locals)
        uses = agg.reference_uses([v for _, v in locals] + [result])
        taken: set[str] = set()
        replacements: dict[str, list] = {}  # name of a group's last member -> new locals
        removed: set[str] = set()
        position = {name: i for i, (name, _) in enumerate(locals)}
        for kind, group in self.groups(locals, self.members(locals, defs)):
            folds = self.folds(group, defs, uses, taken)
            if len(group) == 1 and not folds:
                continue
            taken |= set(folds)
            last = max(group, key=lambda m: position[m.name])
            location = last.location
            if kind == "sum":
                new_locals = self.build_sum(group, folds, defs, location)
            else:
                new_locals = self.build_general(group, folds, defs, location)
            replacements[last.name] = new_locals
            removed |= {m.name for m in group} | set(folds)
            if folds:
                self.ctx.stat("maps-fused-into-aggregates", len(folds))
            if len(group) > 1:
                self.ctx.stat("aggregations-merged", len(group) - 1)
        if not replacements:
            return None
        rebuilt, candidates = [], set()
        for name, value in locals:
            if name in replacements:
                rebuilt.extend(replacements[name])
            if name in removed:
                candidates |= {n.name for n in value.walk() if isinstance(n, bb.Reference)}
                continue
            rebuilt.append((name, value))
        rebuilt = agg.topological_order(rebuilt)
        rebuilt, _ = agg.sweep(rebuilt, result, candidates)
        return rebuilt

    def build_sum(self, group: list, folds: dict, defs: dict, location) -> list:
        names = self.names
        new_locals, value, summands, report = agg.combine_members(group, names, defs, folds, location)
        scope = dict(defs)
        scope.update(new_locals)
        if len(group) == 1:
            agg_locals, aggregate = agg.build_sum_aggregate(value, summands, report, names, scope, location, group[0].call)
            return new_locals + agg_locals + [(group[0].name, aggregate)]
        agg_locals, aggregate = agg.build_sum_aggregate(value, summands, report, names, scope, location)
        return new_locals + agg_locals + self.select_out(group, aggregate, location)

    def select_out(self, group: list, aggregate: bb.Call, location) -> list:
        """Binds the merged aggregate, then each member's name to its element (federated_apply)."""
        names = self.names
        aggregate_name = names.fresh("aggregate")
        out = [(aggregate_name, aggregate)]
        merged = bb.Reference(aggregate_name, aggregate.type_signature)
        results = aggregate.type_signature.member
        for index, member in enumerate(group):
            p = bb.Reference(names.fresh("p"), results)
            selector = bb.Lambda(p.name, results, bb.Selection(p, index=index), member.location)
            selector_name = names.fresh("select")
            out.append((selector_name, selector))
            applied = agg.recall(member.call, "federated_apply", bb.Struct([bb.Reference(selector_name, selector.type_signature), merged]))
            out.append((member.name, applied))
        return out

    def build_general(self, group: list, folds: dict, defs: dict, location) -> list:
        names = self.names
        inputs = agg.Inputs([m.inputs for m in group], names, folds, location)
        new_locals, value = list(inputs.new_locals), inputs.value
        t = value.type_signature.member
        single = len(group) == 1
        zero = group[0].zero if single else bb.Struct([m.zero for m in group])
        u = zero.type_signature
        a = bb.Reference(names.fresh("a"), StructType([u, t]))
        bindings = agg.Bindings(names)
        values = inputs.values(bb.Selection(a, index=1), bindings, names, defs)
        parts = []
        for index, member in enumerate(group):
            accumulator = bb.Selection(a, index=0) if single else bb.Selection(bb.Selection(a, index=0), index=index)
            argument = bb.Struct([accumulator, values[member.inputs[0]]])
            parts.append(bindings.atom(agg.apply_fn(member.accumulate, argument, names, defs), "accumulated"))
        accumulate = bb.Lambda(a.name, a.type_signature, bindings.block(parts[0] if single else bb.Struct(parts)), location)
        accumulate_name = names.fresh("accumulate")
        new_locals.append((accumulate_name, accumulate))
        operands = [value, zero, bb.Reference(accumulate_name, accumulate.type_signature)]
        if single:
            operands += [group[0].merge, group[0].report]
        else:
            m = bb.Reference(names.fresh("m"), StructType([u, u]))
            merge_bindings = agg.Bindings(names)
            merged = [
                merge_bindings.atom(
                    agg.apply_fn(
                        member.merge,
                        bb.Struct([bb.Selection(bb.Selection(m, index=0), index=i), bb.Selection(bb.Selection(m, index=1), index=i)]),
                        names,
                        defs,
                    ),
                    "merged",
                )
                for i, member in enumerate(group)
            ]
            merge = bb.Lambda(m.name, m.type_signature, merge_bindings.block(bb.Struct(merged)), location)
            s = bb.Reference(names.fresh("s"), u)
            report_bindings = agg.Bindings(names)
            reported = [
                report_bindings.flatten(agg.apply_fn(member.report, bb.Selection(s, index=i), names, defs))
                for i, member in enumerate(group)
            ]
            report = bb.Lambda(s.name, u, report_bindings.block(bb.Struct(reported)), location)
            merge_name, report_name = names.fresh("merge"), names.fresh("report")
            new_locals += [(merge_name, merge), (report_name, report)]
            operands += [bb.Reference(merge_name, merge.type_signature), bb.Reference(report_name, report.type_signature)]
        argument = bb.Struct(operands)
        if single:
            return new_locals + [(group[0].name, agg.recall(group[0].call, "federated_aggregate", argument))]
        aggregate = agg.call("federated_aggregate", argument, location)
        return new_locals + self.select_out(group, aggregate, location)


@register("fuse-map-mean")
def fuse_map_mean(module: Module, ctx: PassContext) -> Module:
    """Fuses maps into the sums/means that use them, then merges independent aggregations into one.

    A federated_map used only by a federated_mean, weighted_mean, sum (or a
    sum-form aggregate) becomes part of one federated_aggregate whose
    accumulate applies the mapped function; aggregations whose inputs do not
    depend on each other's results merge into one aggregation of a struct.
    Needs call-dominant form. Statistics: maps-fused-into-aggregates,
    aggregations-merged.
    """

    def fuse(symbol: str, node: bb.Node):
        computation = agg.split(symbol, node)
        if computation.is_local:
            return None
        agg.check_cdf(computation, "fuse-map-mean")
        return _MapMeanFuser(computation, ctx).run()

    return transform_computations(module, fuse)
