"""IR building blocks: type computation and checks, immutability, equality."""

import hashlib

import numpy as np
import pytest

import fedc
from fedc import ir
from fedc.errors import SourceLocation
from fedc.ir import (
    Block,
    Call,
    Compiled,
    Data,
    Intrinsic,
    Lambda,
    Literal,
    Placement,
    Reference,
    Selection,
    Struct,
    SymbolRef,
    intrinsic_call,
)
from fedc.types import CLIENTS, SERVER, PlacementType, StructType, TensorType, parse

LOC = SourceLocation("model.fed", 3, 7)
OTHER_LOC = SourceLocation("model.fed", 4, 1)


def ref(type_text, name="x"):
    return Reference(name, parse(type_text))


def type_error(build):
    with pytest.raises(fedc.FedcTypeError) as info:
        build()
    return str(info.value)


# --------------------------------------------------------------------------
# Reference, SymbolRef


def test_reference():
    r = Reference("x", "{float32}@CLIENTS")
    assert r.name == "x"
    assert str(r.type_signature) == "{float32}@CLIENTS"
    assert Reference("x", np.float32).type_signature == TensorType(np.float32)
    assert repr(r) == "Reference('x', {float32}@CLIENTS)"
    assert list(r.children()) == []


def test_reference_checks():
    assert "a reference name must be an identifier" in type_error(lambda: Reference("1x", "int32"))
    assert "not 'a b'" in type_error(lambda: Reference("a b", "int32"))
    with pytest.raises(fedc.ParseError, match="unknown dtype 'flot'"):
        Reference("x", "flot")
    assert "None is not a type" in type_error(lambda: Reference("x", None))


def test_symbol_ref():
    s = SymbolRef("train", "( -> int32@SERVER)")
    assert str(s.type_signature) == "( -> int32@SERVER)"
    assert repr(s) == "SymbolRef('train', ( -> int32@SERVER))"
    assert s != Reference("train", "( -> int32@SERVER)")
    assert "a symbol name must be an identifier" in type_error(lambda: SymbolRef("@train", "int32"))


# --------------------------------------------------------------------------
# Selection


def test_selection_by_name_and_index():
    s = ref("<a=int32,b=float32[2],bool>", "s")
    assert str(Selection(s, name="a").type_signature) == "int32"
    assert str(Selection(s, name="b").type_signature) == "float32[2]"
    assert str(Selection(s, index=2).type_signature) == "bool"
    assert Selection(s, index=np.int64(1)).index == 1
    assert Selection(s, name="b").resolved_index == 1
    assert Selection(s, index=2).resolved_index == 2
    assert list(Selection(s, index=0).children()) == [s]
    assert Selection(s, name="a") != Selection(s, index=0)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda s: Selection(s, name="c"),
         "struct <a=int32,b=float32[2],bool> has no element named 'c'; its names are a, b"),
        (lambda s: Selection(s, index=3),
         "selection [3] is out of range for <a=int32,b=float32[2],bool>, which has 3 elements"),
        (lambda s: Selection(s, index=-1), "a selection index must be a non-negative int, not -1"),
        (lambda s: Selection(s, index=True), "a selection index must be a non-negative int, not True"),
        (lambda s: Selection(s, index=1.0), "a selection index must be a non-negative int, not 1.0"),
        (lambda s: Selection(s), "a selection takes exactly one of name and index"),
        (lambda s: Selection(s, name="a", index=0), "a selection takes exactly one of name and index"),
        (lambda s: Selection(s, name="1a"),
         "a selected name must be an identifier (letters, digits and _, not starting with a digit), not '1a'"),
        (lambda s: Selection(ref("int32"), name="a"), "selection .a needs a struct, but its source has type int32"),
        (lambda s: Selection(ref("<a=int32>@SERVER"), index=0),
         "selection [0] needs a struct, but its source has type <a=int32>@SERVER"),
        (lambda s: Selection(ref("<int32,int32>"), name="a"), "struct <int32,int32> has no element named 'a'"),
        (lambda s: Selection(ref("<>"), index=0), "selection [0] is out of range for <>, which has 0 elements"),
        (lambda s: Selection("s", name="a"), "the source of a selection must be an IR node, not str 's'"),
    ],
)
def test_selection_errors(build, message):
    s = ref("<a=int32,b=float32[2],bool>", "s")
    assert type_error(lambda: build(s)) == message


