"""The exceptions that popmodel raises on purpose, and how the command line reports them.

Every error popmodel raises for bad input derives from :class:`InputError` (a ``ValueError``),
every failed computation from :class:`ComputationError` (a ``RuntimeError``). The command line
prints either as one line, ``popmodel COMMAND: error: MESSAGE``, and exits with status 2
(bad input) or 1 (failed computation); ``-v`` or ``POPMODEL_TRACEBACK=1`` adds the traceback.
"""

from __future__ import annotations

__all__ = ["ComputationError", "InputError", "OutputError", "PopmodelError"]


class PopmodelError(Exception):
    """Base class of the errors popmodel raises on purpose."""


class InputError(PopmodelError, ValueError):
    """Invalid input (a file, a column, a survey key, an option); the message names it."""


class OutputError(InputError):
    """The output location cannot be used (not writable, not empty, or holding an input)."""


class ComputationError(PopmodelError, RuntimeError):
    """A computation that could not finish (a fit that failed, a sampler that broke down)."""
