"""`surgbot policy eval --ros`: episodes through the deployment path.

Processes (the command lines `surgbot up` / the launch files use, from
`surgbot.stack`): one policy server (`surgbot policy serve`) and one
`policy_node` for the whole run, and per seed a fresh `sim_node` with the
task laid out by that seed (the MuJoCo twin: PSM over CRTK, endoscope camera,
`/sim/task` judging success from physics) and its `safety_supervisor`.  This process is only the
operator: per episode it enables and homes the PSM over CRTK, moves the tool
to the episode's start pose with `move_cp` (the pose the environment starts
the arm in, so in-process and ROS episodes start alike), sends the
instruction on `/policy/instruction`, calls `/policy/enable`, and watches
`/sim/task` until success, failure or the task's horizon (sim time, measured
by `/sim/task`'s `elapsed_s`).  Everything it started is stopped at the end,
also on errors and Ctrl-C.

The DDS domains are the caller's: `ROS_DOMAIN_ID` and `SURGBOT_G1_DOMAIN`
(tests pick private ones).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from sensor_msgs.msg import Image
from std_msgs.msg import String
from std_srvs.srv import SetBool

from surgbot import contract, processes
from surgbot.geometry import matrix_from_pose10
from surgbot.hw.crtk import PSMClient
from surgbot.hw.policy_client import PolicyClient, PolicyServerError, PolicyTimeout
from surgbot.policies.evaluation.harness import EpisodeResult, PolicyLoadError, checkpoint_type, summarise
from surgbot.policies.evaluation.video import EpisodeVideo
from surgbot.rosutil import BackgroundSpinner, latched_qos
from surgbot.sim.envs.surg_env import SurgEnv
from surgbot.sim.tasks import get_task
from surgbot.stack import POLICY_NODE, POLICY_SERVER, SIM, SUPERVISOR, StackOptions
from surgbot.up import node_argv

SERVER_START_S = 120.0          # loading torch + the checkpoint on a loaded 2-core machine
NODE_START_S = 60.0
SIM_START_S = 90.0
MOVE_S = 30.0
HORIZON_SLACK_S = 60.0          # wall time beyond the horizon before an episode is abandoned
POLL_S = 0.05
REPUBLISH_S = 0.3
STOP_TIMEOUT_S = 10.0
LOG_TAIL_CHARS = 1500


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
    except OSError:
        return "(no log)"


class _Procs:
    """Processes this run started, each with its log; stopped in reverse order."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.running: list[tuple[subprocess.Popen, Path]] = []

    def start(self, name: str, argv: list[str]) -> tuple[subprocess.Popen, Path]:
        log = self.log_dir / f"{name}.log"
        with open(log, "ab") as out:
            proc = processes.start(argv, stdout=out, stderr=subprocess.STDOUT)
        self.running.append((proc, log))
        return proc, log

    def stop(self, proc: subprocess.Popen) -> None:
        processes.stop(proc, signal.SIGINT, STOP_TIMEOUT_S)
        self.running = [(p, lg) for p, lg in self.running if p is not proc]

    def stop_all(self) -> None:
        for proc, _ in reversed(self.running):
            processes.stop(proc, signal.SIGINT, STOP_TIMEOUT_S)
        self.running = []


def start_pose(task: str, seed: int) -> np.ndarray:
    """The 10-d tool pose (PSM1_base) the environment starts episode `seed` in (state-only env)."""
    env = SurgEnv(task, images=False)
    try:
        obs, _ = env.reset(seed=int(seed))
    finally:
        env.close()
    return np.asarray(obs["state"], np.float64)