# --------------------------------------------------------------------------
# Struct


def test_struct_type():
    s = Struct([("a", Literal(1)), Literal(2.0), ("c", ref("{float32}@CLIENTS"))])
    assert str(s.type_signature) == "<a=int32,float32,c={float32}@CLIENTS>"
    assert len(s) == 3
    assert [n for n, _ in s.elements] == ["a", None, "c"]
    assert str(Struct({"x": Literal(True)}).type_signature) == "<x=bool>"
    assert Struct([]).type_signature == StructType([])


def test_struct_python_container_is_kept_in_the_type_but_not_identity():
    a = Struct({"x": Literal(1)}, python_container=dict)
    b = Struct({"x": Literal(1)})
    assert a.type_signature.python_container is dict
    assert a.python_container is dict
    assert a == b and hash(a) == hash(b)


def test_struct_checks():
    assert "struct element name 'a' appears twice" in type_error(
        lambda: Struct([("a", Literal(1)), ("a", Literal(2))])
    )
    assert "a struct element must be an IR node, not int 1" in type_error(lambda: Struct([1]))
    assert "a struct element name must be an identifier" in type_error(lambda: Struct([("1", Literal(1))]))
    assert "a struct element is a node or a (name, node) pair" in type_error(lambda: Struct([("a", Literal(1), 3)]))


# --------------------------------------------------------------------------
# Call


def test_call_type_is_the_result_type():
    f = ref("(<int32,float32> -> float32[2])", "f")
    call = Call(f, Struct([Literal(1), Literal(2.0)]))
    assert str(call.type_signature) == "float32[2]"
    assert list(call.children()) == [f, call.argument]
    no_arg = Call(ref("( -> int32@SERVER)", "g"))
    assert str(no_arg.type_signature) == "int32@SERVER"
    assert list(no_arg.children()) == [no_arg.function]


def test_call_accepts_assignable_arguments():
    f = ref("({float32[?]}@CLIENTS -> int32)", "f")
    assert str(Call(f, ref("float32[3]@CLIENTS")).type_signature) == "int32"


@pytest.mark.parametrize(
    "function, argument, message",
    [
        (ref("(<int32,float32> -> float32)", "f"), Struct([Literal(1), Literal(1)]),
         "argument of %f: expected <int32,float32>, got <int32,int32>"),
        (SymbolRef("train", "(int32 -> int32)"), Literal(1.5), "argument of @train: expected int32, got float32"),
        (Compiled("tensorflow", b"g", "(int32 -> int32)", name="plus"), Literal(1.5),
         "argument of compiled plus: expected int32, got float32"),
        (Compiled("tensorflow", b"g", "(int32 -> int32)"), Literal(1.5),
         "argument of a compiled: expected int32, got float32"),
        (Lambda("y", "int32", ref("int32", "y")), Literal(1.5), "argument of a lambda: expected int32, got float32"),
        (Intrinsic("federated_mean", "({float32}@CLIENTS -> float32@SERVER)"), ref("float32@SERVER"),
         "argument of federated_mean: expected {float32}@CLIENTS, got float32@SERVER"),
        (ref("(float32@CLIENTS -> int32)", "f"), ref("{float32}@CLIENTS"),
         "argument of %f: expected float32@CLIENTS, got {float32}@CLIENTS"),
        (ref("(int32 -> int32)", "f"), None, "%f of type (int32 -> int32) needs an argument of type int32"),
        (ref("( -> int32)", "g"), Literal(1), "%g of type ( -> int32) takes no argument, but is called with one of type int32"),
        (ref("int32", "f"), Literal(1), "cannot call a value of type int32: it is not a function"),
        ("f", Literal(1), "the function of a call must be an IR node, not str 'f'"),
        (ref("(int32 -> int32)", "f"), 1, "the argument of a call must be an IR node, not int 1"),
    ],
)
def test_call_errors_name_the_callee_and_both_types(function, argument, message):
    assert type_error(lambda: Call(function, argument)) == message


