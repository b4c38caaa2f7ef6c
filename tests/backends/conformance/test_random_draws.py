"""local.random_normal on every backend: standard normal, fresh on every call, one draw per client and per use."""

import numpy as np
import pytest

import fedc

F = fedc.FederatedType
C, S = fedc.CLIENTS, fedc.SERVER
T = fedc.TensorType(np.float32, [4000])


@fedc.federated_computation(T)
def _noised(v):
    return v + fedc.ops.random_normal(type=T) * 3.0


@fedc.federated_computation(F(T, S))
def at_the_server(x):
    return fedc.federated_map(_noised, x)


@fedc.federated_computation(T)
def _two_draws(v):
    return v + fedc.ops.random_normal(type=T), v - fedc.ops.random_normal(type=T)


@fedc.federated_computation(np.float32)
def _eight_draws(v):
    return v + fedc.ops.random_normal(type=fedc.TensorType(np.float32, [8]))


@fedc.federated_computation(F(np.float32, C))
def per_client(x):
    noise = fedc.federated_map(_eight_draws, x)
    return fedc.federated_sum(noise), noise


@fedc.federated_computation(F(T, S))
def two_at_the_server(x):
    return fedc.federated_map(_two_draws, x)


def test_a_draw_at_the_server_is_standard_normal_and_fresh_every_call():
    zeros = np.zeros(4000, np.float32)
    first, second = at_the_server(zeros), at_the_server(zeros)
    assert first.dtype == np.float32 and first.shape == (4000,)
    for draw in (first, second):
        assert abs(np.mean(draw)) < 0.2 and 2.8 < np.std(draw) < 3.2
    assert abs(np.corrcoef(first, second)[0, 1]) < 0.1


def test_two_draws_in_one_function_are_two_values():
    a, b = two_at_the_server(np.zeros(4000, np.float32))
    assert abs(np.corrcoef(a, -b)[0, 1]) < 0.1  # not the same draw (it would be exactly -1 or 1)


def test_every_client_draws_its_own():
    _, noise = per_client(np.zeros(6, np.float32))
    rows = np.asarray(noise)
    assert rows.shape == (6, 8)
    assert len({tuple(r) for r in rows}) == 6  # one draw for all would make them equal


def test_a_draw_needs_a_known_floating_point_type():
    with pytest.raises(fedc.FedcTypeError, match="random_normal draws floating-point numbers"):
        fedc.federated_computation(np.int32)(lambda v: fedc.ops.random_normal(type=fedc.TensorType(np.int32, [2])))
    with pytest.raises(fedc.FedcTypeError, match="random_normal needs fully known shapes"):
        fedc.federated_computation(np.float32)(
            lambda v: fedc.ops.random_normal(type=fedc.TensorType(np.float32, [None])))
