"""Endoscope renderer process: the child side of `surgbot.sim.camera.EndoscopeCamera`.

Rendering in the sim process, even in a thread, stalled physics: mujoco's
`mj_forward` and `Renderer.render` hold the GIL for part of their run, so the
500 Hz `rt/lowstate` stream had gaps of 20-40 ms.  This process owns its own
GIL, GL context and (with ROS) rclpy node; the sim process only copies the
state into shared memory when a frame is due.

Protocol (all in one shared block, see `Layout`; written by one side each):

* parent -> child: the state (time, qpos, qvel, act, mocap) and its header
  stamp, then `STATE_SEQ` += 1, then one byte on the child's stdin (wakes
  it).  The parent writes a new state only once the child has set
  `CONSUMED = STATE_SEQ`, i.e. has copied the last one out.
* child -> parent: the latest frame under a seqlock (`FRAME_SEQ` odd while
  writing), frame count, per-frame render times, first/last frame times and
  an error message; one line `ready` / `error ...` on stdout after the first
  frame (then stdout goes to /dev/null: this process prints nothing).

The child exits when stdin reaches EOF (the parent closed it or died), when
`STOP` is set, or when its parent pid changes.

Run as `python -m surgbot.sim.camera_process SPEC_JSON` with the block's fd and the
model's (MJB) fd passed open.
"""

from __future__ import annotations

import os

# Before mujoco is imported: the GL backend the parent chose (it passes its own).
os.environ.setdefault("MUJOCO_GL", "osmesa")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])

import json
import mmap
import select
import signal
import sys
import time

import cv2
import mujoco
import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from surgbot.geometry import ns_to_stamp
from surgbot.processes import leave_realtime_scheduling, lower_priority
from surgbot.sim.camera_model import intrinsics
from surgbot.sim.scene_layouts import OUTER_GROUP

# Header slots (int64).
STATE_SEQ, CONSUMED, STATE_STAMP, FRAME_SEQ, FRAME_STAMP, FRAMES, STOP, ERROR_LEN, RENDER_COUNT = range(9)
HEADER_SLOTS = 16
# Time slots (float64, perf_counter seconds in the child): frame 2, last frame.
T_FIRST, T_LAST = range(2)
RENDER_RING = 1000
ERROR_BYTES = 1024
# Under CPU contention (2 cores) the physics process gets the larger share:
# a late frame is a dropped frame, a late physics step is a lowstate gap.
RENDER_NICE = 5


def _align(n: int, a: int = 64) -> int:
    return (n + a - 1) // a * a


class Layout:
    """Views of the shared block; the same arithmetic on both sides."""

    def __init__(self, buf, nq: int, nv: int, na: int, nmocap: int, nbody: int, width: int, height: int):
        self.sizes = dict(nq=nq, nv=nv, na=na, nmocap=nmocap, nbody=nbody, width=width, height=height)
        off = 0

        def take(dtype, count):
            nonlocal off
            view = np.frombuffer(buf, dtype=dtype, count=count, offset=off) if buf is not None else None
            off = _align(off + np.dtype(dtype).itemsize * count)
            return view

        self.header = take(np.int64, HEADER_SLOTS)
        self.times = take(np.float64, 4)
        self.state_time = take(np.float64, 1)
        self.qpos = take(np.float64, nq)
        self.qvel = take(np.float64, nv)
        self.act = take(np.float64, na)
        self.mocap_pos = take(np.float64, 3 * nmocap)
        self.mocap_quat = take(np.float64, 4 * nmocap)
        # Static bodies a task moves in the model (sim.tasks.apply_layout) during a run.
        self.body_pos = take(np.float64, 3 * nbody)
        self.body_quat = take(np.float64, 4 * nbody)
        self.render_ms = take(np.float64, RENDER_RING)
        self.error = take(np.uint8, ERROR_BYTES)
        self.image = take(np.uint8, height * width * 3)
        self.size = off
        if buf is not None:
            self.image = self.image.reshape(height, width, 3)
            self.mocap_pos = self.mocap_pos.reshape(nmocap, 3)
            self.mocap_quat = self.mocap_quat.reshape(nmocap, 4)
            self.body_pos = self.body_pos.reshape(nbody, 3)
            self.body_quat = self.body_quat.reshape(nbody, 4)

    @classmethod
    def nbytes(cls, **sizes) -> int:
        return cls(None, **sizes).size

    def set_error(self, message: str) -> None:
        raw = message.encode("utf-8", "replace")[:ERROR_BYTES]
        self.error[:len(raw)] = np.frombuffer(raw, np.uint8)
        self.header[ERROR_LEN] = len(raw)

    def get_error(self) -> str | None:
        n = int(self.header[ERROR_LEN])
        return bytes(self.error[:n]).decode("utf-8", "replace") if n else None


