"""fedc's limits on the size of what it reads and builds: one place, one number each.

``MAX_NESTING`` bounds how deeply types and IR may nest: a struct inside a
struct, a block inside a block, a call whose argument is a call, … Every way
into fedc enforces it the same way — building a type or an IR node (so also
the Python API and every pass), parsing types, textual IR and ``.fed``
source, deserializing protobuf, and reading JSON arguments — with a
:class:`~fedc.FedcError` that names the limit, never a ``RecursionError``.
Programs as tracing and the ``.fed`` compiler write them are flat (one
binding per intermediate value), so real programs stay far below it; deep
nesting only comes from generated or hostile input.

Sizes have one rule each, enforced where the thing is read or built, with a
:class:`SizeError` (a located :class:`~fedc.ParseError` in text):

* every integer fedc reads from text (types, textual IR, ``.fed`` source,
  JSON arguments, pass options) goes through :func:`parse_integer`, which
  refuses more than 64 bits before converting the digits;
* a tensor shape (:func:`check_shape`, applied by ``fedc.types.TensorType``)
  has rank at most :data:`MAX_RANK`, dimensions that fit int64, and known
  dimensions whose product fits int64; a line or column number fits int64;
* a tensor that fedc itself allocates from a type (``zeros``, the result of
  a local op, an aggregation's zero, …) has at most :data:`MAX_TENSOR_BYTES`
  bytes, checked by :func:`check_allocation` before anything is allocated.
"""

from __future__ import annotations

import functools
import math
import re
import sys

from fedc.errors import FedcError, ParseError, SourceLocation, line_of_offset

__all__ = [
    "INT64_MAX",
    "MAX_ARGUMENT_BYTES",
    "MAX_IR_NODES",
    "MAX_IR_TEXT_NESTING",
    "MAX_NESTING",
    "MAX_RANK",
    "MAX_TENSOR_BYTES",
    "RECURSION_LIMIT",
    "UINT64_MAX",
    "NestingError",
    "SizeError",
    "check_allocation",
    "check_nesting",
    "check_shape",
    "check_text_nesting",
    "deep_recursion",
    "parse_integer",
]

MAX_NESTING = 1000

# How many bytes an argument file (fedc run --args) may hold: a JSON file's size, or
# the uncompressed size of an .npz's arrays, checked before anything is allocated.
MAX_ARGUMENT_BYTES = 1 << 30

# How deeply the brackets of textual IR may nest. The text of IR within MAX_NESTING
# nests deeper than its nodes: a region or an inline struct opens a bracket per node,
# and the type written in the innermost op opens one per level of the type, which
# may itself nest MAX_NESTING deep; the module, an argument list, an attribute and a
# location add a few. So what fedc prints within the limit, fedc parses.
MAX_IR_TEXT_NESTING = 2 * MAX_NESTING + 8

# How many IR nodes a pass may make out of a module by copying (inlining copies a
# computation into each of its uses, so a chain of computations that each call the
# previous one twice grows exponentially). Checked before the copies are made. A
# program may raise it: ``fedc.limits.MAX_IR_NODES = 10_000_000``.
MAX_IR_NODES = 1_000_000


class NestingError(FedcError):
    """Something nests more deeply than :data:`MAX_NESTING`."""


def check_nesting(depth: int, what: str) -> None:
    """Raises :class:`NestingError` if ``depth`` exceeds :data:`MAX_NESTING`."""
    if depth > MAX_NESTING:
        raise NestingError(
            f"{what} nests more than {MAX_NESTING} levels deep (fedc.limits.MAX_NESTING); "
            "fedc refuses deeper nesting"
        )


# Walks of types and IR (printer, parsers, verifier, passes, interpreters) recurse
# once or a few times per level. Python's default limit of 1000 frames would stop
# them well below MAX_NESTING; Python-to-Python calls do not use the C stack, so a
# higher limit is safe.
RECURSION_LIMIT = 20 * MAX_NESTING


