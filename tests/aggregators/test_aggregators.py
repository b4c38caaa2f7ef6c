"""fedc.aggregators: TFF's aggregation factories as fedc computations, composed, and used by the algorithms."""

import numpy as np
import pytest

import fedc
from fedc import aggregators as agg

VALUE = fedc.StructType([fedc.TensorType(np.float32, [2]), fedc.TensorType(np.float32)])
VALUES = [[np.array([3.0, 4.0], np.float32), np.float32(0.0)], [np.array([0.0, 1.0], np.float32), np.float32(2.0)]]
WEIGHTS = [np.float32(3.0), np.float32(1.0)]


def run(factory, weighted=True):
    process = factory.create(VALUE, fedc.TensorType(np.float32)) if weighted else factory.create(VALUE)
    state = process.initialize()
    return process, (process.next(state, VALUES, WEIGHTS) if weighted else process.next(state, VALUES))


def flat(result):
    return np.concatenate([np.ravel(np.asarray(r)) for r in result])


def test_sum_and_the_means():
    process, out = run(agg.SumFactory(), weighted=False)
    assert str(process.next.type_signature.result) == (
        "<state=<>@SERVER,result=<float32[2],float32>@SERVER,measurements=<>@SERVER>")
    np.testing.assert_allclose(flat(out.result), [3.0, 5.0, 2.0])
    process, out = run(agg.MeanFactory())
    assert str(process.initialize.type_signature) == "( -> <value_sum_process=<>,weight_sum_process=<>>@SERVER)"
    np.testing.assert_allclose(flat(out.result), [(9 + 0) / 4, (12 + 1) / 4, (0 + 2) / 4])
    assert list(out.measurements) == ["mean_value", "mean_weight"]
    _, out = run(agg.UnweightedMeanFactory(), weighted=False)
    np.testing.assert_allclose(flat(out.result), [1.5, 2.5, 1.0])


def test_mean_of_zero_total_weight_is_nan_unless_asked():
    zero = [np.float32(0.0), np.float32(0.0)]
    plain = agg.MeanFactory().create(VALUE, fedc.TensorType(np.float32))
    assert np.isnan(flat(plain.next(plain.initialize(), VALUES, zero).result)).all()
    safe = agg.MeanFactory(no_nan_division=True).create(VALUE, fedc.TensorType(np.float32))
    assert not flat(safe.next(safe.initialize(), VALUES, zero).result).any()


def test_clipping_and_zeroing_compose_with_any_factory():
    process, out = run(agg.clipping_factory(1.0, agg.MeanFactory()))
    assert str(process.next.type_signature.result["measurements"]) == (
        "<clipping=<mean_value=<>,mean_weight=<>>,clipping_norm=float32,clipped_count=int32>@SERVER")
    first = np.array([3.0, 4.0, 0.0]) / 5.0  # norm 5 -> 1
    second = np.array([0.0, 1.0, 2.0]) / np.sqrt(5.0)
    np.testing.assert_allclose(flat(out.result), (3 * first + second) / 4, rtol=1e-6)
    assert int(out.measurements["clipped_count"]) == 2 and float(out.measurements["clipping_norm"]) == 1.0
    _, out = run(agg.zeroing_factory(3.0, agg.SumFactory()), weighted=False)
    np.testing.assert_allclose(flat(out.result), [0.0, 1.0, 2.0])  # the first (norm 5) is zeroed
    assert int(out.measurements["zeroed_count"]) == 1
    _, out = run(agg.clipping_factory(100.0, agg.zeroing_factory(4.0, agg.SumFactory())), weighted=False)
    assert int(out.measurements["clipped_count"]) == 0 and int(out.measurements["clipping"]["zeroed_count"]) == 1


def test_bad_factories_and_types_are_named():
    with pytest.raises(fedc.FedcValueError, match="the norm must be a number > 0"):
        agg.clipping_factory(0.0, agg.SumFactory())
    with pytest.raises(fedc.FedcTypeError, match="inner_agg_factory must be an aggregation factory"):
        agg.zeroing_factory(1.0, object())
    with pytest.raises(fedc.FedcTypeError, match="value_sum_factory must be an UnweightedAggregationFactory"):
        agg.MeanFactory(value_sum_factory=agg.MeanFactory())
    with pytest.raises(fedc.FedcTypeError, match="aggregations take numbers"):
        agg.SumFactory().create(fedc.TensorType(np.str_))
    with pytest.raises(fedc.FedcTypeError, match="a weight is a scalar"):
        agg.MeanFactory().create(VALUE, fedc.TensorType(np.float32, [2]))


def test_clipping_keeps_tffs_state_and_takes_floats_only():
    process = agg.clipping_factory(1.0, agg.MeanFactory()).create(VALUE, fedc.TensorType(np.float32))
    assert str(process.initialize.type_signature) == (
        "( -> <clipping_norm=<>,inner_agg=<value_sum_process=<>,weight_sum_process=<>>,clipped_count_agg=<>>@SERVER)")
    state = process.initialize()
    again = process.next(process.next(state, VALUES, WEIGHTS).state, VALUES, WEIGHTS)  # the state carries over
    assert int(again.measurements["clipped_count"]) == 2
    with pytest.raises(fedc.FedcTypeError, match="norms are of floating-point values"):
        agg.zeroing_factory(1.0, agg.SumFactory()).create(fedc.TensorType(np.int32, [3]))
