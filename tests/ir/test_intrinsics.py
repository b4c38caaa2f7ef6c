"""The intrinsic registry: every federated and sequence intrinsic's type rule."""

import pytest

import fedc
from fedc import ir
from fedc.ir import Call, Intrinsic, IntrinsicKind, Lambda, Reference, Struct, intrinsic_call
from fedc.ir import intrinsics, local_ops
from fedc.types import parse

FEDERATED_AND_SEQUENCE = {
    "federated_aggregate",
    "federated_apply",
    "federated_broadcast",
    "federated_eval_at_clients",
    "federated_eval_at_server",
    "federated_map",
    "federated_map_all_equal",
    "federated_mean",
    "federated_weighted_mean",
    "federated_sum",
    "federated_min",
    "federated_max",
    "federated_secure_sum",
    "federated_secure_sum_bitwidth",
    "federated_secure_modular_sum",
    "federated_select",
    "federated_secure_select",
    "federated_value_at_clients",
    "federated_value_at_server",
    "federated_zip_at_clients",
    "federated_zip_at_server",
    "sequence_map",
    "sequence_reduce",
    "sequence_sum",
}


def ref(type_text, name="v"):
    return Reference(name, parse(type_text))


def arg(*type_texts, **named):
    """A struct of references: positional elements unnamed, keyword elements named."""
    elements = [ref(t, f"a{i}") for i, t in enumerate(type_texts)]
    elements += [(n, ref(t, n)) for n, t in named.items()]
    return Struct(elements)


def lam(parameter_type, result_text="int32"):
    """A lambda of the given parameter type returning a reference of ``result_text``."""
    if parameter_type is None:
        return Lambda(None, None, ref(result_text, "r"))
    return Lambda("p", parse(parameter_type), ref(result_text, "r"))


AGG_VALUE = "{float32}@CLIENTS"
AGG_ZERO = "<float32,int32>"
AGG_ACCUMULATE = "(<<float32,int32>,float32> -> <float32,int32>)"
AGG_MERGE = "(<<float32,int32>,<float32,int32>> -> <float32,int32>)"
AGG_REPORT = "(<float32,int32> -> float32[2])"
SELECT_OK = ("{int32[?]}@CLIENTS", "int32@SERVER", "float32[10,3]@SERVER", "(<float32[10,3],int32> -> float32[3])")

