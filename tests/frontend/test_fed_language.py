"""The .fed language: each feature, the IR it produces, and the examples end to end."""

from __future__ import annotations

import pathlib
import sys
import textwrap
import uuid

import numpy as np
import pytest

import fedc
from fedc import ir
from fedc.computation import Computation
from fedc.frontend import fed

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"


def compile_text(text: str, filename: str = "test.fed", **kwargs) -> ir.Module:
    module = fed.parse(textwrap.dedent(text), filename=filename, **kwargs)
    ir.verify(module)
    return module


def run(module: ir.Module, symbol: str, *args, **kwargs):
    return Computation(module, symbol)(*args, **kwargs)


def signature(module: ir.Module, symbol: str) -> str:
    return str(module[symbol].type_signature)


# --------------------------------------------------------------------------
# The examples


def test_temperature_example_is_the_traced_python_ir():
    module = fed.load(EXAMPLES / "temperature.fed")
    assert module.name == "temperature"
    assert signature(module, "get_average_temperature") == "({float32}@CLIENTS -> float32@SERVER)"

    @fedc.federated_computation(fedc.FederatedType(np.float32, fedc.CLIENTS))
    def get_average_temperature(t):
        return fedc.federated_mean(t)

    # The same nodes as tracing builds (locations aside), and the same text.
    assert module["get_average_temperature"] == get_average_temperature.ir
    traced_text = ir.print_module(ir.Module("temperature", list(get_average_temperature.to_ir().items())), locations=False)
    assert ir.print_module(module, locations=False) == traced_text
    assert "%mean = fed.mean(%t) : ({float32}@CLIENTS -> float32@SERVER)" in traced_text

    text = ir.print_module(module)
    fed_file = str(EXAMPLES / "temperature.fed")
    assert f'loc("{fed_file}":7:1)' in text  # the computation
    assert f'loc("{fed_file}":8:10)' in text  # the federated_mean call

    result = run(module, "get_average_temperature", [68.5, 70.3, 69.8])
    assert result.dtype == np.float32
    assert result == pytest.approx(69.53333, abs=1e-5)


def test_add_half_example():
    module = fed.load(str(EXAMPLES / "add_half.fed"))
    ir.verify(module)
    assert signature(module, "add_half") == "(float32 -> float32)"
    assert signature(module, "add_half_on_clients") == "({float32}@CLIENTS -> {float32}@CLIENTS)"
    assert run(module, "add_half", 1.0) == np.float32(1.5)
    assert [float(v) for v in run(module, "add_half_on_clients", [1.0, 2.0, 3.0])] == [1.5, 2.5, 3.5]
    text = ir.print_module(module, locations=False)
    assert "%add = local.add(%x, %0) : (<float32,float32> -> float32)" in text
    assert "%mapped = fed.map(@add_half, %x)" in text


def test_analytics_example():
    module = fed.load(EXAMPLES / "analytics.fed")
    ir.verify(module)
    assert signature(module, "one_hot") == "(float32 -> int32[5])"
    assert signature(module, "histogram") == "({float32}@CLIENTS -> int32[5]@SERVER)"
    assert signature(module, "clipped_mean") == "({float32}@CLIENTS -> float32@SERVER)"
    assert signature(module, "summary") == (
        "(<values={float32}@CLIENTS,bounds=<low=float32,high=float32>@SERVER> -> "
        "<count=int32@SERVER,mean=float32@SERVER,histogram=int32[5]@SERVER,max=float32@SERVER>)"
    )
    values = [1.0, 15.0, 12.0, 49.0, 33.0, 75.0]
    np.testing.assert_array_equal(run(module, "histogram", values), [1, 2, 0, 1, 1])
    assert run(module, "clipped_mean", values) == pytest.approx(np.mean(np.clip(values, 0, 50)))
    summary = run(module, "summary", values, {"low": 10.0, "high": 40.0})
    assert summary["count"] == 6
    assert summary["mean"] == pytest.approx(np.mean(np.clip(values, 10, 40)))
    np.testing.assert_array_equal(summary["histogram"], [1, 2, 0, 1, 1])
    assert summary["max"] == 75.0


