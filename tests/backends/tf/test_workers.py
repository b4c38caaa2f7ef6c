"""The tf backend on worker processes (Ray): rounds sharded over workers give the in-process results.

One local Ray cluster serves the module (started by the first test that
needs it, shut down at the end); tests that kill workers use their own
backend. Nothing here asserts timings.
"""

import collections
import os
import pathlib
import re
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import fedc
from fedc.backends.tf.sharded import ShardedRound

F = fedc.FederatedType
C, S = fedc.CLIENTS, fedc.SERVER


@pytest.fixture(scope="module")
def workers2():
    backend = fedc.context.get_backend("tf", workers=2)
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def workers1(workers2):  # started after (and so sharing) the two-worker cluster
    backend = fedc.context.get_backend("tf", workers=1)
    yield backend
    backend.close()


def executable(computation, backend):
    return fedc.context.execution_context(backend).compile(computation)


def run_on(backend, computation, *args):
    with fedc.context.installed(fedc.context.execution_context(backend)):
        return computation(*args)


def in_process(computation, *args):
    with fedc.backend("tf"):
        return computation(*args)


# --------------------------------------------------------------------------
# Options and start-up


@pytest.mark.parametrize("workers", [0, -1, True, 1.5, "2"])
def test_a_bad_workers_option_is_a_fedc_error(workers):
    with pytest.raises(fedc.FedcError, match=r"workers= is a number of worker processes \(1 or more\)"):
        fedc.context.get_backend("tf", workers=workers)


@pytest.mark.parametrize("address", ["", "  ", 7])
def test_a_bad_address_option_is_a_fedc_error(address):
    with pytest.raises(fedc.FedcError, match="address= names a Ray cluster"):
        fedc.context.get_backend("tf", address=address)


def test_an_unreachable_cluster_is_a_fedc_error_naming_it():
    program = textwrap.dedent("""
        import numpy as np, fedc
        fedc.set_default_backend("tf", address="127.0.0.1:1")
        @fedc.federated_computation(fedc.FederatedType(np.float32, fedc.CLIENTS))
        def mean(x):
            return fedc.federated_mean(x)
        try:
            mean([1.0, 2.0])
        except fedc.FedcError as e:
            print("FedcError:", e)
    """)
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "FedcError: the tf backend could not start the Ray cluster at '127.0.0.1:1': nothing answers" in \
        result.stdout
    assert result.stderr == ""


