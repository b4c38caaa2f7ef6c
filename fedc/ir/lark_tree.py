"""How lark builds the parse tree of textual IR (``grammar/ir.lark``) for :mod:`fedc.ir.parser`.

This module is the one place that knows lark's tree internals (the slots its
``propagate_positions`` writes, its inline ``transformer=`` callbacks), so a
change of lark touches only this file. lark is imported on first use.
"""

from __future__ import annotations

import functools
from typing import Any, Optional

from fedc.errors import FedcError, ParseError, SourceLocation

__all__ = ["STARTS", "InlineBuilder", "ir_parser", "position", "tree_class"]

# The grammar's start rules: a whole module, or one node (parse_node).
STARTS = ("module_text", "node_text")


@functools.lru_cache(maxsize=None)
def ir_parser():
    """The LALR parser of ``grammar/ir.lark``, building the tree (see :class:`InlineBuilder`) as it parses."""
    from fedc.grammar import load

    return load("ir", start=STARTS, transformer=InlineBuilder())

def position(item: Any) -> Optional[tuple[int, int]]:
    import lark

    if isinstance(item, lark.Token):
        if item.line is not None:
            return item.line, item.column
        return None
    if isinstance(item, lark.Tree):
        meta = item.meta
        if not meta.empty:
            return meta.line, meta.column
        return None
    if isinstance(item, tuple):
        return item
    return None


# Lark builds the parse tree through the callbacks below as it parses (its inline
# ``transformer=``), so no tree of lark's own is kept: each node is a _Tree, its own
# meta (lark's Tree holds a Meta object and two dicts besides), and each type becomes
# a Type as soon as its `ty` is read, so its tokens go. A parse holds ~50 bytes per
# character of text, not ~150, and a long string token costs what the string does.


@functools.lru_cache(maxsize=None)
def tree_class():
    import lark

    class _Tree(lark.Tree):
        """A node of the parse tree, and its own ``meta``: where it starts and ends."""

        # lark.Tree's attributes, then what lark's propagate_positions writes to a meta.
        __slots__ = (
            "data", "children", "empty", "line", "column", "start_pos", "end_line", "end_column", "end_pos",
            "container_line", "container_column", "container_start_pos",
            "container_end_line", "container_end_column", "container_end_pos",
        )

        def __init__(self, data: str, children: list):
            self.data = data
            self.children = children
            self.empty = True

        @property
        def meta(self):
            return self

    return _Tree


class InlineBuilder:
    """The callbacks lark calls as it reduces each rule of ``grammar/ir.lark``.

    A type (the rule ``ty``) is turned into a :class:`~fedc.types.Type` by
    :mod:`fedc.types`' transformer as soon as it is parsed; an error there is a
    ParseError without a file name, which the parser locates in its text.
    Every other rule becomes a node of the tree.
    """

    def __init__(self):
        import lark
        from lark.visitors import merge_transformers

        from fedc.types import type_transformer

        self._tree = tree_class()
        self._types = merge_transformers(lark.Transformer(), types=type_transformer(None, None))

    def __default__(self, data, children, meta):
        return self._tree(data, children)

    def ty(self, children):
        import lark

        (tree,) = children
        try:
            t = self._types.transform(tree)
        except lark.exceptions.VisitError as e:
            original = e.orig_exc
            if isinstance(original, ParseError):
                raise original from None
            if isinstance(original, FedcError):
                line, column = position(e.obj) or (1, 1)
                raise ParseError(original.message, SourceLocation(None, line, column)) from None
            raise
        return self._tree("ty", [t])