def test_fedavg_example_trains(tmp_path):
    module = fed.load(EXAMPLES / "fedavg.fed", import_externs=True)
    ir.verify(module)
    weights = "<float32[784,10],float32[10]>"
    assert signature(module, "initialize") == f"( -> {weights}@SERVER)"
    assert signature(module, "next") == (
        f"(<server_weights={weights}@SERVER,federated_dataset={{<float32[?,784],int32[?,1]>*}}@CLIENTS> -> "
        f"<weights={weights}@SERVER,loss=float32@SERVER>)"
    )
    # The externs are the tf_computations' Compiled graphs, under the externs' names.
    for name in ("server_init", "client_update", "server_update"):
        assert isinstance(module[name], ir.Compiled)
    assert 'fedc.compiled tensorflow @client_update' in ir.print_module(module, elide_resources=True)
    assert ir.parse_module(ir.print_module(module)) == module

    # The args file of examples/fedavg_data.py, read back the way `fedc run` reads it.
    sys.path.insert(0, str(EXAMPLES))
    try:
        import fedavg_data
    finally:
        sys.path.remove(str(EXAMPLES))
    path = tmp_path / "data.npz"
    fedavg_data.write(str(path), fedavg_data.make_args(num_clients=4))
    with np.load(path) as data:
        keys = set(data.files)
        assert "federated_dataset/3/5/0" in keys and "federated_dataset/3/5/1" in keys
        assert data["federated_dataset/0/0/0"].shape == (20, 784)
        assert data["federated_dataset/0/0/1"].dtype == np.int32
    args = fedavg_data.read_npz(str(path))
    assert len(args["federated_dataset"]) == 4

    initialize, next_round = Computation(module, "initialize"), Computation(module, "next")
    state = initialize()
    losses = []
    for _ in range(3):
        result = next_round(state, args["federated_dataset"])
        state = result["weights"]
        losses.append(float(result["loss"]))
    assert [w.shape for w in state] == [(784, 10), (10,)]
    assert losses[0] > losses[1] > losses[2]


@pytest.mark.parametrize("name", ["temperature", "add_half", "analytics"])
def test_examples_round_trip_through_text_and_protobuf(name):
    module = fed.load(EXAMPLES / f"{name}.fed")
    assert ir.parse_module(ir.print_module(module)) == module
    assert ir.deserialize(ir.serialize(module)) == module


def test_fedavg_data_command_line(tmp_path):
    sys.path.insert(0, str(EXAMPLES))
    try:
        import fedavg_data
    finally:
        sys.path.remove(str(EXAMPLES))
    out = tmp_path / "d.npz"
    assert fedavg_data.main(["--clients", "2", "--output", str(out)]) == 0
    first = dict(np.load(out))
    fedavg_data.main(["--clients", "2", "--output", str(out)])
    second = dict(np.load(out))
    assert first.keys() == second.keys()
    for key in first:  # deterministic
        np.testing.assert_array_equal(first[key], second[key])
    assert all(k.split("/")[0] == "federated_dataset" for k in first)


# --------------------------------------------------------------------------
# Declarations


def test_comments_aliases_and_any_order():
    module = compile_text(
        """
        # A comment line.
        computation f(x: Pair@SERVER) -> float32@SERVER {   # trailing comment
          return federated_map(g, x)  # g is defined further down
        }
        local g(p: Pair) -> float32 { return p.a + p.b }
        type Pair = <a=Scalar, b=Scalar>    # an alias of an alias defined later
        type Scalar = float32
        """
    )
    assert signature(module, "f") == "(<a=float32,b=float32>@SERVER -> float32@SERVER)"
    assert run(module, "f", {"a": 1.0, "b": 2.0}) == 3.0


