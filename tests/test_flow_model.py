"""The population flow: normalisation, factorisation, the faster spline, save/load, isolation."""

import subprocess
import sys

import numpy as np
import pytest
import torch
import zuko

from popmodel.flow.fit import load_flow, save_flow
from popmodel.flow.model import FlowConfig, SFSFlow, spline_flow

SMALL = FlowConfig(mass_hidden=(8, 8), sfr_hidden=(8, 8))


@pytest.fixture
def flow():
    torch.manual_seed(3)
    f = SFSFlow(SMALL, loc=[1.2, 10.0, 0.8], scale=[0.6, 0.5, 0.7])
    # random (non-identity) weights so that the densities are not trivially Gaussian
    with torch.no_grad():
        for p in f.parameters():
            p.add_(0.15 * torch.randn_like(p))
    return f.double()


def test_conditional_sfr_density_is_normalised(flow):
    g = np.linspace(-12, 14, 20001)
    lp = flow.conditional_log_density(np.array([9.5, 10.5, 11.0]), np.array([0.7, 1.5, 2.4]), g)
    assert np.allclose(np.trapezoid(np.exp(lp), g, axis=1), 1.0, atol=1e-3)


def test_joint_density_factorises_and_integrates(flow):
    # log p(z, M, s) = log p(z, M) + log p(s | z, M)
    x = torch.tensor([[1.0, 10.2, 0.5], [2.0, 9.6, 1.4]], dtype=torch.float64)
    joint = flow.log_prob(x)
    parts = flow.log_prob_zm(x[:, 0], x[:, 1]) + flow.log_prob_sfr(x[:, 2], x[:, 0], x[:, 1])
    assert torch.allclose(joint, parts, atol=1e-10)
    # p(z, M) integrates to 1 (physical units)
    z = np.linspace(-6, 8, 351)
    m = np.linspace(5, 15, 401)
    zz, mm = np.meshgrid(z, m, indexing="ij")
    with torch.no_grad():
        p = np.exp(flow.log_prob_zm(torch.tensor(zz.ravel()), torch.tensor(mm.ravel())).numpy()).reshape(zz.shape)
    assert abs(np.trapezoid(np.trapezoid(p, m, axis=1), z) - 1.0) < 5e-3


def test_conditional_on_z_mode():
    f = SFSFlow(FlowConfig(conditional_on_z=True, mass_hidden=(8,), sfr_hidden=(8,)), [1, 10, 1], [0.5, 0.5, 0.5]).double()
    m = np.linspace(4, 16, 6001)
    with torch.no_grad():
        p = np.exp(f.log_prob_zm(torch.full((m.size,), 1.3, dtype=torch.float64), torch.tensor(m)).numpy())
    assert abs(np.trapezoid(p, m) - 1.0) < 1e-3  # p(log M | z) normalised at fixed z


def test_fast_spline_equals_zuko_nsf():
    torch.manual_seed(0)
    ours = spline_flow(2, 1, 2, (16, 16), 8, affine_first=False)
    ref = zuko.flows.NSF(2, context=1, transforms=2, hidden_features=(16, 16), bins=8)
    ref.load_state_dict(ours.state_dict())
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(0.5 * torch.randn_like(p))
    ref.load_state_dict(ours.state_dict())
    x, c = 2.5 * torch.randn(500, 2), torch.randn(500, 1)
    assert torch.allclose(ours(c).log_prob(x), ref(c).log_prob(x), atol=1e-4)
    # log-det against the autograd Jacobian of the transform
    t = ours(c[:1]).transform
    xi = x[:1].clone()
    jac = torch.autograd.functional.jacobian(lambda v: t(v), xi)[0, :, 0, :]
    assert torch.allclose(t.log_abs_det_jacobian(xi, t(xi))[0], torch.linalg.slogdet(jac).logabsdet, atol=1e-4)


def test_sample_sfr_matches_density(flow):
    torch.manual_seed(0)
    n = 20000
    s = flow.sample_sfr(torch.full((n,), 1.5, dtype=torch.float64), torch.full((n,), 10.3, dtype=torch.float64))
    g = np.linspace(-12, 14, 20001)
    lp = flow.conditional_log_density(np.array([10.3]), np.array([1.5]), g)[0]
    cdf = np.cumsum(np.exp(lp)) * (g[1] - g[0])
    x = np.sort(s.numpy())
    ks = np.max(np.abs(np.arange(1, n + 1) / n - np.interp(x, g, cdf)))
    assert ks < 0.015  # Kolmogorov-Smirnov distance; 1.6/sqrt(n) = 0.011 is the 1% level


def test_save_load_round_trip(tmp_path, flow):
    f32 = flow.float()
    save_flow(f32, tmp_path / "f.pt")
    back = load_flow(tmp_path / "f.pt")
    x = torch.tensor([[1.0, 10.0, 0.5]])
    assert torch.allclose(f32.log_prob(x), back.log_prob(x))
    assert back.config == f32.config


def test_bad_standardisation():
    with pytest.raises(ValueError, match="3 entries"):
        SFSFlow(SMALL, [1, 2], [1, 1])
    with pytest.raises(ValueError, match="positive scales"):
        SFSFlow(SMALL, [1, 2, 3], [1, 0, 1])
    with pytest.raises(ValueError, match="3 columns"):
        SFSFlow(SMALL, [1, 2, 3], [1, 1, 1]).log_prob(torch.zeros(2, 2))


def test_flow_package_never_imports_jax():
    code = (
        "import sys, popmodel.flow, popmodel.cli.sfs, popmodel.io.sfs, popmodel.plots.sfs, "
        "popmodel.flow.threedhst, popmodel.flow.mock; "
        "bad = [m for m in ('jax', 'numpyro') if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
