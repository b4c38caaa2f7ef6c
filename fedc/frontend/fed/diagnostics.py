"""What every stage of the ``.fed`` front end shares about errors.

:class:`DiagnosticsError` is what compiling a file raises: every error found,
in order. :class:`Poisoned` and :data:`POISON` mark a value that depends on an
error already reported, so that it is not reported again; the rest are helpers
for messages.
"""

from __future__ import annotations

import difflib
from typing import Sequence

from fedc.errors import FedcError

__all__ = ["DiagnosticsError", "POISON", "Poisoned", "did_you_mean", "os_reason", "plural"]


class DiagnosticsError(FedcError):
    """One or more located errors in ``.fed`` source; ``diagnostics`` lists them in order."""

    def __init__(self, diagnostics: Sequence[FedcError]):
        self.diagnostics = list(diagnostics)
        count = len(self.diagnostics)
        body = "\n\n".join(str(d) for d in self.diagnostics)
        super().__init__(f"{body}\n\n{count} error{'' if count == 1 else 's'}")


class Poisoned(Exception):
    """Raised where a value depends on something already reported as an error."""


POISON = object()


def os_reason(e: Exception) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror.lower() if e.strerror else str(e)
    return str(e)


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def did_you_mean(name: str, candidates) -> str:
    """'; did you mean 'x'?' for the closest candidate (ties: the earliest), or ''."""
    best, best_score = None, 0.6
    matcher = difflib.SequenceMatcher()
    matcher.set_seq2(name.lower())
    for c in dict.fromkeys(candidates):
        if c == name:
            continue
        matcher.set_seq1(c.lower())
        if matcher.real_quick_ratio() > best_score and matcher.quick_ratio() > best_score:
            score = matcher.ratio()
            if score > best_score:
                best, best_score = c, score
    return f"; did you mean {best!r}?" if best else ""
