"""The tf backend on worker processes (Ray) against the in-process tf backend, in one run.

    python benchmarks/workers.py [--configs 1000x20x1,10x20x1] [--workers 2] [--rounds R]
                                 [--mean-clients 100000] [--output FILE]

FedAvg rounds are benchmarks/fedavg.py's (Dense 784→10, SGD 0.02, batches of
20, synthetic non-IID data; ``CxExE`` is clients × examples × epochs). For
each config the same round runs on the in-process tf backend and on
``--workers`` workers, interleaved (in-process, workers, in-process, …), and
the JSON keeps the median round time of each, their ratio (workers /
in-process) and difference (the per-round cost of the Ray path), the weights'
largest difference, and the RSS of the driver and of every worker after each
round. Each config runs twice, with the clients' data given two ways:

* ``values``: per client a list of ``(x, y)`` numpy batches (converted by the
  driver each round; the workers are sent a shard only when it changed);
* ``client_data``: the datasets of a ``TestClientData`` of the same arrays,
  ``preprocess``-ed into the same batches, made once (as TFF's tutorials do)
  and passed every round — the workers make and keep their clients' data by
  client id; in-process, each dataset keeps its converted value after the
  first round. The JSON's ``ratio_over_fastest_in_process`` divides a
  workers time by the faster in-process time of the two inputs.

The analytics path: ``federated_mean`` of float32[1000] over
``--mean-clients`` clients, same interleaving.

Ray starts once (its start-up and the workers' first traces are reported as
``first_call_s``, not in the medians).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import write  # noqa: E402
from fedavg import as_batches, build_fedc_round, initial_weights, make_clients, parse_config, rss_mb  # noqa: E402


def process_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def timed(fn) -> tuple[object, float]:
    """(fn's result, its seconds): the first call of a side, tracing included."""
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def interleaved(first, second, rounds: int, after=None) -> tuple[list[float], list[float]]:
    a, b = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        first()
        a.append(time.perf_counter() - start)
        start = time.perf_counter()
        second()
        b.append(time.perf_counter() - start)
        if after is not None:
            after()
    return a, b


def client_data_datasets(data) -> list:
    """The datasets of a TestClientData holding ``data`` (per client ``(x, y)``), in batches of BATCH_SIZE."""
    from fedavg import BATCH_SIZE

    from fedc.simulation.datasets import TestClientData

    client_data = TestClientData({f"client_{i:05d}": (x, y) for i, (x, y) in enumerate(data)})
    batched = client_data.preprocess(lambda dataset: dataset.batch(BATCH_SIZE))
    return [batched.create_tf_dataset_for_client(c) for c in batched.client_ids]


def fedavg_config(config: str, workers, rounds: int, given: str = "values") -> dict:
    import fedc

    clients, examples, epochs = parse_config(config)
    data = make_clients(clients, examples)
    batches = as_batches(data) if given == "values" else client_data_datasets(data)
    weights = initial_weights()
    next_round = build_fedc_round(epochs)
    context = fedc.context.execution_context(workers)
    in_process = fedc.context.execution_context(fedc.context.get_backend("tf"))

    def on(ctx):
        with fedc.context.installed(ctx):
            return next_round(weights, batches)

    (here, first_here), (there, first_there) = timed(lambda: on(in_process)), timed(lambda: on(context))
    difference = max(float(np.max(np.abs(a - b))) for a, b in zip(here, there))
    pids = workers.cluster.worker_pids()
    driver_rss, worker_rss = [], []

    def measure():
        driver_rss.append(round(rss_mb(), 1))
        worker_rss.append([round(process_rss_mb(pid), 1) for pid in pids])

    here_times, there_times = interleaved(lambda: on(in_process), lambda: on(context), rounds, measure)
    result = {
        "config": config, "clients": clients, "examples": examples, "epochs": epochs, "data_given_as": given,
        "workers": len(pids),
        "first_call_s": {"in_process": first_here, "workers": first_there},
        "round_s": {"in_process": statistics.median(here_times), "workers": statistics.median(there_times)},
        "ratio_workers_over_in_process": statistics.median(there_times) / statistics.median(here_times),
        "workers_minus_in_process_s": statistics.median(there_times) - statistics.median(here_times),
        "max_weight_difference": difference,
        "driver_rss_mb_after_each_round": driver_rss,
        "worker_rss_mb_after_each_round": worker_rss,
        "driver_rss_growth": (driver_rss[-1] - driver_rss[0]) / driver_rss[0],
        "worker_rss_growth": [(w[-1] - w[0]) / w[0] for w in zip(*worker_rss)],
    }
    print(f"{config} ({given}): in-process {result['round_s']['in_process'] * 1e3:.0f} ms, {len(pids)} workers "
          f"{result['round_s']['workers'] * 1e3:.0f} ms, ratio {result['ratio_workers_over_in_process']:.2f}x "
          f"(+{result['workers_minus_in_process_s'] * 1e3:.0f} ms); weights within {difference:.1e}; "
          f"driver RSS {driver_rss[0]:.0f}→{driver_rss[-1]:.0f} MB, workers "
          f"{[f'{w[0]:.0f}→{w[-1]:.0f}' for w in zip(*worker_rss)]} MB", flush=True)
    return result


def analytics(workers, clients: int, rounds: int) -> dict:
    import fedc

    @fedc.federated_computation(fedc.FederatedType(fedc.TensorType(np.float32, [1000]), fedc.CLIENTS))
    def mean(x):
        return fedc.federated_mean(x)

    values = np.random.default_rng(0).normal(size=(clients, 1000)).astype(np.float32)
    context = fedc.context.execution_context(workers)
    in_process = fedc.context.execution_context(fedc.context.get_backend("tf"))

    def on(ctx):
        with fedc.context.installed(ctx):
            return mean(values)

    (here, first_here), (there, first_there) = timed(lambda: on(in_process)), timed(lambda: on(context))
    here_times, there_times = interleaved(lambda: on(in_process), lambda: on(context), rounds)
    result = {
        "clients": clients, "value": "float32[1000]", "workers": len(workers.cluster.workers()),
        "first_call_s": {"in_process": first_here, "workers": first_there},
        "call_s": {"in_process": statistics.median(here_times), "workers": statistics.median(there_times),
                   "numpy_mean": None},
        "ratio_workers_over_in_process": statistics.median(there_times) / statistics.median(here_times),
        "max_difference": float(np.max(np.abs(here - there))),
    }
    start = time.perf_counter()
    for _ in range(rounds):
        values.mean(axis=0)
    result["call_s"]["numpy_mean"] = (time.perf_counter() - start) / rounds
    print(f"federated_mean of float32[1000] over {clients} clients: in-process "
          f"{result['call_s']['in_process'] * 1e3:.0f} ms, workers {result['call_s']['workers'] * 1e3:.0f} ms "
          f"({result['ratio_workers_over_in_process']:.2f}x), numpy {result['call_s']['numpy_mean'] * 1e3:.0f} ms",
          flush=True)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="1000x20x1,10x20x1")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--mean-clients", type=int, default=100_000)
    parser.add_argument("--output", type=pathlib.Path, help="default: benchmarks/results/workers.json")
    args = parser.parse_args(argv)

    import fedc

    workers = fedc.context.get_backend("tf", workers=args.workers)
    try:
        start = time.perf_counter()
        workers.cluster.workers()
        started = time.perf_counter() - start
        print(f"Ray and {args.workers} workers started in {started:.1f} s", flush=True)
        fedavg = [fedavg_config(c, workers, args.rounds, given) for c in args.configs.split(",")
                  for given in ("values", "client_data")]
        for run in fedavg:  # against in-process given its fastest input, the same config
            fastest = min(r["round_s"]["in_process"] for r in fedavg if r["config"] == run["config"])
            run["ratio_over_fastest_in_process"] = run["round_s"]["workers"] / fastest
            print(f"{run['config']} ({run['data_given_as']}) on workers / the fastest in-process: "
                  f"{run['ratio_over_fastest_in_process']:.2f}x", flush=True)
        record = {"workers": args.workers, "start_s": started, "rounds": args.rounds, "fedavg": fedavg,
                  "worker_loads": workers.cluster.load_counts(),
                  "federated_mean": analytics(workers, args.mean_clients, max(3, args.rounds // 4))}
    finally:
        workers.close()
    print(write("workers", record, args.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
