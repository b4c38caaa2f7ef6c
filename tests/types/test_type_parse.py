"""Parsing types from text: located errors (``<type>:LINE:COL``, the line, a caret)."""

import pytest

import fedc
from fedc.types import (
    CLIENTS,
    FederatedType,
    FunctionType,
    StructType,
    TensorType,
    parse,
)

FEDAVG = (
    "(<<float32[784,10],float32[10]>@SERVER,{<float32[?,784],int32[?,1]>*}@CLIENTS>"
    " -> <float32[784,10],float32[10]>@SERVER)"
)
FEDAVG_FORMATTED = parse(FEDAVG).formatted_representation()


def parse_error(text):
    with pytest.raises(fedc.ParseError) as info:
        parse(text)
    return info.value


def assert_located(error, text, line, column, message, filename="<type>"):
    """The error is at ``line:column`` and shows that line with a caret under the column."""
    rendered = str(error).splitlines()
    assert rendered[0] == f"{filename}:{line}:{column}: {error.message}"
    assert message in error.message
    assert error.location == fedc.SourceLocation(filename, line, column)
    source_line = text.splitlines()[line - 1]
    assert rendered[1] == "  " + source_line
    assert rendered[2] == "  " + " " * (column - 1) + "^"
    assert len(rendered) == 3


@pytest.mark.parametrize(
    "text, column, message",
    [
        ("{float32}@CLIENT", 11, "unknown placement 'CLIENT'; expected CLIENTS or SERVER"),
        ("{float32}@clients", 11, "unknown placement 'clients'"),
        ("float32@EVERYWHERE", 9, "unknown placement 'EVERYWHERE'"),
        ("flot32", 1, "unknown dtype 'flot32'; known dtypes: bool, int8"),
        ("<a=int32,b=float33[2]>", 12, "unknown dtype 'float33'"),
        ("'flot'(shape=None)", 1, "unknown dtype 'flot'"),
        ("<int32,>", 8, "syntax error in type: unexpected '>'; expected '(', '<', '{', a name or quoted dtype"),
        ("<a=>", 4, "unexpected '>'"),
        ("(int32 ->", 10, "unexpected end of input; expected '(', '<', '{', a name or quoted dtype"),
        ("(int32 -> int32", 16, "unexpected end of input; expected ')'"),
        ("{float32@CLIENTS", 17, "unexpected end of input; expected '}'"),
        ("{int32}", 8, "unexpected end of input; expected '@'"),
        ("<int32", 7, "unexpected end of input"),
        ("float32@", 9, "unexpected end of input; expected a name"),
        ("float32[2", 10, "unexpected end of input; expected ',' or ']'"),
        ("<a=int32,a=float32>", 10, "struct element name 'a' appears twice"),
        ("<a=int32,b=int32,a=float32>", 18, "struct element name 'a' appears twice"),
        ("{int32@SERVER}@CLIENTS", 1, "cannot contain federated types"),
        ("<a=int32,b={int32@SERVER}@CLIENTS>", 12, "cannot contain federated types"),
        ("{(int32 -> int32)}@CLIENTS", 1, "cannot contain function types"),
        ("{placement}@CLIENTS", 1, "cannot contain placement types"),
        ("<{float32}@CLIENTS>*", 1, "a sequence element must be tensors or structs of tensors"),
        ("<a=int32,b=<{float32}@CLIENTS>*>", 12, "a sequence element must be tensors or structs of tensors"),
        ("<a=int32*>*", 1, "a sequence element must be tensors or structs of tensors, not <a=int32*>"),
        ("float32[-1]", 9, "unexpected character '-'"),
        ("float32[2.5]", 10, "unexpected character '.'"),
        ("float32[2,]", 11, "unexpected ']'; expected '?' or an integer"),
        ("float32[*,2]", 10, "unexpected ','; expected ']'"),
        ("'float32'(shape=1)", 17, "unexpected '1'; expected a name"),
        ("'float32'(size=None)", 11, "expected (shape=None) after a quoted dtype"),
        ("'float32'(shape=Nothing)", 11, "expected (shape=None) after a quoted dtype"),
        ("<x=int32>>", 10, "unexpected '>'"),
        ("int32 int32", 7, "unexpected 'int32'"),
        ("<a=int32 b=int32>", 10, "unexpected 'b'"),
        ("float32[?]@SERVER*", 18, "unexpected '*'"),
        ("int32@SERVER@SERVER", 13, "unexpected '@'"),
        ("1nt32", 1, "unexpected '1'"),
        ("<1=int32>", 2, "unexpected '1'"),
    ],
)
def test_single_line_errors_are_located(text, column, message):
    assert_located(parse_error(text), text, 1, column, message)


