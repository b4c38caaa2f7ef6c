"""Analyses: the privacy report (client values that reach the server) and the communication cost."""

import pathlib

import networkx as nx
import pytest
from hypothesis import HealthCheck, given, settings

import strategies

import fedc
from fedc import ir, passes
from fedc.errors import FedcError
from fedc.frontend import fed
from fedc.passes import analysis
from fedc.passes.analysis import Bytes, communication_cost, privacy_report, type_bytes
from fedc.types import parse

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="module")
def fedavg():
    return fed.load(EXAMPLES / "fedavg.fed")


@pytest.fixture(scope="module")
def analytics():
    return fed.load(EXAMPLES / "analytics.fed")


def load(text: str):
    return fed.parse(text, "t.fed")


SECURE = """
computation secure_count(flags: {int32}@CLIENTS) -> int32@SERVER {
  return federated_secure_sum_bitwidth(flags, 8)
}

computation mixed(v: {float32}@CLIENTS, w: {float32}@CLIENTS, keys: {int32[3]}@CLIENTS, table: float32[10,4]@SERVER)
    -> <mean=float32@SERVER, rows={float32[10,4]*}@CLIENTS, n=int32@SERVER> {
  let rows = federated_select(keys, federated_value(10, SERVER), table, fn(t, k) -> t)
  return <mean=federated_weighted_mean(v, w), rows=rows, n=federated_secure_sum(federated_map(fn(x) -> 1, v), 1000)>
}
"""

NO_FLOW = """
local twice(x: float32) -> float32 {
  return x + x
}

computation send(s: float32@SERVER) -> {float32}@CLIENTS {
  return federated_map(twice, federated_broadcast(s))
}

computation server_only(s: float32@SERVER) -> float32@SERVER {
  return federated_map(twice, s)
}
"""


# --------------------------------------------------------------------------
# Bytes


def test_bytes_polynomials():
    d0, n0 = Bytes.symbol("d0"), Bytes.symbol("n0")
    size = 4 * d0 * 784 + 40
    assert str(size) == "3136*d0 + 40"
    assert str(n0 * (size + 4 * Bytes.symbol("d1"))) == "3136*d0*n0 + 4*d1*n0 + 40*n0"
    assert Bytes(40) == 40 and int(Bytes(40) + 2) == 42 and str(Bytes(0)) == "0"
    assert not size.is_constant and size.symbols == ["d0"]
    assert size.evaluate(d0=2) == 3136 * 2 + 40
    assert str(size.evaluate()) == "3136*d0 + 40"
    with pytest.raises(FedcError, match="depends on d0"):
        int(size)
    assert str(d0 + d0) == "2*d0" and str(d0 * d0) == "d0*d0"
    assert hash(Bytes(3) + d0) == hash(d0 + 3)


def test_type_bytes_of_tensors_structs_sequences_and_unknowns():
    assert type_bytes(parse("<float32[784,10],float32[10]>")) == 784 * 10 * 4 + 10 * 4
    assert type_bytes(parse("{<bool[3],float64,int8[2,2]>}@CLIENTS")) == 3 + 8 + 4
    unknowns = analysis.Unknowns()
    size = type_bytes(parse("<x=float32[?,784],y=int32[?,1]>*"), unknowns, "the dataset")
    assert str(size) == "3136*d0*n0 + 4*d1*n0"
    assert "length of the sequence" in unknowns.legend["n0"]
    assert unknowns.legend["d0"] == "dimension 0 of .x (float32[?,784]) in each sequence element in the dataset"
    assert "dimension 0 of .y" in unknowns.legend["d1"]
    assert type_bytes(parse("(float32 -> float32)")) == 0


# --------------------------------------------------------------------------
# Privacy report


def test_temperature_has_one_plain_flow_through_mean():
    module = fed.load(EXAMPLES / "temperature.fed")
    report = privacy_report(module)
    [flow] = report.flows
    assert flow.source == "t" and flow.intrinsic == "federated_mean" and not flow.secure
    assert flow.computation == "get_average_temperature" and flow.local == "mean"
    assert flow.location.line == 8 and flow.location.file.endswith("temperature.fed")
    assert flow.path == ("t", "%mean (federated_mean)") and flow.reaches == ("result",)
    text = report.text()
    assert "@get_average_temperature" in text and "1 flow (1 plain, 0 secure)" in text
    assert "plain: t reaches the server through federated_mean (%mean) at" in text
    assert "temperature.fed:8:10" in text


