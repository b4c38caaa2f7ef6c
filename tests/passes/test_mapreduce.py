"""lower-to-mapreduce and the MapReduce form: random rounds lowered and executed equal the
original, FedAvg still trains when its form runs, the form prints and serializes, and every
way a round can fail to fit the form is reported (see also golden/lower-to-mapreduce/)."""

from __future__ import annotations

import importlib
import pathlib
import sys

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from equivalence import F32, VECTOR, _Program, assert_close, random_value, run
from fedc import ir, passes
from fedc.computation import Computation
from fedc.errors import FedcError
from fedc.ir.module import Module
from fedc.backends.reference import run_round
from fedc.ir.mapreduce import PARTS, MapReduceForm, as_round, is_map_reduce_form
from fedc.types import CLIENTS, SERVER, FederatedType, FunctionType, StructType, TensorType

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
INT_VECTOR = TensorType(np.int32, [2])


def has_passes(*names: str) -> bool:
    return all(n in passes.manager.PASS_MODULES for n in names)


NORMAL_FORM = "inline,call-dominant" if has_passes("inline", "call-dominant") else None


# --------------------------------------------------------------------------
# Random rounds of the MapReduce shape


class _Round(_Program):
    """A random round ``(<s=float32[2]@SERVER,c={float32[2]}@CLIENTS[,d=...]> -> <s=...,x=...>)``.

    Server values are kept apart by whether they depend on an aggregation
    (``self.after``) or not (``self.servers``): only the latter are broadcast,
    so every round fits the form. Steps: broadcasts, maps (of one client value
    or a zip of two), value_at_clients, applies before and after the
    aggregation, server zips, and every aggregation the form has (mean,
    weighted mean, sum, federated_aggregate, the three secure sums).
    """

    def __init__(self, draw, two_client_parameters: bool):
        super().__init__(draw)
        elements = [("s", FederatedType(VECTOR, SERVER)), ("c", FederatedType(VECTOR, CLIENTS))]
        if two_client_parameters:
            elements.append(("d", FederatedType(VECTOR, CLIENTS)))
        self.parameter = StructType(elements)
        self.arg = ir.Reference("arg", self.parameter)
        self.clients = [ir.Selection(self.arg, name=n) for n, _ in elements[1:]]
        self.servers = [ir.Selection(self.arg, name="s")]
        self.after: list = []

    def server_value(self):
        return self.draw(st.sampled_from(self.servers + self.after))

    def placed_after(self, node, base: str):
        self.after.append(self.bind(node, base))

    def step(self) -> None:
        choice = self.draw(st.sampled_from(
            ["broadcast", "map", "map2", "value", "apply", "zip", "mean", "sum", "wmean", "aggregate", "secure"]))
        if choice == "broadcast":
            self.add_broadcast()
        elif choice == "map":
            self.add_map()
        elif choice == "map2":
            self.add_map2()
        elif choice == "value":
            constant = self.bind(ir.Literal(np.array([1.0, -0.5], dtype=F32)), "k")
            self.clients.append(self.bind(ir.intrinsic_call("federated_value_at_clients", constant), "v"))
        elif choice == "apply":
            s = self.server_value()
            fn = self.bind(self.local_fn(VECTOR), "f")
            node = self.bind(ir.intrinsic_call("federated_apply", ir.Struct([fn, s])), "p")
            (self.after if any(s is a for a in self.after) else self.servers).append(node)
        elif choice == "zip":
            a, b = self.server_value(), self.server_value()
            zipped = self.bind(ir.intrinsic_call("federated_zip_at_server", ir.Struct([a, b])), "zs")
            fn = self.bind(self.local_fn(StructType([VECTOR, VECTOR])), "f")
            node = self.bind(ir.intrinsic_call("federated_apply", ir.Struct([fn, zipped])), "p")
            after = any(x is y for x in (a, b) for y in self.after)
            (self.after if after else self.servers).append(node)
        elif choice in ("mean", "sum"):
            x = self.draw(st.sampled_from(self.clients))
            self.placed_after(ir.intrinsic_call(f"federated_{choice}", x), choice)
        elif choice == "wmean":
            x = self.draw(st.sampled_from(self.clients))
            k = self.counter
            w = self.bind(ir.intrinsic_call("federated_map", ir.Struct([
                ir.Lambda(f"w{k}", VECTOR, ir.intrinsic_call("add", ir.Struct([
                    ir.intrinsic_call("reduce_sum", ir.intrinsic_call("abs", ir.Reference(f"w{k}", VECTOR))),
                    ir.Literal(F32(1.0))]))),
                x])), "w")
            self.placed_after(ir.intrinsic_call("federated_weighted_mean", ir.Struct([x, w])), "wm")
        elif choice == "aggregate":  # a count-and-sum aggregate, as equivalence.py builds
            x = self.draw(st.sampled_from(self.clients))
            self.placed_after(self.count_and_sum(x), "agg")
        else:  # a secure sum of clipped, scaled integers, decoded at the server
            x = self.draw(st.sampled_from(self.clients))
            k = self.counter
            encode = ir.Lambda(f"e{k}", VECTOR, ir.intrinsic_call("cast", ir.intrinsic_call("clip", ir.Struct([
                ir.intrinsic_call("multiply", ir.Struct([
                    ir.intrinsic_call("abs", ir.Reference(f"e{k}", VECTOR)), ir.Literal(F32(2.0))])),
                ir.Literal(F32(0.0)), ir.Literal(F32(7.0))])), dtype="int32"))
            encoded = self.bind(ir.intrinsic_call("federated_map", ir.Struct([encode, x])), "enc")
            uri, bound = self.draw(st.sampled_from([
                ("federated_secure_sum_bitwidth", 3),
                ("federated_secure_sum", 7),
                ("federated_secure_modular_sum", 8),
            ]))
            bound_node = ir.Literal(np.int32(bound))
            if self.draw(st.booleans()):
                bound_node = self.bind(bound_node, "bound")
            summed = self.bind(ir.intrinsic_call(uri, ir.Struct([encoded, bound_node])), "sec")
            decode = ir.Lambda(f"d{k}", INT_VECTOR, ir.intrinsic_call("cast", ir.Reference(f"d{k}", INT_VECTOR), dtype="float32"))
            self.placed_after(ir.intrinsic_call("federated_apply", ir.Struct([decode, summed])), "dec")

    def count_and_sum(self, x) -> ir.Node:
        """federated_aggregate(x) with zero <0,0>, accumulate adding x and 1, merge add, report sum/count."""
        scalar = TensorType(F32)
        acc_t = StructType([VECTOR, scalar])
        self.counter += 1
        k = self.counter
        pair = StructType([acc_t, VECTOR])
        a = ir.Reference(f"a{k}", pair)
        accumulate = self.bind(ir.Lambda(f"a{k}", pair, ir.Struct([
            ir.intrinsic_call("add", ir.Struct([ir.Selection(ir.Selection(a, index=0), index=0), ir.Selection(a, index=1)])),
            ir.intrinsic_call("add", ir.Struct([ir.Selection(ir.Selection(a, index=0), index=1), ir.Literal(F32(1.0))])),
        ])), "acc")
        merge = self.bind(ir.Intrinsic("add", FunctionType(StructType([acc_t, acc_t]), acc_t)), "merge")
        r = ir.Reference(f"r{k}", acc_t)
        report = ir.Lambda(f"r{k}", acc_t, ir.intrinsic_call("divide", ir.Struct([
            ir.Selection(r, index=0),
            ir.intrinsic_call("maximum", ir.Struct([ir.Selection(r, index=1), ir.Literal(F32(1.0))]))])))
        zero = ir.intrinsic_call("zeros", type=acc_t)
        if self.draw(st.booleans()):
            zero = self.bind(zero, "zero")
        return ir.intrinsic_call("federated_aggregate", ir.Struct([x, zero, accumulate, merge, report]))

    def build(self) -> Module:
        for _ in range(self.draw(st.integers(1, 7))):
            self.step()
        outputs = self.after or self.servers
        new_state = self.draw(st.sampled_from(outputs + self.servers[:1]))
        shape = self.draw(st.sampled_from(["state-only", "one", "zip"]))
        if shape == "state-only":
            result = new_state
        else:
            x = self.draw(st.sampled_from(outputs))
            if shape == "zip":
                y = self.draw(st.sampled_from(outputs + self.servers))
                x = self.bind(ir.intrinsic_call("federated_zip_at_server", ir.Struct([("a", x), ("b", y)])), "out")
            result = ir.Struct([("s", new_state), ("x", x)])
        body = ir.Block(self.locals, result) if self.locals else result
        module = Module("program", {"round": ir.Lambda("arg", self.parameter, body)})
        ir.verify(module)
        return module


