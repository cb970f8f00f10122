"""Endoscope camera twin: renders `endoscope_camera` headless in a child process.

Rendering (10-20 ms a frame on a CPU GL) must never hold up physics.  In a
thread it did: `mj_forward` / `Renderer.render` hold the GIL for part of
their run, which put 20-40 ms gaps into the 500 Hz `rt/lowstate` stream (the
G1 bridge's watchdog is 50 ms).  So the renderer is its own process
(`sim.camera_process`, started with `python -m`): it loads the very same
model (the parent's MjModel saved as MJB), gets the state through shared
memory and publishes the ROS topics from its own rclpy node, on the sim
node's domain and namespace.

The physics thread's share, in `after_step`, only when a frame is due and the
child has taken the previous state: copy time/qpos/qvel/act/mocap and the
header stamp (`world.stamp_ns()`) into shared memory under `world.lock`, and
write one byte to the child's stdin.  The child renders at most `hz` frames a
second (wall clock), and puts each frame back into shared memory (`latest()`).

With `world.ros_node` set the child publishes `/endoscope/image_raw` (rgb8),
`/endoscope/image_raw/compressed` (jpeg) and `/endoscope/camera_info`
(pinhole K from the MuJoCo camera's vertical field of view), frame
`endoscope_tip` (the optical frame: z forward, x right, y down).

The child dies with the parent: `close()` stops it, and it exits by itself
when its stdin reaches EOF (the parent died, even by SIGKILL) or its parent
pid changes.
"""

from __future__ import annotations

import json
import logging
import math
import mmap
import os
import select
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import mujoco
import numpy as np

from surgbot import contract
from surgbot.sim.camera_model import intrinsics
from surgbot.sim.camera_process import (
    CONSUMED,
    FRAME_SEQ,
    FRAME_STAMP,
    FRAMES,
    RENDER_COUNT,
    RENDER_RING,
    STATE_SEQ,
    STATE_STAMP,
    STOP,
    T_FIRST,
    T_LAST,
    Layout,
)

log = logging.getLogger("surgbot.sim.camera")

DEFAULT_WIDTH = 320
DEFAULT_HEIGHT = 240
DEFAULT_HZ = 30.0
# Multisample anti-aliasing of the twin's camera renders: off.  Measured (320x240 box_trainer
# view, osmesa/llvmpipe, 2 cores): 16 ms of CPU per frame with the model's 4 samples, 7 ms with
# none, i.e. 48 % -> 21 % of a core at 30 Hz on a machine where every node competes for CPU.
# The policy node area-downsamples the frame to its input size (3.3x here), which anti-aliases
# it anyway; the console video shows stair-stepped edges.  The Gymnasium env renders at the
# policy's size directly and keeps the model's own setting.
TWIN_MSAA_SAMPLES = 0
READY_TIMEOUT_S = 30.0
OVERVIEW_CAMERA = "overview"                # sim.scene: the outside view of humanoid, scope and PSM
_REPO = Path(__file__).resolve().parent.parent


def _anonymous_file(name: str, content: bytes | None = None, size: int = 0) -> int:
    """fd of an unnamed in-memory file (nothing to unlink, gone with its last holder)."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create(name)
    else:  # pragma: no cover - non-Linux
        f = tempfile.TemporaryFile()
        fd = os.dup(f.fileno())
        f.close()
    if content is not None:
        view = memoryview(content)
        while view:
            view = view[os.write(fd, view):]
        os.lseek(fd, 0, os.SEEK_SET)
    else:
        os.ftruncate(fd, size)
    return fd


def _read_line(stream, timeout: float) -> str | None:
    """One line from a child's stdout pipe, None on timeout."""
    fd = stream.fileno()
    buf = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return None
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        buf += chunk
    return buf.decode("utf-8", "replace").split("\n", 1)[0]


