"""The tf backend: a computation lowered to one TensorFlow function per call signature.

``get_backend("tf").compile(module, symbol)`` verifies the module, checks
that every op in it has a TensorFlow lowering (:data:`RULES`, naming any that
does not) and returns a :class:`TFExecutable`. Calling it:

1. flattens the argument into arrays and a skeleton (:mod:`.values`);
2. on the first call with a given skeleton, shapes and dtypes (and number of
   clients), traces the whole computation into one ``tf.function``
   (:mod:`.graph`: broadcasts, the clients' work vectorized over the clients,
   the aggregations, the server's work) and keeps its concrete function;
3. runs that function once — Python does a fixed amount of work per call,
   whatever the number of clients — and raises the first run-time check that
   failed (an overflowing integer sum, a negative weight…) as the reference
   backend would;
4. turns the returned arrays into fedc values.

A computation whose value sizes are known only while it runs (a
``tf_computation`` that returns a dataset) runs eagerly instead, op by op,
with the same rules. TensorFlow places ops on a GPU when it has one.

``TFBackend(workers=N)`` (``fedc.set_default_backend("tf", workers=4)``) or
``TFBackend(address="auto")`` runs rounds on worker processes on Ray
(:mod:`.cluster`, :mod:`.sharded`): every computation from server values and
client data to server values runs as its MapReduce form, the clients
sharded over the workers and pre-aggregated there; anything else runs here,
in-process, as above. ``on_client_error="drop"`` lets such a round go on
without a client whose data or work fails (``last_round["dropped"]`` names
them); by default (``"fail"``) the round fails, naming the client. A round on
workers that runs longer than a second shows how many clients are done on
stderr when it is a terminal (``progress=True``: wherever it is; ``False``:
never).
"""

from __future__ import annotations

import sys
import threading
import warnings
from typing import Any, Optional

import numpy as np

from fedc.backends.base import Backend
from fedc.errors import FedcError, FedcWarning
from fedc.ir import building_blocks as bb
from fedc.ir.module import Module
from fedc.limits import deep_recursion
from fedc.types import FunctionType

from .cluster import RayCluster, check_options, import_ray
from .compiled import lower_compiled
from .graph import Graph, NeedsEager
from .intrinsics import RULES
from .sharded import NotShardable, ShardedRound
from .values import Shared, Stacked, eager_tensor, export, ingest, rebuild, restore, to_tensor, unshare

__all__ = ["MAX_TRACES", "RULES", "TFBackend", "TFExecutable"]

_EAGER = object()  # a signature whose calls run eagerly

#: Traced functions kept per executable (one per argument layout), the oldest dropped first.
MAX_TRACES = 32


class _Traced:
    __slots__ = ("function", "skeleton", "checks", "outputs")

    def __init__(self, function, skeleton, checks, outputs):
        self.function = function
        self.skeleton = skeleton
        self.checks = checks
        self.outputs = outputs


