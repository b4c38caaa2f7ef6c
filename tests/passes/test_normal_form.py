"""The normal-form passes: inline, call-dominant, dce, cse, canonicalize.

Each pass keeps the meaning of random executable programs (the reference
interpreter before and after), is idempotent, and keeps random verified IR
verified; after ``call-dominant`` every computation is in call-dominant form
(``is_call_dominant``), FedAvg included.
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from equivalence import F32, VECTOR, assert_close, assert_equivalent, programs
from strategies import ir_modules

from fedc import ir, passes
from fedc.ir.module import Module
from fedc.passes.call_dominant import is_call_dominant
from fedc.passes.util import Names, alpha_normal, coerce, free_references, rename_bound, substitute
from fedc.types import CLIENTS, SERVER, FederatedType, StructType, TensorType

ROOT = pathlib.Path(__file__).resolve().parents[2]
NORMAL_FORM_PASSES = ["inline", "call-dominant", "canonicalize", "cse", "dce"]
PIPELINE = "inline,call-dominant,canonicalize,cse,dce"


# --------------------------------------------------------------------------
# Random programs with the shapes the normal-form passes remove: nested blocks,
# lambdas applied where they are defined (also nested), calls between
# computations, aliases, struct packing, identity maps, zip/unzip pairs,
# duplicated and dead locals.


class _Messier:
    def __init__(self, draw, module: Module):
        self.draw = draw
        self.module = module
        self.counter = 0
        self.helpers: list[tuple[str, ir.Node]] = []

    def fresh(self, base: str) -> str:
        self.counter += 1
        return f"q{self.counter}_{base}"

    def closed(self, value: ir.Node):
        """(parameter struct type, the argument struct, the body over the parameter) for ``value``."""
        free = sorted(free_references(value))
        types = {}
        for n in value.walk():
            if isinstance(n, ir.Reference) and n.name in free:
                types[n.name] = n.type_signature
        named = self.draw(st.booleans())
        parameter = self.fresh("p")
        if named:
            ptype = StructType([(f"e{i}", types[name]) for i, name in enumerate(free)])
        else:
            ptype = StructType([types[name] for name in free])
        ref = ir.Reference(parameter, ptype)
        replacements = {name: ir.Selection(ref, index=i) for i, name in enumerate(free)}
        body = substitute(value, replacements)
        argument = ir.Struct([ir.Reference(name, types[name]) for name in free])
        return parameter, ptype, body, argument

    def redex(self, value: ir.Node, depth: int = 0) -> ir.Node:
        """``value`` as a lambda applied where it is defined (maybe nested)."""
        parameter, ptype, body, argument = self.closed(value)
        if depth < 2 and self.draw(st.booleans()):
            body = self.redex(body, depth + 1)
        if not free_references(value):
            return ir.Call(ir.Lambda(None, None, body))
        return ir.Call(ir.Lambda(parameter, ptype, body), argument)

    def helper_call(self, value: ir.Node) -> ir.Node:
        """``value`` computed by a new module computation called with its free values."""
        parameter, ptype, body, argument = self.closed(value)
        name = self.fresh("helper")
        if not free_references(value):
            lam = ir.Lambda(None, None, body)
            self.helpers.append((name, lam))
            return ir.Call(ir.SymbolRef(name, lam.type_signature))
        lam = ir.Lambda(parameter, ptype, body)
        self.helpers.append((name, lam))
        return ir.Call(ir.SymbolRef(name, lam.type_signature), argument)

    def identity(self, t):
        x = self.fresh("x")
        return ir.Lambda(x, t, ir.Reference(x, t))

    def selector(self, t, index):
        x = self.fresh("x")
        return ir.Lambda(x, t, ir.Selection(ir.Reference(x, t), index=index))

    def rewrite_local(self, name: str, value: ir.Node, clients: list) -> list[tuple[str, ir.Node]]:
        """Locals that bind ``name`` to ``value``'s value in a messier way."""
        t = value.type_signature
        choice = self.draw(st.sampled_from(
            ["keep", "nest", "redex", "helper", "alias", "pack", "identity", "unzip", "zip", "duplicate", "dead"]))
        if choice == "nest":
            inner = self.fresh("n")
            return [(name, ir.Block([(inner, value)], ir.Reference(inner, t)))]
        if choice == "redex":
            return [(name, self.redex(value))]
        if choice == "helper":
            return [(name, self.helper_call(value))]
        if choice == "alias":
            first = self.fresh("a")
            return [(first, value), (name, ir.Reference(first, t))]
        if choice == "pack":
            first, packed = self.fresh("a"), self.fresh("s")
            struct = ir.Struct([ir.Reference(first, t), ("other", ir.Literal(F32(1.0)))])
            return [(first, value), (packed, struct), (name, ir.Selection(ir.Reference(packed, struct.type_signature), index=0))]
        if choice == "duplicate":
            copy = rename_bound(value, Names(value, taken={name}))
            if copy is value and any(isinstance(n, (ir.Lambda, ir.Block)) for n in value.walk()):
                return [(name, value)]
            return [(self.fresh("d"), copy), (name, value)]
        if choice == "dead":
            return [(name, value), (self.fresh("dead"), ir.intrinsic_call("add", ir.Struct([ir.Literal(F32(1.0)), ir.Literal(F32(2.0))])))]
        if isinstance(t, FederatedType) and not t.all_equal and choice == "identity":
            first = self.fresh("a")
            fn = self.identity(t.member)
            return [(first, value), (name, ir.intrinsic_call("federated_map", ir.Struct([fn, ir.Reference(first, t)])))]
        if isinstance(t, FederatedType) and t.placement is SERVER and choice == "identity":
            first = self.fresh("a")
            fn = self.identity(t.member)
            return [(first, value), (name, ir.intrinsic_call("federated_apply", ir.Struct([fn, ir.Reference(first, t)])))]
        if choice == "unzip" and t == FederatedType(VECTOR, CLIENTS) and clients:
            first, zipped = self.fresh("a"), self.fresh("z")
            other = self.draw(st.sampled_from(clients))
            z = ir.intrinsic_call("federated_zip_at_clients", ir.Struct([ir.Reference(first, t), other]))
            fn = self.selector(z.type_signature.member, 0)
            return [(first, value), (zipped, z),
                    (name, ir.intrinsic_call("federated_map", ir.Struct([fn, ir.Reference(zipped, z.type_signature)])))]
        if choice == "zip" and isinstance(t, FederatedType) and not t.all_equal and isinstance(t.member, StructType):
            first = self.fresh("a")
            ref = ir.Reference(first, t)
            maps = [ir.intrinsic_call("federated_map", ir.Struct([self.selector(t.member, i), ref])) for i in range(len(t.member))]
            return [(first, value), (name, ir.intrinsic_call("federated_zip_at_clients", ir.Struct(maps)))]
        return [(name, value)]

    def build(self) -> Module:
        root = self.module["round"]
        block = root.result
        if not isinstance(block, ir.Block):
            return self.module
        new_locals = []
        clients = []
        for name, value in block.locals:
            new_locals.extend(self.rewrite_local(name, value, clients))
            t = value.type_signature
            if t == FederatedType(VECTOR, CLIENTS):
                clients.append(ir.Reference(name, t))
        result = block.result
        if self.draw(st.booleans()):
            result = self.redex(result)
        body = ir.Block(new_locals, result)
        if self.draw(st.booleans()):
            body = ir.Block([(self.fresh("outer"), ir.Literal(F32(0.0)))], body)
        module = Module(self.module.name, self.helpers + [("round", ir.Lambda(root.parameter_name, root.parameter_type, body))])
        ir.verify(module)
        return module


