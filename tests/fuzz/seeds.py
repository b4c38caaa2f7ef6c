"""The seed corpus: valid inputs of each form that the mutators start from.

- ``.fed`` source: every ``examples/*.fed`` and a few small programs below
  that use what the examples do not (aliases, imports, sequences, lambdas
  with bodies, local ops with keywords, strings, literals of every kind);
- textual IR: the IR of each of those (as fedc's printer writes it), and
  every input of the pass golden files (``tests/passes/golden``), which use
  blocks, lambdas, intrinsics with attributes and MapReduce forms;
- protobuf: the serialized form of each IR seed.
"""

from __future__ import annotations

import functools
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
GOLDEN = REPO / "tests" / "passes" / "golden"

#: Small programs covering the rest of the language; ``lib.fed`` is importable by the others.
EXTRA_FED = {
    "lib.fed": """\
type Pair = <a=float32,b=int32>
local scale(p: Pair, k: float32) -> Pair {
  return <a=p.a * k, b=p.b>
}
""",
    "uses_lib.fed": """\
import "lib.fed"
computation scaled(ps: {Pair}@CLIENTS, k: float32@SERVER) -> {Pair}@CLIENTS {
  let kc = federated_broadcast(k)
  return federated_map(fn(p, q) -> scale(p, q), <ps, kc>)
}
""",
    "sequences.fed": """\
local total(ds: float32*) -> float32 {
  return sequence_sum(ds)
}
computation sums(data: {float32*}@CLIENTS) -> float32@SERVER {
  let per_client = federated_map(total, data)
  return federated_sum(per_client)
}
""",
    "literals.fed": """\
local consts(x: float64[3]) -> <float64[3],int64,bool,str,float32[2,2]> {
  let m = [[1.0, 2.0], [3.0, 4.0]]
  let z = zeros(type=type(float32[2,2]))
  return <x * 2 + 0.5f64, 3i64 ** 2, not (reduce_sum(x, axis=0) > 1.0) or true, "s\\t", m @ z>
}
computation on_server(v: float64[3]@SERVER) -> <float64[3],int64,bool,str,float32[2,2]>@SERVER {
  return federated_map(consts, v)
}
""",
    "bodies.fed": """\
computation weighted(x: {float32}@CLIENTS, w: {float32}@CLIENTS) -> float32@SERVER {
  let y = federated_map(fn(v) {
    let c = clip(v, -1.0, 1.0)
    let d = cast(c, dtype=float64)
    return cast(d * d, dtype=float32)
  }, x)
  return federated_mean(y, weight=w)
}
computation reduced(x: {int32[4]}@CLIENTS) -> int32@SERVER {
  let s = federated_map(fn(v: int32[4]) -> reduce_sum(v, axis=0), x)
  return federated_sum(s)
}
""",
    "aggregate.fed": """\
computation agg(x: {float32}@CLIENTS) -> float32@SERVER {
  return federated_aggregate(x, 0.0, fn(a, v) -> a + v, fn(a, b) -> a + b, fn(a) -> a * 2.0)
}
computation zipped(x: {float32}@CLIENTS, s: float32@SERVER) -> {<float32,float32>}@CLIENTS {
  return federated_zip(<x, federated_broadcast(s)>)
}
computation evaluated() -> {int32}@CLIENTS {
  return federated_value(7, CLIENTS)
}
""",
}


@functools.lru_cache(maxsize=1)
def fed_sources() -> dict[str, str]:
    """``{file name: source}`` of every .fed seed (examples first)."""
    sources = {p.name: p.read_text() for p in sorted(EXAMPLES.glob("*.fed"))}
    sources.update(EXTRA_FED)
    return sources


def fed_files_for(name: str) -> dict[str, bytes]:
    """The sandbox files a .fed seed needs besides itself (the files it imports)."""
    if "import" in fed_sources()[name]:
        return {"lib.fed": EXTRA_FED["lib.fed"].encode()}
    return {}


@functools.lru_cache(maxsize=1)
def ir_texts() -> dict[str, str]:
    """``{name: textual IR}``: the printed IR of the .fed seeds and the golden-file inputs."""
    from fedc import ir
    from fedc.frontend import fed

    texts = {}
    for name, source in fed_sources().items():
        search = [str(EXAMPLES)] if name != "lib.fed" else []
        try:
            module = fed.parse(source, filename=str(EXAMPLES / name), search_paths=search)
        except Exception:
            # uses_lib.fed imports lib.fed, which is not in examples/; compile it beside its import.
            import tempfile

            with tempfile.TemporaryDirectory() as folder:
                for file, text in EXTRA_FED.items():
                    (pathlib.Path(folder) / file).write_text(text)
                module = fed.load(pathlib.Path(folder) / name)
        texts[name.replace(".fed", ".fedir")] = ir.print_module(module)
    for path in sorted(GOLDEN.rglob("*.fedir")):
        lines = [l for l in path.read_text().splitlines() if not l.startswith("//")]
        texts[f"golden/{path.parent.name}/{path.name}"] = "\n".join(lines) + "\n"
    return texts


@functools.lru_cache(maxsize=1)
def ir_modules() -> dict:
    """The seeds' modules (the IR texts that parse on their own)."""
    from fedc import ir

    modules = {}
    for name, text in ir_texts().items():
        try:
            modules[name] = ir.parse_module(text, name)
        except Exception:
            continue
    return modules


@functools.lru_cache(maxsize=1)
def proto_bytes() -> dict[str, bytes]:
    from fedc import ir

    return {name.replace(".fedir", ".fedpb"): ir.serialize(m) for name, m in ir_modules().items()}
