"""A round on the tf backend's workers: the clients sharded over worker processes, pre-aggregated there.

The execution context hands the backend a computation together with its
MapReduce form (:mod:`fedc.ir.mapreduce`; the computation wrapped as a round
by :func:`fedc.ir.mapreduce.wrap_as_round`, then ``to-mapreduce``). A call
then runs as a MapReduce round:

1. ``prepare`` at the driver (this process) gives the broadcast value, put
   in Ray's object store once for the round;
2. the clients are cut into one contiguous shard per worker, in the order
   given (:func:`shard_bounds`); each
   worker runs its shard's *shard computation* — the form's ``work``, then
   ``zero``/``accumulate``/``merge`` and the secure sums over its clients, as
   one batched TensorFlow function on the in-process tf backend — so only an
   accumulator and partial secure sums leave a worker;
3. the driver merges the partial accumulators in shard order (so the result
   does not depend on which worker finishes first), adds the partial secure
   sums exactly, and runs ``report`` and ``update``.

A worker keeps the last shard of client data it was sent (per round
computation): when the next call's shard for it is equal (compared leaf by
leaf at the driver, a memory comparison), only a token is sent. A worker that
dies during a round (its process is killed, say) is restarted
by Ray; its shard is run again, on the next worker, from the same inputs, so
the round's result is the one an undisturbed run gives.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any, Optional

import numpy as np

from fedc.errors import FedcError
from fedc.ir import building_blocks as bb
from fedc.ir.mapreduce import SECURE_GROUPS, MapReduceForm, RoundWrapping, as_round
from fedc.ir.module import Module
from fedc.ir.serialization import serialize
from fedc.types import StructType, TensorType
from fedc.values import Clients

from .cluster import CachedShard, RayCluster, ShardNotCached, ShippedShard
from .graph import leaves, tree_map

__all__ = ["NotShardable", "ShardedRound", "same_values", "shard_bounds", "shard_module"]

#: The computation a worker runs on its shard, in :func:`shard_module`'s module.
SHARD = "shard"


def shard_module(form: MapReduceForm) -> Module:
    """The module of the workers' shard computation ``(<C@SERVER,{D}@CLIENTS> -> <C@SERVER,<U,SB>@SERVER>)``.

    It is the form with ``prepare`` and ``report`` the identity and
    ``update`` returning the accumulator and the secure sums, made a round by
    :func:`fedc.ir.mapreduce.as_round`: a shard's broadcast, client work,
    aggregation and secure sums, with nothing of the server's steps.
    """
    c, u, b = form.broadcast_type, form.accumulator_type, form.secure_input_type
    update_in = StructType([c, StructType([u, b])])
    x = bb.Reference("x", update_in)
    replaced = {
        "prepare": bb.Lambda("c", c, bb.Reference("c", c)),
        "report": bb.Lambda("u", u, bb.Reference("u", u)),
        "update": bb.Lambda("x", update_in, bb.Struct([bb.Selection(x, index=0), bb.Selection(x, index=1)])),
    }
    table = [(s, replaced.get(s, node)) for s, node in form.module.items()]
    return as_round(Module(form.module.name, table), SHARD)


def shard_bounds(count: int, shards: int) -> list[tuple[int, int]]:
    """``[(start, stop)]`` of ``count`` clients in at most ``shards`` contiguous non-empty shards, sizes as even
    as can be, the first ones larger (the reference backend's :func:`~fedc.backends.reference.mapreduce.partition`)."""
    size, extra = divmod(count, shards)
    bounds, start = [], 0
    for i in range(min(shards, count)):
        stop = start + size + (1 if i < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


def _is_worker_death(ray, error: BaseException) -> bool:
    kinds = tuple(getattr(ray.exceptions, n) for n in ("RayActorError", "ActorDiedError", "ActorUnavailableError",
                                                       "WorkerCrashedError", "LocalRayletDiedError")
                  if hasattr(ray.exceptions, n))
    return isinstance(error, kinds)


def _secure_combine(uri: str, partials: list, bound: Any, where: str) -> Any:
    """The secure sum ``uri`` of all clients from the shards' partial sums, exactly (Python integers)."""
    modular = uri == "federated_secure_modular_sum"
    leaves_per_shard = [leaves(p) for p in partials]
    bounds = [int(np.asarray(b)) for b in leaves(bound)]
    results = []
    for k in range(len(leaves_per_shard[0])):
        column = [shard[k] for shard in leaves_per_shard]
        exact = sum(np.asarray(a).astype(object) for a in column)
        if modular:
            exact = exact % (bounds[k] if len(bounds) > 1 else bounds[0])
        dtype = np.asarray(column[0]).dtype
        info = np.iinfo(dtype)
        flat = np.asarray(exact, dtype=object).ravel()
        if any(v > info.max or v < info.min for v in flat):
            raise FedcError(f"{uri}: the sum does not fit in {dtype.name} ({where})")
        results.append(np.asarray(exact, dtype=object).astype(dtype))
    it = iter(results)
    return tree_map(lambda _: next(it), partials[0])


class NotShardable(Exception):
    """The round cannot run shard by shard (the backend runs it in-process instead)."""


class ShardedRound:
    """The executable of a computation that runs as a MapReduce round on the workers (see the module)."""

    def __init__(self, cluster: RayCluster, module: Module, symbol: str, form_module: Module,
                 wrapping: RoundWrapping, local_build):
        self.module = module
        self.symbol = symbol
        self.type_signature = module[symbol].type_signature
        self.form = MapReduceForm(form_module)
        self.wrapping = wrapping
        self._cluster = cluster
        self._parts = {p: local_build(form_module, p) for p in ("prepare", "merge", "report", "update")}
        self._bounds = {part: local_build(form_module, part)() for _, part, _ in SECURE_GROUPS}
        reason = self._unshardable()
        if reason:
            raise NotShardable(reason)
        self._serialized = serialize(shard_module(self.form))
        self._key = uuid.uuid4().hex
        self._lock = threading.Lock()  # one call at a time: a call updates what the workers hold
        self._module_ref = None
        self._generation = None  # the cluster start that _module_ref and _sent belong to
        self._local_build = local_build
        self._here = None
        #: worker index -> (token, shard bounds, shard data) last sent to it: data equal to it is not sent again
        self._sent: dict[int, tuple[str, tuple[int, int], Clients]] = {}
        #: what the last call did: {"clients", "shards": [(worker, start, stop)], "reruns", "shards_reused"}
        self.last_run: dict = {}

    def _unshardable(self) -> str:
        """Why the round's secure sums cannot be summed shard by shard ('' when they can).

        A shard's partial modular sum lies in [0, modulus): with a modulus past
        the values' dtype it may not fit in it (the whole sum may), so such a
        round runs in-process.
        """
        for k, value_type in enumerate(self.form.secure_input_type["modulus"]):
            dtypes = [leaf.dtype for leaf in value_type.walk() if isinstance(leaf, TensorType)]
            for bound in leaves(self._bounds["secure_modular_sum_modulus"][k]):
                modulus = int(np.asarray(bound))
                for dtype in dtypes:
                    if modulus - 1 > np.iinfo(dtype).max:
                        return (f"the modulus {modulus} of a federated_secure_modular_sum is past its values' "
                                f"{dtype.name}: a shard's partial sum may not fit in it")
        return ""

    def __call__(self, argument: Any = None, num_clients: Optional[int] = None) -> Any:
        state, data = self.wrapping.split(argument)
        clients = data[0] if len(data) == 1 else _zip_clients(data)
        if clients.count == 0:  # nothing to shard: the computation itself, here (a mean over no one fails as there)
            if self._here is None:
                self._here = self._local_build(self.module, self.symbol)
            return self._here(argument, num_clients=0)
        broadcast = self._parts["prepare"](state)
        partials = self._run_shards(broadcast, clients)
        accumulator = partials[0][0]
        for other, _ in partials[1:]:
            accumulator = self._parts["merge"]((accumulator, other))
        secure = []
        for index, (group, part, uri) in enumerate(SECURE_GROUPS):
            sums = []
            for k, _ in enumerate(self.form.secure_input_type[group]):
                partial_sums = [p[1][index][k] for p in partials]
                sums.append(_secure_combine(uri, partial_sums, self._bounds[part][k], f"@{self.symbol}"))
            secure.append(tuple(sums))
        report = self._parts["report"](accumulator)
        _, output = self._parts["update"]((state, (report, tuple(secure))))
        return output

    def _run_shards(self, broadcast: Any, clients: Clients) -> list:
        with self._lock:
            return self._run_shards_locked(broadcast, clients)

    def _run_shards_locked(self, broadcast: Any, clients: Clients) -> list:
        import ray

        workers = self._cluster.workers()
        if self._generation != self._cluster.generation:  # (re)started workers hold nothing of ours yet
            self._generation = self._cluster.generation
            self._module_ref = ray.put(self._serialized)
            self._sent = {}
        shards = shard_bounds(clients.count, len(workers))
        data = [clients.select(start, stop) for start, stop in shards]
        broadcast_ref = ray.put(broadcast)
        pending, assigned = {}, {}
        reused = 0
        for i, shard in enumerate(data):
            assigned[i] = i % len(workers)
            sent = self._sent.get(assigned[i])
            if sent is not None and sent[1] == shards[i] and same_values(sent[2], shard):
                reused += 1  # the worker has this shard's data from the last call: it is not sent again
                pending[i] = self._submit(workers[assigned[i]], broadcast_ref, CachedShard(sent[0]))
            else:
                pending[i] = self._send(workers, assigned[i], broadcast_ref, shards[i], shard)
        results: dict[int, Any] = {}
        reruns = 0
        while pending:
            i, ref = next(iter(pending.items()))
            try:
                results[i] = ray.get(ref)
                del pending[i]
            except Exception as e:
                if isinstance(getattr(e, "cause", None), ShardNotCached):  # a restarted worker: send the data
                    reused -= 1
                    pending[i] = self._send(workers, assigned[i], broadcast_ref, shards[i], data[i])
                    continue
                if _is_worker_death(ray, e) and reruns < 3 * len(shards) + len(workers):
                    reruns += 1
                    self._sent.pop(assigned[i], None)
                    assigned[i] = (assigned[i] + 1) % len(workers)
                    pending[i] = self._send(workers, assigned[i], broadcast_ref, shards[i], data[i])
                    continue
                raise self._error(ray, e, shards[i], clients.count) from None
        self.last_run = {"clients": clients.count, "shards": [(assigned[i], *shards[i]) for i in range(len(shards))],
                         "reruns": reruns, "shards_reused": reused}
        return [results[i] for i in range(len(shards))]

    def _send(self, workers: list, worker: int, broadcast_ref, bounds: tuple[int, int], shard: Clients):
        """Submits a shard with its data, which the worker keeps (under a new token) for the next call."""
        token = uuid.uuid4().hex
        self._sent[worker] = (token, bounds, shard)
        return self._submit(workers[worker], broadcast_ref, ShippedShard(token, shard))

    def _submit(self, worker, broadcast_ref, shard):
        return worker.run_shard.remote(self._key, [self._module_ref], SHARD, broadcast_ref, shard)

    def _error(self, ray, error: BaseException, shard: tuple[int, int], count: int) -> FedcError:
        cause = getattr(error, "cause", None) or error
        where = f"clients {shard[0]}–{shard[1] - 1} of {count}, on a worker, running @{self.symbol}"
        if isinstance(cause, FedcError):
            return type(cause)(f"{cause.message} ({where})", cause.location)
        return FedcError(f"{type(cause).__name__}: {cause} ({where})")


def same_values(a: Any, b: Any) -> bool:
    """Whether two run-time values are equal, leaf by leaf (dtype, shape and every element)."""
    if a is b:
        return True
    if isinstance(a, Clients):
        if not isinstance(b, Clients) or a.count != b.count:
            return False
        stacked_a, stacked_b = a.stacked_if_present(), b.stacked_if_present()
        if stacked_a is not None and stacked_b is not None:
            return same_values(stacked_a, stacked_b)
        return same_values(a.items(), b.items())
    if isinstance(a, (tuple, list)):
        return (isinstance(b, (tuple, list)) and type(a) is type(b) and len(a) == len(b)
                and all(same_values(x, y) for x, y in zip(a, b)))
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a, b))


def _zip_clients(data: list) -> Clients:
    count = data[0].count
    columns = [d.items() for d in data]
    return Clients.from_items([tuple(column[i] for column in columns) for i in range(count)])
