"""federated_mean on the reference backend against numpy.mean of the same values.

    python benchmarks/federated_mean.py [--clients N] [--repeats R] [--output FILE]

Each case is timed against its numpy baseline in the same run; the JSON
record (benchmarks/results/federated_mean.json) keeps the seconds and the
ratio fedc / numpy.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import best_of, write  # noqa: E402

import fedc  # noqa: E402


def run(clients: int, repeats: int, output=None) -> dict:
    rng = np.random.default_rng(0)
    values = rng.normal(70.0, 5.0, size=clients).astype(np.float32)
    as_list = values.tolist()

    @fedc.federated_computation(fedc.FederatedType(np.float32, fedc.CLIENTS))
    def mean(x):
        return fedc.federated_mean(x)

    @fedc.federated_computation(fedc.FederatedType(np.float32, fedc.CLIENTS))
    def mean_of_squares(x):
        return fedc.federated_mean(fedc.federated_map(lambda v: v * v, x))

    assert np.isclose(mean(values), np.mean(values), rtol=1e-5)
    assert np.isclose(mean_of_squares(values), np.mean(values * values), rtol=1e-5)

    cases = {
        "federated_mean, clients as one array": (lambda: mean(values), lambda: np.mean(values)),
        "federated_mean of federated_map(v*v), clients as one array": (
            lambda: mean_of_squares(values),
            lambda: np.mean(values * values),
        ),
        "federated_mean, clients as a Python list": (lambda: mean(as_list), lambda: np.mean(np.asarray(as_list, np.float32))),
    }
    results = []
    for name, (fedc_fn, numpy_fn) in cases.items():
        fedc_time = best_of(fedc_fn, repeats)
        numpy_time = best_of(numpy_fn, repeats)
        results.append(
            {
                "case": name,
                "fedc": fedc_time,
                "numpy": numpy_time,
                "ratio_fedc_over_numpy": fedc_time["min_s"] / numpy_time["min_s"],
            }
        )
    record = {"clients": clients, "backend": "reference", "results": results}
    path = write("federated_mean", record, output)
    for r in results:
        print(f"{r['case']}: fedc {r['fedc']['min_s'] * 1e3:.2f} ms, numpy {r['numpy']['min_s'] * 1e3:.2f} ms, "
              f"ratio {r['ratio_fedc_over_numpy']:.2f}x")
    print(f"wrote {path}")
    return record


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--output", type=pathlib.Path)
    args = parser.parse_args(argv)
    run(args.clients, args.repeats, args.output)


if __name__ == "__main__":
    main()
