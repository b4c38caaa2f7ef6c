"""What the worker does with a case, and how it judges what fedc did.

Every action returns a dict with ``outcome`` — ``ok``, ``error``, ``escape``
or ``roundtrip`` (see :mod:`fuzz.worker`) — and ``detail``/``traceback`` for
anything but ``ok``. The actions:

``load``
    ``fedc.cli.load_module`` on the case's main file (``.fed``, textual IR
    or protobuf: the same loader as every command), then, if it loaded,
    :func:`exercise` the module.
``cli``
    ``fedc.cli.main(argv)`` with the case's standard input; exit status 0 is
    ``ok``, 2 with a message and no traceback is ``error``.
``tfpayload``
    builds a TensorFlow graph from a recipe (:mod:`fuzz.tf_payloads`),
    embeds it in a module and feeds it to fedc through textual IR, protobuf,
    the Python API or the command line.
``ladder_api``
    builds a type or IR nest of a given depth through the Python API.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import traceback
from typing import Any, Callable

import numpy as np

#: The pipelines the exercise runs on a module that loaded (one per case, chosen by the generator).
PIPELINES = [
    "inline,call-dominant,cse,dce,canonicalize",
    "inline,call-dominant,fuse-map-mean,dce,canonicalize",
    "desugar,inline,call-dominant,fuse-maps,cse,dce",
    "inline,call-dominant,insert-secure-aggregation,dce",
    "inline,call-dominant,lower-to-mapreduce",
    "strip-locations,verify",
]

#: Computations of a module that are run with generated arguments (at most).
MAX_RUNS = 3
#: The largest generated argument, in elements.
MAX_ELEMENTS = 10_000


def warm_up(with_tensorflow: bool) -> None:
    from fedc import ir

    ir.parse_module("fedc.module @m {\n}\n")
    if with_tensorflow:
        import tensorflow  # noqa: F401

        from fuzz import tf_payloads

        tf_payloads.warm_up()


#: The worker's audit hook, when running in the worker (see fuzz.worker.Watch).
WATCH = None


@contextlib.contextmanager
def unwatched():
    """Work of the harness inside a case (building a graph, writing a file for fedc) that is not fedc's."""
    was = WATCH is not None and WATCH.active
    if was:
        WATCH.active = False
    try:
        yield
    finally:
        if was:
            WATCH.active = True


def run(case: dict, sandbox: str) -> dict:
    return ACTIONS[case["action"]](case, sandbox)


# --------------------------------------------------------------------------
# Judging


def escape(e: BaseException, step: str) -> dict:
    return {"outcome": "escape", "step": step, "detail": f"{type(e).__name__}: {_short(e)}",
            "exception": type(e).__name__, "traceback": traceback.format_exc()}


def _short(e: BaseException, limit: int = 600) -> str:
    try:
        text = str(e)
    except BaseException as inner:  # noqa: BLE001 - the message itself may be what fails
        text = f"<str() of the exception raised {type(inner).__name__}>"
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def attempt(step: str, fn: Callable[[], Any]) -> tuple[str, Any]:
    """(``ok``, value), (``error``, FedcError) or (``escape``, result dict) for ``fn()``."""
    from fedc import FedcError
    from fedc.cli import render_error

    try:
        return "ok", fn()
    except FedcError as e:
        try:
            str(e)
            render_error(e)
        except BaseException as inner:  # noqa: BLE001 - a message that cannot be shown is an escape
            return "escape", escape(inner, step + " (rendering its FedcError)")
        return "error", e
    except BaseException as e:  # noqa: BLE001 - anything else is what the fuzzer looks for
        return "escape", escape(e, step)


def _error(step: str, e) -> dict:
    return {"outcome": "error", "step": step, "detail": f"{type(e).__name__}: {_short(e, 300)}"}


# --------------------------------------------------------------------------
# load + exercise


def act_load(case: dict, sandbox: str) -> dict:
    from fedc.cli import load_module

    status, value = attempt("load", lambda: load_module(case["main"]))
    if status == "escape":
        return value
    if status == "error":
        return _error("load", value)
    return exercise(value, case)


