"""Protobuf serialization of IR modules: exact round trips and hostile input."""

import math
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import fedc
from fedc import ir
from fedc.errors import SerializationError, SourceLocation
from fedc.ir import registry, serialization
from fedc.ir.serialization import pb  # computation_pb2, imported without its version warning
from fedc.ir.registry import AttrSpec, IntrinsicDef, IntrinsicKind
from fedc.types import (
    DTYPE_NAMES,
    CLIENTS,
    SERVER,
    AbstractType,
    FederatedType,
    FunctionType,
    PlacementType,
    SequenceType,
    StructType,
    TensorType,
)

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROTO = ROOT / "fedc" / "ir" / "computation.proto"
PB2 = ROOT / "fedc" / "ir" / "computation_pb2.py"

F32 = TensorType(np.float32)
I32 = TensorType(np.int32)


def L(line, column=1, file="fedavg.py"):
    return SourceLocation(file, line, column)


def assert_roundtrip(module: ir.Module) -> ir.Module:
    data = ir.serialize(module)
    assert isinstance(data, bytes)
    restored = ir.deserialize(data)
    assert restored == module
    assert restored.symbols == module.symbols
    for symbol in module:
        assert ir.equal(restored[symbol], module[symbol], locations=True), symbol
        assert restored[symbol].type_signature == module[symbol].type_signature
    # Stable: serializing the restored module gives the same bytes.
    assert ir.serialize(restored) == data
    return restored


# --------------------------------------------------------------------------
# Modules


def temperature_module() -> ir.Module:
    readings = FederatedType(F32, CLIENTS)
    t = ir.Reference("t", readings, L(2, 40, "temperature.py"))
    mean = ir.intrinsic_call("federated_mean", t, location=L(2, 24, "temperature.py"))
    fn = ir.Lambda("t", readings, mean, L(1, 1, "temperature.py"))
    return ir.Module("temperature", {"get_average_temperature": fn})


W = StructType([("w", TensorType(np.float32, [784, 10])), ("b", TensorType(np.float32, [10]))])
BATCH = StructType([("x", TensorType(np.float32, [None, 784])), ("y", TensorType(np.int32, [None]))])
DATA = SequenceType(BATCH)
STATE = StructType([("model", W), ("round", I32)])


