"""The registry's facts about each intrinsic, and the queries passes, analyses and frontends use."""

import ast
import pathlib

import pytest

import fedc
from fedc import ir
from fedc.ir import intrinsics, local_ops
from fedc.ir.intrinsics import Direction, IntrinsicKind, OperandRole, Role, Sends
from fedc.types import CLIENTS, SERVER

FEDERATED = [d for d in intrinsics.all_definitions() if d.is_federated]
IR_DIR = pathlib.Path(ir.__file__).parent


def uris(definitions) -> set:
    return {d.uri for d in definitions}


def top_level_arity(signature: str) -> int:
    """The number of elements of a signature's struct parameter (1 for any other parameter, 0 for none)."""
    parameter = _split_top(signature.replace("->", "→")[1:-1], "→")[0].strip()
    if not parameter:
        return 0
    if parameter.startswith("<") and parameter.endswith(">"):
        return len(_split_top(parameter[1:-1], ","))
    return 1


def _split_top(text: str, separator: str) -> list:
    """``text`` split at ``separator`` outside brackets (``->`` spelled ``→``)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "<({[":
            depth += 1
        elif ch in ">)}]":
            depth -= 1
        elif ch == separator and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return parts + [text[start:]]


@pytest.mark.parametrize("definition", intrinsics.all_definitions(), ids=lambda d: d.uri)
def test_every_intrinsic_has_an_op_name_a_role_and_its_operands(definition):
    prefix = {IntrinsicKind.LOCAL: "local.", IntrinsicKind.SEQUENCE: "seq."}.get(definition.kind, "fed.")
    assert definition.op_name.startswith(prefix)
    assert intrinsics.by_op_name(definition.op_name) is definition
    assert (definition.role is Role.LOCAL) == (not definition.is_federated)
    if definition.kind is IntrinsicKind.ZIP:  # its one operand is a struct of any number of placed values
        assert len(definition.operands) == 1
    else:
        assert len(definition.operands) == top_level_arity(definition.signature)
    assert len(set(definition.operand_names)) == len(definition.operands)
    for rule in definition.crossings:
        assert rule.operand in definition.operand_names
    assert definition.has_parameter == bool(definition.operands)


def test_roles_in_a_round():
    assert uris(intrinsics.with_role(Role.SERVER)) == {
        "federated_apply", "federated_value_at_server", "federated_eval_at_server", "federated_zip_at_server"}
    assert uris(intrinsics.with_role(Role.CLIENTS)) == {
        "federated_map", "federated_map_all_equal", "federated_value_at_clients", "federated_eval_at_clients",
        "federated_zip_at_clients"}
    assert uris(intrinsics.with_role(Role.BROADCAST)) == {"federated_broadcast"}
    assert uris(intrinsics.with_role(Role.SECURE_AGGREGATION)) == {
        "federated_secure_sum", "federated_secure_sum_bitwidth", "federated_secure_modular_sum"}
    assert uris(intrinsics.with_role(Role.AGGREGATION)) == {
        "federated_mean", "federated_weighted_mean", "federated_sum", "federated_min", "federated_max",
        "federated_aggregate"}
    assert uris(intrinsics.with_role(Role.SELECT)) == {"federated_select", "federated_secure_select"}
    mapreduce = {d.uri for d in intrinsics.all_definitions() if d.mapreduce_aggregation}
    assert mapreduce == {"federated_mean", "federated_weighted_mean", "federated_sum", "federated_aggregate"}
    # with_role keeps all_definitions' order and takes several roles at once
    both = intrinsics.with_role(Role.SERVER, Role.BROADCAST)
    assert both == [d for d in intrinsics.all_definitions() if d in both]
    assert uris(both) == uris(intrinsics.with_role(Role.SERVER)) | {"federated_broadcast"}


def test_kinds():
    assert intrinsics.with_kind(IntrinsicKind.LOCAL) == sorted(local_ops.LOCAL_OPS, key=lambda d: d.uri)
    assert uris(intrinsics.with_kind(IntrinsicKind.SEQUENCE)) == {"sequence_map", "sequence_reduce", "sequence_sum"}
    assert uris(intrinsics.with_kind(IntrinsicKind.ZIP, IntrinsicKind.BROADCAST)) == {
        "federated_zip_at_clients", "federated_zip_at_server", "federated_broadcast"}
    assert sum(len(intrinsics.with_kind(k)) for k in IntrinsicKind) == len(intrinsics.all_definitions())


@pytest.mark.parametrize("definition", FEDERATED, ids=lambda d: d.uri)
def test_operand_placements_are_what_the_type_rule_requires(definition):
    """A call whose placed operand is at the wrong placement is rejected by the type rule."""
    placed = [o for o in definition.operands if o.placement is not None and o.role is not OperandRole.FUNCTION]
    for operand in placed:
        assert operand.placement in (CLIENTS, SERVER)
    # The facts agree with the signature: a placed operand's element is written T@P or {T}@P.
    if len(definition.operands) > 1 and definition.kind is not IntrinsicKind.ZIP:
        parameter = _split_top(definition.signature.replace("->", "→")[1:-1], "→")[0].strip()
        for operand, text in zip(definition.operands, _split_top(parameter[1:-1], ",")):
            if operand.placement is not None:
                assert text.endswith(f"@{operand.placement}"), (operand, text)
            elif operand.role is OperandRole.FUNCTION:
                assert "→" in text



def test_crossings():
    broadcast = ir.lookup("federated_broadcast").crossings
    assert [(c.direction, c.sends) for c in broadcast] == [(Direction.TO_CLIENTS, Sends.MEMBER)]
    assert [c.what for c in ir.lookup("federated_weighted_mean").crossings] == ["value", "weight"]
    assert [c.sends for c in ir.lookup("federated_aggregate").crossings] == [Sends.ACCUMULATOR]
    assert [c.direction for c in ir.lookup("federated_select").crossings] == [Direction.TO_SERVER,
                                                                           Direction.TO_CLIENTS]
    uploads = {d.uri for d in FEDERATED if d.uploads}
    assert uploads == uris(intrinsics.with_role(Role.AGGREGATION, Role.SECURE_AGGREGATION, Role.SELECT))
    assert not any(d.crossings for d in intrinsics.all_definitions() if not d.is_federated)
    assert [d.uri for d in FEDERATED if d.originates_at_clients] == ["federated_eval_at_clients"]


def test_why_an_aggregation_cannot_be_made_secure():
    for d in intrinsics.with_role(Role.AGGREGATION, Role.SELECT):
        assert (d.insecure_reason is None) == d.secure, d.uri
    assert "a maximum is not a sum" in ir.lookup("federated_max").insecure_reason
    assert ir.lookup("federated_mean").insecure_reason == intrinsics.NOT_A_SUM
    for d in intrinsics.with_role(Role.SECURE_AGGREGATION):
        assert d.secure and d.insecure_reason is None


def test_op_names_are_unique_and_registering_a_taken_one_is_rejected():
    names = intrinsics.op_names()
    assert len(names) == len(set(names)) == len(intrinsics.all_definitions())
    assert intrinsics.by_op_name("fed.nonsense") is None
    clash = intrinsics.IntrinsicDef("test_clash", "(T -> T)", IntrinsicKind.LOCAL, lambda d, p, a: p, "a test",
                                    op_name="fed.mean")
    with pytest.raises(ValueError, match="op name fed.mean of test_clash is taken by federated_mean"):
        intrinsics.register(clash)
    with pytest.raises(fedc.FedcTypeError, match="unknown intrinsic 'test_clash'"):
        ir.lookup("test_clash")


def _imports(path: pathlib.Path) -> set:
    """Every module a file imports, at any level (function-level imports too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def test_the_registry_does_not_import_building_blocks_or_back():
    for name in ("registry", "intrinsics", "local_ops"):
        imported = _imports(IR_DIR / f"{name}.py")
        assert "fedc.ir.building_blocks" not in imported, name
        assert not any(m.startswith("fedc.frontend") or m.startswith("fedc.passes") for m in imported), name
    assert not any(m.startswith("fedc.ir.") for m in _imports(IR_DIR / "registry.py") if m != "fedc.ir.registry")
    assert "fedc.ir.intrinsics" not in _imports(IR_DIR / "local_ops.py")


def test_the_ir_layer_imports_no_frontend():
    for path in IR_DIR.glob("*.py"):
        assert not any(m.startswith("fedc.frontend") for m in _imports(path)), path.name