def test_unbalanced_braces_and_brackets():
    for text, column in [("{<int32>@CLIENTS", 17), ("<<int32>", 9), ("((int32 -> int32)", 18)]:
        assert_located(parse_error(text), text, 1, column, "unexpected end of input")
    for text, column in [("<int32>>", 8), ("(int32 -> int32))", 17), ("{int32}}@CLIENTS", 8)]:
        assert_located(parse_error(text), text, 1, column, "unexpected")


def test_empty_text():
    error = parse_error("")
    assert str(error).startswith("<type>:1:1: syntax error in type: unexpected end of input")
    error = parse_error("   ")
    assert error.location.column == 4


@pytest.mark.parametrize(
    "text, line, column, message",
    [
        ("<\n  a=int32,\n  b=flot32\n>", 3, 5, "unknown dtype 'flot32'"),
        ("<\n  a=int32,\n  a=int32\n>", 3, 3, "struct element name 'a' appears twice"),
        ("<\n  int32,\n>", 3, 1, "unexpected '>'"),
        ("<\n  a=int32\n", 2, 10, "unexpected end of input; expected ',' or '>'"),
        (FEDAVG_FORMATTED.replace("int32[?,1]", "int32[?,1"), 9, 3, "unexpected '>'; expected ',' or ']'"),
        (FEDAVG_FORMATTED.replace("@CLIENTS", "@CLIENT"), 9, 7, "unknown placement 'CLIENT'"),
        (FEDAVG_FORMATTED.replace("float32[?,784]", "flot32[?,784]"), 7, 5, "unknown dtype 'flot32'"),
        (FEDAVG_FORMATTED[:-1], 13, 9, "unexpected end of input; expected ')'"),
        (FEDAVG_FORMATTED.replace("{<", "{<\n    {int32@SERVER}@CLIENTS,"), 7, 5, "cannot contain federated types"),
    ],
)
def test_multi_line_errors_name_the_right_line(text, line, column, message):
    assert_located(parse_error(text), text, line, column, message)


def test_formatted_fedavg_parses():
    assert FEDAVG_FORMATTED.count("\n") == 12
    assert parse(FEDAVG_FORMATTED) == parse(FEDAVG)


def test_error_names_the_given_file():
    text = "<a=int32,b=flot>"
    with pytest.raises(fedc.ParseError) as info:
        parse(text, "model.fed")
    assert_located(info.value, text, 1, 12, "unknown dtype 'flot'", filename="model.fed")


def test_parse_error_is_a_fedc_error_and_a_value_error():
    error = parse_error("flot32")
    assert isinstance(error, fedc.FedcError)
    assert isinstance(error, ValueError)
    assert error.source == "flot32"


def test_parse_rejects_non_strings():
    with pytest.raises(fedc.FedcTypeError, match="expects a string, got int"):
        parse(3)


def test_valid_texts():
    assert parse("float32[?,784]") == TensorType("float32", [None, 784])
    assert parse("{float32}@CLIENTS") == FederatedType("float32", CLIENTS)
    assert parse("<a=int32,float32>") == StructType([("a", "int32"), "float32"])
    assert parse("( -> int32)") == FunctionType(None, "int32")
    assert parse("(->int32)") == FunctionType(None, "int32")
    assert parse("<>") == StructType([])
    assert parse("<<>>") == StructType([StructType([])])


def test_empty_brackets_are_an_error():
    assert_located(parse_error("int32[]"), "int32[]", 1, 7, "unexpected ']'")
