"""fedc.learning.algorithms: FedAvg/FedProx built as TFF builds them — types, the averaging rule, hparams, backends."""

import collections

import keras
import numpy as np
import pytest
import tensorflow as tf

import fedc
from fedc.learning import algorithms, models, optimizers, templates

SPEC = collections.OrderedDict(x=tf.TensorSpec([None, 784], tf.float32), y=tf.TensorSpec([None, 1], tf.int32))


def model_fn():
    keras_model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(10, kernel_initializer="zeros"),
                                    keras.layers.Softmax()])
    return models.from_keras_model(keras_model, loss=keras.losses.SparseCategoricalCrossentropy(), input_spec=SPEC,
                                   metrics=[keras.metrics.SparseCategoricalAccuracy()])


def client(n, seed, batch=10):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 784)).astype(np.float32)
    y = rng.integers(0, 10, (n, 1)).astype(np.int32)
    return tf.data.Dataset.from_tensor_slices(collections.OrderedDict(x=x, y=y)).batch(batch)


def fed_avg(**kwargs):
    return algorithms.build_weighted_fed_avg(model_fn, client_optimizer_fn=optimizers.build_sgdm(learning_rate=0.02),
                                             server_optimizer_fn=optimizers.build_sgdm(learning_rate=1.0), **kwargs)


@pytest.fixture(scope="module")
def process():
    return fed_avg()


def test_the_types_print_as_tffs(process):
    assert str(process.initialize.type_signature) == (
        "( -> <global_model_weights=<trainable=<float32[784,10],float32[10]>,non_trainable=<>>,distributor=<>,"
        "client_work=<learning_rate=float32>,aggregator=<value_sum_process=<>,weight_sum_process=<>>,"
        "finalizer=<learning_rate=float32>>@SERVER)")
    assert str(process.next.type_signature.result["metrics"]) == (
        "<distributor=<>,client_work=<train=<sparse_categorical_accuracy=float32,loss=float32,num_examples=int64,"
        "num_batches=int64>>,aggregator=<mean_value=<>,mean_weight=<>>,finalizer=<update_non_finite=int32>>@SERVER")
    assert process.next.type_signature.parameter.names() == ["state", "client_data"]
    assert str(process.next.type_signature.parameter["client_data"]) == "{<x=float32[?,784],y=int32[?,1]>*}@CLIENTS"


def weights_of(process, state):
    return [np.asarray(w) for w in process.get_model_weights(state).trainable]


def test_the_server_takes_the_example_weighted_mean_of_the_clients_models(process):
    a, b = client(30, 1), client(10, 2)
    state = process.initialize()
    alone_a = weights_of(process, process.next(state, [a]).state)
    alone_b = weights_of(process, process.next(state, [b]).state)
    result = process.next(state, [a, b])
    together = weights_of(process, result.state)
    for w, wa, wb in zip(together, alone_a, alone_b):
        np.testing.assert_allclose(w, (30 * wa + 10 * wb) / 40, rtol=1e-5, atol=1e-7)
    train = result.metrics["client_work"]["train"]
    assert int(train["num_examples"]) == 40 and int(train["num_batches"]) == 4
    assert int(result.metrics["finalizer"]["update_non_finite"]) == 0
    unweighted = algorithms.build_unweighted_fed_avg(model_fn, optimizers.build_sgdm(learning_rate=0.02))
    equal = weights_of(unweighted, unweighted.next(unweighted.initialize(), [a, b]).state)
    for w, wa, wb in zip(equal, alone_a, alone_b):
        np.testing.assert_allclose(w, (wa + wb) / 2, rtol=1e-5, atol=1e-7)


