"""The tf backend's rules: the TensorFlow lowering of every intrinsic and local op.

A rule is ``rule(graph, argument, type_signature, attrs) -> value`` on the
values of :mod:`.graph`, building ops in the graph being traced. Each follows
the reference rule of the same uri (:mod:`fedc.backends.reference.intrinsics`),
so the two backends agree: the same checks (raised with the same messages,
through :meth:`~.graph.Graph.check`), the same order of accumulation in
``federated_aggregate`` (two halves, merged), exact integer sums.
:data:`RULES` maps uri -> rule; nothing is attached to the registry.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from fedc import limits
from fedc.errors import FedcError
from fedc.ir.local_ops import run_time_result_type
from fedc.ir import intrinsics as registry
from fedc.types import StructType, TensorType

from .graph import ClientValues, Graph, SequenceValue, broadcast_to_clients, leaves, tree_map
from .local_ops import LOWERINGS, exact_integer_sum, zeros_of

__all__ = ["RULES"]


def _tf():
    import tensorflow as tf

    return tf


def _stacked(graph: Graph, clients: ClientValues, what: str) -> Any:
    """The clients' values stacked; values of different shapes are refused as the reference does."""
    tf = _tf()
    stacked = clients.stacked_value()
    if stacked is not None:
        return stacked
    items = clients.items()
    first = [leaf.shape.as_list() for leaf in leaves(items[0])]
    for index, item in enumerate(items[1:], 1):
        for position, leaf in enumerate(leaves(item)):
            if leaf.shape.as_list() != first[position]:
                where = f" (element {position})" if len(first) > 1 else ""
                raise FedcError(
                    f"{what}: client 0's value{where} has shape {first[position]}, client {index}'s "
                    f"{leaf.shape.as_list()}; the clients' values must have one shape to be combined"
                )
    return tree_map(lambda *xs: tf.stack(xs), *items)


def _zeros(t, what: str):
    if isinstance(t, StructType):
        return tuple(_zeros(e, what) for e in t)
    if not t.is_fully_defined():
        raise FedcError(f"{what} has no value: its result would be zeros of {t}, whose shape is unknown")
    limits.check_allocation(t.shape, t.dtype.itemsize or 4, what)
    return zeros_of(t)


def _by_group(clients: ClientValues, reduce: Callable, combine: Callable) -> Any:
    """``reduce`` of each group of floating-point tensors, put together with ``combine``; None otherwise.

    Groups that arrived apart (a large array shared with TensorFlow in two
    ranges, clients grouped by dataset layout) are reduced apart rather than
    joined into one tensor first, a copy of every client's value.
    """
    groups = clients.tensor_groups() if clients.stacked is None else None
    if not groups or not all(leaf.dtype.is_floating for _, g in groups for leaf in leaves(g)):
        return None
    partials = [tree_map(reduce, stacked) for _, stacked in groups]
    return tree_map(lambda *parts: combine(list(parts)), *partials)


def _mean(graph, value, t, attrs):
    tf = _tf()
    clients = graph.as_clients(value, "federated_mean")
    if clients.count == 0:
        raise FedcError("federated_mean over zero clients has no value")
    total = _by_group(clients, lambda a: tf.reduce_sum(a, axis=0), tf.add_n)
    if total is not None:
        return tree_map(lambda a: a / tf.cast(clients.count, a.dtype), total)
    return tree_map(lambda a: tf.reduce_mean(a, axis=0), _stacked(graph, clients, "federated_mean"))


def _sum(graph, value, t, attrs):
    tf = _tf()
    clients = graph.as_clients(value, "federated_sum")
    if clients.count == 0:
        return _zeros(t.result.member, "federated_sum over zero clients")
    total = _by_group(clients, lambda a: tf.reduce_sum(a, axis=0), tf.add_n)
    if total is not None:
        return total
    stacked = _stacked(graph, clients, "federated_sum")
    return tree_map(lambda a: exact_integer_sum(graph, a, 0, "federated_sum") if a.dtype.is_integer
                    else tf.reduce_sum(a, axis=0), stacked)


def _extremum(name: str, fn_name: str):
    def rule(graph, value, t, attrs):
        tf = _tf()
        clients = graph.as_clients(value, name)
        if clients.count == 0:
            raise FedcError(f"{name} over zero clients has no value")
        return tree_map(lambda a: getattr(tf, fn_name)(a, axis=0), _stacked(graph, clients, name))

    return rule


