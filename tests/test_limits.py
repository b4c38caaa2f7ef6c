"""One nesting limit everywhere: depth ladders to 100,000 end in a FedcError, never a RecursionError."""

import json

import numpy as np
import pytest

import fedc
from fedc import ir, passes, types
from fedc.cli import main as fedc_main
from fedc.frontend import fed
from fedc.limits import MAX_NESTING, NestingError

F32 = types.TensorType(np.float32)
HOSTILE = 100_000


def nested_struct_type(depth: int) -> str:
    return "<" * (depth - 1) + "float32" + ">" * (depth - 1)


def deep_local_chain(levels: int) -> ir.Lambda:
    """(float32 -> float32) adding 1 ``levels`` times, as one nested expression."""
    x = ir.Reference("x", F32)
    for _ in range(levels):
        x = ir.intrinsic_call("add", ir.Struct([x, ir.Literal(np.float32(1.0))]))
    return ir.Lambda("x", F32, x)


def deep_server_chain() -> tuple[ir.Lambda, int]:
    """(float32@SERVER -> float32@SERVER) nesting federated_apply calls to the limit, and their count."""
    server = types.FederatedType(np.float32, fedc.SERVER)
    x = ir.Reference("x", server)
    y = ir.Reference("y", F32)
    inc = ir.Lambda("y", F32, ir.intrinsic_call("add", ir.Struct([y, ir.Literal(np.float32(1.0))])))
    levels = 0
    while x.depth + 3 <= MAX_NESTING:  # each apply is a call of a struct; the lambda adds one
        x = ir.intrinsic_call("federated_apply", ir.Struct([inc, x]))
        levels += 1
    return ir.Lambda("x", server, x), levels


def test_types_nest_to_the_limit_and_no_further():
    deepest = types.parse(nested_struct_type(MAX_NESTING))
    assert deepest.depth == MAX_NESTING
    assert types.parse(str(deepest)) == deepest
    with pytest.raises(NestingError, match="MAX_NESTING"):
        types.StructType([deepest])
    for text in (nested_struct_type(MAX_NESTING + 1), nested_struct_type(HOSTILE), "{" * HOSTILE):
        with pytest.raises(fedc.FedcError):
            types.parse(text)


def test_ir_at_the_limit_goes_through_every_stage():
    levels = (MAX_NESTING - 2) // 2  # each add is a call of a struct
    module = ir.Module("deep", [("f", deep_local_chain(levels))])
    assert MAX_NESTING - 2 <= module["f"].depth <= MAX_NESTING
    ir.verify(module)
    text = ir.print_module(module)
    assert ir.parse_module(text) == module
    assert ir.deserialize(ir.serialize(module)) == module
    result = passes.run(module, "inline,call-dominant,cse,dce,canonicalize").module
    computation = fedc.Computation(result, "f")
    assert computation(0.0) == pytest.approx(levels)
    assert fedc.Computation(module, "f")(0.0) == pytest.approx(levels)


def test_federated_ir_at_the_limit_runs_and_lowers():
    chain, levels = deep_server_chain()
    module = ir.Module("deep", [("f", chain)])
    assert module["f"].depth >= MAX_NESTING - 2
    assert fedc.Computation(module, "f")(1.0) == pytest.approx(1.0 + levels)
    lowered = passes.run(module, "inline,call-dominant,cse,dce,canonicalize,fuse-map-mean").module
    assert fedc.Computation(lowered, "f")(1.0) == pytest.approx(1.0 + levels)