def test_training_lowers_the_loss_and_the_tf_backend_agrees_with_the_oracle(process):
    data = [client(40, s) for s in range(3)]

    def losses(backend):
        with fedc.backend(backend):
            state, out = process.initialize(), []
            for _ in range(3):
                state, metrics = process.next(state, data)  # a LearningProcessOutput unpacks
                out.append(float(metrics["client_work"]["train"]["loss"]))
            return out, weights_of(process, state)

    tf_losses, tf_weights = losses("tf")
    reference_losses, reference_weights = losses("reference")
    assert tf_losses[2] < tf_losses[0]
    np.testing.assert_allclose(tf_losses, reference_losses, rtol=1e-4)
    for a, b in zip(tf_weights, reference_weights):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_weights_and_hyperparameters_are_read_and_replaced(process):
    state = process.initialize()
    hparams = process.get_hparams(state)
    assert float(hparams["client_work"]["learning_rate"]) == pytest.approx(0.02)
    assert float(hparams["finalizer"]["learning_rate"]) == 1.0
    frozen = process.set_hparams(state, collections.OrderedDict(
        client_work=collections.OrderedDict(learning_rate=np.float32(0.0)), finalizer=hparams["finalizer"]))
    after = process.next(frozen, [client(20, 3)]).state
    assert all(not w.any() for w in weights_of(process, after))  # a zero client learning rate moves nothing
    ones = models.ModelWeights([np.ones((784, 10), np.float32), np.ones(10, np.float32)], [])
    assert weights_of(process, process.set_model_weights(state, ones))[1].tolist() == [1.0] * 10


