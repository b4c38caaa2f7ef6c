"""Values at run time, and their conversion from and to the user's Python values.

Backends share this representation at the API boundary:

* a tensor is a numpy array (0-d for a scalar), a struct a tuple of element
  values (names live in the type), a sequence a list of elements;
* a function is a Python callable of one argument (``None`` when it takes
  none);
* ``T@SERVER`` and all-equal ``T@CLIENTS`` are the member value itself;
* ``{T}@CLIENTS`` is a :class:`Clients`: one member value per client, kept as
  a list or *stacked* (every tensor leaf with a leading client axis), whichever
  was produced last; each form is computed from the other when asked for. Clients'
  datasets can also be *named* rather than held (:class:`ClientSource`: a
  simulation ``ClientData`` and client ids), loaded when first asked for — by
  this process, or by the workers that run those clients.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import reprlib
from typing import Any, NamedTuple, Optional

import numpy as np

from fedc.errors import FedcError, FedcTypeError
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
    to_type,
)

__all__ = ["ClientSource", "Clients", "convert", "freeze", "from_python", "load_client", "stack", "strings",
           "to_python", "unstack"]


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
    if stacked.dtype == object:  # strings: keep each one in a 0-d array, as a str tensor is kept
        return [stacked[i, ...] for i in range(count)]
    return [stacked[i] for i in range(count)]


def _slice_leaves(stacked: Any, start: int, stop: int) -> Any:
    if isinstance(stacked, tuple):
        return tuple(_slice_leaves(part, start, stop) for part in stacked)
    return stacked[start:stop]


def _leading_axis(stacked: Any) -> Optional[int]:
    if isinstance(stacked, tuple):
        for part in stacked:
            n = _leading_axis(part)
            if n is not None:
                return n
        return None
    return stacked.shape[0]


@dataclasses.dataclass(frozen=True, eq=False)
class ClientSource:
    """Clients' datasets named, not held: client ``k``'s value is ``origin``'s dataset of ``ids[k]`` as ``member``.

    ``origin`` is a simulation ``ClientData`` (``fedc.simulation``; anything
    with ``create_tf_dataset_for_client``), ``member`` the sequence type each
    dataset is converted to, ``what`` names the value in errors. ``datasets``
    are the user's own dataset objects when they were passed as a list (this
    process then iterates those); ``repeatable`` says whether a client's
    dataset, made again, gives the same elements (no shuffling or random ops),
    so that its converted value may be kept and used again.
    """

    origin: Any
    ids: tuple
    member: Type
    what: str
    datasets: Optional[tuple] = None
    repeatable: bool = False

    def load(self, k: int) -> Any:
        """Client ``k``'s value (from the user's dataset object if there is one, else made from ``origin``).

        A repeatable dataset object keeps its value (on itself, for this
        member type): passed again, as TFF's tutorials pass the same datasets
        every round, it is not iterated again.
        """
        if self.datasets is None:
            return load_client(self.origin, self.ids[k], self.member, f"{self.what}, client {k}")
        dataset = self.datasets[k]
        kept = getattr(dataset, "__fedc_value__", None)
        if kept is not None and kept[0] == self.member:
            return kept[1]
        value = from_python(dataset, self.member, f"{self.what}, client {k} ({self.ids[k]!r})")
        if self.repeatable:
            try:
                dataset.__fedc_value__ = (self.member, freeze(value))
            except AttributeError:
                pass
        return value


def freeze(value: Any) -> Any:
    """``value`` with its arrays made read-only (in place): a value fedc keeps to use again, which nothing may
    change — so that a backend may take an array it sees again, unchanged, without comparing it. Frozen
    :class:`Clients` say so (``frozen``): a backend may keep what it derives from them, keyed by the object."""
    if isinstance(value, Clients):
        freeze(value.items() if value.stacked_if_present() is None else value.stacked_if_present())
        value.frozen = True
    elif isinstance(value, (list, tuple)):
        for v in value:
            freeze(v)
    elif isinstance(value, np.ndarray):
        value.flags.writeable = False
    return value

    def pick(self, indices) -> "ClientSource":
        """The source of clients ``indices`` (in that order)."""
        datasets = None if self.datasets is None else tuple(self.datasets[i] for i in indices)
        return dataclasses.replace(self, ids=tuple(self.ids[i] for i in indices), datasets=datasets)


def load_client(origin: Any, client_id: str, member: Type, what: str) -> Any:
    """Client ``client_id``'s dataset of ``origin`` (a ClientData) as a value of ``member``; errors name the client."""
    where = f"{what} ({client_id!r})"
    try:
        dataset = origin.create_tf_dataset_for_client(client_id)
    except FedcError as e:
        raise type(e)(f"{where}: {e.message}", e.location) from None
    except Exception as e:  # the user's dataset function, a file that cannot be read, …
        raise FedcError(f"{where}: making the client's dataset failed: {type(e).__name__}: {e}") from None
    try:
        return from_python(dataset, member, where)
    except FedcError:
        raise
    except Exception as e:  # reading the dataset (tf.errors.OpError from a pipeline, say)
        message = getattr(e, "message", None) or str(e)
        raise FedcError(f"{where}: reading the client's dataset failed: {type(e).__name__}: "
                        f"{message.splitlines()[0] if message else ''}") from None


