"""What a backend is, and how fedc finds one by name.

A backend turns a verified module into something that runs. It owns its table
of *rules*: one implementation (or lowering) per intrinsic and local op of the
registry (:mod:`fedc.ir.intrinsics`), keyed by the op's uri, the way a JAX
platform owns its lowering rules. fedc asks it for one thing,
``compile(module, symbol) -> Executable``, and :class:`Backend.compile`
checks, before the backend sees the module, that every op in it has a rule:
a missing one is an :class:`~fedc.UnsupportedError` at compile time naming the
op and the computation that uses it, never a failure half-way through a run.

A backend that needs a lowered form of the computation (the MapReduce form of
a round, say) names the passes that produce it in :attr:`Backend.pipeline`;
the execution context (:mod:`fedc.context`) runs them before ``compile``.

Backends are found by name (:func:`get_backend`) among the entry points of
group ``fedc.backends``: a distribution declares
``[project.entry-points."fedc.backends"] NAME = "module:Factory"``, where
``Factory(**options)`` returns a :class:`Backend`. fedc declares its own
backends the same way, so a separately installed package adds one without
touching fedc. :func:`register_backend` adds a factory in-process.
"""

from __future__ import annotations

import abc
import atexit
import difflib
import threading
from importlib import metadata
from typing import Any, Callable, Iterable, Mapping, Optional, Protocol

from fedc.errors import FedcError, UnsupportedError
from fedc.ir import building_blocks as bb
from fedc.ir.module import Module
from fedc.ir.verifier import verify

__all__ = [
    "DEFAULT_BACKEND",
    "ENTRY_POINT_GROUP",
    "Backend",
    "Executable",
    "available_backends",
    "check_rules",
    "get_backend",
    "close_all",
    "register_backend",
    "unregister_backend",
    "unsupported_ops",
]

ENTRY_POINT_GROUP = "fedc.backends"


class Executable(Protocol):
    """A compiled computation: ``executable(argument, num_clients=None) -> value``.

    ``argument`` is the computation's parameter as an IR value (see
    :mod:`fedc.values`; ``None`` without a parameter) and ``num_clients`` the
    number of clients when no argument says it.
    """

    def __call__(self, argument: Any = None, num_clients: Optional[int] = None) -> Any: ...


