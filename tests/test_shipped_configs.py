"""The shipped parameter files are what the tests run.

Each `config/*.yaml` is loaded (`surgbot.config.yaml_parameters`, the ROS 2
params-file layout) and the core it configures is built from it and put
through its safety behaviour: the bridge's `rt/lowstate` watchdog with the
shipped `stale_after` must trip within the contract's 50 ms (section 8);
the holder with the shipped thresholds must FAULT on stale joint states and
keep the fulcrum during a view change (ground truth).  Every key of a file
is accounted for, so a new or renamed key cannot slip past unchecked.

Once the cores' configs are config dataclasses (house issue), the
hand-written YAML -> config mapping below becomes
`surgbot.config.config_from_yaml(Cfg, path, node_name)`.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from surgbot import contract
from surgbot.bench.arm_loop import ArmLoop
from surgbot.config import build, yaml_parameters
from surgbot.config import fields as config_fields
from surgbot.control.endoscope_holder import FAULT, HOLD, HolderConfig
from surgbot.control.g1_arm import DEFAULT_KD, DEFAULT_KP, UPPER_LIMITS_TABLE
from surgbot.control.g1_bridge import G1BridgeCore, State
from surgbot.control.g1_bridge_config import G1BridgeConfig
from surgbot.geometry import matrix_to_quat
from surgbot.nodes.endoscope_holder import HolderNodeConfig
from surgbot.nodes.g1_bridge import G1BridgeNodeConfig
from tests.conftest import REPO

pytestmark = pytest.mark.unit

CONFIG = REPO / "config"
LOWSTATE_WATCHDOG_S = 0.050      # contract section 8: `rt/lowstate` age 50 ms
FULCRUM_INJURY_M = 0.020         # FACTS.md: a fulcrum misalignment over ~20 mm can injure tissue


# ---------------------------------------------------------------------- g1_bridge.yaml
def shipped(name: str, node: str, classes: tuple) -> tuple:
    """Each config dataclass of a node built from the shipped file (every key accounted for)."""
    values = yaml_parameters(CONFIG / name, node)
    own = [{s.name for s in config_fields(cls)} for cls in classes]
    unchecked = set(values) - set().union(*own)
    assert not unchecked, f"{name}: unchecked keys {unchecked}"
    return tuple(build(cls, {k: v for k, v in values.items() if k in keys}) for cls, keys in zip(classes, own,
                                                                                                   strict=True))


def shipped_bridge() -> tuple[G1BridgeConfig, G1BridgeNodeConfig, G1BridgeCore]:
    cfg, node_cfg = shipped("g1_bridge.yaml", "g1_bridge", (G1BridgeConfig, G1BridgeNodeConfig))
    return cfg, node_cfg, G1BridgeCore(cfg, limits=UPPER_LIMITS_TABLE)


def test_shipped_bridge_config_trips_the_lowstate_watchdog_within_the_contract():
    p, _, core = shipped_bridge()
    dt = 1.0 / p.rate_hz
    q = np.zeros(contract.G1_NUM_JOINTS)
    t, tick = 100.0, 0

    def feed():
        nonlocal tick
        tick += 2
        assert core.on_lowstate(q, np.zeros_like(q), tick, t)

    feed()
    assert core.engage(t)
    for _ in range(int(p.ramp_time / dt) + 10):
        t += dt
        feed()
        core.step(t)
    assert core.state == State.ENGAGED
    # the robot stops answering: streaming must stop by the contract's 50 ms (+ one period)
    t_last = t
    while t - t_last <= LOWSTATE_WATCHDOG_S + dt:
        t += dt
        if core.step(t) is None:
            break
    assert core.state == State.FAULT, f"still {core.state.value} {1e3 * (t - t_last):.0f} ms after the last lowstate"
    assert t - t_last <= LOWSTATE_WATCHDOG_S + dt


def test_shipped_bridge_config_is_the_robot_set_up():
    p, node, _ = shipped_bridge()
    assert node.g1_domain == contract.G1_SIM_DOMAIN and node.g1_interface == contract.G1_SIM_INTERFACE
    assert p.rate_hz == contract.G1_LOWSTATE_HZ
    assert p.stale_after <= LOWSTATE_WATCHDOG_S, "contract section 8: rt/lowstate age 50 ms"
    assert p.release_on_shutdown is False, "shutdown must not drop the scope"
    assert node.gravity_compensation is True
    assert list(p.kp) == DEFAULT_KP.tolist() and list(p.kd) == DEFAULT_KD.tolist()
    assert 0 < p.max_velocity <= 0.5, "Unitree's arm_sdk example speed (FACTS.md); the holder asks for more"


# ---------------------------------------------------------------------- endoscope_holder.yaml
def shipped_holder_config(port) -> HolderConfig:
    cfg, node = shipped("endoscope_holder.yaml", "endoscope_holder", (HolderConfig, HolderNodeConfig))
    assert cfg.fulcrum is None and node.scene == "", "the shipped file leaves the fulcrum to the scene/patient"
    return dataclasses.replace(cfg, fulcrum=tuple(port))


def test_shipped_holder_config_keeps_the_safety_figures():
    cfg = shipped_holder_config((0.0, 0.0, 0.0))
    assert cfg.teleop_timeout_s == contract.ENDOSCOPE_TELEOP_TIMEOUT_S
    assert 0 < cfg.fault_fulcrum_error < FULCRUM_INJURY_M
    assert 0 < cfg.joint_state_timeout_s <= 0.1


def test_shipped_holder_config_faults_on_stale_joint_states_and_keeps_the_fulcrum():
    probe = ArmLoop("box_trainer")
    cfg = shipped_holder_config(probe.port)
    loop = ArmLoop("box_trainer", holder_config=cfg)
    loop.run(0.3)
    assert loop.core.set_hold(True).ok
    loop.run(1.0)
    # a view change with the shipped speed limits: fulcrum from ground truth
    c = loop.core
    target, reasons = c.ik.move_view(c.setpoint.copy(), math.radians(15), 0.0, 0.01, 0.0)
    assert reasons == []
    pos, R = target.tip_position(loop.port), target.rotation
    qt = list(matrix_to_quat(R))
    ferr = []
    loop.run(3.0, lambda lp: (lp.core.servo_cp(pos, qt, "world", lp.t), ferr.append(lp.fulcrum_error())))
    loop.run(0.5, lambda lp: ferr.append(lp.fulcrum_error()))
    assert c.mode == HOLD
    assert np.linalg.norm(loop.tip()[0] - pos) < 1e-3
    assert np.percentile(ferr, 99) < 1e-3 and max(ferr) < 2e-3
    # stale joint states: FAULT by the shipped timeout (+ two control periods)
    loop.measuring = False
    t_lost = loop.t
    modes = []
    loop.run(2 * cfg.joint_state_timeout_s, lambda lp: modes.append((lp.t, lp.core.mode)))
    t_fault = next(t for t, m in modes if m == FAULT)
    assert t_fault - t_lost <= cfg.joint_state_timeout_s + 2.0 / cfg.rate_hz + 1e-9


# ---------------------------------------------------------------------- psm.yaml
def test_shipped_psm_config_is_the_dvrk_default():
    p = yaml_parameters(CONFIG / "psm.yaml", "sim")
    assert set(p) == {"psm_rate_hz", "psm_namespace"}
    assert p["psm_namespace"] == contract.PSM_NAMESPACE
    assert p["psm_rate_hz"] == 100.0, "the dVRK publishes state at 100 Hz by default (FACTS.md)"
