"""Depth ladders: every way of nesting, in every form fedc reads, at depths up to 100,000.

A *shape* is one way to nest (a struct type in a struct type, a lambda
returning a lambda, a call of a call, a block in a block, a selection of a
selection, an alias naming an alias, a key path of an ``.npz``, …) in one
form (``.fed`` source, textual IR, protobuf, JSON or ``.npz`` arguments, the
Python API). :data:`SHAPES` maps each shape's name to ``(form, builder)``;
the builder takes a depth and returns the case's files (or, for the Python
API, is run in the worker by :func:`build_api`).

:data:`DEPTHS` is the ladder: a few levels, around ``MAX_NESTING`` (1,000)
on both sides, and far past it. At every rung fedc must work or raise a
``FedcError``; at the low rungs (``expect ok``) a shape that is valid by
construction must work.
"""

from __future__ import annotations

import io
import warnings
import zipfile

import numpy as np

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"Protobuf gencode version", category=UserWarning)
    from fedc.ir import computation_pb2 as pb

DEPTHS = [1, 10, 100, 999, 1000, 1001, 10_000, 100_000]
#: Rungs at which a valid-by-construction shape must work.
OK_DEPTH = 100


def _struct_type(depth: int, leaf: str = "float32") -> str:
    return "<" * depth + leaf + ">" * depth


def _fed(body: str) -> dict:
    return {"case.fed": body.encode()}


# --------------------------------------------------------------------------
# .fed source


def fed_type_struct(d):
    return _fed(f"local f(x: {_struct_type(d)}) -> float32 {{\n  return 1.0\n}}\n")


def fed_type_function(d):
    return _fed("type F = " + "( -> " * d + "float32" + ")" * d + "\n"
                "local f(x: float32) -> float32 {\n  return x\n}\n")


def fed_type_sequence(d):
    return _fed(f"local f(x: float32{'*' * d}) -> float32 {{\n  return 1.0\n}}\n")


def fed_type_federated(d):
    # Federated in federated is not a type; each level is a struct holding a placed value.
    return _fed(f"computation f(x: {'<' * d}{{float32}}@CLIENTS{'>' * d}) -> float32@SERVER {{\n"
                f"  return federated_value(1.0, SERVER)\n}}\n")


def fed_alias_chain(d):
    lines = ["type A0 = float32"] + [f"type A{i} = A{i - 1}" for i in range(1, d + 1)]
    return _fed("\n".join(lines) + f"\nlocal f(x: A{d}) -> float32 {{\n  return x\n}}\n")


def fed_alias_nest(d):
    lines = ["type A0 = float32"] + [f"type A{i} = <A{i - 1}>" for i in range(1, d + 1)]
    return _fed("\n".join(lines) + f"\nlocal f(x: A{d}) -> A{d} {{\n  return x\n}}\n")


def fed_parens(d):
    return _fed(f"local f(x: float32) -> float32 {{\n  return {'(' * d}x{')' * d}\n}}\n")


def fed_struct(d):
    return _fed(f"local f(x: float32) {{\n  return {'<' * d}x{'>' * d}\n}}\n")


def fed_list(d):
    return _fed(f"local f(x: float32) {{\n  return {'[' * d}1.0{']' * d}\n}}\n")


def fed_selection(d):
    return _fed(f"local f(x: {_struct_type(d)}) -> float32 {{\n  return x{'[0]' * d}\n}}\n")


def fed_named_selection(d):
    return _fed(f"local f(x: {'<a=' * d}float32{'>' * d}) -> float32 {{\n  return x{'.a' * d}\n}}\n")


def fed_negation(d):
    return _fed(f"local f(x: float32) -> float32 {{\n  return {'- ' * (2 * (d // 2) or 2)}x\n}}\n")


def fed_not(d):
    return _fed(f"local f(x: bool) -> bool {{\n  return {'not ' * (2 * (d // 2) or 2)}x\n}}\n")


def fed_sum_chain(d):
    return _fed(f"local f(x: float32) -> float32 {{\n  return {' + '.join(['x'] * (d + 1))}\n}}\n")


def fed_power_chain(d):
    return _fed(f"local f(x: float32) -> float32 {{\n  return {' ** '.join(['x'] * (d + 1))}\n}}\n")