@pytest.mark.parametrize(
    "params, expected",
    [
        ("", "( -> int32)"),
        ("x: float32", "(float32 -> int32)"),
        ("p: float32, q: {int32}@CLIENTS", "(<p=float32,q={int32}@CLIENTS> -> int32)"),
    ],
)
def test_parameters_are_packed_like_python_tracing(params, expected):
    module = compile_text(f"computation f({params}) -> int32 {{ return 1 }}")
    assert signature(module, "f") == expected


def test_several_parameters_select_from_one_struct_parameter():
    module = compile_text(
        """
        computation f(x: {float32}@CLIENTS, y: float32@SERVER) -> <float32@SERVER, float32@SERVER> {
          return <federated_mean(x), y>
        }
        """
    )
    lam = module["f"]
    assert lam.parameter_name == "arg"
    assert "fedc.select %arg.x" in ir.print_module(module)
    assert run(module, "f", [1.0, 3.0], 5.0) == (2.0, 5.0)
    assert Computation(module, "f", parameter_names=["x", "y"])(y=5.0, x=[1.0, 3.0]) == (2.0, 5.0)


def test_result_type_is_optional_and_struct_literals_take_declared_names():
    module = compile_text(
        """
        computation f(x: {float32}@CLIENTS) { return federated_sum(x) }
        computation g(x: {float32}@CLIENTS) -> <total=float32@SERVER, n=int32@SERVER> {
          return <f(x), federated_sum(federated_map(fn(v) -> 1, x))>
        }
        """
    )
    assert signature(module, "f") == "({float32}@CLIENTS -> float32@SERVER)"
    assert signature(module, "g") == "({float32}@CLIENTS -> <total=float32@SERVER,n=int32@SERVER>)"
    assert run(module, "g", [1.0, 2.0]) == {"total": 3.0, "n": 2}


def test_module_name_is_the_sanitized_file_stem():
    assert compile_text("", filename="dir/my-algo.v2.fed").name == "my_algo_v2"
    assert compile_text("", filename="3d.fed").name == "m_3d"
    assert compile_text("").name == "test"
    assert fed.parse("computation f() -> int32 { return 1 }").name == "string"


def test_calls_between_computations_and_module_contents():
    module = compile_text(
        """
        computation main(x: {float32}@CLIENTS) -> float32@SERVER { return twice(average(x)) }
        computation average(x: {float32}@CLIENTS) -> float32@SERVER { return federated_mean(x) }
        computation twice(y: float32@SERVER) -> float32@SERVER { return federated_map(double, y) }
        local double(v: float32) -> float32 { return v * 2 }
        local unused(v: float32) -> float32 { return v }
        """
    )
    # Callees come before their callers; every function of the file is in the module.
    assert module.symbols == ["average", "double", "twice", "main", "unused"]
    assert "fedc.call @average" in ir.print_module(module)
    assert run(module, "main", [1.0, 2.0]) == 3.0


def test_calls_with_keywords_and_function_values():
    module = compile_text(
        """
        local sub(a: float32, b: float32) -> float32 { return a - b }
        local f(x: float32) -> <float32, float32, float32> {
          let inc = fn(v: float32) -> v + 1.0
          return <sub(x, 1.0), sub(b=1.0, a=x), inc(x)>
        }
        """
    )
    assert run(module, "f", 5.0) == (4.0, 4.0, 6.0)


# --------------------------------------------------------------------------
# Local expressions


