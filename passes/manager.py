"""The pass manager: a registry of named passes and an mlir-opt style runner.

A pass is a function ``fn(module, ctx, **options) -> Module`` registered once
with :func:`register` under a name, a one-line doc and typed options. A
pipeline is text: ``"inline,fuse-map-mean,insert-secure-aggregation{bits=20 clip=1.0}"``.
:func:`run` runs it, verifying the IR after every pass (by default), optionally
printing the IR after each pass (headed ``// -----// IR Dump After <pass> //----- //``)
and timing each pass. A pass reports statistics through ``ctx.stat(name, n)``.

Passes live in modules listed in :data:`PASS_MODULES`, imported only when a
pipeline names them (or when the list of passes is asked for), so the CLI
starts fast.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import re
import sys
import time
import traceback
from typing import Any, Callable, Optional, TextIO

from fedc.limits import SizeError, deep_recursion, parse_integer, shown_integer
from fedc.errors import FedcError, ParseError, SourceLocation, VerificationError
from fedc.ir.module import Module

__all__ = [
    "Option",
    "Pass",
    "PassContext",
    "PipelineResult",
    "NamedPipeline",
    "PIPELINES",
    "all_passes",
    "all_pipelines",
    "lookup",
    "parse_pipeline",
    "register",
    "run",
]

_REGISTER_CALL = re.compile(r"""@register\(\s*["']([A-Za-z0-9_-]+)["']""")


def _discover() -> dict[str, str]:
    """pass name -> the module of this package that registers it, found without importing.

    Each pass module says ``@register("name")``; reading the sources (not
    importing them) keeps the CLI fast and needs no central table to edit.
    """
    import pathlib

    found: dict[str, str] = {}
    folder = pathlib.Path(__file__).resolve().parent
    for source in sorted(folder.glob("*.py")):
        if source.stem in ("__init__", "manager"):
            continue
        for name in _REGISTER_CALL.findall(source.read_text(encoding="utf-8")):
            found[name] = f"{__package__}.{source.stem}"
    return found


# pass name -> module that registers it (imported on first use).
PASS_MODULES: dict[str, str] = _discover()


@dataclasses.dataclass(frozen=True)
class Option:
    """A pass option: its type (int, float, bool or str), default and doc."""

    type: type
    default: Any
    doc: str = ""


@dataclasses.dataclass(frozen=True)
class Pass:
    name: str
    fn: Callable[..., Module]
    doc: str
    options: dict[str, Option]

    @property
    def summary(self) -> str:
        return self.doc.strip().splitlines()[0] if self.doc.strip() else ""


_REGISTRY: dict[str, Pass] = {}


def register(name: str, options: Optional[dict[str, Option]] = None):
    """Decorator: registers ``fn(module, ctx, **options) -> Module`` as pass ``name``."""

    def decorate(fn: Callable[..., Module]):
        if name in _REGISTRY:
            raise ValueError(f"pass {name!r} is registered twice")
        _REGISTRY[name] = Pass(name, fn, fn.__doc__ or "", dict(options or {}))
        return fn

    return decorate


def lookup(name: str) -> Pass:
    """The pass named ``name``; a FedcError with close matches if there is none."""
    if name not in _REGISTRY and name in PASS_MODULES:
        importlib.import_module(PASS_MODULES[name])
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(PASS_MODULES) + list(PIPELINES), n=3)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise FedcError(f"unknown pass {name!r}{hint} (fedc opt --list-passes lists them)")
    return _REGISTRY[name]


@dataclasses.dataclass(frozen=True)
class NamedPipeline:
    """A name for a pipeline of passes, usable wherever a pass name is (``to-mapreduce``).

    Options given to it (``to-mapreduce{entry=next}``) go to the steps of the
    pipeline that take them.
    """

    name: str
    pipeline: str
    doc: str

    @property
    def summary(self) -> str:
        return self.doc


# name -> the pipeline it stands for: the passes that must run, in order, before a pass can.
PIPELINES: dict[str, NamedPipeline] = {
    p.name: p
    for p in (
        NamedPipeline(
            "to-mapreduce",
            "inline,call-dominant,lower-to-mapreduce",
            "Normalizes a round (inline, call-dominant) and lowers it to a MapReduce form.",
        ),
    )
}


def all_pipelines() -> list[NamedPipeline]:
    """Every named pipeline, sorted by name."""
    return sorted(PIPELINES.values(), key=lambda p: p.name)


def all_passes() -> list[Pass]:
    """Every pass, sorted by name."""
    for module in sorted(set(PASS_MODULES.values())):
        importlib.import_module(module)
    return sorted(_REGISTRY.values(), key=lambda p: p.name)


# --------------------------------------------------------------------------
# Pipelines

_TOKEN = re.compile(r"\s*(?:(?P<name>[A-Za-z][A-Za-z0-9_-]*)|(?P<punct>[{},=])|(?P<string>\"(?:[^\"\\]|\\.)*\")|(?P<value>[^\s{},=]+))")


@dataclasses.dataclass(frozen=True)
class PipelineStep:
    name: str
    options: dict[str, Any]
    column: int

    def __str__(self) -> str:
        if not self.options:
            return self.name
        shown = " ".join(f"{k}={_format_option(v)}" for k, v in self.options.items())
        return f"{self.name}{{{shown}}}"


def _format_option(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and (not value or re.search(r"[\s{},=\"]", value)):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)


def parse_pipeline(text: str) -> list[PipelineStep]:
    """Parses ``"a,b{k=v k2=v2},c"`` into steps, checking pass names and options."""
    steps: list[PipelineStep] = []
    position = 0

    def error(message: str, at: int) -> ParseError:
        return ParseError(message, SourceLocation("<pipeline>", 1, at + 1), text)

    def token(expect_value: bool = False):
        nonlocal position
        match = _TOKEN.match(text, position)
        if not match or match.end() == match.start():
            return None, None, len(text)
        start = match.start(match.lastgroup)
        position = match.end()
        kind = match.lastgroup
        return kind, match.group(kind), start

    if not text.strip():
        return steps
    while True:
        kind, value, at = token()
        if kind != "name":
            raise error(f"expected a pass name, got {value!r}" if value else "expected a pass name", at)
        expansion = None
        try:
            if value in PIPELINES and value not in PASS_MODULES:
                expansion = parse_pipeline(PIPELINES[value].pipeline)
                definition = Pass(value, lambda m, ctx: m, PIPELINES[value].doc, _pipeline_options(expansion))
            else:
                definition = lookup(value)
        except FedcError as e:
            raise error(e.message, at) from None
        name_at = at
        options: dict[str, Any] = {}
        kind, punct, at = token()
        if kind == "punct" and punct == "{":
            while True:
                kind, key, at = token()
                if kind == "punct" and key == "}":
                    break
                if kind != "name":
                    raise error(f"expected an option name or '}}' in the options of {definition.name}", at)
                if key not in definition.options:
                    known = ", ".join(definition.options) or "none"
                    raise error(f"pass {definition.name} has no option {key!r} (its options: {known})", at)
                kind, eq, eq_at = token()
                if eq != "=":
                    raise error(f"expected '=' after option {key}", eq_at)
                kind, raw, value_at = token()
                if kind not in ("value", "name", "string"):
                    raise error(f"expected a value for option {key}", value_at)
                options[key] = _convert_option(definition.name, key, definition.options[key], raw, lambda m: error(m, value_at))
            kind, punct, at = token()
        if expansion is None:
            steps.append(PipelineStep(definition.name, options, name_at + 1))
        else:
            for step in expansion:
                taken = {k: v for k, v in options.items() if k in lookup(step.name).options}
                steps.append(PipelineStep(step.name, {**step.options, **taken}, name_at + 1))
        if kind is None:
            return steps
        if not (kind == "punct" and punct == ","):
            raise error(f"expected ',' between passes, got {punct!r}", at)


def _pipeline_options(steps: list[PipelineStep]) -> dict[str, Option]:
    """The options a named pipeline takes: those of its steps (the first step declaring a name wins)."""
    options: dict[str, Option] = {}
    for step in steps:
        for key, option in lookup(step.name).options.items():
            options.setdefault(key, option)
    return options


def _convert_option(pass_name: str, key: str, option: Option, raw: str, error) -> Any:
    if raw.startswith('"'):
        raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        if option.type is str:
            return raw
    try:
        if option.type is bool:
            if raw in ("true", "1"):
                return True
            if raw in ("false", "0"):
                return False
            raise ValueError
        if option.type is int:
            return parse_integer(raw, f"option {key} of {pass_name}")
        if option.type is float:
            return float(raw)
        return raw
    except SizeError as e:
        raise error(e.message) from None
    except ValueError:
        shown = repr(raw) if len(raw) <= 32 else shown_integer(raw)
        raise error(f"option {key} of {pass_name} takes a {option.type.__name__}, not {shown}") from None


# --------------------------------------------------------------------------
# Running


class PassContext:
    """What a running pass can use: statistics it reports."""

    def __init__(self, name: str):
        self.name = name
        self.statistics: dict[str, int] = {}

    def stat(self, key: str, amount: int = 1) -> None:
        """Adds ``amount`` to the statistic ``key`` of this pass (e.g. ``nodes-removed``)."""
        self.statistics[key] = self.statistics.get(key, 0) + amount


@dataclasses.dataclass
class PipelineResult:
    module: Module
    timings: list[tuple[str, float]]
    statistics: list[tuple[str, dict[str, int]]]

    def timing_report(self) -> str:
        """The --time-passes table, like mlir-opt's."""
        total = sum(t for _, t in self.timings) or 1e-12
        rule = "===" + "-" * 73 + "==="
        lines = [
            rule,
            "Execution time report".center(79),
            rule,
            f"  Total Execution Time: {total:.4f} seconds",
            "",
            "  ----Wall Time----  ----Name----",
        ]
        for name, seconds in self.timings:
            lines.append(f"  {seconds:10.4f} ({100 * seconds / total:5.1f}%)  {name}")
        lines.append(f"  {total:10.4f} (100.0%)  Total")
        return "\n".join(lines) + "\n"

    def statistics_report(self) -> str:
        """Statistics each pass reported."""
        rule = "===" + "-" * 73 + "==="
        lines = [rule, "... Pass statistics report ...".center(79), rule]
        for name, stats in self.statistics:
            lines.append(f"'{name}'")
            if not stats:
                lines.append("  (no statistics)")
            for key, value in sorted(stats.items()):
                lines.append(f"  ({key}) {value}")
        return "\n".join(lines) + "\n"


def _dump(module: Module, header: str, stream: TextIO) -> None:
    from fedc.ir.text import print_module

    stream.write(f"// -----// IR Dump After {header} //----- //\n")
    stream.write(print_module(module, elide_resources=True))
    stream.write("\n")


@deep_recursion
def run(
    module: Module,
    pipeline: "str | list[PipelineStep]",
    *,
    verify_each: bool = True,
    print_ir_after_all: bool = False,
    print_ir_after: tuple[str, ...] = (),
    print_ir_after_change: bool = False,
    stream: Optional[TextIO] = None,
) -> PipelineResult:
    """Runs a pipeline on ``module`` and returns the result with timings and statistics."""
    from fedc.ir.verifier import verify

    stream = stream if stream is not None else sys.stderr
    steps = parse_pipeline(pipeline) if isinstance(pipeline, str) else list(pipeline)
    for name in print_ir_after:
        lookup(name)
    timings: list[tuple[str, float]] = []
    statistics: list[tuple[str, dict[str, int]]] = []
    for step in steps:
        definition = lookup(step.name)
        ctx = PassContext(step.name)
        options = {k: o.default for k, o in definition.options.items()}
        options.update(step.options)
        start = time.perf_counter()
        try:
            result = definition.fn(module, ctx, **options)
        except FedcError as e:
            raise type(e)(f"pass {step} failed: {e.message}", e.location, e.source) from None
        except Exception:
            raise InternalPassError(step, module, traceback.format_exc()) from None
        elapsed = time.perf_counter() - start
        if not isinstance(result, Module):
            raise InternalPassError(step, module, f"pass returned {type(result).__name__}, not a Module")
        if verify_each:
            try:
                verify(result)
            except VerificationError as e:
                raise PassVerificationError(step, result, e) from None
        changed = modules_differ(module, result)
        timings.append((str(step), elapsed))
        statistics.append((str(step), dict(ctx.statistics)))
        if print_ir_after_all or step.name in print_ir_after or (print_ir_after_change and changed):
            _dump(result, str(step), stream)
        module = result
    return PipelineResult(module, timings, statistics)


def modules_differ(before: Module, after: Module) -> bool:
    """Whether a pass changed the module, locations included."""
    from fedc.ir.building_blocks import equal

    if after is before:
        return False
    if before.name != after.name or before.symbols != after.symbols:
        return True
    return any(not equal(before[s], after[s], locations=True) for s in before.symbols)


def _ir_excerpt(module: Module) -> str:
    from fedc.ir.text import print_module

    try:
        return print_module(module, elide_resources=True)
    except Exception as e:  # the IR may be too broken to print
        return f"<the IR could not be printed: {e}>"


class PassVerificationError(VerificationError):
    """A pass produced IR that does not verify; the message shows that IR."""

    def __init__(self, step: PipelineStep, module: Module, error: VerificationError):
        self.step = step
        self.module = module
        super().__init__(
            f"the IR after pass {step} does not verify: {error.message}\n"
            f"// -----// IR Dump After {step} (invalid) //----- //\n{_ir_excerpt(module)}"
        )


class InternalPassError(Exception):
    """A pass crashed: a bug in fedc, reported with the pass, the traceback and the input IR."""

    def __init__(self, step: PipelineStep, module: Module, details: str):
        self.step = step
        super().__init__(
            f"internal error in pass {step}:\n{details}\n"
            f"// -----// IR Dump Before {step} //----- //\n{_ir_excerpt(module)}"
        )

