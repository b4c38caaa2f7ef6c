"""The compiler of ``.fed`` files: units, imports, type aliases, externs, the module.

``Compiler`` loads the main file and, transitively, the files it imports; it
checks every definition (resolving each the first time it is used, which finds
cycles), resolves ``extern`` s by importing their Python modules, and
assembles the definitions the main file reaches into a verified ``Module``.
The bodies of functions are built by ``builder.FunctionBuilder``.
"""

from __future__ import annotations

import functools
import importlib
import itertools
import os
import re
import sys
from typing import Optional

from fedc.limits import NestingError, check_text_nesting, deep_recursion
from fedc.computation import Computation, PolymorphicComputation
from fedc.errors import FedcError, FedcTypeError, ParseError, VerificationError
from fedc.frontend.fed.builder import FunctionBuilder
from fedc.frontend.fed.diagnostics import MAX_SHOWN_ERRORS, POISON, DiagnosticsError, Poisoned, did_you_mean, os_reason
from fedc.frontend.fed.syntax import (
    ExternDecl,
    ImportDecl,
    Pos,
    TypeDecl,
    decode_string,
    parse_source,
    token_pos,
    tree_pos,
)
from fedc.frontend.fed.units import AmbiguousName, Definition, Unit
from fedc.ir import building_blocks as bb
from fedc.ir import verify
from fedc.ir.module import Module
from fedc.tensorflow_graphs import EXTERN_KIND
from fedc.types import DTYPE_NAMES, FunctionType, PlacementType, TensorType, Type, type_builder_class

__all__ = ["Compiler"]


_PREFERRED_DTYPES = ["float32", "int32", "bool", "str", "float64", "int64"]


@functools.lru_cache(maxsize=None)
def _fed_type_builder_class():
    base = type_builder_class()

    class _FedTypeBuilder(base):
        """The type builder of ``fedc.types``, resolving names through a .fed file's aliases."""

        def __init__(self, filename, text, resolve):
            super().__init__(filename, text)
            self._resolve = resolve

        def named(self, children):
            (token,) = children
            return self._resolve(str(token), token)

    return _FedTypeBuilder


def _identifier(text: str) -> str:
    text = re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_") or "module"
    if text[0].isdigit():
        text = "m_" + text
    return text


# --------------------------------------------------------------------------
# The compiler