def test_call_mismatch_of_long_types_is_formatted():
    big = "<" + ",".join(f"a{i}=float32[784,10]" for i in range(8)) + ">"
    message = type_error(lambda: Call(ref(f"({big} -> int32)", "h"), Literal(1.0)))
    assert message.startswith("argument of %h: expected type\n  <\n    a0=float32[784,10],\n")
    assert message.endswith("\nbut got type\n  float32")


# --------------------------------------------------------------------------
# Lambda, Block


def test_lambda():
    lam = Lambda("x", "float32", intrinsic_call("add", Struct([ref("float32"), ref("float32")])))
    assert str(lam.type_signature) == "(float32 -> float32)"
    assert lam.parameter_type == TensorType(np.float32)
    assert lam.parameter_name == "x"
    no_param = Lambda(None, None, Literal(1))
    assert str(no_param.type_signature) == "( -> int32)"
    assert list(no_param.children()) == [no_param.result]
    fed = Lambda("d", "{float32}@CLIENTS", intrinsic_call("federated_mean", ref("{float32}@CLIENTS", "d")))
    assert str(fed.type_signature) == "({float32}@CLIENTS -> float32@SERVER)"


def test_lambda_checks():
    assert type_error(lambda: Lambda("x", None, Literal(1))) == "a lambda has both a parameter name and type, or neither"
    assert type_error(lambda: Lambda(None, "int32", Literal(1))) == "a lambda has both a parameter name and type, or neither"
    assert "a lambda parameter name must be an identifier" in type_error(lambda: Lambda("1x", "int32", Literal(1)))
    assert type_error(lambda: Lambda("x", "int32", 3)) == "the result of a lambda must be an IR node, not int 3"


def test_block():
    block = Block(
        [("a", Literal(1)), ("b", intrinsic_call("add", Struct([ref("int32", "a"), ref("int32", "a")])))],
        Struct([ref("int32", "b"), Literal(True)]),
    )
    assert str(block.type_signature) == "<int32,bool>"
    assert [n for n, _ in block.locals] == ["a", "b"]
    assert list(block.children()) == [block.locals[0][1], block.locals[1][1], block.result]
    assert str(Block([], Literal(2.0)).type_signature) == "float32"


def test_block_checks():
    assert "a block local name must be an identifier" in type_error(lambda: Block([("a b", Literal(1))], Literal(1)))
    assert type_error(lambda: Block([("a",)], Literal(1))) == "a block local is a (name, node) pair, not ('a',)"
    assert type_error(lambda: Block([("a", 1)], Literal(1))) == "the value of local 'a' must be an IR node, not int 1"
    assert type_error(lambda: Block([], None)) == "the result of a block must be an IR node, not NoneType None"


# --------------------------------------------------------------------------
# Literal


@pytest.mark.parametrize(
    "value, text",
    [
        (1, "int32"),
        (1.5, "float32"),
        (True, "bool"),
        ("s", "str"),
        ([1, 2], "int32[2]"),
        ([[1.0], [2.0]], "float32[2,1]"),
        ([True, False], "bool[2]"),
        ([], "float32[0]"),
        (2**40, "int64"),
        (1 + 2j, "complex128"),
        (np.float64(1.0), "float64"),
        (np.float16(1.0), "float16"),
        (np.int64(3), "int64"),
        (np.array([1, 2], np.int64), "int64[2]"),
        (np.array([[1, 2]], np.uint8), "uint8[1,2]"),
        (np.array(1.5), "float64"),
    ],
)
def test_literal_types(value, text):
    lit = Literal(value)
    assert str(lit.type_signature) == text
    # a str literal is an object array of Python strings (numpy's 'U' would drop trailing NULs)
    assert lit.value.dtype == lit.type_signature.dtype or (lit.value.dtype == object and text.startswith("str"))


def test_python_numbers_default_to_float32_and_int32():
    assert Literal(0.1).value.dtype == np.float32
    assert Literal(7).value.dtype == np.int32
    assert Literal([1, 2**31 - 1]).value.dtype == np.int32
    assert Literal([1, 2**31]).value.dtype == np.int64