@st.composite
def rounds(draw) -> Module:
    return _Round(draw, draw(st.booleans())).build()


def client_data(parameter: StructType, argument: dict) -> list:
    """The round's client arguments as one D value per client."""
    names = [n for n in parameter.names()[1:]]
    if len(names) == 1:
        return argument[names[0]]
    count = len(argument[names[0]])
    return [{n: argument[n][i] for n in names} for i in range(count)]


def assert_form_runs_like(module: Module, form: MapReduceForm, seeds=(0, 1), num_clients=3, check_as_round=False):
    symbol = "round"
    parameter = module[symbol].type_signature.parameter
    state_only = isinstance(module[symbol].type_signature.result, FederatedType)
    for seed in seeds:
        rng = np.random.default_rng(seed)
        argument = random_value(parameter, rng, num_clients)
        expected = run(module, symbol, argument, num_clients)
        state, x = run_round(form, argument["s"], client_data(parameter, argument))
        if state_only:
            assert_close(state, expected)
            assert x == ()
        else:
            expected_state, expected_x = expected.values() if isinstance(expected, dict) else expected
            assert_close(state, expected_state, path="state")
            assert_close(x, expected_x, path="x")
        if check_as_round:
            for sums in (False, True):  # the aggregation folded, or (when it is a sum) one federated_sum
                reassembled = as_round(form, sum_aggregation=sums)
                got = run(reassembled, "round", [argument["s"], client_data(parameter, argument)], num_clients)
                assert_close(got["s"] if isinstance(got, dict) else got[0], state, path=f"as_round state ({sums})")