def exercise(module, case: dict) -> dict:
    """What a user does next with a module that loaded: verify, print, serialize, optimize, run.

    A module that verifies must print to text that parses back to it, and
    serialize to bytes that deserialize to it (``roundtrip`` otherwise); the
    passes and running it may raise only ``FedcError``.
    """
    from fedc import ir, passes

    status, value = attempt("verify", lambda: ir.verify(module))
    if status == "escape":
        return value
    if status == "error":
        return _error("verify", value)
    status, text = attempt("print", lambda: ir.print_module(module))
    if status != "ok":
        return text if status == "escape" else _roundtrip("print", text)
    status, again = attempt("parse printed", lambda: ir.parse_module(text, "printed.fedir"))
    if status != "ok":
        return again if status == "escape" else _roundtrip("parse printed", again, text)
    if again != module:
        return _roundtrip("parse printed", "the printed module parses to a different module", text)
    status, data = attempt("serialize", lambda: ir.serialize(module))
    if status != "ok":
        return data if status == "escape" else _roundtrip("serialize", data)
    status, again = attempt("deserialize", lambda: ir.deserialize(data))
    if status != "ok":
        return again if status == "escape" else _roundtrip("deserialize", again)
    if again != module:
        return _roundtrip("deserialize", "the serialized module deserializes to a different module")
    pipeline = case.get("pipeline")
    if pipeline:
        status, result = attempt(f"passes {pipeline}", lambda: passes.run(module, pipeline).module)
        if status == "escape":
            return result
        if status == "ok":
            status, value = attempt("print after passes", lambda: ir.print_module(result))
            if status == "escape":
                return value
    if case.get("run", True):
        outcome = run_computations(module, case.get("seed", 0))
        if outcome is not None:
            return outcome
    return {"outcome": "ok"}


def _roundtrip(step: str, what, text: str = None) -> dict:
    result = {"outcome": "roundtrip", "step": step, "detail": what if isinstance(what, str) else f"{type(what).__name__}: {_short(what)}"}
    if text is not None:
        result["printed"] = text[:20000]
    return result


def run_computations(module, seed: int):
    """Runs up to MAX_RUNS computations on the reference backend with arguments of their types."""
    import fedc
    from fedc.types import FunctionType

    rng = np.random.default_rng(seed)
    runs = 0
    for symbol, node in module.items():
        t = node.type_signature
        if not isinstance(t, FunctionType) or runs >= MAX_RUNS:
            continue
        if t.parameter is None:
            argument = ()
        else:
            try:
                argument = (value_for(t.parameter, rng),)
            except Exception:  # no value can be made for this type (a function, rank 1000, ...)
                continue
        runs += 1
        status, value = attempt(f"run @{symbol}", lambda: fedc.Computation(module, symbol)(*argument))
        if status == "escape":
            value["symbol"] = symbol
            return value
    return None


class _NoValue(Exception):
    """No argument can be made for this type (a function, an abstract type, too large)."""


