"""The reference interpreter: the oracle every other backend is checked against.

``BACKEND.compile(module, symbol)`` verifies the module, checks that every
intrinsic it uses has a reference implementation (naming any that does not),
and returns an executable: ``executable(argument, num_clients=None)``.
"""

from __future__ import annotations

from typing import Any, Optional

from fedc.errors import UnsupportedError
from fedc.ir import building_blocks as bb
from fedc.ir.building_blocks import deep_recursion
from fedc.ir.module import Module
from fedc.types import FunctionType

from . import intrinsics as _intrinsics  # noqa: F401  (attaches the implementations)
from .interpreter import Interpreter

__all__ = ["BACKEND", "ReferenceBackend"]


def unsupported_intrinsics(module: Module, backend_name: str) -> list[tuple[str, str]]:
    """(intrinsic, computation) pairs that ``backend_name`` has no implementation for."""
    missing = []
    for symbol, root in module.items():
        for node in root.walk():
            if isinstance(node, bb.Intrinsic) and backend_name not in node.definition.impls:
                missing.append((node.uri, symbol))
    return sorted(set(missing))


class ReferenceExecutable:
    """A module's computation, ready to run on the reference interpreter."""

    def __init__(self, module: Module, symbol: str):
        self.module = module
        self.symbol = symbol

    @deep_recursion
    def __call__(self, argument: Any = None, num_clients: Optional[int] = None) -> Any:
        interpreter = Interpreter(self.module, num_clients)
        value = interpreter.symbol(self.symbol)
        if isinstance(self.module[self.symbol].type_signature, FunctionType):
            return value(argument)
        return value


class ReferenceBackend:
    name = "reference"

    def compile(self, module: Module, symbol: str) -> ReferenceExecutable:
        from fedc.ir.verifier import verify

        verify(module)
        missing = unsupported_intrinsics(module, self.name)
        if missing:
            listed = ", ".join(f"{uri} (in @{where})" for uri, where in missing)
            raise UnsupportedError(f"the {self.name} backend does not implement {listed}")
        return ReferenceExecutable(module, symbol)


BACKEND = ReferenceBackend()
