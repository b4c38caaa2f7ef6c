"""Tracing decorated Python into IR.

While a ``@fedc.federated_computation`` runs, its parameters are
:class:`Value` proxies wrapping IR nodes; intrinsic calls, calls of other
computations and local ops on values add ``Block`` locals to the trace, named
after what they compute (``%mean``, ``%broadcast_1``). Python containers
become structs, ``x.name``/``x[i]`` become selections. Each traced node
carries the Python source location it came from, so errors and IR dumps point
at the user's code.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import inspect
import os
import sys
from typing import Any, Callable, Optional, Sequence

import numpy as np

from fedc import context
from fedc.computation import Computation, PolymorphicComputation
from fedc.errors import FedcError, FedcTypeError, SourceLocation
from fedc.frontend.api import BINARY_OPERATORS, UNARY_OPERATORS, map_intrinsic
from fedc.ir import building_blocks as bb
from fedc.ir.build import call as intrinsic_call
from fedc.ir.module import Module
from fedc.ir.names import FreshNames, identifier
from fedc.ir.verifier import verify_computation
from fedc.types import (
    FederatedType,
    FunctionType,
    Placement,
    StructType,
    TensorType,
    Type,
    to_type,
)

__all__ = ["Value", "decorated", "is_tracing", "trace_federated_computation", "to_node"]

def _package_dirs() -> tuple[str, ...]:
    """The folders of fedc's own code (fedc/, and the mapped backends/, passes/, grammar/)."""
    import importlib.util

    dirs = [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
    for name in ("fedc.backends", "fedc.passes", "fedc.grammar"):
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.submodule_search_locations:
            dirs.extend(os.path.abspath(p) for p in spec.submodule_search_locations)
    return tuple(d + os.sep for d in dirs)


_FEDC_DIRS = _package_dirs()


def is_tracing() -> bool:
    """Whether the current context is a trace (calls build IR)."""
    return isinstance(context.current(), Tracer)


def current() -> "Tracer":
    """The innermost trace."""
    return context.current()


def require_tracing(api_name: str) -> "Tracer":
    if not is_tracing():
        raise FedcError(
            f"fedc.{api_name} can only be called while tracing a @fedc.federated_computation "
            "(it builds IR; it does not compute a value directly)"
        )
    return current()


def user_location() -> Optional[SourceLocation]:
    """The innermost Python frame outside fedc: where the user's code called us."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not os.path.abspath(filename).startswith(_FEDC_DIRS):
            return SourceLocation(filename, frame.f_lineno, 1)
        frame = frame.f_back
    return None


def located(error: FedcError, location: Optional[SourceLocation] = None) -> FedcError:
    """``error`` re-raised at the user's line (with the source line shown) and naming the traced function."""
    if error.location is not None:
        return error
    location = location or user_location()
    tracer = current() if is_tracing() else None
    message = error.message
    if tracer is not None and f"while tracing {tracer.name!r}" not in message:
        message = f"{message} (while tracing {tracer.name!r})"
    source = None
    if location is not None:
        import linecache

        lines = linecache.getlines(location.file)
        if lines:
            source = "".join(lines)
            text = lines[location.line - 1] if location.line <= len(lines) else ""
            location = SourceLocation(location.file, location.line, len(text) - len(text.lstrip()) + 1)
    return type(error)(message, location, source)


class Tracer(context.Context):
    """The state of one trace: nested scopes of block locals, and the callee computations.

    While a function is traced its tracer is the current context: calling a
    computation then adds a call to the IR being built.
    """

    def __init__(self, name: str):
        self.name = name
        self.scopes: list[list[tuple[str, bb.Node]]] = [[]]
        # The computations called so far, by the name their SymbolRefs use here.
        self.callees: dict[str, Computation] = {}
        self.callee_names: dict[int, str] = {}
        self.next_suffix: dict[str, int] = {}
        self.names = FreshNames()

    def fresh(self, base: str) -> str:
        return self.names.fresh(base)

    def bind(self, node: bb.Node, base: str) -> "Value":
        name = self.fresh(base)
        self.scopes[-1].append((name, node))
        return Value(bb.Reference(name, node.type_signature))

    def close_scope(self, result: bb.Node, location=None) -> bb.Node:
        bindings = self.scopes.pop()
        if not bindings:
            return result
        return bb.Block(bindings, result, location)

    def add_computation(self, computation: Computation) -> bb.SymbolRef:
        """A reference to ``computation``, which becomes a callee of the traced computation.

        Only the callee itself is recorded (its own callees stay with it), so a
        trace costs the size of the traced function, not of everything it calls.
        """
        name = self.callee_names.get(id(computation))
        if name is None:
            base = name = computation.name
            suffix = self.next_suffix.get(base, 1)
            while name in self.callees or name == self.name:  # the traced computation keeps its name
                name = f"{base}_{suffix}"
                suffix += 1
            self.next_suffix[base] = suffix
            self.callees[name] = computation
            self.callee_names[id(computation)] = name
        return bb.SymbolRef(name, computation.type_signature)

    def invoke(self, computation, args: tuple, kwargs: dict) -> "Value":
        return call_computation(computation, args, kwargs)

    def invoke_polymorphic(self, computation, args: tuple, kwargs: dict) -> "Value":
        return call_polymorphic(computation, args, kwargs)


# --------------------------------------------------------------------------
# Values


class Value:
    """A traced value: an IR node standing in for a value while tracing."""

    __slots__ = ("_node",)

    def __init__(self, node: bb.Node):
        object.__setattr__(self, "_node", node)

    @property
    def node(self) -> bb.Node:
        return self._node

    @property
    def type_signature(self) -> Type:
        return self._node.type_signature

    def __setattr__(self, key, value):
        raise FedcError("traced values are immutable")

    def __repr__(self) -> str:
        return f"<fedc.Value of type {self.type_signature}>"

    def __bool__(self):
        raise FedcError(
            f"a traced value of type {self.type_signature} has no truth value while tracing "
            "(Python `if`/`and`/`or` run at trace time); use fedc.ops.where for data-dependent choices"
        )

    # Selection ---------------------------------------------------------------
    def __getattr__(self, name: str) -> "Value":
        if name.startswith("__"):
            raise AttributeError(name)
        return self._select(name)

    def __getitem__(self, key) -> "Value":
        if isinstance(key, slice):
            t = self._struct_type("slicing")
            return Value(bb.Struct([self[i].node for i in range(len(t))[key]]))
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            t = self._member_struct_type("indexing")
            if key < 0:
                key += len(t)
            return self._select(int(key))
        if isinstance(key, str):
            return self._select(key)
        raise FedcTypeError(f"a traced value is indexed by an int, a name or a slice, not {key!r}")

    def _struct_type(self, what: str) -> StructType:
        t = self.type_signature
        if not isinstance(t, StructType):
            raise FedcTypeError(f"{what} needs a struct, but this value has type {t}")
        return t

    def _member_struct_type(self, what: str) -> StructType:
        t = self.type_signature
        member = t.member if isinstance(t, FederatedType) else t
        if not isinstance(member, StructType):
            raise FedcTypeError(f"{what} needs a struct, but this value has type {t}")
        return member

    def _select(self, key) -> "Value":
        t = self.type_signature
        location = user_location()
        by_name = isinstance(key, str)
        if isinstance(t, StructType):
            if by_name and key not in [n for n in t.names() if n]:
                raise FedcTypeError(_no_element(t, key))
            if not by_name and not 0 <= key < len(t):
                raise FedcTypeError(f"index {key} is out of range for {t} ({len(t)} elements)")
            return Value(bb.Selection(self._node, name=key if by_name else None, index=None if by_name else key, location=location))
        if isinstance(t, FederatedType) and isinstance(t.member, StructType):
            # Selecting from a placed struct maps the selection over the placement.
            member = t.member
            if by_name and key not in [n for n in member.names() if n]:
                raise FedcTypeError(_no_element(t, key))
            tracer = require_tracing("selection of a placed struct")
            param = tracer.fresh("x")
            select = bb.Selection(bb.Reference(param, member), name=key if by_name else None, index=None if by_name else key)
            fn = bb.Lambda(param, member, select)
            uri = map_intrinsic(t, keep_all_equal=True)
            return tracer.bind(intrinsic_call(uri, bb.Struct([fn, self._node]), location), f"{key}" if by_name else "element")
        raise FedcTypeError(f"{'.' + key if by_name else f'[{key}]'}: a value of type {t} has no elements")

    def __iter__(self):
        t = self._member_struct_type("unpacking")
        return iter([self[i] for i in range(len(t))])

    def __len__(self) -> int:
        return len(self._member_struct_type("len()"))

    def __dir__(self):
        t = self.type_signature
        member = t.member if isinstance(t, FederatedType) else t
        names = [n for n in member.names() if n] if isinstance(member, StructType) else []
        return sorted(set(names) | {"node", "type_signature"})

    # Calls -------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        t = self.type_signature
        if not isinstance(t, FunctionType):
            raise FedcTypeError(f"a value of type {t} is not a function")
        tracer = require_tracing("calling a traced function")
        argument = _pack_node_arguments(t.parameter, args, kwargs, "the traced function")
        return tracer.bind(bb.Call(self._node, argument, user_location()), "call")

    # Local math: Python's operators (set up below) call the local ops of fedc.frontend.api's tables.
    def _op(self, uri: str, *others, reverse: bool = False):
        return apply_local_op(uri, *((others[0], self) if reverse else (self, *others)))

    __hash__ = object.__hash__


# Python's operator methods: binary ones (and their reflections, for arithmetic), then unary ones.
_ARITHMETIC = {"add": "+", "sub": "-", "mul": "*", "truediv": "/", "floordiv": "//", "mod": "%", "pow": "**",
               "matmul": "@"}
_COMPARISONS = {"lt": "<", "le": "<=", "gt": ">", "ge": ">="}


def _binary_method(uri: str, reverse: bool):
    return lambda self, other: self._op(uri, other, reverse=reverse)


for _method, _symbol in {**_ARITHMETIC, **_COMPARISONS}.items():
    setattr(Value, f"__{_method}__", _binary_method(BINARY_OPERATORS[_symbol], False))
    if _method in _ARITHMETIC:
        setattr(Value, f"__r{_method}__", _binary_method(BINARY_OPERATORS[_symbol], True))
def _unary_method(uri: str):
    return lambda self: apply_local_op(uri, self)


for _method, _symbol in {"neg": "-", "abs": "abs"}.items():
    setattr(Value, f"__{_method}__", _unary_method(UNARY_OPERATORS[_symbol]))


def _no_element(t: Type, key: str) -> str:
    member = t.member if isinstance(t, FederatedType) else t
    names = [n for n in member.names() if n] if isinstance(member, StructType) else []
    return f"a value of type {t} has no element named {key!r}" + (f"; its names are {', '.join(names)}" if names else "")


def _leaf_dtype(t: Type) -> Optional[np.dtype]:
    dtypes = set()
    for sub in t.walk():
        if isinstance(sub, TensorType):
            dtypes.add(sub.dtype)
    return dtypes.pop() if len(dtypes) == 1 else None


def apply_local_op(uri: str, *operands, **attrs) -> Value:
    """Applies local op ``uri`` to traced values / Python constants and binds the result."""
    tracer = require_tracing(f"ops.{uri}")
    location = user_location()
    nodes: list = [None] * len(operands)
    # Python constants take the dtype of a traced operand, as in TensorFlow.
    dtype = None
    for op in operands:
        if isinstance(op, Value):
            t = op.type_signature
            if isinstance(t, FederatedType):
                raise FedcTypeError(
                    f"{uri}: cannot apply a local op to the placed value of type {t}; "
                    "use fedc.federated_map (or federated_apply at the server) with a local function"
                )
            dtype = dtype or _leaf_dtype(t)
    for i, op in enumerate(operands):
        nodes[i] = to_node(op, TensorType(dtype) if dtype is not None and not isinstance(op, Value) and _is_scalar(op) else None)
    argument = nodes[0] if len(nodes) == 1 else (bb.Struct(nodes) if nodes else None)
    try:
        return tracer.bind(intrinsic_call(uri, argument, location, **attrs), uri)
    except FedcTypeError as e:
        raise located(e, location) from None


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (int, float, bool, np.generic)) or (isinstance(value, np.ndarray) and value.ndim == 0)


