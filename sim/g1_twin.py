"""The G1 twin: serves the simulated Unitree G1 over unitree DDS exactly as the robot does.

Contract section 2: `rt/lowstate` at 500 Hz (valid crc, mode_machine 5, tick
in ms, IMU, 29 motors in contract order), `rt/lowcmd` (whole body, only after
`ReleaseMode`, crc + mode_machine checked), `rt/arm_sdk` (indices 12..28 while
the standing mode runs, `motor_cmd[29].q` = blend weight), and the
`motion_switcher` RPC served with unitree_sdk2py's own server classes.

Behaviour the robot's documentation leaves open, chosen here and to be
confirmed on hardware:

* the twin keeps the last `rt/arm_sdk` targets and weight when the stream
  stops (the bridge relies on this to keep the scope where it is);
* `rt/lowcmd` and `rt/arm_sdk` are taken at every physics step (the newest
  sample that has arrived), as the robot's control tick takes them, not by a
  DDS listener thread: on a loaded host that thread was starved and held arm
  targets back for ~250 ms, then applied the newest at once (a jolt of a few
  mm off the scope's fulcrum in the sim-in-the-loop tests);
* `rt/arm_sdk` ignores `motor_cmd[i].mode` (Unitree's arm_sdk examples leave
  it 0) but needs a valid crc (they set it); `rt/lowcmd` honours mode 0 as
  "motor off" (zero torque);
* the motor layer (sim/g1_motors.py): the standing mode PD-holds the `stand`
  keyframe with gravity feed-forward and blends arm_sdk in by its weight; after
  `ReleaseMode` and before the first valid `rt/lowcmd` the motors damp, like
  the robot's damping state; after `SelectMode` the stand targets ramp from the
  current posture over 2 s instead of jumping.

Sim-only test hook: when the world has a ROS node (`world.ros_node`), the
twin subscribes `/sim/g1/disturbance` (sensor_msgs/JointState: names of G1
joints + `effort` in Nm).  Each message replaces the external joint torques
added through `qfrc_applied` (an empty message or zero efforts clears them);
bad messages (unknown names, length mismatch, non-finite) are logged and
ignored.

Publishing `rt/lowstate` happens in `after_step` on the physics thread: with
the numpy codec in `surgbot.hw.unitree_codec` one sample costs tens of
microseconds (see `bench/g1.py`), cheaper than a hand-off to another thread
under the GIL.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import threading
import time
from pathlib import Path

import mujoco
import numpy as np
from sensor_msgs.msg import JointState
from unitree_sdk2py.idl.unitree_hg.msg.dds_ import LowCmd_, LowState_
from unitree_sdk2py.rpc.internal import RPC_ERR_SERVER_API_PARAMETER

from surgbot import contract
from surgbot.geometry import quat_to_rpy
from surgbot.hw import unitree, unitree_codec
from surgbot.pacing import Pacer
from surgbot.safety.filter import RejectionLog
from surgbot.sim.g1_motors import StandingController, damping_torques, lowcmd_torques
from surgbot.sim.scene import build_model
from surgbot.sim.world import SimWorld

log = logging.getLogger("sim.g1_twin")

DISTURBANCE_TOPIC = "/sim/g1/disturbance"
MODE_STANDING = "standing"
MODE_RELEASED = "released"

WARN_PERIOD_S = 1.0               # a dropped-command cause is logged at most this often


class G1Twin:
    """Twin protocol (sim/world.py) for the G1 over unitree DDS."""

    name = "g1"

    def __init__(self, domain: int = contract.G1_SIM_DOMAIN, interface: str = contract.G1_SIM_INTERFACE,
                 rate_hz: float = contract.G1_LOWSTATE_HZ):
        self.domain = int(domain)
        self.interface = interface
        self.period = 1.0 / rate_hz
        # Counters (read by tests and logged): commands dropped, per reason.
        self.dropped = {"lowcmd_crc": 0, "lowcmd_mode_machine": 0, "lowcmd_motion_mode_active": 0,
                        "lowcmd_malformed": 0, "lowcmd_nonfinite": 0, "arm_sdk_crc": 0,
                        "arm_sdk_malformed": 0, "arm_sdk_nonfinite": 0, "arm_sdk_not_standing": 0}
        self.applied = {"lowcmd": 0, "arm_sdk": 0}
        self.published = 0
        # each cause logged at most once per second, with the count so far (the safety layer's log)
        self._rejections = RejectionLog(WARN_PERIOD_S, lambda _cause, reason: log.warning(reason))
        self._lock = threading.Lock()
        self._mode = MODE_STANDING
        self._mode_changed = False
        self._lowcmd: np.ndarray | None = None      # (35,) MotorCmd_ records
        self._arm: np.ndarray | None = None         # (35,) MotorCmd_ records of the last arm_sdk
        self._arm_weight = 0.0
        self._disturbance = np.zeros(contract.G1_NUM_JOINTS)
        self._closed = False
        self._readers: list = []
        self._server = None
        self._ros_sub = None

    # ------------------------------------------------------------------ bind
    def bind(self, world) -> None:
        m = world.model
        names = contract.G1_JOINT_NAMES
        self._qadr = np.array([world.joint_qpos_adr(n) for n in names])
        self._dadr = np.array([world.joint_dof_adr(n) for n in names])
        self._act = np.array([m.actuator(n).id for n in names])
        self._effort = np.abs(m.actuator_ctrlrange[self._act, 1]).copy()
        try:
            key = m.key("stand")
            stand = np.array(key.qpos)[self._qadr]
        except KeyError:
            stand = m.qpos0[self._qadr]
        self._standing = StandingController(stand)
        self._imu = m.site("imu").id
        self._gravity = m.opt.gravity.copy()
        self._prev_vel = None
        self._prev_vel_t = 0.0
        self._next_pub = world.time
        self._state = unitree_codec.new_lowstate()
        self._state["mode_machine"] = unitree_codec.MODE_MACHINE
        self._state["motor_state"]["mode"][: contract.G1_NUM_JOINTS] = 1
        self._state["imu_state"]["temperature"] = 35
        self._state["motor_state"]["temperature"][: contract.G1_NUM_JOINTS] = 35
        self._state["motor_state"]["vol"][: contract.G1_NUM_JOINTS] = 58.0

        unitree.init_channel(self.domain, self.interface)
        self._dp = unitree.participant()
        self._writer = unitree.RawWriter(self._dp, contract.G1_TOPIC_LOWSTATE, LowState_)
        # taken at each physics step (before_step), not by a listener thread: see the module doc
        self._readers = [
            unitree.RawReader(self._dp, contract.G1_TOPIC_LOWCMD, LowCmd_, self._on_lowcmd, listen=False),
            unitree.RawReader(self._dp, contract.G1_TOPIC_ARM_SDK, LowCmd_, self._on_arm_sdk, listen=False),
        ]
        self._server = unitree.make_motion_switcher_server(self._rpc_check, self._rpc_select,
                                                           self._rpc_release)
        self._server.Start(False)
        if getattr(world, "ros_node", None) is not None:
            self._bind_ros(world.ros_node)
        log.info("G1 twin on unitree DDS domain %d interface %s (rt/lowstate %.0f Hz)",
                 self.domain, self.interface, 1.0 / self.period)

    def _bind_ros(self, node) -> None:
        self._ros_sub = node.create_subscription(JointState, DISTURBANCE_TOPIC, self._on_disturbance, 10)

    # ------------------------------------------------------------------ RPC
    @property
    def mode(self) -> str:
        return self._mode

    def _rpc_check(self) -> dict:
        if self._mode == MODE_STANDING:
            return dict(unitree.STANDING_MODE)
        return {"form": "0", "name": ""}

    def _rpc_select(self, name: str) -> int:
        if name not in (unitree.STANDING_MODE["name"], "normal"):
            log.warning("motion_switcher SelectMode(%r): unknown mode", name)
            return RPC_ERR_SERVER_API_PARAMETER
        with self._lock:
            if self._mode != MODE_STANDING:
                self._mode, self._mode_changed = MODE_STANDING, True
        log.info("motion_switcher: standing mode selected (%s)", name)
        return 0

    def _rpc_release(self) -> int:
        with self._lock:
            if self._mode != MODE_RELEASED:
                self._mode, self._mode_changed = MODE_RELEASED, True
                self._lowcmd = None
        log.info("motion_switcher: mode released, body follows rt/lowcmd")
        return 0

    # ------------------------------------------------------------------ DDS commands
    def _drop(self, key: str, msg: str) -> None:
        with self._lock:
            self.dropped[key] += 1
        self._warn(key, msg)

    def _warn(self, key: str, msg: str) -> None:
        self._rejections.reject(f"{key}: {msg}", time.monotonic())

    def _on_lowcmd(self, data: bytes, _t: float) -> None:
        rec, crc_ok = unitree_codec.decode_lowcmd(data)
        if rec is None:
            return self._drop("lowcmd_malformed", "rt/lowcmd: malformed sample dropped")
        if not crc_ok:
            return self._drop("lowcmd_crc", "rt/lowcmd: bad crc, dropped")
        if int(rec["mode_machine"]) != unitree_codec.MODE_MACHINE:
            return self._drop("lowcmd_mode_machine",
                              f"rt/lowcmd: mode_machine {int(rec['mode_machine'])} != "
                              f"{unitree_codec.MODE_MACHINE}, dropped")
        mc = rec["motor_cmd"]
        fields = np.stack([mc["q"], mc["dq"], mc["tau"], mc["kp"], mc["kd"]])
        if not np.all(np.isfinite(fields[:, : contract.G1_NUM_JOINTS])):
            return self._drop("lowcmd_nonfinite", "rt/lowcmd: non-finite values, dropped")
        with self._lock:
            if self._mode != MODE_RELEASED:
                self.dropped["lowcmd_motion_mode_active"] += 1
                active = True
            else:
                self._lowcmd = mc.copy()
                self.applied["lowcmd"] += 1
                active = False
        if active:
            self._warn("lowcmd_motion_mode_active",
                       "rt/lowcmd while a motion mode is active (call ReleaseMode first), dropped")

    def _on_arm_sdk(self, data: bytes, _t: float) -> None:
        rec, crc_ok = unitree_codec.decode_lowcmd(data)
        if rec is None:
            return self._drop("arm_sdk_malformed", "rt/arm_sdk: malformed sample dropped")
        if not crc_ok:
            return self._drop("arm_sdk_crc", "rt/arm_sdk: bad crc, dropped")
        mc = rec["motor_cmd"]
        ub = list(contract.G1_UPPER_BODY)
        fields = np.stack([mc["q"][ub], mc["dq"][ub], mc["tau"][ub], mc["kp"][ub], mc["kd"][ub]])
        weight = float(mc["q"][contract.G1_ARM_SDK_WEIGHT_INDEX])
        if not (np.all(np.isfinite(fields)) and math.isfinite(weight)):
            return self._drop("arm_sdk_nonfinite", "rt/arm_sdk: non-finite values, dropped")
        with self._lock:
            if self._mode != MODE_STANDING:
                self.dropped["arm_sdk_not_standing"] += 1
                standing = False
            else:
                self._arm = mc.copy()
                self._arm_weight = min(1.0, max(0.0, weight))
                self.applied["arm_sdk"] += 1
                standing = True
        if not standing:
            self._warn("arm_sdk_not_standing", "rt/arm_sdk while the standing mode is released, ignored")

    def _on_disturbance(self, msg) -> None:
        names, effort = list(msg.name), list(msg.effort)
        if len(names) != len(effort):
            log.error("%s: %d names but %d efforts, ignored", DISTURBANCE_TOPIC, len(names), len(effort))
            return
        unknown = [n for n in names if n not in contract.G1_INDEX]
        if unknown:
            log.error("%s: unknown joints %s, ignored", DISTURBANCE_TOPIC, unknown)
            return
        if not all(math.isfinite(e) for e in effort):
            log.error("%s: non-finite effort, ignored", DISTURBANCE_TOPIC)
            return
        tau = np.zeros(contract.G1_NUM_JOINTS)
        for n, e in zip(names, effort, strict=True):
            tau[contract.G1_INDEX[n]] = e
        with self._lock:
            self._disturbance = tau

    # ------------------------------------------------------------------ physics hooks
    def before_step(self, world) -> None:
        for reader in self._readers:
            reader.poll()
        d = world.data
        q = d.qpos[self._qadr]
        dq = d.qvel[self._dadr]
        with self._lock:
            mode, changed = self._mode, self._mode_changed
            self._mode_changed = False
            lowcmd, arm, w = self._lowcmd, self._arm, self._arm_weight
            disturbance = self._disturbance
        if changed and mode == MODE_STANDING:
            self._standing.restart(q, world.time)
        if mode == MODE_STANDING:
            tau = self._standing.torques(world.time, q, dq, d.qfrc_bias[self._dadr], arm, w)
            enabled = np.ones(contract.G1_NUM_JOINTS, dtype=bool)
        elif lowcmd is None:
            tau = damping_torques(dq)
            enabled = np.ones(contract.G1_NUM_JOINTS, dtype=bool)
        else:
            tau, enabled = lowcmd_torques(lowcmd[: contract.G1_NUM_JOINTS], q, dq)
        d.ctrl[self._act] = np.clip(tau, -self._effort, self._effort)
        d.qfrc_applied[self._dadr] = disturbance
        self._enabled = enabled

    def after_step(self, world) -> None:
        if world.time + 1e-9 < self._next_pub or self._closed:
            return
        self._next_pub += self.period
        if self._next_pub < world.time:          # fell behind (e.g. paused): do not burst
            self._next_pub = world.time + self.period
        self.publish_state(world)

    def publish_state(self, world) -> None:
        m, d = world.model, world.data
        st = self._state
        n = contract.G1_NUM_JOINTS
        ms = st["motor_state"]
        ms["q"][:n] = d.qpos[self._qadr]
        ms["dq"][:n] = d.qvel[self._dadr]
        ms["ddq"][:n] = d.qacc[self._dadr]
        ms["tau_est"][:n] = d.actuator_force[self._act]
        ms["mode"][:n] = getattr(self, "_enabled", np.ones(n, dtype=bool))
        st["tick"] = int(round(world.time * 1000.0)) & 0xFFFFFFFF
        # IMU at the pelvis `imu` site: orientation, body rates, specific force.
        xmat = d.site_xmat[self._imu]
        quat = np.zeros(4)
        mujoco.mju_mat2Quat(quat, xmat)
        vel = np.zeros(6)
        mujoco.mj_objectVelocity(m, d, mujoco.mjtObj.mjOBJ_SITE, self._imu, vel, 1)
        world_vel = np.zeros(6)
        mujoco.mj_objectVelocity(m, d, mujoco.mjtObj.mjOBJ_SITE, self._imu, world_vel, 0)
        lin = world_vel[3:]
        acc_world = np.zeros(3)
        if self._prev_vel is not None and world.time > self._prev_vel_t:
            acc_world = (lin - self._prev_vel) / (world.time - self._prev_vel_t)
        self._prev_vel, self._prev_vel_t = lin.copy(), world.time
        R = xmat.reshape(3, 3)
        imu = st["imu_state"]
        imu["quaternion"] = quat
        imu["gyroscope"] = vel[:3]
        imu["accelerometer"] = R.T @ (acc_world - self._gravity)
        imu["rpy"] = quat_to_rpy((quat[1], quat[2], quat[3], quat[0]))   # unitree: w, x, y, z
        self._writer.write(unitree_codec.encode_lowstate(st), lambda: unitree_codec.lowstate_to_sdk(st))
        self.published += 1

    def counters(self) -> dict:
        with self._lock:
            return {"dropped": dict(self.dropped), "applied": dict(self.applied),
                    "published": self.published, "mode": self._mode}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        total = sum(self.dropped.values())
        log.info("G1 twin closing: published %d lowstate, applied %s, dropped %d %s",
                 self.published, self.applied, total, {k: v for k, v in self.dropped.items() if v})
        self._readers.clear()
        self._writer = None


# ---------------------------------------------------------------------- standalone entry point
def _build_world(scene: str | None):
    if scene:
        model = build_model(scene, 0)
    else:
        model = mujoco.MjModel.from_xml_path(str(Path(__file__).parent / "models" / "g1_29dof.xml"))
    data = mujoco.MjData(model)
    try:
        mujoco.mj_resetDataKeyframe(model, data, model.key("stand").id)
    except KeyError:
        pass
    mujoco.mj_forward(model, data)
    return SimWorld(model=model, data=data, scene=scene or "g1_only")


def main(argv: list[str] | None = None) -> int:
    """`python -m surgbot.sim.g1_twin --domain N --duration S`: the G1 twin alone, in real time."""
    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--domain", type=int, default=contract.G1_SIM_DOMAIN)
    p.add_argument("--interface", default=contract.G1_SIM_INTERFACE)
    p.add_argument("--duration", type=float, default=0.0, help="seconds (0 = until interrupted)")
    p.add_argument("--scene", default=None, help="scene for surgbot.sim.scene.build_model (default: G1 only)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    world = _build_world(args.scene)
    twin = world.add(G1Twin(domain=args.domain, interface=args.interface))
    print(f"g1 twin ready domain={args.domain}", flush=True)
    sim0 = world.time
    pacer = Pacer()
    try:
        while args.duration <= 0 or world.time - sim0 < args.duration:
            world.step()
            pacer.pace(world.time - sim0)
    except KeyboardInterrupt:
        pass
    wall = pacer.wall_s()
    print(f"g1 twin: {world.time - sim0:.2f} s simulated in {wall:.2f} s "
          f"(real-time factor {(world.time - sim0) / wall:.3f}, {pacer.stalls} stalls dropped "
          f"{pacer.dropped_s:.2f} s)", flush=True)
    print("g1 twin counters: " + json.dumps(twin.counters()), flush=True)
    world.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
