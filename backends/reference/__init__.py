"""The reference backend: the oracle every other backend is checked against.

``get_backend("reference").compile(module, symbol)`` verifies the module,
checks that every op it uses has a reference rule (:data:`RULES`, naming any
that does not), and returns an executable,
``executable(argument, num_clients=None)``, that runs the computation on the
interpreter (:mod:`.interpreter`). :func:`run_round` runs one round of a
MapReduce form (:mod:`fedc.ir.mapreduce`) the way a deployment would.
"""

from __future__ import annotations

from typing import Any, Optional

from fedc.backends.base import Backend
from fedc.limits import deep_recursion
from fedc.ir.module import Module
from fedc.types import FunctionType

from .interpreter import Interpreter
from .intrinsics import RULES
from .mapreduce import run_round

__all__ = ["RULES", "ReferenceBackend", "ReferenceExecutable", "run_round"]


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


class ReferenceBackend(Backend):
    """Runs verified IR on the reference interpreter; needs no passes."""

    name = "reference"
    rules = RULES

    def build(self, module: Module, symbol: str) -> ReferenceExecutable:
        return ReferenceExecutable(module, symbol)
