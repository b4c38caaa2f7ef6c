"""The house's rules, read from the source: no import cycles, no private names across modules, layers.

The import graph is built with ``ast`` from every module of the package (the
folders that pyproject maps onto ``fedc``), counting imports at any depth (a
function-level import is an arrow too). The layers, lowest first, are those
of docs/architecture.md:

    errors <- types <- ir <- {passes, backends} <- api (frontends, computation, context)
           <- libraries (learning, aggregators, simulation) <- tools (cli, viz, stages, notebook)

A module may import its own layer and the layers below; ``passes`` and
``backends`` never import each other; the libraries use only the public API;
nothing imports a tool but another tool.
"""

from __future__ import annotations

import ast
import dataclasses
import pathlib
import tomllib
from typing import Optional

import networkx as nx
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

# (module name or package prefix, layer); the longest matching prefix wins.
LAYER_OF = {
    "fedc.errors": "errors",
    "fedc.limits": "errors",
    "fedc.types": "types",
    "fedc.grammar": "types",
    "fedc.ir": "ir",
    "fedc.values": "ir",
    "fedc.tensorflow_graphs": "ir",
    "fedc.tensorflow_ops": "ir",
    "fedc.passes": "passes",
    "fedc.backends": "backends",
    "fedc": "api",  # the package itself, its frontends, computation, context, ops, templates
    "fedc.learning": "libraries",
    "fedc.aggregators": "libraries",
    "fedc.simulation": "libraries",
    "fedc.privacy": "libraries",
    "fedc.cli": "tools",
    "fedc.__main__": "tools",
    "fedc.viz": "tools",
    "fedc.stages": "tools",
    "fedc.notebook": "tools",
}

# layer -> the layers it may import (besides itself).
ALLOWED = {
    "errors": set(),
    "types": {"errors"},
    "ir": {"errors", "types"},
    "passes": {"errors", "types", "ir"},
    "backends": {"errors", "types", "ir"},
    "api": {"errors", "types", "ir", "passes", "backends"},
    "libraries": {"api"},  # and only PUBLIC_API modules of it
    "tools": {"errors", "types", "ir", "passes", "backends", "api", "libraries"},
}

# What the libraries may import: the public API.
PUBLIC_API = {"fedc", "fedc.errors", "fedc.types", "fedc.templates", "fedc.ops", "fedc.ir", "fedc.passes"}


def layer(module: str) -> str:
    best = max((p for p in LAYER_OF if module == p or module.startswith(p + ".")), key=len)
    return LAYER_OF[best]


@dataclasses.dataclass(frozen=True)
class Import:
    importer: str
    target: str  # a module of the package
    name: Optional[str]  # the name taken from it (from X import name), or an attribute used on it
    line: int

    def __str__(self) -> str:
        what = f" ({self.name})" if self.name else ""
        return f"{self.importer}:{self.line} -> {self.target}{what}"


def package_modules() -> dict[str, pathlib.Path]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    roots = {package: ROOT / folder for package, folder in config["package-dir"].items()}
    modules = {}
    for package in config["packages"]:
        root_package = max((p for p in roots if package == p or package.startswith(p + ".")), key=len)
        folder = roots[root_package].joinpath(*package[len(root_package):].strip(".").split(".")) \
            if package != root_package else roots[root_package]
        for path in sorted(folder.glob("*.py")):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            modules[name] = path
    return modules


MODULES = package_modules()


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _known(name: str, modules) -> Optional[str]:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imports_in(module: str, source: str, is_package: bool = False, modules=MODULES) -> list[Import]:
    """Every import of a package module in ``source`` (the text of ``module``), at any depth."""
    tree = ast.parse(source)
    found: list[Import] = []
    aliases: dict[str, str] = {}  # local name -> module it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _known(alias.name, modules)
                if target and alias.name.startswith("fedc"):
                    found.append(Import(module, target, None, node.lineno))
                    aliases[alias.asname or alias.name] = target if alias.asname else alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, is_package, node)
            if not base.startswith("fedc"):
                continue
            for alias in node.names:
                full = f"{base}.{alias.name}"
                if full in modules:
                    found.append(Import(module, full, None, node.lineno))
                    aliases[alias.asname or alias.name] = full
                elif _known(base, modules):
                    found.append(Import(module, _known(base, modules), alias.name, node.lineno))
    # Private names reached through an imported module: ``types._to_dtype``.
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            found.append(Import(module, aliases[node.value.id], node.attr, node.lineno))
    return [i for i in found if i.target != module]


