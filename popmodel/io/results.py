"""Result folders read back: ``popmodel.load(DIR)`` and what the figures read.

:func:`load` takes any folder a popmodel command writes: ``fit-smf`` / ``fit-3dhst`` (an SMF
result), ``fit-sfs`` (a sequence result), ``census``, ``figures``, or a root holding them as
``smf/``, ``sfs/``, ``census/`` and ``figures/`` (``run-3dhst``), and returns a
:class:`ResultSet` with ``.smf`` (:class:`popmodel.io.smf.SMFResult`), ``.sfs``
(:class:`popmodel.io.sfs.SFSResult`) and ``.census`` (:class:`popmodel.io.census.CensusFolder`),
None where the folder has no such step::

    res = popmodel.load("results/3dhst")
    res.smf.phi(10.5, 1.2)                  # astropy QTable: p16/p50/p84 of log10 Phi
    res.smf.rho_star([0.5, 1.0], mass_range=(8, 13))
    res.sfs.ridge(10.0, 1.0)
    res.census.sfrd(1.5, route="sfs")

:func:`load_results` is the reader of ``popmodel figures`` (a random subset of the SMF draws,
the tables).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import astropy.cosmology as apc
import numpy as np

from popmodel.io.resultdir import read_manifest

if TYPE_CHECKING:
    from astropy.table import Table

    from popmodel.io.census import CensusFolder
    from popmodel.io.sfs import SFSResult
    from popmodel.io.smf import SMFResult
    from popmodel.smf.evolution import ContinuityParams

__all__ = ["ResultSet", "Results", "load", "load_results"]

STEPS = ("smf", "sfs", "census", "figures")


@dataclass
class ResultSet:
    """The steps found in a result folder (None where absent).

    Attributes:
        root: The folder given to :func:`load`.
        smf: The mass-function result.
        sfs: The sequence result.
        census: The census result.
        figures: Paths of the figures (``figures`` step), empty when none.
    """

    root: Path
    smf: SMFResult | None = None
    sfs: SFSResult | None = None
    census: CensusFolder | None = None
    figures: list[Path] = field(default_factory=list)

    def __repr__(self) -> str:
        have = [s for s in ("smf", "sfs", "census") if getattr(self, s) is not None]
        if self.figures:
            have.append(f"{len(self.figures)} figure files")
        return f"ResultSet({str(self.root)!r}: {', '.join(have) or 'nothing'})"


def _step_of(folder: Path) -> str | None:
    """Which step wrote ``folder`` (its manifest, else the files it holds)."""
    man = read_manifest(folder)
    if man is not None and man.get("step") in STEPS:
        return str(man["step"])
    if (folder / "smf_posterior.nc").is_file() or (folder / "smf_parameters.ecsv").is_file():
        return "smf"
    if (folder / "sfs.ecsv").is_file():
        return "sfs"
    if (folder / "census_draws.nc").is_file() or (folder / "census.ecsv").is_file():
        return "census"
    return None


def _load_step(rs: ResultSet, step: str, folder: Path) -> None:
    if step == "smf":
        from popmodel.io.smf import load_smf

        rs.smf = load_smf(folder)
    elif step == "sfs":
        from popmodel.io.sfs import load_sfs

        rs.sfs = load_sfs(folder)
    elif step == "census":
        from popmodel.io.census import load_census

        rs.census = load_census(folder)
    else:
        rs.figures = sorted(p for p in folder.iterdir() if p.suffix in (".png", ".pdf"))


def load(path: str | Path) -> ResultSet:
    """Read a result folder: one step's, or a root with ``smf/``, ``sfs/``, ``census/``,
    ``figures/`` (module doc).

    Raises:
        InputError: ``path`` is not a folder, holds no popmodel result, or a result file in it
            cannot be read.
    """
    from popmodel.errors import InputError

    root = Path(path)
    if not root.is_dir():
        raise InputError(f"{root} is not a folder")
    rs = ResultSet(root)
    step = _step_of(root)
    if step is not None:
        _load_step(rs, step, root)
        return rs
    found = False
    for sub in STEPS:
        if (root / sub).is_dir():
            s = _step_of(root / sub)
            if s is not None:
                _load_step(rs, s, root / sub)
                found = True
    if not found:
        raise InputError(f"{root} holds no popmodel result (no manifest, smf_posterior.nc, "
                         "sfs.ecsv or census_draws.nc, nor smf/, sfs/, census/ sub-folders)")
    return rs


# --------------------------------------------------------------------------------------------
# what the figures read


@dataclass
class Results:
    """What the figures read from a results folder (None where a part is missing).

    Attributes:
        root: the results folder.
        smf_draws: continuity-model posterior draws (``smf/smf_posterior.nc``, or Gaussians
            from ``smf_parameters.ecsv``; :func:`popmodel.io.census.read_smf_draws`).
        smf_info: ``cosmology``, ``data_z_range``, ``source`` of the SMF fit.
        survey: the SMF fit's survey (``smf/survey.toml`` or the posterior's ``survey``
            attribute), for the completeness shading.
        sfs: ``sfs/sfs.ecsv``.
        sfs_cosmology: the sequence fit's cosmology (``sfs/survey.toml``; WMAP9 otherwise).
        census: ``census/census.ecsv``.
        cosmology: the fit's cosmology for the literature (SMF fit, else the census's, else
            WMAP9).
        notes: what was missing or assumed.
    """

    root: Path | None = None
    smf_draws: ContinuityParams | None = None
    smf_info: dict | None = None
    survey: object | None = None
    sfs: Table | None = None
    sfs_cosmology: apc.Cosmology = field(default_factory=lambda: apc.WMAP9)
    census: Table | None = None
    cosmology: apc.Cosmology = field(default_factory=lambda: apc.WMAP9)
    notes: list[str] = field(default_factory=list)

    def has(self, part: str) -> bool:
        """True if the part (``"smf"``, ``"sfs"``, ``"census"``) was loaded."""
        return {"smf": self.smf_draws, "sfs": self.sfs, "census": self.census}[part] is not None

    @property
    def data_z_range(self) -> list[float] | None:
        """The SMF data's redshift range (from the fit, else from the census's flags)."""
        if self.smf_info and self.smf_info.get("data_z_range"):
            return list(self.smf_info["data_z_range"])
        if self.census is not None and "extrapolated" in self.census.colnames:
            z = np.asarray(self.census["z"], float)[~np.asarray(self.census["extrapolated"], bool)]
            if z.size:
                return [float(z.min()), float(z.max())]
        return None


def _survey_from(smf_dir: Path) -> object | None:
    """The SMF fit's survey: ``survey.toml``, else the posterior file's ``survey`` provenance."""
    from popmodel.survey import Survey

    if (smf_dir / "survey.toml").is_file():
        return Survey.read(smf_dir / "survey.toml")
    nc = smf_dir / "smf_posterior.nc"
    if nc.is_file():
        from popmodel.io.smf import read_smf_posterior

        d = read_smf_posterior(nc).meta.get("survey")
        if isinstance(d, str):
            try:
                d = json.loads(d)
            except ValueError:
                return None
        if isinstance(d, dict):
            try:
                return Survey.from_dict(d)
            except (ValueError, TypeError, KeyError):
                return None
    return None


def load_results(results_dir: str | Path, *, max_draws: int = 500, seed: int = 0) -> Results:
    """Read ``RESULTS_DIR/{smf,sfs,census}``; missing parts are None with a note."""
    from astropy.table import Table

    from popmodel.cosmology import cosmology_from_config
    from popmodel.io.census import read_smf_draws

    root = Path(results_dir)
    res = Results(root=root)
    smf_dir = root / "smf"
    if (smf_dir / "smf_posterior.nc").is_file() or (smf_dir / "smf_parameters.ecsv").is_file():
        res.smf_draws, res.smf_info = read_smf_draws(smf_dir, max_draws=max_draws, seed=seed)
        res.survey = _survey_from(smf_dir)
        res.cosmology = res.smf_info["cosmology"]
    else:
        res.notes.append(f"no SMF results in {smf_dir} (smf_posterior.nc or smf_parameters.ecsv)")
    path = root / "census" / "census.ecsv"
    if path.is_file():
        res.census = Table.read(path, format="ascii.ecsv")
        if res.smf_draws is None:
            cc = res.census.meta.get("cosmology_config")
            if isinstance(cc, dict) and ("H0" in cc or "name" in cc):
                res.cosmology = cosmology_from_config(cc)
            else:
                res.notes.append(f"{path} records no cosmology_config: literature moved to WMAP9")
    else:
        res.notes.append(f"no census results ({path})")
    path = root / "sfs" / "sfs.ecsv"
    if path.is_file():
        from popmodel.survey import Survey

        res.sfs = Table.read(path, format="ascii.ecsv")
        if (root / "sfs" / "survey.toml").is_file():
            res.sfs_cosmology = Survey.read(root / "sfs" / "survey.toml").cosmology
        else:
            res.notes.append(f"no {root / 'sfs' / 'survey.toml'}: the sequence is taken to be in WMAP9")
    else:
        res.notes.append(f"no sequence results ({path})")
    return res
