"""docs/results.md and its plots, generated from the cell JSON in docs/results/ (nothing else).

Each section is one function `(cells_by_name, root) -> markdown`, independent
of the others; a cell without JSON shows as "not run" (never a number).  The
"IDM" section belongs to the IDM issue: it is rendered by the function named
in `EXTERNAL_SECTIONS` (its own code, from its own JSON) when that module is
installed, and says so when it is not.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

from surgbot.policies.results import cells as C
from surgbot.policies.results.runner import trained_step
from surgbot.policies.results.stats import wilson_interval

PAGE = Path("docs/results.md")
PLOT_SUCCESS = "results_success.png"
PLOT_SCALING = "results_scaling.png"
PLOT_CURVES = "results_curves.png"
PSEUDO_GOAL_POINTS = 15
PRIORITY = [f"{p}-50@{t}" for t in C.PSEUDO_TASKS for p in ("act", "vla", "diffusion")] + \
    [f"vla-{n}@{t}" for n in (5, 20) for t in C.PSEUDO_TASKS] + \
    [f"vla-5-pseudo{n}@{t}" for n in C.PSEUDO_CLIPS for t in C.PSEUDO_TASKS] + \
    [n for n in C.CELLS if n.endswith("@reach")] + [n for n in C.CELLS if n.startswith("bundled")]
EXTERNAL_SECTIONS = {"IDM": "surgbot.policies.idm.report:results_section"}
NOT_RUN = "not run"


def load_results(root: Path) -> dict[str, dict]:
    out = {}
    d = root / C.DOCS
    for f in sorted(d.glob("*.json")) if d.is_dir() else []:
        try:
            data = json.loads(f.read_text())
        except ValueError:
            continue
        if isinstance(data, dict) and data.get("cell") in C.CELLS:
            out[data["cell"]] = data
    return out


def pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def success_text(r: dict | None) -> str:
    if r is None:
        return NOT_RUN
    lo, hi = r["wilson95"]
    return f"{r['successes']}/{r['episodes']} = {pct(r['success_rate'])} [{pct(lo)}, {pct(hi)}]"


def mb(n: int | None) -> str:
    return "-" if n is None else f"{n / 1e6:.1f} MB"


def minutes(s: float | None) -> str:
    return "-" if s is None else f"{s / 60:.1f} min"


def cost_cells(r: dict | None) -> list[str]:
    if r is None:
        return ["-", "-", "-", "-"]
    tr, lat = r.get("training", {}), r.get("latency", {})
    params = tr.get("parameters")
    size = f"{params / 1e6:.2f} M" if params else "-"
    steps = f"{tr['steps']} x {tr['batch_size']}" if tr.get("steps") else "-"
    ms = lat.get("infer_ms_p50")
    return [f"{minutes(tr.get('wall_s'))} ({steps})", f"{size}, {mb(tr.get('checkpoint_bytes'))}",
            "-" if ms is None else f"{ms:.1f} / {lat.get('infer_ms_p99', 0):.1f} ms", r.get("evaluator", "-")]


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


COST_HEADER = ["training wall time (steps x batch)", "parameters, checkpoint", "inference p50 / p99",
               "evaluator"]


# ------------------------------------------------------------------ sections
def section_scaling(res: dict, root: Path) -> str:
    rows = []
    for n in C.SCALING_DEMOS:
        for task in C.TASKS:
            name = f"vla-{n}@{task}"
            rows.append([f"`{name}`", str(n), task, success_text(res.get(name)), *cost_cells(res.get(name))])
    return ("Our multi-task VLA trained on N real expert demonstrations per task (all three tasks in one "
            f"policy, {C.VLA_STEPS} steps, batch {C.VLA_BATCH}), each cell {C.EVAL_EPISODES} closed-loop "
            f"episodes from seed {C.EVAL_SEED}.\n\n"
            + table(["cell", "demos/task", "task", "success [Wilson 95%]", *COST_HEADER], rows)
            + f"\n\n![success vs demonstrations](results/{PLOT_SCALING})\n")


def section_pseudo(res: dict, root: Path) -> str:
    rows = []
    for task in C.PSEUDO_TASKS:
        base = res.get(f"vla-{C.PSEUDO_REAL_DEMOS}@{task}")
        rows.append([f"`vla-{C.PSEUDO_REAL_DEMOS}@{task}`", task, "0", success_text(base), "-", *cost_cells(base)])
        for n in C.PSEUDO_CLIPS:
            name = f"vla-5-pseudo{n}@{task}"
            r = res.get(name)
            delta = "-"
            if r is not None and base is not None:
                delta = f"{100 * (r['success_rate'] - base['success_rate']):+.0f} points"
            rows.append([f"`{name}`", task, str(n), success_text(r), delta, *cost_cells(r)])
    return (f"NVIDIA's recipe: {C.PSEUDO_REAL_DEMOS} real demonstrations per task for the policy, an IDM "
            f"trained on {C.IDM_EPISODES} other real episodes (seeds {C.IDM_SEED}-{C.IDM_SEED + C.IDM_EPISODES - 1}),"
            " N world-model clips per task (`surgbot data videos --backend sim`) labelled by it. "
            f"Goal: +{PSEUDO_GOAL_POINTS} points at {C.PSEUDO_REAL_DEMOS} real demonstrations.\n\n"
            + table(["cell", "task", "pseudo clips/task", "success [Wilson 95%]", "vs without",
                     *COST_HEADER], rows) + "\n")


def section_baselines(res: dict, root: Path) -> str:
    rows = []
    for task in C.TASKS:
        for name in (f"vla-50@{task}", f"act-50@{task}", f"diffusion-50@{task}"):
            rows.append([f"`{name}`", task, success_text(res.get(name)), *cost_cells(res.get(name))])
    return ("LeRobot's ACT and Diffusion Policy, from scratch (no pretrained backbone), trained with "
            "`lerobot-train` on the same 50-demonstration dataset of one task each, evaluated by the same "
            "loop through `surgbot.policies.evaluation.lerobot_adapter`. Sizes: ACT dim 256, feed-forward "
            f"1024, 2 encoder + 1 decoder layers, chunk 16 (plays 8), {C.ACT_STEPS} steps x batch "
            f"{C.LEROBOT_BATCH}; Diffusion down_dims (64,128,256), 1 observation, horizon 16 (plays 8), "
            f"DDIM 10 steps, {C.DIFFUSION_STEPS} steps x batch {C.LEROBOT_BATCH}. Our VLA row is the data-"
            "scaling cell with 50 demonstrations per task.\n\n"
            + table(["cell", "task", "success [Wilson 95%]", *COST_HEADER], rows)
            + f"\n\n![success of every cell run](results/{PLOT_SUCCESS})\n\n"
            f"![training loss](results/{PLOT_CURVES})\n")


def section_robustness(res: dict, root: Path) -> str:
    rows = []
    for task in C.PSEUDO_TASKS:
        for name in (f"bundled@{task}", f"bundled-appearance@{task}", f"bundled-tool-follow@{task}"):
            cell = C.CELLS[name]
            rows.append([f"`{name}`", task, cell.variables["condition"], success_text(res.get(name))])
    return ("The bundled checkpoint (`--checkpoint default`) with the nominal view, under the `sim` video "
            "source's appearance randomisation applied at evaluation, and with the endoscope in TOOL_FOLLOW.\n\n"
            + table(["cell", "task", "condition", "success [Wilson 95%]"], rows) + "\n")


def section_external(title: str, root: Path) -> str:
    module, func = EXTERNAL_SECTIONS[title].split(":")
    try:
        render = getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError):
        return (f"{NOT_RUN}: this section is generated by `{module}.{func}` (the IDM issue's code, from its "
                "own JSON), which is not installed in this checkout.\n")
    return render(root)


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
            d = 100 * (r["success_rate"] - base["success_rate"])
            verdict = "met" if d >= PSEUDO_GOAL_POINTS else "not met"
            out.append(f"- Pseudo-kinematics on {task}, {n} clips: {d:+.0f} points "
                       f"({success_text(r)} vs {success_text(base)}): +{PSEUDO_GOAL_POINTS} goal {verdict}.")
    for task in C.TASKS:
        vla = res.get(f"vla-50@{task}")
        bases = [r for r in (res.get(f"act-50@{task}"), res.get(f"diffusion-50@{task}")) if r is not None]
        if vla is None or not bases:
            out.append(f"- VLA vs best baseline on {task}: cannot be judged, "
                       f"{'our VLA cell' if vla is None else 'no baseline cell'} {NOT_RUN}.")
            continue
        best = max(bases, key=lambda r: r["success_rate"])
        overlap = not (vla["wilson95"][0] > best["wilson95"][1] or best["wilson95"][0] > vla["wilson95"][1])
        cmp_ = ">=" if vla["success_rate"] >= best["success_rate"] else "<"
        cost = ""
        tv, tb = vla.get("training", {}).get("wall_s"), best.get("training", {}).get("wall_s")
        if tv and tb:
            cost = f"; training {minutes(tv)} (all three tasks) vs {minutes(tb)} (one task)"
        out.append(f"- VLA vs best baseline on {task}: {success_text(vla)} {cmp_} {best['cell']} "
                   f"{success_text(best)}{' (intervals overlap)' if overlap else ''}{cost}.")
    interim = sorted(n for n, r in res.items() if r.get("evaluator") == "interim")
    if interim:
        out.append(f"- {len(interim)} cell(s) were evaluated with the TEMPORARY loop "
                   "(`surgbot.policies.results.interim_eval`) because `surgbot policy eval` was not installed "
                   "yet; rerun them with the harness: " + ", ".join(f"`{n}`" for n in interim) + ".")
    missing = [n for n in C.CELLS if n not in res]
    order = [n for n in PRIORITY if n not in res]
    if order:
        out.append("- Next experiment: run the cells not run yet, in this order (baselines and our VLA on the "
                   "same 50 demonstrations first, then the 5-demonstration cells the pseudo-kinematics question "
                   "needs): " + ", ".join(f"`{n}`" for n in order[:6]) + (" ..." if len(order) > 6 else "") + ".")
    out.append(f"- Cells run: {len(res)} of {len(C.CELLS)}. Not run: "
               + (", ".join(f"`{n}`" for n in missing) if missing else "none") + ".")
    return "\n".join(out) + "\n"


SECTIONS = {
    "Data scaling": section_scaling,
    "Pseudo-kinematics (world-model video + IDM)": section_pseudo,
    "Baselines: LeRobot ACT and Diffusion Policy": section_baselines,
    "Robustness": section_robustness,
}


TQDM_RE = re.compile(r"(\d+)/(\d+) \[[^\]]*?([\d.]+)s/step\]")


def section_work(res: dict, root: Path) -> str:
    """What exists under out/results/ on the machine that generated the page: datasets built, trainings
    and how far they got (measured, not results: a training becomes a result only through its cells)."""
    work = root / C.WORK
    rows = []
    for ds in C.DATASETS.values():
        marker = work / "data" / f".{ds.key}.done"
        if marker.is_file():
            info = json.loads(marker.read_text())
            rows.append([f"dataset `{ds.key}`", f"{info['episodes']} episodes, {mb(info.get('bytes'))}",
                         f"{info['wall_s']:.0f} s", "; ".join(f"`{c}`" for c in info["commands"])])
    trainings = {c.training.key: c.training for c in C.CELLS.values() if c.training.command}
    logs_dir = work / "logs"
    logs = [f.read_text(errors="replace") for f in sorted(logs_dir.glob("*.log"))] if logs_dir.is_dir() else []
    for key, tr in trainings.items():
        out = work / "train" / key
        mine = [t.split(f"training {key}:", 1)[1] for t in logs if f"training {key}:" in t]
        if not out.exists() and not mine:
            continue
        step = trained_step(out)
        progress = f"checkpoint at step {step} of {tr.steps}" if step else f"no checkpoint yet (of {tr.steps} steps)"
        state = work / "state" / f"train-{key}.json"
        wall = sum(r["wall_s"] for r in json.loads(state.read_text())["runs"]) if state.is_file() else None
        hits = TQDM_RE.findall(mine[-1]) if mine else []
        if hits:
            done, total, sps = hits[-1]
            progress += f"; last seen at step {done}/{total}, {float(sps):.1f} s/step"
        rows.append([f"training `{key}`", progress, "-" if wall is None else f"{wall:.0f} s",
                     f"`{' '.join(tr.command)}`"])
    if not rows:
        return "Nothing built on this machine yet.\n"
    return ("Measured while building the cells on the machine that generated this page (2 shared cores, "
            "niceness 10): what exists under `out/results/` and how far it got. These are costs, not "
            "results.\n\n" + table(["what", "state", "wall time", "command"], rows) + "\n")


def render_page(res: dict, root: Path) -> str:
    parts = [
        "# Learning results\n",
        "Generated by `surgbot results report` from the JSON of each cell in `docs/results/` (do not edit by "
        "hand). Each cell: one trained policy, 50 seeded closed-loop episodes in the Gymnasium environment "
        f"(seeds {C.EVAL_SEED}-{C.EVAL_SEED + C.EVAL_EPISODES - 1}; every training and dataset seed is below "
        "10000), success with its Wilson 95% interval, training wall time on this machine's 2 shared CPU "
        "cores, checkpoint size, inference latency (1 torch thread). Rerun one cell (in the background, "
        "resumable) and regenerate this page:\n\n"
        "```bash\nsurgbot results list                      # every cell, its state and its commands\n"
        "surgbot results run --cell act-50@needle_pick --background\n"
        "surgbot results status\nsurgbot results report\n```\n",
        "## Reading\n\n" + reading(res),
    ]
    for title, fn in SECTIONS.items():
        parts.append(f"## {title}\n\n" + fn(res, root))
    for title in EXTERNAL_SECTIONS:
        parts.append(f"## {title}\n\n" + section_external(title, root))
    parts.append("## Work in progress on this machine\n\n" + section_work(res, root))
    parts.append("## Commands of every cell\n\n" + commands_list(res))
    return "\n".join(parts)


def commands_list(res: dict) -> str:
    lines = []
    for name, cell in C.CELLS.items():
        evaluator = res[name]["evaluator"] if name in res else "harness"
        cmds = res[name]["commands"] if name in res else [" ".join(a) for a in cell.commands(evaluator)]
        lines.append(f"<details><summary><code>{name}</code> ({'run' if name in res else NOT_RUN})</summary>\n\n"
                     "```bash\n" + "\n".join(cmds) + "\n```\n</details>\n")
    return "\n".join(lines)


# ------------------------------------------------------------------ plots
def plot_all(res: dict, out_dir: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    # success of every cell run, with Wilson intervals
    names = [n for n in C.CELLS if n in res]
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(names) + 2), 4))
    if names:
        rates = [res[n]["success_rate"] for n in names]
        lo = [rates[i] - res[n]["wilson95"][0] for i, n in enumerate(names)]
        hi = [res[n]["wilson95"][1] - rates[i] for i, n in enumerate(names)]
        colours = {"scaling": "C0", "pseudo": "C2", "baselines": "C1", "robustness": "C3"}
        ax.bar(range(len(names)), rates, yerr=[lo, hi], capsize=4,
               color=[colours.get(res[n]["section"], "C7") for n in names])
        ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no cell run yet", ha="center", va="center", transform=ax.transAxes)
    ax.set_ylim(0, 1)
    ax.set_ylabel(f"success ({C.EVAL_EPISODES} episodes, Wilson 95%)")
    fig.tight_layout()
    written.append(_save(fig, out_dir / PLOT_SUCCESS, plt))
    # data scaling: success vs demonstrations per task
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, task in enumerate(C.TASKS):
        pts = [(n, res[f"vla-{n}@{task}"]) for n in C.SCALING_DEMOS if f"vla-{n}@{task}" in res]
        if pts:
            xs = [n * (1 + 0.03 * (i - 1)) for n, _ in pts]
            ys = [r["success_rate"] for _, r in pts]
            err = [[y - r["wilson95"][0] for y, (_, r) in zip(ys, pts, strict=True)],
                   [r["wilson95"][1] - y for y, (_, r) in zip(ys, pts, strict=True)]]
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=4, label=task)
    ax.set_xscale("log")
    ax.set_xticks(list(C.SCALING_DEMOS), [str(n) for n in C.SCALING_DEMOS])
    ax.set_xlabel("real demonstrations per task")
    ax.set_ylabel("success (Wilson 95%)")
    ax.set_ylim(0, 1)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no data-scaling cell run yet", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    written.append(_save(fig, out_dir / PLOT_SCALING, plt))
    # learning curves: training loss of each trained policy
    fig, ax = plt.subplots(figsize=(6, 4))
    seen = set()
    for n in names:
        tr = res[n].get("training", {})
        curve = tr.get("curve") or []
        if tr.get("key") in seen or not curve:
            continue
        seen.add(tr.get("key"))
        ax.plot([p[0] for p in curve], [p[1] for p in curve], label=f"{tr['key']} ({tr.get('policy')})")
    if seen:
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no training run yet", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("training step")
    ax.set_ylabel("training loss (each policy's own)")
    fig.tight_layout()
    written.append(_save(fig, out_dir / PLOT_CURVES, plt))
    return written


def _save(fig, path: Path, plt) -> Path:
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def generate(root: Path = Path(".")) -> dict:
    """Write docs/results.md and the plots; returns what was written and how many cells ran."""
    root = Path(root)
    res = load_results(root)
    for r in res.values():    # recompute from the counts: the page never trusts a stored interval
        r["wilson95"] = list(wilson_interval(int(r["successes"]), int(r["episodes"])))
        r["success_rate"] = int(r["successes"]) / int(r["episodes"])
    plots = plot_all(res, root / C.DOCS)
    page = root / PAGE
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(render_page(res, root))
    return {"page": str(page), "plots": [str(p) for p in plots], "cells_run": len(res), "cells": len(C.CELLS)}