# --------------------------------------------------------------------------
# Python objects -> IR nodes


def to_node(value: Any, expected: Optional[Type] = None) -> bb.Node:
    """The IR node for a traced value, a computation, a Python function or a constant."""
    if isinstance(value, Value):
        return value.node
    if isinstance(value, bb.Node):
        return value
    if isinstance(value, Computation):
        return require_tracing("calling a computation").add_computation(value)
    if isinstance(value, PolymorphicComputation) or inspect.isfunction(value) or inspect.ismethod(value):
        if not isinstance(expected, FunctionType):
            name = getattr(value, "name", None) or getattr(value, "__name__", repr(value))
            raise FedcTypeError(
                f"the function {name!r} has no declared types, and its parameter type cannot be "
                "inferred here; decorate it with @fedc.tf_computation(T) or @fedc.federated_computation(T)"
            )
        return function_node(value, expected.parameter)
    if isinstance(value, Placement):
        return bb.Placement(value)
    if value is None:
        raise FedcTypeError("None is not a value; a computation must return something")
    if isinstance(value, (np.ndarray, np.generic, int, float, bool, str)):
        return _literal(value, expected)
    if _is_tf_value(value):
        return _literal(value.numpy(), expected)
    return _struct_node(value, expected)


def function_node(value: Any, parameter: Optional[Type], what: str = "a function") -> bb.Node:
    """A function node for ``value`` applied to ``parameter``.

    A polymorphic tf_computation is specialised to ``parameter``, a plain
    Python function is traced as a local function of that parameter type.
    """
    if isinstance(value, PolymorphicComputation):
        return require_tracing("calling a computation").add_computation(value.specialize(parameter))
    if inspect.isfunction(value) or inspect.ismethod(value):
        return trace_local_function(value, parameter)
    node = to_node(value)
    if not isinstance(node.type_signature, FunctionType):
        raise FedcTypeError(f"{what}: expected a function, got a value of type {node.type_signature}")
    return node


