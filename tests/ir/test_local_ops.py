"""Local (placement-free) tensor ops: one type rule each, struct-wise application."""

import numpy as np
import pytest

import fedc
from fedc import ir
from fedc.ir import Intrinsic, IntrinsicKind, Reference, Struct, intrinsic_call
from fedc.ir.local_ops import LOCAL_OPS, broadcast_shapes
from fedc.types import parse

BINARY_NUMERIC = ["add", "subtract", "multiply", "pow"]
BINARY_REAL = ["floor_divide", "mod", "maximum", "minimum"]
COMPARISONS = ["less", "less_equal", "greater", "greater_equal"]
EQUALITIES = ["equal", "not_equal"]
LOGICAL = ["logical_and", "logical_or"]
UNARY = {
    "negative": "numeric", "abs": "real", "sign": "real", "square": "numeric",
    "sqrt": "floating", "exp": "floating", "log": "floating", "logical_not": "bool",
}
REDUCTIONS = {"reduce_sum": "numeric", "reduce_mean": "floating", "reduce_max": "real", "reduce_min": "real"}
OTHERS = ["divide", "where", "clip", "cast", "reshape", "matmul", "zeros", "ones", "check", "random_normal"]
ALL_LOCAL = set(BINARY_NUMERIC + BINARY_REAL + COMPARISONS + EQUALITIES + LOGICAL + OTHERS) | set(UNARY) | set(REDUCTIONS)


def ref(type_text, name="v"):
    return Reference(name, parse(type_text))


def pair(*type_texts):
    return Struct([ref(t, f"x{i}") for i, t in enumerate(type_texts)])


def result(uri, argument=None, **attrs):
    return str(intrinsic_call(uri, argument, **attrs).type_signature)


def error(uri, argument=None, **attrs):
    with pytest.raises(fedc.FedcTypeError) as info:
        intrinsic_call(uri, argument, **attrs)
    return str(info.value)


def test_the_tested_ops_are_exactly_the_registered_local_ops():
    assert {d.uri for d in LOCAL_OPS} == ALL_LOCAL
    assert {d.uri for d in ir.all_definitions() if d.kind is IntrinsicKind.LOCAL} == ALL_LOCAL
    for d in LOCAL_OPS:
        assert not d.is_federated and not d.secure and d.doc


# --------------------------------------------------------------------------
# Broadcasting


@pytest.mark.parametrize(
    "a, b, expected",
    [
        ((), (), ()),
        ((2, 3), (3,), (2, 3)),
        ((2, 1), (1, 4), (2, 4)),
        ((5, 1, 3), (4, 1), (5, 4, 3)),
        ((None, 3), (5, 1), (5, 3)),
        ((None,), (1,), (None,)),
        ((1,), (None,), (None,)),
        ((None,), (None,), (None,)),
        ((None,), (4,), (4,)),
        ((0,), (1,), (0,)),
        (None, (3,), None),
        ((3,), None, None),
    ],
)
def test_broadcast_shapes(a, b, expected):
    assert broadcast_shapes(a, b) == expected


@pytest.mark.parametrize("a, b", [((2, 3), (4,)), ((2,), (3,)), ((None, 2), (3,))])
def test_broadcast_shapes_mismatch(a, b):
    with pytest.raises(fedc.FedcTypeError, match="do not broadcast"):
        broadcast_shapes(a, b)


# --------------------------------------------------------------------------
# Binary element-wise ops


@pytest.mark.parametrize("uri", BINARY_NUMERIC + BINARY_REAL + ["divide"])
def test_binary_arithmetic_broadcasts(uri):
    assert result(uri, pair("float32[2,3]", "float32[3]")) == "float32[2,3]"
    assert result(uri, pair("float32[?,3]", "float32[5,1]")) == "float32[5,3]"
    assert result(uri, pair("float32[?,3]", "float32")) == "float32[?,3]"
    assert result(uri, pair("float32[?]", "float32[*]")) == "float32[*]"
    assert result(uri, pair("float64", "float64")) == "float64"


@pytest.mark.parametrize("uri", BINARY_NUMERIC + BINARY_REAL)
def test_binary_arithmetic_on_integers(uri):
    assert result(uri, pair("int32[4]", "int32[1]")) == "int32[4]"


