"""Pieces shared by the ``popmodel`` sub-commands: validated option types, the output-folder
options, and the JAX set-up. Importing this module imports neither JAX nor torch."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable

__all__ = [
    "add_output_options",
    "cli_config",
    "fraction",
    "nonneg_float",
    "nonneg_int",
    "positive_float",
    "positive_int",
    "probability",
    "setup_jax",
]


def setup_jax(n_devices: int) -> None:
    """Float64 and one CPU device per chain; must run before JAX is first imported."""
    os.environ.setdefault("JAX_ENABLE_X64", "1")
    os.environ.setdefault("MPLBACKEND", "Agg")
    if "jax" not in sys.modules:
        import numpyro

        numpyro.set_host_device_count(max(1, min(n_devices, os.cpu_count() or 1)))
    import jax

    jax.config.update("jax_enable_x64", True)


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
               "quiet", "no_progress", "threads", "workers", "manifest_config"}


def cli_config(a: argparse.Namespace) -> dict:
    """The parsed options that define a result, for the manifest and ``--resume``."""
    return {k: v for k, v in sorted(vars(a).items()) if k not in _NOT_CONFIG and not callable(v)}