def fedavg_module() -> ir.Module:
    """A FedAvg-shaped module using every kind of node and of type."""
    # client_update: (<W,BATCH*> -> W)
    client_param = StructType([W, DATA])
    p = ir.Reference("p", client_param, L(10, 5))
    train_step = ir.Compiled(
        "opaque", b"\x08\x01 serialized graphdef \x00\xff", FunctionType(StructType([W, BATCH]), W),
        name="train_step", location=L(11),
    )
    client_update = ir.Lambda(
        "p",
        client_param,
        ir.Block(
            [
                ("model", ir.Selection(p, index=0, location=L(12, 3))),
                ("data", ir.Selection(p, index=1, location=L(13, 3))),
                ("trained", ir.intrinsic_call(
                    "sequence_reduce",
                    ir.Struct([ir.Reference("data", DATA), ir.Reference("model", W), train_step]),
                    location=L(14),
                )),
                ("delta", ir.intrinsic_call(
                    "subtract", ir.Struct([ir.Reference("trained", W), ir.Reference("model", W)])
                )),
            ],
            ir.intrinsic_call(
                "multiply",
                ir.Struct([ir.Reference("delta", W), ir.Literal(np.float32(0.5), location=L(16, 30))]),
                location=L(16, 10),
            ),
            location=L(12),
        ),
        location=L(10),
    )

    # next: (<state=STATE@SERVER,data={BATCH*}@CLIENTS> -> <state=STATE@SERVER,clients=int32@SERVER>)
    arg_type = StructType([("state", FederatedType(STATE, SERVER)), ("data", FederatedType(DATA, CLIENTS))])
    arg = ir.Reference("arg", arg_type)
    s = ir.Reference("s", STATE)
    sd_type = StructType([STATE, W])
    sd = ir.Reference("sd", sd_type)
    update_state = ir.Lambda(
        "sd",
        sd_type,
        ir.Struct([
            ("model", ir.intrinsic_call("add", ir.Struct([
                ir.Selection(ir.Selection(sd, index=0), name="model"), ir.Selection(sd, index=1)
            ]))),
            ("round", ir.intrinsic_call("add", ir.Struct([
                ir.Selection(ir.Selection(sd, index=0), name="round"), ir.Literal(np.int32(1))
            ]))),
        ]),
    )
    next_fn = ir.Lambda(
        "arg",
        arg_type,
        ir.Block(
            [
                ("state", ir.Selection(arg, name="state", location=L(20))),
                ("model", ir.intrinsic_call("federated_apply", ir.Struct([
                    ir.Lambda("s", STATE, ir.Selection(s, name="model")),
                    ir.Reference("state", FederatedType(STATE, SERVER)),
                ]), location=L(21))),
                ("broadcast", ir.intrinsic_call(
                    "federated_broadcast", ir.Reference("model", FederatedType(W, SERVER)), location=L(22)
                )),
                ("zipped", ir.intrinsic_call("federated_zip_at_clients", ir.Struct([
                    ir.Reference("broadcast", FederatedType(W, CLIENTS, all_equal=True)),
                    ir.Selection(arg, name="data"),
                ]))),
                ("updates", ir.intrinsic_call("federated_map", ir.Struct([
                    ir.SymbolRef("client_update", client_update.type_signature, L(24, 30)),
                    ir.Reference("zipped", FederatedType(client_param, CLIENTS)),
                ]), location=L(24))),
                ("mean_delta", ir.intrinsic_call(
                    "federated_mean", ir.Reference("updates", FederatedType(W, CLIENTS))
                )),
                ("count", ir.intrinsic_call(
                    "federated_sum", ir.intrinsic_call("federated_value_at_clients", ir.Literal(np.int32(1)))
                )),
                ("new_state", ir.intrinsic_call("federated_apply", ir.Struct([
                    update_state,
                    ir.intrinsic_call("federated_zip_at_server", ir.Struct([
                        ir.Reference("state", FederatedType(STATE, SERVER)),
                        ir.Reference("mean_delta", FederatedType(W, SERVER)),
                    ])),
                ]))),
            ],
            ir.Struct([
                ("state", ir.Reference("new_state", FederatedType(STATE, SERVER))),
                ("clients", ir.Reference("count", FederatedType(I32, SERVER))),
            ]),
        ),
        location=L(19),
    )

    initialize = ir.Lambda(
        None,
        None,
        ir.intrinsic_call(
            "federated_eval_at_server",
            ir.Compiled("opaque", b"init graph", FunctionType(None, STATE), name=None),
        ),
        location=L(30),
    )
    x_type = TensorType(np.float32, [None, 784])
    x = ir.Reference("x", x_type)
    metrics = ir.Lambda("x", x_type, ir.Block(
        [
            ("total", ir.intrinsic_call("reduce_sum", x, axis=[0, 1], keepdims=True)),
            ("wide", ir.intrinsic_call("cast", ir.Reference("total", TensorType(np.float32, [1, 1])), dtype="float64")),
            ("flat", ir.intrinsic_call("reshape", ir.Reference("wide", TensorType(np.float64, [1, 1])), shape=[-1])),
        ],
        ir.Struct([
            ir.Reference("flat", TensorType(np.float64, [1])),  # unnamed and named elements
            ("zeros", ir.intrinsic_call("zeros", type=W)),  # a call without argument
            ("where", ir.Placement(CLIENTS, L(40))),
        ]),
    ))
    odd_types = ir.Struct([
        ir.Data("file:///data/unknown_rank", TensorType(np.float32, None)),
        ir.Data("mem://poly", FunctionType(AbstractType("T"), StructType([AbstractType("T"), PlacementType()]))),
        ("server_values", ir.Data("mem://x", FederatedType(F32, SERVER, all_equal=False))),
        ("client_value", ir.Data("mem://y", FederatedType(F32, CLIENTS, all_equal=True))),
        ("nothing", ir.Struct([])),
        ("placement", ir.Placement(SERVER)),
        ("text", ir.Literal(np.array(["héllo", "", "wörld\n"]))),
    ])
    return ir.Module("fedavg", [
        ("client_update", client_update),
        ("initialize", initialize),
        ("next", next_fn),
        ("metrics", metrics),
        ("odd_types", odd_types),
        ("dataset", ir.Data("file:///data/clients", FederatedType(DATA, CLIENTS), L(50))),
        ("call_symbol", ir.Call(ir.SymbolRef("initialize", initialize.type_signature))),
    ])


def test_temperature_roundtrip():
    assert_roundtrip(temperature_module())


def test_fedavg_roundtrip_covers_every_kind():
    module = fedavg_module()
    ir.verify(module)
    restored = assert_roundtrip(module)
    ir.verify(restored)
    message = pb.Module.FromString(ir.serialize(module))
    node_kinds = {entry.WhichOneof("kind") for entry in message.nodes}
    type_kinds = {entry.WhichOneof("kind") for entry in message.types}
    assert node_kinds == {f.name for f in pb.Node.DESCRIPTOR.oneofs_by_name["kind"].fields}
    assert type_kinds == {f.name for f in pb.Type.DESCRIPTOR.oneofs_by_name["kind"].fields}
    assert {e.selection.WhichOneof("selector") for e in message.nodes if e.HasField("selection")} == {
        "name", "index",
    }
    assert len(message.files) == 1  # the file name is stored once


def test_selection_keeps_name_or_index():
    struct = ir.Struct([("a", ir.Literal(np.int32(1))), ("b", ir.Literal(np.int32(2)))])
    module = ir.Module("m", {"by_name": ir.Selection(struct, name="b"), "by_index": ir.Selection(struct, index=1)})
    restored = assert_roundtrip(module)
    assert (restored["by_name"].name, restored["by_name"].index) == ("b", None)
    assert (restored["by_index"].name, restored["by_index"].index) == (None, 1)


