"""Models for federated learning: TFF's ``tff.learning.models`` on Keras 3.

* :class:`VariableModel` — TFF's interface of a model made of TensorFlow
  variables (the image-classification tutorial's ``MnistModel`` implements it).
* :func:`from_keras_model` — a Keras 3 model as a ``VariableModel``, with the
  metrics TFF adds (``loss``, ``num_examples``, ``num_batches``).
* :class:`FunctionalModel` and :func:`functional_model_from_keras` — a model
  as pure functions of its weights.
* :class:`ModelWeights`, :class:`BatchOutput`.

fedc's algorithms train a model through its *stateless form*
(:class:`StatelessModel`, from :func:`stateless`): the same model with its
weights and metric variables passed in and out as values. A Keras model gets
it from Keras 3's ``stateless_call`` and its metrics' ``stateless_update_state``,
so the local training a round runs is a pure TensorFlow function — one the tf
backend runs for all clients at once — and nothing is cloned (TFF clones the
Keras model in a graph, which is why it refuses shared layers; fedc does not
need to).
"""

from __future__ import annotations

import abc
import collections
import weakref
from typing import Any, Callable, NamedTuple, Optional, Sequence

import numpy as np

import fedc
from fedc import FedcTypeError, FedcValueError

__all__ = [
    "BatchOutput",
    "FunctionalModel",
    "ModelWeights",
    "StatelessModel",
    "VariableModel",
    "from_keras_model",
    "functional_model_from_keras",
    "stateless",
    "weights_type_from_model",
]

MODEL_ARG_NAME = "x"
MODEL_LABEL_NAME = "y"


def _tf():
    import tensorflow as tf

    return tf


def _keras():
    import keras

    return keras


class BatchOutput(NamedTuple):
    """What a forward pass over one batch gives: its loss, the predictions, how many examples it had."""

    loss: Any = None
    predictions: Any = None
    num_examples: Any = None


class ModelWeights(NamedTuple):
    """A model's weights: ``trainable`` and ``non_trainable``, each a list of tensors (or variables, or arrays)."""

    trainable: Any
    non_trainable: Any

    @classmethod
    def from_model(cls, model) -> "ModelWeights":
        """The variables of a :class:`VariableModel` or a Keras model."""
        if isinstance(model, VariableModel) or is_keras_model(model):
            return cls(list(model.trainable_variables), list(model.non_trainable_variables))
        raise FedcTypeError(f"ModelWeights.from_model takes a VariableModel or a Keras model, "
                            f"got {type(model).__name__}")

    def assign_weights_to(self, model) -> None:
        """Sets ``model``'s variables (a VariableModel's or a Keras model's) to these weights."""
        if is_keras_model(model):
            targets = list(model.trainable_weights), list(model.non_trainable_weights)
        elif isinstance(model, VariableModel):
            targets = list(model.trainable_variables), list(model.non_trainable_variables)
        else:
            raise FedcTypeError(f"assign_weights_to takes a VariableModel or a Keras model, got {type(model).__name__}")
        for kind, variables, values in zip(("trainable", "non_trainable"), targets, self):
            values = list(values)
            if len(variables) != len(values):
                raise FedcValueError(f"assign_weights_to: the model has {len(variables)} {kind} weights, "
                                     f"these weights {len(values)}")
            for variable, value in zip(variables, values):
                if tuple(variable.shape) != tuple(np.shape(value)):
                    raise FedcValueError(f"assign_weights_to: {kind} weight {getattr(variable, 'path', variable.name)} "
                                         f"has shape {tuple(variable.shape)}, the value {tuple(np.shape(value))}")
                variable.assign(value)

    def convert_variables_to_arrays(self) -> "ModelWeights":
        """The same weights as numpy arrays."""
        return ModelWeights([_array(v) for v in self.trainable], [_array(v) for v in self.non_trainable])


def _array(value) -> np.ndarray:
    """A variable's or tensor's value as a numpy array of its own."""
    return np.array(value.numpy() if hasattr(value, "numpy") else value)


def is_keras_model(model) -> bool:
    """Whether ``model`` is a Keras model (without importing Keras for a value that cannot be one)."""
    try:
        return isinstance(model, _keras().Model)
    except ImportError:
        return False