def test_a_client_whose_update_is_not_finite_is_left_out():
    process = fed_avg()
    bad = tf.data.Dataset.from_tensor_slices(collections.OrderedDict(
        x=np.full((5, 784), np.nan, np.float32), y=np.zeros((5, 1), np.int32))).batch(5)
    good = client(20, 4)
    state = process.initialize()
    with_bad = process.next(state, [good, bad])
    alone = process.next(state, [good])
    for a, b in zip(weights_of(process, with_bad.state), weights_of(process, alone.state)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert int(with_bad.metrics["finalizer"]["update_non_finite"]) == 0


def test_fed_prox_pulls_clients_toward_the_server_model():
    data = [client(40, 5)]

    def distance(process):  # from the initial (zero) weights, after one round
        return sum(float(np.abs(w).sum()) for w in weights_of(process, process.next(process.initialize(), data).state))

    sgd = optimizers.build_sgdm(learning_rate=0.5)
    plain = distance(algorithms.build_weighted_fed_avg(model_fn, sgd))
    assert distance(algorithms.build_weighted_fed_prox(model_fn, 0.0, sgd)) == pytest.approx(plain, rel=1e-5)
    assert distance(algorithms.build_weighted_fed_prox(model_fn, 1.0, sgd)) < 0.95 * plain


def counting_distributor(weights_type):
    """A DistributionProcess that broadcasts and counts its rounds in its state (and reports the count)."""
    @fedc.tf_computation(autograph=False)
    def zero():
        return tf.constant(0, tf.int32)

    @fedc.tf_computation(tf.int32, autograph=False)
    def add_one(n):
        return n + 1

    @fedc.federated_computation
    def initialize():
        return fedc.federated_eval(zero, fedc.SERVER)

    @fedc.federated_computation(initialize.type_signature.result, fedc.FederatedType(weights_type, fedc.SERVER))
    def next_fn(state, weights):
        count = fedc.federated_map(add_one, state)
        return fedc.aggregators.MeasuredProcessOutput(state=count, result=fedc.federated_broadcast(weights),
                                                      measurements=fedc.federated_zip(
                                                          collections.OrderedDict(rounds=count)))

    return templates.DistributionProcess(initialize, next_fn)


def test_a_model_distributor_brings_its_state_and_measurements(process):
    weights_type = models.weights_type_from_model(model_fn)
    counted = fed_avg(model_distributor=counting_distributor(weights_type))
    assert str(counted.initialize.type_signature.result.member["distributor"]) == "int32"
    assert str(counted.next.type_signature.result["metrics"].member["distributor"]) == "<rounds=int32>"
    broadcast = fed_avg(model_distributor=templates.build_broadcast_process(weights_type))
    assert broadcast.next.type_signature == process.next.type_signature
    data = [client(20, 7), client(10, 8)]
    state, plain = counted.initialize(), process.initialize()
    for round_number in (1, 2):
        state, metrics = counted.next(state, data)
        plain = process.next(plain, data).state
        assert int(state.distributor) == round_number and int(metrics["distributor"]["rounds"]) == round_number
    for a, b in zip(weights_of(counted, state), weights_of(process, plain)):
        np.testing.assert_array_equal(a, b)
    evaluation = algorithms.build_fed_eval(model_fn, model_distributor=counting_distributor(weights_type))
    out = evaluation.next(evaluation.initialize(), data)
    assert int(out.metrics["distributor"]["rounds"]) == 1
    with pytest.raises(fedc.FedcTypeError, match="model_distributor must be a fedc.learning.templates.Distribution"):
        fed_avg(model_distributor=object())
    with pytest.raises(fedc.FedcTypeError, match="model_distributor distributes float32, but the model weights are"):
        fed_avg(model_distributor=templates.build_broadcast_process(np.float32))
    broadcast = templates.build_broadcast_process(np.float32)
    with pytest.raises(fedc.FedcTypeError, match=r"DistributionProcess: next takes \(state, value@SERVER\)"):
        templates.DistributionProcess(broadcast.initialize, fedc.federated_computation(
            broadcast.initialize.type_signature.result, fedc.FederatedType(np.float32, fedc.CLIENTS))(
                lambda state, value: fedc.aggregators.MeasuredProcessOutput(state, value, state)))
    with pytest.raises(fedc.FedcTypeError, match="takes the member type of the value"):
        templates.build_broadcast_process(fedc.FederatedType(np.float32, fedc.SERVER))


def test_the_older_federated_evaluation_is_one_computation(process):
    evaluation = algorithms.build_federated_evaluation(model_fn)
    assert str(evaluation.type_signature) == (
        "(<server_model_weights=<trainable=<float32[784,10],float32[10]>,non_trainable=<>>@SERVER,"
        "federated_dataset={<x=float32[?,784],y=int32[?,1]>*}@CLIENTS> -> <eval=<sparse_categorical_accuracy=float32,"
        "loss=float32,num_examples=int64,num_batches=int64>>@SERVER)")
    assert fedc.learning.build_federated_evaluation is algorithms.build_federated_evaluation
    data = [client(20, 9), client(30, 10)]
    state = process.next(process.initialize(), data).state
    weights = process.get_model_weights(state)
    older = evaluation(weights, data)["eval"]
    newer = algorithms.build_fed_eval(model_fn)
    current = newer.next(newer.set_model_weights(newer.initialize(), weights), data).metrics
    current = current["client_work"]["eval"]["current_round_metrics"]
    assert list(older) == list(current)
    for name in older:
        np.testing.assert_allclose(float(older[name]), float(current[name]), rtol=1e-6)
    weights_type = models.weights_type_from_model(model_fn)
    with pytest.raises(fedc.FedcValueError, match="broadcast_process must be stateless"):
        algorithms.build_federated_evaluation(model_fn, broadcast_process=counting_distributor(weights_type))
    same = algorithms.build_federated_evaluation(model_fn,
                                                 broadcast_process=templates.build_broadcast_process(weights_type))
    assert float(same(weights, data)["eval"]["loss"]) == float(older["loss"])
    with pytest.raises(fedc.FedcTypeError, match="use_experimental_simulation_loop is a bool"):
        algorithms.build_federated_evaluation(model_fn, use_experimental_simulation_loop="yes")
    with pytest.raises(fedc.FedcTypeError, match="metrics_aggregator must return a fedc computation, got int"):
        algorithms.build_federated_evaluation(model_fn, metrics_aggregator=lambda finalizers, t: 3)


def test_what_fedc_does_not_take_yet_is_said():
    with pytest.raises(fedc.FedcValueError, match="metrics_aggregator: fedc's build_fed_eval does not take a custom"):
        algorithms.build_fed_eval(model_fn, metrics_aggregator=object())
    with pytest.raises(fedc.FedcTypeError, match="model_aggregator must be a fedc.aggregators factory"):
        fed_avg(model_aggregator=object())
    with pytest.raises(fedc.FedcValueError, match="the Keras SGD optimizer uses nesterov"):
        algorithms.build_weighted_fed_avg(model_fn, lambda: keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True))
    with pytest.raises(fedc.FedcTypeError, match="the function given made a str"):
        algorithms.build_weighted_fed_avg(model_fn, lambda: "sgd")
    with pytest.raises(fedc.FedcTypeError, match="model_fn returned a Keras model; wrap it"):
        algorithms.build_weighted_fed_avg(lambda: keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)]),
                                          optimizers.build_sgdm(0.1))
    with pytest.raises(fedc.FedcValueError, match="proximal_strength must be a number >= 0"):
        algorithms.build_weighted_fed_prox(model_fn, -1.0, optimizers.build_sgdm(0.1))


