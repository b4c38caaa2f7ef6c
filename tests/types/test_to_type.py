"""``fedc.types.to_type``: Python, numpy and TensorFlow specs to fedc types."""

import collections
import dataclasses
import typing

import attrs
import numpy as np
import pytest

import fedc
from fedc.types import (
    CLIENTS,
    FederatedType,
    SequenceType,
    StructType,
    TensorType,
    parse,
    to_type,
)


class Point(typing.NamedTuple):
    x: typing.Any
    y: typing.Any


@attrs.define
class AttrsPoint:
    x: typing.Any
    y: typing.Any


@dataclasses.dataclass
class DataPoint:
    x: typing.Any
    y: typing.Any


# --------------------------------------------------------------------------
# dtypes


@pytest.mark.parametrize(
    "spec, text",
    [
        (np.float32, "float32"),
        (np.int32, "int32"),
        (np.int64, "int64"),
        (np.uint8, "uint8"),
        (np.float16, "float16"),
        (np.float64, "float64"),
        (np.complex64, "complex64"),
        (np.bool_, "bool"),
        (np.str_, "str"),
        (np.dtype("float32"), "float32"),
        (np.dtype(np.int16), "int16"),
        (np.dtype("U10"), "str"),
        (np.dtype("S3"), "str"),
        (bool, "bool"),
        (int, "int32"),
        (float, "float32"),
        (str, "str"),
        (bytes, "str"),
    ],
)
def test_dtypes_become_scalar_tensors(spec, text):
    t = to_type(spec)
    assert isinstance(t, TensorType)
    assert t.shape == ()
    assert str(t) == text


def test_a_type_is_returned_unchanged():
    t = parse("{float32}@CLIENTS")
    assert to_type(t) is t


@pytest.mark.parametrize(
    "spec, text",
    [
        ("{float32}@CLIENTS", "{float32}@CLIENTS"),
        ("<x=float32[?,784],y=int32[?,1]>*", "<x=float32[?,784],y=int32[?,1]>*"),
        ("float32[*]", "float32[*]"),
        ("int32", "int32"),
    ],
)
def test_strings_are_parsed(spec, text):
    assert str(to_type(spec)) == text


def test_bad_string_raises_parse_error():
    with pytest.raises(fedc.ParseError, match="unknown dtype 'flot'"):
        to_type("flot")


# --------------------------------------------------------------------------
# (dtype, shape) pairs


@pytest.mark.parametrize(
    "spec, text",
    [
        ((np.float32, [None, 784]), "float32[?,784]"),
        ((np.float32, (2, 3)), "float32[2,3]"),
        ((np.int32, [None]), "int32[?]"),
        ((np.int32, [-1, 2]), "int32[?,2]"),
        ((np.int32, ()), "int32"),
        ((np.int32, []), "int32"),
        ((np.int32, 3), "int32[3]"),
        ((np.int32, None), "int32[*]"),
        ((float, [2]), "float32[2]"),
        ((np.dtype("int64"), (np.int64(4),)), "int64[4]"),
        ((str, [None]), "str[?]"),
    ],
)
def test_dtype_shape_pairs(spec, text):
    t = to_type(spec)
    assert isinstance(t, TensorType)
    assert str(t) == text


def test_pair_with_bad_shape_is_rejected():
    with pytest.raises(fedc.FedcTypeError, match=r"\[2, -2\] is not a shape: dimension -2"):
        to_type((np.float32, [2, -2]))


def test_pair_of_specs_is_a_struct():
    t = to_type(((np.int32, [2]), (np.float32, [3])))
    assert str(t) == "<int32[2],float32[3]>"
    assert t.python_container is tuple
    t = to_type((np.int32, np.float32))
    assert str(t) == "<int32,float32>"


# --------------------------------------------------------------------------
# containers


def test_dict_becomes_named_struct_remembering_dict():
    t = to_type({"a": np.int32, "b": (np.float32, [2])})
    assert str(t) == "<a=int32,b=float32[2]>"
    assert t.python_container is dict


