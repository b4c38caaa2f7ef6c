"""Generic rebuilding of IR trees, from the children each node class declares (``child_fields``).

``with_children(node, children)`` rebuilds a node from new children (in the
order of ``node.children()``), keeping its location; ``rewrite(node, fn)``
rebuilds a tree bottom-up, letting ``fn`` replace each rebuilt node.
"""

from __future__ import annotations

from typing import Callable, Collection, Optional, Sequence

from fedc.ir import building_blocks as bb
from fedc.ir.module import Module

__all__ = ["SymbolTable", "rename_symbols", "rewrite", "with_children"]


def with_children(node: bb.Node, children: Sequence[bb.Node]) -> bb.Node:
    """``node`` rebuilt with ``children`` in place of ``node.children()``."""
    return node.with_children(children)


def rewrite(node: bb.Node, fn: Callable[[bb.Node], Optional[bb.Node]]) -> bb.Node:
    """Rebuilds ``node`` bottom-up; ``fn(rebuilt)`` may return a replacement (or None to keep it)."""
    # Iterative post-order (children left to right, then the node), so deep trees need no deep stack.
    results: list[bb.Node] = []
    work: list[tuple[bb.Node, Optional[int]]] = [(node, None)]
    while work:
        current, count = work.pop()
        if count is None:
            children = current.children()
            work.append((current, len(children)))
            work.extend((child, None) for child in reversed(children))
            continue
        if count:
            rebuilt = results[-count:]
            del results[-count:]
            current = current.with_children(rebuilt)
        replacement = fn(current)
        results.append(current if replacement is None else replacement)
    return results[0]


def rename_symbols(node: bb.Node, renames: dict[str, str]) -> bb.Node:
    """``node`` with every ``@old`` symbol reference renamed to ``@new``."""
    if not renames:
        return node

    def rename(n: bb.Node):
        if isinstance(n, bb.SymbolRef) and n.name in renames:
            return bb.SymbolRef(renames[n.name], n.type_signature, n.location)
        return None

    return rewrite(node, rename)


class SymbolTable:
    """Computations by symbol, each added one given a name no other computation has.

    ``add(base, node)`` names ``node`` ``base`` if that is free, else the next free
    ``base_1``, ``base_2``, …; a node equal to one already added under the same base
    shares its entry. Names in ``reserved`` are never given out. Each ``add`` costs
    O(1) dict operations (nodes hash in O(1)), so adding N computations that share
    a name stays O(N).
    """

    def __init__(self, reserved: Collection[str] = ()):
        self.entries: dict[str, bb.Node] = {}
        self._reserved = set(reserved)
        self._shared: dict[tuple[str, bb.Node], str] = {}
        self._next_suffix: dict[str, int] = {}

    def _taken(self, name: str) -> bool:
        return name in self.entries or name in self._reserved

    def add(self, base: str, node: bb.Node) -> str:
        """Adds ``node`` (or finds its equal under ``base``); returns its name."""
        existing = self._shared.get((base, node))
        if existing is not None:
            return existing
        name = base
        if self._taken(name):
            suffix = self._next_suffix.get(base, 1)
            while self._taken(f"{base}_{suffix}"):
                suffix += 1
            name = f"{base}_{suffix}"
            self._next_suffix[base] = suffix + 1
        self.put(name, node)
        self._shared[(base, node)] = name
        return name

    def put(self, name: str, node: bb.Node) -> None:
        """Adds ``node`` under exactly ``name`` (a reserved one included), which must be free."""
        if name in self.entries:
            raise ValueError(f"@{name} is already in the table")
        self.entries[name] = node

    def merge(self, module: Module) -> dict[str, str]:
        """Adds ``module``'s computations in order, renaming references on clashes.

        Returns the name each symbol of ``module`` has in the table.
        """
        names: dict[str, str] = {}
        renames: dict[str, str] = {}
        for symbol, node in module.items():
            names[symbol] = self.add(symbol, rename_symbols(node, renames))
            if names[symbol] != symbol:
                renames[symbol] = names[symbol]
        return names

    def module(self, name: str) -> Module:
        return Module(name, list(self.entries.items()))
