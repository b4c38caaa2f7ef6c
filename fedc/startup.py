"""Quiet TensorFlow start-up: no oneDNN / absl / CPU-feature lines while TensorFlow loads.

TensorFlow's C++ libraries print start-up lines while they load — lazily, on
the first use of ``tf.…`` — before any logging setting is read. Inside
:func:`quiet_tensorflow_startup`, file descriptor 2 is silenced while
``tensorflow`` and its submodules are imported, and only then; a Python
error from an import still reaches the caller as an exception. The ``fedc``
command runs inside it; a script can too::

    with fedc.quiet_tensorflow_startup():
        import tensorflow as tf
        ...
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator

__all__ = ["quiet_tensorflow_startup"]


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
            self._depth += 1
            try:
                with open(os.devnull, "w") as null:
                    os.dup2(null.fileno(), 2)
                    run(module)
            finally:
                self._depth -= 1
                os.dup2(saved, 2)
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
