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
