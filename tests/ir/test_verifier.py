"""The verifier accepts valid IR and names the node for each kind of violation."""

import numpy as np
import pytest

from fedc import ir, types
from fedc.errors import SourceLocation, VerificationError

CLIENT_F32 = types.parse("{float32}@CLIENTS")
F32 = types.parse("float32")


def mean_of(name="t"):
    return ir.intrinsic_call("federated_mean", ir.Reference(name, CLIENT_F32))


def test_temperature_module_verifies():
    module = ir.Module("temperature", {"avg": ir.Lambda("t", CLIENT_F32, mean_of())})
    ir.verify(module)


def test_unbound_reference_is_named_with_its_location():
    loc = SourceLocation("algo.fed", 3, 7)
    body = ir.intrinsic_call("federated_mean", ir.Reference("u", CLIENT_F32, loc))
    module = ir.Module("m", {"avg": ir.Lambda("t", CLIENT_F32, body)})
    with pytest.raises(VerificationError) as info:
        ir.verify(module)
    message = str(info.value)
    assert "@avg" in message and "algo.fed:3:7" in message and "%u" in message
    assert "{float32}@CLIENTS" in message


def test_reference_with_wrong_type():
    body = ir.Reference("t", types.parse("{float64}@CLIENTS"))
    with pytest.raises(VerificationError, match=r"used with type \{float64\}@CLIENTS but is bound with type \{float32\}@CLIENTS"):
        ir.verify(ir.Lambda("t", CLIENT_F32, body))


def test_block_local_bound_twice():
    block = ir.Block([("a", ir.Literal(1.0)), ("a", ir.Literal(2.0))], ir.Reference("a", F32))
    with pytest.raises(VerificationError, match="%a is bound again"):
        ir.verify(block)


def test_local_shadowing_a_parameter_breaks_ssa():
    block = ir.Block([("t", ir.Literal(1.0))], mean_of())
    with pytest.raises(VerificationError, match="SSA"):
        ir.verify(ir.Lambda("t", CLIENT_F32, block))


def test_later_local_sees_earlier_one_but_not_the_reverse():
    good = ir.Block([("a", ir.Literal(1.0)), ("b", ir.Reference("a", F32))], ir.Reference("b", F32))
    ir.verify(good)
    bad = ir.Block([("b", ir.Reference("a", F32)), ("a", ir.Literal(1.0))], ir.Reference("b", F32))
    with pytest.raises(VerificationError, match="%a .* is not bound"):
        ir.verify(bad)


def test_federated_intrinsic_inside_mapped_function_is_illegal():
    inner = ir.Block([("m", mean_of("t"))], ir.Reference("v", F32))
    fn = ir.Lambda("v", F32, inner)
    mapped = ir.intrinsic_call("federated_map", ir.Struct([fn, ir.Reference("t", CLIENT_F32)]))
    with pytest.raises(VerificationError, match="federated intrinsic federated_mean is used inside a local function"):
        ir.verify(ir.Lambda("t", CLIENT_F32, mapped))


def test_local_function_capturing_a_placed_value_is_illegal():
    server = types.parse("float32@SERVER")
    fn = ir.Lambda("v", F32, ir.Block([("leak", ir.Reference("s", server))], ir.Reference("v", F32)))
    arg = types.StructType([("s", server), ("t", CLIENT_F32)])
    body = ir.Block(
        [("s", ir.Selection(ir.Reference("arg", arg), name="s")),
         ("t", ir.Selection(ir.Reference("arg", arg), name="t"))],
        ir.intrinsic_call("federated_map", ir.Struct([fn, ir.Reference("t", CLIENT_F32)])),
    )
    with pytest.raises(VerificationError, match=r"uses the placed value %s of type float32@SERVER"):
        ir.verify(ir.Lambda("arg", arg, body))


def test_local_function_may_capture_local_values():
    fn = ir.Lambda("v", F32, ir.intrinsic_call("add", ir.Struct([ir.Reference("v", F32), ir.Reference("k", F32)])))
    body = ir.Block([("k", ir.Literal(np.float32(0.5)))], ir.intrinsic_call("federated_map", ir.Struct([fn, ir.Reference("t", CLIENT_F32)])))
    ir.verify(ir.Lambda("t", CLIENT_F32, body))


def test_symbol_references_resolve_with_their_types():
    add_half_type = types.parse("(float32 -> float32)")
    add_half = ir.Lambda("x", F32, ir.intrinsic_call("add", ir.Struct([ir.Reference("x", F32), ir.Literal(np.float32(0.5))])))
    caller = ir.Lambda("y", F32, ir.Call(ir.SymbolRef("add_half", add_half_type), ir.Reference("y", F32)))
    ir.verify(ir.Module("m", [("add_half", add_half), ("caller", caller)]))

    wrong = ir.Lambda("y", F32, ir.Call(ir.SymbolRef("add_half", types.parse("(float32 -> float32[1])")), ir.Reference("y", F32)))
    with pytest.raises(VerificationError, match=r"@add_half is used with type \(float32 -> float32\[1\]\) but has type \(float32 -> float32\)"):
        ir.verify(ir.Module("m", [("add_half", add_half), ("caller", wrong)]))

    missing = ir.Lambda("y", F32, ir.Call(ir.SymbolRef("add_hlaf", add_half_type), ir.Reference("y", F32)))
    with pytest.raises(VerificationError, match=r"@add_hlaf is not a computation of module @m"):
        ir.verify(ir.Module("m", [("add_half", add_half), ("caller", missing)]))


def test_symbol_reference_outside_a_module():
    with pytest.raises(VerificationError, match="there is no module"):
        ir.verify(ir.SymbolRef("f", F32))


def test_recursion_between_computations_is_rejected():
    fn = types.parse("( -> float32)")
    a = ir.Lambda(None, None, ir.Call(ir.SymbolRef("b", fn)))
    b = ir.Lambda(None, None, ir.Call(ir.SymbolRef("a", fn)))
    with pytest.raises(VerificationError, match=r"cycle: @a -> @b -> @a"):
        ir.verify(ir.Module("m", {"a": a, "b": b}))
    selfcall = ir.Lambda(None, None, ir.Call(ir.SymbolRef("a", fn)))
    with pytest.raises(VerificationError, match=r"cycle: @a -> @a"):
        ir.verify(ir.Module("m", {"a": selfcall}))


def test_verify_rejects_non_ir():
    with pytest.raises(VerificationError, match="expects a Module or an IR node"):
        ir.verify("not ir")
