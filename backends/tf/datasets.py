"""Client datasets without ``tf.data``: a graph's ``dataset.reduce`` as a loop, all clients at once.

A ``tf_computation`` that trains on a client's dataset is, in its GraphDef, a
``ReduceDataset`` op whose input is the dataset parameter (possibly through
``RepeatDataset``, for epochs) and whose reduce function ``f`` is in the
graph's function library. Running it once per client through ``tf.data``
costs milliseconds of iterator machinery per client. Mapped over clients, the
tf backend instead *plans* the graph (:func:`plan`, once per payload):

* **before** — the graph's ops that compute the reduce's initial state and
  captured arguments (here: the broadcast weights), imported with the
  dataset ops removed;
* **loop** — for each repetition and each segment of the clients' sequences
  (runs of elements of one shape: the full batches, then a smaller last one),
  a ``tf.while_loop`` over the steps whose body is ``f``'s body imported and
  vectorized over the clients (``tf.vectorized_map``): one set of ops per step
  for all the clients of a group, where a per-client loop would run one
  client at a time;
* **after** — the rest of the graph, with the reduce's outputs bound to the
  loop's final state.

Clients are grouped by the layout of their sequences (the number of steps and
the element shapes of each segment), so every client runs exactly its own
elements: no padding, no masks, the same result as running the graph client
by client. Each group runs as a call of a ``tf.function`` kept on the plan per
group layout, its number of steps left open, so a round whose clients repeat
layouts seen before (sampled clients do, after a few rounds) reuses those
functions; a group of one client runs its loop without ``vectorized_map``.
Graphs that create variables have no plan (each client needs its own
variables). A graph whose dataset is used in any other way (``map``,
``batch``, ``take``, a dataset returned) has no plan: the computation then
runs eagerly, client by client through ``tf.data``, as on the reference backend.
"""

from __future__ import annotations

from typing import Optional

from fedc import tensorflow_graphs as tg
from fedc.types import SequenceType, StructType

from .graph import ClientValues, checked_outputs, index_value, leaves, register_pfor_converters

__all__ = ["Plan", "map_over_clients", "plan"]

#: dataset ops a plan looks through between the parameter and the reduce (each keeps the elements' order).
_PASS_THROUGH = {"RepeatDataset"}


def _tf():
    import tensorflow as tf

    return tf


class _Reduce:
    """One ``ReduceDataset`` fed by sequence input ``input_index``, repeated ``repeats`` times."""

    __slots__ = ("node", "input_index", "repeats", "states", "arguments", "outputs",
                 "body", "body_inputs", "body_outputs", "state_types")

    def __init__(self, node, input_index: int, repeats: int, body, body_inputs, body_outputs):
        self.node = node
        self.input_index = input_index
        self.repeats = repeats
        n_state = len(node.attr["Tstate"].list.type)
        self.states = list(node.input[1:1 + n_state])
        self.arguments = [i for i in node.input[1 + n_state:] if not i.startswith("^")]
        self.outputs = [f"{node.name}:{k}" for k in range(n_state)]
        self.body = body
        self.body_inputs = body_inputs
        self.body_outputs = body_outputs
        self.state_types = list(node.attr["Tstate"].list.type)


class Plan:
    """How to run a graph with sequence inputs as loops over in-graph tensors (see the module docstring)."""

    def __init__(self, graph_def, input_names, output_names, rest, reduces, sequence_inputs):
        self.graph_def = graph_def
        self.input_names = input_names
        self.output_names = output_names
        self.rest = rest  # the graph without its dataset ops and reduces
        self.reduces = reduces
        self.sequence_inputs = sequence_inputs
        # The tensors the rest of the graph reads: only those of a reduce's outputs may be bound
        # (import_graph_def refuses a binding nothing reads, e.g. a reduce state the graph drops).
        self.read = {_tensor_name(i) for n in rest.node for i in n.input if not i.startswith("^")}
        # One tf.function per group layout, any number of steps (see _run_group_function), oldest first.
        self.group_functions: dict = {}


def _tensor_name(name: str) -> str:
    return name if ":" in name else name + ":0"


def _node_name(name: str) -> str:
    return name.lstrip("^").split(":")[0]


