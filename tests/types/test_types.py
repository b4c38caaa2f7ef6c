"""The fedc type system: string forms (golden, as TFF prints them), identity,
immutability, construction checks, struct access, assignability and repr."""

import collections
import pickle

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fedc
from fedc import types
from fedc.types import (
    CLIENTS,
    SERVER,
    AbstractType,
    FederatedType,
    FunctionType,
    Placement,
    PlacementType,
    SequenceType,
    StructType,
    TensorType,
    parse,
)

F32 = np.float32
I32 = np.int32

MNIST_BATCH = StructType([TensorType(F32, [None, 784]), TensorType(I32, [None, 1])])
MODEL = StructType([TensorType(F32, [784, 10]), TensorType(F32, [10])])
FEDAVG = FunctionType(
    StructType([FederatedType(MODEL, SERVER), FederatedType(SequenceType(MNIST_BATCH), CLIENTS)]),
    FederatedType(MODEL, SERVER),
)

# (type built from constructors, the string TFF prints for it)
GOLDEN = [
    (FederatedType(F32, CLIENTS), "{float32}@CLIENTS"),
    (FederatedType(F32, SERVER), "float32@SERVER"),
    (FunctionType(FederatedType(F32, CLIENTS), FederatedType(F32, SERVER)),
     "({float32}@CLIENTS -> float32@SERVER)"),
    (FunctionType(F32, F32), "(float32 -> float32)"),
    (FunctionType(FederatedType(F32, CLIENTS), FederatedType(F32, CLIENTS)),
     "({float32}@CLIENTS -> {float32}@CLIENTS)"),
    (SequenceType(MNIST_BATCH), "<float32[?,784],int32[?,1]>*"),
    (MODEL, "<float32[784,10],float32[10]>"),
    (FunctionType(None, FederatedType(MODEL, SERVER)), "( -> <float32[784,10],float32[10]>@SERVER)"),
    (FEDAVG,
     "(<<float32[784,10],float32[10]>@SERVER,{<float32[?,784],int32[?,1]>*}@CLIENTS>"
     " -> <float32[784,10],float32[10]>@SERVER)"),
    (SequenceType(StructType([("x", TensorType(F32, [None, 784])), ("y", TensorType(I32, [None, 1]))])),
     "<x=float32[?,784],y=int32[?,1]>*"),
    (StructType([]), "<>"),
    (PlacementType(), "placement"),
    (FederatedType(I32, CLIENTS, all_equal=True), "int32@CLIENTS"),
    (FederatedType(F32, SERVER, all_equal=False), "{float32}@SERVER"),
    (TensorType(str), "str"),
    (TensorType(F32, None), "float32[*]"),
    (TensorType(I32, [None]), "int32[?]"),
    (TensorType(I32, [10]), "int32[10]"),
    (TensorType(np.bool_), "bool"),
    (TensorType(np.float64, [0, 2]), "float64[0,2]"),
    (StructType([("a", I32), ("b", np.bool_)]), "<a=int32,b=bool>"),
    (StructType([("a", I32), np.bool_]), "<a=int32,bool>"),
    (StructType([StructType([]), StructType([I32])]), "<<>,<int32>>"),
    (FunctionType(StructType([I32, np.float64]), np.bool_), "(<int32,float64> -> bool)"),
    (FunctionType(None, FederatedType(I32, SERVER)), "( -> int32@SERVER)"),
    (FederatedType(SequenceType(I32), CLIENTS), "{int32*}@CLIENTS"),
    (SequenceType(TensorType(F32, None)), "float32[*]*"),
    (AbstractType("T"), "T"),
    (FunctionType(AbstractType("T"), FederatedType(AbstractType("T"), SERVER)), "(T -> T@SERVER)"),
    (FunctionType(FunctionType(I32, I32), FunctionType(None, I32)), "((int32 -> int32) -> ( -> int32))"),
    (StructType([("f", FunctionType(I32, I32)), ("p", PlacementType())]), "<f=(int32 -> int32),p=placement>"),
    (StructType([("a", FederatedType(I32, SERVER)), ("b", FederatedType(I32, CLIENTS))]),
     "<a=int32@SERVER,b={int32}@CLIENTS>"),
]


