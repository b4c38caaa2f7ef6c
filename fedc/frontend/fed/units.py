"""Compilation units (one per ``.fed`` file) and their definitions.

Also :class:`Resolver`, what the stages that build a definition ask of the
compiler (``compiler.Compiler`` implements it).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Protocol

from fedc.errors import FedcError, SourceLocation
from fedc.frontend.fed.syntax import Pos
from fedc.ir import building_blocks as bb
from fedc.types import Type

__all__ = ["AmbiguousName", "Definition", "Resolver", "Unit"]


# --------------------------------------------------------------------------
# Compilation units and definitions


@dataclasses.dataclass(eq=False)
class Unit:
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
class AmbiguousName:
    """A name that several imported files define."""

    defs: list

    def error(self, compiler: "Resolver", unit: "Unit", pos: Pos, name: str) -> FedcError:
        where = " and ".join(f"{d.unit.display} (at {d.unit.location(d.pos)})" for d in self.defs)
        return compiler.error(unit, pos, f"{name!r} is ambiguous: it is defined by the imported files {where}")


@dataclasses.dataclass(eq=False)
class Definition:
    kind: str  # "type", "extern", "computation", "local"
    name: str
    unit: Unit
    ast: Any
    symbol: Optional[str] = None
    state: str = "new"  # new, busy, done, failed
    value: Any = None  # a Type, or the Compiled / Lambda node

    @property
    def pos(self) -> Pos:
        return self.ast.name_pos


class Resolver(Protocol):
    """What building a definition asks of the compiler: diagnostics, and the definitions it uses.

    Definitions are resolved the first time they are used; see ``compiler.Compiler``.
    """

    def error(self, unit: Unit, pos: Pos, message: str, cls=FedcError) -> FedcError: ...

    def report(self, error: FedcError) -> None: ...

    def suggest(self, name: str, candidates) -> str: ...

    def resolve_type(self, unit: Unit, tree) -> Type: ...

    def resolve_alias(self, d: Definition, use_pos: Pos, use_unit: Optional[Unit] = None) -> Type: ...

    def resolve_extern(self, d: Definition) -> bb.Compiled: ...

    def resolve_function(self, d: Definition, use_pos: Pos, use_unit: Unit) -> bb.Lambda: ...

    def allocate_symbol(self, d: Definition) -> str: ...
