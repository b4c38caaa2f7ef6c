"""Diagnostics of the .fed front end: each kind at its exact file:line:col, with the source line and a caret."""

from __future__ import annotations

import pathlib
import sys
import textwrap
import uuid

import pytest

import fedc
from fedc.frontend import fed

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"


def diagnose(text: str, filename: str = "algo.fed", **kwargs) -> list:
    """The diagnostics of compiling ``text``, checked to be well-formed."""
    text = textwrap.dedent(text).lstrip("\n")
    with pytest.raises(fed.DiagnosticsError) as info:
        fed.parse(text, filename=filename, **kwargs)
    error = info.value
    assert isinstance(error, fedc.FedcError)
    count = len(error.diagnostics)
    assert str(error) == "\n\n".join(str(d) for d in error.diagnostics) + f"\n\n{count} error{'' if count == 1 else 's'}"
    return error.diagnostics


def check(diagnostic, where: str, message: str, source: str = None) -> None:
    """``diagnostic`` is at ``where`` (file:line:col), shows that line with a caret, and says ``message``."""
    assert isinstance(diagnostic, fedc.FedcError)
    assert str(diagnostic.location) == where
    line, column = int(where.split(":")[-2]), int(where.split(":")[-1])
    source = diagnostic.source if source is None else source
    assert str(diagnostic) == (
        f"{where}: {diagnostic.message}\n"
        f"  {source.splitlines()[line - 1]}\n"
        f"  {' ' * (column - 1)}^"
    )
    assert message in diagnostic.message, diagnostic.message


def only(diagnostics: list):
    assert len(diagnostics) == 1, [str(d) for d in diagnostics]
    return diagnostics[0]


# --------------------------------------------------------------------------
# Syntax errors


def test_syntax_error_missing_expression():
    d = only(diagnose("""
        computation f(x: float32) -> float32 {
          return x +
        }
        """))
    assert isinstance(d, fedc.ParseError)
    check(d, "algo.fed:3:1", "syntax error: unexpected '}'; expected an expression")


def test_syntax_error_unexpected_token_and_character():
    first, second = diagnose("""
        computation f(x: float32) -> float32 {
          let y = x x
          return y
        }
        computation g(x: float32) -> float32 {
          return x $ 2
        }
        """)
    check(first, "algo.fed:2:13", "syntax error: unexpected 'x'; expected an operator, ';', 'let', 'return' or '}'")
    check(second, "algo.fed:6:12", "syntax error: unexpected character '$'")


def test_syntax_error_in_a_type_and_at_end_of_file():
    first, second = diagnose("""
        computation f(x: {float32@CLIENTS) -> float32 {
          return x
        }
        computation g(x: float32) -> float32 {
          return x
        """)
    check(first, "algo.fed:1:34", "syntax error: unexpected ')'; expected '}'")
    check(second, "algo.fed:5:11", "syntax error: unexpected end of file; expected an operator, ';', 'let', 'return' or '}'")


def test_syntax_error_unclosed_body_points_at_the_next_declaration():
    d = only(diagnose("""
        computation f(x: float32) -> float32 {
          return x

        computation g(x: float32) -> float32 { return x }
        """))
    check(d, "algo.fed:4:1", "syntax error: unexpected 'computation'")


def test_keywords_are_not_names():
    first, second = diagnose("local f(x: float32) -> float32 { let return = x\n return x }\nlocal fn(x: float32) -> float32 { return x }")
    check(first, "algo.fed:1:38", "syntax error: 'return' is a keyword, not a name")
    check(second, "algo.fed:3:7", "syntax error: 'fn' is a keyword, not a name")


# --------------------------------------------------------------------------
# Names


def test_unknown_name_with_suggestion():
    d = only(diagnose("""
        computation f(t: {float32}@CLIENTS) -> float32@SERVER {
          return federated_maen(t)
        }
        """))
    check(d, "algo.fed:2:10", "unknown name 'federated_maen'; did you mean 'federated_mean'?")


