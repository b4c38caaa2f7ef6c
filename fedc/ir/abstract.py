"""One abstract evaluator of the IR, which the dataflow graph and the pictures are built on.

:class:`Evaluator` walks a computation the way an interpreter would — an
environment of values for references, blocks binding their locals in order,
structs built of separate values (:class:`Pack`) and selections taken from
them, lambdas as closures applied to their arguments — but what a value *is*
is the subclass's choice: a node of a dataflow graph, a port of a picture.
A subclass says what a leaf (a literal, data, a free reference, a selection
from an opaque value) stands for and what a call of an intrinsic, a compiled
function, a module symbol or an unknown function produces, through the hooks
below; the walk itself is written once.

The values the walk itself makes are :class:`Pack` (a struct of values),
:class:`Closure` (a lambda with the environment it was defined in),
:class:`IntrinsicFn` and :class:`SymbolFn` (an intrinsic or a module
computation as a function value, before it is called).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from fedc.ir import building_blocks as bb
from fedc.ir.module import Module
from fedc.types import FederatedType, StructType, Type

__all__ = [
    "LOCAL",
    "MIXED",
    "Closure",
    "Evaluator",
    "IntrinsicFn",
    "Pack",
    "SymbolFn",
    "leaves",
    "placement_of",
    "step_text",
]

LOCAL = "local"  # a placement-free value
MIXED = "mixed"  # a struct of values placed differently


def placement_of(t: Optional[Type]) -> str:
    """``"SERVER"``, ``"CLIENTS"``, :data:`MIXED` or :data:`LOCAL`: a federated type's placement,
    the common placement of a struct whose elements are all placed alike, ``mixed`` for a struct
    whose elements are placed differently, otherwise local."""
    if isinstance(t, FederatedType):
        return t.placement.name
    if isinstance(t, StructType) and len(t):
        placements = {placement_of(e) for e in t}
        if len(placements) == 1:
            return placements.pop()
        return MIXED
    return LOCAL


def step_text(name: Optional[str], index: int) -> str:
    """The text of one selection step: ``.name`` or ``[index]``."""
    return f".{name}" if name is not None else f"[{index}]"


@dataclasses.dataclass(frozen=True)
class Pack:
    """A struct built in the IR: its elements stay separate values."""

    elements: tuple  # ((name or None, value), ...)
    type: Type


@dataclasses.dataclass(frozen=True, eq=False)
class Closure:
    """A lambda as a value, with the environment and the context it was defined in."""

    function: bb.Lambda
    env: dict
    context: Any


@dataclasses.dataclass(frozen=True)
class IntrinsicFn:
    """An intrinsic as a function value."""

    intrinsic: bb.Intrinsic


@dataclasses.dataclass(frozen=True)
class SymbolFn:
    """A computation of the module (``@name``) as a function value."""

    name: str
    type: Type


def leaves(value: Any, indices: tuple = (), steps: tuple = ()) -> list[tuple[tuple, tuple, Any]]:
    """``(indices, steps, leaf)`` for each value inside the packs of ``value`` (``value`` itself if
    it is no pack); ``indices`` are positions, ``steps`` their texts (``(".a", "[0]")``)."""
    if not isinstance(value, Pack):
        return [(indices, steps, value)]
    out = []
    for index, (name, element) in enumerate(value.elements):
        out.extend(leaves(element, indices + (index,), steps + (step_text(name, index),)))
    return out


class Evaluator:
    """The walk over the IR; subclasses give values their meaning through the hooks.

    ``context`` is the subclass's own: where new values are made (a prefix for
    the labels of a graph, the scope of clusters of a picture). ``name`` is the
    block local a value is bound to, when it is. The defaults make lambdas
    closures, intrinsics and symbols function values, and calls of them
    :meth:`apply_intrinsic`, :meth:`apply_symbol` or :meth:`apply_opaque`.
    """

    def __init__(self, module: Module):
        self.module = module

    # The walk -------------------------------------------------------------
    def evaluate(self, node: bb.Node, env: dict, context: Any, name: Optional[str] = None) -> Any:
        """What ``node`` stands for in environment ``env``."""
        if isinstance(node, bb.Reference):
            if node.name in env:
                return env[node.name]
            return self.free_reference(node, context)
        if isinstance(node, bb.Selection):
            source = self.evaluate(node.source, env, context)
            index = node.resolved_index
            if isinstance(source, Pack):
                return source.elements[index][1]
            return self.select(source, node, step_text(node.name, index), context)
        if isinstance(node, bb.Struct):
            return Pack(tuple((n, self.evaluate(e, env, context)) for n, e in node.elements), node.type_signature)
        if isinstance(node, bb.Block):
            inner = dict(env)
            for local, value in node.locals:
                inner[local] = self.evaluate(value, inner, context, local)
            return self.evaluate(node.result, inner, context)
        if isinstance(node, bb.Call):
            return self.call(node, env, context, name)
        if isinstance(node, bb.Lambda):
            return self.lambda_value(node, env, context, name)
        if isinstance(node, bb.Intrinsic):
            return self.intrinsic_value(node, context, name)
        if isinstance(node, bb.SymbolRef):
            return self.symbol_value(node, context, name)
        if isinstance(node, bb.Data):
            return self.data(node, context, name)
        return self.constant(node, context, name)  # literals, placements, compiled functions

    def argument(self, call: bb.Call, env: dict, context: Any) -> Any:
        """The value of a call's argument (None when it has none)."""
        return None if call.argument is None else self.evaluate(call.argument, env, context)

    def call(self, node: bb.Call, env: dict, context: Any, name: Optional[str]) -> Any:
        """A call: of a lambda written in place, an intrinsic, a compiled function, a symbol, or a
        computed function value."""
        function = node.function
        if isinstance(function, bb.Lambda):
            return self.applied_lambda(function, node, env, context, name)
        if isinstance(function, bb.Intrinsic):
            return self.intrinsic_call(function, node, env, context, name)
        if isinstance(function, bb.Compiled):
            return self.compiled_call(function, node, env, context, name)
        if isinstance(function, bb.SymbolRef):
            return self.symbol_call(function, node, env, context, name)
        return self.value_call(self.evaluate(function, env, context), node, env, context, name)

    def apply(self, function: Any, argument: Any, node: bb.Call, context: Any, name: Optional[str]) -> Any:
        """A function value applied to an argument value."""
        if isinstance(function, Closure):
            return self.apply_closure(function, argument, context)
        if isinstance(function, IntrinsicFn):
            return self.apply_intrinsic(function.intrinsic, argument, node, context, name)
        if isinstance(function, SymbolFn):
            return self.apply_symbol(function, argument, node, context, name)
        return self.apply_opaque(function, argument, node, context, name)

    def apply_closure(self, closure: Closure, argument: Any, context: Any) -> Any:
        """A closure's body with its parameter bound to ``argument`` (beta reduction)."""
        lam = closure.function
        inner = dict(closure.env)
        if lam.parameter_name is not None and argument is not None:
            inner[lam.parameter_name] = argument
        return self.evaluate(lam.result, inner, closure.context)

    # Hooks: calls ---------------------------------------------------------
    def applied_lambda(self, function: bb.Lambda, node: bb.Call, env: dict, context: Any, name) -> Any:
        """``(λx. body)(argument)`` written in place; by default its closure, applied."""
        closure = self.lambda_value(function, env, context, None)
        return self.apply(closure, self.argument(node, env, context), node, context, name)

    def intrinsic_call(self, function: bb.Intrinsic, node: bb.Call, env: dict, context: Any, name) -> Any:
        return self.value_call(self.evaluate(function, env, context), node, env, context, name)

    def compiled_call(self, function: bb.Compiled, node: bb.Call, env: dict, context: Any, name) -> Any:
        return self.value_call(self.evaluate(function, env, context), node, env, context, name)

    def symbol_call(self, function: bb.SymbolRef, node: bb.Call, env: dict, context: Any, name) -> Any:
        return self.value_call(self.evaluate(function, env, context), node, env, context, name)

    def value_call(self, function: Any, node: bb.Call, env: dict, context: Any, name) -> Any:
        """A call of function value ``function``: the argument, then :meth:`apply`."""
        return self.apply(function, self.argument(node, env, context), node, context, name)

    def apply_intrinsic(self, intrinsic: bb.Intrinsic, argument: Any, node: bb.Call, context: Any, name) -> Any:
        raise NotImplementedError

    def apply_symbol(self, function: SymbolFn, argument: Any, node: bb.Call, context: Any, name) -> Any:
        return self.apply_opaque(function, argument, node, context, name)

    def apply_opaque(self, function: Any, argument: Any, node: bb.Call, context: Any, name) -> Any:
        """A call of a function the walk cannot see into (a compiled function, a parameter, …)."""
        raise NotImplementedError

    # Hooks: values --------------------------------------------------------
    def free_reference(self, node: bb.Reference, context: Any) -> Any:
        raise NotImplementedError

    def select(self, source: Any, node: bb.Selection, step: str, context: Any) -> Any:
        """Element ``step`` (``.name``, ``[index]``) of a value that is not a :class:`Pack`."""
        raise NotImplementedError

    def lambda_value(self, node: bb.Lambda, env: dict, context: Any, name: Optional[str]) -> Any:
        return Closure(node, env, context)

    def intrinsic_value(self, node: bb.Intrinsic, context: Any, name: Optional[str]) -> Any:
        return IntrinsicFn(node)

    def symbol_value(self, node: bb.SymbolRef, context: Any, name: Optional[str]) -> Any:
        return SymbolFn(node.name, node.type_signature)

    def data(self, node: bb.Data, context: Any, name: Optional[str]) -> Any:
        raise NotImplementedError

    def constant(self, node: bb.Node, context: Any, name: Optional[str]) -> Any:
        """A literal, a placement, a compiled function (or a kind of node the walk does not know)."""
        raise NotImplementedError