# (uri, argument builder, expected result type)
VALID = [
    ("federated_aggregate", lambda: arg(AGG_VALUE, AGG_ZERO, AGG_ACCUMULATE, AGG_MERGE, AGG_REPORT),
     "float32[2]@SERVER"),
    ("federated_aggregate",  # a traced accumulate has named parameters; <U,T> fits them
     lambda: arg(AGG_VALUE, AGG_ZERO, "(<acc=<float32,int32>,x=float32> -> <float32,int32>)",
                 "(<a=<float32,int32>,b=<float32,int32>> -> <float32,int32>)", AGG_REPORT),
     "float32[2]@SERVER"),
    ("federated_apply", lambda: arg("(int32 -> float32[2])", "int32@SERVER"), "float32[2]@SERVER"),
    ("federated_apply", lambda: Struct([lam("int32[?]", "<a=bool>"), ref("int32[3]@SERVER")]), "<a=bool>@SERVER"),
    ("federated_broadcast", lambda: ref("float32[3]@SERVER"), "float32[3]@CLIENTS"),
    ("federated_broadcast", lambda: ref("<w=float32[784,10],b=float32[10]>@SERVER"),
     "<w=float32[784,10],b=float32[10]>@CLIENTS"),
    ("federated_eval_at_clients", lambda: lam(None, "float32"), "{float32}@CLIENTS"),
    ("federated_eval_at_server", lambda: ref("( -> <a=int32>)"), "<a=int32>@SERVER"),
    ("federated_map", lambda: arg("(float32 -> int32)", "{float32}@CLIENTS"), "{int32}@CLIENTS"),
    ("federated_map", lambda: arg("(float32 -> int32)", "float32@CLIENTS"), "{int32}@CLIENTS"),
    ("federated_map", lambda: arg("(<x=float32[?,784],y=int32[?,1]>* -> float32)",
                                  "{<x=float32[?,784],y=int32[?,1]>*}@CLIENTS"), "{float32}@CLIENTS"),
    ("federated_map_all_equal", lambda: arg("(float32 -> int32)", "float32@CLIENTS"), "int32@CLIENTS"),
    ("federated_mean", lambda: ref("{float32}@CLIENTS"), "float32@SERVER"),
    ("federated_mean", lambda: ref("{<a=float32[2],b=float64>}@CLIENTS"), "<a=float32[2],b=float64>@SERVER"),
    ("federated_weighted_mean", lambda: arg("{float32[2]}@CLIENTS", "{int32}@CLIENTS"), "float32[2]@SERVER"),
    ("federated_weighted_mean", lambda: arg("{<float32,float64>}@CLIENTS", "{float32}@CLIENTS"),
     "<float32,float64>@SERVER"),
    ("federated_sum", lambda: ref("{<int32,float32[3]>}@CLIENTS"), "<int32,float32[3]>@SERVER"),
    ("federated_sum", lambda: ref("int64@CLIENTS"), "int64@SERVER"),
    ("federated_min", lambda: ref("{int32[2]}@CLIENTS"), "int32[2]@SERVER"),
    ("federated_max", lambda: ref("{<float32,uint8>}@CLIENTS"), "<float32,uint8>@SERVER"),
    ("federated_secure_sum", lambda: arg("{int32[3]}@CLIENTS", "int32"), "int32[3]@SERVER"),
    ("federated_secure_sum_bitwidth", lambda: arg("{<int32,int64[2]>}@CLIENTS", "<int32,int32>"),
     "<int32,int64[2]>@SERVER"),
    ("federated_secure_sum_bitwidth", lambda: arg("{int32}@CLIENTS", "int32"), "int32@SERVER"),
    ("federated_secure_modular_sum", lambda: arg("{int64}@CLIENTS", "int64"), "int64@SERVER"),
    ("federated_select", lambda: arg(*SELECT_OK), "{float32[3]*}@CLIENTS"),
    ("federated_secure_select", lambda: arg(*SELECT_OK), "{float32[3]*}@CLIENTS"),
    ("federated_value_at_clients", lambda: ref("<a=int32,b=float32[2]>"), "<a=int32,b=float32[2]>@CLIENTS"),
    ("federated_value_at_clients", lambda: ir.Literal(1.5), "float32@CLIENTS"),
    ("federated_value_at_server", lambda: ref("float32[?]"), "float32[?]@SERVER"),
    ("federated_value_at_server", lambda: ref("int32*"), "int32*@SERVER"),
    ("federated_zip_at_clients", lambda: arg(a="{float32}@CLIENTS", b="{int32[2]}@CLIENTS"),
     "{<a=float32,b=int32[2]>}@CLIENTS"),
    ("federated_zip_at_clients", lambda: arg("{float32}@CLIENTS", "int32@CLIENTS", "{bool}@CLIENTS"),
     "{<float32,int32,bool>}@CLIENTS"),
    ("federated_zip_at_server", lambda: arg("float32@SERVER", "int32@SERVER"), "<float32,int32>@SERVER"),
    ("sequence_map", lambda: arg("(<x=float32[?,784],y=int32[?,1]> -> float32[?,784])",
                                 "<x=float32[?,784],y=int32[?,1]>*"), "float32[?,784]*"),
    ("sequence_reduce", lambda: arg("int32*", "int64", "(<int64,int32> -> int64)"), "int64"),
    ("sequence_sum", lambda: ref("<a=float32,b=int32[2]>*"), "<a=float32,b=int32[2]>"),
]


@pytest.mark.parametrize("uri, build, expected", VALID, ids=[f"{u}-{i}" for i, (u, _, _) in enumerate(VALID)])
def test_valid_application(uri, build, expected):
    argument = build()
    call = intrinsic_call(uri, argument)
    assert isinstance(call, Call)
    assert str(call.type_signature) == expected
    assert call.type_signature == parse(expected)
    assert isinstance(call.function, Intrinsic)
    assert call.function.uri == uri
    assert call.function.type_signature == parse(f"({argument.type_signature} -> {expected})")
    assert call.argument is argument
    # The same type through the definition and through a directly built Intrinsic.
    definition = ir.lookup(uri)
    assert definition.result_type(argument.type_signature) == parse(expected)
    Intrinsic(uri, call.function.type_signature)


