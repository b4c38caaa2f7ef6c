"""A VariableModel written by hand (the image-classification tutorial's MnistModel) trains and evaluates.

Its weights and metrics live in tf.Variables its forward pass updates; fedc
makes a fresh model in each tf_computation that uses it. It must train exactly
as the same model given through Keras does.
"""

import collections

import keras
import numpy as np
import pytest
import tensorflow as tf

import fedc
from fedc.learning import algorithms, models, optimizers

MnistVariables = collections.namedtuple("MnistVariables", "weights bias num_examples loss_sum accuracy_sum")


class MnistModel(models.VariableModel):  # as the tutorial writes it
    def __init__(self):
        self._variables = MnistVariables(
            weights=tf.Variable(lambda: tf.zeros(dtype=tf.float32, shape=(784, 10)), name="weights", trainable=True),
            bias=tf.Variable(lambda: tf.zeros(dtype=tf.float32, shape=(10)), name="bias", trainable=True),
            num_examples=tf.Variable(0.0, name="num_examples", trainable=False),
            loss_sum=tf.Variable(0.0, name="loss_sum", trainable=False),
            accuracy_sum=tf.Variable(0.0, name="accuracy_sum", trainable=False))

    @property
    def trainable_variables(self):
        return [self._variables.weights, self._variables.bias]

    @property
    def non_trainable_variables(self):
        return []

    @property
    def local_variables(self):
        return [self._variables.num_examples, self._variables.loss_sum, self._variables.accuracy_sum]

    @property
    def input_spec(self):
        return collections.OrderedDict(x=tf.TensorSpec([None, 784], tf.float32), y=tf.TensorSpec([None, 1], tf.int32))

    @tf.function
    def predict_on_batch(self, x, training=True):
        return tf.nn.softmax(tf.matmul(x, self._variables.weights) + self._variables.bias)

    @tf.function
    def forward_pass(self, batch, training=True):
        v = self._variables
        y = self.predict_on_batch(batch["x"])
        predictions = tf.cast(tf.argmax(y, 1), tf.int32)
        flat_labels = tf.reshape(batch["y"], [-1])
        loss = -tf.reduce_mean(tf.reduce_sum(tf.one_hot(flat_labels, 10) * tf.math.log(y), axis=[1]))
        accuracy = tf.reduce_mean(tf.cast(tf.equal(predictions, flat_labels), tf.float32))
        num_examples = tf.cast(tf.size(batch["y"]), tf.float32)
        v.num_examples.assign_add(num_examples)
        v.loss_sum.assign_add(loss * num_examples)
        v.accuracy_sum.assign_add(accuracy * num_examples)
        return models.BatchOutput(loss=loss, predictions=predictions, num_examples=tf.shape(batch["x"])[0])

    @tf.function
    def report_local_unfinalized_metrics(self):
        v = self._variables
        return collections.OrderedDict(num_examples=[v.num_examples], loss=[v.loss_sum, v.num_examples],
                                       accuracy=[v.accuracy_sum, v.num_examples])

    def metric_finalizers(self):
        return collections.OrderedDict(num_examples=tf.function(func=lambda x: x[0]),
                                       loss=tf.function(func=lambda x: x[0] / x[1]),
                                       accuracy=tf.function(func=lambda x: x[0] / x[1]))

    @tf.function
    def reset_metrics(self):
        for var in self.local_variables:
            var.assign(tf.zeros_like(var))


def keras_model_fn():
    keras_model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(10, kernel_initializer="zeros"),
                                    keras.layers.Softmax()])
    return models.from_keras_model(keras_model, loss=keras.losses.SparseCategoricalCrossentropy(),
                                   input_spec=MnistModel().input_spec)


def client(n, seed, batch=10):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 784)).astype(np.float32) * 0.1
    y = rng.integers(0, 10, (n, 1)).astype(np.int32)
    return tf.data.Dataset.from_tensor_slices(collections.OrderedDict(x=x, y=y)).batch(batch)


DATA = [client(30, 0), client(20, 1), client(45, 2)]


def weights(process, state):
    return [np.asarray(w) for w in process.get_model_weights(state).trainable]


@pytest.fixture(scope="module")
def process():
    return algorithms.build_weighted_fed_avg(MnistModel, client_optimizer_fn=optimizers.build_sgdm(learning_rate=0.02))


