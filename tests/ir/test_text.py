"""The textual IR: golden texts, exact round trips (with locations), located errors."""

import textwrap

import numpy as np
import pytest

from fedc import ir
from fedc.errors import ParseError, SourceLocation, VerificationError
from fedc.ir.text import intrinsic_uri, op_name, parse_module, parse_node, print_module, print_node
from fedc.types import (
    CLIENTS,
    SERVER,
    FederatedType,
    FunctionType,
    SequenceType,
    StructType,
    TensorType,
)

F32 = TensorType(np.float32)
I32 = TensorType(np.int32)
BOOL = TensorType(np.bool_)
call = ir.intrinsic_call


def _same(a: ir.Module, b: ir.Module) -> bool:
    return a == b and all(ir.equal(a[s], b[s], locations=True) for s in a)


def _roundtrip_module(module: ir.Module, verify: bool = True) -> str:
    text = print_module(module)
    parsed = parse_module(text, verify=verify)
    assert _same(parsed, module), text
    assert print_module(parsed) == text
    return text


def _roundtrip_node(node: ir.Node) -> str:
    text = print_node(node)
    parsed = parse_node(text)
    assert ir.equal(parsed, node, locations=True), text
    assert print_node(parsed) == text
    return text


def _loc(line, column, file="a.fed"):
    return SourceLocation(file, line, column)


# --------------------------------------------------------------------------
# Goldens

TEMPERATURE = """\
fedc.module @temperature {
  fedc.func @get_average_temperature(%t: {float32}@CLIENTS) -> float32@SERVER {
    %0 = fed.mean(%t) : ({float32}@CLIENTS -> float32@SERVER)
    fedc.return %0
  }
}
"""


def _temperature():
    t = FederatedType(np.float32, CLIENTS)
    return ir.Module(
        "temperature",
        [("get_average_temperature", ir.Lambda("t", t, call("federated_mean", ir.Reference("t", t))))],
    )


def test_temperature_golden():
    module = _temperature()
    assert print_module(module) == TEMPERATURE
    assert str(module) == TEMPERATURE
    assert _same(parse_module(TEMPERATURE), module)


PAYLOAD = b"\x08\x01serialized GraphDef \xff\x00"  # kind "opaque": bytes fedc keeps but never runs
MODEL = StructType([("w", TensorType(np.float32, [2])), ("b", F32)])
DATA = SequenceType(TensorType(np.float32, [None, 2]))
STATE = StructType([("server", FederatedType(MODEL, SERVER)), ("clients", FederatedType(DATA, CLIENTS))])


def _fedavg():
    at = lambda line, column: SourceLocation("fedavg.fed", line, column)  # noqa: E731
    compiled = ir.Compiled(
        "opaque", PAYLOAD, FunctionType(StructType([("model", MODEL), ("data", DATA)]), MODEL), "client_update"
    )
    p = ir.Reference("p", STATE)
    model = call("federated_broadcast", ir.Selection(p, name="server"))
    zipped = call(
        "federated_zip_at_clients",
        ir.Struct([("model", ir.Reference("model", model.type_signature)), ("data", ir.Selection(p, name="clients"))]),
    )
    x = ir.Reference("x", zipped.type_signature.member)
    client_fn = ir.Lambda("x", x.type_signature, ir.Call(ir.SymbolRef("client_update", compiled.type_signature), x))
    updates = call("federated_map", ir.Struct([client_fn, zipped]), location=at(7, 13))
    mean = call("federated_mean", ir.Reference("updates", updates.type_signature))
    m = ir.Reference("m", MODEL)
    new_w = call("multiply", ir.Struct([ir.Selection(m, name="w"), ir.Literal(np.float32(0.5))]))
    norm = call("reduce_sum", ir.Selection(m, index=0), axis=[0], keepdims=True)
    server_fn = ir.Lambda(
        "m", MODEL, ir.Struct([("model", ir.Struct([("w", new_w), ("b", ir.Selection(m, name="b"))])), ("norm", norm)])
    )
    result = call("federated_apply", ir.Struct([server_fn, ir.Reference("mean", mean.type_signature)]))
    body = ir.Block([("model", model), ("updates", updates), ("mean", mean)], result)
    return ir.Module("fedavg", [("next", ir.Lambda("p", STATE, body, at(3, 1))), ("client_update", compiled)])


