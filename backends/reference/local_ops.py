"""numpy implementations of the local tensor ops, plain and batched over clients.

Values are numpy arrays (0-d for scalars) and tuples for structs. A
:class:`Batched` wraps a value that carries one more leading axis, the
clients: a mapped function over N clients then runs as one numpy call, the way
``jax.vmap`` batches a primitive. Each op has one plain implementation; the
batched one is derived from the op's shape behaviour (elementwise ops align
ranks, reductions shift axes, …).

:func:`run` is the one place the backend executes a local op. When the op's
declared type has unknown dimensions, it first applies the op's type rule to
the operands' actual shapes, so a mismatch that numpy would report as a
``ValueError`` — or silently broadcast — is a :class:`~fedc.FedcTypeError`
naming the op, the operands' types and the op's source location. It also
refuses, before numpy allocates anything, a result larger than
``fedc.limits.MAX_TENSOR_BYTES``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Optional

import numpy as np

from fedc import limits
from fedc.errors import FedcError, FedcTypeError
from fedc.ir.local_ops import run_time_result_type
from fedc.types import FunctionType, StructType, TensorType, Type, dtype_name, to_dtype
from fedc.values import convert

__all__ = ["Batched", "IMPLS", "check_tensor_allocation", "exact_sum", "fit_integers", "run", "widened"]


@dataclasses.dataclass(frozen=True)
class Batched:
    """A value with a leading client axis on every tensor leaf."""

    value: Any


def _per_client_rank(x: Any) -> int:
    return x.value.ndim - 1 if isinstance(x, Batched) else np.ndim(x)


def _is_struct(value: Any) -> bool:
    return isinstance(value, tuple)


def _map_struct(fn: Callable, *operands):
    """Applies ``fn`` leaf by leaf; a non-struct operand is combined with every leaf."""
    structs = [o for o in operands if _is_struct(o) or (isinstance(o, Batched) and _is_struct(o.value))]
    if not structs:
        return fn(*operands)
    first = structs[0]
    length = len(first.value if isinstance(first, Batched) else first)
    results = []
    for i in range(length):
        parts = []
        for o in operands:
            if isinstance(o, Batched) and _is_struct(o.value):
                parts.append(Batched(o.value[i]))
            elif _is_struct(o):
                parts.append(o[i])
            else:
                parts.append(o)
        results.append(_map_struct(fn, *parts))
    return tuple(results)


def _elementwise(np_fn: Callable, result_dtype=None, dtype_from: int = 0):
    """An elementwise op on leaves, plain or batched (ranks aligned behind the client axis)."""

    def leaf(*xs):
        if not any(isinstance(x, Batched) for x in xs):
            out = np_fn(*[np.asarray(x) for x in xs])
            return _cast_result(out, xs[dtype_from], result_dtype)
        rank = max(_per_client_rank(x) for x in xs)
        aligned = []
        for x in xs:
            if isinstance(x, Batched):
                a = x.value
                aligned.append(a.reshape(a.shape[:1] + (1,) * (rank - (a.ndim - 1)) + a.shape[1:]))
            else:
                aligned.append(np.asarray(x))
        out = np_fn(*aligned)
        source = xs[dtype_from]
        return Batched(_cast_result(out, source.value if isinstance(source, Batched) else source, result_dtype))

    return leaf


def _cast_result(out, dtype_source, result_dtype):
    out = np.asarray(out)
    dtype = result_dtype or np.asarray(dtype_source).dtype
    if out.dtype != dtype:
        out = out.astype(dtype)
    return out


# --------------------------------------------------------------------------
# Integer sums never wrap: the one rule for every sum (federated_sum, sequence_sum,
# add, reduce_sum, and so every accumulate and merge built from them)


def widened(a: np.ndarray) -> np.ndarray:
    """``a`` in a type its integer sums cannot overflow (int64 for narrower types, Python ints for 64-bit)."""
    if a.dtype.kind not in "iu":
        return a
    return a.astype(np.int64 if a.dtype.itemsize < 8 else object, copy=False)


def fit_integers(total: np.ndarray, dtype: np.dtype, what: str) -> np.ndarray:
    """An exact integer sum ``total`` as ``dtype``, or a :class:`FedcError` if it does not fit.

    fedc's rule for integer sums: no wrap-around. A result outside ``dtype``'s
    range names the operation, the type and the value, instead of a wrapped number.
    """
    dtype = np.dtype(dtype)
    if dtype.kind not in "iu":
        return total.astype(dtype, copy=False)
    info = np.iinfo(dtype)
    low, high = (total.min(), total.max()) if total.size else (0, 0)
    if low < info.min or high > info.max:
        bad = high if high > info.max else low
        raise FedcError(
            f"{what} of {dtype.name} values overflows: a sum is {int(bad)}, outside {dtype.name}'s range "
            f"[{info.min}, {info.max}] (fedc does not wrap integer sums; cast the values to a wider type first)"
        )
    return total.astype(dtype)


def exact_sum(leaves: np.ndarray, dtype: np.dtype, what: str, axis: Any = 0, keepdims: bool = False) -> np.ndarray:
    """The sum of ``leaves`` over ``axis``; integers are summed exactly and must fit ``dtype``."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "iu":
        return np.asarray(np.sum(leaves, axis=axis, dtype=dtype, keepdims=keepdims)).astype(dtype, copy=False)
    return fit_integers(np.asarray(widened(leaves).sum(axis=axis, keepdims=keepdims)), dtype, what)


