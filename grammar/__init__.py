"""The lark grammars of fedc: the type syntax, the textual IR, the .fed language.

Grammars are loaded lazily and cached; ``load("types")`` returns a LALR parser
for ``grammar/types.lark``. Grammars share rules through lark's ``%import``
(``%import .types (type)``), and their transformers are combined with
``lark.visitors.merge_transformers``.
"""

from __future__ import annotations

import functools
import pathlib

GRAMMAR_DIR = pathlib.Path(__file__).resolve().parent


def path(name: str) -> pathlib.Path:
    """Returns the path of the grammar file ``<name>.lark``."""
    return GRAMMAR_DIR / f"{name}.lark"


@functools.lru_cache(maxsize=None)
def load(name: str, start="type", transformer=None):
    """Returns a cached LALR lark parser for grammar ``name`` starting at ``start``.

    ``start`` is a rule name, or a tuple of rule names for a parser with several
    start rules (choose one with ``parser.parse(text, start=...)``).
    ``transformer``: callbacks that lark calls as it reduces each rule (lark's
    inline transformer), so that lark builds no parse tree of its own.
    """
    import lark

    return lark.Lark.open(
        str(path(name)),
        parser="lalr",
        start=list(start) if isinstance(start, tuple) else start,
        propagate_positions=True,
        maybe_placeholders=True,
        transformer=transformer,
    )