M = "<w=float32[2],b=float32>"
Z = f"<model={M},data=float32[?,2]*>"
HASH = "sha256:b38e66be9602a907139a8c9a4d671748f207e40f37e5a7d48192f43b51f201b9"
FEDAVG = f"""\
fedc.module @fedavg {{
  fedc.func @next(%p: <server={M}@SERVER,clients={{float32[?,2]*}}@CLIENTS>) -> <model={M},norm=float32[1]>@SERVER loc("fedavg.fed":3:1) {{
    %model = fed.broadcast(%p.server) : ({M}@SERVER -> {M}@CLIENTS)
    %0 = fedc.lambda(%x: {Z}) -> {M} {{
      %1 = fedc.call @client_update(%x) : {M}
      fedc.return %1
    }}
    %2 = fed.zip_at_clients(model=%model, data=%p.clients) : (<model={M}@CLIENTS,data={{float32[?,2]*}}@CLIENTS> -> {{{Z}}}@CLIENTS)
    %updates = fed.map(%0, %2) : (<({Z} -> {M}),{{{Z}}}@CLIENTS> -> {{{M}}}@CLIENTS) loc("fedavg.fed":7:13)
    %mean = fed.mean(%updates) : ({{{M}}}@CLIENTS -> {M}@SERVER)
    %3 = fedc.lambda(%m: {M}) -> <model={M},norm=float32[1]> {{
      %4 = fedc.constant 0.5 : float32
      %5 = local.multiply(%m.w, %4) : (<float32[2],float32> -> float32[2])
      %6 = local.reduce_sum(%m[0]) {{axis = [0], keepdims = true}} : (float32[2] -> float32[1])
      fedc.return <model=<w=%5, b=%m.b>, norm=%6>
    }}
    %7 = fed.apply(%3, %mean) : (<({M} -> <model={M},norm=float32[1]>),{M}@SERVER> -> <model={M},norm=float32[1]>@SERVER)
    fedc.return %7
  }}

  fedc.value @client_update : ({Z} -> {M}) {{
    %0 = fedc.compiled opaque @client_update "{HASH}" : ({Z} -> {M})
    fedc.return %0
  }}
}}

{{-#
  resources: {{
    "{HASH}": "CAFzZXJpYWxpemVkIEdyYXBoRGVmIP8A"
  }}
#-}}
"""


def test_fedavg_golden_roundtrips_both_ways():
    module = _fedavg()
    assert print_module(module) == FEDAVG
    parsed = parse_module(FEDAVG)
    assert _same(parsed, module)
    assert parsed["client_update"].payload == PAYLOAD
    assert print_module(parsed) == FEDAVG


def test_elided_resources_and_locations():
    module = _fedavg()
    dump = print_module(module, elide_resources=True, locations=False)
    assert "{-#" not in dump and "loc(" not in dump
    assert dump == FEDAVG.split("\n{-#")[0].replace(' loc("fedavg.fed":3:1)', "").replace(
        ' loc("fedavg.fed":7:13)', ""
    )
    with pytest.raises(ParseError) as info:
        parse_module(dump, "dump.ir")
    assert (info.value.location.line, info.value.location.column) == (22, 46)
    assert "elide_resources" in info.value.message and HASH in info.value.message
    # Without locations the text still parses (to the module without locations).
    no_locations = print_module(module, locations=False)
    assert parse_module(no_locations) == module
    assert all(n.location is None for s, c in parse_module(no_locations).items() for n in c.walk())


def test_comments_whitespace_and_dump_headers_are_ignored():
    text = "// -----// IR Dump After inline //----- //\n" + TEMPERATURE.replace(
        "    fedc.return %0", "    // the mean\n    fedc.return    %0 // done"
    ).replace("\n  fedc.func", "\n\n\tfedc.func")
    assert _same(parse_module(text), _temperature())


def test_handwritten_text_prints_canonically():
    text = """
    fedc.module @m { fedc.func @f(%x: float32) -> <float32,float32> {
      %7 = local.negative(%x) : (float32 -> float32)
      %a = local.add(%x, %7) : (<float32,float32> -> float32)
      %3 = fedc.constant 2 : float32   // an int written for a float
      fedc.return <%a, %3> } }
    """
    module = parse_module(text)
    canonical = print_module(module)
    assert "%0 = local.negative(%x)" in canonical and "%1 = fedc.constant 2.0 : float32" in canonical
    assert print_module(parse_module(canonical)) == canonical


def test_print_node_and_parse_node():
    t = FederatedType(np.float32, CLIENTS)
    lam = ir.Lambda("t", t, call("federated_mean", ir.Reference("t", t)))
    assert print_node(lam) == textwrap.dedent("""\
        fedc.func(%t: {float32}@CLIENTS) -> float32@SERVER {
          %0 = fed.mean(%t) : ({float32}@CLIENTS -> float32@SERVER)
          fedc.return %0
        }
        """)
    # Open terms and symbol references carry their types when printed alone.
    open_term = call("add", ir.Struct([ir.Reference("y", F32), ir.SymbolRef("c", F32)]))
    text = _roundtrip_node(open_term)
    assert "fedc.ref %y : float32" in text and "fedc.ref @c : float32" in text
    with pytest.raises(ParseError, match="undefined value %y"):
        parse_module("fedc.module @m {\n" + text.replace("fedc.value", "fedc.value @v") + "}\n")


