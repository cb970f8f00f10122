"""Endoscope camera twin: renders `endoscope_camera` headless in its own thread.

Rendering (10-20 ms a frame on a CPU GL) must never hold up physics, so the
twin keeps a private `MjData`: under `world.lock` it copies the state
(qpos/qvel/act/mocap/time, microseconds), then runs `mj_forward` and renders
outside the lock.  The GL context is created in the render thread (osmesa and
EGL contexts are current in one thread only).

With `world.ros_node` set it publishes `/endoscope/image_raw` (rgb8),
`/endoscope/image_raw/compressed` (jpeg) and `/endoscope/camera_info`
(pinhole K from the MuJoCo camera's vertical field of view), frame
`endoscope_tip` (the optical frame: z forward, x right, y down).
"""

from __future__ import annotations

import logging
import math
import threading
import time

import mujoco
import numpy as np

from surgbot import contract

log = logging.getLogger("surgbot.sim.camera")

DEFAULT_WIDTH = 320
DEFAULT_HEIGHT = 240
DEFAULT_HZ = 30.0
HIDDEN_GEOM_GROUP = 3      # sim.scene.OUTER_GROUP: box lid/walls, head shell


def intrinsics(fovy_deg: float, width: int, height: int) -> np.ndarray:
    """3x3 pinhole matrix of a MuJoCo camera (fovy is vertical, square pixels)."""
    f = 0.5 * height / math.tan(math.radians(fovy_deg) / 2.0)
    return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])