def test_workers_do_not_import_a_fedc_folder_in_the_current_directory(tmp_path):
    """Ray puts the driver's current directory on its workers' path; run from a fedc checkout, its `fedc/`
    folder (whose mapped subpackages live beside it) would shadow the installed fedc."""
    (tmp_path / "fedc").mkdir()
    (tmp_path / "fedc" / "__init__.py").write_text("raise ImportError('the fedc folder of the current directory')\n")
    example = pathlib.Path(__file__).resolve().parents[3] / "examples" / "temperature.fed"
    (tmp_path / "t.json").write_text('{"t": [68.5, 70.3, 69.8]}')
    script = pathlib.Path(sys.executable).parent / "fedc"
    result = subprocess.run([str(script), "run", str(example), "--args", "t.json", "--workers", "2"],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "69.53333" and result.stderr == ""


@pytest.mark.parametrize("address", ["localhost", "host:port", "ray://:10001"])
def test_a_malformed_address_is_a_fedc_error(address):
    with pytest.raises(fedc.FedcError, match="address= is 'auto', 'host:port' or 'ray://host:port'"):
        fedc.context.get_backend("tf", address=address)


def test_the_command_line_takes_workers_and_says_what_is_wrong_with_them(tmp_path):
    example = pathlib.Path(__file__).resolve().parents[3] / "examples" / "temperature.fed"
    readings = tmp_path / "t.json"
    readings.write_text('{"t": [68.5, 70.3, 69.8]}')
    for args, message in [(["--workers", "0"], "workers= is a number of worker processes (1 or more), not 0"),
                          (["--backend", "reference", "--workers", "2"], "backend 'reference' does not take"),
                          (["--address", "nowhere"], "address= is 'auto', 'host:port' or 'ray://host:port'"),
                          (["--on-client-error", "drop"], "on_client_error='drop' applies to rounds on workers")]:
        result = subprocess.run([sys.executable, "-m", "fedc", "run", str(example), "--args", str(readings), *args],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, result.stderr
    result = subprocess.run([sys.executable, "-m", "fedc", "run", str(example), "--args", str(readings),
                             "--workers", "2", "--on-client-error", "drop"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "69.53333", result.stderr
    assert result.stderr == ""


def test_workers_start_on_first_use_with_their_share_of_the_cpus(workers2):
    assert repr(workers2) == "<fedc backend 'tf' (workers=2)>"
    pids = workers2.cluster.worker_pids()
    assert len(set(pids)) == 2 and os.getpid() not in pids
    assert workers2.cluster.threads == [max(1, (os.cpu_count() or 1) // 2)] * 2


# --------------------------------------------------------------------------
# Computations sharded over the workers give the in-process results


@fedc.federated_computation(F(np.float32, C))
def mean(x):
    return fedc.federated_mean(x)


@fedc.federated_computation(F(np.float32, S), F(np.float32, C), F(np.float32, C))
def scaled_weighted_mean(scale, x, w):
    scaled = fedc.federated_map(fedc.tf_computation(lambda v, s: v * s), (x, fedc.federated_broadcast(scale)))
    return collections.OrderedDict(mean=fedc.federated_mean(scaled, w), total=fedc.federated_sum(w), scale=scale)


@fedc.federated_computation(F(np.int32, C))
def integer_sums(x):
    return (fedc.federated_sum(x), fedc.federated_secure_sum_bitwidth(x, 8), fedc.federated_secure_sum(x, 200),
            fedc.federated_secure_modular_sum(x, 7))


CASES = [
    (mean, (np.linspace(-1, 1, 11, dtype=np.float32),)),
    (scaled_weighted_mean, (np.float32(2.0), np.arange(9, dtype=np.float32), np.linspace(1, 2, 9, dtype=np.float32))),
    (integer_sums, (np.arange(13, dtype=np.int32) * 7,)),
]


def assert_same(a, b, exact=False):
    if isinstance(a, (tuple, list)) or isinstance(a, dict):
        items_a = a.values() if isinstance(a, dict) else a
        items_b = b.values() if isinstance(b, dict) else b
        assert type(a) is type(b)
        for x, y in zip(items_a, items_b, strict=True):
            assert_same(x, y, exact)
        return
    if exact:
        np.testing.assert_array_equal(a, b)
    else:
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("computation,args", CASES, ids=[c.name for c, _ in CASES])
def test_sharded_rounds_give_the_in_process_results(workers1, workers2, computation, args):
    expected = in_process(computation, *args)
    for backend in (workers1, workers2):
        got = run_on(backend, computation, *args)
        assert_same(got, expected, exact=computation is integer_sums)
        ran = executable(computation, backend)
        assert isinstance(ran, ShardedRound)  # it did run on the workers, one shard each
        assert len(ran.last_run["shards"]) == len(backend.cluster.workers())
        assert [set(seconds) for seconds in ran.last_run["worker_s"]] == [{"load", "run"}] * len(ran.last_run["shards"])
        assert all(seconds["run"] > 0 for seconds in ran.last_run["worker_s"])
    # one worker or two: the same numbers (the shard sums merge in shard order)
    assert_same(run_on(workers1, computation, *args), run_on(workers2, computation, *args))


def test_fewer_clients_than_workers_and_no_clients(workers2):
    assert run_on(workers2, mean, np.array([3.0], np.float32)) == np.float32(3.0)
    assert executable(mean, workers2).last_run["shards"] == [(0, range(0, 1))]
    with pytest.raises(fedc.FedcError, match="federated_mean over zero clients has no value"):
        run_on(workers2, mean, np.zeros([0], np.float32))
    assert run_on(workers2, integer_sums, np.zeros([0], np.int32)) == (0, 0, 0, 0)


def test_what_is_not_a_round_runs_in_process(workers2):
    @fedc.federated_computation(F(np.float32, C))
    def doubled(x):  # the result stays at the clients
        return fedc.federated_map(fedc.tf_computation(lambda v: v * 2), x)

    @fedc.tf_computation(np.float32)
    def plus_one(v):
        return v + 1

    np.testing.assert_array_equal(run_on(workers2, doubled, [1.0, 2.5]), [2.0, 5.0])
    assert run_on(workers2, plus_one, 1.5) == np.float32(2.5)
    assert not isinstance(executable(doubled, workers2), ShardedRound)


def test_a_round_that_does_not_lower_runs_in_process_with_a_warning(workers2):
    @fedc.federated_computation(F(np.float32, C))
    def centred_mean(x):  # a second broadcast after the first aggregation: not one MapReduce round
        m = fedc.federated_mean(x)
        centred = fedc.federated_map(fedc.tf_computation(lambda v, c: v - c), (x, fedc.federated_broadcast(m)))
        return fedc.federated_mean(fedc.federated_map(fedc.tf_computation(lambda v: v * v), centred))

    with pytest.warns(fedc.FedcWarning, match=r"@centred_mean runs as it is on the tf backend, not as a MapReduce"):
        got = run_on(workers2, centred_mean, np.array([1.0, 2.0, 6.0], np.float32))
    np.testing.assert_allclose(got, np.var([1.0, 2.0, 6.0]), rtol=1e-6)


def test_an_out_of_range_secure_input_names_the_client_and_the_computation(workers2):
    values = np.arange(10, dtype=np.int32)
    values[7] = 300  # outside [0, 2^8)
    with pytest.raises(fedc.FedcError) as caught:
        run_on(workers2, integer_sums, values)
    message = str(caught.value)
    assert "client 7 has value 300 outside [0, 2**8)" in message
    assert "(client 7 of 10, on a worker, running @integer_sums)" in message


def test_an_overflow_of_the_clients_together_names_their_shard(workers2):
    @fedc.federated_computation(F(np.int32, C))
    def total(x):
        return fedc.federated_sum(x)

    values = np.full(10, 2**29, np.int32)  # each fits; five of them (a shard's sum) do not
    with pytest.raises(fedc.FedcError) as caught:
        run_on(workers2, total, values)
    assert "(clients 0–4 of 10, on a worker, running @total)" in str(caught.value)


@pytest.fixture(scope="module")
def dropping(workers2):
    backend = fedc.context.get_backend("tf", workers=2, on_client_error="drop")
    yield backend
    backend.close()


def test_bad_client_error_policies_are_fedc_errors():
    with pytest.raises(fedc.FedcError, match="on_client_error= is 'fail' .* or 'drop' .*, not 'skip'"):
        fedc.context.get_backend("tf", workers=2, on_client_error="skip")
    with pytest.raises(fedc.FedcError, match="on_client_error='drop' applies to rounds on workers"):
        fedc.context.get_backend("tf", on_client_error="drop")


def test_with_drop_a_failing_client_is_left_out_and_counted(dropping):
    values = np.arange(10, dtype=np.int32)
    values[7] = 300
    got = run_on(dropping, integer_sums, values)
    assert_same(got, in_process(integer_sums, np.delete(values, 7)), exact=True)
    assert dropping.last_round["computation"] == "integer_sums" and dropping.last_round["clients"] == 10
    [(position, client_id, message)] = dropping.last_round["dropped"]
    assert position == 7 and client_id is None and "outside" in message
    assert_same(run_on(dropping, integer_sums, np.delete(values, 7)), got, exact=True)
    assert dropping.last_round["dropped"] == []


def test_with_drop_a_client_whose_data_cannot_be_made_is_left_out_by_id(dropping):
    import tensorflow as tf

    from fedc.simulation.datasets import ClientData

    def dataset_fn(client_id):
        if client_id.startswith("broken"):
            raise OSError(f"no such file: {client_id}.tfrecord")
        return tf.data.Dataset.from_tensor_slices(collections.OrderedDict(
            x=np.full((3, 2), float(len(client_id)), np.float32), y=np.zeros(3, np.int32))).batch(2)

    data = ClientData.from_clients_and_tf_fn(["a", "broken_1", "bb", "ccc", "broken_2", "broken_3"], dataset_fn)
    w = np.ones(2, np.float32)
    got = run_on(dropping, datasets_round, w, data.subset(["a", "broken_1", "bb", "ccc"]))
    np.testing.assert_allclose(got, in_process(datasets_round, w, data.subset(["a", "bb", "ccc"])), rtol=1e-6)
    assert [(p, i) for p, i, _ in dropping.last_round["dropped"]] == [(1, "broken_1")]
    assert "no such file: broken_1.tfrecord" in dropping.last_round["dropped"][0][2]
    with pytest.raises(fedc.FedcError, match="every one of the 2 clients failed and was dropped"):
        run_on(dropping, datasets_round, w, data.subset(["broken_2", "broken_3"]))
    with pytest.raises(fedc.FedcError, match=r"the element type of the ClientData's datasets: making client "
                                              r"'broken_2''s dataset failed: OSError: no such file"):
        run_on(dropping, datasets_round, w, ClientData.from_clients_and_tf_fn(["broken_2", "broken_3"], dataset_fn))


def test_client_data_equal_to_the_last_calls_is_not_sent_again(workers2):
    computation, args = CASES[1]
    first = run_on(workers2, computation, *args)
    ran = executable(computation, workers2)
    again = run_on(workers2, computation, *[np.copy(a) for a in args])  # equal values, other arrays
    assert_same(again, first, exact=True)
    assert ran.last_run["shards_reused"] == 2
    changed = list(args)
    changed[1] = args[1] + 1
    got = run_on(workers2, computation, *changed)
    assert_same(got, in_process(computation, *changed))
    assert ran.last_run["shards_reused"] == 0


def test_client_data_changed_in_place_between_calls_is_sent_again(workers2):
    values = np.linspace(0, 1, 11, dtype=np.float32)
    run_on(workers2, mean, values)
    values *= 3  # the same array object, other values: the workers' copies are stale
    assert_same(run_on(workers2, mean, values), in_process(mean, values))
    assert executable(mean, workers2).last_run["shards_reused"] == 0


def test_a_restarted_worker_is_sent_its_shard_again(workers2):
    computation, args = CASES[0]
    expected = run_on(workers2, computation, *args)
    ran = executable(computation, workers2)
    victim = workers2.cluster.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    assert victim not in workers2.cluster.worker_pids()  # (waits until Ray has restarted it, empty-handed)
    assert_same(run_on(workers2, computation, *args), expected, exact=True)
    assert ran.last_run["shards_reused"] == 1 and ran.last_run["reruns"] == 0


def test_a_closed_backend_starts_again_and_its_computations_still_run():
    backend = fedc.context.get_backend("tf", workers=2)  # the module's backend, if it is running
    computation, args = CASES[1]
    expected = run_on(backend, computation, *args)
    backend.close()
    assert not backend.cluster.started
    assert_same(run_on(backend, computation, *args), expected, exact=True)  # new workers, the same executable
    assert executable(computation, backend).last_run["shards_reused"] == 0


# --------------------------------------------------------------------------
# Chunks and progress


def test_a_workers_shard_is_cut_into_chunks_by_its_size_alone():
    from fedc.backends.tf.sharded import chunked

    shards = [(0, range(0, 10)), (1, range(10, 19))]
    assert chunked(shards, clients=4, most=8) == [(0, range(0, 5)), (0, range(5, 10)), (1, range(10, 15)),
                                                  (1, range(15, 19))]
    assert chunked(shards, clients=3, most=2) == [(0, range(0, 5)), (0, range(5, 10)), (1, range(10, 15)),
                                                  (1, range(15, 19))]
    assert chunked(shards, clients=20, most=8) == shards  # small shards stay whole
    assert chunked([(1, [4, 9, 2])], clients=1, most=8) == [(1, [4]), (1, [9]), (1, [2])]  # clients by id


def test_a_round_in_chunks_gives_the_in_process_result_and_reuses_each_chunks_data(workers2, monkeypatch):
    from fedc.backends.tf import sharded

    monkeypatch.setattr(sharded, "CHUNK_CLIENTS", 3)
    values = (np.arange(20, dtype=np.int32) * 5) % 97
    got = run_on(workers2, integer_sums, values)
    assert_same(got, in_process(integer_sums, values), exact=True)
    ran = executable(integer_sums, workers2)
    assert [(w, len(p)) for w, p in ran.last_run["shards"]] == [(0, 4), (0, 3), (0, 3), (1, 4), (1, 3), (1, 3)]
    assert_same(run_on(workers2, integer_sums, values.copy()), got, exact=True)
    assert ran.last_run["shards_reused"] == 6
    values[[4, 15]] = 300  # two clients out of range, in chunks 1 and 4: the first in the round is named
    for _ in range(3):
        with pytest.raises(fedc.FedcError, match=r"\(client 4 of 20, on a worker, running @integer_sums\)"):
            run_on(workers2, integer_sums, values)


def test_round_progress_on_a_terminal_is_one_line_rewritten_then_erased(monkeypatch):
    import io

    from fedc.backends.tf import sharded

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    now = [0.0]
    stream = Terminal()
    progress = sharded.RoundProgress("@next", 1000, 2, stream=stream, clock=lambda: now[0])
    progress.update(0)
    assert stream.getvalue() == ""  # a round shorter than PROGRESS_AFTER_S says nothing
    now[0] = 1.5
    progress.update(250)
    now[0] = 1.6
    progress.update(300)  # too soon after the last line: not written
    now[0] = 2.0
    progress.update(500)
    progress.close()
    assert stream.getvalue() == ("\r@next: 250/1,000 clients done (25%) on 2 workers, 1.5 s\x1b[K"
                                 "\r@next: 500/1,000 clients done (50%) on 2 workers, 2.0 s\x1b[K\r\x1b[K")
    piped = io.StringIO()
    progress = sharded.RoundProgress("@next", 10, 1, stream=piped, clock=lambda: now[0])
    now[0] = 3.5
    progress.update(10)
    progress.close()
    assert piped.getvalue() == "@next: 10/10 clients done (100%) on 1 worker, 1.5 s\n"


@pytest.fixture(scope="module")
def showing(workers2):
    backend = fedc.context.get_backend("tf", workers=2, progress=True)
    yield backend
    backend.close()


def test_a_long_round_shows_how_many_clients_are_done(showing, monkeypatch, capsys):
    from fedc.backends.tf import sharded

    monkeypatch.setattr(sharded, "PROGRESS_AFTER_S", 0.0)
    monkeypatch.setattr(sharded, "CHUNK_CLIENTS", 2)
    values = np.linspace(0, 1, 16, dtype=np.float32)
    assert_same(run_on(showing, mean, values), in_process(mean, values))
    shown = capsys.readouterr().err.splitlines()
    assert shown and all(re.fullmatch(r"@mean: \d+/16 clients done \(\d+%\) on 2 workers, [\d.]+ s", line)
                         for line in shown), shown


def test_bad_progress_options_are_fedc_errors():
    with pytest.raises(fedc.FedcError, match="progress= is True .*, False, or None .*, not 'yes'"):
        fedc.context.get_backend("tf", workers=2, progress="yes")
    with pytest.raises(fedc.FedcError, match="progress= applies to rounds on workers"):
        fedc.context.get_backend("tf", progress=True)


def test_the_command_line_shows_progress_only_for_long_rounds(tmp_path):
    example = pathlib.Path(__file__).resolve().parents[3] / "examples" / "temperature.fed"
    (tmp_path / "t.json").write_text('{"t": [68.5, 70.3, 69.8]}')
    result = subprocess.run([sys.executable, "-m", "fedc", "run", str(example), "--args", str(tmp_path / "t.json"),
                             "--workers", "2", "--progress"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "69.53333" and result.stderr == "", result.stderr


# --------------------------------------------------------------------------
# Client data named by a ClientData: the workers make their clients' datasets, by id, and keep them

ELEMENT = fedc.StructType([("x", fedc.TensorType(np.float32, [None, 2])), ("y", fedc.TensorType(np.int32, [None]))])
WEIGHTS2 = fedc.TensorType(np.float32, [2])


def _client_data(clients=12, **preprocess):
    from fedc.simulation.datasets import TestClientData

    rng = np.random.default_rng(1)
    data = TestClientData({f"client_{i:02d}": collections.OrderedDict(
        x=rng.normal(size=(3 + i % 4, 2)).astype(np.float32), y=np.arange(3 + i % 4, dtype=np.int32))
        for i in range(clients)})
    return data.preprocess(preprocess.get("fn", lambda d: d.batch(2)))


@fedc.tf_computation(fedc.SequenceType(ELEMENT), WEIGHTS2)
def _local_steps(dataset, w):
    import tensorflow as tf

    return dataset.reduce(w, lambda w, batch: 0.5 * w + 0.5 * tf.reduce_mean(batch["x"], axis=0))


@fedc.federated_computation(F(WEIGHTS2, S), F(fedc.SequenceType(ELEMENT), C))
def datasets_round(w, datasets):
    return fedc.federated_mean(fedc.federated_map(_local_steps, (datasets, fedc.federated_broadcast(w))))


def test_sticky_shards_give_each_client_one_worker_in_the_rounds_order():
    from fedc.backends.tf.sharded import sticky_shards

    ids = tuple(f"c{i}" for i in range(50))
    shards = sticky_shards(ids, 3)
    assert sorted(p for _, positions in shards for p in positions) == list(range(50))
    assert all(positions == sorted(positions) for _, positions in shards)
    worker_of = {ids[p]: w for w, positions in shards for p in positions}
    for w, positions in sticky_shards(ids[10:30][::-1], 3):  # another round's sample, in another order
        assert all(worker_of[ids[10:30][::-1][p]] == w for p in positions)


def test_client_data_datasets_are_made_by_the_workers_by_id_and_kept(workers2):
    data = _client_data()
    datasets = [data.create_tf_dataset_for_client(c) for c in data.client_ids]
    w = np.ones(2, np.float32)
    expected = in_process(datasets_round, w, datasets)
    before = workers2.cluster.load_counts()
    np.testing.assert_allclose(run_on(workers2, datasets_round, w, datasets), expected, rtol=1e-6)
    ran = executable(datasets_round, workers2)
    assert ran.last_run["by_id"] and len(ran.last_run["shards"]) == 2
    after = workers2.cluster.load_counts()
    assert sum(a["loaded"] - b["loaded"] for a, b in zip(after, before)) <= 12  # each client once (if not kept yet)
    sample = [datasets[i] for i in (7, 2, 9)]  # a sampled round: its clients' data is already in the workers
    np.testing.assert_allclose(run_on(workers2, datasets_round, w, sample), in_process(datasets_round, w, sample),
                               rtol=1e-6)
    again = workers2.cluster.load_counts()
    assert [a["loaded"] for a in again] == [a["loaded"] for a in after]
    assert sum(a["cached"] for a in again) - sum(a["cached"] for a in after) == 3
    whole = data.subset([data.client_ids[i] for i in (7, 2, 9)])  # a ClientData itself is client data too
    np.testing.assert_allclose(run_on(workers2, datasets_round, w, whole), in_process(datasets_round, w, sample),
                               rtol=1e-6)
    assert [a["loaded"] for a in workers2.cluster.load_counts()] == [a["loaded"] for a in after]


def test_shuffled_datasets_are_not_kept_and_a_list_of_them_is_sent_as_data(workers2):
    data = _client_data(fn=lambda d: d.shuffle(8, seed=3).batch(2))
    datasets = [data.create_tf_dataset_for_client(c) for c in data.client_ids[:4]]
    w = np.ones(2, np.float32)
    run_on(workers2, datasets_round, w, datasets)
    assert not executable(datasets_round, workers2).last_run["by_id"]  # the user's own dataset objects, here
    before = workers2.cluster.load_counts()
    for _ in range(2):
        run_on(workers2, datasets_round, w, data.subset(data.client_ids[:4]))
        assert executable(datasets_round, workers2).last_run["by_id"]
    after = workers2.cluster.load_counts()
    assert sum(a["loaded"] - b["loaded"] for a, b in zip(after, before)) == 8  # made anew each round
    assert [a["kept"] for a in after] == [b["kept"] for b in before]


def test_a_client_whose_dataset_cannot_be_made_is_named(workers2):
    import tensorflow as tf

    from fedc.simulation.datasets import ClientData

    def dataset_fn(client_id):
        if client_id == "broken":
            raise OSError("no such file: broken.tfrecord")
        return tf.data.Dataset.from_tensor_slices(collections.OrderedDict(
            x=np.ones((2, 2), np.float32), y=np.zeros(2, np.int32))).batch(2)

    data = ClientData.from_clients_and_tf_fn(["a", "b", "broken", "c"], dataset_fn)
    with pytest.raises(fedc.FedcError) as caught:
        run_on(workers2, datasets_round, np.ones(2, np.float32), data)
    message = str(caught.value)
    assert "client 2 ('broken')" in message and "no such file: broken.tfrecord" in message
    assert "on a worker, running @datasets_round" in message


class _Unpicklable:
    """A ClientData's datasets' maker holding what cannot be pickled (a lock)."""

    def __init__(self):
        import threading

        self.lock = threading.Lock()

    def __call__(self, client_id):
        import tensorflow as tf

        with self.lock:
            return tf.data.Dataset.from_tensor_slices(collections.OrderedDict(
                x=np.full((3, 2), float(len(client_id)), np.float32), y=np.zeros(3, np.int32))).batch(2)


def test_a_client_data_that_cannot_be_sent_to_the_workers_is_sent_as_data_with_a_warning(workers2):
    from fedc.simulation.datasets import ClientData

    data = ClientData.from_clients_and_tf_fn(["a", "bb", "ccc"], _Unpicklable())
    w = np.ones(2, np.float32)
    with pytest.warns(fedc.FedcWarning, match="cannot be sent the ClientData"):
        got = run_on(workers2, datasets_round, w, data)
    np.testing.assert_allclose(got, in_process(datasets_round, w, data), rtol=1e-6)
    assert not executable(datasets_round, workers2).last_run["by_id"]


# --------------------------------------------------------------------------
# FedAvg: the same weights on one, two and three workers as in-process


def _fedavg():
    import keras
    import tensorflow as tf

    def model_fn():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        return fedc.learning.models.from_keras_model(
            model, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            input_spec=collections.OrderedDict(x=tf.TensorSpec([None, 4], tf.float32),
                                               y=tf.TensorSpec([None], tf.int32)))

    process = fedc.learning.algorithms.build_weighted_fed_avg(
        model_fn, client_optimizer_fn=fedc.learning.optimizers.build_sgdm(0.1))
    rng = np.random.default_rng(0)
    data = [tf.data.Dataset.from_tensor_slices(collections.OrderedDict(
        x=rng.normal(size=(5 * (1 + i % 3), 4)).astype(np.float32),
        y=rng.integers(0, 3, 5 * (1 + i % 3)).astype(np.int32))).batch(5) for i in range(7)]
    return process, data


def _train(process, data, rounds=3):
    state = process.initialize()
    for _ in range(rounds):
        state, metrics = process.next(state, data)
    return process.get_model_weights(state).trainable, metrics


@pytest.mark.slow
def test_fedavg_on_one_two_and_three_workers_gives_the_in_process_weights(workers1, workers2):
    process, data = _fedavg()
    with fedc.backend("tf"):
        expected, expected_metrics = _train(process, data)
    for backend in (workers1, workers2):
        with fedc.context.installed(fedc.context.execution_context(backend)):
            weights, metrics = _train(process, data)
        for got, want in zip(weights, expected, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
        assert metrics["client_work"]["train"]["num_examples"] == expected_metrics["client_work"]["train"][
            "num_examples"] == 65
        assert isinstance(executable(process.next, backend), ShardedRound)
    three = fedc.context.get_backend("tf", workers=3)
    try:
        with fedc.context.installed(fedc.context.execution_context(three)):
            weights, _ = _train(process, data)
        shards = [s[1] for s in executable(process.next, three).last_run["shards"]]
        assert shards == [range(0, 3), range(3, 5), range(5, 7)]
    finally:
        three.close()
    for got, want in zip(weights, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------
# Faults: a killed worker changes nothing


def test_a_worker_killed_before_a_round_changes_nothing(workers2):
    args = CASES[1][1]
    expected = run_on(workers2, scaled_weighted_mean, *args)
    victim = workers2.cluster.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    got = run_on(workers2, scaled_weighted_mean, *args)
    assert_same(got, expected, exact=True)  # bit-identical: the shard ran again from the same inputs
    assert executable(scaled_weighted_mean, workers2).last_run["reruns"] >= 1
    assert victim not in workers2.cluster.worker_pids()  # Ray restarted the worker


def test_a_worker_killed_during_a_round_changes_nothing(workers2, monkeypatch):
    process, data = _fedavg()
    with fedc.context.installed(fedc.context.execution_context(workers2)):
        expected, _ = _train(process, data, rounds=2)
        ran = executable(process.next, workers2)
        pids = workers2.cluster.worker_pids()
        submit = ShardedRound._submit
        submitted = []

        def submit_then_kill(self, worker, *rest):
            ref = submit(self, worker, *rest)
            submitted.append(ref)
            if len(submitted) == 2:  # both shards are on their way: the second worker dies under its shard
                os.kill(pids[1], signal.SIGKILL)
            return ref

        state = process.initialize()
        monkeypatch.setattr(ShardedRound, "_submit", submit_then_kill)
        state, _ = process.next(state, data)
        monkeypatch.undo()
        assert ran.last_run["reruns"] >= 1 and len(submitted) >= 3  # the second shard ran again
        state, _ = process.next(state, data)
        weights = process.get_model_weights(state).trainable
    for got, want in zip(weights, expected, strict=True):
        np.testing.assert_array_equal(got, want)  # bit-identical to the undisturbed run


# --------------------------------------------------------------------------
# Nothing outlives the program


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    found.append(int(entry))
        except OSError:
            pass
    return found


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")
def test_no_ray_or_worker_process_outlives_the_program():
    program = textwrap.dedent("""
        import numpy as np, fedc, ray
        fedc.set_default_backend("tf", workers=2)
        @fedc.federated_computation(fedc.FederatedType(np.float32, fedc.CLIENTS))
        def mean(x):
            return fedc.federated_mean(x)
        print(float(mean([1.0, 2.0, 6.0])))
        print(ray.get_runtime_context().get_node_id())
        print(*fedc.context.get_backend().cluster.worker_pids())
    """)
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    value, node, pids = result.stdout.splitlines()
    assert value == "3.0" and result.stderr == ""
    deadline = time.time() + 10
    while time.time() < deadline:
        alive = [pid for pid in map(int, pids.split()) if os.path.exists(f"/proc/{pid}")]
        alive += _processes_mentioning(node)
        if not alive:
            break
        time.sleep(0.2)
    assert not alive
