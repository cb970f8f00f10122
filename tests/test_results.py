"""`surgbot results`: cell definitions (exact commands, disjoint seeds), the Wilson interval, and the page
and plots generated from fixture cell JSON (cells without JSON read "not run", never a number)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from surgbot.policies.results import cells as C
from surgbot.policies.results import plots, reading, report
from surgbot.policies.results.runner import runs_wall_s, settle_killed_runs, trained_by_other_commands
from surgbot.policies.results.stats import Z95, wilson_interval
from tests.conftest import REPO

pytestmark = pytest.mark.unit
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_wilson_bounds_solve_the_score_equation():
    # the Wilson bounds are the p where the score statistic |phat - p| / sqrt(p (1-p) / n) equals z
    for k, n in [(0, 50), (1, 50), (12, 50), (25, 50), (49, 50), (50, 50), (3, 7)]:
        lo, hi = wilson_interval(k, n)
        phat = k / n
        assert 0 <= lo <= phat <= hi <= 1
        for p in (lo, hi):
            if 0 < p < 1:
                assert abs(abs(phat - p) / math.sqrt(p * (1 - p) / n) - Z95) < 1e-9
    assert wilson_interval(0, 50)[0] == 0.0 and wilson_interval(50, 50)[1] == 1.0
    # 25/50: centre 0.5, half-width z sqrt(0.25/50 + z^2/10^4) / (1 + z^2/50), by hand: 0.1336
    lo, hi = wilson_interval(25, 50)
    assert abs(hi - 0.5 - 0.1336) < 1e-4 and abs(0.5 - lo - 0.1336) < 1e-4
    with pytest.raises(ValueError):
        wilson_interval(51, 50)


def test_a_cell_lists_its_exact_commands():
    cell = C.CELLS["act-50@needle_pick"]
    cmds = [" ".join(c) for c in cell.commands()]
    data = "out/results/data"
    assert cmds[0] == (f"surgbot data record --task needle_pick --episodes 5 --out {data}/real-needle_pick-5 "
                       "--seed 0 --image-size 96x128 --success-tail-s 1.0")
    assert cmds[1] == f"cp -r {data}/real-needle_pick-5 {data}/real-needle_pick-20"
    assert cmds[2].endswith("--episodes 15 --out out/results/data/real-needle_pick-20 --seed 5 "
                            "--image-size 96x128 --success-tail-s 1.0 --append")
    assert cmds[4].endswith("--episodes 30 --out out/results/data/real-needle_pick-50 --seed 20 "
                            "--image-size 96x128 --success-tail-s 1.0 --append")
    train = cmds[5]
    assert train.startswith("lerobot-train --dataset.repo_id=local/real-needle_pick-50 "
                            f"--dataset.root={data}/real-needle_pick-50 --policy.type=act")
    assert "--policy.pretrained_backbone_weights=null" in train and f"--steps={C.ACT_STEPS}" in train
    assert cmds[-1] == ("surgbot policy eval --checkpoint out/results/train/act-needle_pick --task needle_pick "
                        "--episodes 50 --seed 100000 --json")
    vla = " ".join(C.CELLS["vla-20@reach"].commands()[-3])
    assert vla.startswith("surgbot policy train --dataset out/results/data/real-reach-20 ")
    assert " ".join(C.VLA_RECIPE) in vla and f"--steps {C.VLA_STEPS} --batch-size {C.VLA_BATCH}" in vla
    pseudo = " ; ".join(" ".join(c) for c in C.CELLS["vla-5-pseudo200@peg_transfer"].commands())
    for part in ("surgbot idm train --dataset out/results/data/idm-real-peg_transfer-15",
                 "surgbot data videos --task peg_transfer --episodes 200", "--backend sim",
                 "surgbot idm label --videos out/results/data/clips-peg_transfer-200",
                 "--dataset out/results/data/pseudo-needle_pick-200"):
        assert part in pseudo


def test_a_training_resumed_after_its_first_run_was_killed_is_the_same_recipe():
    """The first run is recorded when it ends: when it was killed, the first record is the run that
    resumed it.  That checkpoint must be kept (it once was deleted and retrained from scratch)."""
    tr = C.CELLS["vla-20@reach"].training
    fresh = {"command": " ".join(tr.command), "from_step": 0}
    resumed = {"command": " ".join(tr.resume_command), "from_step": 6000}
    other = {"command": " ".join(tr.command).replace("--steps", "--steps 1 --old-steps"), "from_step": 0}
    assert not trained_by_other_commands([], tr)
    assert not trained_by_other_commands([fresh], tr)
    assert not trained_by_other_commands([resumed], tr)
    assert not trained_by_other_commands([fresh, resumed], tr)
    assert trained_by_other_commands([other], tr)
    assert trained_by_other_commands([other, resumed], tr)


def test_training_and_evaluation_seeds_are_disjoint():
    train_seeds = set()
    for ds in C.DATASETS.values():
        for argv in ds.commands:
            if "record" in argv:
                seed, n = int(argv[argv.index("--seed") + 1]), int(argv[argv.index("--episodes") + 1])
                # an attempt that fails moves on to the next seed: allow the recorder's 3x + 5 attempts
                train_seeds.update(range(seed, seed + 3 * n + 5))
    assert max(train_seeds) < 10_000
    eval_seeds = set(range(C.EVAL_SEED, C.EVAL_SEED + C.EVAL_EPISODES))
    assert not train_seeds & eval_seeds and min(eval_seeds) >= 100_000
    # the IDM's real episodes are not the policy's
    policy = set(range(0, 50))
    assert not policy & set(range(C.IDM_SEED, C.IDM_SEED + C.IDM_EPISODES))


def fixture_cell(name: str, successes: int, wall_s: float, wrong_interval: bool = False) -> dict:
    cell = C.CELLS[name]
    return {"cell": name, "section": cell.section, "task": cell.task, "variables": cell.variables,
            "evaluator": "harness", "commands": [" ".join(c) for c in cell.commands()],
            "training": {"key": cell.training.key, "policy": cell.training.policy, "steps": 1000, "batch_size": 8,
                         "wall_s": wall_s, "checkpoint_bytes": 62_000_000, "parameters": 15_600_000,
                         "curve": [[25, 1.5], [50, 0.9], [75, 0.6]]},
            "latency": {"infer_ms_p50": 31.0, "infer_ms_p99": 48.0},
            "successes": successes, "episodes": 50, "success_rate": successes / 50,
            "wilson95": [0.0, 1.0] if wrong_interval else list(wilson_interval(successes, 50))}


def test_page_and_plots_from_fixture_json(tmp_path):
    d = tmp_path / "docs" / "results"
    d.mkdir(parents=True)
    (d / "act-50@needle_pick.json").write_text(json.dumps(fixture_cell("act-50@needle_pick", 12, 480.0, True)))
    (d / "diffusion-50@needle_pick.json").write_text(json.dumps(fixture_cell("diffusion-50@needle_pick", 5, 700)))
    (d / "vla-50@needle_pick.json").write_text(json.dumps(fixture_cell("vla-50@needle_pick", 20, 300.0)))
    (d / "stray.json").write_text(json.dumps({"cell": "no-such-cell"}))    # ignored
    out = report.generate(tmp_path)
    assert out["cells_run"] == 3 and out["cells"] == len(C.CELLS)
    page = (tmp_path / "docs" / "results.md").read_text()
    lo, hi = wilson_interval(12, 50)     # the stored (wrong) interval is recomputed from the counts
    assert f"12/50 = 24% [{100 * lo:.0f}%, {100 * hi:.0f}%]" in page
    assert "20/50 = 40%" in page and "8.0 min (1000 x 8)" in page and "15.60 M, 62.0 MB" in page
    assert "31.0 / 48.0 ms" in page
    # VLA 40% >= ACT 24% on needle_pick; the other goals cannot be judged
    assert "VLA vs best baseline on needle_pick: 20/50 = 40%" in page and ">= act-50@needle_pick" in page
    assert "Pseudo-kinematics on needle_pick: cannot be judged" in page
    # one VLA training (300 s) against the best baseline's (480 s) on the one task judged, 40% >= 24%
    assert "**Goal 'our VLA >= the best baseline at lower training cost': met**" in page
    assert "Goal +15 points" not in page                                # no pseudo-kinematics cell run
    # our VLA's cell has no commit recorded: flagged as evaluated before the goal memory; ACT is not ours
    line = next(x for x in page.splitlines() if "evaluated before 5a8e170" in x)
    assert "`vla-50@needle_pick`" in line and "act-50" not in line
    row = next(line for line in page.splitlines() if line.startswith("| `act-50@peg_transfer`"))
    assert "not run" in row and "%" not in row
    assert page.count("not run") >= len(C.CELLS) - 3
    assert "## IDM" in page and report.IDM_BEGIN in page and report.IDM_END in page
    # the IDM issue's block (written by bench/idm.py between the markers) survives a regeneration verbatim
    block = f"{report.IDM_BEGIN}\n## IDM\n\n| size | position error |\n|---|---|\n| 15 | 1.2 mm |\n{report.IDM_END}"
    a, b = page.index(report.IDM_BEGIN), page.index(report.IDM_END) + len(report.IDM_END)
    (tmp_path / "docs" / "results.md").write_text(page[:a] + block + page[b:])
    report.generate(tmp_path)
    again = (tmp_path / "docs" / "results.md").read_text()
    assert again.count(report.IDM_BEGIN) == 1 and block in again and "12/50 = 24%" in again
    for name in (plots.PLOT_SUCCESS, plots.PLOT_SCALING, plots.PLOT_CURVES):
        assert (d / name).read_bytes()[:8] == PNG_MAGIC and (d / name).stat().st_size > 5000


def test_sections_render_alone_with_no_results(tmp_path):
    for title, fn in report.SECTIONS.items():
        text = fn({}, tmp_path)
        assert "not run" in text and "%" not in text.replace("Wilson 95%", ""), title


def test_cli_lists_commands_and_refuses_unknown_cells(tmp_path):
    cli = [sys.executable, "-m", "surgbot.cli", "results"]
    proc = subprocess.run(cli + ["list", "--section", "baselines", "--commands"], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "act-50@needle_pick" in proc.stdout and "lerobot-train --dataset.repo_id=local/real-needle_pick-50" \
        in proc.stdout and "vla-5@reach" not in proc.stdout
    bad = subprocess.run(cli + ["run", "--cell", "nope@reach"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "unknown cell" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_vla_cells_evaluated_before_an_evaluation_change_are_named():
    """`git_commit` of a cell against reading.EVALUATION_CHANGES: a commit that contains the change (HEAD)
    is current, an older one (5007ceb, before the goal memory) or none is named; baselines never."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          cwd=REPO, check=True).stdout.strip()
    res = {"vla-50@reach": {"git_commit": head}, "vla-5@reach": {"git_commit": "5007ceb"},
           "bundled@reach": {}, "act-50@reach": {"git_commit": "5007ceb"}}
    change = reading.EVALUATION_CHANGES[0][0]
    # a shallow clone may lack the change's commit: then nothing can be shown to contain it (all named)
    have = subprocess.run(["git", "cat-file", "-e", f"{change}^{{commit}}"], cwd=REPO).returncode == 0
    expected = ["bundled@reach", "vla-5@reach"] if have else ["bundled@reach", "vla-50@reach", "vla-5@reach"]
    assert reading.evaluated_before(res, change) == expected