def test_ordered_dict():
    t = to_type(collections.OrderedDict([("b", np.int32), ("a", np.float32)]))
    assert str(t) == "<b=int32,a=float32>"
    assert t.python_container is collections.OrderedDict


def test_list_and_tuple():
    t = to_type([np.int32, np.float32])
    assert str(t) == "<int32,float32>"
    assert t.python_container is list
    t = to_type((np.int32, np.float32, np.bool_))
    assert str(t) == "<int32,float32,bool>"
    assert t.python_container is tuple


def test_empty_containers():
    assert to_type([]) == StructType([])
    assert to_type([]).python_container is list
    assert to_type({}).python_container is dict
    assert to_type(()).python_container is tuple


def test_namedtuple():
    t = to_type(Point(np.int32, (np.float32, [2])))
    assert str(t) == "<x=int32,y=float32[2]>"
    assert t.python_container is Point
    Plain = collections.namedtuple("Plain", ["a"])
    assert to_type(Plain(np.int32)).python_container is Plain


def test_attrs_instance():
    t = to_type(AttrsPoint(np.int32, np.float32))
    assert str(t) == "<x=int32,y=float32>"
    assert t.python_container is AttrsPoint


def test_dataclass_instance():
    t = to_type(DataPoint(np.int32, [np.float32, np.bool_]))
    assert str(t) == "<x=int32,y=<float32,bool>>"
    assert t.python_container is DataPoint
    assert t["y"].python_container is list


def test_nested_containers_remember_each_container():
    t = to_type({"model": [(np.float32, [784, 10]), (np.float32, [10])], "lr": np.float32})
    assert str(t) == "<model=<float32[784,10],float32[10]>,lr=float32>"
    assert t.python_container is dict
    assert t["model"].python_container is list


def test_name_spec_pairs_are_a_named_struct_without_container():
    t = to_type([("a", np.int32), ("b", (np.float32, [2]))])
    assert str(t) == "<a=int32,b=float32[2]>"
    assert t.python_container is None
    t = to_type((("x", np.int32),))
    assert str(t) == "<x=int32>"
    assert t.python_container is None


def test_mixed_named_and_unnamed_elements():
    t = to_type([("a", np.int32), np.float32])
    assert str(t) == "<a=int32,float32>"


def test_container_equality_ignores_container():
    assert to_type({"a": np.int32}) == to_type([("a", np.int32)])
    assert to_type({"x": np.int32, "y": np.int32}) == to_type(Point(np.int32, np.int32))
    assert to_type([np.int32]) == to_type((np.int32,))


def test_specs_inside_type_constructors():
    t = FederatedType({"x": (np.float32, [None, 784])}, CLIENTS)
    assert str(t) == "{<x=float32[?,784]>}@CLIENTS"
    assert str(SequenceType([np.int32, np.float32])) == "<int32,float32>*"


# --------------------------------------------------------------------------
# rejected specs


class Opaque:
    def __repr__(self):
        return "Opaque()"


@pytest.mark.parametrize(
    "spec, fragments",
    [
        (Opaque(), ["Opaque()", "(a Python Opaque)", "as a fedc type"]),
        (3, ["3", "(a Python int)"]),
        (np.float32(1.0), ["(a Python float32)"]),
        (np.datetime64, ["datetime64", "not supported"]),
        (np.dtype("datetime64[s]"), ["datetime64[s]", "not supported"]),
        (np.object_, ["dtype object is not supported"]),
        (None, ["None is not a type"]),
        ((np.float32, [1.5]), ["1.5"]),
        (np.zeros(3), ["array([0., 0., 0.])", "(a Python ndarray)"]),
        ({"a": Opaque()}, ["Opaque()"]),
        ({1: np.int32}, ["1", "not an identifier"]),
    ],
)
def test_unsupported_specs_raise_type_error_naming_the_thing(spec, fragments):
    with pytest.raises(fedc.FedcTypeError) as info:
        to_type(spec)
    for fragment in fragments:
        assert fragment in str(info.value)


