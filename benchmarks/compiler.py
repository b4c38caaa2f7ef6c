"""How the compiler's time grows with the size of the program.

    python benchmarks/compiler.py [--sizes 250,500,1000,2000,5000] [--repeats R]
                                  [--budget SECONDS] [--shapes a,b] [--quick] [--output FILE]

For each shape of program (a chain of dependent let-bindings, many
independent bindings, a chain of federated_map, deep nesting of blocks,
lambdas and structs, a traced Python program of N nested calls, N traced
computations each calling the one before, a ``.fed`` program of N bindings) and each size N, every stage is timed on its own:
tracing or ``.fed`` compilation where the shape has one, print, parse,
serialize, deserialize, verify, each pass of the pipeline (on the previous
pass's output) and the whole pipeline through the pass manager (verifying
after each pass). The record (benchmarks/results/compiler.json) keeps the
median seconds per stage and size, and per stage the growth exponent: the
slope of log(time) against log(N), fitted by least squares (1 is linear, 2
quadratic).

A stage that takes longer than ``--budget`` seconds at some N is not run at
larger N (its exponent is fitted on the sizes it ran), so that the benchmark
also finishes on slow code. ``--quick`` runs small sizes once, for the test
that checks the benchmark runs.
"""

from __future__ import annotations

import argparse
import math
import pathlib
import statistics
import sys
import time
from typing import Callable

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import write  # noqa: E402

import fedc  # noqa: E402
from fedc import types as T  # noqa: E402
from fedc.ir import building_blocks as bb  # noqa: E402
from fedc.ir.build import call  # noqa: E402
from fedc.ir.module import Module  # noqa: E402
from fedc.limits import MAX_NESTING  # noqa: E402

PIPELINE = ("inline", "call-dominant", "cse", "dce", "canonicalize", "fuse-map-mean")
CLIENT_FLOATS = T.FederatedType(T.TensorType("float32"), T.CLIENTS)
FLOAT = T.TensorType("float32")


# --------------------------------------------------------------------------
# Programs of size n


def _add_constant(value_ref: bb.Node, constant: float) -> bb.Node:
    return call("add", bb.Struct([value_ref, bb.Literal(constant, FLOAT)]))


def _map(fn: bb.Node, value: bb.Node) -> bb.Node:
    return call("federated_map", bb.Struct([fn, value]))


def _add_fn(constant: float, parameter: str = "y") -> bb.Lambda:
    return bb.Lambda(parameter, FLOAT, _add_constant(bb.Reference(parameter, FLOAT), constant))


def _module(body: bb.Node) -> Module:
    return Module("bench", [("main", bb.Lambda("x", CLIENT_FLOATS, body))])


def let_chain(n: int) -> Module:
    """A local function of n dependent let-bindings (each uses the one before), mapped and averaged."""
    previous: bb.Node = bb.Reference("y", FLOAT)
    bindings = []
    for i in range(n):
        bindings.append((f"v{i}", _add_constant(previous, float(i % 7))))
        previous = bb.Reference(f"v{i}", FLOAT)
    local = bb.Lambda("y", FLOAT, bb.Block(bindings, previous))
    return _module(call("federated_mean", _map(local, bb.Reference("x", CLIENT_FLOATS))))


def independent(n: int) -> Module:
    """n independent bindings: federated_mean of a federated_map of x, each with its own function.

    Every seventh function repeats, so that cse finds duplicates.
    """
    bindings = []
    for i in range(n):
        mapped = _map(_add_fn(float(i % 7), f"y{i}"), bb.Reference("x", CLIENT_FLOATS))
        bindings.append((f"m{i}", call("federated_mean", mapped)))
    result = bb.Struct([bb.Reference(name, value.type_signature) for name, value in bindings])
    return _module(bb.Block(bindings, result))


def map_chain(n: int) -> Module:
    """A chain of n federated_map, each on the result of the one before, then federated_mean."""
    previous: bb.Node = bb.Reference("x", CLIENT_FLOATS)
    bindings = []
    for i in range(n):
        bindings.append((f"c{i}", _map(_add_fn(1.0, f"y{i}"), previous)))
        previous = bb.Reference(f"c{i}", CLIENT_FLOATS)
    return _module(bb.Block(bindings, call("federated_mean", previous)))


