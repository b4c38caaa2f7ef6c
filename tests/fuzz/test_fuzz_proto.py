"""Field-aware mutations of serialized modules: bad indices, cycles, types, sizes, strings, bytes."""

from fuzz.conftest import cases, check_cases


def test_mutated_protobuf(fuzz_worker, tmp_path):
    check_cases(fuzz_worker, cases("proto", 120), tmp_path)
