"""``Computation``: a named computation with the computations it calls, callable like a Python function."""

from __future__ import annotations

import inspect
from typing import Callable, Mapping, Optional, Sequence

from fedc import context
from fedc.errors import FedcTypeError
from fedc.ir.building_blocks import Node
from fedc.ir.module import Module
from fedc.ir.transform import SymbolTable, rename_symbols
from fedc.types import FunctionType, StructType, Type

__all__ = ["Computation", "PolymorphicComputation"]


class Computation:
    """A named computation, callable like a Python function.

    It is either the entry ``symbol`` of a ``module`` that also holds its
    callees (``Computation(module, symbol)``), or — as tracing builds it — one
    IR node with the computations it calls by name
    (:meth:`Computation.from_callees`), whose module is assembled on the first
    :meth:`to_ir`. The second form keeps building a program of N computations
    that call each other O(N): a trace never copies its callees' modules.

    Calling it asks the current context (:mod:`fedc.context`) to invoke it:
    outside tracing it runs on the current backend (see
    :func:`fedc.set_default_backend`) and returns Python values; inside a
    ``@fedc.federated_computation`` being traced, it adds a call to the traced
    IR instead. Its picture is :func:`fedc.viz.to_graphviz`.
    """

    # Marks calls of a computation as code that AutoGraph (tf.function's rewriting of Python control
    # flow) calls as it is: when a traced body calls a computation, fedc's machinery is not rewritten
    # (which would only re-read and re-trace fedc's own source on every trace). TensorFlow's mark.
    autograph_info__ = frozenset()

    def __init__(
        self,
        module: Module,
        symbol: str,
        parameter_names: Optional[Sequence[str]] = None,
        python_function: Optional[Callable] = None,
    ):
        if not isinstance(module, Module):
            raise FedcTypeError(f"a Computation is built from a fedc.ir.Module, not {type(module).__name__}")
        self._init(module[symbol], symbol, None, module, parameter_names, python_function)

    @classmethod
    def from_callees(
        cls,
        symbol: str,
        node: Node,
        callees: Mapping[str, "Computation"],
        parameter_names: Optional[Sequence[str]] = None,
        python_function: Optional[Callable] = None,
    ) -> "Computation":
        """The computation ``node`` named ``symbol``, whose ``@name`` references mean ``callees[name]``.

        The callees' own names may clash with each other's callees: :meth:`to_ir`
        renames clashing computations (identical ones are shared), keeping
        ``symbol`` for this one.
        """
        for name, callee in callees.items():
            if not isinstance(callee, Computation):
                raise FedcTypeError(f"callee @{name} must be a fedc.Computation, not {type(callee).__name__}")
        computation = cls.__new__(cls)
        computation._init(node, symbol, dict(callees), None, parameter_names, python_function)
        return computation

    def _init(self, node, symbol, callees, module, parameter_names, python_function) -> None:
        self._node = node
        self._symbol = symbol
        self._callees = callees
        self._module = module
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
        return self._node.type_signature

    @property
    def parameter_names(self) -> Optional[tuple]:
        """The Python parameter names packed into a struct parameter, if there were several."""
        return self._parameter_names

    def to_ir(self) -> Module:
        """The module holding this computation (last) and every computation it calls."""
        if self._module is None:
            self._module = _assemble(self)
        return self._module

    @property
    def node(self) -> Node:
        """This computation's own IR node as built (cheap: no module is assembled).

        Its ``@name`` references name the computations of :meth:`to_ir` when built
        from a module, or its callees (:meth:`from_callees`) when traced; use
        :attr:`ir` for the node exactly as it appears in :meth:`to_ir`.
        """
        return self._node

    @property
    def ir(self) -> Node:
        """The IR of this computation alone (its symbols named as in :meth:`to_ir`)."""
        return self.to_ir()[self._symbol]

    def to_text(self, **options) -> str:
        """The textual IR of :meth:`to_ir`."""
        from fedc.ir.text import print_module

        return print_module(self.to_ir(), **options)

    def serialize(self) -> bytes:
        """Protobuf bytes of :meth:`to_ir` (see :func:`fedc.ir.deserialize`)."""
        from fedc.ir.serialization import serialize

        return serialize(self.to_ir())

    def __call__(self, *args, **kwargs):
        return context.current().invoke(self, args, kwargs)

    def __repr__(self) -> str:
        return f"<fedc.Computation {self._symbol}: {self.type_signature}>"


