"""Tasks and data: expert success, environment speed, recording throughput, dataset size.

* `data.expert_success.<task>`: scripted-expert success over 100 seeds per
  task (--quick: 5), without images (the experts do not look).
* `data.env_steps_per_s.<images|no_images>`: Gymnasium steps per second of
  needle_pick (the expert acting), with the 128x128 endoscope image and
  without; the no-image rate is the baseline of the image one.
* `data.record_frames_per_s`: `surgbot data record` throughput (expert +
  128x128 rendering + LeRobot writing and AV1 encoding), reach task, as a
  multiple of real time at 15 fps (goal >= 4x on 2 cores).
* `data.dataset_mb_per_episode`: size on disk per recorded episode.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from surgbot.bench import figure

TASKS = ("reach", "needle_pick", "peg_transfer")
REAL_TIME_FPS = 15.0
RECORD_GOAL_X = 4.0


def _expert_success(quick: bool) -> list[dict]:
    import gymnasium as gym

    from surgbot.sim.envs import ENV_IDS
    from surgbot.sim.envs.experts import make_expert, run_episode

    n = 5 if quick else 100
    out = []
    for task in TASKS:
        env = gym.make(ENV_IDS[task], images=False)
        expert = make_expert(env)
        t0 = time.perf_counter()
        results = [run_episode(env, seed, expert) for seed in range(n)]
        wall = time.perf_counter() - t0
        env.close()
        ok = sum(r["success"] for r in results)
        failed = [r["seed"] for r in results if not r["success"]]
        out.append(figure(f"data.expert_success.{task}", "%", value=100.0 * ok / n, higher_is_better=True,
                          anchor=95.0, anchor_source="issue 13 acceptance (>= 95% over 100 seeds)",
                          note=f"{ok}/{n} seeds 0..{n - 1}; failed seeds {failed[:10]}; "
                               f"mean episode {sum(r['elapsed_s'] for r in results) / n:.1f} s sim, "
                               f"{wall / n:.2f} s wall"))
    return out


def _env_speed(quick: bool) -> list[dict]:
    import gymnasium as gym

    from surgbot.sim.envs import ENV_IDS
    from surgbot.sim.envs.experts import make_expert

    steps = 60 if quick else 300
    rates = {}
    for images in (False, True):
        env = gym.make(ENV_IDS["needle_pick"], images=images)
        expert = make_expert(env)
        env.reset(seed=0)
        expert.reset()
        n, t0 = 0, time.perf_counter()
        while n < steps:
            *_, term, trunc, _ = env.step(expert.act())
            n += 1
            if term or trunc:
                env.reset(seed=n)
                expert.reset()
        rates[images] = n / (time.perf_counter() - t0)
        env.close()
    return [
        figure("data.env_steps_per_s.no_images", "steps/s", value=rates[False], higher_is_better=True,
               note="needle_pick, expert acting, 1 step = 1/15 s of physics"),
        figure("data.env_steps_per_s.images", "steps/s", value=rates[True], higher_is_better=True,
               baseline=rates[False], baseline_name="data.env_steps_per_s.no_images",
               note="with the 128x128 endoscope image (MuJoCo Renderer, same process)"),
    ]


def _recording(quick: bool) -> list[dict]:
    import lerobot.datasets.lerobot_dataset  # noqa: F401 - a one-time import, not recording time

    from surgbot.policies.data.cli import DEFAULT_WORKERS
    from surgbot.policies.data.record import record_expert

    episodes = 4 if quick else 12
    tmp = Path(tempfile.mkdtemp(prefix="surgbot_bench_data_"))
    try:
        base = record_expert("reach", episodes, tmp / "one", seed=0, image_size=(128, 128), progress=False)
        out = tmp / "reach"
        res = record_expert("reach", episodes, out, seed=0, image_size=(128, 128), progress=False,
                            workers=DEFAULT_WORKERS)
        size_mb = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1e6
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    x_real_time = res.frames_per_s / REAL_TIME_FPS
    return [
        figure("data.record_frames_per_s", "frames/s", value=res.frames_per_s, higher_is_better=True,
               anchor=RECORD_GOAL_X * REAL_TIME_FPS, anchor_source="issue 13 goal: >= 4x real time at 15 fps",
               note=f"reach, 128x128, {res.kept} episodes ({res.failed} failed), {res.frames} frames, "
                    f"{DEFAULT_WORKERS} worker processes (the default): {x_real_time:.1f}x real time; "
                    f"{res.frames_per_s / base.frames_per_s:.2f}x the 1-process run"),
        figure("data.record_frames_per_s_1_process", "frames/s", value=base.frames_per_s, higher_is_better=True,
               note=f"the same episodes in one process (rendering, LeRobot writing, AV1 encoding in turn): "
                    f"{base.frames_per_s / REAL_TIME_FPS:.1f}x real time"),
        figure("data.dataset_mb_per_episode", "MB", value=size_mb / max(res.kept, 1),
               note=f"{size_mb:.2f} MB for {res.kept} episodes of {res.frames / max(res.kept, 1):.0f} frames"),
    ]


def run(quick: bool = False) -> list[dict]:
    return _expert_success(quick) + _env_speed(quick) + _recording(quick)


if __name__ == "__main__":
    import argparse
    import json
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    figs = run(args.quick)
    for f in figs:
        print(f"{f['name']:>36}  {f.get('value', f.get('median')):9.2f} {f['unit']}  {f.get('note', '')}")
    if args.json:
        print(json.dumps([{k: v for k, v in f.items() if k != "raw"} for f in figs]))
