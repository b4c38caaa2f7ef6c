"""Contexts: what calling a computation means here and now.

Calling a :class:`~fedc.Computation` asks the *current context* to invoke it.
Contexts form a per-thread stack:

* an :class:`ExecutionContext` holds a backend (:mod:`fedc.backends.base`).
  It converts and checks the arguments against the computation's type,
  compiles the computation once — the backend's pipeline of passes, then
  ``backend.compile`` — caches the executable (keyed by computation and
  backend), runs it and converts the result back to Python values;
* while a ``@fedc.federated_computation`` is traced, its tracer is the current
  context (:mod:`fedc.frontend.tracing`), and a call adds IR instead.

At the bottom of the stack is the default execution context, on
``fedc.backends.base.DEFAULT_BACKEND`` ("tf") unless set::

    fedc.set_default_backend("reference")
    with fedc.backend("reference"):
        ...
"""

from __future__ import annotations

import abc
import contextlib
import inspect
import threading
import warnings
import weakref
from typing import Any, Iterator, Optional, Sequence

from fedc.backends.base import DEFAULT_BACKEND, Backend, Executable, available_backends, get_backend as _named_backend
from fedc.errors import FedcError, FedcTypeError, FedcWarning
from fedc.limits import deep_recursion
from fedc.types import StructType, Type, infer_type
from fedc.values import Clients, from_python, to_python

__all__ = [
    "Context",
    "ExecutionContext",
    "available_backends",
    "backend",
    "bind_named_arguments",
    "current",
    "execution_context",
    "get_backend",
    "installed",
    "invoke",
    "set_default_backend",
]


def bind_named_arguments(callee: str, names: Sequence[str], args: tuple, kwargs: dict) -> list:
    """The values for parameters ``names`` from positional and keyword arguments, in order.

    Raises :class:`FedcTypeError` naming ``callee`` for too many, unknown,
    repeated or missing arguments.
    """
    if len(args) > len(names):
        raise FedcTypeError(f"{callee} takes {len(names)} arguments ({', '.join(names)}), got {len(args)}")
    values = dict(zip(names, args))
    for key, value in kwargs.items():
        if key not in names:
            raise FedcTypeError(f"{callee} has no parameter {key!r}; its parameters are {', '.join(names)}")
        if key in values:
            raise FedcTypeError(f"{callee} got parameter {key!r} twice")
        values[key] = value
    missing = [n for n in names if n not in values]
    if missing:
        raise FedcTypeError(f"{callee} is missing argument(s) {', '.join(missing)}")
    return [values[n] for n in names]


class Context(abc.ABC):
    """What a call of a computation does in this context."""

    @abc.abstractmethod
    @deep_recursion  # arguments nest as deeply as their types may (fedc.limits.MAX_NESTING)
    def invoke(self, computation, args: tuple, kwargs: dict) -> Any:
        """A call of ``computation`` (a :class:`~fedc.Computation`) with Python arguments."""

    @abc.abstractmethod
    @deep_recursion
    def invoke_polymorphic(self, computation, args: tuple, kwargs: dict) -> Any:
        """A call of a :class:`~fedc.PolymorphicComputation`, specialised to the arguments."""


#: The name of the round a computation is wrapped in when its backend runs rounds as MapReduce forms.
_ROUND_NAME = "distributed_round"


