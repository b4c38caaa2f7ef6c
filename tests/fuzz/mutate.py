"""Structure-aware mutation of ``.fed`` source and textual IR.

Text is split into tokens (names, numbers, strings, punctuation, comments,
whitespace) with the language's own lexical rules, so a mutation changes one
meaningful piece: it swaps, duplicates or deletes tokens; replaces a name with
another name of the program or a keyword, a type with another type (huge,
negative or absurd shapes among them), a number with a boundary value (huge
integers, 5,000 digits, overflowing floats, wrong suffixes); inserts NULs,
non-UTF-8 bytes and confusable Unicode; wraps a token in deep nesting. Larger
mutations work on lines and declarations: duplicate, delete, swap, splice
from another seed, rename a name everywhere, turn a call into recursion.

Every mutator takes a ``random.Random`` and returns ``(bytes, note)``; the
note lists what was done, for the reproducer.
"""

from __future__ import annotations

import random
import re
from typing import Callable

# --------------------------------------------------------------------------
# Vocabularies

HUGE_INTS = [
    "0", "-0", "1", "-1", "7", "127", "128", "255", "256", "32767", "32768", "65535", "65536",
    "2147483647", "2147483648", "-2147483648", "-2147483649", "4294967295", "4294967296",
    "9223372036854775807", "9223372036854775808", "-9223372036854775809", "18446744073709551615",
    "18446744073709551616", "1" + "0" * 40, "1" + "0" * 400, "9" * 4301, "9" * 5000,
]
FLOATS = [
    "0.0", "-0.0", ".5", "1.", "1e-3", "1e308", "1.8e308", "1e309", "-1e309", "1e-400", "4.9e-324",
    "3.5e38", "1e39", "65504.0", "65520.0", "1e-8", "nan", "inf", "-inf", "0x7fffffff", "1e", "1e+",
    "1" + "0" * 400 + ".0", "0." + "0" * 400 + "1",
]
SUFFIXED = [
    "3i64", "0.5f64", "7u8", "256u8", "-1u8", "300i8", "65536i16", "4294967296u32", "1e5f16", "70000f16",
    "1e39f32", "1e309f64", "18446744073709551616u64", "9223372036854775808i64", "1_i64", "2.5i32",
    "1f8", "1i128", "1u1",
]
DIMS = [
    "[]", "[?]", "[0]", "[1]", "[-1]", "[-2]", "[*]", "[?,?]", "[2147483648]", "[9223372036854775808]",
    "[99999999999999999999]", "[0,99999999999]", "[100000,100000]", "[1000000000,1000000000]",
    "[" + ",".join(["2"] * 64) + "]", "[" + ",".join(["1"] * 1000) + "]", "[" + ",".join(["?"] * 2000) + "]",
    "[3,]", "[,]", "[1.5]", "[1e3]", "[" + "9" * 5000 + "]",
]
DTYPES = [
    "float32", "float64", "float16", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
    "uint64", "bool", "str", "complex64", "complex128", "bfloat16", "float8", "int4", "object",
    "placement", "T", "U", "string", "void", "datetime64",
]
TYPES = [
    "<>", "<<>>", "float32*", "float32**", "{float32}@CLIENTS", "float32@SERVER", "float32@CLIENTS",
    "{float32}@SERVER", "{float32}@NOWHERE", "{{float32}@CLIENTS}@SERVER", "(float32 -> float32)",
    "( -> float32)", "(float32 -> float32)@SERVER", "{(float32 -> float32)}@CLIENTS", "{placement}@CLIENTS",
    "<a=float32,a=int32>", "<a=float32,int32,b=bool>", "<x=float32[?,784],y=int32[?,1]>*",
    "'float32'(shape=None)", "'float32'(shape=[])", "{T}@CLIENTS", "{float32*}@CLIENTS", "<float32*>*",
    "int32[5]@SERVER", "str[2]", "bool[0]", "float32[0,0,0]",
]
HOSTILE_CHARS = [
    "\x00", "\x01", "\x7f", "\x0b", "\x0c", "\r", "\r\n", "\t", "\ufeff", "\u2028", "\u2029", "\u200b",
    "\u200d", "é", "\U0001d7d8", "\u0663", "\uff11", "\u01c5", "\ufb01", "K", "\u0430", "\U0001F600",
    "\"", "\\", "'", "`", "$", "!", "?", "~", "^", "&", "|", ";", "#", "//", "/*", "*/", "{-#", "#-}",
]
#: Raw bytes that make the input invalid UTF-8 (or valid in a surprising way).
HOSTILE_BYTES = [b"\xff", b"\xfe", b"\xc3\x28", b"\xe2\x82", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf",
                 b"\xef\xbb\xbf", b"\x80"]
