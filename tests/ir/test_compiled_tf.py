"""A Compiled block carries a real TensorFlow GraphDef through every round trip, bit for bit."""

import numpy as np
import pytest

from fedc import ir, types


def _add_half_graph_def() -> bytes:
    tf = pytest.importorskip("tensorflow")

    @tf.function(input_signature=[tf.TensorSpec([], tf.float32)])
    def add_half(x):
        return x + 0.5

    graph = add_half.get_concrete_function().graph
    return graph.as_graph_def().SerializeToString(deterministic=True)


def test_graph_def_survives_text_and_protobuf():
    tf = pytest.importorskip("tensorflow")
    payload = _add_half_graph_def()
    f32 = types.TensorType(np.float32)
    compiled = ir.Compiled("tensorflow", payload, types.FunctionType(f32, f32), name="add_half")
    clients = types.FederatedType(f32, types.CLIENTS)
    body = ir.intrinsic_call("federated_map", ir.Struct([compiled, ir.Reference("t", clients)]))
    module = ir.Module("add_half", {"add_half_on_clients": ir.Lambda("t", clients, body)})
    ir.verify(module)
    assert str(module["add_half_on_clients"].type_signature) == "({float32}@CLIENTS -> {float32}@CLIENTS)"

    text = ir.print_module(module)
    assert compiled.content_hash in text
    from_text = ir.parse_module(text)
    from_proto = ir.deserialize(ir.serialize(module))
    for restored in (from_text, from_proto):
        assert restored == module
        node = restored["add_half_on_clients"].result.argument.elements[0][1]
        assert node.payload == payload
        graph_def = tf.compat.v1.GraphDef.FromString(node.payload)
        assert any(n.op == "AddV2" for n in graph_def.node)


def test_a_tf_computation_returning_a_dataset_is_a_sequence_through_every_round_trip():
    """As in TFF, a tf_computation may return a tf.data.Dataset: its result type is a sequence T*."""
    tf = pytest.importorskip("tensorflow")
    import fedc
    from fedc.computation import Computation

    @fedc.tf_computation(np.int32)
    def evens(n):
        return tf.data.Dataset.range(tf.cast(n, tf.int64)).map(lambda x: tf.cast(x, tf.int32) * 2)

    assert str(evens.type_signature) == "(int32 -> int32*)"
    assert evens(4) == [0, 2, 4, 6]
    assert evens(0) == []

    @fedc.tf_computation(types.TensorType(np.float32, [None]))
    def with_total(v):
        return tf.data.Dataset.from_tensor_slices({"y": v, "x": tf.cast(v, tf.int32)}), tf.reduce_sum(v)

    assert str(with_total.type_signature) == "(float32[?] -> <<y=float32,x=int32>*,float32>)"
    rows, total = with_total(np.array([1.5, 2.5], np.float32))
    assert rows == [{"y": 1.5, "x": 1}, {"y": 2.5, "x": 2}] and total == 4.0

    @fedc.federated_computation(types.FederatedType(np.int32, types.CLIENTS))
    def sums(n):
        return fedc.sequence_sum(fedc.federated_map(evens, n))

    assert sums([1, 3, 4]) == [0, 6, 12]
    module = sums.to_ir()
    for restored in (ir.deserialize(ir.serialize(module)), ir.parse_module(ir.print_module(module))):
        assert restored == module
        assert Computation(restored, "sums")([2, 5]) == [2, 20]


def test_a_tf_computation_returning_a_bare_variant_is_refused():
    tf = pytest.importorskip("tensorflow")
    import fedc

    with pytest.raises(fedc.FedcError, match=r"tf_computation 'handle' returns a tf.variant tensor"):

        @fedc.tf_computation(np.int32)
        def handle(n):
            return tf.data.experimental.to_variant(tf.data.Dataset.range(tf.cast(n, tf.int64)))

    with pytest.raises(fedc.FedcError, match=r"tf_computation 'ragged' returns a dataset whose elements fedc cannot "
                                             r"type: TensorFlow spec RaggedTensorSpec"):

        @fedc.tf_computation(np.int32)
        def ragged(n):
            return tf.data.Dataset.from_tensor_slices(tf.ragged.constant([[1], [2, 3]]))
