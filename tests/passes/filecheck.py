"""A small FileCheck, in the spirit of LLVM's, for golden tests of passes.

Directives (in `//` comments of the input file):

    // RUN: inline,call-dominant        the pipeline to run (one RUN line)
    // CHECK: text                      text appears, after the previous match
    // CHECK-NEXT: text                 text appears on the line right after the previous match
    // CHECK-NOT: text                  text does not appear between the previous and the next match
    // CHECK-EMPTY:                     the next line is empty
    // ERROR: text                      the pipeline fails with a FedcError containing text

Matching is by substring on one line, with leading/trailing spaces ignored.
"""

from __future__ import annotations

import dataclasses
import re

_DIRECTIVE = re.compile(r"^\s*//\s*(RUN|CHECK|CHECK-NEXT|CHECK-NOT|CHECK-EMPTY|ERROR):\s?(.*?)\s*$")


@dataclasses.dataclass
class Directive:
    kind: str
    text: str
    line: int


def directives(source: str) -> list[Directive]:
    found = []
    for number, line in enumerate(source.splitlines(), 1):
        match = _DIRECTIVE.match(line)
        if match:
            found.append(Directive(match.group(1), match.group(2), number))
    return found


class CheckFailure(AssertionError):
    pass


def check(output: str, checks: list[Directive], name: str = "<output>") -> None:
    """Raises CheckFailure, showing the output, when ``output`` does not satisfy ``checks``."""
    lines = output.splitlines()
    position = 0  # index of the next line that may match
    last = -1  # index of the last matched line
    pending_not: list[Directive] = []

    def fail(directive: Directive, why: str) -> CheckFailure:
        shown = "\n".join(f"{i + 1:4}: {text}" for i, text in enumerate(lines))
        return CheckFailure(f"{name}:{directive.line}: {directive.kind}: {directive.text!r} {why}\noutput:\n{shown}")

    def settle_nots(upto: int) -> None:
        for d in pending_not:
            for i in range(max(last + 1, 0), upto):
                if d.text in lines[i]:
                    raise fail(d, f"matched line {i + 1}, which it must not")
        pending_not.clear()

    for d in checks:
        if d.kind in ("RUN", "ERROR"):
            continue
        if d.kind == "CHECK-NOT":
            pending_not.append(d)
            continue
        if d.kind in ("CHECK-NEXT", "CHECK-EMPTY"):
            target = last + 1
            if target >= len(lines):
                raise fail(d, "has no next line to match")
            ok = lines[target].strip() == "" if d.kind == "CHECK-EMPTY" else d.text in lines[target]
            if not ok:
                raise fail(d, f"does not match the next line {target + 1}: {lines[target]!r}")
            settle_nots(target)
            last, position = target, target + 1
            continue
        for i in range(position, len(lines)):
            if d.text in lines[i]:
                settle_nots(i)
                last, position = i, i + 1
                break
        else:
            raise fail(d, "not found after line " + str(last + 1))
    settle_nots(len(lines))
