"""The long fuzz run behind ``scripts/fuzz``.

    scripts/fuzz --minutes 10                 # every kind, sharing the time equally
    scripts/fuzz --minutes 5 --kind proto     # one kind (repeat --kind, or a comma list)
    scripts/fuzz --minutes 1 --seed 7         # another sequence of inputs

Runs the generators of :mod:`fuzz.kinds` with a seed (default: a new one,
printed) until the time is up, giving the next case to the kind that has used
the least time so far. Every case that broke fedc's promise — escaped as a
non-``FedcError``, touched a file it was not asked to, failed to read back
what fedc wrote, hung or crashed the process — is written to its own folder
under ``--out`` (default ``fuzz-failures/``) with a README saying how to feed
it to fedc again. At the end the per-kind counts are printed as JSON on
standard output: tried, kept (ok / error), escaped, hung, and the distinct
escapes by exception and place.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from fuzz import harness, kinds  # noqa: E402


def signature(case: dict, result: dict) -> str:
    """A short name for a failure: outcome, exception and the innermost fedc frame."""
    outcome = result["outcome"]
    if outcome in ("hang", "crash"):
        return f"{outcome}: {result.get('detail', '')[:80]}"
    if outcome == "file":
        return "file: " + "; ".join(sorted({re.sub(r"[^:]*$", "", f) or f for f in result.get("files", [])})) or result.get("detail", "")[:80]
    if outcome == "roundtrip":
        return f"roundtrip at {result.get('step')}: {result.get('detail', '')[:100]}"
    frames = re.findall(r'File "([^"]+)", line (\d+), in (\S+)', result.get("traceback", ""))
    place = ""
    for file, line, function in reversed(frames):
        if "/fedc/" in file or "/passes/" in file or "/backends/" in file:
            place = f" at {file.split('/wt/')[-1].split('/', 1)[-1]}:{function}"
            break
    return f"{outcome}: {result.get('exception') or result.get('detail', '')[:60]}{place}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, required=True, help="how long to run, in minutes")
    parser.add_argument("--seed", type=int, default=None, help="the seed (default: a new one, printed)")
    parser.add_argument("--kind", action="append", default=[], help=f"the kinds to run (default all: {', '.join(kinds.KINDS)})")
    parser.add_argument("--out", default="fuzz-failures", help="where to write the cases that broke the promise")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds a case may take before it counts as hung")
    parser.add_argument("--no-tensorflow", action="store_true", help="skip the kinds that need TensorFlow (tfpayload)")
    args = parser.parse_args(argv)
    chosen = [k for value in args.kind for k in value.split(",") if k] or list(kinds.KINDS)
    if args.no_tensorflow:
        chosen = [k for k in chosen if k != "tfpayload"]
    unknown = [k for k in chosen if k not in kinds.KINDS]
    if unknown:
        parser.error(f"unknown kind {', '.join(unknown)} (the kinds are {', '.join(kinds.KINDS)})")
    seed = args.seed if args.seed is not None else int(time.time()) % 1_000_000
    print(f"scripts/fuzz: seed {seed}, {args.minutes:g} minutes, kinds {', '.join(chosen)}", file=sys.stderr)
    deadline = time.monotonic() + args.minutes * 60
    spent = {k: 0.0 for k in chosen}
    index = {k: 0 for k in chosen}
    counts = {k: collections.Counter() for k in chosen}
    signatures = {k: collections.Counter() for k in chosen}
    exhausted = set()
    out = os.path.abspath(args.out)
    last_report = time.monotonic()
    with harness.Worker(tensorflow="tfpayload" in chosen and not args.no_tensorflow) as worker:
        while time.monotonic() < deadline:
            live = [k for k in chosen if k not in exhausted]
            if not live:
                break
            kind = min(live, key=lambda k: spent[k])
            started = time.monotonic()
            limit = kinds.count(kind)
            if limit is not None and index[kind] >= limit:
                exhausted.add(kind)
                continue
            try:
                case = kinds.generate(kind, seed, index[kind])
            except Exception:  # a bug of the generator: reported, and the run goes on
                counts[kind]["harness"] += 1
                signatures[kind]["harness: the generator failed"] += 1
                print(f"scripts/fuzz: generating {kind} case {index[kind]} failed:\n{traceback.format_exc()}", file=sys.stderr)
                index[kind] += 1
                continue
            index[kind] += 1
            timeout = max(args.timeout, case.get("timeout", 0))
            result = worker.run(case, timeout)
            spent[kind] += time.monotonic() - started
            outcome = result["outcome"]
            counts[kind][outcome] += 1
            if outcome in harness.BROKEN:
                name = signature(case, result)
                if signatures[kind][name] < 3:  # a few reproducers per distinct failure
                    harness.save(case, result, out)
                signatures[kind][name] += 1
            if time.monotonic() - last_report > 30:
                last_report = time.monotonic()
                done = ", ".join(f"{k} {sum(counts[k].values())}" for k in chosen)
                broken = sum(counts[k][o] for k in chosen for o in harness.BROKEN)
                print(f"scripts/fuzz: {done}; {broken} broke the promise", file=sys.stderr)
    report = {"seed": seed, "minutes": args.minutes, "kinds": {}}
    for k in chosen:
        c = counts[k]
        report["kinds"][k] = {
            "tried": sum(c.values()),
            "ok": c["ok"],
            "fedc_error": c["error"],
            "escaped": c["escape"] + c["crash"] + c["roundtrip"] + c["harness"],
            "touched_files": c["file"],
            "hung": c["hang"],
            "crashed": c["crash"],
            "roundtrip": c["roundtrip"],
            "seconds": round(spent[k], 1),
            "distinct_failures": dict(signatures[k].most_common()),
        }
    report["failures_folder"] = out if any(signatures[k] for k in chosen) else None
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
