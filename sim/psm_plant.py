"""The PSM plant: motion model + servo semantics + MuJoCo actuation, ROS-free.

One implementation shared by the CRTK twin (sim/psm_twin.py, which only
unpacks ROS messages into command tuples and publishes snapshots) and the
Gymnasium environments (sim/envs/), so a policy trained in the fast
environment sees the same servo_cp behaviour as on the ROS stack.

Every physics step `control(data, t, dt, commands)`:
* feeds the commands (kind, args) to the dVRK state machine and motion
  generator `PSMCore` (sim/psm_core.py); of the streamed kinds only the
  newest in a batch is applied (as a real arm servoing at its own rate);
* steps the core with the measured joints;
* writes the MuJoCo position servos (joint PID: ctrl = setpoint + velocity
  feed-forward + integral term; the proportional and damping terms are the
  actuators' kp/kv, integrated implicitly); with the arm unpowered the
  brakes hold the setpoint.
`snapshot(data, t)` reads the measured state and ground truth after a step.
"""

from __future__ import annotations

import mujoco
import numpy as np

from surgbot.contract import PSM_JAW_NAME, PSM_JOINT_NAMES
from surgbot.sim.psm_core import PSMCore
from surgbot.sim.psm_state import Setpoint

PSM_BASE_BODY = "PSM1_base"
INTEGRAL_RATE = 1.0                       # ki / kp, 1/s
INTEGRAL_LIMIT = np.array([0.02, 0.02, 0.004, 0.05, 0.05, 0.05])
SERVO_KINDS = ("servo_jp", "servo_cp", "servo_cv", "jaw_servo_jp")
STILL_VELOCITY = 1e-9                     # a setpoint velocity below this counts as still