# (uri, argument builder (None: no argument), a fragment of the reason)
INVALID = [
    # federated_aggregate
    ("federated_aggregate", lambda: arg("float32@SERVER", AGG_ZERO, AGG_ACCUMULATE, AGG_MERGE, AGG_REPORT),
     "value must be placed at CLIENTS, but has type float32@SERVER"),
    ("federated_aggregate", lambda: arg(AGG_VALUE, AGG_ZERO, "(<<float32,int32>,int32> -> <float32,int32>)",
                                        AGG_MERGE, AGG_REPORT),
     "parameter of accumulate (<<float32,int32>,int32> -> <float32,int32>): expected <<float32,int32>,int32>, "
     "got <<float32,int32>,float32>"),
    ("federated_aggregate", lambda: arg(AGG_VALUE, AGG_ZERO, "(<<float32,int32>,float32> -> float32)",
                                        AGG_MERGE, AGG_REPORT),
     "result of accumulate (the accumulator type is zero's): expected <float32,int32>, got float32"),
    ("federated_aggregate", lambda: arg(AGG_VALUE, AGG_ZERO, AGG_ACCUMULATE, AGG_MERGE, "(int32 -> float32)"),
     "parameter of report"),
    ("federated_aggregate", lambda: arg(AGG_VALUE, AGG_ZERO, AGG_ACCUMULATE, AGG_MERGE, "(<float32,int32> -> float32@SERVER)"),
     "report must be placement-free"),
    ("federated_aggregate", lambda: arg(AGG_VALUE, AGG_ZERO, AGG_ACCUMULATE, AGG_MERGE),
     "the argument is a struct of 5 elements"),
    ("federated_aggregate", lambda: arg(AGG_VALUE, AGG_ZERO, AGG_ACCUMULATE, "int32", AGG_REPORT),
     "merge must be a function, but has type int32"),
    # federated_apply
    ("federated_apply", lambda: arg("(int32 -> float32)", "{int32}@CLIENTS"),
     "the value must be placed at SERVER, but has type {int32}@CLIENTS"),
    ("federated_apply", lambda: arg("(int32 -> float32)", "{int32}@SERVER"),
     "the value must be all-equal (T@SERVER), but has type {int32}@SERVER"),
    ("federated_apply", lambda: arg("(float32 -> float32)", "int32@SERVER"),
     "parameter of the function (float32 -> float32): expected float32, got int32"),
    ("federated_apply", lambda: ref("int32@SERVER"), "the argument is a struct of 2 elements"),
    # federated_broadcast
    ("federated_broadcast", lambda: ref("{float32}@CLIENTS"),
     "the value must be placed at SERVER, but has type {float32}@CLIENTS"),
    ("federated_broadcast", lambda: ref("{float32}@SERVER"), "must be all-equal (T@SERVER)"),
    ("federated_broadcast", lambda: ref("float32"), "must be placed at SERVER, but has type float32"),
    ("federated_broadcast", None, "it needs an argument"),
    # federated_eval_at_*
    ("federated_eval_at_clients", lambda: ref("(int32 -> float32)"),
     "the function must take no parameter, but has type (int32 -> float32)"),
    ("federated_eval_at_clients", lambda: ref("int32"), "the argument must be a function, but has type int32"),
    ("federated_eval_at_server", lambda: ref("( -> int32@SERVER)"), "must be placement-free"),
    ("federated_eval_at_server", None, "it needs an argument"),
    # federated_map / federated_map_all_equal
    ("federated_map", lambda: arg("(int32 -> float32)", "{float32}@CLIENTS"),
     "parameter of the mapped function (int32 -> float32): expected int32, got float32"),
    ("federated_map", lambda: arg("(float32 -> float32)", "float32@SERVER"),
     "the mapped value must be placed at CLIENTS, but has type float32@SERVER"),
    ("federated_map", lambda: arg("(float32 -> float32)"), "the argument is a struct of 2 elements"),
    ("federated_map", lambda: arg("{float32}@CLIENTS", "(float32 -> float32)"),
     "the mapped function must be a function, but has type {float32}@CLIENTS"),
    ("federated_map", lambda: arg("(float32[3] -> float32)", "{float32[?]}@CLIENTS"),
     "expected float32[3], got float32[?]"),
    ("federated_map_all_equal", lambda: arg("(float32 -> int32)", "{float32}@CLIENTS"),
     "the mapped value must be all-equal (T@CLIENTS), but has type {float32}@CLIENTS"),
    ("federated_map_all_equal", lambda: arg("(int32 -> int32)", "float32@CLIENTS"), "expected int32, got float32"),
    # federated_mean / weighted_mean
    ("federated_mean", lambda: ref("float32@SERVER"), "the value must be placed at CLIENTS, but has type float32@SERVER"),
    ("federated_mean", lambda: ref("{int32}@CLIENTS"), "T must be floating-point tensors or structs of them"),
    ("federated_mean", lambda: ref("{<float32,int32>}@CLIENTS"), "has an element of type int32"),
    ("federated_mean", lambda: arg("{float32}@CLIENTS", "{float32}@CLIENTS"), "must be placed at CLIENTS"),
    ("federated_weighted_mean", lambda: arg("{float32}@CLIENTS", "{float32[2]}@CLIENTS"),
     "the weight must be a numeric scalar at CLIENTS, but has type {float32[2]}@CLIENTS"),
    ("federated_weighted_mean", lambda: arg("{float32}@CLIENTS", "float32@SERVER"),
     "the weight must be placed at CLIENTS"),
    ("federated_weighted_mean", lambda: arg("{int32}@CLIENTS", "{float32}@CLIENTS"),
     "the value must be floating-point tensors"),
    ("federated_weighted_mean", lambda: ref("{float32}@CLIENTS"), "the argument is a struct of 2 elements"),
    # federated_sum / min / max
    ("federated_sum", lambda: ref("{str}@CLIENTS"), "T must be numeric tensors or structs of them"),
    ("federated_sum", lambda: ref("{bool}@CLIENTS"), "but T is bool"),
    ("federated_sum", lambda: ref("int32@SERVER"), "must be placed at CLIENTS, but has type int32@SERVER"),
    ("federated_sum", lambda: ref("{int32*}@CLIENTS"), "but T is int32*"),
    ("federated_min", lambda: ref("{complex64}@CLIENTS"), "T must be real numeric tensors"),
    ("federated_min", lambda: ref("float32@SERVER"), "must be placed at CLIENTS"),
    ("federated_max", lambda: ref("{str[2]}@CLIENTS"), "T must be real numeric tensors"),
    # secure sums
    ("federated_secure_sum", lambda: arg("{float32[3]}@CLIENTS", "int32"), "the value must be integer tensors"),
    ("federated_secure_sum", lambda: arg("{int32}@CLIENTS", "float32"),
     "max_input must be an integer scalar, but has type float32"),
    ("federated_secure_sum", lambda: ref("{int32}@CLIENTS"), "the argument is a struct of 2 elements"),
    ("federated_secure_sum_bitwidth", lambda: arg("{<int32,int32>}@CLIENTS", "<int32>"),
     "bitwidth must be an integer scalar or one per element of <int32,int32>, but has type <int32>"),
    ("federated_secure_sum_bitwidth", lambda: arg("{int32}@SERVER", "int32"), "must be placed at CLIENTS"),
    ("federated_secure_sum_bitwidth", lambda: arg("{int32}@CLIENTS", "int32[2]"),
     "bitwidth must be an integer scalar, but has type int32[2]"),
    ("federated_secure_modular_sum", lambda: arg("{int64}@CLIENTS", "int64@SERVER"),
     "modulus must be placement-free, but has type int64@SERVER"),
    ("federated_secure_modular_sum", lambda: arg("{<int32,int32>}@CLIENTS", "<float32,float32>"),
     "modulus must be integers"),
    # select
    ("federated_select", lambda: arg("{int64[?]}@CLIENTS", *SELECT_OK[1:]),
     "the client keys must be int32[n] at CLIENTS, but have type {int64[?]}@CLIENTS"),
    ("federated_select", lambda: arg(SELECT_OK[0], "int64@SERVER", *SELECT_OK[2:]),
     "max_key must be int32@SERVER, but has type int64@SERVER"),
    ("federated_select", lambda: arg(*SELECT_OK[:3], "(<float32[10,3],int64> -> float32[3])"),
     "parameter of select_fn (<float32[10,3],int64> -> float32[3]): expected <float32[10,3],int64>, "
     "got <float32[10,3],int32>"),
    ("federated_select", lambda: arg(*SELECT_OK[:2], "{float32[10,3]}@CLIENTS", SELECT_OK[3]),
     "the server value must be placed at SERVER"),
    ("federated_select", lambda: arg(*SELECT_OK[:3]), "the argument is a struct of 4 elements"),
    ("federated_secure_select", lambda: arg("int32[?]@SERVER", *SELECT_OK[1:]),
     "the client keys must be placed at CLIENTS"),
    ("federated_secure_select", lambda: arg("{int32}@CLIENTS", *SELECT_OK[1:]),
     "the client keys must be int32[n] at CLIENTS"),
    # value_at
    ("federated_value_at_clients", lambda: ref("int32@SERVER"), "the value must be placement-free"),
    ("federated_value_at_clients", lambda: ref("(int32 -> int32)"), "the value must not be a function"),
    ("federated_value_at_server", lambda: ref("{int32}@CLIENTS"), "the value must be placement-free"),
    ("federated_value_at_server", lambda: ref("<a=(int32 -> int32)>"), "the value must not be a function"),
    ("federated_value_at_server", None, "it needs an argument"),
    # zip
    ("federated_zip_at_clients", lambda: arg(a="{float32}@CLIENTS", b="int32@SERVER"),
     "element b must be placed at CLIENTS, but has type int32@SERVER"),
    ("federated_zip_at_clients", lambda: Struct([]), "the argument must be a non-empty struct of federated values"),
    ("federated_zip_at_clients", lambda: ref("{int32}@CLIENTS"), "must be a non-empty struct"),
    ("federated_zip_at_server", lambda: arg("float32@SERVER", "{int32}@CLIENTS"),
     "element 1 must be placed at SERVER, but has type {int32}@CLIENTS"),
    ("federated_zip_at_server", lambda: arg("float32@SERVER", "{int32}@SERVER"),
     "element 1 must be all-equal (T@SERVER), but has type {int32}@SERVER"),
    # sequences
    ("sequence_map", lambda: arg("(int32 -> int32)", "int32"), "the mapped value must be a sequence, but has type int32"),
    ("sequence_map", lambda: arg("(int32 -> int32)", "float32*"),
     "parameter of the mapped function (int32 -> int32): expected int32, got float32"),
    ("sequence_map", lambda: arg("(int32 -> int32*)", "int32*"), "a sequence element must be tensors or structs of tensors"),
    ("sequence_map", lambda: arg("(int32 -> int32@SERVER)", "int32*"), "the mapped function must be placement-free"),
    ("sequence_reduce", lambda: arg("int32*", "int64", "(<int64,int32> -> int32)"),
     "result of the reduction operator (the accumulator type is zero's): expected int64, got int32"),
    ("sequence_reduce", lambda: arg("int32*", "int64", "(<int32,int64> -> int64)"),
     "parameter of the reduction operator (<int32,int64> -> int64): expected <int32,int64>, got <int64,int32>"),
    ("sequence_reduce", lambda: arg("int32", "int64", "(<int64,int32> -> int64)"),
     "the reduced value must be a sequence, but has type int32"),
    ("sequence_reduce", lambda: arg("int32*", "int64"), "the argument is a struct of 3 elements"),
    ("sequence_sum", lambda: ref("str*"), "the elements must be numeric tensors, but T is str"),
    ("sequence_sum", lambda: ref("int32"), "the argument must be a sequence, but has type int32"),
]


