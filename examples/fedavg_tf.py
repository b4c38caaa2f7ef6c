"""The TensorFlow blocks of examples/fedavg.fed, bound there with ``extern``.

They reuse the model of examples/fedavg.py (a Keras 3 model used through
``stateless_call``, so its weights travel as tensors and every block is a
pure function): ``server_init`` and ``server_update`` are fedavg.py's own;
``client_update`` is fedavg.py's local SGD that also reports the client's mean
training loss, so that the .fed orchestration can average and return it.

The .fed loader puts this folder on ``sys.path`` while it imports this module.
"""

from __future__ import annotations

import collections

import tensorflow as tf

import fedc

import fedavg  # examples/fedavg.py: the model, the data and the other blocks
from fedavg import LEARNING_RATE, loss_and_logits, model_weights_type, tf_dataset_type

__all__ = ["client_update", "server_init", "server_update"]

# ( -> <float32[784,10],float32[10]>): the model's initial weights.
server_init = fedavg.server_init

# (<float32[784,10],float32[10]> -> <float32[784,10],float32[10]>): the new server weights.
server_update = fedavg.server_update_fn


@fedc.tf_computation(tf_dataset_type, model_weights_type)
def client_update(tf_dataset, server_weights):
    """Local SGD over the client's dataset from the server's weights; returns <weights, loss>.

    ``loss`` is the mean of the batch losses seen during the local training.
    """

    def step(state, batch):
        weights, loss_sum, batches = state
        x, y = batch
        with tf.GradientTape() as tape:
            tape.watch(weights)
            loss, _ = loss_and_logits(weights, x, y)
        grads = tape.gradient(loss, weights)
        new_weights = tuple(w - LEARNING_RATE * g for w, g in zip(weights, grads))
        return new_weights, loss_sum + loss, batches + 1.0

    zero = (tuple(server_weights), tf.constant(0.0, tf.float32), tf.constant(0.0, tf.float32))
    weights, loss_sum, batches = tf_dataset.reduce(zero, step)
    return collections.OrderedDict(weights=list(weights), loss=loss_sum / tf.maximum(batches, 1.0))


if __name__ == "__main__":
    for name in __all__:
        print(f"{name}: {globals()[name].type_signature}")
