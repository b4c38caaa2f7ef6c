"""``@fedc.tf_computation``: tracing a Python TensorFlow function into a ``Compiled`` block.

The function is traced once per parameter type with ``tf.function``; its graph
becomes the payload of a ``Compiled`` node (see :mod:`fedc.tensorflow_graphs`).
State from outside (a captured variable) is refused: it is passed in and out
as tensors. A body that creates its own variables (a Keras model, an
optimizer) is traced in a graph of its own, where they are initialized on
every call (:func:`_trace_with_variables`). Sequences (``fedc.SequenceType``) arrive as
``tf.data.Dataset`` parameters, and a returned ``tf.data.Dataset`` is a
sequence result (``T*``). Without declared types, the computation is
polymorphic and is specialised where it is used.

While TensorFlow traces the function, a :class:`TensorFlowTracer` is the
current context: a ``tf_computation`` called in the body is inlined into the
graph being built (its graph imported, its inputs bound to the caller's
tensors), as TFF does.
"""

from __future__ import annotations

import collections
import inspect
from typing import Any, Callable, Optional, Sequence

from fedc import context
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


def tf_computation(*types_or_fn, trusted: bool = False, autograph: bool = True):
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

    ``autograph=False`` traces the function as written, without AutoGraph's
    rewriting of Python control flow on tensors (``if``/``for`` over tensors
    must then be ``tf.cond``/``tf.while_loop``/``dataset.reduce``): for code
    that needs none, such as Keras 3 models, tracing is several times faster.
    """
    def trace(fn: Callable, declared: Sequence[Any]) -> Computation:
        return trace_tf_computation(fn, declared, trusted, rewrite_control_flow=autograph)

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
        return _python_struct(t, [_tf_spec(e, where) for e in t])
    raise FedcTypeError(f"{where}: a tf_computation cannot take a value of type {t}")


def _python_struct(t: StructType, parts: list):
    """``parts`` (one per element of ``t``) in the Python structure a TensorFlow body sees for ``t``.

    A namedtuple container stays one; named elements make an ``OrderedDict``
    (as TFF hands them over); unnamed ones a tuple, or a list if ``t`` came
    from one.
    """
    names = t.names()
    container = t.python_container
    if container is not None and hasattr(container, "_fields"):
        return container(*parts)
    if names and all(n is not None for n in names):
        return collections.OrderedDict(zip(names, parts))
    return list(parts) if container is list else tuple(parts)


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


def trace_tf_computation(fn: Callable, declared: Sequence[Any], trusted: bool = False,
                         rewrite_control_flow: bool = True) -> Computation:
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
    tracer = TensorFlowTracer(where)
    try:
        with context.installed(tracer), tf.variable_creator_scope(_refuse_creation):
            concrete = tf.function(fn, autograph=rewrite_control_flow).get_concrete_function(*specs)
    except FedcError:
        raise
    except Exception as e:
        if tracer.failure is not None:  # TensorFlow wraps what a call in the body raised
            raise tracer.failure from None
        if _CreatesVariables.found(e):
            payload, result_type = _trace_with_variables(fn, arg_types, tracer, where, rewrite_control_flow)
            return _computation(payload, where, trusted, parameter_type, result_type, name, packed_names, fn)
        raise FedcError(f"{where} failed while being traced by TensorFlow: {type(e).__name__}: {e}") from None

    variables = list(concrete.variables)
    if variables:
        listed = ", ".join(sorted({v.name for v in variables}))
        raise FedcError(
            f"{where} captures TensorFlow variable(s) {listed} created outside it; a tf_computation must be "
            "a pure function: pass state in as tensors (parameters) and return the new state, or create "
            "the variables inside the tf_computation (they are then initialized on every call)"
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
    return _computation(payload, where, trusted, parameter_type, result_type, name, packed_names, fn)


def _computation(payload: bytes, where: str, trusted: bool, parameter_type, result_type: Type, name: str,
                 packed_names, fn: Callable) -> Computation:
    tensorflow_ops.admit(payload, where, trusted)
    node = bb.Compiled(tg.KIND, payload, FunctionType(parameter_type, result_type), name)
    return Computation(Module(name, [(name, node)]), name, packed_names, fn)


# --------------------------------------------------------------------------
# Bodies that create TensorFlow variables


class _CreatesVariables(Exception):
    """Raised (through TensorFlow) when the body creates a variable while ``tf.function`` traces it."""

    @staticmethod
    def found(error: BaseException) -> bool:
        seen = set()
        while error is not None and id(error) not in seen:  # TensorFlow may wrap or chain it
            if isinstance(error, _CreatesVariables):
                return True
            seen.add(id(error))
            error = error.__cause__ or error.__context__
        return False


def _refuse_creation(next_creator, **kwargs):
    raise _CreatesVariables()


def _trace_with_variables(fn: Callable, arg_types: list[Type], tracer: "TensorFlowTracer", where: str,
                          rewrite_control_flow: bool) -> tuple[bytes, Type]:
    """Traces a body that creates variables (a Keras model, an optimizer, a ``VariableModel``).

    ``tf.function`` creates variables once, outside the function, so a second
    call would see the first call's values; fedc instead traces the body in a
    graph of its own, where each variable is a ``VarHandleOp`` with its
    initializer. TensorFlow's automatic control dependencies order every read
    and write of a variable as the body wrote them (the initializer first) and
    make every output wait for all of them. Each variable gets the anonymous
    shared name, so every run of the graph creates and initializes fresh
    variables, freed when it ends: from outside the computation stays a pure
    function, as a ``tf_computation`` must be (TFF initializes such variables
    on every call too).
    """
    import tensorflow as tf
    from tensorflow.python.framework.auto_control_deps import AutomaticControlDependencies

    graph = tf.Graph()
    input_names: list[str] = []
    try:
        with graph.as_default(), context.installed(tracer):
            args = [_graph_input(t, input_names) for t in arg_types]
            body = tf.autograph.to_graph(fn) if rewrite_control_flow else fn
            with AutomaticControlDependencies() as dependencies:
                outputs = body(*args)
                if outputs is None:
                    raise FedcError(f"{where} returns nothing; a tf_computation returns its result")
                outputs = _as_tensors(outputs, where)
                result_type = _result_type(outputs, where)
                returned = [dependencies.mark_as_return(t) for t in _fedc_leaves(outputs)]
    except FedcError:
        raise
    except Exception as e:
        if tracer.failure is not None:
            raise tracer.failure from None
        raise FedcError(f"{where} failed while being traced by TensorFlow: {type(e).__name__}: {e}") from None
    graph_def = graph.as_graph_def()
    for node in graph_def.node:
        if node.op == "VarHandleOp":
            node.attr["shared_name"].s = tensorflow_ops.ANONYMOUS_VARIABLE
            node.attr["container"].s = b""
    return tg.make_payload(graph_def, input_names, [t.name for t in returned]), result_type


def _graph_input(t: Type, names: list[str]):
    """A placeholder structure for a value of type ``t`` (datasets from variants); appends the names."""
    import tensorflow as tf

    if isinstance(t, TensorType):
        placeholder = tf.compat.v1.placeholder(tg.tf_dtype(t), t.shape)
        names.append(placeholder.name)
        return placeholder
    if isinstance(t, SequenceType):
        variant = tf.compat.v1.placeholder(tf.variant, [])
        names.append(variant.name)
        return tf.data.experimental.from_variant(variant, structure=tg.element_spec(t.element))
    if isinstance(t, StructType):
        return _python_struct(t, [_graph_input(e, names) for e in t])
    raise FedcTypeError(f"a tf_computation cannot take a value of type {t}")


def _as_tensors(outputs, where: str):
    """The body's result with variables read (a Keras or TensorFlow variable becomes its value)."""
    import tensorflow as tf
    from fedc.types import is_namedtuple

    if isinstance(outputs, (tf.Tensor, tf.data.Dataset)):
        return outputs
    if is_namedtuple(outputs):
        return type(outputs)(*[_as_tensors(v, where) for v in outputs])
    if isinstance(outputs, dict):
        return type(outputs)((k, _as_tensors(v, where)) for k, v in outputs.items())
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(_as_tensors(v, where) for v in outputs)
    try:
        return tf.convert_to_tensor(outputs)  # variables (tf.Variable, keras.Variable), numbers
    except (TypeError, ValueError):
        return outputs  # _result_type names what it is


