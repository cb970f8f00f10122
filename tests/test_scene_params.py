"""config/scenes/<scene>.yaml (what the endoscope holder reads with `scene:=`) match the scene model."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from surgbot.contract import SCENES
from surgbot.nodes.endoscope_holder import scene_port, scene_psm_base
from surgbot.sim import scene_params
from surgbot.sim.scene import PSM_ROOT_BODY, build_model, has_psm, reset_to_stand

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("scene", SCENES)
def test_committed_scene_file_is_the_generated_one(scene):
    path = scene_params.path_of(scene)
    assert path.is_file(), f"{path} missing: python -m surgbot.sim.scene_params"
    assert path.read_text() == scene_params.render(scene), f"{path} is stale: python -m surgbot.sim.scene_params"


@pytest.mark.parametrize("scene", SCENES)
def test_node_reads_the_port_and_psm_base_of_the_model(scene):
    """What the node takes (its own reader, not the generator) against MuJoCo's sites and bodies."""
    m = build_model(scene)
    d = mujoco.MjData(m)
    reset_to_stand(m, d)
    assert np.allclose(scene_port(scene), d.site("scope_port").xpos, atol=1e-6)
    base = scene_psm_base(scene)
    if not has_psm(m):
        assert base is None
        return
    b = d.body(PSM_ROOT_BODY)
    assert np.allclose(base[:3], b.xpos, atol=1e-6)
    w, x, y, z = b.xquat
    q = np.array(base[3:])
    assert abs(abs(float(q @ np.array([x, y, z, w]))) - 1.0) < 1e-5      # same rotation (q and -q alike)


def test_check_mode_reports_no_difference():
    assert scene_params.main(["--check"]) == 0