@dataclass(frozen=True)
class CameraTopics:
    """Where a rendered camera publishes (image, JPEG, camera info) and its frame id."""

    image: str
    compressed: str
    info: str
    frame_id: str


ENDOSCOPE_TOPICS = CameraTopics(contract.ENDOSCOPE_IMAGE, contract.ENDOSCOPE_IMAGE_COMPRESSED,
                                contract.ENDOSCOPE_CAMERA_INFO, contract.ENDOSCOPE_TIP_FRAME)
OVERVIEW_TOPICS = CameraTopics(contract.SIM_OVERVIEW_IMAGE, contract.SIM_OVERVIEW_IMAGE_COMPRESSED,
                               contract.SIM_OVERVIEW_CAMERA_INFO, contract.SIM_OVERVIEW_FRAME)


OVERVIEW_WIDTH, OVERVIEW_HEIGHT = 480, 360


def overview_camera(hz: float) -> EndoscopeCamera:
    """The outside camera of the scene (humanoid, scope, PSM) on /sim/overview/*."""
    return EndoscopeCamera(OVERVIEW_WIDTH, OVERVIEW_HEIGHT, hz, camera=OVERVIEW_CAMERA, topics=OVERVIEW_TOPICS,
                           hide_outer=False, name="overview_camera")