def test_op_names():
    assert op_name(ir.lookup("federated_mean")) == "fed.mean"
    assert op_name(ir.lookup("sequence_reduce")) == "seq.reduce"
    assert op_name(ir.lookup("reduce_sum")) == "local.reduce_sum"
    names = [op_name(d) for d in ir.all_definitions()]
    assert len(set(names)) == len(names)
    for definition in ir.all_definitions():
        assert intrinsic_uri(op_name(definition)) == definition.uri


# --------------------------------------------------------------------------
# Totality: every intrinsic, every node kind, every literal dtype

_CANDIDATE_PARAMETERS = [
    FederatedType(np.float32, CLIENTS),
    FederatedType(np.float32, SERVER),
    FederatedType(np.float32, CLIENTS, all_equal=True),
    F32,
    SequenceType(F32),
    FunctionType(None, F32),
    StructType([F32, F32]),
    StructType([BOOL, BOOL]),
    BOOL,
    StructType([BOOL, F32, F32]),
    StructType([F32, F32, F32]),
    StructType([TensorType(np.float32, [2, 3]), TensorType(np.float32, [3, 4])]),
    TensorType(np.float32, [2, 3]),
    StructType([FunctionType(F32, F32), FederatedType(np.float32, SERVER)]),
    StructType([FunctionType(F32, F32), FederatedType(np.float32, CLIENTS)]),
    StructType([FunctionType(F32, F32), FederatedType(np.float32, CLIENTS, all_equal=True)]),
    StructType([FederatedType(np.float32, CLIENTS), FederatedType(np.float32, CLIENTS)]),
    StructType([("a", FederatedType(np.float32, SERVER)), FederatedType(np.float32, SERVER)]),
    StructType([FederatedType(np.int32, CLIENTS), I32]),
    StructType([
        FederatedType(np.float32, CLIENTS), F32, FunctionType(StructType([F32, F32]), F32),
        FunctionType(StructType([F32, F32]), F32), FunctionType(F32, F32),
    ]),
    StructType([
        FederatedType(TensorType(np.int32, [None]), CLIENTS), FederatedType(np.int32, SERVER),
        FederatedType(np.float32, SERVER), FunctionType(StructType([F32, I32]), F32),
    ]),
    StructType([FunctionType(F32, F32), SequenceType(F32)]),
    StructType([TensorType(np.bool_), F32]),
    StructType([SequenceType(F32), F32, FunctionType(StructType([F32, F32]), F32)]),
    None,
]
_ATTRS = {
    "cast": {"dtype": "int32"},
    "check": {"message": "the weight is negative"},
    "reshape": {"shape": [3, -1]},
    "reduce_sum": {"axis": [0, -1], "keepdims": True},
    "reduce_mean": {"axis": [1]},
    "zeros": {"type": StructType([("a", TensorType(np.float32, [2])), I32])},
    "ones": {"type": TensorType(np.float32, [2])},
    "random_normal": {"type": TensorType(np.float32, [2])},
}


def _instance(definition):
    attrs = definition.normalize_attrs(_ATTRS.get(definition.uri, {}))
    for parameter in _CANDIDATE_PARAMETERS:
        try:
            return definition.instance_type(parameter, attrs)
        except Exception:  # noqa: BLE001 - trying candidates
            continue
    raise AssertionError(f"no test parameter type fits {definition.uri} {definition.signature}")


@pytest.mark.parametrize("definition", ir.all_definitions(), ids=lambda d: d.uri)
def test_every_intrinsic_roundtrips(definition):
    fn_type = _instance(definition)
    attrs = _ATTRS.get(definition.uri, {})
    bare = ir.Intrinsic(definition.uri, fn_type, attrs)
    if fn_type.parameter is None:
        computation = ir.Lambda(None, None, ir.Struct([ir.Call(bare), bare]))
    else:
        x = ir.Reference("x", fn_type.parameter)
        computation = ir.Lambda("x", fn_type.parameter, ir.Struct([ir.Call(bare, x), bare]))
    located = ir.Lambda(
        computation.parameter_name,
        computation.parameter_type,
        ir.Struct([
            ir.Call(bare.with_location(_loc(1, 2)), computation.result.elements[0][1].argument, _loc(1, 2)),
            ir.Call(bare, computation.result.elements[0][1].argument, _loc(3, 4)),
            bare.with_location(_loc(5, 6)),
        ]),
    )
    text = _roundtrip_module(ir.Module("m", [("plain", computation), ("located", located)]))
    assert op_name(definition) + "(" in text