# --------------------------------------------------------------------------
# TensorFlow


def test_tf_dtypes():
    tf = pytest.importorskip("tensorflow")
    assert to_type(tf.float32) == TensorType(np.float32)
    assert to_type(tf.int64) == TensorType(np.int64)
    assert to_type(tf.bool) == TensorType(np.bool_)
    assert to_type(tf.string) == TensorType(np.str_)
    assert to_type((tf.float32, [None, 2])) == TensorType(np.float32, [None, 2])
    assert to_type((tf.int32, tf.TensorShape([None, 2]))) == TensorType(np.int32, [None, 2])


@pytest.mark.parametrize("name", ["bfloat16", "variant", "resource", "qint8"])
def test_unsupported_tf_dtypes_are_rejected(name):
    tf = pytest.importorskip("tensorflow")
    with pytest.raises(fedc.FedcTypeError, match=f"dtype {name} .*not supported"):
        to_type(getattr(tf, name))


def test_tf_tensor_specs():
    tf = pytest.importorskip("tensorflow")
    assert str(to_type(tf.TensorSpec([None, 784], tf.float32))) == "float32[?,784]"
    assert str(to_type(tf.TensorSpec([], tf.int32))) == "int32"
    assert str(to_type(tf.TensorSpec(None, tf.float32))) == "float32[*]"
    assert str(to_type(tf.TensorSpec([2, None, 3], tf.string))) == "str[2,?,3]"


def test_tf_nested_specs():
    tf = pytest.importorskip("tensorflow")
    t = to_type([tf.TensorSpec([2], tf.float32), {"b": tf.TensorSpec([], tf.bool)}])
    assert str(t) == "<float32[2],<b=bool>>"


def test_tf_dataset_element_spec_and_dataset_spec():
    tf = pytest.importorskip("tensorflow")
    ds = tf.data.Dataset.from_tensor_slices(
        {"x": np.zeros((10, 784), np.float32), "y": np.zeros((10, 1), np.int32)}
    ).batch(2)
    element = to_type(ds.element_spec)
    assert str(element) == "<x=float32[?,784],y=int32[?,1]>"
    assert element.python_container is dict
    sequence = to_type(tf.data.DatasetSpec.from_value(ds))
    assert isinstance(sequence, SequenceType)
    assert str(sequence) == "<x=float32[?,784],y=int32[?,1]>*"
    assert str(to_type(tf.data.DatasetSpec(tf.TensorSpec([None], tf.int32)))) == "int32[?]*"
    assert str(to_type(tf.data.Dataset.range(3).element_spec)) == "int64"


def test_tf_unsupported_specs_are_named():
    tf = pytest.importorskip("tensorflow")
    with pytest.raises(fedc.FedcTypeError, match="RaggedTensorSpec") as info:
        to_type(tf.RaggedTensorSpec([None, None], tf.float32))
    assert "not supported" in str(info.value)
    with pytest.raises(fedc.FedcTypeError, match="SparseTensorSpec"):
        to_type(tf.SparseTensorSpec([3], tf.float32))
    with pytest.raises(fedc.FedcTypeError, match="RaggedTensorSpec"):
        to_type({"a": tf.RaggedTensorSpec([None, None], tf.float32)})


def test_tf_values_are_not_specs():
    tf = pytest.importorskip("tensorflow")
    with pytest.raises(fedc.FedcTypeError, match="EagerTensor"):
        to_type(tf.constant([1.0, 2.0]))


def test_tf_unknown_rank_shape_must_be_given_as_none():
    tf = pytest.importorskip("tensorflow")
    with pytest.raises(fedc.FedcTypeError, match="shape=None"):
        to_type((tf.float32, tf.TensorShape(None)))
