"""The reference implementation of every local op: values against numpy, and batched == per client."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from fedc import ir, types
from fedc.backends.reference.interpreter import Interpreter
from fedc.ir.intrinsics import IntrinsicKind, all_definitions
from fedc.values import Clients

F32 = np.float32


def run(uri, *operands, **attrs):
    nodes = [ir.Literal(np.asarray(o)) for o in operands]
    argument = nodes[0] if len(nodes) == 1 else (ir.Struct(nodes) if nodes else None)
    call = ir.intrinsic_call(uri, argument, **attrs)
    result = Interpreter(None).evaluate(call, {})
    expected_type = call.type_signature
    if isinstance(expected_type, types.TensorType):
        assert result.dtype == expected_type.dtype, (uri, result.dtype, expected_type)
        assert expected_type.is_assignable_from(types.TensorType(result.dtype, result.shape))
    return result


x = np.array([[1.0, -2.0, 3.0], [0.5, 4.0, -1.0]], F32)
y = np.array([2.0, 2.0, -3.0], F32)
pos = np.abs(x) + 1.0
ints = np.array([7, -8, 9], np.int32)
CASES = {
    "add": ((x, y), {}, x + y),
    "subtract": ((x, y), {}, x - y),
    "multiply": ((x, y), {}, x * y),
    "divide": ((x, y), {}, x / y),
    "floor_divide": ((ints, np.int32(2)), {}, ints // 2),
    "mod": ((ints, np.int32(4)), {}, ints % 4),
    "pow": ((pos, F32(2.0)), {}, pos**2),
    "maximum": ((x, y), {}, np.maximum(x, y)),
    "minimum": ((x, y), {}, np.minimum(x, y)),
    "equal": ((x, y), {}, x == y),
    "not_equal": ((x, y), {}, x != y),
    "less": ((x, y), {}, x < y),
    "less_equal": ((x, y), {}, x <= y),
    "greater": ((x, y), {}, x > y),
    "greater_equal": ((x, y), {}, x >= y),
    "logical_and": ((x > 0, y > 0), {}, (x > 0) & (y > 0)),
    "logical_or": ((x > 0, y > 0), {}, (x > 0) | (y > 0)),
    "negative": ((x,), {}, -x),
    "abs": ((x,), {}, np.abs(x)),
    "sign": ((x,), {}, np.sign(x)),
    "square": ((x,), {}, x * x),
    "sqrt": ((pos,), {}, np.sqrt(pos)),
    "exp": ((x,), {}, np.exp(x)),
    "log": ((pos,), {}, np.log(pos)),
    "logical_not": ((x > 0,), {}, ~(x > 0)),
    "where": ((x > 0, x, y), {}, np.where(x > 0, x, y)),
    "clip": ((x, F32(-1.0), F32(2.0)), {}, np.clip(x, -1, 2)),
    "cast": ((x,), {"dtype": "int32"}, x.astype(np.int32)),
    "check": ((x > -10, x), {"message": "every value is above -10"}, x),
    "reshape": ((x,), {"shape": [3, -1]}, x.reshape(3, 2)),
    "matmul": ((x, x.T), {}, x @ x.T),
    "reduce_sum": ((x,), {"axis": 1}, x.sum(axis=1)),
    "reduce_mean": ((x,), {"axis": [0, 1], "keepdims": True}, x.mean(keepdims=True)),
    "reduce_max": ((x,), {"axis": -1}, x.max(axis=-1)),
    "reduce_min": ((x,), {}, x.min()),
    "zeros": ((), {"type": types.parse("<float32[2],int32>")}, None),
    "ones": ((), {"type": types.parse("float32[2,2]")}, np.ones([2, 2], F32)),
    "random_normal": ((), {"type": types.parse("<float32[500],float64[3]>")}, None),
}


def test_every_local_op_has_a_case():
    local = {d.uri for d in all_definitions() if d.kind is IntrinsicKind.LOCAL}
    assert local == set(CASES)


@pytest.mark.parametrize("uri", sorted(CASES))
def test_local_op_values(uri):
    operands, attrs, expected = CASES[uri]
    result = run(uri, *operands, **attrs)
    if uri == "zeros":
        assert isinstance(result, tuple) and result[0].tolist() == [0.0, 0.0] and result[1] == 0
        return
    if uri == "random_normal":  # standard normal, of the type's dtypes, and another draw each run
        again = run(uri, *operands, **attrs)
        assert result[0].dtype == np.float32 and result[1].dtype == np.float64 and result[1].shape == (3,)
        assert abs(result[0].mean()) < 0.3 and 0.8 < result[0].std() < 1.2
        assert not np.array_equal(result[0], again[0])
        return
    np.testing.assert_allclose(np.asarray(result, dtype=np.float64), np.asarray(expected, dtype=np.float64), rtol=1e-6)


@pytest.mark.parametrize("uri", sorted(u for u in CASES if u not in ("zeros", "ones", "random_normal")))
def test_batched_evaluation_equals_per_client_evaluation(uri):
    """Mapping over clients batched (one numpy call) matches running each client alone."""
    operands, attrs, _ = CASES[uri]
    first = np.asarray(operands[0])
    member = types.TensorType(first.dtype, first.shape)
    others = [ir.Literal(np.asarray(o)) for o in operands[1:]]
    param = ir.Reference("v", member)
    argument = param if not others else ir.Struct([param, *others])
    lam = ir.Lambda("v", member, ir.intrinsic_call(uri, argument, **attrs))
    clients = [first * (k + 1) if first.dtype.kind == "f" else first for k in range(3)]
    interpreter = Interpreter(None, len(clients))
    closure = interpreter.evaluate(lam, {})
    batched = interpreter.map_clients(closure, Clients.from_items(clients))
    assert batched.stacked() is not None
    for got, client in zip(batched.items(), clients):
        want = closure(client)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


def test_struct_wise_ops():
    a = ir.Literal(np.array([1.0, 2.0], F32))
    b = ir.Literal(F32(3.0))
    pair = ir.Struct([a, b])
    scaled = ir.intrinsic_call("multiply", ir.Struct([pair, ir.Literal(F32(2.0))]))
    out = Interpreter(None).evaluate(scaled, {})
    assert out[0].tolist() == [2.0, 4.0] and out[1] == 6.0


def test_integer_division_by_zero_is_an_error():
    from fedc.errors import FedcError

    with pytest.raises(FedcError, match="integer division by zero"):
        run("floor_divide", np.int32(1), np.int32(0))


@given(st.lists(st.floats(-100, 100, width=32), min_size=1, max_size=20), st.sampled_from(["add", "multiply", "maximum", "subtract"]))
def test_batched_map_equals_per_client_map(values, op):
    """The reference interpreter's vectorized path and its per-client path give the same results."""
    f32 = types.TensorType(F32)
    lam = ir.Lambda("v", f32, ir.intrinsic_call(op, ir.Struct([ir.Reference("v", f32), ir.Literal(F32(0.5))])))
    interpreter = Interpreter(None, len(values))
    closure = interpreter.evaluate(lam, {})
    arrays = [np.asarray(v, F32) for v in values]
    batched = interpreter.map_clients(closure, Clients.from_items(arrays))
    per_client = [closure(a) for a in arrays]
    np.testing.assert_array_equal(np.asarray(batched.items()), np.asarray(per_client))