@settings(max_examples=80, deadline=None)
@given(rounds(), st.sampled_from([1, 2, 3, 5]))
def test_random_rounds_lower_to_forms_that_run_like_them(module, num_clients):
    lowered = passes.run(module, "lower-to-mapreduce").module
    form = MapReduceForm(lowered)
    assert set(PARTS) <= set(lowered.symbols)
    assert_form_runs_like(module, form, num_clients=num_clients, check_as_round=True)
    assert ir.deserialize(ir.serialize(lowered)) == lowered
    assert ir.parse_module(ir.print_module(lowered)) == lowered


@pytest.mark.skipif(NORMAL_FORM is None, reason="the normal-form passes are not there yet")
@settings(max_examples=25, deadline=None)
@given(rounds())
def test_random_rounds_through_the_normal_form_passes(module):
    lowered = passes.run(module, f"{NORMAL_FORM},lower-to-mapreduce").module
    assert_form_runs_like(module, MapReduceForm(lowered))


@pytest.mark.skipif(not has_passes("cse", "dce", "canonicalize"), reason="cleanup passes are not there yet")
@settings(max_examples=15, deadline=None)
@given(rounds())
def test_random_rounds_after_cleanup(module):
    lowered = passes.run(module, f"{NORMAL_FORM},canonicalize,cse,dce,lower-to-mapreduce").module
    assert_form_runs_like(module, MapReduceForm(lowered), seeds=(3,))


@pytest.mark.skipif(not has_passes("fuse-map-mean"), reason="fuse-map-mean is not there yet")
@settings(max_examples=15, deadline=None)
@given(rounds())
def test_random_rounds_after_fusion(module):
    lowered = passes.run(module, f"{NORMAL_FORM},fuse-map-mean,lower-to-mapreduce").module
    assert_form_runs_like(module, MapReduceForm(lowered), seeds=(4,))


@pytest.mark.skipif(not has_passes("desugar"), reason="desugar is not there yet")
@settings(max_examples=15, deadline=None)
@given(rounds())
def test_random_rounds_after_desugar(module):
    lowered = passes.run(module, f"{NORMAL_FORM},desugar,lower-to-mapreduce").module
    assert_form_runs_like(module, MapReduceForm(lowered), seeds=(5,))


# --------------------------------------------------------------------------
# The form: printing, serialization, the executor


GOLDEN = pathlib.Path(__file__).resolve().parent / "golden" / "lower-to-mapreduce"


def golden_round(name: str) -> Module:
    path = GOLDEN / f"{name}.fedir"
    return ir.parse_module(path.read_text(), str(path))


@pytest.mark.parametrize("name", ["mean_round", "aggregations", "secure_sums", "state_only"])
def test_golden_rounds_run_like_their_forms(name):
    module = golden_round(name)
    symbol = module.symbols[-1]
    form = MapReduceForm(passes.run(module, "lower-to-mapreduce").module)
    renamed = Module(module.name, {"round": module[symbol]})
    assert_form_runs_like(renamed, form, seeds=(0, 1, 2), num_clients=4, check_as_round=True)