class _Operator:
    """The rclpy side of one episode: CRTK client, /sim/task, /policy/* (fresh node per episode)."""

    def __init__(self, name: str, video: EpisodeVideo | None):
        self.node = rclpy.create_node(name)
        self.task: dict | None = None
        self.policy_state: dict | None = None
        self.video = video
        self.recording = False
        self._lock = threading.Lock()
        self.node.create_subscription(String, contract.SIM_TASK, self._on_task, 10)
        self.node.create_subscription(String, "/policy/state", self._on_state, latched_qos())
        if video is not None:
            self.node.create_subscription(Image, contract.ENDOSCOPE_IMAGE, self._on_image, 2)
        self.instruction_pub = self.node.create_publisher(String, "/policy/instruction", 10)
        self.enable_client = self.node.create_client(SetBool, "/policy/enable")
        self.arm = PSMClient(self.node)
        self.spinner = BackgroundSpinner(self._executor())

    def _executor(self) -> SingleThreadedExecutor:
        ex = SingleThreadedExecutor()
        ex.add_node(self.node)
        return ex

    def _on_task(self, msg) -> None:
        try:
            self.task = json.loads(msg.data)
        except ValueError:
            pass

    def _on_state(self, msg) -> None:
        try:
            self.policy_state = json.loads(msg.data)
        except ValueError:
            pass

    def _on_image(self, msg) -> None:
        if not self.recording or msg.encoding != "rgb8":
            return
        img = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.width, 3)
        t = self.task or {}
        with self._lock:
            self.video.add(img, t.get("instruction", ""), float(t.get("elapsed_s", 0.0)),
                           (self.policy_state or {}).get("state", ""), bool(t.get("success")))

    def enable_policy(self, on: bool, timeout_s: float = 10.0) -> None:
        if not self.enable_client.wait_for_service(timeout_sec=timeout_s):
            raise RuntimeError("/policy/enable not available")
        fut = self.enable_client.call_async(SetBool.Request(data=on))
        t0 = time.monotonic()
        while not fut.done():
            if time.monotonic() - t0 > timeout_s:
                raise RuntimeError("/policy/enable did not answer")
            time.sleep(POLL_S)
        res = fut.result()
        if not res.success:
            raise RuntimeError(f"/policy/enable {on}: {res.message}")

    def wait(self, predicate, timeout_s: float, what: str) -> None:
        t0 = time.monotonic()
        while not predicate():
            if time.monotonic() - t0 > timeout_s:
                raise TimeoutError(f"no {what} within {timeout_s:.0f} s")
            time.sleep(POLL_S)

    def close(self) -> None:
        self.spinner.stop()
        self.arm.close()
        self.node.destroy_node()


def _episode(procs: _Procs, task: str, seed: int, arguments: dict, video_dir: Path | None) -> EpisodeResult:
    t_wall = time.perf_counter()
    horizon = get_task(task).horizon_s
    argv = node_argv(SIM, arguments) + ["-p", f"seed:={int(seed)}"]
    sim, sim_log = procs.start(f"sim_node_{seed}", argv)
    # the deployment path has its safety supervisor (the policy node commands nothing without its
    # /safety/state); one per episode, as the sim: a supervisor that outlived its sim would hold the
    # lost twin as a FAULT for the next episode
    supervisor, _ = procs.start(f"safety_supervisor_{seed}", node_argv(SUPERVISOR, arguments))
    video = EpisodeVideo(video_dir / f"{task}_seed{seed}_ros.mp4") if video_dir is not None else None
    op = _Operator(f"policy_eval_{seed}", video)
    try:
        try:
            op.wait(lambda: op.task is not None and op.task.get("seed") == seed, SIM_START_S, "/sim/task")
            op.arm.wait_for_state(SIM_START_S)
            st = op.arm.operating_state()
            if not (st["state"] == "ENABLED" and st["is_homed"]):
                op.arm.home(MOVE_S)
            T, jaw = matrix_from_pose10(start_pose(task, seed))
            # one move at a time: a move_cp sent while the jaw's move_jp runs interrupts it, and the
            # jaw's goal_reached false then answered the move_cp's wait (this check failed every run)
            if not op.arm.jaw.move_jp(jaw).wait(MOVE_S):
                raise RuntimeError(f"jaw move_jp to the start failed: {op.arm.errors[-1:]}")
            if not op.arm.move_cp(T).wait(MOVE_S):
                raise RuntimeError(f"move_cp to the start pose failed: {op.arm.errors[-1:]}")
        except (TimeoutError, RuntimeError) as exc:
            raise RuntimeError(f"seed {seed}: the sim did not come up ({exc}); sim log:\n{_tail(sim_log)}") from exc
        instruction = op.task["instruction"]

        def taken() -> bool:      # published until the node reports it (discovery may drop the first)
            if (op.policy_state or {}).get("instruction") == instruction:
                return True
            op.instruction_pub.publish(String(data=instruction))
            time.sleep(REPUBLISH_S)
            return False
        op.wait(taken, NODE_START_S, "policy_node taking the instruction")
        before = dict((op.policy_state or {}).get("gate_rejections", {}))
        t0_sim = float(op.task["elapsed_s"])
        op.recording = True
        op.enable_policy(True)
        deadline = time.monotonic() + horizon + HORIZON_SLACK_S
        failure = ""
        while True:
            t = op.task
            if t.get("success"):
                break
            if t.get("failure"):
                failure = t["failure"]
                break
            if float(t["elapsed_s"]) - t0_sim >= horizon:
                failure = "horizon reached"
                break
            if time.monotonic() > deadline:
                failure = "wall-clock timeout (sim far slower than real time)"
                break
            if sim.poll() is not None:
                failure = f"sim exited with code {sim.returncode}"
                break
            time.sleep(POLL_S)
        op.enable_policy(False)
        op.recording = False
        t = op.task
        after = (op.policy_state or {}).get("gate_rejections", {})
        rejections = {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0) > 0}
        elapsed = float(t["elapsed_s"]) - t0_sim
        return EpisodeResult(seed=seed, success=bool(t.get("success")), steps=int(round(elapsed * 15)),
                             elapsed_s=elapsed, wall_s=time.perf_counter() - t_wall, instruction=instruction,
                             failure="" if t.get("success") else failure, gate_rejections=rejections,
                             video=str(video.path) if video is not None else None)
    finally:
        op.recording = False
        op.close()
        if video is not None:
            video.close()
        procs.stop(supervisor)
        procs.stop(sim)


