"""The fedc command line: outputs (golden), exit statuses, argument files, the pass-manager flags."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from fedc import cli, ir
from fedc.ir.module import Module

TEMPERATURE_IR = """\
fedc.module @temperature {
  fedc.func @get_average_temperature(%t: {float32}@CLIENTS) -> float32@SERVER {
    %0 = fed.mean(%t) : ({float32}@CLIENTS -> float32@SERVER)
    fedc.return %0
  }
}
"""


@pytest.fixture
def temperature(tmp_path) -> pathlib.Path:
    path = tmp_path / "temperature.fedir"
    path.write_text(TEMPERATURE_IR)
    return path


def fedc(*args, capsys):
    status = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return status, out, err


def test_opt_with_verify_is_the_identity(temperature, capsys):
    status, out, err = fedc("opt", temperature, "--passes", "verify", capsys=capsys)
    assert status == 0 and err == ""
    assert out == TEMPERATURE_IR


def test_opt_reads_stdin(temperature, monkeypatch, capsys):
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO(TEMPERATURE_IR))
    status, out, _ = fedc("opt", "-", "--passes", "strip-locations", capsys=capsys)
    assert status == 0 and out == TEMPERATURE_IR


def test_print_ir_after_all_and_time_passes(temperature, capsys):
    status, out, err = fedc(
        "opt", temperature, "--passes", "verify,strip-locations", "--print-ir-after-all", "--time-passes", "--pass-statistics", capsys=capsys
    )
    assert status == 0
    assert err.count("// -----// IR Dump After verify //----- //") == 1
    assert err.count("// -----// IR Dump After strip-locations //----- //") == 1
    assert "Execution time report" in err and "Total Execution Time" in err
    assert "(computations-verified) 1" in err
    assert out == TEMPERATURE_IR


def test_print_ir_after_named_pass_and_after_change(tmp_path, capsys):
    located = tmp_path / "located.fedir"
    located.write_text(TEMPERATURE_IR.replace(
        "float32@SERVER)\n    fedc.return", 'float32@SERVER) loc("t.fed":3:5)\n    fedc.return'))
    status, _, err = fedc("opt", located, "--passes", "verify,strip-locations", "--print-ir-after-change", capsys=capsys)
    assert status == 0
    assert "IR Dump After verify " not in err and "IR Dump After strip-locations" in err
    status, _, err = fedc("opt", located, "--passes", "verify,strip-locations", "--print-ir-after", "verify", capsys=capsys)
    assert "IR Dump After verify " in err and "strip-locations //" not in err


def test_list_passes(capsys):
    status, out, _ = fedc("opt", "--list-passes", capsys=capsys)
    assert status == 0
    assert "verify" in out and "Checks every IR invariant" in out and "strip-locations" in out


def test_compile_to_protobuf_and_run_it(temperature, tmp_path, capsys):
    proto = tmp_path / "t.fedpb"
    status, _, _ = fedc("compile", temperature, "-o", proto, capsys=capsys)
    assert status == 0
    assert ir.deserialize(proto.read_bytes()) == ir.parse_module(TEMPERATURE_IR)
    args = tmp_path / "args.json"
    args.write_text(json.dumps({"t": [68.5, 70.3, 69.8]}))
    status, out, _ = fedc("run", proto, "--args", args, capsys=capsys)
    assert status == 0 and out.strip() == "69.53333"
    # The argument may also be given bare, and as an .npz keyed by paths.
    args.write_text(json.dumps([1.0, 2.0]))
    assert fedc("run", temperature, "--args", args, capsys=capsys)[1].strip() == "1.5"
    npz = tmp_path / "args.npz"
    np.savez(npz, **{"t/0": np.float32(1.0), "t/1": np.float32(4.0)})
    assert fedc("run", temperature, "--args", npz, capsys=capsys)[1].strip() == "2.5"


def test_npz_paths_rebuild_nested_lists_and_structs():
    flat = {"d/1/0/x": np.ones(2), "d/0/0/x": np.zeros(2), "d/0/1/x": np.zeros(3), "w": np.float32(1)}
    tree = cli.unflatten_paths(flat)
    assert list(tree) == ["d", "w"]
    assert len(tree["d"]) == 2 and len(tree["d"][0]) == 2 and tree["d"][1][0]["x"].tolist() == [1.0, 1.0]
    with pytest.raises(cli.FedcError, match=r"the positions under /d are \[0, 2\]"):
        cli.unflatten_paths({"d/0": np.ones(1), "d/2": np.ones(1)})


def test_user_errors_exit_2_without_traceback(temperature, tmp_path, capsys):
    status, _, err = fedc("opt", temperature, "--passes", "verfy", capsys=capsys)
    assert status == 2
    assert err.startswith("<pipeline>:1:1: error: unknown pass 'verfy'; did you mean verify?")
    assert "Traceback" not in err

    status, _, err = fedc("run", tmp_path / "missing.fed", capsys=capsys)
    assert (status, err.strip()) == (2, f"fedc run: error: {tmp_path / 'missing.fed'}: no such file")

    bad = tmp_path / "bad.fedir"
    bad.write_text(TEMPERATURE_IR.replace("fed.mean", "fed.meen"))
    status, _, err = fedc("check", bad, capsys=capsys)
    assert status == 2
    assert f"{bad}:3:10: error: unknown op 'fed.meen'" in err and "^" in err and "Traceback" not in err

    args = tmp_path / "wrong.json"
    args.write_text(json.dumps({"t": [[1.0, 2.0]]}))
    status, _, err = fedc("run", temperature, "--args", args, capsys=capsys)
    assert status == 2 and "expected float32, got" in err

    args.write_text("{not json")
    status, _, err = fedc("run", temperature, "--args", args, capsys=capsys)
    assert status == 2 and "invalid JSON" in err


def test_internal_errors_exit_1_with_the_pass_named(temperature, capsys, monkeypatch):
    from fedc.passes import manager

    def crash(module, ctx):
        """Crashes (a test stand-in for a buggy pass)."""
        raise RuntimeError("boom")

    monkeypatch.setitem(manager._REGISTRY, "crash", manager.Pass("crash", crash, crash.__doc__, {}))
    status, _, err = fedc("opt", temperature, "--passes", "verify,crash", capsys=capsys)
    assert status == 1
    assert "internal error" in err and "internal error in pass crash" in err and "RuntimeError: boom" in err
    assert "IR Dump Before crash" in err


def test_a_pass_producing_invalid_ir_is_named_with_the_ir(temperature, capsys, monkeypatch):
    from fedc.passes import manager

    def breaks(module, ctx):
        """Renames a parameter without renaming its uses."""
        node = module["get_average_temperature"]
        broken = ir.Lambda("u", node.parameter_type, node.result)
        return Module(module.name, {"get_average_temperature": broken})

    monkeypatch.setitem(manager._REGISTRY, "breaks", manager.Pass("breaks", breaks, breaks.__doc__, {}))
    status, _, err = fedc("opt", temperature, "--passes", "breaks", capsys=capsys)
    assert status == 2
    assert "the IR after pass breaks does not verify" in err and "%t" in err
    assert "IR Dump After breaks (invalid)" in err and "fedc.func @get_average_temperature(%u" in err
    # Without verification the broken IR is written out, as mlir-opt does.
    status, out, _ = fedc("opt", temperature, "--passes", "breaks", "--no-verify-each", capsys=capsys)
    assert status == 2 or "%u" in out


def test_console_script_help_version_and_status():
    script = pathlib.Path(sys.executable).parent / "fedc"
    for args in (["--help"], ["compile", "--help"], ["run", "--help"], ["opt", "--help"], ["viz", "--help"], ["check", "--help"]):
        result = subprocess.run([str(script), *args], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert "usage: fedc" in result.stdout
    result = subprocess.run([sys.executable, "-m", "fedc", "run", "nope.fed"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "no such file" in result.stderr and "Traceback" not in result.stderr
