"""`surgbot sim`: the MuJoCo twin of the hardware in one process.

Builds the scene, creates the `SimWorld`, brings up the rclpy node `sim_node`
(spun in a background thread), adds the twins (endoscope camera, ground truth,
the G1 over unitree DDS and the PSM over CRTK when their modules exist) and
steps physics in real time (sleep-paced) or as fast as possible (`--fast`,
publishing `/clock`).  Stops on SIGINT/SIGTERM or after `--duration`
simulated seconds and prints the achieved real-time factor and camera rate.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

# Software GL is what a headless CI machine has.  Measured here (bench/sim.py):
# osmesa ~13 ms and EGL (Mesa llvmpipe) ~18 ms a 320x240 endoscope frame, so
# osmesa is the default; set MUJOCO_GL=egl to override.  Must be set before
# mujoco is first imported.
os.environ.setdefault("MUJOCO_GL", "osmesa")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])

import importlib  # after MUJOCO_GL is set, like every import below

import mujoco
import rclpy
from rclpy.signals import SignalHandlerOptions

from surgbot import contract
from surgbot.config import check_ranges, param
from surgbot.errors import CliError
from surgbot.pacing import Pacer
from surgbot.processes import freeze_startup_heap
from surgbot.rosutil import BackgroundSpinner, make_executor
from surgbot.sim.camera import OVERVIEW_CAMERA, EndoscopeCamera, overview_camera
from surgbot.sim.diagnostics import SimDiagnostics
from surgbot.sim.entry_point import EntryPoint
from surgbot.sim.ground_truth import GroundTruth
from surgbot.sim.scene import build_model, has_psm, reset_to_stand
from surgbot.sim.tasks import TASK_NAMES
from surgbot.sim.tasks.twin import TaskTwin
from surgbot.sim.world import SimWorld

NODE_NAME = "sim_node"


CAMERA_SIZE_RANGE = ((16, 1280), (16, 960))    # px, width and height a render may have
MAX_CAMERA_HZ = 240.0
MAX_OVERVIEW_HZ = 30.0
MAX_DDS_DOMAIN = 232
VIEWER_HZ = 30.0                               # passive viewer refresh
STEP_MS_SAMPLES = 200_000                      # step times kept for the figures (~7 min at 2 ms)


def check_camera_hz(hz: float) -> None:
    """ValueError with a one-line reason unless `hz` is an endoscope frame rate the sim renders
    (`surgbot sim`, and `surgbot up` before it starts anything)."""
    if not (math.isfinite(hz) and 0 < hz <= MAX_CAMERA_HZ):
        raise ValueError(f"--camera-hz must be in (0, {MAX_CAMERA_HZ:.0f}], got {hz}")


@dataclass(frozen=True)
class SimConfig:
    """One sim run (`surgbot sim` flags, `sim_node` ROS parameters)."""

    scene: str = param("box_trainer", "task scene (contract SCENES)")
    seed: int = param(0, "object placement seed", lo=0)
    duration: float | None = param(None, "simulated seconds to run; unset: until signalled")
    fast: bool = param(False, "step as fast as possible and publish /clock")
    headless: bool = param(True, "no viewer window (always the case without DISPLAY)")
    g1_domain: int = dataclasses.field(default_factory=contract.g1_sim_domain, metadata={
        "help": f"unitree DDS domain (default $SURGBOT_G1_DOMAIN or {contract.G1_SIM_DOMAIN})",
        "lo": 0, "hi": MAX_DDS_DOMAIN, "read_only": True})
    g1_interface: str = param(contract.G1_SIM_INTERFACE, "unitree DDS network interface")
    camera_width: int = param(320, "px, endoscope image width", lo=CAMERA_SIZE_RANGE[0][0],
                              hi=CAMERA_SIZE_RANGE[0][1])
    camera_height: int = param(240, "px, endoscope image height", lo=CAMERA_SIZE_RANGE[1][0],
                               hi=CAMERA_SIZE_RANGE[1][1])
    camera_hz: float = param(30.0, "Hz, endoscope frame rate", lo=0.0, hi=MAX_CAMERA_HZ)
    camera: bool = param(True, "render the endoscope camera")
    overview_hz: float = param(0.0, "Hz, outside overview camera on /sim/overview/* (0: not rendered)",
                               lo=0.0, hi=MAX_OVERVIEW_HZ)
    model_path: str | None = param(None, "load this MJCF instead of a scene (debugging)")
    ros: bool = param(True, "serve the sim's ROS topics (sim_node)")
    task: str | None = param(None, "task laid out by seed (reach, needle_pick, peg_transfer); unset: none")

    def __post_init__(self):
        check_ranges(self)
        self.validate()

    def validate(self) -> None:
        """Raise ValueError with a one-line reason for bad input."""
        if self.model_path is None and self.scene not in contract.SCENES:
            raise ValueError(f"unknown scene {self.scene!r} (choose from {', '.join(contract.SCENES)})")
        if self.duration is not None and not (math.isfinite(self.duration) and self.duration >= 0):
            raise ValueError(f"--duration must be a finite number >= 0, got {self.duration}")
        (w_lo, w_hi), (h_lo, h_hi) = CAMERA_SIZE_RANGE
        if not (w_lo <= self.camera_width <= w_hi and h_lo <= self.camera_height <= h_hi):
            raise ValueError(f"camera size {self.camera_width}x{self.camera_height} outside "
                             f"{w_lo}x{h_lo} .. {w_hi}x{h_hi}")
        check_camera_hz(self.camera_hz)
        if not (math.isfinite(self.overview_hz) and 0 <= self.overview_hz <= MAX_OVERVIEW_HZ):
            raise ValueError(f"--overview-hz must be in [0, {MAX_OVERVIEW_HZ:.0f}], got {self.overview_hz}")
        if not (0 <= self.g1_domain <= MAX_DDS_DOMAIN):
            raise ValueError(f"--g1-domain must be a DDS domain id 0..{MAX_DDS_DOMAIN}, got {self.g1_domain}")
        if not self.g1_interface or any(c.isspace() for c in self.g1_interface):
            raise ValueError(f"--g1-interface must be a network interface name, got {self.g1_interface!r}")
        if self.task is not None:
            if self.task not in TASK_NAMES:
                raise ValueError(f"unknown task {self.task!r} (choose from {', '.join(TASK_NAMES)})")
            if self.scene != "box_trainer" or self.model_path is not None:
                raise ValueError("--task needs --scene box_trainer (and no --model)")
        if self.model_path is not None:
            p = Path(self.model_path)
            if not p.is_file():
                raise ValueError(f"--model {self.model_path!r}: no such file")
            if p.suffix.lower() != ".xml":
                raise ValueError(f"--model {self.model_path!r}: expected an MJCF .xml file")


@dataclass
class SimResult:
    sim_time: float
    wall_time: float
    steps: int
    camera_frames: int = 0
    camera_rate_hz: float | None = None
    step_ms: list = field(default_factory=list)

    @property
    def real_time_factor(self) -> float:
        return self.sim_time / self.wall_time if self.wall_time > 0 else 0.0


def load_model(cfg: SimConfig):
    """The scene's model, or the MJCF given with --model (ValueError if it does not load)."""
    if cfg.model_path is not None:
        try:
            return mujoco.MjModel.from_xml_path(str(cfg.model_path))
        except Exception as exc:  # any load error is bad input
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(f"--model {cfg.model_path!r} does not load: {first}") from None
    return build_model(cfg.scene, cfg.seed)