def fed_lambda(d):
    # fn(v) -> fn(v) -> ... -> v, applied level by level through federated_map is not possible,
    # so the nest is returned as a value of a local function.
    return _fed(f"local f(x: float32) {{\n  return {'fn(v: float32) -> ' * d}x\n}}\n")


def fed_lambda_bodies(d):
    # fn(v) { let a = fn(v) { ... } return a }, built outside in (the text is linear in d).
    opening = "".join(f"fn(v{i}: float32) {{\n let a{i} = " for i in reversed(range(d)))
    closing = "".join(f"\n return a{i}\n}}" for i in range(d))
    return _fed(f"local f(x: float32) {{\n  return {opening}x{closing}\n}}\n")


def fed_call(d):
    return _fed("local g(x: float32) -> float32 {\n  return x\n}\n"
                f"local f(x: float32) -> float32 {{\n  return {'g(' * d}x{')' * d}\n}}\n")


def fed_map_call(d):
    inner = "federated_map(fn(v) -> v + 1.0, " * d + "x" + ")" * d
    return _fed(f"computation f(x: {{float32}}@CLIENTS) -> {{float32}}@CLIENTS {{\n  return {inner}\n}}\n")


def fed_definition_chain(d):
    lines = ["local f0(x: float32) -> float32 {\n  return x + 1.0\n}"]
    lines += [f"local f{i}(x: float32) -> float32 {{\n  return f{i - 1}(x)\n}}" for i in range(1, d + 1)]
    return _fed("\n".join(lines) + "\n")


def fed_let_chain(d):
    lets = "\n".join(f"  let a{i} = a{i - 1} + 1.0" for i in range(1, d + 1))
    return _fed(f"local f(x: float32) -> float32 {{\n  let a0 = x\n{lets}\n  return a{d}\n}}\n")


def fed_import_chain(d):
    d = min(d, 3000)  # one file per level
    files = {f"m{i}.fed": f'import "m{i + 1}.fed"\nlocal f{i}(x: float32) -> float32 {{\n  return f{i + 1}(x)\n}}\n'.encode()
             for i in range(d)}
    files[f"m{d}.fed"] = f"local f{d}(x: float32) -> float32 {{\n  return x\n}}\n".encode()
    files["case.fed"] = b'import "m0.fed"\nlocal f(x: float32) -> float32 {\n  return f0(x)\n}\n'
    return files


# --------------------------------------------------------------------------
# Textual IR


def _ir(param: str, body: str, result: str = "float32") -> dict:
    return {"case.fedir": f"fedc.module @m {{\n  fedc.func @f(%x: {param}) -> {result} {{\n{body}\n  }}\n}}\n".encode()}


def ir_type_struct(d):
    return _ir(_struct_type(d), "    %0 = fedc.constant 1.0 : float32\n    fedc.return %0")


def ir_type_function(d):
    return _ir("( -> " * d + "float32" + ")" * d, "    %0 = fedc.constant 1.0 : float32\n    fedc.return %0")


def ir_type_sequence(d):
    return _ir("float32" + "*" * d, "    %0 = fedc.constant 1.0 : float32\n    fedc.return %0")


def ir_operand_struct(d):
    return _ir("float32", f"    fedc.return {'<' * d}%x{'>' * d}", _struct_type(d))


def ir_selection(d):
    return _ir(_struct_type(d), f"    %0 = fedc.select %x{'[0]' * d} : float32\n    fedc.return %0")


def ir_lambda(d):
    # Each lambda defines the next and calls it, so every level has type (float32 -> float32).
    opening = "".join(f"%l{i} = fedc.lambda(%y{i}: float32) -> float32 {{\n" for i in reversed(range(d)))
    closing = "".join(f"}}\n%c{i} = fedc.call %l{i}(%{'y' + str(i + 1) if i + 1 < d else 'x'}) : float32\n"
                      f"fedc.return %c{i}\n" for i in range(d))
    return _ir("float32", opening + "fedc.return %x\n" + closing.rstrip("\n"))


def ir_block(d):
    opening = "".join(f"%b{i} = fedc.block -> float32 {{\n" for i in reversed(range(d)))
    closing = "".join(f"}}\nfedc.return %b{i}\n" for i in range(d))
    return _ir("float32", opening + "fedc.return %x\n" + closing.rstrip("\n"))


