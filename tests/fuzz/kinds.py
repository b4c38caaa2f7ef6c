"""The kinds of fuzz input, each a generator ``case = generate(kind, seed, index)``.

========== ==================================================================
kind       what it feeds fedc
========== ==================================================================
fed        mutated ``.fed`` source (:mod:`fuzz.mutate`), loaded then exercised
ir         mutated textual IR, loaded then exercised
proto      mutated protobuf (:mod:`fuzz.proto_mutate`), loaded then exercised
ladder     every nesting shape in every form at every depth (:mod:`fuzz.ladders`)
tfpayload  TensorFlow graphs with each denied op class (:mod:`fuzz.tf_payloads`)
cli        every subcommand of ``fedc`` with random flags, values and inputs
args       ``fedc run --args`` with JSON and ``.npz`` files (:mod:`fuzz.args_files`)
========== ==================================================================

A case depends only on ``(kind, seed, index)``, so a run is reproducible and
the pytest tier (a fixed seed, a bounded count per kind) is deterministic.
The ladder and the first part of the payload plan are enumerations: their
``index``-th case is the ``index``-th entry (:func:`count` says how many).
"""

from __future__ import annotations

import argparse
import functools
import json
import random

from fuzz import actions, args_files, ladders, mutate, proto_mutate, seeds, tf_payloads

KINDS = ["fed", "ir", "proto", "ladder", "tfpayload", "cli", "args"]


def _rng(kind: str, seed: int, index: int) -> random.Random:
    return random.Random(f"{kind}:{seed}:{index}")


def _base(kind: str, seed: int, index: int, rng: random.Random) -> dict:
    return {"kind": kind, "seed": seed, "index": index, "pipeline": rng.choice(actions.PIPELINES + [None]),
            "run": True}


# --------------------------------------------------------------------------
# Text and protobuf


def gen_fed(seed: int, index: int) -> dict:
    rng = _rng("fed", seed, index)
    sources = seeds.fed_sources()
    name = rng.choice(sorted(sources))
    data, note = mutate.mutate_text(rng, sources[name], "fed", list(sources.values()))
    files = dict(seeds.fed_files_for(name))
    files["case.fed"] = data
    return dict(_base("fed", seed, index, rng), action="load", main="case.fed", files=files, note=f"{name}: {note}")


def gen_ir(seed: int, index: int) -> dict:
    rng = _rng("ir", seed, index)
    texts = seeds.ir_texts()
    name = rng.choice(sorted(texts))
    data, note = mutate.mutate_text(rng, texts[name], "ir", list(texts.values()))
    return dict(_base("ir", seed, index, rng), action="load", main="case.fedir", files={"case.fedir": data},
                note=f"{name}: {note}")


def gen_proto(seed: int, index: int) -> dict:
    rng = _rng("proto", seed, index)
    blobs = seeds.proto_bytes()
    name = rng.choice(sorted(blobs))
    data, note = proto_mutate.mutate(rng, blobs[name])
    return dict(_base("proto", seed, index, rng), action="load", main="case.fedpb", files={"case.fedpb": data},
                note=f"{name}: {note}")


# --------------------------------------------------------------------------
# Ladders and payloads (enumerations)


@functools.lru_cache(maxsize=1)
def ladder_plan() -> list[tuple[str, int]]:
    return [(shape, depth) for depth in ladders.DEPTHS for shape in ladders.SHAPES]


def gen_ladder(seed: int, index: int) -> dict:
    shape, depth = ladder_plan()[index % len(ladder_plan())]
    case = ladders.case(shape, depth)
    case.update(seed=seed, index=index)
    return case


def gen_tfpayload(seed: int, index: int) -> dict:
    rng = _rng("tfpayload", seed, index)
    recipe = tf_payloads.recipes(rng, index)
    return {"kind": "tfpayload", "seed": seed, "index": index, "action": "tfpayload", "recipe": recipe,
            "files": {"secret.txt": tf_payloads.SECRET.encode()}, "outputs": ["step.fedpb", "args.json"],
            "timeout": 60.0, "note": json.dumps(recipe)}


# --------------------------------------------------------------------------
# The command line


@functools.lru_cache(maxsize=1)
def cli_spec() -> dict:
    """``{subcommand: [(option strings, takes a value, choices, dest)]}`` read from fedc's own parser."""
    from fedc import cli

    parser = cli._parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    spec = {}
    for name, p in sub.choices.items():
        options = []
        for a in p._actions:
            takes = a.nargs != 0
            options.append((tuple(a.option_strings), takes, tuple(a.choices or ()), a.dest, a.required))
        spec[name] = options
    return spec


PIPELINE_WORDS = ["inline", "call-dominant", "cse", "dce", "canonicalize", "fuse-map-mean", "fuse-maps", "desugar",
                  "insert-secure-aggregation", "lower-to-mapreduce", "privacy-report", "strip-locations", "verify",
                  "to-mapreduce", "nope", "", "inline{", "verify{}", "dce{x=1}"]
