"""The fedc command line: outputs (golden), exit statuses, argument files, the pass-manager flags."""

import json
import pathlib
import subprocess
import sys
import uuid

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
    assert [a.tolist() for a in cli.unflatten_paths({"d/00": np.zeros(1), "d/1": np.ones(1)})["d"]] == [[0.0], [1.0]]
    with pytest.raises(cli.FedcError, match=r"the positions /d/0 and /d/00 are both 0"):
        cli.unflatten_paths({"d/0": np.ones(1), "d/00": np.ones(1)})


def _npz(path, members, compression=None):
    """An .npz written by hand: members maps a name to (.npy header dict, the bytes after the header)."""
    import io
    import zipfile

    from numpy.lib import format as npy

    with zipfile.ZipFile(path, "w", compression or zipfile.ZIP_STORED) as archive:
        for name, (header, data) in members.items():
            buffer = io.BytesIO()
            npy.write_array_header_1_0(buffer, header)
            archive.writestr(name, buffer.getvalue() + data)
    return path


def test_npz_arguments_are_checked_against_their_headers_and_the_size_limit_before_reading(tmp_path, capsys, monkeypatch):
    from fedc import limits

    program = tmp_path / "f.fed"
    program.write_text("computation f(x: float32[?]@SERVER) -> float32[?]@SERVER {\n  return x\n}\n")
    plain = {"descr": "<f4", "fortran_order": False, "shape": (3,)}
    ok = _npz(tmp_path / "ok.npz", {"x.npy": (plain, np.arange(3, dtype="<f4").tobytes())})
    assert fedc("run", program, "--args", ok, capsys=capsys)[:2] == (0, "[0., 1., 2.]\n")

    cases = {
        # a header claiming 8 TB in a 200-byte file: refused from the header, nothing allocated
        "huge": ({"x.npy": ({"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)}, b"")},
                 "member 'x.npy' claims an array of shape (1000000, 1000000) and dtype float64 "
                 "(8000000000000 bytes), but holds 0 bytes"),
        "short": ({"x.npy": (plain, b"\0" * 8)}, "member 'x.npy' claims an array of shape (3,) and dtype float32 (12 bytes), but holds 8 bytes"),
        "objects": ({"x.npy": ({"descr": "|O", "fortran_order": False, "shape": (1,)}, b"\x80\x04N.")},
                    "member 'x.npy' holds Python objects (a pickle), which fedc never loads"),
        "not_an_array": ({"x.txt": (plain, b"")}, "member 'x.txt' is not an array (.npy)"),
    }
    for name, (members, message) in cases.items():
        path = _npz(tmp_path / f"{name}.npz", members)
        status, out, err = fedc("run", program, "--args", path, capsys=capsys)
        assert (status, out) == (2, ""), name
        assert err.strip() == f"fedc run: error: {path}: {message}", name
    (tmp_path / "zip.npz").write_bytes(b"PK not a zip")
    assert "not an .npz (zip) file" in fedc("run", program, "--args", tmp_path / "zip.npz", capsys=capsys)[2]

    # The limit counts the uncompressed size the zip declares (a small file may inflate to gigabytes)
    # and, for JSON, the file's size.
    monkeypatch.setattr(limits, "MAX_ARGUMENT_BYTES", 1000)
    import zipfile

    bomb = _npz(tmp_path / "bomb.npz", {"x.npy": ({**plain, "shape": (1000,)}, bytes(4000))}, zipfile.ZIP_DEFLATED)
    assert bomb.stat().st_size < 1000
    status, _, err = fedc("run", program, "--args", bomb, capsys=capsys)
    assert status == 2 and err.strip() == (
        f"fedc run: error: {bomb}: its arrays hold 4128 bytes uncompressed, more than fedc reads "
        "(1000 bytes, fedc.limits.MAX_ARGUMENT_BYTES)"
    )
    big_json = tmp_path / "big.json"
    big_json.write_text(json.dumps([0.0] * 300))
    status, _, err = fedc("run", program, "--args", big_json, capsys=capsys)
    assert status == 2 and err.strip() == (
        f"fedc run: error: {big_json}: the argument file is {big_json.stat().st_size} bytes, more than fedc reads "
        "(1000 bytes, fedc.limits.MAX_ARGUMENT_BYTES)"
    )


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

    types_only = tmp_path / "types_only.fed"
    types_only.write_text("type T = float32\n")
    for command in (["run"], ["viz", "-o", tmp_path / "types_only.svg"]):
        status, _, err = fedc(*command, types_only, capsys=capsys)
        assert (status, err.strip()) == (2, f"fedc {command[0]}: error: module @types_only defines no computation to run or draw")


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


def test_a_run_on_tensorflow_prints_no_tensorflow_start_up_lines(tmp_path):
    args = tmp_path / "t.json"
    args.write_text('{"t": [1.0, 2.0, 4.5]}')
    example = pathlib.Path(__file__).resolve().parents[1] / "examples" / "temperature.fed"
    result = subprocess.run([sys.executable, "-m", "fedc", "run", str(example), "--args", str(args), "--backend", "tf"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2.5"
    assert result.stderr == ""  # no oneDNN / absl / CPU-feature lines


# --------------------------------------------------------------------------
# Reports (fedc compile --report) and pictures across passes (fedc viz --stages)

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"

PRIVACY_REPORT = """\
privacy report for @temperature: client values that reach the server
@get_average_temperature: 1 flow (1 plain, 0 secure)
  1. plain: t reaches the server through federated_mean
     path: t -> federated_mean
     reaches: result
total: 1 flow (1 plain, 0 secure)
"""

COST_REPORT = """\
communication cost per round for @temperature (bytes per client, from the types)
@get_average_temperature
  server -> client (broadcast): 0 bytes per client
  client -> server (upload): 4 bytes per client
    4  federated_mean : float32
"""


def _commented(text):
    return "".join(f"// {line}".rstrip() + "\n" for line in text.splitlines())


def test_report_follows_the_ir_as_comments(temperature, capsys):
    status, out, err = fedc("compile", temperature, "--report", "privacy", "--report", "cost", capsys=capsys)
    assert status == 0 and err == ""
    assert out == TEMPERATURE_IR + "\n" + _commented(PRIVACY_REPORT) + "\n" + _commented(COST_REPORT)
    # The output is still textual IR.
    assert ir.print_module(ir.parse_module(out)) == TEMPERATURE_IR
    status, same, _ = fedc("compile", temperature, "--report", "privacy,cost", capsys=capsys)
    assert same == out


def test_report_alone_on_stdout_when_the_output_is_a_file(temperature, tmp_path, capsys):
    target = tmp_path / "out.fedir"
    status, out, _ = fedc("compile", temperature, "--report", "cost", "-o", target, capsys=capsys)
    assert status == 0 and out == COST_REPORT
    assert target.read_text() == TEMPERATURE_IR
    status, out, _ = fedc("compile", temperature, "--report", "privacy", "--emit", "dot", capsys=capsys)
    assert out.startswith("digraph") and _commented(PRIVACY_REPORT) in out


def test_report_of_fedavg_after_passes(capsys):
    status, out, _ = fedc("compile", EXAMPLES / "fedavg.fed", "--passes", "verify", "--report", "privacy,cost",
                          "--entry", "next", "-o", "-", capsys=capsys)
    assert status == 0
    assert "fedavg.fed:20:1): 2 flows (2 plain, 0 secure)" in out
    assert "//   1. plain: federated_dataset reaches the server through federated_mean (%mean_client_weights)" in out
    assert "//   server -> client (broadcast): 31400 bytes per client" in out
    assert "//   client -> server (upload): 31404 bytes per client" in out
    assert "@initialize" not in out.split("// privacy report")[1]  # --entry limits the reports


def test_report_errors(temperature, capsys):
    status, _, err = fedc("compile", temperature, "--report", "privcy", capsys=capsys)
    assert status == 2
    assert err.strip() == ("fedc compile: error: unknown report 'privcy'; did you mean privacy? "
                           "(the reports are privacy, cost)")
    status, _, err = fedc("compile", temperature, "--report", "cost", "--emit", "proto", capsys=capsys)
    assert status == 2 and "give -o FILE" in err and "Traceback" not in err


def test_viz_labels_crossing_edges_with_bytes(tmp_path, capsys):
    dot = tmp_path / "next.dot"
    status, _, _ = fedc("viz", EXAMPLES / "fedavg.fed", "--entry", "next", "-o", dot, capsys=capsys)
    assert status == 0
    text = dot.read_text()
    assert "↓ 31400 B per client" in text and "↑ 4 B per client" in text
    status, _, _ = fedc("viz", EXAMPLES / "fedavg.fed", "--entry", "next", "--no-costs", "-o", dot, capsys=capsys)
    assert "B per client" not in dot.read_text()


def test_viz_stages_writes_one_html_page(tmp_path, capsys):
    page = tmp_path / "stages.html"
    status, out, err = fedc("viz", EXAMPLES / "analytics.fed", "--entry", "summary", "--passes",
                            "verify,strip-locations", "--stages", "-o", page, capsys=capsys)
    assert status == 0 and out == "" and err == ""
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert text.count('<section class="stage"') == 3
    assert text.count('src="data:image/svg+xml;base64,') == 3
    assert "> verify <" in text and "> strip-locations <" in text and "locations-removed" in text


def test_viz_stages_errors(tmp_path, capsys):
    cases = [
        (["--stages", "-o", tmp_path / "x.html"], "--stages draws the computation after each pass of a pipeline: give --passes PIPELINE"),
        (["--stages", "--passes", "verify", "-o", tmp_path / "x.svg"], "give a .html file"),
        (["-o", tmp_path / "x.html"], "add --stages (and --passes PIPELINE)"),
        (["--stages", "--passes", "verify,nope", "-o", tmp_path / "x.html"], "unknown pass 'nope'"),
    ]
    for args, message in cases:
        status, _, err = fedc("viz", EXAMPLES / "temperature.fed", *args, capsys=capsys)
        assert status == 2 and message in err and "Traceback" not in err, (args, err)
    assert not (tmp_path / "x.html").exists()


def test_check_compile_and_viz_never_import_extern_modules(tmp_path, capsys):
    marker = tmp_path / "imported"
    name = f"cli_marker_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        f"import pathlib, numpy as np, fedc\npathlib.Path({str(marker)!r}).write_text('ran')\n"
        "@fedc.tf_computation(np.float32)\ndef inc(x):\n    return x + 1.0\n"
    )
    source = tmp_path / "algo.fed"
    source.write_text(
        f'extern inc: (float32 -> float32) = "{name}:inc"\n'
        "computation f(x: float32@SERVER) -> float32@SERVER { return federated_map(inc, x) }\n"
    )
    assert fedc("check", source, capsys=capsys)[0] == 0
    status, out, _ = fedc("compile", source, capsys=capsys)
    assert status == 0 and "fedc.compiled extern @inc" in out
    assert fedc("viz", source, "-o", tmp_path / "algo.dot", capsys=capsys)[0] == 0
    assert not marker.exists()
    # Compiled output with an unbound extern says how to bind it when run.
    (tmp_path / "algo.fedir").write_text(out)
    (tmp_path / "args.json").write_text("1.0")
    status, _, err = fedc("run", tmp_path / "algo.fedir", "--args", tmp_path / "args.json", capsys=capsys)
    assert status == 2 and "--import-externs" in err and not marker.exists()
    # Opting in imports the module and embeds its graph; fedc run imports as its --help says.
    status, out, _ = fedc("compile", source, "--import-externs", capsys=capsys)
    assert status == 0 and "fedc.compiled tensorflow @inc" in out and marker.exists()
    sys.modules.pop(name, None)
    status, out, _ = fedc("run", source, "--args", tmp_path / "args.json", capsys=capsys)
    sys.modules.pop(name, None)
    assert status == 0 and out.strip() == "2.0"
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    assert "imports the Python modules its externs name" in " ".join(capsys.readouterr().out.split())


def test_an_output_that_cannot_be_written_is_a_user_error(temperature, tmp_path, capsys):
    status, _, err = fedc("compile", temperature, "-o", tmp_path, capsys=capsys)  # a folder
    assert status == 2 and f"cannot write {tmp_path}: Is a directory" in err and "Traceback" not in err
    if pathlib.Path("/dev/full").exists():
        status, _, err = fedc("opt", temperature, "-o", "/dev/full", capsys=capsys)
        assert status == 2 and "cannot write /dev/full: No space left on device" in err


def test_a_timeout_leaves_no_alarm_or_watchdog_behind(tmp_path, capsys):
    import signal
    import threading

    program = tmp_path / "f.fed"
    program.write_text("computation f(x: float32@SERVER) -> float32@SERVER {\n  return x\n}\n")
    args = tmp_path / "x.json"
    args.write_text("1.5")
    status, _, err = fedc("run", program, "--args", args, "--timeout", "1e308", capsys=capsys)
    assert status == 2 and "at most 1e+09" in err and "Traceback" not in err
    handler = signal.getsignal(signal.SIGALRM)
    # An alarm this early fires while the deadline is being set up; fedc.cli.main runs in-process here,
    # so a watchdog left running would end this test process seconds later.
    for _ in range(30):
        assert fedc("run", program, "--args", args, "--timeout", "1e-9", capsys=capsys)[0] in (0, 2)
    assert fedc("run", program, "--args", args, "--timeout", "30", capsys=capsys)[:2] == (0, "1.5\n")
    armed = [t for t in threading.enumerate() if isinstance(t, threading.Timer) and not t.finished.is_set()]
    assert not armed  # every watchdog was cancelled
    assert signal.getsignal(signal.SIGALRM) is handler and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_input_that_is_not_utf8_is_located(tmp_path, capsys, monkeypatch):
    import io

    bad = TEMPERATURE_IR.encode().replace(b"fed.mean", b"fed.m\xfean")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(bad)))
    status, _, err = fedc("check", "-", capsys=capsys)
    assert (status, err.strip()) == (2, "fedc check: error: <stdin>:3:15: not UTF-8 text "
                                         "(invalid start byte at byte 121); fedc reads UTF-8")
    path = tmp_path / "bad.fedir"
    path.write_bytes(bad)
    status, _, err = fedc("check", path, capsys=capsys)
    assert (status, err.strip()) == (2, f"fedc check: error: {path}:3:15: not UTF-8 text "
                                         "(invalid start byte at byte 121); fedc reads UTF-8")


def test_check_lists_the_first_twenty_computations(tmp_path, capsys):
    source = tmp_path / "many.fed"
    source.write_text("".join(f"local f{i}(x: float32) -> float32 {{\n  return x\n}}\n" for i in range(25)))
    status, out, _ = fedc("check", source, capsys=capsys)
    names = ", ".join(f"@f{i}" for i in range(20))
    assert (status, out.strip()) == (0, f"{source}: ok (25 computations: {names}, … and 5 more)")