@pytest.mark.parametrize("type_, text", GOLDEN, ids=[t for _, t in GOLDEN])
def test_compact_form_matches_tff(type_, text):
    assert str(type_) == text
    assert type_.compact_representation() == text


@pytest.mark.parametrize("type_, text", GOLDEN, ids=[t for _, t in GOLDEN])
def test_parse_compact_form_gives_the_constructed_type(type_, text):
    parsed = parse(text)
    assert parsed == type_
    assert type(parsed) is type(type_)
    assert str(parsed) == text


@pytest.mark.parametrize("type_, text", GOLDEN, ids=[t for _, t in GOLDEN])
def test_parse_formatted_form_round_trips(type_, text):
    formatted = type_.formatted_representation()
    assert parse(formatted) == type_
    assert parse(formatted).formatted_representation() == formatted
    # no line has trailing whitespace (TFF strips each line)
    assert all(line == line.rstrip() for line in formatted.splitlines())


def test_tff_unknown_rank_spelling_is_accepted():
    assert parse("'float32'(shape=None)") == TensorType(F32, None)
    assert parse("<a='int32'(shape=None)>") == StructType([("a", TensorType(I32, None))])
    assert str(parse("'float32'(shape=None)")) == "float32[*]"


def test_parse_ignores_whitespace():
    assert parse("  ( < a = float32 [ ? , 2 ] , int32 > ->\n {float32}  @ CLIENTS )") == FunctionType(
        StructType([("a", TensorType(F32, [None, 2])), I32]), FederatedType(F32, CLIENTS)
    )


def test_fedavg_formatted_representation():
    assert FEDAVG.formatted_representation() == (
        "(<\n"
        "  <\n"
        "    float32[784,10],\n"
        "    float32[10]\n"
        "  >@SERVER,\n"
        "  {<\n"
        "    float32[?,784],\n"
        "    int32[?,1]\n"
        "  >*}@CLIENTS\n"
        "> -> <\n"
        "  float32[784,10],\n"
        "  float32[10]\n"
        ">@SERVER)"
    )


@pytest.mark.parametrize(
    "text, formatted",
    [
        ("float32", "float32"),
        ("{float32}@CLIENTS", "{float32}@CLIENTS"),
        ("(float32 -> float32)", "(float32 -> float32)"),
        ("<>", "<>"),
        ("<int32,float64>", "<\n  int32,\n  float64\n>"),
        ("<a=int32,b=<int32,int32>>", "<\n  a=int32,\n  b=<\n    int32,\n    int32\n  >\n>"),
        ("(<int32,float64> -> bool)", "(<\n  int32,\n  float64\n> -> bool)"),
        ("( -> <float32[784,10],float32[10]>@SERVER)",
         "( -> <\n  float32[784,10],\n  float32[10]\n>@SERVER)"),
        ("<x=float32[?,784],y=int32[?,1]>*", "<\n  x=float32[?,784],\n  y=int32[?,1]\n>*"),
        ("{<a=int32>}@CLIENTS", "{<\n  a=int32\n>}@CLIENTS"),
        ("<a=int32>@SERVER", "<\n  a=int32\n>@SERVER"),
        ("<a=<>,b=int32>", "<\n  a=<>,\n  b=int32\n>"),
        ("<f=(<int32,int32> -> int32)>", "<\n  f=(<\n    int32,\n    int32\n  > -> int32)\n>"),
    ],
)
def test_formatted_representation_golden(text, formatted):
    t = parse(text)
    assert t.formatted_representation() == formatted
    assert parse(formatted) == t


def test_a_struct_of_fifty_thousand_elements_prints_both_forms():
    n = 50_000
    elements = [(f"w{i}", TensorType(F32, [i % 7 + 1])) for i in range(n)]
    t = FederatedType(StructType(elements), CLIENTS)
    compact = "{<" + ",".join(f"w{i}=float32[{i % 7 + 1}]" for i in range(n)) + ">}@CLIENTS"
    assert str(FunctionType(t, t)) == f"({compact} -> {compact})"
    formatted = "{<\n" + ",\n".join(f"  w{i}=float32[{i % 7 + 1}]" for i in range(n)) + "\n>}@CLIENTS"
    assert t.formatted_representation() == formatted