class Clients:
    """A ``{T}@CLIENTS`` value: one member value per client (held, or named by a :class:`ClientSource`)."""

    __slots__ = ("count", "_items", "_stacked", "source", "frozen", "__weakref__")

    def __init__(self, count: int, items: Optional[list] = None, stacked: Any = None,
                 source: Optional[ClientSource] = None):
        if items is None and stacked is None and source is None:
            raise ValueError("Clients needs items, a stacked value or a source")
        self.count = count
        self._items = items
        self._stacked = stacked
        #: where the clients' values come from when they are named, not held (None when held)
        self.source = source
        #: whether the values are read-only and will not change (:func:`freeze`)
        self.frozen = False

    @classmethod
    def from_source(cls, source: ClientSource) -> "Clients":
        return cls(len(source.ids), source=source)

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
            if self._stacked is not None:
                self._items = unstack(self._stacked, self.count)
            else:  # named clients: loaded here, now
                self._items = [self.source.load(k) for k in range(self.count)]
        return self._items

    def select(self, start: int, stop: int) -> "Clients":
        """Clients ``start`` to ``stop - 1`` (a shard), slicing whichever form is at hand."""
        if self._stacked is not None:
            return Clients.from_stacked(_slice_leaves(self._stacked, start, stop), stop - start)
        if self._items is None:
            return Clients.from_source(self.source.pick(range(start, stop)))
        return Clients.from_items(self._items[start:stop])

    def stacked_if_present(self) -> Optional[Any]:
        """The stacked form if it has been made (never stacks)."""
        return self._stacked

    def stacked(self) -> Optional[Any]:
        """The stacked form, or ``None`` when clients' values cannot be stacked."""
        if self._stacked is None and self._items is not None and self.count:
            self._stacked = stack(self._items)
        return self._stacked

    def __repr__(self) -> str:
        return f"Clients({self.count})"


# --------------------------------------------------------------------------
# The conversion rule: one for arguments, literals and the cast op