def test_struct_python_container_is_not_serialized():
    import collections

    Point = collections.namedtuple("Point", ["x", "y"])
    node = ir.Struct([("x", ir.Literal(np.int32(1))), ("y", ir.Literal(np.int32(2)))], python_container=Point)
    restored = assert_roundtrip(ir.Module("m", {"p": node}))
    assert restored["p"].python_container is None


def test_empty_module_and_locations_everywhere():
    assert_roundtrip(ir.Module("empty"))
    odd = SourceLocation("", 0, 0)  # an empty file name and unknown line and column
    for line, column in ((-3, 0), (1, -1), (2**63, 1)):
        with pytest.raises(fedc.FedcError, match="a source location's"):
            SourceLocation("f.fed", line, column)
    node = ir.Struct([ir.Literal(np.int32(1), location=odd)], location=L(1 << 40, 7, "ünïcode/päth.py"))
    assert_roundtrip(ir.Module("m", {"a": node}))


# --------------------------------------------------------------------------
# Literals: bit-exact


def _literal_values(name):
    dtype = np.dtype(DTYPE_NAMES[name])
    if name == "str":
        return [np.array("x"), np.array(["", "a", "ünï\u20ac\U0001f600", " trailing "]),
                np.array([["a", "bb"], ["ccc", ""]]), np.array([], dtype=np.str_).reshape(0, 3)]
    if name == "bool":
        return [np.array(True), np.array([True, False, True]), np.zeros((2, 0), bool)]
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return [np.array(info.max, dtype), np.array([info.min, 0, 1, info.max], dtype).reshape(2, 2),
                np.zeros((0,), dtype)]
    nan_payload = np.frombuffer(np.array([0x7FF8DEADBEEF0001], np.uint64).tobytes(), np.float64)[0]
    special = [0.0, -0.0, np.inf, -np.inf, np.nan, np.finfo(np.float16).tiny, 1 / 3]
    values = [np.array(special, dtype), np.array(-0.0, dtype), np.arange(6, dtype=dtype).reshape(3, 2, 1)]
    if dtype.kind == "c":
        values.append(np.array([complex(np.nan, -0.0), complex(-np.inf, 1e-30)], dtype))
    if dtype == np.float64:
        values.append(np.array([nan_payload, -nan_payload]))
    if dtype == np.float32:
        values.append(np.frombuffer(b"\x01\x00\xc0\x7f\xff\xff\xff\xff", np.float32).copy())  # odd NaNs
    return values


@pytest.mark.parametrize("name", list(DTYPE_NAMES))
def test_literals_are_bit_exact(name):
    for k, value in enumerate(_literal_values(name)):
        node = ir.Literal(value, TensorType(DTYPE_NAMES[name], value.shape))
        restored = assert_roundtrip(ir.Module("m", {"lit": node}))["lit"]
        assert restored.value.dtype == node.value.dtype, k
        assert restored.value.shape == node.value.shape, k
        if name == "str":
            assert restored.value.tolist() == node.value.tolist(), k
        else:
            assert restored.value.tobytes() == node.value.tobytes(), k


def test_literal_bytes_are_little_endian():
    node = ir.Literal(np.array([1, 256], np.int32))
    message = pb.Module.FromString(ir.serialize(ir.Module("m", {"a": node})))
    assert message.nodes[0].literal.data == b"\x01\x00\x00\x00\x00\x01\x00\x00"
    assert list(message.nodes[0].literal.shape) == [2]


# --------------------------------------------------------------------------
# Types and intrinsic attributes


@pytest.mark.parametrize("t", [
    TensorType(np.float32, [None, 3, 0]),
    TensorType(np.complex64, None),
    TensorType(np.str_, [2]),
    StructType([]),
    StructType([("a", I32), F32, ("b", StructType([F32]))]),
    SequenceType(StructType([("x", TensorType(np.uint8, [28, 28]))])),
    FunctionType(None, I32),
    FunctionType(StructType([I32, I32]), FunctionType(I32, F32)),
    FederatedType(F32, CLIENTS),
    FederatedType(F32, CLIENTS, all_equal=True),
    FederatedType(StructType([SequenceType(I32)]), SERVER),
    FederatedType(F32, SERVER, all_equal=False),
    PlacementType(),
    AbstractType("T"),
    FunctionType(AbstractType("Model_1"), FederatedType(AbstractType("Model_1"), SERVER)),
])
def test_every_type_roundtrips(t):
    restored = assert_roundtrip(ir.Module("m", {"d": ir.Data("mem://d", t), "r": ir.Reference("r", t)}))
    assert restored["d"].type_signature == t
    assert repr(restored["d"].type_signature) == repr(t)