def make_world(cfg: SimConfig, node=None):
    """SimWorld at the `stand` keyframe with the twins this config asks for."""
    model = load_model(cfg)
    data = mujoco.MjData(model)
    reset_to_stand(model, data)
    world = SimWorld(model=model, data=data, scene=cfg.scene if cfg.model_path is None else "custom",
                     seed=cfg.seed, ros_node=node, use_sim_time=cfg.fast)
    notes = []
    try:
        task_twin = None
        if cfg.task is not None:             # first: it moves objects before the camera copies the model
            task_twin = world.add(TaskTwin(cfg.task, cfg.seed))
        if cfg.camera and mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, "endoscope_camera") >= 0:
            world.add(EndoscopeCamera(cfg.camera_width, cfg.camera_height, cfg.camera_hz))
        elif cfg.camera:
            notes.append("camera: model has no endoscope_camera, not rendering")
        if cfg.overview_hz > 0:
            if mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, OVERVIEW_CAMERA) < 0:
                raise ValueError(f"--overview-hz: the model has no {OVERVIEW_CAMERA!r} camera")
            world.add(overview_camera(cfg.overview_hz))
        if mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, "endoscope_tip") >= 0:
            world.add(GroundTruth(publish_clock=cfg.fast, task=cfg.task,
                                  task_payload=task_twin.payload if task_twin is not None else None))
            world.add(EntryPoint())     # the port/nostril pushes back on the shaft (no-op without a stiffness)
        g1 = _optional_twin("surgbot.sim.g1_twin", "G1Twin", domain=cfg.g1_domain, interface=cfg.g1_interface)
        if g1 is None:
            notes.append("G1 twin: sim/g1_twin.py not present, the G1 is not served over unitree DDS")
        elif _has_g1(model):
            world.add(g1)
        if has_psm(model):
            psm = _optional_twin("surgbot.sim.psm_twin", "PSMTwin")
            if psm is None:
                notes.append("PSM twin: sim/psm_twin.py not present, the PSM is not served over CRTK")
            else:
                world.add(psm)
        if node is not None:
            world.add(SimDiagnostics())
    except Exception:
        world.close()
        raise
    return world, notes


