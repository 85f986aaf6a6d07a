"""The released Leja et al. 2022 flow: loading (check 7), dummy marginal (check 9), ridge/mean (check 8)."""

import json

import numpy as np
import pytest
import torch

from popmodel.flow.leja2022 import Leja2022Flow, leja2022_mass_limit
from popmodel.flow.sfs import sequence_statistics

WEIGHTS = "sfs_leja2022_trained_flow/trained_flow_nsamp100.pth"


@pytest.fixture(scope="module")
def leja(shared_data):
    return Leja2022Flow.load(shared_data / WEIGHTS)


@pytest.fixture(scope="module")
def reference(shared_data):
    return json.loads((shared_data / "reference_values/flow_reference_values.json").read_text())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_check7_log_prob(shared_data, reference, dtype):
    flow = Leja2022Flow.load(shared_data / WEIGHTS, dtype=dtype)
    x = torch.tensor([p["x"] for p in reference["logp_points"]], dtype=dtype)
    want = np.array([p["logp"] for p in reference["logp_points"]])
    got = flow.log_prob(x).numpy()
    # science.md check 7 values: -2.8523893, -3.565802, -4.1371336
    assert np.allclose(want, [-2.8523893, -3.565802, -4.1371336])
    assert np.max(np.abs(got - want)) < 1e-4


def test_check9_dummy_average_ratio(leja):
    # Leja's script averages over d with N(0,1) weights on 31 points in [-3, 3]; that is
    # 1/(2 sqrt(pi)) = 0.282 of the quadrature marginal (science.md check 9).
    z, m, s = np.array([1.0, 2.0, 1.5]), np.array([10.0, 10.5, 10.0]), np.array([0.7, 1.5, 1.0])
    marginal = np.exp(leja.log_prob_3d(z, m, s))
    d = np.linspace(-3, 3, 31)
    w = np.exp(-0.5 * d**2) / np.sqrt(2 * np.pi)
    x = np.stack(np.broadcast_arrays(z[:, None], m[:, None] - 10, s[:, None], d[None, :]), -1)
    p4 = np.exp(leja.log_prob(torch.tensor(x.reshape(-1, 4))).numpy()).reshape(3, 31)
    ratio = (p4 * w).sum(1) / w.sum() / marginal
    assert np.allclose(ratio, 0.282, atol=0.003)


def test_dummy_quadrature_converged(leja):
    a = leja.log_prob_3d(1.5, 10.5, 1.3)
    b = leja.log_prob_3d(1.5, 10.5, 1.3, n_dummy=161, dummy_max=8.0)
    assert abs(a - b) < 5e-4


def test_check8_ridge_and_mean(shared_data, reference):
    leja = Leja2022Flow.load(shared_data / WEIGHTS, dtype=torch.float32)  # as the reference
    # science.md check 8 points (z, logM): ridge / log<SFR> from the released flow
    pts = [(1.0, 10.0), (1.5, 10.5), (2.0, 10.5), (0.5, 10.0), (2.5, 10.5)]
    rows = {(r["z"], r["logM"]): r for r in reference["ridge_and_mean"]}
    z = np.array([p[0] for p in pts])
    m = np.array([p[1] for p in pts])
    grid = np.arange(-3.0, 3.0001, 0.01)
    st = sequence_statistics(grid, leja.conditional_log_density(m, z, grid), m, z)
    want_r = np.array([rows[p]["ridge_flow"] for p in pts])
    want_m = np.array([rows[p]["logmeanSFR_flow"] for p in pts])
    assert np.allclose(want_r, [0.665, 1.31, 1.52, 0.325, 1.635])
    assert np.max(np.abs(st.ridge - want_r)) < 0.01  # reference on a 0.005 grid, flat-topped peaks
    assert np.max(np.abs(st.log_mean_sfr - want_m)) < 0.003


def test_mass_limit_tables():
    # 3D-HST limits above z = 0.8, COSMOS-2015 below 0.5 (science.md 1.5)
    assert np.isclose(leja2022_mass_limit(1.5), 9.63281923)
    assert np.isclose(leja2022_mass_limit(0.3), np.interp(0.3, [0.175, 0.5], [8.57779419, 9.13212072]))


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="trained_flow_nsamp100"):
        Leja2022Flow.load(tmp_path / "missing.pth")
    bad = tmp_path / "bad.pth"
    torch.save({"foo": torch.zeros(2)}, bad)
    with pytest.raises(ValueError, match="not the Leja et al. 2022 flow"):
        Leja2022Flow.load(bad)
    flow = Leja2022Flow()
    with pytest.raises(ValueError, match=r"shape \(n, 4\)"):
        flow.log_prob(torch.zeros(3, 3))
