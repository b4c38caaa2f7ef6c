"""The backend conformance suite: every test here runs on every backend, against the same expectations.

The autouse fixture ``backend`` makes each backend the current one in turn
(``with fedc.backend(name)``); tests about one backend's own machinery live
in that backend's folder (``tests/backends/reference``, ``tests/backends/tf``).
Floats are
compared within the tolerance of docs/runtime.md (backends may sum in a
different order); everything else must be equal.
"""

import pytest

import fedc
from fedc.backends.base import available_backends

BACKENDS = [name for name in ("reference", "tf") if name in available_backends()]


#: every backend but the oracle, for the tests that compare a backend with the oracle
CHALLENGERS = [name for name in BACKENDS if name != "reference"]


@pytest.fixture(autouse=True, params=BACKENDS)
def backend(request):
    with fedc.backend(request.param):
        yield request.param