def convert(array: Any, dtype: Any, what: str, cast: bool = False, client_axis: bool = False) -> np.ndarray:
    """``array`` as an array of ``dtype``, by fedc's one conversion rule (docs/ir.md, "Conversions").

    * An **integer** dtype takes integers within its range, and floats whose
      value is such an integer; NaN, infinities, fractions and values outside
      the range are refused (no wrap-around, no saturation).
    * A **floating-point** (or complex) dtype takes numbers rounded to its
      nearest value; a finite value that would become infinite is refused.
    * ``bool`` takes bools and ``str`` takes strings; neither converts to or
      from numbers.

    ``cast=True`` is the ``cast`` op, an explicit conversion: it also drops a
    float's fraction (rounding toward zero, as TensorFlow's cast does), maps
    bools to 0 and 1 and numbers to ``x != 0``, and takes a complex number's
    real part. Everything the rule refuses, it refuses too.

    A refused value raises :class:`FedcTypeError` (:class:`FedcError` for a
    cast) naming ``what``, the first offending value and its position (the
    index; with ``client_axis`` the first axis is the client), and both dtypes.
    ``array`` is a numpy array (an object array holds Python numbers too big
    for int64) or anything ``np.asarray`` takes.
    """
    target = np.dtype(dtype)
    if target.kind == "U":
        return strings(array, what)
    array = np.asarray(array)
    source = array.dtype
    if source == target:
        return array
    error = FedcError if cast else FedcTypeError
    if source.kind == "O":
        return _convert_objects(array, target, what, cast, client_axis, error)
    sk, tk = source.kind, target.kind

    def refuse(mask: Any, problem: str) -> FedcError:
        index = tuple(int(i) for i in np.argwhere(np.asarray(mask))[0]) if np.ndim(mask) else ()
        value = array[index] if index else array[()]
        return error(
            f"{what}{_position(index, client_axis)}: {_show(value)} ({_a(source)}) {problem}"
        )

    if sk in "US":
        raise _no_strings(array, target, what, error)
    if sk not in "biufc":  # datetime64, timedelta64, structured or raw (void) arrays
        raise error(f"{what}: an array of numpy dtype {source} is not a value of a fedc type (expected {dtype_name(target)})")
    if tk == "b" or sk == "b":
        if cast:
            return array != 0 if tk == "b" else array.astype(target)
        raise error(
            f"{what}: {_a(source)} value does not convert to {dtype_name(target)} "
            "(bools and numbers do not convert to each other implicitly; use cast)"
        )
    if sk == "c" and tk != "c":
        if not cast and np.any(array.imag != 0):
            raise refuse(array.imag != 0, f"has an imaginary part, which {dtype_name(target)} cannot hold")
        array = array.real
        source, sk = array.dtype, "f"
    if tk in "iu":
        info = np.iinfo(target)
        if sk == "f":
            finite = np.isfinite(array)
            if not finite.all():
                raise refuse(~finite, f"has no {dtype_name(target)} value")
            whole = np.trunc(array)
            if not cast and np.any(whole != array):
                raise refuse(whole != array, f"is not an integer, so it does not convert to {dtype_name(target)} "
                             "without loss (cast drops the fraction)")
            # float(info.max + 1) is a power of two, exact in every float dtype wide enough to reach it.
            outside = (whole < float(info.min)) | (whole >= float(int(info.max) + 1))
            if outside.any():
                raise refuse(outside, _outside(target))
            return whole.astype(target)
        if np.can_cast(source, target, "safe"):
            return array.astype(target)
        if array.size and (int(array.min()) < info.min or int(array.max()) > info.max):
            raise refuse((array < info.min) | (array > info.max), _outside(target))
        return array.astype(target)
    # a floating-point or complex target: round to nearest, never overflow
    with np.errstate(over="ignore", invalid="ignore"):
        result = array.astype(target)
    if sk in "fc" or not np.can_cast(source, target, "safe"):
        overflow = _infinite(result) & ~_infinite(array)
        if overflow.any():
            raise refuse(overflow, f"is outside {dtype_name(target)}'s range (it would become infinite)")
    return result


