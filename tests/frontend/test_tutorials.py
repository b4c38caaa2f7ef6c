"""TFF's "Custom Federated Algorithms" and "Building your own FL algorithm" programs, on fedc."""

import importlib.util
import pathlib

import numpy as np
import pytest

import fedc

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_federated_type_prints_like_tff():
    assert str(fedc.FederatedType(np.float32, fedc.CLIENTS)) == "{float32}@CLIENTS"
    assert str(fedc.FederatedType(np.float32, fedc.SERVER)) == "float32@SERVER"
    assert str(fedc.FederatedType(np.float32, fedc.CLIENTS, all_equal=True)) == "float32@CLIENTS"


def test_get_average_temperature():
    @fedc.federated_computation(fedc.FederatedType(np.float32, fedc.CLIENTS))
    def get_average_temperature(sensor_readings):
        return fedc.federated_mean(sensor_readings)

    assert str(get_average_temperature.type_signature) == "({float32}@CLIENTS -> float32@SERVER)"
    result = get_average_temperature([68.5, 70.3, 69.8])
    assert isinstance(result, np.float32)
    assert result == np.float32(69.53333)
    # Clients may also come as one array whose first axis indexes them.
    assert get_average_temperature(np.array([68.5, 70.3, 69.8], np.float32)) == np.float32(69.53333)


def test_add_half_and_add_half_on_clients():
    @fedc.tf_computation(np.float32)
    def add_half(x):
        return x + 0.5

    assert str(add_half.type_signature) == "(float32 -> float32)"
    assert add_half(2.0) == np.float32(2.5)

    @fedc.federated_computation(fedc.FederatedType(np.float32, fedc.CLIENTS))
    def add_half_on_clients(x):
        return fedc.federated_map(add_half, x)

    assert str(add_half_on_clients.type_signature) == "({float32}@CLIENTS -> {float32}@CLIENTS)"
    assert add_half_on_clients([1.0, 3.0, 7.0]) == [1.5, 3.5, 7.5]


def test_tutorial_composition_of_computations():
    """get_average_temperature composed with a server-side threshold, as in the tutorial's later cells."""

    @fedc.tf_computation(np.float32, np.float32)
    def exceeds_threshold_fn(reading, threshold):
        return fedc_tf().cast(reading > threshold, fedc_tf().float32)

    @fedc.federated_computation(
        fedc.FederatedType(np.float32, fedc.CLIENTS), fedc.FederatedType(np.float32, fedc.SERVER)
    )
    def get_fraction_over_threshold(readings, threshold):
        return fedc.federated_mean(
            fedc.federated_map(exceeds_threshold_fn, [readings, fedc.federated_broadcast(threshold)])
        )

    assert (
        str(get_fraction_over_threshold.type_signature)
        == "(<readings={float32}@CLIENTS,threshold=float32@SERVER> -> float32@SERVER)"
    )
    assert get_fraction_over_threshold([68.0, 70.0, 80.0], 69.0) == pytest.approx(2 / 3)
    assert get_fraction_over_threshold(readings=[68.0, 70.0], threshold=75.0) == 0.0


def fedc_tf():
    import tensorflow as tf

    return tf


def _load_fedavg():
    spec = importlib.util.spec_from_file_location("fedavg_example", ROOT / "examples" / "fedavg.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fedavg():
    return _load_fedavg()


def test_fedavg_signatures_match_tff(fedavg):
    assert str(fedavg.initialize_fn.type_signature) == "( -> <float32[784,10],float32[10]>@SERVER)"
    assert str(fedavg.next_fn.type_signature) == (
        "(<server_weights=<float32[784,10],float32[10]>@SERVER,"
        "federated_dataset={<float32[?,784],int32[?,1]>*}@CLIENTS> -> <float32[784,10],float32[10]>@SERVER)"
    )
    assert str(fedavg.client_update_fn.type_signature) == (
        "(<tf_dataset=<float32[?,784],int32[?,1]>*,server_weights=<float32[784,10],float32[10]>> "
        "-> <float32[784,10],float32[10]>)"
    )


def test_fedavg_learns_on_non_iid_data(fedavg):
    history = fedavg.train(rounds=15, verbose=False)
    losses = [loss for loss, _ in history]
    accuracies = [accuracy for _, accuracy in history]
    assert losses[-1] < 0.5 * losses[0]
    assert accuracies[-1] > accuracies[0] + 0.3
    # Training improves steadily, not by luck in the last round.
    assert losses[5] < losses[0] and losses[10] < losses[5] and losses[15] < losses[10]


def test_fedavg_data_is_non_iid_and_deterministic(fedavg):
    clients, _ = fedavg.make_data(seed=0)
    again, _ = fedavg.make_data(seed=0)
    assert len(clients) == 10
    assert all(np.array_equal(a[0][0], b[0][0]) for a, b in zip(clients, again))
    label_histograms = [np.bincount(np.concatenate([y.ravel() for _, y in c]), minlength=10) for c in clients]
    dominant = {int(np.argmax(h)) for h in label_histograms}
    assert len(dominant) > 3  # clients are dominated by different classes


def test_fedavg_as_iterative_process(fedavg):
    process = fedavg.fedavg
    assert isinstance(process, fedc.templates.IterativeProcess)
    assert str(process.state_type) == "<float32[784,10],float32[10]>@SERVER"
    clients, test = fedavg.make_data(seed=1, num_clients=4)
    state = process.initialize()
    before = fedavg.evaluate(state, test)[0]
    for _ in range(3):
        state = process.next(state, clients)
    assert fedavg.evaluate(state, test)[0] < before


def test_iterative_process_checks_state_types():
    @fedc.federated_computation
    def init():
        return fedc.federated_value(np.float32(0.0), fedc.SERVER)

    @fedc.federated_computation(fedc.FederatedType(np.int32, fedc.SERVER))
    def wrong_next(state):
        return state

    with pytest.raises(fedc.FedcTypeError, match=r"initialize_fn returns float32@SERVER, next_fn takes int32@SERVER"):
        fedc.templates.IterativeProcess(init, wrong_next)
