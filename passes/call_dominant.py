"""Call-dominant form: the A-normal form of the orchestration level (see docs/passes.md).

``call-dominant`` rewrites every computation of a module into call-dominant
form (CDF)::

    Lambda(p, Block([(n1, v1), …, (nk, vk)], result))     # Lambda(p, result) when k = 0

where the result and every call argument is an *atom* (a Reference, a
Selection of an atom, a Struct of atoms) and every local value ``vi`` is
exactly one of: an intrinsic call on an atom (or without argument); a call of
a function held by a local (or of a ``SymbolRef``, when ``inline`` has not
run) on an atom; a function value (a ``Lambda``, a ``Compiled``, an uncalled
``Intrinsic`` or ``SymbolRef``); a constant (``Literal``, ``Data``,
``Placement``). A computation that is not a Lambda is such a Block, or an atom,
or — left as it is — a single function value or constant (``fedc.value @f {
fedc.compiled … }``, the usual form of a TensorFlow function of the module).

How the pass gets there, in one walk over each computation:

* nested blocks are flattened into the one block of the computation;
* every intrinsic call, call of a function value and non-atomic value gets a
  local of its own (a block local keeps its name; new locals are named after
  what they hold: ``broadcast``, ``mapped``, ``mean``, ``const``, …);
* a lambda called where it is defined (``Call(Lambda(p, body), arg)``, also
  through blocks) is beta-reduced: ``p`` stands for the argument's atom in
  ``body``, whose locals join the block. A *placed* lambda (one whose type
  mentions a placement: orchestration code) that is bound to a local and
  called through it is inlined at the call the same way; a placement-free
  function held by a local stays a call (case 2 of the form);
* a call through a local bound to an uncalled intrinsic calls the intrinsic;
* aliases (locals bound to an atom) are substituted away, and so are
  selections of struct literals (``<a, b>[0]`` is ``a``). One alias stays:
  a placement-free value selected out of a placed one (``%k = %arg.k`` with
  ``%arg: <x={float32}@CLIENTS,k=float32>``), because a placement-free lambda
  may use ``%k`` but not the placed ``%arg`` (the verifier's placement rule);
* function values and constants are bound to locals, so that function
  arguments of intrinsics are references (``%f = fedc.lambda …`` then
  ``fed.map(%f, %x)``).

The bodies of placement-free lambdas are local code and are left as they are,
except that references to renamed or substituted names are rewritten. The
bodies of placed lambdas that stay function values are put in CDF too.

When an argument's type is only assignable to a lambda's parameter type, it is
converted (struct names; an identity map for federated values) so that every
reference keeps its binder's exact type; when no conversion exists (tensor
shapes made unknown, function types) the lambda is bound to a local and called
through it instead.

:func:`is_call_dominant` checks the form and says why a node is not in it.
"""

from __future__ import annotations

import re
from typing import Optional

from fedc.ir import building_blocks as bb
from fedc.limits import deep_recursion
from fedc.ir.module import Module

from .manager import PassContext, register
from .util import (
    Names,
    bound_names,
    coerce,
    free_references,
    needs_own_local,
    rename_bound,
    short_name,
    substitute,
    transform_computations,
)

__all__ = ["call_dominant", "is_call_dominant", "to_call_dominant"]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


# --------------------------------------------------------------------------
# The checker


_CONSTANTS = (bb.Literal, bb.Data, bb.Placement)
_FUNCTION_VALUES = (bb.Lambda, bb.Compiled, bb.Intrinsic, bb.SymbolRef)
# A computation that is one of these (``fedc.value @f { fedc.compiled … }``) is in the
# form as it is: binding it to a local only to return that local would say nothing more.
_LEAF_VALUES = (bb.Compiled, bb.Intrinsic, bb.SymbolRef) + _CONSTANTS


def _atom_problem(node: bb.Node) -> Optional[str]:
    """Why ``node`` is not an atom of CDF (None if it is one)."""
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, bb.Reference):
            continue
        if isinstance(n, bb.Selection):
            if isinstance(n.source, bb.Struct):
                return "it selects from a struct literal"
            stack.append(n.source)
        elif isinstance(n, bb.Struct):
            stack.extend(v for _, v in n.elements)
        else:
            return f"it contains a {type(n).__name__} (atoms are references, selections and structs)"
    return None


