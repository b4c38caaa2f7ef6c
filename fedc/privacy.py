"""Privacy accounting for differentially private training: ε of a run, and the noise for a target ε.

A round of DP-FedAvg (``fedc.aggregators.DifferentiallyPrivateFactory``,
``fedc.learning.dp_aggregator``) clips each sampled client's update to an L2
norm ``C`` and adds Gaussian noise of standard deviation ``noise_multiplier ×
C`` to their sum: one Gaussian mechanism per round on a sample of the
population. Over ``rounds`` rounds that is a composition of subsampled
Gaussian mechanisms, whose (ε, δ) Google's ``dp-accounting`` computes — fedc
writes no accounting of its own:

* ``sampling="poisson"`` (the default; the one the published DP-FedAvg
  figures use): each client takes part in each round independently with
  probability ``clients_per_round / population``; neighbouring populations
  differ by adding or removing one client (user-level DP);
* ``sampling="uniform"``: each round draws exactly ``clients_per_round``
  clients without replacement (what ``fedc.simulation`` samplers do);
  neighbouring populations differ by replacing one client — dp-accounting's
  RDP accountant handles it, its PLD accountant does not.

``accountant="rdp"`` (Rényi DP, the default) or ``"pld"`` (privacy loss
distributions: tighter, slower). ``noise_multiplier=0`` is no noise: ε is
infinite. The figures hold for the mechanism as analysed: the noise is drawn
from floating-point Gaussian samples (see docs/privacy.md for what that does
not cover).
"""

from __future__ import annotations

import math
from typing import Any

from fedc import FedcError, FedcValueError

__all__ = ["ACCOUNTANTS", "SAMPLINGS", "dp_event", "epsilon", "noise_multiplier"]

SAMPLINGS = ("poisson", "uniform")
ACCOUNTANTS = ("rdp", "pld")

#: The smallest noise multiplier :func:`noise_multiplier` tries with the PLD accountant (below it a target ε is
#: said to be out of reach: such runs have ε in the tens anyway).
PLD_LOWEST_NOISE = 0.3


def _dp_accounting():
    try:
        import dp_accounting
        from dp_accounting import pld, rdp  # noqa: F401 - the accountants, imported with the package
    except ImportError as e:
        raise FedcError(f"fedc.privacy accounts with Google's dp-accounting, which cannot be imported here ({e}): "
                        "install it with `pip install dp-accounting` (fedc's install brings it)") from None
    return dp_accounting


def _number(name: str, value: Any, where: str, *, positive: bool = False, integer: bool = False) -> float:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) and not (
            hasattr(value, "dtype") and getattr(value, "shape", None) == ()):
        raise FedcValueError(f"{where}: {name} is {'an integer' if integer else 'a number'}, not {value!r}")
    number = int(value) if integer else float(value)
    if integer and number != value:
        raise FedcValueError(f"{where}: {name} is an integer, not {value!r}")
    if not math.isfinite(number) or number < 0 or (positive and number == 0):
        raise FedcValueError(f"{where}: {name} is a finite number {'> 0' if positive else '>= 0'}, not {value!r}")
    return number


def _check_run(where: str, clients_per_round, population, rounds, sampling: str) -> tuple[int, int, int]:
    clients = int(_number("clients_per_round", clients_per_round, where, positive=True, integer=True))
    people = int(_number("population", population, where, positive=True, integer=True))
    count = int(_number("rounds", rounds, where, integer=True))
    if clients > people:
        raise FedcValueError(f"{where}: clients_per_round={clients} is more than the population {people}")
    if sampling not in SAMPLINGS:
        raise FedcValueError(f"{where}: sampling is 'poisson' (each client joins each round with probability "
                             f"clients_per_round / population) or 'uniform' (exactly clients_per_round, without "
                             f"replacement), not {sampling!r}")
    return clients, people, count


def _check_delta(where: str, delta) -> float:
    value = _number("delta", delta, where)
    if not 0 < value < 1:
        raise FedcValueError(f"{where}: delta is a probability in (0, 1), not {delta!r}")
    return value