@pytest.mark.parametrize(
    "value, type_text, text",
    [
        (1, "float32", "float32"),
        (1.0, "float64", "float64"),
        ([1, 2], "int32[2]", "int32[2]"),
        (0.1, "float16", "float16"),
        ([[1, 2], [3, 4]], "int8[2,2]", "int8[2,2]"),
        (True, "bool", "bool"),
        ("a", "str", "str"),
        (np.inf, "float32", "float32"),
        (3.0, "int32", "int32"),
        (np.array([1, 2], np.int64), "int32[2]", "int32[2]"),
        (np.array([1 + 0j]), "float32[1]", "float32[1]"),
    ],
)
def test_literal_with_type(value, type_text, text):
    lit = Literal(value, type_text)
    assert str(lit.type_signature) == text
    if text == "str":
        assert lit.value.dtype == object and all(isinstance(v, str) for v in lit.value.ravel())
    else:
        assert lit.value.dtype == lit.type_signature.dtype


@pytest.mark.parametrize(
    "value, type_text, message",
    [
        (1.5, "int32", "literal 1.5 of type int32: 1.5 (a float64) is not an integer"),
        (300, "int8", "literal 300 of type int8: 300 (an int64) does not fit in int8, whose range is [-128, 127]"),
        (-1, "uint8", "literal -1 of type uint8: -1 (an int64) does not fit in uint8"),
        (np.array([300]), "uint8[1]", "at [0]: 300 (an int64) does not fit in uint8"),
        (np.nan, "int32", "literal nan of type int32: nan (a float64) has no int32 value"),
        (1, "bool", "literal 1 of type bool: an int64 value does not convert to bool"),
        (1e40, "float32", "literal 1e+40 of type float32: 1e+40 (a float64) is outside float32's range"),
        (np.array([1 + 1j]), "float32[1]", "at [0]: (1+1j) (a complex128) has an imaginary part"),
        ("a", "int32", "literal 'a' of type int32: a str value does not convert to int32"),
        ([1, 2], "int32[3]", "literal of shape [2] does not have type int32[3]"),
        ([1, 2], "int32[?]", "a literal has a tensor type with a fully known shape, not int32[?]"),
        (1, "int32[*]", "a literal has a tensor type with a fully known shape, not int32[*]"),
        (1.0, "<float32>", "a literal has a tensor type with a fully known shape, not <float32>"),
        (3, "{int32}@CLIENTS", "a literal has a tensor type with a fully known shape, not {int32}@CLIENTS"),
    ],
)
def test_lossy_or_mistyped_literals_are_rejected(value, type_text, message):
    assert message in type_error(lambda: Literal(value, type_text))


@pytest.mark.parametrize(
    "value, message",
    [
        (None, "literal None is not a tensor of one dtype"),
        (object(), "is not a tensor of one dtype"),
        ([[1], [1, 2]], "is not a tensor"),
        (np.datetime64("2020-01-01"), "dtype datetime64[D] is not supported"),
    ],
)
def test_bad_literals(value, message):
    assert message in type_error(lambda: Literal(value))


def test_literal_value_is_read_only():
    lit = Literal(np.array([1, 2], np.int32))
    with pytest.raises(ValueError):
        lit.value[0] = 3
    original = np.array([1.0, 2.0])
    lit = Literal(original)
    original[0] = 5.0  # the caller's array stays writable; the literal holds its own copy
    assert lit.value.tolist() == [1.0, 2.0]
    assert not lit.value.flags.writeable


def test_literal_equality_by_type_and_value():
    assert Literal(1) == Literal(np.int32(1))
    assert hash(Literal(1)) == hash(Literal(np.int32(1)))
    assert Literal(1) != Literal(1.0)
    assert Literal(1) != Literal(np.int64(1))
    assert Literal([1, 2]) != Literal([2, 1])
    assert Literal(["a", "bb"]) == Literal(np.array(["a", "bb"]))
    assert Literal(np.nan) == Literal(np.nan)
    assert repr(Literal([1, 2])) == "Literal([1, 2], int32[2])"


