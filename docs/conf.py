"""Sphinx configuration of the popmodel documentation.

Build (warnings are errors, as in CI's ``tests/test_docs.py``)::

    sphinx-build -W --keep-going -b html docs docs/_build/html

Before the build, ``_generate()`` writes ``docs/_generated/`` (git-ignored): the ``--help`` text
of every ``popmodel`` command and the notebooks (``notebooks/*.py``, jupytext percent format)
converted to Markdown pages. The notebooks are not executed here; the tests run them.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
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


def _generate() -> None:
    """Write the CLI help pages and the notebook pages into ``docs/_generated``."""
    out = DOCS / "_generated"
    out.mkdir(exist_ok=True)
    # the command line, from the parser itself
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
    # the notebooks, as Markdown (code and prose; outputs come from running them)
    import jupytext

    for path in sorted((ROOT / "notebooks").glob("[0-9]*.py")):
        nb = jupytext.read(path)
        text = jupytext.writes(nb, fmt="md")
        body = text.split("---\n", 2)[-1] if text.startswith("---") else text
        head = (f"*Notebook `notebooks/{path.name}`* (jupytext percent format). Run it with "
                f"`python notebooks/{path.name}`, or open it with jupytext; "
                "`POPMODEL_SMOKE=1` runs a seconds-long version.\n\n")
        lines = body.lstrip().splitlines()
        title = lines[0] if lines and lines[0].startswith("# ") else f"# {path.stem}"
        rest = "\n".join(lines[1:] if lines and lines[0].startswith("# ") else lines)
        _write(out / f"{path.stem}.md", f"{title}\n\n{head}{rest}\n")


def _write(path: Path, text: str) -> None:
    """Write only when changed, so that Sphinx does not rebuild unchanged pages."""
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


_generate()