@pytest.mark.parametrize("uri, build, reason", INVALID, ids=[f"{u}-{i}" for i, (u, _, _) in enumerate(INVALID)])
def test_invalid_application(uri, build, reason):
    argument = None if build is None else build()
    definition = ir.lookup(uri)
    with pytest.raises(fedc.FedcTypeError) as info:
        intrinsic_call(uri, argument)
    message = str(info.value)
    assert message.startswith(f"{uri} expects {definition.signature}; got ")
    if argument is None:
        assert "got no argument: " in message
    else:
        assert f"got an argument of type {argument.type_signature}: " in message
    assert reason in message


def test_every_federated_and_sequence_intrinsic_is_tested_both_ways():
    assert {uri for uri, _, _ in VALID} == FEDERATED_AND_SEQUENCE
    assert {uri for uri, _, _ in INVALID} == FEDERATED_AND_SEQUENCE


def test_error_message_shows_signature_in_tff_notation():
    with pytest.raises(fedc.FedcTypeError) as info:
        intrinsic_call("federated_mean", ref("float32@SERVER"))
    assert str(info.value) == (
        "federated_mean expects ({T}@CLIENTS -> T@SERVER); got an argument of type float32@SERVER: "
        "the value must be placed at CLIENTS, but has type float32@SERVER"
    )


