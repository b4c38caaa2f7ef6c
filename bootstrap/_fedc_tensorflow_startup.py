"""Quiet TensorFlow start-up: no oneDNN / absl / CPU-feature lines while TensorFlow loads.

TensorFlow's C++ libraries print start-up lines while they load, before any
logging setting is read (``TF_CPP_MIN_LOG_LEVEL`` does not stop them). While
``tensorflow`` and its submodules are imported, a meta-path hook sends file
descriptor 2 through a pipe to a thread that drops exactly those lines
(:data:`START_UP_LINES`) and passes every other line on at once — so what
TensorFlow prints when it fails to load still shows — and a Python error
from the import still reaches the importer as an exception.

The hook is installed two ways:

* at interpreter start, by ``fedc-tensorflow-startup.pth``, which pip puts
  next to fedc in ``site-packages``: so a program that imports TensorFlow
  *before* fedc (TFF's tutorials do) loads it quietly too. Nothing else
  changes: the hook looks only at imports named ``tensorflow…``, this module
  uses only the standard library, and ``FEDC_QUIET_TENSORFLOW=0`` in the
  environment turns it off;
* by ``fedc.quiet_tensorflow_startup()``, for the block it wraps (the
  ``fedc`` command runs inside it), when the first way is off.

This module lives outside the ``fedc`` package so that the ``.pth`` line
does not import fedc into every Python program; ``fedc.startup`` is its
public face.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from typing import Iterator

__all__ = ["START_UP_LINES", "ENVIRONMENT_SWITCH", "install_at_interpreter_start", "quiet_tensorflow_startup"]

#: What marks a line TensorFlow prints as it loads (absl's notice, oneDNN's, the CPU-feature guard's
#: two lines): such lines are dropped; all others pass.
START_UP_LINES = (
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    b"oneDNN custom operations are on",
    b"cpu_feature_guard.cc",
    b"To enable the following instructions:",
)

#: The environment variable that, set to ``0``, keeps the ``.pth`` file from installing the hook.
ENVIRONMENT_SWITCH = "FEDC_QUIET_TENSORFLOW"


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
    """A meta-path finder that filters file descriptor 2 while TensorFlow's modules are imported.

    Only imports of ``tensorflow`` and its submodules are filtered (the
    outermost one; nested imports run inside it).
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
            try:
                sys.stderr.flush()
                saved = os.dup(2)
            except (OSError, ValueError):  # no file descriptor 2 (a closed or replaced stderr): nothing to filter
                return run(module)
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


_HOOK = _QuietImport()


def install_at_interpreter_start() -> None:
    """Installs the hook for the whole program (what the ``.pth`` file runs), unless switched off."""
    if os.environ.get(ENVIRONMENT_SWITCH, "1").strip() == "0" or _HOOK in sys.meta_path:
        return
    sys.meta_path.insert(0, _HOOK)


@contextlib.contextmanager
def quiet_tensorflow_startup() -> Iterator[None]:
    """Within the block, TensorFlow's modules load without printing their start-up lines (see the module).

    Also quiets TensorFlow's later C++ INFO and WARNING lines (``TF_CPP_MIN_LOG_LEVEL=2`` unless set).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if _HOOK in sys.meta_path:  # installed for the whole program already
        yield
        return
    sys.meta_path.insert(0, _HOOK)
    try:
        yield
    finally:
        sys.meta_path.remove(_HOOK)
