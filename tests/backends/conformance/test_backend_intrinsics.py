"""Each intrinsic's semantics and bad paths, on every backend (the conformance fixture)."""

import collections

import numpy as np
import pytest

import fedc
from fedc.errors import FedcError, UnsupportedError

F32 = np.float32
CLIENT_F32 = fedc.FederatedType(F32, fedc.CLIENTS)
SERVER_F32 = fedc.FederatedType(F32, fedc.SERVER)
CLIENT_I32 = fedc.FederatedType(np.int32, fedc.CLIENTS)


def test_mean_sum_min_max():
    @fedc.federated_computation(CLIENT_F32)
    def stats(x):
        return (fedc.federated_mean(x), fedc.federated_sum(x), fedc.federated_min(x), fedc.federated_max(x))

    assert str(stats.type_signature) == "({float32}@CLIENTS -> <float32@SERVER,float32@SERVER,float32@SERVER,float32@SERVER>)"
    mean, total, low, high = stats([1.0, 2.0, 6.0])
    assert (mean, total, low, high) == (3.0, 9.0, 1.0, 6.0)
    assert all(isinstance(v, np.float32) for v in (mean, total, low, high))


def test_weighted_mean_of_structs():
    member = fedc.StructType([("a", F32), ("b", fedc.TensorType(F32, [2]))])

    @fedc.federated_computation(fedc.FederatedType(member, fedc.CLIENTS), CLIENT_F32)
    def weighted(values, weights):
        return fedc.federated_mean(values, weight=weights)

    result = weighted(
        [{"a": 1.0, "b": [0.0, 2.0]}, {"a": 3.0, "b": [4.0, 2.0]}],
        [1.0, 3.0],
    )
    assert result["a"] == pytest.approx(2.5)
    np.testing.assert_allclose(result["b"], [3.0, 2.0])


def test_broadcast_map_apply_value_zip():
    @fedc.federated_computation(CLIENT_F32, SERVER_F32)
    def shift(x, s):
        shifted = fedc.federated_map(lambda pair: pair[0] - pair[1], (x, fedc.federated_broadcast(s)))
        doubled = fedc.federated_map(lambda v: v * 2.0, s)
        return shifted, doubled

    shifted, doubled = shift([1.0, 5.0], 1.0)
    assert shifted == [0.0, 4.0]
    assert doubled == 2.0


def test_aggregate_uses_zero_accumulate_merge_report():
    @fedc.federated_computation(CLIENT_F32)
    def count_and_sum(x):
        return fedc.federated_aggregate(
            x,
            (np.float32(0.0), np.int32(0)),
            lambda acc, v: (acc[0] + v, acc[1] + 1),
            lambda a, b: (a[0] + b[0], a[1] + b[1]),
            lambda acc: acc[0] / fedc.ops.cast(acc[1], dtype=np.float32),
        )

    assert count_and_sum([1.0, 2.0, 3.0, 6.0, 8.0]) == pytest.approx(4.0)
    # Over no clients, report(zero) is 0/0: the honest answer is nan.
    assert np.isnan(count_and_sum(np.zeros([0], F32)))


def test_secure_sums_are_exact_and_checked():
    @fedc.federated_computation(CLIENT_I32)
    def secure(x):
        return (
            fedc.federated_secure_sum_bitwidth(x, 4),
            fedc.federated_secure_sum(x, 10),
            fedc.federated_secure_modular_sum(x, 7),
        )

    assert secure([3, 5, 0]) == (8, 8, 1)
    with pytest.raises(FedcError, match=r"federated_secure_sum_bitwidth: client 1 has value 16 outside \[0, 2\*\*4\)"):
        secure([3, 16, 0])
    with pytest.raises(FedcError, match=r"client 0 has value -1 outside"):
        secure([-1, 1])