# --------------------------------------------------------------------------
# The registry


def test_registry_holds_exactly_the_federated_sequence_and_local_ops():
    uris = [d.uri for d in ir.all_definitions()]
    assert len(uris) == len(set(uris))
    local = {d.uri for d in local_ops.LOCAL_OPS}
    assert set(uris) == FEDERATED_AND_SEQUENCE | local
    assert not FEDERATED_AND_SEQUENCE & local
    assert {d.uri for d in ir.all_definitions() if d.kind is not IntrinsicKind.LOCAL} == FEDERATED_AND_SEQUENCE
    assert all(d.kind is IntrinsicKind.LOCAL for d in local_ops.LOCAL_OPS)


def test_all_definitions_lists_federated_ones_first_sorted_by_name():
    definitions = ir.all_definitions()
    flags = [d.is_federated for d in definitions]
    assert flags == sorted(flags, reverse=True)
    federated = [d.uri for d in definitions if d.is_federated]
    assert federated == sorted(federated)
    assert set(federated) == {u for u in FEDERATED_AND_SEQUENCE if u.startswith("federated_")}


KINDS = {
    "federated_aggregate": IntrinsicKind.AGGREGATION,
    "federated_apply": IntrinsicKind.MAP,
    "federated_broadcast": IntrinsicKind.BROADCAST,
    "federated_eval_at_clients": IntrinsicKind.PLACEMENT,
    "federated_eval_at_server": IntrinsicKind.PLACEMENT,
    "federated_map": IntrinsicKind.MAP,
    "federated_map_all_equal": IntrinsicKind.MAP,
    "federated_mean": IntrinsicKind.AGGREGATION,
    "federated_weighted_mean": IntrinsicKind.AGGREGATION,
    "federated_sum": IntrinsicKind.AGGREGATION,
    "federated_min": IntrinsicKind.AGGREGATION,
    "federated_max": IntrinsicKind.AGGREGATION,
    "federated_secure_sum": IntrinsicKind.AGGREGATION,
    "federated_secure_sum_bitwidth": IntrinsicKind.AGGREGATION,
    "federated_secure_modular_sum": IntrinsicKind.AGGREGATION,
    "federated_select": IntrinsicKind.SELECT,
    "federated_secure_select": IntrinsicKind.SELECT,
    "federated_value_at_clients": IntrinsicKind.PLACEMENT,
    "federated_value_at_server": IntrinsicKind.PLACEMENT,
    "federated_zip_at_clients": IntrinsicKind.ZIP,
    "federated_zip_at_server": IntrinsicKind.ZIP,
    "sequence_map": IntrinsicKind.SEQUENCE,
    "sequence_reduce": IntrinsicKind.SEQUENCE,
    "sequence_sum": IntrinsicKind.SEQUENCE,
}
SECURE = {"federated_secure_sum", "federated_secure_sum_bitwidth", "federated_secure_modular_sum",
          "federated_secure_select"}


