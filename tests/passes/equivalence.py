"""Checking that a pass preserves meaning: random executable programs, random inputs, the oracle.

``programs()`` draws verified, executable modules (one computation ``@round``
of type ``(<s=...@SERVER,c={...}@CLIENTS> -> <...@SERVER ...>)``) built from
broadcasts, maps of local lambdas (local ops, structs, selections), zips,
applies and aggregations (mean, weighted mean, sum, min, max, aggregate).
``assert_equivalent(before, after)`` runs both on the reference interpreter
with random inputs and compares the results.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
from hypothesis import strategies as st

import fedc
from fedc import ir
from fedc.computation import Computation
from fedc.context import invoke
from fedc.ir.module import Module
from fedc.types import (
    CLIENTS,
    SERVER,
    FederatedType,
    SequenceType,
    StructType,
    TensorType,
    Type,
)

F32 = np.float32


# --------------------------------------------------------------------------
# Random values of a type


def random_value(t: Type, rng: np.random.Generator, num_clients: int) -> Any:
    """A random Python value of type ``t`` (clients' values as a list of ``num_clients``)."""
    if isinstance(t, FederatedType):
        if t.all_equal:
            return random_value(t.member, rng, num_clients)
        return [random_value(t.member, rng, num_clients) for _ in range(num_clients)]
    if isinstance(t, StructType):
        values = [random_value(e, rng, num_clients) for e in t]
        names = t.names()
        if names and all(n is not None for n in names):
            return dict(zip(names, values))
        return values
    if isinstance(t, SequenceType):
        return [random_value(t.element, rng, num_clients) for _ in range(int(rng.integers(0, 4)))]
    if isinstance(t, TensorType):
        shape = tuple(int(rng.integers(1, 4)) if d is None else d for d in (t.shape or ()))
        kind = t.dtype.kind
        if kind == "f":
            return rng.normal(0.0, 2.0, size=shape).astype(t.dtype)
        if kind in "iu":
            return rng.integers(0, 10, size=shape).astype(t.dtype)
        if kind == "b":
            return rng.integers(0, 2, size=shape).astype(bool)
        return np.full(shape, "s", dtype=np.str_)
    raise TypeError(f"no random values of type {t}")


def run(module: Module, symbol: str, argument: Any, num_clients: int) -> Any:
    """``symbol`` of ``module`` run on the reference backend: a pass keeps meaning as the oracle defines it.

    (The conformance suite runs the same random programs, before and after
    the passes, on the other backends.)
    """
    computation = Computation(module, symbol)
    with fedc.backend("reference"):
        if computation.type_signature.parameter is None:
            return invoke(computation, (), {}, num_clients=num_clients)
        return invoke(computation, (argument,), {}, num_clients=num_clients)


def assert_close(a: Any, b: Any, rtol: float = 1e-4, atol: float = 1e-4, path: str = "result") -> None:
    """Nested results equal up to floating-point tolerance."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), f"{path}: {a!r} vs {b!r}"
        for k in a:
            assert_close(a[k], b[k], rtol, atol, f"{path}.{k}")
        return
    if isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{path}: {a!r} vs {b!r}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_close(x, y, rtol, atol, f"{path}[{i}]")
        return
    x, y = np.asarray(a), np.asarray(b)
    assert x.shape == y.shape, f"{path}: shapes {x.shape} vs {y.shape}"
    if x.dtype.kind in "fc":
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol, err_msg=path)
    else:
        np.testing.assert_array_equal(x, y, err_msg=path)


def assert_equivalent(
    before: Module,
    after: Module,
    symbol: Optional[str] = None,
    seeds: tuple[int, ...] = (0, 1),
    num_clients: int = 3,
    rtol: float = 1e-4,
    atol: float = 1e-4,
) -> None:
    """``before`` and ``after`` compute the same results on random inputs (the reference oracle)."""
    symbol = symbol or before.symbols[-1]
    ir.verify(after)
    parameter = before[symbol].type_signature.parameter
    assert after[symbol].type_signature == before[symbol].type_signature
    for seed in seeds:
        rng = np.random.default_rng(seed)
        argument = None if parameter is None else random_value(parameter, rng, num_clients)
        expected = run(before, symbol, argument, num_clients)
        actual = run(after, symbol, argument, num_clients)
        assert_close(actual, expected, rtol, atol)


# --------------------------------------------------------------------------
# Random executable programs

VECTOR = TensorType(F32, [2])
SCALAR = TensorType(F32)
PARAMETER = StructType([("s", FederatedType(VECTOR, SERVER)), ("c", FederatedType(VECTOR, CLIENTS))])


class _Program:
    def __init__(self, draw):
        self.draw = draw
        self.locals: list[tuple[str, ir.Node]] = []
        self.counter = 0
        self.arg = ir.Reference("arg", PARAMETER)
        self.clients = [ir.Selection(self.arg, name="c")]  # client-placed vector values
        self.servers = [ir.Selection(self.arg, name="s")]  # server-placed vector values

    def bind(self, node: ir.Node, base: str) -> ir.Reference:
        self.counter += 1
        name = f"{base}{self.counter}"
        self.locals.append((name, node))
        return ir.Reference(name, node.type_signature)

    def local_fn(self, parameter: Type, result_vector: bool = True) -> ir.Lambda:
        """A lambda of local ops from ``parameter`` (a vector or a pair of vectors) to a vector."""
        self.counter += 1
        name = f"v{self.counter}"
        x = ir.Reference(name, parameter)
        operands = [x] if parameter == VECTOR else [ir.Selection(x, index=0), ir.Selection(x, index=1)]
        choice = self.draw(st.sampled_from(["scale", "add", "max", "clip", "square", "identity", "struct"]))
        if choice == "identity" and parameter == VECTOR:
            body = x
        elif choice == "struct":
            packed = ir.Struct([("a", operands[0]), ("b", operands[-1])])
            body = ir.intrinsic_call("add", ir.Struct([ir.Selection(packed, name="a"), ir.Selection(packed, index=1)]))
        elif choice == "scale":
            body = ir.intrinsic_call("multiply", ir.Struct([operands[0], ir.Literal(F32(self.draw(st.sampled_from([0.5, 2.0, -1.0]))))]))
        elif choice == "add":
            body = ir.intrinsic_call("add", ir.Struct([operands[0], operands[-1]]))
        elif choice == "max":
            body = ir.intrinsic_call("maximum", ir.Struct([operands[0], operands[-1]]))
        elif choice == "clip":
            body = ir.intrinsic_call("clip", ir.Struct([operands[0], ir.Literal(F32(-1.0)), ir.Literal(F32(1.0))]))
        else:
            body = ir.intrinsic_call("square", operands[0])
        return ir.Lambda(name, parameter, body)

    # Steps that subclasses drawing other round shapes reuse.
    def add_broadcast(self) -> None:
        server = self.draw(st.sampled_from(self.servers))
        self.clients.append(self.bind(ir.intrinsic_call("federated_broadcast", server), "b"))

    def add_map(self) -> None:
        x = self.draw(st.sampled_from(self.clients))
        fn = self.bind(self.local_fn(VECTOR), "f")
        self.clients.append(self.bind(ir.intrinsic_call("federated_map", ir.Struct([fn, x])), "m"))

    def add_map2(self) -> None:
        a, b = self.draw(st.sampled_from(self.clients)), self.draw(st.sampled_from(self.clients))
        zipped = self.bind(ir.intrinsic_call("federated_zip_at_clients", ir.Struct([a, b])), "z")
        fn = self.bind(self.local_fn(StructType([VECTOR, VECTOR])), "f")
        self.clients.append(self.bind(ir.intrinsic_call("federated_map", ir.Struct([fn, zipped])), "m"))

    def step(self) -> None:
        choice = self.draw(st.sampled_from(["broadcast", "map", "map2", "apply", "mean", "sum", "wmean", "max", "aggregate"]))
        if choice == "broadcast":
            self.add_broadcast()
        elif choice == "map":
            self.add_map()
        elif choice == "map2":
            self.add_map2()
        elif choice == "apply":
            s = self.draw(st.sampled_from(self.servers))
            fn = self.bind(self.local_fn(VECTOR), "f")
            self.servers.append(self.bind(ir.intrinsic_call("federated_apply", ir.Struct([fn, s])), "p"))
        elif choice in ("mean", "sum", "max"):
            x = self.draw(st.sampled_from(self.clients))
            uri = {"mean": "federated_mean", "sum": "federated_sum", "max": "federated_max"}[choice]
            if x.type_signature.all_equal:
                return
            self.servers.append(self.bind(ir.intrinsic_call(uri, x), choice))
        elif choice == "wmean":
            x = self.draw(st.sampled_from(self.clients))
            w = self.bind(ir.intrinsic_call("federated_map", ir.Struct([
                ir.Lambda(f"w{self.counter}", VECTOR, ir.intrinsic_call("add", ir.Struct([
                    ir.intrinsic_call("reduce_sum", ir.intrinsic_call("abs", ir.Reference(f"w{self.counter}", VECTOR))),
                    ir.Literal(F32(1.0))]))),
                x])), "w")
            self.servers.append(self.bind(ir.intrinsic_call("federated_weighted_mean", ir.Struct([x, w])), "wm"))
        else:  # a count-and-sum aggregate
            x = self.draw(st.sampled_from(self.clients))
            acc_t = StructType([VECTOR, SCALAR])
            self.counter += 1
            k = self.counter
            acc = ir.Lambda(f"a{k}", StructType([acc_t, VECTOR]), ir.Struct([
                ir.intrinsic_call("add", ir.Struct([ir.Selection(ir.Selection(ir.Reference(f"a{k}", StructType([acc_t, VECTOR])), index=0), index=0),
                                                    ir.Selection(ir.Reference(f"a{k}", StructType([acc_t, VECTOR])), index=1)])),
                ir.intrinsic_call("add", ir.Struct([ir.Selection(ir.Selection(ir.Reference(f"a{k}", StructType([acc_t, VECTOR])), index=0), index=1),
                                                    ir.Literal(F32(1.0))])),
            ]))
            pair = StructType([acc_t, acc_t])
            merge = ir.Lambda(f"m{k}", pair, ir.intrinsic_call("add", ir.Struct([
                ir.Selection(ir.Reference(f"m{k}", pair), index=0), ir.Selection(ir.Reference(f"m{k}", pair), index=1)])))
            report = ir.Lambda(f"r{k}", acc_t, ir.intrinsic_call("divide", ir.Struct([
                ir.Selection(ir.Reference(f"r{k}", acc_t), index=0),
                ir.intrinsic_call("maximum", ir.Struct([ir.Selection(ir.Reference(f"r{k}", acc_t), index=1), ir.Literal(F32(1.0))]))])))
            zero = ir.intrinsic_call("zeros", type=acc_t)
            self.servers.append(self.bind(ir.intrinsic_call("federated_aggregate", ir.Struct([x, zero, acc, merge, report])), "agg"))

    def build(self) -> Module:
        for _ in range(self.draw(st.integers(1, 6))):
            self.step()
        outputs = self.servers[1:] or [self.bind(ir.intrinsic_call("federated_mean", self.clients[0]), "mean")]
        count = self.draw(st.integers(1, min(3, len(outputs))))
        chosen = outputs[-count:]
        result = ir.Struct([(f"r{i}", node) for i, node in enumerate(chosen)])
        body = ir.Block(self.locals, result) if self.locals else result
        module = Module("program", {"round": ir.Lambda("arg", PARAMETER, body)})
        ir.verify(module)
        return module


@st.composite
def programs(draw) -> Module:
    """A random executable federated round (see the module docstring)."""
    return _Program(draw).build()