def strings(value: Any, what: str) -> np.ndarray:
    """``value`` as a ``str`` tensor: a numpy object array of Python strings, exactly.

    numpy's fixed-width ``'U'``/``'S'`` arrays drop trailing NUL characters
    (``np.array(["a\\0"])`` holds ``"a"``), so fedc keeps string tensors as
    object arrays, and a string keeps every character, NULs included, through
    arguments, results, literals, textual IR and protobuf. ``value`` is a
    ``str``, UTF-8 ``bytes``, (nested lists of) them, or a numpy array of
    strings (a ``'U'`` array given by the caller has already lost its trailing
    NULs). A string that is not valid Unicode text (a lone surrogate; bytes
    that are not UTF-8) is refused, naming ``what``.
    """
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "USO":
            raise FedcTypeError(f"{what}: {_a(value.dtype)} value does not convert to str "
                                "(strings and numbers do not convert to each other)")
        shape, items = value.shape, value.ravel().tolist()
    else:
        shape, items = _nested_strings(value, what)
    out = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        out[i] = _text(item, what, np.unravel_index(i, shape) if shape else ())
    return out.reshape(shape)


def _nested_strings(value: Any, what: str) -> tuple[tuple, list]:
    """The shape and the row-major leaves of (nested lists of) strings; ragged lists are refused."""
    if not isinstance(value, (list, tuple)):
        return (), [value]
    if not value:
        return (0,), []
    parts = [_nested_strings(v, what) for v in value]
    inner = parts[0][0]
    if any(shape != inner for shape, _ in parts):
        raise FedcTypeError(f"{what}: a str tensor is rectangular, but this list is ragged")
    return (len(value),) + inner, [leaf for _, leaves in parts for leaf in leaves]


def _text(item: Any, what: str, index: tuple) -> str:
    where = f"{what}{_position(tuple(int(i) for i in index), False)}"
    if isinstance(item, bytes):
        try:
            return item.decode("utf-8")
        except UnicodeDecodeError as e:
            raise FedcTypeError(f"{where}: the bytes {item[:40]!r} are not UTF-8 text ({e.reason} at byte "
                                f"{e.start}); a str tensor holds Unicode text") from None
    if not isinstance(item, str):
        raise FedcTypeError(f"{where}: {_describe(item)} is not a string (strings and numbers do not convert "
                            "to each other)")
    try:
        item.encode("utf-8")
    except UnicodeEncodeError as e:
        raise FedcTypeError(f"{where}: the string {item[:40]!r} is not valid Unicode text ({e.reason} at "
                            f"character {e.start}); a str tensor holds text that UTF-8 can encode") from None
    return str(item)


def _no_strings(array: np.ndarray, target: np.dtype, what: str, error) -> FedcError:
    given = {"S": "a bytes", "U": "a str"}.get(array.dtype.kind) or _a(array.dtype)
    return error(
        f"{what}: {given} value does not convert to {dtype_name(target)} "
        "(strings and numbers do not convert to each other)"
    )


def _infinite(array: np.ndarray) -> np.ndarray:
    if array.dtype.kind == "c":
        return np.isinf(array.real) | np.isinf(array.imag)
    if array.dtype.kind == "f":
        return np.isinf(array)
    return np.zeros(array.shape, bool)


def _outside(target: np.dtype) -> str:
    info = np.iinfo(target)
    return f"does not fit in {dtype_name(target)}, whose range is [{info.min}, {info.max}]"


def _position(index: tuple, client_axis: bool) -> str:
    if client_axis and index:
        return f", client {index[0]}" + (f" at {list(index[1:])}" if len(index) > 1 else "")
    return f" at {list(index)}" if index else ""


def _show(value: Any) -> str:
    if isinstance(value, np.generic):
        return str(value) if value.dtype.kind in "fc" else repr(value.item())
    return repr(value)


def _a(dtype: np.dtype) -> str:
    name = dtype_name(dtype)
    return f"an {name}" if name.startswith("int") else f"a {name}"