def deep_recursion(fn):
    """Runs ``fn`` with room to recurse through anything within :data:`MAX_NESTING`.

    Input that is deeper still and reaches ``fn`` unchecked (text before it is
    parsed, JSON) ends in a :class:`NestingError` instead of a ``RecursionError``.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        previous = sys.getrecursionlimit()
        raised = previous < RECURSION_LIMIT
        if raised:
            sys.setrecursionlimit(RECURSION_LIMIT)
        try:
            return fn(*args, **kwargs)
        except RecursionError:
            raise NestingError(
                f"the input nests too deeply for fedc (the limit is {MAX_NESTING} levels, "
                "fedc.limits.MAX_NESTING)"
            ) from None
        finally:
            if raised:
                sys.setrecursionlimit(previous)

    return wrapper


@functools.lru_cache(maxsize=None)
def _bracket_scanner(brackets: str, comment: str):
    # What the scan stops at: a string literal (to its closing quote or the end of its
    # line; a backslash escapes the next character), a comment, a bracket. The regex
    # skips everything else, string bodies included, without a Python step per character.
    closing = {"(": ")", "[": "]", "{": "}", "<": ">"}
    parts = [r'"[^"\\\n]*(?:\\[\s\S][^"\\\n]*)*"?']
    if comment:
        parts.append(re.escape(comment) + r"[^\n]*")
    parts.append("[" + re.escape(brackets + "".join(closing[b] for b in brackets)) + "]")
    return re.compile("|".join(parts)), frozenset(brackets), frozenset(closing[b] for b in brackets)


def check_text_nesting(
    text: str,
    filename: str,
    brackets: str = "([{<",
    comment: str = "",
    what: str = "the text",
    limit: int = MAX_NESTING,
    limit_name: str = "fedc.limits.MAX_NESTING",
) -> None:
    """Refuses ``text`` whose brackets nest more than ``limit`` deep, before it is parsed.

    Parsers recurse once or more per bracket; scanning first bounds that
    recursion for any input. ``brackets`` are the opening ones to count
    (``<``/``>`` only where they are brackets; ``->`` is never one); string
    literals in double quotes are skipped, and so is the rest of a line after
    ``comment``. Raises a located :class:`~fedc.ParseError`.
    """
    scanner, opens, closes = _bracket_scanner(brackets, comment)
    depth = 0
    for match in scanner.finditer(text):
        i = match.start()
        c = text[i]
        if c in opens:
            depth += 1
            if depth > limit:
                line = line_of_offset(text, i)
                column = i - text.rfind("\n", 0, i)
                raise ParseError(
                    f"{what} nests brackets more than {limit} deep ({limit_name}); fedc refuses deeper nesting",
                    SourceLocation(filename, line, column),
                    text,
                )
        elif c in closes and match.end() == i + 1 and not (c == ">" and i and text[i - 1] == "-"):
            depth = max(depth - 1, 0)  # (not a string, a comment or the arrow ->)


# --------------------------------------------------------------------------
# Sizes

INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1

# The highest rank of a tensor type. Half numpy's limit (NPY_MAXDIMS, 64): a backend adds axes to
# a value's own (the clients, the elements of a sequence, batches of either), and a tensor of the
# highest rank must still fit once they are stacked. Far above what models use.
MAX_RANK = 32

# The largest tensor, in bytes, that fedc allocates itself from a type (the reference backend's
# zeros and ones, local op results, aggregation zeros; the passes' constants). Read when a
# tensor is allocated, so a program may raise it: ``fedc.limits.MAX_TENSOR_BYTES = 1 << 36``.
MAX_TENSOR_BYTES = 1 << 32


class SizeError(FedcError, ValueError):
    """Something is larger than one of fedc's size limits (see :mod:`fedc.limits`)."""


