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


#: What the suite runs on, as (test id, backend name, options): every backend, and the tf backend on one and on
#: two worker processes (Ray: a computation with client data runs as its MapReduce round, the clients sharded
#: over the workers; other computations run in-process).
CONFIGS = [(name, name, {}) for name in BACKENDS] + (
    [("tf-workers-1", "tf", {"workers": 1}), ("tf-workers-2", "tf", {"workers": 2})] if "tf" in BACKENDS else [])

#: every configuration but the oracle, for the tests that compare a backend with the oracle
CHALLENGERS = [config for config in CONFIGS if config[1] != "reference"]


@pytest.fixture(autouse=True, params=CONFIGS, ids=[config[0] for config in CONFIGS])
def backend(request):
    _, name, options = request.param
    with fedc.backend(name, **options):
        yield name


@pytest.fixture(autouse=True, scope="package")
def _stop_the_workers():
    """The suite's worker processes (and the local Ray cluster) end with it."""
    yield
    for _, name, options in CONFIGS:
        if options:
            fedc.context.get_backend(name, **options).close()
