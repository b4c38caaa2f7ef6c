"""The learning library against the hand-built FedAvg: build_weighted_fed_avg vs benchmarks/fedavg.py's round.

    python benchmarks/learning.py [--configs 10x486x1,100x100x1,1000x20x1] [--backends tf] [--rounds 10]

Same process, same data (benchmarks/fedavg.py's synthetic non-IID clients),
same model (Dense 784→10 from the same initial weights, SGD at the same rate,
batches of 20) and backend; rounds interleaved. Records the time to build the
process (after imports), the first call, the median round of each side and
their ratio, and checks that the two give the same weights. The library's
round also computes and finalizes the model's metrics (loss, num_examples,
num_batches), which the hand-built round does not.
"""

from __future__ import annotations

import argparse
import collections
import pathlib
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import fedavg as hand  # noqa: E402
from common import write  # noqa: E402

import fedc  # noqa: E402


def build_library_process():
    import keras
    import tensorflow as tf

    kernel, bias = hand.initial_weights()
    spec = (tf.TensorSpec([None, hand.NUM_FEATURES], tf.float32), tf.TensorSpec([None], tf.int32))

    def model_fn():
        model = keras.Sequential([keras.Input((hand.NUM_FEATURES,)), keras.layers.Dense(hand.NUM_CLASSES)])
        model.set_weights([kernel, bias])
        return fedc.learning.models.from_keras_model(
            model, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), input_spec=spec)

    return fedc.learning.algorithms.build_weighted_fed_avg(
        model_fn,
        client_optimizer_fn=fedc.learning.optimizers.build_sgdm(learning_rate=hand.LEARNING_RATE),
        server_optimizer_fn=fedc.learning.optimizers.build_sgdm(learning_rate=1.0))


def run_config(config: str, backend: str, rounds: int) -> dict:
    clients, examples, epochs = hand.parse_config(config)
    if epochs != 1:
        raise SystemExit("benchmarks/learning.py: the library runs one pass over each dataset; use configs with 1 epoch")
    datasets = hand.as_batches(hand.make_clients(clients, examples))
    with fedc.backend(backend):
        start = time.perf_counter()
        hand_round = hand.build_fedc_round(epochs)
        hand_build = time.perf_counter() - start
        start = time.perf_counter()
        process = build_library_process()
        library_build = time.perf_counter() - start

        weights = [np.asarray(w) for w in hand.initial_weights()]
        start = time.perf_counter()
        hand_weights = hand_round(weights, datasets)
        hand_first = time.perf_counter() - start
        state = process.initialize()
        start = time.perf_counter()
        state = process.next(state, datasets).state
        library_first = time.perf_counter() - start

        hand_times, library_times = [], []
        for _ in range(rounds):
            start = time.perf_counter()
            hand_weights = hand_round(hand_weights, datasets)
            hand_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            output = process.next(state, datasets)
            library_times.append(time.perf_counter() - start)
            state = output.state
        library_weights = process.get_model_weights(state).trainable
    difference = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(hand_weights, library_weights))
    if difference > 1e-4:
        raise SystemExit(f"{config}: the library's weights differ from the hand-built round's by {difference}")
    record = collections.OrderedDict(
        config=config, backend=backend, rounds=rounds,
        build_s={"hand_built": hand_build, "library": library_build},
        first_call_s={"hand_built": hand_first, "library": library_first},
        round_median_s={"hand_built": statistics.median(hand_times), "library": statistics.median(library_times)},
        ratio_library_over_hand_built=statistics.median(library_times) / statistics.median(hand_times),
        max_weight_difference=difference,
        final_loss=float(output.metrics["client_work"]["train"]["loss"]))
    print(f"{config} on {backend}: round {record['round_median_s']['library'] * 1e3:.1f} ms (library) vs "
          f"{record['round_median_s']['hand_built'] * 1e3:.1f} ms (hand-built), ratio "
          f"{record['ratio_library_over_hand_built']:.2f}; build {library_build:.2f} s vs {hand_build:.2f} s; "
          f"weights agree within {difference:.1e}", flush=True)
    return record


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="10x486x1,100x100x1,1000x20x1")
    parser.add_argument("--backends", default="tf")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--output", type=pathlib.Path)
    args = parser.parse_args(argv)
    import importlib

    for name in ("tensorflow", "keras"):  # imports are not part of the build time measured
        importlib.import_module(name)

    records = [run_config(c, b, args.rounds) for b in args.backends.split(",") if b for c in args.configs.split(",") if c]
    path = write("learning", {"results": records}, args.output)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