class VariableModel(abc.ABC):
    """TFF's model interface: TensorFlow variables and the methods that use them.

    ``trainable_variables``, ``non_trainable_variables`` and
    ``local_variables`` (the metrics' counters) are lists of variables;
    ``input_spec`` is the structure of ``tf.TensorSpec`` of one batch;
    ``forward_pass(batch_input, training=True)`` returns a
    :class:`BatchOutput` and updates the metrics;
    ``report_local_unfinalized_metrics()`` gives, per metric name, the list of
    its variables' values, and ``metric_finalizers()``, per name, the function
    from that list to the metric's value.
    """

    @property
    @abc.abstractmethod
    def trainable_variables(self) -> list: ...

    @property
    @abc.abstractmethod
    def non_trainable_variables(self) -> list: ...

    @property
    @abc.abstractmethod
    def local_variables(self) -> list: ...

    @property
    @abc.abstractmethod
    def input_spec(self) -> Any: ...

    @abc.abstractmethod
    def forward_pass(self, batch_input, training: bool = True) -> BatchOutput: ...

    @abc.abstractmethod
    def predict_on_batch(self, batch_input, training: bool = True): ...

    @abc.abstractmethod
    def report_local_unfinalized_metrics(self) -> collections.OrderedDict: ...

    @abc.abstractmethod
    def metric_finalizers(self) -> collections.OrderedDict: ...

    @abc.abstractmethod
    def reset_metrics(self) -> None: ...


# --------------------------------------------------------------------------
# The stateless form: what the algorithms train


class StatelessModel(abc.ABC):
    """A model as pure functions of explicit values (fedc's; TFF has no such interface).

    ``initial_weights`` is a :class:`ModelWeights` of numpy arrays. The
    metrics' state is an ``OrderedDict`` of metric name to the list of its
    variables' values — the structure ``report_local_unfinalized_metrics``
    reports — so it aggregates across clients like TFF's unfinalized metrics.
    """

    @property
    @abc.abstractmethod
    def initial_weights(self) -> ModelWeights: ...

    @property
    @abc.abstractmethod
    def input_spec(self) -> Any: ...

    @abc.abstractmethod
    def forward_pass(self, weights: ModelWeights, batch, training: bool = True) -> tuple:
        """``(BatchOutput, new non-trainable weights)`` for one batch."""

    @abc.abstractmethod
    def predict_on_batch(self, weights: ModelWeights, x, training: bool = True) -> Any: ...

    @abc.abstractmethod
    def initial_metrics(self) -> collections.OrderedDict: ...

    @abc.abstractmethod
    def update_metrics(self, state: collections.OrderedDict, batch, output: BatchOutput) -> collections.OrderedDict:
        ...

    @abc.abstractmethod
    def metric_finalizers(self) -> collections.OrderedDict: ...


def stateless(model, model_fn: Optional[Callable] = None) -> StatelessModel:
    """The stateless form of ``model``: a model from :func:`from_keras_model`, a :class:`FunctionalModel`,
    or a :class:`VariableModel` written by hand, given with ``model_fn``, the function that makes one.

    A hand-written ``VariableModel`` keeps its weights and metrics in
    ``tf.Variable`` s; its stateless form makes a fresh model (``model_fn()``)
    in each TensorFlow graph that uses it, assigns the weights to its
    variables, and reads its metrics back (see :class:`_VariableStateless`).
    """
    if isinstance(model, StatelessModel):
        return model
    form = getattr(model, "stateless_form", None)
    if callable(form):
        return form()
    if isinstance(model, VariableModel):
        if model_fn is None:
            raise FedcTypeError(
                f"the stateless form of a {type(model).__name__} (a VariableModel with its own variables) needs "
                "the function that makes one: stateless(model, model_fn)")
        return _VariableStateless(model_fn, model)
    raise FedcTypeError(
        f"fedc cannot train a {type(model).__name__}: its algorithms run a fedc.learning.models.VariableModel "
        "(e.g. from from_keras_model) or a FunctionalModel")