def _add(x, y):
    if x.dtype.kind in "iu":
        return fit_integers(np.asarray(widened(x) + widened(y)), x.dtype, "add")
    return np.add(x, y)


def _unary(np_fn):
    leaf = _elementwise(np_fn)
    return lambda x, attrs: _map_struct(leaf, x)


def _binary(np_fn, result_dtype=None):
    leaf = _elementwise(np_fn, result_dtype)
    return lambda arg, attrs: _map_struct(leaf, arg[0], arg[1])


def _ternary(np_fn):
    leaf = _elementwise(np_fn)
    return lambda arg, attrs: _map_struct(leaf, arg[0], arg[1], arg[2])


def _where(arg, attrs):
    leaf = _elementwise(np.where, dtype_from=1)
    return _map_struct(leaf, arg[0], arg[1], arg[2])


def _check(arg, attrs):
    condition, x = arg
    # (mapped over clients, a leaf is Batched: every client's condition at once)
    if not all(bool(np.all(leaf.value if isinstance(leaf, Batched) else leaf)) for leaf in _leaves(condition)):
        raise FedcError(attrs["message"])
    return x


def _leaves(value):
    if isinstance(value, tuple):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value]


def _checked_divide(x, y):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.true_divide(x, y)


def _integer_safe(fn, name):
    def wrapped(x, y):
        if np.asarray(x).dtype.kind in "iu" and np.any(np.asarray(y) == 0):
            raise FedcError(f"{name}: integer division by zero")
        with np.errstate(divide="ignore", invalid="ignore"):
            return fn(x, y)

    return wrapped


def _pow(x, y):
    if np.asarray(x).dtype.kind in "iu" and np.any(np.asarray(y) < 0):
        raise FedcError("pow: integers cannot be raised to negative powers")
    return np.power(x, y)


def _cast(x, attrs):
    dtype = to_dtype(attrs["dtype"])
    what = f"cast to {dtype_name(dtype)}"

    def leaf(v):
        if isinstance(v, Batched):  # the leading axis is the clients of a map
            return Batched(convert(v.value, dtype, what, cast=True, client_axis=True))
        return convert(v, dtype, what, cast=True)

    return _map_struct(leaf, x)


def _reshape(x, attrs):
    target = tuple(attrs["shape"])
    if isinstance(x, Batched):
        return Batched(x.value.reshape(x.value.shape[:1] + target))
    return np.asarray(x).reshape(target)


