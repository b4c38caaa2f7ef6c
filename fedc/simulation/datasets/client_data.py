"""``ClientData``: a federated dataset for simulations — client ids, and each client's ``tf.data.Dataset``.

Client ids exist only in simulation, to pick whose data takes part in a
round; the federated computations never see them. The interface and its
semantics are TFF's (``tff.simulation.datasets.ClientData``): the same seeds
shuffle clients into the same order (numpy's ``RandomState``, as TFF).

Two kinds are built here:

* :class:`ClientData` from a function (:meth:`ClientData.from_clients_and_tf_fn`)
  or preprocessed (:meth:`ClientData.preprocess`);
* :class:`TestClientData`: clients' data held as numpy arrays (a dict of
  client id to arrays, or :meth:`ClientData.from_arrays`: one set of arrays
  and the client of each example). It also gives the arrays themselves
  (:meth:`TestClientData.client_arrays`), which is how a backend can take a
  client's data without going through ``tf.data``.
"""

from __future__ import annotations

import abc
import collections
import difflib
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence, Union

import numpy as np

import fedc
from fedc import FedcTypeError, FedcValueError

__all__ = ["ClientData", "TestClientData"]

Seed = Optional[Union[int, Sequence[int]]]


def _tf():
    import tensorflow as tf

    return tf


def _checked_seed(seed: Seed, what: str) -> Seed:
    """``seed`` if numpy's RandomState takes it (None, or non-negative 32-bit integers), else a clear error."""
    def ok(x):
        return isinstance(x, (int, np.integer)) and not isinstance(x, bool) and 0 <= x < 2**32

    if seed is None or ok(seed) or (isinstance(seed, Sequence) and not isinstance(seed, str)
                                    and len(seed) > 0 and all(ok(x) for x in seed)):
        return seed
    raise FedcValueError(f"{what}: the seed must be None, an integer in [0, 2**32) or a non-empty sequence of "
                         f"them, got {seed!r}")


def _shuffled(client_ids: list, seed: Seed, what: str) -> list:
    ids = list(client_ids)
    np.random.RandomState(_checked_seed(seed, what)).shuffle(ids)
    return ids


def _not_a_computation(fn: Any, what: str) -> None:
    if isinstance(fn, (fedc.Computation, fedc.PolymorphicComputation)):
        raise FedcTypeError(f"{what} must be a Python function or tf.function that builds tf.data pipelines, "
                            f"not the fedc computation {fn.name!r}: tf.data calls it inside its own graphs, "
                            "where a fedc computation cannot run")
    if not callable(fn):
        raise FedcTypeError(f"{what} must be callable, got {type(fn).__name__}")


