"""Result folders that cannot mix runs: staged writes, a manifest, ``--resume`` and ``--overwrite``.

Every command that writes results goes through two calls:

1. :func:`prepare_output`, **before any computation**: checks that the folder can be created and
   written (a file in the path, a read-only parent), refuses a folder that is not empty unless
   ``resume`` or ``overwrite`` is given, and refuses ``overwrite`` when an input file lies inside
   the folder. ``overwrite`` removes the files that a popmodel manifest lists (and nothing else);
   ``resume`` keeps a complete result (its manifest is complete and was made with the same
   configuration) and otherwise clears the incomplete one so that the step is redone.
2. :func:`staged`, around the writing: the files are written into a hidden staging folder inside
   the output folder, every file is stamped with the run id (``run_id`` in its metadata), and
   only when all are written is the step committed: a commit record lists the old and new files,
   the old manifest goes first, then the old files, the new files are moved in, and the new
   manifest ``popmodel_manifest.json`` (file names, sizes and SHA-256 checksums) comes last.

A process killed at any point therefore leaves either the complete old result, the complete new
one, or a folder without a complete manifest whose popmodel files are all named by the commit
record, which ``--resume`` and ``--overwrite`` clear. A complete manifest is the only thing
``--resume`` trusts.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from popmodel._version import __version__
from popmodel.errors import OutputError

_log = logging.getLogger(__name__)

__all__ = [
    "MANIFEST",
    "SCHEMA_VERSION",
    "Stage",
    "prepare_output",
    "read_manifest",
    "same_config",
    "staged",
    "write_text_atomic",
]

MANIFEST = "popmodel_manifest.json"
COMMIT_RECORD = ".popmodel_commit.json"
STAGE_PREFIX = ".popmodel_stage_"
#: Version of the result layout, recorded in the manifest and in every result file.
#: 1: manifests and ``run_id`` stamps; 2: the netCDF posterior over ``anchor_z`` and
#: ``density_term`` coordinates with flattened provenance attributes, units on every ECSV
#: column, ``census_draws.nc``.
SCHEMA_VERSION = 2

#: Called with a label at every file boundary of a commit; tests use it to simulate a kill.
_boundary_hook: Callable[[str], None] | None = None


def _boundary(label: str) -> None:
    if _boundary_hook is not None:
        _boundary_hook(label)


def new_run_id() -> str:
    """A fresh run id: UTC time and 8 random hex digits."""
    now = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{now}-{uuid.uuid4().hex[:8]}"


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace`` (never half a file)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_json(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def read_manifest(out: str | os.PathLike) -> dict | None:
    """The folder's complete manifest, or None when the folder holds no complete result.

    A manifest counts as complete when no commit of another run is pending and every file it
    lists is present with the recorded size.
    """
    out = Path(out)
    man = _read_json(out / MANIFEST)
    if man is None or not man.get("complete") or not isinstance(man.get("files"), dict):
        return None
    pending = _read_json(out / COMMIT_RECORD)
    if pending is not None and pending.get("run_id") != man.get("run_id"):
        return None
    for rel, info in man["files"].items():
        p = out / rel
        if not p.is_file() or p.stat().st_size != info.get("bytes"):
            return None
    return man


def _owned_files(out: Path) -> set[str]:
    """Relative paths of the files a popmodel manifest or a pending commit names in ``out``."""
    owned: set[str] = set()
    man = _read_json(out / MANIFEST)
    if man is not None and isinstance(man.get("files"), dict):
        owned |= set(man["files"])
    rec = _read_json(out / COMMIT_RECORD)
    if rec is not None:
        owned |= set(rec.get("new", [])) | set(rec.get("old", []))
    return owned


def _remove_owned(out: Path) -> int:
    """Remove the manifest-listed files, the manifest, a pending commit and stale stages."""
    n = 0
    for stage in out.glob(STAGE_PREFIX + "*"):
        shutil.rmtree(stage, ignore_errors=True)
    owned = _owned_files(out)
    with contextlib.suppress(FileNotFoundError):
        (out / MANIFEST).unlink()
    for rel in sorted(owned):
        p = out / rel
        if p.is_file() and _inside(p, out):
            p.unlink()
            n += 1
    _prune_empty_dirs(out, owned)
    with contextlib.suppress(FileNotFoundError):
        (out / COMMIT_RECORD).unlink()
    return n


def _prune_empty_dirs(out: Path, rels: set[str]) -> None:
    dirs = {Path(r).parent for r in rels} - {Path(".")}
    for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            (out / d).rmdir()


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def _check_writable(out: Path) -> None:
    """Create ``out`` (and its parents) and write a probe file there, or raise OutputError."""
    for parent in [out, *out.parents]:
        if parent.exists():
            if not parent.is_dir():
                what = "the output folder" if parent == out else f"{parent} (in the path of {out})"
                raise OutputError(f"cannot write results to {out}: {what} is a file, not a folder")
            break
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".popmodel_probe_{uuid.uuid4().hex[:8]}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"cannot write results to {out}: {exc.strerror or exc}") from None


def _visible_entries(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir()
                  if not p.name.startswith((STAGE_PREFIX, ".popmodel_probe_")))


def prepare_output(out: str | os.PathLike, *, resume: bool = False, overwrite: bool = False,
                   inputs: Sequence[str | os.PathLike] = (), config: Mapping | None = None,
                   command: str = "popmodel") -> str:
    """Check and prepare an output folder before any computation.

    Args:
        out: The output folder (created if needed).
        resume: Keep a complete result made with the same ``config``; clear an incomplete one.
        overwrite: Remove the files that a popmodel manifest lists, then write anew.
        inputs: Input files of the command; ``overwrite`` refuses a folder that holds one.
        config: The settings that define the result (compared with the manifest's under
            ``resume``); JSON-serialisable.
        command: Name used in messages.

    Returns:
        ``"fresh"`` (nothing to keep: compute and write), ``"complete"`` (``resume`` found a
        complete result with the same configuration: nothing to do) or ``"redo"`` (``resume``
        found an incomplete result and cleared it).

    Raises:
        OutputError: The folder cannot be written, is not empty (without ``resume`` or
            ``overwrite``), holds an input (with ``overwrite``), or holds a complete result of
            another configuration (with ``resume``).
    """
    if resume and overwrite:
        raise OutputError("give at most one of --resume and --overwrite")
    out = Path(out)
    _check_writable(out)
    for inp in inputs:
        if inp is not None and Path(inp).exists() and _inside(Path(inp), out):
            raise OutputError(
                f"input {inp} lies inside the output folder {out}; write the results elsewhere")
    entries = _visible_entries(out)
    if not entries:
        _remove_owned(out)  # stale stages only
        return "fresh"
    if overwrite:
        n = _remove_owned(out)
        left = _visible_entries(out)
        msg = f"{command}: --overwrite removed {n} files of an earlier popmodel result in {out}"
        if left:
            msg += f"; kept {len(left)} entries that no popmodel manifest lists ({_short(left)})"
        _log.info(msg)
        return "fresh"
    if resume:
        man = read_manifest(out)
        if man is not None:
            if config is not None and not same_config(man, config):
                raise OutputError(
                    f"{out} holds a complete result made with other settings (run "
                    f"{man.get('run_id')}); pass --overwrite to replace it or choose another folder")
            _log.info(f"{command}: {out} holds a complete result (run {man.get('run_id')}); "
                      "kept (--resume)")
            return "complete"
        n = _remove_owned(out)
        _log.info(f"{command}: {out} holds no complete result; redoing the step (--resume"
                  + (f", removed {n} files of the incomplete one)" if n else ")"))
        return "redo"
    raise OutputError(
        f"output folder {out} is not empty ({len(entries)} entries: {_short(entries)}); pass "
        "--overwrite to replace a popmodel result there, --resume to keep a complete one, or "
        "choose another folder")


def _short(names: Sequence[str], k: int = 5) -> str:
    shown = ", ".join(names[:k])
    return shown + (f", ... ({len(names)} in all)" if len(names) > k else "")


def _canonical(config: object) -> str:
    return json.dumps(config, sort_keys=True, default=str)


def same_config(manifest: Mapping, config: Mapping) -> bool:
    """Whether a manifest records the settings ``config`` (as ``--resume`` compares them)."""
    return _canonical(manifest.get("config")) == _canonical(config)


class Stage:
    """A staging folder inside the output folder; see :func:`staged`.

    Attributes:
        out: The final output folder.
        path: The staging folder the writers write into.
        run_id: The run id to stamp into every file's metadata.
    """

    def __init__(self, out: Path, run_id: str) -> None:
        self.out = out
        self.run_id = run_id
        self.path = out / f"{STAGE_PREFIX}{run_id}"

    def final(self, path: str | os.PathLike) -> str:
        """The path that a file written at ``path`` (inside the stage) has after the commit."""
        return str(self.out / Path(path).relative_to(self.path))

    def finals(self, written: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
        """:meth:`final` of every path in a ``kind -> paths`` mapping."""
        return {k: [self.final(p) for p in v] for k, v in written.items()}


@contextlib.contextmanager
def staged(out: str | os.PathLike, *, step: str, config: Mapping | None = None,
           run_id: str | None = None, keep: Sequence[str] = ()) -> Iterator[Stage]:
    """Write a step's files into a staging folder and commit them into ``out`` at the end.

    Args:
        out: The output folder.
        step: Name of the step (recorded in the manifest).
        config: The settings that define the result (recorded; ``--resume`` compares them).
        run_id: The run id (default: a new one).
        keep: Relative paths already in ``out`` that belong to this step (e.g. checkpoints
            written during the computation); listed in the manifest, not moved.

    Yields:
        The :class:`Stage`; write into ``stage.path`` and stamp ``stage.run_id``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stage = Stage(out, run_id or new_run_id())
    stage.path.mkdir()
    try:
        yield stage
    except (Exception, KeyboardInterrupt):
        shutil.rmtree(stage.path, ignore_errors=True)
        raise
    _commit(stage, step, config, keep)


