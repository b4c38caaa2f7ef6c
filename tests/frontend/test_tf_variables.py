"""tf_computations whose bodies create TensorFlow variables: fresh and initialized on every call.

TFF's tutorials create a Keras model (and a Keras optimizer) inside a
tf_computation; a VariableModel keeps its weights in tf.Variables. From
outside, such a computation is still a pure function of its arguments.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import fedc
from fedc import ir
from fedc import tensorflow_ops

BACKENDS = ["reference", "tf"]


@fedc.tf_computation(tf.float32)
def accumulate(x):
    total = tf.Variable(10.0)
    total.assign_add(x)
    total.assign_add(x)
    return total.read_value()


def test_variables_start_from_their_initial_value_on_every_call():
    assert str(accumulate.type_signature) == "(float32 -> float32)"
    for backend in BACKENDS:
        with fedc.backend(backend):
            assert accumulate(1.0) == np.float32(12.0)
            assert accumulate(1.0) == np.float32(12.0)  # not 14: nothing survives the call
            assert accumulate(-5.0) == np.float32(0.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_client_gets_its_own_variables(backend):
    @fedc.federated_computation(fedc.FederatedType(tf.float32, fedc.CLIENTS))
    def on_clients(xs):
        return fedc.federated_map(accumulate, xs)

    with fedc.backend(backend):
        assert [float(v) for v in on_clients([1.0, 2.0, 3.0, 4.0])] == [12.0, 14.0, 16.0, 18.0]
        assert [float(v) for v in on_clients(np.arange(100, dtype=np.float32))] == [10.0 + 2 * i for i in range(100)]


def test_a_keras_model_and_optimizer_created_inside():
    @fedc.tf_computation
    def server_init():
        model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(10, kernel_initializer="zeros")])
        return model.trainable_variables

    assert str(server_init.type_signature) == "( -> <float32[784,10],float32[10]>)"
    kernel, bias = server_init()
    assert kernel.shape == (784, 10) and not kernel.any() and not bias.any()

    @fedc.tf_computation(server_init.type_signature.result, fedc.TensorType(np.float32, [None, 784]))
    def one_step(weights, x):
        model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(10)])
        for variable, value in zip(model.trainable_variables, weights):
            variable.assign(value)
        optimizer = keras.optimizers.SGD(learning_rate=0.5)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model(x))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
        return model.trainable_variables

    x = np.ones((3, 784), np.float32)
    for backend in BACKENDS:
        with fedc.backend(backend):
            kernel, bias = one_step([np.zeros((784, 10), np.float32), np.zeros(10, np.float32)], x)
            np.testing.assert_allclose(kernel, np.full((784, 10), -1.5))  # d(sum)/dk = 3 per entry, times 0.5
            np.testing.assert_allclose(bias, np.full(10, -1.5))
            again, _ = one_step([kernel, bias], x)  # the optimizer's step count starts afresh too
            np.testing.assert_allclose(again, np.full((784, 10), -3.0))


def test_the_graph_serializes_and_its_variables_are_anonymous():
    module = accumulate.to_ir()
    (node,) = [n for _, n in module.items()]
    graph = tf.compat.v1.MetaGraphDef.FromString(node.payload).graph_def
    handles = [n for n in graph.node if n.op == "VarHandleOp"]
    assert handles and all(n.attr["shared_name"].s == tensorflow_ops.ANONYMOUS_VARIABLE for n in handles)
    loaded = fedc.Computation(ir.deserialize(ir.serialize(module)), accumulate.name)
    assert loaded(2.0) == np.float32(14.0)
    assert fedc.Computation(ir.parse_module(accumulate.to_text()), accumulate.name)(2.0) == np.float32(14.0)


def test_a_named_variable_in_a_payload_is_refused():
    def with_shared_variable(x):
        handle = tf.raw_ops.VarHandleOp(dtype=tf.float32, shape=[], shared_name="everyone_sees_me")
        tf.raw_ops.AssignVariableOp(resource=handle, value=x)
        return tf.raw_ops.ReadVariableOp(resource=handle, dtype=tf.float32)

    graph = tf.function(with_shared_variable).get_concrete_function(tf.TensorSpec([], tf.float32)).graph
    from fedc import tensorflow_graphs as tg

    payload = tg.make_payload(graph.as_graph_def(), [graph.inputs[0].name], [graph.outputs[0].name])
    with pytest.raises(fedc.FedcError, match=r"VarHandleOp .*'everyone_sees_me', which lives outside the computation"):
        tensorflow_ops.check_payload(payload, "test payload")


def test_capturing_a_variable_created_outside_says_what_to_do():
    outside = tf.Variable(1.0, name="outside_counter")
    with pytest.raises(fedc.FedcError, match=r"captures TensorFlow variable\(s\) outside_counter.* created outside it.*"
                                             r"create the variables inside the tf_computation"):
        @fedc.tf_computation(tf.float32)
        def uses_outside(x):
            return x + outside


def test_a_body_with_variables_that_returns_nothing_says_so():
    with pytest.raises(fedc.FedcError, match=r"tf_computation 'forgets' returns nothing"):
        @fedc.tf_computation(tf.float32)
        def forgets(x):
            tf.Variable(1.0).assign_add(x)


def test_a_failure_while_tracing_with_variables_is_a_fedc_error():
    with pytest.raises(fedc.FedcError, match=r"tf_computation 'bad' failed while being traced by TensorFlow"):
        @fedc.tf_computation(tf.float32)
        def bad(x):
            v = tf.Variable(tf.zeros([3]))
            return v + tf.zeros([4])  # incompatible shapes


def test_batched_sequences_reach_a_graph_whole():
    """The eager path hands a graph its client's batches: full ones then a short last one, or ragged."""
    from fedc import tensorflow_graphs as tg

    t = fedc.SequenceType(fedc.TensorType(np.float32, [None, 2]))
    for shapes in ([3, 3, 1], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [2]):
        elements = [np.full((n, 2), i, np.float32) for i, n in enumerate(shapes)]
        back = [e.numpy() for e in tg.to_dataset(elements, t)]
        assert [b.shape for b in back] == [e.shape for e in elements]
        assert all((b == e).all() for b, e in zip(back, elements))


