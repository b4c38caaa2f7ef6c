"""Federated learning algorithms as fedc computations: TFF's ``tff.learning.algorithms``.

``build_weighted_fed_avg`` and ``build_unweighted_fed_avg`` (McMahan et al.,
2017) and ``build_weighted_fed_prox`` (Li et al., 2020) compose, as TFF does,
four parts into a :class:`~fedc.learning.templates.LearningProcess`:

1. **distributor** — the server's model weights broadcast to the clients
   (state ``<>``, metrics ``<>``);
2. **client work** — each client trains from those weights over its dataset
   with the client optimizer (``dataset.reduce``: one pass per element) and
   returns its trained weights times its weight (its number of examples, or
   1) and the weight; the server subtracts the weighted mean from its
   weights, which is the weighted mean of the *model deltas* (initial minus
   trained) TFF's client work sends, with one pass less over every client's
   weights. A client whose weights are not finite sends zeros with weight 0.
   State: the client optimizer's hyperparameters
   (``<learning_rate=float32>``); metrics ``<train=<…>>``, the model's
   metrics summed over clients and finalized at the server;
3. **aggregator** — the weighted mean (a sum of weighted values and a sum
   of weights; state ``<value_sum_process=<>,
   weight_sum_process=<>>``, metrics ``<mean_value=<>,mean_weight=<>>``);
4. **finalizer** — the server optimizer applies the mean delta as a
   gradient to the trainable weights (state: the server optimizer's state);
   metrics ``<update_non_finite=int32>``: 1 when the mean delta was not
   finite, in which case the weights are kept.

Every part is an ordinary fedc computation; the model trains through its
stateless form (:func:`fedc.learning.models.stateless`), so the client work
is a pure TensorFlow function of the weights and the data.
"""

from __future__ import annotations

import collections
import enum
from typing import Any, Callable, Optional, Union

import numpy as np

import fedc
from fedc import FedcTypeError, FedcValueError

from . import metrics as metrics_lib
from . import models as model_lib
from . import optimizers as optimizer_lib
from .templates import LearningAlgorithmState, LearningProcess, LearningProcessOutput

__all__ = ["ClientWeighting", "LoopImplementation", "build_fed_eval", "build_fed_sgd", "build_federated_evaluation",
           "build_unweighted_fed_avg", "build_weighted_fed_avg", "build_weighted_fed_prox"]


class ClientWeighting(enum.Enum):
    """How clients' updates are weighted in the mean: by their number of examples, or equally."""

    UNIFORM = 1
    NUM_EXAMPLES = 2


class LoopImplementation(enum.Enum):
    """How a client loops over its dataset. Both run as ``dataset.reduce`` in fedc (the tf backend turns it
    into one in-graph loop for all clients at once); the choice is kept for TFF's code."""

    DATASET_ITERATOR = 1
    DATASET_REDUCE = 2


def _tf():
    import tensorflow as tf

    return tf


def _tuples(structure: Any) -> Any:
    """Lists as tuples, all the way down (``tf.data`` reduce states must keep one structure)."""
    if isinstance(structure, collections.OrderedDict):
        return collections.OrderedDict((k, _tuples(v)) for k, v in structure.items())
    if isinstance(structure, dict):
        return {k: _tuples(v) for k, v in structure.items()}
    if isinstance(structure, tuple) and hasattr(structure, "_fields"):
        return type(structure)(*[_tuples(v) for v in structure])
    if isinstance(structure, (list, tuple)):
        return tuple(_tuples(v) for v in structure)
    return structure


def _lists(structure: Any) -> Any:
    """Tuples as lists where fedc's results keep lists (weights, metric values)."""
    if isinstance(structure, collections.OrderedDict):
        return collections.OrderedDict((k, _lists(v)) for k, v in structure.items())
    if isinstance(structure, tuple) and hasattr(structure, "_fields"):
        return type(structure)(*[_lists(v) for v in structure])
    if isinstance(structure, (list, tuple)):
        return [_lists(v) for v in structure]
    return structure


