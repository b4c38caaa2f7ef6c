"""The fuzz tier's shared worker process and the check every fuzz test makes."""

from __future__ import annotations

import collections
import os

import pytest

from fuzz import harness, kinds
from fuzz.run import signature

#: The seed of the pytest tier: every CI run feeds fedc the same inputs.
SEED = 9


@pytest.fixture(scope="session")
def fuzz_worker():
    """One worker for the whole tier (it imports TensorFlow once)."""
    with harness.Worker(tensorflow=True) as worker:
        yield worker


def check_cases(worker, cases, folder, timeout: float = 30.0) -> collections.Counter:
    """Runs ``cases`` and fails, with a reproducer for each distinct failure, unless fedc kept its promise.

    The promise: every input works or raises a ``FedcError`` (the CLI: exits
    2 with a message and no traceback); no input touches a file it did not
    ask for, hangs, crashes the process, or loads into something that does
    not read back the same. A case marked ``expect_ok`` must work.
    """
    outcomes = collections.Counter()
    failures: dict[str, list] = collections.defaultdict(list)
    for case, result in harness.run_cases(worker, cases, timeout):
        outcome = result["outcome"]
        outcomes[outcome] += 1
        if outcome in harness.BROKEN:
            failures[signature(case, result)].append((case, result))
        elif case.get("expect_ok") and outcome != "ok":
            failures[f"not ok: {result.get('detail', '')[:100]}"].append((case, result))
    if failures:
        os.makedirs(folder, exist_ok=True)
        parts = []
        for name, items in sorted(failures.items(), key=lambda kv: -len(kv[1])):
            case, result = items[0]
            saved = harness.save(case, result, str(folder))
            parts.append(f"--- {len(items)} x {name}\n{harness.describe(case, result)}\n  saved in {saved}")
        total = sum(len(v) for v in failures.values())
        pytest.fail(
            f"{total} of {sum(outcomes.values())} inputs broke fedc's promise ({dict(outcomes)}); "
            f"{len(failures)} distinct failures, one reproducer each:\n" + "\n".join(parts),
            pytrace=False,
        )
    return outcomes


def cases(kind: str, count: int, start: int = 0):
    return (kinds.generate(kind, SEED, i) for i in range(start, start + count))