def _has_g1(model) -> bool:
    return all(mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, n) >= 0 for n in contract.G1_JOINT_NAMES)


def _optional_twin(module: str, cls: str, **kwargs):
    """Instance of module.cls, or None when the module itself does not exist."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            return None
        raise
    return getattr(mod, cls)(**kwargs)


def step_loop(world, cfg: SimConfig, stop: threading.Event, viewer=None) -> SimResult:
    """Advance physics until `stop` or `cfg.duration` simulated seconds.

    Real time: paced by `surgbot.pacing.Pacer` (sleep when ahead, catch up
    briefly, drop a larger backlog: a robot does not replay missed time in a
    burst, so neither does the twin; the RTF shows the loss).  Fast: back to
    back.
    """
    dt = world.dt
    n_total = None if cfg.duration is None else int(round(cfg.duration / dt))
    steps = 0
    step_ms: list[float] = []
    t_sim0 = world.time
    perf = time.perf_counter
    pacer = Pacer(fast=cfg.fast, stop=stop, clock=perf)
    next_view = pacer.t0
    while not stop.is_set():
        if n_total is not None and steps >= n_total:
            break
        pacer.pace(world.time - t_sim0)
        if stop.is_set():
            break
        s0 = perf()
        world.step()
        s1 = perf()
        if len(step_ms) < STEP_MS_SAMPLES:
            step_ms.append((s1 - s0) * 1e3)
        steps += 1
        if viewer is not None and s1 >= next_view:
            next_view = s1 + 1 / VIEWER_HZ
            if not viewer.is_running():
                break
            with world.lock:
                viewer.sync()
    return SimResult(sim_time=world.time - t_sim0, wall_time=pacer.wall_s(), steps=steps, step_ms=step_ms)


def simulate(cfg: SimConfig, node=None, stop: threading.Event | None = None, log=print) -> SimResult:
    """Run the sim with an existing rclpy node (or none) until stopped; returns the figures."""
    cfg.validate()
    stop = stop or threading.Event()
    world, notes = make_world(cfg, node)
    for note in notes:
        log(f"sim: {note}")
    log(f"sim: scene {world.scene} seed {cfg.seed}, {world.model.nq} qpos, timestep {world.dt * 1e3:.0f} ms, "
        f"twins: {', '.join(t.name for t in world.twins) or 'none'}, "
        f"{'fast (publishing /clock)' if cfg.fast else 'real time'}, MUJOCO_GL={os.environ.get('MUJOCO_GL')}")
    viewer = None
    if not cfg.headless and os.environ.get("DISPLAY"):
        try:
            import mujoco.viewer  # needs a display: imported only when a window is asked for
            viewer = mujoco.viewer.launch_passive(world.model, world.data)
        except Exception as exc:  # the sim runs fine without a window
            log(f"sim: no viewer ({type(exc).__name__}: {exc}); running headless")
    try:
        freeze_startup_heap()               # no 35-45 ms full collections of the model and twins while stepping
        result = step_loop(world, cfg, stop, viewer)
    finally:
        if viewer is not None:
            viewer.close()
        cam = next((t for t in world.twins if t.name == "endoscope_camera"), None)
        world.close()
    if cam is not None:
        result.camera_frames = cam.frames
        result.camera_rate_hz = cam.rate_hz
        if cam.error:
            log(f"sim: camera error: {cam.error}")
    return result


def report(result: SimResult, out=sys.stdout) -> None:
    print(f"real-time factor: {result.real_time_factor:.2f}", file=out)
    if result.camera_rate_hz is None:
        print("camera rate: off", file=out)
    else:
        print(f"camera rate: {result.camera_rate_hz:.1f} Hz", file=out)
    out.flush()


class RosContext:
    """rclpy context + node `sim_node` spun by `make_executor()` in a background thread."""

    def __init__(self, args: list[str] | None = None, node_name: str = NODE_NAME, parameters=None):
        self.context = rclpy.Context()
        rclpy.init(args=args, context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node(node_name, context=self.context, parameter_overrides=parameters or [],
                                      automatically_declare_parameters_from_overrides=False)
        self.executor = make_executor(context=self.context)      # rosutil.EXECUTOR_ENV
        self.executor.add_node(self.node)
        self.spinner = BackgroundSpinner(self.executor)

    def close(self) -> None:
        # out of rclpy before the node and context go: destroying them under a spinning
        # EventsExecutor aborted the process ("terminate called without an active exception")
        self.spinner.stop()
        try:
            self.node.destroy_node()
        finally:
            if self.context.ok():
                self.context.try_shutdown()


def install_stop_signals(stop: threading.Event) -> None:
    def handler(signum, frame):
        stop.set()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)


# ---------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scene", choices=contract.SCENES, default=None, help="task scene (default box_trainer)")
    parser.add_argument("--headless", action="store_true", help="no viewer window (always the case without DISPLAY)")
    parser.add_argument("--duration", type=float, default=None, metavar="S",
                        help="stop after S simulated seconds (default: run until Ctrl-C/SIGTERM)")
    parser.add_argument("--fast", action="store_true", help="step as fast as possible and publish /clock")
    parser.add_argument("--seed", type=int, default=None, help="object placement seed (default 0)")
    parser.add_argument("--g1-domain", type=int, default=None,
                        help=f"unitree DDS domain (default $SURGBOT_G1_DOMAIN or {contract.G1_SIM_DOMAIN})")
    parser.add_argument("--g1-interface", default=None,
                        help=f"unitree DDS network interface (default {contract.G1_SIM_INTERFACE})")
    parser.add_argument("--camera-width", type=int, default=None, help="px (default 320)")
    parser.add_argument("--camera-height", type=int, default=None, help="px (default 240)")
    parser.add_argument("--camera-hz", type=float, default=None, help="Hz (default 30)")
    parser.add_argument("--no-camera", action="store_true", help="do not render the endoscope")
    parser.add_argument("--overview-hz", type=float, default=None,
                        help="Hz of the outside overview camera on /sim/overview/* (default 0: off)")
    parser.add_argument("--model", default=None, metavar="PATH", help="load this MJCF instead of a scene (debugging)")
    parser.add_argument("--no-ros", action="store_true", help="no rclpy node (physics + DDS twin only)")
    parser.add_argument("--task", default=None, metavar="T",
                        help="lay out a task (reach, needle_pick, peg_transfer) by --seed; /sim/task reports it")


def config_from_args(args: argparse.Namespace) -> SimConfig:
    """The run's config; flags left unset keep SimConfig's defaults (ValueError on bad input)."""
    given = dict(scene=args.scene, seed=args.seed, duration=args.duration, fast=args.fast, headless=args.headless,
                 g1_domain=args.g1_domain, g1_interface=args.g1_interface, camera_width=args.camera_width,
                 camera_height=args.camera_height, camera_hz=args.camera_hz, camera=not args.no_camera,
                 overview_hz=args.overview_hz, model_path=args.model, ros=not args.no_ros, task=args.task)
    return SimConfig(**{k: v for k, v in given.items() if v is not None or k in ("duration", "model_path")})


def run(args: argparse.Namespace) -> int:
    try:
        cfg = config_from_args(args)
        load_model(cfg) if cfg.model_path is not None else None
    except ValueError as exc:
        raise CliError(str(exc)) from None
    stop = threading.Event()
    install_stop_signals(stop)
    ros = RosContext(args=[]) if cfg.ros else None
    try:
        result = simulate(cfg, node=ros.node if ros else None, stop=stop,
                          log=lambda s: print(s, file=sys.stderr, flush=True))
    except ValueError as exc:
        raise CliError(str(exc)) from None
    finally:
        if ros is not None:
            ros.close()
    report(result)
    return 0
