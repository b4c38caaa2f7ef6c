"""Between fedc's run-time values (:mod:`fedc.values`) and the tensors of a traced call.

:func:`ingest` flattens an argument into numpy arrays — the inputs of the
call's ``tf.function`` — and a *skeleton*, a hashable description of how the
arrays make up the value (structs, stacked or per-client clients, sequence
segments). The skeleton and the arrays' shapes and dtypes key the traced
function: a later call with data of the same layout reuses it without tracing.
:func:`rebuild` turns the flat input tensors back into graph values inside the
trace; :func:`export` flattens the result the same way, and :func:`restore`
makes fedc values of the arrays the call returns.

Skeletons: ``("t",)`` a tensor; ``("s", parts)`` a struct; ``("c", count,
member)`` clients with stacked values; ``("ci", items)`` clients one by one;
``("q", segments)`` a sequence (one element skeleton per segment);
``("cg", count, groups)`` clients in groups, each ``(clients, skeleton)``
stacked: clients whose values hold sequences, grouped by layout (a segment's
tensors ``[clients, steps, ...]``), so a thousand clients' datasets are a few
arrays, not thousands; or a large array TensorFlow reads in place, split where
a client's row is 64-byte aligned (:class:`Shared`); ``("n",)`` no value.
"""

from __future__ import annotations

import weakref
from typing import Any, Iterator, Optional

import numpy as np

from fedc import tensorflow_graphs as tg
from fedc.errors import FedcError
from fedc.types import FederatedType, FunctionType, SequenceType, StructType, TensorType, Type
from fedc.values import Clients

from .graph import ClientValues, SequenceValue, leaves, tree_map

__all__ = ["Shared", "Stacked", "aligned_copy", "eager_tensor", "owned", "unshare", "export", "to_tensor", "from_graph_value", "ingest", "rebuild", "restore", "to_graph_value"]


def _tf():
    import tensorflow as tf

    return tf


def _has_sequence(t: Type) -> bool:
    return any(isinstance(part, SequenceType) for part in t.walk())


def _array(value: Any) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype == object or array.dtype.kind == "U":  # fedc's str tensors: UTF-8 bytes for tf.string
        out = np.empty(array.shape, dtype=object)
        for index, item in np.ndenumerate(array):
            out[index] = item.encode("utf-8") if isinstance(item, str) else item
        return out
    return array


#: dtypes handed to TensorFlow through DLPack from an aligned copy (a large argument costs one memcpy, not two)
_DLPACK_DTYPES = {np.dtype(d) for d in ("float32", "float64", "int8", "int16", "int32", "int64",
                                        "uint8", "uint16", "uint32", "uint64")}
_DLPACK_MIN_BYTES = 1 << 20
_ALIGN = 64  # TensorFlow's alignment for tensors it did not allocate


def to_tensor(array: np.ndarray):
    """``array`` as an eager tensor of its own (a copy: the caller's array may change after the call).

    A large numeric array is copied once into 64-byte-aligned memory that the
    tensor then owns through DLPack; ``tf.constant`` copies twice.
    """
    tf = _tf()
    if array.dtype in _DLPACK_DTYPES and array.nbytes >= _DLPACK_MIN_BYTES:
        return tf.experimental.dlpack.from_dlpack(aligned_copy(array).__dlpack__())
    return tf.constant(array)


def aligned_copy(array: np.ndarray) -> np.ndarray:
    """A writable, C-contiguous copy of ``array`` in 64-byte-aligned memory (which TensorFlow can read in place)."""
    buffer = np.empty(array.nbytes + _ALIGN, np.uint8)
    offset = (-buffer.ctypes.data) % _ALIGN
    aligned = buffer[offset: offset + array.nbytes].view(array.dtype).reshape(array.shape)
    np.copyto(aligned, array)
    return aligned


def owned(array: np.ndarray) -> np.ndarray:
    """``array`` if TensorFlow can read it in place (see :class:`Shared`), else such a copy of it when it is large
    (an array Ray delivers is read-only memory of its object store: each call would copy it)."""
    if (array.dtype not in _DLPACK_DTYPES or array.nbytes < _DLPACK_MIN_BYTES
            or (array.flags.writeable and array.flags.c_contiguous and array.ctypes.data % _ALIGN == 0)):
        return array
    return aligned_copy(array)


class Shared:
    """A large input array that TensorFlow reads in place (DLPack, no copy) for the length of one call.

    Only 64-byte-aligned memory is shared (TensorFlow's kernels assume it);
    the executable makes sure no result aliases it (:func:`unshare`).
    """

    __slots__ = ("array", "shape", "dtype")

    def __init__(self, array: np.ndarray):
        self.array = array
        self.shape = array.shape
        self.dtype = array.dtype

    def tensor(self):
        return _tf().experimental.dlpack.from_dlpack(self.array.__dlpack__())


