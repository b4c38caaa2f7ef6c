"""fedc.learning.optimizers: TFF's functional optimizers — state keys, update rules, hparams, inside computations."""

import collections

import numpy as np
import pytest
import tensorflow as tf

import fedc
from fedc.learning import optimizers

SPECS = [tf.TensorSpec([2], tf.float32), tf.TensorSpec([3], tf.float32)]


def steps(optimizer, rounds=3, seed=0):
    """Weights after ``rounds`` steps on fixed random gradients (the second weight's gradient is None once)."""
    rng = np.random.default_rng(seed)
    weights = [tf.constant([1.0, -2.0]), tf.constant([0.5, 0.0, 3.0])]
    state = optimizer.initialize(SPECS)
    grads_seen = []
    for r in range(rounds):
        grads = [tf.constant(rng.normal(size=2).astype(np.float32)),
                 None if r == 1 else tf.constant(rng.normal(size=3).astype(np.float32))]
        grads_seen.append([None if g is None else g.numpy() for g in grads])
        state, weights = optimizer.next(state, weights, grads)
    return state, [w.numpy() for w in weights], grads_seen


def reference(rule, grads_seen, slots0):
    """The same steps in numpy, per weight; ``rule(w, g, slots, t) -> (w, slots)``."""
    weights = [np.array([1.0, -2.0], np.float32), np.array([0.5, 0.0, 3.0], np.float32)]
    slots = [dict((k, np.full(w.shape, v, np.float32)) for k, v in slots0.items()) for w in weights]
    for t, grads in enumerate(grads_seen, 1):
        for i, g in enumerate(grads):
            if g is not None:
                weights[i], slots[i] = rule(weights[i], g.astype(np.float64), slots[i], t)
    return weights


RULES = {
    "sgd": (lambda: optimizers.build_sgdm(0.1), {}, lambda w, g, s, t: (w - 0.1 * g, s)),
    "sgdm": (lambda: optimizers.build_sgdm(0.1, momentum=0.9), {"a": 0.0},
             lambda w, g, s, t: (w - 0.1 * (0.9 * s["a"] + g), {"a": 0.9 * s["a"] + g})),
    "adam": (lambda: optimizers.build_adam(0.01), {"a": 0.0, "p": 0.0},
             lambda w, g, s, t: adam_like(w, g, s, t, 0.01, lambda p, g2: p + (g2 - p) * 0.001, 1e-7)),
    "yogi": (lambda: optimizers.build_yogi(0.01), {"a": 0.0, "p": 1e-6},
             lambda w, g, s, t: adam_like(w, g, s, t, 0.01, lambda p, g2: p + 0.001 * np.sign(g2 - p) * g2, 1e-3)),
    "adamw": (lambda: optimizers.build_adamw(0.01, weight_decay=0.1), {"a": 0.0, "p": 0.0},
              lambda w, g, s, t: adam_like(w, g, s, t, 0.01, lambda p, g2: p + (g2 - p) * 0.001, 1e-7, decay=0.1)),
    "adagrad": (lambda: optimizers.build_adagrad(0.1), {"p": 0.1},
                lambda w, g, s, t: (w - 0.1 * g / np.sqrt(s["p"] + g * g + 1e-7), {"p": s["p"] + g * g})),
    "rmsprop": (lambda: optimizers.build_rmsprop(0.1), {"p": 0.0},
                lambda w, g, s, t: rms(w, g, s)),
}


def adam_like(w, g, s, t, lr, second, eps, decay=0.0):
    a = s["a"] + (g - s["a"]) * 0.1
    p = second(s["p"], g * g)
    correction = np.sqrt(1 - 0.999**t) / (1 - 0.9**t)
    return w - lr * (correction * a / (np.sqrt(p) + eps) + decay * w), {"a": a, "p": p}


def rms(w, g, s):
    p = s["p"] + (g * g - s["p"]) * 0.1
    return w - 0.1 * g / (np.sqrt(p) + 1e-7), {"p": p}


@pytest.mark.parametrize("name", RULES)
def test_each_optimizer_follows_its_update_rule(name):
    build, slots0, rule = RULES[name]
    _, got, grads = steps(build())
    expected = reference(rule, grads, slots0)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("ours, keras", [
    (lambda: optimizers.build_sgdm(0.05, momentum=0.5), lambda k: k.optimizers.SGD(0.05, momentum=0.5)),
    (lambda: optimizers.build_adam(0.01), lambda k: k.optimizers.Adam(0.01, epsilon=1e-7)),
    (lambda: optimizers.build_adagrad(0.1), lambda k: k.optimizers.Adagrad(0.1, initial_accumulator_value=0.1,
                                                                          epsilon=1e-7)),
], ids=["sgdm", "adam", "adagrad"])
def test_the_same_steps_as_keras(ours, keras):
    import keras as k

    rng = np.random.default_rng(1)
    grads = [rng.normal(size=3).astype(np.float32) for _ in range(5)]
    variable = k.Variable(np.array([1.0, 2.0, -1.0], np.float32))
    opt = keras(k)
    optimizer = ours()
    state = optimizer.initialize([tf.TensorSpec([3], tf.float32)])
    weights = [tf.constant([1.0, 2.0, -1.0])]
    for g in grads:
        opt.apply_gradients([(tf.constant(g), variable)])
        state, weights = optimizer.next(state, weights, [tf.constant(g)])
    np.testing.assert_allclose(weights[0].numpy(), np.asarray(variable), rtol=1e-5, atol=1e-6)


