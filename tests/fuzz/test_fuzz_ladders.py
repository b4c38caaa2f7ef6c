"""Depth ladders: every nesting shape in every form, around the nesting limit and far past it.

The pytest tier takes every shape at 10 levels, at the limit (1,000) and
just past it (the shapes whose cost grows with the depth, chains of
definitions, bindings, imports and operators, at 10 and 100), and the
100,000-level rung for the shapes that cost a second at most;
``scripts/fuzz --kind ladder`` climbs every shape through every rung of
``fuzz.ladders.DEPTHS`` to 100,000.
"""

from fuzz import ladders
from fuzz.conftest import SEED, check_cases

#: Shapes whose every level adds bindings, definitions, files or operators that fedc parses
#: and then optimizes: seconds to minutes at 1,000 levels.
CHAINS = {"fed-definition-chain", "fed-let-chain", "fed-import-chain", "ir-op-chain", "ir-symbol-chain",
          "fed-negation", "fed-not", "fed-sum-chain", "fed-power-chain", "fed-alias-chain", "fed-alias-nest",
          "fed-type-federated"}
#: Shapes that fedc refuses within about a second at 100,000 levels.
HOSTILE_RUNG = [s for s, (form, _) in ladders.SHAPES.items() if form in ("api", "proto", "args")] + [
    "fed-parens", "fed-call", "fed-list", "fed-map-call", "fed-lambda-bodies", "fed-type-function",
    "ir-block", "ir-literal", "ir-operand-struct", "ir-selection", "ir-type-function", "ir-type-struct"]


def _cases(plan):
    for i, (shape, depth) in enumerate(plan):
        case = ladders.case(shape, depth)
        case.update(seed=SEED, index=i)
        yield case


def test_every_shape_up_to_past_the_limit(fuzz_worker, tmp_path):
    plan = [(shape, depth) for shape in ladders.SHAPES
            for depth in ((10, 100) if shape in CHAINS else (10, 1000, 1001))]
    check_cases(fuzz_worker, _cases(plan), tmp_path, timeout=120)


def test_a_hundred_thousand_levels(fuzz_worker, tmp_path):
    assert set(HOSTILE_RUNG) <= set(ladders.SHAPES)
    check_cases(fuzz_worker, _cases([(shape, 100_000) for shape in HOSTILE_RUNG]), tmp_path, timeout=120)