def _float_specials(dtype):
    info = np.finfo(dtype)
    values = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 0.1, 1 / 3, info.max, -info.max, info.tiny,
                       info.smallest_subnormal, 1e4, 1234.5678], dtype=dtype)
    bits = np.dtype(f"u{np.dtype(dtype).itemsize}")
    odd_nans = np.array([values[4].view(bits) | 1, values[4].view(bits) | (1 << (8 * np.dtype(dtype).itemsize - 1))],
                        dtype=bits).view(dtype)
    rng = np.random.default_rng(7)
    random = rng.integers(0, np.iinfo(bits).max, size=40, dtype=bits, endpoint=True).view(dtype)
    return np.concatenate([values, odd_nans, random])


_LITERALS = {
    "float16": _float_specials(np.float16),
    "float32": _float_specials(np.float32),
    "float64": _float_specials(np.float64),
    "complex64": np.array([1 + 2j, complex(np.nan, -0.0), complex(-np.inf, 1e-30)], np.complex64),
    "complex128": np.array([[1 + 2j], [complex(0.1, -1 / 3)]], np.complex128),
    "bool": np.array([[True, False], [False, True]]),
    "scalar_bool": np.bool_(False),
    "str": ['say "hi"\\', "new\nline\ttab\r", "ünïcødé 日本 😀", "\x00x\x7f\u2028\U000e0001", "", "nul\x00", "\x00\x00"],
    "empty_0x3": np.zeros((0, 3), np.float32),
    "empty_2x0": np.zeros((2, 0), np.str_),
    "dense_float": np.arange(100, dtype=np.float32).reshape(10, 10) / 7,
    "dense_bool": np.arange(80) % 3 == 0,
    "dense_complex": (np.arange(70) * (1 + 1j)).astype(np.complex64),
}
for _dtype in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64):
    _info = np.iinfo(_dtype)
    _LITERALS[np.dtype(_dtype).name] = np.array([_info.min, _info.max, 0, 1], dtype=_dtype)


@pytest.mark.parametrize("name", sorted(_LITERALS))
def test_literals_roundtrip_bit_exactly(name):
    literal = ir.Literal(_LITERALS[name])
    text = _roundtrip_node(literal)
    parsed = parse_node(text)
    if name == "str":  # every character, trailing NULs too
        assert parsed.value.tolist() == literal.value.tolist() == _LITERALS["str"]
    else:
        assert parsed.value.tobytes() == literal.value.tobytes()
    if name == "uint64":
        assert "18446744073709551615" in text
    if name == "float32":
        assert "[0.0, -0.0, inf, -inf, nan, 0.1, 0.33333334," in text
        assert "0x7fc00001" in text  # a NaN with a payload: its bits
    if name.startswith("dense"):
        assert 'dense<"0x' in text


def test_string_escapes():
    text = _roundtrip_node(ir.Literal(np.array(['a"b\\c\nd', "\U000e0001é"])))
    assert r'["a\"b\\c\nd", "\U000e0001é"]' in text


@pytest.mark.parametrize("escape", [r"\ud800", r"\udfff", r"\U0000d900"])
def test_a_surrogate_escape_is_refused_where_it_is_written(escape):
    # Text that read back with a lone surrogate could not be written as UTF-8 (protobuf, files).
    text = 'fedc.module @m {\n  fedc.func @f() -> str {\n    %c = fedc.constant "a' + escape + '" : str\n    fedc.return %c\n  }\n}\n'
    with pytest.raises(ParseError, match="is a surrogate, not a character") as info:
        ir.parse_module(text, "s.fedir")
    assert info.value.location.line == 3 and info.value.location.column >= 24


S = StructType([("a", StructType([F32, ("b", F32)]))])
LIT = ir.Literal(np.float32(1))
X = ir.Reference("x", F32)
NEG = FunctionType(F32, F32)

