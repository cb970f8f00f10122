"""`summary.json` and `summary.png` of a demo run, from what the observer measured."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the headless backend
import numpy as np  # noqa: E402

MM = 1000.0


def _stats(values, scale: float = 1.0) -> dict:
    if not len(values):
        return {"samples": 0}
    v = np.asarray(values, float) * scale
    return {"samples": int(v.size), "p50": float(np.percentile(v, 50)), "p99": float(np.percentile(v, 99)),
            "max": float(v.max())}


def build_summary(observer, tasks: list[dict], wall_s: float, videos: dict, notes: list[str]) -> dict:
    fe = [e for _, e in observer.fulcrum_errors]
    dev = np.array([d for _, d in observer.tip_deviation]) if observer.tip_deviation else np.zeros(0)
    view = observer.tool_in_view
    policy = observer.policy or {}
    safety = observer.safety or {}
    bridge = observer.node_values.get("g1_bridge", {})
    return {
        "tasks": tasks,
        "all_succeeded": bool(tasks) and all(t["success"] for t in tasks),
        # a task a FAULT of lateness interrupted is run once more (demo/script.py TASK_ATTEMPTS)
        "retried_tasks": [t["task"] for t in tasks if t.get("attempts", 1) > 1],
        "fulcrum_error_mm": _stats(fe, MM),
        "scope_tip_deviation_mm": _stats(dev, MM),
        "scope_jitter_mm_rms": float(np.sqrt(np.mean(dev ** 2)) * MM) if dev.size else None,
        "tool_in_view_fraction": float(np.mean(view)) if view else None,
        "rates_hz": observer.rates_hz(),
        "policy_inference_ms": _stats(observer.inference_ms),
        "gate_rejections": policy.get("gate_rejections", {}),
        "safety_state": safety.get("state"),
        # each entry of /safety/state into FAULT or ESTOP during the run (run time, reasons)
        "faults": list(observer.safety_stops),
        "fault_count": len(observer.safety_stops),
        "error_diagnostics": sorted(observer.error_diagnostics),
        # stream ticks of the G1 bridge that took rt/lowstate its starved DDS listener had left in
        # the reader (nodes/g1_bridge.py LOWSTATE_DRAIN_AFTER_S): how often the 2-core machine
        # starved that thread; each was >= 10 ms on the way to a 50 ms watchdog FAULT
        "g1_bridge_lowstate_drained": int(bridge.get("lowstate_drained", "0")),
        "g1_bridge_lowstate_drained_max_age_ms": float(bridge.get("lowstate_drained_max_age_ms", "0")),
        "wall_s": wall_s,
        "videos": videos,
        "notes": notes,
    }


def write_summary(summary: dict, observer, out_dir: Path) -> tuple[Path, Path]:
    json_path = out_dir / "summary.json"
    json_path.write_text(json.dumps(summary, indent=2) + "\n")
    png_path = out_dir / "summary.png"
    fig, ax = plt.subplots(2, 2, figsize=(11, 7.5))
    if observer.fulcrum_errors:
        t, e = np.array(observer.fulcrum_errors).T
        ax[0, 0].plot(t, e * MM, lw=0.8)
    ax[0, 0].set(title="fulcrum error (ground truth)", xlabel="run time, s", ylabel="mm")
    if observer.tip_deviation:
        t, d = np.array(observer.tip_deviation).T
        ax[0, 1].plot(t, d * MM, lw=0.8, color="tab:green")
    ax[0, 1].set(title="scope tip deviation from the held pose", xlabel="run time, s", ylabel="mm")
    if observer.inference_ms:
        ax[1, 0].hist(observer.inference_ms, bins=30, color="tab:purple")
    ax[1, 0].set(title="policy inference time", xlabel="ms", ylabel="chunks")
    names = [f"{t['task']}\n(seed {t['seed']})" for t in summary["tasks"]]
    times = [t["time_s"] for t in summary["tasks"]]
    colours = ["tab:green" if t["success"] else "tab:red" for t in summary["tasks"]]
    ax[1, 1].bar(names, times, color=colours)
    for i, t in enumerate(summary["tasks"]):
        retried = f" (attempt {t['attempts']})" if t.get("attempts", 1) > 1 else ""
        ax[1, 1].text(i, times[i], ("success" if t["success"] else "failed") + retried, ha="center", va="bottom")
    ax[1, 1].set(title="tasks (green: success)", ylabel="time to finish, s")
    rates = ", ".join(f"{k.replace('_hz', '')} {v:.0f} Hz" for k, v in summary["rates_hz"].items() if v)
    fig.suptitle(f"surgbot demo: fulcrum error p99 {summary['fulcrum_error_mm'].get('p99', float('nan')):.3f} mm"
                 f" | faults {summary['fault_count']}\n{rates}", fontsize=10)
    fig.tight_layout()
    fig.savefig(png_path, dpi=90)
    plt.close(fig)
    return json_path, png_path
