"""The plots of docs/results.md: success of every cell with its interval, data scaling, learning curves."""

from __future__ import annotations

from pathlib import Path

from surgbot.policies.results import cells as C

PLOT_SUCCESS = "results_success.png"
PLOT_SCALING = "results_scaling.png"
PLOT_CURVES = "results_curves.png"


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
        colours = {"scaling": "C0", "pseudo": "C2", "baselines": "C1", "robustness": "C3", "repeat": "C4"}
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