_NODES = {
    "zero-local block": ir.Block([], LIT),
    "located block": ir.Lambda("x", F32, ir.Block([("a", X)], ir.Reference("a", F32), _loc(1, 2))),
    "block in block result": ir.Block([("a", LIT)], ir.Block([("b", ir.Reference("a", F32))], ir.Reference("b", F32))),
    "block as argument": call("add", ir.Struct([ir.Block([("a", LIT)], ir.Reference("a", F32)), LIT])),
    "block local is a lambda": ir.Block([("f", ir.Lambda("y", F32, ir.Reference("y", F32)))],
                                        ir.Call(ir.Reference("f", NEG), LIT)),
    "shadowing": ir.Lambda("x", F32, ir.Block([("x", call("add", ir.Struct([X, X])))], ir.Lambda("x", F32, X))),
    "zero-argument lambdas": ir.Lambda(None, None, ir.Call(ir.Lambda(None, None, LIT, _loc(1, 1)), None, _loc(2, 2))),
    "structs": ir.Struct([ir.Struct([]), ir.Struct([LIT]), ir.Struct([("a", LIT)]), ("n", ir.Struct([LIT, ("b", LIT)]))]),
    "located structs": ir.Struct([ir.Struct([], location=_loc(1, 1)), ir.Struct([LIT], location=_loc(2, 2))],
                                 location=_loc(3, 3)),
    "selection of selection": ir.Lambda("s", S, ir.Selection(ir.Selection(ir.Reference("s", S), name="a"), index=1)),
    "located selections": ir.Lambda("s", S, ir.Selection(
        ir.Selection(ir.Reference("s", S), name="a", location=_loc(1, 1)), index=1, location=_loc(2, 2))),
    "selection of a struct": ir.Selection(ir.Struct([LIT, ("k", LIT)]), name="k"),
    "located reference": ir.Lambda("x", F32, ir.Reference("x", F32, _loc(1, 2))),
    "intrinsic and call at different places": ir.Call(ir.Intrinsic("negative", NEG, location=_loc(1, 1)), LIT, _loc(2, 2)),
    "located intrinsic, call without": ir.Call(ir.Intrinsic("negative", NEG, location=_loc(1, 1)), LIT),
    "call located, intrinsic without": ir.Call(ir.Intrinsic("negative", NEG), LIT, _loc(1, 1)),
    "call of a lambda with 1-element struct": ir.Call(ir.Lambda("s", StructType([F32]), LIT), ir.Struct([LIT])),
    "call with named 1-element struct": ir.Call(ir.Lambda("s", StructType([("a", F32)]), LIT), ir.Struct([("a", LIT)])),
    "call with empty struct": ir.Call(ir.Lambda("s", StructType([]), LIT), ir.Struct([])),
    "call with located struct": ir.Call(ir.Lambda("s", StructType([F32, F32]), LIT), ir.Struct([LIT, LIT], location=_loc(1, 1))),
    "keyword-like names": ir.Lambda("true", F32, ir.Block(
        [("loc", ir.Reference("true", F32)), ("fedc", ir.Reference("loc", F32))],
        ir.Struct([("none", ir.Reference("fedc", F32)), ("inf", LIT), ("dense", LIT), ("call", LIT)]))),
    "data": ir.Data('file://x/"y"\n', FederatedType(np.float32, CLIENTS), _loc(4, 4, 'we"ird.fed')),
    "placements": ir.Struct([ir.Placement(SERVER, _loc(1, 1)), ir.Placement(CLIENTS)]),
    "compiled": ir.Struct([ir.Call(ir.Compiled("opaque", b"abc", NEG, None, _loc(1, 1)), LIT),
                           ir.Compiled("opaque", b"abc", NEG, "same_payload"),
                           ir.Compiled("other_kind", b"", FunctionType(None, F32))]),
    "zero location": ir.Placement(SERVER, SourceLocation("", 0, 0)),
}


@pytest.mark.parametrize("name", sorted(_NODES))
def test_node_kinds_roundtrip(name):
    node = _NODES[name]
    _roundtrip_node(node)
    module = ir.Module("m", [("c", node)])
    if name == "shadowing":  # the text carries IR that does not verify (SSA); reading it verifies, unless told not to
        with pytest.raises(VerificationError, match="is bound again"):
            parse_module(print_module(module))
        _roundtrip_module(module, verify=False)
    else:
        _roundtrip_module(module)


def test_symbols_may_be_used_before_their_definition():
    module = ir.Module("m", [
        ("f", ir.Lambda("x", F32, ir.Call(ir.SymbolRef("g", NEG), X))),
        ("g", ir.Lambda("y", F32, ir.Reference("y", F32))),
        ("v", ir.SymbolRef("g", NEG, _loc(1, 2))),
    ])
    text = _roundtrip_module(module)
    assert "fedc.call @g(%x) : float32" in text
    assert 'fedc.ref @g : (float32 -> float32) loc("a.fed":1:2)' in text


def test_call_only_location_marker():
    text = _roundtrip_node(_NODES["call located, intrinsic without"])
    assert 'local.negative(%0) : (float32 -> float32) loc(call "a.fed":1:1)' in text
    text = _roundtrip_node(call("negative", LIT, _loc(1, 1)))
    assert 'local.negative(%0) : (float32 -> float32) loc("a.fed":1:1)' in text


# --------------------------------------------------------------------------
# Errors

_HEAD = "fedc.module @m {\n  fedc.func @f(%t: {float32}@CLIENTS) -> float32@SERVER {\n"
_TAIL = "  }\n}\n"
_MEAN = "fed.mean(%t) : ({float32}@CLIENTS -> float32@SERVER)"


def _body(*lines):
    return _HEAD + "".join(f"    {line}\n" for line in lines) + _TAIL


def _value(t, *lines):
    return f"fedc.module @m {{\n  fedc.value @c : {t} {{\n" + "".join(f"    {line}\n" for line in lines) + _TAIL