def _weighted_mean(graph, argument, t, attrs):
    tf = _tf()
    value = graph.as_clients(argument[0], "federated_weighted_mean")
    weight = graph.as_clients(argument[1], "federated_weighted_mean")
    if value.count == 0:
        raise FedcError("federated_weighted_mean over zero clients has no value")
    weights = _stacked(graph, weight, "federated_weighted_mean")
    graph.check(tf.reduce_all(weights >= 0),
                lambda low: f"federated_weighted_mean: a client's weight is negative ({low}); weights are "
                            "counts or importances, at least 0", tf.reduce_min(weights))
    graph.check(tf.reduce_any(weights > 0),
                lambda: "federated_weighted_mean: the clients' weights sum to 0, so the mean has no value "
                        "(TFF would return NaN here; fedc refuses)")

    def leaf(a):
        w = tf.cast(weights, a.dtype)
        total = tf.reduce_sum(w)
        return tf.tensordot(w, a, axes=[[0], [0]]) / total

    return tree_map(leaf, _stacked(graph, value, "federated_weighted_mean"))


# uri -> (the exclusive upper limit of a client's value and its description, for a bound; modular?)
_SECURE_SUMS = {
    "federated_secure_sum": (lambda b: (b + 1, f"[0, {b}]"), False),
    "federated_secure_sum_bitwidth": (lambda b: (2**b, f"[0, 2**{b})"), False),
    "federated_secure_modular_sum": (None, True),
}


def _secure(uri: str):
    limits, modular = _SECURE_SUMS[uri]

    def rule(graph, argument, t, attrs):
        tf = _tf()
        clients = graph.as_clients(argument[0], uri)
        if clients.count == 0:
            return _zeros(t.result.member, f"{uri} over zero clients")
        stacked = _stacked(graph, clients, uri)
        value_leaves = leaves(stacked)
        bounds = leaves(argument[1])
        if len(bounds) == 1:
            bounds = bounds * len(value_leaves)
        results = []
        for leaf, bound in zip(value_leaves, bounds):
            b64 = tf.cast(bound, tf.int64)
            low, high = (int(x) for x in (np.iinfo(leaf.dtype.as_numpy_dtype).min, np.iinfo(leaf.dtype.as_numpy_dtype).max))
            if modular:
                graph.check(b64 > 0, lambda b: f"{uri}: the modulus must be positive, but is {int(b)}", b64)
                safe = tf.where(b64 > 0, b64, tf.ones_like(b64))
                wide = tf.cast(leaf, tf.int64) if leaf.dtype.size < 8 or leaf.dtype.is_unsigned else leaf
                reduced = tf.math.floormod(wide, safe)
                # Each term is below the modulus; sum in chunks that cannot overflow int64.
                total = tf.math.floormod(tf.reduce_sum(reduced, axis=0), safe)
                exact = total
            else:
                limit = _bound_limit(uri, bound, b64)
                bad = (tf.cast(leaf, tf.int64) < 0) | (tf.cast(leaf, tf.int64) >= limit) if leaf.dtype.size < 8 \
                    else (leaf < 0) | (tf.cast(leaf, tf.int64) >= limit)
                first = tf.where(tf.reshape(bad, [-1]))[:1]
                graph.check(tf.logical_not(tf.reduce_any(bad)), _range_message(uri, leaf, bound),
                            first, tf.gather(tf.reshape(leaf, [-1]), first[:, 0]), b64)
                exact = tf.reduce_sum(tf.cast(leaf, tf.int64), axis=0)  # inputs bounded: no overflow
            graph.check(tf.reduce_all((exact >= low) & (exact <= high)),
                        lambda: f"{uri}: the sum does not fit in {leaf.dtype.name}")
            results.append(tf.cast(exact, leaf.dtype))
        iterator = iter(results)
        return tree_map(lambda _: next(iterator), stacked)

    return rule


def _bound_limit(uri: str, bound, b64):
    tf = _tf()
    if uri == "federated_secure_sum":
        return b64 + 1
    return tf.bitwise.left_shift(tf.ones_like(b64), b64)  # 2**bitwidth (bitwidth is at most 62 by the type rule)


def _range_message(uri: str, leaf, bound) -> Callable[..., str]:
    """The reference's message: the first client (in row-major order) whose value is out of range."""
    member_size = int(np.prod(leaf.shape.as_list()[1:])) if leaf.shape.rank > 1 else 1

    def message(first, value, b):
        client = int(first.reshape(-1)[0]) // max(member_size, 1)
        allowed = f"[0, {int(b)}]" if uri == "federated_secure_sum" else f"[0, 2**{int(b)})"
        return (f"{uri}: client {client} has value {value.reshape(-1)[0]} outside {allowed}; "
                "secure aggregation never wraps an out-of-range input silently")

    return message


def _aggregate(graph, argument, t, attrs):
    value, zero, accumulate, merge, report = argument
    clients = graph.as_clients(value, "federated_aggregate")
    count = clients.count
    half = (count + 1) // 2
    partials = []
    for start, end in ((0, half), (half, count)):
        if end <= start:
            continue
        partials.append(_fold(graph, clients, start, end, zero, accumulate))
    if not partials:
        return report(zero)
    result = partials[0]
    for other in partials[1:]:
        result = merge((result, other))
    return report(result)


