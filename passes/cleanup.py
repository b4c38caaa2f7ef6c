"""Clean-up passes: ``dce``, ``cse`` and ``canonicalize``.

They work on any IR, in call-dominant form or not, at every level (also inside
lambda bodies), and keep it in call-dominant form when it is. The IR is pure:
a value nobody uses can go, and two equal expressions compute equal values.

``dce``
    Removes block locals that nobody references, to a fixpoint (a local used
    only by removed locals goes too), and blocks left without locals (a block
    without locals is its result). Statistics: ``locals-removed``,
    ``blocks-removed``.

``cse``
    In each block, in order, a local whose value equals an earlier local's
    value is removed and its uses refer to the earlier local. Values are
    compared structurally, ignoring source locations, after the earlier merges
    are substituted; a lambda (a function value, as call-dominant form binds
    them) also ignoring the names of its binders (``fn(x) -> x`` equals
    ``fn(y) -> y``). So chains merge: two broadcasts of the same value,
    then the two maps of the broadcasts, then their aggregations. A local may
    merge with a local of an enclosing block of the same function, never with
    one outside a lambda (a local lambda would capture it). A value that draws
    random numbers (a ``local.random_normal``, or a call of a function that
    draws) never merges: two draws are two values. Statistic:
    ``locals-merged``.

``canonicalize``
    Simplifies, bottom-up:

    * ``<a, b>[0]`` → ``a`` (selection of a struct literal, and chains of them):
      ``selections-folded``;
    * ``<x[0], x[1], …>`` of every element of ``x`` in order, with ``x``'s
      element names → ``x``: ``structs-folded``;
    * ``federated_map`` / ``federated_map_all_equal`` / ``federated_apply`` /
      ``sequence_map`` of an identity function ``fn(x) -> x`` → the mapped
      value, when the result type is exactly the value's type: ``identity-maps-removed``;
    * ``federated_zip_at_clients(<map(fn(x) -> x[0], v), map(fn(x) -> x[1], v), …>)``
      over every element of ``v`` in order → ``v``, when the types are equal
      (``federated_zip_at_server`` of ``federated_apply``\\ s likewise): ``zips-folded``;
    * ``map(fn(x) -> x[i], zip(<a0, a1, …>))`` → ``ai`` when the types are equal
      (``federated_apply`` over ``federated_zip_at_server`` likewise): ``unzips-folded``;
    * a block local bound to an atom (a reference, a selection of an atom or a
      struct of atoms) is substituted into its uses: ``aliases-substituted``
      (except a placement-free selection out of a placed value, which local
      lambdas may only use through a local);
    * a block without locals → its result: ``blocks-removed``.

    Functions and zipped values are found through the locals that hold them
    (``%f = fedc.lambda…`` then ``fed.map(%f, %x)``), so the rewrites apply in
    call-dominant form.
"""

from __future__ import annotations

from collections import Counter
from typing import Optional

from fedc.ir import building_blocks as bb
from fedc.limits import deep_recursion
from fedc.ir.module import Module
from fedc.ir.transform import with_children

from .manager import PassContext, register
from .util import (
    alpha_normal,
    bound_names,
    free_references,
    is_atom,
    is_identity_lambda,
    needs_own_local,
    reference_counts,
    selection_lambda_index,
    transform_computations,
)

__all__ = ["canonicalize", "cse", "dce"]


# --------------------------------------------------------------------------
# dce


def _dce(root: bb.Node, ctx: PassContext) -> bb.Node:
    # Names are SSA, so a name's count is the number of uses of its one binder.
    counts: Counter = reference_counts(root)

    def visit(node: bb.Node) -> bb.Node:
        children = list(node.children())
        if not children:
            return node
        node = with_children(node, [visit(c) for c in children])
        if not isinstance(node, bb.Block):
            return node
        kept = []
        for name, value in reversed(node.locals):
            if counts[name] <= 0:
                counts.subtract(reference_counts(value))
                ctx.stat("locals-removed")
            else:
                kept.append((name, value))
        kept.reverse()
        if not kept:
            ctx.stat("blocks-removed")
            return node.result
        if len(kept) == len(node.locals):
            return node
        return bb.Block(kept, node.result, node.location)

    return visit(root)


@register("dce")
@deep_recursion
def dce(module: Module, ctx: PassContext) -> Module:
    """Removes locals nobody uses (to a fixpoint, also inside lambdas) and blocks left empty."""
    return transform_computations(module, lambda symbol, node: _dce(node, ctx))


# --------------------------------------------------------------------------
# cse


