"""Sphinx configuration of the popmodel documentation.

Build (warnings are errors, as in CI's ``tests/test_docs.py``)::

    sphinx-build -W --keep-going -b html docs docs/_build/html

Before the sources are read (``builder-inited``), ``_generate()`` writes ``docs/_generated/``
(git-ignored): the ``--help`` text of every ``popmodel`` command, and the notebooks
(``notebooks/*.py``, jupytext percent format) executed cell by cell in a Jupyter kernel
(nbclient) and written as Markdown pages with their printed output and figures.

``POPMODEL_DOCS_NOTEBOOKS`` chooses how the notebooks run:

* ``smoke`` (the default, and what ``tests/test_docs.py`` builds): with ``POPMODEL_SMOKE=1``,
  the quick settings each notebook describes (a smaller mock, one 3D-HST field, fewer draws);
* ``full``: the notebooks' own settings (several minutes each on 2 cores: NUTS for the
  quickstart, the five-field 3D-HST fit);
* ``off``: pages without outputs.

The page says which setting produced its outputs. ``03_star_forming_sequence`` needs Leja et
al.'s released flow weights: it runs only when ``POPMODEL_LEJA2022_FLOW`` names the file.
A notebook that fails, or writes to stderr (a warning), is a build warning, so ``-W`` fails.
Executed pages are cached in ``docs/_generated`` under a hash of the notebook, the setting and
the package sources, so an unchanged rebuild does not run them again.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import os
import shutil
import sys
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MPLBACKEND", "Agg")

from popmodel import __version__

project = "popmodel"
author = "the popmodel developers"
copyright = "the popmodel developers"
version = release = __version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "_generated/cli_reference.md"]  # included by guide/cli.md
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "none"  # signatures are typed in the code; the docstrings give the units
autodoc_default_options = {"members": True, "show-inheritance": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

html_theme = "alabaster"
html_title = f"popmodel {__version__}"
html_static_path: list[str] = []

nitpicky = False

#: How the notebooks run when the docs are built: "smoke", "full" or "off" (module docstring).
NOTEBOOKS = os.environ.get("POPMODEL_DOCS_NOTEBOOKS", "smoke")
#: Environment variables a notebook needs before it can run (else its page has no outputs).
NOTEBOOK_NEEDS = {"03_star_forming_sequence": "POPMODEL_LEJA2022_FLOW"}
NOTEBOOK_TIMEOUT = 900  # seconds per cell
_RENDERER = "2"  # bump to invalidate cached notebook pages when the rendering below changes


def _generate(app: object = None) -> None:
    """Write the CLI help pages and the notebook pages into ``docs/_generated``."""
    out = DOCS / "_generated"
    out.mkdir(exist_ok=True)
    _generate_cli(out)
    if NOTEBOOKS not in ("smoke", "full", "off"):
        raise ValueError(f"POPMODEL_DOCS_NOTEBOOKS must be smoke, full or off, not {NOTEBOOKS!r}")
    for path in sorted((ROOT / "notebooks").glob("[0-9]*.py")):
        _notebook_page(path, out)


def _generate_cli(out: Path) -> None:
    """The command reference, from the parser itself."""
    from popmodel.cli import build_parser

    ap = build_parser()
    sub = next(a for a in ap._actions if a.__class__.__name__ == "_SubParsersAction")
    parts = ["# Command reference\n",
             "Generated from the parser (`popmodel <command> --help`) when the docs are built.\n"]
    for name, p in sub.choices.items():
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            p.print_help()
        parts.append(f"## `popmodel {name}`\n\n```text\n{buf.getvalue().rstrip()}\n```\n")
    _write(out / "cli_reference.md", "\n".join(parts))


def _sources_hash(path: Path, mode: str) -> str:
    """What a notebook page depends on: the notebook, the setting, the package sources."""
    h = hashlib.sha256(f"{_RENDERER}|{mode}|".encode())
    h.update(path.read_bytes())
    for src in sorted((ROOT / "popmodel").rglob("*.py")):
        h.update(str(src.relative_to(ROOT)).encode())
        h.update(src.read_bytes())
    need = NOTEBOOK_NEEDS.get(path.stem)
    if need:
        h.update(os.environ.get(need, "").encode())
    return h.hexdigest()


def _notebook_page(path: Path, out: Path) -> None:
    """Execute one notebook (unless cached or switched off) and write its Markdown page."""
    import jupytext

    need = NOTEBOOK_NEEDS.get(path.stem)
    mode = NOTEBOOKS if not (need and not os.environ.get(need)) else "off"
    key = _sources_hash(path, mode)
    stamp = out / f"{path.stem}.key"
    page = out / f"{path.stem}.md"
    if mode != "off" and page.exists() and stamp.exists() and stamp.read_text() == key:
        return
    nb = jupytext.read(path)
    clean = False  # cache the page only when it ran without errors or warnings
    if mode == "off":
        note = (f"The outputs are not shown: this page was built without running the notebook"
                f"{f' (it needs `{need}`)' if need else ''}.")
    else:
        error = _execute(nb, path, mode)
        if error:
            _warn(f"notebook {path.name} failed when the docs were built: {error}")
            nb = jupytext.read(path)
            note = "The outputs are not shown: the notebook failed when this page was built."
        else:
            setting = ("with `POPMODEL_SMOKE=1`, the quick settings the notebook describes; "
                       "run it without that variable for the full version" if mode == "smoke"
                       else "with the notebook's full settings")
            note = f"The outputs below were computed when this page was built, {setting}."
            stderr = [o.get("text", "") for c in nb.cells if c.cell_type == "code"
                      for o in c.get("outputs", []) if o.get("name") == "stderr"]
            if stderr:
                _warn(f"notebook {path.name} wrote to stderr (a warning?): {stderr[0][:500]}")
            clean = not stderr
    _write(page, _markdown(nb, path, out, note))
    if clean:
        stamp.write_text(key)
    else:
        stamp.unlink(missing_ok=True)


def _execute(nb: object, path: Path, mode: str) -> str:
    """Run ``nb`` in place in a fresh python3 kernel; returns an error message, or ''."""
    import nbclient
    from jupyter_client.manager import KernelManager

    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    env = {k: v for k, v in os.environ.items() if k not in ("MPLBACKEND", "POPMODEL_SMOKE")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    if mode == "smoke":
        env["POPMODEL_SMOKE"] = "1"
    with tempfile.TemporaryDirectory() as tmp:
        # IPC sockets in the temporary folder: a TCP kernel logs a warning on stderr
        km = KernelManager(kernel_name="python3", transport="ipc", ip=str(Path(tmp) / "kernel"))
        client = nbclient.NotebookClient(nb, km=km, timeout=NOTEBOOK_TIMEOUT,
                                         resources={"metadata": {"path": tmp}})
        try:
            client.execute(env=env)
        except Exception as exc:  # noqa: BLE001  (CellExecutionError, timeouts, a dead kernel)
            return f"{type(exc).__name__}: {str(exc)[-1500:]}"
        finally:  # nbclient leaves a kernel manager it was given running
            if km.has_kernel:
                km.shutdown_kernel(now=True)
    return ""


def _markdown(nb: object, path: Path, out: Path, note: str) -> str:
    """The notebook as a MyST page: prose, code, printed output and figures (PNG files)."""
    files = out / f"{path.stem}_files"
    shutil.rmtree(files, ignore_errors=True)
    head = (f"*Notebook `notebooks/{path.name}`* (jupytext percent format). Run it with "
            f"`python notebooks/{path.name}`, or open it with jupytext; "
            f"`POPMODEL_SMOKE=1` runs a quick version. {note}\n")
    parts: list[str] = []
    n_fig = 0
    for cell in nb.cells:
        src = cell.source.strip("\n")
        if cell.cell_type == "markdown":
            parts.append(src)
            continue
        if cell.cell_type != "code" or not src:
            continue
        parts.append(f"```python\n{src}\n```")
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream":
                parts.append(f"````text\n{o.get('text', '').rstrip()}\n````")
            elif o.get("output_type") in ("display_data", "execute_result"):
                data = o.get("data", {})
                if "image/png" in data:
                    files.mkdir(exist_ok=True)
                    n_fig += 1
                    name = f"figure{n_fig}.png"
                    (files / name).write_bytes(base64.b64decode(data["image/png"]))
                    parts.append(f"![figure {n_fig} of {path.stem}]({files.name}/{name})")
                elif "text/plain" in data:
                    parts.append(f"````text\n{data['text/plain'].rstrip()}\n````")
    body = "\n\n".join(parts)
    lines = body.splitlines()
    if lines and lines[0].startswith("# "):
        return f"{lines[0]}\n\n{head}\n" + "\n".join(lines[1:]).lstrip("\n") + "\n"
    return f"# {path.stem}\n\n{head}\n{body}\n"


def _warn(message: str) -> None:
    from sphinx.util import logging

    logging.getLogger("popmodel.docs").warning(message)


def _write(path: Path, text: str) -> None:
    """Write only when changed, so that Sphinx does not rebuild unchanged pages."""
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def setup(app: object) -> None:
    app.connect("builder-inited", _generate)
