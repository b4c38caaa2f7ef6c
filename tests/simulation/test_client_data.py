"""fedc.simulation.datasets: ClientData as TFF defines it, the in-memory and SQLite kinds, EMNIST's file, digits."""

import collections
import sqlite3

import numpy as np
import pytest
import tensorflow as tf

import fedc
from fedc.simulation.datasets import ClientData, SqlClientData, TestClientData, digits, emnist


def small():
    rng = np.random.default_rng(0)
    return TestClientData(collections.OrderedDict(
        (f"c{k}", collections.OrderedDict(x=rng.normal(size=(n, 3)).astype(np.float32),
                                          y=np.arange(n, dtype=np.int32) + 100 * k))
        for k, n in enumerate([4, 0, 6, 2])))


def labels(dataset):
    return [int(e["y"]) for e in dataset]


def test_a_clients_dataset_holds_its_examples_in_order():
    data = small()
    assert data.client_ids == ["c0", "c1", "c2", "c3"]
    assert labels(data.create_tf_dataset_for_client("c2")) == [200, 201, 202, 203, 204, 205]
    assert labels(data.create_tf_dataset_for_client("c1")) == []
    assert data.element_type_structure == collections.OrderedDict(
        x=tf.TensorSpec([3], tf.float32), y=tf.TensorSpec([], tf.int32))
    np.testing.assert_array_equal(data.client_arrays("c3")["y"], [300, 301])
    with pytest.raises(ValueError):
        data.client_arrays("c3")["y"][0] = 1  # the ClientData's own data is read-only


def test_the_serializable_function_runs_inside_a_graph_too():
    data = small()
    every = data.create_tf_dataset_from_all_clients()
    assert sorted(labels(every)) == sorted([0, 1, 2, 3, 200, 201, 202, 203, 204, 205, 300, 301])
    in_graph = tf.data.Dataset.from_tensor_slices(["c3", "c0"]).flat_map(data.serializable_dataset_fn)
    assert labels(in_graph) == [300, 301, 0, 1, 2, 3]


def test_seeds_shuffle_clients_reproducibly_as_tff_does():
    data = small()
    order = [labels(d)[:1] for d in data.datasets(seed=3)]
    expected = list(data.client_ids)
    np.random.RandomState(3).shuffle(expected)  # TFF's rule: the same seed, the same order
    assert order == [labels(data.create_tf_dataset_for_client(c))[:1] for c in expected]
    assert len(list(data.datasets(limit_count=2, seed=3))) == 2
    assert [labels(d) for d in data.datasets(seed=5)] == [labels(d) for d in data.datasets(seed=5)]


def test_preprocess_applies_to_every_dataset_and_in_graph():
    data = small().preprocess(lambda d: d.batch(4))
    assert data.element_type_structure["x"] == tf.TensorSpec([None, 3], tf.float32)
    assert [len(b["y"]) for b in data.create_tf_dataset_for_client("c2")] == [4, 2]
    assert sum(len(b["y"]) for b in data.create_tf_dataset_from_all_clients()) == 12


def test_from_clients_and_tf_fn_and_from_arrays():
    data = ClientData.from_clients_and_tf_fn(["a", "b"], lambda cid: tf.data.Dataset.range(3).map(
        lambda i: tf.strings.join([cid, tf.strings.as_string(i)])))
    assert [bytes(e.numpy()) for e in data.create_tf_dataset_for_client("b")] == [b"b0", b"b1", b"b2"]
    arrays = ClientData.from_arrays({"x": np.arange(6.0), "y": np.arange(6) % 2},
                                    ["u", "v", "u", "w", "v", "u"])
    assert arrays.client_ids == ["u", "v", "w"]
    np.testing.assert_array_equal(arrays.client_arrays("u")["x"], [0.0, 2.0, 5.0])


