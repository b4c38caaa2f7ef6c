"""Analytics on each backend: federated_mean against numpy.mean, a mapped tf_computation against plain TF.

    python benchmarks/federated_mean.py [--clients N] [--map-clients M] [--backends reference,tf]
                                        [--repeats R] [--output FILE]

Each case is timed against its baseline in the same run (numpy for the
means, the same function applied to the whole array by one plain
``tf.function`` for the mapped ``tf_computation``); the JSON record
(benchmarks/results/federated_mean.json) keeps the seconds and the ratio
fedc / baseline per backend.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import best_of, write  # noqa: E402

import fedc  # noqa: E402


def cases_for(clients: int, map_clients: int) -> dict:
    """name -> (fedc function, baseline function, baseline's name); checked to agree first."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    values = rng.normal(70.0, 5.0, size=clients).astype(np.float32)
    as_list = values[: min(clients, 1_000_000)].tolist()
    few = values[:map_clients].copy()

    @fedc.federated_computation(fedc.FederatedType(np.float32, fedc.CLIENTS))
    def mean(x):
        return fedc.federated_mean(x)

    @fedc.federated_computation(fedc.FederatedType(np.float32, fedc.CLIENTS))
    def mean_of_squares(x):
        return fedc.federated_mean(fedc.federated_map(lambda v: v * v, x))

    @fedc.tf_computation(np.float32)
    def add_half(x):
        return x + 0.5

    @fedc.federated_computation(fedc.FederatedType(np.float32, fedc.CLIENTS))
    def add_half_on_clients(x):
        return fedc.federated_map(add_half, x)

    plain_add_half = tf.function(lambda x: x + 0.5)
    few_tensor = tf.constant(few)

    def plain_map():
        return plain_add_half(tf.constant(few)).numpy()

    assert np.isclose(mean(values), np.mean(values), rtol=1e-5)
    assert np.isclose(mean_of_squares(values), np.mean(values * values), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(add_half_on_clients(few)), few + 0.5)
    del few_tensor
    return {
        f"federated_mean of {clients} clients (one array)": (lambda: mean(values), lambda: np.mean(values), "numpy"),
        f"federated_mean of federated_map(v*v), {clients} clients": (
            lambda: mean_of_squares(values), lambda: np.mean(values * values), "numpy"),
        f"federated_mean of {len(as_list)} clients (a Python list)": (
            lambda: mean(as_list), lambda: np.mean(np.asarray(as_list, np.float32)), "numpy"),
        f"federated_map of a tf_computation (x + 0.5) over {map_clients} clients": (
            lambda: add_half_on_clients(few), plain_map, "plain TF, the whole array"),
    }


def run(clients: int, map_clients: int, repeats: int, backends: list[str], output=None) -> dict:
    records = []
    for backend in backends:
        with fedc.backend(backend):
            results = []
            for name, (fedc_fn, baseline_fn, baseline) in cases_for(clients, map_clients).items():
                fedc_time = best_of(fedc_fn, repeats)
                baseline_time = best_of(baseline_fn, repeats)
                results.append({"case": name, "baseline": baseline, "fedc": fedc_time, "baseline_s": baseline_time,
                                "ratio_fedc_over_baseline": fedc_time["min_s"] / baseline_time["min_s"]})
                print(f"{backend}: {name}: fedc {fedc_time['min_s'] * 1e3:.2f} ms, {baseline} "
                      f"{baseline_time['min_s'] * 1e3:.2f} ms, ratio {results[-1]['ratio_fedc_over_baseline']:.2f}x",
                      flush=True)
        records.append({"backend": backend, "results": results})
    path = write("federated_mean", {"clients": clients, "map_clients": map_clients, "backends": records}, output)
    print(f"wrote {path}")
    return records


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    from fedc.backends.base import available_backends

    parser.add_argument("--clients", type=int, default=10_000_000)
    parser.add_argument("--map-clients", type=int, default=10_000)
    parser.add_argument("--backends", default=",".join(available_backends()))
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--output", type=pathlib.Path)
    args = parser.parse_args(argv)
    run(args.clients, args.map_clients, args.repeats, [b for b in args.backends.split(",") if b], args.output)


if __name__ == "__main__":
    main()