def _optimizer(value: Any, what: str) -> optimizer_lib.Optimizer:
    if isinstance(value, optimizer_lib.Optimizer):
        return value
    if callable(value):
        made = value()
        if isinstance(made, optimizer_lib.Optimizer):
            return made
        if optimizer_lib.is_keras_optimizer(made):  # TFF's older spelling: lambda: tf.keras.optimizers.SGD(0.02)
            return optimizer_lib.from_keras_optimizer(made)
        raise FedcTypeError(
            f"{what}: fedc takes a fedc.learning.optimizers.Optimizer (e.g. "
            f"fedc.learning.optimizers.build_sgdm(learning_rate=0.02)) or a function making one or a Keras "
            f"optimizer; the function given made a {type(made).__name__}")
    raise FedcTypeError(f"{what} must be a fedc.learning.optimizers.Optimizer, got {type(value).__name__}")


def _checked_metrics_aggregator(metrics_aggregator):
    if metrics_aggregator is None:
        return metrics_lib.sum_then_finalize
    if not callable(metrics_aggregator):
        raise FedcTypeError(f"metrics_aggregator is a function (metric_finalizers, local_unfinalized_metrics_type) -> "
                            f"computation, such as fedc.learning.metrics.sum_then_finalize; got "
                            f"{type(metrics_aggregator).__name__}")
    return metrics_aggregator


def _aggregation_process(factory: Any, update_type, client_weighting):
    """The aggregation process a ``model_aggregator`` factory makes for the model deltas, or None for the default."""
    if factory is None:
        return None
    from fedc import aggregators

    if isinstance(factory, aggregators.WeightedAggregationFactory):
        if client_weighting is ClientWeighting.UNIFORM:
            raise FedcTypeError("model_aggregator: unweighted FedAvg takes an UnweightedAggregationFactory "
                                f"(e.g. fedc.aggregators.UnweightedMeanFactory()), got {type(factory).__name__}")
        return factory.create(update_type, fedc.TensorType(np.float32))
    if isinstance(factory, aggregators.UnweightedAggregationFactory):
        if client_weighting is not ClientWeighting.UNIFORM:
            raise FedcTypeError("model_aggregator: weighted FedAvg takes a WeightedAggregationFactory "
                                f"(e.g. fedc.aggregators.MeanFactory()), got {type(factory).__name__}")
        return factory.create(update_type)
    raise FedcTypeError(f"model_aggregator must be a fedc.aggregators factory, got {type(factory).__name__}")


def _stateless_model(model_fn: Any) -> model_lib.StatelessModel:
    if isinstance(model_fn, model_lib.FunctionalModel):
        return model_fn
    if not callable(model_fn):
        raise FedcTypeError(f"model_fn must be a function that makes a model (or a FunctionalModel), "
                            f"got {type(model_fn).__name__}")
    model = model_fn()
    if model_lib.is_keras_model(model):
        raise FedcTypeError("model_fn returned a Keras model; wrap it: "
                            "fedc.learning.models.from_keras_model(keras_model, loss=…, input_spec=…)")
    return model_lib.stateless(model, model_fn)


def _weights_accessors(state_type, weights_type) -> tuple:
    """``get_model_weights(state)`` and ``set_model_weights(state, weights)``, computations on the state itself."""
    @fedc.tf_computation(state_type, autograph=False)
    def get_model_weights(state):
        return state.global_model_weights

    @fedc.tf_computation(state_type, weights_type, autograph=False)
    def set_model_weights(state, model_weights):
        return state._replace(global_model_weights=model_weights)

    return get_model_weights, set_model_weights


def _constant_weights(weights: model_lib.ModelWeights) -> model_lib.ModelWeights:
    """Numpy weights as constants of the graph being traced."""
    tf = _tf()
    return model_lib.ModelWeights([tf.constant(w) for w in weights.trainable],
                                  [tf.constant(w) for w in weights.non_trainable])


def _specs(arrays: list) -> list:
    tf = _tf()
    return [tf.TensorSpec(a.shape, tf.as_dtype(a.dtype)) for a in arrays]