def test_fedavg_client_data_reaches_the_server_through_two_means(fedavg):
    report = privacy_report(fedavg)
    assert report["initialize"].flows == []
    flows = report["next"].flows
    assert [(f.source, f.intrinsic, f.local, f.reaches) for f in flows] == [
        ("federated_dataset", "federated_mean", "mean_client_weights", ("result.weights",)),
        ("federated_dataset", "federated_mean", "mean_loss", ("result.loss",)),
    ]
    assert all(not f.secure for f in flows)
    weights = flows[0]
    assert weights.path[0] == "federated_dataset" and weights.path[-1] == "%mean_client_weights (federated_mean)"
    assert "%client_outputs (federated_map @client_update)" in weights.path
    assert [f.location.line for f in flows] == [24, 25]
    # The server's weights are not client data: they are never a source.
    assert "server_weights" not in report["next"].sources
    text = report.text()
    assert "@initialize" in text and "no client value reaches the server" in text
    assert "local computations (no placed values): @server_init, @client_update, @server_update" in text


def test_analytics_sum_mean_and_max_including_through_a_call(analytics):
    report = privacy_report(analytics)
    assert [(f.source, f.intrinsic) for f in report["histogram"].flows] == [("values", "federated_sum")]
    assert [(f.source, f.intrinsic) for f in report["clipped_mean"].flows] == [("values", "federated_mean")]
    summary = report["summary"].flows
    assert sorted((f.intrinsic, f.reaches) for f in summary) == [
        ("federated_max", ("result.max",)),
        ("federated_mean", ("result.mean",)),
        ("federated_sum", ("result.count",)),
        ("federated_sum", ("result.histogram",)),
    ]
    assert {f.source for f in summary} == {"values"}  # bounds come from the server
    through_call = [f for f in summary if f.via == "histogram"]
    assert len(through_call) == 1 and through_call[0].location.line == 18
    assert through_call[0].path[-1] == "@histogram: %sum (federated_sum)"
    assert "in @histogram" in report.text()
    assert len(report.plain_flows) == 6 and report.secure_flows == []


def test_secure_sums_and_select_keys():
    report = privacy_report(load(SECURE))
    [secure] = report["secure_count"].flows
    assert secure.secure and secure.intrinsic == "federated_secure_sum_bitwidth" and secure.kind == "secure"
    mixed = report["mixed"].flows
    assert sorted((f.source, f.intrinsic, f.secure) for f in mixed) == [
        ("keys", "federated_select", False),  # the server sees which keys each client asks for
        ("v", "federated_secure_sum", True),
        ("v", "federated_weighted_mean", False),
        ("w", "federated_weighted_mean", False),  # the weight is client data too
    ]
    # The server's table reaches the clients, not the other way round.
    assert all(f.source != "table" for f in mixed)
    text = report.text()
    assert "secure: flags reaches the server through federated_secure_sum_bitwidth" in text
    assert "federated_select (%rows) (its keys)" in text
    assert "total: 5 flows (3 plain, 2 secure)" in text


def test_no_flow_says_so():
    report = privacy_report(load(NO_FLOW))
    assert report.flows == []
    text = report.text()
    assert "@send (t.fed:6:1): no client value reaches the server" in text
    assert "@server_only (t.fed:10:1): no client value reaches the server" in text
    assert "local computations (no placed values): @twice" in text
    assert "total: 0 flows" in text


def test_client_data_and_eval_at_clients_are_sources():
    text = """
fedc.module @m {
  fedc.func @f() -> float32@SERVER {
    %d = fedc.data "clients://readings" : {float32}@CLIENTS
    %s = fed.sum(%d) : ({float32}@CLIENTS -> float32@SERVER)
    fedc.return %s
  }
}
"""
    [flow] = privacy_report(ir.parse_module(text)).flows
    assert flow.source == "data 'clients://readings'" and flow.intrinsic == "federated_sum"


def test_dataflow_graph_is_networkx(fedavg):
    graph = analysis.dataflow_graph(fedavg, "next")
    assert isinstance(graph, nx.DiGraph)
    kinds = {data["label"]: data["kind"] for _, data in graph.nodes(data=True)}
    assert kinds["server_weights"] == kinds["federated_dataset"] == "parameter"
    assert kinds["%server_weights_at_client (federated_broadcast)"] == "intrinsic"
    carried = [(graph.nodes[u]["label"], graph.nodes[v]["label"]) for u, v, d in graph.edges(data=True) if d["carried"]]
    assert carried == [("%weights (federated_map)", "%mean_client_weights (federated_mean)"),
                       ("%loss (federated_map)", "%mean_loss (federated_mean)")]


