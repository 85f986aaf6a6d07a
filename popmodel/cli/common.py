"""Pieces shared by the ``popmodel`` sub-commands: validated option types, the output-folder
options, input checks, logging to stderr and the JAX set-up.

Importing this module imports nothing but the standard library (the parser of every
sub-command is built from it, so ``popmodel --help`` stays fast)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = [
    "add_catalog_options",
    "add_output_options",
    "cli_config",
    "fraction",
    "logging_to_stderr",
    "nonneg_float",
    "nonneg_int",
    "positive_float",
    "positive_int",
    "probability",
    "read_catalog",
    "require_files",
    "require_folders",
    "run_handled",
    "setup_jax",
    "z_error",
]


def setup_jax(n_devices: int) -> None:
    """Float64 and ``n_devices`` CPU devices; must run before JAX is first imported.

    The SMF commands ask for one device (chains one after another) unless
    ``--parallel-chains``, which asks for one per chain so that each runs its own trajectory
    lengths in its own thread. Measured with jaxlib 0.10 on CPU (the 3D-HST fit): one chain's
    resident memory stays flat at about 1.2 GB, while with two chains at once it grows by about
    45 MB per second of sampling, so a long parallel run can exhaust the machine's memory.
    """
    os.environ.setdefault("JAX_ENABLE_X64", "1")
    os.environ.setdefault("MPLBACKEND", "Agg")
    if "jax" not in sys.modules:
        import numpyro

        numpyro.set_host_device_count(max(1, n_devices))
    import jax

    jax.config.update("jax_enable_x64", True)


_HANDLER = "popmodel-cli"


@contextlib.contextmanager
def logging_to_stderr(verbose: int = 0, quiet: bool = False) -> Iterator[None]:
    """popmodel's log messages on stderr while a command runs, as bare lines.

    INFO (progress, notes, what was written) by default, WARNING and above with ``quiet``,
    DEBUG with ``verbose >= 2`` (which also lets other libraries' debug messages through);
    other libraries' warnings are shown too. The previous levels and handlers come back
    afterwards, so calling :func:`popmodel.cli.main` from Python leaves logging as it was.
    """
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    root, ours = logging.getLogger(), logging.getLogger("popmodel")
    saved = root.level, ours.level
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for h in [h for h in root.handlers if h.get_name() == _HANDLER]:
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose > 1 else logging.WARNING)
    ours.setLevel(level)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(saved[0])
        ours.setLevel(saved[1])


def require_files(*paths: str | os.PathLike | None) -> None:
    """A missing or unreadable input is one line naming it (:class:`popmodel.errors.InputError`)."""
    from popmodel.errors import InputError

    for p in paths:
        if p is None:
            continue
        path = Path(p)
        if not path.exists():
            raise InputError(f"input file {p} does not exist")
        if path.is_dir():
            raise InputError(f"input {p} is a folder, not a file")
        if not os.access(path, os.R_OK):
            raise InputError(f"input file {p} is not readable")


def require_folders(*paths: str | os.PathLike | None) -> None:
    """A missing or unreadable input folder is one line naming it."""
    from popmodel.errors import InputError

    for p in paths:
        if p is None:
            continue
        path = Path(p)
        if not path.exists():
            raise InputError(f"input folder {p} does not exist")
        if not path.is_dir():
            raise InputError(f"input {p} is a file, not a folder")
        if not os.access(path, os.R_OK | os.X_OK):
            raise InputError(f"input folder {p} is not readable")


def _number(kind: type, test: Callable[[float], bool], what: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if kind is float and math.isnan(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a number")
        if not test(value):
            raise argparse.ArgumentTypeError(f"{text!r} must be {what}")
        return value

    parse.__name__ = what  # argparse names the type in some messages
    return parse


#: ``type=`` callables for argparse: they reject bad numbers at parse time (exit status 2).
positive_int = _number(int, lambda v: v >= 1, "an integer >= 1")
nonneg_int = _number(int, lambda v: v >= 0, "an integer >= 0")
positive_float = _number(float, lambda v: 0 < v < float("inf"), "a finite number > 0")
nonneg_float = _number(float, lambda v: 0 <= v < float("inf"), "a finite number >= 0")
probability = _number(float, lambda v: 0 < v < 1, "strictly between 0 and 1")
fraction = _number(float, lambda v: 0 <= v <= 1, "between 0 and 1")


def z_error(text: str) -> str:
    """``--z-error``: a number > 0, or ``catalog`` (checked at parse time, kept as text)."""
    if text != "catalog":
        positive_float(text)
    return text


def add_output_options(p: argparse.ArgumentParser, *, single_step: bool = True) -> None:
    """``--resume`` and ``--overwrite``, with the meaning documented in their help."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true",
                   help="keep a complete result already in --out (made with the same settings) "
                   "and redo an incomplete one" + ("" if single_step else ", step by step"))
    g.add_argument("--overwrite", action="store_true",
                   help="replace a popmodel result in --out (removes only the files its manifest "
                   "lists; refused when an input file lies inside --out). Without --resume or "
                   "--overwrite a non-empty --out is refused before any computation")


