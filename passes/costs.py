"""Communication cost: the bytes each client receives and sends per round, from the types alone.

:func:`communication_cost` adds up the bytes each client receives from the
server per round (``federated_broadcast``, the results of ``federated_select``,
``federated_value_at_clients``) and the bytes it sends (the inputs of
aggregations and secure sums — for ``federated_aggregate`` the accumulator each
client folds its value into —, the keys of ``federated_select``), per intrinsic
call and in total. What one call moves, and its size, is
:mod:`fedc.passes.crossings`'; the per-computation walk is
:mod:`fedc.passes.dataflow`'s; :mod:`fedc.passes.analysis` gathers the analyses.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

from fedc.errors import FedcError, SourceLocation
from fedc.ir.module import Module

from .crossings import BROADCAST, UPLOAD, Bytes, Transfer, natural_key
from .dataflow import MAPREDUCE_NOTE, Dataflow, analysed_symbols, is_federated_code

__all__ = [
    "ComputationCost",
    "CostReport",
    "communication_cost",
]


@dataclasses.dataclass
class ComputationCost:
    """The communication of one computation (one round), per client."""

    symbol: str
    location: Optional[SourceLocation]
    federated: bool
    transfers: list[Transfer]
    legend: dict  # unknown -> where it comes from
    note: str = ""  # e.g. that this is the round a MapReduce form runs
    unknown: tuple = ()  # calls of functions the analysis cannot see into that may communicate

    def total(self, direction: str) -> Bytes:
        return sum((t.bytes for t in self.transfers if t.direction == direction), Bytes(0))

    @property
    def broadcast(self) -> Bytes:
        """Bytes each client receives from the server."""
        return self.total(BROADCAST)

    @property
    def upload(self) -> Bytes:
        """Bytes each client sends to the server."""
        return self.total(UPLOAD)

    def by_intrinsic(self, direction: str) -> dict[str, Bytes]:
        totals: dict[str, Bytes] = {}
        for t in self.transfers:
            if t.direction == direction:
                totals[t.intrinsic] = totals.get(t.intrinsic, Bytes(0)) + t.bytes
        return totals

    def text(self) -> str:
        where = f" ({self.note or self.location})" if self.note or self.location else ""
        unknown = [f"  not counted: {call} (a function the analysis cannot see into)" for call in self.unknown]
        if not self.transfers:
            return "\n".join([f"@{self.symbol}{where}: no communication between server and clients"]
                             + unknown) + "\n"
        lines = [f"@{self.symbol}{where}"] + unknown
        for direction, title in ((BROADCAST, "server -> client (broadcast)"), (UPLOAD, "client -> server (upload)")):
            items = [t for t in self.transfers if t.direction == direction]
            lines.append(f"  {title}: {self.total(direction)} bytes per client")
            if not items:
                continue
            width = max(len(str(t.bytes)) for t in items)
            for t in items:
                local = f" %{t.local}" if t.local else ""
                if t.what and t.what != "value":
                    local += f" ({t.what})"
                secure = " [secure]" if t.secure else ""
                via = f" in @{t.computation}" if t.computation != self.symbol else ""
                at = f" at {t.location}" if t.location else ""
                lines.append(f"    {str(t.bytes):>{width}}  {t.intrinsic}{local} : {t.type}{secure}{via}{at}")
            totals = self.by_intrinsic(direction)
            if len(items) > 1:
                lines.append("    by intrinsic: " + ", ".join(f"{k} {v}" for k, v in totals.items()))
        if self.legend:
            lines.append("  where")
            for name in sorted(self.legend, key=natural_key):
                lines.append(f"    {name} = {self.legend[name]}")
        return "\n".join(lines) + "\n"


@dataclasses.dataclass
class CostReport:
    """Bytes each client receives and sends per round, for each computation."""

    module: str
    computations: list

    def __getitem__(self, symbol: str) -> ComputationCost:
        for c in self.computations:
            if c.symbol == symbol:
                return c
        raise KeyError(symbol)

    def _single(self) -> ComputationCost:
        federated = [c for c in self.computations if c.federated]
        if len(self.computations) == 1:
            return self.computations[0]
        if len(federated) == 1:
            return federated[0]
        raise FedcError("this cost report covers several computations: pick one with report['name']")

    @property
    def broadcast(self) -> Bytes:
        """Bytes per client from the server (for a report of one computation)."""
        return self._single().broadcast

    @property
    def upload(self) -> Bytes:
        """Bytes per client to the server (for a report of one computation)."""
        return self._single().upload

    def text(self) -> str:
        lines = [f"communication cost per round for @{self.module} (bytes per client, from the types)"]
        local = [c.symbol for c in self.computations if not c.federated]
        body = "".join(c.text() for c in self.computations if c.federated)
        text = "\n".join(lines) + "\n" + body
        if local:
            text += f"local computations (no placed values): {', '.join('@' + s for s in local)}\n"
        return text


def _computation_cost(module: Module, symbol: str) -> ComputationCost:
    node = module[symbol]
    if not is_federated_code(node):
        return ComputationCost(symbol, node.location, False, [], {})
    flow = Dataflow(module, symbol).build(node)
    return ComputationCost(symbol, node.location, True, flow.transfers, dict(flow.unknowns.legend),
                           unknown=tuple(flow.opaque))


def communication_cost(module: Module, symbol: Optional[str] = None) -> CostReport:
    """Bytes broadcast to and uploaded by each client per round, for each computation of
    ``module`` (or only ``symbol``), per intrinsic call and in total."""
    module, symbols, round_name = analysed_symbols(module, symbol)
    computations = [_computation_cost(module, s) for s in symbols]
    for c in computations:
        if c.symbol == round_name:
            c.note = MAPREDUCE_NOTE
    return CostReport(module.name, computations)