def _is_tf_value(value: Any) -> bool:
    return (type(value).__module__ or "").startswith("tensorflow") and hasattr(value, "numpy")


def _literal(value: Any, expected: Optional[Type]) -> bb.Literal:
    location = user_location()
    if isinstance(expected, TensorType) and not isinstance(value, (np.ndarray, np.generic)):
        return bb.Literal(value, TensorType(expected.dtype, np.shape(value)), location)
    return bb.Literal(value, None, location)


def _struct_node(value: Any, expected: Optional[Type]) -> bb.Node:
    from fedc.types import is_namedtuple

    container = type(value)
    if is_namedtuple(value):
        items = list(value._asdict().items())
    elif isinstance(value, collections.abc.Mapping):
        items = list(value.items())
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        items = [(f.name, getattr(value, f.name)) for f in dataclasses.fields(value)]
    elif hasattr(type(value), "__attrs_attrs__"):
        import attrs

        items = list(attrs.asdict(value, recurse=False).items())
    elif isinstance(value, (list, tuple)):
        items = [(None, v) for v in value]
    else:
        raise FedcTypeError(f"cannot use {value!r} (a Python {type(value).__name__}) as a fedc value")
    expected_elements = list(expected) if isinstance(expected, StructType) and len(expected) == len(items) else [None] * len(items)
    elements = []
    for (name, v), e in zip(items, expected_elements):
        if name is not None and not isinstance(name, str):
            raise FedcTypeError(f"struct keys must be strings, not {name!r}")
        node = to_node(v, e)
        elements.append((name, node) if name is not None else node)
    return bb.Struct(elements, container)