class _VariableStateless(StatelessModel):
    """A hand-written :class:`VariableModel` as pure functions of its weights.

    In each graph that uses it (a ``tf_computation``, which fedc traces so
    that variables created inside are fresh on every call) a new model is made
    by ``model_fn``, in the outermost graph (``tf.init_scope``), so that a
    ``dataset.reduce`` body can use it. ``forward_pass`` assigns the given
    weights to the model's variables and runs the model's own forward pass,
    whose loss carries the gradient of the model's trainable variables back to
    the weights given (``tf.custom_gradient``). The model's metrics live in its
    variables, which its forward pass updates: ``update_metrics`` reads them
    (``report_local_unfinalized_metrics``), so the state threaded through the
    training loop is what the model reports.
    """

    def __init__(self, model_fn: Callable, first: VariableModel):
        self._model_fn = model_fn
        self._eager = first  # the model made eagerly (at build time): initial weights, specs
        self._by_graph: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()

    def _model(self) -> VariableModel:
        tf = _tf()
        if tf.executing_eagerly():
            return self._eager
        with tf.init_scope():
            if tf.executing_eagerly():
                # Inside a tf.function traced from eager code: fedc's tracer retraces the
                # tf_computation in a graph of its own once it sees variables created.
                return self._checked(self._model_fn())
            graph = tf.compat.v1.get_default_graph()
            model = self._by_graph.get(graph)
            if model is None:
                model = self._by_graph[graph] = self._checked(self._model_fn())
            return model

    def _checked(self, model) -> VariableModel:
        if not isinstance(model, VariableModel):
            raise FedcTypeError(f"model_fn returned a {type(model).__name__}, not a fedc.learning.models.VariableModel")
        return model

    @property
    def initial_weights(self) -> ModelWeights:
        return ModelWeights([_array(v) for v in self._eager.trainable_variables],
                            [_array(v) for v in self._eager.non_trainable_variables])

    @property
    def input_spec(self):
        return self._eager.input_spec

    def _assign(self, model: VariableModel, weights: ModelWeights) -> None:
        for variables, values, kind in ((model.trainable_variables, weights.trainable, "trainable"),
                                        (model.non_trainable_variables, weights.non_trainable, "non-trainable")):
            variables, values = list(variables), list(values)
            if len(variables) != len(values):
                raise FedcValueError(f"the model has {len(variables)} {kind} variables, the weights {len(values)}")
            for variable, value in zip(variables, values):
                variable.assign(value)

    def predict_on_batch(self, weights: ModelWeights, x, training: bool = True):
        model = self._model()
        self._assign(model, weights)
        return model.predict_on_batch(x, training)

    def forward_pass(self, weights: ModelWeights, batch, training: bool = True):
        tf = _tf()
        model = self._model()
        self._assign(model, weights)
        trainable = list(model.trainable_variables)
        outputs = {}

        @tf.custom_gradient
        def loss_of(*given):
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(trainable)
                output = model.forward_pass(batch, training)
            outputs["output"] = output

            def gradient(upstream, variables=None):
                grads = tape.gradient(output.loss, trainable, unconnected_gradients=tf.UnconnectedGradients.ZERO)
                return [upstream * g for g in grads], [None] * len(variables or ())

            return tf.identity(output.loss), gradient

        loss = loss_of(*weights.trainable)
        output = outputs["output"]
        non_trainable = [tf.identity(v.read_value() if hasattr(v, "read_value") else v)
                         for v in model.non_trainable_variables]
        return BatchOutput(loss=loss, predictions=output.predictions, num_examples=output.num_examples), non_trainable

    def initial_metrics(self):
        return self._reported(self._model())

    def update_metrics(self, state, batch, output: BatchOutput):
        return self._reported(self._model())  # the forward pass updated the model's metric variables

    def _reported(self, model: VariableModel) -> collections.OrderedDict:
        tf = _tf()
        reported = model.report_local_unfinalized_metrics()
        return collections.OrderedDict((k, [tf.identity(tf.convert_to_tensor(x)) for x in
                                            (v if isinstance(v, (list, tuple)) else [v])])
                                       for k, v in reported.items())

    def metric_finalizers(self):
        return self._eager.metric_finalizers()


def _x_and_y(batch) -> tuple:
    if isinstance(batch, collections.abc.Mapping):
        if MODEL_ARG_NAME not in batch:
            raise FedcValueError(f"a batch is a dict with keys 'x' and 'y'; this one has {sorted(batch)}")
        return batch[MODEL_ARG_NAME], batch.get(MODEL_LABEL_NAME)
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    raise FedcValueError(f"a batch is a dict with keys 'x' and 'y' or a pair (x, y), got {type(batch).__name__}")


def _first_dim(structure, dtype=None):
    tf = _tf()
    leaf = tf.nest.flatten(structure)[0]
    n = leaf.nrows() if isinstance(leaf, tf.RaggedTensor) else tf.shape(leaf)[0]
    return tf.cast(n, dtype) if dtype is not None else n


