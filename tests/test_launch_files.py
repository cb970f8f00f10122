"""Launch files without ROS 2 installed: each is the node set of `surgbot.stack` for its kind."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from surgbot.stack import LAUNCH_ARG_HELP, LAUNCH_KINDS, config_dir, nodes_for

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]
SETUP = (REPO / "setup.py").read_text()


def _console_scripts() -> set[str]:
    nodes = ast.literal_eval(re.search(r"NODES = (\{.*?\})", SETUP, re.S).group(1))
    return set(nodes) | {"surgbot"}


@pytest.mark.parametrize("kind", sorted(LAUNCH_KINDS))
def test_each_launch_file_is_its_stack(kind):
    path = REPO / "launch" / f"{kind}.launch.py"
    tree = ast.parse(path.read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") ==
             "generate_launch_description_for"]
    assert [c.args[0].value for c in calls] == [kind]
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)


def test_every_launch_file_is_covered():
    assert {p.name.split(".")[0] for p in (REPO / "launch").glob("*.launch.py")} == set(LAUNCH_KINDS)


@pytest.mark.parametrize("kind", sorted(LAUNCH_KINDS))
def test_stack_nodes_are_console_scripts_with_existing_parameter_files(kind):
    options = LAUNCH_KINDS[kind]
    assert set(options.launch_arguments()) == set(LAUNCH_ARG_HELP)
    for spec in nodes_for(options):
        if spec.ros:
            assert spec.executable in _console_scripts(), spec.executable
        for name in spec.params_files:
            assert (config_dir() / name).is_file(), name
        for value in list(spec.params.values()) + list(spec.args):
            if isinstance(value, str) and value.startswith("$"):
                assert value[1:] in LAUNCH_ARG_HELP, value


def _node_configs() -> dict[str, tuple]:
    """executable -> the config dataclasses whose fields are its ROS parameters."""
    from surgbot.control.g1_bridge_config import G1BridgeConfig
    from surgbot.control.holder_config import HolderConfig
    from surgbot.nodes.endoscope_holder import HolderNodeConfig
    from surgbot.nodes.g1_bridge import G1BridgeNodeConfig
    from surgbot.safety.state_watch import SafetyWatchConfig
    from surgbot.safety.supervisor import SupervisorConfig
    from surgbot.sim.psm_twin import PSMTwinConfig
    from surgbot.sim.runner import SimConfig
    from surgbot.teleop.config import ConsoleConfig, MapperConfig
    configs = {"sim_node": (SimConfig, PSMTwinConfig),
               "g1_bridge": (G1BridgeConfig, G1BridgeNodeConfig, SafetyWatchConfig),
               "endoscope_holder": (HolderConfig, HolderNodeConfig, SafetyWatchConfig),
               "safety_supervisor": (SupervisorConfig,),
               "teleop_console": (ConsoleConfig,), "teleop_mapper": (MapperConfig, SafetyWatchConfig)}
    from surgbot.nodes.policy_node import PolicyNodeConfig
    configs["policy_node"] = (PolicyNodeConfig, SafetyWatchConfig)
    return configs


@pytest.mark.parametrize("kind", sorted(LAUNCH_KINDS))
def test_every_parameter_a_launch_file_sets_is_declared_by_its_node(kind):
    from surgbot.config import fields, yaml_parameters

    configs = _node_configs()
    for spec in nodes_for(LAUNCH_KINDS[kind]):
        if not spec.ros:
            continue
        declared = {s.name for cls in configs[spec.executable] for s in fields(cls)}
        given = set(spec.params)
        for name in spec.params_files:
            given |= set(yaml_parameters(config_dir() / name, spec.name))
        assert given <= declared, f"{kind}: {spec.name} does not declare {sorted(given - declared)}"
