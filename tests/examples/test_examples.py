"""Every example runs as a user would run it."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def run_example(name: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *args], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_fedavg_example_trains_and_prints_tff_signatures():
    out = run_example("fedavg.py")
    assert "initialize_fn: ( -> <float32[784,10],float32[10]>@SERVER)" in out
    assert "next_fn: (<server_weights=<float32[784,10],float32[10]>@SERVER,federated_dataset={<float32[?,784],int32[?,1]>*}@CLIENTS> -> <float32[784,10],float32[10]>@SERVER)" in out
    rounds = [line for line in out.splitlines() if line.startswith("round")]
    assert len(rounds) == 16
    first_loss = float(rounds[0].split("loss")[1].split()[0])
    last_loss = float(rounds[-1].split("loss")[1].split()[0])
    assert last_loss < first_loss


def test_temperature_example():
    out = run_example("temperature.py")
    assert "get_average_temperature: ({float32}@CLIENTS -> float32@SERVER)" in out
    assert "average of [68.5, 70.3, 69.8]: 69.53333" in out
    assert "add_half_on_clients: ({float32}@CLIENTS -> {float32}@CLIENTS)" in out


def test_image_classification_example_trains_with_tffs_code_and_types():
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "image_classification.py"), "--rounds", "4"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "global_model_weights=<\n    trainable=<\n      float32[784,10],\n      float32[10]\n    >," in out
    assert "client_work=<\n    learning_rate=float32\n  >," in out
    losses = [float(line.split("loss ")[1].split(",")[0]) for line in out.splitlines() if line.startswith("round")]
    assert len(losses) == 4 and losses[-1] < losses[0]
