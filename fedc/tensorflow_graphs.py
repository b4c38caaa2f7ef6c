"""The payload of a ``Compiled`` TensorFlow block, and running it.

A payload is a serialized ``tf.compat.v1.MetaGraphDef``: a GraphDef (with its
function library) and one SignatureDef, ``"fedc"``, whose inputs ``p0, p1, …``
and outputs ``r0, r1, …`` bind the flat leaves of the computation's parameter
and result types, in fedc's order (struct elements in order; a sequence is one
leaf, a ``tf.variant`` dataset). Loading a payload parses protobufs and
imports a graph; it never runs Python code from the payload.

TensorFlow is imported only when a payload is built or run.
"""

from __future__ import annotations

import functools
import threading
from typing import Any, Callable, Optional

import numpy as np

from fedc import tensorflow_ops
from fedc.errors import FedcError, FedcTypeError
from fedc.types import FunctionType, SequenceType, StructType, TensorType, Type
from fedc.values import strings

__all__ = ["KIND", "call_in_graph", "decode_strings", "describe", "element_spec", "element_structure", "flat_leaves",
           "flatten_value", "graph_parts", "load", "make_payload", "tf_dtype", "unflatten_value"]

KIND = "tensorflow"
SIGNATURE_KEY = "fedc"


# The kind of a .fed extern not bound to its Python function (its payload: the UTF-8 "module:function").
EXTERN_KIND = "extern"


def flat_leaves(t: Optional[Type]) -> list[Type]:
    """The leaves of ``t`` that become graph inputs/outputs: tensors and sequences."""
    if t is None:
        return []
    if isinstance(t, StructType):
        return [leaf for element in t for leaf in flat_leaves(element)]
    if isinstance(t, (TensorType, SequenceType)):
        return [t]
    raise FedcTypeError(f"a TensorFlow computation cannot take or return values of type {t}")


def flatten_value(value: Any, t: Optional[Type]) -> list:
    if t is None:
        return []
    if isinstance(t, StructType):
        return [leaf for v, element in zip(value, t) for leaf in flatten_value(v, element)]
    return [value]


def unflatten_value(leaves: list, t: Type) -> Any:
    iterator = iter(leaves)

    def build(sub: Type):
        if isinstance(sub, StructType):
            return tuple(build(e) for e in sub)
        return next(iterator)

    return build(t)


def make_payload(graph_def, input_names: list[str], output_names: list[str]) -> bytes:
    """A payload from a GraphDef and the tensor names of the flat parameter and result leaves."""
    import tensorflow as tf

    meta = tf.compat.v1.MetaGraphDef()
    meta.graph_def.CopyFrom(graph_def)
    signature = meta.signature_def[SIGNATURE_KEY]
    for i, name in enumerate(input_names):
        signature.inputs[f"p{i}"].name = name
    for i, name in enumerate(output_names):
        signature.outputs[f"r{i}"].name = name
    return meta.SerializeToString(deterministic=True)


def tf_dtype(t: TensorType):
    import tensorflow as tf

    return tf.string if t.dtype.kind == "U" else tf.as_dtype(t.dtype)


def element_structure(t: Type, values_for_leaf: Callable[[TensorType], Any]):
    """A tf.nest structure for a sequence element: dicts for named structs, tuples otherwise."""
    if isinstance(t, StructType):
        names = t.names()
        parts = [element_structure(e, values_for_leaf) for e in t]
        if names and all(n is not None for n in names):
            return dict(zip(names, parts))
        return tuple(parts)
    return values_for_leaf(t)


def element_spec(t: Type):
    import tensorflow as tf

    return element_structure(t, lambda leaf: tf.TensorSpec(leaf.shape, tf_dtype(leaf)))


_MAX_RUNS = 8  # runs of equally shaped elements that to_dataset concatenates rather than generating