@st.composite
def messy_programs(draw) -> Module:
    """A random program of ``programs()`` rewritten with the shapes the normal-form passes remove."""
    return _Messier(draw, draw(programs())).build()


any_programs = st.one_of(programs(), messy_programs())


def run(module: Module, pipeline: str) -> Module:
    return passes.run(module, pipeline).module


# --------------------------------------------------------------------------
# canonicalize turns ``local.add(%v[0], %v[1])`` into ``local.add(%v)``: a local op
# whose whole argument is a struct value. In a mapped lambda the reference
# interpreter batches it over the clients; it must still run.


def test_reference_interpreter_runs_a_local_op_on_a_batched_struct_argument():
    module = ir.parse_module(
        """
fedc.module @m {
  fedc.func @f(%x: {<float32,float32>}@CLIENTS) -> {float32}@CLIENTS {
    %f = fedc.lambda(%v: <float32,float32>) -> float32 {
      %0 = local.add(%v) : (<float32,float32> -> float32)
      fedc.return %0
    }
    %m = fed.map(%f, %x) : (<(<float32,float32> -> float32),{<float32,float32>}@CLIENTS> -> {float32}@CLIENTS)
    fedc.return %m
  }
}
"""
    )
    from fedc.computation import Computation

    assert_close(Computation(module, "f")([(1.0, 2.0), (3.0, 4.0)]), [3.0, 7.0])


# --------------------------------------------------------------------------
# Meaning is kept


