"""Field-aware mutation of serialized modules (``fedc/ir/computation.proto``).

A seed's bytes are decoded into the ``Module`` message with fedc's own
generated class, and one to four mutations are applied to its fields:

- **indices**: any index field (a child type, a child node, a computation's
  root, a location's file) set to itself (a cycle of one), to a later entry
  (a cycle or forward reference), to one past the end, to 2**32-1 or to a
  random entry; two entries pointing at each other;
- **types**: a dtype name replaced (unknown, empty, NUL, another dtype), a
  tensor given negative, huge or many dimensions, unknown rank and dims at
  once, a placement enum out of range, ``all_equal`` flipped, a function
  result pointing at a function;
- **sizes**: a literal claiming a huge shape for little data (and the
  reverse), strings where bytes are expected, tables grown by thousands of
  copies, a struct of 100,000 elements, names of 100,000 characters;
- **strings**: identifiers with NUL, spaces, non-identifiers, keywords,
  duplicate computation names, unknown intrinsic URIs and compiled kinds;
- **table structure**: entries swapped (breaking the children-first order),
  deleted (shifting every index after), duplicated, the version changed;
- **bytes**: after encoding, truncation, bit flips, inserted or appended
  garbage, a field of the wrong wire type.

Returns ``(bytes, note)``.
"""

from __future__ import annotations

import random
import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"Protobuf gencode version", category=UserWarning)
    from fedc.ir import computation_pb2 as pb

U32 = 2**32 - 1
I64 = 2**63 - 1

# (message field holding a oneof entry, [(path of fields to an index, table it indexes)])
TYPE_INDEX_FIELDS = {
    "struct": [("elements", "type")],
    "sequence": [("element",)],
    "function": [("parameter",), ("result",)],
    "federated": [("member",)],
}
NODE_INDEX_FIELDS = {
    "reference": [("type", "types")],
    "symbol_ref": [("type", "types")],
    "selection": [("source", "nodes"), ("index", "selector")],
    "struct": [("elements", "value", "nodes")],
    "call": [("function", "nodes"), ("argument", "nodes")],
    "lambda_expr": [("parameter_type", "types"), ("result", "nodes")],
    "block": [("locals", "value", "nodes"), ("result", "nodes")],
    "intrinsic": [("type", "types")],
    "data": [("type", "types")],
    "compiled": [("type", "types")],
}
WEIRD_NAMES = ["", "\x00", "a\x00b", "a b", "0x", "9", "return", "fedc", "%x", "@x", "é", "x" * 100_000, "\ud7ff",
               "CLIENTS", "arg", "_", "a.b", "a/b", "\n"]
WEIRD_DTYPES = ["", "float32", "float128", "object", "O", "V8", "<f4", "S10", "U", "str", "bool", "complex256",
                "datetime64", "int4", "float8_e4m3", "\x00", "float32\x00", "Float32", "void", "bfloat16"]
WEIRD_URIS = ["federated_mean", "federated_map", "federated_secure_sum_bitwidth", "add", "nope", "", "\x00",
              "federated_aggregate", "sequence_reduce", "local.add", "fed.mean", "cast", "reshape", "zeros",
              "__import__", "os.system"]
WEIRD_INTS = [0, 1, -1, 2, 7, 255, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**53 + 1, I64, -I64 - 1]


def _set_index(rng: random.Random, message, field: str, current: int, size: int) -> str:
    choice = rng.random()
    if choice < 0.25:
        value = current  # itself: a cycle of one
    elif choice < 0.45:
        value = rng.randint(current, max(current, size - 1)) if size else 0  # a later entry
    elif choice < 0.6:
        value = size
    elif choice < 0.7:
        value = U32
    else:
        value = rng.randrange(max(size, 1))
    setattr(message, field, value)
    return f"{field}={value} (entry {current} of {size})"


def _random_entry(rng, table):
    if not len(table):
        return None, None
    i = rng.randrange(len(table))
    return i, table[i]