def ir_literal(d):
    t = "float32" + ("[" + ",".join(["1"] * d) + "]" if d else "")
    return _ir("float32", f"    %0 = fedc.constant {'[' * d}1.0{']' * d} : {t}\n    fedc.return %0", t)


def ir_op_chain(d):
    ops = ["    %a0 = fedc.constant 1.0 : float32"]
    ops += [f"    %a{i} = local.add(%a{i - 1}, %x) : (<float32,float32> -> float32)" for i in range(1, d + 1)]
    return _ir("float32", "\n".join(ops) + f"\n    fedc.return %a{d}")


def ir_symbol_chain(d):
    funcs = ["  fedc.func @f0(%x: float32) -> float32 {\n    fedc.return %x\n  }"]
    funcs += [f"  fedc.func @f{i}(%x: float32) -> float32 {{\n    %0 = fedc.call @f{i - 1}(%x) : float32\n    fedc.return %0\n  }}"
              for i in range(1, d + 1)]
    return {"case.fedir": ("fedc.module @m {\n" + "\n".join(funcs) + "\n}\n").encode()}


# --------------------------------------------------------------------------
# Protobuf, built table by table


def _proto(module: pb.Module) -> dict:
    module.version = 1
    module.name = "m"
    return {"case.fedpb": module.SerializeToString()}


def _tensor(module: pb.Module, dtype: str = "float32") -> int:
    module.types.add().tensor.dtype = dtype
    return len(module.types) - 1


def _constant_computation(module: pb.Module, type_index: int) -> None:
    """@f = a lambda (x: types[type_index]) -> 1.0."""
    lit = module.nodes.add().literal
    lit.dtype = "float32"
    lit.data = np.float32(1.0).tobytes()
    lam = module.nodes.add().lambda_expr
    lam.parameter_name = "x"
    lam.parameter_type = type_index
    lam.result = len(module.nodes) - 2
    module.computations.add(name="f", node=len(module.nodes) - 1)


def proto_type_struct(d):
    m = pb.Module()
    last = _tensor(m)
    for _ in range(d):
        m.types.add().struct.elements.add(type=last)
        last = len(m.types) - 1
    _constant_computation(m, last)
    return _proto(m)


def proto_type_function(d):
    m = pb.Module()
    last = _tensor(m)
    for _ in range(d):
        m.types.add().function.result = last
        last = len(m.types) - 1
    _constant_computation(m, last)
    return _proto(m)


def proto_type_sequence(d):
    m = pb.Module()
    last = _tensor(m)
    for _ in range(d):
        m.types.add().sequence.element = last
        last = len(m.types) - 1
    _constant_computation(m, last)
    return _proto(m)


def _reference_x(m: pb.Module) -> int:
    t = _tensor(m)
    ref = m.nodes.add().reference
    ref.name, ref.type = "x", t
    return t


def _lambda_of(m: pb.Module, param_type: int) -> None:
    """@f = a lambda (x: types[param_type]) whose result is the last node so far."""
    result = len(m.nodes) - 1
    lam = m.nodes.add().lambda_expr
    lam.parameter_name, lam.parameter_type, lam.result = "x", param_type, result
    m.computations.add(name="f", node=len(m.nodes) - 1)


def proto_node_struct(d):
    m = pb.Module()
    t = _reference_x(m)
    for _ in range(d):
        m.nodes.add().struct.elements.add(value=len(m.nodes) - 2)
    _lambda_of(m, t)
    return _proto(m)


def proto_node_selection(d):
    m = pb.Module()
    last = _tensor(m)
    for _ in range(d):
        m.types.add().struct.elements.add(type=last)
        last = len(m.types) - 1
    ref = m.nodes.add().reference
    ref.name, ref.type = "x", last
    for _ in range(d):
        sel = m.nodes.add().selection
        sel.source, sel.index = len(m.nodes) - 2, 0
    _lambda_of(m, last)
    return _proto(m)


def proto_node_call(d):
    m = pb.Module()
    t = _reference_x(m)
    identity_ref = m.nodes.add().reference
    identity_ref.name, identity_ref.type = "y", t
    ident = m.nodes.add().lambda_expr
    ident.parameter_name, ident.parameter_type, ident.result = "y", t, 1
    identity = len(m.nodes) - 1
    last = 0
    for _ in range(d):
        call = m.nodes.add().call
        call.function, call.argument = identity, last
        last = len(m.nodes) - 1
    _lambda_of(m, t)
    return _proto(m)