def test_the_form_round_trips_through_text_and_protobuf():
    form = passes.run(golden_round("aggregations"), "lower-to-mapreduce").module
    assert ir.deserialize(ir.serialize(form)) == form
    assert ir.parse_module(ir.print_module(form)) == form
    assert MapReduceForm(ir.deserialize(ir.serialize(form))) == MapReduceForm(form)


def test_the_form_types():
    form = MapReduceForm(passes.run(golden_round("mean_round"), "lower-to-mapreduce").module)
    assert str(form.state_type) == "float32[2]"
    assert str(form.data_type) == "float32[2]"
    assert str(form.broadcast_type) == "<b=float32[2]>"
    assert str(form.aggregation_input_type) == "<mean=float32[2],loss=float32>"
    assert str(form.accumulator_type) == "<mean=<float32[2],float32>,loss=<float32,float32>>"
    assert str(form.report_type) == "<mean=float32[2],loss=float32>"
    assert str(form.secure_input_type) == "<bitwidth=<>,max_input=<>,modulus=<>>"
    assert str(form.type_signature) == (
        "(<float32[2]@SERVER,{float32[2]}@CLIENTS> -> <s=float32[2]@SERVER,loss=float32@SERVER>)"
    )
    for part in PARTS:
        assert not any(isinstance(t, FederatedType) for t in form.part(part).type_signature.walk())


def test_lowering_a_form_again_changes_nothing():
    form = passes.run(golden_round("mean_round"), "lower-to-mapreduce").module
    assert is_map_reduce_form(form)
    assert passes.run(form, "lower-to-mapreduce").module is form


def test_the_entry_option_picks_the_round():
    module = golden_round("mean_round")
    extra = ir.Lambda("t", FederatedType(F32, CLIENTS), ir.intrinsic_call("federated_mean", ir.Reference("t", FederatedType(F32, CLIENTS))))
    module = Module(module.name, list(module.items()) + [("average", extra)])
    with pytest.raises(FedcError, match=r"the parameter of @average has type .*name the round with lower-to-mapreduce\{entry=NAME\}"):
        passes.run(module, "lower-to-mapreduce")
    lowered = passes.run(module, "lower-to-mapreduce{entry=next}").module
    assert MapReduceForm(lowered).report_type == StructType([("mean", VECTOR), ("loss", TensorType(F32))])
    with pytest.raises(FedcError, match="no computation @nxt; did you mean @next"):
        passes.run(module, "lower-to-mapreduce{entry=nxt}")


def test_helper_computations_come_along_and_make_room_for_the_parts():
    """A round that calls module computations by symbol keeps them (renamed if they clash)."""
    double = ir.Lambda("v", VECTOR, ir.intrinsic_call("add", ir.Struct([ir.Reference("v", VECTOR), ir.Reference("v", VECTOR)])))
    parameter = StructType([("s", FederatedType(VECTOR, SERVER)), ("c", FederatedType(VECTOR, CLIENTS))])
    arg = ir.Reference("arg", parameter)
    work = ir.SymbolRef("work", double.type_signature)
    mapped = ir.intrinsic_call("federated_map", ir.Struct([work, ir.Selection(arg, name="c")]))
    mean = ir.intrinsic_call("federated_mean", ir.Reference("mapped", mapped.type_signature))
    body = ir.Block([("mapped", mapped), ("mean", mean)], ir.Struct([ir.Reference("mean", mean.type_signature), ir.Selection(arg, name="s")]))
    module = Module("helpers", [("work", double), ("unused", double), ("round", ir.Lambda("arg", parameter, body))])
    lowered = passes.run(module, "lower-to-mapreduce").module
    assert lowered.symbols[0] == "work_1" and "unused" not in lowered
    assert "fedc.call @work_1(%input[0])" in ir.print_module(lowered)
    assert_form_runs_like(module, MapReduceForm(lowered))


def test_malformed_forms_are_reported():
    form = passes.run(golden_round("mean_round"), "lower-to-mapreduce").module
    missing = Module(form.name, [(s, n) for s, n in form.items() if s != "merge"])
    with pytest.raises(FedcError, match="not a MapReduce form: module @fedavg has no @merge"):
        MapReduceForm(missing)
    wrong = form.replace("prepare", ir.Lambda("s", TensorType(F32, [3]), ir.Struct([("b", ir.Reference("s", TensorType(F32, [3])))])))
    with pytest.raises(FedcError, match="the broadcast C that @work takes from @prepare"):
        MapReduceForm(wrong)
    placed = form.replace("zero", ir.Lambda(None, None, ir.intrinsic_call("federated_value_at_server", ir.Literal(F32(0.0)))))
    with pytest.raises(FedcError, match="@zero has the placed type"):
        MapReduceForm(placed)
    with pytest.raises(FedcError, match="not a MapReduce form"):
        run_round(missing, np.zeros(2, F32), [np.zeros(2, F32)])


