"""Argument files for ``fedc run --args``: JSON and ``.npz``, valid ones first, then mutated.

A program is picked (a seed, or one of :data:`PROGRAMS`, which take many
kinds of parameters), a valid argument of its parameter type is generated,
and then broken:

- JSON, structure-aware: a leaf replaced by a huge or negative integer,
  ``NaN``/``Infinity``, ``1e999``, a string, ``null``, a list or an object;
  a list made ragged, emptied, grown to a million elements, nested deeper;
  keys dropped, added, duplicated; the text encoded as UTF-16, with a BOM,
  with invalid UTF-8, with trailing garbage, 5,000-digit numbers.
- ``.npz``: arrays of other dtypes (complex, float16, big-endian, Fortran
  order, unicode vs bytes, datetime, structured, object arrays, which need
  pickle), huge claimed shapes in the ``.npy`` header, negative or
  overflowing shapes, truncated data, keys that conflict (``a`` and
  ``a/0``), skip positions, use Unicode digits, or nest deeply; and zips that
  are truncated, not zips, hold other members, are encrypted, use an unknown
  compression method, or are small bombs.
"""

from __future__ import annotations

import functools
import io
import json
import random
import struct
import zipfile

import numpy as np

PROGRAMS = {
    "scalars.fed": """\
computation f(a: float32@SERVER, b: int64@SERVER, c: bool@SERVER, d: float64@SERVER) -> float32@SERVER {
  return a
}
""",
    "clients.fed": """\
computation f(x: {float32[3]}@CLIENTS, w: {float32}@CLIENTS) -> float32[3]@SERVER {
  return federated_mean(x, weight=w)
}
""",
    "unknown.fed": """\
computation f(x: {float32[?,2]}@CLIENTS) -> {float32[?,2]}@CLIENTS {
  return federated_map(fn(v) -> v * 2.0, x)
}
""",
    "structs.fed": """\
computation f(s: <a=int32[2],b=<float32,str>>@SERVER) -> <a=int32[2],b=<float32,str>>@SERVER {
  return s
}
""",
    "sequences.fed": """\
computation f(d: {<x=float32[2],y=int32>*}@CLIENTS) -> {int32}@CLIENTS {
  return federated_map(fn(ds) -> sequence_reduce(sequence_map(fn(e) -> e.y, ds), 0, fn(a, b) -> a + b), d)
}
""",
    "ints.fed": """\
computation f(x: {uint8[4]}@CLIENTS, y: {int8}@CLIENTS) -> <uint8[4]@SERVER, int8@SERVER> {
  return <federated_max(x), federated_min(y)>
}
""",
    "rounds.fed": """\
computation initialize() -> float32@SERVER {
  return federated_value(0.0, SERVER)
}
computation next(state: float32@SERVER, data: {float32}@CLIENTS) -> <state=float32@SERVER, mean=float32@SERVER> {
  let m = federated_mean(data)
  return <state=federated_map(fn(s) -> s + 1.0, state), mean=m>
}
""",
    "none.fed": """\
computation f() -> int32@SERVER {
  return federated_value(3, SERVER)
}
""",
    "complex.fed": """\
computation f(z: complex64[2]@SERVER, s: str[2]@SERVER) -> complex64[2]@SERVER {
  return z
}
""",
}

LEAF_REPLACEMENTS = [
    0, -1, 1.5, 2**31, 2**63, 2**64, -2**63 - 1, 10**30, 10**400, "NaN", "Infinity", "-Infinity", "1e999",
    "x", "", None, True, [], {}, [1.0, 2.0], {"a": 1}, "\u0000", "\ud800", 1e308, -0.0, 5e-324,
]


def parameter_type(program: str):
    from fedc.frontend import fed

    module = fed.parse(program, "prog.fed")
    node = module[module.symbols[-1]]
    return module, node


