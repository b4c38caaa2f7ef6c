"""Running a training process for many rounds: client sampling, evaluation, checkpoints, metrics out.

:func:`run_training_process` is TFF's ``tff.simulation.run_training_process``:
each round it asks ``training_selection_fn(round_num)`` for the clients'
data, runs ``next``, evaluates every ``rounds_per_evaluation`` rounds, saves
the state every ``rounds_per_saving_program_state`` rounds and releases each
round's metrics to every manager (:class:`CSVFileReleaseManager`,
:class:`TensorBoardReleaseManager`). With a :class:`FileProgramStateManager`
it resumes from the latest saved round. On a terminal it shows a progress
line: the round, the elapsed time and the round's main metrics.

Checkpoints are data: a ``.npz`` of the state's arrays, keyed by their
position, read back with ``allow_pickle=False`` into the structure of the
process's initial state. Nothing in a checkpoint names code to run.
"""

from __future__ import annotations

import collections
import csv
import io
import os
import re
import sys
import time
from typing import Any, Callable, Optional, Sequence

import numpy as np

from fedc import FedcTypeError, FedcValueError

__all__ = ["CSVFileReleaseManager", "FileProgramStateManager", "TensorBoardReleaseManager", "run_training_process"]


# --------------------------------------------------------------------------
# Structures <-> flat arrays


def _flatten(value: Any, path: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return [leaf for name, v in zip(value._fields, value) for leaf in _flatten(v, f"{path}/{name}")]
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in _flatten(v, f"{path}/{k}")]
    if isinstance(value, (list, tuple)):
        return [leaf for i, v in enumerate(value) for leaf in _flatten(v, f"{path}/{i}")]
    return [(path or "/", value)]


def _pack(structure: Any, leaves) -> Any:
    if isinstance(structure, tuple) and hasattr(structure, "_fields"):
        return type(structure)(*[_pack(v, leaves) for v in structure])
    if isinstance(structure, dict):
        return type(structure)((k, _pack(v, leaves)) for k, v in structure.items())
    if isinstance(structure, (list, tuple)):
        return type(structure)(_pack(v, leaves) for v in structure)
    return next(leaves)


class FileProgramStateManager:
    """Saves a program's state per version (round) under ``root_dir`` and loads the latest (TFF's manager).

    A state is a structure of arrays (the server state of a process); each
    version is ``{prefix}{version}.npz``. At most ``keep_total`` versions are
    kept (the oldest go; 0 keeps all).
    """

    def __init__(self, root_dir: str, prefix: str = "program_state_", keep_total: int = 5):
        if not isinstance(root_dir, (str, os.PathLike)):
            raise FedcTypeError(f"root_dir is a path, got {type(root_dir).__name__}")
        if not isinstance(keep_total, int) or keep_total < 0:
            raise FedcValueError(f"keep_total must be an integer >= 0, got {keep_total!r}")
        if not re.fullmatch(r"[A-Za-z0-9_.-]*", prefix):
            raise FedcValueError(f"prefix may hold letters, digits, '_', '.' and '-' only, got {prefix!r}")
        self._root = os.fspath(root_dir)
        self._prefix = prefix
        self._keep = keep_total

    def _path(self, version: int) -> str:
        return os.path.join(self._root, f"{self._prefix}{version}.npz")

    def get_versions(self) -> Optional[list[int]]:
        """The saved versions, oldest first (None if there are none)."""
        if not os.path.isdir(self._root):
            return None
        pattern = re.compile(re.escape(self._prefix) + r"(\d+)\.npz")
        versions = sorted(int(m.group(1)) for m in map(pattern.fullmatch, os.listdir(self._root)) if m)
        return versions or None

    def save(self, program_state: Any, version: int) -> None:
        if not isinstance(version, int) or version < 0:
            raise FedcValueError(f"a version is an integer >= 0, got {version!r}")
        os.makedirs(self._root, exist_ok=True)
        leaves = _flatten(program_state)
        arrays = {f"leaf_{i:06d}": np.asarray(v) for i, (_, v) in enumerate(leaves)}
        arrays["paths"] = np.array([p for p, _ in leaves], dtype=np.str_)
        final = self._path(version)
        partial = final + ".part"
        with open(partial, "wb") as f:
            np.savez(f, **arrays)
        os.replace(partial, final)
        versions = self.get_versions() or []
        if self._keep:
            for old in versions[:-self._keep]:
                os.remove(self._path(old))

    def load(self, version: int, structure: Any) -> Any:
        """Version ``version``, in the structure of ``structure`` (e.g. the process's initial state)."""
        path = self._path(version)
        try:
            with np.load(path, allow_pickle=False) as data:
                paths = [str(p) for p in data["paths"]]
                leaves = [data[f"leaf_{i:06d}"] for i in range(len(paths))]
        except (OSError, KeyError, ValueError) as e:
            raise FedcValueError(f"{path}: not a program state fedc saved ({e})") from None
        expected = [p for p, _ in _flatten(structure)]
        if paths != expected:
            raise FedcValueError(f"{path}: the saved state has another structure ({len(paths)} arrays, first "
                                 f"{paths[:3]}) than the process's ({len(expected)} arrays, first {expected[:3]})")
        for (p, template), leaf in zip(_flatten(structure), leaves):
            t = np.asarray(template)
            if leaf.shape != t.shape or leaf.dtype != t.dtype:
                raise FedcValueError(f"{path}: {p} is {leaf.dtype}{list(leaf.shape)} in the file, "
                                     f"{t.dtype}{list(t.shape)} in the process's state")
        return _pack(structure, iter(leaves))

    def load_latest(self, structure: Any) -> tuple[Any, int]:
        """``(state, version)`` of the latest version, or ``(None, 0)`` when nothing was saved."""
        versions = self.get_versions()
        if not versions:
            return None, 0
        return self.load(versions[-1], structure), versions[-1]