def plan(node) -> Optional[Plan]:
    """The plan of a Compiled node with sequence parameters, or ``None`` if it has none."""
    key = node.content_hash
    if key in _plans:
        return _plans[key]
    try:
        made = _make_plan(node)
    except Exception:  # noqa: BLE001 - any graph the planner does not understand runs the general (eager) way
        made = None
    if len(_plans) >= _MAX_PLANS:
        _plans.pop(next(iter(_plans)))
    _plans[key] = made
    return made


_MAX_PLANS = 256
_plans: dict = {}  # content hash -> plan (or None), oldest first


class _NoPlan(Exception):
    pass


def _make_plan(node) -> Plan:
    from tensorflow.python.framework import function_def_to_graph

    graph_def, input_names, output_names = tg.graph_parts(node)
    t = node.type_signature
    input_leaves = tg.flat_leaves(t.parameter)
    if any(isinstance(leaf, SequenceType) for leaf in tg.flat_leaves(t.result)):
        raise _NoPlan("returns a dataset")
    if tg.creates_variables(node):
        raise _NoPlan("creates variables")
    nodes = {n.name: n for n in graph_def.node}
    consumers: dict[str, list] = {}
    for n in graph_def.node:
        for i in n.input:
            if not i.startswith("^"):
                consumers.setdefault(_node_name(i), []).append(n)
    functions = {f.signature.name: f for f in graph_def.library.function}
    removed: set[str] = set()
    reduces = []
    sequence_inputs = []
    for index, (leaf, name) in enumerate(zip(input_leaves, input_names)):
        if not isinstance(leaf, SequenceType):
            continue
        sequence_inputs.append(index)
        current = nodes.get(_node_name(name))
        if current is None:
            raise _NoPlan("no placeholder")
        repeats = 1
        removed.add(current.name)
        while True:
            users = consumers.get(current.name, [])
            if len(users) != 1:
                raise _NoPlan("the dataset is used more than once")
            user = users[0]
            if user.op in _PASS_THROUGH and _node_name(user.input[0]) == current.name:
                count_node = nodes.get(_node_name(user.input[1]))
                if count_node is None or count_node.op != "Const":
                    raise _NoPlan("a repeat count that is not a constant")
                count = int(_tf().make_ndarray(count_node.attr["value"].tensor))
                if count < 0:
                    raise _NoPlan("repeats forever")
                repeats *= count
                removed.add(user.name)
                current = user
                continue
            if user.op == "ReduceDataset" and _node_name(user.input[0]) == current.name:
                fname = user.attr["f"].func.name
                fdef = functions.get(fname)
                if fdef is None:
                    raise _NoPlan("no reduce function")
                body, nested = function_def_to_graph.function_def_to_graph_def(fdef)
                body.library.CopyFrom(graph_def.library)
                body_inputs = [a.name + ":0" for a in fdef.signature.input_arg]
                body_outputs = [nested[fdef.ret[o.name]] for o in fdef.signature.output_arg]
                reduces.append(_Reduce(user, index, repeats, body, body_inputs, body_outputs))
                removed.add(user.name)
                break
            raise _NoPlan(f"the dataset feeds {user.op}")
    # A reduce's inputs must not depend on another reduce (each is run after the ops before all of them).
    reduce_names = {r.node.name for r in reduces}
    for r in reduces:
        for i in r.states + r.arguments:
            if _depends_on(_node_name(i), reduce_names, nodes, set()):
                raise _NoPlan("a reduce depends on another")
    rest = type(graph_def)()
    rest.library.CopyFrom(graph_def.library)
    rest.versions.CopyFrom(graph_def.versions)
    for n in graph_def.node:
        if n.name in removed:
            continue
        copy = rest.node.add()
        copy.CopyFrom(n)
        del copy.input[:]
        copy.input.extend(i for i in n.input if not (i.startswith("^") and _node_name(i) in removed))
    return Plan(graph_def, input_names, output_names, rest, reduces, sequence_inputs)


def _depends_on(name: str, targets: set, nodes: dict, seen: set) -> bool:
    if name in targets:
        return True
    if name in seen or name not in nodes:
        return False
    seen.add(name)
    return any(_depends_on(_node_name(i), targets, nodes, seen) for i in nodes[name].input)


