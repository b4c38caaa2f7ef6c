"""insert-secure-aggregation: the fixed-point encoding's error bound, clipping, refusals, FedAvg still trains.

The bound tested is the one documented in docs/passes.md ("Secure
aggregation"): for summands inside their clip range, a mean is off by at most
clip / (2**bits - 1), a sum by N times that, a weighted mean by
(eA + clip * eB) / (B - eB); integers are exact. On top come the float32
roundings of the result (``ROUNDING``).
"""

from __future__ import annotations

import importlib
import pathlib
import sys

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from equivalence import F32, assert_close, programs, random_value, run

from fedc import ir, passes
from fedc.computation import Computation
from fedc.errors import FedcError
from fedc.ir.module import Module
from fedc.types import CLIENTS, SERVER, FederatedType, StructType, TensorType

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
EPS32 = 2.0**-24

AGGREGATIONS = {
    "federated_mean",
    "federated_weighted_mean",
    "federated_sum",
    "federated_min",
    "federated_max",
    "federated_aggregate",
    "federated_select",
}


def intrinsic_uris(module: Module) -> list[str]:
    return [
        n.function.uri
        for _, node in module.items()
        for n in node.walk()
        if isinstance(n, ir.Call) and isinstance(n.function, ir.Intrinsic) and n.function.definition.is_federated
    ]


def one_aggregation(uri: str, value_type, weight_type=None) -> Module:
    """``f(<x, w>) = uri(x)`` (or of ``<x, w>`` for a weighted mean), in call-dominant form."""
    x_t = FederatedType(value_type, CLIENTS)
    elements = [("x", x_t)] + ([("w", FederatedType(weight_type, CLIENTS))] if weight_type is not None else [])
    arg = ir.Reference("arg", StructType(elements))
    x = ir.Selection(arg, name="x")
    operand = ir.Struct([x, ir.Selection(arg, name="w")]) if uri == "federated_weighted_mean" else x
    value = ir.intrinsic_call(uri, operand)
    body = ir.Block([("r", value)], ir.Reference("r", value.type_signature))
    module = Module("m", {"f": ir.Lambda("arg", arg.type_signature, body)})
    ir.verify(module)
    return module


def secure(module: Module, **options) -> Module:
    shown = " ".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in options.items())
    return passes.run(module, f"insert-secure-aggregation{{{shown}}}").module


def levels(bits: int) -> int:
    return 2**bits - 1


def run_secured(module: Module, symbol: str, argument, num_clients: int):
    """(the original result, the clip counts) of a secured computation."""
    result = run(module, symbol, argument, num_clients)
    t = module[symbol].type_signature.result
    if not (isinstance(t, StructType) and "secure_clipped" in t.names()):
        return result, {}  # nothing was secured
    if isinstance(result, dict):
        counts = result.pop("secure_clipped")
        return result, counts
    *values, counts = result
    return (values[0] if len(values) == 1 else tuple(values)), counts


def counts_of(counts: dict) -> list[tuple[int, int]]:
    return [(int(c["upper"]), int(c["lower"])) for c in counts.values()]


def client_vectors(draw, n: int, low: float, high: float, size: int = 3):
    element = st.floats(low, high, width=32, allow_nan=False)
    return [np.asarray(draw(st.lists(element, min_size=size, max_size=size)), dtype=F32) for _ in range(n)]


