"""No silent wrong results from aggregations: integer sums do not wrap (anywhere), weighted means need weight."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fedc


def summing(dtype):
    @fedc.federated_computation(fedc.FederatedType(dtype, fedc.CLIENTS))
    def total(values):
        return fedc.federated_sum(values)

    return total


@pytest.mark.parametrize("dtype, values, bad", [
    (np.int32, [2**31 - 1, 1], 2**31),
    (np.int32, [-(2**31), -1], -(2**31) - 1),
    (np.uint8, [200, 100], 300),
    (np.int64, [2**63 - 1, 1], 2**63),
])
def test_integer_sums_that_do_not_fit_are_refused(dtype, values, bad):
    # (on workers the sum is the MapReduce form's accumulate and merge: the add there is what overflows)
    with pytest.raises(fedc.FedcError,
                       match=f"(federated_sum|add) of {np.dtype(dtype).name} values overflows: a sum is {bad}"):
        summing(dtype)(values)


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.uint16, np.int64])
def test_integer_sums_that_fit_are_exact(dtype):
    info = np.iinfo(dtype)
    values = [int(info.max) - 1, 1] + ([int(info.min) + 1, -1] if info.min < 0 else [])  # partial sums touch the ends
    assert summing(dtype)(values) == sum(values)
    vectors = fedc.federated_computation(fedc.FederatedType(fedc.TensorType(dtype, [2]), fedc.CLIENTS))(
        lambda v: fedc.federated_sum(v))
    assert vectors([np.array([info.max, 1], dtype), np.array([0, 2], dtype)]).tolist() == [info.max, 3]


def weighted():
    clients = fedc.FederatedType(np.float32, fedc.CLIENTS)

    @fedc.federated_computation(clients, clients)
    def mean(values, weights):
        return fedc.federated_mean(values, weights)

    return mean


def test_weighted_mean_needs_some_weight_and_no_negative_weight():
    mean = weighted()
    assert mean([1.0, 3.0], [1.0, 3.0]) == 2.5
    assert mean([1.0, 3.0], [0.0, 2.0]) == 3.0
    with pytest.raises(fedc.FedcError, match="weights sum to 0"):
        mean([1.0, 3.0], [0.0, 0.0])
    with pytest.raises(fedc.FedcError, match="weight is negative"):
        mean([1.0, 3.0], [2.0, -1.0])


# --------------------------------------------------------------------------
# Every integer sum follows federated_sum's rule: sequence_sum, add, reduce_sum, and so the
# accumulate and merge of aggregates and of the MapReduce form


INTS = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]


def near_the_ends(dtype):
    """Lists of values whose partial sums run along the ends of ``dtype``'s range."""
    info = np.iinfo(dtype)
    small = st.integers(-3, 3) if info.min < 0 else st.integers(0, 3)
    big = st.sampled_from([int(info.max), int(info.max) - 1, int(info.min), int(info.min) + 1, 0])
    return st.lists(st.one_of(small, big), min_size=1, max_size=5)


def fits(total, dtype):
    info = np.iinfo(dtype)
    return int(info.min) <= total <= int(info.max)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_sequence_sums_are_exact_or_refused(data):
    dtype = data.draw(st.sampled_from(INTS))
    values = data.draw(near_the_ends(dtype))
    total = fedc.federated_computation(fedc.SequenceType(dtype))(lambda s: fedc.sequence_sum(s))
    if fits(sum(values), dtype):
        assert int(total([np.asarray(v, dtype) for v in values])) == sum(values)
    else:
        with pytest.raises(fedc.FedcError, match=f"sequence_sum of {np.dtype(dtype).name} values overflows: a sum is {sum(values)}"):
            total([np.asarray(v, dtype) for v in values])