def test_unknown_local_name_suggests_a_local():
    d = only(diagnose("""
        local f(temperature: float32) -> float32 {
          let scaled = temperatur * 2.0
          return scaled
        }
        """))
    check(d, "algo.fed:2:16", "unknown name 'temperatur'; did you mean 'temperature'?")


def test_unknown_name_without_suggestion():
    d = only(diagnose("local f(x: float32) -> float32 { return qqq }"))
    check(d, "algo.fed:1:41", "unknown name 'qqq'")
    assert "did you mean" not in d.message


def test_unknown_type_with_suggestion():
    d = only(diagnose("""
        type Weights = <float32[3],float32>
        computation f(w: Wieghts@SERVER) -> Weights@SERVER { return w }
        """))
    check(d, "algo.fed:2:18", "unknown type 'Wieghts'; did you mean 'Weights'?")


def test_a_name_used_before_its_let_is_unknown():
    d = only(diagnose("local f(x: float32) -> float32 { let a = b\n let b = x\n return a }"))
    check(d, "algo.fed:1:42", "unknown name 'b'")


# --------------------------------------------------------------------------
# Types


def test_type_mismatch_federated_mean_of_ints():
    d = only(diagnose("""
        computation f(t: {int32}@CLIENTS) -> int32@SERVER {
          return federated_mean(t)
        }
        """))
    assert isinstance(d, fedc.FedcTypeError)
    check(
        d, "algo.fed:2:10",
        "federated_mean expects ({T}@CLIENTS -> T@SERVER); got an argument of type {int32}@CLIENTS: "
        "T must be floating-point tensors or structs of them, but T is int32",
    )


def test_type_mismatch_declared_result():
    d = only(diagnose("""
        computation f(t: {float32}@CLIENTS) -> float32@SERVER {
          return federated_sum(federated_map(fn(v) -> cast(v, dtype=int32), t))
        }
        """))
    check(
        d, "algo.fed:2:10",
        "the result of computation 'f' does not have its declared type: expected float32@SERVER, got int32@SERVER",
    )


def test_type_mismatch_operator_dtypes():
    d = only(diagnose("local f(x: float32, i: int32) -> float32 { return x + i }"))
    check(
        d, "algo.fed:1:53",
        "operator '+': add expects (<T,T> -> T); got an argument of type <float32,int32>: operands must have "
        "the same dtype, but have float32 and int32 (use cast)",
    )


def test_type_mismatch_computation_argument():
    d = only(diagnose("""
        local g(v: float32) -> float32 { return v }
        local f(s: str) -> float32 { return g(s) }
        """))
    check(d, "algo.fed:2:37", "argument of local 'g': expected float32, got str")


def test_untyped_function_parameter_outside_an_intrinsic():
    d = only(diagnose("local f(x: float32) -> float32 { let g = fn(v) -> v\n return g(x) }"))
    check(d, "algo.fed:1:45", "cannot infer the type of parameter 'v' here; write it, as in fn(v: float32) -> ...")


def test_selection_of_a_missing_element():
    d = only(diagnose("local f(p: <low=float32,high=float32>) -> float32 { return p.hgih }"))
    check(d, "algo.fed:1:62", "a value of type <low=float32,high=float32> has no element named 'hgih'; did you mean 'high'?")


# --------------------------------------------------------------------------
# Placements


def test_placement_mismatch_broadcast_of_a_clients_value():
    d = only(diagnose("""
        computation f(t: {float32}@CLIENTS) -> float32@CLIENTS {
          return federated_broadcast(t)
        }
        """))
    check(
        d, "algo.fed:2:10",
        "federated_broadcast expects (T@SERVER -> T@CLIENTS); got an argument of type {float32}@CLIENTS: "
        "the value must be placed at SERVER, but has type {float32}@CLIENTS",
    )


def test_placement_mismatch_mapping_an_unplaced_value():
    d = only(diagnose("""
        computation f(t: float32) -> float32 {
          return federated_map(fn(v) -> v, t)
        }
        """))
    check(d, "algo.fed:2:36", "federated_map: the mapped value must be a placed value (such as {T}@CLIENTS or T@SERVER), but has type float32")