# --------------------------------------------------------------------------
# Random types: both string forms round-trip


def _tensors():
    dtypes = st.sampled_from([np.int32, np.float32, np.bool_, np.int64, np.uint8, np.float64, np.str_])
    dims = st.lists(st.one_of(st.none(), st.integers(0, 20)), max_size=3)
    return st.builds(TensorType, dtypes, st.one_of(dims, st.none()))


_names = st.sampled_from(["a", "b", "x", "y", "_w", "w1"])


def _structs(children):
    return st.lists(st.tuples(st.one_of(st.none(), _names), children), max_size=4).map(
        lambda items: StructType(
            [(n, t) if n is not None else t for n, t in _dedupe(items)]
        )
    )


def _dedupe(items):
    seen, out = set(), []
    for name, t in items:
        if name is not None and name in seen:
            name = None
        seen.add(name)
        out.append((name, t))
    return out


_local = st.recursive(_tensors(), _structs, max_leaves=6)
_members = st.one_of(_local, _local.map(SequenceType))
_federated = st.builds(FederatedType, _members, st.sampled_from([CLIENTS, SERVER]), st.booleans())
_values = st.one_of(_members, _federated, st.just(PlacementType()))
_all = st.recursive(
    _values,
    lambda children: st.one_of(
        _structs(children), st.builds(FunctionType, st.one_of(st.none(), children), children)
    ),
    max_leaves=8,
)


@given(_all)
def test_random_types_round_trip_through_both_string_forms(t):
    assert parse(str(t)) == t
    assert parse(t.formatted_representation()) == t
    assert str(parse(t.formatted_representation())) == str(t)
    assert "\n" not in str(t)


@given(_all)
def test_random_types_are_equal_and_hash_equal_when_rebuilt(t):
    again = parse(str(t))
    assert again == t and hash(again) == hash(t)
    assert t.is_assignable_from(t)
    assert pickle.loads(pickle.dumps(t)) == t


# --------------------------------------------------------------------------
# Identity, hashing, immutability


def test_equal_by_structure_and_hashable():
    a = FederatedType(TensorType(F32, [2]), CLIENTS)
    b = parse("{float32[2]}@CLIENTS")
    assert a == b and not a != b
    assert hash(a) == hash(b)
    assert len({a, b, parse("float32[2]@CLIENTS")}) == 2
    assert {a: "x"}[b] == "x"


@pytest.mark.parametrize(
    "a, b",
    [
        ("float32", "float64"),
        ("float32[2]", "float32[?]"),
        ("float32[?]", "float32[*]"),
        ("float32", "float32[*]"),
        ("<a=int32>", "<b=int32>"),
        ("<a=int32>", "<int32>"),
        ("<int32,int32>", "<int32>"),
        ("{int32}@CLIENTS", "int32@CLIENTS"),
        ("int32@CLIENTS", "int32@SERVER"),
        ("int32*", "int32"),
        ("(int32 -> int32)", "( -> int32)"),
        ("(int32 -> int32)", "(int32 -> int64)"),
        ("T", "U"),
        ("placement", "<>"),
    ],
)
def test_different_types_are_not_equal(a, b):
    assert parse(a) != parse(b)
    assert not parse(a) == parse(b)


def test_type_is_not_equal_to_its_string():
    assert TensorType(F32) != "float32"


def test_python_container_does_not_affect_equality_or_hash():
    NT = collections.namedtuple("NT", ["a", "b"])
    plain = StructType([("a", I32), ("b", F32)])
    variants = [
        StructType([("a", I32), ("b", F32)], dict),
        StructType([("a", I32), ("b", F32)], collections.OrderedDict),
        StructType([("a", I32), ("b", F32)], NT),
    ]
    for v in variants:
        assert v == plain and hash(v) == hash(plain)
        assert str(v) == "<a=int32,b=float32>"
    assert variants[2].python_container is NT
    assert plain.python_container is None
    assert len(set(variants + [plain])) == 1


