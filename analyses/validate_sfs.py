"""Full-size validation of the deconvolving SFS flow on mocks with known truth (issue 4).

Parts (``--part``, default all):

* ``sequence``: a known intrinsic sequence (Leja+22 ridge, 0.3 dex Gaussian scatter) with
  0.4 dex SFR and 0.1 dex mass errors. The deconvolving ensemble must recover the scatter
  (half the 16-84 width) within 0.05 dex and log10 <SFR> within 0.03 dex at log M = 9.5, 10,
  10.5 and z = 1, 2; a naive flow (fit to the posterior samples as points) must fail both;
  noise-free training must agree with the deconvolved ridge and scatter within 0.05 dex.
* ``selection``: the same sequence selected on observed mass (0.2 dex errors) above a limit;
  the sequence above the limit is recovered, with and without the selection normalisation.
* ``leja``: a realistic mock from the Leja+20 mass function and the released Leja+22 flow's
  conditional, 3D-HST completeness limits, 0.1 dex mass and 0.25-0.6 dex SFR errors; the ridge
  and log mean SFR must lie within 0.1 dex of the released flow's values at
  z = 0.5, 1, 1.5, 2 above completeness.

Each part writes ``analyses/recorded/validate_sfs_<part>.json`` (measured numbers, settings,
timings, popmodel version). ``--smoke`` runs tiny versions (seconds) for CI.

The ridge reported is the one ``sfs.ecsv`` reports (``SFSConfig.ridge_estimator``; default the
mode of the ensemble-averaged density). For the diagnosis of the ridge's noise every record also
holds, under ``estimators``, each member's ridge and the members' median and the pooled mode at
0, 0.1, 0.2 and 0.3 dex smoothing; the ``leja`` part adds the truth's own ridge at each smoothing
(``truth_ridge_smoothed``), separating the smoothing's bias from the recovery error.
``--workers`` trains the members in parallel processes; ``--mock-cache`` / ``--workdir`` let the
``leja`` part be drawn once and resumed from member checkpoints.

    python analyses/validate_sfs.py --part sequence
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np
import torch

from popmodel._version import __version__
from popmodel.flow.fit import SFSConfig, SFSFit, fit_sfs, sfs_table
from popmodel.flow.mock import leja2022_flow_mock, sequence_mock
from popmodel.flow.sfs import sequence_statistics
from popmodel.flow.train import TrainConfig

HERE = Path(__file__).resolve().parent


def _git_commit() -> str:
    """The checkout's commit (with '+dirty' when popmodel/flow has uncommitted changes); the
    environment variable POPMODEL_GIT_COMMIT overrides it (a copy of the tree run elsewhere)."""
    import subprocess

    if os.environ.get("POPMODEL_GIT_COMMIT"):
        return os.environ["POPMODEL_GIT_COMMIT"]

    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "popmodel/flow"], cwd=HERE.parent,
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
RECORDED = HERE / "recorded"
SHARED = HERE.parents[1] / "shared" / "data"
POINTS_M = np.array([9.5, 10.0, 10.5, 9.5, 10.0, 10.5])
POINTS_Z = np.array([1.0, 1.0, 1.0, 2.0, 2.0, 2.0])
GRID = np.arange(-4.0, 4.0001, 0.01)


RIDGE_SMOOTHINGS = (0.0, 0.1, 0.2, 0.3)


def _point_stats(fit: SFSFit, m: np.ndarray, z: np.ndarray) -> dict:
    """Per-member statistics at the points, their ensemble median and 16/84 band, and ridge
    estimators for the diagnosis of the ridge's noise (each at ``RIDGE_SMOOTHINGS`` dex):
    ``ridge_members_h<h>`` (every member's ridge), ``ridge_median_h<h>`` (their median) and
    ``ridge_pooled_h<h>`` (the mode of the ensemble-averaged density). ``ridge_pooled`` is the
    one at the fit's ``ridge_smoothing``."""
    from scipy.special import logsumexp

    h0 = fit.config.ridge_smoothing
    log_dens = [f.conditional_log_density(m, z, GRID) for f in fit.flows]
    per = [sequence_statistics(GRID, lp, m, z, ridge_smoothing=h0) for lp in log_dens]
    pooled_lp = logsumexp(np.stack(log_dens), axis=0) - np.log(len(log_dens))
    pooled = sequence_statistics(GRID, pooled_lp, m, z, ridge_smoothing=h0)
    table, _ = sfs_table(fit.flows, m, z, np.full(m.size, np.nan), fit.config)
    out: dict = {"ridge_pooled": pooled.ridge.tolist(), "ridge_smoothing": h0,
                 "ridge_estimator": fit.config.ridge_estimator, "estimators": {}}
    for h in RIDGE_SMOOTHINGS:
        members = np.stack([sequence_statistics(GRID, lp, m, z, ridge_smoothing=h).ridge for lp in log_dens])
        out["estimators"][f"ridge_members_h{h:g}"] = members.round(4).tolist()
        out["estimators"][f"ridge_median_h{h:g}"] = np.nanmedian(members, 0).round(4).tolist()
        out["estimators"][f"ridge_pooled_h{h:g}"] = (
            sequence_statistics(GRID, pooled_lp, m, z, ridge_smoothing=h).ridge.round(4).tolist())
    for name in ("ridge", "log_mean_sfr", "q50", "scatter"):
        arr = np.stack([getattr(s, name) for s in per])
        q = np.nanpercentile(arr, [16, 50, 84], axis=0)
        out[name] = {"p16": q[0].tolist(), "p50": q[1].tolist(), "p84": q[2].tolist()}
    # the ridge as sfs.ecsv reports it (central value from config.ridge_estimator)
    out["ridge"]["p50"] = np.asarray(table["ridge_p50"]).tolist()
    out["ridge"]["members_p50"] = np.asarray(table["ridge_members_p50"]).tolist()
    return out


def _estimator_errors(st: dict, want: np.ndarray) -> dict:
    """Error of every ridge estimator in ``st["estimators"]`` (not the per-member lists)."""
    return {k: (np.array(v) - want).round(4).tolist() for k, v in st["estimators"].items()
            if not k.startswith("ridge_members")}


def _save_flows(fit: SFSFit, args: argparse.Namespace, name: str) -> None:
    if args.save_flows:
        from popmodel.flow.fit import save_flow

        d = Path(args.save_flows) / name
        d.mkdir(parents=True, exist_ok=True)
        for k, f in enumerate(fit.flows):
            save_flow(f, d / f"member_{k}.pt")


def _train_summary(fit: SFSFit) -> dict:
    return {
        "members": [{"best_epoch": r.best_epoch, "epochs": len(r.history), "seconds": round(r.seconds, 1),
                     "sample_points_per_second": round(r.sample_points_per_second),
                     "importance_ess": r.importance_ess} for r in fit.results],
        "timing_s": {k: round(v, 1) for k, v in fit.timing.items()},
    }


def _write(part: str, record: dict, smoke: bool, tag: str = "", directory: Path = RECORDED) -> None:
    import platform

    record = {"popmodel_version": __version__, "host": {"cpus": os.cpu_count(), "machine": platform.node()}, "git_commit": _git_commit(), "part": part, "smoke": smoke,
              "torch_threads": torch.get_num_threads(), **record}
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (f"validate_sfs_{part}" + (f"_{tag}" if tag else "") + ("_smoke" if smoke else "") + ".json")
    path.write_text(json.dumps(record, indent=1))
    print(f"wrote {path}")


def part_sequence(args: argparse.Namespace) -> dict:
    n, s, members = (3000, 8, 1) if args.smoke else (args.n_galaxies, args.n_samples, args.members)
    epochs = 3 if args.smoke else 60
    base = SFSConfig(n_members=members, max_samples=s, n_workers=args.workers,
                     train=TrainConfig(max_epochs=epochs, seed=args.seed, progress=args.progress))
    kw = {"scatter": 0.3, "sfr_error": 0.4, "mass_error": 0.1, "seed": args.seed, "schechter": (10.8, -1.0)}
    cat, _, truth = sequence_mock(n, n_samples=s, **kw)
    t_scatter = np.full(6, 0.3)
    t_mean = truth.log_mean_sfr(POINTS_M, POINTS_Z)
    t_ridge = truth.ridge(POINTS_M, POINTS_Z)
    record = {"settings": {"n_galaxies": n, "n_samples": s, **{k: v for k, v in kw.items()}},
              "points": {"log_mass": POINTS_M.tolist(), "z": POINTS_Z.tolist()},
              "truth": {"scatter": t_scatter.tolist(), "log_mean_sfr": t_mean.tolist(), "ridge": t_ridge.tolist()}}
    runs = {
        "deconvolved": (cat, base),
        "naive": (cat, replace(base, n_members=1, train=replace(base.train, method="naive"))),
        "noise_free": (truth.noise_free_catalog(cat.ids, cat.fields), replace(base, max_samples=1)),
        "deconvolved_no_bias_correction": (cat, replace(base, n_members=1,
                                                        train=replace(base.train, bias_correction=False))),
    }
    for name, (catalog, config) in runs.items():
        if args.skip and name in args.skip:
            continue
        t0 = time.perf_counter()
        fit = fit_sfs(catalog, None, config)
        _save_flows(fit, args, f"sequence_{name}")
        st = _point_stats(fit, POINTS_M, POINTS_Z)
        err = {
            "scatter": (np.array(st["scatter"]["p50"]) - t_scatter).round(4).tolist(),
            "log_mean_sfr": (np.array(st["log_mean_sfr"]["p50"]) - t_mean).round(4).tolist(),
            "ridge": (np.array(st["ridge"]["p50"]) - t_ridge).round(4).tolist(),
            "ridge_pooled": (np.array(st["ridge_pooled"]) - t_ridge).round(4).tolist(),
            "median": (np.array(st["q50"]["p50"]) - t_ridge).round(4).tolist(),
            "ridge_estimators": _estimator_errors(st, t_ridge),
        }
        record[name] = {"stats": st, "error_vs_truth": err, "n_members": config.n_members,
                        "wall_s": round(time.perf_counter() - t0, 1), **_train_summary(fit)}
        print(name, json.dumps(err), flush=True)
    if "deconvolved" in record and "naive" in record:
        d, nv = record["deconvolved"]["error_vs_truth"], record["naive"]["error_vs_truth"]
        record["verdict"] = {
            "deconvolved_max_abs_scatter_error": float(np.max(np.abs(d["scatter"]))),
            "deconvolved_max_abs_log_mean_error": float(np.max(np.abs(d["log_mean_sfr"]))),
            "deconvolved_pass": bool(np.max(np.abs(d["scatter"])) < 0.05 and np.max(np.abs(d["log_mean_sfr"])) < 0.03),
            "naive_min_abs_scatter_error": float(np.min(np.abs(nv["scatter"]))),
            "naive_min_abs_log_mean_error": float(np.min(np.abs(nv["log_mean_sfr"]))),
            "naive_fails_both": bool(np.min(np.abs(nv["scatter"])) > 0.05 and np.min(np.abs(nv["log_mean_sfr"])) > 0.03),
        }
    if "deconvolved" in record and "noise_free" in record:
        d, nf = record["deconvolved"]["stats"], record["noise_free"]["stats"]
        dr = np.array(d["ridge"]["p50"]) - np.array(nf["ridge"]["p50"])
        ds = np.array(d["scatter"]["p50"]) - np.array(nf["scatter"]["p50"])
        drp = np.array(d["ridge_pooled"]) - np.array(nf["ridge_pooled"])
        record["check_11b"] = {"ridge_difference": dr.round(4).tolist(), "scatter_difference": ds.round(4).tolist(),
                               "pass": bool(np.max(np.abs(dr)) < 0.05 and np.max(np.abs(ds)) < 0.05),
                               "ridge_pooled_difference": drp.round(4).tolist(),
                               "pass_pooled": bool(np.max(np.abs(drp)) < 0.05 and np.max(np.abs(ds)) < 0.05),
                               "ridge_estimator_differences": {
                                   k: (np.array(v) - np.array(nf["estimators"][k])).round(4).tolist()
                                   for k, v in d["estimators"].items() if not k.startswith("ridge_members")}}
    return record


def part_selection(args: argparse.Namespace) -> dict:
    n, s, members = (3000, 8, 1) if args.smoke else (args.n_galaxies // 2, args.n_samples, args.members)
    epochs = 3 if args.smoke else 60
    limit = (np.array([0.3, 2.7]), np.array([9.25, 9.75]))
    kw = {"scatter": 0.3, "sfr_error": 0.3, "mass_error": 0.2, "seed": args.seed + 1, "schechter": (10.8, -1.3),
          "log_mass_rolloff": 8.0}
    cat, survey, truth = sequence_mock(n, n_samples=s, log_mass_limit=limit, **kw)
    m = np.array([9.75, 10.0, 10.5, 10.0, 10.25, 10.75])
    z = np.array([1.0, 1.0, 1.0, 2.0, 2.0, 2.0])
    record = {"settings": {"n_galaxies": n, "n_samples": s, "limit_z": limit[0].tolist(),
                           "limit_log_mass": limit[1].tolist(), **kw},
              "points": {"log_mass": m.tolist(), "z": z.tolist(),
                         "limit_at_points": np.interp(z, *limit).tolist()},
              "truth": {"ridge": truth.ridge(m, z).tolist(), "log_mean_sfr": truth.log_mean_sfr(m, z).tolist()}}
    base = SFSConfig(n_members=members, max_samples=s, n_workers=args.workers,
                     train=TrainConfig(max_epochs=epochs, seed=args.seed, progress=args.progress))
    for name, config in (("normalised", base), ("no_normalisation", replace(base, selection="none", n_members=1))):
        t0 = time.perf_counter()
        fit = fit_sfs(cat, survey, config)
        _save_flows(fit, args, f"selection_{name}")
        st = _point_stats(fit, m, z)
        err = {"median": (np.array(st["q50"]["p50"]) - truth.ridge(m, z)).round(4).tolist(),
               "scatter": (np.array(st["scatter"]["p50"]) - 0.3).round(4).tolist(),
               "log_mean_sfr": (np.array(st["log_mean_sfr"]["p50"]) - truth.log_mean_sfr(m, z)).round(4).tolist()}
        record[name] = {"stats": st, "error_vs_truth": err, "wall_s": round(time.perf_counter() - t0, 1),
                        "cuts": fit.cuts, **_train_summary(fit)}
        print(name, json.dumps(err), flush=True)
    return record


def part_leja(args: argparse.Namespace) -> dict:
    from popmodel.flow.leja2022 import Leja2022Flow, leja2022_mass_limit

    weights = Path(args.leja_weights or SHARED / "sfs_leja2022_trained_flow" / "trained_flow_nsamp100.pth")
    flow = Leja2022Flow.load(weights, dtype=torch.float32)
    ref = json.loads((SHARED / "reference_values" / "flow_reference_values.json").read_text())
    t0 = time.perf_counter()
    cache = Path(args.mock_cache) if args.mock_cache else None
    if cache is not None and cache.exists():
        import pickle

        cat, survey, truth = pickle.loads(cache.read_bytes())
        print(f"Leja mock read from {cache}", flush=True)
    elif args.smoke:
        cat, survey, truth = leja2022_flow_mock(flow, area_arcmin2=30.0, seed=args.seed, n_samples=8,
                                                z_step=0.2, m_step=0.2, n_dummy=5)
    else:
        cat, survey, truth = leja2022_flow_mock(flow, area_arcmin2=args.area, seed=args.seed,
                                                n_samples=args.n_samples)
    if cache is not None and not cache.exists():
        import pickle

        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_bytes(pickle.dumps((cat, survey, truth)))
        if args.mock_only:
            print(f"wrote {cache}")
            raise SystemExit(0)
    t_mock = time.perf_counter() - t0
    print(f"Leja mock: {cat.n_galaxies} galaxies ({t_mock:.0f} s)", flush=True)
    members = 1 if args.smoke else args.members
    config = SFSConfig(n_members=members, max_samples=None, n_workers=args.workers,
                       train=TrainConfig(max_epochs=3 if args.smoke else 60, seed=args.seed, progress=args.progress))
    fit = fit_sfs(cat, survey, config, workdir=None if args.workdir is None else Path(args.workdir) / "leja",
                  resume=args.workdir is not None)
    _save_flows(fit, args, "leja")
    pts = [(0.5, 10.0), (1.0, 10.0), (1.0, 10.5), (1.5, 10.0), (1.5, 10.5), (2.0, 10.0), (2.0, 10.5)]
    rows = {(r["z"], r["logM"]): r for r in ref["ridge_and_mean"]}
    z = np.array([p[0] for p in pts])
    m = np.array([p[1] for p in pts])
    st = _point_stats(fit, m, z)
    want_r = np.array([rows[p]["ridge_flow"] for p in pts])
    want_m = np.array([rows[p]["logmeanSFR_flow"] for p in pts])
    dr = np.array(st["ridge"]["p50"]) - want_r
    dm = np.array(st["log_mean_sfr"]["p50"]) - want_m
    above = m > leja2022_mass_limit(z)
    # the truth's own ridge with each smoothing (the released flow's conditional on GRID): the
    # smoothing's bias relative to check 8 (unsmoothed), separate from the recovery error
    truth_lp = flow.conditional_log_density(m, z, GRID)
    truth_ridge = {f"h{h:g}": sequence_statistics(GRID, truth_lp, m, z, ridge_smoothing=h).ridge.round(4).tolist()
                   for h in RIDGE_SMOOTHINGS}
    est_err = _estimator_errors(st, want_r)
    vs_smoothed_truth = {k: (np.array(st["estimators"][k]) - np.array(truth_ridge["h" + k.split("_h")[1]]))
                         .round(4).tolist() for k in est_err}
    return {
        "settings": {**truth.settings, "n_galaxies": cat.n_galaxies, "weights": str(weights)},
        "mock_seconds": round(t_mock, 1),
        "mock_cache": args.mock_cache,
        "points": {"z": z.tolist(), "log_mass": m.tolist(), "above_completeness": above.tolist()},
        "check8_flow": {"ridge": want_r.tolist(), "log_mean_sfr": want_m.tolist()},
        "recovered": st,
        "error_vs_check8": {"ridge": dr.round(4).tolist(), "log_mean_sfr": dm.round(4).tolist(),
                            "ridge_estimators": est_err},
        "truth_ridge_smoothed": truth_ridge,
        "ridge_estimators_vs_smoothed_truth": vs_smoothed_truth,
        "pass_within_0.1": bool(np.all(np.abs(dr[above]) < 0.1) and np.all(np.abs(dm[above]) < 0.1)),
        **_train_summary(fit),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=("sequence", "selection", "leja", "all"), default="all")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, seconds (for CI)")
    ap.add_argument("--n-galaxies", type=int, default=60000)
    ap.add_argument("--n-samples", type=int, default=64,
                    help="posterior samples per galaxy (the S=32 run is recorded with --tag S32)")
    ap.add_argument("--tag", default="", help="suffix of the recorded file name")
    ap.add_argument("--recorded-dir", default=str(RECORDED), help="where the JSON record goes")
    ap.add_argument("--members", type=int, default=5)
    ap.add_argument("--area", type=float, default=900.0, help="Leja mock area [arcmin^2]")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workers", type=int, default=1, help="train ensemble members in this many processes")
    ap.add_argument("--skip", nargs="*", default=None, help="sequence runs to skip")
    ap.add_argument("--leja-weights", default=None)
    ap.add_argument("--mock-cache", default=None,
                    help="leja: pickle of the mock (read if it exists, else written after drawing it)")
    ap.add_argument("--mock-only", action="store_true", help="leja: only draw and cache the mock")
    ap.add_argument("--workdir", default=None,
                    help="leja: member checkpoints in WORKDIR/leja, resumed when present")
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--save-flows", default=None, help="directory to save every run's flows")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    parts = ("sequence", "selection", "leja") if args.part == "all" else (args.part,)
    for part in parts:
        t0 = time.perf_counter()
        record = {"sequence": part_sequence, "selection": part_selection, "leja": part_leja}[part](args)
        record["wall_s"] = round(time.perf_counter() - t0, 1)
        record["command"] = " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])])
        _write(part, record, args.smoke, args.tag, Path(args.recorded_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
