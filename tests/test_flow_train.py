"""Deconvolution loss against brute force, the small-S correction, selection normalisation,
checkpoint/resume, NaN guard and input errors."""

import numpy as np
import pytest
import torch
from scipy.special import logsumexp, ndtr
from scipy.stats import norm

from popmodel.catalog import CatalogError, PosteriorCatalog
from popmodel.flow.data import flow_data_from_catalog
from popmodel.flow.fit import apply_survey_cuts
from popmodel.flow.mock import sequence_mock
from popmodel.flow.model import FlowConfig
from popmodel.flow.selection import selection_grids, selection_probability
from popmodel.flow.train import (
    FlowTrainingError,
    TrainConfig,
    _Objective,
    build_flow,
    galaxy_log_likelihood,
    train_flow,
)
from popmodel.survey import SurveyError

SMALL = FlowConfig(mass_hidden=(8, 8), sfr_hidden=(8, 8), mass_transforms=1, sfr_transforms=1)


def _brute(log_p, log_prior, log_w, correct):
    """Plain numpy float64: log sum_s w p/pi, and the delta-method term from the moments."""
    out = []
    for lp, lq, lw in zip(log_p, log_prior, log_w, strict=True):
        keep = np.isfinite(lw)
        w = np.exp(lw[keep])
        r = np.exp(lp[keep] - lq[keep])
        m = np.sum(w * r)
        val = np.log(m)
        if correct and w.size > 1:
            var = np.sum(w**2 * (r - m) ** 2) / (1 - np.sum(w**2))
            val += var / (2 * m**2)
        out.append(val)
    return np.array(out)


@pytest.mark.parametrize("correct", [False, True])
def test_galaxy_loglike_equals_brute_force(correct):
    rng = np.random.default_rng(1)
    b, s = 7, 12
    log_p = rng.normal(-1, 1.5, (b, s))
    log_prior = rng.normal(0, 0.5, (b, s))
    w = rng.uniform(0.1, 1, (b, s))
    w[2, 5:] = 0.0  # padding / zero weights
    w[4, 1:] = 0.0  # a single sample: no correction
    lw = np.log(w / w.sum(1, keepdims=True), where=w > 0, out=np.full((b, s), -np.inf))
    got = galaxy_log_likelihood(torch.tensor(log_p), torch.tensor(log_prior), torch.tensor(lw), correct)
    assert np.allclose(got.numpy(), _brute(log_p, log_prior, lw, correct), rtol=0, atol=1e-10)


def test_bias_correction_reduces_small_s_bias():
    # Population N(0, 0.3), noise 0.4, flat prior: exact ln L_i = ln N(d_i; 0, 0.5).
    rng = np.random.default_rng(2)
    n, s, sp, se = 40000, 16, 0.3, 0.4
    d = rng.normal(0, np.hypot(sp, se), n)
    x = d[:, None] + se * rng.standard_normal((n, s))
    log_p = torch.tensor(norm.logpdf(x, 0, sp))
    zeros = torch.zeros(n, s)
    lw = torch.full((n, s), -np.log(s), dtype=torch.float64)
    exact = norm.logpdf(d, 0, np.hypot(sp, se))
    plain = (galaxy_log_likelihood(log_p, zeros, lw, False).numpy() - exact).mean()
    corr = (galaxy_log_likelihood(log_p, zeros, lw, True).numpy() - exact).mean()
    assert plain < -0.02  # Jensen: biased low, by ~0.05 nats per galaxy here
    assert abs(corr) < 0.3 * abs(plain)


def test_selection_probability_closed_form(shared_data):
    _, survey, _ = sequence_mock(10, log_mass_limit=9.5, mass_error=0.2, seed=0)
    f = survey.fields[0]
    m = np.array([9.0, 9.5, 10.0])
    assert np.allclose(selection_probability(f, 1.0, m), ndtr((m - 9.5) / 0.2))
    assert np.all(selection_probability(f, 5.0, m) == 0)  # outside the redshift window