class EndoscopeCamera:
    """Twin: renders the endoscope view at `hz` (wall clock) in a child process and publishes it.

    The same machinery renders the scene's outside `overview` camera (`overview_camera()`):
    other topics, and the box walls/lid and head shell left visible.
    """

    def __init__(self, width: int = DEFAULT_WIDTH, height: int = DEFAULT_HEIGHT, hz: float = DEFAULT_HZ,
                 camera: str = "endoscope_camera", jpeg_quality: int = 80,
                 topics: CameraTopics = ENDOSCOPE_TOPICS, hide_outer: bool = True, name: str = "endoscope_camera"):
        if not (16 <= int(width) <= 1280 and 16 <= int(height) <= 960):
            raise ValueError(f"camera size {width}x{height} outside 16x16 .. 1280x960")
        if not (math.isfinite(hz) and 0.0 < hz <= 240.0):
            raise ValueError(f"camera rate {hz} Hz outside (0, 240]")
        self.width, self.height, self.hz = int(width), int(height), float(hz)
        self.camera = camera
        self.name = name                        # the twin's name in the world (one per camera)
        self.topics = topics
        self.hide_outer = bool(hide_outer)
        self.jpeg_quality = int(jpeg_quality)
        self._period = 1.0 / self.hz
        self._proc: subprocess.Popen | None = None
        self._block: mmap.mmap | None = None
        self._shm: Layout | None = None
        self._pipe_fd: int | None = None
        self._lock = threading.Lock()           # latest() from other threads vs close()
        self._latest_cache: tuple[int, tuple[np.ndarray, int]] | None = None
        self._next_due = 0.0
        self._next_check = 0.0
        self._parent_error: str | None = None
        # What the accessors return once the child is gone.
        self._final = {"frames": 0, "render_ms": [], "rate_hz": 0.0, "error": None, "latest": None}

    # ------------------------------------------------------------------ twin hooks
    def bind(self, world) -> None:
        self.world = world
        model = world.model
        self._cam_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, self.camera)
        if self._cam_id < 0:
            raise ValueError(f"model has no camera {self.camera!r}")
        if model.vis.global_.offwidth < self.width or model.vis.global_.offheight < self.height:
            raise ValueError(f"camera {self.width}x{self.height} larger than the model's offscreen buffer "
                             f"{model.vis.global_.offwidth}x{model.vis.global_.offheight}")
        self.K = intrinsics(float(model.cam_fovy[self._cam_id]), self.width, self.height)
        sizes = dict(nq=model.nq, nv=model.nv, na=model.na, nmocap=model.nmocap, nbody=model.nbody,
                     width=self.width, height=self.height)
        block_size = Layout.nbytes(**sizes)
        block_fd = _anonymous_file("surgbot-endoscope-state", size=block_size)
        mjb = np.zeros(mujoco.mj_sizeModel(model), np.uint8)
        mujoco.mj_saveModel(model, None, mjb)
        model_fd = _anonymous_file("surgbot-endoscope-model", content=mjb.tobytes())
        try:
            self._block = mmap.mmap(block_fd, block_size)
            self._shm = Layout(self._block, **sizes)
            with world.lock:
                self._write_state(world)        # the first frame is rendered before physics starts
            node = world.ros_node
            spec = {
                "block_fd": block_fd, "block_size": block_size, "model_fd": model_fd, "sizes": sizes,
                "width": self.width, "height": self.height, "camera_id": int(self._cam_id),
                "jpeg_quality": self.jpeg_quality, "parent_pid": os.getpid(), "ros": node is not None,
                "domain_id": node.context.get_domain_id() if node is not None else None,
                "namespace": node.get_namespace() if node is not None else None,
                "node_name": f"sim_{self.name}", "frame_id": self.topics.frame_id,
                "topics": [self.topics.image, self.topics.compressed, self.topics.info],
                "hide_outer": self.hide_outer, "msaa_samples": TWIN_MSAA_SAMPLES,
            }
            gl = os.environ.get("MUJOCO_GL", "osmesa")
            env = dict(os.environ, MUJOCO_GL=gl, PYOPENGL_PLATFORM=os.environ.get("PYOPENGL_PLATFORM", gl))
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_REPO), env.get("PYTHONPATH")) if p)
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "surgbot.sim.camera_process", json.dumps(spec)], cwd=str(_REPO), env=env,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=(block_fd, model_fd))
        except Exception:
            self.close()
            raise
        finally:
            os.close(block_fd)
            os.close(model_fd)
        self._pipe_fd = self._proc.stdin.fileno()
        os.set_blocking(self._pipe_fd, False)       # the physics thread never waits on the child
        self._signal()
        # First frame (GL context and ROS node up) before physics starts, so a broken GL shows at once.
        line = _read_line(self._proc.stdout, READY_TIMEOUT_S)
        self._proc.stdout.close()
        if line is None:
            log.warning("endoscope camera: renderer not ready after %.0f s", READY_TIMEOUT_S)
        elif line != "ready":
            error = self.error or (line[len("error "):] if line.startswith("error ") else
                                   f"renderer process exited with code {self._proc.wait(5)}")
            self.close()
            raise RuntimeError(f"endoscope camera failed: {error}")
        self._next_due = time.perf_counter() + self._period

    def before_step(self, world) -> None:
        pass

    def after_step(self, world) -> None:
        now = time.perf_counter()
        if now < self._next_due or self._shm is None:
            return
        header = self._shm.header
        if header[CONSUMED] != header[STATE_SEQ]:
            # Still rendering the last state: try again next step; see once a second that it lives.
            if now >= self._next_check:
                self._next_check = now + 1.0
                self._check_alive()
            return
        with world.lock:
            self._write_state(world)
        self._signal()
        self._next_due += self._period
        if self._next_due < now - self._period:
            self._next_due = now                # fell behind: don't try to catch up in a burst

    def close(self) -> None:
        with self._lock:
            proc, shm = self._proc, self._shm
            if shm is not None:
                shm.header[STOP] = 1
            if proc is not None:
                try:
                    proc.stdin.close()          # EOF: the child leaves its loop
                except OSError:
                    pass
                try:
                    proc.wait(5.0)
                except subprocess.TimeoutExpired:
                    proc.terminate()
                    try:
                        proc.wait(2.0)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
            if shm is not None:
                self._final = {"frames": self.frames, "render_ms": self.render_ms, "rate_hz": self.rate_hz,
                               "error": self.error, "latest": self._read_latest()}
            self._proc = self._shm = None
            self._pipe_fd = None
            self._latest_cache = None
            if self._block is not None:
                del shm
                try:
                    self._block.close()
                except BufferError:             # a view still alive somewhere: the GC unmaps it
                    pass
                self._block = None

    # ------------------------------------------------------------------ results
    @property
    def pid(self) -> int | None:
        """Renderer process id while it runs (bound and not closed), else None."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def frames(self) -> int:
        """Frames rendered (and published, with ROS)."""
        shm = self._shm
        return int(shm.header[FRAMES]) if shm is not None else self._final["frames"]

    @property
    def render_ms(self) -> list[float]:
        """Per-frame render time (state copy + forward + render, in the child), oldest first, last 1000."""
        shm = self._shm
        if shm is None:
            return list(self._final["render_ms"])
        n = int(shm.header[RENDER_COUNT])
        ring = shm.render_ms.copy()
        if n <= RENDER_RING:
            return ring[:n].tolist()
        start = n % RENDER_RING
        return np.concatenate([ring[start:], ring[:start]]).tolist()

    @property
    def rate_hz(self) -> float:
        """Achieved frame rate (wall clock) since the first frame rendered while physics runs."""
        shm = self._shm
        if shm is None:
            return self._final["rate_hz"]
        frames = int(shm.header[FRAMES])
        span = float(shm.times[T_LAST] - shm.times[T_FIRST])
        return (frames - 2) / span if frames >= 3 and span > 0 else 0.0

    @property
    def error(self) -> str | None:
        """Why the renderer stopped (None while it runs)."""
        shm = self._shm
        if shm is None:
            return self._final["error"]
        return shm.get_error() or self._parent_error

    def latest(self) -> tuple[np.ndarray, int] | None:
        """Last frame (HxWx3 uint8, read-only copy) and its stamp in ns, or None."""
        with self._lock:
            if self._shm is None:
                return self._final["latest"]
            return self._read_latest()

    # ------------------------------------------------------------------ internals
    def _read_latest(self) -> tuple[np.ndarray, int] | None:
        """Seqlock read of the child's frame (retries while the child is writing it)."""
        shm = self._shm
        header = shm.header
        for _ in range(50):
            seq = int(header[FRAME_SEQ])
            if seq == 0:
                return None
            if self._latest_cache is not None and self._latest_cache[0] == seq:
                return self._latest_cache[1]
            if seq & 1:
                time.sleep(0.0005)
                continue
            image = shm.image.copy()
            stamp_ns = int(header[FRAME_STAMP])
            if int(header[FRAME_SEQ]) == seq:
                image.flags.writeable = False
                self._latest_cache = (seq, (image, stamp_ns))
                return self._latest_cache[1]
        return self._latest_cache[1] if self._latest_cache is not None else None

    def _write_state(self, world) -> None:
        """Copy the state for the next frame (caller holds world.lock; microseconds)."""
        shm, d = self._shm, world.data
        shm.state_time[0] = d.time
        shm.qpos[:] = d.qpos
        shm.qvel[:] = d.qvel
        if shm.act.size:
            shm.act[:] = d.act
        if shm.mocap_pos.size:
            shm.mocap_pos[:] = d.mocap_pos
            shm.mocap_quat[:] = d.mocap_quat
        shm.body_pos[:] = world.model.body_pos
        shm.body_quat[:] = world.model.body_quat
        shm.header[STATE_STAMP] = world.stamp_ns()
        shm.header[STATE_SEQ] += 1              # last: the child reads the state after seeing this

    def _signal(self) -> None:
        """Wake the child (one byte on its stdin; never blocks)."""
        try:
            os.write(self._pipe_fd, b"\x01")
        except BlockingIOError:
            pass                                # it has a backlog of wake-ups already
        except OSError:
            self._check_alive()

    def _check_alive(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is not None and self._parent_error is None:
            self._parent_error = f"renderer process exited with code {proc.returncode}"
            log.error("endoscope camera stopped: %s", self.error)
