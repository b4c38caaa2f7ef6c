"""A round on the tf backend's workers: the clients sharded over worker processes, pre-aggregated there.

The execution context hands the backend a computation together with its
MapReduce form (:mod:`fedc.ir.mapreduce`; the computation wrapped as a round
by :func:`fedc.ir.mapreduce.wrap_as_round`, then ``to-mapreduce``). A call
then runs as a MapReduce round:

1. ``prepare`` at the driver (this process) gives the broadcast value, put
   in Ray's object store once for the round;
2. the clients are cut into one shard per worker — contiguous, in the order
   given (:func:`shard_bounds`), or by client id (below) — and a worker's
   shard of many clients into chunks (:func:`chunked`: at least
   :data:`CHUNK_CLIENTS` clients each, at most :data:`CHUNKS_PER_WORKER`), one
   task each, so that a long round can say how many clients are done; each
   task runs the *shard computation* — the form's ``work``, then
   ``zero``/``accumulate``/``merge`` and the secure sums over its clients, as
   one batched TensorFlow function on the in-process tf backend — so only an
   accumulator and partial secure sums leave a worker;
3. the driver merges the partial accumulators in chunk order (so the result
   depends on the number of clients and workers, never on which worker
   finishes first), adds the partial secure sums exactly, and runs
   ``report`` and ``update``.

A round that runs longer than :data:`PROGRESS_AFTER_S` shows how many of its
clients are done on stderr when that is a terminal (``progress=True`` shows
it anywhere, ``False`` never: :class:`RoundProgress`).

Client data named by a simulation ``ClientData`` (its datasets, or the
ClientData itself: :class:`fedc.values.ClientSource`) is not loaded here:
the ClientData is put in Ray once, each client goes to the worker its id
hashes to (:func:`sticky_shards`, the same worker every round), and a worker
makes its clients' datasets itself and keeps their values across rounds
(when the pipeline is repeatable), so a round sends client ids. Other client
data is converted here and sent: a worker keeps the last chunk it was sent
in each place (per round computation), and when the next call's chunk there
is equal (compared leaf by leaf at the driver, a memory comparison), only a
token is sent. A worker that dies during a round (its process is killed, say) is
restarted by Ray; its shard is run again, on the next worker, from the same
inputs, so the round's result is the one an undisturbed run gives.
"""

from __future__ import annotations

import re
import sys
import threading
import time
import uuid
import warnings
import zlib
from typing import Any, Optional

import numpy as np

from fedc.errors import FedcError, FedcWarning
from fedc.ir import building_blocks as bb
from fedc.ir.mapreduce import SECURE_GROUPS, MapReduceForm, RoundWrapping, as_round
from fedc.ir.module import Module
from fedc.ir.serialization import serialize
from fedc.types import StructType, TensorType
from fedc.values import Clients

from .cluster import CachedShard, ClientFailed, NamedShard, NotShareable, RayCluster, ShardNotCached, ShippedShard
from .graph import leaves, tree_map

__all__ = ["CHUNKS_PER_WORKER", "CHUNK_CLIENTS", "NotShardable", "PROGRESS_AFTER_S", "RoundProgress",
           "ShardedRound", "chunked", "same_values", "shard_bounds", "shard_module", "sticky_shards"]

#: The computation a worker runs on its shard, in :func:`shard_module`'s module.
SHARD = "shard"

#: A worker's shard is cut into chunks of at least this many clients (one task each) ...
CHUNK_CLIENTS = 256
#: ... and at most this many chunks.
CHUNKS_PER_WORKER = 8

#: A round shows its progress once it has run this long (seconds).
PROGRESS_AFTER_S = 1.0


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
    return as_round(Module(form.module.name, table), SHARD, sum_aggregation=True)


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


def sticky_shards(ids: tuple, workers: int) -> list[tuple[int, list[int]]]:
    """``[(worker, positions)]``: each client (by id) goes to the worker ``crc32(id) % workers``, in every round,
    so a worker meets the same clients again and has their data; positions keep the round's order."""
    by_worker: list[list[int]] = [[] for _ in range(workers)]
    for position, client_id in enumerate(ids):
        by_worker[zlib.crc32(client_id.encode("utf-8")) % workers].append(position)
    return [(w, positions) for w, positions in enumerate(by_worker) if positions]


