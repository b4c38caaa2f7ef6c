"""``@fedc.tf_computation``: tracing a Python TensorFlow function into a ``Compiled`` block.

The function is traced once per parameter type with ``tf.function``; its graph
(with no variables or other resources: state is passed in and out as
tensors) becomes the payload of a ``Compiled`` node (see
:mod:`fedc.tensorflow_graphs`). Sequences (``fedc.SequenceType``) arrive as
``tf.data.Dataset`` parameters, and a returned ``tf.data.Dataset`` is a
sequence result (``T*``). Without declared types, the computation is
polymorphic and is specialised where it is used.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Sequence

from fedc.computation import Computation
from fedc.errors import FedcError, FedcTypeError
from fedc.frontend.tracing import decorated, parameter_plan
from fedc.ir.names import identifier
from fedc.ir import building_blocks as bb
from fedc.ir.module import Module
from fedc.types import FunctionType, SequenceType, StructType, TensorType, Type, to_type
from fedc import tensorflow_graphs as tg
from fedc import tensorflow_ops

__all__ = ["tf_computation"]


def tf_computation(*types_or_fn, trusted: bool = False):
    """Traces a Python TensorFlow function into a local computation.

    ``@fedc.tf_computation(T)`` / ``(T1, T2)`` declare parameter types (as for
    ``@fedc.federated_computation``); ``@fedc.tf_computation`` on a function
    with parameters makes it polymorphic (traced for each distinct parameter
    type where it is used); on a function without parameters it is traced at
    once.

    The traced graph may use only the pure computation ops of
    :mod:`fedc.tensorflow_ops` (an op that reads or writes files, calls Python
    or sleeps is refused, naming the op); ``trusted=True`` admits any op, for a
    function whose effects you accept.
    """
    def trace(fn: Callable, declared: Sequence[Any]) -> Computation:
        return trace_tf_computation(fn, declared, trusted)

    if len(types_or_fn) == 1 and (inspect.isfunction(types_or_fn[0]) or inspect.ismethod(types_or_fn[0])):
        return decorated(types_or_fn[0], (), "tf_computation", trace)

    def decorate(fn: Callable):
        if not (inspect.isfunction(fn) or inspect.ismethod(fn)):
            raise FedcTypeError(f"@fedc.tf_computation decorates a Python function, not {fn!r}")
        return decorated(fn, types_or_fn, "tf_computation", trace)

    return decorate


def _tf_spec(t: Type, where: str):
    import tensorflow as tf

    if isinstance(t, TensorType):
        return tf.TensorSpec(t.shape, tg.tf_dtype(t))
    if isinstance(t, SequenceType):
        return tf.data.DatasetSpec(tg.element_spec(t.element))
    if isinstance(t, StructType):
        names = t.names()
        parts = [_tf_spec(e, where) for e in t]
        container = t.python_container
        if container is not None and container not in (dict, list, tuple) and hasattr(container, "_fields"):
            return container(*parts)
        if names and all(n is not None for n in names):
            return dict(zip(names, parts))
        return tuple(parts) if container is not list else list(parts)
    raise FedcTypeError(f"{where}: a tf_computation cannot take a value of type {t}")


def _order(structure) -> list[int]:
    """For each position of tf.nest's flat order of ``structure``, the leaf's index in fedc's order.

    fedc orders struct elements as written (dict insertion order); tf.nest sorts
    dict keys. Numbering the leaves in fedc order and flattening the numbered
    copy with tf.nest gives the permutation between the two.
    """
    import tensorflow as tf
    from fedc.types import is_namedtuple

    counter = iter(range(1 << 62))

    def number(x):
        if is_namedtuple(x):
            return type(x)(*[number(v) for v in x])
        if isinstance(x, dict):
            return {k: number(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return type(x)(number(v) for v in x)
        return next(counter)

    return tf.nest.flatten(number(structure))


def trace_tf_computation(fn: Callable, declared: Sequence[Any], trusted: bool = False) -> Computation:
    """Traces ``fn`` with TensorFlow into a :class:`~fedc.Computation` holding a ``Compiled`` node."""
    import tensorflow as tf

    name = identifier(fn.__name__ if fn.__name__ != "<lambda>" else "lambda")
    parameter_type, packed_names = parameter_plan(fn, declared, "tf_computation")
    python_params = list(inspect.signature(fn).parameters)
    where = f"tf_computation {fn.__name__!r}"
    if parameter_type is None:
        arg_types: list[Type] = []
    elif len(python_params) == 1:
        arg_types = [parameter_type]
    else:
        # Each Python parameter takes the struct element named after it (parameter_plan names them).
        arg_types = [parameter_type[p] for p in python_params]
    specs = [_tf_spec(t, where) for t in arg_types]
    try:
        concrete = tf.function(fn, autograph=True).get_concrete_function(*specs)
    except FedcError:
        raise
    except Exception as e:
        raise FedcError(f"{where} failed while being traced by TensorFlow: {type(e).__name__}: {e}") from None

    variables = list(concrete.variables)
    if variables:
        listed = ", ".join(sorted({v.name for v in variables}))
        raise FedcError(
            f"{where} captures TensorFlow variable(s) {listed}; a tf_computation must be a pure "
            "function: pass state in as tensors (parameters) and return the new state"
        )
    captured = list(concrete.captured_inputs)
    if any(c.dtype == tf.resource for c in captured):
        raise FedcError(
            f"{where} captures a TensorFlow resource (a variable, table or iterator) from outside; "
            "pass state in as tensors (parameters) instead"
        )
    if captured:
        from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

        concrete = convert_variables_to_constants_v2(concrete)

    outputs = concrete.structured_outputs
    if outputs is None:
        raise FedcError(f"{where} returns nothing; a tf_computation returns its result")
    result_type = _result_type(outputs, where)

    flat_inputs = [t for t in concrete.inputs if t.dtype != tf.resource][: sum(len(tg.flat_leaves(t)) for t in arg_types)]
    names_by_parameter: dict[str, list[str]] = {}
    offset = 0
    for p, t, spec in zip(python_params, arg_types, specs):
        count = len(tg.flat_leaves(t))
        tf_order = _order(spec)
        names = [None] * count
        for position, fedc_index in enumerate(tf_order):
            names[fedc_index] = flat_inputs[offset + position].name
        names_by_parameter[p] = names
        offset += count
    # The payload's inputs follow the parameter type's order (packed_names), which may differ from the Python one.
    input_names = [name for p in (packed_names or python_params) for name in names_by_parameter[p]]
    output_order = _order(outputs)
    output_names = [None] * len(output_order)
    for position, fedc_index in enumerate(output_order):
        output_names[fedc_index] = concrete.outputs[position].name

    payload = tg.make_payload(concrete.graph.as_graph_def(), input_names, output_names)
    tensorflow_ops.admit(payload, where, trusted)
    node = bb.Compiled(tg.KIND, payload, FunctionType(parameter_type, result_type), name)
    return Computation(Module(name, [(name, node)]), name, packed_names, fn)


def _result_type(outputs, where: str) -> Type:
    import tensorflow as tf
    from fedc.types import is_namedtuple

    if isinstance(outputs, tf.data.Dataset):
        # A dataset is a sequence T*, its elements typed by their spec (as TFF types it).
        try:
            return to_type(tf.data.DatasetSpec.from_value(outputs))
        except FedcTypeError as e:
            raise FedcError(f"{where} returns a dataset whose elements fedc cannot type: {e.message}") from None
    if isinstance(outputs, tf.Tensor):
        if outputs.dtype == tf.variant:
            raise FedcError(
                f"{where} returns a tf.variant tensor (a TensorFlow handle); return the tf.data.Dataset "
                "itself, tensors, or structs of them"
            )
        shape = None if outputs.shape.rank is None else outputs.shape.as_list()
        dtype = "str" if outputs.dtype == tf.string else outputs.dtype.as_numpy_dtype
        return TensorType(dtype, shape)
    if is_namedtuple(outputs):
        return StructType([(k, _result_type(v, where)) for k, v in outputs._asdict().items()], type(outputs))
    if isinstance(outputs, dict):
        return StructType([(k, _result_type(v, where)) for k, v in outputs.items()], type(outputs))
    if isinstance(outputs, (list, tuple)):
        return StructType([_result_type(v, where) for v in outputs], type(outputs))
    raise FedcError(f"{where} returns {outputs!r}, which is not a tensor, a dataset or a struct of them")