def test_types_are_the_tutorials(process):
    assert str(process.initialize.type_signature) == (
        "( -> <global_model_weights=<trainable=<float32[784,10],float32[10]>,non_trainable=<>>,distributor=<>,"
        "client_work=<learning_rate=float32>,aggregator=<value_sum_process=<>,weight_sum_process=<>>,"
        "finalizer=<learning_rate=float32>>@SERVER)")
    assert str(process.next.type_signature.result["metrics"]) == (
        "<distributor=<>,client_work=<train=<num_examples=float32,loss=float32,accuracy=float32>>,"
        "aggregator=<mean_value=<>,mean_weight=<>>,finalizer=<update_non_finite=int32>>@SERVER")


@pytest.mark.parametrize("backend", ["tf", "reference"])
def test_it_trains_as_the_same_model_through_keras_does(process, backend):
    keras_process = algorithms.build_weighted_fed_avg(keras_model_fn,
                                                      client_optimizer_fn=optimizers.build_sgdm(learning_rate=0.02))
    with fedc.backend(backend):
        state, keras_state = process.initialize(), keras_process.initialize()
        losses = []
        for _ in range(3):
            state, metrics = process.next(state, DATA)
            keras_state, keras_metrics = keras_process.next(keras_state, DATA)
            train = metrics["client_work"]["train"]
            assert float(train["num_examples"]) == 95.0
            np.testing.assert_allclose(float(train["loss"]), float(keras_metrics["client_work"]["train"]["loss"]),
                                       rtol=1e-4)
            losses.append(float(train["loss"]))
        assert losses[2] < losses[0]
        for a, b in zip(weights(process, state), weights(keras_process, keras_state)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
        assert any(w.any() for w in weights(process, state))


def test_evaluation_reports_the_models_own_metrics(process):
    evaluation = algorithms.build_fed_eval(MnistModel)
    trained = process.initialize()
    for _ in range(2):
        trained = process.next(trained, DATA).state
    state = evaluation.set_model_weights(evaluation.initialize(), process.get_model_weights(trained))
    metrics = evaluation.next(state, DATA).metrics["client_work"]["eval"]["current_round_metrics"]
    assert list(metrics) == ["num_examples", "loss", "accuracy"]
    kernel, bias = weights(process, trained)
    total, correct, count = 0.0, 0.0, 0
    for dataset in DATA:
        for batch in dataset:
            p = tf.nn.softmax(batch["x"] @ kernel + bias).numpy()
            labels = batch["y"].numpy().reshape(-1)
            total += -np.log(p[np.arange(len(labels)), labels]).mean() * len(labels)
            correct += (p.argmax(1) == labels).sum()
            count += len(labels)
    assert float(metrics["num_examples"]) == count
    np.testing.assert_allclose(float(metrics["loss"]), total / count, rtol=1e-4)
    np.testing.assert_allclose(float(metrics["accuracy"]), correct / count, rtol=1e-6)


def test_a_model_fn_that_returns_no_model_is_refused():
    with pytest.raises(fedc.FedcTypeError):
        algorithms.build_weighted_fed_avg(lambda: 3, client_optimizer_fn=optimizers.build_sgdm(learning_rate=0.1))
    with pytest.raises(fedc.FedcTypeError, match="needs the function that makes one"):
        models.stateless(MnistModel())


def test_the_passes_keep_what_a_variable_model_process_computes(process):
    """Fusion, secure aggregation and the MapReduce lowering recombine graphs that create variables."""
    from fedc import passes
    from fedc.computation import Computation
    from fedc.ir.mapreduce import MapReduceForm, as_round

    state = process.initialize()
    module = process.next.to_ir()
    for backend in ["reference", "tf"]:
        with fedc.backend(backend):
            expected = weights(process, process.next(state, DATA).state)
            fused = Computation(passes.run(module, "fuse-map-mean").module, process.next.name)(state, DATA)
            secured = Computation(passes.run(
                module, "inline,call-dominant,insert-secure-aggregation{clip=1000.0 weight-clip=1000.0}").module,
                process.next.name)(state, DATA)
            lowered = Computation(as_round(MapReduceForm(passes.run(module, "to-mapreduce").module)), "round")(
                state, DATA)
        for got, tolerance in ((fused.state, 1e-6), (secured["state"], 1e-4), (lowered["state"], 1e-6)):
            for a, b in zip(weights(process, got), expected):
                np.testing.assert_allclose(a, b, atol=tolerance)