def chunked(shards: list, clients: Optional[int] = None, most: Optional[int] = None) -> list:
    """``[(worker, positions)]``: each worker's shard cut into ``len(positions) // clients`` chunks (at least 1, at
    most ``most``), contiguous and as even as can be; which only the shard's size decides, so a round's merges are
    the same whichever worker finishes first, and whether or not its progress is shown."""
    clients = CHUNK_CLIENTS if clients is None else clients
    most = CHUNKS_PER_WORKER if most is None else most
    out = []
    for worker, positions in shards:
        count = min(most, max(1, len(positions) // clients))
        out.extend((worker, positions[a:b]) for a, b in shard_bounds(len(positions), count))
    return out


class RoundProgress:
    """How many of a round's clients are done, on ``stream`` (stderr): one line rewritten in place on a terminal
    (and erased when the round ends), a line every few seconds elsewhere. Nothing shows before the round has run
    :data:`PROGRESS_AFTER_S`, so short rounds say nothing."""

    def __init__(self, what: str, total: int, workers: int, stream=None, clock=time.monotonic):
        self.what, self.total, self.workers = what, total, workers
        self.stream = sys.stderr if stream is None else stream
        self.clock = clock
        self.began = clock()
        self.live = _isatty(self.stream)
        self.every = 0.25 if self.live else 5.0  # seconds between lines
        self._last = None  # when a line was last written
        self._shown = False

    def update(self, done: int) -> None:
        now = self.clock()
        if now - self.began < PROGRESS_AFTER_S or (self._last is not None and now - self._last < self.every):
            return
        self._last = now
        line = (f"{self.what}: {done:,}/{self.total:,} clients done ({100 * done // max(self.total, 1)}%) on "
                f"{self.workers} worker{'s' if self.workers != 1 else ''}, {now - self.began:.1f} s")
        self.stream.write(f"\r{line}\x1b[K" if self.live else line + "\n")
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        if self._shown and self.live:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


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
                 wrapping: RoundWrapping, local_build, on_client_error: str = "fail", record=None,
                 progress: Optional[bool] = None):
        self.module = module
        self.symbol = symbol
        self.type_signature = module[symbol].type_signature
        self.form = MapReduceForm(form_module)
        self.wrapping = wrapping
        self._cluster = cluster
        self._drop = on_client_error == "drop"
        self._progress = progress  # None: shown when stderr is a terminal
        self._record = record  # called with last_run after each call (the backend's last_round)
        self._parts = {p: local_build(form_module, p) for p in ("prepare", "merge", "report", "update")}
        self._bounds = {part: local_build(form_module, part)() for _, part, _ in SECURE_GROUPS}
        reason = self._unshardable()
        if reason:
            raise NotShardable(reason)
        shard = shard_module(self.form)
        self._serialized = serialize(shard)
        self._member = shard[SHARD].type_signature.parameter[1].member  # one client's data in the shard computation
        self._unshared: set = set()  # ids of ClientData that could not be sent to the workers (warned once)
        self._key = uuid.uuid4().hex
        self._lock = threading.Lock()  # one call at a time: a call updates what the workers hold
        self._module_ref = None
        self._generation = None  # the cluster start that _module_ref and _sent belong to
        self._local_build = local_build
        self._here = None
        #: chunk index -> (token, worker, bounds, data) last sent for it: data equal to it is not sent again
        self._sent: dict[int, tuple[str, int, tuple[int, int], Clients]] = {}
        #: what the last call did: {"computation", "clients", "shards": [(worker, positions)] (one per chunk),
        #: "reruns", "shards_reused", "by_id", "dropped": [(position, client id or None, message)], "worker_s":
        #: [{"load": s, "run": s}] (per chunk, the worker's seconds)} (positions a range, or the clients' places in
        #: the round when they were sent by id)
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
        if not partials:
            first = self.last_run["dropped"][0]
            raise FedcError(f"@{self.symbol}: every one of the {clients.count} clients failed and was dropped "
                            f"(on_client_error='drop'); the first, client {first[0]}: {first[2]}")
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
        named = self._named(clients)
        if named is not None:  # by client id: each worker makes its clients' datasets (and keeps them)
            shards = sticky_shards(clients.source.ids, len(workers))
        else:
            if clients.source is not None:  # named, but sent as data: loaded here, the user's datasets iterated
                clients = Clients.from_items(clients.items())
            shards = [(i, range(a, b)) for i, (a, b) in enumerate(shard_bounds(clients.count, len(workers)))]
        shards = chunked(shards)
        broadcast_ref = ray.put(broadcast)
        data: dict[int, Clients] = {}
        pending, assigned = {}, {}
        reused = 0
        for i, (worker, positions) in enumerate(shards):
            assigned[i] = worker
            if named is not None:
                pending[i] = self._submit(workers[worker], broadcast_ref, named(positions), i)
                continue
            data[i] = clients.select(positions.start, positions.stop)
            sent = self._sent.get(i)
            if (sent is not None and sent[1] == worker and sent[2] == (positions.start, positions.stop)
                    and same_values(sent[3], data[i])):
                reused += 1  # the worker has this chunk's data from the last call: it is not sent again
                pending[i] = self._submit(workers[worker], broadcast_ref, CachedShard(sent[0]), i)
            else:
                pending[i] = self._send(workers, worker, broadcast_ref, i, positions, data[i])

        def resend(i):
            if named is not None:
                return self._submit(workers[assigned[i]], broadcast_ref, named(shards[i][1]), i)
            return self._send(workers, assigned[i], broadcast_ref, i, shards[i][1], data[i])

        show = _isatty(sys.stderr) if self._progress is None else self._progress
        progress = RoundProgress(f"@{self.symbol}", clients.count, len(workers)) if show else None
        results: dict[int, Any] = {}
        errors: dict[int, FedcError] = {}  # the first (by chunk) is raised once the chunks before it are done
        reruns, done = 0, 0
        try:
            while pending and not (errors and min(pending) > min(errors)):
                by_ref = {ref: i for i, ref in pending.items()}
                ready, _ = ray.wait(list(by_ref), num_returns=1, timeout=0.25 if progress else None)
                for ref in ready:
                    i = by_ref[ref]
                    del pending[i]
                    try:
                        results[i] = ray.get(ref)
                        done += len(shards[i][1])
                    except Exception as e:
                        cause = getattr(e, "cause", None)
                        if isinstance(cause, ClientFailed):
                            errors[i] = self._client_error(cause, shards[i][1], clients)
                        elif isinstance(cause, ShardNotCached):  # a restarted worker: send the data
                            reused -= 1
                            pending[i] = resend(i)
                        elif _is_worker_death(ray, e) and reruns < 3 * len(shards) + len(workers):
                            reruns += 1
                            self._sent.pop(i, None)
                            assigned[i] = (assigned[i] + 1) % len(workers)
                            pending[i] = resend(i)
                        else:
                            errors[i] = self._error(e, shards[i][1], clients)
                if progress is not None:
                    progress.update(done)
        finally:
            if progress is not None:
                progress.close()
        if errors:
            for ref in pending.values():  # chunks after the failing one: their results are not wanted
                try:
                    ray.cancel(ref)
                except Exception:  # noqa: BLE001 - already finished, or its worker is gone: nothing to stop
                    pass
            raise errors[min(errors)]
        ids = clients.source.ids if named is not None else None
        dropped = sorted((shards[i][1][index], ids[shards[i][1][index]] if ids else None, message)
                         for i in range(len(shards)) for index, message, _ in results[i][1])
        self.last_run = {"computation": self.symbol, "clients": clients.count,
                         "shards": [(assigned[i], shards[i][1]) for i in range(len(shards))],
                         "reruns": reruns, "shards_reused": reused, "by_id": named is not None, "dropped": dropped,
                         "worker_s": [results[i][2] for i in range(len(shards))]}
        if self._record is not None:
            self._record(self.last_run)
        return [partial for i in range(len(shards)) for partial in results[i][0]]

    def _named(self, clients: Clients):
        """For clients named by a ClientData (:class:`fedc.values.ClientSource`) that the workers can make
        themselves: a function from a shard's positions to its :class:`.cluster.NamedShard`; else None (the
        clients' data is then sent). A ClientData that cannot be sent (pickled) is said once, as a warning."""
        source = clients.source
        if source is None or source.member != self._member:
            return None
        try:
            token, ref = self._cluster.share(source.origin)
        except NotShareable as e:
            if id(source.origin) not in self._unshared:
                self._unshared.add(id(source.origin))
                warnings.warn(f"@{self.symbol}: the workers cannot be sent the ClientData {source.origin!r} to make "
                              f"their clients' datasets themselves ({e}); its clients' data is sent instead",
                              FedcWarning, stacklevel=4)
            return None
        return lambda positions: NamedShard(token, [ref], tuple(source.ids[p] for p in positions), tuple(positions),
                                            source.what, source.repeatable)

    def _send(self, workers: list, worker: int, broadcast_ref, chunk: int, positions: range, shard: Clients):
        """Submits chunk ``chunk`` with its data, which the worker keeps (under a new token) for the next call."""
        token = uuid.uuid4().hex
        self._sent[chunk] = (token, worker, (positions.start, positions.stop), _snapshot(shard))
        return self._submit(workers[worker], broadcast_ref, ShippedShard(token, shard), chunk)

    def _submit(self, worker, broadcast_ref, shard, chunk: int):
        return worker.run_shard.remote(self._key, [self._module_ref], SHARD, broadcast_ref, shard, self._drop, chunk)

    def _client_error(self, failed: ClientFailed, positions, clients: Clients) -> FedcError:
        """The error of one client of a shard, naming it (its place in the round, and its id if it has one)."""
        position = positions[failed.index]
        name = f" ({clients.source.ids[position]!r})" if clients.source is not None else ""
        where = f"client {position}{name} of {clients.count}, on a worker, running @{self.symbol}"
        message = _message(failed.error)
        if failed.alone:  # it ran as the only client: its "client 0" is this one
            message = re.sub(r"\bclient 0\b", f"client {position}", message)
        return _placed(failed.error, message, where)

    def _error(self, error: BaseException, positions, clients: Clients) -> FedcError:
        cause = getattr(error, "cause", None) or error
        if isinstance(positions, range):
            which = f"clients {positions.start}–{positions.stop - 1} of {clients.count}"
        else:
            ids = ", ".join(repr(clients.source.ids[p]) for p in positions[:3]) + (", …" if len(positions) > 3 else "")
            which = f"{len(positions)} of the {clients.count} clients ({ids})"
        return _placed(cause, _message(cause), f"{which}, on a worker, running @{self.symbol}")


def _message(cause: BaseException) -> str:
    return cause.message if isinstance(cause, FedcError) else f"{type(cause).__name__}: {cause}"


def _placed(cause: BaseException, message: str, where: str) -> FedcError:
    """``cause`` (with ``message``) as the driver raises it: of its kind, at its location, saying where it ran."""
    if isinstance(cause, FedcError):
        return type(cause)(f"{message} ({where})", cause.location)
    return FedcError(f"{message} ({where})")


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


def _snapshot(clients: Clients) -> Clients:
    """A copy of a chunk's data, for the next call to be compared with: the caller's arrays may be changed in place
    before it (a copy that shared their memory would then compare equal, and the worker's stale data be used)."""
    def copy(value):
        return type(value)(copy(v) for v in value) if isinstance(value, (tuple, list)) else np.array(value)

    stacked = clients.stacked_if_present()
    if stacked is not None:
        return Clients.from_stacked(copy(stacked), clients.count)
    return Clients.from_items([copy(v) for v in clients.items()])


def _zip_clients(data: list) -> Clients:
    count = data[0].count
    columns = [d.items() for d in data]
    return Clients.from_items([tuple(column[i] for column in columns) for i in range(count)])