def test_run_round_checks_its_arguments():
    form = MapReduceForm(passes.run(golden_round("mean_round"), "lower-to-mapreduce").module)
    with pytest.raises(FedcError, match="client_data is a list"):
        run_round(form, np.zeros(2, F32), np.zeros((3, 2), F32))
    with pytest.raises(FedcError, match="the data of client 1"):
        run_round(form, np.zeros(2, F32), [np.zeros(2, F32), np.zeros(3, F32)])


def test_run_round_merges_any_number_of_partial_aggregates():
    module = golden_round("aggregations")
    form = MapReduceForm(passes.run(module, "lower-to-mapreduce").module)
    rng = np.random.default_rng(7)
    state = rng.normal(size=2).astype(F32)
    data = [rng.normal(size=2).astype(F32) for _ in range(6)]
    results = [run_round(form, state, data, partitions=k) for k in (1, 2, 3, 6, 9)]
    for other in results[1:]:
        assert_close(other, results[0])


def test_secure_sums_check_client_ranges_when_run():
    """The executor's secure sums are the reference implementation: out-of-range inputs fail loudly."""
    module = golden_round("secure_sums")
    form = MapReduceForm(passes.run(module, "lower-to-mapreduce").module)
    narrower = form.module.replace("secure_sum_bitwidth", ir.Struct([("summed", ir.Literal(np.int32(1)))]))
    big = [np.array([3.0, 3.0], F32)] * 2
    state, x = run_round(form, np.zeros(2, F32), big)
    assert_close(state, np.array([12.0, 12.0], F32))
    with pytest.raises(FedcError, match=r"outside \[0, 2\*\*1\)"):
        run_round(narrower, np.zeros(2, F32), big)


def test_means_of_mixed_dtypes_with_integer_weights():
    """Counts and weights are kept per leaf in the leaf's dtype; integer weights are cast."""
    member = StructType([("a", VECTOR), ("b", TensorType(np.float64))])
    parameter = StructType([("s", FederatedType(member, SERVER)), ("c", FederatedType(member, CLIENTS)),
                            ("w", FederatedType(TensorType(np.int32), CLIENTS))])
    arg = ir.Reference("arg", parameter)
    mean = ir.intrinsic_call("federated_mean", ir.Selection(arg, name="c"))
    weighted = ir.intrinsic_call("federated_weighted_mean", ir.Struct([ir.Selection(arg, name="c"), ir.Selection(arg, name="w")]))
    total = ir.intrinsic_call("federated_sum", ir.Selection(arg, name="w"))
    locals_ = [("mean", mean), ("weighted", weighted), ("total", total)]
    refs = {n: ir.Reference(n, v.type_signature) for n, v in locals_}
    x = ir.intrinsic_call("federated_zip_at_server", ir.Struct([refs["weighted"], refs["total"]]))
    body = ir.Block(locals_ + [("x", x)], ir.Struct([("s", refs["mean"]), ("x", ir.Reference("x", x.type_signature))]))
    module = Module("mixed", {"round": ir.Lambda("arg", parameter, body)})
    form = MapReduceForm(passes.run(module, "lower-to-mapreduce").module)
    assert str(form.accumulator_type) == (
        "<mean=<<a=float32[2],b=float64>,<a=float32,b=float64>>,"
        "weighted=<<a=float32[2],b=float64>,<a=float32,b=float64>>,total=int32>"
    )
    text = ir.print_module(form.module)
    assert 'local.cast(%weighted_weight) {dtype = "float64"}' in text  # the weight, checked to be at least 0
    assert 'message = "federated_weighted_mean: a client\'s weight is negative' in text
    for seed in range(3):
        rng = np.random.default_rng(seed)
        argument = random_value(parameter, rng, 4)
        argument["w"] = [np.int32(v) for v in rng.integers(1, 5, size=4)]
        expected = run(module, "round", argument, 4)
        data = [{"c": c, "w": w} for c, w in zip(argument["c"], argument["w"])]
        state, out = run_round(form, argument["s"], data)
        assert_close(state, expected["s"], rtol=1e-5, atol=1e-6)
        assert_close(out, expected["x"], rtol=1e-5, atol=1e-6)


