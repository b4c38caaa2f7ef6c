"""One table of API functions for both frontends: the same call gives the same IR in Python and in .fed."""

import inspect

import numpy as np
import pytest

import fedc
from fedc import ir
from fedc.frontend import fed
from fedc.frontend.api import API, BINARY_OPERATORS, UNARY_OPERATORS, implicit_zip, map_intrinsic
from fedc.types import CLIENTS, SERVER, FederatedType, StructType, TensorType, to_type

F32 = np.float32


def traced(types, fn):
    return fedc.federated_computation(*types)(fn).ir


def intrinsic_calls(node: ir.Node) -> list:
    """What the API decided: each intrinsic (op, type) in order, and the locals bound to intrinsic calls.

    (The frontends name lambda parameters and select struct parameters in their own ways.)"""
    ops = [(n.uri, str(n.type_signature)) for n in node.walk() if isinstance(n, ir.Intrinsic)]
    named = [n for b in node.walk() if isinstance(b, ir.Block) for n, v in b.locals
             if isinstance(v, ir.Call) and isinstance(v.function, ir.Intrinsic)]
    return ops + named


def compiled(source: str) -> ir.Node:
    return fed.parse(source, filename="t.fed")["f"]


# (.fed computation, parameter types, the same computation in Python)
CASES = {
    "map at the server is apply": (
        "computation f(x: float32@SERVER) { return federated_map(fn(v) -> v * 2.0, x) }",
        ["float32@SERVER"], lambda x: fedc.federated_map(lambda v: v * 2.0, x),
    ),
    "map at the clients": (
        "computation f(x: {float32}@CLIENTS) { return federated_map(fn(v) -> v + 1.0, x) }",
        ["{float32}@CLIENTS"], lambda x: fedc.federated_map(lambda v: v + 1.0, x),
    ),
    "weighted mean": (
        "computation f(x: {float32}@CLIENTS, w: {float32}@CLIENTS) { return federated_mean(x, w) }",
        ["{float32}@CLIENTS", "{float32}@CLIENTS"], lambda x, w: fedc.federated_mean(x, w),
    ),
    "mean with the weight by name": (
        "computation f(x: {float32}@CLIENTS, w: {float32}@CLIENTS) { return federated_mean(x, weight=w) }",
        ["{float32}@CLIENTS", "{float32}@CLIENTS"], lambda x, w: fedc.federated_mean(x, weight=w),
    ),
    "implicit zip before a broadcast": (
        "computation f(a: float32@SERVER, b: int32@SERVER) { return federated_broadcast(<a, b>) }",
        ["float32@SERVER", "int32@SERVER"], lambda a, b: fedc.federated_broadcast((a, b)),
    ),
    "zip at the clients": (
        "computation f(a: {float32}@CLIENTS, b: {int32}@CLIENTS) { return federated_zip(<a, b>) }",
        ["{float32}@CLIENTS", "{int32}@CLIENTS"], lambda a, b: fedc.federated_zip((a, b)),
    ),
    "value and eval at a placement": (
        "computation f() { return <federated_value(1, CLIENTS), federated_value(2.5, SERVER)> }",
        [], lambda: (fedc.federated_value(np.int32(1), fedc.CLIENTS), fedc.federated_value(F32(2.5), fedc.SERVER)),
    ),
    "secure sum with a bound": (
        "computation f(x: {int32}@CLIENTS) { return federated_secure_sum_bitwidth(x, 8) }",
        ["{int32}@CLIENTS"], lambda x: fedc.federated_secure_sum_bitwidth(x, 8),
    ),
    "selecting from placed structs maps the selection": (
        "computation f(s: <a=float32,b=int32>@SERVER, c: <a=float32>@CLIENTS, d: {<a=float32>}@CLIENTS) "
        "{ return <s.a, c.a, d.a> }",
        ["<a=float32,b=int32>@SERVER", "<a=float32>@CLIENTS", "{<a=float32>}@CLIENTS"],
        lambda s, c, d: (s.a, c.a, d.a),
    ),
    "sum, min and max": (
        "computation f(x: {int32}@CLIENTS) { return <federated_sum(x), federated_min(x), federated_max(x)> }",
        ["{int32}@CLIENTS"], lambda x: (fedc.federated_sum(x), fedc.federated_min(x), fedc.federated_max(x)),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_both_frontends_build_the_same_ir(case):
    source, types, python = CASES[case]
    from_fed = compiled(source)
    from_python = traced([to_type(t) for t in types], python)
    assert intrinsic_calls(from_fed) == intrinsic_calls(from_python)
    assert intrinsic_calls(from_fed)


def test_aggregate_types_its_functions_from_the_value_and_zero():
    source = """
    computation f(x: {float32}@CLIENTS) {
      return federated_aggregate(x, 0.0, fn(a, v) -> a + v, fn(a, b) -> a + b, fn(a) -> a * 2.0)
    }
    """
    node = compiled(source)
    aggregate = [v for _, v in node.result.locals if isinstance(v, ir.Call)][-1]
    accumulate = aggregate.argument.type_signature[2]
    assert [str(t) for t in accumulate.parameter] == ["float32", "float32"]  # <U,T>
    assert str(aggregate.argument.type_signature[4]) == "(float32 -> float32)"


def test_the_python_api_is_the_table():
    """Every Python API function has the table's parameters and doc."""
    for name in fedc.frontend.federated.__all__:
        if name == "federated_computation":
            continue
        function = API[name]
        python = getattr(fedc, name)
        parameters = inspect.signature(python).parameters
        assert tuple(parameters) == function.parameters
        assert [p for p in parameters if parameters[p].default is None] == list(function.optional)
        assert python.__doc__ == function.doc


def test_api_parameters_of_intrinsics_are_their_operands():
    for name, function in API.items():
        if name in ("federated_value", "federated_eval", "federated_map", "federated_zip", "federated_mean"):
            continue  # the API functions that choose between intrinsics
        assert function.parameters == ir.lookup(name).operand_names, name


def test_the_same_error_in_both_frontends():
    with pytest.raises(fedc.FedcTypeError, match=r"fedc\.federated_map: the mapped value must be a placed value "
                                                 r"\(such as \{T\}@CLIENTS or T@SERVER\), but has type float32"):
        traced([TensorType(F32)], lambda x: fedc.federated_map(lambda v: v, x))
    with pytest.raises(fedc.FedcError, match=r"federated_map: the mapped value must be a placed value"):
        compiled("computation f(x: float32) { return federated_map(fn(v) -> v, x) }")
    with pytest.raises(fedc.FedcTypeError, match=r"fedc\.sequence_sum|sequence_sum expects"):
        traced([TensorType(F32)], lambda x: fedc.sequence_sum(x))
    with pytest.raises(fedc.FedcTypeError, match=r"fedc\.sequence_map: the mapped value must be a sequence "
                                                 r"\(T\*, or placed: \{T\*\}@CLIENTS, T\*@SERVER\), but has type float32"):
        traced([TensorType(F32)], lambda x: fedc.sequence_map(lambda v: v, x))


def test_implicit_zip_and_map_intrinsic():
    at_server = StructType([FederatedType(F32, SERVER), FederatedType(np.int32, SERVER)])
    assert implicit_zip(at_server) == "federated_zip_at_server"
    assert implicit_zip(StructType([FederatedType(F32, CLIENTS)])) == "federated_zip_at_clients"
    assert implicit_zip(StructType([FederatedType(F32, CLIENTS), FederatedType(F32, SERVER)])) is None
    assert implicit_zip(StructType([])) is None
    # Nested structs zip as TFF zips them: every placed value at one placement.
    nested = StructType([FederatedType(F32, CLIENTS), StructType([("c", FederatedType(F32, CLIENTS))])])
    assert implicit_zip(nested) == "federated_zip_at_clients"
    assert implicit_zip(StructType([FederatedType(F32, CLIENTS), StructType([FederatedType(F32, SERVER)])])) is None
    assert implicit_zip(StructType([FederatedType(F32, CLIENTS), StructType([TensorType(F32)])])) is None
    assert implicit_zip(StructType([StructType([])])) is None
    assert map_intrinsic(FederatedType(F32, SERVER)) == "federated_apply"
    assert map_intrinsic(FederatedType(F32, CLIENTS, all_equal=True)) == "federated_map"
    assert map_intrinsic(FederatedType(F32, CLIENTS, all_equal=True), keep_all_equal=True) == "federated_map_all_equal"


def test_operators_call_local_ops_in_both_frontends():
    for uri in list(BINARY_OPERATORS.values()) + list(UNARY_OPERATORS.values()):
        assert ir.lookup(uri).kind is ir.IntrinsicKind.LOCAL
    source = "local f(x: float32, y: float32) { return <x + y, x - y, x * y, x / y, x ** y, (x < y), -x> }"
    from_fed = fed.parse(source, filename="t.fed")["f"]
    from_python = traced([TensorType(F32), TensorType(F32)],
                         lambda x, y: (x + y, x - y, x * y, x / y, x ** y, x < y, -x))
    assert intrinsic_calls(from_fed) == intrinsic_calls(from_python)


def test_every_federated_intrinsic_and_sequence_op_is_an_api_function():
    non_local = {d.uri for d in ir.all_definitions() if d.kind is not ir.IntrinsicKind.LOCAL}
    assert non_local <= set(API)
    assert set(API) - non_local == {"federated_value", "federated_eval", "federated_zip"}