# --------------------------------------------------------------------------
# The documented bound, for values inside the clip range


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_mean_and_sum_are_within_the_documented_bound(data):
    bits = data.draw(st.integers(4, 30), label="bits")
    clip = data.draw(st.sampled_from([0.5, 1.0, 3.0, 100.0]), label="clip")
    n = data.draw(st.integers(1, 8), label="clients")
    uri = data.draw(st.sampled_from(["federated_mean", "federated_sum"]))
    values = client_vectors(data.draw, n, -clip, clip)
    module = one_aggregation(uri, TensorType(F32, [3]))
    after_module = secure(module, bits=bits, clip=clip, **{"max-clients": 8})
    assert "federated_" + uri.split("_")[1] not in intrinsic_uris(after_module)
    before = np.asarray(run(module, "f", {"x": values}, n), np.float64)
    after, counts = run_secured(after_module, "f", {"x": values}, n)
    after = np.asarray(after, np.float64)
    assert counts_of(counts) == [(0, 0)]  # every value inside the range: nothing clipped
    exact = np.sum(np.asarray(values, np.float64), axis=0)
    per_client = clip / levels(bits)
    if uri == "federated_mean":
        exact, bound, rounding = exact / n, per_client, 4 * clip * EPS32
    else:
        bound, rounding = n * per_client, 4 * n * clip * EPS32
    assert np.all(np.abs(after - exact) <= bound + rounding), (after, exact, bound)
    # the reference result before the pass has float32 rounding of its own
    assert np.all(np.abs(after - before) <= bound + rounding + n * n * clip * EPS32)


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_weighted_mean_is_within_the_documented_bound(data):
    bits = data.draw(st.integers(6, 30), label="bits")
    clip = data.draw(st.sampled_from([1.0, 5.0]), label="clip")
    wc = data.draw(st.sampled_from([1.0, 10.0, 100.0]), label="weight-clip")
    n = data.draw(st.integers(1, 6), label="clients")
    integer = data.draw(st.booleans(), label="integer weights")
    values = client_vectors(data.draw, n, -clip, clip, size=2)
    if integer:
        weights = [np.int32(w) for w in data.draw(st.lists(st.integers(1, int(wc)), min_size=n, max_size=n))]
        weight_type = TensorType(np.int32)
    else:
        weights = [F32(w) for w in data.draw(st.lists(st.floats(float(F32(0.05 * wc)), wc, width=32), min_size=n, max_size=n))]
        weight_type = TensorType(F32)
    module = one_aggregation("federated_weighted_mean", TensorType(F32, [2]), weight_type)
    if integer and int(wc) > levels(bits):
        # Integer weights in [0, weight-clip] cannot all be summed exactly in `bits`.
        with pytest.raises(FedcError, match=rf"has integer weights in \[0, {int(wc)}\], which need bits >= {int(wc).bit_length()}"):
            secure(module, bits=bits, clip=clip, **{"weight-clip": wc, "max-clients": 8})
        return
    after_module = secure(module, bits=bits, clip=clip, **{"weight-clip": wc, "max-clients": 8})
    after, counts = run_secured(after_module, "f", {"x": values, "w": weights}, n)
    after = np.asarray(after, np.float64)
    assert counts_of(counts) == [(0, 0)]
    v, w = np.asarray(values, np.float64), np.asarray(weights, np.float64)
    a, b = (w[:, None] * v).sum(axis=0), w.sum()
    e_a = n * clip * wc / levels(bits)
    e_b = 0.0 if integer else n * wc / (2 * levels(bits))
    bound = (e_a + clip * e_b) / (b - e_b)
    assert np.all(np.abs(after - a / b) <= bound + 8 * clip * EPS32), (after, a / b, bound)


def test_structs_mixed_dtypes_and_integers_are_encoded_leaf_by_leaf():
    t = StructType([("a", TensorType(F32, [2])), ("b", TensorType(np.float64)), ("n", TensorType(np.int8, [2]))])
    module = one_aggregation("federated_sum", t)
    values = [
        {"a": np.asarray([0.25, -1.0], F32), "b": np.float64(0.5), "n": np.asarray([3, -128], np.int8)},
        {"a": np.asarray([1.0, 0.125], F32), "b": np.float64(-0.75), "n": np.asarray([-5, 127], np.int8)},
    ]
    after, counts = run_secured(secure(module, bits=16, clip=1.0), "f", {"x": values}, 2)
    bound = 2 * 1.0 / levels(16)
    np.testing.assert_allclose(after["a"], [1.25, -0.875], atol=bound)
    assert abs(after["b"] - (-0.25)) <= bound
    # int8 takes its own range [-128, 127] (it fits in 16 bits): negative integers are exact, not clipped
    np.testing.assert_array_equal(after["n"], [-2, -1])
    assert after["n"].dtype == np.int8 and after["b"].dtype == np.float64
    assert counts_of(counts) == [(0, 0)]


# --------------------------------------------------------------------------
# Values outside the range are clipped as documented


