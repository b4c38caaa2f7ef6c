"""Inlining: named computations into their users, and beta-reduction of called lambdas.

``inline`` replaces every use of a module computation (``@f``) inside another
computation by a copy of ``@f``'s (already inlined) definition whose binders
get fresh names, so the computation stays SSA. A call ``@f(arg)`` thereby
becomes a lambda applied to an argument, and every such application
``Call(Lambda(p, body), arg)`` is beta-reduced to ``Block([(p, arg)], body)``:
the let keeps the argument evaluated once, so sharing is kept. A symbol whose
definition is a ``Compiled`` computation is replaced by that ``Compiled`` node.

When the argument's type is only assignable to the parameter's, the argument
is converted to exactly the parameter type first (a positional struct gets the
parameter's element names; an all-equal client value is mapped to a per-client
one), so references keep their binder's type; when no conversion exists (a
tensor shape the parameter leaves unknown), the call is kept.

The module keeps all its computations (like MLIR's inliner keeps symbols);
``dce`` does not remove them either.

Statistics: ``calls-inlined`` (calls ``@f(arg)`` replaced by ``f``'s body),
``symbols-inlined`` (other uses of ``@f``, e.g. a function passed to
``federated_map``), ``lambdas-beta-reduced`` (other lambdas applied where they
are defined).
"""

from __future__ import annotations

from typing import Optional

from fedc.errors import FedcError
from fedc.ir import building_blocks as bb
from fedc import limits
from fedc.limits import deep_recursion
from fedc.ir.module import Module
from fedc.ir.transform import with_children

from .manager import PassContext, register
from .util import Names, coerce, is_atom, rename_bound, transform_computations

__all__ = ["beta_reduce", "inline"]


def parameter_bindings(function: bb.Lambda, argument: Optional[bb.Node], names: Names) -> Optional[list]:
    """The bindings that give ``function``'s parameter the value ``argument``; None if they cannot.

    An argument whose type is only assignable to the parameter's is converted
    to exactly the parameter type (:func:`fedc.passes.util.coerce`), after
    binding it to a temporary when it is not an atom.
    """
    if function.parameter_name is None:
        return []
    bindings = []
    target = function.parameter_type
    if argument.type_signature != target:
        if not is_atom(argument):
            temporary = names.fresh(function.parameter_name)
            bindings.append((temporary, argument))
            argument = bb.Reference(temporary, argument.type_signature, argument.location)
        argument = coerce(argument, target, names)
        if argument is None:
            return None
    bindings.append((function.parameter_name, argument))
    return bindings


def beta_reduce(call: bb.Call, names: Names) -> Optional[bb.Node]:
    """``Call(Lambda(p, body), arg)`` as ``Block([(p, arg)], body)``; None if it cannot be.

    Also reduces ``Call(Block(locals, Lambda(p, body)), arg)`` to
    ``Block([*locals, (p, arg)], body)``. When the argument's type is only
    assignable to the parameter's (a struct without the parameter's element
    names, an all-equal value for a per-client parameter, …) the argument is
    converted to exactly the parameter type (see :func:`fedc.passes.util.coerce`);
    when no conversion exists, None.
    """
    function = call.function
    outer: list[tuple[str, bb.Node]] = []
    if isinstance(function, bb.Block) and isinstance(function.result, bb.Lambda):
        outer = list(function.locals)
        function = function.result
    if not isinstance(function, bb.Lambda):
        return None
    body = function.result
    parameter = parameter_bindings(function, call.argument, names)
    if parameter is None:
        return None
    bindings = outer + parameter
    if isinstance(body, bb.Block) and body.location is None:
        bindings.extend(body.locals)
        body = body.result
    if not bindings:
        return body
    return bb.Block(bindings, body, call.location)


