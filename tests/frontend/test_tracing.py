"""Tracing decorated Python into IR: decorator forms, structs, selections, calls, and misuse."""

import collections
import dataclasses

import attrs
import numpy as np
import pytest

import fedc
from fedc import ir
from fedc.errors import FedcError, FedcTypeError

F32 = np.float32
CLIENT_F32 = fedc.FederatedType(F32, fedc.CLIENTS)


def test_no_argument_one_argument_several_arguments():
    @fedc.federated_computation
    def constant():
        return fedc.federated_value(np.int32(3), fedc.SERVER)

    @fedc.federated_computation(CLIENT_F32)
    def one(x):
        return fedc.federated_sum(x)

    @fedc.federated_computation(CLIENT_F32, fedc.FederatedType(np.int32, fedc.SERVER))
    def two(values, count):
        return fedc.federated_sum(values), count

    assert str(constant.type_signature) == "( -> int32@SERVER)"
    assert str(one.type_signature) == "({float32}@CLIENTS -> float32@SERVER)"
    assert str(two.type_signature) == "(<values={float32}@CLIENTS,count=int32@SERVER> -> <float32@SERVER,int32@SERVER>)"
    assert two.parameter_names == ("values", "count")
    assert constant() == 3
    assert two([1.0, 2.0], 7) == (3.0, 7)
    assert two(count=7, values=[1.0]) == (1.0, 7)


def test_one_struct_type_unpacks_into_several_parameters():
    @fedc.federated_computation(fedc.StructType([CLIENT_F32, CLIENT_F32]))
    def pair(a, b):
        return fedc.federated_mean(a), fedc.federated_mean(b)

    assert pair([1.0, 3.0], [5.0, 7.0]) == (2.0, 6.0)


@dataclasses.dataclass
class DataPoint:
    x: object
    y: object


@attrs.define
class AttrsPoint:
    x: object
    y: object


@pytest.mark.parametrize(
    "make, container",
    [
        (lambda a, b: (a, b), tuple),
        (lambda a, b: [a, b], list),
        (lambda a, b: {"x": a, "y": b}, dict),
        (lambda a, b: collections.namedtuple("P", "x y")(a, b), "namedtuple"),
        (lambda a, b: DataPoint(a, b), DataPoint),
        (lambda a, b: AttrsPoint(a, b), AttrsPoint),
    ],
)
def test_python_containers_become_structs(make, container):
    @fedc.federated_computation(CLIENT_F32)
    def f(v):
        return make(fedc.federated_mean(v), fedc.federated_sum(v))

    result_type = f.type_signature.result
    assert isinstance(result_type, fedc.StructType) and len(result_type) == 2
    out = f([1.0, 3.0])
    if container == "namedtuple":
        assert out._fields == ("x", "y") and tuple(out) == (2.0, 4.0)
    elif container in (tuple, list):
        assert isinstance(out, container) and list(out) == [2.0, 4.0]
        assert str(result_type) == "<float32@SERVER,float32@SERVER>"
    else:
        assert str(result_type) == "<x=float32@SERVER,y=float32@SERVER>"
        values = out if isinstance(out, dict) else {"x": out.x, "y": out.y}
        assert values == {"x": 2.0, "y": 4.0}
        assert container is dict or isinstance(out, container)


def test_selection_by_name_and_index_and_on_placed_structs():
    member = fedc.StructType([("a", F32), ("b", np.int32)])

    @fedc.federated_computation(fedc.FederatedType(member, fedc.CLIENTS))
    def f(v):
        return fedc.federated_mean(v.a), fedc.federated_sum(v[1])

    assert str(f.type_signature) == "({<a=float32,b=int32>}@CLIENTS -> <float32@SERVER,int32@SERVER>)"
    assert f([{"a": 1.0, "b": 2}, {"a": 3.0, "b": 5}]) == (2.0, 7)
    text = f.to_text()
    assert "fed.map" in text  # the selection on a placed struct is mapped over the clients

    with pytest.raises(FedcTypeError, match=r"has no element named 'c'; its names are a, b"):

        @fedc.federated_computation(fedc.FederatedType(member, fedc.CLIENTS))
        def g(v):
            return fedc.federated_mean(v.c)


def test_calls_between_computations_become_symbols():
    @fedc.tf_computation(F32)
    def add_half(x):
        return x + 0.5

    @fedc.federated_computation(CLIENT_F32)
    def add_half_on_clients(x):
        return fedc.federated_map(add_half, x)

    @fedc.federated_computation(CLIENT_F32)
    def mean_plus_half(x):
        return fedc.federated_mean(add_half_on_clients(x))

    module = mean_plus_half.to_ir()
    assert module.symbols == ["add_half", "add_half_on_clients", "mean_plus_half"]
    ir.verify(module)
    text = mean_plus_half.to_text()
    assert "fedc.call @add_half_on_clients(%x)" in text
    assert mean_plus_half([1.0, 2.0]) == 2.0
    # The traced IR round-trips through text and protobuf and still runs the same.
    assert ir.parse_module(text) == module
    assert ir.deserialize(mean_plus_half.serialize()) == module


