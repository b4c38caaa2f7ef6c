"""Generic rebuilding of IR trees: the one place that knows each node's children.

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
    children = list(children)
    old = list(node.children())
    if len(children) != len(old):
        raise ValueError(f"{type(node).__name__} has {len(old)} children, not {len(children)}")
    if all(a is b for a, b in zip(children, old)):
        return node
    loc = node.location
    if isinstance(node, bb.Selection):
        return bb.Selection(children[0], node.name, node.index, loc)
    if isinstance(node, bb.Struct):
        names = [n for n, _ in node.elements]
        return bb.Struct(list(zip(names, children)), node.python_container, loc)
    if isinstance(node, bb.Call):
        return bb.Call(children[0], children[1] if len(children) > 1 else None, loc)
    if isinstance(node, bb.Lambda):
        return bb.Lambda(node.parameter_name, node.parameter_type, children[0], loc)
    if isinstance(node, bb.Block):
        names = [n for n, _ in node.locals]
        return bb.Block(list(zip(names, children[:-1])), children[-1], loc)
    raise ValueError(f"{type(node).__name__} has no children to replace")


def rewrite(node: bb.Node, fn: Callable[[bb.Node], Optional[bb.Node]]) -> bb.Node:
    """Rebuilds ``node`` bottom-up; ``fn(rebuilt)`` may return a replacement (or None to keep it)."""
    children = list(node.children())
    if children:
        node = with_children(node, [rewrite(child, fn) for child in children])
    replacement = fn(node)
    return node if replacement is None else replacement


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
