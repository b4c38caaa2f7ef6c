"""Running fuzz cases in a worker process, with a timeout each, and recording what escaped.

A *case* is a plain dict that a generator (:mod:`fuzz.kinds`) makes from a
seeded ``random.Random``:

``kind``     the generator that made it (``fed``, ``ir``, ``proto``, ``ladder``, …)
``action``   what the worker does with it (see :mod:`fuzz.actions`)
``files``    ``{relative path: bytes}`` written into the case's sandbox folder
``main``     the file the action loads
``argv``     for the ``cli`` action: the arguments of ``fedc``; ``stdin`` its input
``outputs``  files the case asks fedc to write (any other write is a finding)
``note``     how the input was made (the mutations applied), for the reproducer

:class:`Worker` runs cases in a subprocess (:mod:`fuzz.worker`); a case that
does not answer within its timeout is a ``hang`` and one that ends the
process is a ``crash``; the worker is then restarted. :func:`save` writes a
case that escaped into a folder of its own, with the files, the command to
reproduce it and what happened.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import select
import shlex
import signal
import struct
import subprocess
import sys
import tempfile
import time
from typing import Iterable, Iterator, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

#: The outcomes that keep fedc's promise, and those that break it.
KEPT = ("ok", "error")
BROKEN = ("escape", "file", "roundtrip", "hang", "crash", "harness")

#: How long a worker may take to start (it imports TensorFlow).
START_TIMEOUT = 180.0


class Worker:
    """A :mod:`fuzz.worker` subprocess, restarted after a case hangs or crashes it."""

    def __init__(self, tensorflow: bool = True):
        self.tensorflow = tensorflow
        self.process: Optional[subprocess.Popen] = None
        self.log_path = os.path.join(tempfile.gettempdir(), f"fedc-fuzz-worker-{os.getpid()}-{id(self)}.log")
        self.starts = 0

    def _start(self) -> None:
        log = open(self.log_path, "ab")
        command = [sys.executable, os.path.join(HERE, "worker.py")]
        if not self.tensorflow:
            command.append("--no-tensorflow")
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONHASHSEED="0", PYTHONDONTWRITEBYTECODE="1")
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, cwd=REPO, env=env,
            start_new_session=True,
        )
        log.close()
        self.starts += 1
        ready = self._receive(START_TIMEOUT)
        if not isinstance(ready, dict) or not ready.get("ready"):
            tail = self.log_tail()
            self.stop()
            raise RuntimeError(f"the fuzz worker did not start: {ready!r}\n{tail}")

    def log_tail(self, size: int = 4000) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - size))
                return f.read().decode("utf-8", "backslashreplace")
        except OSError:
            return ""

    def _receive(self, timeout: float):
        """The next message, or ``"hang"`` after ``timeout`` seconds, or ``"crash"`` if the worker ended."""
        stream = self.process.stdout
        deadline = time.monotonic() + timeout
        data = bytearray()
        size = None
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return "hang"
            readable, _, _ = select.select([stream], [], [], left)
            if not readable:
                return "hang"
            chunk = os.read(stream.fileno(), 1 << 20)
            if not chunk:
                return "crash"
            data += chunk
            if size is None and len(data) >= 8:
                (size,) = struct.unpack("<Q", data[:8])
                del data[:8]
            if size is not None and len(data) >= size:
                return pickle.loads(bytes(data[:size]))

    def run(self, case: dict, timeout: float) -> dict:
        if self.process is None or self.process.poll() is not None:
            self._start()
        with open(self.log_path, "r+b") as f:
            f.truncate(0)
        message = pickle.dumps(case, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            self.process.stdin.write(struct.pack("<Q", len(message)) + message)
            self.process.stdin.flush()
        except BrokenPipeError:
            return self._died("the worker was gone before the case was sent")
        result = self._receive(timeout)
        if result == "hang":
            self.stop()
            return {"outcome": "hang", "detail": f"no answer within {timeout:g} s", "seconds": timeout}
        if result == "crash":
            return self._died("the worker process ended during the case")
        return result

    def _died(self, what: str) -> dict:
        try:
            code = self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.stop()
            code = None
        tail = self.log_tail()
        self.process = None
        if code == 2 and "stuck in native code" in tail:
            # fedc run --timeout ended the process on purpose, with its user-error status.
            return {"outcome": "error", "status": 2, "detail": tail.strip().splitlines()[-1][:300]}
        name = ""
        if code is not None and code < 0:
            try:
                name = f" ({signal.Signals(-code).name})"
            except ValueError:
                pass
        return {"outcome": "crash", "detail": f"{what}: exit status {code}{name}", "stderr": tail}

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass
        self.process = None

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                self.process.stdin.close()
                self.process.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.stop()
        try:
            os.unlink(self.log_path)
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def run_cases(worker: Worker, cases: Iterable[dict], timeout: float) -> Iterator[tuple[dict, dict]]:
    for case in cases:
        yield case, worker.run(case, case.get("timeout", timeout))


# --------------------------------------------------------------------------
# Reproducers


def reproduce_command(case: dict) -> str:
    """How to feed the case to fedc again: a ``fedc`` command where there is one, and the replay script."""
    replay = "tests/fuzz/replay.py <this folder>"
    if case["action"] == "cli":
        command = "fedc " + " ".join(shlex.quote(a) for a in case["argv"])
        if case.get("stdin"):
            command += " < stdin.bin"
        return f"{command}   (from this folder; or {replay})"
    if case["action"] == "load":
        return f"fedc check {shlex.quote(case['main'])}, then compile/opt/run it   (or {replay}, which runs the same steps)"
    return replay


def preview(data: bytes, limit: int = 1500) -> str:
    text = repr(data[:limit])
    return text + (f" ... ({len(data)} bytes)" if len(data) > limit else "")


def describe(case: dict, result: dict) -> str:
    """A failure's text: what was fed to fedc, how to feed it again, and what happened."""
    lines = [
        f"kind {case['kind']} case {case.get('index')} (seed {case.get('seed')}): {result['outcome']}"
        + (f" at {result['step']}" if result.get("step") else ""),
        f"  made by: {case.get('note', '')[:500]}",
        f"  reproduce: {reproduce_command(case)}",
        f"  what happened: {result.get('detail', '')}",
    ]
    for finding in result.get("files", ()):
        lines.append(f"  file: {finding}")
    main = case.get("main")
    for name, data in case.get("files", {}).items():
        if name == main or len(case.get("files", {})) <= 3:
            lines.append(f"  {name}: {preview(data)}")
    if case.get("recipe"):
        lines.append(f"  recipe: {json.dumps(case['recipe'])[:1500]}")
    if result.get("traceback"):
        lines.append("  traceback (tail):\n" + _indent(result["traceback"][-2500:]))
    elif result.get("stderr"):
        lines.append("  stderr (tail):\n" + _indent(result["stderr"][-1500:]))
    return "\n".join(lines)


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.rstrip().splitlines())


