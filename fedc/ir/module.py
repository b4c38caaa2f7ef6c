"""A module: named computations, looked up by symbol (``@name``)."""

from __future__ import annotations

import difflib
from typing import Iterator, Mapping, Sequence, Union

from fedc.errors import FedcError, FedcTypeError
from fedc.ir.building_blocks import Node, check_identifier
from fedc.ir.printer import print_module

__all__ = ["Module"]


class Module:
    """An ordered set of named computations.

    Computations refer to each other with :class:`~fedc.ir.SymbolRef`. Modules
    are immutable and compare equal by name and contents.
    """

    __slots__ = ("name", "_computations")

    def __init__(
        self,
        name: str,
        computations: Union[Mapping[str, Node], Sequence[tuple[str, Node]]] = (),
    ):
        check_identifier(name, "a module name")
        items = list(computations.items()) if isinstance(computations, Mapping) else list(computations)
        table: dict[str, Node] = {}
        for entry in items:
            if not isinstance(entry, tuple) or len(entry) != 2:
                raise FedcTypeError(f"a module entry is a (name, node) pair, not {entry!r}")
            symbol, node = entry
            check_identifier(symbol, "a computation name")
            if not isinstance(node, Node):
                raise FedcTypeError(f"computation @{symbol} must be an IR node, not {type(node).__name__}")
            if symbol in table:
                raise FedcError(f"module @{name} defines @{symbol} twice")
            table[symbol] = node
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "_computations", table)

    def __setattr__(self, key, value):
        raise AttributeError("Module is immutable")

    def __getitem__(self, symbol: str) -> Node:
        return self.lookup(symbol)

    def lookup(self, symbol: str) -> Node:
        """The computation named ``symbol``; a :class:`FedcError` naming close matches if absent."""
        try:
            return self._computations[symbol]
        except KeyError:
            close = difflib.get_close_matches(symbol, list(self._computations), n=3)
            hint = f"; did you mean {', '.join('@' + c for c in close)}?" if close else ""
            known = ", ".join("@" + s for s in self._computations) or "none"
            raise FedcError(f"module @{self.name} has no computation @{symbol}{hint} (it has: {known})") from None

    def __contains__(self, symbol: str) -> bool:
        return symbol in self._computations

    def __iter__(self) -> Iterator[str]:
        return iter(self._computations)

    def __len__(self) -> int:
        return len(self._computations)

    def items(self):
        return self._computations.items()

    @property
    def symbols(self) -> list[str]:
        return list(self._computations)

    def replace(self, symbol: str, node: Node) -> "Module":
        """A new module with ``symbol`` bound to ``node`` (added at the end if new)."""
        table = dict(self._computations)
        table[symbol] = node
        return Module(self.name, table)

    def __eq__(self, other) -> bool:
        return (
            isinstance(other, Module)
            and self.name == other.name
            and list(self._computations.items()) == list(other._computations.items())
        )

    def __hash__(self) -> int:
        return hash((self.name, tuple(self._computations.items())))

    def __repr__(self) -> str:
        return f"Module(@{self.name}: {', '.join('@' + s for s in self._computations)})"

    def __str__(self) -> str:
        return print_module(self)