def _checked_distributor(model_distributor, weights_type):
    """``model_distributor`` (a DistributionProcess of the model weights), or None for the plain broadcast."""
    if model_distributor is None:
        return None
    from .templates import DistributionProcess

    if not isinstance(model_distributor, DistributionProcess):
        raise FedcTypeError("model_distributor must be a fedc.learning.templates.DistributionProcess (e.g. "
                            f"build_broadcast_process(weights_type)), got {type(model_distributor).__name__}")
    if not model_distributor.value_type.is_assignable_from(weights_type):
        raise FedcTypeError(f"model_distributor distributes {model_distributor.value_type}, but the model weights "
                            f"are {weights_type}")
    return model_distributor


def _with_states(base_type, parts: list) -> tuple[Optional[fedc.Computation], fedc.Type]:
    """(a computation putting processes' own states (``[(field, process)]``) into the base state, or None
    when there are none; the state's type then)."""
    if not parts:
        return None, base_type
    states_type = fedc.StructType([(field, process.initialize.type_signature.result.member) for field, process in parts])

    @fedc.tf_computation(base_type, states_type, autograph=False)
    def with_states(state, states):
        return state._replace(**{field: states[field] for field, _ in parts})

    return with_states, with_states.type_signature.result


def _distribution_type(state_type, distributor) -> fedc.StructType:
    """``<state=…,measurements=…>`` of the distribution, as :func:`_distribute` gives it to the server update."""
    measurements = (fedc.StructType([]) if distributor is None
                    else distributor.next.type_signature.result["measurements"].member)
    return fedc.StructType([("state", state_type["distributor"]), ("measurements", measurements)])


def _initial_state(server_init, with_states, parts):
    """The initial state at the server: ``server_init``'s, with the processes' own initial states put in."""
    base = fedc.federated_value(server_init(), fedc.SERVER)
    if with_states is None:
        return base
    states = fedc.federated_zip(collections.OrderedDict((field, process.initialize()) for field, process in parts))
    return fedc.federated_map(with_states, fedc.federated_zip((base, states)))


def _distribute(distributor, state, global_weights):
    """(the weights at the clients, the distribution's <state,measurements> at the server)."""
    if distributor is None:
        return (fedc.federated_broadcast(fedc.federated_map(global_weights, state)),
                fedc.federated_value(collections.OrderedDict(state=(), measurements=()), fedc.SERVER))
    output = distributor.next(state.distributor, fedc.federated_map(global_weights, state))
    return output.result, fedc.federated_zip(collections.OrderedDict(state=output.state,
                                                                     measurements=output.measurements))