@pytest.mark.parametrize("uri", BINARY_NUMERIC + BINARY_REAL + COMPARISONS + EQUALITIES + ["divide"])
def test_binary_dtype_mismatch_suggests_cast(uri):
    other = "float64" if uri == "divide" else "int32"
    message = error(uri, pair("float32[2,3]", f"{other}[3]"))
    signature = ir.lookup(uri).signature
    assert message == (
        f"{uri} expects {signature}; got an argument of type <float32[2,3],{other}[3]>: "
        f"operands must have the same dtype, but have float32 and {other} (use cast)"
    )


@pytest.mark.parametrize("uri", BINARY_NUMERIC + BINARY_REAL + COMPARISONS + EQUALITIES + LOGICAL + ["divide"])
def test_binary_shape_mismatch(uri):
    dtype = "bool" if uri in LOGICAL else "float32"
    message = error(uri, pair(f"{dtype}[2,3]", f"{dtype}[4]"))
    assert f"{uri} expects" in message
    assert f"shapes [2,3] and [4] do not broadcast" in message


@pytest.mark.parametrize("uri", BINARY_NUMERIC + ["divide", "less", "logical_and", "equal"])
def test_binary_ops_need_an_unnamed_pair(uri):
    for argument in [ref("float32"), pair("float32"), pair("float32", "float32", "float32"),
                     Struct([("a", ref("float32")), ("b", ref("float32"))])]:
        message = error(uri, argument)
        assert f"got an argument of type {argument.type_signature}: the argument is an unnamed struct of 2 operands" in message


def test_divide_needs_floating_point():
    assert result("divide", pair("complex64", "complex64")) == "complex64"
    assert "operands must be floating-point tensors, not int32" in error("divide", pair("int32", "int32"))


@pytest.mark.parametrize("uri", BINARY_NUMERIC)
def test_numeric_ops_reject_bool_and_str(uri):
    assert "operands must be numeric tensors, not bool" in error(uri, pair("bool", "bool"))
    assert "operands must be numeric tensors, not str" in error(uri, pair("str", "str"))
    assert result(uri, pair("complex128", "complex128")) == "complex128"


@pytest.mark.parametrize("uri", BINARY_REAL)
def test_real_ops_reject_complex(uri):
    assert "operands must be real numeric tensors, not complex64" in error(uri, pair("complex64", "complex64"))


@pytest.mark.parametrize("uri", COMPARISONS)
def test_comparisons_give_bool(uri):
    assert result(uri, pair("float32[3]", "float32")) == "bool[3]"
    assert result(uri, pair("int32[?,2]", "int32[2]")) == "bool[?,2]"
    assert "real numeric tensors, not complex64" in error(uri, pair("complex64", "complex64"))
    assert "not str" in error(uri, pair("str", "str"))


@pytest.mark.parametrize("uri", EQUALITIES)
def test_equalities_accept_any_dtype(uri):
    assert result(uri, pair("str[2]", "str")) == "bool[2]"
    assert result(uri, pair("bool", "bool")) == "bool"
    assert result(uri, pair("complex64[3]", "complex64[3]")) == "bool[3]"
    assert "same dtype" in error(uri, pair("str", "int32"))


@pytest.mark.parametrize("uri", LOGICAL)
def test_logical_binary_ops(uri):
    assert result(uri, pair("bool[2]", "bool")) == "bool[2]"
    assert "operands must be bool tensors, not int32" in error(uri, pair("int32", "int32"))


def test_binary_ops_reject_non_local_operands():
    message = error("add", pair("{float32}@CLIENTS", "{float32}@CLIENTS"))
    assert "local ops work on tensors and structs of tensors, not on {float32}@CLIENTS" in message
    assert "not on float32*" in error("add", pair("float32*", "float32*"))
    assert "not on (float32 -> float32)" in error("add", pair("(float32 -> float32)", "float32"))


# --------------------------------------------------------------------------
# Struct-wise application


def test_add_of_two_structs():
    t = "<w=float32[784,10],b=float32[10]>"
    assert result("add", pair(t, t)) == t
    assert result("add", pair("<float32,<int32[2],int32>>", "<float32,<int32[2],int32[2]>>")) == "<float32,<int32[2],int32[2]>>"


def test_multiply_struct_by_scalar_either_side():
    t = "<w=float32[784,10],b=float32[10]>"
    assert result("multiply", pair(t, "float32")) == t
    assert result("multiply", pair("float32", t)) == t
    assert result("multiply", pair("<a=float32[3],b=<float32[2,3]>>", "float32[3]")) == "<a=float32[3],b=<float32[2,3]>>"


