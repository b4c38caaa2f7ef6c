"""Lowering IR to TensorFlow: the values of a computation while its graph is built, and the builder.

:class:`Graph` evaluates a verified computation the way the reference
interpreter does, but every operation it performs builds TensorFlow ops in
the graph being traced (inside one ``tf.function``), so a whole call —
broadcasts, the clients' work, the aggregations, the server's update — is one
TensorFlow program. Values while building:

* a tensor is a ``tf.Tensor``; a struct a tuple of values;
* ``T@SERVER`` and all-equal ``T@CLIENTS`` are the member value itself;
* ``{T}@CLIENTS`` is a :class:`ClientValues`: the clients' values *stacked*
  (every tensor with a leading client axis) when they have one shape, else a
  list with one value per client;
* a sequence is a :class:`SequenceValue`: its elements as *segments*, runs of
  elements of one shape stacked along a leading step axis (a client's batches
  of 20 and its last, smaller batch are two segments);
* a function is a Python callable from value to value.

A function mapped over stacked clients is vectorized (``tf.vectorized_map``):
traced once for one client, it runs for all of them in one set of ops.

Run-time conditions that the reference backend raises on (an integer sum
that overflows, a negative weight, a secure-sum input out of range) are
recorded with :meth:`Graph.check`: the executable returns each condition next
to the result and raises the first that failed as a :class:`~fedc.FedcError`.
"""

from __future__ import annotations

import contextlib
import inspect
from typing import Any, Callable, Optional

import numpy as np

from fedc import limits, tensorflow_graphs
from fedc.errors import FedcError
from fedc.ir import building_blocks as bb
from fedc.ir.evaluation import Evaluator
from fedc.ir.module import Module
from fedc.types import SequenceType, StructType, TensorType, Type

__all__ = ["Check", "ClientValues", "Graph", "NeedsEager", "NotVectorizable", "SequenceValue", "checked_outputs",
           "index_value", "register_pfor_converters"]


class NeedsEager(Exception):
    """Raised while tracing when a value's size is known only at run time (a dataset a graph returns)."""


class NotVectorizable(Exception):
    """Raised inside a vectorized trace when a function cannot run for all clients at once."""


def _tf():
    import tensorflow as tf

    return tf


_converters_registered = False


def register_pfor_converters() -> None:
    """Teaches ``tf.vectorized_map`` ops it lacks, so it need not fall back to a loop (and warn) on them.

    ``Bitcast`` (Keras 3's softmax output passes through one) reinterprets the
    innermost dimension, so a stacked input converts as itself. TensorFlow's
    registry is internal: if it moves, vectorized_map falls back as before.
    """
    global _converters_registered
    if _converters_registered:
        return
    _converters_registered = True
    try:
        import tensorflow as tf
        from tensorflow.python.ops.parallel_for import pfor
    except ImportError:
        return
    if "Bitcast" in getattr(pfor, "_pfor_converter_registry", {"Bitcast": None}):
        return

    @pfor.RegisterPFor("Bitcast")
    def _convert_bitcast(pfor_input):
        return pfor.wrap(tf.bitcast(pfor_input.stacked_input(0), pfor_input.get_attr("type")), True)


