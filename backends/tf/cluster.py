"""The tf backend's worker processes on Ray: starting or joining a cluster, and ending what fedc started.

A :class:`RayCluster` is made when the backend is configured with
``workers=`` or ``address=``; it starts nothing until a round first needs
its workers. Then:

* without an address it starts a local Ray cluster (``ray.init``: no
  dashboard, the machine's CPUs, at least one per worker) and ``workers``
  worker processes, Ray actors of :class:`ShardWorker`, each given an equal
  share of the CPUs;
* with ``address`` (``"auto"``, ``"host:6379"`` or ``"ray://host:10001"``) it
  joins that cluster and starts ``workers`` actors there (by default one per
  CPU the cluster has).

TensorFlow in a worker runs as many threads as the worker has CPUs.
:meth:`RayCluster.close` kills the actors and, when this process started the
cluster, shuts it down, which ends Ray's own processes (its GCS server,
raylet and worker processes); the backend's ``close`` calls it, and fedc
closes every backend when the program exits. A Ray connection the program
made itself (``ray.init`` before fedc's first round) is used and left open.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import uuid
from typing import Any, Optional

from fedc.errors import FedcError

__all__ = ["CachedShard", "ClientFailed", "NamedShard", "NotShareable", "RayCluster", "ShardNotCached", "ShardWorker", "ShippedShard",
           "check_options", "import_ray"]

#: How long workers may take to start (import TensorFlow, fedc) before fedc says they cannot.
START_TIMEOUT_S = 300.0

#: How much of the clients' data loaded by id a worker keeps across rounds (MB; the least recently used goes
#: first). ``FEDC_WORKER_CACHE_MB`` in the environment sets it.
WORKER_CACHE_MB = 2048.0

#: How many ClientData a cluster and its workers keep (the most recently used).
SHARED_ORIGINS = 8

#: How many shards of clients named by id a worker keeps assembled (the most recently used).
SHARDS_BY_ID = 16


def check_options(workers: Any, address: Any) -> None:
    """Raises :class:`~fedc.FedcError` for a ``workers`` or ``address`` option that cannot be used."""
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise FedcError(f"the tf backend's workers= is a number of worker processes (1 or more), not {workers!r}")
    if address is not None and (not isinstance(address, str) or not address.strip()):
        raise FedcError(f"the tf backend's address= names a Ray cluster ('auto', 'host:port' or "
                        f"'ray://host:10001'), not {address!r}")
    if address is not None and address != "auto":
        _parse_address(address)


def import_ray():
    try:
        import ray
    except ImportError as e:
        raise FedcError(f"the tf backend's workers run on Ray, which cannot be imported here ({e}): install it "
                        "with `pip install 'ray>=2.30'` (fedc's install brings it), or run in-process without "
                        "workers=/address=") from None
    return ray


class ShippedShard:
    """A shard's client data, sent with a token under which the worker keeps it for the next call."""

    __slots__ = ("token", "clients")

    def __init__(self, token: str, clients: Any):
        self.token = token
        self.clients = clients

    def __reduce__(self):
        return (ShippedShard, (self.token, self.clients))


class CachedShard:
    """The shard the worker was last sent under ``token`` (the driver found this call's data equal to it)."""

    __slots__ = ("token",)

    def __init__(self, token: str):
        self.token = token

    def __reduce__(self):
        return (CachedShard, (self.token,))


class ShardNotCached(Exception):
    """The worker does not hold the shard a :class:`CachedShard` names (it was restarted): send the data."""


class NamedShard:
    """A shard's clients by id: the worker makes their datasets itself with the ClientData put in Ray under
    ``origin_token`` (``origin[0]``, an object ref), and keeps the values if ``repeatable``.

    ``positions`` are the clients' places in the round (errors name them), ``what`` the argument.
    """

    __slots__ = ("origin_token", "origin", "ids", "positions", "what", "repeatable")

    def __init__(self, origin_token: str, origin: list, ids: tuple, positions: tuple, what: str, repeatable: bool):
        self.origin_token = origin_token
        self.origin = origin
        self.ids = ids
        self.positions = positions
        self.what = what
        self.repeatable = repeatable

    def __reduce__(self):
        return (NamedShard, (self.origin_token, self.origin, self.ids, self.positions, self.what, self.repeatable))