def json_value(t, rng: random.Random, budget: list, clients: int = 3):
    """A JSON-able Python value of type ``t`` (lists of ``clients`` values per client)."""
    from fedc.types import FederatedType, SequenceType, StructType, TensorType

    if isinstance(t, TensorType):
        shape = [rng.randint(1, 3) if d is None else d for d in (t.shape or ())] if t.shape is not None else [2]
        budget[0] -= int(np.prod(shape)) if shape else 1

        def leaf():
            kind = t.dtype.kind
            if kind == "b":
                return rng.random() < 0.5
            if kind in "iu":
                return rng.randint(0, 5)
            if kind == "U":
                return rng.choice(["a", "b", "é"])
            if kind == "c":
                return rng.random()
            return round(rng.uniform(0.1, 3), 3)  # positive: a float may be a weight

        def fill(dims):
            return leaf() if not dims else [fill(dims[1:]) for _ in range(dims[0])]

        return fill(shape)
    if isinstance(t, StructType):
        items = list(t.items())
        if items and all(n for n, _ in items):
            return {n: json_value(e, rng, budget, clients) for n, e in items}
        return [json_value(e, rng, budget, clients) for _, e in items]
    if isinstance(t, SequenceType):
        return [json_value(t.element, rng, budget, clients) for _ in range(rng.randint(0, 3))]
    if isinstance(t, FederatedType):
        if t.all_equal:
            return json_value(t.member, rng, budget, clients)
        return [json_value(t.member, rng, budget, clients) for _ in range(clients)]
    return None


def valid_json_args(lam, rng: random.Random):
    """A valid argument file's content for computation ``lam`` (an object keyed by the parameter names)."""
    from fedc.types import StructType

    parameter = lam.type_signature.parameter
    if parameter is None:
        return {}
    clients = rng.randint(1, 4)  # the same number of clients in every argument
    if isinstance(parameter, StructType) and parameter.is_named() and lam.parameter_name == "arg":
        return {n: json_value(t, rng, [10_000], clients) for n, t in parameter.items()}
    return {lam.parameter_name: json_value(parameter, rng, [10_000], clients)}


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, prefix + (i,))
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))


def _get(value, path):
    for p in path:
        value = value[p]
    return value


def _set(root, path, new):
    if not path:
        return new
    _get(root, path[:-1])[path[-1]] = new
    return root


def mutate_json(rng: random.Random, value) -> tuple[object, str]:
    paths = list(_paths(value))
    path = rng.choice(paths)
    current = _get(value, path) if path else value
    what = rng.random()
    if what < 0.4:
        new = rng.choice(LEAF_REPLACEMENTS)
        note = f"{list(path)} = {str(new)[:30]}"
    elif what < 0.55 and isinstance(current, list):
        choice = rng.randrange(5)
        if choice == 0:
            new = current[:-1] if current else [1.0]
            note = f"{list(path)} lost an element"
        elif choice == 1:
            new = current + [current[0] if current else 0.0] * rng.choice([1, 1000, 1_000_000])
            note = f"{list(path)} grown to {len(new)}"
        elif choice == 2:
            new = [current]
            note = f"{list(path)} nested one more level"
        elif choice == 3:
            new = [e if i else [e, e] for i, e in enumerate(current)] or [[1.0], 2.0]
            note = f"{list(path)} made ragged"
        else:
            new = []
            note = f"{list(path)} emptied"
    elif what < 0.7 and isinstance(current, dict):
        new = dict(current)
        if new and rng.random() < 0.5:
            del new[rng.choice(list(new))]
            note = f"{list(path)} lost a key"
        else:
            new[rng.choice(["zz", "x", "arg", "", "0", "__proto__"])] = 1.0
            note = f"{list(path)} gained a key"
    elif what < 0.85:
        new = [[current]] * 2 if rng.random() < 0.5 else {"x": current}
        note = f"{list(path)} wrapped"
    else:
        new = rng.choice([float(current) if isinstance(current, int) and not isinstance(current, bool) else "s",
                          int(current) if isinstance(current, float) and np.isfinite(current) else 7])
        note = f"{list(path)} changed type"
    return _set(value, path, new), note


