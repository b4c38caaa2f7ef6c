"""The package as a user installs it: light import, every folder packaged, the CLI, the examples."""

import pathlib
import subprocess
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent


def run(*args, **kwargs):
    return subprocess.run(args, capture_output=True, text=True, timeout=300, **kwargs)


def test_import_fedc_does_not_import_tensorflow_or_ray():
    code = ("import sys, fedc, fedc.ir, fedc.types; print(sorted(m for m in ('tensorflow','ray','keras','dp_accounting',"
            "'cryptography') if m in sys.modules))")
    result = run(sys.executable, "-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_every_package_folder_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    roots = {v: k for k, v in config["package-dir"].items()}
    found = set()
    for folder, name in roots.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((name, *relative)))
    assert found == listed


def test_mapped_subpackages_import_from_their_folders():
    import fedc.backends
    import fedc.grammar
    import fedc.passes

    assert pathlib.Path(fedc.grammar.__file__).parent.name == "grammar"
    assert pathlib.Path(fedc.passes.__file__).parent.name == "passes"
    assert pathlib.Path(fedc.backends.__file__).parent.name == "backends"
    assert fedc.grammar.path("types").is_file()


def test_console_script_reports_version():
    import fedc

    script = pathlib.Path(sys.executable).parent / "fedc"
    result = run(str(script), "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"fedc {fedc.__version__}"


def test_temperature_ir_example_runs():
    result = run(sys.executable, str(ROOT / "examples" / "temperature_ir.py"))
    assert result.returncode == 0, result.stderr
    assert "type: ({float32}@CLIENTS -> float32@SERVER)" in result.stdout
    assert "fed.mean(%t) : ({float32}@CLIENTS -> float32@SERVER)" in result.stdout
    assert "round trips: text ok, protobuf ok" in result.stdout
