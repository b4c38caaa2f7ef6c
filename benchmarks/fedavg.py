"""A FedAvg round on fedc's backends against a plain TensorFlow loop doing the same math.

    python benchmarks/fedavg.py [--configs 10x486x5,100x100x1,1000x20x1] [--backends reference,tf]
                                [--rounds R] [--no-peak-alone] [--output FILE]

The model is issue 10's: Dense 784→10, softmax cross-entropy, client SGD with
learning rate 0.02, batches of 20 (the last batch of a client may be smaller),
``epochs`` passes over the client's data, then the mean of the clients'
weights weighted by their numbers of examples. The data is deterministic
synthetic non-IID (each client's labels from its own Dirichlet mixture of
classes). A config ``CxExE`` is clients × examples per client × epochs.

The baseline is what a TensorFlow user writes without fedc: each client's data
as two tensors made once, one ``tf.function`` for a client's update (a
``tf.range`` loop over its batches, sliced in the graph), a Python loop over
the clients, and the weighted mean accumulated in TensorFlow. Each fedc round
is timed interleaved with a baseline round (fedc, TF, fedc, TF, …), so both
see the same machine; the JSON keeps seconds, the ratio fedc / TF of the
medians, the first call (trace + compile + first round) of each, peak RSS,
the RSS after every round, each side's RSS alone in a fresh process
(one process holds both sides during the interleaved run), and the largest difference between fedc's weights
and the baseline's after the same rounds (the benchmark fails if they are
not equal to float round-off).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import resource
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import write  # noqa: E402

NUM_FEATURES = 784
NUM_CLASSES = 10
BATCH_SIZE = 20
LEARNING_RATE = 0.02
#: fedc's weights may differ from the baseline's by float32 round-off: the two sum in different orders.
TOLERANCE = 1e-4


def parse_config(text: str) -> tuple[int, int, int]:
    try:
        clients, examples, epochs = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"benchmarks/fedavg.py: a config is CLIENTSxEXAMPLESxEPOCHS (like 100x100x1), not {text!r}")
    if min(clients, examples, epochs) < 1:
        raise SystemExit(f"benchmarks/fedavg.py: {text!r}: clients, examples and epochs are at least 1")
    return clients, examples, epochs


def make_clients(clients: int, examples: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per client ``(x float32[examples, 784], y int32[examples])``, non-IID."""
    rng = np.random.default_rng(seed)
    prototypes = rng.normal(0.0, 1.0, size=(NUM_CLASSES, NUM_FEATURES)).astype(np.float32)
    data = []
    for _ in range(clients):
        mixture = rng.dirichlet(0.5 * np.ones(NUM_CLASSES))
        labels = rng.choice(NUM_CLASSES, size=examples, p=mixture)
        x = (prototypes[labels] + rng.normal(0.0, 4.0, size=(examples, NUM_FEATURES))) / 4.0
        data.append((x.astype(np.float32), labels.astype(np.int32)))
    return data


def initial_weights(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed + 1)
    limit = np.sqrt(6.0 / (NUM_FEATURES + NUM_CLASSES))  # Glorot uniform, as Keras' Dense
    return (rng.uniform(-limit, limit, size=(NUM_FEATURES, NUM_CLASSES)).astype(np.float32),
            np.zeros(NUM_CLASSES, np.float32))


def sgd_step(tf, kernel, bias, x, y):
    """One SGD step of the model on a batch (the same function for fedc and the baseline)."""
    with tf.GradientTape() as tape:
        tape.watch([kernel, bias])
        logits = tf.matmul(x, kernel) + bias
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
    grad_kernel, grad_bias = tape.gradient(loss, [kernel, bias])
    return kernel - LEARNING_RATE * grad_kernel, bias - LEARNING_RATE * grad_bias


# --------------------------------------------------------------------------
# The baseline: plain TensorFlow.