@pytest.mark.parametrize(
    "a, b",
    [
        ("<w=float32[2],b=float32>", "<w=float32[2],c=float32>"),
        ("<w=float32[2],b=float32>", "<float32[2],float32>"),
        ("<float32[2],float32>", "<float32[2]>"),
        ("<float32,<float32,float32>>", "<float32,<float32>>"),
    ],
)
def test_mismatched_struct_structures_are_rejected(a, b):
    message = error("add", pair(a, b))
    assert "do not have the same structure" in message
    assert f"got an argument of type <{a},{b}>" in message


def test_struct_wise_dtype_mismatch_names_the_leaves():
    message = error("multiply", pair("<w=float32[2],b=int32>", "float32"))
    assert "operands must have the same dtype, but have int32 and float32 (use cast)" in message


def test_unary_struct_wise():
    assert result("negative", ref("<a=float32[2],int32>")) == "<a=float32[2],int32>"
    assert result("sqrt", ref("<float32,<float64[3]>>")) == "<float32,<float64[3]>>"
    assert "floating-point tensors, not int32" in error("sqrt", ref("<float32,int32>"))


# --------------------------------------------------------------------------
# Unary element-wise ops

_VALID_DTYPE = {"numeric": "int32", "real": "float64", "floating": "float32", "bool": "bool"}
_INVALID_DTYPE = {"numeric": "bool", "real": "complex64", "floating": "int32", "bool": "float32"}
_WORD = {"numeric": "numeric", "real": "real numeric", "floating": "floating-point", "bool": "bool"}


@pytest.mark.parametrize("uri, kind", sorted(UNARY.items()))
def test_unary_ops(uri, kind):
    dtype = _VALID_DTYPE[kind]
    assert result(uri, ref(f"{dtype}[?,3]")) == f"{dtype}[?,3]"
    assert result(uri, ref(f"{dtype}[*]")) == f"{dtype}[*]"
    bad = _INVALID_DTYPE[kind]
    assert error(uri, ref(f"{bad}[2]")) == (
        f"{uri} expects (T -> T); got an argument of type {bad}[2]: "
        f"operands must be {_WORD[kind]} tensors, not {bad}[2]"
    )
    assert "not on int32@SERVER" in error(uri, ref("int32@SERVER"))
    assert "it needs an argument" in error(uri)


# --------------------------------------------------------------------------
# where, clip


def test_where():
    assert result("where", pair("bool[3]", "float32[3]", "float32")) == "float32[3]"
    assert result("where", pair("bool[?,1]", "int32[4]", "int32[1]")) == "int32[?,4]"
    assert result("where", pair("bool", "<a=float32,b=int32[2]>", "<a=float32,b=int32[2]>")) == "<a=float32,b=int32[2]>"
    assert "operands must be bool tensors, not int32[3]" in error("where", pair("int32[3]", "float32[3]", "float32"))
    assert "the two branches must have the same dtype, not float32[3] and int32" in error(
        "where", pair("bool[3]", "float32[3]", "int32")
    )
    assert "do not broadcast" in error("where", pair("bool[2]", "float32[3]", "float32[3]"))
    assert "unnamed struct of 3 operands" in error("where", pair("bool[3]", "float32[3]"))


def test_clip():
    assert result("clip", pair("float32[3]", "float32", "float32")) == "float32[3]"
    assert result("clip", pair("int32[2,3]", "int32[3]", "int32[1,1]")) == "int32[2,3]"
    assert result("clip", pair("<float32[2],float32>", "float32", "float32")) == "<float32[2],float32>"
    assert "the bounds float32[3] and float32 must broadcast to the value's shape float32" in error(
        "clip", pair("float32", "float32[3]", "float32")
    )
    assert "the value and its bounds must have the same dtype, not float32[3], int32, float32" in error(
        "clip", pair("float32[3]", "int32", "float32")
    )
    assert "real numeric tensors, not complex64" in error("clip", pair("complex64", "complex64", "complex64"))
    assert "unnamed struct of 3 operands" in error("clip", ref("float32"))


# --------------------------------------------------------------------------
# cast, reshape, matmul