def _convert_objects(array: np.ndarray, target: np.dtype, what: str, cast: bool, client_axis: bool, error) -> np.ndarray:
    """An object array of Python numbers (ints too big for int64), element by element."""
    flat = array.ravel()
    out = []
    for position, item in enumerate(flat):
        index = np.unravel_index(position, array.shape) if array.ndim else ()
        if (isinstance(item, (bool, np.bool_)) or not isinstance(item, (int, float, complex, np.number))
                or target.kind not in "iufc"):
            raise error(f"{what}{_position(tuple(int(i) for i in index), client_axis)}: {_show(item)} "
                        f"(a Python {type(item).__name__}) is not {_a(target)}")
        if isinstance(item, int) and target.kind in "iu":
            info = np.iinfo(target)
            if not info.min <= item <= info.max:
                raise error(f"{what}{_position(tuple(int(i) for i in index), client_axis)}: {item} {_outside(target)}")
            out.append(item)
            continue
        where = what + _position(tuple(int(i) for i in index), client_axis)
        try:
            single = np.asarray(float(item) if isinstance(item, int) else item)
        except OverflowError:
            raise error(f"{where}: {item} is outside {dtype_name(target)}'s range") from None
        out.append(convert(single, target, where, cast)[()])
    return np.array(out, dtype=target).reshape(array.shape)


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
        if isinstance(t.member, SequenceType):
            source = _client_source(value, t, what)
            if source is not None:
                return Clients.from_source(source)
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


def _client_source(value: Any, t: FederatedType, what: str) -> Optional[ClientSource]:
    """The clients' datasets as a :class:`ClientSource`, when ``value`` names them (else None: converted now).

    A simulation ``ClientData`` (it has ``__fedc_clients__``, giving the
    ClientData that makes its datasets and the ids, and
    ``__fedc_repeatable__``) names all its clients; a list of datasets made by one ClientData's
    ``create_tf_dataset_for_client`` (each tagged ``__fedc_client__``) names
    those clients — if the ClientData's datasets are repeatable, since a
    worker makes its own copy of each; otherwise the list is converted here,
    from the user's dataset objects, as any other list.
    """
    clients_of = getattr(value, "__fedc_clients__", None)
    if callable(clients_of):
        origin, ids = clients_of()
        try:
            spec = value.element_type_structure
        except FedcError:
            raise
        except Exception as e:  # the first client's dataset is made to find it: the user's function failed
            raise FedcError(f"{what}: the element type of the ClientData's datasets: making client {ids[0]!r}'s "
                            f"dataset failed: {type(e).__name__}: {e}") from None
        actual = SequenceType(to_type(spec))
        if not t.member.is_assignable_from(actual):
            raise FedcTypeError(f"{what}: expected {t}, got a ClientData whose datasets are {actual}")
        return ClientSource(origin, tuple(ids), t.member, what, None, origin.__fedc_repeatable__())
    if not isinstance(value, (list, tuple)) or not value:
        return None
    tags = [getattr(v, "__fedc_client__", None) for v in value]
    if tags[0] is None or not _is_tf_dataset(value[0]):
        return None
    origin = tags[0][0]
    if any(tag is None or tag[0] is not origin for tag in tags) or not origin.__fedc_repeatable__():
        return None
    # Datasets checked in an earlier call (for this member type) are not checked again: a dataset's elements'
    # type does not change, and comparing 1,000 element specs costs milliseconds a round.
    unchecked = [v for v in value if getattr(v, "__fedc_checked__", None) is not t.member]
    if unchecked:
        spec = unchecked[0].element_spec
        if (any(v.element_spec != spec for v in unchecked[1:])
                or not t.member.is_assignable_from(SequenceType(to_type(spec)))):
            return None  # converted now, which says what is wrong
        for v in unchecked:
            try:
                v.__fedc_checked__ = t.member
            except AttributeError:
                pass
    return ClientSource(origin, tuple(tag[1] for tag in tags), t.member, what, tuple(value), True)