def _fold(graph, clients: ClientValues, start: int, end: int, zero, accumulate):
    """``accumulate`` folded over clients ``start:end`` from ``zero``, in order (a loop in the graph)."""
    tf = _tf()
    stacked = clients.stacked_value()
    if stacked is None or end - start <= 2 or not all(tf.is_tensor(x) for x in leaves(zero)):
        accumulator = zero
        for item in clients.items()[start:end]:
            accumulator = accumulate((accumulator, item))
        return accumulator
    holder = {}
    flat_zero = [tf.convert_to_tensor(x) for x in leaves(zero)]

    def body(i, flat, oks, vals):
        accumulator = _rebuild(zero, flat)
        member = tree_map(lambda a: a[i], stacked)
        with graph.capturing() as checks:
            result = accumulate((accumulator, member))
        holder["checks"] = checks
        new_flat = [tf.convert_to_tensor(x) for x in leaves(result)]
        new_flat = [tf.cast(n, z.dtype) if n.dtype != z.dtype else n for n, z in zip(new_flat, flat_zero)]
        new_flat = [tf.ensure_shape(n, z.shape) if z.shape.is_fully_defined() else n for n, z in zip(new_flat, flat_zero)]
        new_oks, new_vals, k = [], [], 0
        for o, c in zip(oks, checks):
            now = tf.reduce_all(c.ok)
            new_oks.append(tf.logical_and(o, now))
            for v in c.values:  # keep the values of the first failure
                new_vals.append(tf.where(tf.logical_and(o, tf.logical_not(now)), tf.cast(v, vals[k].dtype), vals[k]))
                k += 1
        return i + 1, new_flat, new_oks, new_vals

    # Trace once to learn which checks the body makes, then loop.
    with graph.capturing() as probe:
        accumulate((zero, tree_map(lambda a: a[start], stacked)))
    initial_oks = [tf.constant(True) for _ in probe]
    initial_vals = [tf.zeros_like(v) for c in probe for v in c.values]
    _, flat, oks, vals = tf.while_loop(
        lambda i, flat, oks, vals: i < end, body, (tf.constant(start), flat_zero, initial_oks, initial_vals),
        shape_invariants=(tf.TensorShape([]), [z.shape if z.shape.is_fully_defined() else tf.TensorShape(None)
                                                for z in flat_zero],
                          [tf.TensorShape([]) for _ in initial_oks], [v.shape for v in initial_vals]))
    checks = holder.get("checks", probe)
    rest = iter(vals)
    graph.add_checks(checks, oks, [[next(rest) for _ in c.values] for c in checks])
    return _rebuild(zero, [tf.ensure_shape(f, z.shape) if z.shape.is_fully_defined() else f
                           for f, z in zip(flat, flat_zero)])


def _rebuild(structure, flat):
    iterator = iter(flat)
    return tree_map(lambda _: next(iterator), structure)


# --------------------------------------------------------------------------
# Placement, maps, zips, select


def _identity(graph, value, t, attrs):
    return value


def _map(graph, argument, t, attrs):
    function, value = argument
    if isinstance(value, ClientValues):
        return graph.map_clients(function, value)
    return broadcast_to_clients(function(value), graph.clients_count("federated_map"))


def _apply(graph, argument, t, attrs):
    function, value = argument
    return function(value)


def _eval_at_server(graph, function, t, attrs):
    return function(None)


def _eval_at_clients(graph, function, t, attrs):
    count = graph.clients_count("federated_eval_at_clients")
    return ClientValues(count, items=[function(None) for _ in range(count)])


def _zip_at_clients(graph, argument, t, attrs):
    parts = [graph.as_clients(v, "federated_zip_at_clients") for v in argument]
    counts = {p.count for p in parts}
    if len(counts) > 1:
        raise FedcError(f"federated_zip_at_clients: the zipped values have different numbers of clients {sorted(counts)}")
    count = parts[0].count
    stacked = [p.stacked_value() for p in parts]
    if all(p is not None for p in stacked):
        return ClientValues(count, stacked=tuple(stacked))
    return ClientValues(count, zipped=tuple(parts))


def _zip_at_server(graph, argument, t, attrs):
    return tuple(argument)


def _select(name: str):
    def rule(graph, argument, t, attrs):
        tf = _tf()
        keys, max_key, server_value, select_fn = argument
        keys = graph.as_clients(keys, name)
        limit = tf.cast(max_key, tf.int64)
        results = []
        for index, client_keys in enumerate(keys.items()):
            wide = tf.cast(client_keys, tf.int64)
            graph.check(tf.reduce_all((wide >= 0) & (wide <= limit)),
                        lambda k, m, index=index: f"{name}: client {index} asks for key(s) {k.tolist()} outside "
                                                  f"[0, {int(m)}]", client_keys, limit)
            flat = tf.reshape(tf.cast(client_keys, tf.int32), [-1])
            count = flat.shape[0]
            if count is None:
                raise FedcError(f"{name}: the number of keys of client {index} must be known")
            elements = [select_fn((server_value, flat[k])) for k in range(count)]
            results.append(SequenceValue.from_elements(elements))
        return ClientValues(keys.count, items=results)

    return rule


