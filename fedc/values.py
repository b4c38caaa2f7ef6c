"""Values at run time, and their conversion from and to the user's Python values.

Backends share this representation at the API boundary:

* a tensor is a numpy array (0-d for a scalar), a struct a tuple of element
  values (names live in the type), a sequence a list of elements;
* a function is a Python callable of one argument (``None`` when it takes
  none);
* ``T@SERVER`` and all-equal ``T@CLIENTS`` are the member value itself;
* ``{T}@CLIENTS`` is a :class:`Clients`: one member value per client, kept as
  a list or *stacked* (every tensor leaf with a leading client axis), whichever
  was produced last; each form is computed from the other when asked for.
"""

from __future__ import annotations

import collections.abc
import dataclasses
from typing import Any, Optional

import numpy as np

from fedc.errors import FedcTypeError
from fedc.types import (
    FederatedType,
    FunctionType,
    PlacementType,
    SequenceType,
    StructType,
    TensorType,
    Type,
    dtype_name,
    is_namedtuple,
)

__all__ = ["Clients", "from_python", "stack", "to_python", "unstack"]


def stack(values: list) -> Optional[Any]:
    """Stacks per-client member values leaf by leaf; ``None`` if they cannot be (sequences, ragged)."""
    if not values:
        return None
    first = values[0]
    if isinstance(first, tuple):
        if any(not isinstance(v, tuple) or len(v) != len(first) for v in values):
            return None
        parts = []
        for i in range(len(first)):
            part = stack([v[i] for v in values])
            if part is None:
                return None
            parts.append(part)
        return tuple(parts)
    if isinstance(first, np.ndarray):
        shape, dtype = first.shape, first.dtype
        if any(not isinstance(v, np.ndarray) or v.shape != shape or v.dtype != dtype for v in values):
            return None
        return np.stack(values)
    return None


def unstack(stacked: Any, count: int) -> list:
    """The per-client values of a stacked value."""
    if isinstance(stacked, tuple):
        columns = [unstack(part, count) for part in stacked]
        return [tuple(column[i] for column in columns) for i in range(count)]
    return [stacked[i] for i in range(count)]


def _leading_axis(stacked: Any) -> Optional[int]:
    if isinstance(stacked, tuple):
        for part in stacked:
            n = _leading_axis(part)
            if n is not None:
                return n
        return None
    return stacked.shape[0]


class Clients:
    """A ``{T}@CLIENTS`` value: one member value per client."""

    __slots__ = ("count", "_items", "_stacked")

    def __init__(self, count: int, items: Optional[list] = None, stacked: Any = None):
        if items is None and stacked is None:
            raise ValueError("Clients needs items or a stacked value")
        self.count = count
        self._items = items
        self._stacked = stacked

    @classmethod
    def from_items(cls, items: list) -> "Clients":
        return cls(len(items), items=list(items))

    @classmethod
    def from_stacked(cls, stacked: Any, count: Optional[int] = None) -> "Clients":
        if count is None:
            count = _leading_axis(stacked)
        return cls(count, stacked=stacked)

    def items(self) -> list:
        if self._items is None:
            self._items = unstack(self._stacked, self.count)
        return self._items

    def stacked(self) -> Optional[Any]:
        """The stacked form, or ``None`` when clients' values cannot be stacked."""
        if self._stacked is None and self._items is not None and self.count:
            self._stacked = stack(self._items)
        return self._stacked

    def __repr__(self) -> str:
        return f"Clients({self.count})"


# --------------------------------------------------------------------------
# Conversion of the user's Python values


def from_python(value: Any, t: Type, what: str) -> Any:
    """Converts a user's value to the run-time value of type ``t``.

    ``what`` names the value in errors (``argument 'x' of f``). A ``{T}@CLIENTS``
    value is a list with one value per client, or a numpy array whose leading
    axis indexes the clients.
    """
    if isinstance(t, TensorType):
        return _tensor(value, t, what)
    if isinstance(t, StructType):
        return _struct(value, t, what)
    if isinstance(t, SequenceType):
        return _sequence(value, t, what)
    if isinstance(t, FederatedType):
        if t.all_equal:
            return from_python(value, t.member, what)
        if isinstance(value, Clients):
            return value
        if isinstance(value, np.ndarray) and isinstance(t.member, TensorType):
            if value.ndim == 0:
                raise FedcTypeError(
                    f"{what}: expected {t} (one value per client), got a scalar; pass a list or an array "
                    "whose first axis indexes the clients"
                )
            stacked = _tensor(value, _with_client_axis(t.member), what, per_client=t)
            return Clients.from_stacked(stacked, value.shape[0])
        if isinstance(value, (list, tuple)):
            if isinstance(t.member, TensorType) and value:
                stacked = _stack_tensor_list(value, t.member, what)
                if stacked is not None:
                    return Clients.from_stacked(stacked, len(value))
            return Clients.from_items(
                [from_python(v, t.member, f"{what}, client {i}") for i, v in enumerate(value)]
            )
        raise FedcTypeError(
            f"{what}: expected {t}, one value per client given as a list (or an array whose first "
            f"axis indexes the clients), got {_describe(value)}"
        )
    if isinstance(t, FunctionType):
        raise FedcTypeError(f"{what}: functions cannot be passed as values of type {t}")
    if isinstance(t, PlacementType):
        from fedc.types import Placement

        if isinstance(value, Placement):
            return value
        raise FedcTypeError(f"{what}: expected a placement (fedc.CLIENTS or fedc.SERVER), got {_describe(value)}")
    raise FedcTypeError(f"{what}: values of type {t} cannot be passed in")


