"""The one JSON encoder of popmodel's metadata (result files, catalogue metadata, manifests).

numpy scalars become Python numbers, arrays lists (large ones a short placeholder, unless
``max_array_size=None``), tuples lists, mapping keys strings, and NaN or infinite floats
``null``: JSON has no NaN, and ``json.dumps`` would otherwise write the non-standard token
``NaN`` that strict readers (``jq``, JavaScript, ``json.loads(..., parse_constant=...)``) refuse.

numpy-only, so that every layer (core, :mod:`popmodel.io`, the command line) can use it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

import numpy as np

__all__ = ["dumps", "json_default", "to_jsonable"]

#: Arrays with at least this many elements are written as ``"<array shape (...)>"``.
MAX_ARRAY_SIZE = 1000


def to_jsonable(x: Any, *, max_array_size: int | None = MAX_ARRAY_SIZE) -> Any:
    """``x`` with every value converted to something :func:`json.dumps` writes as strict JSON.

    Args:
        x: Nested dicts, lists, tuples, numpy scalars and arrays, numbers, strings, paths.
        max_array_size: Arrays of at least this many elements become a placeholder string
            (None: always written in full).

    Returns:
        The converted value (NaN and +-inf as None).
    """
    if isinstance(x, Mapping):
        return {str(k): to_jsonable(v, max_array_size=max_array_size) for k, v in x.items()}
    if isinstance(x, list | tuple | set | frozenset):
        return [to_jsonable(v, max_array_size=max_array_size) for v in x]
    if isinstance(x, np.ndarray):
        if max_array_size is not None and x.size >= max_array_size:
            return f"<array shape {x.shape}>"
        return to_jsonable(x.tolist(), max_array_size=max_array_size)
    if isinstance(x, np.generic):
        return to_jsonable(x.item(), max_array_size=max_array_size)
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, PurePath):
        return str(x)
    return x


def json_default(obj: Any) -> Any:
    """A ``default=`` for :func:`json.dumps`: numpy scalars and arrays, paths (NaN inside
    arrays becomes null; a bare float NaN reaches ``json.dumps`` first, so prefer
    :func:`to_jsonable` or :func:`dumps`)."""
    if isinstance(obj, np.ndarray | np.generic | PurePath | set | frozenset):
        return to_jsonable(obj, max_array_size=None)
    raise TypeError(f"metadata value of type {type(obj).__name__} is not JSON serialisable")


def dumps(x: Any, *, max_array_size: int | None = MAX_ARRAY_SIZE, **kw: Any) -> str:
    """``json.dumps(to_jsonable(x))``, strict JSON (``allow_nan=False``)."""
    kw.setdefault("default", json_default)
    return json.dumps(to_jsonable(x, max_array_size=max_array_size), allow_nan=False, **kw)