def _binder_prefix(root: bb.Node) -> str:
    """A prefix for canonical binder names that no name of ``root`` starts with."""
    names = bound_names(root) | free_references(root)
    prefix = "_cse"
    while any(n.startswith(prefix) for n in names):
        prefix += "_"
    return prefix


def _drawing_symbols(module: Module) -> set[str]:
    """The module's computations that draw random numbers when they run (themselves, or through those they use)."""
    uses = {symbol: {n.name for n in node.walk() if isinstance(n, bb.SymbolRef)} for symbol, node in module.items()}
    drawing = {symbol for symbol, node in module.items()
               if any(isinstance(n, bb.Intrinsic) and n.definition.random for n in node.walk())}
    grew = True
    while grew:
        more = {symbol for symbol, used in uses.items() if symbol not in drawing and used & drawing}
        grew = bool(more)
        drawing |= more
    return drawing


def _draws(node: bb.Node, functions: set[str], symbols: set[str]) -> bool:
    """Whether evaluating ``node`` draws random numbers: it has a random op, or uses a function (a local in
    ``functions``, a computation in ``symbols``) that does."""
    for n in node.walk():
        if isinstance(n, bb.Intrinsic) and n.definition.random:
            return True
        if isinstance(n, bb.Reference) and n.name in functions or isinstance(n, bb.SymbolRef) and n.name in symbols:
            return True
    return False


def _cse(root: bb.Node, ctx: PassContext, symbols: frozenset = frozenset()) -> bb.Node:
    prefix = _binder_prefix(root)
    replacements: dict[str, str] = {}  # merged local -> the earlier local it merged into
    drawing: set[str] = set()  # locals bound to functions that draw random numbers

    def visit(node: bb.Node, available: dict) -> bb.Node:
        if isinstance(node, bb.Reference):
            target = replacements.get(node.name)
            if target is None:
                return node
            return bb.Reference(target, node.type_signature, node.location)
        if isinstance(node, bb.Lambda):
            # A lambda's body may not reuse values from outside it (it would capture them).
            result = visit(node.result, {})
            return node if result is node.result else bb.Lambda(node.parameter_name, node.parameter_type, result, node.location)
        if isinstance(node, bb.Block):
            inner = dict(available)
            kept = []
            changed = False
            for name, value in node.locals:
                new_value = visit(value, inner)
                changed |= new_value is not value
                if _draws(new_value, drawing, symbols):
                    if not isinstance(new_value, bb.Lambda):  # two draws are two values, however alike
                        kept.append((name, new_value))
                        continue
                    drawing.add(name)  # a function that draws: equal functions still merge; calls of it do not
                # Function values compare up to the names of their binders (inlining the
                # same function twice gives renamed copies); other values structurally.
                key = alpha_normal(new_value, prefix) if isinstance(new_value, bb.Lambda) else new_value
                earlier = inner.get(key)
                if earlier is not None:
                    replacements[name] = earlier
                    ctx.stat("locals-merged")
                    changed = True
                    continue
                inner[key] = name
                kept.append((name, new_value))
            result = visit(node.result, inner)
            if not changed and result is node.result:
                return node
            if not kept:
                return result  # every local merged into an enclosing block's
            return bb.Block(kept, result, node.location)
        children = list(node.children())
        if not children:
            return node
        return with_children(node, [visit(c, available) for c in children])

    return visit(root, {})


@register("cse")
@deep_recursion
def cse(module: Module, ctx: PassContext) -> Module:
    """Merges locals that compute the same value (duplicate broadcasts, identical aggregations); never two
    random draws."""
    symbols = frozenset(_drawing_symbols(module))
    return transform_computations(module, lambda symbol, node: _cse(node, ctx, symbols))


# --------------------------------------------------------------------------
# canonicalize

_MAPS = {
    "federated_map": "federated_zip_at_clients",
    "federated_map_all_equal": "federated_zip_at_clients",
    "federated_apply": "federated_zip_at_server",
    "sequence_map": None,
}
_ZIPS = {"federated_zip_at_clients": ("federated_map", "federated_map_all_equal"),
         "federated_zip_at_server": ("federated_apply",)}


def _intrinsic_call(node: bb.Node, uris) -> Optional[bb.Call]:
    if (
        isinstance(node, bb.Call)
        and isinstance(node.function, bb.Intrinsic)
        and node.function.uri in uris
    ):
        return node
    return None