def _pack_node_arguments(parameter: Optional[Type], args: tuple, kwargs: dict, callee: str,
                         names: Optional[Sequence[str]] = None) -> Optional[bb.Node]:
    if parameter is None:
        if args or kwargs:
            raise FedcTypeError(f"{callee} takes no arguments")
        return None
    if names:
        values = context.bind_named_arguments(callee, names, args, kwargs)
        elements = [to_node(v, t) for v, t in zip(values, parameter)]
        return bb.Struct(list(zip(names, elements)))
    if kwargs:
        if isinstance(parameter, StructType) and not args:
            return to_node(dict(kwargs), parameter)
        raise FedcTypeError(f"{callee} takes one argument of type {parameter}")
    if len(args) == 1:
        return to_node(args[0], parameter)
    if isinstance(parameter, StructType) and len(args) == len(parameter):
        return bb.Struct([to_node(a, t) for a, t in zip(args, parameter)])
    raise FedcTypeError(f"{callee} takes one argument of type {parameter}, got {len(args)} arguments")


def call_computation(computation, args: tuple, kwargs: dict) -> Value:
    """A call of ``computation`` inside a trace."""
    tracer = current()
    t = computation.type_signature
    if kwargs and not computation.parameter_names and t.parameter is not None:
        value = context.keyword_argument(computation, args, kwargs)
        argument = to_node(value, t.parameter)
    else:
        argument = _pack_node_arguments(t.parameter, args, kwargs, computation.name, computation.parameter_names)
    try:
        call = bb.Call(tracer.add_computation(computation), argument, user_location())
    except FedcTypeError as e:
        raise located(FedcTypeError(f"calling {computation.name}: {e.message}")) from None
    return tracer.bind(call, computation.name)