def encode_json(rng: random.Random, value) -> tuple[bytes, str]:
    text = json.dumps(value, allow_nan=True)
    what = rng.random()
    if what < 0.7:
        return text.encode("utf-8", "surrogatepass"), ""
    choice = rng.randrange(8)
    if choice == 0:
        return text.encode("utf-16"), "; encoded UTF-16"
    if choice == 1:
        return b"\xef\xbb\xbf" + text.encode(), "; with a BOM"
    if choice == 2:
        p = rng.randrange(len(text) + 1)
        return text[:p].encode() + b"\xff\xfe" + text[p:].encode(), "; invalid UTF-8 inserted"
    if choice == 3:
        return text.encode() + b" trailing", "; trailing garbage"
    if choice == 4:
        return text.replace("1", "9" * 5000, 1).encode(), "; a 5000-digit number"
    if choice == 5:
        return text[: rng.randrange(len(text) + 1)].encode(), "; cut"
    if choice == 6 and text.startswith("{") and len(text) > 2:
        return (text[:-1] + ', "' + text[2:text.index('"', 2)] + '": 1}').encode(), "; a duplicate key"
    return ("[" * 5000 + text + "]" * 5000).encode(), "; wrapped in 5000 lists"


# --------------------------------------------------------------------------
# .npz


