"""fedc.simulation.run_training_process: rounds, sampling, evaluation, checkpoints and resuming, CSV and TensorBoard."""

import collections
import csv

import keras
import numpy as np
import pytest
import tensorflow as tf

import fedc
from fedc.learning import algorithms, models, optimizers
from fedc.simulation import (CSVFileReleaseManager, FileProgramStateManager, TensorBoardReleaseManager,
                             build_uniform_sampling_fn, run_training_process)
from fedc.simulation.datasets import TestClientData

SPEC = collections.OrderedDict(x=tf.TensorSpec([None, 4], tf.float32), y=tf.TensorSpec([None], tf.int32))


def model_fn():
    return models.from_keras_model(keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, kernel_initializer="zeros")]),
                                   loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), input_spec=SPEC)


def population():
    rng = np.random.default_rng(0)
    return TestClientData({f"c{k}": collections.OrderedDict(x=rng.normal(size=(12, 4)).astype(np.float32),
                                                            y=rng.integers(0, 3, 12).astype(np.int32))
                           for k in range(8)}).preprocess(lambda d: d.batch(4))


@pytest.fixture(scope="module")
def setting():
    data = population()
    process = algorithms.build_weighted_fed_avg(model_fn, optimizers.build_sgdm(learning_rate=0.5))
    evaluation = algorithms.build_fed_eval(model_fn)
    sample = build_uniform_sampling_fn(data.client_ids, random_seed=3)

    def select(round_num):
        return [data.create_tf_dataset_for_client(c) for c in sample(round_num, 3)]

    def evaluate(state, datasets):
        eval_state = evaluation.set_model_weights(evaluation.initialize(), process.get_model_weights(state))
        return evaluation.next(eval_state, datasets).metrics["client_work"]["eval"]["current_round_metrics"]

    return process, select, evaluate


def weights(process, state):
    return [np.asarray(w) for w in process.get_model_weights(state).trainable]


def test_rounds_run_and_metrics_reach_csv_and_tensorboard(setting, tmp_path):
    process, select, evaluate = setting
    csv_path = tmp_path / "metrics.csv"
    run_training_process(process, select, 4, evaluation_fn=evaluate, evaluation_selection_fn=select,
                         rounds_per_evaluation=2,
                         metrics_managers=[CSVFileReleaseManager(str(csv_path)),
                                           TensorBoardReleaseManager(str(tmp_path / "tb"))])
    rows = list(csv.DictReader(open(csv_path, newline="")))
    assert [int(r["key"]) for r in rows] == [0, 1, 2, 3, 4]
    assert rows[1]["train/client_work/train/loss"] and rows[2]["evaluation/loss"] and not rows[1]["evaluation/loss"]
    losses = [float(r["train/client_work/train/loss"]) for r in rows[1:]]
    assert losses[-1] < losses[0]
    from tensorboard.backend.event_processing import event_accumulator

    events = event_accumulator.EventAccumulator(str(tmp_path / "tb"), size_guidance={"tensors": 0})
    events.Reload()
    steps = [e.step for e in events.Tensors("train/client_work/train/loss")]
    assert steps == [1, 2, 3, 4]


def test_a_run_resumes_from_its_latest_checkpoint_with_the_same_result(setting, tmp_path):
    process, select, _ = setting
    straight = run_training_process(process, select, 5)
    manager = FileProgramStateManager(str(tmp_path / "states"), keep_total=2)
    run_training_process(process, select, 3, program_state_manager=manager)
    assert manager.get_versions() == [2, 3]  # the two latest kept
    resumed = run_training_process(process, select, 5, program_state_manager=manager)
    for a, b in zip(weights(process, resumed), weights(process, straight)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    state, version = manager.load_latest(process.initialize())
    assert version == 5 and isinstance(state, type(process.initialize()))


def test_a_checkpoint_of_another_process_is_refused_naming_the_difference(setting, tmp_path):
    process, _, _ = setting
    manager = FileProgramStateManager(str(tmp_path))
    manager.save(collections.OrderedDict(w=np.zeros(3, np.float32)), 1)
    with pytest.raises(fedc.FedcValueError, match="the saved state has another structure"):
        manager.load_latest(process.initialize())
    (tmp_path / "program_state_2.npz").write_bytes(b"not an npz")
    with pytest.raises(fedc.FedcValueError, match="not a program state fedc saved"):
        manager.load_latest(process.initialize())


def test_bad_arguments_are_named(setting):
    process, select, evaluate = setting
    with pytest.raises(fedc.FedcValueError, match="total_rounds must be an integer >= 0"):
        run_training_process(process, select, -1)
    with pytest.raises(fedc.FedcValueError, match="evaluation_fn and evaluation_selection_fn go together"):
        run_training_process(process, select, 1, evaluation_fn=evaluate)
    with pytest.raises(fedc.FedcTypeError, match="has a release\\(value, key\\) method"):
        run_training_process(process, select, 1, metrics_managers=[object()])


def test_bad_files_and_names_for_the_managers_are_refused(tmp_path):
    bad_csv = tmp_path / "other.csv"
    bad_csv.write_text("round,loss\nfirst,0.5\n")
    with pytest.raises(fedc.FedcValueError, match="not a metrics file this manager wrote"):
        CSVFileReleaseManager(str(bad_csv), key_fieldname="round").release({"loss": 1.0}, key=1)
    with pytest.raises(fedc.FedcValueError, match="prefix may hold letters"):
        FileProgramStateManager(str(tmp_path), prefix="../escape_")
    with pytest.raises(fedc.FedcValueError, match="a version is an integer >= 0"):
        FileProgramStateManager(str(tmp_path)).save({"w": np.zeros(1)}, -1)