def case_id(case: dict) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps({k: v for k, v in case.items() if k != "files"}, sort_keys=True, default=repr).encode())
    for name, data in sorted(case.get("files", {}).items()):
        digest.update(name.encode() + b"\0" + data)
    return digest.hexdigest()[:12]


def save(case: dict, result: dict, folder: str) -> str:
    """Writes the case into ``folder/<kind>-<outcome>-<id>/``; returns that path."""
    target = os.path.join(folder, f"{case['kind']}-{result['outcome']}-{case_id(case)}")
    os.makedirs(target, exist_ok=True)
    for name, data in case.get("files", {}).items():
        path = os.path.join(target, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    if case.get("stdin"):
        with open(os.path.join(target, "stdin.bin"), "wb") as f:
            f.write(case["stdin"])
    meta = {k: v for k, v in case.items() if k not in ("files", "stdin")}
    with open(os.path.join(target, "case.json"), "w", encoding="utf-8", errors="surrogatepass") as f:
        json.dump(meta, f, indent=2, default=repr)
    with open(os.path.join(target, "result.json"), "w", encoding="utf-8", errors="backslashreplace") as f:
        json.dump(result, f, indent=2, default=repr)
    with open(os.path.join(target, "README.txt"), "w", encoding="utf-8", errors="backslashreplace") as f:
        f.write(describe(case, result) + "\n")
    return target
