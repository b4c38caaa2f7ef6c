"""Fuzzing the .fed front end: random and mutated source gives a Module or a FedcError, nothing else."""

from __future__ import annotations

import pathlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fedc
from fedc.frontend import fed
from fedc.frontend.api import BINARY_OPERATORS

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"
EXAMPLE_FILES = ["temperature.fed", "add_half.fed", "analytics.fed", "fedavg.fed"]
SOURCES = {name: (EXAMPLES / name).read_text() for name in EXAMPLE_FILES}

KEYWORDS = [
    "computation", "local", "type", "extern", "import", "let", "return", "fn", "and", "or", "not",
    "true", "false", "SERVER", "CLIENTS",
]
TOKENS = KEYWORDS + [
    "x", "t", "v", "Weights", "float32", "int32", "bool", "str", "placement", "T",
    "federated_mean", "federated_map", "federated_sum", "federated_broadcast", "federated_value",
    "federated_aggregate", "sequence_reduce", "cast", "reduce_sum", "clip", "zeros", "dtype", "axis",
    "{", "}", "(", ")", "<", ">", "[", "]", ",", ":", ";", "=", "==", "->", "@", "*", "**", "+", "-",
    "/", "//", "%", ".", "?", "#", "\n", " ", "0", "1", "2.5", "3i64", "1e-3", '"a.fed"',
    '"fedavg_tf:client_update"', '"m:f"', "'float32'(shape=None)", "{float32}@CLIENTS",
    "float32@SERVER", "<a=int32,b=float32>", "int32[?,3]", "float32[*]",
]
ALPHABET = st.sampled_from(list("abcxyz_019 \n\t{}()<>[],:;=@*+-/%.?#\"'!$\\") + ["é", "\x00", "\u2028"])


def _check(text: str, filename: str) -> None:
    try:
        module = fed.parse(text, filename=filename)
    except fedc.FedcError as e:
        str(e)  # the message renders
        if isinstance(e, fed.DiagnosticsError):
            assert e.diagnostics
            for d in e.diagnostics:
                assert isinstance(d, fedc.FedcError)
        return
    assert isinstance(module, fedc.ir.Module)
    fedc.ir.verify(module)


_settings = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@_settings
@given(st.text(ALPHABET, max_size=200))
def test_random_characters(text):
    _check(text, str(EXAMPLES / "fuzz.fed"))


@_settings
@given(st.lists(st.sampled_from(TOKENS), max_size=60))
def test_random_tokens(tokens):
    _check(" ".join(tokens), str(EXAMPLES / "fuzz.fed"))


@st.composite
def mutated_example(draw):
    name = draw(st.sampled_from(EXAMPLE_FILES))
    text = SOURCES[name]
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["insert", "delete", "replace", "token", "swap_lines", "duplicate_line"]))
        position = draw(st.integers(0, len(text)))
        if kind == "insert":
            text = text[:position] + draw(ALPHABET) + text[position:]
        elif kind == "delete":
            length = draw(st.integers(1, 12))
            text = text[:position] + text[position + length:]
        elif kind == "replace":
            text = text[:position] + draw(ALPHABET) + text[position + 1:]
        elif kind == "token":
            length = draw(st.integers(0, 8))
            text = text[:position] + draw(st.sampled_from(TOKENS)) + text[position + length:]
        else:
            lines = text.split("\n")
            i = draw(st.integers(0, len(lines) - 1))
            j = draw(st.integers(0, len(lines) - 1))
            if kind == "swap_lines":
                lines[i], lines[j] = lines[j], lines[i]
            else:
                lines.insert(j, lines[i])
            text = "\n".join(lines)
    return name, text


@_settings
@given(mutated_example())
def test_mutated_examples(example):
    name, text = example
    _check(text, str(EXAMPLES / name))


@pytest.mark.parametrize("name", EXAMPLE_FILES)
def test_every_prefix_of_an_example(name):
    # Cutting a file anywhere (an editor's view while typing) is never a crash.
    text = SOURCES[name]
    for end in range(0, len(text), max(1, len(text) // 60)):
        _check(text[:end], str(EXAMPLES / name))


# Well-formed programs of random expressions: they reach the type checker, not just the parser.
TYPES = [
    "float32", "int32", "bool", "float32[3]", "<a=float32,b=int32>", "{float32}@CLIENTS", "float32@SERVER",
    "{int32}@CLIENTS", "{<a=float32,b=int32>}@CLIENTS", "float32*", "{float32*}@CLIENTS", "(float32 -> float32)",
    "int32[?]", "placement", "<>", "str",
]
FUNCTIONS = [
    "federated_mean", "federated_sum", "federated_map", "federated_broadcast", "federated_value",
    "federated_zip", "federated_eval", "federated_aggregate", "federated_secure_sum", "federated_select",
    "sequence_map", "sequence_reduce", "sequence_sum", "add", "cast", "reduce_sum", "clip", "zeros", "where",
    "reshape", "matmul", "f", "g", "x", "nope",
]


def expressions():
    leaves = st.one_of(
        st.sampled_from(["x", "y", "a", "SERVER", "CLIENTS", "f", "g", "nope", "float32"]),
        st.sampled_from(["0", "1", "2.5", "-3", "7i64", "true", '"s"', "[1, 2, 3]", "[[1.0], [2.0]]", "type(int32)"]),
    )

    def extend(inner):
        return st.one_of(
            st.tuples(inner, st.sampled_from(list(BINARY_OPERATORS)), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
            inner.map(lambda e: f"(-{e})"),
            inner.map(lambda e: f"(not {e})"),
            st.tuples(inner, st.sampled_from(["a", "b", "weights", "0", "1"])).map(
                lambda t: f"{t[0]}.{t[1]}" if not t[1].isdigit() else f"{t[0]}[{t[1]}]"),
            st.tuples(st.sampled_from(FUNCTIONS), st.lists(inner, max_size=4),
                      st.lists(st.tuples(st.sampled_from(["weight", "dtype", "axis", "type", "fn", "zz"]), inner), max_size=2)).map(
                lambda t: f"{t[0]}({', '.join(t[1] + [k + '=' + v for k, v in t[2]])})"),
            st.lists(st.tuples(st.sampled_from(["", "a=", "b="]), inner), max_size=3).map(
                lambda es: "<" + ", ".join(n + v for n, v in es) + ">"),
            st.tuples(st.sampled_from(["v", "v: float32", "v, w", "", "v: {float32}@CLIENTS"]), inner).map(
                lambda t: f"(fn({t[0]}) -> {t[1]})"),
        )

    return st.recursive(leaves, extend, max_leaves=12)


@_settings
@given(st.sampled_from(TYPES), st.sampled_from(TYPES), st.sampled_from(TYPES + [None]), expressions(), expressions())
def test_random_well_formed_programs(tx, ty, result, let_value, returned):
    arrow = f" -> {result}" if result else ""
    text = (
        "local g(v: float32) -> float32 { return v }\n"
        f"computation f(x: {tx}, y: {ty}){arrow} {{\n"
        f"  let a = {let_value}\n"
        f"  return {returned}\n"
        "}\n"
    )
    _check(text, str(EXAMPLES / "fuzz.fed"))
