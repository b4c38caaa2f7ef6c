"""SecureSumFactory and secure_sum_then_finalize: sums through the secure-sum intrinsics, as TFF builds them."""

import collections

import numpy as np
import pytest

import fedc
from fedc import aggregators as agg
from fedc.learning import algorithms, metrics, models, optimizers

BACKENDS = ["tf", "reference"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_integer_sums_are_exact_after_clipping(backend):
    t = fedc.StructType([fedc.TensorType(np.int32, [4]), fedc.TensorType(np.int32)])
    process = agg.SecureSumFactory(100, -20).create(t)
    assert str(process.next.type_signature.result["measurements"]) == (
        "<secure_upper_clipped_count=int32,secure_lower_clipped_count=int32,secure_upper_threshold=int32,"
        "secure_lower_threshold=int32>@SERVER")
    rng = np.random.default_rng(0)
    values = [(rng.integers(-50, 150, 4).astype(np.int32), np.int32(rng.integers(-50, 150))) for _ in range(7)]
    with fedc.backend(backend):
        out = process.next(process.initialize(), values)
    np.testing.assert_array_equal(out.result[0], sum(np.clip(v[0], -20, 100) for v in values))
    assert out.result[1] == sum(np.clip(v[1], -20, 100) for v in values)
    above = sum(max(v[0].max(), v[1]) > 100 for v in values)
    below = sum(min(v[0].min(), v[1]) < -20 for v in values)
    assert (int(out.measurements["secure_upper_clipped_count"]), int(out.measurements["secure_lower_clipped_count"])) \
        == (above, below)
    assert int(out.measurements["secure_upper_threshold"]) == 100
    text = process.next.to_text()
    assert "fed.secure_sum_bitwidth" in text and "fed.sum" not in text


@pytest.mark.parametrize("backend", BACKENDS)
def test_float_sums_are_exact_to_the_quantization_step(backend):
    process = agg.SecureSumFactory(2.0).create(fedc.TensorType(np.float32, [1000]))
    rng = np.random.default_rng(1)
    values = [rng.normal(0, 1.2, 1000).astype(np.float32) for _ in range(20)]
    with fedc.backend(backend):
        out = process.next(process.initialize(), values)
    expected = sum(np.clip(v.astype(np.float64), -2, 2) for v in values)
    step = 4.0 / (2 ** 32 - 1)
    assert np.abs(out.result - expected).max() <= 20 * step / 2 + 1e-5  # float32 rounding of the sum too
    assert out.result.dtype == np.float32
    assert float(out.measurements["secure_lower_threshold"]) == -2.0
    assert int(out.measurements["secure_upper_clipped_count"]) == sum((v > 2).any() for v in values)


def test_secure_sums_compose_into_fedavg_whose_round_then_has_no_plain_sum():
    import tensorflow as tf

    spec = collections.OrderedDict(x=tf.TensorSpec([None, 4], tf.float32), y=tf.TensorSpec([None, 1], tf.int32))

    def model_fn():
        import keras

        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, kernel_initializer="zeros"),
                                  keras.layers.Softmax()])
        return models.from_keras_model(model, loss=keras.losses.SparseCategoricalCrossentropy(), input_spec=spec)

    rng = np.random.default_rng(2)
    data = [tf.data.Dataset.from_tensor_slices(collections.OrderedDict(
        x=rng.random((12, 4)).astype(np.float32), y=rng.integers(0, 3, (12, 1)).astype(np.int32))).batch(4)
        for _ in range(3)]
    secure = algorithms.build_unweighted_fed_avg(
        model_fn, optimizers.build_sgdm(learning_rate=0.5),
        model_aggregator=agg.UnweightedMeanFactory(value_sum_factory=agg.SecureSumFactory(1.0),
                                                   count_sum_factory=agg.SecureSumFactory(1)),
        metrics_aggregator=metrics.secure_sum_then_finalize)
    plain = algorithms.build_unweighted_fed_avg(model_fn, optimizers.build_sgdm(learning_rate=0.5),
                                                model_aggregator=agg.UnweightedMeanFactory())
    for backend in BACKENDS:
        with fedc.backend(backend):
            a = secure.next(secure.initialize(), data)
            b = plain.next(plain.initialize(), data)
        for x, y in zip(secure.get_model_weights(a.state).trainable, plain.get_model_weights(b.state).trainable):
            np.testing.assert_allclose(x, y, atol=1e-6)
        train = a.metrics["client_work"]["train"]
        assert list(train)[0] == "secure_sum_measurements"
        np.testing.assert_allclose(float(train["loss"]), float(b.metrics["client_work"]["train"]["loss"]), rtol=1e-5)
        assert int(train["num_examples"]) == 36
    text = secure.next.to_text()
    assert text.count("fed.secure_sum_bitwidth") >= 4
    assert "fed.mean" not in text and "fed.sum" not in text
    # fedc's privacy report agrees: every way a client value reaches the server is a secure sum.
    from fedc.passes.privacy import privacy_report

    report = privacy_report(secure.next.to_ir())
    assert report.secure_flows and not report.plain_flows
    assert privacy_report(plain.next.to_ir()).plain_flows