def test_train_test_client_split_holds_out_clients_with_data():
    data = small()
    train, test = ClientData.train_test_client_split(data, 2, seed=1)
    assert len(test.client_ids) == 2 and "c1" not in test.client_ids  # c1 has no examples
    assert sorted(train.client_ids + test.client_ids) == data.client_ids
    assert set(train.client_ids).isdisjoint(test.client_ids)
    assert ClientData.train_test_client_split(data, 2, seed=1)[1].client_ids == test.client_ids


def test_bad_uses_are_clear_errors():
    data = small()
    with pytest.raises(fedc.FedcValueError, match=r"'c9' is not a client of this ClientData \(4 clients"):
        data.create_tf_dataset_for_client("c9")
    with pytest.raises(fedc.FedcTypeError, match="a client id is a str, got int"):
        data.create_tf_dataset_for_client(0)
    with pytest.raises(fedc.FedcValueError, match="seed must be None, an integer in"):
        list(data.datasets(seed=-1))
    with pytest.raises(fedc.FedcValueError, match="4 test clients were asked for, but the ClientData has 4"):
        ClientData.train_test_client_split(TestClientData({"a": [1], "b": [2], "c": [3], "d": [4]}), 4)
    with pytest.raises(fedc.FedcValueError, match=r"the examples of client 'b' \(float64\[4\]\) differ from "
                                                  r"those of client 'a' \(float64\[3\]\)"):
        TestClientData({"a": np.zeros((2, 3)), "b": np.zeros((2, 4))})
    with pytest.raises(fedc.FedcValueError, match="same number of examples"):
        TestClientData({"a": {"x": np.zeros(2), "y": np.zeros(3)}})

    @fedc.tf_computation(fedc.SequenceType(np.float32))
    def a_computation(ds):
        return ds.reduce(np.float32(0), lambda a, b: a + b)

    with pytest.raises(fedc.FedcTypeError, match="not the fedc computation"):
        data.preprocess(a_computation)


# ----------------------------------------------------------------------
# TFF's SQLite dataset files, EMNIST


def example(label: int, value: float) -> bytes:
    features = {"label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
                "pixels": tf.train.Feature(float_list=tf.train.FloatList(value=[value] * 784))}
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def write_emnist_file(path, clients=("f0001_13", "f0002_07", "o'; DROP TABLE examples; --")):
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE examples (split_name TEXT, client_id TEXT, serialized_example_proto BLOB)")
    connection.execute("CREATE TABLE client_metadata (client_id TEXT, split_name TEXT, num_examples INTEGER)")
    for k, client in enumerate(clients):
        for split, count in (("digits_only_train", 3 + k), ("digits_only_test", 1)):
            for i in range(count):
                connection.execute("INSERT INTO examples VALUES (?, ?, ?)", (split, client, example(i, k / 10)))
            connection.execute("INSERT INTO client_metadata VALUES (?, ?, ?)", (client, split, count))
    connection.commit()
    connection.close()


def test_emnist_reads_tffs_file_from_the_cache_directory(tmp_path):
    write_emnist_file(tmp_path / "emnist_all.sqlite")
    train, test = emnist.load_data(cache_dir=str(tmp_path))
    assert train.client_ids == sorted(["f0001_13", "f0002_07", "o'; DROP TABLE examples; --"])
    assert train.element_type_structure == collections.OrderedDict(
        label=tf.TensorSpec([], tf.int32), pixels=tf.TensorSpec([28, 28], tf.float32))
    first = list(train.create_tf_dataset_for_client("f0002_07"))
    assert [int(e["label"]) for e in first] == [0, 1, 2, 3]
    assert float(first[0]["pixels"][0, 0]) == pytest.approx(0.1)
    hostile = list(train.create_tf_dataset_for_client("o'; DROP TABLE examples; --"))  # bound, never pasted
    assert len(hostile) == 5
    assert sum(1 for _ in train.create_tf_dataset_from_all_clients()) == 3 + 4 + 5  # in-graph: SqlDataset
    assert sum(1 for _ in test.create_tf_dataset_from_all_clients()) == 3


