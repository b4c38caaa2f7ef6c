"""The spelling shared by the printer and the parser of the textual IR.

Op names of intrinsics (:func:`op_name`, :func:`intrinsic_uri`), quoted
strings, floats as text or bits, and the text of literals and attributes.
The format is described in :mod:`fedc.ir.text`.
"""

from __future__ import annotations

import difflib
import math
import re
from typing import Any

import numpy as np

from fedc.errors import FedcError
from fedc.ir import intrinsics
from fedc.limits import parse_integer
from fedc.types import Type

__all__ = [
    "BadEscape",
    "DECIMAL_INT",
    "DENSE_THRESHOLD",
    "HEX_INT",
    "float_bits_from_text",
    "format_attrs",
    "format_literal",
    "intrinsic_uri",
    "op_name",
    "op_table",
    "quote",
    "uint_dtype",
    "unquote",
]

# Arrays with more elements than this print as raw bytes: dense<"0x...">.
DENSE_THRESHOLD = 64


# --------------------------------------------------------------------------
# Op names of intrinsics (each registry entry names its own op)


def op_name(definition: intrinsics.IntrinsicDef) -> str:
    """The op name of an intrinsic in the textual IR (``fed.mean``, ``seq.reduce``, ``local.add``)."""
    return definition.op_name


def op_table() -> dict[str, str]:
    """Op name -> intrinsic uri, for every registered intrinsic."""
    return {name: intrinsics.by_op_name(name).uri for name in intrinsics.op_names()}


def intrinsic_uri(name: str) -> str:
    """The intrinsic uri of an op name (``fed.mean`` → ``federated_mean``).

    Raises :class:`FedcError` naming close matches for an unknown op.
    """
    definition = intrinsics.by_op_name(name)
    if definition is None:
        close = difflib.get_close_matches(name, intrinsics.op_names(), n=3)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise FedcError(f"unknown op {name!r}{hint}")
    return definition.uri


# --------------------------------------------------------------------------
# Strings and numbers

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
_UNESCAPES = {'"': '"', "\\": "\\", "/": "/", "n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}
_ESCAPE_RE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8})|(.))", re.S)
_PLAIN_STRING = re.compile(r"[ !#-\[\]-~]*\Z")  # printable ASCII except " and \


def quote(text: str) -> str:
    """A double-quoted string: JSON escapes; non-printable characters as ``\\uXXXX``
    (or ``\\UXXXXXXXX`` beyond the BMP), never surrogate pairs."""
    if _PLAIN_STRING.match(text):
        return f'"{text}"'
    out = []
    for ch in text:
        escape = _ESCAPES.get(ch)
        if escape is not None:
            out.append(escape)
        elif ch.isprintable():
            out.append(ch)
        else:
            code = ord(ch)
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


class BadEscape(Exception):
    def __init__(self, offset: int, message: str):
        self.offset = offset
        self.message = message


def unquote(quoted: str) -> str:
    body = quoted[1:-1]

    def replace(match: re.Match) -> str:
        if match.group(1) is not None or match.group(2) is not None:
            digits = match.group(1) if match.group(1) is not None else match.group(2)
            escape = f"\\{'u' if match.group(1) is not None else 'U'}{digits}"
            code = int(digits, 16)
            if code > 0x10FFFF:
                raise BadEscape(match.start(), f"{escape} is not a Unicode code point")
            if 0xD800 <= code <= 0xDFFF:  # what fedc reads it must write: UTF-8 (protobuf, files) has no surrogates
                raise BadEscape(match.start(), f"{escape} is a surrogate, not a character; write the character itself")
            return chr(code)
        char = match.group(3)
        if char not in _UNESCAPES:
            raise BadEscape(
                match.start(),
                f"unknown escape \\{char}; the escapes are \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX \\UXXXXXXXX",
            )
        return _UNESCAPES[char]

    return _ESCAPE_RE.sub(replace, body)


DECIMAL_INT = re.compile(r"[+-]?[0-9]+\Z")
HEX_INT = re.compile(r"[+-]?0x[0-9A-Fa-f]+\Z")


def uint_dtype(dtype: np.dtype) -> np.dtype:
    return np.dtype(f"<u{dtype.itemsize}")


def float_bits_from_text(text: str, dtype: np.dtype) -> int:
    """The bit pattern of ``text`` read as a float of ``dtype`` (hex is the raw bits)."""
    width = dtype.itemsize * 8
    if HEX_INT.match(text):
        if text[0] in "+-":
            raise ValueError("a hexadecimal float is its raw bit pattern and has no sign")
        return parse_integer(text, f"the bit pattern of a {dtype}", (1 << width) - 1)
    value = float(text)
    with np.errstate(over="ignore", invalid="ignore"):
        array = np.array(value, dtype=np.float64).astype(dtype.newbyteorder("<"))
    if np.isinf(array) and not math.isinf(value):
        raise ValueError(f"{text} is too large for {dtype}")
    return int(array.view(uint_dtype(dtype)))


def _format_float(value: np.floating) -> str:
    """The shortest text that reads back as the same bits; else the bits in hex."""
    dtype = np.dtype(value.dtype).newbyteorder("<")
    array = np.array(value, dtype=dtype)
    bits = int(array.view(uint_dtype(dtype)))
    text = str(value)
    try:
        if float_bits_from_text(text, dtype) == bits:
            return text
    except ValueError:
        pass
    return f"0x{bits:0{dtype.itemsize * 2}x}"


# --------------------------------------------------------------------------
# Literal values


def format_literal(array: np.ndarray) -> str:
    dtype = array.dtype
    if dtype != object and array.size > DENSE_THRESHOLD:
        raw = np.ascontiguousarray(array).astype(dtype.newbyteorder("<")).tobytes()
        return f'dense<"0x{raw.hex()}">'
    flat = array.reshape(-1)
    kind = dtype.kind
    if kind == "b":
        items = ["true" if v else "false" for v in flat.tolist()]
    elif kind in "iu":
        items = [str(v) for v in flat.tolist()]
    elif kind == "f":
        items = [_format_float(v) for v in flat]
    elif kind == "c":
        component = np.dtype(f"f{dtype.itemsize // 2}")
        parts = flat.view(component).reshape(-1, 2)
        items = [f"({_format_float(re_)}, {_format_float(im)})" for re_, im in parts]
    elif kind == "O":  # strings (fedc.values.strings)
        items = [quote(v) for v in flat.tolist()]
    else:  # pragma: no cover - Literal only holds fedc dtypes
        raise FedcError(f"cannot print a literal of dtype {dtype}")
    return _nest(items, array.shape, 0)


def _nest(items: list[str], shape: tuple, start: int) -> str:
    if not shape:
        return items[start]
    inner = math.prod(shape[1:])
    return "[" + ", ".join(_nest(items, shape[1:], start + i * inner) for i in range(shape[0])) + "]"


# --------------------------------------------------------------------------
# Attributes


def _format_attr_value(key: str, value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, Type):
        return f"!<{value}>"
    if isinstance(value, (tuple, list)) and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in value
    ):
        return "[" + ", ".join(str(int(v)) for v in value) + "]"
    raise FedcError(f"cannot print attribute {key} = {value!r} in the textual IR")


def format_attrs(attrs: tuple) -> str:
    if not attrs:
        return ""
    return " {" + ", ".join(f"{k} = {_format_attr_value(k, v)}" for k, v in attrs) + "}"