@pytest.mark.parametrize("text", ["float32[2]", "<a=int32>", "int32*", "(int32 -> int32)",
                                  "{int32}@CLIENTS", "placement", "T"])
def test_types_are_immutable(text):
    t = parse(text)
    for name in list(type(t).__slots__) + ["new_attribute"]:
        with pytest.raises(AttributeError, match="immutable"):
            setattr(t, name, None)
    assert str(t) == text


def test_struct_elements_cannot_be_assigned():
    s = parse("<a=int32>")
    with pytest.raises(TypeError):
        s["a"] = TensorType(F32)
    assert s["a"] == TensorType(I32)


def test_placements_are_singletons_and_immutable():
    assert Placement("CLIENTS") is CLIENTS
    assert Placement("SERVER") is SERVER
    assert str(CLIENTS) == repr(CLIENTS) == "CLIENTS"
    assert SERVER.uri == "server"
    assert pickle.loads(pickle.dumps(CLIENTS)) is CLIENTS
    with pytest.raises(AttributeError):
        CLIENTS.name = "SERVER"
    assert CLIENTS.name == "CLIENTS"
    with pytest.raises(fedc.FedcTypeError, match="unknown placement 'EVERYWHERE'"):
        Placement("EVERYWHERE")


# --------------------------------------------------------------------------
# Construction


def test_all_equal_defaults():
    assert FederatedType(F32, CLIENTS).all_equal is False
    assert FederatedType(F32, SERVER).all_equal is True
    assert FederatedType(F32, CLIENTS, all_equal=True).all_equal is True
    assert FederatedType(F32, SERVER, all_equal=False).all_equal is False
    assert FederatedType(F32, "clients") == FederatedType(F32, CLIENTS)
    assert FederatedType(F32, "SERVER").placement is SERVER


def test_federated_accepts_member_specs():
    t = FederatedType(collections.OrderedDict(a=np.int32, b=(np.float32, [2])), CLIENTS)
    assert str(t) == "{<a=int32,b=float32[2]>}@CLIENTS"
    assert t.member.python_container is collections.OrderedDict


@pytest.mark.parametrize(
    "member, kind",
    [
        (FederatedType(I32, SERVER), "federated"),
        (FederatedType(I32, CLIENTS), "federated"),
        (StructType([("a", FederatedType(I32, SERVER))]), "federated"),
        (FunctionType(I32, I32), "function"),
        (StructType([FunctionType(None, I32)]), "function"),
        (PlacementType(), "placement"),
    ],
)
def test_federated_rejects_nested_federated_function_placement(member, kind):
    with pytest.raises(fedc.FedcTypeError, match=f"cannot contain {kind} types") as info:
        FederatedType(member, CLIENTS)
    assert str(member) in str(info.value)


def test_federated_rejects_unknown_placement():
    with pytest.raises(fedc.FedcTypeError, match="expected a placement .*'EVERYWHERE'"):
        FederatedType(F32, "EVERYWHERE")
    with pytest.raises(fedc.FedcTypeError, match="expected a placement"):
        FederatedType(F32, 3)


@pytest.mark.parametrize(
    "element",
    [
        FederatedType(I32, SERVER),
        FunctionType(None, I32),
        SequenceType(I32),
        PlacementType(),
        StructType([("a", SequenceType(I32))]),
        StructType([FederatedType(I32, CLIENTS)]),
    ],
)
def test_sequence_rejects_bad_elements(element):
    with pytest.raises(fedc.FedcTypeError, match="a sequence element must be tensors or structs of tensors") as info:
        SequenceType(element)
    assert str(element) in str(info.value)


def test_sequence_accepts_tensors_and_structs():
    assert str(SequenceType(I32)) == "int32*"
    assert str(SequenceType({"x": (F32, [None, 2])})) == "<x=float32[?,2]>*"
    assert SequenceType(StructType([])).element == StructType([])


def test_tensor_shapes_are_normalized():
    assert TensorType(F32, [2, -1]).shape == (2, None)
    assert TensorType(F32, (np.int64(3),)).shape == (3,)
    assert type(TensorType(F32, (np.int64(3),)).shape[0]) is int
    assert TensorType(F32, 5).shape == (5,)
    assert TensorType(F32).shape == ()
    assert TensorType(F32, None).shape is None
    assert TensorType(F32, [2, None]) == TensorType(F32, (2, -1))