def test_secure_modular_sum_reduces_each_value_and_the_sum():
    """As TFF documents: a value outside [0, modulus) counts as value mod modulus, negative ones too."""
    @fedc.federated_computation(CLIENT_I32)
    def mod5(x):
        return fedc.federated_secure_modular_sum(x, 5)

    assert mod5([1, 3, 6]) == (1 + 3 + 1) % 5
    assert mod5([-1, 2]) == (4 + 2) % 5
    assert mod5([-7]) == 3
    # Each value is reduced before summing, so int32 extremes do not overflow.
    assert mod5([2**31 - 1] * 4) == (4 * (2**31 - 1)) % 5
    assert mod5(np.zeros([0], np.int32)) == 0

    pair = fedc.FederatedType(fedc.StructType([np.int32, np.int32]), fedc.CLIENTS)

    @fedc.federated_computation(pair)
    def per_element(x):
        return fedc.federated_secure_modular_sum(x, (5, 7))

    assert per_element([(1, 2), (3, 4), (10, -15)]) == (4, (2 + 4 - 15) % 7)

    @fedc.federated_computation(CLIENT_I32, np.int32)
    def by(x, m):
        return fedc.federated_secure_modular_sum(x, m)

    with pytest.raises(FedcError, match=r"federated_secure_modular_sum: the modulus must be positive, but is 0"):
        by([1, 2], 0)
    with pytest.raises(FedcError, match=r"the modulus must be positive, but is -3"):
        by([1, 2], -3)

    # A modulus past the values' dtype is used as given (TFF casts it to the dtype); the result must fit.
    @fedc.federated_computation(CLIENT_I32)
    def wide(x):
        return fedc.federated_secure_modular_sum(x, 2**40)

    assert wide([1, -1]) == 0
    with pytest.raises(FedcError, match=r"federated_secure_modular_sum: the sum does not fit in int32"):
        wide([2**31 - 1, 2**31 - 1])


def test_eval_and_sequences():
    @fedc.tf_computation
    def seven():
        import tensorflow as tf

        return tf.constant(7, tf.int32)

    seq = fedc.SequenceType(np.int32)

    @fedc.federated_computation(fedc.FederatedType(seq, fedc.CLIENTS))
    def per_client(datasets):
        sums = fedc.federated_map(lambda d: fedc.sequence_sum(d), datasets)
        at_server = fedc.federated_eval(seven, fedc.SERVER)
        return sums, at_server

    sums, at_server = per_client([[1, 2, 3], [], [10]])
    assert sums == [6, 0, 10]
    assert at_server == 7

    @fedc.federated_computation(fedc.FederatedType(seq, fedc.SERVER))
    def reduce_and_map(d):
        return fedc.federated_map(
            lambda s: fedc.sequence_reduce(fedc.sequence_map(lambda v: v * 2, s), np.int32(1), lambda acc, v: acc + v),
            d,
        )

    assert reduce_and_map([1, 2, 3]) == 13


def test_select():
    server_type = fedc.FederatedType(fedc.TensorType(np.int32, [4]), fedc.SERVER)
    keys_type = fedc.FederatedType(fedc.TensorType(np.int32, [2]), fedc.CLIENTS)
    max_key_type = fedc.FederatedType(np.int32, fedc.SERVER)

    @fedc.federated_computation(keys_type, max_key_type, server_type)
    def pick(keys, max_key, table):
        return fedc.federated_select(keys, max_key, table, lambda t, k: fedc.ops.reshape(t, shape=[4]))

    out = pick([[0, 1], [3, 3]], 4, [10, 20, 30, 40])
    assert len(out) == 2 and len(out[0]) == 2
    # Keys lie in [0, max_key], max_key included, as TFF documents.
    @fedc.federated_computation(keys_type, max_key_type, server_type)
    def keys_back(keys, max_key, table):
        return fedc.federated_select(keys, max_key, table, lambda t, k: k)

    assert keys_back([[0, 3], [3, 1]], 3, [10, 20, 30, 40]) == [[0, 3], [3, 1]]
    with pytest.raises(FedcError, match=r"federated_select: client 1 asks for key\(s\) \[4, 0\] outside \[0, 3\]"):
        pick([[0, 1], [4, 0]], 3, [10, 20, 30, 40])
    with pytest.raises(FedcError, match=r"client 0 asks for key\(s\) \[-1, 0\] outside \[0, 3\]"):
        pick([[-1, 0], [1, 0]], 3, [10, 20, 30, 40])


def test_structs_come_back_in_their_containers():
    Point = collections.namedtuple("Point", ["x", "y"])
    t = fedc.to_type(Point(F32, F32))

    @fedc.federated_computation(fedc.FederatedType(t, fedc.CLIENTS))
    def mean_point(p):
        return fedc.federated_mean(p)

    out = mean_point([Point(1.0, 2.0), Point(3.0, 4.0)])
    assert isinstance(out, Point) and out == Point(2.0, 3.0)