def test_cells_trained_on_demonstrations_recorded_before_a_data_change_are_named():
    """reading.DATA_CHANGES: a cell whose datasets include the task's demonstrations and whose run does not
    contain the change is named (baselines too: they learnt from the same data); a cell without that task's
    data, or the bundled checkpoint's (no datasets), is not."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          cwd=REPO, check=True).stdout.strip()
    change, task, _ = reading.DATA_CHANGES[0]
    assert task == "needle_pick"
    res = {"vla-50@reach": {"git_commit": "5007ceb"}, "act-50@needle_pick": {"git_commit": "5007ceb"},
           "act-50@reach": {"git_commit": "5007ceb"}, "vla-20@reach": {"git_commit": head},
           "bundled@needle_pick": {"git_commit": "5007ceb"}}
    have = subprocess.run(["git", "cat-file", "-e", f"{change}^{{commit}}"], cwd=REPO).returncode == 0
    expected = ["act-50@needle_pick", "vla-50@reach"] + ([] if have else ["vla-20@reach"])
    assert reading.trained_before(res, change, task) == sorted(expected)


def test_a_repeat_cell_runs_the_same_commands_into_its_own_folder():
    for name in C.REPEATED:
        first, again = C.CELLS[name], C.CELLS[name + C.REPEAT_SUFFIX]
        assert again.section == "repeat" and again.task == first.task
        assert again.training.out != first.training.out and again.training.out.name == first.training.key + "-repeat"
        moved = [tuple(a.replace(str(first.training.out), str(again.training.out)) for a in c)
                 for c in first.commands()]
        assert again.commands() == moved and moved != first.commands()
        assert not any(str(first.training.out) + " " in " ".join(c) + " " for c in again.commands())
        assert all(str(again.training.out) in " ".join(c) for c in again.commands()[-2:])


def with_episodes(r: dict, wins: set[int], checkpoint_id: str) -> dict:
    seeds = range(C.EVAL_SEED, C.EVAL_SEED + 50)
    return {**r, "eval": {"checkpoint_id": checkpoint_id},
            "per_episode": [{"seed": s, "success": i in wins} for i, s in enumerate(seeds)]}


def test_the_page_compares_a_repeated_cell_with_its_first_run(tmp_path):
    name = C.REPEATED[0]
    d = tmp_path / "docs" / "results"
    d.mkdir(parents=True)
    first = with_episodes(fixture_cell(name, 10, 300.0), set(range(10)), "aaaa")
    again = with_episodes(fixture_cell(name + C.REPEAT_SUFFIX, 12, 310.0), set(range(1, 13)), "bbbb")
    (d / f"{name}.json").write_text(json.dumps(first))
    (d / f"{name}{C.REPEAT_SUFFIX}.json").write_text(json.dumps(again))
    report.generate(tmp_path)
    page = (tmp_path / "docs" / "results.md").read_text()
    row = next(x for x in page.splitlines() if x.startswith(f"| `{name}` | 10/50"))
    # 12/50 is inside 10/50's interval [11%, 33%]; seeds 0 and 10-12 differ: 46 of 50 agree
    assert "| 12/50 = 24%" in row and "| yes |" in row and "46/50" in row and "different" in row
    assert f"Reproducibility, {name} run twice by the same commands" in page and "inside the first" in page
    far = with_episodes(fixture_cell(name + C.REPEAT_SUFFIX, 30, 310.0), set(range(30)), "aaaa")
    cmp_ = report.compare_repeat(first, far)
    assert cmp_ == {"within": False, "same_outcomes": 30, "seeds": 50, "same_weights": True}


def test_a_killed_training_run_counts_until_its_log_stopped(tmp_path):
    """Runs are recorded when they start; one that never ended is settled by the next: its wall time runs to
    its log's last write, its progress to the checkpoint the next run resumes from."""
    log = tmp_path / "run0.log"
    log.write_text("step 2000\n")
    os.utime(log, (1_000_600.0, 1_000_600.0))
    runs = [{"command": "train", "wall_s": None, "started_unix": 1_000_000.0, "from_step": 0, "to_step": None,
             "log": str(log)},
            {"command": "train --resume", "wall_s": 50.0, "started_unix": 1_000_700.0, "from_step": 2000,
             "to_step": 4000, "log": str(tmp_path / "run1.log")}]
    settle_killed_runs(runs, 2000)
    assert runs[0]["wall_s"] == 600.0 and runs[0]["to_step"] == 2000 and runs[0]["killed"]
    assert "killed" not in runs[1] and runs_wall_s(runs) == 650.0
    settle_killed_runs(runs, 4000)                       # settled once, never again
    assert runs[0]["to_step"] == 2000 and runs_wall_s(runs) == 650.0
    going = [{"wall_s": None, "started_unix": time.time() - 30.0}]
    assert 29.0 < runs_wall_s(going) < 60.0              # a run still going counts until now