def test_cast():
    assert result("cast", ref("float32[3]"), dtype="int32") == "int32[3]"
    assert result("cast", ref("<float32[3],int32>"), dtype=np.int64) == "<int64[3],int64>"
    assert result("cast", ref("float32[*]"), dtype=np.dtype("bool")) == "bool[*]"
    call = intrinsic_call("cast", ref("float32"), dtype=np.float64)
    assert call.function.attrs == (("dtype", "float64"),)
    # dtype spellings are canonicalized
    assert call.function == intrinsic_call("cast", ref("float32"), dtype="float64").function
    assert intrinsic_call("cast", ref("float64"), dtype=float).function.attrs == (("dtype", "float32"),)


def test_cast_errors():
    assert error("cast", ref("float32[3]")) == (
        "cast expects (T -> T with dtype); got an argument of type float32[3]: cast needs the attribute dtype"
    )
    assert "cast attribute dtype: unknown dtype 'flot'" in error("cast", ref("float32"), dtype="flot")
    assert "cast has no attribute 'dtyp' (its attributes: dtype)" in error("cast", ref("float32"), dtyp="int32")
    assert "not on {float32}@CLIENTS" in error("cast", ref("{float32}@CLIENTS"), dtype="int32")
    assert "cast converts numbers and bools, not str[2] to int32" in error("cast", ref("str[2]"), dtype="int32")
    assert "cast converts numbers and bools, not float32 to str" in error("cast", ref("float32"), dtype="str")


@pytest.mark.parametrize(
    "source, shape, expected",
    [
        ("float32[2,3]", [-1], "float32[6]"),
        ("float32[2,3]", [3, -1], "float32[3,2]"),
        ("float32[2,3]", (6, 1), "float32[6,1]"),
        ("float32[2,3]", [1, -1, 2], "float32[1,3,2]"),
        ("float32[1]", [], "float32"),
        ("float32[?,3]", [-1, 3], "float32[?,3]"),
        ("float32[?,3]", [3, 4], "float32[3,4]"),
        ("float32[*]", [2, -1], "float32[2,?]"),
        ("int32[0,3]", [3, 0], "int32[3,0]"),
        ("<float32[2,3]>", None, None),
    ],
)
def test_reshape(source, shape, expected):
    if expected is None:
        assert "the operand must be a tensor" in error("reshape", ref(source), shape=[6])
        return
    assert result("reshape", ref(source), shape=shape) == expected


@pytest.mark.parametrize(
    "source, shape, message",
    [
        ("float32[2,3]", [4, -1], "cannot reshape float32[2,3] to [4, -1]"),
        ("float32[2,3]", [5], "cannot reshape float32[2,3] (6 elements) to [5] (5 elements)"),
        ("float32[2,3]", [-1, -1], "the target shape [-1, -1] may have at most one -1"),
        ("float32[2,3]", [0, -1], "cannot reshape float32[2,3] to [0, -1]"),
    ],
)
def test_reshape_errors(source, shape, message):
    assert error("reshape", ref(source), shape=shape) == (
        f"reshape expects (T -> T with shape); got an argument of type {source}: {message}"
    )


def test_reshape_attribute_checks():
    assert "reshape needs the attribute shape" in error("reshape", ref("float32[2]"))
    assert "reshape attribute shape: shape is a list of non-negative ints (and at most one -1), not [2, -2]" in error(
        "reshape", ref("float32[4]"), shape=[2, -2]
    )
    assert "not 'abc'" in error("reshape", ref("float32[4]"), shape="abc")
    assert intrinsic_call("reshape", ref("float32[6]"), shape=[2, 3]).function.attrs == (("shape", (2, 3)),)


def test_matmul():
    assert result("matmul", pair("float32[2,3]", "float32[3,4]")) == "float32[2,4]"
    assert result("matmul", pair("float32[?,784]", "float32[784,10]")) == "float32[?,10]"
    assert result("matmul", pair("int32[2,?]", "int32[5,?]")) == "int32[2,?]"


@pytest.mark.parametrize(
    "a, b, message",
    [
        ("float32[2,3]", "float32[4,4]", "matmul inner dimensions differ: float32[2,3] and float32[4,4]"),
        ("float32[3]", "float32[3,4]", "matmul multiplies matrices (rank 2), not float32[3] and float32[3,4]"),
        ("float32[2,3]", "int32[3,4]", "matmul operands must have the same dtype, not float32[2,3] and int32[3,4]"),
        ("bool[2,3]", "bool[3,4]", "operands must be numeric tensors, not bool[2,3]"),
        ("<float32[2,3]>", "float32[3,4]", "a matmul operand must be a tensor, but has type <float32[2,3]>"),
    ],
)
def test_matmul_errors(a, b, message):
    assert error("matmul", pair(a, b)) == (
        f"matmul expects (<T[m,k],T[k,n]> -> T[m,n]); got an argument of type <{a},{b}>: {message}"
    )


