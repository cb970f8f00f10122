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

from surgbot import contract  # noqa: E402

NODE_NAME = "sim_node"


def _default_g1_domain() -> int:
    try:
        return int(os.environ.get("SURGBOT_G1_DOMAIN", contract.G1_SIM_DOMAIN))
    except ValueError:
        return contract.G1_SIM_DOMAIN


@dataclass
class SimConfig:
    scene: str = "box_trainer"
    seed: int = 0
    duration: float | None = None        # simulated seconds; None = until signalled
    fast: bool = False
    headless: bool = True
    g1_domain: int = field(default_factory=_default_g1_domain)
    g1_interface: str = contract.G1_SIM_INTERFACE
    camera_width: int = 320
    camera_height: int = 240
    camera_hz: float = 30.0
    camera: bool = True
    model_path: str | None = None
    ros: bool = True
    task: str | None = None              # a sim/tasks task laid out in the box trainer (--task)

    def validate(self) -> None:
        """Raise ValueError with a one-line reason for bad input."""
        if self.model_path is None and self.scene not in contract.SCENES:
            raise ValueError(f"unknown scene {self.scene!r} (choose from {', '.join(contract.SCENES)})")
        if self.duration is not None and not (math.isfinite(self.duration) and self.duration >= 0):
            raise ValueError(f"--duration must be a finite number >= 0, got {self.duration}")
        if not (16 <= self.camera_width <= 1280 and 16 <= self.camera_height <= 960):
            raise ValueError(f"camera size {self.camera_width}x{self.camera_height} outside 16x16 .. 1280x960")
        if not (math.isfinite(self.camera_hz) and 0 < self.camera_hz <= 240):
            raise ValueError(f"--camera-hz must be in (0, 240], got {self.camera_hz}")
        if not (0 <= self.g1_domain <= 232):
            raise ValueError(f"--g1-domain must be a DDS domain id 0..232, got {self.g1_domain}")
        if not self.g1_interface or any(c.isspace() for c in self.g1_interface):
            raise ValueError(f"--g1-interface must be a network interface name, got {self.g1_interface!r}")
        if self.task is not None:
            from surgbot.sim.tasks import TASK_NAMES
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
    import mujoco
    if cfg.model_path is not None:
        try:
            return mujoco.MjModel.from_xml_path(str(cfg.model_path))
        except Exception as exc:  # noqa: BLE001 - any load error is bad input
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(f"--model {cfg.model_path!r} does not load: {first}") from None
    from surgbot.sim.scene import build_model
    return build_model(cfg.scene, cfg.seed)


def make_world(cfg: SimConfig, node=None):
    """SimWorld at the `stand` keyframe with the twins this config asks for."""
    import mujoco

    from surgbot.sim.scene import has_psm, reset_to_stand
    from surgbot.sim.world import SimWorld
    model = load_model(cfg)
    data = mujoco.MjData(model)
    reset_to_stand(model, data)
    world = SimWorld(model=model, data=data, scene=cfg.scene if cfg.model_path is None else "custom",
                     seed=cfg.seed, ros_node=node, use_sim_time=cfg.fast)
    notes = []
    try:
        task_twin = None
        if cfg.task is not None:             # first: it moves objects before the camera copies the model
            from surgbot.sim.tasks.twin import TaskTwin
            task_twin = world.add(TaskTwin(cfg.task, cfg.seed))
        if cfg.camera and mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, "endoscope_camera") >= 0:
            from surgbot.sim.camera import EndoscopeCamera
            world.add(EndoscopeCamera(cfg.camera_width, cfg.camera_height, cfg.camera_hz))
        elif cfg.camera:
            notes.append("camera: model has no endoscope_camera, not rendering")
        if mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, "endoscope_tip") >= 0:
            from surgbot.sim.ground_truth import GroundTruth
            world.add(GroundTruth(publish_clock=cfg.fast, task=cfg.task,
                                  task_payload=task_twin.payload if task_twin is not None else None))
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
    except Exception:
        world.close()
        raise
    return world, notes


def _has_g1(model) -> bool:
    import mujoco
    return all(mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, n) >= 0 for n in contract.G1_JOINT_NAMES)


def _optional_twin(module: str, cls: str, **kwargs):
    """Instance of module.cls, or None when the module itself does not exist."""
    import importlib
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            return None
        raise
    return getattr(mod, cls)(**kwargs)


MAX_CATCH_UP_S = 0.02   # behind by more than this: drop the backlog, do not burst