def test_a_background_cell_yields_the_cpu_also_to_other_sessions():
    """`results run --background` starts a new session; with autogroup scheduling that session's group,
    not only its processes, must be niced, or the 'background' training takes a core from the tests."""
    from surgbot.policies.results import cli
    probe = ("import os; print(os.nice(0)); p = '/proc/self/autogroup'; "
             "print(open(p).read().strip() if os.path.exists(p) else 'none')")
    out = subprocess.run([sys.executable, "-c", probe], start_new_session=True, preexec_fn=cli._lower_priority,
                         capture_output=True, text=True, timeout=60, check=True).stdout.splitlines()
    assert int(out[0]) == min(19, os.nice(0) + cli.NICENESS)
    assert out[1] == "none" or out[1].endswith(f"nice {cli.NICENESS}")


def test_the_goals_verdicts_follow_the_numbers():
    base = fixture_cell("vla-5@needle_pick", 0, 1000.0)
    up = fixture_cell("vla-5-pseudo50@needle_pick", 10, 1000.0)
    flat = fixture_cell("vla-5-pseudo200@needle_pick", 3, 1000.0)
    lines = reading.pseudo_goal({"vla-5@needle_pick": base, "vla-5-pseudo50@needle_pick": up,
                                "vla-5-pseudo200@needle_pick": flat})
    assert len(lines) == 1 and "met on needle_pick, 50 clips**" in lines[0] and "best +20 points" in lines[0]
    assert "not met" in reading.pseudo_goal({"vla-5@needle_pick": base, "vla-5-pseudo200@needle_pick": flat})[0]
    # both at 0/50 on every task: equal rates show nothing, so the goal is not met whatever the cost
    zero = [(t, fixture_cell(f"vla-50@{t}", 0, 100.0), fixture_cell(f"act-50@{t}", 0, 500.0)) for t in C.TASKS]
    assert "not met**" in reading.baseline_goal(zero)[0] and "show" in reading.baseline_goal(zero)[0]
    # better everywhere but dearer than the trainings it replaces: not met
    dear = [(t, fixture_cell(f"vla-50@{t}", 30, 3000.0), fixture_cell(f"act-50@{t}", 10, 500.0)) for t in C.TASKS]
    assert "not met**" in reading.baseline_goal(dear)[0] and "50.0 min for the 3 tasks vs 25.0 min" in \
        reading.baseline_goal(dear)[0]