def to_dataset(elements: list, t: SequenceType):
    """A tf.data.Dataset holding the elements of a sequence value (a list)."""
    import tensorflow as tf

    spec = element_spec(t.element)
    leaf_types = flat_leaves(t.element)
    columns = [[] for _ in leaf_types]
    for element in elements:
        for column, leaf in zip(columns, flatten_value(element, t.element)):
            column.append(np.asarray(leaf))
    # Runs of consecutive elements of one shape (a batched dataset: full batches, then the last one)
    # become one from_tensor_slices each, concatenated; only ragged data needs a Python generator.
    runs: list[tuple[int, int]] = []
    for i in range(len(elements)):
        if runs and all(c[i].shape == c[runs[-1][0]].shape for c in columns):
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    if elements and len(runs) <= _MAX_RUNS:
        dataset = None
        for start, end in runs:
            stacked = iter([np.stack(column[start:end]) for column in columns])
            part = tf.data.Dataset.from_tensor_slices(element_structure(t.element, lambda leaf: next(stacked)))
            dataset = part if dataset is None else dataset.concatenate(part)
        return dataset

    def generate():
        for element in elements:
            leaves = iter(flatten_value(element, t.element))
            yield element_structure(t.element, lambda leaf: next(leaves))

    return tf.data.Dataset.from_generator(generate, output_signature=spec)


def from_dataset_variant(variant, t: SequenceType) -> list:
    """The sequence value (a list of elements) of a dataset a graph returns as a ``tf.variant``."""
    import tensorflow as tf

    from fedc.values import from_python

    dataset = tf.data.experimental.from_variant(variant, structure=element_spec(t.element))
    try:
        return from_python(dataset, t, "the dataset the computation returns")
    except tf.errors.OpError as e:
        raise FedcError(f"TensorFlow failed while reading the dataset the computation returns: {e.message}") from None


def _leaf_text(dtype, shape) -> str:
    """A graph tensor's dtype and static shape, in fedc's notation (``float32[?,3]``, ``variant``)."""
    import tensorflow as tf

    if dtype == tf.variant:
        return "variant (a dataset)"
    if dtype == tf.string:
        name = "str"
    else:
        try:
            name = str(TensorType(dtype.as_numpy_dtype))
        except Exception:  # noqa: BLE001 - a dtype fedc has no name for
            name = dtype.name
    if shape.rank is None:
        return f"{name}[*]"
    if shape.rank == 0:
        return name
    return f"{name}[{','.join('?' if d is None else str(d) for d in shape.as_list())}]"


def _leaf_mismatch(leaf: Type, dtype, shape, is_input: bool) -> Optional[str]:
    """Why a graph tensor of ``dtype``/``shape`` cannot stand for a value of type ``leaf`` (None if it can).

    A parameter's placeholder must accept every value of the declared type; a
    result must be a value of the declared type (a dimension the graph does not
    know statically is checked when the computation runs).
    """
    import tensorflow as tf

    if isinstance(leaf, SequenceType):
        return None if dtype == tf.variant else "a dataset is declared"
    if dtype != tf_dtype(leaf):
        return "the dtypes differ"
    declared = tf.TensorShape(leaf.shape)
    if is_input:
        fits = shape.rank is None or (
            declared.rank is not None
            and declared.rank == shape.rank
            and all(g is None or (d is not None and d == g) for d, g in zip(declared.as_list(), shape.as_list()))
        )
        return None if fits else "the placeholder does not accept every value of the declared shape"
    return None if declared.is_compatible_with(shape) else "the shapes differ"


