"""Feeds a saved failure to fedc again, in this process, and shows what happens.

    .venv/bin/python tests/fuzz/replay.py fuzz-failures/fed-escape-1a2b3c4d5e6f

Copies the folder's files into a fresh temporary folder, runs the case's
action there (the same code as the fuzz worker, without the worker's
limits) and prints the result with the full traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def load_case(folder: str) -> dict:
    with open(os.path.join(folder, "case.json")) as f:
        case = json.load(f)
    files = {}
    for base, _, names in os.walk(folder):
        for name in names:
            rel = os.path.relpath(os.path.join(base, name), folder)
            if rel in ("case.json", "result.json", "README.txt", "stdin.bin"):
                continue
            with open(os.path.join(base, name), "rb") as f:
                files[rel] = f.read()
    case["files"] = files
    stdin = os.path.join(folder, "stdin.bin")
    if os.path.exists(stdin):
        with open(stdin, "rb") as f:
            case["stdin"] = f.read()
    return case


def main(argv) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    from fuzz import actions

    case = load_case(argv[1])
    sandbox = tempfile.mkdtemp(prefix="fedc-replay-")
    try:
        for name, data in case["files"].items():
            path = os.path.join(sandbox, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
        os.chdir(sandbox)
        result = actions.run(case, sandbox)
        traceback_text = result.pop("traceback", None)
        print(json.dumps(result, indent=2, default=repr))
        if traceback_text:
            print(traceback_text)
    finally:
        os.chdir("/")
        shutil.rmtree(sandbox, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