def _single_index(entry, kinds):
    """(message, field) of an entry's first plain (non-repeated) index field, or None."""
    kind = entry.WhichOneof("kind")
    for path in kinds.get(kind, ()):
        if (len(path) == 2 and path[-1] == "nodes") or (kinds is TYPE_INDEX_FIELDS and len(path) == 1):
            return getattr(entry, kind), path[0]
    return None


def mutate_cycle(rng: random.Random, module) -> str:
    """Two entries of a table that name each other as a child."""
    table, kinds = rng.choice([("nodes", NODE_INDEX_FIELDS), ("types", TYPE_INDEX_FIELDS)])
    entries = getattr(module, table)
    candidates = [(i, f) for i, e in enumerate(entries) for f in [_single_index(e, kinds)] if f]
    if len(candidates) < 2:
        return f"no two {table} to link"
    (i, (mi, fi)), (j, (mj, fj)) = rng.sample(candidates, 2)
    setattr(mi, fi, j)
    setattr(mj, fj, i)
    return f"{table} {i} and {j} made each other's child ({fi}, {fj})"


def mutate_index(rng: random.Random, module) -> str:
    if rng.random() < 0.15:
        return mutate_cycle(rng, module)
    tables = ["types", "nodes", "computations", "locations"]
    table = rng.choice(tables)
    if table == "computations":
        if not module.computations:
            return "no computations"
        c = rng.choice(module.computations)
        return "computation root " + _set_index(rng, c, "node", len(module.nodes) - 1, len(module.nodes))
    if table == "locations":
        located = [n for n in module.nodes if n.HasField("location")]
        if not located:
            return "no locations"
        n = rng.choice(located)
        return "location " + _set_index(rng, n.location, "file", 0, len(module.files))
    if table == "types":
        i, t = _random_entry(rng, module.types)
        if t is None:
            return "no types"
        kind = t.WhichOneof("kind")
        if kind not in TYPE_INDEX_FIELDS:
            return f"type {i} ({kind}) has no index"
        body = getattr(t, kind)
        if kind == "struct":
            if not body.elements:
                body.elements.add(name="", type=i)
                return f"type {i}: struct made to contain itself"
            return f"type {i} struct element " + _set_index(rng, rng.choice(body.elements), "type", i, len(module.types))
        field = rng.choice(TYPE_INDEX_FIELDS[kind])[0]
        return f"type {i} {kind} " + _set_index(rng, body, field, i, len(module.types))
    i, n = _random_entry(rng, module.nodes)
    if n is None:
        return "no nodes"
    kind = n.WhichOneof("kind")
    if kind not in NODE_INDEX_FIELDS:
        return f"node {i} ({kind}) has no index"
    body = getattr(n, kind)
    path = rng.choice(NODE_INDEX_FIELDS[kind])
    size = len(module.types) if path[-1] == "types" else len(module.nodes)
    if len(path) == 3:
        repeated = getattr(body, path[0])
        if not repeated:
            return f"node {i} {kind} has no {path[0]}"
        return f"node {i} {kind}.{path[0]} " + _set_index(rng, rng.choice(repeated), path[1], i, size)
    if path[-1] == "selector":
        value = rng.choice([0, 1, 2, 7, 255, 2**31 - 1, 2**31, U32])
        body.index = value
        return f"node {i} selection index={value}"
    return f"node {i} {kind} " + _set_index(rng, body, path[0], i, size)