class ClientValues:
    """A ``{T}@CLIENTS`` value while building: stacked (leading client axis), zipped, or one value per client.

    ``zipped`` is a tuple of ClientValues (a ``federated_zip`` of parts kept
    apart, so a stacked part stays stacked when another part is not).
    ``grouped`` is a list of ``(clients, stacked)``: clients whose values have
    one layout (sequences included: their segments' tensors are
    ``[clients, steps, ...]``), stacked together — how client datasets arrive,
    and how a large array that TensorFlow shares without a copy arrives (its
    first few clients copied, the 64-byte-aligned rest shared: two ranges).
    ``clients`` is a tuple or a ``range`` of client indices.
    """

    __slots__ = ("count", "stacked", "zipped", "grouped", "_items")

    def __init__(self, count: int, stacked: Any = None, items: Optional[list] = None, zipped: Optional[tuple] = None,
                 grouped: Optional[list] = None):
        self.count = count
        self.stacked = stacked
        self.zipped = zipped
        self.grouped = grouped
        self._items = items

    def items(self) -> list:
        if self._items is None:
            if self.grouped is not None:
                items: list = [None] * self.count
                for clients, stacked in self.grouped:
                    for position, c in enumerate(clients):
                        items[c] = _index(stacked, position)
                self._items = items
            elif self.zipped is not None:
                self._items = [tuple(parts) for parts in zip(*(p.items() for p in self.zipped))]
            else:
                self._items = [_index(self.stacked, i) for i in range(self.count)]
        return self._items

    def tensor_groups(self) -> Optional[list]:
        """The groups, if every group's value is a structure of tensors (no sequences), else None."""
        if self.grouped is None:
            return None
        tf = _tf()
        if all(all(tf.is_tensor(leaf) for leaf in leaves(stacked)) for _, stacked in self.grouped):
            return self.grouped
        return None

    def stacked_value(self) -> Any:
        """The clients' values stacked in client order: ``stacked``, tensor groups put together, or zipped values
        whose parts all stack; else None."""
        if self.stacked is not None:
            return self.stacked
        if self.zipped is not None:
            parts = [part.stacked_value() for part in self.zipped]
            if any(part is None for part in parts):
                return None
            self.stacked = tuple(parts)
            return self.stacked
        groups = self.tensor_groups()
        if not groups:
            return None
        tf = _tf()
        joined = tree_map(lambda *parts: tf.concat(parts, axis=0), *[stacked for _, stacked in groups])
        if not _consecutive([clients for clients, _ in groups], self.count):
            order = np.fromiter((c for clients, _ in groups for c in clients), np.int64, self.count)
            position = np.argsort(order)
            joined = tree_map(lambda a: tf.gather(a, position), joined)
        self.stacked = joined  # built once per value
        return joined

    def __repr__(self) -> str:
        form = ("stacked" if self.stacked is not None else "zipped" if self.zipped is not None
                else "grouped" if self.grouped is not None else "items")
        return f"ClientValues({self.count}, {form})"


def _consecutive(memberships: list, count: int) -> bool:
    """Whether the groups' clients, one group after another, are 0, 1, …, count - 1."""
    start = 0
    for clients in memberships:
        if isinstance(clients, range) and clients.step == 1:
            if clients.start != start:
                return False
            start = clients.stop
        else:
            if list(clients) != list(range(start, start + len(clients))):
                return False
            start += len(clients)
    return start == count


def index_value(value: Any, i: int) -> Any:
    """Member ``i`` of a value stacked over clients (tensors, structs, sequences stacked as ``[clients, steps, ...]``)."""
    return _index(value, i)


def _index(value: Any, i: int) -> Any:
    if isinstance(value, tuple):
        return tuple(_index(v, i) for v in value)
    if isinstance(value, SequenceValue):  # a sequence stacked over clients: its segments are [clients, steps, ...]
        return SequenceValue([_index(segment, i) for segment in value.segments])
    return value[i]


def tree_map(fn: Callable, *trees):
    if isinstance(trees[0], tuple):
        return tuple(tree_map(fn, *parts) for parts in zip(*trees))
    return fn(*trees)


def leaves(tree) -> list:
    if isinstance(tree, tuple):
        return [leaf for part in tree for leaf in leaves(part)]
    return [tree]


class SequenceValue:
    """A sequence while building: ``segments``, each an element structure stacked along a step axis."""

    __slots__ = ("segments",)

    def __init__(self, segments: list):
        self.segments = list(segments)

    @staticmethod
    def segment_length(segment: Any) -> int:
        first = leaves(segment)[0]
        return int(first.shape[0])

    def __len__(self) -> int:
        return sum(self.segment_length(s) for s in self.segments)

    def elements(self) -> list:
        return [_index(segment, i) for segment in self.segments for i in range(self.segment_length(segment))]

    @classmethod
    def from_elements(cls, elements: list) -> "SequenceValue":
        """Groups consecutive elements of one shape into segments."""
        tf = _tf()
        segments, run, key = [], [], None
        for element in elements:
            k = tuple((tuple(leaf.shape.as_list()), leaf.dtype) for leaf in leaves(element))
            if run and k != key:
                segments.append(tree_map(lambda *xs: tf.stack(xs), *run))
                run = []
            run.append(element)
            key = k
        if run:
            segments.append(tree_map(lambda *xs: tf.stack(xs), *run))
        return cls(segments)


