"""TFF's "Federated Learning" API overview, its code fragments made into one program, on fedc.

The overview shows fragments, not a program: a ``model_fn`` wrapping a Keras
model, a training loop that samples clients each round, federated
evaluation, and ``ClientData``. Here they are filled in (marked ``# fedc:``)
with TFF 0.87's spellings — the overview's ``from_keras_model(keras_model,
sample_batch, loss=...)`` is an older signature that TFF 0.87 no longer
accepts; its ``input_spec`` is the batch's spec — and ``import
tensorflow_federated as tff`` changed to ``import fedc as tff``.

    python examples/tutorials/federated_learning_api.py [--rounds 5]
"""

import collections
import sys

import tensorflow as tf
import fedc as tff

ROUNDS = int(sys.argv[sys.argv.index('--rounds') + 1]) if '--rounds' in sys.argv else 5  # fedc: bounded loop
CLIENTS_PER_ROUND = 10

# fedc: the data. EMNIST when TFF's cached file is present, else the offline digits (same structure).
if tff.simulation.datasets.emnist.is_cached():
  emnist_train, emnist_test = tff.simulation.datasets.emnist.load_data()
else:
  emnist_train, emnist_test = tff.simulation.datasets.digits.load_data()

def preprocess(dataset):
  return dataset.batch(20).map(lambda e: collections.OrderedDict(
      x=tf.reshape(e['pixels'], [-1, 784]), y=tf.reshape(e['label'], [-1, 1])))

sample_batch = next(iter(preprocess(emnist_train.create_tf_dataset_for_client(emnist_train.client_ids[0]))))

def model_fn():
  keras_model = tf.keras.Sequential([tf.keras.Input((784,)), tf.keras.layers.Dense(10), tf.keras.layers.Softmax()])
  return tff.learning.models.from_keras_model(
      keras_model,
      input_spec=tf.nest.map_structure(lambda t: tf.TensorSpec([None] + t.shape[1:], t.dtype), sample_batch),
      loss=tf.keras.losses.SparseCategoricalCrossentropy(),
      metrics=[tf.keras.metrics.SparseCategoricalAccuracy()])

trainer = tff.learning.algorithms.build_weighted_fed_avg(
    model_fn, client_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=0.02))
state = trainer.initialize()
federated_training_data = emnist_train.preprocess(preprocess)

sample_clients = tff.simulation.build_uniform_sampling_fn(federated_training_data.client_ids, random_seed=1)

def sample(federate_data, round_num):
  return [federate_data.create_tf_dataset_for_client(c) for c in sample_clients(round_num, CLIENTS_PER_ROUND)]

for round_num in range(1, ROUNDS + 1):
  data_for_this_round = sample(federated_training_data, round_num)
  result = trainer.next(state, data_for_this_round)
  state = result.state
  train = result.metrics['client_work']['train']
  print(f"round {round_num}: loss {float(train['loss']):.4f}, accuracy {float(train['sparse_categorical_accuracy']):.4f}")

evaluation = tff.learning.build_federated_evaluation(model_fn)
print(evaluation.type_signature)
test_data = [preprocess(emnist_test.create_tf_dataset_for_client(c)) for c in emnist_test.client_ids]
metrics = evaluation(trainer.get_model_weights(state), test_data)
print(f"evaluation on {len(test_data)} clients: loss {float(metrics['eval']['loss']):.4f}, "
      f"accuracy {float(metrics['eval']['sparse_categorical_accuracy']):.4f}")
