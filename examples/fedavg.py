"""Federated Averaging, built by hand with fedc — TFF's "Building your own federated
learning algorithm" tutorial, on deterministic synthetic non-IID data.

The model is a Keras 3 model used functionally: its weights travel as tensors
(`<float32[784,10],float32[10]>`) and `model.stateless_call` computes with the
weights it is given, so every TensorFlow block is a pure function.

    python examples/fedavg.py            # 15 rounds on 10 clients
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

import fedc  # noqa: E402

NUM_CLASSES = 10
NUM_FEATURES = 784
NUM_CLIENTS = 10
BATCH_SIZE = 20
LEARNING_RATE = 0.05


# --------------------------------------------------------------------------
# Data: each class is a noisy prototype; each client's labels follow its own
# Dirichlet mixture of classes, so clients differ (non-IID).


def make_data(seed: int = 0, num_clients: int = NUM_CLIENTS, alpha: float = 0.5):
    """(client datasets, held-out (x, y)); each client dataset is a list of (x, y) batches."""
    rng = np.random.default_rng(seed)
    prototypes = rng.normal(0.0, 1.0, size=(NUM_CLASSES, NUM_FEATURES)).astype(np.float32)

    def sample(labels):
        x = (prototypes[labels] + rng.normal(0.0, 4.0, size=(len(labels), NUM_FEATURES))) / 4.0
        return x.astype(np.float32), labels.reshape(-1, 1).astype(np.int32)

    clients = []
    for _ in range(num_clients):
        mixture = rng.dirichlet(alpha * np.ones(NUM_CLASSES))
        count = int(rng.integers(5, 11)) * BATCH_SIZE
        x, y = sample(rng.choice(NUM_CLASSES, size=count, p=mixture))
        clients.append([(x[i:i + BATCH_SIZE], y[i:i + BATCH_SIZE]) for i in range(0, count, BATCH_SIZE)])
    test = sample(np.repeat(np.arange(NUM_CLASSES), 50))
    return clients, test


# --------------------------------------------------------------------------
# The model, used through stateless_call.


def create_keras_model():
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((NUM_FEATURES,)), keras.layers.Dense(NUM_CLASSES)])
    return model


MODEL = create_keras_model()
INITIAL_WEIGHTS = [np.asarray(v) for v in MODEL.trainable_variables]


def loss_and_logits(weights, x, y):
    import tensorflow as tf

    logits, _ = MODEL.stateless_call(list(weights), [], x)
    labels = tf.reshape(y, [-1])
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
    return loss, logits


# --------------------------------------------------------------------------
# The TensorFlow blocks.

import tensorflow as tf  # noqa: E402

tf_dataset_type = fedc.SequenceType(
    (fedc.TensorType(np.float32, [None, NUM_FEATURES]), fedc.TensorType(np.int32, [None, 1]))
)


@fedc.tf_computation
def server_init():
    return [tf.constant(w) for w in INITIAL_WEIGHTS]


model_weights_type = server_init.type_signature.result


@fedc.tf_computation(tf_dataset_type, model_weights_type)
def client_update_fn(tf_dataset, server_weights):
    """Local SGD over the client's dataset, starting from the server's weights."""

    def step(weights, batch):
        x, y = batch
        with tf.GradientTape() as tape:
            tape.watch(weights)
            loss, _ = loss_and_logits(weights, x, y)
        grads = tape.gradient(loss, weights)
        return tuple(w - LEARNING_RATE * g for w, g in zip(weights, grads))

    return list(tf_dataset.reduce(tuple(server_weights), step))


@fedc.tf_computation(model_weights_type)
def server_update_fn(mean_client_weights):
    """The new server weights: the clients' mean."""
    return [tf.identity(w) for w in mean_client_weights]


# --------------------------------------------------------------------------
# The federated orchestration.

federated_server_type = fedc.FederatedType(model_weights_type, fedc.SERVER)
federated_dataset_type = fedc.FederatedType(tf_dataset_type, fedc.CLIENTS)


@fedc.federated_computation
def initialize_fn():
    return fedc.federated_value(server_init(), fedc.SERVER)


@fedc.federated_computation(federated_server_type, federated_dataset_type)
def next_fn(server_weights, federated_dataset):
    server_weights_at_client = fedc.federated_broadcast(server_weights)
    client_weights = fedc.federated_map(client_update_fn, (federated_dataset, server_weights_at_client))
    mean_client_weights = fedc.federated_mean(client_weights)
    return fedc.federated_map(server_update_fn, mean_client_weights)


fedavg = fedc.templates.IterativeProcess(initialize_fn=initialize_fn, next_fn=next_fn)


# --------------------------------------------------------------------------
# Evaluation on held-out data (plain TensorFlow, outside fedc).


def evaluate(weights, test) -> tuple[float, float]:
    x, y = test
    loss, logits = loss_and_logits([tf.constant(w) for w in weights], tf.constant(x), tf.constant(y))
    accuracy = float(np.mean(np.argmax(logits.numpy(), axis=1) == y.reshape(-1)))
    return float(loss.numpy()), accuracy


def train(rounds: int = 15, seed: int = 0, verbose: bool = True):
    """Runs FedAvg; returns [(loss, accuracy)] on held-out data before round 1 and after each round."""
    clients, test = make_data(seed)
    state = fedavg.initialize()
    history = [evaluate(state, test)]
    if verbose:
        print(f"round  0: loss {history[0][0]:.4f}  accuracy {history[0][1]:.3f}")
    for round_number in range(1, rounds + 1):
        state = fedavg.next(state, clients)
        history.append(evaluate(state, test))
        if verbose:
            loss, accuracy = history[-1]
            print(f"round {round_number:2d}: loss {loss:.4f}  accuracy {accuracy:.3f}")
    return history


if __name__ == "__main__":
    print("initialize_fn:", initialize_fn.type_signature)
    print("next_fn:", next_fn.type_signature)
    train()