def test_mapping_is_vectorized_over_a_million_clients():
    @fedc.federated_computation(CLIENT_F32)
    def centred_square_mean(x):
        return fedc.federated_mean(fedc.federated_map(lambda v: (v - 1.0) * (v - 1.0), x))

    values = np.random.default_rng(0).normal(1.0, 2.0, size=1_000_000).astype(F32)
    assert centred_square_mean(values) == pytest.approx(np.mean((values - 1.0) ** 2), rel=1e-3)


def test_wrong_argument_type_names_the_parameter_and_both_types():
    @fedc.federated_computation(fedc.FederatedType(fedc.TensorType(F32, [2]), fedc.CLIENTS))
    def f(vectors):
        return fedc.federated_sum(vectors)

    with pytest.raises(fedc.FedcTypeError, match=r"argument 'vectors' of f, client 1: expected float32\[2\], got a value of type float32\[3\]"):
        f([[1.0, 2.0], [1.0, 2.0, 3.0]])
    with pytest.raises(fedc.FedcTypeError, match=r"argument 'vectors' of f: expected \{float32\[2\]\}@CLIENTS, got an array of shape \[2, 3\]"):
        f(np.zeros([2, 3], F32))
    with pytest.raises(fedc.FedcTypeError, match=r"argument 'vectors' of f, client 0: a str value does not convert to float32"):
        f([np.array(["a", "b"])])


def test_mismatched_client_counts():
    @fedc.federated_computation(CLIENT_F32, CLIENT_F32)
    def both(a, b):
        return fedc.federated_mean(a), fedc.federated_mean(b)

    with pytest.raises(FedcError, match=r"disagree on the number of clients: argument.a has 2, argument.b has 3"):
        both([1.0, 2.0], [1.0, 2.0, 3.0])


def test_wrong_placement_to_an_intrinsic_names_the_traced_function():
    with pytest.raises(fedc.FedcTypeError) as info:

        @fedc.federated_computation(SERVER_F32)
        def average(x):
            return fedc.federated_mean(x)

    message = str(info.value)
    assert "federated_mean expects ({T}@CLIENTS -> T@SERVER)" in message
    assert "float32@SERVER" in message and "'average'" in message
    assert "test_backend_intrinsics.py" in message and "return fedc.federated_mean(x)" in message


def test_mapping_a_function_of_the_wrong_parameter_type():
    @fedc.tf_computation(np.int32)
    def inc(x):
        return x + 1

    with pytest.raises(fedc.FedcTypeError, match=r"parameter of the mapped function \(int32 -> int32\): expected int32, got float32"):

        @fedc.federated_computation(CLIENT_F32)
        def bad(x):
            return fedc.federated_map(inc, x)


def test_mean_of_non_numeric_values():
    with pytest.raises(fedc.FedcTypeError, match=r"federated_mean expects .* an argument of type \{str\}@CLIENTS: T must be floating-point tensors or structs of them, but T is str"):

        @fedc.federated_computation(fedc.FederatedType(np.str_, fedc.CLIENTS))
        def bad(x):
            return fedc.federated_mean(x)


def test_tf_computation_capturing_a_variable_is_rejected():
    tf = pytest.importorskip("tensorflow")
    counter = tf.Variable(1.0)

    with pytest.raises(FedcError, match=r"tf_computation 'uses_variable' captures TensorFlow variable\(s\) .*pass state in as tensors"):

        @fedc.tf_computation(np.float32)
        def uses_variable(x):
            return x + counter


def test_backend_without_an_implementation_fails_at_compile_time(backend, monkeypatch):
    @fedc.federated_computation(CLIENT_F32)
    def g(x):
        return fedc.federated_max(x)

    monkeypatch.delitem(fedc.context.get_backend().rules, "federated_max")
    with pytest.raises(UnsupportedError, match=rf"the {backend} backend does not implement federated_max \(in @g\)"):
        g([1.0])


def test_backend_selection():
    @fedc.federated_computation(CLIENT_F32)
    def avg(x):
        return fedc.federated_mean(x)

    with fedc.backend("reference"):
        assert avg([1.0, 3.0]) == 2.0
    with pytest.raises(FedcError, match=r"unknown backend 'gpu'; available backends: reference, tf"):
        fedc.set_default_backend("gpu")


def test_calling_outside_tracing_is_explained():
    with pytest.raises(FedcError, match=r"fedc.federated_mean can only be called while tracing"):
        fedc.federated_mean([1.0])