def _fedc_leaves(outputs) -> list:
    """The tensors of a result in fedc's order (dict insertion order); datasets as variants."""
    import tensorflow as tf
    from fedc.types import is_namedtuple

    if isinstance(outputs, tf.data.Dataset):
        return [tf.data.experimental.to_variant(outputs)]
    if isinstance(outputs, tf.Tensor):
        return [outputs]
    if is_namedtuple(outputs):
        outputs = list(outputs)
    elif isinstance(outputs, dict):
        outputs = list(outputs.values())
    return [leaf for v in outputs for leaf in _fedc_leaves(v)]


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


# --------------------------------------------------------------------------
# Calls of tf_computations while TensorFlow traces another one


class TensorFlowTracer(context.Context):
    """The context while TensorFlow traces a ``tf_computation``'s body (``where`` names it).

    A ``tf_computation`` called there runs in the graph being built: its
    ``Compiled`` graph is imported with its inputs bound to the argument
    tensors, and its outputs come back as tensors in the structure the callee
    returns (dicts for named structs, its Python containers). Anything else — a
    federated computation — cannot run inside TensorFlow and is refused.
    """

    def __init__(self, where: str):
        self.where = where
        self.failure: Optional[FedcError] = None  # the error of a call in the body, if one failed

    def invoke(self, computation, args: tuple, kwargs: dict) -> Any:
        try:
            return self._inline(computation, args, kwargs)
        except FedcError as e:
            self.failure = e
            raise

    def _inline(self, computation, args: tuple, kwargs: dict) -> Any:
        from fedc.context import pack_arguments

        node = computation.node
        callee = f"{computation.name!r}"
        if not (isinstance(node, bb.Compiled) and node.kind == tg.KIND):
            raise FedcError(
                f"{self.where} calls {callee} of type {computation.type_signature}, which is not a "
                "tf_computation; a tf_computation's body can call only other tf_computations (call "
                "federated computations from a federated_computation)"
            )
        signature = computation.type_signature
        flat: list = []
        if signature.parameter is not None:
            value = pack_arguments(computation, args, kwargs)
            if computation.parameter_names and isinstance(signature.parameter, StructType):
                value = dict(zip(computation.parameter_names, value))
            flat = _graph_leaves(value, signature.parameter, f"{self.where}: argument of {callee}")
        elif args or kwargs:
            raise FedcTypeError(f"{self.where}: {callee} takes no arguments, but was called with {len(args) + len(kwargs)}")
        outputs = iter(tg.call_in_graph(node, flat))
        return _graph_value(signature.result, outputs)

    def invoke_polymorphic(self, computation, args: tuple, kwargs: dict) -> Any:
        try:
            values = computation.bind(args, kwargs)
            specialized = computation.specialize(computation.parameter_type([_graph_type(v) for v in values]))
        except FedcError as e:
            self.failure = e
            raise
        return self.invoke(specialized, tuple(values), {})