def test_intrinsic_attr_values_roundtrip(monkeypatch):
    """None, bool, int, float, str, tuple of ints and types, through a test-only intrinsic."""
    names = ["none", "flag", "count", "ratio", "text", "dims", "t"]
    definition = IntrinsicDef(
        "test_serialization_attrs", "( -> int32)", IntrinsicKind.LOCAL, lambda d, p, attrs: I32,
        "a test intrinsic", attrs=tuple(AttrSpec(n, lambda v: v, default="unset") for n in names),
        has_parameter=False,
    )
    monkeypatch.setitem(registry._REGISTRY, definition.uri, definition)
    attrs = {"none": None, "flag": False, "count": -(1 << 62), "ratio": -0.0, "text": "ü",
             "dims": (), "t": FederatedType(W, CLIENTS)}
    node = ir.Intrinsic(definition.uri, FunctionType(None, I32), attrs)
    restored = assert_roundtrip(ir.Module("m", {"i": node}))["i"]
    values = dict(restored.attrs)
    assert values == attrs
    assert math.copysign(1, values["ratio"]) == -1.0
    assert type(values["flag"]) is bool and type(values["count"]) is int
    nan_node = ir.Intrinsic(definition.uri, FunctionType(None, I32), {"ratio": float("nan"), "dims": (1, -1)})
    restored = ir.deserialize(ir.serialize(ir.Module("m", {"i": nan_node})))["i"]
    assert math.isnan(dict(restored.attrs)["ratio"]) and dict(restored.attrs)["dims"] == (1, -1)

    too_big = ir.Intrinsic(definition.uri, FunctionType(None, I32), {"count": 1 << 64})
    with pytest.raises(SerializationError, match="does not fit in 64 bits"):
        ir.serialize(ir.Module("m", {"i": too_big}))
    odd = ir.Intrinsic(definition.uri, FunctionType(None, I32), {"count": b"raw"})
    with pytest.raises(SerializationError, match="attribute count"):
        ir.serialize(ir.Module("m", {"i": odd}))


def test_serialize_rejects_what_it_cannot_carry():
    with pytest.raises(SerializationError, match="expects a fedc.ir.Module"):
        ir.serialize(fedavg_module()["next"])
    with pytest.raises(fedc.FedcError, match="a source location's line is an integer from 0 to 2\\*\\*63-1, not 'one'"):
        SourceLocation("f.py", "one", 1)  # so no IR holds a location that a form of IR cannot carry
    surrogate = ir.Data("mem://\ud800", I32)
    with pytest.raises(SerializationError, match="cannot serialize data in computation @a: "):
        ir.serialize(ir.Module("m", {"a": surrogate}))


# --------------------------------------------------------------------------
# Hash-consing


def test_equal_subtrees_are_stored_once():
    rng = np.random.default_rng(0)
    weights = rng.standard_normal(25_000).astype(np.float32)  # 100 kB
    first, second = ir.Literal(weights.copy()), ir.Literal(weights.copy())
    assert first is not second
    module = ir.Module("m", {"a": first, "b": ir.Struct([second, ir.Literal(weights.copy())])})
    data = ir.serialize(module)
    assert len(data) < 1.1 * weights.nbytes
    message = pb.Module.FromString(data)
    assert sum(entry.HasField("literal") for entry in message.nodes) == 1
    restored = assert_roundtrip(module)
    assert restored["a"] is restored["b"].elements[0][1]

    # Equal types are stored once too, however many nodes use them.
    assert len({bytes(t.SerializeToString()) for t in message.types}) == len(message.types)


def test_nodes_with_different_locations_are_kept_apart():
    a = ir.Literal(np.int32(7), location=L(1))
    b = ir.Literal(np.int32(7), location=L(2))
    module = ir.Module("m", {"s": ir.Struct([a, b, ir.Literal(np.int32(7), location=L(1))])})
    message = pb.Module.FromString(ir.serialize(module))
    assert sum(entry.HasField("literal") for entry in message.nodes) == 2
    assert_roundtrip(module)


def test_serialization_is_deterministic():
    assert ir.serialize(fedavg_module()) == ir.serialize(fedavg_module())


# --------------------------------------------------------------------------
# Malformed input


def _load_or_error(data, **limits):
    """Deserializes; only a module or a SerializationError may come out."""
    try:
        module = ir.deserialize(data, **limits)
    except SerializationError as e:
        assert str(e)
        return e
    assert isinstance(module, ir.Module)
    return module


def test_every_truncation_fails_cleanly():
    data = ir.serialize(fedavg_module())
    outcomes = [_load_or_error(data[:cut]) for cut in range(len(data))]
    assert all(isinstance(o, (SerializationError, ir.Module)) for o in outcomes)
    assert isinstance(outcomes[0], SerializationError)  # empty: version 0


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_raise_anything_else(data):
    _load_or_error(data)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_corrupted_bytes_never_raise_anything_else(draw):
    raw = bytearray(ir.serialize(temperature_module()))
    for _ in range(draw.draw(st.integers(1, 6))):
        raw[draw.draw(st.integers(0, len(raw) - 1))] = draw.draw(st.integers(0, 255))
    _load_or_error(bytes(raw))


def new_module(name="m") -> pb.Module:
    message = pb.Module()
    message.version = serialization.FORMAT_VERSION
    message.name = name
    return message


def add_tensor(message, dtype="int32", dims=()):
    entry = message.types.add()
    entry.tensor.dtype = dtype
    entry.tensor.dims.extend(dims)
    return len(message.types) - 1


