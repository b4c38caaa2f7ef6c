"""The IR's constant folder: the values of constant expressions, and a clear refusal of the rest."""

import numpy as np
import pytest

from fedc import ir
from fedc.ir.constant import FOLDABLE_OPS, NotConstant, fold
from fedc.ir.module import Module
from fedc.types import CLIENTS, FederatedType, TensorType

I32 = TensorType(np.int32)
F32 = TensorType(np.float32)


def lit(value, t=I32):
    return ir.Literal(value, t)


def op(uri, *operands, **attrs):
    argument = operands[0] if len(operands) == 1 else ir.Struct(list(operands))
    return ir.intrinsic_call(uri, argument, **attrs)


def test_literals_structs_selections_and_blocks_fold():
    x = ir.Reference("x", I32)
    block = ir.Block([("x", lit(20))], ir.Struct([("bits", x), ("twice", op("add", x, x))]))
    assert fold(block) == (np.int32(20), np.int32(40))
    assert fold(ir.Selection(block, name="twice")) == 40
    assert fold(ir.Selection(block, name="twice")).dtype == np.int32


def test_arithmetic_matches_numpy_on_integers():
    a, b = lit(17), lit(5)
    for uri, expected in [("add", 22), ("subtract", 12), ("multiply", 85), ("floor_divide", 3), ("mod", 2),
                          ("maximum", 17), ("minimum", 5), ("pow", 17**5)]:
        value = fold(op(uri, a, b))
        assert value == expected and value.dtype == np.int32, uri
    assert fold(op("negative", a)) == -17
    assert fold(op("abs", lit(-3))) == 3
    assert fold(op("cast", lit(7), dtype="int64")).dtype == np.int64
    assert set(FOLDABLE_OPS) >= {"add", "multiply", "cast"}


def test_lambdas_and_constant_computations_of_the_module():
    p = ir.Reference("p", I32)
    double = ir.Lambda("p", I32, op("multiply", p, lit(2)))
    bounds = ir.Struct([lit(3), lit(4)])
    module = Module("m", [("bounds", bounds), ("double", double)])
    expression = ir.Call(ir.SymbolRef("double", double.type_signature),
                         ir.Selection(ir.SymbolRef("bounds", bounds.type_signature), index=1))
    assert fold(expression, module) == 8


def test_overflow_is_an_error_not_a_wrapped_value():
    big = lit(2**31 - 1)
    with pytest.raises(NotConstant, match=r"add of constants gives a value outside int32"):
        fold(op("add", big, lit(1)))
    with pytest.raises(NotConstant, match=r"floor_divide of constants fails"):
        fold(op("floor_divide", lit(1), lit(0)))


def test_what_is_not_a_constant_is_named():
    clients = ir.Reference("c", FederatedType(F32, CLIENTS))
    with pytest.raises(NotConstant, match=r"^%c of type \{float32\}@CLIENTS is not bound to a constant$"):
        fold(clients)
    with pytest.raises(NotConstant, match=r"^reduce_sum is not folded to a constant"):
        fold(op("reduce_sum", ir.Literal(np.ones(3, np.int32))))
    with pytest.raises(NotConstant, match=r"is a function, not a constant"):
        fold(ir.Lambda("p", I32, ir.Reference("p", I32)))
    with pytest.raises(NotConstant, match=r"@missing is not a computation of the module"):
        fold(ir.SymbolRef("missing", I32))