def _graph_type(value: Any) -> Type:
    """The fedc type of a value passed to a tf_computation inside TensorFlow (tensors, datasets, structures)."""
    import tensorflow as tf
    from fedc.types import infer_type, is_namedtuple

    if isinstance(value, tf.data.Dataset):
        return SequenceType(_type_of_spec(value.element_spec))
    if isinstance(value, tf.Tensor):
        shape = None if value.shape.rank is None else value.shape.as_list()
        return TensorType("str" if value.dtype == tf.string else value.dtype, shape)
    if is_namedtuple(value):
        return StructType([(k, _graph_type(v)) for k, v in value._asdict().items()], type(value))
    if isinstance(value, dict):
        return StructType([(k, _graph_type(v)) for k, v in value.items()], type(value))
    if isinstance(value, (list, tuple)):
        return StructType([_graph_type(v) for v in value], type(value))
    return infer_type(value)


def _type_of_spec(spec: Any) -> Type:
    import tensorflow as tf

    if isinstance(spec, tf.TensorSpec):
        shape = None if spec.shape.rank is None else spec.shape.as_list()
        return TensorType("str" if spec.dtype == tf.string else spec.dtype, shape)
    if isinstance(spec, dict):
        return StructType([(k, _type_of_spec(v)) for k, v in spec.items()])
    if isinstance(spec, (list, tuple)):
        return StructType([_type_of_spec(v) for v in spec])
    raise FedcTypeError(f"a dataset of {spec!r} is not a fedc sequence")


