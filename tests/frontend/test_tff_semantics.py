"""TFF's documented rules for decorated Python, which fedc follows: how declared types meet a
function's parameters, computations without declared types, nested zips, and sequence
operations on placed sequences."""

import numpy as np
import pytest

import fedc
from fedc.errors import FedcTypeError

F32 = np.float32
I32 = np.int32
CLIENT_F32 = fedc.FederatedType(F32, fedc.CLIENTS)
CLIENT_I32 = fedc.FederatedType(I32, fedc.CLIENTS)
DECORATORS = [fedc.federated_computation, fedc.tf_computation]


# --------------------------------------------------------------------------
# Declared types and parameters


@pytest.mark.parametrize("decorator", DECORATORS)
def test_one_unnamed_struct_for_several_parameters_is_named_after_them(decorator):
    @decorator(fedc.StructType([I32, F32]))
    def f(a, b):
        return b

    assert str(f.type_signature) == "(<a=int32,b=float32> -> float32)"
    assert f.parameter_names == ("a", "b")
    assert f(1, 2.5) == 2.5
    assert f(b=2.5, a=1) == 2.5


@pytest.mark.parametrize("decorator", DECORATORS)
def test_several_types_for_one_parameter_are_packed_into_one_struct(decorator):
    @decorator(I32, F32)
    def f(x):
        return x[1]

    assert str(f.type_signature) == "(<int32,float32> -> float32)"
    assert f((1, 2.5)) == 2.5


@pytest.mark.parametrize("decorator", DECORATORS)
def test_named_elements_bind_the_parameters_of_their_names(decorator):
    # The declared order is the parameter's; each Python parameter takes its namesake.
    @decorator(fedc.StructType([("b", F32), ("a", I32)]))
    def f(a, b):
        return a, b

    assert str(f.type_signature) == "(<b=float32,a=int32> -> <int32,float32>)"
    assert f(2.5, 1) == (1, 2.5)
    assert f(a=1, b=2.5) == (1, 2.5)


@pytest.mark.parametrize("decorator", DECORATORS)
def test_named_pairs_as_several_declared_types(decorator):
    @decorator(("x", I32), ("y", F32))
    def f(x, y):
        return y

    assert str(f.type_signature) == "(<x=int32,y=float32> -> float32)"


@pytest.mark.parametrize("decorator", DECORATORS)
def test_declared_types_that_do_not_fit_the_parameters_are_refused(decorator):
    kind = decorator.__name__
    with pytest.raises(FedcTypeError, match=rf"{kind} 'f' declares the type <x=int32,y=float32> for 2 "
                                            r"parameters \(a, b\): the elements must be named after the parameters"):

        @decorator(fedc.StructType([("x", I32), ("y", F32)]))
        def f(a, b):
            return a

    with pytest.raises(FedcTypeError, match=rf"{kind} 'g' declares the type <a=int32,float32>"):

        @decorator(fedc.StructType([("a", I32), F32]))
        def g(a, b):
            return a

    with pytest.raises(FedcTypeError, match=r"declares 3 types for 2 parameters \(a, b\)"):

        @decorator(I32, I32, I32)
        def h(a, b):
            return a

    with pytest.raises(FedcTypeError, match=r"'k' takes no parameters, but declares the parameter type int32"):

        @decorator(I32)
        def k():
            return np.int32(1)


# --------------------------------------------------------------------------
# Computations without declared types


def test_an_untyped_federated_computation_is_traced_for_each_argument_type():
    @fedc.federated_computation
    def total(x):
        return fedc.federated_sum(x)

    assert isinstance(total, fedc.PolymorphicComputation)

    @fedc.federated_computation(CLIENT_F32, CLIENT_I32)
    def both(f, i):
        return total(f), total(i), total(f)

    assert str(both.type_signature) == "(<f={float32}@CLIENTS,i={int32}@CLIENTS> -> <float32@SERVER,int32@SERVER,float32@SERVER>)"
    assert both([1.0, 2.5], [3, 4]) == (3.5, 7, 3.5)
    # One traced computation per distinct argument type, reused for the same type.
    module = both.to_ir()
    assert sorted(module.symbols) == ["both", "total", "total_1"]
    assert str(module["total"].type_signature) == "({float32}@CLIENTS -> float32@SERVER)"
    assert str(module["total_1"].type_signature) == "({int32}@CLIENTS -> int32@SERVER)"
    assert total.specialize(CLIENT_F32) is total.specialize(CLIENT_F32)