# --------------------------------------------------------------------------
# Releasing metrics


def _scalars(metrics: Any) -> list[tuple[str, float]]:
    """The metrics' scalar numbers, named by their paths (``client_work/train/loss``)."""
    out = []
    for path, value in _flatten(metrics):
        array = np.asarray(value)
        if array.ndim == 0 and array.dtype.kind in "biuf":
            out.append((path.lstrip("/"), float(array)))
    return out


class CSVFileReleaseManager:
    """Writes each round's scalar metrics as a row of a CSV file (a column per metric path; ``key`` first).

    Releasing a key again (after resuming from an earlier checkpoint) drops
    the rows from that key on, so the file holds each round once.
    """

    def __init__(self, file_path: str, key_fieldname: str = "key"):
        self._path = os.fspath(file_path)
        self._key = key_fieldname

    def _rows(self) -> tuple[list[str], list[dict]]:
        if not os.path.isfile(self._path):
            return [self._key], []
        with open(self._path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            return list(reader.fieldnames or [self._key]), list(reader)

    def release(self, value: Any, key: int) -> None:
        fields, rows = self._rows()
        try:
            rows = [r for r in rows if int(float(r[self._key])) < key]
        except (KeyError, TypeError, ValueError):
            raise FedcValueError(f"{self._path}: not a metrics file this manager wrote (its {self._key!r} column is "
                                 "missing or not numbers); give another file_path") from None
        row = {self._key: key, **dict(_scalars(value))}
        fields += [name for name in row if name not in fields]
        rows.append(row)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
        directory = os.path.dirname(self._path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        with open(self._path + ".part", "w", newline="", encoding="utf-8") as f:
            f.write(buffer.getvalue())
        os.replace(self._path + ".part", self._path)


class TensorBoardReleaseManager:
    """Writes each round's scalar metrics as TensorBoard scalars (``tensorboard --logdir summary_dir``)."""

    def __init__(self, summary_dir: str):
        import tensorflow as tf

        self._writer = tf.summary.create_file_writer(os.fspath(summary_dir))

    def release(self, value: Any, key: int) -> None:
        import tensorflow as tf

        with self._writer.as_default():
            for name, number in _scalars(value):
                tf.summary.scalar(name, number, step=key)
        self._writer.flush()


# --------------------------------------------------------------------------
# The loop


_MAIN_METRICS = ("loss", "sparse_categorical_accuracy", "accuracy")


def _progress_line(round_num: int, total: int, elapsed: float, metrics: Any) -> str:
    shown = [f"{name.rsplit('/', 1)[-1]} {number:.4g}" for name, number in _scalars(metrics)
             if name.rsplit("/", 1)[-1] in _MAIN_METRICS and "/train/" in f"/{name}"]
    return f"round {round_num}/{total}  {elapsed:.1f} s" + ("  " + "  ".join(shown) if shown else "")


def run_training_process(training_process, training_selection_fn: Callable[[int], Any], total_rounds: int,
                         evaluation_fn: Optional[Callable[[Any, Any], Any]] = None,
                         evaluation_selection_fn: Optional[Callable[[int], Any]] = None,
                         rounds_per_evaluation: int = 1,
                         program_state_manager: Optional[FileProgramStateManager] = None,
                         rounds_per_saving_program_state: int = 1,
                         metrics_managers: Optional[Sequence[Any]] = None,
                         progress: Optional[bool] = None) -> Any:
    """Runs ``total_rounds`` rounds of ``training_process``; returns the final state.

    Round ``r``'s released metrics are ``<train=…, training_time_in_seconds=…>``
    plus ``evaluation=evaluation_fn(state, evaluation_selection_fn(r))`` on
    evaluation rounds (and before round 1, at key 0, when starting fresh).
    ``progress`` shows a progress line (default: when stderr is a terminal).
    """
    if not isinstance(total_rounds, int) or total_rounds < 0:
        raise FedcValueError(f"total_rounds must be an integer >= 0, got {total_rounds!r}")
    for name, n in (("rounds_per_evaluation", rounds_per_evaluation),
                    ("rounds_per_saving_program_state", rounds_per_saving_program_state)):
        if not isinstance(n, int) or n < 1:
            raise FedcValueError(f"{name} must be an integer >= 1, got {n!r}")
    if (evaluation_fn is None) != (evaluation_selection_fn is None):
        raise FedcValueError("evaluation_fn and evaluation_selection_fn go together: give both or neither")
    managers = list(metrics_managers or [])
    for m in managers:
        if not callable(getattr(m, "release", None)):
            raise FedcTypeError(f"a metrics manager has a release(value, key) method; {type(m).__name__} has none")
    show = sys.stderr.isatty() if progress is None else bool(progress)

    initial = training_process.initialize()
    state, start = initial, 0
    if program_state_manager is not None:
        loaded, version = program_state_manager.load_latest(initial)
        if loaded is not None:
            state, start = loaded, version
    if start == 0 and evaluation_fn is not None:
        metrics = collections.OrderedDict(evaluation=evaluation_fn(state, evaluation_selection_fn(0)))
        for m in managers:
            m.release(metrics, key=0)
    if program_state_manager is not None and start == 0:
        program_state_manager.save(state, 0)
    began = time.monotonic()
    for round_num in range(start + 1, total_rounds + 1):
        data = training_selection_fn(round_num)
        round_start = time.monotonic()
        output = training_process.next(state, data)
        state, train = (output.state, output.metrics) if hasattr(output, "state") else (output[0], output[1])
        metrics = collections.OrderedDict(train=train, training_time_in_seconds=time.monotonic() - round_start)
        if evaluation_fn is not None and round_num % rounds_per_evaluation == 0:
            metrics["evaluation"] = evaluation_fn(state, evaluation_selection_fn(round_num))
        for m in managers:
            m.release(metrics, key=round_num)
        if program_state_manager is not None and (round_num % rounds_per_saving_program_state == 0
                                                  or round_num == total_rounds):
            program_state_manager.save(state, round_num)
        if show:
            line = _progress_line(round_num, total_rounds, time.monotonic() - began, metrics)
            print("\r" + line.ljust(78), end="\n" if round_num == total_rounds else "", file=sys.stderr,
                  flush=True)
    return state
