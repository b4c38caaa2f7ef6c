"""The blog tutorial "Federated Learning using TensorFlow Federated" (2021), its program completed, on fedc.

The blog shows an outline in TFF's 2019 API: ``from_compiled_keras_model``,
``build_federated_averaging_process``, ``metrics.loss``, ``state.model`` —
names TFF 0.87 no longer has — and leaves ``sample_batch`` and the data
lists undefined. Here it runs with TFF 0.87's names (each change marked
``# fedc:``) and ``import tensorflow_federated as tff`` changed to ``import
fedc as tff``; the model, the optimizer, the five rounds and the federated
evaluation are the blog's.

    python examples/tutorials/image_classification_blog.py
"""

import collections

import tensorflow as tf
import fedc as tff

# fedc: EMNIST when TFF's cached file is present, else the offline digits (same structure).
if tff.simulation.datasets.emnist.is_cached():
    emnist_train, emnist_test = tff.simulation.datasets.emnist.load_data()
else:
    emnist_train, emnist_test = tff.simulation.datasets.digits.load_data()

def preprocess(dataset):  # fedc: the blog's notebook flattens and batches the images
    return dataset.batch(20).map(lambda e: collections.OrderedDict(
        x=tf.reshape(e['pixels'], [-1, 784]), y=tf.reshape(e['label'], [-1, 1])))

clients = emnist_train.client_ids[:10]
train_data = [preprocess(emnist_train.create_tf_dataset_for_client(c)) for c in clients]
test_data = [preprocess(emnist_test.create_tf_dataset_for_client(c)) for c in clients]

def create_compiled_keras_model():
    model = tf.keras.models.Sequential([
        tf.keras.layers.Dense(
            10, activation=tf.nn.softmax, kernel_initializer = 'zeros', input_shape = (784,
            )
        )
    ])
    # fedc: TFF 0.87 takes the model uncompiled, and its loss and metrics in from_keras_model;
    # the blog's SGD(learning_rate=0.02) becomes the client optimizer below.
    return model

def model_fn():

    keras_model = create_compiled_keras_model()

    return tff.learning.models.from_keras_model(  # fedc: was from_compiled_keras_model(keras_model, sample_batch)
        keras_model, input_spec=train_data[0].element_spec,
        loss=tf.keras.losses.SparseCategoricalCrossentropy(),
        metrics=[tf.keras.metrics.SparseCategoricalAccuracy()])

train = tff.learning.algorithms.build_weighted_fed_avg(  # fedc: was build_federated_averaging_process(model_fn)
    model_fn, client_optimizer_fn=tff.learning.optimizers.build_sgdm(learning_rate=0.02))

state = train.initialize()

for _ in range (5):
    state, metrics = train.next(state, train_data)
    print (metrics['client_work']['train']['loss'])  # fedc: was metrics.loss

eval = tff.learning.build_federated_evaluation(model_fn)
metrics = eval(train.get_model_weights(state), test_data)  # fedc: was eval(state.model, test_data)
print(metrics)
