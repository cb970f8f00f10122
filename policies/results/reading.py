"""The "Reading" of docs/results.md: statements computed from the cells' numbers (the two goals of
the results issue, reproducibility) and which cells an evaluation or data change has made stale."""

from __future__ import annotations

import subprocess
from pathlib import Path

from surgbot.policies.results import cells as C
from surgbot.policies.results.text import NOT_RUN, compare_repeat, intervals_overlap, minutes, points, success_text

PSEUDO_GOAL_POINTS = 15
PRIORITY = [f"{p}-50@{t}" for t in C.PSEUDO_TASKS for p in ("act", "vla", "diffusion")] + \
    [f"vla-{n}@{t}" for n in (5, 20) for t in C.PSEUDO_TASKS] + \
    [f"vla-5-pseudo{n}@{t}" for n in C.PSEUDO_CLIPS for t in C.PSEUDO_TASKS] + \
    [n for n in C.CELLS if n.endswith("@reach")] + [n for n in C.CELLS if n.startswith("bundled")] + \
    [n for n in C.CELLS if n.endswith(C.REPEAT_SUFFIX)]


def reading(res: dict) -> str:
    """Statements computed from the numbers; a goal without its cells says it cannot be judged."""
    out = []
    for task in C.PSEUDO_TASKS:
        base = res.get(f"vla-{C.PSEUDO_REAL_DEMOS}@{task}")
        withs = [res.get(f"vla-5-pseudo{n}@{task}") for n in C.PSEUDO_CLIPS]
        if base is None or not any(withs):
            out.append(f"- Pseudo-kinematics on {task}: cannot be judged, the cells are {NOT_RUN}.")
            continue
        for n, r in zip(C.PSEUDO_CLIPS, withs, strict=True):
            if r is None:
                continue
            d = points(r, base)
            verdict = "met" if d >= PSEUDO_GOAL_POINTS else "not met"
            out.append(f"- Pseudo-kinematics on {task}, {n} clips: {d:+.0f} points "
                       f"({success_text(r)} vs {success_text(base)}): +{PSEUDO_GOAL_POINTS} goal {verdict}.")
    out += pseudo_goal(res)
    judged = []            # (task, vla, best baseline) for the goal's verdict
    for task in C.TASKS:
        vla = res.get(f"vla-50@{task}")
        bases = [r for r in (res.get(f"act-50@{task}"), res.get(f"diffusion-50@{task}")) if r is not None]
        if vla is None or not bases:
            out.append(f"- VLA vs best baseline on {task}: cannot be judged, "
                       f"{'our VLA cell' if vla is None else 'no baseline cell'} {NOT_RUN}.")
            continue
        best = max(bases, key=lambda r: r["success_rate"])
        judged.append((task, vla, best))
        overlap = intervals_overlap(vla, best)
        cmp_ = ">=" if vla["success_rate"] >= best["success_rate"] else "<"
        cost = ""
        tv, tb = vla.get("training", {}).get("wall_s"), best.get("training", {}).get("wall_s")
        if tv and tb:
            cost = f"; training {minutes(tv)} (all three tasks) vs {minutes(tb)} (one task)"
        out.append(f"- VLA vs best baseline on {task}: {success_text(vla)} {cmp_} {best['cell']} "
                   f"{success_text(best)}{' (intervals overlap)' if overlap else ''}{cost}.")
    for name in C.REPEATED:
        first, again = res.get(name), res.get(name + C.REPEAT_SUFFIX)
        if first is not None and again is not None:
            cmp_ = compare_repeat(first, again)
            out.append(f"- Reproducibility, {name} run twice by the same commands: {success_text(first)}, then "
                       f"{success_text(again)}: {'inside' if cmp_['within'] else 'OUTSIDE'} the first interval.")
    out += baseline_goal(judged)
    interim = sorted(n for n, r in res.items() if r.get("evaluator") == "interim")
    if interim:
        out.append(f"- {len(interim)} cell(s) were evaluated with the TEMPORARY loop "
                   "(`surgbot.policies.results.interim_eval`) because `surgbot policy eval` was not installed "
                   "yet; rerun them with the harness: " + ", ".join(f"`{n}`" for n in interim) + ".")
    old = stale_cells(res)
    if old:
        out.append(f"- {len(old)} cell(s) were run with other commands than the cell's current ones (an older "
                   "recipe or image size; `surgbot results list --commands` shows the current ones), so they "
                   "are not comparable with the rest; rerun them: " + ", ".join(f"`{n}`" for n in old) + ".")
    for change, what in EVALUATION_CHANGES:
        before = evaluated_before(res, change)
        if before:
            out.append(f"- {len(before)} cell(s) of our VLA were evaluated before {change} ({what}), so today's "
                       "code would act differently with their checkpoints; rerun their evaluation: "
                       + ", ".join(f"`{n}`" for n in before) + ".")
    # one line per set of cells: cells that predate several changes of the same data are named once
    stale: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for change, task, what in DATA_CHANGES:
        before = tuple(trained_before(res, change, task))
        if before:
            stale.setdefault((task, before), []).append(what)
    for (task, before), whats in stale.items():
        out.append(f"- {len(before)} cell(s) learnt from {task} demonstrations recorded before "
                   f"{' and before '.join(whats)}, so their recipe would record other data today; rerun them "
                   "to compare with later cells: " + ", ".join(f"`{n}`" for n in before) + ".")
    missing = [n for n in C.CELLS if n not in res]
    order = [n for n in PRIORITY if n not in res]
    if order:
        out.append("- Next experiment: run the cells not run yet, in this order (baselines and our VLA on the "
                   "same 50 demonstrations first, then the 5-demonstration cells the pseudo-kinematics question "
                   "needs): " + ", ".join(f"`{n}`" for n in order[:6]) + (" ..." if len(order) > 6 else "") + ".")
    out.append(f"- Cells run: {len(res)} of {len(C.CELLS)}. Not run: "
               + (", ".join(f"`{n}`" for n in missing) if missing else "none") + ".")
    return "\n".join(out) + "\n"


