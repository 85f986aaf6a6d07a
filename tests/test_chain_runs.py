"""Chains one after another as separate NumPyro runs (``run_nuts(one_run_per_chain=True)``,
what large fits use to bound memory) against one NumPyro run of the same chains: the same
draws, since NumPyro splits the key per chain in the same way."""

import numpy as np
import pytest

from popmodel.mock import draw_mock
from popmodel.smf.data import prepare_smf_data
from popmodel.smf.inference import RELEASE_MIN_NODES, SequentialChains, find_map, n_nodes, run_nuts
from popmodel.smf.model import SMFPrior
from popmodel.testing import deep_survey


@pytest.fixture(scope="module")
def small():
    survey = deep_survey(1, 6.0, mass_error_dex=0.1, z_error=0.0)
    cat, _ = draw_mock(survey, seed=5, n_samples=4)
    data = prepare_smf_data(cat, survey, cosmic_variance=False, posterior="gauss-hermite")
    prior = SMFPrior()
    return data, prior, find_map(data, prior)


def test_one_run_per_chain_gives_numpyros_sequential_chains(small):
    data, prior, mp = small
    assert n_nodes(data.arrays) < RELEASE_MIN_NODES  # small: the default keeps one NumPyro run
    kw = {"num_warmup": 50, "num_samples": 100, "num_chains": 2, "seed": 3, "init_spread": True,
          "chain_method": "sequential", "progress_bar": False}
    loop = run_nuts(data, prior, mp, one_run_per_chain=True, **kw)
    one = run_nuts(data, prior, mp, **kw)
    assert isinstance(loop, SequentialChains) and not isinstance(one, SequentialChains)
    a, b = loop.get_samples(group_by_chain=True), one.get_samples(group_by_chain=True)
    assert set(a) == set(b)
    ea, eb = loop.get_extra_fields(group_by_chain=True), one.get_extra_fields(group_by_chain=True)
    assert set(ea) == set(eb) and np.asarray(ea["energy"]).shape == (2, 100)
    flat = loop.get_samples()
    for k in prior.names:
        x, y = np.asarray(a[k]), np.asarray(b[k])
        assert x.shape == y.shape == (2, 100)
        np.testing.assert_array_equal(np.asarray(flat[k]), x.reshape(-1))
        assert not np.array_equal(x[0], x[1])  # two chains, not one copied
        # NumPyro's sequential method splits the key per chain in the same way: the same chains
        np.testing.assert_allclose(x, y, rtol=1e-9, atol=1e-12)