def _is_private(name: Optional[str]) -> bool:
    return bool(name) and name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def cycles(imports: list[Import]) -> list[str]:
    graph = nx.DiGraph()
    graph.add_edges_from((i.importer, i.target) for i in imports)
    found = []
    for cycle in sorted(sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1):
        members = set(cycle)
        edges = sorted({str(i) for i in imports if i.importer in members and i.target in members})
        found.append(" <-> ".join(cycle) + "\n      " + "\n      ".join(edges))
    return found


def private_uses(imports: list[Import]) -> list[str]:
    return sorted({str(i) for i in imports if _is_private(i.name)})


def layer_violations(imports: list[Import]) -> list[str]:
    broken = []
    for i in imports:
        source, target = layer(i.importer), layer(i.target)
        if source == target:
            continue
        if target not in ALLOWED[source]:
            broken.append(f"{i}: {source} may not import {target}")
        elif source == "libraries" and i.target not in PUBLIC_API:
            broken.append(f"{i}: the libraries use only the public API ({', '.join(sorted(PUBLIC_API))})")
    return sorted(set(broken))


IMPORTS = [
    i for m, path in MODULES.items() for i in imports_in(m, path.read_text(encoding="utf-8"), path.name == "__init__.py")
]


def test_the_graph_covers_the_package():
    assert {"fedc", "fedc.ir.building_blocks", "fedc.passes.manager", "fedc.backends.base"} <= set(MODULES)
    assert len(IMPORTS) > 100


def test_there_is_no_import_cycle():
    found = cycles(IMPORTS)
    assert not found, "import cycles:\n  " + "\n  ".join(found)


def test_no_private_name_is_imported_from_another_module():
    found = private_uses(IMPORTS)
    assert not found, "private names used across modules:\n  " + "\n  ".join(found)


def test_the_layers_point_down():
    found = layer_violations(IMPORTS)
    assert not found, "arrows that break the layers:\n  " + "\n  ".join(found)


@pytest.mark.parametrize("module, expected", [
    ("fedc.errors", "errors"), ("fedc.ir.verifier", "ir"), ("fedc.passes.manager", "passes"),
    ("fedc.backends.reference.interpreter", "backends"), ("fedc.frontend.tracing", "api"),
    ("fedc.context", "api"), ("fedc.viz", "tools"), ("fedc.cli", "tools"), ("fedc.learning.models", "libraries"),
])
def test_layers_are_assigned_by_longest_prefix(module, expected):
    assert layer(module) == expected


def test_each_kind_of_violation_is_caught():
    """The checks find what they are meant to, in modules written to break each rule."""
    modules = set(MODULES) | {"fedc.passes.fake", "fedc.learning.fake"}
    pass_source = (
        "from fedc.types import _to_dtype\n"
        "from fedc import types\n"
        "def f():\n"
        "    from fedc.backends import base\n"
        "    from fedc import viz\n"
        "    return types._DTYPE_NAMES\n"
    )
    found = imports_in("fedc.passes.fake", pass_source, modules=modules)
    assert private_uses(found) == [
        "fedc.passes.fake:1 -> fedc.types (_to_dtype)", "fedc.passes.fake:6 -> fedc.types (_DTYPE_NAMES)",
    ]
    assert layer_violations(found) == [
        "fedc.passes.fake:4 -> fedc.backends.base: passes may not import backends",
        "fedc.passes.fake:5 -> fedc.viz: passes may not import tools",
    ]
    library = imports_in("fedc.learning.fake", "import fedc\nfrom fedc.frontend import tracing\n", modules=modules)
    assert layer_violations(library) == [
        "fedc.learning.fake:2 -> fedc.frontend.tracing: the libraries use only the public API "
        f"({', '.join(sorted(PUBLIC_API))})",
    ]
    a = Import("fedc.a", "fedc.b", None, 1)
    b = Import("fedc.b", "fedc.a", None, 9)
    assert cycles([a, b]) == ["fedc.a <-> fedc.b\n      fedc.a:1 -> fedc.b\n      fedc.b:9 -> fedc.a"]
    # Relative imports resolve against the package.
    relative = imports_in("fedc.backends.reference.interpreter", "from .local_ops import Batched\n", modules=modules)
    assert [i.target for i in relative] == ["fedc.backends.reference.local_ops"]