@pytest.mark.parametrize(
    "expression, expected",
    [
        ("1 + 2 * 3 ** 2", 19),
        ("(1 + 2) * 3", 9),
        ("-2 ** 2", -4),
        ("2 ** 3 ** 2", 512),
        ("10 - 4 - 3", 3),
        ("7 // 2 + 7 % 2", 4),
        ("7.0 / 2.0", 3.5),
        ("-x + 1.0", -1.0),
        ("x * 2", 4.0),
        ("2 * x - 1", 3.0),
        ("x > 1.0 and x < 3.0", True),
        ("x >= 3.0 or not (x == 2.0)", False),
        ("x != 2.0", False),
        ("3i64", 3),
        ("0.5f64 * 2", 1.0),
        ("true", True),
        ('"text"', "text"),
        ("cast(x, dtype=int32) + 1", 3),
        ("where(x > 1.0, x, 0.0)", 2.0),
        ("maximum(x, 5.0) + minimum(x, 5.0)", 7.0),
        ("reduce_sum([1.0, 2.0, 3.0])", 6.0),
        ("reduce_max([[1, 5], [7, 2]])", 7),
        ("<a=x, b=x * 3>.b", 6.0),
        ("<x, 1>[1]", 1),
        ("(fn(v: float32) -> v * v)(x)", 4.0),
        ("abs(-x) + sqrt(4.0) + square(x)", 8.0),
    ],
)
def test_expressions(expression, expected):
    module = compile_text(f"local f(x: float32) {{ return {expression} }}")
    result = run(module, "f", 2.0)
    if isinstance(expected, str):
        assert result == expected
    else:
        assert np.asarray(result).tolist() == pytest.approx(expected)


def test_literal_dtypes():
    module = compile_text(
        """
        local f(x: float64) -> <int32, float32, int64, uint8, float64, bool, str, float32[2,2], float64> {
          return <1, 2.5, 3i64, 7_u8, 0.5f64, false, "s", [[1.0, 2.0], [3.0, 4.0]], x * 2>
        }
        """
    )
    assert signature(module, "f").startswith("(float64 -> <int32,float32,int64,uint8,float64,bool,str,float32[2,2],float64>")


def test_untyped_numbers_take_the_other_operands_dtype():
    module = compile_text(
        """
        local f(x: float64, i: int64, w: <float32[2], float32>) {
          return <x + 1, x * 0.5, i - 2, w * 0.5, -3 + i>
        }
        """
    )
    assert signature(module, "f").endswith("-> <float64,float64,int64,<float32[2],float32>,int64>)")
    result = run(module, "f", 3.0, 5, (np.ones(2, np.float32), np.float32(4.0)))
    assert result[0] == 4.0 and result[2] == 3 and result[3][1] == 2.0 and result[4] == 2


def test_matmul_reshape_and_attributes():
    module = compile_text(
        """
        type M = float32[2,3]
        local f(a: M) -> <float32[2,2], float32[6], float32[1,3], float32[2,3], float32[3]> {
          let t = reshape(a, shape=[3, 2])
          return <a @ t, reshape(a, shape=[-1]), reduce_sum(a, axis=0, keepdims=true), zeros(type=M), ones(type=type(float32[3]))>
        }
        """
    )
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    mm, flat, summed, z, o = run(module, "f", a)
    np.testing.assert_allclose(mm, a @ a.reshape(3, 2))
    np.testing.assert_allclose(flat, a.ravel())
    np.testing.assert_allclose(summed, a.sum(axis=0, keepdims=True))
    assert not z.any() and o.tolist() == [1, 1, 1]


def test_let_bindings_are_ssa_block_locals():
    module = compile_text(
        """
        computation f(x: {float32}@CLIENTS) -> float32@SERVER {
          let doubled = federated_map(fn(x) { let y = x * 2.0; return y }, x)
          let mean = federated_mean(doubled)
          return mean
        }
        """
    )
    lam = module["f"]
    assert isinstance(lam.result, ir.Block)
    assert [name for name, _ in lam.result.locals] == ["doubled", "mean"]
    text = ir.print_module(module, locations=False)
    # The function's parameter hides the computation's x: it is renamed in the IR (SSA).
    assert "fedc.lambda(%x_1: float32)" in text
    assert "%y = local.multiply(%x_1, %1)" in text
    assert run(module, "f", [1.0, 2.0]) == 3.0


# --------------------------------------------------------------------------
# Functions (lambdas) and intrinsics