class ClientFailed(Exception):
    """Client ``index`` of a shard failed: its data could not be loaded, or its work raised ``error`` — run
    ``alone``, so that the error's "client 0" is that client."""

    def __init__(self, index: int, error: Exception, alone: bool = False):
        super().__init__(index, error, alone)
        self.index = index
        self.error = error
        self.alone = alone


class NotShareable(Exception):
    """A value cannot be put in Ray's object store (it cannot be pickled); the message says why."""


def _nbytes(value: Any) -> int:
    if isinstance(value, (tuple, list)):
        return sum(_nbytes(v) for v in value)
    return int(getattr(value, "nbytes", 0))


class ShardWorker:
    """One worker process: compiles the rounds' shard computations and runs its shard of the clients.

    A Ray actor (``ray.remote`` is applied when the cluster starts, so this
    module imports no Ray). Modules arrive serialized (fedc's protobuf form:
    data, never code) and are compiled once with the in-process tf backend.
    """

    def __init__(self):
        import ray

        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
        self.threads = max(1, int(cpus))
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(self.threads)
        tf.config.threading.set_inter_op_parallelism_threads(self.threads)
        self._executables: dict[str, Any] = {}
        #: (round key, chunk) -> (token, the client data last sent for that chunk)
        self._shards: dict[tuple[str, int], tuple[str, Any]] = {}
        self._origins: "collections.OrderedDict[str, Any]" = collections.OrderedDict()  # token -> ClientData
        #: (origin token, client id, member type) -> the client's value, least recently used first
        self._loaded: "collections.OrderedDict[tuple, Any]" = collections.OrderedDict()
        self._loaded_bytes = 0
        #: (origin token, member type, client ids) -> the frozen Clients of those kept values, most recent last
        self._shards_by_id: "collections.OrderedDict[tuple, Any]" = collections.OrderedDict()
        self._cache_bytes = float(os.environ.get("FEDC_WORKER_CACHE_MB", WORKER_CACHE_MB)) * 2**20
        #: clients loaded by id, and those of them found in the cache, since the worker started
        self.loads = {"loaded": 0, "cached": 0}

    def ready(self) -> tuple[int, int]:
        """(this process's pid, its TensorFlow thread count): the worker is up."""
        return os.getpid(), self.threads

    def run_shard(self, key: str, serialized: list, symbol: str, broadcast: Any, shard: Any,
                  drop_failing: bool = False, chunk: int = 0) -> tuple[list, list, dict]:
        """Runs a round's shard computation (``@symbol`` of the module in ``serialized[0]``, compiled once as
        ``key``) on ``(broadcast, the shard's clients)``. ``shard`` is a :class:`ShippedShard` (kept for the next
        call as the round's chunk ``chunk``), a :class:`CachedShard` or a :class:`NamedShard`.

        Returns ``(partials, failures, seconds)``: the partial aggregates (the shard computation's result's second
        element) — one for the whole shard, or, when it failed, one per client that did not, in order — and
        ``failures``, ``[(client's index in the shard, message, location)]`` of the clients that failed, which
        are dropped; ``seconds``, where the worker's time went: ``{"load": making or finding the clients'
        values, "run": the shard computation}`` (compiling and tracing included on a first call). Unless
        ``drop_failing``, the first failing client is raised instead, as :class:`ClientFailed`. (Clients are run
        one by one only when the whole shard fails.)"""
        import time

        began = time.perf_counter()
        executable = self._executables.get(key)
        if executable is None:
            import ray

            from fedc.backends.base import get_backend
            from fedc.ir.serialization import deserialize

            module = deserialize(ray.get(serialized[0]))
            executable = self._executables[key] = get_backend("tf").compile(module, symbol)
        failures: list = []
        if isinstance(shard, NamedShard):
            clients, indices = self._named(shard, executable.type_signature.parameter[1].member, failures,
                                           drop_failing)
        elif isinstance(shard, CachedShard):
            held = self._shards.get((key, chunk))
            if held is None or held[0] != shard.token:
                raise ShardNotCached(shard.token)
            clients, indices = held[1], None
        else:
            clients, indices = _owned(shard.clients), None
            self._shards[(key, chunk)] = (shard.token, clients)
        loaded = time.perf_counter()
        partials = self._run(executable, broadcast, clients, indices, failures, drop_failing)
        return partials, failures, {"load": loaded - began, "run": time.perf_counter() - loaded}

    @staticmethod
    def _run(executable, broadcast: Any, clients: Any, indices: Optional[list], failures: list,
             drop_failing: bool) -> list:
        """The partials of the shard's clients (``indices``: their places in the shard, None for all)."""
        from fedc.errors import FedcError

        if clients.count == 0:
            return []
        try:
            return [executable((broadcast, clients), num_clients=clients.count)[1]]
        except FedcError as error:
            if clients.count == 1:
                index = indices[0] if indices else 0
                if not drop_failing:
                    raise ClientFailed(index, error, alone=True) from None
                failures.append((index, error.message, error.location))
                return []
            whole = error
        partials = []
        for k in range(clients.count):  # which clients fail: each alone
            try:
                partials.append(executable((broadcast, clients.select(k, k + 1)), num_clients=1)[1])
            except FedcError as error:
                index = indices[k] if indices is not None else k
                if not drop_failing:
                    raise ClientFailed(index, error, alone=True) from None
                failures.append((index, error.message, error.location))
        if len(partials) == clients.count:  # no client fails alone: the shard's failure is theirs together
            raise whole
        return partials

    def _named(self, shard: NamedShard, member, failures: list, drop_failing: bool) -> tuple[Any, list]:
        """The shard's clients' values, each from this worker's cache or loaded (and kept if repeatable), and
        their indices in the shard (a client whose data cannot be loaded is a failure)."""
        from fedc.errors import FedcError

        from fedc.values import Clients, freeze, load_client

        origin = self._origins.get(shard.origin_token)
        if origin is None:
            import ray

            origin = self._origins[shard.origin_token] = ray.get(shard.origin[0])
            while len(self._origins) > SHARED_ORIGINS:
                self._origins.popitem(last=False)
        self._origins.move_to_end(shard.origin_token)
        kind = str(member)
        values, indices = [], []
        for index, (client_id, position) in enumerate(zip(shard.ids, shard.positions)):
            key = (shard.origin_token, client_id, kind)
            value = self._loaded.get(key)
            if value is not None:
                self._loaded.move_to_end(key)
                self.loads["cached"] += 1
            else:
                try:
                    value = load_client(origin, client_id, member, f"{shard.what}, client {position}")
                except FedcError as error:
                    if not drop_failing:
                        raise ClientFailed(index, error) from None
                    failures.append((index, error.message, error.location))
                    continue
                self.loads["loaded"] += 1
                if shard.repeatable:
                    self._keep(key, freeze(value))
            values.append(value)
            indices.append(index)
        if failures or not shard.repeatable:
            return Clients.from_items(values), indices
        # The same clients as a recent call, every value the same kept object: the same (frozen) Clients, so
        # that what the tf backend derived from them (their grouping into batches) is used again.
        key = (shard.origin_token, kind, shard.ids)
        held = self._shards_by_id.get(key)
        if held is None or any(a is not b for a, b in zip(held.items(), values)):
            held = self._shards_by_id[key] = freeze(Clients.from_items(values))
            while len(self._shards_by_id) > SHARDS_BY_ID:
                self._shards_by_id.popitem(last=False)
        self._shards_by_id.move_to_end(key)
        return held, indices

    def _keep(self, key: tuple, value: Any) -> None:
        size = _nbytes(value)
        if size > self._cache_bytes:
            return
        self._loaded[key] = value
        self._loaded_bytes += size
        while self._loaded_bytes > self._cache_bytes:
            _, dropped = self._loaded.popitem(last=False)
            self._loaded_bytes -= _nbytes(dropped)

    def load_counts(self) -> dict:
        """How many clients this worker loaded by id, and found already loaded, since it started."""
        return dict(self.loads, kept=len(self._loaded), kept_mb=self._loaded_bytes / 2**20)