@pytest.mark.parametrize(
    "shape, bad",
    [([-2], "-2"), ([1.5], "1.5"), ([True], "True"), ("ab", "'a'"), (object(), "not a shape")],
)
def test_bad_shapes_are_rejected(shape, bad):
    with pytest.raises(fedc.FedcTypeError, match="not a shape") as info:
        TensorType(F32, shape)
    assert bad in str(info.value)


def test_rank_and_fully_defined():
    assert TensorType(F32).rank == 0
    assert TensorType(F32, [None, 3]).rank == 2
    assert TensorType(F32, None).rank is None
    assert TensorType(F32, [2, 3]).is_fully_defined()
    assert not TensorType(F32, [None, 3]).is_fully_defined()
    assert not TensorType(F32, None).is_fully_defined()


@pytest.mark.parametrize(
    "dtype, name",
    [
        (np.bool_, "bool"), (np.int8, "int8"), (np.int16, "int16"), (np.int32, "int32"),
        (np.int64, "int64"), (np.uint8, "uint8"), (np.uint16, "uint16"), (np.uint32, "uint32"),
        (np.uint64, "uint64"), (np.float16, "float16"), (np.float32, "float32"),
        (np.float64, "float64"), (np.complex64, "complex64"), (np.complex128, "complex128"),
        (np.str_, "str"), (str, "str"), (np.dtype("U5"), "str"), (bytes, "str"),
        ("float", "float32"), ("double", "float64"), ("string", "str"),
    ],
)
def test_dtype_names(dtype, name):
    t = TensorType(dtype, [2])
    assert str(t) == f"{name}[2]"
    assert parse(f"{name}[2]") == t


def test_unsupported_dtype_is_rejected():
    with pytest.raises(fedc.FedcTypeError, match="dtype datetime64 is not supported"):
        TensorType(np.datetime64)
    with pytest.raises(fedc.FedcTypeError, match="unknown dtype 'flot32'"):
        TensorType("flot32")


def test_struct_names_must_be_unique_identifiers():
    with pytest.raises(fedc.FedcTypeError, match="name 'a' appears twice"):
        StructType([("a", I32), ("a", F32)])
    with pytest.raises(fedc.FedcTypeError, match="'1a' is not an identifier"):
        StructType([("1a", I32)])
    with pytest.raises(fedc.FedcTypeError, match="'a b' is not an identifier"):
        StructType({"a b": I32})
    with pytest.raises(fedc.FedcTypeError, match="must be a sequence or mapping, not 3"):
        StructType(3)


def test_struct_from_struct_copies_elements():
    s = StructType([("a", I32), F32])
    assert StructType(s) == s
    assert StructType(s, list).python_container is list


def test_abstract_type_labels():
    assert AbstractType("T").label == "T"
    assert AbstractType("T2") != AbstractType("T")
    with pytest.raises(fedc.FedcTypeError, match="upper-case letter, not 't'"):
        AbstractType("t")


def test_function_without_parameter():
    f = FunctionType(None, I32)
    assert f.parameter is None
    assert list(f.children()) == [TensorType(I32)]
    with pytest.raises(fedc.FedcTypeError, match="None is not a type"):
        FunctionType(I32, None)


# --------------------------------------------------------------------------
# Struct access


def test_struct_access_by_name_and_index():
    s = parse("<a=int32,b=float32[2],bool>")
    assert s["a"] == TensorType(I32)
    assert s["b"] == TensorType(F32, [2])
    assert s[0] == TensorType(I32)
    assert s[2] == TensorType(np.bool_)
    assert s[-1] == TensorType(np.bool_)
    assert s[np.int64(1)] == TensorType(F32, [2])
    assert s.index_of("b") == 1
    assert len(s) == 3
    assert list(s) == [TensorType(I32), TensorType(F32, [2]), TensorType(np.bool_)]
    assert s.names() == ["a", "b", None]
    assert list(s.items())[0] == ("a", TensorType(I32))
    assert not s.is_named()
    assert parse("<a=int32,b=int32>").is_named()
    assert not StructType([]).is_named()
    assert bool(StructType([])) is True