def test_placement_mismatch_apply_at_the_wrong_placement():
    d = only(diagnose("""
        computation f(t: {float32}@CLIENTS) -> float32@SERVER {
          return federated_apply(fn(v) -> v, t)
        }
        """))
    check(d, "algo.fed:2:10", "the value must be placed at SERVER, but has type {float32}@CLIENTS")


def test_placement_mismatch_operator_on_placed_values():
    d = only(diagnose("computation f(t: {float32}@CLIENTS) -> {float32}@CLIENTS { return t * 2.0 }"))
    check(d, "algo.fed:1:69", "operator '*' works on local values (tensors and structs of tensors), but an operand has type {float32}@CLIENTS; use federated_map")


def test_placement_mismatch_local_function_with_placed_parameter():
    d = only(diagnose("local f(t: {float32}@CLIENTS) -> float32 { return 1.0 }"))
    check(d, "algo.fed:1:12", "a local function takes placement-free values, but parameter 't' has type {float32}@CLIENTS")


def test_placement_mismatch_federated_intrinsic_in_local_function():
    d = only(diagnose("""
        local f(t: float32) -> float32 {
          let x = federated_value(t, SERVER)
          return t
        }
        """))
    check(d, "algo.fed:2:11", "federated_value_at_server cannot be used in local function 'f'")


def test_placement_mismatch_placed_value_used_inside_a_mapped_function():
    d = only(diagnose("""
        computation f(x: {float32}@CLIENTS, y: {float32}@CLIENTS) -> {float32}@CLIENTS {
          return federated_map(fn(v) { let unused = y; return v }, x)
        }
        """))
    check(d, "algo.fed:2:45", "cannot use the placed value 'y' of type {float32}@CLIENTS from outside it")


# --------------------------------------------------------------------------
# Arity


def test_wrong_arity_of_an_intrinsic():
    d = only(diagnose("computation f(t: {float32}@CLIENTS) -> float32@SERVER { return federated_mean(t, t, t) }"))
    check(d, "algo.fed:1:64", "federated_mean takes 1 to 2 arguments (value, weight=...), but 3 were given")


def test_wrong_arity_of_a_computation():
    d = only(diagnose("""
        computation g(a: float32, b: float32) -> float32 { return a + b }
        computation f(t: float32) -> float32 {
          return g(t)
        }
        """))
    check(d, "algo.fed:3:10", "computation 'g' takes 2 arguments (a, b), but 1 was given (missing b)")


def test_wrong_arity_of_a_local_op_and_unknown_attribute():
    first, second = diagnose("""
        local f(t: float32) -> float32 {
          let a = add(t)
          let b = reduce_sum(t, axes=0)
          return t
        }
        """)
    check(first, "algo.fed:2:11", "add takes 2 operands, but 1 was given")
    check(second, "algo.fed:3:25", "reduce_sum has no attribute 'axes' (its attributes: axis, keepdims)")


def test_wrong_arity_of_an_inline_function():
    d = only(diagnose("""
        computation f(x: {float32}@CLIENTS) -> {float32}@CLIENTS {
          return federated_map(fn(a, b) -> a + b, x)
        }
        """))
    check(d, "algo.fed:2:24", "this function has 2 parameters, but is applied to a value of type float32")


def test_wrong_keyword_argument():
    d = only(diagnose("computation f(t: {float32}@CLIENTS) -> float32@SERVER { return federated_mean(t, wieght=t) }"))
    check(d, "algo.fed:1:82", "federated_mean has no parameter 'wieght'; its parameters are value, weight")


# --------------------------------------------------------------------------
# Imports


def test_unresolvable_import_missing_file(tmp_path):
    source = 'import "missing.fed"\nlocal f(x: float32) -> float32 { return x }\n'
    d = only(diagnose(source, filename=str(tmp_path / "main.fed")))
    check(d, f"{tmp_path / 'main.fed'}:1:8", "cannot find imported file 'missing.fed' (looked in ")


