"""The pinned learning stack (torch, LeRobot) works beside the robot stack.

Later waves record demonstrations and pseudo-kinematics as LeRobotDataset v3
with an endoscope video stream; this checks that exact path on the pinned
versions: write two episodes with a video feature and the 10-float state /
action of the contract (section 7), finalize, load back, decode a frame.
"""

import numpy as np


def test_lerobot_dataset_v3_roundtrip_with_video(tmp_path):
    import mujoco  # noqa: F401  (the stacks must import together)
    import pinocchio  # noqa: F401
    import rclpy  # noqa: F401
    import torch
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    h, w, fps = 48, 64, 16
    features = {
        "observation.images.endoscope": {"dtype": "video", "shape": (h, w, 3),
                                         "names": ["height", "width", "channels"]},
        "observation.state": {"dtype": "float32", "shape": (10,), "names": None},
        "action": {"dtype": "float32", "shape": (10,), "names": None},
    }
    root = tmp_path / "ds"
    ds = LeRobotDataset.create("surgbot/smoke", fps=fps, features=features, root=root, use_videos=True)
    rng = np.random.default_rng(0)
    for episode in range(2):
        for i in range(8):
            img = np.full((h, w, 3), 40 * episode + 10 * i, dtype=np.uint8)
            state = rng.normal(size=10).astype(np.float32)
            ds.add_frame({"observation.images.endoscope": img, "observation.state": state,
                          "action": state, "task": "hold the view"})
        ds.save_episode()
    ds.finalize()

    info = (root / "meta" / "info.json").read_text()
    assert '"codebase_version": "v3.0"' in info
    back = LeRobotDataset("surgbot/smoke", root=root)
    assert back.num_episodes == 2 and len(back) == 16
    item = back[9]                                   # episode 1, frame 1
    frame = item["observation.images.endoscope"]
    assert isinstance(frame, torch.Tensor) and tuple(frame.shape) == (3, h, w)
    # constant grey 40*1 + 10*1 = 50 survives the video codec within a few levels
    assert abs(float(frame.mean()) * 255 - 50) < 6
    assert item["observation.state"].shape == (10,)
    assert item["task"] == "hold the view"
