"""Building intrinsic calls with their types inferred by the registry's type rules."""

from __future__ import annotations

from typing import Optional

from fedc.errors import SourceLocation
from fedc.ir import intrinsics
from fedc.ir.building_blocks import Call, Intrinsic, Node

__all__ = ["call"]


def call(uri: str, argument: Optional[Node] = None, location: Optional[SourceLocation] = None, **attrs) -> Call:
    """Builds ``Call(Intrinsic(uri, <inferred type>), argument)``; a :class:`FedcTypeError` on misuse."""
    definition = intrinsics.lookup(uri)
    parameter = None if argument is None else argument.type_signature
    fn_type = definition.instance_type(parameter, definition.normalize_attrs(attrs))
    return Call(Intrinsic(uri, fn_type, attrs, location), argument, location)
