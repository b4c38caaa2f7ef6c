"""Hypothesis strategies: random fedc types and random well-typed, verified IR.

``types()`` draws any type, ``ir_modules()`` draws modules whose computations
are built only through the public constructors, so they type-check; the
generator keeps names SSA-unique and keeps local functions placement-free, so
every drawn module also passes ``fedc.ir.verify``.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from fedc import ir
from fedc.errors import SourceLocation
from fedc.types import (
    CLIENTS,
    SERVER,
    AbstractType,
    FederatedType,
    FunctionType,
    PlacementType,
    SequenceType,
    StructType,
    TensorType,
)

DTYPES = [
    np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
    np.uint64, np.float16, np.float32, np.float64, np.complex64, np.complex128, np.str_,
]

names = st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True)
dims = st.one_of(st.none(), st.integers(0, 1000))
shapes = st.one_of(st.none(), st.lists(dims, max_size=3).map(tuple))
tensor_types = st.builds(TensorType, st.sampled_from(DTYPES), shapes)


def _struct_of(children):
    elements = st.lists(st.tuples(st.one_of(st.none(), names), children), max_size=4)

    def build(items):
        seen, result = set(), []
        for name, t in items:
            if name is not None and name in seen:
                name = None
            if name is not None:
                seen.add(name)
            result.append((name, t) if name is not None else t)
        return StructType(result)

    return elements.map(build)


element_types = st.recursive(tensor_types, _struct_of, max_leaves=6)
member_types = st.recursive(st.one_of(tensor_types, element_types.map(SequenceType)), _struct_of, max_leaves=8)
local_types = member_types
federated_types = st.builds(
    lambda m, p, ae: FederatedType(m, p, ae),
    local_types,
    st.sampled_from([CLIENTS, SERVER]),
    st.booleans(),
)


def types():
    """Any fedc type."""
    base = st.one_of(
        local_types,
        federated_types,
        st.just(PlacementType()),
        st.sampled_from("TUV").map(AbstractType),
    )
    return st.recursive(
        base,
        lambda c: st.one_of(
            _struct_of(c),
            st.builds(FunctionType, st.one_of(st.none(), c), c),
        ),
        max_leaves=10,
    )


# --------------------------------------------------------------------------
# Random well-typed IR

LITERAL_DTYPES = [np.bool_, np.int32, np.int64, np.uint8, np.float16, np.float32, np.float64, np.str_]


@st.composite
def literals(draw, dtype=None, shape=None):
    dtype = np.dtype(dtype or draw(st.sampled_from(LITERAL_DTYPES)))
    if shape is None:
        shape = tuple(draw(st.lists(st.integers(0, 3), max_size=2)))
    size = int(np.prod(shape)) if shape else 1
    if dtype.kind == "b":
        values = draw(st.lists(st.booleans(), min_size=size, max_size=size))
    elif dtype.kind in "iu":
        info = np.iinfo(dtype)
        values = draw(st.lists(st.integers(int(info.min), int(info.max)), min_size=size, max_size=size))
    elif dtype.kind == "f":
        width = {2: 16, 4: 32, 8: 64}[dtype.itemsize]
        values = draw(st.lists(st.floats(width=width), min_size=size, max_size=size))
    else:
        values = draw(st.lists(st.text(max_size=5), min_size=size, max_size=size))
    array = np.array(values, dtype=dtype).reshape(shape)
    return ir.Literal(array)


locations = st.one_of(
    st.none(),
    st.builds(SourceLocation, st.sampled_from(["a.fed", "dir/b.fed", 'we"ird.fed']), st.integers(1, 500), st.integers(1, 80)),
)


class _Gen:
    """Builds random well-typed expressions, keeping names unique and placements legal."""

    def __init__(self, draw, symbols):
        self.draw = draw
        self.counter = 0
        self.symbols = symbols  # name -> type of earlier module computations

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def loc(self, node):
        location = self.draw(locations)
        return node.with_location(location) if location is not None else node

    # Typed helpers ---------------------------------------------------------
    def float_tensor(self, scope, depth, local):
        refs = [n for n, t in scope.items() if t == TensorType(np.float32)]
        options = ["literal", "add", "cast", "reduce"] + (["ref"] if refs else [])
        if depth <= 0:
            options = ["literal"] + (["ref"] if refs else [])
        choice = self.draw(st.sampled_from(options))
        if choice == "ref":
            name = self.draw(st.sampled_from(refs))
            return ir.Reference(name, scope[name])
        if choice == "add":
            a = self.float_tensor(scope, depth - 1, local)
            b = self.float_tensor(scope, depth - 1, local)
            op = self.draw(st.sampled_from(["add", "multiply", "subtract", "maximum"]))
            return self.loc(ir.intrinsic_call(op, ir.Struct([a, b])))
        if choice == "cast":
            literal = self.draw(literals(np.int32, ()))
            return self.loc(ir.intrinsic_call("cast", literal, dtype="float32"))
        if choice == "reduce":
            literal = self.draw(literals(np.float32, (2, 3)))
            return self.loc(ir.intrinsic_call("reduce_sum", literal, axis=self.draw(st.sampled_from([None, [0, 1], [-1, 0]]))))
        value = self.draw(st.floats(width=32, allow_nan=False))
        return ir.Literal(np.float32(value))

    def local_value(self, scope, depth):
        """Any placement-free value (tensors, structs)."""
        choice = self.draw(st.sampled_from(["float", "literal", "struct", "select", "call", "block", "compiled"] if depth > 0 else ["float", "literal"]))
        if choice == "float":
            return self.float_tensor(scope, depth, True)
        if choice == "literal":
            return self.loc(self.draw(literals()))
        if choice == "struct":
            count = self.draw(st.integers(0, 3))
            elements = []
            used = set()
            for _ in range(count):
                value = self.local_value(scope, depth - 1)
                name = self.draw(st.one_of(st.none(), names))
                if name in used:
                    name = None
                if name is not None:
                    used.add(name)
                elements.append((name, value))
            return self.loc(ir.Struct(elements))
        if choice == "select":
            struct = ir.Struct([("a", self.float_tensor(scope, depth - 1, True)), self.local_value(scope, depth - 1)])
            if self.draw(st.booleans()):
                return self.loc(ir.Selection(struct, name="a"))
            return self.loc(ir.Selection(struct, index=self.draw(st.integers(0, 1))))
        if choice == "call":
            argument = self.local_value(scope, depth - 1)
            lam = self.local_lambda(argument.type_signature, scope, depth - 1)
            return self.loc(ir.Call(lam, argument))
        if choice == "block":
            return self.block(scope, depth, local=True)
        # compiled
        argument = self.float_tensor(scope, depth - 1, True)
        payload = self.draw(st.binary(max_size=16))
        name = self.draw(st.one_of(st.none(), names))
        compiled = ir.Compiled("opaque", payload, FunctionType(argument.type_signature, argument.type_signature), name)
        return self.loc(ir.Call(compiled, argument))

    def local_lambda(self, parameter_type, scope, depth):
        """A placement-free function taking ``parameter_type``; it may capture local values."""
        name = self.fresh("x")
        inner = {n: t for n, t in scope.items() if not t.is_placed}
        inner[name] = parameter_type
        if self.draw(st.booleans()):
            body = ir.Reference(name, parameter_type)
        else:
            body = self.local_value(inner, depth)
        return self.loc(ir.Lambda(name, parameter_type, body))

    def block(self, scope, depth, local):
        inner = dict(scope)
        locals_ = []
        for _ in range(self.draw(st.integers(1, 3))):
            value = self.local_value(inner, depth - 1) if local else self.value(inner, depth - 1)
            name = self.fresh("v")
            locals_.append((name, value))
            inner[name] = value.type_signature
        last = locals_[-1]
        result = ir.Reference(last[0], last[1].type_signature) if self.draw(st.booleans()) else (
            self.local_value(inner, depth - 1) if local else self.value(inner, depth - 1)
        )
        return self.loc(ir.Block(locals_, result))

    def server_value(self, scope, depth):
        refs = [n for n, t in scope.items() if isinstance(t, FederatedType) and t.placement is SERVER and t.all_equal]
        if refs and self.draw(st.booleans()):
            name = self.draw(st.sampled_from(refs))
            return ir.Reference(name, scope[name])
        return self.loc(ir.intrinsic_call("federated_value_at_server", self.local_value(scope, depth - 1)))

    def clients_float(self, scope, depth):
        refs = [n for n, t in scope.items() if t == FederatedType(np.float32, CLIENTS)]
        if refs and self.draw(st.booleans()):
            name = self.draw(st.sampled_from(refs))
            return ir.Reference(name, scope[name])
        server = ir.intrinsic_call("federated_value_at_server", self.float_tensor(scope, depth - 1, True))
        broadcast = self.loc(ir.intrinsic_call("federated_broadcast", server))
        fn = self.local_lambda(TensorType(np.float32), scope, 0)
        fn = ir.Lambda(fn.parameter_name, fn.parameter_type, self.float_tensor({fn.parameter_name: TensorType(np.float32)}, 1, True))
        return self.loc(ir.intrinsic_call("federated_map", ir.Struct([fn, broadcast])))

    def value(self, scope, depth):
        """Any value, placed or not."""
        options = ["local", "mean", "sum", "zip", "apply", "placement", "data", "block", "symbol"]
        if depth <= 0:
            options = ["local", "placement"]
        choice = self.draw(st.sampled_from(options))
        if choice == "local":
            return self.local_value(scope, depth)
        if choice == "mean":
            return self.loc(ir.intrinsic_call("federated_mean", self.clients_float(scope, depth - 1)))
        if choice == "sum":
            clients = self.clients_float(scope, depth - 1)
            return self.loc(ir.intrinsic_call("federated_sum", clients))
        if choice == "zip":
            a, b = self.clients_float(scope, depth - 1), self.clients_float(scope, depth - 1)
            return self.loc(ir.intrinsic_call("federated_zip_at_clients", ir.Struct([("a", a), ("b", b)])))
        if choice == "apply":
            server = self.server_value(scope, depth - 1)
            fn = self.local_lambda(server.type_signature.member, scope, depth - 1)
            return self.loc(ir.intrinsic_call("federated_apply", ir.Struct([fn, server])))
        if choice == "placement":
            return self.loc(ir.Placement(self.draw(st.sampled_from([CLIENTS, SERVER]))))
        if choice == "data":
            return self.loc(ir.Data(self.draw(st.text(min_size=1, max_size=10)), self.draw(federated_types)))
        if choice == "symbol" and self.symbols:
            name = self.draw(st.sampled_from(sorted(self.symbols)))
            t = self.symbols[name]
            ref = ir.SymbolRef(name, t)
            if isinstance(t, FunctionType) and t.parameter is None:
                return self.loc(ir.Call(ref))
            return self.loc(ref)
        return self.block(scope, depth, local=False)


@st.composite
def computations(draw, symbols=None, max_depth=4):
    """A random well-typed computation (a lambda over a random parameter, or a value)."""
    gen = _Gen(draw, symbols or {})
    depth = draw(st.integers(1, max_depth))
    kind = draw(st.sampled_from(["func", "func0", "value"]))
    if kind == "value":
        return gen.value({}, depth)
    if kind == "func0":
        body = gen.value({}, depth)
        if not body.type_signature.is_placed:  # a local function: local work only
            body = gen.local_value({}, depth)
        return gen.loc(ir.Lambda(None, None, body))
    parameter_type = draw(st.sampled_from([
        FederatedType(np.float32, CLIENTS),
        StructType([("s", FederatedType(np.float32, SERVER)), ("c", FederatedType(np.float32, CLIENTS))]),
        TensorType(np.float32),
    ]))
    name = gen.fresh("p")
    scope = {name: parameter_type}
    if isinstance(parameter_type, StructType):
        # Make the parameter's parts available under their own names.
        s = ir.Selection(ir.Reference(name, parameter_type), name="s")
        c = ir.Selection(ir.Reference(name, parameter_type), name="c")
        body_scope = dict(scope, s1=s.type_signature, c1=c.type_signature)
        body = ir.Block([("s1", s), ("c1", c)], gen.value(body_scope, depth))
    else:
        body = gen.value(scope, depth)
        if not body.type_signature.is_placed and not parameter_type.is_placed:
            body = gen.local_value(scope, depth)
    return gen.loc(ir.Lambda(name, parameter_type, body))


@st.composite
def ir_modules(draw, max_computations=3, max_depth=4):
    """A random verified module of 1..max_computations computations."""
    count = draw(st.integers(1, max_computations))
    symbols: dict = {}
    entries = []
    for index in range(count):
        node = draw(computations(symbols=dict(symbols), max_depth=max_depth))
        name = f"c{index}"
        entries.append((name, node))
        symbols[name] = node.type_signature
    return ir.Module(draw(st.sampled_from(["m", "fedavg", "temperature"])), entries)
