"""Errors a user can cause, and source locations to report them at.

Every error that bad input can trigger is a :class:`FedcError`. The message
names the place (``file:line:col`` with the source line and a caret for text;
the node for IR) and the types involved in TFF notation. The CLI prints these
without a traceback and exits with status 2.
"""

from __future__ import annotations

import dataclasses
import functools
from array import array
from bisect import bisect_right

__all__ = [
    "FedcError",
    "FedcTypeError",
    "FedcWarning",
    "ParseError",
    "SerializationError",
    "SourceLocation",
    "UnsafeTensorFlowError",
    "UnsupportedError",
    "VerificationError",
]


@dataclasses.dataclass(frozen=True)
class SourceLocation:
    """A point in a source file: 1-based line and column."""

    file: str
    line: int
    column: int

    def __post_init__(self):
        # Line and column: what every form of IR (text, protobuf) can carry; 0 means unknown.
        # (The file may be None in an error's location while a parser has not named it yet.)
        if not isinstance(self.file, (str, type(None))):
            raise FedcError(f"a source location's file is a string, not {self.file!r}")
        for what, number in (("line", self.line), ("column", self.column)):
            if not isinstance(number, int) or isinstance(number, bool) or not 0 <= number <= 2**63 - 1:
                raise FedcError(f"a source location's {what} is an integer from 0 to 2**63-1, not {number!r}")

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@functools.lru_cache(maxsize=4)
def _line_starts(source: str) -> array:
    # The offset at which each line starts. Lines end at "\n", as fedc's parsers count
    # them. Cached (by the string, whose hash Python keeps), so that reporting many
    # errors in one text indexes it once: each excerpt is then O(log lines + line).
    starts = array("q", [0])
    find = source.find
    i = find("\n")
    while i >= 0:
        starts.append(i + 1)
        i = find("\n", i + 1)
    return starts


def _line_count(source: str, starts: array) -> int:
    # A final line break ends the last line; it does not start another.
    return len(starts) - 1 if starts[-1] == len(source) else len(starts)


def source_line(source: str, line: int) -> str | None:
    """The text of the 1-based ``line`` of ``source`` (without its line break), or None."""
    starts = _line_starts(source)
    if not 1 <= line <= _line_count(source, starts):
        return None
    end = starts[line] - 1 if line < len(starts) else len(source)
    text = source[starts[line - 1] : end]
    return text[:-1] if text.endswith("\r") else text


def end_position(source: str) -> tuple:
    """(line, column) just after the last character of ``source`` (a final line break aside)."""
    line = max(_line_count(source, _line_starts(source)), 1)
    return line, len(source_line(source, line) or "") + 1


def line_of_offset(source: str, offset: int) -> int:
    """The 1-based line of the character at ``offset`` in ``source``."""
    return bisect_right(_line_starts(source), offset)


def excerpt(source: str, line: int, column: int) -> str:
    """Returns the source line at ``line`` and a caret under ``column``."""
    text = source_line(source, line)
    if text is None:
        return ""
    text = text.expandtabs(1)
    caret = " " * max(column - 1, 0) + "^"
    return f"  {text}\n  {caret}"


class FedcError(Exception):
    """Base class of every error that a user of fedc can cause.

    ``location`` (a :class:`SourceLocation`) and ``source`` (the text the
    location points into) are optional; when both are given the message shows
    the offending line with a caret.
    """

    def __init__(
        self,
        message: str,
        location: SourceLocation | None = None,
        source: str | None = None,
    ):
        self.message = message
        self.location = location
        self.source = source
        super().__init__(self._render())

    def _render(self) -> str:
        if self.location is None:
            return self.message
        text = f"{self.location}: {self.message}"
        if self.source is not None:
            shown = excerpt(self.source, self.location.line, self.location.column)
            if shown:
                text = f"{text}\n{shown}"
        return text


class FedcTypeError(FedcError, TypeError):
    """A value, argument or building block does not have the type required."""


class ParseError(FedcError, ValueError):
    """Text (a type, textual IR, a ``.fed`` file) could not be parsed."""


class VerificationError(FedcError):
    """The IR breaks one of its invariants (scoping, SSA, types, placements).

    ``node`` is the IR node at fault, when there is one (the textual IR's
    parser uses it to locate the error in its text).
    """

    def __init__(self, message: str, location: SourceLocation | None = None, source: str | None = None, node=None):
        super().__init__(message, location, source)
        self.node = node


class SerializationError(FedcError):
    """Serialized bytes are malformed, truncated, too large or hostile."""


class UnsafeTensorFlowError(FedcError):
    """A TensorFlow graph uses an op outside fedc's allowlist (see :mod:`fedc.tensorflow_ops`)."""


class UnsupportedError(FedcError):
    """A backend or tool does not implement something a computation uses."""


class FedcWarning(UserWarning):
    """Something works, but not as the user asked for (a computation runs in-process, not on the workers)."""


class FedcValueError(FedcError, ValueError):
    """A value an operation cannot take: an unknown client id, a seed out of range, a malformed data file."""
