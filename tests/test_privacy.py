"""fedc.privacy: ε of a DP training run and the noise for a target ε, by Google's dp-accounting."""

import math
import subprocess
import sys

import pytest

import fedc
from fedc import privacy

# DP-FedAvg's published figure (McMahan et al. 2018, as in TFF's DP tutorial): noise multiplier 1.2,
# 120 of 3,383 clients a round, 100 rounds: epsilon about 2 at delta 1e-5 (RDP, Poisson sampling).
PUBLISHED = dict(clients_per_round=120, population=3383, rounds=100, delta=1e-5)


def test_the_published_dp_fedavg_figure():
    assert privacy.epsilon(1.2, **PUBLISHED) == pytest.approx(1.986, abs=0.005)


def test_pld_is_tighter_than_rdp_and_uniform_sampling_is_accounted_with_replace_one():
    rdp = privacy.epsilon(1.2, **PUBLISHED)
    pld = privacy.epsilon(1.2, **PUBLISHED, accountant="pld")
    assert 1.5 < pld < rdp
    uniform = privacy.epsilon(1.2, **PUBLISHED, sampling="uniform")
    assert uniform > rdp  # replacing a client changes two contributions: a larger epsilon for the same noise
    with pytest.raises(fedc.FedcValueError, match="PLD accountant has no fixed-size sampling"):
        privacy.epsilon(1.2, **PUBLISHED, sampling="uniform", accountant="pld")


def test_epsilon_falls_with_noise_and_grows_with_rounds():
    by_noise = [privacy.epsilon(z, **PUBLISHED) for z in (0.8, 1.0, 1.2, 2.0)]
    assert by_noise == sorted(by_noise, reverse=True)
    by_rounds = [privacy.epsilon(1.2, **dict(PUBLISHED, rounds=r)) for r in (1, 10, 100, 1000)]
    assert by_rounds == sorted(by_rounds)
    assert privacy.epsilon(0.0, **PUBLISHED) == math.inf  # no noise, no privacy
    assert privacy.epsilon(1.2, **dict(PUBLISHED, rounds=0)) == 0.0


@pytest.mark.parametrize("accountant", ["rdp", "pld"])
def test_noise_multiplier_inverts_epsilon(accountant):
    z = privacy.noise_multiplier(2.0, **PUBLISHED, accountant=accountant)
    assert privacy.epsilon(z, **PUBLISHED, accountant=accountant) == pytest.approx(2.0, rel=1e-3)
    assert privacy.epsilon(z * 0.98, **PUBLISHED, accountant=accountant) > 2.0  # the smallest such noise
    if accountant == "rdp":
        assert z == pytest.approx(1.2, abs=0.01)


def test_the_dp_event_is_dp_accountings():
    import dp_accounting

    event = privacy.dp_event(1.2, 120, 3383, 100)
    assert event == dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(120 / 3383, dp_accounting.GaussianDpEvent(1.2)), 100)
    everyone = privacy.dp_event(1.0, 50, 50, 3)  # every client every round: no sampling amplification
    assert everyone == dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(1.0), 3)


@pytest.mark.parametrize("change,message", [
    (dict(noise_multiplier=-1.0), "noise_multiplier is a finite number >= 0, not -1.0"),
    (dict(noise_multiplier="1"), "noise_multiplier is a number, not '1'"),
    (dict(clients_per_round=4000), "clients_per_round=4000 is more than the population 3383"),
    (dict(clients_per_round=0), "clients_per_round is a finite number > 0, not 0"),
    (dict(rounds=2.5), "rounds is an integer, not 2.5"),
    (dict(delta=1.0), r"delta is a probability in \(0, 1\), not 1.0"),
    (dict(sampling="with-replacement"), "sampling is 'poisson' .* or 'uniform' .*, not 'with-replacement'"),
    (dict(accountant="moments"), "accountant is 'rdp' .* or 'pld' .*, not 'moments'"),
])
def test_bad_arguments_are_fedc_errors_naming_them(change, message):
    args = dict(noise_multiplier=1.2, **PUBLISHED)
    args.update(change)
    with pytest.raises(fedc.FedcValueError, match="fedc.privacy.epsilon: " + message):
        privacy.epsilon(args.pop("noise_multiplier"), **args)


def test_an_epsilon_out_of_reach_is_said():
    with pytest.raises(fedc.FedcValueError, match="no noise multiplier of at least 0.3 gives epsilon=500"):
        privacy.noise_multiplier(500.0, **PUBLISHED, accountant="pld")
    with pytest.raises(fedc.FedcValueError, match="target_epsilon is a finite number > 0"):
        privacy.noise_multiplier(0.0, **PUBLISHED)


def test_fedc_privacy_is_imported_when_first_used():
    code = "import sys, fedc; print('dp_accounting' in sys.modules); fedc.privacy.epsilon(1.0, 1, 10, 1, 0.1); " \
           "print('dp_accounting' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["False", "True"], result.stderr