def shown_integer(text) -> str:
    """An integer (or its text) for a message: long digit strings are shortened, with their length."""
    if isinstance(text, int):
        if text.bit_length() > 100:  # str() of a huge int is slow, and refused past 4300 digits
            return f"(an integer of {text.bit_length()} bits)"
        text = str(text)
    if len(text) <= 32:
        return text
    return f"{text[:12]}...{text[-6:]} ({len(text)} characters)"


_INTEGER_TEXT = re.compile(r"([+-]?)(0[xX])?([0-9A-Fa-f]+)\Z")
_DECIMAL_DIGITS = re.compile(r"[0-9]+\Z")


def parse_integer(text: str, what: str = "an integer", maximum: int = UINT64_MAX) -> int:
    """The integer written ``text``: decimal, or hexadecimal after ``0x``, with an optional sign.

    The one way fedc reads an integer from text. Its magnitude must be at most
    ``maximum`` (by default 64 bits, the widest integer dtype; ``INT64_MAX``
    for dimensions and line numbers); longer digit strings are refused before
    they are converted, so any input costs time linear in its length. Raises
    :class:`SizeError` (a ``ValueError``) naming ``what``; text that is not an
    integer raises a plain ``ValueError``.
    """
    match = _INTEGER_TEXT.match(text)
    if match is None or (match.group(2) is None and not _DECIMAL_DIGITS.match(match.group(3))):
        raise ValueError(f"{what} {shown_integer(text)} is not an integer")
    sign, hex_prefix, digits = match.groups()
    significant = digits.lstrip("0") or "0"
    if hex_prefix:
        too_long = len(significant) > -(-maximum.bit_length() // 4)
    else:
        too_long = len(significant) > len(str(maximum))
    value = None if too_long else int(significant, 16 if hex_prefix else 10)
    if value is None or value > maximum:
        bound = {UINT64_MAX: f"{maximum} (64 bits)", INT64_MAX: f"{maximum} (int64)"}.get(maximum, str(maximum))
        raise SizeError(f"{what} {shown_integer(text)} is too large: fedc reads it up to {bound}")
    return -value if sign == "-" else value


def check_shape(shape: tuple, what: str = "a tensor shape") -> None:
    """Refuses a shape (a tuple of ints >= 0 and ``None``) that fedc cannot represent.

    Its rank is at most :data:`MAX_RANK`, each dimension fits int64, and so
    does the product of the known non-zero dimensions (the element count, as
    numpy and TensorFlow count it). Raises :class:`SizeError`.
    """
    if len(shape) > MAX_RANK:
        raise SizeError(f"{what} has rank {len(shape)}; fedc's tensors have rank at most {MAX_RANK} (fedc.limits.MAX_RANK)")
    count = 1
    for d in shape:
        if d is None or d == 0:
            continue
        if d > INT64_MAX:
            raise SizeError(f"{what} has dimension {shown_integer(d)}, which does not fit int64 (at most {INT64_MAX})")
        count *= d
        if count > INT64_MAX:
            raise SizeError(
                f"{what} [{','.join('?' if x is None else shown_integer(x) for x in shape[:8])}"
                f"{',...' if len(shape) > 8 else ''}] has more than {INT64_MAX} elements "
                "(the element count must fit int64)"
            )


def check_allocation(shape: tuple, itemsize: int, what: str) -> None:
    """Refuses to allocate a tensor of ``shape`` larger than :data:`MAX_TENSOR_BYTES`.

    ``itemsize`` is the bytes per element (numpy's ``dtype.itemsize``; 4 per
    character of a string). Called before the allocation, so an absurd shape
    costs nothing. Raises :class:`SizeError` naming ``what``.
    """
    limit = MAX_TENSOR_BYTES
    size = math.prod(shape) * max(itemsize, 1)
    if size > limit:
        raise SizeError(
            f"{what} would allocate a tensor of shape [{','.join(str(d) for d in shape[:8])}"
            f"{',...' if len(shape) > 8 else ''}] ({size:,} bytes), more than "
            f"fedc.limits.MAX_TENSOR_BYTES ({limit:,} bytes); raise that limit to allow it"
        )
