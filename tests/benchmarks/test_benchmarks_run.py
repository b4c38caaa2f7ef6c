"""The benchmarks run and record what they measured (timings are never asserted)."""

import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_federated_mean_benchmark_writes_its_record(tmp_path):
    output = tmp_path / "federated_mean.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "federated_mean.py"), "--clients", "1000", "--map-clients", "50",
         "--repeats", "2", "--output", str(output)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    record = json.loads(output.read_text())
    assert record["benchmark"] == "federated_mean" and record["clients"] == 1000
    assert {"machine", "cpus", "versions"} <= set(record["environment"])
    assert [b["backend"] for b in record["backends"]] == ["reference", "tf"]
    for backend in record["backends"]:
        cases = {r["case"] for r in backend["results"]}
        assert "federated_mean of 1000 clients (one array)" in cases
        assert "federated_map of a tf_computation (x + 0.5) over 50 clients" in cases
        for r in backend["results"]:
            assert r["ratio_fedc_over_baseline"] > 0 and r["fedc"]["repeats"] == 2


def test_fedavg_benchmark_checks_the_weights_and_records_each_backend(tmp_path):
    output = tmp_path / "fedavg.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "fedavg.py"), "--configs", "3x30x2", "--rounds", "2",
         "--output", str(output)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads(output.read_text())
    (config,) = record["results"]
    assert set(config["backends"]) == {"reference", "tf"}
    assert set(config["rss_alone"]) == {"plain_tf", "reference", "tf"}
    for memory in config["rss_alone"].values():
        assert 50 < memory["data_mb"] <= memory["peak_mb"] and memory["after_rounds_mb"] <= memory["peak_mb"]
    for measured in config["backends"].values():
        assert measured["max_weight_difference"] <= 1e-4
        assert len(measured["rss_mb_after_each_round"]) == 2 and measured["ratio_fedc_over_plain_tf"] > 0


def test_compiler_benchmark_records_each_stage_and_its_growth(tmp_path):
    output = tmp_path / "compiler.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "compiler.py"), "--quick", "--output", str(output)],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    record = json.loads(output.read_text())
    assert record["benchmark"] == "compiler"
    assert {"machine", "cpus", "versions"} <= set(record["environment"])
    assert record["pipeline"] == "inline,call-dominant,cse,dce,canonicalize,fuse-map-mean"
    by_shape: dict = {}
    for r in record["results"]:
        by_shape.setdefault(r["shape"], set()).add(r["stage"])
        assert len(r["sizes"]) == len(r["median_s"]) == len(record["sizes"])
        assert all(t > 0 for t in r["median_s"])
        assert r["exponent"] is None or isinstance(r["exponent"], float)
    assert set(by_shape) == {
        "let_chain", "independent", "map_chain", "nested_blocks", "nested_lambdas", "nested_structs", "traced", "traced_calls", "fed",
    }
    common = {"print", "parse", "serialize", "deserialize", "verify", "pipeline"}
    for shape, stage_names in by_shape.items():
        assert common - {"pipeline"} <= stage_names, shape
        if shape != "traced_calls":  # inline's output is quadratic in that shape's size
            assert "pipeline" in stage_names
            assert {f"pass:{p}" for p in record["pipeline"].split(",")} <= stage_names
    assert "trace" in by_shape["traced"] and "trace" in by_shape["traced_calls"] and "fed-compile" in by_shape["fed"]
    assert record["failures"] == []