@functools.lru_cache(maxsize=256)
def _graph(payload: bytes, parameter: Optional[Type], result: Type, what: str):
    """(GraphDef, input tensor names, output tensor names) of a payload, checked against its declared type.

    The signature must have one input per leaf of the parameter and one output
    per leaf of the result, and each graph tensor's dtype and static shape must
    fit its leaf (see :func:`_leaf_mismatch`); ``what`` names the computation.
    """
    import tensorflow as tf

    declared = FunctionType(parameter, result)
    try:
        meta = tf.compat.v1.MetaGraphDef.FromString(payload)
        signature = meta.signature_def[SIGNATURE_KEY]
        input_leaves = flat_leaves(parameter)
        output_leaves = flat_leaves(result)
        input_keys = {f"p{i}" for i in range(len(input_leaves))}
        output_keys = {f"r{i}" for i in range(len(output_leaves))}
        if set(signature.inputs) != input_keys or set(signature.outputs) != output_keys:
            raise FedcError(
                f"{what} is declared {declared}, with {len(input_leaves)} parameter and "
                f"{len(output_leaves)} result tensor(s), but its TensorFlow graph's signature has inputs "
                f"{sorted(signature.inputs) or 'none'} and outputs {sorted(signature.outputs) or 'none'}"
            )
        input_names = [signature.inputs[f"p{i}"].name for i in range(len(input_leaves))]
        output_names = [signature.outputs[f"r{i}"].name for i in range(len(output_leaves))]
    except FedcError:
        raise
    except Exception as e:  # a malformed payload is data, not a crash
        raise FedcError(f"{what}: malformed TensorFlow payload: {e}") from None
    graph_def = meta.graph_def

    # The graph's own signature: the dtype and static shape of each input and output.
    try:
        with tf.Graph().as_default():
            tensors = tf.compat.v1.import_graph_def(graph_def, return_elements=input_names + output_names, name="")
            graph_leaves = [(t.dtype, t.shape) for t in tensors]
    except Exception as e:  # noqa: BLE001
        raise FedcError(f"{what}: cannot load the TensorFlow graph: {e}") from None
    problems = []
    for i, (leaf, (dtype, shape)) in enumerate(zip(input_leaves + output_leaves, graph_leaves)):
        is_input = i < len(input_leaves)
        why = _leaf_mismatch(leaf, dtype, shape, is_input)
        if why is not None:
            key = f"p{i}" if is_input else f"r{i - len(input_leaves)}"
            problems.append(f"{key} is {_leaf_text(dtype, shape)} where {leaf} is declared ({why})")
    if problems:
        inputs = ", ".join(_leaf_text(d, s) for d, s in graph_leaves[: len(input_leaves)])
        outputs = ", ".join(_leaf_text(d, s) for d, s in graph_leaves[len(input_leaves):])
        raise FedcError(
            f"{what} is declared {declared}, but its TensorFlow graph's signature is "
            f"({inputs}) -> ({outputs}): {'; '.join(problems)}"
        )
    return graph_def, input_names, output_names


_LIBRARY_LOCK = threading.Lock()
_REGISTERED: set[str] = set()  # digests of payloads whose library functions are in TensorFlow's eager context


def _rename_functions(attr, names: dict) -> None:
    if attr.HasField("func") and attr.func.name in names:
        attr.func.name = names[attr.func.name]
    for func in attr.list.func:
        if func.name in names:
            func.name = names[func.name]


@functools.lru_cache(maxsize=256)
def _with_library(payload: bytes, graph_def_bytes: bytes):
    """The payload's GraphDef with its function library made callable from a function being traced.

    A graph imported into a ``tf.function`` keeps its own functions (a
    ``tf.while_loop``'s body and condition, a nested ``tf.function``) in the
    traced graph only, where TensorFlow 2.21's runtime does not look for them
    ("Op type not registered 'while_cond_3'"). So they are registered in
    TensorFlow's context — under names made unique by the payload's digest, so
    that two payloads' ``while_cond_3`` do not collide — and the graph and its
    functions refer to them by those names.
    """
    import hashlib

    import tensorflow as tf
    from tensorflow.python.eager import context

    graph_def = tf.compat.v1.GraphDef.FromString(graph_def_bytes)
    if not graph_def.library.function:
        return graph_def
    digest = hashlib.sha256(payload).hexdigest()[:16]
    names = {f.signature.name: f"fedc_{digest}_{f.signature.name}" for f in graph_def.library.function}
    for node in graph_def.node:
        for attr in node.attr.values():
            _rename_functions(attr, names)
    for function in graph_def.library.function:
        function.signature.name = names[function.signature.name]
        for node in function.node_def:
            for attr in node.attr.values():
                _rename_functions(attr, names)
    for gradient in graph_def.library.gradient:
        gradient.function_name = names.get(gradient.function_name, gradient.function_name)
        gradient.gradient_func = names.get(gradient.gradient_func, gradient.gradient_func)
    with _LIBRARY_LOCK:
        if digest not in _REGISTERED:
            for function in graph_def.library.function:
                context.context().add_function_def(function)
            _REGISTERED.add(digest)
    return graph_def


