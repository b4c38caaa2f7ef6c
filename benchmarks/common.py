"""Shared helpers for benchmarks: timing and the JSON record with machine and versions."""

from __future__ import annotations

import json
import os
import pathlib
import platform
import statistics
import sys
import time
from typing import Callable

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def best_of(fn: Callable[[], object], repeats: int, warmup: int = 2) -> dict:
    """Runs ``fn`` warmup + repeats times; returns min and median seconds of the timed runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"min_s": min(times), "median_s": statistics.median(times), "repeats": repeats}


def environment() -> dict:
    import numpy

    import fedc

    versions = {"python": platform.python_version(), "numpy": numpy.__version__, "fedc": fedc.__version__}
    if "tensorflow" in sys.modules:
        versions["tensorflow"] = sys.modules["tensorflow"].__version__
    return {
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "system": f"{platform.system()} {platform.release()}",
        "versions": versions,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write(name: str, record: dict, output: pathlib.Path | None = None) -> pathlib.Path:
    path = output or RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"benchmark": name, "environment": environment(), **record}
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path