def _build_fed_avg(model_fn, client_optimizer_fn, server_optimizer_fn, client_weighting, proximal_strength,
                   loop_implementation, model_aggregator=None, metrics_aggregator=None,
                   model_distributor=None) -> LearningProcess:
    """The composed process (see the module docstring); ``model_aggregator`` None is TFF's default mean.

    With the default, clients send weighted trained weights (one pass less,
    same mean); a given factory aggregates the model deltas themselves.
    """
    tf = _tf()
    if not isinstance(loop_implementation, LoopImplementation):
        raise FedcTypeError(f"loop_implementation must be a fedc.learning.algorithms.LoopImplementation, "
                            f"got {loop_implementation!r}")
    metrics_aggregator = _checked_metrics_aggregator(metrics_aggregator)
    form = _stateless_model(model_fn)
    # FedSGD (no client optimizer): each client sends the gradient of its examples at the server's
    # weights; FedAvg: each client trains, and the server steps along the mean change.
    client_optimizer = None if client_optimizer_fn is None else _optimizer(client_optimizer_fn, "client_optimizer_fn")
    server_optimizer = _optimizer(server_optimizer_fn, "server_optimizer_fn")
    if not (client_weighting in (ClientWeighting.UNIFORM, ClientWeighting.NUM_EXAMPLES) or callable(client_weighting)):
        raise FedcTypeError(f"client_weighting must be a ClientWeighting or a function of the client's metrics, "
                            f"got {client_weighting!r}")

    initial = form.initial_weights
    trainable_specs = _specs(initial.trainable)
    weights_type = model_lib.weights_type_from_model(form)
    data_type = fedc.SequenceType(fedc.to_type(form.input_spec))
    aggregation = _aggregation_process(model_aggregator, weights_type["trainable"], client_weighting)
    distributor = _checked_distributor(model_distributor, weights_type)

    def client_hparams():
        if client_optimizer is None:
            return ()
        return client_optimizer.get_hparams(client_optimizer.initialize(trainable_specs))

    @fedc.tf_computation(autograph=False)
    def server_init():
        return LearningAlgorithmState(
            global_model_weights=_constant_weights(initial),
            distributor=(),
            client_work=client_hparams(),
            aggregator=collections.OrderedDict(value_sum_process=(), weight_sum_process=()),
            finalizer=server_optimizer.initialize(trainable_specs))

    # A given distributor's and aggregator's own states replace the defaults' (<>).
    parts = [(field, process) for field, process in (("distributor", distributor), ("aggregator", aggregation))
             if process is not None]
    with_states, state_type = _with_states(server_init.type_signature.result, parts)
    hparams_type = state_type["client_work"]

    @fedc.tf_computation(weights_type, hparams_type, data_type, autograph=False)
    def client_update(weights, hparams, dataset):
        start = list(weights.trainable)
        sgd = client_optimizer is None
        optimizer_state = () if sgd else client_optimizer.set_hparams(client_optimizer.initialize(trainable_specs),
                                                                     dict(hparams))

        def step(carry, batch):
            trainable, non_trainable, opt_state, metrics, count = carry
            trainable = list(trainable)
            at = start if sgd else trainable
            with tf.GradientTape() as tape:
                tape.watch(at)
                output, new_non_trainable = form.forward_pass(model_lib.ModelWeights(at, list(non_trainable)),
                                                              batch, training=True)
                loss = output.loss
                if proximal_strength:
                    loss = loss + proximal_strength / 2.0 * tf.add_n(
                        [tf.reduce_sum(tf.square(w - w0)) for w, w0 in zip(trainable, start)])
            grads = tape.gradient(loss, at)
            if sgd:  # the sum of the batches' gradients, each weighted by its examples
                n = tf.cast(output.num_examples, tf.float32)
                trainable = [total + g * n for total, g in zip(trainable, grads)]
            else:
                opt_state, trainable = client_optimizer.next(opt_state, trainable, grads)
            metrics = form.update_metrics(metrics, batch, output)
            return _tuples((trainable, new_non_trainable, opt_state, metrics,
                            count + tf.cast(output.num_examples, tf.int64)))

        first = [tf.zeros_like(w) for w in start] if sgd else start
        initial_carry = _tuples((first, list(weights.non_trainable), optimizer_state, form.initial_metrics(),
                                 tf.constant(0, tf.int64)))
        trained, _, _, metrics, count = dataset.reduce(initial_carry, step)
        if client_weighting is ClientWeighting.NUM_EXAMPLES:
            weight = tf.cast(count, tf.float32)
        elif client_weighting is ClientWeighting.UNIFORM:
            weight = tf.constant(1.0, tf.float32)
        else:
            weight = tf.cast(client_weighting(_lists(metrics)), tf.float32)
        # FedAvg: the mean delta, sum(w·(start − trained))/sum(w), is start − sum(w·trained)/sum(w): the
        # client sends its weighted trained weights and the server subtracts once, which saves a pass
        # over every client's weights. FedSGD: the client's mean gradient times its examples is the
        # gradient sum it already has. One pass checks the values (a non-finite value makes a sum
        # non-finite; so does, in float32, a sum past 3.4e38, which counts as non-finite too), one
        # weighs them (multiply_no_nan: 0 for a weight of 0, even times NaN), so a client whose
        # training diverged contributes nothing.
        finite = tf.reduce_all([tf.math.is_finite(tf.reduce_sum(w)) for w in trained])
        weight = tf.where(finite, weight, 0.0)
        if aggregation is not None:  # the aggregator takes the model deltas (FedSGD: the mean gradients)
            ones = tf.where(finite, 1.0, 0.0)
            if sgd:
                scale = tf.math.divide_no_nan(ones, tf.cast(count, tf.float32))
                update = [tf.math.multiply_no_nan(g, scale) for g in trained]
            else:
                update = [tf.math.multiply_no_nan(a - b, ones) for a, b in zip(start, trained)]
            return collections.OrderedDict(update=update, weight=weight, metrics=_lists(metrics))
        if sgd:
            scale = tf.math.divide_no_nan(weight, tf.cast(count, tf.float32))  # weight / examples
            weighted = [tf.math.multiply_no_nan(g, scale) for g in trained]
        else:
            weighted = [tf.math.multiply_no_nan(w, weight) for w in trained]
        return collections.OrderedDict(weighted_model=weighted, weight=weight, metrics=_lists(metrics))

    @fedc.tf_computation(state_type, autograph=False)
    def global_weights(state):
        return state.global_model_weights

    @fedc.tf_computation(state_type, autograph=False)
    def client_work_of(state):
        return state.client_work

    sums_type = client_update.type_signature.result
    finalizers = form.metric_finalizers()

    def step_server(state, mean_delta, train, aggregator_state, aggregator_measurements, distribution):
        current = list(state.global_model_weights.trainable)
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(d)) for d in mean_delta])
        optimizer_state, stepped = server_optimizer.next(state.finalizer, current, list(mean_delta))
        trainable = [tf.where(finite, new, old) for new, old in zip(stepped, current)]
        new_state = LearningAlgorithmState(
            global_model_weights=model_lib.ModelWeights(trainable, list(state.global_model_weights.non_trainable)),
            distributor=distribution["state"],
            client_work=state.client_work,
            aggregator=aggregator_state,
            finalizer=optimizer_state)
        metrics = collections.OrderedDict(
            distributor=distribution["measurements"],
            client_work=collections.OrderedDict(train=train),
            aggregator=aggregator_measurements,
            finalizer=collections.OrderedDict(update_non_finite=tf.cast(tf.logical_not(finite), tf.int32)))
        return LearningProcessOutput(new_state, metrics)

    metrics_type = sums_type["metrics"]
    aggregate_metrics = metrics_aggregator(finalizers, metrics_type)
    if not isinstance(aggregate_metrics, fedc.Computation):
        raise FedcTypeError(f"metrics_aggregator must return a fedc computation, got {type(aggregate_metrics).__name__}")
    train_type = aggregate_metrics.type_signature.result.member
    distribution_type = _distribution_type(state_type, distributor)

    if aggregation is None:
        @fedc.tf_computation(state_type, weights_type["trainable"], fedc.TensorType(np.float32), train_type,
                             distribution_type, autograph=False)
        def server_update(state, weighted_sum, total, train, distribution):
            current = list(state.global_model_weights.trainable)
            if client_optimizer is None:  # FedSGD: the weighted mean gradient
                mean_delta = [tf.math.divide_no_nan(s, total) for s in weighted_sum]
            else:
                mean_delta = [tf.where(total > 0, w - tf.math.divide_no_nan(s, total), tf.zeros_like(w))
                              for w, s in zip(current, weighted_sum)]
            return step_server(state, mean_delta, train, state.aggregator,
                               collections.OrderedDict(mean_value=(), mean_weight=()), distribution)
    else:
        agg_result_type = aggregation.next.type_signature.result

        @fedc.tf_computation(state_type, agg_result_type["result"].member, train_type,
                             agg_result_type["state"].member, agg_result_type["measurements"].member,
                             distribution_type, autograph=False)
        def server_update(state, mean_delta, train, aggregator_state, aggregator_measurements, distribution):
            return step_server(state, mean_delta, train, aggregator_state, aggregator_measurements, distribution)

    @fedc.federated_computation
    def initialize():
        return _initial_state(server_init, with_states, parts)

    @fedc.federated_computation(fedc.FederatedType(state_type, fedc.SERVER), fedc.FederatedType(data_type, fedc.CLIENTS))
    def next_fn(state, client_data):
        weights, distribution = _distribute(distributor, state, global_weights)
        hparams = fedc.federated_broadcast(fedc.federated_map(client_work_of, state))
        results = fedc.federated_map(client_update, (weights, hparams, client_data))
        train = aggregate_metrics(results.metrics)
        if aggregation is None:
            output = fedc.federated_map(server_update, fedc.federated_zip(
                (state, fedc.federated_sum(results.weighted_model), fedc.federated_sum(results.weight), train,
                 distribution)))
        else:
            if aggregation.is_weighted:
                aggregated = aggregation.next(state.aggregator, results.update, results.weight)
            else:
                aggregated = aggregation.next(state.aggregator, results.update)
            output = fedc.federated_map(server_update, fedc.federated_zip(
                (state, aggregated.result, train, aggregated.state, aggregated.measurements, distribution)))
        return LearningProcessOutput(state=output.state, metrics=output.metrics)

    get_model_weights, set_model_weights = _weights_accessors(state_type, weights_type)

    @fedc.tf_computation(state_type, autograph=False)
    def get_hparams(state):
        return collections.OrderedDict(client_work=state.client_work,
                                       finalizer=server_optimizer.get_hparams(state.finalizer))

    hparams_of_state = get_hparams.type_signature.result

    @fedc.tf_computation(state_type, hparams_of_state, autograph=False)
    def set_hparams(state, hparams):
        return state._replace(client_work=hparams["client_work"],
                              finalizer=server_optimizer.set_hparams(state.finalizer, dict(hparams["finalizer"])))

    return LearningProcess(initialize, next_fn, get_model_weights, set_model_weights, get_hparams, set_hparams)


