"""Aggregations that are sums: a zero of zeros, ``merge`` adding, ``accumulate(a, v)`` adding ``g(v)`` to ``a``.

Desugared sums and means (``passes/aggregates.py``) and the aggregation of a
MapReduce form (:mod:`fedc.ir.mapreduce`) have this shape. Recognizing it
lets a sum over clients run as one ``federated_sum`` of the summands ``g(v)``
(one batched reduction) instead of a fold, client after client. Matching is
structural, element-wise over the accumulator's struct, with the operands of
each ``add`` in either order.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from fedc.ir import building_blocks as bb
from fedc.ir.transform import rewrite
from fedc.types import StructType, TensorType, Type

__all__ = ["add_operands", "intrinsic_call_parts", "is_path", "is_summable", "is_zero", "match_accumulate",
           "match_merge", "struct_operands", "summands", "tensor_leaves", "type_at", "uses_only"]


def tensor_leaves(t: Type, path: tuple = ()) -> list[tuple[tuple, Type]]:
    """``(path, leaf type)`` of each non-struct element of ``t``, in order."""
    if isinstance(t, StructType):
        leaves = []
        for index, element in enumerate(t):
            leaves.extend(tensor_leaves(element, path + (index,)))
        return leaves
    return [(path, t)]


def type_at(t: Type, path: Sequence[int]) -> Type:
    for index in path:
        t = t[index]
    return t


def is_summable(t: Type, known_shapes: bool = True) -> bool:
    """Whether ``t`` can be a sum form's summand type: numeric tensors (with fully known shapes)."""
    return all(
        isinstance(leaf, TensorType) and (leaf.is_fully_defined() or not known_shapes) and leaf.dtype.kind in "iufc"
        for _, leaf in tensor_leaves(t)
    )


def intrinsic_call_parts(value: bb.Node) -> Optional[tuple[str, Optional[bb.Node]]]:
    """``(uri, argument)`` when ``value`` is a call of an intrinsic."""
    if isinstance(value, bb.Call) and isinstance(value.function, bb.Intrinsic):
        return value.function.uri, value.argument
    return None


def struct_operands(argument: Optional[bb.Node], count: int) -> Optional[list[bb.Node]]:
    """The elements of an intrinsic's struct argument written as a struct literal."""
    if isinstance(argument, bb.Struct) and len(argument) == count:
        return [v for _, v in argument.elements]
    return None


def is_zero(node: bb.Node, defs: dict) -> bool:
    """Whether ``node`` (references to ``defs`` followed) is zeros: literals of 0, ``zeros``, casts of them."""
    for _ in range(len(defs) + 1):
        if isinstance(node, bb.Reference) and node.name in defs:
            node = defs[node.name]
        else:
            break
    if isinstance(node, bb.Literal):
        return node.value.dtype.kind in "iufc" and not np.any(node.value)
    if isinstance(node, bb.Struct):
        return all(is_zero(v, defs) for _, v in node.elements)
    if isinstance(node, bb.Call) and isinstance(node.function, bb.Intrinsic):
        if node.function.uri == "zeros":
            return True
        if node.function.uri == "cast" and node.argument is not None:
            return is_zero(node.argument, defs)
    return False


def is_path(node: bb.Node, root: str, path: Sequence[int]) -> bool:
    """Whether ``node`` is ``%root[path[0]][path[1]]...``."""
    for index in reversed(path):
        if not isinstance(node, bb.Selection) or node.resolved_index != index:
            return False
        node = node.source
    return isinstance(node, bb.Reference) and node.name == root


def uses_only(node: bb.Node, root: str, index: int) -> bool:
    """Whether every reference to ``root`` in ``node`` is inside a selection of its element ``index``."""
    if isinstance(node, bb.Selection) and isinstance(node.source, bb.Reference) and node.source.name == root:
        return node.resolved_index == index
    if isinstance(node, bb.Reference):
        return node.name != root
    return all(uses_only(child, root, index) for child in node.children())


