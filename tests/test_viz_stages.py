"""IR pictures with communication costs on their edges, and the page of pictures across passes."""

import base64
import html.parser
import pathlib
import re
import xml.etree.ElementTree as ET

import pytest
from hypothesis import HealthCheck, given, settings

import strategies

from fedc import viz
from fedc.stages import Stage, pass_stages, render_stages, stages_html
from fedc.errors import FedcError
from fedc.frontend import fed
from fedc.ir import building_blocks as bb
from fedc.ir.module import Module

ROOT = pathlib.Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
DATA_URI = re.compile(r'<img src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)" alt="([^"]*)">')


@pytest.fixture(scope="module")
def fedavg():
    return fed.load(EXAMPLES / "fedavg.fed")


@pytest.fixture(scope="module")
def temperature():
    return fed.load(EXAMPLES / "temperature.fed")


def edge_labels(source: str) -> list[str]:
    """The text of the label nodes that viz puts on edges (``e0 [label=<…>``)."""
    return [re.sub(r"<br/>", "\n", m) for m in re.findall(r"\be\d+ \[label=<(.*?)> fontcolor", source)]


# --------------------------------------------------------------------------
# Costs on edges


def test_edges_between_server_and_clients_show_their_bytes(fedavg):
    source = viz.to_graphviz(fedavg, "next", costs=True).source
    labels = edge_labels(source)
    crossing = [label for label in labels if "B per client" in label]
    assert sorted(line.split("\n")[0] for line in crossing) == [
        "↑ 31400 B per client", "↑ 4 B per client", "↓ 31400 B per client"]
    # The bytes come with the type; edges that stay on one side keep their type label only.
    assert "↓ 31400 B per client\n&lt;float32[784,10],float32[10]&gt;@SERVER" in crossing
    others = [label for label in labels if "B per client" not in label]
    assert others and any("@CLIENTS" in label for label in others)
    # The caption gives the totals per client and round.
    assert "per client and round: ↓ 31400 B from the server, ↑ 31404 B to the server" in source
    # Crossing edges are drawn thicker, and their tooltip says the cost.
    assert 'penwidth=2.2 tooltip="{float32}@CLIENTS: ↑ 4 B per client"' in source


def test_without_costs_the_picture_is_unchanged(fedavg):
    plain = viz.to_graphviz(fedavg, "next").source
    assert "B per client" not in plain and "per client and round" not in plain
    assert viz.to_graphviz(fedavg, "next", costs=False).source == plain


def test_symbolic_costs_and_their_legend_in_the_caption():
    module = fed.parse("""
computation round(model: float32[?,10]@SERVER, x: {float32[?,10]}@CLIENTS) -> float32[?,10]@SERVER {
  let m = federated_broadcast(model)
  return federated_sum(x)
}
""", "t.fed")
    source = viz.to_graphviz(module, "round", costs=True).source
    labels = edge_labels(source)
    assert any(label.startswith("↓ 40*d0 B per client") for label in labels)
    assert any(label.startswith("↑ 40*d1 B per client") for label in labels)
    assert "d0 = dimension 0 of float32[?,10] in federated_broadcast %m" in source
    svg = viz.to_svg(module, "round", costs=True)
    assert ET.fromstring(svg).tag.endswith("svg") and "40*d0" in svg


def test_secure_sums_are_marked():
    module = fed.parse("""
computation count(flags: {int32}@CLIENTS) -> int32@SERVER {
  return federated_secure_sum_bitwidth(flags, 8)
}
""", "t.fed")
    labels = edge_labels(viz.to_graphviz(module, costs=True).source)
    assert any("↑ 4 B per client secure" in label.split("\n") for label in labels)


# --------------------------------------------------------------------------
# The stages page


class _Checker(html.parser.HTMLParser):
    """Checks that tags nest and close, and collects the sections."""

    VOID = {"meta", "img", "br", "link", "input", "hr"}

    def __init__(self):
        super().__init__()
        self.stack: list[str] = []
        self.sections = 0
        self.doctype = False

    def handle_decl(self, decl):
        self.doctype = decl.lower() == "doctype html"

    def handle_starttag(self, tag, attrs):
        if tag == "section":
            self.sections += 1
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1] if self.stack else None}>"
        self.stack.pop()