def _accountant(where: str, accountant: str, sampling: str):
    dpa = _dp_accounting()
    if accountant == "rdp":
        relation = (dpa.NeighboringRelation.REPLACE_ONE if sampling == "uniform"
                    else dpa.NeighboringRelation.ADD_OR_REMOVE_ONE)
        return lambda: dpa.rdp.RdpAccountant(neighboring_relation=relation)
    if accountant == "pld":
        if sampling == "uniform":
            raise FedcValueError(f"{where}: dp-accounting's PLD accountant has no fixed-size sampling without "
                                 "replacement; use accountant='rdp' for sampling='uniform', or sampling='poisson'")
        return lambda: dpa.pld.PLDAccountant()
    raise FedcValueError(f"{where}: accountant is 'rdp' (Rényi DP) or 'pld' (privacy loss distributions), "
                         f"not {accountant!r}")


def _event(noise: float, clients: int, people: int, count: int, sampling: str):
    dpa = _dp_accounting()
    gaussian = dpa.GaussianDpEvent(noise)
    if sampling == "poisson":
        one_round = dpa.PoissonSampledDpEvent(clients / people, gaussian) if clients < people else gaussian
    else:
        one_round = dpa.SampledWithoutReplacementDpEvent(people, clients, gaussian)
    return dpa.SelfComposedDpEvent(one_round, count)


def dp_event(noise_multiplier: float, clients_per_round: int, population: int, rounds: int,
             sampling: str = "poisson") -> Any:
    """The ``dp_accounting.DpEvent`` of a training run: ``rounds`` Gaussian mechanisms of ``noise_multiplier``,
    each on a sample of ``clients_per_round`` of the ``population`` (see the module for ``sampling``)."""
    where = "fedc.privacy.dp_event"
    noise = _number("noise_multiplier", noise_multiplier, where)
    clients, people, count = _check_run(where, clients_per_round, population, rounds, sampling)
    return _event(noise, clients, people, count, sampling)


def epsilon(noise_multiplier: float, clients_per_round: int, population: int, rounds: int, delta: float, *,
            sampling: str = "poisson", accountant: str = "rdp") -> float:
    """ε at ``delta`` of ``rounds`` rounds of DP aggregation with ``noise_multiplier`` over ``clients_per_round``
    clients a round from ``population`` (infinite for ``noise_multiplier=0``; 0 for no rounds).

    >>> round(epsilon(1.2, 120, 3383, 100, 1e-5), 2)  # DP-FedAvg's published figure: about 2
    1.99
    """
    where = "fedc.privacy.epsilon"
    noise = _number("noise_multiplier", noise_multiplier, where)
    clients, people, count = _check_run(where, clients_per_round, population, rounds, sampling)
    target = _check_delta(where, delta)
    make = _accountant(where, accountant, sampling)
    if count == 0:
        return 0.0
    if noise == 0:
        return math.inf
    ledger = make()
    ledger.compose(_event(noise, clients, people, count, sampling))
    return float(ledger.get_epsilon(target))


def noise_multiplier(target_epsilon: float, clients_per_round: int, population: int, rounds: int, delta: float,
                     *, sampling: str = "poisson", accountant: str = "rdp") -> float:
    """The smallest noise multiplier whose run (as :func:`epsilon`'s) has ε at most ``target_epsilon`` at
    ``delta`` (found by dp-accounting's calibration, to about 1e-4 relative)."""
    where = "fedc.privacy.noise_multiplier"
    goal = _number("target_epsilon", target_epsilon, where, positive=True)
    clients, people, count = _check_run(where, clients_per_round, population, rounds, sampling)
    target = _check_delta(where, delta)
    make = _accountant(where, accountant, sampling)
    if count == 0:
        return 0.0
    dpa = _dp_accounting()
    from dp_accounting import mechanism_calibration

    # The search starts above the smallest noise the accountant can take: the PLD of a Gaussian of tiny noise
    # needs an array of billions of privacy-loss values (at noise 0.25 it is already seconds per evaluation).
    lowest = PLD_LOWEST_NOISE if accountant == "pld" else 1e-3
    try:
        found = mechanism_calibration.calibrate_dp_mechanism(
            make, lambda z: _event(z, clients, people, count, sampling), goal, target,
            bracket_interval=mechanism_calibration.LowerEndpointAndGuess(lowest, max(1.0, 2 * lowest)), tol=1e-5)
    except (mechanism_calibration.NoBracketIntervalFoundError, dpa.UnsupportedEventError, ValueError) as e:
        raise FedcValueError(f"{where}: no noise multiplier of at least {lowest:g} gives epsilon={goal:g} at "
                             f"delta={target:g} for {count} rounds of {clients} of {people} clients (already "
                             f"below it with the least noise tried: ask for a smaller epsilon, or use "
                             f"accountant='rdp'): {type(e).__name__}: {e}") from None
    return float(found)
