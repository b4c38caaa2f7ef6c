"""TFF's tutorials on fedc: each script's wall time, and the image-classification round against plain TensorFlow.

    python benchmarks/tutorials.py [--repeats 3] [--rounds 10] [--skip-scripts]

Part 1 runs every script of examples/tutorials/ as a user runs it (a fresh
Python process, so imports and tracing count), best and median of
``--repeats``, the scripts interleaved.

Part 2 is the image-classification tutorial's training in one process: its
10 clients of the offline digits, 5 epochs of batches of 20, SGD 0.02 on the
clients and 1.0 on the server, its Keras model. It records the time to build
the process (after imports), the first round, and the median round of
``build_weighted_fed_avg`` on the default backend against the same round in
plain TensorFlow (a ``tf.function`` training each client's copy of the weights
over the same tf.data pipelines, then the example-weighted mean), rounds
interleaved, and checks that both give the same weights.

TFF publishes no wall times for these tutorials; the figures to compare with
are the ones TFF users report (its build of this process: 1.9–3.0 s; its
simulation runtime: 7–30× plain TensorFlow), which the JSON repeats.
"""

from __future__ import annotations

import argparse
import collections
import importlib
import pathlib
import statistics
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import write  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPTS = {  # script -> the arguments of a full run (as the tutorial runs it)
    "custom_federated_algorithm.py": [],
    "image_classification.py": [],
    "federated_learning_api.py": [],
    "image_classification_blog.py": [],
}
NUM_CLIENTS, NUM_EPOCHS, BATCH_SIZE, SHUFFLE_BUFFER, PREFETCH_BUFFER = 10, 5, 20, 100, 10
CLIENT_LR, SERVER_LR = 0.02, 1.0


def time_scripts(repeats: int) -> dict:
    times: dict[str, list[float]] = {name: [] for name in SCRIPTS}
    for _ in range(repeats):
        for name, args in SCRIPTS.items():
            start = time.perf_counter()
            subprocess.run([sys.executable, str(ROOT / "examples" / "tutorials" / name), *args], check=True,
                           capture_output=True, cwd=ROOT)
            times[name].append(time.perf_counter() - start)
    return {name: {"min_s": min(t), "median_s": statistics.median(t), "runs": len(t)} for name, t in times.items()}


def tutorial_data():
    import tensorflow as tf

    import fedc

    train, _ = fedc.simulation.datasets.digits.load_data()

    def preprocess(dataset):
        def batch_format_fn(element):
            return collections.OrderedDict(x=tf.reshape(element["pixels"], [-1, 784]),
                                           y=tf.reshape(element["label"], [-1, 1]))

        return (dataset.repeat(NUM_EPOCHS).shuffle(SHUFFLE_BUFFER, seed=1).batch(BATCH_SIZE)
                .map(batch_format_fn).prefetch(PREFETCH_BUFFER))

    return [preprocess(train.create_tf_dataset_for_client(c)) for c in train.client_ids[:NUM_CLIENTS]]


def build_process(data):
    import tensorflow as tf

    import fedc

    def model_fn():
        keras_model = tf.keras.models.Sequential([tf.keras.Input((784,)),
                                                  tf.keras.layers.Dense(10, kernel_initializer="zeros"),
                                                  tf.keras.layers.Softmax()])
        return fedc.learning.models.from_keras_model(keras_model, input_spec=data[0].element_spec,
                                                     loss=tf.keras.losses.SparseCategoricalCrossentropy(),
                                                     metrics=[tf.keras.metrics.SparseCategoricalAccuracy()])

    return fedc.learning.algorithms.build_weighted_fed_avg(
        model_fn, client_optimizer_fn=fedc.learning.optimizers.build_sgdm(learning_rate=CLIENT_LR),
        server_optimizer_fn=fedc.learning.optimizers.build_sgdm(learning_rate=SERVER_LR))