def value_for(t, rng, budget: list = None):
    """A Python value of type ``t``, as a user would pass it: lists per client, dicts for named structs."""
    from fedc.types import AbstractType, FederatedType, FunctionType, PlacementType, SequenceType, StructType, TensorType

    budget = [MAX_ELEMENTS] if budget is None else budget
    if isinstance(t, TensorType):
        shape = [int(rng.integers(0, 3)) for _ in range(int(rng.integers(0, 3)))] if t.shape is None else [
            int(rng.integers(0, 4)) if d is None else d for d in t.shape]
        size = int(np.prod(shape, dtype=np.float64)) if shape else 1
        budget[0] -= size
        if budget[0] < 0:
            raise _NoValue()
        if t.dtype.kind == "U":
            return np.full(shape, "s", dtype=t.dtype) if shape else "s"
        if t.dtype.kind == "b":
            values = rng.integers(0, 2, size=shape).astype(bool)
        elif t.dtype.kind in "iu":
            values = rng.integers(0, 5, size=shape).astype(t.dtype)
        elif t.dtype.kind == "c":
            values = (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(t.dtype)
        else:
            values = rng.normal(size=shape).astype(t.dtype)
        return values if shape else values[()]
    if isinstance(t, StructType):
        items = list(t.items())
        if items and all(n is not None for n, _ in items):
            return {n: value_for(e, rng, budget) for n, e in items}
        return [value_for(e, rng, budget) for _, e in items]
    if isinstance(t, SequenceType):
        return [value_for(t.element, rng, budget) for _ in range(int(rng.integers(0, 3)))]
    if isinstance(t, FederatedType):
        if t.all_equal:
            return value_for(t.member, rng, budget)
        return [value_for(t.member, rng, budget) for _ in range(3)]
    if isinstance(t, (FunctionType, AbstractType, PlacementType)):
        raise _NoValue()
    raise _NoValue()


# --------------------------------------------------------------------------
# The command line


class _Captured(io.TextIOWrapper):
    def isatty(self) -> bool:
        return False


def call_cli(argv: list, stdin: bytes = b"") -> tuple[int, str, str, Any]:
    """Runs ``fedc.cli.main(argv)`` in this process: (status, stdout, stderr, escaped exception or None)."""
    from fedc import cli

    out = _Captured(io.BytesIO(), encoding="utf-8", errors="backslashreplace")
    err = _Captured(io.BytesIO(), encoding="utf-8", errors="backslashreplace")
    inp = _Captured(io.BytesIO(stdin), encoding="utf-8")
    saved = sys.stdin, sys.stdout, sys.stderr
    sys.stdin, sys.stdout, sys.stderr = inp, out, err
    escaped = None
    try:
        status = cli.main(list(argv))
    except SystemExit as e:  # argparse: --help, --version, a usage error
        status = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    except BaseException as e:  # noqa: BLE001
        status, escaped = None, escape(e, "fedc " + " ".join(argv[:1]))
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved
    out.flush()
    err.flush()
    return status, out.buffer.getvalue().decode("utf-8", "backslashreplace"), err.buffer.getvalue().decode("utf-8", "backslashreplace"), escaped


def judge_cli(argv: list, status, stdout: str, stderr: str, escaped) -> dict:
    if escaped is not None:
        return escaped
    tail = stderr[-3000:]
    if "Traceback (most recent call last)" in stderr or "internal error (a bug in fedc" in stderr:
        return {"outcome": "escape", "step": "fedc " + argv[0] if argv else "fedc", "status": status,
                "detail": _exception_line(stderr), "exception": _exception_name(stderr), "traceback": tail}
    if status == 0:
        return {"outcome": "ok", "status": 0}
    if status == 2:
        if not stderr.strip():
            return {"outcome": "escape", "status": 2, "detail": "exit status 2 without a message"}
        return {"outcome": "error", "status": 2, "detail": stderr.strip().splitlines()[0][:300]}
    return {"outcome": "escape", "status": status, "detail": f"exit status {status}", "traceback": tail}


def _exception_line(stderr: str) -> str:
    lines = [l for l in stderr.strip().splitlines() if l and not l.startswith(" ")]
    return lines[-1][:600] if lines else stderr[:600]


def _exception_name(stderr: str) -> str:
    line = _exception_line(stderr)
    head = line.split(":", 1)[0].strip()
    return head.rsplit(".", 1)[-1] if head.replace(".", "").replace("_", "").isalnum() else "?"


def _leftover_timers() -> list:
    """Alarms and timer threads a command left armed (cancelled here, so the next case starts clean)."""
    import signal
    import threading

    left = [t for t in threading.enumerate() if isinstance(t, threading.Timer) and not t.finished.is_set()]
    for t in left:
        t.cancel()
    if signal.getitimer(signal.ITIMER_REAL) != (0.0, 0.0):
        signal.setitimer(signal.ITIMER_REAL, 0)
        left.append("an interval timer (SIGALRM)")
    return left


def act_cli(case: dict, sandbox: str) -> dict:
    argv = case["argv"]
    status, stdout, stderr, escaped = call_cli(argv, case.get("stdin", b""))
    result = judge_cli(argv, status, stdout, stderr, escaped)
    result["stderr"] = stderr[-2000:]
    left = _leftover_timers()
    if left and result["outcome"] in ("ok", "error"):
        result.update(outcome="escape", exception="leftover timer",
                      detail=f"fedc.cli.main returned but left armed: {', '.join(map(str, left))}")
    if result["outcome"] == "ok":
        check = case.get("check_stdout")
        if check == "secret" and case.get("secret") and case["secret"] in stdout:
            result.update(outcome="file", detail="the output shows the content of a file it was not asked to read")
    return result


# --------------------------------------------------------------------------
# TensorFlow payloads and ladders through the Python API


def act_tfpayload(case: dict, sandbox: str) -> dict:
    from fuzz import tf_payloads

    return tf_payloads.run_recipe(case, sandbox)


def act_ladder_api(case: dict, sandbox: str) -> dict:
    from fuzz import ladders

    status, value = attempt(f"build {case['nest']} x{case['depth']}", lambda: ladders.build_api(case["nest"], case["depth"]))
    if status == "escape":
        return value
    if status == "error":
        return _error("build", value)
    module = value
    if module is None:
        return {"outcome": "ok"}
    return exercise(module, case)


def act_selftest(case: dict, sandbox: str) -> dict:
    """Misbehaves on purpose, so the tier's own tests can check that the worker sees each failure."""
    mode = case["mode"]
    if mode == "escape":
        return attempt("selftest", lambda: int("not a number"))[1]
    if mode == "fedc-error":
        from fedc import FedcError

        status, value = attempt("selftest", lambda: (_ for _ in ()).throw(FedcError("bad input")))
        return _error("selftest", value)
    if mode == "hang":
        import time

        time.sleep(3600)
    if mode == "crash":
        os.abort()
    if mode == "write-outside":
        with open(case["path"], "w") as f:
            f.write("x")
    if mode == "write-inside":
        with open("unasked.txt", "w") as f:
            f.write("x")
    if mode == "read-outside":
        with open(case["path"]) as f:
            f.read()
    if mode == "process":
        import subprocess

        subprocess.run(["true"], check=False)
    return {"outcome": "ok"}


ACTIONS = {
    "selftest": act_selftest,
    "load": act_load,
    "cli": act_cli,
    "tfpayload": act_tfpayload,
    "ladder_api": act_ladder_api,
}