def test_a_resource_handle_given_as_a_constant_is_refused():
    """A payload may not name someone else's variable with a constant handle (or take one as an input)."""
    from tensorflow.core.framework import resource_handle_pb2, tensor_pb2, types_pb2

    from fedc import tensorflow_graphs as tg

    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [], name="x")
        handle_proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_RESOURCE, resource_handle_val=[
            resource_handle_pb2.ResourceHandleProto(device="/job:localhost/replica:0/task:0/device:CPU:0",
                                                    container="", name="someone_elses_variable")])
        y = x + tf.raw_ops.ReadVariableOp(resource=tf.raw_ops.Placeholder(dtype=tf.resource, shape=[]),
                                          dtype=tf.float32)
    graph_def = graph.as_graph_def()
    for node in graph_def.node:  # the resource placeholder becomes a constant handle
        if node.op == "Placeholder" and node.attr["dtype"].type == types_pb2.DT_RESOURCE:
            node.op = "Const"
            node.attr.pop("shape")
            node.attr["value"].tensor.CopyFrom(handle_proto)
    payload = tg.make_payload(graph_def, [x.name], [y.name])
    with pytest.raises(fedc.FedcError, match=r"has a Const of a TensorFlow resource handle .* names state outside"):
        tensorflow_ops.check_payload(payload, "test payload")
    as_input = tg.make_payload(graph.as_graph_def(), [x.name], [y.name])
    with pytest.raises(fedc.FedcError, match=r"has a Placeholder of a TensorFlow resource handle"):
        tensorflow_ops.check_payload(as_input, "test payload")