def plain_round_fn():
    """The same round in plain TensorFlow: local SGD from the server weights per client, example-weighted mean."""
    import tensorflow as tf

    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy()

    @tf.function
    def local(kernel, bias, dataset):
        def step(carry, batch):
            k, b, n = carry
            with tf.GradientTape() as tape:
                tape.watch([k, b])
                loss = loss_fn(batch["y"], tf.nn.softmax(batch["x"] @ k + b))
            gk, gb = tape.gradient(loss, [k, b])
            return k - CLIENT_LR * gk, b - CLIENT_LR * gb, n + tf.shape(batch["x"])[0]

        return dataset.reduce((kernel, bias, tf.constant(0)), step)

    def round_(kernel, bias, data):
        total_k, total_b, total_n = 0.0, 0.0, 0
        for dataset in data:
            k, b, n = local(tf.constant(kernel), tf.constant(bias), dataset)
            n = int(n)
            total_k, total_b, total_n = total_k + k.numpy() * n, total_b + b.numpy() * n, total_n + n
        mean_k, mean_b = total_k / total_n, total_b / total_n
        # the server's SGD at 1.0 on the mean delta lands on the mean
        return kernel - SERVER_LR * (kernel - mean_k), bias - SERVER_LR * (bias - mean_b)

    return round_


def time_rounds(rounds: int) -> dict:
    import fedc

    with fedc.quiet_tensorflow_startup():
        importlib.import_module("tensorflow")
    # Each side gets its own (identical) pipelines: a shuffled dataset reshuffles on every pass, so both
    # sides must make the same passes over their own copies to see the same batches.
    data, plain_data = tutorial_data(), tutorial_data()
    start = time.perf_counter()
    process = build_process(data)
    build_s = time.perf_counter() - start
    plain = plain_round_fn()
    state = process.initialize()
    kernel, bias = np.zeros((784, 10), np.float32), np.zeros(10, np.float32)
    start = time.perf_counter()
    state = process.next(state, data).state
    first_fedc = time.perf_counter() - start
    start = time.perf_counter()
    kernel, bias = plain(kernel, bias, plain_data)
    first_plain = time.perf_counter() - start
    fedc_times, plain_times = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        state = process.next(state, data).state
        fedc_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        kernel, bias = plain(kernel, bias, plain_data)
        plain_times.append(time.perf_counter() - start)
    trained = process.get_model_weights(state).trainable
    difference = max(float(np.abs(np.asarray(trained[0]) - kernel).max()),
                     float(np.abs(np.asarray(trained[1]) - bias).max()))
    fedc_median, plain_median = statistics.median(fedc_times), statistics.median(plain_times)
    return {
        "config": f"{NUM_CLIENTS} clients of the digits, {NUM_EPOCHS} epochs, batches of {BATCH_SIZE}",
        "backend": fedc.backends.base.DEFAULT_BACKEND,
        "rounds_timed": rounds,
        "build_process_s": build_s,
        "first_round_s": {"fedc": first_fedc, "plain_tf": first_plain},
        "median_round_s": {"fedc": fedc_median, "plain_tf": plain_median},
        "ratio_fedc_over_plain_tf": fedc_median / plain_median,
        "max_weight_difference": difference,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--skip-scripts", action="store_true", help="only the in-process round comparison")
    parser.add_argument("--output", type=pathlib.Path)
    args = parser.parse_args(argv)
    record = {"tff_reported": {"build_weighted_fed_avg_s": [1.9, 3.0],
                               "simulation_runtime_over_plain_tf": [7, 30],
                               "tutorial_wall_times": "none published"}}
    record["image_classification_round"] = time_rounds(args.rounds)
    print(record["image_classification_round"])
    if not args.skip_scripts:
        record["scripts_wall_time"] = time_scripts(args.repeats)
        print(record["scripts_wall_time"])
    print(write("tutorials", record, args.output))


if __name__ == "__main__":
    main()