def _shared(array: np.ndarray, count: int, flat: list):
    """The skeleton of a large clients' array read in place: whole if aligned, else its first few clients copied.

    A client's row starting on a 64-byte boundary splits the array into a
    copied head (fewer than 64 clients) and a shared rest: two groups of
    clients (``("cg", count, ((range(0, k), head), (range(k, count), rest)))``)
    that aggregations reduce apart. An array with no such row is copied.
    """
    if (array.dtype not in _DLPACK_DTYPES or array.nbytes < _DLPACK_MIN_BYTES or not array.flags.c_contiguous
            or not array.flags.writeable  # numpy's DLPack export refuses read-only arrays: those are copied
            or array.ndim == 0 or array.shape[0] != count):
        return None
    address = array.ctypes.data
    row = array.nbytes // count
    first = next((k for k in range(min(count, _ALIGN)) if (address + k * row) % _ALIGN == 0), None)
    if first is None:
        return None
    if first == 0:
        flat.append(Shared(array))
        return ("c", count, ("t",))
    flat.append(np.array(array[:first]))
    flat.append(Shared(array[first:]))
    return ("cg", count, ((range(0, first), ("t",)), (range(first, count), ("t",))))


def eager_tensor(item: Any):
    """An input of :func:`ingest` (an array, :class:`Stacked` or :class:`Shared`) as an eager tensor of its own."""
    if isinstance(item, Stacked):
        return _tf().constant(item.array())
    if isinstance(item, Shared):
        return _tf().constant(item.array)
    return _tf().constant(item)


def unshare(result: np.ndarray, shared: list) -> np.ndarray:
    """``result``, copied if its memory may be that of an input TensorFlow read in place."""
    if any(np.may_share_memory(result, s.array) for s in shared):
        return np.array(result)
    return result


def ingest(value: Any, t: Type, flat: list) -> tuple:
    """The skeleton of ``value`` (of type ``t``); appends its arrays to ``flat``."""
    if isinstance(t, FederatedType):
        if t.all_equal:
            return ingest(value, t.member, flat)
        if not isinstance(value, Clients):
            raise FedcError(f"the tf backend expected clients' values for {t}, got {type(value).__name__}")
        if value.count and _has_sequence(t.member):
            if not value.frozen:
                return _grouped(value.items(), t.member, flat)
            held = _GROUPED.get(value)  # frozen clients (a worker's shard, kept): grouped once
            if held is None or held[0] != t.member:
                start = len(flat)
                skeleton = _grouped(value.items(), t.member, flat)
                _GROUPED[value] = (t.member, skeleton, flat[start:])
                return skeleton
            flat.extend(held[2])
            return held[1]
        stacked = value.stacked() if value.count else None
        if isinstance(stacked, np.ndarray):
            shared = _shared(stacked, value.count, flat)
            if shared is not None:
                return shared
        if stacked is not None:
            member = _stacked_skeleton(stacked, flat)
            return ("c", value.count, member)
        return ("ci", tuple(ingest(item, t.member, flat) for item in value.items()))
    if isinstance(t, StructType):
        return ("s", tuple(ingest(v, e, flat) for v, e in zip(value, t)))
    if isinstance(t, SequenceType):
        return ("q", tuple(_segments(list(value), t.element, flat)))
    if isinstance(t, TensorType):
        flat.append(_array(value))
        return ("t",)
    raise FedcError(f"the tf backend cannot take an argument of type {t}")


#: frozen Clients -> (member type, skeleton, the arrays :func:`_grouped` made of them), while they live
_GROUPED: "weakref.WeakKeyDictionary[Clients, tuple]" = weakref.WeakKeyDictionary()


def _layout(value: Any, t: Type) -> tuple:
    """What must match for two clients' values to be stacked: shapes, and sequences' segment boundaries."""
    if isinstance(t, StructType):
        return tuple(_layout(v, e) for v, e in zip(value, t))
    if isinstance(t, SequenceType):
        keys = [tuple(np.shape(leaf) for leaf in tg.flatten_value(e, t.element)) for e in value]
        runs = []
        for key in keys:
            if runs and runs[-1][0] == key:
                runs[-1][1] += 1
            else:
                runs.append([key, 1])
        return ("q", tuple((key, n) for key, n in runs))
    return np.shape(value)