def _matmul(arg, attrs):
    a, b = arg
    batched = isinstance(a, Batched) or isinstance(b, Batched)
    av = a.value if isinstance(a, Batched) else np.asarray(a)
    bv = b.value if isinstance(b, Batched) else np.asarray(b)
    out = np.matmul(av, bv)
    return Batched(out) if batched else out


def _reduction(np_fn, name):
    def leaf(x, axis, keepdims):
        if isinstance(x, Batched):
            rank = x.value.ndim - 1
            axes = tuple(range(1, rank + 1)) if axis is None else tuple(a % rank + 1 for a in axis)
            out = np_fn(x.value, axis=axes, keepdims=keepdims)
            return Batched(np.asarray(out).astype(x.value.dtype, copy=False))
        arr = np.asarray(x)
        axes = None if axis is None else tuple(axis)
        if arr.size == 0 and name in ("reduce_max", "reduce_min"):
            raise FedcError(f"{name} of an empty tensor")
        out = np_fn(arr, axis=axes, keepdims=keepdims)
        return np.asarray(out).astype(arr.dtype, copy=False)

    def impl(x, attrs):
        return _map_struct(lambda v: leaf(v, attrs["axis"], attrs["keepdims"]), x)

    return impl


def _fill(value):
    def impl(_, attrs):
        return _filled(attrs["type"], value)

    return impl


def _filled(t, value):
    if isinstance(t, StructType):
        return tuple(_filled(e, value) for e in t)
    if t.dtype.kind == "U":  # zeros of str are empty strings, kept as fedc keeps strings (object arrays)
        return np.full(t.shape, "", dtype=object)
    return np.full(t.shape, value, dtype=t.dtype)


def _random_normal(_, attrs):
    """Standard normal samples, from a Philox generator keyed by 128 fresh bits of the OS's CSPRNG."""
    import secrets

    generator = np.random.Generator(np.random.Philox(key=secrets.randbits(128)))

    def draw(t):
        if isinstance(t, StructType):
            return tuple(draw(e) for e in t)
        return generator.standard_normal(t.shape).astype(t.dtype)

    return draw(attrs["type"])


IMPLS: dict[str, Callable[[Any, dict], Any]] = {
    "add": _binary(_add),
    "subtract": _binary(np.subtract),
    "multiply": _binary(np.multiply),
    "divide": _binary(_checked_divide),
    "floor_divide": _binary(_integer_safe(np.floor_divide, "floor_divide")),
    "mod": _binary(_integer_safe(np.mod, "mod")),
    "pow": _binary(_pow),
    "maximum": _binary(np.maximum),
    "minimum": _binary(np.minimum),
    "equal": _binary(np.equal, np.bool_),
    "not_equal": _binary(np.not_equal, np.bool_),
    "less": _binary(np.less, np.bool_),
    "less_equal": _binary(np.less_equal, np.bool_),
    "greater": _binary(np.greater, np.bool_),
    "greater_equal": _binary(np.greater_equal, np.bool_),
    "logical_and": _binary(np.logical_and, np.bool_),
    "logical_or": _binary(np.logical_or, np.bool_),
    "negative": _unary(np.negative),
    "abs": _unary(np.abs),
    "sign": _unary(np.sign),
    "square": _unary(np.square),
    "sqrt": _unary(np.sqrt),
    "exp": _unary(np.exp),
    "log": _unary(np.log),
    "logical_not": _unary(np.logical_not),
    "where": _where,
    "clip": _ternary(np.clip),
    "check": _check,
    "cast": _cast,
    "reshape": _reshape,
    "matmul": _matmul,
    "reduce_sum": _reduction(lambda a, axis, keepdims: exact_sum(a, a.dtype, "reduce_sum", axis, keepdims), "reduce_sum"),
    "reduce_mean": _reduction(np.mean, "reduce_mean"),
    "reduce_max": _reduction(np.max, "reduce_max"),
    "reduce_min": _reduction(np.min, "reduce_min"),
    "zeros": _fill(0),
    "ones": _fill(1),
    "random_normal": _random_normal,
}