def test_unresolvable_import_cycle(tmp_path):
    (tmp_path / "a.fed").write_text('import "b.fed"\nlocal fa(x: float32) -> float32 { return fb(x) }\n')
    (tmp_path / "b.fed").write_text('\nimport "a.fed"\nlocal fb(x: float32) -> float32 { return x }\n')
    with pytest.raises(fed.DiagnosticsError) as info:
        fed.load(tmp_path / "a.fed")
    d = only(info.value.diagnostics)
    check(d, f"{tmp_path / 'b.fed'}:2:8", f"import cycle: {tmp_path / 'a.fed'} -> {tmp_path / 'b.fed'} -> {tmp_path / 'a.fed'}")


def test_errors_in_an_imported_file_are_located_there(tmp_path):
    (tmp_path / "lib.fed").write_text("local helper(x: float32) -> float32 {\n  return x + true\n}\n")
    (tmp_path / "main.fed").write_text('import "lib.fed"\nlocal f(x: float32) -> float32 { return helper(x) }\n')
    with pytest.raises(fed.DiagnosticsError) as info:
        fed.load(tmp_path / "main.fed")
    d = only(info.value.diagnostics)  # not again at the use of helper
    check(d, f"{tmp_path / 'lib.fed'}:2:12", "operands must be numeric tensors, not bool")


def test_a_name_two_imports_define_is_ambiguous_where_used(tmp_path):
    (tmp_path / "a.fed").write_text("local h(x: float32) -> float32 { return x }\n")
    (tmp_path / "b.fed").write_text("local h(x: float32) -> float32 { return x }\n")
    source = 'import "a.fed"\nimport "b.fed"\nlocal f(x: float32) -> float32 { return h(x) }\n'
    d = only(diagnose(source, filename=str(tmp_path / "main.fed")))
    check(d, f"{tmp_path / 'main.fed'}:3:41", "'h' is ambiguous: it is defined by the imported files")


@pytest.mark.parametrize("target, message", [
    ("/etc/os-release", "imports are relative to the importing file's folder"),
    ("/proc/self/environ", "imports are relative to the importing file's folder"),
    ("~/secrets.fed", "imports are relative to the importing file's folder"),
    ("../outside.fed", "it lies outside the folders imports may reach"),
    ("sub/../../outside.fed", "it lies outside the folders imports may reach"),
    ("escape.fed", "it lies outside the folders imports may reach"),  # a symlink out of the project
    ("notes.txt", "an import names a .fed file"),
])
def test_imports_cannot_reach_outside_the_project(tmp_path, target, message):
    project = tmp_path / "project"
    (project / "sub").mkdir(parents=True)
    secret = "SECRET_TOKEN=do-not-print-me"
    (tmp_path / "outside.fed").write_text(secret + "\n")
    (project / "escape.fed").symlink_to(tmp_path / "outside.fed")
    (project / "notes.txt").write_text(secret + "\n")
    source = f'import "{target}"\nlocal f(x: float32) -> float32 {{ return x }}\n'
    d = only(diagnose(source, filename=str(project / "main.fed")))
    check(d, f"{project / 'main.fed'}:1:8", f"cannot import {target!r}: {message}")
    assert secret not in str(d)


def test_an_import_may_climb_back_into_the_main_files_folder(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "common.fed").write_text("local one(x: float32) -> float32 { return x }\n")
    (tmp_path / "lib" / "stats.fed").write_text('import "../common.fed"\nlocal two(x: float32) -> float32 { return one(x) }\n')
    (tmp_path / "main.fed").write_text('import "lib/stats.fed"\nlocal f(x: float32) -> float32 { return two(x) }\n')
    assert "f" in fed.load(tmp_path / "main.fed")


def test_missing_main_file(tmp_path):
    with pytest.raises(fed.DiagnosticsError) as info:
        fed.load(tmp_path / "nope.fed")
    assert "cannot read" in str(info.value) and str(info.value).endswith("1 error")