def flatten_paths(value, prefix="") -> dict:
    """JSON value -> {"a/0/x": array}: the inverse of fedc.cli.unflatten_paths."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            out.update(flatten_paths(v, f"{prefix}/{k}" if prefix else str(k)))
        return out
    if isinstance(value, list) and value and all(isinstance(v, (list, dict)) for v in value) and any(
            isinstance(v, dict) for v in value):
        out = {}
        for i, v in enumerate(value):
            out.update(flatten_paths(v, f"{prefix}/{i}"))
        return out
    try:
        array = np.asarray(value)
    except ValueError:  # ragged
        array = np.asarray(json.dumps(value))
    if array.dtype == object:
        array = np.asarray(json.dumps(value, default=str))
    return {prefix: array}


def npy_bytes(array: np.ndarray, header: dict = None, data: bytes = None, allow_pickle: bool = False) -> bytes:
    """The ``.npy`` encoding of ``array``, or of a hand-written header and data."""
    if header is None:
        buffer = io.BytesIO()
        np.lib.format.write_array(buffer, array, allow_pickle=allow_pickle)
        return buffer.getvalue()
    text = repr(header).encode("latin1")
    text += b" " * ((64 - (len(text) + 11) % 64) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + (data or b"")


def zip_bytes(members: dict, compression=zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buffer.getvalue()


@functools.lru_cache(maxsize=4)
def _bomb(key: str) -> bytes:
    zeros = npy_bytes(None, {"descr": "<f4", "fortran_order": False, "shape": (25_000_000,)}, bytes(100_000_000))
    return zip_bytes({key + ".npy": zeros}, zipfile.ZIP_DEFLATED)


def mutate_npz(rng: random.Random, arrays: dict) -> tuple[bytes, str]:
    members = {k + ".npy": npy_bytes(v) for k, v in arrays.items()}
    keys = list(arrays) or ["x"]
    key = rng.choice(keys)
    members.setdefault(key + ".npy", npy_bytes(np.float32(0.0)))  # an argument with no arrays gets one to mutate
    what = rng.randrange(14)
    note = ""
    if what == 0:
        dtype = rng.choice(["complex128", "float16", ">f4", ">i8", "S3", "U5", "datetime64[s]", "timedelta64[ns]",
                            "V4", [("a", "<f4"), ("b", "<i4")], "uint64", "bool", "int8"])
        try:
            members[key + ".npy"] = npy_bytes(np.zeros(np.asarray(arrays.get(key, 0)).shape, dtype=dtype))
        except (TypeError, ValueError):
            members[key + ".npy"] = npy_bytes(np.zeros(2, dtype=dtype))
        note = f"{key} as dtype {dtype}"
    elif what == 1:
        members[key + ".npy"] = npy_bytes(np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
        note = f"{key} an object array (pickle)"
    elif what == 2:
        shape = rng.choice([(2**40,), (2**31, 2**31), (10**6, 10**6), (2**62,), (2**63 - 1,), (3, 2**61)])
        members[key + ".npy"] = npy_bytes(None, {"descr": "<f4", "fortran_order": False, "shape": shape}, b"\0" * 16)
        note = f"{key} claims shape {shape}"
    elif what == 3:
        shape = rng.choice([(-1,), (-2**63,), (2**64,), (1.5,), ("a",), (2, -3)])
        members[key + ".npy"] = npy_bytes(None, {"descr": "<f4", "fortran_order": False, "shape": shape}, b"\0" * 16)
        note = f"{key} header shape {shape}"
    elif what == 4:
        members[key + ".npy"] = npy_bytes(None, rng.choice([
            {"descr": "O", "fortran_order": False, "shape": (1,)}, {"descr": "<f4"}, {"descr": "|u1", "fortran_order": True, "shape": (2, 2)},
            {"descr": "<f4", "fortran_order": False, "shape": (2,), "extra": 1}, {"descr": "<q16", "fortran_order": False, "shape": (1,)}]),
            b"\x80\x04K\x01." + b"\0" * 8)
        note = f"{key} odd header"
    elif what == 5:
        data = members[key + ".npy"]
        members[key + ".npy"] = data[: rng.randrange(len(data))]
        note = f"{key} truncated"
    elif what == 6:
        new = rng.choice([key + "/0", key + "/x", key.split("/")[0], "", "/", "//", "a//b", key + "/", "/" + key])
        members[new + ".npy"] = npy_bytes(np.float32(1.0))
        note = f"key {new!r} added"
    elif what == 7:
        base = key.rsplit("/", 1)[0] if "/" in key else "x"
        for part in rng.choice([["0", "2"], ["1"], ["00", "1"], ["\u0661", "0"], ["-1", "0"], ["0", "1e0"], ["\uff10"]]):
            members[f"{base}/{part}.npy"] = npy_bytes(np.float32(1.0))
        note = f"odd positions under {base}"
    elif what == 8:
        count = rng.choice([1000, 50_000])
        for i in range(count):
            members[f"many/{i}.npy"] = npy_bytes(np.float32(i))
        note = f"{count} members"
    elif what == 9:
        members["notes.txt"] = b"hello"
        members["sub/dir/"] = b""
        members["../escape.npy"] = npy_bytes(np.float32(1))
        note = "members that are not arrays, a folder, a ../ name"
    elif what == 10:
        data = zip_bytes(members)
        choice = rng.randrange(4)
        if choice == 0:
            return data[: rng.randrange(len(data))], "zip truncated"
        if choice == 1:
            return b"PK\x03\x04" + bytes(rng.randrange(256) for _ in range(40)), "not a zip"
        if choice == 2:
            out = bytearray(data)
            # Set the general-purpose flag "encrypted" in every header.
            for i in range(len(out) - 4):
                if out[i:i + 4] in (b"PK\x03\x04",):
                    out[i + 6] |= 1
                if out[i:i + 4] == b"PK\x01\x02":
                    out[i + 8] |= 1
            return bytes(out), "members marked encrypted"
        out = bytearray(data)
        for i in range(len(out) - 4):
            if out[i:i + 4] == b"PK\x03\x04":
                out[i + 8:i + 10] = struct.pack("<H", 99)
            if out[i:i + 4] == b"PK\x01\x02":
                out[i + 10:i + 12] = struct.pack("<H", 99)
        return bytes(out), "unknown compression method"
    elif what == 11:
        return _bomb(key), "a bomb: 100 MB of zeros deflated"
    elif what == 12:
        return b"", "empty file"
    else:
        members[key + ".npy"] = npy_bytes(np.asfortranarray(np.zeros((3, 2), dtype=np.float32)))
        note = f"{key} a Fortran-order 3x2"
    return zip_bytes(members, rng.choice([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])), note
