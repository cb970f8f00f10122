"""The operator's steps of `surgbot demo`, against a running stack (see surgbot/demo/cli.py)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from std_msgs.msg import String

from surgbot import contract
from surgbot.ctl import ACTIONS, POLICY_INSTRUCTION, call_service
from surgbot.demo.cpu_meter import CpuMeter
from surgbot.demo.media import VideoRecorder
from surgbot.demo.observer import DemoObserver
from surgbot.demo.safety_steps import SERVICE_TIMEOUT_S, STEP_TIMEOUT_S, WATCH_PERIOD_S, SafetySteps
from surgbot.demo.summary import build_summary, write_summary
from surgbot.geometry import pose_to_matrix
from surgbot.hw.crtk import PSMClient
from surgbot.hw.policy_client import PolicyClient, PolicyServerError, PolicyTimeout
from surgbot.rosutil import latched_qos

MOVE_TIMEOUT_S = 20.0
PREPARE_ATTEMPTS = 2                  # a FAULT before a task's policy starts: one reset and re-engage
RELAYOUT_TIMEOUT_S = 10.0
SETTLE_S = 0.5                        # let the objects come to rest after a new layout
STARTUP_TIMEOUT_S = 120.0             # first start on 2 cores: imports, GL contexts, policy load
HORIZON_MARGIN = 1.5                  # a task gets this many times its horizon (wall clock, under load)
OPEN_JAW_RAD = math.radians(40)
# A task a watchdog FAULT interrupted is run once more on a fresh layout of the same seed, after the
# reset an operator would do; both attempts stay in the summary.  Only lateness counts (a source
# silent, a liveliness lease lapsed, a sample too old: safety.supervisor.only_lateness): on the
# 2-core machine the load alone makes those (README "Real-time scheduling"), while a FAULT the
# commands caused (a PSM FAULT, a node's own error) or an e-stop ends the task as failed.
TASK_ATTEMPTS = 2
MM = 1000.0


def _answers(client: PolicyClient) -> bool:
    try:
        client.ping()
    except (PolicyTimeout, PolicyServerError):
        return False
    return True


class DemoScript:
    def __init__(self, out: Path, args, tasks: list[str], say, wait, pids: dict[str, int]):
        self.pids = pids
        self.cpu = CpuMeter(pids)
        self.out, self.args, self.tasks, self.say, self.wait = out, args, tasks, say, wait
        self.t0 = time.monotonic()
        self.obs = DemoObserver()
        # no sample streams: the demo commands the arm and waits on operating_state and goal_reached;
        # the seven 100 Hz streams a default client takes cost this process ~10 % of a core
        self.psm = PSMClient(self.obs.node, streams=())
        self.pub_instruction = self.obs.node.create_publisher(String, POLICY_INSTRUCTION, latched_qos())
        self.pub_task = self.obs.node.create_publisher(String, contract.SIM_TASK_SET, 10)
        self.current = {"instruction": "", "task": "", "status": "starting"}
        self.video = VideoRecorder(out, self.obs.frames, self._overlay_lines)
        self.results: list[dict] = []
        self.attempts: list[dict] = []        # every task attempt, in order (a retried one too)
        self.notes: list[str] = []
        self.steps = SafetySteps(self.obs, self.psm, self.say, self.notes, follow=args.follow)
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
        # The policy server loads torch and the checkpoint: engaging the G1 while that eats the
        # CPU risks the bridge's 50 ms lowstate watchdog; wait until it answers.
        with PolicyClient(port=self.args.policy_port, timeout_s=STEP_TIMEOUT_S) as client:
            self.wait(lambda: _answers(client), STARTUP_TIMEOUT_S, "the policy server")
        self.cpu.start()
        # The PSM first: its power-up and homing are the start-up transients of the sim, and
        # the G1 chain (50 ms watchdogs) is not streaming yet while they run.
        self.say("PSM: enable and home")
        try:
            self.psm.enable(timeout=STEP_TIMEOUT_S)
            self.psm.home(timeout=STEP_TIMEOUT_S)
        except TimeoutError as exc:
            raise RuntimeError(f"PSM: {exc}") from None
        self.steps.settle()
        self.steps.engage_with_retries()

    def _lay_out(self, task: str, seed: int, again: bool = False) -> dict:
        """The layout of `task` at `seed` (a fresh episode of it when `again`)."""
        state = self.obs.task_state()
        if state["task"] == task and state.get("seed") == seed and not again:
            return state
        episode = state.get("episode", 0)
        self.say(f"sim: new layout for {task} (seed {seed})")
        self.pub_task.publish(String(data=json.dumps({"task": task, "seed": seed})))
        self.wait(lambda: (self.obs.task_state() or {}).get("episode", 0) > episode, RELAYOUT_TIMEOUT_S,
                  f"the {task} layout")
        time.sleep(SETTLE_S)
        return self.obs.task_state()

    def _to_start(self, state: dict, close_jaw: bool = True) -> None:
        x, y, z, qx, qy, qz, qw = state["start_cp"]
        if close_jaw:
            self.psm.jaw.move_jp(0.0).wait(MOVE_TIMEOUT_S)
        if not self.psm.move_cp(pose_to_matrix([x, y, z], [qx, qy, qz, qw])).wait(MOVE_TIMEOUT_S):
            raise RuntimeError("PSM: move_cp to the task's start pose was refused or interrupted")

    def _run_task(self, task: str, seed: int) -> dict:
        """`task` until it succeeds, fails, or a FAULT of lateness interrupts it TASK_ATTEMPTS times;
        the result says how many attempts it took and why the earlier ones stopped."""
        earlier: list[dict] = []
        while True:
            result = self._do_task(task, seed, again=bool(earlier))
            stopped_by_fault = result["failure"].startswith("safety FAULT")   # not the horizon, then a FAULT
            if (result["success"] or len(earlier) + 1 >= TASK_ATTEMPTS or not stopped_by_fault
                    or not self.steps.interrupted_by_lateness()):
                break
            earlier.append({k: result[k] for k in ("time_s", "failure")})
            self.notes.append(f"{task}: attempt {len(earlier)} interrupted after {result['time_s']:.1f} s by "
                              f"{result['failure']}: reset, laid out again, run again")
            self.say(f"{task}: a watchdog FAULT of lateness interrupted it: once more on a fresh layout")
        return {**result, "attempts": len(earlier) + 1, "earlier_attempts": earlier}

    def _do_task(self, task: str, seed: int, again: bool = False) -> dict:
        self.current.update(task=task, status="laying out" if not again else "laying out again", instruction="")
        if self.attempts and self.attempts[-1]["failure"].startswith("safety"):
            self.steps.recover()
        if self.attempts:                                  # let go of what the last task held, lift clear
            self.psm.jaw.move_jp(OPEN_JAW_RAD).wait(MOVE_TIMEOUT_S)
        state = self._prepare(task, seed, again)
        instruction = state["instruction"]
        horizon = self.args.duration or state["horizon_s"] * HORIZON_MARGIN
        self.say(f"policy: {task} \"{instruction}\" (at most {horizon:.0f} s)")
        self.current.update(status="policy running", instruction=instruction)
        self.pub_instruction.publish(String(data=instruction))
        self.obs.anchor_scope_tip()
        t_start = time.monotonic()
        success, stopped = False, self._enable_policy()
        while not stopped and time.monotonic() - t_start < horizon:
            st = self.obs.task_state() or {}
            if st.get("task") == task and st.get("success"):
                success = True
                break
            # a FAULT/ESTOP stops every command source: the policy cannot go on, say so
            if (stopped := self.steps.stop_reason()):
                break
            time.sleep(WATCH_PERIOD_S)
        elapsed = time.monotonic() - t_start
        self._set_policy(False)
        final = self.obs.task_state() or {}
        failure = "" if success else (stopped or final.get("failure", "") or "horizon reached")
        self.current["status"] = "SUCCESS" if success else f"failed ({failure})"
        self.say(f"{task}: {'success' if success else 'FAILED: ' + failure} after {elapsed:.1f} s")
        self.attempts.append({"task": task, "seed": seed, "instruction": instruction, "success": success,
                              "time_s": round(elapsed, 2), "sim_elapsed_s": final.get("elapsed_s"),
                              "failure": failure})
        return dict(self.attempts[-1])

    def _prepare(self, task: str, seed: int, again: bool = False) -> dict:
        """Lay the task out and bring the PSM to its start pose.  A FAULT meanwhile (the policy has
        not started: nothing of the task is judged yet) is reset and re-engaged from as an operator
        would, once; noted."""
        attempt = 1
        while True:
            try:
                if again:
                    # out of the objects' way, the jaw open, before they are laid out anew: a retried
                    # peg_transfer was laid out again under the tool that had carried the block, the
                    # block was still at the tool when the policy started, and it went for a wrong mark
                    self._to_start(self.obs.task_state(), close_jaw=False)
                state = self._lay_out(task, seed, again)
                self.current["status"] = "PSM to the start pose"
                self._to_start(state)
            except RuntimeError:                  # a move the supervisor's hold interrupted
                if attempt == PREPARE_ATTEMPTS or not self.steps.stop_reason():
                    raise
            problem = self.steps.stop_reason()
            if not problem:
                return state
            if attempt == PREPARE_ATTEMPTS:
                raise RuntimeError(f"{task}: {problem} before the policy started, {attempt} times")
            self.notes.append(f"{task}: {problem} before the policy started: reset, engaged again")
            self.steps.recover(f"{problem} before {task} started")
            attempt += 1

    def _enable_policy(self) -> str:
        """'' once the policy runs; the safety stop that refused it otherwise (the task then fails
        with it, as a FAULT during the task does)."""
        try:
            self._set_policy(True)
        except RuntimeError:
            if not (stopped := self.steps.stop_reason()):
                raise
            return stopped
        return ""

    def _set_policy(self, enable: bool) -> None:
        self._service("policy-enable" if enable else "policy-disable")

    def run(self) -> dict:
        self._start_up()
        for i, task in enumerate(self.tasks):
            self.results.append(self._run_task(task, self.args.seed + i))
            time.sleep(1.0)                                 # a second of the result on the video
        return self.finish()

    def finish(self) -> dict | None:
        """Close videos and the observer, write the summary (once; also after a failure)."""
        if self._finished:
            return None
        self._finished = True
        # The run ends with its last task: stop measuring before the videos are encoded.  Encoding
        # takes a core for seconds while the stack still runs; on 2 cores its watchdogs can then see
        # gaps (a FAULT) caused by this post-processing, which would be counted against the run.
        wall_s = time.monotonic() - self.t0
        self.video.stop_sampling()
        self.obs.close()
        cpu = self.cpu.stop()
        videos = self.video.stop()
        if self.video.error:
            self.notes.append(f"video: {self.video.error}")
        summary = build_summary(self.obs, self.results, wall_s, videos, self.notes)
        summary["cpu_percent_of_a_core"] = cpu
        summary["realtime"] = self.args.realtime          # stack.REALTIME_LEVELS (each node logs what it got)
        paths = write_summary(summary, self.obs, self.out)
        self.say(f"wrote {paths[0]} and {paths[1]}")
        return summary if len(self.results) == len(self.tasks) else None