@pytest.mark.parametrize("pipeline", NORMAL_FORM_PASSES + [PIPELINE])
@settings(max_examples=25)
@given(module=any_programs)
def test_passes_keep_the_meaning_of_random_programs(pipeline, module):
    assert_equivalent(module, run(module, pipeline), seeds=(0,))


@settings(max_examples=40)
@given(module=any_programs)
def test_call_dominant_form_of_random_programs(module):
    for pipeline in ("call-dominant", "inline,call-dominant", PIPELINE):
        result = run(module, pipeline)
        for symbol, node in result.items():
            assert is_call_dominant(node) is None, (pipeline, symbol, is_call_dominant(node), ir.print_module(result))


@settings(max_examples=40)
@given(module=messy_programs())
def test_the_pipeline_leaves_the_orchestration_flat(module):
    result = run(module, PIPELINE)
    body = result["round"].result
    for node in body.walk():
        if isinstance(node, ir.Call) and isinstance(node.function, ir.Lambda):
            pytest.fail("a lambda is still called where it is defined")
    locals_ = body.locals if isinstance(body, ir.Block) else ()
    for name, value in locals_:
        assert not isinstance(value, ir.Block)
        assert not (isinstance(value, ir.Call) and isinstance(value.function, ir.SymbolRef))


# --------------------------------------------------------------------------
# Idempotence and robustness on any verified IR


@pytest.mark.parametrize("pipeline", NORMAL_FORM_PASSES)
@settings(max_examples=30)
@given(module=st.one_of(any_programs, ir_modules()))
def test_passes_are_idempotent(pipeline, module):
    once = run(module, pipeline)
    twice = passes.run(once, pipeline)
    assert twice.module is once, ir.print_module(once) + "\n---\n" + ir.print_module(twice.module)


@settings(max_examples=60)
@given(module=ir_modules())
def test_passes_keep_random_verified_ir_verified(module):
    # the pass manager verifies after every pass
    for pipeline in NORMAL_FORM_PASSES + [PIPELINE, "call-dominant,dce,cse,canonicalize"]:
        result = run(module, pipeline)
        assert result.symbols == module.symbols
        for symbol in module.symbols:
            assert result[symbol].type_signature == module[symbol].type_signature
        if "call-dominant" in pipeline:
            for symbol, node in result.items():
                assert is_call_dominant(node) is None, (pipeline, symbol, is_call_dominant(node), ir.print_module(result))


@pytest.mark.parametrize("pipeline", NORMAL_FORM_PASSES)
def test_a_pass_with_nothing_to_do_returns_the_same_module(pipeline):
    module = ir.parse_module(
        """
fedc.module @m {
  fedc.func @f(%x: {float32}@CLIENTS) -> float32@SERVER {
    %mean = fed.mean(%x) : ({float32}@CLIENTS -> float32@SERVER)
    fedc.return %mean
  }
}
"""
    )
    result = passes.run(module, pipeline)
    assert result.module is module
    assert not result.statistics[0][1]


# --------------------------------------------------------------------------
# The checker


CT = FederatedType(np.float32, CLIENTS)
ARG = ir.Reference("arg", StructType([("x", CT), ("y", FederatedType(np.float32, SERVER))]))
X = ir.Selection(ARG, name="x")


def _mean(value):
    return ir.intrinsic_call("federated_mean", value)


def _f(body):
    return ir.Lambda("arg", ARG.type_signature, body)


def test_is_call_dominant_names_the_problem():
    m = ir.Reference("m", FederatedType(np.float32, SERVER))
    cases = [
        (_f(ir.Block([("a", ir.Block([("m", _mean(X))], m))], ir.Reference("a", m.type_signature))), "nested block"),
        (_f(ir.Block([("a", X), ("m", _mean(ir.Reference("a", CT)))], m)), "alias"),
        (_f(ir.Block([("m", _mean(X))], ir.Selection(ir.Struct([m, m]), index=0))), "struct literal"),
        (_f(_mean(X)), "result"),
        (_f(ir.Block([("m", _mean(ir.intrinsic_call("federated_broadcast", ir.Selection(ARG, name="y"))))], m)), "argument"),
        (_f(ir.Block([], X)), "without locals"),
        (_f(ir.Block([("l", ir.Call(ir.Lambda("v", CT, _mean(ir.Reference("v", CT))), X))], ir.Reference("l", m.type_signature))),
         "where it is defined"),
    ]
    for node, reason in cases:
        ir.verify(node)
        problem = is_call_dominant(node)
        assert problem is not None and reason in problem, (reason, problem)
    assert is_call_dominant(_f(ir.Block([("m", _mean(X))], m))) is None
    assert is_call_dominant(_f(X)) is None


