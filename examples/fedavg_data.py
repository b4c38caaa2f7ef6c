"""Writes the synthetic non-IID data of examples/fedavg.py as an args file for ``fedc run``.

    python examples/fedavg_data.py --clients 10 --output /tmp/fedavg_data.npz
    fedc run examples/fedavg.fed --args /tmp/fedavg_data.npz --rounds 5

The data is ``make_data`` of examples/fedavg.py: deterministic for a seed,
each client's labels drawn from its own Dirichlet mixture of the classes. The
file holds the non-state arguments of ``next`` in examples/fedavg.fed, that
is ``federated_dataset: {<float32[?,784],int32[?,1]>*}@CLIENTS``.

Args file format (read by ``fedc run``):

* ``.npz``: one array per leaf; the key is the ``/``-separated path into the
  argument, parameter name first, then integers for list positions (clients,
  sequence elements, unnamed struct elements) and names for named ones.
  ``federated_dataset/3/5/0`` is client 3, batch 5, element 0 (``x``).
* ``.json``: the same argument as nested JSON: objects keyed by parameter and
  element names, lists for clients, sequence elements and unnamed struct
  elements, nested lists for tensors (dtypes come from the computation's type).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import numpy as np

__all__ = ["flatten", "make_args", "read_npz", "unflatten", "write"]


def make_args(num_clients: int = 10, seed: int = 0) -> dict:
    """``{"federated_dataset": clients}``: per client a list of ``(x, y)`` batches."""
    import fedc

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    try:
        with fedc.quiet_tensorflow_startup():  # examples/fedavg.py imports TensorFlow
            import fedavg
    finally:
        sys.path.pop(0)
    clients, _ = fedavg.make_data(seed=seed, num_clients=num_clients)
    return {"federated_dataset": clients}


def flatten(value: Any, prefix: str = "") -> dict:
    """``{"path/to/leaf": array}`` for a nested argument of dicts, lists, tuples and arrays."""
    if isinstance(value, dict):
        items = [(str(k), v) for k, v in value.items()]
    elif isinstance(value, (list, tuple)):
        items = [(str(i), v) for i, v in enumerate(value)]
    else:
        return {prefix: np.asarray(value)}
    result = {}
    for key, v in items:
        if "/" in key:
            raise ValueError(f"a name in an args file cannot contain '/': {key!r}")
        result.update(flatten(v, f"{prefix}/{key}" if prefix else key))
    return result


def unflatten(arrays: dict) -> dict:
    """The nested argument of :func:`flatten`'s output: integer path parts become list positions."""
    root: dict = {}
    for key, array in arrays.items():
        parts = key.split("/")
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = array

    def build(node):
        if not isinstance(node, dict):
            return node
        if node and all(k.isdigit() for k in node):
            return [build(node[k]) for k in sorted(node, key=int)]
        return {k: build(v) for k, v in node.items()}

    return build(root)


def read_npz(path: str) -> dict:
    """The nested argument stored in an ``.npz`` args file."""
    with np.load(path) as data:
        return unflatten({k: data[k] for k in data.files})


def _to_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    return np.asarray(value).tolist()


def write(path: str, args: dict) -> None:
    """Writes ``args`` as an ``.npz`` (by default) or ``.json`` args file."""
    if path.endswith(".json"):
        with open(path, "w") as f:
            json.dump(_to_json(args), f)
    else:
        np.savez_compressed(path, **flatten(args))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=10, help="number of clients (default 10)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--output", required=True, help="the args file to write (.npz, or .json)")
    options = parser.parse_args(argv)
    if options.clients < 1:
        parser.error("--clients must be at least 1")
    if not (options.output.endswith(".npz") or options.output.endswith(".json")):
        parser.error("--output must end with .npz or .json")
    args = make_args(options.clients, options.seed)
    write(options.output, args)
    batches = sum(len(c) for c in args["federated_dataset"])
    print(f"wrote {options.output}: {options.clients} clients, {batches} batches")
    return 0


if __name__ == "__main__":
    sys.exit(main())