# --------------------------------------------------------------------------
# Keras


def _checked_input_spec(input_spec) -> Any:
    tf = _tf()
    if isinstance(input_spec, fedc.Type):
        return _spec_of_type(input_spec)
    try:
        count = len(input_spec)
    except TypeError:
        raise FedcTypeError(f"input_spec must be a structure of two tf.TensorSpecs (x and y), got "
                            f"{type(input_spec).__name__}") from None
    if count != 2:
        raise FedcValueError(f"input_spec must have two elements, x and y (as a dict with keys 'x' and 'y' or a "
                             f"pair); it has {count}")
    for leaf in tf.nest.flatten(input_spec):
        if not isinstance(leaf, (tf.TensorSpec, tf.RaggedTensorSpec)):
            raise FedcTypeError(f"input_spec's leaves must be tf.TensorSpecs, got {type(leaf).__name__} {leaf!r}")
    if isinstance(input_spec, collections.abc.Mapping):
        for key in (MODEL_ARG_NAME, MODEL_LABEL_NAME):
            if key not in input_spec:
                raise FedcValueError(f"input_spec is a dict, so it needs the keys 'x' and 'y'; it has {sorted(input_spec)}")
    return input_spec


def _spec_of_type(t) -> Any:
    tf = _tf()
    if isinstance(t, fedc.TensorType):
        return tf.TensorSpec(t.shape, tf.as_dtype(t.dtype))
    if isinstance(t, fedc.StructType):
        names = t.names()
        parts = [_spec_of_type(e) for e in t]
        if names and all(n is not None for n in names):
            return collections.OrderedDict(zip(names, parts))
        return tuple(parts)
    raise FedcTypeError(f"input_spec's type must be made of tensors and structs, got {t}")


class _LossMean:
    """The ``loss`` metric: the mean of the batches' losses weighted by their sizes; state [total, count]."""

    name = "loss"

    def initial(self):
        tf = _tf()
        return [tf.zeros([], tf.float32), tf.zeros([], tf.float32)]

    def update(self, state, y, predictions, loss):
        tf = _tf()
        n = _first_dim(predictions, tf.float32)
        return [state[0] + tf.cast(loss, tf.float32) * n, state[1] + n]

    @staticmethod
    def finalize(values):
        tf = _tf()
        return tf.math.divide_no_nan(values[0], values[1])


class _Counter:
    """``num_examples`` (the labels' first dimension) or ``num_batches`` (1 per batch); state [total int64]."""

    def __init__(self, name: str):
        self.name = name

    def initial(self):
        tf = _tf()
        return [tf.zeros([], tf.int64)]

    def update(self, state, y, predictions, loss):
        tf = _tf()
        step = _first_dim(y, tf.int64) if self.name == "num_examples" else tf.constant(1, tf.int64)
        return [state[0] + step]

    @staticmethod
    def finalize(values):
        return values[0]


class _KerasMetric:
    """A Keras 3 metric used statelessly: its state is its variables' values."""

    def __init__(self, metric):
        self.metric = metric
        self.name = metric.name

    def initial(self):
        tf = _tf()
        return [tf.convert_to_tensor(np.zeros(v.shape, v.dtype)) for v in self.metric.variables]

    def update(self, state, y, predictions, loss):
        return list(self.metric.stateless_update_state(list(state), y, predictions))

    def finalize(self, values):
        return self.metric.stateless_result(list(values))


def _metric_objects(metrics) -> list:
    keras = _keras()
    if metrics is None:
        metrics = []
    if not isinstance(metrics, list):
        raise FedcTypeError(f"metrics must be a list of Keras metrics (or of functions making one), "
                            f"got {type(metrics).__name__}")
    made = []
    for m in metrics:
        metric = m if isinstance(m, keras.metrics.Metric) else (m() if callable(m) else None)
        if not isinstance(metric, keras.metrics.Metric):
            raise FedcTypeError(f"metrics: {m!r} is not a Keras metric nor a function making one")
        made.append(metric)
    names = [m.name for m in made]
    repeated = {n for n in names if names.count(n) > 1}
    if repeated:
        raise FedcValueError(f"metrics: two metrics are named {sorted(repeated)[0]!r}; give them distinct names")
    objects: list = [_KerasMetric(m) for m in made] + [_LossMean()]
    objects += [_Counter(name) for name in ("num_examples", "num_batches") if name not in names]
    return objects


