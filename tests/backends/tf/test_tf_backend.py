"""The tf backend's own machinery: one trace per layout, the ingestion cache, the dataset plan, eager fallback."""

import numpy as np
import pytest
import tensorflow as tf

import fedc
from fedc.backends.base import get_backend
from fedc.context import execution_context

F32 = np.float32
WEIGHTS = fedc.TensorType(F32, [3])
DATA = fedc.SequenceType(fedc.TensorType(F32, [None, 3]))


@fedc.tf_computation(DATA, WEIGHTS)
def local_steps(dataset, w):
    """w moves toward each batch's mean, batch by batch (order matters: a plain sum would not show it)."""
    return dataset.reduce(w, lambda w, batch: 0.5 * w + 0.5 * tf.reduce_mean(batch, axis=0))


@fedc.federated_computation(fedc.FederatedType(WEIGHTS, fedc.SERVER), fedc.FederatedType(DATA, fedc.CLIENTS))
def round_(w, datasets):
    return fedc.federated_mean(fedc.federated_map(local_steps, (datasets, fedc.federated_broadcast(w))))


def clients(seed, sizes):
    rng = np.random.default_rng(seed)
    return [[rng.normal(size=(n, 3)).astype(F32) for n in batches] for batches in sizes]


def executable(computation):
    return execution_context(get_backend("tf")).compile(computation)


def test_a_round_is_traced_once_per_layout_and_reused():
    data = clients(0, [[4, 4, 2], [4, 1], [4, 4, 2]])
    w = np.zeros(3, F32)
    with fedc.backend("tf"):
        first = round_(w, data)
        second = round_(first, data)
        assert executable(round_).traces == 1
        round_(w, clients(1, [[4, 4, 2], [4, 1], [4, 4, 2]]))  # new values, same layout
        assert executable(round_).traces == 1
        round_(w, clients(1, [[4], [4, 3]]))  # another layout
        assert executable(round_).traces == 2
    with fedc.backend("reference"):
        np.testing.assert_allclose(second, round_(round_(w, data), data), rtol=1e-6)


def test_data_changed_in_place_is_seen_not_reused():
    data = clients(2, [[4, 2], [4, 2]])
    w = np.zeros(3, F32)
    with fedc.backend("tf"):
        before = round_(w, data)
        data[1][0][0, 0] += 100.0  # the same array objects, new contents
        after = round_(w, data)
    with fedc.backend("reference"):
        expected = round_(w, data)
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, expected, rtol=1e-6)


def test_clients_of_every_length_run_their_own_batches_in_order():
    sizes = [[4] * k + ([3] if k % 2 else []) for k in range(7)]  # 0 to 6 full batches, some with a tail
    data = clients(3, sizes)
    w = np.arange(3, dtype=F32)
    with fedc.backend("tf"):
        ours = round_(w, data)
    with fedc.backend("reference"):
        expected = round_(w, data)
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)


def test_a_reduce_behind_repeat_runs_every_epoch():
    @fedc.tf_computation(DATA, WEIGHTS)
    def epochs(dataset, w):
        return dataset.repeat(3).reduce(w, lambda w, batch: 0.5 * w + 0.5 * tf.reduce_mean(batch, axis=0))

    @fedc.federated_computation(fedc.FederatedType(DATA, fedc.CLIENTS), fedc.FederatedType(WEIGHTS, fedc.SERVER))
    def run(datasets, w):
        return fedc.federated_map(epochs, (datasets, fedc.federated_broadcast(w)))

    data = clients(4, [[4, 2], [1], [4, 2]])
    w = np.ones(3, F32)
    with fedc.backend("tf"):
        ours = run(data, w)
    with fedc.backend("reference"):
        expected = run(data, w)
    for a, b in zip(ours, expected):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_reduce_whose_start_depends_on_no_client_counts_each_clients_batches():
    @fedc.tf_computation(DATA)
    def batches(dataset):
        return dataset.reduce(np.int32(0), lambda n, batch: n + 1)  # no captured value, a constant start

    @fedc.federated_computation(fedc.FederatedType(DATA, fedc.CLIENTS))
    def counts(datasets):
        return fedc.federated_map(batches, datasets)

    data = clients(3, [[4] * k for k in (1, 3, 2, 3)])
    with fedc.backend("tf"):
        assert [int(n) for n in counts(data)] == [1, 3, 2, 3]