def test_is_cached_says_whether_load_data_needs_no_download(tmp_path):
    assert not emnist.is_cached(str(tmp_path))
    (tmp_path / "emnist_all.sqlite.lzma").write_bytes(b"")
    assert emnist.is_cached(str(tmp_path))
    other = tmp_path / "other"
    other.mkdir()
    write_emnist_file(other / "emnist_all.sqlite")
    assert emnist.is_cached(str(other))
    for call in (lambda: emnist.is_cached(3), lambda: emnist.load_data(cache_dir=3)):
        with pytest.raises(fedc.FedcTypeError, match="cache_dir is a directory's path .* got int 3"):
            call()


def test_an_in_memory_client_datas_union_knows_its_length():
    data = TestClientData({"a": np.arange(3, dtype=np.int32), "b": np.arange(4, dtype=np.int32)})
    union = data.create_tf_dataset_from_all_clients()
    assert int(union.cardinality()) == 7 and len(list(union)) == 7


def test_emnist_decompresses_the_lzma_file_on_first_use(tmp_path):
    import lzma

    write_emnist_file(tmp_path / "plain.sqlite")
    (tmp_path / "emnist_all.sqlite.lzma").write_bytes(lzma.compress((tmp_path / "plain.sqlite").read_bytes()))
    train, _ = emnist.load_data(cache_dir=str(tmp_path))
    assert len(train.client_ids) == 3
    assert (tmp_path / "emnist_all.sqlite").is_file()


def test_without_the_file_and_the_network_emnist_says_which_file_to_put_where(tmp_path, monkeypatch):
    monkeypatch.setattr(emnist, "ORIGIN", "http://127.0.0.1:9/emnist_all.sqlite.lzma")
    with pytest.raises(fedc.FedcError, match=r"emnist_all.sqlite is not in .* Put emnist_all.sqlite \(or "
                                             r"emnist_all.sqlite.lzma.*digits.load_data\(\)"):
        emnist.load_data(cache_dir=str(tmp_path))
    assert not list(tmp_path.iterdir())  # no partial file left behind


def test_a_file_without_tffs_tables_is_named(tmp_path):
    path = tmp_path / "other.sqlite"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE examples (client_id TEXT, split_name TEXT, serialized_example_proto BLOB)")
    connection.commit()
    connection.close()
    with pytest.raises(fedc.FedcValueError, match="the database has no table 'client_metadata'"):
        SqlClientData(str(path))
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(fedc.FedcValueError, match="not an SQLite database"):
        SqlClientData(str(tmp_path / "junk.sqlite"))


# ----------------------------------------------------------------------
# The offline digits


def test_digits_have_emnists_elements_and_a_seeded_non_iid_split():
    train, test = digits.load_data()
    assert train.client_ids == test.client_ids == [f"digits_{k:03d}" for k in range(50)]
    assert train.element_type_structure == emnist_structure()
    sizes = [len(train.client_arrays(c)["label"]) + len(test.client_arrays(c)["label"]) for c in train.client_ids]
    assert sum(sizes) == 1797 and min(sizes) >= 4
    pixels = train.client_arrays("digits_000")["pixels"]
    assert pixels.max() == 1.0 and pixels.min() == 0.0 and (pixels[:, :2, :] == 1.0).all()  # background margin
    # Non-IID: most clients' commonest label is far above the uniform 10%.
    shares = [np.bincount(train.client_arrays(c)["label"], minlength=10).max() / len(train.client_arrays(c)["label"])
              for c in train.client_ids]
    assert np.median(shares) > 0.3
    again, _ = digits.load_data()
    np.testing.assert_array_equal(again.client_arrays("digits_007")["label"], train.client_arrays("digits_007")["label"])
    other, _ = digits.load_data(seed=1)
    assert not all(np.array_equal(other.client_arrays(c)["label"], train.client_arrays(c)["label"])
                   for c in train.client_ids)