# --------------------------------------------------------------------------
# Externs


@pytest.fixture(scope="module")
def externs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("errors_externs")
    name = f"fed_error_externs_{uuid.uuid4().hex[:8]}"
    (folder / f"{name}.py").write_text(textwrap.dedent(
        """
        import numpy as np
        import fedc

        @fedc.tf_computation(np.float32)
        def add_one(x):
            return x + 1.0

        def plain(x):
            return x

        @fedc.federated_computation(fedc.FederatedType(np.float32, fedc.CLIENTS))
        def average(x):
            return fedc.federated_mean(x)
        """
    ))
    yield str(folder / "algo.fed"), name
    sys.modules.pop(name, None)


def test_unresolvable_extern_missing_module(tmp_path):
    d = only(diagnose('extern f: (float32 -> float32) = "no_such_module_for_fed:f"', filename=str(tmp_path / "algo.fed"), import_externs=True))
    check(d, f"{tmp_path / 'algo.fed'}:1:34", "cannot find Python module 'no_such_module_for_fed'")


def test_unresolvable_extern_missing_function(externs):
    filename, name = externs
    d = only(diagnose(f'extern f: (float32 -> float32) = "{name}:add_on"', filename=filename, import_externs=True))
    check(d, f"{filename}:1:34", f"Python module {name!r} has no function 'add_on'; did you mean 'add_one'?")


def test_unresolvable_extern_not_a_tf_computation(externs):
    filename, name = externs
    first, second = diagnose(
        f'extern f: (float32 -> float32) = "{name}:plain"\n'
        f'extern g: ({{float32}}@CLIENTS -> float32@SERVER) = "{name}:average"\n',
        filename=filename, import_externs=True,
    )
    check(first, f"{filename}:1:34", f"{name}:plain is a Python function, not a @fedc.tf_computation")
    check(second, f"{filename}:2:11", "an extern is a local TensorFlow function, so its type has no placements")


def test_unresolvable_extern_federated_computation(externs):
    filename, name = externs
    d = only(diagnose(f'extern g: (float32 -> float32) = "{name}:average"', filename=filename, import_externs=True))
    check(d, f"{filename}:1:34", f"{name}:average is a federated computation of type ({{float32}}@CLIENTS -> float32@SERVER), not a @fedc.tf_computation")


def test_unresolvable_extern_declared_type_mismatch(externs):
    filename, name = externs
    d = only(diagnose(f'extern add_one: (int32 -> int32) = "{name}:add_one"', filename=filename, import_externs=True))
    check(d, f"{filename}:1:17", f"extern 'add_one' declares type (int32 -> int32), but {name}:add_one has type (float32 -> float32)")


def test_extern_declared_type_mismatch_shows_long_types_formatted():
    source = (
        "type Weights = <float32[784,10],float32[10]>\n"
        'extern server_update: (Weights -> float32) = "fedavg_tf:server_update"\n'
    )
    d = only(diagnose(source, filename=str(EXAMPLES / "algo.fed"), import_externs=True))
    check(d, f"{EXAMPLES / 'algo.fed'}:2:23", "extern 'server_update' declares type\n  (<\n    float32[784,10],")
    assert "but fedavg_tf:server_update has type\n  (<" in d.message


# --------------------------------------------------------------------------
# Duplicates and recursion


def test_duplicate_definition_parameter_and_let():
    first, second, third = diagnose("""
        computation f(t: float32) -> float32 { return t }
        computation f(t: float32, t: float32) -> float32 {
          let a = t
          let a = t
          return a
        }
        """)
    check(first, "algo.fed:2:13", "duplicate definition of 'f': it is already defined at algo.fed:1:13")
    check(second, "algo.fed:2:27", "duplicate parameter 't': it is already a parameter at algo.fed:2:15")
    check(third, "algo.fed:4:7", "duplicate definition of 'a': it is already defined at algo.fed:3:7")