def _default_server_optimizer():
    return optimizer_lib.build_sgdm(learning_rate=1.0)


def build_weighted_fed_avg(model_fn: Union[Callable, model_lib.FunctionalModel],
                           client_optimizer_fn: Any,
                           server_optimizer_fn: Any = None,
                           *,
                           client_weighting: Optional[Union[ClientWeighting, Callable]] = None,
                           model_distributor: Any = None,
                           model_aggregator: Any = None,
                           metrics_aggregator: Any = None,
                           loop_implementation: LoopImplementation = LoopImplementation.DATASET_REDUCE
                           ) -> LearningProcess:
    """Federated Averaging, clients weighted by their number of examples (or ``client_weighting``).

    ``model_fn`` makes the model (``from_keras_model(…)``) or is a
    ``FunctionalModel``; it is called once, when the process is built, and
    its weights then are the initial weights. The server optimizer defaults
    to SGD with learning rate 1.0 (the server weights become the clients'
    weighted mean).
    """
    return _build_fed_avg(model_fn, client_optimizer_fn, server_optimizer_fn or _default_server_optimizer(),
                          client_weighting or ClientWeighting.NUM_EXAMPLES, 0.0, loop_implementation, model_aggregator,
                          metrics_aggregator, model_distributor)


def build_unweighted_fed_avg(model_fn: Union[Callable, model_lib.FunctionalModel],
                             client_optimizer_fn: Any,
                             server_optimizer_fn: Any = None,
                             *,
                             model_distributor: Any = None,
                             model_aggregator: Any = None,
                             metrics_aggregator: Any = None,
                             loop_implementation: LoopImplementation = LoopImplementation.DATASET_REDUCE
                             ) -> LearningProcess:
    """Federated Averaging with every client's update weighted equally."""
    return _build_fed_avg(model_fn, client_optimizer_fn, server_optimizer_fn or _default_server_optimizer(),
                          ClientWeighting.UNIFORM, 0.0, loop_implementation, model_aggregator, metrics_aggregator,
                          model_distributor)