def _with_client_axis(member: TensorType) -> TensorType:
    """The type of ``member`` values of all clients stacked along a new first axis."""
    return TensorType(member.dtype, None if member.shape is None else (None,) + member.shape)


def _stack_tensor_list(values: list, member: TensorType, what: str) -> Optional[np.ndarray]:
    """A list of per-client tensors as one stacked array, or None to convert client by client."""
    if any(isinstance(v, (dict, str, bytes)) or _is_tf_tensor(v) for v in values[:1]):
        return None
    try:
        array = np.asarray(values)
    except (TypeError, ValueError):
        return None
    if array.dtype == object or array.ndim == 0 or array.shape[0] != len(values):
        return None
    try:
        return _tensor(array, _with_client_axis(member), what, from_python_scalars=all(
            not isinstance(v, (np.ndarray, np.generic)) for v in values[:1]
        ))
    except FedcTypeError:
        return None  # convert client by client, so the error names the client


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"a {dtype_name(value.dtype)} array of shape {list(value.shape)}"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} (a Python {type(value).__name__})"


def _tensor(
    value: Any,
    t: TensorType,
    what: str,
    per_client: Optional[Type] = None,
    from_python_scalars: Optional[bool] = None,
) -> np.ndarray:
    if _is_tf_tensor(value):
        value = value.numpy()
    if t.dtype.kind == "U":
        value = _text(value, t, what)
    if isinstance(value, (list, tuple)) and any(isinstance(v, (dict, tuple, list)) and not _is_numeric_nest(v) for v in value):
        raise FedcTypeError(f"{what}: expected {t}, got {_describe(value)}")
    try:
        array = np.asarray(value)
    except (TypeError, ValueError):
        raise FedcTypeError(f"{what}: expected {t}, got {_describe(value)}") from None
    if array.dtype == object:
        raise FedcTypeError(f"{what}: expected {t}, got {_describe(value)}")
    target = t.dtype
    if array.dtype.kind in "US" and target.kind != "U":
        kind = "bytes" if array.dtype.kind == "S" else ("strings" if array.ndim else "a string")
        raise FedcTypeError(f"{what}: expected {t}, got {kind}, {_describe(value)}; only a str value takes strings")
    if array.dtype != target:
        source_kind, target_kind = array.dtype.kind, target.kind
        if from_python_scalars is None:
            from_python_scalars = not isinstance(value, (np.ndarray, np.generic))
        compatible = (
            (source_kind == target_kind)
            or (source_kind in "iu" and target_kind in "iu")
            or (source_kind in "iub" and target_kind in "fc" and from_python_scalars)
            or (source_kind == "f" and target_kind == "c")
            or (source_kind in "US" and target_kind == "U")
        )
        if not compatible:
            raise FedcTypeError(
                f"{what}: expected {t}, got {_describe(value) if not from_python_scalars else 'a value of dtype ' + dtype_name(array.dtype)}"
                f" (dtypes {dtype_name(array.dtype)} and {dtype_name(target)} do not convert without loss; cast first)"
            )
        converted = array.astype(target)
        if source_kind in "iu" and target_kind in "iu" and not np.array_equal(converted.astype(array.dtype), array):
            raise FedcTypeError(f"{what}: expected {t}; the values of {_describe(value)} do not fit in {dtype_name(target)}")
        array = converted
    actual = TensorType(array.dtype, array.shape)
    if not t.is_assignable_from(actual):
        if per_client is not None:
            raise FedcTypeError(
                f"{what}: expected {per_client}, got an array of shape {list(array.shape)}, i.e. "
                f"{array.shape[0]} clients with values of type {TensorType(array.dtype, array.shape[1:])}"
            )
        raise FedcTypeError(f"{what}: expected {t}, got a value of type {actual}")
    return array


