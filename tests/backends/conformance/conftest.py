"""The backend conformance suite: every test here runs on every backend, against the same expectations.

The autouse fixture ``backend`` makes each backend the current one in turn
(``with fedc.backend(name)``); a test that is about one backend's own
machinery asks for it with ``only_on(backend, "reference")``. Floats are
compared within the tolerance of docs/runtime.md (backends may sum in a
different order); everything else must be equal.
"""

import pytest

import fedc
from fedc.backends.base import available_backends

BACKENDS = [name for name in ("reference", "tf") if name in available_backends()]


@pytest.fixture(autouse=True, params=BACKENDS)
def backend(request):
    with fedc.backend(request.param):
        yield request.param


def only_on(backend: str, name: str) -> None:
    """Skips the running test unless it runs on backend ``name``."""
    if backend != name:
        pytest.skip(f"about the {name} backend's own machinery")