def test_selection_normalisation_matches_dense_quadrature():
    cat, survey, _ = sequence_mock(400, n_samples=4, log_mass_limit=9.5, mass_error=0.2, seed=3)
    data = flow_data_from_catalog(cat)
    torch.manual_seed(0)
    flow = build_flow(SMALL, data, seed=1)
    loc, scale = data.standardization()
    grid = selection_grids(survey, data.field_names, loc, scale, log_mass_max=13.0, n_z=64, n_mass=64)
    obj = _Objective(flow, data, TrainConfig(), grid)
    with torch.no_grad():
        got = float(obj.log_norm(torch.tensor([0]))[0])
    # independent dense trapezoid of S(z, M) p(z, M) in physical units
    z = np.linspace(0.3, 2.7, 401)
    m = np.linspace(8.0, 13.0, 801)
    zz, mm = np.meshgrid(z, m, indexing="ij")
    with torch.no_grad():
        lp = flow.log_prob_zm(torch.tensor(zz.ravel(), dtype=torch.float32),
                              torch.tensor(mm.ravel(), dtype=torch.float32)).double().numpy()
    integrand = np.exp(lp).reshape(zz.shape) * selection_probability(survey.fields[0], zz, mm)
    want = np.log(np.trapezoid(np.trapezoid(integrand, m, axis=1), z))
    assert abs(got - want) < 3e-3


def _tiny(n=300, s=8, seed=0):
    cat, survey, truth = sequence_mock(n, n_samples=s, seed=seed)
    return cat, survey, truth, flow_data_from_catalog(cat)


def test_checkpoint_resume_round_trip(tmp_path):
    _, _, _, data = _tiny()
    cfg = TrainConfig(max_epochs=3, batch_size=64, progress=False, seed=4, patience=10)
    straight = build_flow(SMALL, data, seed=4)
    res_a = train_flow(straight, data, cfg)
    ck = tmp_path / "ck.pt"
    first = build_flow(SMALL, data, seed=4)
    train_flow(first, data, TrainConfig(**{**cfg.to_dict(), "max_epochs": 2}), checkpoint=ck)
    # an interrupted run: the checkpoint says epoch 2 of a 2-epoch run; resume needs the same
    # settings, so rewrite it as an unfinished epoch-2 state of the 3-epoch run
    state = torch.load(ck, weights_only=False)
    state["train_config"] = cfg.to_dict()
    state["finished"] = False
    torch.save(state, ck)
    resumed = build_flow(SMALL, data, seed=99)  # different init: everything comes from the file
    res_b = train_flow(resumed, data, cfg, checkpoint=ck, resume=True)
    assert len(res_b.history) == 3
    assert np.allclose([h["val_loss"] for h in res_a.history], [h["val_loss"] for h in res_b.history], atol=1e-6)
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), k
    # other data or settings: refuse to resume
    with pytest.raises(FlowTrainingError, match="other data or training settings"):
        train_flow(build_flow(SMALL, data, seed=4), data, TrainConfig(**{**cfg.to_dict(), "learning_rate": 1e-4}),
                   checkpoint=ck, resume=True)


def test_nan_guard_names_galaxy():
    cat, _, _, _ = _tiny(n=50, s=4)
    sfr = cat.log_sfr.copy()
    sfr[cat.offsets[7] : cat.offsets[8]] = 1e30  # absurd value for galaxy 7
    bad = PosteriorCatalog(ids=cat.ids, fields=cat.fields, offsets=cat.offsets, log_mass=cat.log_mass,
                           z=cat.z, log_sfr=sfr)
    data = flow_data_from_catalog(bad)
    flow = build_flow(SMALL, flow_data_from_catalog(cat), seed=0)
    with pytest.raises(FlowTrainingError, match=r"non-finite log-likelihood .*'mock000007'"):
        train_flow(flow, data, TrainConfig(max_epochs=1, batch_size=64, progress=False, val_fraction=0.0))


