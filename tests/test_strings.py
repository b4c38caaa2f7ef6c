"""str tensors keep every character, NULs included: arguments, results, literals, textual IR, protobuf, TF.

numpy's fixed-width 'U' arrays drop trailing NUL characters (np.array(["a\\0"])
holds "a"); fedc keeps strings as object arrays of Python strings
(fedc.values.strings), so each path here must give back exactly what it got.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fedc
from fedc import ir
from fedc.computation import Computation
from fedc.errors import FedcError, FedcTypeError, ParseError
from fedc.frontend import fed

# Text that UTF-8 can encode (no lone surrogates), rich in NULs at the ends.
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=6).flatmap(
    lambda s: st.sampled_from(["", "\0", "\0\0"]).map(lambda nuls: s + nuls))
TEXTS = st.lists(TEXT, min_size=1, max_size=4)

SOURCE = """\
computation same(x: {str}@CLIENTS) -> {str}@CLIENTS {
  return federated_map(fn(v) -> v, x)
}

computation matches(x: {str}@CLIENTS, y: str@SERVER) -> {bool}@CLIENTS {
  return federated_map(fn(a, b) -> a == b, <x, federated_broadcast(y)>)
}

computation pick(x: <str,str>@SERVER, first: bool@SERVER) -> str@SERVER {
  return federated_map(fn(s, f) -> where(f, s[0], s[1]), <x, first>)
}
"""


@pytest.fixture(scope="module")
def module():
    return fed.parse(SOURCE, filename="strings.fed")


@settings(max_examples=60, deadline=None)
@given(TEXTS)
def test_arguments_and_results_keep_every_character(module, texts):
    assert Computation(module, "same")(texts) == texts
    assert fedc.types.infer_type(ir.Literal(texts).value) == fedc.TensorType(np.str_, [len(texts)])
    assert Computation(module, "same")([t.encode("utf-8") for t in texts]) == texts  # UTF-8 bytes are text
    # per-client comparisons see the NULs (batched over clients, and one by one)
    assert Computation(module, "matches")(texts, texts[0]) == [t == texts[0] for t in texts]
    pair = (texts + texts)[:2]
    assert Computation(module, "pick")(pair, True) == pair[0]
    assert Computation(module, "pick")(pair, False) == pair[1]


@settings(max_examples=60, deadline=None)
@given(TEXTS)
def test_literals_keep_every_character_through_text_and_protobuf(texts):
    literal = ir.Literal(texts)
    assert str(literal.type_signature) == f"str[{len(texts)}]" and literal.value.tolist() == texts
    scalar = ir.Literal(texts[0], "str")
    assert scalar.value[()] == texts[0]
    body = ir.Struct([literal, scalar])
    module = ir.Module("m", {"f": ir.Lambda(None, None, body)})
    for again in (ir.parse_module(ir.print_module(module)), ir.deserialize(ir.serialize(module))):
        assert again == module
        got = again["f"].result
        assert got.elements[0][1].value.tolist() == texts and got.elements[1][1].value[()] == texts[0]
    # literals built from the other spellings keep the NULs too, and equal the first
    assert ir.Literal(np.array(texts, dtype=object)) == literal
    assert ir.Literal([t.encode() for t in texts], literal.type_signature) == literal


def test_fed_string_literals_keep_nuls(module):
    m = fed.parse('computation f() -> str[2]@SERVER {\n  return federated_value(["a\\u0000", "\\u0000\\u0000"], SERVER)\n}\n')
    assert Computation(m, "f")().tolist() == ["a\0", "\0\0"]
    text = ir.print_module(m)
    assert '["a\\u0000", "\\u0000\\u0000"]' in text and ir.parse_module(text) == m


def test_invalid_text_is_refused_clearly(module):
    same = Computation(module, "same")
    with pytest.raises(FedcTypeError, match=r"argument 'x' of same, client 1: the bytes b'\\xff' are not UTF-8 text"):
        same([b"ok", b"\xff"])
    with pytest.raises(FedcTypeError, match=r"client 0: the string '\\ud800' is not valid Unicode text"):
        same(["\ud800"])
    with pytest.raises(FedcTypeError, match=r"client 0: 3 \(a Python int\) is not a string"):
        same([3])
    with pytest.raises(FedcTypeError, match="a str tensor is rectangular, but this list is ragged"):
        ir.Literal([["a"], ["b", "c"]], "str[2,1]")
    with pytest.raises(ParseError, match=r"<ir>:3:25: \\ud800 is a surrogate, not a character"):
        ir.parse_module('fedc.module @m {\n  fedc.func @f() -> str {\n    %0 = fedc.constant "\\ud800" : str\n'
                        '    fedc.return %0\n  }\n}\n')


def test_zeros_of_str_are_empty_strings():
    m = fed.parse("computation z() -> <str[2],str>@SERVER {\n  return federated_value(zeros(type=type(<str[2],str>)), SERVER)\n}\n")
    values, scalar = Computation(m, "z")()
    assert values.tolist() == ["", ""] and scalar == ""


def test_tensorflow_strings_keep_nuls_and_non_utf8_results_are_refused():
    tf = pytest.importorskip("tensorflow")

    @fedc.tf_computation(fedc.TensorType(np.str_, [2]))
    def doubled(s):
        return tf.strings.join([s, s])

    assert doubled(["a\0", "\0b"]).tolist() == ["a\0a\0", "\0b\0b"]

    @fedc.tf_computation(fedc.TensorType(np.str_))
    def garbage(s):
        return tf.strings.substr(tf.constant("\u00e9"), 0, 1)  # the first byte of a two-byte character

    with pytest.raises(FedcError, match=r"garbage.* returned the string b'\\xc3', which is not UTF-8 text"):
        garbage("x")


def test_json_arguments_keep_nuls_through_the_cli(tmp_path):
    path = tmp_path / "same.fed"
    path.write_text(SOURCE)
    args = tmp_path / "args.json"
    args.write_text(json.dumps({"x": ["a\0", "\0"]}))
    out = subprocess.run([sys.executable, "-m", "fedc", "run", str(path), "--entry", "same", "--args", str(args)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "[a\0, \0]\n"  # the strings themselves, NULs written out
