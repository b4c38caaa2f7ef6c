"""The backend protocol, the registry of backends by entry point, and the execution context."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest

import fedc
from fedc import context
from fedc.backends import base
from fedc.backends.reference import RULES, ReferenceBackend
from fedc.errors import FedcError, UnsupportedError
from fedc.ir.mapreduce import is_map_reduce_form

CLIENT_F32 = fedc.FederatedType(np.float32, fedc.CLIENTS)
SERVER_F32 = fedc.FederatedType(np.float32, fedc.SERVER)


class CountingBackend(ReferenceBackend):
    """The reference backend under another name, counting what it is asked to build."""

    def __init__(self, label: str = "", without: frozenset = frozenset(), pipeline: str = ""):
        self.name = "counting"
        self.label = label
        self.rules = {uri: rule for uri, rule in RULES.items() if uri not in without}
        self.pipeline = pipeline
        self.built = []
        self.closed = 0

    def build(self, module, symbol):
        self.built.append((module, symbol))
        return super().build(module, symbol)

    def close(self):
        self.closed += 1


@pytest.fixture
def counting():
    made = []

    def factory(**options):
        made.append(CountingBackend(**options))
        return made[-1]

    base.register_backend("counting", factory)
    yield made
    base.unregister_backend("counting")


def _mean():
    @fedc.federated_computation(CLIENT_F32)
    def mean(x):
        return fedc.federated_mean(x)

    return mean


def test_fedc_declares_its_backends_as_entry_points():
    assert "reference" in base.available_backends()
    assert isinstance(fedc.context.get_backend("reference"), ReferenceBackend)
    assert context.get_backend().name == base.DEFAULT_BACKEND == "tf"  # the default


def test_a_computation_compiles_once_per_backend(counting):
    mean = _mean()
    with fedc.backend("counting"):
        assert mean([1.0, 3.0]) == 2.0
        assert mean([2.0, 4.0, 6.0]) == 4.0
    with fedc.backend("counting"):  # the same backend again: still compiled
        assert mean([5.0]) == 5.0
    assert len(counting) == 1 and len(counting[0].built) == 1
    # Other options make another backend, which compiles for itself.
    with fedc.backend("counting", label="another"):
        assert mean([1.0]) == 1.0
    assert len(counting) == 2 and len(counting[1].built) == 1
    assert mean([7.0]) == 7.0  # and the default backend is untouched
    assert context.execution_context(context.get_backend(base.DEFAULT_BACKEND)).is_compiled(mean)


def test_a_missing_rule_is_reported_at_compile_time_naming_the_op_and_computation(counting):
    @fedc.federated_computation(CLIENT_F32)
    def spread(x):
        return fedc.federated_max(x), fedc.federated_min(x)

    with fedc.backend("counting", without=frozenset({"federated_max", "federated_min"})) as backend:
        with pytest.raises(UnsupportedError, match=r"^the counting backend does not implement "
                                                    r"federated_max \(in @spread\), federated_min \(in @spread\)$"):
            spread([1.0, 2.0])
    assert backend.built == []  # nothing ran
    assert not backend.supports("federated_max") and backend.supports("federated_mean")


def test_a_backend_gets_the_form_its_pipeline_produces(counting):
    @fedc.federated_computation(SERVER_F32, CLIENT_F32)
    def round_(state, data):
        return fedc.federated_mean(data)

    with fedc.backend("counting", pipeline="to-mapreduce") as backend:
        with pytest.raises(FedcError):
            # The backend runs what it is given; here, a form without the round's entry symbol.
            round_(1.0, [2.0, 4.0])
    (module, symbol), = backend.built
    assert is_map_reduce_form(module)
    assert symbol == "round_" and symbol not in module


def test_unknown_backends_and_bad_factories_are_fedc_errors(counting):
    with pytest.raises(FedcError, match=r"^unknown backend 'refrence'; available backends: .*reference.* "
                                        r"\(did you mean 'reference'\?\)$"):
        fedc.set_default_backend("refrence")
    with pytest.raises(FedcError, match=r"backend 'counting' does not take the options \{'colour': 'red'\}"):
        fedc.set_default_backend("counting", colour="red")
    with pytest.raises(FedcError, match=r"backend options must be hashable values"):
        with fedc.backend("counting", rules={}):
            pass
    base.register_backend("not-a-backend", lambda: object())
    try:
        with pytest.raises(FedcError, match=r"backend 'not-a-backend' is not a fedc Backend \(its factory returned object\)"):
            with fedc.backend("not-a-backend"):
                pass
    finally:
        base.unregister_backend("not-a-backend")
    assert context.get_backend().name == base.DEFAULT_BACKEND


def test_closing_backends_calls_their_close(counting):
    with fedc.backend("counting") as backend:
        pass
    base.close_all(["counting"])
    assert backend.closed == 1
    with fedc.backend("counting") as again:  # a new instance after closing
        pass
    assert again is not backend


@pytest.fixture
def plugin_on_path(tmp_path, monkeypatch):
    """A separately 'installed' distribution declaring backends through entry points."""
    (tmp_path / "toy_backend.py").write_text(textwrap.dedent("""
        from fedc.backends.reference import RULES, ReferenceBackend

        class ToyBackend(ReferenceBackend):
            name = "toy"
            rules = {uri: rule for uri, rule in RULES.items() if uri != "federated_max"}
    """))
    info = tmp_path / "fedc_toy-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fedc-toy\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[fedc.backends]\ntoy = toy_backend:ToyBackend\nbroken = toy_backend_missing:Backend\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    base.refresh()
    yield
    base.close_all(["toy", "broken"])
    monkeypatch.delitem(sys.modules, "toy_backend", raising=False)
    monkeypatch.undo()
    base.refresh()


def test_a_separately_installed_package_adds_a_backend(plugin_on_path):
    assert {"toy", "broken", "reference"} <= set(base.available_backends())
    mean = _mean()
    with fedc.backend("toy") as toy:
        assert type(toy).__name__ == "ToyBackend"
        assert mean([1.0, 2.0]) == 1.5

        @fedc.federated_computation(CLIENT_F32)
        def biggest(x):
            return fedc.federated_max(x)

        with pytest.raises(UnsupportedError, match=r"the toy backend does not implement federated_max \(in @biggest\)"):
            biggest([1.0])
    with pytest.raises(FedcError, match=r"backend 'broken' \(toy_backend_missing:Backend\) could not be loaded: "
                                        r"No module named 'toy_backend_missing'"):
        fedc.set_default_backend("broken")


def test_the_context_stack_traces_inside_and_executes_outside():
    from fedc.frontend import tracing

    assert isinstance(context.current(), context.ExecutionContext)
    seen = []
    mean = _mean()

    @fedc.federated_computation(CLIENT_F32)
    def outer(x):
        seen.append(type(context.current()).__name__)
        return mean(x)  # a call inside a trace adds IR

    assert seen == ["Tracer"] and isinstance(context.current(), context.ExecutionContext)
    assert not tracing.is_tracing()
    assert "@mean" in outer.to_text()
    assert outer([1.0, 5.0]) == 3.0