class Check:
    """A run-time condition: ``ok`` (a bool tensor) and the error to raise when it is false."""

    __slots__ = ("ok", "message", "values", "location")

    def __init__(self, ok, message: Callable[..., str], values: tuple = (), location=None):
        self.ok = ok
        self.message = message  # called with the run-time values of ``values`` (numpy)
        self.values = values
        self.location = location


class Graph(Evaluator):
    """Builds the TensorFlow ops of one computation of a module (see the module docstring).

    The walk over the IR is :class:`fedc.ir.evaluation.Evaluator`'s; this
    class says what lambdas, intrinsics, literals and compiled blocks become.
    """

    backend = "the tf backend"
    cannot = "cannot lower"

    def __init__(self, module: Module, num_clients: Optional[int], rules: dict, lower_compiled: Callable,
                 eager: bool = False):
        super().__init__(module, num_clients)
        self.lower_compiled = lower_compiled  # (graph, Compiled node) -> its function value
        #: the call's random key (int64[2], fresh from the OS's CSPRNG each call) when the module draws random
        #: numbers, and how many draws were made from it so far
        self.entropy = None
        self.draws = 0
        self.rules = rules
        self.eager = eager
        self.checks: list[Check] = []
        self.vectorizing = 0  # > 0 while a function is traced for all clients at once (tf.vectorized_map)
        self._location = None

    # ------------------------------------------------------------------
    # Run-time conditions

    def check(self, ok, message: Callable[..., str], *values) -> None:
        """Records that ``ok`` must hold at run time (eagerly: tests it now).

        ``message(*values)`` is the error, given the run-time values of the
        tensors ``values`` (scalars, when the check is made inside a function
        mapped over clients or folded in a loop).
        """
        if self.eager and not self.checks_captured():
            if not bool(_tf().reduce_all(ok)):
                raise FedcError(message(*[np.asarray(v) for v in values]), self._location)
            return
        self.checks.append(Check(ok, message, values, self._location))

    def checks_captured(self) -> bool:
        return bool(getattr(self, "_capturing", 0))

    @contextlib.contextmanager
    def capturing(self):
        """Collects the checks made inside (a vectorized or looped trace), to carry them out as tensors."""
        saved = self.checks
        self.checks = []
        self._capturing = getattr(self, "_capturing", 0) + 1
        collected: list[Check] = []
        try:
            yield collected
        finally:
            collected.extend(self.checks)
            self.checks = saved
            self._capturing -= 1

    def add_checks(self, checks: list[Check], oks: list, values: Optional[list] = None) -> None:
        """Re-records captured ``checks``, given their conditions ``oks`` computed outside the trace.

        Each ``ok`` may have a leading axis (one per client of a vectorized
        map); ``values[i]`` then holds check i's values with the same axis,
        and the message shows those of the first member that failed.
        """
        tf = _tf()
        values = values if values is not None else [[] for _ in checks]
        for check, ok, vals in zip(checks, oks, values):
            saved = self._location
            self._location = check.location
            try:
                message = check.message
                if ok.shape.rank:
                    first = tf.argmin(tf.cast(tf.reshape(ok, [-1]), tf.int32))
                    vals = [tf.gather(v, first) for v in vals]
                    if "client" in inspect.signature(message).parameters:  # the message names the client
                        vals.append(first)
                        message = (lambda m: lambda *v: m(*v[:-1], client=int(v[-1])))(message)
                self.check(tf.reduce_all(ok), message, *vals)
            finally:
                self._location = saved

    # ------------------------------------------------------------------
    # What the IR's nodes become (the walk is the Evaluator's)

    def literal(self, node: bb.Literal) -> Any:
        return literal(node.value, node.type_signature)

    def compiled(self, node: bb.Compiled) -> Any:
        return self.lower_compiled(self, node)

    def closure(self, node: bb.Lambda, env: dict) -> Callable:
        def closure(argument=None):
            inner = env
            if node.parameter_name is not None:
                inner = dict(env)
                inner[node.parameter_name] = argument
            return self.evaluate(node.result, inner)

        closure.parameter_type = node.parameter_type
        closure.lift_over_clients = lambda clients: self.lifted(node, env, clients)
        return closure

    def lifted(self, node: bb.Lambda, env: dict, clients: "ClientValues") -> Optional["ClientValues"]:
        """The lambda ``node`` applied to every client's value, evaluated once over all of them (or None).

        The body is walked with its parameter bound to ``clients`` itself:
        selections and structs of client values stay client values, and a call
        on one maps its function over the clients (:meth:`map_clients`), so a
        ``tf_computation`` that reduces its client's dataset runs as its plan
        over all clients (:mod:`.datasets`) even inside a lambda (the MapReduce
        form's ``work``). None when the body does something this walk does not
        lift (a nested lambda that uses a client value, say): the caller then
        maps client by client.
        """
        inner = dict(env)
        inner[node.parameter_name] = _Lifted(clients)
        try:
            result = self._lifted_walk(node.result, inner)
        except _NotLiftable:
            return None
        return result.clients if isinstance(result, _Lifted) else broadcast_to_clients(result, clients.count)

    def _lifted_walk(self, node: bb.Node, env: dict) -> Any:
        kind = type(node)
        if kind is bb.Reference:
            return env[node.name]
        if kind is bb.Selection:
            source = self._lifted_walk(node.source, env)
            if isinstance(source, _Lifted):
                return _Lifted(select_clients(source.clients, node.resolved_index))
            return self.select(source, node.resolved_index)
        if kind is bb.Struct:
            parts = [self._lifted_walk(value, env) for _, value in node.elements]
            if not any(isinstance(p, _Lifted) for p in parts):
                return tuple(parts)
            count = next(p.clients.count for p in parts if isinstance(p, _Lifted))
            return _Lifted(ClientValues(count, zipped=tuple(
                p.clients if isinstance(p, _Lifted) else broadcast_to_clients(p, count) for p in parts)))
        if kind is bb.Block:
            inner = dict(env)
            for name, value in node.locals:
                inner[name] = self._lifted_walk(value, inner)
            return self._lifted_walk(node.result, inner)
        if kind is bb.Call:
            function = self._lifted_walk(node.function, env)
            if isinstance(function, _Lifted):
                raise _NotLiftable("a function value per client")
            if node.argument is None:
                return function(None)
            argument = self._lifted_walk(node.argument, env)
            if isinstance(argument, _Lifted):
                return _Lifted(self.map_clients(function, argument.clients))
            return function(argument)
        if any(isinstance(v, _Lifted) for v in env.values()) and _uses_any(node, env):
            raise _NotLiftable(type(node).__name__)
        return self.evaluate(node, env)

    def intrinsic(self, node: bb.Intrinsic) -> Callable:
        rule = self.rules[node.uri]
        definition = node.definition
        attrs = definition.attr_values(dict(node.attrs))
        signature = node.type_signature

        def call(argument=None):
            saved = self._location
            self._location = node.location or saved  # an op without one reports its enclosing op's
            try:
                return rule(self, argument, signature, attrs)
            except FedcError as e:
                if e.location is None and node.location is not None:
                    raise type(e)(e.message, node.location) from None
                raise
            finally:
                self._location = saved

        call.parameter_type = signature.parameter
        return call

    # ------------------------------------------------------------------
    # Clients

    def map_clients(self, function: Callable, value: ClientValues) -> ClientValues:
        """``function`` applied to every client's value: vectorized when the values are stacked.

        A function that knows how to run over all clients at once (a
        ``tf_computation`` that reduces its client's dataset, :mod:`.datasets`)
        does so.
        """
        over_clients = getattr(function, "map_over_clients", None)
        if over_clients is not None and value.count:
            mapped = over_clients(value)
            if mapped is not None:
                return mapped
        lift = getattr(function, "lift_over_clients", None)
        if lift is not None and value.count and _takes_sequences(function):  # a lambda over clients' datasets
            mapped = lift(value)
            if mapped is not None:
                return mapped
        # Zipped values (a client's data with the broadcast, say) whose parts all stack, stack together.
        stacked = value.stacked if value.stacked is not None or value.zipped is None else value.stacked_value()
        if value.count and stacked is not None and not _takes_sequences(function):
            try:
                return ClientValues(value.count, stacked=self.vectorized(function, stacked))
            except NotVectorizable:
                pass
        groups = value.tensor_groups() if value.count and not _takes_sequences(function) else None
        if groups:
            try:
                return ClientValues(value.count, grouped=[(clients, self.vectorized(function, stacked))
                                                          for clients, stacked in groups])
            except NotVectorizable:
                pass
        return ClientValues(value.count, items=[function(item) for item in value.items()])

    def vectorized(self, function: Callable, stacked: Any) -> Any:
        """``function`` of one member, run on every row of ``stacked`` at once (``tf.vectorized_map``)."""
        tf = _tf()
        holder = {}

        def body(member):
            with self.capturing() as checks:
                result = function(_fix_struct(member, stacked))
            holder["structure"] = result
            holder["checks"] = checks
            flat = leaves(result)
            if not all(tf.is_tensor(leaf) for leaf in flat):
                raise NotVectorizable("the function's result is not a tensor structure")
            # A first output that is always there: a function of no tensors still maps to something.
            return [tf.zeros([], tf.int8)] + flat + [tf.reduce_all(c.ok) for c in checks] + \
                [v for c in checks for v in c.values]

        flat_in = leaves(stacked)
        if not flat_in:
            raise NotVectorizable("no tensors to map over")
        count_clients = int(flat_in[0].shape[0])
        register_pfor_converters()
        self.vectorizing += 1
        try:
            outputs = tf.vectorized_map(body, flat_in if len(flat_in) != 1 or isinstance(stacked, tuple)
                                        else flat_in[0], fallback_to_while_loop=True)
        finally:
            self.vectorizing -= 1
        outputs = list(outputs)[1:]
        checks = holder["checks"]
        count = len(leaves(holder["structure"]))
        results = outputs[:count]
        for r in results:  # refused before anything is allocated: the shapes are known while tracing
            if r.shape.is_fully_defined():
                limits.check_allocation(tuple(r.shape.as_list()), r.dtype.size or 4,
                                        f"a value mapped over {count_clients} clients")
        oks = outputs[count: count + len(checks)]
        rest = iter(outputs[count + len(checks):])
        self.add_checks(checks, oks, [[next(rest) for _ in c.values] for c in checks])
        iterator = iter(results)
        return tree_map(lambda _: next(iterator), holder["structure"])

    def as_clients(self, value: Any, what: str) -> ClientValues:
        """A ``{T}@CLIENTS`` value; an all-equal value is given to every client."""
        if isinstance(value, ClientValues):
            return value
        count = self.clients_count(what)
        return broadcast_to_clients(value, count)


