"""The reference backend's rules: its implementation of every intrinsic and local op.

An implementation is ``impl(interpreter, argument, type_signature, attrs)``;
:data:`RULES` maps each op's uri (an entry of the registry,
:mod:`fedc.ir.intrinsics`) to its implementation. The backend owns this table:
nothing is attached to the registry.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np

from fedc.errors import FedcError
from fedc.ir import intrinsics as registry
from fedc.types import StructType, TensorType

from .local_ops import IMPLS as LOCAL_IMPLS, check_tensor_allocation, exact_sum, fit_integers, run as run_local_op, widened
from fedc.values import Clients

__all__ = ["RULES", "as_clients", "secure_sum"]


def _tree_map(fn: Callable, *trees):
    if isinstance(trees[0], tuple):
        return tuple(_tree_map(fn, *parts) for parts in zip(*trees))
    return fn(*trees)


def _leaves(tree) -> list:
    if isinstance(tree, tuple):
        return [leaf for part in tree for leaf in _leaves(part)]
    return [tree]


def _zeros(t, what: str) -> Any:
    """Zeros of type ``t`` (what an empty sum is), refused past fedc.limits.MAX_TENSOR_BYTES."""
    if isinstance(t, StructType):
        return tuple(_zeros(e, what) for e in t)
    if not t.is_fully_defined():
        raise FedcError(f"{what} has no value: its result would be zeros of {t}, whose shape is unknown")
    check_tensor_allocation(t, None, what)
    return np.zeros(t.shape, dtype=t.dtype)


def as_clients(interpreter, value: Any, what: str) -> Clients:
    """A ``{T}@CLIENTS`` value; an all-equal value is given to every client."""
    if isinstance(value, Clients):
        return value
    count = interpreter.clients_count(what)
    return Clients.from_items([value] * count)


def _stacked_or_items(clients: Clients, what: str):
    """The clients' values stacked, or (if they cannot be) listed, checked to have one shape."""
    stacked = clients.stacked() if clients.count else None
    if stacked is not None:
        return stacked, None
    items = clients.items()
    _check_same_shapes(items, what)
    return None, items


def _check_same_shapes(items: list, what: str, member: str = "client") -> None:
    """Refuses clients' (or a sequence's elements') tensors of different shapes (a type with unknown dims)."""
    first = [np.shape(leaf) for leaf in _leaves(items[0])] if items else []
    for index, item in enumerate(items[1:], 1):
        for position, leaf in enumerate(_leaves(item)):
            if position < len(first) and np.shape(leaf) != first[position]:
                where = f" (element {position})" if len(first) > 1 else ""
                raise FedcError(
                    f"{what}: {member} 0's value{where} has shape {list(first[position])}, {member} {index}'s "
                    f"{list(np.shape(leaf))}; the {member}s' values must have one shape to be combined"
                )


def _reduce(clients: Clients, stacked_fn: Callable, pair_fn: Callable, what: str):
    if clients.count == 0:
        raise FedcError(f"{what} over zero clients has no value")
    stacked, items = _stacked_or_items(clients, what)
    if stacked is not None:
        return _tree_map(lambda a: np.asarray(stacked_fn(a)).astype(a.dtype, copy=False), stacked)
    result = items[0]
    for item in items[1:]:
        result = _tree_map(pair_fn, result, item)
    return result


# --------------------------------------------------------------------------
# Aggregations


def _mean(interp, value, t, attrs):
    clients = as_clients(interp, value, "federated_mean")
    if clients.count == 0:
        raise FedcError("federated_mean over zero clients has no value")
    stacked, items = _stacked_or_items(clients, "federated_mean")
    if stacked is not None:
        return _tree_map(lambda a: np.mean(a, axis=0).astype(a.dtype, copy=False), stacked)
    total = _reduce(clients, None, np.add, "federated_mean")
    return _tree_map(lambda s: (s / clients.count).astype(s.dtype, copy=False), total)


def _sum(interp, value, t, attrs):
    clients = as_clients(interp, value, "federated_sum")
    if clients.count == 0:
        return _zeros(t.result.member, "federated_sum over zero clients")
    stacked, items = _stacked_or_items(clients, "federated_sum")
    if stacked is None:
        stacked = _tree_map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *items)
    return _tree_map(lambda a: exact_sum(a, a.dtype, "federated_sum"), stacked)


def _min(interp, value, t, attrs):
    return _reduce(as_clients(interp, value, "federated_min"), lambda a: np.min(a, axis=0), np.minimum, "federated_min")


def _max(interp, value, t, attrs):
    return _reduce(as_clients(interp, value, "federated_max"), lambda a: np.max(a, axis=0), np.maximum, "federated_max")