def build_weighted_fed_prox(model_fn: Union[Callable, model_lib.FunctionalModel],
                            proximal_strength: float,
                            client_optimizer_fn: Any,
                            server_optimizer_fn: Any = None,
                            *,
                            client_weighting: Optional[Union[ClientWeighting, Callable]] = None,
                            model_distributor: Any = None,
                            model_aggregator: Any = None,
                            metrics_aggregator: Any = None,
                            loop_implementation: LoopImplementation = LoopImplementation.DATASET_REDUCE
                            ) -> LearningProcess:
    """FedProx: FedAvg whose clients add ``proximal_strength / 2 · ‖w − w_server‖²`` to their loss."""
    if not isinstance(proximal_strength, (int, float, np.floating)) or not proximal_strength >= 0:
        raise FedcValueError(f"proximal_strength must be a number >= 0, got {proximal_strength!r}")
    return _build_fed_avg(model_fn, client_optimizer_fn, server_optimizer_fn or _default_server_optimizer(),
                          client_weighting or ClientWeighting.NUM_EXAMPLES, float(proximal_strength),
                          loop_implementation, model_aggregator, metrics_aggregator, model_distributor)


def build_fed_sgd(model_fn: Union[Callable, model_lib.FunctionalModel],
                  server_optimizer_fn: Any = None,
                  *,
                  model_distributor: Any = None,
                  model_aggregator: Any = None,
                  metrics_aggregator: Any = None,
                  use_experimental_simulation_loop: bool = False) -> LearningProcess:
    """Federated SGD: each client's gradient at the server's weights, averaged by examples, one server step.

    The server optimizer defaults to SGD with learning rate 0.1 (TFF's default).
    The client work's state is ``<>``.
    """
    if not isinstance(use_experimental_simulation_loop, bool):
        raise FedcTypeError("use_experimental_simulation_loop is a bool")
    return _build_fed_avg(model_fn, None, server_optimizer_fn or optimizer_lib.build_sgdm(learning_rate=0.1),
                          ClientWeighting.NUM_EXAMPLES, 0.0, LoopImplementation.DATASET_REDUCE, model_aggregator,
                          metrics_aggregator, model_distributor)


