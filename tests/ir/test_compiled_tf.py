"""A Compiled block carries a real TensorFlow GraphDef through every round trip, bit for bit."""

import numpy as np
import pytest

import fedc
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


# --------------------------------------------------------------------------
# A payload runs only as the type it is declared: its graph's signature must match


def _payload(inputs, build):
    """A payload from a TF1-style graph with placeholders ``inputs`` [(dtype, shape)] and outputs ``build(*xs)``."""
    tf = pytest.importorskip("tensorflow")
    from fedc import tensorflow_graphs

    graph = tf.Graph()
    with graph.as_default():
        xs = [tf.compat.v1.placeholder(dtype, shape, name=f"x{i}") for i, (dtype, shape) in enumerate(inputs)]
        ys = build(*xs)
    return tensorflow_graphs.make_payload(graph.as_graph_def(), [x.name for x in xs], [y.name for y in ys])


def _load(payload, declared, name="step"):
    from fedc import tensorflow_graphs

    return tensorflow_graphs.load(ir.Compiled("tensorflow", payload, types.parse(declared), name))


def test_a_payload_that_matches_its_declared_type_runs():
    tf = pytest.importorskip("tensorflow")
    payload = _payload([(tf.float32, [None]), (tf.int32, [])], lambda x, n: [x * 2.0, n + 1])
    run = _load(payload, "(<float32[?],int32> -> <float32[?],int32>)")
    result = run((np.array([1.0, 2.0], np.float32), np.int32(4)))
    assert result[0].dtype == np.float32 and result[0].tolist() == [2.0, 4.0]
    assert result[1].dtype == np.int32 and result[1] == 5
    # A declared shape more specific than the graph's is fine where the graph does not know it.
    assert _load(payload, "(<float32[2],int32> -> <float32[2],int32>)")((np.ones(2, np.float32), 1))[1] == 2


@pytest.mark.parametrize(
    "declared, inputs, build, graph_signature, problem",
    [
        ("(float32 -> float32)", [("float32", [])], lambda x: [tf_fill(x, 3)],
         "(float32) -> (float32[3])", "r0 is float32[3] where float32 is declared (the shapes differ)"),
        ("(float32 -> float32)", [("float32", [])], lambda x: [tf_cast(x, "int32")],
         "(float32) -> (int32)", "r0 is int32 where float32 is declared (the dtypes differ)"),
        ("(float32 -> str)", [("float32", [])], lambda x: [tf_cast(x, "int32")],
         "(float32) -> (int32)", "r0 is int32 where str is declared (the dtypes differ)"),
        ("(int32 -> float32)", [("float32", [])], lambda x: [x],
         "(float32) -> (float32)", "p0 is float32 where int32 is declared (the dtypes differ)"),
        ("(float32[?] -> float32[?])", [("float32", [3])], lambda x: [x],
         "(float32[3]) -> (float32[3])",
         "p0 is float32[3] where float32[?] is declared (the placeholder does not accept every value of the declared shape)"),
    ],
)
def test_a_payload_whose_graph_does_not_match_its_declared_type_is_refused_when_loaded(
    declared, inputs, build, graph_signature, problem
):
    tf = pytest.importorskip("tensorflow")
    payload = _payload([(getattr(tf, d), s) for d, s in inputs], build)
    with pytest.raises(fedc.FedcError) as info:
        _load(payload, declared)
    message = str(info.value)
    assert message.startswith(f"compiled computation 'step' is declared {declared}, but its TensorFlow graph's signature is {graph_signature}: ")
    assert problem in message


def test_a_payload_with_more_results_than_declared_is_refused():
    tf = pytest.importorskip("tensorflow")
    payload = _payload([(tf.float32, [])], lambda x: [x, x])
    with pytest.raises(fedc.FedcError, match=r"'step' is declared \(float32 -> float32\), with 1 parameter and 1 result tensor\(s\), but its TensorFlow graph's signature has inputs \['p0'\] and outputs \['r0', 'r1'\]"):
        _load(payload, "(float32 -> float32)")


def test_a_result_whose_shape_the_graph_leaves_open_is_checked_when_it_runs():
    tf = pytest.importorskip("tensorflow")
    payload = _payload([(tf.float32, [None])], lambda x: [x + 1.0])
    run = _load(payload, "(float32[?] -> float32[2])")
    assert run(np.array([1.0, 2.0], np.float32)).tolist() == [2.0, 3.0]
    with pytest.raises(fedc.FedcError, match=r"returned r0 of shape \[3\] where float32\[2\] is declared"):
        run(np.array([1.0, 2.0, 3.0], np.float32))


def tf_fill(x, n):
    import tensorflow as tf

    return tf.fill([n], x)


def tf_cast(x, dtype):
    import tensorflow as tf

    return tf.cast(x, getattr(tf, dtype))
