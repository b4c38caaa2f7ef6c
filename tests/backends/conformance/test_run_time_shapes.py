"""Local ops whose declared dims are unknown (``?``) check the actual shapes at run time.

A shape the op's type rule refuses is a FedcTypeError at the op's source
location naming the op and the operands' actual types — never a numpy
ValueError, and never a silent numpy broadcast that the op's type forbids.
"""

import json

import numpy as np
import pytest

import fedc
from fedc import ops, types
from fedc.cli import main as fedc_main
from fedc.frontend import fed

F32 = np.float32


def vector(n=None):
    return types.TensorType(F32, [n])


def matrix(m=None, n=None):
    return types.TensorType(F32, [m, n])


PROGRAM = """\
local add(x: float32[?], y: float32[?]) -> float32[?] {
  return x + y
}
local flatten_pairs(x: float32[?]) -> float32[?,2] {
  return reshape(x, shape=[-1, 2])
}
local product(a: float32[?,?], b: float32[?,?]) -> float32[?,?] {
  return a @ b
}
local clipped(x: float32[?], low: float32[?], high: float32[?]) -> float32[?] {
  return clip(x, low, high)
}
local total(x: float32[*]) -> float32[*] {
  return reduce_sum(x, axis=1)
}
local pick(c: bool[?], x: float32[?], y: float32[?]) -> float32[?] {
  return where(c, x, y)
}
computation mapped(xs: {float32[?]}@CLIENTS, y: float32[?]@SERVER) -> {float32[?]}@CLIENTS {
  return federated_map(fn(v, w) -> v + w, <xs, federated_broadcast(y)>)
}
"""

# (entry, arguments, the operand types the error names, the op's line:column in PROGRAM)
MISMATCHES = [
    ("add", ([1, 2, 3], [1, 2]), "<float32[3],float32[2]>", "2:12"),
    ("add", ([1, 2, 3, 4], [1, 2]), "<float32[4],float32[2]>", "2:12"),
    ("flatten_pairs", ([1, 2, 3],), "float32[3]", "5:10"),
    ("flatten_pairs", (list(range(7)),), "float32[7]", "5:10"),
    ("product", ([[1, 2, 3]], [[1, 2]]), "<float32[1,3],float32[1,2]>", "8:12"),
    ("product", ([[1.0]] * 4, [[1.0, 2.0]] * 3), "<float32[4,1],float32[3,2]>", "8:12"),
    # numpy would broadcast the value to the bounds' shape [3]; clip keeps the value's shape.
    ("clipped", ([1], [0, 0, 0], [2, 2, 2]), "<float32[1],float32[3],float32[3]>", "11:10"),
    ("total", ([1, 2],), "float32[2]", "14:10"),
    ("pick", ([True, False], [1, 2, 3], [1, 2, 3]), "<bool[2],float32[3],float32[3]>", "17:10"),
]


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    path = tmp_path_factory.mktemp("shapes") / "shapes.fed"
    path.write_text(PROGRAM)
    return path


@pytest.fixture(scope="module")
def module(program):
    return fed.load(str(program))


@pytest.mark.parametrize("entry, arguments, operands, place", MISMATCHES)
def test_fed_programs_report_the_op_its_operands_and_its_place(module, program, entry, arguments, operands, place):
    computation = fedc.Computation(module, entry)
    with pytest.raises(fedc.FedcTypeError) as info:
        computation(*arguments)
    message = str(info.value)
    assert str(info.value.location) == f"{program}:{place}"
    assert f"got an argument of type {operands}" in message
    assert "at run time" in message and "declared type is" in message