def _client_eval(form: model_lib.StatelessModel, weights_type, data_type) -> fedc.Computation:
    """A client's unfinalized metrics of the model at the given weights over its dataset (nothing trains)."""
    @fedc.tf_computation(weights_type, data_type, autograph=False)
    def client_eval(weights, dataset):
        def step(metrics, batch):
            output, _ = form.forward_pass(weights, batch, training=False)
            return _tuples(form.update_metrics(metrics, batch, output))

        return _lists(dataset.reduce(_tuples(form.initial_metrics()), step))

    return client_eval


def build_federated_evaluation(model_fn: Union[Callable, model_lib.FunctionalModel],
                               broadcast_process: Any = None,
                               metrics_aggregator: Any = None,
                               use_experimental_simulation_loop: bool = False) -> fedc.Computation:
    """TFF's older federated evaluation: one computation, not a process (TFF 0.87 still has it, deprecated).

    ``(server_model_weights@SERVER, federated_dataset@CLIENTS) -> <eval=<metrics>>@SERVER``: the
    weights are broadcast (or sent by ``broadcast_process``, a stateless
    ``DistributionProcess``), each client computes its unfinalized metrics,
    and ``metrics_aggregator`` (default ``sum_then_finalize``) finalizes them.
    """
    if not isinstance(use_experimental_simulation_loop, bool):
        raise FedcTypeError("use_experimental_simulation_loop is a bool")
    form = _stateless_model(model_fn)
    weights_type = model_lib.weights_type_from_model(form)
    data_type = fedc.SequenceType(fedc.to_type(form.input_spec))
    distributor = _checked_distributor(broadcast_process, weights_type)
    if distributor is not None and distributor.initialize.type_signature.result.member != fedc.StructType([]):
        raise FedcValueError(f"broadcast_process must be stateless (state <>); its state is "
                             f"{distributor.initialize.type_signature.result}")
    client_eval = _client_eval(form, weights_type, data_type)
    aggregate = _checked_metrics_aggregator(metrics_aggregator)(form.metric_finalizers(),
                                                                 client_eval.type_signature.result)
    if not isinstance(aggregate, fedc.Computation):
        raise FedcTypeError(f"metrics_aggregator must return a fedc computation, got {type(aggregate).__name__}")

    @fedc.federated_computation(fedc.FederatedType(weights_type, fedc.SERVER),
                                fedc.FederatedType(data_type, fedc.CLIENTS))
    def server_eval(server_model_weights, federated_dataset):
        if distributor is None:
            weights = fedc.federated_broadcast(server_model_weights)
        else:
            weights = distributor.next(distributor.initialize(), server_model_weights).result
        metrics = aggregate(fedc.federated_map(client_eval, (weights, federated_dataset)))
        return fedc.federated_zip(collections.OrderedDict(eval=metrics))

    return server_eval


