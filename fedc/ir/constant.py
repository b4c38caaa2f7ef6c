"""Folding constant IR expressions to values, without a backend.

Passes sometimes need the value of an expression that is constant by
construction — the bounds of a secure sum, say. :func:`fold` evaluates the
small language of such expressions directly: literals, structs, selections,
blocks and references, calls of lambdas, computations of the module that are
values (``@bounds``), and the elementwise arithmetic local ops (``add``,
``subtract``, ``multiply``, ``floor_divide``, ``mod``, ``pow``, ``maximum``,
``minimum``, ``negative``, ``abs``, ``cast``). Anything else — a federated
value, a TensorFlow block, a reduction — is not a constant here, and
:func:`fold` says which node stopped it. Integer arithmetic is exact: a result
that does not fit its dtype is an error, not a wrapped value.

Values are numpy arrays (0-d for scalars) and tuples for structs, as the
reference interpreter represents them.
"""

from __future__ import annotations

import operator
from typing import Any, Callable, Optional

import numpy as np

from fedc.errors import FedcError
from fedc.ir import building_blocks as bb
from fedc.ir.module import Module
from fedc.types import FunctionType, StructType, TensorType, dtype_name
from fedc.values import convert

__all__ = ["FOLDABLE_OPS", "NotConstant", "fold"]


class NotConstant(FedcError):
    """The expression is not one :func:`fold` can evaluate."""


# uri -> the operation on numpy operands (object arrays for integers, so the arithmetic is exact);
# cast has none: it converts by fedc's one rule (fedc.values.convert).
FOLDABLE_OPS: dict[str, Optional[Callable[..., Any]]] = {
    "add": operator.add,
    "subtract": operator.sub,
    "multiply": operator.mul,
    "floor_divide": operator.floordiv,
    "mod": operator.mod,
    "pow": operator.pow,
    "maximum": np.maximum,
    "minimum": np.minimum,
    "negative": operator.neg,
    "abs": np.abs,
    "cast": None,  # converted by fedc.values.convert
}


class _Lambda:
    __slots__ = ("node", "env")

    def __init__(self, node: bb.Lambda, env: dict):
        self.node = node
        self.env = env


def fold(node: bb.Node, module: Optional[Module] = None) -> Any:
    """The value of the constant expression ``node`` (symbols resolved in ``module``).

    Raises :class:`NotConstant` naming the first node that is not constant.
    """
    return _Folder(module).value(node, {})


class _Folder:
    def __init__(self, module: Optional[Module]):
        self.module = module
        self.symbols: dict[str, Any] = {}

    def value(self, node: bb.Node, env: dict) -> Any:
        result = self.evaluate(node, env)
        if isinstance(result, _Lambda):
            raise NotConstant(f"{node.describe()} of type {node.type_signature} is a function, not a constant")
        return result

    def evaluate(self, node: bb.Node, env: dict) -> Any:
        kind = type(node)
        if kind is bb.Literal:
            return node.value
        if kind is bb.Reference:
            if node.name not in env:
                raise NotConstant(f"%{node.name} of type {node.type_signature} is not bound to a constant")
            return env[node.name]
        if kind is bb.Struct:
            return tuple(self.value(v, env) for _, v in node.elements)
        if kind is bb.Selection:
            return self.value(node.source, env)[node.resolved_index]
        if kind is bb.Block:
            inner = dict(env)
            for name, value in node.locals:
                inner[name] = self.evaluate(value, inner)
            return self.evaluate(node.result, inner)
        if kind is bb.Lambda:
            return _Lambda(node, env)
        if kind is bb.SymbolRef:
            return self.symbol(node)
        if kind is bb.Call:
            return self.call(node, env)
        raise NotConstant(f"{node.describe()} of type {node.type_signature} is not a constant")

    def symbol(self, node: bb.SymbolRef) -> Any:
        if self.module is None or node.name not in self.module:
            raise NotConstant(f"@{node.name} is not a computation of the module")
        if node.name not in self.symbols:
            target = self.module[node.name]
            if isinstance(target.type_signature, FunctionType) and not isinstance(target, bb.Lambda):
                raise NotConstant(f"@{node.name} of type {target.type_signature} is not a constant")
            self.symbols[node.name] = self.evaluate(target, {})
        return self.symbols[node.name]

    def call(self, node: bb.Call, env: dict) -> Any:
        function = node.function
        if isinstance(function, bb.Intrinsic):
            return self.op(function, None if node.argument is None else self.value(node.argument, env))
        callee = self.evaluate(function, env)
        if not isinstance(callee, _Lambda):
            raise NotConstant(f"{node.describe()} calls {function.describe()}, which is not a constant function")
        inner = dict(callee.env)
        if callee.node.parameter_name is not None:
            inner[callee.node.parameter_name] = self.value(node.argument, env)
        return self.evaluate(callee.node.result, inner)

    def op(self, intrinsic: bb.Intrinsic, argument: Any) -> Any:
        result_type = intrinsic.type_signature.result
        if intrinsic.uri not in FOLDABLE_OPS or not isinstance(result_type, TensorType):
            raise NotConstant(
                f"{intrinsic.uri} is not folded to a constant (constants fold literals and "
                f"{', '.join(sorted(FOLDABLE_OPS))} on tensors)"
            )
        dtype = result_type.dtype
        if intrinsic.uri == "cast":  # fedc's one conversion rule, as the backends apply it
            try:
                return convert(argument, dtype, f"cast to {dtype_name(dtype)}", cast=True)
            except FedcError as e:
                raise NotConstant(f"cast of constants fails: {e.message}") from None
        fn = FOLDABLE_OPS[intrinsic.uri]
        parameter = intrinsic.type_signature.parameter
        operands = list(argument) if isinstance(parameter, StructType) else [argument]
        exact = dtype.kind in "iub"
        operands = [np.asarray(o).astype(object if exact else np.float64) for o in operands]
        try:
            with np.errstate(all="raise"):
                value = np.asarray(fn(*operands))
        except (ZeroDivisionError, FloatingPointError, ArithmeticError) as e:
            raise NotConstant(f"{intrinsic.uri} of constants fails: {e}") from None
        if exact:
            info = np.iinfo(dtype) if dtype.kind != "b" else None
            flat = [int(v) for v in value.ravel()]
            if info is not None and any(v < info.min or v > info.max for v in flat):
                raise NotConstant(f"{intrinsic.uri} of constants gives a value outside {dtype.name}")
        return np.asarray(value.astype(dtype)).reshape(result_type.shape)
