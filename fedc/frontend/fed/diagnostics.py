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

__all__ = ["DiagnosticsError", "MAX_SHOWN_ERRORS", "POISON", "Poisoned", "did_you_mean", "os_reason", "plural"]

# The message of a DiagnosticsError shows at most this many errors, then counts the
# rest (its ``diagnostics`` keep them all); and at most this many errors in one
# compilation get a "did you mean" suggestion, which compares a name with every
# name in scope. Both bound the cost of reporting to linear in the size of the file.
MAX_SHOWN_ERRORS = 100


class DiagnosticsError(FedcError):
    """One or more located errors in ``.fed`` source; ``diagnostics`` lists them in order.

    ``shown`` is the first :data:`MAX_SHOWN_ERRORS` of them, the ones the message
    shows; :meth:`summary` is the line that ends it.
    """

    def __init__(self, diagnostics: Sequence[FedcError]):
        self.diagnostics = list(diagnostics)
        self.shown = self.diagnostics[:MAX_SHOWN_ERRORS]
        body = "\n\n".join(str(d) for d in self.shown)
        super().__init__(f"{body}\n\n{self.summary()}")

    def summary(self) -> str:
        """'3 errors', or '4000 errors (the first 100 are shown)' when some are not shown."""
        count = len(self.diagnostics)
        text = plural(count, "error")
        if count > len(self.shown):
            text += f" (the first {len(self.shown)} are shown)"
        return text


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
