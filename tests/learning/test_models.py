"""fedc.learning.models: Keras 3 models as TFF's VariableModel, their stateless form, FunctionalModel, ModelWeights."""

import collections

import keras
import numpy as np
import pytest
import tensorflow as tf

import fedc
from fedc.learning import models

SPEC = collections.OrderedDict(x=tf.TensorSpec([None, 784], tf.float32), y=tf.TensorSpec([None, 1], tf.int32))


def create_keras_model():  # the image-classification tutorial's model
    return keras.Sequential([keras.Input((784,)), keras.layers.Dense(10, kernel_initializer="zeros"),
                             keras.layers.Softmax()])


def model_fn(**kwargs):
    return models.from_keras_model(create_keras_model(), loss=keras.losses.SparseCategoricalCrossentropy(),
                                   input_spec=SPEC, metrics=[keras.metrics.SparseCategoricalAccuracy()], **kwargs)


def batch(n, seed=0):
    rng = np.random.default_rng(seed)
    return collections.OrderedDict(x=rng.random((n, 784)).astype(np.float32),
                                   y=rng.integers(0, 10, (n, 1)).astype(np.int32))


def finalized(model):
    values = model.report_local_unfinalized_metrics()
    return {k: float(f(values[k])) for k, f in model.metric_finalizers().items()}


def test_a_keras_model_reports_tffs_metrics_in_tffs_order():
    model = model_fn()
    rng = np.random.default_rng(3)
    kernel = rng.normal(size=(784, 10)).astype(np.float32) * 0.01
    models.ModelWeights([kernel, np.zeros(10, np.float32)], []).assign_weights_to(model)
    first, second = batch(20, 1), batch(7, 2)
    out1, out2 = model.forward_pass(first), model.forward_pass(second)
    assert int(out1.num_examples) == 20 and out1.predictions.shape == (20, 10)
    keras_loss = keras.losses.SparseCategoricalCrossentropy()
    expected_loss1 = float(keras_loss(first["y"], out1.predictions))
    assert float(out1.loss) == pytest.approx(expected_loss1, rel=1e-6)
    unfinalized = model.report_local_unfinalized_metrics()
    assert list(unfinalized) == ["sparse_categorical_accuracy", "loss", "num_examples", "num_batches"]
    assert [v.dtype for v in unfinalized["num_examples"]] == [tf.int64]
    metrics = finalized(model)
    accuracy = keras.metrics.SparseCategoricalAccuracy()
    accuracy.update_state(first["y"], out1.predictions)
    accuracy.update_state(second["y"], out2.predictions)
    assert metrics["sparse_categorical_accuracy"] == pytest.approx(float(accuracy.result()))
    assert metrics["loss"] == pytest.approx((20 * float(out1.loss) + 7 * float(out2.loss)) / 27, rel=1e-6)
    assert metrics["num_examples"] == 27 and metrics["num_batches"] == 2
    model.reset_metrics()
    assert finalized(model)["num_batches"] == 0


def test_the_stateless_form_trains_like_keras_inside_a_computation():
    model = model_fn()
    form = models.stateless(model)
    weights_type = models.weights_type_from_model(model_fn)
    assert str(weights_type) == "<trainable=<float32[784,10],float32[10]>,non_trainable=<>>"

    @fedc.tf_computation(weights_type, fedc.to_type(SPEC))
    def sgd_step(weights, data):
        trainable = list(weights.trainable)
        with tf.GradientTape() as tape:
            tape.watch(trainable)
            output, _ = form.forward_pass(models.ModelWeights(trainable, list(weights.non_trainable)), data)
        grads = tape.gradient(output.loss, trainable)
        return [w - 0.5 * g for w, g in zip(trainable, grads)]

    data = batch(16, 4)
    new = sgd_step(form.initial_weights, data)
    reference = create_keras_model()
    optimizer = keras.optimizers.SGD(0.5)
    with tf.GradientTape() as tape:
        loss = keras.losses.SparseCategoricalCrossentropy()(data["y"], reference(data["x"], training=True))
    optimizer.apply_gradients(zip(tape.gradient(loss, reference.trainable_variables), reference.trainable_variables))
    for got, expected in zip(new, reference.trainable_variables):
        np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-5, atol=1e-7)


def test_shared_layers_and_batch_norm_work_statelessly():
    inputs = keras.Input((4,))
    shared = keras.layers.Dense(4, activation="tanh")
    normed = keras.layers.BatchNormalization()(shared(shared(inputs)))  # one layer used twice
    outputs = keras.layers.Dense(2)(normed)
    k = keras.Model(inputs, outputs)
    spec = (tf.TensorSpec([None, 4], tf.float32), tf.TensorSpec([None], tf.int32))
    model = models.from_keras_model(k, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                                    input_spec=spec)
    form = models.stateless(model)
    weights = form.initial_weights
    assert len(weights.trainable) == 6 and len(weights.non_trainable) == 2  # the shared Dense's weights once
    x = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
    y = np.zeros(8, np.int32)
    output, non_trainable = form.forward_pass(weights, (x, y), training=False)
    np.testing.assert_allclose(output.predictions.numpy(), k(x, training=False).numpy(), rtol=1e-5)
    _, moved = form.forward_pass(weights, (x, y), training=True)
    assert not np.allclose(moved[0], weights.non_trainable[0])  # the moving mean follows the batch


