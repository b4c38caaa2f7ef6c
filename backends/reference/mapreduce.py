"""Running a MapReduce form (:mod:`fedc.ir.mapreduce`) on the reference interpreter, step by step."""

from __future__ import annotations

from typing import Any, Union

from fedc.backends.base import check_rules
from fedc.errors import FedcError
from fedc.limits import deep_recursion
from fedc.ir.mapreduce import SECURE_GROUPS, MapReduceForm, as_form
from fedc.ir.module import Module
from fedc.ir.verifier import verify
from fedc.values import Clients, from_python, to_python

from .interpreter import Interpreter
from .intrinsics import RULES, secure_sum

__all__ = ["partition", "run_round"]


def partition(items: list, count: int) -> list[list]:
    """``items`` in ``count`` contiguous groups, sizes as even as can be (the first ones larger)."""
    count = max(1, count)
    size, extra = divmod(len(items), count)
    groups, start = [], 0
    for i in range(count):
        end = start + size + (1 if i < extra else 0)
        groups.append(items[start:end])
        start = end
    return groups


@deep_recursion
def run_round(
    form: Union[MapReduceForm, Module],
    state: Any,
    client_data: list,
    partitions: int = 2,
) -> tuple[Any, Any]:
    """Runs one round of a MapReduce form on the reference interpreter.

    ``state`` is a Python value of S, ``client_data`` a list with one value
    of D per client (for a round with several client parameters, D is their
    struct: one dict or tuple per client). The steps are those a deployment
    takes: ``prepare`` once at the server; ``work`` on every client with the
    broadcast; the clients split into ``partitions`` groups (2, like the
    reference interpreter's ``federated_aggregate``), each folded from
    ``zero`` with ``accumulate``, the partial accumulators combined with
    ``merge`` and ``report`` ed; each element of B summed by its secure
    intrinsic (the reference implementation, which checks every client's
    input range); then ``update``. Returns ``(new_state, x)`` as Python
    values (``x`` is ``()`` for a round that returns only its state).
    """
    form = as_form(form)
    module = form.module
    verify(module)
    check_rules(module, RULES, "reference")
    if not isinstance(client_data, (list, tuple)):
        raise FedcError(f"run_round: client_data is a list with one value of {form.data_type} per client, "
                        f"not a {type(client_data).__name__}")
    count = len(client_data)
    interpreter = Interpreter(module, count)
    state_value = from_python(state, form.state_type, "the state of the round")
    data = [from_python(d, form.data_type, f"the data of client {i}") for i, d in enumerate(client_data)]

    broadcast = interpreter.symbol("prepare")(state_value)
    work = interpreter.symbol("work")
    outputs = [work((d, broadcast)) for d in data]

    zero = interpreter.symbol("zero")
    accumulate = interpreter.symbol("accumulate")
    merge = interpreter.symbol("merge")
    partials = []
    for group in partition(outputs, partitions):
        if not group:
            continue
        accumulator = zero(None)
        for a, _ in group:
            accumulator = accumulate((accumulator, a))
        partials.append(accumulator)
    merged = partials[0] if partials else zero(None)
    for other in partials[1:]:
        merged = merge((merged, other))
    report = interpreter.symbol("report")(merged)

    secure = []
    for index, (group, part, uri) in enumerate(SECURE_GROUPS):
        bounds = interpreter.symbol(part)
        sums = []
        for k, value_type in enumerate(form.secure_input_type[group]):
            values = Clients.from_items([b[index][k] for _, b in outputs])
            sums.append(secure_sum(uri, values, bounds[k], value_type))
        secure.append(tuple(sums))

    new_state, output = interpreter.symbol("update")((state_value, (report, tuple(secure))))
    return to_python(new_state, form.result_type[0]), to_python(output, form.output_type)