def mutate_type(rng: random.Random, module) -> str:
    tensors = [(i, t) for i, t in enumerate(module.types) if t.WhichOneof("kind") == "tensor"]
    what = rng.random()
    if tensors and what < 0.55:
        i, t = rng.choice(tensors)
        tensor = t.tensor
        choice = rng.randrange(6)
        if choice == 0:
            tensor.dtype = rng.choice(WEIRD_DTYPES)
            return f"type {i} dtype={tensor.dtype!r}"
        if choice == 1:
            del tensor.dims[:]
            dims = rng.choice([[-2], [-1, -1], [2**62], [I64], [2**31, 2**31], [-I64 - 1], [0, 2**40], [10**6] * 4])
            tensor.dims.extend(dims)
            return f"type {i} dims={dims}"
        if choice == 2:
            count = rng.choice([64, 1000, 100_000])
            tensor.dims.extend([1] * count)
            return f"type {i} rank +{count}"
        if choice == 3:
            tensor.unknown_rank = True
            tensor.dims.append(3)
            return f"type {i} unknown rank with dims"
        if choice == 4:
            tensor.dtype = "str"
            return f"type {i} made str"
        tensor.unknown_rank = not tensor.unknown_rank
        return f"type {i} unknown_rank={tensor.unknown_rank}"
    federated = [(i, t) for i, t in enumerate(module.types) if t.WhichOneof("kind") == "federated"]
    if federated and what < 0.75:
        i, t = rng.choice(federated)
        if rng.random() < 0.5:
            value = rng.choice([0, 3, 7, 2**31 - 1, -1])
            t.federated.placement = value
            return f"type {i} placement enum={value}"
        t.federated.all_equal = not t.federated.all_equal
        return f"type {i} all_equal flipped"
    # Retype an entry wholesale: a new kind with children pointing anywhere.
    if not module.types:
        return "no types"
    i = rng.randrange(len(module.types))
    t = module.types[i]
    kind = rng.choice(["tensor", "struct", "sequence", "function", "federated", "placement", "abstract"])
    size = len(module.types)
    t.Clear()
    if kind == "tensor":
        t.tensor.dtype = rng.choice(WEIRD_DTYPES)
    elif kind == "struct":
        for _ in range(rng.choice([0, 1, 3])):
            t.struct.elements.add(name=rng.choice(["", "a", "a", "\x00"]), type=rng.randrange(size))
    elif kind == "sequence":
        t.sequence.element = rng.randrange(size)
    elif kind == "function":
        if rng.random() < 0.7:
            t.function.parameter = rng.randrange(size)
        t.function.result = rng.randrange(size)
    elif kind == "federated":
        t.federated.member = rng.randrange(size)
        t.federated.placement = rng.choice([0, 1, 2])
    elif kind == "placement":
        t.placement.SetInParent()
    else:
        t.abstract.label = rng.choice(["T", "", "t", "\x00", "T" * 1000])
    return f"type {i} replaced by a {kind}"


def mutate_size(rng: random.Random, module) -> str:
    literals = [(i, n) for i, n in enumerate(module.nodes) if n.WhichOneof("kind") == "literal"]
    what = rng.random()
    if literals and what < 0.4:
        i, n = rng.choice(literals)
        lit = n.literal
        choice = rng.randrange(5)
        if choice == 0:
            del lit.shape[:]
            shape = rng.choice([[2**32, 2**32], [2**63], [0, 2**63], [10**9], [3, 0], [2**64 - 1], [1] * 1000])
            lit.shape.extend(shape)
            return f"literal {i} shape={shape[:5]}{'...' if len(shape) > 5 else ''}"
        if choice == 1:
            lit.data = lit.data[: rng.randrange(len(lit.data) + 1)] if lit.data else b"\x01" * 3
            return f"literal {i} data cut to {len(lit.data)} bytes"
        if choice == 2:
            lit.data += bytes(rng.choice([1, 7, 4096]))
            return f"literal {i} data grown"
        if choice == 3:
            lit.strings.extend(["s"] * rng.choice([1, 1000]))
            return f"literal {i} strings added"
        lit.dtype = rng.choice(WEIRD_DTYPES)
        return f"literal {i} dtype={lit.dtype!r}"
    if what < 0.6 and module.nodes:
        count = rng.choice([1000, 100_000])
        node = module.nodes.add()
        for _ in range(count):
            node.struct.elements.add(value=rng.randrange(len(module.nodes) - 1) if len(module.nodes) > 1 else 0)
        c = module.computations.add(name=f"wide{count}", node=len(module.nodes) - 1)
        return f"a struct node of {count} elements as computation @{c.name}"
    if what < 0.8 and module.types:
        count = rng.choice([1000, 100_000])
        t = module.types.add()
        for _ in range(count):
            t.struct.elements.add(type=rng.randrange(len(module.types) - 1) if len(module.types) > 1 else 0)
        return f"a struct type of {count} elements"
    # Many copies of one entry: the same child used many times (sharing).
    if not module.nodes:
        return "no nodes"
    i = rng.randrange(len(module.nodes))
    for _ in range(rng.choice([10, 1000])):
        module.nodes.add().CopyFrom(module.nodes[i])
    return f"node {i} copied to the end of the table"