def test_duplicate_type_alias_and_struct_element():
    first, second, third = diagnose("""
        type T = float32
        type T = int32
        local f(x: T) -> <a=T,a=T> { return <a=x, a=x> }
        """)
    check(first, "algo.fed:2:6", "duplicate definition of 'T'")
    check(second, "algo.fed:3:23", "struct element name 'a' appears twice")  # in the type
    check(third, "algo.fed:3:43", "duplicate struct element name 'a'")  # in the struct literal


def test_recursion_is_reported_once():
    d = only(diagnose("""
        computation f(t: float32) -> float32 { return g(t) }
        computation g(t: float32) -> float32 { return f(t) }
        """))
    check(d, "algo.fed:2:47", "computation 'f' refers to itself: f -> g -> f (recursion is not supported)")


def test_alias_cycle():
    d = only(diagnose("type A = <B>\ntype B = <float32, A>\n"))
    check(d, "algo.fed:2:20", "type 'A' refers to itself: A -> B -> A")


def test_missing_return_and_unreachable_statement():
    first, second = diagnose("""
        local f(x: float32) -> float32 {
          let y = x
        }
        local g(x: float32) -> float32 {
          return x
          let y = x
        }
        """)
    check(first, "algo.fed:3:1", "local 'f' does not return a value: its body must end with 'return <expression>'")
    check(second, "algo.fed:6:3", "unreachable statement: local 'g' has already returned")


# --------------------------------------------------------------------------
# Several errors


def test_three_independent_errors_are_all_reported_in_order():
    source = """
        computation a(t: {int32}@CLIENTS) -> int32@SERVER {
          return federated_mean(t)
        }
        computation b(t: float32) -> float32 {
          return tt
        }
        computation c(t: {float32}@CLIENTS) -> {float32}@CLIENTS {
          return federated_broadcast(t)
        }
        """
    diagnostics = diagnose(source)
    assert [str(d.location) for d in diagnostics] == ["algo.fed:2:10", "algo.fed:5:10", "algo.fed:8:10"]
    check(diagnostics[0], "algo.fed:2:10", "federated_mean expects")
    check(diagnostics[1], "algo.fed:5:10", "unknown name 'tt'; did you mean 't'?")
    check(diagnostics[2], "algo.fed:8:10", "federated_broadcast expects")
    with pytest.raises(fed.DiagnosticsError) as info:
        fed.parse(textwrap.dedent(source).lstrip("\n"), filename="algo.fed")
    assert str(info.value).endswith("\n\n3 errors")


def test_errors_in_several_statements_and_a_syntax_error_are_all_reported():
    diagnostics = diagnose("""
        computation f(x: {float32}@CLIENTS) -> float32@SERVER {
          let a = federated_sum(x) + 1.0
          let b = federated_mean(nope)
          let c = a
          return federated_mean(x)
        }
        computation g(x: float32 -> float32 { return x }
        local h(x: float32) -> float32 { return x + "s" }
        """)
    where = [str(d.location) for d in diagnostics]
    # c = a is not reported again: a's error is.
    assert where == ["algo.fed:2:28", "algo.fed:3:26", "algo.fed:7:26", "algo.fed:8:43"]
    check(diagnostics[0], "algo.fed:2:28", "operator '+' works on local values")
    check(diagnostics[1], "algo.fed:3:26", "unknown name 'nope'")
    check(diagnostics[2], "algo.fed:7:26", "syntax error: unexpected '->'")
    check(diagnostics[3], "algo.fed:8:43", "operands must be numeric tensors, not str")


def test_a_use_of_a_definition_with_errors_is_not_reported_again():
    first, second = diagnose("""
        computation f(x: {float32}@CLIENTS) -> float32@SERVER { return federated_mean(<g(x), h(x)>) }
        computation g(x: {float32}@CLIENTS) -> {float32}@CLIENTS { return federated_map(x) }
        computation h(x: {float32}@CLIENTS) -> {float32}@CLIENTS { return x ++ }
        """)
    check(first, "algo.fed:2:67", "federated_map takes 2 arguments (fn, arg), but 1 was given (missing arg)")
    check(second, "algo.fed:3:72", "syntax error: unexpected '}'; expected an expression")


