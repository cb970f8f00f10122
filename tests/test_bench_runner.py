"""`surgbot bench`'s exit status: an area that fails is reported, and with --strict (make test) fails the run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from surgbot.bench import runner
from surgbot.errors import CliError


@pytest.fixture
def two_areas(monkeypatch):
    """The runner's own loop over two areas, one of which fails: each area normally runs in a child process
    (real twins, DDS); what is under test here is only what the runner makes of their answers."""
    first, second = runner.MODULES[:2]
    answers = {first: ([{"name": "x_p50_ms", "value": 1.0, "unit": "ms"}], None),
               second: ([], f"{second} exited with code 1")}
    monkeypatch.setattr(runner, "_run_area", lambda module, quick: answers[module])
    return [runner.area_of(first), runner.area_of(second)]


def test_a_failed_area_fails_the_run_only_with_strict(two_areas, capsys):
    only = ["--only", two_areas[0], "--only", two_areas[1]]
    parser = argparse.ArgumentParser()
    runner.add_arguments(parser)
    assert runner.run(parser.parse_args(only)) == 0            # figures from one area: reported, not fatal
    assert f"bench {two_areas[1]}: FAILED" in capsys.readouterr().err
    assert runner.run(parser.parse_args(only + ["--strict"])) == 1
    assert runner.run(parser.parse_args(["--only", two_areas[0], "--strict"])) == 0
    assert runner.run(parser.parse_args(["--only", two_areas[1]])) == 1    # nothing measured at all


def _report(quick: bool, started: str, figures: dict[str, str], machine: dict | None = None) -> dict:
    """A bench JSON whose figures {name: area} each hold their name's length as value."""
    return {"machine": machine or {"cores": 2}, "quick": quick, "started": started, "errors": {},
            "figures": {n: {"name": n, "unit": "ms", "value": float(len(n)), "area": a} for n, a in figures.items()}}


def test_a_report_of_some_areas_replaces_theirs_and_keeps_the_others():
    sim, g1, policy = (runner.area_of(m) for m in ("surgbot.bench.sim", "surgbot.bench.g1", "surgbot.bench.policy"))
    previous = _report(False, "2026-12-01T10:00:00", {"sim_a": sim, "policy_old": policy, "g1_b": g1})
    previous["errors"] = {policy: "crashed then"}
    new = _report(False, "2026-12-06T03:00:00", {"policy_new": policy})
    out = runner.merged(new, previous, [policy])
    assert list(out["figures"]) == ["sim_a", "g1_b", "policy_new"]      # suite order, the old policy row gone
    assert out["errors"] == {} and out["started"] == "2026-12-01T10:00:00"
    assert out["note"] == "full run started 2026-12-01T10:00:00; policy rerun alone at 2026-12-06T03:00:00"
    again = runner.merged(_report(False, "2026-12-07T01:00:00", {"sim_c": sim}, {"cores": 4}), out, [sim])
    assert list(again["figures"]) == ["sim_c", "g1_b", "policy_new"]
    assert again["note"] == out["note"] + "; sim rerun alone at 2026-12-07T01:00:00 (machine then: cores 4)"
    assert runner.merged(new, None, [policy]) is new                   # no report yet: this run is the report


def test_a_quick_run_is_not_merged_into_a_full_report():
    previous = _report(False, "2026-12-01T10:00:00", {"a": "policy"})
    before = json.dumps(previous)
    with pytest.raises(CliError, match="full run: merging a quick run of policy would mix the two"):
        runner.merged(_report(True, "2026-12-06T03:00:00", {"b": "policy"}), previous, ["policy"])
    assert json.dumps(previous) == before


def test_a_quick_merge_is_refused_before_anything_runs(monkeypatch, tmp_path):
    """`--quick --only X --report` against a full report: the error comes before any area runs."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "performance.json").write_text(json.dumps(_report(False, "2026-12-01T10:00:00", {})))
    monkeypatch.setattr(runner, "REPO", tmp_path)
    ran = []
    monkeypatch.setattr(runner, "_run_area", lambda module, quick: ran.append(module) or ([], None))
    parser = argparse.ArgumentParser()
    runner.add_arguments(parser)
    with pytest.raises(CliError, match="holds a full run"):
        runner.run(parser.parse_args(["--quick", "--only", "policy", "--report"]))
    assert ran == []


def test_the_report_puts_each_goal_beside_its_figure(tmp_path):
    from surgbot.bench import report
    goals = tmp_path / "goals.json"
    goals.write_text(json.dumps({"goals": [
        {"issue": 1, "figure": "a", "stat": "p99", "op": "<", "goal": 5.0, "before": {"value": 80.0, "from": "x"}},
        {"issue": 1, "figure": "b", "stat": "value", "op": ">=", "goal": 990.0, "before": None},
        {"issue": 2, "figure": "gone", "stat": "p99", "op": "<", "goal": 1.0, "before": None}]}))
    rows = report.goal_lines({"a": {"p99": 4.9}, "b": {"value": 741.0}}, goals)
    assert rows[-3].startswith("| 1 | a | p99 | < 5 | 80 (x) | 4.9 | yes |")
    assert rows[-2].endswith("| 741 | **no** |")
    assert rows[-1].endswith("| not in this run |")
    goals.write_text(json.dumps({"goals": [{"issue": 1, "figure": "a", "stat": "p99", "op": "<=", "goal": 5.0}]}))
    with pytest.raises(ValueError, match="op '<=' not in"):
        report.goal_lines({}, goals)


def test_every_shipped_goal_names_a_figure_of_the_report():
    from surgbot.bench import report
    docs = Path(runner.REPO) / "docs"
    figures = json.loads((docs / "performance.json").read_text())["figures"]
    goals = json.loads((docs / report.GOALS_FILE).read_text())["goals"]
    assert goals and all(g["figure"] in figures and g["stat"] in figures[g["figure"]] for g in goals)