def test_struct_access_by_unknown_name_lists_the_names():
    s = parse("<a=int32,b=float32[2],bool>")
    with pytest.raises(fedc.FedcTypeError) as info:
        s["c"]
    assert str(info.value) == "struct <a=int32,b=float32[2],bool> has no element named 'c'; its names are a, b"
    with pytest.raises(fedc.FedcTypeError, match=r"^struct <int32> has no element named 'a'$"):
        parse("<int32>")["a"]


@pytest.mark.parametrize("index", [3, -4, 100])
def test_struct_access_out_of_range(index):
    s = parse("<a=int32,b=float32[2],bool>")
    with pytest.raises(fedc.FedcTypeError) as info:
        s[index]
    assert str(info.value) == (
        f"index {index} is out of range for struct <a=int32,b=float32[2],bool> of 3 elements"
    )


@pytest.mark.parametrize("key", [1.0, True, None, (0,)])
def test_struct_access_by_other_keys_is_rejected(key):
    with pytest.raises(fedc.FedcTypeError, match="selected by name or index"):
        parse("<a=int32,int32>")[key]


# --------------------------------------------------------------------------
# Assignability


@pytest.mark.parametrize(
    "target, source, expected",
    [
        # all-equal values fit where per-member values are expected, not vice versa
        ("{float32}@CLIENTS", "float32@CLIENTS", True),
        ("float32@CLIENTS", "{float32}@CLIENTS", False),
        ("{float32}@SERVER", "float32@SERVER", True),
        ("float32@SERVER", "{float32}@SERVER", False),
        # placements must match
        ("float32@SERVER", "float32@CLIENTS", False),
        ("{float32}@CLIENTS", "{float32}@SERVER", False),
        ("{float32[?]}@CLIENTS", "float32[3]@CLIENTS", True),
        # unknown dims and unknown rank accept known ones, not vice versa
        ("float32[?]", "float32[3]", True),
        ("float32[3]", "float32[?]", False),
        ("float32[?,3]", "float32[5,3]", True),
        ("float32[?,3]", "float32[5,4]", False),
        ("float32[*]", "float32[3,4]", True),
        ("float32[*]", "float32", True),
        ("float32[*]", "float32[*]", True),
        ("float32[3]", "float32[*]", False),
        ("float32", "float32[*]", False),
        ("float32[?]", "float32[?,?]", False),
        ("float32[?]", "float32", False),
        ("float32", "float64", False),
        ("float32[*]", "int32[2]", False),
        # struct names: a name may be added to an unnamed element, not dropped or changed (as TFF)
        ("<a=int32>", "<a=int32>", True),
        ("<a=int32>", "<b=int32>", False),
        ("<b=int32>", "<a=int32>", False),
        ("<a=int32,b=float32>", "<int32,float32>", True),
        ("<int32,float32>", "<a=int32,b=float32>", False),
        ("<a=int32,b=float32>", "<b=float32,a=int32>", False),
        ("<int32>", "<int32,int32>", False),
        ("<int32,int32>", "<int32>", False),
        ("<a=float32[?]>", "<a=float32[2]>", True),
        ("<a=float32[2]>", "<a=float32[?]>", False),
        ("<>", "<>", True),
        ("float32", "<float32>", False),
        ("<float32>", "float32", False),
        # sequences are covariant
        ("float32[?]*", "float32[3]*", True),
        ("float32[3]*", "float32[?]*", False),
        ("float32*", "float32", False),
        # functions: contravariant parameter, covariant result
        ("(float32[3] -> int32)", "(float32[?] -> int32)", True),
        ("(float32[?] -> int32)", "(float32[3] -> int32)", False),
        ("( -> int32[?])", "( -> int32[3])", True),
        ("( -> int32[3])", "( -> int32[?])", False),
        ("( -> int32)", "(int32 -> int32)", False),
        ("(int32 -> int32)", "( -> int32)", False),
        ("(int32@CLIENTS -> int32)", "({int32}@CLIENTS -> int32)", True),
        ("({int32}@CLIENTS -> int32)", "(int32@CLIENTS -> int32)", False),
        ("placement", "placement", True),
        ("placement", "int32", False),
        ("T", "T", True),
        ("T", "int32", False),
        ("T", "U", False),
    ],
)
def test_assignability(target, source, expected):
    assert parse(target).is_assignable_from(parse(source)) is expected