def map_over_clients(graph, node, the_plan: Plan, clients: ClientValues) -> Optional[ClientValues]:
    """The Compiled node mapped over ``clients`` by its plan; ``None`` when the values do not allow it."""
    tf = _tf()
    t = node.type_signature
    input_leaves = tg.flat_leaves(t.parameter)
    output_leaves = tg.flat_leaves(t.result)
    columns = _columns(clients, t.parameter)
    groups = _groups(columns, the_plan, clients.count)
    outputs_by_group = []
    order = []
    for index, members in enumerate(groups):
        order.extend(members)
        inputs = _group_inputs(columns, index, members, clients.count, input_leaves)
        outputs_by_group.append(_run_group_function(the_plan, inputs, input_leaves, len(members)))
    results = [tf.concat(parts, axis=0) if len(parts) > 1 else parts[0] for parts in zip(*outputs_by_group)]
    if order != list(range(len(order))):
        inverse = [0] * len(order)
        for position, c in enumerate(order):
            inverse[c] = position
        results = [tf.gather(r, inverse) for r in results]
    results = checked_outputs(graph, results, output_leaves, node, stacked=True)
    stacked = tg.unflatten_value(results, t.result) if len(output_leaves) != 1 or _is_struct(t.result) else results[0]
    return ClientValues(clients.count, stacked=stacked)


def _columns(clients: ClientValues, t) -> list:
    """The clients' values leaf by leaf.

    Each is ``("stacked", tensor)``, ``("grouped", [(clients, value)])`` (one
    value per group, stacked over its clients; a sequence's segments
    ``[clients, steps, ...]``) or ``("items", [one value per client])``.
    """
    if clients.stacked is not None:
        return [("stacked", leaf) for leaf in tg.flatten_value(clients.stacked, t)]
    if clients.zipped is not None and isinstance(t, StructType) and len(clients.zipped) == len(t):
        return [column for part, element in zip(clients.zipped, t) for column in _columns(part, element)]
    if clients.grouped is not None:
        per_group = [(members, tg.flatten_value(value, t)) for members, value in clients.grouped]
        return [("grouped", [(members, flat[k]) for members, flat in per_group]) for k in range(len(tg.flat_leaves(t)))]
    per_client = [tg.flatten_value(item, t) for item in clients.items()]
    return [("items", [flat[k] for flat in per_client]) for k in range(len(tg.flat_leaves(t)))]


def _groups(columns: list, the_plan: Plan, count: int) -> list[list[int]]:
    """The clients in groups that run together: as their datasets were grouped, or by their sequences' layout."""
    grouped = [column for kind, column in (columns[i] for i in the_plan.sequence_inputs) if kind == "grouped"]
    if grouped and len(grouped) == len(the_plan.sequence_inputs):
        memberships = {tuple(tuple(members) for members, _ in column) for column in grouped}
        if len(memberships) == 1:
            return [list(members) for members in memberships.pop()]
    groups: dict[tuple, list[int]] = {}
    sequences = [_per_client(columns[i], count) for i in the_plan.sequence_inputs]
    for c in range(count):
        layout = tuple(tuple(tuple(tuple(leaf.shape.as_list()) for leaf in leaves(segment))
                             for segment in sequence[c].segments) for sequence in sequences)
        groups.setdefault(layout, []).append(c)
    return list(groups.values())


def _per_client(column: tuple, count: int) -> list:
    kind, values = column
    if kind == "items":
        return values
    if kind == "stacked":
        return [index_value(values, c) for c in range(count)]
    out: list = [None] * count
    for members, value in values:
        for position, c in enumerate(members):
            out[c] = index_value(value, position)
    return out