def test_an_untyped_computation_called_directly_infers_its_argument_types():
    @fedc.federated_computation
    def swap(a, b):
        return b, a

    assert swap(1, 2.5) == (2.5, 1)
    assert swap(b=2.5, a=1) == (2.5, 1)
    # Several parameters take a struct named after them.
    assert str(swap.specialize(fedc.StructType([I32, F32])).type_signature) == "(<a=int32,b=float32> -> <float32,int32>)"
    assert swap.specialize(fedc.StructType([I32, F32])) is swap.specialize(fedc.StructType([("a", I32), ("b", F32)]))

    with pytest.raises(FedcTypeError, match=r"swap is missing argument\(s\) b"):
        swap(1)
    with pytest.raises(FedcTypeError, match=r"swap has no parameter 'c'"):
        swap(1, c=2)


@pytest.mark.parametrize("decorator", DECORATORS)
def test_an_untyped_computation_has_no_type_signature(decorator):
    """TFF's polymorphic computations have no type_signature attribute; fedc says why."""
    @decorator
    def identity(x):
        return x

    with pytest.raises(FedcTypeError, match=rf"{decorator.__name__} 'identity' was declared without types"):
        identity.type_signature
    with pytest.raises(AttributeError):
        identity.type_signature
    assert getattr(identity, "type_signature", None) is None
    assert identity(np.int32(3)) == 3
    assert not hasattr(identity, "type_signature")  # still: each use has its own type
    assert str(identity.specialize(fedc.TensorType(F32)).type_signature) == "(float32 -> float32)"


def test_an_untyped_computation_given_to_an_intrinsic_takes_the_type_it_is_applied_to():
    @fedc.federated_computation
    def scale(v, w):
        return v * w

    @fedc.federated_computation(fedc.FederatedType(fedc.StructType([F32, F32]), fedc.CLIENTS))
    def scaled(pairs):
        return fedc.federated_map(scale, pairs)

    assert str(scaled.type_signature) == "({<float32,float32>}@CLIENTS -> {float32}@CLIENTS)"
    assert scaled([(1.0, 2.0), (3.0, 4.0)]) == [2.0, 12.0]

    with pytest.raises(FedcTypeError, match=r"federated_computation 'scale' takes 2 parameters \(v, w\), "
                                            r"but is applied to a value of type float32"):

        @fedc.federated_computation(CLIENT_F32)
        def wrong(x):
            return fedc.federated_map(scale, x)


# --------------------------------------------------------------------------
# federated_zip of nested structs


NESTED = fedc.StructType([("a", CLIENT_I32), ("b", fedc.StructType([("c", CLIENT_F32)]))])


def test_federated_zip_of_nested_structs():
    @fedc.federated_computation(NESTED)
    def zipped(v):
        return fedc.federated_zip(v)

    assert str(zipped.type_signature) == (
        "(<a={int32}@CLIENTS,b=<c={float32}@CLIENTS>> -> {<a=int32,b=<c=float32>>}@CLIENTS)"
    )
    assert zipped({"a": [1, 2], "b": {"c": [0.5, 1.5]}}) == [{"a": 1, "b": {"c": 0.5}}, {"a": 2, "b": {"c": 1.5}}]
    # The IR stays flat: the inner struct is zipped first.
    text = zipped.to_text(locations=False)
    assert "fed.zip_at_clients(%v[1]) : (<c={float32}@CLIENTS> -> {<c=float32>}@CLIENTS)" in text
    assert fedc.ir.parse_module(zipped.to_text()) == zipped.to_ir()

    server = fedc.FederatedType(I32, fedc.SERVER)

    @fedc.federated_computation(server, server)
    def at_server(x, y):
        return fedc.federated_zip(((x,), {"y": y, "none": ()}))

    assert str(at_server.type_signature.result) == "<<int32>,<y=int32,none=<>>>@SERVER"
    assert at_server(1, 2) == ((1,), {"y": 2, "none": ()})


def test_a_nested_struct_given_where_a_placed_value_is_expected_is_zipped():
    @fedc.federated_computation(NESTED)
    def total(v):
        return fedc.federated_map(lambda s: fedc.ops.cast(s.a, dtype=F32) + s.b.c, v)

    assert str(total.type_signature.result) == "{float32}@CLIENTS"
    assert total({"a": [1, 2], "b": {"c": [0.5, 1.5]}}) == [1.5, 3.5]


def test_federated_zip_refuses_values_not_placed_alike():
    mixed = fedc.StructType([CLIENT_I32, fedc.StructType([fedc.FederatedType(F32, fedc.SERVER)])])
    with pytest.raises(FedcTypeError, match=r"fedc.federated_zip: expected a struct \(structs may nest\) of values "
                                            r"all placed at CLIENTS or all at SERVER, got <\{int32\}@CLIENTS,<float32@SERVER>>"):

        @fedc.federated_computation(mixed)
        def bad(v):
            return fedc.federated_zip(v)

    with pytest.raises(FedcTypeError, match=r"got <\{int32\}@CLIENTS,int32>"):

        @fedc.federated_computation(CLIENT_I32, I32)
        def unplaced(a, b):
            return fedc.federated_zip((a, b))


# --------------------------------------------------------------------------
# Sequence operations on placed sequences

