"""tf_computations with strings, and tf_computations that call tf_computations.

fedc's ``str`` is text: a tf_computation's string results come back as
``str`` (TFF returns ``bytes``; docs/tff.md), bytes given for a ``str``
parameter are read as UTF-8, and anything that is not text is refused with a
FedcError. A tf_computation called in another's body is inlined into the
graph TensorFlow is building, as in TFF.
"""

import collections
import re

import numpy as np
import pytest

import fedc
from fedc import ir

tf = pytest.importorskip("tensorflow")

STRING = fedc.TensorType(np.str_)
TEXTS = ["Hello, World!", "", "café", "日本語", "emoji 🙂", "a" * 10_000]


def test_hello_world_returns_text():
    hello = fedc.tf_computation(lambda: "Hello, World!")
    result = hello()
    assert result == "Hello, World!" and isinstance(result, str)
    assert str(hello.type_signature) == "( -> str)"


@pytest.mark.parametrize("text", TEXTS)
def test_string_results_and_parameters_round_trip(text):
    identity = fedc.tf_computation(tf.string)(lambda s: tf.identity(s))
    length = fedc.tf_computation(tf.string)(lambda s: tf.strings.length(s, unit="UTF8_CHAR"))
    assert identity(text) == text
    assert identity(text.encode("utf-8")) == text  # bytes are read as UTF-8
    assert length(text) == len(text)
    words = fedc.tf_computation(fedc.TensorType(np.str_, [2]))(lambda s: tf.strings.join([s[1], s[0]]))
    assert words([text, "x"]) == "x" + text
    pair = fedc.tf_computation(lambda: tf.constant([text, text + "!"]))()
    assert pair.tolist() == [text, text + "!"] and pair.dtype == object  # str tensors hold Python strings exactly


@pytest.mark.parametrize("data", [b"\xff", b"ok\xfe", b"\xc3", b"\xed\xa0\x80"])  # not UTF-8
def test_bytes_that_are_not_text_are_refused(data):
    identity = fedc.tf_computation(tf.string)(lambda s: tf.identity(s))
    with pytest.raises(fedc.FedcTypeError, match=r"argument .s. of lambda: the bytes .* are not UTF-8 text"):
        identity(data)
    with pytest.raises(fedc.FedcTypeError, match="not UTF-8"):
        identity([data])  # inside a list too
    returned = fedc.tf_computation(lambda: tf.constant(data))
    with pytest.raises(fedc.FedcError, match=r"returned the string .* which is not UTF-8 text.*tf.io.decode_raw"):
        returned()
    federated = fedc.federated_computation(STRING)(lambda s: s)
    with pytest.raises(fedc.FedcTypeError, match="not UTF-8"):
        federated(data)


@pytest.mark.parametrize("value, kind", [("abc", "str"), (b"abc", "bytes"), (["a", "b"], "str"), ([b"a", b"b"], "bytes")])
@pytest.mark.parametrize("dtype", [tf.int32, tf.float32, tf.bool])
def test_strings_for_other_dtypes_are_refused(value, kind, dtype):
    shape = [2] if isinstance(value, list) else []
    plus = fedc.tf_computation(fedc.TensorType(dtype, shape))(lambda x: x)
    message = f"argument 'x' of lambda: a {kind} value does not convert to {tf.as_dtype(dtype).name}"
    with pytest.raises(fedc.FedcTypeError, match=re.escape(message)):
        plus(value)


Pair = collections.namedtuple("Pair", "total product")