class _Canonicalizer:
    def __init__(self, ctx: PassContext):
        self.ctx = ctx
        self.values: dict[str, bb.Node] = {}  # local -> its (canonical) value
        self.aliases: dict[str, bb.Node] = {}  # local bound to an atom -> the atom

    def resolve(self, node: bb.Node) -> bb.Node:
        """``node``, or the value of the local it references (through references)."""
        seen = 0
        while isinstance(node, bb.Reference) and node.name in self.values and seen < 100:
            node = self.values[node.name]
            seen += 1
        return node

    def visit(self, node: bb.Node) -> bb.Node:
        if isinstance(node, bb.Reference):
            atom = self.aliases.get(node.name)
            if atom is None:
                return node
            if isinstance(atom, bb.Reference):
                return bb.Reference(atom.name, node.type_signature, node.location or atom.location)
            return atom
        if isinstance(node, bb.Block):
            kept = []
            changed = False
            for name, value in node.locals:
                new_value = self.visit(value)
                changed |= new_value is not value
                if is_atom(new_value) and not needs_own_local(new_value):
                    self.aliases[name] = new_value
                    self.ctx.stat("aliases-substituted")
                    changed = True
                    continue
                self.values[name] = new_value
                kept.append((name, new_value))
            result = self.visit(node.result)
            if not kept:
                self.ctx.stat("blocks-removed")
                return result
            if not changed and result is node.result:
                return node
            return bb.Block(kept, result, node.location)
        children = list(node.children())
        if not children:
            return node
        node = with_children(node, [self.visit(c) for c in children])
        return self.fold(node)

    def fold(self, node: bb.Node) -> bb.Node:
        """One local rewrite of ``node`` (whose children are canonical), or ``node``."""
        if isinstance(node, bb.Selection) and isinstance(node.source, bb.Struct):
            self.ctx.stat("selections-folded")
            return node.source.elements[node.resolved_index][1]
        if isinstance(node, bb.Struct):
            return self.fold_struct(node)
        if not isinstance(node, bb.Call) or not isinstance(node.function, bb.Intrinsic):
            return node
        uri = node.function.uri
        argument = node.argument
        if uri in _MAPS and isinstance(argument, bb.Struct) and len(argument) == 2:
            function = self.resolve(argument.elements[0][1])
            value = argument.elements[1][1]
            if is_identity_lambda(function) and value.type_signature == node.type_signature:
                self.ctx.stat("identity-maps-removed")
                return value
            index = selection_lambda_index(function)
            zip_uri = _MAPS[uri]
            if index is not None and zip_uri is not None:
                zipped = self.resolve(value)
                zipped = _intrinsic_call(zipped, (zip_uri,))
                if zipped is not None and isinstance(zipped.argument, bb.Struct):
                    element = zipped.argument.elements[index][1]
                    movable = zipped is value or not bound_names(element)
                    if movable and element.type_signature == node.type_signature:
                        self.ctx.stat("unzips-folded")
                        return element
            return node
        if uri in _ZIPS and isinstance(argument, bb.Struct) and len(argument) > 0:
            source = None
            for index, (_, element) in enumerate(argument.elements):
                mapped = _intrinsic_call(self.resolve(element), _ZIPS[uri])
                if mapped is None or not isinstance(mapped.argument, bb.Struct) or len(mapped.argument) != 2:
                    return node
                if selection_lambda_index(self.resolve(mapped.argument.elements[0][1])) != index:
                    return node
                value = mapped.argument.elements[1][1]
                if source is None:
                    source = value
                elif value != source:
                    return node
            if bound_names(source) or source.type_signature != node.type_signature:
                return node
            self.ctx.stat("zips-folded")
            return source
        return node

    def fold_struct(self, node: bb.Struct) -> bb.Node:
        """``<x[0], x[1], …>`` of all of ``x``'s elements in order → ``x``."""
        if len(node) == 0:
            return node
        source = None
        for index, (_, element) in enumerate(node.elements):
            if not isinstance(element, bb.Selection) or element.resolved_index != index:
                return node
            if source is None:
                source = element.source
            elif element.source != source:
                return node
        if len(source.type_signature) != len(node) or source.type_signature != node.type_signature:
            return node
        self.ctx.stat("structs-folded")
        return source


def _canonicalize(root: bb.Node, ctx: PassContext) -> bb.Node:
    return _Canonicalizer(ctx).visit(root)


@register("canonicalize")
@deep_recursion
def canonicalize(module: Module, ctx: PassContext) -> Module:
    """Simplifies: selection of a struct literal, zip/unzip pairs, identity maps, aliases, empty blocks."""
    return transform_computations(module, lambda symbol, node: _canonicalize(node, ctx))
