"""``popmodel figures`` (popmodel.plots.figures): the values drawn are the inputs' values.

Each figure is read back from its Axes: the literature points of (a) are the loaders' values
after conversion to the fit's cosmology, the curves of (b) and (c) are census.ecsv's p50
columns, the Leja+20 and Leja+22 curves against themselves give zero residuals (with an
independent quadrature and an independent cosmology conversion), and folders that are
missing skip their figures with a note.
"""

import logging
import os
import subprocess
import sys
from pathlib import Path

import astropy.cosmology as apc
import numpy as np
import pytest
from astropy.table import Table
from scipy.integrate import quad

from popmodel import literature as L
from popmodel.census import log10_phi_grid
from popmodel.plots import figures as F
from popmodel.smf.evolution import (
    LEJA2020_MEDIAN,
    LEJA2020_SIGMA,
    ContinuityParams,
    leja2020_params,
)

ROOT = Path(__file__).resolve().parents[1]
#: far from WMAP9 so that a forgotten conversion shows (D_L ratio ~ 0.1 dex in mass)
ODD = apc.FlatLambdaCDM(H0=60.0, Om0=0.35, name="H0=60, Om0=0.35")


def _leja_draws(n: int = 60, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: LEJA2020_MEDIAN[k] + LEJA2020_SIGMA[k] * rng.standard_normal(n) for k in LEJA2020_MEDIAN}


def _write_smf_dir(path: Path, cosmology_config: dict, n: int = 60) -> None:
    from popmodel.io.smf import write_smf_posterior

    post = {k: v[None] for k, v in _leja_draws(n).items()}
    write_smf_posterior(path / "smf_posterior.nc", post, (0.2, 1.6, 3.0), method="draws",
                        attrs={"cosmology_config": cosmology_config, "data_z_range": [0.5, 2.5]})


@pytest.fixture(scope="module")
def census_dir(tmp_path_factory):
    """RESULTS_DIR with smf/ (Leja+20 draws, H0=60 Om0=0.35) and census/ (no sfs/)."""
    from popmodel.cli.census import run_census

    root = tmp_path_factory.mktemp("res")
    _write_smf_dir(root / "smf", {"H0": 60.0, "Om0": 0.35, "name": "H0=60, Om0=0.35"})
    run_census(root / "smf", None, root / "census", z=np.round(np.arange(0.2, 3.0001, 0.2), 4),
               max_draws=60, figures=False)
    return root


def _line(ax, label):
    hits = [ln for ln in ax.get_lines() if ln.get_label() == label]
    assert len(hits) == 1, [ln.get_label() for ln in ax.get_lines()]
    return hits[0]


def _errorbars(ax):
    """label -> (x, y) of every errorbar container of an Axes."""
    out = {}
    for c in ax.containers:
        if type(c).__name__ == "ErrorbarContainer":
            data = c.lines[0]
            out[c.get_label()] = (np.asarray(data.get_xdata(), float), np.asarray(data.get_ydata(), float))
    return out


def _phi_bin_quad(log_m: float, z_lo: float, z_hi: float, cosmo) -> float:
    """The volume-weighted mean Phi over the bin by adaptive quadrature (independent of
    the Gauss-Legendre rule in popmodel.plots.figures)."""
    p = leja2020_params()

    def dv(z):
        return cosmo.differential_comoving_volume(z).value

    num = quad(lambda z: 10.0 ** log10_phi_grid(p, np.array([log_m]), np.array([z]))[0, 0, 0] * dv(z),
               z_lo, z_hi, epsrel=1e-11)[0]
    return np.log10(num / quad(dv, z_lo, z_hi, epsrel=1e-11)[0])


def test_bin_average_and_leja2020_residual_against_itself_is_zero():
    m = np.array([9.0, 10.0, 10.8, 11.4])
    for lo, hi in ((0.5, 1.0), (2.0, 2.5)):
        ref = np.array([_phi_bin_quad(x, lo, hi, ODD) for x in m])
        pts = L.SMFPoints("Leja+20 by quad", lo, hi, m, ref, np.full(m.size, 0.1), np.full(m.size, 0.1))
        # three identical draws of the Leja+20 medians: every percentile of the residual is 0
        same = ContinuityParams.from_dict({k: np.full(3, v) for k, v in LEJA2020_MEDIAN.items()})
        r = F.smf_residuals(same, [pts], ODD)[0]
        np.testing.assert_allclose(r.residual, 0.0, atol=1e-7)
        # the bin average differs from Phi at the bin centre (so the average is being tested)
        centre = log10_phi_grid(leja2020_params(), m, np.array([0.5 * (lo + hi)]))[0, 0]
        assert np.max(np.abs(centre - ref)) > 0.005
        # shifted points: the residual is minus the shift
        shifted = L.SMFPoints("shifted", lo, hi, m, ref + 0.1, pts.err_hi, pts.err_lo)
        np.testing.assert_allclose(F.smf_residuals(same, [shifted], ODD)[0].residual, -0.1, atol=1e-7)


