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
"""

from __future__ import annotations

import functools
import re
import sys

from fedc.errors import FedcError, ParseError, SourceLocation, line_of_offset

__all__ = ["MAX_ARGUMENT_BYTES", "MAX_IR_TEXT_NESTING", "MAX_NESTING", "RECURSION_LIMIT", "NestingError", "check_nesting", "check_text_nesting", "deep_recursion"]

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