def add_operands(node: bb.Node) -> Optional[tuple[bb.Node, bb.Node]]:
    parts = intrinsic_call_parts(node)
    if parts is None or parts[0] != "add":
        return None
    return tuple(struct_operands(parts[1], 2) or ()) or None


def match_accumulate(node: bb.Node, a: str, path: tuple, u: Type) -> Optional[bb.Node]:
    """The summand expression when ``node`` adds something to ``%a[0]`` at ``path`` (element-wise)."""
    operands = add_operands(node)
    if operands is not None:
        for acc, summand in (operands, operands[::-1]):
            if is_path(acc, a, (0,) + path) and uses_only(summand, a, 1):
                if summand.type_signature == type_at(u, path):
                    return summand
        return None
    t = type_at(u, path)
    if isinstance(node, bb.Struct) and isinstance(t, StructType) and len(node) == len(t):
        if [n for n, _ in node.elements] != t.names():
            return None
        parts = []
        for index, (name, element) in enumerate(node.elements):
            part = match_accumulate(element, a, path + (index,), u)
            if part is None:
                return None
            parts.append((name, part))
        return bb.Struct(parts)
    return None


def match_merge(node: bb.Node, m: str, path: tuple, u: Type) -> bool:
    """Whether ``node`` adds ``%m[0]`` and ``%m[1]`` at ``path`` (element-wise)."""
    operands = add_operands(node)
    if operands is not None:
        x, y = operands
        return (is_path(x, m, (0,) + path) and is_path(y, m, (1,) + path)) or (
            is_path(x, m, (1,) + path) and is_path(y, m, (0,) + path)
        )
    t = type_at(u, path)
    if isinstance(node, bb.Struct) and isinstance(t, StructType) and len(node) == len(t):
        return all(match_merge(e, m, path + (i,), u) for i, (_, e) in enumerate(node.elements))
    return False


def _inlined(node: bb.Node) -> bb.Node:
    """A small lambda body with its block's locals substituted into the result (one expression to match)."""
    if not isinstance(node, bb.Block):
        return node
    env: dict[str, bb.Node] = {}

    def put(n: bb.Node):
        if isinstance(n, bb.Reference) and n.name in env:
            return env[n.name]
        return None

    for name, value in node.locals:
        env[name] = rewrite(_inlined(value), put)
    return rewrite(_inlined(node.result), put)


def summands(zero: bb.Node, accumulate: bb.Node, merge: bb.Node) -> Optional[bb.Lambda]:
    """``(v -> g(v))`` when the aggregation of ``zero`` (a value, or a function of nothing), ``accumulate`` and
    ``merge`` (lambdas) is the sum of ``g`` over the values: zeros, ``accumulate(a, v) = a + g(v)`` and
    ``merge = add``, element-wise over a summable accumulator. None otherwise."""
    if isinstance(zero, bb.Lambda):
        if zero.parameter_type is not None:
            return None
        zero = zero.result
    zero = _inlined(zero)
    u = zero.type_signature
    if not is_summable(u) or not is_zero(zero, {}):
        return None
    if not isinstance(merge, bb.Lambda) or merge.parameter_name is None:
        return None
    if not match_merge(_inlined(merge.result), merge.parameter_name, (), u):
        return None
    if not isinstance(accumulate, bb.Lambda) or accumulate.parameter_name is None:
        return None
    a, pair_type = accumulate.parameter_name, accumulate.parameter_type
    summand = match_accumulate(_inlined(accumulate.result), a, (), u)
    if summand is None:
        return None
    v = bb.Reference(a, pair_type[1])  # every use of %a is %a[1] (matched): it becomes the value itself

    def replace(n: bb.Node):
        if (isinstance(n, bb.Selection) and isinstance(n.source, bb.Reference) and n.source.name == a
                and n.source.type_signature == pair_type):  # (not the new %a, of the value's type)
            return v
        return None

    return bb.Lambda(a, pair_type[1], rewrite(summand, replace), accumulate.location)
