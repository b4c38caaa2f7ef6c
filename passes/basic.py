"""Passes that every pipeline may use: verification and location stripping."""

from __future__ import annotations

from fedc.ir import building_blocks as bb
from fedc.ir.module import Module
from fedc.ir.transform import rewrite
from fedc.ir.verifier import verify

from .manager import PassContext, register


@register("verify")
def verify_pass(module: Module, ctx: PassContext) -> Module:
    """Checks every IR invariant and changes nothing."""
    verify(module)
    ctx.stat("computations-verified", len(module))
    return module


@register("strip-locations")
def strip_locations(module: Module, ctx: PassContext) -> Module:
    """Removes source locations from every node (smaller, location-free IR)."""

    def strip(node: bb.Node):
        if node.location is None:
            return None
        ctx.stat("locations-removed")
        return node.with_location(None)

    return Module(module.name, [(symbol, rewrite(node, strip)) for symbol, node in module.items()])
