"""Mutated .fed source and textual IR: each input loads into a module that fedc can use, or is a FedcError.

A module that loads is verified, printed and parsed back, serialized and
deserialized back (both must give the same module), optimized with a pass
pipeline and run on generated arguments (see fuzz.actions.exercise).
"""

from fuzz.conftest import cases, check_cases


def test_mutated_fed_source(fuzz_worker, tmp_path):
    check_cases(fuzz_worker, cases("fed", 250), tmp_path)


def test_mutated_textual_ir(fuzz_worker, tmp_path):
    check_cases(fuzz_worker, cases("ir", 400), tmp_path)