def _results_with_leja_draws(cosmo):
    draws = ContinuityParams.from_dict(_leja_draws(40))
    return F.Results(smf_draws=draws, smf_info={"cosmology": cosmo, "data_z_range": [0.5, 2.5], "n_total": 40},
                     cosmology=cosmo)


def test_smf_figure_points_are_the_converted_loader_values():
    import matplotlib.pyplot as plt

    res = _results_with_leja_draws(ODD)
    fig = F.plot_smf_panels(res)
    lit = F.smf_literature(ODD)
    raw_tomczak = L.tomczak2014_smf()  # H0=70, Om0=0.3, as published
    n_checked = 0
    for k, (lo, hi) in enumerate(F.PANEL_BINS):
        ax = fig.axes[k]
        drawn = _errorbars(ax)
        zc = 0.5 * (lo + hi)
        expect = [p for p in lit if p.z_lo <= zc < p.z_hi]
        assert {p.label for p in expect} == {"Tomczak+14", "Muzzin+13 all", "Ilbert+13"}
        assert len(drawn) == len(expect)
        for p in expect:
            x, y = drawn[f"{p.label} {p.z_lo}<z<{p.z_hi}"]
            np.testing.assert_allclose(x, p.log_mass, rtol=0, atol=1e-12)
            np.testing.assert_allclose(y, p.log_phi, rtol=0, atol=1e-12)
            n_checked += x.size
        # the conversion matters here: the published Tomczak+14 masses sit >0.05 dex away
        t_raw = raw_tomczak[k]
        x, _ = drawn[f"Tomczak+14 {t_raw.z_lo}<z<{t_raw.z_hi}"]
        assert np.all(np.abs(x - t_raw.log_mass) > 0.05)
        # the Leja+20 curve is the bin average of the medians
        ref = _line(ax, "Leja+20 continuity model (medians)")
        j = int(np.argmin(np.abs(F.LOG_M - 10.5)))
        assert ref.get_ydata()[j] == pytest.approx(_phi_bin_quad(10.5, lo, hi, ODD), abs=1e-7)
    assert n_checked > 150
    plt.close(fig)


def test_smf_residual_figure_leja_line_is_zero_for_leja_draws():
    import matplotlib.pyplot as plt

    same = ContinuityParams.from_dict({k: np.full(5, v) for k, v in LEJA2020_MEDIAN.items()})
    res = F.Results(smf_draws=same, smf_info={"cosmology": ODD}, cosmology=ODD)
    fig = F.plot_smf_residuals(res)
    for k in range(len(F.PANEL_BINS)):
        y = _line(fig.axes[k], "Leja+20 median model - popmodel").get_ydata()
        np.testing.assert_allclose(y, 0.0, atol=1e-9)
    # each literature set appears once over all panels, its markers at the median residual
    labels = [lab for ax in fig.axes for lab in _errorbars(ax)]
    centres = [0.5 * (lo + hi) for lo, hi in F.PANEL_BINS]
    placed = [p for p in F.smf_literature(ODD) if any(p.z_lo <= z < p.z_hi for z in centres)]
    assert len(placed) == 18  # 22 sets less Muzzin+13 and Ilbert+13 at z < 0.5 and z > 3
    assert len(labels) == len(set(labels)) == len(placed)
    plt.close(fig)


