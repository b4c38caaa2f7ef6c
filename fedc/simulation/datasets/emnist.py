"""Federated EMNIST (handwritten characters grouped by writer), read from TFF's own dataset file.

``load_data`` reads ``emnist_all.sqlite`` from ``cache_dir`` (``~/.tff`` by
default, where TFF puts it), decompressing ``emnist_all.sqlite.lzma`` there on
first use, or downloading it when neither is present. Each element is
``OrderedDict(label=int32 scalar, pixels=float32[28, 28])`` with 1.0 the
background and 0.0 the ink, as in TFF.
"""

from __future__ import annotations

import collections
from typing import Optional

from .download import cached_file, is_cached as _file_is_cached
from .sql import SqlClientData

__all__ = ["ORIGIN", "is_cached", "load_data"]

ORIGIN = "https://storage.googleapis.com/tff-datasets-public/emnist_all.sqlite.lzma"


def parse_examples(dataset):
    """Serialized ``tf.train.Example`` protos to ``OrderedDict(label, pixels)`` elements."""
    import tensorflow as tf

    spec = {
        "pixels": tf.io.FixedLenFeature(shape=(28, 28), dtype=tf.float32),
        "label": tf.io.FixedLenFeature(shape=(), dtype=tf.int64),
    }

    def parse(serialized):
        features = tf.io.parse_single_example(serialized, spec)
        return collections.OrderedDict(label=tf.cast(features["label"], tf.int32), pixels=features["pixels"])

    return dataset.map(parse)


def is_cached(cache_dir: Optional[str] = None) -> bool:
    """Whether ``load_data(cache_dir=cache_dir)`` finds TFF's EMNIST file (or its ``.lzma``) without downloading.

    fedc's own (TFF has no such function); the tutorials use it to fall back to
    the offline digits.
    """
    return _file_is_cached(ORIGIN, cache_dir)


def load_data(only_digits: bool = True, cache_dir: Optional[str] = None):
    """The (train, test) ClientData of federated EMNIST: 3,383 writers of digits (or 3,400 of 62 classes).

    Every writer has examples in both splits.
    """
    path = cached_file(ORIGIN, cache_dir, offline_hint=(
        "Without the file, fedc.simulation.datasets.digits.load_data() gives handwritten digits with the same "
        "element structure, offline."))
    prefix = "digits_only" if only_digits else "all"
    return tuple(SqlClientData(path, f"{prefix}_{split}").preprocess(parse_examples) for split in ("train", "test"))