def test_equivalence_is_mutual_assignability():
    assert parse("<a=int32>").is_equivalent_to(parse("<a=int32>"))
    assert not parse("float32[?]").is_equivalent_to(parse("float32[3]"))
    assert not parse("{float32}@CLIENTS").is_equivalent_to(parse("float32@CLIENTS"))


def test_check_assignable_from_names_what_and_both_types():
    with pytest.raises(fedc.FedcTypeError) as info:
        parse("float32[3]").check_assignable_from(parse("float32[?]"), "the argument")
    assert str(info.value) == "the argument: expected float32[3], got float32[?]"
    parse("float32[?]").check_assignable_from(parse("float32[3]"))  # no error


def test_mismatch_of_long_types_is_shown_formatted():
    long = parse("<" + ",".join(f"a{i}=float32[784,10]" for i in range(8)) + ">")
    with pytest.raises(fedc.FedcTypeError) as info:
        long.check_assignable_from(TensorType(F32), "x")
    message = str(info.value)
    assert message.startswith("x: expected type\n  <\n    a0=float32[784,10],\n")
    assert message.endswith("but got type\n  float32")


# --------------------------------------------------------------------------
# repr, walk, pickle


@pytest.mark.parametrize(
    "type_, text",
    [
        (TensorType(F32), "TensorType(float32)"),
        (TensorType(F32, [None, 3]), "TensorType(float32, [None, 3])"),
        (TensorType(F32, None), "TensorType(float32, None)"),
        (StructType([("a", I32), F32]), "StructType([('a', TensorType(int32)), TensorType(float32)])"),
        (StructType([I32], list), "StructType([TensorType(int32)], python_container=list)"),
        (SequenceType(I32), "SequenceType(TensorType(int32))"),
        (FunctionType(None, I32), "FunctionType(None, TensorType(int32))"),
        (FunctionType(I32, F32), "FunctionType(TensorType(int32), TensorType(float32))"),
        (FederatedType(I32, CLIENTS), "FederatedType(TensorType(int32), CLIENTS, all_equal=False)"),
        (FederatedType(I32, SERVER), "FederatedType(TensorType(int32), SERVER, all_equal=True)"),
        (PlacementType(), "PlacementType()"),
        (AbstractType("T"), "AbstractType('T')"),
    ],
)
def test_repr(type_, text):
    assert repr(type_) == text


def test_walk_and_contains():
    t = parse("(<a=int32,b={float32*}@CLIENTS> -> int32@SERVER)")
    walked = [str(x) for x in t.walk()]
    assert walked == [
        "(<a=int32,b={float32*}@CLIENTS> -> int32@SERVER)",
        "<a=int32,b={float32*}@CLIENTS>",
        "int32",
        "{float32*}@CLIENTS",
        "float32*",
        "float32",
        "int32@SERVER",
        "int32",
    ]
    assert t.contains(SequenceType)
    assert not t.contains(PlacementType)


def test_pickle_round_trips():
    for _, text in GOLDEN:
        t = parse(text)
        assert pickle.loads(pickle.dumps(t)) == t


def test_module_docstring_examples():
    assert str(types.FederatedType(np.float32, types.CLIENTS)) == "{float32}@CLIENTS"
    assert repr(types.parse("( -> int32@SERVER)")) == (
        "FunctionType(None, FederatedType(TensorType(int32), SERVER, all_equal=True))"
    )


def test_public_names_are_exported_from_fedc():
    assert fedc.FederatedType is FederatedType
    assert fedc.CLIENTS is CLIENTS
    assert fedc.to_type is types.to_type
    assert issubclass(fedc.FedcTypeError, fedc.FedcError)
    assert issubclass(fedc.FedcTypeError, TypeError)
