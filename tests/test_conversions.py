"""fedc's one conversion rule (docs/ir.md, "Conversions"): arguments, literals, the cast op, constant folding.

Every case is checked against the rule written out independently here, on
generated values: all pairs of integer dtypes at their boundary values, floats
with NaN, infinities and values around every range end.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fedc
from fedc import ir, values
from fedc.computation import Computation
from fedc.errors import FedcError, FedcTypeError
from fedc.frontend import fed
from fedc.ir.constant import NotConstant, fold
from fedc.values import convert

INTS = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]
FLOATS = [np.float16, np.float32, np.float64]


def boundaries(dtype) -> list[int]:
    info = np.iinfo(dtype)
    values = {int(info.min), int(info.min) + 1, -1, 0, 1, int(info.max) - 1, int(info.max)}
    return sorted(v for v in values if info.min <= v <= info.max)


def fits(value: int, dtype) -> bool:
    info = np.iinfo(dtype)
    return int(info.min) <= value <= int(info.max)


def identity(t):
    def ident(x):
        return x

    return fedc.federated_computation(t)(ident)


# --------------------------------------------------------------------------
# Integers: every pair of dtypes, every boundary value


@pytest.mark.parametrize("source, target", list(itertools.product(INTS, INTS)))
def test_integer_arguments_convert_exactly_or_are_refused(source, target):
    f = identity(fedc.TensorType(target, [None]))
    values = boundaries(source)
    for v in values:
        array = np.array([0, v], dtype=source)
        if fits(v, target):
            out = f(array)
            assert out.dtype == np.dtype(target) and int(out[1]) == v
        else:
            with pytest.raises(FedcTypeError) as info:
                f(array)
            message = str(info.value)
            # the parameter, the position, the value and both dtypes
            assert message.startswith(f"argument 'x' of ident at [1]: {v} ({'an' if np.dtype(source).kind == 'i' else 'a'} "
                                      f"{np.dtype(source).name}) does not fit in {np.dtype(target).name}"), message


@pytest.mark.parametrize("target", INTS)
def test_python_integers_of_any_size_convert_exactly_or_are_refused(target):
    info = np.iinfo(target)
    f = identity(fedc.FederatedType(target, fedc.CLIENTS))
    for v in (int(info.min) - 1, int(info.max) + 1, 2**64, -(2**70), 2**100):
        with pytest.raises(FedcTypeError, match=rf"^argument .x. of ident, client 1: {v}( \(an? \w+\))? does not fit in {np.dtype(target).name}"):
            f([0, v])
    assert [int(x) for x in f([int(info.min), int(info.max)])] == [int(info.min), int(info.max)]


@pytest.mark.parametrize("source, target", list(itertools.product(INTS, INTS)))
def test_the_cast_op_refuses_what_does_not_fit_instead_of_wrapping(source, target):
    for v in boundaries(source):
        array = np.asarray(v, dtype=source)
        if fits(v, target):
            assert int(convert(array, target, "cast", cast=True)) == v
        else:
            with pytest.raises(FedcError, match=rf"cast: {v} .* does not fit in {np.dtype(target).name}"):
                convert(array, target, "cast", cast=True)


# --------------------------------------------------------------------------
# Floats to integers, and floats narrowed


def near_range_ends():
    ends = []
    for dtype in INTS:
        info = np.iinfo(dtype)
        for end in (float(info.min), float(info.max) + 1):
            ends += [end, np.nextafter(end, -math.inf), np.nextafter(end, math.inf), end - 0.5, end + 0.5]
    return st.sampled_from(ends)


FLOAT_VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-1e3, 1e3),
    st.integers(-300, 300).map(float),
    near_range_ends(),
)


@settings(max_examples=300, deadline=None)
@given(FLOAT_VALUES, st.sampled_from(INTS), st.booleans())
def test_floats_to_integers(value, target, cast):
    info = np.iinfo(target)
    whole = math.trunc(value) if math.isfinite(value) else None
    if whole is None or not int(info.min) <= whole <= int(info.max):
        accepted = False
    else:
        accepted = cast or whole == value
    array = np.float64(value)
    if accepted:
        assert int(convert(array, target, "v", cast=cast)) == whole
    else:
        with pytest.raises(FedcError, match=r"^v: .* \(a float64\) (has no|does not fit|is not an integer)"):
            convert(array, target, "v", cast=cast)


@settings(max_examples=200, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([np.float16, np.float32]), st.booleans())
def test_floats_narrowed_round_to_nearest_but_never_overflow(value, target, cast):
    with np.errstate(over="ignore"):
        rounded = np.float64(value).astype(target)
    if math.isfinite(value) and np.isinf(rounded):
        with pytest.raises(FedcError, match=f"is outside {np.dtype(target).name}'s range"):
            convert(np.float64(value), target, "v", cast=cast)
    else:
        out = convert(np.float64(value), target, "v", cast=cast)
        assert out.dtype == np.dtype(target)
        assert (np.isnan(out) and math.isnan(value)) or out == rounded


@pytest.mark.parametrize("source, target", list(itertools.product(INTS, FLOATS)))
def test_integers_to_floats_round_but_never_overflow(source, target):
    for v in boundaries(source):
        with np.errstate(over="ignore"):
            overflows = np.isinf(np.float64(v).astype(target))
        if overflows:
            with pytest.raises(FedcTypeError, match="would become infinite"):
                convert(np.asarray(v, source), target, "v")
        else:
            assert convert(np.asarray(v, source), target, "v") == np.asarray(v, source).astype(target)


def test_float64_arguments_narrowed_to_float32_and_overflow_refused():
    f = identity(fedc.FederatedType(np.float32, fedc.CLIENTS))
    assert f([68.5, 70.3]) == [np.float32(68.5), np.float32(70.3)]
    with pytest.raises(FedcTypeError, match=r"argument 'x' of ident, client 1: 1e\+39 \(a float64\) is outside float32's range"):
        f(np.array([1.0, 1e39]))
    ints = identity(fedc.TensorType(np.int32, [3]))
    assert ints(np.array([1.0, -2.0, 3.0])).tolist() == [1, -2, 3]  # whole floats keep their value
    for bad, problem in [(2.5, "is not an integer"), (math.nan, "has no int32 value"), (math.inf, "has no int32 value"),
                         (2.0**31, "does not fit in int32")]:
        with pytest.raises(FedcTypeError, match=rf"at \[2\]: .* \(a float64\) {problem}"):
            ints(np.array([1.0, 2.0, bad]))


def test_bools_strings_and_numbers_do_not_convert_implicitly():
    with pytest.raises(FedcTypeError, match="a bool value does not convert to int32 .*use cast"):
        identity(fedc.TensorType(np.int32))(True)
    with pytest.raises(FedcTypeError, match="an int64 value does not convert to bool"):
        identity(fedc.TensorType(np.bool_))(1)
    with pytest.raises(FedcTypeError, match="a str value does not convert to float32"):
        identity(fedc.TensorType(np.float32))("1.5")
    with pytest.raises(FedcTypeError, match=r"\(1\+2j\) \(a complex128\) has an imaginary part"):
        identity(fedc.TensorType(np.float64))(1 + 2j)
    assert convert(np.array([True, False]), np.float32, "v", cast=True).tolist() == [1.0, 0.0]
    assert convert(np.array([0.0, -0.5, np.nan]), np.bool_, "v", cast=True).tolist() == [False, True, True]
    assert convert(np.array([3 + 4j]), np.float32, "v", cast=True).tolist() == [3.0]


# --------------------------------------------------------------------------
# One rule everywhere: literals, arguments and constant folding agree with convert


SAMPLES = st.one_of(
    st.integers(-(2**65), 2**65),
    st.floats(allow_nan=True, allow_infinity=True),
    near_range_ends(),
)


def outcome(fn):
    try:
        value = fn()
    except FedcError:
        return "refused"
    array = np.asarray(value)
    return (array.dtype.str, array.tobytes())


@settings(max_examples=300, deadline=None)
@given(SAMPLES, st.sampled_from(INTS + FLOATS))
def test_literals_arguments_and_the_rule_agree(value, target):
    source = np.array(value, dtype=object) if isinstance(value, int) and not -(2**63) <= value < 2**63 else np.asarray(value)
    expected = outcome(lambda: convert(source, target, "v"))
    assert outcome(lambda: ir.Literal(value, fedc.TensorType(target)).value) == expected
    assert outcome(lambda: identity(fedc.TensorType(target))(value)) == expected


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), near_range_ends()), st.sampled_from(INTS))
def test_folding_a_cast_follows_the_rule(value, target):
    literal = ir.Literal(np.float64(value))
    call = ir.intrinsic_call("cast", literal, dtype=target)
    expected = outcome(lambda: convert(np.float64(value), target, "v", cast=True))
    try:
        folded = fold(call)
    except NotConstant as e:
        assert expected == "refused" and "cast of constants fails: cast to" in e.message
    else:
        assert (folded.dtype.str, folded.tobytes()) == expected


# --------------------------------------------------------------------------
# The cast op at run time: a located error, never INT_MIN


CAST = """\
computation one(x: float32@SERVER) -> int32@SERVER {
  return federated_map(fn(v) -> cast(v, dtype=int32), x)
}