def add_literal(message, value=np.int32(3)):
    array = np.asarray(value)
    entry = message.nodes.add()
    entry.literal.dtype = fedc.types.dtype_name(array.dtype)
    entry.literal.shape.extend(array.shape)
    entry.literal.data = array.astype(array.dtype.newbyteorder("<")).tobytes()
    return len(message.nodes) - 1


def expose(message, node, name="c"):
    entry = message.computations.add()
    entry.name = name
    entry.node = node


def assert_rejected(message_or_bytes, pattern, **limits):
    data = message_or_bytes
    if not isinstance(data, (bytes, bytearray)):
        data = data.SerializeToString()
    with pytest.raises(SerializationError, match=pattern) as info:
        ir.deserialize(data, **limits)
    return info.value


def test_valid_hand_built_module_loads():
    message = new_module()
    expose(message, add_literal(message))
    assert ir.deserialize(message.SerializeToString()) == ir.Module("m", {"c": ir.Literal(np.int32(3))})


def test_rejects_forward_and_self_references():
    message = new_module()
    entry = message.types.add()
    entry.sequence.element = 1
    add_tensor(message)
    assert_rejected(message, r"type 0 \(sequence\) element: refers to type 1, which comes later")

    message = new_module()
    entry = message.types.add()
    entry.struct.elements.add().type = 0
    assert_rejected(message, r"type 0 \(struct\) element 0: refers to type 0, which is the entry itself")

    message = new_module()
    add_literal(message)
    message.nodes.add().call.function = 1
    assert_rejected(message, r"node 1 \(call\) function: refers to node 1, which is the entry itself")

    message = new_module()
    add_literal(message)
    message.nodes.add().selection.source = 2
    message.nodes.add().placement.placement = pb.PLACEMENT_SERVER
    assert_rejected(message, r"node 1 \(selection\) source: refers to node 2, which comes later")


def test_rejects_indices_out_of_range():
    message = new_module()
    entry = message.types.add()
    entry.function.result = 5
    assert_rejected(message, r"type 0 \(function\) result: refers to type 5, which does not exist \(the type table has 1 entries\)")

    message = new_module()
    add_tensor(message)
    entry = message.nodes.add()
    entry.reference.name = "x"
    entry.reference.type = 1
    assert_rejected(message, r"node 0 \(reference\): refers to type 1, which does not exist")

    message = new_module()
    add_literal(message)
    expose(message, 1)
    assert_rejected(message, r"computation 0 \(@c\): refers to node 1, which does not exist")

    message = new_module()
    add_literal(message)
    message.nodes[0].location.file = 0
    assert_rejected(message, r"node 0 \(literal\): its location refers to file 0, which does not exist")

    message = new_module()
    entry = message.nodes.add()
    entry.block.result = 4_000_000_000
    assert_rejected(message, r"node 0 \(block\) result: refers to node 4000000000, which does not exist")


def test_rejects_children_of_the_wrong_kind():
    # A selection from a tensor.
    message = new_module()
    add_literal(message)
    message.nodes.add().selection.index = 0
    assert_rejected(message, r"node 1 \(selection\): selection \[0\] needs a struct, but its source has type int32")

    # A call of a non-function.
    message = new_module()
    add_literal(message)
    message.nodes.add().call.function = 0
    assert_rejected(message, r"node 1 \(call\): cannot call a value of type int32")

    # A call whose argument has the wrong type.
    message = new_module()
    f32 = add_tensor(message, "float32")
    clients = message.types.add()
    clients.federated.member = f32
    clients.federated.placement = pb.PLACEMENT_CLIENTS
    server = message.types.add()
    server.federated.member = f32
    server.federated.placement = pb.PLACEMENT_SERVER
    server.federated.all_equal = True
    fn = message.types.add()
    fn.function.parameter = 1
    fn.function.result = 2
    intrinsic = message.nodes.add()
    intrinsic.intrinsic.uri = "federated_mean"
    intrinsic.intrinsic.type = 3
    add_literal(message, np.float32(1))
    call = message.nodes.add()
    call.call.function = 0
    call.call.argument = 1
    assert_rejected(message, r"node 2 \(call\): argument of federated_mean: expected \{float32\}@CLIENTS, got float32")

    # An intrinsic whose declared type breaks its type rule.
    message.nodes[0].intrinsic.uri = "federated_broadcast"
    assert_rejected(message, r"node 0 \(intrinsic\): federated_broadcast expects")

    # A lambda with a parameter name but no parameter type.
    message = new_module()
    add_literal(message)
    entry = message.nodes.add()
    entry.lambda_expr.parameter_name = "x"  # a name without a type
    entry.lambda_expr.result = 0
    assert_rejected(message, r"node 1 \(lambda_expr\): a lambda has both a parameter name and type, or neither")