def evaluate_ros(checkpoint: str, task: str, episodes: int, seed: int, video_dir: Path | None = None,
                 progress=None, log_dir: Path | None = None) -> dict:
    """`episodes` seeded episodes through sim twin + policy server + policy_node; the summary dict."""
    from surgbot.policies.vla.runtime import CheckpointError, resolve_checkpoint

    get_task(task)
    try:
        path = resolve_checkpoint(checkpoint)
    except CheckpointError as exc:
        raise PolicyLoadError(str(exc)) from None
    checkpoint_type(path)     # another action size: one line, before anything starts
    log_dir = Path(log_dir or tempfile.mkdtemp(prefix="surgbot-eval-ros-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    opts = StackOptions(task=task, policy_checkpoint=str(path), policy_port=port,
                        g1_domain=int(os.environ.get("SURGBOT_G1_DOMAIN", contract.G1_SIM_DOMAIN)))
    arguments = opts.launch_arguments()
    procs = _Procs(log_dir)
    rclpy.init()
    client = PolicyClient("127.0.0.1", port, timeout_s=2.0)
    results: list[EpisodeResult] = []
    t0 = time.perf_counter()
    try:
        server, server_log = procs.start("policy_server", node_argv(POLICY_SERVER, arguments))
        deadline = time.monotonic() + SERVER_START_S
        metadata = None
        while metadata is None:
            if server.poll() is not None:
                raise PolicyLoadError(f"the policy server exited: {_tail(server_log).strip().splitlines()[-1:]}")
            try:
                metadata = client.metadata()
            except (PolicyTimeout, PolicyServerError, OSError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"policy server not answering after {SERVER_START_S:.0f} s:\n"
                                       f"{_tail(server_log)}") from None
        procs.start("policy_node", node_argv(POLICY_NODE, arguments))
        for i in range(episodes):
            r = _episode(procs, task, seed + i, arguments, video_dir)
            results.append(r)
            if progress is not None:
                progress(r, results)
    finally:
        client.close()
        procs.stop_all()
        rclpy.try_shutdown()
    summary = summarise(task, seed, results, metadata, "ros", time.perf_counter() - t0)
    summary["log_dir"] = str(log_dir)
    return summary