def test_census_figures_draw_census_ecsv_p50(census_dir, caplog):
    caplog.set_level(logging.INFO, logger="popmodel")
    import matplotlib.pyplot as plt

    res = F.load_results(census_dir)
    assert res.cosmology.H0.value == 60.0 and res.cosmology.Om0 == pytest.approx(0.35)
    t = Table.read(census_dir / "census" / "census.ecsv")
    fig = F.plot_sfrd(res)
    ax = fig.axes[0]
    r1 = [ln for ln in ax.get_lines() if ln.get_label().startswith("route 1")]
    r2 = [ln for ln in ax.get_lines() if ln.get_label().startswith("route 2")]
    assert len(r1) == len(r2) == 1
    np.testing.assert_allclose(r1[0].get_xdata(), t["z"])
    np.testing.assert_allclose(r1[0].get_ydata(), np.asarray(t["log_sfrd_from_rho_p50"]), atol=0)
    np.testing.assert_allclose(r2[0].get_ydata(), np.asarray(t["log_sfrd_from_sfs_p50"]), atol=0)
    np.testing.assert_allclose(_line(fig.axes[1], "paired draws, 16-50-84%").get_ydata(),
                               np.asarray(t["delta_sfs_minus_rho_p50"]), atol=0)
    # the literature is in the fit's cosmology: MD14 points equal the loader's for H0=60
    md = L.md14_sfrd_points(res.cosmology)
    _, y = _errorbars(ax)[md.label]
    np.testing.assert_allclose(y, md.log_value, atol=1e-12)
    assert np.all(np.abs(y - L.md14_sfrd_points(apc.WMAP9).log_value) > 0.01)
    plt.close(fig)

    fig = F.plot_rho_star(res)
    np.testing.assert_allclose(_line(fig.axes[0], "popmodel (statistical only)").get_ydata(),
                               np.asarray(t["log_rho_star_p50"]), atol=0)
    tz = _line(fig.axes[0], "Tomczak+14 fit (9<log M<13)")
    zz = np.asarray(tz.get_xdata())
    np.testing.assert_allclose(tz.get_ydata(), L.convert_density_cosmology(
        -0.33 * (1 + zz) + 8.75, zz, zz, L.LITERATURE_H70, res.cosmology), atol=1e-12)
    plt.close(fig)

    # sfs/ is missing: (d) is skipped with a note, the SMF part of (e) is still drawn
    out = census_dir / "figs"
    files = F.make_figures(census_dir, out, only=["sfrd", "sfs", "residuals"])
    assert sorted(files) == ["residuals", "sfrd"]
    assert [Path(p).name for p in files["residuals"]] == ["residuals_smf.png", "residuals_smf.pdf"]
    for p in files["sfrd"] + files["residuals"]:
        assert Path(p).stat().st_size > 5000
    text = caplog.text  # notes are log records (popmodel.plots.figures, INFO)
    assert "skipping figure 'sfs'" in text and "skipping 'residuals_sfs'" in text


def test_rho_star_from_smf_draws_when_census_is_missing(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="popmodel")
    import matplotlib.pyplot as plt

    _write_smf_dir(tmp_path / "smf", {"name": "Planck18"}, n=30)
    res = F.load_results(tmp_path)
    assert res.census is None and res.cosmology.name == "Planck18"
    fig = F.plot_rho_star(res)
    from popmodel.census import percentile_bands, rho_star_draws

    want = percentile_bands(np.log10(rho_star_draws(res.smf_draws, F.Z_RHO, 8.0, 13.0)))[1]
    np.testing.assert_allclose(_line(fig.axes[0], "popmodel (statistical only)").get_ydata(), want)
    plt.close(fig)
    files = F.make_figures(tmp_path, tmp_path / "f", only=["rho_star", "sfrd"])
    assert list(files) == ["rho_star"]
    assert "skipping figure 'sfrd': needs census results" in caplog.text


def _sfs_table_from_leja(cosmo, zs=(0.5, 1.0, 1.5, 2.0)):
    """An sfs.ecsv-like table whose ridge and mean are Leja+22 Eq. 10 (WMAP9) moved to
    ``cosmo`` point by point with convert_sfs_cosmology (z = 1.0: the released flow curve)."""
    rows = []
    curves = {c.z: c for c in L.leja2022_sfs_curves(apc.WMAP9)}
    for z in zs:
        mw = np.arange(9.5, 11.26, 0.25)
        if z == 1.0:
            c = curves[1.0]
            ridge_w, mean_w = (np.interp(mw, c.log_mass, v) for v in (c.ridge, c.mean))
        else:
            ridge_w, mean_w = L.leja2022_sfs(mw, z, "ridge"), L.leja2022_sfs(mw, z, "mean")
        m, ridge = L.convert_sfs_cosmology(mw, ridge_w, z, apc.WMAP9, cosmo)
        _, mean = L.convert_sfs_cosmology(mw, mean_w, z, apc.WMAP9, cosmo)
        for j in range(m.size):
            rows.append((z, m[j], ridge[j] - 0.1, ridge[j], ridge[j] + 0.1, mean[j] - 0.1, mean[j],
                         mean[j] + 0.1, ridge[j] - 0.4, ridge[j] + 0.3, False, 9.0))
    return Table(rows=rows, names=F._SFS_COLUMNS)