def test_a_dataset_used_otherwise_runs_client_by_client_with_the_same_result():
    @fedc.tf_computation(DATA)
    def doubled_total(dataset):
        return dataset.map(lambda b: 2.0 * b).reduce(tf.constant(0.0), lambda s, b: s + tf.reduce_sum(b))

    @fedc.federated_computation(fedc.FederatedType(DATA, fedc.CLIENTS))
    def run(datasets):
        return fedc.federated_sum(fedc.federated_map(doubled_total, datasets))

    data = clients(5, [[2, 1], [3]])
    with fedc.backend("tf"):
        ours = run(data)
    assert ours == pytest.approx(2.0 * sum(float(np.sum(b)) for c in data for b in c), rel=1e-5)


def test_a_computation_returning_a_dataset_runs_eagerly():
    @fedc.tf_computation(fedc.TensorType(np.int64))
    def count_to(n):
        return tf.data.Dataset.range(n)

    with fedc.backend("tf"):
        assert [int(v) for v in count_to(4)] == [0, 1, 2, 3]


def test_an_executable_keeps_a_bounded_number_of_traces(monkeypatch):
    import fedc.backends.tf as tf_backend

    monkeypatch.setattr(tf_backend, "MAX_TRACES", 2)

    @fedc.federated_computation(fedc.FederatedType(WEIGHTS, fedc.SERVER), fedc.FederatedType(DATA, fedc.CLIENTS))
    def again(w, datasets):
        return fedc.federated_mean(fedc.federated_map(local_steps, (datasets, fedc.federated_broadcast(w))))

    w = np.zeros(3, F32)
    with fedc.backend("tf"):
        for n in range(1, 5):
            again(w, clients(n, [[n]]))
        assert executable(again).traces == 2
        np.testing.assert_allclose(again(w, clients(1, [[1]])), again(w, clients(1, [[1]])))


# ----------------------------------------------------------------------
# Large clients' arrays are read in place (DLPack), never copied in, never aliased out

BIG = 1 << 18  # clients: 1 MiB of float32, the size from which an array is shared


def at_offset(values: np.ndarray, offset: int) -> np.ndarray:
    """A copy of ``values`` starting ``offset`` bytes past a 64-byte boundary."""
    buffer = np.empty(values.nbytes + 128, np.uint8)
    start = (-buffer.ctypes.data) % 64 + offset
    out = buffer[start:start + values.nbytes].view(values.dtype).reshape(values.shape)
    out[...] = values
    assert out.ctypes.data % 64 == offset
    return out


def over_clients(member):
    t = fedc.FederatedType(member, fedc.CLIENTS)

    @fedc.federated_computation(t)
    def mean(x):
        return fedc.federated_mean(x)

    @fedc.federated_computation(t)
    def total(x):
        return fedc.federated_sum(x)

    @fedc.federated_computation(t)
    def mean_of_squares(x):
        return fedc.federated_mean(fedc.federated_map(lambda v: v * v, x))

    @fedc.federated_computation(t)
    def largest(x):
        return fedc.federated_max(x)

    @fedc.federated_computation(t)
    def same(x):
        return x

    @fedc.federated_computation(t)
    def paired(x):
        return fedc.federated_zip((x, fedc.federated_map(lambda v: v + v, x)))

    return {"mean": mean, "total": total, "mean_of_squares": mean_of_squares, "largest": largest, "same": same,
            "paired": paired}