_COMPILED = 'fedc.compiled tensorflow "sha256:' + "ab" * 32 + '" : (float32 -> float32)'

_ERRORS = {
    "syntax": (_body("%0 = fed.mean(%t : ({float32}@CLIENTS -> float32@SERVER)", "fedc.return %0"),
               3, 22, "syntax error: unexpected ':'"),
    "not an op": (_body("%0 = bogus(%t)", "fedc.return %0"), 3, 10, "expected an op"),
    "end of input": (_HEAD + "    fedc.return %t\n", 3, 19, "unexpected end of input"),
    "unknown op": (_body(f"%0 = fed.meen(%t) : ({{float32}}@CLIENTS -> float32@SERVER)", "fedc.return %0"),
                   3, 10, "unknown op 'fed.meen'; did you mean fed.mean"),
    "misspelt fedc op": (_body("%0 = fedc.cal @f(%t) : float32@SERVER", "fedc.return %0"),
                         3, 10, "unknown op 'fedc.cal'; did you mean fedc.call"),
    "undefined value": (_body(f"%0 = {_MEAN.replace('%t', '%u')}", "fedc.return %0"), 3, 19, "undefined value %u"),
    "out of scope": (_body("%0 = fedc.lambda() -> float32@SERVER {", f"  %y = {_MEAN}", "  fedc.return %y", "}",
                           "fedc.return %y"), 7, 17, "%y is not in scope here (it is defined at 4:7"),
    "undefined symbol": (_body("%0 = fedc.call @g(%t) : float32@SERVER", "fedc.return %0"), 3, 20,
                         "undefined symbol @g"),
    "temporary used twice": (_body(f"%0 = {_MEAN}", "%1 = fedc.struct(%0, %0) : <float32@SERVER,float32@SERVER>",
                                   "fedc.return %1"), 4, 26, "temporary %0 is used twice (first at 4:22)"),
    "temporary unused": (_body(f"%0 = {_MEAN}", f"%1 = {_MEAN}", "fedc.return %1"), 3, 5,
                         "temporary %0 is never used"),
    "temporary used before definition": (_body("%1 = fedc.struct(%0) : <float32@SERVER>", f"%0 = {_MEAN}",
                                               "fedc.return %1"), 3, 22, "%0 is used before its definition (at 4:5)"),
    "temporary from an enclosing region": (_body(f"%0 = {_MEAN}", "%1 = fedc.lambda() -> float32@SERVER {",
                                                 "  fedc.return %0", "}", "fedc.return %0"), 5, 19,
                                           "temporary %0 is defined in an enclosing region (at 3:5)"),
    "temporary defined twice": (_body(f"%0 = {_MEAN}", f"%0 = {_MEAN}", "fedc.return %0"), 4, 5,
                                "%0 is defined twice (first at 3:5)"),
    "duplicate definition": (_body(f"%a = {_MEAN}", f"%a = {_MEAN}", "fedc.return %a"), 4, 5,
                             "%a is defined twice in this region (first at 3:5)"),
    "capture": (_body("%0 = fedc.ref %t : {float32}@CLIENTS", "%t = fedc.constant 1.0 : float32",
                      "%1 = fed.mean(%0) : ({float32}@CLIENTS -> float32@SERVER)", "fedc.return %1"), 4, 5,
                "%t shadows the %t that temporary %0 (defined at 3:5) uses"),
    "duplicate computation": (_value("placement", "%0 = fedc.placement CLIENTS : placement", "fedc.return %0")
                              .replace("}\n}\n", "}\n  fedc.value @c : placement {\n    fedc.return %0\n  }\n}\n"),
                              6, 14, "@c is defined twice in module @m"),
    "printed type differs": (_body(f"%0 = {_MEAN}", "%1 = fedc.call @f(%t) : float32", "fedc.return %0"), 4, 29,
                             "type mismatch: fedc.call has type float32@SERVER, but its printed type is float32"),
    "result type differs": (_body("%0 = fed.sum(%t) : ({float32}@CLIENTS -> float32@SERVER)",
                                  "%1 = fed.broadcast(%0) : (float32@SERVER -> float32@CLIENTS)", "fedc.return %1"),
                            2, 42, "the result of @f has type float32@CLIENTS, but its printed type is float32@SERVER"),
    "intrinsic result type": (_body("%0 = fed.mean(%t) : ({float32}@CLIENTS -> float32@CLIENTS)", "fedc.return %0"),
                              3, 10, "expected float32@SERVER, got float32@CLIENTS"),
    "intrinsic misuse": (_value("int32@SERVER", "%0 = fedc.data \"d\" : {int32}@CLIENTS",
                                "%1 = fed.mean(%0) : ({int32}@CLIENTS -> int32@SERVER)", "fedc.return %1"),
                         4, 10, "federated_mean expects ({T}@CLIENTS -> T@SERVER); got an argument of type {int32}@CLIENTS"),
    "argument type": (_body("%0 = fed.mean(%t) : ({float64}@CLIENTS -> float64@SERVER)", "fedc.return %0"), 3, 18,
                      "argument of federated_mean: expected {float64}@CLIENTS, got {float32}@CLIENTS"),
    "unknown attribute": (_value("float32", "%0 = fedc.constant 1.0 : float32",
                                 "%1 = local.reduce_sum(%0) {axes = [0]} : (float32 -> float32)", "fedc.return %1"),
                          4, 10, "reduce_sum has no attribute 'axes'"),
    "unknown dtype": (_body("%0 = fed.mean(%t) : ({flot32}@CLIENTS -> float32@SERVER)", "fedc.return %0"), 3, 27,
                      "unknown dtype 'flot32'"),
    "constant out of range": (_value("int8[2]", "%0 = fedc.constant [1, 300] : int8[2]", "fedc.return %0"), 3, 28,
                              "300 does not fit in int8"),
    "ragged constant": (_value("int8[2]", "%0 = fedc.constant [1, [2]] : int8[2]", "fedc.return %0"), 3, 28,
                        "ragged constant"),
    "constant shape": (_value("int8[2]", "%0 = fedc.constant [1, 2, 3] : int8[2]", "fedc.return %0"), 3, 24,
                       "constant of shape [3] does not match its type int8[2]"),
    "bad escape": (_value("str", '%0 = fedc.constant "ab\\qc" : str', "fedc.return %0"), 3, 27, "unknown escape \\q"),
    "missing payload (elided)": (_value("(float32 -> float32)", f"%0 = {_COMPILED}", "fedc.return %0"), 3, 35,
                                 "is missing: this text has no resources section"),
    "missing payload": (_value("(float32 -> float32)", f"%0 = {_COMPILED}", "fedc.return %0")
                        + "{-#\n  resources: {\n  }\n#-}\n", 3, 35, "is missing from the resources section"),
    "bad payload hash": ("fedc.module @m {\n}\n{-#\n  resources: {\n    \"sha256:" + "ab" * 32 + "\": \"aGVsbG8=\"\n  }\n#-}\n",
                         5, 80, "does not match its hash: it hashes to sha256:2cf24dba"),
    "bad base64": ("fedc.module @m {\n}\n{-#\n  resources: {\n    \"sha256:" + "ab" * 32 + "\": \"a!\"\n  }\n#-}\n",
                   5, 80, "is not valid base64"),
    "call marker on a non-call": (_value("placement", "%0 = fedc.placement CLIENTS : placement loc(call \"a\":1:1)",
                                         "fedc.return %0"), 3, 49, "loc(call ...) is only for a fused intrinsic call"),
    "bad placement": (_value("placement", "%0 = fedc.placement CLIENT : placement", "fedc.return %0"), 3, 25,
                      "expected a placement (CLIENTS or SERVER)"),
    "computation without a name": ("fedc.module @m {\n  fedc.value : placement {\n    fedc.return %0\n  }\n}\n",
                                   2, 3, "a computation of a module needs a name"),
    "inline symbol outside a module": ("fedc.value : placement {\n  fedc.return @p\n}\n", 2, 15,
                                       "outside a module, a symbol is referred to with its type"),
}