def test_fedc_passes_apply_to_a_library_process(process):
    """The process is an ordinary computation: fused, secured and lowered to a MapReduce form, it trains the same.

    (Its metrics are a computation it calls, so the passes that need one body inline it first.)
    """
    from fedc import passes
    from fedc.computation import Computation
    from fedc.ir.mapreduce import MapReduceForm, as_round

    data = [client(20, 1), client(10, 2)]
    state = process.initialize()
    module = process.next.to_ir()
    with fedc.backend("reference"):
        expected = weights_of(process, process.next(state, data).state)
        fused = Computation(passes.run(module, "fuse-map-mean").module, process.next.name)(state, data)
        secured = Computation(passes.run(module, "inline,call-dominant,insert-secure-aggregation{clip=1000.0 weight-clip=1000.0}").module,
                              process.next.name)(state, data)
        form = MapReduceForm(passes.run(module, "to-mapreduce").module)
        lowered = Computation(as_round(form), "round")(state, data)
    assert list(lowered) == ["state", "metrics"]  # the form keeps the round's result names
    for got, tolerance in ((fused.state, 1e-6), (secured["state"], 1e-3), (lowered["state"], 1e-6)):
        for a, b in zip(weights_of(process, got), expected):
            np.testing.assert_allclose(a, b, atol=tolerance)


def test_fed_sgd_takes_one_step_along_the_gradient_of_all_the_clients_examples():
    process = algorithms.build_fed_sgd(model_fn, server_optimizer_fn=optimizers.build_sgdm(learning_rate=0.5))
    assert str(process.initialize.type_signature.result.member["client_work"]) == "<>"
    datasets = [client(30, 6), client(7, 7, batch=4)]
    after = weights_of(process, process.next(process.initialize(), datasets).state)
    # The same step, centrally: the mean loss over every example of every client.
    x = np.concatenate([b["x"].numpy() for d in datasets for b in d])
    y = np.concatenate([b["y"].numpy() for d in datasets for b in d])
    keras_model = model_fn()
    weights = [tf.Variable(w) for w in models.stateless(keras_model).initial_weights.trainable]
    with tf.GradientTape() as tape:
        predictions = tf.nn.softmax(tf.matmul(x, weights[0]) + weights[1])
        loss = keras.losses.SparseCategoricalCrossentropy()(y, predictions)
    grads = tape.gradient(loss, weights)
    for got, w, g in zip(after, weights, grads):
        np.testing.assert_allclose(got, w.numpy() - 0.5 * g.numpy(), rtol=1e-4, atol=1e-6)