class PlainTF:
    """FedAvg written directly in TensorFlow, the client data as tensors made once."""

    def __init__(self, data, epochs: int):
        import tensorflow as tf

        self.tf = tf
        self.data = [(tf.constant(x), tf.constant(y)) for x, y in data]
        self.epochs = epochs

        @tf.function(reduce_retracing=True)
        def client_update(kernel, bias, x, y):
            count = tf.shape(x)[0]
            batches = (count + BATCH_SIZE - 1) // BATCH_SIZE
            for _ in tf.range(epochs * batches):
                i = _ % batches
                start = i * BATCH_SIZE
                end = tf.minimum(start + BATCH_SIZE, count)
                kernel, bias = sgd_step(tf, kernel, bias, x[start:end], y[start:end])
            return kernel, bias, tf.cast(count, tf.float32)

        self.client_update = client_update

    def round(self, weights):
        tf = self.tf
        kernel, bias = tf.constant(weights[0]), tf.constant(weights[1])
        total_kernel = tf.zeros_like(kernel)
        total_bias = tf.zeros_like(bias)
        total = 0.0
        for x, y in self.data:
            new_kernel, new_bias, count = self.client_update(kernel, bias, x, y)
            total_kernel += count * new_kernel
            total_bias += count * new_bias
            total += float(count)
        return (total_kernel / total).numpy(), (total_bias / total).numpy()


# --------------------------------------------------------------------------
# fedc: the same round as a federated computation.


def build_fedc_round(epochs: int):
    """``next(weights@SERVER, {<x,y>*}@CLIENTS) -> weights@SERVER``, traced now (part of the first call)."""
    import tensorflow as tf

    import fedc

    weights_type = fedc.StructType([fedc.TensorType(np.float32, [NUM_FEATURES, NUM_CLASSES]),
                                    fedc.TensorType(np.float32, [NUM_CLASSES])])
    dataset_type = fedc.SequenceType((fedc.TensorType(np.float32, [None, NUM_FEATURES]),
                                      fedc.TensorType(np.int32, [None])))

    @fedc.tf_computation(dataset_type, weights_type)
    def client_update(dataset, weights):
        def step(state, batch):
            kernel, bias, count = state
            x, y = batch
            kernel, bias = sgd_step(tf, kernel, bias, x, y)
            return kernel, bias, count + tf.cast(tf.shape(x)[0], tf.float32)

        kernel, bias, count = dataset.repeat(epochs).reduce(
            (weights[0], weights[1], tf.constant(0.0, tf.float32)), step)
        return [kernel, bias], count / epochs

    @fedc.federated_computation(fedc.FederatedType(weights_type, fedc.SERVER),
                                fedc.FederatedType(dataset_type, fedc.CLIENTS))
    def next_round(weights, datasets):
        updates = fedc.federated_map(client_update, (datasets, fedc.federated_broadcast(weights)))
        return fedc.federated_mean(updates[0], updates[1])

    return next_round


def as_batches(data) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """The client data as fedc takes a sequence argument: per client a list of (x, y) batches."""
    return [[(x[i:i + BATCH_SIZE], y[i:i + BATCH_SIZE]) for i in range(0, len(x), BATCH_SIZE)] for x, y in data]