def step_loop(world, cfg: SimConfig, stop: threading.Event, viewer=None) -> SimResult:
    """Advance physics until `stop` or `cfg.duration` simulated seconds.

    Real time: steps are paced against the wall clock (sleeping when ahead,
    catching up without sleeping when up to MAX_CATCH_UP_S behind, dropping a
    larger backlog).  Fast: back to back.
    """
    dt = world.dt
    n_total = None if cfg.duration is None else int(round(cfg.duration / dt))
    steps = 0
    step_ms: list[float] = []
    t_sim0 = world.time
    t0 = time.perf_counter()
    skipped = 0.0
    next_view = t0
    perf = time.perf_counter
    while not stop.is_set():
        if n_total is not None and steps >= n_total:
            break
        if not cfg.fast:
            lag = (perf() - t0) - (world.time - t_sim0) - skipped
            if lag < 0:
                stop.wait(min(-lag, 0.002))
                continue
            if lag > MAX_CATCH_UP_S:
                # A stall (the machine was busy): a robot does not replay the
                # missed time in a burst, so neither does the twin.  Streamed
                # commands would turn into jumps.  The RTF shows the loss.
                skipped += lag
        s0 = perf()
        world.step()
        s1 = perf()
        if len(step_ms) < 200_000:
            step_ms.append((s1 - s0) * 1e3)
        steps += 1
        if viewer is not None and s1 >= next_view:
            next_view = s1 + 1 / 30
            if not viewer.is_running():
                break
            with world.lock:
                viewer.sync()
    wall = time.perf_counter() - t0
    return SimResult(sim_time=world.time - t_sim0, wall_time=wall, steps=steps, step_ms=step_ms)


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
            import mujoco.viewer
            viewer = mujoco.viewer.launch_passive(world.model, world.data)
        except Exception as exc:  # noqa: BLE001 - the sim runs fine without a window
            log(f"sim: no viewer ({type(exc).__name__}: {exc}); running headless")
    try:
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
    """rclpy context + node `sim_node` spun by a single-threaded executor in a thread."""

    def __init__(self, args: list[str] | None = None, node_name: str = NODE_NAME, parameters=None):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.signals import SignalHandlerOptions
        self.context = rclpy.Context()
        rclpy.init(args=args, context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node(node_name, context=self.context, parameter_overrides=parameters or [],
                                      automatically_declare_parameters_from_overrides=False)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self._spin, name="sim-ros-executor", daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException
        try:
            self.executor.spin()
        except (ExternalShutdownException, KeyboardInterrupt):
            pass

    def close(self) -> None:
        try:
            self.executor.shutdown(timeout_sec=2.0)
        except Exception:  # noqa: BLE001 - best effort at exit
            pass
        self.thread.join(3.0)
        try:
            self.node.destroy_node()
        finally:
            if self.context.ok():
                self.context.try_shutdown()


def install_stop_signals(stop: threading.Event) -> None:
    def handler(signum, frame):  # noqa: ARG001
        stop.set()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)


# ---------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scene", choices=contract.SCENES, default="box_trainer", help="task scene")
    parser.add_argument("--headless", action="store_true", help="no viewer window (always the case without DISPLAY)")
    parser.add_argument("--duration", type=float, default=None, metavar="S",
                        help="stop after S simulated seconds (default: run until Ctrl-C/SIGTERM)")
    parser.add_argument("--fast", action="store_true", help="step as fast as possible and publish /clock")
    parser.add_argument("--seed", type=int, default=0, help="object placement seed")
    parser.add_argument("--g1-domain", type=int, default=None,
                        help=f"unitree DDS domain (default $SURGBOT_G1_DOMAIN or {contract.G1_SIM_DOMAIN})")
    parser.add_argument("--g1-interface", default=contract.G1_SIM_INTERFACE, help="unitree DDS network interface")
    parser.add_argument("--camera-width", type=int, default=320)
    parser.add_argument("--camera-height", type=int, default=240)
    parser.add_argument("--camera-hz", type=float, default=30.0)
    parser.add_argument("--no-camera", action="store_true", help="do not render the endoscope")
    parser.add_argument("--model", default=None, metavar="PATH", help="load this MJCF instead of a scene (debugging)")
    parser.add_argument("--no-ros", action="store_true", help="no rclpy node (physics + DDS twin only)")
    parser.add_argument("--task", default=None, metavar="T",
                        help="lay out a task (reach, needle_pick, peg_transfer) by --seed; /sim/task reports it")


def config_from_args(args: argparse.Namespace) -> SimConfig:
    return SimConfig(
        scene=args.scene, seed=args.seed, duration=args.duration, fast=args.fast, headless=args.headless,
        g1_domain=_default_g1_domain() if args.g1_domain is None else args.g1_domain,
        g1_interface=args.g1_interface, camera_width=args.camera_width, camera_height=args.camera_height,
        camera_hz=args.camera_hz, camera=not args.no_camera, model_path=args.model, ros=not args.no_ros,
        task=args.task)


def run(args: argparse.Namespace) -> int:
    from surgbot.errors import CliError
    cfg = config_from_args(args)
    try:
        cfg.validate()
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