def proto_node_lambda(d):
    m = pb.Module()
    t = _reference_x(m)
    last_node, last_type = 0, t
    for i in range(d):
        lam = m.nodes.add().lambda_expr
        lam.parameter_name, lam.parameter_type, lam.result = f"y{i}", t, last_node
        last_node = len(m.nodes) - 1
        fn = m.types.add().function
        fn.parameter, fn.result = t, last_type
        last_type = len(m.types) - 1
    _lambda_of(m, t)
    return _proto(m)


def proto_node_block(d):
    m = pb.Module()
    t = _reference_x(m)
    last = 0
    for i in range(d):
        ref = m.nodes.add().reference
        ref.name, ref.type = f"b{i}", t
        block = m.nodes.add().block
        block.locals.add(name=f"b{i}", value=last)
        block.result = len(m.nodes) - 2
        last = len(m.nodes) - 1
    _lambda_of(m, t)
    return _proto(m)


# --------------------------------------------------------------------------
# Arguments: JSON and .npz (run through `fedc run`)

_ARG_PROGRAM = b"computation f(x: float32@SERVER) -> float32@SERVER {\n  return x\n}\n"


def json_array(d):
    return {"prog.fed": _ARG_PROGRAM, "args.json": ("[" * d + "1.0" + "]" * d).encode()}


def json_object(d):
    return {"prog.fed": _ARG_PROGRAM, "args.json": ('{"x":' * d + "1.0" + "}" * d).encode()}


def json_struct_arg(d):
    program = f"computation f(x: {_struct_type(min(d, 1000))}@SERVER) -> float32@SERVER {{\n  return federated_value(1.0, SERVER)\n}}\n"
    return {"prog.fed": program.encode(), "args.json": ('{"x": ' + "[" * d + "1.0" + "]" * d + "}").encode()}


def _npz(arrays: dict) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for key, value in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(value), allow_pickle=False)
            z.writestr(key + ".npy", member.getvalue())
    return buffer.getvalue()


# A zip member's name has at most 65,535 bytes: key paths stop at 30,000 levels.
NPZ_MAX_DEPTH = 30_000


def npz_key_path(d):
    d = min(d, NPZ_MAX_DEPTH)
    return {"prog.fed": _ARG_PROGRAM, "args.npz": _npz({"x" + "/a" * d: np.float32(1.0)})}


def npz_index_path(d):
    d = min(d, NPZ_MAX_DEPTH)
    return {"prog.fed": _ARG_PROGRAM, "args.npz": _npz({"x" + "/0" * d: np.float32(1.0)})}


# --------------------------------------------------------------------------
# The Python API (built in the worker)

API_SHAPES = ["api-type-struct", "api-type-function", "api-type-sequence", "api-type-parse", "api-node-struct",
              "api-node-selection", "api-node-call", "api-node-lambda", "api-node-block"]


def build_api(shape: str, depth: int):
    """Builds ``shape`` ``depth`` levels deep with fedc's constructors; a module of it (or None for types)."""
    from fedc import ir, types

    f32 = types.TensorType(np.float32)
    if shape.startswith("api-type"):
        if shape == "api-type-parse":
            types.parse(_struct_type(depth))
            return None
        t = f32
        for _ in range(depth):
            if shape == "api-type-struct":
                t = types.StructType([t])
            elif shape == "api-type-function":
                t = types.FunctionType(None, t)
            else:
                t = types.SequenceType(t)
        return None
    x = ir.Reference("x", f32)
    node = x
    param = f32
    if shape == "api-node-selection":
        for _ in range(depth):
            param = types.StructType([param])
        node = ir.Reference("x", param)
        for _ in range(depth):
            node = ir.Selection(node, index=0)
    else:
        identity = ir.Lambda("y", f32, ir.Reference("y", f32))
        for i in range(depth):
            if shape == "api-node-struct":
                node = ir.Struct([node])
            elif shape == "api-node-call":
                node = ir.Call(identity, node)
            elif shape == "api-node-lambda":
                node = ir.Lambda(f"y{i}", f32, node)
            else:
                node = ir.Block([(f"b{i}", node)], ir.Reference(f"b{i}", node.type_signature))
    return ir.Module("m", [("f", ir.Lambda("x", param, node))])


