"""Live ROS topics -> LeRobotDataset v3 (`surgbot data record --source ros`).

Records whatever drives the PSM (a teleop session, a policy, a script over
CRTK) on the running twin or the real robots (contract sections 5, 3, 10):
* image: `/endoscope/image_raw` (rgb8), resized to the dataset's size;
* state: `/PSM1/measured_cp` + `/PSM1/jaw/measured_js`;
* action: the latest commanded `/PSM1/servo_cp` + `/PSM1/jaw/servo_jp`
  (the measured pose / jaw until something is commanded);
* instruction: `/sim/task` ("instruction") or `/policy/instruction`, else the task name;
sampled at 15 Hz (sample-and-hold) by `LiveSampler` (ROS-free: latest
samples in, frames out).
Episodes are cut with the services `/recorder/episode/start`, `/stop`
(keep the episode) and `/discard` (std_srvs/Trigger); discarded episodes
are counted, not written.  The command returns once `episodes` are kept.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np

from surgbot import contract
from surgbot.errors import CliError
from surgbot.geometry import pose10_from_matrix, pose_msg_to_matrix
from surgbot.policies.data.dataset import FPS, DatasetSession
from surgbot.policies.data.record import RecordResult
from surgbot.results import Result

EPISODE_START = contract.RECORDER_EPISODE_START
EPISODE_STOP = contract.RECORDER_EPISODE_STOP
EPISODE_DISCARD = contract.RECORDER_EPISODE_DISCARD
POLICY_INSTRUCTION = "/policy/instruction"
STALE_S = 0.5                    # a state or image older than this is not sampled


class LiveSampler:
    """Latest samples in, 15 Hz frames out, episodes cut by start/stop/discard (clock passed in)."""

    def __init__(self, task: str, height: int, width: int):
        self.task = task
        self.size = (height, width)
        self.lock = threading.Lock()
        self.image: tuple[float, np.ndarray] | None = None
        self.pose: tuple[float, np.ndarray] | None = None
        self.jaw: tuple[float, float] | None = None
        self.cmd_pose: np.ndarray | None = None
        self.cmd_jaw: float | None = None
        self.instruction = ""
        self.recording = False
        self.frames: list[dict] = []
        self.finished: list[tuple[str, list[dict]]] = []   # ("keep" | "discard", frames)
        self.skipped = 0
        self.t_start: float | None = None
        self.held = 0

    # ------------------------------------------------------------- inputs
    def on_image(self, t: float, rgb: np.ndarray) -> None:
        h, w = self.size
        if rgb.shape[:2] != (h, w):
            from PIL import Image
            rgb = np.asarray(Image.fromarray(rgb).resize((w, h), Image.BILINEAR))
        with self.lock:
            self.image = (t, rgb)

    def on_pose(self, t: float, T: np.ndarray) -> None:
        with self.lock:
            self.pose = (t, T)

    def on_jaw(self, t: float, jaw: float) -> None:
        with self.lock:
            self.jaw = (t, float(jaw))

    def on_command_pose(self, T: np.ndarray) -> None:
        with self.lock:
            self.cmd_pose = T

    def on_command_jaw(self, jaw: float) -> None:
        with self.lock:
            self.cmd_jaw = float(jaw)

    def on_instruction(self, text: str) -> None:
        with self.lock:
            self.instruction = text

    # ------------------------------------------------------------ episodes
    def start(self, now: float) -> Result:
        """Start an episode at `now`: frame 0 is the state at the start, not at the next tick."""
        with self.lock:
            if self.recording:
                return Result(False, "an episode is already being recorded")
            if self.image is None or self.pose is None:
                return Result(False, "no image or /PSM1/measured_cp yet")
            self.recording, self.frames, self.t_start, self.held = True, [], None, 0
            self.cmd_pose, self.cmd_jaw = None, None      # actions come from this episode's commands
            self._sample_locked(now)
        return Result(True, "recording")

    def stop(self, keep: bool, now: float) -> Result:
        """End the episode at `now`: the slots due since the last tick are filled first, so an
        episode spans start..stop whatever the timer's phase (floor(15 * duration) + 1 frames)."""
        with self.lock:
            if not self.recording:
                return Result(False, "no episode is being recorded")
            self._sample_locked(now)
            self.recording = False
            frames, self.frames = self.frames, []
            # one instruction per episode: the latest known (/sim/task comes at 2 Hz, maybe after the start)
            text = self.instruction or self.task
            frames = [{**f, "task": text} for f in frames]
        if keep and not frames:
            return Result(False, "episode has no frames; discarded")
        self.finished.append(("keep" if keep else "discard", frames))
        return Result(True, f"{'kept' if keep else 'discarded'} {len(frames)} frames")

    def sample(self, now: float) -> int:
        """Frames due by `now` (one per 1/15 s since the episode started); returns how many were added.

        Sample-and-hold: when a tick comes late (a busy machine), the missed
        slots get the latest samples, so frame k is always the state at
        about k/15 s (LeRobot's timestamps are k/fps); `held` counts them.
        Stale inputs (no message for STALE_S) add nothing and are counted."""
        with self.lock:
            return self._sample_locked(now)

    def _sample_locked(self, now: float) -> int:
        if not self.recording:
            return 0
        if self.image is None or self.pose is None or now - self.image[0] > STALE_S \
                or now - self.pose[0] > STALE_S:
            self.skipped += 1
            return 0
        if self.t_start is None:
            self.t_start = now
        due = int((now - self.t_start) * FPS + 1e-9) + 1
        T, jaw = self.pose[1], (self.jaw[1] if self.jaw else 0.0)
        action_T = self.cmd_pose if self.cmd_pose is not None else T
        action_jaw = self.cmd_jaw if self.cmd_jaw is not None else jaw
        frame = {"image": self.image[1], "state": pose10_from_matrix(T, jaw),
                 "action": pose10_from_matrix(action_T, action_jaw),
                 "task": self.instruction or self.task}
        added = max(due - len(self.frames), 0)
        self.held += max(added - 1, 0)
        self.frames.extend([frame] * added)
        return added