def test_state_keys_are_tffs_in_order():
    keys = {
        "sgd": ["learning_rate"],
        "sgdm": ["learning_rate", "momentum", "accumulator"],
        "adam": ["learning_rate", "beta_1", "beta_2", "epsilon", "step", "accumulator", "preconditioner"],
        "adamw": ["learning_rate", "beta_1", "beta_2", "epsilon", "step", "accumulator", "preconditioner",
                  "weight_decay"],
        "yogi": ["learning_rate", "beta_1", "beta_2", "epsilon", "step", "accumulator", "preconditioner"],
        "adagrad": ["learning_rate", "epsilon", "preconditioner"],
        "rmsprop": ["learning_rate", "decay", "epsilon", "preconditioner"],
    }
    for name, expected in keys.items():
        assert list(RULES[name][0]().initialize(SPECS)) == expected, name
    state = optimizers.build_sgdm(0.1, momentum=0.0).initialize(SPECS)  # momentum 0 is no momentum, as in TFF
    assert list(state) == ["learning_rate"]


def test_hparams_read_and_replace():
    optimizer = optimizers.build_adam(0.01)
    state = optimizer.initialize(SPECS)
    assert list(optimizer.get_hparams(state)) == ["learning_rate", "beta_1", "beta_2", "epsilon"]
    changed = optimizer.set_hparams(state, {"learning_rate": 0.5})
    assert float(changed["learning_rate"]) == 0.5 and float(state["learning_rate"]) == pytest.approx(0.01)
    with pytest.raises(fedc.FedcValueError, match="'lr' is not in the optimizer's state"):
        optimizer.set_hparams(state, {"lr": 0.5})


def test_a_schedule_sets_each_steps_learning_rate():
    optimizer = optimizers.schedule_learning_rate(optimizers.build_sgdm(1.0), lambda i: 0.1 / (tf.cast(i, tf.float32) + 1.0))
    state = optimizer.initialize([tf.TensorSpec([], tf.float32)])
    assert list(state) == ["round_num", "optimizer"]
    w = [tf.constant(0.0)]
    for _ in range(3):
        state, w = optimizer.next(state, w, [tf.constant(1.0)])
    np.testing.assert_allclose(w[0].numpy(), -(0.1 + 0.05 + 0.1 / 3), rtol=1e-6)
    assert int(state["round_num"]) == 3
    with pytest.raises(fedc.FedcValueError, match="has no 'learning_rate'"):
        optimizers.schedule_learning_rate(NoRate(), lambda i: 1.0).initialize(SPECS)


class NoRate(optimizers.Optimizer):
    def initialize(self, specs):
        return collections.OrderedDict()

    def next(self, state, weights, gradients):
        return state, weights


def test_optimizers_run_inside_computations_and_type_like_tff():
    sgdm = optimizers.build_sgdm(learning_rate=0.02)
    init = fedc.tf_computation(lambda: sgdm.initialize([tf.TensorSpec([784, 10], tf.float32),
                                                        tf.TensorSpec([10], tf.float32)]))
    assert str(init.type_signature) == "( -> <learning_rate=float32>)"
    adam = optimizers.build_adam(0.1)
    specs = [tf.TensorSpec([2], tf.float32)]
    state_type = fedc.tf_computation(lambda: adam.initialize(specs)).type_signature.result

    @fedc.tf_computation(state_type, fedc.StructType([fedc.TensorType(np.float32, [2])]),
                         fedc.StructType([fedc.TensorType(np.float32, [2])]))
    def step(state, weights, gradients):
        return adam.next(state, list(weights), list(gradients))

    assert str(state_type) == ("<learning_rate=float32,beta_1=float32,beta_2=float32,epsilon=float32,step=int32,"
                               "accumulator=<float32[2]>,preconditioner=<float32[2]>>")
    state, weights = step(adam.initialize(specs), [np.ones(2, np.float32)], [np.ones(2, np.float32)])
    np.testing.assert_allclose(np.asarray(weights[0]), 1.0 - 0.1, rtol=1e-4)
    assert int(state["step"]) == 1


def test_bad_hyperparameters_and_gradients_are_named():
    with pytest.raises(fedc.FedcValueError, match=r"learning_rate must be >= 0.0, got -1.0"):
        optimizers.build_sgdm(-1.0)
    with pytest.raises(fedc.FedcValueError, match=r"beta_1 must be \[0.0, 1.0\], got 1.5"):
        optimizers.build_adam(0.1, beta_1=1.5)
    with pytest.raises(fedc.FedcTypeError, match="momentum must be a number"):
        optimizers.build_sgdm(0.1, momentum="fast")
    optimizer = optimizers.build_sgdm(0.1)
    state = optimizer.initialize(SPECS)
    with pytest.raises(fedc.FedcValueError, match="the gradients do not have the structure of the weights"):
        optimizer.next(state, [tf.zeros(2), tf.zeros(3)], [tf.zeros(2)])
    with pytest.raises(fedc.FedcValueError, match=r"weight 1 is float32\[3\] but its entry among the gradients is "
                                                  r"float32\[4\]"):
        optimizer.next(state, [tf.zeros(2), tf.zeros(3)], [tf.zeros(2), tf.zeros(4)])
    with pytest.raises(fedc.FedcTypeError, match="takes a fedc.learning.optimizers.Optimizer"):
        optimizers.schedule_learning_rate(object(), lambda i: 0.1)