# --------------------------------------------------------------------------
# The table

SHAPES = {
    "fed-type-struct": ("fed", fed_type_struct), "fed-type-function": ("fed", fed_type_function),
    "fed-type-sequence": ("fed", fed_type_sequence), "fed-type-federated": ("fed", fed_type_federated),
    "fed-alias-chain": ("fed", fed_alias_chain), "fed-alias-nest": ("fed", fed_alias_nest),
    "fed-parens": ("fed", fed_parens), "fed-struct": ("fed", fed_struct), "fed-list": ("fed", fed_list),
    "fed-selection": ("fed", fed_selection), "fed-named-selection": ("fed", fed_named_selection),
    "fed-negation": ("fed", fed_negation), "fed-not": ("fed", fed_not), "fed-sum-chain": ("fed", fed_sum_chain),
    "fed-power-chain": ("fed", fed_power_chain), "fed-lambda": ("fed", fed_lambda),
    "fed-lambda-bodies": ("fed", fed_lambda_bodies), "fed-call": ("fed", fed_call),
    "fed-map-call": ("fed", fed_map_call), "fed-definition-chain": ("fed", fed_definition_chain),
    "fed-let-chain": ("fed", fed_let_chain), "fed-import-chain": ("fed", fed_import_chain),
    "ir-type-struct": ("ir", ir_type_struct), "ir-type-function": ("ir", ir_type_function),
    "ir-type-sequence": ("ir", ir_type_sequence), "ir-operand-struct": ("ir", ir_operand_struct),
    "ir-selection": ("ir", ir_selection), "ir-lambda": ("ir", ir_lambda), "ir-block": ("ir", ir_block),
    "ir-literal": ("ir", ir_literal), "ir-op-chain": ("ir", ir_op_chain), "ir-symbol-chain": ("ir", ir_symbol_chain),
    "proto-type-struct": ("proto", proto_type_struct), "proto-type-function": ("proto", proto_type_function),
    "proto-type-sequence": ("proto", proto_type_sequence), "proto-node-struct": ("proto", proto_node_struct),
    "proto-node-selection": ("proto", proto_node_selection), "proto-node-call": ("proto", proto_node_call),
    "proto-node-lambda": ("proto", proto_node_lambda), "proto-node-block": ("proto", proto_node_block),
    "json-array": ("args", json_array), "json-object": ("args", json_object),
    "json-struct-arg": ("args", json_struct_arg), "npz-key-path": ("args", npz_key_path),
    "npz-index-path": ("args", npz_index_path),
}
SHAPES.update({name: ("api", None) for name in API_SHAPES})

#: Shapes that are not valid even when shallow (a sequence of sequences; a JSON or .npz nest for a
#: float32 parameter): at low rungs they may be an error too.
NOT_ALWAYS_VALID = {"fed-type-sequence", "ir-type-sequence", "proto-type-sequence", "api-type-sequence",
                    "json-array", "json-object", "npz-key-path", "npz-index-path"}
#: Literals are tensors, whose rank numpy bounds (32 or 64): deeper lists are not valid either.
OK_DEPTH_OF = {"fed-list": 10, "ir-literal": 10}


def case(shape: str, depth: int) -> dict:
    form, builder = SHAPES[shape]
    base = {"kind": "ladder", "shape": shape, "depth": depth, "note": f"ladder {shape} at depth {depth}",
            "expect_ok": depth <= OK_DEPTH_OF.get(shape, OK_DEPTH) and shape not in NOT_ALWAYS_VALID, "timeout": 120.0,
            "pipeline": "inline,call-dominant,cse,dce,canonicalize"}
    if form == "api":
        return dict(base, action="ladder_api", nest=shape, files={})
    files = builder(depth)
    if form == "args":
        argsfile = "args.json" if "args.json" in files else "args.npz"
        return dict(base, action="cli", files=files, argv=["run", "prog.fed", "--args", argsfile])
    main = {"fed": "case.fed", "ir": "case.fedir", "proto": "case.fedpb"}[form]
    return dict(base, action="load", files=files, main=main)
