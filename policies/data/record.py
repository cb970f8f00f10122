"""Expert demonstrations in the in-process environments -> LeRobotDataset v3.

Episode attempt k of a run uses seed `seed + k` (kept or not); a failed
expert episode is not written, only counted (and listed in
meta/surgbot.json).  Frames are (observation before the step, the action
taken from it), as LeRobot's own recorders store them.

With `workers` > 1 the episodes are simulated and rendered in that many
worker processes (each with its own environment; rendering with osmesa is
the cost) while this process writes the dataset (LeRobot's video encoding).
The dataset is the same as with one worker: attempts are consumed in seed
order and the first `episodes` successes are kept.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.util
import signal
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
from tqdm import tqdm

from surgbot.errors import CliError
from surgbot.policies.data.dataset import DatasetSession
from surgbot.sim.envs import ENV_IDS
from surgbot.sim.envs.experts import make_expert, run_episode
from surgbot.sim.envs.perturbation import check_perturb_mm
from surgbot.sim.tasks import get_task

# A kept episode goes on for this long after the success (the expert's plan ends with a dwell), so
# demonstrations show arriving and staying; see `surgbot.sim.envs.experts.run_episode`.
DEFAULT_SUCCESS_TAIL_S = 1.0
MAX_SUCCESS_TAIL_S = 5.0
MAX_ATTEMPTS_FACTOR = 3          # give up after 3x the asked episodes (+ a few) attempts
MAX_ATTEMPTS_EXTRA = 5


@dataclass
class RecordResult:
    kept: int
    failed: int
    frames: int
    wall_s: float

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0


class _EpisodeRunner:
    """One environment + expert; `__call__(seed)` -> (episode result, frames)."""

    def __init__(self, task: str, image_size: tuple[int, int], success_tail_s: float, perturb_mm: float):
        self.env = gym.make(ENV_IDS[task], image_size=image_size)
        self.expert = make_expert(self.env)
        self.success_tail_s = success_tail_s
        self.perturb_mm = perturb_mm

    def __call__(self, job: tuple[int, str | None]) -> tuple[dict, list[dict]]:
        ep_seed, target = job
        frames: list[dict] = []

        def keep(obs, action, info):
            frames.append({"image": obs["image"], "state": obs["state"], "action": action,
                           "task": info["instruction"]})

        options = None if target is None else {"target": target}
        return run_episode(self.env, ep_seed, self.expert, on_step=keep, options=options,
                           success_tail_s=self.success_tail_s, perturb_mm=self.perturb_mm), frames

    def close(self) -> None:
        self.env.close()


_WORKER: _EpisodeRunner | None = None       # one per worker process


def _worker_init(task: str, image_size: tuple[int, int], success_tail_s: float, perturb_mm: float) -> None:
    global _WORKER
    # Ctrl-C reaches the whole process group: only the writer handles it (and shuts the pool
    # down); a worker printing its own KeyboardInterrupt would bury the one-line error.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _WORKER = _EpisodeRunner(task, image_size, success_tail_s, perturb_mm)
    # Close the renderer while the interpreter is whole: MuJoCo's Renderer.__del__ during
    # interpreter teardown prints an osmesa traceback into the user's terminal.
    multiprocessing.util.Finalize(_WORKER, _WORKER.close, exitpriority=10)


def _worker_episode(job: tuple[int, str | None]) -> tuple[dict, list[dict]]:
    return _WORKER(job)


def _jobs(task: str, seed: int, each_target: bool):
    """(layout seed, colour or None) in recording order: seeds seed, seed+1, ...; with `each_target` every
    seed once per colour its layout may name (relative placements, hence the choices, do not depend on
    where the task centre is)."""
    t = get_task(task)
    k = 0
    while True:
        s = seed + k
        colours = t.target_choices(t.layout(s, np.zeros(2))) if each_target else ()
        for c in colours or (None,):
            yield s, c
        k += 1


def _episodes_in_order(task: str, image_size, seed: int, workers: int, each_target: bool = False,
                       success_tail_s: float = DEFAULT_SUCCESS_TAIL_S, perturb_mm: float = 0.0):
    """Yields (seed, result, frames) for the jobs of `_jobs` in order, from `workers` processes."""
    jobs = _jobs(task, seed, each_target)
    if workers <= 1:
        runner = _EpisodeRunner(task, image_size, success_tail_s, perturb_mm)
        try:
            for job in jobs:
                yield (job[0], *runner(job))
        finally:
            runner.close()
        return
    # spawn: a clean interpreter per worker (no forked GL or thread state)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init,
                             initargs=(task, image_size, success_tail_s, perturb_mm)) as pool:
        pending: deque = deque()
        try:
            while True:
                while len(pending) < 2 * workers:
                    job = next(jobs)
                    pending.append((job[0], pool.submit(_worker_episode, job)))
                ep_seed, fut = pending.popleft()
                yield (ep_seed, *fut.result())
        finally:
            for _, fut in pending:
                fut.cancel()


def record_expert(task: str, episodes: int, out: Path, seed: int = 0, image_size=(128, 128),
                  append: bool = False, progress: bool = True, workers: int = 1,
                  each_target: bool = False, success_tail_s: float = DEFAULT_SUCCESS_TAIL_S,
                  perturb_mm: float = 0.0) -> RecordResult:
    """Record `episodes` successful expert episodes of `task` into `out` (see module doc).

    `each_target`: every layout seed is recorded once per colour it may name
    (reach: all three; peg_transfer: those far enough from the block), so the
    same image and start pose appear with different instructions and
    different motions: the data itself says that the instruction matters.
    `success_tail_s`: frames kept after the success (see DEFAULT_SUCCESS_TAIL_S).
    `perturb_mm`: DART, the executed commands pushed off the plan by up to
    this much, the intended ones recorded (`surgbot.sim.envs.perturbation`)."""
    if not (np.isfinite(success_tail_s) and 0.0 <= success_tail_s <= MAX_SUCCESS_TAIL_S):
        raise CliError(f"--success-tail-s must be in [0, {MAX_SUCCESS_TAIL_S:g}] s, got {success_tail_s}")
    try:
        check_perturb_mm(perturb_mm)
    except ValueError as exc:
        raise CliError(f"--perturb-mm: {exc}") from None
    h, w = image_size
    frames_total = 0
    t0 = time.perf_counter()
    bar = tqdm(total=episodes, desc=f"record {task}", unit="ep", disable=not progress, dynamic_ncols=True)
    episodes_iter = _episodes_in_order(task, (h, w), seed, workers, each_target, success_tail_s, perturb_mm)
    try:
        with DatasetSession(out, append=append, height=h, width=w, task=task, source="expert") as session:
            attempt = 0
            limit = MAX_ATTEMPTS_FACTOR * episodes + MAX_ATTEMPTS_EXTRA
            while session.kept < episodes:
                if attempt >= limit:
                    raise CliError(f"expert failed too often ({session.failed} of {attempt} episodes); "
                                   f"nothing written to {out}")
                ep_seed, res, frames = next(episodes_iter)
                attempt += 1
                info = {"seed": ep_seed, "target": res["target"], "instruction": res["instruction"],
                        "expert_elapsed_s": res["elapsed_s"],
                        "success_tail_s": success_tail_s, "perturb_mm": perturb_mm,
                        "perturb_bumps": res["perturb_bumps"], "perturb_peak_mm": res["perturb_peak_mm"]}
                if res["success"]:
                    session.add_episode(frames, info)
                    frames_total += len(frames)
                    bar.update(1)
                else:
                    session.add_failure({**info, "reason": res["failure"] or "horizon reached"})
                bar.set_postfix(failed=session.failed, fps=f"{frames_total / (time.perf_counter() - t0):.1f}")
            kept, failed = session.kept, session.failed
    finally:
        bar.close()
        episodes_iter.close()
    return RecordResult(kept=kept, failed=failed, frames=frames_total, wall_s=time.perf_counter() - t0)
