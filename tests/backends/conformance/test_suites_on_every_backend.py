"""Suites written against the default backend, run here on every backend (the autouse fixture of conftest.py).

Strings (NULs, non-UTF-8 results), conversions (casts that must be refused) and
size limits are where backends most easily differ from the oracle.
"""

from test_conversions import *  # noqa: F401,F403
from test_strings import *  # noqa: F401,F403
from test_limits import small_tensors, test_the_tensor_limit_covers_what_the_interpreter_and_passes_allocate  # noqa: F401,E402