def _describe(node: bb.Node) -> str:
    return f"{type(node).__name__}{' at ' + str(node.location) if node.location is not None else ''}"


def _value_problem(value: bb.Node) -> Optional[str]:
    """Why ``value`` may not be the value of a local in CDF (None if it may)."""
    if isinstance(value, bb.Call):
        function = value.function
        if value.argument is not None:
            problem = _atom_problem(value.argument)
            if problem:
                return f"the argument of the call is not an atom: {problem}"
        if isinstance(function, bb.Intrinsic):
            return None
        if isinstance(function, bb.SymbolRef):
            return None
        if isinstance(function, bb.Lambda):
            return "it calls a lambda where it is defined (it should be beta-reduced)"
        if isinstance(function, (bb.Reference, bb.Selection)):
            problem = _atom_problem(function)
            if problem:
                return f"the called function is not a reference: {problem}"
            return None
        return f"it calls a {type(function).__name__}, not an intrinsic, a local or a symbol"
    if isinstance(value, bb.Lambda):
        if value.type_signature.is_placed:
            problem = is_call_dominant(value)
            if problem:
                return f"the placed lambda is not in call-dominant form: {problem}"
        return None
    if isinstance(value, _FUNCTION_VALUES) or isinstance(value, _CONSTANTS):
        return None
    if isinstance(value, bb.Block):
        return "it is a nested block"
    if _atom_problem(value) is None:
        if needs_own_local(value):
            return None  # a placement-free part of a placed value, for local lambdas to use
        return "it is bound to an atom (an alias that should be substituted)"
    return f"it is a {type(value).__name__}, not a call, a function value or a constant"


def is_call_dominant(node: bb.Node) -> Optional[str]:
    """None if ``node`` (a computation) is in call-dominant form, else the reason it is not.

    The form is the one of docs/passes.md: ``Lambda(p, Block(locals, atom))`` or
    ``Lambda(p, atom)`` (a non-Lambda is the Block or the atom, or a single function
    value or constant such as a ``Compiled`` computation); each local is an
    intrinsic call, a call of a local function or a symbol, a function value or a
    constant, on atoms. Placed lambdas bound to locals must be in the form too;
    the bodies of placement-free lambdas are not checked.
    """
    if isinstance(node, _LEAF_VALUES):
        return None
    body = node.result if isinstance(node, bb.Lambda) else node
    if isinstance(body, bb.Block):
        if not body.locals:
            return _where(body, "a block without locals (the result alone is the form)")
        for name, value in body.locals:
            problem = _value_problem(value)
            if problem:
                return f"local %{name} ({_describe(value)}): {problem}"
        result = body.result
    else:
        result = body
    problem = _atom_problem(result)
    if problem:
        return f"the result ({_describe(result)}) is not an atom: {problem}"
    return None


def _where(node: bb.Node, message: str) -> str:
    return f"{message}{' at ' + str(node.location) if node.location is not None else ''}"


# --------------------------------------------------------------------------
# The pass


