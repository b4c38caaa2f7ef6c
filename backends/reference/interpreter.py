"""The reference interpreter: evaluates verified IR directly by its semantics.

It is the oracle every pass and backend is checked against, so it follows the
IR plainly: an environment maps names to values, a lambda evaluates to a
closure, a block binds its locals in order. It is fast only where that changes
nothing observable: a function of local ops mapped over clients is evaluated
once over the clients' stacked values (see ``local_ops.Batched``), and the
federated reductions are single numpy calls.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fedc.errors import FedcError
from fedc.limits import check_allocation
from fedc.ir import building_blocks as bb
from fedc.ir.evaluation import Evaluator

from fedc.values import Clients

from .intrinsics import RULES
from .local_ops import Batched

__all__ = ["Interpreter", "NotBatchable"]


class NotBatchable(Exception):
    """Raised inside batched evaluation when a value cannot be handled batched."""


class Closure:
    """A lambda evaluated in an environment."""

    __slots__ = ("node", "env", "interpreter")

    def __init__(self, node: bb.Lambda, env: dict, interpreter: "Interpreter"):
        self.node = node
        self.env = env
        self.interpreter = interpreter

    def __call__(self, argument: Any = None) -> Any:
        env = self.env
        if self.node.parameter_name is not None:
            env = dict(env)
            env[self.node.parameter_name] = argument
        return self.interpreter.evaluate(self.node.result, env)


class IntrinsicFunction:
    """An intrinsic or local op as a function value."""

    __slots__ = ("node", "interpreter")

    def __init__(self, node: bb.Intrinsic, interpreter: "Interpreter"):
        self.node = node
        self.interpreter = interpreter

    def __call__(self, argument: Any = None) -> Any:
        node = self.node
        definition = node.definition
        impl = RULES.get(node.uri)
        if impl is None:
            raise FedcError(f"the reference backend does not implement {node.uri}")
        # Local ops take batched operands; everything else is evaluated per value. A random draw inside a
        # function mapped over clients batched would be one draw for them all: it is evaluated per client.
        if definition.is_federated or definition.kind.value == "sequence" or definition.random:
            if _contains_batched(argument) or (definition.random and self.interpreter.batching):
                raise NotBatchable(node.uri)
        try:
            return impl(self.interpreter, argument, node.type_signature, definition.attr_values(dict(node.attrs)))
        except FedcError as e:
            if e.location is None and node.location is not None:  # a run-time error, at the op that failed
                raise type(e)(e.message, node.location) from None
            raise


class CompiledFunction:
    """A Compiled block, run through TensorFlow."""

    __slots__ = ("node", "_fn")

    def __init__(self, node: bb.Compiled):
        self.node = node
        self._fn = None

    def __call__(self, argument: Any = None) -> Any:
        if _contains_batched(argument):
            raise NotBatchable("compiled")
        if self._fn is None:
            from fedc import tensorflow_graphs

            self._fn = tensorflow_graphs.load(self.node)
        return self._fn(argument)


def _contains_batched(value: Any) -> bool:
    if isinstance(value, Batched):
        return True
    if isinstance(value, tuple):
        return any(_contains_batched(v) for v in value)
    return False


class Interpreter(Evaluator):
    """Evaluates the computations of one module, for one invocation (the walk: :class:`fedc.ir.evaluation.Evaluator`)."""

    backend = "the reference backend"
    #: > 0 while a function is applied to all clients' values at once (batched)
    batching = 0

    def select(self, source: Any, index: int) -> Any:
        if isinstance(source, Batched):
            return Batched(source.value[index])
        return source[index]

    def closure(self, node: bb.Lambda, env: dict) -> Any:
        return Closure(node, env, self)

    def intrinsic(self, node: bb.Intrinsic) -> Any:
        return IntrinsicFunction(node, self)

    def literal(self, node: bb.Literal) -> Any:
        return node.value

    def compiled(self, node: bb.Compiled) -> Any:
        return CompiledFunction(node)

    def map_clients(self, function: Any, value: Clients) -> Clients:
        """Applies a local function to each client's value, batched when it can be."""
        stacked = value.stacked() if value.count else None
        if stacked is not None and isinstance(function, (Closure, IntrinsicFunction)):
            self.batching += 1
            try:
                result = function(_batched_leaves(stacked))
            except NotBatchable:
                result = NotBatchable
            finally:
                self.batching -= 1
            if result is not NotBatchable:
                return Clients.from_stacked(_materialize(result, value.count), value.count)
        return Clients.from_items([function(item) for item in value.items()])


def _batched_leaves(stacked: Any) -> Any:
    """A stacked struct as a struct of Batched leaves, the form every batched op expects."""
    if isinstance(stacked, tuple):
        return tuple(_batched_leaves(part) for part in stacked)
    return Batched(stacked)


def _materialize(result: Any, count: int) -> Any:
    """Turns a batched result (possibly with unbatched parts) into a stacked value."""
    if isinstance(result, Batched):
        return result.value
    if isinstance(result, tuple):
        return tuple(_materialize(part, count) for part in result)
    array = np.asarray(result)
    check_allocation((count,) + array.shape, array.dtype.itemsize, f"a value mapped over {count} clients")
    return np.broadcast_to(array, (count,) + array.shape).copy()