class EndoscopeCamera:
    """Twin: renders the endoscope view at `hz` (wall clock) and publishes it."""

    name = "endoscope_camera"

    def __init__(self, width: int = DEFAULT_WIDTH, height: int = DEFAULT_HEIGHT, hz: float = DEFAULT_HZ,
                 camera: str = "endoscope_camera", jpeg_quality: int = 80):
        if not (16 <= int(width) <= 1280 and 16 <= int(height) <= 960):
            raise ValueError(f"camera size {width}x{height} outside 16x16 .. 1280x960")
        if not (math.isfinite(hz) and 0.0 < hz <= 240.0):
            raise ValueError(f"camera rate {hz} Hz outside (0, 240]")
        self.width, self.height, self.hz = int(width), int(height), float(hz)
        self.camera = camera
        self.jpeg_quality = int(jpeg_quality)
        self.frames = 0                     # frames rendered (and published, with ROS)
        self.render_ms: list[float] = []    # per-frame render time (forward + render), last 1000
        self.error: str | None = None
        self._latest: tuple[np.ndarray, int] | None = None
        self._latest_lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._t_start = None
        self._t_last = None

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
        self._pubs = None
        node = world.ros_node
        if node is not None:
            from rclpy.qos import QoSProfile, ReliabilityPolicy, HistoryPolicy
            from sensor_msgs.msg import CameraInfo, CompressedImage, Image
            qos = QoSProfile(depth=2, history=HistoryPolicy.KEEP_LAST, reliability=ReliabilityPolicy.RELIABLE)
            self._pubs = (node.create_publisher(Image, contract.ENDOSCOPE_IMAGE, qos),
                          node.create_publisher(CompressedImage, contract.ENDOSCOPE_IMAGE_COMPRESSED, qos),
                          node.create_publisher(CameraInfo, contract.ENDOSCOPE_CAMERA_INFO, qos))
        self._thread = threading.Thread(target=self._run, name="endoscope-camera", daemon=True)
        self._thread.start()
        # First frame (GL context up) before physics starts, so a broken GL shows at once.
        if not self._ready.wait(30.0):
            log.warning("endoscope camera: renderer not ready after 30 s")
        if self.error:
            raise RuntimeError(f"endoscope camera failed: {self.error}")

    def before_step(self, world) -> None:
        pass

    def after_step(self, world) -> None:
        pass

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10.0)
            self._thread = None

    # ------------------------------------------------------------------ results
    @property
    def rate_hz(self) -> float:
        """Achieved frame rate since the first frame (wall clock)."""
        if self._t_start is None or self._t_last is None or self.frames < 2:
            return 0.0
        span = self._t_last - self._t_start
        return (self.frames - 1) / span if span > 0 else 0.0

    def latest(self) -> tuple[np.ndarray, int] | None:
        """Last frame (HxWx3 uint8, read-only) and its stamp in ns, or None."""
        with self._latest_lock:
            return self._latest

    # ------------------------------------------------------------------ render thread
    def _run(self) -> None:
        world = self.world
        model = world.model
        try:
            renderer = mujoco.Renderer(model, self.height, self.width)
        except Exception as exc:  # noqa: BLE001 - reported by bind(), not swallowed
            self.error = f"{type(exc).__name__}: {exc}"
            self._ready.set()
            return
        data = mujoco.MjData(model)
        option = mujoco.MjvOption()
        option.geomgroup[HIDDEN_GEOM_GROUP] = 0
        period = 1.0 / self.hz
        next_t = time.perf_counter()
        try:
            while not self._stop.is_set():
                t0 = time.perf_counter()
                with world.lock:
                    data.qpos[:] = world.data.qpos
                    data.qvel[:] = world.data.qvel
                    if model.na:
                        data.act[:] = world.data.act
                    if model.nmocap:
                        data.mocap_pos[:] = world.data.mocap_pos
                        data.mocap_quat[:] = world.data.mocap_quat
                    data.time = world.data.time
                    stamp_ns = world.stamp_ns()
                mujoco.mj_forward(model, data)
                renderer.update_scene(data, camera=self._cam_id, scene_option=option)
                image = renderer.render()
                t1 = time.perf_counter()
                self.render_ms.append((t1 - t0) * 1e3)
                if len(self.render_ms) > 1000:
                    del self.render_ms[:500]
                with self._latest_lock:
                    image.flags.writeable = False
                    self._latest = (image, stamp_ns)
                if self._pubs is not None:
                    self._publish(image, stamp_ns)
                self.frames += 1
                self._t_last = time.perf_counter()
                if self._t_start is None:
                    self._t_start = self._t_last
                    self._ready.set()
                next_t += period
                delay = next_t - time.perf_counter()
                if delay > 0:
                    self._stop.wait(delay)
                elif delay < -period:
                    next_t = time.perf_counter()     # fell behind: don't try to catch up in a burst
        except Exception as exc:  # noqa: BLE001 - a dead camera must be visible, not silent
            self.error = f"{type(exc).__name__}: {exc}"
            log.error("endoscope camera stopped: %s", self.error)
            self._ready.set()
        finally:
            renderer.close()

    def _publish(self, image: np.ndarray, stamp_ns: int) -> None:
        import cv2
        from builtin_interfaces.msg import Time
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image
        stamp = Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)
        frame = contract.ENDOSCOPE_TIP_FRAME
        img = Image()
        img.header.stamp, img.header.frame_id = stamp, frame
        img.height, img.width = self.height, self.width
        img.encoding, img.is_bigendian, img.step = "rgb8", 0, self.width * 3
        img.data = image.tobytes()
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                                [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        info = CameraInfo()
        info.header.stamp, info.header.frame_id = stamp, frame
        info.height, info.width = self.height, self.width
        info.distortion_model = "plumb_bob"
        info.d = [0.0] * 5
        info.k = [float(x) for x in self.K.flatten()]
        info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        info.p = [float(self.K[0, 0]), 0.0, float(self.K[0, 2]), 0.0,
                  0.0, float(self.K[1, 1]), float(self.K[1, 2]), 0.0, 0.0, 0.0, 1.0, 0.0]
        pub_img, pub_jpeg, pub_info = self._pubs
        pub_img.publish(img)
        if ok:
            cimg = CompressedImage()
            cimg.header.stamp, cimg.header.frame_id = stamp, frame
            cimg.format = "jpeg"
            cimg.data = jpeg.tobytes()
            pub_jpeg.publish(cimg)
        pub_info.publish(info)