def _import(graph_def, input_names: list[str], output_names: list[str], flat: list, name: str,
            payload: Optional[bytes] = None) -> list:
    """Imports a payload's graph into the graph being built, its inputs bound to ``flat``; its outputs."""
    import tensorflow as tf

    if payload is not None and graph_def.library.function:
        graph_def = _with_library(payload, graph_def.SerializeToString())
    return tf.compat.v1.import_graph_def(
        graph_def, input_map=dict(zip(input_names, flat)), return_elements=output_names, name=name
    )


def call_in_graph(node, flat: list) -> list:
    """Calls a ``Compiled`` TensorFlow node inside the graph TensorFlow is building.

    ``flat`` are the graph tensors of the parameter's flat leaves (a sequence
    leaf is a ``tf.variant``); returns the tensors of the result's flat leaves.
    The node's graph is imported (inlined) under its name; this is how one
    ``tf_computation`` calls another.
    """
    if node.kind != KIND:
        raise FedcError(f"compiled computation {node.name or ''} of kind {node.kind!r} cannot be called from TensorFlow")
    admit(node)
    t = node.type_signature
    what = describe(node)
    graph_def, input_names, output_names = _graph(node.payload, t.parameter, t.result, what)
    outputs = _import(graph_def, input_names, output_names, flat, node.name or "compiled", node.payload)
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


@functools.lru_cache(maxsize=1024)
def _creates_variables(payload: bytes) -> bool:
    return "VarHandleOp" in tensorflow_ops.graph_ops(payload)


def creates_variables(node) -> bool:
    """Whether a ``Compiled`` node's graph creates variables (fresh on each run; its ops then run in order).

    Such a graph cannot be vectorized over clients (every client needs its
    own variables) nor rewritten by a backend's dataset planner.
    """
    return node.kind == KIND and _creates_variables(node.payload)


def describe(node) -> str:
    """How messages name a ``Compiled`` node: ``compiled computation 'name'``."""
    return f"compiled computation {node.name!r}" if node.name else "a compiled computation"


def graph_parts(node) -> tuple:
    """(GraphDef, input tensor names, output tensor names) of an admitted ``Compiled`` TensorFlow node."""
    if node.kind != KIND:
        raise FedcError(f"compiled computation {node.name or ''} of kind {node.kind!r} has no TensorFlow graph")
    admit(node)
    t = node.type_signature
    what = describe(node)
    return _graph(node.payload, t.parameter, t.result, what)


def decode_strings(array, what: str) -> np.ndarray:
    """TensorFlow's strings (bytes) as fedc's ``str`` tensor (:func:`fedc.values.strings`): each must be UTF-8."""
    array = np.asarray(array, dtype=object)
    out = np.empty(array.shape, dtype=object)
    for index, item in np.ndenumerate(array):
        if isinstance(item, bytes):
            try:
                item = item.decode("utf-8")
            except UnicodeDecodeError as e:
                shown = item[:40] + (b"..." if len(item) > 40 else b"")
                raise FedcError(
                    f"{what} returned the string {shown!r}, which is not UTF-8 text ({e.reason} at byte "
                    f"{e.start}); fedc's str holds text: return bytes as a uint8 tensor "
                    "(tf.io.decode_raw) or as text (tf.io.encode_base64)"
                ) from None
        out[index] = item
    return strings(out, what)


