"""The ``run-3dhst`` pipeline: step chain, resume and its run record."""

from __future__ import annotations

import json

import pytest

from popmodel import cli, pipeline
from popmodel.pipeline import steps_3dhst


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
    # a skipped SFS step whose output is absent is not handed to the census
    a = _args(tmp_path, "--skip", "sfs")
    steps = {name: argv for name, argv, _ in steps_3dhst(a)}
    assert "sfs" not in steps and "--sfs" not in steps["census"]


def test_resume_skips_finished_steps_and_records_times(tmp_path, monkeypatch):
    calls = []

    def fake_main(argv):
        calls.append(argv[0])
        a = cli.build_parser().parse_args(["run-3dhst", "--out", str(tmp_path)])
        for _name, sub_argv, marker in steps_3dhst(a):
            if sub_argv[0] == argv[0] and marker is not None:
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.write_text("{}")
        return 0

    monkeypatch.setattr(pipeline, "run_step", fake_main)
    a = _args(tmp_path, "--no-progress")
    assert a.func(a) == 0
    first = list(calls)
    assert first == ["fit-3dhst", "fit-sfs", "census", "figures"]
    rec = json.loads((tmp_path / "run_3dhst.json").read_text())
    assert [s["step"] for s in rec["steps"]][:3] == ["smf", "sfs", "census"]
    assert all(s["wall_s"] >= 0 for s in rec["steps"]) and rec["total_wall_s"] >= 0
    calls.clear()
    (tmp_path / "census" / "census.ecsv").unlink()
    a = _args(tmp_path, "--resume")
    assert a.func(a) == 0
    assert calls == ["census", "figures"]
    rec = json.loads((tmp_path / "run_3dhst.json").read_text())
    assert [s.get("skipped", False) for s in rec["steps"]] == [True, True, False, False]


def test_failing_step_stops_the_run(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "run_step", lambda argv: 3 if argv[0] == "fit-sfs" else 0)
    a = _args(tmp_path)
    assert a.func(a) == 3
    rec = json.loads((tmp_path / "run_3dhst.json").read_text())
    assert [s["step"] for s in rec["steps"]] == ["smf", "sfs"] and rec["steps"][1]["rc"] == 3
    with pytest.raises(KeyError):
        rec["total_wall_s"]


def test_run_step_runs_the_cli_in_a_subprocess():
    assert pipeline.run_step(["--version"]) == 0
    assert pipeline.run_step(["no-such-command"]) == 2