def test_lambdas_applied_at_the_orchestration_level_are_followed():
    # A lambda called where it is defined (before inlining): its body's dataflow counts.
    text = """
fedc.module @m {
  fedc.func @f(%x: {float32}@CLIENTS) -> float32@SERVER {
    %g = fedc.lambda(%y: {float32}@CLIENTS) -> float32@SERVER {
      %m = fed.mean(%y) : ({float32}@CLIENTS -> float32@SERVER)
      fedc.return %m
    }
    %r = fedc.call %g(%x) : float32@SERVER
    fedc.return %r
  }
}
"""
    module = ir.parse_module(text)
    [flow] = privacy_report(module).flows
    assert flow.source == "x" and flow.intrinsic == "federated_mean" and flow.local == "m"
    assert communication_cost(module).upload == 4


def test_privacy_report_pass_records_statistics_and_changes_nothing(analytics):
    result = passes.run(analytics, "privacy-report")
    assert result.module is analytics
    assert result.statistics == [("privacy-report", {
        "plain-flows": 6, "secure-flows": 0, "computations-with-flows": 3})]
    secure_only = load(SECURE.split("computation mixed")[0])
    passes.run(secure_only, "privacy-report{require-secure=true}")
    with pytest.raises(FedcError, match=r"without secure aggregation[\s\S]*@histogram: plain: values"):
        passes.run(analytics, "privacy-report{require-secure=true}")


def test_report_is_the_same_after_normalizing_passes(analytics):
    after = passes.run(analytics, "inline,call-dominant").module
    before = privacy_report(analytics)

    def summary(report):
        return sorted((f.computation, f.source, f.intrinsic, f.secure, f.reaches) for f in report.flows)

    assert summary(privacy_report(after)) == summary(before)
    assert [c.upload for c in communication_cost(after).computations] == \
        [c.upload for c in communication_cost(analytics).computations]


# --------------------------------------------------------------------------
# Communication cost


def test_fedavg_cost_is_exact(fedavg):
    report = communication_cost(fedavg)
    weights = 784 * 10 * 4 + 10 * 4
    nxt = report["next"]
    assert nxt.broadcast == weights
    assert nxt.upload == weights + 4
    assert nxt.by_intrinsic("broadcast") == {"federated_broadcast": weights}
    assert nxt.by_intrinsic("upload") == {"federated_mean": weights + 4}
    assert [(t.intrinsic, t.local, int(t.bytes)) for t in nxt.transfers] == [
        ("federated_broadcast", "server_weights_at_client", weights),
        ("federated_mean", "mean_client_weights", weights),
        ("federated_mean", "mean_loss", 4),
    ]
    assert report["initialize"].transfers == [] and report["initialize"].broadcast == 0
    single = communication_cost(fedavg, "next")
    assert single.broadcast == weights and single.upload == weights + 4
    text = report.text()
    assert "server -> client (broadcast): 31400 bytes per client" in text
    assert "client -> server (upload): 31404 bytes per client" in text
    assert "31400  federated_broadcast %server_weights_at_client : <float32[784,10],float32[10]> at" in text
    assert "by intrinsic: federated_mean 31404" in text
    assert "@initialize" in text and "no communication between server and clients" in text


