"""Metadata shared by the result formats: netCDF attributes, ECSV units, input checksums."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from numbers import Number
from pathlib import Path
from typing import Any

import numpy as np

from popmodel.jsonutil import dumps, to_jsonable

__all__ = [
    "JSON_ATTRS_KEY",
    "file_record",
    "flatten_attrs",
    "input_records",
    "unflatten_attrs",
    "with_units",
]

#: Attribute listing the flattened keys whose values are JSON text (None, booleans, mixed or
#: nested lists: what netCDF attributes cannot hold).
JSON_ATTRS_KEY = "json_encoded_attributes"
SEP = "."


def _plain(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, str | int | float):
        return True
    if isinstance(v, list) and v:
        if all(isinstance(x, str) for x in v):
            return True
        return all(isinstance(x, Number) and not isinstance(x, bool) for x in v)
    return False


def flatten_attrs(meta: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested provenance as flat netCDF attributes: ``{"config": {"method": "nuts"}}`` becomes
    ``{"config.method": "nuts"}``; strings, numbers and non-empty lists of either are stored as
    they are, anything else (None, booleans, nested or mixed lists) as JSON text named in
    :data:`JSON_ATTRS_KEY`. :func:`unflatten_attrs` inverts it."""
    flat: dict[str, Any] = {}
    encoded: list[str] = []

    def walk(d: Mapping, pre: str) -> None:
        for k, v in d.items():
            key = f"{pre}{k}"
            if isinstance(v, Mapping) and v:
                walk(v, key + SEP)
            elif _plain(v):
                flat[key] = v
            else:
                flat[key] = dumps(v)
                encoded.append(key)

    walk(to_jsonable(dict(meta)), prefix)
    if encoded:
        flat[JSON_ATTRS_KEY] = encoded
    return flat


def unflatten_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`flatten_attrs` (arrays back to lists, JSON text decoded)."""
    enc = attrs.get(JSON_ATTRS_KEY, [])
    enc = {enc} if isinstance(enc, str) else set(np.atleast_1d(enc).tolist())
    out: dict[str, Any] = {}
    for key, v in attrs.items():
        if key == JSON_ATTRS_KEY:
            continue
        if isinstance(v, bytes):
            v = v.decode()
        if key in enc:
            v = json.loads(v)
        elif isinstance(v, np.ndarray):
            v = v.tolist()
        elif isinstance(v, np.generic):
            v = v.item()
        d = out
        parts = key.split(SEP)
        for part in parts[:-1]:
            nxt = d.get(part)
            if not isinstance(nxt, dict):
                nxt = d[part] = {}
            d = nxt
        d[parts[-1]] = v
    return out


def with_units(table: Any, units: Mapping[str, Any] | None = None) -> Any:
    """Give every column of an astropy table a unit (in place; returns the table).

    Columns named in ``units`` get that unit; columns that already carry one keep it; every
    other column (labels, flags, counts, ratios) is marked dimensionless, which ECSV writes as
    ``unit: ''``.
    """
    import astropy.units as u

    units = dict(units or {})
    for c in table.colnames:
        if c in units:
            table[c].unit = units[c]
        elif table[c].unit is None:
            table[c].unit = u.dimensionless_unscaled
    return table


def file_record(path: str | os.PathLike) -> dict[str, Any]:
    """``{"path", "bytes", "sha256"}`` of an input file (path as given)."""
    p = Path(path)
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"path": str(path), "bytes": p.stat().st_size, "sha256": h.hexdigest()}


def input_records(inputs: Any) -> list[dict[str, Any]]:
    """Checksums of every existing file among ``inputs`` (a path, or a list or dict of paths,
    e.g. the ``inputs`` entry a command line records); other values are skipped."""
    found: list[str] = []

    def walk(x: Any) -> None:
        if isinstance(x, Mapping):
            for v in x.values():
                walk(v)
        elif isinstance(x, list | tuple):
            for v in x:
                walk(v)
        elif isinstance(x, str | os.PathLike) and str(x) and Path(x).is_file():
            found.append(str(x))

    walk(inputs)
    return [file_record(p) for p in dict.fromkeys(found)]