def from_keras_model(keras_model, loss, input_spec, loss_weights: Optional[Sequence[float]] = None,
                     metrics: Optional[list] = None) -> "VariableModel":
    """A Keras 3 model (not compiled, built) as a :class:`VariableModel` for fedc's algorithms.

    ``loss`` is a Keras loss (or a list, one per output, with
    ``loss_weights``); ``input_spec`` the structure of one batch (``x`` and
    ``y``: e.g. a dataset's ``element_spec``); ``metrics`` Keras metrics or
    functions making them. The model reports those metrics, then ``loss``,
    ``num_examples`` and ``num_batches``, as TFF's does.
    """
    keras = _keras()
    if not isinstance(keras_model, keras.Model):
        raise FedcTypeError(f"from_keras_model takes a Keras model (keras.Model), got {type(keras_model).__name__}")
    if getattr(keras_model, "compiled", False):
        raise FedcValueError("from_keras_model takes a Keras model that is not compiled: fedc's algorithms bring "
                             "their own optimizers and losses (build the model again without model.compile)")
    if not keras_model.built or not keras_model.variables:
        raise FedcValueError(f"Keras model {keras_model.name!r} has no weights yet: build it first (start it with "
                             "keras.Input(shape), or call model.build(input_shape)) so fedc knows its weights")
    if isinstance(loss, list):
        outputs = len(getattr(keras_model, "outputs", None) or [None])
        if len(loss) != outputs:
            raise FedcValueError(f"loss is a list of {len(loss)} losses but the model has {outputs} output(s)")
        losses = loss
        if loss_weights is None:
            loss_weights = [1.0] * len(loss)
        elif len(loss_weights) != len(loss):
            raise FedcValueError(f"loss_weights has {len(loss_weights)} weights for {len(loss)} losses")
        for w in loss_weights:
            if not isinstance(w, float):
                raise FedcTypeError(f"loss_weights are Python floats, got {type(w).__name__} {w!r}")
    else:
        if loss_weights is not None:
            raise FedcValueError("loss_weights goes with a list of losses, one per output; loss is a single loss")
        losses, loss_weights = [loss], [1.0]
    for one in losses:
        if not isinstance(one, keras.losses.Loss):
            raise FedcTypeError(f"loss must be a Keras loss (keras.losses.Loss), got {type(one).__name__}")
    return _KerasModel(keras_model, losses, list(loss_weights), _checked_input_spec(input_spec),
                       _metric_objects(metrics))


class _KerasModel(VariableModel):
    def __init__(self, keras_model, losses: list, loss_weights: list, input_spec, metric_objects: list):
        self._keras_model = keras_model
        self._losses = losses
        self._loss_weights = loss_weights
        self._input_spec = input_spec
        self._metrics = metric_objects
        self._metric_state = None

    # The VariableModel interface, statefully (eager use: inspecting, evaluating by hand)

    @property
    def trainable_variables(self):
        return list(self._keras_model.trainable_variables)

    @property
    def non_trainable_variables(self):
        return list(self._keras_model.non_trainable_variables)

    @property
    def local_variables(self):
        return [v for m in self._metrics if isinstance(m, _KerasMetric) for v in m.metric.variables]

    @property
    def input_spec(self):
        return self._input_spec

    def predict_on_batch(self, batch_input, training: bool = True):
        return self._keras_model(batch_input, training=training)

    def forward_pass(self, batch_input, training: bool = True) -> BatchOutput:
        form = self.stateless_form()
        weights = ModelWeights(self.trainable_variables, self.non_trainable_variables)
        output, non_trainable = form.forward_pass(ModelWeights(*[[v.value for v in part] for part in weights]),
                                                  batch_input, training)
        for variable, value in zip(self.non_trainable_variables, non_trainable):
            variable.assign(value)
        state = self._metric_state if self._metric_state is not None else form.initial_metrics()
        self._metric_state = form.update_metrics(state, batch_input, output)
        return output

    def report_local_unfinalized_metrics(self):
        state = self._metric_state if self._metric_state is not None else self.stateless_form().initial_metrics()
        return collections.OrderedDict((k, list(v)) for k, v in state.items())

    def metric_finalizers(self):
        return self.stateless_form().metric_finalizers()

    def reset_metrics(self):
        self._metric_state = None

    def stateless_form(self) -> StatelessModel:
        return _KerasStateless(self)


