"""IR pictures (fedc.viz): dataflow graphs of computations, drawn with graphviz."""

import importlib.util
import pathlib
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import fedc
from fedc.limits import MAX_NESTING
import strategies
from fedc import ir, ops, viz
from fedc.errors import FedcError
from fedc.types import parse

ROOT = pathlib.Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------
# Computations to draw


def _temperature():
    @fedc.federated_computation(fedc.FederatedType(np.float32, fedc.CLIENTS))
    def get_average_temperature(sensor_readings):
        return fedc.federated_mean(sensor_readings)

    return get_average_temperature


@pytest.fixture(scope="module")
def temperature():
    return _temperature()


@pytest.fixture(scope="module")
def fedavg():
    spec = importlib.util.spec_from_file_location("fedavg_example", ROOT / "examples" / "fedavg.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def clipped_mean():
    """Lambdas passed to intrinsics, local ops, constants, a struct result."""

    @fedc.federated_computation(
        fedc.FederatedType(np.float32, fedc.CLIENTS), fedc.FederatedType(np.float32, fedc.SERVER)
    )
    def clipped_mean(values, bound):
        b = fedc.federated_broadcast(bound)
        clipped = fedc.federated_map(lambda pair: ops.minimum(pair[0], pair[1]), fedc.federated_zip((values, b)))
        total = fedc.federated_sum(clipped)
        count = fedc.federated_sum(fedc.federated_map(lambda v: 1.0, values))
        mean = fedc.federated_map(lambda s: s[0] / s[1], fedc.federated_zip((total, count)))
        return {"mean": mean, "count": count}

    return clipped_mean


def _svg_root(svg: str) -> ET.Element:
    root = ET.fromstring(svg.encode("utf-8"))
    assert root.tag.endswith("svg")
    return root


def _svg_text(svg: str) -> str:
    """All text drawn in the SVG, one string per <text> element."""
    return "\n".join("".join(t.itertext()) for t in _svg_root(svg).iter() if t.tag.endswith("text"))


def _cluster_sections(source: str) -> dict:
    """Top-level cluster name -> its DOT text (the fedavg picture has no nested clusters)."""
    parts = re.split(r"subgraph (cluster_\w+) \{", source)
    return {parts[i]: parts[i + 1].split("\n\t}")[0] for i in range(1, len(parts), 2)}


# --------------------------------------------------------------------------
# The tutorials' computations


def test_temperature_svg(temperature):
    svg = viz.to_svg(temperature.to_ir(), "get_average_temperature")
    text = _svg_text(svg)
    assert "federated_mean" in text
    assert "CLIENTS" in text and "SERVER" in text
    assert "{float32}@CLIENTS" in text  # the edge into federated_mean
    assert "float32@SERVER" in text
    assert "sensor_readings" in text and "result" in text


def test_fedavg_svg_shows_the_round(fedavg):
    svg = viz.to_svg(fedavg.next_fn.to_ir(), "next_fn")
    text = _svg_text(svg)
    for name in ("federated_broadcast", "federated_map", "federated_mean", "federated_zip_at_clients",
                 "federated_apply", "client_update_fn", "server_update_fn", "CLIENTS", "SERVER"):
        assert name in text, name
    # The struct parameter of placed values is split into its elements.
    assert "server_weights" in text and "federated_dataset" in text
    # Edges carry the types of the values flowing, in TFF notation.
    assert "{<float32[784,10],float32[10]>}@CLIENTS" in text
    assert "<float32[784,10],float32[10]>@SERVER" in text
    # Struct packing is folded into the edges into the zip.
    assert "as [0]" in text and "as [1]" in text


def test_fedavg_nodes_sit_in_their_placement_clusters(fedavg):
    source = viz.to_graphviz(fedavg.next_fn.to_ir(), fedavg.next_fn.name).source
    clusters = _cluster_sections(source)
    assert set(clusters) == {"cluster_server", "cluster_clients", "cluster_local"}
    assert "federated_broadcast" in clusters["cluster_clients"]
    assert "federated_map" in clusters["cluster_clients"]
    assert "federated_dataset" in clusters["cluster_clients"]
    assert "federated_mean" in clusters["cluster_server"]
    assert "server_weights" in clusters["cluster_server"]
    assert "client_update_fn" in clusters["cluster_local"]
    # Intrinsics are drawn unlike local computations.
    mean_line = next(line for line in source.splitlines() if "<b>federated_mean</b>" in line)
    tf_line = next(line for line in source.splitlines() if "client_update_fn<br/>" in line)
    assert "bold" in mean_line and "component" in tf_line
    # No selection node: the parameter's elements feed the intrinsics directly.
    assert "select" not in source


def _graph_source(computation) -> str:
    return viz.to_graphviz(computation.to_ir(), computation.name).source


def test_dot_source_is_deterministic(fedavg):
    first = viz.to_graphviz(fedavg.next_fn.to_ir()).source
    assert viz.to_graphviz(fedavg.next_fn.to_ir()).source == first
    assert viz.to_graphviz(fedavg.next_fn.to_ir(), fedavg.next_fn.name).source == first
    # Two traces of the same function draw the same picture.
    assert _graph_source(_temperature()) == _graph_source(_temperature())


def test_edge_label_override(fedavg):
    seen = []

    def bytes_per_client(t):
        seen.append(t)
        return f"COST[{len(str(t))}]"

    graph = viz.to_graphviz(fedavg.next_fn.to_ir(), fedavg.next_fn.name, edge_label=bytes_per_client)
    assert fedc.FederatedType(fedavg.model_weights_type, fedc.SERVER) in seen
    assert all(isinstance(t, fedc.Type) for t in seen)
    assert graph.source.count("COST[") == len(seen)
    svg = viz.to_svg(fedavg.next_fn.to_ir(), "next_fn", edge_label=bytes_per_client)
    assert "COST[" in _svg_text(svg)
    # An empty label leaves the edge bare (the slot names stay).
    bare = viz.to_graphviz(fedavg.next_fn, edge_label=lambda t: "").source
    assert "@CLIENTS</font>" in bare  # node subtitles still show types
    assert "as [0]" in bare


def test_title(temperature):
    source = viz.to_graphviz(temperature).source
    assert "@get_average_temperature : ({float32}@CLIENTS -&gt; float32@SERVER)" in source
    assert "My picture" in viz.to_graphviz(temperature, title="My picture").source
    assert "labelloc" not in viz.to_graphviz(temperature, title="").source


def test_png_renders(fedavg, tmp_path):
    path = viz.render(fedavg.next_fn.to_ir(), "next_fn", tmp_path / "round.png", "png")
    assert path.read_bytes().startswith(PNG_MAGIC)
    # The format follows the suffix when not given.
    viz.render(fedavg.next_fn.to_ir(), "next_fn", tmp_path / "round.svg")
    _svg_root((tmp_path / "round.svg").read_text("utf-8"))
    viz.render(fedavg.next_fn.to_ir(), None, tmp_path / "round.dot")
    assert (tmp_path / "round.dot").read_text("utf-8") == viz.to_graphviz(fedavg.next_fn.to_ir(), fedavg.next_fn.name).source


class _Formatter:
    """The part of IPython's display formatter that an extension uses."""

    def __init__(self):
        self.functions = {}

    def for_type(self, cls, fn):
        self.functions[cls] = fn

    def pop(self, cls, default=None):
        return self.functions.pop(cls, default)


def test_notebook_extension_draws_computations(temperature):
    from types import SimpleNamespace

    from fedc import notebook

    formatter = _Formatter()
    ipython = SimpleNamespace(display_formatter=SimpleNamespace(formatters={"image/svg+xml": formatter}))
    notebook.load_ipython_extension(ipython)
    svg = formatter.functions[fedc.Computation](temperature)
    assert isinstance(svg, str)
    assert "federated_mean" in _svg_text(svg)
    notebook.unload_ipython_extension(ipython)
    assert fedc.Computation not in formatter.functions


# --------------------------------------------------------------------------
# Without graphviz's dot program


@pytest.fixture
def no_dot(monkeypatch, tmp_path):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


@pytest.mark.parametrize("fmt", ["svg", "png"])
def test_missing_dot_says_what_to_install(temperature, no_dot, tmp_path, fmt):
    with pytest.raises(FedcError) as info:
        viz.render(temperature.to_ir(), None, tmp_path / f"t.{fmt}", fmt)
    message = str(info.value)
    assert message == viz.MISSING_DOT
    assert "graphviz's 'dot' program is not installed" in message
    assert "apt-get install graphviz" in message and "brew install graphviz" in message
    assert "conda install graphviz" in message
    with pytest.raises(FedcError, match="apt-get install graphviz"):
        viz.to_svg(temperature.to_ir())


def test_missing_dot_via_graphviz_exception(temperature, monkeypatch):
    import graphviz

    def raise_not_found(*args, **kwargs):
        raise graphviz.ExecutableNotFound(["dot", "-Tsvg"])

    monkeypatch.setattr(graphviz.Digraph, "pipe", raise_not_found)
    with pytest.raises(FedcError, match="install graphviz"):
        viz.to_svg(temperature.to_ir())


def test_dot_source_needs_no_binary(temperature, no_dot, tmp_path):
    path = viz.render(temperature.to_ir(), None, tmp_path / "t.dot", "dot")
    assert "federated_mean" in path.read_text("utf-8")


def test_notebook_picture_without_dot_warns_instead_of_raising(temperature, no_dot):
    from fedc import notebook

    with pytest.warns(UserWarning, match="install graphviz"):
        assert notebook.svg(temperature) is None


# --------------------------------------------------------------------------
# Shapes of IR


def test_lambdas_local_ops_and_struct_results(clipped_mean):
    source = viz.to_graphviz(clipped_mean).source
    # Each lambda given to an intrinsic has its own cluster, ending in a "λ x" node.
    assert source.count("subgraph cluster_lambda") == 3
    assert "<i>λ x</i>" in source
    for op in ("minimum", "divide"):
        assert re.search(rf"label=<{op}[<>]", source), op
    assert "federated_zip_at_server" in source
    # The result struct is packed on the edges into the result node.
    assert "as .mean" in source and "as .count" in source
    # Selections inside the lambdas are folded into edges.
    assert "[0] as [0]" in source
    _svg_root(viz.to_svg(clipped_mean.to_ir()))


def test_computation_without_parameter_and_non_lambda_entries(fedavg):
    module = fedavg.initialize_fn.to_ir()
    source = viz.to_graphviz(module).source
    assert "federated_value_at_server" in source and "server_init" in source
    # A module entry that is a compiled TF block, not a lambda.
    source = viz.to_graphviz(fedavg.next_fn.to_ir(), "client_update_fn").source
    assert "client_update_fn" in source and "result" in source


def test_applied_lambda_block_and_literals():
    f32 = fedc.TensorType(np.float32)
    clients = fedc.FederatedType(np.float32, fedc.CLIENTS)
    add = ir.intrinsic_call("add", ir.Struct([ir.Reference("y", f32), ir.Literal(np.float32(0.5))]))
    applied = ir.Call(ir.Lambda("y", f32, add), ir.Literal(np.array([1.0, 2.0], np.float32).sum()))
    body = ir.Block(
        [("c", applied), ("d", ir.Data("file://clients.csv", clients))],
        ir.Struct([("c", ir.Reference("c", f32)), ("d", ir.Reference("d", clients))]),
    )
    module = ir.Module("m", [("f", ir.Lambda(None, None, body))])
    ir.verify(module)
    source = viz.to_graphviz(module).source
    assert "λ y (applied)" in source
    assert "file://clients.csv" in source
    assert "<b>add</b>" not in source and re.search(r"label=<add[<>]", source)
    assert re.search(r"label=<0\.5<br/>", source)
    _svg_root(viz.to_svg(module))


def test_calls_of_module_computations():
    clients = fedc.FederatedType(np.float32, fedc.CLIENTS)
    server = fedc.FederatedType(np.float32, fedc.SERVER)
    mean = ir.Lambda("x", clients, ir.intrinsic_call("federated_mean", ir.Reference("x", clients)))
    caller = ir.Lambda("v", clients, ir.Call(ir.SymbolRef("avg", mean.type_signature), ir.Reference("v", clients)))
    module = ir.Module("m", [("avg", mean), ("main", caller)])
    ir.verify(module)
    source = viz.to_graphviz(module).source  # the last computation by default
    assert "@avg" in source and "federated_mean" not in source
    assert str(server) in source


def test_a_computation_may_be_given_directly(temperature):
    assert viz.to_graphviz(temperature).source == viz.to_graphviz(temperature.to_ir(), temperature.name).source
    _svg_root(viz.to_svg(temperature))


def test_deep_ir_draws():
    f32 = fedc.TensorType(np.float32)
    node = ir.Reference("x", f32)
    adds = 0
    while node.depth + 3 < MAX_NESTING:  # as deep as fedc lets IR nest
        node = ir.intrinsic_call("add", ir.Struct([node, ir.Literal(np.float32(1))]))
        adds += 1
    source = viz.to_graphviz(ir.Module("m", [("f", ir.Lambda("x", f32, node))])).source
    assert source.count("label=<add<br/>") == 0 and source.count("label=<add>") == adds > 300


def test_user_errors_are_fedc_errors(temperature, tmp_path):
    with pytest.raises(FedcError, match="no computation @nope"):
        viz.to_graphviz(temperature.to_ir(), "nope")
    with pytest.raises(FedcError, match="no computation to draw"):
        viz.to_graphviz(ir.Module("empty"))
    with pytest.raises(FedcError, match="svg, png, dot"):
        viz.render(temperature.to_ir(), None, tmp_path / "t.gif")
    with pytest.raises(FedcError, match="draws a fedc.ir.Module"):
        viz.to_graphviz("not a module")
    with pytest.raises(FedcError, match="cannot write"):
        viz.render(temperature.to_ir(), None, tmp_path / "missing-dir" / "t.dot")


def test_long_types_are_shortened_keeping_the_placement():
    t = parse("{<<float32[?,784],int32[?,1]>*,<float32[784,10],float32[10]>>}@CLIENTS")
    short = viz._short_type(t)
    assert len(short) <= viz.EDGE_LABEL_WIDTH
    assert short.startswith("{<<float32[?,784],") and short.endswith(">}@CLIENTS") and "…" in short
    assert viz._short_type(parse("{float32}@CLIENTS")) == "{float32}@CLIENTS"
    f = parse("(<tf_dataset=<float32[?,784],int32[?,1]>*,server_weights=<float32[784,10],float32[10]>> "
              "-> <float32[784,10],float32[10]>)")
    assert viz._short_type(f) == "(<…> -> <float32[784,10],float32[10]>)"


def test_import_fedc_does_not_import_graphviz():
    code = "import sys, fedc, fedc.viz; assert 'graphviz' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# --------------------------------------------------------------------------
# Any verified IR


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(strategies.ir_modules())
def test_random_modules_draw(module):
    for symbol in module:
        graph = viz.to_graphviz(module, symbol)
        assert graph.source == viz.to_graphviz(module, symbol).source
    # The last computation also renders to well-formed SVG (labels are escaped right).
    _svg_root(viz.to_svg(module))
