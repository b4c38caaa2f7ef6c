"""Quiet TensorFlow start-up: no oneDNN / absl / CPU-feature lines while TensorFlow loads.

TensorFlow's C++ libraries print start-up lines while they load — lazily, on
the first use of ``tf.…`` — before any logging setting is read. Inside
:func:`quiet_tensorflow_startup`, while ``tensorflow`` and its submodules are
imported (and only then), file descriptor 2 goes through a pipe to a thread
that drops exactly those start-up lines (:data:`START_UP_LINES`) and passes
every other line on at once — so what TensorFlow prints when it fails to load
still shows — and a Python error from an import still reaches the caller as
an exception. The ``fedc``
command runs inside it; a script can too::

    with fedc.quiet_tensorflow_startup():
        import tensorflow as tf
        ...
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from typing import Iterator

__all__ = ["START_UP_LINES", "quiet_tensorflow_startup"]

#: What marks a line TensorFlow prints as it loads (absl's notice, oneDNN's, the CPU-feature guard's
#: two lines): such lines are dropped; all others pass.
START_UP_LINES = (
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    b"oneDNN custom operations are on",
    b"cpu_feature_guard.cc",
    b"To enable the following instructions:",
)


def _forward(read_end: int, target: int) -> None:
    """Copies lines from ``read_end`` to ``target`` until end of file, dropping TensorFlow's start-up lines."""
    pending = b""

    def emit(line: bytes) -> None:
        if not any(marker in line for marker in START_UP_LINES):
            try:
                os.write(target, line)
            except OSError:
                pass

    try:
        while True:
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                emit(line + b"\n")
        if pending:
            emit(pending)
    finally:
        os.close(read_end)


class _QuietImport:
    """A meta-path finder that silences file descriptor 2 while TensorFlow's modules are imported.

    Only imports of ``tensorflow`` and its submodules are silenced (the
    outermost one; nested imports run inside it), while the hook is installed.
    """

    def __init__(self):
        self._depth = 0

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow" and not name.startswith("tensorflow."):
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            if self._depth:
                return run(module)
            sys.stderr.flush()
            saved = os.dup(2)
            read_end, write_end = os.pipe()
            forwarder = threading.Thread(target=_forward, args=(read_end, saved), daemon=True,
                                         name="fedc-tensorflow-start-up")
            forwarder.start()
            self._depth += 1
            try:
                os.dup2(write_end, 2)
                os.close(write_end)
                run(module)
            finally:
                self._depth -= 1
                sys.stderr.flush()
                os.dup2(saved, 2)  # the pipe's last writer closes: the forwarder reads to its end
                forwarder.join(timeout=2)
                os.close(saved)

        spec.loader.exec_module = exec_module
        return spec


@contextlib.contextmanager
def quiet_tensorflow_startup() -> Iterator[None]:
    """Within the block, TensorFlow's modules load without printing their start-up lines (see the module)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's later C++ INFO and WARNING lines too
    hook = _QuietImport()
    sys.meta_path.insert(0, hook)
    try:
        yield
    finally:
        sys.meta_path.remove(hook)