class _KerasStateless(StatelessModel):
    def __init__(self, model: _KerasModel):
        self._model = model

    @property
    def initial_weights(self) -> ModelWeights:
        k = self._model._keras_model
        return ModelWeights([_array(v) for v in k.trainable_variables], [_array(v) for v in k.non_trainable_variables])

    @property
    def input_spec(self):
        return self._model.input_spec

    def predict_on_batch(self, weights: ModelWeights, x, training: bool = True):
        predictions, _ = self._call(weights, x, training)
        return predictions

    def _call(self, weights: ModelWeights, x, training: bool):
        predictions, non_trainable, regularization = self._model._keras_model.stateless_call(
            list(weights.trainable), list(weights.non_trainable), x, training=training, return_losses=True)
        return predictions, (list(non_trainable), list(regularization))

    def forward_pass(self, weights: ModelWeights, batch, training: bool = True):
        tf = _tf()
        x, y = _x_and_y(batch)
        predictions, (non_trainable, regularization) = self._call(weights, x, training)
        loss = None
        if y is not None:
            if len(self._model._losses) == 1:
                terms = [self._model._losses[0](y, predictions)]
            else:
                terms = [w * f(y[i], predictions[i])
                         for i, (f, w) in enumerate(zip(self._model._losses, self._model._loss_weights))]
            loss = tf.add_n([tf.cast(t, tf.float32) for t in terms + list(regularization)])
        return BatchOutput(loss=loss, predictions=predictions, num_examples=_first_dim(x)), non_trainable

    def initial_metrics(self):
        return collections.OrderedDict((m.name, m.initial()) for m in self._model._metrics)

    def update_metrics(self, state, batch, output: BatchOutput):
        _, y = _x_and_y(batch)
        if y is None:
            raise FedcValueError("the batch has no labels ('y'), so its metrics cannot be updated")
        return collections.OrderedDict((m.name, m.update(state[m.name], y, output.predictions, output.loss))
                                       for m in self._model._metrics)

    def metric_finalizers(self):
        return collections.OrderedDict((m.name, m.finalize) for m in self._model._metrics)


# --------------------------------------------------------------------------
# FunctionalModel


class FunctionalModel(StatelessModel):
    """A model given as pure functions (TFF's ``FunctionalModel``; keyword arguments only).

    ``initial_weights`` is ``(trainable, non_trainable)``, sequences of
    arrays; ``predict_on_batch_fn(weights, x, training)`` gives predictions;
    ``loss_fn(output, label, sample_weight=None)`` the loss; ``metrics_fns``
    is ``(initialize, update(state, labels, batch_output, sample_weight=None),
    finalize(state))``. Its metrics are ``loss`` first, then those of
    ``metrics_fns`` (TFF's order for a functional model).
    """

    def __init__(self, *, initial_weights, predict_on_batch_fn: Callable, loss_fn: Callable,
                 metrics_fns: Optional[tuple] = None, input_spec):
        tf = _tf()
        try:
            trainable, non_trainable = initial_weights
        except (TypeError, ValueError):
            raise FedcValueError("initial_weights is a pair (trainable, non_trainable) of sequences of arrays") from None
        for leaf in tf.nest.flatten((trainable, non_trainable)):
            if isinstance(leaf, tf.Variable):
                raise FedcTypeError("initial_weights holds values (numpy arrays), not tf.Variables")
        if not callable(predict_on_batch_fn) or not callable(loss_fn):
            raise FedcTypeError("predict_on_batch_fn and loss_fn must be callable")
        self._weights = ModelWeights([np.asarray(w) for w in trainable], [np.asarray(w) for w in non_trainable])
        self._predict = predict_on_batch_fn
        self._loss = loss_fn
        self._metrics_fns = metrics_fns
        self._input_spec = _checked_input_spec(input_spec)

    @property
    def initial_weights(self) -> ModelWeights:
        return self._weights

    @property
    def input_spec(self):
        return self._input_spec

    def predict_on_batch(self, weights, x, training: bool = True):
        return self._predict(tuple(weights), x, training)

    def loss(self, output, label, sample_weight=None):
        return self._loss(output, label, sample_weight)

    def forward_pass(self, weights, batch, training: bool = True):
        x, y = _x_and_y(batch)
        predictions = self.predict_on_batch(weights, x, training)
        loss = None if y is None else self.loss(predictions, y)
        return BatchOutput(loss=loss, predictions=predictions, num_examples=_first_dim(predictions)), \
            list(weights.non_trainable)

    def initial_metrics(self):
        tf = _tf()
        state = collections.OrderedDict(loss=[tf.zeros([], tf.float32), tf.zeros([], tf.float32)])
        if self._metrics_fns is not None:
            state["metrics"] = self._metrics_fns[0]()
        return state

    def update_metrics(self, state, batch, output: BatchOutput):
        tf = _tf()
        _, y = _x_and_y(batch)
        n = tf.cast(output.num_examples, tf.float32)
        new = collections.OrderedDict(loss=[state["loss"][0] + tf.cast(output.loss, tf.float32) * n,
                                            state["loss"][1] + n])
        if self._metrics_fns is not None:
            new["metrics"] = self._metrics_fns[1](state["metrics"], y, output)
        return new

    def metric_finalizers(self):
        finalizers = collections.OrderedDict(loss=_LossMean.finalize)
        if self._metrics_fns is not None:
            finalizers["metrics"] = self._metrics_fns[2]
        return finalizers