def _graph_leaves(value: Any, t: Type, what: str) -> list:
    """The graph tensors of ``value``'s flat leaves in fedc's order, checked against type ``t``."""
    import tensorflow as tf
    from fedc.types import is_namedtuple

    if isinstance(t, StructType):
        names = t.names()
        if is_namedtuple(value):
            value = value._asdict()
        if isinstance(value, dict):
            if any(n is None for n in names) or set(value) != set(names):
                raise FedcTypeError(f"{what}: expected {t}, got a structure with keys {sorted(value)}")
            parts = [value[n] for n in names]
        elif isinstance(value, (list, tuple)) and len(value) == len(t):
            parts = list(value)
        else:
            raise FedcTypeError(f"{what}: expected {t} ({len(t)} elements), got {value!r}")
        leaves = []
        for index, (part, (name, element)) in enumerate(zip(parts, t.items())):
            leaves.extend(_graph_leaves(part, element, f"{what}, element {name if name is not None else index}"))
        return leaves
    if isinstance(t, SequenceType):
        if not isinstance(value, tf.data.Dataset):
            raise FedcTypeError(f"{what}: expected {t} (a tf.data.Dataset), got {value!r}")
        actual = SequenceType(_type_of_spec(value.element_spec))
        if not t.is_assignable_from(actual):
            raise FedcTypeError(f"{what}: expected {t}, got a dataset of type {actual}")
        return [tf.data.experimental.to_variant(value)]
    if not isinstance(t, TensorType):
        raise FedcTypeError(f"{what}: a tf_computation cannot take a value of type {t}")
    if isinstance(value, tf.Tensor):
        actual = _graph_type(value)
        if actual.dtype != t.dtype:
            raise FedcTypeError(f"{what}: expected {t}, got a tensor of type {actual} (convert it with tf.cast)")
        tensor = value
    else:
        try:
            tensor = tf.convert_to_tensor(value, dtype=tg.tf_dtype(t))
        except (TypeError, ValueError) as e:
            raise FedcTypeError(f"{what}: expected {t}, got {value!r}: {e}") from None
        actual = _graph_type(tensor)
    if not t.is_assignable_from(actual) and not actual.is_assignable_from(t):  # unknown dims pass
        raise FedcTypeError(f"{what}: expected {t}, got a tensor of type {actual}")
    return [tensor]


def _graph_value(t: Type, outputs) -> Any:
    """The callee's result from its output tensors, in the structure a TensorFlow function returns."""
    import tensorflow as tf

    if isinstance(t, StructType):
        return _python_struct(t, [_graph_value(e, outputs) for e in t])
    tensor = next(outputs)
    if isinstance(t, SequenceType):
        return tf.data.experimental.from_variant(tensor, structure=tg.element_spec(t.element))
    return tensor