def test_a_machine_that_built_nothing_keeps_the_last_builders_cost_table(tmp_path):
    """section_work on a checkout with nothing under out/results/ keeps the work table the page already has
    (those costs were measured where the cells were built), once, with a note; with no table: says so."""
    page = tmp_path / report.PAGE
    page.parent.mkdir(parents=True)
    assert report.section_work({}, tmp_path) == "Nothing built on this machine yet.\n"      # no page at all
    table = "| what | state | wall time | command |\n|---|---|---|---|\n| training `vla-5` | done | 2543 s | `x` |\n"
    page.write_text(f"# t\n\n{report.WORK_HEADING}\n\nMeasured ...\n\n{table}\n{report.COMMANDS_HEADING}\n\nx\n")
    kept = report.section_work({}, tmp_path)
    assert kept.startswith(report.KEPT_NOTE) and table in kept and "Measured ..." in kept
    page.write_text(f"# t\n\n{report.WORK_HEADING}\n\n{kept}\n{report.COMMANDS_HEADING}\n\nx\n")
    assert report.section_work({}, tmp_path) == kept                                         # the note once
    nothing = "Nothing built on this machine yet.\n"
    page.write_text(f"# t\n\n{report.WORK_HEADING}\n\n{nothing}\n{report.COMMANDS_HEADING}\n")
    assert report.section_work({}, tmp_path) == nothing


def test_cells_stale_for_several_data_changes_are_named_once(monkeypatch):
    """Two changes of the same task's data that the same cells predate: one line names both changes."""
    monkeypatch.setattr(reading, "DATA_CHANGES", [("aaaa", "needle_pick", "change A"),
                                                 ("bbbb", "needle_pick", "change B")])
    monkeypatch.setattr(reading, "trained_before", lambda res, change, task: ["vla-50@needle_pick"])
    lines = [ln for ln in reading.reading({"vla-50@needle_pick": {"successes": 1, "episodes": 50}}).splitlines()
             if "demonstrations recorded before" in ln]
    assert len(lines) == 1 and "change A and before change B" in lines[0] and "`vla-50@needle_pick`" in lines[0]
    # different cells for the second change: a line each
    def two_sets(res, change, task):
        return ["vla-50@needle_pick"] + (["vla-5@reach"] if change == "bbbb" else [])
    monkeypatch.setattr(reading, "trained_before", two_sets)
    lines = [ln for ln in reading.reading({"vla-50@needle_pick": {"successes": 1, "episodes": 50}}).splitlines()
             if "demonstrations recorded before" in ln]
    assert len(lines) == 2