class TFExecutable:
    """A module's computation, traced into a ``tf.function`` per argument layout."""

    def __init__(self, module: Module, symbol: str):
        self.module = module
        self.symbol = symbol
        self.type_signature = module[symbol].type_signature
        self._traced: dict[tuple, Any] = {}
        self._inputs: dict[tuple, list] = {}
        self._lock = threading.Lock()
        #: whether the module draws random numbers: each call then gets a fresh key, its last input
        self._random = _draws_random(module)

    @property
    def traces(self) -> int:
        """How many argument layouts have been traced (each a concrete TensorFlow function)."""
        return sum(1 for v in self._traced.values() if v is not _EAGER)

    @deep_recursion
    def __call__(self, argument: Any = None, num_clients: Optional[int] = None) -> Any:
        import tensorflow as tf

        t = self.type_signature
        is_function = isinstance(t, FunctionType)
        parameter = t.parameter if is_function else None
        result_type = t.result if is_function else t
        flat: list = []
        skeleton = ingest(argument, parameter, flat) if parameter is not None else ("n",)
        if self._random:
            flat.append(_fresh_key())
        key = (skeleton, tuple((a.shape, a.dtype.str) for a in flat), num_clients)
        with self._lock:
            traced = self._traced.get(key)
        if traced is None:
            traced = self._trace(skeleton, flat, num_clients, is_function, result_type)
            with self._lock:
                if len(self._traced) >= MAX_TRACES:  # the oldest layout goes: memory stays bounded
                    self._traced.pop(next(iter(self._traced)))
                self._traced[key] = traced
        if traced is _EAGER:
            return self._eager(skeleton, flat, num_clients, is_function, result_type)
        try:
            outputs = traced.function(*self._tensors(key, flat))
        except tf.errors.OpError as e:
            raise FedcError(f"TensorFlow failed while running @{self.symbol} on the tf backend: {e.message}") from None
        shared = [item for item in flat if isinstance(item, Shared)]
        outputs = [unshare(o.numpy(), shared) if shared else o.numpy() for o in outputs]
        results = outputs[: traced.outputs]
        oks = outputs[traced.outputs: traced.outputs + len(traced.checks)]
        values = iter(outputs[traced.outputs + len(traced.checks):])
        for check, ok in zip(traced.checks, oks):
            check_values = [next(values) for _ in check.values]
            if not bool(ok):
                raise FedcError(check.message(*check_values), check.location)
        return restore(traced.skeleton, iter(results), result_type)

    def _tensors(self, key, flat: list) -> list:
        """The input tensors, reusing last call's where the same data is passed again (the ingestion cache).

        A clients' array assembled from pieces (:class:`.values.Stacked`: the
        clients' datasets, grouped) is compared piece by piece with the array
        the previous call with this layout assembled; if equal, that call's
        tensor is reused, so data passed again each round is stacked and
        copied into TensorFlow once. A :class:`.values.Shared` array is read
        in place for this call only; anything else is converted each call.
        """
        previous = self._inputs.get(key)
        tensors, kept = [], []
        for position, item in enumerate(flat):
            if isinstance(item, Stacked):
                if (previous is not None and previous[position] is not None
                        and item.equals(previous[position][0], previous[position][2])):
                    array, tensor, _ = previous[position]
                else:
                    array = item.array()
                    tensor = to_tensor(array)
                kept.append((array, tensor, item.parts))
                tensors.append(tensor)
            elif isinstance(item, Shared):  # read in place for this call only; not kept
                kept.append(None)
                tensors.append(item.tensor())
            else:
                kept.append(None)
                tensors.append(to_tensor(item))
        with self._lock:
            self._inputs = {key: kept}  # the last layout's data only: memory stays bounded
        return tensors

    def _body(self, graph: Graph, argument: Any, is_function: bool) -> Any:
        value = graph.symbol(self.symbol)
        return value(argument) if is_function else value

    def _trace(self, skeleton, flat, num_clients, is_function, result_type):
        import tensorflow as tf

        holder = {}

        def traced(*tensors):
            graph = Graph(self.module, num_clients, RULES, lower_compiled)
            if self._random:
                graph.entropy, tensors = tensors[-1], tensors[:-1]
            argument = rebuild(skeleton, iter(tensors))
            result = self._body(graph, argument, is_function)
            out: list = []
            holder["skeleton"] = export(graph, result, result_type, out)
            holder["checks"] = list(graph.checks)
            holder["outputs"] = len(out)
            oks = [tf.reduce_all(c.ok) for c in graph.checks]
            values = [tf.convert_to_tensor(v) for c in graph.checks for v in c.values]
            return out + oks + values

        specs = [tf.TensorSpec(a.shape, tf.string if a.dtype == object else tf.as_dtype(a.dtype)) for a in flat]
        try:
            function = tf.function(traced, autograph=False).get_concrete_function(*specs)
        except NeedsEager:
            return _EAGER
        except FedcError:
            raise
        except (ValueError, TypeError, tf.errors.OpError) as e:
            message = getattr(e, "message", None) or str(e)
            raise FedcError(f"the tf backend cannot lower @{self.symbol}: {message.splitlines()[0]}") from None
        return _Traced(function, holder["skeleton"], holder["checks"], holder["outputs"])

    def _eager(self, skeleton, flat, num_clients, is_function, result_type):
        import tensorflow as tf

        graph = Graph(self.module, num_clients, RULES, lower_compiled, eager=True)
        tensors = [eager_tensor(a) for a in flat]
        if self._random:
            graph.entropy, tensors = tensors[-1], tensors[:-1]
        argument = rebuild(skeleton, iter(tensors))
        try:
            result = self._body(graph, argument, is_function)
            out: list = []
            out_skeleton = export(graph, result, result_type, out)
        except tf.errors.OpError as e:
            raise FedcError(f"TensorFlow failed while running @{self.symbol} on the tf backend: {e.message}") from None
        return restore(out_skeleton, iter([np.asarray(o) for o in out]), result_type)