def run(uri: str, argument: Any, signature: FunctionType, attrs: dict) -> Any:
    """Runs local op ``uri`` of type ``signature`` on an argument value (plain or with Batched leaves).

    The checks of the module docstring come first; a numpy failure that gets
    past them still becomes a :class:`~fedc.FedcTypeError` naming the op and
    its argument's type (the interpreter adds the op's location).
    """
    clients = _clients(argument)
    actual = signature.parameter
    if actual is None or _fully_known(actual):
        result_type = signature.result
    else:
        key = _shapes(argument)
        actual, result_type = _run_time_types(uri, signature, tuple(sorted(attrs.items())), key)
    for leaf in _known_leaves(result_type):
        check_tensor_allocation(leaf, clients, uri)
    try:
        with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
            return IMPLS[uri](argument, attrs)
    except (ValueError, TypeError, IndexError, OverflowError, MemoryError) as e:
        if isinstance(e, FedcError):
            raise
        given = "no argument" if actual is None else f"an argument of type {actual}"
        raise _failure(signature, f"{uri} fails on {given}: {e}") from None


def check_tensor_allocation(t: TensorType, clients: Optional[int], what: str) -> None:
    """Refuses a tensor of type ``t`` (fully known), or ``clients`` of them stacked, past the limit."""
    shape = t.shape if clients is None else (clients,) + t.shape
    limits.check_allocation(shape, t.dtype.itemsize or 4, what)


@functools.lru_cache(maxsize=4096)
def _fully_known(t: Type) -> bool:
    return all(leaf.is_fully_defined() for leaf in t.walk() if isinstance(leaf, TensorType))


@functools.lru_cache(maxsize=4096)
def _known_leaves(t: Type) -> tuple:
    return tuple(leaf for leaf in t.walk() if isinstance(leaf, TensorType) and leaf.is_fully_defined())


@functools.lru_cache(maxsize=4096)
def _run_time_types(uri: str, signature: FunctionType, attrs: tuple, shapes: Any) -> tuple[Type, Type]:
    """(the argument's actual type, the result type its type rule gives), for operands of ``shapes``.

    Raises the :class:`~fedc.FedcTypeError` of the module docstring when the
    rule refuses the actual shapes, or gives a result the declared type does not admit.
    """
    actual = _actual_type(shapes, signature.parameter)
    return actual, run_time_result_type(uri, signature, actual, dict(attrs))


def _shapes(value: Any, batched: bool = False) -> Any:
    """The dtypes and (one client's) shapes of a value's tensors, as nested tuples: a cache key."""
    if isinstance(value, Batched):
        value, batched = value.value, True
    if isinstance(value, tuple):
        return tuple(_shapes(v, batched) for v in value)
    array = value if isinstance(value, np.ndarray) else np.asarray(value)
    return (array.dtype, array.shape[1:] if batched else array.shape)


def _clients(value: Any) -> Optional[int]:
    """The number of clients of a batched argument (``None`` if it is not batched)."""
    if isinstance(value, Batched):
        inner = value.value
        while isinstance(inner, tuple) and inner:
            inner = inner[0]
        return None if isinstance(inner, tuple) else int(np.shape(inner)[0])
    if isinstance(value, tuple):
        for part in value:
            count = _clients(part)
            if count is not None:
                return count
    return None


def _actual_type(shapes: Any, declared: Type) -> Type:
    """The type of a value of declared type ``declared`` whose tensors have ``shapes`` (see :func:`_shapes`)."""
    if isinstance(declared, StructType):
        return StructType([
            (name, _actual_type(part, element)) if name else _actual_type(part, element)
            for part, (name, element) in zip(shapes, declared.items())
        ])
    if isinstance(declared, TensorType) and declared.is_fully_defined():
        return declared
    dtype, shape = shapes
    return TensorType(dtype, shape)


def _failure(signature: FunctionType, why: str) -> FedcTypeError:
    return FedcTypeError(f"at run time, {why} (the op's declared type is {signature})")
