"""Helpers every pass uses: fresh names, free variables, renaming, substitution, use counts.

IR names are SSA: within one computation no name is bound twice (the verifier
checks it). Passes that copy or move code keep that true by renaming the
binders they introduce with :class:`Names`, which knows every name already in
use in a computation.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Callable, Iterable, Optional

from fedc.ir import building_blocks as bb
from fedc.ir.module import Module
from fedc.ir.names import FreshNames, identifier
from fedc.ir.transform import rewrite, with_children

__all__ = [
    "Names",
    "alpha_normal",
    "bound_names",
    "coerce",
    "free_references",
    "is_atom",
    "is_identity_lambda",
    "needs_own_local",
    "reference_counts",
    "rename_bound",
    "selection_lambda_index",
    "short_name",
    "substitute",
    "transform_computations",
]


def bound_names(node: bb.Node) -> set[str]:
    """Every name a Lambda parameter or Block local binds inside ``node``."""
    names = set()
    for n in node.walk():
        if isinstance(n, bb.Lambda) and n.parameter_name is not None:
            names.add(n.parameter_name)
        elif isinstance(n, bb.Block):
            names.update(name for name, _ in n.locals)
    return names


def free_references(node: bb.Node) -> set[str]:
    """Names referenced in ``node`` but not bound inside it."""
    free: set[str] = set()
    bound: Counter = Counter()  # name -> how many enclosing binders bind it here
    # A walk with explicit "bind"/"unbind" steps: one set for the whole walk (copying a
    # set of the bound names at every binder would be quadratic in a block's length).
    BIND, UNBIND = 0, 1
    stack: list = [node]
    while stack:
        item = stack.pop()
        if type(item) is tuple:
            action, name = item
            if action == BIND:
                bound[name] += 1
            else:
                bound[name] -= 1
            continue
        n = item
        if isinstance(n, bb.Reference):
            if not bound[n.name]:
                free.add(n.name)
        elif isinstance(n, bb.Lambda):
            if n.parameter_name:
                stack.append((UNBIND, n.parameter_name))
                stack.append(n.result)
                stack.append((BIND, n.parameter_name))
            else:
                stack.append(n.result)
        elif isinstance(n, bb.Block):
            # In order: value_1, bind name_1, value_2, bind name_2, …, result, then unbind them all.
            steps: list = []
            for name, value in n.locals:
                steps.append(value)
                steps.append((BIND, name))
            steps.append(n.result)
            steps.extend((UNBIND, name) for name, _ in n.locals)
            stack.extend(reversed(steps))
        else:
            stack.extend(reversed(n.children()))
    return free


def reference_counts(node: bb.Node) -> Counter:
    """How many times each name is referenced in ``node`` (names are SSA, so no shadowing)."""
    return Counter(n.name for n in node.walk() if isinstance(n, bb.Reference))


class Names(FreshNames):
    """Fresh SSA names for one computation: ``names.fresh("mean")`` -> ``mean``, ``mean_1``, …

    Knows every name bound or referenced in ``nodes``. A base that already ends in a
    numeric suffix loses it first, so a copy of ``mean_1`` is named ``mean_2``, not ``mean_1_1``.
    """

    def __init__(self, *nodes: bb.Node, taken: Iterable[str] = ()):
        super().__init__(taken)
        for node in nodes:
            self.used |= bound_names(node)
            self.used |= free_references(node)

    def fresh(self, base: str) -> str:
        base = identifier(base)
        return super().fresh(_NUMERIC_SUFFIX.sub("", base) or base)


_NUMERIC_SUFFIX = re.compile(r"_\d+$")


def substitute(node: bb.Node, replacements: dict[str, bb.Node]) -> bb.Node:
    """``node`` with free references to the given names replaced (names are SSA: no capture)."""
    if not replacements:
        return node

    def replace(n: bb.Node):
        if isinstance(n, bb.Reference) and n.name in replacements:
            return replacements[n.name]
        return None

    return rewrite(node, replace)


def rename_bound(node: bb.Node, names: Names, only: Optional[Iterable[str]] = None) -> bb.Node:
    """A copy of ``node`` whose every binder gets a fresh name (for inlining a second copy).

    With ``only``, just the binders named in ``only`` are renamed (the others keep their names).
    """
    mapping: dict[str, str] = {}
    selected = bound_names(node)
    if only is not None:
        selected &= set(only)
    for old in sorted(selected):
        mapping[old] = names.fresh(old)
    if not mapping:
        return node
    return _rename_binders(node, lambda name: mapping.get(name, name))


def _rename_binders(node: bb.Node, rename: Callable[[str], str]) -> bb.Node:
    """``node`` with each binder renamed ``rename(name)`` (called in binding order) and its uses updated.

    Names are SSA, so every use of a binder follows it and sees the new name.
    """
    mapping: dict[str, str] = {}

    def bind(name: str) -> str:
        mapping[name] = rename(name)
        return mapping[name]

    def visit(n: bb.Node) -> bb.Node:
        if isinstance(n, bb.Reference):
            if n.name in mapping:
                return bb.Reference(mapping[n.name], n.type_signature, n.location)
            return n
        if isinstance(n, bb.Lambda):
            name = bind(n.parameter_name) if n.parameter_name is not None else None
            return bb.Lambda(name, n.parameter_type, visit(n.result), n.location)
        if isinstance(n, bb.Block):
            new_locals = []
            for name, value in n.locals:
                value = visit(value)
                new_locals.append((bind(name), value))
            return bb.Block(new_locals, visit(n.result), n.location)
        children = list(n.children())
        if not children:
            return n
        return with_children(n, [visit(c) for c in children])

    return visit(node)


def transform_computations(module: Module, fn: Callable[[str, bb.Node], Optional[bb.Node]]) -> Module:
    """``fn(symbol, node)`` on each computation (None keeps it); ``module`` itself when nothing changed.

    A computation counts as unchanged when ``fn`` returns None, the same node, or
    an equal node with the same locations.
    """
    table = []
    changed = False
    for symbol, node in module.items():
        result = fn(symbol, node)
        if result is None or result is node or bb.equal(result, node, locations=True):
            table.append((symbol, node))
        else:
            table.append((symbol, result))
            changed = True
    return Module(module.name, table) if changed else module


# --------------------------------------------------------------------------
# Shapes of nodes that several passes look for


def is_atom(node: bb.Node) -> bool:
    """An atom of call-dominant form: a Reference, a Selection of an atom or a Struct of atoms."""
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, bb.Reference):
            continue
        if isinstance(n, bb.Selection):
            stack.append(n.source)
        elif isinstance(n, bb.Struct):
            stack.extend(v for _, v in n.elements)
        else:
            return False
    return True


def is_identity_lambda(node: bb.Node) -> bool:
    """``fn(x) -> x`` (a lambda returning its parameter unchanged)."""
    return (
        isinstance(node, bb.Lambda)
        and node.parameter_name is not None
        and isinstance(node.result, bb.Reference)
        and node.result.name == node.parameter_name
    )


def selection_lambda_index(node: bb.Node) -> Optional[int]:
    """``i`` when ``node`` is ``fn(x) -> x[i]`` (or ``x.name``, the name's index), else None."""
    if not isinstance(node, bb.Lambda) or node.parameter_name is None:
        return None
    body = node.result
    if (
        isinstance(body, bb.Selection)
        and isinstance(body.source, bb.Reference)
        and body.source.name == node.parameter_name
    ):
        return body.resolved_index
    return None


_SHORT_NAMES = {
    "federated_map": "mapped",
    "federated_map_all_equal": "mapped",
    "federated_apply": "applied",
    "federated_zip_at_clients": "zipped",
    "federated_zip_at_server": "zipped",
    "federated_value_at_clients": "value",
    "federated_value_at_server": "value",
    "federated_eval_at_clients": "evaluated",
    "federated_eval_at_server": "evaluated",
}


def short_name(node: bb.Node) -> str:
    """A readable base for a fresh local holding ``node`` (``broadcast``, ``mapped``, ``mean``, …)."""
    if isinstance(node, bb.Call):
        function = node.function
        if isinstance(function, bb.Intrinsic):
            if function.uri in _SHORT_NAMES:
                return _SHORT_NAMES[function.uri]
            return re.sub(r"^(federated|sequence)_", "", function.uri)
        if isinstance(function, (bb.SymbolRef, bb.Reference)):
            return function.name
        if isinstance(function, bb.Compiled) and function.name:
            return function.name
        return "call"
    if isinstance(node, bb.Lambda):
        return "fn"
    if isinstance(node, bb.Intrinsic):
        return re.sub(r"^(federated|sequence)_", "", node.uri)
    if isinstance(node, bb.Compiled):
        return node.name or "compiled"
    if isinstance(node, bb.SymbolRef):
        return node.name
    if isinstance(node, bb.Literal):
        return "const"
    if isinstance(node, bb.Placement):
        return node.placement.name.lower()
    if isinstance(node, bb.Data):
        return "data"
    if isinstance(node, bb.Reference):
        return node.name
    return "v"


def coerce(node: bb.Node, target, names: Names) -> Optional[bb.Node]:
    """An expression of exactly type ``target`` with the value of ``node`` (whose type is
    assignable to ``target``), or None when fedc has no way to write the conversion.

    Structs are rebuilt with ``target``'s element names (from selections of ``node``, so
    ``node`` should be an atom); federated values and sequences whose member type differs
    are mapped with an identity function of the target member type. Tensor shapes that
    only ``target`` leaves unknown, and function types, cannot be converted.
    """
    from fedc.ir.build import call as intrinsic_call
    from fedc.types import CLIENTS, FederatedType, SequenceType, StructType

    source = node.type_signature
    if source == target:
        return node
    if not target.is_assignable_from(source):
        return None
    if isinstance(target, StructType) and isinstance(source, StructType):
        elements = []
        for index, (name, element_type) in enumerate(target.items()):
            if isinstance(node, bb.Struct):
                element = node.elements[index][1]
            else:
                element = bb.Selection(node, index=index, location=node.location)
            converted = coerce(element, element_type, names)
            if converted is None:
                return None
            elements.append((name, converted))
        return bb.Struct(elements, target.python_container, node.location)

    def identity(member):
        parameter = names.fresh("x")
        return bb.Lambda(parameter, member, bb.Reference(parameter, member))

    if isinstance(target, FederatedType) and isinstance(source, FederatedType):
        if target.placement is CLIENTS:
            uri = "federated_map_all_equal" if target.all_equal else "federated_map"
        else:
            uri = "federated_apply"
        return intrinsic_call(uri, bb.Struct([identity(target.member), node]), node.location)
    if isinstance(target, SequenceType) and isinstance(source, SequenceType):
        return intrinsic_call("sequence_map", bb.Struct([identity(target.element), node]), node.location)
    return None


def alpha_normal(node: bb.Node, prefix: str = "_a") -> bb.Node:
    """``node`` with its binders renamed ``<prefix>0``, ``<prefix>1``, … in order of binding.

    Two alpha-equivalent nodes (equal up to the names of their binders) have equal
    alpha-normal forms. Choose a ``prefix`` that no free name of ``node`` starts with.
    """
    counter = iter(range(1 << 62))
    return _rename_binders(node, lambda name: f"{prefix}{next(counter)}")


def needs_own_local(atom: bb.Node) -> bool:
    """Whether ``atom`` must keep a local of its own rather than be substituted into its uses.

    A placement-free value selected out of a placed one (``%arg.k`` where ``%arg`` is
    ``<x={float32}@CLIENTS,k=float32>``) may be used inside a placement-free lambda only
    through a local: the lambda may not reference the placed ``%arg`` itself.
    """
    if isinstance(atom, bb.Reference) or atom.type_signature.is_placed:
        return False
    return any(isinstance(n, bb.Reference) and n.type_signature.is_placed for n in atom.walk())
