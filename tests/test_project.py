"""What a stranger needs to adopt the project: a licence that matches the metadata, a valid
citation file that cites the papers the models come from, a distribution name that is ours,
and documentation that refers only to things a user has (no files outside the repository)."""

import re
import tomllib
from pathlib import Path

import pytest

import popmodel

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_license_matches_pyproject():
    text = (ROOT / "LICENSE").read_text()
    assert PYPROJECT["project"]["license"] == {"text": "BSD-3-Clause"}
    assert text.startswith("BSD 3-Clause License")
    assert "Copyright (c) 2026, The popmodel developers" in text
    assert "Neither the name of the copyright holder" in text  # the third clause


def test_distribution_name_is_free_and_stated():
    """``pip install popmodel`` is another package; ours is ``popmodel-astro``, imported as
    ``popmodel`` (the README says so)."""
    assert PYPROJECT["project"]["name"] == "popmodel-astro"
    readme = (ROOT / "README.md").read_text()
    assert "`popmodel-astro`" in readme and "import name `popmodel`" in readme


def _citation() -> dict:
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load((ROOT / "CITATION.cff").read_text())


def test_citation_cff_is_valid():
    cff = _citation()
    for key in ("cff-version", "message", "title", "authors"):  # required by CFF 1.2.0
        assert cff.get(key), key
    assert cff["cff-version"] == "1.2.0"
    assert cff["version"] == popmodel.__version__
    assert cff["license"] == PYPROJECT["project"]["license"]["text"]
    assert cff["authors"] == [{"name": "The popmodel developers"}]
    for ref in cff["references"]:  # required of every reference: type, title, authors
        assert ref["type"] and ref["title"] and ref["authors"], ref
        assert all(("family-names" in a) or ("name" in a) for a in ref["authors"]), ref["title"]
        assert isinstance(ref["year"], int), ref["title"]


def test_citation_cites_the_papers_the_models_come_from():
    refs = {(r["authors"][0].get("family-names"), r["year"], str(r.get("volume")), r.get("start"))
            for r in _citation()["references"]}
    for paper in [("Leja", 2020, "893", "111"),      # the continuity mass function
                  ("Leja", 2022, "936", "165"),      # the flow and the star-forming sequence
                  ("Moster", 2011, "731", "113"),    # cosmic variance
                  ("Tomczak", 2014, "783", "85"),    # comparison SMF and completeness limits
                  ("Chabrier", 2003, "115", "763"),  # the IMF
                  ("Foreman-Mackey", 2014, "795", "64"),  # the Poisson-process likelihood
                  ("Madau", 2014, "52", "415")]:
        assert paper in refs, paper


def test_citation_against_the_cff_schema():
    """Full schema validation where ``cffconvert`` is installed (it ships the 1.2.0 schema)."""
    pytest.importorskip("cffconvert")
    jsonschema = pytest.importorskip("jsonschema")
    import importlib.resources
    import json

    schema = json.loads((importlib.resources.files("cffconvert") / "schemas" / "1.2.0"
                         / "schema.json").read_text())
    jsonschema.validate(_citation(), schema)


# Files a user has: the package (docstrings, data notes), the documentation sources, the
# notebooks and the README. They must not point at the team's private notes or data folder.
_PRIVATE = re.compile(r"science\.md|\.\./shared|shared/data|shared/docs")


def _user_facing_files() -> list[Path]:
    files = [p for p in (ROOT / "popmodel").rglob("*") if p.is_file()]
    files += [p for p in (ROOT / "docs").rglob("*")
              if p.is_file() and not {"_build", "_generated"} & set(p.relative_to(ROOT).parts)]
    files += sorted((ROOT / "notebooks").glob("*.py")) + [ROOT / "README.md"]
    return [p for p in files if "__pycache__" not in p.parts
            and p.suffix not in {".gz", ".pyc", ".png", ".pdf", ".pth"}]


def test_no_references_to_files_outside_the_repository():
    offenders = []
    for path in _user_facing_files():
        for k, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if _PRIVATE.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{k}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
    assert any(p.name == "README.md" and "data" in p.parts for p in _user_facing_files())


def test_readme_quotes_cores_not_machines():
    """Timings in the README name the hardware ("on 2 cores"), not "this machine"."""
    readme = (ROOT / "README.md").read_text().lower()
    for phrase in ("this machine", "these machines", "our machine", "this 2-core machine",
                   "this 2-vcpu machine"):
        assert phrase not in readme, phrase