def test_inline_functions_infer_parameter_types():
    module = compile_text(
        """
        computation f(x: {<a=float32, b=int32>}@CLIENTS, s: <lo=float32, hi=float32>@SERVER) -> {float32}@CLIENTS {
          let bounds = federated_broadcast(s)
          return federated_map(fn(v, b) -> clip(v.a, b.lo, b.hi) + cast(v.b, dtype=float32), <x, bounds>)
        }
        """
    )
    lam = module["f"].result.locals[-1][1].argument.elements[0][1]
    assert str(lam.type_signature) == "(<v=<a=float32,b=int32>,b=<lo=float32,hi=float32>> -> float32)"
    result = run(module, "f", [(5.0, 1), (-5.0, 2)], {"lo": 0.0, "hi": 3.0})
    assert [float(v) for v in result] == [4.0, 2.0]


def test_selection_from_a_placed_struct_is_mapped():
    module = compile_text(
        """
        computation f(x: {<a=float32, b=float32>}@CLIENTS, s: <c=int32>@SERVER) -> <float32@SERVER, int32@SERVER> {
          return <federated_mean(x.b), s.c>
        }
        """
    )
    text = ir.print_module(module, locations=False)
    assert "%b = fed.map(" in text and "%c = fed.apply(" in text
    assert run(module, "f", [(1.0, 2.0), (3.0, 4.0)], (7,)) == (3.0, 7)


def test_federated_map_on_the_server_is_apply_and_structs_are_zipped():
    module = compile_text(
        """
        computation f(s: float32@SERVER, x: {float32}@CLIENTS, y: {float32}@CLIENTS) -> <float32@SERVER, {float32}@CLIENTS> {
          return <federated_map(abs, s), federated_map(fn(a, b) -> a * b, <x, y>)>
        }
        """
    )
    text = ir.print_module(module, locations=False)
    assert "fed.apply(" in text and "%zipped = fed.zip_at_clients(" in text
    server, clients = run(module, "f", -2.0, [1.0, 2.0], [3.0, 4.0])
    assert server == 2.0 and [float(v) for v in clients] == [3.0, 8.0]


def test_every_federated_intrinsic_by_name():
    module = compile_text(
        """
        computation f(x: {float32}@CLIENTS, w: {float32}@CLIENTS, i: {int32}@CLIENTS, keys: {int32[2]}@CLIENTS,
                      table: float32[4]@SERVER, d: {int32*}@CLIENTS) {
          let values = <
            federated_mean(x, weight=w),
            federated_weighted_mean(x, w),
            federated_sum(x), federated_min(x), federated_max(x),
            federated_secure_sum(i, 10), federated_secure_sum_bitwidth(i, bitwidth=8),
            federated_secure_modular_sum(i, modulus=4),
            federated_aggregate(x, 0.0, fn(acc, v) -> acc + v, fn(a, b) -> a + b, fn(acc) -> acc * 0.5),
            federated_value(1, SERVER), federated_value_at_server(2),
            federated_eval(fn() -> 3, SERVER), federated_eval_at_server(fn() -> 4),
            federated_zip(<federated_value(1, SERVER), federated_value(2.0, SERVER)>),
            federated_apply(fn(t) -> reduce_sum(t), table)
          >
          let at_clients = <
            federated_broadcast(table),
            federated_value(5, CLIENTS), federated_eval(fn() -> 6, CLIENTS),
            federated_map_all_equal(fn(t) -> t * 2.0, federated_broadcast(table)),
            federated_zip_at_clients(<x, w>),
            federated_select(keys, federated_value(4, SERVER), table, fn(t, k) -> cast(k, dtype=float32)),
            federated_secure_select(keys, federated_value(4, SERVER), table, fn(t, k) -> reduce_sum(t)),
            federated_map(fn(s) -> sequence_sum(s), d),
            federated_map(fn(s) -> sequence_reduce(s, 0, fn(acc, e) -> maximum(acc, e)), d),
            federated_map(fn(s) -> sequence_map(fn(e) -> e * 2, s), d)
          >
          return <values, at_clients>
        }
        """
    )
    values, at_clients = run(
        module, "f",
        [1.0, 3.0], [1.0, 3.0], [1, 2], [np.array([0, 1], np.int32), np.array([2, 3], np.int32)],
        np.array([1, 2, 3, 4], np.float32), [[1, 2], [5]],
    )
    assert [float(v) if np.ndim(v) == 0 else v for v in values[:9]] == [2.5, 2.5, 4.0, 1.0, 3.0, 3, 3, 3, 2.0]
    assert values[9:13] == (1, 2, 3, 4) and values[13] == (1, 2.0) and values[14] == 10.0
    assert [int(v) for v in at_clients[7]] == [3, 5]
    assert [int(v) for v in at_clients[8]] == [2, 5]
    assert [[int(e) for e in s] for s in at_clients[9]] == [[2, 4], [10]]
    assert [float(v) for v in at_clients[5][1]] == [2.0, 3.0]


