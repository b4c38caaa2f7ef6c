"""``Compiled`` TensorFlow blocks in the tf backend: their graphs imported into the round's graph.

A ``tf_computation`` is a GraphDef (:mod:`fedc.tensorflow_graphs`); the tf
backend imports it into the graph it is building, its inputs bound to the
tensors of the call's argument, instead of calling out of TensorFlow once per
value. A graph that takes client datasets is mapped over the clients by its
plan (:mod:`.datasets`: its ``dataset.reduce`` becomes an in-graph loop over
all clients at once). Any other call with a dataset in or out — a dataset
used other than by a reduce, a graph that returns one, whose length is known
only when it runs — makes the computation run eagerly
(:class:`~.graph.NeedsEager`), the graph called through ``tf.data`` as the
reference backend calls it.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from fedc import tensorflow_graphs as tg
from fedc.errors import FedcError
from fedc.types import SequenceType, StructType

from .datasets import map_over_clients, plan
from .graph import Graph, NeedsEager, NotVectorizable, checked_outputs

__all__ = ["lower_compiled"]


def _tf():
    import tensorflow as tf

    return tf


def lower_compiled(graph: Graph, node) -> Callable:
    """The function value of a ``Compiled`` node: its graph imported on each call's argument."""
    tf = _tf()
    if node.kind == tg.EXTERN_KIND or node.kind != tg.KIND:
        tg.load(node)  # raises the reference backend's error for an unbound extern or an unknown kind
    t = node.type_signature
    parameter, result = t.parameter, t.result
    input_leaves = tg.flat_leaves(parameter)
    output_leaves = tg.flat_leaves(result)
    what = tg.describe(node)
    stateful = tg.creates_variables(node)  # each client needs its own variables: never vectorized
    returns_sequences = any(isinstance(leaf, SequenceType) for leaf in output_leaves)
    takes_sequences = any(isinstance(leaf, SequenceType) for leaf in input_leaves)

    def call(argument=None):
        # A dataset in or out, other than through a plan over clients (map_over_clients), runs eagerly:
        # tf.data functions imported into a traced function are not found when it runs.
        if returns_sequences or takes_sequences or not tf.inside_function():
            if not graph.eager:
                raise NeedsEager(what)
            if tf.inside_function():  # eager, but inside a vectorized trace: map client by client instead
                raise NotVectorizable(what)
            return _run_eagerly(node, argument)
        if stateful and graph.vectorizing:
            raise NotVectorizable(what)
        flat = [tf.convert_to_tensor(value, tg.tf_dtype(leaf_type))
                for leaf_type, value in zip(input_leaves, tg.flatten_value(argument, parameter))]
        checked = checked_outputs(graph, tg.call_in_graph(node, flat), output_leaves, node)
        for tensor in checked:
            if tensor.dtype == tf.string:
                _check_utf8(graph, tensor, what)
        return tg.unflatten_value(checked, result) if isinstance(result, StructType) else checked[0]

    call.parameter_type = parameter
    if takes_sequences and not returns_sequences:
        def over_clients(clients):
            the_plan = plan(node)
            if the_plan is None or not tf.inside_function():
                return None
            return map_over_clients(graph, node, the_plan, clients)

        call.map_over_clients = over_clients
    return call


def _check_utf8(graph: Graph, tensor, what: str) -> None:
    """A graph's string output must be UTF-8 text (fedc's str), as the reference backend checks."""
    tf = _tf()
    flat = tf.reshape(tensor, [-1])
    same = tf.equal(tf.strings.unicode_transcode(flat, "UTF-8", "UTF-8", errors="replace"), flat)
    bad = tf.gather(tf.concat([flat, [""]], 0), tf.argmin(tf.cast(tf.concat([same, [False]], 0), tf.int32)))

    def message(value):
        try:
            tg.decode_strings(np.asarray([value.item() if hasattr(value, "item") else value], dtype=object), what)
        except FedcError as e:
            return e.message
        return f"{what} returned a string that is not UTF-8 text"

    graph.check(tf.reduce_all(same), message, bad)


def _run_eagerly(node, argument: Any) -> Any:
    """Runs a Compiled node on eager values through the reference path (datasets of any length)."""
    from .values import from_graph_value, to_graph_value

    t = node.type_signature
    value = None if t.parameter is None else from_graph_value(argument, t.parameter)
    out = tg.load(node)(value)
    return to_graph_value(out, t.result)