def test_rejects_bad_fields():
    cases = []
    message = new_module()
    add_tensor(message, "float128")
    cases.append((message, r"type 0 \(tensor\): unknown dtype 'float128'; the dtypes are bool, int8"))

    message = new_module()
    add_tensor(message, "int32", [3, -2])
    cases.append((message, r"type 0 \(tensor\): has dimension -2"))

    message = new_module()
    message.types.add().tensor.unknown_rank = True
    message.types[0].tensor.dims.append(3)
    message.types[0].tensor.dtype = "int32"
    cases.append((message, "has an unknown rank and also dimensions"))

    message = new_module()
    message.types.add()
    cases.append((message, r"type 0: is empty"))

    message = new_module()
    message.nodes.add().location.line = 3
    cases.append((message, r"node 0: is empty"))

    message = new_module()
    message.types.add().abstract.label = "lower"
    cases.append((message, r"type 0 \(abstract\): an abstract type's label"))

    message = new_module()
    add_tensor(message)
    message.types.add().federated.member = 0
    cases.append((message, r"type 1 \(federated\): unknown placement 0"))

    message = new_module()
    message.nodes.add().placement.placement = 7
    cases.append((message, r"node 0 \(placement\): unknown placement 7"))

    message = new_module()
    add_tensor(message)
    entry = message.nodes.add()
    entry.reference.name = "not an identifier"
    cases.append((message, r"node 0 \(reference\): a reference name must be an identifier"))

    message = new_module()
    add_literal(message)
    message.nodes.add().selection.source = 0
    cases.append((message, r"node 1 \(selection\): selects neither by name nor by index"))

    message = new_module()
    add_tensor(message)
    fn = message.types.add()
    fn.function.result = 0
    entry = message.nodes.add()
    entry.intrinsic.uri = "no_such_intrinsic"
    entry.intrinsic.type = 1
    cases.append((message, r"node 0 \(intrinsic\): unknown intrinsic 'no_such_intrinsic'"))

    message = new_module()
    add_tensor(message)
    message.types.add().function.result = 0
    entry = message.nodes.add()
    entry.intrinsic.uri = "zeros"
    entry.intrinsic.type = 1
    entry.intrinsic.attrs.add().name = "type"
    cases.append((message, r"node 0 \(intrinsic\) attribute 'type': has no value"))
    message = pb.Module.FromString(message.SerializeToString())
    message.nodes[0].intrinsic.attrs[0].type_value = 0
    message.nodes[0].intrinsic.attrs.add().name = "type"
    message.nodes[0].intrinsic.attrs[1].type_value = 0
    cases.append((message, r"attribute 'type' is given twice"))
    message = pb.Module.FromString(message.SerializeToString())
    del message.nodes[0].intrinsic.attrs[1]
    message.nodes[0].intrinsic.attrs[0].name = "colour"
    cases.append((message, r"zeros has no attribute 'colour'"))

    message = new_module("9lives")
    cases.append((message, r"module @9lives: a module name must be an identifier"))

    message = new_module()
    expose(message, add_literal(message), "a")
    expose(message, 0, "a")
    cases.append((message, r"module @m defines @a twice"))

    for message, pattern in cases:
        assert_rejected(message, pattern)


def test_rejects_bad_literals():
    message = new_module()
    add_literal(message, np.array([1, 2, 3], np.int32))
    message.nodes[0].literal.data = message.nodes[0].literal.data[:-1]
    assert_rejected(message, r"node 0 \(literal\): has 11 bytes of data, but shape \[3\] of int32 takes 12 bytes")

    message.nodes[0].literal.data = b""
    message.nodes[0].literal.ClearField("shape")
    message.nodes[0].literal.shape.extend([1 << 20, 1 << 20])
    assert_rejected(message, r"takes \d+ bytes")
    message.nodes[0].literal.ClearField("shape")
    message.nodes[0].literal.shape.extend([1 << 40, 1 << 40])  # the element count overflows int64
    assert_rejected(message, r"more than 9223372036854775807 elements")

    message = new_module()
    add_literal(message, np.array([True, False]))
    message.nodes[0].literal.data = b"\x01\x02"
    assert_rejected(message, "bool literal with a byte other than 0 or 1")

    message = new_module()
    entry = message.nodes.add()
    entry.literal.dtype = "str"
    entry.literal.shape.append(2)
    entry.literal.strings.append("only one")
    assert_rejected(message, r"has 1 strings but its shape \[2\] has 2 elements")
    entry.literal.strings.append("two")
    entry.literal.data = b"xx"
    assert_rejected(message, "str literal but has raw bytes")

    message = new_module()
    entry = message.nodes.add()
    entry.literal.dtype = "object"
    assert_rejected(message, r"node 0 \(literal\): unknown dtype 'object'")

    message = new_module()
    entry = message.nodes.add()
    entry.literal.dtype = "float32"
    entry.literal.shape.extend([1] * 33)
    entry.literal.data = b"\x00" * 4
    assert_rejected(message, "rank 33; fedc's tensors have rank at most 32")

    # A small input that would decode to a huge padded numpy str array.
    message = new_module()
    entry = message.nodes.add()
    entry.literal.dtype = "str"
    entry.literal.shape.append(100_000)
    entry.literal.strings.extend(["x" * 10_000] + [""] * 99_999)
    assert_rejected(message, "decodes to more than max_bytes=1000000", max_bytes=1_000_000)