class ClientData(abc.ABC):
    """A federated dataset: ``client_ids`` and, for each, a ``tf.data.Dataset`` of its examples."""

    @property
    @abc.abstractmethod
    def client_ids(self) -> list[str]:
        """The clients' ids (strings), in a fixed order."""

    @property
    @abc.abstractmethod
    def serializable_dataset_fn(self) -> Callable:
        """A function from a client id (a ``str`` or a ``tf.string`` scalar) to that client's dataset.

        It is pure TensorFlow, so it can run inside a ``tf.function`` (for
        example in ``create_tf_dataset_from_all_clients``'s ``flat_map``).
        """

    @property
    @abc.abstractmethod
    def element_type_structure(self) -> Any:
        """The structure of ``tf.TensorSpec`` of one element of the clients' datasets."""

    def create_tf_dataset_for_client(self, client_id: str):
        """The ``tf.data.Dataset`` of client ``client_id``'s examples."""
        self._check_client(client_id)
        dataset = self._make_dataset(client_id)
        try:  # which ClientData made it, and for whom: fedc's workers can then make it themselves
            dataset.__fedc_client__ = (self._origin(), client_id)
        except AttributeError:
            pass
        return dataset

    def _make_dataset(self, client_id: str):
        """Client ``client_id``'s dataset (the id is known to be one of this ClientData's)."""
        return self.serializable_dataset_fn(client_id)

    def _origin(self) -> "ClientData":
        """The ClientData whose ``create_tf_dataset_for_client`` makes this one's datasets (itself, or a subset's
        parent's): what fedc sends to its workers, once, so that they make their clients' datasets themselves."""
        return self

    def __fedc_clients__(self) -> tuple["ClientData", list[str]]:
        """(the ClientData that makes the datasets, the client ids): how fedc takes a ClientData as client data."""
        return self._origin(), self.client_ids

    def __fedc_repeatable__(self) -> bool:
        """Whether a client's dataset, made again, gives the same elements: no shuffling or random ops in its
        pipeline (looked at once, in the first client's dataset graph). A worker keeps such a client's data."""
        repeatable = self.__dict__.get("_repeatable")
        if repeatable is None:
            repeatable = self.__dict__["_repeatable"] = _repeatable(self._make_dataset(self.client_ids[0]))
        return repeatable

    def __getstate__(self) -> dict:
        """What is sent to fedc's workers: the data and functions, not caches of TensorFlow objects (remade)."""
        state = dict(self.__dict__)
        state.pop("_client_id_set", None)
        for name in ("_table", "_rowids", "_element_spec"):
            if name in state:
                state[name] = None
        return state

    def _check_client(self, client_id: Any) -> None:
        if not isinstance(client_id, str):
            raise FedcTypeError(f"a client id is a str, got {type(client_id).__name__} {client_id!r}")
        if client_id not in self._id_set():
            close = difflib.get_close_matches(client_id, self.client_ids[:10_000], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise FedcValueError(f"{client_id!r} is not a client of this ClientData ({len(self.client_ids)} "
                                 f"clients, see .client_ids){hint}")

    def _id_set(self) -> frozenset:
        ids = self.__dict__.get("_client_id_set")
        if ids is None:
            ids = self.__dict__["_client_id_set"] = frozenset(self.client_ids)
        return ids

    def datasets(self, limit_count: Optional[int] = None, seed: Seed = None) -> Iterator:
        """Yields the clients' datasets in an order shuffled by ``seed`` (at most ``limit_count`` of them)."""
        if limit_count is not None and (not isinstance(limit_count, int) or limit_count < 0):
            raise FedcValueError(f"datasets: limit_count must be None or an integer >= 0, got {limit_count!r}")
        ids = _shuffled(self.client_ids, seed, "datasets")
        for client_id in ids[:limit_count]:
            yield self.create_tf_dataset_for_client(client_id)

    def create_tf_dataset_from_all_clients(self, seed: Seed = None):
        """One dataset of every client's examples, client after client (in an order shuffled by ``seed``).

        For centralized training to compare with; shuffle its examples before
        training on it.
        """
        tf = _tf()
        ids = _shuffled(self.client_ids, seed, "create_tf_dataset_from_all_clients")
        return tf.data.Dataset.from_tensor_slices(ids).flat_map(self.serializable_dataset_fn)

    def preprocess(self, preprocess_fn: Callable) -> "ClientData":
        """A ClientData whose every dataset is ``preprocess_fn(dataset)`` (a function of tf.data datasets)."""
        _not_a_computation(preprocess_fn, "preprocess_fn")
        return _Preprocessed(self, preprocess_fn)

    @classmethod
    def from_clients_and_tf_fn(cls, client_ids: Iterable[str], serializable_dataset_fn: Callable) -> "ClientData":
        """A ClientData of ``client_ids`` whose datasets ``serializable_dataset_fn(client_id)`` builds."""
        _not_a_computation(serializable_dataset_fn, "serializable_dataset_fn")
        return _FromFunction(client_ids, serializable_dataset_fn)

    @classmethod
    def from_arrays(cls, examples: Any, client_of_example: Any) -> "TestClientData":
        """A ClientData from one set of arrays (a dict, tuple or array; examples on the first axis).

        ``client_of_example[i]`` is the id of the client example ``i`` belongs
        to; each client's examples keep their order. Clients are ordered as
        they first appear.
        """
        owners = np.asarray(client_of_example)
        leaves = _leaves(examples)
        if owners.ndim != 1 or any(np.shape(leaf)[:1] != owners.shape for leaf in leaves):
            shapes = ", ".join(str(np.shape(leaf)) for leaf in leaves)
            raise FedcValueError(f"from_arrays: client_of_example has shape {owners.shape}; every array must have "
                                 f"one example per entry on its first axis (the arrays have shapes {shapes})")
        ids, first_seen, inverse = np.unique(owners, return_index=True, return_inverse=True)
        by_client = np.argsort(inverse, kind="stable")  # each client's examples together, in their order
        counts = np.bincount(inverse.reshape(-1), minlength=len(ids))
        ends = np.cumsum(counts)
        slices = collections.OrderedDict()
        for k in np.argsort(first_seen, kind="stable"):
            rows = by_client[ends[k] - counts[k]: ends[k]]
            slices[str(ids[k])] = _map_leaves(lambda a, rows=rows: np.asarray(a)[rows], examples)
        return TestClientData(slices)

    @classmethod
    def train_test_client_split(cls, client_data: "ClientData", num_test_clients: int,
                                seed: Seed = None) -> tuple["ClientData", "ClientData"]:
        """Splits the clients in two: ``num_test_clients`` held out (each with data), the rest for training."""
        count = len(client_data.client_ids)
        if not isinstance(num_test_clients, int) or num_test_clients <= 0:
            raise FedcValueError(f"train_test_client_split: num_test_clients must be an integer > 0, "
                                 f"got {num_test_clients!r}")
        if num_test_clients >= count:
            raise FedcValueError(f"train_test_client_split: {num_test_clients} test clients were asked for, but the "
                                 f"ClientData has {count} clients (at least one must stay for training)")
        candidates = _shuffled(client_data.client_ids, seed, "train_test_client_split")
        test, empty = [], []
        while len(test) < num_test_clients:
            if not candidates or len(empty) > 5 * num_test_clients + 10:
                raise FedcValueError(f"train_test_client_split: too many clients have no data ({len(empty)} "
                                     f"looked at were empty) to find {num_test_clients} test clients")
            client_id = candidates.pop()
            if _is_empty(client_data.create_tf_dataset_for_client(client_id)):
                empty.append(client_id)
            else:
                test.append(client_id)
        train = candidates + empty
        return client_data.subset(train), client_data.subset(test)

    def subset(self, client_ids: Iterable[str]) -> "ClientData":
        """This ClientData restricted to ``client_ids`` (in that order)."""
        ids = list(client_ids)
        for client_id in ids:
            self._check_client(client_id)
        return _Subset(self, ids)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {len(self.client_ids)} clients, elements {self.element_type_structure}>"


#: op names (``Experimental`` taken off) that make a pipeline's elements differ from one run to the next
_RANDOM_OPS = ("Random", "Shuffle", "Stateful", "Rng", "Sampling", "Multinomial", "TruncatedNormal", "PyFunc")


def _repeatable(dataset) -> bool:
    """Whether ``dataset`` gives the same elements each time it is made and iterated.

    False if its graph (the dataset ops and the functions they call) has a
    shuffle, a random op (``tf.random.stateless_*`` ops are repeatable), a
    Python function, or an op told it need not keep the elements' order —
    or if the graph cannot be read.
    """
    tf = _tf()
    try:
        graph_def = tf.compat.v1.GraphDef.FromString(dataset._as_serialized_graph().numpy())
    except Exception:  # noqa: BLE001 - an unreadable pipeline is not known to be repeatable
        return False
    nodes = list(graph_def.node) + [n for f in graph_def.library.function for n in f.node_def]
    for node in nodes:
        op = node.op[len("Experimental"):] if node.op.startswith("Experimental") else node.op
        if not op.startswith("Stateless") and any(word in op for word in _RANDOM_OPS):
            return False
        if "deterministic" in node.attr and node.attr["deterministic"].s == b"false":
            return False
    return True


def _is_empty(dataset) -> bool:
    for _ in dataset.take(1):
        return False
    return True


# As in tf.data: dicts and tuples are structures, a list is one array.

def _leaves(structure: Any) -> list:
    if isinstance(structure, Mapping):
        return [leaf for v in structure.values() for leaf in _leaves(v)]
    if isinstance(structure, tuple):
        return [leaf for v in structure for leaf in _leaves(v)]
    return [structure]


def _map_leaves(fn: Callable, structure: Any) -> Any:
    if isinstance(structure, Mapping):
        return type(structure)((k, _map_leaves(fn, v)) for k, v in structure.items()) \
            if isinstance(structure, collections.OrderedDict) else {k: _map_leaves(fn, v) for k, v in structure.items()}
    if isinstance(structure, tuple) and hasattr(structure, "_fields"):
        return type(structure)(*[_map_leaves(fn, v) for v in structure])
    if isinstance(structure, tuple):
        return tuple(_map_leaves(fn, v) for v in structure)
    return fn(structure)


class _FromFunction(ClientData):
    """Client ids and a function from id to dataset."""

    def __init__(self, client_ids: Iterable[str], dataset_fn: Callable, element_spec: Any = None):
        ids = list(client_ids)
        if not ids:
            raise FedcValueError("a ClientData needs at least one client id")
        bad = [c for c in ids if not isinstance(c, str)]
        if bad:
            raise FedcTypeError(f"client ids are strings, got {type(bad[0]).__name__} {bad[0]!r}")
        if len(set(ids)) != len(ids):
            repeated = next(c for c, n in collections.Counter(ids).items() if n > 1)
            raise FedcValueError(f"client id {repeated!r} appears more than once")
        self._ids = ids
        self._fn = dataset_fn
        self._element_spec = element_spec

    @property
    def client_ids(self) -> list[str]:
        return list(self._ids)

    @property
    def serializable_dataset_fn(self) -> Callable:
        return self._fn

    @property
    def element_type_structure(self) -> Any:
        if self._element_spec is None:
            self._element_spec = self._dataset(self._ids[0]).element_spec
        return self._element_spec

    def _dataset(self, client_id):
        tf = _tf()
        dataset = self._fn(client_id)
        if not isinstance(dataset, tf.data.Dataset):
            raise FedcTypeError(f"the dataset function returned {type(dataset).__name__} for client {client_id!r}, "
                                "not a tf.data.Dataset")
        return dataset

    def _make_dataset(self, client_id: str):
        return self._dataset(client_id)


class _Subset(_FromFunction):
    """Some of another ClientData's clients: its datasets are the other's."""

    def __init__(self, parent: ClientData, client_ids: list[str]):
        super().__init__(client_ids, parent.serializable_dataset_fn)
        self._parent = parent

    @property
    def element_type_structure(self) -> Any:
        return self._parent.element_type_structure

    def _make_dataset(self, client_id: str):
        return self._parent.create_tf_dataset_for_client(client_id)

    def _origin(self) -> ClientData:
        return self._parent._origin()


class _Preprocessed(ClientData):
    """Another ClientData's datasets, each passed through a function."""

    def __init__(self, underlying: ClientData, preprocess_fn: Callable):
        self._underlying = underlying
        self._preprocess = preprocess_fn
        self._element_spec = None

    @property
    def client_ids(self) -> list[str]:
        return self._underlying.client_ids

    @property
    def serializable_dataset_fn(self) -> Callable:
        underlying, preprocess = self._underlying.serializable_dataset_fn, self._preprocess
        return lambda client_id: preprocess(underlying(client_id))

    @property
    def element_type_structure(self) -> Any:
        if self._element_spec is None:
            self._element_spec = self.create_tf_dataset_for_client(self.client_ids[0]).element_spec
        return self._element_spec

    def _make_dataset(self, client_id: str):
        tf = _tf()
        dataset = self._preprocess(self._underlying.create_tf_dataset_for_client(client_id))
        if not isinstance(dataset, tf.data.Dataset):
            raise FedcTypeError(f"preprocess_fn returned {type(dataset).__name__}, not a tf.data.Dataset")
        return dataset

    def _id_set(self) -> frozenset:
        return self._underlying._id_set()


class TestClientData(ClientData):
    """Clients' data held in memory: ``{client_id: arrays}``, each client's arrays sliced into examples.

    ``arrays`` is what ``tf.data.Dataset.from_tensor_slices`` takes: an
    array, or a dict / ``OrderedDict`` / tuple of arrays with the examples on
    their first axis (the name is TFF's, which builds toy datasets with it; it
    is as fast for real data that fits in memory).
    """

    __test__ = False  # not a pytest test class, whatever its name

    def __init__(self, tensor_slices_dict: Mapping[str, Any]):
        if not isinstance(tensor_slices_dict, Mapping) or not tensor_slices_dict:
            raise FedcValueError("TestClientData takes a non-empty dict of client id to that client's arrays")
        self._slices: dict[str, Any] = {}
        first_spec = None
        for client_id, structure in tensor_slices_dict.items():
            if not isinstance(client_id, str):
                raise FedcTypeError(f"client ids are strings, got {type(client_id).__name__} {client_id!r}")
            arrays = _map_leaves(np.asarray, structure)
            leaves = _leaves(arrays)
            if not leaves or any(a.ndim == 0 for a in leaves) or len({len(a) for a in leaves}) != 1:
                shapes = ", ".join(str(a.shape) for a in leaves)
                raise FedcValueError(f"client {client_id!r}: every array needs the same number of examples on its "
                                     f"first axis (shapes {shapes})")
            spec = tuple((a.dtype.str, a.shape[1:]) for a in leaves)
            if first_spec is None:
                first_spec = (spec, client_id)
            elif spec != first_spec[0]:
                raise FedcValueError(f"the examples of client {client_id!r} ({_describe(leaves)}) differ from those "
                                     f"of client {first_spec[1]!r} ({_describe(_leaves(self._slices[first_spec[1]]))})"
                                     "; every client's examples have one structure")
            self._slices[client_id] = arrays
        self._ids = list(self._slices)
        self._table = None

    @property
    def client_ids(self) -> list[str]:
        return list(self._ids)

    def client_arrays(self, client_id: str) -> Any:
        """Client ``client_id``'s arrays (read-only views: the ClientData's own data)."""
        self._check_client(client_id)

        def view(a):
            v = a.view()
            v.flags.writeable = False
            return v

        return _map_leaves(view, self._slices[client_id])

    def _make_dataset(self, client_id: str):
        return _tf().data.Dataset.from_tensor_slices(self._slices[client_id])

    @property
    def element_type_structure(self) -> Any:
        return self.create_tf_dataset_for_client(self._ids[0]).element_spec

    def create_tf_dataset_from_all_clients(self, seed: Seed = None):
        # The number of examples is known here: say so, as Keras 3 warns "ran out of data" otherwise.
        total = sum(len(_leaves(arrays)[0]) for arrays in self._slices.values())
        dataset = super().create_tf_dataset_from_all_clients(seed)
        return dataset.apply(_tf().data.experimental.assert_cardinality(total))

    @property
    def serializable_dataset_fn(self) -> Callable:
        return self._dataset_for

    def _dataset_for(self, client_id):
        """The dataset of ``client_id`` (a str, or a tf.string scalar inside a graph: looked up in-graph)."""
        tf = _tf()
        if isinstance(client_id, str):
            return self.create_tf_dataset_for_client(client_id)
        table, starts, ends, columns = self._in_graph()
        index = table.lookup(client_id)  # -1 for an unknown id: the gathers below fail, naming index -1
        start, end = tf.gather(starts, index), tf.gather(ends, index)
        return tf.data.Dataset.from_tensor_slices(_map_leaves(lambda c: c[start:end], columns))

    def _in_graph(self):
        """Every client's examples concatenated, with a table of where each client's run starts and ends.

        Built once, eagerly (whichever graph asks first), and shared by every later call.
        """
        tf = _tf()
        if self._table is None:
            with tf.init_scope():
                lengths = np.asarray([len(_leaves(self._slices[c])[0]) for c in self._ids], np.int64)
                ends = np.cumsum(lengths)
                columns = _map_leaves(tf.constant, _concatenate([self._slices[c] for c in self._ids],
                                                                self._slices[self._ids[0]]))
                initializer = tf.lookup.KeyValueTensorInitializer(tf.constant(self._ids),
                                                                  tf.range(len(self._ids), dtype=tf.int64))
                self._table = (tf.lookup.StaticHashTable(initializer, default_value=-1),
                               tf.constant(ends - lengths), tf.constant(ends), columns)
        return self._table


def _describe(arrays: list) -> str:
    return ", ".join(f"{a.dtype.name}{list(a.shape[1:])}" for a in arrays)


def _concatenate(structures: list, like: Any) -> Any:
    flat = [_leaves(s) for s in structures]
    joined = iter([np.concatenate([f[k] for f in flat]) for k in range(len(flat[0]))])
    return _map_leaves(lambda _: next(joined), like)