def _weighted_mean(interp, argument, t, attrs):
    value = as_clients(interp, argument[0], "federated_weighted_mean")
    weight = as_clients(interp, argument[1], "federated_weighted_mean")
    if value.count == 0:
        raise FedcError("federated_weighted_mean over zero clients has no value")
    weights = np.asarray([np.asarray(w) for w in weight.items()]) if weight.stacked() is None else weight.stacked()
    stacked, items = _stacked_or_items(value, "federated_weighted_mean")

    if np.any(weights < 0):
        raise FedcError(
            f"federated_weighted_mean: a client's weight is negative ({weights.min()}); weights are "
            "counts or importances, at least 0"
        )
    if not np.any(weights > 0):
        raise FedcError(
            "federated_weighted_mean: the clients' weights sum to 0, so the mean has no value "
            "(TFF would return NaN here; fedc refuses)"
        )

    def leaf(a):
        w = weights.astype(a.dtype)
        total = w.sum()
        return (np.tensordot(w, a, axes=(0, 0)) / total).astype(a.dtype, copy=False)

    if stacked is not None:
        return _tree_map(leaf, stacked)
    columns = _tree_map(lambda *xs: np.stack(xs), *items)
    return _tree_map(leaf, columns)


def _unflatten(structure, leaves: list):
    iterator = iter(leaves)
    return _tree_map(lambda _: next(iterator), structure)


# uri -> (the exclusive upper limit of a client's value and its description, for a bound; modular?)
_SECURE_SUMS: dict[str, tuple[Optional[Callable[[int], tuple[int, str]]], bool]] = {
    "federated_secure_sum": (lambda b: (b + 1, f"[0, {b}]"), False),
    "federated_secure_sum_bitwidth": (lambda b: (2**b, f"[0, 2**{b})"), False),
    "federated_secure_modular_sum": (None, True),  # any integer: reduced modulo the modulus
}


def secure_sum(uri: str, clients: Clients, bound: Any, member_type) -> Any:
    """The secure sum ``uri`` of ``clients``' values, computed exactly in plaintext.

    ``bound`` is the intrinsic's bound operand (a scalar, or one per element
    of the value) and ``member_type`` the type of one client's value. For
    ``federated_secure_sum`` and ``_bitwidth`` every client's input range is
    checked: values must lie in [0, limit), the limit following from the
    bound as the intrinsic defines it. ``federated_secure_modular_sum`` takes
    any integers, as TFF does: each client's value is reduced into
    [0, modulus) (so -1 counts as modulus - 1), and so is the sum; the
    modulus must be positive.
    """
    limits, modular = _SECURE_SUMS[uri]
    if clients.count == 0:
        return _zeros(member_type, f"{uri} over zero clients")
    stacked, items = _stacked_or_items(clients, uri)
    if stacked is None:
        stacked = _tree_map(lambda *xs: np.stack(xs), *clients.items())
    value_leaves = _leaves(stacked)
    bounds = [int(np.asarray(b)) for b in _leaves(bound)]
    if len(bounds) == 1:
        bounds = bounds * len(value_leaves)
    results = []
    for leaf, b in zip(value_leaves, bounds):
        if modular:
            if b <= 0:
                raise FedcError(f"{uri}: the modulus must be positive, but is {b}")
            # Python integers (no overflow); % by a positive modulus lands in [0, b).
            exact = (leaf.astype(object) % b).sum(axis=0) % b
        else:
            limit, allowed = limits(b)
            bad = (leaf < 0) | (leaf >= limit)
            if bad.any():
                index = tuple(int(i) for i in np.argwhere(bad)[0])
                raise FedcError(
                    f"{uri}: client {index[0]} has value {leaf[index]} outside {allowed}; "
                    "secure aggregation never wraps an out-of-range input silently"
                )
            exact = leaf.astype(object).sum(axis=0)  # Python integers: no overflow
        info = np.iinfo(leaf.dtype)
        flat = np.asarray(exact, dtype=object).ravel()
        if any(v > info.max or v < info.min for v in flat):
            raise FedcError(f"{uri}: the sum does not fit in {leaf.dtype.name}")
        results.append(np.asarray(exact, dtype=object).astype(leaf.dtype))
    return _unflatten(stacked, results)


def _secure(uri: str) -> Callable:
    def impl(interp, argument, t, attrs):
        return secure_sum(uri, as_clients(interp, argument[0], uri), argument[1], t.result.member)

    return impl


