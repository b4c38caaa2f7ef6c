"""Helpers every pass uses: fresh names, free variables, renaming, substitution, use counts.

IR names are SSA: within one computation no name is bound twice (the verifier
checks it). Passes that copy or move code keep that true by renaming the
binders they introduce with :class:`Names`, which knows every name already in
use in a computation.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Callable, Iterable, Optional

from fedc.ir import building_blocks as bb
from fedc.ir.module import Module
from fedc.ir.transform import rewrite, with_children

__all__ = [
    "Names",
    "bound_names",
    "free_references",
    "map_computations",
    "reference_counts",
    "rename_bound",
    "substitute",
]


def bound_names(node: bb.Node) -> set[str]:
    """Every name a Lambda parameter or Block local binds inside ``node``."""
    names = set()
    for n in node.walk():
        if isinstance(n, bb.Lambda) and n.parameter_name is not None:
            names.add(n.parameter_name)
        elif isinstance(n, bb.Block):
            names.update(name for name, _ in n.locals)
    return names


def free_references(node: bb.Node) -> set[str]:
    """Names referenced in ``node`` but not bound inside it."""
    free: set[str] = set()

    def visit(n: bb.Node, bound: frozenset) -> None:
        if isinstance(n, bb.Reference):
            if n.name not in bound:
                free.add(n.name)
            return
        if isinstance(n, bb.Lambda):
            inner = bound | {n.parameter_name} if n.parameter_name else bound
            visit(n.result, inner)
            return
        if isinstance(n, bb.Block):
            inner = bound
            for name, value in n.locals:
                visit(value, inner)
                inner = inner | {name}
            visit(n.result, inner)
            return
        for child in n.children():
            visit(child, bound)

    visit(node, frozenset())
    return free


def reference_counts(node: bb.Node) -> Counter:
    """How many times each name is referenced in ``node`` (names are SSA, so no shadowing)."""
    return Counter(n.name for n in node.walk() if isinstance(n, bb.Reference))


class Names:
    """Fresh SSA names for one computation: ``names.fresh("mean")`` -> ``mean``, ``mean_1``, …"""

    def __init__(self, *nodes: bb.Node, taken: Iterable[str] = ()):
        self.used = set(taken)
        for node in nodes:
            self.used |= bound_names(node)
            self.used |= free_references(node)

    def fresh(self, base: str) -> str:
        base = re.sub(r"[^A-Za-z0-9_]", "_", base) or "v"
        if base[0].isdigit():
            base = "v" + base
        base = re.sub(r"_\d+$", "", base) or base
        if base not in self.used:
            self.used.add(base)
            return base
        n = 1
        while f"{base}_{n}" in self.used:
            n += 1
        name = f"{base}_{n}"
        self.used.add(name)
        return name


def substitute(node: bb.Node, replacements: dict[str, bb.Node]) -> bb.Node:
    """``node`` with free references to the given names replaced (names are SSA: no capture)."""
    if not replacements:
        return node

    def replace(n: bb.Node):
        if isinstance(n, bb.Reference) and n.name in replacements:
            return replacements[n.name]
        return None

    return rewrite(node, replace)


def rename_bound(node: bb.Node, names: Names) -> bb.Node:
    """A copy of ``node`` whose every binder gets a fresh name (for inlining a second copy)."""
    mapping: dict[str, str] = {}
    for old in sorted(bound_names(node)):
        mapping[old] = names.fresh(old)

    def visit(n: bb.Node) -> bb.Node:
        if isinstance(n, bb.Reference) and n.name in mapping:
            return bb.Reference(mapping[n.name], n.type_signature, n.location)
        if isinstance(n, bb.Lambda):
            result = visit(n.result)
            name = mapping.get(n.parameter_name, n.parameter_name)
            return bb.Lambda(name, n.parameter_type, result, n.location)
        if isinstance(n, bb.Block):
            new_locals = [(mapping.get(name, name), visit(value)) for name, value in n.locals]
            return bb.Block(new_locals, visit(n.result), n.location)
        children = list(n.children())
        if not children:
            return n
        return with_children(n, [visit(c) for c in children])

    return visit(node)


def map_computations(module: Module, fn: Callable[[str, bb.Node], Optional[bb.Node]]) -> Module:
    """A module with ``fn(symbol, node)`` applied to each computation (None keeps it)."""
    table = []
    for symbol, node in module.items():
        result = fn(symbol, node)
        table.append((symbol, node if result is None else result))
    return Module(module.name, table)