def test_floats_outside_the_range_are_clipped_and_counted():
    module = one_aggregation("federated_mean", TensorType(F32, [3]))
    values = [np.asarray([5.0, -7.0, 0.5], F32), np.asarray([-0.5, 0.25, 2.0], F32), np.asarray([0.5, -1.0, -3.0], F32),
              np.asarray([0.5, 0.5, 0.5], F32)]
    after, counts = run_secured(secure(module, bits=20, clip=1.0), "f", {"x": values}, 4)
    clipped = np.clip(np.asarray(values, np.float64), -1.0, 1.0).mean(axis=0)
    np.testing.assert_allclose(after, clipped, atol=1.0 / levels(20) + 1e-6)
    assert np.abs(after - np.mean(values, axis=0)).max() > 1.0  # really not the unclipped mean
    # clients 0 and 1 had a value above 1, clients 0 and 2 one below -1; client 3 none
    assert counts == {"r": {"upper": 2, "lower": 2}}


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_signed_integer_ranges_are_kept_and_what_is_outside_is_clipped_and_counted(data):
    low = data.draw(st.integers(-300, 0), label="low")
    high = data.draw(st.integers(low + 1, low + 500), label="high")
    n = data.draw(st.integers(1, 6), label="clients")
    values = [np.asarray(data.draw(st.lists(st.integers(-400, 600), min_size=2, max_size=2)), np.int32) for _ in range(n)]
    module = one_aggregation("federated_sum", TensorType(np.int32, [2]))
    after, counts = run_secured(secure(module, bits=10, low=float(low), high=float(high)), "f", {"x": values}, n)
    stacked = np.asarray(values)
    np.testing.assert_array_equal(after, np.clip(stacked, low, high).sum(axis=0))  # exact, negative values kept
    assert counts == {"r": {"upper": int(np.any(stacked > high, axis=1).sum()),
                            "lower": int(np.any(stacked < low, axis=1).sum())}}


def test_weights_and_weighted_values_outside_the_range_are_clipped_and_counted():
    module = one_aggregation("federated_weighted_mean", TensorType(F32, [2]), TensorType(F32))
    values = [np.asarray([3.0, 0.5], F32), np.asarray([-0.5, -4.0], F32), np.asarray([0.25, 0.75], F32)]
    weights = [F32(50.0), F32(2.0), F32(-1.0)]
    after, counts = run_secured(secure(module, bits=24, clip=1.0, **{"weight-clip": 10.0}), "f",
                                {"x": values, "w": weights}, 3)
    v = np.clip(np.asarray(values, np.float64), -1.0, 1.0)
    w = np.clip(np.asarray(weights, np.float64), 0.0, 10.0)  # the third client weighs nothing
    np.testing.assert_allclose(after, (w[:, None] * v).sum(axis=0) / w.sum(), atol=1e-5)
    # above: client 0 (value 3, weight 50); below: client 1 (value -4) and client 2 (weight -1)
    assert counts == {"r": {"upper": 1, "lower": 2}}


def test_fedavgs_loss_is_not_silently_clipped_to_one():
    """The bug this replaced: a default clip=1.0 made a mean of losses above 1 come out as 1.0."""
    module = one_aggregation("federated_mean", TensorType(F32))
    losses = [F32(2.3), F32(2.1), F32(1.9)]
    with pytest.raises(FedcError, match="has no declared range: give the range with clip=C"):
        secure(module)
    after, counts = run_secured(secure(module, clip=1.0), "f", {"x": losses}, 3)
    assert abs(after - 1.0) < 1e-5 and counts == {"r": {"upper": 3, "lower": 0}}  # clipped, and it says so
    after, counts = run_secured(secure(module, clip=10.0), "f", {"x": losses}, 3)
    assert abs(after - 2.1) < 1e-4 and counts == {"r": {"upper": 0, "lower": 0}}


def test_ranges_the_computation_declares_need_no_options():
    from fedc.frontend import fed

    full = passes.run(fed.load(EXAMPLES / "analytics.fed"), "inline,call-dominant").module
    module = Module("m", {s: full[s] for s in ("histogram", "clipped_mean")})
    after = passes.run(module, "insert-secure-aggregation").module  # clip(v, 0.0, 50.0) and one-hot bools
    values = [1.0, 15.0, 49.0, 75.0]
    for symbol in ("histogram", "clipped_mean"):
        result, counts = run_secured(after, symbol, values, 4)
        expected = run(module, symbol, values, 4)
        assert_close(result, expected, rtol=0, atol=50.0 / levels(20))
        assert counts_of(counts) == [(0, 0)]  # a declared range is never exceeded
    # summary's clip takes its bounds from the server: not constant, so it needs a range
    with pytest.raises(FedcError, match=r"@summary: federated_mean at .*analytics.fed:32:29 sums its summand sum"):
        passes.run(full, "insert-secure-aggregation{allow-insecure=true}")


def test_a_computation_called_by_another_must_be_inlined_first():
    inner = one_aggregation("federated_mean", TensorType(F32))["f"]
    t = inner.type_signature
    outer = ir.Lambda("arg", t.parameter, ir.Call(ir.SymbolRef("f", t), ir.Reference("arg", t.parameter)))
    module = Module("m", {"f": inner, "g": outer})
    with pytest.raises(FedcError, match=r"@f's result gains the clip counts \(secure_clipped\), but @g calls @f"):
        secure(module, clip=1.0)