class _ClientsStacked(NamedTuple):
    """Values of tensor type ``member`` of all clients, stacked along a new first axis.

    Not a TensorType: the stacked rank may be one more than ``fedc.limits.MAX_RANK``.
    """

    member: TensorType

    @property
    def dtype(self) -> np.dtype:
        return self.member.dtype

    @property
    def shape(self) -> Optional[tuple]:
        return None if self.member.shape is None else (None,) + self.member.shape

    def __str__(self) -> str:
        return f"{{{self.member}}}@CLIENTS"


def _with_client_axis(member: TensorType) -> _ClientsStacked:
    """The type of ``member`` values of all clients stacked along a new first axis."""
    return _ClientsStacked(member)


def _shape_fits(declared: Optional[tuple], actual: tuple) -> bool:
    """Whether an array of shape ``actual`` has a declared shape (``None`` dims and shapes: any)."""
    if declared is None:
        return True
    return len(declared) == len(actual) and all(d is None or d == a for d, a in zip(declared, actual))


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
        return _tensor(array, _with_client_axis(member), what)
    except FedcTypeError:
        return None  # convert client by client, so the error names the client


_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxlevel, _SHORT_REPR.maxdict, _SHORT_REPR.maxlist, _SHORT_REPR.maxtuple = 4, 4, 6, 6
_SHORT_REPR.maxstring = _SHORT_REPR.maxother = 40


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"a {dtype_name(value.dtype)} array of shape {list(value.shape)}"
    text = _SHORT_REPR.repr(value)  # bounded in depth and length, whatever nests inside
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} (a Python {type(value).__name__})"


def _tensor(value: Any, t, what: str, per_client: Optional[Type] = None) -> np.ndarray:
    if _is_tf_tensor(value):
        value = value.numpy()
    if t.dtype.kind == "U":
        return _checked_shape(strings(value, what), t, what, per_client)
    if isinstance(value, (list, tuple)) and any(isinstance(v, (dict, tuple, list)) and not _is_numeric_nest(v) for v in value):
        raise FedcTypeError(f"{what}: expected {t}, got {_describe(value)}")
    try:
        array = np.asarray(value)
        if array.dtype.kind == "f" and t.dtype.kind in "iu" and isinstance(value, (list, tuple)):
            array = np.array(value, dtype=object)  # Python ints beyond int64 made numpy choose float64
    except (TypeError, ValueError):
        raise FedcTypeError(f"{what}: expected {t}, got {_describe(value)}") from None
    if array.dtype == object and not _is_numeric_nest(value):
        raise FedcTypeError(f"{what}: expected {t}, got {_describe(value)}")
    return _checked_shape(convert(array, t.dtype, what, client_axis=per_client is not None), t, what, per_client)


def _checked_shape(array: np.ndarray, t, what: str, per_client: Optional[Type]) -> np.ndarray:
    """``array`` (already of ``t``'s dtype) if its shape is ``t``'s (a TensorType or _ClientsStacked)."""
    if not _shape_fits(t.shape, array.shape):
        actual = TensorType(t.dtype, array.shape)
        if per_client is not None:
            raise FedcTypeError(
                f"{what}: expected {per_client}, got an array of shape {list(array.shape)}, i.e. "
                f"{array.shape[0]} clients with values of type {TensorType(t.dtype, array.shape[1:])}"
            )
        raise FedcTypeError(f"{what}: expected {t}, got a value of type {actual}")
    return array


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
        if isinstance(value, str):  # an element of a str tensor (np.asarray would drop trailing NULs)
            return value
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
            stacked = value._stacked
            if (isinstance(t.member, TensorType) and isinstance(stacked, np.ndarray) and stacked.dtype != object
                    and value._items is None):
                return list(stacked)  # numpy scalars or arrays, one per client, as below but in one call
            return [to_python(v, t.member) for v in value.items()]
        return to_python(value, t.member)
    return value


def _is_namedtuple_class(cls: type) -> bool:
    return isinstance(cls, type) and issubclass(cls, tuple) and hasattr(cls, "_fields")
