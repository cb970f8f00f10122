"""Expert demonstrations in the in-process environments -> LeRobotDataset v3.

Episode attempt k of a run uses seed `seed + k` (kept or not); a failed
expert episode is not written, only counted (and listed in
meta/surgbot.json).  Frames are (observation before the step, the action
taken from it), as LeRobot's own recorders store them.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
from tqdm import tqdm

from surgbot.errors import CliError
from surgbot.policies.data.dataset import DEFAULT_VCODEC, DatasetSession
from surgbot.sim.envs import ENV_IDS
from surgbot.sim.envs.experts import make_expert, run_episode

MAX_ATTEMPTS_FACTOR = 3          # give up after 3x the asked episodes (+ a few) attempts
MAX_ATTEMPTS_EXTRA = 5
LOG_PROGRESS_S = 20.0


@dataclass
class RecordResult:
    kept: int
    failed: int
    frames: int
    wall_s: float

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0


def record_expert(task: str, episodes: int, out: Path, seed: int = 0, image_size=(128, 128),
                  append: bool = False, progress: bool = True, each_target: bool = False,
                  vcodec: str = DEFAULT_VCODEC) -> RecordResult:
    """Record `episodes` successful expert episodes of `task` into `out` (see module doc).

    `each_target`: every layout seed is recorded once per colour it may name
    (reach: all three; peg_transfer: those far enough from the block), so the
    same image and start pose appear with different instructions and
    different motions: the data itself says that the instruction matters."""
    h, w = image_size
    env = gym.make(ENV_IDS[task], image_size=(h, w))
    expert = make_expert(env)
    frames_total = 0
    t0 = time.perf_counter()
    # on a terminal a live bar; into a log file a line every LOG_PROGRESS_S
    bar = tqdm(total=episodes, desc=f"record {task}", unit="ep", disable=not progress, dynamic_ncols=True,
               mininterval=0.1 if sys.stderr.isatty() else LOG_PROGRESS_S)
    try:
        with DatasetSession(out, append=append, height=h, width=w, task=task, source="expert",
                            vcodec=vcodec) as session:
            attempt = 0
            limit = MAX_ATTEMPTS_FACTOR * episodes + MAX_ATTEMPTS_EXTRA
            while session.kept < episodes:
                if attempt >= limit:
                    raise CliError(f"expert failed too often ({session.failed} of {attempt} episodes); "
                                   f"nothing written to {out}")
                ep_seed = seed + attempt
                attempt += 1
                targets: list[str | None] = [None]
                if each_target:
                    base = env.unwrapped
                    targets = list(base.task.target_choices(base.task.layout(ep_seed, base.geo.centre))) or [None]
                for target in targets:
                    if session.kept >= episodes:
                        break
                    frames: list[dict] = []

                    def keep(obs, action, info, frames=frames):
                        frames.append({"image": obs["image"], "state": obs["state"], "action": action,
                                       "task": info["instruction"]})

                    res = run_episode(env, ep_seed, expert, on_step=keep,
                                      options=None if target is None else {"target": target})
                    info = {"seed": ep_seed, "instruction": res["instruction"], "expert_elapsed_s": res["elapsed_s"]}
                    if res["success"]:
                        session.add_episode(frames, info)
                        frames_total += len(frames)
                        bar.update(1)
                    else:
                        session.add_failure({**info, "reason": res["failure"] or "horizon reached"})
                    bar.set_postfix(failed=session.failed,
                                    fps=f"{frames_total / (time.perf_counter() - t0):.1f}")
            kept, failed = session.kept, session.failed
    finally:
        bar.close()
        env.close()
    return RecordResult(kept=kept, failed=failed, frames=frames_total, wall_s=time.perf_counter() - t0)