def _group_inputs(columns: list, group: int, members: list, count: int, input_leaves) -> list:
    """Per input leaf, for the clients ``members``: a tensor stacked over them, or (a sequence) its segments.

    A sequence's segments are lists of element tensors ``[clients, steps, ...]`` in fedc's leaf order.
    """
    tf = _tf()
    everyone = members == list(range(count))
    inputs = []
    for (kind, column), leaf in zip(columns, input_leaves):
        if kind == "grouped" and list(column[group][0]) == members:
            value = column[group][1]
            inputs.append([leaves(segment) for segment in value.segments] if isinstance(leaf, SequenceType) else value)
        elif kind == "stacked" and not isinstance(leaf, SequenceType):
            inputs.append(column if everyone else tf.gather(column, members))
        elif isinstance(leaf, SequenceType):
            sequences = [_per_client((kind, column), count)[c] for c in members]
            inputs.append([[tf.stack([leaves(sequence.segments[s])[k] for sequence in sequences])
                            for k in range(len(leaves(sequences[0].segments[s])))]
                           for s in range(len(sequences[0].segments))])
        else:
            values = _per_client((kind, column), count)
            inputs.append(tf.stack([tf.convert_to_tensor(values[c], tg.tf_dtype(leaf)) for c in members]))
    return inputs


def _is_struct(t) -> bool:
    return isinstance(t, StructType)


_MAX_GROUP_FUNCTIONS = 64


def _run_group_function(the_plan: Plan, inputs: list, input_leaves, size: int) -> list:
    """:func:`_run_group` as a call of a ``tf.function`` kept on the plan, traced once per group layout.

    Its signature leaves each segment's number of steps open, so a later
    round whose clients have other dataset lengths (sampled clients rarely
    repeat a round's layout) calls the functions of the layouts seen before
    instead of converting the dataset loop again: the round's own retrace
    then only stitches the groups together.
    """
    tf = _tf()
    flat, signature, structure = [], [], []
    for value, leaf in zip(inputs, input_leaves):
        if isinstance(leaf, SequenceType):
            counts = []
            for segment in value:
                counts.append(len(segment))
                for element in segment:
                    flat.append(element)
                    signature.append(tf.TensorSpec([element.shape[0], None] + element.shape[2:].as_list(),
                                                   element.dtype))
            structure.append(tuple(counts))
        else:
            flat.append(value)
            signature.append(tf.TensorSpec(value.shape, value.dtype))
            structure.append(None)
    key = (tuple(structure), tuple((tuple(spec.shape.as_list()), spec.dtype.name) for spec in signature),
           None if flat else size)  # (clients whose datasets are all empty: no tensor says how many they are)
    function = the_plan.group_functions.get(key)
    if function is None:
        def run(*tensors):
            remaining = iter(tensors)
            rebuilt = [next(remaining) if counts is None else [[next(remaining) for _ in range(n)] for n in counts]
                       for counts in structure]
            return _run_group(the_plan, rebuilt, input_leaves, tf.shape(tensors[0])[0] if tensors else size)

        function = tf.function(run, input_signature=signature, autograph=False)
        if len(the_plan.group_functions) >= _MAX_GROUP_FUNCTIONS:
            the_plan.group_functions.pop(next(iter(the_plan.group_functions)))
        the_plan.group_functions[key] = function
    outputs = function(*flat)
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def _run_group(the_plan: Plan, inputs: list, input_leaves, size) -> list:
    """The graph's outputs for the ``size`` clients of one layout, each stacked over the clients.

    ``inputs`` has, per input leaf, a tensor stacked over the clients or (for
    a sequence) its segments (see :func:`_group_inputs`).
    """
    tf = _tf()
    tensor_inputs = [i for i, leaf in enumerate(input_leaves) if not isinstance(leaf, SequenceType)]
    stacked_inputs = [inputs[i] for i in tensor_inputs]
    input_map_names = [the_plan.input_names[i] for i in tensor_inputs]
    reduce_inputs = [name for r in the_plan.reduces for name in r.states + r.arguments]
    dummies = {}
    for r in the_plan.reduces:
        shapes = r.node.attr["output_shapes"].list.shape
        for k, (name, dtype) in enumerate(zip(r.outputs, r.state_types)):
            if name not in the_plan.read:
                continue
            shape = [d.size if d.size >= 0 else 1 for d in shapes[k].dim] if not shapes[k].unknown_rank else []
            dummies[name] = (tf.dtypes.as_dtype(dtype), shape)

    def before(*member):
        input_map = dict(zip(input_map_names, member))
        input_map.update({name: tf.zeros(shape, dtype) for name, (dtype, shape) in dummies.items()})
        return tf.compat.v1.import_graph_def(the_plan.rest, input_map=input_map,
                                             return_elements=[_tensor_name(n) for n in reduce_inputs], name="before")

    if stacked_inputs:
        initial = _vectorized(before, stacked_inputs)
    else:  # the reduces' initial states and arguments depend on no client: made once, one row per client
        initial = [tf.repeat(tf.expand_dims(o, 0), size, axis=0) for o in before()]
    finals = {}
    position = 0
    for r in the_plan.reduces:
        states = initial[position: position + len(r.states)]
        arguments = initial[position + len(r.states): position + len(r.states) + len(r.arguments)]
        position += len(r.states) + len(r.arguments)
        order = _dataset_order(input_leaves[r.input_index])
        segments = [[segment[k] for k in order] for segment in inputs[r.input_index]]

        def one_pass(states, r=r, segments=segments, arguments=arguments):
            for element_leaves in segments:
                states = _loop(r, states, element_leaves, arguments)
            return states

        if r.repeats == 1:
            states = one_pass(states)
        elif r.repeats > 1:  # the whole sequence again, in order, each repetition
            def again(k, *states_now, one_pass=one_pass):
                new = one_pass(list(states_now))
                return (k + 1, *[tf.ensure_shape(n, s.shape) for n, s in zip(new, states_now)])

            states = list(tf.while_loop(lambda k, *s, n=r.repeats: k < n, again, (tf.constant(0), *states))[1:])
        finals.update((name, state) for name, state in zip(r.outputs, states) if name in the_plan.read)
    final_names = list(finals)

    def after(*member):
        values = list(member)
        input_map = dict(zip(input_map_names, values[: len(input_map_names)]))
        input_map.update(zip(final_names, values[len(input_map_names):]))
        return tf.compat.v1.import_graph_def(the_plan.rest, input_map=input_map,
                                             return_elements=the_plan.output_names, name="after")

    return _vectorized(after, stacked_inputs + [finals[n] for n in final_names])