def _assemble(root: Computation) -> Module:
    """The module of ``root`` and its callees, callees first (in order of first call), ``root`` last.

    Each computation is visited once (an explicit stack: call chains may be
    thousands deep). A callee whose name is taken by a different computation
    (or by ``root``) gets a suffix and the references to it are renamed;
    computations equal after renaming share one entry.
    """
    table = SymbolTable(reserved=[root.name])
    assigned: dict[int, str] = {}
    stack: list[tuple[Computation, bool]] = [(root, False)]
    while stack:
        computation, expanded = stack.pop()
        key = id(computation)
        if key in assigned:
            continue
        if computation._callees is None:
            # Built from a module: its module holds its callees already.
            assigned[key] = table.merge(computation._module)[computation._symbol]
            continue
        if not expanded:
            stack.append((computation, True))
            stack.extend((c, False) for c in reversed(list(computation._callees.values())) if id(c) not in assigned)
            continue
        renames = {
            local: assigned[id(callee)]
            for local, callee in computation._callees.items()
            if assigned[id(callee)] != local
        }
        node = rename_symbols(computation._node, renames)
        if computation is root:
            table.put(root.name, node)
            assigned[key] = root.name
        else:
            assigned[key] = table.add(computation._symbol, node)
    return table.module(root.name)


class PolymorphicComputation:
    """A computation declared without types: traced once per parameter type, as TFF does.

    ``@fedc.federated_computation`` and ``@fedc.tf_computation`` on a function
    with parameters but no declared types make one. It is specialised where
    its parameter type becomes known: called (the type is inferred from the
    arguments, or, inside tracing, taken from the traced values) or passed to
    an intrinsic (which says what it is applied to). :meth:`specialize`
    traces the function for one parameter type and caches the
    :class:`Computation`; a function of several parameters takes a struct
    named after them (an unnamed struct is named so). Until specialised it
    has no type: :attr:`type_signature` raises a :class:`FedcTypeError` that
    is also an ``AttributeError`` (TFF's polymorphic computations have no such
    attribute).
    """

    # Marks calls of a computation as code that AutoGraph (tf.function's rewriting of Python control
    # flow) calls as it is: when a traced body calls a computation, fedc's machinery is not rewritten
    # (which would only re-read and re-trace fedc's own source on every trace). TensorFlow's mark.
    autograph_info__ = frozenset()

    def __init__(
        self,
        trace: Callable[[Type], Computation],
        name: str,
        python_function: Callable,
        kind: str = "tf_computation",
    ):
        self._trace = trace
        self._name = name
        self._kind = kind
        self._parameters = tuple(inspect.signature(python_function).parameters)
        self._cache: dict = {}
        self.__wrapped__ = python_function
        self.__doc__ = python_function.__doc__

    @property
    def name(self) -> str:
        return self._name

    @property
    def parameters(self) -> tuple:
        """The Python function's parameter names."""
        return self._parameters

    def parameter_type(self, types: Sequence[Type]) -> Type:
        """The parameter type for arguments of ``types``, one per Python parameter."""
        if len(self._parameters) == 1:
            return types[0]
        return StructType(list(zip(self._parameters, types)))

    def bind(self, args: tuple, kwargs: dict) -> list:
        """The arguments of a call, one per Python parameter, in order (by position or keyword)."""
        return context.bind_named_arguments(self._name, self._parameters, args, kwargs)

    def _normalized(self, parameter_type: Optional[Type]) -> Type:
        names = self._parameters
        if len(names) == 1 and parameter_type is not None:
            return parameter_type
        listed = f"{len(names)} parameter{'s' if len(names) != 1 else ''} ({', '.join(names)})"
        if not isinstance(parameter_type, StructType) or len(parameter_type) != len(names):
            raise FedcTypeError(f"{self._kind} {self._name!r} takes {listed}, but is applied to a value of type {parameter_type}")
        element_names = parameter_type.names()
        if all(n is None for n in element_names):
            return StructType(list(zip(names, parameter_type)))
        if set(element_names) != set(names):
            raise FedcTypeError(
                f"{self._kind} {self._name!r} takes {listed}, but is applied to a value of type "
                f"{parameter_type}, whose elements are named otherwise"
            )
        return parameter_type

    def specialize(self, parameter_type: Optional[Type]) -> Computation:
        """The :class:`Computation` for ``parameter_type`` (traced on first use, then cached)."""
        key = self._normalized(parameter_type)
        if key not in self._cache:
            self._cache[key] = self._trace(key)
        return self._cache[key]

    @property
    def type_signature(self):
        raise _Untyped(
            f"{self._kind} {self._name!r} was declared without types: it has a type only once "
            "specialised (call it, or pass it to an intrinsic)"
        )

    def __call__(self, *args, **kwargs):
        return context.current().invoke_polymorphic(self, args, kwargs)

    def __repr__(self) -> str:
        return f"<fedc.PolymorphicComputation {self._name}>"


class _Untyped(FedcTypeError, AttributeError):
    """The type signature of a computation declared without types, asked before it is specialised."""
