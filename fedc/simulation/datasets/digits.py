"""Handwritten digits that work offline, split across clients non-IID, shaped like federated EMNIST.

The images are scikit-learn's 1,797 8×8 digits (the UCI "Optical Recognition
of Handwritten Digits" set, shipped inside scikit-learn, so nothing is
downloaded). Each becomes an EMNIST element: ``OrderedDict(label=int32,
pixels=float32[28, 28])`` with 1.0 the background and 0.0 the ink — each
pixel scaled 3× and the 24×24 image centred on a 28×28 background — so code
written for ``emnist.load_data()`` runs on it unchanged.

The partition is seeded and documented: for each label, its examples
(shuffled) are divided among the clients in proportions drawn from a
Dirichlet(``alpha``) distribution, so each client sees a few labels mostly
(smaller ``alpha``: more skew); draws repeat until every client has at least
``min_examples``. Each client's examples are then split into train and test
(``test_fraction``, at least one of each), so, as in EMNIST, every client is
in both splits.
"""

from __future__ import annotations

import collections

import numpy as np

from fedc import FedcError, FedcValueError

from .client_data import TestClientData

__all__ = ["load_data", "partition"]

_SCALE, _SIDE = 3, 28


def _images_and_labels() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise FedcError("fedc.simulation.datasets.digits needs scikit-learn (its digits ship inside it): "
                        "pip install scikit-learn") from None
    digits = load_digits()
    ink = digits.images.astype(np.float32) / 16.0  # 0..16 in scikit-learn, 16 = darkest
    big = np.kron(ink, np.ones((1, _SCALE, _SCALE), np.float32))
    margin = (_SIDE - big.shape[1]) // 2
    pixels = np.ones((len(big), _SIDE, _SIDE), np.float32)
    pixels[:, margin:margin + big.shape[1], margin:margin + big.shape[2]] = 1.0 - big
    return pixels, digits.target.astype(np.int32)


def partition(labels: np.ndarray, num_clients: int, alpha: float, min_examples: int,
              rng: np.random.Generator) -> list[np.ndarray]:
    """For each client, the indices of its examples (label-skewed by Dirichlet(alpha) proportions)."""
    classes = np.unique(labels)
    for _ in range(1000):
        owners: list[list[int]] = [[] for _ in range(num_clients)]
        for c in classes:
            members = rng.permutation(np.flatnonzero(labels == c))
            cuts = (np.cumsum(rng.dirichlet(np.full(num_clients, alpha)))[:-1] * len(members)).astype(int)
            for client, part in enumerate(np.split(members, cuts)):
                owners[client].extend(part.tolist())
        if min(len(o) for o in owners) >= min_examples:
            return [np.sort(np.asarray(o, np.int64)) for o in owners]
    raise FedcValueError(f"could not give each of {num_clients} clients {min_examples} examples with alpha={alpha}; "
                         "use fewer clients or a larger alpha")


def load_data(num_clients: int = 50, alpha: float = 0.5, test_fraction: float = 0.2, seed: int = 0,
              min_examples: int = 4) -> tuple[TestClientData, TestClientData]:
    """The (train, test) ClientData of the digits over ``num_clients`` clients (ids ``digits_000``, …)."""
    pixels, labels = _images_and_labels()
    if not isinstance(num_clients, int) or isinstance(num_clients, bool) or not 1 <= num_clients <= len(labels) // max(min_examples, 2):
        raise FedcValueError(f"digits.load_data: num_clients must be an integer in [1, "
                             f"{len(labels) // max(min_examples, 2)}], got {num_clients!r}")
    if not alpha > 0:
        raise FedcValueError(f"digits.load_data: alpha must be > 0, got {alpha!r}")
    if not 0 < test_fraction < 1:
        raise FedcValueError(f"digits.load_data: test_fraction must be in (0, 1), got {test_fraction!r}")
    rng = np.random.default_rng(seed)
    train, test = collections.OrderedDict(), collections.OrderedDict()
    for k, examples in enumerate(partition(labels, num_clients, alpha, max(min_examples, 2), rng)):
        shuffled = rng.permutation(examples)
        held = min(max(1, int(round(test_fraction * len(shuffled)))), len(shuffled) - 1)
        client_id = f"digits_{k:03d}"
        for split, rows in ((test, np.sort(shuffled[:held])), (train, np.sort(shuffled[held:]))):
            split[client_id] = collections.OrderedDict(label=labels[rows], pixels=pixels[rows])
    return TestClientData(train), TestClientData(test)
