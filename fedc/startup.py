"""Quiet TensorFlow start-up: no oneDNN / absl / CPU-feature lines while TensorFlow loads.

The implementation is ``bootstrap/_fedc_tensorflow_startup.py``, a module
outside the ``fedc`` package: pip also installs a ``.pth`` file that runs it
at interpreter start, so that TensorFlow loads quietly even in programs that
import it before fedc (``FEDC_QUIET_TENSORFLOW=0`` turns that off). The
``fedc`` command runs inside :func:`quiet_tensorflow_startup`; a script can
too::

    with fedc.quiet_tensorflow_startup():
        import tensorflow as tf
        ...
"""

from _fedc_tensorflow_startup import ENVIRONMENT_SWITCH, START_UP_LINES, quiet_tensorflow_startup

__all__ = ["ENVIRONMENT_SWITCH", "START_UP_LINES", "quiet_tensorflow_startup"]