def _dataset_order(t: SequenceType) -> list[int]:
    """fedc's leaf order of a sequence element -> the order of the dataset's components (tf.nest's)."""
    tf = _tf()
    iterator = iter(range(len(tg.flat_leaves(t.element))))
    structure = tg.element_structure(t.element, lambda leaf: next(iterator))
    return list(tf.nest.flatten(structure))


def _vectorized(fn, stacked: list) -> list:
    """``fn`` of one client's values, run for every client (row) of ``stacked`` at once."""
    tf = _tf()
    if stacked and all(t.shape.rank and t.shape[0] == 1 for t in stacked):
        # One client (a group of its own, as most are when sampled clients' datasets differ in
        # length): call fn on it directly. vectorized_map would give the same, after converting
        # every op (pfor), which costs about half a second of tracing per group.
        outputs = fn(*[t[0] for t in stacked])
        outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        return [tf.expand_dims(o, 0) for o in outputs]
    register_pfor_converters()
    outputs = tf.vectorized_map(lambda member: fn(*member), stacked, fallback_to_while_loop=True)
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def _loop(r: _Reduce, states: list, element_leaves: list, arguments: list) -> list:
    """``states`` after ``f`` has been applied to each element (``[clients, steps, ...]``), all clients at once.

    The number of steps may be known only when the graph runs.
    """
    tf = _tf()
    steps = element_leaves[0].shape[1]
    if steps == 0:
        return states

    def step(states_now, element, args):
        def per_client(member):
            values = list(member)
            return tf.compat.v1.import_graph_def(r.body, input_map=dict(zip(r.body_inputs, values)),
                                                 return_elements=r.body_outputs, name="step")

        return _vectorized(lambda *member: per_client(member), list(states_now) + list(element) + list(args))

    if steps == 1:
        return step(states, [e[:, 0] for e in element_leaves], arguments)

    def body(i, *states_now):
        new = step(states_now, [e[:, i] for e in element_leaves], arguments)
        return (i + 1, *[tf.ensure_shape(tf.cast(n, s.dtype), s.shape) for n, s in zip(new, states_now)])

    bound = steps if steps is not None else tf.shape(element_leaves[0])[1]
    result = tf.while_loop(lambda i, *s: i < bound, body, (tf.constant(0), *states))
    return list(result[1:])
