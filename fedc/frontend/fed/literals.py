"""Constants in ``.fed`` source: numbers, booleans, strings and tensor literals.

A number without a dtype suffix is *weak*: next to an operand of known dtype it
takes that dtype, as in TensorFlow (``x * 2`` with ``x: float64``).
``Literals`` is mixed into ``builder.FunctionBuilder``.
"""

from __future__ import annotations

import re
from typing import Optional

import numpy as np

from fedc.errors import FedcError, FedcTypeError
from fedc.frontend.fed.syntax import BoolExpr, ListExpr, NumberExpr, StringExpr, UnaryExpr, decode_string
from fedc.ir import building_blocks as bb
from fedc.limits import SizeError, parse_integer, shown_integer
from fedc.types import TensorType, Type, dtype_name

__all__ = ["Literals", "is_weak", "leaf_dtype", "strip_sign", "target_dtype", "weak_dtype", "weak_kind"]


_SUFFIXES = {
    "i8": "int8", "i16": "int16", "i32": "int32", "i64": "int64",
    "u8": "uint8", "u16": "uint16", "u32": "uint32", "u64": "uint64",
    "f16": "float16", "f32": "float32", "f64": "float64",
}
_NUMBER = re.compile(r"(.*?)_?(i8|i16|i32|i64|u8|u16|u32|u64|f16|f32|f64)?\Z")


class Literals:
    """The constants of a function being built (a mixin of ``builder.FunctionBuilder``)."""

    # Literals ----------------------------------------------------------------
    def constant(self, e):
        """(Python value, dtype from a suffix or None, kind) of a constant expression."""
        if isinstance(e, NumberExpr):
            m = _NUMBER.match(e.text)
            digits, suffix = m.group(1), m.group(2)
            is_float = any(ch in digits for ch in ".eE") or (suffix or "").startswith("f")
            try:
                value = float(digits) if is_float else parse_integer(digits, "integer literal")
            except SizeError as error:
                raise self.error(e.pos, f"{error.message} (write a float, such as 1e30, for a larger number)") from None
            except ValueError:
                raise self.error(e.pos, f"invalid number {shown_integer(e.text)}") from None
            return value, (_SUFFIXES[suffix] if suffix else None), ("float" if is_float else "int")
        if isinstance(e, BoolExpr):
            return e.value, None, "bool"
        if isinstance(e, StringExpr):
            try:
                return decode_string(e.raw), None, "str"
            except ValueError as error:
                raise self.error(e.pos, f"invalid string: {error}") from None
        if isinstance(e, UnaryExpr) and e.op in ("-", "+"):
            value, dtype, kind = self.constant(e.operand)
            if kind not in ("int", "float"):
                raise self.error(e.pos, f"operator {e.op!r} applies to numbers, not to a {kind}", FedcTypeError)
            return (_negate(value) if e.op == "-" else value), dtype, kind
        if isinstance(e, ListExpr):
            values, dtypes, kinds = [], set(), set()
            for item in e.items:
                v, dt, k = self.constant(item)
                values.append(v)
                if dt:
                    dtypes.add(dt)
                kinds.add(k)
            if len(dtypes) > 1:
                raise self.error(e.pos, f"a tensor literal has one dtype, but its elements have {', '.join(sorted(dtypes))}", FedcTypeError)
            if len(kinds - {"int", "float"}) and len(kinds) > 1:
                raise self.error(e.pos, f"a tensor literal has one dtype, but its elements are {' and '.join(sorted(kinds))}", FedcTypeError)
            kind = "float" if "float" in kinds else (kinds.pop() if kinds else "float")
            return values, (dtypes.pop() if dtypes else None), kind
        raise self.error(
            e.pos,
            "a tensor literal [...] holds constants (numbers, true, false, strings); "
            "use a struct <...> to group values",
        )

    def literal(self, e, dtype: Optional[str] = None) -> bb.Node:
        value, suffix, kind = self.constant(e)
        dtype = dtype or suffix or {"int": "int32", "float": "float32", "bool": "bool", "str": "str"}[kind]
        shape: tuple = ()
        if isinstance(value, list):
            try:
                array = np.array(value)
            except ValueError:
                array = None
            if array is None or array.dtype == object:
                raise self.error(e.pos, "a tensor literal must be rectangular (every row of the same length)", FedcTypeError)
            shape = array.shape
        t = TensorType(dtype, shape)
        try:
            return bb.Literal(value, t, self.loc(e.pos))
        except FedcError as error:
            hint = ""
            if kind == "int" and dtype == "int32" and not suffix:
                hint = " (write a suffix for a wider dtype, as in 3000000000i64)"
            raise self.error(e.pos, error.message + hint, FedcTypeError) from None


def strip_sign(e):
    while isinstance(e, UnaryExpr) and e.op in ("-", "+"):
        e = e.operand
    return e


def is_weak(e) -> bool:
    """An untyped number (or list of them): it takes the dtype of the other operand, as in TensorFlow."""
    e = strip_sign(e)
    if isinstance(e, NumberExpr):
        return _NUMBER.match(e.text).group(2) is None
    if isinstance(e, ListExpr):
        return bool(e.items) and all(is_weak(i) for i in e.items)
    return False


def weak_kind(e) -> str:
    e = strip_sign(e)
    if isinstance(e, NumberExpr):
        return "float" if any(ch in e.text for ch in ".eE") else "int"
    return "float" if any(weak_kind(i) == "float" for i in e.items) else "int"


def weak_dtype(e, dtype: Optional[np.dtype]) -> Optional[str]:
    """The dtype a weak literal takes next to an operand of ``dtype`` (None: its default)."""
    if dtype is None:
        return None
    kind = weak_kind(e)
    if kind == "int" and dtype.kind in "iufc":
        return dtype_name(dtype)
    if kind == "float" and dtype.kind in "fc":
        return dtype_name(dtype)
    return None


def target_dtype(e, expected: Type) -> Optional[str]:
    if isinstance(expected, TensorType):
        return weak_dtype(e, expected.dtype)
    return None


def leaf_dtype(t: Type) -> Optional[np.dtype]:
    dtypes = {s.dtype for s in t.walk() if isinstance(s, TensorType)}
    return dtypes.pop() if len(dtypes) == 1 else None


def _negate(value):
    if isinstance(value, list):
        return [_negate(v) for v in value]
    return -value
