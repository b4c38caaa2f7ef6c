"""The privacy report: every way a client value reaches the server.

:func:`privacy_report` builds the dataflow graph of each computation
(:mod:`fedc.passes.dataflow`) and lists every way a CLIENTS-placed value (a
client parameter, client data, a value computed at the clients by
``federated_eval_at_clients``) reaches the server: for each client source and
each intrinsic that carries a value across to the server (an aggregation, a
secure sum or the client keys of a ``federated_select``), one :class:`Flow`
with the carrier's source location and a path from the source to the carrier.

The pass ``privacy-report`` runs it and records the number of flows as
statistics (``plain-flows``, ``secure-flows``); ``fedc compile --report
privacy`` prints :meth:`PrivacyReport.text`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from fedc.errors import FedcError, SourceLocation
from fedc.ir.module import Module
from fedc.types import Type

from .crossings import natural_key
from .dataflow import MAPREDUCE_NOTE, Dataflow, analysed_symbols, is_federated_code
from .manager import Option, PassContext, register

__all__ = [
    "ComputationPrivacy",
    "Flow",
    "PrivacyReport",
    "privacy_report",
]


# --------------------------------------------------------------------------
# Privacy


@dataclasses.dataclass(frozen=True)
class Flow:
    """One way a client value reaches the server.

    ``source`` names the client value (a parameter such as ``federated_dataset``,
    ``data 'uri'``, or the ``federated_eval_at_clients`` that computed it);
    ``intrinsic`` is what carries it to the server (``federated_mean``,
    ``federated_secure_sum_bitwidth``, ``federated_select`` — its keys —, or
    ``call %f`` for a function the analysis cannot see into); ``secure`` says
    whether that intrinsic is a secure one; ``location`` is the carrier's
    source location, ``local`` the local it binds; ``path`` the steps from the
    source to the carrier; ``reaches`` the results the carried value flows into.
    """

    computation: str
    source: str
    source_type: Type
    intrinsic: str
    secure: bool
    location: Optional[SourceLocation]
    local: Optional[str]
    path: tuple
    reaches: tuple = ()
    via: str = ""  # the computation the carrier is in, when not ``computation`` itself

    @property
    def kind(self) -> str:
        return "secure" if self.secure else "plain"

    def text(self) -> str:
        where = f" at {self.location}" if self.location else ""
        local = f" (%{self.local})" if self.local else ""
        via = f" in @{self.via}" if self.via and self.via != self.computation else ""
        what = " (its keys)" if self.intrinsic.endswith("select") else ""
        return f"{self.kind}: {self.source} reaches the server through {self.intrinsic}{local}{what}{via}{where}"


@dataclasses.dataclass
class ComputationPrivacy:
    """The flows of one computation, with its dataflow graph."""

    symbol: str
    location: Optional[SourceLocation]
    federated: bool
    flows: list
    graph: Any = None
    sources: tuple = ()
    note: str = ""  # e.g. that this is the round a MapReduce form runs

    @property
    def plain_flows(self) -> list:
        return [f for f in self.flows if not f.secure]

    @property
    def secure_flows(self) -> list:
        return [f for f in self.flows if f.secure]


@dataclasses.dataclass
class PrivacyReport:
    """Every path by which a client value reaches the server, computation by computation."""

    module: str
    computations: list

    def __getitem__(self, symbol: str) -> ComputationPrivacy:
        for c in self.computations:
            if c.symbol == symbol:
                return c
        raise KeyError(symbol)

    @property
    def flows(self) -> list:
        return [f for c in self.computations for f in c.flows]

    @property
    def plain_flows(self) -> list:
        return [f for f in self.flows if not f.secure]

    @property
    def secure_flows(self) -> list:
        return [f for f in self.flows if f.secure]

    def text(self) -> str:
        lines = [f"privacy report for @{self.module}: client values that reach the server"]
        local = [c.symbol for c in self.computations if not c.federated]
        for c in self.computations:
            if not c.federated:
                continue
            where = f" ({c.note or c.location})" if c.note or c.location else ""
            if not c.flows:
                lines.append(f"@{c.symbol}{where}: no client value reaches the server")
                continue
            plain, secure = len(c.plain_flows), len(c.secure_flows)
            count = len(c.flows)
            lines.append(f"@{c.symbol}{where}: {count} flow{'s' if count != 1 else ''} "
                         f"({plain} plain, {secure} secure)")
            for index, flow in enumerate(c.flows, 1):
                lines.append(f"  {index}. {flow.text()}")
                lines.append(f"     path: {' -> '.join(flow.path)}")
                if flow.reaches:
                    lines.append(f"     reaches: {', '.join(flow.reaches)}")
        if local:
            lines.append(f"local computations (no placed values): {', '.join('@' + s for s in local)}")
        if not self.computations:
            lines.append("(the module has no computations)")
        total = len(self.flows)
        lines.append(f"total: {total} flow{'s' if total != 1 else ''} "
                     f"({len(self.plain_flows)} plain, {len(self.secure_flows)} secure)")
        return "\n".join(lines) + "\n"


def _path_text(graph, nodes: list) -> tuple:
    steps = []
    for index, node in enumerate(nodes):
        text = graph.nodes[node]["label"]
        if index + 1 < len(nodes):
            path = graph.edges[node, nodes[index + 1]].get("path", "")
            if path:
                text = f"{text}{path}" if " (" not in text else text.replace(" (", f"{path} (", 1)
        steps.append(text)
    return tuple(steps)


def _computation_privacy(module: Module, symbol: str) -> ComputationPrivacy:
    import networkx as nx

    node = module[symbol]
    if not is_federated_code(node):
        return ComputationPrivacy(symbol, node.location, False, [])
    flow = Dataflow(module, symbol).build(node)
    graph = flow.graph
    flows = []
    results = set(flow.results)
    for carrier in flow.carriers:
        carried_in = [u for u, _, data in graph.in_edges(carrier.node, data=True) if data["carried"]]
        if not carried_in:
            continue
        reaching = {}
        for u in carried_in:
            reaching[u] = nx.ancestors(graph, u) | {u}
        reaches = tuple(graph.nodes[r]["label"] for r in sorted(nx.descendants(graph, carrier.node) & results,
                                                               key=natural_key))
        attrs = graph.nodes[carrier.node]
        for source in flow.sources:
            starts = [u for u in carried_in if source in reaching[u]]
            if not starts:
                continue
            best = None
            for u in starts:
                path = nx.shortest_path(graph, source, u)
                if best is None or len(path) < len(best):
                    best = path
            flows.append(Flow(
                computation=symbol,
                source=graph.nodes[source]["label"],
                source_type=graph.nodes[source]["type"],
                intrinsic=carrier.intrinsic,
                secure=carrier.secure,
                location=attrs["location"],
                local=attrs.get("local"),
                path=_path_text(graph, best + [carrier.node]),
                reaches=reaches,
                via=attrs["computation"],
            ))
    return ComputationPrivacy(symbol, node.location, True, flows, graph,
                              tuple(graph.nodes[s]["label"] for s in flow.sources))


def privacy_report(module: Module, symbol: Optional[str] = None) -> PrivacyReport:
    """Every path by which a client value reaches the server, in each computation of ``module``
    (or only in ``symbol``)."""
    module, symbols, round_name = analysed_symbols(module, symbol)
    computations = [_computation_privacy(module, s) for s in symbols]
    for c in computations:
        if c.symbol == round_name:
            c.note = MAPREDUCE_NOTE
    return PrivacyReport(module.name, computations)


@register("privacy-report", options={
    "require-secure": Option(bool, False, "fail if a client value reaches the server other than securely"),
})
def privacy_report_pass(module: Module, ctx: PassContext, **options) -> Module:
    """Lists every path by which client values reach the server (an analysis; changes nothing).

    Statistics: ``plain-flows`` and ``secure-flows`` (client sources times the
    intrinsics that carry them to the server), ``computations-with-flows``.
    ``fedc compile --report privacy`` prints the report itself. With
    ``require-secure=true`` a plain flow is an error naming it.
    """
    report = privacy_report(module)
    ctx.stat("plain-flows", len(report.plain_flows))
    ctx.stat("secure-flows", len(report.secure_flows))
    ctx.stat("computations-with-flows", sum(1 for c in report.computations if c.flows))
    if options["require-secure"] and report.plain_flows:
        shown = "".join(f"\n  @{f.computation}: {f.text()}" for f in report.plain_flows[:10])
        more = f"\n  … and {len(report.plain_flows) - 10} more" if len(report.plain_flows) > 10 else ""
        raise FedcError(f"client values reach the server without secure aggregation "
                        f"(require-secure is set):{shown}{more}")
    return module