def _grouped(items: list, t: Type, flat: list) -> tuple:
    """Clients grouped by layout, each group's values stacked (sequences as [clients, steps, ...] segments)."""
    groups: dict = {}
    for c, item in enumerate(items):
        groups.setdefault(_layout(item, t), []).append(c)
    parts = []
    for clients in groups.values():
        parts.append((tuple(clients), _stack_group([items[c] for c in clients], t, flat)))
    return ("cg", len(items), tuple(parts))


def _stack_group(values: list, t: Type, flat: list) -> tuple:
    if isinstance(t, StructType):
        return ("s", tuple(_stack_group([v[i] for v in values], e, flat) for i, e in enumerate(t)))
    if isinstance(t, SequenceType):
        # Every value has the same runs: the segment boundaries of the first.
        runs = _layout(values[0], t)[1]
        segments, start = [], 0
        for _, n in runs:
            columns = [[tg.flatten_value(e, t.element) for e in list(v)[start:start + n]] for v in values]
            leaves_count = len(tg.flat_leaves(t.element))
            for k in range(leaves_count):
                flat.append(Stacked([np.asarray(e[k]) for client in columns for e in client], (len(values), n)))
            segments.append(_leaf_skeleton(t.element))
            start += n
        return ("q", tuple(segments))
    flat.append(Stacked([np.asarray(v) for v in values], (len(values),)))
    return ("t",)


class Stacked:
    """An input array still in pieces: ``parts`` (same shape and dtype) stacked into ``lead + part.shape``.

    Kept apart so that a later call can compare the pieces with the array it
    stacked last time and, when they are equal, reuse that array's tensor
    instead of stacking and converting again (:class:`~. TFExecutable`'s
    ingestion cache).
    """

    __slots__ = ("parts", "lead", "shape", "dtype")

    def __init__(self, parts: list, lead: tuple):
        self.parts = parts
        self.lead = lead
        first = _array(parts[0]) if parts else np.zeros(0, np.float32)
        self.shape = tuple(lead) + first.shape
        self.dtype = first.dtype

    def array(self) -> np.ndarray:
        stacked = np.stack([_array(p) for p in self.parts]) if self.parts else np.zeros(self.shape, self.dtype)
        return stacked.reshape(self.shape)

    def equals(self, array: np.ndarray, parts: Optional[list] = None) -> bool:
        """Whether the stacked parts would equal ``array`` (compared piece by piece, nothing copied).

        ``parts``, the pieces ``array`` was stacked from: a piece that is the
        very same read-only array as the one in its place is equal without a
        look (fedc's kept client values are read-only: :func:`fedc.values.freeze`).
        """
        if array.shape != self.shape or array.dtype != self.dtype or self.dtype == object:
            return False
        flat = array.reshape((-1,) + self.shape[len(self.lead):])
        if parts is not None and len(parts) == len(self.parts):
            return all((part is old and not part.flags.writeable) or np.array_equal(part, flat[i])
                       for i, (part, old) in enumerate(zip(self.parts, parts)))
        return all(np.array_equal(part, flat[i]) for i, part in enumerate(self.parts))


def _leaf_skeleton(t: Type) -> tuple:
    if isinstance(t, StructType):
        return ("s", tuple(_leaf_skeleton(e) for e in t))
    return ("t",)


def _stacked_skeleton(stacked: Any, flat: list) -> tuple:
    if isinstance(stacked, tuple):
        return ("s", tuple(_stacked_skeleton(part, flat) for part in stacked))
    flat.append(_array(stacked))
    return ("t",)


def _segments(elements: list, element_type: Type, flat: list) -> list:
    """Runs of consecutive elements of one shape, each stacked along a step axis."""
    segments, run, key = [], [], None
    for element in elements:
        k = tuple(np.shape(leaf) for leaf in tg.flatten_value(element, element_type))
        if run and k != key:
            segments.append(run)
            run = []
        run.append(element)
        key = k
    if run:
        segments.append(run)
    skeletons = []
    for run in segments:
        columns = list(zip(*[tg.flatten_value(e, element_type) for e in run]))
        stacked = tg.unflatten_value([np.stack([np.asarray(x) for x in column]) for column in columns],
                                     element_type) if isinstance(element_type, StructType) else \
            np.stack([np.asarray(x) for x in columns[0]])
        skeletons.append(_stacked_skeleton(stacked, flat))
    return skeletons