def test_one_error_is_a_diagnostics_error_with_one_diagnostic():
    with pytest.raises(fed.DiagnosticsError) as info:
        fed.parse("local f(x: float32) -> float32 { return y }", filename="one.fed")
    assert len(info.value.diagnostics) == 1
    assert str(info.value) == (
        "one.fed:1:41: unknown name 'y'\n"
        "  local f(x: float32) -> float32 { return y }\n"
        "                                          ^\n"
        "\n"
        "1 error"
    )


# --------------------------------------------------------------------------
# Many errors: all collected, each at its own line; the message shows the first MAX_SHOWN_ERRORS


def _many_unknown_names(n: int) -> str:
    lines = ["local f(value: float32) -> float32 {"]
    lines += [f"  let a{i} = value + valeu + 1.0" for i in range(n)]
    return "\n".join(lines + ["  return value", "}"]) + "\n"


def test_thousands_of_errors_are_all_collected_and_the_message_shows_the_first_hundred():
    n = 4000
    assert fed.MAX_SHOWN_ERRORS == 100
    with pytest.raises(fed.DiagnosticsError) as info:
        fed.parse(_many_unknown_names(n), filename="many.fed")
    error = info.value
    where = [f"many.fed:{i + 2}:{len(f'  let a{i} = value + ') + 1}" for i in range(n)]
    assert [str(d.location) for d in error.diagnostics] == where
    for i in (0, 99, 100, 2345, n - 1):  # each excerpt is its own line
        d = error.diagnostics[i]
        check(d, where[i], "unknown name 'valeu'")
        assert f"let a{i} = value + valeu + 1.0" in str(d)
    assert error.shown == error.diagnostics[:100]
    assert str(error) == (
        "\n\n".join(str(d) for d in error.diagnostics[:100]) + "\n\n4000 errors (the first 100 are shown)"
    )
    # Suggestions (which compare a name with every name in scope) are made for the first hundred errors.
    assert [d.message for d in error.diagnostics] == (
        ["unknown name 'valeu'; did you mean 'value'?"] * 100 + ["unknown name 'valeu'"] * (n - 100)
    )


def test_the_cli_shows_the_first_hundred_errors_and_counts_them_all(tmp_path, capsys):
    from fedc import cli

    path = tmp_path / "many.fed"
    path.write_text(_many_unknown_names(150))
    assert cli.main(["check", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count(": error: unknown name") == 100
    assert f"{path}:101:21: error: unknown name 'valeu'; did you mean 'value'?\n    let a99 = " in err
    assert "let a100 " not in err
    assert err.rstrip().endswith("150 errors (the first 100 are shown)")


def test_syntax_errors_in_thousands_of_definitions_are_each_located_in_their_definition():
    n = 2000
    source = "".join(f"local f{i}(x: float32) -> float32 {{\n  return x +\n}}\n" for i in range(n))
    with pytest.raises(fed.DiagnosticsError) as info:
        fed.parse(source, filename="syntax.fed")
    error = info.value
    assert [str(d.location) for d in error.diagnostics] == [f"syntax.fed:{3 * i + 3}:1" for i in range(n)]
    for i in (0, 1, 1234, n - 1):
        check(error.diagnostics[i], f"syntax.fed:{3 * i + 3}:1", "syntax error: unexpected '}'; expected an expression")
    assert str(error).endswith("\n\n2000 errors (the first 100 are shown)")


def test_an_error_in_a_file_with_windows_line_breaks_shows_its_line():
    with pytest.raises(fed.DiagnosticsError) as info:
        fed.parse("local f(x: float32) -> float32 {\r\n  return y\r\n}\r\n", filename="crlf.fed")
    (d,) = info.value.diagnostics
    assert str(d) == "crlf.fed:2:10: unknown name 'y'\n    return y\n           ^"
