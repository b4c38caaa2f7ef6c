"""fedc's limits (fedc.limits), each enforced the same way everywhere.

Nesting: depth ladders to 100,000 end in a FedcError, never a RecursionError.
Sizes: digit ladders (integers in every kind of text), rank ladders, element
counts and allocations end in a SizeError or a located ParseError, never in
Python's int-conversion ValueError, an OverflowError or a numpy MemoryError.
"""

import json

import numpy as np
import pytest

import fedc
from fedc import ir, limits, passes, types
from fedc.cli import main as fedc_main
from fedc.frontend import fed
from fedc.ir import computation_pb2 as pb
from fedc.limits import INT64_MAX, MAX_NESTING, MAX_RANK, UINT64_MAX, NestingError, SizeError

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
        "just_within.json": ("[" * (MAX_NESTING - 1) + "]" * (MAX_NESTING - 1)).encode(),
    }
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        cases[name] = path
    # .npz key paths nesting just within the limit (as lists and as structs) and past it
    for name, key in {"lists.npz": "x" + "/0" * (MAX_NESTING - 1), "structs.npz": "x" + "/a" * (MAX_NESTING - 1),
                      "past.npz": "x" + "/a" * (HOSTILE // 10)}.items():
        np.savez(tmp_path / name, **{key: np.float32(1.0)})
        cases[name] = tmp_path / name
    for name, path in cases.items():
        assert fedc_main(["run", str(program), "--args", str(path)]) == 2, name
        err = capsys.readouterr().err
        assert "Traceback" not in err and "internal error" not in err, (name, err)
        # what cannot be read names the file; what is read but is not the parameter's type names the argument
        assert str(path) in err if name in ("deep.json", "latin1.json", "digits.json", "past.npz") \
            else "argument 'x' of f: expected float32" in err, (name, err)


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


# --------------------------------------------------------------------------
# Sizes: integers in text, ranks, element counts, allocations

# Digit ladders: every length around the 64-bit edges and Python's 4,300-digit conversion limit.
DIGITS = [1, 9, 18, 19, 20, 21, 40, 4299, 4300, 4301, 5000, 100_000]
EDGES = [INT64_MAX, INT64_MAX + 1, UINT64_MAX, UINT64_MAX + 1, 10**19, 10**20]
LADDER = ["9" * n for n in DIGITS] + [str(v) for v in EDGES] + ["0" * 5000 + "7"]


def short(text: str) -> str:
    """A test id for a ladder entry."""
    return text if len(text) <= 24 else f"{text[:4]}..{text[-2:]}({len(text)})"


def magnitude(text: str) -> int:
    """The value of a ladder entry, without converting thousands of digits."""
    significant = text.lstrip("0") or "0"
    return int(significant) if len(significant) < 100 else UINT64_MAX + 1


@pytest.mark.parametrize("text", LADDER + ["0x" + "f" * n for n in (1, 16, 17, 5000)] + ["-" + "9" * 5000], ids=short)
def test_parse_integer_refuses_more_than_64_bits_before_converting(text):
    sign, digits = (-1, text[1:]) if text.startswith("-") else (1, text)
    base = 16 if digits.startswith("0x") else 10
    significant = (digits[2:] if base == 16 else digits).lstrip("0") or "0"
    value = sign * int(significant, base) if len(significant) < 100 else None
    if value is not None and abs(value) <= UINT64_MAX:
        assert limits.parse_integer(text) == value
        if abs(value) > INT64_MAX:
            with pytest.raises(SizeError, match=r"a dimension .* is too large: fedc reads it up to 9223372036854775807 \(int64\)"):
                limits.parse_integer(text, "a dimension", INT64_MAX)
    else:
        with pytest.raises(SizeError, match="a test number .* is too large") as info:
            limits.parse_integer(text, "a test number")
        assert len(str(info.value)) < 200  # long digit strings are shortened in the message


def fed_program(kind: str, number: str) -> str:
    return {
        "literal": f"local f() -> int64 {{ return {number}i64 }}\n",
        "index": f"local f(x: <float32,float32>) -> float32 {{ return x[{number}] }}\n",
        "dim": f"local f(x: float32[{number}]) -> float32[{number}] {{ return x }}\n",
    }[kind]


def ir_program(kind: str, number: str) -> str:
    body = {
        "line": f'fedc.func @f(%x: float32) -> float32 loc("f.fed":{number}:1) {{\n fedc.return %x\n }}',
        "column": f'fedc.func @f(%x: float32) -> float32 loc("f.fed":1:{number}) {{\n fedc.return %x\n }}',
        "constant": f"fedc.func @f() -> uint64 {{\n %0 = fedc.constant {number} : uint64\n fedc.return %0\n }}",
        "index": f"fedc.func @f(%x: <float32,float32>) -> float32 {{\n %0 = fedc.select %x[{number}] : float32\n fedc.return %0\n }}",
        "attr": f"fedc.func @f(%x: float32[2]) -> float32 {{\n %0 = local.reduce_sum(%x) {{axis = {number}}} : float32\n fedc.return %0\n }}",
        "dim": f"fedc.func @f(%x: float32[{number}]) -> float32[{number}] {{\n fedc.return %x\n }}",
    }[kind]
    return "fedc.module @m {\n " + body + "\n}\n"


def accepted_or_located(action, text: str, maximum: int):
    """Runs ``action``: a value within ``maximum`` may succeed or fail for its own reasons, one
    beyond it must be refused as too large; either way only as a located FedcError."""
    try:
        return action()
    except fedc.FedcError as e:
        assert e.location is not None, e
        if magnitude(text) > maximum:
            assert "too large" in str(e), e
        assert len(str(e).splitlines()[0]) < 400
        return None


@pytest.mark.parametrize("number", LADDER, ids=short)
def test_integers_in_types_and_fed_source(number):
    beyond_int64 = magnitude(number) > INT64_MAX
    if beyond_int64:
        with pytest.raises(fedc.ParseError, match="too large.*int64") as info:
            types.parse(f"float32[{number}]")
        assert info.value.location.column == 9
    for kind in ("literal", "index", "dim"):
        maximum = UINT64_MAX if kind == "literal" else INT64_MAX
        try:
            fed.parse(fed_program(kind, number), "f.fed")
        except fed.DiagnosticsError as e:
            assert all(d.location is not None for d in e.diagnostics)
            if magnitude(number) > maximum:
                assert "too large" in str(e)
        else:
            assert magnitude(number) <= maximum


@pytest.mark.parametrize("kind", ["line", "column", "constant", "index", "attr", "dim"])
@pytest.mark.parametrize("number", LADDER, ids=short)
def test_integers_in_textual_ir(kind, number):
    maximum = UINT64_MAX if kind in ("constant", "attr") else INT64_MAX
    module = accepted_or_located(lambda: ir.parse_module(ir_program(kind, number), "m.fedir"), number, maximum)
    if module is not None:
        assert magnitude(number) <= maximum
        assert ir.parse_module(ir.print_module(module)) == module  # what is read, prints and reads back


@pytest.mark.parametrize("number", LADDER + ["-" + "9" * 5000], ids=short)
def test_integers_in_pass_options(number):
    module = ir.parse_module(ir_program("dim", "2"))
    try:
        passes.run(module, f"insert-secure-aggregation{{bits={number}}}")
    except fedc.FedcError as e:
        if magnitude(number.lstrip("-")) > UINT64_MAX:
            assert e.location is not None and "too large" in str(e)
        else:
            assert "bits must be between 1 and 40" in str(e)


@pytest.mark.parametrize("number", LADDER + ["-" + "9" * 4000], ids=short)
def test_integers_in_json_arguments(tmp_path, capsys, number):
    program = tmp_path / "f.fed"
    program.write_text("computation f(x: uint64@SERVER) -> uint64@SERVER {\n  return x\n}\n")
    args = tmp_path / "args.json"
    args.write_text('{\n  "x": ' + number + "\n}\n")
    status = fedc_main(["run", str(program), "--args", str(args)])
    out, err = capsys.readouterr()
    if magnitude(number.lstrip("-")) > UINT64_MAX:
        assert status == 2
        assert f"{args}:2:8: error: the integer" in err and "too large" in err, err
    elif number.startswith("0"):
        assert status == 2 and "invalid JSON" in err  # JSON has no leading zeros
    elif not number.startswith("-"):
        assert status == 0 and int(out) == int(number)
    assert "Traceback" not in err and "internal error" not in err


def test_integers_in_npz_positions(tmp_path, capsys):
    program = tmp_path / "f.fed"
    program.write_text("computation f(x: <float32,float32>@SERVER) -> float32@SERVER {\n  return x[0]\n}\n")
    args = tmp_path / "args.npz"
    np.savez(args, **{"x/0": np.float32(1), "x/" + "9" * 5000: np.float32(2)})
    assert fedc_main(["run", str(program), "--args", str(args)]) == 2
    err = capsys.readouterr().err
    assert "too large" in err and "Traceback" not in err


RANKS = [0, 1, 2, MAX_RANK - 1, MAX_RANK, MAX_RANK + 1, 64, 65, 100, 10_000]


@pytest.mark.parametrize("rank", RANKS)
def test_ranks_up_to_max_rank_everywhere(rank, tmp_path):
    shape = [1] * rank
    text = f"float32[{','.join('1' * rank)}]" if rank else "float32"
    ir_text = f"fedc.module @m {{\n fedc.func @f(%x: {text}) -> {text} {{\n fedc.return %x\n }}\n}}\n"
    fed_text = f"local f(x: {text}) -> {text} {{ return x }}\n"
    if rank <= MAX_RANK:
        t = types.TensorType(np.float32, shape)
        assert types.parse(text) == t
        module = ir.parse_module(ir_text)
        assert ir.deserialize(ir.serialize(module)) == module
        assert fed.parse(fed_text, "f.fed")["f"].type_signature.parameter == t
        assert fedc.Computation(module, "f")(np.ones(shape, np.float32)).shape == tuple(shape)
        # The reference backend stacks clients on an extra axis: a value of the highest rank still fits.
        placed = ir_text.replace(f"(%x: {text}) -> {text} {{\n fedc.return %x",
                                 f"(%x: {{{text}}}@CLIENTS) -> {text}@SERVER {{\n"
                                 f" %0 = fed.mean(%x) : ({{{text}}}@CLIENTS -> {text}@SERVER)\n fedc.return %0")
        mean = fedc.Computation(ir.parse_module(placed), "f")
        assert np.array_equal(mean([np.ones(shape, np.float32), np.zeros(shape, np.float32)]), np.full(shape, 0.5))
        return
    with pytest.raises(SizeError, match=f"rank {rank}; fedc's tensors have rank at most {MAX_RANK}"):
        types.TensorType(np.float32, shape)
    with pytest.raises(fedc.ParseError, match="MAX_RANK"):
        types.parse(text)
    with pytest.raises(fedc.ParseError, match="MAX_RANK"):
        ir.parse_module(ir_text)
    with pytest.raises(fed.DiagnosticsError, match="MAX_RANK"):
        fed.parse(fed_text, "f.fed")
    message = pb.Module()
    message.ParseFromString(ir.serialize(ir.parse_module(ir_text.replace(text, "float32[1]"))))
    for entry in message.types:
        if entry.WhichOneof("kind") == "tensor" and len(entry.tensor.dims) == 1:
            entry.tensor.dims.extend([1] * (rank - 1))
    with pytest.raises(fedc.SerializationError, match="MAX_RANK"):
        ir.deserialize(message.SerializeToString())


@pytest.mark.parametrize("shape, fits", [
    ([2**31, 2**31], True),
    ([2**61, 2], True),
    ([INT64_MAX], True),
    ([2**62, 2], False),
    ([None, INT64_MAX], True),
    ([2**32, 2**32], False),
    ([2**62, 4], False),
    ([None, 2**62, 4], False),
    ([0, 2**62, 2**62], False),  # numpy too counts the non-zero dimensions
    ([INT64_MAX + 1], False),
    ([10**5000], False),
])
def test_element_counts_fit_int64(shape, fits):
    if fits:
        assert types.TensorType(np.float32, shape).shape == tuple(shape)
        return
    with pytest.raises(SizeError, match="int64"):
        types.TensorType(np.float32, shape)
    text = "float32[" + ",".join("?" if d is None else str(d) for d in shape) + "]" if shape[0] != 10**5000 else None
    if text is not None:
        with pytest.raises(fedc.ParseError, match="int64"):
            types.parse(text)


HUGE = "float32[100000,100000,100000]"


def test_absurd_allocations_are_refused_before_numpy_allocates(tmp_path, capsys):
    program = tmp_path / "huge.fed"
    program.write_text(
        f"local zero() -> {HUGE} {{\n  return zeros(type=type({HUGE}))\n}}\n"
        "local outer(x: float32[100000,1], y: float32[1,100000]) -> float32[100000,100000] {\n  return x * y\n}\n"
    )
    assert fedc_main(["run", str(program), "--entry", "zero"]) == 2
    err = capsys.readouterr().err
    assert f"{program}:2:10: error: zeros would allocate a tensor of shape [100000,100000,100000]" in err
    assert "fedc.limits.MAX_TENSOR_BYTES" in err and "Traceback" not in err
    outer = fedc.Computation(fed.load(str(program)), "outer")
    with pytest.raises(SizeError, match=r"multiply would allocate a tensor of shape \[100000,100000\]"):
        outer(np.ones((100000, 1), np.float32), np.ones((1, 100000), np.float32))
    # A literal of that type cannot smuggle the allocation in: its bytes are counted first.
    with pytest.raises(fedc.ParseError, match="does not fit"):
        ir.parse_module(f'fedc.module @m {{\n fedc.func @f() -> {HUGE} {{\n'
                        f' %0 = fedc.constant dense<"0x00"> : {HUGE}\n fedc.return %0\n }}\n}}\n')
    message = pb.Module()
    entry = message.nodes.add()
    entry.literal.dtype = "float32"
    entry.literal.shape.extend([100000] * 3)
    message.version = ir.serialization.FORMAT_VERSION
    computation = message.computations.add()
    computation.name, computation.node = "c", 0
    with pytest.raises(fedc.SerializationError, match="bytes"):
        ir.deserialize(message.SerializeToString())


LIMIT = 4096  # bytes, for the allocation ladders below


@pytest.fixture
def small_tensors(monkeypatch):
    monkeypatch.setattr(limits, "MAX_TENSOR_BYTES", LIMIT)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int8, np.bool_])