def _owned(clients: Any) -> Any:
    """Shipped clients as the worker keeps them: stacked arrays that TensorFlow can read in place on every call
    (copied once, if need be), or per-client values made read-only — the worker's own, which nothing changes, so
    that the next call's ingestion takes each piece it saw before without comparing it."""
    from fedc.values import Clients, freeze

    from .values import owned

    def own(value):
        return tuple(own(v) for v in value) if isinstance(value, tuple) else owned(value)

    stacked = clients.stacked_if_present()
    if stacked is None:
        return freeze(clients)
    return Clients.from_stacked(own(stacked), clients.count)


#: How long fedc waits for a Ray cluster's address to answer before saying it cannot be reached.
CONNECT_TIMEOUT_S = 10.0


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def _parse_address(address: str) -> tuple[str, int]:
    """``(host, port)`` of ``"host:port"`` or ``"ray://host:port"``; a :class:`~fedc.FedcError` if malformed."""
    target = address[len("ray://"):] if address.startswith("ray://") else address
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise FedcError(f"the tf backend's address= is 'auto', 'host:port' or 'ray://host:port', not {address!r}")
    return _split(target)


def _probe(address: str, target: tuple[str, int]) -> None:
    """Raises :class:`~fedc.FedcError` if ``target`` (``address`` parsed) does not accept a connection.

    (``ray.init`` retries an unreachable address for minutes; a user deserves the reason at once.)
    """
    import socket

    try:
        socket.create_connection(target, timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise FedcError(f"the tf backend could not start the Ray cluster at {address!r}: nothing answers there "
                        f"({type(e).__name__}: {e}); start one with `ray start --head`, or leave out address= "
                        "for a local cluster") from None


def _empty_working_dir() -> str:
    """An empty directory for the workers to start in (removed at exit)."""
    import atexit
    import shutil
    import tempfile

    path = tempfile.mkdtemp(prefix="fedc-workers-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def _connection(ray) -> Optional[str]:
    """This process's Ray connection now, or None: the GCS address and the id of the node it is on (a node
    started anew has a new id, though job ids restart at 1 with each cluster)."""
    if not ray.is_initialized():
        return None
    context = ray.get_runtime_context()
    return f"{context.gcs_address}/{context.get_node_id()}"


class _QuietRayStart:
    """While Ray starts, its notice that the cluster it started uses token authentication is not shown.

    (That is Ray's default and what fedc wants; fedc's users did not choose it
    and need not read about it each run.) Every other warning still shows.
    """

    LOGGER = "ray._private.authentication.authentication_token_setup"

    def __init__(self):
        self._logger = logging.getLogger(self.LOGGER)
        self._level = self._logger.level
        self._logger.setLevel(logging.ERROR)

    def restore(self) -> None:
        self._logger.setLevel(self._level)


class RayCluster:
    """The Ray cluster and the worker actors of one tf backend (see the module)."""

    def __init__(self, workers: Optional[int] = None, address: Optional[str] = None):
        check_options(workers, address)
        self.requested_workers = workers
        self.address = address
        self._lock = threading.Lock()
        self._workers: Optional[list] = None
        self._owns_ray = False
        #: TensorFlow's thread count in each worker (set when they start)
        self.threads: list[int] = []
        #: how many times the workers were started: what a round keeps in Ray (its module, the shards it sent)
        #: belongs to one start
        self.generation = 0
        self._connection: Optional[str] = None  # the Ray connection the workers were started in
        #: id(value) -> (value, token, object ref): what :meth:`share` put in Ray in this start, oldest first
        self._shared: "collections.OrderedDict[int, tuple]" = collections.OrderedDict()

    @property
    def started(self) -> bool:
        return self._workers is not None

    def workers(self) -> list:
        """The worker actors, started on first use (and again after :meth:`close`)."""
        with self._lock:
            if self._workers is not None and _connection(import_ray()) != self._connection:
                # Ray was shut down under us (by another backend that started it), maybe started again: anew
                self._workers, self._owns_ray = None, False
            if self._workers is None:
                self._start()
            return list(self._workers)

    def share(self, value: Any) -> tuple[str, Any]:
        """``(token, object ref)`` of ``value`` put in Ray's object store, once per start of the workers (the
        :data:`SHARED_ORIGINS` most recent are kept); :class:`NotShareable` if it cannot be pickled."""
        ray = import_ray()
        with self._lock:
            generation = self.generation
            held = self._shared.get(id(value))
            if held is not None and held[0] is value and held[3] == generation:
                self._shared.move_to_end(id(value))
                return held[1], held[2]
        try:
            ref = ray.put(value)
        except Exception as e:  # noqa: BLE001 - Ray's pickling fails in many ways; each says why
            raise NotShareable(f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
        token = uuid.uuid4().hex
        with self._lock:
            self._shared[id(value)] = (value, token, ref, generation)
            while len(self._shared) > SHARED_ORIGINS:
                self._shared.popitem(last=False)
        return token, ref

    def load_counts(self) -> list[dict]:
        """Per worker: how many clients it loaded by id, and found already loaded (:class:`NamedShard`)."""
        import ray

        return ray.get([w.load_counts.remote() for w in self.workers()], timeout=START_TIMEOUT_S)

    def worker_pids(self) -> list[int]:
        """The process ids of the workers now (a worker Ray restarted has a new one)."""
        import time

        import ray

        pids = []
        deadline = time.monotonic() + START_TIMEOUT_S
        for worker in self.workers():
            while True:
                try:
                    pids.append(ray.get(worker.ready.remote(), timeout=START_TIMEOUT_S)[0])
                    break
                except ray.exceptions.ActorUnavailableError:  # restarting: ask again once it is up
                    if time.monotonic() > deadline:
                        raise FedcError("a worker of the tf backend did not come back after a restart") from None
                    time.sleep(0.1)
        return pids

    def _start(self) -> None:
        ray = import_ray()
        cpus = os.cpu_count() or 1
        target = _parse_address(self.address) if self.address not in (None, "auto") else None
        if ray.is_initialized():  # one Ray connection per process: this backend's address must be that one's
            current = ray.get_runtime_context().gcs_address
            if target is not None and not self.address.startswith("ray://") and target != _split(current):
                raise FedcError(f"the tf backend cannot join the Ray cluster at {self.address!r}: this process is "
                                f"already connected to the one at {current!r} (Ray allows one per process)")
        else:
            # The workers' working directory is an empty one of fedc's: Ray otherwise puts the driver's current
            # directory first on the workers' sys.path, and run from a fedc checkout (a `fedc/` folder whose
            # mapped subpackages live beside it) that would shadow the installed fedc.
            options = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
                           configure_logging=True, runtime_env={"working_dir": _empty_working_dir()})
            if target is not None:
                _probe(self.address, target)
            quiet = _QuietRayStart()
            try:
                if self.address is None:
                    ray.init(num_cpus=max(cpus, self.requested_workers or 1), **options)
                else:
                    ray.init(address=self.address, **options)
            except Exception as e:  # ConnectionError, ValueError, RuntimeError, …: all say why
                where = f"the Ray cluster at {self.address!r}" if self.address else "a local Ray cluster"
                raise FedcError(f"the tf backend could not start {where}: {type(e).__name__}: {e}") from None
            finally:
                quiet.restore()
            self._owns_ray = True
        count = self.requested_workers or max(1, int(ray.cluster_resources().get("CPU", cpus)))
        # An equal share of the CPUs free now (another backend's workers may hold some): whole CPUs when there
        # are enough, else a fraction (Ray then shares CPUs between workers instead of waiting for free ones).
        free = float(ray.available_resources().get("CPU", 0.0))
        share = free / count
        share = float(int(share)) if share >= 1 else round(share, 4)
        actor = ray.remote(num_cpus=share, max_restarts=-1, max_task_retries=0)(ShardWorker)
        handles = [actor.remote() for _ in range(count)]
        try:
            ready = ray.get([h.ready.remote() for h in handles], timeout=START_TIMEOUT_S)
        except Exception as e:
            for h in handles:
                ray.kill(h)
            self._stop_ray(ray)
            raise FedcError(f"the tf backend's {count} worker(s) could not start on Ray "
                            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); a worker needs "
                            "fedc and TensorFlow installed in its Python") from None
        self.threads = [threads for _, threads in ready]
        self._shared.clear()
        self._workers = handles
        self._connection = _connection(ray)
        self.generation += 1

    def _stop_ray(self, ray) -> None:
        if self._owns_ray:
            self._owns_ray = False
            ray.shutdown()

    def close(self) -> None:
        """Kills the workers and shuts down the cluster if this process started it."""
        with self._lock:
            handles, self._workers = self._workers, None
            if handles is None and not self._owns_ray:
                return
            import ray

            if ray.is_initialized():  # (a Ray call after ray.shutdown would start a new local cluster)
                for h in handles or ():
                    try:
                        ray.kill(h)
                    except Exception:
                        pass
            self.threads = []
            self._stop_ray(ray)