def emnist_structure():
    return collections.OrderedDict(label=tf.TensorSpec([], tf.int32), pixels=tf.TensorSpec([28, 28], tf.float32))


def test_digits_arguments_are_checked():
    with pytest.raises(fedc.FedcValueError, match="num_clients must be an integer in"):
        digits.load_data(num_clients=0)
    with pytest.raises(fedc.FedcValueError, match="num_clients must be an integer in"):
        digits.load_data(num_clients=True)
    with pytest.raises(fedc.FedcValueError, match="alpha must be > 0"):
        digits.load_data(alpha=0)


# ----------------------------------------------------------------------
# Sampling


def test_uniform_sampling_is_seeded_per_round_as_in_tff():
    sample = fedc.simulation.build_uniform_sampling_fn([f"c{k}" for k in range(100)], random_seed=7)
    assert sample(3, 5) == sample(3, 5)
    assert sample(3, 5) != sample(4, 5)
    assert len(set(sample(0, 100))) == 100  # without replacement
    # TFF's rule, restated: round r is drawn by RandomState(start * 16807**r mod 2**31-1), start from the seed.
    start = np.random.RandomState(7).randint(1, 2**31 - 2)
    state = np.random.RandomState(pow(16807, 3, 2**31 - 1) * start % (2**31 - 1))
    assert sample(3, 5) == [f"c{k}" for k in state.choice(100, size=5, replace=False)]
    with pytest.raises(fedc.FedcValueError, match="cannot draw 101 distinct clients from a population of 100"):
        sample(0, 101)
    assert len(fedc.simulation.build_uniform_sampling_fn(["a"], replace=True)(0, 3)) == 3


# --------------------------------------------------------------------------
# A ClientData as client data: named clients, made again where they run


def test_a_clients_dataset_says_which_client_data_made_it_for_whom():
    data = small().preprocess(lambda d: d.batch(2))
    dataset = data.create_tf_dataset_for_client("c2")
    assert dataset.__fedc_client__ == (data, "c2")
    subset = data.subset(["c3", "c0"])
    assert subset.create_tf_dataset_for_client("c3").__fedc_client__ == (data, "c3")  # a subset's are its parent's
    assert subset.__fedc_clients__() == (data, ["c3", "c0"])
    assert not hasattr(dataset.batch(1), "__fedc_client__")  # the user's own pipeline is not the ClientData's


@pytest.mark.parametrize("pipeline, repeatable", [
    (lambda d: d.batch(2), True),
    (lambda d: d.map(lambda e: e["x"] * 2.0).repeat(2).batch(3), True),
    (lambda d: d.map(lambda e: tf.random.stateless_normal([3], seed=[1, 2]) + e["x"]), True),
    (lambda d: d.shuffle(4, seed=1).batch(2), False),
    (lambda d: d.map(lambda e: tf.random.normal([3]) + e["x"]), False),
    (lambda d: d.map(lambda e: e["x"], num_parallel_calls=2, deterministic=False), False),
])
def test_a_pipeline_is_repeatable_only_without_shuffles_random_ops_or_reordering(pipeline, repeatable):
    assert small().preprocess(pipeline).__fedc_repeatable__() is repeatable


def test_a_client_data_pickles_without_its_tensorflow_caches(tmp_path):
    from ray import cloudpickle as pickle  # as Ray sends it to fedc's workers (functions by value)

    data = small()
    list(data.create_tf_dataset_from_all_clients())  # builds its in-graph table
    copy = pickle.loads(pickle.dumps(data.preprocess(lambda d: d.batch(2)).subset(["c2"])))
    assert labels(copy.create_tf_dataset_for_client("c2").unbatch()) == [200, 201, 202, 203, 204, 205]
    assert sum(1 for _ in copy.__fedc_clients__()[0].create_tf_dataset_from_all_clients().unbatch()) == 12
    write_emnist_file(tmp_path / "emnist_all.sqlite")
    train, _ = emnist.load_data(cache_dir=str(tmp_path))
    list(train.create_tf_dataset_from_all_clients())
    again = pickle.loads(pickle.dumps(train))
    assert [int(e["label"]) for e in again.create_tf_dataset_for_client("f0002_07")] == [0, 1, 2, 3]