# --------------------------------------------------------------------------
# Random programs: every sum-like aggregation becomes a secure sum


SECURE_RANDOM = "insert-secure-aggregation{bits=40 clip=100000.0 weight-clip=1000.0 max-clients=16 allow-insecure=true}"


@settings(max_examples=40, deadline=None)
@given(programs(), st.sampled_from(["", "fuse-map-mean,", "desugar,", "desugar{to=sum},fuse-map-mean,"]))
def test_random_programs_keep_their_meaning_within_the_encoding_error(module, prefix):
    before = passes.run(module, prefix.rstrip(",")).module if prefix else module
    result = passes.run(before, SECURE_RANDOM)
    after = result.module
    left = [uri for uri in intrinsic_uris(after) if uri in AGGREGATIONS]
    # only the maxima stay (as federated_max, or as the aggregate desugar makes of one)
    assert all(uri in ("federated_max", "federated_aggregate") for uri in left), left
    assert result.statistics[-1][1].get("aggregations-left-insecure", 0) == len(left)
    # Values stay far inside clip=1e5, where 40 bits give steps of 2e-7 per client
    # value; later server-side math may amplify that a little. Nothing is clipped.
    parameter = module["round"].type_signature.parameter
    for seed in (0, 1):
        argument = random_value(parameter, np.random.default_rng(seed), 3)
        expected = run(module, "round", argument, 3)
        actual, counts = run_secured(after, "round", argument, 3)
        assert_close(actual, expected, rtol=1e-4, atol=1e-4)
        assert all(c == (0, 0) for c in counts_of(counts))


@settings(max_examples=30, deadline=None)
@given(programs())
def test_random_programs_with_a_maximum_are_refused_unless_allowed(module):
    has_max = "federated_max" in intrinsic_uris(module)
    if has_max:
        with pytest.raises(FedcError, match=r"@round: federated_max cannot be made secure: .*allow-insecure=true"):
            passes.run(module, "insert-secure-aggregation{clip=1000.0 weight-clip=1000.0}")
    else:
        assume(any(uri in AGGREGATIONS for uri in intrinsic_uris(module)))
        after = passes.run(module, "insert-secure-aggregation{clip=1000.0 weight-clip=1000.0}").module
        assert not AGGREGATIONS & set(intrinsic_uris(after))


# --------------------------------------------------------------------------
# Refusals and options


def test_select_is_refused_with_its_location():
    from fedc.errors import SourceLocation

    keys_t = FederatedType(TensorType(np.int32, [2]), CLIENTS)
    server_t = FederatedType(TensorType(F32, [4]), SERVER)
    arg_t = StructType([("keys", keys_t), ("table", server_t), ("max_key", FederatedType(TensorType(np.int32), SERVER))])
    arg = ir.Reference("arg", arg_t)
    pick_t = StructType([TensorType(F32, [4]), TensorType(np.int32)])
    pick = ir.Lambda("p", pick_t, ir.intrinsic_call("reduce_sum", ir.Selection(ir.Reference("p", pick_t), index=0)))
    where = SourceLocation("algo.fed", 4, 9)
    select = ir.intrinsic_call("federated_select", ir.Struct([
        ir.Selection(arg, name="keys"), ir.Selection(arg, name="max_key"), ir.Selection(arg, name="table"),
        ir.Reference("pick", pick.type_signature)]), location=where)
    body = ir.Block([("pick", pick), ("rows", select)], ir.Reference("rows", select.type_signature))
    module = Module("m", {"f": ir.Lambda("arg", arg_t, body)})
    ir.verify(module)
    with pytest.raises(FedcError) as info:
        passes.run(module, "insert-secure-aggregation")
    assert "algo.fed:4:9" in str(info.value)
    assert "@f: federated_select at algo.fed:4:9 cannot be made secure" in str(info.value)
    assert passes.run(module, "insert-secure-aggregation{allow-insecure=true}").module is module