class _RosWiring:
    """rclpy node wiring the topics and services to a `LiveSampler` (spun by the caller's thread)."""

    def __init__(self, sampler: LiveSampler):
        import rclpy
        from geometry_msgs.msg import PoseStamped
        from sensor_msgs.msg import Image, JointState
        from std_msgs.msg import String
        from std_srvs.srv import Trigger

        from surgbot.contract import ENDOSCOPE_IMAGE, SIM_TASK, psm_topic
        from surgbot.rosutil import trigger_handler

        self.context = rclpy.Context()
        rclpy.init(args=[], context=self.context)
        self.node = rclpy.create_node("surgbot_data_recorder", context=self.context)
        self.sampler = s = sampler
        clock = time.monotonic
        n = self.node

        def image(msg):
            if msg.encoding != "rgb8":
                return
            rgb = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)[:, :msg.width * 3]
            s.on_image(clock(), rgb.reshape(msg.height, msg.width, 3).copy())

        def pose(msg, command=False):
            try:
                T = pose_msg_to_matrix(msg)
            except ValueError:
                return
            s.on_command_pose(T) if command else s.on_pose(clock(), T)

        def task(msg):
            try:
                text = json.loads(msg.data).get("instruction")
            except (ValueError, AttributeError):
                return
            if text:
                s.on_instruction(str(text))

        self.subs = [
            n.create_subscription(Image, ENDOSCOPE_IMAGE, image, 2),
            n.create_subscription(PoseStamped, psm_topic("measured_cp"), pose, 10),
            n.create_subscription(JointState, psm_topic("jaw/measured_js"),
                                  lambda m: m.position and s.on_jaw(clock(), m.position[0]), 10),
            n.create_subscription(PoseStamped, psm_topic("servo_cp"), lambda m: pose(m, True), 10),
            n.create_subscription(JointState, psm_topic("jaw/servo_jp"),
                                  lambda m: m.position and s.on_command_jaw(m.position[0]), 10),
            n.create_subscription(String, SIM_TASK, task, 10),
            n.create_subscription(String, POLICY_INSTRUCTION, lambda m: s.on_instruction(m.data), 10),
        ]
        self.services = [
            n.create_service(Trigger, EPISODE_START, trigger_handler(lambda: s.start(clock()))),
            n.create_service(Trigger, EPISODE_STOP, trigger_handler(lambda: s.stop(True, clock()))),
            n.create_service(Trigger, EPISODE_DISCARD, trigger_handler(lambda: s.stop(False, clock()))),
        ]
        self.timer = n.create_timer(1.0 / FPS, lambda: s.sample(clock()))
        from rclpy.executors import SingleThreadedExecutor
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(n)

    def spin_once(self, timeout_s: float) -> None:
        self.executor.spin_once(timeout_sec=timeout_s)

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        if self.context.ok():
            self.context.try_shutdown()


def record_ros(task: str, episodes: int, out: Path, image_size=(128, 128), append: bool = False,
               timeout_s: float = 600.0, log=print) -> RecordResult:
    """Serve the episode services and record `episodes` kept episodes from live topics."""
    h, w = image_size
    sampler = LiveSampler(task, h, w)
    t0 = time.perf_counter()
    frames_total = 0
    ros = None
    try:
        # the dataset (and LeRobot's slow import) first: the services answer only once we can record
        with DatasetSession(out, append=append, height=h, width=w, task=task, source="teleop") as session:
            ros = _RosWiring(sampler)
            log(f"data record (ros): waiting on {EPISODE_START} / {EPISODE_STOP} / {EPISODE_DISCARD}", flush=True)
            while session.kept < episodes:
                if time.perf_counter() - t0 > timeout_s:
                    raise CliError(f"timed out after {timeout_s:g} s with {session.kept} of {episodes} episodes; "
                                   f"nothing written to {out}")
                ros.spin_once(0.05)
                while sampler.finished:
                    kind, frames = sampler.finished.pop(0)
                    info = {"instruction": frames[0]["task"] if frames else "",
                            "ticks_skipped_stale": sampler.skipped, "frames_held_late": sampler.held}
                    if kind == "keep":
                        session.add_episode(frames, info)
                        frames_total += len(frames)
                    else:
                        session.add_failure({**info, "reason": "discarded", "length": len(frames)})
                    log(f"data record (ros): {kind} episode of {len(frames)} frames "
                        f"({session.kept}/{episodes} kept)", flush=True)
            kept, failed = session.kept, session.failed
    finally:
        if ros is not None:
            ros.close()
    return RecordResult(kept=kept, failed=failed, frames=frames_total, wall_s=time.perf_counter() - t0)