PASS_OPTIONS = ["{bits=1}", "{bits=0}", "{bits=-1}", "{bits=64}", "{bits=99999999999999999999}", "{clip=nan}",
                "{clip=inf}", "{clip=-1}", "{clip=1e309}", "{max-clients=0}", "{max-clients=-5}", "{allow-insecure=maybe}",
                "{to=nope}", "{to=mean}", "{entry=nope}", "{entry=}", "{require-secure=true}", "{bits=20 clip=1.0}",
                "{weight-clip=0}", "{bits=20,clip=2}", "{=}", "{bits}", "{bits=1 bits=2}"]


def _pipeline(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(0, 6)):
        word = rng.choice(PIPELINE_WORDS)
        if word == "insert-secure-aggregation" or rng.random() < 0.1:
            word += rng.choice(PASS_OPTIONS)
        parts.append(word)
    return rng.choice([",", ",", " , ", ";"]).join(parts)


INPUT_NAMES = ["prog.fed", "prog.fedir", "prog.fedpb", "-", "missing.fed", ".", "prog.txt", "noext", "", "prog.FED",
               "prog.mlir", "prog.ir", "prog.pb", "sub/", "prog.fed/", "\udcff.fed", "/dev/null"]
OUTPUT_NAMES = ["out.fedir", "out.fedpb", "out.svg", "out.png", "out.dot", "out.html", "out.gv", "-", "nodir/out.fedir",
                ".", "out", "prog.fed", "out.PNG", "/dev/full", "out.mlir", "out.htm", "\udcffout.svg"]
ENTRY_NAMES = ["f", "nope", "", "@f", "initialize", "next", "x" * 300, "get_average_temperature", "histogram", "0"]
VALUES = {
    "backend": ["reference", "tf", "nope", "", "REFERENCE"],
    "rounds": ["-1", "0", "1", "2", "x", "1e3", "-0"],
    "timeout": ["0", "-1", "nan", "inf", "-inf", "1e-9", "0.001", "30", "1e308", "x", "1e309"],
    "report": ["privacy", "cost", "privacy,cost", "nope", "", "privacy,,cost", "cost,privacy,privacy", "privac"],
    "include": [".", "sub", "missing", "..", ""],
    "initialize": ["initialize", "next", "nope", ""],
    "next": ["next", "initialize", "nope", ""],
}


def _program_files(rng: random.Random) -> tuple[dict, str, str]:
    """A program in the three forms, maybe mutated; (files, name of its seed, the JSON args for it)."""
    programs = dict(args_files.PROGRAMS)
    for name, source in seeds.fed_sources().items():
        if "extern" not in source and "import" not in source:
            programs[name] = source
    name = rng.choice(sorted(programs))
    source = programs[name]
    files = {"prog.fed": source.encode(), "sub/lib.fed": seeds.EXTRA_FED["lib.fed"].encode(), "prog.txt": b"x",
             "noext": source.encode()}
    module, lam = args_files.parameter_type(source)
    from fedc import ir

    files["prog.fedir"] = ir.print_module(module).encode()
    files["prog.fedpb"] = ir.serialize(module)
    files["prog.FED"] = files["prog.fed"]
    files["prog.mlir"] = files["prog.fedir"]
    if rng.random() < 0.3:
        target = rng.choice(["prog.fed", "prog.fedir"])
        data, note = mutate.mutate_text(rng, files[target].decode(), "fed" if target.endswith(".fed") else "ir", [source])
        files[target] = data
        name += f" ({target} mutated: {note})"
    elif rng.random() < 0.15:
        files["prog.fedpb"], note = proto_mutate.mutate(rng, files["prog.fedpb"])
        name += f" (prog.fedpb mutated: {note})"
    args = args_files.valid_json_args(lam, random.Random(rng.random()))
    return files, name, json.dumps(args)


