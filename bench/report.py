"""Regenerate docs/performance.md (table + PNG plots) from a bench result.

Run `surgbot bench --report` (or `--quick --report`); never edit the
generated file by hand.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

# Published figures our numbers are read against (FACTS.md).
ANCHORS = [
    ("dVRK arm servo loop", "1500 Hz", "dVRK IO/arm loop"),
    ("dVRK ROS state topics", "100 Hz", "dVRK CRTK default publish rate"),
    ("dVRK FPGA watchdog", "30 ms", "dVRK"),
    ("Unitree G1 low-level loop", "500 Hz (2 ms)", "unitree_sdk2 G1 examples"),
    ("Unitree arm_sdk examples", "50 Hz, arm speed <= 0.5 rad/s", "unitree_sdk2 arm_sdk example"),
    ("MoveIt Servo publish period", "0.034 s (~30 Hz)", "MoveIt Servo defaults"),
    ("Unitree XR teleop arm IK (CasADi+IPOPT)", "32-51 ms on the robot's Jetson", "xr_teleoperate reports"),
    ("Teleop end-to-end latency, open systems", "50-100 ms", "literature"),
    ("pi0 inference", "~86-150 ms (RTX 4090)", "openpi reports"),
    ("GR00T N1 inference", "62.5 ms (L40)", "GR00T N1 report"),
    ("ACT select_action, 2 CPU cores", "~130 ms at 96x128", "measured here (FACTS.md)"),
]


# Where each figure comes from (issue 19): a figure is only as good as the loop that produced it.
PROVENANCE = [
    ("`sim.*`", "the twin's world loop in this process (`SimWorld.step`, G1 + PSM twins, ground truth), "
                "and `surgbot sim` subprocesses for the real-time/camera rows"),
    ("`g1.*`", "`surgbot sim` + `g1_bridge` subprocesses on real unitree DDS and rclpy; receive-side "
               "timings in the bench process"),
    ("`psm_*`", "the PSM twin subprocess over CRTK ROS 2, timed by a client in the bench process"),
    ("`sim_g1_lowstate_*`, `sim_psm_*`", "`sim_node` (box_trainer: G1 + PSM + camera) subprocess; the PSM read "
                                         "by a client in the bench process, `rt/lowstate` by "
                                         "`bench/lowstate_reader.py` in a process of its own (as the G1 bridge "
                                         "reads it); `_realtime`: sim and reader SCHED_FIFO, as `surgbot up "
                                         "--realtime chain` runs the sim and the bridge"),
    ("`endoscope.*`", "the in-process loop `bench.arm_loop.ArmLoop`: MuJoCo (the twin's own scene model, "
                      "entry-point spring included) + `EndoscopeHolderCore`, bridge PD/speed limit/gravity "
                      "feed-forward modelled in-process, 2 control periods of command delay, no DDS, no ROS, "
                      "no scheduler: deterministic, faster than real time. Not the node-level twin"),
    ("`executor.*`, `machine.*`", "child processes of `bench/executors.py`: rclpy executors' CPU, and the "
                                  "cost of one small publish right after a sleep against the same call back "
                                  "to back (what every idle-woken hop of a latency chain pays on this machine)"),
    ("node-level twin", "not benchmarked: the sim-in-the-loop tests (tests/test_endoscope_holder.py, "
                        "tests/test_endoscope_follow.py) print their fulcrum errors per real-time window "
                        "(`node-level windows:` lines of `make test`)"),
]


def fmt_number(x) -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def _plots(result: dict, out: Path) -> list[str]:
    os.environ.setdefault("MPLBACKEND", "Agg")
    # after the backend is chosen; matplotlib's import cost is paid only with --report
    import matplotlib.pyplot as plt
    import numpy as np

    names = []
    with_raw = [(n, f) for n, f in result["figures"].items() if f.get("raw")]
    for name, fig in with_raw:
        fname = "perf_" + "".join(c if c.isalnum() else "_" for c in name) + ".png"
        plt.figure(figsize=(5, 3))
        plt.hist(fig["raw"], bins=50, color="#3a6ea5")
        for key, style in (("median", "-"), ("p99", "--")):
            if key in fig:
                plt.axvline(fig[key], color="k", linestyle=style, label=f"{key} {fig[key]:.3g}")
        if fig.get("anchor") is not None:
            plt.axvline(fig["anchor"], color="r", linestyle=":", label=f"anchor {fig['anchor']:.3g}")
        plt.xlabel(f"{name} [{fig.get('unit', '')}]")
        plt.ylabel("count")
        plt.legend(fontsize=7)
        plt.tight_layout()
        plt.savefig(out / fname, dpi=90)
        plt.close()
        names.append(fname)

    rates = [(n, f["value"], f["anchor"]) for n, f in result["figures"].items()
             if f.get("unit") == "Hz" and f.get("value") is not None and f.get("anchor")]
    if rates:
        plt.figure(figsize=(6, 0.45 * len(rates) + 1))
        y = np.arange(len(rates))
        plt.barh(y + 0.2, [r[1] for r in rates], height=0.4, color="#3a6ea5", label="measured")
        plt.barh(y - 0.2, [r[2] for r in rates], height=0.4, color="#bbbbbb", label="anchor / target")
        plt.yticks(y, [r[0] for r in rates], fontsize=7)
        plt.xlabel("Hz")
        plt.legend(fontsize=7)
        plt.tight_layout()
        plt.savefig(out / "perf_rates.png", dpi=90)
        plt.close()
        names.append("perf_rates.png")

    ratios = [(n, f["ratio"]) for n, f in result["figures"].items() if f.get("ratio")]
    if ratios:
        plt.figure(figsize=(6, 0.4 * len(ratios) + 1))
        plt.barh([n for n, _ in ratios], [r for _, r in ratios], color="#5a9e5a")
        plt.axvline(1.0, color="k", linewidth=0.8)
        plt.xscale("log")
        plt.xlabel("ratio to the same-run baseline (>1: ours better)")
        plt.tight_layout()
        plt.savefig(out / "perf_ratios.png", dpi=90)
        plt.close()
        names.append("perf_ratios.png")
    return names


GOALS_FILE = "performance_goals.json"
_COMPARE = {"<": lambda a, b: a < b, ">=": lambda a, b: a >= b}


def goal_lines(figures: dict, goals_file: Path) -> list[str]:
    """The issues' goals (docs/performance_goals.json) beside this run's figures and the figure
    before the work; a goal whose figure this run lacks says so."""
    if not goals_file.exists():
        return []
    goals = json.loads(goals_file.read_text())["goals"]
    lines = ["", "## Goals (before the work -> this run)", "",
             f"From `docs/{GOALS_FILE}`: the issues' goals for these figures; before = the figure when "
             "the issue was filed, where it existed.", "",
             "| issue | figure | stat | goal | before | this run | met |", "|---|---|---|---|---|---|---|"]
    for g in goals:
        if g["op"] not in _COMPARE:
            raise ValueError(f"{goals_file}: goal for {g['figure']}: op {g['op']!r} not in {sorted(_COMPARE)}")
        f = figures.get(g["figure"], {})
        now = f.get(g["stat"])
        met = "not in this run" if now is None else "yes" if _COMPARE[g["op"]](now, g["goal"]) else "**no**"
        before = g.get("before")
        before_text = f"{fmt_number(before['value'])} ({before['from']})" if before else ""
        lines.append(f"| {g['issue']} | {g['figure']} | {g['stat']} | {g['op']} {fmt_number(g['goal'])} | "
                     f"{before_text} | {fmt_number(now)} | {met} |")
    return lines


def write_report(result: dict, docs: Path) -> Path:
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "performance.json").write_text(json.dumps(
        {**result, "figures": {k: {kk: vv for kk, vv in v.items() if kk != "raw"}
                               for k, v in result["figures"].items()}}, indent=1))
    images = _plots(result, docs)
    m = result["machine"]
    lines = [
        "# Performance",
        "",
        "Generated by `surgbot bench --report` from `docs/performance.json`; do not edit by hand.",
        f"Run: {result.get('started', '')}, {'quick' if result.get('quick') else 'full'} mode."
        + (f" Note: {result['note']}." if result.get("note") else ""),
        f"Machine: {m.get('cpu')}, {m.get('cores')} cores, Python {m.get('python')}, "
        f"mujoco {m.get('mujoco')}, pinocchio {m.get('pinocchio')}, numpy {m.get('numpy')}.",
        "",
        "| figure | unit | median / value | p99 | max | anchor | same-run baseline | ratio | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, f in result["figures"].items():
        anchor = fmt_number(f.get("anchor"))
        if anchor and f.get("anchor_source"):
            anchor += f" ({f['anchor_source']})"
        base = fmt_number(f.get("baseline"))
        if base and f.get("baseline_name"):
            base += f" ({f['baseline_name']})"
        lines.append(f"| {name} | {f.get('unit', '')} | {fmt_number(f.get('median', f.get('value')))} | "
                     f"{fmt_number(f.get('p99'))} | {fmt_number(f.get('max'))} | {anchor} | {base} | "
                     f"{fmt_number(f.get('ratio'))} | {f.get('note', '')} |")
    for area, err in result.get("errors", {}).items():
        lines.append(f"\nArea `{area}` failed: `{err}`")
    lines += goal_lines(result["figures"], docs / GOALS_FILE)
    lines += ["", "## Where the figures come from", "", "| figures | loop |", "|---|---|"]
    lines += [f"| {a} | {b} |" for a, b in PROVENANCE]
    lines += ["", "Samples give median, p99 and max: the max is the worst case of the run, quote it "
                  "with the median."]
    lines += ["", "## Anchors (published figures)", "", "| what | figure | source |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in ANCHORS]
    gpu = docs / "performance_gpu.json"
    if gpu.exists():
        g = json.loads(gpu.read_text())
        lines += ["", "## On a GPU (when one is lent)", "",
                  f"{g['machine']}; `{g['command']}`, {g['date']}. Only the parts of the suite that "
                  "run without the ROS/DDS stack travel there (its cp311 wheels do not).", "",
                  "| figure | unit | median | p99 |", "|---|---|---|---|"]
        lines += [f"| {f['name']} | {f['unit']} | {fmt_number(f['median'])} | {fmt_number(f['p99'])} |"
                  for f in g["figures"]]
    # plots of figures carried over from an earlier run (no samples now) stay listed
    for name, f in result["figures"].items():
        fname = "perf_" + "".join(c if c.isalnum() else "_" for c in name) + ".png"
        if not f.get("raw") and fname not in images and (docs / fname).exists():
            images.append(fname)
    if images:
        lines += ["", "## Plots", ""]
        lines += [f"![{img}]({img})" for img in images]
    path = docs / "performance.md"
    path.write_text("\n".join(lines) + "\n")
    return path
