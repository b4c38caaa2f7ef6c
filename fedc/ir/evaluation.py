"""The walk every evaluator of the IR shares: references, calls, selections, structs, blocks, symbols.

A backend evaluates a verified computation node by node. What differs
between backends is what a value *is* (numpy arrays and ``Clients`` in the
reference interpreter, TensorFlow tensors while the tf backend builds its
graph) and so how lambdas, intrinsics, literals and compiled blocks become
values; the walk itself is the same and lives here once.
:class:`Evaluator` does the walk; a backend's subclass supplies
:meth:`closure`, :meth:`intrinsic`, :meth:`literal`, :meth:`compiled` (and
:meth:`select`, when its values need more than indexing).
"""

from __future__ import annotations

import abc
from typing import Any, Optional

from fedc.errors import FedcError
from fedc.ir import building_blocks as bb
from fedc.ir.module import Module

__all__ = ["Evaluator"]


class Evaluator(abc.ABC):
    """Evaluates the computations of one module for one invocation (see the module docstring).

    ``backend`` names the evaluator in errors (``"the tf backend"``) and
    ``cannot`` what it cannot do to an unknown node (``"cannot lower"``).
    """

    backend = "this backend"
    cannot = "cannot evaluate"

    def __init__(self, module: Optional[Module], num_clients: Optional[int] = None):
        self.module = module
        self.num_clients = num_clients
        self._symbols: dict[str, Any] = {}

    def clients_count(self, what: str) -> int:
        if self.num_clients is None:
            raise FedcError(
                f"{what}: the number of clients is unknown (no argument is placed at CLIENTS); pass num_clients"
            )
        return self.num_clients

    def symbol(self, name: str) -> Any:
        if name not in self._symbols:
            if self.module is None:
                raise FedcError(f"@{name} cannot be evaluated outside a module")
            self._symbols[name] = self.evaluate(self.module[name], {})
        return self._symbols[name]

    def evaluate(self, node: bb.Node, env: dict) -> Any:
        kind = type(node)
        if kind is bb.Reference:
            return env[node.name]
        if kind is bb.Call:
            function = self.evaluate(node.function, env)
            argument = None if node.argument is None else self.evaluate(node.argument, env)
            return function(argument)
        if kind is bb.Selection:
            return self.select(self.evaluate(node.source, env), node.resolved_index)
        if kind is bb.Struct:
            return tuple(self.evaluate(value, env) for _, value in node.elements)
        if kind is bb.Block:
            inner = dict(env)
            for name, value in node.locals:
                inner[name] = self.evaluate(value, inner)
            return self.evaluate(node.result, inner)
        if kind is bb.Lambda:
            return self.closure(node, env)
        if kind is bb.Intrinsic:
            return self.intrinsic(node)
        if kind is bb.Literal:
            return self.literal(node)
        if kind is bb.SymbolRef:
            return self.symbol(node.name)
        if kind is bb.Compiled:
            return self.compiled(node)
        if kind is bb.Placement:
            return node.placement
        if kind is bb.Data:
            raise FedcError(
                f"data {node.uri!r} of type {node.type_signature} has no value: {self.backend} does not "
                "resolve Data nodes (pass the value as an argument)"
            )
        raise FedcError(f"{self.backend} {self.cannot} {type(node).__name__}")

    def select(self, source: Any, index: int) -> Any:
        """Element ``index`` of a struct value."""
        return source[index]

    @abc.abstractmethod
    def closure(self, node: bb.Lambda, env: dict) -> Any:
        """A lambda's value, closing over ``env``."""

    @abc.abstractmethod
    def intrinsic(self, node: bb.Intrinsic) -> Any:
        """An intrinsic's value (a function of its argument)."""

    @abc.abstractmethod
    def literal(self, node: bb.Literal) -> Any:
        """A literal's value."""

    @abc.abstractmethod
    def compiled(self, node: bb.Compiled) -> Any:
        """A compiled block's value (a function of its argument)."""