def call_polymorphic(computation, args: tuple, kwargs: dict) -> Value:
    """A call of a computation without declared types inside a trace: specialised to the arguments' types."""
    try:
        nodes = [to_node(a) for a in computation.bind(args, kwargs)]
        specialized = computation.specialize(computation.parameter_type([n.type_signature for n in nodes]))
    except FedcTypeError as e:
        raise located(e) from None
    return call_computation(specialized, tuple(nodes), {})


# --------------------------------------------------------------------------
# Tracing functions


def _parameters(fn: Callable) -> list[str]:
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        raise FedcTypeError(f"cannot read the parameters of {fn!r}") from None
    names = []
    for p in signature.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise FedcTypeError(f"{fn.__name__}: *args and **kwargs cannot be traced; name each parameter")
        names.append(p.name)
    return names


def parameter_plan(fn: Callable, declared: Sequence[Any], what: str):
    """(parameter type or None, Python names packed into a struct or None) for a decorated function.

    As TFF does: several declared types are packed into one struct type; a
    function of one parameter takes that struct, a function of several
    receives its elements, one per parameter. A struct whose elements are not
    named is named after the parameters (``(int32, float32)`` on ``f(a, b)``
    is ``<a=int32,b=float32>``); named elements must be the parameters' names
    (in any order: the declared order is the parameter's).
    """
    names = _parameters(fn)
    if not declared:
        if names:
            raise FedcTypeError(
                f"{what} {fn.__name__!r} has parameters ({', '.join(names)}) but no declared types; "
                f"write @fedc.{what}(T, ...) with one type per parameter"
            )
        return None, None
    t = to_type(declared[0]) if len(declared) == 1 else to_type(tuple(declared))
    if not names:
        raise FedcTypeError(f"{what} {fn.__name__!r} takes no parameters, but declares the parameter type {t}")
    if len(names) == 1:
        return t, None
    listed = f"{len(names)} parameters ({', '.join(names)})"
    if not isinstance(t, StructType) or len(t) != len(names):
        if len(declared) == 1:
            raise FedcTypeError(f"{what} {fn.__name__!r} declares one type {t} for {listed}")
        raise FedcTypeError(f"{what} {fn.__name__!r} declares {len(declared)} types for {listed}")
    element_names = t.names()
    if all(n is None for n in element_names):
        return StructType(list(zip(names, t))), names
    if any(n is None for n in element_names) or set(element_names) != set(names):
        raise FedcTypeError(
            f"{what} {fn.__name__!r} declares the type {t} for {listed}: the elements must be named "
            "after the parameters, or not named at all"
        )
    return t, element_names


