"""fuse-maps, fuse-map-mean and desugar: meaning kept on random programs, fewer rounds, no mapped intermediates."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from equivalence import F32, VECTOR, assert_equivalent, programs, random_value, run

from fedc import ir, passes
from fedc.errors import FedcError
from fedc.ir.module import Module
from fedc.passes import aggregates as agg
from fedc.types import CLIENTS, SERVER, FederatedType, FunctionType, SequenceType, StructType, TensorType

AGGREGATIONS = {
    "federated_mean",
    "federated_weighted_mean",
    "federated_sum",
    "federated_min",
    "federated_max",
    "federated_aggregate",
    "federated_secure_sum_bitwidth",
}


def intrinsic_calls(module: Module, uris) -> list[tuple[str, str]]:
    found = []
    for symbol, node in module.items():
        for n in node.walk():
            if isinstance(n, ir.Call) and isinstance(n.function, ir.Intrinsic) and n.function.uri in uris:
                found.append((symbol, n.function.uri))
    return found


def locals_of(module: Module, symbol: str) -> list:
    node = module[symbol]
    body = node.result if isinstance(node, ir.Lambda) else node
    return list(body.locals) if isinstance(body, ir.Block) else []


def maps_feeding_only_aggregations(module: Module, symbol: str) -> list[str]:
    """Client maps whose every use is the input of a sum-like aggregation (what fuse-map-mean removes)."""
    locals = locals_of(module, symbol)
    uses = agg.reference_uses([v for _, v in locals] + [module[symbol]])
    found = []
    for name, value in locals:
        parts = agg.intrinsic_call_parts(value)
        if parts is None or parts[0] != "federated_map":
            continue
        consumers = [
            v for _, v in locals
            if any(isinstance(n, ir.Reference) and n.name == name for n in v.walk())
        ]
        if consumers and all(
            agg.intrinsic_call_parts(c) is not None
            and agg.intrinsic_call_parts(c)[0] in ("federated_mean", "federated_sum", "federated_weighted_mean")
            for c in consumers
        ) and uses.get(name) == len(consumers):
            found.append(name)
    return found


def FunctionTypeOf(parameter, result=None) -> FunctionType:
    return FunctionType(parameter, parameter if result is None else result)


# --------------------------------------------------------------------------
# Meaning is kept


@settings(max_examples=40, deadline=None)
@given(programs())
def test_fuse_maps_keeps_meaning(module):
    assert_equivalent(module, passes.run(module, "fuse-maps").module)


@settings(max_examples=40, deadline=None)
@given(programs())
def test_fuse_map_mean_keeps_meaning_and_does_not_add_rounds(module):
    result = passes.run(module, "fuse-maps,fuse-map-mean")
    after = result.module
    assert_equivalent(module, after)
    before_count = len(intrinsic_calls(module, AGGREGATIONS))
    after_count = len(intrinsic_calls(after, AGGREGATIONS))
    merged = result.statistics[-1][1].get("aggregations-merged", 0)
    assert after_count == before_count - merged
    assert maps_feeding_only_aggregations(after, "round") == []
    # Idempotent: a second run finds nothing more to fuse or merge.
    again = passes.run(after, "fuse-map-mean")
    assert again.module is after, ir.print_module(again.module)


@settings(max_examples=40, deadline=None)
@given(programs(), st.sampled_from(["desugar{to=weighted_mean}", "desugar{to=sum}", "desugar", "desugar,fuse-map-mean"]))
def test_desugar_keeps_meaning(module, pipeline):
    after = passes.run(module, pipeline).module
    assert_equivalent(module, after)
    level = "aggregate" if "to=" not in pipeline else pipeline.split("to=")[1].rstrip("}")
    left = {uri for _, uri in intrinsic_calls(after, AGGREGATIONS)}
    if level == "aggregate":
        assert left <= {"federated_aggregate"}
    elif level == "sum":
        assert not left & {"federated_mean", "federated_weighted_mean"}
    else:
        assert "federated_mean" not in left


def test_desugar_rejects_an_unknown_level():
    module = Module("m", {"f": ir.Lambda("x", FederatedType(VECTOR, CLIENTS), ir.Reference("x", FederatedType(VECTOR, CLIENTS)))})
    with pytest.raises(FedcError, match="to must be one of weighted_mean, sum, aggregate"):
        passes.run(module, "desugar{to=mean}")


# --------------------------------------------------------------------------
# fuse-map-mean: fewer aggregations, nothing mapped left at the clients


def _clients_program() -> Module:
    """Four aggregations of maps of the same client data, one depending on another's result."""
    c = FederatedType(VECTOR, CLIENTS)
    p = ir.Reference("arg", StructType([("c", c), ("n", FederatedType(TensorType(np.int32), CLIENTS))]))
    x = ir.Selection(p, name="c")
    v = lambda name: ir.Reference(name, VECTOR)  # noqa: E731
    locals = [
        ("square", ir.Lambda("a", VECTOR, ir.intrinsic_call("square", v("a")))),
        ("squared", ir.intrinsic_call("federated_map", ir.Struct([ir.Reference("square", FunctionTypeOf(VECTOR)), x]))),
        ("half", ir.Lambda("b", VECTOR, ir.intrinsic_call("multiply", ir.Struct([v("b"), ir.Literal(F32(0.5))])))),
        ("halved", ir.intrinsic_call("federated_map", ir.Struct([ir.Reference("half", FunctionTypeOf(VECTOR)), x]))),
        ("norm", ir.Lambda("d", VECTOR, ir.intrinsic_call("reduce_sum", ir.intrinsic_call("abs", v("d"))))),
        ("weights", ir.intrinsic_call("federated_map", ir.Struct([ir.Reference("norm", FunctionTypeOf(VECTOR, TensorType(F32))), x]))),
    ]
    locals += [
        ("mean_sq", ir.intrinsic_call("federated_mean", ir.Reference("squared", c))),
        ("sum_half", ir.intrinsic_call("federated_sum", ir.Reference("halved", c))),
        ("wmean", ir.intrinsic_call("federated_weighted_mean", ir.Struct([x, ir.Reference("weights", FederatedType(TensorType(F32), CLIENTS))]))),
        ("count", ir.intrinsic_call("federated_sum", ir.Selection(p, name="n"))),
    ]
    # a second round: centre the client values on the first mean
    mean_sq = ir.Reference("mean_sq", FederatedType(VECTOR, SERVER))
    locals += [
        ("back", ir.intrinsic_call("federated_broadcast", mean_sq)),
        ("pairs", ir.intrinsic_call("federated_zip_at_clients", ir.Struct([x, ir.Reference("back", FederatedType(VECTOR, CLIENTS, True))]))),
        ("diff", ir.Lambda("e", StructType([VECTOR, VECTOR]), ir.intrinsic_call("subtract", ir.Struct([
            ir.Selection(ir.Reference("e", StructType([VECTOR, VECTOR])), index=0),
            ir.Selection(ir.Reference("e", StructType([VECTOR, VECTOR])), index=1)])))),
    ]
    pairs_t = FederatedType(StructType([VECTOR, VECTOR]), CLIENTS)
    locals += [
        ("centered", ir.intrinsic_call("federated_map", ir.Struct([
            ir.Reference("diff", FunctionTypeOf(StructType([VECTOR, VECTOR]), VECTOR)), ir.Reference("pairs", pairs_t)]))),
    ]
    locals += [("spread", ir.intrinsic_call("federated_mean", ir.Reference("centered", c)))]
    result = ir.Struct([ir.Reference(n, dict(locals)[n].type_signature) for n in ("mean_sq", "sum_half", "wmean", "count", "spread")])
    module = Module("m", {"round": ir.Lambda("arg", p.type_signature, ir.Block(locals, result))})
    ir.verify(module)
    return module