def broadcast_to_clients(value: Any, count: int) -> ClientValues:
    tf = _tf()
    if all(tf.is_tensor(leaf) for leaf in leaves(value)):
        return ClientValues(count, stacked=tree_map(lambda t: tf.broadcast_to(t[None], [count] + t.shape.as_list())
                                                    if t.shape.is_fully_defined()
                                                    else tf.tile(t[None], [count] + [1] * t.shape.rank), value))
    return ClientValues(count, items=[value] * count)


class _Lifted:
    """A value of the member type standing for every client's (inside :meth:`Graph.lifted`)."""

    __slots__ = ("clients",)

    def __init__(self, clients: ClientValues):
        self.clients = clients


class _NotLiftable(Exception):
    pass


def _uses_any(node: bb.Node, env: dict) -> bool:
    """Whether ``node`` refers to a lifted value of ``env``."""
    lifted = {name for name, value in env.items() if isinstance(value, _Lifted)}
    return any(isinstance(n, bb.Reference) and n.name in lifted for n in node.walk())


def select_clients(value: ClientValues, index: int) -> ClientValues:
    """Element ``index`` of every client's struct value."""
    if value.zipped is not None:
        return value.zipped[index]
    if value.stacked is not None:
        return ClientValues(value.count, stacked=value.stacked[index])
    if value.grouped is not None:
        return ClientValues(value.count, grouped=[(clients, stacked[index]) for clients, stacked in value.grouped])
    return ClientValues(value.count, items=[item[index] for item in value.items()])


