"""Golden tests of passes: each tests/passes/golden/**/*.fedir file runs its RUN pipeline and CHECKs the IR."""

import pathlib

import pytest

from filecheck import check, directives
from fedc import ir, passes
from fedc.errors import FedcError

GOLDEN = pathlib.Path(__file__).resolve().parent / "golden"
FILES = sorted(GOLDEN.rglob("*.fedir"))


def test_the_filecheck_helper_can_fail():
    ds = directives("// CHECK: a\n// CHECK-NEXT: c\n// CHECK-NOT: x\n// CHECK: d\n")
    check("a\nc\nd\n", ds)
    for bad in ("a\nb\nc\nd\n", "a\nc\nx\nd\n", "a\nc\n"):
        with pytest.raises(AssertionError):
            check(bad, ds)


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(GOLDEN)) for p in FILES])
def test_golden(path):
    source = path.read_text()
    ds = directives(source)
    runs = [d for d in ds if d.kind == "RUN"]
    assert len(runs) == 1, f"{path.name} needs exactly one RUN line"
    module = ir.parse_module(source, str(path))
    errors = [d for d in ds if d.kind == "ERROR"]
    if errors:
        with pytest.raises(FedcError) as info:
            passes.run(module, runs[0].text)
        for d in errors:
            assert d.text in str(info.value), f"{path.name}:{d.line}: {d.text!r} not in:\n{info.value}"
        return
    result = passes.run(module, runs[0].text).module
    check(ir.print_module(result, elide_resources=True), ds, path.name)