def test_fed_eval_reports_this_rounds_and_all_rounds_metrics(process):
    evaluation = algorithms.build_fed_eval(model_fn)
    assert str(evaluation.initialize.type_signature.result.member["client_work"]) == (
        "<<>,<sparse_categorical_accuracy=<float32,float32>,loss=<float32,float32>,num_examples=<int64>,"
        "num_batches=<int64>>>")
    assert str(evaluation.next.type_signature.result["metrics"].member["client_work"]) == (
        "<eval=<current_round_metrics=<sparse_categorical_accuracy=float32,loss=float32,num_examples=int64,"
        "num_batches=int64>,total_rounds_metrics=<sparse_categorical_accuracy=float32,loss=float32,"
        "num_examples=int64,num_batches=int64>>>")
    trained = process.next(process.initialize(), [client(40, 8)]).state
    state = evaluation.set_model_weights(evaluation.initialize(), process.get_model_weights(trained))
    test_a, test_b = [client(15, 9)], [client(5, 10)]
    first = evaluation.next(state, test_a)
    second = evaluation.next(first.state, test_b)
    now = second.metrics["client_work"]["eval"]["current_round_metrics"]
    total = second.metrics["client_work"]["eval"]["total_rounds_metrics"]
    assert int(now["num_examples"]) == 5 and int(total["num_examples"]) == 20
    # The evaluated loss is the model's on that data, computed directly.
    weights = weights_of(process, trained)
    x = np.concatenate([b["x"].numpy() for b in test_b[0]])
    y = np.concatenate([b["y"].numpy() for b in test_b[0]])
    expected = keras.losses.SparseCategoricalCrossentropy()(y, tf.nn.softmax(x @ weights[0] + weights[1]))
    assert float(now["loss"]) == pytest.approx(float(expected), rel=1e-5)
    for a, b in zip(weights_of(evaluation, second.state), weights):
        np.testing.assert_array_equal(a, b)  # evaluation trains nothing


def test_tffs_other_spellings_exist():
    import fedc as tff

    assert tff.tensorflow_computation is tff.tf_computation and tff.tensorflow.computation is tff.tf_computation
    assert tff.tensorflow_computation(lambda: "Hello, World!")() == "Hello, World!"
    assert tff.learning.from_keras_model is models.from_keras_model
    assert tff.learning.Model is models.VariableModel
    assert tff.simulation.ClientData is tff.simulation.datasets.ClientData


def test_a_model_aggregator_from_fedc_aggregators_composes_into_fed_avg(process):
    from fedc import aggregators

    data = [client(30, 1), client(10, 2)]
    explicit = fed_avg(model_aggregator=aggregators.MeanFactory())
    assert str(explicit.next.type_signature) == str(process.next.type_signature)  # TFF's default, spelled out
    default_weights = weights_of(process, process.next(process.initialize(), data).state)
    explicit_weights = weights_of(explicit, explicit.next(explicit.initialize(), data).state)
    for a, b in zip(explicit_weights, default_weights):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    clipped = fed_avg(model_aggregator=aggregators.clipping_factory(1e-3, aggregators.MeanFactory()))
    out = clipped.next(clipped.initialize(), data)
    assert int(out.metrics["aggregator"]["clipped_count"]) == 2
    change = np.sqrt(sum(float((w ** 2).sum()) for w in weights_of(clipped, out.state)))  # from zero weights
    assert 0 < change <= 1e-3 * (1 + 1e-5)  # the mean of two deltas clipped to norm 1e-3
    with pytest.raises(fedc.FedcTypeError, match="weighted FedAvg takes a WeightedAggregationFactory"):
        fed_avg(model_aggregator=aggregators.UnweightedMeanFactory())
    unweighted = algorithms.build_unweighted_fed_avg(model_fn, optimizers.build_sgdm(learning_rate=0.02),
                                                     model_aggregator=aggregators.UnweightedMeanFactory())
    assert str(unweighted.next.type_signature.result["metrics"].member["aggregator"]) == "<mean_value=<>>"


def test_tffs_older_spelling_with_a_keras_optimizer_trains_the_same():
    data = [client(30, 1), client(10, 2)]
    ours = fed_avg()
    keras_spelled = algorithms.build_weighted_fed_avg(model_fn, client_optimizer_fn=lambda: keras.optimizers.SGD(0.02),
                                                      server_optimizer_fn=lambda: keras.optimizers.SGD(1.0))
    a = weights_of(ours, ours.next(ours.initialize(), data).state)
    b = weights_of(keras_spelled, keras_spelled.next(keras_spelled.initialize(), data).state)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
    adam = optimizers.from_keras_optimizer(keras.optimizers.Adam(0.01))
    assert float(adam.initialize([tf.TensorSpec([1], tf.float32)])["learning_rate"]) == pytest.approx(0.01)
    with pytest.raises(fedc.FedcTypeError, match="for RMSprop, build the optimizer with fedc.learning.optimizers"):
        optimizers.from_keras_optimizer(keras.optimizers.RMSprop())