# --------------------------------------------------------------------------
# Compiled, Data, Placement, Intrinsic


def test_compiled():
    payload = b"\x08\x01graph"
    c = Compiled("tensorflow", payload, "(<float32[2],int32> -> float32[2])", name="step")
    assert str(c.type_signature) == "(<float32[2],int32> -> float32[2])"
    assert c.content_hash == "sha256:" + hashlib.sha256(payload).hexdigest()
    assert c.payload == payload and c.kind == "tensorflow" and c.name == "step"
    assert Compiled("tensorflow", bytearray(payload), "(int32 -> int32)").payload == payload
    assert Compiled("tensorflow", b"abc", "( -> int32)").content_hash == (
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    assert str(Compiled("tensorflow", b"", "(int32* -> <a=int32>)").type_signature) == "(int32* -> <a=int32>)"


def test_compiled_identity_is_its_content():
    a = Compiled("tensorflow", b"abc", "(int32 -> int32)")
    assert a == Compiled("tensorflow", b"abc", "(int32 -> int32)")
    assert a != Compiled("tensorflow", b"abd", "(int32 -> int32)")
    assert a != Compiled("tensorflow", b"abc", "(int32 -> int32)", name="f")
    assert a != Compiled("tensorflow", b"abc", "(int64 -> int32)")


@pytest.mark.parametrize(
    "type_text",
    ["({int32}@CLIENTS -> int32)", "(int32 -> int32@SERVER)", "(int32 -> (int32 -> int32))",
     "((int32 -> int32) -> int32)", "(<placement> -> int32)", "(<a={int32*}@CLIENTS> -> int32)"],
)
def test_compiled_rejects_federated_function_and_placement_types(type_text):
    assert type_error(lambda: Compiled("tensorflow", b"x", type_text)) == (
        "a compiled computation is local (no federated, function or placement types in its "
        f"parameter or result), but has type {type_text}"
    )


def test_compiled_checks():
    assert type_error(lambda: Compiled("tensorflow", b"x", "int32")) == (
        "a compiled computation has a function type, not int32"
    )
    assert type_error(lambda: Compiled("tensorflow", "x", "(int32 -> int32)")) == (
        "a compiled computation's payload is bytes, not str"
    )
    assert "a compiled computation's kind must be an identifier" in type_error(
        lambda: Compiled("tensor-flow", b"x", "(int32 -> int32)")
    )
    assert "a compiled computation's name must be an identifier" in type_error(
        lambda: Compiled("tensorflow", b"x", "(int32 -> int32)", name="a b")
    )


def test_data():
    d = Data("file:///data/train", "{<x=float32[?,784],y=int32[?,1]>*}@CLIENTS")
    assert str(d.type_signature) == "{<x=float32[?,784],y=int32[?,1]>*}@CLIENTS"
    assert d.uri == "file:///data/train"
    assert d != Data("file:///data/test", d.type_signature)
    assert type_error(lambda: Data("", "int32")) == "a data uri is a non-empty string, not ''"
    assert type_error(lambda: Data(3, "int32")) == "a data uri is a non-empty string, not 3"


def test_placement_node():
    p = Placement("CLIENTS")
    assert p.placement is CLIENTS
    assert p.type_signature == PlacementType()
    assert str(p.type_signature) == "placement"
    assert Placement(SERVER).placement is SERVER
    assert Placement("clients") == p
    assert Placement(SERVER) != p
    assert type_error(lambda: Placement("EVERYWHERE")) == "expected a placement (CLIENTS or SERVER), got 'EVERYWHERE'"


def test_intrinsic_node():
    node = Intrinsic("federated_broadcast", "(float32@SERVER -> float32@CLIENTS)")
    assert node.uri == "federated_broadcast"
    assert repr(node) == "Intrinsic('federated_broadcast', (float32@SERVER -> float32@CLIENTS))"
    assert node != Intrinsic("federated_broadcast", "(int32@SERVER -> int32@CLIENTS)")
    assert "unknown intrinsic 'federated_brodcast'" in type_error(
        lambda: Intrinsic("federated_brodcast", "(float32@SERVER -> float32@CLIENTS)")
    )


# --------------------------------------------------------------------------
# Immutability, equality, hashing, locations


def _all_kinds():
    return [
        ref("int32"),
        SymbolRef("f", "( -> int32)"),
        Selection(ref("<a=int32>"), name="a"),
        Struct([Literal(1)]),
        Call(ref("(int32 -> int32)", "f"), Literal(1)),
        Lambda("x", "int32", ref("int32")),
        Block([("a", Literal(1))], ref("int32", "a")),
        Intrinsic("federated_sum", "({int32}@CLIENTS -> int32@SERVER)"),
        Placement(CLIENTS),
        Literal([1.0, 2.0]),
        Data("d", "int32*"),
        Compiled("tensorflow", b"g", "(int32 -> int32)"),
    ]


@pytest.mark.parametrize("node", _all_kinds(), ids=lambda n: type(n).__name__)
def test_nodes_are_immutable(node):
    for name in ["type_signature", "location", "anything"] + list(type(node).__slots__):
        with pytest.raises(AttributeError, match="immutable"):
            setattr(node, name, None)


@pytest.mark.parametrize("index", range(12))
def test_equal_ignores_locations_unless_asked(index):
    plain = _all_kinds()[index]
    located = plain.with_location(LOC)
    assert located.location == LOC
    assert plain.location is None
    assert located == plain and hash(located) == hash(plain)
    assert ir.equal(located, plain)
    assert not ir.equal(located, plain, locations=True)
    assert ir.equal(located, plain.with_location(LOC), locations=True)
    assert not ir.equal(located, plain.with_location(OTHER_LOC), locations=True)
    assert located.describe() == f"{type(plain).__name__.lower()} at model.fed:3:7"


@pytest.mark.parametrize("index", range(12))
def test_rebuilt_nodes_are_equal_and_hash_equal(index):
    a, b = _all_kinds()[index], _all_kinds()[index]
    assert a is not b
    assert a == b and not a != b
    assert hash(a) == hash(b)
    assert len({a, b}) == 1


def test_distinct_kinds_are_not_equal():
    nodes = _all_kinds()
    for i, a in enumerate(nodes):
        for j, b in enumerate(nodes):
            assert (a == b) is (i == j)


def test_equal_with_locations_compares_nested_locations():
    inner_a = Literal(1, location=LOC)
    inner_b = Literal(1, location=OTHER_LOC)
    a = Struct([inner_a], location=LOC)
    b = Struct([inner_b], location=LOC)
    assert a == b
    assert not ir.equal(a, b, locations=True)
    assert ir.equal(a, Struct([Literal(1, location=LOC)], location=LOC), locations=True)
    assert not ir.equal(a, Struct([Literal(2, location=LOC)], location=LOC))


def test_different_structure_is_unequal():
    assert Call(ref("(int32 -> int32)", "f"), Literal(1)) != Call(ref("(int32 -> int32)", "f"), Literal(2))
    assert Lambda("x", "int32", ref("int32")) != Lambda("y", "int32", ref("int32"))
    assert Block([("a", Literal(1))], ref("int32", "a")) != Block([("b", Literal(1))], ref("int32", "a"))
    assert ref("int32", "x") != ref("int32", "y")
    assert ref("int32", "x") != ref("int64", "x")
    assert Struct([("a", Literal(1))]) != Struct([Literal(1)])


def test_location_must_be_a_source_location():
    assert type_error(lambda: Literal(1, location=(1, 2))) == "location must be a SourceLocation, not (1, 2)"
    assert Literal(1, location=LOC).location == LOC


def test_walk_visits_parents_first_in_order():
    x = ref("int32")
    tree = Block([("a", Literal(1))], Struct([x, Lambda("y", "int32", ref("int32", "y"))]))
    assert [type(n).__name__ for n in tree.walk()] == [
        "Block", "Literal", "Struct", "Reference", "Lambda", "Reference",
    ]


def test_repr_names_kind_and_type():
    assert repr(Struct([Literal(1.0)])) == "<Struct : <float32>>"
    assert repr(Placement(CLIENTS)) == "<Placement : placement>"
    assert repr(Data("d", "int32")) == "<Data : int32>"