def pseudo_goal(res: dict) -> list[str]:
    """The +15-point goal over every pseudo-kinematics cell run: met only where a cell reached it."""
    deltas = []
    for task in C.PSEUDO_TASKS:
        base = res.get(f"vla-{C.PSEUDO_REAL_DEMOS}@{task}")
        for n in C.PSEUDO_CLIPS:
            r = res.get(f"vla-5-pseudo{n}@{task}")
            if base is not None and r is not None:
                deltas.append((points(r, base), f"{task}, {n} clips"))
    if not deltas:
        return []
    best, where = max(deltas)
    hit = [w for d, w in deltas if d >= PSEUDO_GOAL_POINTS]
    floor = sum(1 for t in C.PSEUDO_TASKS if (res.get(f"vla-{C.PSEUDO_REAL_DEMOS}@{t}") or {}).get("successes") == 0)
    return [f"- **Goal +{PSEUDO_GOAL_POINTS} points with pseudo-kinematics: "
            f"{'met on ' + ', '.join(hit) if hit else 'not met'}** ({len(deltas)} cell(s) judged; best "
            f"{best:+.0f} points, {where}"
            + (f"; without pseudo-kinematics the policy succeeds 0/50 on {floor} of the tasks, so these cells "
               "measure whether the clips lift it off the floor" if floor else "") + ")."]


def baseline_goal(judged: list[tuple[str, dict, dict]]) -> list[str]:
    """'Our VLA >= the best baseline at lower training cost': success on every task judged, and one VLA
    training (all tasks) against the baseline trainings it replaces (one per task)."""
    if not judged:
        return []
    ge = [t for t, v, b in judged if v["success_rate"] >= b["success_rate"]]
    both_zero = [t for t, v, b in judged if v["successes"] == 0 and b["successes"] == 0]
    vla_wall = judged[0][1].get("training", {}).get("wall_s")
    base_walls = [b.get("training", {}).get("wall_s") for _, _, b in judged]
    cheaper = None
    cost = ""
    if vla_wall and all(base_walls):
        cheaper = vla_wall < sum(base_walls)
        cost = (f"; cost: one VLA training {minutes(vla_wall)} for the {len(judged)} tasks vs "
                f"{minutes(sum(base_walls))} for the {len(judged)} best baselines' trainings")
    overlap = sum(1 for _, v, b in judged if intervals_overlap(v, b))
    met = len(ge) == len(judged) and cheaper is True and len(both_zero) < len(judged)
    zero = (f"; on {', '.join(both_zero)} both succeed 0/50, which shows nothing either way" if both_zero else "")
    return [f"- **Goal 'our VLA >= the best baseline at lower training cost': {'met' if met else 'not met'}** "
            f"(the VLA's rate >= the best baseline's on {len(ge)} of {len(judged)} tasks, the intervals overlapping "
            f"on {overlap} of them{zero}{cost})."]


# Code changes after which a surgvla checkpoint is evaluated differently (commit, what changed).
EVALUATION_CHANGES = [
    ("5a8e170", "the goal memory at inference (61a3654, 5a8e170), on by default for checkpoints with a goal head"),
]
# Changes to how a task's demonstrations are made: a cell whose datasets include that task's and whose
# run does not contain the change learnt from the older demonstrations (its recipe's data would differ now).
DATA_CHANGES = [
    ("c31f16e", "needle_pick", "the needle_pick expert's grasp 2 mm into the pad (c31f16e)"),
]
BASELINE_PREFIXES = ("act-", "diffusion-")


def _run_contains(r: dict, change: str) -> bool:
    """Whether the cell's recorded `git_commit` contains `change` (False when it cannot be checked)."""
    commit = str(r.get("git_commit") or "")
    try:
        return bool(commit) and subprocess.run(
            ["git", "merge-base", "--is-ancestor", change, commit], cwd=Path(__file__).parent,
            capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def evaluated_before(res: dict, change: str) -> list[str]:
    """Our VLA's cells whose recorded `git_commit` does not contain `change` (or cannot be checked)."""
    return [name for name, r in sorted(res.items())
            if not name.startswith(BASELINE_PREFIXES) and not _run_contains(r, change)]


def trained_before(res: dict, change: str, task: str) -> list[str]:
    """Cells that learnt from `task` demonstrations (a dataset of theirs is that task's) in a run that does
    not contain `change`."""
    out = []
    for name, r in sorted(res.items()):
        cell = C.CELLS.get(name)
        if cell is not None and any(task in d.key for d in cell.datasets()) and not _run_contains(r, change):
            out.append(name)
    return out


def stale_cells(res: dict) -> list[str]:
    """Cells whose JSON was produced by other commands than the cell's current ones."""
    return sorted(n for n, r in res.items() if n in C.CELLS
                  and r.get("commands") != [" ".join(a) for a in C.CELLS[n].commands(r.get("evaluator", "harness"))])