def test_bad_inputs():
    cat, survey, _, _ = _tiny(n=20, s=2)
    no_sfr = PosteriorCatalog(ids=cat.ids, fields=cat.fields, offsets=cat.offsets, log_mass=cat.log_mass, z=cat.z)
    with pytest.raises(CatalogError, match="'log_sfr' is missing"):
        flow_data_from_catalog(no_sfr)
    other = PosteriorCatalog(ids=cat.ids, fields=np.full(20, "ELSEWHERE"), offsets=cat.offsets,
                             log_mass=cat.log_mass, z=cat.z, log_sfr=cat.log_sfr)
    with pytest.raises(SurveyError, match="ELSEWHERE"):
        apply_survey_cuts(other, survey)
    with pytest.raises(ValueError, match="method"):
        TrainConfig(method="magic")
    with pytest.raises(ValueError, match="val_fraction"):
        TrainConfig(val_fraction=1.5)
    with pytest.raises(ValueError, match="mass_hidden"):
        FlowConfig(mass_hidden=())
    with pytest.raises(ValueError, match="max_samples"):
        flow_data_from_catalog(cat, max_samples=0)


def test_max_samples_and_padding():
    cat, _, _, _ = _tiny(n=5, s=6)
    data = flow_data_from_catalog(cat, max_samples=4)
    assert data.x.shape == (5, 4, 3)
    assert np.allclose(logsumexp(data.log_weight, axis=1), 0.0)
    # ragged: galaxy 0 with 2 samples, others 6 -> padded with -inf weights
    keep = np.ones(cat.log_mass.size, bool)
    keep[2:6] = False
    rag = PosteriorCatalog(ids=cat.ids, fields=cat.fields, offsets=np.concatenate([[0], np.cumsum([2, 6, 6, 6, 6])]),
                           log_mass=cat.log_mass[keep], z=cat.z[keep], log_sfr=cat.log_sfr[keep])
    d2 = flow_data_from_catalog(rag)
    assert np.all(np.isneginf(d2.log_weight[0, 2:])) and np.allclose(d2.log_weight[0, :2], -np.log(2))
    assert np.all(np.isfinite(d2.x))


def test_conditional_on_z_normalisation_and_training():
    cat, survey, _ = sequence_mock(300, n_samples=4, log_mass_limit=9.5, mass_error=0.2, seed=6)
    data = flow_data_from_catalog(cat)
    cfg = FlowConfig(conditional_on_z=True, mass_hidden=(8, 8), sfr_hidden=(8, 8))
    flow = build_flow(cfg, data, seed=2)
    loc, scale = data.standardization()
    zr = (float(data.x[..., 0].min()), float(data.x[..., 0].max()))
    grid = selection_grids(survey, data.field_names, loc, scale, mode="conditional", log_mass_max=13.0,
                           z_range=zr, n_z=128)
    obj = _Objective(flow, data, TrainConfig(), grid)
    idx = torch.tensor([0, 5])
    with torch.no_grad():
        got = obj.log_norm(idx)  # (2, S): log P^M at each sample's redshift
        m = np.linspace(7.0, 13.0, 3001)
        for row, i in enumerate(idx.tolist()):
            zs = float(data.x[i, 0, 0])
            lp = flow.log_prob_zm(torch.full((m.size,), zs), torch.tensor(m, dtype=torch.float32))
            s = selection_probability(survey.fields[0], zs, m, mass_only=True)
            want = np.log(np.trapezoid(np.exp(lp.double().numpy()) * s, m))
            assert abs(float(got[row, 0]) - want) < 5e-3
    with pytest.raises(ValueError, match="does not fit"):
        _Objective(build_flow(SMALL, data, seed=2), data, TrainConfig(), grid)
    res = train_flow(flow, data, TrainConfig(max_epochs=2, batch_size=64, progress=False), normalization=grid)
    assert all(np.isfinite(h["val_loss"]) for h in res.history)