def _string_fields(module):
    fields = [(module, "name")]
    fields += [(c, "name") for c in module.computations]
    for n in module.nodes:
        kind = n.WhichOneof("kind")
        body = getattr(n, kind) if kind else None
        if kind in ("reference", "symbol_ref"):
            fields.append((body, "name"))
        elif kind == "lambda_expr":
            fields.append((body, "parameter_name"))
        elif kind == "block":
            fields += [(l, "name") for l in body.locals]
        elif kind == "struct":
            fields += [(e, "name") for e in body.elements]
        elif kind == "selection" and body.WhichOneof("selector") == "name":
            fields.append((body, "name"))
        elif kind == "intrinsic":
            fields.append((body, "uri"))
            fields += [(a, "name") for a in body.attrs]
        elif kind == "compiled":
            fields += [(body, "kind"), (body, "name")]
        elif kind == "data":
            fields.append((body, "uri"))
    for t in module.types:
        if t.WhichOneof("kind") == "struct":
            fields += [(e, "name") for e in t.struct.elements]
    return fields


def mutate_string(rng: random.Random, module) -> str:
    fields = _string_fields(module)
    if rng.random() < 0.15 and len(module.computations) >= 1:
        module.computations.add(name=module.computations[0].name, node=module.computations[0].node)
        return f"computation @{module.computations[0].name} listed twice"
    message, field = rng.choice(fields)
    if field == "uri" and rng.random() < 0.7:
        value = rng.choice(WEIRD_URIS)
    elif field == "kind":
        value = rng.choice(["tensorflow", "extern", "", "pickle", "python", "\x00"])
    else:
        value = rng.choice(WEIRD_NAMES + [s for m, f in fields for s in [getattr(m, f)] if s][:20])
    try:
        setattr(message, field, value)
    except ValueError:  # a lone surrogate: not encodable as proto3 string
        value = "\x00"
        setattr(message, field, value)
    return f"{type(message).__name__}.{field}={value[:40]!r}"


def mutate_attr(rng: random.Random, module) -> str:
    intrinsics = [(i, n) for i, n in enumerate(module.nodes) if n.WhichOneof("kind") == "intrinsic"]
    if not intrinsics:
        return "no intrinsics"
    i, n = rng.choice(intrinsics)
    attrs = n.intrinsic.attrs
    if attrs and rng.random() < 0.6:
        a = rng.choice(attrs)
        choice = rng.randrange(6)
        if choice == 0:
            a.int_value = rng.choice(WEIRD_INTS)
        elif choice == 1:
            a.float_value = rng.choice([float("nan"), float("inf"), -0.0, 1e308, 5e-324])
        elif choice == 2:
            a.string_value = rng.choice(["", "float32", "nope", "\x00", "x" * 10000])
        elif choice == 3:
            a.ints_value.values.extend(rng.choice([[-1], [2**62], [0] * 10000, [-I64 - 1]]))
        elif choice == 4:
            a.type_value = rng.choice([0, len(module.types), U32])
        else:
            a.none_value.SetInParent()
        return f"node {i} attr {a.name!r} set to {a.WhichOneof('value')}"
    name = rng.choice(["dtype", "axis", "type", "shape", "keepdims", "bits", "", "\x00", "zz"])
    a = attrs.add(name=name)
    a.int_value = rng.choice(WEIRD_INTS)
    if attrs and rng.random() < 0.5:
        attrs.add().CopyFrom(a)
    return f"node {i} attr {name!r} added"