def _aggregate(interp, argument, t, attrs):
    value, zero, accumulate, merge, report = argument
    clients = as_clients(interp, value, "federated_aggregate")
    items = clients.items()
    # Two partial aggregates merged, so `merge` is exercised as a deployment would.
    half = (len(items) + 1) // 2
    partials = []
    for group in (items[:half], items[half:]):
        if not group:
            continue
        accumulator = zero
        for item in group:
            accumulator = accumulate((accumulator, item))
        partials.append(accumulator)
    if not partials:
        return report(zero)
    result = partials[0]
    for other in partials[1:]:
        result = merge((result, other))
    return report(result)


# --------------------------------------------------------------------------
# Placement, maps, zips, select


def _broadcast(interp, value, t, attrs):
    return value


def _identity(interp, value, t, attrs):
    return value


def _map(interp, argument, t, attrs):
    function, value = argument
    if isinstance(value, Clients):
        return interp.map_clients(function, value)
    # An all-equal value: the function is deterministic, so every client gets the same result.
    result = function(value)
    return Clients.from_items([result] * interp.clients_count("federated_map"))


def _apply(interp, argument, t, attrs):
    function, value = argument
    return function(value)


def _eval_at_server(interp, function, t, attrs):
    return function(None)


def _eval_at_clients(interp, function, t, attrs):
    return Clients.from_items([function(None) for _ in range(interp.clients_count("federated_eval_at_clients"))])


def _zip_at_clients(interp, argument, t, attrs):
    parts = [as_clients(interp, v, "federated_zip_at_clients") for v in argument]
    counts = {p.count for p in parts}
    if len(counts) > 1:
        raise FedcError(f"federated_zip_at_clients: the zipped values have different numbers of clients {sorted(counts)}")
    stacked = [p.stacked() for p in parts]
    if all(s is not None for s in stacked):
        return Clients.from_stacked(tuple(stacked), parts[0].count)
    return Clients.from_items([tuple(items) for items in zip(*(p.items() for p in parts))])


def _zip_at_server(interp, argument, t, attrs):
    return tuple(argument)


def _select(name):
    def impl(interp, argument, t, attrs):
        keys, max_key, server_value, select_fn = argument
        keys = as_clients(interp, keys, name)
        limit = int(np.asarray(max_key))
        results = []
        for index, client_keys in enumerate(keys.items()):
            client_keys = np.asarray(client_keys)
            # Keys lie in [0, max_key], max_key included (TFF's documented range).
            if np.any(client_keys < 0) or np.any(client_keys > limit):
                raise FedcError(f"{name}: client {index} asks for key(s) {client_keys.tolist()} outside [0, {limit}]")
            results.append([select_fn((server_value, np.int32(k))) for k in client_keys.tolist()])
        return Clients.from_items(results)

    return impl


# --------------------------------------------------------------------------
# Sequences


def _sequence_map(interp, argument, t, attrs):
    function, sequence = argument
    return [function(element) for element in sequence]


def _sequence_reduce(interp, argument, t, attrs):
    sequence, zero, op = argument
    accumulator = zero
    for element in sequence:
        accumulator = op((accumulator, element))
    return accumulator


def _sequence_sum(interp, sequence, t, attrs):
    """The sum of the elements; integers are summed exactly and the total must fit (as federated_sum)."""
    sequence = list(sequence)
    _check_same_shapes(sequence, "sequence_sum", "element")
    if sequence and not all(leaf.is_fully_defined() for leaf in t.result.walk() if isinstance(leaf, TensorType)):
        zeros = _tree_map(np.zeros_like, sequence[0])  # the zero's shape is the elements'
    else:
        zeros = _zeros(t.result, "sequence_sum")
    total = _tree_map(widened, zeros)
    for element in sequence:
        total = _tree_map(lambda a, b: a + widened(np.asarray(b)), total, element)
    return _tree_map(lambda s, z: fit_integers(np.asarray(s), z.dtype, "sequence_sum"), total, zeros)


_FEDERATED: dict[str, Callable] = {
    "federated_aggregate": _aggregate,
    "federated_apply": _apply,
    "federated_broadcast": _broadcast,
    "federated_eval_at_clients": _eval_at_clients,
    "federated_eval_at_server": _eval_at_server,
    "federated_map": _map,
    "federated_map_all_equal": _apply,
    "federated_mean": _mean,
    "federated_weighted_mean": _weighted_mean,
    "federated_sum": _sum,
    "federated_min": _min,
    "federated_max": _max,
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
    def impl(interp, argument, t, attrs):
        return run_local_op(uri, argument, t, attrs)

    return impl


RULES: dict[str, Callable] = {**_FEDERATED, **{uri: _local(uri) for uri in LOCAL_IMPLS}}

for _uri in RULES:  # every rule is for an op of the registry
    registry.lookup(_uri)
