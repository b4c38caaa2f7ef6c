"""Every backend against the reference oracle: random programs, FedAvg before and after the passes, the examples.

Each test runs the same computation on the backend under test and on the
reference backend and compares: floats within the tolerance of docs/runtime.md
(rtol 1e-4 and atol 1e-5 relative to the values' scale: backends sum in different
orders), everything else exactly.
"""

import pathlib
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings

import fedc
from fedc import passes
from fedc.computation import Computation
from fedc.frontend import fed
from fedc.ir.mapreduce import as_round

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "passes"))
from equivalence import assert_close, programs, random_value, run  # noqa: E402

from conftest import CHALLENGERS  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples"


def on(backend: str, fn):
    with fedc.backend(backend):
        return fn()


@pytest.fixture(autouse=True, params=CHALLENGERS, ids=[config[0] for config in CHALLENGERS])
def backend(request):
    """Here every backend but the oracle runs, each compared with the oracle."""
    _, name, options = request.param
    with fedc.backend(name, **options):
        yield name


@settings(max_examples=25, deadline=None)
@given(programs())
def test_random_programs_agree_with_the_oracle(backend, module):
    symbol = module.symbols[-1]
    parameter = module[symbol].type_signature.parameter
    for seed in (0, 1):
        for clients in (1, 3):
            argument = random_value(parameter, np.random.default_rng(seed), clients)
            expected = on("reference", lambda: run(module, symbol, argument, clients))
            actual = run(module, symbol, argument, clients)
            assert_close(actual, expected, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------
# FedAvg, Python and .fed, before and after the passes


@pytest.fixture(scope="module")
def fedavg_py():
    sys.path.insert(0, str(EXAMPLES))
    import fedavg

    clients, _ = fedavg.make_data(seed=3, num_clients=4)
    # Clients of different lengths (a smaller last batch too), so the backends group and order them.
    clients[1] = clients[1][:3] + [(clients[1][3][0][:7], clients[1][3][1][:7])]
    return fedavg, clients


def _fedavg_rounds(next_computation, state, clients, rounds=2):
    for _ in range(rounds):
        state = next_computation(state, clients)
    return state


@pytest.mark.parametrize("pipeline", ["", "fuse-map-mean", "inline,call-dominant,lower-to-mapreduce"])
def test_fedavg_in_python_agrees_with_the_oracle(backend, fedavg_py, pipeline):
    fedavg, clients = fedavg_py
    module = fedavg.next_fn.to_ir()
    symbol = fedavg.next_fn.name
    if pipeline:
        module = passes.run(module, pipeline).module
        if "mapreduce" in pipeline:
            module, symbol = as_round(module), "round"
    computation = Computation(module, symbol)
    start = on("reference", fedavg.initialize_fn)
    if "mapreduce" in pipeline:  # the round of the MapReduce form returns <state, output>
        call = lambda s, c: computation(s, c)[0]  # noqa: E731
    else:
        call = computation
    expected = on("reference", lambda: _fedavg_rounds(call, start, clients))
    actual = _fedavg_rounds(call, start, clients)
    assert_close(actual, expected, rtol=1e-4, atol=1e-5)
    # And it trained: the weights moved.
    assert max(float(np.max(np.abs(a - b))) for a, b in zip(actual, start)) > 1e-3


@pytest.mark.parametrize("pipeline", ["", "fuse-map-mean", "insert-secure-aggregation{clip=1.0 weight-clip=1000.0 allow-insecure=true}"])
def test_fedavg_fed_agrees_with_the_oracle(backend, fedavg_py, pipeline):
    _, clients = fedavg_py
    module = fed.load(EXAMPLES / "fedavg.fed", import_externs=True)
    if pipeline:
        module = passes.run(module, pipeline).module
    initialize, next_round = Computation(module, "initialize"), Computation(module, "next")
    start = on("reference", initialize)

    def rounds():
        state = start
        losses = []
        for _ in range(2):
            out = next_round(state, clients)
            state = out["weights"]
            losses.append(out["loss"])
        return state, losses

    expected = on("reference", rounds)
    actual = rounds()
    assert_close(actual, expected, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------
# The examples, run as a user runs them


def test_fedavg_fed_example_on_the_command_line(backend, tmp_path):
    data = tmp_path / "data.npz"
    subprocess.run([sys.executable, str(EXAMPLES / "fedavg_data.py"), "--clients", "4", "--output", str(data)],
                   check=True, capture_output=True, timeout=300)
    outputs = {}
    cluster = getattr(fedc.context.get_backend(), "cluster", None)
    workers = ["--workers", str(cluster.requested_workers)] if cluster is not None else []
    for name in ("reference", backend):
        result = subprocess.run(
            [sys.executable, "-m", "fedc.cli", "run", str(EXAMPLES / "fedavg.fed"), "--rounds", "2", "--args",
             str(data), "--backend", name, *(workers if name == backend else [])],
            capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-2000:]
        outputs[name] = [line for line in result.stdout.splitlines() if "loss" in line]
    assert len(outputs[backend]) == 2
    for ours, oracle in zip(outputs[backend], outputs["reference"]):
        assert ours.split("loss")[0] == oracle.split("loss")[0]
        assert float(ours.split()[-1]) == pytest.approx(float(oracle.split()[-1]), rel=1e-4)


@pytest.mark.parametrize("name", ["temperature.fed", "analytics.fed", "add_half.fed"])
def test_fed_examples_agree_with_the_oracle(backend, name):
    module = fed.load(EXAMPLES / name, import_externs=True)
    rng = np.random.default_rng(0)
    checked = 0
    for symbol in module.symbols:
        t = module[symbol].type_signature
        if not isinstance(t, fedc.FunctionType) or t.parameter is None:
            continue
        argument = random_value(t.parameter, rng, 5)
        expected = on("reference", lambda: run(module, symbol, argument, 5))
        actual = run(module, symbol, argument, 5)
        assert_close(actual, expected, rtol=1e-4, atol=1e-4)
        checked += 1
    assert checked