def nested_blocks(n: int) -> Module:
    """Blocks nested n deep: each binds one federated_map and has the next block as its result."""
    body: bb.Node = call("federated_mean", bb.Reference(f"b{n - 1}", CLIENT_FLOATS))
    for i in reversed(range(n)):
        source = bb.Reference("x" if i == 0 else f"b{i - 1}", CLIENT_FLOATS)
        body = bb.Block([(f"b{i}", _map(_add_fn(1.0, f"y{i}"), source))], body)
    return _module(body)


def nested_lambdas(n: int) -> Module:
    """Lambdas nested n deep, each called at once on a federated_map of its enclosing parameter."""
    body: bb.Node = call("federated_mean", bb.Reference(f"p{n - 1}", CLIENT_FLOATS))
    for i in reversed(range(n)):
        source = bb.Reference("x" if i == 0 else f"p{i - 1}", CLIENT_FLOATS)
        body = bb.Call(bb.Lambda(f"p{i}", CLIENT_FLOATS, body), _map(_add_fn(1.0, f"y{i}"), source))
    return _module(body)


def nested_structs(n: int) -> Module:
    """Structs nested n deep: ``<map(<map(x), x>[0]), x>[0]`` ..., a federated_map at each level."""
    node: bb.Node = bb.Reference("x", CLIENT_FLOATS)
    for i in range(n):
        mapped = _map(_add_fn(float(i % 7), f"y{i}"), node)
        node = bb.Selection(bb.Struct([mapped, bb.Reference("x", CLIENT_FLOATS)]), index=0)
    return _module(call("federated_mean", node))


def traced_source(n: int) -> Callable[[], object]:
    """A traced computation whose Python code applies n federated_maps, one after another."""

    def trace():
        @fedc.federated_computation(CLIENT_FLOATS)
        def mapped(x):
            value = x
            for _ in range(n):
                value = fedc.federated_map(lambda v: v + 1.0, value)
            return fedc.federated_mean(value)

        return mapped

    return trace


def traced_calls_source(n: int) -> Callable[[], object]:
    """n traced computations, each calling the one before on a federated_map of its argument."""

    def trace():
        previous = None
        for _ in range(n):
            if previous is None:
                @fedc.federated_computation(CLIENT_FLOATS)
                def first(x):
                    return fedc.federated_map(lambda v: v + 1.0, x)

                previous = first
            else:
                callee = previous

                @fedc.federated_computation(CLIENT_FLOATS)
                def step(x):
                    return callee(fedc.federated_map(lambda v: v + 1.0, x))

                previous = step
        return previous

    return trace


def fed_source(n: int) -> str:
    """A .fed program of n let-bindings."""
    lines = ["computation chain(x: {float32}@CLIENTS) -> float32@SERVER {"]
    previous = "x"
    for i in range(n):
        lines.append(f"  let v{i} = federated_map(fn(v) -> v + {i % 7}.0, {previous})")
        previous = f"v{i}"
    lines.append(f"  return federated_mean({previous})")
    lines.append("}")
    return "\n".join(lines) + "\n"


BUILT = {
    "let_chain": let_chain,
    "independent": independent,
    "map_chain": map_chain,
    "nested_blocks": nested_blocks,
    "nested_lambdas": nested_lambdas,
    "nested_structs": nested_structs,
}
SHAPES = [*BUILT, "traced", "traced_calls", "fed"]
# inline keeps every computation of a module, each with its callees inlined: on a chain of
# n computations calling each other its output is O(n^2), so these shapes stop before the passes.
WITHOUT_PASSES = {"traced_calls"}


# --------------------------------------------------------------------------
# Stages


