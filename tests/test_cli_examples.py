"""The examples compile, render and run through the fedc command line, as a user runs them."""

import json
import pathlib
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
FEDC = str(pathlib.Path(sys.executable).parent / "fedc")
EXAMPLES = ["temperature", "add_half", "analytics", "fedavg"]


def fedc(*args, check=True):
    result = subprocess.run([FEDC, *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_compile_temperature_golden():
    out = fedc("compile", "examples/temperature.fed").stdout
    assert out == (
        "fedc.module @temperature {\n"
        '  fedc.func @get_average_temperature(%t: {float32}@CLIENTS) -> float32@SERVER loc("examples/temperature.fed":7:1) {\n'
        '    %mean = fed.mean(%t) : ({float32}@CLIENTS -> float32@SERVER) loc("examples/temperature.fed":8:10)\n'
        "    fedc.return %mean\n"
        "  }\n"
        "}\n"
    )


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_example_checks_and_compiles_to_ir_and_protobuf(name, tmp_path):
    check = fedc("check", f"examples/{name}.fed").stdout
    assert check.startswith(f"examples/{name}.fed: ok (")
    ir_file = tmp_path / f"{name}.fedir"
    fedc("compile", f"examples/{name}.fed", "-o", ir_file)
    proto = tmp_path / f"{name}.fedpb"
    fedc("compile", ir_file, "-o", proto)
    # The textual IR and the protobuf hold the same module: recompiling either gives the same text.
    assert fedc("compile", proto).stdout == ir_file.read_text()


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_example_renders_as_svg(name, tmp_path):
    svg = tmp_path / f"{name}.svg"
    fedc("viz", f"examples/{name}.fed", "-o", svg)
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg")
    text = svg.read_text()
    assert "federated_" in text and ("CLIENTS" in text or "SERVER" in text)


def test_viz_picture_names_the_intrinsics_and_placements(tmp_path):
    svg = tmp_path / "fedavg.svg"
    fedc("viz", "examples/fedavg.fed", "--entry", "next", "-o", svg)
    text = svg.read_text()
    for word in ("federated_broadcast", "federated_map", "federated_mean", "CLIENTS", "SERVER"):
        assert word in text
    png = tmp_path / "t.png"
    fedc("compile", "examples/temperature.fed", "--emit", "png", "-o", png)
    assert png.read_bytes().startswith(b"\x89PNG")
    dot = fedc("compile", "examples/temperature.fed", "--emit", "dot").stdout
    assert dot.startswith("digraph") and "federated_mean" in dot


def test_run_temperature_add_half_and_analytics(tmp_path):
    readings = tmp_path / "readings.json"
    readings.write_text(json.dumps({"t": [68.5, 70.3, 69.8]}))
    assert fedc("run", "examples/temperature.fed", "--args", readings).stdout == "69.53333\n"

    values = tmp_path / "x.json"
    values.write_text(json.dumps({"x": [1.0, 2.0, 3.5]}))
    out = fedc("run", "examples/add_half.fed", "--entry", "add_half_on_clients", "--args", values).stdout
    assert out == "[1.5, 2.5, 4.0]\n"

    data = tmp_path / "analytics.json"
    data.write_text(json.dumps({"values": [3.0, 12.0, 15.0, 47.0, 49.0, 60.0], "bounds": {"low": 0.0, "high": 50.0}}))
    out = fedc("run", "examples/analytics.fed", "--entry", "summary", "--args", data).stdout
    assert "count: 6" in out and "max: 60.0" in out and "[1, 2, 0, 0, 2]" in out
    mean = float(out.split("mean: ")[1].split(",")[0])
    assert mean == pytest.approx((3 + 12 + 15 + 47 + 49 + 50) / 6, rel=1e-5)


def test_run_fedavg_for_several_rounds_prints_a_falling_loss(tmp_path):
    data = tmp_path / "fedavg.npz"
    result = subprocess.run(
        [sys.executable, "examples/fedavg_data.py", "--clients", "5", "--output", str(data)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = fedc("run", "examples/fedavg.fed", "--rounds", "4", "--args", data).stdout
    rounds = [line for line in out.splitlines() if line.startswith("round")]
    assert [line.split(":")[0] for line in rounds] == ["round 1", "round 2", "round 3", "round 4"]
    losses = [float(line.split("loss ")[1]) for line in rounds]
    assert losses[-1] < losses[0]
    assert "final state: [\n  float32[784,10] (mean" in out


def test_check_reports_every_error_with_its_location(tmp_path):
    bad = tmp_path / "bad.fed"
    bad.write_text(
        "computation a(x: {int32}@CLIENTS) -> int32@SERVER {\n"
        "  return federated_mean(x)\n"
        "}\n"
        "computation b(x: {float32}@CLIENTS) -> float32@SERVER {\n"
        "  return federated_meen(x)\n"
        "}\n"
        "computation c(x: float32@SERVER) -> float32@SERVER {\n"
        "  return federated_broadcast(y)\n"
        "}\n"
    )
    result = fedc("check", bad, check=False)
    assert result.returncode == 2
    err = result.stderr
    assert "Traceback" not in err
    assert f"{bad}:2:" in err and "{int32}@CLIENTS" in err
    assert f"{bad}:5:" in err and "federated_meen" in err and "federated_mean" in err
    assert f"{bad}:8:" in err and "'y'" in err
    assert err.rstrip().endswith("3 errors")
    assert err.count("^") >= 3
