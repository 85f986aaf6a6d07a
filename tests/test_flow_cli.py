"""``popmodel fit-sfs``: the files and columns it writes, provenance, and argument errors."""

import argparse
import json

import numpy as np
import pytest
from astropy.table import Table

from popmodel.cli.sfs import main, register, sfs_config
from popmodel.flow.fit import SFSConfig
from popmodel.flow.mock import sequence_mock

COLUMNS = ["z", "log_mass", "ridge_p16", "ridge_p50", "ridge_p84", "log_mean_sfr_p16",
           "log_mean_sfr_p50", "log_mean_sfr_p84", "log_sfr_q16", "log_sfr_q50", "log_sfr_q84", "bimodal"]


def test_fit_sfs_end_to_end(tmp_path):
    limit = (np.array([0.3, 2.7]), np.array([9.3, 9.9]))
    cat, survey, _ = sequence_mock(600, n_samples=8, log_mass_limit=limit, mass_error=0.15, seed=2)
    cat.write(tmp_path / "cat.h5")
    survey.write(tmp_path / "survey.toml")
    out = tmp_path / "out"
    rc = main(["fit-sfs", str(tmp_path / "cat.h5"), "--survey", str(tmp_path / "survey.toml"),
               "--out", str(out), "--members", "2", "--epochs", "2", "--batch-size", "128", "--no-progress"])
    assert rc == 0
    t = Table.read(out / "sfs.ecsv")
    assert t.colnames[:2] == ["z", "log_mass"] and all(c in t.colnames for c in COLUMNS)
    # z nodes: multiples of 0.25 within the data's range; masses: multiples of 0.25 above completeness
    assert set(np.round(t["z"], 4)) <= set(np.round(np.arange(0.25, 2.751, 0.25), 4))
    assert np.allclose(np.asarray(t["log_mass"]) / 0.25, np.round(np.asarray(t["log_mass"]) / 0.25))
    assert np.all(t["log_mass"] >= np.interp(t["z"], *limit) - 1e-9)
    assert np.all(t["ridge_p16"] <= t["ridge_p84"]) and np.all(t["log_sfr_q16"] < t["log_sfr_q84"])
    meta = json.loads((out / "summary.json").read_text())
    for key in ("popmodel_version", "config", "seeds", "cosmology", "imf"):
        assert key in meta
    assert meta["seeds"]["member_seeds"] == [0, 1]
    assert meta["cuts"]["applied"] and meta["cuts"]["n_kept"] == 600
    assert t.meta["imf"] == "Chabrier2003"
    eq = Table.read(out / "eq10_fits.ecsv")
    assert set(eq["fit"]) == {"ridge", "mean"} and len(eq) == 24
    for name in ("flows/member_0.pt", "flows/member_1.pt", "sfs.png", "sfs.pdf", "training.png",
                 "survey.toml", "training.json", "checkpoints/member_0.pt"):
        assert (out / name).exists(), name


def test_fit_sfs_3dhst_small(tmp_path):
    out = tmp_path / "o"
    rc = main(["fit-sfs", "--3dhst", "--out", str(out), "--max-galaxies", "400", "--n-samples", "4",
               "--members", "1", "--epochs", "1", "--no-figures", "--no-progress"])
    assert rc == 0
    meta = json.loads((out / "summary.json").read_text())
    prov = meta["catalog_provenance"]
    assert prov["assumed_sfr_error_dex"] == 0.3 and "ASSUMED" in prov["assumption_note"]
    assert prov["counts"]["kept"] == 400
    t = Table.read(out / "sfs.ecsv")
    assert t["z"].min() >= 0.5 and t["z"].max() <= 2.5


def test_arguments():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd")
    register(sub)
    a = ap.parse_args(["fit-sfs", "--3dhst", "--out", "x"])
    assert a.needs_jax is False and a.members == 5 and a.max_samples == 32
    with pytest.raises(SystemExit, match="either a CATALOG"):
        main(["fit-sfs", "--out", "x"])


def test_cli_defaults_are_the_configs():
    """``popmodel fit-sfs`` with no options trains exactly as ``fit_sfs(catalog, survey)``."""
    ap = argparse.ArgumentParser()
    register(ap.add_subparsers(dest="cmd"))
    cfg = sfs_config(ap.parse_args(["fit-sfs", "--3dhst", "--out", "x"]))
    default = SFSConfig()
    assert cfg.train == default.train.__class__(**{**default.train.to_dict(), "progress": True})
    assert (cfg.n_members, cfg.max_samples, cfg.bootstrap, cfg.selection, cfg.n_workers) == (
        default.n_members, default.max_samples, default.bootstrap, default.selection, default.n_workers)
    assert cfg.flow == default.flow