def build_fed_eval(model_fn: Union[Callable, model_lib.FunctionalModel],
                   model_distributor: Any = None,
                   metrics_aggregator: Any = None,
                   loop_implementation: LoopImplementation = LoopImplementation.DATASET_REDUCE) -> LearningProcess:
    """Federated evaluation: the model's metrics over the clients' data, this round and over all rounds so far.

    As in TFF, the process is a ``LearningProcess``: put the weights to
    evaluate in its state with ``set_model_weights``, then call ``next`` with
    the clients' data. The client work's state is ``<<>,<metrics summed over
    every round>>``; ``next``'s metrics are
    ``<…,client_work=<eval=<current_round_metrics=…,total_rounds_metrics=…>>,…>``.
    Nothing trains: the weights stay as they were set.
    """
    if metrics_aggregator is not None:
        raise FedcValueError("metrics_aggregator: fedc's build_fed_eval does not take a custom metrics_aggregator "
                             "yet (it sums then finalizes the metrics, TFF's default); leave it None")
    if not isinstance(loop_implementation, LoopImplementation):
        raise FedcTypeError(f"loop_implementation must be a fedc.learning.algorithms.LoopImplementation, "
                            f"got {loop_implementation!r}")
    form = _stateless_model(model_fn)
    initial = form.initial_weights
    weights_type = model_lib.weights_type_from_model(form)
    data_type = fedc.SequenceType(fedc.to_type(form.input_spec))
    finalizers = form.metric_finalizers()
    distributor = _checked_distributor(model_distributor, weights_type)

    @fedc.tf_computation(autograph=False)
    def server_init():
        return LearningAlgorithmState(
            global_model_weights=_constant_weights(initial),
            distributor=(),
            client_work=((), _lists(form.initial_metrics())),
            aggregator=collections.OrderedDict(value_sum_process=(), weight_sum_process=()),
            finalizer=())

    parts = [] if distributor is None else [("distributor", distributor)]
    with_states, state_type = _with_states(server_init.type_signature.result, parts)

    client_eval = _client_eval(form, weights_type, data_type)

    @fedc.tf_computation(state_type, autograph=False)
    def to_clients(state):
        return state.global_model_weights

    distribution_type = _distribution_type(state_type, distributor)

    @fedc.tf_computation(state_type, client_eval.type_signature.result, distribution_type, autograph=False)
    def server_update(state, summed, distribution):
        totals = collections.OrderedDict((k, [a + b for a, b in zip(state.client_work[1][k], summed[k])])
                                         for k in finalizers)

        def finalized(values):
            return collections.OrderedDict((k, f(list(values[k]))) for k, f in finalizers.items())

        new_state = state._replace(client_work=((), totals), distributor=distribution["state"])
        metrics = collections.OrderedDict(
            distributor=distribution["measurements"],
            client_work=collections.OrderedDict(eval=collections.OrderedDict(
                current_round_metrics=finalized(summed), total_rounds_metrics=finalized(totals))),
            aggregator=collections.OrderedDict(mean_value=(), mean_weight=()),
            finalizer=())
        return LearningProcessOutput(new_state, metrics)

    @fedc.federated_computation
    def initialize():
        return _initial_state(server_init, with_states, parts)

    @fedc.federated_computation(fedc.FederatedType(state_type, fedc.SERVER), fedc.FederatedType(data_type, fedc.CLIENTS))
    def next_fn(state, client_data):
        weights, distribution = _distribute(distributor, state, to_clients)
        summed = fedc.federated_sum(fedc.federated_map(client_eval, (weights, client_data)))
        output = fedc.federated_map(server_update, fedc.federated_zip((state, summed, distribution)))
        return LearningProcessOutput(state=output.state, metrics=output.metrics)

    get_model_weights, set_model_weights = _weights_accessors(state_type, weights_type)

    return LearningProcess(initialize, next_fn, get_model_weights, set_model_weights)