def test_shifted_lattice_phases_agree():
    cat, survey, _ = sequence_mock(400, n_samples=4, log_mass_limit=9.5, mass_error=0.2, seed=3)
    data = flow_data_from_catalog(cat)
    flow = build_flow(SMALL, data, seed=1)
    loc, scale = data.standardization()
    grid = selection_grids(survey, data.field_names, loc, scale, log_mass_max=13.0)
    obj = _Objective(flow, data, TrainConfig(), grid)
    gen = torch.Generator().manual_seed(0)
    vals = []
    with torch.no_grad():
        for _ in range(6):
            obj.set_phase(gen)
            vals.append(float(obj.log_norm(torch.tensor([0]))[0]))
    assert np.ptp(vals) < 2e-3  # every sub-lattice is a good quadrature of the same integral


def test_redshift_jitter_only_for_exact_redshifts():
    cat, _, _ = sequence_mock(200, n_samples=8, seed=2)  # exact redshifts
    z = cat.z.copy()
    z[cat.offsets[3] : cat.offsets[4]] += np.linspace(-0.1, 0.1, 8)  # galaxy 3: a real posterior
    cat2 = PosteriorCatalog(ids=cat.ids, fields=cat.fields, offsets=cat.offsets, log_mass=cat.log_mass, z=z,
                            log_sfr=cat.log_sfr)
    d0 = flow_data_from_catalog(cat2)
    d1 = flow_data_from_catalog(cat2, z_jitter=0.005, seed=1)
    assert np.array_equal(d0.x[3], d1.x[3]) and np.array_equal(d0.x[..., 1:], d1.x[..., 1:])
    others = np.delete(np.arange(200), 3)
    resid = (d1.x[others, :, 0] - d0.x[others, :, 0]) / (1 + d0.x[others, :, 0])
    assert abs(resid.std() - 0.005) < 3e-4 and abs(resid.mean()) < 3e-4
    with pytest.raises(ValueError, match="z_jitter"):
        flow_data_from_catalog(cat2, z_jitter=-1.0)


def test_sfs_convergence_stop():
    _, _, _, data = _tiny(n=300, s=4)
    m = np.array([9.5, 10.0, 10.5])
    z = np.array([1.0, 1.5, 2.0])
    flow = build_flow(SMALL, data, seed=0)
    cfg = TrainConfig(max_epochs=10, batch_size=64, progress=False, patience=10, sfs_tolerance=10.0, sfs_patience=1)
    res = train_flow(flow, data, cfg, monitor=(m, z))
    assert res.stop_reason == "sfs_converged" and len(res.history) == 2
    assert np.isnan(res.history[0]["sfs_shift"]) and 0 <= res.history[1]["sfs_shift"] < 10.0


def test_cosine_schedule_closed_form():
    """The rate at the end of each epoch: linear warm-up, then lr_final + (1 - lr_final) x
    (1 + cos(pi t)) / 2 of the initial rate, t the fraction of the post-warm-up steps done."""
    _, _, _, data = _tiny(n=300, s=4)
    cfg = TrainConfig(max_epochs=5, batch_size=64, progress=False, patience=10, learning_rate=1e-2,
                      lr_schedule="cosine", lr_final=0.1, lr_warmup=1.0)
    res = train_flow(build_flow(SMALL, data, seed=0), data, cfg)
    per_epoch = int(np.ceil(res.n_train / 64))
    done = per_epoch * np.arange(1, 6)
    t = (done - per_epoch) / (4 * per_epoch)
    want = 1e-2 * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * t)))
    assert np.allclose([h["lr"] for h in res.history], want, rtol=1e-9)
    assert res.history[0]["lr"] == pytest.approx(1e-2) and res.history[-1]["lr"] == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(lr_schedule="step")
    with pytest.raises(ValueError, match="lr_warmup"):
        TrainConfig(lr_warmup=-1.0)
    # a warm-up longer than half the schedule is cut to half of it
    short = train_flow(build_flow(SMALL, data, seed=0), data,
                       TrainConfig(max_epochs=2, batch_size=64, progress=False, learning_rate=1e-2,
                                   lr_schedule="cosine", lr_final=0.0, lr_warmup=5.0))
    assert [h["lr"] for h in short.history] == pytest.approx([1e-2, 0.0], abs=1e-12)