def test_sfs_residual_of_leja2022_against_itself_is_zero():
    t = _sfs_table_from_leja(ODD)
    d = F.sfs_residuals(t, ODD)
    z = np.asarray(d["z"])
    eq10 = z != 1.0
    for kind in ("ridge", "mean"):
        np.testing.assert_allclose(np.asarray(d[f"d_{kind}_p50"])[eq10], 0.0, atol=1e-12)
        np.testing.assert_allclose(np.asarray(d[f"d_{kind}_p84"])[eq10], 0.1, atol=1e-12)
        # against the released curve (z = 1.0 only): zero up to the linear interpolation
        fl = np.asarray(d[f"d_{kind}_flow"])
        assert np.all(np.isnan(fl[z == 0.5]))  # no released curve within 0.05 (nearest: 0.6)
        assert np.isfinite(fl[z == 1.5]).sum() >= 6  # released curves at 1.0, 1.5, 2.0
        np.testing.assert_allclose(fl[z == 1.0], 0.0, atol=2e-3)
    # the cosmology matters: read as WMAP9 the same table is off by > 0.02 dex somewhere
    wrong = F.sfs_residuals(t, apc.WMAP9)
    assert np.nanmax(np.abs(np.asarray(wrong["d_ridge_p50"])[eq10])) > 0.02


def test_sfs_figure_draws_the_table_and_converted_leja_curves():
    import matplotlib.pyplot as plt

    t = _sfs_table_from_leja(ODD)
    res = F.Results(sfs=t, sfs_cosmology=ODD)
    fig = F.plot_sfs(res)
    ax = fig.axes[1]  # z = 1.0
    assert ax.get_title() == "z = 1"
    sel = np.isclose(t["z"], 1.0)
    np.testing.assert_allclose(_line(ax, "ridge (this fit)").get_ydata(), np.asarray(t["ridge_p50"])[sel])
    c = next(c for c in L.leja2022_sfs_curves(ODD) if c.z == 1.0)
    fr = _line(ax, "Leja+22 flow ridge z=1.0")
    np.testing.assert_allclose(fr.get_xdata(), c.log_mass)
    np.testing.assert_allclose(fr.get_ydata(), c.ridge)
    np.testing.assert_allclose(_line(ax, "Leja+22 flow mean z=1.0").get_ydata(), c.mean)
    eq = _line(ax, "Leja+22 mean (Eq. 10)")
    np.testing.assert_allclose(eq.get_ydata(), F.leja2022_in_cosmology(eq.get_xdata(), 1.0, "mean", ODD),
                               atol=1e-12)
    plt.close(fig)
    fig = F.plot_sfs_residuals(res)
    y = _line(fig.axes[0], "z = 1.5 - Leja+22 Eq. 10").get_ydata()
    np.testing.assert_allclose(y, 0.0, atol=1e-12)
    plt.close(fig)


def test_figures_cli_and_script(census_dir, tmp_path, capsys):
    from popmodel.cli import build_parser, main

    a = build_parser().parse_args(["figures", "R", "--only", "smf", "sfrd"])
    assert a.results_dir == "R" and a.only == ["smf", "sfrd"] and not a.smoke
    assert main(["figures", str(census_dir), "--out", str(tmp_path / "cli"), "--only", "smf"]) == 0
    assert (tmp_path / "cli" / "smf.png").stat().st_size > 5000
    assert (tmp_path / "cli" / "smf.pdf").stat().st_size > 5000
    env = dict(os.environ, MPLBACKEND="Agg",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, str(ROOT / "analyses" / "plot_sfs.py"), str(census_dir), "--out",
                        str(tmp_path / "s")], capture_output=True, text=True, env=env, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "skipping figure 'sfs'" in r.stderr and not (tmp_path / "s" / "sfs.png").exists()
    assert r.stdout == ""  # messages are logged to stderr
    capsys.readouterr()
    assert main(["figures"]) == 2
    assert capsys.readouterr().err.strip() == ("popmodel figures: error: give RESULTS_DIR (with "
                                               "smf/, sfs/, census/ sub-folders) or --smoke")
    with pytest.raises(ValueError, match="unknown figure"):
        F.make_figures(census_dir, tmp_path / "x", only=["corner"])


def test_census_table_without_columns_names_them(census_dir, tmp_path):
    t = Table.read(census_dir / "census" / "census.ecsv")
    t.remove_column("log_sfrd_from_sfs_p50")
    res = F.Results(census=t)
    with pytest.raises(ValueError, match="log_sfrd_from_sfs_p50"):
        F.plot_sfrd(res)
    with pytest.raises(ValueError, match="ridge_p50"):
        F.sfs_residuals(Table({"z": [1.0], "log_mass": [10.0]}), apc.WMAP9)