def test_several_outputs_with_loss_weights():
    inputs = keras.Input((3,))
    k = keras.Model(inputs, [keras.layers.Dense(1)(inputs), keras.layers.Dense(1)(inputs)])
    spec = collections.OrderedDict(x=tf.TensorSpec([None, 3], tf.float32),
                                   y=(tf.TensorSpec([None, 1], tf.float32), tf.TensorSpec([None, 1], tf.float32)))
    mse = keras.losses.MeanSquaredError()
    model = models.from_keras_model(k, loss=[mse, mse], input_spec=spec, loss_weights=[1.0, 0.25])
    x = np.ones((5, 3), np.float32)
    y = (np.zeros((5, 1), np.float32), np.ones((5, 1), np.float32))
    out = model.forward_pass(collections.OrderedDict(x=x, y=y))
    p = k(x)
    assert float(out.loss) == pytest.approx(float(mse(y[0], p[0]) + 0.25 * mse(y[1], p[1])), rel=1e-6)


def test_models_fedc_cannot_use_are_refused_saying_why():
    loss = keras.losses.SparseCategoricalCrossentropy()
    compiled = create_keras_model()
    compiled.compile(optimizer="sgd", loss="mse")
    with pytest.raises(fedc.FedcValueError, match="not compiled"):
        models.from_keras_model(compiled, loss=loss, input_spec=SPEC)
    with pytest.raises(fedc.FedcValueError, match="has no weights yet: build it first"):
        models.from_keras_model(keras.Sequential([keras.layers.Dense(2)]), loss=loss, input_spec=SPEC)
    with pytest.raises(fedc.FedcTypeError, match="takes a Keras model"):
        models.from_keras_model(object(), loss=loss, input_spec=SPEC)
    with pytest.raises(fedc.FedcTypeError, match="loss must be a Keras loss"):
        models.from_keras_model(create_keras_model(), loss="mse", input_spec=SPEC)
    with pytest.raises(fedc.FedcValueError, match="input_spec must have two elements"):
        models.from_keras_model(create_keras_model(), loss=loss, input_spec=(SPEC["x"],))
    with pytest.raises(fedc.FedcValueError, match="needs the keys 'x' and 'y'"):
        models.from_keras_model(create_keras_model(), loss=loss, input_spec={"x": SPEC["x"], "label": SPEC["y"]})
    with pytest.raises(fedc.FedcTypeError, match="metrics must be a list"):
        models.from_keras_model(create_keras_model(), loss=loss, input_spec=SPEC,
                                metrics=(keras.metrics.SparseCategoricalAccuracy(),))
    with pytest.raises(fedc.FedcValueError, match="two metrics are named 'acc'"):
        models.from_keras_model(create_keras_model(), loss=loss, input_spec=SPEC,
                                metrics=[keras.metrics.SparseCategoricalAccuracy(name="acc"),
                                         keras.metrics.Accuracy(name="acc")])
    with pytest.raises(fedc.FedcValueError, match="loss_weights goes with a list of losses"):
        models.from_keras_model(create_keras_model(), loss=loss, input_spec=SPEC, loss_weights=[1.0])


def test_a_hand_written_variable_model_needs_its_model_fn():
    class Mine(models.VariableModel):
        trainable_variables = non_trainable_variables = local_variables = []
        input_spec = SPEC

        def forward_pass(self, batch_input, training=True):
            return models.BatchOutput()

        def predict_on_batch(self, batch_input, training=True):
            return None

        def report_local_unfinalized_metrics(self):
            return collections.OrderedDict()

        def metric_finalizers(self):
            return collections.OrderedDict()

        def reset_metrics(self):
            pass

    with pytest.raises(fedc.FedcTypeError, match="the stateless form of a Mine .* needs the function that makes one"):
        models.stateless(Mine())
    assert models.stateless(Mine(), Mine).input_spec == SPEC  # trains (tests/learning/test_variable_models.py)
    with pytest.raises(fedc.FedcTypeError, match="fedc cannot train a list"):
        models.stateless([])


def test_a_functional_model_from_keras_predicts_like_the_model():
    k = create_keras_model()
    k.layers[0].kernel.assign(np.random.default_rng(0).normal(size=(784, 10)).astype(np.float32))
    functional = models.functional_model_from_keras(
        k, keras.losses.SparseCategoricalCrossentropy(), SPEC,
        metrics_constructor=lambda: collections.OrderedDict(accuracy=keras.metrics.SparseCategoricalAccuracy()))
    data = batch(6, 5)
    weights = functional.initial_weights
    np.testing.assert_allclose(functional.predict_on_batch(weights, data["x"]).numpy(), k(data["x"]).numpy(), rtol=1e-5)
    state = functional.initial_metrics()
    output, _ = functional.forward_pass(weights, data)
    state = functional.update_metrics(state, data, output)
    finalizers = functional.metric_finalizers()
    assert list(finalizers) == ["loss", "metrics"]  # TFF's order for a functional model: loss first
    assert float(finalizers["loss"](state["loss"])) == pytest.approx(float(output.loss), rel=1e-6)
    accuracy = keras.metrics.SparseCategoricalAccuracy()
    accuracy.update_state(data["y"], output.predictions)
    assert float(finalizers["metrics"](state["metrics"])["accuracy"]) == pytest.approx(float(accuracy.result()))


def test_model_weights_move_between_models():
    model = model_fn()
    weights = models.ModelWeights.from_model(model).convert_variables_to_arrays()
    assert [w.shape for w in weights.trainable] == [(784, 10), (10,)] and weights.non_trainable == []
    k = create_keras_model()
    models.ModelWeights([np.ones((784, 10), np.float32), np.ones(10, np.float32)], []).assign_weights_to(k)
    assert np.asarray(k.trainable_variables[1]).sum() == 10.0
    with pytest.raises(fedc.FedcValueError, match="the model has 2 trainable weights, these weights 1"):
        models.ModelWeights([np.ones(10, np.float32)], []).assign_weights_to(k)