def test_unnamed_parameters_and_a_state_that_passes_through():
    """(<S@SERVER,{D}@CLIENTS> -> <S@SERVER,X@SERVER>) without names; nothing broadcast."""
    parameter = StructType([FederatedType(VECTOR, SERVER), FederatedType(VECTOR, CLIENTS)])
    arg = ir.Reference("arg", parameter)
    total = ir.intrinsic_call("federated_sum", ir.Selection(arg, index=1))
    body = ir.Block([("total", total)], ir.Struct([ir.Selection(arg, index=0), ir.Reference("total", total.type_signature)]))
    module = Module("plain", {"round": ir.Lambda("arg", parameter, body)})
    form = MapReduceForm(passes.run(module, "lower-to-mapreduce").module)
    assert str(form.module["prepare"].type_signature) == "(float32[2] -> <>)"
    assert ir.print_module(form.module).count("fedc.func @prepare(%state: float32[2])") == 1
    data = [np.array([1.0, 2.0], F32), np.array([3.0, 4.0], F32)]
    state, x = run_round(form, np.array([5.0, 6.0], F32), data)
    assert_close(state, np.array([5.0, 6.0], F32))
    assert_close(x, np.array([4.0, 6.0], F32))


def test_x_may_be_a_struct_of_server_values():
    """<S@SERVER,<loss=float32@SERVER,count=float32@SERVER>> works like a zipped X."""
    parameter = StructType([("s", FederatedType(VECTOR, SERVER)), ("c", FederatedType(VECTOR, CLIENTS))])
    arg = ir.Reference("arg", parameter)
    mean = ir.intrinsic_call("federated_mean", ir.Selection(arg, name="c"))
    total = ir.intrinsic_call("federated_sum", ir.Selection(arg, name="c"))
    refs = [ir.Reference(n, v.type_signature) for n, v in (("mean", mean), ("total", total))]
    result = ir.Struct([("s", refs[0]), ("metrics", ir.Struct([("total", refs[1]), ("old", ir.Selection(arg, name="s"))]))])
    module = Module("nested", {"round": ir.Lambda("arg", parameter, ir.Block([("mean", mean), ("total", total)], result))})
    form = MapReduceForm(passes.run(module, "lower-to-mapreduce").module)
    assert str(form.output_type) == "<total=float32[2],old=float32[2]>"
    assert_form_runs_like(module, form)


def test_zero_clients():
    """With no clients, sums are zero (as federated_sum gives); the form never crashes."""
    form = MapReduceForm(passes.run(golden_round("secure_sums"), "lower-to-mapreduce").module)
    state, x = run_round(form, np.ones(2, F32), [])
    assert_close(state, np.zeros(2, F32))


# --------------------------------------------------------------------------
# Errors the pass reports (the golden ERROR files cover the others)


def _nested_round() -> Module:
    """A round that calls another federated computation: not in call-dominant form until inlined."""
    parameter = StructType([("s", FederatedType(VECTOR, SERVER)), ("c", FederatedType(VECTOR, CLIENTS))])
    t = FederatedType(VECTOR, CLIENTS)
    average = ir.Lambda("x", t, ir.intrinsic_call("federated_mean", ir.Reference("x", t)))
    arg = ir.Reference("arg", parameter)
    called = ir.Call(ir.SymbolRef("average", average.type_signature), ir.Selection(arg, name="c"))
    body = ir.Block([("mean", called)], ir.Struct([ir.Reference("mean", called.type_signature), ir.Reference("mean", called.type_signature)]))
    return Module("nested", [("average", average), ("round", ir.Lambda("arg", parameter, body))])


def test_a_round_not_in_call_dominant_form_is_refused_naming_the_pipeline():
    """The pass does not run other passes: it says which ones its input needs."""
    with pytest.raises(FedcError, match=r"\(call-dominant form\): local %mean is not an intrinsic call on atoms.*"
                                        r"run inline,call-dominant first \(the pipeline to-mapreduce does\)"):
        passes.run(_nested_round(), "lower-to-mapreduce")


def test_the_named_pipeline_to_mapreduce_normalizes_then_lowers():
    module = _nested_round()
    result = passes.run(module, "to-mapreduce")
    assert [name for name, _ in result.timings] == ["inline", "call-dominant", "lower-to-mapreduce"]
    assert_form_runs_like(module, MapReduceForm(result.module))
    # Options of a named pipeline go to the steps that take them.
    named = passes.run(module, "to-mapreduce{entry=round}")
    assert [name for name, _ in named.timings][-1] == "lower-to-mapreduce{entry=round}"
    assert named.module == result.module
    with pytest.raises(FedcError, match=r"pass to-mapreduce has no option 'bits' \(its options: entry\)"):
        passes.run(module, "to-mapreduce{bits=3}")