class PSMPlant:
    """PSMCore driving the PSM joints of one MuJoCo model (see module doc)."""

    def __init__(self, model: mujoco.MjModel, core: PSMCore | None = None):
        self.core = core if core is not None else PSMCore()
        jnt = lambda n: model.joint(n).id  # noqa: E731
        self.qadr = np.array([model.jnt_qposadr[jnt(n)] for n in PSM_JOINT_NAMES])
        self.dadr = np.array([model.jnt_dofadr[jnt(n)] for n in PSM_JOINT_NAMES])
        self.jaw_qadr = int(model.jnt_qposadr[jnt(PSM_JAW_NAME)])
        self.jaw_dadr = int(model.jnt_dofadr[jnt(PSM_JAW_NAME)])
        self.act = np.array([model.actuator(f"PSM1_{n}").id for n in PSM_JOINT_NAMES])
        self.jaw_act = model.actuator(f"PSM1_{PSM_JAW_NAME}").id
        kp = model.actuator_gainprm[self.act, 0]
        kv = -model.actuator_biasprm[self.act, 2]
        self.ff_gain = kv / kp                    # velocity feed-forward in position units
        self.jaw_ff_gain = float(-model.actuator_biasprm[self.jaw_act, 2]
                                 / model.actuator_gainprm[self.jaw_act, 0])
        self.base_body = model.body(PSM_BASE_BODY).id
        self.roll_body = model.body("PSM1_roll_link").id
        self.tip_site = model.site("PSM1_tool_tip").id
        self.rcm_site = model.site("PSM1_rcm").id
        self._integral = np.zeros(6)

    # ------------------------------------------------------------ commands
    def apply_commands(self, t: float, commands) -> list[bool]:
        """Feed (kind, args) commands at time t; streamed kinds: only the newest counts.

        kind "reject" carries a message for `error` (a command refused while
        unpacking it).  Returns each command's acceptance (skipped stream
        commands count as accepted: they were superseded, not refused)."""
        batch = list(commands)
        last = {kind: i for i, (kind, _) in enumerate(batch) if kind in SERVO_KINDS}
        core = self.core
        core.t = t
        accepted = []
        for i, (kind, args) in enumerate(batch):
            if kind in SERVO_KINDS and last[kind] != i:
                accepted.append(True)
            elif kind == "reject":
                accepted.append(core.error(args[0]))
            else:
                accepted.append(core.command(kind, *args))
        return accepted

    # -------------------------------------------------------------- physics
    def control(self, data: mujoco.MjData, t: float, dt: float, commands=(),
                disturbance: np.ndarray | None = None) -> Setpoint:
        """Before mj_step: apply commands, step the core, write the servos."""
        self.apply_commands(t, commands)
        q = data.qpos[self.qadr]
        sp = self.core.step(t, q, data.qvel[self.dadr], float(data.qpos[self.jaw_qadr]))
        extra = np.zeros(6) if disturbance is None else np.array(disturbance, float)
        jaw_extra = 0.0
        if sp.powered and sp.effort is not None:
            # effort mode (servo_jf/servo_cf/free): servo on the measured joints (kp term
            # zero, the actuators' damping stays) and apply the efforts as joint forces;
            # gravity is already balanced (psm.xml: gravcomp=1, the real arm is counterbalanced)
            self._integral[:] = 0.0
            data.ctrl[self.act] = q
            extra += sp.effort
        elif sp.powered:
            # integrate only while a joint's setpoint is still: no wind-up during moves
            err = np.where(np.abs(sp.qd) < STILL_VELOCITY, sp.q - q, 0.0)
            self._integral = np.clip(self._integral + INTEGRAL_RATE * err * dt,
                                     -INTEGRAL_LIMIT, INTEGRAL_LIMIT)
            data.ctrl[self.act] = sp.q + self.ff_gain * sp.qd + self._integral
        else:                                    # brakes: hold where the arm was left
            self._integral[:] = 0.0
            data.ctrl[self.act] = sp.q
        if sp.powered and sp.jaw_effort is not None:
            data.ctrl[self.jaw_act] = data.qpos[self.jaw_qadr]
            jaw_extra = sp.jaw_effort
        elif sp.powered:
            data.ctrl[self.jaw_act] = sp.jaw + self.jaw_ff_gain * sp.jaw_d
        else:
            data.ctrl[self.jaw_act] = sp.jaw
        data.qfrc_applied[self.dadr] = extra
        data.qfrc_applied[self.jaw_dadr] = jaw_extra
        return sp

    def set_joints(self, data: mujoco.MjData, q, jaw: float = 0.0) -> None:
        """Place the arm (a reset, before the first step): joints and jaw, at rest."""
        data.qpos[self.qadr] = q
        data.qvel[self.dadr] = 0.0
        data.qpos[self.jaw_qadr] = jaw
        data.qvel[self.jaw_dadr] = 0.0
        self._integral[:] = 0.0

    # -------------------------------------------------------------- reading
    def snapshot(self, data: mujoco.MjData, t: float) -> dict:
        """Measured state, setpoints and ground truth after a step (copies)."""
        core = self.core
        return {
            "t": t,
            "q": data.qpos[self.qadr].copy(), "qd": data.qvel[self.dadr].copy(),
            "eff": data.actuator_force[self.act].copy(),
            "jaw": float(data.qpos[self.jaw_qadr]), "jaw_v": float(data.qvel[self.jaw_dadr]),
            "jaw_eff": float(data.actuator_force[self.jaw_act]),
            "q_sp": core.motion.q_sp.copy(), "qd_sp": core.motion.qd_sp.copy(), "jaw_sp": core.motion.jaw_sp,
            "base_p": data.xpos[self.base_body].copy(),
            "base_R": data.xmat[self.base_body].reshape(3, 3).copy(),
            "tip_p": data.site_xpos[self.tip_site].copy(),
            "tip_R": data.site_xmat[self.tip_site].reshape(3, 3).copy(),
            "roll_p": data.xpos[self.roll_body].copy(),
            "roll_z": data.xmat[self.roll_body].reshape(3, 3)[:, 2].copy(),
            "rcm_p": data.site_xpos[self.rcm_site].copy(),
        }

    def measured_cp(self, data: mujoco.MjData) -> np.ndarray:
        """4x4 of the simulated tool-tip site in PSM1_base (what measured_cp publishes)."""
        Rb = data.xmat[self.base_body].reshape(3, 3)
        T = np.eye(4)
        T[:3, :3] = Rb.T @ data.site_xmat[self.tip_site].reshape(3, 3)
        T[:3, 3] = Rb.T @ (data.site_xpos[self.tip_site] - data.xpos[self.base_body])
        return T

    def jaw(self, data: mujoco.MjData) -> float:
        return float(data.qpos[self.jaw_qadr])

    def base_pose(self, data: mujoco.MjData) -> np.ndarray:
        """4x4 of PSM1_base in world."""
        T = np.eye(4)
        T[:3, :3] = data.xmat[self.base_body].reshape(3, 3)
        T[:3, 3] = data.xpos[self.base_body]
        return T