STRINGS = [
    '""', '"lib.fed"', '"case.fed"', '"missing.fed"', '"/etc/passwd"', '"../../../../etc/passwd"',
    '"~/x.fed"', '"sub/../lib.fed"', '"./lib.fed"', '"lib.fed\\u0000.txt"', '"\\u0000"', '"\\ud800"',
    '"\\uDFFF\\uD800"', '"\\x41"', '"\\q"', '"' + "a" * 5000 + '"', '"m:f"', '"fedavg_tf:nope"', '"nomodule:f"',
    '"a.b.c:d.e"', '"m:"', '":f"', '"sha256:00"', '"\\n"', '"é"', '"lib.FED"', '"lib.fed/"', '"."', '"/"',
]


# --------------------------------------------------------------------------
# Tokens

_FED_TOKEN = re.compile(
    r"""(?P<ws>[ \t\r\n]+)
      | (?P<comment>\#[^\n]*)
      | (?P<string>"(?:[^"\\\n]|\\.)*")
      | (?P<number>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?(?:_?[iuf]\d+)?)
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<punct>->|\*\*|//|==|!=|<=|>=|[{}()\[\]<>,:;=@*+\-/%.?!])
      | (?P<other>.)""",
    re.VERBOSE | re.DOTALL,
)
_IR_TOKEN = re.compile(
    r"""(?P<ws>[ \t\r\n]+)
      | (?P<comment>//[^\n]*)
      | (?P<string>"(?:[^"\\\n]|\\.)*")
      | (?P<local>%[A-Za-z0-9_]+)
      | (?P<symbol>@[A-Za-z_][A-Za-z0-9_]*)
      | (?P<number>[+-]?(?:0x[0-9A-Fa-f]+|[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?))
      | (?P<opname>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+)
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<punct>\{-\#|\#-\}|->|[{}()\[\]<>,:;=@*+\-/%.?!])
      | (?P<other>.)""",
    re.VERBOSE | re.DOTALL,
)

FED_KEYWORDS = ["computation", "local", "type", "extern", "import", "let", "return", "fn", "and", "or", "not",
                "true", "false", "SERVER", "CLIENTS"]
FED_FUNCTIONS = [
    "federated_mean", "federated_sum", "federated_map", "federated_broadcast", "federated_value",
    "federated_zip", "federated_eval", "federated_aggregate", "federated_secure_sum", "federated_select",
    "federated_secure_sum_bitwidth", "federated_max", "federated_min", "federated_apply",
    "sequence_map", "sequence_reduce", "sequence_sum", "add", "cast", "reduce_sum", "clip", "zeros", "ones",
    "where", "reshape", "matmul", "transpose", "concat", "one_hot", "argmax", "sqrt", "exp", "log",
]
IR_OPS = [
    "fed.map", "fed.mean", "fed.sum", "fed.broadcast", "fed.apply", "fed.aggregate", "fed.zip_at_clients",
    "fed.zip_at_server", "fed.value_at_server", "fed.value_at_clients", "fed.eval_at_server", "fed.max",
    "fed.secure_sum_bitwidth", "fed.select", "fed.weighted_mean", "local.add", "local.multiply", "local.cast",
    "local.clip", "local.zeros", "local.reshape", "local.matmul", "local.reduce_sum", "local.divide",
    "local.nope", "fedc.call", "fedc.lambda", "fedc.block", "fedc.ref", "fedc.select", "fedc.struct",
    "fedc.placement", "fedc.data", "fedc.constant", "fedc.compiled", "fedc.return", "fedc.func", "fedc.value",
    "fedc.module", "sequence.map", "sequence.reduce", "sequence.sum",
]
IR_KEYWORDS = ["loc", "call", "dense", "resources", "none", "true", "false", "tensorflow", "extern", "CLIENTS",
               "SERVER", "dtype", "axis", "type", "shape", "keepdims"]


def tokenize(text: str, language: str) -> list[tuple[str, str]]:
    pattern = _FED_TOKEN if language == "fed" else _IR_TOKEN
    return [(m.lastgroup, m.group()) for m in pattern.finditer(text)]


def _meaningful(tokens) -> list[int]:
    return [i for i, (kind, _) in enumerate(tokens) if kind not in ("ws", "comment")]


def _join(tokens) -> str:
    return "".join(text for _, text in tokens)


