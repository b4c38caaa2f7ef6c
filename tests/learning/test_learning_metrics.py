"""fedc.learning.metrics.sum_then_finalize, and metrics aggregators given to the algorithms."""

import collections

import numpy as np
import pytest

import fedc
from fedc.learning import metrics

UNFINALIZED = fedc.StructType([("accuracy", fedc.StructType([fedc.TensorType(np.float32), fedc.TensorType(np.float32)],
                                                              python_container=list)),
                               ("num_examples", fedc.StructType([fedc.TensorType(np.int64)], python_container=list))])
FINALIZERS = collections.OrderedDict(accuracy=lambda v: v[0] / v[1], num_examples=lambda v: v[0])


def test_sum_then_finalize_sums_the_clients_then_finalizes_once():
    aggregate = metrics.sum_then_finalize(FINALIZERS, UNFINALIZED)
    assert str(aggregate.type_signature) == (
        "({<accuracy=<float32,float32>,num_examples=<int64>>}@CLIENTS -> <accuracy=float32,num_examples=int64>@SERVER)")
    clients = [collections.OrderedDict(accuracy=[np.float32(3), np.float32(4)], num_examples=[np.int64(4)]),
               collections.OrderedDict(accuracy=[np.float32(1), np.float32(6)], num_examples=[np.int64(6)])]
    out = aggregate(clients)
    assert float(out["accuracy"]) == pytest.approx(4 / 10)  # not the mean of 0.75 and 0.1667
    assert int(out["num_examples"]) == 10


def test_sum_then_finalize_checks_its_arguments():
    with pytest.raises(fedc.FedcValueError, match="named \\['accuracy', 'num_examples'\\], the finalizers \\['loss'\\]"):
        metrics.sum_then_finalize({"loss": lambda v: v[0]}, UNFINALIZED)
    with pytest.raises(fedc.FedcTypeError, match="the finalizer of metric 'accuracy' is not callable"):
        metrics.sum_then_finalize({"accuracy": 1, "num_examples": 2}, UNFINALIZED)


def test_an_algorithm_takes_a_metrics_aggregator():
    import sys
    import pathlib

    sys.path.insert(0, str(pathlib.Path(__file__).parent))
    from test_algorithms import client, fed_avg

    seen = []

    def recording(finalizers, unfinalized_type):
        seen.append(list(finalizers))
        return metrics.sum_then_finalize(finalizers, unfinalized_type)

    process = fed_avg(metrics_aggregator=recording)
    assert seen == [["sparse_categorical_accuracy", "loss", "num_examples", "num_batches"]]
    out = process.next(process.initialize(), [client(20, 1)])
    assert int(out.metrics["client_work"]["train"]["num_examples"]) == 20
    with pytest.raises(fedc.FedcTypeError, match="metrics_aggregator is a function"):
        fed_avg(metrics_aggregator=3)