def test_rejects_unknown_versions():
    message = new_module()
    message.version = 2
    assert_rejected(message, r"unknown format version 2 \(this fedc reads version 1\)")
    message.version = 0
    assert_rejected(message, "unknown format version 0")
    assert_rejected(b"", "unknown format version 0")


def test_rejects_oversize_input_before_parsing():
    data = ir.serialize(fedavg_module())
    assert ir.deserialize(data, max_bytes=len(data)) == fedavg_module()
    assert_rejected(data, f"is {len(data)} bytes, more than the limit max_bytes={len(data) - 1}", max_bytes=len(data) - 1)
    # Checked before parsing: garbage over the limit is not even looked at.
    assert_rejected(b"\xff" * 100, "more than the limit max_bytes=10", max_bytes=10)


@pytest.mark.parametrize("value", ["text", None, 42, [1, 2], object(), fedavg_module()])
def test_rejects_non_bytes(value):
    with pytest.raises(SerializationError, match="deserialize expects bytes"):
        ir.deserialize(value)


def test_accepts_bytes_like():
    data = ir.serialize(temperature_module())
    assert ir.deserialize(bytearray(data)) == temperature_module()
    assert ir.deserialize(memoryview(data)) == temperature_module()
    with pytest.raises(ValueError):
        ir.deserialize(data, max_depth=0)


def test_rejects_malformed_protobuf():
    assert_rejected(b"\x0a\x05ab", "protobuf is malformed or truncated")
    # A string field that is not UTF-8.
    assert_rejected(b"\x08\x01\x12\x02\xff\xfe", "protobuf is malformed or truncated")
    # Deeply nested unknown groups do not blow the parser's stack.
    assert_rejected(b"\xa3\x06" * 100_000 + b"\xa4\x06" * 100_000, "protobuf is malformed")


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def test_rejects_a_million_deep_chain_of_nodes():
    # node 0 = CLIENTS; node i = ( -> node i-1 ), a million deep. Written by hand for speed.
    header = b"\x08\x01" + _field(2, b"m")
    first = _field(4, _field(9, b"\x08\x01"))
    chain = b"".join(_field(4, _field(6, b"\x18" + _varint(i - 1))) for i in range(1, 1_000_000))
    data = header + first + chain
    error = assert_rejected(data, r"node 1000 \(lambda_expr\): nested 1001 deep, more than the limit max_depth=1000")
    assert "max_depth" in str(error)
    # The same prefix within the limit loads.
    short = header + first + b"".join(_field(4, _field(6, b"\x18" + _varint(i - 1))) for i in range(1, 20))
    expose_last = _field(5, _field(1, b"c") + b"\x10" + _varint(19))
    assert isinstance(ir.deserialize(short + expose_last), ir.Module)
    assert_rejected(short + expose_last, "nested 11 deep, more than the limit max_depth=10", max_depth=10)


def test_rejects_a_million_deep_chain_of_types():
    header = b"\x08\x01" + _field(2, b"m")
    first = _field(3, _field(1, _field(1, b"int32")))
    chain = b"".join(_field(3, _field(2, _field(1, b"\x10" + _varint(i - 1)))) for i in range(1, 1_000_000))
    assert_rejected(header + first + chain, r"type 1000 \(struct\): nested 1001 deep")


def test_rejects_exponential_sharing_of_types():
    message = new_module()
    add_tensor(message)
    for i in range(1, 40):
        entry = message.types.add().struct
        entry.elements.add().type = i - 1
        entry.elements.add().type = i - 1
    assert_rejected(message, r"type 20 \(struct\): is too large \(more than 1048576 parts written out\)")


def test_rejects_exponential_sharing_of_nodes():
    message = new_module()
    add_literal(message)
    for i in range(1, 60):
        entry = message.nodes.add().struct
        entry.elements.add().value = i - 1
        entry.elements.add().value = i - 1
    assert_rejected(message, r"node 20 \(struct\): its type is too large")


def test_rejects_too_much_type_checking_work(monkeypatch):
    # Many calls, each checking an argument of a large (but allowed) type.
    monkeypatch.setattr(serialization, "_MAX_WORK", 50_000)
    message = new_module()
    add_tensor(message)
    for i in range(1, 13):  # a struct type of 8191 parts
        entry = message.types.add().struct
        entry.elements.add().type = i - 1
        entry.elements.add().type = i - 1
    big = len(message.types) - 1
    fn = message.types.add().function
    fn.parameter = big
    fn.result = 0
    f = message.nodes.add().reference
    f.name, f.type = "f", big + 1
    x = message.nodes.add().reference
    x.name, x.type = "x", big
    for _ in range(100):
        call = message.nodes.add().call
        call.function, call.argument = 0, 1
    assert_rejected(message, r"node 8 \(call\): the module's types are too large to type-check")


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 50)), max_size=40))
def test_random_tables_never_raise_anything_else(entries):
    """Random small tables of plausible entries: a module or a SerializationError."""
    message = new_module()
    add_tensor(message)
    add_literal(message)
    for kind, index in entries:
        if kind == 0:
            message.types.add().sequence.element = index
        elif kind == 1:
            e = message.types.add().function
            e.result = index
        elif kind == 2:
            e = message.nodes.add().struct
            e.elements.add().value = index
            e.elements.add(name="a").value = index
        elif kind == 3:
            e = message.nodes.add().call
            e.function = index
        else:
            e = message.nodes.add().lambda_expr
            e.parameter_name, e.parameter_type, e.result = "p", index, index
        if index < len(message.nodes):
            expose(message, index, f"c{len(message.computations)}")
    _load_or_error(message.SerializeToString())


