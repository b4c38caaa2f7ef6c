"""TensorFlow payloads with each denied op class, in each place a graph can hold one, through each entry.

fedc must refuse every one with a FedcError before it runs (an admitted one
would write or read a file in the sandbox, call Python, end or hang the
process), and the structural tricks must not get a payload past the check or
crash the interpreter. The tier takes each class twice, each time through
another entry (textual IR, protobuf, a hand-built node, tracing, ``fedc
run``) and from another place (the graph, a library function, a nested
function, a cond branch, a loop body, a dataset function), so every entry
and every place is covered; ``scripts/fuzz --kind tfpayload`` takes every
class through every entry from every place, then damaged payloads.
"""

import random

import pytest

from fuzz import kinds, tf_payloads
from fuzz.conftest import SEED, check_cases

pytest.importorskip("tensorflow")

WHERES, ENTRIES = tf_payloads.WHERES, tf_payloads.ENTRIES


def _cases(recipes):
    for i, recipe in enumerate(recipes):
        case = kinds.gen_tfpayload(SEED, 10**6 + i)
        case.update(recipe=recipe, note=str(recipe))
        yield case


def test_every_denied_op_class_is_refused_wherever_it_hides(fuzz_worker, tmp_path):
    recipes = [{"op": op, "where": WHERES[(i + k) % len(WHERES)], "entry": ENTRIES[(i + 2 * k) % len(ENTRIES)]}
               for i, op in enumerate(tf_payloads.DENIED_CLASSES) for k in range(2)]
    assert {r["where"] for r in recipes} == set(WHERES) and {r["entry"] for r in recipes} == set(ENTRIES)
    check_cases(fuzz_worker, _cases(recipes), tmp_path, timeout=60)


def test_structural_tricks_do_not_get_past_the_check(fuzz_worker, tmp_path):
    recipes = [{"trick": t, "entry": e, "variant": v} for t in tf_payloads.TRICKS for e in ("text", "cli")
               for v in range(4 if t in ("printv2-streams", "runtime-assert") else 1)]
    check_cases(fuzz_worker, _cases(recipes), tmp_path, timeout=60)


def test_damaged_payloads(fuzz_worker, tmp_path):
    recipes = [dict(tf_payloads.recipes(random.Random(i), i * 37 % 800), bytes=i) for i in range(20)]
    check_cases(fuzz_worker, _cases(recipes), tmp_path, timeout=60)