def rebuild(skeleton: tuple, tensors: Iterator) -> Any:
    """The graph value of ``skeleton`` from the flat input tensors."""
    kind = skeleton[0]
    if kind == "t":
        return next(tensors)
    if kind == "s":
        return tuple(rebuild(part, tensors) for part in skeleton[1])
    if kind == "c":
        return ClientValues(skeleton[1], stacked=rebuild(skeleton[2], tensors))
    if kind == "ci":
        return ClientValues(len(skeleton[1]), items=[rebuild(item, tensors) for item in skeleton[1]])
    if kind == "cg":
        return ClientValues(skeleton[1], grouped=[(clients, rebuild(part, tensors))
                                                   for clients, part in skeleton[2]])
    if kind == "q":
        return SequenceValue([rebuild(segment, tensors) for segment in skeleton[1]])
    if kind == "n":
        return None
    raise AssertionError(skeleton)


def export(graph, value: Any, t: Type, flat: list) -> tuple:
    """The skeleton of result ``value`` (of type ``t``); appends its tensors to ``flat``."""
    tf = _tf()
    if isinstance(t, FederatedType):
        if t.all_equal:
            if isinstance(value, ClientValues):  # one value per client, all equal: the first
                value = value.items()[0] if value.count else value
            return export(graph, value, t.member, flat)
        value = graph.as_clients(value, "the result")
        stacked = value.stacked_value()
        if stacked is not None:
            return ("c", value.count, _export_stacked(stacked, flat))
        return ("ci", tuple(export(graph, item, t.member, flat) for item in value.items()))
    if isinstance(t, StructType):
        return ("s", tuple(export(graph, v, e, flat) for v, e in zip(value, t)))
    if isinstance(t, SequenceType):
        return ("q", tuple(_export_stacked(segment, flat) for segment in value.segments))
    if isinstance(t, TensorType):
        flat.append(tf.convert_to_tensor(value))
        return ("t",)
    raise FedcError(f"the tf backend cannot return a value of type {t}")


def _export_stacked(stacked: Any, flat: list) -> tuple:
    tf = _tf()
    if isinstance(stacked, tuple):
        return ("s", tuple(_export_stacked(part, flat) for part in stacked))
    flat.append(tf.convert_to_tensor(stacked))
    return ("t",)


def _leaf_type(t: Type) -> Type:
    return t.member if isinstance(t, FederatedType) else t


def restore(skeleton: tuple, arrays: Iterator, t: Type) -> Any:
    """The fedc value of type ``t`` from the arrays the call returned."""
    kind = skeleton[0]
    if isinstance(t, FederatedType):
        if t.all_equal:
            return restore(skeleton, arrays, t.member)
        if kind == "c":
            return Clients.from_stacked(_restore_stacked(skeleton[2], arrays, t.member), skeleton[1])
        return Clients.from_items([restore(item, arrays, t.member) for item in skeleton[1]])
    if kind == "s":
        return tuple(restore(part, arrays, e) for part, e in zip(skeleton[1], t))
    if kind == "q":
        elements = []
        for segment in skeleton[1]:
            stacked = _restore_stacked(segment, arrays, t.element)
            count = len(leaves(stacked)[0])
            elements.extend(tree_map(lambda a, i=i: a[i], stacked) for i in range(count))
        return elements
    return _tensor(next(arrays), t)


def _restore_stacked(skeleton: tuple, arrays: Iterator, t: Type) -> Any:
    if skeleton[0] == "s":
        return tuple(_restore_stacked(part, arrays, e) for part, e in zip(skeleton[1], t))
    return _tensor(next(arrays), t)


def _tensor(array: np.ndarray, t: Type) -> np.ndarray:
    if t.dtype.kind == "U":  # bytes kept as objects: a numpy bytes dtype would drop trailing NULs
        if not isinstance(array, np.ndarray):
            boxed = np.empty((), dtype=object)
            boxed[()] = array
            array = boxed
        return tg.decode_strings(array, "the tf backend's result")
    array = np.asarray(array)
    return array.astype(t.dtype, copy=False)


# --------------------------------------------------------------------------
# Eager values, for the calls that run outside a traced function


def to_graph_value(value: Any, t: Type) -> Any:
    """A fedc value as eager graph values."""
    flat: list = []
    skeleton = ingest(value, t, flat) if t is not None else ("n",)
    return rebuild(skeleton, iter([eager_tensor(a) for a in flat]))


def from_graph_value(value: Any, t: Type) -> Any:
    """Eager graph values as a fedc value (``t`` is not federated)."""
    if isinstance(t, StructType):
        return tuple(from_graph_value(v, e) for v, e in zip(value, t))
    if isinstance(t, SequenceType):
        elements = []
        for segment in value.segments:
            for i in range(SequenceValue.segment_length(segment)):
                elements.append(from_graph_value(tree_map(lambda a, i=i: a[i], segment), t.element))
        return elements
    if isinstance(t, FunctionType):
        raise FedcError("the tf backend cannot pass a function out of a compiled call")
    return _tensor(value.numpy(), t)
