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
