"""The MapReduce form of a federated round: its definition and its checks.

A round ``(<S@SERVER,{D}@CLIENTS> -> <S@SERVER,X@SERVER>)`` in MapReduce form
is a handful of placement-free computations that a MapReduce-like system runs
in a fixed order (TFF's ``tff.backends.mapreduce.MapReduceForm``)::

    prepare     (S -> C)                   at the server: what is broadcast
    work        (<D,C> -> <A,B>)           at each client: its input A to the
                                           aggregation, B to the secure sums
    zero        ( -> U)                    the aggregation: accumulators start at
    accumulate  (<U,A> -> U)               zero, fold in clients' A, partial
    merge       (<U,U> -> U)               accumulators merge, and report
    report      (U -> R)                   gives the aggregate R at the server
    secure_sum_bitwidth         : BW       the bounds of the secure sums (literals),
    secure_sum_max_input        : MI       one per element of the matching group
    secure_modular_sum_modulus  : MO       of B
    update      (<S,<R,SB>> -> <S,X>)      at the server: the new state and X

``B`` (and ``SB``, its secure sums) is ``<bitwidth=<...>,max_input=<...>,modulus=<...>>``:
one group per secure intrinsic (``federated_secure_sum_bitwidth``,
``federated_secure_sum``, ``federated_secure_modular_sum``), each a struct
with one element per secure sum (empty when there is none).

The form *is* an ordinary :class:`~fedc.ir.Module` whose computations have
these names (plus any placement-free helper computations they refer to, such
as ``fedc.value @client_update`` holding a TensorFlow graph), so it prints,
parses and serializes like any module. :class:`MapReduceForm` wraps such a
module and checks that its parts fit together; :func:`as_round` turns it back
into one federated computation, and :func:`wrap_as_round` makes any
computation from server values and client data to server values a round (its
server values the state), so that it can be lowered too. ``lower-to-mapreduce``
(:mod:`fedc.passes.mapreduce`) produces it; backends execute it (the
reference backend's ``run_round``, :mod:`fedc.backends.reference.mapreduce`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Union

from fedc.errors import FedcError
from fedc.ir import building_blocks as bb
from fedc.ir.build import call
from fedc.ir.module import Module
from fedc.ir.sums import summands
from fedc.types import (
    CLIENTS,
    SERVER,
    FederatedType,
    FunctionType,
    PlacementType,
    StructType,
    Type,
)

__all__ = [
    "PARTS",
    "SECURE_GROUPS",
    "MapReduceForm",
    "RoundWrapping",
    "as_form",
    "as_round",
    "is_map_reduce_form",
    "wrap_as_round",
]

# The computations of a form module, in the order they are printed.
PARTS = (
    "prepare",
    "work",
    "zero",
    "accumulate",
    "merge",
    "report",
    "secure_sum_bitwidth",
    "secure_sum_max_input",
    "secure_modular_sum_modulus",
    "update",
)

# (group of B, the computation holding its bounds, the secure intrinsic), in the order of B.
SECURE_GROUPS = (
    ("bitwidth", "secure_sum_bitwidth", "federated_secure_sum_bitwidth"),
    ("max_input", "secure_sum_max_input", "federated_secure_sum"),
    ("modulus", "secure_modular_sum_modulus", "federated_secure_modular_sum"),
)

_SECURE_GROUP_NAMES = [g for g, _, _ in SECURE_GROUPS]


def _is_placed(t: Type) -> bool:
    return any(isinstance(sub, (FederatedType, PlacementType)) for sub in t.walk())


def _struct(t: Type, what: str, length: Optional[int] = None) -> StructType:
    if not isinstance(t, StructType) or (length is not None and len(t) != length):
        size = f" of {length} elements" if length is not None else ""
        raise FedcError(f"not a MapReduce form: {what} must be a struct{size}, but has type {t}")
    return t


def _function(module: Module, name: str, has_parameter: bool = True) -> FunctionType:
    t = module[name].type_signature
    if not isinstance(t, FunctionType) or (t.parameter is not None) != has_parameter:
        shape = "a function of one parameter" if has_parameter else "a function without parameter"
        raise FedcError(f"not a MapReduce form: @{name} must be {shape}, but has type {t}")
    return t


def _expect_assignable(target: Type, source: Type, what: str) -> None:
    if not target.is_assignable_from(source):
        raise FedcError(f"not a MapReduce form: {what}: expected {target}, got {source}")


class MapReduceForm:
    """A MapReduce form, held as a module of named placement-free computations.

    ``MapReduceForm(module)`` checks that ``module`` has every part of
    :data:`PARTS`, that none is placed, and that their types line up; it
    raises :class:`~fedc.FedcError` naming the part that does not fit. The
    part computations are ``form.module["prepare"]``, ... and the types of
    the form are properties (``state_type`` S, ``data_type`` D,
    ``broadcast_type`` C, ``aggregation_input_type`` A, ``secure_input_type``
    B, ``accumulator_type`` U, ``report_type`` R, ``result_type`` <S,X>,
    ``output_type`` X).
    """

    def __init__(self, module: Module):
        if not isinstance(module, Module):
            raise FedcError(f"a MapReduce form is a Module of named computations, not {type(module).__name__}")
        missing = [p for p in PARTS if p not in module]
        if missing:
            raise FedcError(
                f"not a MapReduce form: module @{module.name} has no "
                + ", ".join("@" + p for p in missing)
                + f" (a form has {', '.join('@' + p for p in PARTS)})"
            )
        for symbol, node in module.items():
            if _is_placed(node.type_signature):
                raise FedcError(
                    f"not a MapReduce form: @{symbol} has the placed type {node.type_signature}; "
                    "every computation of a form is placement-free"
                )
        self.module = module
        prepare = _function(module, "prepare")
        work = _function(module, "work")
        zero = _function(module, "zero", has_parameter=False)
        accumulate = _function(module, "accumulate")
        merge = _function(module, "merge")
        report = _function(module, "report")
        update = _function(module, "update")

        self.state_type: Type = prepare.parameter
        self.broadcast_type: Type = prepare.result
        work_in = _struct(work.parameter, "the parameter <D,C> of @work", 2)
        self.data_type: Type = work_in[0]
        _expect_assignable(work_in[1], self.broadcast_type, "the broadcast C that @work takes from @prepare")
        work_out = _struct(work.result, "the result <A,B> of @work", 2)
        self.aggregation_input_type: Type = work_out[0]
        self.secure_input_type: StructType = _struct(work_out[1], "the secure-sum inputs B of @work", 3)
        if self.secure_input_type.names() != _SECURE_GROUP_NAMES:
            raise FedcError(
                f"not a MapReduce form: the secure-sum inputs B of @work must be "
                f"<bitwidth=<...>,max_input=<...>,modulus=<...>>, but have type {self.secure_input_type}"
            )
        for group, part, uri in SECURE_GROUPS:
            inputs = _struct(self.secure_input_type[group], f"group {group} of B")
            bounds = module[part]
            if isinstance(bounds.type_signature, FunctionType):
                raise FedcError(f"not a MapReduce form: @{part} is a value (the bounds), not a function")
            bound_types = _struct(bounds.type_signature, f"@{part}", len(inputs))
            if bound_types.names() != inputs.names():
                raise FedcError(
                    f"not a MapReduce form: @{part} of type {bound_types} does not name the elements of "
                    f"group {group} of B, {inputs}"
                )
        self.accumulator_type: Type = zero.result
        _expect_assignable(
            accumulate.parameter,
            StructType([self.accumulator_type, self.aggregation_input_type]),
            "the parameter <U,A> of @accumulate",
        )
        _expect_assignable(self.accumulator_type, accumulate.result, "the result U of @accumulate")
        _expect_assignable(
            merge.parameter, StructType([self.accumulator_type, self.accumulator_type]), "the parameter <U,U> of @merge"
        )
        _expect_assignable(self.accumulator_type, merge.result, "the result U of @merge")
        _expect_assignable(report.parameter, self.accumulator_type, "the parameter U of @report")
        self.report_type: Type = report.result
        _expect_assignable(
            update.parameter,
            StructType([self.state_type, StructType([self.report_type, self.secure_input_type])]),
            "the parameter <S,<R,SB>> of @update",
        )
        self.result_type: StructType = _struct(update.result, "the result <S,X> of @update", 2)
        _expect_assignable(self.state_type, self.result_type[0], "the new state S that @update returns")
        self.output_type: Type = self.result_type[1]

    @classmethod
    def from_module(cls, module: Module) -> "MapReduceForm":
        return cls(module)

    def part(self, name: str) -> bb.Node:
        """The computation ``@name`` of the form (``"prepare"``, ``"work"``, ...)."""
        return self.module[name]

    @property
    def type_signature(self) -> FunctionType:
        """The round this form runs: ``(<S@SERVER,{D}@CLIENTS> -> <S@SERVER,X@SERVER>)``."""
        parameter = StructType([FederatedType(self.state_type, SERVER), FederatedType(self.data_type, CLIENTS)])
        result = StructType(
            [(n, FederatedType(t, SERVER)) if n else FederatedType(t, SERVER) for n, t in self.result_type.items()]
        )
        return FunctionType(parameter, result)

    def secure_bounds(self) -> dict[str, bb.Node]:
        """group of B -> the literal bounds of its secure sums."""
        return {group: self.module[part] for group, part, _ in SECURE_GROUPS}

    def __eq__(self, other) -> bool:
        return isinstance(other, MapReduceForm) and self.module == other.module

    def __hash__(self) -> int:
        return hash(self.module)

    def __repr__(self) -> str:
        return f"<fedc.ir.mapreduce.MapReduceForm @{self.module.name}: {self.type_signature}>"

    def __str__(self) -> str:
        return str(self.module)


def is_map_reduce_form(module: Module) -> bool:
    """Whether ``module`` is a well-formed MapReduce form."""
    if not all(p in module for p in PARTS):
        return False
    try:
        MapReduceForm(module)
    except FedcError:
        return False
    return True


def as_form(form: Union[MapReduceForm, Module]) -> MapReduceForm:
    """``form`` itself, or the form that module ``form`` holds (checked)."""
    return form if isinstance(form, MapReduceForm) else MapReduceForm(form)


def as_round(form: Union[MapReduceForm, Module], name: str = "round", sum_aggregation: bool = False) -> Module:
    """The form as one federated computation ``@name`` of type ``form.type_signature``.

    The round is built from the parts with ``federated_apply`` (prepare,
    update), ``federated_broadcast``, ``federated_map`` (work),
    ``federated_aggregate`` (zero, accumulate, merge, report) and the secure
    intrinsics, so that any backend that runs federated computations runs a
    form (TFF's ``get_computation_for_map_reduce_form``). The module keeps
    the form's computations, which the round refers to by symbol.

    With ``sum_aggregation``, an aggregation that is a sum (zeros,
    ``accumulate(a, v) = a + g(v)``, ``merge`` adding: :func:`fedc.ir.sums.summands`,
    as the forms of sums and means are) becomes ``federated_sum`` of ``g``
    over the clients, then ``report`` — one reduction over the clients where
    ``federated_aggregate`` folds them one after another. The result is the
    same up to the order of floating-point additions.
    """
    form = as_form(form)
    module = form.module
    if name in module:
        raise FedcError(f"as_round: the form already has a computation @{name}")

    def ref(part: str) -> bb.SymbolRef:
        return bb.SymbolRef(part, module[part].type_signature)

    steps: list[tuple[str, bb.Node]] = []

    def bind(local: str, node: bb.Node) -> bb.Reference:
        steps.append((local, node))
        return bb.Reference(local, node.type_signature)

    def selector(source_type: Type, path: tuple[int, ...]) -> bb.Reference:
        """A local ``(source_type -> element at path)`` function."""
        parameter = f"v{len(steps)}"
        node: bb.Node = bb.Reference(parameter, source_type)
        for index in path:
            node = bb.Selection(node, index=index)
        return bind(f"select{len(steps)}", bb.Lambda(parameter, source_type, node))

    parameter = form.type_signature.parameter
    arg = bb.Reference("arg", parameter)
    state = bb.Selection(arg, index=0)
    data = bb.Selection(arg, index=1)
    prepared = bind("prepared", call("federated_apply", bb.Struct([ref("prepare"), state])))
    broadcast = bind("broadcast", call("federated_broadcast", prepared))
    zipped = bind("client_input", call("federated_zip_at_clients", bb.Struct([data, broadcast])))
    work = bind("work", call("federated_map", bb.Struct([ref("work"), zipped])))
    work_type = module["work"].type_signature.result
    a = bind("aggregation_input", call("federated_map", bb.Struct([selector(work_type, (0,)), work])))
    g = summands(module["zero"], module["accumulate"], module["merge"]) if sum_aggregation else None
    if g is not None:
        mapped = bind("summands", call("federated_map", bb.Struct([bind("summand", g), a])))
        total = bind("total", call("federated_sum", mapped))
        report = bind("report", call("federated_apply", bb.Struct([ref("report"), total])))
    else:
        zero = bind("zero", bb.Call(ref("zero")))
        report = bind(
            "report", call("federated_aggregate", bb.Struct([a, zero, ref("accumulate"), ref("merge"), ref("report")]))
        )
    groups = []
    for index, (group, part, uri) in enumerate(SECURE_GROUPS):
        elements = []
        for k, (element_name, _) in enumerate(work_type[1][group].items()):
            local = f"{group}_{k}"
            value = bind(f"{local}_input", call("federated_map", bb.Struct([selector(work_type, (1, index, k)), work])))
            bound = bind(f"{local}_bound", bb.Selection(ref(part), index=k))
            elements.append((element_name, bind(local, call(uri, bb.Struct([value, bound])))))
        if elements:
            groups.append((group, bind(f"{group}_sums", call("federated_zip_at_server", bb.Struct(elements)))))
        else:
            groups.append((group, bind(f"{group}_sums", call("federated_value_at_server", bb.Struct([])))))
    secure = bind("secure_sums", call("federated_zip_at_server", bb.Struct(groups)))
    aggregates = bind("aggregates", call("federated_zip_at_server", bb.Struct([report, secure])))
    update_input = bind("update_input", call("federated_zip_at_server", bb.Struct([state, aggregates])))
    updated = bind("updated", call("federated_apply", bb.Struct([ref("update"), update_input])))
    result_type = form.result_type
    elements = []
    for index, (element_name, _) in enumerate(result_type.items()):
        pick = selector(result_type, (index,))
        elements.append((element_name, bind(f"result_{index}", call("federated_apply", bb.Struct([pick, updated])))))
    body = bb.Block(steps, bb.Struct(elements))
    return Module(module.name, list(module.items()) + [(name, bb.Lambda("arg", parameter, body))])


# --------------------------------------------------------------------------
# Any computation from server values and client data to server values, as a round


@dataclasses.dataclass(frozen=True)
class RoundWrapping:
    """Where a wrapped computation's parameter elements go in the round :func:`wrap_as_round` made of it.

    ``symbol`` is the round's name; ``server`` the positions (in the
    computation's parameter) of the values at the server, which become the
    round's state S in that order, and ``clients`` those of the
    ``{D}@CLIENTS`` values, its client data. ``struct_parameter`` is false
    when the parameter is a single ``{D}@CLIENTS``.
    """

    symbol: str
    struct_parameter: bool
    server: tuple[int, ...]
    clients: tuple[int, ...]

    def split(self, argument: Any) -> tuple[tuple, list]:
        """``(S, [clients' values, one per clients element])`` of an argument of the computation."""
        if not self.struct_parameter:
            return (), [argument]
        return tuple(argument[i] for i in self.server), [argument[i] for i in self.clients]


def _server_value(t: Type) -> bool:
    return isinstance(t, FederatedType) and t.placement is SERVER


def wrap_as_round(module: Module, symbol: str, name: str = "as_round") -> tuple[Module, RoundWrapping]:
    """``module`` with a round ``@name`` that runs ``@symbol``, and how their parameters correspond.

    ``@symbol`` must take values at the server and at least one
    ``{D}@CLIENTS`` (a struct of them, or one ``{D}@CLIENTS``) and return a
    value at the server or a struct of such. The round is
    ``(<S@SERVER,{D1}@CLIENTS,...> -> <S@SERVER,X@SERVER>)``: S is the struct of
    the computation's server values (``<>`` when there is none), returned
    unchanged; the D's are its client values; X is its result (a struct of
    server values zipped). Lowering the round (``to-mapreduce{entry=NAME}``)
    gives the MapReduce form by which a distributed runtime runs the
    computation. A computation that does not fit is a
    :class:`~fedc.FedcError` saying why.
    """
    if symbol not in module:
        module.lookup(symbol)  # raises, naming close matches
    t = module[symbol].type_signature
    if not isinstance(t, FunctionType) or t.parameter is None:
        raise FedcError(f"@{symbol} has type {t}: a round takes client data")
    parameter = t.parameter
    elements = list(parameter.items()) if isinstance(parameter, StructType) else [(None, parameter)]
    server, clients = [], []
    for i, (element_name, element) in enumerate(elements):
        if _server_value(element):
            server.append(i)
        elif isinstance(element, FederatedType) and element.placement is CLIENTS and not element.all_equal:
            clients.append(i)
        else:
            raise FedcError(f"element {element_name or i} of the parameter of @{symbol} has type {element}: "
                            "a round takes values at the server and {D}@CLIENTS")
    if not clients:
        raise FedcError(f"the parameter of @{symbol}, {parameter}, has no {{D}}@CLIENTS: a round takes client data")
    result = t.result
    results = list(result.items()) if isinstance(result, StructType) else None
    if (results is None and not _server_value(result)) or (
            results is not None and (not results or not all(_server_value(e) for _, e in results))):
        raise FedcError(f"@{symbol} returns {result}: a round returns values at the server")
    if name in module:
        raise FedcError(f"wrap_as_round: the module already has a computation @{name}")

    state_type = StructType([(elements[i][0], elements[i][1].member) for i in server])
    round_parameter = StructType([FederatedType(state_type, SERVER)] + [elements[i][1] for i in clients])
    arg = bb.Reference("arg", round_parameter)
    steps: list[tuple[str, bb.Node]] = []

    def bind(local: str, node: bb.Node) -> bb.Reference:
        steps.append((local, node))
        return bb.Reference(local, node.type_signature)

    state = bind("state", bb.Selection(arg, index=0))
    values: dict[int, bb.Node] = {}
    for k, i in enumerate(server):
        pick = bb.Lambda("s", state_type, bb.Selection(bb.Reference("s", state_type), index=k))
        values[i] = bind(f"server_{k}", call("federated_apply", bb.Struct([pick, state])))
    for k, i in enumerate(clients):
        values[i] = bind(f"clients_{k}", bb.Selection(arg, index=1 + k))
    if isinstance(parameter, StructType):
        argument: bb.Node = bb.Struct([(elements[i][0], values[i]) for i in range(len(elements))])
    else:
        argument = values[0]
    output = bind("result", bb.Call(bb.SymbolRef(symbol, t), argument))
    if results is not None:
        parts = [(n, bind(f"result_{k}", bb.Selection(output, index=k))) for k, (n, _) in enumerate(results)]
        output = bind("zipped", call("federated_zip_at_server", bb.Struct(parts)))
    body = bb.Block(steps, bb.Struct([state, output]))
    wrapped = Module(module.name, list(module.items()) + [(name, bb.Lambda("arg", round_parameter, body))])
    return wrapped, RoundWrapping(name, isinstance(parameter, StructType), tuple(server), tuple(clients))
