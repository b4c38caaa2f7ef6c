"""Compilation units (one per ``.fed`` file) and their definitions.

Also what the later stages share: the markers for a value that depends on an
error already reported (so that it is not reported again), and helpers for
messages.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from typing import TYPE_CHECKING, Any, Optional

from fedc.errors import FedcError, SourceLocation
from fedc.frontend.fed.syntax import Pos
from fedc.types import Type

if TYPE_CHECKING:
    from fedc.frontend.fed.compiler import _Compiler


# --------------------------------------------------------------------------
# Compilation units and definitions


class _Poisoned(Exception):
    """Raised where a value depends on something already reported as an error."""


_POISON = object()


@dataclasses.dataclass(eq=False)
class _Unit:
    key: str
    display: str
    folder: str
    text: str
    index: int
    items: list = dataclasses.field(default_factory=list)
    defs: dict = dataclasses.field(default_factory=dict)  # own definitions
    all_defs: list = dataclasses.field(default_factory=list)  # including duplicates (checked too)
    failed: set = dataclasses.field(default_factory=set)
    namespace: dict = dataclasses.field(default_factory=dict)  # own and imported
    imports: list = dataclasses.field(default_factory=list)

    def location(self, pos: Pos) -> SourceLocation:
        return SourceLocation(self.display, pos[0], pos[1])


@dataclasses.dataclass(eq=False)
class _Ambiguous:
    """A name that several imported files define."""

    defs: list

    def error(self, compiler: "_Compiler", unit: "_Unit", pos: Pos, name: str) -> FedcError:
        where = " and ".join(f"{d.unit.display} (at {d.unit.location(d.pos)})" for d in self.defs)
        return compiler.error(unit, pos, f"{name!r} is ambiguous: it is defined by the imported files {where}")


@dataclasses.dataclass(eq=False)
class _Def:
    kind: str  # "type", "extern", "computation", "local"
    name: str
    unit: _Unit
    ast: Any
    symbol: Optional[str] = None
    state: str = "new"  # new, busy, done, failed
    value: Any = None  # a Type, or the Compiled / Lambda node

    @property
    def pos(self) -> Pos:
        return self.ast.name_pos


# --------------------------------------------------------------------------
# Helpers shared by the stages


def _os_reason(e: Exception) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror.lower() if e.strerror else str(e)
    return str(e)


def _decode_string(raw: str) -> str:
    return json.loads(raw)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _did_you_mean(name: str, candidates) -> str:
    """'; did you mean 'x'?' for the closest candidate (ties: the earliest), or ''."""
    best, best_score = None, 0.6
    matcher = difflib.SequenceMatcher()
    matcher.set_seq2(name.lower())
    for c in dict.fromkeys(candidates):
        if c == name:
            continue
        matcher.set_seq1(c.lower())
        if matcher.real_quick_ratio() > best_score and matcher.quick_ratio() > best_score:
            score = matcher.ratio()
            if score > best_score:
                best, best_score = c, score
    return f"; did you mean {best!r}?" if best else ""
