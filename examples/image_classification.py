"""The core of TFF's "Federated Learning for Image Classification", on fedc: only the import changes.

EMNIST is replaced by fedc's offline digits (the same element structure), so
it runs with nothing downloaded; with TFF's EMNIST file in ~/.tff, use
``tff.simulation.datasets.emnist.load_data()`` instead.

    python examples/image_classification.py [--rounds 10]
"""

import argparse
import collections

import tensorflow as tf

import fedc as tff

NUM_CLIENTS = 10
NUM_EPOCHS = 5
BATCH_SIZE = 20
SHUFFLE_BUFFER = 100
PREFETCH_BUFFER = 10


def preprocess(dataset):
    def batch_format_fn(element):
        return collections.OrderedDict(x=tf.reshape(element["pixels"], [-1, 784]),
                                       y=tf.reshape(element["label"], [-1, 1]))

    return (dataset.repeat(NUM_EPOCHS).shuffle(SHUFFLE_BUFFER, seed=1).batch(BATCH_SIZE)
            .map(batch_format_fn).prefetch(PREFETCH_BUFFER))


def create_keras_model():
    return tf.keras.models.Sequential([
        tf.keras.layers.InputLayer(shape=(784,)),
        tf.keras.layers.Dense(10, kernel_initializer="zeros"),
        tf.keras.layers.Softmax(),
    ])


def main(rounds: int = 10):
    emnist_train, emnist_test = tff.simulation.datasets.digits.load_data()
    sample_clients = emnist_train.client_ids[0:NUM_CLIENTS]
    federated_train_data = [preprocess(emnist_train.create_tf_dataset_for_client(x)) for x in sample_clients]

    def model_fn():
        return tff.learning.models.from_keras_model(
            create_keras_model(),
            input_spec=federated_train_data[0].element_spec,
            loss=tf.keras.losses.SparseCategoricalCrossentropy(),
            metrics=[tf.keras.metrics.SparseCategoricalAccuracy()])

    training_process = tff.learning.algorithms.build_weighted_fed_avg(
        model_fn,
        client_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=0.02),
        server_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=1.0))
    print(training_process.initialize.type_signature.formatted_representation())
    train_state = training_process.initialize()
    history = []
    for round_num in range(1, rounds + 1):
        result = training_process.next(train_state, federated_train_data)
        train_state = result.state
        train = result.metrics["client_work"]["train"]
        history.append(float(train["loss"]))
        print(f"round {round_num:2d}: loss {float(train['loss']):.4f}, "
              f"accuracy {float(train['sparse_categorical_accuracy']):.4f}, examples {int(train['num_examples'])}")
    return history


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    main(parser.parse_args().rounds)