@pytest.mark.parametrize("name", sorted(_ERRORS))
def test_parse_errors_are_located(name):
    text, line, column, message = _ERRORS[name]
    parse = parse_node if text.startswith("fedc.value") else parse_module
    with pytest.raises(ParseError) as info:
        parse(text, "x.ir")
    error = info.value
    assert (error.location.file, error.location.line, error.location.column) == ("x.ir", line, column), str(error)
    assert message in error.message, str(error)
    rendered = str(error).splitlines()
    assert rendered[0].startswith(f"x.ir:{line}:{column}: ")
    assert rendered[-1].strip() == "^" and len(rendered[-1]) - 3 == column - 1  # the caret under the column


def test_mutated_text_gives_parse_errors_only():
    """Random edits of valid text parse, or fail with a located ParseError: never another exception."""
    import random

    rng = random.Random(0)
    texts = [FEDAVG, TEMPERATURE] + [print_node(node) for node in _NODES.values()]
    pieces = list("%@{}()<>[],.:=!-\"\\019az_ \n#*") + ["fedc.", "fed.", "loc(", "%0", "{-#", "#-}", "0x", "nan"]
    for _ in range(300):
        chars = list(rng.choice(texts))
        for _ in range(rng.randint(1, 3)):
            position = rng.randrange(len(chars))
            if rng.random() < 0.5:
                del chars[position]
            else:
                chars.insert(position, rng.choice(pieces))
        text = "".join(chars)
        parse = parse_module if text.lstrip().startswith("fedc.module") else parse_node
        try:
            parse(text)
        except ParseError as e:
            assert e.location is not None and e.source == text