@pytest.mark.parametrize("entry, arguments, operands, place", MISMATCHES[:6:2])
def test_the_cli_reports_them_with_status_2(program, tmp_path, capsys, entry, arguments, operands, place):
    names = {"add": ["x", "y"], "flatten_pairs": ["x"], "product": ["a", "b"]}[entry]
    args = tmp_path / "args.json"
    args.write_text(json.dumps(dict(zip(names, arguments))))
    assert fedc_main(["run", str(program), "--entry", entry, "--args", str(args)]) == 2
    err = capsys.readouterr().err
    assert f"{program}:{place}" in err and operands in err
    assert "Traceback" not in err and "internal error" not in err


@pytest.mark.parametrize("entry, arguments, expected", [
    ("add", ([1, 2, 3], [10]), [11, 12, 13]),  # a dimension of 1 broadcasts, as the type rule says
    ("flatten_pairs", ([1, 2, 3, 4],), [[1, 2], [3, 4]]),
    ("product", ([[1, 2]], [[1], [2]]), [[5]]),
    ("clipped", ([5, -5, 1], [0], [2]), [2, 0, 1]),
    ("total", ([[1, 2], [3, 4]],), [3, 7]),
])
def test_shapes_the_rule_allows_still_run(module, entry, arguments, expected):
    np.testing.assert_allclose(fedc.Computation(module, entry)(*arguments), expected)


def test_mapped_over_clients_batched_or_not(module, program):
    mapped = fedc.Computation(module, "mapped")
    result = mapped([np.ones(2, F32), np.zeros(2, F32)], np.array([1, 2], F32))
    np.testing.assert_allclose(np.stack(result), [[2, 3], [1, 2]])
    for clients in ([np.ones(3, F32), np.zeros(3, F32)], [np.ones(3, F32), np.zeros(2, F32)]):
        with pytest.raises(fedc.FedcTypeError, match=r"got an argument of type <float32\[\d\],float32\[2\]>") as info:
            mapped(clients, np.array([1, 2], F32))
        assert info.value.location is not None and info.value.location.line == 20


def test_python_traced_ops_report_their_line():
    @fedc.federated_computation(vector(), vector())
    def add(x, y):
        return x + y  # the op's line

    @fedc.federated_computation(matrix(), matrix())
    def product(a, b):
        return ops.matmul(a, b)

    @fedc.federated_computation(vector())
    def pairs(x):
        return ops.reshape(x, shape=[-1, 2])

    cases = [
        (add, ([1, 2, 3], [1, 2]), "<float32[3],float32[2]>"),
        (product, (np.ones((2, 3), F32), np.ones((2, 3), F32)), "<float32[2,3],float32[2,3]>"),
        (pairs, (np.ones(5, F32),), "float32[5]"),
    ]
    for computation, arguments, operands in cases:
        with pytest.raises(fedc.FedcTypeError) as info:
            computation(*arguments)
        assert info.value.location.file == __file__
        assert f"got an argument of type {operands}" in str(info.value)
    with pytest.raises(fedc.FedcTypeError) as info:
        add([1, 2, 3], [1, 2])
    assert "the op's line" in open(__file__).read().splitlines()[info.value.location.line - 1]


@pytest.mark.parametrize("op", ["federated_sum", "federated_mean", "federated_max", "federated_min"])
def test_clients_values_of_different_shapes_are_not_combined(op):
    @fedc.federated_computation(types.FederatedType(vector(), fedc.CLIENTS))
    def combine(values):
        return getattr(fedc, op)(values)

    with pytest.raises(fedc.FedcError, match=rf"{op}: client 0's value has shape \[2\], client 2's \[3\]"):
        combine([np.ones(2, F32), np.ones(2, F32), np.ones(3, F32)])
    np.testing.assert_allclose(combine([np.ones(4, F32), np.ones(4, F32)]), np.ones(4) * (2 if op == "federated_sum" else 1))


def test_an_empty_sum_of_unknown_shape_has_no_value():
    @fedc.federated_computation(types.FederatedType(vector(), fedc.CLIENTS))
    def total(values):
        return fedc.federated_sum(values)

    with pytest.raises(fedc.FedcError, match=r"zeros of float32\[\?\], whose shape is unknown"):
        total([])
