"""Generic rebuilding of IR trees, from the children each node class declares (``child_fields``).

``with_children(node, children)`` rebuilds a node from new children (in the
order of ``node.children()``), keeping its location; ``rewrite(node, fn)``
rebuilds a tree bottom-up, letting ``fn`` replace each rebuilt node.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

from fedc.ir import building_blocks as bb
from fedc.ir.module import Module

__all__ = ["rename_symbols", "rewrite", "with_children"]


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


def merge_into(table: dict[str, bb.Node], module: Module, preferred: Optional[str] = None) -> str:
    """Adds ``module``'s computations to ``table`` (symbol -> node), renaming on clashes.

    Identical computations under the same name are shared. Returns the name
    that ``preferred`` (a symbol of ``module``) has in ``table``.
    """
    renames: dict[str, str] = {}
    for symbol, node in module.items():
        target = symbol
        node = rename_symbols(node, renames)
        suffix = 1
        while target in table and table[target] != node:
            target = f"{symbol}_{suffix}"
            suffix += 1
        if target != symbol:
            renames[symbol] = target
        table[target] = node
    if preferred is None:
        return ""
    return renames.get(preferred, preferred)