def _type_text(rng: random.Random) -> str:
    choice = rng.random()
    if choice < 0.35:
        return rng.choice(DTYPES) + rng.choice(DIMS + ["", "", ""])
    if choice < 0.7:
        return rng.choice(TYPES)
    inner = rng.choice(DTYPES) + rng.choice(DIMS + [""])
    return rng.choice(["<{}>", "{{{}}}@CLIENTS", "{}@SERVER", "{}*", "(-> {})", "({} -> {})", "<a={},b={}>"]).format(inner, inner)


def _number_text(rng: random.Random) -> str:
    return rng.choice(rng.choice([HUGE_INTS, FLOATS, SUFFIXED]))


def _nest(rng: random.Random, text: str, language: str) -> str:
    depth = rng.choice([2, 10, 100, 999, 1001, 3000])
    if language == "fed":
        opener, closer = rng.choice([("(", ")"), ("<", ">"), ("[", "]"), ("-", ""), ("not ", ""), ("fn() -> ", "")])
    else:
        opener, closer = rng.choice([("<", ">"), ("(", ")"), ("{", "}"), ("[", "]")])
    return opener * depth + text + closer * depth


# --------------------------------------------------------------------------
# Token mutations


def _names(tokens) -> list[str]:
    return sorted({t for k, t in tokens if k in ("name", "local", "symbol", "opname")})


def token_mutation(rng: random.Random, tokens: list, language: str, vocabulary: list[str]) -> str:
    """One token-level change of ``tokens`` (in place); returns its description."""
    positions = _meaningful(tokens)
    if not positions:
        tokens.append(("other", rng.choice(vocabulary)))
        return "appended a token to empty input"
    i = rng.choice(positions)
    kind, text = tokens[i]
    what = rng.random()
    if what < 0.1:
        del tokens[i]
        return f"deleted token {text!r}"
    if what < 0.18:
        tokens.insert(i, (kind, text))
        return f"duplicated token {text!r}"
    if what < 0.26:
        j = rng.choice(positions)
        tokens[i], tokens[j] = tokens[j], tokens[i]
        return f"swapped tokens {text!r} and {tokens[i][1]!r}"
    if what < 0.36:
        new = rng.choice(vocabulary)
        tokens.insert(i, ("other", new + " "))
        return f"inserted {new!r} before {text!r}"
    if kind == "number" or what < 0.46:
        if kind == "number" or rng.random() < 0.5:
            new = _number_text(rng)
            tokens[i] = ("number", new)
            return f"replaced {text!r} with number {new[:40]!r}"
    if kind in ("name", "opname") and text in DTYPES and rng.random() < 0.8:
        new = _type_text(rng)
        tokens[i] = ("other", new)
        return f"replaced type {text!r} with {new[:60]!r}"
    if kind == "string" or what < 0.5:
        new = rng.choice(STRINGS)
        tokens[i] = ("string", new)
        return f"replaced {text!r} with string {new[:40]!r}"
    if what < 0.62:
        names = _names(tokens)
        pool = names + (FED_KEYWORDS + FED_FUNCTIONS if language == "fed" else IR_OPS + IR_KEYWORDS)
        new = rng.choice(pool)
        tokens[i] = ("name", new)
        return f"replaced {text!r} with name {new!r}"
    if what < 0.7:
        new = rng.choice(HOSTILE_CHARS)
        tokens.insert(i + rng.randint(0, 1), ("other", new))
        return f"inserted {new!r} near {text!r}"
    if what < 0.76:
        new = _type_text(rng)
        tokens[i] = ("other", new)
        return f"replaced {text!r} with type {new[:60]!r}"
    if what < 0.8:
        nested = _nest(rng, text, language)
        tokens[i] = ("other", nested)
        return f"nested {text!r} {len(nested) // 2} levels"
    if what < 0.9 and kind == "local" and language == "ir":
        new = rng.choice([t for k, t in tokens if k == "local"])
        tokens[i] = ("local", new)
        return f"replaced value {text!r} with {new!r}"
    # A span of tokens copied elsewhere.
    j = rng.choice(positions)
    span = tokens[j:j + rng.randint(1, 12)]
    k = rng.choice(positions)
    tokens[k:k] = span
    return f"copied {_join(span)[:60]!r} to token {k}"


# --------------------------------------------------------------------------
# Line and declaration mutations