def median_time(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def stages(shape: str, n: int):
    """Yields (stage, fn) in order; each fn returns the value the later stages work on."""
    from fedc.frontend import fed
    from fedc.ir import serialization, text, verifier
    from fedc.passes import manager

    state: dict = {}
    if shape == "traced":
        trace = traced_source(n)
        yield "trace", lambda: state.__setitem__("module", trace().to_ir())
    elif shape == "traced_calls":
        trace = traced_calls_source(n)
        yield "trace", lambda: state.__setitem__("module", trace().to_ir())
    elif shape == "fed":
        source = fed_source(n)
        yield "fed-compile", lambda: state.__setitem__("module", fed.parse(source, "<bench>"))
    else:
        yield "build", lambda: state.__setitem__("module", BUILT[shape](n))
    yield "print", lambda: state.__setitem__("text", text.print_module(state["module"]))
    yield "parse", lambda: text.parse_module(state["text"], "<bench>")
    yield "serialize", lambda: state.__setitem__("bytes", serialization.serialize(state["module"]))
    yield "deserialize", lambda: serialization.deserialize(state["bytes"], max_depth=1 << 20)
    yield "verify", lambda: verifier.verify(state["module"])
    if shape in WITHOUT_PASSES:
        return
    state["current"] = None

    def one_pass(name):
        def run():
            source = state["current"] or state["module"]
            state["next"] = manager.run(source, name, verify_each=False).module

        return run

    for name in PIPELINE:
        yield f"pass:{name}", one_pass(name)
        state["current"] = state.get("next")  # None if the pass failed: the next one starts over
    yield "pipeline", lambda: manager.run(state["module"], ",".join(PIPELINE))


# The stage whose output a stage works on (besides the program built by the first stage).
NEEDS = {"parse": "print", "deserialize": "serialize"}
NEEDS.update({f"pass:{b}": f"pass:{a}" for a, b in zip(PIPELINE, PIPELINE[1:])})
FIRST_STAGES = {"build", "trace", "fed-compile"}


def slope(points: list[tuple[int, float]]) -> float | None:
    """The least-squares slope of log(seconds) against log(N)."""
    points = [(n, t) for n, t in points if t > 0]
    if len(points) < 2:
        return None
    xs = [math.log(n) for n, _ in points]
    ys = [math.log(t) for _, t in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else None


# IR may nest at most fedc.limits.MAX_NESTING deep; these shapes nest about this many levels
# per unit of N, so their sizes are scaled down (the largest just fits) and recorded as run.
NESTING_PER_N = {"nested_blocks": 1, "nested_lambdas": 2, "nested_structs": 4}


def sizes_for(shape: str, sizes: list[int]) -> list[int]:
    per = NESTING_PER_N.get(shape)
    if per is None:
        return sizes
    fits = (MAX_NESTING - 20) // per
    largest = max(sizes)
    if largest <= fits:
        return sizes
    return sorted({max(4, n * fits // largest) for n in sizes})


def run(shapes: list[str], sizes: list[int], repeats: int, budget: float, output=None) -> dict:
    # No raised recursion limit here: the benchmark measures what users get.
    results, failures = [], []
    for shape in shapes:  # warm up (imports, grammar loading) outside the timings
        for _, fn in stages(shape, 4):
            fn()
    for shape in shapes:
        over_budget: set[str] = set()
        timings: dict[str, list[tuple[int, float]]] = {}
        for n in sizes_for(shape, sizes):
            skipped: set[str] = set()
            for stage, fn in stages(shape, n):
                needed = NEEDS.get(stage)
                if stage in over_budget or (needed is not None and needed in skipped) or FIRST_STAGES & skipped:
                    skipped.add(stage)  # so are the stages that need its output
                    continue
                try:
                    seconds, _ = median_time(fn, repeats)
                except (RecursionError, fedc.FedcError) as e:
                    # Recorded, not fatal: the other stages are still measured.
                    failures.append({"shape": shape, "stage": stage, "size": n, "error": f"{type(e).__name__}: {str(e)[:200]}"})
                    print(f"{shape:15} N={n:<6} {stage:20} failed: {type(e).__name__}", flush=True)
                    over_budget.add(stage)
                    skipped.add(stage)
                    continue
                timings.setdefault(stage, []).append((n, seconds))
                print(f"{shape:15} N={n:<6} {stage:20} {seconds:9.4f} s", flush=True)
                if seconds > budget:
                    over_budget.add(stage)
        for stage, points in timings.items():
            results.append(
                {
                    "shape": shape,
                    "stage": stage,
                    "sizes": [n for n, _ in points],
                    "median_s": [t for _, t in points],
                    "exponent": slope(points),
                }
            )
    record = {"sizes": sizes, "repeats": repeats, "budget_s": budget, "pipeline": ",".join(PIPELINE),
              "results": results, "failures": failures}
    path = write("compiler", record, output)
    print(f"wrote {path}")
    return record


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="250,500,1000,2000,5000")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget", type=float, default=30.0, help="seconds after which a stage stops growing N")
    parser.add_argument("--shapes", default=",".join(SHAPES))
    parser.add_argument("--quick", action="store_true", help="small sizes, one run each")
    parser.add_argument("--output", type=pathlib.Path)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    repeats = args.repeats
    if args.quick:
        sizes, repeats = [10, 20, 40], 1
    shapes = [s for s in args.shapes.split(",") if s]
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown:
        parser.error(f"unknown shapes {unknown}; the shapes are {', '.join(SHAPES)}")
    run(shapes, sizes, repeats, args.budget, args.output)


if __name__ == "__main__":
    main()