@functools.lru_cache(maxsize=256)
def _load_cached(payload: bytes, parameter: Optional[Type], result: Type, what: str) -> Callable:
    import tensorflow as tf

    declared = FunctionType(parameter, result)
    graph_def, input_names, output_names = _graph(payload, parameter, result, what)
    input_leaves = flat_leaves(parameter)
    output_leaves = flat_leaves(result)
    specs = [
        tf.TensorSpec([], tf.variant) if isinstance(leaf, SequenceType) else tf.TensorSpec(leaf.shape, tf_dtype(leaf))
        for leaf in input_leaves
    ]

    def imported(*flat):
        return _import(graph_def, input_names, output_names, list(flat), "")

    try:
        function = tf.compat.v1.wrap_function(imported, specs)
    except Exception as e:
        raise FedcError(f"{what}: cannot load the TensorFlow graph: {e}") from None

    def run(argument: Any) -> Any:
        flat = []
        for leaf_type, value in zip(input_leaves, flatten_value(argument, parameter)):
            if isinstance(leaf_type, SequenceType):
                flat.append(tf.data.experimental.to_variant(to_dataset(value, leaf_type)))
            else:
                flat.append(tf.constant(value, dtype=tf_dtype(leaf_type)))
        try:
            outputs = function(*flat)
        except tf.errors.OpError as e:
            raise FedcError(f"TensorFlow failed while running {what}: {e.message}") from None
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        leaves = []
        for i, (leaf_type, tensor) in enumerate(zip(output_leaves, outputs)):
            if isinstance(leaf_type, SequenceType):
                leaves.append(from_dataset_variant(tensor, leaf_type))
                continue
            array = np.asarray(tensor.numpy())
            expected = leaf_type.shape
            if expected is not None and (
                array.ndim != len(expected) or any(d is not None and d != n for d, n in zip(expected, array.shape))
            ):
                raise FedcError(
                    f"{what} is declared {declared}, but its TensorFlow graph returned r{i} of shape "
                    f"{list(array.shape)} where {leaf_type} is declared"
                )
            if leaf_type.dtype.kind == "U":  # bytes from TensorFlow; fedc keeps str tensors exactly (NULs too)
                leaves.append(decode_strings(array, what))
                continue
            leaves.append(array.astype(leaf_type.dtype, copy=False))
        return unflatten_value(leaves, result)

    return run


def admit(node, trusted: bool = False, where: str = "") -> None:
    """Admits a ``Compiled`` node's TensorFlow payload (see :func:`fedc.tensorflow_ops.admit`).

    Nodes of other kinds carry no graph and pass. ``where`` adds to the
    computation's name in an error (e.g. the node's index in a protobuf).
    """
    if node.kind != KIND:
        return
    what = describe(node)
    tensorflow_ops.admit(node.payload, what + (f" ({where})" if where else ""), trusted, node.content_hash)


def load(node) -> Callable[[Any], Any]:
    """A Python callable running a ``Compiled`` TensorFlow node on run-time values."""
    if node.kind == EXTERN_KIND:
        target = node.payload.decode("utf-8", errors="replace")
        raise FedcError(
            f"extern {node.name or ''} names the Python function {target!r}, which was not imported: "
            "a .fed file's externs are bound only when fedc may run Python code (fedc run does; "
            "fedc compile/check/viz take --import-externs; in Python, fedc.frontend.fed.load(..., "
            "import_externs=True))"
        )
    if node.kind != KIND:
        raise FedcError(f"cannot run a compiled computation of kind {node.kind!r} with TensorFlow")
    # Checked again here (once per payload and process), so a node built by hand runs only allowed ops.
    admit(node)
    t = node.type_signature
    what = describe(node)
    return _load_cached(node.payload, t.parameter, t.result, what)
