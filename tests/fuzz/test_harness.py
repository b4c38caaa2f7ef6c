"""The fuzz tier's own checks: the worker notices each way an input can break fedc's promise.

Without these, a fuzz test that passes could mean that nothing was found or
that the harness cannot see what it looks for.
"""

import os

import pytest

from fuzz import harness


@pytest.fixture(scope="module")
def fuzz_worker():
    """A worker of its own, without TensorFlow: these tests hang and crash it on purpose."""
    with harness.Worker(tensorflow=False) as worker:
        yield worker


def selftest(mode: str, **extra) -> dict:
    return dict({"kind": "selftest", "action": "selftest", "mode": mode, "files": {}, "note": mode}, **extra)


@pytest.mark.parametrize("mode, outcome", [
    ("fedc-error", "error"),
    ("escape", "escape"),
    ("write-inside", "file"),
    ("process", "file"),
])
def test_the_worker_classifies_what_a_case_does(fuzz_worker, mode, outcome):
    result = fuzz_worker.run(selftest(mode), timeout=30)
    assert result["outcome"] == outcome, result
    if outcome == "escape":
        assert result["exception"] == "ValueError" and "Traceback" in result["traceback"]


def test_touching_files_outside_the_sandbox_is_seen(fuzz_worker, tmp_path):
    target = tmp_path / "outside.txt"
    result = fuzz_worker.run(selftest("write-outside", path=str(target)), timeout=30)
    assert result["outcome"] == "file" and any("write outside the sandbox" in f for f in result["files"]), result
    secret = tmp_path / "secret.txt"
    secret.write_text("s")
    result = fuzz_worker.run(selftest("read-outside", path=str(secret)), timeout=30)
    assert result["outcome"] == "file" and any("read outside the sandbox" in f for f in result["files"]), result
    # A write the case asked for (an output) is not a finding.
    result = fuzz_worker.run(selftest("write-outside", path=str(target), outputs=[str(target)]), timeout=30)
    assert result["outcome"] == "ok", result


def test_a_hang_and_a_crash_are_seen_and_the_worker_comes_back(fuzz_worker):
    assert fuzz_worker.run(selftest("hang"), timeout=2)["outcome"] == "hang"
    crashed = fuzz_worker.run(selftest("crash"), timeout=60)
    assert crashed["outcome"] == "crash" and "SIGABRT" in crashed["detail"], crashed
    assert fuzz_worker.run(selftest("fedc-error"), timeout=120)["outcome"] == "error"


def test_a_failure_is_saved_with_what_reproduces_it(tmp_path):
    case = {"kind": "fed", "action": "load", "main": "case.fed", "files": {"case.fed": b"local f(x: \xff"},
            "note": "a byte that is not UTF-8", "seed": 1, "index": 2}
    result = {"outcome": "escape", "step": "load", "detail": "ValueError: boom", "traceback": "Traceback ...\nValueError: boom"}
    folder = harness.save(case, result, str(tmp_path))
    assert open(os.path.join(folder, "case.fed"), "rb").read() == b"local f(x: \xff"
    readme = open(os.path.join(folder, "README.txt")).read()
    assert "fedc check case.fed" in readme and "ValueError: boom" in readme and "not UTF-8" in readme