def test_traced_fedavg_cost(fedavg):
    import importlib.util

    spec = importlib.util.spec_from_file_location("fedavg_example", EXAMPLES / "fedavg.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    module, symbol = example.next_fn.to_ir(), example.next_fn.name  # an analysis takes IR
    report = communication_cost(module, symbol)
    assert report.broadcast == report.upload == 31400
    [flow] = privacy_report(module, symbol).flows
    assert flow.source == "federated_dataset" and flow.intrinsic == "federated_mean"


def test_unknown_dimensions_are_symbols_named_for_where_they_are():
    module = load("""
computation round(data: {<x=float32[?,784],y=int32[?,1]>*}@CLIENTS, model: float32[?,10]@SERVER)
    -> float32[?,10]@SERVER {
  let m = federated_broadcast(model)
  return federated_mean(federated_map(fn(d, w) -> w, <data, m>))
}
""")
    cost = communication_cost(module, "round")
    assert str(cost.broadcast) == "40*d0" and str(cost.upload) == "40*d1"
    legend = cost["round"].legend
    assert legend["d0"] == "dimension 0 of float32[?,10] in federated_broadcast %m at t.fed:4:11"
    assert legend["d1"].startswith("dimension 0 of float32[?,10] in federated_mean")
    text = cost.text()
    assert "40*d0  federated_broadcast %m : float32[?,10]" in text
    assert "  where\n    d0 = dimension 0 of float32[?,10] in federated_broadcast %m" in text
    assert cost.broadcast.evaluate(d0=100) == 4000


def test_sequences_count_per_element_times_a_length():
    text = """
fedc.module @m {
  fedc.func @f(%s: <x=float32[?,784],y=int32[?,1]>*@SERVER) -> <x=float32[?,784],y=int32[?,1]>*@CLIENTS {
    %b = fed.broadcast(%s) : (<x=float32[?,784],y=int32[?,1]>*@SERVER -> <x=float32[?,784],y=int32[?,1]>*@CLIENTS)
    fedc.return %b
  }
}
"""
    cost = communication_cost(ir.parse_module(text))
    assert str(cost.broadcast) == "3136*d0*n0 + 4*d1*n0"
    assert "length of the sequence" in cost["f"].legend["n0"]


def test_select_weighted_mean_and_secure_sum_costs():
    cost = communication_cost(load(SECURE))
    mixed = cost["mixed"]
    assert mixed.broadcast == 3 * 10 * 4 * 4  # three keys, a float32[10,4] each
    assert mixed.upload == 3 * 4 + 4 + 4 + 4  # keys, value and weight, secure sum
    assert [(t.direction, t.intrinsic, t.what, t.secure) for t in mixed.transfers] == [
        ("upload", "federated_select", "keys", False),
        ("broadcast", "federated_select", "selected values", False),
        ("upload", "federated_weighted_mean", "value", False),
        ("upload", "federated_weighted_mean", "weight", False),
        ("upload", "federated_secure_sum", "value", True),
    ]
    text = cost.text()
    assert "federated_weighted_mean %mean (weight) : float32" in text
    assert "federated_secure_sum %secure_sum : int32 [secure]" in text
    assert cost["secure_count"].upload == 4


def test_value_at_clients_is_a_broadcast_and_unknown_key_counts_are_symbols():
    text = """
fedc.module @m {
  fedc.func @f(%arg: <keys={int32[?]}@CLIENTS,t=float32[5]@SERVER>) -> {float32[5]*}@CLIENTS {
    %keys = fedc.select %arg.keys : {int32[?]}@CLIENTS
    %t = fedc.select %arg.t : float32[5]@SERVER
    %c = fedc.constant 1.5 : float32
    %v = fed.value_at_clients(%c) : (float32 -> float32@CLIENTS)
    %n = fedc.constant 4 : int32
    %max = fed.value_at_server(%n) : (int32 -> int32@SERVER)
    %fn = fedc.lambda(%a: <float32[5],int32>) -> float32[5] {
      %0 = fedc.select %a[0] : float32[5]
      fedc.return %0
    }
    %s = fed.select(%keys, %max, %t, %fn) : (<{int32[?]}@CLIENTS,int32@SERVER,float32[5]@SERVER,(<float32[5],int32> -> float32[5])> -> {float32[5]*}@CLIENTS)
    fedc.return %s
  }
}
"""
    module = ir.parse_module(text)
    cost = communication_cost(module)
    assert str(cost.broadcast) == "20*k0 + 4"
    assert str(cost.upload) == "4*k0"
    assert "number of keys" in cost["f"].legend["k0"]


def test_analyses_reject_what_is_not_a_module():
    with pytest.raises(FedcError, match="an analysis needs a fedc.ir.Module, not str"):
        privacy_report("not a module")
    with pytest.raises(FedcError, match="an analysis needs a fedc.ir.Module, not .*Computation"):
        communication_cost(fedc.federated_computation(lambda: fedc.federated_value(1, fedc.SERVER)))
    with pytest.raises(FedcError, match="no computation @nope"):
        communication_cost(fed.load(EXAMPLES / "temperature.fed"), "nope")


# --------------------------------------------------------------------------
# Any verified IR


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(strategies.ir_modules())
def test_analyses_work_on_any_verified_module(module):
    privacy = privacy_report(module)
    cost = communication_cost(module)
    assert privacy.text() and cost.text()
    assert len(privacy.computations) == len(cost.computations) == len(module)
    for computation in cost.computations:
        assert all(t.direction in ("broadcast", "upload") for t in computation.transfers)
        # Every unknown a size uses is explained.
        for t in computation.transfers:
            assert set(t.bytes.symbols) <= set(computation.legend)
    for flow in privacy.flows:
        assert flow.path[-1].endswith(f"({flow.intrinsic})") or flow.intrinsic in flow.path[-1]


def test_an_empty_struct_argument():
    from fedc.ir import building_blocks as bb
    from fedc.ir.module import Module

    placed = bb.Call(bb.Intrinsic("federated_value_at_clients", "(<> -> <>@CLIENTS)"), bb.Struct([]))
    module = Module("m", [("c0", placed)])
    assert privacy_report(module).flows == []
    assert communication_cost(module).broadcast == 0


def test_aggregate_uploads_the_accumulator():
    module = load("""
computation agg(v: {float32[3]}@CLIENTS) -> float32[3]@SERVER {
  return federated_aggregate(v, <[0.0, 0.0, 0.0], 0>, fn(a, x) -> <a[0] + x, a[1] + 1>,
                             fn(a, b) -> <a[0] + b[0], a[1] + b[1]>, fn(a) -> a[0] / cast(a[1], dtype=float32))
}
""")
    [transfer] = communication_cost(module)["agg"].transfers
    assert (transfer.intrinsic, transfer.what, int(transfer.bytes)) == ("federated_aggregate", "accumulator", 12 + 4)
    [flow] = privacy_report(module).flows
    assert (flow.source, flow.intrinsic, flow.secure) == ("v", "federated_aggregate", False)


def test_fedavg_through_fusion_and_secure_aggregation(fedavg):
    pipeline = ["inline", "call-dominant", "fuse-map-mean", "insert-secure-aggregation{clip=4.0}"]
    fused = passes.run(fedavg, ",".join(pipeline[:3])).module
    # One aggregation of the clients' accumulators instead of two means.
    [flow] = privacy_report(fused, "next").flows
    assert flow.source == "federated_dataset" and flow.intrinsic == "federated_aggregate"
    assert set(flow.reaches) == {"result.weights", "result.loss"}
    assert communication_cost(fused, "next").broadcast == 31400
    result = passes.run(fused, "insert-secure-aggregation{clip=4.0},privacy-report{require-secure=true}")
    report = privacy_report(result.module, "next")
    assert report.plain_flows == [] and report.secure_flows
    assert result.statistics[-1][1]["plain-flows"] == 0


def test_a_mapreduce_form_is_analysed_as_the_round_it_runs(fedavg):
    pipeline = ["inline", "call-dominant", "fuse-map-mean", "insert-secure-aggregation{clip=4.0}", "lower-to-mapreduce"]
    form = passes.run(fedavg, ",".join(pipeline)).module
    report = privacy_report(form)
    [round_] = [c for c in report.computations if c.federated]
    assert round_.note == analysis.MAPREDUCE_NOTE
    # Only the secure sums carry client data: the plain aggregation of the form is empty.
    assert [f.intrinsic for f in round_.flows] == ["federated_secure_sum_bitwidth"]
    assert "(the MapReduce form, analysed as the round it runs)" in report.text()
    cost = communication_cost(form)
    assert cost.broadcast == 31400 and cost.upload != 0


def test_functions_it_cannot_see_into_are_reported_as_such():
    module = ir.parse_module("""
fedc.module @m {
  fedc.func @f(%arg: <g=({float32}@CLIENTS -> float32@SERVER),x={float32}@CLIENTS>) -> float32@SERVER {
    %r = fedc.call %arg.g(%arg.x) : float32@SERVER
    fedc.return %r
  }
}
""")
    [flow] = privacy_report(module).flows
    assert (flow.source, flow.intrinsic, flow.secure) == ("x", "call %arg.g", False)
    cost = communication_cost(module)
    assert cost.upload == 0 and cost["f"].unknown == ("call %arg.g",)
    assert "not counted: call %arg.g (a function the analysis cannot see into)" in cost.text()


def test_a_cost_report_of_several_federated_computations_asks_which_one():
    t = parse("{float32}@CLIENTS")
    mean = ir.Lambda("x", t, ir.intrinsic_call("federated_mean", ir.Reference("x", t)))
    total = ir.Lambda("y", t, ir.intrinsic_call("federated_sum", ir.Reference("y", t)))
    report = communication_cost(ir.Module("two", [("mean", mean), ("total", total)]), None)
    with pytest.raises(FedcError, match=r"covers several computations: pick one with report\['name'\]"):
        report.upload
    assert report["mean"].upload == 4 and report["total"].upload == 4
