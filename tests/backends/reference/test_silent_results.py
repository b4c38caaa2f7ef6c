"""No silent wrong results from aggregations: integer sums do not wrap, weighted means need weight."""

import numpy as np
import pytest

import fedc


def summing(dtype):
    @fedc.federated_computation(fedc.FederatedType(dtype, fedc.CLIENTS))
    def total(values):
        return fedc.federated_sum(values)

    return total


@pytest.mark.parametrize("dtype, values, bad", [
    (np.int32, [2**31 - 1, 1], 2**31),
    (np.int32, [-(2**31), -1], -(2**31) - 1),
    (np.uint8, [200, 100], 300),
    (np.int64, [2**63 - 1, 1], 2**63),
])
def test_integer_sums_that_do_not_fit_are_refused(dtype, values, bad):
    with pytest.raises(fedc.FedcError, match=f"federated_sum of {np.dtype(dtype).name} values overflows: a sum is {bad}"):
        summing(dtype)(values)


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.uint16, np.int64])
def test_integer_sums_that_fit_are_exact(dtype):
    info = np.iinfo(dtype)
    values = [int(info.max) - 1, 1] + ([int(info.min) + 1, -1] if info.min < 0 else [])  # partial sums touch the ends
    assert summing(dtype)(values) == sum(values)
    vectors = fedc.federated_computation(fedc.FederatedType(fedc.TensorType(dtype, [2]), fedc.CLIENTS))(
        lambda v: fedc.federated_sum(v))
    assert vectors([np.array([info.max, 1], dtype), np.array([0, 2], dtype)]).tolist() == [info.max, 3]


def weighted():
    clients = fedc.FederatedType(np.float32, fedc.CLIENTS)

    @fedc.federated_computation(clients, clients)
    def mean(values, weights):
        return fedc.federated_mean(values, weights)

    return mean


def test_weighted_mean_needs_some_weight_and_no_negative_weight():
    mean = weighted()
    assert mean([1.0, 3.0], [1.0, 3.0]) == 2.5
    assert mean([1.0, 3.0], [0.0, 2.0]) == 3.0
    with pytest.raises(fedc.FedcError, match="weights sum to 0"):
        mean([1.0, 3.0], [0.0, 0.0])
    with pytest.raises(fedc.FedcError, match="weight is negative"):
        mean([1.0, 3.0], [2.0, -1.0])