def _named(name, fn):
    fn.__name__ = name
    return fn


def test_callees_with_clashing_names_are_renamed_and_identical_ones_shared():
    # Two different tf_computations both named "step", one traced twice identically.
    plus = fedc.tf_computation(F32)(_named("step", lambda x: x + 1.0))
    times = fedc.tf_computation(F32)(_named("step", lambda x: x * 3.0))
    plus_again = fedc.tf_computation(F32)(_named("step", lambda x: x + 1.0))
    server_f32 = fedc.FederatedType(F32, fedc.SERVER)

    @fedc.federated_computation(server_f32)
    def inner(x):
        return fedc.federated_map(times, fedc.federated_map(plus, x))

    # The outer computation is also named like a callee of its callee.
    @fedc.federated_computation(server_f32)
    def step(x):
        return fedc.federated_map(plus_again, inner(x))

    module = step.to_ir()
    assert module.symbols == ["step_1", "step_2", "inner", "step"]
    ir.verify(module)
    assert "fedc.call @inner(" in step.to_text()
    assert step.ir is module["step"]
    assert step(1.0) == 7.0  # ((1 + 1) * 3) + 1
    # inner's own module keeps its own names for the same callees.
    assert inner.to_ir().symbols == ["step", "step_1", "inner"]
    assert ir.parse_module(step.to_text()) == module


def test_a_diamond_of_calls_keeps_one_copy_of_the_shared_callee():
    server_f32 = fedc.FederatedType(F32, fedc.SERVER)
    base = fedc.federated_computation(server_f32)(_named("base", lambda x: x))
    left = fedc.federated_computation(server_f32)(_named("left", lambda x: base(x)))
    right = fedc.federated_computation(server_f32)(_named("right", lambda x: base(base(x))))
    top = fedc.federated_computation(server_f32)(_named("top", lambda x: right(left(x))))
    assert top.to_ir().symbols == ["base", "left", "right", "top"]
    assert top(4.0) == 4.0


def test_a_long_chain_of_computations_traces_and_runs():
    # Each computation calls the previous one: tracing records only direct callees,
    # so the chain costs its length (a 2,000-long chain once took minutes).
    server_f32 = fedc.FederatedType(F32, fedc.SERVER)
    def calling(callee, name):
        return fedc.federated_computation(server_f32)(_named(name, lambda x: callee(x)))

    previous = fedc.federated_computation(server_f32)(_named("c0", lambda x: x))
    for i in range(1, 2000):
        previous = calling(previous, f"c{i}")
    module = previous.to_ir()
    assert len(module) == 2000 and module.symbols[0] == "c0" and module.symbols[-1] == "c1999"
    ir.verify(module)


def test_traced_ir_is_located_at_the_users_lines():
    @fedc.federated_computation(CLIENT_F32)
    def located(x):
        return fedc.federated_mean(x)

    text = located.to_text()
    assert 'loc("' in text and "test_tracing.py" in text


def test_polymorphic_tf_computation_is_specialised_where_it_is_used():
    @fedc.tf_computation
    def double(x):
        return x * 2

    @fedc.federated_computation(CLIENT_F32, fedc.FederatedType(np.int32, fedc.CLIENTS))
    def both(f, i):
        return fedc.federated_map(double, f), fedc.federated_map(double, i)

    assert str(both.type_signature.result) == "<{float32}@CLIENTS,{int32}@CLIENTS>"
    assert both([1.5], [2]) == ([3.0], [4])
    assert double(np.float32(2.0)) == 4.0
    # As in TFF, a computation without declared types has no type_signature attribute (a clear error here).
    with pytest.raises(FedcTypeError, match="tf_computation 'double' was declared without types"):
        double.type_signature
    assert not hasattr(double, "type_signature")


def test_python_functions_as_local_functions_and_local_ops():
    @fedc.federated_computation(CLIENT_F32)
    def clipped_mean(x):
        return fedc.federated_mean(fedc.federated_map(lambda v: fedc.ops.clip(v, 0.0, 1.0), x))

    assert clipped_mean([-1.0, 0.5, 3.0]) == pytest.approx(0.5)
    text = clipped_mean.to_text()
    assert "local.clip" in text and "fedc.lambda" in text