def check_html(text: str) -> _Checker:
    checker = _Checker()
    checker.feed(text)
    checker.close()
    assert checker.doctype and checker.stack == []
    return checker


def test_stages_page_has_the_input_and_one_panel_per_pass(temperature, tmp_path):
    path = render_stages(temperature, "verify,strip-locations", tmp_path / "stages.html", costs=True)
    text = path.read_text(encoding="utf-8")
    checker = check_html(text)
    assert checker.sections == 3
    titles = re.findall(r'<h2><span class="step">(\d+)</span> ([^<]*?) ?(?:<span class="badge (\w+)">|</h2>)', text)
    assert titles == [("0", "input", ""), ("1", "verify", "same"), ("2", "strip-locations", "changed")]
    # Each pass's statistics are in its panel.
    panels = text.split('<section class="stage"')[1:]
    assert "computations-verified</th><td>1<" in panels[1]
    assert "locations-removed</th><td>" in panels[2]
    # One picture per stage, each an SVG in a data URI (no inline <svg>, whose ids would clash).
    images = DATA_URI.findall(text)
    assert len(images) == 3 and "<svg" not in text
    for data, alt in images:
        svg = base64.b64decode(data).decode("utf-8")
        assert ET.fromstring(svg).tag.endswith("svg")
        assert "federated_mean" in svg and "B per client" in svg
        assert "@get_average_temperature" in alt
    assert 'loc(' in panels[0] and 'loc(' not in panels[2]  # the folded textual IR of each stage
    assert "<code>verify,strip-locations</code>" in text


def test_stages_of_fedavg_through_the_normalizing_passes(fedavg, tmp_path):
    from fedc import passes

    pipeline = ",".join(p for p in ("inline", "call-dominant", "verify") if p in passes.manager.PASS_MODULES)
    stages = pass_stages(fedavg, pipeline)
    assert [s.name for s in stages] == ["input"] + pipeline.split(",")
    page = stages_html(stages, "next")
    assert check_html(page).sections == len(stages)
    assert len(DATA_URI.findall(page)) == len(stages)


def test_a_stage_without_the_computation_says_so(temperature):
    empty = Module("temperature", [("other", bb.Literal(1.0))])
    stages = [Stage("input", temperature), Stage("drop", empty, {"dropped": 1}, 0.001, True)]
    page = stages_html(stages, "get_average_temperature")
    check_html(page)
    assert "@get_average_temperature is not in the module at this stage (it has @other)" in page
    assert len(DATA_URI.findall(page)) == 1


def test_stages_errors(temperature, tmp_path):
    with pytest.raises(FedcError, match="give a .html file"):
        render_stages(temperature, "verify", tmp_path / "x.svg")
    with pytest.raises(FedcError, match="unknown pass 'nope'"):
        render_stages(temperature, "nope", tmp_path / "x.html")
    with pytest.raises(FedcError, match="no computation @missing"):
        render_stages(temperature, "verify", tmp_path / "x.html", "missing")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(strategies.ir_modules())
def test_random_modules_draw_with_costs(module):
    for symbol in module:
        source = viz.to_graphviz(module, symbol, costs=True).source
        assert "per client and round" in source
    ET.fromstring(viz.to_svg(module, costs=True))  # labels are escaped right


def test_a_stage_in_mapreduce_form_draws_the_round(fedavg):
    pipeline = ["inline", "call-dominant", "fuse-map-mean", "lower-to-mapreduce"]
    stages = pass_stages(fedavg, ",".join(pipeline))
    page = stages_html(stages, "next", costs=True)
    check_html(page)
    assert "@next is now a MapReduce form" in page and "drawn as the round it runs" in page
    images = DATA_URI.findall(page)
    assert len(images) == len(stages)
    assert "federated_aggregate" in base64.b64decode(images[-1][0]).decode("utf-8")
