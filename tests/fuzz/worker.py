"""The process that runs fuzz cases: one case at a time, each in a fresh sandbox folder.

The parent (:mod:`fuzz.harness`) starts this file as a subprocess and sends it
cases over a pipe (length-prefixed pickles between two processes of the test
harness; fedc never sees them). A case that crashes the interpreter or hangs
takes only this process down; the parent notices (end of pipe, or no answer
within the case's timeout), records the case and starts a new worker.

For each case the worker

- makes a fresh folder holding the case's files and makes it the working
  folder;
- watches, with a Python audit hook, every file the case opens, removes,
  renames or creates, and every process it starts;
- runs the case's action (:mod:`fuzz.actions`), which classifies what fedc
  did: ``ok`` (it worked), ``error`` (a ``FedcError``; for the command line:
  exit status 2 and a message without a traceback), ``escape`` (any other
  exception, or a CLI exit status other than 0 and 2, or a traceback),
  ``roundtrip`` (fedc loaded the input but what it then wrote out did not
  read back as the same module);
- turns a touch of a file outside the sandbox (other than reading Python's
  and fedc's own installed files), a write inside it that the case did not
  ask for, or a process started other than graphviz's ``dot``, into the
  outcome ``file``.

Address space and file size are limited (``resource``), so a huge allocation
is a ``MemoryError`` (an escape) rather than the machine running out of
memory, and a runaway write ends the worker (a crash) rather than filling the
disk.
"""

from __future__ import annotations

import io
import os
import pickle
import resource
import shutil
import struct
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
if os.path.dirname(HERE) not in sys.path:
    sys.path.insert(0, os.path.dirname(HERE))

#: The worker's address-space limit: fedc with TensorFlow imported uses about 1 GB of it.
ADDRESS_SPACE = 8 * 2**30
#: The largest file a case may write.
FILE_SIZE = 256 * 2**20


def _send(stream, message) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack("<Q", len(data)) + data)
    stream.flush()


def _receive(stream):
    header = stream.read(8)
    if len(header) < 8:
        return None
    (size,) = struct.unpack("<Q", header)
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            return None
        data += chunk
    return pickle.loads(data)


class Watch:
    """The audit hook: records what a case does to files and processes while it runs."""

    WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def __init__(self):
        self.active = False
        self.events: list[tuple] = []

    def hook(self, event, args):
        if not self.active:
            return
        if event == "open":
            path, mode, flags = args
            if isinstance(path, int):
                return
            writes = bool(mode and any(c in mode for c in "wax+")) or bool(flags and flags & self.WRITE_FLAGS)
            self.events.append(("write" if writes else "read", os.fsdecode(path)))
        elif event in ("os.remove", "os.rename", "os.mkdir", "os.rmdir", "os.truncate", "os.chmod",
                       "os.symlink", "os.link", "shutil.rmtree", "shutil.copyfile", "shutil.move"):
            path = args[0]
            if isinstance(path, (str, bytes, os.PathLike)):
                self.events.append(("write", os.fsdecode(path)))
        elif event in ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
                       "os.forkpty", "pty.spawn"):
            self.events.append(("process", repr(args)[:300]))
        elif event == "socket.connect":
            self.events.append(("network", repr(args)[:300]))


def _read_roots() -> list[str]:
    """Folders a case may read from: the Python installation and fedc's own (editable) sources."""
    import fedc
    import fedc.grammar
    import fedc.passes
    import fedc.backends

    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, "/proc", "/sys", "/dev", "/etc/localtime",
             "/usr/share/zoneinfo", "/usr/lib/locale", "/etc/ld.so.cache", "/etc/nsswitch.conf"}
    for module in (fedc, fedc.grammar, fedc.passes, fedc.backends):
        roots.update(module.__path__)
    for entry in sys.path:
        if entry and os.path.isdir(entry) and (entry.startswith(sys.prefix) or "site-packages" in entry):
            roots.add(entry)
    return sorted({os.path.realpath(r) for r in roots} | roots)


def _under(path: str, roots) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def _file_findings(watch: Watch, sandbox: str, case: dict, before: set[str], read_roots) -> list[str]:
    """What the case did to files that it was not asked to do."""
    sandbox = os.path.realpath(sandbox)
    allowed_writes = {os.path.realpath(os.path.join(sandbox, o)) for o in case.get("outputs", ())}
    allowed_reads = {os.path.realpath(os.path.join(sandbox, r)) for r in case.get("reads", ())}
    findings = []
    for what, path in watch.events:
        if what in ("process", "network"):
            if what == "process" and ("'dot'" in path or "/dot'" in path):
                continue  # graphviz renders pictures with its dot program
            findings.append(f"{what}: {path}")
            continue
        real = os.path.realpath(os.path.join(sandbox, path))
        if what == "read":
            if _under(real, [sandbox]) or _under(real, read_roots) or real in allowed_reads:
                continue
            findings.append(f"read outside the sandbox: {path}")
        else:
            if real in allowed_writes:
                continue
            if _under(real, [sandbox]):
                findings.append(f"write not asked for: {os.path.relpath(real, sandbox)}")
            else:
                findings.append(f"write outside the sandbox: {path}")
    after = set()
    for folder, _, files in os.walk(sandbox):
        after.update(os.path.join(folder, f) for f in files)
    for path in sorted(after - before):
        if os.path.realpath(path) not in allowed_writes:
            findings.append(f"new file not asked for: {os.path.relpath(path, sandbox)}")
    return sorted(set(findings))


def warm_up(with_tensorflow: bool) -> None:
    """Imports what cases use, so that no case pays for (or is timed by) a first import."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import fedc  # noqa: F401
    import fedc.cli  # noqa: F401
    import fedc.frontend.fed  # noqa: F401
    import fedc.passes  # noqa: F401
    import fedc.backends.reference  # noqa: F401
    from fuzz import actions

    actions.warm_up(with_tensorflow)


def main() -> int:
    proto_in = os.fdopen(os.dup(0), "rb", buffering=0)
    proto_out = os.fdopen(os.dup(1), "wb", buffering=0)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(2, 1)  # what native code prints to stdout goes to the worker's log
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE, FILE_SIZE))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    with_tensorflow = "--no-tensorflow" not in sys.argv
    root = tempfile.mkdtemp(prefix="fedc-fuzz-")
    warm_up(with_tensorflow)
    from fuzz import actions

    read_roots = _read_roots() + [os.path.realpath(HERE)]
    watch = Watch()
    sys.addaudithook(watch.hook)
    actions.WATCH = watch
    _send(proto_out, {"ready": True, "pid": os.getpid()})
    number = 0
    while True:
        case = _receive(proto_in)
        if case is None:
            break
        number += 1
        sandbox = os.path.join(root, f"case{number}")
        os.makedirs(sandbox)
        for name, data in case.get("files", {}).items():
            path = os.path.join(sandbox, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
        before = set()
        for folder, _, files in os.walk(sandbox):
            before.update(os.path.join(folder, f) for f in files)
        os.chdir(sandbox)
        watch.events = []
        start = time.perf_counter()
        watch.active = True
        try:
            result = actions.run(case, sandbox)
        except BaseException as e:  # a bug in the harness itself, reported as such
            result = {"outcome": "harness", "detail": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
        finally:
            watch.active = False
        result["seconds"] = time.perf_counter() - start
        os.chdir(root)
        findings = _file_findings(watch, sandbox, case, before, read_roots)
        if findings:
            result["files"] = findings
            if result["outcome"] in ("ok", "error"):
                result["outcome"] = "file"
        shutil.rmtree(sandbox, ignore_errors=True)
        _send(proto_out, result)
    shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
