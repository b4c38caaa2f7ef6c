"""fedc's IR: building blocks, the intrinsic registry, modules, the verifier,
the textual form and protobuf serialization."""

from fedc.ir.building_blocks import (
    Block,
    Call,
    Compiled,
    Data,
    Intrinsic,
    Lambda,
    Literal,
    Node,
    Placement,
    Reference,
    Selection,
    Struct,
    SymbolRef,
    equal,
)
from fedc.ir.build import call as intrinsic_call
from fedc.ir.intrinsics import IntrinsicDef, IntrinsicKind, Role, all_definitions, lookup, with_kind, with_role
from fedc.ir.module import Module


def verify(target, module=None):
    """Checks every invariant of a module or node; raises VerificationError."""
    from fedc.ir.verifier import verify as _verify

    return _verify(target, module)


def print_module(module, **options) -> str:
    """The textual IR of a module."""
    from fedc.ir.text import print_module as _print

    return _print(module, **options)


def parse_module(text: str, filename: str = "<ir>", trusted: bool = False, verify: bool = True):
    """Parses textual IR into a verified module (``trusted``: admit TensorFlow payloads using any op;
    ``verify=False``: also IR that does not verify)."""
    from fedc.ir.text import parse_module as _parse

    return _parse(text, filename, trusted=trusted, verify=verify)


def print_node(node) -> str:
    """The textual IR of a single computation outside a module."""
    from fedc.ir.text import print_node as _print

    return _print(node)


def parse_node(text: str, filename: str = "<ir>", trusted: bool = False):
    """Parses the textual IR of a single computation (as printed by print_node)."""
    from fedc.ir.text import parse_node as _parse

    return _parse(text, filename, trusted=trusted)


def serialize(module) -> bytes:
    """The protobuf bytes of a module."""
    from fedc.ir.serialization import serialize as _serialize

    return _serialize(module)


def deserialize(data: bytes, **limits):
    """A module from protobuf bytes; never runs code; SerializationError on bad bytes.

    Keywords: ``max_bytes``, ``max_depth``, and ``trusted`` (admit TensorFlow
    payloads using any op, not only :mod:`fedc.tensorflow_ops`'s allowlist).
    """
    from fedc.ir.serialization import deserialize as _deserialize

    return _deserialize(data, **limits)
