"""The operator's steps of `surgbot demo`, against a running stack (see surgbot/demo/cli.py)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from std_msgs.msg import String

from surgbot import contract
from surgbot.ctl import ACTIONS, POLICY_INSTRUCTION, call_service
from surgbot.demo.media import VideoRecorder
from surgbot.demo.observer import DemoObserver
from surgbot.demo.summary import build_summary, write_summary
from surgbot.geometry import pose_to_matrix
from surgbot.hw.crtk import PSMClient
from surgbot.rosutil import latched_qos

SERVICE_TIMEOUT_S = 10.0
ENGAGE_RAMP_S = 2.5                   # the bridge ramps the arm_sdk weight 0 -> 1 over 2 s
MOVE_TIMEOUT_S = 20.0
RELAYOUT_TIMEOUT_S = 10.0
SETTLE_S = 0.5                        # let the objects come to rest after a new layout
STARTUP_TIMEOUT_S = 120.0             # first start on 2 cores: imports, GL contexts, policy load
STEP_TIMEOUT_S = 30.0
HORIZON_MARGIN = 1.5                  # a task gets this many times its horizon (wall clock, under load)
OPEN_JAW_RAD = math.radians(40)
MM = 1000.0


class DemoScript:
    def __init__(self, out: Path, args, tasks: list[str], say, wait):
        self.out, self.args, self.tasks, self.say, self.wait = out, args, tasks, say, wait
        self.t0 = time.monotonic()
        self.obs = DemoObserver()
        self.psm = PSMClient(self.obs.node)
        self.pub_instruction = self.obs.node.create_publisher(String, POLICY_INSTRUCTION, latched_qos())
        self.pub_task = self.obs.node.create_publisher(String, contract.SIM_TASK_SET, 10)
        self.current = {"instruction": "", "task": "", "status": "starting"}
        self.video = VideoRecorder(out, self.obs.frames, self._overlay_lines)
        self.results: list[dict] = []
        self.notes: list[str] = []
        self._finished = False

    # ------------------------------------------------------------------ overlay
    def _overlay_lines(self) -> list[str]:
        c, obs = self.current, self.obs
        fe = obs.last_fulcrum_error_m()
        policy = obs.policy or {}
        ms = policy.get("inference_ms")
        return [f"{c['task'] or '-'}: {c['status']}",
                f"\"{c['instruction']}\"" if c["instruction"] else "",
                f"fulcrum error {fe * MM:.2f} mm" if fe is not None else "fulcrum error -",
                f"policy {policy.get('state', '-')}, inference {ms:.1f} ms" if ms is not None else
                f"policy {policy.get('state', '-')}"]

    # ------------------------------------------------------------------ steps
    def _service(self, action: str) -> None:
        ok, message = call_service(self.obs, ACTIONS[action], SERVICE_TIMEOUT_S)
        if not ok:
            raise RuntimeError(f"{ACTIONS[action].service} refused: {message}")

    def _start_up(self) -> None:
        obs = self.obs
        self.say("waiting for the stack (sim, G1 bridge, holder, supervisor, policy)")
        self.wait(lambda: obs.task_state() is not None and obs.endoscope_mode is not None
                  and obs.safety is not None and obs.policy is not None and obs.frames()[0] is not None
                  and self.psm.operating_state() is not None, STARTUP_TIMEOUT_S, "the stack's first messages")
        self.say("G1: engage the arm and HOLD the endoscope through the port")
        self._service("engage")
        time.sleep(ENGAGE_RAMP_S)
        self._service("follow-tool" if self.args.follow else "hold")
        want = "TOOL_FOLLOW" if self.args.follow else "HOLD"
        self.wait(lambda: obs.endoscope_mode == want, STEP_TIMEOUT_S, f"endoscope mode {want}")
        self.say("PSM: enable and home")
        try:
            self.psm.enable(timeout=STEP_TIMEOUT_S)
            self.psm.home(timeout=STEP_TIMEOUT_S)
        except TimeoutError as exc:
            raise RuntimeError(f"PSM: {exc}") from None

    def _lay_out(self, task: str, seed: int) -> dict:
        state = self.obs.task_state()
        if state["task"] == task and state.get("seed") == seed:
            return state
        episode = state.get("episode", 0)
        self.say(f"sim: new layout for {task} (seed {seed})")
        self.pub_task.publish(String(data=json.dumps({"task": task, "seed": seed})))
        self.wait(lambda: (self.obs.task_state() or {}).get("episode", 0) > episode, RELAYOUT_TIMEOUT_S,
                  f"the {task} layout")
        time.sleep(SETTLE_S)
        return self.obs.task_state()

    def _to_start(self, state: dict) -> None:
        x, y, z, qx, qy, qz, qw = state["start_cp"]
        self.psm.jaw_move_jp(0.0).wait(MOVE_TIMEOUT_S)
        if not self.psm.move_cp(pose_to_matrix([x, y, z], [qx, qy, qz, qw])).wait(MOVE_TIMEOUT_S):
            raise RuntimeError("PSM: move_cp to the task's start pose was refused or interrupted")

    def _do_task(self, task: str, seed: int) -> dict:
        self.current.update(task=task, status="laying out", instruction="")
        if self.results:                                   # let go of what the last task held, lift clear
            self.psm.jaw_move_jp(OPEN_JAW_RAD).wait(MOVE_TIMEOUT_S)
        state = self._lay_out(task, seed)
        self.current["status"] = "PSM to the start pose"
        self._to_start(state)
        instruction = state["instruction"]
        horizon = self.args.duration or state["horizon_s"] * HORIZON_MARGIN
        self.say(f"policy: {task} \"{instruction}\" (at most {horizon:.0f} s)")
        self.current.update(status="policy running", instruction=instruction)
        self.pub_instruction.publish(String(data=instruction))
        self.obs.anchor_scope_tip()
        self._set_policy(True)
        t_start = time.monotonic()
        success = False
        while time.monotonic() - t_start < horizon:
            st = self.obs.task_state() or {}
            if st.get("task") == task and st.get("success"):
                success = True
                break
            time.sleep(0.05)
        elapsed = time.monotonic() - t_start
        self._set_policy(False)
        final = self.obs.task_state() or {}
        self.current["status"] = "SUCCESS" if success else "failed (horizon reached)"
        self.say(f"{task}: {'success' if success else 'FAILED'} after {elapsed:.1f} s")
        return {"task": task, "seed": seed, "instruction": instruction, "success": success,
                "time_s": round(elapsed, 2), "sim_elapsed_s": final.get("elapsed_s"),
                "failure": final.get("failure", "") if not success else ""}

    def _set_policy(self, enable: bool) -> None:
        self._service("policy-enable" if enable else "policy-disable")

    def run(self) -> dict:
        self._start_up()
        for i, task in enumerate(self.tasks):
            self.results.append(self._do_task(task, self.args.seed + i))
            time.sleep(1.0)                                 # a second of the result on the video
        return self.finish()

    def finish(self) -> dict | None:
        """Close videos and the observer, write the summary (once; also after a failure)."""
        if self._finished:
            return None
        self._finished = True
        videos = self.video.stop()
        if self.video.error:
            self.notes.append(f"video: {self.video.error}")
        summary = build_summary(self.obs, self.results, time.monotonic() - self.t0, videos, self.notes)
        paths = write_summary(summary, self.obs, self.out)
        self.obs.close()
        self.say(f"wrote {paths[0]} and {paths[1]}")
        return summary if len(self.results) == len(self.tasks) else None