class ExecutionContext(Context):
    """Runs computations on one backend, compiling each once (through the backend's pipeline)."""

    def __init__(self, backend: Backend):
        if not isinstance(backend, Backend):
            raise FedcError(f"an execution context needs a fedc Backend, not {type(backend).__name__}")
        self.backend = backend
        self._compiled: "weakref.WeakKeyDictionary[Any, Executable]" = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    @property
    def pipeline(self) -> str:
        """The passes run before the backend compiles a computation."""
        return self.backend.pipeline

    def compile(self, computation) -> Executable:
        """The executable of ``computation`` on this context's backend (compiled once, then cached)."""
        with self._lock:
            executable = self._compiled.get(computation)
        if executable is not None:
            return executable
        module = computation.to_ir()
        if self.pipeline:
            from fedc import passes

            module = passes.run(module, self.pipeline).module
        lowered = self._as_round(module, computation.name) if self.backend.round_pipeline else None
        if lowered is not None:
            executable = self.backend.compile_round(module, computation.name, *lowered)
        else:
            executable = self.backend.compile(module, computation.name)
        with self._lock:
            return self._compiled.setdefault(computation, executable)

    def _as_round(self, module, symbol: str):
        """``(form, wrapping)``: the MapReduce form of ``@symbol`` wrapped as a round, or None when it has none.

        A computation without client data, or not returning values at the
        server, is not a round (None, silently). One that is but does not
        lower (two rounds of broadcast and aggregation, say) runs as it is,
        with a warning saying why it does not run as a MapReduce round.
        """
        from fedc import passes
        from fedc.ir.mapreduce import wrap_as_round

        try:
            wrapped, wrapping = wrap_as_round(module, symbol, name=_ROUND_NAME)
        except FedcError:
            return None
        try:
            form = passes.run(wrapped, f"{self.backend.round_pipeline}{{entry={_ROUND_NAME}}}").module
        except FedcError as e:
            why = str(e).replace(f"{{entry={_ROUND_NAME}}}", "").replace(f"@{_ROUND_NAME}", f"@{symbol} as a round")
            warnings.warn(f"@{symbol} runs as it is on the {self.backend.name} backend, not as a MapReduce round "
                          f"on its workers ({why})", FedcWarning, stacklevel=2)
            return None
        return form, wrapping

    def is_compiled(self, computation) -> bool:
        """Whether ``computation`` has been compiled in this context."""
        return computation in self._compiled

    @deep_recursion  # arguments nest as deeply as their types may (fedc.limits.MAX_NESTING)
    def invoke(self, computation, args: tuple, kwargs: dict, num_clients: Optional[int] = None) -> Any:
        argument = None
        parameter = computation.type_signature.parameter
        if parameter is not None:
            argument = convert_argument(computation, pack_arguments(computation, args, kwargs))
        elif args or kwargs:
            raise FedcTypeError(
                f"{computation.name} takes no arguments, but was called with {len(args) + len(kwargs)}"
            )
        num_clients = _client_count(computation, argument, num_clients)
        result = self.compile(computation)(argument, num_clients=num_clients)
        return to_python(result, computation.type_signature.result)

    @deep_recursion
    def invoke_polymorphic(self, computation, args: tuple, kwargs: dict) -> Any:
        values = computation.bind(args, kwargs)
        specialized = computation.specialize(computation.parameter_type([infer_type(v) for v in values]))
        return self.invoke(specialized, tuple(values), {})

    def __repr__(self) -> str:
        return f"<fedc.ExecutionContext on {self.backend.name}>"


def pack_arguments(computation, args: tuple, kwargs: dict) -> Any:
    """Turns Python call arguments into one value for the computation's parameter."""
    parameter = computation.type_signature.parameter
    name = computation.name
    names = computation.parameter_names
    if names:
        return bind_named_arguments(name, names, args, kwargs)
    if kwargs:
        return keyword_argument(computation, args, kwargs)
    if len(args) == 1:
        return args[0]
    if isinstance(parameter, StructType) and len(args) == len(parameter):
        return list(args)
    raise FedcTypeError(f"{name} takes one argument of type {parameter}, got {len(args)} arguments")


def parameter_name(computation) -> Optional[str]:
    """The name of a one-parameter computation's parameter: the Python one, else the IR's."""
    fn = getattr(computation, "__wrapped__", None)
    if fn is not None:
        try:
            names = list(inspect.signature(fn).parameters)
        except (TypeError, ValueError):
            names = []
        if len(names) == 1:
            return names[0]
    node = getattr(computation, "node", None)
    return getattr(node, "parameter_name", None)


def keyword_argument(computation, args: tuple, kwargs: dict) -> Any:
    """The argument of a one-parameter computation called with keywords.

    ``f(t=v)`` names the parameter ``t``; ``f(a=1, b=2)`` gives the elements of a
    struct parameter ``<a=…,b=…>`` by name. Anything else is refused, naming the
    parameter (a misspelt keyword is never taken silently).
    """
    parameter = computation.type_signature.parameter
    name = parameter_name(computation)
    if not args:
        if len(kwargs) == 1 and name is not None and name in kwargs:
            return kwargs[name]
        if isinstance(parameter, StructType):
            names = parameter.names()
            if all(n is not None for n in names) and set(kwargs) == set(names):
                return {n: kwargs[n] for n in names}
    got = ", ".join(repr(k) for k in kwargs)
    which = f" {name!r}" if name else ""
    raise FedcTypeError(
        f"{computation.name} has one parameter{which} of type {parameter}; it cannot take "
        f"{'positional and ' if args else ''}keyword argument(s) {got}"
    )


