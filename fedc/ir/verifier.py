"""The IR verifier: checks every invariant the building blocks cannot check alone.

* Scoping: a :class:`Reference` names an enclosing lambda parameter or an
  earlier local of an enclosing block, with the binder's type; a
  :class:`SymbolRef` names a computation of the module, with its type.
* SSA: every name is bound once within a computation: no block local or
  lambda parameter repeats or shadows a name bound around it.
* Placements: a local function (one whose type mentions no placement) runs on
  a single member, so it calls no federated intrinsic and uses no federated
  value from outside it.
* Modules: computations do not call themselves, directly or through others.

A violation raises :class:`VerificationError` naming the computation, the node
(with its source location when it has one) and the types involved.
"""

from __future__ import annotations

from typing import Optional, Union

from fedc.limits import deep_recursion
from fedc.errors import VerificationError
from fedc.ir.building_blocks import (
    Block,
    Data,
    Intrinsic,
    Lambda,
    Node,
    Reference,
    SymbolRef,
)
from fedc.ir.module import Module
from fedc.types import Type

__all__ = ["verify", "verify_computation"]


@deep_recursion
def verify(target: Union[Module, Node], module: Optional[Module] = None) -> None:
    """Verifies a module, or a single node (resolving symbols in ``module``)."""
    if isinstance(target, Module):
        for symbol, node in target.items():
            _Verifier(target, symbol).check(node)
        _check_no_recursion(target)
    elif isinstance(target, Node):
        _Verifier(module, None).check(target)
    else:
        raise VerificationError(f"verify expects a Module or an IR node, not {type(target).__name__}")


@deep_recursion
def verify_computation(module: Module, symbol: str) -> None:
    """Verifies the one computation ``symbol`` of ``module`` (its symbols resolved in ``module``).

    For a module whose other computations are known to verify, and which none of
    them calls (so it closes no cycle): this costs the size of ``symbol`` alone.
    """
    _Verifier(module, symbol).check(module[symbol])


_KIND_NAMES = {"SymbolRef": "symbol reference", "Intrinsic": "intrinsic", "Reference": "reference"}


class _Verifier:
    def __init__(self, module: Optional[Module], symbol: Optional[str]):
        self.module = module
        self.symbol = symbol

    def fail(self, node: Node, message: str, culprit: Optional[Node] = None) -> VerificationError:
        """The error at ``node``; ``culprit`` (default ``node``) is the node to point at in text."""
        where = f" in @{self.symbol}" if self.symbol else ""
        at = f" at {node.location}" if node.location is not None else ""
        kind = _KIND_NAMES.get(type(node).__name__, type(node).__name__.lower())
        return VerificationError(f"verification failed{where}: {kind}{at}: {message}", node=culprit or node)

    def check(self, root: Node) -> None:
        # scope: name -> (type, depth of the local function it was bound in)
        self._visit(root, scope={}, local_depth=0)

    def _bind(
        self, node: Node, name: str, t: Type, scope: dict, local_depth: int, what: str, culprit: Optional[Node] = None
    ) -> None:
        """Adds ``name`` to ``scope`` (one dict for the whole walk; the binder's caller removes it)."""
        if name in scope:
            raise self.fail(
                node,
                f"{what} %{name} is bound again (SSA: a name is bound once; it is already bound to a {scope[name][0]})",
                culprit,
            )
        scope[name] = (t, local_depth)

    def _visit(self, node: Node, scope: dict, local_depth: int) -> None:
        # local_depth counts enclosing local (placement-free) lambdas; a name
        # bound at a smaller depth than the current one comes from outside the
        # innermost local function.
        if isinstance(node, Reference):
            bound = scope.get(node.name)
            if bound is None:
                raise self.fail(node, f"%{node.name} of type {node.type_signature} is not bound by an enclosing lambda or block")
            binder_type, binder_depth = bound
            if binder_type != node.type_signature:
                raise self.fail(
                    node,
                    f"%{node.name} is used with type {node.type_signature} but is bound with type {binder_type}",
                )
            if local_depth and binder_depth < local_depth and binder_type.is_placed:
                raise self.fail(
                    node,
                    f"a local function uses the placed value %{node.name} of type {binder_type} from outside it",
                )
            return
        if isinstance(node, SymbolRef):
            if self.module is None:
                raise self.fail(node, f"@{node.name} refers to a module computation, but there is no module")
            if node.name not in self.module:
                known = ", ".join("@" + s for s in self.module.symbols)
                raise self.fail(node, f"@{node.name} is not a computation of module @{self.module.name} (it has: {known})")
            actual = self.module[node.name].type_signature
            if actual != node.type_signature:
                raise self.fail(node, f"@{node.name} is used with type {node.type_signature} but has type {actual}")
            return
        if isinstance(node, Intrinsic):
            if local_depth and node.definition.is_federated:
                raise self.fail(node, f"federated intrinsic {node.uri} is used inside a local function (a lambda whose type has no placements runs on one member)")
            return
        if isinstance(node, Data):
            if local_depth and node.type_signature.is_placed:
                raise self.fail(node, f"placed data {node.uri!r} of type {node.type_signature} is used inside a local function")
            return
        if isinstance(node, Lambda):
            depth = local_depth
            if not node.type_signature.is_placed:
                depth = local_depth + 1
            if node.parameter_name is not None:
                self._bind(node, node.parameter_name, node.parameter_type, scope, depth, "parameter")
            self._visit(node.result, scope, depth)
            if node.parameter_name is not None:
                del scope[node.parameter_name]
            return
        if isinstance(node, Block):
            for name, value in node.locals:
                self._visit(value, scope, local_depth)
                self._bind(
                    value if value.location else node, name, value.type_signature, scope, local_depth, "local", value
                )
            self._visit(node.result, scope, local_depth)
            for name, _ in node.locals:
                del scope[name]
            return
        for child in node.children():
            self._visit(child, scope, local_depth)


def _check_no_recursion(module: Module) -> None:
    edges = {
        symbol: sorted({n.name for n in node.walk() if isinstance(n, SymbolRef) and n.name in module})
        for symbol, node in module.items()
    }
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done

    for start in module.symbols:
        if state.get(start):
            continue
        stack = [(start, iter(edges[start]))]
        path = [start]
        state[start] = 1
        while stack:
            symbol, successors = stack[-1]
            advanced = False
            for succ in successors:
                if state.get(succ) == 1:
                    cycle = path[path.index(succ):] + [succ]
                    closing = next(n for n in module[symbol].walk() if isinstance(n, SymbolRef) and n.name == succ)
                    raise VerificationError(
                        "verification failed: computations call each other in a cycle: "
                        + " -> ".join("@" + s for s in cycle),
                        node=closing,
                    )
                if not state.get(succ):
                    state[succ] = 1
                    stack.append((succ, iter(edges[succ])))
                    path.append(succ)
                    advanced = True
                    break
            if not advanced:
                state[symbol] = 2
                stack.pop()
                path.pop()
