"""Every local op on every backend: a rule in each backend's table, and the oracle's values, plain and mapped."""

import pathlib
import sys

import numpy as np
import pytest

import fedc
from fedc import ir, types
from fedc.backends.base import get_backend
from fedc.computation import Computation
from fedc.ir.intrinsics import IntrinsicKind, all_definitions
from fedc.ir.module import Module

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "reference"))
from test_reference_local_ops import CASES  # noqa: E402

from conftest import BACKENDS  # noqa: E402

LOCAL = sorted(d.uri for d in all_definitions() if d.kind is IntrinsicKind.LOCAL)


@pytest.mark.parametrize("name", BACKENDS)
def test_every_local_op_has_a_rule_in_every_backend(name):
    rules = get_backend(name).rules
    assert [uri for uri in LOCAL if uri not in rules] == []


def _module(uri, operands, attrs, mapped: bool) -> Module:
    nodes = [ir.Literal(np.asarray(o)) for o in operands]
    if not mapped:
        argument = nodes[0] if len(nodes) == 1 else (ir.Struct(nodes) if nodes else None)
        body = ir.intrinsic_call(uri, argument, **attrs)
        return Module("ops", {"op": ir.Lambda(None, None, body)})
    first = np.asarray(operands[0])
    member = types.TensorType(first.dtype, first.shape)
    param = ir.Reference("v", member)
    argument = param if len(nodes) == 1 else ir.Struct([param, *nodes[1:]])
    fn = ir.Lambda("v", member, ir.intrinsic_call(uri, argument, **attrs))
    clients = types.FederatedType(member, types.CLIENTS)
    body = ir.intrinsic_call("federated_map", ir.Struct([fn, ir.Reference("x", clients)]))
    return Module("ops", {"op": ir.Lambda("x", clients, body)})


def _same(actual, expected):
    if isinstance(expected, tuple):
        assert isinstance(actual, tuple) and len(actual) == len(expected)
        for a, e in zip(actual, expected):
            _same(a, e)
        return
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    if expected.dtype.kind == "f":
        np.testing.assert_allclose(actual, expected, rtol=1e-6)
    else:
        np.testing.assert_array_equal(actual, expected)


# (random draws have no oracle value: tests/backends/conformance/test_random_draws.py checks them)
@pytest.mark.parametrize("uri", sorted(u for u in CASES if u != "random_normal"))
def test_local_op_equals_the_oracle(backend, uri):
    operands, attrs, _ = CASES[uri]
    computation = Computation(_module(uri, operands, attrs, mapped=False), "op")
    with fedc.backend("reference"):
        expected = computation()
    _same(computation(), expected)


@pytest.mark.parametrize("uri", sorted(u for u in CASES if u not in ("zeros", "ones", "random_normal")))
def test_local_op_mapped_over_clients_equals_the_oracle(backend, uri):
    operands, attrs, _ = CASES[uri]
    first = np.asarray(operands[0])
    clients = [first * (k + 1) if first.dtype.kind == "f" else first for k in range(3)]
    computation = Computation(_module(uri, operands, attrs, mapped=True), "op")
    with fedc.backend("reference"):
        expected = computation(clients)
    actual = computation(clients)
    assert len(actual) == 3
    for a, e in zip(actual, expected):
        _same(a, e)


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint8, np.uint64])
def test_integer_ops_refuse_what_the_oracle_refuses(backend, dtype):
    info = np.iinfo(dtype)
    cases = [
        ("add", (np.asarray([info.max], dtype), np.asarray([1], dtype)), {}, "add of"),
        ("reduce_sum", (np.asarray([info.max, 1], dtype),), {}, "reduce_sum of"),
        ("floor_divide", (np.asarray([1], dtype), np.asarray([0], dtype)), {}, "integer division by zero"),
        ("cast", (np.asarray([np.nan], np.float32),), {"dtype": np.dtype(dtype).name}, "cast"),
    ]
    for uri, operands, attrs, fragment in cases:
        computation = Computation(_module(uri, operands, attrs, mapped=False), "op")
        with pytest.raises(fedc.FedcError, match=fragment):
            computation()


def test_a_failed_check_is_an_error_with_its_message(backend):
    """local.check (how lowerings keep an intrinsic's run-time check): in a computation and mapped over clients."""
    message = "a client's weight is negative; weights are at least 0"
    computation = Computation(_module("check", [np.array([True, False]), np.float32(1.5)], {"message": message},
                                      mapped=False), "op")
    with pytest.raises(fedc.FedcError, match="a client's weight is negative; weights are at least 0"):
        computation()
    mapped = Computation(_module("check", [np.array(True), np.float32(1.5)], {"message": message}, mapped=True), "op")
    assert [float(v) for v in mapped([np.array(True)] * 3)] == [1.5, 1.5, 1.5]
    with pytest.raises(fedc.FedcError, match="a client's weight is negative"):
        mapped([np.array(True), np.array(False), np.array(True)])