def test_a_tf_computation_calls_tf_computations_inlined():
    double = fedc.tf_computation(tf.int32)(lambda x: x * 2)

    @fedc.tf_computation(tf.int32, tf.int32)
    def both(x, y):
        return Pair(x + y, x * y)

    @fedc.tf_computation(tf.int32)
    def outer(x):
        p = both(double(x), x)
        return p.total + double(p.product) + double(double(x))

    for x in range(-3, 4):
        assert outer(x) == (3 * x) + 2 * (2 * x * x) + 4 * x
    assert str(outer.type_signature) == "(int32 -> int32)"
    # The result is one graph: it serializes, loads and runs as a TensorFlow block, also mapped over clients.
    (node,) = [n for _, n in outer.to_ir().items()]
    assert isinstance(node, ir.Compiled)
    assert fedc.Computation(ir.deserialize(ir.serialize(outer.to_ir())), outer.name)(5) == outer(5)
    mapped = fedc.federated_computation(fedc.FederatedType(np.int32, fedc.CLIENTS))(
        lambda xs: fedc.federated_map(outer, xs))
    assert mapped([1, 2, 3]) == [outer(1), outer(2), outer(3)]


def test_calls_pass_structures_strings_and_untyped_callees():
    @fedc.tf_computation(fedc.StructType([("u", tf.float32), ("v", tf.float32)]))
    def sum_and_difference(s):
        return {"sum": s["u"] + s["v"], "difference": s["u"] - s["v"]}

    @fedc.tf_computation(tf.float32)
    def product_of_both(x):
        r = sum_and_difference({"u": x, "v": 1.0})
        return r["sum"] * r["difference"]

    assert product_of_both(3.0) == pytest.approx(8.0)
    greet = fedc.tf_computation(tf.string)(lambda s: tf.strings.join(["hi ", s]))
    assert fedc.tf_computation(tf.string)(lambda s: greet(greet(s)))("bob") == "hi hi bob"
    assert fedc.tf_computation(lambda: greet("world"))() == "hi world"
    increment = fedc.tf_computation(lambda x: x + 1)  # polymorphic: specialised to the traced tensor
    assert fedc.tf_computation(tf.int64)(lambda x: increment(x) * 2)(np.int64(4)) == 10
    total = fedc.tf_computation(fedc.TensorType(np.float32, [None]))(lambda v: tf.reduce_sum(v))
    assert fedc.tf_computation(fedc.TensorType(np.float32, [3]))(lambda x: total(x))([1, 2, 3]) == 6


def test_calls_that_cannot_be_inlined_are_clear_errors():
    double = fedc.tf_computation(tf.int32)(lambda x: x * 2)
    pair = fedc.tf_computation(fedc.TensorType(np.int32, [2]))(lambda x: x[0])
    federated = fedc.federated_computation(fedc.TensorType(np.int32))(lambda x: x)
    cases = [
        (tf.float32, lambda x: double(x), r"argument of 'lambda': expected int32, got a tensor of type float32 \(convert it with tf.cast\)"),
        (tf.int32, lambda x: pair(x), r"expected int32\[2\], got a tensor of type int32"),
        (tf.int32, lambda x: federated(x), "which is not a tf_computation; a tf_computation's body can call only other tf_computations"),
        (tf.int32, lambda x: double(x, x), "takes one argument"),
    ]
    for dtype, body, message in cases:
        with pytest.raises(fedc.FedcError, match=message):
            fedc.tf_computation(dtype)(body)


def test_autograph_can_be_turned_off_for_code_that_needs_none():
    import tensorflow as tf

    def clipped(x):
        if x > 1.0:  # Python control flow on a tensor: AutoGraph makes it a tf.cond
            return tf.constant(1.0)
        return x

    with_autograph = fedc.tf_computation(np.float32)(clipped)
    assert float(with_autograph(np.float32(3.0))) == 1.0 and float(with_autograph(np.float32(0.5))) == 0.5
    with pytest.raises(fedc.FedcError, match="failed while being traced by TensorFlow"):
        fedc.tf_computation(np.float32, autograph=False)(clipped)  # traced as written: a tensor is not a bool
    straight = fedc.tf_computation(np.float32, autograph=False)(lambda x: tf.minimum(x, 1.0))
    assert float(straight(np.float32(3.0))) == 1.0