def _commit(stage: Stage, step: str, config: Mapping | None, keep: Sequence[str]) -> None:
    out = stage.out
    new = sorted(str(p.relative_to(stage.path)) for p in stage.path.rglob("*") if p.is_file())
    files = {rel: {"bytes": (stage.path / rel).stat().st_size, "sha256": _sha256(stage.path / rel)}
             for rel in new}
    for rel in keep:
        p = out / rel
        if p.is_file():
            files[rel] = {"bytes": p.stat().st_size, "sha256": _sha256(p)}
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "popmodel_version": __version__,
        "run_id": stage.run_id,
        "step": step,
        "created_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "config": config,
        "complete": True,
        "files": files,
    }
    staged_manifest = stage.path / MANIFEST
    staged_manifest.write_text(json.dumps(manifest, indent=1, default=str))
    old = sorted(_owned_files(out) - set(new) - set(keep))
    _boundary("commit record")
    write_text_atomic(out / COMMIT_RECORD, json.dumps(
        {"run_id": stage.run_id, "new": new, "old": old}))
    _boundary("old manifest")
    with contextlib.suppress(FileNotFoundError):
        (out / MANIFEST).unlink()
    for rel in old:
        _boundary(f"remove {rel}")
        with contextlib.suppress(FileNotFoundError):
            (out / rel).unlink()
    _prune_empty_dirs(out, set(old))
    for rel in new:
        _boundary(f"move {rel}")
        dest = out / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(stage.path / rel, dest)
    _boundary("manifest")
    os.replace(staged_manifest, out / MANIFEST)
    _boundary("cleanup")
    (out / COMMIT_RECORD).unlink()
    shutil.rmtree(stage.path, ignore_errors=True)
