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

from fedc import tensorflow_graphs as tg
from fedc.types import SequenceType, StructType

from .datasets import map_over_clients, plan
from .graph import Graph, NeedsEager, checked_outputs

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
    what = f"compiled computation {node.name!r}" if node.name else "a compiled computation"
    returns_sequences = any(isinstance(leaf, SequenceType) for leaf in output_leaves)
    takes_sequences = any(isinstance(leaf, SequenceType) for leaf in input_leaves)

    def call(argument=None):
        # A dataset in or out, other than through a plan over clients (map_over_clients), runs eagerly:
        # tf.data functions imported into a traced function are not found when it runs.
        if returns_sequences or takes_sequences or not tf.inside_function():
            if not graph.eager:
                raise NeedsEager(what)
            return _run_eagerly(node, argument)
        flat = [tf.convert_to_tensor(value, tg.tf_dtype(leaf_type))
                for leaf_type, value in zip(input_leaves, tg.flatten_value(argument, parameter))]
        checked = checked_outputs(graph, tg.call_in_graph(node, flat), output_leaves, node)
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


def _run_eagerly(node, argument: Any) -> Any:
    """Runs a Compiled node on eager values through the reference path (datasets of any length)."""
    from .values import from_graph_value, to_graph_value

    t = node.type_signature
    value = None if t.parameter is None else from_graph_value(argument, t.parameter)
    out = tg.load(node)(value)
    return to_graph_value(out, t.result)