def test_metric_value_ranges_group_the_secure_sums():
    t = fedc.to_type(collections.OrderedDict(hits=[np.float32, np.float32], count=[np.int64]))
    finalizers = collections.OrderedDict(hits=lambda v: v[0] / v[1], count=lambda v: v[0])
    aggregate = metrics.secure_sum_then_finalize(finalizers, t, collections.OrderedDict(hits=[(0.0, 10.0), None]))
    measured = aggregate.type_signature.result.member["secure_sum_measurements"]
    assert list(measured.names()) == ["float32_0p0_to_10p0", "float32_0p0_to_1048575p0", "int64_0_to_1048575"]
    clients = [collections.OrderedDict(hits=[np.float32(3.0), np.float32(4.0)], count=[np.int64(9)]),
               collections.OrderedDict(hits=[np.float32(12.0), np.float32(8.0)], count=[np.int64(2)])]
    out = aggregate(clients)
    np.testing.assert_allclose(float(out["hits"]), 13.0 / 12.0, rtol=1e-6)  # 12 clipped to 10
    assert int(out["count"]) == 11
    assert int(out["secure_sum_measurements"]["float32_0p0_to_10p0"]["secure_upper_clipped_count"]) == 1


def test_bad_thresholds_and_values_are_clear_errors():
    with pytest.raises(fedc.FedcValueError, match="must be positive"):
        agg.SecureSumFactory(0)
    with pytest.raises(fedc.FedcValueError, match="must be larger than lower_bound_threshold"):
        agg.SecureSumFactory(1.0, 2.0)
    with pytest.raises(fedc.FedcTypeError, match="must both be ints or both floats"):
        agg.SecureSumFactory(10, 0.5)
    with pytest.raises(fedc.FedcTypeError, match="must be an int or a float"):
        agg.SecureSumFactory(True)
    with pytest.raises(fedc.FedcTypeError, match="must be an int or a float"):
        agg.SecureSumFactory(object())
    with pytest.raises(fedc.FedcValueError, match="must be finite"):
        agg.SecureSumFactory(float("inf"))
    with pytest.raises(fedc.FedcValueError, match="needs 64 bits"):
        agg.SecureSumFactory(2 ** 63 - 1, -(2 ** 63))
    with pytest.raises(fedc.FedcTypeError, match="its thresholds are integers .* float32"):
        agg.SecureSumFactory(5).create(fedc.TensorType(np.float32))
    with pytest.raises(fedc.FedcTypeError, match="its thresholds are floats .* int32"):
        agg.SecureSumFactory(5.0).create(fedc.TensorType(np.int32))
    with pytest.raises(fedc.FedcTypeError, match="one dtype"):
        agg.SecureSumFactory(5.0).create(fedc.StructType([np.float32, np.float64]))
    with pytest.raises(fedc.FedcValueError, match="does not fit int8"):
        agg.SecureSumFactory(1000).create(fedc.TensorType(np.int8))
    t = fedc.to_type(collections.OrderedDict(a=[np.float32]))
    with pytest.raises(fedc.FedcValueError, match="no metric named 'b'"):
        metrics.secure_sum_then_finalize({"a": lambda v: v[0]}, t, {"b": (0.0, 1.0)})
    with pytest.raises(fedc.FedcValueError, match="lower < upper"):
        metrics.secure_sum_then_finalize({"a": lambda v: v[0]}, t, {"a": (1.0, 0.0)})
    with pytest.raises(fedc.FedcTypeError, match=r"metric_value_ranges\['a'\]: expected a dict of metric name"):
        metrics.secure_sum_then_finalize({"a": lambda v: v[0]}, t, {"a": "0 to 1"})
    counts = fedc.to_type(collections.OrderedDict(n=[np.int64]))
    with pytest.raises(fedc.FedcValueError, match=r"the range \(0, 1.5\) of an integer metric tensor must be integers"):
        metrics.secure_sum_then_finalize({"n": lambda v: v[0]}, counts, {"n": (0, 1.5)})
