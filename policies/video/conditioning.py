"""`--export-conditioning DIR`: what a video world model is conditioned on, from our scenes.

Per episode a folder `DIR/NAME/` with
* `first_frame.png` - the endoscope's first frame, as the demos look;
* `prompt.txt` - the instruction;
* `trajectory.json` - the jaw tip's 2D path in that image (pixels, u right,
  v down, one point per frame at 15 fps) from a scripted expert run, as the
  SAW abstract conditions on; plus the frame size and the robot state of
  the first frame (`first_state`, to copy into the generated clip's
  NAME.json);
* `trajectory.png` - the path drawn over the first frame (for a human);
* `affordance_mask.png` - white where the objects the task acts on are
  (segmentation render: the named target, the needle, the block).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from surgbot.policies.video.sim_source import Episode

FIRST_FRAME = "first_frame.png"
PROMPT = "prompt.txt"
TRAJECTORY = "trajectory.json"
TRAJECTORY_PNG = "trajectory.png"
AFFORDANCE = "affordance_mask.png"


def write_conditioning(folder: Path, name: str, ep: Episode) -> Path:
    out = Path(folder) / name
    out.mkdir(parents=True, exist_ok=True)
    first = ep.frames[0]
    cv2.imwrite(str(out / FIRST_FRAME), cv2.cvtColor(first, cv2.COLOR_RGB2BGR))
    (out / PROMPT).write_text(ep.prompt + "\n")
    h, w = first.shape[:2]
    (out / TRAJECTORY).write_text(json.dumps({
        "task": ep.task, "prompt": ep.prompt, "fps": 15, "image_size": [h, w], "seed": ep.seed,
        "frames": int(len(ep.tip_px)), "tip_px": [[round(float(u), 2), round(float(v), 2)] for u, v in ep.tip_px],
        "first_state": [float(v) for v in ep.first_state]}, indent=1))
    scale = max(1, 512 // max(h, w))
    big = cv2.resize(cv2.cvtColor(first, cv2.COLOR_RGB2BGR), (w * scale, h * scale), interpolation=cv2.INTER_NEAREST)
    pts = np.round(ep.tip_px[np.all(np.isfinite(ep.tip_px), axis=1)] * scale).astype(np.int32)
    if len(pts) > 1:
        cv2.polylines(big, [pts], False, (0, 255, 255), 2)
        cv2.circle(big, tuple(int(v) for v in pts[0]), 5, (0, 255, 0), -1)
        cv2.circle(big, tuple(int(v) for v in pts[-1]), 5, (0, 0, 255), -1)
    cv2.imwrite(str(out / TRAJECTORY_PNG), big)
    mask = ep.affordance if ep.affordance is not None else np.zeros((h, w), bool)
    cv2.imwrite(str(out / AFFORDANCE), mask.astype(np.uint8) * 255)
    return out