def test_fuse_map_mean_merges_independent_aggregations_and_materialises_no_mapped_value():
    module = _clients_program()
    result = passes.run(module, "fuse-map-mean")
    after = result.module
    assert_equivalent(module, after, seeds=(0, 1, 2), num_clients=4)
    before = intrinsic_calls(module, AGGREGATIONS)
    remaining = intrinsic_calls(after, AGGREGATIONS)
    assert len(before) == 5
    # one aggregation for the four independent ones, one for the mean that needs the first result
    assert [uri for _, uri in remaining] == ["federated_aggregate", "federated_aggregate"]
    assert intrinsic_calls(after, {"federated_map"}) == []
    assert result.statistics[-1][1] == {"maps-fused-into-aggregates": 4, "aggregations-merged": 3}
    # the merged aggregation is in sum form, so secure aggregation recognises it
    names = agg.Names(after["round"])
    for name, value in locals_of(after, "round"):
        if agg.intrinsic_call_parts(value) and agg.intrinsic_call_parts(value)[0] == "federated_aggregate":
            assert agg.recognize_sum_aggregate(value, dict(locals_of(after, "round")), names) is not None, name
    secured = passes.run(after, "insert-secure-aggregation{bits=30 clip=100 weight-clip=100}").module
    assert [uri for _, uri in intrinsic_calls(secured, AGGREGATIONS)] == ["federated_secure_sum_bitwidth"] * 2


