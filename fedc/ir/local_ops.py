"""First-class local (placement-free) tensor ops: the math passes can see through.

Each op is an entry of the intrinsic registry of kind ``LOCAL`` with one type
rule. Ops apply struct-wise: ``add`` of two structs of the same shape adds
element by element, and a tensor combined with a struct is combined with each
of its elements (``multiply(<w, b>, lr)``). Binary ops take an unnamed pair
``<x,y>``; shapes broadcast the numpy way; the dtypes of the operands must be
equal (use ``cast``).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import numpy as np

from fedc.errors import FedcError, FedcTypeError
from fedc.ir.registry import AttrSpec, IntrinsicDef, IntrinsicKind, Operand, OperandRole, lookup, register
from fedc.types import (
    FederatedType,
    FunctionType,
    PlacementType,
    SequenceType,
    StructType,
    TensorType,
    Type,
    to_dtype,
    dtype_name,
    to_type,
)

__all__ = ["LOCAL_OPS", "broadcast_shapes", "run_time_result_type"]


# --------------------------------------------------------------------------
# Shapes


def broadcast_shapes(a: Optional[tuple], b: Optional[tuple]) -> Optional[tuple]:
    """numpy broadcasting of two shapes with unknown (``None``) dims and ranks."""
    if a is None or b is None:
        return None
    result = []
    for i in range(1, max(len(a), len(b)) + 1):
        x = a[-i] if i <= len(a) else 1
        y = b[-i] if i <= len(b) else 1
        if x == 1:
            result.append(y)
        elif y == 1:
            result.append(x)
        elif x is None:
            result.append(y)
        elif y is None or x == y:
            result.append(x)
        else:
            raise FedcTypeError(f"shapes {_shape_str(a)} and {_shape_str(b)} do not broadcast")
    return tuple(reversed(result))


def _shape_str(shape) -> str:
    if shape is None:
        return "[*]"
    return "[" + ",".join("?" if d is None else str(d) for d in shape) + "]"


# --------------------------------------------------------------------------
# Struct-wise application


def _tensor(t: Type, what: str) -> TensorType:
    if not isinstance(t, TensorType):
        raise FedcTypeError(f"{what} must be a tensor, but has type {t}")
    return t


def _check_local(t: Type) -> None:
    for sub in t.walk():
        if isinstance(sub, (FederatedType, FunctionType, SequenceType, PlacementType)):
            raise FedcTypeError(f"local ops work on tensors and structs of tensors, not on {t}")


def _map_unary(t: Type, fn: Callable[[TensorType], Type]) -> Type:
    if isinstance(t, StructType):
        return StructType([(n, _map_unary(e, fn)) if n else _map_unary(e, fn) for n, e in t.items()])
    return fn(_tensor(t, "the operand"))


def _map_nary(types: list[Type], fn: Callable[..., Type]) -> Type:
    structs = [t for t in types if isinstance(t, StructType)]
    if not structs:
        return fn(*[_tensor(t, "an operand") for t in types])
    first = structs[0]
    for other in structs[1:]:
        if len(other) != len(first) or other.names() != first.names():
            raise FedcTypeError(f"struct operands {first} and {other} do not have the same structure")
    elements = []
    for index, name in enumerate(first.names()):
        parts = [t[index] if isinstance(t, StructType) else t for t in types]
        value = _map_nary(parts, fn)
        elements.append((name, value) if name else value)
    return StructType(elements)


def _operands(d: IntrinsicDef, p: Type, count: int) -> list[Type]:
    if not isinstance(p, StructType) or len(p) != count or any(n is not None for n in p.names()):
        raise FedcTypeError(f"the argument is an unnamed struct of {count} operands")
    for element in p:
        _check_local(element)
    return list(p)


# --------------------------------------------------------------------------
# Rules


def _rule_random(d, p, attrs):
    t = attrs["type"]
    if t is None:
        raise FedcTypeError(f"{d.uri} needs the attribute type")
    _check_local(t)
    for leaf in t.walk():
        if isinstance(leaf, TensorType):
            if not leaf.is_fully_defined():
                raise FedcTypeError(f"{d.uri} needs fully known shapes, but {t} has {leaf}")
            if leaf.dtype.kind != "f":
                raise FedcTypeError(f"{d.uri} draws floating-point numbers, but {t} has {leaf}")
    return t

_KIND_WORDS = {
    "numeric": ("iufc", "numeric"),
    "real": ("iuf", "real numeric"),
    "floating": ("fc", "floating-point"),
    "integer": ("iu", "integer"),
    "bool": ("b", "bool"),
    "any": ("biufcU", "any"),
}


def _require(t: TensorType, kinds: str) -> None:
    allowed, word = _KIND_WORDS[kinds]
    if t.dtype.kind not in allowed:
        raise FedcTypeError(f"operands must be {word} tensors, not {t}")


def _elementwise_rule(arity: int, kinds: str, result_dtype=None):
    def combine(*tensors: TensorType) -> TensorType:
        dtype = tensors[0].dtype
        for t in tensors:
            _require(t, kinds)
            if t.dtype != dtype:
                raise FedcTypeError(
                    "operands must have the same dtype, but have "
                    + " and ".join(dtype_name(x.dtype) for x in tensors)
                    + " (use cast)"
                )
        shape = tensors[0].shape
        for t in tensors[1:]:
            shape = broadcast_shapes(shape, t.shape)
        return TensorType(result_dtype or dtype, shape)

    def rule(d, p, attrs):
        if arity == 1:
            _check_local(p)
            return _map_unary(p, combine)
        return _map_nary(_operands(d, p, arity), combine)

    return rule


def _rule_where(d, p, attrs):
    condition, x, y = _operands(d, p, 3)

    def combine(c: TensorType, a: TensorType, b: TensorType) -> TensorType:
        _require(c, "bool")
        if a.dtype != b.dtype:
            raise FedcTypeError(f"the two branches must have the same dtype, not {a} and {b}")
        return TensorType(a.dtype, broadcast_shapes(broadcast_shapes(c.shape, a.shape), b.shape))

    return _map_nary([condition, x, y], combine)


def _rule_check(d, p, attrs):
    condition, x = _operands(d, p, 2)
    for leaf in condition.walk():
        if isinstance(leaf, TensorType):
            _require(leaf, "bool")
        elif not isinstance(leaf, StructType):
            raise FedcTypeError(f"the condition is a struct of bool tensors, not {condition}")
    if not isinstance(attrs.get("message"), str):
        raise FedcTypeError("check needs its message (the error when the condition fails)")
    return x


def _norm_message(value: Any):
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > 1000:
        raise FedcTypeError(f"message is a non-empty string of at most 1000 characters, not {value!r}")
    return value


def _rule_clip(d, p, attrs):
    x, low, high = _operands(d, p, 3)

    def combine(a: TensorType, lo: TensorType, hi: TensorType) -> TensorType:
        _require(a, "real")
        if not (a.dtype == lo.dtype == hi.dtype):
            raise FedcTypeError(f"the value and its bounds must have the same dtype, not {a}, {lo}, {hi}")
        shape = broadcast_shapes(broadcast_shapes(a.shape, lo.shape), hi.shape)
        if shape != a.shape and a.shape is not None:
            raise FedcTypeError(f"the bounds {lo} and {hi} must broadcast to the value's shape {a}")
        return a

    return _map_nary([x, low, high], combine)


def _rule_cast(d, p, attrs):
    if attrs["dtype"] is None:
        raise FedcTypeError("cast needs the attribute dtype")
    target = to_dtype(attrs["dtype"])
    _check_local(p)

    def convert(t: TensorType) -> TensorType:
        if (t.dtype.kind == "U") != (target.kind == "U"):
            raise FedcTypeError(f"cast converts numbers and bools, not {t} to {dtype_name(target)}")
        return TensorType(target, t.shape)

    return _map_unary(p, convert)


def _rule_reshape(d, p, attrs):
    target = attrs["shape"]
    if target is None:
        raise FedcTypeError("reshape needs the attribute shape")
    t = _tensor(p, "the operand")
    unknown = [i for i, dim in enumerate(target) if dim == -1]
    if len(unknown) > 1:
        raise FedcTypeError(f"the target shape {list(target)} may have at most one -1")
    known_product = math.prod(dim for dim in target if dim != -1)
    if t.is_fully_defined():
        size = math.prod(t.shape)
        if unknown:
            if known_product == 0 or size % known_product:
                raise FedcTypeError(f"cannot reshape {t} to {list(target)}")
            dims = tuple(size // known_product if dim == -1 else dim for dim in target)
        else:
            if size != known_product:
                raise FedcTypeError(f"cannot reshape {t} ({size} elements) to {list(target)} ({known_product} elements)")
            dims = tuple(target)
    else:
        dims = tuple(None if dim == -1 else dim for dim in target)
    return TensorType(t.dtype, dims)


def _rule_matmul(d, p, attrs):
    a, b = (_tensor(t, "a matmul operand") for t in _operands(d, p, 2))
    _require(a, "numeric")
    if a.dtype != b.dtype:
        raise FedcTypeError(f"matmul operands must have the same dtype, not {a} and {b}")
    if a.rank != 2 or b.rank != 2:
        raise FedcTypeError(f"matmul multiplies matrices (rank 2), not {a} and {b}")
    (m, k1), (k2, n) = a.shape, b.shape
    if k1 is not None and k2 is not None and k1 != k2:
        raise FedcTypeError(f"matmul inner dimensions differ: {a} and {b}")
    return TensorType(a.dtype, (m, n))


def _reduce_rule(kinds: str):
    def reduce_tensor(t: TensorType, axis, keepdims) -> TensorType:
        _require(t, kinds)
        if t.shape is None:
            return TensorType(t.dtype, () if axis is None and not keepdims else None)
        rank = len(t.shape)
        if axis is None:
            axes = set(range(rank))
        else:
            axes = set()
            for a in axis:
                if not -rank <= a < rank:
                    raise FedcTypeError(f"axis {a} is out of range for {t} of rank {rank}")
                if a % rank in axes:  # e.g. [1, -2] at rank 3; numpy rejects it
                    raise FedcTypeError(f"axis {list(axis)} names axis {a % rank} of {t} twice")
                axes.add(a % rank)
        dims = []
        for i, dim in enumerate(t.shape):
            if i in axes:
                if keepdims:
                    dims.append(1)
            else:
                dims.append(dim)
        return TensorType(t.dtype, tuple(dims))

    def rule(d, p, attrs):
        _check_local(p)
        return _map_unary(p, lambda t: reduce_tensor(t, attrs["axis"], attrs["keepdims"]))

    return rule


def _rule_fill(d, p, attrs):
    t = attrs["type"]
    if t is None:
        raise FedcTypeError(f"{d.uri} needs the attribute type")
    _check_local(t)
    for leaf in t.walk():
        if isinstance(leaf, TensorType):
            if not leaf.is_fully_defined():
                raise FedcTypeError(f"{d.uri} needs fully known shapes, but {t} has {leaf}")
            _require(leaf, "any" if d.uri == "zeros" else "numeric")
    return t


# --------------------------------------------------------------------------
# Attribute normalizers


def _norm_axis(value: Any):
    if value is None:
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return (int(value),)
    if isinstance(value, (list, tuple)) and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value
    ):
        if len(set(int(v) for v in value)) != len(value):
            raise FedcTypeError(f"axis {list(value)} repeats an axis")
        return tuple(int(v) for v in value)
    raise FedcTypeError(f"axis is None, an int or a list of ints, not {value!r}")


def _norm_bool(value: Any):
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise FedcTypeError(f"expected true or false, not {value!r}")


def _norm_dtype(value: Any):
    if value is None:
        return None
    return dtype_name(to_dtype(value))


def _norm_shape(value: Any):
    if value is None:
        return None
    if isinstance(value, (list, tuple)) and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= -1 for v in value
    ):
        return tuple(int(v) for v in value)
    raise FedcTypeError(f"shape is a list of non-negative ints (and at most one -1), not {value!r}")


def _norm_type(value: Any):
    if value is None:
        return None
    return to_type(value)


_AXIS = AttrSpec("axis", _norm_axis, None, "axes to reduce (all when absent)")
_KEEPDIMS = AttrSpec("keepdims", _norm_bool, False, "keep reduced axes with size 1")


# --------------------------------------------------------------------------
# The ops

_BINARY = [
    ("add", "numeric", None, "x + y"),
    ("subtract", "numeric", None, "x - y"),
    ("multiply", "numeric", None, "x * y"),
    ("divide", "floating", None, "x / y (floating point)"),
    ("floor_divide", "real", None, "x // y"),
    ("mod", "real", None, "x % y"),
    ("pow", "numeric", None, "x ** y"),
    ("maximum", "real", None, "element-wise maximum"),
    ("minimum", "real", None, "element-wise minimum"),
    ("equal", "any", np.bool_, "x == y"),
    ("not_equal", "any", np.bool_, "x != y"),
    ("less", "real", np.bool_, "x < y"),
    ("less_equal", "real", np.bool_, "x <= y"),
    ("greater", "real", np.bool_, "x > y"),
    ("greater_equal", "real", np.bool_, "x >= y"),
    ("logical_and", "bool", None, "x and y"),
    ("logical_or", "bool", None, "x or y"),
]

_UNARY = [
    ("negative", "numeric", "-x"),
    ("abs", "real", "|x|"),
    ("sign", "real", "the sign of x (-1, 0 or 1)"),
    ("square", "numeric", "x * x"),
    ("sqrt", "floating", "square root"),
    ("exp", "floating", "e ** x"),
    ("log", "floating", "natural logarithm"),
    ("logical_not", "bool", "not x"),
]

LOCAL_OPS: list[IntrinsicDef] = []


def _op(uri, signature, rule, doc, attrs=(), operands=("x",), random=False):
    definition = IntrinsicDef(
        uri, signature, IntrinsicKind.LOCAL, rule, doc, attrs=tuple(attrs), has_parameter=bool(operands),
        op_name="local." + uri, operands=tuple(Operand(name, None, OperandRole.VALUE) for name in operands),
        random=random,
    )
    LOCAL_OPS.append(register(definition))


for _name, _kinds, _result, _doc in _BINARY:
    _sig = "(<T,T> -> bool-valued T)" if _result is not None else "(<T,T> -> T)"
    _op(_name, _sig, _elementwise_rule(2, _kinds, _result), _doc, operands=("x", "y"))

for _name, _kinds, _doc in _UNARY:
    _op(_name, "(T -> T)", _elementwise_rule(1, _kinds), _doc)

_op("where", "(<bool-valued T,T,T> -> T)", _rule_where, "elements of x where the condition holds, else of y",
    operands=("condition", "x", "y"))
_op("clip", "(<T,T,T> -> T)", _rule_clip, "x clipped to [low, high]", operands=("x", "low", "high"))
_op("check", "(<bool-valued U,T> -> T)", _rule_check,
    "x, if every element of the condition holds; else an error with the message (how lowerings keep the "
    "run-time checks of the intrinsics they replace)",
    [AttrSpec("message", _norm_message, None, "the error when the condition fails")], operands=("condition", "x"))
_op("cast", "(T -> T with dtype)", _rule_cast, "converts the dtype",
    [AttrSpec("dtype", _norm_dtype, None, "the target dtype")])
_op("reshape", "(T -> T with shape)", _rule_reshape, "changes the shape (one -1 is inferred)",
    [AttrSpec("shape", _norm_shape, None, "the target shape")])
_op("matmul", "(<T[m,k],T[k,n]> -> T[m,n])", _rule_matmul, "matrix product", operands=("x", "y"))
for _name, _kinds, _doc in [
    ("reduce_sum", "numeric", "sum over axes"),
    ("reduce_mean", "floating", "mean over axes"),
    ("reduce_max", "real", "maximum over axes"),
    ("reduce_min", "real", "minimum over axes"),
]:
    _op(_name, "(T -> T reduced)", _reduce_rule(_kinds), _doc, [_AXIS, _KEEPDIMS])
for _name, _doc in [("zeros", "zeros of a type"), ("ones", "ones of a type")]:
    _op(_name, "( -> T)", _rule_fill, _doc,
        [AttrSpec("type", _norm_type, None, "the type of the result")], operands=())
_op("random_normal", "( -> T)", _rule_random, "standard normal samples of a floating-point type, drawn afresh each "
    "time the op runs from a generator keyed by 128 bits of the operating system's cryptographic random source",
    [AttrSpec("type", _norm_type, None, "the type of the result")], operands=(), random=True)


def run_time_result_type(uri: str, signature, actual: Type, attrs: dict) -> Type:
    """The result type of local op ``uri`` on operands of the ``actual`` (run-time) type.

    ``signature`` is the op's declared type, whose unknown dimensions the
    operands' actual shapes fill in. Every backend applies this where the
    declared type has unknown dimensions, so a mismatch is a
    :class:`FedcTypeError` naming the op and the operands' types rather than a
    numpy or TensorFlow failure (the caller adds the op's location).
    """
    def failure(why: str) -> FedcTypeError:
        return FedcTypeError(f"at run time, {why} (the op's declared type is {signature})")

    try:
        result = lookup(uri).result_type(actual, dict(attrs))
    except FedcError as e:
        raise failure(e.message) from None
    if not signature.result.is_assignable_from(result):
        raise failure(f"{uri} of an argument of type {actual} has type {result}, not {signature.result}")
    return result