def _fix_struct(member, stacked):
    """vectorized_map hands a flat list back: rebuild the member's struct shape."""
    if not isinstance(stacked, tuple):
        return member
    flat = list(member) if isinstance(member, (list, tuple)) else [member]
    iterator = iter(flat)
    return tree_map(lambda _: next(iterator), stacked)


def _takes_sequences(function: Callable) -> bool:
    t = getattr(function, "parameter_type", None)
    return t is not None and any(isinstance(part, SequenceType) for part in t.walk())


def literal(value: Any, t: Type) -> Any:
    """A literal value as constants."""
    tf = _tf()
    if isinstance(value, tuple):
        types = list(t) if isinstance(t, StructType) else [None] * len(value)
        return tuple(literal(v, e) for v, e in zip(value, types))
    if isinstance(value, list):  # a sequence literal
        element = t.element if isinstance(t, SequenceType) else None
        items = [literal(v, element) for v in value]
        return SequenceValue.from_elements(items)
    array = np.asarray(value)
    if array.dtype == object or array.dtype.kind == "U":
        return tf.constant(np.vectorize(lambda s: s.encode("utf-8"), otypes=[object])(array) if array.size
                           else np.zeros(array.shape, object), tf.string)
    return tf.constant(array)


def checked_outputs(graph: "Graph", tensors: list, output_leaves: list, node, stacked: bool = False) -> list:
    """The graph's outputs, checked (at run time where the graph does not say) to have their declared shapes.

    With ``stacked``, each tensor has a leading client axis before the declared shape.
    """
    t = node.type_signature
    what = tensorflow_graphs.describe(node)
    return [_checked_output(graph, tensor, leaf, i, what, t, 1 if stacked else 0)
            for i, (leaf, tensor) in enumerate(zip(output_leaves, tensors))]


def _checked_output(graph: "Graph", tensor, leaf_type: TensorType, index: int, what: str, declared, lead: int):
    tf = _tf()
    expected = [None] * lead + list(leaf_type.shape)
    static = tensor.shape
    shown = (lambda s: list(s)[lead:])
    if static.rank is not None and static.rank != len(expected):
        raise FedcError(f"{what} is declared {declared}, but its TensorFlow graph returns r{index} of rank "
                        f"{static.rank - lead} where {leaf_type} is declared")
    if static.rank is None:
        graph.check(tf.equal(tf.rank(tensor), len(expected)),
                    lambda s: f"{what} is declared {declared}, but its TensorFlow graph returned r{index} of shape "
                              f"{shown(s)} where {leaf_type} is declared", tf.shape(tensor))
        return tensor
    for axis, (d, g) in enumerate(zip(expected, static.as_list())):
        if d is not None and g is None:
            graph.check(tf.equal(tf.shape(tensor)[axis], d),
                        lambda s: f"{what} is declared {declared}, but its TensorFlow graph returned r{index} "
                                  f"of shape {shown(s)} where {leaf_type} is declared", tf.shape(tensor))
    return tf.ensure_shape(tensor, expected)
