"""TensorFlow loads without its start-up lines in any program of fedc's environment, even one importing it first.

pip puts ``fedc-tensorflow-startup.pth`` next to fedc (bootstrap/); it installs,
at interpreter start, the hook that filters TensorFlow's start-up lines.
``FEDC_QUIET_TENSORFLOW=0`` switches it off (and shows the lines are real).
"""

import importlib.metadata
import os
import pathlib
import site
import subprocess
import sys
import zipfile

import fedc

ROOT = pathlib.Path(__file__).resolve().parent.parent
TENSORFLOW_FIRST = ("import tensorflow as tf\n"
                    "print(float(tf.reduce_sum(tf.ones([3]))))\n"
                    "import fedc\n")


def run(program, *args, switch=None):
    env = dict(os.environ)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    env.pop(fedc.startup.ENVIRONMENT_SWITCH, None)
    if switch is not None:
        env[fedc.startup.ENVIRONMENT_SWITCH] = switch
    result = subprocess.run([sys.executable, "-c", program, *args], capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    return result


def start_up_lines(stderr):
    return [line for line in stderr.splitlines()
            if any(marker.decode() in line for marker in fedc.startup.START_UP_LINES)]


def test_a_program_importing_tensorflow_before_fedc_prints_no_start_up_lines():
    quiet = run(TENSORFLOW_FIRST)
    assert quiet.stdout == "3.0\n" and quiet.stderr == ""
    loud = run(TENSORFLOW_FIRST, switch="0")  # the switch turns it off: the lines are there to drop
    assert loud.stdout == "3.0\n" and len(start_up_lines(loud.stderr)) >= 2


def fake_tensorflow(directory, *lines: bytes) -> None:
    """A ``tensorflow`` package in ``directory`` that writes ``lines`` to fd 2 as it loads, then fails to."""
    fake = directory / "tensorflow"
    fake.mkdir()
    writes = "".join(f"os.write(2, {line!r})\n" for line in lines)
    (fake / "__init__.py").write_text(f"import os\n{writes}raise ImportError('the fake TensorFlow refuses to load')\n")


def test_the_hook_at_start_up_passes_everything_else_through(tmp_path):
    fake_tensorflow(tmp_path, b"I0000 00:00:1 1 port.cc:153] oneDNN custom operations are on. You may see...\n",
                    b"E0000 could not load a kernel library: libfoo.so not found\n")
    program = ("import sys; sys.path.insert(0, sys.argv[1])\n"
               "try:\n"
               "    import tensorflow\n"
               "except ImportError as e:\n"
               "    print(e)\n")
    result = run(program, str(tmp_path))
    assert result.stdout == "the fake TensorFlow refuses to load\n"
    assert result.stderr == "E0000 could not load a kernel library: libfoo.so not found\n"


def test_a_script_can_load_tensorflow_quietly_too():
    program = ("import fedc\n"
               "with fedc.quiet_tensorflow_startup():\n"
               "    import tensorflow as tf\n"
               "    print(float(tf.reduce_sum(tf.ones([3]))))\n"
               "import sys; assert not any(type(f).__name__ == '_QuietImport' for f in sys.meta_path)\n")
    # with the interpreter-wide hook off: the block does it alone
    result = run(program, switch="0")
    assert result.stdout.strip() == "3.0" and result.stderr == ""


def test_quiet_start_up_drops_only_tensorflows_start_up_lines(tmp_path):
    """Anything else TensorFlow prints while it loads (why it fails to, say) still shows, as it comes."""
    fake_tensorflow(tmp_path,
                    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
                    b"I0000 00:00:1 1 port.cc:153] oneDNN custom operations are on. You may see...\n",
                    b"I0000 00:00:1 1 cpu_feature_guard.cc:227] This TensorFlow binary is optimized\n",
                    b"To enable the following instructions: AVX2 FMA, in other operations, rebuild\n",
                    b"E0000 could not load a kernel library: libfoo.so not found\n",
                    b"no newline at the end")
    program = ("import sys; sys.path.insert(0, sys.argv[1])\n"
               "import fedc\n"
               "with fedc.quiet_tensorflow_startup():\n"
               "    try:\n"
               "        import tensorflow\n"
               "    except ImportError as e:\n"
               "        print(e)\n"
               "sys.stderr.write('after\\n')\n")
    result = run(program, str(tmp_path), switch="0")
    assert result.stdout == "the fake TensorFlow refuses to load\n"
    assert result.stderr == "E0000 could not load a kernel library: libfoo.so not found\nno newline at the endafter\n"


def test_the_hook_sees_only_tensorflow_and_costs_nothing_elsewhere():
    program = ("import sys, json\n"
               "print(json.dumps([type(f).__name__ for f in sys.meta_path]))\n"
               "print(sorted(m for m in sys.modules if m.startswith(('fedc', '_fedc', 'tensorflow'))))\n")
    on = run(program)
    assert "_QuietImport" in on.stdout.splitlines()[0]
    assert on.stdout.splitlines()[1] == "['_fedc_tensorflow_startup']"  # fedc itself is not imported
    off = run(program, switch="0")
    assert "_QuietImport" not in off.stdout.splitlines()[0]


def test_the_installed_distribution_carries_the_pth_file():
    # the distribution pip installed, in site-packages (not a source tree's stale fedc.egg-info)
    (dist,) = [d for d in importlib.metadata.distributions(path=site.getsitepackages()) if d.name == "fedc"]
    assert "fedc-tensorflow-startup.pth" in {str(f) for f in dist.files}


def test_a_built_wheel_carries_the_pth_file_and_its_module(tmp_path):
    """What ``pip install .`` (the README's first command) installs."""
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("fedc-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert {"fedc-tensorflow-startup.pth", "_fedc_tensorflow_startup.py", "fedc/startup.py"} <= names
        assert archive.read("fedc-tensorflow-startup.pth").decode().startswith("import _fedc_tensorflow_startup;")