# --------------------------------------------------------------------------
# Sequences


def _sequence_map(graph, argument, t, attrs):
    function, sequence = argument
    segments = []
    for segment in sequence.segments:
        try:
            segments.append(graph.vectorized(function, segment))
        except Exception:  # noqa: BLE001 - a function that cannot be vectorized runs element by element
            return SequenceValue.from_elements([function(e) for e in sequence.elements()])
    return SequenceValue(segments)


def _sequence_reduce(graph, argument, t, attrs):
    sequence, zero, op = argument
    accumulator = zero
    for element in sequence.elements():
        accumulator = op((accumulator, element))
    return accumulator


def _sequence_sum(graph, sequence, t, attrs):
    """The sum of the elements; integers exactly, the total checked to fit (as federated_sum)."""
    tf = _tf()
    if not sequence.segments:
        return _zeros(t.result, "sequence_sum")
    first = [leaf.shape.as_list()[1:] for leaf in leaves(sequence.segments[0])]
    for segment in sequence.segments[1:]:
        for position, leaf in enumerate(leaves(segment)):
            if leaf.shape.as_list()[1:] != first[position]:
                raise FedcError(f"sequence_sum: element 0's value has shape {first[position]}, a later element's "
                                f"{leaf.shape.as_list()[1:]}; the elements' values must have one shape to be combined")
    steps = tree_map(lambda *parts: tf.concat(parts, axis=0), *sequence.segments)
    return tree_map(lambda a: exact_integer_sum(graph, a, 0, "sequence_sum") if a.dtype.is_integer
                    else tf.reduce_sum(a, axis=0), steps)


_FEDERATED: dict[str, Callable] = {
    "federated_aggregate": _aggregate,
    "federated_apply": _apply,
    "federated_broadcast": _identity,
    "federated_eval_at_clients": _eval_at_clients,
    "federated_eval_at_server": _eval_at_server,
    "federated_map": _map,
    "federated_map_all_equal": _apply,
    "federated_mean": _mean,
    "federated_weighted_mean": _weighted_mean,
    "federated_sum": _sum,
    "federated_min": _extremum("federated_min", "reduce_min"),
    "federated_max": _extremum("federated_max", "reduce_max"),
    "federated_secure_sum": _secure("federated_secure_sum"),
    "federated_secure_sum_bitwidth": _secure("federated_secure_sum_bitwidth"),
    "federated_secure_modular_sum": _secure("federated_secure_modular_sum"),
    "federated_select": _select("federated_select"),
    "federated_secure_select": _select("federated_secure_select"),
    "federated_value_at_clients": _identity,
    "federated_value_at_server": _identity,
    "federated_zip_at_clients": _zip_at_clients,
    "federated_zip_at_server": _zip_at_server,
    "sequence_map": _sequence_map,
    "sequence_reduce": _sequence_reduce,
    "sequence_sum": _sequence_sum,
}


def _local(uri: str) -> Callable:
    """A local op's rule: its lowering, after its type rule has been applied to the operands' actual shapes."""
    lower = LOWERINGS[uri]

    def rule(graph, argument, t, attrs):
        if t.parameter is not None and not _fully_known(t.parameter):
            actual = _actual_type(argument, t.parameter)
            result = run_time_result_type(uri, t, actual, attrs)
        else:
            result = t.result
        for leaf in result.walk():
            if isinstance(leaf, TensorType) and leaf.is_fully_defined():
                limits.check_allocation(leaf.shape, leaf.dtype.itemsize or 4, uri)
        return lower(graph, argument, t, attrs)

    return rule


def _fully_known(t) -> bool:
    return all(leaf.is_fully_defined() for leaf in t.walk() if isinstance(leaf, TensorType))


def _actual_type(value, declared):
    """The type of graph value ``value`` as its tensors' static shapes say (unknown dims stay unknown)."""
    if isinstance(declared, StructType):
        return StructType([
            (name, _actual_type(part, element)) if name else _actual_type(part, element)
            for part, (name, element) in zip(value, declared.items())
        ])
    if declared.is_fully_defined():
        return declared
    shape = value.shape
    return TensorType(declared.dtype, None if shape.rank is None else tuple(shape.as_list()))


RULES: dict[str, Callable] = {**_FEDERATED, **{uri: _local(uri) for uri in LOWERINGS}}

for _uri in RULES:  # every rule is for an op of the registry
    registry.lookup(_uri)