def _call_with_parameters(fn: Callable, parameter_name: Optional[str], t: Optional[Type]):
    if t is None:
        return fn()
    ref = Value(bb.Reference(parameter_name, t))
    python_names = _parameters(fn)
    if len(python_names) == 1:
        return fn(ref)
    # Several Python parameters receive the elements of the struct parameter named after them.
    return fn(*[ref[name] for name in python_names])


def decorated(fn: Callable, declared: Sequence[Any], kind: str, trace: Callable[[Callable, Sequence[Any]], Any]):
    """What ``@fedc.<kind>(*declared)`` makes of ``fn``: ``trace(fn, declared)`` at once, or, for a
    function with parameters and no declared types, a :class:`~fedc.PolymorphicComputation` that
    traces it with the parameter type of each distinct use (as TFF does)."""
    names = _parameters(fn)
    if declared or not names:
        return trace(fn, declared)
    name = identifier(fn.__name__ if fn.__name__ != "<lambda>" else "lambda")
    return PolymorphicComputation(lambda t: trace(fn, [t]), name, fn, kind)


def trace_federated_computation(fn: Callable, declared: Sequence[Any]):
    """Traces ``fn`` into a :class:`~fedc.Computation`."""
    t, names = parameter_plan(fn, declared, "federated_computation")
    symbol = identifier(fn.__name__ if fn.__name__ != "<lambda>" else "lambda")
    tracer = Tracer(symbol)
    python_names = _parameters(fn)
    if t is None:
        parameter_name = None
    elif len(python_names) == 1:
        parameter_name = tracer.fresh(python_names[0])
    else:
        for n in python_names:
            tracer.names.take(n)
        parameter_name = tracer.fresh("arg")
    location = _definition_location(fn)
    with context.installed(tracer):
        result = _call_with_parameters(fn, parameter_name, t)
        if result is None:
            raise FedcTypeError(f"federated_computation {fn.__name__!r} returned None; return the computation's result")
        result_node = to_node(result)
        body = tracer.close_scope(result_node)
    lam = bb.Lambda(parameter_name, t, body, location) if t is not None else bb.Lambda(None, None, body, location)
    entry = symbol
    # The callees were verified when they were built, so only the new computation needs
    # verifying, against its direct callees' types: verifying everything it reaches would
    # make a chain of N computations calling each other O(N^2). Nothing refers to the new
    # computation, so it closes no cycle of calls.
    shallow = Module(entry, [(name, callee.node) for name, callee in tracer.callees.items()] + [(entry, lam)])
    verify_computation(shallow, entry)
    return Computation.from_callees(entry, lam, tracer.callees, names, fn)


def trace_local_function(fn: Callable, parameter: Optional[Type]) -> bb.Lambda:
    """Traces a plain Python function passed where a local function is expected into a Lambda."""
    tracer = current()
    tracer.scopes.append([])
    try:
        if parameter is None:
            result = fn()
            name = None
        else:
            name = tracer.fresh("x")
            python_names = _parameters(fn)
            ref = Value(bb.Reference(name, parameter))
            if len(python_names) == 1:
                result = fn(ref)
            elif isinstance(parameter, StructType) and len(parameter) == len(python_names):
                result = fn(*[ref[i] for i in range(len(parameter))])
            else:
                raise FedcTypeError(
                    f"the Python function {fn.__name__!r} takes {len(python_names)} parameters, "
                    f"but is applied to a value of type {parameter}"
                )
        if result is None:
            raise FedcTypeError(f"the Python function {fn.__name__!r} returned None")
        body = to_node(result)
    except BaseException:
        tracer.scopes.pop()
        raise
    body = tracer.close_scope(body)
    return bb.Lambda(name, parameter, body, _definition_location(fn))


def _definition_location(fn: Callable) -> Optional[SourceLocation]:
    try:
        filename = inspect.getsourcefile(fn) or fn.__code__.co_filename
        return SourceLocation(filename, fn.__code__.co_firstlineno, 1)
    except (TypeError, AttributeError):
        return None