# --------------------------------------------------------------------------
# Reductions


@pytest.mark.parametrize("uri, kind", sorted(REDUCTIONS.items()))
def test_reductions(uri, kind):
    dtype = {"numeric": "int32", "floating": "float32", "real": "float64"}[kind]
    assert result(uri, ref(f"{dtype}[2,3,4]")) == dtype
    assert result(uri, ref(f"{dtype}[2,3,4]"), axis=1) == f"{dtype}[2,4]"
    assert result(uri, ref(f"{dtype}[2,3,4]"), axis=[0, 2]) == f"{dtype}[3]"
    assert result(uri, ref(f"{dtype}[2,3,4]"), axis=-1) == f"{dtype}[2,3]"
    assert result(uri, ref(f"{dtype}[2,3,4]"), axis=(0, -1), keepdims=True) == f"{dtype}[1,3,1]"
    assert result(uri, ref(f"{dtype}[2,3,4]"), keepdims=True) == f"{dtype}[1,1,1]"
    assert result(uri, ref(f"{dtype}[?,3]"), axis=0) == f"{dtype}[3]"
    assert result(uri, ref(f"{dtype}[*]")) == dtype
    assert result(uri, ref(f"{dtype}[*]"), axis=0) == f"{dtype}[*]"
    assert result(uri, ref(f"<{dtype}[2,3],{dtype}[3]>"), axis=0) == f"<{dtype}[3],{dtype}>"
    bad = {"numeric": "bool", "floating": "int32", "real": "complex64"}[kind]
    assert f"not {bad}[2]" in error(uri, ref(f"{bad}[2]"))


@pytest.mark.parametrize("axis", [3, -4, [0, 3]])
def test_reduction_axis_out_of_range(axis):
    bad = axis if isinstance(axis, int) else 3
    assert error("reduce_sum", ref("float32[2,3,4]"), axis=axis) == (
        "reduce_sum expects (T -> T reduced); got an argument of type float32[2,3,4]: "
        f"axis {bad} is out of range for float32[2,3,4] of rank 3"
    )


def test_reduction_axis_checks():
    assert "reduce_sum attribute axis: axis [1, 1] repeats an axis" in error("reduce_sum", ref("float32[2,3]"), axis=[1, 1])
    assert "axis [1, -2] names axis 1 of float32[2,3,4] twice" in error(
        "reduce_sum", ref("float32[2,3,4]"), axis=[1, -2]
    )
    assert "axis is None, an int or a list of ints, not 1.5" in error("reduce_sum", ref("float32[2]"), axis=1.5)
    assert "axis is None, an int or a list of ints, not True" in error("reduce_sum", ref("float32[2]"), axis=True)
    assert "reduce_sum attribute keepdims: expected true or false, not 1" in error(
        "reduce_sum", ref("float32[2]"), keepdims=1
    )
    assert "reduce_mean has no attribute 'axes' (its attributes: axis, keepdims)" in error(
        "reduce_mean", ref("float32[2]"), axes=0
    )
    assert "axis 0 is out of range for float32 of rank 0" in error("reduce_max", ref("float32"), axis=0)


# --------------------------------------------------------------------------
# zeros, ones


def test_zeros_and_ones_of_a_type():
    assert result("zeros", type="<w=float32[784,10],b=float32[10]>") == "<w=float32[784,10],b=float32[10]>"
    assert result("ones", type="int32[3]") == "int32[3]"
    assert result("zeros", type=np.float32) == "float32"
    assert result("zeros", type="str[2]") == "str[2]"
    assert result("ones", type={"a": np.int32, "b": (np.float32, [2])}) == "<a=int32,b=float32[2]>"
    call = intrinsic_call("zeros", type="<a=float32,int32>")
    assert call.argument is None
    assert str(call.function.type_signature) == "( -> <a=float32,int32>)"