SCALARS, ROWS_OF_3, ROWS_OF_16 = (F32, (BIG,)), (fedc.TensorType(F32, [3]), (BIG, 3)), (fedc.TensorType(F32, [16]), (BIG // 8, 16))
LARGE_CASES = {  # id: (member type, array shape, offset, how many of its clients TensorFlow reads in place)
    "scalars-aligned": (*SCALARS, 0, BIG),
    "scalars-16": (*SCALARS, 16, BIG - 12),
    "scalars-4": (*SCALARS, 4, BIG - 15),
    "rows-of-3-48": (*ROWS_OF_3, 48, BIG - 12),
    "rows-of-16-16": (*ROWS_OF_16, 16, 0),  # no row starts on a 64-byte boundary: copied
}


@pytest.mark.parametrize("member, shape, offset, shared", LARGE_CASES.values(), ids=LARGE_CASES.keys())
def test_a_large_array_shared_with_tensorflow_gives_the_oracles_results(member, shape, offset, shared):
    from fedc.backends.tf.values import Shared, ingest

    values = at_offset(np.random.default_rng(offset).normal(3.0, 2.0, size=shape).astype(F32), offset)
    t = fedc.FederatedType(member, fedc.CLIENTS)
    flat = []
    ingest(fedc.values.from_python(values, t, "x"), t, flat)
    assert sum(item.shape[0] for item in flat if isinstance(item, Shared)) == shared
    for name, computation in over_clients(member).items():
        with fedc.backend("reference"):
            expected = computation(values)
        with fedc.backend("tf"):
            got = computation(values)
        # A client's pair of values (``paired``) stacks into one more axis.
        np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-4, err_msg=name)


def test_a_result_never_shares_memory_with_the_argument():
    values = at_offset(np.arange(BIG, dtype=F32), 0)
    with fedc.backend("tf"):
        back = np.asarray(over_clients(F32)["same"](values))
    assert np.array_equal(back, values)
    assert not np.may_share_memory(back, values)
    back[0] = -1.0
    assert values[0] == 0.0


def test_an_array_read_in_place_is_read_again_on_the_next_call():
    values = at_offset(np.ones(BIG, F32), 16)
    mean = over_clients(F32)["mean"]
    with fedc.backend("tf"):
        assert mean(values) == 1.0
        values[:] = 3.0  # the same array, changed in place
        assert mean(values) == 3.0


def test_a_read_only_array_is_copied_not_shared():
    values = at_offset(np.arange(BIG, dtype=F32), 0)
    values.flags.writeable = False  # e.g. a ClientData's own arrays, or np.load(mmap_mode="r")
    with fedc.backend("tf"):
        assert over_clients(F32)["mean"](values) == pytest.approx(float(np.mean(values.astype(np.float64))), rel=1e-5)


def test_integer_sums_of_a_shared_array_stay_exact_and_checked():
    @fedc.federated_computation(fedc.FederatedType(np.int32, fedc.CLIENTS))
    def total(x):
        return fedc.federated_sum(x)

    values = at_offset(np.full(BIG, 8191, np.int32), 16)
    with fedc.backend("tf"):
        assert total(values) == 8191 * BIG
        values[:] = 2**30
        with pytest.raises(fedc.FedcError, match="overflow"):
            total(values)


def test_without_tensorflow_the_tf_backend_says_what_to_install():
    import subprocess
    import sys

    program = ("import sys; sys.modules['tensorflow'] = None\n"
               "import fedc\n"
               "try:\n"
               "    fedc.backends.base.get_backend('tf')\n"
               "except fedc.FedcError as e:\n"
               "    print(e)\n")
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "the tf backend needs TensorFlow, which is not installed" in out.stdout
    assert "pip install tensorflow-cpu" in out.stdout and "--backend reference" in out.stdout


def test_frozen_clients_are_grouped_once_and_others_every_call():
    from fedc.backends.tf.values import ingest
    from fedc.values import Clients, freeze

    element = fedc.TensorType(np.float32, [2])
    t = fedc.FederatedType(fedc.SequenceType(element), fedc.CLIENTS)
    items = [[np.ones(2, np.float32) * k, np.zeros(2, np.float32)] for k in range(3)]
    frozen = freeze(Clients.from_items(items))
    assert frozen.frozen and not items[1][0].flags.writeable
    first, again = [], []
    assert ingest(frozen, t, first) == ingest(frozen, t, again)
    assert len(first) == len(again) and all(a is b for a, b in zip(first, again))  # the same pieces, not regrouped
    loose = Clients.from_items([[np.ones(2, np.float32)]])
    one, two = [], []
    ingest(loose, t, one), ingest(loose, t, two)
    assert one[0] is not two[0]