def test_errors_name_the_pass_and_the_round():
    with pytest.raises(FedcError) as info:
        passes.run(golden_round("error_max"), "lower-to-mapreduce")
    assert str(info.value).startswith("pass lower-to-mapreduce failed: @round does not fit the MapReduce form")


def test_an_empty_module():
    with pytest.raises(FedcError, match="has no computation to lower"):
        passes.run(Module("empty", {}), "lower-to-mapreduce")


def test_the_cli_prints_the_form(tmp_path, capsys):
    from fedc import cli

    path = tmp_path / "round.fedir"
    path.write_text((GOLDEN / "mean_round.fedir").read_text())
    status = cli.main(["compile", str(path), "--passes", "lower-to-mapreduce"])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert "fedc.func @prepare(%s: float32[2]) -> <b=float32[2]>" in out
    assert MapReduceForm(ir.parse_module(out)) is not None
    status = cli.main(["compile", str(GOLDEN / "error_second_broadcast.fedir"), "--passes", "lower-to-mapreduce"])
    out, err = capsys.readouterr()
    assert status == 2 and "a second broadcast %b2 at algo.fed:6:9" in err and "Traceback" not in err


# --------------------------------------------------------------------------
# FedAvg: lowered, executed for 3 rounds, still trains


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


def _secure_pipeline() -> str:
    return f"{NORMAL_FORM},fuse-map-mean,insert-secure-aggregation{{bits=20 clip=4.0}},lower-to-mapreduce"


FEDAVG_PIPELINES = [
    pytest.param("lower-to-mapreduce", id="lower"),
    pytest.param(f"{NORMAL_FORM},lower-to-mapreduce", id="normal-form",
                 marks=pytest.mark.skipif(NORMAL_FORM is None, reason="no normal-form passes yet")),
    pytest.param(f"{NORMAL_FORM},fuse-map-mean,lower-to-mapreduce", id="fused",
                 marks=pytest.mark.skipif(not has_passes("inline", "call-dominant", "fuse-map-mean"),
                                          reason="fuse-map-mean is not there yet")),
    pytest.param("secure", id="fused-secure", marks=pytest.mark.skipif(
        not has_passes("inline", "call-dominant", "fuse-map-mean", "insert-secure-aggregation"),
        reason="fusion / secure aggregation passes are not there yet")),
]


def _clip_counts(counts, clients: int) -> bool:
    """A secure_clipped value: per aggregation, how many of the clients were clipped above and below."""
    return bool(counts) and all(
        set(c) == {"upper", "lower"} and all(0 <= int(n) <= clients for n in c.values()) for c in counts.values()
    )


def _train(fedavg, form: MapReduceForm, data, rounds: int = 3):
    clients, test = data
    state = fedavg.initialize_fn()
    losses = [fedavg.evaluate(state, test)[0]]
    outputs = []
    for _ in range(rounds):
        state, x = run_round(form, state, clients)
        losses.append(fedavg.evaluate(state, test)[0])
        outputs.append(x)
    return state, losses, outputs


def _lower(module: Module, pipeline: str, entry: str) -> MapReduceForm:
    if pipeline == "secure":
        pipeline = _secure_pipeline()
    lowered = passes.run(module, pipeline.replace("lower-to-mapreduce", f"lower-to-mapreduce{{entry={entry}}}")).module
    assert ir.deserialize(ir.serialize(lowered)) == lowered
    return MapReduceForm(lowered)