class _Normalizer:
    """Puts one computation into CDF; see the module docstring.

    ``env`` maps a name of the input to the atom that stands for it in the output
    (names not in ``env`` stand for themselves). Names bound in the output are
    unique: a binder keeps its input name unless the output already binds it
    (a lambda inlined twice), then it gets a fresh one.
    """

    def __init__(self, root: bb.Node, ctx: PassContext):
        self.names = Names(root)
        self.bound: set[str] = set()
        self.ctx = ctx
        # output local -> (input lambda, its environment), for placed lambdas
        self.closures: dict[str, tuple[bb.Lambda, dict]] = {}
        # output local -> the intrinsic it holds uncalled
        self.intrinsics: dict[str, bb.Intrinsic] = {}

    # Names ------------------------------------------------------------------
    def bind_name(self, hint: str) -> str:
        if hint in self.bound or not _IDENTIFIER.match(hint):
            name = self.names.fresh(hint)
        else:
            name = hint
        self.names.used.add(name)
        self.bound.add(name)
        return name

    def emit(self, value: bb.Node, hint: Optional[str], out: list) -> bb.Reference:
        if hint is None:
            self.ctx.stat("values-bound")
            hint = short_name(value)
        name = self.bind_name(hint)
        out.append((name, value))
        if isinstance(value, bb.Intrinsic):
            self.intrinsics[name] = value
        return bb.Reference(name, value.type_signature)

    # The top --------------------------------------------------------------------
    def computation(self, root: bb.Node) -> bb.Node:
        if isinstance(root, bb.Lambda):
            env: dict = {}
            name = None
            if root.parameter_name is not None:
                name = self.bind_name(root.parameter_name)
                if name != root.parameter_name:
                    env[root.parameter_name] = bb.Reference(name, root.parameter_type)
            body = self.region(root.result, env)
            return bb.Lambda(name, root.parameter_type, body, root.location)
        if isinstance(root, _LEAF_VALUES):
            return root  # a named function value or constant, e.g. an extern TensorFlow function
        return self.region(root, {})

    def region(self, node: bb.Node, env: dict) -> bb.Node:
        out: list = []
        if isinstance(node, bb.Block):
            inner = dict(env)
            self.bind_locals(node.locals, inner, out)
            result = self.atom(node.result, inner, out)
        else:
            result = self.atom(node, env, out)
        if not out:
            return result
        location = node.location if isinstance(node, bb.Block) else None
        return bb.Block(out, result, location)

    # Atoms ----------------------------------------------------------------------
    def atom(self, node: bb.Node, env: dict, out: list, hint: Optional[str] = None) -> bb.Node:
        """The atom standing for ``node``; bindings it needs are appended to ``out``."""
        if isinstance(node, bb.Reference):
            target = env.get(node.name)
            if target is None:
                return node
            if isinstance(target, bb.Reference):
                if target.name == node.name and target.location == node.location:
                    return node
                return bb.Reference(target.name, node.type_signature, node.location)
            return target
        if isinstance(node, bb.Selection):
            source = self.atom(node.source, env, out)
            if isinstance(source, bb.Struct):
                self.ctx.stat("selections-folded")
                return source.elements[node.resolved_index][1]
            if source is node.source:
                return node
            return bb.Selection(source, node.name, node.index, node.location)
        if isinstance(node, bb.Struct):
            elements = [(n, self.atom(v, env, out)) for n, v in node.elements]
            if all(a is v for (_, a), (_, v) in zip(elements, node.elements)):
                return node
            return bb.Struct(elements, node.python_container, node.location)
        if isinstance(node, bb.Block):
            self.ctx.stat("blocks-flattened")
            inner = dict(env)
            self.bind_locals(node.locals, inner, out)
            return self.atom(node.result, inner, out, hint)
        if isinstance(node, bb.Call):
            return self.call(node, env, out, hint)
        if isinstance(node, bb.Lambda):
            return self.lambda_local(node, env, out, hint)
        # Function values and constants.
        return self.emit(node, hint or short_name(node), out)

    def bind_locals(self, locals_, env: dict, out: list) -> None:
        """Binds the locals of a block being flattened; ``env`` learns what each stands for."""
        for name, value in locals_:
            before = len(out)
            atom = self.atom(value, env, out, hint=name)
            if isinstance(atom, bb.Reference) and atom.name == name:
                continue
            if needs_own_local(atom):
                atom = self.emit(atom, name, out)
            env[name] = atom
            emitted = isinstance(atom, bb.Reference) and any(n == atom.name for n, _ in out[before:])
            if not emitted:
                self.ctx.stat("aliases-removed")

    def lambda_local(self, node: bb.Lambda, env: dict, out: list, hint: Optional[str]) -> bb.Reference:
        value = self.lambda_value(node, env)
        ref = self.emit(value, hint or "fn", out)
        if node.type_signature.is_placed:
            self.closures[ref.name] = (node, env)
        return ref

    def lambda_value(self, node: bb.Lambda, env: dict) -> bb.Lambda:
        """``node`` as a function value of the output."""
        if node.type_signature.is_placed:
            # Orchestration code: its body is put in CDF as well.
            inner = dict(env)
            name = None
            if node.parameter_name is not None:
                name = self.bind_name(node.parameter_name)
                inner[node.parameter_name] = bb.Reference(name, node.parameter_type)
            body = self.region(node.result, inner)
            rebuilt = bb.Lambda(name, node.parameter_type, body, node.location)
            return node if _same_locations(rebuilt, node) else rebuilt
        # Local code: only renamed binders and substituted free references.
        replacements = {}
        for name in free_references(node):
            target = env.get(name)
            if target is not None and not (isinstance(target, bb.Reference) and target.name == name):
                replacements[name] = target
        binders = bound_names(node)
        clashes = binders & self.bound
        if clashes:
            node = rename_bound(node, self.names, only=clashes)
            binders = bound_names(node)
        self.bound |= binders
        self.names.used |= binders
        return substitute(node, replacements)

    # Calls -------------------------------------------------------------------------
    def call(self, node: bb.Call, env: dict, out: list, hint: Optional[str]) -> bb.Node:
        kind, function = self.callee(node.function, env, out)
        argument = None if node.argument is None else self.atom(node.argument, env, out)
        if kind == "lambda":
            lam, lam_env, bound_as = function
            result = self.beta(lam, lam_env, argument, out, hint)
            if result is not None:
                self.ctx.stat("lambdas-beta-reduced" if bound_as is None else "placed-calls-inlined")
                return result
            function = bound_as if bound_as is not None else self.lambda_local(lam, lam_env, out, None)
        call = bb.Call(function, argument, node.location)
        if call == node and _same_locations(call, node):
            call = node
        return self.emit(call, hint, out)

    def callee(self, function: bb.Node, env: dict, out: list):
        """("lambda", (lambda, env, local or None)) for a lambda to beta-reduce, or
        ("direct", node) for an intrinsic, a symbol or an atom to call."""
        if isinstance(function, bb.Lambda):
            return "lambda", (function, env, None)
        if isinstance(function, bb.Block):
            self.ctx.stat("blocks-flattened")
            inner = dict(env)
            self.bind_locals(function.locals, inner, out)
            return self.callee(function.result, inner, out)
        if isinstance(function, (bb.Intrinsic, bb.SymbolRef)):
            return "direct", function
        atom = self.atom(function, env, out)
        if isinstance(atom, bb.Reference):
            if atom.name in self.closures:
                lam, lam_env = self.closures[atom.name]
                return "lambda", (lam, lam_env, atom)
            if atom.name in self.intrinsics:
                self.ctx.stat("intrinsic-calls-resolved")
                return "direct", self.intrinsics[atom.name]
        return "direct", atom

    def beta(self, lam: bb.Lambda, lam_env: dict, argument: Optional[bb.Node], out: list, hint) -> Optional[bb.Node]:
        """The atom of ``lam``'s body with its parameter standing for ``argument``; None if
        the argument cannot be given the parameter's exact type."""
        inner = dict(lam_env)
        if lam.parameter_name is not None:
            target = lam.parameter_type
            if argument.type_signature != target:
                converted = coerce(argument, target, self.names)
                if converted is None:
                    return None
                self.ctx.stat("arguments-converted")
                # The conversion is built from output names only: normalize it with no env.
                argument = self.atom(converted, {}, out)
            if needs_own_local(argument):
                argument = self.emit(argument, lam.parameter_name, out)
            inner[lam.parameter_name] = argument
        return self.atom(lam.result, inner, out, hint)


def _same_locations(a: bb.Node, b: bb.Node) -> bool:
    return bb.equal(a, b, locations=True)


@deep_recursion
def to_call_dominant(node: bb.Node, ctx: Optional[PassContext] = None) -> bb.Node:
    """``node`` (a computation) in call-dominant form."""
    ctx = ctx or PassContext("call-dominant")
    return _Normalizer(node, ctx).computation(node)


@register("call-dominant")
@deep_recursion
def call_dominant(module: Module, ctx: PassContext) -> Module:
    """Puts computations into call-dominant form (flat blocks of intrinsic and function calls on references)."""
    return transform_computations(module, lambda symbol, node: to_call_dominant(node, ctx))