def _text(value: Any, t: TensorType, what: str) -> Any:
    """A value for a ``str`` tensor: bytes (Python, numpy or TensorFlow's) are decoded as UTF-8.

    fedc's ``str`` holds text; bytes that are not UTF-8 are refused, naming the value.
    """
    if isinstance(value, (bytes, np.bytes_)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError as e:
            raise FedcTypeError(
                f"{what}: expected {t} (text), got bytes that are not UTF-8 ({e.reason} at byte {e.start}): "
                f"{_describe(value)}"
            ) from None
    if isinstance(value, np.ndarray) and (value.dtype.kind == "S" or value.dtype == object):
        return np.array([_text(v, t, what) for v in value.ravel().tolist()], dtype=object).reshape(value.shape)
    if isinstance(value, (list, tuple)) and not is_namedtuple(value):
        return [_text(v, t, what) for v in value]
    return value


def _is_numeric_nest(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_is_numeric_nest(v) for v in value)
    return isinstance(value, (int, float, bool, np.generic, np.ndarray))


def _is_tf_tensor(value: Any) -> bool:
    module = type(value).__module__ or ""
    return module.startswith("tensorflow") and hasattr(value, "numpy") and hasattr(value, "dtype")


def _struct(value: Any, t: StructType, what: str) -> tuple:
    names = t.names()
    if is_namedtuple(value):
        value = value._asdict()
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    elif hasattr(type(value), "__attrs_attrs__"):
        import attrs

        value = attrs.asdict(value, recurse=False)
    if isinstance(value, collections.abc.Mapping):
        if any(n is None for n in names):
            raise FedcTypeError(f"{what}: expected {t}, whose elements are not all named, got a mapping")
        missing = [n for n in names if n not in value]
        extra = [k for k in value if k not in names]
        if missing or extra:
            detail = "; ".join(
                part
                for part in (
                    f"missing {', '.join(map(str, missing))}" if missing else "",
                    f"unexpected {', '.join(map(str, extra))}" if extra else "",
                )
                if part
            )
            raise FedcTypeError(f"{what}: expected {t}, got a mapping with keys {list(value)} ({detail})")
        elements = [value[n] for n in names]
    elif isinstance(value, (list, tuple)):
        elements = list(value)
        if len(elements) != len(t):
            raise FedcTypeError(f"{what}: expected {t} ({len(t)} elements), got {len(elements)} elements")
    else:
        raise FedcTypeError(f"{what}: expected {t}, got {_describe(value)}")
    return tuple(
        from_python(v, element_type, f"{what}, element {name if name is not None else i}")
        for i, (v, (name, element_type)) in enumerate(zip(elements, t.items()))
    )


def _sequence(value: Any, t: SequenceType, what: str) -> list:
    if _is_tf_dataset(value):
        value = list(value.as_numpy_iterator())
    if isinstance(value, np.ndarray):
        value = list(value)
    if not isinstance(value, (list, tuple)):
        raise FedcTypeError(f"{what}: expected {t} (a list or a tf.data.Dataset), got {_describe(value)}")
    return [from_python(v, t.element, f"{what}, element {i}") for i, v in enumerate(value)]


def _is_tf_dataset(value: Any) -> bool:
    module = type(value).__module__ or ""
    return module.startswith("tensorflow") and hasattr(value, "as_numpy_iterator")


def to_python(value: Any, t: Type) -> Any:
    """Converts a run-time value of type ``t`` to what the user gets back.

    Scalars are numpy scalars (``np.float32(69.53333)``), structs are rebuilt
    in their Python container (else a dict when all elements are named, a
    tuple otherwise), ``{T}@CLIENTS`` is a list of per-client values.
    """
    if isinstance(t, TensorType):
        array = np.asarray(value)
        return array[()] if array.ndim == 0 else array
    if isinstance(t, StructType):
        elements = [to_python(v, e) for v, e in zip(value, t)]
        names = t.names()
        container = t.python_container
        if container is not None:
            if _is_namedtuple_class(container):
                return container(*elements)
            if issubclass(container, collections.abc.Mapping):
                return container(zip(names, elements))
            if dataclasses.is_dataclass(container) or hasattr(container, "__attrs_attrs__"):
                return container(**dict(zip(names, elements)))
            if container in (list, tuple):
                return container(elements)
        if names and all(n is not None for n in names):
            return dict(zip(names, elements))
        return tuple(elements)
    if isinstance(t, SequenceType):
        return [to_python(v, t.element) for v in value]
    if isinstance(t, FederatedType):
        if t.all_equal:
            return to_python(value, t.member)
        if isinstance(value, Clients):
            return [to_python(v, t.member) for v in value.items()]
        return to_python(value, t.member)
    return value


def _is_namedtuple_class(cls: type) -> bool:
    return isinstance(cls, type) and issubclass(cls, tuple) and hasattr(cls, "_fields")