class _Inliner:
    def __init__(self, module: Module, ctx: PassContext):
        self.module = module
        self.ctx = ctx
        self.done: dict[str, bb.Node] = {}
        self.sizes: dict[str, int] = {}  # nodes in each inlined definition
        self.total = 0  # nodes in all inlined definitions so far
        self.active: list[str] = []

    def inlined(self, symbol: str) -> bb.Node:
        """The computation ``symbol`` with everything it uses inlined (memoized)."""
        if symbol in self.done:
            return self.done[symbol]
        if symbol in self.active:
            cycle = self.active[self.active.index(symbol):] + [symbol]
            raise FedcError(
                "inline: computations call each other in a cycle: " + " -> ".join("@" + s for s in cycle)
            )
        self.active.append(symbol)
        try:
            node = self.module[symbol]
            self.check_size(symbol, node)
            self.done[symbol] = self.rewrite(node, symbol)
        finally:
            self.active.pop()
        return self.done[symbol]

    def check_size(self, symbol: str, node: bb.Node) -> None:
        """Refuses, before copying anything, to make the module larger than ``MAX_IR_NODES``.

        A use of ``@g`` becomes a copy of ``g``'s inlined definition, so ``@symbol``
        inlined has its own nodes plus, per use, the size of what it uses.
        """
        size = 0
        for child in node.walk():
            if isinstance(child, bb.SymbolRef) and child.name in self.module:
                self.inlined(child.name)
                size += self.sizes[child.name]
            elif isinstance(child, bb.Call) and isinstance(child.function, bb.SymbolRef):
                size -= 1  # the call and the callee's lambda become one block
            else:
                size += 1
        self.sizes[symbol] = size
        self.total += size
        if self.total > limits.MAX_IR_NODES:
            raise limits.SizeError(
                f"inline: inlining @{symbol} would bring module @{self.module.name} to about {self.total:,} IR nodes, "
                f"more than fedc makes ({limits.MAX_IR_NODES:,}, fedc.limits.MAX_IR_NODES); "
                f"@{symbol} alone would have about {size:,}, because every use of a computation is a copy of it"
            )

    def rewrite(self, root: bb.Node, symbol: str) -> bb.Node:
        names = Names(root)

        def visit(node: bb.Node) -> bb.Node:
            if isinstance(node, bb.SymbolRef):
                self.ctx.stat("symbols-inlined")
                return self.copy_of(node, names, symbol)
            children = list(node.children())
            if not children:
                return node
            if isinstance(node, bb.Call) and isinstance(node.function, bb.SymbolRef):
                argument = None if node.argument is None else visit(node.argument)
                callee = self.copy_of(node.function, names, symbol)
                rebuilt = bb.Call(callee, argument, node.location)
                reduced = beta_reduce(rebuilt, names) if isinstance(callee, (bb.Lambda, bb.Block)) else None
                if reduced is not None:
                    self.ctx.stat("calls-inlined")
                    return reduced
                if isinstance(callee, (bb.Lambda, bb.Block)):
                    # No conversion of the argument to the parameter type: keep the call.
                    if argument is node.argument:
                        return node
                    return bb.Call(node.function, argument, node.location)
                self.ctx.stat("calls-inlined")
                return rebuilt
            if isinstance(node, bb.Call) and isinstance(node.function, bb.Lambda):
                reduced = reduce_lambda_call(node)
                if isinstance(reduced, bb.Node):
                    return reduced
                bindings, body, location = reduced
                return bb.Block(bindings, body, location) if bindings else body
            rebuilt = with_children(node, [visit(c) for c in children])
            if isinstance(rebuilt, bb.Call) and isinstance(rebuilt.function, (bb.Lambda, bb.Block)):
                reduced = beta_reduce(rebuilt, names)
                if reduced is not None:
                    self.ctx.stat("lambdas-beta-reduced")
                    return reduced
            return rebuilt

        def reduce_lambda_call(node: bb.Call):
            """``Call(Lambda(p, body), arg)`` visited and beta-reduced, as (bindings, body, location)
            of its block, or the rebuilt call when it is kept.

            What :func:`beta_reduce` does to the visited call, except that a chain of lambdas
            applied in each other's bodies is flattened into one list of bindings, without
            building the block of every level of the chain (which is quadratic in its length).
            """
            function = node.function
            inner = function.result
            flat = None  # (bindings, body) of the visited lambda body, when it is a block to flatten
            if isinstance(inner, bb.Call) and isinstance(inner.function, bb.Lambda):
                reduced = reduce_lambda_call(inner)
                if isinstance(reduced, bb.Node):
                    visited_body = reduced
                elif reduced[2] is None and reduced[0]:
                    flat = (reduced[0], reduced[1])
                    visited_body = None
                else:
                    bindings, body, location = reduced
                    visited_body = bb.Block(bindings, body, location) if bindings else body
            else:
                visited_body = visit(inner)
            argument = None if node.argument is None else visit(node.argument)

            def kept_call() -> bb.Node:
                body = visited_body if flat is None else bb.Block(flat[0], flat[1])
                lam = with_children(function, [body])
                return with_children(node, [lam] + ([] if argument is None else [argument]))

            bindings = parameter_bindings(function, argument, names)
            if bindings is None:
                return kept_call()
            if flat is not None:
                bindings.extend(flat[0])
                body = flat[1]
            elif isinstance(visited_body, bb.Block) and visited_body.location is None:
                bindings.extend(visited_body.locals)
                body = visited_body.result
            else:
                body = visited_body
            self.ctx.stat("lambdas-beta-reduced")
            return bindings, body, node.location

        return visit(root)

    def copy_of(self, ref: bb.SymbolRef, names: Names, symbol: str) -> bb.Node:
        """A copy of the inlined definition of ``@ref.name`` with fresh binders."""
        if ref.name not in self.module:
            raise FedcError(f"inline: @{symbol} uses @{ref.name}, which module @{self.module.name} does not define")
        definition = self.inlined(ref.name)
        if definition.type_signature != ref.type_signature:
            raise FedcError(
                f"inline: @{symbol} uses @{ref.name} with type {ref.type_signature}, "
                f"but it has type {definition.type_signature}"
            )
        copy = rename_bound(definition, names)
        if ref.location is not None:
            copy = copy.with_location(ref.location)
        return copy


@register("inline")
@deep_recursion
def inline(module: Module, ctx: PassContext) -> Module:
    """Inlines calls to named computations and beta-reduces lambdas applied to arguments."""
    inliner = _Inliner(module, ctx)
    return transform_computations(module, lambda symbol, node: inliner.inlined(symbol))
