"""``SqlClientData``: clients' examples in an SQLite file, in the layout of TFF's dataset files.

The file has a table ``examples(split_name TEXT, client_id TEXT,
serialized_example_proto BLOB)`` (one row per example, a serialized
``tf.train.Example``) and a table ``client_metadata(client_id TEXT,
split_name TEXT, num_examples INTEGER)``. Every query binds its values as
parameters; a client id is never pasted into SQL text. A client's examples
come in the order they were stored (``rowid``).
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any, Callable, Optional

import numpy as np

from fedc import FedcTypeError, FedcValueError

from .client_data import ClientData

__all__ = ["SqlClientData"]

_TABLES = {"examples": {"split_name", "client_id", "serialized_example_proto"},
           "client_metadata": {"client_id", "split_name"}}


def _tf():
    import tensorflow as tf

    return tf


def _connect(path: str) -> sqlite3.Connection:
    """A read-only connection (the file is data: nothing fedc does writes to it)."""
    try:
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as e:
        raise FedcValueError(f"{path}: cannot open as an SQLite database: {e}") from None


def check_database(path: str) -> None:
    """Raises a FedcValueError naming what is missing unless ``path`` has TFF's tables and columns."""
    if not os.path.isfile(path):
        raise FedcValueError(f"{path}: no such file")
    with _connect(path) as connection:
        try:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.Error as e:
            raise FedcValueError(f"{path}: not an SQLite database ({e})") from None
        for table, needed in _TABLES.items():
            if table not in tables:
                raise FedcValueError(f"{path}: the database has no table {table!r} (it has {sorted(tables)}); "
                                     f"a dataset file has tables {sorted(_TABLES)}")
            columns = {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}  # a fixed name
            missing = needed - columns
            if missing:
                raise FedcValueError(f"{path}: table {table!r} lacks the column(s) {sorted(missing)} "
                                     f"(it has {sorted(columns)})")


class SqlClientData(ClientData):
    """The clients of one split (``split_name``, or every row if None) of an SQLite dataset file.

    Elements are the serialized ``tf.train.Example`` protos (``tf.string``
    scalars); :meth:`preprocess` parses them (as ``emnist.load_data`` does).
    """

    def __init__(self, database_filepath: str, split_name: Optional[str] = None):
        if not isinstance(database_filepath, (str, os.PathLike)):
            raise FedcTypeError(f"database_filepath is a path, got {type(database_filepath).__name__}")
        if split_name is not None and not isinstance(split_name, str):
            raise FedcTypeError(f"split_name is a str or None, got {type(split_name).__name__}")
        self._path = os.fspath(database_filepath)
        check_database(self._path)
        self._split = split_name
        with _connect(self._path) as connection:
            if split_name is None:
                rows = connection.execute("SELECT DISTINCT client_id FROM client_metadata")
            else:
                rows = connection.execute("SELECT DISTINCT client_id FROM client_metadata WHERE split_name = ?",
                                          (split_name,))
            self._ids = sorted(str(row[0]) for row in rows)
        if not self._ids:
            raise FedcValueError(f"{self._path}: no clients" + (f" in split {split_name!r}" if split_name else ""))
        self._rowids = None

    @property
    def client_ids(self) -> list[str]:
        return list(self._ids)

    @property
    def element_type_structure(self) -> Any:
        return _tf().TensorSpec(shape=(), dtype=_tf().string)

    def _query(self, client_id: str) -> list[bytes]:
        sql = "SELECT serialized_example_proto FROM examples WHERE client_id = ?"
        parameters: tuple = (client_id,)
        if self._split is not None:
            sql += " AND split_name = ?"
            parameters += (self._split,)
        with _connect(self._path) as connection:
            return [bytes(row[0]) for row in connection.execute(sql + " ORDER BY rowid", parameters)]

    def _make_dataset(self, client_id: str):
        tf = _tf()
        return tf.data.Dataset.from_tensor_slices(tf.constant(self._query(client_id), dtype=tf.string))

    @property
    def serializable_dataset_fn(self) -> Callable:
        return self._dataset_for

    def _dataset_for(self, client_id):
        """A client's dataset; for a ``tf.string`` tensor (inside a graph), an ``SqlDataset`` of its rows.

        Inside a graph the client id is mapped to its examples' row numbers by
        a lookup table, and only those integers appear in the query.
        """
        if isinstance(client_id, str):
            return self.create_tf_dataset_for_client(client_id)
        tf = _tf()
        table, starts, ends, rowids = self._row_table()
        index = table.lookup(client_id)
        rows = tf.strings.as_string(rowids[tf.gather(starts, index): tf.gather(ends, index)])
        query = tf.strings.join(["SELECT serialized_example_proto FROM examples WHERE rowid IN (",
                                 tf.strings.reduce_join(rows, separator=","), ") ORDER BY rowid"])
        return tf.data.experimental.SqlDataset("sqlite", self._path, query, tf.string)

    def _row_table(self):
        """The clients' examples' row numbers, client after client, and a table of where each client's run is.

        Built once, eagerly (whichever graph asks first), and shared by every later call.
        """
        tf = _tf()
        if self._rowids is None:
            sql = "SELECT client_id, rowid FROM examples"
            parameters: tuple = ()
            if self._split is not None:
                sql += " WHERE split_name = ?"
                parameters = (self._split,)
            by_client: dict = {c: [] for c in self._ids}
            with _connect(self._path) as connection:
                for client_id, rowid in connection.execute(sql + " ORDER BY rowid", parameters):
                    if client_id in by_client:
                        by_client[client_id].append(rowid)
            lengths = np.asarray([len(by_client[c]) for c in self._ids], np.int64)
            ends = np.cumsum(lengths)
            rowids = np.asarray([r for c in self._ids for r in by_client[c]], np.int64)
            with tf.init_scope():
                initializer = tf.lookup.KeyValueTensorInitializer(tf.constant(self._ids),
                                                                  tf.range(len(self._ids), dtype=tf.int64))
                self._rowids = (tf.lookup.StaticHashTable(initializer, default_value=-1),
                                tf.constant(ends - lengths), tf.constant(ends), tf.constant(rowids))
        return self._rowids