def test_cosine_resume_round_trip(tmp_path, monkeypatch):
    """A cosine run interrupted after epoch 2 of 3 and resumed equals the uninterrupted run
    (the schedule's step count travels in the checkpoint)."""
    import copy

    import popmodel.flow.train as train_mod

    _, _, _, data = _tiny()
    cfg = TrainConfig(max_epochs=3, batch_size=64, progress=False, seed=4, patience=10,
                      learning_rate=1e-2, lr_schedule="cosine", lr_warmup=0.5)
    saved = []
    real_save = train_mod._save
    monkeypatch.setattr(train_mod, "_save", lambda path, state: (saved.append(copy.deepcopy(state)), real_save(path, state)))
    straight = build_flow(SMALL, data, seed=4)
    res_a = train_flow(straight, data, cfg, checkpoint=tmp_path / "a.pt")
    state = saved[1]  # written after epoch 2
    assert state["epoch"] == 2 and not state["finished"]
    torch.save(state, tmp_path / "b.pt")
    resumed = build_flow(SMALL, data, seed=99)
    res_b = train_flow(resumed, data, cfg, checkpoint=tmp_path / "b.pt", resume=True)
    assert [h["lr"] for h in res_a.history] == pytest.approx([h["lr"] for h in res_b.history], rel=1e-12)
    assert np.allclose([h["val_loss"] for h in res_a.history], [h["val_loss"] for h in res_b.history], atol=1e-6)
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), k


def test_min_steps_raises_the_epochs():
    """A small catalogue gets enough epochs for ``min_steps`` optimiser steps; a large one keeps
    ``max_epochs``."""
    _, _, _, data = _tiny(n=300, s=4)
    cfg = TrainConfig(max_epochs=2, min_steps=20, batch_size=64, progress=False, patience=50,
                      lr_schedule="cosine", learning_rate=1e-3)
    res = train_flow(build_flow(SMALL, data, seed=0), data, cfg)
    per_epoch = int(np.ceil(res.n_train / 64))
    assert res.steps_per_epoch == per_epoch and res.n_epochs == int(np.ceil(20 / per_epoch)) > 2
    assert len(res.history) == res.n_epochs and res.history[-1]["lr"] == pytest.approx(1e-3 * 0.02)
    few = train_flow(build_flow(SMALL, data, seed=0), data,
                     TrainConfig(**{**cfg.to_dict(), "min_steps": 2 * per_epoch}))
    assert few.n_epochs == 2 and len(few.history) == 2
    capped = train_flow(build_flow(SMALL, data, seed=0), data,
                        TrainConfig(**{**cfg.to_dict(), "max_epochs": 1, "min_steps": 1000, "patience": 1000}))
    assert capped.n_epochs == 10 and len(capped.history) == 10  # at most 10 x max_epochs


def test_cosine_validation_stop_waits_for_the_second_half():
    """patience=1 would stop a plateau run at its first non-improving epoch; under the cosine
    schedule the validation stop is held until half the epochs have run."""
    _, _, _, data = _tiny(n=300, s=4)
    cfg = TrainConfig(max_epochs=8, batch_size=64, progress=False, patience=1, min_delta=10.0,
                      learning_rate=1e-3, lr_schedule="cosine")
    res = train_flow(build_flow(SMALL, data, seed=0), data, cfg)
    assert res.stop_reason == "validation" and len(res.history) == 5  # first epoch past 8 / 2
    plateau = train_flow(build_flow(SMALL, data, seed=0), data, TrainConfig(**{**cfg.to_dict(), "lr_schedule": "plateau"}))
    assert plateau.stop_reason == "validation" and len(plateau.history) == 2