# --------------------------------------------------------------------------


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_config(config: str, backends: list[str], rounds: int, peak_alone: bool = True) -> dict:
    import fedc

    clients, examples, epochs = parse_config(config)
    data = make_clients(clients, examples)
    start_weights = initial_weights()
    batches = as_batches(data)

    start = time.perf_counter()
    plain = PlainTF(data, epochs)
    plain_weights = plain.round(start_weights)
    plain_first = time.perf_counter() - start

    record = {"config": config, "clients": clients, "examples": examples, "epochs": epochs,
              "plain_tf": {"first_call_s": plain_first}, "backends": {}}
    for name in backends:
        with fedc.backend(name):
            start = time.perf_counter()
            next_round = build_fedc_round(epochs)
            fedc_weights = next_round(start_weights, batches)
            fedc_first = time.perf_counter() - start
            difference = max(float(np.max(np.abs(a - b))) for a, b in zip(fedc_weights, plain_weights))
            if difference > TOLERANCE:
                raise SystemExit(f"benchmarks/fedavg.py: {config} on {name}: fedc's weights differ from plain "
                                 f"TensorFlow's by {difference:g} after one round (tolerance {TOLERANCE:g})")
            fedc_times, plain_times, rss = [], [], []
            fedc_state, plain_state = fedc_weights, plain_weights
            for _ in range(rounds):
                start = time.perf_counter()
                fedc_state = next_round(fedc_state, batches)
                fedc_times.append(time.perf_counter() - start)
                start = time.perf_counter()
                plain_state = plain.round(plain_state)
                plain_times.append(time.perf_counter() - start)
                rss.append(round(rss_mb(), 1))
            difference = max(difference, *(float(np.max(np.abs(a - b))) for a, b in zip(fedc_state, plain_state)))
            if difference > TOLERANCE:
                raise SystemExit(f"benchmarks/fedavg.py: {config} on {name}: fedc's weights differ from plain "
                                 f"TensorFlow's by {difference:g} after {rounds + 1} rounds")
            result = {
                "first_call_s": fedc_first,
                "first_call_minus_plain_tf_s": fedc_first - plain_first,
                "round_s": {"median": statistics.median(fedc_times), "min": min(fedc_times)},
                "plain_tf_round_s": {"median": statistics.median(plain_times), "min": min(plain_times)},
                "ratio_fedc_over_plain_tf": statistics.median(fedc_times) / statistics.median(plain_times),
                "rss_mb_after_each_round": rss,
                "rss_growth": (rss[-1] - rss[0]) / rss[0] if rss else 0.0,
                "max_weight_difference": difference,
            }
            record["backends"][name] = result
            print(f"{config} {name}: round {result['round_s']['median'] * 1e3:.0f} ms, plain TF "
                  f"{result['plain_tf_round_s']['median'] * 1e3:.0f} ms, ratio {result['ratio_fedc_over_plain_tf']:.1f}x; "
                  f"first call {fedc_first:.1f} s (plain TF {plain_first:.1f} s); "
                  f"weights within {difference:.1e}", flush=True)
    record["peak_rss_mb"] = peak_rss_mb()
    if peak_alone:
        # Each side alone in a fresh process (one process holds both above): its own memory.
        record["rss_alone"] = {side: alone(config, side, min(rounds, 3)) for side in ["plain_tf", *backends]}
    return record


def alone(config: str, side: str, rounds: int) -> dict:
    """A fresh process running ``rounds`` + 1 rounds of one side (plain_tf or a backend): its RSS in MB.

    ``data_mb`` is the RSS once the data is made (TensorFlow and fedc imported),
    ``after_rounds_mb`` after the rounds, ``peak_mb`` the process's peak (often the data generation).
    """
    import json
    import subprocess

    result = subprocess.run([sys.executable, __file__, "--alone", side, "--configs", config, "--rounds", str(rounds)],
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_alone(config: str, side: str, rounds: int) -> None:
    import json

    import tensorflow  # noqa: F401 - imported before the baseline, as both sides use it

    import fedc  # noqa: F401

    clients, examples, epochs = parse_config(config)
    data = make_clients(clients, examples)
    weights = initial_weights()
    data_mb = rss_mb()
    if side == "plain_tf":
        plain = PlainTF(data, epochs)
        for _ in range(rounds + 1):
            weights = plain.round(weights)
    else:
        import fedc

        batches = as_batches(data)
        with fedc.backend(side):
            next_round = build_fedc_round(epochs)
            for _ in range(rounds + 1):
                weights = next_round(weights, batches)
    print(json.dumps({"data_mb": data_mb, "after_rounds_mb": rss_mb(), "peak_mb": peak_rss_mb()}))


def main(argv=None):
    from fedc.backends.base import available_backends

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="10x486x5,100x100x1,1000x20x1",
                        help="comma-separated CLIENTSxEXAMPLESxEPOCHS (default: issue 10's three)")
    parser.add_argument("--backends", default=",".join(available_backends()),
                        help="comma-separated backend names (default: every available one)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per config and backend, after the first")
    parser.add_argument("--output", type=pathlib.Path)
    parser.add_argument("--no-peak-alone", action="store_true",
                        help="skip measuring each side's peak RSS alone in a fresh process")
    parser.add_argument("--alone", help=argparse.SUPPRESS)  # internal: run one side in this process
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds is at least 1")
    if args.alone:
        run_alone(args.configs, args.alone, args.rounds)
        return
    backends = [b for b in args.backends.split(",") if b]
    results = [run_config(config, backends, args.rounds, not args.no_peak_alone)
               for config in args.configs.split(",") if config]
    path = write("fedavg", {"model": "Dense 784->10, SGD 0.02, batch 20", "rounds": args.rounds,
                            "results": results}, args.output)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