LOCAL_SUMS = """\
local pair(a: {T}, b: {T}) -> {T} {{
  return a + b
}}

local total(a: {T}[?]) -> {T} {{
  return reduce_sum(a)
}}

computation add_at_server(a: {T}@SERVER, b: {T}@SERVER) -> {T}@SERVER {{
  return federated_map(pair, federated_zip(<a, b>))
}}

computation add_per_client(a: {{{T}}}@CLIENTS, b: {{{T}}}@CLIENTS) -> {{{T}}}@CLIENTS {{
  return federated_map(pair, federated_zip(<a, b>))
}}

computation reduce_at_server(a: {T}[?]@SERVER) -> {T}@SERVER {{
  return federated_map(total, a)
}}
"""


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_add_and_reduce_sum_of_integers_never_wrap(data):
    from fedc.computation import Computation
    from fedc.frontend import fed

    dtype = data.draw(st.sampled_from(INTS))
    name = np.dtype(dtype).name
    module = fed.parse(LOCAL_SUMS.format(T=name), filename="sums.fed")
    a, b = data.draw(near_the_ends(dtype)), data.draw(near_the_ends(dtype))
    b = (b * len(a))[: len(a)]
    for symbol in ("add_at_server", "add_per_client"):
        f = Computation(module, symbol)
        pairs = list(zip(a, b))
        args = (np.asarray(a, dtype), np.asarray(b, dtype)) if symbol == "add_per_client" else (np.asarray(a[0], dtype), np.asarray(b[0], dtype))
        if symbol == "add_at_server":
            pairs = pairs[:1]
        bad = [x + y for x, y in pairs if not fits(x + y, dtype)]
        if bad:
            with pytest.raises(fedc.FedcError, match=rf"^sums.fed:2:12: add of {name} values overflows: a sum is "):
                f(*args)
        else:
            assert [int(v) for v in np.atleast_1d(f(*args))] == [x + y for x, y in pairs]
    reduce = Computation(module, "reduce_at_server")
    if fits(sum(a), dtype):
        assert int(reduce(np.asarray(a, dtype))) == sum(a)
    else:
        with pytest.raises(fedc.FedcError, match=rf"^sums.fed:6:10: reduce_sum of {name} values overflows: a sum is {sum(a)}"):
            reduce(np.asarray(a, dtype))


ROUND = """\
computation round(s: int32@SERVER, c: {int32}@CLIENTS) -> <s=int32@SERVER, total=int32@SERVER> {
  return <s=s, total=federated_sum(c)>
}
"""


@pytest.mark.parametrize("pipeline", ["desugar", "inline,call-dominant,lower-to-mapreduce"])
def test_integer_sums_rewritten_by_passes_still_never_wrap(pipeline):
    """federated_sum as an aggregate in sum form, and as the MapReduce form's accumulate and merge."""
    from fedc import passes
    from fedc.backends.reference import run_round
    from fedc.computation import Computation
    from fedc.frontend import fed
    from fedc.ir.mapreduce import MapReduceForm

    source = fed.parse(ROUND, filename="round.fed")
    module = passes.run(source, pipeline).module
    top = 2**31 - 1
    # (values, whether every partial sum fits): an aggregate checks each accumulate and merge
    cases = [([top - 1, 1], True), ([top, 1], False), ([-(2**31), -1], False), ([5, -7, 2], True), ([top, top, -top], False)]
    cluster = getattr(fedc.context.get_backend(), "cluster", None)
    if cluster is None or cluster.requested_workers == 1:  # (one worker: its shard total is the total)
        assert Computation(source, "round")(0, [top, top, -top])["total"] == top  # federated_sum checks the total only
    else:  # on workers each shard's total is checked, then their merge (docs/runtime.md): [top, top] | [-top]
        with pytest.raises(fedc.FedcError, match=r"federated_sum of int32 values overflows: a sum is 4294967294.*"
                                                  r"\(clients 0–1 of 3, on a worker"):
            Computation(source, "round")(0, [top, top, -top])
    for values, fine in cases:
        if "mapreduce" in pipeline:
            run = lambda: run_round(MapReduceForm(module), 0, values, partitions=len(values))[1]  # noqa: E731
        else:
            run = lambda: Computation(module, "round")(0, values)["total"]  # noqa: E731
        if fine:
            assert int(run()) == sum(values)
        else:
            with pytest.raises(fedc.FedcError, match=r"^round.fed:2:22: add of int32 values overflows: a sum is -?\d+, outside int32.s range"):
                run()
