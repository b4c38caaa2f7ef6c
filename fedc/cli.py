"""The ``fedc`` command line.

    fedc compile algo.fed [-o out] [--emit ir|proto|dot|svg|png] [--passes PIPELINE] [--report privacy|cost]
    fedc run algo.fed [--entry NAME] [--args FILE.json|FILE.npz] [--rounds N] [--backend NAME] [--workers N]
                  [--address ADDR] [--on-client-error fail|drop] [--progress|--no-progress] [--timeout S]
    fedc opt in.fedir --passes PIPELINE [--print-ir-after-all] [--time-passes] ...
    fedc viz algo.fed -o graph.svg
    fedc viz algo.fed --passes PIPELINE --stages -o stages.html
    fedc check algo.fed

Inputs may be ``.fed`` source, textual IR (``.fedir``) or protobuf (``.fedpb``).
A user error prints its message (no traceback) and exits with status 2; an
internal error exits with status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import re
import signal
import sys
import threading
import traceback
from typing import Any, Optional, Sequence

import numpy as np

from fedc.backends.base import DEFAULT_BACKEND
from fedc.startup import quiet_tensorflow_startup
from fedc.errors import FedcError
from fedc.limits import MAX_NESTING, NestingError, SizeError, deep_recursion, parse_integer

__all__ = ["main"]

EXIT_OK, EXIT_INTERNAL, EXIT_USER = 0, 1, 2

IR_SUFFIXES = (".fedir", ".mlir", ".ir")
PROTO_SUFFIXES = (".fedpb", ".pb")


# --------------------------------------------------------------------------
# Inputs


def utf8_text(data: bytes, name: str, hint: str = "fedc reads UTF-8") -> str:
    """``data`` decoded as UTF-8, or a FedcError at the line and column of the first bad byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise FedcError(f"{name}:{line}:{column}: not UTF-8 text ({e.reason} at byte {e.start}); {hint}") from None


def load_module(path: str, search_paths: Sequence[str] = (), trusted: bool = False, import_externs: bool = False):
    """A module from ``.fed`` source, textual IR, or protobuf bytes (``-`` reads IR from stdin).

    ``trusted``: admit TensorFlow graphs using any op (see fedc.tensorflow_ops).
    ``import_externs``: import the Python modules a ``.fed`` file's externs name.
    """
    if trusted:
        from fedc import tensorflow_ops

        with tensorflow_ops.trusting():
            return load_module(path, search_paths, import_externs=import_externs)
    from fedc import ir

    if path == "-":
        stdin = getattr(sys.stdin, "buffer", None)  # bytes, so that bad UTF-8 is located (a StringIO has none)
        return ir.parse_module(utf8_text(stdin.read(), "<stdin>") if stdin else sys.stdin.read(), "<stdin>")
    file = pathlib.Path(path)
    if not file.exists():
        raise FedcError(f"{path}: no such file")
    if file.is_dir():
        raise FedcError(f"{path}: is a directory, not a file")
    suffix = file.suffix.lower()
    if suffix in PROTO_SUFFIXES:
        return ir.deserialize(file.read_bytes())
    text = utf8_text(file.read_bytes(), str(path))
    if suffix in IR_SUFFIXES:
        return ir.parse_module(text, str(path))
    if suffix == ".fed":
        from fedc.frontend import fed

        return fed.load(path, search_paths=search_paths, import_externs=import_externs)
    raise FedcError(
        f"{path}: unknown kind of input {suffix or '(no suffix)'}; fedc reads .fed source, "
        f"textual IR ({', '.join(IR_SUFFIXES)}) and protobuf ({', '.join(PROTO_SUFFIXES)})"
    )


@deep_recursion
def read_args(path: Optional[str]) -> Any:
    """The argument file: JSON, or ``.npz`` whose keys are ``/``-paths into the argument."""
    if path is None:
        return None
    from fedc.limits import MAX_ARGUMENT_BYTES

    file = pathlib.Path(path)
    if not file.is_file():
        raise FedcError(f"{path}: no such argument file")
    size = file.stat().st_size
    if size > MAX_ARGUMENT_BYTES:
        raise FedcError(
            f"{path}: the argument file is {size} bytes, more than fedc reads "
            f"({MAX_ARGUMENT_BYTES} bytes, fedc.limits.MAX_ARGUMENT_BYTES)"
        )
    if file.suffix.lower() == ".json":
        from fedc.errors import ParseError, SourceLocation
        from fedc.limits import check_text_nesting

        text = utf8_text(file.read_bytes(), str(path), "JSON is UTF-8")
        check_text_nesting(text, str(path), "[{", what="the JSON")
        try:
            return json.loads(text, parse_int=lambda digits: parse_integer(digits, "the integer"))
        except json.JSONDecodeError as e:
            raise ParseError(f"invalid JSON: {e.msg}", SourceLocation(str(path), e.lineno, e.colno), text) from None
        except SizeError as e:
            raise ParseError(e.message, _json_number_location(text, str(path), e.message), text) from None
        except (ValueError, RecursionError) as e:
            raise FedcError(f"{path}: cannot read the JSON: {e}") from None
    if file.suffix.lower() == ".npz":
        return unflatten_paths(read_npz(file, str(path), MAX_ARGUMENT_BYTES), path)
    raise FedcError(f"{path}: argument files are .json or .npz")


