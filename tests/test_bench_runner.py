"""`surgbot bench`'s exit status: an area that fails is reported, and with --strict (make test) fails the run."""

from __future__ import annotations

import argparse

import pytest

from surgbot.bench import runner


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
