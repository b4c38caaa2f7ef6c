"""The TensorFlow lowering of every local tensor op (the tf backend's own table).

A lowering is ``lower(graph, argument, signature, attrs) -> value``: it builds
TensorFlow ops for one call of a local op, on graph values (tensors, tuples for
structs), in the graph being traced. It follows the reference implementation
(:mod:`fedc.backends.reference.local_ops`) and the conversion rule of
docs/ir.md exactly where the two could differ:

* integer ``add`` and ``reduce_sum`` never wrap: they are computed exactly and
  a result outside the dtype's range is a run-time error (``graph.check``);
* integer ``floor_divide``/``mod`` by zero and integers raised to negative
  powers are errors, not TensorFlow kernel failures;
* ``cast`` refuses what the conversion rule refuses (NaN, infinities and
  out-of-range values to integers);
* ``reduce_max``/``reduce_min`` of an empty tensor is an error.

``graph`` is the :class:`~.lowering.Graph` being built; its ``check(ok, message)``
records a run-time condition that the executable tests after the run.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from fedc.types import FunctionType, StructType, to_dtype

from .graph import leaves

__all__ = ["LOWERINGS", "exact_integer_sum", "tf_dtype_of", "zeros_of"]


def _tf():
    import tensorflow as tf

    return tf


def tf_dtype_of(dtype: np.dtype):
    tf = _tf()
    return tf.string if np.dtype(dtype).kind == "U" else tf.as_dtype(np.dtype(dtype))


def _map_struct(fn: Callable, *operands):
    """Applies ``fn`` leaf by leaf; a non-struct operand is combined with every leaf."""
    structs = [o for o in operands if isinstance(o, tuple)]
    if not structs:
        return fn(*operands)
    results = []
    for i in range(len(structs[0])):
        results.append(_map_struct(fn, *[o[i] if isinstance(o, tuple) else o for o in operands]))
    return tuple(results)


def _is_int(x) -> bool:
    return x.dtype.is_integer


def _range(dtype):
    info = np.iinfo(dtype.as_numpy_dtype)
    return int(info.min), int(info.max)


def _overflow(what: str, dtype) -> Callable[..., str]:
    low, high = _range(dtype)

    def message(value=None, extra=None):
        shown = "" if value is None else f" is {_exact(value, extra)},"
        return (f"{what} of {dtype.name} values overflows: a sum{shown} outside {dtype.name}'s range "
                f"[{low}, {high}] (fedc does not wrap integer sums; cast the values to a wider type first)")

    return message


def _exact(value, extra) -> int:
    """A sum carried as one int64, or as (high 32 bits, low 32 bits) when ``extra`` is given."""
    if extra is None:
        return int(np.asarray(value).reshape(-1)[0])
    return int(np.asarray(value).reshape(-1)[0]) * 2**32 + int(np.asarray(extra).reshape(-1)[0])


def _offending(total, low: int, high: int):
    """The sum reported when ``total`` (int64) leaves [low, high]: the largest if it is too large, else the smallest."""
    tf = _tf()
    top = tf.reduce_max(total) if total.shape.rank else total
    bottom = tf.reduce_min(total) if total.shape.rank else total
    return tf.where(top > high, top, bottom)


def exact_integer_sum(graph, x, axis, what: str, keepdims: bool = False):
    """The sum of integer tensor ``x`` over ``axis``, exact, checked to fit ``x``'s dtype (no wrap-around).

    Narrow integers are summed in int64. 64-bit integers are summed in two
    32-bit halves, so the exact total is known without overflow and a total
    outside the dtype's range is caught.
    """
    tf = _tf()
    dtype = x.dtype
    low, high = _range(dtype)
    if dtype.size < 8:
        total = tf.reduce_sum(tf.cast(x, tf.int64), axis=axis, keepdims=keepdims)
        graph.check(tf.reduce_all((total >= low) & (total <= high)), _overflow(what, dtype),
                    _offending(total, low, high))
        return tf.cast(total, dtype)
    unsigned = dtype.is_unsigned
    as64 = x if unsigned else tf.bitcast(x, tf.uint64)
    low32 = tf.cast(tf.bitwise.bitwise_and(as64, tf.constant(0xFFFFFFFF, tf.uint64)), tf.int64)
    if unsigned:
        high32 = tf.cast(tf.bitwise.right_shift(as64, tf.constant(32, tf.uint64)), tf.int64)
    else:
        high32 = tf.bitwise.right_shift(x, tf.constant(32, tf.int64))  # arithmetic: the signed high half
    low_sum = tf.reduce_sum(low32, axis=axis, keepdims=keepdims)  # each < 2**32: no overflow below 2**31 terms
    high_sum = tf.reduce_sum(high32, axis=axis, keepdims=keepdims)
    top = high_sum + tf.bitwise.right_shift(low_sum, tf.constant(32, tf.int64))
    bottom = tf.bitwise.bitwise_and(low_sum, tf.constant(0xFFFFFFFF, tf.int64))
    fits = (top >= 0) & (top < 2**32) if unsigned else (top >= -(2**31)) & (top < 2**31)
    flat_top, flat_bottom = tf.reshape(top, [-1]), tf.reshape(bottom, [-1])
    worst = tf.argmax(tf.abs(flat_top))
    graph.check(tf.reduce_all(fits), _overflow(what, dtype), tf.gather(flat_top, worst), tf.gather(flat_bottom, worst))
    combined = tf.bitwise.bitwise_or(tf.bitwise.left_shift(top, tf.constant(32, tf.int64)), bottom)
    return tf.bitcast(combined, dtype) if unsigned else combined


def _add(graph, x, y):
    tf = _tf()
    if not _is_int(x):
        return x + y
    low, high = _range(x.dtype)
    if x.dtype.size < 8:
        total = tf.cast(x, tf.int64) + tf.cast(y, tf.int64)
        graph.check(tf.reduce_all((total >= low) & (total <= high)), _overflow("add", x.dtype),
                    _offending(total, low, high))
        return tf.cast(total, x.dtype)
    total = x + y  # 64-bit: wraps in TensorFlow; the wrap shows in the signs, and the true sum is total +- 2**64
    if x.dtype.is_unsigned:
        wrapped = total < x
    else:
        wrapped = ((x > 0) & (y > 0) & (total < 0)) | ((x < 0) & (y < 0) & (total >= 0))
    flat_wrapped = tf.reshape(wrapped & tf.ones_like(total, tf.bool), [-1])
    first = tf.argmax(tf.cast(flat_wrapped, tf.int32))
    wrapped_total = tf.gather(tf.reshape(total, [-1]), first)
    operand = tf.gather(tf.reshape(x + tf.zeros_like(total), [-1]), first)
    unsigned = x.dtype.is_unsigned

    def message(w, sign):
        w, sign = int(np.asarray(w)), int(np.asarray(sign))
        w = w % 2**64 if unsigned else w
        true = w + 2**64 if (unsigned or sign > 0) else w - 2**64
        return _overflow("add", x.dtype)(true)

    graph.check(tf.logical_not(tf.reduce_any(wrapped)), message, wrapped_total, operand)
    return total


def _integer_safe(tf_fn_name: str, name: str):
    def leaf(graph, x, y):
        tf = _tf()
        fn = getattr(tf.math, tf_fn_name)
        if not _is_int(x):
            return fn(x, y)
        zero = tf.equal(y, tf.zeros([], y.dtype))
        graph.check(tf.logical_not(tf.reduce_any(zero)), lambda: f"{name}: integer division by zero")
        safe = tf.where(zero, tf.ones_like(y), y)
        return fn(x, safe)

    return leaf


def _pow(graph, x, y):
    tf = _tf()
    if _is_int(x):
        negative = y < tf.zeros([], y.dtype)
        graph.check(tf.logical_not(tf.reduce_any(negative)),
                    lambda: "pow: integers cannot be raised to negative powers")
        y = tf.where(negative, tf.zeros_like(y), y)
    return tf.pow(x, y)


def _bool_result(fn):
    return lambda graph, x, y: fn(x, y)


def _binary(leaf):
    return lambda graph, arg, signature, attrs: _map_struct(lambda a, b: leaf(graph, a, b), arg[0], arg[1])


def _unary(fn):
    return lambda graph, x, signature, attrs: _map_struct(fn, x)


def _sign(x):
    tf = _tf()
    return tf.math.sign(x)


def _abs(x):
    tf = _tf()
    return tf.math.abs(x)


def _where(graph, arg, signature, attrs):
    tf = _tf()
    return _map_struct(lambda c, a, b: tf.where(c, a, b), arg[0], arg[1], arg[2])


def _check(graph, arg, signature, attrs):
    tf = _tf()
    condition, x = arg
    holds = [tf.reduce_all(leaf) for leaf in leaves(condition)]
    message = attrs["message"]
    graph.check(tf.reduce_all(tf.stack(holds)) if holds else tf.constant(True), lambda: message)
    return x


def _clip(graph, arg, signature, attrs):
    tf = _tf()
    # numpy's clip: minimum(maximum(x, low), high), with the bounds broadcast.
    return _map_struct(lambda a, lo, hi: tf.minimum(tf.maximum(a, lo), hi), arg[0], arg[1], arg[2])


def _cast(graph, x, signature, attrs):
    tf = _tf()
    target = to_dtype(attrs["dtype"])
    out = tf_dtype_of(target)

    def leaf(v):
        if v.dtype == out:
            return v
        if v.dtype.is_complex:
            v = tf.math.real(v)
        if out == tf.bool:
            return tf.not_equal(v, tf.zeros([], v.dtype))
        if v.dtype == tf.bool:
            return tf.cast(v, out)
        if out.is_integer and v.dtype.is_floating:
            low, high = _range(out)
            source = v.dtype.name
            truncated = tf.where(v < 0, tf.math.ceil(v), tf.math.floor(v))  # toward zero, as TensorFlow's cast
            wide = tf.cast(truncated, tf.float64)
            finite = tf.math.is_finite(wide)
            inside = (wide >= float(low)) & (wide < float(high) + 1.0)
            ok = finite & inside

            def first(mask):
                flat = tf.reshape(v, [-1])
                return tf.gather(flat, tf.argmin(tf.cast(tf.reshape(mask, [-1]), tf.int32)))

            def at(client):
                return "" if client is None else f", client {client}"

            graph.check(tf.reduce_all(finite),
                        lambda x, client=None: f"cast to {out.name}{at(client)}: {float(x)} (a {source} value) has no "
                                               f"{out.name} value", first(finite))
            graph.check(tf.reduce_all(inside | ~finite),
                        lambda x, client=None: f"cast to {out.name}{at(client)}: {float(x)} (a {source} value) does "
                                               f"not fit in {out.name}, whose range is [{low}, {high}]",
                        first(inside | ~finite))
            return tf.cast(tf.where(ok, truncated, tf.zeros_like(truncated)), out)
        if out.is_integer and v.dtype.is_integer:
            low, high = _range(out)
            vlow, vhigh = _range(v.dtype)
            if vlow < low or vhigh > high:
                if v.dtype.is_unsigned or out.is_unsigned:
                    wide_ok = _integer_fits(v, low, high)
                else:
                    wide_ok = (v >= tf.constant(max(low, vlow), v.dtype)) & (v <= tf.constant(min(high, vhigh), v.dtype))
                graph.check(tf.reduce_all(wide_ok),
                            lambda: f"cast to {out.name}: a value is outside {out.name}'s range [{low}, {high}]")
            return tf.cast(v, out)
        if out.is_floating and v.dtype.is_floating and out.size < v.dtype.size:
            narrowed = tf.cast(v, out)
            ok = tf.logical_not(tf.math.is_inf(narrowed) & tf.math.is_finite(v))
            graph.check(tf.reduce_all(ok),
                        lambda: f"cast to {out.name}: a finite value is too large and would become infinite")
            return narrowed
        if out.is_complex:
            return tf.cast(tf.cast(v, out.real_dtype), out)
        return tf.cast(v, out)

    return _map_struct(leaf, x)


def _integer_fits(v, low: int, high: int):
    """Whether integer tensor ``v`` lies in [low, high], comparing without mixing signednesses."""
    tf = _tf()
    vlow, vhigh = _range(v.dtype)
    ok = tf.ones_like(v, tf.bool)
    if vlow < low:  # only signed v can be below a (non-negative or larger) low
        ok = ok & (v >= tf.constant(low, v.dtype))
    if vhigh > high:
        ok = ok & (v <= tf.constant(high, v.dtype))
    return ok


def _reshape(graph, x, signature, attrs):
    tf = _tf()
    return tf.reshape(x, list(attrs["shape"]))


def _matmul(graph, arg, signature, attrs):
    tf = _tf()
    a, b = arg
    if a.dtype.is_integer and a.dtype.size < 4 or a.dtype in (tf.uint32, tf.uint64):
        # TensorFlow has no MatMul kernel for these; numpy's result (wrapping in the dtype) through int64.
        return tf.cast(tf.linalg.matmul(tf.cast(a, tf.int64), tf.cast(b, tf.int64)), a.dtype)
    return tf.linalg.matmul(a, b)


def _axes(x, axis):
    if axis is None:
        return None
    return [int(a) for a in axis]


def _reduce_sum(graph, x, signature, attrs):
    tf = _tf()

    def leaf(v):
        axes = _axes(v, attrs["axis"])
        if v.dtype.is_integer:
            return exact_integer_sum(graph, v, axes, "reduce_sum", attrs["keepdims"])
        return tf.reduce_sum(v, axis=axes, keepdims=attrs["keepdims"])

    return _map_struct(leaf, x)


def _reduce_mean(graph, x, signature, attrs):
    tf = _tf()
    return _map_struct(lambda v: tf.reduce_mean(v, axis=_axes(v, attrs["axis"]), keepdims=attrs["keepdims"]), x)


def _extremum(name):
    def impl(graph, x, signature, attrs):
        tf = _tf()
        fn = tf.reduce_max if name == "reduce_max" else tf.reduce_min

        def leaf(v):
            graph.check(tf.size(v) > 0, lambda: f"{name} of an empty tensor")
            return fn(v, axis=_axes(v, attrs["axis"]), keepdims=attrs["keepdims"])

        return _map_struct(leaf, x)

    return impl


def zeros_of(t, value=0):
    """A constant of type ``t`` (a fully defined tensor type or a struct of them) filled with ``value``."""
    tf = _tf()
    if isinstance(t, StructType):
        return tuple(zeros_of(e, value) for e in t)
    if t.dtype.kind == "U":
        return tf.fill(list(t.shape), tf.constant("", tf.string))
    return tf.fill(list(t.shape), tf.constant(np.asarray(value, t.dtype)))


def _fill(value):
    return lambda graph, _, signature, attrs: zeros_of(attrs["type"], value)


def _random_normal(graph, _, signature, attrs):
    """Standard normal samples from TensorFlow's stateless Philox generator, keyed by the call's fresh 128-bit key
    (``graph.entropy``, from the OS's CSPRNG) folded with this draw's number in the call."""
    from fedc.errors import FedcError

    from .graph import NotVectorizable

    tf = _tf()
    if graph.vectorizing:  # one draw would serve every client: the function runs client by client instead
        raise NotVectorizable("a random draw per client")
    if graph.checks_captured() and not graph.eager:
        raise FedcError("local.random_normal inside an aggregation's accumulate is not supported by the tf backend "
                        "(the loop would repeat one draw); draw the numbers in the clients' work instead")
    if graph.entropy is None:
        raise FedcError("local.random_normal: this tf backend graph was built without a random key")

    def draw(t):
        if isinstance(t, StructType):
            return tuple(draw(e) for e in t)
        graph.draws += 1
        seed = tf.random.experimental.stateless_fold_in(graph.entropy, graph.draws)
        return tf.random.stateless_normal(list(t.shape), seed=seed, dtype=tf_dtype_of(t.dtype))

    return draw(attrs["type"])


def _tf_op(name):
    def fn(*xs):
        tf = _tf()
        return getattr(tf.math, name)(*xs)

    return fn


def _maximum(a, b):
    tf = _tf()
    if a.dtype.is_floating:  # numpy propagates NaN
        return tf.where(tf.math.is_nan(a) | tf.math.is_nan(b), a + b, tf.maximum(a, b))
    return tf.maximum(a, b)


def _minimum(a, b):
    tf = _tf()
    if a.dtype.is_floating:
        return tf.where(tf.math.is_nan(a) | tf.math.is_nan(b), a + b, tf.minimum(a, b))
    return tf.minimum(a, b)


def _logical(name):
    return lambda a, b: getattr(_tf().math, name)(a, b)


LOWERINGS: dict[str, Callable[[Any, Any, FunctionType, dict], Any]] = {
    "add": _binary(_add),
    "subtract": _binary(lambda g, a, b: a - b),
    "multiply": _binary(lambda g, a, b: a * b),
    "divide": _binary(lambda g, a, b: _tf().math.divide(a, b)),
    "floor_divide": _binary(_integer_safe("floordiv", "floor_divide")),
    "mod": _binary(_integer_safe("floormod", "mod")),
    "pow": _binary(_pow),
    "maximum": _binary(lambda g, a, b: _maximum(a, b)),
    "minimum": _binary(lambda g, a, b: _minimum(a, b)),
    "equal": _binary(lambda g, a, b: _tf().equal(a, b)),
    "not_equal": _binary(lambda g, a, b: _tf().not_equal(a, b)),
    "less": _binary(lambda g, a, b: a < b),
    "less_equal": _binary(lambda g, a, b: a <= b),
    "greater": _binary(lambda g, a, b: a > b),
    "greater_equal": _binary(lambda g, a, b: a >= b),
    "logical_and": _binary(lambda g, a, b: _tf().logical_and(a, b)),
    "logical_or": _binary(lambda g, a, b: _tf().logical_or(a, b)),
    "negative": _unary(lambda x: -x),
    "abs": _unary(_abs),
    "sign": _unary(_sign),
    "square": _unary(lambda x: x * x),
    "sqrt": _unary(_tf_op("sqrt")),
    "exp": _unary(_tf_op("exp")),
    "log": _unary(_tf_op("log")),
    "logical_not": _unary(lambda x: _tf().logical_not(x)),
    "where": _where,
    "clip": _clip,
    "check": _check,
    "cast": _cast,
    "reshape": _reshape,
    "matmul": _matmul,
    "reduce_sum": _reduce_sum,
    "reduce_mean": _reduce_mean,
    "reduce_max": _extremum("reduce_max"),
    "reduce_min": _extremum("reduce_min"),
    "zeros": _fill(0),
    "ones": _fill(1),
    "random_normal": _random_normal,
}
