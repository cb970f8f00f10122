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