def unsupported_ops(module: Module, rules: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(op uri, computation) for each op used in ``module`` that has no entry in ``rules``, sorted."""
    missing = set()
    for symbol, root in module.items():
        for node in root.walk():
            if isinstance(node, bb.Intrinsic) and node.uri not in rules:
                missing.add((node.uri, symbol))
    return sorted(missing)


def check_rules(module: Module, rules: Mapping[str, Any], backend_name: str) -> None:
    """Raises :class:`~fedc.UnsupportedError` naming every op of ``module`` that ``rules`` lacks."""
    missing = unsupported_ops(module, rules)
    if missing:
        listed = ", ".join(f"{uri} (in @{where})" for uri, where in missing)
        raise UnsupportedError(f"the {backend_name} backend does not implement {listed}")


class Backend(abc.ABC):
    """A backend: a name, its table of rules, the passes it needs, and ``compile``.

    Subclasses set :attr:`name` and :attr:`rules` and implement
    :meth:`build`; fedc calls :meth:`compile`, which verifies the module and
    checks that every op it uses has a rule first.
    """

    #: The name users select the backend by (``fedc.set_default_backend(name)``).
    name: str = ""
    #: uri of an intrinsic or local op -> this backend's implementation of it.
    rules: Mapping[str, Any] = {}
    #: The pass pipeline (text, as ``fedc opt --passes`` takes it) that brings a
    #: computation into the form :meth:`build` expects; empty for none.
    pipeline: str = ""
    #: The passes that lower a round to its MapReduce form, for a backend that runs rounds in that form (the tf
    #: backend on workers); empty for none. The execution context then wraps each computation from server values
    #: and client data to server values as a round (:func:`fedc.ir.mapreduce.wrap_as_round`), lowers it, and
    #: calls :meth:`compile_round`; a computation that does not lower is compiled with :meth:`compile`.
    round_pipeline: str = ""

    def supports(self, uri: str) -> bool:
        """Whether this backend has a rule for the intrinsic or local op ``uri``."""
        return uri in self.rules

    def check_supported(self, module: Module) -> None:
        """Raises :class:`~fedc.UnsupportedError` naming every op of ``module`` without a rule here."""
        check_rules(module, self.rules, self.name)

    def compile(self, module: Module, symbol: str) -> Executable:
        """The executable of computation ``@symbol`` of ``module`` (verified and checked first)."""
        verify(module)
        self.check_supported(module)
        return self.build(module, symbol)

    @abc.abstractmethod
    def build(self, module: Module, symbol: str) -> Executable:
        """The executable of ``@symbol``; ``module`` is verified and every op in it has a rule."""

    def compile_round(self, module: Module, symbol: str, form: Module, wrapping: Any) -> Executable:
        """The executable of ``@symbol`` given also its MapReduce form ``form`` (see :attr:`round_pipeline`).

        ``wrapping`` (a :class:`fedc.ir.mapreduce.RoundWrapping`) says which
        of the computation's parameter elements are the round's state and
        which its client data. Both modules are verified and checked first.
        """
        verify(module)
        verify(form)
        self.check_supported(module)
        self.check_supported(form)
        return self.build_round(module, symbol, form, wrapping)

    def build_round(self, module: Module, symbol: str, form: Module, wrapping: Any) -> Executable:
        """The executable of ``@symbol`` run as its MapReduce form; by default, as the computation itself."""
        return self.build(module, symbol)

    def close(self) -> None:
        """Releases what the backend started (processes, clusters); the default has nothing to end."""

    def __repr__(self) -> str:
        return f"<fedc backend {self.name!r}>"


_lock = threading.Lock()
_factories: dict[str, Callable[..., Backend]] = {}
_entry_points: Optional[dict[str, metadata.EntryPoint]] = None


def register_backend(name: str, factory: Callable[..., Backend]) -> None:
    """Makes ``factory(**options)`` the backend called ``name`` in this process (it overrides an entry point)."""
    if not isinstance(name, str) or not name:
        raise FedcError(f"a backend name is a non-empty string, not {name!r}")
    with _lock:
        _factories[name] = factory


def unregister_backend(name: str) -> None:
    """Forgets a backend added with :func:`register_backend` (closing its instances first)."""
    close_all([name])
    with _lock:
        _factories.pop(name, None)


def _declared() -> dict[str, metadata.EntryPoint]:
    """The backends that installed distributions declare, read once."""
    global _entry_points
    with _lock:
        if _entry_points is None:
            _entry_points = {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
        return _entry_points


def refresh() -> None:
    """Forgets the entry points read so far (after installing a backend package at run time)."""
    global _entry_points
    with _lock:
        _entry_points = None


#: The backend a computation runs on unless told otherwise (``fedc.set_default_backend``, ``fedc run --backend``):
#: the TensorFlow backend. The reference interpreter stays selectable by name and is the oracle the tests compare with.
DEFAULT_BACKEND = "tf"


def available_backends() -> list[str]:
    """The names of every backend that can be selected, sorted."""
    return sorted(set(_declared()) | set(_factories))


def _factory(name: str) -> Callable[..., Backend]:
    if name in _factories:
        return _factories[name]
    declared = _declared()
    if name not in declared:
        names = available_backends()
        close = difflib.get_close_matches(str(name), names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise FedcError(f"unknown backend {name!r}; available backends: {', '.join(names) or 'none'}{hint}")
    try:
        factory = declared[name].load()
    except Exception as e:  # a broken plugin is the plugin's fault, reported as such
        raise FedcError(f"backend {name!r} ({declared[name].value}) could not be loaded: {e}") from None
    with _lock:
        _factories.setdefault(name, factory)
    return factory


_instances: dict[tuple, Backend] = {}


def _options_key(options: Mapping[str, Any]) -> tuple:
    try:
        # (the type too: workers=True is not workers=1, though they are equal and hash alike)
        key = tuple(sorted((name, type(value).__qualname__, value) for name, value in options.items()))
        hash(key)
    except TypeError:
        raise FedcError(f"backend options must be hashable values, got {dict(options)!r}") from None
    return key


def get_backend(name: str, /, **options) -> Backend:
    """The backend called ``name`` configured with ``options`` (one instance per name and options)."""
    key = (name, _options_key(options))
    backend = _instances.get(key)
    if backend is None:
        factory = _factory(name)
        try:
            backend = factory(**options)
        except TypeError as e:
            raise FedcError(f"backend {name!r} does not take the options {options!r}: {e}") from None
        if not isinstance(backend, Backend):
            raise FedcError(f"backend {name!r} is not a fedc Backend (its factory returned {type(backend).__name__})")
        with _lock:
            backend = _instances.setdefault(key, backend)
    return backend


def close_all(names: Iterable[str] = ()) -> None:
    """Closes the backends created so far (all of them, or those called one of ``names``)."""
    wanted = set(names)
    with _lock:
        keys = [k for k in _instances if not wanted or k[0] in wanted]
        backends = [_instances.pop(k) for k in keys]
    for backend in backends:
        backend.close()


atexit.register(close_all)  # nothing a backend started outlives the program