def gen_cli(seed: int, index: int) -> dict:
    rng = _rng("cli", seed, index)
    spec = cli_spec()
    files, program, args_json = _program_files(rng)
    files["args.json"] = args_json.encode()
    files["bad.json"] = rng.choice([b"{", b"[]", b'{"zz": 1}', b"\xff", b"null"])
    expect_ok = False
    if index < 4 * len(spec) + 3:
        # The first cases: each subcommand's --help, then plainly on each form, then no command at all.
        commands = sorted(spec)
        block, position = divmod(index, len(commands)) if index < 4 * len(commands) else (4, index - 4 * len(commands))
        expect_ok = block in (0, 4)  # --help of each command, and fedc alone, --help, --version
        if block == 4:
            argv = [[], ["--help"], ["--version"]][position]
        else:
            command = commands[position]
            argv = [command, "--help"] if block == 0 else [command, ["prog.fed", "prog.fedir", "prog.fedpb"][block - 1]]
            if command == "viz" and block:
                argv += ["-o", "out.svg"]
            if command == "run" and block:
                argv += ["--args", "args.json"]
    else:
        command = rng.choice(sorted(spec) + ["nope"])
        argv = [command] if command != "nope" else [rng.choice(["nope", "-x", "--", "compile-", "RUN"])]
        options = spec.get(command, [])
        for strings, takes, choices, dest, required in options:
            if dest == "help":
                if rng.random() < 0.03:
                    argv.append("--help")
                continue
            if dest == "trusted":
                continue  # --trusted is the user's opt-out of the allowlist: not fuzzed
            if not strings:  # the positional input
                if rng.random() < 0.95:
                    argv.append(rng.choice(INPUT_NAMES) if rng.random() < 0.3 else rng.choice(INPUT_NAMES[:3]))
                continue
            if not (required or rng.random() < 0.3):
                continue
            flag = rng.choice(strings)
            if not takes:
                argv.append(flag)
                continue
            if choices:
                value = rng.choice(list(choices) + ["exe", ""])
            elif dest == "output":
                value = rng.choice(OUTPUT_NAMES)
            elif dest == "passes":
                value = _pipeline(rng)
            elif dest == "print_ir_after":
                value = rng.choice(PIPELINE_WORDS)
            elif dest == "args":
                value = rng.choice(["args.json", "args.json", "bad.json", "missing.json", "prog.fed", ".", "args.npz"])
            elif dest == "entry":
                value = rng.choice(ENTRY_NAMES)
            else:
                value = rng.choice(VALUES.get(dest, ["x", "", "-1"]))
            argv += [flag, value] if rng.random() < 0.9 else [f"{flag}={value}" if flag.startswith("--") else flag + value]
        if rng.random() < 0.1:
            argv.insert(rng.randrange(1, len(argv) + 1), rng.choice(["--nope", "-", "--", "extra", "-o"]))
        if rng.random() < 0.05 and len(argv) > 1:
            i = rng.randrange(1, len(argv))
            argv.insert(i, argv[i])
    outputs = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("-o", "--output")]
    outputs += [a.split("=", 1)[1] for a in argv if a.startswith("--output=")]
    outputs += [a[2:] for a in argv if a.startswith("-o") and len(a) > 2]
    stdin = files.get("prog.fedir", b"") if "-" in argv else b""
    return {"kind": "cli", "seed": seed, "index": index, "action": "cli", "argv": argv, "files": files,
            "outputs": outputs, "stdin": stdin, "note": f"program {program}", "timeout": 60.0, "expect_ok": expect_ok}


# --------------------------------------------------------------------------
# Argument files


def gen_args(seed: int, index: int) -> dict:
    rng = _rng("args", seed, index)
    programs = dict(args_files.PROGRAMS)
    programs["temperature.fed"] = seeds.fed_sources()["temperature.fed"]
    programs["analytics.fed"] = seeds.fed_sources()["analytics.fed"]
    name = rng.choice(sorted(programs))
    source = programs[name]
    module, lam = args_files.parameter_type(source)
    value = args_files.valid_json_args(lam, rng)
    notes = []
    rounds = name == "rounds.fed"
    if rounds:
        value = {"data": [1.0, 2.0]}
    mutations = 0 if index % 10 == 0 else rng.choice([1, 1, 2, 3])
    for _ in range(mutations):
        value, note = args_files.mutate_json(rng, value)
        notes.append(note)
    files = {"prog.fed": source.encode()}
    if rng.random() < 0.55:
        data, tail = args_files.encode_json(rng, value) if mutations else (json.dumps(value).encode(), "")
        files["args.json"] = data
        argsfile = "args.json"
        notes.append("json" + tail)
    else:
        try:
            arrays = args_files.flatten_paths(value)
        except Exception as e:  # a mutated value that numpy cannot make an array of
            arrays = {"x": __import__("numpy").float32(1.0)}
            notes.append(f"not arrays ({type(e).__name__})")
        if mutations:
            data, note = args_files.mutate_npz(rng, arrays)
            notes.append("npz: " + note)
        else:
            data = args_files.zip_bytes({k + ".npy": args_files.npy_bytes(v) for k, v in arrays.items()})
            notes.append("npz")
        files["args.npz"] = data
        argsfile = "args.npz"
    argv = ["run", "prog.fed", "--args", argsfile]
    if rounds:
        argv += ["--rounds", "2"]
    return {"kind": "args", "seed": seed, "index": index, "action": "cli", "argv": argv, "files": files,
            "outputs": [], "note": f"{name}: {'; '.join(notes)}", "timeout": 60.0,
            "expect_ok": mutations == 0}


GENERATORS = {"fed": gen_fed, "ir": gen_ir, "proto": gen_proto, "ladder": gen_ladder, "tfpayload": gen_tfpayload,
              "cli": gen_cli, "args": gen_args}


def generate(kind: str, seed: int, index: int) -> dict:
    return GENERATORS[kind](seed, index)


def count(kind: str):
    """How many distinct cases a kind has (None: unbounded)."""
    if kind == "ladder":
        return len(ladder_plan())
    return None
