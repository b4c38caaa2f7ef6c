"""The ``.fed`` front end: federated computations written as text.

    >>> from fedc.frontend import fed
    >>> module = fed.parse('''
    ... computation get_average_temperature(t: {float32}@CLIENTS) -> float32@SERVER {
    ...   return federated_mean(t)
    ... }''', filename="temperature.fed")
    >>> str(module["get_average_temperature"].type_signature)
    '({float32}@CLIENTS -> float32@SERVER)'

The language is described in ``docs/language.md``; its grammar is
``grammar/fedc.lark``. A file becomes a :class:`fedc.ir.Module` of the same
shape as traced Python: each ``computation`` and ``local`` function is a
``Lambda`` over a ``Block`` of SSA locals (intrinsic and op calls bound to
names), callees are ``SymbolRef`` s into the same module, and each used
``extern`` is the ``Compiled`` node of its ``@fedc.tf_computation``.

Errors are collected, not thrown at the first one: every syntax error (the
parser resynchronises at the next top-level declaration), every bad statement
and every bad definition is reported, each located at ``file:line:col`` with
the source line and a caret, in one :class:`DiagnosticsError`, whose message
shows the first :data:`MAX_SHOWN_ERRORS` of them and counts the rest.

The modules of the package, lowest first (each imports only modules listed
before it):

- ``syntax``: the syntax tree, and parsing source text into it, resynchronising
  after a syntax error;
- ``diagnostics``: :class:`DiagnosticsError`, the markers for a value that
  depends on an error already reported, and helpers for messages;
- ``units``: compilation units (one per file) and their definitions, and what
  building a definition asks of the compiler (``units.Resolver``);
- ``literals``: constants, and the dtype an untyped number takes;
- ``calls``: calls of intrinsics, local ops, operators and functions;
- ``builder``: type-checking one ``computation`` or ``local`` definition and
  building its ``Lambda``: statements, expressions, names, selections and
  function values, with the ``literals`` and ``calls`` mixins;
- ``compiler``: the driver: imports, type aliases, ``extern`` s, the order in
  which definitions are checked, and assembling the module;
- this package: :func:`load` and :func:`parse`.
"""

from __future__ import annotations

import os
from typing import Sequence, Union

from fedc.errors import FedcError, FedcTypeError
from fedc.frontend.fed.compiler import Compiler
from fedc.frontend.fed.diagnostics import MAX_SHOWN_ERRORS, DiagnosticsError, os_reason
from fedc.ir.module import Module

__all__ = ["DiagnosticsError", "MAX_SHOWN_ERRORS", "load", "parse"]


# --------------------------------------------------------------------------
# Public API


def load(
    path: Union[str, os.PathLike],
    search_paths: Sequence[Union[str, os.PathLike]] = (),
    import_externs: bool = False,
) -> Module:
    """Compiles the ``.fed`` file at ``path`` into a verified :class:`~fedc.ir.Module`.

    The module is named after the file's stem. Imports name ``.fed`` files
    relative to the importing file's folder, then ``search_paths``, and must
    lie under the main file's folder or a search folder.

    Compiling runs no code but fedc's own: an ``extern`` stays unbound (a
    ``Compiled`` node of kind ``"extern"`` with its declared type, which
    type-checks, prints and draws but does not run) unless ``import_externs``,
    which imports the Python module each extern names (running its code) from
    the file's folder or ``search_paths`` and embeds its ``tf_computation``.
    Raises :class:`DiagnosticsError` listing every error found.
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DiagnosticsError([FedcError(f"cannot read {path}: {os_reason(e)}")]) from None
    return parse(text, filename=path, search_paths=search_paths, import_externs=import_externs)


def parse(
    text: str,
    filename: str = "<string>",
    search_paths: Sequence[Union[str, os.PathLike]] = (),
    import_externs: bool = False,
) -> Module:
    """Compiles ``.fed`` source text (see :func:`load`); ``filename`` names it in messages."""
    if not isinstance(text, str):
        raise FedcTypeError(f"fedc.frontend.fed.parse expects a string, got {type(text).__name__}")
    filename = os.fspath(filename)
    compiler = Compiler([os.fspath(p) for p in search_paths], import_externs=bool(import_externs))
    return compiler.compile(text, filename)