def test_zeros_and_ones_errors():
    assert error("ones") == "ones expects ( -> T); got no argument: ones needs the attribute type"
    assert error("zeros", type="float32[?]") == (
        "zeros expects ( -> T); got no argument: zeros needs fully known shapes, but float32[?] has float32[?]"
    )
    assert "ones needs fully known shapes, but <float32[*]> has float32[*]" in error("ones", type="<float32[*]>")
    assert "operands must be numeric tensors, not str[2]" in error("ones", type="str[2]")
    assert "not on {float32}@CLIENTS" in error("zeros", type="{float32}@CLIENTS")
    assert "it takes no argument" in error("zeros", ref("float32"), type="float32")
    assert "zeros attribute type: unknown dtype 'flot'" in error("zeros", type="flot")


def test_random_normal_is_of_a_known_floating_point_type_and_a_random_op():
    assert result("random_normal", type="<w=float32[784,10],b=float64[10]>") == "<w=float32[784,10],b=float64[10]>"
    assert ir.registry.lookup("random_normal").random
    assert not any(d.random for d in LOCAL_OPS if d.uri != "random_normal")
    assert "random_normal draws floating-point numbers, but int32[3] has int32[3]" in error("random_normal",
                                                                                              type="int32[3]")
    assert "random_normal needs fully known shapes" in error("random_normal", type="float32[?]")
    assert "random_normal needs the attribute type" in error("random_normal")
    assert "it takes no argument" in error("random_normal", ref("float32"), type="float32")


# --------------------------------------------------------------------------
# Attributes


def test_unknown_attribute_names_are_rejected():
    assert "add has no attribute 'axis' (its attributes: none)" in error("add", pair("float32", "float32"), axis=0)
    assert "reduce_sum has no attribute 'keep_dims' (its attributes: axis, keepdims)" in error(
        "reduce_sum", ref("float32[2]"), keep_dims=True
    )
    with pytest.raises(fedc.FedcTypeError, match="has no attribute 'foo'"):
        Intrinsic("negative", "(float32 -> float32)", {"foo": 1})


def test_explicit_default_attributes_equal_omitted_ones():
    a = intrinsic_call("reduce_sum", ref("float32[2,3]"))
    b = intrinsic_call("reduce_sum", ref("float32[2,3]"), axis=None, keepdims=False)
    assert a == b and hash(a) == hash(b)
    assert a.function.attrs == b.function.attrs == ()
    c = intrinsic_call("reduce_sum", ref("float32[2,3]"), axis=[1], keepdims=False)
    d = intrinsic_call("reduce_sum", ref("float32[2,3]"), axis=1)
    e = intrinsic_call("reduce_sum", ref("float32[2,3]"), axis=np.int64(1))
    assert c == d == e
    assert d.function.attrs == (("axis", (1,)),)
    assert intrinsic_call("reduce_sum", ref("float32[2,3]"), keepdims=True).function.attrs == (("keepdims", True),)
    assert intrinsic_call("reduce_sum", ref("float32[2,3]"), keepdims=np.bool_(True)).function.attrs == (
        ("keepdims", True),
    )
    assert a != d


def test_attributes_are_sorted_and_checked_against_the_signature():
    node = Intrinsic("reduce_sum", "(float32[2,3] -> float32[1,3])", {"keepdims": True, "axis": 0})
    assert node.attrs == (("axis", (0,)), ("keepdims", True))
    with pytest.raises(fedc.FedcTypeError, match="expected float32\\[1,3\\], got float32\\[3\\]"):
        Intrinsic("reduce_sum", "(float32[2,3] -> float32[3])", {"keepdims": True, "axis": 0})
    assert ir.lookup("reduce_sum").attr_values({"axis": (0,)}) == {"axis": (0,), "keepdims": False}


# --------------------------------------------------------------------------
# check: a value, guarded by a condition (what lowerings use to keep an intrinsic's run-time checks)


def test_check_returns_its_value_type_and_needs_bool_conditions_and_a_message():
    assert result("check", pair("bool", "<a=float32[2],b=int32>"), message="bad") == "<a=float32[2],b=int32>"
    assert result("check", pair("<bool[3],bool>", "float32"), message="bad") == "float32"
    assert "operands must be bool tensors, not int32" in error("check", pair("int32", "float32"), message="bad")
    assert "check needs its message" in error("check", pair("bool", "float32"))
    assert "message is a non-empty string" in error("check", pair("bool", "float32"), message="  ")
    assert "message is a non-empty string" in error("check", pair("bool", "float32"), message=7)