def test_is_call_dominant_accepts_the_forms_of_docs_passes_md():
    module = ir.parse_module(
        """
fedc.module @m {
  fedc.func @g(%x: float32) -> float32 {
    fedc.return %x
  }

  fedc.func @f(%arg: <s=float32@SERVER,c={float32}@CLIENTS>) -> <float32@SERVER,float32@SERVER> {
    %b = fed.broadcast(%arg.s) : (float32@SERVER -> float32@CLIENTS)
    %f = fedc.lambda(%v: float32) -> float32 {
      %one = fedc.constant 1.0 : float32
      %w = local.add(%v, %one) : (<float32,float32> -> float32)
      fedc.return %w
    }
    %g = fedc.ref @g : (float32 -> float32)
    %m = fed.map(%f, %arg.c) : (<(float32 -> float32),{float32}@CLIENTS> -> {float32}@CLIENTS)
    %n = fed.map(%g, %b) : (<(float32 -> float32),float32@CLIENTS> -> {float32}@CLIENTS)
    %one = fedc.constant 1.0 : float32
    %two = fedc.call %f(%one) : float32
    %three = fedc.call @g(%two) : float32
    %p = fedc.placement SERVER : placement
    %mean = fed.mean : ({float32}@CLIENTS -> float32@SERVER)
    %s = fed.mean(%m) : ({float32}@CLIENTS -> float32@SERVER)
    %t = fed.mean(%n) : ({float32}@CLIENTS -> float32@SERVER)
    fedc.return <%s, %t>
  }
}
"""
    )
    for symbol, node in module.items():
        assert is_call_dominant(node) is None, (symbol, is_call_dominant(node))


# --------------------------------------------------------------------------
# FedAvg: Python-traced and .fed, through inline,call-dominant (and the clean-up passes)


@pytest.fixture(scope="module")
def fedavg_py():
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import fedavg
    finally:
        sys.path.remove(str(ROOT / "examples"))
    return fedavg


def _check_fedavg(module: Module, symbol: str, state, clients):
    from fedc.computation import Computation

    expected = Computation(module, symbol)(state, clients)
    for pipeline in ("inline,call-dominant", "call-dominant", PIPELINE):
        result = run(module, pipeline)
        for name, node in result.items():
            assert is_call_dominant(node) is None, (pipeline, name, is_call_dominant(node))
        body = result[symbol].result
        if pipeline != "call-dominant":
            # everything is inlined: the round is intrinsic calls on compiled functions
            assert not any(isinstance(n, ir.SymbolRef) for n in body.walk())
        actual = Computation(result, symbol)(state, clients)
        assert_close(actual, expected)


def test_python_fedavg_after_inline_call_dominant(fedavg_py):
    clients, _ = fedavg_py.make_data(num_clients=3)
    state = fedavg_py.initialize_fn()
    _check_fedavg(fedavg_py.next_fn.to_ir(), "next_fn", state, clients)


def test_fed_fedavg_after_inline_call_dominant(fedavg_py):
    from fedc.computation import Computation
    from fedc.frontend import fed

    module = fed.load(str(ROOT / "examples" / "fedavg.fed"), import_externs=True)
    clients, _ = fedavg_py.make_data(num_clients=3)
    state = Computation(module, "initialize")()
    inlined = run(module, "inline,call-dominant")
    assert_close(Computation(inlined, "initialize")(), state)
    _check_fedavg(module, "next", state, clients)


# --------------------------------------------------------------------------
# Helpers of passes/util.py


def test_coerce_converts_struct_names_and_all_equal_values():
    names = Names()
    t = StructType([TensorType(np.float32), TensorType(np.int32)])
    ref = ir.Reference("p", t)
    target = StructType([("a", TensorType(np.float32)), ("b", TensorType(np.int32))])
    converted = coerce(ref, target, names)
    assert converted.type_signature == target
    assert isinstance(converted, ir.Struct)
    all_equal = ir.Reference("b", FederatedType(np.float32, CLIENTS, all_equal=True))
    per_client = coerce(all_equal, FederatedType(np.float32, CLIENTS), names)
    assert per_client.type_signature == FederatedType(np.float32, CLIENTS)
    assert coerce(ir.Reference("v", TensorType(np.float32, [3])), TensorType(np.float32, [None]), names) is None


def test_alpha_normal_identifies_alpha_equivalent_lambdas():
    t = TensorType(np.float32)
    a = ir.Lambda("x", t, ir.Block([("y", ir.intrinsic_call("square", ir.Reference("x", t)))], ir.Reference("y", t)))
    b = ir.Lambda("u", t, ir.Block([("w", ir.intrinsic_call("square", ir.Reference("u", t)))], ir.Reference("w", t)))
    assert a != b
    assert alpha_normal(a) == alpha_normal(b)
    c = ir.Lambda("u", t, ir.Block([("w", ir.intrinsic_call("square", ir.Reference("z", t)))], ir.Reference("w", t)))
    assert alpha_normal(a) != alpha_normal(c)


