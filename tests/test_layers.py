"""The layers of DESIGN.md that the analyses, the pictures and the registry rely on, checked on the imports.

Function-level imports count: a cycle hidden in a function is still a cycle.
"""

import ast
import pathlib

import fedc

ROOT = pathlib.Path(fedc.__file__).parent.parent
TOOLS = ("fedc.viz", "fedc.stages", "fedc.cli")
API = ("fedc.computation", "fedc.context", "fedc.frontend")


def imports(path: pathlib.Path) -> set:
    """Every module a file imports, at any level; relative imports resolved within fedc.passes."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                module = "fedc.passes" + (f".{module}" if module else "")
            found.add(module)
            found |= {f"{module}.{a.name}" for a in node.names}
    return found


def below(module: str, prefixes) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_the_ir_imports_no_pass_frontend_api_or_tool():
    for path in sorted((ROOT / "fedc" / "ir").glob("*.py")):
        bad = {m for m in imports(path) if below(m, TOOLS + API + ("fedc.passes", "fedc.backends"))}
        assert not bad, (path.name, bad)


def test_the_abstract_evaluator_imports_only_errors_types_and_the_ir():
    for module in imports(ROOT / "fedc" / "ir" / "abstract.py"):
        if module.startswith("fedc"):
            assert below(module, ("fedc.errors", "fedc.types", "fedc.ir")), module


def test_analyses_take_modules_not_api_objects():
    for path in sorted((ROOT / "passes").glob("*.py")):
        bad = {m for m in imports(path) if below(m, TOOLS + API)}
        assert not bad, (path.name, bad)


def test_costs_build_on_the_dataflow_not_the_other_way():
    assert not {m for m in imports(ROOT / "passes" / "dataflow.py") if below(m, ("fedc.passes.costs",))}
    assert not {m for m in imports(ROOT / "passes" / "crossings.py")
                if below(m, ("fedc.passes.costs", "fedc.passes.dataflow"))}


def test_viz_does_not_import_the_stages_tool():
    assert not {m for m in imports(ROOT / "fedc" / "viz.py") if below(m, ("fedc.stages", "fedc.cli"))}