CLIENT_SEQ = fedc.FederatedType(fedc.SequenceType(I32), fedc.CLIENTS)
DATA = [[1, 2, 3], [], [10]]


def test_sequence_operations_on_a_placed_sequence_apply_to_each_member():
    @fedc.federated_computation(CLIENT_SEQ)
    def per_client(d):
        return (
            fedc.sequence_sum(d),
            fedc.sequence_map(lambda x: x * 2, d),
            fedc.sequence_reduce(d, np.int32(100), lambda acc, x: acc + x),
        )

    assert str(per_client.type_signature) == "({int32*}@CLIENTS -> <{int32}@CLIENTS,{int32*}@CLIENTS,{int32}@CLIENTS>)"
    sums, doubled, reduced = per_client(DATA)
    assert sums == [6, 0, 10]
    assert doubled == [[2, 4, 6], [], [20]]
    assert reduced == [106, 100, 110]
    # The frontend maps a local function over the clients; the sequence intrinsics stay local.
    text = per_client.to_text(locations=False)
    assert "%seq_sum = fed.map(%0, %d) : (<(int32* -> int32),{int32*}@CLIENTS> -> {int32}@CLIENTS)" in text
    assert fedc.ir.parse_module(per_client.to_text()) == per_client.to_ir()


def test_sequence_reduce_takes_a_zero_placed_with_the_sequences():
    @fedc.federated_computation(CLIENT_SEQ, fedc.FederatedType(I32, fedc.SERVER))
    def from_server_zero(d, zero):
        return fedc.sequence_reduce(d, fedc.federated_broadcast(zero), lambda acc, x: acc + x)

    assert from_server_zero(DATA, 5) == [11, 5, 15]

    with pytest.raises(FedcTypeError, match=r"the zero of a sequence placed at CLIENTS must be local or placed "
                                            r"there too, but has type int32@SERVER"):

        @fedc.federated_computation(CLIENT_SEQ, fedc.FederatedType(I32, fedc.SERVER))
        def misplaced(d, zero):
            return fedc.sequence_reduce(d, zero, lambda acc, x: acc + x)


def test_sequence_operations_on_a_server_sequence_apply_at_the_server():
    @fedc.federated_computation(fedc.FederatedType(fedc.SequenceType(F32), fedc.SERVER))
    def at_server(d):
        return fedc.sequence_sum(fedc.sequence_map(lambda x: x * 0.5, d))

    assert str(at_server.type_signature) == "(float32*@SERVER -> float32@SERVER)"
    assert at_server([1.0, 2.0, 3.0]) == 3.0
    assert "fed.apply(" in at_server.to_text()


def test_sequence_operations_on_other_placed_values_are_refused():
    with pytest.raises(FedcTypeError, match=r"fedc.sequence_map: the mapped value must be a sequence \(T\*, or placed: "
                                            r"\{T\*\}@CLIENTS, T\*@SERVER\), but has type \{int32\}@CLIENTS"):

        @fedc.federated_computation(CLIENT_I32)
        def not_a_sequence(x):
            return fedc.sequence_map(lambda v: v, x)

    with pytest.raises(FedcTypeError, match=r"sequence_sum .* the elements must be numeric tensors"):

        @fedc.federated_computation(fedc.FederatedType(fedc.SequenceType(np.bool_), fedc.CLIENTS))
        def not_numeric(d):
            return fedc.sequence_sum(d)


def test_the_fed_language_zips_nested_structs_and_maps_sequence_operations():
    import textwrap

    from fedc.computation import Computation
    from fedc.frontend import fed

    module = fed.parse(textwrap.dedent("""
        computation f(d: {int32*}@CLIENTS, a: {int32}@CLIENTS, c: {float32}@CLIENTS) {
          return <sequence_sum(d), sequence_map(fn(e) -> e * 2, d), sequence_reduce(d, 0, fn(acc, e) -> maximum(acc, e)),
                  federated_zip(<a=a, b=<c=c>>)>
        }
    """), filename="t.fed")
    fedc.ir.verify(module)
    assert str(module["f"].type_signature.result) == (
        "<{int32}@CLIENTS,{int32*}@CLIENTS,{int32}@CLIENTS,{<a=int32,b=<c=float32>>}@CLIENTS>"
    )
    sums, doubled, largest, zipped = Computation(module, "f")([[1, 2], [5]], [1, 2], [0.5, 1.5])
    assert sums == [3, 5] and doubled == [[2, 4], [10]] and largest == [2, 5]
    assert zipped == [{"a": 1, "b": {"c": 0.5}}, {"a": 2, "b": {"c": 1.5}}]

    with pytest.raises(fedc.FedcError, match=r"t.fed:2:35: sequence_map: the mapped value must be a sequence"):
        fed.parse("computation f(x: {int32}@CLIENTS) {\n  return sequence_map(fn(e) -> e, x)\n}\n", filename="t.fed")
