"""The ``run-3dhst`` pipeline: step chain, resume and its run record."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from popmodel import cli
from popmodel.cli import pipeline
from popmodel.cli.pipeline import steps_3dhst
from popmodel.errors import OutputError


def _args(tmp_path, *extra):
    return cli.build_parser().parse_args(["run-3dhst", "--out", str(tmp_path), *extra])


def test_steps_chain_outputs_into_the_next_step(tmp_path):
    a = _args(tmp_path, "--members", "3", "--epochs", "7", "--no-cosmic-variance")
    steps = {name: argv for name, argv, _ in steps_3dhst(a)}
    assert steps["smf"][:3] == ["fit-3dhst", "--out", str(tmp_path / "smf")]
    assert "--no-cosmic-variance" in steps["smf"]
    sfs = steps["sfs"]
    assert sfs[sfs.index("--members") + 1] == "3" and sfs[sfs.index("--epochs") + 1] == "7"
    census = steps["census"]
    assert census[census.index("--smf") + 1] == str(tmp_path / "smf")
    assert census[census.index("--sfs") + 1] == str(tmp_path / "sfs")
    # --seed reaches every step (default 0)
    for extra, want in (((), "0"), (("--seed", "2"), "2")):
        for name, argv, _ in steps_3dhst(_args(tmp_path, *extra)):
            assert argv[argv.index("--seed") + 1] == want, name
            assert cli.build_parser().parse_args(argv).seed == int(want), name
    # a skipped SFS step whose output is absent is not handed to the census
    a = _args(tmp_path, "--skip", "sfs")
    steps = {name: argv for name, argv, _ in steps_3dhst(a)}
    assert "sfs" not in steps and "--sfs" not in steps["census"]


def _fake_steps(tmp_path, monkeypatch, calls):
    """Each step commits a one-file result with its manifest, as the real commands do."""
    from popmodel.cli.common import cli_config
    from popmodel.io.resultdir import staged

    def fake(argv):
        calls.append(argv[0])
        sub = cli.build_parser().parse_args(argv)
        with staged(sub.out, step=argv[0], config=cli_config(sub)) as stage:
            (stage.path / "result.json").write_text(json.dumps({"run_id": stage.run_id}))
        return 0, 123.0

    monkeypatch.setattr(pipeline, "run_step_measured", fake)


def test_resume_keeps_complete_steps_and_records_times_and_memory(tmp_path, monkeypatch):
    calls = []
    _fake_steps(tmp_path, monkeypatch, calls)
    a = _args(tmp_path, "--no-progress")
    assert a.func(a) == 0
    assert calls == ["fit-3dhst", "fit-sfs", "census", "figures"]
    rec = json.loads((tmp_path / "run_3dhst.json").read_text())
    assert [s["step"] for s in rec["steps"]] == ["smf", "sfs", "census", "figures"]
    assert all(s["wall_s"] >= 0 and s["peak_rss_mb"] == 123.0 for s in rec["steps"])
    assert rec["total_wall_s"] >= 0
    # a non-empty --out is refused before any step runs
    calls.clear()
    a = _args(tmp_path)
    with pytest.raises(OutputError, match="not empty"):
        a.func(a)
    assert calls == []
    # an incomplete census (its manifest gone) is redone; complete steps are kept; the
    # census follows its inputs and the figures are redrawn
    (tmp_path / "census" / "popmodel_manifest.json").unlink()
    a = _args(tmp_path, "--resume", "--no-progress")
    assert a.func(a) == 0
    assert calls == ["census", "figures"]
    rec = json.loads((tmp_path / "run_3dhst.json").read_text())
    assert [s.get("skipped", False) for s in rec["steps"]] == [True, True, False, False]
    # a step made with other settings is not mistaken for complete
    calls.clear()
    a = _args(tmp_path, "--resume", "--no-progress", "--members", "3")
    assert a.func(a) == 0
    assert calls == ["fit-sfs", "census", "figures"]


def test_failing_step_stops_the_run(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "run_step_measured",
                        lambda argv: (3 if argv[0] == "fit-sfs" else 0, None))
    a = _args(tmp_path)
    assert a.func(a) == 3
    rec = json.loads((tmp_path / "run_3dhst.json").read_text())
    assert [s["step"] for s in rec["steps"]] == ["smf", "sfs"] and rec["steps"][1]["rc"] == 3
    with pytest.raises(KeyError):
        rec["total_wall_s"]


def test_run_step_measures_the_peak_memory_of_the_step(tmp_path):
    # a bare step reports well below 400 MB; a program that holds 400 MB reports more
    rc, rss = pipeline.run_step_measured(["survey-3dhst", "--out", str(tmp_path / "s.toml")])
    assert rc == 0 and rss is not None and 10 < rss < 400
    code = ("import sys, numpy as np; from popmodel.cli import _report_peak_rss; "
            "a = np.ones(50_000_000); _report_peak_rss(sys.argv[1])")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "kb")], check=True)
    assert float((tmp_path / "kb").read_text()) / 1024 > 400


def test_smf_chains_run_one_after_another_unless_asked(tmp_path, monkeypatch):
    """The SMF commands give JAX one CPU device by default, so NumPyro's "auto" runs the
    chains one after another (flat memory); --parallel-chains asks for a device per chain,
    and run-3dhst passes it on to its SMF step."""
    steps = {name: argv for name, argv, _ in steps_3dhst(_args(tmp_path))}
    assert "--parallel-chains" not in steps["smf"]
    steps = {name: argv for name, argv, _ in steps_3dhst(_args(tmp_path, "--parallel-chains"))}
    assert "--parallel-chains" in steps["smf"]

    from popmodel.cli import smf

    seen = []
    monkeypatch.setattr(cli, "setup_jax", seen.append)
    monkeypatch.setattr(smf, "cmd_fit_smf", lambda a: 0)  # the parser's handler: no fit
    for extra in ([], ["--parallel-chains"]):
        assert cli.main(["fit-smf", "cat.h5", "--survey", "s.toml", "--out", str(tmp_path / "o"),
                         "--chains", "3", *extra]) == 0
    assert seen == [1, 3]