def test_the_tensor_limit_is_exact_and_adjustable(small_tensors, dtype):
    largest = LIMIT // np.dtype(dtype).itemsize
    for n in (1, largest - 1, largest, largest + 1, 10 * largest):
        t = types.TensorType(dtype, [n])
        zeros = ir.Lambda(None, None, ir.intrinsic_call("zeros", None, type=t))
        computation = fedc.Computation(ir.Module("m", [("f", zeros)]), "f")
        if n <= largest:
            assert computation().shape == (n,)
        else:
            with pytest.raises(SizeError, match=f"more than fedc.limits.MAX_TENSOR_BYTES \\({LIMIT:,} bytes\\)"):
                computation()


def test_the_tensor_limit_covers_what_the_interpreter_and_passes_allocate(small_tensors):
    clients = 8
    vector = f"float32[{LIMIT // 4 // clients + 1}]"  # one client's fits, all clients' do not
    mapped = fed.parse(
        f"computation f(x: {{float32}}@CLIENTS) -> {{{vector}}}@CLIENTS {{\n"
        f"  return federated_map(fn(v) -> zeros(type=type({vector})), x)\n}}\n", "mapped.fed")
    broadcast_zeros = fedc.Computation(mapped, "f")
    with pytest.raises(SizeError, match=f"mapped over {clients} clients"):
        broadcast_zeros([1.0] * clients)
    assert len(broadcast_zeros([1.0] * 2)) == 2

    big = types.TensorType(np.float32, [LIMIT // 4 + 1])

    @fedc.federated_computation(types.FederatedType(big, fedc.CLIENTS))
    def total(x):
        return fedc.federated_sum(x)

    with pytest.raises(SizeError, match="federated_sum over zero clients would allocate"):
        total([])

    @fedc.federated_computation(types.FederatedType(big, fedc.CLIENTS))
    def largest(x):
        return fedc.federated_max(x)

    with pytest.raises(fedc.FedcError, match="the zero of federated_max would allocate") as info:
        passes.run(largest.to_ir(), "desugar{to=aggregate}")
    assert info.value.location.file == __file__


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


def doubling_chain(length: int) -> str:
    """IR text of @f0 .. @f{length-1}, each calling the previous one twice: inlined, 2**length nodes."""
    lines = ["fedc.module @m {", "  fedc.func @f0(%x: float32) -> float32 {", "    fedc.return %x", "  }"]
    for i in range(1, length):
        lines += [f"  fedc.func @f{i}(%x: float32) -> float32 {{",
                  f"    %0 = fedc.call @f{i - 1}(%x) : float32",
                  f"    %1 = fedc.call @f{i - 1}(%0) : float32",
                  "    fedc.return %1", "  }"]
    return "\n".join(lines + ["}", ""])


def test_inlining_refuses_to_grow_the_module_past_the_node_limit_before_copying(monkeypatch):
    module = ir.parse_module(doubling_chain(60))  # 2**60 nodes if inlined: refused at once
    with pytest.raises(SizeError, match=r"inline: inlining @f\d+ would bring module @m to about [\d,]+ IR nodes, "
                                        r"more than fedc makes \(1,000,000, fedc.limits.MAX_IR_NODES\)"):
        passes.run(module, "inline")

    small = ir.parse_module(doubling_chain(8))  # 2**8 copies of @f0's body in @f7
    inlined = passes.run(small, "inline").module
    assert not any(isinstance(n, ir.SymbolRef) for n in inlined["f7"].walk())
    assert fedc.computation.Computation(inlined, "f7")(1.5) == 1.5
    monkeypatch.setattr(limits, "MAX_IR_NODES", 200)
    with pytest.raises(SizeError, match=r"\(200, fedc.limits.MAX_IR_NODES\)"):
        passes.run(small, "inline")