def test_beta_reduction_converts_a_positional_argument_to_named_parameters():
    module = ir.parse_module(
        """
fedc.module @m {
  fedc.func @g(%p: <a={float32}@CLIENTS,b={float32}@CLIENTS>) -> {<a=float32,b=float32>}@CLIENTS {
    %z = fed.zip_at_clients(a=%p.a, b=%p.b) : (<a={float32}@CLIENTS,b={float32}@CLIENTS> -> {<a=float32,b=float32>}@CLIENTS)
    fedc.return %z
  }

  fedc.func @f(%x: {float32}@CLIENTS) -> {<a=float32,b=float32>}@CLIENTS {
    %r = fedc.call @g(%x, %x) : {<a=float32,b=float32>}@CLIENTS
    fedc.return %r
  }
}
"""
    )
    for pipeline in ("inline", "call-dominant", "inline,call-dominant", PIPELINE):
        result = run(module, pipeline)
        assert_equivalent(module, result, "f")
    result = run(module, PIPELINE)
    assert "fed.zip_at_clients(a=%x, b=%x)" in ir.print_module(result)


def test_an_argument_that_cannot_take_the_parameter_type_keeps_the_call():
    """float32[3] fits a float32[?] parameter, but no expression converts it: the call stays."""
    module = ir.parse_module(
        """
fedc.module @m {
  fedc.func @norm(%v: float32[?]) -> float32 {
    %s = local.reduce_sum(%v) : (float32[?] -> float32)
    fedc.return %s
  }

  fedc.func @f(%x: float32[3]) -> <float32,float32> {
    %a = fedc.call @norm(%x) : float32
    %0 = fedc.lambda(%w: float32[?]) -> float32 {
      %t = local.reduce_sum(%w) : (float32[?] -> float32)
      fedc.return %t
    }
    %b = fedc.call %0(%x) : float32
    fedc.return <%a, %b>
  }
}
"""
    )
    for pipeline in NORMAL_FORM_PASSES + [PIPELINE]:
        result = run(module, pipeline)
        assert_equivalent(module, result, "f")
        if "call-dominant" in pipeline:
            assert is_call_dominant(result["f"]) is None
    text = ir.print_module(run(module, PIPELINE))
    assert "fedc.call @norm(%x)" in text


def test_a_placement_free_part_of_a_placed_parameter_keeps_its_local():
    """A local lambda may use %k, not the placed %arg that %k selects from."""
    module = ir.parse_module(
        """
fedc.module @m {
  fedc.func @f(%arg: <x={float32}@CLIENTS,k=float32>) -> {float32}@CLIENTS {
    %k = fedc.select %arg.k : float32
    %fn = fedc.lambda(%v: float32) -> float32 {
      %0 = local.multiply(%v, %k) : (<float32,float32> -> float32)
      fedc.return %0
    }
    %m = fed.map(%fn, %arg.x) : (<(float32 -> float32),{float32}@CLIENTS> -> {float32}@CLIENTS)
    fedc.return %m
  }
}
"""
    )
    for pipeline in NORMAL_FORM_PASSES + [PIPELINE]:
        result = run(module, pipeline)
        assert_equivalent(module, result, "f")
        if "call-dominant" in pipeline:
            assert is_call_dominant(result["f"]) is None
    assert "%k = fedc.select %arg.k : float32" in ir.print_module(run(module, PIPELINE))


def test_an_all_equal_argument_for_a_per_client_parameter_is_mapped():
    module = ir.parse_module(
        """
fedc.module @m {
  fedc.func @mean(%v: {float32}@CLIENTS) -> float32@SERVER {
    %m = fed.mean(%v) : ({float32}@CLIENTS -> float32@SERVER)
    fedc.return %m
  }

  fedc.func @f(%s: float32@SERVER) -> float32@SERVER {
    %b = fed.broadcast(%s) : (float32@SERVER -> float32@CLIENTS)
    %r = fedc.call @mean(%b) : float32@SERVER
    fedc.return %r
  }
}
"""
    )
    for pipeline in ("inline", "inline,call-dominant", PIPELINE):
        result = run(module, pipeline)
        assert_equivalent(module, result, "f")
        assert "fedc.call @mean" not in ir.print_module(result)
    assert is_call_dominant(run(module, PIPELINE)["f"]) is None
