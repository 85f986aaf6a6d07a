"""The bring-your-own-catalogue guide (``docs/guide/bring_your_own.md``), run as it is written.

* Its Python blocks run in order, in one namespace, in a temporary folder (except a block whose
  first line starts with ``# not run``); each file they write reads back in the layout the
  guide names, with the cosmology and IMF it records where the guide says the layout keeps them.
* Its ``popmodel catalog-from-percentiles`` command runs on the table those blocks wrote.
* Its TOML block is the worked example's survey, ``tests/data/byo/survey.toml``.
* The worked example's files are what ``tests/data/byo/make_example.py`` writes.
* The worked example's ``fit-smf`` and ``fit-sfs`` commands, parsed from the page, run from the
  repository root and write their main files. Only speed flags are added: with the defaults
  the two took 4 and 14 minutes on 2 busy cores (NUTS; a five-member ensemble of up to 60
  epochs, with the sequence checked after every epoch), so fit-smf draws from the Laplace
  approximation without bootstrap and fit-sfs trains two members for two epochs on 16 samples
  per galaxy without the per-epoch check; neither draws figures. The representation of each
  galaxy stays the default (``--posterior auto``, with its checks), as the guide shows it.
"""

import re
import shlex
import tomllib
from pathlib import Path

import h5py
import numpy as np
import pytest

from popmodel.cli import main
from popmodel.conventions import catalog_conventions
from popmodel.readers import detect_format, read_posteriors
from popmodel.survey import Survey

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "guide" / "bring_your_own.md"
DATA = ROOT / "tests" / "data" / "byo"

#: file written by the guide's Python blocks -> (layout, read_posteriors options, carries the
#: cosmology and IMF record)
WRITTEN = {
    "my_long.h5": ("long", {}, True),
    "my_long.ecsv": ("long", {}, True),
    "my_wide.fits": ("wide", {}, True),
    "my_chains.h5": ("chains", {}, False),
    "my_provabgs.h5": ("provabgs", {"columns": "log_mass=log_mstar,log_sfr=log_sfr"}, False),
    "my_photoz.hdf5": ("qp", {}, False),
    "my_chains_long.h5": ("long", {}, True),
}
#: speed flags added to the guide's commands (module docstring)
SPEED = {
    "fit-smf": ["--method", "laplace", "--bootstrap", "0", "--no-figures", "--no-progress"],
    "fit-sfs": ["--members", "2", "--epochs", "2", "--max-samples", "16", "--sfs-tolerance", "0",
                "--no-figures", "--no-progress"],
}


def blocks(lang: str) -> list[str]:
    """The page's fenced code blocks in ``lang``, in order."""
    text = GUIDE.read_text()
    found = re.findall(r"^```(\w+)\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)
    return [body for tag, body in found if tag == lang]


def commands(prefix: str) -> list[list[str]]:
    """The shell commands of the page's bash blocks that start with ``prefix``, as argv lists
    (backslash continuations joined)."""
    out = []
    for body in blocks("bash"):
        for line in body.replace("\\\n", " ").splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith(prefix):
                out.append(shlex.split(line))
    return out


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """The folder in which the guide's Python blocks ran (their files), and their namespace."""
    if not any("import qp" in b for b in blocks("python")):
        raise AssertionError("the guide has no qp example any more: update WRITTEN")
    qp = pytest.importorskip("qp")
    if not hasattr(qp, "Ensemble"):
        pytest.skip("the module named qp is not qp-prob")
    folder = tmp_path_factory.mktemp("guide")
    namespace: dict = {"__name__": "guide"}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        for k, body in enumerate(blocks("python")):
            if body.startswith("# not run"):
                continue
            # the page's own example code, run as a reader would run it
            exec(compile(body, f"{GUIDE.name}, python block {k}", "exec"), namespace)  # noqa: S102
    return folder, namespace


def test_python_blocks_write_files_in_the_layouts_the_guide_names(written):
    folder, namespace = written
    assert sorted(p.name for p in folder.iterdir()) == sorted([*WRITTEN, "my_percentiles.fits"])
    for name, (layout, options, carries) in WRITTEN.items():
        path = folder / name
        assert detect_format(path) == layout, name
        cat = read_posteriors(path, **options)
        assert cat.n_galaxies == 3, name
        cosmology, imf = catalog_conventions(cat)
        assert (cosmology is not None and imf is not None) == carries, name
    assert catalog_conventions(read_posteriors(folder / "my_chains_long.h5"))[1] == "kroupa"
    assert namespace["with_prior"].varying_log_prior().all()  # the callable prior was applied


def test_percentile_command_runs_on_the_guides_table(written, tmp_path):
    folder, _ = written
    (argv,) = commands("popmodel catalog-from-percentiles")
    argv = argv[1:]
    argv[argv.index("--out") + 1] = str(tmp_path / "cat.h5")
    argv[1] = str(folder / argv[1])
    assert main(argv) == 0
    cat = read_posteriors(tmp_path / "cat.h5")
    assert cat.analytic is not None and cat.n_galaxies == 3
    assert cat.meta["report"]["n_exact_z"] == 1  # the -99 row


def test_toml_block_is_the_worked_examples_survey():
    (toml,) = blocks("toml")
    shown = Survey.from_dict(tomllib.loads(toml))
    shipped = Survey.read(DATA / "survey.toml")
    assert [f.to_dict() for f in shown.fields] == [f.to_dict() for f in shipped.fields]
    assert shown.imf == shipped.imf and shown.cosmology.name == shipped.cosmology.name


def test_example_files_are_what_make_example_writes(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_example", DATA / "make_example.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.write_example(tmp_path)
    assert (tmp_path / "survey.toml").read_text() == (DATA / "survey.toml").read_text()
    with h5py.File(tmp_path / "example_chains.h5") as new, \
            h5py.File(DATA / "example_chains.h5") as old:
        assert sorted(new) == sorted(old)
        for key in old:
            a, b = old[key][()], new[key][()]
            if a.dtype.kind in "fiu":
                np.testing.assert_array_equal(a, b, err_msg=key)
            else:
                assert a.tolist() == b.tolist(), key
    assert (DATA / "example_chains.h5").stat().st_size < 200_000


@pytest.mark.parametrize("command", ["fit-smf", "fit-sfs"])
def test_worked_example_runs_as_written(command, tmp_path, monkeypatch):
    (argv,) = commands(f"popmodel {command} tests/data/byo/")
    argv = argv[1:]
    out = argv.index("--out") + 1
    assert argv[out].startswith("results/")
    argv[out] = str(tmp_path / "out")
    monkeypatch.chdir(ROOT)
    assert main([*argv, *SPEED[command]]) == 0
    files = {p.name for p in (tmp_path / "out").iterdir()}
    main_files = {"fit-smf": {"smf_posterior.nc", "smf_parameters.ecsv", "smf_phi.ecsv",
                              "rho_star.ecsv", "summary.json", "popmodel_manifest.json"},
                  "fit-sfs": {"sfs.ecsv", "popmodel_manifest.json"}}[command]
    assert main_files <= files, sorted(files)