class _Publisher:
    """rclpy node of its own publishing the camera's three topics (image, JPEG, camera info)."""

    def __init__(self, spec: dict, K: np.ndarray):
        self.frame_id = spec["frame_id"]
        self.width, self.height, self.K = spec["width"], spec["height"], K
        self.jpeg_quality = int(spec["jpeg_quality"])
        self.context = rclpy.Context()
        rclpy.init(args=[], context=self.context, domain_id=spec["domain_id"],
                   signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node(spec["node_name"], namespace=spec["namespace"] or None, context=self.context)
        qos = QoSProfile(depth=2, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
        image_topic, jpeg_topic, info_topic = spec["topics"]
        self.pub_img = self.node.create_publisher(Image, image_topic, qos)
        self.pub_jpeg = self.node.create_publisher(CompressedImage, jpeg_topic, qos)
        self.pub_info = self.node.create_publisher(CameraInfo, info_topic, qos)

    def publish(self, image: np.ndarray, stamp_ns: int) -> None:
        stamp = ns_to_stamp(stamp_ns, Time())
        frame = self.frame_id
        K = self.K
        # a topic nobody takes is not built (an idle stack has no console: no JPEG to encode)
        if self.pub_img.get_subscription_count():
            img = Image()
            img.header.stamp, img.header.frame_id = stamp, frame
            img.height, img.width = self.height, self.width
            img.encoding, img.is_bigendian, img.step = "rgb8", 0, self.width * 3
            img.data = image.tobytes()
            self.pub_img.publish(img)
        if self.pub_jpeg.get_subscription_count():
            ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                                    [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
            if ok:
                cimg = CompressedImage()
                cimg.header.stamp, cimg.header.frame_id = stamp, frame
                cimg.format = "jpeg"
                cimg.data = jpeg.tobytes()
                self.pub_jpeg.publish(cimg)
        info = CameraInfo()
        info.header.stamp, info.header.frame_id = stamp, frame
        info.height, info.width = self.height, self.width
        info.distortion_model = "plumb_bob"
        info.d = [0.0] * 5
        info.k = [float(x) for x in K.flatten()]
        info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        info.p = [float(K[0, 0]), 0.0, float(K[0, 2]), 0.0,
                  0.0, float(K[1, 1]), float(K[1, 2]), 0.0, 0.0, 0.0, 1.0, 0.0]
        self.pub_info.publish(info)

    def close(self) -> None:
        try:
            self.node.destroy_node()
        finally:
            if self.context.ok():
                self.context.try_shutdown()


def _handshake(line: str) -> None:
    """One line to the parent on stdout, then stdout goes to /dev/null."""
    try:
        os.write(1, (line.replace("\n", " ") + "\n").encode())
    except OSError:
        pass
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    sys.stdout = open(1, "w", closefd=False)  # replaces the closed-over stream


def _wait_for_state(stdin_fd: int, timeout: float) -> bool:
    """Block until the parent signals a state (True) or timeout (False); EOF raises EOFError."""
    ready, _, _ = select.select([stdin_fd], [], [], timeout)
    if not ready:
        return False
    if not os.read(stdin_fd, 4096):
        raise EOFError
    return True


def serve(spec: dict) -> int:
    block = mmap.mmap(spec["block_fd"], spec["block_size"])
    os.close(spec["block_fd"])
    shm = Layout(block, **spec["sizes"])
    header = shm.header
    parent = spec["parent_pid"]
    stdin_fd = 0
    renderer = publisher = None
    handshaken = False
    try:
        with os.fdopen(spec["model_fd"], "rb") as f:
            mjb = f.read()
        model = mujoco.MjModel.from_binary_path("model.mjb", {"model.mjb": mjb})
        sizes = dict(nq=model.nq, nv=model.nv, na=model.na, nmocap=model.nmocap, nbody=model.nbody,
                     width=spec["width"], height=spec["height"])
        if sizes != spec["sizes"]:
            raise RuntimeError(f"model mismatch: parent {spec['sizes']}, child {sizes}")
        cam_id = int(spec["camera_id"])
        K = intrinsics(float(model.cam_fovy[cam_id]), spec["width"], spec["height"])
        model.vis.quality.offsamples = int(spec["msaa_samples"])   # before the GL context is made
        renderer = mujoco.Renderer(model, spec["height"], spec["width"])
        if spec["ros"]:
            publisher = _Publisher(spec, K)
        data = mujoco.MjData(model)
        option = mujoco.MjvOption()
        if spec["hide_outer"]:
            option.geomgroup[OUTER_GROUP] = 0     # box lid/walls, head shell
        last_seq = 0
        while not header[STOP]:
            try:
                signalled = _wait_for_state(stdin_fd, 0.5)
            except EOFError:
                break                               # parent closed the pipe or died
            if not signalled and os.getppid() != parent:
                break
            seq = int(header[STATE_SEQ])
            if seq == last_seq:
                continue
            t0 = time.perf_counter()
            data.time = float(shm.state_time[0])
            data.qpos[:] = shm.qpos
            data.qvel[:] = shm.qvel
            if model.na:
                data.act[:] = shm.act
            if model.nmocap:
                data.mocap_pos[:] = shm.mocap_pos
                data.mocap_quat[:] = shm.mocap_quat
            model.body_pos[:] = shm.body_pos
            model.body_quat[:] = shm.body_quat
            stamp_ns = int(header[STATE_STAMP])
            last_seq = seq
            header[CONSUMED] = seq                   # the parent may write the next state now
            mujoco.mj_forward(model, data)
            renderer.update_scene(data, camera=cam_id, scene_option=option)
            image = renderer.render()
            t1 = time.perf_counter()
            n = int(header[RENDER_COUNT])
            shm.render_ms[n % RENDER_RING] = (t1 - t0) * 1e3
            header[RENDER_COUNT] = n + 1
            header[FRAME_SEQ] += 1                   # odd: writing
            shm.image[:] = image
            header[FRAME_STAMP] = stamp_ns
            header[FRAME_SEQ] += 1
            header[FRAMES] += 1
            if publisher is not None:
                publisher.publish(image, stamp_ns)
            shm.times[T_LAST] = time.perf_counter()
            if header[FRAMES] == 2:
                # The rate counts from the first frame of the running sim: frame 1 is the
                # state at bind, rendered before the other twins bind and physics starts.
                shm.times[T_FIRST] = shm.times[T_LAST]
            if not handshaken:
                _handshake("ready")
                handshaken = True
    except Exception as exc:  # reported to the parent, not swallowed
        message = f"{type(exc).__name__}: {exc}"
        shm.set_error(message)
        if not handshaken:
            _handshake(f"error {message}")
        return 1
    finally:
        if publisher is not None:
            try:
                publisher.close()
            except Exception:  # best effort at exit
                pass
        if renderer is not None:
            renderer.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    # Ctrl-C in a terminal reaches the whole process group: the parent decides when
    # the camera stops (it closes our stdin), so a SIGINT here would only add noise.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    leave_realtime_scheduling()        # a real-time sim started us: rendering waits behind the chain
    # A session of our own, niced with its scheduling group: in the sim's session the nice value
    # only ordered us against the sim's own threads, not against the other nodes (processes.AUTOGROUP).
    # We stop when the sim closes our stdin, so leaving its session loses nothing.
    try:
        os.setsid()
    except OSError:
        pass                           # already a group leader (started by hand): stay where we are
    try:
        lower_priority(os.getpid(), int(os.environ.get("SURGBOT_CAMERA_NICE", RENDER_NICE)))
    except ValueError:
        pass
    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(argv[0])
    try:
        return serve(spec)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