def test_fuse_map_mean_merges_general_aggregates_struct_wise():
    """Two aggregates that are not sums (products) merge into one aggregate of a struct."""
    t = TensorType(F32)
    pair = StructType([t, t])
    product = lambda k: ir.Lambda(k, pair, ir.intrinsic_call("multiply", ir.Struct([  # noqa: E731
        ir.Selection(ir.Reference(k, pair), index=0), ir.Selection(ir.Reference(k, pair), index=1)])))
    c = FederatedType(t, CLIENTS)
    p = ir.Reference("arg", StructType([c, c]))
    locals = [
        ("one", ir.Literal(F32(1.0))),
        ("times", product("a")),
        ("times2", product("b")),
        ("ident", ir.Lambda("s", t, ir.Reference("s", t))),
        ("square", ir.Lambda("q", t, ir.intrinsic_call("square", ir.Reference("q", t)))),
        ("squares", ir.intrinsic_call("federated_map", ir.Struct([ir.Reference("square", FunctionTypeOf(t)), ir.Selection(p, index=0)]))),
    ]
    fn = lambda name: ir.Reference(name, FunctionTypeOf(pair, t))  # noqa: E731
    locals += [
        ("p1", ir.intrinsic_call("federated_aggregate", ir.Struct([
            ir.Reference("squares", c), ir.Reference("one", t), fn("times"), fn("times"), ir.Reference("ident", FunctionTypeOf(t))]))),
        ("p2", ir.intrinsic_call("federated_aggregate", ir.Struct([
            ir.Selection(p, index=1), ir.Reference("one", t), fn("times2"), fn("times2"), ir.Reference("ident", FunctionTypeOf(t))]))),
    ]
    result = ir.Struct([ir.Reference("p1", FederatedType(t, SERVER)), ir.Reference("p2", FederatedType(t, SERVER))])
    module = Module("m", {"round": ir.Lambda("arg", p.type_signature, ir.Block(locals, result))})
    ir.verify(module)
    out = passes.run(module, "fuse-map-mean")
    assert [uri for _, uri in intrinsic_calls(out.module, AGGREGATIONS)] == ["federated_aggregate"]
    assert intrinsic_calls(out.module, {"federated_map"}) == []
    assert out.statistics[-1][1] == {"maps-fused-into-aggregates": 1, "aggregations-merged": 1}
    assert_equivalent(module, out.module, seeds=(0, 1, 2))
    # a general aggregate is not a sum: secure aggregation refuses it
    with pytest.raises(FedcError, match="federated_aggregate .*cannot be made secure: its accumulate is not a sum"):
        passes.run(out.module, "insert-secure-aggregation")


def test_fuse_map_mean_keeps_a_map_with_other_uses():
    c = FederatedType(VECTOR, CLIENTS)
    x = ir.Reference("x", c)
    square = ir.Lambda("a", VECTOR, ir.intrinsic_call("square", ir.Reference("a", VECTOR)))
    locals = [
        ("square", square),
        ("squared", ir.intrinsic_call("federated_map", ir.Struct([ir.Reference("square", square.type_signature), x]))),
        ("mean", ir.intrinsic_call("federated_mean", ir.Reference("squared", c))),
    ]
    result = ir.Struct([ir.Reference("mean", FederatedType(VECTOR, SERVER)), ir.Reference("squared", c)])
    module = Module("m", {"f": ir.Lambda("x", c, ir.Block(locals, result))})
    assert passes.run(module, "fuse-map-mean").module is module


def test_passes_return_the_same_module_when_there_is_nothing_to_do():
    c = FederatedType(VECTOR, CLIENTS)
    module = Module("m", {"f": ir.Lambda("x", c, ir.Block([("m", ir.intrinsic_call("federated_max", ir.Reference("x", c)))],
                                                          ir.Reference("m", FederatedType(VECTOR, SERVER))))})
    for pipeline in ("fuse-maps", "fuse-map-mean", "desugar{to=sum}"):
        assert passes.run(module, pipeline).module is module


def test_fusion_needs_call_dominant_form():
    c = FederatedType(VECTOR, CLIENTS)
    square = ir.Lambda("a", VECTOR, ir.intrinsic_call("square", ir.Reference("a", VECTOR)))
    nested = ir.intrinsic_call("federated_mean", ir.intrinsic_call("federated_map", ir.Struct([square, ir.Reference("x", c)])))
    module = Module("m", {"f": ir.Lambda("x", c, nested)})
    for name in ("fuse-map-mean", "desugar", "insert-secure-aggregation"):
        with pytest.raises(FedcError, match=r"@f is not in call-dominant form: .*run call-dominant first"):
            passes.run(module, name)
    # after the normal-form passes it works
    after = passes.run(module, "inline,call-dominant,fuse-map-mean").module
    assert_equivalent(module, after)
    assert [uri for _, uri in intrinsic_calls(after, AGGREGATIONS)] == ["federated_aggregate"]


