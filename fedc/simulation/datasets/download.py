"""Dataset files in a cache directory: found, decompressed, or downloaded with a progress bar.

The cache directory defaults to ``~/.tff``, TFF's, so a file a TFF user has
already downloaded is used as it is.
"""

from __future__ import annotations

import lzma
import os
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import Optional

from fedc import FedcError, FedcTypeError

__all__ = ["DEFAULT_CACHE_DIR", "cached_file", "is_cached"]

DEFAULT_CACHE_DIR = os.path.join("~", ".tff")
_CHUNK = 1 << 20


def _paths(origin: str, cache_dir: Optional[str]) -> tuple[str, str, str, str]:
    """(directory, file name, its path, the compressed file's path) for ``origin`` in ``cache_dir``."""
    if cache_dir is not None and not isinstance(cache_dir, (str, os.PathLike)):
        raise FedcTypeError(f"cache_dir is a directory's path (a str), or None for {DEFAULT_CACHE_DIR}; "
                            f"got {type(cache_dir).__name__} {cache_dir!r}")
    directory = os.path.expanduser(cache_dir if cache_dir is not None else DEFAULT_CACHE_DIR)
    compressed_name = origin.rstrip("/").rsplit("/", 1)[-1]
    name = compressed_name[: -len(".lzma")] if compressed_name.endswith(".lzma") else compressed_name
    return directory, name, os.path.join(directory, name), os.path.join(directory, compressed_name)


def is_cached(origin: str, cache_dir: Optional[str] = None) -> bool:
    """Whether the file ``origin`` names (or its ``.lzma``) is in ``cache_dir``: no download is needed."""
    _, _, path, compressed = _paths(origin, cache_dir)
    return os.path.isfile(path) or os.path.isfile(compressed)


def cached_file(origin: str, cache_dir: Optional[str], offline_hint: str = "", timeout: float = 30.0) -> str:
    """The path of the decompressed file that ``origin`` (a ``….lzma`` URL) names, in ``cache_dir``.

    Uses ``NAME`` if it is there, else decompresses ``NAME.lzma`` if that is
    there, else downloads ``NAME.lzma`` (showing progress) and decompresses it.
    When the download fails, the error says which file to put where.
    """
    directory, name, path, compressed = _paths(origin, cache_dir)
    compressed_name = os.path.basename(compressed)
    if os.path.isfile(path):
        return path
    if not os.path.isfile(compressed):
        try:
            os.makedirs(directory, exist_ok=True)
            _download(origin, compressed, timeout)
        except (OSError, urllib.error.URLError, ValueError) as e:
            reason = getattr(e, "reason", None) or e
            raise FedcError(
                f"{name} is not in {directory} and could not be downloaded from {origin} ({reason}). Put {name} "
                f"(or {compressed_name}, which fedc decompresses on first use) in {directory}, or pass "
                f"cache_dir= the directory that has it." + (f" {offline_hint}" if offline_hint else "")) from None
    if compressed != path:
        _decompress(compressed, path)
    return path


def _download(origin: str, target: str, timeout: float) -> None:
    directory = os.path.dirname(target)
    with urllib.request.urlopen(origin, timeout=timeout) as response:
        total = int(response.headers.get("Content-Length") or 0)
        fd, partial = tempfile.mkstemp(prefix=os.path.basename(target) + ".", suffix=".part", dir=directory)
        try:
            with os.fdopen(fd, "wb") as out:
                done, last = 0, 0.0
                while True:
                    chunk = response.read(_CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                    done += len(chunk)
                    now = time.monotonic()
                    if now - last > 0.5:
                        _progress(os.path.basename(target), done, total)
                        last = now
            _progress(os.path.basename(target), done, total, final=True)
            os.replace(partial, target)
        finally:
            if os.path.exists(partial):
                os.unlink(partial)


def _progress(name: str, done: int, total: int, final: bool = False) -> None:
    if total:
        width = 30
        filled = int(width * done / total)
        line = f"downloading {name}: [{'#' * filled}{'.' * (width - filled)}] {done / 2**20:.0f}/{total / 2**20:.0f} MiB"
    else:
        line = f"downloading {name}: {done / 2**20:.0f} MiB"
    if sys.stderr.isatty():
        print("\r" + line, end="\n" if final else "", file=sys.stderr, flush=True)
    elif final:
        print(line, file=sys.stderr, flush=True)


def _decompress(source: str, target: str) -> None:
    fd, partial = tempfile.mkstemp(prefix=os.path.basename(target) + ".", suffix=".part",
                                   dir=os.path.dirname(target))
    try:
        with lzma.open(source, "rb") as compressed, os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(compressed, out, _CHUNK)
        os.replace(partial, target)
    except lzma.LZMAError as e:
        raise FedcError(f"{source} is not a valid .lzma file ({e}); delete it and run again to download it anew, "
                        f"or put the decompressed {os.path.basename(target)} beside it") from None
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
