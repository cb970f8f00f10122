"""Gymnasium environments `surgbot/Reach-v0`, `surgbot/NeedlePick-v0`, `surgbot/PegTransfer-v0`.

Importing this module registers them (`gymnasium.make("surgbot/Reach-v0",
render_mode="rgb_array")`); the classes load lazily from sim/envs/surg_env.py.
"""

from __future__ import annotations

import gymnasium as gym

ENV_IDS = {"reach": "surgbot/Reach-v0", "needle_pick": "surgbot/NeedlePick-v0",
           "peg_transfer": "surgbot/PegTransfer-v0"}
_CLASSES = {"reach": "ReachEnv", "needle_pick": "NeedlePickEnv", "peg_transfer": "PegTransferEnv"}


def register() -> None:
    for task, env_id in ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=f"surgbot.sim.envs.surg_env:{_CLASSES[task]}")


register()