@pytest.mark.parametrize("uri", sorted(FEDERATED_AND_SEQUENCE))
def test_kind_and_secure_flag(uri):
    definition = ir.lookup(uri)
    assert definition.kind is KINDS[uri]
    assert definition.secure is (uri in SECURE)
    assert definition.is_federated is uri.startswith("federated_")
    assert definition.has_parameter
    assert definition.attrs == ()
    assert definition.doc


def test_no_local_op_is_secure():
    assert not any(d.secure for d in local_ops.LOCAL_OPS)
    assert {d.uri for d in ir.all_definitions() if d.secure} == SECURE
    assert [d.uri for d in ir.all_definitions() if d.kind is IntrinsicKind.BROADCAST] == ["federated_broadcast"]


@pytest.mark.parametrize("uri", sorted(FEDERATED_AND_SEQUENCE))
def test_signature_is_in_tff_notation(uri):
    # The polymorphic signature parses as a fedc type (its abstract types are T, U, …)
    # except for the n of int32[n] in federated_select.
    signature = ir.lookup(uri).signature
    parsed = parse(signature.replace("int32[n]", "int32[?]"))
    assert str(parsed) == signature.replace("int32[n]", "int32[?]")


def test_lookup_unknown_intrinsic_suggests_close_names():
    with pytest.raises(fedc.FedcTypeError) as info:
        ir.lookup("federated_meen")
    assert str(info.value).startswith("unknown intrinsic 'federated_meen'; did you mean federated_mean")
    with pytest.raises(fedc.FedcTypeError, match=r"^unknown intrinsic 'zzz'$"):
        ir.lookup("zzz")
    with pytest.raises(fedc.FedcTypeError, match="unknown intrinsic"):
        ir.lookup(None)