# --------------------------------------------------------------------------
# The generated module


def _proto_schema(text: str) -> dict:
    """{message or enum name: {field: (number, label, type, oneof)}} read from .proto text."""
    text = re.sub(r"//[^\n]*", "", text)
    schema = {}
    for kind, name, body in re.findall(r"^(message|enum)\s+(\w+)\s*\{(.*?)^\}", text, re.M | re.S):
        fields = {}
        if kind == "enum":
            for value, number in re.findall(r"(\w+)\s*=\s*(\d+)\s*;", body):
                fields[value] = (int(number),)
        else:
            oneof_of = {}
            for oneof, inner in re.findall(r"oneof\s+(\w+)\s*\{(.*?)\}", body, re.S):
                for field in re.findall(r"(\w+)\s*=\s*\d+\s*;", inner):
                    oneof_of[field] = oneof
            for label, ftype, field, number in re.findall(
                r"^\s*(optional\s+|repeated\s+)?([\w.]+)\s+(\w+)\s*=\s*(\d+)\s*;", body, re.M
            ):
                fields[field] = (int(number), label.strip() or None, ftype, oneof_of.get(field))
        assert name not in schema, name
        schema[name] = fields
    return schema


_SCALARS = {
    "TYPE_BOOL": "bool", "TYPE_BYTES": "bytes", "TYPE_DOUBLE": "double", "TYPE_FLOAT": "float",
    "TYPE_INT32": "int32", "TYPE_INT64": "int64", "TYPE_SINT32": "sint32", "TYPE_SINT64": "sint64",
    "TYPE_STRING": "string", "TYPE_UINT32": "uint32", "TYPE_UINT64": "uint64",
    "TYPE_FIXED32": "fixed32", "TYPE_FIXED64": "fixed64", "TYPE_SFIXED32": "sfixed32",
    "TYPE_SFIXED64": "sfixed64",
}


def _descriptor_schema() -> dict:
    from google.protobuf.descriptor import FieldDescriptor

    by_number = {getattr(FieldDescriptor, name): word for name, word in _SCALARS.items()}
    schema = {}
    for name, message in pb.DESCRIPTOR.message_types_by_name.items():
        fields = {}
        for f in message.fields:
            repeated = f.is_repeated if hasattr(f, "is_repeated") else f.label == FieldDescriptor.LABEL_REPEATED
            oneof = f.containing_oneof.name if f.containing_oneof is not None else None
            label = "repeated" if repeated else None
            if oneof == "_" + f.name:  # proto3 optional: a synthetic oneof
                label, oneof = "optional", None
            if f.type == FieldDescriptor.TYPE_MESSAGE:
                ftype = f.message_type.name
            elif f.type == FieldDescriptor.TYPE_ENUM:
                ftype = f.enum_type.name
            else:
                ftype = by_number[f.type]
            fields[f.name] = (f.number, label, ftype, oneof)
        schema[name] = fields
    for name, enum in pb.DESCRIPTOR.enum_types_by_name.items():
        schema[name] = {v.name: (v.number,) for v in enum.values}
    return schema


def test_generated_module_matches_the_proto():
    """Fails when computation.proto is edited without running scripts/gen_proto.sh."""
    from_text = _proto_schema(PROTO.read_text())
    assert from_text["Module"]["nodes"] == (4, "repeated", "Node", None)  # the regex reads the file
    assert from_text == _descriptor_schema()
    assert pb.DESCRIPTOR.package == "fedc.ir"


def test_generated_module_loads_on_old_runtimes():
    """The gencode must not be newer than protobuf 5.28 (the oldest runtime fedc supports)."""
    text = PB2.read_text()
    version = re.search(r"Protobuf Python Version: (\d+)\.(\d+)\.(\d+)", text)
    assert version, "computation_pb2.py is not protoc output"
    assert tuple(map(int, version.groups())) <= (5, 28, 0)
    call = re.search(r"ValidateProtobufRuntimeVersion\(\s*\S+,\s*(\d+),\s*(\d+),\s*(\d+),", text)
    assert call and call.groups() == version.groups()


def test_import_fedc_does_not_load_protobuf_code():
    code = (
        "import sys, fedc, fedc.ir; "
        "assert 'fedc.ir.computation_pb2' not in sys.modules; "
        "assert 'fedc.ir.serialization' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
