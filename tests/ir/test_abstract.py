"""The abstract evaluator of the IR: a subclass that tracks which parameters each value depends on."""

import numpy as np

from fedc import ir
from fedc.ir.abstract import LOCAL, MIXED, Closure, Evaluator, IntrinsicFn, Pack, SymbolFn, leaves, placement_of
from fedc.types import CLIENTS, SERVER, FederatedType, StructType, TensorType, to_type

F32 = TensorType(np.float32)


class Depends(Evaluator):
    """A value is the frozenset of parameter names it is computed from; calls record their uri."""

    def __init__(self, module):
        super().__init__(module)
        self.calls = []

    def free_reference(self, node, context):
        return frozenset([node.name])

    def select(self, source, node, step, context):
        return source

    def data(self, node, context, name):
        return frozenset([f"data:{node.uri}"])

    def constant(self, node, context, name):
        return frozenset()

    def flat(self, value):
        if isinstance(value, frozenset):
            return value
        out = frozenset()
        for _, _, leaf in leaves(value):
            out |= self.flat(leaf) if not isinstance(leaf, (Closure, IntrinsicFn, SymbolFn)) else frozenset()
        return out

    def apply_intrinsic(self, intrinsic, argument, node, context, name):
        self.calls.append((context, intrinsic.uri, name))
        return self.flat(argument) if argument is not None else frozenset()

    def apply_opaque(self, function, argument, node, context, name):
        self.calls.append((context, "opaque", name))
        return self.flat(argument) if argument is not None else frozenset()


def ref(name, t):
    return ir.Reference(name, to_type(t))


def test_blocks_packs_selections_and_closures():
    x, y = ref("x", "float32"), ref("y", "float32")
    add = ir.Lambda("p", StructType([F32, F32]), ir.intrinsic_call("add", ref("p", "<float32,float32>")))
    body = ir.Block(
        [("f", add), ("pair", ir.Struct([("a", x), ("b", y)])), ("s", ir.Call(ir.Reference("f", add.type_signature),
                                                                             ir.Struct([x, ir.Literal(np.float32(1))])))],
        ir.Struct([ir.Selection(ir.Reference("pair", to_type("<a=float32,b=float32>")), name="b"),
                   ir.Reference("s", F32)]),
    )
    walker = Depends(ir.Module("m", {}))
    value = walker.evaluate(body, {}, "top")
    assert isinstance(value, Pack)
    assert value.elements[0][1] == frozenset(["y"])  # the selection took the element out of the pack
    assert value.elements[1][1] == frozenset(["x"])  # the closure was applied: add of x and a constant
    assert walker.calls == [("top", "add", None)]  # bound to %s, but called inside the lambda's body
    assert [(i, s) for i, s, _ in leaves(value)] == [((0,), ("[0]",)), ((1,), ("[1]",))]


def test_function_values_and_symbols():
    clients = FederatedType(F32, CLIENTS)
    module = ir.Module("m", {"g": ir.Lambda("v", clients, ir.intrinsic_call("federated_mean", ref("v", clients)))})
    call = ir.Call(ir.SymbolRef("g", module["g"].type_signature), ref("d", clients))
    walker = Depends(module)
    assert walker.evaluate(call, {}, "c", "r") == frozenset(["d"])
    assert walker.calls == [("c", "opaque", "r")]  # apply_symbol defaults to an opaque call
    intrinsic = walker.evaluate(ir.Intrinsic("federated_sum", "({float32}@CLIENTS -> float32@SERVER)"), {}, "c")
    assert isinstance(intrinsic, IntrinsicFn) and intrinsic.intrinsic.uri == "federated_sum"


def test_placement_of():
    assert placement_of(FederatedType(F32, SERVER)) == "SERVER"
    assert placement_of(StructType([FederatedType(F32, CLIENTS)] * 2)) == "CLIENTS"
    assert placement_of(StructType([FederatedType(F32, CLIENTS), FederatedType(F32, SERVER)])) == MIXED
    assert placement_of(F32) == placement_of(StructType([])) == placement_of(None) == LOCAL