_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?')


def _json_number_location(text: str, filename: str, message: str):
    """Where the first integer JSON number too large for fedc is (``message`` is its SizeError)."""
    from fedc.errors import SourceLocation

    for match in _JSON_TOKEN.finditer(text):
        token = match.group()
        if token[0] == '"' or not token.lstrip("-").isdigit():
            continue
        try:
            parse_integer(token)
        except SizeError:
            line = text.count("\n", 0, match.start()) + 1
            return SourceLocation(filename, line, match.start() - (text.rfind("\n", 0, match.start()) + 1) + 1)
    return None


def read_npz(file: pathlib.Path, path: str, max_bytes: int) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` (a zip of ``.npy`` members), checked before any is allocated.

    The zip's directory gives each member's uncompressed size, and a member's
    ``.npy`` header its dtype and shape: the sizes must total at most
    ``max_bytes``, and each header must claim exactly the bytes its member
    holds, so an array is allocated only for data that is there. (zipfile
    reads no more than a member's stated size.) No pickles (object arrays).
    """
    import math
    import zipfile

    from numpy.lib import format as npy

    def refuse(message: str) -> FedcError:
        return FedcError(f"{path}: {message}")

    try:
        archive = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise refuse(f"not an .npz (zip) file: {e}") from None
    arrays = {}
    with archive:
        members = archive.infolist()
        total = sum(m.file_size for m in members)
        if total > max_bytes:
            raise refuse(
                f"its arrays hold {total} bytes uncompressed, more than fedc reads "
                f"({max_bytes} bytes, fedc.limits.MAX_ARGUMENT_BYTES)"
            )
        for member in members:
            name = member.filename
            if member.is_dir():
                continue
            if not name.endswith(".npy"):
                raise refuse(f"member {name!r} is not an array (.npy)")
            try:
                with archive.open(member) as f:
                    version = npy.read_magic(f)
                    if version == (1, 0):
                        shape, fortran_order, dtype = npy.read_array_header_1_0(f)
                    elif version == (2, 0):
                        shape, fortran_order, dtype = npy.read_array_header_2_0(f)
                    else:
                        raise refuse(f"member {name!r} is .npy version {version[0]}.{version[1]}; fedc reads 1.0 and 2.0")
                    if dtype.hasobject:
                        raise refuse(f"member {name!r} holds Python objects (a pickle), which fedc never loads")
                    claimed = math.prod(shape) * dtype.itemsize
                    held = member.file_size - f.tell()
                    if claimed != held:
                        raise refuse(
                            f"member {name!r} claims an array of shape {shape} and dtype {dtype} "
                            f"({claimed} bytes), but holds {held} bytes"
                        )
                with archive.open(member) as f:
                    arrays[name[: -len(".npy")]] = npy.read_array(f, allow_pickle=False)
            except FedcError:
                raise
            except Exception as e:  # noqa: BLE001 - a malformed member is bad input, whatever numpy raises
                raise refuse(f"cannot read member {name!r}: {e}") from None
    return arrays


@deep_recursion
def unflatten_paths(flat: dict[str, np.ndarray], source: str = "<args>") -> Any:
    """``{"a/0/x": arr}`` -> ``{"a": [{"x": arr}]}``: integer parts become list positions."""
    root: dict = {}
    for key in sorted(flat):
        parts = [p for p in key.split("/") if p != ""]
        if not parts:
            raise FedcError(f"{source}: empty key in the argument file")
        if len(parts) > MAX_NESTING:
            raise NestingError(
                f"{source}: key {key[:60]!r}... nests {len(parts)} levels deep, more than fedc reads "
                f"({MAX_NESTING}, fedc.limits.MAX_NESTING)"
            )
        node = root
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise FedcError(f"{source}: key {key!r} goes inside {part!r}, which is already an array")
            node = child
        if parts[-1] in node:
            raise FedcError(f"{source}: key {key!r} is given twice")
        node[parts[-1]] = flat[key]

    def listify(value: Any, where: str) -> Any:
        if not isinstance(value, dict):
            return value
        keys = list(value)
        if keys and all(k.isascii() and k.isdigit() for k in keys):
            by_index: dict[int, str] = {}
            for k in keys:
                i = parse_integer(k, f"the position {where}/{k}")
                if i in by_index:
                    raise FedcError(f"{source}: the positions {where}/{by_index[i]} and {where}/{k} are both {i}")
                by_index[i] = k
            indices = sorted(by_index)
            if indices != list(range(len(indices))):
                raise FedcError(f"{source}: the positions under {where or 'the top'} are {indices}, not 0..{len(indices) - 1}")
            return [listify(value[by_index[i]], f"{where}/{i}") for i in indices]
        return {k: listify(v, f"{where}/{k}") for k, v in value.items()}

    return listify(root, "")


def computation_for(module, symbol: str):
    """A callable Computation for ``symbol``; parameters of a packed struct are named."""
    from fedc.computation import Computation
    from fedc.ir.building_blocks import Lambda

    node = module[symbol]
    return Computation(module, symbol), node if isinstance(node, Lambda) else None


def call_with_args(computation, lam, args: Any, skip: int = 0, prefix: tuple = ()):
    """Calls ``computation`` with the argument file's content.

    The file holds an object keyed by the parameter's name, or — for a
    parameter that is a struct of named elements (several .fed parameters) —
    by those names. ``skip`` leading elements come from ``prefix`` (the state
    of an iterative process).
    """
    from fedc.types import StructType

    parameter = computation.type_signature.parameter
    if parameter is None:
        if args not in (None, {}):
            raise FedcError(f"{computation.name} takes no arguments, but an argument file was given")
        return computation()
    if isinstance(parameter, StructType) and parameter.is_named() and (skip or not _names_one_parameter(lam, args)):
        names = parameter.names()
        given = args if isinstance(args, dict) else {}
        if args is not None and not isinstance(args, dict):
            raise FedcError(f"the argument file must hold an object keyed by {', '.join(names[skip:])}")
        missing = [n for n in names[skip:] if n not in given]
        extra = [k for k in given if k not in names[skip:]]
        if missing:
            raise FedcError(f"the argument file has no value for {', '.join(missing)} (parameters of {computation.name})")
        if extra:
            raise FedcError(f"the argument file has values for {', '.join(extra)}, which {computation.name} does not take; it takes {', '.join(names[skip:])}")
        values = list(prefix) + [given[n] for n in names[skip:]]
        return computation(values)
    if args is None:
        raise FedcError(f"{computation.name} takes an argument of type {parameter}; pass it with --args FILE")
    if isinstance(args, dict) and lam is not None and set(args) == {lam.parameter_name}:
        args = args[lam.parameter_name]
    return computation(args)


def _names_one_parameter(lam, args) -> bool:
    return lam is not None and isinstance(args, dict) and set(args) == {lam.parameter_name}


# --------------------------------------------------------------------------
# Output


def format_value(value: Any, indent: int = 0) -> str:
    """Readable text for a result: numpy scalars at their precision, nested containers."""
    pad = "  " * indent
    if isinstance(value, np.generic):
        return str(value.item() if value.dtype.kind in "biuU" else value)
    if isinstance(value, np.ndarray):
        return np.array2string(value, separator=", ", threshold=20, edgeitems=3)
    if isinstance(value, dict):
        inner = [f"{pad}  {k}: {format_value(v, indent + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(inner) + f"\n{pad}}}"
    if hasattr(value, "_asdict"):
        return format_value(dict(value._asdict()), indent)
    if isinstance(value, (list, tuple)):
        items = [format_value(v, indent + 1) for v in value]
        open_, close = ("[", "]") if isinstance(value, list) else ("<", ">")
        if sum(len(i) for i in items) < 80 and not any("\n" in i for i in items):
            return open_ + ", ".join(items) + close
        return open_ + "\n" + ",\n".join(f"{pad}  {i}" for i in items) + f"\n{pad}{close}"
    return str(value)


def _write(path: Optional[str], data: "str | bytes") -> None:
    if path is None or path == "-":
        if isinstance(data, bytes):
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        else:
            sys.stdout.write(data if data.endswith("\n") else data + "\n")
        return
    target = pathlib.Path(path)
    if target.parent and not target.parent.exists():
        raise FedcError(f"{path}: the folder {target.parent} does not exist")
    try:
        if isinstance(data, bytes):
            target.write_bytes(data)
        else:
            target.write_text(data if data.endswith("\n") else data + "\n", encoding="utf-8")
    except OSError as e:  # a folder, a full disk, no permission
        raise FedcError(f"cannot write {path}: {e.strerror or e}") from None


# --------------------------------------------------------------------------
# Commands


def _apply_passes(module, args, stream=None):
    if not getattr(args, "passes", None):
        return module
    from fedc import passes

    result = passes.run(
        module,
        args.passes,
        verify_each=getattr(args, "verify_each", True),
        print_ir_after_all=getattr(args, "print_ir_after_all", False),
        print_ir_after=tuple(getattr(args, "print_ir_after", None) or ()),
        print_ir_after_change=getattr(args, "print_ir_after_change", False),
        stream=stream or sys.stderr,
    )
    if getattr(args, "time_passes", False):
        sys.stderr.write(result.timing_report())
    if getattr(args, "pass_statistics", False):
        sys.stderr.write(result.statistics_report())
    return result.module


#: The analyses ``fedc compile --report NAME`` prints, with their one-line docs.
REPORTS = {
    "privacy": "every path by which a client value reaches the server, and the intrinsic that carries it",
    "cost": "bytes each client receives from and sends to the server per round, from the types",
}


def _report_names(values: Optional[Sequence[str]]) -> list[str]:
    """The reports asked for (``--report privacy --report cost`` or ``--report privacy,cost``)."""
    names: list[str] = []
    for value in values or ():
        for name in value.split(","):
            name = name.strip()
            if name not in REPORTS:
                import difflib

                close = difflib.get_close_matches(name, list(REPORTS), n=1)
                hint = f"; did you mean {close[0]}?" if close else ""
                raise FedcError(f"unknown report {name!r}{hint} (the reports are {', '.join(REPORTS)})")
            if name not in names:
                names.append(name)
    return names


def report_text(module, name: str, symbol: Optional[str] = None) -> str:
    """The text of report ``name`` (privacy, cost) for ``module`` (or only computation ``symbol``)."""
    from fedc.passes import analysis

    if name == "privacy":
        return analysis.privacy_report(module, symbol).text()
    return analysis.communication_cost(module, symbol).text()


def _as_comments(text: str) -> str:
    return "".join(f"// {line}".rstrip() + "\n" for line in text.splitlines())


def cmd_compile(args) -> int:
    from fedc import ir

    reports = _report_names(args.report)
    module = load_module(args.input, args.include, args.trusted, args.import_externs)
    ir.verify(module)
    module = _apply_passes(module, args)
    emit = args.emit or _emit_from_suffix(args.output) or "ir"
    to_stdout = args.output is None or args.output == "-"
    if reports and emit == "proto" and to_stdout:
        raise FedcError("--report with --emit proto: the report cannot share stdout with binary data; give -o FILE")
    texts = [report_text(module, name, args.entry) for name in reports]
    if emit == "ir":
        output = ir.print_module(module)
        if to_stdout and texts:
            # After the IR, as comments: the output still parses as textual IR.
            output = output.rstrip("\n") + "\n\n" + "\n".join(_as_comments(t) for t in texts)
        _write(args.output, output)
    elif emit == "proto":
        if args.output is None and sys.stdout.isatty():
            raise FedcError("--emit proto writes binary data: give -o FILE")
        _write(args.output, ir.serialize(module))
    else:
        from fedc import viz

        symbol = _entry(module, args.entry)
        costs = "cost" in reports
        if emit == "dot":
            output = viz.to_graphviz(module, symbol, costs=costs).source
            if to_stdout and texts:
                output = output.rstrip("\n") + "\n\n" + "\n".join(_as_comments(t) for t in texts)
            _write(args.output, output)
        else:
            if args.output is None:
                raise FedcError(f"--emit {emit} writes an image: give -o FILE")
            viz.render(module, symbol, args.output, emit, costs=costs)
    if texts and not to_stdout:
        sys.stdout.write("\n".join(texts))
    return EXIT_OK


def _emit_from_suffix(path: Optional[str]) -> Optional[str]:
    if not path or path == "-":
        return None
    suffix = pathlib.Path(path).suffix.lower()
    return {".fedir": "ir", ".mlir": "ir", ".fedpb": "proto", ".pb": "proto", ".dot": "dot", ".gv": "dot",
            ".svg": "svg", ".png": "png"}.get(suffix)


def _entry(module, name: Optional[str]) -> str:
    if name is not None:
        module.lookup(name)
        return name
    if not module.symbols:
        raise FedcError(f"module @{module.name} defines no computation to run or draw")
    return module.symbols[-1]


def cmd_run(args) -> int:
    from fedc import context, ir

    if args.timeout is not None and not 0 < args.timeout <= MAX_TIMEOUT_S:
        raise FedcError(f"--timeout is a number of seconds greater than 0 and at most {MAX_TIMEOUT_S:g}, not {args.timeout}")
    with deadline(args.timeout, "fedc run"):
        module = load_module(args.input, args.include, args.trusted, import_externs=True)
        ir.verify(module)
        module = _apply_passes(module, args)
        options = {k: v for k, v in (("workers", args.workers), ("address", args.address),
                                     ("on_client_error", args.on_client_error), ("progress", args.progress))
                   if v is not None}
        with context.backend(args.backend, **options) as backend:
            try:
                if args.rounds is not None:
                    return _run_rounds(module, args)
                symbol = _entry(module, args.entry)
                computation, lam = computation_for(module, symbol)
                value = call_with_args(computation, lam, read_args(args.args))
                print(format_value(value))
            finally:
                _say_dropped(backend)
                if options:
                    backend.close()  # the workers (and a local Ray cluster) end with the command
    return EXIT_OK


def _say_dropped(backend) -> None:
    """Tells stderr which clients the last round on workers dropped (--on-client-error drop), if any."""
    last = getattr(backend, "last_round", None)
    if last and last["dropped"]:
        shown = "; ".join(f"client {p}{f' ({i!r})' if i else ''}: {m}" for p, i, m in last["dropped"][:3])
        more = f"; and {len(last['dropped']) - 3} more" if len(last["dropped"]) > 3 else ""
        print(f"fedc run: the last round of @{last['computation']} dropped {len(last['dropped'])} of its "
              f"{last['clients']} clients: {shown}{more}", file=sys.stderr)


class TimeoutExceeded(FedcError):
    """A command ran longer than its --timeout."""


# The longest --timeout: the system's interval timer takes no more (about 31 years).
MAX_TIMEOUT_S = 1e9

# How long after the deadline a run stuck outside Python (in a TensorFlow kernel) is given
# to notice it before the process is ended.
TIMEOUT_GRACE_S = 2.0


@contextlib.contextmanager
def deadline(seconds: Optional[float], what: str):
    """Ends the block with :class:`TimeoutExceeded` after ``seconds`` of wall-clock time.

    A SIGALRM raises the error at the next Python bytecode. Work stuck inside
    native code (a TensorFlow ``While`` that never ends) never returns to
    Python, so a watchdog thread then closes every backend, says why and ends
    the process with the user-error status, ``TIMEOUT_GRACE_S`` later.
    """
    if seconds is None:
        yield
        return
    message = f"the run took longer than --timeout {seconds:g} s and was stopped"
    expired = threading.Event()

    def on_alarm(signum, frame):
        expired.set()
        raise TimeoutExceeded(message)

    def watchdog():
        sys.stderr.write(f"{what}: error: {message} (it was stuck in native code)\n")
        sys.stderr.flush()
        try:
            from fedc.backends import base

            base.close_all()
        finally:
            os._exit(EXIT_USER)

    previous = signal.signal(signal.SIGALRM, on_alarm)
    timer = threading.Timer(seconds + TIMEOUT_GRACE_S, watchdog)
    timer.daemon = True
    try:
        # Armed inside the try: an alarm that fires at once (a tiny timeout) still disarms the watchdog.
        timer.start()
        signal.setitimer(signal.ITIMER_REAL, seconds)
        yield
    except Exception as e:
        # The alarm may land inside a library (TensorFlow tracing a graph), which reports some
        # other failure as it unwinds; the cause is still the timeout.
        if expired.is_set() and not isinstance(e, TimeoutExceeded):
            raise TimeoutExceeded(message) from None
        raise
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        timer.cancel()
        signal.signal(signal.SIGALRM, previous)


def _run_rounds(module, args) -> int:
    from fedc.templates import IterativeProcess
    from fedc.types import StructType

    if args.rounds < 0:
        raise FedcError("--rounds must be at least 0")
    init_name, next_name = args.initialize, args.next
    for name in (init_name, next_name):
        if name not in module:
            raise FedcError(
                f"--rounds runs an iterative process: {args.input} needs computations @{init_name} and "
                f"@{next_name} (choose others with --initialize/--next); it has {', '.join('@' + s for s in module.symbols)}"
            )
    initialize, _ = computation_for(module, init_name)
    step, lam = computation_for(module, next_name)
    process = IterativeProcess(initialize, step)
    data = read_args(args.args)
    state = process.initialize()
    parameter = step.type_signature.parameter
    several = isinstance(parameter, StructType) and parameter.is_named() and not process.state_type == parameter
    result_type = step.type_signature.result
    for round_number in range(1, args.rounds + 1):
        if several:
            output = call_with_args(step, lam, data, skip=1, prefix=(state,))
        else:
            output = step(state)
        if process._returns_metrics:
            state, metrics = _split_state(output, result_type)
            print(f"round {round_number}: {_format_metrics(metrics)}")
        else:
            state = output
            print(f"round {round_number}: done")
    print(f"final state: {format_value(summarize(state))}")
    return EXIT_OK


class _Summary:
    """A large tensor shown as its type and statistics instead of its values."""

    def __init__(self, array: np.ndarray):
        self.array = array

    def __str__(self) -> str:
        from fedc.types import TensorType

        a = self.array
        text = str(TensorType(a.dtype, a.shape))
        if a.size and a.dtype.kind in "iuf":
            text += f" (mean {a.mean():.4g}, min {a.min():.4g}, max {a.max():.4g})"
        return text


def summarize(value: Any, limit: int = 10) -> Any:
    """``value`` with arrays of more than ``limit`` elements replaced by a summary."""
    if isinstance(value, np.ndarray) and value.size > limit:
        return _Summary(value)
    if isinstance(value, dict):
        return {k: summarize(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        return [summarize(v, limit) for v in value]
    if isinstance(value, tuple) and not hasattr(value, "_asdict"):
        return tuple(summarize(v, limit) for v in value)
    return value


def _split_state(output, result_type):
    if isinstance(output, dict):
        items = list(output.items())
        return items[0][1], dict(items[1:])
    names = result_type.names()
    values = list(output)
    rest = values[1:]
    if all(n is not None for n in names[1:]):
        return values[0], dict(zip(names[1:], rest))
    return values[0], {str(i): v for i, v in enumerate(rest, 1)}


def _format_metrics(metrics: dict) -> str:
    return ", ".join(f"{k} {format_value(v)}" for k, v in metrics.items()) or "done"


def cmd_opt(args) -> int:
    from fedc import ir, passes

    if args.list_passes:
        for p in passes.all_passes():
            options = ", ".join(f"{k}={o.default!r} ({o.type.__name__})" for k, o in p.options.items())
            print(f"{p.name:28} {p.summary}" + (f"\n{'':28}   options: {options}" if options else ""))
        print("\nnamed pipelines:")
        for p in passes.all_pipelines():
            print(f"{p.name:28} {p.summary}\n{'':28}   = {p.pipeline}")
        return EXIT_OK
    if args.input is None:
        raise FedcError("fedc opt needs an input file (or - for stdin)")
    module = load_module(args.input, (), args.trusted)
    if args.verify_each:
        ir.verify(module)
    # IR dumps go to stderr, as mlir-opt's do; the result goes to stdout or -o.
    module = _apply_passes(module, args)
    _write(args.output, ir.print_module(module))
    return EXIT_OK


def cmd_viz(args) -> int:
    from fedc import ir, stages, viz

    suffix = pathlib.Path(args.output).suffix.lower()
    if args.stages:
        if not args.passes:
            raise FedcError("--stages draws the computation after each pass of a pipeline: give --passes PIPELINE")
        if suffix not in (".html", ".htm"):
            raise FedcError(f"{args.output}: --stages writes one HTML page with a picture per pass; give a .html file")
    elif suffix in (".html", ".htm"):
        raise FedcError(f"{args.output}: an HTML page shows the pictures across passes: "
                        "add --stages (and --passes PIPELINE)")
    module = load_module(args.input, args.include, args.trusted, args.import_externs)
    ir.verify(module)
    symbol = _entry(module, args.entry)
    if args.stages:
        stages.render_stages(
            module, args.passes, args.output, symbol, costs=args.costs,
            verify_each=args.verify_each,
            print_ir_after_all=args.print_ir_after_all,
            print_ir_after=tuple(args.print_ir_after or ()),
            print_ir_after_change=args.print_ir_after_change,
            stream=sys.stderr,
        )
        return EXIT_OK
    fmt = _emit_from_suffix(args.output)
    if fmt not in ("svg", "png", "dot"):
        raise FedcError(f"{args.output}: fedc viz writes .svg, .png or .dot files (or .html with --stages)")
    module = _apply_passes(module, args)
    if symbol not in module:
        # A lowering pass (lower-to-mapreduce) replaces the computation it lowers.
        symbol = _entry(module, None)
    viz.render(module, symbol, args.output, fmt, costs=args.costs)
    return EXIT_OK


#: How many computation names `fedc check` lists.
_CHECK_NAMES_SHOWN = 20


def cmd_check(args) -> int:
    from fedc import ir

    module = load_module(args.input, args.include, args.trusted, args.import_externs)
    ir.verify(module)
    shown = ", ".join("@" + s for s in module.symbols[:_CHECK_NAMES_SHOWN])
    if len(module) > _CHECK_NAMES_SHOWN:
        shown += f", … and {len(module) - _CHECK_NAMES_SHOWN} more"
    print(f"{args.input}: ok ({len(module)} computation{'s' if len(module) != 1 else ''}: {shown})")
    return EXIT_OK


# --------------------------------------------------------------------------
# Argument parsing


def _parser() -> argparse.ArgumentParser:
    from fedc import __version__

    parser = argparse.ArgumentParser(
        prog="fedc",
        description="A compiler for federated computations: type-check, show, optimize and run "
        "federated algorithms written in .fed files (or as textual IR).",
        epilog="Run 'fedc COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"fedc {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add_input(p, help_text="a .fed file, textual IR (.fedir) or protobuf (.fedpb)"):
        p.add_argument("input", help=help_text)
        p.add_argument("-I", "--include", action="append", default=[], metavar="DIR",
                       help="another folder to search for imports and extern modules")
        add_trusted(p)

    def add_import_externs(p):
        p.add_argument("--import-externs", action="store_true",
                       help="import the Python modules that a .fed file's externs name (this runs their code) "
                       "and embed their TensorFlow graphs; without it externs keep only their declared types")

    def add_trusted(p):
        p.add_argument("--trusted", action="store_true",
                       help="trust the input's TensorFlow graphs: admit ops outside fedc's allowlist of pure "
                       "computation ops (reading and writing files, calling Python, …). Only for computations "
                       "from a source you trust (docs/security.md)")

    def add_passes(p):
        p.add_argument("--passes", metavar="PIPELINE", help='passes to run, e.g. "verify,strip-locations" (see fedc opt --list-passes)')
        p.add_argument("--print-ir-after-all", action="store_true", help="print the IR after every pass (to stderr)")
        p.add_argument("--print-ir-after", action="append", metavar="PASS", help="print the IR after this pass")
        p.add_argument("--print-ir-after-change", action="store_true", help="print the IR after each pass that changed it")
        p.add_argument("--verify-each", dest="verify_each", action="store_true", default=True,
                       help="verify the IR after every pass (the default)")
        p.add_argument("--no-verify-each", dest="verify_each", action="store_false", help="do not verify between passes")
        p.add_argument("--time-passes", action="store_true", help="print a table of the time each pass took")
        p.add_argument("--pass-statistics", action="store_true", help="print the statistics each pass reported")

    p = commands.add_parser("compile", help="parse, check and verify; write textual IR, protobuf or a picture",
                            description="Parse and type-check a computation, verify it, optionally run passes, and "
                            "write its textual IR (the default), its protobuf, or a picture.")
    add_input(p)
    p.add_argument("-o", "--output", metavar="FILE", help="where to write (default: stdout)")
    add_import_externs(p)
    p.add_argument("--emit", choices=["ir", "proto", "dot", "svg", "png"],
                   help="what to write (default: from the output suffix, else ir)")
    p.add_argument("--entry", metavar="NAME",
                   help="the computation to draw (for dot/svg/png; default: the last), and the only one to report on")
    p.add_argument("--report", action="append", metavar="NAME",
                   help="after compiling, print an analysis of the result: "
                   + "; ".join(f"'{k}': {v}" for k, v in REPORTS.items())
                   + ". Repeat it or give a comma-separated list. Reports go to stdout: after the IR (or DOT), as "
                   "'//' comment lines so that the output still parses, when the output goes to stdout; alone, as "
                   "plain text, when it goes to a file with -o (protobuf on stdout is refused). With the cost "
                   "report, a picture (--emit dot, svg, png) labels the edges between server and clients with "
                   "their bytes.")
    add_passes(p)
    p.set_defaults(handler=cmd_compile)

    p = commands.add_parser("run", help="run a computation, or an initialize/next pair for N rounds",
                            description="Run a computation on a backend and print the result. With --rounds N, "
                            "run @initialize once and @next N times as an iterative process, printing each "
                            "round's metrics. Values at {T}@CLIENTS are given per client (a list). Running a "
                            ".fed file imports the Python modules its externs name, which runs their code: run "
                            "only .fed files (and the Python beside them) that you trust. TensorFlow graphs "
                            "may use only pure computation ops unless --trusted.")
    add_input(p)
    p.add_argument("--entry", metavar="NAME", help="the computation to run (default: the last one in the file)")
    p.add_argument("--args", metavar="FILE", help="arguments: a .json file, or .npz keyed by /-paths (e.g. data/3/0)")
    p.add_argument("--backend", default=DEFAULT_BACKEND, help=f"the backend to run on (default: {DEFAULT_BACKEND})")
    p.add_argument("--workers", type=int, metavar="N",
                   help="run rounds on N worker processes (the tf backend on Ray; a local cluster unless --address)")
    p.add_argument("--address", metavar="ADDR",
                   help="the Ray cluster to run the workers on: auto, host:port or ray://host:10001")
    p.add_argument("--on-client-error", choices=("fail", "drop"),
                   help="on workers, whether a client whose data or work fails fails the round (fail, the default) "
                        "or is dropped from it (drop; said on stderr)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="on workers, show how many of a long round's clients are done on stderr (default: when "
                        "stderr is a terminal)")
    p.add_argument("--rounds", type=int, metavar="N", help="run initialize, then next N times")
    p.add_argument("--initialize", default="initialize", metavar="NAME", help="the initialize computation (with --rounds)")
    p.add_argument("--next", default="next", metavar="NAME", help="the next computation (with --rounds)")
    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="stop the run (loading, compiling and running) after this many seconds of wall-clock "
                   "time, with an error")
    add_passes(p)
    p.set_defaults(handler=cmd_run)

    p = commands.add_parser("opt", help="run passes on textual IR, like mlir-opt",
                            description="Read textual IR, run a pass pipeline, and write textual IR. IR dumps "
                            "and reports go to stderr.")
    p.add_argument("input", nargs="?", help="textual IR (.fedir), or - for stdin")
    add_trusted(p)
    p.add_argument("-o", "--output", metavar="FILE", help="where to write the IR (default: stdout)")
    p.add_argument("--list-passes", action="store_true", help="list every pass with its one-line doc and options")
    add_passes(p)
    p.set_defaults(handler=cmd_opt)

    p = commands.add_parser("viz", help="draw a computation's dataflow with graphviz",
                            description="Draw the dataflow of one computation: nodes grouped and coloured by "
                            "placement, intrinsics distinct from local computations, edges labelled with types "
                            "and, where a value crosses between server and clients, with its bytes per client "
                            "and round. With --stages, draw it before the first pass of --passes and after "
                            "each pass, side by side on one HTML page.")
    add_input(p)
    p.add_argument("-o", "--output", required=True, metavar="FILE",
                   help="the picture: .svg, .png or .dot; with --stages an .html page")
    p.add_argument("--entry", metavar="NAME", help="the computation to draw (default: the last one)")
    add_import_externs(p)
    p.add_argument("--stages", action="store_true",
                   help="write one self-contained HTML page with the picture before the first pass and after each "
                   "pass of --passes, each panel titled with the pass and its statistics")
    p.add_argument("--no-costs", dest="costs", action="store_false", default=True,
                   help="label the edges between server and clients with their types only, not their bytes")
    add_passes(p)
    p.set_defaults(handler=cmd_viz)

    p = commands.add_parser("check", help="report diagnostics only",
                            description="Parse, type-check and verify; print every diagnostic, or ok.")
    add_input(p)
    add_import_externs(p)
    p.set_defaults(handler=cmd_check)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    # TensorFlow's start-up and C++ INFO/WARNING lines are noise in a command's output.
    with quiet_tensorflow_startup():
        return _main(argv)


def _main(argv: Optional[Sequence[str]]) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_OK
    try:
        return args.handler(args)
    except FedcError as e:
        sys.stderr.write(render_error(e, f"fedc {args.command}") + "\n")
        return EXIT_USER
    except KeyboardInterrupt:
        sys.stderr.write("fedc: interrupted\n")
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception:
        sys.stderr.write(
            f"fedc {args.command}: internal error (a bug in fedc; please report it with this output):\n"
            + traceback.format_exc()
        )
        return EXIT_INTERNAL


def render_error(error: FedcError, program: str = "fedc") -> str:
    """A compiler-style report: ``file:line:col: error: message``, the line and a caret."""
    from fedc.errors import excerpt

    from fedc.frontend.fed import DiagnosticsError

    if isinstance(error, DiagnosticsError) and error.diagnostics:
        return "\n".join([render_error(d, program) for d in error.shown] + [error.summary()])
    if error.location is None:
        return f"{program}: error: {error.message}"
    text = f"{error.location}: error: {error.message}"
    if error.source is not None:
        shown = excerpt(error.source, error.location.line, error.location.column)
        if shown:
            text += "\n" + shown
    return text


if __name__ == "__main__":
    sys.exit(main())
