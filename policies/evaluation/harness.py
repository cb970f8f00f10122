"""Closed-loop evaluation of a chunk policy in the Gymnasium environments (`surgbot policy eval`).

Each episode runs the task's environment in this process and drives it
through the SAME execution core the `policy_node` uses
(`surgbot.control.policy_exec.PolicyExecutor`: chunk scheduling, blending,
safety gate), with the node's config defaults, so what is measured here is
what the deployed node does minus ROS transport:

* the clock is the simulation's: control tick k happens at k / 15 s;
* at a tick where the core asks for a chunk, the observation of that tick
  (the rendered endoscope image and the measured 10-d state) goes to the
  policy; the chunk is handed to the core before the next tick, as the node
  hands over a chunk that came back within one control period (inference
  here takes a few ms, the period is 67 ms);
* the command the gate lets through is the environment's action (one
  `servo_cp` + jaw `servo_jp`); while the core holds with nothing commanded
  yet, the arm is held at its start setpoint (the node publishes nothing
  then and the PSM keeps its setpoint);
* a policy error (exception) is reported to the core as a server error (the arm holds); an episode whose
  every call raised fails with "policy error: ..." and `policy_errors` counts them.

Deterministic: episode i uses layout seed `seed + i`; the result depends
only on the checkpoint, the task and the seeds.

The policy is anything with the `ChunkPolicy` shape: our SurgVLA runtime, or
LeRobot's ACT / Diffusion through `surgbot.policies.evaluation.lerobot_adapter`.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import gymnasium as gym
import numpy as np

from surgbot.control.policy_exec import PolicyExecConfig, PolicyExecutor
from surgbot.policies.evaluation.video import EpisodeVideo
from surgbot.sim.envs import ENV_IDS
from surgbot.sim.envs.scene_state import scene_vector
from surgbot.sim.envs.surg_env import CONTROL_HZ, DEFAULT_IMAGE_SIZE
from surgbot.sim.tasks import get_task

POSE_DIM = 10
WILSON_Z95 = 1.959964
TRAINING_SEED_LIMIT = 10000       # recording/training seeds are 0-9999 (project seed convention)
EVAL_SEED_START = 100000          # evaluation seeds (never used for training)


class PolicyLoadError(ValueError):
    """A checkpoint that cannot be evaluated (missing, unknown type, another action size)."""


@runtime_checkable
class ChunkPolicy(Protocol):
    """What the harness needs from a policy: image + state + instruction -> [H, 10] absolute actions."""

    metadata: dict     # at least "image_size": [h, w]; also model, checkpoint_id, action_horizon

    def reset(self) -> None: ...

    def infer(self, image: np.ndarray, state: np.ndarray, instruction: str) -> np.ndarray: ...


class SurgVLAChunkPolicy:
    """Our runtime (`surgbot.policies.vla.runtime.PolicyRuntime`) as a ChunkPolicy."""

    def __init__(self, checkpoint: str | Path, device: str = "cpu"):
        from surgbot.policies.vla.runtime import PolicyRuntime  # torch: only when a surgvla is evaluated

        self.runtime = PolicyRuntime(checkpoint, device=device)
        self.metadata = self.runtime.metadata()
        self.infer_ms: list[float] = []

    def reset(self) -> None:
        self.runtime.reset()

    def infer(self, image: np.ndarray, state: np.ndarray, instruction: str,
              environment_state: np.ndarray | None = None) -> np.ndarray:
        actions, ms = self.runtime.infer(image, state, instruction, environment_state)
        self.infer_ms.append(ms)
        return actions


def checkpoint_type(path: Path) -> str:
    """The `type` of a checkpoint's config.json, after checking it is made for 10-d actions."""
    try:
        cfg = json.loads((path / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise PolicyLoadError(f"{path / 'config.json'}: unreadable ({type(exc).__name__}: {exc})") from None
    kind = cfg.get("type")
    if not isinstance(kind, str):
        raise PolicyLoadError(f"{path / 'config.json'} names no policy type")
    action = (cfg.get("output_features") or {}).get("action") or {}
    shape = action.get("shape")
    if shape is not None and list(shape) != [POSE_DIM]:
        raise PolicyLoadError(f"{path}: a checkpoint for {list(shape)} actions; this stack uses [{POSE_DIM}] "
                              "(contract section 7)")
    return kind


def load_chunk_policy(spec: str | Path, device: str = "cpu") -> ChunkPolicy:
    """`default`, a pretrained_model folder or a training output folder -> a ChunkPolicy (by config type)."""
    from surgbot.policies.vla.runtime import CheckpointError, resolve_checkpoint

    try:
        path = resolve_checkpoint(spec)
    except CheckpointError as exc:
        raise PolicyLoadError(str(exc)) from None
    kind = checkpoint_type(path)
    try:
        if kind == "surgvla":
            return SurgVLAChunkPolicy(path, device=device)
    except CheckpointError as exc:
        raise PolicyLoadError(str(exc)) from None
    if kind in ("act", "diffusion"):
        try:
            from surgbot.policies.evaluation.lerobot_adapter import LeRobotChunkPolicy
        except ModuleNotFoundError as exc:
            raise PolicyLoadError(f"{path}: a '{kind}' checkpoint needs surgbot.policies.evaluation."
                                  f"lerobot_adapter, which is not installed ({exc.name})") from None
        try:
            return LeRobotChunkPolicy(path, device=device)
        except ValueError as exc:      # the adapter's AdapterError: one line
            raise PolicyLoadError(str(exc)) from None
    raise PolicyLoadError(f"{path}: policy type '{kind}' is not supported (surgvla, act, diffusion)")


def wilson_interval(successes: int, n: int, z: float = WILSON_Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95 % by default)."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class EpisodeResult:
    seed: int
    success: bool
    steps: int
    elapsed_s: float             # simulated time of the episode
    wall_s: float
    instruction: str
    failure: str = ""
    gate_rejections: dict = field(default_factory=dict)
    infer_calls: int = 0
    policy_errors: int = 0       # infer calls that raised (the core held, as for a server error)
    env_rejected: int = 0        # poses the PSM core refused (unreachable)
    video: str | None = None


def run_episode(env, policy: ChunkPolicy, seed: int, exec_config: PolicyExecConfig | None = None,
                video: EpisodeVideo | None = None, target: str | None = None) -> EpisodeResult:
    """One closed-loop episode of `policy` on `env` (see module doc).

    `target`: the same layout naming another colour (`Task.retarget`), e.g. to
    check that the instruction, not the scene, decides where the arm goes."""
    t_wall = time.perf_counter()
    obs, info = env.reset(seed=int(seed), options=None if target is None else {"target": target})
    text = info["instruction"]
    # a policy trained with the scene input gets the simulator's summary of the layout as reset left it
    # (what training gave it); others are called as the ChunkPolicy protocol says
    extra = {"environment_state": scene_vector(env)} if policy.metadata.get("environment_state_dim") else {}
    policy.reset()
    core = PolicyExecutor(exec_config or PolicyExecConfig())
    dt = 1.0 / CONTROL_HZ
    core.set_instruction(text)
    core.on_measured(obs["state"], 0.0)
    ok = core.enable(True)
    if not ok:
        raise ValueError(f"cannot enable the policy core: {ok.reason}")
    hold = np.asarray(obs["state"], np.float64)       # the arm's setpoint until something is commanded
    steps, calls, errors, last_error = 0, 0, 0, ""
    if video is not None:
        video.add(obs["image"], text, 0.0, core.state.value)
    while True:
        now = steps * dt
        out = core.tick(now)
        command = out.command if out.command is not None else hold
        if out.request_chunk and core.measured is not None:
            core.observation_taken(now)
            try:
                actions = policy.infer(obs["image"], core.measured.astype(np.float32), text, **extra)
            except Exception as exc:  # noqa: BLE001 - any policy failure is a server error to the core
                last_error = f"{type(exc).__name__}: {exc}"
                errors += 1
                core.on_server_error(last_error)
            else:
                calls += 1
                core.on_chunk(actions, core.tick_index, now)
        hold = np.asarray(command, np.float64)
        obs, _, terminated, truncated, info = env.step(command.astype(np.float32))
        steps += 1
        core.on_measured(obs["state"], steps * dt)
        if video is not None:
            video.add(obs["image"], text, steps * dt, core.state.value, info["success"])
        if terminated or truncated:
            break
    failure = "" if info["success"] else (info["failure"] or ("PSM FAULT" if info["fault"] else "horizon reached"))
    if failure and errors and not calls:      # the arm held all along: say why, not only that time ran out
        failure = f"policy error: {last_error}"
    return EpisodeResult(seed=int(seed), success=bool(info["success"]), steps=steps,
                         elapsed_s=float(info["elapsed_s"]), wall_s=time.perf_counter() - t_wall,
                         instruction=text, failure=failure,
                         gate_rejections=dict(core.rejections), infer_calls=calls, policy_errors=errors,
                         env_rejected=int(info["rejected"]))


def make_env(task: str, policy: ChunkPolicy):
    """The task's environment rendering at the policy's image size."""
    size = tuple(int(v) for v in policy.metadata.get("image_size") or DEFAULT_IMAGE_SIZE)
    return gym.make(ENV_IDS[get_task(task).name], render_mode="rgb_array", image_size=size)


def summarise(task: str, seed: int, results: list[EpisodeResult], meta: dict, mode: str, wall_s: float) -> dict:
    """The JSON of `surgbot policy eval` (meta: the policy's metadata)."""
    n = len(results)
    wins = sum(r.success for r in results)
    lo, hi = wilson_interval(wins, n)
    return {
        "task": task, "episodes": n, "seed": int(seed), "seeds": [r.seed for r in results],
        "successes": wins, "success_rate": wins / n if n else 0.0, "wilson95": [lo, hi],
        "mode": mode, "model": meta.get("model"), "checkpoint": meta.get("checkpoint"),
        "checkpoint_id": meta.get("checkpoint_id"), "wall_s": wall_s,
        "results": [asdict(r) for r in results],
    }


def evaluate(policy: ChunkPolicy, task: str, episodes: int, seed: int, video_dir: Path | None = None,
             exec_config: PolicyExecConfig | None = None, progress=None, env=None,
             target: str | None = None) -> dict:
    """`episodes` seeded episodes in-process; the summary dict (`surgbot policy eval`'s JSON).

    `env`: an environment of `task` to run in (closed here too); default one made for the policy.
    `target`: every layout names this colour instead of its own (`Task.retarget`; ValueError where
    a layout does not allow it): the same scenes told something else, for the language check."""
    get_task(task)
    env = env if env is not None else make_env(task, policy)
    results: list[EpisodeResult] = []
    t0 = time.perf_counter()
    try:
        for i in range(episodes):
            s = seed + i
            video = EpisodeVideo(video_dir / f"{task}_seed{s}.mp4") if video_dir is not None else None
            try:
                r = run_episode(env, policy, s, exec_config, video, target=target)
            finally:
                if video is not None:
                    video.close()
            if video is not None:
                r.video = str(video.path)
            results.append(r)
            if progress is not None:
                progress(r, results)
    finally:
        env.close()
    summary = summarise(task, seed, results, policy.metadata, "inprocess", time.perf_counter() - t0)
    summary["target"] = target
    return summary
