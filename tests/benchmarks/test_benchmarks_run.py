"""The benchmarks run and record what they measured (timings are never asserted)."""

import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_federated_mean_benchmark_writes_its_record(tmp_path):
    output = tmp_path / "federated_mean.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "federated_mean.py"), "--clients", "1000", "--repeats", "2", "--output", str(output)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    record = json.loads(output.read_text())
    assert record["benchmark"] == "federated_mean" and record["clients"] == 1000
    assert {"machine", "cpus", "versions"} <= set(record["environment"])
    cases = {r["case"] for r in record["results"]}
    assert "federated_mean, clients as one array" in cases
    for r in record["results"]:
        assert r["ratio_fedc_over_numpy"] > 0 and r["fedc"]["repeats"] == 2