def mutate_table(rng: random.Random, module) -> str:
    table = rng.choice(["types", "nodes"])
    entries = getattr(module, table)
    if rng.random() < 0.1:
        module.version = rng.choice([0, 2, U32])
        return f"version={module.version}"
    if len(entries) < 2:
        return f"{table} too small"
    i, j = rng.randrange(len(entries)), rng.randrange(len(entries))
    kind = rng.choice(["swap", "delete", "duplicate"])
    if kind == "swap":
        a, b = type(entries[i])(), type(entries[j])()
        a.CopyFrom(entries[i])
        b.CopyFrom(entries[j])
        entries[i].CopyFrom(b)
        entries[j].CopyFrom(a)
    elif kind == "delete":
        del entries[i]
    else:
        copy = type(entries[i])()
        copy.CopyFrom(entries[i])
        entries.add().CopyFrom(copy)
    return f"{table}: {kind} {i} {j}"


def mutate_location(rng: random.Random, module) -> str:
    located = [n for n in module.nodes if n.HasField("location")]
    if not located:
        return "no locations"
    loc = rng.choice(located).location
    loc.line = rng.choice(WEIRD_INTS)
    loc.column = rng.choice(WEIRD_INTS)
    if module.files and rng.random() < 0.5:
        module.files[0] = rng.choice(["", "\x00", "/etc/passwd", "a" * 100_000, "é"])
    return f"location line={loc.line} column={loc.column}"


FIELD_MUTATORS = [mutate_index, mutate_index, mutate_index, mutate_type, mutate_type, mutate_size, mutate_string,
                  mutate_attr, mutate_table, mutate_location]


def mutate_bytes(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    choice = rng.randrange(6)
    if not data:
        return b"\x0a\xff\xff\xff\xff\x0f", "a length far past the end"
    if choice == 0:
        cut = rng.randrange(len(data))
        return data[:cut], f"truncated to {cut} bytes"
    if choice == 1:
        out = bytearray(data)
        flips = rng.randint(1, 8)
        for _ in range(flips):
            p = rng.randrange(len(out))
            out[p] ^= 1 << rng.randrange(8)
        return bytes(out), f"{flips} bits flipped"
    if choice == 2:
        p = rng.randrange(len(data) + 1)
        junk = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        return data[:p] + junk + data[p:], f"{len(junk)} random bytes inserted at {p}"
    if choice == 3:
        # Field 4 (nodes) as a varint instead of a message; field 3 (types) with a huge length.
        tail = rng.choice([b"\x20\x01", b"\x1a\xff\xff\xff\xff\x07", b"\x22\x80\x80\x80\x80\x10", b"\x08" + b"\xff" * 10])
        return data + tail, f"appended {tail!r} (a field of the wrong wire type or a huge length)"
    if choice == 4:
        return data * 2, "the message twice (repeated fields concatenate, the name is overwritten)"
    return bytes(rng.randrange(256) for _ in range(rng.randint(0, 64))), "random bytes"


def mutate(rng: random.Random, seed: bytes) -> tuple[bytes, str]:
    module = pb.Module()
    module.ParseFromString(seed)
    notes = []
    for _ in range(rng.choice([1, 1, 2, 3, 4])):
        notes.append(rng.choice(FIELD_MUTATORS)(rng, module))
    data = module.SerializeToString()
    if rng.random() < 0.15:
        data, note = mutate_bytes(rng, data)
        notes.append(note)
    return data, "; ".join(notes)
