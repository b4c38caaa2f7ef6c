"""``Computation``: a named computation with its module, callable like a Python function."""

from __future__ import annotations

from typing import Callable, Optional, Sequence

from fedc import context
from fedc.errors import FedcTypeError
from fedc.ir.building_blocks import Node
from fedc.ir.module import Module
from fedc.types import FunctionType, Type

__all__ = ["Computation", "PolymorphicComputation"]


class Computation:
    """A computation: the entry ``symbol`` of ``module`` (which also holds its callees).

    Calling it asks the current context (:mod:`fedc.context`) to invoke it:
    outside tracing it runs on the current backend (see
    :func:`fedc.set_default_backend`) and returns Python values; inside a
    ``@fedc.federated_computation`` being traced, it adds a call to the traced
    IR instead. Its picture is :func:`fedc.viz.to_graphviz`.
    """

    def __init__(
        self,
        module: Module,
        symbol: str,
        parameter_names: Optional[Sequence[str]] = None,
        python_function: Optional[Callable] = None,
    ):
        self._module = module
        self._symbol = symbol
        self._parameter_names = tuple(parameter_names) if parameter_names else None
        self._python_function = python_function
        if python_function is not None:
            self.__doc__ = python_function.__doc__
            self.__wrapped__ = python_function

    @property
    def name(self) -> str:
        return self._symbol

    @property
    def type_signature(self) -> FunctionType:
        t = self._module[self._symbol].type_signature
        return t

    @property
    def parameter_names(self) -> Optional[tuple]:
        """The Python parameter names packed into a struct parameter, if there were several."""
        return self._parameter_names

    def to_ir(self) -> Module:
        """The module holding this computation (last) and every computation it calls."""
        return self._module

    @property
    def ir(self) -> Node:
        """The IR of this computation alone."""
        return self._module[self._symbol]

    def to_text(self, **options) -> str:
        """The textual IR of :meth:`to_ir`."""
        from fedc.ir.text import print_module

        return print_module(self._module, **options)

    def serialize(self) -> bytes:
        """Protobuf bytes of :meth:`to_ir` (see :func:`fedc.ir.deserialize`)."""
        from fedc.ir.serialization import serialize

        return serialize(self._module)

    def __call__(self, *args, **kwargs):
        return context.current().invoke(self, args, kwargs)

    def __repr__(self) -> str:
        return f"<fedc.Computation {self._symbol}: {self.type_signature}>"


class PolymorphicComputation:
    """A ``@fedc.tf_computation`` without declared types: specialised at each call site.

    ``specialize(parameter_type)`` returns (and caches) the :class:`Computation`
    for one parameter type; calling it infers the parameter type from the
    arguments (or, inside tracing, from the traced values).
    """

    def __init__(self, trace: Callable[[Optional[Type]], Computation], name: str, python_function: Callable):
        self._trace = trace
        self._name = name
        self._cache: dict = {}
        self.__wrapped__ = python_function
        self.__doc__ = python_function.__doc__

    @property
    def name(self) -> str:
        return self._name

    def specialize(self, parameter_type: Optional[Type]) -> Computation:
        key = parameter_type
        if key not in self._cache:
            self._cache[key] = self._trace(parameter_type)
        return self._cache[key]

    @property
    def type_signature(self):
        raise FedcTypeError(
            f"tf_computation {self._name!r} was declared without types: it has a type only once "
            "specialised (call it, or pass it to an intrinsic)"
        )

    def __call__(self, *args, **kwargs):
        return context.current().invoke_polymorphic(self, args, kwargs)

    def __repr__(self) -> str:
        return f"<fedc.PolymorphicComputation {self._name}>"