def _draws_random(module: Module) -> bool:
    """Whether a computation of ``module`` draws random numbers (a ``local.random_normal``, say)."""
    return any(isinstance(n, bb.Intrinsic) and n.definition.random for _, node in module.items() for n in node.walk())


def _fresh_key() -> np.ndarray:
    """128 bits from the operating system's CSPRNG, as TensorFlow's stateless generators take a key: int64[2]."""
    import secrets

    return np.frombuffer(secrets.token_bytes(16), dtype=np.int64).copy()


class TFBackend(Backend):
    """Runs verified IR as TensorFlow functions: whole calls traced once, clients vectorized."""

    name = "tf"
    rules = RULES

    def __init__(self, workers: Optional[int] = None, address: Optional[str] = None, on_client_error: str = "fail",
                 progress: Optional[bool] = None):
        import importlib.util

        try:
            found = importlib.util.find_spec("tensorflow") is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise FedcError("the tf backend needs TensorFlow, which is not installed in this Python "
                            f"({sys.executable}): install it with `pip install tensorflow-cpu` (or `tensorflow` "
                            "for a GPU), or run on the reference backend: fedc.set_default_backend('reference'), "
                            "or fedc run --backend reference")
        self.cluster: Optional[RayCluster] = None
        #: what the last round on the workers did (None before one ran): a dict with "computation", "clients",
        #: "dropped" ([(client's place in the round, its id or None, the error)]), "reruns", "shards", "by_id"
        self.last_round: Optional[dict] = None
        if on_client_error not in ("fail", "drop"):
            raise FedcError(f"the tf backend's on_client_error= is 'fail' (a failing client fails the round) or "
                            f"'drop' (the round goes on without it), not {on_client_error!r}")
        if on_client_error != "fail" and workers is None and address is None:
            raise FedcError("the tf backend's on_client_error='drop' applies to rounds on workers: give workers= "
                            "or address= too (in-process, a failing client fails the call)")
        self.on_client_error = on_client_error
        if progress not in (None, True, False):
            raise FedcError(f"the tf backend's progress= is True (show how many clients are done), False, or None "
                            f"(show it when stderr is a terminal), not {progress!r}")
        if progress is not None and workers is None and address is None:
            raise FedcError("the tf backend's progress= applies to rounds on workers: give workers= or address= "
                            "too (in-process, a round is one TensorFlow call)")
        self.progress = progress
        if workers is not None or address is not None:
            check_options(workers, address)
            import_ray()  # not installed: said now, not at the first round
            self.cluster = RayCluster(workers, address)
            self.round_pipeline = "to-mapreduce"

    def build(self, module: Module, symbol: str) -> TFExecutable:
        return TFExecutable(module, symbol)

    def build_round(self, module: Module, symbol: str, form: Module, wrapping) -> Any:
        if self.cluster is None:
            return self.build(module, symbol)
        try:
            return ShardedRound(self.cluster, module, symbol, form, wrapping, TFExecutable, self.on_client_error,
                                self._record, self.progress)
        except NotShardable as e:
            warnings.warn(f"@{symbol} runs in this process, not on the tf backend's workers: {e}", FedcWarning,
                          stacklevel=2)
            return self.build(module, symbol)

    def _record(self, run: dict) -> None:
        self.last_round = dict(run, dropped=list(run["dropped"]))

    def close(self) -> None:
        """Stops the workers (and the local Ray cluster this backend started)."""
        if self.cluster is not None:
            self.cluster.close()

    def __repr__(self) -> str:
        if self.cluster is None:
            return "<fedc backend 'tf'>"
        where = f", address={self.cluster.address!r}" if self.cluster.address else ""
        policy = f", on_client_error={self.on_client_error!r}" if self.on_client_error != "fail" else ""
        policy += f", progress={self.progress!r}" if self.progress is not None else ""
        return f"<fedc backend 'tf' (workers={self.cluster.requested_workers}{where}{policy})>"
