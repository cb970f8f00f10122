"""`g1_bridge` rclpy node: the G1 over unitree DDS <-> ROS 2 (contract section 2.2).

Thin shell around `surgbot.control.g1_bridge.G1BridgeCore`:

* DDS side (`surgbot.hw.unitree`): reads `rt/lowstate` (crc and mode_machine
  checked), streams `rt/arm_sdk` at 500 Hz (crc, mode_machine 5,
  `motor_cmd[29].q` = weight) from a dedicated thread with absolute
  deadlines, so the stream does not depend on the ROS executor's timing;
* ROS side: `/g1/joint_states`, `/g1/imu`, `/g1/arm_command`, services
  `/g1/engage`, `/g1/release`, and `/diagnostics` (state, lowstate age, FAULT).

Parameters (config/g1_bridge.yaml): `g1_domain`, `g1_interface`, `kp`, `kd`
(17 values, upper-body contract order), `max_velocity`, `ramp_time`,
`stale_after`, `release_on_shutdown`, `gravity_compensation`,
`state_publish_hz`, `diagnostics_hz`.
"""

from __future__ import annotations

import math
import sys
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from sensor_msgs.msg import Imu, JointState
from std_srvs.srv import Trigger

from surgbot import contract
from surgbot.control.g1_bridge import (DEFAULT_KD, DEFAULT_KP, UPPER, ArmSdkCommand, G1BridgeCore,
                                       GravityModel, State, upper_limits)
from surgbot.hw import unitree
from surgbot.rosutil import run_node

DIAG_NAME = "g1_bridge"


