"""Every scene and every MJCF in sim/models loads and steps without a MuJoCo warning.

MuJoCo counts its run-time warnings (contact buffer full, unstable
acceleration, bad control, ...) in `MjData.warning` instead of raising;
load-time notes go to stderr.  Both must stay empty: a warning in a model
means the physics the tests measure is not the physics intended.
"""

from __future__ import annotations

import warnings

import mujoco
import pytest

from surgbot.contract import SCENES
from surgbot.sim.scene import MODELS_DIR, build_model, reset_to_stand

pytestmark = pytest.mark.unit

STEP_S = 2.0        # simulated seconds, from the stand keyframe with no control: the robot sags and settles


def _warnings(d: mujoco.MjData) -> dict[str, int]:
    return {mujoco.mjtWarning(i).name: int(w.number) for i, w in enumerate(d.warning) if w.number}


def _step(m: mujoco.MjModel, d: mujoco.MjData) -> None:
    for _ in range(int(round(STEP_S / m.opt.timestep))):
        mujoco.mj_step(m, d)


@pytest.mark.parametrize("scene", SCENES)
def test_scene_loads_and_steps_without_a_warning(scene, capfd):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = build_model(scene)
        d = mujoco.MjData(m)
        reset_to_stand(m, d)
        _step(m, d)
    assert not _warnings(d), f"{scene}: {_warnings(d)}"
    assert not caught, [str(w.message) for w in caught]
    assert "warning" not in capfd.readouterr().err.lower()
    assert d.time == pytest.approx(STEP_S, abs=m.opt.timestep)


@pytest.mark.parametrize("path", sorted(MODELS_DIR.glob("*.xml")), ids=lambda p: p.name)
def test_model_loads_and_steps_without_a_warning(path, capfd):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = mujoco.MjModel.from_xml_path(str(path))
        d = mujoco.MjData(m)
        if m.nkey:
            mujoco.mj_resetDataKeyframe(m, d, 0)
        _step(m, d)
    assert not _warnings(d), f"{path.name}: {_warnings(d)}"
    assert not caught, [str(w.message) for w in caught]
    assert "warning" not in capfd.readouterr().err.lower()


def test_models_folder_has_the_robots():
    assert {p.name for p in MODELS_DIR.glob("*.xml")} >= {"g1_29dof.xml", "psm.xml"}
