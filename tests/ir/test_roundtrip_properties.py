"""Property tests: random types and random well-typed IR survive every round trip."""

import pytest
from hypothesis import given, strategies as st

import strategies
from fedc import ir, types
from fedc.errors import SerializationError


@given(strategies.types())
def test_type_print_parse_roundtrip(t):
    assert types.parse(t.compact_representation()) == t
    assert types.parse(t.formatted_representation()) == t
    assert types.parse(str(t)).compact_representation() == str(t)


def _same_with_locations(a: ir.Module, b: ir.Module) -> bool:
    return a == b and all(ir.equal(a[s], b[s], locations=True) for s in a)


@given(strategies.ir_modules())
def test_random_modules_verify(module):
    ir.verify(module)


@given(strategies.ir_modules())
def test_text_roundtrip(module):
    text = ir.print_module(module)
    parsed = ir.parse_module(text)
    assert _same_with_locations(parsed, module), text
    assert ir.print_module(parsed) == text


@given(strategies.ir_modules())
def test_protobuf_roundtrip(module):
    restored = ir.deserialize(ir.serialize(module))
    assert _same_with_locations(restored, module)
    ir.verify(restored)


@given(strategies.ir_modules(max_computations=1, max_depth=2), st.data())
def test_mutated_bytes_never_crash(module, data):
    """Flipping bytes of a valid serialization gives a module or a SerializationError."""
    raw = bytearray(ir.serialize(module))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(raw) - 1))
        raw[position] = data.draw(st.integers(0, 255))
    try:
        restored = ir.deserialize(bytes(raw))
    except SerializationError:
        return
    assert isinstance(restored, ir.Module)


def test_deep_trees_compare_print_parse_serialize_and_verify():
    """A chain of local ops nested to fedc's limit survives every walk; one level more is refused."""
    import numpy as np

    from fedc.limits import MAX_NESTING, NestingError

    f32 = types.TensorType(np.float32)
    x = ir.Reference("x", f32)
    while x.depth + 3 <= MAX_NESTING - 1:  # each add is a call of a struct; the lambda adds one
        x = ir.intrinsic_call("add", ir.Struct([x, ir.Literal(np.float32(1.0))]))
    module = ir.Module("deep", {"f": ir.Lambda("x", f32, x)})
    twin = ir.Module("deep", {"f": ir.Lambda("x", f32, x)})
    assert module == twin and module["f"].depth >= MAX_NESTING - 3
    ir.verify(module)
    assert ir.parse_module(ir.print_module(module)) == module
    assert ir.deserialize(ir.serialize(module)) == module  # what fedc writes, it reads
    with pytest.raises(NestingError, match="MAX_NESTING"):
        for _ in range(2):
            x = ir.intrinsic_call("add", ir.Struct([x, ir.Literal(np.float32(1.0))]))