def test_local_op_names_as_functions():
    module = compile_text(
        """
        computation f(x: {float32}@CLIENTS, d: {float32*}@CLIENTS) -> <{float32}@CLIENTS, {float32}@CLIENTS> {
          return <federated_map(negative, x), federated_map(fn(s) -> sequence_reduce(s, 0.0, add), d)>
        }
        """
    )
    neg, sums = run(module, "f", [1.0, 2.0], [[1.0, 2.0], [3.0]])
    assert [float(v) for v in neg] == [-1.0, -2.0] and [float(v) for v in sums] == [3.0, 3.0]


# --------------------------------------------------------------------------
# Imports and externs


def test_imports(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "stats.fed").write_text(
        'import "../common.fed"\n'
        "computation mean_of(x: {Scalar}@CLIENTS) -> Scalar@SERVER { return federated_mean(x) }\n"
        "local helper(v: Scalar) -> Scalar { return v }\n"
    )
    (tmp_path / "common.fed").write_text("type Scalar = float32\nlocal helper(v: float32) -> float32 { return v * 3.0 }\n")
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "extra.fed").write_text("local triple(v: float32) -> float32 { return v * 3.0 }\n")
    main = tmp_path / "main.fed"
    main.write_text(
        'import "lib/stats.fed"\n'
        'import "extra.fed"   # found on the search path\n'
        "computation f(x: {float32}@CLIENTS) -> float32@SERVER {\n"
        "  return federated_map(triple, mean_of(federated_map(helper, x)))\n"
        "}\n"
    )
    module = fed.load(main, search_paths=[tmp_path / "shared"])
    ir.verify(module)
    # What is used comes along; stats.fed's own helper hides the one it imports.
    assert sorted(module.symbols) == ["f", "helper", "mean_of", "triple"]
    assert f'loc("{tmp_path / "lib" / "stats.fed"}":2:1)' in ir.print_module(module)
    assert run(module, "f", [1.0, 2.0]) == 4.5


def test_imported_names_that_clash_in_the_module_are_renamed(tmp_path):
    (tmp_path / "a.fed").write_text("local h(v: float32) -> float32 { return v + 1.0 }\n"
                                    "local fa(v: float32) -> float32 { return h(v) }\n")
    (tmp_path / "b.fed").write_text("local h(v: float32) -> float32 { return v * 10.0 }\n"
                                    "local fb(v: float32) -> float32 { return h(v) }\n")
    (tmp_path / "main.fed").write_text('import "a.fed"\nimport "b.fed"\n'
                                       "local f(v: float32) -> float32 { return fa(v) + fb(v) }\n")
    module = fed.load(tmp_path / "main.fed")  # main.fed does not use the ambiguous h
    assert sorted(module.symbols) == ["f", "fa", "fb", "h", "h_1"]
    assert run(module, "f", 1.0) == 12.0