def test_building_past_the_limit_is_refused_by_the_python_api():
    node = deep_local_chain((MAX_NESTING - 2) // 2).result
    with pytest.raises(NestingError) as info:
        for _ in range(3):
            node = ir.intrinsic_call("add", ir.Struct([node, ir.Literal(np.float32(1.0))]))
    assert "1000 levels" in str(info.value) or str(MAX_NESTING) in str(info.value)


@pytest.mark.parametrize("shape", ["blocks", "structs", "types"])
def test_hostile_textual_ir_is_a_parse_error(shape):
    if shape == "blocks":
        # fedc.value regions nested by lambdas: each lambda op opens a region.
        inner = "fedc.return %x"
        body = inner
        for i in range(HOSTILE // 10):
            body = f"%l{i} = fedc.lambda(%y{i}: float32) -> float32 {{\n{body}\n}}\nfedc.return %l{i}"
        text = "fedc.module @m {\n  fedc.func @f(%x: float32) -> float32 {\n" + body + "\n  }\n}\n"
    elif shape == "structs":
        text = ("fedc.module @m {\n  fedc.func @f(%x: float32) -> float32 {\n    %s = fedc.struct("
                + "<" * HOSTILE + "%x" + ">" * HOSTILE + ")\n    fedc.return %x\n  }\n}\n")
    else:
        text = ("fedc.module @m {\n  fedc.func @f(%x: " + nested_struct_type(HOSTILE)
                + ") -> float32 {\n    fedc.return %x\n  }\n}\n")
    with pytest.raises(fedc.FedcError):
        ir.parse_module(text, "hostile.fedir")


def test_hostile_fed_source_is_a_diagnostic():
    source = "local f(x: float32) -> float32 { return " + "(" * HOSTILE + "x" + ")" * HOSTILE + " }\n"
    with pytest.raises(fed.DiagnosticsError):
        fed.parse(source, "hostile.fed")
    source = "local f(x: " + nested_struct_type(HOSTILE) + ") -> float32 { return 1.0 }\n"
    with pytest.raises(fed.DiagnosticsError):
        fed.parse(source, "hostile.fed")


def test_hostile_json_arguments_are_located_errors(tmp_path, capsys):
    program = tmp_path / "f.fed"
    program.write_text("computation f(x: float32@SERVER) -> float32@SERVER {\n  return x\n}\n")
    cases = {
        "deep.json": ("[" * HOSTILE + "]" * HOSTILE).encode(),
        "latin1.json": b'"caf\xe9"',
        "digits.json": ("1" * 5000).encode(),
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        assert fedc_main(["run", str(program), "--args", str(path)]) == 2, name
        err = capsys.readouterr().err
        assert str(path) in err and "Traceback" not in err and "internal error" not in err, (name, err)


def test_what_fedc_writes_at_the_limit_it_reads(tmp_path, capsys):
    module = ir.Module("deep", [("f", deep_local_chain((MAX_NESTING - 2) // 2))])
    source = tmp_path / "deep.fedir"
    source.write_text(ir.print_module(module))
    out = tmp_path / "deep.fedpb"
    assert fedc_main(["compile", str(source), "--emit", "proto", "-o", str(out)]) == 0
    assert ir.deserialize(out.read_bytes()) == module
    args = tmp_path / "args.json"
    args.write_text(json.dumps(0.5))
    assert fedc_main(["run", str(out), "--args", str(args)]) == 0
    assert float(capsys.readouterr().out) == pytest.approx(0.5 + (MAX_NESTING - 2) // 2)


def test_the_bracket_scan_skips_strings_and_comments_and_locates_the_bracket_past_the_limit():
    from fedc.errors import ParseError
    from fedc.limits import check_text_nesting

    noise = '"((((\\"((((" // (((\n' * 2000 + '"unterminated ((((\n'  # strings and comments: no brackets
    check_text_nesting(noise + "(" * MAX_NESTING + ")" * MAX_NESTING, "ok.txt", "([{<", comment="//")
    text = noise + "<a -> b>" * 3000 + "\n  " + "(" * (MAX_NESTING + 1)
    with pytest.raises(ParseError) as info:
        check_text_nesting(text, "deep.txt", "([{<", comment="//")
    assert str(info.value.location) == f"deep.txt:2003:{2 + MAX_NESTING + 1}"


def test_what_fedc_prints_at_the_limit_it_parses_and_deserializes():
    from fedc.limits import check_text_nesting

    # IR whose nodes and types both nest near the limit prints brackets nested deeper
    # than either: regions and inline structs, then the type of the innermost op.
    deep_type = F32
    while deep_type.depth < MAX_NESTING - 1:
        deep_type = types.StructType([deep_type])
    inner = ir.Lambda("x", deep_type, ir.Reference("x", deep_type))  # its type nests MAX_NESTING deep
    for i in range(300):  # 300 regions around it
        inner = ir.Block([(f"b{i}", inner)], ir.Literal(np.float32(i)))
    value = ir.Literal(np.float32(1.0))
    while value.depth < MAX_NESTING:
        value = ir.Struct([value])
    module = ir.Module("deep", [("f", inner), ("s", value)])
    text = ir.print_module(module)
    with pytest.raises(fedc.ParseError):  # more than MAX_NESTING brackets deep
        check_text_nesting(text, "deep.fedir", "([{<", comment="//")
    assert ir.parse_module(text, "deep.fedir") == module
    assert ir.deserialize(ir.serialize(module)) == module
    # A type at the limit shows in its formatted form too (e.g. in a type mismatch).
    assert types.parse(deep_type.formatted_representation()) == deep_type