#: Options that do not change a result (left out of the configuration ``--resume`` compares).
_NOT_CONFIG = {"func", "cmd", "version", "needs_jax", "out", "resume", "overwrite", "verbose",
               "quiet", "no_progress", "threads", "workers", "manifest_config", "strict"}


def cli_config(a: argparse.Namespace) -> dict:
    """The parsed options that define a result, for the manifest and ``--resume``."""
    return {k: v for k, v in sorted(vars(a).items()) if k not in _NOT_CONFIG and not callable(v)}


#: Errors that mean bad input (exit status 2) and a failed computation (exit status 1), by name:
#: their modules are looked up only if already imported (the command raised them).
_INPUT_ERRORS = ("popmodel.errors.InputError", "popmodel.catalog.CatalogError",
                 "popmodel.survey.SurveyError")
_COMPUTATION_ERRORS = ("popmodel.errors.ComputationError", "popmodel.flow.train.FlowTrainingError")


def _is_instance(exc: BaseException, names: tuple[str, ...]) -> bool:
    for name in names:
        module, cls = name.rsplit(".", 1)
        mod = sys.modules.get(module)
        if mod is not None and isinstance(exc, getattr(mod, cls)):
            return True
    return False


def exit_code(exc: BaseException) -> int | None:
    """2 for bad input, 1 for a failed computation, None for an unexpected error (a bug)."""
    if _is_instance(exc, _INPUT_ERRORS) or isinstance(exc, FileNotFoundError | PermissionError):
        return 2
    if _is_instance(exc, _COMPUTATION_ERRORS):
        return 1
    return None


def run_handled(name: str, run: Callable[[], int | None], verbose: int = 0) -> int:
    """Run a command; an error becomes one line ``NAME: error: MESSAGE`` on stderr and an exit
    status (2 bad input, 1 failed computation, 130 interrupted); ``verbose`` (or
    ``POPMODEL_TRACEBACK=1``) adds the traceback. An unexpected error (a bug) always shows it."""
    show_tb = verbose > 0 or os.environ.get("POPMODEL_TRACEBACK", "") not in ("", "0")
    try:
        return int(run() or 0)
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 (the top-level handler)
        code = exit_code(exc)
        if code is None or show_tb:
            traceback.print_exc()
        if code is None:
            print(f"{name}: unexpected error (a bug; please report it with the traceback "
                  f"above): {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        msg = str(exc) if not isinstance(exc, OSError) or not exc.filename else \
            f"{exc.strerror}: {exc.filename}"
        print(f"{name}: error: {msg}", file=sys.stderr)
        return code


#: The layouts of ``--format`` (those of :func:`popmodel.readers.read_posteriors`).
CATALOG_FORMATS = ("auto", "long", "wide", "chains", "provabgs", "qp")


def column_map(text: str) -> str:
    """``--columns``: checked at parse time (:func:`popmodel.readers.parse_columns`), kept as
    text."""
    from popmodel.catalog import CatalogError
    from popmodel.readers import parse_columns

    try:
        parse_columns(text)
    except CatalogError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def add_catalog_options(p: argparse.ArgumentParser) -> None:
    """``--format``, ``--columns``, ``--hdf5-path`` and ``--field``: how the catalogue file is
    read (:func:`popmodel.readers.read_posteriors`)."""
    g = p.add_argument_group("catalogue reading")
    g.add_argument("--format", dest="catalog_format", choices=CATALOG_FORMATS, default="auto",
                   help="layout of the catalogue: long (one row per sample), wide (one row per "
                   "galaxy, vector columns), chains (collated SED-fitting chains, HDF5), "
                   "provabgs (samples cube with labels, HDF5) or qp (photo-z PDF ensemble); "
                   "default auto: detected from the file's contents, then its extension")
    g.add_argument("--columns", dest="catalog_columns", metavar="MAP", default=None,
                   type=column_map,
                   help="names in the file for popmodel's, as NAME=COLUMN,NAME=COLUMN (e.g. "
                   "log_mass=LOGM,z=ZRED,log_sfr=LOGSFR; parameter labels for chains and "
                   "provabgs files); default: none, popmodel's names (for chains: logmass, "
                   "zred, logsfr)")
    g.add_argument("--hdf5-path", dest="catalog_hdf5_path", metavar="PATH", default=None,
                   help="HDF5 path of the table, chains group or samples dataset; default: the "
                   "dataset 'catalog' or the only table in the file (the root group for chains)")
    g.add_argument("--field", dest="catalog_field", metavar="NAME", default=None,
                   help="survey field of every galaxy, for a file without a field column or "
                   "dataset; default: none, the file's own")


def read_catalog(a: argparse.Namespace):
    """The catalogue ``a.catalog``, read with the options of :func:`add_catalog_options`."""
    from popmodel.readers import read_posteriors

    fmt = getattr(a, "catalog_format", "auto")
    return read_posteriors(a.catalog, format=None if fmt == "auto" else fmt,
                           columns=getattr(a, "catalog_columns", None),
                           hdf5_path=getattr(a, "catalog_hdf5_path", None),
                           field=getattr(a, "catalog_field", None))