def functional_model_from_keras(keras_model, loss_fn, input_spec, metrics_constructor=None) -> FunctionalModel:
    """A built Keras 3 model as a :class:`FunctionalModel` (its predictions from ``stateless_call``).

    ``keras_model`` is a model or a function making one; ``metrics_constructor``
    a Keras metric constructor, or a function returning an ``OrderedDict`` of
    them; their state is the metrics' variables' values.
    """
    keras = _keras()
    model = keras_model() if callable(keras_model) and not isinstance(keras_model, keras.Model) else keras_model
    if not isinstance(model, keras.Model):
        raise FedcValueError(f"functional_model_from_keras takes a Keras model or a function making one, "
                             f"got {type(model).__name__}")
    if not model.built or not model.variables:
        raise FedcValueError(f"Keras model {model.name!r} has no weights yet: build it first (keras.Input or "
                             "model.build)")
    initial = ([_array(v) for v in model.trainable_variables], [_array(v) for v in model.non_trainable_variables])

    def predict(weights, x, training):
        predictions, _ = model.stateless_call(list(weights[0]), list(weights[1]), x, training=training)
        return predictions

    def loss(output, label, sample_weight=None):
        return loss_fn(label, output, sample_weight=sample_weight)

    metrics_fns = None
    if metrics_constructor is not None:
        made = metrics_constructor()
        named = made if isinstance(made, collections.abc.Mapping) else collections.OrderedDict([(made.name, made)])
        named = collections.OrderedDict((k, v() if not isinstance(v, keras.metrics.Metric) else v)
                                        for k, v in named.items())
        wrapped = collections.OrderedDict((k, _KerasMetric(v)) for k, v in named.items())
        metrics_fns = (
            lambda: collections.OrderedDict((k, m.initial()) for k, m in wrapped.items()),
            lambda state, labels, output, sample_weight=None: collections.OrderedDict(
                (k, m.update(state[k], labels, output.predictions, output.loss)) for k, m in wrapped.items()),
            lambda state: collections.OrderedDict((k, m.finalize(state[k])) for k, m in wrapped.items()),
        )
    return FunctionalModel(initial_weights=initial, predict_on_batch_fn=predict, loss_fn=loss,
                           metrics_fns=metrics_fns, input_spec=input_spec)


def weights_type_from_model(model) -> "fedc.StructType":
    """The fedc type of a model's weights, ``<trainable=<…>,non_trainable=<…>>`` (a ModelWeights container)."""
    if callable(model) and not isinstance(model, (VariableModel, StatelessModel)) and not is_keras_model(model):
        model = model()
    if is_keras_model(model) or (isinstance(model, VariableModel) and not hasattr(model, "stateless_form")):
        weights = ModelWeights.from_model(model).convert_variables_to_arrays()
    else:
        weights = stateless(model).initial_weights

    def types(arrays):
        return fedc.StructType([fedc.TensorType(a.dtype, a.shape) for a in arrays], python_container=list)

    return fedc.StructType([("trainable", types(weights.trainable)), ("non_trainable", types(weights.non_trainable))],
                           python_container=ModelWeights)
