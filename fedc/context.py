"""The execution context: which backend runs a computation, and the compiled-form cache.

Calling a :class:`~fedc.Computation` converts and checks the arguments against
its type, compiles it for the current backend (once per computation; the
compiled form is cached), runs it, and converts the result back to Python
values.

    fedc.set_default_backend("reference")
    with fedc.backend("reference"):
        ...
"""

from __future__ import annotations

import contextlib
import importlib
import threading
from typing import Any, Iterator, Optional

from fedc.computation import bind_named_arguments
from fedc.errors import FedcError, FedcTypeError
from fedc.types import StructType, Type
from fedc.values import Clients, from_python, to_python

__all__ = ["backend", "get_backend", "invoke", "set_default_backend"]

_BACKENDS = {"reference": "fedc.backends.reference"}
_state = threading.local()
_default = "reference"


def available_backends() -> list[str]:
    return sorted(_BACKENDS)


def get_backend(name: Optional[str] = None):
    """The backend object named ``name`` (default: the current one)."""
    name = name or current_backend_name()
    if name not in _BACKENDS:
        raise FedcError(f"unknown backend {name!r}; available backends: {', '.join(available_backends())}")
    module = importlib.import_module(_BACKENDS[name])
    return module.BACKEND


def current_backend_name() -> str:
    return getattr(_state, "override", None) or _default


def set_default_backend(name: str) -> None:
    """Makes ``name`` the backend that runs computations from now on."""
    global _default
    get_backend(name)
    _default = name


@contextlib.contextmanager
def backend(name: str) -> Iterator[None]:
    """Runs computations on backend ``name`` inside the ``with`` block."""
    get_backend(name)
    previous = getattr(_state, "override", None)
    _state.override = name
    try:
        yield
    finally:
        _state.override = previous


def pack_arguments(computation, args: tuple, kwargs: dict) -> Any:
    """Turns Python call arguments into one value for the computation's parameter."""
    parameter = computation.type_signature.parameter
    name = computation.name
    names = computation.parameter_names
    if parameter is None:
        if args or kwargs:
            raise FedcTypeError(f"{name} takes no arguments, but was called with {len(args) + len(kwargs)}")
        return None
    if names:
        return bind_named_arguments(name, names, args, kwargs)
    if kwargs:
        if len(kwargs) == 1 and not args:
            return next(iter(kwargs.values()))
        raise FedcTypeError(f"{name} takes one argument of type {parameter}")
    if len(args) == 1:
        return args[0]
    if isinstance(parameter, StructType) and len(args) == len(parameter):
        return list(args)
    raise FedcTypeError(f"{name} takes one argument of type {parameter}, got {len(args)} arguments")


def convert_argument(computation, value: Any) -> Any:
    """Converts and type-checks the packed argument; names the parameter on error."""
    parameter = computation.type_signature.parameter
    names = computation.parameter_names
    if names and isinstance(parameter, StructType):
        return tuple(
            from_python(v, t, f"argument {n!r} of {computation.name}")
            for v, n, t in zip(value, names, parameter)
        )
    return from_python(value, parameter, f"argument of {computation.name}")


def count_clients(value: Any, t: Type, where: str, found: Optional[list] = None) -> list:
    """(client count, where) for every ``{T}@CLIENTS`` value inside an argument."""
    found = [] if found is None else found
    if isinstance(value, Clients):
        found.append((value.count, where))
    elif isinstance(t, StructType) and isinstance(value, tuple):
        for i, ((n, element_type), v) in enumerate(zip(t.items(), value)):
            count_clients(v, element_type, f"{where}.{n if n is not None else i}", found)
    return found


def invoke(computation, args: tuple, kwargs: dict, num_clients: Optional[int] = None) -> Any:
    """Runs ``computation`` on the current backend with Python arguments."""
    packed = pack_arguments(computation, args, kwargs)
    parameter = computation.type_signature.parameter
    argument = None if parameter is None else convert_argument(computation, packed)
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
    executable = compiled(computation)
    result = executable(argument, num_clients=num_clients)
    return to_python(result, computation.type_signature.result)


def compiled(computation, backend_name: Optional[str] = None):
    """The compiled form of ``computation`` for a backend (cached per computation and backend)."""
    backend_obj = get_backend(backend_name)
    cache = computation.__dict__.setdefault("_fedc_compiled", {})
    key = backend_obj.name
    if key not in cache:
        cache[key] = backend_obj.compile(computation.to_ir(), computation.name)
    return cache[key]

