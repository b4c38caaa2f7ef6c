"""Choosing each round's clients.

``build_uniform_sampling_fn(sample_range, replace=False, random_seed=None)``
gives ``sample(round_num, size)``: ``size`` elements of ``sample_range`` drawn
uniformly (``numpy.random.RandomState.choice``). With an integer seed, round
``r``'s draw is seeded by ``start · 16807**r mod (2**31 - 1)`` (a Park–Miller
generator, its start drawn from the seed), so any round can be redrawn alone
and a seed gives the same clients per round as TFF's function of the same
name.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np

from fedc import FedcTypeError, FedcValueError

__all__ = ["build_uniform_sampling_fn"]

_MODULUS = 2**31 - 1
_MULTIPLIER = 16807


def build_uniform_sampling_fn(sample_range: Sequence, replace: bool = False,
                              random_seed: Optional[int] = None) -> Callable[[int, int], list]:
    """A function ``(round_num, size) -> list`` sampling ``size`` elements of ``sample_range`` for that round."""
    population = list(sample_range)
    if not population:
        raise FedcValueError("build_uniform_sampling_fn: sample_range is empty")
    if random_seed is not None and (not isinstance(random_seed, int) or isinstance(random_seed, bool)
                                    or not 0 <= random_seed < 2**32):
        raise FedcValueError(f"build_uniform_sampling_fn: random_seed must be None or an integer in [0, 2**32), "
                             f"got {random_seed!r}")
    start = None if random_seed is None else int(np.random.RandomState(random_seed).randint(1, _MODULUS - 1))

    def sample(round_num: int, size: int) -> list:
        if not isinstance(round_num, (int, np.integer)) or round_num < 0:
            raise FedcValueError(f"sampling: round_num must be an integer >= 0, got {round_num!r}")
        if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 0:
            raise FedcTypeError(f"sampling: size must be an integer >= 0, got {size!r}")
        if not replace and size > len(population):
            raise FedcValueError(f"sampling: cannot draw {size} distinct clients from a population of "
                                 f"{len(population)} (replace=False)")
        state = (np.random.RandomState() if start is None
                 else np.random.RandomState(pow(_MULTIPLIER, int(round_num), _MODULUS) * start % _MODULUS))
        chosen = state.choice(len(population), size=size, replace=replace)
        return [population[i] for i in chosen.tolist()]

    return sample