def convert_argument(computation, value: Any) -> Any:
    """Converts and type-checks the packed argument; names the parameter on error."""
    parameter = computation.type_signature.parameter
    names = computation.parameter_names
    if names and isinstance(parameter, StructType):
        return tuple(
            from_python(v, t, f"argument {n!r} of {computation.name}")
            for v, n, t in zip(value, names, parameter)
        )
    name = parameter_name(computation)
    return from_python(value, parameter, f"argument {name!r} of {computation.name}" if name else f"argument of {computation.name}")


def count_clients(value: Any, t: Type, where: str, found: Optional[list] = None) -> list:
    """(client count, where) for every ``{T}@CLIENTS`` value inside an argument."""
    found = [] if found is None else found
    if isinstance(value, Clients):
        found.append((value.count, where))
    elif isinstance(t, StructType) and isinstance(value, tuple):
        for i, ((n, element_type), v) in enumerate(zip(t.items(), value)):
            count_clients(v, element_type, f"{where}.{n if n is not None else i}", found)
    return found


def _client_count(computation, argument: Any, num_clients: Optional[int]) -> Optional[int]:
    """The number of clients the argument has (they must agree), checked against ``num_clients``."""
    parameter = computation.type_signature.parameter
    counts = count_clients(argument, parameter, "argument") if parameter is not None else []
    distinct = {c for c, _ in counts}
    if len(distinct) > 1:
        detail = ", ".join(f"{where} has {c}" for c, where in counts)
        raise FedcError(f"{computation.name}: the arguments disagree on the number of clients: {detail}")
    if distinct:
        clients = distinct.pop()
        if num_clients is not None and num_clients != clients:
            raise FedcError(f"{computation.name}: num_clients={num_clients} but the arguments have {clients} clients")
        num_clients = clients
    return num_clients


# --------------------------------------------------------------------------
# The stack of contexts

_state = threading.local()
_default_backend: tuple[str, tuple] = (DEFAULT_BACKEND, ())
_execution_contexts: dict[int, ExecutionContext] = {}
_contexts_lock = threading.Lock()


def _stack() -> list:
    stack = getattr(_state, "stack", None)
    if stack is None:
        stack = _state.stack = []
    return stack


def execution_context(backend: Backend) -> ExecutionContext:
    """The execution context of ``backend`` (one per backend, so its compile cache lasts)."""
    with _contexts_lock:
        context = _execution_contexts.get(id(backend))
        if context is None or context.backend is not backend:
            context = _execution_contexts[id(backend)] = ExecutionContext(backend)
        return context


def _default_context() -> ExecutionContext:
    name, options = _default_backend
    return execution_context(_named_backend(name, **dict(options)))


def current() -> Context:
    """The innermost context: a tracer while tracing, else an execution context."""
    stack = _stack()
    return stack[-1] if stack else _default_context()


def current_execution() -> ExecutionContext:
    """The innermost execution context (skipping tracers)."""
    for context in reversed(_stack()):
        if isinstance(context, ExecutionContext):
            return context
    return _default_context()


@contextlib.contextmanager
def installed(context: Context) -> Iterator[Context]:
    """Makes ``context`` the current one inside the ``with`` block."""
    if not isinstance(context, Context):
        raise FedcError(f"not a fedc context: {context!r}")
    stack = _stack()
    stack.append(context)
    try:
        yield context
    finally:
        stack.pop()


def get_backend(name: Optional[str] = None, /, **options) -> Backend:
    """The backend ``name`` with ``options``; without a name, the one computations run on now."""
    if name is None:
        if options:
            raise FedcError("get_backend: options need a backend name")
        return current_execution().backend
    return _named_backend(name, **options)


def set_default_backend(name: str, /, **options) -> None:
    """Makes backend ``name`` (configured with ``options``) run computations from now on."""
    global _default_backend
    _named_backend(name, **options)  # unknown names and bad options fail here
    _default_backend = (name, tuple(sorted(options.items())))


@contextlib.contextmanager
def backend(name: str, /, **options) -> Iterator[Backend]:
    """Runs computations on backend ``name`` (configured with ``options``) inside the ``with`` block."""
    chosen = _named_backend(name, **options)
    with installed(execution_context(chosen)):
        yield chosen


def invoke(computation, args: tuple, kwargs: dict, num_clients: Optional[int] = None) -> Any:
    """Runs ``computation`` with Python arguments in the current execution context."""
    return current_execution().invoke(computation, args, kwargs, num_clients=num_clients)