class G1BridgeNode(Node):
    def __init__(self, **kwargs):
        super().__init__("g1_bridge", **kwargs)
        p = self.declare_parameter
        self.g1_domain = int(p("g1_domain", contract.G1_SIM_DOMAIN).value)
        self.g1_interface = str(p("g1_interface", contract.G1_SIM_INTERFACE).value)
        kp = list(p("kp", DEFAULT_KP.tolist()).value)
        kd = list(p("kd", DEFAULT_KD.tolist()).value)
        max_velocity = float(p("max_velocity", 0.5).value)
        ramp_time = float(p("ramp_time", 2.0).value)
        stale_after = float(p("stale_after", 0.05).value)
        release_on_shutdown = bool(p("release_on_shutdown", False).value)
        gravity = bool(p("gravity_compensation", True).value)
        self.rate_hz = float(p("rate_hz", contract.G1_LOWSTATE_HZ).value)
        state_hz = float(p("state_publish_hz", 250.0).value)
        diag_hz = float(p("diagnostics_hz", 10.0).value)

        self.core = G1BridgeCore(limits=upper_limits(), kp=kp, kd=kd, max_velocity=max_velocity,
                                 ramp_time=ramp_time, stale_after=stale_after, dt=1.0 / self.rate_hz,
                                 gravity=GravityModel() if gravity else None,
                                 release_on_shutdown=release_on_shutdown)
        self.lock = threading.Lock()
        self._latest = None          # latest decoded lowstate record
        self._published_tick = None
        self.lowstate_bad_crc = 0
        self.lowstate_bad_mode_machine = 0
        self.last_rejection = ""

        # DDS
        from unitree_sdk2py.idl.unitree_hg.msg.dds_ import LowCmd_, LowState_
        unitree.init_channel(self.g1_domain, self.g1_interface)
        self._dp = unitree.participant()
        self._arm_writer = unitree.RawWriter(self._dp, contract.G1_TOPIC_ARM_SDK, LowCmd_)
        self._lowstate_reader = unitree.RawReader(self._dp, contract.G1_TOPIC_LOWSTATE, LowState_,
                                                  self._on_lowstate)
        self._cmd = unitree.new_lowcmd()
        self._cmd["mode_machine"] = unitree.MODE_MACHINE

        # ROS
        self.pub_js = self.create_publisher(JointState, contract.G1_JOINT_STATES, 10)
        self.pub_imu = self.create_publisher(Imu, contract.G1_IMU, 10)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_subscription(JointState, contract.G1_ARM_COMMAND, self._on_arm_command, 10)
        self.create_service(Trigger, contract.G1_ENGAGE, self._on_engage)
        self.create_service(Trigger, contract.G1_RELEASE, self._on_release)
        self.create_timer(1.0 / state_hz, self._publish_state)
        self.create_timer(1.0 / diag_hz, self._publish_diagnostics)

        self._stop = threading.Event()
        self._stream_thread = threading.Thread(target=self._stream_loop, name="arm_sdk", daemon=True)
        self._stream_thread.start()
        self.get_logger().info(f"G1 bridge on unitree DDS domain {self.g1_domain} interface "
                               f"{self.g1_interface}; rt/arm_sdk at {self.rate_hz:.0f} Hz when engaged")

    # ------------------------------------------------------------------ DDS in
    def _on_lowstate(self, data: bytes, t_recv: float) -> None:
        rec, crc_ok = unitree.decode_lowstate(data)
        if rec is None or not crc_ok:
            self.lowstate_bad_crc += 1
            return
        if int(rec["mode_machine"]) != unitree.MODE_MACHINE:
            self.lowstate_bad_mode_machine += 1
            return
        ms = rec["motor_state"]
        n = contract.G1_NUM_JOINTS
        with self.lock:
            self.core.on_lowstate(ms["q"][:n], ms["dq"][:n], int(rec["tick"]), t_recv,
                                  rec["imu_state"]["quaternion"])
            self._latest = rec

    # ------------------------------------------------------------------ DDS out
    def _write(self, c: ArmSdkCommand) -> None:
        mc = self._cmd["motor_cmd"]
        ub = list(UPPER)
        mc["mode"][ub] = 1
        mc["q"][ub] = c.q
        mc["dq"][ub] = c.dq
        mc["tau"][ub] = c.tau
        mc["kp"][ub] = c.kp
        mc["kd"][ub] = c.kd
        mc["q"][contract.G1_ARM_SDK_WEIGHT_INDEX] = c.weight
        self._arm_writer.write(unitree.encode_lowcmd(self._cmd))

    def _stream_loop(self) -> None:
        period = 1.0 / self.rate_hz
        deadline = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            with self.lock:
                was = self.core.state
                cmd = self.core.step(now)
                state, reason = self.core.state, self.core.reason
            if cmd is not None:
                self._write(cmd)
            if state != was:
                # one call site per severity: rclpy raises if a call site changes severity (it
                # killed this thread on the first FAULT)
                if state == State.FAULT:
                    self.get_logger().error(f"{was.value} -> {state.value}: {reason}")
                else:
                    self.get_logger().info(f"{was.value} -> {state.value}: {reason}")
            deadline += period
            delay = deadline - time.monotonic()
            if delay < -0.05:        # overran badly (machine stalled): resynchronise
                deadline = time.monotonic()
            elif delay > 0:
                time.sleep(delay)

    # ------------------------------------------------------------------ ROS
    def _on_arm_command(self, msg: JointState) -> None:
        with self.lock:
            res = self.core.command(list(msg.name), list(msg.position), list(msg.velocity),
                                    now=time.monotonic())
        if not res:
            self.last_rejection = res.reason
            self.get_logger().error(f"{contract.G1_ARM_COMMAND} rejected: {res.reason}",
                                    throttle_duration_sec=1.0)

    def _on_engage(self, _req, resp):
        with self.lock:
            res = self.core.engage(time.monotonic())
        resp.success, resp.message = res.ok, res.reason
        self.get_logger().info(f"engage: {res.ok} {res.reason}")
        return resp

    def _on_release(self, _req, resp):
        with self.lock:
            res = self.core.release(time.monotonic())
        resp.success, resp.message = res.ok, res.reason
        self.get_logger().info(f"release: {res.ok} {res.reason}")
        return resp

    def _publish_state(self) -> None:
        with self.lock:
            rec = self._latest
        if rec is None or int(rec["tick"]) == self._published_tick:
            return
        self._published_tick = int(rec["tick"])
        n = contract.G1_NUM_JOINTS
        ms = rec["motor_state"]
        stamp = self.get_clock().now().to_msg()
        js = JointState()
        js.header.stamp = stamp
        js.name = list(contract.G1_JOINT_NAMES)
        js.position = ms["q"][:n].astype(float).tolist()
        js.velocity = ms["dq"][:n].astype(float).tolist()
        js.effort = ms["tau_est"][:n].astype(float).tolist()
        self.pub_js.publish(js)
        imu = rec["imu_state"]
        m = Imu()
        m.header.stamp = stamp
        m.header.frame_id = "imu"
        w, x, y, z = (float(v) for v in imu["quaternion"])
        m.orientation.x, m.orientation.y, m.orientation.z, m.orientation.w = x, y, z, w
        g = imu["gyroscope"]
        a = imu["accelerometer"]
        m.angular_velocity.x, m.angular_velocity.y, m.angular_velocity.z = (float(v) for v in g)
        m.linear_acceleration.x, m.linear_acceleration.y, m.linear_acceleration.z = (float(v) for v in a)
        self.pub_imu.publish(m)

    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        with self.lock:
            st = self.core.status(now)
        s = DiagnosticStatus()
        s.name = DIAG_NAME
        s.hardware_id = f"unitree_g1 domain {self.g1_domain} {self.g1_interface}"
        s.level = {"FAULT": DiagnosticStatus.ERROR}.get(st["state"], DiagnosticStatus.OK)
        reason = st["reason"]
        if st["state"] == "IDLE" and st["lowstate_age"] > self.core.stale_after:
            s.level = DiagnosticStatus.WARN
            reason = "no fresh rt/lowstate" if math.isfinite(st["lowstate_age"]) else "waiting for rt/lowstate"
        s.message = f"{st['state']}: {reason}"
        age = st["lowstate_age"]
        values = dict(st, lowstate_age_ms=(age * 1e3 if math.isfinite(age) else -1.0),
                      lowstate_bad_crc=self.lowstate_bad_crc,
                      lowstate_bad_mode_machine=self.lowstate_bad_mode_machine,
                      last_rejection=self.last_rejection)
        values.pop("lowstate_age")
        s.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status = [s]
        self.pub_diag.publish(arr)

    # ------------------------------------------------------------------ shutdown
    def shutdown(self) -> None:
        """Stop streaming; ramp the weight down first only if release_on_shutdown."""
        with self.lock:
            res = self.core.shutdown(time.monotonic())
        if res.ok:
            self.get_logger().warning(res.reason)
            deadline = time.monotonic() + self.core.ramp_time + 0.5
            while time.monotonic() < deadline:
                with self.lock:
                    if self.core.state not in (State.RELEASING,):
                        break
                time.sleep(0.01)
        else:
            self.get_logger().warning(f"shutdown: {res.reason}")
        self._stop.set()
        self._stream_thread.join(timeout=1.0)


def main(args: list[str] | None = None) -> int:
    return run_node(G1BridgeNode, args, on_shutdown=lambda node: node.shutdown())


if __name__ == "__main__":
    sys.exit(main())
