"""The command line: every subcommand with random flags, values and inputs, and argument files."""

import subprocess
import sys

import pytest

from fuzz import kinds
from fuzz.conftest import cases, check_cases


def test_the_fuzzer_knows_every_subcommand():
    # fedc --help lists the subcommands; the CLI fuzzer reads them (and their flags) from fedc's parser.
    listed = subprocess.run([sys.executable, "-m", "fedc", "--help"], capture_output=True, text=True, check=True).stdout
    commands = {line.split()[0] for line in listed.split("COMMAND", 2)[2].splitlines()
                if line.startswith("    ") and line.split()}
    assert commands and commands == set(kinds.cli_spec())


def test_every_subcommand_with_random_flags(fuzz_worker, tmp_path):
    check_cases(fuzz_worker, cases("cli", 120), tmp_path, timeout=60)


def test_argument_files(fuzz_worker, tmp_path):
    check_cases(fuzz_worker, cases("args", 80), tmp_path, timeout=60)


@pytest.mark.parametrize("argv", [
    ["check", "missing.fed"], ["run", "x.fed", "--rounds", "x"], ["nope"], ["compile"], ["opt", "-", "--passes", "nope"],
])
def test_the_real_process_exits_2_without_a_traceback(tmp_path, argv):
    # The fuzz worker calls fedc.cli.main in-process; these run the installed program for real.
    done = subprocess.run([sys.executable, "-m", "fedc"] + argv, capture_output=True, text=True, cwd=tmp_path,
                          input="", timeout=120)
    assert done.returncode == 2, done
    assert done.stderr.strip() and "Traceback" not in done.stderr