def test_not_a_string():
    with pytest.raises(Exception, match="string"):
        parse_module(b"fedc.module @m {}")


# --------------------------------------------------------------------------
# Big input: reading IR back costs memory a small multiple of its size


def test_ir_with_a_two_megabyte_payload_reads_back_in_a_few_bytes_per_character():
    import os
    import tracemalloc

    payload = os.urandom(2_000_000)
    module = ir.Module("big", [("f", ir.Compiled("extern", payload, NEG, "f"))])
    text = print_module(module)  # the payload is 2.7 MB of base64 in one string token
    parse_module("fedc.module @warm {}")  # the parser itself, once
    tracemalloc.start()
    try:
        parsed = parse_module(text, "big.fedir")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert parsed == module and parsed["f"].payload == payload
    assert peak < 8 * len(text), f"{peak / len(text):.0f} bytes per character"  # was ~220


def test_long_strings_with_many_escapes_round_trip():
    value = 'a"b\\c\nd\té' * 20_000
    text = _roundtrip_node(ir.Literal(np.array([value, "plain" * 50_000])))
    assert len(text) > 400_000


def test_a_type_error_in_the_textual_ir_is_located_at_the_type():
    text = (
        "fedc.module @m {\n"
        "  fedc.func @f(%x: float32) -> float32 {\n"
        "    %y = fedc.ref %x : {(float32 -> float32)}@CLIENTS\n"
        "    fedc.return %x\n"
        "  }\n"
        "}\n"
    )
    with pytest.raises(ParseError) as info:
        parse_module(text, "t.fedir")
    assert str(info.value.location) == "t.fedir:3:24"
    assert "{(float32 -> float32)}@CLIENTS" in str(info.value) and "^" in str(info.value)


# --------------------------------------------------------------------------
# Verification errors in textual IR are located in the text


_UNVERIFIABLE = {
    "call cycle": ("""\
fedc.module @m {
  fedc.func @f(%x: float32) -> float32 {
    %y = fedc.call @g(%x) : float32
    fedc.return %y
  }
  fedc.func @g(%x: float32) -> float32 {
    %y = fedc.call @f(%x) : float32
    fedc.return %y
  }
}
""", "7:20", "computations call each other in a cycle: @f -> @g -> @f"),
    "parameter bound again": ("""\
fedc.module @m {
  fedc.func @f(%x: float32) -> float32 {
    %g = fedc.lambda(%x: float32) -> float32 {
      fedc.return %x
    }
    %y = fedc.call %g(%x) : float32
    fedc.return %y
  }
}
""", "3:10", "parameter %x is bound again"),
    "local bound again": ("""\
fedc.module @m {
  fedc.func @f(%x: float32) -> (float32 -> float32) {
    %y = fedc.lambda(%z: float32) -> float32 {
      %x = local.add(%z, %z) : (<float32,float32> -> float32)
      fedc.return %x
    }
    fedc.return %y
  }
}
""", "4:12", "local %x is bound again"),
    "federated intrinsic in a local function": ("""\
fedc.module @m {
  fedc.func @f(%t: {float32}@CLIENTS) -> float32 {
    %g = fedc.lambda(%v: float32) -> float32 {
      %m = fed.mean(%t) : ({float32}@CLIENTS -> float32@SERVER)
      fedc.return %v
    }
    %y = fedc.constant 1.0 : float32
    %z = fedc.call %g(%y) : float32
    fedc.return %z
  }
}
""", "4:12", "federated intrinsic federated_mean is used inside a local function"),
    "placed value used in a local function": ("""\
fedc.module @m {
  fedc.func @f(%t: float32@SERVER) -> float32 {
    %g = fedc.lambda(%v: float32) -> float32 {
      %s = fedc.struct(%v, %t) : <float32,float32@SERVER>
      fedc.return %v
    }
    %y = fedc.constant 1.0 : float32
    %z = fedc.call %g(%y) : float32
    fedc.return %z
  }
}
""", "4:28", "uses the placed value %t"),
}


@pytest.mark.parametrize("name", sorted(_UNVERIFIABLE))
def test_verification_errors_in_textual_ir_are_located(name):
    text, where, message = _UNVERIFIABLE[name]
    with pytest.raises(VerificationError) as info:
        parse_module(text, "bad.fedir")
    error = info.value
    assert str(error.location) == f"bad.fedir:{where}", str(error)
    line, column = map(int, where.split(":"))
    assert message in error.message
    assert str(error) == (
        f"bad.fedir:{where}: {error.message}\n  {text.splitlines()[line - 1]}\n  {' ' * (column - 1)}^"
    )
    assert parse_module(text, verify=False) is not None  # the text itself is well-formed