@pytest.mark.parametrize("options, message", [
    ("bits=0", "bits must be between 1 and 40"),
    ("clip=1.0 low=0.0 high=2.0", r"either as clip=C \(for \[-C, C\]\) or as low=L high=H, not both"),
    ("low=0.0", "low and high go together"),
    ("low=2.0 high=1.0", "low and high must be finite numbers with low < high"),
    ("bits=41", "bits must be between 1 and 40"),
    ("clip=-1.0", "clip must be a positive finite number"),
    ("weight-clip=0.0", "weight-clip must be a positive finite number"),
    ("max-clients=0", "max-clients must be at least 1"),
    ("bits=32 max-clients=3000000", "bits=32 is too large for max-clients=3000000"),
])
def test_bad_options_are_errors(options, message):
    module = one_aggregation("federated_mean", TensorType(F32))
    with pytest.raises(FedcError, match=message):
        passes.run(module, f"insert-secure-aggregation{{{options}}}")


@pytest.mark.parametrize("bits, clients, dtype", [(16, 32768, "int32"), (16, 32769, "int64"), (20, 2048, "int32"), (32, 2**21, "int64")])
def test_the_integer_width_makes_overflow_impossible(bits, clients, dtype):
    module = one_aggregation("federated_mean", TensorType(F32))
    after = secure(module, bits=bits, clip=1.0, **{"max-clients": clients})
    sums = [n for n in after["f"].walk() if isinstance(n, ir.Intrinsic) and n.uri == "federated_secure_sum_bitwidth"]
    assert len(sums) == 1
    member = sums[0].type_signature.result.member
    assert {str(t) for t in member} == {dtype}
    assert clients * levels(bits) <= np.iinfo(dtype).max


def test_already_secure_and_unaggregated_computations_are_left_alone():
    c = FederatedType(TensorType(np.int32), CLIENTS)
    value = ir.intrinsic_call("federated_secure_sum_bitwidth", ir.Struct([ir.Reference("x", c), ir.Reference("b", TensorType(np.int32))]))
    body = ir.Block([("b", ir.Literal(np.int32(8))), ("s", value)], ir.Reference("s", value.type_signature))
    module = Module("m", {"f": ir.Lambda("x", c, body)})
    assert passes.run(module, "insert-secure-aggregation").module is module


# --------------------------------------------------------------------------
# FedAvg, fused and secured, still trains

PIPELINE = "inline,call-dominant,fuse-map-mean,insert-secure-aggregation{bits=20 clip=4.0}"


@pytest.fixture(scope="module")
def fedavg():
    sys.path.insert(0, str(EXAMPLES))
    try:
        return importlib.import_module("fedavg")
    finally:
        sys.path.remove(str(EXAMPLES))


@pytest.fixture(scope="module")
def fedavg_data(fedavg):
    return fedavg.make_data(num_clients=3)


def _fedavg_modules(fedavg):
    from fedc.frontend import fed

    return [(fedavg.next_fn.to_ir(), "next_fn"), (fed.load(EXAMPLES / "fedavg.fed", import_externs=True), "next")]


@pytest.mark.parametrize("which", [0, 1], ids=["python", "fed"])
def test_fedavg_fused_and_secured_still_trains(fedavg, fedavg_data, which):
    module, symbol = _fedavg_modules(fedavg)[which]
    result = passes.run(module, PIPELINE)
    secured = result.module
    uris = intrinsic_uris(secured)
    assert uris.count("federated_secure_sum_bitwidth") == 1  # one round, one secure sum
    assert not AGGREGATIONS & set(uris)
    stats = dict(result.statistics)
    assert stats["insert-secure-aggregation{bits=20 clip=4.0}"] == {"aggregations-secured": 1}
    clients, test = fedavg_data
    original, transformed = Computation(module, symbol), Computation(secured, symbol)
    state = fedavg.initialize_fn()

    def split(output):
        """(the round's original result, its clip counts)."""
        if isinstance(output, dict):
            counts = output.pop("secure_clipped")
            return output, counts
        return output[0], output[1]

    # The first round: the secured weights are the plain ones up to the documented bound.
    plain = original(state, clients)
    first, counts = split(transformed(state, clients))
    [fused] = counts.values()  # one aggregation after fuse-map-mean, so one pair of counts
    assert set(fused) == {"upper", "lower"} and all(0 <= int(n) <= len(clients) for n in fused.values())
    if symbol == "next":
        assert abs(first["loss"] - plain["loss"]) <= 4.0 / levels(20) + 1e-5
        plain, first = plain["weights"], first["weights"]
    assert_close(list(first), list(plain), rtol=0, atol=4.0 / levels(20) + 1e-6)
    losses = [fedavg.evaluate(state, test)[0]]
    for _ in range(3):
        output, _ = split(transformed(state, clients))
        state = output["weights"] if symbol == "next" else output
        losses.append(fedavg.evaluate(state, test)[0])
    assert losses[3] < losses[1] < losses[0], losses
