r"""``popmodel census``: read SMF (and SFS) results, write the census table and its figures.

Inputs:

- ``--smf DIR`` as written by :func:`popmodel.io.smf.write_smf_results`: the posterior draws
  from ``smf_posterior.nc`` (its attributes give the cosmology and the data's redshift range);
  without it, independent Gaussians from ``smf_parameters.ecsv`` (p16/p50/p84; an
  approximation that drops the posterior correlations, as Leja+20's Appendix B does).
- ``--sfs DIR`` (optional) with the flow module's ``sfs.ecsv`` (columns ``z``, ``log_mass``,
  ``log_mean_sfr_p16/p50/p84``, ``log_sfr_q16/q50/q84``). Its band of log <SFR> becomes E
  ensemble curves :math:`p_{50} + \epsilon_e (p_{84}-p_{16})/2`, one standard normal
  :math:`\epsilon_e` per curve (fully correlated in mass and z: an approximation until
  per-member curves are written), and its SFR percentiles give P(sSFR > cut) through a split
  normal (:func:`popmodel.census.p_above_cut_split_normal`). Without it, route 2 uses the
  Leja+22 Table 1 mean fit and the star-forming/quiescent split uses the Leja+22 released
  percentile curves; the outputs say so.

Outputs in ``--out``: ``census.ecsv``, ``census_sf_q.ecsv``, ``census_summary.json`` and the
figures ``census_rho_star``, ``census_sfrd``, ``census_sf_q`` (PNG and PDF).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

__all__ = ["register", "run_census"]

#: The readers live in :mod:`popmodel.io.census`; still reachable here (lazily: importing this
#: module, and so building the ``popmodel`` parser, imports neither numpy nor astropy).
_FROM_IO = ("SFSInputs", "read_sfs_dir", "read_smf_draws")


def __getattr__(name: str) -> Any:
    if name in _FROM_IO:
        from popmodel.io import census

        return getattr(census, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

#: Redshifts of the star-forming / quiescent mass-function panels.
SF_Q_Z = (0.5, 1.0, 1.5, 2.0, 2.5)

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# the command


def run_census(
    smf_dir: str | Path,
    sfs_dir: str | Path | None,
    out: str | Path,
    *,
    z: np.ndarray | None = None,
    max_draws: int = 500,
    seed: int = 0,
    return_fraction: tuple[float, float] = (0.30, 0.45),
    kernel: str = "none",
    masses_include_remnants: bool = True,
    mass_offset: str = "none",
    mass_range: tuple[float, float] = (8.0, 13.0),
    ssfr_cut_kind: str = "hubble",
    figures: bool = True,
    manifest_config: dict | None = None,
) -> dict[str, list[str]]:
    """The ``popmodel census`` job (see the module doc): read, compute, write, draw; returns
    kind -> written paths.

    This is the command line's orchestration and takes its words (``kernel="lk11"``,
    ``mass_offset="sed"``); from Python, :func:`popmodel.census.compute_census` takes the
    objects themselves (a :class:`popmodel.census.MassLossKernel` or None, a
    :class:`popmodel.census.ReturnFractionPrior`, a :class:`popmodel.census.MassOffsetPrior`)
    and returns a :class:`popmodel.census.CensusResult`. ``z`` defaults to
    :data:`popmodel.units.Z_GRID`.

    The files are written into a staging folder and committed into ``out`` together with a
    manifest (:mod:`popmodel.io.resultdir`); each carries the manifest's ``run_id``.
    """
    import numpy as np
    from astropy.table import Table

    from popmodel import census as C
    from popmodel.cosmology import cosmology_to_config
    from popmodel.io.census import read_sfs_dir, read_smf_draws, write_census_files
    from popmodel.io.resultdir import SCHEMA_VERSION, staged
    from popmodel.plots.census import plot_census_rho_star, plot_census_sf_q, plot_census_sfrd
    from popmodel.plots.smf import save

    if z is None:
        from popmodel.units import Z_GRID as z
    config = manifest_config if manifest_config is not None else {
        "smf": str(smf_dir), "sfs": None if sfs_dir is None else str(sfs_dir),
        "z": [float(x) for x in np.asarray(z)], "max_draws": max_draws, "seed": seed,
        "return_fraction": list(return_fraction), "kernel": kernel,
        "masses_include_remnants": masses_include_remnants, "mass_offset": mass_offset,
        "mass_range": list(mass_range), "ssfr_cut_kind": ssfr_cut_kind}
    final_out = Path(out)
    with staged(final_out, step="census", config=config) as stage:
        out = stage.path
        stamp = {"run_id": stage.run_id, "result_schema_version": SCHEMA_VERSION}
        draws, info = read_smf_draws(smf_dir, max_draws=max_draws, seed=seed)
        cosmo = info["cosmology"]
        sfs = read_sfs_dir(sfs_dir, seed=seed, cut=ssfr_cut_kind, cosmology=cosmo)
        kern = {"none": None, "imf": lambda: C.MassLossKernel.from_imf(masses_include_remnants),
                "lk11": lambda: C.MassLossKernel.leitner_kravtsov2011(masses_include_remnants),
                "b13": lambda: C.MassLossKernel.behroozi2013(masses_include_remnants)}
        if kernel not in kern:
            raise ValueError(f"kernel must be one of {list(kern)}, not {kernel!r}")
        offsets = {"none": None, "sed": C.SED_MODEL_OFFSET, "fast-to-prospector": C.FAST_TO_PROSPECTOR_OFFSET}
        if mass_offset not in offsets:
            raise ValueError(f"mass_offset must be one of {list(offsets)}, not {mass_offset!r}")
        res = C.compute_census(
            draws, np.asarray(z, float), log_m_lo=mass_range[0], log_m_hi=mass_range[1],
            return_fraction=C.ReturnFractionPrior(*return_fraction, masses_include_remnants),
            kernel=None if kern[kernel] is None else kern[kernel](), mean_log_sfr=sfs.mean_log_sfr,
            mass_offset=offsets[mass_offset], cosmology=cosmo, seed=seed, sfs_label=sfs.description,
        )
        zr = info["data_z_range"]
        tab = res.table()
        tab["extrapolated"] = np.zeros(len(tab), bool) if zr is None else (res.z < zr[0]) | (res.z > zr[1])
        try:
            tab.meta["cosmology_config"] = cosmology_to_config(cosmo)
        except ValueError:  # a cosmology that is neither a built-in nor flat LCDM: the text only
            pass
        tab.meta.update({"smf_source": info["source"], "sfs_source": sfs.description,
                         "smf_draws_used": res.meta["n_draws"], "smf_draws_total": info["n_total"],
                         **stamp})

        lm = np.round(np.arange(8.0, 12.01, 0.05), 3)
        zp = tuple(zz for zz in SF_Q_Z if zr is None or zr[0] - 0.25 <= zz <= zr[1] + 0.25) or SF_Q_Z
        p_use = draws if res.mass_offset is None else C.apply_mass_offset(draws, res.mass_offset)
        lsf, lq = C.sf_q_mass_functions(p_use, lm, np.array(zp), sfs.p_star_forming)
        bsf, bq = C.percentile_bands(lsf), C.percentile_bands(lq)
        rows = [(zz, m, *bsf[:, k, j], *bq[:, k, j]) for k, zz in enumerate(zp) for j, m in enumerate(lm)]
        sfq = Table(rows=rows, names=("z", "log_mass", "log_phi_sf_p16", "log_phi_sf_p50", "log_phi_sf_p84",
                                      "log_phi_q_p16", "log_phi_q_p50", "log_phi_q_p84"),
                    meta={"split": sfs.sf_description, "band_label": res.meta["band_label"],
                          "units": "log10 Mpc-3 dex-1; NaN where P(SF) is undefined", **stamp})
        summary = dict(res.meta, smf_source=info["source"], sfs_source=sfs.description,
                       sf_q_split=sfs.sf_description, data_z_range=zr, **stamp)
        written = write_census_files(out, res, draws, table=tab, sf_q=sfq, summary=summary,
                                     stamp=stamp)
        if figures:
            figs = save(plot_census_rho_star(res, cosmology=cosmo, data_range=zr), str(out / "census_rho_star"))
            figs += save(plot_census_sfrd(res, cosmology=cosmo, data_range=zr), str(out / "census_sfrd"))
            figs += save(plot_census_sf_q(lm, zp, bsf, bq, cosmology=cosmo, band_label=res.meta["band_label"],
                                          sf_source=sfs.sf_description), str(out / "census_sf_q"))
            written["figures"] = figs
    return stage.finals(written)


def _cmd(a: argparse.Namespace) -> int:
    import numpy as np

    from popmodel.cli.common import cli_config, require_folders
    from popmodel.io.resultdir import prepare_output

    require_folders(a.smf, a.sfs)
    if prepare_output(a.out, resume=a.resume, overwrite=a.overwrite,
                      inputs=[p for d in (a.smf, a.sfs) if d for p in Path(d).glob("*")],
                      config=cli_config(a), command="popmodel census") == "complete":
        return 0
    files = run_census(
        a.smf, a.sfs, a.out, manifest_config=cli_config(a), z=np.round(np.arange(a.z_min, a.z_max + 1e-9, a.dz), 4),
        max_draws=a.max_draws, seed=a.seed, return_fraction=tuple(a.return_fraction),
        kernel=a.kernel, masses_include_remnants=not a.exclude_remnants, mass_offset=a.mass_offset,
        mass_range=tuple(a.mass_range), ssfr_cut_kind=a.ssfr_cut, figures=not a.no_figures,
    )
    meta = json.loads(Path(files["summary"][0]).read_text())
    log.info(f"route 1: {meta['sfrd_from_rho_method']}")
    log.info(f"route 2: {meta['sfrd_from_sfs_source']}")
    log.info(f"bands: {meta['band_label']}")
    log.info(f"wrote {sum(len(v) for v in files.values())} files to {a.out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``popmodel census --smf SMF_DIR [--sfs SFS_DIR] --out DIR`` to a CLI."""
    from popmodel.cli.common import (
        add_output_options,
        fraction,
        nonneg_float,
        nonneg_int,
        positive_float,
        positive_int,
    )

    p = subparsers.add_parser("census", help="rho_*(z) and the SFR density two ways, with figures")
    p.add_argument("--smf", required=True, help="folder written by fit-smf / fit-3dhst")
    p.add_argument("--sfs", default=None,
                   help="folder with the flow's sfs.ecsv (default: none, route 2 then uses the "
                   "Leja+22 Table 1 mean fit)")
    p.add_argument("--out", required=True, help="output folder")
    add_output_options(p)
    p.add_argument("--z-min", type=nonneg_float, default=0.2, help="lowest redshift (default 0.2)")
    p.add_argument("--z-max", type=positive_float, default=3.0, help="highest redshift (default 3)")
    p.add_argument("--dz", type=positive_float, default=0.05, help="redshift step (default 0.05)")
    p.add_argument("--max-draws", type=positive_int, default=500,
                   help="posterior draws used (random subset; default 500)")
    p.add_argument("--seed", type=nonneg_int, default=0, help="random seed (default 0)")
    p.add_argument("--return-fraction", type=fraction, nargs=2, default=[0.30, 0.45],
                   metavar=("LO", "HI"),
                   help="uniform prior on the return fraction R (equal values fix it; Leja's "
                   "code used 0.36; default 0.30 0.45)")
    p.add_argument("--kernel", choices=("none", "imf", "lk11", "b13"), default="none",
                   help="time-dependent mass loss instead of instantaneous R (default none)")
    p.add_argument("--exclude-remnants", action="store_true",
                   help="masses count living stars only (default: remnants included, as in FSPS)")
    p.add_argument("--mass-offset", choices=("none", "sed", "fast-to-prospector"), default="none",
                   help="SED-model mass-offset nuisance (default none: bands statistical only)")
    p.add_argument("--mass-range", type=float, nargs=2, default=[8.0, 13.0], metavar=("LO", "HI"),
                   help="log10 stellar-mass range of rho_* [Msun] (default 8 13)")
    p.add_argument("--ssfr-cut", choices=("hubble", "constant"), default="hubble",
                   help="quiescent below 0.2/t_H(z) (default) or 1e-11/yr")
    p.add_argument("--no-figures", action="store_true", help="write no figures")
    p.set_defaults(func=_cmd)
    return p