@pytest.fixture(scope="module")
def python_module(tmp_path_factory):
    folder = tmp_path_factory.mktemp("externs")
    name = f"fed_externs_{uuid.uuid4().hex[:8]}"
    (folder / f"{name}.py").write_text(textwrap.dedent(
        """
        import numpy as np
        import fedc

        @fedc.tf_computation(np.float32, np.float32)
        def scale(x, k):
            return x * k

        @fedc.tf_computation
        def double(x):
            return x * 2
        """
    ))
    yield folder, name
    sys.modules.pop(name, None)


def test_externs_bind_tf_computations(python_module):
    folder, name = python_module
    module = compile_text(
        f"""
        extern scale: (<x=float32,k=float32> -> float32) = "{name}:scale"
        extern double: (float32[3] -> float32[3]) = "{name}:double"   # polymorphic: specialised
        extern unused: (<x=float32,k=float32> -> float32) = "{name}:scale"
        computation f(x: {{float32}}@CLIENTS, v: float32[3]) -> <{{float32}}@CLIENTS, float32[3]> {{
          return <federated_map(fn(a) -> scale(a, 3.0), x), double(v)>
        }}
        """,
        filename=str(folder / "main.fed"),
        import_externs=True,
    )
    assert sorted(module.symbols) == ["double", "f", "scale"]
    assert isinstance(module["scale"], ir.Compiled) and module["scale"].name == "scale"
    assert signature(module, "double") == "(float32[3] -> float32[3])"
    clients, doubled = run(module, "f", [1.0, 2.0], np.arange(3, dtype=np.float32))
    assert [float(v) for v in clients] == [3.0, 6.0] and doubled.tolist() == [0.0, 2.0, 4.0]


def test_externs_stay_unbound_unless_python_may_run(tmp_path):
    # Compiling imports no Python: the module beside the file would write a marker if imported.
    name = f"fed_marker_{uuid.uuid4().hex[:8]}"
    marker = tmp_path / "imported"
    (tmp_path / f"{name}.py").write_text(
        f"import pathlib, numpy as np, fedc\npathlib.Path({str(marker)!r}).write_text('ran')\n"
        "@fedc.tf_computation(np.float32)\ndef inc(x):\n    return x + 1.0\n"
    )
    source = (
        f'extern inc: (float32 -> float32) = "{name}:inc"\n'
        "computation f(x: float32@SERVER) -> float32@SERVER { return federated_map(inc, x) }\n"
    )
    path = tmp_path / "algo.fed"
    path.write_text(source)
    module = fed.load(path)
    assert not marker.exists()
    assert module["inc"].kind == "extern" and module["inc"].payload == f"{name}:inc".encode()
    assert signature(module, "f") == "(float32@SERVER -> float32@SERVER)"
    ir.verify(module)
    assert ir.parse_module(ir.print_module(module)) == module
    with pytest.raises(fedc.FedcError, match=f"extern inc names the Python function '{name}:inc', which was not imported"):
        run(module, "f", 1.0)
    assert not marker.exists()
    bound = fed.load(path, import_externs=True)
    sys.modules.pop(name, None)
    assert marker.exists() and run(bound, "f", 1.0) == 2.0


def test_extern_search_paths(tmp_path):
    folder = tmp_path / "py"
    folder.mkdir()
    name = f"fed_search_{uuid.uuid4().hex[:8]}"
    (folder / f"{name}.py").write_text(
        "import numpy as np\nimport fedc\n\n"
        "@fedc.tf_computation(np.float32, np.float32)\ndef scale(x, k):\n    return x * k\n"
    )
    module = compile_text(
        f'extern scale: (<x=float32,k=float32> -> float32) = "{name}:scale"\n'
        "local f(x: float32) -> float32 { return scale(x, x) }\n",
        filename=str(tmp_path / "elsewhere.fed"),
        search_paths=[folder],
        import_externs=True,
    )
    sys.modules.pop(name, None)
    assert run(module, "f", 3.0) == 9.0