@pytest.mark.parametrize("pipeline", FEDAVG_PIPELINES)
def test_fedavg_python_next_fn_still_trains(fedavg, fedavg_data, pipeline):
    form = _lower(fedavg.next_fn.to_ir(), pipeline, "next_fn")
    clients, _ = fedavg_data
    state, losses, outputs = _train(fedavg, form, fedavg_data)
    assert losses[-1] < losses[1] < losses[0], losses
    if pipeline == "secure":  # the secured round reports its clip counts as its output
        assert all(_clip_counts(x, len(clients)) for x in outputs), outputs
    else:
        assert outputs == [(), (), ()]
    if pipeline != "secure":  # the first round equals the original's
        initial = fedavg.initialize_fn()
        expected = fedavg.next_fn(initial, clients)
        got, _ = run_round(form, initial, clients)
        assert_close(list(got), list(expected), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("pipeline", FEDAVG_PIPELINES)
def test_fedavg_fed_next_still_trains(fedavg, fedavg_data, pipeline):
    from fedc.frontend import fed

    module = fed.load(EXAMPLES / "fedavg.fed", import_externs=True)
    form = _lower(module, pipeline, "next")
    state, losses, outputs = _train(fedavg, form, fedavg_data)
    assert losses[-1] < losses[1] < losses[0], losses
    training_losses = outputs  # X is the clients' mean training loss
    if pipeline == "secure":  # ... and, secured, the clip counts beside it
        assert all(set(x) == {"loss", "secure_clipped"} for x in outputs)
        assert all(_clip_counts(x["secure_clipped"], len(fedavg_data[0])) for x in outputs)
        training_losses = [x["loss"] for x in outputs]
    assert training_losses[-1] < training_losses[0], training_losses
    if pipeline != "secure":
        clients, _ = fedavg_data
        initial = fedavg.initialize_fn()
        expected = Computation(module, "next")(initial, clients)
        got_state, got_x = run_round(form, initial, clients)
        assert_close(list(got_state), list(expected["weights"]), rtol=1e-4, atol=1e-5)
        assert_close(got_x, expected["loss"], rtol=1e-4, atol=1e-5)


WEIGHTED_ROUND = """\
computation round(s: float32@SERVER, x: {float32}@CLIENTS, w: {float32}@CLIENTS) -> <s=float32@SERVER, m=float32@SERVER, a=float32@SERVER> {
  return <s=s, m=federated_mean(x, w), a=federated_mean(x)>
}
"""


@pytest.mark.parametrize("backend", ["reference", "tf"])
def test_the_form_keeps_the_means_run_time_checks(backend):
    """A negative weight, weights summing to 0 and a mean over no client fail in the form as in the round."""
    import fedc
    from fedc.frontend import fed

    form = MapReduceForm(passes.run(fed.parse(WEIGHTED_ROUND, filename="w.fed"), "to-mapreduce").module)
    for sums in (False, True):
        round_ = Computation(as_round(form, sum_aggregation=sums), "round")
        with fedc.backend(backend):
            assert round_(1.0, [(1.0, 1.0), (3.0, 3.0)])[1] == {"m": 2.5, "a": 2.0}
            with pytest.raises(FedcError, match="federated_weighted_mean: a client's weight is negative"):
                round_(1.0, [(1.0, 2.0), (3.0, -1.0)])
            with pytest.raises(FedcError, match="federated_weighted_mean: the clients' weights sum to 0"):
                round_(1.0, [(1.0, 0.0), (3.0, 0.0)])
    with pytest.raises(FedcError, match="federated_weighted_mean: a client's weight is negative"):
        run_round(form, 1.0, [(1.0, 2.0), (3.0, -1.0)])
    with pytest.raises(FedcError, match="federated_weighted_mean: the clients' weights sum to 0|zero clients"):
        run_round(form, 1.0, [])


def _intrinsic_uris(module: Module, symbol: str) -> set:
    return {n.uri for n in module[symbol].walk() if isinstance(n, ir.Intrinsic)}


def test_a_sum_shaped_aggregation_becomes_one_federated_sum_and_nothing_else_does():
    from fedc.frontend import fed

    form = MapReduceForm(passes.run(fed.parse(WEIGHTED_ROUND, filename="w.fed"), "to-mapreduce").module)
    summed = _intrinsic_uris(as_round(form, sum_aggregation=True), "round")
    assert "federated_sum" in summed and "federated_aggregate" not in summed
    assert "federated_aggregate" in _intrinsic_uris(as_round(form), "round")
    # an accumulate that is not "accumulator + g(value)" (here: a running maximum) stays a fold
    from fedc.ir import sums

    u = TensorType(np.float32)
    pair = ir.Reference("p", StructType([u, u]))
    maximum = ir.Lambda("p", pair.type_signature, ir.Call(ir.Intrinsic("maximum", FunctionType(
        StructType([u, u]), u)), ir.Struct([ir.Selection(pair, index=0), ir.Selection(pair, index=1)])))
    adding = ir.Lambda("p", pair.type_signature, ir.Call(ir.Intrinsic("add", FunctionType(StructType([u, u]), u)),
                                                         ir.Struct([ir.Selection(pair, index=0), ir.Selection(pair, index=1)])))
    zero = ir.Literal(np.float32(0.0), u)
    assert sums.summands(zero, maximum, adding) is None
    assert sums.summands(ir.Literal(np.float32(1.0), u), adding, adding) is None  # not a zero
    g = sums.summands(zero, adding, adding)
    assert g is not None and g.type_signature == FunctionType(u, u)
