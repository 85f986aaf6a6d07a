"""The R-hat noise floor of popmodel.smf.fit against a brute-force ArviZ simulation."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from popmodel.smf.fit import _plain_diagnostics, ess_for_rhat, rhat_noise


@pytest.mark.parametrize("ess, n_params", [(400, 1), (400, 8), (800, 8)])
def test_rhat_noise_matches_simulated_independent_chains(ess, n_params):
    """Independent normal draws in 4 chains: the fraction of replicates whose largest ArviZ
    R-hat over n_params exceeds 1.01 agrees with the closed form within 3 binomial sigma."""
    import arviz as az

    rng = np.random.default_rng(5)
    n_rep = 300
    hits = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(n_rep):
            x = rng.standard_normal((n_params, 4, ess // 4))
            hits += max(float(az.rhat(xi)) for xi in x) > 1.01
    p = rhat_noise(ess, 4, n_params)
    assert abs(hits / n_rep - p) < 3 * np.sqrt(p * (1 - p) / n_rep) + 1e-9, (hits / n_rep, p)


def test_ess_for_rhat_inverts_and_grows_with_parameters():
    one = ess_for_rhat(4, 1)
    many = ess_for_rhat(4, 36)
    assert rhat_noise(many, 4, 36) == pytest.approx(0.1, abs=1e-6)
    # one parameter: Vehtari et al.'s ESS > 400 with R-hat < 1.01 is a 10% noise level
    assert 350 < one < 450
    assert many > 2 * one


def test_diagnostics_say_what_an_rhat_above_the_bar_needs():
    rng = np.random.default_rng(0)
    samples = {f"p{i}": rng.standard_normal((4, 60)) for i in range(6)}
    samples["p0"][0] += 1.0  # one chain elsewhere: R-hat far above 1.01
    d = _plain_diagnostics(samples, 0, 240)
    line = d["plain_words"][0]
    assert "ABOVE 1.01" in line and "in 9 of 10 runs only at a bulk ESS of about" in line
    need = round(ess_for_rhat(4, 6))
    assert f"about {need} each" in line and d["ok"] is False