computation each(x: {float32}@CLIENTS) -> {int32}@CLIENTS {
  return federated_map(fn(v) -> cast(v, dtype=int32), x)
}
"""


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 3e9, -2.2e9])
def test_cast_of_nan_infinity_or_out_of_range_is_a_located_error(bad):
    module = fed.parse(CAST, filename="cast.fed")
    with pytest.raises(FedcError) as info:
        Computation(module, "one")(bad)
    message = str(info.value)
    assert message.startswith("cast.fed:2:33: cast to int32: ")
    assert "has no int32 value" in message or "does not fit in int32" in message
    # per client (a batched map): the client is named
    with pytest.raises(FedcError, match=r"^cast.fed:6:33: cast to int32, client 2: "):
        Computation(module, "each")([1.5, -2.5, bad])
    assert Computation(module, "each")([1.9, -2.9, 7.0]) == [1, -2, 7]  # cast truncates toward zero


@pytest.mark.parametrize("source", ["datetime64[s]", "timedelta64[ns]", "V4", [("a", "<f4"), ("b", "<i4")]])
@pytest.mark.parametrize("target", [np.int32, np.float32, np.bool_])
def test_arrays_of_non_numeric_numpy_dtypes_are_refused(source, target):
    array = np.zeros(2, dtype=source)
    with pytest.raises(fedc.FedcTypeError, match=rf"x: an array of numpy dtype .* is not a value of a fedc type"):
        values.convert(array, target, "x")