def test_tf_computation_over_a_dataset_and_structs():
    tf = pytest.importorskip("tensorflow")
    element = fedc.StructType([("x", fedc.TensorType(F32, [None])), ("y", np.int32)])

    @fedc.tf_computation(fedc.SequenceType(element))
    def total(ds):
        return ds.reduce(tf.constant(0.0), lambda acc, e: acc + tf.reduce_sum(e["x"]) + tf.cast(e["y"], tf.float32))

    assert str(total.type_signature) == "(<x=float32[?],y=int32>* -> float32)"
    data = [{"x": np.array([1.0, 2.0], F32), "y": 1}, {"x": np.array([3.0], F32), "y": 2}]
    assert total(data) == 9.0
    assert total(tf.data.Dataset.from_tensor_slices({"x": [[1.0, 2.0]], "y": [1]})) == 4.0

    @fedc.tf_computation(fedc.StructType([("b", F32), ("a", np.int32)]))
    def named_out(s):
        return {"sum": s["b"] + tf.cast(s["a"], tf.float32), "a": s["a"]}

    assert str(named_out.type_signature) == "(<b=float32,a=int32> -> <sum=float32,a=int32>)"
    assert named_out({"b": 1.5, "a": 2}) == {"sum": 3.5, "a": 2}


def test_misuse_is_explained():
    with pytest.raises(FedcTypeError, match="returned None"):

        @fedc.federated_computation(CLIENT_F32)
        def nothing(x):
            fedc.federated_mean(x)

    with pytest.raises(FedcTypeError, match=r"\*args and \*\*kwargs cannot be traced"):

        @fedc.federated_computation(CLIENT_F32)
        def varargs(*xs):
            return xs

    with pytest.raises(FedcTypeError, match=r"cannot apply a local op to the placed value of type \{float32\}@CLIENTS; use fedc.federated_map"):

        @fedc.federated_computation(CLIENT_F32)
        def arithmetic(x):
            return x + 1.0

    with pytest.raises(FedcError, match="has no truth value while tracing"):

        @fedc.federated_computation(fedc.FederatedType(np.bool_, fedc.SERVER))
        def branch(flag):
            if flag:
                return flag
            return flag

    with pytest.raises(FedcTypeError, match=r"declares one type \{float32\}@CLIENTS for 2 parameters \(a, b\)"):

        @fedc.federated_computation(CLIENT_F32)
        def two_params(a, b):
            return a


def test_wrong_number_of_call_arguments():
    @fedc.federated_computation(CLIENT_F32)
    def f(x):
        return fedc.federated_mean(x)

    with pytest.raises(FedcTypeError, match=r"f takes one argument of type \{float32\}@CLIENTS, got 2 arguments"):
        f([1.0], [2.0])

    @fedc.federated_computation(CLIENT_F32, CLIENT_F32)
    def g(a, b):
        return fedc.federated_mean(a)

    with pytest.raises(FedcTypeError, match=r"g is missing argument\(s\) b"):
        g([1.0])
    with pytest.raises(FedcTypeError, match=r"g has no parameter 'c'; its parameters are a, b"):
        g([1.0], c=[2.0])


def test_calling_a_computation_inside_a_trace_checks_named_arguments():
    @fedc.federated_computation(CLIENT_F32, CLIENT_F32)
    def pair(a, b):
        return fedc.federated_mean(a), fedc.federated_mean(b)

    with pytest.raises(FedcTypeError, match=r"pair has no parameter 'c'; its parameters are a, b"):

        @fedc.federated_computation(CLIENT_F32)
        def unknown_keyword(x):
            return pair(x, c=x)

    with pytest.raises(FedcTypeError, match=r"pair got parameter 'a' twice"):

        @fedc.federated_computation(CLIENT_F32)
        def repeated(x):
            return pair(x, a=x)

    @fedc.federated_computation(CLIENT_F32)
    def by_keyword(x):
        return pair(b=x, a=x)

    assert by_keyword([1.0, 3.0]) == (2.0, 2.0)


def test_a_one_parameter_computation_takes_only_its_own_keyword():
    @fedc.federated_computation(CLIENT_F32)
    def average(t):
        return fedc.federated_mean(t)

    assert average(t=[1.0, 3.0]) == 2.0
    for call in (lambda: average(temps=[1.0]), lambda: average([1.0], t=[1.0])):
        with pytest.raises(FedcTypeError, match="average has one parameter 't' of type"):
            call()

    @fedc.federated_computation(fedc.StructType([("a", np.float32), ("b", np.float32)]))
    def add(pair):
        return fedc.federated_value(pair, fedc.SERVER)

    assert add(a=1.0, b=2.0) == {"a": 1.0, "b": 2.0}
    with pytest.raises(FedcTypeError, match="'a', 'c'"):
        add(a=1.0, c=2.0)

    with pytest.raises(FedcTypeError, match="cannot take keyword argument\\(s\\) 'temps'"):
        @fedc.federated_computation
        def outer():
            return average(temps=fedc.federated_value(np.float32(1.0), fedc.CLIENTS))