# --------------------------------------------------------------------------
# fuse-maps


def test_fuse_maps_composes_chains_of_maps_applies_and_sequence_maps():
    s_t = TensorType(F32)
    seq = SequenceType(s_t)
    c = FederatedType(VECTOR, CLIENTS)
    arg_t = StructType([("c", c), ("s", FederatedType(s_t, SERVER)), ("d", FederatedType(seq, CLIENTS))])
    arg = ir.Reference("arg", arg_t)
    inc = lambda name, t: ir.Lambda(name, t, ir.intrinsic_call("add", ir.Struct([ir.Reference(name, t), ir.Literal(np.ones(t.shape, F32) if t.shape else F32(1))])))  # noqa: E731
    dbl = lambda name, t: ir.Lambda(name, t, ir.intrinsic_call("multiply", ir.Struct([ir.Reference(name, t), ir.Literal(F32(2))])))  # noqa: E731
    # sequence maps nested inside the client's local function
    ds = ir.Reference("ds", seq)
    inner = ir.intrinsic_call("sequence_map", ir.Struct([inc("i", s_t), ds]))
    outer = ir.intrinsic_call("sequence_map", ir.Struct([dbl("j", s_t), inner]))
    work = ir.Lambda("ds", seq, ir.intrinsic_call("sequence_sum", outer))
    locals = [
        ("inc", inc("a", VECTOR)),
        ("dbl", dbl("b", VECTOR)),
        ("m1", ir.intrinsic_call("federated_map", ir.Struct([ir.Reference("inc", FunctionTypeOf(VECTOR)), ir.Selection(arg, name="c")]))),
        ("m2", ir.intrinsic_call("federated_map", ir.Struct([ir.Reference("dbl", FunctionTypeOf(VECTOR)), ir.Reference("m1", c)]))),
        ("m3", ir.intrinsic_call("federated_map", ir.Struct([ir.Reference("inc", FunctionTypeOf(VECTOR)), ir.Reference("m2", c)]))),
        ("inc_s", inc("e", s_t)),
        ("p1", ir.intrinsic_call("federated_apply", ir.Struct([ir.Reference("inc_s", FunctionTypeOf(s_t)), ir.Selection(arg, name="s")]))),
        ("p2", ir.intrinsic_call("federated_apply", ir.Struct([ir.Reference("inc_s", FunctionTypeOf(s_t)), ir.Reference("p1", FederatedType(s_t, SERVER))]))),
        ("work", work),
        ("w", ir.intrinsic_call("federated_map", ir.Struct([ir.Reference("work", work.type_signature), ir.Selection(arg, name="d")]))),
        ("summed", ir.intrinsic_call("federated_sum", ir.Reference("w", FederatedType(s_t, CLIENTS)))),
        ("mean", ir.intrinsic_call("federated_mean", ir.Reference("m3", c))),
    ]
    result = ir.Struct([ir.Reference("mean", FederatedType(VECTOR, SERVER)), ir.Reference("p2", FederatedType(s_t, SERVER)),
                        ir.Reference("summed", FederatedType(s_t, SERVER))])
    module = Module("m", {"round": ir.Lambda("arg", arg_t, ir.Block(locals, result))})
    ir.verify(module)
    out = passes.run(module, "fuse-maps")
    assert out.statistics[-1][1] == {"maps-fused": 4}
    after = out.module
    assert len(intrinsic_calls(after, {"federated_map"})) == 2  # m3, w
    assert len(intrinsic_calls(after, {"federated_apply"})) == 1
    assert len(intrinsic_calls(after, {"sequence_map"})) == 1
    names = [n for n, _ in locals_of(after, "round")]
    assert "m1" not in names and "m2" not in names and "p1" not in names
    assert "inc_dbl_inc" in names and "inc_s_inc_s" in names
    for seed in (0, 1, 2):
        rng = np.random.default_rng(seed)
        argument = random_value(arg_t, rng, 3)
        argument["d"] = [[F32(1.0), F32(2.5)], [], [F32(-1.0)]]
        a, b = run(after, "round", argument, 3), run(module, "round", argument, 3)
        for x, y in zip(a, b):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5)
