"""Fresh SSA names: the one place that picks a new name for a binder.

IR names are SSA: within one computation no name is bound twice. The
tracer, the ``.fed`` builder and the passes all pick new names the same way:
``FreshNames.fresh("mean")`` gives ``mean`` if it is free, then ``mean_1``,
``mean_2``, … Each base remembers the next suffix to try (names are only ever
added, so the smallest free suffix never decreases), which keeps naming N
binders linear in N.
"""

from __future__ import annotations

import re
from typing import Iterable

__all__ = ["FreshNames", "identifier"]

_NOT_IDENTIFIER = re.compile(r"[^A-Za-z0-9_]")


def identifier(text: str) -> str:
    """``text`` made an identifier: other characters become ``_``; a leading digit gets a ``v``."""
    text = _NOT_IDENTIFIER.sub("_", text) or "v"
    if text[0].isdigit():
        text = "v" + text
    return text


class FreshNames:
    """The names taken in one computation, and fresh ones: ``base``, ``base_1``, ``base_2``, …"""

    def __init__(self, taken: Iterable[str] = ()):
        self.used: set[str] = set(taken)
        self._next: dict[str, int] = {}

    def __contains__(self, name: str) -> bool:
        return name in self.used

    def take(self, name: str) -> str:
        """Marks ``name`` as used (it is bound by someone else) and returns it."""
        self.used.add(name)
        return name

    def suffixed(self, base: str) -> str:
        """The first free ``base_<n>`` (n >= 1), now taken."""
        n = self._next.get(base, 1)
        while f"{base}_{n}" in self.used:
            n += 1
        self._next[base] = n + 1
        return self.take(f"{base}_{n}")

    def fresh(self, base: str) -> str:
        """``base`` (made an identifier) if it is free, else the first free ``base_<n>``; now taken."""
        base = identifier(base)
        if base not in self.used:
            return self.take(base)
        return self.suffixed(base)