def test_registering_a_uri_twice_is_rejected():
    existing = ir.lookup("federated_sum")
    with pytest.raises(ValueError, match="federated_sum is registered twice"):
        intrinsics.register(existing)
    assert ir.lookup("federated_sum") is existing


def test_the_registry_holds_no_backend_implementations():
    """Backends own their tables of rules; a registry entry says what an op is, not how a backend runs it."""
    for definition in ir.all_definitions():
        assert not hasattr(definition, "impls"), definition.uri


# --------------------------------------------------------------------------
# Intrinsic nodes with explicit signatures


def test_intrinsic_with_correct_signature():
    node = Intrinsic("federated_mean", "({float32}@CLIENTS -> float32@SERVER)")
    assert str(node.type_signature) == "({float32}@CLIENTS -> float32@SERVER)"
    assert node.definition is ir.lookup("federated_mean")
    assert node.attrs == ()


@pytest.mark.parametrize(
    "uri, signature, message",
    [
        ("federated_mean", "({float32}@CLIENTS -> {float32}@CLIENTS)",
         "federated_mean applied to {float32}@CLIENTS has a different result type: "
         "expected float32@SERVER, got {float32}@CLIENTS"),
        ("federated_mean", "({float32}@CLIENTS -> float32[2]@SERVER)",
         "expected float32@SERVER, got float32[2]@SERVER"),
        ("federated_broadcast", "(float32@SERVER -> {float32}@CLIENTS)",
         "expected float32@CLIENTS, got {float32}@CLIENTS"),
        ("federated_mean", "float32", "federated_mean must have a function type, not float32"),
        ("federated_mean", "({int32}@CLIENTS -> int32@SERVER)",
         "federated_mean expects ({T}@CLIENTS -> T@SERVER); got an argument of type {int32}@CLIENTS"),
        ("federated_eval_at_server", "( -> int32@SERVER)", "federated_eval_at_server expects (( -> T) -> T@SERVER); got no argument"),
        ("federated_sum", "({int32[?]}@CLIENTS -> int32[3]@SERVER)", "expected int32[?]@SERVER, got int32[3]@SERVER"),
    ],
)
def test_intrinsic_with_wrong_signature_is_rejected(uri, signature, message):
    with pytest.raises(fedc.FedcTypeError) as info:
        Intrinsic(uri, signature)
    assert message in str(info.value)


def test_federated_intrinsics_take_no_attributes():
    with pytest.raises(fedc.FedcTypeError, match=r"federated_mean has no attribute 'axis' \(its attributes: none\)"):
        Intrinsic("federated_mean", "({float32}@CLIENTS -> float32@SERVER)", {"axis": 1})
    with pytest.raises(fedc.FedcTypeError, match="federated_mean has no attribute 'axis'"):
        intrinsic_call("federated_mean", ref("{float32}@CLIENTS"), axis=1)


def test_call_of_intrinsic_checks_the_argument_against_the_signature():
    node = Intrinsic("federated_mean", "({float32[?]}@CLIENTS -> float32[?]@SERVER)")
    call = Call(node, ref("{float32[3]}@CLIENTS"))  # assignable: unknown dim takes a known one
    assert str(call.type_signature) == "float32[?]@SERVER"
    with pytest.raises(fedc.FedcTypeError) as info:
        Call(node, ref("{float64}@CLIENTS"))
    assert str(info.value) == (
        "argument of federated_mean: expected {float32[?]}@CLIENTS, got {float64}@CLIENTS"
    )


def test_instance_type_and_result_type():
    definition = ir.lookup("federated_broadcast")
    assert str(definition.instance_type(parse("int32@SERVER"))) == "(int32@SERVER -> int32@CLIENTS)"
    assert str(definition.result_type(parse("<a=int32>@SERVER"))) == "<a=int32>@CLIENTS"


def test_lambda_arguments_work_like_references():
    body = intrinsic_call("add", Struct([ref("float32", "x"), ref("float32", "x")]))
    double = Lambda("x", "float32", body)
    call = intrinsic_call("federated_map", Struct([double, ref("{float32}@CLIENTS", "data")]))
    assert str(call.type_signature) == "{float32}@CLIENTS"