def _declarations(text: str, language: str) -> list[str]:
    """Top-level pieces: .fed declarations, or IR entries (split before each top-level keyword)."""
    if language == "fed":
        starts = [m.start() for m in re.finditer(r"(?m)^(?:computation|local|type|extern|import)\b", text)]
    else:
        starts = [m.start() for m in re.finditer(r"(?m)^  fedc\.(?:func|value)\b", text)]
    if not starts:
        return [text]
    pieces = [text[:starts[0]]] + [text[a:b] for a, b in zip(starts, starts[1:] + [len(text)])]
    return pieces


def structure_mutation(rng: random.Random, text: str, language: str, other: str) -> tuple[str, str]:
    what = rng.random()
    if what < 0.45:
        lines = text.split("\n")
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        kind = rng.choice(["delete", "duplicate", "swap", "splice"])
        if kind == "delete":
            del lines[i]
        elif kind == "duplicate":
            lines.insert(j, lines[i])
        elif kind == "swap":
            lines[i], lines[j] = lines[j], lines[i]
        else:
            other_lines = other.split("\n")
            lines.insert(j, rng.choice(other_lines))
        return "\n".join(lines), f"{kind} line {i} (at {j})"
    if what < 0.75:
        pieces = _declarations(text, language)
        if len(pieces) < 2:
            return text, "no declarations to move"
        head, decls = pieces[0], pieces[1:]
        kind = rng.choice(["delete", "duplicate", "swap", "splice", "reverse"])
        i, j = rng.randrange(len(decls)), rng.randrange(len(decls))
        if kind == "delete":
            del decls[i]
        elif kind == "duplicate":
            decls.insert(j, decls[i])
        elif kind == "swap":
            decls[i], decls[j] = decls[j], decls[i]
        elif kind == "splice":
            others = _declarations(other, language)[1:]
            if others:
                decls.insert(j, rng.choice(others))
        else:
            decls.reverse()
        body = "".join(decls)
        if language == "ir" and kind in ("delete", "swap", "reverse") and not body.rstrip().endswith("}"):
            body += "}\n"
        return head + body, f"{kind} declaration {i} (at {j})"
    tokens = tokenize(text, language)
    names = [t for k, t in tokens if k in ("name", "symbol", "local")]
    if not names:
        return text, "no names"
    old = rng.choice(names)
    kind = rng.choice(["rename", "recursive"])
    if kind == "rename":
        prefix = old[0] if old[0] in "%@" else ""
        new = prefix + rng.choice(["x", "CLIENTS", "float32", "fn", "let", "_", "a" * 300, "x1", "T", "return",
                                   "federated_mean", "arg", "0", "é"])
        return _join((k, new if t == old else t) for k, t in tokens), f"renamed {old!r} to {new!r} everywhere"
    # Make a function call itself: replace one use of a callee by the name of the enclosing definition.
    definers = re.findall(r"(?:computation|local)\s+([A-Za-z_]\w*)" if language == "fed" else r"fedc\.func\s+(@\w+)", text)
    if not definers:
        return text, "no definitions"
    target = rng.choice(definers)
    return text.replace(old, target, 1), f"replaced first {old!r} with {target!r} (recursion)"


def _encode(rng: random.Random, text: str) -> tuple[bytes, str]:
    data = text.encode("utf-8", "surrogatepass")
    if rng.random() < 0.08:
        position = rng.randrange(len(data) + 1)
        bad = rng.choice(HOSTILE_BYTES)
        return data[:position] + bad + data[position:], f"; inserted bytes {bad!r} at {position}"
    if rng.random() < 0.03:
        cut = rng.randrange(len(data) + 1)
        return data[:cut], f"; cut at byte {cut}"
    return data, ""


def mutate_text(rng: random.Random, text: str, language: str, others: list[str]) -> tuple[bytes, str]:
    """1–4 mutations of ``text`` (``language`` ``fed`` or ``ir``): (bytes, what was done)."""
    notes = []
    vocabulary = (FED_KEYWORDS + FED_FUNCTIONS if language == "fed" else IR_OPS + IR_KEYWORDS) + DTYPES + [
        "{", "}", "(", ")", "<", ">", "[", "]", ",", ":", "=", "->", "@", "*", "?"]
    for _ in range(rng.choice([1, 1, 2, 2, 3, 4])):
        if rng.random() < 0.25:
            text, note = structure_mutation(rng, text, language, rng.choice(others))
        else:
            tokens = tokenize(text, language)
            note = token_mutation(rng, tokens, language, vocabulary)
            text = _join(tokens)
        notes.append(note)
    data, tail = _encode(rng, text)
    return data, "; ".join(notes) + tail