class Compiler:
    def __init__(self, search_paths: list, import_externs: bool = False):
        self.import_externs = import_externs
        self.search_paths = search_paths
        self.import_roots: list = []
        self.diagnostics: list = []
        self.suggestions_left = MAX_SHOWN_ERRORS
        self.units: dict = {}
        self.unit_list: list = []
        self.loading: list = []
        self.symbols: set = set()
        self.def_stack: list = []

    # Diagnostics -------------------------------------------------------------
    def error(self, unit: Unit, pos: Pos, message: str, cls=FedcError) -> FedcError:
        return cls(message, unit.location(pos), unit.text)

    def report(self, error: FedcError) -> None:
        self.diagnostics.append(error)

    def suggest(self, name: str, candidates) -> str:
        """'; did you mean ...?' for ``name`` among ``candidates`` (an iterable, read only here), or ''.

        Only the first MAX_SHOWN_ERRORS suggestions of a compilation are made:
        each compares ``name`` with every candidate, so an unbounded number of
        them would cost time quadratic in the size of the file.
        """
        if self.suggestions_left <= 0:
            return ""
        self.suggestions_left -= 1
        return did_you_mean(name, candidates)

    # Entry -------------------------------------------------------------------
    def compile(self, text: str, filename: str) -> Module:
        try:
            return self._compile(text, filename)
        except (RecursionError, NestingError) as e:
            reason = e.message if isinstance(e, NestingError) else "the source is nested too deeply to compile"
            raise DiagnosticsError(self._sorted() + [FedcError(f"{filename}: {reason}")]) from None

    @deep_recursion
    def _compile(self, text: str, filename: str) -> Module:
        key = os.path.realpath(filename) if os.path.isfile(filename) else filename
        # Imports may reach any .fed file under the main file's folder or a search folder.
        self.import_roots = [os.path.realpath(f or ".") for f in [os.path.dirname(filename)] + self.search_paths]
        main = self.load_unit(key, filename, text)
        for unit in self.unit_list:  # the main file's definitions keep their names
            for d in unit.defs.values():
                if d.kind != "type":
                    self.allocate_symbol(d)
        for unit in self.unit_list:
            for d in unit.all_defs:
                self.check_definition(d)
        if self.diagnostics:
            raise DiagnosticsError(self._sorted())
        module = self.assemble(main, _identifier(os.path.splitext(os.path.basename(filename))[0]))
        try:
            verify(module)
        except VerificationError as e:
            raise DiagnosticsError([e]) from None
        return module

    def _sorted(self) -> list:
        order = {u.display: u.index for u in self.unit_list}

        def key(d):
            loc = d.location
            if loc is None:
                return (1 << 30, 0, 0)
            return (order.get(loc.file, 1 << 29), loc.line, loc.column)

        unique, seen = [], set()
        for d in sorted(self.diagnostics, key=key):
            k = str(d)
            if k not in seen:
                seen.add(k)
                unique.append(d)
        return unique

    # Units and imports -------------------------------------------------------
    def load_unit(self, key: str, display: str, text: str) -> Unit:
        unit = Unit(key, display, os.path.dirname(display), text, len(self.unit_list))
        self.units[key] = unit
        self.unit_list.append(unit)
        try:
            check_text_nesting(text, display, "([{", comment="#", what="the source")
        except ParseError as e:
            raise DiagnosticsError(self._sorted() + [e]) from None
        items, diagnostics, failed = parse_source(text, display)
        unit.items = items
        unit.failed = failed
        self.diagnostics.extend(diagnostics)
        for item in items:
            if isinstance(item, ImportDecl):
                continue
            kind = {TypeDecl: "type", ExternDecl: "extern"}.get(type(item)) or item.kind
            self.declare(unit, Definition(kind, item.name, unit, item))
        unit.namespace = dict(unit.defs)
        for name in failed:
            unit.namespace.setdefault(name, POISON)
        self.loading.append(unit)
        try:
            for item in items:
                if isinstance(item, ImportDecl):
                    self.import_unit(unit, item)
        finally:
            self.loading.pop()
        return unit

    def declare(self, unit: Unit, d: Definition) -> None:
        unit.all_defs.append(d)
        previous = unit.defs.get(d.name)
        if previous is not None:
            self.report(self.error(
                unit, d.pos,
                f"duplicate definition of {d.name!r}: it is already defined at {unit.location(previous.pos)}",
            ))
            return
        if d.kind == "type" and (d.name in DTYPE_NAMES or d.name == "placement"):
            self.report(self.error(unit, d.pos, f"{d.name!r} is a built-in type; a type alias needs another name"))
            return
        unit.defs[d.name] = d

    def import_unit(self, unit: Unit, item: ImportDecl) -> None:
        try:
            path = decode_string(item.raw)
        except ValueError as e:
            self.report(self.error(unit, item.pos, f"invalid string: {e}"))
            return
        if not path or "\0" in path:
            self.report(self.error(unit, item.pos, f"cannot import {path!r}: not a file name"))
            return
        # An import names a .fed file, relative to the importing file's folder or a search
        # folder, that lies under the main file's folder or a search folder: no absolute
        # paths, no ../ (or symlink) escapes, so a file cannot make fedc read (and quote in
        # an error) anything else on the machine.
        if os.path.isabs(path) or path.startswith("~"):
            self.report(self.error(
                unit, item.pos,
                f"cannot import {path!r}: imports are relative to the importing file's folder "
                "(or a search folder given with -I), not absolute paths",
            ))
            return
        if not path.endswith(".fed"):
            self.report(self.error(unit, item.pos, f"cannot import {path!r}: an import names a .fed file"))
            return
        folders = [unit.folder] + self.search_paths
        found = None
        escaped = False
        for folder in folders:
            try:
                candidate = os.path.realpath(os.path.join(os.path.realpath(folder or "."), path))
                if not any(os.path.commonpath([root, candidate]) == root for root in self.import_roots):
                    escaped = True
                    continue
                if os.path.isfile(candidate):
                    found = os.path.normpath(os.path.join(folder, path)) if folder else os.path.normpath(path)
                    break
            except (OSError, ValueError):
                continue
        if found is None:
            looked = ", ".join(repr(f or ".") for f in folders)
            if escaped:
                roots = ", ".join(repr(r) for r in self.import_roots)
                message = (f"cannot import {path!r}: it lies outside the folders imports may reach ({roots}: "
                           "the main file's and the search folders); add its folder with -I (search_paths)")
            else:
                message = f"cannot find imported file {path!r} (looked in {looked})"
            self.report(self.error(unit, item.pos, message))
            return
        key = os.path.realpath(found)
        chain = [u.key for u in self.loading]
        if key in chain:
            cycle = self.loading[chain.index(key):]
            names = " -> ".join(u.display for u in cycle) + f" -> {found}"
            self.report(self.error(unit, item.pos, f"import cycle: {names}"))
            target = self.units[key]
        elif key in self.units:
            target = self.units[key]
        else:
            try:
                with open(found, encoding="utf-8") as f:
                    text = f.read()
            except (OSError, UnicodeDecodeError, ValueError) as e:
                self.report(self.error(unit, item.pos, f"cannot read imported file {path!r}: {os_reason(e)}"))
                return
            target = self.load_unit(key, found, text)
        if target is unit:
            return
        unit.imports.append(target)
        # A file's own definitions hide imported ones; a name two imports define is
        # an error where it is used.
        for name, d in target.defs.items():
            existing = unit.namespace.get(name)
            if existing is None:
                unit.namespace[name] = d
            elif existing is POISON or existing is d or (isinstance(existing, Definition) and existing.unit is unit):
                continue
            elif isinstance(existing, AmbiguousName):
                existing.defs.append(d)
            else:
                unit.namespace[name] = AmbiguousName([existing, d])
        for name in target.failed:
            unit.namespace.setdefault(name, POISON)

    # Definitions -------------------------------------------------------------
    def check_definition(self, d: Definition) -> None:
        try:
            if d.kind == "type":
                self.resolve_alias(d, d.ast.name_pos)
            elif d.kind == "extern":
                self.resolve_extern(d)
            else:
                self.resolve_function(d, d.ast.name_pos, d.unit)
        except Poisoned:
            pass
        except FedcError as e:
            self.report(e)

    def allocate_symbol(self, d: Definition) -> str:
        if d.symbol is None:
            base = d.name
            name, n = base, 1
            while name in self.symbols:
                name = f"{base}_{n}"
                n += 1
            self.symbols.add(name)
            d.symbol = name
        return d.symbol

    def _enter(self, d: Definition, use_unit: Unit, use_pos: Pos, what: str):
        """Marks ``d`` as being resolved; reports a cycle if it already is."""
        if d.state == "failed":
            raise Poisoned()
        if d.state == "busy":
            cycle = self.def_stack[self.def_stack.index(d):] + [d]
            path = " -> ".join(x.name for x in cycle)
            d.state = "failed"
            raise self.error(use_unit, use_pos, f"{what} {d.name!r} refers to itself: {path}"
                             + ("" if d.kind == "type" else " (recursion is not supported)"))
        d.state = "busy"
        self.def_stack.append(d)

    def _leave(self, d: Definition, ok: bool):
        self.def_stack.remove(d)
        if d.state == "busy":
            d.state = "done" if ok else "failed"

    def resolve_alias(self, d: Definition, use_pos: Pos, use_unit: Optional[Unit] = None) -> Type:
        if d.state == "done":
            return d.value
        self._enter(d, use_unit or d.unit, use_pos, "type")
        ok = False
        try:
            d.value = self.resolve_type(d.unit, d.ast.ty)
            ok = True
            return d.value
        except FedcError as e:
            if d.state == "failed":  # a cycle through this alias: report it once
                raise
            self.report(e)
            raise Poisoned() from None
        finally:
            self._leave(d, ok)

    def resolve_type(self, unit: Unit, tree) -> Type:
        import lark
        from lark.visitors import merge_transformers

        def resolve(name: str, token) -> Type:
            d = unit.namespace.get(name)
            if d is POISON:
                raise Poisoned()
            if isinstance(d, AmbiguousName):
                raise d.error(self, unit, token_pos(token), name)
            if d is not None:
                if d.kind != "type":
                    raise self.error(unit, token_pos(token), f"{name!r} is {'an' if d.kind == 'extern' else 'a'} {d.kind}, not a type")
                return self.resolve_alias(d, token_pos(token), unit)
            if name == "placement":
                return PlacementType()
            if name in DTYPE_NAMES:
                return TensorType(DTYPE_NAMES[name])
            candidates = itertools.chain(_PREFERRED_DTYPES, DTYPE_NAMES, (
                n for n, v in unit.namespace.items() if isinstance(v, Definition) and v.kind == "type"
            ))
            raise self.error(unit, token_pos(token), f"unknown type {name!r}" + self.suggest(name, candidates))

        builder = _fed_type_builder_class()(unit.display, unit.text, resolve)
        transformer = merge_transformers(lark.Transformer(), types=builder)
        try:
            result = transformer.transform(tree)
        except lark.exceptions.VisitError as e:
            raise e.orig_exc from None
        return result.children[0]

    def resolve_extern(self, d: Definition) -> bb.Compiled:
        if d.state == "done":
            return d.value
        if d.state == "failed":
            raise Poisoned()
        unit, ast = d.unit, d.ast
        d.state = "failed"
        declared = self.resolve_type(unit, ast.ty)
        if not isinstance(declared, FunctionType):
            raise self.error(unit, tree_pos(ast.ty), f"an extern has a function type, such as (float32 -> float32), not {declared}", FedcTypeError)
        if declared.is_placed:
            raise self.error(unit, tree_pos(ast.ty), f"an extern is a local TensorFlow function, so its type has no placements, but {declared} has", FedcTypeError)
        try:
            target = decode_string(ast.raw_target)
        except ValueError as e:
            raise self.error(unit, ast.target_pos, f"invalid string: {e}") from None
        m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*):([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)", target)
        if m is None:
            raise self.error(unit, ast.target_pos, f"an extern names a Python function as \"module:function\", not {target!r}")
        module_name, attr_path = m.groups()
        if not self.import_externs:
            # Bound only when the user lets fedc import Python: until then the extern is its
            # declared type and the name of its function, which type-check, print and draw.
            d.value = bb.Compiled(EXTERN_KIND, target.encode("utf-8"), declared, d.name, unit.location(d.ast.pos))
            d.state = "done"
            return d.value
        module = self.import_python(unit, ast.target_pos, module_name)
        obj = module
        for part in attr_path.split("."):
            if not hasattr(obj, part):
                candidates = [n for n in dir(obj) if not n.startswith("_")]
                raise self.error(
                    unit, ast.target_pos,
                    f"Python module {module_name!r} has no function {attr_path!r}" + self.suggest(part, candidates),
                )
            obj = getattr(obj, part)
        if isinstance(obj, PolymorphicComputation):
            try:
                obj = obj.specialize(declared.parameter)
            except FedcError as e:
                raise self.error(unit, ast.target_pos, f"{target} cannot be specialised to {declared.parameter}: {e.message}", FedcTypeError) from None
        if isinstance(obj, Computation):
            node = obj.ir
            if not isinstance(node, bb.Compiled):
                raise self.error(
                    unit, ast.target_pos,
                    f"{target} is a federated computation of type {obj.type_signature}, not a @fedc.tf_computation",
                )
        else:
            what = "a Python function" if callable(obj) else f"a {type(obj).__name__}"
            raise self.error(
                unit, ast.target_pos,
                f"{target} is {what}, not a @fedc.tf_computation",
            )
        if node.type_signature != declared:
            actual = node.type_signature
            if len(str(declared)) + len(str(actual)) > 100:
                message = (
                    f"extern {d.name!r} declares type\n{_indent(declared.formatted_representation())}\n"
                    f"but {target} has type\n{_indent(actual.formatted_representation())}"
                )
            else:
                message = f"extern {d.name!r} declares type {declared}, but {target} has type {actual}"
            raise self.error(unit, tree_pos(ast.ty), message, FedcTypeError)
        d.value = node.with_location(unit.location(d.ast.pos))
        d.state = "done"
        return d.value

    def import_python(self, unit: Unit, pos: Pos, module_name: str):
        if module_name in sys.modules:
            return sys.modules[module_name]
        folders = [os.path.abspath(unit.folder or ".")] + [os.path.abspath(p) for p in self.search_paths]
        added = [f for f in folders if f not in sys.path]
        sys.path[:0] = added
        try:
            importlib.invalidate_caches()
            return importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name and (e.name == module_name or module_name.startswith(e.name + ".")):
                raise self.error(
                    unit, pos,
                    f"cannot find Python module {module_name!r} (looked in {', '.join(repr(f) for f in folders)} and sys.path)",
                ) from None
            raise self.error(unit, pos, f"importing Python module {module_name!r} failed: ModuleNotFoundError: {e}") from None
        except FedcError as e:
            raise self.error(unit, pos, f"importing Python module {module_name!r} failed: {e.message}") from None
        except (Exception, SystemExit) as e:  # the user's module raised while being imported
            raise self.error(unit, pos, f"importing Python module {module_name!r} failed: {type(e).__name__}: {e}") from None
        finally:
            for f in added:
                try:
                    sys.path.remove(f)
                except ValueError:
                    pass

    def resolve_function(self, d: Definition, use_pos: Pos, use_unit: Unit) -> bb.Lambda:
        if d.state == "done":
            return d.value
        self._enter(d, use_unit, use_pos, d.kind)
        ok = False
        try:
            builder = FunctionBuilder(self, d)
            d.value = builder.build()
            ok = True
            return d.value
        except FedcError as e:
            if d.state == "failed":  # a cycle closed here: the error is at its call site
                raise
            self.report(e)
            raise Poisoned() from None
        finally:
            self._leave(d, ok)

    # Module ------------------------------------------------------------------
    def assemble(self, main: Unit, name: str) -> Module:
        by_symbol = {}
        for unit in self.unit_list:
            for d in unit.defs.values():
                if d.symbol is not None and d.state == "done":
                    by_symbol[d.symbol] = d.value
        entries: list = []
        seen: set = set()

        def visit(symbol: str):
            if symbol in seen:
                return
            seen.add(symbol)
            node = by_symbol[symbol]
            for n in node.walk():
                if isinstance(n, bb.SymbolRef) and n.name in by_symbol:
                    visit(n.name)
            entries.append((symbol, node))

        for d in main.defs.values():
            if d.kind in ("computation", "local"):
                visit(d.symbol)
        return Module(name, entries)


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())
