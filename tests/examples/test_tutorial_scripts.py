"""examples/tutorials/: TFF's tutorials as scripts (only the import changed) run, learn, and print TFF's types."""

import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def run_tutorial(name: str, *args: str) -> str:
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "tutorials" / name), *args],
                            capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    # TensorFlow is imported before fedc, as TFF wrote it: its start-up lines are still dropped
    assert not [line for line in result.stderr.splitlines() if "oneDNN" in line or "cpu_feature_guard" in line
                or "absl::InitializeLog" in line], result.stderr
    return result.stdout


def test_custom_federated_algorithm_tutorial():
    out = run_tutorial("custom_federated_algorithm.py")
    lines = out.splitlines()
    for expected in [  # the tutorial's own printed text
        "{float32}@CLIENTS",
        "({float32}@CLIENTS -> float32@SERVER)",
        "(float32 -> float32)",
        "({float32}@CLIENTS -> {float32}@CLIENTS)",
        "<float32[?,784],int32[?,1]>*",
        "<float32[784,10],float32[10]>",
        "( -> <float32[784,10],float32[10]>@SERVER)",
    ]:
        assert expected in lines
    # TFF 0.87 names the parameters, as fedc does (the tutorial's text predates that).
    assert ("(<server_weights=<float32[784,10],float32[10]>@SERVER,federated_dataset={<float32[?,784],int32[?,1]>*}"
            "@CLIENTS> -> <float32[784,10],float32[10]>@SERVER)") in lines
    assert any(line.startswith("69.5333") for line in lines)
    losses = [float(x) for x in re.findall(r"loss: ([0-9.]+) - sparse_categorical_accuracy", out)]
    assert losses[0] == 2.3026  # keras.evaluate of the zero model, as in the tutorial
    assert losses[-1] < 2.25


def test_image_classification_tutorial():
    out = run_tutorial("image_classification.py", "--rounds", "3")
    assert out.splitlines()[0] == "Hello, World!"
    assert "client_work=<\n    learning_rate=float32\n  >," in out
    rounds = [line for line in out.splitlines() if line.startswith("round")]
    assert len(rounds) == 6  # three with the Keras model, three with the hand-written MnistModel
    losses = [float(re.search(r"\('loss', np\.float32\(([0-9.]+)\)\)", r).group(1)) for r in rounds]
    keras_losses, mnist_losses = losses[:3], losses[3:]
    # the metrics print as TFF's do: OrderedDicts all the way down
    assert "('client_work', OrderedDict([('train', OrderedDict([('sparse_categorical_accuracy'" in rounds[0]
    assert keras_losses[-1] < keras_losses[0] and mnist_losses[-1] < mnist_losses[0]
    assert "'sparse_categorical_accuracy'" in rounds[0] and "'accuracy'" in rounds[3]
    # build_fed_eval(MnistModel).next's type, as the tutorial prints it (a part of it)
    assert "client_data={<\n    x=float32[?,784],\n    y=int32[?,1]\n  >*}@CLIENTS" in out
    assert "current_round_metrics=<\n          num_examples=float32,\n          loss=float32," in out
    evaluations = [line for line in out.splitlines() if "('eval'," in line]
    assert len(evaluations) == 2 and all("current_round_metrics" in e for e in evaluations)
    assert "Using a while_loop" not in out


def test_api_overview_program():
    out = run_tutorial("federated_learning_api.py", "--rounds", "4")
    rounds = [line for line in out.splitlines() if line.startswith("round")]
    assert len(rounds) == 4
    assert ("(<server_model_weights=<trainable=<float32[784,10],float32[10]>,non_trainable=<>>@SERVER,"
            "federated_dataset={<x=float32[?,784],y=int32[?,1]>*}@CLIENTS> -> <eval=<sparse_categorical_accuracy="
            "float32,loss=float32,num_examples=int64,num_batches=int64>>@SERVER)") in out
    assert "evaluation on 50 clients: loss " in out


def test_blog_program():
    out = run_tutorial("image_classification_blog.py")
    lines = out.splitlines()
    losses = [float(line) for line in lines[:5]]
    assert losses[-1] < losses[0]
    assert lines[5].startswith("OrderedDict([('eval', OrderedDict([('sparse_categorical_accuracy', np.float32(")