ELEMENT = fedc.SequenceType(fedc.StructType([("x", fedc.TensorType(np.float32, [None, 3])),
                                             ("y", fedc.TensorType(np.int32, [None]))]))


@fedc.tf_computation(ELEMENT)
def _label_total(dataset):
    return dataset.reduce(np.int32(0), lambda total, batch: total + tf.reduce_sum(batch["y"]))


@fedc.federated_computation(fedc.FederatedType(ELEMENT, fedc.CLIENTS))
def label_totals(datasets):
    return fedc.federated_map(_label_total, datasets)


@pytest.mark.parametrize("backend", ["reference", "tf"])
def test_a_client_data_or_its_datasets_are_client_data_on_every_backend(backend):
    data = small().preprocess(lambda d: d.batch(3))
    expected = [sum(labels(data.create_tf_dataset_for_client(c).unbatch())) for c in data.client_ids]
    with fedc.backend(backend):
        assert [int(t) for t in label_totals(data)] == expected
        assert [int(t) for t in label_totals(data.subset(["c3", "c2"]))] == [expected[3], expected[2]]
        datasets = [data.create_tf_dataset_for_client(c) for c in data.client_ids]
        assert [int(t) for t in label_totals(datasets)] == expected
        assert [int(t) for t in label_totals(datasets[:1] + [datasets[2].map(lambda e: e)])] == [expected[0], expected[2]]


def test_a_client_data_of_other_elements_is_a_type_error_naming_both():
    data = small()  # unbatched: elements x float32[3], not batches float32[?,3]
    with pytest.raises(fedc.FedcTypeError) as caught:
        label_totals(data)
    message = str(caught.value)
    assert "argument 'datasets' of label_totals" in message and "a ClientData whose datasets are" in message
    assert "float32[3]" in message and "float32[?,3]" in message


def test_datasets_passed_again_are_not_iterated_again_unless_they_shuffle():
    data = small().preprocess(lambda d: d.batch(3))
    datasets = [data.create_tf_dataset_for_client(c) for c in data.client_ids]
    with fedc.backend("tf"):
        first = [int(t) for t in label_totals(datasets)]
        kept = datasets[2].__fedc_value__[1]
        assert all(not leaf.flags.writeable for batch in kept for leaf in batch)  # kept, and nothing may change it
        assert [int(t) for t in label_totals(datasets)] == first
        assert datasets[2].__fedc_value__[1] is kept
        shuffled = [d.shuffle(4) for d in datasets]  # the user's own pipelines: iterated each call
        assert sorted(int(t) for t in label_totals(shuffled)) == sorted(first)
        assert not hasattr(shuffled[2], "__fedc_value__")


def test_datasets_checked_in_one_call_do_not_let_a_dataset_of_other_elements_through_in_the_next():
    def dataset_fn(client_id):
        examples = tf.data.Dataset.from_tensor_slices(collections.OrderedDict(
            x=np.ones((4, 3), np.float32), y=np.arange(4, dtype=np.int32)))
        return examples if client_id == "odd" else examples.batch(3)  # "odd": unbatched elements

    data = ClientData.from_clients_and_tf_fn(["a", "b", "odd"], dataset_fn)
    good = [data.create_tf_dataset_for_client(c) for c in ("a", "b")]
    with fedc.backend("tf"):
        assert [int(t) for t in label_totals(good)] == [6, 6]
        assert all(d.__fedc_checked__ is label_totals.type_signature.parameter.member for d in good)
        with pytest.raises(fedc.FedcTypeError, match="float32\\[3\\]"):
            label_totals(good + [data.create_tf_dataset_for_client("odd")])
